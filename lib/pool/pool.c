/* pool: worker threads behind a bounded queue (see pool.h for the model and the ownership rules).
 *
 * One mutex guards the queue and each job's state while it is queued; a condition variable wakes idle
 * workers. A job's `op` field is touched only on its loop's thread (submit, cancel, delivery), so the
 * loop never needs the lock to learn whether anyone still wants a result: delivery and cancellation run
 * on the same thread and cannot race. The worker learns about a cancellation through an atomic flag. */
#include "pool.h"
#include "pool_internal.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "xalloc_internal.h"

const char POOL_ERROR_FULL[] = "the worker pool is full";

/* Under the pool lock: where the job is, so a cancel knows whether it can still drop it (QUEUED),
 * must ask the worker to stop (RUNNING), or only has to disown the result on its way (DONE). */
typedef enum pool_job_state { POOL_JOB_QUEUED, POOL_JOB_RUNNING, POOL_JOB_DONE } pool_job_state;

struct pool_job {
    pool_job *prev, *next;    /* the queue, under the pool lock */
    pool *pool;
    pool_job_state state;     /* under the pool lock */
    atomic_bool cancelled;
    pool_work_fn work;
    pool_call_fn call;        /* pool_call's function (work is then pool_call_work), else NULL */
    /* loop thread only */
    async_op *op;             /* NULL once cancelled: the result is discarded on delivery */
    async_scope *scope;
    async_post_fn post;
    void *post_target;
    /* written by the worker before it posts the job, read by the loop after */
    const char *error;
    size_t output_len;
    size_t output_written;    /* min(output_len as the worker set it, output_cap): what is wiped */
    uint64_t queued_us;
    size_t input_len;
    size_t output_cap;
    unsigned char *input;
    unsigned char *output;
    _Alignas(max_align_t) unsigned char data[]; /* input, then output (aligned for any type: pool_call) */
};

/* Where the output starts after `input_len` bytes of input: aligned for any type, so pool_call's
 * worker may use its copy of the state as the struct it is. */
static size_t pool_output_offset(size_t input_len)
{
    return (input_len + _Alignof(max_align_t) - 1) / _Alignof(max_align_t) * _Alignof(max_align_t);
}

struct pool {
    pthread_mutex_t lock;
    pthread_cond_t wake;
    pool_job *head, *tail;
    size_t count;
    size_t capacity;
    bool stopping;
    bool joined;
    bool run_inline;
    int nice;          /* workers' nice value, applied by each worker to itself */
    char name[16];     /* the workers' thread name */
    unsigned threads;
    pthread_t *workers;
    pool_stats stats;
};

#define POOL_STAT_ADD(p, field, n) __atomic_fetch_add(&(p)->stats.field, (uint64_t)(n), __ATOMIC_RELAXED)

static uint64_t pool_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Inputs can be secrets (passwords): wipe them before the memory goes back to malloc. The output is
 * wiped as far as the worker said it wrote (pool.h asks workers to leave nothing past *output_len):
 * wiping the whole room cost the loop a 128 KiB memset per SQLite statement. */
static void pool_job_free(pool_job *job)
{
    explicit_bzero(job->input, job->input_len);
    explicit_bzero(job->output, job->output_written);
    free(job);
}

bool pool_job_cancelled(const pool_job *job) { return atomic_load_explicit(&job->cancelled, memory_order_relaxed); }

/* ---- queue (caller holds the lock) ----------------------------------------------------------- */

static void pool_queue_push(pool *p, pool_job *job)
{
    job->next = NULL;
    job->prev = p->tail;
    if (p->tail)
        p->tail->next = job;
    else
        p->head = job;
    p->tail = job;
    p->count++;
}

static void pool_queue_unlink(pool *p, pool_job *job)
{
    if (job->prev)
        job->prev->next = job->next;
    else
        p->head = job->next;
    if (job->next)
        job->next->prev = job->prev;
    else
        p->tail = job->prev;
    job->prev = job->next = NULL;
    p->count--;
}

/* ---- the loop side ---------------------------------------------------------------------------- */

/* Runs on the submitting loop's thread: hand the output to whoever still waits for it. */
static void pool_deliver(void *arg)
{
    pool_job *job = arg;
    async_op *op = job->op;
    if (op) {
        async_future_on_cancel(op, NULL, NULL); /* it completes now: nothing left to cancel */
        if (job->error) {
            async_fail(op, job->error);
        } else if (job->call) {
            /* pool_call: the value is the state itself, in scope memory aligned for any type. */
            void *state = async_scope_alloc(job->scope, job->output_len);
            memcpy(state, job->output, job->output_len);
            async_resolve(op, state);
        } else {
            pool_result *result = async_scope_alloc(job->scope, sizeof(*result) + job->output_len + 1);
            result->len = job->output_len;
            memcpy(result->data, job->output, job->output_len);
            result->data[job->output_len] = '\0';
            async_resolve(op, result);
        }
    }
    pool_job_free(job);
}

/* The operation was cancelled (client gone, deadline passed, scope ended): a queued job is dropped
 * here; a running or finished one is disowned and freed when it is delivered. */
