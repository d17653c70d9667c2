/* ws: WebSocket connections (websocket.h). ws_upgrade checks the handshake (ws_handshake.c), answers
 * 101 through http_conn_upgrade and takes the connection over: its read, write and timer events are
 * re-assigned to the functions here, its buffers stay (conn->in: bytes the client sent past the
 * request; conn->out: what is unsent), and it stays in its loop's list, so limits and the drain count
 * it. Frames are wslay's (event API): wslay reads through ws_recv_cb, straight from the socket, and
 * writes through ws_send_cb, which appends to conn->out; we write conn->out to the socket. A message
 * sent while the connection holds no wslay context (idle, see below) is framed straight into
 * conn->out instead, so a broadcast does not take a context per connection.
 *
 * The fast path. Most traffic is whole, small data frames, one message each. While a connection holds
 * no wslay context, ws_fast_read reads the socket into conn->in and delivers such frames itself
 * (unmasked in place, UTF-8 checked as wslay's would be); the echo's answer is then framed by ws_send
 * straight into conn->out, so an echoed message costs one recv, one send and no wslay at all. The
 * first frame it does not take (control frames, fragments, anything wslay refuses, frames above a
 * buffer block) takes a context, and wslay goes on from that frame in conn->in.
 *
 * Every read, write and close happens in ws_pump, which only runs from this connection's own events
 * on the loop's stack. Anything else (a send from another connection's callback or from the coroutine,
 * a close, the drain) only queues and activates the write event, so no user callback ever runs inside
 * a call the user made, and a coroutine never sees its connection freed under it.
 *
 * Bounds. Unsent bytes (wslay's queue + conn->out) are checked before every queued message against
 * websocket.send_queue_bytes: past it the connection is closed 1008 (a consumer that cannot keep up)
 * and memory stays at the bound plus one close frame. Received messages are bounded by wslay
 * (websocket.max_message_bytes, 1009); in the coroutine form, reading pauses while a message's worth
 * waits unreceived. Reads take at most WS_READ_BUDGET bytes a wake-up, so one fast sender cannot hold
 * its loop.
 *
 * Idle memory. A wslay context is about 9 KiB (its frame buffer alone is 4 KiB), more than everything
 * else an idle WebSocket holds. So a connection holds one only while it is busy: when a pump ends on a
 * frame boundary (ws_track follows the frame heads of what wslay is given), outside a fragmented
 * message, with nothing queued and no close under way, the context goes back to its loop's pool
 * (ws_ctx_pool) and the next event takes one again. A context there is as good as new: wslay keeps no
 * state between whole frames but its settings, which are set again on every take. Contexts are shared,
 * so their user_data is the pool, whose `current` names the connection wslay is working for.
 *
 * Teardown. One path: http_conn_force_close → the engine calls ws_on_closed (upgrade ops) → the
 * coroutine's scope ends (its awaits return ASYNC_CANCELLED and it unwinds), on_close runs, everything
 * is freed. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <wslay/wslay.h>

#include "coro_internal.h"
#include "http_internal.h"
#include "log.h"
#include "schema_internal.h"
#include "websocket.h"
#include "ws_internal.h"
#include "xalloc_internal.h"

#define WS_READ_BUDGET 65536 /* bytes read per wake-up before the loop serves others */
#define WS_REASON_MAX 123
#define WS_CTX_POOL_MAX 64   /* idle wslay contexts a loop keeps for reuse */

/* A loop's idle wslay contexts (HTTP_LOOP_SLOT_WS). */
typedef struct ws_ctx_pool {
    struct ws_conn *current; /* the connection the wslay call in progress works for */
    size_t count;
    wslay_event_context_ptr ctx[WS_CTX_POOL_MAX];
} ws_ctx_pool;

/* A received message waiting for ws_receive (coroutine form). */
typedef struct ws_msg_node {
    struct ws_msg_node *next;
    ws_message msg;
    char data[]; /* len + 1 bytes */
} ws_msg_node;

typedef enum ws_timer_kind {
    WS_TIMER_NONE,
    WS_TIMER_HEARTBEAT, /* ping after ping_interval_ms of silence; dead after ping_timeout_ms more */
    WS_TIMER_CLOSING,   /* the closing handshake's bound */
} ws_timer_kind;

