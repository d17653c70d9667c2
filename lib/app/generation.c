/* generation: see generation_internal.h. */
#include "generation_internal.h"

#include <stdlib.h>
#include <string.h>

#include "app_internal.h"
#include "log.h"
#include "xalloc_internal.h"

struct generation_alloc {
    generation_alloc *next;
    max_align_t data[];
};

void *apiary_context_alloc(const apiary_context *ctx, size_t size)
{
    /* Hooks run on the main thread only, so the list needs no lock; the memory itself is the app's. */
    server_generation *g = (server_generation *)ctx;
    generation_alloc *a = xcalloc(1, sizeof(*a) + size);
    a->next = g->allocs;
    g->allocs = a;
    return a->data;
}

static void generation_derive(server_generation *g, unsigned loops, pool *workers)
{
    const apiary_config *cfg = &g->cfg;
    g->http = cfg->http;
    g->http.trusted_proxies = cfg->trusted_proxies;
    g->http.trusted_proxy_count = cfg->trusted_proxy_count;
    g->http.rate_limiter = g->limiter;
    g->http.rate_limit_prefix = cfg->rate_limit_prefix;
    g->http.context = g; /* a request keeps the generation it started on (apiary_current) */
    /* max_connections is for the whole server; every loop gets its share, and at least one. */
    g->http.max_connections = cfg->max_connections / loops ? cfg->max_connections / loops : 1;
    g->pool = workers;
    g->http.compress_pool = workers; /* large bodies are content-coded there (docs/compression.md) */
    g->upstreams = cfg->upstreams;
    g->upstream_count = cfg->upstream_count;
    g->allowlist = (http_client_allowlist){cfg->allowed_origins, cfg->allowed_origin_count};
    /* Redis is configured by its section or by the key-value backend that needs it; otherwise an app
     * asking for apiary_redis() learns there is none instead of getting 127.0.0.1:6379. */
    g->redis = cfg->redis_section || cfg->kv_backend == CONFIG_KV_REDIS ? &cfg->redis : NULL;
}

static ratelimit *generation_new_limiter(const apiary_config *cfg)
{
    if (!cfg->rate_limit_enabled)
        return NULL;
    return ratelimit_new(cfg->rate_limit_per_second, cfg->rate_limit_burst, cfg->rate_limit_max_clients);
}

server_generation *generation_first(const apiary_config *cfg, void *const *sections, unsigned loops,
                                    pool *workers)
{
    server_generation *g = xcalloc(1, sizeof(*g));
    g->number = 1;
    g->cfg = *cfg;
    memcpy(g->sections, sections, sizeof(g->sections));
    g->limiter = generation_new_limiter(cfg);
    g->owns_limiter = true;
    generation_derive(g, loops, workers);
    return g;
}

/* What cannot change under running loops, threads and connections. A changed one is named in the log
 * and keeps its running value, so the new generation describes what actually runs. */
#define GENERATION_KEEP(field, name)                                                                    \
    do {                                                                                               \
        if (memcmp(&next->field, &now->field, sizeof(now->field)) != 0) {                              \
            log_warn("config reload: %s changed; it needs a restart, the running value stays", name);  \
            memcpy(&next->field, &now->field, sizeof(now->field));                                     \
        }                                                                                              \
    } while (0)

static void generation_keep_restart_only(apiary_config *next, const apiary_config *now)
{
    /* Values the environment or a flag set are not the file's to change: keep them without a word. */
    next->listen_overridden = now->listen_overridden;
    next->threads_overridden = now->threads_overridden;
    if (now->listen_overridden) {
        memcpy(next->listen_host, now->listen_host, sizeof(now->listen_host));
        next->listen_port = now->listen_port;
    }
    if (now->threads_overridden)
        next->threads = now->threads;
    if (strcmp(next->listen_host, now->listen_host) != 0 || next->listen_port != now->listen_port) {
        log_warn("config reload: listen changed; it needs a restart, the running value stays");
        memcpy(next->listen_host, now->listen_host, sizeof(now->listen_host));
        next->listen_port = now->listen_port;
    }
    GENERATION_KEEP(threads, "threads");
    GENERATION_KEEP(backlog, "backlog");
    GENERATION_KEEP(http.max_headers, "limits.max_headers");
    GENERATION_KEEP(pool_threads, "pool.threads");
    GENERATION_KEEP(pool_queue_size, "pool.queue_size");
    GENERATION_KEEP(pool_run_inline, "pool.run_inline");
    GENERATION_KEEP(pool_nice, "pool.nice");
    GENERATION_KEEP(kv_backend, "kv.backend");
    GENERATION_KEEP(kv_max_entries, "kv.max_entries");
    GENERATION_KEEP(kv_max_memory_bytes, "kv.max_memory_bytes");
    GENERATION_KEEP(redis, "redis");
    GENERATION_KEEP(redis_section, "redis");
    /* The backend and its pools keep the settings they started with; APIARY_SQL_URL is not the
     * file's to change, so with it the section is kept without a word. */
    next->sql_url_overridden = now->sql_url_overridden;
    if (now->sql_url_overridden)
        next->sql = now->sql;
    GENERATION_KEEP(sql, "sql");
    GENERATION_KEEP(pid_file, "daemon.pid_file");
    GENERATION_KEEP(log_file, "daemon.log_file");
    GENERATION_KEEP(user, "user");
    GENERATION_KEEP(unix_socket_path, "unix_socket.path");
    GENERATION_KEEP(unix_socket_mode, "unix_socket.mode");
    next->daemonize = now->daemonize;
}

