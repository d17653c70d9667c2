/* coro: stackful coroutines for the async toolkit: async_await, async_coro_spawn and coroutine route
 * handlers (ROUTE_CORO).
 *
 * A coroutine runs a function on a stack of its own, on its loop's thread. async_await(op) attaches
 * "resume this coroutine" as op's continuation and switches back to whoever resumed the coroutine (the
 * loop); when op completes, the scope's runner calls that continuation like any other, which switches
 * back in, and async_await returns op. So every operation of the toolkit is awaitable and none of them
 * knows about coroutines: an await is a continuation that happens to be the rest of a C function.
 *
 * Cancellation. A coroutine is bound to one scope (given at spawn, or the scope of the first operation
 * it awaits) through a scope cleanup (async_scope_defer). When the scope ends, its operations are
 * cancelled first (so the awaited one's continuation never runs), then the cleanup resumes the
 * coroutine once, marked cancelled: the await it was suspended in and every later one return at once
 * with ASYNC_CANCELLED, the function unwinds through its own code, returns, and the cleanup returns
 * with the stack back in the pool. Cleanups run inside async_scope_free, before the owner frees the
 * scope's memory (a request's arena), so everything the function points at is still valid while it
 * unwinds. Nothing longjmps through user frames. A coroutine that is running (or parked in
 * async_coro_outside) when its scope ends, e.g. because it answered its own request, is only marked.
 *
 * Stacks. mmap'ed, with a PROT_NONE guard page below, and the coroutine's own struct at the top of the
 * same mapping (no other allocation). Each thread keeps a pool: up to coroutines.idle_stacks idle
 * stacks stay resident (their touched pages are the cost), the ones above that are given back to the
 * kernel with madvise(MADV_DONTNEED) but stay mapped, and past ASYNC_CORO_COLD_MAX they are unmapped.
 * A thread that runs coroutines gets an alternate signal stack, and a SIGSEGV in a guard page is
 * reported with the coroutine's name (the route) before the process aborts: an overflow is a clear
 * crash, never silent corruption of the neighbouring memory.
 *
 * Idle awaits. async_await_idle parks the coroutine on its thread's idle list (oldest first). The
 * loop's one-second tick (async_coro_tick) gives back the stack of each one suspended there for at
 * least a full tick: the bytes from its stack pointer to the kept part of its struct are copied to a heap
 * block of exactly that size (coro_saved), the scope cleanup and the awaited operation's continuation
 * are pointed at that block, and the whole stack is madvise(MADV_DONTNEED)'d. Whichever comes first,
 * the continuation or the cleanup, copies the bytes back to the same addresses (the frames hold
 * pointers into themselves), points both back at the struct and goes on as for any coroutine. Only
 * for awaits that promise nothing else touches the stack meanwhile: see async.h.
 *
 * The switch. coro_switch_x86_64.S / coro_switch_aarch64.S: about 20 instructions saving only the
 * callee-saved general registers (and d8-d15 on aarch64; no signal mask, no FP control state, no
 * system call); elsewhere, or with APIARY_CORO_UCONTEXT,
 * glibc's swapcontext. Every switch is announced to AddressSanitizer (start/finish_switch_fiber), so
 * the suite runs under ASan with coroutines; docs/async.md has the measurements and the CET note. */
#include "coro_internal.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "async_op_internal.h"
#include "log.h"
#include "xalloc_internal.h"

#if (defined(__x86_64__) || defined(__aarch64__)) && !defined(APIARY_CORO_UCONTEXT)
#define CORO_ASM 1
#else
#define CORO_ASM 0
#include <ucontext.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define CORO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORO_ASAN 1
#endif
#endif
#ifndef CORO_ASAN
#define CORO_ASAN 0
#endif
#if CORO_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define CORO_ASAN_START(save, bottom, size) __sanitizer_start_switch_fiber(save, bottom, size)
#define CORO_ASAN_FINISH(save, bottom, size) __sanitizer_finish_switch_fiber(save, bottom, size)
#define CORO_ASAN_UNPOISON(p, n) __asan_unpoison_memory_region(p, n)
#else
#define CORO_ASAN_START(save, bottom, size) ((void)0)
#define CORO_ASAN_FINISH(save, bottom, size) ((void)0)
#define CORO_ASAN_UNPOISON(p, n) ((void)0)
#endif

