/* apiary: the application API. An application is a main() that names its routes and hands over to
 * apiary_app_main, which then behaves exactly as the apiary binary does: the same command-line flags
 * (--config, --listen, --threads, --check-config, --daemon, --healthcheck, --version, --help), the same
 * config file and environment (docs/config.md), one event loop per thread, the worker pool, SIGHUP to
 * reload the config, SIGTERM/SIGINT to drain and stop. /healthz, /readyz and /metrics are always
 * served beside the app's routes, and every route gets its request counters and latency histogram in
 * /metrics.
 *
 *     static void hello(http_request *req)
 *     {
 *         http_respond_json(req, 200, json_pack("{s:s}", "hello", "world"));
 *     }
 *
 *     int main(int argc, char **argv)
 *     {
 *         apiary_app *app = apiary_app_new("hello");
 *         apiary_app_route(app, HTTP_METHOD_GET, "/hello", hello, 0);
 *         return apiary_app_main(app, argc, argv);
 *     }
 *
 * This header includes every public header, so an application needs only <apiary/apiary.h>.
 *
 * Threads: everything before apiary_app_main runs on the main thread; handlers run on loop threads
 * (docs/architecture.md); the accessors below (apiary_pool, apiary_section, ...) may be called from any
 * thread once the server runs. One application per process. */
#ifndef APIARY_APIARY_H
#define APIARY_APIARY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "async.h"
#include "http_client.h"
#include "http_method.h"
#include "http_request.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "redis.h"
#include "router.h"
#include "schema.h"
#include "sql.h"
#include "uri.h"

typedef struct apiary_app apiary_app;

/* The version of the library the app was linked with ("0.1.0"). */
const char *apiary_version(void);

/* One loaded configuration and what the server built from it (its pool, upstreams, the app's parsed
 * sections). A reload makes a new one; old ones stay valid until the process exits, so a pointer taken
 * from one never dangles. */
typedef struct apiary_context apiary_context;

/* A new application. `name` is what --help, --version and the logs call it. Never NULL (aborts when
 * out of memory, like every allocation in apiary). It must be the app's first call, before anything
 * uses jansson: it installs the allocator that lets request bodies parse into their request's memory. */
apiary_app *apiary_app_new(const char *name);

/* The config file read when --config is not given (the apiary binary's is "config/apiary.json").
 * Without one, an app starts from the built-in defaults and the flags. `path` must outlive the app. */
void apiary_app_default_config(apiary_app *app, const char *path);

/* The app's version, as its OpenAPI document (GET /openapi.json, --openapi) gives it; without one,
 * apiary's. `version` must outlive the app. */
void apiary_app_version(apiary_app *app, const char *version);

/* Adds a route (router.h: "/v1/items/{id}" patterns; ROUTE_BODY_JSON makes the engine answer 415 for
 * other media types before reading the body). Returns 0, or -1 for a malformed or duplicate pattern
 * or one of the built-in paths (/healthz, /readyz, /metrics, /openapi.json). */
int apiary_app_route(apiary_app *app, http_method method, const char *pattern, http_handler_fn handler,
                     unsigned flags);
/* apiary_app_route with the route's schema (router.h: route_schema; docs/schemas.md): its path, query
 * and header parameters and JSON body are validated and bound before the handler runs, which reads them
 * with http_request_input; an invalid request is answered 422 listing every violation. The schema is
 * checked here (-1, logged, when inconsistent) and must outlive the app (static data). A declared body
 * implies ROUTE_BODY_JSON. */
int apiary_app_route_schema(apiary_app *app, http_method method, const char *pattern, http_handler_fn handler,
                            unsigned flags, const route_schema *schema);

/* The app's own config section: the top-level key `name` of the config file (which apiary otherwise
 * rejects as unknown) belongs to the app. `parse` is called with that JSON object, or NULL when the file
 * has none, at start (and --check-config) and on every SIGHUP reload, before anything switches. It
 * returns 0 and stores what it built in *out (NULL is fine), or -1 with a one-line message in err
 * naming the key below the section ("max_items: must be an integer between 1 and 1000"): the file is
 * then rejected (start: exit status 2; reload: the running config stays). What it built is the app's
 * and stays until exit (readers on other loops may still hold the previous one); `free_fn` (or NULL)
 * releases it then. At most 8 sections; the name must not be one of apiary's own sections. */
