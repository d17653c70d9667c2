/* fanout: POST /v1/fanout calls several configured upstreams at once and answers with what each
 * said, in the order asked (see docs/fanout.md):
 *
 *     {"requests":[{"upstream":"users","path":"/users/1"},{"upstream":"orders","path":"/orders?user=1"}],
 *      "timeout_ms":300}
 *  -> {"results":[{"upstream":"users","ok":true,"status":200,"body":{...},"ms":12},
 *                 {"upstream":"orders","ok":false,"error":"timeout","ms":300}]}
 *
 * A client names an upstream from the config and a path, never a URL: the host, port and every limit
 * come from the config, so this endpoint cannot be pointed at anything else (no SSRF). Every call is a
 * GET through the loop's HTTP client; the body comes back as JSON when it parses as JSON, else as a
 * string. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "request_body.h"
#include "xalloc.h"

#define FANOUT_MAX_TIMEOUT_MS 60000

typedef struct fanout_call {
    const http_client_upstream *up;
    const char *path;   /* points into the request's parsed body, which outlives the scope */
    async_op *op;       /* the call, under timeout_ms when one was given */
} fanout_call;

typedef struct fanout_run {
    http_request *req;
    size_t count;
    fanout_call *calls;
    unsigned timeout_ms; /* 0: each upstream's own timeout_ms only */
} fanout_run;

/* ---- validation ------------------------------------------------------------------------------ */

/* "requests[3].path", in the request's arena: a member name chosen by the client can be long. */
static const char *fanout_field(http_request *req, size_t index, const char *member)
{
    int len = snprintf(NULL, 0, "requests[%zu]%s%s", index, member ? "." : "", member ? member : "");
    char *out = arena_alloc(&req->arena, (size_t)len + 1);
    snprintf(out, (size_t)len + 1, "requests[%zu]%s%s", index, member ? "." : "", member ? member : "");
    return out;
}

/* Only names from the config; the comparison is exact (case matters, as in the config). */
static const http_client_upstream *fanout_find_upstream(const json_t *name)
{
    const handlers_settings *cfg = handlers_get_settings();
    if (!json_is_string(name))
        return NULL;
    for (unsigned i = 0; i < cfg->upstream_count; i++)
        if (strcmp(cfg->upstreams[i].name, json_string_value(name)) == 0 &&
            strlen(cfg->upstreams[i].name) == json_string_length(name))
            return &cfg->upstreams[i];
    return NULL;
}

static bool fanout_parse_call(http_request *req, size_t i, json_t *obj, fanout_call *call)
{
    if (!json_is_object(obj)) {
        request_body_reject(req, 422, fanout_field(req, i, NULL), "must be an object with upstream and path");
        return false;
    }
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        if (strcmp(key, "upstream") != 0 && strcmp(key, "path") != 0) {
            request_body_reject(req, 422, fanout_field(req, i, key), "is not a member of a request (upstream, path)");
            return false;
        }
    }
    call->up = fanout_find_upstream(json_object_get(obj, "upstream"));
    if (!call->up) {
        request_body_reject(req, 422, fanout_field(req, i, "upstream"), "is required: the name of a configured upstream");
        return false;
    }
    json_t *path = json_object_get(obj, "path");
    if (!json_is_string(path) || !http_client_path_valid(json_string_value(path), json_string_length(path))) {
        request_body_reject(req, 422, fanout_field(req, i, "path"),
                      "is required: 1 to %d bytes starting with '/', visible ASCII only, no '#'",
                      HTTP_CLIENT_PATH_MAX);
        return false;
    }
    call->path = json_string_value(path);
    return true;
}

static bool fanout_parse_body(http_request *req, json_t **out)
{
    static const char *const members[] = {"requests", "timeout_ms", NULL};
    json_t *body = request_body_object(req, members, false);
    if (!body)
        return false;
    *out = body;
    return true;
}

/* Checks the whole body and fills `run` (calls in the request's arena); on any error answers and
 * returns false. No call starts before everything is known to be valid. */
