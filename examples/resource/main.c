/* resource: a small resource API on apiary, built against an installed library. Items are created
 * after an awaited call to a catalog upstream that prices the SKU, quoted by a fan-out to several
 * suppliers (at most max_parallel at once), and fingerprinted by a CPU job on the worker pool. Its
 * settings are its own config section, "resource", declared by a schema like the routes' input
 * (docs/schemas.md), so the engine validates both and the handlers read typed values. The routes that
 * wait are coroutine handlers (ROUTE_CORO): each reads top to bottom, awaiting where it waits, and a
 * failed await answers its own problem (http_await_ok: 502, 504, 503). */
#include <apiary/apiary.h>

#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- settings: the "resource" section of the config file, declared (docs/schemas.md) ----------- */

typedef struct resource_settings {
    int64_t max_items;     /* items held at once; more: 507 */
    int64_t suppliers;     /* quotes asked per GET /v1/items/{id}/quotes */
    int64_t max_parallel;  /* of those, at most this many at once */
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

/* Checked with the rest of the config, so --check-config, a start and a reload agree; a request reads
 * the generation it started on, so the catalog a handler looks up is always there. */
static void settings_check(const void *section, const apiary_config_view *config, schema_errors *errs)
{
    const resource_settings *s = section;
    if (!apiary_config_upstream(config, s->catalog))
        schema_errors_add(errs, "catalog", "must name an upstream of \"upstreams\" ('%s' is none)", s->catalog);
}

static const resource_settings *settings(void) { return apiary_section("resource"); }
static const http_client_upstream *catalog(void) { return apiary_upstream(settings()->catalog); }

/* ---- the store: items shared by every loop thread ------------------------------------------- */

typedef struct item {
    long id;
    char name[64 * 4 + 1]; /* 64 characters of up to 4 bytes */
    char sku[33];
    long quantity;
    json_int_t price_cents;
} item;

static pthread_mutex_t store_lock = PTHREAD_MUTEX_INITIALIZER;
static item *store;
static long store_count;

static json_t *item_json(const item *it)
{
    return json_pack("{s:I,s:s,s:s,s:I,s:I}", "id", (json_int_t)it->id, "name", it->name, "sku", it->sku,
                     "quantity", (json_int_t)it->quantity, "price_cents", it->price_cents);
}

static bool store_add(item *it, long max)
{
    pthread_mutex_lock(&store_lock);
    bool ok = store_count < max;
    if (ok) {
        it->id = store_count + 1; /* ids are dense: item_from_path reads store[id - 1] */
        store = realloc(store, (size_t)(store_count + 1) * sizeof(*store));
        store[store_count++] = *it;
    }
    pthread_mutex_unlock(&store_lock);
    return ok;
}

/* ---- what the routes take (validated and bound before a handler runs: 422 lists every violation) -- */

typedef struct item_in {
    int64_t id;             /* path {id} */
    const char *name, *sku; /* POST body */
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

/* A copy of the item the path names, else 404. Ids are 1, 2, ... and nothing is ever deleted, so item
 * `id` is store[id - 1]. */
static bool item_from_path(http_request *req, item *out)
{
    long id = (long)((const item_in *)http_request_input(req))->id;
    pthread_mutex_lock(&store_lock);
    bool found = id >= 1 && id <= store_count;
    if (found)
        *out = store[id - 1];
    pthread_mutex_unlock(&store_lock);
    if (!found)
        http_respond_problem(req, 404, NULL, "no such item");
    return found;
}

/* The "price_cents" of a catalog's 200 answer. A price document is small: tight limits, so a hostile
 * catalog costs a scan, never a big tree, and never a deep recursion on the coroutine's stack
 * (http_client_response_json measures before jansson parses). */
static bool upstream_price(const http_client_response *r, json_int_t *cents)
{
    json_t *body = r->status == 200 ? http_client_response_json(r, 8, 64) : NULL;
    bool found = json_unpack(body, "{s:I}", "price_cents", cents) == 0;
    json_decref(body);
    return found;
}

/* ---- POST /v1/items: validated, then await the catalog's price ------------------------------ */

static void items_post(http_request *req)
{
    const item_in *in = http_request_input(req);
    item it = {.quantity = (long)in->quantity};
    snprintf(it.name, sizeof(it.name), "%s", in->name);
    snprintf(it.sku, sizeof(it.sku), "%s", in->sku);
    /* A ROUTE_CORO handler's request always has its scope (http_request_async). */
    async_op *op = http_await_ok(req, http_client_get(http_request_async(req), http_request_loop(req), catalog(),
                                                      "/skus/%s", it.sku), 502, "the catalog did not answer");
    if (!op)
        return; /* answered: 504 timeout, 502 failure (dropped when the request is gone) */
    const http_client_response *r = op->value;
    if (r->status == 404)
        http_respond_problem(req, 422, json_pack("{s:s}", "field", "sku"), "sku is not in the catalog");
    else if (!upstream_price(r, &it.price_cents) || it.price_cents < 0)
        http_respond_problem(req, 502, NULL, "the catalog answered %d without a price", r->status);
    else if (!store_add(&it, (long)settings()->max_items))
        http_respond_problem(req, 507, NULL, "the store holds %lld items already", (long long)settings()->max_items);
    else
        http_respond_created(req, item_json(&it), "/v1/items/%ld", it.id);
}

static void items_get(http_request *req)
{
    item it;
    if (item_from_path(req, &it))
        http_respond_json(req, 200, item_json(&it));
}

/* ---- GET /v1/items/{id}/quotes: fan-out, at most max_parallel calls at once ------------------ */

typedef struct quotes_run {
    http_request *req;
    const item *it;
} quotes_run;

/* Starts supplier i + 1's quote: async_gather_map calls it as a place frees up. */
static async_op *quote_start(async_scope *scope, size_t i, void *arg)
{
    const quotes_run *q = arg;
    return http_client_get(scope, http_request_loop(q->req), catalog(), "/quote?sku=%s&supplier=%zu", q->it->sku,
                           i + 1);
}

static void quotes_get(http_request *req)
{
    item it;
    if (!item_from_path(req, &it))
        return;
    size_t n = (size_t)settings()->suppliers;
    async_op *all = async_await(async_gather_map(http_request_async(req), n, (size_t)settings()->max_parallel,
                                                 quote_start, &(quotes_run){req, &it}, ASYNC_GATHER_ALL));
    if (all->status != ASYNC_OK)
        return; /* the request ended */
    json_t *list = json_array();
    json_int_t best = -1, cents;
    for (size_t i = 0; i < n; i++) {
        const async_op *call = async_gather_child(all, i);
        if (call->status == ASYNC_OK && upstream_price(call->value, &cents)) {
            json_array_append_new(list, json_pack("{s:i,s:I}", "supplier", (int)i + 1, "price_cents", cents));
            best = best < 0 || cents < best ? cents : best;
        } else {
            json_array_append_new(list, json_pack("{s:i,s:s}", "supplier", (int)i + 1, "error",
                                                  call->status == ASYNC_OK ? "bad answer" : call->error));
        }
    }
    http_respond_json(req, 200, json_pack("{s:I,s:o,s:o}", "id", (json_int_t)it.id, "quotes", list, "best_cents",
                                          best < 0 ? json_null() : json_integer(best)));
}

/* ---- GET /v1/items/{id}/fingerprint: a CPU job on the worker pool --------------------------- */

typedef struct fingerprint_job {
    item it;
    json_int_t rounds;
    char hex[2 * crypto_generichash_BYTES + 1]; /* the answer */
} fingerprint_job;

/* Worker thread, on its own copy of the job. Stops early when the request is gone. */
static const char *fingerprint_work(pool_job *job, void *state)
{
    fingerprint_job *f = state;
    unsigned char h[crypto_generichash_BYTES];
    crypto_generichash(h, sizeof(h), (const unsigned char *)&f->it, sizeof(f->it), NULL, 0);
    for (json_int_t i = 1; i < f->rounds; i++) {
        if ((i & 1023) == 0 && pool_job_cancelled(job))
            return "cancelled";
        crypto_generichash(h, sizeof(h), h, sizeof(h), NULL, 0);
    }
    sodium_bin2hex(f->hex, sizeof(f->hex), h, sizeof(h));
    return NULL;
}

static void fingerprint_get(http_request *req)
{
    fingerprint_job f = {.rounds = settings()->digest_rounds};
    if (!item_from_path(req, &f.it))
        return;
    /* 503 with Retry-After when the pool's queue is full, 500 when the job failed. */
    async_op *op = http_await_ok(req, pool_call(http_request_async(req), apiary_pool(), fingerprint_work, &f,
                                                sizeof(f)), 500, "the fingerprint failed");
    if (op)
        http_respond_json(req, 200, json_pack("{s:s}", "fingerprint", ((const fingerprint_job *)op->value)->hex));
}

/* ---- the app -------------------------------------------------------------------------------- */

int main(int argc, char **argv)
{
    if (sodium_init() < 0)
        return 1;
    apiary_app *app = apiary_app_new("resource");
    apiary_app_section_schema(app, "resource", &settings_schema, &settings_defaults, settings_check);
    apiary_app_route_schema(app, HTTP_METHOD_POST, "/v1/items", items_post, ROUTE_CORO, &create_schema);
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/v1/items/{id}", items_get, 0, &by_id_schema);
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/v1/items/{id}/quotes", quotes_get, ROUTE_CORO, &by_id_schema);
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/v1/items/{id}/fingerprint", fingerprint_get, ROUTE_CORO,
                            &by_id_schema);
    return apiary_app_main(app, argc, argv);
}
