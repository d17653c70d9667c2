/* aggregate: POST /v1/aggregate fans one request out to simulated upstream sources and gathers what
 * each did, the way a gateway calls several backends: at most `concurrency` calls at once (a
 * semaphore), each call bounded by `timeout_ms`, results in the order the sources were given. It
 * exercises the toolkit's semaphore, futures, wait_for and gather together, and shows how a nested
 * JSON body is checked field by field before any work starts. The handler is a coroutine (ROUTE_CORO)
 * that awaits a permit before starting each source, in order, then awaits them all; the simulated
 * upstreams and the permits' release stay continuations: both styles share one toolkit. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "handlers.h"
#include "request_body.h"

#define AGGREGATE_NAME_MAX_BYTES 64

typedef struct aggregate_run aggregate_run;

typedef struct aggregate_source {
    aggregate_run *run;
    const char *name;   /* points into the request's parsed body, which outlives the scope */
    size_t name_len;
    unsigned delay_ms;
    bool fail;
    async_op *task;     /* resolved once the source is over, whatever happened: what gather awaits */
    async_op *work;     /* the simulated call, completed by its delay timer */
    async_op *delay;
    async_op *bounded;  /* the call under timeout_ms: its status and duration are the result */
} aggregate_source;

/* On the handler's stack: the coroutine outlives every continuation that points here (they run only
 * while the request's scope is alive, and the handler returns only once it ended or all are done). */
struct aggregate_run {
    async_scope *scope;
    async_sem sem;      /* per request, so one client's concurrency never limits another's */
    unsigned timeout_ms;
    unsigned concurrency;
    size_t count;
    aggregate_source *sources;
};

/* ---- validation ------------------------------------------------------------------------------ */

/* "sources[3].delay_ms", in the request's arena: its length depends on a client-chosen name. */
static const char *aggregate_field(http_request *req, size_t index, const char *member)
{
    int len = snprintf(NULL, 0, "sources[%zu].%s", index, member);
    char *out = arena_alloc(&req->arena, (size_t)len + 1);
    snprintf(out, (size_t)len + 1, "sources[%zu].%s", index, member);
    return out;
}

/* JSON reals (1.0, 1e3) are refused rather than truncated: the client meant something we cannot
 * know. */
static bool aggregate_int(const json_t *v, json_int_t min, json_int_t max, unsigned *out)
{
    if (!json_is_integer(v))
        return false;
    json_int_t n = json_integer_value(v);
    if (n < min || n > max)
        return false;
    *out = (unsigned)n;
    return true;
}

static bool aggregate_parse_source(http_request *req, size_t i, json_t *obj, aggregate_source *src)
{
    const unsigned max_sleep_ms = handlers_get_settings()->max_sleep_ms;
    char self[32];
    snprintf(self, sizeof(self), "sources[%zu]", i);
    if (!json_is_object(obj)) {
        request_body_reject(req, 422, self, "must be an object");
        return false;
    }
    const char *key;
    json_t *value;
    json_object_foreach(obj, key, value) {
        if (strcmp(key, "name") != 0 && strcmp(key, "delay_ms") != 0 && strcmp(key, "fail") != 0) {
            request_body_reject(req, 422, aggregate_field(req, i, key),
                             "is not a member of a source (name, delay_ms, fail)");
            return false;
        }
    }
    json_t *name = json_object_get(obj, "name");
    if (!json_is_string(name) || json_string_length(name) == 0 ||
        json_string_length(name) > AGGREGATE_NAME_MAX_BYTES) {
        request_body_reject(req, 422, aggregate_field(req, i, "name"), "is required: a string of 1 to %d bytes",
                         AGGREGATE_NAME_MAX_BYTES);
        return false;
    }
    if (!aggregate_int(json_object_get(obj, "delay_ms"), 0, max_sleep_ms, &src->delay_ms)) {
        request_body_reject(req, 422, aggregate_field(req, i, "delay_ms"), "is required: an integer between 0 and %u",
                         max_sleep_ms);
        return false;
    }
    json_t *fail = json_object_get(obj, "fail");
    if (fail && !json_is_boolean(fail)) {
        request_body_reject(req, 422, aggregate_field(req, i, "fail"), "must be a boolean");
        return false;
    }
    src->name = json_string_value(name);
    src->name_len = json_string_length(name);
    src->fail = json_is_true(fail);
    return true;
}

/* Checks the whole body and fills `run` (sources in the request's arena); on any error answers and
 * returns false. Nothing is started before everything is known to be valid. */
