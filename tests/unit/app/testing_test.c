/* testing_test: the in-process test client (include/apiary/testing.h, lib/app/testing.c) and what it
 * makes testable: an app's synchronous and coroutine routes, its config section, the built-ins, and
 * that a request reads one config generation from start to answer however many waits it makes (F16:
 * apiary_section() after an await returns the generation the request started on, while a request
 * started after the reload sees the new one). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiary.h"

typedef struct mine_settings {
    long n;
} mine_settings;

static int mine_parse(const json_t *section, void **out, char *err, size_t cap)
{
    const json_t *v = json_object_get(section, "n");
    if (section && !json_is_integer(v)) {
        snprintf(err, cap, "n: must be an integer");
        return -1;
    }
    mine_settings *s = malloc(sizeof(*s));
    s->n = v ? (long)json_integer_value(v) : 0;
    *out = s;
    return 0;
}

static void hello(http_request *req)
{
    const char *name = http_request_query(req, "name");
    http_respond_json(req, 200, json_pack("{s:s}", "hello", name ? name : "world"));
}

static void echo(http_request *req)
{
    json_error_t err;
    json_t *body = http_request_json(req, &err);
    if (!body) {
        http_respond_problem(req, 400, NULL, "%s", err.text);
        return;
    }
    http_response_header(req, "X-Echo", "yes");
    http_respond_json(req, 201, json_incref(body));
}

static apiary_test *testing_reload_target;

/* Reads its setting, has the config reloaded under it, waits, reads again. */
static void settings_twice(http_request *req)
{
    const mine_settings *before = apiary_section("mine");
    long n_before = before->n;
    if (http_request_query(req, "reload"))
        cr_assert_eq(apiary_test_reload(testing_reload_target, "{\"mine\": {\"n\": 2}}"), 0);
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    async_await(async_sleep(scope, 20));
    const mine_settings *after = apiary_section("mine");
    http_respond_json(req, 200, json_pack("{s:i,s:i}", "before", (int)n_before, "after", (int)after->n));
}

/* The same with a continuation instead of a coroutine. */
static void settings_later_done(async_op *op, void *arg)
{
    (void)op;
    http_request *req = arg;
    const long *before = http_request_value(req, "before");
    http_respond_json(req, 200, json_pack("{s:i,s:i}", "before", (int)*before, "after",
                                          (int)((const mine_settings *)apiary_section("mine"))->n));
}

static void settings_later(http_request *req)
{
    long *before = arena_alloc(&req->arena, sizeof(*before));
    *before = ((const mine_settings *)apiary_section("mine"))->n;
    http_request_set_value(req, "before", before);
    cr_assert_eq(apiary_test_reload(testing_reload_target, "{\"mine\": {\"n\": 3}}"), 0);
    async_scope *scope = http_request_async(req);
    if (scope)
        async_op_then(async_sleep(scope, 20), settings_later_done, req);
}

static apiary_app *testing_app(void)
{
    apiary_app *app = apiary_app_new("t");
    cr_assert_eq(apiary_app_section(app, "mine", mine_parse, free), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/hello", hello, 0), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_POST, "/echo", echo, ROUTE_BODY_JSON), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/settings", settings_twice, ROUTE_CORO), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/settings-later", settings_later, 0), 0);
    return app;
}

Test(testing, a_route_answers_with_status_headers_and_body)
{
    apiary_test *t = apiary_test_new(testing_app(), "{\"mine\": {\"n\": 1}}");
    cr_assert_not_null(t);
    apiary_test_response *r = apiary_test_get(t, "/hello?name=bee");
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(r->body, "{\"hello\":\"bee\"}");
    cr_assert_str_eq(apiary_test_header(r, "content-type"), "application/json");
    cr_assert_not_null(apiary_test_header(r, "X-Request-Id"));
    cr_assert_null(apiary_test_header(r, "X-Nothing"));
    apiary_test_response_free(r);

    r = apiary_test_send_json(t, "POST", "/echo", "{\"a\": [1, 2]}");
    cr_assert_eq(r->status, 201);
    cr_assert_str_eq(apiary_test_header(r, "X-Echo"), "yes");
    json_t *body = apiary_test_json(r);
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(body, "a"), 1)), 2);
    json_decref(body);
    apiary_test_response_free(r);

    r = apiary_test_request(t, "POST", "/echo", "Content-Type: text/plain\r\n", "x", 1, 0);
    cr_assert_eq(r->status, 415);
    cr_assert_str_eq(apiary_test_header(r, "Content-Type"), "application/problem+json");
    apiary_test_response_free(r);

    r = apiary_test_get(t, "/nowhere");
    cr_assert_eq(r->status, 404);
    apiary_test_response_free(r);

    r = apiary_test_request(t, "HEAD", "/hello", NULL, NULL, 0, 0);
    cr_assert_eq(r->status, 200);
    cr_assert_eq(r->body_len, 0);
    apiary_test_response_free(r);
    apiary_test_free(t);
}

