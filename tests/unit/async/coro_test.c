/* coro_test: unit tests for lib/async/coro.c, the coroutines behind async_await: the switch, awaiting every
 * kind of operation (also from helpers), cancellation at every await (randomised), the stack pool and
 * its madvise watermark, idle awaits whose stacks are given back and taken back, the stack-overflow report, and how deep common code goes on a coroutine
 * stack. Meant to run under ASan+UBSan too: the switch annotations are only proven by a clean run. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "coro_internal.h"
#include "pool.h"
#include "test_loop.h"

static test_loop L;

static void coro_test_setup(void)
{
    test_loop_init(&L);
    async_coro_configure(0, ASYNC_CORO_IDLE_STACKS_DEFAULT);
}

static void coro_test_teardown(void)
{
    test_loop_fini(&L);
    async_coro_pool_drain();
}

TestSuite(coro, .init = coro_test_setup, .fini = coro_test_teardown, .timeout = 60);

static atomic_int done;

static size_t coro_live(void)
{
    async_coro_pool_stats st;
    async_coro_pool_stats_get(&st);
    return st.live;
}

/* ---- the basics -------------------------------------------------------------------------------- */

typedef struct order_state {
    int steps[8];
    int n;
} order_state;

static void order_fn(void *arg)
{
    order_state *st = arg;
    st->steps[st->n++] = 1;
    async_op *op = async_await(async_sleep(L.scope, 5));
    st->steps[st->n++] = op->status == ASYNC_OK ? 2 : -2;
    cr_expect(async_op_elapsed_ms(op) >= 5);
    atomic_fetch_add(&done, 1);
}

Test(coro, runs_until_the_first_await_then_resumes_from_the_loop)
{
    order_state st = {0};
    atomic_store(&done, 0);
    cr_assert(async_coro_spawn(L.scope, order_fn, &st));
    cr_expect(async_in_coro() == false);
    cr_assert_eq(st.n, 1, "spawn runs the coroutine until its first await");
    cr_assert_eq(coro_live(), 1);
    cr_assert(test_loop_run_until(&L, &done, 1));
    cr_assert_eq(st.n, 2);
    cr_assert_eq(st.steps[1], 2);
    cr_assert_eq(coro_live(), 0, "its stack went back to the pool when it returned");
}

static void no_await_fn(void *arg) { *(int *)arg = async_in_coro() ? 1 : -1; }

Test(coro, a_coroutine_that_never_awaits_finishes_inside_spawn)
{
    int ran = 0;
    cr_assert(async_coro_spawn(L.scope, no_await_fn, &ran));
    cr_assert_eq(ran, 1);
    cr_assert_eq(coro_live(), 0);
}

/* ---- every awaitable, from helpers --------------------------------------------------------------- */

static async_sem shared_sem;
static async_queue shared_q;
static void *shared_q_items[2];
static async_event shared_ev;
static async_lock shared_lock;
static async_cond shared_cond;
static int shared_items;
static pool *shared_pool;

/* Helpers that await: ordinary functions, called from the coroutine. */
static long helper_sleep_twice(unsigned ms)
{
    async_op *a = async_await(async_sleep(L.scope, ms));
    async_op *b = async_await(async_sleep(L.scope, ms));
    return (long)(a->status == ASYNC_OK) + (long)(b->status == ASYNC_OK);
}

static long helper_nested(int depth)
{
    if (depth == 0)
        return helper_sleep_twice(1);
    return helper_nested(depth - 1) + 1;
}

static const char *upper_work(pool_job *job, const void *input, size_t input_len, void *output, size_t output_cap,
                              size_t *output_len)
{
    (void)job;
    if (input_len > output_cap)
        return "too long";
    for (size_t i = 0; i < input_len; i++) {
        char c = ((const char *)input)[i];
        ((char *)output)[i] = (char)(c >= 'a' && c <= 'z' ? c - 32 : c);
    }
    *output_len = input_len;
    return NULL;
}

static void release_permit(void *sem) { async_sem_release(sem); }

static void resolve_later(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    async_resolve(arg, (void *)"from the loop");
}