struct ws_conn {
    http_conn *conn;
    http_loop *loop;
    wslay_event_context_ptr ctx;
    ws_options opts;
    const char *subprotocol;
    void *user;
    /* coroutine form */
    async_scope *scope;
    async_op *recv_op;      /* a pending ws_receive */
    async_op *drain_op;     /* a pending ws_drain */
    ws_msg_node *rq_head, *rq_tail;
    size_t rq_bytes;
    ws_msg_node *current;   /* the message last handed out, freed at the next receive */
    /* state */
    size_t read_budget;
    uint64_t last_input_ms, ping_sent_ms;
    ws_timer_kind timer_kind;
    bool awaiting_pong;
    bool closing;         /* a close was queued or received */
    bool discarding;      /* our close is out and wslay reads no more: drain input until EOF */
    bool reading, writing;
    bool read_paused;     /* coroutine form: a message's worth waits unreceived */
    bool more_input;      /* the read budget ran out with input left: pump again next turn */
    bool fail;            /* the socket failed or the peer vanished: tear down */
    bool io_gone;         /* ws_recv_cb saw EOF or a socket error */
    bool drained;         /* no recv this pump: the last came back short (the socket is empty), or the
                           * pump was not run by the read event */
    bool proto_error;     /* wslay refused a frame: its close goes out as 1002 (ws_send_cb) */
    bool in_message;      /* ws_track: a fragmented message is under way */
    uint8_t fr_head_len;  /* ws_track: bytes of the current frame head seen so far */
    uint8_t fr_head[14];
    uint64_t fr_payload_left; /* ws_track: payload bytes of the current frame not yet given to wslay */
    bool in_pump;
    bool counted_slow;
    unsigned peer_code;   /* the peer's close code once received (1005: none in its frame) */
    char peer_reason[WS_REASON_MAX + 1];
};

static void ws_pump(ws_conn *ws, bool readable);
static void ws_schedule(ws_conn *ws);

static http_settings const *ws_settings(const ws_conn *ws) { return ws->loop->settings; }

/* ---- wslay contexts ---------------------------------------------------------------------------- */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *data, size_t len, int flags, void *user);
static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user);
static void ws_on_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user);

static void ws_ctx_pool_free(void *arg)
{
    ws_ctx_pool *pool = arg;
    while (pool->count)
        wslay_event_context_free(pool->ctx[--pool->count]);
    free(pool);
}

static ws_ctx_pool *ws_pool_of(http_loop *loop)
{
    ws_ctx_pool *pool = http_loop_local(loop, HTTP_LOOP_SLOT_WS);
    if (!pool) {
        pool = xcalloc(1, sizeof(*pool));
        http_loop_set_local(loop, HTTP_LOOP_SLOT_WS, pool, ws_ctx_pool_free);
    }
    return pool;
}

/* The connection's wslay context, taken from the pool (or made) when it has none. */
static wslay_event_context_ptr ws_ctx(ws_conn *ws)
{
    if (ws->ctx)
        return ws->ctx;
    ws_ctx_pool *pool = ws_pool_of(ws->loop);
    if (pool->count) {
        ws->ctx = pool->ctx[--pool->count];
    } else {
        struct wslay_event_callbacks cbs = {
            .recv_callback = ws_recv_cb, .send_callback = ws_send_cb, .on_msg_recv_callback = ws_on_msg_cb};
        if (wslay_event_context_server_init(&ws->ctx, &cbs, pool) != 0) {
            log_error("out of memory (a WebSocket context)"); /* as xalloc does everywhere else */
            abort();
        }
    }
    wslay_event_config_set_max_recv_msg_length(ws->ctx, ws->loop->settings->ws_max_message_bytes);
    return ws->ctx;
}

/* Follows the frame heads of the bytes given to wslay, to know when they end on a frame boundary. */
static void ws_track(ws_conn *ws, const uint8_t *p, size_t n)
{
    while (n) {
        if (ws->fr_payload_left) {
            size_t take = n < ws->fr_payload_left ? n : (size_t)ws->fr_payload_left;
            ws->fr_payload_left -= take;
            p += take;
            n -= take;
            continue;
        }
        ws->fr_head[ws->fr_head_len++] = *p++;
        n--;
        if (ws->fr_head_len < 2)
            continue;
        uint8_t len7 = ws->fr_head[1] & 0x7f;
        size_t ext = len7 == 126 ? 2 : len7 == 127 ? 8 : 0;
        size_t need = 2 + ext + ((ws->fr_head[1] & 0x80) ? 4 : 0);
        if (ws->fr_head_len < need)
            continue;
        uint64_t len = len7;
        if (ext) {
            len = 0;
            for (size_t i = 0; i < ext; i++)
                len = len << 8 | ws->fr_head[2 + i];
        }
        unsigned opcode = ws->fr_head[0] & 0x0f;
        bool fin = ws->fr_head[0] & 0x80;
        if (opcode == WSLAY_TEXT_FRAME || opcode == WSLAY_BINARY_FRAME)
            ws->in_message = !fin;
        else if (opcode == WSLAY_CONTINUATION_FRAME && fin)
            ws->in_message = false;
        ws->fr_payload_left = len;
        ws->fr_head_len = 0;
    }
}

/* After a pump: gives the context back when wslay holds nothing of this connection's. */
static void ws_ctx_release_if_idle(ws_conn *ws)
{
    if (!ws->ctx || ws->closing || ws->in_message || ws->fr_head_len || ws->fr_payload_left || ws->read_paused ||
        ws->more_input || buf_pending(&ws->conn->in) || wslay_event_get_queued_msg_count(ws->ctx) ||
        !wslay_event_want_read(ws->ctx) || wslay_event_get_close_sent(ws->ctx))
        return; /* the last two: a context that closed would close the next connection that takes it */
    ws_ctx_pool *pool = ws_pool_of(ws->loop);
    if (pool->count < WS_CTX_POOL_MAX)
        pool->ctx[pool->count++] = ws->ctx;
    else
        wslay_event_context_free(ws->ctx);
    ws->ctx = NULL;
}

