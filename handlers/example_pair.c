/* example_pair: the worked example of docs/async.md, and the handler to copy when an endpoint must
 * wait for several things at once. GET /v1/example/pair?a_ms=A&b_ms=B&timeout_ms=T stands for a call
 * to two upstreams: "a" takes A ms and "b" takes B ms (simulated with timers), each may take at most T,
 * and both run at the same time, so the answer comes after about max(min(A, T), min(B, T)) ms:
 *
 *     {"a":{"ok":true,"ms":50},"b":{"ok":false,"error":"timeout"}}
 *
 * In asyncio terms:
 *
 *     a, b = await asyncio.gather(wait_for(sleep(A), T), wait_for(sleep(B), T),
 *                                 return_exceptions=True)
 *
 * docs/async.md shows this file verbatim (a test checks it), so keep the two in step. */
#include "handlers.h"

/* One source's part of the answer. A finished operation keeps its status, error and timestamps until
 * its scope ends, so the continuation can read them at leisure. */
static json_t *example_pair_result(const async_op *op)
{
    if (op->status == ASYNC_OK)
        return json_pack("{s:b,s:I}", "ok", 1, "ms", (json_int_t)async_op_elapsed_ms(op));
    /* The only other outcome here is ASYNC_TIMEOUT, whose error is "timeout". */
    return json_pack("{s:b,s:s}", "ok", 0, "error", op->error);
}

/* The continuation: runs from the loop once both sources are over. It never runs if the request ended
 * first (client gone, deadline, shutdown), because ending the request ends its scope, and nothing of
 * an ended scope ever runs. That is why `req` is safe to use here without any check. */
static void example_pair_done(async_op *both, void *arg)
{
    http_request *req = arg;
    /* With ASYNC_GATHER_ALL the gather itself always completes OK; each child says how it went. */
    json_t *a = example_pair_result(async_gather_child(both, 0));
    json_t *b = example_pair_result(async_gather_child(both, 1));
    /* Answering ends the request, which frees the scope and every operation in it: no cleanup. */
    http_respond_json(req, 200, json_pack("{s:o,s:o}", "a", a, "b", b));
}

void example_pair_get(http_request *req)
{
    /* 1. Check the input before starting anything; a bad value is answered 400 right here. */
    unsigned max_ms = handlers_get_settings()->max_sleep_ms;
    unsigned a_ms, b_ms, timeout_ms;
    if (!sleep_query_ms(req, "a_ms", 0, max_ms, &a_ms) || !sleep_query_ms(req, "b_ms", 0, max_ms, &b_ms) ||
        !sleep_query_ms(req, "timeout_ms", 1, max_ms, &timeout_ms))
        return;

    /* 2. Get the request's scope. NULL means this loop already has too many requests waiting: the
     *    engine has answered 503 (with Retry-After), so just return. */
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;

    /* 3. Start both sources. Each constructor starts its operation at once; nothing waits yet.
     *    async_wait_for takes over the sleep: on timeout it cancels it and completes ASYNC_TIMEOUT. */
    async_op *sources[2] = {
        async_wait_for(scope, async_sleep(scope, a_ms), timeout_ms),
        async_wait_for(scope, async_sleep(scope, b_ms), timeout_ms),
    };

    /* 4. Await both (gather copies the array), then return without answering: the loop serves other
     *    requests meanwhile, and example_pair_done answers when the pair is complete. */
    async_op_then(async_gather(scope, sources, 2, ASYNC_GATHER_ALL), example_pair_done, req);
}
