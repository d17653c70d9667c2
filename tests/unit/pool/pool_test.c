/* pool_test: unit tests for lib/pool/pool.c (the worker pool): results come back on the submitting loop's
 * thread as pool_result, work errors fail the operation, the queue bound rejects at once, cancelling
 * a queued or running job (directly, by a deadline or by ending the scope), shutdown draining the
 * queue, the inline pool, and the stats counters.
 *
 * Each test runs a real libevent loop on the test thread with a standalone scope whose poster is a
 * mutex-protected list plus event_active, like the server's http_loop_post. Meant to run under ASan
 * (a cancelled job that is not freed, or freed twice, only shows up there) and once under TSan. */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "async.h"
#include "pool.h"
#include "test_loop.h"

#if defined(__SANITIZE_ADDRESS__)
#define POOL_TEST_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_TEST_HAVE_LSAN 1
#endif
#endif
#ifdef POOL_TEST_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

static void pool_test_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A few loop passes: gives a continuation that should not run every chance to run anyway. */
static void test_loop_spin(test_loop *l)
{
    for (int i = 0; i < 5; i++)
        event_base_loop(l->base, EVLOOP_ONCE);
}

/* Waits, without running the loop, for a worker to move *counter to want. */
static bool pool_test_wait(const atomic_int *counter, int want)
{
    uint64_t deadline = test_loop_now_ms() + TEST_LOOP_TIMEOUT_MS;
    while (atomic_load(counter) < want) {
        if (test_loop_now_ms() > deadline)
            return false;
        pool_test_sleep_ms(1);
    }
    return true;
}

/* ---- fixture ------------------------------------------------------------------------------------ */

static test_loop loop;
static pool *pl;

/* A gate: work that waits on it holds its worker until the test opens it (or the job is cancelled). */
static pthread_mutex_t gate_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cond = PTHREAD_COND_INITIALIZER;
static bool gate_is_open;
static atomic_int gate_entered;     /* gate works that started */
static atomic_int gate_saw_cancel;  /* gate works that returned early because they were cancelled */
static atomic_int forbidden_runs;   /* runs of work that must never run */
static atomic_int echo_runs;

static void gate_open(void)
{
    pthread_mutex_lock(&gate_lock);
    gate_is_open = true;
    pthread_cond_broadcast(&gate_cond);
    pthread_mutex_unlock(&gate_lock);
}

static void pool_test_setup(void)
{
    test_loop_init(&loop);
}

static void pool_test_teardown(void)
{
    /* Order matters: scopes go first (their cancels touch the pool), workers are released and joined,
     * then late results are drained (freeing their jobs), and only then the pool itself goes. */
    gate_open();
    if (loop.scope)
        test_loop_free_scope(&loop);
    pool_shutdown(pl);
    test_loop_drain(&loop);
    pool_free(pl);
    pl = NULL;
    test_loop_fini(&loop);
}

TestSuite(pool, .init = pool_test_setup, .fini = pool_test_teardown, .timeout = 60);

/* ---- work functions (run on worker threads) ----------------------------------------------------- */

static const char *echo_work(pool_job *job, const void *input, size_t input_len, void *output,
                             size_t output_cap, size_t *output_len)
{
    (void)job;
    size_t n = input_len < output_cap ? input_len : output_cap;
    if (n)
        memcpy(output, input, n);
    *output_len = n;
    atomic_fetch_add(&echo_runs, 1);
    return NULL;
}

/* Returns the worker's own thread id as its output, so the test learns where the work ran. */
static const char *whoami_work(pool_job *job, const void *input, size_t input_len, void *output,
                               size_t output_cap, size_t *output_len)
{
    (void)job;
    (void)input;
    (void)input_len;
    pthread_t self = pthread_self();
    if (output_cap < sizeof(self))
        return "no room for a thread id";
    memcpy(output, &self, sizeof(self));
    *output_len = sizeof(self);
    return NULL;
}

static const char WORK_ERROR[] = "invalid hash";

static const char *failing_work(pool_job *job, const void *input, size_t input_len, void *output,
                                size_t output_cap, size_t *output_len)
{
    (void)job;
    (void)input;
    (void)input_len;
    memcpy(output, "junk", output_cap < 4 ? output_cap : 4); /* a failure's output is never delivered */
    *output_len = output_cap < 4 ? output_cap : 4;
    return WORK_ERROR;
}

