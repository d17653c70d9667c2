/* async_test: unit tests for lib/async/ (continuations, sleep, futures, gather, wait_for, semaphores,
 * locks, queues, cancellation and scope teardown) on a real libevent loop, meant to run under ASan:
 * teardown paths are only proven safe when the sanitizer sees no use-after-free and no leak. */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "async.h"
#include "async_internal.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASYNC_TEST_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASYNC_TEST_HAVE_LSAN 1
#endif
#endif
#ifdef ASYNC_TEST_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Cancelled timers in these tests are 10 s long: a loop that returns well before that proves they
 * are gone, without asserting any tight duration on a noisy machine. */
#define LONG_MS 10000u
#define PROMPT_MS 3000u

static struct event_base *base;
static async_scope *scope;

/* Continuations record their tag, so tests can assert which ran, how often and in what order. */
static int trace[256];
static int ntrace;
static bool after_call; /* set right after a constructor/then call: continuations must see it true */
static int sync_violations;

static void async_test_setup(void)
{
    base = event_base_new();
    cr_assert_not_null(base);
    scope = async_scope_new(base);
}

static void async_test_teardown(void)
{
    if (scope)
        async_scope_free(scope);
    event_base_free(base);
}

TestSuite(async, .init = async_test_setup, .fini = async_test_teardown, .timeout = 30);

static void *async_test_tag(int t) { return (void *)(intptr_t)t; }

static void async_test_record(async_op *op, void *arg)
{
    (void)op;
    if (!after_call)
        sync_violations++;
    cr_assert_lt(ntrace, 256);
    trace[ntrace++] = (int)(intptr_t)arg;
}

static void async_test_must_not_run(async_op *op, void *arg)
{
    (void)op;
    cr_assert_fail("continuation %d of a cancelled operation ran", (int)(intptr_t)arg);
}

/* Runs the loop until nothing is left and returns how long that took. */
static uint64_t async_test_run(void)
{
    after_call = true;
    uint64_t t0 = async_now_ms();
    cr_assert_eq(event_base_dispatch(base), 1, "the loop should end because no events are left");
    return async_now_ms() - t0;
}

static void async_test_assert_trace(const int *want, int n)
{
    cr_assert_eq(ntrace, n, "%d continuations ran, want %d", ntrace, n);
    for (int i = 0; i < n; i++)
        cr_assert_eq(trace[i], want[i], "continuation #%d was %d, want %d", i, trace[i], want[i]);
}

static int async_test_events_left(void) { return event_base_get_num_events(base, EVENT_BASE_COUNT_ADDED); }

/* ---- continuations ---------------------------------------------------------------------------- */

Test(async, continuation_never_runs_inside_the_call)
{
    static async_sem sem;
    static async_queue q;
    static void *items[2];
    int v = 1;
    async_sem_init(&sem, 1);
    async_queue_init(&q, items, 2);
    cr_assert(async_queue_try_put(&q, &v));

    after_call = false;
    async_op *f = async_future(scope);
    cr_assert(async_resolve(f, &v));
    async_op_then(f, async_test_record, async_test_tag(1)); /* already completed */
    async_op *g = async_future(scope);
    async_op_then(g, async_test_record, async_test_tag(2));
    cr_assert(async_resolve(g, &v)); /* completion with a continuation attached */
    async_op_then(async_sem_acquire(scope, &sem), async_test_record, async_test_tag(3));
    async_op_then(async_queue_get(scope, &q), async_test_record, async_test_tag(4));
    async_op_then(async_gather(scope, NULL, 0, ASYNC_GATHER_ALL), async_test_record, async_test_tag(5));
    async_op_then(async_sleep(scope, 0), async_test_record, async_test_tag(6));
    cr_assert_eq(ntrace, 0, "a continuation ran inside the call");

    async_test_run();
    cr_assert_eq(sync_violations, 0);
    async_test_assert_trace((int[]){1, 2, 3, 4, 5, 6}, 6);
}

Test(async, then_after_completion_runs_once_from_the_loop)
{
    int v = 42;
    async_op *f = async_future(scope);
    cr_assert(async_resolve(f, &v));
    cr_assert_eq(f->status, ASYNC_OK);
    cr_assert_eq(f->value, &v);
    async_test_run();
    cr_assert_eq(ntrace, 0, "nothing attached, nothing runs");
    async_op_then(f, async_test_record, async_test_tag(7));
    async_test_run();
    async_test_assert_trace((int[]){7}, 1);
}

Test(async, second_then_is_ignored)
{
    async_op *f = async_future(scope);
    async_op_then(f, async_test_record, async_test_tag(1));
    async_op_then(f, async_test_record, async_test_tag(2));
    async_resolve(f, NULL);
    async_test_run();
    async_test_assert_trace((int[]){1}, 1);
}

static void async_test_cancel_arg(async_op *op, void *arg)
{
    async_test_record(op, async_test_tag(10));
    async_op_cancel(arg);
}

Test(async, continuation_can_cancel_a_queued_op)
{
    int v = 3;
    async_op *a = async_future(scope);
    async_op *b = async_future(scope);
    async_op_then(a, async_test_cancel_arg, b);
    async_op_then(b, async_test_must_not_run, async_test_tag(11));
    async_resolve(a, NULL);
    async_resolve(b, &v);
    async_test_run();
    async_test_assert_trace((int[]){10}, 1);
    cr_assert_eq(b->status, ASYNC_OK, "a completed op keeps its status when cancelled");
    cr_assert_eq(b->value, &v);
}

Test(async, cancel_is_idempotent_and_then_after_cancel_never_runs)
{
    async_op *s = async_sleep(scope, LONG_MS);
    async_op_cancel(s);
    async_op_cancel(s);
    cr_assert_eq(s->status, ASYNC_CANCELLED);
    async_op_then(s, async_test_must_not_run, async_test_tag(1));
    cr_assert_lt(async_test_run(), PROMPT_MS);
    cr_assert_eq(async_test_events_left(), 0);

    int v = 1;
    async_op *f = async_future(scope);
    async_resolve(f, &v);
    async_op_cancel(f); /* completed, nothing attached yet */
    async_op_then(f, async_test_must_not_run, async_test_tag(2));
    async_test_run();
    cr_assert_eq(f->status, ASYNC_OK);
}

static int chain_steps;
static bool chain_timer_fired;

static void async_test_chain(async_op *op, void *arg)
{
    (void)op;
    (void)arg;
    if (chain_timer_fired)
        return;
    chain_steps++;
    async_op *f = async_future(scope);
    async_resolve(f, NULL);
    async_op_then(f, async_test_chain, NULL);
}