static bool generation_same_limits(const apiary_config *a, const apiary_config *b)
{
    return a->rate_limit_enabled == b->rate_limit_enabled && a->rate_limit_per_second == b->rate_limit_per_second &&
           a->rate_limit_burst == b->rate_limit_burst && a->rate_limit_max_clients == b->rate_limit_max_clients;
}

static server_generation *generation_reload_loaded(server_generation *current, unsigned loops, apiary_config *next);

server_generation *generation_reload(server_generation *current, unsigned loops)
{
    apiary_config next;
    char err[CONFIG_ERROR_MAX];
    config_defaults(&next);
    if (config_load_file(&next, current->cfg.source_path, err) != 0) {
        log_error("config reload rejected, the running config stays: %s", err);
        return NULL;
    }
    return generation_reload_loaded(current, loops, &next);
}

server_generation *generation_reload_text(server_generation *current, unsigned loops, const char *json_text)
{
    apiary_config next;
    char err[CONFIG_ERROR_MAX];
    config_defaults(&next);
    if (config_load_string(&next, json_text, current->cfg.source_path, err) != 0) {
        log_error("config reload rejected, the running config stays: %s", err);
        return NULL;
    }
    memcpy(next.source_path, current->cfg.source_path, sizeof(next.source_path));
    return generation_reload_loaded(current, loops, &next);
}

static server_generation *generation_reload_loaded(server_generation *current, unsigned loops,
                                                   apiary_config *loaded)
{
    apiary_config next = *loaded;
    char err[CONFIG_ERROR_MAX];
    void *sections[CONFIG_MAX_APP_SECTIONS] = {0};
    if (app_parse_sections(&next, sections, err) != 0) {
        log_error("config reload rejected, the running config stays: %s", err);
        config_release(&next);
        return NULL;
    }
    generation_keep_restart_only(&next, &current->cfg);
    server_generation *g = xcalloc(1, sizeof(*g));
    memcpy(g->sections, sections, sizeof(g->sections));
    g->prev = current;
    g->number = current->number + 1;
    g->cfg = next;
    if (generation_same_limits(&next, &current->cfg)) {
        g->limiter = current->limiter; /* clients keep their buckets */
    } else {
        g->limiter = generation_new_limiter(&next);
        g->owns_limiter = true;
    }
    generation_derive(g, loops, current->pool);
    /* The HTTP client keys its connection pools by upstream: unchanged upstreams keep the running
     * array and so their pools. Changed ones take effect now with fresh pools; calls in flight finish
     * on the old ones (their generation stays alive), whose connections close as they go idle. */
    if (next.upstream_count == current->cfg.upstream_count &&
        memcmp(next.upstreams, current->cfg.upstreams, sizeof(next.upstreams)) == 0)
        g->upstreams = current->upstreams;
    else
        log_info("config reload: upstreams changed; new calls use fresh connection pools");
    if (next.allowed_origin_count == current->cfg.allowed_origin_count &&
        memcmp(next.allowed_origins, current->cfg.allowed_origins, sizeof(next.allowed_origins)) == 0)
        g->allowlist = current->allowlist; /* same origins: same pools */
    g->redis = current->redis; /* redis needs a restart: the running links keep it */
    return g;
}

void generation_free_all(server_generation *newest)
{
    while (newest) {
        server_generation *prev = newest->prev;
        if (newest->owns_limiter)
            ratelimit_free(newest->limiter);
        app_free_sections(newest->sections);
        config_release(&newest->cfg);
        while (newest->allocs) {
            generation_alloc *a = newest->allocs;
            newest->allocs = a->next;
            free(a);
        }
        free(newest);
        newest = prev;
    }
}
