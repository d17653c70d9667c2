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

/* Called when one continuation of a watched scope kept the loop busy for `ms` >= the threshold. */
typedef void (*async_slow_fn)(void *arg, const char *label, uint64_t ms);

/* Watches every continuation the scope runs (asyncio's slow_callback_duration): one that runs for
 * slow_ms or longer is reported to fn with `label` (e.g. the route). label and arg must outlive the
 * scope. slow_ms 0 turns the watch off. Resolution: the coarse monotonic clock (a few ms). */
void async_scope_watch(async_scope *scope, unsigned slow_ms, async_slow_fn fn, void *arg, const char *label);

#endif
