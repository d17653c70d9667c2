/* http_answer_test: the answers of lib/http/http_answer.c (http_request.h) through the whole engine, with
 * the in-process test client: http_await_ok / http_respond_failed turn each way an awaited operation can
 * end into its problem+json (504, 503 with Retry-After, the caller's status for a failure), and
 * http_respond_created and http_respond_created_writer answer 201 with Location (500 past 1 KiB). Also http_client_get (a formatted GET path), that a
 * ROUTE_CORO handler's request has its scope before the handler runs, and that one returning without an
 * answer and with nothing pending is answered 500 at once (not a 504 at the deadline). */
#include <criterion/criterion.h>
#include <string.h>

#include "apiary.h"

/* Awaits an operation that ends the way ?how= says, through http_await_ok. */
static void await_route(http_request *req)
{
    const char *how = http_request_query(req, "how");
    async_scope *scope = http_request_async(req);
    cr_assert_not_null(scope, "a coroutine handler's request has its scope before it runs");
    async_op *op;
    if (strcmp(how, "timeout") == 0) {
        op = async_wait_for(scope, async_future(scope), 1);
    } else {
        op = async_future(scope);
        if (strcmp(how, "ok") == 0)
            async_resolve(op, "fine");
        else
            async_fail(op, strcmp(how, "full") == 0 ? POOL_ERROR_FULL : "boom");
    }
    int failed_status = http_request_query(req, "own") ? 500 : 0;
    op = http_await_ok(req, op, failed_status, "the dependency did not answer");
    if (op)
        http_respond_json(req, 200, json_pack("{s:s}", "value", (const char *)op->value));
}

/* An operation cancelled before anyone read it: what a child of a gather reads after a FAIL_FAST. */
static void cancelled_route(http_request *req)
{
    async_op *op = async_sleep(http_request_async(req), 10000);
    async_op_cancel(op);
    cr_assert(http_respond_failed(req, op, 0, "the sleep"));
}

static void created_route(http_request *req)
{
    http_respond_created(req, json_pack("{s:i}", "id", 7), "/v1/things/%d", 7);
}

/* The same with the request's JSON writer; ?long=1 asks for a Location past 1 KiB, ?empty=1 sends a
 * writer that holds no value. */
static void created_writer_route(http_request *req)
{
    static char long_part[1100];
    memset(long_part, 'a', sizeof(long_part) - 1);
    json_writer *w = http_json_writer(req);
    if (!http_request_query(req, "empty")) {
        json_writer_object_begin(w);
        json_writer_member_int(w, "id", 8);
        json_writer_object_end(w);
    }
    http_respond_created_writer(req, w, "/v1/things/%s", http_request_query(req, "long") ? long_part : "8");
}

/* A GET whose path is formatted: too long a path fails the call before anything is sent. */
static void get_route(http_request *req)
{
    static char long_part[HTTP_CLIENT_PATH_MAX + 10];
    memset(long_part, 'a', sizeof(long_part) - 1);
    const char *which = http_request_query(req, "long") ? long_part : "x";
    async_op *op = http_await_ok(req, http_client_get(http_request_async(req), http_request_loop(req),
                                                      apiary_upstream("nowhere"), "/items/%s?n=%d", which, 3),
                                 0, "nowhere did not answer");
    cr_assert_null(op, "the upstream's port is closed or the path too long: the call fails");
}

/* A coroutine handler that forgets to answer: ?after_await=1 forgets after an await. */
static void forgetful_route(http_request *req)
{
    if (http_request_query(req, "after_await"))
        async_await(async_sleep(http_request_async(req), 1));
}

static void late_done(async_op *op, void *arg)
{
    (void)op;
    http_respond_raw(arg, 200, "text/plain", "late", 4);
}

/* A coroutine handler that returns and answers from a continuation: not a forgotten answer. */
static void later_route(http_request *req)
{
    async_op_then(async_sleep(http_request_async(req), 20), late_done, req);
}

static apiary_test *answer_app(void)
{
    apiary_app *app = apiary_app_new("answer");
    apiary_app_route(app, HTTP_METHOD_GET, "/await", await_route, ROUTE_CORO);
    apiary_app_route(app, HTTP_METHOD_GET, "/cancelled", cancelled_route, 0);
    apiary_app_route(app, HTTP_METHOD_POST, "/things", created_route, 0);
    apiary_app_route(app, HTTP_METHOD_POST, "/things_writer", created_writer_route, 0);
    apiary_app_route(app, HTTP_METHOD_GET, "/get", get_route, ROUTE_CORO);
    apiary_app_route(app, HTTP_METHOD_GET, "/forgetful", forgetful_route, ROUTE_CORO);
    apiary_app_route(app, HTTP_METHOD_GET, "/later", later_route, ROUTE_CORO);
    /* Port 1 on loopback: nothing listens there, so a call fails fast. */
    apiary_test *t = apiary_test_new(app, "{\"upstreams\": {\"nowhere\": {\"url\": \"http://127.0.0.1:1\", "
                                          "\"timeout_ms\": 2000, \"retries\": 0}}}");
    cr_assert_not_null(t);
    return t;
}

