/* app: the application API of apiary.h. apiary_app_main is what the apiary binary's main used to be:
 * command line, config file, environment, then server_run; an app adds its routes, its config
 * sections, its hooks. The apiary binary is itself such an app (server/main.c). */
#include "app_internal.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "async_internal.h"
#include "coro_internal.h"

#include "cli_internal.h"
#include "daemon_internal.h"
#include "generation_internal.h"
#include "healthcheck_internal.h"
#include "http_middleware_internal.h"
#include "json_arena_internal.h"
#include "log.h"
#include "openapi_internal.h"
#include "router_internal.h"
#include "server_internal.h"
#include "xalloc_internal.h"

typedef struct app_route {
    http_method method;
    const char *pattern;
    http_handler_fn handler;
    unsigned flags;
    const route_schema *schema;
} app_route;

typedef struct app_section {
    const char *name;
    /* One of parse, check (apiary_app_section_checked) or schema (apiary_app_section_schema). */
    apiary_section_parse_fn parse;
    apiary_section_check_fn check;
    void (*free_fn)(void *);
    const schema *schema;
    const void *defaults;
    apiary_section_schema_check_fn schema_check;
} app_section;

/* What a schema section's parse builds: the bound struct, the section's JSON its strings point into,
 * and the arena its lists live in. The app sees `data`. */
typedef struct app_schema_section {
    json_t *json;
    arena arena;
    max_align_t data[];
} app_schema_section;

/* What a section parser sees of the config being loaded (apiary.h). */
struct apiary_config_view {
    const apiary_config *cfg;
    const apiary_app *app;
    void *const *sections; /* built so far: indexes below `parsed` */
    size_t parsed;
};

struct apiary_app {
    char name[64];
    http_middleware_hook *hooks; /* before and after, in registration order */
    size_t hook_count, hook_cap;
    http_middleware middleware;  /* what the loops read: hooks, once apiary_app_main runs */
    cli_extra *options;          /* apiary_app_option, in registration order */
    size_t option_count, option_cap;
    const char *version;        /* the app's, for the OpenAPI document; NULL: apiary's */
    const char *default_config; /* --config when not given; NULL: none */
    app_route *routes;
    size_t route_count, route_cap;
    app_section sections[CONFIG_MAX_APP_SECTIONS];
    size_t section_count;
    apiary_hook_fn on_start, on_reload;
    void *on_start_arg, *on_reload_arg;
    apiary_startup_fn on_startup;
    void *on_startup_arg;
    apiary_ready_fn ready;
    /* Registrations refused (app_refuse): an app with any does not start, since it would run without
     * what the refused calls meant to add (a route missing answers 404, like a client's mistake). */
    unsigned refused;
};

static const apiary_app *app_running;
static const apiary_context *_Atomic app_current_ctx;

static const char *const app_builtin_paths[] = {"/healthz", "/readyz", "/metrics", "/openapi.json", "/docs",
                                                "/docs/{file}"};

/* The endpoints every app has, and what their 200 is (for the OpenAPI document). */
static const app_route app_builtins[] = {
    {HTTP_METHOD_GET, "/healthz", health_live, ROUTE_NO_MIDDLEWARE, NULL},
    {HTTP_METHOD_GET, "/readyz", health_ready, ROUTE_NO_MIDDLEWARE, NULL},
    {HTTP_METHOD_GET, "/metrics", metrics_get, ROUTE_NO_MIDDLEWARE, NULL},
    {HTTP_METHOD_GET, "/openapi.json", openapi_get, ROUTE_NO_MIDDLEWARE, NULL},
    {HTTP_METHOD_GET, "/docs", docs_get, ROUTE_NO_MIDDLEWARE, NULL},
    {HTTP_METHOD_GET, "/docs/{file}", docs_asset_get, ROUTE_NO_MIDDLEWARE, NULL},
};
static const char *const app_builtin_answers[] = {
    "the process is alive",
    "the server takes requests (503 while draining or while a store it needs is unreachable)",
    "the Prometheus text exposition of the server's counters",
    "this document",
    "the interactive page of this document (Swagger UI)",
    "the page's assets, from docs.dir",
};

