/* websocket: WebSocket (RFC 6455) on a route. A handler calls ws_upgrade; the engine checks the
 * handshake, answers 101 and the connection becomes a WebSocket served by its loop (frames by wslay).
 *
 * Two ways to serve it:
 *  - callbacks: on_message runs for every whole message (fragments reassembled), on_close once at the
 *    end; send from anywhere on the loop with ws_send.
 *  - a coroutine: `run` runs on a stack of its own, in a scope that lives as long as the connection,
 *    and loops `op = async_await(ws_receive(ws))`. When the peer closes, the receive fails ("closed");
 *    when the connection is gone (peer vanished, server stopping), the scope ends and every await
 *    returns ASYNC_CANCELLED: return then.
 *
 * What the engine does by itself: answers pings, sends a ping after websocket.ping_interval_ms without
 * input and closes a peer silent for websocket.ping_timeout_ms after it; closes 1002 on a protocol
 * error, 1007 on a text message that is not UTF-8, 1009 on a message above
 * websocket.max_message_bytes; bounds what a connection may hold unsent to websocket.send_queue_bytes
 * (a send past it closes the connection 1008 and is counted in /metrics: a consumer that cannot keep up
 * never makes memory grow); closes 1001 when the server drains (SIGTERM); bounds the closing handshake
 * by websocket.close_timeout_ms. WebSocket connections count against max_connections.
 *
 * Ownership. The engine owns the ws_conn: it is valid from on_open (or the start of `run`) until
 * on_close returns (or `run`'s scope ends), and the app never frees it; keep per-connection state with
 * ws_set_user and free it in on_close (or before `run` returns). A received ws_message is valid until
 * the next receive; ws_send copies what it queues. Cancellation: when the connection goes, the
 * coroutine's pending ws_receive / ws_drain (and every other await of its scope) returns
 * ASYNC_CANCELLED, and no callback runs after on_close.
 *
 * Threads. A WebSocket connection belongs to the loop that accepted it: call everything here on that
 * loop's thread (from its callbacks, its coroutine, or code posted to the loop with http_loop_post). */
#ifndef APIARY_WEBSOCKET_H
#define APIARY_WEBSOCKET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "async.h"
#include "http_request.h"

typedef struct ws_conn ws_conn;

typedef enum ws_type {
    WS_TEXT = 1,   /* valid UTF-8 (checked on receipt; the sender's job on send) */
    WS_BINARY = 2,
} ws_type;

/* A whole message (fragments reassembled). Valid during on_message, or in the coroutine form until the
 * next ws_receive; in the coroutine form `data` is also followed by a NUL byte. */
typedef struct ws_message {
    ws_type type;
    const char *data;
    size_t len;
} ws_message;

/* Close codes (RFC 6455 7.4.1). */
enum {
    WS_CLOSE_NORMAL = 1000,
    WS_CLOSE_GOING_AWAY = 1001,      /* the server drains */
    WS_CLOSE_PROTOCOL_ERROR = 1002,
    WS_CLOSE_UNSUPPORTED = 1003,
    WS_CLOSE_NO_STATUS = 1005,       /* reported only: the peer's close carried no code */
    WS_CLOSE_ABNORMAL = 1006,        /* reported only: the connection ended without a closing handshake */
    WS_CLOSE_INVALID_DATA = 1007,    /* text that is not UTF-8 */
    WS_CLOSE_POLICY = 1008,          /* a slow consumer: its send queue was full */
    WS_CLOSE_TOO_BIG = 1009,
    WS_CLOSE_INTERNAL_ERROR = 1011,
    WS_CLOSE_TRY_AGAIN_LATER = 1013,
};

typedef struct ws_options {
    /* Subprotocols the route speaks, in the route's order of preference, NULL-terminated; the first
     * one the client offers (Sec-WebSocket-Protocol) is selected. NULL: none is ever selected. */
    const char *const *subprotocols;
    /* Decides on the Origin header (NULL when the client sent none): false answers 403 problem+json.
     * NULL: every origin is accepted. Runs before the 101, with the request still valid. */
    bool (*check_origin)(http_request *req, const char *origin, void *arg);
    /* Callback form. on_open runs once after the 101 is queued; on_message for every message;
     * on_close once when the connection has ended, with the peer's close code (or 1006, 1005) and
     * reason; the ws_conn is gone after on_close returns. All optional. */
    void (*on_open)(ws_conn *ws, void *arg);
    void (*on_message)(ws_conn *ws, const ws_message *msg, void *arg);
    void (*on_close)(ws_conn *ws, unsigned code, const char *reason, void *arg);
    /* Coroutine form (instead of on_message): runs once, from the upgrade on, in `scope` (the
     * connection's). When it returns, the connection is closed 1000 if still open. */
    void (*run)(ws_conn *ws, async_scope *scope, void *arg);
    void *arg;
} ws_options;

/* From a route's handler (plain or ROUTE_CORO): checks the handshake and, when it is fine, answers
 * 101 Switching Protocols and takes the connection over (true); the request is then over, as after
 * any answer. Otherwise it answers the request itself and returns false: 426 (with
 * Sec-WebSocket-Version: 13) for a request that is no WebSocket upgrade or asks another version, 400
 * for a missing or malformed Sec-WebSocket-Key, 403 when check_origin refuses. With `run`, a
 * connection for which no coroutine stack can be had is closed 1013 (try again later) right after its
 * 101. `opts` is copied; the strings it points to (subprotocols) must outlive the connection. */
bool ws_upgrade(http_request *req, const ws_options *opts);

/* Queues a message. 0 on success; -1 when the connection is closing or closed, or when the message
 * would take its unsent bytes past websocket.send_queue_bytes: the connection is then closed with
 * 1008 (counted in /metrics) and the message dropped. Never blocks, never grows memory past the bound. */
int ws_send(ws_conn *ws, ws_type type, const void *data, size_t len);
static inline int ws_send_text(ws_conn *ws, const char *text, size_t len) { return ws_send(ws, WS_TEXT, text, len); }

/* Starts the closing handshake with `code` (1000..4999, not 1005/1006/1015: those become 1000) and a
 * reason (UTF-8, cut at 123 bytes; NULL for none). Messages already queued go first. No-op when
 * already closing. */
void ws_close(ws_conn *ws, unsigned code, const char *reason);

/* Coroutine form only (NULL in the callback form). */
/* Completes OK with value = a ws_message * (valid until the next ws_receive), FAILED "closed" once the
 * peer closed and every message before its close was received. One receive at a time. */
async_op *ws_receive(ws_conn *ws);
/* Completes OK once the connection's unsent bytes are at most half of websocket.send_queue_bytes
 * (at once when they are), FAILED "closed" when it closes first: a producer that awaits it after its
 * sends is never closed 1008. */
async_op *ws_drain(ws_conn *ws);

/* Unsent bytes the connection holds now (queued and buffered). */
size_t ws_buffered(const ws_conn *ws);
/* The selected subprotocol, or NULL. */
const char *ws_subprotocol(const ws_conn *ws);
/* True once a close was sent or received. */
bool ws_closing(const ws_conn *ws);
/* The peer's close code once received (1005 when its close had none), else 0. */
unsigned ws_close_code(const ws_conn *ws);
/* Free for the application: its per-connection state. */
void ws_set_user(ws_conn *ws, void *user);
void *ws_user(const ws_conn *ws);
http_loop *ws_loop(const ws_conn *ws);

#endif
