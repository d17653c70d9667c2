/* app: a small notes API behind two pieces of middleware and one after hook:
 *   - CORS (every path): answers preflights (OPTIONS with Origin and Access-Control-Request-Method)
 *     with 204 and the Access-Control-* headers for an allowed origin, before any route or token is
 *     looked at, and adds Access-Control-Allow-Origin to every answer for an allowed origin;
 *   - bearer-token authentication ("/v1"): 401 problem+json with WWW-Authenticate unless the request
 *     carries a configured token, except on routes flagged ROUTE_PUBLIC (the app's own flag bit); the
 *     principal is left for the handler with http_request_set_value;
 *   - timing (every path, after): Server-Timing: app;dur=MS on every answer, the 401s included.
 * Creating a note answers 201 at once and records an audit line in a background task, which the
 * drain on SIGTERM waits for. Settings are the app's "api" section; --extra-token adds a token from
 * the command line (for local runs). */
#include "app.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define ROUTE_PUBLIC ROUTE_APP(0) /* no token needed */
#define API_MAX_TOKENS 8
#define API_MAX_ORIGINS 8

/* ---- settings: the "api" section -------------------------------------------------------------------- */

typedef struct api_settings {
    char tokens[API_MAX_TOKENS][65];
    size_t token_count;
    char origins[API_MAX_ORIGINS][128];
    size_t origin_count;
    json_int_t audit_ms; /* how long the background audit takes (a stand-in for a slow write) */
} api_settings;

static const char *extra_token; /* --extra-token */

static int api_strings(const json_t *sec, const char *key, size_t max, size_t width, char *out, size_t *count,
                       char *err, size_t cap)
{
    const json_t *arr = json_object_get(sec, key);
    if (!arr)
        return 0;
    if (!json_is_array(arr) || json_array_size(arr) > max) {
        snprintf(err, cap, "%s: must be an array of at most %zu strings", key, max);
        return -1;
    }
    size_t i;
    const json_t *v;
    json_array_foreach(arr, i, v) {
        if (!json_is_string(v) || !json_string_length(v) || json_string_length(v) >= width) {
            snprintf(err, cap, "%s[%zu]: must be a string of 1..%zu characters", key, i, width - 1);
            return -1;
        }
        snprintf(out + i * width, width, "%s", json_string_value(v));
    }
    *count = json_array_size(arr);
    return 0;
}