const char *apiary_version(void) { return APIARY_VERSION; }

apiary_app *apiary_app_new(const char *name)
{
    /* Request bodies parse into their request's arena (json_arena_internal.h): jansson's allocator must be in
     * place before jansson allocates anything, so this is the app's first call. */
    json_arena_install();
    apiary_app *app = xcalloc(1, sizeof(*app));
    snprintf(app->name, sizeof(app->name), "%s", name && name[0] ? name : "apiary-app");
    return app;
}

void apiary_app_default_config(apiary_app *app, const char *path) { app->default_config = path; }

void apiary_app_version(apiary_app *app, const char *version) { app->version = version; }

int app_refuse(apiary_app *app, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    log_error("%s", line);
    app->refused++;
    return -1;
}

int app_check_refusals(const apiary_app *app, const char *who)
{
    if (!app->refused)
        return 0;
    fprintf(stderr, "%s%s: %u registration%s refused (logged above); not starting\n", who ? who : "", app->name,
            app->refused, app->refused == 1 ? " was" : "s were");
    return -1;
}

int apiary_app_route(apiary_app *app, http_method method, const char *pattern, http_handler_fn handler,
                     unsigned flags)
{
    return apiary_app_route_schema(app, method, pattern, handler, flags, NULL);
}

/* A route's schema must be consistent (schema_check) and name only parameters its pattern has. Returns
 * 0, or -1 with the reason in why. */
static int app_check_route_schema(const char *pattern, const route_schema *rs, char *why, size_t cap)
{
    if ((rs->body && schema_check(rs->body, why, cap) != 0) || schema_check_members(rs->path, "path", why, cap) != 0 ||
        schema_check_members(rs->query, "query", why, cap) != 0 ||
        schema_check_members(rs->header, "header", why, cap) != 0)
        return -1;
    const schema_member *lists[] = {rs->path, rs->query, rs->header};
    for (size_t l = 0; l < 3; l++)
        for (const schema_member *m = lists[l]; m && m->name; m++)
            if (m->offset && m->offset - 1 + m->size > rs->input_size) {
                snprintf(why, cap, "%s binds outside the input struct (input_size)", m->name);
                return -1;
            }
    for (const schema_member *m = rs->path; m && m->name; m++) {
        char param[96];
        snprintf(param, sizeof(param), "{%s}", m->name);
        if (!strstr(pattern, param)) {
            snprintf(why, cap, "path parameter %s is not in the pattern", m->name);
            return -1;
        }
    }
    if (rs->body && rs->body->type != SCHEMA_T_OBJECT && rs->body_at &&
        rs->body_at - 1 + schema_bind_size(rs->body) > rs->input_size) {
        snprintf(why, cap, "the body binds outside the input struct (input_size)");
        return -1;
    }
    if (rs->body && rs->body->type == SCHEMA_T_OBJECT && rs->body->size > rs->input_size) {
        snprintf(why, cap, "the body's struct is larger than the input struct (input_size)");
        return -1;
    }
    return 0;
}

/* Whether the route repeats one already there, the built-ins included (the same method and shape:
 * "/items/{id}" and "/items/{key}" are one route): -1, naming that one in `taken`. Each candidate is
 * tried beside the new route in a scratch router, so "the same shape" is the router's own rule, not a
 * copy of it; registration only, and cheap next to a duplicate found when the server builds its router. */
static int app_route_collides(const apiary_app *app, http_method method, const char *pattern, const char **taken)
{
    size_t nb = sizeof(app_builtins) / sizeof(app_builtins[0]), n = nb + app->route_count;
    for (size_t i = 0; i < n; i++) {
        const app_route *r = i < nb ? &app_builtins[i] : &app->routes[i - nb];
        if (r->method != method)
            continue;
        router *check = router_new();
        (void)router_add(check, r->method, r->pattern, r->handler);
        int rc = router_add(check, method, pattern, r->handler);
        router_free(check);
        if (rc != 0) {
            *taken = r->pattern;
            return -1;
        }
    }
    return 0;
}

