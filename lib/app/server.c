/* server: see server_internal.h. Signals are blocked in every thread and taken synchronously by the main
 * thread with sigtimedwait, so no code runs in signal context and no loop is interrupted. */
#include "server_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "daemon_internal.h"
#include "generation_internal.h"
#include "http_client.h"
#include "pubsub_internal.h"
#include "redis.h"
#include "app_internal.h"
#include "sql.h"
#include "http_listener_internal.h"
#include "coro_internal.h"
#include "http_loop_internal.h"
#include "access_log_internal.h"
#include "http_metrics_internal.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "xalloc_internal.h"

typedef struct server_thread {
    pthread_t thread;
    http_loop *loop;
    atomic_bool finished;
} server_thread;

static void *server_thread_main(void *arg)
{
    server_thread *t = arg;
    http_loop_run(t->loop);
    atomic_store(&t->finished, true);
    return NULL;
}

/* Opens one listener per loop on the same address; with port 0 the first one picks the port and the
 * others join it. Returns 0 or -1 (logged); on failure no descriptor is left open. */
static int server_open_listeners(const apiary_config *cfg, int *fds, unsigned n, unsigned *port_out)
{
    char err[256];
    unsigned port = cfg->listen_port;
    if (!cfg->listen_host[0]) { /* listen "": Unix socket only */
        for (unsigned i = 0; i < n; i++)
            fds[i] = -1;
        *port_out = 0;
        return 0;
    }
    if (port != 0 && http_listener_check_free(cfg->listen_host, port, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return -1;
    }
    for (unsigned i = 0; i < n; i++) {
        fds[i] = http_listener_open(cfg->listen_host, port, cfg->backlog, err, sizeof(err));
        if (fds[i] < 0) {
            log_error("%s", err);
            while (i--)
                close(fds[i]);
            return -1;
        }
        if (port == 0)
            port = http_listener_port(fds[i]);
    }
    *port_out = port;
    return 0;
}

/* SIGHUP: load the config file again and switch to it, or keep the running one if the file is bad. */
static server_generation *server_reload(server_generation *current, http_loop *const *loops, unsigned n)
{
    server_generation *next = generation_reload(current, n);
    if (!next)
        return current;
    const apiary_config *cfg = &next->cfg;
    log_set_level(cfg->log_level);
    async_coro_configure(cfg->coro_stack_kib, cfg->coro_idle_stacks);
    char err[512];
    /* The log file is reopened under the same name (after rotation); another name needs a restart. */
    if (current->cfg.log_file[0] && daemon_log_open(current->cfg.log_file, err, sizeof(err)) != 0)
        log_error("config reload: %s; logging goes on to the old file", err);
    if (access_log_reopen(cfg->access_log_enabled, cfg->access_log_path, err, sizeof(err)) != 0)
        log_error("config reload: %s; the access log keeps its old file", err);
    app_run_reload_hook(next);
    app_set_current(next);
    for (unsigned i = 0; i < n; i++)
        http_loop_update_settings(loops[i], &next->http);
    log_info("config reloaded from %s (generation %u)", cfg->source_path, next->number);
    return next;
}

/* Waits for SIGTERM/SIGINT, reloading the config on every SIGHUP meanwhile. */
static int server_wait_for_signal(server_generation **gen, http_loop *const *loops, unsigned n)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    for (;;) {
        int sig = sigwaitinfo(&set, NULL);
        if (sig == SIGTERM || sig == SIGINT)
            return sig;
        if (sig == SIGHUP)
            *gen = server_reload(*gen, loops, n);
    }
}

static bool server_all_finished(server_thread *threads, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        if (!atomic_load(&threads[i].finished))
            return false;
    return true;
}

/* Waits up to `ms` for SIGTERM/SIGINT (in `set`, blocked); true if one came. */
static bool server_signal_within(const sigset_t *set, unsigned ms)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        clock_gettime(CLOCK_MONOTONIC, &now);
        long left_ms = (long)ms - ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000);
        if (left_ms <= 0)
            return false;
        struct timespec wait = {left_ms / 1000, (left_ms % 1000) * 1000000};
        if (sigtimedwait(set, NULL, &wait) > 0)
            return true;
    }
}

/* With /readyz already 503 everywhere: after drain_delay_ms of serving everything else as usual
 * with the listener open (so a load balancer's probe sees the 503 and takes this instance out before
 * new connections are refused), every loop drains, waiting at most drain_timeout_ms; what is still
 * running then is stopped. A second SIGTERM/SIGINT during either stops at once. */
