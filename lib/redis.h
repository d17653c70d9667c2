/* redis: an async Redis client on each loop through hiredis's libevent adapter (see docs/kv.md). */
#ifndef APIARY_REDIS_H
#define APIARY_REDIS_H

/* From the config's "redis" section. Read-only while loops run. */
typedef struct redis_settings {
    char host[256];
    unsigned port;
    unsigned db;
    unsigned connections_per_loop;
    unsigned connect_timeout_ms;
    unsigned command_timeout_ms;
} redis_settings;

#endif