typedef int (*apiary_section_parse_fn)(const json_t *section, void **out, char *err, size_t err_cap);
int apiary_app_section(apiary_app *app, const char *name, apiary_section_parse_fn parse, void (*free_fn)(void *));

/* The app's config section declared by a schema (schema.h, docs/schemas.md): `s` is an object schema
 * binding a struct (SCHEMA_OBJECT_OF(T, members)); the section starts as `defaults` (sizeof(T) bytes,
 * or zeroes when NULL), and what the file gives is validated and bound over them, every violation
 * listed in one message ("app.json: resource.max_parallel: must be an integer between 1 and 16;
 * resource.colour: is not a known member (...)"). `check`, when not NULL, then looks at the bound
 * section against the rest of the config, read-only, through `config` (apiary_context_upstream and
 * friends; it has no pool yet) and adds violations of its own with schema_errors_add (field "catalog",
 * detail "must name an upstream"), so --check-config, a start and a reload agree. apiary_section(name)
 * returns the bound struct (const T *). The schema and defaults must outlive the app. */
typedef void (*apiary_section_check_fn)(const void *section, const apiary_context *config, schema_errors *errs);
int apiary_app_section_schema(apiary_app *app, const char *name, const schema *s, const void *defaults,
                              apiary_section_check_fn check);

/* Called once the config is loaded and the pool exists, before any loop runs (start), and after a
 * reload was accepted, before the loops switch to it (reload); `ctx` is the new context. A start hook
 * returning -1 stops the start (exit status 1; log why); a reload hook cannot refuse (validate in the
 * section parser). */
typedef int (*apiary_hook_fn)(const apiary_context *ctx, void *arg);
void apiary_app_on_start(apiary_app *app, apiary_hook_fn fn, void *arg);
void apiary_app_on_reload(apiary_app *app, apiary_hook_fn fn, void *arg);

/* Extra readiness for /readyz (which already answers 503 while the server drains): returns false to
 * let /readyz answer 200, or true after answering the request itself (at once, or later from a
 * continuation of http_request_async), e.g. 503 while a store the app needs is unreachable. */
typedef bool (*apiary_ready_fn)(http_request *req);
void apiary_app_ready_check(apiary_app *app, apiary_ready_fn fn);

/* Parses the command line, loads the config, runs the server until SIGTERM/SIGINT has drained it and
 * frees the app. Returns the process exit status: 0 clean, 1 start-up failure, 2 bad usage or config. */
int apiary_app_main(apiary_app *app, int argc, char **argv);

/* ---- what the running server offers (any thread, once apiary_app_main runs the server) ---------- */

/* The newest context: what handlers read their settings from. */
const apiary_context *apiary_current(void);
/* What the app's section parser stored for `name` in ctx, or NULL. */
const void *apiary_context_section(const apiary_context *ctx, const char *name);
/* The worker pool for CPU-heavy work (pool.h: pool_submit). Lives until exit. */
pool *apiary_context_pool(const apiary_context *ctx);
/* The upstream called `name` in the config's "upstreams" map (for http_client_request), or NULL. */
const http_client_upstream *apiary_context_upstream(const apiary_context *ctx, const char *name);
/* Every upstream of the config, in one array of *count (fan-outs by name use apiary_context_upstream). */
void apiary_context_upstreams(const apiary_context *ctx, const http_client_upstream **out, unsigned *count);
/* The Redis settings of the config's "redis" section (for redis_command). */
const redis_settings *apiary_context_redis(const apiary_context *ctx);
/* Memory that lives as long as ctx (until exit), zeroed: settings an app derives in its hooks. */
void *apiary_context_alloc(const apiary_context *ctx, size_t size);

/* Shorthands on apiary_current(). */
static inline const void *apiary_section(const char *name) { return apiary_context_section(apiary_current(), name); }
static inline pool *apiary_pool(void) { return apiary_context_pool(apiary_current()); }
static inline const http_client_upstream *apiary_upstream(const char *name)
{
    return apiary_context_upstream(apiary_current(), name);
}
static inline const redis_settings *apiary_redis(void) { return apiary_context_redis(apiary_current()); }

#endif