static void server_shutdown(const apiary_config *cfg, server_thread *threads, unsigned n)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    if (cfg->drain_delay_ms > 0) {
        if (server_signal_within(&set, cfg->drain_delay_ms)) {
            log_warn("second signal: stopping without waiting for in-flight requests");
            for (unsigned i = 0; i < n; i++)
                http_loop_stop(threads[i].loop);
            return;
        }
        log_info("drain delay (%u ms) over: closing the listeners and draining", cfg->drain_delay_ms);
    }
    for (unsigned i = 0; i < n; i++)
        http_loop_drain(threads[i].loop);
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (server_all_finished(threads, n))
            return;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed_ms = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed_ms >= (long)cfg->drain_timeout_ms)
            break;
        struct timespec tick = {0, 10 * 1000000}; /* poll the loops every 10 ms, or take a signal */
        if (sigtimedwait(&set, NULL, &tick) > 0) {
            log_warn("second signal: stopping without waiting for in-flight requests");
            break;
        }
    }
    if (!server_all_finished(threads, n))
        log_warn("drain timeout (%u ms) reached: closing the remaining connections", cfg->drain_timeout_ms);
    for (unsigned i = 0; i < n; i++)
        http_loop_stop(threads[i].loop);
}

/* What must happen before anything is served and before the privileges go: the log and pid files.
 * Returns 0, or 1 after logging why. */
