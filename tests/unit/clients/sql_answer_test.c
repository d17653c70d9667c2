/* sql_answer_test: sql_respond_failed / sql_await_ok (sql.h, lib/clients/sql_answer.c) through the whole
 * engine with the in-process test client: every SQL error becomes docs/sql.md's answer (504, 503 with
 * Retry-After: 1, a conflict 503 with Retry-After: 0 and words of its own, 500 without SQL internals), in a
 * callback handler and in a coroutine, and is counted under its own kind in /metrics; and sql.url "none":
 * statements, batches and transactions fail unavailable at once (503), /readyz is 200, and an app whose
 * startup hook migrates fails to start at once instead of waiting sql.startup_timeout_ms. */
#include <criterion/criterion.h>
#include <string.h>
#include <time.h>

#include "apiary.h"

/* The operation ?error= names: failed with that SQL error, timed out, cancelled, or OK. */
static async_op *op_for(http_request *req)
{
    static const struct {
        const char *name, *error;
    } errors[] = {{"timeout", SQL_ERROR_TIMEOUT},   {"busy", SQL_ERROR_BUSY},
                  {"conflict", SQL_ERROR_CONFLICT}, {"unavailable", SQL_ERROR_UNAVAILABLE},
                  {"connection_lost", SQL_ERROR_CONNECTION_LOST}, {"query", SQL_ERROR_QUERY},
                  {"too_large", SQL_ERROR_TOO_LARGE}};
    const char *which = http_request_query(req, "error");
    async_scope *scope = http_request_async(req);
    async_op *op = async_future(scope);
    if (strcmp(which, "ok") == 0) {
        async_resolve(op, "rows");
    } else if (strcmp(which, "wait_for") == 0) {
        async_op_cancel(op);
        op = async_wait_for(scope, async_future(scope), 1); /* a handler's own, shorter bound */
    } else if (strcmp(which, "cancelled") == 0) {
        async_op_cancel(op); /* as a gather's child reads after ASYNC_GATHER_FAIL_FAST */
    } else {
        for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++)
            if (strcmp(which, errors[i].name) == 0)
                async_fail(op, errors[i].error);
    }
    return op;
}

static void answer_ok(http_request *req, const async_op *op)
{
    http_respond_json(req, 200, json_pack("{s:s}", "value", (const char *)op->value));
}

/* A coroutine: sql_await_ok. */
static void await_route(http_request *req)
{
    async_op *op = sql_await_ok(req, op_for(req));
    if (op)
        answer_ok(req, op);
}

/* A callback handler: sql_respond_failed on an op that already completed. */
static void respond_route(http_request *req)
{
    async_op *op = op_for(req);
    if (op->status == ASYNC_PENDING) {
        http_respond_problem(req, 500, NULL, "the test's op is still pending");
        return;
    }
    if (!sql_respond_failed(req, op))
        answer_ok(req, op);
}

/* Real calls of the driver (sql.url "none" in these tests): ?what=query|many|batch|begin. */
static void db_route(http_request *req)
{
    const char *what = http_request_query(req, "what");
    async_scope *scope = http_request_async(req);
    http_loop *loop = http_request_loop(req);
    sql_stmt stmt = {"SELECT 1", NULL, 0, 0};
    async_op *op = strcmp(what, "many") == 0    ? sql_query_many(scope, loop, &stmt, 1)
                   : strcmp(what, "batch") == 0 ? sql_batch(scope, loop, &stmt, 1)
                   : strcmp(what, "begin") == 0 ? sql_begin(scope, loop)
                                                : sql_query(scope, loop, &stmt);
    cr_assert_eq(op->status, ASYNC_FAILED, "%s: no backend fails at once, before any await", what);
    if (sql_await_ok(req, op))
        http_respond_problem(req, 500, NULL, "%s succeeded without a database", what);
}

static apiary_app *answer_app(void)
{
    apiary_app *app = apiary_app_new("sql-answer");
    apiary_app_route(app, HTTP_METHOD_GET, "/await", await_route, ROUTE_CORO);
    apiary_app_route(app, HTTP_METHOD_GET, "/respond", respond_route, 0);
    apiary_app_route(app, HTTP_METHOD_GET, "/db", db_route, ROUTE_CORO);
    return app;
}

/* Asserts status and detail of a problem answer, and its Retry-After: `retry_after` ("1", "0"), or none
 * when NULL. */
static void assert_problem(apiary_test *t, const char *target, int status, const char *detail,
                           const char *retry_after)
{
    apiary_test_response *r = apiary_test_get(t, target);
    cr_assert_eq(r->status, status, "%s: %d %s", target, r->status, r->body);
    json_t *body = apiary_test_json(r);
    cr_assert_not_null(body, "%s", target);
    cr_assert_str_eq(json_string_value(json_object_get(body, "detail")), detail, "%s", target);
    cr_assert_eq(json_integer_value(json_object_get(body, "status")), status, "%s", target);
    const char *after = apiary_test_header(r, "Retry-After");
    cr_assert_eq(after != NULL, retry_after != NULL, "%s: Retry-After", target);
    if (after)
        cr_assert_str_eq(after, retry_after, "%s: Retry-After", target);
    cr_assert(strstr(r->head, "application/problem+json"), "%s", target);
    json_decref(body);
    apiary_test_response_free(r);
}