int apiary_app_route_schema(apiary_app *app, http_method method, const char *pattern, http_handler_fn handler,
                            unsigned flags, const route_schema *schema)
{
    char why[512];
    const char *verb = http_method_name(method);
    if (!verb)
        return app_refuse(app, "route %s: the method is not one apiary routes (HTTP_METHOD_*)",
                          pattern ? pattern : "(null)");
    if (!pattern)
        return app_refuse(app, "route %s (null): no pattern", verb);
    if (!handler)
        return app_refuse(app, "route %s %s: no handler (NULL)", verb, pattern);
    if (router_pattern_check(pattern, why, sizeof(why)) != 0)
        return app_refuse(app, "route %s %s: %s", verb, pattern, why);
    for (size_t i = 0; i < sizeof(app_builtin_paths) / sizeof(app_builtin_paths[0]); i++)
        if (strcmp(pattern, app_builtin_paths[i]) == 0)
            return app_refuse(app, "route %s %s: the path is one of apiary's built-in endpoints", verb, pattern);
    if (schema && app_check_route_schema(pattern, schema, why, sizeof(why)) != 0)
        return app_refuse(app, "route %s %s: %s", verb, pattern, why);
    const char *taken = NULL;
    if (app_route_collides(app, method, pattern, &taken) != 0)
        return app_refuse(app, "route %s %s: %s %s is registered already (the same method and path shape)", verb,
                          pattern, verb, taken);
    if (schema && schema->body)
        flags |= ROUTE_BODY_JSON; /* a declared JSON body refuses other media types from the head */
    if (app->route_count == app->route_cap) {
        app->route_cap = app->route_cap ? app->route_cap * 2 : 16;
        app->routes = xrealloc(app->routes, app->route_cap * sizeof(*app->routes));
    }
    app->routes[app->route_count++] = (app_route){method, pattern, handler, flags, schema};
    return 0;
}

/* The refusals a section name shares with every kind of section; 0 when the name may be taken. */
static int app_check_section_name(apiary_app *app, const char *name)
{
    const char *why = NULL;
    if (name)
        for (size_t i = 0; i < app->section_count; i++)
            if (strcmp(app->sections[i].name, name) == 0)
                return app_refuse(app, "config section %s: registered twice", name);
    if (app->section_count == CONFIG_MAX_APP_SECTIONS)
        return app_refuse(app, "config section %s: an app has at most %d sections", name ? name : "(null)",
                          CONFIG_MAX_APP_SECTIONS);
    if (config_register_section(name, &why) != 0)
        return app_refuse(app, "config section %s: %s", name ? name : "(null)", why);
    return 0;
}

static int app_add_section(apiary_app *app, const char *name, apiary_section_parse_fn parse,
                           apiary_section_check_fn check, void (*free_fn)(void *))
{
    if (!parse && !check)
        return app_refuse(app, "config section %s: no parser (NULL)", name ? name : "(null)");
    if (app_check_section_name(app, name) != 0)
        return -1;
    app->sections[app->section_count++] = (app_section){name, parse, check, free_fn, NULL, NULL, NULL};
    return 0;
}

int apiary_app_section(apiary_app *app, const char *name, apiary_section_parse_fn parse, void (*free_fn)(void *))
{
    return app_add_section(app, name, parse, NULL, free_fn);
}

int apiary_app_section_checked(apiary_app *app, const char *name, apiary_section_check_fn parse,
                               void (*free_fn)(void *))
{
    return app_add_section(app, name, NULL, parse, free_fn);
}