/* Claims more output than it was given room for (without writing it): the pool must not copy it. */
static const char *overclaiming_work(pool_job *job, const void *input, size_t input_len, void *output,
                                     size_t output_cap, size_t *output_len)
{
    (void)job;
    (void)input;
    (void)input_len;
    (void)output;
    *output_len = output_cap + 1;
    return NULL;
}

static const char *forbidden_work(pool_job *job, const void *input, size_t input_len, void *output,
                                  size_t output_cap, size_t *output_len)
{
    (void)job;
    (void)input;
    (void)input_len;
    (void)output;
    (void)output_cap;
    *output_len = 0;
    atomic_fetch_add(&forbidden_runs, 1);
    return NULL;
}

/* Holds its worker until the gate opens; polls pool_job_cancelled like a long computation should and
 * returns early (with some output, which must be discarded) once its job is cancelled. */
static const char *gate_work(pool_job *job, const void *input, size_t input_len, void *output,
                             size_t output_cap, size_t *output_len)
{
    (void)input;
    (void)input_len;
    atomic_fetch_add(&gate_entered, 1);
    bool cancelled = false;
    pthread_mutex_lock(&gate_lock);
    while (!gate_is_open) {
        if (pool_job_cancelled(job)) {
            cancelled = true;
            break;
        }
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_cond_timedwait(&gate_cond, &gate_lock, &until);
    }
    pthread_mutex_unlock(&gate_lock);
    const char *text = cancelled ? "partial" : "gate";
    size_t n = strlen(text) < output_cap ? strlen(text) : output_cap;
    memcpy(output, text, n);
    *output_len = n;
    if (cancelled)
        atomic_fetch_add(&gate_saw_cancel, 1);
    return NULL;
}

/* ---- continuations (run on a loop thread) ------------------------------------------------------- */

/* What a continuation saw; tests assert on it from the test thread. */
typedef struct outcome {
    atomic_int done;
    pthread_t thread;
    async_status status;
    const char *error;
    pool_result *result;
    int order; /* 1-based position among all continuations of the process */
} outcome;

static atomic_int continuations;

static void record(async_op *op, void *arg)
{
    outcome *o = arg;
    o->thread = pthread_self();
    o->status = op->status;
    o->error = op->error;
    o->result = op->value;
    o->order = atomic_fetch_add(&continuations, 1) + 1;
    atomic_fetch_add(&o->done, 1);
}

static void must_not_run(async_op *op, void *arg)
{
    (void)op;
    (void)arg;
    atomic_fetch_add(&continuations, 1);
    cr_assert_fail("the continuation of a cancelled pool operation ran");
}

static async_op *submit_str(pool_work_fn work, const char *text, size_t output_cap)
{
    return pool_submit(loop.scope, pl, work, text, strlen(text), output_cap);
}

static void assert_result(const outcome *o, const char *want)
{
    cr_assert_eq(atomic_load(&o->done), 1);
    cr_assert_eq(o->status, ASYNC_OK, "status %d (%s)", o->status, o->error ? o->error : "");
    cr_assert_not_null(o->result);
    cr_assert_eq(o->result->len, strlen(want));
    cr_assert_str_eq((const char *)o->result->data, want);
}

static pool_stats stats(void)
{
    pool_stats s;
    pool_stats_read(pl, &s);
    return s;
}

/* ---- delivery ------------------------------------------------------------------------------------ */

Test(pool, result_is_delivered_on_the_loop_thread_and_work_runs_on_a_worker)
{
    pl = pool_new(2, 8);
    cr_assert_not_null(pl);
    outcome o = {0};
    async_op *op = pool_submit(loop.scope, pl, whoami_work, "", 0, sizeof(pthread_t));
    async_op_then(op, record, &o);
    cr_assert(test_loop_run_until(&loop, &o.done, 1));

    cr_assert_eq(o.status, ASYNC_OK);
    cr_assert(pthread_equal(o.thread, pthread_self()), "the continuation ran off the loop thread");
    cr_assert_eq(o.result->len, sizeof(pthread_t));
    pthread_t worker;
    memcpy(&worker, o.result->data, sizeof(worker));
    cr_assert(!pthread_equal(worker, pthread_self()), "the work ran on the loop thread");
    cr_assert_eq(atomic_load(&loop.posted), 1, "the result came back through the scope's poster");
}

/* The same with two loops on their own threads sharing one pool: each result goes to the loop that
 * submitted it, not to whichever loop happens to be the test thread. */
