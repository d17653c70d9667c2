/* ws_echo: GET /v1/ws/echo, the WebSocket demonstration (HttpArena's echo-ws profile): every text and
 * binary message comes back as it was, in order. The default serves it with callbacks (the cheapest
 * per connection: no coroutine stack); ?mode=await serves it from a coroutine that loops on
 * ws_receive and, after each send, awaits ws_drain, so a slow reader slows it down instead of being
 * closed. Subprotocol "echo" is selected when offered. */
#include <string.h>

#include "handlers.h"
#include "websocket.h"

static const char *const ws_echo_protocols[] = {"echo", NULL};

static void ws_echo_on_message(ws_conn *ws, const ws_message *msg, void *arg)
{
    (void)arg;
    ws_send(ws, msg->type, msg->data, msg->len); /* a full send queue closes the connection 1008 */
}

static void ws_echo_run(ws_conn *ws, async_scope *scope, void *arg)
{
    (void)scope;
    (void)arg;
    for (;;) {
        async_op *op = async_await(ws_receive(ws));
        if (op->status != ASYNC_OK)
            return; /* the peer closed ("closed") or the connection is gone (ASYNC_CANCELLED) */
        const ws_message *msg = op->value;
        int sent = ws_send(ws, msg->type, msg->data, msg->len); /* copies the message */
        async_op_release(op); /* a connection may echo for hours: reuse each receive's memory */
        if (sent != 0)
            return;
        async_op *drained = async_await(ws_drain(ws));
        if (drained->status != ASYNC_OK)
            return;
        async_op_release(drained);
    }
}

void ws_echo_get(http_request *req)
{
    const char *mode = http_request_query(req, "mode");
    bool await = mode && strcmp(mode, "await") == 0;
    ws_options opts = {
        .subprotocols = ws_echo_protocols,
        .on_message = await ? NULL : ws_echo_on_message,
        .run = await ? ws_echo_run : NULL,
    };
    ws_upgrade(req, &opts); /* answers the request either way: 101, or 426/400 problem+json */
}
