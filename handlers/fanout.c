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
 * GET through the loop's HTTP client; the body comes back as JSON when it is JSON, else as a string.
 *
 * An upstream's body is never parsed into a tree: it is validated in one pass (json_valid_bounded,
 * under the same limits.json_max_depth / json_max_values as request bodies) and its bytes are
 * spliced into the answer as they are. A tree of 16 bodies of 1 MiB of "[{},{},...]" cost 1.5 GB
 * and 10 s of the loop; validation stops at the limit, so a hostile body costs a fraction of a
 * millisecond and becomes that call's error. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "json_valid_internal.h"
#include "json_write_internal.h"
#include "xalloc_internal.h"

#define FANOUT_MAX_TIMEOUT_MS 60000

/* What a call's answer is, decided as soon as the call is over (fanout_check). */
typedef enum fanout_verdict {
    FANOUT_FAILED,   /* no response: op's error */
    FANOUT_JSON,     /* the body is JSON within the limits: spliced as it is */
    FANOUT_TEXT,     /* the body is not JSON: spliced as a JSON string (fanout_text) */
    FANOUT_TOO_DEEP, /* JSON past limits.json_max_depth */
    FANOUT_TOO_MANY, /* JSON past limits.json_max_values */
    FANOUT_NOT_TEXT, /* neither JSON nor text: binary data */
} fanout_verdict;

typedef struct fanout_call {
    const http_client_upstream *up;
    const char *path;   /* points into the request's parsed body, which outlives the scope */
    async_scope *scope;
    async_op *op;       /* the call, under timeout_ms when one was given */
    async_op *checked;  /* a future, resolved once op is over and its body was checked */
    fanout_verdict verdict;
    const char *text;   /* FANOUT_JSON / FANOUT_TEXT: the JSON text that stands for the body */
    size_t text_len;
} fanout_call;

typedef struct fanout_run {
    http_request *req;
    size_t count;
    fanout_call *calls;
    unsigned timeout_ms; /* 0: each upstream's own timeout_ms only */
} fanout_run;

/* ---- what the route takes (docs/schemas.md) -------------------------------------------------- */

typedef struct fanout_call_in {
    const char *upstream;
    const char *path;
} fanout_call_in;

typedef struct fanout_in {
    SCHEMA_LIST(fanout_call_in) requests;
    int64_t timeout_ms; /* 0: each upstream's own timeout_ms only */
} fanout_in;

/* A path, never a URL: from '/', visible ASCII without '#' (http_client_path_valid's rule). */
static const schema_member fanout_call_members[] = {
    SCHEMA_REQUIRED(fanout_call_in, upstream, SCHEMA_STRING(.description = "the name of a configured upstream")),
    SCHEMA_REQUIRED(fanout_call_in, path,
                    SCHEMA_STRING(.max_length = HTTP_CLIENT_PATH_MAX, .pattern = SCHEMA_PATTERN("^/[!-\"$-~]*$"))),
    SCHEMA_END,
};
static const schema_member fanout_members[] = {
    SCHEMA_REQUIRED(fanout_in, requests,
                    SCHEMA_ARRAY(SCHEMA_OBJECT(fanout_call_in, fanout_call_members), .min_items = 1)),
    SCHEMA_OPTIONAL(fanout_in, timeout_ms,
                    SCHEMA_INTEGER(.min = SCHEMA_GE(1), .max = SCHEMA_LE(FANOUT_MAX_TIMEOUT_MS))),
    SCHEMA_END,
};

/* Only names from the config; the comparison is exact (case matters, as in the config). */
static const http_client_upstream *fanout_find_upstream(const char *name)
{
    const handlers_settings *cfg = handlers_get_settings();
    for (unsigned i = 0; i < cfg->upstream_count; i++)
        if (strcmp(cfg->upstreams[i].name, name) == 0)
            return &cfg->upstreams[i];
    return NULL;
}

/* What depends on the config: how many calls, and upstreams it names. */
static void fanout_validate(http_request *req, const void *input, schema_errors *errs)
{
    (void)req;
    const fanout_in *in = input;
    const unsigned max = handlers_get_settings()->fanout_max_requests;
    errs->in = "body";
    if (in->requests.count > max)
        schema_errors_add(errs, "requests", "must be an array of 1 to %u requests", max);
    for (size_t i = 0; i < in->requests.count && in->requests.count <= max; i++) {
        char field[48];
        snprintf(field, sizeof(field), "requests[%zu].upstream", i);
        if (!fanout_find_upstream(in->requests.items[i].upstream))
            schema_errors_add(errs, field, "must be the name of a configured upstream");
    }
}

