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
 * thread once the server runs. One application per process.
 *
 * Registration: the calls below that return int refuse what cannot work (a malformed or duplicate
 * pattern, an inconsistent schema, a taken name...) with one log line saying why, and return -1. An
 * app need not check: apiary_app_main (and apiary_test_new) will not start an app with a refused
 * registration, rather than run it without the route (a 404) or section. The -1 is there for an app
 * that wants to react itself.
 *
 * Ownership: apiary_app_main takes the app and frees it (with what was registered on it) before it
 * returns; what a section parser built stays valid until exit; the strings and args given to the
 * registration calls must outlive the app. */
#ifndef APIARY_APIARY_H
#define APIARY_APIARY_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "async.h"
#include "background.h"
#include "http_client.h"
#include "http_method.h"
#include "http_request.h"
#include "json_writer.h"
#include "log.h"
#include "metrics.h"
#include "middleware.h"
#include "pool.h"
#include "pubsub.h"
#include "redis.h"
#include "router.h"
#include "schema.h"
#include "sql.h"
#include "stream.h"
#include "static.h"
#include "testing.h"
#include "uri.h"
#include "websocket.h"

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

/* The config file read when --config is not given (the apiary binary's is "config/apiary.json"),
 * relative to the working directory; when it is missing the start fails (exit status 2) as for a
 * --config that names nothing. Without this call, an app started without --config runs on the built-in
 * defaults and the flags. `path` must outlive the app. */
void apiary_app_default_config(apiary_app *app, const char *path);

/* The app's version, as its OpenAPI document (GET /openapi.json, --openapi) gives it; without one,
 * apiary's. Only there: --version and the start's log line say "NAME (apiary VERSION)" with apiary's
 * version. `version` must outlive the app. */
void apiary_app_version(apiary_app *app, const char *version);

/* Adds a route (router.h: "/v1/items/{id}" patterns; ROUTE_BODY_JSON makes the engine answer 415 for
 * other media types before reading the body). Returns 0, or -1 (logged; the app will not start) for a
 * NULL handler, a malformed pattern, one that repeats a route already added or a built-in (the same
 * method and shape: "/items/{id}" and "/items/{key}" are one route), or one of the built-in paths
 * (/healthz, /readyz, /metrics, /openapi.json, /docs). */
int apiary_app_route(apiary_app *app, http_method method, const char *pattern, http_handler_fn handler,
                     unsigned flags);
/* Serves the files under `dir` at URL `prefix` (static.h, docs/static.md): GET and HEAD of
 * "PREFIX/NAME" answer the file NAME beneath dir. prefix starts with '/' and does not end with one
 * ("/static"); dir must be a directory now (it is opened here, its files per request). flags: ROUTE_*
 * (ROUTE_NO_MIDDLEWARE is not offered). Returns 0, or -1 (logged; the app will not start) for a bad
 * prefix, a prefix taken, a directory that cannot be opened, or more than 16 mounts. The config key
 * `static` adds mounts the same way (a bad one there is a config error). */
int apiary_app_static(apiary_app *app, const char *prefix, const char *dir, unsigned flags);
/* apiary_app_route with the route's schema (router.h: route_schema; docs/schemas.md): its path, query
 * and header parameters and JSON body are validated and bound before the handler runs, which reads them
 * with http_request_input; an invalid request is answered 422 listing every violation. The schema is
 * checked here (-1, logged, when inconsistent: the app will not start) and must outlive the app (static
 * data). A declared body implies ROUTE_BODY_JSON. */
int apiary_app_route_schema(apiary_app *app, http_method method, const char *pattern, http_handler_fn handler,
                            unsigned flags, const route_schema *schema);

/* The app's own config section: the top-level key `name` of the config file (which apiary otherwise
 * rejects as unknown) belongs to the app. `parse` is called with that JSON object, or NULL when the file
 * has none, at start (and --check-config) and on every SIGHUP reload, before anything switches. It
 * returns 0 and stores what it built in *out (NULL is fine), or -1 with a one-line message in err
 * naming the key below the section ("max_items: must be an integer between 1 and 1000"): the file is
 * then rejected (start: exit status 2; reload: the running config stays). What it built is the app's
 * and stays until exit (readers on other loops may still hold the previous one); `free_fn` (or NULL)
 * releases it then. At most 8 sections; the name must not be empty, hold a '.', be one of apiary's own
 * keys or be registered twice: such a section is refused (-1, logged; the app will not start). */
