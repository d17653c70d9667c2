/* async: the asyncio-style toolkit of async.h on libevent.
 *
 * Every operation lives in its scope's arena and sits on exactly one of the scope's intrusive lists
 * until it reaches its end: `pending` (not completed), `unclaimed` (completed before anyone attached a
 * continuation) or `ready` (completed, continuation queued). An operation that is on none of them is
 * finished for good: its continuation ran, or it was cancelled (then _cb_set is true and _cb is NULL,
 * so a late async_op_then is ignored). Completion only moves an operation between lists; one event per
 * scope runs the ready queue from the loop, which is what keeps continuations out of the call stack
 * that completed them. A runner runs only what was ready when it started and a runner woken from
 * inside a runner waits for the loop's next pass, so instant completions cannot starve I/O and timers.
 *
 * gather and wait_for listen to their children through the same ready queue, with an internal
 * continuation (async_child_done). A child they listen to and whose completion they have taken in is
 * "consumed": _cb stays async_child_done, so the parent can still find it to undo it (revoke) if the
 * parent itself is cancelled before its own continuation ran. Cancellation of a child is reported to
 * its parent synchronously, because a cancelled operation never goes through the ready queue.
 *
 * Interpretations of the header (see also async.h):
 * - Cancelling a completed operation whose continuation has not run keeps its status, except where
 *   the cancel undoes the result: a granted semaphore acquire returns its permit and a queue get
 *   returns its item; those become ASYNC_CANCELLED with value NULL, so nobody who reads them later
 *   releases a permit or uses an item twice. Parents forward this to the children they consumed.
 * - A queue get cancelled after it was handed an item, while the queue has meanwhile filled up, cannot
 *   put the item back (the ring has no room and the struct no field for more): the get keeps status
 *   OK and the item in its value, and an error is logged.
 * - Cancelling a child of gather counts it as finished (in FAIL_FAST too: it is not a failure);
 *   cancelling the inner operation of wait_for cancels the wait_for (its continuation never runs).
 *   Cancelling a child whose completion its parent already took in is a no-op.
 * - wait_for whose timer fires when the inner operation has completed but its report is still queued
 *   completes like the inner operation: it was in time, and its result (a permit, an item, a value
 *   from outside) is not thrown away.
 * - gather and wait_for fail at once (ASYNC_FAILED, children untouched) when given NULL, an operation
 *   of another scope (its memory could go first) or one another gather/wait_for is still waiting for.
 * - A second async_op_then is ignored and logged; gather/wait_for do replace a continuation attached
 *   earlier (the header says they take over).
 * - Operations started on a scope that is being or has been freed (from a cancel hook, or by the
 *   continuation that freed it) are born cancelled. A cancel hook registered on a future that is
 *   already cancelled runs at once. Cancel hooks must not free their own scope.
 * - Semaphore acquire and queue put complete with value NULL. */
#include "async.h"
#include "async_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "arena.h"
#include "log.h"
#include "xalloc.h"

struct async_op_vtable {
    const char *name;
    /* Stops a pending operation; its status is already ASYNC_CANCELLED. */
    void (*cancel)(async_op *op);
    /* Undoes a completed operation whose continuation will not run; true if something was undone. */
    bool (*revoke)(async_op *op);
    /* A child this operation listens to completed (cancelled == false) or was cancelled. */
    void (*child_done)(async_op *op, async_op *child, bool cancelled);
};

typedef struct async_list {
    async_op *head, *tail;
    size_t len;
} async_list;

struct async_scope {
    struct event_base *base;
    arena *arena;
    struct event run_ev; /* runs the ready queue; activated when the queue gains an operation */
    async_list pending;
    async_list unclaimed;
    async_list ready;
    bool running; /* inside async_scope_run */
    bool closing; /* async_scope_free was called */
    bool dead;    /* freed from inside the runner: the runner frees the struct when it unwinds */
    bool owns_arena;
    async_timeouts *timeouts; /* common timeouts of the scope's loop, or NULL: heap timers */
    async_defer *defers;      /* cleanups to run when the scope ends, newest first */
    async_post_fn post;       /* how other threads reach the scope's loop (async_scope_set_poster) */
    void *post_target;
    unsigned slow_ms;      /* async_scope_watch: report continuations this slow (0: off) */
    async_slow_fn slow_fn;
    void *slow_arg;
    const char *slow_label;
    arena own_arena[]; /* standalone scopes only */
};

/* ---- lists ---------------------------------------------------------------------------------- */

static void async_list_push(async_list *l, async_op *op)
{
    op->_next = NULL;
    op->_prev = l->tail;
    if (l->tail)
        l->tail->_next = op;
    else
        l->head = op;
    l->tail = op;
    l->len++;
}