const http_client_upstream *apiary_config_upstream(const apiary_config_view *config, const char *name)
{
    if (!config || !name)
        return NULL;
    for (unsigned i = 0; i < config->cfg->upstream_count; i++)
        if (strcmp(config->cfg->upstreams[i].name, name) == 0)
            return &config->cfg->upstreams[i];
    return NULL;
}

const void *apiary_config_section(const apiary_config_view *config, const char *name)
{
    if (!config || !name)
        return NULL;
    for (size_t i = 0; i < config->parsed; i++)
        if (strcmp(config->app->sections[i].name, name) == 0)
            return config->sections[i];
    return NULL;
}

const json_t *apiary_config_section_json(const apiary_config_view *config, const char *name)
{
    return config && name && config->cfg->app_json ? json_object_get(config->cfg->app_json, name) : NULL;
}

const char *apiary_config_origin(const apiary_config_view *config) { return config ? config->cfg->source_path : ""; }

/* A parser's message names a key below the section ("max_items: must be ...") or says something of
 * the section as a whole ("unknown key 'x'"): the first joins as "resource.max_items: ...", the
 * second as "resource: unknown key 'x'", the way apiary's own keys read. */
static bool app_message_names_key(const char *why)
{
    const char *p = why;
    while ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_' ||
           *p == '-' || *p == '.' || *p == '[' || *p == ']')
        p++;
    return p > why && p[0] == ':' && p[1] == ' ';
}

static void app_schema_section_free(void *data)
{
    app_schema_section *h = (app_schema_section *)((char *)data - offsetof(app_schema_section, data));
    arena_reset(&h->arena);
    json_decref(h->json);
    free(h);
}

int apiary_app_section_schema(apiary_app *app, const char *name, const schema *s, const void *defaults,
                              apiary_section_schema_check_fn check)
{
    char err[512];
    if (!s || s->type != SCHEMA_T_OBJECT || !s->size)
        return app_refuse(app, "config section %s: the schema must be an object binding a struct (SCHEMA_OBJECT_OF)",
                          name ? name : "(null)");
    if (schema_check(s, err, sizeof(err)) != 0)
        return app_refuse(app, "config section %s: %s", name ? name : "(null)", err);
    if (app_check_section_name(app, name) != 0)
        return -1;
    app->sections[app->section_count++] = (app_section){name, NULL, NULL, app_schema_section_free, s, defaults, check};
    return 0;
}

/* A schema section: bound over its defaults, then the app's check against the rest of the config.
 * Every violation goes into err, one line: "FILE: SECTION.KEY: why; SECTION.KEY: why". */
static int app_parse_schema_section(const apiary_config *cfg, const app_section *s, const apiary_config_view *view,
                                    const json_t *obj, void **out, char err[CONFIG_ERROR_MAX])
{
    app_schema_section *h = xcalloc(1, sizeof(*h) + s->schema->size);
    arena_init(&h->arena);
    h->json = obj ? json_incref((json_t *)obj) : json_object();
    if (s->defaults)
        memcpy(h->data, s->defaults, s->schema->size);
    schema_errors errs;
    schema_errors_init(&errs, &h->arena, s->name);
    schema_bind(s->schema, h->json, h->data, "", &errs);
    if (errs.count == 0 && s->schema_check)
        s->schema_check(h->data, view, &errs); /* the rest of the config, as a checked section sees it */
    if (errs.count == 0) {
        *out = h->data;
        return 0;
    }
    size_t n = (size_t)snprintf(err, CONFIG_ERROR_MAX, "%.200s: ", cfg->source_path[0] ? cfg->source_path : "config");
    for (size_t i = 0; i < errs.count && n < CONFIG_ERROR_MAX; i++)
        n += (size_t)snprintf(err + n, CONFIG_ERROR_MAX - n, "%s%s%s%s: %s", i ? "; " : "", s->name,
                              errs.list[i].field[0] ? "." : "", errs.list[i].field, errs.list[i].detail);
    app_schema_section_free(h->data);
    return -1;
}