typedef int (*apiary_section_parse_fn)(const json_t *section, void **out, char *err, size_t err_cap);
int apiary_app_section(apiary_app *app, const char *name, apiary_section_parse_fn parse, void (*free_fn)(void *));

/* The rest of the config a section parser may check its section against ("catalog: must name an
 * upstream"), read-only and valid only during the call. Because the parser runs at start, for
 * --check-config and on every reload alike, a cross-check refuses a bad file in all three. */
typedef struct apiary_config_view apiary_config_view;
/* The upstream called `name` in the config's "upstreams", or NULL. */
const http_client_upstream *apiary_config_upstream(const apiary_config_view *config, const char *name);
/* What the parser of an app section registered before this one built from this same file, or NULL
 * (sections are parsed in the order registered). */
const void *apiary_config_section(const apiary_config_view *config, const char *name);
/* The JSON object of any app section as the file has it (later ones included), or NULL. */
const json_t *apiary_config_section_json(const apiary_config_view *config, const char *name);
/* Where the config came from ("/etc/app.json"; "" for the built-in defaults): for messages. */
const char *apiary_config_origin(const apiary_config_view *config);

/* apiary_app_section with a parser that also sees the config. Everything else is as there. */
typedef int (*apiary_section_check_fn)(const json_t *section, const apiary_config_view *config, void **out,
                                       char *err, size_t err_cap);
int apiary_app_section_checked(apiary_app *app, const char *name, apiary_section_check_fn parse,
                               void (*free_fn)(void *));

/* Middleware (middleware.h has the order): `fn` runs for every request whose path `prefix` covers
 * ("/" or "": all of the app's; "/v1": "/v1" and below). Before hooks run in the order registered and
 * may answer early; after hooks run in the reverse order on every answer, to add headers. Returns 0, or
 * -1 (logged; the app will not start) for a prefix not starting with '/' or a NULL fn. `prefix` and
 * `arg` must outlive the app. */
int apiary_app_before(apiary_app *app, const char *prefix, http_before_fn fn, void *arg);
int apiary_app_after(apiary_app *app, const char *prefix, http_after_fn fn, void *arg);

/* The app's config section declared by a schema (schema.h, docs/schemas.md): `s` is an object schema
 * binding a struct (SCHEMA_OBJECT_OF(T, members)); the section starts as `defaults` (sizeof(T) bytes,
 * or zeroes when NULL), and what the file gives is validated and bound over them, every violation
 * listed in one message ("app.json: resource.max_parallel: must be an integer between 1 and 16;
 * resource.colour: is not a known member (...)"). `check`, when not NULL, then looks at the bound
 * section against the rest of the config, read-only, through `config` (apiary_config_upstream and
 * friends, as a checked section's parser sees it) and adds violations of its own with schema_errors_add (field
 * "catalog", detail "must name an upstream"), so --check-config, a start and a reload agree. apiary_section(name)
 * returns the bound struct (const T *). The schema and defaults must outlive the app. Returns 0, or -1
 * (logged; the app will not start) for a schema that is not such an object or is inconsistent, or a
 * name apiary_app_section would refuse. */
typedef void (*apiary_section_schema_check_fn)(const void *section, const apiary_config_view *config,
                                               schema_errors *errs);
int apiary_app_section_schema(apiary_app *app, const char *name, const schema *s, const void *defaults,
                              apiary_section_schema_check_fn check);

/* Called once the config is loaded and the pool exists, before any loop runs (start), and after a
 * reload was accepted, before the loops switch to it (reload); `ctx` is the new context. A start hook
 * returning -1 stops the start (exit status 1; log why); a reload hook cannot refuse (validate in the
 * section parser). They run on the main thread, without a loop: work that waits for I/O belongs in
 * the startup hook (apiary_app_on_startup, below), which runs after the start hook. */
