/* stream: the streaming demonstrations (docs/streaming.md), each a coroutine handler.
 *   GET /v1/events?count=N&interval_ms=M[&multiline=true][&callback=true]: Server-Sent Events, N events
 *       one every M ms, ids 1..N; a client reconnecting with Last-Event-ID: K gets K+1..N. With
 *       callback=true the same stream is driven by continuations instead of the coroutine.
 *   GET /v1/stream?chunks=N&bytes=B: a streamed answer of N pieces of B bytes, waiting for room
 *       whenever the client reads slower than it is written (the backpressure demonstration).
 *   POST /v1/upload[?expect_bytes=N]: hashes the body as it arrives (SHA-256, libsodium) and answers
 *       {"bytes": N, "sha256": "..."}; the body is never held whole. With expect_bytes, a body of
 *       another length is 422, answered as soon as it runs past N (before the rest is read). */
#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "stream.h"

/* ---- GET /v1/events ------------------------------------------------------------------------------- */

typedef struct events_in {
    int64_t count;
    int64_t interval_ms;
    bool multiline;
    bool callback;
} events_in;

const route_schema events_schema = {
    ROUTE_INPUT(events_in, .count = 10, .interval_ms = 1000),
    .query = (const schema_member[]){
        SCHEMA_OPTIONAL(events_in, count, SCHEMA_INTEGER(.min = SCHEMA_GE(0), .max = SCHEMA_LE(100000))),
        SCHEMA_OPTIONAL(events_in, interval_ms, SCHEMA_INTEGER(.min = SCHEMA_GE(0), .max = SCHEMA_LE(3600000))),
        SCHEMA_OPTIONAL(events_in, multiline, SCHEMA_BOOLEAN()),
        SCHEMA_OPTIONAL(events_in, callback, SCHEMA_BOOLEAN()),
        SCHEMA_END},
    .summary = "Server-Sent Events: count events, one every interval_ms; resumes after Last-Event-ID",
    .responses = (const route_response[]){{200, "a text/event-stream of tick events", NULL}, {0}},
};

/* Last-Event-ID as a sequence number of ours; anything else starts from the beginning. */
static int64_t events_resume_after(http_request *req, int64_t count)
{
    const char *last = http_sse_last_event_id(req);
    if (!last || !*last || strlen(last) > 18)
        return 0;
    int64_t n = 0;
    for (const char *p = last; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        n = n * 10 + (*p - '0');
    }
    return n > count ? count : n;
}

/* Sends event `seq`: http_sse_send's answer (HTTP_STREAM_FULL: nothing was queued, send it again
 * once there is room). Not inlined: its buffers then live only while it runs, not in the frame of the
 * coroutine handler, whose stack down to its await is what an idle stream keeps (docs/streaming.md). */
__attribute__((noinline)) static int events_send(http_stream *s, int64_t seq, int64_t count, bool multiline)
{
    json_t *data = json_pack("{s:I,s:I}", "seq", (json_int_t)seq, "count", (json_int_t)count);
    char text[128]; /* jansson's own allocator may not be malloc: dump into a buffer of ours */
    size_t len = json_dumpb(data, text, sizeof(text), multiline ? JSON_INDENT(2) : JSON_COMPACT);
    json_decref(data);
    char id[24];
    snprintf(id, sizeof(id), "%lld", (long long)seq);
    return http_sse_send(s, "tick", id, text, len);
}

/* The callback form (?callback=true): no coroutine waits between events, the request's memory holds
 * this struct and the stream, and each step is a continuation. The handler itself returns at once, so
 * an idle stream keeps no coroutine stack (docs/streaming.md, Memory per stream). */
typedef struct events_cb {
    http_stream *s;
    async_scope *scope;
    int64_t seq, count;
    unsigned interval_ms;
    bool multiline;
    bool wait_first; /* sleep before sending seq */
} events_cb;

static void events_cb_run(events_cb *e);

/* Continuations never run once the request ended (client gone, server stopping): e is valid here. */
static void events_cb_slept(async_op *op, void *arg)
{
    async_op_release(op); /* a stream may run for days: give each sleep back (docs/async.md) */
    events_cb *e = arg;
    e->wait_first = false;
    events_cb_run(e);
}

static void events_cb_drained(http_stream *s, bool ok, void *arg)
{
    (void)s;
    if (ok)
        events_cb_run(arg);
}

static void events_cb_run(events_cb *e)
{
    while (e->seq <= e->count) {
        if (e->wait_first && e->interval_ms) {
            async_op_then(async_sleep(e->scope, e->interval_ms), events_cb_slept, e);
            return;
        }
        int rc = events_send(e->s, e->seq, e->count, e->multiline);
        if (rc == HTTP_STREAM_FULL) {
            http_stream_on_drain(e->s, events_cb_drained, e); /* then send seq again */
            return;
        }
        if (rc == HTTP_STREAM_CLOSED)
            return;
        e->seq++;
        e->wait_first = true;
    }
    http_stream_end(e->s);
}

