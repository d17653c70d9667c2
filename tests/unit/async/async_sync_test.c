/* async_sync_test: unit tests for the toolkit's event, condition and wait-first (lib/async/async_event.c,
 * lib/async/async_cond.c, lib/async/async_first.c): the normal path, a timeout around each, cancellation and the
 * scope ending, on a real libevent loop. Meant to run under ASan as well: teardown paths are only
 * proven safe when the sanitizer sees no use-after-free and no leak. */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <stdint.h>

#include "async.h"

#define LONG_MS 10000u  /* timers that must be cancelled: a loop ending long before proves they are */
#define SHORT_MS 20u

static struct event_base *base;
static async_scope *scope;

static int trace[64];
static int ntrace;

static void sync_test_setup(void)
{
    base = event_base_new();
    cr_assert_not_null(base);
    scope = async_scope_new(base);
    ntrace = 0;
}

static void sync_test_teardown(void)
{
    if (scope)
        async_scope_free(scope);
    cr_assert_eq(event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED), 0, "an event was left behind");
    event_base_free(base);
}

TestSuite(async_sync, .init = sync_test_setup, .fini = sync_test_teardown, .timeout = 30);

static void *tag(int t) { return (void *)(intptr_t)t; }

static void record(async_op *op, void *arg)
{
    (void)op;
    cr_assert_lt(ntrace, 64);
    trace[ntrace++] = (int)(intptr_t)arg;
}

static void must_not_run(async_op *op, void *arg)
{
    (void)op;
    cr_assert_fail("continuation %d of a cancelled operation ran", (int)(intptr_t)arg);
}

static void run(void) { event_base_dispatch(base); }

static void assert_trace(const int *want, int n)
{
    cr_assert_eq(ntrace, n, "%d continuations ran, want %d", ntrace, n);
    for (int i = 0; i < n; i++)
        cr_assert_eq(trace[i], want[i], "continuation #%d was %d, want %d", i, trace[i], want[i]);
}

/* ---- event ------------------------------------------------------------------------------------ */

static async_event ev;

static void set_event(async_op *op, void *arg)
{
    (void)op;
    (void)arg;
    async_event_set(&ev);
}

Test(async_sync, event_set_releases_every_waiter_and_stays_set)
{
    async_event_init(&ev);
    for (int i = 1; i <= 3; i++)
        async_op_then(async_event_wait(scope, &ev), record, tag(i));
    cr_assert_eq(async_event_waiting(&ev), 3);
    async_op_then(async_sleep(scope, 1), set_event, NULL);
    run();
    assert_trace((int[]){1, 2, 3}, 3);
    cr_assert(async_event_is_set(&ev));
    cr_assert_eq(async_event_waiting(&ev), 0);

    async_op *late = async_event_wait(scope, &ev); /* set: completes at once, from the loop */
    cr_assert_eq(late->status, ASYNC_OK);
    async_op_then(late, record, tag(4));
    cr_assert_eq(ntrace, 3, "never inside the call");
    run();
    assert_trace((int[]){1, 2, 3, 4}, 4);
}

Test(async_sync, event_clear_makes_new_waits_wait)
{
    async_event_init(&ev);
    async_event_set(&ev);
    async_event_clear(&ev);
    cr_assert_not(async_event_is_set(&ev));
    async_op *w = async_event_wait(scope, &ev);
    cr_assert_eq(w->status, ASYNC_PENDING);
    async_op_then(w, record, tag(1));
    async_op_then(async_sleep(scope, 1), set_event, NULL);
    run();
    assert_trace((int[]){1}, 1);
}

Test(async_sync, event_wait_times_out_and_leaves_the_line)
{
    async_event_init(&ev);
    async_op *w = async_wait_for(scope, async_event_wait(scope, &ev), SHORT_MS);
    async_op_then(w, record, tag(1));
    run();
    assert_trace((int[]){1}, 1);
    cr_assert_eq(w->status, ASYNC_TIMEOUT);
    cr_assert_eq(async_event_waiting(&ev), 0, "the timed-out waiter left the line");
    async_event_set(&ev); /* must not touch the gone waiter */
    run();
    assert_trace((int[]){1}, 1);
}

