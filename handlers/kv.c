/* kv: the key-value API (docs/kv.md).
 *
 *   PUT    /v1/kv/{key}[?ttl=SECONDS]  body: any JSON value  -> 201 created / 200 replaced
 *   GET    /v1/kv/{key}                -> 200 {"key":...,"value":...,"ttl":seconds or null} / 404
 *   DELETE /v1/kv/{key}                -> 204 / 404
 *
 * Everything a request can get wrong is checked before the store is touched (422 key or ttl, declared
 * below and checked by the engine, 415 media type, 400 invalid JSON, 413 value too large), then one
 * call to the backend (kv_store.h) does the work. Store failures are answers too: 504 when the store did not answer in
 * time, 503 with Retry-After when it is unreachable, 507 when the memory store is full. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "json_valid_internal.h"
#include "kv_store.h"
#include "log.h"

/* ?ttl= accepts 1 to this many seconds (68 years; Redis's own limit is far above). */
#define KV_TTL_MAX_S 2147483647

/* What a continuation needs; scope memory, gone with the request. */
typedef struct kv_call {
    http_request *req;
    const char *key;
    size_t key_len;
    const char *text; /* PUT: the value as compact JSON text, in the request's arena */
    size_t text_len;
    unsigned ttl_s;   /* PUT: 0 when none was asked for */
} kv_call;

static const kv_store *kv_backend(void)
{
    return handlers_get_settings()->kv_use_redis ? &kv_redis_store : &kv_memory_store;
}

/* ---- what the routes take (docs/schemas.md) --------------------------------------------------- */

typedef struct kv_in {
    const char *key;       /* path {key}, percent-decoded */
    int64_t ttl;           /* PUT ?ttl=, 0 when absent */
    route_body_text value; /* PUT body: any JSON value, as compact text (the engine's json_compact) */
} kv_in;

/* The key charset: well-formed UTF-8 (the schema's string check: no overlong forms, no surrogates,
 * nothing above U+10FFFF) without control characters (C0, DEL, C1). Everything printable is allowed,
 * spaces, quotes, '/' (sent as %2F) and '%' (sent as %25) included: Redis keys are binary-safe and the
 * memory store compares bytes, and control characters would only make keys unreadable in logs. */
static bool kv_key_printable(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] == 0x7f || (s[i] == 0xc2 && i + 1 < len && s[i + 1] >= 0x80 && s[i + 1] <= 0x9f))
            return false;
    return true;
}

/* The key's byte limit is the config's (kv.max_key_bytes). The engine refuses a NUL (%00) in the path,
 * so strlen is the key's length. */
static void kv_check(http_request *req, const void *input, schema_errors *errs)
{
    (void)req;
    const unsigned max = handlers_get_settings()->kv_max_key_bytes;
    const char *key = ((const kv_in *)input)->key;
    size_t n = strlen(key);
    errs->in = "path";
    if (n > max)
        schema_errors_add(errs, "key", "must be 1 to %u bytes (UTF-8), it has %zu", max, n);
    else if (!kv_key_printable((const unsigned char *)key, n))
        schema_errors_add(errs, "key", "must be valid UTF-8 without control characters");
}

static const schema_member kv_key_param[] = {
    SCHEMA_REQUIRED(kv_in, key, SCHEMA_STRING(.min_length = 1)),
    SCHEMA_END,
};
static const schema_member kv_entry_members[] = {
    SCHEMA_UNBOUND("key", SCHEMA_MEMBER_REQUIRED, SCHEMA_STRING()),
    SCHEMA_UNBOUND("value", SCHEMA_MEMBER_REQUIRED, SCHEMA_ANY()),
    SCHEMA_UNBOUND("ttl", SCHEMA_MEMBER_REQUIRED, SCHEMA_INTEGER(.nullable = true, .min = SCHEMA_GE(0))),
    SCHEMA_END,
};
static const schema kv_entry = {.type = SCHEMA_T_OBJECT, .members = kv_entry_members};

const route_schema kv_get_schema = {
    .input_size = sizeof(kv_in),
    .path = kv_key_param,
    .check = kv_check,
    .summary = "Read the value under a key",
    .responses = (const route_response[]){{200, "the entry; ttl in seconds, null without one", &kv_entry}, {0}},
};
const route_schema kv_delete_schema = {
    .input_size = sizeof(kv_in),
    .path = kv_key_param,
    .check = kv_check,
    .summary = "Delete the value under a key",
    .responses = (const route_response[]){{204, "deleted", NULL}, {0}},
};
const route_schema kv_put_schema = {
    .input_size = sizeof(kv_in),
    .path = kv_key_param,
    .query = (const schema_member[]){
        SCHEMA_OPTIONAL(kv_in, ttl, SCHEMA_INTEGER(.min = SCHEMA_GE(1), .max = SCHEMA_LE(KV_TTL_MAX_S))),
        SCHEMA_END},
    .body = SCHEMA_ANY(),
    .body_text_at = ROUTE_BODY_TEXT_AT(kv_in, value),
    .check = kv_check,
    .summary = "Store any JSON value under a key, with a time to live in seconds if wanted",
    .responses = (const route_response[]){{201, "created", &kv_entry}, {200, "replaced", &kv_entry}, {0}},
};