Test(sql_answer, every_error_is_answered_as_docs_sql_md_says)
{
    apiary_test *t = apiary_test_new(answer_app(), "{\"sql\": {\"url\": \"none\", \"query_timeout_ms\": 1500}}");
    cr_assert_not_null(t);
    const char *routes[] = {"/await", "/respond"};
    for (size_t i = 0; i < 2; i++) {
        char target[64];
#define AT(error) (snprintf(target, sizeof(target), "%s?error=%s", routes[i], error), target)
        assert_problem(t, AT("timeout"), 504, "the database did not answer within 1500 ms", NULL);
        assert_problem(t, AT("busy"), 503, "the database is busy: too many queries are waiting", "1");
        /* A lock conflict is not a full line: words of its own, and "send it again now". */
        assert_problem(t, AT("conflict"), 503,
                       "the request conflicted with a concurrent one in the database; send it again", "0");
        assert_problem(t, AT("unavailable"), 503, "the database is unavailable", "1");
        assert_problem(t, AT("connection_lost"), 503, "the database is unavailable", "1");
        assert_problem(t, AT("query"), 500, "the database could not run the query", NULL);
        assert_problem(t, AT("too_large"), 500, "the database could not run the query", NULL);
        assert_problem(t, AT("cancelled"), 503, "the database query was cancelled", "1");
        apiary_test_response *r = apiary_test_get(t, AT("ok"));
        cr_assert_eq(r->status, 200, "%s: %s", target, r->body);
        cr_assert_str_eq(r->body, "{\"value\":\"rows\"}", "success answers nothing: the handler does");
        apiary_test_response_free(r);
#undef AT
    }
    assert_problem(t, "/await?error=wait_for", 504, "the database did not answer in time", NULL);
    apiary_test_free(t);
}

Test(sql_answer, a_timeout_without_settings_names_no_number)
{
    /* No "sql" section: the test client starts no driver, so there is no query timeout to name. */
    apiary_test *t = apiary_test_new(answer_app(), NULL);
    cr_assert_not_null(t);
    assert_problem(t, "/respond?error=timeout", 504, "the database did not answer in time", NULL);
    apiary_test_free(t);
}

Test(sql_none, every_call_fails_unavailable_at_once_and_readyz_is_200)
{
    apiary_test *t = apiary_test_new(answer_app(), "{\"sql\": {\"url\": \"none\"}}");
    cr_assert_not_null(t);
    const sql_settings *s = sql_current_settings();
    cr_assert_not_null(s, "the settings say none, rather than \"not started\"");
    cr_assert_eq(s->backend, SQL_BACKEND_NONE);
    const char *whats[] = {"query", "many", "batch", "begin"};
    for (size_t i = 0; i < sizeof(whats) / sizeof(whats[0]); i++) {
        char target[32];
        snprintf(target, sizeof(target), "/db?what=%s", whats[i]);
        assert_problem(t, target, 503, "the database is unavailable", "1");
    }
    apiary_test_response *r = apiary_test_get(t, "/readyz");
    cr_assert_eq(r->status, 200, "no database to wait for: %s", r->body);
    apiary_test_response_free(r);
    apiary_test_free(t);
}

static const char *const NONE_STEP[] = {"CREATE TABLE IF NOT EXISTS t (id INTEGER)"};
static const sql_migration NONE_MIGRATIONS[] = {{NONE_STEP, 1}};

static int migrate_startup(const apiary_context *ctx, async_scope *scope, http_loop *loop, void *arg)
{
    (void)ctx, (void)arg;
    async_op *op = async_await(sql_migrate(scope, loop, NONE_MIGRATIONS, 1));
    cr_assert_eq(op->error, SQL_ERROR_UNAVAILABLE);
    return op->status == ASYNC_OK ? 0 : -1;
}

Test(sql_none, an_app_that_migrates_fails_to_start_at_once)
{
    apiary_app *app = answer_app();
    apiary_app_on_startup(app, migrate_startup, NULL);
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    apiary_test *t = apiary_test_new(app, "{\"sql\": {\"url\": \"none\", \"startup_timeout_ms\": 20000}}");
    clock_gettime(CLOCK_MONOTONIC, &b);
    cr_assert_null(t, "a startup hook that fails stops the start");
    double waited = (double)(b.tv_sec - a.tv_sec) + (double)(b.tv_nsec - a.tv_nsec) / 1e9;
    cr_assert_lt(waited, 5.0, "no database will come up: no waiting sql.startup_timeout_ms (%.1f s)", waited);
}