typedef enum coro_state {
    CORO_RUNNING,   /* on the chain of running code (it may itself have resumed another coroutine) */
    CORO_SUSPENDED, /* in async_await, waiting for its operation's continuation */
    CORO_OUTSIDE,   /* parked while async_coro_outside runs a function on its resumer's stack */
    CORO_DONE,      /* its function returned; the resumer gives the stack back */
} coro_state;

typedef struct async_coro {
    /* What a coroutine whose stack was given back keeps (coro_give_back copies up to CORO_KEPT): */
    void *sp; /* the coroutine's stack pointer while it is switched out (assembly switch) */
#if !CORO_ASM
    ucontext_t uc, caller_uc;
#endif
    unsigned char *map; /* the mapping: guard page, stack, this struct */
    size_t map_len;
    unsigned char *stack_lo; /* lowest usable byte (just above the guard page) */
    size_t stack_size;       /* usable bytes up to this struct (the configured size, rounded up) */
    size_t stack_config;     /* the configured size when it was made, for the overflow report */
    const char *label;  /* for the overflow report */
    async_scope *scope; /* bound scope, NULL until the first await of an unbound coroutine */
    async_defer *defer; /* the scope cleanup that cancels us; NULL once it ran or was withdrawn */
    async_defer defer_node; /* where it lives: binding allocates nothing in the scope */
    async_op *waiting;  /* what it is suspended on */
    coro_state state;
    bool cancelled;
#if CORO_ASAN
    void *asan_fake; /* ASan's fake stack of the coroutine while it is switched out */
#endif
    /* Only meaningful while it starts, runs or sits on the idle list: not kept while its stack is
     * given back, zero when it comes back. */
    void *caller_sp; /* its resumer's stack pointer while it runs */
    void (*fn)(void *arg); /* read once, when it starts */
    void *arg;
    void (*outside_fn)(void *arg);
    void *outside_arg;
    void (*after_fn)(void *arg); /* async__coro_after: run by the resumer once we are switched out */
    void *after_arg;
    struct async_coro *idle_prev, *idle_next; /* the thread's idle list (async_await_idle) */
    unsigned idle_tick;                       /* the thread's tick when it went on that list */
    bool idle;                                /* on that list */
#if CORO_ASAN
    const void *caller_bottom; /* ASan: the resumer's stack, to switch back to */
    size_t caller_size;
#endif
} async_coro;

#define CORO_KEPT offsetof(async_coro, caller_sp)

/* ---- settings ---------------------------------------------------------------------------------- */

static atomic_size_t coro_stack_bytes = ASYNC_CORO_STACK_KIB_DEFAULT * 1024 * ASYNC_CORO_STACK_SCALE;
static atomic_uint coro_idle_watermark = ASYNC_CORO_IDLE_STACKS_DEFAULT;

void async_coro_configure(size_t stack_kib, unsigned idle_stacks)
{
    size_t kib = stack_kib ? stack_kib : ASYNC_CORO_STACK_KIB_DEFAULT;
    atomic_store(&coro_stack_bytes, kib * 1024 * ASYNC_CORO_STACK_SCALE);
    atomic_store(&coro_idle_watermark, idle_stacks);
}

/* ---- per-thread state: the running coroutine, the stack pool ---------------------------------- */

typedef struct coro_map {
    unsigned char *map;
    size_t len;
} coro_map;

typedef struct coro_pool {
    coro_map *hot, *cold; /* idle stacks: resident / given back with madvise */
    size_t nhot, ncold, cap_hot, cap_cold;
    size_t live;
    bool ready;
    void *altstack; /* our alternate signal stack, if the thread had none */
    size_t altstack_len;
    bool measure;
    size_t deepest;
    async_coro *idle_head, *idle_tail; /* suspended in async_await_idle, oldest first */
    unsigned tick;                     /* async_coro_tick calls so far */
    size_t released, released_bytes;   /* stacks given back now, and the bytes their copies hold */
} coro_pool;

