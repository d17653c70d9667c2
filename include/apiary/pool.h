/* pool: a fixed set of worker threads behind a bounded job queue, for CPU-heavy work that must not run
 * on an event loop (asyncio's run_in_executor / to_thread, with the bound asyncio leaves to you).
 *
 * Submitting never blocks: when the queue is full the submit fails at once, and the caller answers
 * 503 with Retry-After instead of building a backlog. A job's result goes back to the loop that
 * submitted it, through that loop's post queue, and completes an async operation there; a worker never
 * touches a connection, a loop's buffers or its timers.
 *
 * Ownership. A job owns a copy of its input and its own output area (one malloc): the worker reads
 * and writes nothing else, so a request that is cancelled while its job runs cannot pull memory from
 * under the worker. The job has exactly one owner at a time: the queue, then the worker, then the
 * submitting loop's post queue, then the loop, which frees it. Cancelling (client gone, deadline
 * passed) drops a queued job at once; a running job sees pool_job_cancelled() turn true (it may stop
 * early) and its output is discarded when it reaches the loop, never delivered.
 *
 * Shutdown. pool_shutdown stops accepting, lets the queued jobs run, and joins the workers. Call it
 * after the loops have stopped running requests but before they are freed: late results are then
 * posted to loops that are still allocated, which discard them when freed. */
#ifndef APIARY_POOL_H
#define APIARY_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "async.h"

typedef struct pool pool;
typedef struct pool_job pool_job;

/* What a worker runs. Reads input[0..input_len), writes at most output_cap bytes to output and sets
 * *output_len. The input and output[0..*output_len) are wiped when the job is freed (a password may be
 * in either); bytes a worker leaves past *output_len are not, so use no scratch room there for secrets. Returns NULL on success or a short static reason ("invalid hash") that fails the
 * operation. Runs on a worker thread: no loop objects, no request memory, nothing but its arguments. */
typedef const char *(*pool_work_fn)(pool_job *job, const void *input, size_t input_len, void *output,
                                    size_t output_cap, size_t *output_len);

/* What a completed pool operation's value points to (in the request's scope memory). */
typedef struct pool_result {
    size_t len;
    unsigned char data[]; /* output bytes, followed by a NUL so text results are C strings */
} pool_result;

/* Counters for the metrics endpoint; every field is read with relaxed atomics. */
typedef struct pool_stats {
    uint64_t threads;
    uint64_t queue_capacity;
    uint64_t queued;       /* jobs waiting now */
    uint64_t running;      /* jobs on a worker now */
    uint64_t completed;    /* jobs that ran to the end (delivered or discarded) */
    uint64_t rejected;     /* submits refused because the queue was full (or the pool shut down) */
    uint64_t cancelled;    /* jobs cancelled while queued or running */
    uint64_t wait_us;      /* total time jobs spent queued */
    uint64_t run_us;       /* total time jobs spent running */
} pool_stats;

/* Starts `threads` workers (>= 1) behind a queue of `queue_capacity` jobs (>= 1). NULL if a thread
 * cannot be started (logged). */
pool *pool_new(unsigned threads, size_t queue_capacity);
/* Like pool_new, with the workers' nice value (0..19). A loop thread that shares a CPU with a busy
 * worker must get that CPU back the moment a request wakes it; a worker niced well below the loop
 * loses its time slice at once instead of after the scheduler tick (4 ms here), which is what keeps a
 * loop's latency low while the pool is saturated. The pool still gets CPU whenever the loop idles. */
pool *pool_new_niced(unsigned threads, size_t queue_capacity, int nice);
/* Stops accepting, runs what is queued, joins every worker. Idempotent. Blocks: main thread only, and
 * for as long as the longest running job (work that can run long must poll pool_job_cancelled; jobs
 * of cancelled requests see it turn true). */
void pool_shutdown(pool *p);
/* A pool without threads that runs every job on the submitting loop's thread, inside pool_submit:
 * what the pool exists to avoid. Only for benchmarks that measure the difference (pool.run_inline). */
pool *pool_new_inline(void);
/* Frees the pool after pool_shutdown. Every scope that ever submitted to it must have ended first
 * (a late cancel would otherwise reach freed memory); the server frees its loops, and with them their
 * requests, before the pool. */
void pool_free(pool *p);
void pool_stats_read(const pool *p, pool_stats *out);

/* Submits work from a loop thread and returns the operation that completes with it on that loop: OK
 * with value = a pool_result in the scope's memory, FAILED with the work's reason, or FAILED with
 * POOL_ERROR_FULL at once (still delivered through the loop, like every completion) when the queue is
 * full or the pool is shutting down. The scope must have a poster (see async_scope_set_poster): it is
 * how the result comes back. input is copied; output_cap bounds the result. Cancelling the operation
 * (directly, or by ending the scope) cancels the job. */
async_op *pool_submit(async_scope *scope, pool *p, pool_work_fn work, const void *input, size_t input_len,
                      size_t output_cap);

/* What pool_call runs on a worker: reads and updates `state`, its own copy of the caller's (see
 * pool_call); returns NULL on success or a short static reason that fails the operation. The same rules
 * as pool_work_fn: a worker thread, nothing but its arguments (pool_job_cancelled to stop early). */
typedef const char *(*pool_call_fn)(pool_job *job, void *state);

/* pool_submit for the usual shape of a job, a struct of inputs with room for the results
 * (loop.run_in_executor(fn, args) in asyncio): the worker runs fn on a copy of `size` bytes of
 * `state`, and the operation completes OK with value = that copy as fn left it (scope memory, aligned
 * for any type), or FAILED as pool_submit's does (fn's reason, POOL_ERROR_FULL). The state is plain
 * data: pointers in it must stay valid on another thread until the job ends, so copy strings in. */
async_op *pool_call(async_scope *scope, pool *p, pool_call_fn fn, const void *state, size_t size);

/* A metrics_source_fn (include/apiary/metrics.h) for this pool: queue depth, running, completed, rejected,
 * cancelled, time queued and running. arg is the pool. */
struct metrics_writer;
void pool_metrics_source(struct metrics_writer *w, void *pool);

/* The reason a submit failed because the queue was full; compare by pointer. */
extern const char POOL_ERROR_FULL[];

/* True once the job's operation was cancelled. Worker side: poll it in long loops to stop early. */
bool pool_job_cancelled(const pool_job *job);

#endif