/* ---- wslay callbacks --------------------------------------------------------------------------- */

static ssize_t ws_recv_cb(wslay_event_context_ptr ctx, uint8_t *data, size_t len, int flags, void *user)
{
    (void)flags;
    ws_conn *ws = ((ws_ctx_pool *)user)->current;
    http_conn *conn = ws->conn;
    buf *in = &conn->in;
    if (in->data && in->len > in->pos) {
        /* Bytes the client sent along with its upgrade request come first. */
        size_t n = in->len - in->pos < len ? in->len - in->pos : len;
        memcpy(data, in->data + in->pos, n);
        ws_track(ws, data, n);
        in->pos += n;
        if (in->pos == in->len)
            buf_release(in, &ws->loop->cache);
        ws->last_input_ms = http_conn_now_ms();
        return (ssize_t)n;
    }
    if (ws->drained) {
        /* The last recv came back short (the socket is empty), or this pump is not the read event's:
         * asking would only cost a system call to hear EAGAIN (one per message at one message per
         * wake-up). */
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (ws->read_paused || ws->read_budget == 0) {
        ws->more_input = ws->read_budget == 0;
        wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
        return -1;
    }
    if (len > ws->read_budget)
        len = ws->read_budget;
    for (;;) {
        ssize_t n = recv(conn->fd, data, len, 0);
        if (n > 0) {
            ws_track(ws, data, (size_t)n);
            ws->drained = (size_t)n < len;
            ws->read_budget -= (size_t)n;
            ws->last_input_ms = http_conn_now_ms();
            ws->awaiting_pong = false; /* any input proves the peer alive */
            return n;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            wslay_event_set_error(ctx, WSLAY_ERR_WOULDBLOCK);
            return -1;
        }
        /* EOF or a reset: ws_pump ends the connection (after writing our close if the peer sent its own) */
        ws->io_gone = true;
        wslay_event_set_error(ctx, WSLAY_ERR_CALLBACK_FAILURE);
        return -1;
    }
}

/* Frames go to conn->out whole (we never say WOULDBLOCK), so wslay's own queue is empty after every
 * wslay_event_send and the bound is checked on one number. */
static ssize_t ws_send_cb(wslay_event_context_ptr ctx, const uint8_t *data, size_t len, int flags, void *user)
{
    (void)ctx;
    (void)flags;
    ws_conn *ws = ((ws_ctx_pool *)user)->current;
    if (ws->proto_error && len == 2 && data[0] == 0x88 && data[1] == 0x00) {
        /* wslay answers some protocol errors (a fragmented control frame, one longer than 125 bytes)
         * with a close without a code and has no way to take it back: it leaves with 1002 instead. */
        static const uint8_t close_1002[4] = {0x88, 0x02, WS_CLOSE_PROTOCOL_ERROR >> 8, WS_CLOSE_PROTOCOL_ERROR & 0xff};
        buf_append(&ws->conn->out, &ws->loop->cache, close_1002, sizeof(close_1002));
        return (ssize_t)len;
    }
    buf_append(&ws->conn->out, &ws->loop->cache, data, len);
    return (ssize_t)len;
}

/* The connection is closing: the closing handshake gets websocket.close_timeout_ms. */
static void ws_arm_closing(ws_conn *ws)
{
    ws->closing = true;
    if (ws->timer_kind != WS_TIMER_CLOSING) {
        ws->timer_kind = WS_TIMER_CLOSING;
        unsigned ms = ws_settings(ws)->ws_close_timeout_ms;
        struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
        evtimer_add(&ws->conn->timer_ev, &tv);
    }
}

/* Queues our close; wslay sends nothing after it. */
static void ws_start_close(ws_conn *ws, unsigned code, const char *reason, bool stop_reading)
{
    wslay_event_context_ptr ctx = ws_ctx(ws);
    if (!ws->closing || !wslay_event_get_close_sent(ctx)) {
        size_t rlen = reason ? strlen(reason) : 0;
        if (rlen > WS_REASON_MAX) {
            rlen = WS_REASON_MAX;
            while (rlen && ((unsigned char)reason[rlen] & 0xC0) == 0x80)
                rlen--; /* cut before a character, not inside one: the reason stays UTF-8 */
        }
        wslay_event_queue_close(ctx, (uint16_t)code, (const uint8_t *)reason, rlen);
    }
    if (stop_reading)
        wslay_event_shutdown_read(ctx);
    ws_arm_closing(ws);
    ws_schedule(ws);
}

static void ws_deliver(ws_conn *ws, ws_type type, const uint8_t *data, size_t len)
{
    HTTP_STAT_ADD(ws->loop, ws_messages_received, 1);
    if (ws->opts.run) {
        ws_msg_node *m = xmalloc(sizeof(*m) + len + 1);
        m->next = NULL;
        if (len)
            memcpy(m->data, data, len); /* an empty message's data is NULL */
        m->data[len] = '\0';
        m->msg = (ws_message){type, m->data, len};
        if (ws->recv_op) {
            async_op *op = ws->recv_op;
            ws->recv_op = NULL;
            free(ws->current);
            ws->current = m;
            async_resolve(op, &m->msg);
            return;
        }
        if (ws->rq_tail)
            ws->rq_tail->next = m;
        else
            ws->rq_head = m;
        ws->rq_tail = m;
        ws->rq_bytes += len + 1;
        if (ws->rq_bytes >= ws_settings(ws)->ws_max_message_bytes)
            ws->read_paused = true; /* a message's worth waits: the peer's TCP window slows it down */
        return;
    }
    if (ws->opts.on_message) {
        /* Straight from the frame's buffer (wslay's, or conn->in on the fast path), which has no room
         * for a NUL: the callback form gets none. */
        ws_message msg = {type, len ? (const char *)data : "", len};
        ws->opts.on_message(ws, &msg, ws->opts.arg);
    }
}

/* A whole text or binary message, from wslay (ws_on_msg_cb) or from the fast path (ws_fast_read). */
static void ws_on_data(ws_conn *ws, unsigned opcode, const uint8_t *data, size_t len)
{
    if (opcode == WSLAY_TEXT_FRAME) {
        /* An empty message's pointer is NULL: not even NULL + 0 may be computed (UBSan, fuzz_websocket). */
        if (len && !schema_utf8_valid((const char *)data, len)) {
            ws_start_close(ws, WS_CLOSE_INVALID_DATA, "a text message is not valid UTF-8", true);
            return;
        }
        if (!ws->closing)
            ws_deliver(ws, WS_TEXT, data, len);
        return;
    }
    if (!ws->closing)
        ws_deliver(ws, WS_BINARY, data, len);
}

static void ws_on_msg_cb(wslay_event_context_ptr ctx, const struct wslay_event_on_msg_recv_arg *arg, void *user)
{
    (void)ctx;
    ws_conn *ws = ((ws_ctx_pool *)user)->current;
    switch (arg->opcode) {
    case WSLAY_TEXT_FRAME:
    case WSLAY_BINARY_FRAME:
        ws_on_data(ws, arg->opcode, arg->msg, arg->msg_length);
        return;
    case WSLAY_CONNECTION_CLOSE: {
        ws->peer_code = arg->status_code ? arg->status_code : WS_CLOSE_NO_STATUS;
        size_t rlen = arg->msg_length > 2 ? arg->msg_length - 2 : 0;
        if (rlen > WS_REASON_MAX)
            rlen = WS_REASON_MAX;
        if (rlen)
            memcpy(ws->peer_reason, arg->msg + 2, rlen);
        ws->peer_reason[rlen] = '\0';
        ws->closing = true; /* wslay queued the echo of its close */
        if (ws->recv_op && !ws->rq_head) {
            async_op *op = ws->recv_op;
            ws->recv_op = NULL;
            async_fail(op, "closed");
        }
        ws_arm_closing(ws);
        return;
    }
    case WSLAY_PONG:
        ws->awaiting_pong = false;
        return;
    default:
        return; /* pings: wslay queued the pong */
    }
}

/* ---- I/O --------------------------------------------------------------------------------------- */

static size_t ws_unsent(const ws_conn *ws)
{
    return buf_pending(&ws->conn->out) + (ws->ctx ? wslay_event_get_queued_msg_length(ws->ctx) : 0);
}

/* Unmasks a client frame's payload in place, eight bytes at a time. */
static void ws_unmask(uint8_t *p, size_t n, const uint8_t key[4])
{
    uint32_t k32;
    memcpy(&k32, key, 4);
    uint64_t k64 = (uint64_t)k32 << 32 | k32; /* both halves alike: the key's byte order stays */
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, 8);
        w ^= k64;
        memcpy(p + i, &w, 8);
    }
    for (; i < n; i++)
        p[i] ^= key[i & 3];
}