static void async_list_remove(async_list *l, async_op *op)
{
    if (op->_prev)
        op->_prev->_next = op->_next;
    else
        l->head = op->_next;
    if (op->_next)
        op->_next->_prev = op->_prev;
    else
        l->tail = op->_prev;
    op->_prev = op->_next = NULL;
    l->len--;
}

/* ---- scopes --------------------------------------------------------------------------------- */

static void async_scope_run(evutil_socket_t fd, short what, void *arg);

uint64_t async_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static async_scope *async_scope_alloc_struct(struct event_base *base, size_t extra)
{
    async_scope *s = xmalloc(sizeof(*s) + extra);
    memset(s, 0, sizeof(*s) + extra);
    s->base = base;
    event_assign(&s->run_ev, base, -1, 0, async_scope_run, s);
    return s;
}

async_scope *async_scope_new(struct event_base *base)
{
    async_scope *s = async_scope_alloc_struct(base, sizeof(arena));
    arena_init(s->own_arena);
    s->arena = s->own_arena;
    s->owns_arena = true;
    return s;
}

async_scope *async_scope_new_in_arena(struct event_base *base, arena *a)
{
    async_scope *s = async_scope_alloc_struct(base, 0);
    s->arena = a;
    return s;
}

/* The one place a scope struct is freed. */
static void async_scope_destroy(async_scope *s)
{
    if (s->owns_arena)
        arena_reset(s->own_arena);
    free(s);
}

/* Runners active on this thread (each loop thread has its own). libevent runs an event activated from
 * inside a callback in the same pass, so a runner waking a runner (itself later, or another scope
 * that wakes it back) could keep the loop from ever polling again. */
static _Thread_local unsigned async_runners_active;

/* Schedules the runner. From inside a runner it goes through a zero timer instead, which the loop
 * only fires after it has polled for I/O and expired timers again. */
static void async_scope_wake(async_scope *s)
{
    static const struct timeval async_zero_tv = {0, 0};
    if (async_runners_active > 0)
        event_add(&s->run_ev, &async_zero_tv);
    else
        event_active(&s->run_ev, EV_READ, 0);
}

static void async_scope_enqueue(async_scope *s, async_op *op)
{
    op->_queued = true;
    async_list_push(&s->ready, op);
    /* A running runner re-arms itself for what is left; a closing scope's queue is dropped. */
    if (!s->running && !s->closing)
        async_scope_wake(s);
}

/* Runs the continuations that were ready when the event fired; later ones wait for the next loop
 * iteration (asyncio's call_soon), so a chain of instant completions cannot starve the loop. */
static uint64_t async_coarse_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* ~5 ns, enough for a threshold of tens of ms */
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void async_scope_watch(async_scope *scope, unsigned slow_ms, async_slow_fn fn, void *arg, const char *label)
{
    scope->slow_ms = fn ? slow_ms : 0;
    scope->slow_fn = fn;
    scope->slow_arg = arg;
    scope->slow_label = label;
}

static void async_scope_run(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    async_scope *s = arg;
    size_t budget = s->ready.len;
    s->running = true;
    async_runners_active++;
    while (budget-- > 0 && s->ready.head) {
        async_op *op = s->ready.head;
        async_list_remove(&s->ready, op);
        op->_queued = false;
        uint64_t started = s->slow_ms ? async_coarse_ms() : 0;
        op->_cb(op, op->_cb_arg);
        if (s->slow_ms) {
            uint64_t took = async_coarse_ms() - started;
            if (took >= s->slow_ms)
                s->slow_fn(s->slow_arg, s->slow_label, took);
        }
        /* The continuation may have freed the scope and its owner reset the arena: `op` and every
         * other operation may be gone, only the struct is still ours. */
        if (s->dead)
            break;
    }
    s->running = false;
    if (s->dead)
        async_scope_destroy(s);
    else if (s->ready.head)
        async_scope_wake(s);
    async_runners_active--;
}

static async_op *async_scope_next_victim(const async_scope *s)
{
    /* Newest pending first: parents were started after their children and take them down with them. */
    if (s->pending.tail)
        return s->pending.tail;
    return s->unclaimed.head ? s->unclaimed.head : s->ready.head;
}

static void async_scope_run_defers(async_scope *scope);

void async_scope_free(async_scope *scope)
{
    if (!scope || scope->closing)
        return;
    scope->closing = true;
    /* A cancel may grant a permit to another of our waiters or run a hook that starts an operation:
     * keep going until all three lists are empty. */
    async_op *op;
    while ((op = async_scope_next_victim(scope)) != NULL)
        async_op_cancel(op);
    async_scope_run_defers(scope);
    event_del(&scope->run_ev);
    if (scope->running)
        scope->dead = true;
    else
        async_scope_destroy(scope);
}

struct async_defer {
    async_defer *prev, *next;
    void (*fn)(void *arg);
    void *arg;
    async_scope *scope;
};

