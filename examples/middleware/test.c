/* test: one test per route and piece of middleware, in-process (apiary/testing.h): the app is built as
 * main() builds it and each request goes through the whole engine, with no port and no second process.
 * Run with ctest in the build directory (needs criterion: apt-get install libcriterion-dev). */
#include <criterion/criterion.h>
#include <string.h>

#include "app.h"

static const char *config = "{\"api\": {\"tokens\": [\"t0ken\"], \"cors_origins\": [\"https://app.example\"],"
                            " \"audit_ms\": 10}}";
static apiary_test *t;

static void start(void)
{
    t = apiary_test_new(middleware_app(), config);
    cr_assert_not_null(t);
}

static void stop(void) { apiary_test_free(t); }

TestSuite(notes, .init = start, .fini = stop);

static apiary_test_response *call(const char *method, const char *target, const char *headers, const char *json)
{
    return apiary_test_request(t, method, target, headers, json, json ? strlen(json) : 0, 0);
}

#define TOKEN "Authorization: Bearer t0ken\r\n"

Test(notes, ping_is_public)
{
    apiary_test_response *r = call("GET", "/v1/ping", NULL, NULL);
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(r->body, "{\"pong\":\"yes\"}");
    cr_assert_not_null(apiary_test_header(r, "Server-Timing"));
    apiary_test_response_free(r);
}

Test(notes, list_needs_a_token)
{
    apiary_test_response *r = call("GET", "/v1/notes", NULL, NULL);
    cr_assert_eq(r->status, 401);
    cr_assert_str_eq(apiary_test_header(r, "WWW-Authenticate"), "Bearer realm=\"notes\"");
    cr_assert_not_null(apiary_test_header(r, "Server-Timing"), "the after hook times the 401 too");
    apiary_test_response_free(r);
    r = call("GET", "/v1/notes", "Authorization: Bearer wrong\r\n", NULL);
    cr_assert_eq(r->status, 401);
    apiary_test_response_free(r);
    r = call("GET", "/v1/notes", TOKEN, NULL);
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(r->body, "{\"notes\":[]}");
    apiary_test_response_free(r);
}

Test(notes, create_answers_and_audits_in_the_background)
{
    apiary_test_response *r =
        call("POST", "/v1/notes", TOKEN "Content-Type: application/json\r\n", "{\"text\":\"hi\"}");
    cr_assert_eq(r->status, 201, "%s", r->body);
    cr_assert_str_eq(apiary_test_header(r, "Location"), "/v1/notes/1");
    apiary_test_response_free(r);
    apiary_test_run(t, 50); /* the audit finishes after the answer */
    r = call("GET", "/metrics", NULL, NULL);
    cr_assert(strstr(r->body, "apiary_background_tasks_started_total 1\n"));
    cr_assert(strstr(r->body, "apiary_background_tasks_running 0\n"));
    apiary_test_response_free(r);
    r = call("POST", "/v1/notes", TOKEN "Content-Type: application/json\r\n", "{\"text\":\"\"}");
    cr_assert_eq(r->status, 422);
    apiary_test_response_free(r);
}

Test(notes, get_one)
{
    apiary_test_response_free(
        call("POST", "/v1/notes", TOKEN "Content-Type: application/json\r\n", "{\"text\":\"a\"}"));
    apiary_test_response *r = call("GET", "/v1/notes/1", TOKEN, NULL);
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(r->body, "{\"id\":1,\"text\":\"a\",\"owner\":\"t0ken\"}");
    apiary_test_response_free(r);
    r = call("GET", "/v1/notes/9", TOKEN, NULL);
    cr_assert_eq(r->status, 404);
    apiary_test_response_free(r);
}

Test(notes, cors_preflight_and_headers)
{
    apiary_test_response *r = call("OPTIONS", "/v1/notes", "Origin: https://app.example\r\n"
                                                           "Access-Control-Request-Method: POST\r\n", NULL);
    cr_assert_eq(r->status, 204, "answered before the token check and before the 405");
    cr_assert_str_eq(apiary_test_header(r, "Access-Control-Allow-Origin"), "https://app.example");
    cr_assert_str_eq(apiary_test_header(r, "Access-Control-Allow-Methods"), "GET, POST, DELETE");
    apiary_test_response_free(r);
    r = call("GET", "/v1/notes", TOKEN "Origin: https://app.example\r\n", NULL);
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(apiary_test_header(r, "Access-Control-Allow-Origin"), "https://app.example");
    apiary_test_response_free(r);
    r = call("OPTIONS", "/v1/notes", "Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n", NULL);
    cr_assert_eq(r->status, 401, "no preflight for an origin not allowed");
    cr_assert_null(apiary_test_header(r, "Access-Control-Allow-Origin"));
    apiary_test_response_free(r);
}
