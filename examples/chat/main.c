/* chat: chat rooms over apiary's pub/sub (docs/streaming.md "Pub/sub"). Run two or more instances
 * on one Redis ("pubsub": {"backend": "redis"}) behind nginx, and a message typed in a page served by
 * one instance appears in the pages served by every other.
 *
 *   GET /                           the page (HTML and a few lines of plain JavaScript, no CDN)
 *   GET /rooms/{room}/events        the room as Server-Sent Events: one "message" event per message
 *   POST /rooms/{room}/messages     {"name": "...", "text": "..."} -> published to the room
 *
 * Transport. Messages go down as SSE and up as POSTs today, because WebSocket is not in the library
 * yet. Both directions meet pub/sub in one function each (chat_subscribe, chat_publish), which is
 * what a WebSocket route would call: its on_open subscribes the connection to the room (pub/sub's
 * WebSocket adapter) and its on_message hands the text to chat_publish. The page's two calls
 * (new EventSource, fetch POST) become one `new WebSocket(...)`, onmessage and send. */
#include <stdio.h>
#include <string.h>

#include <apiary/apiary.h>

/* The page. Rooms are topics "chat.ROOM"; a message is the JSON {"name","text"} as published. */
static const char chat_page[] =
    "<!doctype html>\n"
    "<html><head><meta charset=\"utf-8\"><title>apiary chat</title>\n"
    "<style>body{font-family:sans-serif;max-width:40em;margin:2em auto}#log{border:1px solid #ccc;"
    "height:20em;overflow-y:auto;padding:.5em;white-space:pre-wrap}</style></head>\n"
    "<body><h1>apiary chat: <span id=\"room\"></span></h1>\n"
    "<div id=\"log\"></div>\n"
    "<form id=\"form\"><input id=\"name\" placeholder=\"name\" size=\"8\" value=\"guest\">"
    "<input id=\"text\" placeholder=\"message\" size=\"40\" autocomplete=\"off\"><button>send</button></form>\n"
    "<script>\n"
    "const room = new URLSearchParams(location.search).get('room') || 'lobby';\n"
    "document.getElementById('room').textContent = room;\n"
    "const log = document.getElementById('log');\n"
    "function show(line) { const d = document.createElement('div'); d.textContent = line;"
    " log.appendChild(d); log.scrollTop = log.scrollHeight; }\n"
    "const events = new EventSource('/rooms/' + encodeURIComponent(room) + '/events');\n"
    "events.onopen = () => { document.body.dataset.connected = 'yes'; };\n"
    "events.onmessage = (e) => { const m = JSON.parse(e.data); show(m.name + ': ' + m.text); };\n"
    "document.getElementById('form').onsubmit = (e) => {\n"
    "  e.preventDefault();\n"
    "  const text = document.getElementById('text');\n"
    "  if (!text.value) return;\n"
    "  fetch('/rooms/' + encodeURIComponent(room) + '/messages', {method: 'POST',\n"
    "    headers: {'Content-Type': 'application/json'},\n"
    "    body: JSON.stringify({name: document.getElementById('name').value, text: text.value})});\n"
    "  text.value = '';\n"
    "};\n"
    "</script></body></html>\n";

typedef struct chat_in {
    const char *room;
    const char *name;
    const char *text;
} chat_in;

static const schema_member chat_room_param[] = {
    SCHEMA_REQUIRED(chat_in, room, SCHEMA_STRING(.pattern = SCHEMA_PATTERN("^[A-Za-z0-9_-]{1,64}$"))),
    SCHEMA_END,
};
static const schema_member chat_message_members[] = {
    SCHEMA_REQUIRED(chat_in, name, SCHEMA_STRING(.min_length = 1, .max_length = 32)),
    SCHEMA_REQUIRED(chat_in, text, SCHEMA_STRING(.min_length = 1, .max_length = 1000)),
    SCHEMA_END,
};
static const route_schema chat_events_schema = {
    .input_size = sizeof(chat_in),
    .path = chat_room_param,
    .summary = "The room's messages as Server-Sent Events",
};
static const route_schema chat_post_schema = {
    .input_size = sizeof(chat_in),
    .path = chat_room_param,
    .body = SCHEMA_OBJECT(chat_in, chat_message_members),
    .summary = "Say something in the room",
    .responses = (const route_response[]){{202, "published", NULL}, {0}},
};

static void chat_topic(char *out, size_t cap, const char *room) { snprintf(out, cap, "chat.%s", room); }

/* The one place messages go up: from a POST today, from a WebSocket's on_message later. */
static int chat_publish(const char *room, const char *name, const char *text)
{
    char topic[80];
    chat_topic(topic, sizeof(topic), room);
    json_t *msg = json_pack("{s:s,s:s}", "name", name, "text", text);
    char *data = json_dumps(msg, JSON_COMPACT);
    json_decref(msg);
    if (!data)
        return PUBSUB_INVALID;
    int rc = pubsub_publish(topic, data, strlen(data));
    json_free_t json_free;
    json_get_alloc_funcs(NULL, &json_free); /* apiary's jansson allocator hands out tagged blocks */
    json_free(data);
    return rc;
}

/* SSE delivery: each message as an unnamed event, so the page's onmessage gets it. */
static void chat_deliver(pubsub_sub *sub, const pubsub_message *msg, void *arg)
{
    (void)sub;
    http_stream *s = arg;
    if (http_sse_send(s, NULL, NULL, msg->data, msg->len) == HTTP_STREAM_FULL)
        http_stream_end(s); /* too slow: the page's EventSource reconnects */
}

/* The one place messages go down: an SSE stream today, a WebSocket connection later. */
static bool chat_subscribe(http_request *req, http_stream *s, const char *room)
{
    char topic[80];
    chat_topic(topic, sizeof(topic), room);
    return pubsub_subscribe_in(http_request_async(req), http_request_loop(req), topic, chat_deliver, s) != NULL;
}

static void chat_index(http_request *req)
{
    http_respond_raw(req, 200, "text/html; charset=utf-8", chat_page, sizeof(chat_page) - 1);
}

static void chat_events(http_request *req)
{
    const chat_in *in = http_request_input(req);
    http_stream *s = http_sse_start(req);
    if (!s)
        return;
    if (!chat_subscribe(req, s, in->room)) {
        http_stream_end(s);
        return;
    }
    http_sse_retry(s, 1000);
    http_sse_comment(s, "subscribed");
}

static void chat_post(http_request *req)
{
    const chat_in *in = http_request_input(req);
    int rc = chat_publish(in->room, in->name, in->text);
    if (rc == PUBSUB_OK) {
        http_respond_json(req, 202, json_pack("{s:b}", "published", 1));
    } else if (rc == PUBSUB_INVALID) {
        http_respond_problem(req, 413, NULL, "the message is too long");
    } else {
        http_response_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, NULL, "the chat is unavailable for a moment");
    }
}

int main(int argc, char **argv)
{
    apiary_app *app = apiary_app_new("chat");
    apiary_app_route(app, HTTP_METHOD_GET, "/", chat_index, 0);
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/rooms/{room}/events", chat_events, 0, &chat_events_schema);
    apiary_app_route_schema(app, HTTP_METHOD_POST, "/rooms/{room}/messages", chat_post, 0, &chat_post_schema);
    return apiary_app_main(app, argc, argv);
}
