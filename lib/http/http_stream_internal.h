/* http_stream_internal: what the connection (http_conn.c) and the streaming files (http_stream.c,
 * http_sse.c, http_body_stream.c) tell each other. The public side is include/apiary/stream.h. */
#ifndef APIARY_HTTP_STREAM_INTERNAL_H
#define APIARY_HTTP_STREAM_INTERNAL_H

#include <event2/event_struct.h>
#include <stdbool.h>
#include <stdint.h>

#include "stream.h"

struct http_conn;

/* A streamed answer; lives in its request's arena, found from the connection (conn->stream). */
struct http_stream {
    http_request *req;
    struct http_conn *conn;
    int status;
    bool chunked;      /* HTTP/1.1: chunked transfer coding; HTTP/1.0: the body ends with the connection */
    bool head_only;    /* HEAD: the head is all the client gets */
    bool closed;       /* ended, or the request is going: writes are refused */
    uint64_t bytes;    /* body bytes queued */
    uint64_t writes;   /* pieces queued (the SSE heartbeat sends only when this did not move) */
    uint64_t producer_ms; /* the producer's last write (or the start): timeouts.stream_idle_ms */
    async_op *drain;   /* a pending http_stream_drain, or NULL */
    /* http_stream_on_drain's callback while one waits (kept here, not allocated per wait, so a long
     * stream under backpressure does not grow the request's memory) */
    void (*drain_fn)(struct http_stream *s, bool ok, void *arg);
    void *drain_arg;
    unsigned heartbeat_ms; /* SSE: 0 when none */
    uint64_t heartbeat_seen; /* `writes` when the heartbeat last looked */
    struct event heartbeat;  /* SSE: a persistent loop timer, deleted when the request's scope ends */
};

/* http_stream_write without counting as the producer's activity (timeouts.stream_idle_ms): for what
 * the engine itself sends, the SSE heartbeat. */
int http_stream_queue(http_stream *s, const void *data, size_t len);

/* A request body handed to its handler piece by piece (ROUTE_BODY_STREAM); in the request's arena. */
typedef struct http_body_stream {
    http_request *req;
    bool complete;       /* the whole body was parsed */
    bool delivered_end;  /* a read returned the end */
    bool request_deadline; /* the body is complete and the request deadline runs */
    uint64_t received;   /* bytes handed to the handler */
    uint64_t deadline_ms; /* timeouts.body_ms from the end of the head: 408 when passed before the end */
    bool found_full;     /* the input buffer was found full and nothing was taken since (http_conn.c) */
    bool chunk_in_input; /* `chunk` points into conn->in (not conn->body): that buffer may not move */
    const char *span;    /* parsed body bytes not handed out yet that lie in conn->in (not copied) */
    size_t span_len;     /* ... and how many; conn->body is empty whenever this is not 0 */
    async_op *read;      /* a pending http_body_read, or NULL */
    http_body_chunk chunk;
} http_body_stream;

/* A streamed body's two buffers, each at most this big: the connection's input buffer (one recv reads
 * up to this much; it grows to it when a streamed body starts) and the de-chunked bytes waiting for
 * the handler's next read (the parser feeds only what fits; pieces that lie whole in the input buffer
 * are handed out from there, so a Content-Length body never fills the second). 64 KiB: one read and
 * one continuation of the handler per 64 KiB, at most 128 KiB per upload (issue 25: <= 256 KiB RSS). */
#define HTTP_BODY_STREAM_BUFFER (64 * 1024)

/* http_conn.c, for the streaming files. */
/* Writes the head of a streamed answer to the connection's current request. */
void http_conn_stream_head(struct http_conn *conn, int status, const char *content_type, bool chunked);
/* Bytes were queued: flush them soon, from the loop (never inside the producer's call). */
void http_conn_stream_kick(struct http_conn *conn);
/* The stream ended: count and log the answer, end the request, go on with the next. */
void http_conn_stream_finish(struct http_conn *conn, int status, uint64_t bytes);
/* The handler read what was buffered: parse more of the body soon, from the loop. */
void http_conn_body_kick(struct http_conn *conn);

/* http_stream.c, for http_conn.c. */
/* Output was written to the client: a pending drain may complete. */
void http_stream_flushed(struct http_conn *conn);
/* The server is draining (SIGTERM): the stream ends now (last chunk, then the connection closes). */
void http_stream_server_drain(struct http_conn *conn);

/* http_body_stream.c, for http_conn.c. */
/* A streamed-body request is dispatched: its handler runs from now on. */
void http_body_stream_begin(struct http_conn *conn, http_request *req, uint64_t body_deadline_ms, bool complete);
/* Parsed body bytes are waiting in conn->body, or the body is complete: a pending read may complete. */
void http_body_stream_fed(struct http_conn *conn);
/* True while the parser may feed more body bytes (the buffer has room and the body is not complete). */
bool http_body_stream_wants(const struct http_conn *conn);
/* How many more bytes (raw, framing included) the parser may be given now: what fits in the body buffer. */
size_t http_body_stream_room(const struct http_conn *conn);
/* llhttp parsed `len` body bytes at `at` (in conn->in) of a streamed body: keep them for the handler. */
void http_body_stream_take(struct http_conn *conn, const char *at, size_t len);
/* Body bytes the handler has or will be handed lie in conn->in: it must not be compacted, reset or grown. */
bool http_body_stream_pins_input(const struct http_conn *conn);
/* The input buffer is full and cannot be read into: true when the handler has fallen behind (it was
 * found full before and nothing was parsed or read since) and reading should pause; false the first
 * time, since a handler that takes each piece at once makes room within this loop turn. */
bool http_body_stream_behind(struct http_conn *conn);

#endif
