/* redis: an async Redis client on each loop through hiredis's libevent adapter (see docs/kv.md).
 *
 * The model. Each loop has its own client (created on first use, on the loop's thread, kept in the
 * loop-local slot HTTP_LOOP_SLOT_REDIS and freed with the loop) with redis.connections_per_loop links.
 * Commands from every request of the loop share those links: each command is appended to a link's
 * output and written with whatever else the loop queued in the same turn (pipelining), and replies
 * come back in the order the commands were sent, which is how they find their operation. Commands are
 * built from argv arrays with hiredis's formatter, never pasted into a string, so keys and values may
 * hold any bytes (spaces, quotes, CRLF, NUL).
 *
 * Failures are values. An operation fails with one of the error strings below and never hangs: no
 * link up (Redis down, connect refused or timed out: "unavailable", at once unless a connection
 * attempt is under way), the link dropped with the command in flight ("connection_lost"), no reply
 * within redis.command_timeout_ms ("timeout"), or Redis answered an error ("redis: " + its text).
 * Links reconnect by themselves with capped exponential backoff.
 *
 * Ownership and cancellation. A command already written cannot be taken back, so what hiredis holds
 * for it (its callback's privdata) is owned by the client, not the request. Cancelling the operation
 * (the scope ended: client gone, deadline passed, answered) or timing it out only disowns it: the
 * reply, when it comes, is dropped and the client's record freed. Replies are copied into the
 * operation's scope memory before the hiredis callback returns; nothing keeps hiredis's reply.
 *
 * Threads. Everything but redis_stats_read runs on the loop thread that owns the client. */
#ifndef APIARY_REDIS_H
#define APIARY_REDIS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "async.h"

typedef struct http_loop http_loop;
struct event_base;
struct redisReply;

/* From the config's "redis" section. Read-only while loops run. An app gets them from apiary_redis(),
 * which is NULL when the config has no "redis" section and kv.backend is not "redis". */
typedef struct redis_settings {
    char host[256];
    unsigned port;
    unsigned db;
    unsigned connections_per_loop;
    unsigned connect_timeout_ms;
    unsigned command_timeout_ms;
} redis_settings;

/* What an operation fails with (op->error points at one of these, so callers may compare pointers),
 * besides a Redis error reply: "redis: " followed by its text, in the operation's scope memory. */
extern const char REDIS_ERROR_UNAVAILABLE[];     /* "unavailable": no link up to send on */
extern const char REDIS_ERROR_TIMEOUT[];         /* "timeout": no reply within command_timeout_ms */
extern const char REDIS_ERROR_CONNECTION_LOST[]; /* "connection_lost": the link dropped mid-flight */
extern const char REDIS_ERROR_NOT_CONFIGURED[];  /* "not_configured": called with NULL settings */

/* A reply, copied out of hiredis into scope memory. Strings are NUL-terminated for convenience but
 * may hold NUL bytes: use len. */
typedef enum redis_reply_kind {
    REDIS_KIND_NIL,
    REDIS_KIND_STRING,  /* bulk string */
    REDIS_KIND_STATUS,  /* "+OK" */
    REDIS_KIND_INTEGER,
    REDIS_KIND_ARRAY,
    REDIS_KIND_ERROR,   /* only inside arrays (EXEC, redis_pipeline); a top-level error fails the op */
} redis_reply_kind;

typedef struct redis_reply redis_reply;
struct redis_reply {
    redis_reply_kind kind;
    long long integer;     /* INTEGER */
    const char *str;       /* STRING, STATUS, ERROR */
    size_t len;
    redis_reply *elements; /* ARRAY: `count` replies */
    size_t count;
};

/* One command of a pipeline: argc arguments, argv[i] of argvlen[i] bytes (binary-safe). */
typedef struct redis_cmd {
    int argc;
    const char **argv;
    const size_t *argvlen;
} redis_cmd;

/* ---- per-loop entry points (what handlers use) ----------------------------------------------- */