static void async_test_chain_stop(async_op *op, void *arg)
{
    (void)op;
    (void)arg;
    chain_timer_fired = true;
}

Test(async, endless_instant_chain_does_not_starve_timers)
{
    async_test_chain(NULL, NULL);
    async_op_then(async_sleep(scope, 1), async_test_chain_stop, NULL);
    async_test_run();
    cr_assert(chain_timer_fired);
    cr_assert_gt(chain_steps, 1);
}

static void async_test_chain_sleep(async_op *op, void *arg)
{
    int left = (int)(intptr_t)arg;
    async_test_record(op, arg);
    if (left > 0)
        async_op_then(async_sleep(scope, 1), async_test_chain_sleep, async_test_tag(left - 1));
}

Test(async, continuations_start_new_ops)
{
    async_op_then(async_sleep(scope, 1), async_test_chain_sleep, async_test_tag(3));
    async_test_run();
    async_test_assert_trace((int[]){3, 2, 1, 0}, 4);
}

/* ---- sleep and time -------------------------------------------------------------------------- */

Test(async, sleeps_complete_in_order_of_duration)
{
    unsigned ms[] = {60, 20, 40, 0};
    async_op *ops[4];
    for (int i = 0; i < 4; i++) {
        ops[i] = async_sleep(scope, ms[i]);
        async_op_then(ops[i], async_test_record, async_test_tag(i));
    }
    cr_assert_lt(async_test_run(), PROMPT_MS);
    async_test_assert_trace((int[]){3, 1, 2, 0}, 4);
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(ops[i]->status, ASYNC_OK);
        cr_assert_null(ops[i]->value);
        cr_assert_geq(ops[i]->finished_ms, ops[i]->started_ms);
    }
    /* Never early by async_now_ms, even when libevent's cached or coarse clock would fire it early. */
    for (int i = 0; i < 4; i++)
        cr_assert_geq(async_op_elapsed_ms(ops[i]), ms[i], "a %u ms sleep ended after %llu ms", ms[i],
                      (unsigned long long)async_op_elapsed_ms(ops[i]));
    cr_assert_lt(async_op_elapsed_ms(ops[0]), PROMPT_MS);
}

static async_op *stale_sleep;

static void async_test_slow_then_sleep(async_op *op, void *arg)
{
    (void)arg;
    async_test_record(op, async_test_tag(1));
    usleep(40000); /* whatever time libevent cached for this loop pass is now 40 ms old */
    stale_sleep = async_sleep(scope, 60);
    async_op_then(stale_sleep, async_test_record, async_test_tag(2));
}

Test(async, sleep_started_late_in_a_loop_pass_is_not_early)
{
    async_op_then(async_sleep(scope, 1), async_test_slow_then_sleep, NULL);
    async_test_run();
    async_test_assert_trace((int[]){1, 2}, 2);
    cr_assert_geq(async_op_elapsed_ms(stale_sleep), 60, "the sleep ended after %llu ms",
                  (unsigned long long)async_op_elapsed_ms(stale_sleep));
}

static void async_test_spin_us(unsigned us)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    do
        clock_gettime(CLOCK_MONOTONIC, &t);
    while ((t.tv_sec - t0.tv_sec) * 1000000 + (t.tv_nsec - t0.tv_nsec) / 1000 < (long)us);
}

/* libevent's default clock is CLOCK_MONOTONIC_COARSE (often 4 ms ticks), and each wake-up of the loop
 * re-measures the remaining time on it: a timer can fire early by CLOCK_MONOTONIC. Many timers (many
 * wake-ups) started at several phases of a tick catch that. */
Test(async, sleeps_are_never_early)
{
    int early = 0;
    for (unsigned round = 0; round < 4; round++) {
        async_op *ops[25];
        async_test_spin_us(round * 1300);
        for (unsigned i = 0; i < 25; i++)
            ops[i] = async_sleep(scope, i + 1);
        async_test_run();
        for (unsigned i = 0; i < 25; i++) {
            cr_assert_eq(ops[i]->status, ASYNC_OK);
            if (async_op_elapsed_ms(ops[i]) < i + 1)
                early++;
        }
    }
    cr_assert_eq(early, 0, "%d of 100 sleeps ended early", early);
}

Test(async, elapsed_grows_while_pending_and_freezes_when_done)
{
    uint64_t t0 = async_now_ms();
    async_op *f = async_future(scope);
    cr_assert_geq(f->started_ms, t0);
    usleep(20000);
    uint64_t pending = async_op_elapsed_ms(f);
    cr_assert_geq(pending, 10);
    async_resolve(f, NULL);
    uint64_t done = async_op_elapsed_ms(f);
    usleep(20000);
    cr_assert_eq(async_op_elapsed_ms(f), done);
    cr_assert_geq(async_now_ms(), f->finished_ms);
}

/* ---- futures --------------------------------------------------------------------------------- */

static int hook_calls;

static void async_test_hook(async_op *op, void *arg)
{
    (void)arg;
    cr_assert_eq(op->status, ASYNC_CANCELLED);
    hook_calls++;
}

Test(async, future_resolves_once)
{
    int v = 5, w = 6;
    async_op *f = async_future(scope);
    async_op_then(f, async_test_record, async_test_tag(1));
    cr_assert_eq(f->status, ASYNC_PENDING);
    cr_assert(async_resolve(f, &v));
    cr_assert_not(async_resolve(f, &w));
    cr_assert_not(async_fail(f, "late"));
    async_test_run();
    async_test_assert_trace((int[]){1}, 1);
    cr_assert_eq(f->status, ASYNC_OK);
    cr_assert_eq(f->value, &v);
    cr_assert_null(f->error);
}

Test(async, future_fails_once_with_reason)
{
    async_op *f = async_future(scope);
    async_op_then(f, async_test_record, async_test_tag(1));
    cr_assert(async_fail(f, "upstream down"));
    cr_assert_not(async_resolve(f, NULL));
    async_test_run();
    async_test_assert_trace((int[]){1}, 1);
    cr_assert_eq(f->status, ASYNC_FAILED);
    cr_assert_str_eq(f->error, "upstream down");
}