async_defer *async_scope_defer(async_scope *scope, void (*fn)(void *arg), void *arg)
{
    async_defer *d = async_scope_alloc(scope, sizeof(*d));
    d->fn = fn;
    d->arg = arg;
    d->scope = scope;
    d->next = scope->defers;
    if (scope->defers)
        scope->defers->prev = d;
    scope->defers = d;
    return d;
}

void async_defer_cancel(async_defer *d)
{
    if (!d || !d->fn)
        return;
    if (d->prev)
        d->prev->next = d->next;
    else
        d->scope->defers = d->next;
    if (d->next)
        d->next->prev = d->prev;
    d->fn = NULL;
    d->prev = d->next = NULL;
}

/* Runs the cleanups newest first, each exactly once; a cleanup that releases a shared permit may grant
 * it to another scope's waiter, which only queues that scope's continuation. */
static void async_scope_run_defers(async_scope *scope)
{
    async_defer *d;
    while ((d = scope->defers) != NULL) {
        void (*fn)(void *) = d->fn;
        async_defer_cancel(d);
        fn(d->arg);
    }
}

void *async_scope_alloc(async_scope *scope, size_t size)
{
    void *p = arena_alloc(scope->arena, size);
    memset(p, 0, size ? size : 1);
    return p;
}

struct event_base *async_scope_base(const async_scope *scope) { return scope->base; }

/* ---- operation lifecycle -------------------------------------------------------------------- */

static void async_child_done(async_op *child, void *parent);

static async_op *async_op_new(async_scope *s, const async_op_vtable *vt, size_t size)
{
    async_op *op = async_scope_alloc(s, size);
    op->status = ASYNC_PENDING;
    op->_vt = vt;
    op->_scope = s;
    op->started_ms = async_now_ms();
    async_list_push(&s->pending, op);
    return op;
}

/* Last step of every constructor: nothing may stay alive in a scope that is going away. */
static async_op *async_op_started(async_op *op)
{
    if (op->_scope->closing)
        async_op_cancel(op);
    return op;
}

static void async_op_complete(async_op *op, async_status status, void *value, const char *error)
{
    if (op->status != ASYNC_PENDING)
        return;
    async_scope *s = op->_scope;
    op->status = status;
    op->value = value;
    op->error = error;
    op->finished_ms = async_now_ms();
    async_list_remove(&s->pending, op);
    if (op->_cb_set)
        async_scope_enqueue(s, op);
    else
        async_list_push(&s->unclaimed, op);
}

static bool async_op_undelivered(const async_op *op)
{
    return op->status != ASYNC_PENDING && (op->_queued || !op->_cb_set);
}

/* Takes op off the unclaimed list or the ready queue. */
static void async_op_unlist_completed(async_op *op)
{
    if (op->_queued) {
        async_list_remove(&op->_scope->ready, op);
        op->_queued = false;
    } else {
        async_list_remove(&op->_scope->unclaimed, op);
    }
}

/* No continuation will ever run for op again. */
static void async_op_detach(async_op *op)
{
    op->_cb = NULL;
    op->_cb_arg = NULL;
    op->_cb_set = true;
}

static async_op *async_op_observer(const async_op *op)
{
    return op->_cb == async_child_done ? op->_cb_arg : NULL;
}

static bool async_op_revoke(async_op *op)
{
    if (!op->_vt->revoke || !op->_vt->revoke(op))
        return false;
    op->status = ASYNC_CANCELLED;
    op->value = NULL;
    op->error = NULL;
    return true;
}

static void async_op_cancel_pending(async_op *op)
{
    async_op *observer = async_op_observer(op);
    async_list_remove(&op->_scope->pending, op);
    op->status = ASYNC_CANCELLED;
    op->finished_ms = async_now_ms();
    async_op_detach(op);
    op->_vt->cancel(op);
    if (observer)
        observer->_vt->child_done(observer, op, true);
}

static void async_op_cancel_undelivered(async_op *op)
{
    async_op *observer = async_op_observer(op);
    async_op_unlist_completed(op);
    async_op_detach(op);
    async_op_revoke(op);
    if (observer)
        observer->_vt->child_done(observer, op, true);
}

void async_op_cancel(async_op *op)
{
    if (!op)
        return;
    if (op->status == ASYNC_PENDING)
        async_op_cancel_pending(op);
    else if (async_op_undelivered(op))
        async_op_cancel_undelivered(op);
}

