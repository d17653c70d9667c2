/* topics: the pub/sub demonstrations (docs/streaming.md, "Pub/sub").
 *   GET /v1/topics/{topic}/events: a Server-Sent Events subscription to the topic. It begins with the
 *       comment ": subscribed" (sent once the subscription is in place, so a client knows that what
 *       is published from then on reaches it); every message is an event named after the topic
 *       with the published JSON as its data.
 *   GET /v1/topics/{topic}/ws: a WebSocket subscription to the topic (pub/sub's WebSocket adapter):
 *       every message comes as one WebSocket message (text: the published JSON), and every message
 *       the client sends is published to the topic as it is. A message pub/sub refuses closes the
 *       connection: 1009 over pubsub.max_message_bytes, 1013 while the Redis backend is away or
 *       behind. Served with callbacks; ?mode=await serves it from a coroutine (the adapter's other
 *       form: the subscription belongs to the connection's scope).
 *   POST /v1/topics/{topic}: publishes the JSON body (compact) to the topic: 202 {"topic", "bytes"};
 *       413 over pubsub.max_message_bytes; 503 while the Redis backend is away or too far behind. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "pubsub.h"
#include "stream.h"
#include "websocket.h"
#include "xalloc_internal.h"

typedef struct topics_in {
    const char *topic;
    const json_t *body;
} topics_in;

static const schema_member topics_topic_param[] = {
    SCHEMA_REQUIRED(topics_in, topic,
                    SCHEMA_STRING(.pattern = SCHEMA_PATTERN("^[A-Za-z0-9._:-]{1,128}$"),
                                  .description = "1 to 128 of A-Z a-z 0-9 . _ : -")),
    SCHEMA_END,
};

const route_schema topics_events_schema = {
    .input_size = sizeof(topics_in),
    .path = topics_topic_param,
    .summary = "Subscribe to a topic as Server-Sent Events (one event per message, named after the topic)",
    .responses = (const route_response[]){{200, "a text/event-stream of the topic's messages", NULL}, {0}},
};

const route_schema topics_ws_schema = {
    .input_size = sizeof(topics_in),
    .path = topics_topic_param,
    .summary = "Subscribe to a topic over WebSocket (one message per message); what the client sends is published",
    .responses = (const route_response[]){{101, "a WebSocket of the topic's messages", NULL}, {0}},
};

static const schema_member topics_published_members[] = {
    SCHEMA_UNBOUND("topic", SCHEMA_MEMBER_REQUIRED, SCHEMA_STRING()),
    SCHEMA_UNBOUND("bytes", SCHEMA_MEMBER_REQUIRED, SCHEMA_INTEGER(.min = SCHEMA_GE(0))),
    SCHEMA_END,
};
static const schema topics_published = {.type = SCHEMA_T_OBJECT, .members = topics_published_members};

const route_schema topics_publish_schema = {
    .input_size = sizeof(topics_in),
    .path = topics_topic_param,
    .body = SCHEMA_ANY(),
    .body_at = ROUTE_BODY_AT(topics_in, body),
    .summary = "Publish a JSON value to a topic's subscribers (on every instance with pubsub.backend redis)",
    .responses = (const route_response[]){{202, "accepted for delivery", &topics_published}, {0}},
};

void topics_events_get(http_request *req)
{
    const topics_in *in = http_request_input(req);
    http_stream *s = http_sse_start(req);
    if (!s)
        return; /* 503 at max_async_per_loop, already answered */
    const char *topics[1] = {in->topic};
    if (!pubsub_subscribe_sse(s, topics, 1)) {
        /* Only when pub/sub does not serve this loop (an in-process harness without a server). */
        http_sse_send(s, "error", NULL, "{\"detail\":\"pub/sub is not running\"}", 35);
        http_stream_end(s);
        return;
    }
    http_sse_comment(s, "subscribed");
    /* Nothing more to do here: the stream lives until the client leaves, the server stops, or it is
     * dropped for being too slow; its subscription ends with its request. */
}