typedef struct loop_thread {
    pthread_t thread;
    test_loop loop;
    outcome o;
    bool finished_in_time;
    char input[16];
} loop_thread;

static void *loop_thread_main(void *arg)
{
    loop_thread *lt = arg;
    test_loop_init(&lt->loop);
    async_op *op = pool_submit(lt->loop.scope, pl, echo_work, lt->input, strlen(lt->input), 16);
    async_op_then(op, record, &lt->o);
    lt->finished_in_time = test_loop_run_until(&lt->loop, &lt->o.done, 1);
    /* Copy out before the scope (which owns the result) goes. */
    if (lt->o.result && strcmp((const char *)lt->o.result->data, lt->input) != 0)
        lt->finished_in_time = false;
    lt->o.result = NULL;
    test_loop_fini(&lt->loop);
    return NULL;
}

Test(pool, each_result_goes_back_to_the_loop_that_submitted_it)
{
    pl = pool_new(2, 8);
    cr_assert_not_null(pl);
    loop_thread lts[2] = {{.input = "first loop"}, {.input = "second loop"}};
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&lts[i].thread, NULL, loop_thread_main, &lts[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(lts[i].thread, NULL);
    for (int i = 0; i < 2; i++) {
        cr_assert(lts[i].finished_in_time, "loop %d got no (or the wrong) result", i);
        cr_assert_eq(lts[i].o.status, ASYNC_OK);
        cr_assert(pthread_equal(lts[i].o.thread, lts[i].thread), "loop %d's result ran on another thread", i);
    }
    cr_assert_eq(stats().completed, 2);
}

Test(pool, result_holds_the_output_bytes_and_a_trailing_nul)
{
    pl = pool_new(1, 8);
    cr_assert_not_null(pl);
    /* Binary output with NULs inside: len, not strlen, tells where it ends. */
    static const unsigned char bin[] = {'a', 0, 'b', 0, 0xff};
    outcome o1 = {0}, o2 = {0}, o3 = {0};
    async_op_then(pool_submit(loop.scope, pl, echo_work, bin, sizeof(bin), 64), record, &o1);
    /* output_cap bounds the result: the echo stops there. */
    async_op_then(submit_str(echo_work, "truncated here", 9), record, &o2);
    /* No input, no room for output: an empty result is still a C string. */
    async_op_then(pool_submit(loop.scope, pl, echo_work, "", 0, 0), record, &o3);
    cr_assert(test_loop_run_until(&loop, &continuations, 3));

    cr_assert_eq(o1.status, ASYNC_OK);
    cr_assert_eq(o1.result->len, sizeof(bin));
    cr_assert_arr_eq(o1.result->data, bin, sizeof(bin));
    cr_assert_eq(o1.result->data[sizeof(bin)], '\0');
    assert_result(&o2, "truncated");
    assert_result(&o3, "");
    cr_assert_eq(o3.result->data[0], '\0');
}

/* A job without input (NULL, 0) is legitimate. Under UBSan this also checks that the pool does not hand
 * NULL to memcpy (undefined even for 0 bytes): look for "runtime error" in the output. */
Test(pool, null_input_with_zero_length_is_accepted)
{
    pl = pool_new(1, 8);
    cr_assert_not_null(pl);
    outcome o = {0};
    async_op_then(pool_submit(loop.scope, pl, echo_work, NULL, 0, 8), record, &o);
    cr_assert(test_loop_run_until(&loop, &o.done, 1));
    assert_result(&o, "");
}

Test(pool, error_returned_by_the_work_fails_the_operation)
{
    pl = pool_new(1, 8);
    cr_assert_not_null(pl);
    outcome o = {0};
    async_op_then(submit_str(failing_work, "x", 16), record, &o);
    cr_assert(test_loop_run_until(&loop, &o.done, 1));
    cr_assert_eq(o.status, ASYNC_FAILED);
    cr_assert_eq(o.error, WORK_ERROR, "the work's own reason, by pointer");
    cr_assert_null(o.result, "a failed operation has no value");
    cr_assert_eq(stats().completed, 1);
}

Test(pool, work_claiming_more_output_than_its_room_fails)
{
    pl = pool_new(1, 8);
    cr_assert_not_null(pl);
    outcome o = {0};
    async_op_then(submit_str(overclaiming_work, "x", 8), record, &o);
    cr_assert(test_loop_run_until(&loop, &o.done, 1));
    cr_assert_eq(o.status, ASYNC_FAILED, "copying output_cap + 1 bytes would read past the job");
    cr_assert_null(o.result);
}

Test(pool, submit_on_a_scope_without_poster_fails)
{
    pl = pool_new(1, 8);
    cr_assert_not_null(pl);
    async_scope *bare = async_scope_new(loop.base);
    outcome o = {0};
    async_op_then(pool_submit(bare, pl, forbidden_work, "x", 1, 8), record, &o);
    cr_assert(test_loop_run_until(&loop, &o.done, 1));
    cr_assert_eq(o.status, ASYNC_FAILED, "no poster: the result could never come back");
    cr_assert_eq(atomic_load(&forbidden_runs), 0);
    async_scope_free(bare);
}

/* ---- the queue bound ----------------------------------------------------------------------------- */

Test(pool, full_queue_rejects_at_once_through_the_loop)
{
    pl = pool_new(1, 2);
    cr_assert_not_null(pl);
    outcome o[4] = {0};
    async_op_then(submit_str(gate_work, "1", 16), record, &o[0]);
    cr_assert(pool_test_wait(&gate_entered, 1), "the first job never started");
    async_op_then(submit_str(echo_work, "2", 16), record, &o[1]);
    async_op_then(submit_str(echo_work, "3", 16), record, &o[2]);

    async_op *fourth = submit_str(forbidden_work, "4", 16);
    async_op_then(fourth, record, &o[3]);
    cr_assert_eq(atomic_load(&continuations), 0, "a rejection must be delivered by the loop, not inside the call");
    pool_stats s = stats();
    cr_assert_eq(s.running, 1);
    cr_assert_eq(s.queued, 2);
    cr_assert_eq(s.rejected, 1);

    /* The gate is still closed: the rejection must arrive without waiting for any worker. */
    cr_assert(test_loop_run_until(&loop, &o[3].done, 1));
    cr_assert_eq(atomic_load(&continuations), 1, "only the rejection is known yet");
    cr_assert_eq(o[3].status, ASYNC_FAILED);
    cr_assert_eq(o[3].error, POOL_ERROR_FULL, "compared by pointer, as pool.h says");

    gate_open();
    cr_assert(test_loop_run_until(&loop, &continuations, 4));
    assert_result(&o[0], "gate");
    assert_result(&o[1], "2");
    assert_result(&o[2], "3");
    cr_assert_eq(atomic_load(&forbidden_runs), 0, "the rejected job ran");
    s = stats();
    cr_assert_eq(s.completed, 3);
    cr_assert_eq(s.rejected, 1);
    cr_assert_eq(s.queued, 0);
    cr_assert_eq(s.running, 0);
}

/* ---- cancellation -------------------------------------------------------------------------------- */

Test(pool, cancelling_a_queued_job_frees_it_and_its_work_never_runs)
{
    pl = pool_new(1, 1);
    cr_assert_not_null(pl);
    outcome oa = {0}, od = {0};
    async_op_then(submit_str(gate_work, "a", 16), record, &oa);
    cr_assert(pool_test_wait(&gate_entered, 1));
    async_op *b = submit_str(forbidden_work, "secret input", 16);
    async_op_then(b, must_not_run, NULL);
    cr_assert_eq(stats().queued, 1);

    async_op_cancel(b);
    pool_stats s = stats();
    cr_assert_eq(s.queued, 0);
    cr_assert_eq(s.cancelled, 1);
#ifdef POOL_TEST_HAVE_LSAN
    /* Nothing points at the dropped job any more: if it was not freed, this is where it leaks. */
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "the cancelled job leaked (see the report above)");
#endif
    /* Its slot is free again (capacity 1): the next submit is accepted, not rejected. */
    async_op_then(submit_str(echo_work, "d", 16), record, &od);
    cr_assert_eq(stats().rejected, 0);

    gate_open();
    cr_assert(test_loop_run_until(&loop, &continuations, 2));
    assert_result(&oa, "gate");
    assert_result(&od, "d");
    test_loop_spin(&loop);
    cr_assert_eq(atomic_load(&forbidden_runs), 0, "the work of a cancelled queued job ran");
    cr_assert_eq(atomic_load(&loop.posted), 2, "a dropped job posts nothing");
}