void apiary_app_on_start(apiary_app *app, apiary_hook_fn fn, void *arg)
{
    app->on_start = fn;
    app->on_start_arg = arg;
}

void apiary_app_on_startup(apiary_app *app, apiary_startup_fn fn, void *arg)
{
    app->on_startup = fn;
    app->on_startup_arg = arg;
}

apiary_startup_fn app_startup_hook(void **arg)
{
    const apiary_app *app = app_running;
    *arg = app ? app->on_startup_arg : NULL;
    return app ? app->on_startup : NULL;
}

void apiary_app_on_reload(apiary_app *app, apiary_hook_fn fn, void *arg)
{
    app->on_reload = fn;
    app->on_reload_arg = arg;
}

void apiary_app_ready_check(apiary_app *app, apiary_ready_fn fn) { app->ready = fn; }

int apiary_app_option(apiary_app *app, const char *name, const char *value_name, const char *help,
                      apiary_option_fn fn, void *arg)
{
    if (!name || !name[0])
        return app_refuse(app, "option --: no name");
    if (strlen(name) > 40)
        return app_refuse(app, "option --%.40s...: the name is longer than 40 characters", name);
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '-'))
            return app_refuse(app, "option --%s: the name may hold only lower-case letters, digits and '-'", name);
    if (cli_is_builtin(name))
        return app_refuse(app, "option --%s: the name is one of apiary's own flags", name);
    for (size_t i = 0; i < app->option_count; i++)
        if (strcmp(app->options[i].name, name) == 0)
            return app_refuse(app, "option --%s: registered twice", name);
    if (!fn)
        return app_refuse(app, "option --%s: no function (NULL)", name);
    if (app->option_count == app->option_cap) {
        app->option_cap = app->option_cap ? app->option_cap * 2 : 8;
        app->options = xrealloc(app->options, app->option_cap * sizeof(*app->options));
    }
    app->options[app->option_count++] = (cli_extra){name, value_name, help, fn, arg};
    return 0;
}

static int app_add_hook(apiary_app *app, const char *prefix, http_before_fn before, http_after_fn after, void *arg)
{
    const char *kind = before ? "before" : "after";
    if (!prefix)
        return app_refuse(app, "%s hook: no prefix (NULL; \"\" or \"/\" covers every route)", kind);
    if (prefix[0] && prefix[0] != '/')
        return app_refuse(app, "%s hook %s: the prefix must start with '/' (or be \"\")", kind, prefix);
    size_t len = strlen(prefix);
    while (len > 0 && prefix[len - 1] == '/')
        len--; /* "/v1/" covers what "/v1" does; "/" covers everything */
    if (app->hook_count == app->hook_cap) {
        app->hook_cap = app->hook_cap ? app->hook_cap * 2 : 8;
        app->hooks = xrealloc(app->hooks, app->hook_cap * sizeof(*app->hooks));
    }
    app->hooks[app->hook_count++] = (http_middleware_hook){prefix, len, before, after, arg};
    app->middleware = (http_middleware){app->hooks, app->hook_count};
    return 0;
}

int apiary_app_before(apiary_app *app, const char *prefix, http_before_fn fn, void *arg)
{
    return fn ? app_add_hook(app, prefix, fn, NULL, arg)
              : app_refuse(app, "before hook %s: no function (NULL)", prefix ? prefix : "(null)");
}

int apiary_app_after(apiary_app *app, const char *prefix, http_after_fn fn, void *arg)
{
    return fn ? app_add_hook(app, prefix, NULL, fn, arg)
              : app_refuse(app, "after hook %s: no function (NULL)", prefix ? prefix : "(null)");
}

const http_middleware *app_middleware(void)
{
    const apiary_app *app = app_running;
    return app && app->hook_count ? &app->middleware : NULL;
}

const apiary_app *app_get(void) { return app_running; }

const char *app_name(void) { return app_running ? app_running->name : "apiary"; }