void topics_publish(http_request *req)
{
    const topics_in *in = http_request_input(req);
    char *text = json_dumps(in->body, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!text) {
        http_respond_problem(req, 500, NULL, "the body could not be written as JSON");
        return;
    }
    size_t len = strlen(text);
    int rc = pubsub_publish(in->topic, text, len);
    /* jansson's memory carries apiary's allocator tag (lib/json/json_arena.c): give it back its way. */
    json_free_t json_free;
    json_get_alloc_funcs(NULL, &json_free);
    json_free(text);
    switch (rc) {
    case PUBSUB_OK:
        http_respond_json(req, 202, json_pack("{s:s,s:I}", "topic", in->topic, "bytes", (json_int_t)len));
        return;
    case PUBSUB_INVALID: /* the topic passed the schema: only the size is left */
        http_respond_problem(req, 413, json_pack("{s:I}", "bytes", (json_int_t)len),
                             "the message is %zu bytes as compact JSON, over pubsub.max_message_bytes", len);
        return;
    default:
        http_response_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, NULL, rc == PUBSUB_BUSY ? "the pub/sub backend is behind; try again"
                                                               : "the pub/sub backend is unavailable");
        return;
    }
}

/* ---- GET /v1/topics/{topic}/ws ------------------------------------------------------------------ */

/* One per connection: the request (and its topic string) is gone once the connection is a WebSocket. */
typedef struct topics_ws {
    pubsub_sub *sub; /* callback form: ours to end in on_close */
    char topic[PUBSUB_TOPIC_MAX + 1];
} topics_ws;

/* Publishes what the client sent; false (after closing the connection) when pub/sub refused it. */
static bool topics_ws_publish(ws_conn *ws, const topics_ws *t, const ws_message *msg)
{
    int rc = pubsub_publish(t->topic, msg->data, msg->len);
    if (rc == PUBSUB_OK)
        return true;
    if (rc == PUBSUB_INVALID)
        ws_close(ws, WS_CLOSE_TOO_BIG, "the message is over pubsub.max_message_bytes");
    else
        ws_close(ws, WS_CLOSE_TRY_AGAIN_LATER, "the pub/sub backend is unavailable or behind; try again");
    return false;
}

static void topics_ws_open(ws_conn *ws, void *arg)
{
    topics_ws *t = arg;
    t->sub = pubsub_subscribe_ws(ws, NULL, t->topic);
    if (!t->sub)
        ws_close(ws, WS_CLOSE_INTERNAL_ERROR, "pub/sub is not running");
}

static void topics_ws_message(ws_conn *ws, const ws_message *msg, void *arg)
{
    topics_ws_publish(ws, arg, msg);
}

static void topics_ws_closed(ws_conn *ws, unsigned code, const char *reason, void *arg)
{
    (void)ws;
    (void)code;
    (void)reason;
    topics_ws *t = arg;
    pubsub_unsubscribe(t->sub); /* NULL (coroutine form, or never subscribed) is a no-op */
    free(t);
}

/* The coroutine form: the subscription lives in the connection's scope and ends with it. on_close
 * (after the scope has ended) frees `t`, so nothing here touches it once an await was cancelled. */
static void topics_ws_run(ws_conn *ws, async_scope *scope, void *arg)
{
    topics_ws *t = arg;
    if (!pubsub_subscribe_ws(ws, scope, t->topic)) {
        ws_close(ws, WS_CLOSE_INTERNAL_ERROR, "pub/sub is not running");
        return;
    }
    for (;;) {
        async_op *op = async_await(ws_receive(ws));
        if (op->status != ASYNC_OK || !topics_ws_publish(ws, t, op->value))
            return;
    }
}

void topics_ws_get(http_request *req)
{
    const topics_in *in = http_request_input(req);
    const char *mode = http_request_query(req, "mode");
    bool await = mode && strcmp(mode, "await") == 0;
    topics_ws *t = xcalloc(1, sizeof(*t));
    snprintf(t->topic, sizeof(t->topic), "%s", in->topic); /* the schema bounds it at 128 */
    ws_options opts = {
        .on_open = await ? NULL : topics_ws_open,
        .on_message = await ? NULL : topics_ws_message,
        .run = await ? topics_ws_run : NULL,
        .on_close = topics_ws_closed,
        .arg = t,
    };
    if (!ws_upgrade(req, &opts))
        free(t); /* answered 426/400/403: no callback will run */
}