static void pool_on_cancel(async_op *op, void *arg)
{
    (void)op;
    pool_job *job = arg;
    pool *p = job->pool;
    pthread_mutex_lock(&p->lock);
    pool_job_state state = job->state;
    if (state == POOL_JOB_QUEUED) {
        pool_queue_unlink(p, job);
        POOL_STAT_ADD(p, queued, (uint64_t)-1);
    }
    if (state != POOL_JOB_DONE) {
        /* Under the lock, so the worker's DONE bookkeeping sees it: the job counts as cancelled,
         * never also as completed. A finished job waiting for delivery is simply not wanted any more. */
        atomic_store_explicit(&job->cancelled, true, memory_order_relaxed);
        POOL_STAT_ADD(p, cancelled, 1);
    }
    pthread_mutex_unlock(&p->lock);
    if (state == POOL_JOB_QUEUED) {
        pool_job_free(job);
        return;
    }
    job->op = NULL; /* running or on its way: freed on delivery, never delivered */
}

/* Runs the work and records the time; `completed` is counted by the caller, which knows whether the
 * job was cancelled meanwhile. */
static void pool_run(pool *p, pool_job *job)
{
    uint64_t started = pool_now_us();
    POOL_STAT_ADD(p, running, 1);
    job->error = job->work(job, job->input, job->input_len, job->output, job->output_cap, &job->output_len);
    job->output_written = job->output_len < job->output_cap ? job->output_len : job->output_cap;
    if (!job->error && job->output_len > job->output_cap) {
        log_error("pool: a job claims %zu bytes of output in %zu; result dropped", job->output_len,
                  job->output_cap);
        job->error = "internal error";
    }
    if (job->error)
        job->output_len = 0;
    POOL_STAT_ADD(p, running, (uint64_t)-1);
    POOL_STAT_ADD(p, run_us, pool_now_us() - started);
}

/* pool_call's work: the output starts as a copy of the state, which the call's function updates. */
static const char *pool_call_work(pool_job *job, const void *input, size_t input_len, void *output,
                                  size_t output_cap, size_t *output_len)
{
    (void)output_cap; /* == input_len */
    memcpy(output, input, input_len);
    *output_len = input_len;
    return job->call(job, output);
}

static async_op *pool_start(async_scope *scope, pool *p, pool_work_fn work, pool_call_fn call, const void *input,
                            size_t input_len, size_t output_cap)
{
    async_op *op = async_future(scope);
    if (op->status == ASYNC_CANCELLED)
        return op; /* the scope is ending: no work for nobody */
    async_post_fn post;
    void *target;
    async_scope_poster(scope, &post, &target);
    if (!post && !p->run_inline) {
        log_error("pool_submit: the scope has no poster, so no result could come back");
        async_fail(op, "internal error");
        return op;
    }
    if (input_len > SIZE_MAX / 4 - sizeof(pool_job) || output_cap > SIZE_MAX / 4 - sizeof(pool_job)) {
        async_fail(op, "job too large");
        return op;
    }
    pool_job *job = xmalloc(sizeof(*job) + pool_output_offset(input_len) + output_cap);
    memset(job, 0, sizeof(*job));
    job->pool = p;
    job->work = work;
    job->call = call;
    job->op = op;
    job->scope = scope;
    job->post = post;
    job->post_target = target;
    job->input_len = input_len;
    job->output_cap = output_cap;
    job->input = job->data;
    job->output = job->data + pool_output_offset(input_len);
    if (input_len)
        memcpy(job->input, input, input_len);
    job->queued_us = pool_now_us();
    pthread_mutex_lock(&p->lock);
    bool accepted = !p->stopping && (p->run_inline || p->count < p->capacity);
    if (accepted && !p->run_inline) {
        job->state = POOL_JOB_QUEUED;
        pool_queue_push(p, job);
        POOL_STAT_ADD(p, queued, 1); /* inside the lock, or a fast worker could take it below zero */
        pthread_cond_signal(&p->wake);
    }
    pthread_mutex_unlock(&p->lock);
    if (accepted && p->run_inline) {
        pool_run(p, job); /* on the loop thread: exactly what the pool exists to avoid */
        POOL_STAT_ADD(p, completed, 1);
        pool_deliver(job);
        return op;
    }
    if (!accepted) {
        POOL_STAT_ADD(p, rejected, 1);
        pool_job_free(job);
        async_fail(op, POOL_ERROR_FULL); /* completes through the loop like every other result */
        return op;
    }
    async_future_on_cancel(op, pool_on_cancel, job);
    return op;
}

async_op *pool_submit(async_scope *scope, pool *p, pool_work_fn work, const void *input, size_t input_len,
                      size_t output_cap)
{
    return pool_start(scope, p, work, NULL, input, input_len, output_cap);
}

async_op *pool_call(async_scope *scope, pool *p, pool_call_fn fn, const void *state, size_t size)
{
    return pool_start(scope, p, pool_call_work, fn, state, size, size);
}

/* ---- the worker side -------------------------------------------------------------------------- */

