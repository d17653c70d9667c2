/* async: asyncio-style operations on an event loop, for handlers that wait without blocking.
 *
 * The model. An operation (async_op) is started by its constructor and completes later, once, with a
 * status and a value: a timer (async_sleep), a value someone else provides (async_future), all of a
 * set (async_gather), the first of a set (async_wait_first), one bounded by a deadline
 * (async_wait_for), a semaphore permit, a queue item, an event being set, a condition being notified,
 * another program's exit (async_subprocess).
 * async_op_then attaches the continuation that runs when it completes, like `await`. Continuations
 * never run inside the call that completed the operation: they are queued and run from the loop
 * (asyncio's call_soon), so no caller ever finds its own state changed under it.
 *
 * Ownership. Every operation belongs to a scope (async_scope). For a request the scope comes from
 * http_request_async() and lives until the request is answered; its operations' memory comes from the
 * request's arena. Ending a scope (answer sent, client gone, request deadline passed, server stopping)
 * cancels every operation still pending and frees everything: no continuation of that scope runs
 * after that, ever. So a handler never frees an operation and never registers a cancel callback of
 * its own for toolkit operations.
 *
 * Cancellation. async_op_cancel(op) stops op (deletes its timer, leaves the wait list it is on,
 * cancels its children) and guarantees that op's continuation will not run. The canceller already
 * knows why, so nothing is delivered to anyone.
 *
 * Threads. Everything here runs on the scope's loop thread, and nothing takes a lock. Another thread
 * hands a result back by posting to the loop (http_loop_post) and resolving a future there.
 *
 * Semaphores, locks and queues may be shared by several scopes on one loop (e.g. one per loop, to cap
 * calls to an upstream). Their waiters are operations of the waiting scope; ending that scope removes
 * them from the wait list. A semaphore, lock or queue itself is owned by whoever initialised it and
 * must outlive every scope that waits on it. */
#ifndef APIARY_ASYNC_H
#define APIARY_ASYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct async_scope async_scope;
typedef struct async_op async_op;

typedef enum async_status {
    ASYNC_PENDING,
    ASYNC_OK,
    ASYNC_FAILED,    /* op->error says why */
    ASYNC_TIMEOUT,   /* a deadline passed: async_wait_for, or an operation with its own timeout */
    ASYNC_CANCELLED, /* seen by reading a child after it was cancelled (e.g. by gather), and by a
                      * coroutine's await after its scope ended */
} async_status;

/* A continuation: runs once, on the loop thread, after op completed. */
typedef void (*async_cb)(async_op *op, void *arg);

/* Cancel hook of a future whose work lives outside the toolkit (a worker-pool job, an HTTP client
 * call): stop that work and release what it holds. Runs at most once, never after resolve/fail. */
typedef void (*async_cancel_fn)(async_op *op, void *arg);

typedef struct async_op_vtable async_op_vtable;

struct async_op {
    /* --- read-only for users once complete --- */
    async_status status;
    const char *error;      /* FAILED/TIMEOUT: a short, static or scope-owned reason ("timeout") */
    void *value;            /* OK: the result; its meaning depends on the operation */
    uint64_t started_ms;    /* loop time when the operation began (for "ms" fields in answers) */
    uint64_t finished_ms;   /* loop time when it completed */

    /* --- private --- */
    const async_op_vtable *_vt;
    async_scope *_scope;
    async_op *_prev, *_next;   /* the scope's pending list, then its ready queue */
    async_cb _cb;
    void *_cb_arg;
    bool _cb_set;
    bool _queued;              /* on the ready queue */
    uint32_t _size;            /* bytes of its block in the scope's memory (async_op_release) */
};

/* ---- scopes ---------------------------------------------------------------------------------- */

/* A scope not tied to a request (tests, per-loop background work). Frees with async_scope_free. */
async_scope *async_scope_new(struct event_base *base);
/* Cancels every pending operation (no continuation runs) and frees the scope and its memory. Safe to
 * call from inside one of the scope's own continuations: the memory goes when that returns. */
void async_scope_free(async_scope *scope);
/* Memory that lives exactly as long as the scope (for per-request state of a handler). Zeroed. */
void *async_scope_alloc(async_scope *scope, size_t size);
struct event_base *async_scope_base(const async_scope *scope);

