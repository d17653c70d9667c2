/* background_test: background tasks (include/apiary/background.h, lib/http/http_background.c) through
 * the in-process test client: a task outlives its request's answer and awaits on its own scope with the
 * request's settings, the per-loop cap refuses at once, /metrics counts them, and a task still running
 * when the server stops is cancelled (its await returns ASYNC_CANCELLED) with a log line. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiary.h"

static int task_done, task_cancelled;
static long task_setting;

static int n_parse(const json_t *section, void **out, char *err, size_t cap)
{
    (void)err;
    (void)cap;
    long *n = malloc(sizeof(*n));
    *n = section ? (long)json_integer_value(json_object_get(section, "n")) : 0;
    *out = n;
    return 0;
}

typedef struct job {
    unsigned sleep_ms;
} job;

static void work(async_scope *scope, void *arg)
{
    job *j = arg;
    async_op *slept = async_await(async_sleep(scope, j->sleep_ms));
    if (slept->status == ASYNC_CANCELLED) {
        task_cancelled++;
        return;
    }
    task_setting = *(const long *)apiary_section("bg");
    task_done++;
}

static void start(http_request *req)
{
    const char *ms = http_request_query(req, "ms");
    job j = {ms ? (unsigned)atoi(ms) : 30};
    if (!http_background_start(req, "test job", work, &j, sizeof(j))) {
        http_response_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, NULL, "too much background work");
        return;
    }
    http_respond_json(req, 202, json_pack("{s:b}", "accepted", 1));
}

/* A coroutine handler that awaits, then starts a task: the task is no child of the handler's coroutine
 * (it is started from the loop's stack) and runs on after the handler's stack went back to the pool. */
static void start_from_coro(http_request *req)
{
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    async_await(async_sleep(scope, 5));
    job j = {20};
    bool started = http_background_start(req, "coro job", work, &j, sizeof(j));
    http_respond_json(req, started ? 202 : 503, json_pack("{s:b}", "accepted", started));
}

static apiary_app *bg_app(void)
{
    apiary_app *app = apiary_app_new("bg");
    cr_assert_eq(apiary_app_section(app, "bg", n_parse, free), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_POST, "/jobs", start, 0), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_POST, "/coro-jobs", start_from_coro, ROUTE_CORO), 0);
    return app;
}

static int post_job(apiary_test *t, const char *target)
{
    apiary_test_response *r = apiary_test_request(t, "POST", target, NULL, "", 0, 0);
    int status = r->status;
    apiary_test_response_free(r);
    return status;
}

Test(background, a_task_outlives_its_answer_with_the_requests_settings)
{
    apiary_test *t = apiary_test_new(bg_app(), "{\"bg\": {\"n\": 5}}");
    cr_assert_not_null(t);
    cr_assert_eq(post_job(t, "/jobs?ms=50"), 202);
    cr_assert_eq(task_done, 0, "answered before the task finished");
    cr_assert_eq(apiary_test_reload(t, "{\"bg\": {\"n\": 6}}"), 0);
    apiary_test_run(t, 300);
    cr_assert_eq(task_done, 1);
    cr_assert_eq(task_setting, 5, "the generation its request started on");
    apiary_test_response *r = apiary_test_get(t, "/metrics");
    cr_assert(strstr(r->body, "apiary_background_tasks_started_total 1\n"), "%s", r->body);
    cr_assert(strstr(r->body, "apiary_background_tasks_running 0\n"));
    apiary_test_response_free(r);
    apiary_test_free(t);
}

Test(background, the_cap_refuses_at_once)
{
    apiary_test *t = apiary_test_new(bg_app(), "{\"limits\": {\"max_background_per_loop\": 1}}");
    cr_assert_not_null(t);
    cr_assert_eq(post_job(t, "/jobs?ms=200"), 202);
    cr_assert_eq(post_job(t, "/jobs?ms=200"), 503, "one runs already");
    apiary_test_response *r = apiary_test_get(t, "/metrics");
    cr_assert(strstr(r->body, "apiary_background_tasks_refused_total 1\n"), "%s", r->body);
    cr_assert(strstr(r->body, "apiary_background_tasks_running 1\n"));
    apiary_test_response_free(r);
    apiary_test_run(t, 400);
    cr_assert_eq(task_done, 1);
    cr_assert_eq(post_job(t, "/jobs?ms=1"), 202, "room again once it finished");
    apiary_test_free(t);
}

Test(background, a_task_still_running_at_stop_is_cancelled_and_logged, .init = cr_redirect_stderr)
{
    apiary_test *t = apiary_test_new(bg_app(), NULL);
    cr_assert_not_null(t);
    cr_assert_eq(post_job(t, "/jobs?ms=60000"), 202);
    apiary_test_free(t);
    cr_assert_eq(task_cancelled, 1, "its await returned ASYNC_CANCELLED");
    cr_assert_eq(task_done, 0);
    fflush(stderr);
    char buf[4096] = "";
    size_t n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
    buf[n] = '\0';
    cr_assert(strstr(buf, "background task test job had not finished when the server stopped: cancelled"), "got: %s",
              buf);
}

Test(background, a_coroutine_handler_starts_one_after_an_await)
{
    apiary_test *t = apiary_test_new(bg_app(), "{\"bg\": {\"n\": 3}}");
    cr_assert_not_null(t);
    cr_assert_eq(post_job(t, "/coro-jobs"), 202);
    cr_assert_eq(post_job(t, "/coro-jobs"), 202);
    apiary_test_run(t, 200);
    cr_assert_eq(task_done, 2);
    cr_assert_eq(task_setting, 3);
    apiary_test_free(t);
}