void app_set_running(const apiary_app *app) { app_running = app; }

/* ---- sections and hooks --------------------------------------------------------------------------- */

int app_parse_sections(const apiary_config *cfg, void *out[], char err[CONFIG_ERROR_MAX])
{
    const apiary_app *app = app_running;
    if (!app)
        return 0;
    apiary_config_view view = {cfg, app, out, 0};
    for (size_t i = 0; i < app->section_count; i++) {
        const app_section *s = &app->sections[i];
        const json_t *obj = cfg->app_json ? json_object_get(cfg->app_json, s->name) : NULL;
        char why[256] = "";
        out[i] = NULL;
        view.parsed = i;
        int rc = s->schema ? app_parse_schema_section(cfg, s, &view, obj, &out[i], err)
                 : s->check ? s->check(obj, &view, &out[i], why, sizeof(why))
                            : s->parse(obj, &out[i], why, sizeof(why));
        if (rc != 0) {
            if (!s->schema) {
                bool keyed = app_message_names_key(why);
                snprintf(err, CONFIG_ERROR_MAX, "%.200s: %.32s%s%.256s",
                         cfg->source_path[0] ? cfg->source_path : "config", s->name, keyed ? "." : ": ",
                         why[0] ? why : "rejected");
            }
            for (size_t j = 0; j < i; j++) {
                if (app->sections[j].free_fn && out[j])
                    app->sections[j].free_fn(out[j]);
                out[j] = NULL;
            }
            return -1;
        }
    }
    return 0;
}

void app_free_sections(void *sections[])
{
    const apiary_app *app = app_running;
    if (!app)
        return;
    for (size_t i = 0; i < app->section_count; i++) {
        if (app->sections[i].free_fn && sections[i])
            app->sections[i].free_fn(sections[i]);
        sections[i] = NULL;
    }
}

int app_run_start_hook(const apiary_context *ctx)
{
    const apiary_app *app = app_running;
    return app && app->on_start ? app->on_start(ctx, app->on_start_arg) : 0;
}

void app_run_reload_hook(const apiary_context *ctx)
{
    const apiary_app *app = app_running;
    if (app && app->on_reload)
        app->on_reload(ctx, app->on_reload_arg);
}

void app_set_current(const apiary_context *ctx)
{
    atomic_store(&app_current_ctx, ctx);
    /* Absolute URLs (http_client_fetch) reach the origins of the newest config; none once it is gone. */
    http_client_allow(ctx ? &ctx->allowlist : NULL);
}

const apiary_context *apiary_current(void)
{
    /* Inside a request (its handler, a continuation, a coroutine after an await): the generation it
     * started on. Anywhere else: the newest. */
    const apiary_context *ctx = async_context_current();
    return ctx ? ctx : atomic_load(&app_current_ctx);
}

bool app_ready_check(http_request *req)
{
    const apiary_app *app = app_running;
    return app && app->ready ? app->ready(req) : false;
}

/* Whether a built-in answers for real under `cfg` (NULL: the built-in defaults, as for --openapi). The
 * docs routes stay in the router while docs.dir is "" (a reload may set it, and routes are made only at
 * start), but they then answer 404 to everything: the document lists only what a client can use. */
static bool app_builtin_served(const app_route *r, const apiary_config *cfg)
{
    if (r->handler == docs_get || r->handler == docs_asset_get)
        return cfg && cfg->docs_dir[0];
    return true;
}

json_t *app_openapi(void)
{
    const apiary_app *app = app_running;
    const apiary_config *cfg = apiary_context_config(apiary_current());
    size_t nb = sizeof(app_builtins) / sizeof(app_builtins[0]), n = nb + (app ? app->route_count : 0), kept = 0;
    openapi_route *routes = xcalloc(n ? n : 1, sizeof(*routes));
    for (size_t i = 0; i < n; i++) {
        const app_route *r = i < nb ? &app_builtins[i] : &app->routes[i - nb];
        if (i < nb && !app_builtin_served(r, cfg))
            continue;
        routes[kept++] = (openapi_route){r->method, r->pattern, r->flags, r->schema, i < nb ? "built-in" : NULL,
                                         i < nb ? app_builtin_answers[i] : NULL};
    }
    json_t *doc = openapi_document(app ? app->name : "apiary",
                                   app && app->version ? app->version : APIARY_VERSION, routes, kept);
    free(routes);
    return doc;
}

