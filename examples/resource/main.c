/* resource: a small resource API on apiary, built against an installed library. Items are created
 * after an awaited call to a catalog upstream that prices the SKU, quoted by a fan-out to several
 * suppliers bounded by a semaphore, and fingerprinted by a CPU job on the worker pool. Its settings are
 * its own config section, "resource", validated at start and on every reload. The routes that wait are
 * coroutine handlers (ROUTE_CORO): each reads top to bottom, awaiting where it waits. */
#include <apiary/apiary.h>

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- settings: the "resource" section of the config file ------------------------------------ */

typedef struct resource_settings {
    json_int_t max_items;      /* items held at once; more: 507 */
    json_int_t suppliers;      /* quotes asked per GET /v1/items/{id}/quotes */
    json_int_t max_parallel;   /* of those, at most this many at once (a semaphore per request) */
    json_int_t digest_rounds;  /* BLAKE2b rounds of the fingerprint job */
    char catalog[33];          /* the upstream (config "upstreams") that prices SKUs and quotes */
} resource_settings;

static int resource_int(const json_t *sec, const char *key, json_int_t min, json_int_t max, json_int_t *out,
                        char *err, size_t cap)
{
    const json_t *v = json_object_get(sec, key);
    if (!v)
        return 0; /* keeps the default */
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        snprintf(err, cap, "%s: must be an integer between %lld and %lld", key, (long long)min, (long long)max);
        return -1;
    }
    *out = json_integer_value(v);
    return 0;
}

static int resource_parse(const json_t *sec, void **out, char *err, size_t cap)
{
    resource_settings *s = calloc(1, sizeof(*s));
    *s = (resource_settings){.max_items = 1000, .suppliers = 3, .max_parallel = 2, .digest_rounds = 100000};
    snprintf(s->catalog, sizeof(s->catalog), "catalog");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)sec, key, v) {
        if (strcmp(key, "max_items") && strcmp(key, "suppliers") && strcmp(key, "max_parallel") &&
            strcmp(key, "digest_rounds") && strcmp(key, "catalog")) {
            snprintf(err, cap, "unknown key '%s'", key);
            free(s);
            return -1;
        }
    }
    const json_t *cat = json_object_get(sec, "catalog");
    if (cat && (!json_is_string(cat) || !json_string_length(cat) || json_string_length(cat) >= sizeof(s->catalog))) {
        snprintf(err, cap, "catalog: must be the name of an upstream");
        free(s);
        return -1;
    }
    if (cat)
        snprintf(s->catalog, sizeof(s->catalog), "%s", json_string_value(cat));
    if (resource_int(sec, "max_items", 1, 1000000, &s->max_items, err, cap) ||
        resource_int(sec, "suppliers", 1, 16, &s->suppliers, err, cap) ||
        resource_int(sec, "max_parallel", 1, 16, &s->max_parallel, err, cap) ||
        resource_int(sec, "digest_rounds", 1, 10000000, &s->digest_rounds, err, cap)) {
        free(s);
        return -1;
    }
    *out = s;
    return 0;
}

static const resource_settings *settings(void) { return apiary_section("resource"); }

/* ---- the store: items shared by every loop thread ------------------------------------------- */

typedef struct item {
    long id;
    char name[65];
    char sku[33];
    long quantity;
    long price_cents;
} item;

static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static item *store;
static long store_count, store_next_id = 1;

static json_t *item_json(const item *it)
{
    return json_pack("{s:I,s:s,s:s,s:I,s:I}", "id", (json_int_t)it->id, "name", it->name, "sku", it->sku,
                     "quantity", (json_int_t)it->quantity, "price_cents", (json_int_t)it->price_cents);
}

/* Copies item `id` into *out; false when there is none. */
static bool store_get(long id, item *out)
{
    bool found = false;
    pthread_mutex_lock(&store_lock);
    for (long i = 0; i < store_count && !found; i++)
        if (store[i].id == id) {
            *out = store[i];
            found = true;
        }
    pthread_mutex_unlock(&store_lock);
    return found;
}

