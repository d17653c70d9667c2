/* middleware_test: before/after hooks (include/apiary/middleware.h, lib/http/http_middleware.c, their
 * runs in lib/http/http_conn.c), through the in-process test client: the documented order, early
 * answers (401 before the route's 404 or its handler), headers on every answer, prefix coverage, what
 * the route declared (pattern, method, the app's own flag bits), values left for the handler, the
 * built-ins left alone, and answers given later (a coroutine's, a passed deadline's 504). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "apiary.h"

#define ROUTE_PUBLIC ROUTE_APP(0)

static char trace[256];

static void trace_add(const char *what)
{
    if (trace[0])
        strncat(trace, ",", sizeof(trace) - strlen(trace) - 1);
    strncat(trace, what, sizeof(trace) - strlen(trace) - 1);
}

static bool auth(http_request *req, void *arg)
{
    (void)arg;
    trace_add("auth");
    http_route_info route;
    if (http_request_route(req, &route) && (route.flags & ROUTE_PUBLIC))
        return false;
    const char *h = http_request_header(req, "Authorization");
    if (!h || strcmp(h, "Bearer good") != 0) {
        http_response_header(req, "WWW-Authenticate", "Bearer");
        http_respond_problem(req, 401, NULL, "a valid bearer token is required");
        return true;
    }
    http_request_set_value(req, "user", "alice");
    return false;
}

static bool second(http_request *req, void *arg)
{
    (void)req;
    trace_add((const char *)arg);
    return false;
}

static void after_outer(http_request *req, int status, void *arg)
{
    (void)arg;
    char buf[16];
    snprintf(buf, sizeof(buf), "%d", status);
    http_response_header(req, "X-Status-Seen", buf);
    trace_add("after-outer");
}

static void after_inner(http_request *req, int status, void *arg)
{
    (void)status;
    (void)arg;
    trace_add("after-inner");
    http_respond_problem(req, 500, NULL, "an after hook may not answer"); /* refused: logged, dropped */
}

static void who(http_request *req)
{
    trace_add("handler");
    http_route_info route;
    cr_assert(http_request_route(req, &route));
    const char *user = http_request_value(req, "user");
    http_respond_json(req, 200,
                      json_pack("{s:s,s:s,s:s}", "user", user ? user : "-", "pattern", route.pattern, "method",
                                http_method_name(route.method)));
}

static void open_route(http_request *req)
{
    trace_add("handler");
    http_respond_json(req, 200, json_pack("{s:b}", "open", 1));
}

static void slow(http_request *req)
{
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    if (http_request_query(req, "deadline"))
        http_request_set_deadline(req, 20);
    async_await(async_sleep(scope, 50));
    http_respond_json(req, 200, json_pack("{s:s}", "slept", "yes"));
}

static apiary_app *mw_app(void)
{
    apiary_app *app = apiary_app_new("mw");
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/v1/who/{id}", who, 0), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/v1/open", open_route, ROUTE_PUBLIC), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/v1/slow", slow, ROUTE_CORO), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/v1beta/x", open_route, 0), 0);
    cr_assert_eq(apiary_app_after(app, "/", after_outer, NULL), 0);
    cr_assert_eq(apiary_app_before(app, "/v1", auth, NULL), 0);
    cr_assert_eq(apiary_app_after(app, "/v1/", after_inner, NULL), 0);
    cr_assert_eq(apiary_app_before(app, "", second, "second"), 0);
    return app;
}

/* A hook that cannot be added stops the start: the app would otherwise run unguarded. */
Test(middleware, a_refused_hook_stops_the_start)
{
    apiary_app *app = mw_app();
    cr_assert_eq(apiary_app_before(app, "v1", auth, NULL), -1, "a prefix starts with /");
    cr_assert_eq(apiary_app_before(app, "/", NULL, NULL), -1);
    cr_assert_eq(apiary_app_after(app, NULL, after_outer, NULL), -1);
    cr_assert_null(apiary_test_new(app, NULL));
}

