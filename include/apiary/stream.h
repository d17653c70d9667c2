/* stream: answers sent in pieces (streamed responses, Server-Sent Events) and request bodies taken
 * as they arrive (streamed uploads). docs/streaming.md explains the rules; in short:
 *
 * Streamed responses. http_stream_start sends the status and headers at once; http_stream_write
 * queues body pieces (chunked transfer coding on HTTP/1.1, close-delimited on HTTP/1.0); http_stream_end
 * sends the last chunk, and the connection goes on with its next request (keep-alive). The stream and
 * its request live until the end, the client leaving, or the server stopping: whichever comes first
 * ends the request's scope, which cancels every pending operation (a coroutine's awaits return
 * ASYNC_CANCELLED), so a producer never outlives its client. The stream is the request's: the app never
 * frees it, it is gone once http_stream_end returns, and a write answering HTTP_STREAM_CLOSED means
 * stop producing. Work outside the toolkit that holds the pointer (a timer of your own) is stopped
 * from http_request_on_cancel; subscriptions made with pubsub_subscribe_in end with the scope.
 *
 * Backpressure. A connection holds at most limits.output_buffer_bytes of unsent output: a write that
 * finds the buffer over that bound queues nothing and returns HTTP_STREAM_FULL; wait for room with
 * http_stream_drain (an operation: async_await it, or async_op_then), which completes once the
 * client has read the buffer down to a quarter of the bound. One write may be of any size, so memory
 * stays below the bound plus one piece.
 *
 * Deadlines. timeouts.request_ms bounds a request until its stream starts; a streaming response then
 * has no overall deadline (an event stream may last hours). Instead a client that stops reading is
 * closed after timeouts.write_ms without progress (as for every answer), and the producer is cancelled;
 * with timeouts.stream_idle_ms set (default off), so is a producer that wrote nothing for that long
 * (the connection closes without the last chunk; the SSE heartbeat does not count as writing).
 *
 * Long streams. Every operation a producer awaits stays in the request's memory until the request
 * ends unless it is given back with async_op_release (async.h): a stream awaiting a sleep per event
 * releases each one after its await, and does not grow however long it runs.
 *
 * Streamed request bodies. A route registered with ROUTE_BODY_STREAM gets its handler called as soon
 * as the head is complete, with req->body NULL; it reads the body with http_body_read (awaitable, in
 * memory a piece at a time: at most a few read buffers per connection). Its limit is the route's
 * route_schema.max_body_bytes (else limits.max_body_bytes), the body deadline (timeouts.body_ms) and
 * Expect: 100-continue apply as for a buffered body.
 *
 * Everything here runs on the request's loop thread. */
#ifndef APIARY_STREAM_H
#define APIARY_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "async.h"
#include "http_request.h"

typedef struct http_stream http_stream;

/* http_stream_write's answers. */
#define HTTP_STREAM_OK 0
#define HTTP_STREAM_FULL 1    /* over the output bound: nothing queued; await http_stream_drain */
#define HTTP_STREAM_CLOSED -1 /* ended, the client left, or the server is stopping: stop producing */

/* Sends the head of a streamed answer (the headers added with http_response_header go with it, and so
 * do middleware after hooks') and returns the stream, which lives in the request's memory until the
 * request ends. Takes the request's async place (http_request_async): at max_async_per_loop it
 * answers 503 itself and returns NULL, as it does when the request was already answered. A HEAD
 * request gets the head only: writes are accepted and dropped. */
http_stream *http_stream_start(http_request *req, int status, const char *content_type);
/* Queues `len` bytes as the next piece of the body (len 0 queues nothing). See Backpressure above. */
int http_stream_write(http_stream *s, const void *data, size_t len);
/* True while a write would be accepted (the stream is open and the output is within its bound). */
bool http_stream_writable(const http_stream *s);
/* Completes OK once the unsent output is at most a quarter of the bound (at once, from the loop, when
 * it already is); FAILED ("closed") when the stream ends first. In the request's scope: cancelled
 * with it. One pending drain per stream: a second call returns the same operation. */