void async_op_then(async_op *op, async_cb cb, void *arg)
{
    if (!op || !cb) {
        log_error("async: async_op_then without %s ignored", op ? "a continuation" : "an operation");
        return;
    }
    if (op->_cb_set) {
        /* A cancelled operation has _cb_set and no _cb: nothing to say, it will just never run. */
        if (op->_cb)
            log_error("async: second continuation on a %s operation ignored", op->_vt->name);
        return;
    }
    op->_cb = cb;
    op->_cb_arg = arg;
    op->_cb_set = true;
    if (op->status != ASYNC_PENDING) {
        async_list_remove(&op->_scope->unclaimed, op);
        async_scope_enqueue(op->_scope, op);
    }
}

uint64_t async_op_elapsed_ms(const async_op *op)
{
    uint64_t end = op->status == ASYNC_PENDING ? async_now_ms() : op->finished_ms;
    return end > op->started_ms ? end - op->started_ms : 0;
}

/* ---- children of gather and wait_for -------------------------------------------------------- */

static void async_child_done(async_op *child, void *parent)
{
    async_op *p = parent;
    p->_vt->child_done(p, child, false);
}

/* Why parent cannot listen to child, or NULL if it can. */
static const char *async_child_problem(const async_scope *scope, const async_op *child,
                                      const async_op *parent)
{
    if (!child)
        return "no operation";
    if (child->_scope != scope)
        return "operation of another scope";
    const async_op *other = async_op_observer(child);
    if (other && other != parent && (child->status == ASYNC_PENDING || child->_queued))
        return "operation already awaited";
    return NULL;
}

/* Makes parent the listener of a pending child, or takes in the completion of one whose continuation
 * has not run yet (which then counts as consumed by parent). */
static void async_op_adopt(async_op *parent, async_op *child)
{
    if (child->status != ASYNC_PENDING)
        async_op_unlist_completed(child);
    child->_cb = async_child_done;
    child->_cb_arg = parent;
    child->_cb_set = true;
}

/* Cancels a child parent still waits for, without parent hearing about it. */
static void async_op_cancel_child(async_op *parent, async_op *child)
{
    if (async_op_observer(child) != parent)
        return;
    if (child->status == ASYNC_PENDING || child->_queued) {
        child->_cb = NULL;
        child->_cb_arg = NULL;
        async_op_cancel(child);
    }
}

/* Undoes a child whose completion parent consumed; at most once per child. */
static bool async_op_revoke_child(async_op *parent, async_op *child)
{
    if (async_op_observer(child) != parent || child->status == ASYNC_PENDING || child->_queued)
        return false;
    child->_cb = NULL;
    child->_cb_arg = NULL;
    return async_op_revoke(child);
}

static bool async_status_failed(async_status st) { return st == ASYNC_FAILED || st == ASYNC_TIMEOUT; }

/* ---- sleep ---------------------------------------------------------------------------------- */

/* A timer due on the monotonic clock, to the microsecond. libevent counts from the time it cached when
 * the loop pass began, possibly on a coarse clock, so its timers can fire a little early by ours: an
 * early one is re-armed for the rest, so an operation never completes before the time it was asked to
 * wait has passed. (Counting in whole milliseconds from a truncated start was up to 1 ms early.) */
typedef struct async_timer {
    struct event ev;
    uint64_t due_us;
} async_timer;

static uint64_t async_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void async_timer_init(async_timer *t, async_op *op, event_callback_fn fn, void *arg)
{
    evtimer_assign(&t->ev, op->_scope->base, fn, arg);
    t->due_us = async_now_us();
}

static int async_timer_arm(async_timer *t, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return evtimer_add(&t->ev, &tv);
}

static int async_timer_start(async_timer *t, async_scope *scope, unsigned ms)
{
    t->due_us += (uint64_t)ms * 1000u;
    event_base_update_cache_time(event_get_base(&t->ev));
    const struct timeval *common = scope->timeouts ? async_timeouts_get(scope->timeouts, ms) : NULL;
    return common ? evtimer_add(&t->ev, common) : async_timer_arm(t, ms);
}

void async_timeouts_init(async_timeouts *t, struct event_base *base)
{
    memset(t, 0, sizeof(*t));
    t->base = base;
}

const struct timeval *async_timeouts_get(async_timeouts *t, unsigned ms)
{
    for (size_t i = 0; i < t->count; i++)
        if (t->ms[i] == ms)
            return t->tv[i];
    if (t->count == ASYNC_COMMON_TIMEOUTS)
        return NULL;
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    const struct timeval *common = event_base_init_common_timeout(t->base, &tv);
    if (!common)
        return NULL;
    t->ms[t->count] = ms;
    t->tv[t->count++] = common;
    return common;
}

void async_scope_use_timeouts(async_scope *scope, async_timeouts *t) { scope->timeouts = t; }

void async_scope_set_poster(async_scope *scope, async_post_fn post, void *target)
{
    scope->post = post;
    scope->post_target = target;
}

void async_scope_poster(const async_scope *scope, async_post_fn *post, void **target)
{
    *post = scope->post;
    *target = scope->post_target;
}

