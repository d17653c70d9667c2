/* password: POST /v1/password/hash turns a password into an Argon2id string (libsodium's
 * crypto_pwhash_str) and POST /v1/password/verify checks a password against such a string. Argon2 is
 * slow and memory-hungry on purpose, tens of milliseconds per call, so both run on the worker pool:
 * on a loop they would stall every other connection of that loop for as long.
 *
 * The password is a secret: it never appears in an answer or a log line (not even in the detail of
 * an invalid-JSON error, where jansson would quote the text around the error), and every copy this
 * file makes is wiped before it is freed. */
#include <sodium.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "handlers.h"
#include "log.h"
#include "xalloc_internal.h"

#define PASSWORD_ARGON2ID_PREFIX "$argon2id$"
#define PASSWORD_ARGON2I_PREFIX "$argon2i$"

/* Reasons a worker fails its job with; the continuation tells them apart by content. */
static const char password_malformed[] = "the hash is not a valid Argon2 string";
static const char password_no_memory[] = "not enough memory to hash";
static const char password_internal[] = "internal error";

/* What a hash job needs besides the password. It travels in the job's input, ahead of the password,
 * because a worker reads nothing but its arguments. */
typedef struct password_cost {
    unsigned long long opslimit;
    size_t memlimit;
} password_cost;

int password_init(void)
{
    /* sodium_init picks the fastest implementations and seeds the random generator the salts come
     * from; every later call into libsodium, from any thread, relies on it. */
    if (sodium_init() < 0) {
        log_error("libsodium cannot be initialised: password hashing is unavailable");
        return -1;
    }
    return 0;
}

/* ---- workers (run on pool threads: nothing but their arguments) ------------------------------- */

/* input: a password_cost, then the password. output: the hash string. */
static const char *password_hash_work(pool_job *job, const void *input, size_t input_len, void *output,
                                      size_t output_cap, size_t *output_len)
{
    (void)job; /* Argon2 cannot be interrupted; a cancelled hash just runs to its end, discarded */
    password_cost cost;
    if (input_len < sizeof(cost) || output_cap < crypto_pwhash_STRBYTES)
        return password_internal;
    memcpy(&cost, input, sizeof(cost));
    const char *password = (const char *)input + sizeof(cost);
    /* With valid parameters (checked by the config) this only fails when memlimit cannot be had. */
    if (crypto_pwhash_str(output, password, input_len - sizeof(cost), cost.opslimit, cost.memlimit) != 0)
        return password_no_memory;
    *output_len = strlen(output);
    return NULL;
}

/* input: the hash, its NUL, then the password. output: one byte, 1 when the password matches. */
static const char *password_verify_work(pool_job *job, const void *input, size_t input_len, void *output,
                                        size_t output_cap, size_t *output_len)
{
    (void)job;
    const char *hash = input;
    size_t hash_len = strnlen(hash, input_len);
    if (hash_len == input_len || output_cap < 1)
        return password_internal;
    /* crypto_pwhash_str_verify answers -1 both for "wrong password" and for "cannot parse the hash"
     * (errno tells them apart only by accident: EINVAL on a mismatch, untouched on a parse error).
     * crypto_pwhash_str_needs_rehash parses the string the same way without hashing anything and
     * answers -1 only when it cannot, so asking it first makes "malformed" a separate, cheap outcome.
     * The limits passed are irrelevant: only -1 versus anything else is read. */
    if (crypto_pwhash_str_needs_rehash(hash, crypto_pwhash_OPSLIMIT_MIN, crypto_pwhash_MEMLIMIT_MIN) < 0)
        return password_malformed;
    /* From here -1 means a mismatch. libsodium also reports a failure to allocate the hash's memory
     * as a mismatch; the loop's cost check keeps that memory within what a hash here takes. */
    const char *password = hash + hash_len + 1;
    bool valid = crypto_pwhash_str_verify(hash, password, input_len - hash_len - 1) == 0;
    ((unsigned char *)output)[0] = valid ? 1 : 0;
    *output_len = 1;
    return NULL;
}

/* ---- validation (on the loop) ----------------------------------------------------------------- */

/* What the routes take (docs/schemas.md). The password's length is passed along, never found with
 * strlen in the worker: Argon2 takes bytes. Strings never hold U+0000 (the schema refuses it), so here
 * strlen is the length. */
