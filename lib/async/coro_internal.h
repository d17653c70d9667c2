/* coro_internal: what the engine, the tests and the benchmark use of lib/async/coro.c beyond async.h's
 * async_await / async_coro_spawn: the stack settings (config keys coroutines.*), running engine code
 * off a coroutine's stack, a name for overflow reports, pool statistics and the raw switch. */
#ifndef APIARY_CORO_INTERNAL_H
#define APIARY_CORO_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "async.h"

/* Usable stack per coroutine by default (coroutines.stack_kib). Under AddressSanitizer, whose redzones
 * make every frame larger, the library maps ASYNC_CORO_STACK_SCALE times the configured size.
 * docs/async.md "Stacks" says why 64 KiB. */
#define ASYNC_CORO_STACK_KIB_DEFAULT 64
#if defined(__SANITIZE_ADDRESS__)
#define ASYNC_CORO_STACK_SCALE 4
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASYNC_CORO_STACK_SCALE 4
#endif
#endif
#ifndef ASYNC_CORO_STACK_SCALE
#define ASYNC_CORO_STACK_SCALE 1
#endif
/* Idle stacks a loop keeps resident for reuse (coroutines.idle_stacks); the ones above are given back
 * to the kernel with madvise(MADV_DONTNEED) but stay mapped, up to ASYNC_CORO_COLD_MAX more. */
#define ASYNC_CORO_IDLE_STACKS_DEFAULT 64
#define ASYNC_CORO_COLD_MAX 1024

/* Sets the size of stacks created from now on (times ASYNC_CORO_STACK_SCALE) and the resident-idle
 * watermark (any thread; a reload calls it again: pooled stacks of another size are unmapped as they
 * come back). stack_kib 0: the default. */
void async_coro_configure(size_t stack_kib, unsigned idle_stacks);

/* Starts fn(arg) like async_coro_spawn; `label` (e.g. the route, which must outlive the coroutine)
 * names the coroutine in a stack-overflow report. scope may be NULL: the coroutine is then bound to
 * the scope of the first operation it awaits (a route's handler gets its scope from
 * http_request_async only after it checked its input). */
bool async_coro_spawn_named(async_scope *scope, const char *label, void (*fn)(void *arg), void *arg);

/* Runs fn(arg) where async_coro_outside would (the stack of whoever resumed the current coroutine),
 * but only once the coroutine next suspends, parks or returns, instead of switching out and back in
 * for it now; outside a coroutine, it runs fn(arg) at once. For work that must not run on a
 * coroutine's stack and need not run before the coroutine's next line: the engine parses the next
 * pipelined request after a coroutine handler's answer this way (two switches fewer per request).
 * One pending at a time per coroutine; a second one runs through async_coro_outside. */
void async__coro_after(void (*fn)(void *arg), void *arg);

/* This thread's stack pool. */
typedef struct async_coro_pool_stats {
    size_t live;      /* coroutines started and not yet returned */
    size_t hot;       /* idle stacks kept resident */
    size_t cold;      /* idle stacks whose memory was given back (madvise) */
    size_t mapped;    /* stacks mapped now: live + hot + cold */
    size_t stack_bytes; /* usable bytes of a stack made now */
    size_t released;    /* suspended in async_await_idle with their stacks given back */
    size_t released_bytes; /* the heap bytes their saved copies hold */
} async_coro_pool_stats;
void async_coro_pool_stats_get(async_coro_pool_stats *out);
/* Unmaps this thread's idle stacks (a loop thread's end; tests). */
void async_coro_pool_drain(void);

/* Measuring (tests, bench): while on, every stack handed out is filled with a pattern first, and
 * async_coro_deepest() reports the most bytes of stack any coroutine of this thread used (by the
 * highest address whose pattern was overwritten), measured as each one returns. */
void async_coro_measure(bool on);
size_t async_coro_deepest(void);

/* Idle awaits (async_await_idle). The loop calls async_coro_tick once a second: it gives back the
 * stacks of the coroutines of this thread that have been suspended in async_await_idle since before
 * the previous tick (so for 1 to 2 s), at most ASYNC_CORO_RELEASE_PER_TICK a tick: each is a copy of a
 * few hundred bytes, a malloc and an madvise, about 2.5 us of CPU on the project's VM (mostly the
 * madvise), so a tick holds its loop at most ~2.5 ms and 10,000 coroutines going idle together are
 * all given back within 10 s. async_coro_release_idle does it for those suspended for at least
 * min_ticks ticks (0: all of them now), at most max; it returns how many (tests). */
#define ASYNC_CORO_RELEASE_PER_TICK 1024
size_t async_coro_tick(void); /* how many it gave back */
size_t async_coro_release_idle(unsigned min_ticks, size_t max);

/* The raw switch (coro_switch_<arch>.S): saves the callee-saved state on the current stack, stores
 * the stack pointer in *save_sp and continues from load_sp. For the benchmark. */
void async__coro_switch(void **save_sp, void *load_sp);

#endif