/* The fast path, for a connection that holds no wslay context (so wslay holds nothing of it and
 * conn->in starts on a frame boundary): reads the socket into conn->in and delivers the whole,
 * unfragmented, masked text and binary frames there itself, without wslay (a context taken and given
 * back, its frame parser and the copy of every message it queues cost about three quarters of a
 * message's instructions in user space). A partial frame waits in conn->in for the next read. Stops at
 * the first frame it does not take — a control frame, a fragment, reserved bits, no mask, a length
 * past the message bound or one that does not fit a buffer block, a non-minimal length — and returns
 * true: wslay then reads that frame and the rest from conn->in first (ws_recv_cb), as it would have,
 * so every refusal (1002, 1009) stays wslay's. Also true when a callback took a context (ws_close). */
static bool ws_fast_read(ws_conn *ws)
{
    http_conn *conn = ws->conn;
    buf *in = &conn->in;
    for (;;) {
        /* Every whole frame already here. */
        while (buf_pending(in) >= 2) {
            uint8_t *p = (uint8_t *)in->data + in->pos;
            size_t avail = buf_pending(in);
            unsigned opcode = p[0] & 0x0f;
            uint8_t len7 = p[1] & 0x7f;
            if ((p[0] & 0xf0) != 0x80 || !(p[1] & 0x80) || len7 == 127 ||
                (opcode != WSLAY_TEXT_FRAME && opcode != WSLAY_BINARY_FRAME))
                return true; /* not FIN, reserved bits, unmasked, a 64-bit length or not data */
            size_t head = len7 == 126 ? 8 : 6;
            if (avail < head)
                break;
            size_t len = len7 == 126 ? (size_t)p[2] << 8 | p[3] : len7;
            if ((len7 == 126 && len < 126) || len > ws_settings(ws)->ws_max_message_bytes ||
                head + len > BUF_BLOCK_BYTES)
                return true;
            if (avail < head + len)
                break;
            uint8_t *payload = p + head;
            ws_unmask(payload, len, payload - 4);
            in->pos += head + len;
            ws_on_data(ws, opcode, len ? payload : NULL, len);
            if (ws->ctx || ws->closing || ws->fail || ws->read_paused) {
                /* A context was taken (ws_close, a full send queue): wslay reads on. Or the coroutine's
                 * queue is full: the rest waits in conn->in until ws_receive makes room. */
                if (buf_pending(in) == 0)
                    buf_release(in, &ws->loop->cache);
                return ws->ctx != NULL;
            }
        }
        if (buf_pending(in) == 0)
            buf_release(in, &ws->loop->cache);
        else
            buf_compact(in); /* a partial frame (at most a block) moves to the front */
        if (ws->drained)
            return false; /* the last recv came back short: the socket is empty */
        if (ws->read_budget == 0) {
            ws->more_input = true;
            return false;
        }
        buf_reserve(in, &ws->loop->cache, 1);
        size_t want = in->cap - in->len;
        if (want > ws->read_budget)
            want = ws->read_budget;
        ssize_t n = recv(conn->fd, in->data + in->len, want, 0);
        if (n > 0) {
            in->len += (size_t)n;
            ws->drained = (size_t)n < want;
            ws->read_budget -= (size_t)n;
            ws->last_input_ms = http_conn_now_ms();
            ws->awaiting_pong = false; /* any input proves the peer alive */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (buf_pending(in) == 0)
            buf_release(in, &ws->loop->cache);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return false;
        ws->io_gone = true; /* EOF or a reset without a close frame: the peer is gone */
        ws->fail = true;
        return false;
    }
}

/* The one place that reads, writes and ends the connection; only from this connection's events.
 * `readable`: run by the read event. Otherwise (a send, the timer, a resumed reader) the socket is not
 * read: had it input, its read event would say so, and a recv would only hear EAGAIN (one system call
 * per message of a pub/sub broadcast, and an input block taken and given back for it). */
static void ws_pump(ws_conn *ws, bool readable)
{
    http_conn *conn = ws->conn;
    ws_ctx_pool *pool = ws_pool_of(ws->loop);
    pool->current = ws;
    ws->in_pump = true;
    ws->more_input = false;
    bool wslay_reads = ws->ctx != NULL;
    if (!ws->discarding) {
        ws->read_budget = WS_READ_BUDGET;
        ws->drained = !readable;
        if (!ws->ctx && !ws->read_paused)
            wslay_reads = ws_fast_read(ws);
        if (wslay_reads)
            ws_ctx(ws);
    }
    if (ws->discarding) {
        char sink[4096];
        ssize_t n;
        size_t total = 0;
        while ((n = recv(conn->fd, sink, sizeof(sink), 0)) > 0 && (total += (size_t)n) < WS_READ_BUDGET)
            ;
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            ws->fail = true; /* the peer closed after our close: done */
    } else if (wslay_reads && !ws->fail && wslay_event_want_read(ws->ctx)) {
        int r = wslay_event_recv(ws->ctx);
        if (r != 0 && !ws->io_gone && r != WSLAY_ERR_NOMEM) {
            /* wslay refused a frame (a control frame fragmented or longer than 125 bytes) and queued
             * a close without a code, or none: 1002 either way. */
            ws->proto_error = true;
            ws_start_close(ws, WS_CLOSE_PROTOCOL_ERROR, NULL, true);
        } else if (r != 0 && !wslay_event_get_close_received(ws->ctx)) {
            ws->fail = true; /* the peer is gone; one that sent its close first still gets ours */
        } else if (!ws->closing && !wslay_event_want_read(ws->ctx)) {
            /* wslay refused a frame on its own (a reserved opcode): it queued its close (1002) and
             * reads no more. The connection is closing like any other: bounded by the close timeout,
             * and its context never goes back to the pool. */
            ws_arm_closing(ws);
        }
    }
    if (!ws->fail && ws->ctx && wslay_event_send(ws->ctx) != 0)
        ws->fail = true;
    buf *out = &conn->out;
    while (!ws->fail && buf_pending(out) > 0) {
        ssize_t n = send(conn->fd, out->data + out->pos, buf_pending(out), MSG_NOSIGNAL);
        if (n > 0) {
            out->pos += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        ws->fail = true;
    }
    ws->in_pump = false;
    pool->current = NULL;
    if (ws->fail) {
        http_conn_force_close(conn); /* ws_on_closed frees ws */
        return;
    }
    if (buf_pending(out) == 0)
        buf_release(out, &ws->loop->cache); /* an idle WebSocket holds no buffer */
    else if (out->pos >= buf_pending(out))
        buf_compact(out);
    if (ws->drain_op && ws_unsent(ws) <= ws_settings(ws)->ws_send_queue_bytes / 2) {
        async_op *op = ws->drain_op;
        ws->drain_op = NULL;
        async_resolve(op, NULL);
    }
    /* No context: nothing of ours is in wslay, no close was sent and frames are wanted. */
    bool close_out = ws->ctx && wslay_event_get_close_sent(ws->ctx) && buf_pending(out) == 0;
    if (close_out && wslay_event_get_close_received(ws->ctx)) {
        /* Both closes exchanged and ours is written: the server closes TCP first (RFC 6455 7.1.1). */
        http_conn_force_close(conn);
        return;
    }
    if (close_out && !ws->discarding && !wslay_event_want_read(ws->ctx)) {
        /* We closed for an error and read no more frames: let the peer read our close before the
         * socket goes, reading what it still sends so the close is no reset (as the engine lingers). */
        shutdown(conn->fd, SHUT_WR);
        ws->discarding = true;
    }
    bool want_write = buf_pending(out) > 0;
    if (want_write != ws->writing) {
        if (want_write)
            event_add(&conn->write_ev, NULL);
        else
            event_del(&conn->write_ev);
        ws->writing = want_write;
    }
    bool want_read = ws->discarding || ((!ws->ctx || wslay_event_want_read(ws->ctx)) && !ws->read_paused);
    if (want_read != ws->reading) {
        if (want_read)
            event_add(&conn->read_ev, NULL);
        else
            event_del(&conn->read_ev);
        ws->reading = want_read;
    }
    if (ws->more_input)
        event_active(&conn->read_ev, EV_READ, 0);
    ws_ctx_release_if_idle(ws);
}

/* From outside ws_pump: have the loop pump this connection soon. */
static void ws_schedule(ws_conn *ws)
{
    if (!ws->in_pump)
        event_active(&ws->conn->write_ev, EV_WRITE, 0);
}

static void ws_on_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    ws_pump(arg, what & EV_READ);
}

static void ws_arm_heartbeat(ws_conn *ws, uint64_t ms)
{
    ws->timer_kind = WS_TIMER_HEARTBEAT;
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(&ws->conn->timer_ev, &tv);
}

static void ws_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    ws_conn *ws = arg;
    const http_settings *s = ws_settings(ws);
    if (ws->timer_kind == WS_TIMER_CLOSING) {
        /* The peer did not finish the closing handshake (or read our close) in time. */
        HTTP_STAT_ADD(ws->loop, timeouts, 1);
        http_conn_force_close(ws->conn);
        return;
    }
    uint64_t now = http_conn_now_ms();
    if (ws->awaiting_pong) {
        if (now - ws->ping_sent_ms >= s->ws_ping_timeout_ms) {
            log_debug("loop %u: a WebSocket peer answered no ping within %u ms: closed", ws->loop->id,
                      s->ws_ping_timeout_ms);
            HTTP_STAT_ADD(ws->loop, timeouts, 1);
            http_conn_force_close(ws->conn);
            return;
        }
        ws_arm_heartbeat(ws, s->ws_ping_timeout_ms - (now - ws->ping_sent_ms));
        return;
    }
    uint64_t silent = now - ws->last_input_ms;
    if (silent < s->ws_ping_interval_ms) {
        ws_arm_heartbeat(ws, s->ws_ping_interval_ms - silent);
        return;
    }
    struct wslay_event_msg ping = {WSLAY_PING, NULL, 0};
    wslay_event_queue_msg(ws_ctx(ws), &ping);
    ws->awaiting_pong = true;
    ws->ping_sent_ms = now;
    ws_arm_heartbeat(ws, s->ws_ping_timeout_ms);
    ws_pump(ws, false);
}

