/* pubsub_internal: how the server starts and stops pub/sub, and what the core and the Redis backend
 * (pubsub_redis.c) share. */
#ifndef APIARY_PUBSUB_INTERNAL_H
#define APIARY_PUBSUB_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "pubsub.h"
#include "redis.h"

typedef enum pubsub_backend { PUBSUB_BACKEND_LOCAL, PUBSUB_BACKEND_REDIS } pubsub_backend;

typedef struct pubsub_settings {
    pubsub_backend backend;
    size_t max_message_bytes;
    char channel_prefix[64];        /* redis: channel = prefix + topic */
    const redis_settings *redis;    /* redis backend: must outlive pub/sub */
} pubsub_settings;

/* Before the loops' threads run (main thread): pub/sub serves these loops from now on; the settings
 * are copied. With the redis backend, loop 0 opens its links from its first turn on. */
void pubsub_start(const pubsub_settings *s, http_loop **loops, size_t n);
/* After the loops' threads returned, before http_loop_free: publishing answers PUBSUB_UNAVAILABLE
 * from now on. Each loop's state (and loop 0's Redis links) goes with its loop. */
void pubsub_stop(void);
/* Between pubsub_start and pubsub_stop. */
bool pubsub_running(void);

/* A metrics_source_fn: the counters of pubsub_stats on /metrics. */
struct metrics_writer;
void pubsub_metrics_source(struct metrics_writer *w, void *arg);

/* ---- shared with pubsub_redis.c -------------------------------------------------------------- */

/* One published message: one copy, shared read-only by every loop it is posted to. */
typedef struct pubsub_msg {
    unsigned refs; /* atomic */
    size_t topic_len;
    size_t len;
    char *topic;   /* points into the same allocation */
    char data[];   /* len bytes, NUL, then the topic and its NUL */
} pubsub_msg;

pubsub_msg *pubsub_msg_new(const char *topic, size_t topic_len, const void *data, size_t len);
void pubsub_msg_unref(pubsub_msg *m);
/* Hands m (the caller's reference) to every served loop with subscribers. Any thread. */
void pubsub_fanout(pubsub_msg *m);
const pubsub_settings *pubsub_current_settings(void);
/* Posts fn(arg) to the relay loop (loop 0); false when pub/sub is not running. Any thread. */
bool pubsub_post_relay(void (*fn)(void *arg), void *arg);
void pubsub_stat_add(unsigned field, long long n);
enum { PUBSUB_STAT_PUBLISHED, PUBSUB_STAT_RECEIVED, PUBSUB_STAT_DELIVERED, PUBSUB_STAT_DROPPED_SLOW,
       PUBSUB_STAT_DROPPED_BACKEND, PUBSUB_STAT_SUBSCRIBERS, PUBSUB_STAT_BACKEND_UP, PUBSUB_STAT_RECONNECTS,
       PUBSUB_STAT_COUNT };

/* The Redis backend (pubsub_redis.c). */
typedef struct pubsub_redis pubsub_redis;
/* On the relay loop's thread: opens the subscriber and publisher links. */
pubsub_redis *pubsub_redis_new(http_loop *loop, const pubsub_settings *s);
void pubsub_redis_free(pubsub_redis *r);
/* Any thread: PUBLISH through the relay loop. Takes m. PUBSUB_OK, _UNAVAILABLE or _BUSY. */
int pubsub_redis_publish(pubsub_msg *m);

#endif