Test(async, future_cancel_runs_hook_once_and_blocks_late_results)
{
    async_op *f = async_future(scope);
    async_future_on_cancel(f, async_test_hook, NULL);
    async_op_then(f, async_test_must_not_run, async_test_tag(1));
    async_op_cancel(f);
    async_op_cancel(f);
    cr_assert_eq(hook_calls, 1);
    cr_assert_eq(f->status, ASYNC_CANCELLED);
    cr_assert_not(async_resolve(f, NULL), "a late result must be refused");
    cr_assert_not(async_fail(f, "late"));
    async_test_run();
    cr_assert_eq(f->status, ASYNC_CANCELLED);
}

Test(async, future_hook_never_runs_after_resolve)
{
    async_op *f = async_future(scope);
    async_future_on_cancel(f, async_test_hook, NULL);
    async_resolve(f, NULL);
    async_op_cancel(f);
    cr_assert_eq(hook_calls, 0);
    cr_assert_eq(f->status, ASYNC_OK);
}

Test(async, resolve_refuses_other_operations)
{
    async_op *s = async_sleep(scope, 1);
    cr_assert_not(async_resolve(s, NULL));
    cr_assert_not(async_fail(s, "x"));
    async_test_run();
    cr_assert_eq(s->status, ASYNC_OK);
}

/* ---- gather ---------------------------------------------------------------------------------- */

static int gather_value = 77;

static void async_test_resolve_arg(async_op *op, void *arg)
{
    (void)op;
    cr_assert(async_resolve(arg, &gather_value));
}

static void async_test_fail_arg(async_op *op, void *arg)
{
    (void)op;
    cr_assert(async_fail(arg, "bad"));
}

Test(async, gather_all_collects_mixed_results_in_order)
{
    async_op *ok_sleep = async_sleep(scope, 10);
    async_op *failed = async_future(scope);
    async_fail(failed, "boom");
    async_op *resolved = async_future(scope);
    async_op_then(async_sleep(scope, 5), async_test_resolve_arg, resolved);
    async_op *timed_out = async_wait_for(scope, async_future(scope), 5);
    async_op *cancelled = async_future(scope);
    async_op *kids[] = {ok_sleep, failed, resolved, timed_out, cancelled};

    async_op *g = async_gather(scope, kids, 5, ASYNC_GATHER_ALL);
    memset(kids, 0, sizeof(kids)); /* the array was copied */
    async_op_cancel(cancelled);
    async_op_then(g, async_test_record, async_test_tag(1));
    cr_assert_lt(async_test_run(), PROMPT_MS);

    async_test_assert_trace((int[]){1}, 1);
    cr_assert_eq(g->status, ASYNC_OK);
    cr_assert_null(g->value);
    async_status want[] = {ASYNC_OK, ASYNC_FAILED, ASYNC_OK, ASYNC_TIMEOUT, ASYNC_CANCELLED};
    for (size_t i = 0; i < 5; i++)
        cr_assert_eq(async_gather_child(g, i)->status, want[i], "child %zu", i);
    cr_assert_eq(async_gather_child(g, 0), ok_sleep);
    cr_assert_str_eq(async_gather_child(g, 1)->error, "boom");
    cr_assert_eq(async_gather_child(g, 2)->value, &gather_value);
    cr_assert_str_eq(async_gather_child(g, 3)->error, "timeout");
    cr_assert_null(async_gather_child(g, 5));
}

Test(async, gather_fail_fast_cancels_the_rest)
{
    async_op *a = async_sleep(scope, LONG_MS);
    async_op_then(a, async_test_must_not_run, async_test_tag(1)); /* gather takes over: never runs */
    async_op *f = async_future(scope);
    async_op *b = async_sleep(scope, LONG_MS);
    async_op *inner = async_future(scope);
    async_future_on_cancel(inner, async_test_hook, NULL);
    async_op *c = async_wait_for(scope, inner, LONG_MS);
    async_op *kids[] = {a, f, b, c};
    async_op *g = async_gather(scope, kids, 4, ASYNC_GATHER_FAIL_FAST);
    async_op_then(g, async_test_record, async_test_tag(2));
    async_op_then(async_sleep(scope, 10), async_test_fail_arg, f);

    cr_assert_lt(async_test_run(), PROMPT_MS, "cancelled timers kept the loop alive");
    async_test_assert_trace((int[]){2}, 1);
    cr_assert_eq(g->status, ASYNC_FAILED);
    cr_assert_str_eq(g->error, "bad");
    cr_assert_eq(g->value, f);
    cr_assert_eq(a->status, ASYNC_CANCELLED);
    cr_assert_eq(b->status, ASYNC_CANCELLED);
    cr_assert_eq(c->status, ASYNC_CANCELLED);
    cr_assert_eq(inner->status, ASYNC_CANCELLED);
    cr_assert_eq(hook_calls, 1);
    cr_assert_eq(async_test_events_left(), 0);
}

Test(async, gather_fail_fast_with_timeout_child_and_all_ok)
{
    async_op *slow = async_sleep(scope, LONG_MS);
    async_op *kids[] = {async_wait_for(scope, async_future(scope), 5), slow};
    async_op *g = async_gather(scope, kids, 2, ASYNC_GATHER_FAIL_FAST);
    async_op_then(g, async_test_record, async_test_tag(1));
    async_op *kids2[] = {async_sleep(scope, 1), async_sleep(scope, 2)};
    async_op *g2 = async_gather(scope, kids2, 2, ASYNC_GATHER_FAIL_FAST);
    async_op_then(g2, async_test_record, async_test_tag(2));
    cr_assert_lt(async_test_run(), PROMPT_MS);
    cr_assert_eq(ntrace, 2);
    cr_assert_eq(g->status, ASYNC_TIMEOUT);
    cr_assert_str_eq(g->error, "timeout");
    cr_assert_eq(g->value, kids[0]);
    cr_assert_eq(slow->status, ASYNC_CANCELLED);
    cr_assert_eq(g2->status, ASYNC_OK);
}

Test(async, gather_of_nothing_completes_soon)
{
    after_call = false;
    async_op *g = async_gather(scope, NULL, 0, ASYNC_GATHER_FAIL_FAST);
    async_op_then(g, async_test_record, async_test_tag(1));
    cr_assert_eq(ntrace, 0);
    cr_assert_eq(g->status, ASYNC_OK);
    cr_assert_null(async_gather_child(g, 0));
    async_test_run();
    cr_assert_eq(sync_violations, 0);
    async_test_assert_trace((int[]){1}, 1);
}

