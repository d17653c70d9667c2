/* Tests of async_gather_map (async.h): a bounded gather that starts its operations itself, at most
 * `limit` pending at once, in order, from the loop, and completes like async_gather. */
#include <criterion/criterion.h>

#include <event2/event.h>
#include <stdint.h>
#include <string.h>

#include "async.h"

#define LONG_MS 10000u
#define PROMPT_MS 3000u

static struct event_base *base;
static async_scope *scope;

static void map_test_setup(void)
{
    base = event_base_new();
    cr_assert_not_null(base);
    scope = async_scope_new(base);
}

static void map_test_teardown(void)
{
    if (scope)
        async_scope_free(scope);
    event_base_free(base);
}

TestSuite(async_map, .init = map_test_setup, .fini = map_test_teardown, .timeout = 30);

/* What the start functions record: the order they ran in and how many children were pending then. */
typedef struct map_probe {
    unsigned delay_ms[16];  /* child i sleeps this long, then resolves or fails */
    const char *fail[16];   /* child i's failure, NULL: success */
    async_op *work[16];
    async_op *sleep[16];    /* what completes work[i]; cancelled with it, as a real call's I/O would be */
    size_t order[16];
    size_t started;
    size_t pending_now, most_pending;
    bool inside_call;       /* set while the constructor runs: later starts must come from the loop */
    size_t started_inside;
    int completions;
} map_probe;

static map_probe probe;

static void map_test_child_done(async_op *delay, void *arg)
{
    (void)delay;
    size_t i = (size_t)(uintptr_t)arg;
    probe.pending_now--;
    if (probe.fail[i])
        async_fail(probe.work[i], probe.fail[i]);
    else
        async_resolve(probe.work[i], &probe.delay_ms[i]);
}

static void map_test_child_cancelled(async_op *work, void *arg)
{
    (void)work;
    size_t i = (size_t)(uintptr_t)arg;
    probe.pending_now--;
    async_op_cancel(probe.sleep[i]);
}

static async_op *map_test_start(async_scope *s, size_t i, void *arg)
{
    cr_assert_eq(arg, &probe);
    probe.order[probe.started++] = i;
    if (probe.inside_call)
        probe.started_inside++;
    if (++probe.pending_now > probe.most_pending)
        probe.most_pending = probe.pending_now;
    probe.work[i] = async_future(s);
    probe.sleep[i] = async_sleep(s, probe.delay_ms[i]);
    async_op_then(probe.sleep[i], map_test_child_done, (void *)(uintptr_t)i);
    async_future_on_cancel(probe.work[i], map_test_child_cancelled, (void *)(uintptr_t)i);
    return probe.work[i];
}

static void map_test_record(async_op *op, void *arg)
{
    (void)op;
    (void)arg;
    probe.completions++;
}

static async_op *map_run(size_t n, size_t limit, async_gather_mode mode)
{
    probe.inside_call = true;
    async_op *m = async_gather_map(scope, n, limit, map_test_start, &probe, mode);
    probe.inside_call = false;
    async_op_then(m, map_test_record, NULL);
    cr_assert_eq(event_base_dispatch(base), 1);
    cr_assert_eq(probe.completions, 1, "the map completes once");
    return m;
}

Test(async_map, starts_in_order_never_more_than_limit_at_once)
{
    memset(&probe, 0, sizeof(probe));
    unsigned delays[] = {30, 5, 20, 1, 10, 1, 15};
    memcpy(probe.delay_ms, delays, sizeof(delays));
    probe.fail[3] = "refused";
    async_op *m = map_run(7, 2, ASYNC_GATHER_ALL);
    cr_assert_eq(m->status, ASYNC_OK, "ALL completes OK; each child says how it went");
    cr_assert_eq(probe.started, 7);
    cr_assert_eq(probe.most_pending, 2);
    cr_assert_eq(probe.started_inside, 2, "the first `limit` start in the call, the others from the loop");
    for (size_t i = 0; i < 7; i++) {
        cr_assert_eq(probe.order[i], i);
        cr_assert_eq(async_gather_child(m, i), probe.work[i]);
        cr_assert_eq(async_gather_child(m, i)->status, i == 3 ? ASYNC_FAILED : ASYNC_OK, "child %zu", i);
    }
    cr_assert_str_eq(async_gather_child(m, 3)->error, "refused");
    cr_assert_null(async_gather_child(m, 7));
}

Test(async_map, no_limit_starts_everything_at_once)
{
    memset(&probe, 0, sizeof(probe));
    async_op *m = map_run(5, 0, ASYNC_GATHER_ALL);
    cr_assert_eq(m->status, ASYNC_OK);
    cr_assert_eq(probe.started_inside, 5);
    cr_assert_eq(probe.most_pending, 5);
}

