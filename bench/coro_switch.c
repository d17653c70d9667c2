/* bench/coro_switch.c: what a coroutine switch costs (docs/benchmarks.md, issue 20). Built by CMake
 * (target coro_switch_bench), never run as a test: timings do not belong in tests.
 *
 *   taskset -c 1 build/coro_switch_bench [pairs]
 *
 * 1. asm: suspend+resume pairs of apiary's own switch (coro_switch_<arch>.S), two contexts
 *    ping-ponging, nothing else.
 * 2. ucontext: the same with glibc's swapcontext (what APIARY_CORO_UCONTEXT builds use), which also
 *    saves and restores the signal mask with a system call each way.
 * 3. await vs then: one operation per round through the whole toolkit on a libevent loop: a future is
 *    resolved, the scope's runner runs, and either a coroutine's async_await returns (a switch in and
 *    out plus the coroutine's bookkeeping) or a continuation runs. The difference is what a coroutine
 *    handler pays per await over a callback. */
#include <event2/event.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>

#include "async.h"
#include "coro_internal.h"

static double now_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* ---- 1. the raw assembly switch ---- */

static void *main_sp, *co_sp;
static long asm_rounds;

/* The coroutine's body, entered by the first switch's return (never returns itself). */
static void asm_body(void) __attribute__((noreturn, noinline));
static void asm_body(void)
{
    for (;;) {
        asm_rounds++;
        async__coro_switch(&co_sp, main_sp);
    }
}

#if defined(__x86_64__) || defined(__aarch64__)
static double bench_asm(long pairs)
{
    size_t size = 64 * 1024;
    char *stack = aligned_alloc(16, size);
    uintptr_t top = ((uintptr_t)stack + size) & ~(uintptr_t)15;
#if defined(__x86_64__)
    /* As if called: rsp % 16 == 8 at asm_body's first instruction. */
    void **f = (void **)(top - 8) - 7;
    memset(f, 0, 7 * sizeof(void *));
    f[6] = (void *)(uintptr_t)asm_body;
#else
    void **f = (void **)top - 20;
    memset(f, 0, 20 * sizeof(void *));
    f[11] = (void *)(uintptr_t)asm_body;
#endif
    co_sp = f;
    async__coro_switch(&main_sp, co_sp); /* first entry */
    double t0 = now_ns();
    for (long i = 0; i < pairs; i++)
        async__coro_switch(&main_sp, co_sp);
    double ns = (now_ns() - t0) / (double)pairs;
    free(stack); /* the coroutine is parked in its loop forever; its stack is simply dropped */
    return ns;
}
#endif

/* ---- 2. ucontext ---- */

static ucontext_t uc_main, uc_co;

static void uc_body(void)
{
    for (;;)
        swapcontext(&uc_co, &uc_main);
}

static double bench_ucontext(long pairs)
{
    size_t size = 64 * 1024;
    char *stack = malloc(size);
    getcontext(&uc_co);
    uc_co.uc_stack.ss_sp = stack;
    uc_co.uc_stack.ss_size = size;
    uc_co.uc_link = NULL;
    makecontext(&uc_co, uc_body, 0);
    swapcontext(&uc_main, &uc_co);
    double t0 = now_ns();
    for (long i = 0; i < pairs; i++)
        swapcontext(&uc_main, &uc_co);
    double ns = (now_ns() - t0) / (double)pairs;
    free(stack);
    return ns;
}

/* ---- 3. await vs then through the toolkit ---- */

typedef struct round_state {
    async_scope *scope;
    async_op *current;
    long left;
} round_state;

static void await_body(void *arg)
{
    round_state *st = arg;
    while (st->left > 0) {
        st->current = async_future(st->scope);
        async_await(st->current);
        st->left--;
    }
    st->current = NULL;
}

static void then_cb(async_op *op, void *arg)
{
    (void)op;
    round_state *st = arg;
    if (--st->left > 0) {
        st->current = async_future(st->scope);
        async_op_then(st->current, then_cb, st);
    } else {
        st->current = NULL;
    }
}

/* Each round: resolve the pending future, run the loop once (the runner runs its continuation). The
 * scope is renewed every 10,000 rounds so its memory stays small. */
static double bench_rounds(long rounds, bool coroutine)
{
    struct event_base *base = event_base_new();
    double total = 0;
    for (long done = 0; done < rounds; done += 10000) {
        round_state st = {.scope = async_scope_new(base), .left = 10000};
        double t0 = now_ns();
        if (coroutine) {
            async_coro_spawn(st.scope, await_body, &st);
        } else {
            st.current = async_future(st.scope);
            async_op_then(st.current, then_cb, &st);
        }
        while (st.current) {
            async_resolve(st.current, NULL);
            event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
        }
        total += now_ns() - t0;
        async_scope_free(st.scope);
    }
    event_base_free(base);
    return total / (double)rounds;
}

/* Other programs share the machine: each figure is the best of REPS runs (the least disturbed one),
 * with the median beside it. */
#define REPS 7

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void report(const char *what, double *runs, long n, const char *unit)
{
    qsort(runs, REPS, sizeof(*runs), cmp_double);
    printf("%-18s best %6.1f ns, median %6.1f ns %s (%d runs of %ld)\n", what, runs[0], runs[REPS / 2], unit, REPS, n);
}

int main(int argc, char **argv)
{
    long pairs = argc > 1 ? atol(argv[1]) : 5000000;
    if (pairs < 10000)
        pairs = 10000;
    double runs[REPS], then_runs[REPS], await_runs[REPS];
#if defined(__x86_64__) || defined(__aarch64__)
    bench_asm(pairs / 10); /* warm-up */
    for (int r = 0; r < REPS; r++)
        runs[r] = bench_asm(pairs);
    report("asm switch:", runs, pairs, "per suspend+resume pair");
#endif
    long uc_pairs = pairs / 10;
    for (int r = 0; r < REPS; r++)
        runs[r] = bench_ucontext(uc_pairs);
    report("ucontext:", runs, uc_pairs, "per suspend+resume pair");
    long rounds = pairs / 10;
    bench_rounds(rounds / 10, false);
    for (int r = 0; r < REPS; r++) {
        then_runs[r] = bench_rounds(rounds, false);
        await_runs[r] = bench_rounds(rounds, true);
    }
    report("then (callback):", then_runs, rounds, "per resolve + loop pass + continuation");
    report("await (coroutine):", await_runs, rounds, "per resolve + loop pass + resume + suspend");
    async_coro_pool_drain();
    return 0;
}