static const schema_member fanout_result_members[] = {
    SCHEMA_UNBOUND("upstream", SCHEMA_MEMBER_REQUIRED, SCHEMA_STRING()),
    SCHEMA_UNBOUND("ok", SCHEMA_MEMBER_REQUIRED, SCHEMA_BOOLEAN()),
    SCHEMA_UNBOUND("status", 0, SCHEMA_INTEGER(.min = SCHEMA_GE(100), .max = SCHEMA_LE(599))),
    SCHEMA_UNBOUND("body", 0, SCHEMA_ANY(.description = "the upstream's JSON, or its text as a string")),
    SCHEMA_UNBOUND("error", 0, SCHEMA_STRING()),
    SCHEMA_UNBOUND("detail", 0, SCHEMA_STRING()),
    SCHEMA_UNBOUND("ms", SCHEMA_MEMBER_REQUIRED, SCHEMA_INTEGER(.min = SCHEMA_GE(0))),
    SCHEMA_END,
};
static const schema fanout_result_schema = {.type = SCHEMA_T_OBJECT, .members = fanout_result_members};
static const schema_member fanout_answer_members[] = {
    SCHEMA_UNBOUND("results", SCHEMA_MEMBER_REQUIRED, SCHEMA_ARRAY(&fanout_result_schema)),
    SCHEMA_END,
};
const route_schema fanout_schema = {
    .input_size = sizeof(fanout_in),
    .body = SCHEMA_OBJECT(fanout_in, fanout_members),
    .check = fanout_validate,
    .summary = "Call several configured upstreams at once and answer what each said, in order",
    .responses = (const route_response[]){
        {200, "each call's outcome, in the order asked",
         &(const schema){.type = SCHEMA_T_OBJECT, .members = fanout_answer_members}},
        {0}},
};

/* ---- the answer ------------------------------------------------------------------------------ */

/* A body that is not JSON, as the text of a JSON string ready to splice: quotes, escapes, and each
 * byte of an invalid UTF-8 sequence replaced by U+FFFD, so the answer is always valid JSON. One pass,
 * plain runs 8 bytes at a time, into one allocation of 2 x len + 2 bytes: NULL (nothing allocated)
 * when the string would be longer than that, which only a body that is mostly control characters
 * or invalid UTF-8 (binary data) reaches. Otherwise the caller frees it. */
static char *fanout_text(const char *data, size_t len, size_t *out_len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *in = (const unsigned char *)data;
    size_t cap = 2 * len + 2, o = 0;
    char *out = xmalloc(cap);
    out[o++] = '"';
    for (size_t i = 0; i < len;) {
        unsigned char c = in[i];
        if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\') {
            size_t run = json_plain_run(in + i, len - i);
            if (o + run + 1 > cap) /* + 1: the closing quote */
                goto too_long;
            memcpy(out + o, in + i, run);
            o += run;
            i += run;
            continue;
        }
        char esc[6];
        size_t n = 2, take = 1;
        esc[0] = '\\';
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            if (c < 0x20) {
                memcpy(esc, "\\u00", 4);
                esc[4] = hex[c >> 4], esc[5] = hex[c & 15], n = 6;
            } else if ((take = json_utf8_len(in + i, len - i)) > 0) {
                memcpy(esc, in + i, take);
                n = take;
            } else {
                memcpy(esc, "\xef\xbf\xbd", 3), n = 3, take = 1; /* U+FFFD */
            }
        }
        if (o + n + 1 > cap)
            goto too_long;
        memcpy(out + o, esc, n);
        o += n;
        i += take;
    }
    out[o++] = '"';
    *out_len = o;
    return out;
too_long:
    free(out);
    return NULL;
}

/* A call answered with JSON past limits.json_max_depth / json_max_values: the body is not copied,
 * the call fails with `error` and a sentence that gives the limit. */
static json_t *fanout_refused(const fanout_call *call, const http_client_response *resp, json_int_t ms,
                              const char *error, const char *detail)
{
    return json_pack("{s:s,s:b,s:i,s:s,s:s,s:I}", "upstream", call->up->name, "ok", 0, "status", resp->status,
                     "error", error, "detail", detail, "ms", ms);
}

/* Runs as soon as a call is over, so the checks of 16 bodies are spread over the calls' own
 * completions instead of all landing in the answer: at most max_response_bytes of work per callback.
 * A body that is JSON (any value, as RFC 8259 allows at the top) is kept as its own bytes; any other
 * becomes the text of a JSON string, freed with the scope. */
