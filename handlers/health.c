/* health: liveness and readiness probes for load balancers and orchestrators. /healthz says the
 * process is serving; /readyz says it wants new traffic, and turns 503 while the server drains or,
 * with the Redis key-value backend, while this loop has no link to Redis, or with the MariaDB SQL
 * backend, while this loop has no connection to the database. */
#include "handlers.h"
#include "http_loop.h"

void health_live(http_request *req) { http_respond_json(req, 200, json_pack("{s:s}", "status", "ok")); }

/* Any client may ask /readyz, so the answer names no address: where Redis lives is for the operator,
 * and the Redis client logs it (with the reason) once per outage, when the link first fails. */
static void health_redis_unreachable(http_request *req)
{
    http_response_header(req, "Retry-After", "1");
    http_respond_problem(req, 503, NULL, "the key-value store is unavailable");
}

/* Everything else is fine: the answer depends on the SQL backend. MariaDB only (SQLite is always
 * ready): 503 while the schema is not in place yet or this loop has no connection up. The reason and
 * the address are in the log, never in the answer. */
static void health_answer_ready(http_request *req)
{
    if (!sql_ready(http_request_loop(req))) {
        http_response_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, NULL, "the database is unavailable");
        return;
    }
    http_respond_json(req, 200, json_pack("{s:s}", "status", "ready"));
}

static void health_redis_pinged(async_op *op, void *arg)
{
    http_request *req = arg;
    if (op->status != ASYNC_OK)
        health_redis_unreachable(req);
    else
        health_answer_ready(req);
}

void health_ready(http_request *req)
{
    http_loop *loop = http_request_loop(req);
    if (http_loop_draining(loop)) {
        http_response_header(req, "Retry-After", "5");
        http_respond_problem(req, 503, NULL, "the server is shutting down");
        return;
    }
    const handlers_settings *cfg = handlers_get_settings();
    if (cfg->kv_use_redis && !redis_ready(loop, cfg->redis)) {
        /* No link up. A PING fails at once when the links are waiting to retry, and waits for the
         * outcome when an attempt is under way (e.g. the loop's very first use of Redis), so the
         * answer is never a guess. */
        async_scope *scope = http_request_async(req);
        if (!scope)
            return;
        const char *argv[] = {"PING"};
        const size_t argvlen[] = {4};
        async_op_then(redis_command(scope, loop, cfg->redis, 1, argv, argvlen), health_redis_pinged, req);
        return;
    }
    health_answer_ready(req);
}