static bool fanout_parse(http_request *req, fanout_run *run)
{
    const handlers_settings *cfg = handlers_get_settings();
    json_t *body;
    if (!fanout_parse_body(req, &body))
        return false;
    json_t *requests = json_object_get(body, "requests");
    if (!json_is_array(requests) || json_array_size(requests) == 0 ||
        json_array_size(requests) > cfg->fanout_max_requests) {
        request_body_reject(req, 422, "requests", "is required: an array of 1 to %u requests", cfg->fanout_max_requests);
        return false;
    }
    run->count = json_array_size(requests);
    run->calls = arena_alloc(&req->arena, run->count * sizeof(*run->calls));
    memset(run->calls, 0, run->count * sizeof(*run->calls));
    for (size_t i = 0; i < run->count; i++)
        if (!fanout_parse_call(req, i, json_array_get(requests, i), &run->calls[i]))
            return false;
    json_t *timeout = json_object_get(body, "timeout_ms");
    if (timeout) {
        /* A real (300.0) is refused rather than truncated, as everywhere in the API. */
        json_int_t ms = json_is_integer(timeout) ? json_integer_value(timeout) : 0;
        if (ms < 1 || ms > FANOUT_MAX_TIMEOUT_MS) {
            request_body_reject(req, 422, "timeout_ms", "must be an integer between 1 and %d", FANOUT_MAX_TIMEOUT_MS);
            return false;
        }
        run->timeout_ms = (unsigned)ms;
    }
    return true;
}

/* ---- the answer ------------------------------------------------------------------------------ */

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0: no overlong forms, no surrogates,
 * nothing above U+10FFFF — what jansson accepts in a string. */
static size_t fanout_utf8_len(const unsigned char *s, size_t n)
{
    unsigned char c = s[0];
    if (c < 0x80)
        return 1;
    size_t len;
    uint32_t cp, min;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2, cp = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, cp = c & 0x0f, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4, cp = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return len;
}

/* The bytes as a JSON string, each byte of an invalid sequence replaced by U+FFFD. */
static json_t *fanout_repaired_string(const char *data, size_t len)
{
    const unsigned char *in = (const unsigned char *)data;
    char *out = xmalloc(len * 3 + 1); /* every byte may become the three of U+FFFD */
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = fanout_utf8_len(in + i, len - i);
        if (n == 0) {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(out + o, in + i, n);
        o += n;
        i += n;
    }
    json_t *text = json_stringn(out, o);
    free(out);
    return text;
}

/* The body as JSON when it is JSON (any value, as RFC 8259 allows at the top), else as a string, which
 * must be UTF-8 for JSON: invalid bytes become U+FFFD, so the answer is always valid JSON. */
static json_t *fanout_body(const http_client_response *resp)
{
    json_t *parsed = json_loadb(resp->body, resp->body_len, JSON_DECODE_ANY, NULL);
    if (parsed)
        return parsed;
    json_t *text = json_stringn(resp->body, resp->body_len);
    return text ? text : fanout_repaired_string(resp->body, resp->body_len);
}

static json_t *fanout_result(const fanout_call *call)
{
    const async_op *op = call->op;
    json_int_t ms = (json_int_t)async_op_elapsed_ms(op);
    if (op->status == ASYNC_OK) {
        const http_client_response *resp = op->value;
        return json_pack("{s:s,s:b,s:i,s:o,s:I}", "upstream", call->up->name, "ok", 1, "status", resp->status,
                         "body", fanout_body(resp), "ms", ms);
    }
    return json_pack("{s:s,s:b,s:s,s:I}", "upstream", call->up->name, "ok", 0, "error",
                     op->error ? op->error : "failed", "ms", ms);
}

/* Builds and sends the answer, on the loop's stack (async_coro_outside): an upstream's body is parsed
 * with jansson, which recurses once per nesting level, up to 2048, deeper than a coroutine's stack
 * should go for a body nobody depth-checked. */
static void fanout_answer(void *arg)
{
    fanout_run *run = arg;
    json_t *results = json_array();
    for (size_t i = 0; i < run->count; i++)
        json_array_append_new(results, fanout_result(&run->calls[i]));
    http_respond_json(run->req, 200, json_pack("{s:o}", "results", results));
}

/* A coroutine handler (ROUTE_CORO): start every call, await them all, answer. */
void fanout_post(http_request *req)
{
    fanout_run run = {0};
    if (!fanout_parse(req, &run))
        return;
    async_scope *scope = http_request_async(req);
    if (!scope)
        return; /* the loop is at its cap of waiting requests and has already answered 503 */
    run.req = req;
    http_loop *loop = http_request_loop(req);
    async_op **ops = async_scope_alloc(scope, run.count * sizeof(*ops));
    for (size_t i = 0; i < run.count; i++) {
        fanout_call *call = &run.calls[i];
        /* All start now; the client's pool queues what exceeds an upstream's max_connections. */
        call->op = http_client_request(scope, loop, call->up, "GET", call->path, NULL, 0);
        if (run.timeout_ms)
            call->op = async_wait_for(scope, call->op, run.timeout_ms);
        ops[i] = call->op;
    }
    if (async_await(async_gather(scope, ops, run.count, ASYNC_GATHER_ALL))->status != ASYNC_OK)
        return; /* the request ended first */
    async_coro_outside(fanout_answer, &run);
}