void openapi_get(http_request *req) { http_respond_json(req, 200, app_openapi()); }

int app_register_routes(router *r)
{
    const apiary_app *app = app_running;
    size_t nb = sizeof(app_builtins) / sizeof(app_builtins[0]);
    size_t n = nb + (app ? app->route_count : 0);
    for (size_t i = 0; i < n; i++) {
        const app_route *route = i < nb ? &app_builtins[i] : &app->routes[i - nb];
        if (router_add_schema(r, route->method, route->pattern, route->handler, route->flags, route->schema) != 0) {
            log_error("cannot register %s %s", http_method_name(route->method), route->pattern);
            return -1;
        }
    }
    return app_static_register(r, apiary_context_config(apiary_current()));
}

/* ---- the context ---------------------------------------------------------------------------------- */

const apiary_config *apiary_context_config(const apiary_context *ctx) { return ctx ? &ctx->cfg : NULL; }

const void *apiary_context_section(const apiary_context *ctx, const char *name)
{
    const apiary_app *app = app_running;
    if (!ctx || !app || !name)
        return NULL;
    for (size_t i = 0; i < app->section_count; i++)
        if (strcmp(app->sections[i].name, name) == 0)
            return ctx->sections[i];
    return NULL;
}

pool *apiary_context_pool(const apiary_context *ctx) { return ctx ? ctx->pool : NULL; }

const http_client_upstream *apiary_context_upstream(const apiary_context *ctx, const char *name)
{
    if (!ctx || !name)
        return NULL;
    for (unsigned i = 0; i < ctx->upstream_count; i++)
        if (strcmp(ctx->upstreams[i].name, name) == 0)
            return &ctx->upstreams[i];
    return NULL;
}

void apiary_context_upstreams(const apiary_context *ctx, const http_client_upstream **out, unsigned *count)
{
    *out = ctx ? ctx->upstreams : NULL;
    *count = ctx ? ctx->upstream_count : 0;
}

const redis_settings *apiary_context_redis(const apiary_context *ctx) { return ctx ? ctx->redis : NULL; }

/* ---- main ----------------------------------------------------------------------------------------- */

static int app_main_configured(apiary_app *app, const cli_options *opts, apiary_config *cfg)
{
    char err[CONFIG_ERROR_MAX];
    if (opts->healthcheck) { /* a probe of the running server: only the address matters */
        int rc = healthcheck_run(cfg);
        config_release(cfg);
        return rc;
    }
    void *sections[CONFIG_MAX_APP_SECTIONS] = {0};
    if (app_parse_sections(cfg, sections, err) != 0) {
        fprintf(stderr, "%s: %s\n", app->name, err);
        config_release(cfg);
        return 2;
    }
    if (opts->check_config) {
        app_free_sections(sections);
        printf("config OK: %s\n", cfg->source_path[0] ? cfg->source_path : "(built-in defaults)");
        config_release(cfg);
        return 0;
    }
    log_set_level(cfg->log_level);
    async_coro_configure(cfg->coro_stack_kib, cfg->coro_idle_stacks);
    int ready_fd = -1;
    if (opts->daemon) {
        if (!cfg->log_file[0]) {
            fprintf(stderr, "%s: --daemon needs daemon.log_file in the config (a daemon has no terminal)\n",
                    app->name);
            app_free_sections(sections);
            config_release(cfg);
            return 2;
        }
        ready_fd = daemon_start(err, sizeof(err));
        if (ready_fd < 0) {
            fprintf(stderr, "%s: %s\n", app->name, err);
            app_free_sections(sections);
            config_release(cfg);
            return 1;
        }
        cfg->daemonize = true;
    }
    return server_run(cfg, sections, ready_fd);
}

