/* redis_internal: the Redis client's defences against what a server sends (lib/clients/redis_reply.c),
 * for the client itself, its unit tests and the fuzz target; not installed. */
#ifndef APIARY_REDIS_INTERNAL_H
#define APIARY_REDIS_INTERNAL_H

#include <stdbool.h>

/* hiredis 0.14 allocates an array reply's element table from the count the server announces, so
 * "*999999999\r\n" from a broken or hostile server is an 8 GB calloc. Bounded readers refuse arrays
 * of more than REDIS_MAX_REPLY_ELEMENTS: the reply is a protocol error and the link is dropped. */
#define REDIS_MAX_REPLY_ELEMENTS (1 << 20)
struct redisReader;
void redis_reader_bound(struct redisReader *reader);

/* hiredis 0.14 aborts the process (an assert in redisProcessCallbacks) when a reply other than an
 * error arrives while no command waits for one: an extra reply to a command, or one sent before any
 * command. A guarded reader asks, as each reply begins, whether a command waits for it
 * (waiting(arg)); when none does, the reply is refused as a protocol error, so hiredis drops the link
 * (the link reconnects) instead of reaching the assert, and `tripped` says why it was dropped. An
 * error reply nobody asked for is let through: hiredis closes the link on it itself (Redis sends one
 * and closes at maxclients). The guard must outlive the reader; it is set on a bounded reader (above)
 * and uses the reader's privdata. */
typedef struct redis_reader_guard {
    bool (*waiting)(void *arg);
    void *arg;
    bool tripped; /* a reply arrived that no command was waiting for */
} redis_reader_guard;
void redis_reader_guard_set(struct redisReader *reader, redis_reader_guard *guard);

#endif