/* For the timer's callback: true when the deadline really passed, else it is re-armed. */
static bool async_timer_due(async_timer *t)
{
    uint64_t now = async_now_us();
    if (now >= t->due_us)
        return true;
    uint64_t left = t->due_us - now;
    struct timeval tv = {.tv_sec = (time_t)(left / 1000000u), .tv_usec = (suseconds_t)(left % 1000000u)};
    return evtimer_add(&t->ev, &tv) != 0; /* cannot re-arm: better early than never */
}

static void async_timer_stop(async_timer *t) { evtimer_del(&t->ev); }

typedef struct async_sleep_op {
    async_op op;
    async_timer timer;
} async_sleep_op;

static void async_sleep_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    async_sleep_op *s = arg;
    if (async_timer_due(&s->timer))
        async_op_complete(&s->op, ASYNC_OK, NULL, NULL);
}

static void async_sleep_cancel(async_op *op) { async_timer_stop(&((async_sleep_op *)op)->timer); }

static const async_op_vtable async_sleep_vt = {.name = "sleep", .cancel = async_sleep_cancel};

async_op *async_sleep(async_scope *scope, unsigned ms)
{
    async_sleep_op *s = (async_sleep_op *)async_op_new(scope, &async_sleep_vt, sizeof(*s));
    async_timer_init(&s->timer, &s->op, async_sleep_fire, s);
    if (async_timer_start(&s->timer, scope, ms) != 0)
        async_op_complete(&s->op, ASYNC_FAILED, NULL, "cannot start timer");
    return async_op_started(&s->op);
}

/* ---- future --------------------------------------------------------------------------------- */

typedef struct async_future_op {
    async_op op;
    async_cancel_fn on_cancel;
    void *on_cancel_arg;
} async_future_op;

static void async_future_cancel(async_op *op)
{
    async_future_op *f = (async_future_op *)op;
    async_cancel_fn fn = f->on_cancel;
    void *arg = f->on_cancel_arg;
    f->on_cancel = NULL;
    f->on_cancel_arg = NULL;
    if (fn)
        fn(op, arg);
}

static const async_op_vtable async_future_vt = {.name = "future", .cancel = async_future_cancel};

async_op *async_future(async_scope *scope)
{
    async_op *op = async_op_new(scope, &async_future_vt, sizeof(async_future_op));
    return async_op_started(op);
}

static bool async_is_future(const async_op *op) { return op && op->_vt == &async_future_vt; }

void async_future_on_cancel(async_op *future, async_cancel_fn fn, void *arg)
{
    if (!async_is_future(future)) {
        log_error("async: async_future_on_cancel on something that is not a future ignored");
        return;
    }
    if (future->status == ASYNC_CANCELLED) {
        /* Born cancelled (its scope is going away): the outside work just started must stop now. */
        if (fn)
            fn(future, arg);
        return;
    }
    if (future->status != ASYNC_PENDING)
        return;
    async_future_op *f = (async_future_op *)future;
    f->on_cancel = fn;
    f->on_cancel_arg = arg;
}

static bool async_future_settle(async_op *future, async_status status, void *value, const char *error)
{
    if (!async_is_future(future) || future->status != ASYNC_PENDING)
        return false;
    async_future_op *f = (async_future_op *)future;
    f->on_cancel = NULL;
    f->on_cancel_arg = NULL;
    async_op_complete(future, status, value, error);
    return true;
}

bool async_resolve(async_op *future, void *value)
{
    return async_future_settle(future, ASYNC_OK, value, NULL);
}

bool async_fail(async_op *future, const char *error)
{
    return async_future_settle(future, ASYNC_FAILED, NULL, error ? error : "failed");
}

/* ---- gather --------------------------------------------------------------------------------- */

typedef struct async_gather_op {
    async_op op;
    async_gather_mode mode;
    bool adopted;     /* false when the children were refused: then never touch them */
    size_t n;
    size_t remaining; /* children whose completion has not reached us */
    async_op **children;
} async_gather_op;

static void async_gather_cancel_children(async_gather_op *g)
{
    if (!g->adopted)
        return;
    for (size_t i = 0; i < g->n; i++)
        async_op_cancel_child(&g->op, g->children[i]);
}

static void async_gather_fail(async_gather_op *g, async_op *child)
{
    /* Complete first: the children cancelled below are detached and could not move us anyway. */
    async_op_complete(&g->op, child->status, child, child->error);
    async_gather_cancel_children(g);
}

static void async_gather_child_done(async_op *op, async_op *child, bool cancelled)
{
    async_gather_op *g = (async_gather_op *)op;
    if (op->status != ASYNC_PENDING)
        return;
    if (!cancelled && g->mode == ASYNC_GATHER_FAIL_FAST && async_status_failed(child->status)) {
        async_gather_fail(g, child);
        return;
    }
    if (--g->remaining == 0)
        async_op_complete(op, ASYNC_OK, NULL, NULL);
}