Test(pool, cancelling_a_running_job_tells_the_work_and_discards_its_output)
{
    pl = pool_new(1, 4);
    cr_assert_not_null(pl);
    async_op *a = submit_str(gate_work, "a", 16);
    async_op_then(a, must_not_run, NULL);
    cr_assert(pool_test_wait(&gate_entered, 1));

    async_op_cancel(a);
    cr_assert(pool_test_wait(&gate_saw_cancel, 1), "the work never saw pool_job_cancelled turn true");
    /* The worker still posts the job (it cannot free what the loop may be reading): the loop frees it. */
    cr_assert(test_loop_run_until(&loop, &loop.delivered, 1));
    test_loop_spin(&loop);
    cr_assert_eq(atomic_load(&continuations), 0);
    pool_stats s = stats();
    cr_assert_eq(s.cancelled, 1);
    cr_assert_eq(s.running, 0);
    cr_assert_eq(s.queued, 0);
}

Test(pool, cancelling_after_the_worker_posted_but_before_delivery_discards_the_result)
{
    pl = pool_new(1, 4);
    cr_assert_not_null(pl);
    async_op *a = submit_str(echo_work, "done already", 16);
    async_op_then(a, must_not_run, NULL);
    /* Do not run the loop: the result sits in the post queue while we cancel. */
    cr_assert(pool_test_wait(&loop.posted, 1));
    async_op_cancel(a);
    cr_assert(test_loop_run_until(&loop, &loop.delivered, 1));
    test_loop_spin(&loop);
    cr_assert_eq(atomic_load(&continuations), 0);
    cr_assert_eq(atomic_load(&echo_runs), 1);
}