static _Thread_local coro_pool coro_tls_pool;
static _Thread_local async_coro *coro_current;

static pthread_once_t coro_once = PTHREAD_ONCE_INIT;
static pthread_key_t coro_key;
static struct sigaction coro_old_segv;
static size_t coro_page;

bool async_in_coro(void) { return coro_current != NULL; }

/* `to` is a power of two (the page size, 64): a mask, not a division, on every spawn and release. */
static size_t coro_round_up(size_t n, size_t to) { return (n + to - 1) & ~(to - 1); }

/* The head of a mapping, where the struct goes: the rest below it is stack. */
static size_t coro_head_size(void) { return coro_round_up(sizeof(async_coro), 64); }

static size_t coro_map_len(size_t stack_bytes)
{
    return coro_page + coro_round_up(stack_bytes + coro_head_size(), coro_page);
}

static void coro_push(coro_map **arr, size_t *n, size_t *cap, coro_map m)
{
    if (*n == *cap) {
        *cap = *cap ? *cap * 2 : 16;
        *arr = xrealloc(*arr, *cap * sizeof(**arr));
    }
    (*arr)[(*n)++] = m;
}

void async_coro_pool_drain(void)
{
    coro_pool *p = &coro_tls_pool;
    for (size_t i = 0; i < p->nhot; i++)
        munmap(p->hot[i].map, p->hot[i].len);
    for (size_t i = 0; i < p->ncold; i++)
        munmap(p->cold[i].map, p->cold[i].len);
    free(p->hot);
    free(p->cold);
    p->hot = p->cold = NULL;
    p->nhot = p->ncold = p->cap_hot = p->cap_cold = 0;
}

void async_coro_pool_stats_get(async_coro_pool_stats *out)
{
    const coro_pool *p = &coro_tls_pool;
    out->live = p->live;
    out->hot = p->nhot;
    out->cold = p->ncold;
    out->mapped = p->live + p->nhot + p->ncold;
    out->stack_bytes = atomic_load(&coro_stack_bytes);
    out->released = p->released;
    out->released_bytes = p->released_bytes;
}

void async_coro_measure(bool on)
{
    coro_tls_pool.measure = on;
    coro_tls_pool.deepest = 0;
}

size_t async_coro_deepest(void) { return coro_tls_pool.deepest; }

/* A thread that ran coroutines ends: its idle stacks and its alternate signal stack go. */
static void coro_thread_end(void *arg)
{
    coro_pool *p = arg;
    async_coro_pool_drain();
    if (p->altstack) {
        stack_t off = {.ss_flags = SS_DISABLE};
        sigaltstack(&off, NULL);
        munmap(p->altstack, p->altstack_len);
        p->altstack = NULL;
    }
}

/* ---- overflow: the guard page ------------------------------------------------------------------ */

static size_t coro_cat(char *buf, size_t n, size_t cap, const char *s)
{
    while (*s && n < cap)
        buf[n++] = *s++;
    return n;
}