static void async_gather_cancel(async_op *op) { async_gather_cancel_children((async_gather_op *)op); }

static bool async_gather_revoke(async_op *op)
{
    async_gather_op *g = (async_gather_op *)op;
    if (g->adopted) {
        for (size_t i = 0; i < g->n; i++)
            async_op_revoke_child(op, g->children[i]);
    }
    return false; /* the gather's own result (which children finished how) still stands */
}

static const async_op_vtable async_gather_vt = {
    .name = "gather",
    .cancel = async_gather_cancel,
    .revoke = async_gather_revoke,
    .child_done = async_gather_child_done,
};

static const char *async_gather_check(const async_gather_op *g)
{
    for (size_t i = 0; i < g->n; i++) {
        const char *problem = async_child_problem(g->op._scope, g->children[i], &g->op);
        if (problem)
            return problem;
    }
    return NULL;
}

static void async_gather_adopt_all(async_gather_op *g)
{
    async_op *failed = NULL;
    g->adopted = true;
    for (size_t i = 0; i < g->n; i++) {
        async_op *c = g->children[i];
        if (async_op_observer(c) == &g->op)
            continue; /* listed twice */
        if (c->status == ASYNC_PENDING) {
            async_op_adopt(&g->op, c);
            g->remaining++;
            continue;
        }
        if (async_op_undelivered(c))
            async_op_adopt(&g->op, c);
        if (!failed && g->mode == ASYNC_GATHER_FAIL_FAST && async_status_failed(c->status))
            failed = c;
    }
    if (failed)
        async_gather_fail(g, failed);
    else if (g->remaining == 0)
        async_op_complete(&g->op, ASYNC_OK, NULL, NULL);
}

async_op *async_gather(async_scope *scope, async_op *const *ops, size_t n, async_gather_mode mode)
{
    async_gather_op *g = (async_gather_op *)async_op_new(scope, &async_gather_vt, sizeof(*g));
    g->mode = mode;
    const char *problem = NULL;
    if (n > SIZE_MAX / sizeof(*g->children)) {
        problem = "too many operations";
    } else if (n > 0) {
        g->n = n;
        g->children = arena_alloc(scope->arena, n * sizeof(*g->children));
        memcpy(g->children, ops, n * sizeof(*g->children));
        problem = async_gather_check(g);
    }
    if (problem)
        async_op_complete(&g->op, ASYNC_FAILED, NULL, problem);
    else
        async_gather_adopt_all(g);
    return async_op_started(&g->op);
}

async_op *async_gather_child(const async_op *gather, size_t i)
{
    if (!gather || gather->_vt != &async_gather_vt)
        return NULL;
    const async_gather_op *g = (const async_gather_op *)gather;
    return i < g->n ? g->children[i] : NULL;
}

/* ---- wait_for ------------------------------------------------------------------------------- */

typedef struct async_wait_op {
    async_op op;
    async_op *inner; /* NULL when it was refused */
    async_timer timer;
} async_wait_op;

static void async_wait_finish_like(async_wait_op *w, const async_op *inner)
{
    async_timer_stop(&w->timer);
    async_op_complete(&w->op, inner->status, inner->value, inner->error);
}

static void async_wait_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    async_wait_op *w = arg;
    async_op *inner = w->inner;
    if (w->op.status != ASYNC_PENDING || !async_timer_due(&w->timer))
        return;
    if (inner->status != ASYNC_PENDING && inner->_queued && async_op_observer(inner) == &w->op) {
        /* Finished in time, only its report is still queued: take it now, exactly one completion. */
        async_op_adopt(&w->op, inner);
        async_wait_finish_like(w, inner);
        return;
    }
    async_op_complete(&w->op, ASYNC_TIMEOUT, NULL, "timeout");
    async_op_cancel_child(&w->op, inner);
}

static void async_wait_child_done(async_op *op, async_op *child, bool cancelled)
{
    async_wait_op *w = (async_wait_op *)op;
    if (op->status != ASYNC_PENDING)
        return;
    if (cancelled)
        async_op_cancel(op);
    else
        async_wait_finish_like(w, child);
}

static void async_wait_cancel(async_op *op)
{
    async_wait_op *w = (async_wait_op *)op;
    async_timer_stop(&w->timer);
    if (w->inner)
        async_op_cancel_child(op, w->inner);
}

static bool async_wait_revoke(async_op *op)
{
    async_wait_op *w = (async_wait_op *)op;
    if (!w->inner || op->status == ASYNC_TIMEOUT)
        return false;
    return async_op_revoke_child(op, w->inner);
}

