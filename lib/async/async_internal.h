/* async_internal: the HTTP engine's private way into lib/async. A request's scope keeps its operations
 * in the request's arena, so ending the request releases them with everything else it allocated. */
#ifndef APIARY_ASYNC_INTERNAL_H
#define APIARY_ASYNC_INTERNAL_H

#include "arena.h"
#include "async.h"

struct event_base;

/* A scope whose operation memory (and async_scope_alloc memory) comes from `a`, which the caller owns.
 * async_scope_free cancels every operation and frees the scope struct but never touches the arena
 * afterwards: the owner may arena_reset it as soon as async_scope_free returns, even when that call was
 * made from inside one of the scope's own continuations (the runner then touches only the scope
 * struct). The arena must not be reset while the scope is alive: timers and wait-list links live in
 * it. */
async_scope *async_scope_new_in_arena(struct event_base *base, arena *a);

/* async_scope_free has begun: its operations are being or have been cancelled. A coroutine unwinding
 * after its request ended sees this (the engine drops its answers silently then). */
bool async_scope_closing(const async_scope *scope);

/* Nothing of the scope is still running or has a continuation queued: no operation pending, none on
 * the ready queue. (Completed operations nobody attached to do not count: nothing will run for them.)
 * The engine asks this when a coroutine handler returns without answering: then nothing ever will. */
bool async_scope_quiet(const async_scope *scope);

/* libevent "common timeouts" for one event_base: timers of a duration seen before go on an O(1) queue
 * instead of the heap. With 10,000 requests each sleeping 100 ms, the heap's cache-missing walks were
 * the loop's biggest cost after the kernel. libevent allows 256 durations per base; past
 * ASYNC_COMMON_TIMEOUTS distinct ones, timers fall back to the heap. Owned by the loop that owns the
 * base, with the same lifetime. */
#define ASYNC_COMMON_TIMEOUTS 64
typedef struct async_timeouts {
    struct event_base *base;
    size_t count;
    unsigned ms[ASYNC_COMMON_TIMEOUTS];
    const struct timeval *tv[ASYNC_COMMON_TIMEOUTS];
} async_timeouts;

void async_timeouts_init(async_timeouts *t, struct event_base *base);
/* The common timeout for `ms` on t's base, registering it if there is room; NULL if there is none. */
const struct timeval *async_timeouts_get(async_timeouts *t, unsigned ms);
/* Makes the scope's timers (sleep, wait_for) use t, which must outlive the scope. */
void async_scope_use_timeouts(async_scope *scope, async_timeouts *t);

/* Called when one continuation of a watched scope kept the loop busy for `ms` >= the threshold. */
typedef void (*async_slow_fn)(void *arg, const char *label, uint64_t ms);

/* Watches every continuation the scope runs (asyncio's slow_callback_duration): one that runs for
 * slow_ms or longer is reported to fn with `label` (e.g. the route). label and arg must outlive the
 * scope. slow_ms 0 turns the watch off. Resolution: the coarse monotonic clock (a few ms). */
void async_scope_watch(async_scope *scope, unsigned slow_ms, async_slow_fn fn, void *arg, const char *label);

/* The context of the code running now on this thread: an opaque pointer its owner gives meaning to
 * (the app runtime: the config generation a request started on, so apiary_current() answers the same
 * for the whole request, however many waits it makes). A scope carries one: it is in effect while
 * the scope's continuations run (a coroutine resumed by them included) and while its cleanups run.
 * The engine puts the request's in effect around its handler call with async_context_swap. */
void async_scope_set_context(async_scope *scope, const void *context);
const void *async_scope_context(const async_scope *scope);
/* The context in effect on this thread (NULL outside any). */
const void *async_context_current(void);
/* Puts `context` in effect and returns the one it replaces, to be put back the same way. */
const void *async_context_swap(const void *context);

#endif