/* ---- answers ----------------------------------------------------------------------------------- */

/* {"key":...,"value":<text>,"ttl":...}: the stored text is spliced in as it is, never parsed again.
 * `text` is compact JSON that this API validated when it was stored. */
static void kv_respond_representation(const kv_call *call, int status, const char *text, size_t text_len,
                                      int64_t ttl_s)
{
    json_t *placeholder = json_object(); /* stands for the value: a fresh node, so the splice finds only it */
    json_t *body = json_pack("{s:s%,s:O,s:o}", "key", call->key, call->key_len, "value", placeholder, "ttl",
                             ttl_s == KV_TTL_NONE ? json_null() : json_integer((json_int_t)ttl_s));
    if (!body) { /* a key is valid UTF-8 (kv_key), so only out-of-memory, which aborts, gets here */
        json_decref(placeholder);
        http_respond_json(call->req, 500, NULL);
        return;
    }
    http_respond_json_spliced(call->req, status, body, placeholder, text, text_len);
    json_decref(placeholder);
}

static void kv_not_found(http_request *req)
{
    http_respond_problem(req, 404, NULL, "no value is stored under this key");
}

/* The store could not do it: a timeout is the store's delay (504), a full memory store is a capacity
 * limit (507: retrying will not help until something is deleted or expires), anything else means the
 * store cannot be reached now (503 with Retry-After, so clients and balancers back off). */
static void kv_store_failed(http_request *req, const async_op *op)
{
    const handlers_settings *cfg = handlers_get_settings();
    const char *error = op->error ? op->error : "failed";
    if (op->status == ASYNC_TIMEOUT || error == REDIS_ERROR_TIMEOUT) {
        http_respond_problem(req, 504, NULL, "the key-value store did not answer within %u ms",
                             cfg->redis->command_timeout_ms);
    } else if (error == KV_ERROR_FULL) {
        http_respond_problem(req, 507, NULL, "the key-value store is full (at most %u values, %zu bytes); delete "
                             "some first", cfg->kv_max_entries, cfg->kv_max_memory_bytes);
    } else if (error == KV_ERROR_CORRUPT) {
        http_respond_problem(req, 500, NULL, "the value under this key was not stored by this API");
    } else if (error == REDIS_ERROR_UNAVAILABLE || error == REDIS_ERROR_CONNECTION_LOST) {
        http_response_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, NULL, "the key-value store is unavailable (%s)", error);
    } else {
        /* A Redis error reply: its text is for the operator's log, not for clients. */
        log_warn("kv: %s %s: %s", http_method_name(req->method), req->path, error);
        http_response_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, NULL, "the key-value store refused the command");
    }
}

/* Starts the request's asynchronous part: a scope and the call record. NULL when the loop is at its
 * cap of waiting requests (the engine has answered 503). */
static kv_call *kv_call_start(http_request *req, const char *key, size_t key_len, async_scope **scope_out)
{
    async_scope *scope = http_request_async(req);
    if (!scope)
        return NULL;
    kv_call *call = async_scope_alloc(scope, sizeof(*call));
    call->req = req;
    call->key = key;
    call->key_len = key_len;
    *scope_out = scope;
    return call;
}

/* ---- GET --------------------------------------------------------------------------------------- */

/* The backend's result for a key that exists, or NULL after answering: the store failed (503, 504,
 * 500) or the key is absent (404). */
static const kv_result *kv_existing(async_op *op, kv_call *call)
{
    if (op->status != ASYNC_OK) {
        kv_store_failed(call->req, op);
        return NULL;
    }
    const kv_result *res = op->value;
    if (!res->existed) {
        kv_not_found(call->req);
        return NULL;
    }
    return res;
}