Test(async_sync, event_cancelled_waiter_never_runs_others_do)
{
    async_event_init(&ev);
    async_op *a = async_event_wait(scope, &ev);
    async_op *b = async_event_wait(scope, &ev);
    async_op_then(a, must_not_run, tag(1));
    async_op_then(b, record, tag(2));
    async_op_cancel(a);
    cr_assert_eq(async_event_waiting(&ev), 1);
    async_event_set(&ev);
    run();
    assert_trace((int[]){2}, 1);
}

Test(async_sync, event_waiters_of_an_ended_scope_leave_the_line)
{
    async_event_init(&ev);
    async_scope *other = async_scope_new(base);
    async_op_then(async_event_wait(other, &ev), must_not_run, tag(1));
    async_op_then(async_event_wait(scope, &ev), record, tag(2));
    async_scope_free(other);
    cr_assert_eq(async_event_waiting(&ev), 1);
    async_event_set(&ev);
    run();
    assert_trace((int[]){2}, 1);
}

/* ---- condition -------------------------------------------------------------------------------- */

static async_lock lock;
static async_cond cond;
static int shared_items; /* the state the condition guards */

typedef struct consumer {
    int id;
    bool held_lock_in_continuation;
} consumer;

static void consumer_wait(consumer *c);

static void consumer_woken(async_op *op, void *arg)
{
    consumer *c = arg;
    cr_assert_eq(op->status, ASYNC_OK);
    c->held_lock_in_continuation = async_lock_locked(&lock);
    if (shared_items == 0) { /* the predicate: woken, but another consumer took it first */
        consumer_wait(c);
        return;
    }
    shared_items--;
    cr_assert_lt(ntrace, 64);
    trace[ntrace++] = c->id;
    async_lock_release(&lock);
}

static void consumer_wait(consumer *c) { async_op_then(async_cond_wait(scope, &cond), consumer_woken, c); }

static void consumer_locked(async_op *op, void *arg)
{
    (void)op;
    consumer_wait(arg);
}

static void producer_locked(async_op *op, void *arg)
{
    (void)op;
    int n = (int)(intptr_t)arg;
    int before = ntrace;
    shared_items += n;
    if (n == 1)
        async_cond_notify(&cond, 1);
    else
        async_cond_notify_all(&cond);
    cr_assert_eq(ntrace, before, "notified waiters run only once the notifier released the lock");
    cr_assert_eq(async_sem_waiting(&lock), n == 1 ? 1 : async_sem_waiting(&lock), "notified: in the lock's line");
    async_lock_release(&lock);
}

static void produce_later(async_op *op, void *arg)
{
    (void)op;
    async_op_then(async_lock_acquire(scope, &lock), producer_locked, arg);
}

Test(async_sync, condition_wait_releases_the_lock_and_reacquires_before_the_continuation)
{
    static consumer c[3] = {{.id = 1}, {.id = 2}, {.id = 3}};
    async_lock_init(&lock);
    async_cond_init(&cond, &lock);
    shared_items = 0;
    for (int i = 0; i < 3; i++)
        async_op_then(async_lock_acquire(scope, &lock), consumer_locked, &c[i]);
    /* Each consumer takes the lock in turn and waits, which gives it to the next: all three wait. */
    async_op_then(async_sleep(scope, 1), produce_later, tag(1));
    run();
    assert_trace((int[]){1}, 1);
    cr_assert(c[0].held_lock_in_continuation, "the continuation runs holding the lock");
    cr_assert_eq(async_cond_waiting(&cond), 2, "notify(1) woke one");
    cr_assert_not(async_lock_locked(&lock));

    async_op_then(async_sleep(scope, 1), produce_later, tag(2));
    run();
    assert_trace((int[]){1, 2, 3}, 3);
    cr_assert(c[1].held_lock_in_continuation && c[2].held_lock_in_continuation);
    cr_assert_eq(async_cond_waiting(&cond), 0);
    cr_assert_not(async_lock_locked(&lock));
}