/* ---- engine hooks ------------------------------------------------------------------------------ */

static void ws_on_drain(void *arg)
{
    ws_conn *ws = arg;
    if (!ws->closing)
        ws_start_close(ws, WS_CLOSE_GOING_AWAY, "server shutting down", false);
}

static void ws_free_queue(ws_conn *ws)
{
    for (ws_msg_node *m = ws->rq_head, *next; m; m = next) {
        next = m->next;
        free(m);
    }
    ws->rq_head = ws->rq_tail = NULL;
    free(ws->current);
    ws->current = NULL;
}

static void ws_on_closed(void *arg)
{
    ws_conn *ws = arg;
    http_loop *loop = ws->loop;
    ws->closing = true;
    ws->recv_op = ws->drain_op = NULL; /* cancelled with the scope below */
    if (ws->scope) {
        async_scope_free(ws->scope); /* the coroutine's awaits return ASYNC_CANCELLED and it returns */
        ws->scope = NULL;
    }
    if (ws->opts.on_close) {
        unsigned code = ws->peer_code ? ws->peer_code : WS_CLOSE_ABNORMAL;
        ws->opts.on_close(ws, code, ws->peer_reason, ws->opts.arg);
    }
    ws_free_queue(ws);
    if (ws->ctx)
        wslay_event_context_free(ws->ctx); /* perhaps mid-frame: never back to the pool */
    HTTP_STAT_ADD(loop, ws_open, (uint64_t)-1);
    free(ws);
}