Test(pool, cancelling_after_delivery_keeps_the_continuation_from_running)
{
    pl = pool_new(1, 4);
    cr_assert_not_null(pl);
    async_op *a = submit_str(echo_work, "x", 16);
    async_op_then(a, must_not_run, NULL);
    cr_assert(pool_test_wait(&loop.posted, 1));
    /* Deliver by hand, so the operation completes but its continuation is only queued. */
    test_loop_drain(&loop);
    cr_assert_eq(a->status, ASYNC_OK);
    async_op_cancel(a); /* the job is already freed: this must not touch it */
    test_loop_spin(&loop);
    cr_assert_eq(atomic_load(&continuations), 0);
}

Test(pool, deadline_of_wait_for_cancels_the_running_job)
{
    pl = pool_new(1, 4);
    cr_assert_not_null(pl);
    outcome o = {0};
    async_op_then(async_wait_for(loop.scope, submit_str(gate_work, "slow", 16), 20), record, &o);
    cr_assert(test_loop_run_until(&loop, &o.done, 1));
    cr_assert_eq(o.status, ASYNC_TIMEOUT);
    cr_assert(pool_test_wait(&gate_saw_cancel, 1), "the timed-out job kept running");
    cr_assert(test_loop_run_until(&loop, &loop.delivered, 1));
    test_loop_spin(&loop);
    cr_assert_eq(atomic_load(&continuations), 1);
    cr_assert_eq(stats().cancelled, 1);
}

Test(pool, ending_the_scope_cancels_queued_and_running_jobs)
{
    pl = pool_new(2, 4);
    cr_assert_not_null(pl);
    async_op_then(submit_str(gate_work, "r1", 16), must_not_run, NULL);
    async_op_then(submit_str(gate_work, "r2", 16), must_not_run, NULL);
    cr_assert(pool_test_wait(&gate_entered, 2), "both workers should be busy");
    async_op_then(submit_str(forbidden_work, "q1", 16), must_not_run, NULL);
    async_op_then(submit_str(forbidden_work, "q2", 16), must_not_run, NULL);
    pool_stats s = stats();
    cr_assert_eq(s.running, 2);
    cr_assert_eq(s.queued, 2);

    test_loop_free_scope(&loop); /* the request is gone: client closed, deadline, server stopping */
    s = stats();
    cr_assert_eq(s.cancelled, 4);
    cr_assert_eq(s.queued, 0, "queued jobs are dropped at once");

    cr_assert(pool_test_wait(&gate_saw_cancel, 2), "a running job never saw its cancellation");
    /* Both running jobs still come back through the poster, to be freed, not delivered: the scope is
     * gone, and the loop must not touch it. */
    cr_assert(test_loop_run_until(&loop, &loop.delivered, 2));
    test_loop_spin(&loop);
    cr_assert_eq(atomic_load(&continuations), 0);
    cr_assert_eq(atomic_load(&forbidden_runs), 0);
    cr_assert_eq(atomic_load(&loop.posted), 2);
}

