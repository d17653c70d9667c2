/* http_body_stream: a request body handed to its handler as it arrives (ROUTE_BODY_STREAM,
 * include/apiary/stream.h). The connection parses the body only while the handler has room for it:
 * at most HTTP_BODY_STREAM_BUFFER de-chunked bytes past what the handler last read; a read hands out
 * what is there and lets the connection parse on. When nobody
 * reads, the input buffer fills, reading stops and the client's TCP window does the rest, so a body
 * of any size costs the connection its input buffer and one body buffer.
 *
 * A piece that lies whole in the input buffer (a Content-Length body; a chunked one whose chunk does
 * not end within the bytes fed) is handed out where it lies, without a copy: the input buffer is then
 * pinned (http_body_stream_pins_input: it is neither compacted nor grown) until the handler's next read.
 * Pieces split by chunk framing are joined in conn->body.
 *
 * Reading stays on while the handler keeps up: a handler that takes each piece at once (counts it,
 * hashes it) makes room within the same loop turn, so turning the socket's read interest off and on
 * around every piece (two epoll_ctl each way) would be pure cost. Reading pauses only when the input
 * buffer is found full twice with nothing taken in between (http_body_stream_behind). */
#include <string.h>

#include "async_internal.h"
#include "http_internal.h"

void http_body_stream_begin(http_conn *conn, http_request *req, uint64_t body_deadline_ms, bool complete)
{
    http_body_stream *b = arena_alloc(&req->arena, sizeof(*b));
    memset(b, 0, sizeof(*b));
    b->req = req;
    b->complete = complete; /* no body, or one that came whole with the head */
    b->deadline_ms = body_deadline_ms;
    conn->body_stream = b;
    if (!complete) {
        /* The body deadline started at the end of the head and still holds; the request deadline
         * counts from when the body is complete (http_body_stream_fed). */
        conn->deadline_ms = body_deadline_ms;
        conn->deadline_default = false;
    }
}

/* Parsed body bytes not handed out yet: copied into conn->body, or still where they lie in conn->in. */
static size_t http_body_stream_pending(const http_conn *conn)
{
    return conn->body.len + conn->body_stream->span_len;
}

bool http_body_stream_wants(const http_conn *conn)
{
    const http_body_stream *b = conn->body_stream;
    /* Not while the handler holds a piece: appending could move the buffer under it. */
    return b && !b->complete && b->chunk.len == 0 && http_body_stream_pending(conn) < HTTP_BODY_STREAM_BUFFER;
}

size_t http_body_stream_room(const http_conn *conn)
{
    /* De-chunked bytes are never more than the raw ones given: the body buffer stays within the bound. */
    return HTTP_BODY_STREAM_BUFFER - http_body_stream_pending(conn);
}

void http_body_stream_take(http_conn *conn, const char *at, size_t len)
{
    http_body_stream *b = conn->body_stream;
    if (conn->body.len == 0 && b->span_len == 0) {
        /* The common case, a Content-Length body or one long chunk: the piece is handed out where it
         * lies in the input buffer, which does not move until the handler's next read. */
        b->span = at;
        b->span_len = len;
        return;
    }
    if (b->span_len) { /* a second piece in one feed (chunk framing between): join them in conn->body */
        buf_append(&conn->body, &conn->loop->cache, b->span, b->span_len);
        b->span_len = 0;
    }
    buf_append(&conn->body, &conn->loop->cache, at, len);
}

bool http_body_stream_pins_input(const http_conn *conn)
{
    const http_body_stream *b = conn->body_stream;
    return b && (b->span_len || (b->chunk.len && b->chunk_in_input));
}

bool http_body_stream_behind(http_conn *conn)
{
    http_body_stream *b = conn->body_stream;
    if (!b || b->complete)
        return true; /* pipelined bytes behind a request in flight: wait for its answer, as before */
    if (b->found_full)
        return true; /* a whole loop turn and the handler took nothing: it is busy elsewhere */
    /* A handler handed a piece this turn runs before the loop polls again, and its next read makes
     * room (and reads on, http_conn_body_kick). If it does not, the socket is still readable at the
     * next poll, this is called again, and reading pauses: one spare wake-up per stall. */
    b->found_full = true;
    return false;
}

/* Hands what is buffered (or the end) to a pending read. */
static void http_body_stream_deliver(http_conn *conn)
{
    http_body_stream *b = conn->body_stream;
    size_t len = http_body_stream_pending(conn); /* one of the two is empty (http_body_stream_take) */
    if (!b->read || (len == 0 && !b->complete))
        return;
    async_op *op = b->read;
    b->read = NULL;
    b->chunk_in_input = conn->body.len == 0 && len;
    b->chunk = (http_body_chunk){len ? (b->chunk_in_input ? b->span : conn->body.data) : NULL, len};
    b->span_len = 0; /* handed out: pinned by chunk_in_input until the next read */
    b->received += len;
    if (len == 0)
        b->delivered_end = true;
    async_resolve(op, &b->chunk); /* the continuation runs from the loop */
}

void http_body_stream_fed(http_conn *conn)
{
    http_body_stream *b = conn->body_stream;
    b->found_full = false; /* the parser took input: there is room to read again */
    if (b->complete && !b->request_deadline) {
        b->request_deadline = true;
        /* The whole body is in: from now on the request deadline applies, from here. */
        conn->deadline_ms = http_conn_now_ms() + conn->loop->settings->request_timeout_ms;
        conn->deadline_default = false;
        conn->timer_is_deadline = false;
        http_conn_rearm_timer(conn);
    }
    http_body_stream_deliver(conn);
}

async_op *http_body_read(http_request *req)
{
    http_conn *conn = req->_conn;
    async_scope *scope = http_request_async(req);
    if (!scope)
        return NULL; /* at max_async_per_loop: 503 was answered */
    async_op *op = async_future(scope);
    http_body_stream *b = conn->body_stream;
    if (!b || conn->dead) {
        async_fail(op, b ? "closed" : "the route does not stream its body (ROUTE_BODY_STREAM)");
        return op;
    }
    if (b->read) {
        async_fail(op, "a read is already pending");
        return op;
    }
    if (b->delivered_end) {
        b->chunk = (http_body_chunk){NULL, 0};
        async_resolve(op, &b->chunk);
        return op;
    }
    /* What the last read handed out has been used: its room goes back to the parser. */
    if (b->chunk.len) {
        conn->body.len = conn->body.pos = 0;
        b->chunk = (http_body_chunk){NULL, 0};
        b->chunk_in_input = false; /* the input buffer may move again */
        b->found_full = false;
    }
    b->read = op;
    http_body_stream_deliver(conn);
    if (b->read && !b->complete)
        http_conn_body_kick(conn); /* parse what waits in the input buffer; read the socket again */
    return op;
}

uint64_t http_body_received(const http_request *req)
{
    const http_body_stream *b = req->_conn->body_stream;
    return b ? b->received : 0;
}

bool http_body_done(const http_request *req)
{
    const http_body_stream *b = req->_conn->body_stream;
    return b && b->delivered_end;
}