static const http_upgrade_ops ws_upgrade_ops = {ws_on_drain, ws_on_closed};

/* ---- the upgrade ------------------------------------------------------------------------------- */

static void ws_coro_main(void *arg)
{
    ws_conn *ws = arg;
    ws->opts.run(ws, ws->scope, ws->opts.arg);
    /* The scope ends with the connection; a coroutine that returned first closes it normally. */
    if (ws->scope && !ws->closing)
        ws_close(ws, WS_CLOSE_NORMAL, NULL);
}

typedef struct ws_spawn {
    ws_conn *ws;
    bool ok;
} ws_spawn;

static void ws_spawn_outside(void *arg)
{
    ws_spawn *s = arg;
    s->ok = async_coro_spawn_named(s->ws->scope, "websocket", ws_coro_main, s->ws);
}

static void ws_post(void *loop, void (*fn)(void *arg), void *arg) { http_loop_post(loop, fn, arg); }

bool ws_upgrade(http_request *req, const ws_options *opts)
{
    const char *detail;
    const char *key = http_request_header(req, "Sec-WebSocket-Key");
    ws_handshake_verdict v = ws_handshake_check(
        req->method == HTTP_METHOD_GET, req->http_minor, http_request_header(req, "Upgrade"),
        http_request_header(req, "Connection"), http_request_header(req, "Sec-WebSocket-Version"), key, &detail);
    if (v != WS_HS_OK) {
        http_response_header(req, "Sec-WebSocket-Version", "13");
        if (v != WS_HS_KEY)
            http_response_header(req, "Upgrade", "websocket");
        http_respond_problem(req, v == WS_HS_KEY ? 400 : 426, NULL, "%s", detail);
        return false;
    }
    if (opts->check_origin && !opts->check_origin(req, http_request_header(req, "Origin"), opts->arg)) {
        http_respond_problem(req, 403, NULL, "this origin may not open a WebSocket here");
        return false;
    }
    http_conn *conn = req->_conn;
    http_loop *loop = conn->loop;
    ws_conn *ws = xcalloc(1, sizeof(*ws));
    ws->conn = conn;
    ws->loop = loop;
    ws->opts = *opts;
    ws->subprotocol = ws_select_subprotocol(http_request_header(req, "Sec-WebSocket-Protocol"), opts->subprotocols);
    if (opts->run) {
        ws->scope = async_scope_new(loop->base);
        async_scope_use_timeouts(ws->scope, &loop->timeouts);
        async_scope_set_poster(ws->scope, ws_post, loop);
        async_scope_watch(ws->scope, loop->settings->slow_callback_ms, http_loop_report_slow, loop,
                          req->route_name ? req->route_name : "websocket");
        async_scope_set_context(ws->scope, ((http_req_slot *)req)->context);
    }
    char accept[WS_ACCEPT_LEN + 1];
    ws_accept_key(key, strlen(key), accept);
    char head[512];
    int n = snprintf(head, sizeof(head),
                     "HTTP/1.1 101 Switching Protocols\r\nServer: apiary\r\nDate: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s%s%s",
                     loop->date, accept, ws->subprotocol ? "Sec-WebSocket-Protocol: " : "",
                     ws->subprotocol ? ws->subprotocol : "", ws->subprotocol ? "\r\n" : "");
    const void *context = ((http_req_slot *)req)->context;
    if (n < 0 || (size_t)n >= sizeof(head) || !http_conn_upgrade(conn, head, (size_t)n, &ws_upgrade_ops, ws)) {
        if (ws->scope)
            async_scope_free(ws->scope);
        free(ws);
        if (n >= 0 && (size_t)n >= sizeof(head))
            http_respond_problem(req, 500, NULL, "the subprotocol name is too long");
        return false;
    }
    /* From here the request is gone: only conn, loop and ws remain. */
    HTTP_STAT_ADD(loop, ws_open, 1);
    HTTP_STAT_ADD(loop, ws_opened, 1);
    event_assign(&conn->read_ev, loop->base, conn->fd, EV_READ | EV_PERSIST, ws_on_io, ws);
    event_assign(&conn->write_ev, loop->base, conn->fd, EV_WRITE | EV_PERSIST, ws_on_io, ws);
    evtimer_assign(&conn->timer_ev, loop->base, ws_on_timer, ws);
    ws->last_input_ms = http_conn_now_ms();
    if (ws_settings(ws)->ws_ping_interval_ms)
        ws_arm_heartbeat(ws, ws_settings(ws)->ws_ping_interval_ms);
    if (loop->draining)
        ws_start_close(ws, WS_CLOSE_GOING_AWAY, "server shutting down", false);
    ws_schedule(ws); /* writes the 101 and reads frames already here, from the loop */
    if (opts->run) {
        ws_spawn s = {ws, false};
        const void *outer = async_context_swap(context);
        async_coro_outside(ws_spawn_outside, &s);
        async_context_swap(outer);
        if (!s.ok)
            ws_start_close(ws, WS_CLOSE_TRY_AGAIN_LATER, "no memory for a coroutine stack", true);
    } else if (opts->on_open) {
        opts->on_open(ws, opts->arg);
    }
    return true;
}