static size_t coro_cat_uint(char *buf, size_t n, size_t cap, size_t v)
{
    char digits[24];
    size_t k = 0;
    do {
        digits[k++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (k && n < cap)
        buf[n++] = digits[--k];
    return n;
}

/* SIGSEGV, on the alternate signal stack. Only async-signal-safe calls: write(2) and abort(). */
static void coro_on_segv(int sig, siginfo_t *si, void *uctx)
{
    const async_coro *co = coro_current;
    const unsigned char *addr = si->si_addr;
    if (co && addr >= co->map && addr < co->stack_lo) {
        char msg[400];
        size_t n = coro_cat(msg, 0, sizeof(msg), "apiary: FATAL: coroutine stack overflow in ");
        n = coro_cat(msg, n, sizeof(msg), co->label ? co->label : "a coroutine");
        n = coro_cat(msg, n, sizeof(msg), ": it needed more than its ");
        n = coro_cat_uint(msg, n, sizeof(msg), co->stack_config / 1024);
        n = coro_cat(msg, n, sizeof(msg), " KiB of stack (coroutines.stack_kib); aborting\n");
        ssize_t rc = write(STDERR_FILENO, msg, n);
        (void)rc;
        abort();
    }
    /* Not ours: whoever handled SIGSEGV before us (AddressSanitizer's report), or the default. */
    if (coro_old_segv.sa_flags & SA_SIGINFO) {
        coro_old_segv.sa_sigaction(sig, si, uctx);
    } else if (coro_old_segv.sa_handler != SIG_DFL && coro_old_segv.sa_handler != SIG_IGN) {
        coro_old_segv.sa_handler(sig);
    } else {
        /* Returning re-runs the faulting instruction, which now meets the default action. */
        signal(SIGSEGV, SIG_DFL);
    }
}

static void coro_process_init(void)
{
    coro_page = (size_t)sysconf(_SC_PAGESIZE);
    pthread_key_create(&coro_key, coro_thread_end);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = coro_on_segv;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &coro_old_segv);
}

/* First coroutine of this thread: the process-wide handler, the thread's pool cleanup and an
 * alternate signal stack (a handler cannot run on the stack that just overflowed). */
static void coro_thread_init(void)
{
    coro_pool *p = &coro_tls_pool;
    if (p->ready)
        return;
    pthread_once(&coro_once, coro_process_init);
    p->ready = true;
    pthread_setspecific(coro_key, p);
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && (cur.ss_flags & SS_DISABLE)) {
        size_t len = 64 * 1024;
        long min = sysconf(_SC_SIGSTKSZ);
        if (min > 0 && (size_t)min * 4 > len)
            len = coro_round_up((size_t)min * 4, coro_page);
        void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (m != MAP_FAILED) {
            stack_t ss = {.ss_sp = m, .ss_size = len, .ss_flags = 0};
            if (sigaltstack(&ss, NULL) == 0) {
                p->altstack = m;
                p->altstack_len = len;
            } else {
                munmap(m, len);
            }
        }
    }
}

/* ---- stacks ------------------------------------------------------------------------------------ */

static bool coro_map_new(size_t len, coro_map *out)
{
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (m == MAP_FAILED)
        return false;
    if (mprotect(m, coro_page, PROT_NONE) != 0) {
        munmap(m, len);
        return false;
    }
    out->map = m;
    out->len = len;
    return true;
}

/* A stack of the configured size: resident from the pool, else given-back from the pool, else new.
 * Stacks of a size configured earlier are dropped as they are met. */
static bool coro_stack_get(coro_map *out)
{
    coro_pool *p = &coro_tls_pool;
    size_t len = coro_map_len(atomic_load(&coro_stack_bytes));
    while (p->nhot || p->ncold) {
        coro_map m = p->nhot ? p->hot[--p->nhot] : p->cold[--p->ncold];
        if (m.len == len) {
            *out = m;
            return true;
        }
        munmap(m.map, m.len);
    }
    return coro_map_new(len, out);
}

static void coro_stack_put(coro_map m)
{
    coro_pool *p = &coro_tls_pool;
    size_t len = coro_map_len(atomic_load(&coro_stack_bytes));
    if (m.len != len) {
        munmap(m.map, m.len);
    } else if (p->nhot < atomic_load(&coro_idle_watermark)) {
        coro_push(&p->hot, &p->nhot, &p->cap_hot, m);
    } else if (p->ncold < ASYNC_CORO_COLD_MAX) {
        /* Keep the mapping (no mmap and mprotect next time), give its memory back. */
        madvise(m.map + coro_page, m.len - coro_page, MADV_DONTNEED);
        coro_push(&p->cold, &p->ncold, &p->cap_cold, m);
    } else {
        munmap(m.map, m.len);
    }
}

#define CORO_FILL 0xA5

#if CORO_ASAN
/* A suspended coroutine's stack holds ASan's poisoned redzones of its frames: it is read and written
 * here without the checks, byte by byte through volatile so that the compiler cannot turn the loop
 * into a (checked, intercepted) memcpy. The shadow memory is left as it is, which is right: the same
 * frames come back to the same addresses. Slow, but it runs once per long idle wait. */
