/* routes: the table of every endpoint the apiary binary serves beside the library's built-ins
 * (/healthz, /readyz, /metrics), and the hooks that give them their settings. Add a route here and its
 * handler in the file of its area; docs/architecture.md shows how to write one. */
#include "app_internal.h"
#include "handlers.h"
#include "log.h"

typedef struct handlers_route {
    http_method method;
    const char *pattern;
    http_handler_fn handler;
    unsigned flags; /* ROUTE_BODY_JSON: the engine answers 415 for other media types before the body;
                     * ROUTE_CORO: the handler runs as a coroutine (async_await) */
    const route_schema *schema; /* validated and bound before the handler runs (docs/schemas.md), or NULL */
} handlers_route;

static const handlers_route handlers_routes[] = {
    {HTTP_METHOD_GET, "/v1/hello", hello_get, 0, NULL},
    {HTTP_METHOD_POST, "/v1/echo", echo_post, ROUTE_BODY_JSON, NULL},
    {HTTP_METHOD_GET, "/v1/sleep", sleep_get, 0, &sleep_schema},
    {HTTP_METHOD_POST, "/v1/aggregate", aggregate_post, ROUTE_CORO, &aggregate_schema},
    {HTTP_METHOD_GET, "/v1/example/pair", example_pair_get, 0, NULL},
    {HTTP_METHOD_GET, "/v1/example/pair_await", example_pair_await_get, ROUTE_CORO, NULL},
    {HTTP_METHOD_POST, "/v1/password/hash", password_hash_post, ROUTE_BODY_JSON, &password_hash_schema},
    {HTTP_METHOD_POST, "/v1/password/verify", password_verify_post, ROUTE_BODY_JSON, &password_verify_schema},
    {HTTP_METHOD_GET, "/v1/primes", primes_get, 0, &primes_schema},
    {HTTP_METHOD_GET, "/v1/kv/{key}", kv_get, 0, &kv_get_schema},
    {HTTP_METHOD_PUT, "/v1/kv/{key}", kv_put, ROUTE_BODY_JSON, &kv_put_schema},
    {HTTP_METHOD_DELETE, "/v1/kv/{key}", kv_delete, 0, &kv_delete_schema},
    {HTTP_METHOD_POST, "/v1/fanout", fanout_post, ROUTE_CORO, &fanout_schema},
    {HTTP_METHOD_GET, "/v1/db", world_db_get, 0, NULL},
    {HTTP_METHOD_GET, "/v1/db_await", world_db_await_get, ROUTE_CORO, NULL},
    {HTTP_METHOD_GET, "/v1/queries", world_queries_get, 0, NULL},
    {HTTP_METHOD_GET, "/v1/updates", world_updates_get, ROUTE_CORO, NULL},
    {HTTP_METHOD_POST, "/v1/items", items_post, ROUTE_CORO, &items_post_schema},
    {HTTP_METHOD_GET, "/v1/items", items_list, ROUTE_CORO, &items_list_schema},
    {HTTP_METHOD_GET, "/v1/items/{id}", items_get, ROUTE_CORO, &items_get_schema},
    {HTTP_METHOD_DELETE, "/v1/items/{id}", items_delete, ROUTE_CORO, &items_delete_schema},
    {HTTP_METHOD_GET, "/v1/events", events_get, ROUTE_CORO, &events_schema},
    {HTTP_METHOD_GET, "/v1/stream", stream_get, ROUTE_CORO, &stream_schema},
    {HTTP_METHOD_POST, "/v1/upload", upload_post, ROUTE_CORO | ROUTE_BODY_STREAM, &upload_schema},
    {HTTP_METHOD_GET, "/v1/ws/echo", ws_echo_get, 0, NULL},
    {HTTP_METHOD_GET, "/v1/topics/{topic}/events", topics_events_get, 0, &topics_events_schema},
    {HTTP_METHOD_POST, "/v1/topics/{topic}", topics_publish, 0, &topics_publish_schema},
    {HTTP_METHOD_GET, "/v1/topics/{topic}/ws", topics_ws_get, 0, &topics_ws_schema},
};

_Atomic int64_t handlers_max_sleep_ms, handlers_primes_max_n;

/* Swapped whole on a config reload while loops run: readers see either the old or the new settings. */
static const handlers_settings *_Atomic handlers_current_settings;

const handlers_settings *handlers_get_settings(void) { return handlers_current_settings; }

void handlers_update_settings(const handlers_settings *settings) { handlers_current_settings = settings; }

/* The endpoints' settings are keys of apiary's own config file (limits.max_sleep_ms, password.*, kv.*,
 * ...), read from the context's config; they live in the context's memory, as long as it. */
static int handlers_derive(const apiary_context *ctx, void *arg)
{
    (void)arg;
    const apiary_config *cfg = apiary_context_config(ctx);
    handlers_settings *h = apiary_context_alloc(ctx, sizeof(*h));
    *h = (handlers_settings){
        .max_sleep_ms = cfg->max_sleep_ms,
        .max_aggregate_sources = cfg->max_aggregate_sources,
        .pool = apiary_context_pool(ctx),
        .password_opslimit = cfg->password_opslimit,
        .password_memlimit_bytes = (size_t)cfg->password_memlimit_kib * 1024,
        .password_max_bytes = cfg->password_max_bytes,
        .primes_max_n = cfg->primes_max_n,
        .fanout_max_requests = cfg->fanout_max_requests,
        .json_max_depth = cfg->http.json_max_depth,
        .json_max_values = cfg->http.json_max_values,
        .kv_use_redis = cfg->kv_backend == CONFIG_KV_REDIS,
        .kv_max_key_bytes = cfg->kv_max_key_bytes,
        .kv_max_value_bytes = cfg->kv_max_value_bytes,
        .kv_max_entries = cfg->kv_max_entries,
        .kv_max_memory_bytes = cfg->kv_max_memory_bytes,
        .redis = apiary_context_redis(ctx),
    };
    apiary_context_upstreams(ctx, &h->upstreams, &h->upstream_count);
    handlers_update_settings(h);
    handlers_max_sleep_ms = cfg->max_sleep_ms;
    handlers_primes_max_n = cfg->primes_max_n;
    return 0;
}

static int handlers_start(const apiary_context *ctx, void *arg)
{
    if (password_init() != 0)
        return -1;
    return handlers_derive(ctx, arg);
}

int handlers_add_routes(apiary_app *app)
{
    /* The limits until the config is loaded (apiary --openapi documents these). */
    apiary_config defaults;
    config_defaults(&defaults);
    handlers_max_sleep_ms = defaults.max_sleep_ms;
    handlers_primes_max_n = defaults.primes_max_n;
    for (size_t i = 0; i < sizeof(handlers_routes) / sizeof(handlers_routes[0]); i++) {
        const handlers_route *route = &handlers_routes[i];
        if (apiary_app_route_schema(app, route->method, route->pattern, route->handler, route->flags, route->schema) !=
            0) {
            log_error("cannot register %s %s", http_method_name(route->method), route->pattern);
            return -1;
        }
    }
    apiary_app_on_start(app, handlers_start, NULL);
    apiary_app_on_startup(app, schema_startup, NULL); /* world and items: the library creates no table */
    apiary_app_on_reload(app, handlers_derive, NULL);
    apiary_app_ready_check(app, kv_ready);
    return 0;
}