Test(async_sync, condition_notify_all_with_fewer_items_makes_the_rest_wait_again)
{
    static consumer c[3] = {{.id = 1}, {.id = 2}, {.id = 3}};
    async_lock_init(&lock);
    async_cond_init(&cond, &lock);
    shared_items = 0;
    for (int i = 0; i < 3; i++)
        async_op_then(async_lock_acquire(scope, &lock), consumer_locked, &c[i]);
    async_op_then(async_sleep(scope, 1), produce_later, tag(1)); /* one item, but notify(1) */
    run();
    cr_assert_eq(ntrace, 1);
    /* notify_all with no new item: all woken, all find nothing, all wait again */
    async_op_then(async_lock_acquire(scope, &lock), producer_locked, tag(0));
    run();
    cr_assert_eq(ntrace, 1);
    cr_assert_eq(async_cond_waiting(&cond), 2, "the woken ones re-checked the predicate and wait again");
    cr_assert_not(async_lock_locked(&lock));
    async_cond_notify_all(&cond); /* let them go: nothing there, they wait again */
    run();
    cr_assert_eq(async_cond_waiting(&cond), 2);
}

static void take_lock_and_wait_with_timeout(async_op *op, void *arg)
{
    (void)op;
    async_op *w = async_wait_for(scope, async_cond_wait(scope, &cond), SHORT_MS);
    cr_assert_not(async_lock_locked(&lock), "waiting released the lock");
    async_op_then(w, record, arg);
}

Test(async_sync, condition_wait_timeout_leaves_the_lock_free)
{
    async_lock_init(&lock);
    async_cond_init(&cond, &lock);
    async_op *w = async_lock_acquire(scope, &lock);
    async_op_then(w, take_lock_and_wait_with_timeout, tag(1));
    run();
    assert_trace((int[]){1}, 1);
    cr_assert_eq(async_cond_waiting(&cond), 0);
    cr_assert_not(async_lock_locked(&lock), "a timed-out waiter does not hold the lock");
    async_cond_notify_all(&cond);
    run();
}

Test(async_sync, condition_cancel_while_waiting_for_the_lock_or_granted_gives_it_back)
{
    async_lock_init(&lock);
    async_cond_init(&cond, &lock);
    /* Stage 1: cancelled while waiting for the notify. */
    cr_assert(async_sem_try_acquire(&lock));
    async_op *a = async_cond_wait(scope, &cond);
    async_op_then(a, must_not_run, tag(1));
    async_op_cancel(a);
    cr_assert_eq(async_cond_waiting(&cond), 0);
    cr_assert_not(async_lock_locked(&lock));

    /* Stage 2: notified while the notifier holds the lock, cancelled in the lock's line. */
    cr_assert(async_sem_try_acquire(&lock));
    async_op *b = async_cond_wait(scope, &cond);
    async_op_then(b, must_not_run, tag(2));
    cr_assert(async_sem_try_acquire(&lock)); /* the notifier */
    async_cond_notify(&cond, 1);
    cr_assert_eq(async_sem_waiting(&lock), 1);
    async_op_cancel(b);
    cr_assert_eq(async_sem_waiting(&lock), 0);
    async_lock_release(&lock);
    cr_assert_not(async_lock_locked(&lock));

    /* Stage 3: granted the lock, cancelled before its continuation ran: the lock comes back. */
    cr_assert(async_sem_try_acquire(&lock));
    async_op *c = async_cond_wait(scope, &cond);
    async_op_then(c, must_not_run, tag(3));
    async_cond_notify(&cond, 1);
    cr_assert_eq(c->status, ASYNC_OK, "the lock was free, so it was granted at once");
    cr_assert(async_lock_locked(&lock));
    async_op_cancel(c);
    cr_assert_not(async_lock_locked(&lock), "the cancelled holder gave it back");
    run();
}

Test(async_sync, condition_scope_end_gives_the_lock_back_at_every_stage)
{
    async_lock_init(&lock);
    async_cond_init(&cond, &lock);
    async_scope *other = async_scope_new(base);
    cr_assert(async_sem_try_acquire(&lock));
    async_op_then(async_cond_wait(other, &cond), must_not_run, tag(1)); /* waiting for notify */
    cr_assert(async_sem_try_acquire(&lock));
    async_op_then(async_cond_wait(other, &cond), must_not_run, tag(2));
    async_cond_notify(&cond, 1);                                         /* granted the lock */
    cr_assert(async_lock_locked(&lock));
    async_scope_free(other);
    cr_assert_eq(async_cond_waiting(&cond), 0);
    cr_assert_not(async_lock_locked(&lock));
    run();
}

/* ---- wait_first ------------------------------------------------------------------------------- */