/* ---- shutdown ------------------------------------------------------------------------------------ */

static void *open_gate_later(void *arg)
{
    (void)arg;
    /* Long enough that pool_shutdown has (almost surely) marked the pool stopping while jobs are still
     * queued; if not, the assertions below still hold, they just prove less. */
    pool_test_sleep_ms(200);
    gate_open();
    return NULL;
}

Test(pool, shutdown_runs_the_queued_jobs_then_refuses_new_ones)
{
    pl = pool_new(1, 8);
    cr_assert_not_null(pl);
    outcome o[6] = {0};
    static const char *inputs[] = {"j1", "j2", "j3", "j4"};
    async_op_then(submit_str(gate_work, "g", 16), record, &o[0]);
    cr_assert(pool_test_wait(&gate_entered, 1));
    for (int i = 0; i < 4; i++)
        async_op_then(submit_str(echo_work, inputs[i], 16), record, &o[i + 1]);
    cr_assert_eq(stats().queued, 4);

    pthread_t opener;
    cr_assert_eq(pthread_create(&opener, NULL, open_gate_later, NULL), 0);
    pool_shutdown(pl); /* blocks until the gate opens and all five jobs ran */
    pthread_join(opener, NULL);
    cr_assert_eq(atomic_load(&echo_runs), 4, "queued jobs were dropped by shutdown");
    pool_shutdown(pl); /* idempotent */

    async_op_then(submit_str(forbidden_work, "late", 16), record, &o[5]);
    cr_assert_eq(stats().rejected, 1);

    /* Results posted during shutdown reach the loop, which is still alive, in submit order. */
    cr_assert(test_loop_run_until(&loop, &continuations, 6));
    assert_result(&o[0], "gate");
    for (int i = 0; i < 4; i++) {
        assert_result(&o[i + 1], inputs[i]);
        cr_assert_lt(o[i].order, o[i + 1].order, "one worker runs the queue in order");
    }
    cr_assert_eq(o[5].status, ASYNC_FAILED);
    cr_assert_eq(o[5].error, POOL_ERROR_FULL);
    cr_assert_eq(atomic_load(&forbidden_runs), 0);
    pool_stats s = stats();
    cr_assert_eq(s.completed, 5);
    cr_assert_eq(s.queued, 0);
    cr_assert_eq(s.running, 0);
}

/* ---- inline pool --------------------------------------------------------------------------------- */

Test(pool, inline_pool_runs_the_work_on_the_calling_thread)
{
    pl = pool_new_inline();
    cr_assert_not_null(pl);
    outcome o = {0};
    async_op *op = pool_submit(loop.scope, pl, whoami_work, "", 0, sizeof(pthread_t));
    async_op_then(op, record, &o);
    cr_assert_eq(op->status, ASYNC_OK, "the work ran inside pool_submit");
    cr_assert_eq(atomic_load(&o.done), 0, "but its continuation still waits for the loop");
    cr_assert(test_loop_run_until(&loop, &o.done, 1));
    pthread_t worker;
    memcpy(&worker, o.result->data, sizeof(worker));
    cr_assert(pthread_equal(worker, pthread_self()), "the inline pool ran the work on another thread");
    cr_assert_eq(atomic_load(&loop.posted), 0, "no thread, nothing to post");
    pool_stats s = stats();
    cr_assert_eq(s.threads, 0);
    cr_assert_eq(s.completed, 1);
}

Test(pool, inline_pool_delivers_errors_too)
{
    pl = pool_new_inline();
    cr_assert_not_null(pl);
    outcome o = {0};
    async_op_then(submit_str(failing_work, "x", 16), record, &o);
    cr_assert(test_loop_run_until(&loop, &o.done, 1));
    cr_assert_eq(o.status, ASYNC_FAILED);
    cr_assert_eq(o.error, WORK_ERROR);
}

/* ---- stats and construction ---------------------------------------------------------------------- */