void events_get(http_request *req)
{
    const events_in *in = http_request_input(req);
    int64_t first = events_resume_after(req, in->count) + 1;
    http_stream *s = http_sse_start(req);
    if (!s)
        return;
    async_scope *scope = http_request_async(req);
    http_sse_retry(s, 2000);
    if (in->callback) {
        events_cb *e = async_scope_alloc(scope, sizeof(*e));
        *e = (events_cb){s, scope, first, in->count, (unsigned)in->interval_ms, in->multiline, first > 1};
        events_cb_run(e);
        return;
    }
    for (int64_t seq = first; seq <= in->count; seq++) {
        if (seq > first || first > 1) {
            if (in->interval_ms) {
                /* Nothing points into this stack while it sleeps: after a second it is given back. */
                async_op *slept = async_await_idle(async_sleep(scope, (unsigned)in->interval_ms));
                if (slept->status != ASYNC_OK)
                    return; /* the client left or the server stops: the request is gone */
                async_op_release(slept); /* a stream may run for days: give each sleep back */
            }
        }
        int rc;
        while ((rc = events_send(s, seq, in->count, in->multiline)) == HTTP_STREAM_FULL) {
            /* A client not reading: nothing was queued; wait for room, then send this event again. */
            async_op *drained = async_await_idle(http_stream_drain(s));
            if (drained->status != ASYNC_OK)
                return;
            async_op_release(drained);
        }
        if (rc == HTTP_STREAM_CLOSED)
            return;
    }
    http_stream_end(s);
}

/* ---- GET /v1/stream ------------------------------------------------------------------------------- */

typedef struct stream_in {
    int64_t chunks;
    int64_t bytes;
} stream_in;

const route_schema stream_schema = {
    ROUTE_INPUT(stream_in, .chunks = 16, .bytes = 1024),
    .query = (const schema_member[]){
        SCHEMA_OPTIONAL(stream_in, chunks, SCHEMA_INTEGER(.min = SCHEMA_GE(0), .max = SCHEMA_LE(1000000))),
        SCHEMA_OPTIONAL(stream_in, bytes, SCHEMA_INTEGER(.min = SCHEMA_GE(1), .max = SCHEMA_LE(65536))),
        SCHEMA_END},
    .summary = "A streamed answer of chunks pieces of bytes bytes each (chunked on HTTP/1.1)",
    .responses = (const route_response[]){{200, "text/plain, streamed", NULL}, {0}},
};

void stream_get(http_request *req)
{
    const stream_in *in = http_request_input(req);
    int64_t chunks = in->chunks;
    size_t bytes = (size_t)in->bytes;
    http_stream *s = http_stream_start(req, 200, "text/plain");
    if (!s)
        return;
    char *piece = malloc(bytes); /* not on the coroutine's small stack */
    for (size_t i = 0; i < bytes; i++)
        piece[i] = (char)('a' + i % 26);
    if (bytes)
        piece[bytes - 1] = '\n';
    for (int64_t i = 0; i < chunks; i++) {
        int rc = http_stream_write(s, piece, bytes);
        if (rc == HTTP_STREAM_FULL) {
            /* Over the connection's output bound: suspend until the client has read most of it. */
            if (async_await(http_stream_drain(s))->status != ASYNC_OK)
                break;
            i--; /* nothing was queued: write this piece again */
            continue;
        }
        if (rc == HTTP_STREAM_CLOSED)
            break;
    }
    free(piece);
    http_stream_end(s); /* a no-op when the request is already gone */
}

/* ---- POST /v1/upload ------------------------------------------------------------------------------ */

#define UPLOAD_MAX_BYTES (64u * 1024 * 1024)

typedef struct upload_in {
    int64_t expect_bytes; /* -1: any length */
} upload_in;

const route_schema upload_schema = {
    ROUTE_INPUT(upload_in, .expect_bytes = -1),
    .query = (const schema_member[]){
        SCHEMA_OPTIONAL(upload_in, expect_bytes, SCHEMA_INTEGER(.min = SCHEMA_GE(0), .max = SCHEMA_LE(UPLOAD_MAX_BYTES))),
        SCHEMA_END},
    .max_body_bytes = UPLOAD_MAX_BYTES,
    .summary = "Hash a body of up to 64 MiB as it arrives: {\"bytes\": N, \"sha256\": hex}",
    .responses = (const route_response[]){{200, "the body's size and SHA-256", NULL}, {0}},
};

void upload_post(http_request *req)
{
    int64_t expect = ((const upload_in *)http_request_input(req))->expect_bytes;
    crypto_hash_sha256_state *h = malloc(sizeof(*h)); /* 104 bytes, but keep the small stack for calls */
    crypto_hash_sha256_init(h);
    uint64_t total = 0;
    for (;;) {
        async_op *op = http_body_read(req);
        if (!op || async_await(op)->status != ASYNC_OK) {
            free(h); /* the client left mid-body, or the engine answered 408/413: nothing to say */
            return;
        }
        const http_body_chunk *c = op->value;
        if (c->len == 0)
            break;
        crypto_hash_sha256_update(h, (const unsigned char *)c->data, c->len);
        total += c->len;
        async_op_release(op); /* one read per piece: a big body would keep every one (docs/async.md) */
        if (expect >= 0 && total > (uint64_t)expect) {
            /* Answering before the end: the engine closes the connection after this answer, the
             * rest of the body is never read. */
            free(h);
            http_respond_problem(req, 422, json_pack("{s:I}", "expect_bytes", (json_int_t)expect),
                                 "the body is longer than expect_bytes");
            return;
        }
    }
    if (expect >= 0 && total != (uint64_t)expect) {
        free(h);
        http_respond_problem(req, 422, json_pack("{s:I,s:I}", "expect_bytes", (json_int_t)expect, "bytes",
                                                 (json_int_t)total),
                             "the body is shorter than expect_bytes");
        return;
    }
    unsigned char digest[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(h, digest);
    free(h);
    char hex[crypto_hash_sha256_BYTES * 2 + 1];
    sodium_bin2hex(hex, sizeof(hex), digest, sizeof(digest));
    http_respond_json(req, 200, json_pack("{s:I,s:s}", "bytes", (json_int_t)total, "sha256", hex));
}
