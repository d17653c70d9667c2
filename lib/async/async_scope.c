/* async_scope: scopes, the owners of operations: their memory, the ready queue and the runner that
 * calls continuations from the loop (never from inside the call that completed an operation), the
 * cleanups that run when a scope ends (async_scope_defer), the slow-continuation watch, and how other
 * threads reach the scope's loop (the poster). */
#include "async_op_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "xalloc_internal.h"

/* ---- lists ---------------------------------------------------------------------------------- */

void async__list_push(async_list *l, async_op *op)
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

void async__list_remove(async_list *l, async_op *op)
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

void async__scope_enqueue(async_scope *s, async_op *op)
{
    op->_queued = true;
    async__list_push(&s->ready, op);
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

static _Thread_local const void *async_context_now;

const void *async_context_current(void) { return async_context_now; }

const void *async_context_swap(const void *context)
{
    const void *prev = async_context_now;
    async_context_now = context;
    return prev;
}

void async_scope_set_context(async_scope *scope, const void *context) { scope->context = context; }

const void *async_scope_context(const async_scope *scope) { return scope->context; }

static void async_scope_run(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    async_scope *s = arg;
    size_t budget = s->ready.len;
    s->running = true;
    async_runners_active++;
    const void *outer_context = async_context_swap(s->context);
    while (budget-- > 0 && s->ready.head) {
        async_op *op = s->ready.head;
        async__list_remove(&s->ready, op);
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
    async_context_swap(outer_context);
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
    /* Cleanups are the scope's code too (a coroutine unwinding after its request ended reads its
     * settings as before). */
    const void *outer_context = async_context_swap(scope->context);
    async_scope_run_defers(scope);
    async_context_swap(outer_context);
    async__scope_unpoison_recycled(scope);
    event_del(&scope->run_ev);
    if (scope->running)
        scope->dead = true;
    else
        async_scope_destroy(scope);
}

void async__scope_defer_node(async_scope *scope, async_defer *d, void (*fn)(void *arg), void *arg)
{
    d->fn = fn;
    d->arg = arg;
    d->scope = scope;
    d->prev = NULL;
    d->next = scope->defers;
    if (scope->defers)
        scope->defers->prev = d;
    scope->defers = d;
}

async_defer *async_scope_defer(async_scope *scope, void (*fn)(void *arg), void *arg)
{
    async_defer *d = arena_alloc(scope->arena, sizeof(*d));
    async__scope_defer_node(scope, d, fn, arg);
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

bool async_scope_closing(const async_scope *scope) { return scope->closing; }

bool async_scope_quiet(const async_scope *scope) { return !scope->pending.head && !scope->ready.head; }

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
