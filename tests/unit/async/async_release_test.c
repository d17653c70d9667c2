/* async_release_test: async_op_release, the recycling of finished operations in long-lived scopes
 * (issue 24: an event stream awaiting a sleep per event kept every one until the stream ended). The
 * scopes here keep their operations in an arena the test owns, so "bounded" is checked exactly: the
 * arena does not move after warm-up, however many operations are awaited. Meant to run under ASan too
 * (a released block is poisoned until reused). */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <stdint.h>
#include <string.h>

#include "arena.h"
#include "async.h"
#include "async_internal.h"

static struct event_base *base;
static arena mem;
static async_scope *scope;

static void release_setup(void)
{
    base = event_base_new();
    cr_assert_not_null(base);
    arena_init(&mem);
    scope = async_scope_new_in_arena(base, &mem);
}

static void release_teardown(void)
{
    if (scope)
        async_scope_free(scope);
    arena_reset(&mem);
    event_base_free(base);
}

TestSuite(async_release, .init = release_setup, .fini = release_teardown, .timeout = 120);

/* Where the arena stands: its newest heap block and the next free byte. */
typedef struct arena_mark {
    const void *extra;
    const char *cur;
} arena_mark;

static arena_mark mark(void) { return (arena_mark){mem.extra, mem.cur}; }

#define SLEEPS 100000

typedef struct sleeper {
    long done;
    long not_ok;
    bool release;
    arena_mark warm; /* after the first few */
    bool warm_set;
} sleeper;

static void sleeper_coro(void *arg)
{
    sleeper *sl = arg;
    for (long i = 0; i < SLEEPS; i++) {
        async_op *op = async_await(async_sleep(scope, 0));
        if (op->status != ASYNC_OK) {
            sl->not_ok++;
            return;
        }
        sl->done++;
        if (sl->release)
            async_op_release(op);
        if (i == 10) {
            sl->warm = mark();
            sl->warm_set = true;
        }
    }
}

Test(async_release, awaited_sleeps_released_keep_the_arena_still)
{
    sleeper sl = {.release = true};
    cr_assert(async_coro_spawn(scope, sleeper_coro, &sl));
    event_base_dispatch(base);
    cr_assert_eq(sl.done, SLEEPS);
    cr_assert_eq(sl.not_ok, 0);
    cr_assert(sl.warm_set);
    arena_mark end = mark();
    /* Exactly where it was after ten: every later sleep reused a released block. */
    cr_assert_eq(end.extra, sl.warm.extra, "the arena grew a heap block");
    cr_assert_eq(end.cur, sl.warm.cur, "the arena grew by %td bytes", end.cur - sl.warm.cur);
}

/* The control: without release the same loop keeps every sleep (what a long stream did before). */
Test(async_release, without_release_every_sleep_stays)
{
    sleeper sl = {.release = false};
    cr_assert(async_coro_spawn(scope, sleeper_coro, &sl));
    event_base_dispatch(base);
    cr_assert_eq(sl.done, SLEEPS);
    /* 100,000 sleeps of about 200 bytes: far past the first blocks. */
    cr_assert_neq(mem.extra, sl.warm.extra);
}

/* The callback form: a continuation that releases its own operation and starts the next. */
typedef struct chain {
    long left;
    long done;
    arena_mark warm;
} chain;

static void chain_next(async_op *op, void *arg)
{
    chain *c = arg;
    cr_assert_eq(op->status, ASYNC_OK);
    c->done++;
    async_op_release(op);
    if (c->done == 10)
        c->warm = mark();
    if (--c->left > 0)
        async_op_then(async_sleep(scope, 0), chain_next, c);
}

Test(async_release, continuation_releasing_its_own_operation)
{
    chain c = {.left = SLEEPS};
    async_op_then(async_sleep(scope, 0), chain_next, &c);
    event_base_dispatch(base);
    cr_assert_eq(c.done, SLEEPS);
    cr_assert_eq(mark().cur, c.warm.cur);
    cr_assert_eq(mark().extra, c.warm.extra);
}

/* wait_for over a future, resolved in time or timing out, released each round: both blocks recycled. */
static void wait_for_coro(void *arg)
{
    long *rounds = arg;
    arena_mark warm = {0};
    for (long i = 0; i < 2000; i++) {
        async_op *fut = async_future(scope);
        if (i % 2)
            async_resolve(fut, (void *)(intptr_t)i);
        async_op *w = async_await(async_wait_for(scope, fut, i % 2 ? 1000 : 0));
        cr_assert_eq(w->status, i % 2 ? ASYNC_OK : ASYNC_TIMEOUT);
        if (i % 2)
            cr_assert_eq((intptr_t)w->value, i);
        async_op_release(w); /* and fut with it */
        if (i == 10)
            warm = mark();
        (*rounds)++;
    }
    cr_assert_eq(mark().cur, warm.cur);
    cr_assert_eq(mark().extra, warm.extra);
}

Test(async_release, wait_for_releases_its_inner_operation)
{
    long rounds = 0;
    cr_assert(async_coro_spawn(scope, wait_for_coro, &rounds));
    event_base_dispatch(base);
    cr_assert_eq(rounds, 2000);
}

Test(async_release, refusals_leave_the_operation_alone)
{
    async_op *pending = async_sleep(scope, 60000);
    async_op_release(pending); /* pending: refused */
    cr_assert_eq(pending->status, ASYNC_PENDING);

    async_op *child = async_future(scope);
    async_op *w = async_wait_for(scope, child, 60000);
    async_resolve(child, NULL);
    async_op_release(child); /* a child of wait_for: refused */
    cr_assert_eq(child->status, ASYNC_OK);
    cr_assert_eq(w->status, ASYNC_PENDING); /* its report is queued to the wait_for */

    async_op_release(NULL);
    async_op_cancel(pending);
    async_op_release(pending); /* cancelled: fine now */
    async_op_release(pending); /* twice: logged and ignored */
}

/* A completed operation nobody took is cancelled on release, which undoes what it holds: a granted
 * permit goes back to the semaphore. */
Test(async_release, unclaimed_acquire_gives_its_permit_back)
{
    async_sem sem;
    async_sem_init(&sem, 1);
    async_op *acq = async_sem_acquire(scope, &sem);
    cr_assert_eq(acq->status, ASYNC_OK);
    cr_assert_eq(sem.permits, 0);
    async_op_release(acq);
    cr_assert_eq(sem.permits, 1);
}

/* A released block is reused by the next operation of a size that fits. */
Test(async_release, the_next_operation_reuses_the_block)
{
    async_op *a = async_future(scope);
    async_resolve(a, NULL);
    async_op_cancel(a); /* completed and unclaimed: cancel keeps it OK, it is ours now */
    async_op_release(a);
    async_op *b = async_future(scope);
    cr_assert_eq(a, b);
    cr_assert_eq(b->status, ASYNC_PENDING);
    cr_assert_null(b->value);
}