Test(async, gather_cancel_cancels_children)
{
    async_op *s = async_sleep(scope, LONG_MS);
    async_op *f = async_future(scope);
    async_future_on_cancel(f, async_test_hook, NULL);
    async_op *g = async_gather(scope, (async_op *[]){s, f}, 2, ASYNC_GATHER_ALL);
    async_op_then(g, async_test_must_not_run, async_test_tag(1));
    async_op_cancel(g);
    cr_assert_eq(g->status, ASYNC_CANCELLED);
    cr_assert_eq(s->status, ASYNC_CANCELLED);
    cr_assert_eq(f->status, ASYNC_CANCELLED);
    cr_assert_eq(hook_calls, 1);
    cr_assert_lt(async_test_run(), PROMPT_MS);
}

Test(async, gather_counts_a_child_cancelled_by_the_user_as_finished)
{
    async_op *s = async_sleep(scope, LONG_MS);
    async_op *f = async_future(scope);
    async_op *g = async_gather(scope, (async_op *[]){s, f}, 2, ASYNC_GATHER_FAIL_FAST);
    async_op_then(g, async_test_record, async_test_tag(1));
    async_op_cancel(s);
    async_resolve(f, NULL);
    cr_assert_lt(async_test_run(), PROMPT_MS);
    async_test_assert_trace((int[]){1}, 1);
    cr_assert_eq(g->status, ASYNC_OK, "a cancelled child is not a failure");
}

Test(async, gather_takes_already_completed_children)
{
    async_op *done = async_future(scope);
    async_resolve(done, NULL);
    async_op *failed = async_future(scope);
    async_fail(failed, "early");
    async_op *g = async_gather(scope, (async_op *[]){done, failed, done}, 3, ASYNC_GATHER_ALL);
    cr_assert_eq(g->status, ASYNC_OK, "everything had finished");
    async_op_then(g, async_test_record, async_test_tag(1));
    async_op_then(done, async_test_record, async_test_tag(2)); /* taken over by gather: ignored */
    async_test_run();
    async_test_assert_trace((int[]){1}, 1);

    async_op *failed2 = async_future(scope);
    async_fail(failed2, "early");
    async_op *slow = async_sleep(scope, LONG_MS);
    async_op *g2 = async_gather(scope, (async_op *[]){slow, failed2}, 2, ASYNC_GATHER_FAIL_FAST);
    cr_assert_eq(g2->status, ASYNC_FAILED);
    cr_assert_eq(g2->value, failed2);
    cr_assert_eq(slow->status, ASYNC_CANCELLED);
    cr_assert_lt(async_test_run(), PROMPT_MS);
}

Test(async, gather_refuses_foreign_and_already_awaited_children)
{
    async_scope *other = async_scope_new(base);
    async_op *foreign = async_future(other);
    async_op *g = async_gather(scope, &foreign, 1, ASYNC_GATHER_ALL);
    cr_assert_eq(g->status, ASYNC_FAILED);
    cr_assert_str_eq(g->error, "operation of another scope");
    cr_assert_eq(foreign->status, ASYNC_PENDING, "a refused child is left alone");

    async_op *f = async_future(scope);
    async_op *w = async_wait_for(scope, f, LONG_MS);
    async_op *g2 = async_gather(scope, &f, 1, ASYNC_GATHER_ALL);
    cr_assert_eq(g2->status, ASYNC_FAILED);
    cr_assert_str_eq(g2->error, "operation already awaited");
    async_op *w2 = async_wait_for(scope, NULL, 1);
    cr_assert_eq(w2->status, ASYNC_FAILED);

    async_op_then(w, async_test_record, async_test_tag(1));
    async_resolve(f, NULL);
    async_test_run();
    async_test_assert_trace((int[]){1}, 1);
    cr_assert_eq(w->status, ASYNC_OK);
    async_scope_free(other);
}

/* ---- wait_for -------------------------------------------------------------------------------- */

Test(async, wait_for_timeout_cancels_inner)
{
    async_op *inner = async_sleep(scope, LONG_MS);
    async_op *w = async_wait_for(scope, inner, 10);
    async_op_then(w, async_test_record, async_test_tag(1));
    cr_assert_lt(async_test_run(), PROMPT_MS, "the inner timer should be gone");
    async_test_assert_trace((int[]){1}, 1);
    cr_assert_eq(w->status, ASYNC_TIMEOUT);
    cr_assert_str_eq(w->error, "timeout");
    cr_assert_null(w->value);
    cr_assert_eq(inner->status, ASYNC_CANCELLED);
    cr_assert_geq(async_op_elapsed_ms(w), 10, "timed out early");
}

Test(async, wait_for_inner_first_wins)
{
    async_op *f = async_future(scope);
    async_op *w = async_wait_for(scope, f, LONG_MS);
    async_op_then(w, async_test_record, async_test_tag(1));
    async_op_then(async_sleep(scope, 5), async_test_resolve_arg, f);
    async_op *w2 = async_wait_for(scope, async_sleep(scope, 1), LONG_MS);
    async_op_then(w2, async_test_record, async_test_tag(2));
    cr_assert_lt(async_test_run(), PROMPT_MS, "the deadline timer should be gone");
    async_test_assert_trace((int[]){2, 1}, 2);
    cr_assert_eq(w->status, ASYNC_OK);
    cr_assert_eq(w->value, &gather_value);
    cr_assert_null(w->error);
    cr_assert_eq(w2->status, ASYNC_OK);
}

Test(async, wait_for_passes_failure_through)
{
    async_op *f = async_future(scope);
    async_op *w = async_wait_for(scope, f, LONG_MS);
    async_op_then(async_sleep(scope, 1), async_test_fail_arg, f);
    async_test_run();
    cr_assert_eq(w->status, ASYNC_FAILED);
    cr_assert_str_eq(w->error, "bad");

    async_op *done = async_future(scope);
    async_resolve(done, &gather_value);
    async_op *w2 = async_wait_for(scope, done, LONG_MS);
    cr_assert_eq(w2->status, ASYNC_OK, "an inner op that already finished is in time");
    cr_assert_eq(w2->value, &gather_value);
    cr_assert_lt(async_test_run(), PROMPT_MS);
}

static bool late_resolve_ok;

static void async_test_raw_resolve(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    late_resolve_ok = async_resolve(arg, &gather_value);
}

/* Both deadlines pass before the loop looks: the raw timer (due first) resolves the inner future,
 * whose report is queued behind the wait_for's own timer in the same loop pass. */
