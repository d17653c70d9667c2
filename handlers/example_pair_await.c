/* example_pair_await: /v1/example/pair written as a coroutine (ROUTE_CORO), for docs/async.md's side by
 * side comparison and the benchmark of both styles. GET /v1/example/pair_await?a_ms=A&b_ms=B&timeout_ms=T
 * answers exactly as /v1/example/pair does (handlers/example_pair.c), in one function read top to
 * bottom:
 *
 *     a, b = await asyncio.gather(wait_for(sleep(A), T), wait_for(sleep(B), T),
 *                                 return_exceptions=True)
 *
 * docs/async.md shows this file verbatim too (a test checks it). */
#include "handlers.h"

static json_t *example_pair_await_result(const async_op *op)
{
    if (op->status == ASYNC_OK)
        return json_pack("{s:b,s:I}", "ok", 1, "ms", (json_int_t)async_op_elapsed_ms(op));
    return json_pack("{s:b,s:s}", "ok", 0, "error", op->error);
}

void example_pair_await_get(http_request *req)
{
    unsigned max_ms = handlers_get_settings()->max_sleep_ms;
    unsigned a_ms, b_ms, timeout_ms;
    if (!sleep_query_ms(req, "a_ms", 0, max_ms, &a_ms) || !sleep_query_ms(req, "b_ms", 0, max_ms, &b_ms) ||
        !sleep_query_ms(req, "timeout_ms", 1, max_ms, &timeout_ms))
        return;
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;

    async_op *sources[2] = {
        async_wait_for(scope, async_sleep(scope, a_ms), timeout_ms),
        async_wait_for(scope, async_sleep(scope, b_ms), timeout_ms),
    };
    /* The loop serves everyone else until both are over. If the request ends first (client gone,
     * deadline, shutdown), the await returns ASYNC_CANCELLED and the answer below is dropped. */
    async_op *both = async_await(async_gather(scope, sources, 2, ASYNC_GATHER_ALL));
    if (both->status == ASYNC_CANCELLED)
        return;
    json_t *a = example_pair_await_result(async_gather_child(both, 0));
    json_t *b = example_pair_await_result(async_gather_child(both, 1));
    http_respond_json(req, 200, json_pack("{s:o,s:o}", "a", a, "b", b));
}
