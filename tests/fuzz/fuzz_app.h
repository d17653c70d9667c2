/* fuzz_app: what the fuzz targets that drive the apiary binary's own routes in-process share
 * (fuzz_request, fuzz_websocket, fuzz_body_stream): a configuration with small bounds and no timers
 * worth waiting for, and the start apiary_app_main and server_run do, short of threads, listeners and
 * signals, ending with one loop whose connections the target opens over socketpairs. Header-only,
 * since every fuzz_*.c in this folder is a target of its own. */
#ifndef APIARY_FUZZ_APP_H
#define APIARY_FUZZ_APP_H

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>

#include "app_internal.h"
#include "config_internal.h"
#include "generation_internal.h"
#include "handlers.h"
#include "http_internal.h"
#include "json_arena_internal.h"
#include "log.h"
#include "pool.h"
#include "router.h"

static http_loop *fuzz_loop;
static router *fuzz_routes;
static server_generation *fuzz_gen;

/* Process set-up and the shared defaults, before the target adds its own bounds to cfg. */
static void fuzz_app_config(apiary_config *cfg)
{
    log_set_level(LOG_ERROR + 1); /* quiet: the log is not what is tested */
    json_arena_install();         /* as apiary_app_new does, before anything uses jansson */
    http_loop_global_init();
    config_defaults(cfg);
    cfg->max_sleep_ms = 0;
    cfg->max_connections = 16;
    cfg->http.header_timeout_ms = 1000;
    cfg->http.linger_timeout_ms = 0;
}

/* The app with the binary's routes on one loop (fuzz_loop), its pool running jobs inline. cfg must
 * live as long as the process. */
static void fuzz_app_start(const char *name, apiary_config *cfg)
{
    pool *workers = pool_new_inline();
    apiary_app *app = apiary_app_new(name);
    if (handlers_add_routes(app) != 0)
        abort();
    app_set_running(app);
    static void *sections[CONFIG_MAX_APP_SECTIONS];
    fuzz_gen = generation_first(cfg, sections, 1, workers);
    app_set_current(fuzz_gen);
    fuzz_routes = router_new();
    if (app_run_start_hook(fuzz_gen) != 0 || app_register_routes(fuzz_routes) != 0) {
        fprintf(stderr, "%s: handlers failed to start\n", name);
        abort();
    }
    http_loop_options opts = {.id = 0, .listen_fd = -1, .settings = &fuzz_gen->http, .router = fuzz_routes};
    fuzz_loop = http_loop_new(&opts);
}

#endif