/* How other threads reach the scope's loop: post(target, fn, arg) must run fn(arg) on that loop's
 * thread soon, callable from any thread, in order (http_loop_post is one). Request scopes get their
 * loop's; a standalone scope gets one from its owner. Work that completes on another thread (the
 * worker pool) captures it at submit time, on the loop thread, because the scope itself may be gone by
 * the time the work finishes. */
typedef void (*async_post_fn)(void *target, void (*fn)(void *arg), void *arg);
void async_scope_set_poster(async_scope *scope, async_post_fn post, void *target);
/* The poster set on the scope, or NULL/NULL. */
void async_scope_poster(const async_scope *scope, async_post_fn *post, void **target);
/* Cleanup when the scope ends (Go's defer, Python's `finally`): fn(arg) runs when the scope is freed,
 * however it ends (answered, client gone, deadline passed, server stopping), after its operations
 * were cancelled, newest first. This is how a request gives back what it holds outside its own memory,
 * e.g. a permit of a semaphore shared with other requests: register the release right after the
 * acquire completes, and cancel the cleanup when releasing normally. The callback must not start
 * operations in this scope. The handle lives in the scope's memory. */
typedef struct async_defer async_defer;
async_defer *async_scope_defer(async_scope *scope, void (*fn)(void *arg), void *arg);
/* The resource was released normally: the cleanup will not run. No-op when it already ran. */
void async_defer_cancel(async_defer *d);

/* Milliseconds on the loop's monotonic clock (what started_ms/finished_ms use). */
uint64_t async_now_ms(void);

/* ---- operations ------------------------------------------------------------------------------ */

/* Attaches the continuation. If op has already completed, it runs soon (from the loop), never from
 * inside this call. At most one continuation per operation; gather, wait_for and wait_first take over
 * their children's, so do not attach one to an operation given to them (wait_first hands back the
 * ones it leaves running). */
void async_op_then(async_op *op, async_cb cb, void *arg);
/* Stops op; its continuation will not run. A completed op keeps its status. No-op when cancelled. */
void async_op_cancel(async_op *op);
/* Elapsed milliseconds from start to completion (or to now while pending). */
uint64_t async_op_elapsed_ms(const async_op *op);
/* Gives a finished operation's memory back to its scope, for the scope's next operations to reuse:
 * for loops that run as long as their scope does (an event stream awaiting a sleep per event, a
 * consumer awaiting queue gets), which would otherwise keep every operation they ever awaited until
 * the scope ends (a sleep is about 230 bytes). Optional: an operation never released simply goes with
 * its scope, as always.
 *
 * When: once you are done reading op (status, value, error), i.e. after the await that returned it
 * or at the end of its continuation (releasing inside the continuation is fine). From then on `op` is
 * a dangling pointer: do not read it, await it, cancel it or release it again (its memory is the
 * next operation's). A value that lives inside the operation (an http_body_chunk, a subprocess
 * result is separate and stays) goes with it.
 * What: op's own block. Releasing a wait_for also releases its inner operation when that finished
 * (it is the wait_for's to give back; its value is the wait_for's value). Memory an operation
 * allocated besides its block (gather's and wait_first's child arrays, a subprocess's output) and
 * children given to gather or wait_first stay until the scope ends.
 * Refused (logged, nothing happens): NULL is ignored silently; an operation still pending (cancel it
 * first: async_op_cancel, then release), one a gather, wait_for or wait_first took over (release
 * the combined one), one whose continuation is queued to run. A completed operation nobody took
 * (no continuation, never awaited) is cancelled first, which undoes what it holds (a granted permit
 * is given back, a queue item is put back). In a scope that is ending it does nothing (the memory
 * goes with the scope anyway). */
void async_op_release(async_op *op);

/* Completes OK after `ms` milliseconds on a loop timer (asyncio.sleep). value: NULL. */
async_op *async_sleep(async_scope *scope, unsigned ms);

/* A future: completes when someone calls async_resolve or async_fail on it (loop thread only). */
async_op *async_future(async_scope *scope);
/* Registers the hook that stops the outside work if the future is cancelled before completion. */
void async_future_on_cancel(async_op *future, async_cancel_fn fn, void *arg);
/* Completes OK with value. Ignored (returns false) if the future already completed or was cancelled,
 * so a late result from outside never lands in freed state. */