static void fanout_check(async_op *op, void *arg)
{
    fanout_call *call = arg;
    const handlers_settings *cfg = handlers_get_settings();
    if (op->status == ASYNC_OK) {
        const http_client_response *resp = op->value;
        switch (json_valid_bounded(resp->body, resp->body_len, cfg->json_max_depth, cfg->json_max_values)) {
        case JSON_VALID_OK:
            call->verdict = FANOUT_JSON;
            call->text = resp->body;
            call->text_len = resp->body_len;
            break;
        case JSON_VALID_TOO_DEEP: call->verdict = FANOUT_TOO_DEEP; break;
        case JSON_VALID_TOO_MANY: call->verdict = FANOUT_TOO_MANY; break;
        default: {
            char *text = fanout_text(resp->body, resp->body_len, &call->text_len);
            call->verdict = text ? FANOUT_TEXT : FANOUT_NOT_TEXT;
            call->text = text;
            if (text)
                async_scope_defer(call->scope, free, text);
        }
        }
    }
    async_resolve(call->checked, NULL);
}

/* One entry of "results". A body's entry gets a placeholder node, which *splice says to replace. */
static json_t *fanout_result(const fanout_call *call, json_write_splice *splice)
{
    const handlers_settings *cfg = handlers_get_settings();
    const async_op *op = call->op;
    json_int_t ms = (json_int_t)async_op_elapsed_ms(op);
    const http_client_response *resp = op->value;
    char detail[128];
    switch (call->verdict) {
    case FANOUT_FAILED:
        return json_pack("{s:s,s:b,s:s,s:I}", "upstream", call->up->name, "ok", 0, "error",
                         op->error ? op->error : "failed", "ms", ms);
    case FANOUT_TOO_DEEP:
        snprintf(detail, sizeof(detail), "the upstream's JSON nests arrays and objects deeper than %zu levels",
                 cfg->json_max_depth);
        return fanout_refused(call, resp, ms, "response_too_deep", detail);
    case FANOUT_TOO_MANY:
        snprintf(detail, sizeof(detail), "the upstream's JSON holds more than %zu values", cfg->json_max_values);
        return fanout_refused(call, resp, ms, "response_too_many_values", detail);
    case FANOUT_NOT_TEXT:
        return fanout_refused(call, resp, ms, "response_not_text",
                              "the upstream's answer is neither JSON nor text (as a JSON string it would be more "
                              "than twice its size: binary data)");
    default:
        break;
    }
    json_t *body = json_object(); /* a fresh node: the splice finds only it */
    *splice = (json_write_splice){.at = body, .text = call->text, .len = call->text_len};
    return json_pack("{s:s,s:b,s:i,s:o,s:I}", "upstream", call->up->name, "ok", 1, "status", resp->status, "body",
                     body, "ms", ms);
}

/* Writes the answer once every call is over and checked: the bodies are spliced as they are, so
 * nothing here recurses into them and the coroutine's stack is enough. */
static void fanout_answer(fanout_run *run)
{
    json_write_splice *splices = arena_alloc(&run->req->arena, run->count * sizeof(*splices));
    const json_write_splice *list = NULL;
    json_t *results = json_array();
    for (size_t i = 0; i < run->count; i++) {
        splices[i] = (json_write_splice){0};
        json_array_append_new(results, fanout_result(&run->calls[i], &splices[i]));
        if (splices[i].at) { /* the list's order does not matter: nodes are found by identity */
            splices[i].next = list;
            list = &splices[i];
        }
    }
    http_respond_json_splices(run->req, 200, json_pack("{s:o}", "results", results), list);
}

/* A coroutine handler (ROUTE_CORO): start every call, await them all, answer. */
void fanout_post(http_request *req)
{
    const fanout_in *in = http_request_input(req);
    fanout_run run = {.count = in->requests.count, .timeout_ms = (unsigned)in->timeout_ms};
    run.calls = arena_alloc(&req->arena, run.count * sizeof(*run.calls));
    memset(run.calls, 0, run.count * sizeof(*run.calls));
    for (size_t i = 0; i < run.count; i++) {
        run.calls[i].up = fanout_find_upstream(in->requests.items[i].upstream);
        run.calls[i].path = in->requests.items[i].path;
    }
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
        call->scope = scope;
        call->checked = async_future(scope);
        async_op_then(call->op, fanout_check, call);
        ops[i] = call->checked;
    }
    /* Each call's body is checked by its own continuation (fanout_check) as the call completes; the
     * handler waits for all of them. */
    if (async_await(async_gather(scope, ops, run.count, ASYNC_GATHER_ALL))->status != ASYNC_OK)
        return; /* the request ended first */
    fanout_answer(&run);
}