/* ---- the API ----------------------------------------------------------------------------------- */

int ws_send(ws_conn *ws, ws_type type, const void *data, size_t len)
{
    if (ws->closing)
        return -1;
    const http_settings *s = ws_settings(ws);
    if (ws_unsent(ws) + len + 14 > s->ws_send_queue_bytes) {
        /* A consumer that cannot keep up: it is told why (if it ever reads again) and let go. */
        if (!ws->counted_slow) {
            ws->counted_slow = true;
            HTTP_STAT_ADD(ws->loop, ws_slow_closed, 1);
            log_info("loop %u: a WebSocket peer does not read fast enough (%zu bytes unsent): closing 1008",
                     ws->loop->id, ws_unsent(ws));
        }
        ws_start_close(ws, WS_CLOSE_POLICY, "send queue full: the client does not read fast enough", true);
        return -1;
    }
    uint8_t opcode = type == WS_TEXT ? WSLAY_TEXT_FRAME : WSLAY_BINARY_FRAME;
    if (!ws->ctx) {
        /* Idle (no wslay context, so wslay holds nothing of ours and order is kept): write the frame
         * to conn->out ourselves. A broadcast (pub/sub) sends to thousands of idle connections in one
         * turn, before any of them pumps; taking a ~9 KiB context for each would make all of them
         * live at once (10,000 subscribers: +90 MiB of RSS that malloc keeps). A server frame is a
         * head and the payload, unmasked. */
        uint8_t head[10];
        size_t hl = 2;
        head[0] = 0x80 | opcode; /* FIN: we never fragment */
        if (len < 126) {
            head[1] = (uint8_t)len;
        } else if (len <= 0xffff) {
            head[1] = 126;
            head[2] = (uint8_t)(len >> 8);
            head[3] = (uint8_t)len;
            hl = 4;
        } else {
            head[1] = 127;
            for (int i = 0; i < 8; i++)
                head[2 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
            hl = 10;
        }
        buf_append(&ws->conn->out, &ws->loop->cache, head, hl);
        if (len)
            buf_append(&ws->conn->out, &ws->loop->cache, data, len);
    } else {
        struct wslay_event_msg m = {opcode, data, len};
        if (wslay_event_queue_msg(ws->ctx, &m) != 0)
            return -1;
    }
    HTTP_STAT_ADD(ws->loop, ws_messages_sent, 1);
    ws_schedule(ws);
    return 0;
}

void ws_close(ws_conn *ws, unsigned code, const char *reason)
{
    if (ws->closing)
        return;
    if (code < 1000 || code > 4999 || code == 1005 || code == 1006 || code == 1015)
        code = WS_CLOSE_NORMAL;
    ws_start_close(ws, code, reason, false);
}

async_op *ws_receive(ws_conn *ws)
{
    if (!ws->scope)
        return NULL;
    async_op *op = async_future(ws->scope);
    free(ws->current);
    ws->current = NULL;
    if (ws->rq_head) {
        ws_msg_node *m = ws->rq_head;
        ws->rq_head = m->next;
        if (!ws->rq_head)
            ws->rq_tail = NULL;
        ws->rq_bytes -= m->msg.len + 1;
        ws->current = m;
        if (ws->read_paused && ws->rq_bytes < ws_settings(ws)->ws_max_message_bytes) {
            ws->read_paused = false;
            ws_schedule(ws);
        }
        async_resolve(op, &m->msg);
    } else if (ws->peer_code || (ws->closing && ws->ctx && !wslay_event_want_read(ws->ctx))) {
        async_fail(op, "closed");
    } else {
        ws->recv_op = op;
    }
    return op;
}

async_op *ws_drain(ws_conn *ws)
{
    if (!ws->scope)
        return NULL;
    async_op *op = async_future(ws->scope);
    if (ws->closing)
        async_fail(op, "closed");
    else if (ws_unsent(ws) <= ws_settings(ws)->ws_send_queue_bytes / 2)
        async_resolve(op, NULL);
    else
        ws->drain_op = op;
    return op;
}

size_t ws_buffered(const ws_conn *ws) { return ws_unsent(ws); }
const char *ws_subprotocol(const ws_conn *ws) { return ws->subprotocol; }
bool ws_closing(const ws_conn *ws) { return ws->closing; }
unsigned ws_close_code(const ws_conn *ws) { return ws->peer_code; }
void ws_set_user(ws_conn *ws, void *user) { ws->user = user; }
void *ws_user(const ws_conn *ws) { return ws->user; }
http_loop *ws_loop(const ws_conn *ws) { return ws->loop; }