Test(testing, builtins_are_served_and_count_the_app_routes)
{
    apiary_test *t = apiary_test_new(testing_app(), NULL);
    cr_assert_not_null(t);
    apiary_test_response *r = apiary_test_get(t, "/readyz");
    cr_assert_eq(r->status, 200);
    apiary_test_response_free(r);
    apiary_test_response_free(apiary_test_get(t, "/hello"));
    r = apiary_test_get(t, "/metrics");
    cr_assert_eq(r->status, 200);
    cr_assert(strstr(r->body, "route=\"GET /hello\""), "%s", r->body);
    apiary_test_response_free(r);
    apiary_test_free(t);
}

Test(testing, a_refused_config_is_no_client, .init = NULL)
{
    cr_assert_null(apiary_test_new(testing_app(), "{\"mine\": {\"n\": \"one\"}}"));
    cr_assert_null(apiary_test_new(testing_app(), "{\"threads\": \"two\"}"));
}

Test(testing, a_request_keeps_its_generation_across_awaits)
{
    apiary_test *t = apiary_test_new(testing_app(), "{\"mine\": {\"n\": 1}}");
    cr_assert_not_null(t);
    testing_reload_target = t;
    apiary_test_response *r = apiary_test_get(t, "/settings?reload=1");
    cr_assert_eq(r->status, 200, "%s", r->body);
    cr_assert_str_eq(r->body, "{\"before\":1,\"after\":1}", "the reload came while it waited");
    apiary_test_response_free(r);
    r = apiary_test_get(t, "/settings");
    cr_assert_str_eq(r->body, "{\"before\":2,\"after\":2}", "a request started after it sees the new one");
    apiary_test_response_free(r);
    cr_assert_eq(((const mine_settings *)apiary_section("mine"))->n, 2, "outside a request: the newest");
    r = apiary_test_get(t, "/settings-later");
    cr_assert_str_eq(r->body, "{\"before\":2,\"after\":2}", "a continuation too");
    apiary_test_response_free(r);
    apiary_test_free(t);
}

static int uses_parse(const json_t *section, const apiary_config_view *config, void **out, char *err, size_t cap)
{
    const char *name = json_string_value(json_object_get(section, "upstream"));
    if (section && (!name || !apiary_config_upstream(config, name))) {
        snprintf(err, cap, "upstream: must name an upstream");
        return -1;
    }
    *out = NULL;
    return 0;
}

Test(testing, a_reload_runs_the_sections_cross_checks_too)
{
    apiary_app *app = apiary_app_new("t");
    cr_assert_eq(apiary_app_section_checked(app, "uses", uses_parse, NULL), 0);
    apiary_test *t = apiary_test_new(app, "{\"uses\": {\"upstream\": \"a\"}, \"upstreams\": {\"a\": {\"url\": "
                                          "\"http://127.0.0.1:9\"}}}");
    cr_assert_not_null(t);
    cr_assert_eq(apiary_test_reload(t, "{\"uses\": {\"upstream\": \"b\"}, \"upstreams\": {\"a\": {\"url\": "
                                       "\"http://127.0.0.1:9\"}}}"),
                 -1, "the running config stays");
    cr_assert_eq(apiary_test_reload(t, "{\"uses\": {\"upstream\": \"b\"}, \"upstreams\": {\"b\": {\"url\": "
                                       "\"http://127.0.0.1:9\"}}}"),
                 0);
    apiary_test_free(t);
}
