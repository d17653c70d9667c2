/* app_static: directories served as files (docs/static.md): the mounts an app adds with
 * apiary_app_static and those of the config key `static`, each a GET route "PREFIX/{path...}" whose
 * handler answers with http_respond_file from the mount's root. Mounts are made at start-up and read
 * by every loop afterwards; a reload does not change them (the routes are the start's). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_internal.h"
#include "log.h"
#include "static.h"
#include "xalloc_internal.h"

#define APP_STATIC_MAX 16

typedef struct app_static_mount {
    char *pattern; /* "/static/{path...}" */
    char *route_name; /* "GET /static/{path...}": what the request's route_name says */
    http_static_root *root;
    unsigned flags;
    bool from_config;
} app_static_mount;

/* The process's mounts (one app per process): made before the loops start, read-only while they run,
 * dropped by app_free for in-process harnesses that make another app. */
static app_static_mount app_static_mounts[APP_STATIC_MAX];
static size_t app_static_count;

static void app_static_get(http_request *req)
{
    for (size_t i = 0; i < app_static_count; i++) {
        if (req->route_name && strcmp(req->route_name, app_static_mounts[i].route_name) == 0) {
            const char *path = http_request_param(req, "path");
            http_respond_file(req, app_static_mounts[i].root, path ? path : "");
            return;
        }
    }
    http_respond_problem(req, 404, NULL, "no such file");
}

/* Checks the prefix and opens the root (with an open-file cache of `cache` descriptors per loop when
 * not 0); -1 with the reason in why when either is wrong. The caller logs it: an app's mount is
 * refused on the app (app_refuse), the config's fails the start. */
static int app_static_add(const char *prefix, const char *dir, unsigned flags, bool from_config, unsigned cache,
                          char *why, size_t why_cap)
{
    size_t n = prefix ? strlen(prefix) : 0;
    if (n < 2 || prefix[0] != '/' || prefix[n - 1] == '/' || strchr(prefix, '{') || n > 200) {
        snprintf(why, why_cap, "the prefix must start with '/', not end with one, hold no '{' and be at most 200 bytes");
        return -1;
    }
    if (app_static_count == APP_STATIC_MAX) {
        snprintf(why, why_cap, "more than %d mounts", APP_STATIC_MAX);
        return -1;
    }
    for (size_t i = 0; i < app_static_count; i++)
        if (strncmp(app_static_mounts[i].pattern, prefix, n) == 0 && app_static_mounts[i].pattern[n] == '/' &&
            app_static_mounts[i].pattern[n + 1] == '{') {
            snprintf(why, why_cap, "the prefix is mounted already");
            return -1;
        }
    if (!dir) {
        snprintf(why, why_cap, "no directory (NULL)");
        return -1;
    }
    http_static_root *root = http_static_root_open(dir);
    if (!root) {
        snprintf(why, why_cap, "cannot open the directory %s: %s", dir, strerror(errno));
        return -1;
    }
    http_static_root_cache(root, cache);
    app_static_mount *m = &app_static_mounts[app_static_count];
    m->pattern = xmalloc(n + sizeof("/{path...}"));
    snprintf(m->pattern, n + sizeof("/{path...}"), "%s/{path...}", prefix);
    m->route_name = xmalloc(n + sizeof("GET /{path...}"));
    snprintf(m->route_name, n + sizeof("GET /{path...}"), "GET %s", m->pattern);
    m->root = root;
    m->flags = flags;
    m->from_config = from_config;
    app_static_count++;
    return 0;
}

int apiary_app_static(apiary_app *app, const char *prefix, const char *dir, unsigned flags)
{
    /* One app per process: the mounts are the process's, the refusal the app's (it does not start). */
    char why[512];
    if (app_static_add(prefix, dir, flags, false, 0, why, sizeof(why)) != 0)
        return app_refuse(app, "static mount %s: %s", prefix ? prefix : "(null)", why);
    return 0;
}

int app_static_register(router *r, const apiary_config *cfg)
{
    if (cfg) {
        /* The config's mounts join once, at the first registration (a test harness may register twice). */
        bool have_config = false;
        for (size_t i = 0; i < app_static_count; i++)
            have_config = have_config || app_static_mounts[i].from_config;
        char why[512];
        for (unsigned i = 0; !have_config && i < cfg->static_mount_count; i++)
            if (app_static_add(cfg->static_mounts[i].prefix, cfg->static_mounts[i].dir, 0, true,
                               cfg->static_mounts[i].open_file_cache, why, sizeof(why)) != 0) {
                log_error("static mount %s: %s", cfg->static_mounts[i].prefix, why);
                return -1;
            }
    }
    for (size_t i = 0; i < app_static_count; i++) {
        const app_static_mount *m = &app_static_mounts[i];
        if (router_add_flags(r, HTTP_METHOD_GET, m->pattern, app_static_get, m->flags) != 0) {
            log_error("static mount %s: the route is taken", m->pattern);
            return -1;
        }
    }
    return 0;
}

void app_static_reset(void)
{
    for (size_t i = 0; i < app_static_count; i++) {
        free(app_static_mounts[i].pattern);
        free(app_static_mounts[i].route_name);
        http_static_root_free(app_static_mounts[i].root);
    }
    memset(app_static_mounts, 0, sizeof(app_static_mounts));
    app_static_count = 0;
}