static bool store_add(item *it, long max)
{
    pthread_mutex_lock(&store_lock);
    bool ok = store_count < max;
    if (ok) {
        it->id = store_next_id++;
        store = realloc(store, (size_t)(store_count + 1) * sizeof(*store));
        store[store_count++] = *it;
    }
    pthread_mutex_unlock(&store_lock);
    return ok;
}

/* A path parameter "{id}" as a positive number, else 404 (no such resource, whatever the text). */
static bool item_from_path(http_request *req, item *out)
{
    const char *p = http_request_param(req, "id");
    char *end;
    long id = p ? strtol(p, &end, 10) : 0;
    if (!p || *end || id < 1 || !store_get(id, out)) {
        http_respond_problem(req, 404, NULL, "no such item");
        return false;
    }
    return true;
}

static void answer_upstream_failure(http_request *req, const async_op *op)
{
    http_respond_problem(req, op->status == ASYNC_TIMEOUT ? 504 : 502, NULL, "the catalog did not answer: %s",
                         op->error ? op->error : "failed");
}

/* The "price_cents" integer of an upstream's JSON answer. A price document is small: tight limits, so
 * a hostile catalog costs a scan, never a big tree, and never a deep recursion on the coroutine's
 * stack (http_client_response_json measures before jansson parses). */
static bool upstream_price(const http_client_response *r, json_int_t *cents)
{
    json_t *body = http_client_response_json(r, 8, 64);
    json_t *value = json_object_get(body, "price_cents");
    bool found = json_is_integer(value);
    *cents = found ? json_integer_value(value) : 0;
    json_decref(body);
    return found;
}

/* ---- POST /v1/items: validate, then await the catalog's price ------------------------------- */

static bool field_problem(http_request *req, const char *field, const char *why)
{
    http_respond_problem(req, 422, json_pack("{s:s}", "field", field), "%s %s", field, why);
    return false;
}