static const async_op_vtable async_wait_vt = {
    .name = "wait_for",
    .cancel = async_wait_cancel,
    .revoke = async_wait_revoke,
    .child_done = async_wait_child_done,
};

static void async_wait_start(async_wait_op *w, async_op *inner, unsigned ms)
{
    if (inner->status == ASYNC_PENDING) {
        async_op_adopt(&w->op, inner);
        if (async_timer_start(&w->timer, w->op._scope, ms) != 0) {
            async_op_complete(&w->op, ASYNC_FAILED, NULL, "cannot start timer");
            async_op_cancel_child(&w->op, inner);
        }
        return;
    }
    if (inner->status == ASYNC_CANCELLED) {
        async_op_cancel(&w->op); /* as if it had been cancelled a moment later */
        return;
    }
    if (async_op_undelivered(inner))
        async_op_adopt(&w->op, inner);
    async_op_complete(&w->op, inner->status, inner->value, inner->error);
}

async_op *async_wait_for(async_scope *scope, async_op *inner, unsigned ms)
{
    async_wait_op *w = (async_wait_op *)async_op_new(scope, &async_wait_vt, sizeof(*w));
    async_timer_init(&w->timer, &w->op, async_wait_fire, w);
    const char *problem = async_child_problem(scope, inner, &w->op);
    if (problem) {
        async_op_complete(&w->op, ASYNC_FAILED, NULL, problem);
    } else {
        w->inner = inner;
        async_wait_start(w, inner, ms);
    }
    return async_op_started(&w->op);
}

/* ---- wait lists (semaphore and queue) ------------------------------------------------------- */

typedef struct async_waiter {
    async_op op;
    struct async_waiter *wprev, *wnext;
    void *owner; /* the async_sem or async_queue */
    void *item;  /* queue put: what it puts */
    bool waiting;
} async_waiter;

static void async_waitlist_push(async_op **head, async_op **tail, async_waiter *w)
{
    async_waiter *last = (async_waiter *)*tail;
    w->wnext = NULL;
    w->wprev = last;
    if (last)
        last->wnext = w;
    else
        *head = &w->op;
    *tail = &w->op;
    w->waiting = true;
}

static void async_waitlist_remove(async_op **head, async_op **tail, async_waiter *w)
{
    if (!w->waiting)
        return;
    if (w->wprev)
        w->wprev->wnext = w->wnext;
    else
        *head = w->wnext ? &w->wnext->op : NULL;
    if (w->wnext)
        w->wnext->wprev = w->wprev;
    else
        *tail = w->wprev ? &w->wprev->op : NULL;
    w->wprev = w->wnext = NULL;
    w->waiting = false;
}

static async_waiter *async_waitlist_pop(async_op **head, async_op **tail)
{
    async_waiter *w = (async_waiter *)*head;
    if (w)
        async_waitlist_remove(head, tail, w);
    return w;
}

static size_t async_waitlist_len(const async_op *head)
{
    size_t n = 0;
    for (const async_waiter *w = (const async_waiter *)head; w; w = w->wnext)
        n++;
    return n;
}

static async_waiter *async_waiter_new(async_scope *scope, const async_op_vtable *vt, void *owner)
{
    async_waiter *w = (async_waiter *)async_op_new(scope, vt, sizeof(async_waiter));
    w->owner = owner;
    return w;
}

/* ---- semaphore ------------------------------------------------------------------------------ */

void async_sem_init(async_sem *sem, unsigned permits)
{
    sem->permits = permits;
    sem->_head = sem->_tail = NULL;
}

static void async_sem_acquire_cancel(async_op *op)
{
    async_sem *sem = ((async_waiter *)op)->owner;
    async_waitlist_remove(&sem->_head, &sem->_tail, (async_waiter *)op);
}

static bool async_sem_acquire_revoke(async_op *op)
{
    if (op->status != ASYNC_OK)
        return false;
    async_sem_release(((async_waiter *)op)->owner);
    return true;
}

static const async_op_vtable async_sem_acquire_vt = {
    .name = "semaphore acquire",
    .cancel = async_sem_acquire_cancel,
    .revoke = async_sem_acquire_revoke,
};

async_op *async_sem_acquire(async_scope *scope, async_sem *sem)
{
    async_waiter *w = async_waiter_new(scope, &async_sem_acquire_vt, sem);
    if (async_sem_try_acquire(sem))
        async_op_complete(&w->op, ASYNC_OK, NULL, NULL);
    else
        async_waitlist_push(&sem->_head, &sem->_tail, w);
    return async_op_started(&w->op);
}

bool async_sem_try_acquire(async_sem *sem)
{
    if (sem->permits == 0 || sem->_head)
        return false;
    sem->permits--;
    return true;
}

void async_sem_release(async_sem *sem)
{
    async_waiter *w = async_waitlist_pop(&sem->_head, &sem->_tail);
    if (w)
        async_op_complete(&w->op, ASYNC_OK, NULL, NULL);
    else
        sem->permits++;
}