Test(async_map, fail_fast_cancels_the_running_and_starts_no_more)
{
    memset(&probe, 0, sizeof(probe));
    unsigned delays[] = {LONG_MS, 5, LONG_MS, LONG_MS, LONG_MS};
    memcpy(probe.delay_ms, delays, sizeof(delays));
    probe.fail[1] = "boom";
    uint64_t t0 = async_now_ms();
    async_op *m = map_run(5, 2, ASYNC_GATHER_FAIL_FAST);
    cr_assert_lt(async_now_ms() - t0, PROMPT_MS, "the cancelled children's timers are gone");
    cr_assert_eq(m->status, ASYNC_FAILED);
    cr_assert_str_eq(m->error, "boom");
    cr_assert_eq(m->value, probe.work[1]);
    cr_assert_eq(probe.started, 2, "nothing starts after the failure");
    cr_assert_eq(probe.work[0]->status, ASYNC_CANCELLED);
    cr_assert_null(async_gather_child(m, 2));
}

Test(async_map, zero_items_complete_ok_soon)
{
    memset(&probe, 0, sizeof(probe));
    async_op *m = map_run(0, 3, ASYNC_GATHER_ALL);
    cr_assert_eq(m->status, ASYNC_OK);
    cr_assert_eq(probe.started, 0);
}

static async_op *map_test_start_none(async_scope *s, size_t i, void *arg)
{
    (void)arg;
    return i == 1 ? NULL : async_sleep(s, LONG_MS);
}

Test(async_map, a_start_without_an_operation_fails_the_whole)
{
    async_op *m = async_gather_map(scope, 3, 0, map_test_start_none, NULL, ASYNC_GATHER_ALL);
    cr_assert_eq(m->status, ASYNC_FAILED);
    cr_assert_str_eq(m->error, "no operation");
    cr_assert_eq(async_gather_child(m, 0)->status, ASYNC_CANCELLED, "the running one was cancelled");
    cr_assert_null(async_gather_child(m, 2));
    uint64_t t0 = async_now_ms();
    event_base_dispatch(base);
    cr_assert_lt(async_now_ms() - t0, PROMPT_MS);
}

/* Children that fail at once (an invalid HTTP call does) count as finished right away. */
static async_op *map_test_start_failed(async_scope *s, size_t i, void *arg)
{
    (void)i;
    (void)arg;
    async_op *f = async_future(s);
    async_fail(f, "at once");
    return f;
}

Test(async_map, children_complete_at_start_count_as_finished)
{
    async_op *m = async_gather_map(scope, 4, 1, map_test_start_failed, NULL, ASYNC_GATHER_ALL);
    cr_assert_eq(m->status, ASYNC_OK, "all four started and finished inside the call");
    for (size_t i = 0; i < 4; i++)
        cr_assert_str_eq(async_gather_child(m, i)->error, "at once");
    event_base_dispatch(base);
}

Test(async_map, cancelling_the_map_cancels_the_running_and_starts_no_more)
{
    memset(&probe, 0, sizeof(probe));
    for (size_t i = 0; i < 4; i++)
        probe.delay_ms[i] = LONG_MS;
    async_op *m = async_gather_map(scope, 4, 2, map_test_start, &probe, ASYNC_GATHER_ALL);
    async_op_cancel(m);
    cr_assert_eq(m->status, ASYNC_CANCELLED);
    cr_assert_eq(probe.work[0]->status, ASYNC_CANCELLED);
    cr_assert_eq(probe.work[1]->status, ASYNC_CANCELLED);
    uint64_t t0 = async_now_ms();
    event_base_dispatch(base);
    cr_assert_lt(async_now_ms() - t0, PROMPT_MS);
    cr_assert_eq(probe.started, 2);
}

Test(async_map, a_child_cancelled_by_someone_else_makes_room_from_the_loop)
{
    memset(&probe, 0, sizeof(probe));
    probe.delay_ms[0] = LONG_MS;
    probe.delay_ms[1] = 1;
    async_op *m = async_gather_map(scope, 2, 1, map_test_start, &probe, ASYNC_GATHER_ALL);
    async_op_then(m, map_test_record, NULL);
    async_op_cancel(probe.work[0]);
    cr_assert_eq(probe.started, 1, "the next one starts from the loop, not inside async_op_cancel");
    event_base_dispatch(base);
    cr_assert_eq(probe.started, 2);
    cr_assert_eq(m->status, ASYNC_OK);
    cr_assert_eq(async_gather_child(m, 0)->status, ASYNC_CANCELLED);
}

Test(async_map, ending_the_scope_mid_way_frees_everything)
{
    memset(&probe, 0, sizeof(probe));
    for (size_t i = 0; i < 6; i++)
        probe.delay_ms[i] = i < 2 ? 1 : LONG_MS;
    async_op *m = async_gather_map(scope, 6, 2, map_test_start, &probe, ASYNC_GATHER_ALL);
    async_op_then(m, map_test_record, NULL);
    event_base_loop(base, EVLOOP_ONCE); /* a first pass or so: some done, some running */
    async_scope_free(scope);
    scope = NULL;
    uint64_t t0 = async_now_ms();
    event_base_dispatch(base);
    cr_assert_lt(async_now_ms() - t0, PROMPT_MS, "no timer of the ended scope is left");
    cr_assert_eq(probe.completions, 0);
}
