/* topics: the pub/sub demonstrations (docs/streaming.md, "Pub/sub").
 *   GET /v1/topics/{topic}/events: a Server-Sent Events subscription to the topic. It begins with the
 *       comment ": subscribed" (sent once the subscription is in place, so a client knows that what
 *       is published from then on reaches it); every message is an event named after the topic
 *       with the published JSON as its data.
 *   POST /v1/topics/{topic}: publishes the JSON body (compact) to the topic: 202 {"topic", "bytes"};
 *       413 over pubsub.max_message_bytes; 503 while the Redis backend is away or too far behind. */
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "pubsub.h"
#include "stream.h"

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