typedef struct password_in {
    const char *password;
    const char *hash;
} password_in;

static const schema_member password_hash_members[] = {
    SCHEMA_REQUIRED(password_in, password, SCHEMA_STRING(.min_length = 1)),
    SCHEMA_END,
};
static const schema_member password_verify_members[] = {
    SCHEMA_REQUIRED(password_in, password, SCHEMA_STRING(.min_length = 1)),
    SCHEMA_REQUIRED(password_in, hash, SCHEMA_STRING()),
    SCHEMA_END,
};

/* Reads "<name>=<decimal>" at *p and moves past it. Decimal fits in 32 bits, as in Argon2 strings. */
static bool password_cost_field(const char **p, const char *name, uint64_t *out)
{
    size_t name_len = strlen(name);
    if (strncmp(*p, name, name_len) != 0)
        return false;
    const char *s = *p + name_len;
    uint64_t value = 0;
    const char *start = s;
    for (; *s >= '0' && *s <= '9'; s++) {
        if ((value = value * 10 + (uint64_t)(*s - '0')) > UINT32_MAX)
            return false;
    }
    if (s == start)
        return false;
    *out = value;
    *p = s;
    return true;
}

/* The hash comes from the client, and verifying it costs what its own parameters say: "m=4194304"
 * would have a worker allocate 4 GiB. So a hash may ask for no more memory, and no more work (memory
 * times passes), than a hash made here with the configured settings; anything else is refused like a
 * malformed one. Only m and t are read here; libsodium does the full parsing in the worker. */
static bool password_hash_cost_ok(const char *hash, size_t prefix_len)
{
    const handlers_settings *cfg = handlers_get_settings();
    const char *p = hash + prefix_len;
    uint64_t version, m_kib, passes, lanes;
    if (password_cost_field(&p, "v=", &version) && *p++ != '$')
        return false;
    if (!password_cost_field(&p, "m=", &m_kib) || *p++ != ',' || !password_cost_field(&p, "t=", &passes) ||
        *p++ != ',' || !password_cost_field(&p, "p=", &lanes) || *p != '$')
        return false;
    uint64_t max_kib = cfg->password_memlimit_bytes / 1024;
    return m_kib <= max_kib && m_kib * passes <= max_kib * cfg->password_opslimit;
}

/* Why a client's hash is refused before any work, or NULL: it must look like an Argon2 string libsodium
 * writes, and cost no more than one made here. The worker's parse does the rest. */
static const char *password_hash_refusal(const char *text)
{
    size_t prefix_len = 0;
    if (strncmp(text, PASSWORD_ARGON2ID_PREFIX, strlen(PASSWORD_ARGON2ID_PREFIX)) == 0)
        prefix_len = strlen(PASSWORD_ARGON2ID_PREFIX);
    else if (strncmp(text, PASSWORD_ARGON2I_PREFIX, strlen(PASSWORD_ARGON2I_PREFIX)) == 0)
        prefix_len = strlen(PASSWORD_ARGON2I_PREFIX);
    /* Every string libsodium writes fits crypto_pwhash_STRBYTES with its NUL. */
    if (prefix_len == 0 || strlen(text) >= crypto_pwhash_STRBYTES)
        return "must be an $argon2id$ or $argon2i$ string of at most 127 bytes";
    if (!password_hash_cost_ok(text, prefix_len))
        return "is malformed, or asks for more memory or passes than this server's own hashes";
    return NULL;
}
_Static_assert(crypto_pwhash_STRBYTES == 128, "the message above says 127 bytes");

/* The checks the declaration cannot make: the configured byte limit, the hash's form and cost. */
static void password_check(http_request *req, const void *input, schema_errors *errs)
{
    (void)req;
    const password_in *in = input;
    const unsigned max = handlers_get_settings()->password_max_bytes;
    errs->in = "body";
    if (strlen(in->password) > max)
        schema_errors_add(errs, "password", "must be a string of 1 to %u bytes", max);
    const char *why = in->hash ? password_hash_refusal(in->hash) : NULL;
    if (why)
        schema_errors_add(errs, "hash", "%s", why);
}