static bool aggregate_parse(http_request *req, aggregate_run *run)
{
    const handlers_settings *cfg = handlers_get_settings();
    static const char *const members[] = {"sources", "timeout_ms", "concurrency", NULL};
    json_t *body = request_body_object(req, members, false);
    if (!body)
        return false;

    json_t *sources = json_object_get(body, "sources");
    if (!json_is_array(sources) || json_array_size(sources) == 0 ||
        json_array_size(sources) > cfg->max_aggregate_sources) {
        request_body_reject(req, 422, "sources", "is required: an array of 1 to %u sources",
                         cfg->max_aggregate_sources);
        return false;
    }
    /* Bounded by max_aggregate_sources just above, never by what the client sent. */
    run->count = json_array_size(sources);
    run->sources = arena_alloc(&req->arena, run->count * sizeof(*run->sources));
    memset(run->sources, 0, run->count * sizeof(*run->sources));
    for (size_t i = 0; i < run->count; i++) {
        if (!aggregate_parse_source(req, i, json_array_get(sources, i), &run->sources[i]))
            return false;
    }

    if (!aggregate_int(json_object_get(body, "timeout_ms"), 1, cfg->max_sleep_ms, &run->timeout_ms)) {
        request_body_reject(req, 422, "timeout_ms", "is required: an integer between 1 and %u", cfg->max_sleep_ms);
        return false;
    }
    json_t *concurrency = json_object_get(body, "concurrency");
    run->concurrency = (unsigned)run->count;
    if (concurrency && !aggregate_int(concurrency, 1, (json_int_t)run->count, &run->concurrency)) {
        request_body_reject(req, 422, "concurrency", "must be an integer between 1 and the number of sources (%zu)",
                         run->count);
        return false;
    }
    return true;
}

/* ---- the run --------------------------------------------------------------------------------- */

/* The simulated upstream answers when its delay is up: success, or the failure it was told to have. */
static void aggregate_delay_done(async_op *delay, void *arg)
{
    (void)delay;
    aggregate_source *src = arg;
    if (src->fail)
        async_fail(src->work, "failed");
    else
        async_resolve(src->work, NULL);
}

/* wait_for gave up on the call: stop its timer as a real client would abort its request, instead of
 * leaving it to fire into a future nobody waits for. */
static void aggregate_work_cancel(async_op *work, void *arg)
{
    (void)work;
    aggregate_source *src = arg;
    async_op_cancel(src->delay);
}

static void aggregate_source_done(async_op *bounded, void *arg)
{
    (void)bounded; /* its status, error and duration are read when the answer is built */
    aggregate_source *src = arg;
    async_sem_release(&src->run->sem);
    async_resolve(src->task, NULL);
}

/* Starts a source that holds a permit: its timeout starts only now, so time spent queueing behind
 * other sources never counts against it. The permit goes back when it is over. */
static void aggregate_source_start(aggregate_source *src)
{
    async_scope *scope = src->run->scope;
    src->work = async_future(scope);
    src->delay = async_sleep(scope, src->delay_ms);
    async_future_on_cancel(src->work, aggregate_work_cancel, src);
    async_op_then(src->delay, aggregate_delay_done, src);
    src->bounded = async_wait_for(scope, src->work, src->run->timeout_ms);
    async_op_then(src->bounded, aggregate_source_done, src);
}

static json_t *aggregate_result(const aggregate_source *src)
{
    json_t *name = json_stringn(src->name, src->name_len);
    const async_op *op = src->bounded;
    /* "ms" is the source's own duration: from its future, created before its sleep began. The bounded
     * wait starts a moment later (a slow loop, e.g. under ASan, made a 100 ms source read 98 ms). */
    if (op->status == ASYNC_OK)
        return json_pack("{s:o,s:b,s:I}", "name", name, "ok", 1, "ms", (json_int_t)async_op_elapsed_ms(src->work));
    return json_pack("{s:o,s:b,s:s}", "name", name, "ok", 0, "error", op->error ? op->error : "failed");
}

void aggregate_post(http_request *req)
{
    aggregate_run run = {0};
    if (!aggregate_parse(req, &run))
        return;
    async_scope *scope = http_request_async(req);
    if (!scope)
        return; /* the loop is at its cap of waiting requests and has already answered 503 */
    run.scope = scope;
    async_sem_init(&run.sem, run.concurrency);
    async_op **tasks = async_scope_alloc(scope, run.count * sizeof(*tasks));
    for (size_t i = 0; i < run.count; i++) {
        run.sources[i].run = &run;
        run.sources[i].task = tasks[i] = async_future(scope);
    }
    async_op *all = async_gather(scope, tasks, run.count, ASYNC_GATHER_ALL); /* "elapsed_ms" counts from here */
    /* for src in sources: await sem.acquire(); start(src) -- in the order given */
    for (size_t i = 0; i < run.count; i++) {
        if (async_await(async_sem_acquire(scope, &run.sem))->status != ASYNC_OK)
            return; /* the request ended while this source queued */
        aggregate_source_start(&run.sources[i]);
    }
    if (async_await(all)->status != ASYNC_OK)
        return;
    json_t *results = json_array();
    for (size_t i = 0; i < run.count; i++)
        json_array_append_new(results, aggregate_result(&run.sources[i]));
    http_respond_json(req, 200, json_pack("{s:o,s:I}", "results", results, "elapsed_ms",
                                          (json_int_t)async_op_elapsed_ms(all)));
}