static void every_fn(void *arg)
{
    int *failures = arg;
    async_scope *s = L.scope;
#define EXPECT(cond)                                                                                             \
    do {                                                                                                         \
        if (!(cond)) {                                                                                           \
            (*failures)++;                                                                                       \
            cr_log_error("failed: %s (line %d)", #cond, __LINE__);                                               \
        }                                                                                                        \
    } while (0)
    /* helpers, nested */
    EXPECT(helper_nested(5) == 7);

    /* a future resolved later from the loop */
    async_op *f = async_future(s);
    struct event *ev = evtimer_new(L.base, resolve_later, f);
    struct timeval tv = {0, 2000};
    evtimer_add(ev, &tv);
    async_op *r = async_await(f);
    EXPECT(r->status == ASYNC_OK && strcmp(r->value, "from the loop") == 0);
    event_free(ev);

    /* an already completed one: no switch needed, same result */
    async_op *g = async_future(s);
    async_resolve(g, (void *)"now");
    EXPECT(async_await(g)->status == ASYNC_OK);
    EXPECT(async_await(g)->value == (void *)"now"); /* awaiting twice returns the result again */

    /* gather, and its children read after it */
    async_op *kids[3] = {async_sleep(s, 1), async_sleep(s, 2), async_wait_for(s, async_sleep(s, 10000), 5)};
    async_op *all = async_await(async_gather(s, kids, 3, ASYNC_GATHER_ALL));
    EXPECT(all->status == ASYNC_OK);
    EXPECT(async_gather_child(all, 0)->status == ASYNC_OK);
    EXPECT(async_gather_child(all, 2)->status == ASYNC_TIMEOUT);

    /* wait_for timing out, wait_first */
    async_op *w = async_await(async_wait_for(s, async_future(s), 3));
    EXPECT(w->status == ASYNC_TIMEOUT && strcmp(w->error, "timeout") == 0);
    async_op *race[2] = {async_sleep(s, 10000), async_sleep(s, 1)};
    async_op *first = async_await(async_wait_first(s, race, 2, ASYNC_FIRST_CANCEL_OTHERS));
    EXPECT(first->status == ASYNC_OK && async_wait_first_index(first) == 1);

    /* a semaphore permit held across an await, released by a scope cleanup if the scope ended */
    EXPECT(async_await(async_sem_acquire(s, &shared_sem))->status == ASYNC_OK);
    async_defer *d = async_scope_defer(s, release_permit, &shared_sem);
    EXPECT(async_await(async_sleep(s, 1))->status == ASYNC_OK);
    async_defer_cancel(d);
    async_sem_release(&shared_sem);

    /* a lock; a queue (get waits for the put below it in another coroutine... here: put then get) */
    EXPECT(async_await(async_lock_acquire(s, &shared_lock))->status == ASYNC_OK);
    async_lock_release(&shared_lock);
    EXPECT(async_await(async_queue_put(s, &shared_q, (void *)"item"))->status == ASYNC_OK);
    async_op *got = async_await(async_queue_get(s, &shared_q));
    EXPECT(got->status == ASYNC_OK && strcmp(got->value, "item") == 0);

    /* an event set from another coroutine */
    EXPECT(async_await(async_event_wait(s, &shared_ev))->status == ASYNC_OK);

    /* a condition: wait under the lock until the other coroutine produced an item */
    EXPECT(async_await(async_lock_acquire(s, &shared_lock))->status == ASYNC_OK);
    while (shared_items == 0)
        EXPECT(async_await(async_cond_wait(s, &shared_cond))->status == ASYNC_OK);
    shared_items--;
    async_lock_release(&shared_lock);

    /* a subprocess */
    const char *argv[] = {"/bin/sh", "-c", "echo coroutine", NULL};
    async_subprocess_options o = {.argv = argv, .timeout_ms = 10000};
    async_op *p = async_await(async_subprocess(s, &o));
    const async_subprocess_result *res = p->value;
    EXPECT(p->status == ASYNC_OK && res->exit_code == 0 && strcmp(res->out, "coroutine\n") == 0);

    /* a pool job: CPU work on a worker thread, awaited */
    async_op *job = async_await(pool_submit(s, shared_pool, upper_work, "abc", 3, 16));
    EXPECT(job->status == ASYNC_OK && strcmp((const char *)((pool_result *)job->value)->data, "ABC") == 0);
    atomic_fetch_add(&done, 1);
#undef EXPECT
}

static void producer_fn(void *arg)
{
    (void)arg;
    async_scope *s = L.scope;
    async_await(async_sleep(s, 20));
    async_event_set(&shared_ev);
    async_await(async_lock_acquire(s, &shared_lock));
    shared_items++;
    async_cond_notify(&shared_cond, 1);
    async_lock_release(&shared_lock);
    atomic_fetch_add(&done, 1);
}

Test(coro, every_toolkit_operation_is_awaitable_also_from_helpers)
{
    async_sem_init(&shared_sem, 1);
    async_queue_init(&shared_q, shared_q_items, 2);
    async_event_init(&shared_ev);
    async_lock_init(&shared_lock);
    async_cond_init(&shared_cond, &shared_lock);
    shared_items = 0;
    shared_pool = pool_new(1, 8);
    atomic_store(&done, 0);
    int failures = 0;
    cr_assert(async_coro_spawn(L.scope, every_fn, &failures));
    cr_assert(async_coro_spawn(L.scope, producer_fn, NULL));
    cr_assert(test_loop_run_until(&L, &done, 2));
    cr_expect_eq(failures, 0);
    cr_expect_eq(shared_sem.permits, 1);
    cr_expect_eq(coro_live(), 0);
    test_loop_free_scope(&L);
    pool_free(shared_pool);
}

/* ---- callbacks and coroutines share one toolkit ---------------------------------------------------- */

static void cb_resolve(async_op *op, void *arg)
{
    (void)op;
    async_resolve(arg, (void *)"from a callback");
}

static void mixed_fn(void *arg)
{
    async_op *f = arg;
    async_op *r = async_await(f);
    cr_expect_eq(r->status, ASYNC_OK);
    cr_expect_str_eq(r->value, "from a callback");
    atomic_fetch_add(&done, 1);
}

Test(coro, a_callback_completes_what_a_coroutine_awaits)
{
    atomic_store(&done, 0);
    async_op *f = async_future(L.scope);
    async_op_then(async_sleep(L.scope, 2), cb_resolve, f);
    cr_assert(async_coro_spawn(L.scope, mixed_fn, f));
    cr_assert(test_loop_run_until(&L, &done, 1));
}

/* ---- cancellation ------------------------------------------------------------------------------- */

/* A handler with many awaits of different kinds; the test ends its scope at a random one. */
enum { CANCEL_AWAITS = 8 };

typedef struct cancel_state {
    async_scope *scope;
    async_sem sem;      /* 0 permits: an acquire waits until the driver releases */
    async_queue q;      /* empty: a get waits until the driver puts */
    void *q_items[2];
    async_event ev;
    async_op *current;  /* what the coroutine awaits now (for the driver) */
    int kind;           /* its kind */
    int completed;      /* awaits that returned OK */
    int cancelled;      /* awaits that returned ASYNC_CANCELLED */
    int other;
    bool returned;
    int permits_taken;    /* acquires that completed (the permit is held to the end) */
    int permits_released; /* by the scope cleanup */
    int resumes_after_cancel;
} cancel_state;

static void cancel_release_permit(void *arg)
{
    cancel_state *st = arg;
    st->permits_released++;
}

static async_op *cancel_start(cancel_state *st, int i)
{
    async_scope *s = st->scope;
    st->kind = i % 6;
    switch (st->kind) {
    case 0: return async_future(s);
    case 1: return async_sem_acquire(s, &st->sem);
    case 2: return async_queue_get(s, &st->q);
    case 3: return async_event_wait(s, &st->ev);
    case 4: {
        async_op *two[2] = {async_future(s), async_future(s)};
        return async_gather(s, two, 2, ASYNC_GATHER_ALL);
    }
    default: return async_wait_for(s, async_sleep(s, 1), 60000);
    }
}

static void cancel_fn(void *arg)
{
    cancel_state *st = arg;
    bool seen_cancel = false;
    for (int i = 0; i < CANCEL_AWAITS; i++) {
        st->current = cancel_start(st, i);
        async_op *op = async_await(st->current);
        if (op->status == ASYNC_CANCELLED) {
            st->cancelled++;
            seen_cancel = true;
            continue; /* a careless handler awaits on: every later await must return at once */
        }
        if (seen_cancel)
            st->resumes_after_cancel++;
        if (op->status == ASYNC_OK)
            st->completed++;
        else
            st->other++;
        if (st->kind == 1) { /* holding a permit: a cleanup gives it back however the scope ends */
            st->permits_taken++;
            async_scope_defer(st->scope, cancel_release_permit, st);
        }
    }
    st->current = NULL;
    st->returned = true;
}

/* Completes what the coroutine awaits now, as the outside world would. */
static void cancel_complete_current(cancel_state *st)
{
    async_op *op = st->current;
    switch (st->kind) {
    case 0: async_resolve(op, NULL); break;
    case 1: async_sem_release(&st->sem); break;
    case 2: async_queue_try_put(&st->q, (void *)"x"); break;
    case 3: async_event_set(&st->ev); async_event_clear(&st->ev); break;
    case 4:
        async_resolve(async_gather_child(op, 0), NULL);
        async_resolve(async_gather_child(op, 1), NULL);
        break;
    default: break; /* wait_for around a 1 ms sleep: completes from the loop */
    }
}

static void cancel_run_once(unsigned seed)
{
    srand(seed);
    int stop_at = rand() % (CANCEL_AWAITS + 1); /* awaits that complete before the scope ends */
    bool undelivered = rand() % 2;               /* end it right after completing, before the runner */
    cancel_state *st = calloc(1, sizeof(*st));
    cr_assert_not_null(st);
    st->scope = async_scope_new(L.base);
    async_sem_init(&st->sem, 0);
    async_queue_init(&st->q, st->q_items, 2);
    async_event_init(&st->ev);
    cr_assert(async_coro_spawn(st->scope, cancel_fn, st));
    for (int i = 0; i < stop_at && !st->returned; i++) {
        int before = st->completed + st->other;
        cancel_complete_current(st);
        if (i == stop_at - 1 && undelivered)
            break; /* completed, its continuation queued: the scope ends before it runs */
        while (st->completed + st->other == before)
            event_base_loop(L.base, EVLOOP_ONCE);
    }
    bool was_returned = st->returned;
    async_scope_free(st->scope);
    cr_assert(st->returned, "seed %u: the coroutine returned when its scope ended", seed);
    cr_assert_eq(coro_live(), 0, "seed %u: its stack is back in the pool", seed);
    cr_assert_eq(st->resumes_after_cancel, 0, "seed %u: no await waited after the cancellation", seed);
    if (!was_returned)
        cr_assert_eq(st->cancelled, CANCEL_AWAITS - st->completed - st->other,
                     "seed %u: every await from the cancelled one on returned ASYNC_CANCELLED", seed);
    cr_assert_eq(st->permits_released, st->permits_taken, "seed %u: every held permit released by its cleanup", seed);
    cr_assert_eq(async_sem_waiting(&st->sem), 0);
    cr_assert_eq(async_event_waiting(&st->ev), 0);
    free(st);
}

Test(coro, cancelled_at_any_await_returns_cancelled_and_unwinds)
{
    unsigned seed0 = (unsigned)time(NULL);
    cr_log_info("seed base %u", seed0);
    for (unsigned i = 0; i < 300; i++)
        cancel_run_once(seed0 + i);
}

/* The coroutine ends its own scope (as answering a request does) and carries on. */
static void self_end_fn(void *arg)
{
    async_scope *s = arg;
    cr_expect_eq(async_await(async_sleep(s, 1))->status, ASYNC_OK);
    async_scope_free(s);
    async_op *op = async_await(async_sleep(s, 10000)); /* born cancelled: returns at once */
    cr_expect_eq(op->status, ASYNC_CANCELLED);
    atomic_fetch_add(&done, 1);
}

Test(coro, ending_its_own_scope_makes_later_awaits_return_at_once)
{
    atomic_store(&done, 0);
    async_scope *s = async_scope_new(L.base);
    cr_assert(async_coro_spawn(s, self_end_fn, s));
    cr_assert(test_loop_run_until(&L, &done, 1));
    cr_assert_eq(coro_live(), 0);
}

/* Bound lazily: a coroutine spawned without a scope takes the scope of its first await. */
static void lazy_fn(void *arg)
{
    async_scope *s = arg;
    async_op *op = async_await(async_sleep(s, 60000));
    cr_expect_eq(op->status, ASYNC_CANCELLED);
    cr_expect_str_eq(op->error, "cancelled");
    atomic_fetch_add(&done, 1);
}

Test(coro, an_unbound_coroutine_is_cancelled_with_the_scope_of_its_first_await)
{
    atomic_store(&done, 0);
    async_scope *s = async_scope_new(L.base);
    cr_assert(async_coro_spawn_named(NULL, "GET /lazy", lazy_fn, s));
    cr_assert_eq(atomic_load(&done), 0);
    async_scope_free(s);
    cr_assert_eq(atomic_load(&done), 1);
    cr_assert_eq(coro_live(), 0);
}

/* Children spawned by a coroutine may point into its stack: when the scope ends they unwind first. */
typedef struct child_arg {
    int *order;
    int *n;
    int id;
    async_op *done;
} child_arg;

static void child_fn(void *arg)
{
    child_arg *c = arg; /* on the parent's stack */
    async_op *op = async_await(async_sleep(L.scope, 60000));
    cr_expect_eq(op->status, ASYNC_CANCELLED);
    c->order[(*c->n)++] = c->id;
    async_resolve(c->done, NULL);
}

static int family_order[8], family_n;

static void parent_fn(void *arg)
{
    (void)arg;
    child_arg kids[3];
    async_op *done[3];
    for (int i = 0; i < 3; i++) {
        kids[i] = (child_arg){family_order, &family_n, i + 1, done[i] = async_future(L.scope)};
        cr_assert(async_coro_spawn(L.scope, child_fn, &kids[i]));
    }
    async_op *all = async_await(async_gather(L.scope, done, 3, ASYNC_GATHER_ALL));
    cr_expect_eq(all->status, ASYNC_CANCELLED);
    family_order[family_n++] = 0;
}

Test(coro, children_unwind_before_the_parent_whose_stack_they_use)
{
    family_n = 0;
    cr_assert(async_coro_spawn_named(NULL, "parent", parent_fn, NULL)); /* bound when it spawns */
    cr_assert_eq(coro_live(), 4);
    test_loop_free_scope(&L);
    cr_assert_eq(coro_live(), 0);
    cr_assert_eq(family_n, 4);
    cr_assert_eq(family_order[3], 0, "the parent unwound last");
}

/* ---- stacks ------------------------------------------------------------------------------------ */

static void park_fn(void *arg) { async_await(arg); }

Test(coro, stacks_are_reused_and_idle_ones_above_the_watermark_are_given_back)
{
    async_coro_configure(0, 2);
    async_op *f[5];
    for (int i = 0; i < 5; i++) {
        f[i] = async_future(L.scope);
        cr_assert(async_coro_spawn(L.scope, park_fn, f[i]));
    }
    async_coro_pool_stats st;
    async_coro_pool_stats_get(&st);
    cr_assert_eq(st.live, 5);
    cr_assert_eq(st.mapped, 5);
    for (int i = 0; i < 5; i++)
        async_resolve(f[i], NULL);
    while (coro_live() > 0)
        event_base_loop(L.base, EVLOOP_ONCE);
    async_coro_pool_stats_get(&st);
    cr_assert_eq(st.hot, 2, "two stay resident (the watermark)");
    cr_assert_eq(st.cold, 3, "the rest were given back with madvise, still mapped");
    for (int i = 0; i < 5; i++) {
        f[i] = async_future(L.scope);
        cr_assert(async_coro_spawn(L.scope, park_fn, f[i]));
    }
    async_coro_pool_stats_get(&st);
    cr_assert_eq(st.mapped, 5, "no new mapping: all five came from the pool");
    cr_assert_eq(st.hot + st.cold, 0);
    for (int i = 0; i < 5; i++)
        async_resolve(f[i], NULL);
    while (coro_live() > 0)
        event_base_loop(L.base, EVLOOP_ONCE);
    /* A new size: pooled stacks of the old one are unmapped as they are met. */
    async_coro_configure(128, 2);
    f[0] = async_future(L.scope);
    cr_assert(async_coro_spawn(L.scope, park_fn, f[0]));
    async_coro_pool_stats_get(&st);
    cr_assert_eq(st.mapped, 1);
    cr_assert_eq(st.stack_bytes, 128 * 1024 * ASYNC_CORO_STACK_SCALE);
    async_resolve(f[0], NULL);
    while (coro_live() > 0)
        event_base_loop(L.base, EVLOOP_ONCE);
}

/* ---- idle awaits: the stack given back while it waits --------------------------------------------- */

static void *idle_local_page; /* a page of the coroutine's stack, for mincore */

static bool page_resident(const void *addr)
{
    long page = sysconf(_SC_PAGESIZE);
    void *base = (void *)((uintptr_t)addr & ~(uintptr_t)(page - 1));
    unsigned char vec = 0;
    cr_assert_eq(mincore(base, (size_t)page, &vec), 0);
    return vec & 1;
}

typedef struct idle_round {
    async_op *future; /* resolved by the test with (void *)(uintptr_t)(round + 100) */
    int round;
} idle_round;

/* Deeper than one frame, with locals that point at each other and into the stack: what must survive
 * being copied out and back to the same addresses. */
static int idle_deep(idle_round *rounds, int n, int depth)
{
    unsigned char pattern[600];
    unsigned char *self = pattern; /* a pointer into this very stack */
    for (size_t i = 0; i < sizeof(pattern); i++)
        pattern[i] = (unsigned char)(i * 7 + (size_t)depth);
    if (depth > 0)
        return idle_deep(rounds, n, depth - 1) + (self[599] == (unsigned char)(599 * 7 + depth));
    /* The frame itself, not a local: with detect_stack_use_after_return, ASan keeps locals on its
     * heap-allocated fake stack, but the frame is on the coroutine's stack all the same. */
    idle_local_page = __builtin_frame_address(0);
    int ok = 0;
    for (int r = 0; r < n; r++) {
        async_op *op = async_await_idle(rounds[r].future);
        ok += op == rounds[r].future && op->status == ASYNC_OK &&
              (uintptr_t)op->value == (uintptr_t)(rounds[r].round + 100);
        for (size_t i = 0; i < sizeof(pattern); i++)
            ok -= self[i] != (unsigned char)(i * 7);
    }
    return ok;
}

static int idle_result;

static void idle_fn(void *arg)
{
    idle_round *rounds = arg;
    idle_result = idle_deep(rounds, 3, 3);
    atomic_fetch_add(&done, 1);
}

Test(coro, an_idle_await_given_back_resumes_with_its_locals_and_its_result)
{
    atomic_store(&done, 0);
    idle_result = -1;
    idle_round rounds[3];
    for (int r = 0; r < 3; r++)
        rounds[r] = (idle_round){async_future(L.scope), r};
    cr_assert(async_coro_spawn(L.scope, idle_fn, rounds));
    async_coro_pool_stats st;
    for (int r = 0; r < 3; r++) {
        cr_assert(page_resident(idle_local_page), "suspended: its stack is resident");
        cr_assert_eq(async_coro_release_idle(0, SIZE_MAX), 1, "round %d", r);
        async_coro_pool_stats_get(&st);
        cr_assert_eq(st.released, 1);
        /* 4 frames of 600 bytes and the struct: more than 2,400, less than the 64 KiB stack */
        cr_assert(st.released_bytes > 2400 && st.released_bytes < 8192, "%zu bytes", st.released_bytes);
        cr_assert_not(page_resident(idle_local_page), "given back: the page is gone from RSS");
        cr_assert_eq(async_coro_release_idle(0, SIZE_MAX), 0, "given back once");
        async_resolve(rounds[r].future, (void *)(uintptr_t)(r + 100));
        if (r < 2) {
            while (!page_resident(idle_local_page))
                event_base_loop(L.base, EVLOOP_ONCE); /* until it resumed (and suspended again) */
            async_coro_pool_stats_get(&st);
            cr_assert_eq(st.released, 0, "taken back when its operation completed");
        }
    }
    cr_assert(test_loop_run_until(&L, &done, 1));
    cr_assert_eq(idle_result, 3 + 3, "every round got its own result and intact locals (and each frame its own)");
    async_coro_pool_stats_get(&st);
    cr_assert_eq(st.released, 0);
    cr_assert_eq(st.released_bytes, 0);
    cr_assert_eq(st.live, 0);
}

/* Given back, then its scope ends: the scope's cleanups run in their order, the coroutine's among them
 * (its stand-in took its place in the list), and it unwinds with ASYNC_CANCELLED and its locals. */
static int cleanup_order[4], cleanup_n;

static void cleanup_mark(void *arg) { cleanup_order[cleanup_n++] = (int)(uintptr_t)arg; }

static void idle_cancel_fn(void *arg)
{
    async_scope *s = arg;
    char name[32];
    snprintf(name, sizeof(name), "local %d", 42);
    async_op *op = async_await_idle(async_sleep(s, 60000));
    cr_expect_eq(op->status, ASYNC_CANCELLED);
    cr_expect_str_eq(name, "local 42");
    cleanup_order[cleanup_n++] = 2;
    atomic_fetch_add(&done, 1);
}

Test(coro, an_idle_await_given_back_is_cancelled_in_its_place_among_the_scope_cleanups)
{
    for (int wake_between = 0; wake_between < 2; wake_between++) {
        atomic_store(&done, 0);
        cleanup_n = 0;
        async_scope *s = async_scope_new(L.base);
        async_scope_defer(s, cleanup_mark, (void *)(uintptr_t)3); /* older: runs after the coroutine */
        cr_assert(async_coro_spawn(s, idle_cancel_fn, s));
        async_scope_defer(s, cleanup_mark, (void *)(uintptr_t)1); /* newer: runs before */
        cr_assert_eq(async_coro_release_idle(0, SIZE_MAX), 1);
        if (wake_between) {
            /* Taken back by a cleanup of another kind: withdrawn defers around it keep the list sound. */
            async_defer *extra = async_scope_defer(s, cleanup_mark, (void *)(uintptr_t)9);
            async_defer_cancel(extra);
        }
        async_scope_free(s);
        cr_assert_eq(atomic_load(&done), 1);
        cr_assert_eq(cleanup_n, 3);
        cr_assert_eq(cleanup_order[0], 1);
        cr_assert_eq(cleanup_order[1], 2);
        cr_assert_eq(cleanup_order[2], 3);
        cr_assert_eq(coro_live(), 0);
        async_coro_pool_stats st;
        async_coro_pool_stats_get(&st);
        cr_assert_eq(st.released, 0);
    }
}

static void plain_park_fn(void *arg) { async_await(arg); }
static void idle_park_fn(void *arg) { async_await_idle(arg); }

Test(coro, the_tick_gives_back_only_idle_awaits_older_than_a_tick)
{
    async_op *plain = async_future(L.scope), *idle = async_future(L.scope);
    cr_assert(async_coro_spawn(L.scope, plain_park_fn, plain));
    cr_assert(async_coro_spawn(L.scope, idle_park_fn, idle));
    async_coro_pool_stats st;
    async_coro_tick(); /* it may have suspended just before this tick: not a second yet */
    async_coro_pool_stats_get(&st);
    cr_assert_eq(st.released, 0);
    async_coro_tick(); /* suspended since before the previous tick: at least a second */
    async_coro_pool_stats_get(&st);
    cr_assert_eq(st.released, 1, "the idle await, never the plain one");
    for (int i = 0; i < 5; i++)
        async_coro_tick();
    async_coro_pool_stats_get(&st);
    cr_assert_eq(st.released, 1);
    async_resolve(idle, NULL);
    async_resolve(plain, NULL);
    while (coro_live() > 0)
        event_base_loop(L.base, EVLOOP_ONCE);
    async_coro_pool_stats_get(&st);
    cr_assert_eq(st.released, 0);
}

/* How deep common work goes on a coroutine stack (docs/async.md quotes these figures): jansson parsing,
 * writing and freeing a document nested as deep as limits.json_max_depth allows (128), json_pack, and
 * apiary's own JSON writer. */
static json_t *deep_doc;

static void deep_text(char *text)
{
    size_t n = 0;
    for (int i = 0; i < 128; i++)
        text[n++] = '[';
    for (int i = 0; i < 128; i++)
        text[n++] = ']';
    text[n] = '\0';
}

static void depth_parse_fn(void *arg)
{
    json_error_t err;
    deep_doc = json_loads(arg, 0, &err);
}

static void depth_dump_fn(void *arg)
{
    (void)arg;
    free(json_dumps(deep_doc, JSON_COMPACT));
}

static void depth_free_fn(void *arg)
{
    (void)arg;
    json_decref(deep_doc);
}

static void depth_pack_fn(void *arg)
{
    (void)arg;
    json_decref(json_pack("{s:s,s:i,s:[i,i,{s:b}]}", "a", "b", "c", 1, "d", 1, 2, "e", 1));
}

static size_t depth_of(void (*fn)(void *), void *arg)
{
    async_coro_measure(true);
    cr_assert(async_coro_spawn(L.scope, fn, arg));
    size_t deepest = async_coro_deepest();
    async_coro_measure(false);
    return deepest;
}

Test(coro, common_work_stays_inside_the_default_stack)
{
    char text[2 * 128 + 1];
    deep_text(text);
    size_t parse = depth_of(depth_parse_fn, text);
    cr_assert_not_null(deep_doc);
    size_t dump = depth_of(depth_dump_fn, NULL);
    size_t freed = depth_of(depth_free_fn, NULL);
    size_t pack = depth_of(depth_pack_fn, NULL);
    async_coro_pool_stats st;
    async_coro_pool_stats_get(&st);
    fprintf(stderr, "stack used, 128-deep document: json_loads %zu, json_dumps %zu, json_decref %zu; json_pack %zu "
                "(bytes of a %zu-byte stack)\n", parse, dump, freed, pack, st.stack_bytes);
    cr_assert_lt(parse, st.stack_bytes);
    cr_assert_lt(dump, st.stack_bytes);
    cr_assert_lt(freed, st.stack_bytes);
}

/* ---- overflow ---------------------------------------------------------------------------------- */

static unsigned recurse(unsigned n)
{
    volatile char pad[512];
    pad[0] = (char)n;
    return n == 0 ? 0 : recurse(n - 1) + (unsigned)pad[0];
}

static void overflow_fn(void *arg)
{
    (void)arg;
    unsigned r = recurse(1u << 20);
    cr_log_error("unreachable %u", r);
}

Test(coro, an_overflow_hits_the_guard_page_and_aborts_naming_the_route)
{
    int fds[2];
    cr_assert_eq(pipe(fds), 0);
    pid_t pid = fork();
    cr_assert_neq(pid, -1);
    if (pid == 0) {
        dup2(fds[1], STDERR_FILENO);
        close(fds[0]);
        async_coro_spawn_named(L.scope, "GET /v1/deep", overflow_fn, NULL);
        _exit(0); /* not reached */
    }
    close(fds[1]);
    char buf[8192];
    size_t n = 0;
    ssize_t r;
    while (n < sizeof(buf) - 1 && (r = read(fds[0], buf + n, sizeof(buf) - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    close(fds[0]);
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFSIGNALED(status), "the child died of a signal (status %d); it said: %s", status, buf);
    cr_assert_eq(WTERMSIG(status), SIGABRT, "SIGABRT, not a silent SIGSEGV; it said: %s", buf);
    cr_assert(strstr(buf, "coroutine stack overflow in GET /v1/deep") != NULL, "the log names the route: %s", buf);
}

/* ---- async__coro_after: work for the resumer's stack, once the coroutine has switched out --------- */

typedef struct after_state {
    int log[8];
    int n;
    bool ran_in_coro; /* where the deferred work ran */
} after_state;

static void after_note(void *arg)
{
    after_state *st = arg;
    st->ran_in_coro = st->ran_in_coro || async_in_coro();
    int at = st->n++;
    st->log[at] = 100 + at;
}

static void after_fn(void *arg)
{
    after_state *st = arg;
    st->log[st->n++] = 1;
    async__coro_after(after_note, st); /* runs once we return, not now */
    st->log[st->n++] = 2;
    async__coro_after(after_note, st); /* a second one: now, outside, as async_coro_outside */
    st->log[st->n++] = 3;
}

Test(coro, deferred_outside_work_runs_on_the_resumers_stack_after_the_coroutine_switched_out)
{
    after_state st = {0};
    async__coro_after(after_note, &st); /* outside a coroutine: at once */
    cr_assert_eq(st.n, 1);
    st.n = 0;
    cr_assert(async_coro_spawn(L.scope, after_fn, &st));
    /* 1, 2, then the second goes out at once (as async_coro_outside), which is the first switch out:
     * the pending first runs there too, before it; then 3. Nothing is left for the return. */
    cr_assert_eq(st.n, 5);
    cr_assert_eq(st.log[0], 1);
    cr_assert_eq(st.log[1], 2);
    cr_assert_eq(st.log[2], 102);
    cr_assert_eq(st.log[3], 103);
    cr_assert_eq(st.log[4], 3);
    cr_assert_not(st.ran_in_coro, "deferred work never runs on the coroutine's stack");
    cr_assert_eq(coro_live(), 0);
}

static void after_then_await_fn(void *arg)
{
    after_state *st = arg;
    async__coro_after(after_note, st);
    st->log[st->n++] = 1;
    async_await(async_sleep(L.scope, 1)); /* suspending runs the deferred work */
    st->log[st->n++] = 2;
    atomic_fetch_add(&done, 1);
}

Test(coro, deferred_outside_work_runs_when_the_coroutine_suspends)
{
    after_state st = {0};
    atomic_store(&done, 0);
    cr_assert(async_coro_spawn(L.scope, after_then_await_fn, &st));
    cr_assert_eq(st.n, 2, "ran when the coroutine suspended in its await");
    cr_assert_eq(st.log[1], 101);
    cr_assert(test_loop_run_until(&L, &done, 1));
    cr_assert_eq(st.log[2], 2);
    cr_assert_not(st.ran_in_coro);
}

static void after_only_fn(void *arg)
{
    after_state *st = arg;
    async__coro_after(after_note, st);
    st->log[st->n++] = 1;
}

Test(coro, deferred_outside_work_runs_when_the_coroutine_returns)
{
    after_state st = {0};
    cr_assert(async_coro_spawn(L.scope, after_only_fn, &st));
    cr_assert_eq(st.n, 2);
    cr_assert_eq(st.log[0], 1, "not before the coroutine's next line");
    cr_assert_eq(st.log[1], 101);
    cr_assert_not(st.ran_in_coro);
    cr_assert_eq(coro_live(), 0);
}