/* Sends one command on this loop's client (created on first use with `s`, which must outlive the
 * loop; later calls on the same loop reuse it and ignore `s`). Completes OK with value = a
 * redis_reply in scope memory, or FAILED with one of the errors above. argv/argvlen are copied before
 * this returns. Loop thread only. `s` NULL (apiary_redis() when the config has no Redis) fails with
 * REDIS_ERROR_NOT_CONFIGURED and connects nowhere; so does redis_pipeline, and redis_ready is false. */
async_op *redis_command(async_scope *scope, http_loop *loop, const redis_settings *s, int argc,
                        const char **argv, const size_t *argvlen);
/* Sends `n` commands back to back on one link (so MULTI ... EXEC stays together) and completes once
 * all replies are in: OK with value = an ARRAY redis_reply of n replies, where an error reply is a
 * REDIS_KIND_ERROR element (the op still completes OK); FAILED for the transport errors above. */
async_op *redis_pipeline(async_scope *scope, http_loop *loop, const redis_settings *s, const redis_cmd *cmds,
                         size_t n);
/* True when at least one of this loop's links is connected. Creates the client and starts connecting
 * when this is the loop's first use of Redis, so the first call on a loop answers false. */
bool redis_ready(http_loop *loop, const redis_settings *s);

/* ---- the client itself (a loop's, or a test's on its own event_base) ------------------------- */

typedef struct redis_client redis_client;

/* A client on `base` (its thread only) that connects lazily, on its first command or
 * redis_client_ready. `s` must outlive the client; `id` names it in logs. */
redis_client *redis_client_new(struct event_base *base, const redis_settings *s, unsigned id);
/* Closes every link and frees the client. Operations still waiting fail with "unavailable"; call it
 * after the scopes that used the client are gone (http_loop_free does: loop-local destructors run
 * after every request). */
void redis_client_free(redis_client *c);
async_op *redis_client_command(async_scope *scope, redis_client *c, int argc, const char **argv,
                               const size_t *argvlen);
async_op *redis_client_pipeline(async_scope *scope, redis_client *c, const redis_cmd *cmds, size_t n);
bool redis_client_ready(redis_client *c);

/* ---- counters (any thread) ------------------------------------------------------------------- */

/* Sums over every client of the process, including those already freed, so counters only grow. */
typedef struct redis_stats {
    uint64_t commands;               /* commands written to a link */
    uint64_t inflight;               /* gauge: written, reply not yet in (abandoned ones included) */
    uint64_t errors_unavailable;     /* operations failed "unavailable" */
    uint64_t errors_timeout;         /* operations failed "timeout" */
    uint64_t errors_connection_lost; /* operations failed "connection_lost" */
    uint64_t errors_reply;           /* error replies from Redis */
    uint64_t replies_dropped;        /* replies that arrived after their operation was cancelled or timed out */
    uint64_t connects;               /* links established */
    uint64_t connect_failures;       /* attempts refused or timed out */
    uint64_t disconnects;            /* established links lost (or dropped for a stall) */
    uint64_t reconnects;             /* links established after a loss or a failed attempt */
    uint64_t links_up;               /* gauge: links connected now */
} redis_stats;

void redis_stats_read(redis_stats *out);

/* A metrics_source_fn (include/apiary/metrics.h) for these counters. */
struct metrics_writer;
void redis_metrics_source(struct metrics_writer *w, void *arg);

/* ---- replies ---------------------------------------------------------------------------------- */

/* Deep copy of a hiredis reply into scope memory (what every completed operation holds). */
redis_reply *redis_reply_copy(async_scope *scope, const struct redisReply *r);
/* Fills `out` (caller's memory) with a copy of r whose strings and elements live in scope memory. */
void redis_reply_copy_into(async_scope *scope, const struct redisReply *r, redis_reply *out);
/* "redis: <text>" in scope memory, the error of an operation that got an error reply. */
const char *redis_reply_error_text(async_scope *scope, const char *text, size_t len);

#endif