static const schema_member password_hash_answer[] = {
    SCHEMA_UNBOUND("hash", SCHEMA_MEMBER_REQUIRED, SCHEMA_STRING(.pattern = SCHEMA_PATTERN("^[$]argon2id[$]"))),
    SCHEMA_END,
};
static const schema_member password_verify_answer[] = {
    SCHEMA_UNBOUND("valid", SCHEMA_MEMBER_REQUIRED, SCHEMA_BOOLEAN()),
    SCHEMA_END,
};
const route_schema password_hash_schema = {
    .input_size = sizeof(password_in),
    .body = SCHEMA_OBJECT(password_in, password_hash_members),
    .quiet_body_errors = true, /* never quote the password back */
    .check = password_check,
    .summary = "Hash a password with Argon2id on the worker pool",
    .responses = (const route_response[]){
        {200, "the hash", &(const schema){.type = SCHEMA_T_OBJECT, .members = password_hash_answer}}, {0}},
};
const route_schema password_verify_schema = {
    .input_size = sizeof(password_in),
    .body = SCHEMA_OBJECT(password_in, password_verify_members),
    .quiet_body_errors = true,
    .check = password_check,
    .summary = "Verify a password against an Argon2 hash on the worker pool",
    .responses = (const route_response[]){
        {200, "whether it matches", &(const schema){.type = SCHEMA_T_OBJECT, .members = password_verify_answer}},
        {0}},
};

/* ---- submitting and answering ----------------------------------------------------------------- */

/* Answers a pool operation that failed for a reason of the pool's or an unexpected one. The pool
 * refuses at once when its queue is full: a quick 503 lets the client come back or go elsewhere, where
 * queueing without bound would only turn overload into timeouts. */
static void password_pool_failed(http_request *req, const async_op *op, const char *what)
{
    if (op->error == POOL_ERROR_FULL) {
        http_response_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, NULL, "every worker is busy; retry shortly");
        return;
    }
    http_respond_problem(req, 500, NULL, "the password could not be %s", what);
}

/* Submits head and tail as one input, then wipes that buffer: pool_submit keeps a copy of its own,
 * which the pool wipes when it frees the job. */
static async_op *password_submit(async_scope *scope, pool_work_fn work, const void *head, size_t head_len,
                                 const void *tail, size_t tail_len, size_t output_cap)
{
    size_t len = head_len + tail_len;
    unsigned char *input = xmalloc(len);
    memcpy(input, head, head_len);
    memcpy(input + head_len, tail, tail_len);
    async_op *op = pool_submit(scope, handlers_get_settings()->pool, work, input, len, output_cap);
    sodium_memzero(input, len);
    free(input);
    return op;
}

static void password_hash_done(async_op *op, void *arg)
{
    http_request *req = arg; /* a continuation only runs while its request is alive */
    if (op->status != ASYNC_OK) {
        password_pool_failed(req, op, "hashed");
        return;
    }
    const pool_result *result = op->value;
    http_respond_json(req, 200, json_pack("{s:s%}", "hash", (const char *)result->data, result->len));
}

void password_hash_post(http_request *req)
{
    const password_in *in = http_request_input(req);
    async_scope *scope = http_request_async(req);
    if (!scope)
        return; /* the loop is at its cap of waiting requests and has already answered 503 */
    const handlers_settings *cfg = handlers_get_settings();
    password_cost cost = {.opslimit = cfg->password_opslimit, .memlimit = cfg->password_memlimit_bytes};
    async_op *op = password_submit(scope, password_hash_work, &cost, sizeof(cost), in->password,
                                   strlen(in->password), crypto_pwhash_STRBYTES);
    async_op_then(op, password_hash_done, req);
}

static void password_verify_done(async_op *op, void *arg)
{
    http_request *req = arg;
    if (op->status != ASYNC_OK) {
        if (op->error && strcmp(op->error, password_malformed) == 0)
            http_respond_problem(req, 422, json_pack("{s:s}", "field", "hash"),
                                 "hash is not an Argon2 string libsodium can read");
        else
            password_pool_failed(req, op, "verified");
        return;
    }
    const pool_result *result = op->value;
    bool valid = result->len == 1 && result->data[0] == 1;
    http_respond_json(req, 200, json_pack("{s:b}", "valid", valid));
}

void password_verify_post(http_request *req)
{
    const password_in *in = http_request_input(req);
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    /* The hash with its NUL, so the worker can hand it to libsodium in place, then the password. */
    async_op *op = password_submit(scope, password_verify_work, in->hash, strlen(in->hash) + 1, in->password,
                                   strlen(in->password), 1);
    async_op_then(op, password_verify_done, req);
}