static int server_open_files(const apiary_config *cfg)
{
    char err[512];
    if (cfg->log_file[0] && daemon_log_open(cfg->log_file, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return 1;
    }
    if (cfg->pid_file[0] && daemon_pidfile_acquire(cfg->pid_file, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return 1;
    }
    if (cfg->access_log_enabled && access_log_open(cfg->access_log_path, err, sizeof(err)) != 0) {
        log_error("%s", err);
        return 1;
    }
    return 0;
}

/* A start that fails before the first generation exists still frees what it was handed. */
static int server_give_up(const apiary_config *cfg, void *sections[])
{
    app_free_sections(sections);
    apiary_config copy = *cfg;
    config_release(&copy);
    return 1;
}

int server_run(const apiary_config *cfg, void *sections[], int ready_fd)
{
    unsigned n = cfg->threads ? cfg->threads : 1;
    /* Block the signals before any thread exists so every thread inherits the mask. */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);

    if (http_loop_global_init() != 0) {
        log_error("libevent has no pthreads support");
        return server_give_up(cfg, sections);
    }
    if (server_open_files(cfg) != 0)
        return server_give_up(cfg, sections);
    pool *workers = cfg->pool_run_inline ? pool_new_inline()
                                         : pool_new_niced(cfg->pool_threads, cfg->pool_queue_size, (int)cfg->pool_nice);
    if (!workers)
        return server_give_up(cfg, sections);
    if (cfg->pool_run_inline)
        log_warn("pool.run_inline is on: CPU-heavy handlers run on the event loops (benchmarks only)");
    server_generation *gen = generation_first(cfg, sections, n, workers);
    app_set_current(gen);
    /* The first generation lives until exit, so the SQL backend may keep pointing at its settings. */
    if (sql_start(&gen->cfg.sql) != 0) {
        pool_shutdown(workers);
        pool_free(workers);
        app_set_current(NULL);
        generation_free_all(gen);
        return 1;
    }
    router *r = router_new();
    /* The startup hook (I/O allowed, on a loop of its own) runs before any listener exists: nothing is
     * accepted, and nothing says ready, until the app's tables and whatever else it needs are there. */
    if (app_run_start_hook(gen) != 0 || app_register_routes(r) != 0 ||
        app_run_startup(gen, &gen->http, r, workers) != 0) {
        router_free(r);
        sql_shutdown();
        pool_shutdown(workers);
        pool_free(workers);
        app_set_current(NULL);
        sql_stop();
        generation_free_all(gen);
        return 1;
    }
    int *fds = xcalloc(n, sizeof(int));
    unsigned port = 0;
    if (server_open_listeners(cfg, fds, n, &port) != 0) {
        free(fds);
        router_free(r);
        sql_shutdown();
        pool_shutdown(workers);
        pool_free(workers);
        app_set_current(NULL);
        sql_stop();
        generation_free_all(gen);
        return 1;
    }
    int unix_fd = -1;
    if (cfg->unix_socket_path[0]) {
        char err[256];
        unix_fd = http_listener_open_unix(cfg->unix_socket_path, cfg->unix_socket_mode, cfg->backlog, err,
                                          sizeof(err));
        if (unix_fd < 0) {
            log_error("%s", err);
            exit(1);
        }
    }
    if (cfg->user[0]) { /* everything privileged is done: ports bound, files open */
        char err[256];
        if (daemon_drop_privileges(cfg->user, err, sizeof(err)) != 0) {
            log_error("%s", err);
            exit(1);
        }
        log_info("running as user %s", cfg->user);
    }
    server_thread *threads = xcalloc(n, sizeof(*threads));
    http_loop **loops = xcalloc(n, sizeof(*loops));
    for (unsigned i = 0; i < n; i++) {
        /* No SO_REUSEPORT for Unix sockets: every loop polls its own dup of the one listener, and the
         * loop that loses an accept race just gets EAGAIN. */
        http_loop_options opts = {
            .id = i, .listen_fd = fds[i], .settings = &gen->http, .router = r, .middleware = app_middleware()};
        if (unix_fd >= 0) {
            opts.has_unix = true;
            opts.unix_fd = i == 0 ? unix_fd : fcntl(unix_fd, F_DUPFD_CLOEXEC, 0);
        }
        threads[i].loop = loops[i] = http_loop_new(&opts);
        if (!threads[i].loop) {
            log_error("cannot create event loop %u", i);
            exit(1);
        }
    }
    http_metrics_register(loops, n, r);
    pubsub_settings ps = gen->cfg.pubsub;
    ps.redis = &gen->cfg.redis; /* the first generation lives until exit */
    pubsub_start(&ps, loops, n);
    metrics_add_source(pubsub_metrics_source, NULL);
    metrics_add_source(pool_metrics_source, workers);
    metrics_add_source(http_client_metrics_source, NULL);
    metrics_add_source(redis_metrics_source, NULL);
    metrics_add_source(sql_metrics_source, NULL);
    for (unsigned i = 0; i < n; i++) {
        int rc = pthread_create(&threads[i].thread, NULL, server_thread_main, &threads[i]);
        if (rc != 0) {
            log_error("cannot start loop thread %u: %s", i, strerror(rc));
            exit(1);
        }
        /* Named here, not by the thread itself, so the names are in place before we say we listen. */
        char name[32];
        snprintf(name, sizeof(name), "apiary-loop-%u", i);
        name[15] = '\0'; /* the kernel keeps 15 characters */
        pthread_setname_np(threads[i].thread, name);
    }
    bool v6 = strchr(cfg->listen_host, ':') != NULL;
    /* "apiary 0.1.0" for the apiary binary, "links (apiary 0.1.0)" for an app called links, as --version. */
    char who[128];
    if (strcmp(app_name(), "apiary") == 0)
        snprintf(who, sizeof(who), "apiary %s", APIARY_VERSION);
    else
        snprintf(who, sizeof(who), "%s (apiary %s)", app_name(), APIARY_VERSION);
    if (cfg->listen_host[0])
        log_info("%s listening on http://%s%s%s:%u with %u thread%s", who, v6 ? "[" : "", cfg->listen_host,
                 v6 ? "]" : "", port, n, n == 1 ? "" : "s");
    if (unix_fd >= 0)
        log_info("%s listening on unix:%s with %u thread%s", who, cfg->unix_socket_path, n, n == 1 ? "" : "s");
    daemon_ready(ready_fd);

    int sig = server_wait_for_signal(&gen, loops, n);
    health_set_stopping(true); /* before the log line says so */
    if (gen->cfg.drain_delay_ms > 0)
        log_info("%s received: /readyz 503 for %u ms with the listeners open, then draining (up to %u ms)",
                 sig == SIGTERM ? "SIGTERM" : "SIGINT", gen->cfg.drain_delay_ms, gen->cfg.drain_timeout_ms);
    else
        log_info("%s received: draining (up to %u ms)", sig == SIGTERM ? "SIGTERM" : "SIGINT",
                 gen->cfg.drain_timeout_ms);
    server_shutdown(&gen->cfg, threads, n);
    for (unsigned i = 0; i < n; i++)
        pthread_join(threads[i].thread, NULL);
    /* Workers may still be finishing jobs whose requests were cancelled: join them while the loops
     * they post results to still exist; freeing a loop then discards what was posted late. */
    pool_shutdown(workers);
    sql_shutdown(); /* SQLite's threads, likewise */
    metrics_clear_sources();
    pubsub_stop(); /* no publisher posts to a loop from here on */
    for (unsigned i = 0; i < n; i++)
        http_loop_free(threads[i].loop);
    pool_free(workers);
    sql_stop(); /* after the loops (their pools) and the workers (their SQLite connections) */
    free(loops);
    if (unix_fd >= 0)
        unlink(cfg->unix_socket_path);
    daemon_pidfile_release();
    app_set_current(NULL);
    generation_free_all(gen); /* after the loops: they read their settings until freed */
    access_log_close(); /* after the loops: freeing a loop flushes its last lines */
    free(threads);
    free(fds);
    router_free(r);
    log_info("shutdown complete");
    return 0;
}