__attribute__((no_sanitize_address, noinline)) static void coro_copy(void *dst, const void *src, size_t n)
{
    volatile unsigned char *d = dst;
    const volatile unsigned char *s = src;
    for (size_t i = 0; i < n; i++)
        d[i] = s[i];
}
#else
#define coro_copy memcpy
#endif

/* Measuring: how deep the finished coroutine went, by the lowest byte whose fill was overwritten. */
static void coro_measure_depth(const async_coro *co)
{
    const unsigned char *p = co->stack_lo, *top = co->stack_lo + co->stack_size;
    while (p < top && *p == CORO_FILL)
        p++;
    size_t used = (size_t)(top - p);
    if (used > coro_tls_pool.deepest)
        coro_tls_pool.deepest = used;
}

/* ---- switching --------------------------------------------------------------------------------- */

void async__coro_main(async_coro *co) __attribute__((visibility("hidden"), noreturn));
void async__coro_trampoline(void) __attribute__((visibility("hidden")));

/* From the resumer into co, until co suspends, parks or returns. */
static void coro_enter(async_coro *co)
{
    void *fake = NULL;
    (void)fake;
    CORO_ASAN_START(&fake, co->stack_lo, co->stack_size);
#if CORO_ASM
    async__coro_switch(&co->caller_sp, co->sp);
#else
    swapcontext(&co->caller_uc, &co->uc);
#endif
    CORO_ASAN_FINISH(fake, NULL, NULL);
}

/* From co back to its resumer. The last one (co returned) tells ASan to free co's fake stack. */
static void coro_leave(async_coro *co, bool last)
{
    (void)last;
    CORO_ASAN_START(last ? NULL : &co->asan_fake, co->caller_bottom, co->caller_size);
#if CORO_ASM
    async__coro_switch(&co->sp, co->caller_sp);
#else
    swapcontext(&co->uc, &co->caller_uc);
#endif
    CORO_ASAN_FINISH(co->asan_fake, &co->caller_bottom, &co->caller_size);
}

void async__coro_main(async_coro *co)
{
    CORO_ASAN_FINISH(NULL, &co->caller_bottom, &co->caller_size);
    co->fn(co->arg);
    co->state = CORO_DONE;
    if (co->defer) {
        /* The scope outlives us: withdraw the cleanup that would have cancelled us. */
        async_defer_cancel(co->defer);
        co->defer = NULL;
    }
    coro_leave(co, true);
    abort(); /* never resumed after the last switch */
}

#if !CORO_ASM
static void coro_uc_entry(void) { async__coro_main(coro_current); }
#endif

/* Builds the frame the first switch into co pops (see the .S files). */
static void coro_prepare(async_coro *co)
{
#if CORO_ASM
    uintptr_t top = (uintptr_t)co & ~(uintptr_t)15;
#if defined(__x86_64__)
    void **f = (void **)top - 7; /* r15, r14, r13, r12, rbx, rbp, return address: rsp == top after ret */
    memset(f, 0, 7 * sizeof(void *));
    f[3] = co; /* r12 */
    f[6] = (void *)(uintptr_t)async__coro_trampoline;
#else
    void **f = (void **)top - 20;
    memset(f, 0, 20 * sizeof(void *));
    f[0] = co;                                         /* x19 */
    f[11] = (void *)(uintptr_t)async__coro_trampoline; /* x30 */
#endif
    co->sp = f;
#else
    getcontext(&co->uc);
    co->uc.uc_stack.ss_sp = co->stack_lo;
    co->uc.uc_stack.ss_size = co->stack_size;
    co->uc.uc_link = NULL;
    makecontext(&co->uc, coro_uc_entry, 0);
#endif
}

static async_coro *coro_new(void)
{
    coro_map m;
    if (!coro_stack_get(&m))
        return NULL;
    async_coro *co = (async_coro *)(void *)(m.map + m.len - coro_head_size());
    memset(co, 0, sizeof(*co));
    co->map = m.map;
    co->map_len = m.len;
    co->stack_lo = m.map + coro_page;
    co->stack_size = (size_t)(((uintptr_t)co & ~(uintptr_t)15) - (uintptr_t)co->stack_lo);
    co->stack_config = atomic_load(&coro_stack_bytes);
    /* A reused stack may keep ASan's poison of the frames that never returned (the last switch). */
    CORO_ASAN_UNPOISON(co->stack_lo, co->stack_size);
    if (coro_tls_pool.measure)
        memset(co->stack_lo, CORO_FILL, co->stack_size);
    coro_prepare(co);
    coro_tls_pool.live++;
    return co;
}