int apiary_app_main(apiary_app *app, int argc, char **argv)
{
    app_running = app;
    cli_options opts;
    int rc;
    if (cli_parse_with(argc, argv, &opts, stderr, app->name, app->options, app->option_count) != 0) {
        fprintf(stderr, "try '%s --help'\n", app->name);
        rc = 2;
        goto done;
    }
    if (opts.help) {
        cli_usage_for(stdout, app->name, app->default_config);
        cli_usage_extra(stdout, app->name, app->options, app->option_count);
        rc = 0;
        goto done;
    }
    /* A refused registration stops everything that describes or runs the app (--openapi, --check-config,
     * a start, a probe): the document or the verdict would be about an app that cannot run. --help and
     * --version above and below say only what the binary is, and stay usable (packaging, a first look). */
    bool version_only = opts.version && !opts.openapi; /* --openapi is answered first when both are given */
    if (!version_only && app_check_refusals(app, NULL) != 0) {
        rc = 2;
        goto done;
    }
    if (opts.openapi) {
        json_t *doc = app_openapi();
        rc = json_dumpf(doc, stdout, JSON_INDENT(2)) == 0 && putchar('\n') != EOF ? 0 : 1;
        json_decref(doc);
        goto done;
    }
    if (opts.version) {
        if (strcmp(app->name, "apiary") == 0)
            printf("apiary %s\n", APIARY_VERSION);
        else
            printf("%s (apiary %s)\n", app->name, APIARY_VERSION);
        rc = 0;
        goto done;
    }
    apiary_config cfg;
    char err[CONFIG_ERROR_MAX];
    config_defaults(&cfg);
    const char *path = opts.config_given ? opts.config_path : app->default_config;
    if (path && config_load_file(&cfg, path, err) != 0) {
        fprintf(stderr, "%s: %s\n", app->name, err);
        rc = 2;
        goto done;
    }
    /* Containers set the address in the environment (0.0.0.0 inside, a config file baked for loopback);
     * it sits between the file and the flags. Empty counts as unset, since an image's ENV cannot be
     * removed at run time, only emptied. */
    const char *env_listen = getenv("APIARY_LISTEN");
    /* The database URL holds a password: secrets belong in the environment, not in config files. The
     * message names the variable and never echoes its value. */
    const char *env_sql = getenv("APIARY_SQL_URL");
    if (env_listen && *env_listen && config_parse_listen(&cfg, env_listen, err) != 0) {
        fprintf(stderr, "%s: APIARY_LISTEN: %s\n", app->name, err);
        rc = 2;
    } else if (env_sql && *env_sql && config_parse_sql_url(&cfg, env_sql, err) != 0) {
        fprintf(stderr, "%s: APIARY_SQL_URL: %s\n", app->name, err);
        rc = 2;
    } else if (opts.listen && config_parse_listen(&cfg, opts.listen, err) != 0) {
        fprintf(stderr, "%s: --listen: %s\n", app->name, err);
        rc = 2;
    } else {
        cfg.listen_overridden = (env_listen && *env_listen) || opts.listen;
        cfg.sql_url_overridden = env_sql && *env_sql;
        if (opts.threads > 0) {
            cfg.threads = (unsigned)opts.threads;
            cfg.threads_overridden = true;
        }
        rc = app_main_configured(app, &opts, &cfg); /* the server's generations own cfg's JSON now */
        goto done;
    }
    config_release(&cfg);
done:
    app_running = NULL;
    app_free(app);
    return rc;
}

void app_free(apiary_app *app)
{
    if (!app)
        return;
    free(app->routes);
    free(app->hooks);
    free(app->options);
    free(app);
    app_static_reset();
}