bool async_resolve(async_op *future, void *value);
/* Completes FAILED with a reason (static or scope-owned string). Same rule as async_resolve. */
bool async_fail(async_op *future, const char *error);

typedef enum async_gather_mode {
    ASYNC_GATHER_ALL,       /* wait for every child; gather completes OK; read each child's status
                             * (asyncio.gather(..., return_exceptions=True)) */
    ASYNC_GATHER_FAIL_FAST, /* on the first child that is not OK, cancel the pending ones and complete
                             * with that child's status and error; value: the failed child */
} async_gather_mode;

/* Runs `n` operations concurrently (they are already started); completes when all have finished (or
 * the first fails, in FAIL_FAST). The array is copied. n may be 0 (completes OK soon). */
async_op *async_gather(async_scope *scope, async_op *const *ops, size_t n, async_gather_mode mode);
/* The i-th child given to async_gather, or started by async_gather_map (NULL if it never started). */
async_op *async_gather_child(const async_op *gather, size_t i);

/* What async_gather_map calls to start its i-th operation (0 <= i < n), in `scope`. */
typedef async_op *(*async_start_fn)(async_scope *scope, size_t i, void *arg);

/* A bounded gather: starts start(scope, i, arg) for i = 0, 1, ... n-1 in order, at most `limit` of them
 * pending at once (0: no limit), and completes like async_gather of all of them in `mode`; read each
 * child with async_gather_child(op, i). In asyncio terms, `gather(*(worker(i) for i in range(n)))`
 * where each worker does `async with sem:` on a Semaphore(limit), without a semaphore or a task per item.
 * The first `limit` start inside this call; each next one starts from the loop when a running child
 * has finished (as a continuation would, so start may start anything and must not block). start must
 * return a fresh operation of `scope` with no continuation (e.g. an HTTP call, a pool job, a wait_for
 * around either); a NULL or unusable one fails the whole with that reason and cancels the running ones.
 * FAIL_FAST: at the first failure the running children are cancelled and no more are started (their
 * async_gather_child stays NULL). Cancelling the result cancels the running children and starts no
 * more; a child cancelled by someone else counts as finished and makes room for the next. */
async_op *async_gather_map(async_scope *scope, size_t n, size_t limit, async_start_fn start, void *arg,
                           async_gather_mode mode);

/* Completes like `inner`, or with ASYNC_TIMEOUT ("timeout") after `ms`, cancelling inner. value: inner's
 * value when it finished in time. */
async_op *async_wait_for(async_scope *scope, async_op *inner, unsigned ms);

typedef enum async_first_mode {
    ASYNC_FIRST_CANCEL_OTHERS, /* the first completion cancels every other operation */
    ASYNC_FIRST_LEAVE_OTHERS,  /* the others keep running and are the caller's again, as if never
                                * given: attach a continuation, wait_first them again, or cancel them */
} async_first_mode;

/* Waits for the first of `n` operations (already started) to complete, whatever its status
 * (asyncio.wait(return_when=FIRST_COMPLETED)); asyncio's as_completed is a wait_first over the ones
 * left, in a loop (ASYNC_FIRST_LEAVE_OTHERS). Completes OK with value = the child that finished
 * first (read its status, value and error; async_wait_first_index says which one it was). A child
 * that had already completed when this was called wins at once (the first such in array order).
 * Children the caller cancels drop out; when all have, it completes ASYNC_FAILED ("all cancelled").
 * Fails at once with n == 0 ("no operations") or a child that gather would refuse. Cancelling the
 * wait_first before it completed (its scope ended, an outer wait_for passed) cancels every child it
 * waits for, in both modes. The array is copied. */
async_op *async_wait_first(async_scope *scope, async_op *const *ops, size_t n, async_first_mode mode);
/* Index in the array given to async_wait_first of the child that finished first; -1 while pending or
 * when none did. */
long async_wait_first_index(const async_op *wait_first);

/* ---- semaphore and lock ---------------------------------------------------------------------- */

typedef struct async_sem {
    unsigned permits;       /* available now */
    async_op *_head, *_tail; /* FIFO of waiting acquire operations (private) */
} async_sem;

