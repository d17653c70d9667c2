/* app_internal: how the runtime (lib/app/, the built-in endpoints included) reaches the application
 * registered through apiary.h. Not installed. */
#ifndef APIARY_APP_INTERNAL_H
#define APIARY_APP_INTERNAL_H

#include "apiary.h"
#include "config_internal.h"
#include "router.h"

/* The application apiary_app_main runs (one per process), or NULL before it. */
const apiary_app *app_get(void);
/* The running app's name ("apiary" without one): for the start log. */
const char *app_name(void);
/* Makes `app` the running one without apiary_app_main: for in-process harnesses (tests/fuzz) that
 * build a loop themselves. */
void app_set_running(const apiary_app *app);
/* Frees an app apiary_app_main did not run (apiary_test_free). */
void app_free(apiary_app *app);

/* Refuses one of the app's registrations: logs the line ("route GET /x/{a}/{a}: the pattern repeats
 * the parameter {a}") and counts it on the app, for app_check_refusals. Returns -1, what the
 * registration call returns. */
int app_refuse(apiary_app *app, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* 0 when no registration of the app was refused; else prints "WHO APP: N registrations were refused
 * (logged above); not starting" to stderr and returns -1, so an app never runs without a route or a
 * section it asked for (apiary_app_main: exit status 2; apiary_test_new: NULL). `who` prefixes the
 * line ("apiary_test_new: ") or is NULL. */
int app_check_refusals(const apiary_app *app, const char *who);

/* Runs every section parser of the app on cfg->app_json into out[] (CONFIG_MAX_APP_SECTIONS slots,
 * indexed like the registrations). Returns 0, or -1 with "ORIGIN: SECTION.KEY: why" in err, having
 * freed whatever the parsers before the failing one built. With no app: 0 and nothing. */
int app_parse_sections(const apiary_config *cfg, void *out[], char err[CONFIG_ERROR_MAX]);
/* Gives what app_parse_sections built to the parsers' free functions. */
void app_free_sections(void *sections[]);

/* The hooks (apiary_app_on_start / _on_reload); 0 without a hook. */
int app_run_start_hook(const apiary_context *ctx);
void app_run_reload_hook(const apiary_context *ctx);
/* The startup hook (apiary_app_on_startup) and its argument, or NULL. */
apiary_startup_fn app_startup_hook(void **arg);
/* Runs the startup hook, if any, as a coroutine on a loop of its own on the calling (main) thread,
 * and returns its result (0 without a hook). `settings` and `r` are the server's, for the loop. */
int app_run_startup(const apiary_context *ctx, const struct http_settings *settings, const router *r,
                    pool *workers);

/* Publishes ctx as apiary_current() (any thread reads it). */
void app_set_current(const apiary_context *ctx);

/* The app's middleware for the loops (http_loop_options.middleware), or NULL when it has none. */
struct http_middleware;
const struct http_middleware *app_middleware(void);

/* Registers the built-in endpoints and then the app's routes. Returns 0, or -1 (logged). */
int app_register_routes(router *r);

/* Registers the static mounts (app_static.c): the app's and those of cfg's `static` key. 0, or -1 (logged). */
int app_static_register(router *r, const apiary_config *cfg);
/* Drops every mount (app_free: an in-process harness done with its app). */
void app_static_reset(void);

/* The running config behind a context: for the apiary binary's own handler set, whose settings are
 * keys of apiary's config file rather than an app section. Not for outside apps. */
const apiary_config *apiary_context_config(const apiary_context *ctx);

/* The built-in endpoints (lib/app/builtin_health.c, lib/app/builtin_metrics.c). */
void health_live(http_request *req);
void health_ready(http_request *req);
/* From SIGTERM on, /readyz answers 503 on every loop, before any loop drains (drain_delay_ms). */
void health_set_stopping(bool stopping);
void metrics_get(http_request *req);
void openapi_get(http_request *req);
void docs_get(http_request *req);
void docs_asset_get(http_request *req);
/* The running app's OpenAPI document (its routes, the built-ins); new reference. */
json_t *app_openapi(void);
/* The app's readiness check for /readyz: true when it answered the request. */
bool app_ready_check(http_request *req);

#endif
