/* app_startup: the app's startup hook (apiary_app_on_startup), run as a coroutine on an event loop of
 * its own, on the main thread, before the server opens its listeners. The loop is an ordinary
 * http_loop without a listener, so everything a handler can await works there the same way (SQL on
 * MariaDB's loop-local pool, Redis, the HTTP client, pool jobs posted back to it); it is freed once the
 * hook has returned, with the connections it opened. */
#include "app_internal.h"

#include <event2/event.h>
#include <time.h>

#include "coro_internal.h"
#include "http_loop_internal.h"
#include "log.h"
#include "sql_internal.h"

typedef struct app_startup_run {
    const apiary_context *ctx;
    apiary_startup_fn fn;
    void *arg;
    async_scope *scope;
    http_loop *loop;
    int rc;
    bool done;
} app_startup_run;

static void app_startup_post(void *target, void (*fn)(void *arg), void *arg) { http_loop_post(target, fn, arg); }

static void app_startup_coro(void *arg)
{
    app_startup_run *run = arg;
    run->rc = run->fn(run->ctx, run->scope, run->loop, run->arg);
    run->done = true;
    event_base_loopbreak(http_loop_base(run->loop));
}

/* Jobs a cancelled operation left running on a worker post their (discarded) result to the loop that
 * submitted them: the loop must outlive them. */
static bool app_startup_jobs_left(pool *workers)
{
    pool_stats st;
    pool_stats_read(workers, &st);
    return st.queued + st.running > 0 || sql__jobs_left();
}

int app_run_startup(const apiary_context *ctx, const http_settings *settings, const router *r, pool *workers)
{
    app_startup_run run = {.ctx = ctx};
    run.fn = app_startup_hook(&run.arg);
    if (!run.fn)
        return 0;
    http_loop_options opts = {.id = 0, .listen_fd = -1, .settings = settings, .router = r};
    run.loop = http_loop_new(&opts);
    if (!run.loop) {
        log_error("cannot create the event loop for the startup hook");
        return -1;
    }
    run.scope = async_scope_new(http_loop_base(run.loop));
    async_scope_set_poster(run.scope, app_startup_post, run.loop);
    if (!async_coro_spawn_named(run.scope, "startup", app_startup_coro, &run)) {
        run.rc = -1;
        run.done = true;
    }
    while (!run.done) /* a break asked for before the loop runs is not kept: check first */
        http_loop_run(run.loop);
    async_scope_free(run.scope);
    struct timespec tick = {0, 1000000};
    while (app_startup_jobs_left(workers)) {
        event_base_loop(http_loop_base(run.loop), EVLOOP_NONBLOCK);
        nanosleep(&tick, NULL);
    }
    http_loop_free(run.loop);
    if (run.rc != 0)
        log_error("the startup hook failed; not starting");
    return run.rc == 0 ? 0 : -1;
}