static void kv_get_done(async_op *op, void *arg)
{
    kv_call *call = arg;
    const kv_result *res = kv_existing(op, call);
    if (!res)
        return;
    /* The memory store holds only text this API validated; what Redis holds may have been written by
     * anyone, so it is checked (one pass, no tree) before it is spliced into an answer. */
    if (!kv_backend()->validated && !json_valid(res->value, res->value_len, JSON_VALID_MAX_DEPTH)) {
        http_respond_problem(call->req, 500, NULL, "the value under this key is not JSON (not stored by this API)");
        return;
    }
    kv_respond_representation(call, 200, res->value, res->value_len, res->ttl_s);
}

/* GET and DELETE: a valid key, one backend operation, one continuation. */
typedef async_op *(*kv_key_op_fn)(async_scope *scope, http_loop *loop, const char *key, size_t key_len);

static void kv_run_key_op(http_request *req, kv_key_op_fn op, async_cb done)
{
    const char *key = ((const kv_in *)http_request_input(req))->key;
    size_t key_len = strlen(key);
    async_scope *scope;
    kv_call *call = kv_call_start(req, key, key_len, &scope);
    if (!call)
        return;
    async_op_then(op(scope, http_request_loop(req), key, key_len), done, call);
}

void kv_get(http_request *req) { kv_run_key_op(req, kv_backend()->get, kv_get_done); }

/* ---- PUT --------------------------------------------------------------------------------------- */

static void kv_put_done(async_op *op, void *arg)
{
    kv_call *call = arg;
    if (op->status != ASYNC_OK) {
        kv_store_failed(call->req, op);
        return;
    }
    const kv_result *res = op->value;
    int64_t ttl = call->ttl_s ? (int64_t)call->ttl_s : KV_TTL_NONE;
    kv_respond_representation(call, res->existed ? 200 : 201, call->text, call->text_len, ttl);
}

void kv_put(http_request *req)
{
    const handlers_settings *cfg = handlers_get_settings();
    const kv_in *in = http_request_input(req);
    const char *key = in->key;
    size_t key_len = strlen(key);
    unsigned ttl_s = (unsigned)in->ttl;
    /* What is stored, and what the bound applies to, is the compact text, whatever whitespace the
     * client sent, with reals in their shortest form: the engine wrote it (in the request's arena,
     * which outlives the call) while checking the body, duplicate members refused, without a tree. */
    const char *text = in->value.text;
    size_t text_len = in->value.len;
    if (text_len > cfg->kv_max_value_bytes) {
        http_respond_problem(req, 413, NULL, "the value is %zu bytes as compact JSON; at most %u are stored",
                             text_len, cfg->kv_max_value_bytes);
        return;
    }
    async_scope *scope;
    kv_call *call = kv_call_start(req, key, key_len, &scope);
    if (!call)
        return;
    call->text = text;
    call->text_len = text_len;
    call->ttl_s = ttl_s;
    async_op_then(kv_backend()->put(scope, http_request_loop(req), key, key_len, text, text_len, ttl_s),
                  kv_put_done, call);
}

/* ---- DELETE ------------------------------------------------------------------------------------ */

static void kv_delete_done(async_op *op, void *arg)
{
    kv_call *call = arg;
    if (kv_existing(op, call))
        http_respond_raw(call->req, 204, NULL, NULL, 0);
}

void kv_delete(http_request *req) { kv_run_key_op(req, kv_backend()->del, kv_delete_done); }

/* ---- readiness ------------------------------------------------------------------------------- */

/* Any client may ask /readyz, so the answer names no address: where Redis lives is for the operator,
 * and the Redis client logs it (with the reason) once per outage, when the link first fails. */
static void kv_redis_unreachable(http_request *req)
{
    http_response_header(req, "Retry-After", "1");
    http_respond_problem(req, 503, NULL, "the key-value store is unavailable");
}

static void kv_redis_pinged(async_op *op, void *arg)
{
    http_request *req = arg;
    if (op->status != ASYNC_OK)
        kv_redis_unreachable(req);
    else
        http_respond_json(req, 200, json_pack("{s:s}", "status", "ready"));
}

bool kv_ready(http_request *req)
{
    const handlers_settings *cfg = handlers_get_settings();
    http_loop *loop = http_request_loop(req);
    if (!cfg->kv_use_redis || redis_ready(loop, cfg->redis))
        return false;
    /* No link up. A PING fails at once when the links are waiting to retry, and waits for the outcome
     * when an attempt is under way (e.g. the loop's very first use of Redis), so the answer is never a
     * guess. */
    async_scope *scope = http_request_async(req);
    if (!scope)
        return true; /* answered 503 by the in-flight cap */
    const char *argv[] = {"PING"};
    const size_t argvlen[] = {4};
    async_op_then(redis_command(scope, loop, cfg->redis, 1, argv, argvlen), kv_redis_pinged, req);
    return true;
}