static void coro_release(async_coro *co)
{
    coro_map m = {co->map, co->map_len};
    CORO_ASAN_UNPOISON(co->stack_lo, co->stack_size);
    if (coro_tls_pool.measure)
        coro_measure_depth(co);
    coro_tls_pool.live--;
    coro_stack_put(m);
}

/* Runs co until it suspends or returns; runs what it asks to run outside meanwhile. */
static void coro_resume(async_coro *co)
{
    async_coro *prev = coro_current;
    for (;;) {
        coro_current = co;
        co->state = CORO_RUNNING;
        coro_enter(co);
        coro_current = prev;
        void (*after)(void *) = co->after_fn;
        void *after_arg = co->after_arg;
        co->after_fn = NULL;
        if (co->state == CORO_OUTSIDE) {
            void (*fn)(void *) = co->outside_fn;
            co->outside_fn = NULL;
            if (after)
                after(after_arg);
            fn(co->outside_arg);
            continue;
        }
        if (co->state == CORO_DONE)
            coro_release(co); /* first: what runs next may want this stack */
        if (after)
            after(after_arg); /* co may be gone (DONE) or resumed from here: only the copies are used */
        return;
    }
}

/* ---- await ------------------------------------------------------------------------------------- */

/* The continuation through which an awaited operation resumes its coroutine. */
static void coro_wake(async_op *op, void *arg)
{
    (void)op;
    coro_resume(arg);
}

/* The bound scope ended (answered, client gone, deadline, server stopping): its operations are
 * already cancelled. Resume a suspended coroutine once to let it unwind; mark a running one. */
static void coro_scope_ended(void *arg)
{
    async_coro *co = arg;
    co->defer = NULL;
    co->cancelled = true;
    if (co->state == CORO_SUSPENDED)
        coro_resume(co);
}

static void coro_bind(async_coro *co, async_scope *scope)
{
    co->scope = scope;
    if (async_scope_closing(scope))
        co->cancelled = true; /* its cleanups may have run already: nothing would resume us */
    else
        async__scope_defer_node(scope, co->defer = &co->defer_node, coro_scope_ended, co);
}

/* What every await of a cancelled coroutine returns: op stopped (or its result undone) and marked
 * cancelled, so code that checks the status unwinds. */
static async_op *coro_cancelled(async_op *op)
{
    async_op_cancel(op);
    op->status = ASYNC_CANCELLED;
    op->value = NULL;
    op->error = "cancelled";
    return op;
}

/* ---- idle awaits: the stack given back while it waits ------------------------------------------- */

static void coro_idle_link(async_coro *co)
{
    coro_pool *p = &coro_tls_pool;
    co->idle = true;
    co->idle_tick = p->tick;
    co->idle_next = NULL;
    co->idle_prev = p->idle_tail;
    if (p->idle_tail)
        p->idle_tail->idle_next = co;
    else
        p->idle_head = co;
    p->idle_tail = co;
}

static void coro_idle_unlink(async_coro *co)
{
    coro_pool *p = &coro_tls_pool;
    if (!co->idle)
        return;
    if (co->idle_prev)
        co->idle_prev->idle_next = co->idle_next;
    else
        p->idle_head = co->idle_next;
    if (co->idle_next)
        co->idle_next->idle_prev = co->idle_prev;
    else
        p->idle_tail = co->idle_prev;
    co->idle = false;
    co->idle_prev = co->idle_next = NULL;
}

/* A coroutine whose stack was given back: its live bytes, and what stands in for its struct meanwhile. */
typedef struct coro_saved {
    async_coro *co;     /* where the bytes go back: the struct's address, at the top of its mapping */
    async_defer defer;  /* takes co->defer_node's place among the scope's cleanups (fn NULL: none) */
    size_t len;         /* bytes saved: from the stack pointer to CORO_KEPT in the struct */
    unsigned char bytes[];
} coro_saved;