static apiary_test_response *get_auth(apiary_test *t, const char *target, const char *token)
{
    char h[128];
    snprintf(h, sizeof(h), "Authorization: Bearer %s\r\n", token);
    trace[0] = '\0';
    return apiary_test_request(t, "GET", target, h, NULL, 0, 0);
}

Test(middleware, run_in_the_documented_order_and_pass_values)
{
    apiary_test *t = apiary_test_new(mw_app(), NULL);
    cr_assert_not_null(t);
    apiary_test_response *r = get_auth(t, "/v1/who/7", "good");
    cr_assert_eq(r->status, 200, "%s", r->body);
    cr_assert_str_eq(r->body, "{\"user\":\"alice\",\"pattern\":\"/v1/who/{id}\",\"method\":\"GET\"}");
    cr_assert_str_eq(trace, "auth,second,handler,after-inner,after-outer");
    cr_assert_str_eq(apiary_test_header(r, "X-Status-Seen"), "200");
    apiary_test_response_free(r);
    apiary_test_free(t);
}

Test(middleware, a_before_hook_answers_early_and_after_hooks_still_run)
{
    apiary_test *t = apiary_test_new(mw_app(), NULL);
    apiary_test_response *r = get_auth(t, "/v1/who/7", "bad");
    cr_assert_eq(r->status, 401);
    cr_assert_str_eq(trace, "auth,after-inner,after-outer", "neither the second hook nor the handler ran");
    cr_assert_str_eq(apiary_test_header(r, "WWW-Authenticate"), "Bearer");
    cr_assert_str_eq(apiary_test_header(r, "X-Status-Seen"), "401");
    cr_assert_str_eq(apiary_test_header(r, "Content-Type"), "application/problem+json");
    apiary_test_response_free(r);

    r = get_auth(t, "/v1/nothing-here", "bad");
    cr_assert_eq(r->status, 401, "auth before the 404: unknown paths are not told apart");
    apiary_test_response_free(r);
    r = get_auth(t, "/v1/nothing-here", "good");
    cr_assert_eq(r->status, 404);
    cr_assert_str_eq(apiary_test_header(r, "X-Status-Seen"), "404", "after hooks see the engine's answers too");
    apiary_test_response_free(r);
    apiary_test_free(t);
}

Test(middleware, route_flags_and_prefixes_decide_what_runs)
{
    apiary_test *t = apiary_test_new(mw_app(), NULL);
    apiary_test_response *r = get_auth(t, "/v1/open", "none");
    cr_assert_eq(r->status, 200, "ROUTE_APP(0) read by the hook: a public route");
    apiary_test_response_free(r);
    r = get_auth(t, "/v1beta/x", "none");
    cr_assert_eq(r->status, 200, "/v1 does not cover /v1beta");
    cr_assert_str_eq(trace, "second,handler,after-outer");
    apiary_test_response_free(r);
    r = get_auth(t, "/healthz", "none");
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(trace, "", "the built-ins run no middleware");
    cr_assert_null(apiary_test_header(r, "X-Status-Seen"));
    apiary_test_response_free(r);
    apiary_test_free(t);
}

Test(middleware, answers_given_later_run_the_after_hooks)
{
    apiary_test *t = apiary_test_new(mw_app(), NULL);
    apiary_test_response *r = get_auth(t, "/v1/slow", "good");
    cr_assert_eq(r->status, 200, "%s", r->body);
    cr_assert_str_eq(apiary_test_header(r, "X-Status-Seen"), "200");
    apiary_test_response_free(r);
    r = get_auth(t, "/v1/slow?deadline=1", "good");
    cr_assert_eq(r->status, 504);
    cr_assert_str_eq(apiary_test_header(r, "X-Status-Seen"), "504");
    apiary_test_response_free(r);
    apiary_test_free(t);
}