/* Asserts status and detail of a problem answer, and whether it has Retry-After. */
static void assert_problem(apiary_test *t, const char *target, int status, const char *detail, bool retry_after)
{
    apiary_test_response *r = apiary_test_get(t, target);
    cr_assert_eq(r->status, status, "%s: %d %s", target, r->status, r->body);
    json_t *body = apiary_test_json(r);
    cr_assert_not_null(body);
    cr_assert_eq(json_integer_value(json_object_get(body, "status")), status);
    cr_assert_str_eq(json_string_value(json_object_get(body, "detail")), detail, "%s", target);
    cr_assert_eq(apiary_test_header(r, "Retry-After") != NULL, retry_after, "%s: Retry-After", target);
    cr_assert(strstr(r->head, "application/problem+json"));
    json_decref(body);
    apiary_test_response_free(r);
}

Test(http_answer, an_awaited_failure_answers_its_own_problem)
{
    apiary_test *t = answer_app();
    assert_problem(t, "/await?how=timeout", 504, "the dependency did not answer: timeout", false);
    assert_problem(t, "/await?how=failed", 502, "the dependency did not answer: boom", false);
    assert_problem(t, "/await?how=failed&own=1", 500, "the dependency did not answer: boom", false);
    assert_problem(t, "/await?how=full&own=1", 503, "the dependency did not answer: the worker pool is full", true);
    assert_problem(t, "/cancelled", 503, "the sleep: cancelled", true);
    apiary_test_response *r = apiary_test_get(t, "/await?how=ok");
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(r->body, "{\"value\":\"fine\"}", "success answers nothing: the handler does");
    apiary_test_response_free(r);
    apiary_test_free(t);
}

Test(http_answer, a_coroutine_handler_that_returns_unanswered_is_a_500_at_once)
{
    apiary_test *t = answer_app();
    assert_problem(t, "/forgetful", 500, "the handler did not answer", false);
    assert_problem(t, "/forgetful?after_await=1", 500, "the handler did not answer", false);
    apiary_test_response *r = apiary_test_get(t, "/later");
    cr_assert_eq(r->status, 200, "an answer left to a pending continuation is not forgotten (%s)", r->body);
    cr_assert_str_eq(r->body, "late");
    apiary_test_response_free(r);
    apiary_test_free(t);
}

Test(http_answer, created_has_its_location)
{
    apiary_test *t = answer_app();
    apiary_test_response *r = apiary_test_send_json(t, "POST", "/things", "{}");
    cr_assert_eq(r->status, 201);
    cr_assert_str_eq(apiary_test_header(r, "Location"), "/v1/things/7");
    cr_assert_str_eq(r->body, "{\"id\":7}");
    apiary_test_response_free(r);
    apiary_test_free(t);
}

Test(http_answer, created_with_the_writer_has_its_location)
{
    apiary_test *t = answer_app();
    apiary_test_response *r = apiary_test_send_json(t, "POST", "/things_writer", "{}");
    cr_assert_eq(r->status, 201, "%s", r->body);
    cr_assert_str_eq(apiary_test_header(r, "Location"), "/v1/things/8");
    cr_assert_str_eq(r->body, "{\"id\":8}");
    cr_assert(strstr(r->head, "application/json"));
    apiary_test_response_free(r);
    r = apiary_test_send_json(t, "POST", "/things_writer?long=1", "{}");
    cr_assert_eq(r->status, 500, "a Location past 1 KiB would be cut: %s", r->body);
    cr_assert(strstr(r->body, "the new resource's URL is too long"), "%s", r->body);
    cr_assert_null(apiary_test_header(r, "Location"), "no Location on the 500");
    apiary_test_response_free(r);
    r = apiary_test_send_json(t, "POST", "/things_writer?empty=1", "{}");
    cr_assert_eq(r->status, 500, "a writer without a value is a 500, as http_respond_json_writer's: %s", r->body);
    apiary_test_response_free(r);
    apiary_test_free(t);
}

Test(http_answer, a_formatted_get_is_refused_when_its_path_is_too_long)
{
    apiary_test *t = answer_app();
    assert_problem(t, "/get?long=1", 502, "nowhere did not answer: invalid_request", false);
    apiary_test_response *r = apiary_test_get(t, "/get");
    cr_assert_eq(r->status, 502, "a path that fits is sent: the closed port fails it (%s)", r->body);
    cr_assert_null(strstr(r->body, "invalid_request"), "%s", r->body);
    apiary_test_response_free(r);
    apiary_test_free(t);
}