static bool create_validate(http_request *req, item *it)
{
    json_error_t jerr;
    json_t *body = http_request_json(req, &jerr);
    if (!body) {
        http_respond_problem(req, jerr.line == HTTP_JSON_TOO_LARGE ? 413 : 400, NULL, "the body is not JSON: %s",
                             jerr.text);
        return false;
    }
    if (!json_is_object(body))
        return field_problem(req, "body", "must be an object");
    const json_t *name = json_object_get(body, "name"), *sku = json_object_get(body, "sku"),
                 *qty = json_object_get(body, "quantity");
    if (!json_is_string(name) || json_string_length(name) < 1 || json_string_length(name) > 64)
        return field_problem(req, "name", "must be a string of 1 to 64 bytes");
    if (!json_is_string(sku) || json_string_length(sku) < 1 || json_string_length(sku) > 32 ||
        strspn(json_string_value(sku), "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != json_string_length(sku))
        return field_problem(req, "sku", "must be 1 to 32 of A-Z, 0-9 and '-'");
    if (!json_is_integer(qty) || json_integer_value(qty) < 1 || json_integer_value(qty) > 1000)
        return field_problem(req, "quantity", "must be an integer between 1 and 1000");
    snprintf(it->name, sizeof(it->name), "%s", json_string_value(name));
    snprintf(it->sku, sizeof(it->sku), "%s", json_string_value(sku));
    it->quantity = (long)json_integer_value(qty);
    return true;
}

static void items_post(http_request *req)
{
    item it = {0};
    if (!create_validate(req, &it))
        return;
    async_scope *scope = http_request_async(req);
    if (!scope)
        return; /* at the loop's cap of waiting requests: already answered 503 */
    const http_client_upstream *catalog = apiary_upstream(settings()->catalog);
    if (!catalog) { /* a reload renamed it away */
        http_respond_problem(req, 503, NULL, "no catalog upstream is configured");
        return;
    }
    char path[64];
    snprintf(path, sizeof(path), "/skus/%s", it.sku);
    async_op *op = async_await(http_client_request(scope, http_request_loop(req), catalog, "GET", path, NULL, 0));
    if (op->status != ASYNC_OK) { /* also ASYNC_CANCELLED: the request is gone, the answer is dropped */
        answer_upstream_failure(req, op);
        return;
    }
    const http_client_response *r = op->value;
    json_int_t cents = 0;
    bool priced = r->status == 200 && upstream_price(r, &cents);
    if (r->status == 404) {
        field_problem(req, "sku", "is not in the catalog");
    } else if (!priced || cents < 0) {
        http_respond_problem(req, 502, NULL, "the catalog answered %d without a price", r->status);
    } else {
        it.price_cents = (long)cents;
        if (!store_add(&it, (long)settings()->max_items)) {
            http_respond_problem(req, 507, NULL, "the store holds %lld items already",
                                 (long long)settings()->max_items);
        } else {
            char location[64];
            snprintf(location, sizeof(location), "/v1/items/%ld", it.id);
            http_response_header(req, "Location", location);
            http_respond_json(req, 201, item_json(&it));
        }
    }
}

static void items_get(http_request *req)
{
    item it;
    if (item_from_path(req, &it))
        http_respond_json(req, 200, item_json(&it));
}

/* ---- GET /v1/items/{id}/quotes: fan-out, at most max_parallel calls at once ------------------ */

/* One supplier's quote, a coroutine of its own (asyncio.create_task): `async with sem: await call`. */
typedef struct quote_task {
    http_request *req;
    const item *it;
    async_sem *sem;   /* per request: this request's share of the suppliers */
    int supplier;
    async_op *call;   /* the HTTP call, once made */
    async_op *done;   /* future: resolved when this quote is over */
} quote_task;

static void quote_task_run(void *arg)
{
    quote_task *t = arg;
    async_scope *scope = http_request_async(t->req);
    if (async_await(async_sem_acquire(scope, t->sem))->status != ASYNC_OK)
        return; /* cancelled: the request is gone */
    char path[96];
    snprintf(path, sizeof(path), "/quote?sku=%s&supplier=%d", t->it->sku, t->supplier);
    t->call = async_await(http_client_request(scope, http_request_loop(t->req), apiary_upstream(settings()->catalog),
                                              "GET", path, NULL, 0));
    async_sem_release(t->sem); /* the next supplier may go */
    async_resolve(t->done, NULL);
}

static void quotes_get(http_request *req)
{
    item it;
    if (!item_from_path(req, &it))
        return;
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    const resource_settings *s = settings();
    if (!apiary_upstream(s->catalog)) {
        http_respond_problem(req, 503, NULL, "no catalog upstream is configured");
        return;
    }
    /* The tasks live on this coroutine's stack: it outlives them (it awaits them all, and when the
     * request ends they unwind before it does). */
    int n = (int)s->suppliers;
    quote_task tasks[16];
    async_op *done[16];
    async_sem sem;
    async_sem_init(&sem, (unsigned)s->max_parallel);
    for (int i = 0; i < n; i++) {
        tasks[i] = (quote_task){req, &it, &sem, i + 1, NULL, done[i] = async_future(scope)};
        if (!async_coro_spawn(scope, quote_task_run, &tasks[i]))
            async_fail(done[i], "no stack for the call");
    }
    if (async_await(async_gather(scope, done, (size_t)n, ASYNC_GATHER_ALL))->status != ASYNC_OK)
        return;
    json_t *list = json_array();
    json_int_t best = -1;
    for (int i = 0; i < n; i++) {
        const async_op *call = tasks[i].call ? tasks[i].call : done[i];
        json_t *entry = json_pack("{s:i}", "supplier", tasks[i].supplier);
        const http_client_response *r = tasks[i].call && call->status == ASYNC_OK ? call->value : NULL;
        json_int_t cents = 0;
        if (r && r->status == 200 && upstream_price(r, &cents)) {
            json_object_set_new(entry, "price_cents", json_integer(cents));
            if (best < 0 || cents < best)
                best = cents;
        } else {
            json_object_set_new(entry, "error", json_string(r ? "bad answer" : call->error));
        }
        json_array_append_new(list, entry);
    }
    http_respond_json(req, 200, json_pack("{s:I,s:o,s:o}", "id", (json_int_t)it.id, "quotes", list, "best_cents",
                                          best < 0 ? json_null() : json_integer(best)));
}

/* ---- GET /v1/items/{id}/fingerprint: a CPU job on the worker pool --------------------------- */

typedef struct fingerprint_input {
    item it;
    json_int_t rounds;
} fingerprint_input;

/* Worker thread: nothing but its arguments. Stops early when the request is gone. */
static const char *fingerprint_work(pool_job *job, const void *input, size_t input_len, void *output,
                                    size_t output_cap, size_t *output_len)
{
    (void)input_len;
    (void)output_cap;
    const fingerprint_input *in = input;
    unsigned char h[crypto_generichash_BYTES];
    crypto_generichash(h, sizeof(h), (const unsigned char *)&in->it, sizeof(in->it), NULL, 0);
    for (json_int_t i = 1; i < in->rounds; i++) {
        if ((i & 1023) == 0 && pool_job_cancelled(job))
            return "cancelled";
        crypto_generichash(h, sizeof(h), h, sizeof(h), NULL, 0);
    }
    sodium_bin2hex(output, 2 * sizeof(h) + 1, h, sizeof(h));
    *output_len = 2 * sizeof(h);
    return NULL;
}

static void fingerprint_get(http_request *req)
{
    fingerprint_input in = {.rounds = settings()->digest_rounds};
    if (!item_from_path(req, &in.it))
        return;
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    async_op *op = async_await(
        pool_submit(scope, apiary_pool(), fingerprint_work, &in, sizeof(in), 2 * crypto_generichash_BYTES + 1));
    if (op->status != ASYNC_OK) {
        if (op->error == POOL_ERROR_FULL)
            http_response_header(req, "Retry-After", "1");
        http_respond_problem(req, op->error == POOL_ERROR_FULL ? 503 : 500, NULL, "the fingerprint failed: %s",
                             op->error);
        return;
    }
    const pool_result *r = op->value;
    http_respond_json(req, 200, json_pack("{s:s}", "fingerprint", (const char *)r->data));
}

/* ---- the app -------------------------------------------------------------------------------- */

static int resource_start(const apiary_context *ctx, void *arg)
{
    (void)arg;
    const resource_settings *s = apiary_context_section(ctx, "resource");
    if (!apiary_context_upstream(ctx, s->catalog)) {
        log_error("resource.catalog: no upstream called '%s' in \"upstreams\"", s->catalog);
        return -1;
    }
    return sodium_init() < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    apiary_app *app = apiary_app_new("resource");
    apiary_app_section(app, "resource", resource_parse, free);
    apiary_app_on_start(app, resource_start, NULL);
    apiary_app_route(app, HTTP_METHOD_POST, "/v1/items", items_post, ROUTE_BODY_JSON | ROUTE_CORO);
    apiary_app_route(app, HTTP_METHOD_GET, "/v1/items/{id}", items_get, 0);
    apiary_app_route(app, HTTP_METHOD_GET, "/v1/items/{id}/quotes", quotes_get, ROUTE_CORO);
    apiary_app_route(app, HTTP_METHOD_GET, "/v1/items/{id}/fingerprint", fingerprint_get, ROUTE_CORO);
    return apiary_app_main(app, argc, argv);
}