typedef int (*apiary_hook_fn)(const apiary_context *ctx, void *arg);
void apiary_app_on_start(apiary_app *app, apiary_hook_fn fn, void *arg);
void apiary_app_on_reload(apiary_app *app, apiary_hook_fn fn, void *arg);

/* The app's startup work that needs I/O: creating its tables (sql_migrate), warming a cache from
 * Redis, asking an upstream for something. `fn` runs once as a coroutine (it may async_await any
 * operation: async.h) on an event loop of its own, after the start hook and before the server opens
 * its listeners, so nothing is accepted and nothing is reported ready until it has returned 0.
 * `scope` is its scope (no deadline: bound waits with async_wait_for), `loop` the loop to hand to
 * sql_query, redis_command, http_client_request. Returning -1 (log why first) stops the start: exit
 * status 1. What it leaves pending is cancelled when it returns. */
typedef int (*apiary_startup_fn)(const apiary_context *ctx, async_scope *scope, http_loop *loop, void *arg);
void apiary_app_on_startup(apiary_app *app, apiary_startup_fn fn, void *arg);

/* Extra readiness for /readyz (which already answers 503 while the server drains): returns false to
 * let /readyz answer 200, or true after answering the request itself (at once, or later from a
 * continuation of http_request_async), e.g. 503 while a store the app needs is unreachable. */
typedef bool (*apiary_ready_fn)(http_request *req);
void apiary_app_ready_check(apiary_app *app, apiary_ready_fn fn);

/* The app's own command-line option --NAME (lower-case letters, digits, '-'; not one of apiary's
 * flags), listed under "Options of APP" in --help. `value_name` ("N", "PATH") makes it take a value,
 * as "--NAME VALUE" or "--NAME=VALUE"; NULL makes it a switch. When it is given, `fn` runs during
 * apiary_app_main's parsing, before the config is read, with the value (NULL for a switch): it stores
 * what it needs (read it in the hooks, e.g. on_start) and returns 0, or -1 with a message in why,
 * which ends the start with exit status 2 ("APP: --NAME: why"). Returns 0, or -1 (logged; the app will
 * not start) for a bad or taken name or a NULL fn. `name`, `value_name`, `help` and `arg` must outlive
 * the app. */
typedef int (*apiary_option_fn)(const char *value, void *arg, char *why, size_t why_cap);
int apiary_app_option(apiary_app *app, const char *name, const char *value_name, const char *help,
                      apiary_option_fn fn, void *arg);

/* Parses the command line, loads the config, runs the server until SIGTERM/SIGINT has drained it and
 * frees the app. Returns the process exit status: 0 clean, 1 start-up failure, 2 bad usage or config,
 * or a registration refused above: then nothing but --help and --version runs (not --check-config,
 * not --openapi, whose verdict or document would be of an app that cannot run), after a last line
 * "APP: N registrations were refused (logged above); not starting". */
int apiary_app_main(apiary_app *app, int argc, char **argv);

/* ---- what the running server offers (any thread, once apiary_app_main runs the server) ---------- */

/* The context handlers read their settings from. Inside a request (its handler, a continuation of
 * its scope, a coroutine handler after any await, its middleware) it is the one the request started
 * on, for the whole request, however many reloads happen while it waits; anywhere else (another
 * thread, a timer of your own) the newest. */
const apiary_context *apiary_current(void);
/* What the app's section parser stored for `name` in ctx, or NULL. */
const void *apiary_context_section(const apiary_context *ctx, const char *name);
/* The worker pool for CPU-heavy work (pool.h: pool_submit). Lives until exit. */
pool *apiary_context_pool(const apiary_context *ctx);
/* The upstream called `name` in the config's "upstreams" map (for http_client_request), or NULL. */
const http_client_upstream *apiary_context_upstream(const apiary_context *ctx, const char *name);
/* Every upstream of the config, in one array of *count (fan-outs by name use apiary_context_upstream). */
void apiary_context_upstreams(const apiary_context *ctx, const http_client_upstream **out, unsigned *count);
/* The Redis settings of the config's "redis" section (for redis_command), or NULL when Redis is not
 * configured: the config has no "redis" section and kv.backend is not "redis". A NULL passed on to
 * redis_command fails it with "not_configured" rather than talking to a default 127.0.0.1:6379. */
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