Test(async_sync, wait_first_cancels_the_others)
{
    async_op *ops[3] = {async_sleep(scope, LONG_MS), async_sleep(scope, SHORT_MS), async_future(scope)};
    async_op *w = async_wait_first(scope, ops, 3, ASYNC_FIRST_CANCEL_OTHERS);
    async_op_then(w, record, tag(1));
    run(); /* ends long before LONG_MS: the other timer is gone */
    assert_trace((int[]){1}, 1);
    cr_assert_eq(w->status, ASYNC_OK);
    cr_assert_eq(w->value, ops[1]);
    cr_assert_eq(async_wait_first_index(w), 1);
    cr_assert_eq(ops[0]->status, ASYNC_CANCELLED);
    cr_assert_eq(ops[2]->status, ASYNC_CANCELLED);
    cr_assert_not(async_resolve(ops[2], NULL), "a cancelled future refuses a late result");
}

Test(async_sync, wait_first_reports_a_failure_as_the_first)
{
    async_op *ops[2] = {async_sleep(scope, LONG_MS), async_future(scope)};
    async_op *w = async_wait_first(scope, ops, 2, ASYNC_FIRST_CANCEL_OTHERS);
    async_fail(ops[1], "boom");
    run();
    cr_assert_eq(w->status, ASYNC_OK, "wait_first itself succeeded: something finished");
    cr_assert_eq(async_wait_first_index(w), 1);
    cr_assert_eq(((async_op *)w->value)->status, ASYNC_FAILED);
    cr_assert_str_eq(((async_op *)w->value)->error, "boom");
}

static async_op *left[3];
static size_t nleft;

/* asyncio.as_completed: wait_first over what is left, in a loop. */
static void next_completed(async_op *op, void *arg)
{
    (void)arg;
    if (op) {
        record(op, tag((int)async_wait_first_index(op)));
        long i = async_wait_first_index(op);
        for (size_t j = (size_t)i; j + 1 < nleft; j++)
            left[j] = left[j + 1];
        nleft--;
    }
    if (nleft)
        async_op_then(async_wait_first(scope, left, nleft, ASYNC_FIRST_LEAVE_OTHERS), next_completed, NULL);
}

Test(async_sync, wait_first_leaving_the_others_gives_as_completed)
{
    left[0] = async_sleep(scope, 30);
    left[1] = async_sleep(scope, 1);
    left[2] = async_sleep(scope, 15);
    nleft = 3;
    next_completed(NULL, NULL);
    run();
    /* indexes into what was left each time: 1 of (30,1,15), then 1 of (30,15), then 0 of (30) */
    assert_trace((int[]){1, 1, 0}, 3);
}

Test(async_sync, wait_first_left_others_are_the_callers_again)
{
    async_op *ops[2] = {async_future(scope), async_future(scope)};
    async_op *w = async_wait_first(scope, ops, 2, ASYNC_FIRST_LEAVE_OTHERS);
    async_resolve(ops[0], NULL);
    async_resolve(ops[1], NULL); /* completed too, its report was queued to wait_first */
    async_op_then(w, record, tag(1));
    run();
    assert_trace((int[]){1}, 1);
    cr_assert_eq(async_wait_first_index(w), 0);
    async_op_then(ops[1], record, tag(2)); /* handed back, unclaimed: a continuation may be attached */
    run();
    assert_trace((int[]){1, 2}, 2);
}

Test(async_sync, wait_first_takes_an_already_completed_child_at_once)
{
    async_op *done = async_future(scope);
    async_resolve(done, NULL);
    async_op *ops[2] = {async_sleep(scope, LONG_MS), done};
    async_op *w = async_wait_first(scope, ops, 2, ASYNC_FIRST_CANCEL_OTHERS);
    cr_assert_eq(w->status, ASYNC_OK);
    cr_assert_eq(async_wait_first_index(w), 1);
    cr_assert_eq(ops[0]->status, ASYNC_CANCELLED);
    run();
}

Test(async_sync, wait_first_refuses_nothing_and_bad_children)
{
    async_op *w = async_wait_first(scope, NULL, 0, ASYNC_FIRST_CANCEL_OTHERS);
    cr_assert_eq(w->status, ASYNC_FAILED);
    cr_assert_str_eq(w->error, "no operations");
    async_op *ops[1] = {NULL};
    w = async_wait_first(scope, ops, 1, ASYNC_FIRST_CANCEL_OTHERS);
    cr_assert_eq(w->status, ASYNC_FAILED);
    cr_assert_eq(async_wait_first_index(w), -1);
    run();
}

