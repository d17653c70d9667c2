/* async_op_internal: what the files of the toolkit (lib/async/) share and nothing outside them may
 * use: the scope and operation internals, the operation table (vtable), the lists, the timer and the
 * wait list. The public contract is async.h; the engine's private entry is async_internal.h.
 *
 * How the toolkit works, in one place (async.h is the contract):
 *
 * Every operation lives in its scope's arena and sits on exactly one of the scope's intrusive lists
 * until it reaches its end: `pending` (not completed), `unclaimed` (completed before anyone attached a
 * continuation) or `ready` (completed, continuation queued). An operation that is on none of them is
 * finished for good: its continuation ran, or it was cancelled (then _cb_set is true and _cb is NULL,
 * so a late async_op_then is ignored). Completion only moves an operation between lists; one event per
 * scope runs the ready queue from the loop, which is what keeps continuations out of the call stack
 * that completed them. A runner runs only what was ready when it started and a runner woken from
 * inside a runner waits for the loop's next pass, so instant completions cannot starve I/O and timers.
 *
 * gather, wait_for and wait_first listen to their children through the same ready queue, with an
 * internal continuation (async__child_done). A child they listen to and whose completion they have taken in is
 * "consumed": _cb stays async__child_done, so the parent can still find it to undo it (revoke) if the
 * parent itself is cancelled before its own continuation ran. Cancellation of a child is reported to
 * its parent synchronously, because a cancelled operation never goes through the ready queue.
 *
 * Interpretations of the header (see also async.h):
 * - Cancelling a completed operation whose continuation has not run keeps its status, except where
 *   the cancel undoes the result: a granted semaphore acquire returns its permit and a queue get
 *   returns its item; those become ASYNC_CANCELLED with value NULL, so nobody who reads them later
 *   releases a permit or uses an item twice. Parents forward this to the children they consumed.
 * - A queue get cancelled after it was handed an item, while the queue has meanwhile filled up, cannot
 *   put the item back (the ring has no room and the struct no field for more): the get keeps status
 *   OK and the item in its value, and an error is logged.
 * - Cancelling a child of gather counts it as finished (in FAIL_FAST too: it is not a failure);
 *   cancelling the inner operation of wait_for cancels the wait_for (its continuation never runs).
 *   Cancelling a child whose completion its parent already took in is a no-op.
 * - wait_for whose timer fires when the inner operation has completed but its report is still queued
 *   completes like the inner operation: it was in time, and its result (a permit, an item, a value
 *   from outside) is not thrown away.
 * - gather and wait_for fail at once (ASYNC_FAILED, children untouched) when given NULL, an operation
 *   of another scope (its memory could go first) or one another gather/wait_for is still waiting for.
 * - A second async_op_then is ignored and logged; gather/wait_for do replace a continuation attached
 *   earlier (the header says they take over).
 * - Operations started on a scope that is being or has been freed (from a cancel hook, or by the
 *   continuation that freed it) are born cancelled. A cancel hook registered on a future that is
 *   already cancelled runs at once. Cancel hooks must not free their own scope.
 * - Semaphore acquire and queue put complete with value NULL. */
#ifndef APIARY_ASYNC_OP_INTERNAL_H
#define APIARY_ASYNC_OP_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <event2/event_struct.h>

#include "arena.h"
#include "async.h"
#include "async_internal.h"

struct async_op_vtable {
    const char *name;
    /* Stops a pending operation; its status is already ASYNC_CANCELLED. */
    void (*cancel)(async_op *op);
    /* Undoes a completed operation whose continuation will not run; true if something was undone. */
    bool (*revoke)(async_op *op);
    /* A child this operation listens to completed (cancelled == false) or was cancelled. */
    void (*child_done)(async_op *op, async_op *child, bool cancelled);
    /* async_op_release is giving op's block back: release what op alone owns besides (optional). */
    void (*release)(async_op *op);
};

typedef struct async_list {
    async_op *head, *tail;
    size_t len;
} async_list;

struct async_scope {
    struct event_base *base;
    arena *arena;
    struct event run_ev; /* runs the ready queue; activated when the queue gains an operation */
    async_list pending;
    async_list unclaimed;
    async_list ready;
    bool running; /* inside async_scope_run */
    bool closing; /* async_scope_free was called */
    bool dead;    /* freed from inside the runner: the runner frees the struct when it unwinds */
    bool owns_arena;
    async_timeouts *timeouts; /* common timeouts of the scope's loop, or NULL: heap timers */
    async_defer *defers;      /* cleanups to run when the scope ends, newest first */
    async_post_fn post;       /* how other threads reach the scope's loop (async_scope_set_poster) */
    void *post_target;
    unsigned slow_ms;      /* async_scope_watch: report continuations this slow (0: off) */
    async_slow_fn slow_fn;
    void *slow_arg;
    const char *slow_label;
    const void *context;   /* async_scope_set_context: in effect while the scope runs code */
    struct async_recycled *recycled; /* blocks of released operations, newest first (async_op_release) */
    arena own_arena[]; /* standalone scopes only */
};