Test(async, wait_for_inner_and_timer_together_complete_once)
{
    async_op *f = async_future(scope);
    struct event *raw = evtimer_new(base, async_test_raw_resolve, f);
    struct timeval due = {0, 0};
    evtimer_add(raw, &due);
    async_op *w = async_wait_for(scope, f, 1);
    async_op_then(w, async_test_record, async_test_tag(1));
    usleep(20000);
    async_test_run();
    event_free(raw);
    async_test_assert_trace((int[]){1}, 1);
    cr_assert(late_resolve_ok);
    cr_assert_eq(w->status, ASYNC_OK, "the inner op finished in time");
    cr_assert_eq(w->value, &gather_value);
    cr_assert_eq(f->status, ASYNC_OK);
}

Test(async, wait_for_timer_first_refuses_late_result)
{
    async_op *f = async_future(scope);
    async_op *w = async_wait_for(scope, f, 0);
    struct event *raw = evtimer_new(base, async_test_raw_resolve, f);
    struct timeval due = {0, 1000};
    evtimer_add(raw, &due);
    async_op_then(w, async_test_record, async_test_tag(1));
    usleep(20000);
    async_test_run();
    event_free(raw);
    async_test_assert_trace((int[]){1}, 1);
    cr_assert_eq(w->status, ASYNC_TIMEOUT);
    cr_assert_eq(f->status, ASYNC_CANCELLED);
    cr_assert_not(late_resolve_ok);
}

Test(async, cancelling_the_inner_op_cancels_wait_for)
{
    async_op *f = async_future(scope);
    async_op *w = async_wait_for(scope, f, LONG_MS);
    async_op_then(w, async_test_must_not_run, async_test_tag(1));
    async_op *g = async_gather(scope, &w, 1, ASYNC_GATHER_ALL);
    async_op_then(g, async_test_record, async_test_tag(2));
    async_op_cancel(f);
    cr_assert_eq(w->status, ASYNC_CANCELLED);
    cr_assert_lt(async_test_run(), PROMPT_MS);
    async_test_assert_trace((int[]){2}, 1);

    async_op *w2 = async_wait_for(scope, f, LONG_MS);
    cr_assert_eq(w2->status, ASYNC_CANCELLED, "waiting for a cancelled op is cancelled too");
    cr_assert_lt(async_test_run(), PROMPT_MS);
}

/* ---- semaphore and lock ---------------------------------------------------------------------- */

static async_sem task_sem;
static int task_active, task_max_active, task_done;

static void async_test_task_done(async_op *op, void *arg)
{
    (void)op;
    (void)arg;
    task_active--;
    task_done++;
    async_sem_release(&task_sem);
}

static void async_test_task_acquired(async_op *op, void *arg)
{
    cr_assert_eq(op->status, ASYNC_OK);
    async_test_record(op, arg);
    if (++task_active > task_max_active)
        task_max_active = task_active;
    async_op_then(async_sleep(scope, 5), async_test_task_done, arg);
}

