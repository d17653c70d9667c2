/* http_background: background tasks (background.h). Each is a coroutine in a standalone scope on its
 * loop, linked in the loop's list so drain can wait for them and stop can cancel them. A task is never
 * freed from its own stack: when its function returns it only marks itself done and wakes the loop's
 * reaper, which frees its scope and itself from the loop's stack. */
#include <stdlib.h>
#include <string.h>

#include "background.h"
#include "coro_internal.h"
#include "http_internal.h"
#include "log.h"
#include "xalloc_internal.h"

struct http_bg_task {
    http_bg_task *prev, *next; /* the loop's list of live tasks */
    http_loop *loop;
    async_scope *scope;
    const char *name;
    http_background_fn fn;
    void *arg;      /* the copy, in the scope's memory */
    bool returned;  /* fn returned: the reaper frees the task */
    bool cancelling; /* http_background_cancel_all frees it itself */
};

static void http_bg_post(void *loop, void (*fn)(void *arg), void *arg) { http_loop_post(loop, fn, arg); }

static void http_bg_unlink(http_bg_task *t)
{
    http_loop *loop = t->loop;
    if (t->prev)
        t->prev->next = t->next;
    else
        loop->bg_head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    loop->bg_count--;
    HTTP_STAT_ADD(loop, background_running, (uint64_t)-1);
}

/* The drain waits for the last connection and the last task. */
static void http_bg_check_drained(http_loop *loop)
{
    if (loop->draining && loop->conn_count == 0 && loop->bg_count == 0)
        event_base_loopexit(loop->base, NULL);
}

static void http_bg_reap(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_loop *loop = arg;
    http_bg_task *t = loop->bg_head;
    while (t) {
        http_bg_task *next = t->next;
        if (t->returned && !t->cancelling) {
            http_bg_unlink(t);
            async_scope_free(t->scope);
            free(t);
        }
        t = next;
    }
    http_bg_check_drained(loop);
}

static void http_bg_main(void *arg)
{
    http_bg_task *t = arg;
    t->fn(t->scope, t->arg);
    t->returned = true;
    if (!t->cancelling)
        event_active(t->loop->bg_reap_ev, EV_TIMEOUT, 0);
}

/* Runs on the loop's stack (async_coro_outside): a handler's coroutine must not become the task's parent. */
typedef struct http_bg_spawn {
    http_bg_task *task;
    bool ok;
} http_bg_spawn;

static void http_bg_spawn_outside(void *arg)
{
    http_bg_spawn *s = arg;
    s->ok = async_coro_spawn_named(s->task->scope, s->task->name, http_bg_main, s->task);
}

bool http_background_start(http_request *req, const char *name, http_background_fn fn, const void *arg,
                           size_t arg_size)
{
    http_loop *loop = req->_conn->loop;
    if (!fn || loop->draining || loop->bg_count >= loop->settings->max_background_per_loop) {
        HTTP_STAT_ADD(loop, background_refused, 1);
        return false;
    }
    if (!loop->bg_reap_ev)
        loop->bg_reap_ev = event_new(loop->base, -1, 0, http_bg_reap, loop);
    http_bg_task *t = xcalloc(1, sizeof(*t));
    t->loop = loop;
    t->name = name ? name : "background task";
    t->fn = fn;
    t->scope = async_scope_new(loop->base);
    async_scope_use_timeouts(t->scope, &loop->timeouts);
    async_scope_set_poster(t->scope, http_bg_post, loop);
    async_scope_watch(t->scope, loop->settings->slow_callback_ms, http_loop_report_slow, loop, t->name);
    async_scope_set_context(t->scope, ((http_req_slot *)req)->context); /* the request's settings */
    if (arg_size) {
        t->arg = async_scope_alloc(t->scope, arg_size);
        memcpy(t->arg, arg, arg_size);
    }
    t->next = loop->bg_head;
    if (loop->bg_head)
        loop->bg_head->prev = t;
    loop->bg_head = t;
    loop->bg_count++;
    HTTP_STAT_ADD(loop, background_running, 1);
    HTTP_STAT_ADD(loop, background_started, 1);
    http_bg_spawn s = {t, false};
    const void *outer_context = async_context_swap(((http_req_slot *)req)->context);
    async_coro_outside(http_bg_spawn_outside, &s);
    async_context_swap(outer_context);
    if (!s.ok) {
        http_bg_unlink(t);
        HTTP_STAT_ADD(loop, background_started, (uint64_t)-1);
        HTTP_STAT_ADD(loop, background_refused, 1);
        async_scope_free(t->scope);
        free(t);
        return false;
    }
    return true;
}

void http_background_cancel_all(http_loop *loop)
{
    while (loop->bg_head) {
        http_bg_task *t = loop->bg_head;
        http_bg_unlink(t);
        if (!t->returned) {
            HTTP_STAT_ADD(loop, background_cancelled, 1);
            log_warn("loop %u: background task %s had not finished when the server stopped: cancelled", loop->id,
                     t->name);
        }
        t->cancelling = true;
        async_scope_free(t->scope); /* resumes the coroutine once with ASYNC_CANCELLED; it unwinds */
        free(t);
    }
    if (loop->bg_reap_ev) {
        event_free(loop->bg_reap_ev);
        loop->bg_reap_ev = NULL;
    }
}
