/* resource: a small resource API on apiary, built against an installed library. Items are created
 * after an awaited call to a catalog upstream that prices the SKU, quoted by a fan-out to several
 * suppliers bounded by a semaphore, and fingerprinted by a CPU job on the worker pool. Its settings are
 * its own config section, "resource", declared by a schema like the routes' input (docs/schemas.md), so
 * the engine validates both and the handlers read typed values. The routes that wait are
 * coroutine handlers (ROUTE_CORO): each reads top to bottom, awaiting where it waits. */
#include <apiary/apiary.h>

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- settings: the "resource" section of the config file, declared (docs/schemas.md) ----------- */

typedef struct resource_settings {
    int64_t max_items;     /* items held at once; more: 507 */
    int64_t suppliers;     /* quotes asked per GET /v1/items/{id}/quotes */
    int64_t max_parallel;  /* of those, at most this many at once (a semaphore per request) */
    int64_t digest_rounds; /* BLAKE2b rounds of the fingerprint job */
    const char *catalog;   /* the upstream (config "upstreams") that prices SKUs and quotes */
} resource_settings;

#define RANGE(lo, hi) SCHEMA_INTEGER(.min = SCHEMA_GE(lo), .max = SCHEMA_LE(hi))
static const schema_member settings_members[] = {
    SCHEMA_OPTIONAL(resource_settings, max_items, RANGE(1, 1000000)),
    SCHEMA_OPTIONAL(resource_settings, suppliers, RANGE(1, 16)),
    SCHEMA_OPTIONAL(resource_settings, max_parallel, RANGE(1, 16)),
    SCHEMA_OPTIONAL(resource_settings, digest_rounds, RANGE(1, 10000000)),
    SCHEMA_OPTIONAL(resource_settings, catalog, SCHEMA_STRING(.min_length = 1)),
    SCHEMA_END,
};
static const schema settings_schema = SCHEMA_OBJECT_OF(resource_settings, settings_members);
static const resource_settings settings_defaults = {1000, 3, 2, 100000, "catalog"};

/* Checked with the rest of the config, so --check-config and a start agree. */
static void settings_check(const void *section, const apiary_config_view *config, schema_errors *errs)
{
    const resource_settings *s = section;
    if (!apiary_config_upstream(config, s->catalog))
        schema_errors_add(errs, "catalog", "must name an upstream of \"upstreams\" ('%s' is none)", s->catalog);
}

static const resource_settings *settings(void) { return apiary_section("resource"); }

/* ---- the store: items shared by every loop thread ------------------------------------------- */

typedef struct item {
    long id;
    char name[64 * 4 + 1]; /* 64 characters of up to 4 bytes */
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

/* ---- what the routes take (validated and bound before a handler runs: 422 lists every violation) -- */

typedef struct item_in {
    int64_t id;           /* path {id} */
    const char *name;     /* POST body */
    const char *sku;
    int64_t quantity;
} item_in;

static const schema_member item_body[] = {
    SCHEMA_REQUIRED(item_in, name, SCHEMA_STRING(.min_length = 1, .max_length = 64)),
    SCHEMA_REQUIRED(item_in, sku, SCHEMA_STRING(.pattern = SCHEMA_PATTERN("^[A-Z0-9-]{1,32}$"))),
    SCHEMA_REQUIRED(item_in, quantity, RANGE(1, 1000)),
    SCHEMA_END,
};
static const route_schema create_schema = {.input_size = sizeof(item_in), .body = SCHEMA_OBJECT(item_in, item_body)};
static const route_schema by_id_schema = {
    .input_size = sizeof(item_in),
    .path = (const schema_member[]){SCHEMA_REQUIRED(item_in, id, SCHEMA_INTEGER(.min = SCHEMA_GE(1))), SCHEMA_END},
};

/* The item the path names, else 404. */
static bool item_from_path(http_request *req, item *out)
{
    const item_in *in = http_request_input(req);
    if (!store_get((long)in->id, out)) {
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

static void items_post(http_request *req)
{
    const item_in *in = http_request_input(req);
    item it = {.quantity = (long)in->quantity};
    snprintf(it.name, sizeof(it.name), "%s", in->name);
    snprintf(it.sku, sizeof(it.sku), "%s", in->sku);
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
        http_respond_problem(req, 422, json_pack("{s:s}", "field", "sku"), "sku is not in the catalog");
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
    (void)ctx;
    (void)arg;
    return sodium_init() < 0 ? -1 : 0;
}

int main(int argc, char **argv)
{
    apiary_app *app = apiary_app_new("resource");
    apiary_app_section_schema(app, "resource", &settings_schema, &settings_defaults, settings_check);
    apiary_app_on_start(app, resource_start, NULL);
    apiary_app_route_schema(app, HTTP_METHOD_POST, "/v1/items", items_post, ROUTE_CORO, &create_schema);
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/v1/items/{id}", items_get, 0, &by_id_schema);
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/v1/items/{id}/quotes", quotes_get, ROUTE_CORO, &by_id_schema);
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/v1/items/{id}/fingerprint", fingerprint_get, ROUTE_CORO,
                            &by_id_schema);
    return apiary_app_main(app, argc, argv);
}