static void coro_wake_saved(async_op *op, void *arg);
static void coro_scope_ended_saved(void *arg);

/* Puts `to` in `from`'s place in its scope's list of cleanups (a doubly linked list, newest first). */
static void coro_defer_move(const async_defer *from, async_defer *to, void (*fn)(void *arg), void *arg)
{
    *to = *from;
    to->fn = fn;
    to->arg = arg;
    if (to->prev)
        to->prev->next = to;
    else
        to->scope->defers = to;
    if (to->next)
        to->next->prev = to;
}

/* Copies co's live stack and struct out and gives the stack's memory back. co is suspended in
 * async_await_idle, so nothing runs on its stack and (its caller promised) nothing else touches it;
 * the only pointers to its struct from outside are its scope cleanup and its operation's continuation,
 * both moved to the copy. False (nothing changed) when there is no memory for the copy. */
static bool coro_give_back(async_coro *co)
{
    coro_pool *p = &coro_tls_pool;
    unsigned char *lo = co->sp, *hi = (unsigned char *)co + CORO_KEPT;
    size_t len = (size_t)(hi - lo);
    coro_saved *sv = malloc(sizeof(*sv) + len);
    if (!sv)
        return false;
    if (p->measure)
        coro_measure_depth(co);
    coro_idle_unlink(co); /* first: the copy comes back unlinked */
    unsigned char *stack_lo = co->stack_lo, *map_end = co->map + co->map_len;
    coro_copy(sv->bytes, lo, len);
    sv->co = co;
    sv->len = len;
    sv->defer.fn = NULL;
    if (co->defer)
        coro_defer_move(co->defer, &sv->defer, coro_scope_ended_saved, sv);
    co->waiting->_cb = coro_wake_saved;
    co->waiting->_cb_arg = sv;
    /* From here on co's memory reads as zeros: only sv is used. The whole stack goes, not only the
     * page with the live bytes: pages a deeper call touched before the await are dead too. */
    madvise(stack_lo, (size_t)(map_end - stack_lo), MADV_DONTNEED);
    p->released++;
    p->released_bytes += len;
    return true;
}

/* The other way: the bytes back to the same addresses (the first touch gets a fresh zeroed page),
 * the cleanup back into the struct (unless it is running: relink false), the continuation too. */
static async_coro *coro_take_back(coro_saved *sv, bool relink)
{
    coro_pool *p = &coro_tls_pool;
    async_coro *co = sv->co;
    unsigned char *lo = (unsigned char *)co + CORO_KEPT - sv->len;
    coro_copy(lo, sv->bytes, sv->len);
    memset((unsigned char *)co + CORO_KEPT, 0, sizeof(*co) - CORO_KEPT);
    if (relink && sv->defer.fn) {
        coro_defer_move(&sv->defer, &co->defer_node, coro_scope_ended, co);
        co->defer = &co->defer_node;
    } else {
        co->defer = NULL;
    }
    if (co->waiting && co->waiting->_cb == coro_wake_saved) {
        co->waiting->_cb = coro_wake;
        co->waiting->_cb_arg = co;
    }
    if (p->measure) {
        /* The pages below came back zeroed: mark them unused again (the depth so far was measured
         * when they were given back). */
        unsigned char fill[256];
        memset(fill, CORO_FILL, sizeof(fill));
        for (unsigned char *q = co->stack_lo; q < lo; q += sizeof(fill))
            coro_copy(q, fill, (size_t)(lo - q) < sizeof(fill) ? (size_t)(lo - q) : sizeof(fill));
    }
    p->released--;
    p->released_bytes -= sv->len;
    free(sv);
    return co;
}

static void coro_wake_saved(async_op *op, void *arg) { coro_wake(op, coro_take_back(arg, true)); }

/* The scope ended while the stack was given back: the cleanup (our stand-in) is off the list already. */
static void coro_scope_ended_saved(void *arg) { coro_scope_ended(coro_take_back(arg, false)); }