Test(async, semaphore_caps_concurrency_and_serves_fifo)
{
    async_sem_init(&task_sem, 3);
    for (int i = 0; i < 10; i++)
        async_op_then(async_sem_acquire(scope, &task_sem), async_test_task_acquired, async_test_tag(i));
    cr_assert_eq(task_sem.permits, 0);
    cr_assert_eq(async_sem_waiting(&task_sem), 7);
    cr_assert_not(async_sem_try_acquire(&task_sem));
    cr_assert_lt(async_test_run(), PROMPT_MS);
    cr_assert_eq(task_done, 10);
    cr_assert_eq(task_max_active, 3);
    async_test_assert_trace((int[]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 10);
    cr_assert_eq(task_sem.permits, 3);
    cr_assert_eq(async_sem_waiting(&task_sem), 0);
}

Test(async, semaphore_try_acquire_and_release)
{
    static async_sem sem;
    async_sem_init(&sem, 1);
    cr_assert(async_sem_try_acquire(&sem));
    cr_assert_not(async_sem_try_acquire(&sem));
    async_op *a = async_sem_acquire(scope, &sem);
    cr_assert_eq(a->status, ASYNC_PENDING);
    cr_assert_eq(async_sem_waiting(&sem), 1);
    async_sem_release(&sem);
    cr_assert_eq(a->status, ASYNC_OK, "the waiter gets the permit, not the pool");
    cr_assert_eq(sem.permits, 0);
    cr_assert_not(async_sem_try_acquire(&sem));
    async_sem_release(&sem);
    cr_assert_eq(sem.permits, 1);
    async_test_run();
}

Test(async, semaphore_wait_for_timeout_leaves_the_line)
{
    static async_sem sem;
    async_sem_init(&sem, 1);
    cr_assert(async_sem_try_acquire(&sem));
    async_op *timed = async_sem_acquire(scope, &sem);
    async_op *w = async_wait_for(scope, timed, 10);
    async_op_then(w, async_test_record, async_test_tag(1));
    async_op *next = async_sem_acquire(scope, &sem);
    async_op_then(next, async_test_record, async_test_tag(2));
    cr_assert_eq(async_sem_waiting(&sem), 2);
    async_test_run();
    async_test_assert_trace((int[]){1}, 1);
    cr_assert_eq(w->status, ASYNC_TIMEOUT);
    cr_assert_eq(timed->status, ASYNC_CANCELLED);
    cr_assert_eq(async_sem_waiting(&sem), 1);
    async_sem_release(&sem);
    cr_assert_eq(next->status, ASYNC_OK, "the permit skips the waiter that left");
    async_test_run();
    async_test_assert_trace((int[]){1, 2}, 2);
    async_sem_release(&sem);
    cr_assert_eq(sem.permits, 1);
}

Test(async, granted_then_cancelled_acquire_returns_the_permit)
{
    static async_sem sem;
    async_sem_init(&sem, 1);
    async_op *a = async_sem_acquire(scope, &sem);
    async_op_then(a, async_test_must_not_run, async_test_tag(1));
    async_op *b = async_sem_acquire(scope, &sem);
    async_op_then(b, async_test_record, async_test_tag(2));
    cr_assert_eq(a->status, ASYNC_OK);
    async_op_cancel(a);
    cr_assert_eq(a->status, ASYNC_CANCELLED, "its grant was undone");
    cr_assert_eq(b->status, ASYNC_OK, "the returned permit goes to the next waiter");
    cr_assert_eq(sem.permits, 0);
    async_op_cancel(b); /* granted via release, queued: gives it back again */
    cr_assert_eq(sem.permits, 1);
    async_test_run();
    cr_assert_eq(ntrace, 0);

    async_op *c = async_sem_acquire(scope, &sem); /* granted, nothing attached yet */
    async_op_cancel(c);
    cr_assert_eq(sem.permits, 1);
}

Test(async, cancelled_gather_of_acquires_returns_permits)
{
    static async_sem sem;
    async_sem_init(&sem, 2);
    async_op *first = async_sem_acquire(scope, &sem);
    async_op *kids[] = {first, async_wait_for(scope, async_sem_acquire(scope, &sem), 5)};
    async_op *g = async_gather(scope, kids, 2, ASYNC_GATHER_ALL);
    async_op_then(g, async_test_must_not_run, async_test_tag(1));
    cr_assert_eq(g->status, ASYNC_OK);
    cr_assert_eq(sem.permits, 0);
    async_op_cancel(g);
    cr_assert_eq(sem.permits, 2, "permits of a result nobody will see must come back");
    cr_assert_eq(kids[0]->status, ASYNC_CANCELLED);
    cr_assert_eq(kids[1]->status, ASYNC_CANCELLED);
    async_test_run();
}

static async_lock test_lock;
static int lock_inside, lock_max_inside;

static void async_test_locked_done(async_op *op, void *arg)
{
    (void)op;
    (void)arg;
    lock_inside--;
    async_lock_release(&test_lock);
}

static void async_test_locked(async_op *op, void *arg)
{
    async_test_record(op, arg);
    cr_assert(async_lock_locked(&test_lock));
    if (++lock_inside > lock_max_inside)
        lock_max_inside = lock_inside;
    async_op_then(async_sleep(scope, 2), async_test_locked_done, arg);
}

Test(async, lock_gives_mutual_exclusion)
{
    async_lock_init(&test_lock);
    cr_assert_not(async_lock_locked(&test_lock));
    for (int i = 0; i < 5; i++)
        async_op_then(async_lock_acquire(scope, &test_lock), async_test_locked, async_test_tag(i));
    cr_assert(async_lock_locked(&test_lock));
    async_test_run();
    cr_assert_eq(lock_max_inside, 1);
    async_test_assert_trace((int[]){0, 1, 2, 3, 4}, 5);
    cr_assert_not(async_lock_locked(&test_lock));
}

Test(async, semaphore_shared_by_scopes)
{
    static async_sem sem;
    async_sem_init(&sem, 0);
    async_scope *other = async_scope_new(base);
    async_op *theirs = async_sem_acquire(other, &sem);
    async_op_then(theirs, async_test_must_not_run, async_test_tag(1));
    async_op *ours = async_sem_acquire(scope, &sem);
    async_op_then(ours, async_test_record, async_test_tag(2));
    async_scope_free(other); /* its waiter leaves the line */
    cr_assert_eq(async_sem_waiting(&sem), 1);
    async_sem_release(&sem);
    async_test_run();
    async_test_assert_trace((int[]){2}, 1);
    async_sem_release(&sem);
    cr_assert_eq(sem.permits, 1);
}

/* ---- queue ----------------------------------------------------------------------------------- */

static int it[8] = {0, 1, 2, 3, 4, 5, 6, 7};

Test(async, queue_is_bounded_and_fifo)
{
    static void *items[2];
    static async_queue q;
    async_queue_init(&q, items, 2);
    void *out = NULL;
    cr_assert_not(async_queue_try_get(&q, &out));
    cr_assert(async_queue_try_put(&q, &it[1]));
    cr_assert(async_queue_try_put(&q, &it[2]));
    cr_assert_not(async_queue_try_put(&q, &it[3]), "full");
    cr_assert_eq(async_queue_size(&q), 2);
    cr_assert(async_queue_try_get(&q, &out));
    cr_assert_eq(out, &it[1]);
    cr_assert(async_queue_try_put(&q, &it[3])); /* wraps around the ring */
    cr_assert(async_queue_try_get(&q, &out));
    cr_assert_eq(out, &it[2]);
    cr_assert(async_queue_try_get(&q, &out));
    cr_assert_eq(out, &it[3]);
    cr_assert_eq(async_queue_size(&q), 0);
}

Test(async, queue_put_waits_while_full)
{
    static void *items[1];
    static async_queue q;
    async_queue_init(&q, items, 1);
    cr_assert(async_queue_try_put(&q, &it[1]));
    async_op *p = async_queue_put(scope, &q, &it[2]);
    async_op *p2 = async_queue_put(scope, &q, &it[3]);
    async_op_then(p, async_test_record, async_test_tag(1));
    async_op_then(p2, async_test_record, async_test_tag(2));
    cr_assert_eq(p->status, ASYNC_PENDING);
    cr_assert_not(async_queue_try_put(&q, &it[4]), "putters wait: no overtaking");
    void *out = NULL;
    cr_assert(async_queue_try_get(&q, &out));
    cr_assert_eq(out, &it[1]);
    cr_assert_eq(p->status, ASYNC_OK, "the first putter's item moved in");
    cr_assert_eq(p2->status, ASYNC_PENDING);
    cr_assert_eq(async_queue_size(&q), 1);
    async_op *g = async_queue_get(scope, &q);
    cr_assert_eq(g->status, ASYNC_OK);
    cr_assert_eq(g->value, &it[2]);
    cr_assert_eq(p2->status, ASYNC_OK);
    async_test_run();
    async_test_assert_trace((int[]){1, 2}, 2);
    cr_assert(async_queue_try_get(&q, &out));
    cr_assert_eq(out, &it[3]);
}

Test(async, queue_get_waits_while_empty)
{
    static void *items[2];
    static async_queue q;
    async_queue_init(&q, items, 2);
    async_op *g1 = async_queue_get(scope, &q);
    async_op *g2 = async_queue_get(scope, &q);
    async_op_then(g2, async_test_record, async_test_tag(2));
    async_op_then(g1, async_test_record, async_test_tag(1));
    cr_assert_eq(g1->status, ASYNC_PENDING);
    cr_assert(async_queue_try_put(&q, &it[1]));
    async_op *p = async_queue_put(scope, &q, &it[2]);
    cr_assert_eq(p->status, ASYNC_OK);
    cr_assert_eq(async_queue_size(&q), 0, "items went straight to the getters");
    async_test_run();
    async_test_assert_trace((int[]){1, 2}, 2);
    cr_assert_eq(g1->value, &it[1]);
    cr_assert_eq(g2->value, &it[2]);
}

Test(async, queue_cancel_rules)
{
    static void *items[2];
    static async_queue q;
    async_queue_init(&q, items, 2);
    void *out = NULL;

    /* A waiting getter that leaves is skipped. */
    async_op *g1 = async_queue_get(scope, &q);
    async_op *g2 = async_queue_get(scope, &q);
    async_op_cancel(g1);
    cr_assert(async_queue_try_put(&q, &it[1]));
    cr_assert_eq(g2->value, &it[1]);

    /* A get that holds an item puts it back at the front when cancelled... */
    async_op *g3 = async_queue_get(scope, &q);
    cr_assert(async_queue_try_put(&q, &it[2]));
    cr_assert(async_queue_try_put(&q, &it[3]));
    async_op_cancel(g3);
    cr_assert_eq(g3->status, ASYNC_CANCELLED);
    cr_assert_eq(async_queue_size(&q), 2);
    cr_assert(async_queue_try_get(&q, &out));
    cr_assert_eq(out, &it[2], "the returned item is first again");
    cr_assert(async_queue_try_get(&q, &out));
    cr_assert_eq(out, &it[3]);

    /* ...or hands it to the next waiting getter. */
    async_op *g4 = async_queue_get(scope, &q);
    async_op *g5 = async_queue_get(scope, &q);
    async_op_then(g5, async_test_record, async_test_tag(5));
    cr_assert(async_queue_try_put(&q, &it[4]));
    async_op_cancel(g4);
    cr_assert_eq(g5->status, ASYNC_OK);
    cr_assert_eq(g5->value, &it[4]);

    /* A waiting put that is cancelled withdraws its item. */
    cr_assert(async_queue_try_put(&q, &it[5]));
    cr_assert(async_queue_try_put(&q, &it[6]));
    async_op *p = async_queue_put(scope, &q, &it[7]);
    async_op_then(p, async_test_must_not_run, async_test_tag(7));
    async_op_cancel(p);
    cr_assert(async_queue_try_get(&q, &out));
    cr_assert(async_queue_try_get(&q, &out));
    cr_assert_eq(out, &it[6]);
    cr_assert_not(async_queue_try_get(&q, &out), "the withdrawn item never arrives");

    async_test_run();
    async_test_assert_trace((int[]){5}, 1);
}

Test(async, queue_cancelled_get_cannot_return_item_to_a_full_queue)
{
    static void *items[1];
    static async_queue q;
    async_queue_init(&q, items, 1);
    async_op *g = async_queue_get(scope, &q);
    cr_assert(async_queue_try_put(&q, &it[1]));
    cr_assert(async_queue_try_put(&q, &it[2]));
    async_op_cancel(g); /* no room: the item stays with the get (and an error is logged) */
    cr_assert_eq(g->status, ASYNC_OK);
    cr_assert_eq(g->value, &it[1]);
    cr_assert_eq(async_queue_size(&q), 1);
}

/* ---- scopes ---------------------------------------------------------------------------------- */

Test(async, scope_alloc_is_zeroed)
{
    static arena a;
    arena_init(&a);
    unsigned char *dirty = arena_alloc(&a, 512);
    memset(dirty, 0xAB, 512);
    arena_reset(&a);
    async_scope *s = async_scope_new_in_arena(base, &a);
    unsigned char *p = async_scope_alloc(s, 512);
    cr_assert_eq(p, dirty, "the test needs the dirty bytes back");
    for (size_t i = 0; i < 512; i++)
        cr_assert_eq(p[i], 0, "byte %zu", i);
    async_scope_free(s);
    arena_reset(&a);

    unsigned char *big = async_scope_alloc(scope, 5000);
    for (size_t i = 0; i < 5000; i++)
        cr_assert_eq(big[i], 0, "byte %zu", i);
    cr_assert_eq(async_scope_base(scope), base);
}

static void async_test_count_hook(async_op *op, void *arg)
{
    (void)op;
    (*(int *)arg)++;
}

Test(async, scope_free_cancels_everything_and_runs_nothing)
{
    static async_sem sem;
    static async_sem sem_free;
    static async_queue empty, full;
    static void *empty_items[1], *full_items[1];
    int hooks = 0;
    async_sem_init(&sem, 0);
    async_sem_init(&sem_free, 2);
    async_queue_init(&empty, empty_items, 1);
    async_queue_init(&full, full_items, 1);
    cr_assert(async_queue_try_put(&full, &it[1]));

    async_scope *s = async_scope_new(base);
    async_op *ops[] = {
        async_sleep(s, LONG_MS),
        async_sem_acquire(s, &sem),
        async_queue_get(s, &empty),
        async_queue_put(s, &full, &it[2]),
        async_future(s),
        async_wait_for(s, async_sleep(s, LONG_MS), LONG_MS),
        async_sem_acquire(s, &sem_free), /* granted, nothing attached */
        async_sem_acquire(s, &sem_free), /* granted, continuation queued */
    };
    size_t n = sizeof(ops) / sizeof(ops[0]);
    async_future_on_cancel(ops[4], async_test_count_hook, &hooks);
    async_op *g = async_gather(s, (async_op *[]){async_sleep(s, LONG_MS), async_future(s)}, 2,
                               ASYNC_GATHER_ALL);
    for (size_t i = 0; i < n; i++) {
        if (i != 6)
            async_op_then(ops[i], async_test_must_not_run, async_test_tag((int)i));
    }
    async_op_then(g, async_test_must_not_run, async_test_tag(100));
    for (int i = 0; i < 200; i++)
        async_scope_alloc(s, 100); /* spill into heap blocks */
    cr_assert_eq(sem_free.permits, 0);

    async_scope_free(s);
    cr_assert_eq(hooks, 1);
    cr_assert_eq(async_sem_waiting(&sem), 0);
    cr_assert_eq(sem_free.permits, 2, "granted but never continued: permits come back");
    cr_assert_null(empty._getters_head);
    cr_assert_null(full._putters_head);
    cr_assert_eq(async_queue_size(&full), 1);
    cr_assert_lt(async_test_run(), PROMPT_MS);
    cr_assert_eq(async_test_events_left(), 0);
    async_sem_release(&sem);
    cr_assert_eq(sem.permits, 1, "no dead waiter took the permit");
}

typedef struct free_ctx {
    async_scope *scope;
    arena *arena;
} free_ctx;

static void async_test_free_scope(async_op *op, void *arg)
{
    free_ctx *ctx = arg;
    async_test_record(op, async_test_tag(1));
    async_scope_free(ctx->scope);
    if (ctx->arena)
        arena_reset(ctx->arena); /* what the HTTP engine does right after */
}

Test(async, scope_freed_in_its_continuation_then_arena_reset)
{
    static arena a;
    arena_init(&a);
    (void)arena_alloc(&a, 2000); /* operations land in a heap block, which the reset frees */
    async_scope *s = async_scope_new_in_arena(base, &a);
    free_ctx ctx = {s, &a};
    async_op *f1 = async_future(s), *f2 = async_future(s), *f3 = async_future(s);
    async_op_then(f1, async_test_free_scope, &ctx);
    async_op_then(f2, async_test_must_not_run, async_test_tag(2));
    async_op_then(f3, async_test_must_not_run, async_test_tag(3));
    async_op_then(async_sleep(s, LONG_MS), async_test_must_not_run, async_test_tag(4));
    async_op *g = async_gather(s, (async_op *[]){async_sleep(s, LONG_MS)}, 1, ASYNC_GATHER_ALL);
    async_op_then(g, async_test_must_not_run, async_test_tag(5));
    async_resolve(f1, NULL);
    async_resolve(f2, NULL);
    async_resolve(f3, NULL);
    cr_assert_lt(async_test_run(), PROMPT_MS);
    async_test_assert_trace((int[]){1}, 1);
    cr_assert_eq(async_test_events_left(), 0);
    arena_reset(&a);
}

static void async_test_free_then_use(async_op *op, void *arg)
{
    (void)arg;
    async_test_record(op, async_test_tag(1));
    async_scope_free(scope);
    async_scope_free(scope); /* ignored while the runner still holds it */
    /* The continuation may still touch its scope until it returns; anything started now is dead. */
    async_op *late = async_sleep(scope, LONG_MS);
    cr_assert_eq(late->status, ASYNC_CANCELLED);
    async_op_then(late, async_test_must_not_run, async_test_tag(2));
    async_op *f = async_future(scope);
    int hooks = 0;
    async_future_on_cancel(f, async_test_count_hook, &hooks);
    cr_assert_eq(hooks, 1, "outside work started for a dead scope is stopped at once");
    unsigned char *p = async_scope_alloc(scope, 3000);
    cr_assert_eq(p[2999], 0);
    cr_assert_eq(op->status, ASYNC_OK, "the running op is still readable");
    scope = NULL;
}

Test(async, standalone_scope_freed_in_its_continuation)
{
    async_op *f = async_future(scope);
    async_op *f2 = async_future(scope);
    async_op_then(f, async_test_free_then_use, NULL);
    async_op_then(f2, async_test_must_not_run, async_test_tag(3));
    async_resolve(f, NULL);
    async_resolve(f2, NULL);
    cr_assert_lt(async_test_run(), PROMPT_MS);
    async_test_assert_trace((int[]){1}, 1);
    cr_assert_null(scope);
}

static void async_test_scope_workout(void)
{
    static async_sem sem;
    static async_queue q;
    static void *items[1];
    async_sem_init(&sem, 1);
    async_queue_init(&q, items, 1);
    async_scope *s = async_scope_new(base);
    async_op *kids[] = {async_sleep(s, 1), async_sem_acquire(s, &sem), async_sem_acquire(s, &sem),
                        async_queue_get(s, &q), async_wait_for(s, async_future(s), 1)};
    async_op_then(async_gather(s, kids, 5, ASYNC_GATHER_ALL), async_test_record, async_test_tag(1));
    for (int i = 0; i < 100; i++)
        async_scope_alloc(s, 200);
    async_queue_try_put(&q, &it[1]);
    async_sem_release(&sem);
    event_base_dispatch(base);
    async_op_then(async_sleep(s, LONG_MS), async_test_must_not_run, async_test_tag(2));
    async_scope_free(s);
}

Test(async, scopes_leak_nothing)
{
#ifdef ASYNC_TEST_HAVE_LSAN
    async_test_scope_workout();
    async_test_assert_trace((int[]){1}, 1);
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "async leaked (see the report above)");
#else
    async_test_scope_workout();
    cr_skip_test("built without AddressSanitizer: nothing to check leaks with");
#endif
}