size_t async_sem_waiting(const async_sem *sem) { return async_waitlist_len(sem->_head); }

/* ---- queue ---------------------------------------------------------------------------------- */

/* Invariants: getters wait only while the ring is empty, putters only while it is full. A capacity
 * of 0 (outside the contract) then behaves as a rendezvous instead of dividing by zero. */

void async_queue_init(async_queue *q, void **items, size_t capacity)
{
    q->items = items;
    q->capacity = capacity;
    q->head = q->count = 0;
    q->_getters_head = q->_getters_tail = NULL;
    q->_putters_head = q->_putters_tail = NULL;
}

static void async_queue_ring_push(async_queue *q, void *item)
{
    q->items[(q->head + q->count) % q->capacity] = item;
    q->count++;
}

/* Places item without waiting: straight to the first waiting getter, else into the ring. */
static bool async_queue_offer(async_queue *q, void *item)
{
    async_waiter *getter = async_waitlist_pop(&q->_getters_head, &q->_getters_tail);
    if (getter) {
        async_op_complete(&getter->op, ASYNC_OK, item, NULL);
        return true;
    }
    if (q->count >= q->capacity)
        return false;
    async_queue_ring_push(q, item);
    return true;
}

/* Takes the front item without waiting; a freed slot goes to the first waiting putter. */
static bool async_queue_take(async_queue *q, void **item)
{
    async_waiter *putter;
    if (q->count == 0) {
        putter = async_waitlist_pop(&q->_putters_head, &q->_putters_tail);
        if (!putter)
            return false;
        *item = putter->item; /* capacity 0: hand over directly */
    } else {
        *item = q->items[q->head];
        q->head = (q->head + 1) % q->capacity;
        q->count--;
        putter = async_waitlist_pop(&q->_putters_head, &q->_putters_tail);
        if (putter)
            async_queue_ring_push(q, putter->item);
    }
    if (putter)
        async_op_complete(&putter->op, ASYNC_OK, NULL, NULL);
    return true;
}

/* Gives an item back at the front: to the first waiting getter, else into the ring if there is room. */
static bool async_queue_unget(async_queue *q, void *item)
{
    async_waiter *getter = async_waitlist_pop(&q->_getters_head, &q->_getters_tail);
    if (getter) {
        async_op_complete(&getter->op, ASYNC_OK, item, NULL);
        return true;
    }
    if (q->count >= q->capacity)
        return false;
    q->head = (q->head + q->capacity - 1) % q->capacity;
    q->items[q->head] = item;
    q->count++;
    return true;
}

bool async_queue_try_put(async_queue *q, void *item) { return async_queue_offer(q, item); }

bool async_queue_try_get(async_queue *q, void **item) { return async_queue_take(q, item); }

size_t async_queue_size(const async_queue *q) { return q->count; }

static void async_queue_put_cancel(async_op *op)
{
    async_queue *q = ((async_waiter *)op)->owner;
    async_waitlist_remove(&q->_putters_head, &q->_putters_tail, (async_waiter *)op);
}

static void async_queue_get_cancel(async_op *op)
{
    async_queue *q = ((async_waiter *)op)->owner;
    async_waitlist_remove(&q->_getters_head, &q->_getters_tail, (async_waiter *)op);
}

static bool async_queue_get_revoke(async_op *op)
{
    if (op->status != ASYNC_OK)
        return false;
    if (async_queue_unget(((async_waiter *)op)->owner, op->value))
        return true;
    log_error("async: queue full: the item of a cancelled get cannot go back and stays in that get");
    return false;
}

static const async_op_vtable async_queue_put_vt = {.name = "queue put", .cancel = async_queue_put_cancel};

static const async_op_vtable async_queue_get_vt = {
    .name = "queue get",
    .cancel = async_queue_get_cancel,
    .revoke = async_queue_get_revoke,
};

async_op *async_queue_put(async_scope *scope, async_queue *q, void *item)
{
    async_waiter *w = async_waiter_new(scope, &async_queue_put_vt, q);
    w->item = item;
    if (async_queue_offer(q, item))
        async_op_complete(&w->op, ASYNC_OK, NULL, NULL);
    else
        async_waitlist_push(&q->_putters_head, &q->_putters_tail, w);
    return async_op_started(&w->op);
}

async_op *async_queue_get(async_scope *scope, async_queue *q)
{
    async_waiter *w = async_waiter_new(scope, &async_queue_get_vt, q);
    void *item;
    if (async_queue_take(q, &item))
        async_op_complete(&w->op, ASYNC_OK, item, NULL);
    else
        async_waitlist_push(&q->_getters_head, &q->_getters_tail, w);
    return async_op_started(&w->op);
}