Test(pool, stats_count_jobs_and_time)
{
    pl = pool_new(1, 4);
    cr_assert_not_null(pl);
    pool_stats s = stats();
    cr_assert_eq(s.threads, 1);
    cr_assert_eq(s.queue_capacity, 4);
    cr_assert_eq(s.queued + s.running + s.completed + s.rejected + s.cancelled + s.wait_us + s.run_us, 0);

    outcome oa = {0}, ob = {0};
    async_op_then(submit_str(gate_work, "a", 16), record, &oa);
    cr_assert(pool_test_wait(&gate_entered, 1));
    async_op_then(submit_str(echo_work, "b", 16), record, &ob);
    s = stats();
    cr_assert_eq(s.running, 1);
    cr_assert_eq(s.queued, 1);
    /* Sleeping with the gate closed: a runs and b waits at least this long (lower bounds only). */
    pool_test_sleep_ms(20);
    gate_open();
    cr_assert(test_loop_run_until(&loop, &continuations, 2));
    assert_result(&oa, "gate");
    assert_result(&ob, "b");

    s = stats();
    cr_assert_eq(s.queued, 0);
    cr_assert_eq(s.running, 0);
    cr_assert_eq(s.completed, 2);
    cr_assert_eq(s.rejected, 0);
    cr_assert_eq(s.cancelled, 0);
    cr_assert_geq(s.run_us, 20000, "run_us %llu", (unsigned long long)s.run_us);
    cr_assert_geq(s.wait_us, 20000, "wait_us %llu", (unsigned long long)s.wait_us);
    cr_assert_lt(s.run_us, 10000000, "well under 10 s");
    cr_assert_lt(s.wait_us, 10000000, "well under 10 s");
}

Test(pool, new_refuses_zero_threads_or_zero_capacity)
{
    cr_assert_null(pool_new(0, 4));
    cr_assert_null(pool_new(1, 0));
    pool_free(NULL);
    pool_shutdown(NULL);
}

/* ---- pool_call: a struct of inputs with room for the results ------------------------------------- */

typedef struct sum_job {
    int values[4];
    long double align_check; /* the copy handed back must be aligned for any type */
    int sum;                 /* written by the worker */
    pthread_t worker;
} sum_job;

static const char *sum_call(pool_job *job, void *state)
{
    (void)job;
    sum_job *s = state;
    s->worker = pthread_self();
    for (int i = 0; i < 4; i++)
        s->sum += s->values[i];
    return s->sum < 0 ? "negative" : NULL;
}

Test(pool, call_runs_on_a_copy_of_the_state_and_hands_that_copy_back)
{
    pl = pool_new(1, 8);
    cr_assert_not_null(pl);
    sum_job in = {.values = {1, 2, 3, 4}};
    outcome o = {0};
    async_op_then(pool_call(loop.scope, pl, sum_call, &in, sizeof(in)), record, &o);
    memset(&in, 0, sizeof(in)); /* copied at the call: the caller's may go at once */
    cr_assert(test_loop_run_until(&loop, &o.done, 1));
    cr_assert_eq(o.status, ASYNC_OK);
    const sum_job *out = (const sum_job *)(void *)o.result; /* the value is the state, not a pool_result */
    cr_assert_eq((uintptr_t)out % _Alignof(max_align_t), 0);
    cr_assert_eq(out->sum, 10);
    cr_assert_eq(out->values[3], 4);
    cr_assert_not(pthread_equal(out->worker, pthread_self()), "the call ran on a worker");
}

Test(pool, call_failure_and_full_queue_fail_like_submit)
{
    pl = pool_new(1, 1);
    cr_assert_not_null(pl);
    sum_job neg = {.values = {-5}};
    outcome failed = {0};
    async_op_then(pool_call(loop.scope, pl, sum_call, &neg, sizeof(neg)), record, &failed);
    cr_assert(test_loop_run_until(&loop, &failed.done, 1));
    cr_assert_eq(failed.status, ASYNC_FAILED);
    cr_assert_str_eq(failed.error, "negative");
    cr_assert_null(failed.result);

    /* One worker held by a gate, one queued job: the next call is refused at once. */
    outcome held = {0}, queued = {0}, refused = {0};
    async_op_then(submit_str(gate_work, "g", 8), record, &held);
    cr_assert(pool_test_wait(&gate_entered, 1));
    async_op_then(pool_call(loop.scope, pl, sum_call, &neg, sizeof(neg)), record, &queued);
    async_op_then(pool_call(loop.scope, pl, sum_call, &neg, sizeof(neg)), record, &refused);
    cr_assert(test_loop_run_until(&loop, &refused.done, 1));
    cr_assert_eq(refused.error, POOL_ERROR_FULL);
    gate_open();
    cr_assert(test_loop_run_until(&loop, &queued.done, 1));
}
