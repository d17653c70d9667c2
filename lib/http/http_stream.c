/* http_stream: answers sent in pieces (include/apiary/stream.h). The head goes out at once, without a
 * Content-Length; each piece becomes one chunk (HTTP/1.1) or plain bytes (HTTP/1.0, close-delimited)
 * appended to the connection's output buffer, which the loop flushes. The output bound
 * (limits.output_buffer_bytes) is enforced here: a write finding it full queues nothing, and a
 * drain operation completes once the client has read the buffer down to a quarter of it, so a slow
 * reader costs at most the bound plus one piece.
 *
 * Writes never send inside the producer's call: they queue and ask the loop to flush (an active
 * write event), so a failing send (client gone) ends the request from the loop's stack, never under
 * a producer still holding the stream. */
#include <string.h>

#include "async_internal.h"
#include "http_internal.h"
#include "log.h"

static size_t http_stream_bound(const http_stream *s) { return s->conn->loop->settings->output_buffer_bytes; }

/* The request is going (answered, client gone, deadline, server stopping): a coroutine unwinding
 * after that still holds the stream, whose memory lives until it returns, but must write nothing. */
static bool http_stream_gone(const http_stream *s)
{
    return s->closed || s->conn->dead || s->conn->stream != s ||
           (s->req->_scope && async_scope_closing(s->req->_scope));
}

size_t http_chunk_header(char *out, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char digits[16];
    size_t n = 0;
    do
        digits[n++] = hex[len & 15];
    while ((len >>= 4) != 0);
    size_t k = 0;
    while (n)
        out[k++] = digits[--n];
    out[k++] = '\r';
    out[k++] = '\n';
    return k;
}

http_stream *http_stream_start(http_request *req, int status, const char *content_type)
{
    if (req->_answered) {
        log_error("route %s: a stream was started on an answered request",
                  req->route_name ? req->route_name : "(none)");
        return NULL;
    }
    http_conn *conn = req->_conn;
    if (conn->dead)
        return NULL;
    if (!http_request_async(req))
        return NULL; /* at max_async_per_loop: 503 was answered */
    req->_answered = true; /* the head is the answer: any http_respond_* from now on is a bug */
    http_stream *s = arena_alloc(&req->arena, sizeof(*s));
    memset(s, 0, sizeof(*s));
    s->req = req;
    s->conn = conn;
    s->status = status;
    s->chunked = req->http_minor >= 1;
    s->head_only = req->method == HTTP_METHOD_HEAD;
    s->producer_ms = http_conn_now_ms();
    conn->stream = s;
    http_conn_stream_head(conn, status, content_type, s->chunked);
    http_conn_rearm_timer(conn); /* a stream has no request deadline (stream.h: Deadlines) */
    http_conn_stream_kick(conn);
    return s;
}

bool http_stream_writable(const http_stream *s)
{
    return !http_stream_gone(s) && buf_pending(&s->conn->out) <= http_stream_bound(s);
}

int http_stream_write(http_stream *s, const void *data, size_t len)
{
    int rc = http_stream_queue(s, data, len);
    /* The producer spoke: timeouts.stream_idle_ms counts from now. The connection's timer is not
     * touched (one write each event would re-arm it): when it fires early it arms itself for the rest. */
    if (rc == HTTP_STREAM_OK && len)
        s->producer_ms = http_conn_now_ms();
    return rc;
}

int http_stream_queue(http_stream *s, const void *data, size_t len)
{
    if (http_stream_gone(s))
        return HTTP_STREAM_CLOSED;
    if (buf_pending(&s->conn->out) > http_stream_bound(s))
        return HTTP_STREAM_FULL;
    if (len == 0)
        return HTTP_STREAM_OK; /* an empty chunk would end a chunked body */
    s->bytes += len;
    s->writes++;
    if (s->head_only)
        return HTTP_STREAM_OK;
    buf *out = &s->conn->out;
    buf_cache *cache = &s->conn->loop->cache;
    if (s->chunked) {
        char line[20];
        buf_append(out, cache, line, http_chunk_header(line, len));
        buf_append(out, cache, data, len);
        buf_append(out, cache, "\r\n", 2);
    } else {
        buf_append(out, cache, data, len);
    }
    http_conn_stream_kick(s->conn);
    return HTTP_STREAM_OK;
}

async_op *http_stream_drain(http_stream *s)
{
    if (s->drain)
        return s->drain;
    async_op *op = async_future(s->req->_scope);
    if (http_stream_gone(s)) {
        async_fail(op, "closed");
        return op;
    }
    if (buf_pending(&s->conn->out) <= http_stream_bound(s) / 4) {
        async_resolve(op, NULL); /* its continuation still runs from the loop, never from here */
        return op;
    }
    s->drain = op;
    return op;
}

static void http_stream_drained(async_op *op, void *arg)
{
    http_stream *s = arg;
    bool ok = op->status == ASYNC_OK;
    void (*fn)(http_stream *, bool, void *) = s->drain_fn;
    void *fn_arg = s->drain_arg;
    s->drain_fn = NULL;
    s->drain_arg = NULL;
    /* Before fn, which may end the request (and its memory with op): a stream waits for room again
     * and again, each wait's operation goes back to the request for the next (async_op_release). */
    async_op_release(op);
    fn(s, ok, fn_arg);
}

void http_stream_on_drain(http_stream *s, void (*fn)(http_stream *s, bool ok, void *arg), void *arg)
{
    if (s->drain_fn) {
        log_error("route %s: http_stream_on_drain while a drain callback waits; ignored",
                  s->req->route_name ? s->req->route_name : "(none)");
        return;
    }
    s->drain_fn = fn;
    s->drain_arg = arg;
    async_op_then(http_stream_drain(s), http_stream_drained, s);
}

void http_stream_flushed(http_conn *conn)
{
    http_stream *s = conn->stream;
    if (s->drain && buf_pending(&conn->out) <= http_stream_bound(s) / 4) {
        async_op *op = s->drain;
        s->drain = NULL;
        async_resolve(op, NULL);
    }
}

/* Marks the stream closed and fails a pending drain (its continuation, if any, runs from the loop
 * unless the request's scope ends first, which cancels it). */
static void http_stream_close(http_stream *s)
{
    s->closed = true;
    if (s->drain) {
        async_op *op = s->drain;
        s->drain = NULL;
        async_fail(op, "closed");
    }
}

void http_stream_end(http_stream *s)
{
    if (http_stream_gone(s))
        return;
    http_stream_close(s);
    http_conn *conn = s->conn;
    if (s->chunked && !s->head_only)
        buf_append(&conn->out, &conn->loop->cache, "0\r\n\r\n", 5);
    http_conn_stream_finish(conn, s->status, s->bytes); /* the request, and s, end here */
}

void http_stream_server_drain(http_conn *conn)
{
    http_stream *s = conn->stream;
    log_info("loop %u: server stopping: ending the stream of %s", conn->loop->id,
             s->req->route_name ? s->req->route_name : "a request");
    conn->keep_alive = false; /* the last chunk, then the connection closes */
    http_stream_end(s);
}

http_request *http_stream_request(const http_stream *s) { return s->req; }

uint64_t http_stream_bytes(const http_stream *s) { return s->bytes; }
