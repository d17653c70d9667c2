/* aggregate: POST /v1/aggregate fans one request out to simulated upstream sources and gathers what
 * each did, the way a gateway calls several backends: at most `concurrency` calls at once (a
 * bounded gather), each call bounded by `timeout_ms`, results in the order the sources were given. It
 * exercises the toolkit's bounded gather, futures and wait_for together; its nested JSON body is
 * declared (aggregate_schema), so the engine checks it, listing every violation, before any work. The handler is a
 * coroutine (ROUTE_CORO) that awaits one bounded gather (async_gather_map), which starts each source, in order, as
 * a place among `concurrency` frees up; the simulated upstreams stay continuations: both styles share one
 * toolkit. */
#include <string.h>

#include "handlers.h"

#define AGGREGATE_NAME_MAX_BYTES 64

typedef struct aggregate_source {
    const char *name;   /* points into the request's parsed body, which outlives the scope */
    size_t name_len;
    unsigned delay_ms;
    bool fail;
    async_op *work;     /* the simulated call, completed by its delay timer */
    async_op *delay;
    async_op *bounded;  /* the call under timeout_ms: its status and duration are the result */
} aggregate_source;

/* On the handler's stack: the coroutine outlives every continuation that points here (they run only
 * while the request's scope is alive, and the handler returns only once it ended or all are done). */
typedef struct aggregate_run {
    unsigned timeout_ms;
    unsigned concurrency; /* per request, so one client's concurrency never limits another's */
    size_t count;
    aggregate_source *sources;
} aggregate_run;

/* ---- what the route takes (docs/schemas.md) -------------------------------------------------- */

typedef struct aggregate_source_in {
    const char *name;
    int64_t delay_ms;
    bool fail;
} aggregate_source_in;

typedef struct aggregate_in {
    SCHEMA_LIST(aggregate_source_in) sources;
    int64_t timeout_ms;
    int64_t concurrency; /* 0: as many as there are sources */
} aggregate_in;

#define AGGREGATE_MS_MAX SCHEMA_LE_VAR(&handlers_max_sleep_ms)
static const schema_member aggregate_source_members[] = {
    SCHEMA_REQUIRED(aggregate_source_in, name, SCHEMA_STRING(.min_length = 1, .max_bytes = AGGREGATE_NAME_MAX_BYTES)),
    SCHEMA_REQUIRED(aggregate_source_in, delay_ms, SCHEMA_INTEGER(.min = SCHEMA_GE(0), .max = AGGREGATE_MS_MAX)),
    SCHEMA_OPTIONAL(aggregate_source_in, fail, SCHEMA_BOOLEAN()),
    SCHEMA_END,
};
static const schema_member aggregate_members[] = {
    SCHEMA_REQUIRED(aggregate_in, sources,
                    SCHEMA_ARRAY(SCHEMA_OBJECT(aggregate_source_in, aggregate_source_members), .min_items = 1)),
    SCHEMA_REQUIRED(aggregate_in, timeout_ms, SCHEMA_INTEGER(.min = SCHEMA_GE(1), .max = AGGREGATE_MS_MAX)),
    SCHEMA_OPTIONAL(aggregate_in, concurrency, SCHEMA_INTEGER(.min = SCHEMA_GE(1))),
    SCHEMA_END,
};

/* What depends on the config or on another member: how many sources, a concurrency within them. */
static void aggregate_check(http_request *req, const void *input, schema_errors *errs)
{
    (void)req;
    const aggregate_in *in = input;
    const unsigned max = handlers_get_settings()->max_aggregate_sources;
    errs->in = "body";
    if (in->sources.count > max)
        schema_errors_add(errs, "sources", "must be an array of 1 to %u sources", max);
    if (in->concurrency > (int64_t)in->sources.count)
        schema_errors_add(errs, "concurrency", "must be an integer between 1 and the number of sources (%zu)",
                          in->sources.count);
}

static const schema_member aggregate_result_members[] = {
    SCHEMA_UNBOUND("name", SCHEMA_MEMBER_REQUIRED, SCHEMA_STRING()),
    SCHEMA_UNBOUND("ok", SCHEMA_MEMBER_REQUIRED, SCHEMA_BOOLEAN()),
    SCHEMA_UNBOUND("ms", 0, SCHEMA_INTEGER(.min = SCHEMA_GE(0))),
    SCHEMA_UNBOUND("error", 0, SCHEMA_ENUM("timeout", "failed")),
    SCHEMA_END,
};
static const schema aggregate_result_schema = {.type = SCHEMA_T_OBJECT, .members = aggregate_result_members};
static const schema_member aggregate_answer_members[] = {
    SCHEMA_UNBOUND("results", SCHEMA_MEMBER_REQUIRED, SCHEMA_ARRAY(&aggregate_result_schema)),
    SCHEMA_UNBOUND("elapsed_ms", SCHEMA_MEMBER_REQUIRED, SCHEMA_INTEGER(.min = SCHEMA_GE(0))),
    SCHEMA_END,
};
const route_schema aggregate_schema = {
    .input_size = sizeof(aggregate_in),
    .body = SCHEMA_OBJECT(aggregate_in, aggregate_members),
    .check = aggregate_check,
    .summary = "Call simulated sources, at most concurrency at once, each within timeout_ms",
    .responses = (const route_response[]){
        {200, "each source's outcome, in order",
         &(const schema){.type = SCHEMA_T_OBJECT, .members = aggregate_answer_members}},
        {0}},
};

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

/* Starts source i once async_gather_map has a place for it: its timeout starts only now, so time spent
 * queueing behind other sources never counts against it. */
static async_op *aggregate_source_start(async_scope *scope, size_t i, void *arg)
{
    aggregate_run *run = arg;
    aggregate_source *src = &run->sources[i];
    src->work = async_future(scope);
    src->delay = async_sleep(scope, src->delay_ms);
    async_future_on_cancel(src->work, aggregate_work_cancel, src);
    async_op_then(src->delay, aggregate_delay_done, src);
    src->bounded = async_wait_for(scope, src->work, run->timeout_ms);
    return src->bounded;
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
    const aggregate_in *in = http_request_input(req);
    aggregate_run run = {.timeout_ms = (unsigned)in->timeout_ms, .count = in->sources.count};
    run.concurrency = in->concurrency ? (unsigned)in->concurrency : (unsigned)run.count;
    run.sources = arena_alloc(&req->arena, run.count * sizeof(*run.sources));
    memset(run.sources, 0, run.count * sizeof(*run.sources));
    for (size_t i = 0; i < run.count; i++) {
        const aggregate_source_in *src = &in->sources.items[i];
        run.sources[i] = (aggregate_source){.name = src->name, .name_len = strlen(src->name),
                                            .delay_ms = (unsigned)src->delay_ms, .fail = src->fail};
    }
    /* for src in sources: async with sem: start(src) -- in the order given, `concurrency` at a time */
    async_op *all = async_await(async_gather_map(http_request_async(req), run.count, run.concurrency,
                                                 aggregate_source_start, &run, ASYNC_GATHER_ALL));
    if (all->status != ASYNC_OK)
        return; /* the request ended first */
    json_t *results = json_array();
    for (size_t i = 0; i < run.count; i++)
        json_array_append_new(results, aggregate_result(&run.sources[i]));
    http_respond_json(req, 200, json_pack("{s:o,s:I}", "results", results, "elapsed_ms",
                                          (json_int_t)async_op_elapsed_ms(all)));
}