size_t async_coro_release_idle(unsigned min_ticks, size_t max)
{
    coro_pool *p = &coro_tls_pool;
    size_t n = 0;
    async_coro *co;
    while (n < max && (co = p->idle_head) != NULL && p->tick - co->idle_tick >= min_ticks) {
        if (!coro_give_back(co))
            break; /* no memory now: the next tick tries again */
        n++;
    }
    return n;
}

size_t async_coro_tick(void)
{
    coro_tls_pool.tick++;
    /* Suspended before the previous tick: waiting for at least a second. */
    return async_coro_release_idle(2, ASYNC_CORO_RELEASE_PER_TICK);
}

/* ---- async_await ------------------------------------------------------------------------------- */

static async_op *coro_await(async_op *op, bool idle)
{
    async_coro *co = coro_current;
    if (!co) {
        log_error("async_await called outside a coroutine (a route needs ROUTE_CORO, other code "
                  "async_coro_spawn); aborting");
        abort();
    }
    if (!op)
        return NULL;
    if (!co->scope)
        coro_bind(co, op->_scope);
    if (co->cancelled)
        return coro_cancelled(op);
    if (op->status == ASYNC_PENDING) {
        if (op->_cb_set) {
            log_error("async_await: the %s operation already has a continuation (given to gather, "
                      "wait_for or wait_first?); not waiting for it", op->_vt->name);
            return op;
        }
        async_op_then(op, coro_wake, co);
        co->waiting = op;
        co->state = CORO_SUSPENDED;
        if (idle && CORO_ASM)
            coro_idle_link(co);
        coro_leave(co, false);
        coro_idle_unlink(co); /* resumed before its stack was given back (after, it is unlinked) */
        co->waiting = NULL;
        return co->cancelled ? coro_cancelled(op) : op;
    }
    if (!op->_cb_set) {
        /* Completed before anyone waited: its result is ours now, without a switch. */
        async__list_remove(&op->_scope->unclaimed, op);
        op->_cb = coro_wake;
        op->_cb_arg = NULL;
        op->_cb_set = true;
        return op;
    }
    if (op->_queued)
        log_error("async_await: the %s operation's own continuation is about to run; not waiting for it",
                  op->_vt->name);
    return op; /* finished earlier (a gather's child, an earlier await): its result stands */
}

async_op *async_await(async_op *op) { return coro_await(op, false); }

async_op *async_await_idle(async_op *op) { return coro_await(op, true); }

/* ---- spawning ---------------------------------------------------------------------------------- */

bool async_coro_spawn_named(async_scope *scope, const char *label, void (*fn)(void *arg), void *arg)
{
    coro_thread_init();
    /* A coroutine starting another in a scope binds itself to that scope first, so its cleanup is the
     * older one and runs after the child's (cleanups run newest first): when the scope ends, children
     * unwind while their parent, whose stack they may point into, is still there. */
    if (scope && coro_current && !coro_current->scope)
        coro_bind(coro_current, scope);
    async_coro *co = coro_new();
    if (!co) {
        log_error("coroutine for %s: no stack (mmap: %s)", label ? label : "a function", strerror(errno));
        return false;
    }
    co->fn = fn;
    co->arg = arg;
    co->label = label;
    if (scope)
        coro_bind(co, scope);
    coro_resume(co);
    return true;
}

bool async_coro_spawn(async_scope *scope, void (*fn)(void *arg), void *arg)
{
    return async_coro_spawn_named(scope, NULL, fn, arg);
}

void async__coro_after(void (*fn)(void *arg), void *arg)
{
    async_coro *co = coro_current;
    if (!co) {
        fn(arg);
    } else if (co->after_fn) {
        async_coro_outside(fn, arg);
    } else {
        co->after_fn = fn;
        co->after_arg = arg;
    }
}

void async_coro_outside(void (*fn)(void *arg), void *arg)
{
    async_coro *co = coro_current;
    if (!co) {
        fn(arg);
        return;
    }
    co->outside_fn = fn;
    co->outside_arg = arg;
    co->state = CORO_OUTSIDE;
    coro_leave(co, false);
}
