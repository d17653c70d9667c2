/* sleep: GET /v1/sleep?ms=N answers {"slept_ms":N} after N milliseconds, waiting on a loop timer so
 * the loop keeps serving everyone else meanwhile. The smallest asynchronous endpoint: a load-test
 * target for many waiting requests, and the proof that waiting never blocks. Its ms is declared
 * (sleep_schema, docs/schemas.md); the hand-written query check the example pair and kv's ttl still
 * use is here too (sleep_query_ms). */
#include <stdint.h>

#include "handlers.h"

bool sleep_query_ms(http_request *req, const char *name, unsigned min, unsigned max, unsigned *out)
{
    const char *text = http_request_query(req, name);
    /* Digits only: strtoul would accept leading spaces and a sign, and wrap "-1" to a huge value,
     * none of which a client should be able to slip through. */
    uint64_t value = 0;
    bool valid = text && *text;
    for (const char *p = text; valid && *p; p++) {
        if (*p < '0' || *p > '9')
            valid = false;
        else if ((value = value * 10 + (uint64_t)(*p - '0')) > max)
            valid = false; /* stop before a long digit string can overflow */
    }
    if (!valid || value < min) {
        http_respond_problem(req, 400, json_pack("{s:s}", "field", name),
                             "query parameter %s must be a decimal integer between %u and %u", name, min,
                             max);
        return false;
    }
    *out = (unsigned)value;
    return true;
}

/* What the continuation needs; lives in the request's scope, so it goes when the request does. */
typedef struct sleep_state {
    http_request *req;
    unsigned ms;
} sleep_state;

static void sleep_done(async_op *op, void *arg)
{
    (void)op; /* a sleep only ever completes OK; a cancelled one never gets here */
    sleep_state *st = arg;
    http_respond_json(st->req, 200, json_pack("{s:I}", "slept_ms", (json_int_t)st->ms));
}

typedef struct sleep_in {
    int64_t ms;
} sleep_in;

static const schema_member sleep_answer[] = {SCHEMA_UNBOUND("slept_ms", SCHEMA_MEMBER_REQUIRED, SCHEMA_INTEGER()),
                                             SCHEMA_END};
const route_schema sleep_schema = {
    .input_size = sizeof(sleep_in),
    .query = (const schema_member[]){SCHEMA_REQUIRED(sleep_in, ms,
                                                     SCHEMA_INTEGER(.min = SCHEMA_GE(0),
                                                                    .max = SCHEMA_LE_VAR(&handlers_max_sleep_ms))),
                                     SCHEMA_END},
    .summary = "Answer after ms milliseconds, waiting on a loop timer",
    .responses =
        (const route_response[]){{200, "slept", &(const schema){.type = SCHEMA_T_OBJECT, .members = sleep_answer}},
                                 {0}},
};

void sleep_get(http_request *req)
{
    unsigned ms = (unsigned)((const sleep_in *)http_request_input(req))->ms;
    async_scope *scope = http_request_async(req);
    if (!scope)
        return; /* the loop is at its cap of waiting requests and has already answered 503 */
    sleep_state *st = async_scope_alloc(scope, sizeof(*st));
    st->req = req;
    st->ms = ms;
    async_op_then(async_sleep(scope, ms), sleep_done, st);
}
