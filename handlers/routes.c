/* routes: the table of every endpoint apiary serves. Add a route here and its handler in the file of
 * its area; docs/architecture.md shows how to write one. */
#include "handlers.h"
#include "log.h"

typedef struct handlers_route {
    http_method method;
    const char *pattern;
    http_handler_fn handler;
    unsigned flags; /* ROUTE_BODY_JSON: the engine answers 415 for other media types before the body */
} handlers_route;

static const handlers_route handlers_routes[] = {
    {HTTP_METHOD_GET, "/healthz", health_live, 0},
    {HTTP_METHOD_GET, "/readyz", health_ready, 0},
    {HTTP_METHOD_GET, "/metrics", metrics_get, 0},
    {HTTP_METHOD_GET, "/v1/hello", hello_get, 0},
    {HTTP_METHOD_POST, "/v1/echo", echo_post, ROUTE_BODY_JSON},
    {HTTP_METHOD_GET, "/v1/sleep", sleep_get, 0},
    {HTTP_METHOD_POST, "/v1/aggregate", aggregate_post, ROUTE_BODY_JSON},
    {HTTP_METHOD_GET, "/v1/example/pair", example_pair_get, 0},
    {HTTP_METHOD_POST, "/v1/password/hash", password_hash_post, ROUTE_BODY_JSON},
    {HTTP_METHOD_POST, "/v1/password/verify", password_verify_post, ROUTE_BODY_JSON},
    {HTTP_METHOD_GET, "/v1/primes", primes_get, 0},
    {HTTP_METHOD_GET, "/v1/kv/{key}", kv_get, 0},
    {HTTP_METHOD_PUT, "/v1/kv/{key}", kv_put, ROUTE_BODY_JSON},
    {HTTP_METHOD_DELETE, "/v1/kv/{key}", kv_delete, 0},
    {HTTP_METHOD_POST, "/v1/fanout", fanout_post, ROUTE_BODY_JSON},
    {HTTP_METHOD_GET, "/v1/db", world_db_get, 0},
    {HTTP_METHOD_GET, "/v1/queries", world_queries_get, 0},
    {HTTP_METHOD_GET, "/v1/updates", world_updates_get, 0},
    {HTTP_METHOD_POST, "/v1/items", items_post, ROUTE_BODY_JSON},
    {HTTP_METHOD_GET, "/v1/items", items_list, 0},
    {HTTP_METHOD_GET, "/v1/items/{id}", items_get, 0},
    {HTTP_METHOD_DELETE, "/v1/items/{id}", items_delete, 0},
};

/* Swapped whole on a config reload while loops run: readers see either the old or the new settings. */
static const handlers_settings *_Atomic handlers_current_settings;

const handlers_settings *handlers_get_settings(void) { return handlers_current_settings; }

void handlers_update_settings(const handlers_settings *settings) { handlers_current_settings = settings; }

int handlers_register(router *r, const handlers_settings *settings)
{
    handlers_current_settings = settings;
    if (password_init() != 0)
        return -1;
    for (size_t i = 0; i < sizeof(handlers_routes) / sizeof(handlers_routes[0]); i++) {
        const handlers_route *route = &handlers_routes[i];
        if (router_add_flags(r, route->method, route->pattern, route->handler, route->flags) != 0) {
            log_error("cannot register %s %s", http_method_name(route->method), route->pattern);
            return -1;
        }
    }
    return 0;
}