void async_sem_init(async_sem *sem, unsigned permits);
/* Completes OK once a permit is this caller's (FIFO among waiters); the caller must later
 * async_sem_release. To bound the wait: async_wait_for(scope, async_sem_acquire(...), ms). Cancelling
 * a waiter leaves the line; cancelling one that was granted but not yet continued gives the permit
 * back. */
async_op *async_sem_acquire(async_scope *scope, async_sem *sem);
/* Takes a permit now if one is free and nobody waits. */
bool async_sem_try_acquire(async_sem *sem);
/* Returns a permit: the first waiter gets it, else it becomes available. */
void async_sem_release(async_sem *sem);
/* Waiters in line. */
size_t async_sem_waiting(const async_sem *sem);

/* A lock is a semaphore with one permit (asyncio.Lock). */
typedef async_sem async_lock;
static inline void async_lock_init(async_lock *lock) { async_sem_init(lock, 1); }
static inline async_op *async_lock_acquire(async_scope *scope, async_lock *lock)
{
    return async_sem_acquire(scope, lock);
}
static inline void async_lock_release(async_lock *lock) { async_sem_release(lock); }
static inline bool async_lock_locked(const async_lock *lock) { return lock->permits == 0; }

/* ---- event and condition --------------------------------------------------------------------- */

/* An event (asyncio.Event): a flag that many can wait for. Setting it releases every waiter at once
 * and it stays set (later waits complete at once) until cleared. Owned by whoever initialised it; it
 * must outlive every scope that waits on it. */
typedef struct async_event {
    bool is_set;
    async_op *_head, *_tail; /* FIFO of waiting operations (private) */
} async_event;

void async_event_init(async_event *ev);
/* Sets the flag and completes every waiting operation OK (their continuations run from the loop, in
 * the order they started waiting). No-op when already set. */
void async_event_set(async_event *ev);
/* Clears the flag: waits started from now on wait for the next set. */
void async_event_clear(async_event *ev);
static inline bool async_event_is_set(const async_event *ev) { return ev->is_set; }
/* Completes OK (value NULL) once the event is set: soon (from the loop) when it already is. To bound
 * the wait: async_wait_for(scope, async_event_wait(...), ms). Cancelling a waiter leaves the line. */
async_op *async_event_wait(async_scope *scope, async_event *ev);
/* Operations waiting now. */
size_t async_event_waiting(const async_event *ev);

/* A condition (asyncio.Condition): wait, under a lock, until another holder of the lock says the
 * shared state changed. The lock is the caller's (several conditions may share one); it must outlive
 * the condition, which must outlive every scope that waits on it. */
typedef struct async_cond {
    async_lock *lock;
    async_op *_head, *_tail; /* FIFO of waiters not yet notified (private) */
} async_cond;

void async_cond_init(async_cond *cond, async_lock *lock);
/* The caller must hold cond->lock. Releases it at once (another waiter of the lock may get it),
 * waits for a notify, then acquires the lock again, and only then completes OK (value NULL): the
 * continuation runs holding the lock and must release it (or wait again). The state it waited for
 * may have changed again in between (another waiter may have held the lock first), so check the
 * predicate in the continuation and wait again if it does not hold, as with asyncio's
 * `while not pred: await cond.wait()`.
 *
 * Cancellation (or its scope ending, or an outer async_wait_for timing out) at any stage leaves the
 * caller NOT holding the lock: a waiter that was granted the lock but not yet continued gives it back.
 * This differs from asyncio, which reacquires before raising: here a cancelled continuation never
 * runs, so nobody would release it. */
async_op *async_cond_wait(async_scope *scope, async_cond *cond);
/* Wakes up to n waiters (oldest first): each then queues for the lock, behind the caller if the
 * caller holds it (asyncio requires the lock held; here it is merely the usual way). */
void async_cond_notify(async_cond *cond, size_t n);
void async_cond_notify_all(async_cond *cond);
/* Waiters not yet notified. */
size_t async_cond_waiting(const async_cond *cond);

/* ---- bounded queue --------------------------------------------------------------------------- */

typedef struct async_queue {
    void **items;            /* ring buffer of `capacity` (private) */
    size_t capacity, head, count;
    async_op *_getters_head, *_getters_tail; /* FIFO of waiting gets (private) */
    async_op *_putters_head, *_putters_tail; /* FIFO of waiting puts (private) */
} async_queue;