static void *pool_worker_main(void *arg)
{
    pool *p = arg;
    pthread_setname_np(pthread_self(), p->name);
    /* On Linux a nice value is per thread: this lowers only the worker, not the loops. */
    if (p->nice && setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), p->nice) != 0)
        log_warn("pool: cannot set the workers' nice value to %d", p->nice);
    for (;;) {
        pthread_mutex_lock(&p->lock);
        while (!p->head && !p->stopping)
            pthread_cond_wait(&p->wake, &p->lock);
        pool_job *job = p->head;
        if (!job) { /* stopping and nothing left: queued jobs always run first */
            pthread_mutex_unlock(&p->lock);
            return NULL;
        }
        pool_queue_unlink(p, job);
        job->state = POOL_JOB_RUNNING;
        POOL_STAT_ADD(p, queued, (uint64_t)-1);
        pthread_mutex_unlock(&p->lock);
        POOL_STAT_ADD(p, wait_us, pool_now_us() - job->queued_us);
        if (pool_job_cancelled(job))
            job->error = "cancelled";
        else
            pool_run(p, job);
        pthread_mutex_lock(&p->lock);
        job->state = POOL_JOB_DONE;
        if (!pool_job_cancelled(job))
            POOL_STAT_ADD(p, completed, 1);
        pthread_mutex_unlock(&p->lock);
        /* From here the job belongs to its loop: the post queue carries it there. */
        job->post(job->post_target, pool_deliver, job);
    }
}

/* ---- life cycle -------------------------------------------------------------------------------- */

static pool *pool_alloc(unsigned threads, size_t capacity, bool run_inline)
{
    pool *p = xcalloc(1, sizeof(*p));
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->capacity = capacity;
    p->run_inline = run_inline;
    p->stats.threads = threads;
    p->stats.queue_capacity = capacity;
    return p;
}

pool *pool_new(unsigned threads, size_t queue_capacity) { return pool_new_niced(threads, queue_capacity, 0); }

pool *pool_new_niced(unsigned threads, size_t queue_capacity, int nice)
{
    return pool_new_named(threads, queue_capacity, nice, "apiary-worker");
}

pool *pool_new_named(unsigned threads, size_t queue_capacity, int nice, const char *name)
{
    if (threads == 0 || queue_capacity == 0) {
        log_error("pool: needs at least one thread and one queue slot");
        return NULL;
    }
    pool *p = pool_alloc(threads, queue_capacity, false);
    p->nice = nice;
    snprintf(p->name, sizeof(p->name), "%s", name);
    p->workers = xcalloc(threads, sizeof(pthread_t));
    for (unsigned i = 0; i < threads; i++) {
        int rc = pthread_create(&p->workers[i], NULL, pool_worker_main, p);
        if (rc != 0) {
            log_error("pool: cannot start worker %u: %s", i, strerror(rc));
            p->threads = i;
            pool_shutdown(p);
            pool_free(p);
            return NULL;
        }
        p->threads = i + 1;
    }
    return p;
}

pool *pool_new_inline(void) { return pool_alloc(0, 1, true); }

void pool_shutdown(pool *p)
{
    if (!p || p->joined)
        return;
    pthread_mutex_lock(&p->lock);
    p->stopping = true;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->lock);
    for (unsigned i = 0; i < p->threads; i++)
        pthread_join(p->workers[i], NULL);
    p->joined = true;
}

void pool_free(pool *p)
{
    if (!p)
        return;
    pool_shutdown(p);
    free(p->workers);
    pthread_cond_destroy(&p->wake);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

void pool_stats_read(const pool *p, pool_stats *out)
{
    const uint64_t *src = (const uint64_t *)&p->stats;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

void pool_metrics_source(metrics_writer *w, void *arg)
{
    pool_stats s;
    pool_stats_read(arg, &s);
    struct {
        const char *name, *type, *help;
        double value;
    } rows[] = {
        {"apiary_pool_threads", "gauge", "Worker threads.", (double)s.threads},
        {"apiary_pool_queue_capacity", "gauge", "Jobs the queue holds before refusing.", (double)s.queue_capacity},
        {"apiary_pool_queue_depth", "gauge", "Jobs waiting for a worker now.", (double)s.queued},
        {"apiary_pool_running", "gauge", "Jobs on a worker now.", (double)s.running},
        {"apiary_pool_completed_total", "counter", "Jobs that ran to the end while still wanted.",
         (double)s.completed},
        {"apiary_pool_rejected_total", "counter", "Jobs refused because the queue was full (503).",
         (double)s.rejected},
        {"apiary_pool_cancelled_total", "counter", "Jobs whose request went away while queued or running.",
         (double)s.cancelled},
        {"apiary_pool_wait_seconds_total", "counter", "Time jobs spent queued.", (double)s.wait_us / 1e6},
        {"apiary_pool_run_seconds_total", "counter", "Time jobs spent running.", (double)s.run_us / 1e6},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        metrics_family(w, rows[i].name, rows[i].type, rows[i].help);
        metrics_sample(w, rows[i].name, NULL, rows[i].value);
    }
}
