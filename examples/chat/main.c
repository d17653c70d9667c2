/* chat: chat rooms over WebSocket and apiary's pub/sub (docs/streaming.md "Pub/sub"). Run two or
 * more instances on one Redis ("pubsub": {"backend": "redis"}) behind nginx, and a message typed in a
 * page served by one instance appears in the pages served by every other.
 *
 *   GET /                           the page (HTML and a few lines of plain JavaScript, no CDN)
 *   GET /rooms/{room}/ws            the room as a WebSocket: the page sends {"name": "...", "text":
 *                                   "..."} on it and gets every message of the room on it
 *   POST /rooms/{room}/messages     {"name": "...", "text": "..."} -> published to the room (for scripts
 *                                   and bots: curl can say something without a WebSocket)
 *
 * A room is the topic "chat.ROOM". Each WebSocket is subscribed to its room with pub/sub's WebSocket
 * adapter in on_open and unsubscribed in on_close; what it sends is checked and published to the room
 * (chat_publish), and reaches every subscriber of the room on every loop of every instance, the sender
 * included: the page shows its own message when it comes back, so every page shows the same order.
 * A page whose socket closes (its instance restarting: 1001; too slow a reader: 1008) says so and
 * reconnects a second later, to whichever instance nginx picks. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <apiary/apiary.h>

/* The page. Messages are the JSON {"name","text"} as published; a refused one comes back to its
 * sender only, as {"error": "..."}. */
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
    "let ws;\n"
    "function connect() {\n"
    "  ws = new WebSocket((location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host +\n"
    "    '/rooms/' + encodeURIComponent(room) + '/ws');\n"
    "  ws.onopen = () => { document.body.dataset.connected = 'yes'; };\n"
    "  ws.onmessage = (e) => { const m = JSON.parse(e.data);"
    " show(m.error ? '(not sent: ' + m.error + ')' : m.name + ': ' + m.text); };\n"
    "  ws.onclose = (e) => { document.body.dataset.connected = 'no';"
    " show('(disconnected: ' + e.code + ', reconnecting)'); setTimeout(connect, 1000); };\n"
    "}\n"
    "connect();\n"
    "document.getElementById('form').onsubmit = (e) => {\n"
    "  e.preventDefault();\n"
    "  const text = document.getElementById('text');\n"
    "  if (!text.value || ws.readyState !== WebSocket.OPEN) return;\n"
    "  ws.send(JSON.stringify({name: document.getElementById('name').value, text: text.value}));\n"
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
static const route_schema chat_ws_schema = {
    .input_size = sizeof(chat_in),
    .path = chat_room_param,
    .summary = "The room as a WebSocket: send {name, text}, receive every message of the room",
    .responses = (const route_response[]){{101, "a WebSocket of the room", NULL}, {0}},
};
static const route_schema chat_post_schema = {
    .input_size = sizeof(chat_in),
    .path = chat_room_param,
    .body = SCHEMA_OBJECT(chat_in, chat_message_members),
    .summary = "Say something in the room",
    .responses = (const route_response[]){{202, "published", NULL}, {0}},
};

static void chat_topic(char *out, size_t cap, const char *room) { snprintf(out, cap, "chat.%s", room); }

/* The one place messages go up: from a WebSocket's on_message or a POST. */
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

static void chat_index(http_request *req)
{
    http_respond_raw(req, 200, "text/html; charset=utf-8", chat_page, sizeof(chat_page) - 1);
}

/* ---- the room's WebSocket ---------------------------------------------------------------------- */

#define CHAT_NAME_MAX 32   /* characters, as the POST route's schema says */
#define CHAT_TEXT_MAX 1000

/* One per connection (the request, and its path parameter, are gone once it is a WebSocket). */
typedef struct chat_conn {
    pubsub_sub *sub; /* the room's subscription: ours to end in on_close */
    char room[65];
} chat_conn;

/* Characters of a UTF-8 string (a text message is valid UTF-8: the engine closes 1007 otherwise). */
static size_t chat_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xC0) != 0x80;
    return n;
}

/* Tells this connection only why its message was not sent. */
static void chat_refuse(ws_conn *ws, const char *why)
{
    json_t *e = json_pack("{s:s}", "error", why);
    char *text = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    if (text) {
        ws_send_text(ws, text, strlen(text));
        json_free_t json_free;
        json_get_alloc_funcs(NULL, &json_free);
        json_free(text);
    }
}

static void chat_ws_open(ws_conn *ws, void *arg)
{
    chat_conn *c = arg;
    char topic[80];
    chat_topic(topic, sizeof(topic), c->room);
    c->sub = pubsub_subscribe_ws(ws, NULL, topic); /* the room's messages go out on ws from now on */
    if (!c->sub)
        ws_close(ws, WS_CLOSE_INTERNAL_ERROR, "the chat is not running");
}

static void chat_ws_message(ws_conn *ws, const ws_message *msg, void *arg)
{
    chat_conn *c = arg;
    const char *name = NULL, *text = NULL;
    json_t *in = msg->type == WS_TEXT ? json_loadb(msg->data, msg->len, 0, NULL) : NULL;
    if (!in || json_unpack(in, "{s:s,s:s}", "name", &name, "text", &text) != 0) {
        chat_refuse(ws, "send {\"name\": \"...\", \"text\": \"...\"} as JSON text");
    } else if (!name[0] || chat_chars(name) > CHAT_NAME_MAX) {
        chat_refuse(ws, "the name is 1 to 32 characters");
    } else if (!text[0] || chat_chars(text) > CHAT_TEXT_MAX) {
        chat_refuse(ws, "the text is 1 to 1000 characters");
    } else {
        int rc = chat_publish(c->room, name, text);
        if (rc == PUBSUB_INVALID)
            chat_refuse(ws, "the message is too long");
        else if (rc != PUBSUB_OK)
            chat_refuse(ws, "the chat is unavailable for a moment; try again");
    }
    json_decref(in);
}

static void chat_ws_close(ws_conn *ws, unsigned code, const char *reason, void *arg)
{
    (void)ws;
    (void)code;
    (void)reason;
    chat_conn *c = arg;
    pubsub_unsubscribe(c->sub); /* no delivery into ws after this; it is freed when we return */
    free(c);
}

static void chat_ws(http_request *req)
{
    const chat_in *in = http_request_input(req);
    chat_conn *c = calloc(1, sizeof(*c));
    if (!c) {
        http_respond_problem(req, 503, NULL, "out of memory");
        return;
    }
    snprintf(c->room, sizeof(c->room), "%s", in->room); /* the schema bounds it at 64 */
    ws_options opts = {
        .on_open = chat_ws_open,
        .on_message = chat_ws_message,
        .on_close = chat_ws_close,
        .arg = c,
    };
    if (!ws_upgrade(req, &opts))
        free(c); /* answered (426, 400): no callback will run */
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
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/rooms/{room}/ws", chat_ws, 0, &chat_ws_schema);
    apiary_app_route_schema(app, HTTP_METHOD_POST, "/rooms/{room}/messages", chat_post, 0, &chat_post_schema);
    return apiary_app_main(app, argc, argv);
}