static int api_parse(const json_t *sec, void **out, char *err, size_t cap)
{
    api_settings *s = calloc(1, sizeof(*s));
    s->audit_ms = 50;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)sec, key, v) {
        if (strcmp(key, "tokens") && strcmp(key, "cors_origins") && strcmp(key, "audit_ms")) {
            snprintf(err, cap, "unknown key '%s'", key);
            free(s);
            return -1;
        }
    }
    const json_t *ms = json_object_get(sec, "audit_ms");
    if (ms && (!json_is_integer(ms) || json_integer_value(ms) < 0 || json_integer_value(ms) > 600000)) {
        snprintf(err, cap, "audit_ms: must be an integer between 0 and 600000");
        free(s);
        return -1;
    }
    if (ms)
        s->audit_ms = json_integer_value(ms);
    if (api_strings(sec, "tokens", API_MAX_TOKENS, sizeof(s->tokens[0]), s->tokens[0], &s->token_count, err, cap) ||
        api_strings(sec, "cors_origins", API_MAX_ORIGINS, sizeof(s->origins[0]), s->origins[0], &s->origin_count,
                    err, cap)) {
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

static const api_settings *settings(void) { return apiary_section("api"); }

static int option_extra_token(const char *value, void *arg, char *why, size_t cap)
{
    (void)arg;
    if (strlen(value) > 64) {
        snprintf(why, cap, "a token is at most 64 characters");
        return -1;
    }
    extra_token = value;
    return 0;
}

/* ---- middleware ------------------------------------------------------------------------------------- */

static bool origin_allowed(const char *origin)
{
    const api_settings *s = settings();
    for (size_t i = 0; origin && i < s->origin_count; i++)
        if (strcmp(s->origins[i], origin) == 0)
            return true;
    return false;
}

static bool cors(http_request *req, void *arg)
{
    (void)arg;
    const char *origin = http_request_header(req, "Origin");
    if (!origin_allowed(origin))
        return false; /* not a cross-origin call we allow: no CORS headers, the browser refuses it */
    http_response_header(req, "Access-Control-Allow-Origin", origin);
    http_response_header(req, "Vary", "Origin");
    if (req->method == HTTP_METHOD_OPTIONS && http_request_header(req, "Access-Control-Request-Method")) {
        http_response_header(req, "Access-Control-Allow-Methods", "GET, POST, DELETE");
        http_response_header(req, "Access-Control-Allow-Headers", "Authorization, Content-Type");
        http_response_header(req, "Access-Control-Max-Age", "600");
        http_respond_raw(req, 204, "text/plain", "", 0);
        return true;
    }
    return false;
}

static bool authenticate(http_request *req, void *arg)
{
    (void)arg;
    http_route_info route;
    if (http_request_route(req, &route) && (route.flags & ROUTE_PUBLIC))
        return false;
    const char *h = http_request_header(req, "Authorization");
    const char *token = h && strncasecmp(h, "Bearer ", 7) == 0 ? h + 7 : NULL;
    const api_settings *s = settings();
    for (size_t i = 0; token && i < s->token_count; i++)
        if (strcmp(s->tokens[i], token) == 0) {
            http_request_set_value(req, "principal", (void *)s->tokens[i]);
            return false;
        }
    if (token && extra_token && strcmp(token, extra_token) == 0) {
        http_request_set_value(req, "principal", (void *)extra_token);
        return false;
    }
    http_response_header(req, "WWW-Authenticate", "Bearer realm=\"notes\"");
    http_respond_problem(req, 401, NULL, token ? "the bearer token is not valid" : "a bearer token is required");
    return true;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static bool timing_start(http_request *req, void *arg)
{
    (void)arg;
    double *started = arena_alloc(&req->arena, sizeof(*started));
    *started = now_ms();
    http_request_set_value(req, "started", started);
    return false;
}

static void timing_header(http_request *req, int status, void *arg)
{
    (void)status;
    (void)arg;
    const double *started = http_request_value(req, "started");
    if (!started)
        return;
    char value[48];
    snprintf(value, sizeof(value), "app;dur=%.1f", now_ms() - *started);
    http_response_header(req, "Server-Timing", value);
}

/* ---- the notes ------------------------------------------------------------------------------------ */

#define NOTES_MAX 256

typedef struct note {
    long id;
    char text[141];
    char owner[65];
} note;

/* One store per process for the example's sake; a real app keeps notes in SQL. Loops are threads. */
static pthread_mutex_t notes_lock = PTHREAD_MUTEX_INITIALIZER;
static note notes[NOTES_MAX];
static long notes_count;

static json_t *note_json(const note *n)
{
    return json_pack("{s:I,s:s,s:s}", "id", (json_int_t)n->id, "text", n->text, "owner", n->owner);
}

static void ping(http_request *req) { http_respond_json(req, 200, json_pack("{s:s}", "pong", "yes")); }

static void notes_list(http_request *req)
{
    json_t *arr = json_array();
    pthread_mutex_lock(&notes_lock);
    for (long i = 0; i < notes_count; i++)
        json_array_append_new(arr, note_json(&notes[i]));
    pthread_mutex_unlock(&notes_lock);
    http_respond_json(req, 200, json_pack("{s:o}", "notes", arr));
}

static void notes_get(http_request *req)
{
    char *end;
    long id = strtol(http_request_param(req, "id"), &end, 10);
    json_t *found = NULL;
    pthread_mutex_lock(&notes_lock);
    if (!*end && id >= 1 && id <= notes_count)
        found = note_json(&notes[id - 1]);
    pthread_mutex_unlock(&notes_lock);
    if (!found)
        http_respond_problem(req, 404, NULL, "no such note");
    else
        http_respond_json(req, 200, found);
}

/* The background audit: outlives the 201 it follows. */
typedef struct audit {
    long id;
    char owner[65];
} audit;

static void audit_record(async_scope *scope, void *arg)
{
    const audit *a = arg;
    async_op *wrote = async_await(async_sleep(scope, (unsigned)settings()->audit_ms));
    if (wrote->status != ASYNC_OK)
        return; /* the server stopped first: the drain timeout cancelled us (and said so) */
    log_info("audit: note %ld recorded for %.8s...", a->id, a->owner);
}

static void notes_create(http_request *req)
{
    json_error_t jerr;
    json_t *body = http_request_json(req, &jerr);
    const char *text = json_string_value(json_object_get(body, "text"));
    if (!text || !text[0] || strlen(text) > 140) {
        http_respond_problem(req, 422, json_pack("{s:s}", "field", "text"), "text: a string of 1..140 characters");
        return;
    }
    const char *owner = http_request_value(req, "principal");
    note n = {0};
    snprintf(n.text, sizeof(n.text), "%s", text);
    snprintf(n.owner, sizeof(n.owner), "%s", owner ? owner : "-");
    pthread_mutex_lock(&notes_lock);
    bool stored = notes_count < NOTES_MAX;
    if (stored) {
        n.id = ++notes_count;
        notes[n.id - 1] = n;
    }
    pthread_mutex_unlock(&notes_lock);
    if (!stored) {
        http_respond_problem(req, 507, NULL, "the example keeps at most %d notes", NOTES_MAX);
        return;
    }
    audit a = {.id = n.id};
    snprintf(a.owner, sizeof(a.owner), "%s", n.owner);
    if (!http_background_start(req, "notes audit", audit_record, &a, sizeof(a)))
        log_warn("audit: note %ld not recorded: too much background work", n.id);
    http_respond_created(req, note_json(&n), "/v1/notes/%ld", n.id);
}

apiary_app *middleware_app(void)
{
    apiary_app *app = apiary_app_new("middleware");
    apiary_app_section(app, "api", api_parse, free);
    apiary_app_option(app, "extra-token", "TOKEN", "accept this bearer token too (local runs)", option_extra_token,
                      NULL);
    /* Registration order is run order: CORS first (a preflight carries no token), then the token. */
    apiary_app_before(app, "/", timing_start, NULL);
    apiary_app_before(app, "/", cors, NULL);
    apiary_app_before(app, "/v1", authenticate, NULL);
    apiary_app_after(app, "/", timing_header, NULL);
    apiary_app_route(app, HTTP_METHOD_GET, "/v1/ping", ping, ROUTE_PUBLIC);
    apiary_app_route(app, HTTP_METHOD_GET, "/v1/notes", notes_list, 0);
    apiary_app_route(app, HTTP_METHOD_GET, "/v1/notes/{id}", notes_get, 0);
    apiary_app_route(app, HTTP_METHOD_POST, "/v1/notes", notes_create, ROUTE_BODY_JSON);
    return app;
}