/* ---- scope cleanups (async_scope_defer) ------------------------------------------------------- */

static void async_test_defer_record(void *arg) { trace[ntrace++] = (int)(intptr_t)arg; }

Test(async, defers_run_at_scope_end_newest_first_and_cancelled_ones_never)
{
    async_scope_defer(scope, async_test_defer_record, async_test_tag(1));
    async_defer *skipped = async_scope_defer(scope, async_test_defer_record, async_test_tag(2));
    async_scope_defer(scope, async_test_defer_record, async_test_tag(3));
    async_defer_cancel(skipped);
    async_defer_cancel(skipped); /* idempotent */
    cr_assert_eq(ntrace, 0, "nothing runs before the scope ends");
    async_scope_free(scope);
    scope = NULL;
    cr_assert_eq(ntrace, 2);
    cr_assert_eq(trace[0], 3);
    cr_assert_eq(trace[1], 1);
}

/* The case that needs it: a permit of a semaphore shared by two requests. The first request holds it
 * and ends without releasing (client gone, deadline); its cleanup gives the permit to the second. */
static async_sem shared_sem;

static void async_test_release_shared(void *arg)
{
    (void)arg;
    async_sem_release(&shared_sem);
}

static void async_test_hold_permit(async_op *op, void *arg)
{
    cr_assert_eq(op->status, ASYNC_OK);
    async_scope_defer(arg, async_test_release_shared, NULL);
}

Test(async, cleanup_returns_a_shared_permit_when_its_holder_is_cancelled)
{
    async_sem_init(&shared_sem, 1);
    async_scope *holder = async_scope_new(base);
    async_op_then(async_sem_acquire(holder, &shared_sem), async_test_hold_permit, holder);
    async_op *waiting = async_sem_acquire(scope, &shared_sem);
    async_op_then(waiting, async_test_record, async_test_tag(7));
    after_call = true;
    event_base_loop(base, EVLOOP_NONBLOCK);
    cr_assert_eq(shared_sem.permits, 0);
    cr_assert_eq(waiting->status, ASYNC_PENDING, "the second request waits for the permit");
    async_scope_free(holder); /* the holder's request ends without releasing */
    async_test_run();
    cr_assert_eq(waiting->status, ASYNC_OK, "the cleanup handed the permit on");
    cr_assert_eq(ntrace, 1);
    cr_assert_eq(trace[0], 7);
    async_sem_release(&shared_sem);
    cr_assert_eq(shared_sem.permits, 1);
}