/* items must hold `capacity` (>= 1) pointers and outlive the queue. */
void async_queue_init(async_queue *q, void **items, size_t capacity);
/* Puts now; returns false when full (the "fail when full" mode: answer 503, drop, ...). */
bool async_queue_try_put(async_queue *q, void *item);
/* Completes OK once item is in the queue (or handed straight to a waiting getter); waits while full.
 * Cancelling a waiting put withdraws its item. */
async_op *async_queue_put(async_scope *scope, async_queue *q, void *item);
/* Takes now; returns false when empty. */
bool async_queue_try_get(async_queue *q, void **item);
/* Completes OK with value = the item; waits while empty. Cancelling a get that was handed an item but
 * not yet continued puts the item back at the front. */
async_op *async_queue_get(async_scope *scope, async_queue *q);
size_t async_queue_size(const async_queue *q);

/* ---- subprocess ------------------------------------------------------------------------------ */

/* What async_subprocess runs (asyncio.create_subprocess_exec). Only read during the call. */
typedef struct async_subprocess_options {
    const char *const *argv;  /* NULL-terminated; argv[0] is the program: a path, or a name looked up
                               * in PATH. Run directly, never through a shell: no word splitting, no
                               * globbing, no metacharacters. */
    const char *const *envp;  /* NULL-terminated "NAME=value" entries added to the child's environment
                               * (replacing a base entry of the same name); NULL: none. */
    bool inherit_env;         /* the base is our whole environment. false (the default): only PATH and
                               * LANG as we have them (PATH: /usr/local/bin:/usr/bin:/bin if unset),
                               * so secrets in ours (APIARY_SQL_URL with its password, tokens)
                               * never reach a child unless asked for. */
    const void *stdin_data;   /* bytes written to the child's stdin, then closed; NULL: /dev/null.
                               * Copied at once, so the caller's buffer may go. */
    size_t stdin_len;
    size_t max_output_bytes;  /* kept per stream (stdout, stderr); more is read and dropped so the
                               * child never blocks on a full pipe. 0: 1 MiB. */
    unsigned timeout_ms;      /* 0: none. Passed: SIGTERM, then SIGKILL after kill_grace_ms */
    unsigned kill_grace_ms;   /* 0: 2000 */
} async_subprocess_options;

/* The outcome (op->value, scope memory). */
typedef struct async_subprocess_result {
    int pid;
    int exit_code;            /* the exit status when the child exited, else -1 */
    int term_signal;          /* the signal that ended it, else 0 */
    bool timed_out;           /* timeout_ms passed and we signalled it */
    const char *out, *err;    /* what it wrote to stdout / stderr, NUL-terminated (may contain NULs) */
    size_t out_len, err_len;
    bool out_truncated, err_truncated; /* it wrote more than max_output_bytes */
} async_subprocess_result;

/* Starts argv as a child process and completes once it has exited and been reaped:
 * - OK with value = async_subprocess_result * for any exit, zero or not, or death by a signal
 *   someone else sent (a non-zero exit is a result, not a failure of the call);
 * - ASYNC_TIMEOUT ("timeout") with the same value (timed_out set) when timeout_ms passed: the child got
 *   SIGTERM, then SIGKILL after kill_grace_ms if it was still there;
 * - ASYNC_FAILED "spawn_failed" (value NULL) when it cannot be started: no such program, not
 *   executable, out of processes or descriptors. Nothing is left running then.
 * The child gets its own process group (signals go to the child through its pidfd and to the group,
 * so a script's own children go too and a child that left the group still gets them), every
 * descriptor but 0-2 closed, the default signal mask and dispositions, and a minimal environment
 * (PATH, LANG, envp) unless inherit_env is set. It is reaped through a
 * pidfd watched on the scope's loop: nothing blocks the loop, no SIGCHLD handler is installed, and
 * other children of the process (anyone's waitpid) are untouched. Cancellation, a scope ending or an
 * outer async_wait_for kill the group with SIGKILL and reap the child later from the loop (it needs
 * no memory of the scope); its output is dropped. */
async_op *async_subprocess(async_scope *scope, const async_subprocess_options *opts);

/* ---- coroutines: await ----------------------------------------------------------------------- */