/* ---- scope cleanups (async_scope.c) ------------------------------------------------------------ */

struct async_defer {
    async_defer *prev, *next;
    void (*fn)(void *arg);
    void *arg;
    async_scope *scope;
};

/* async_scope_defer into a node the caller provides (and keeps until the cleanup ran or was
 * cancelled): a coroutine keeps its own in the struct at the top of its stack, so binding to a scope
 * allocates nothing. */
void async__scope_defer_node(async_scope *scope, async_defer *d, void (*fn)(void *arg), void *arg);

/* ---- lists (async_scope.c) --------------------------------------------------------------------- */

void async__list_push(async_list *l, async_op *op);
void async__list_remove(async_list *l, async_op *op);
/* Queues op's continuation on its scope's ready queue and wakes the runner. */
void async__scope_enqueue(async_scope *s, async_op *op);

/* ---- operation lifecycle (async_op.c) ---------------------------------------------------------- */

/* A new pending operation of `size` bytes (its struct begins with an async_op) in s's memory: a
 * released block of the scope when one fits, else fresh scope memory. */
async_op *async__op_new(async_scope *s, const async_op_vtable *vt, size_t size);
/* Last step of every constructor: an operation started in a closing scope is born cancelled. */
async_op *async__op_started(async_op *op);
/* Forgets the scope's released blocks and lifts their ASan poison (the scope is ending; its owner may
 * reuse the arena). */
void async__scope_unpoison_recycled(async_scope *s);
/* Completes a pending operation (ignored otherwise) and queues or parks its continuation. */
void async__op_complete(async_op *op, async_status status, void *value, const char *error);
/* Completed, and its continuation has not run (queued, or none attached yet). */
bool async__op_undelivered(const async_op *op);
/* Takes a completed op off the unclaimed list or the ready queue. */
void async__op_unlist_completed(async_op *op);
/* The parent (gather, wait_for, wait_first) listening to op, or NULL. */
async_op *async__op_observer(const async_op *op);
/* Undoes a completed operation whose continuation will not run (vtable revoke). */
bool async__op_revoke(async_op *op);

/* ---- children of gather, wait_for and wait_first (async_op.c) ---------------------------------- */

/* The internal continuation through which a parent hears of a child. */
void async__child_done(async_op *child, void *parent);
/* Why parent cannot listen to child, or NULL if it can. */
const char *async__child_problem(const async_scope *scope, const async_op *child, const async_op *parent);
/* Makes parent the listener of child (pending, or completed and undelivered: then consumed). */
void async__op_adopt(async_op *parent, async_op *child);
/* Cancels a child parent still waits for, without parent hearing about it. */
void async__op_cancel_child(async_op *parent, async_op *child);
/* Undoes a child whose completion parent consumed; at most once per child. */
bool async__op_revoke_child(async_op *parent, async_op *child);
/* Gives a child parent listens to back to the caller, as if parent had never taken it: pending, it
 * has no continuation; completed (its report queued to parent, or taken in), it is unclaimed again. */
void async__op_release_child(async_op *parent, async_op *child);
bool async__status_failed(async_status st);

/* ---- timers (async_timer.c) -------------------------------------------------------------------- */

/* A timer due on the monotonic clock, to the microsecond. libevent counts from the time it cached when
 * the loop pass began, possibly on a coarse clock, so its timers can fire a little early by ours: an
 * early one is re-armed for the rest, so an operation never completes before the time it was asked to
 * wait has passed. (Counting in whole milliseconds from a truncated start was up to 1 ms early.) */
typedef struct async_timer {
    struct event ev;
    uint64_t due_us;
} async_timer;

void async__timer_init(async_timer *t, async_op *op, event_callback_fn fn, void *arg);
/* Arms t for `ms` after its init time (a common timeout when the scope has one). 0 or -1. */
int async__timer_start(async_timer *t, async_scope *scope, unsigned ms);
/* For the timer's callback: true when the deadline really passed, else it is re-armed. */
bool async__timer_due(async_timer *t);
void async__timer_stop(async_timer *t);

/* ---- wait lists of semaphores, queues, events and conditions (async_waitlist.c) ---------------- */

typedef struct async_waiter {
    async_op op;
    struct async_waiter *wprev, *wnext;
    void *owner; /* the async_sem, async_queue, async_event or async_cond */
    void *item;  /* queue put: what it puts */
    bool waiting;
} async_waiter;

void async__waitlist_push(async_op **head, async_op **tail, async_waiter *w);
/* No-op for a waiter that is not on a list. */
void async__waitlist_remove(async_op **head, async_op **tail, async_waiter *w);
async_waiter *async__waitlist_pop(async_op **head, async_op **tail);
size_t async__waitlist_len(const async_op *head);
/* A pending waiter of `size` bytes (>= sizeof(async_waiter)) belonging to `owner`. */
async_waiter *async__waiter_new(async_scope *scope, const async_op_vtable *vt, void *owner, size_t size);

#endif