async_op *http_stream_drain(http_stream *s);
/* The callback form of http_stream_drain: fn(s, ok, arg) runs from the loop once there is room (ok)
 * or the stream closed (!ok). Never runs after the request ended. */
void http_stream_on_drain(http_stream *s, void (*fn)(http_stream *s, bool ok, void *arg), void *arg);
/* Ends the answer: the last chunk on HTTP/1.1 (the connection carries on with its next request),
 * closing the connection on HTTP/1.0. The request ends with it: its scope, memory and the stream are
 * gone when this returns (a coroutine only keeps its locals). */
void http_stream_end(http_stream *s);
/* The stream's request (valid until the stream ends). */
http_request *http_stream_request(const http_stream *s);
/* Body bytes queued so far. */
uint64_t http_stream_bytes(const http_stream *s);

/* ---- Server-Sent Events (text/event-stream) -------------------------------------------------- */

/* Starts a streamed 200 answer with Content-Type: text/event-stream, Cache-Control: no-cache and
 * X-Accel-Buffering: no (so nginx passes each event on at once), and a heartbeat: a comment line sent
 * whenever nothing was written for sse.heartbeat_ms, so proxies and clients see a live connection.
 * NULL as for http_stream_start. */
http_stream *http_sse_start(http_request *req);
/* Sends one event. `event` and `id` may be NULL (omitted) and must not contain CR, LF or NUL; `data`
 * (len bytes, may be NULL with len 0) is split at every line break (CRLF, LF or CR) into one "data:"
 * line each, as the client joins them back with LF. Returns as http_stream_write; an event or id with
 * a line break is refused (HTTP_STREAM_CLOSED is not returned for that: -2, nothing sent). */
#define HTTP_SSE_INVALID -2
int http_sse_send(http_stream *s, const char *event, const char *id, const char *data, size_t len);
/* Sends "retry: ms", the reconnection delay the client should use. */
int http_sse_retry(http_stream *s, unsigned ms);
/* Sends a comment line (": text"); text must hold no line break. */
int http_sse_comment(http_stream *s, const char *text);
/* The Last-Event-ID header of a reconnecting client (NUL-terminated, request memory), or NULL. */
const char *http_sse_last_event_id(http_request *req);

/* The wire format, for tests and for writers of their own: appends what http_sse_send sends to out
 * (a growing malloc'd string: *out, *len, *cap; free(*out) when done). False for an invalid event/id. */
bool http_sse_format(char **out, size_t *len, size_t *cap, const char *event, const char *id, const char *data,
                     size_t data_len);
/* The chunk-size line of a chunk of `len` bytes ("1a\r\n"), into out (at least 19 bytes); returns its
 * length. The chunk ends with "\r\n"; the last chunk is "0\r\n\r\n". */
size_t http_chunk_header(char *out, size_t len);

/* ---- streamed request bodies (ROUTE_BODY_STREAM) ---------------------------------------------- */

/* The next piece of the body, as an operation: OK with value = an http_body_chunk * (valid until the
 * next http_body_read or the answer), whose len is 0 at the end of the body. When the body cannot be
 * read to the end — the client left mid-body, the route's limit was passed (413) or the body deadline
 * (408), both answered by the engine — the request ends: the pending read is cancelled (a coroutine's
 * await returns ASYNC_CANCELLED, a continuation never runs) and an answer attempted then is dropped.
 * FAILED only for misuse: a route without ROUTE_BODY_STREAM, or a second read while one is pending.
 * NULL at max_async_per_loop (503 answered), as http_request_async. In the request's scope. The
 * handler answers once it has read to the end; answering earlier closes the connection after the
 * answer (the rest of the body is not read). */
typedef struct http_body_chunk {
    const char *data;
    size_t len;
} http_body_chunk;
async_op *http_body_read(http_request *req);
/* Body bytes handed to the handler so far, and whether the end has been read. */
uint64_t http_body_received(const http_request *req);
bool http_body_done(const http_request *req);

#endif