/* A coroutine runs a function on a stack of its own, on the loop thread that started it, and may wait
 * inline: async_await(op) suspends it until op has completed and returns op (read status, value,
 * error). Every operation above is awaitable, and helpers that await may be ordinary functions called
 * from the coroutine. The loop serves everyone else while it waits. A route runs its handler as a
 * coroutine when registered with ROUTE_CORO (router.h); other code starts one with async_coro_spawn.
 * Continuations and awaits mix freely: an await is a continuation that resumes the function.
 *
 * Cancellation. A coroutine belongs to one scope (the one given to async_coro_spawn, or for a route
 * the scope of the first operation it awaits: http_request_async's). When that scope ends (answered,
 * client gone, deadline passed, server stopping), the coroutine is resumed once: the await it is
 * suspended in and every later await return at once with status ASYNC_CANCELLED (error "cancelled"),
 * and the function must return (it will: nothing waits any more). Its answer is dropped silently
 * then, and operations it starts are born cancelled. While it unwinds, the request, its arena and
 * the scope's memory are still valid; scope cleanups it registers still run. When it returns, its
 * stack goes back to its loop's pool: nothing of it outlives the scope. Await only operations of the
 * coroutine's own scope, one at a time, and never one given to gather, wait_for or wait_first (await
 * the combined one). async_op_cancel on an operation a coroutine awaits delivers nothing, as for a
 * continuation: the coroutine waits on until its scope ends (bound a wait with async_wait_for).
 * After a coroutine answers its request, the request and its memory are gone, exactly as after an
 * answer from a continuation: only locals remain.
 *
 * Stacks are small (coroutines.stack_kib, default 64 KiB, guard page below): no big arrays on the
 * stack, no deep recursion. Overflowing aborts the process with a message naming the route. */
async_op *async_await(async_op *op);

/* async_await for a wait that may last long while the coroutine holds little (an event stream's sleep
 * between events, a drain of a client that stopped reading): the same, except that once it has
 * lasted about a second (the loop's one-second tick, so 1 to 2 s) the used part of the coroutine's
 * stack is copied to a heap block of exactly that size and the stack's memory is given back to the
 * kernel; the copy goes back to the same addresses before the coroutine resumes, so it sees its
 * locals as it left them. An idle event stream then costs a few hundred bytes instead of a 4 KiB page
 * (docs/streaming.md, Memory per stream).
 *
 * The promise the caller makes: while this await lasts, NOTHING ELSE reads or writes the coroutine's
 * stack: no child coroutine, continuation, callback or worker-pool job holds the address of one of
 * its locals. (Nothing would notice such an access: it would read zeros and its writes would be
 * lost.) Awaiting a sleep, a drain, a receive of the coroutine's own scope whose arguments live in
 * the request's memory, is fine; awaiting a gather of children given pointers to locals is not: use
 * async_await there. Outside the one-second tick of an apiary loop (a coroutine on a loop of your
 * own) and on builds with the ucontext switch it is exactly async_await. */
async_op *async_await_idle(async_op *op);

/* Starts fn(arg) as a coroutine bound to `scope` (see above) and runs it at once, until its first
 * await or its return (asyncio.create_task, except that it starts at once). False (fn not called,
 * error logged) when no stack could be mapped. Called from a coroutine of the same scope, the new one
 * is the caller's child: when the scope ends, children unwind before their parent, so arg may point
 * into the parent's stack as long as the parent awaits its children (e.g. a gather of futures they
 * resolve). */
bool async_coro_spawn(async_scope *scope, void (*fn)(void *arg), void *arg);

/* True when called on a coroutine's stack. */
bool async_in_coro(void);

/* Runs fn(arg) on the stack of whoever resumed the current coroutine (the loop's thread stack) and
 * returns when it has; outside a coroutine it simply calls fn(arg). For work that recurses deeper
 * than a coroutine's stack should go: jansson's parser recurses once per nesting level, up to 2048
 * (about 85 bytes a level), so a body from an upstream that is not depth-checked the way request
 * bodies are (limits.json_max_depth) is parsed this way. fn may answer the request. The engine parses
 * the next pipelined request after a coroutine's answer on that stack too, once the coroutine
 * switches out (it returns, or awaits), which saves going out and back in for it. */
void async_coro_outside(void (*fn)(void *arg), void *arg);

#endif