Test(async_sync, wait_first_when_every_child_is_cancelled_fails)
{
    async_op *ops[2] = {async_sleep(scope, LONG_MS), async_sleep(scope, LONG_MS)};
    async_op *w = async_wait_first(scope, ops, 2, ASYNC_FIRST_LEAVE_OTHERS);
    async_op_cancel(ops[0]);
    cr_assert_eq(w->status, ASYNC_PENDING, "one dropped out, one is left");
    async_op_cancel(ops[1]);
    cr_assert_eq(w->status, ASYNC_FAILED);
    cr_assert_str_eq(w->error, "all cancelled");
    run();
}

Test(async_sync, wait_first_timeout_cancels_every_child)
{
    async_op *ops[2] = {async_sleep(scope, LONG_MS), async_future(scope)};
    async_op *w = async_wait_for(scope, async_wait_first(scope, ops, 2, ASYNC_FIRST_LEAVE_OTHERS), SHORT_MS);
    async_op_then(w, record, tag(1));
    run(); /* ends long before LONG_MS */
    assert_trace((int[]){1}, 1);
    cr_assert_eq(w->status, ASYNC_TIMEOUT);
    cr_assert_eq(ops[0]->status, ASYNC_CANCELLED);
    cr_assert_eq(ops[1]->status, ASYNC_CANCELLED);
}

Test(async_sync, wait_first_cancel_and_scope_end)
{
    async_op *ops[2] = {async_sleep(scope, LONG_MS), async_future(scope)};
    async_op *w = async_wait_first(scope, ops, 2, ASYNC_FIRST_CANCEL_OTHERS);
    async_op_then(w, must_not_run, tag(1));
    async_op_cancel(w);
    cr_assert_eq(ops[0]->status, ASYNC_CANCELLED);
    cr_assert_eq(ops[1]->status, ASYNC_CANCELLED);

    async_scope *other = async_scope_new(base);
    async_op *more[2] = {async_sleep(other, LONG_MS), async_future(other)};
    async_op_then(async_wait_first(other, more, 2, ASYNC_FIRST_LEAVE_OTHERS), must_not_run, tag(2));
    async_scope_free(other); /* cancels the wait and its children, the timer included */
    run();
}

/* A permit granted to a child of a cancelled wait_first goes back (the child is revoked). */
Test(async_sync, wait_first_revoked_winner_returns_its_permit)
{
    static async_sem sem;
    async_sem_init(&sem, 1);
    async_op *ops[2] = {async_sem_acquire(scope, &sem), async_sleep(scope, LONG_MS)};
    async_op *w = async_wait_first(scope, ops, 2, ASYNC_FIRST_CANCEL_OTHERS);
    cr_assert_eq(w->status, ASYNC_OK);
    cr_assert_eq(sem.permits, 0);
    async_op_cancel(w); /* completed, continuation not run yet */
    cr_assert_eq(sem.permits, 1, "the winner's permit came back");
    run();
}

Test(async_sync, wait_first_with_several_already_completed_children)
{
    /* Leave: the ones that lost are the caller's again, continuations can be attached. */
    async_op *a = async_future(scope), *b = async_future(scope);
    async_resolve(a, NULL);
    async_resolve(b, NULL);
    async_op *ops[2] = {a, b};
    async_op *w = async_wait_first(scope, ops, 2, ASYNC_FIRST_LEAVE_OTHERS);
    cr_assert_eq(async_wait_first_index(w), 0);
    async_op_then(b, record, tag(2));
    run();
    assert_trace((int[]){2}, 1);

    /* Cancel: one that had completed too is undone, so a permit it was granted comes back. */
    static async_sem sem;
    async_sem_init(&sem, 2);
    async_op *acq[2] = {async_sem_acquire(scope, &sem), async_sem_acquire(scope, &sem)};
    cr_assert_eq(sem.permits, 0);
    async_op *w2 = async_wait_first(scope, acq, 2, ASYNC_FIRST_CANCEL_OTHERS);
    cr_assert_eq(async_wait_first_index(w2), 0);
    cr_assert_eq(sem.permits, 1, "the loser's permit came back; the winner keeps its own");
    cr_assert_eq(acq[1]->status, ASYNC_CANCELLED);
    run();
}
