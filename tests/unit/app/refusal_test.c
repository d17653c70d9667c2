/* refusal_test: a registration the app API refuses (lib/app/app.c, app_static.c) is logged with its
 * reason and stops the start, through the in-process test client (apiary_test_new returns NULL) and
 * apiary_app_main (exit status 2 for a start, --check-config and --openapi; --help and --version still
 * answer). Before, a refused route left the app starting without it, answering 404, and a malformed
 * pattern was not even logged. The integration test test_97_library runs such an app as a binary. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <string.h>

#include "apiary.h"

static void refusal_handler(http_request *req) { http_respond_json(req, 200, json_pack("{s:b}", "ok", 1)); }

static int refusal_parse(const json_t *section, void **out, char *err, size_t cap)
{
    (void)section, (void)err, (void)cap;
    *out = NULL;
    return 0;
}

static int refusal_option(const char *value, void *arg, char *why, size_t cap)
{
    (void)value, (void)arg, (void)why, (void)cap;
    return 0;
}

/* What the app wrote to stderr: its log lines and apiary_app_main's / apiary_test_new's verdict. */
static const char *refusal_stderr(void)
{
    static char buf[8192];
    fflush(stderr);
    size_t n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
    buf[n] = '\0';
    return buf;
}

static void refusal_redirect(void)
{
    cr_redirect_stdout();
    cr_redirect_stderr();
}

#define refusal_expect(out, text) cr_assert(strstr((out), (text)), "expected \"%s\" in:\n%s", (text), (out))

typedef struct refusal_in {
    int64_t n;
} refusal_in;

/* The reproduction of the bug report: a minimum above the maximum. */
static const route_schema refusal_bad_schema = {
    .input_size = sizeof(refusal_in),
    .query = (const schema_member[]){
        SCHEMA_REQUIRED(refusal_in, n, SCHEMA_INTEGER(.min = SCHEMA_GE(10), .max = SCHEMA_LE(1))), SCHEMA_END}};

/* An app that is fine but for what the test adds to it. */
static apiary_app *refusal_app(void)
{
    apiary_app *app = apiary_app_new("refused");
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/ok", refusal_handler, 0), 0);
    return app;
}

Test(refusal, the_reported_app_does_not_start, .init = refusal_redirect)
{
    apiary_app *app = refusal_app();
    cr_assert_eq(apiary_app_route_schema(app, HTTP_METHOD_GET, "/x", refusal_handler, 0, &refusal_bad_schema), -1);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/x/{a}/{a}", refusal_handler, 0), -1);
    cr_assert_null(apiary_test_new(app, NULL));
    const char *out = refusal_stderr();
    refusal_expect(out, "route GET /x: query.n: ");
    refusal_expect(out, "route GET /x/{a}/{a}: the pattern repeats the parameter {a}");
    refusal_expect(out, "apiary_test_new: refused: 2 registrations were refused (logged above); not starting");
}

Test(refusal, a_malformed_pattern_says_why, .init = refusal_redirect)
{
    static const struct {
        const char *pattern, *why;
    } cases[] = {
        {"no-slash", "the pattern does not start with '/'"},
        {"/a//b", "the pattern has an empty segment"},
        {"/a/", "the pattern has an empty segment"},
        {"/a/{b", "the segment '{b' is not a parameter"},
        {"/a/{}", "the segment '{}' is not a parameter"},
        {"/a/{b-c}", "the parameter '{b-c}' has a name that is not [A-Za-z0-9_]"},
        {"/a/b{c}", "the segment 'b{c}' holds a character no request path can match"},
        {"/a?b", "the segment 'a?b' holds a character"},
        {"/f/{rest...}/x", "the tail parameter {rest...} is not the last segment"},
        {"/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}", "the pattern has more than 8 parameters"},
    };
    size_t n = sizeof(cases) / sizeof(cases[0]);
    apiary_app *app = refusal_app();
    for (size_t i = 0; i < n; i++)
        cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, cases[i].pattern, refusal_handler, 0), -1, "%s",
                     cases[i].pattern);
    cr_assert_null(apiary_test_new(app, NULL));
    const char *out = refusal_stderr();
    char line[256];
    for (size_t i = 0; i < n; i++) {
        snprintf(line, sizeof(line), "route GET %s: %s", cases[i].pattern, cases[i].why);
        refusal_expect(out, line);
    }
    snprintf(line, sizeof(line), "refused: %zu registrations were refused", n);
    refusal_expect(out, line);
}

Test(refusal, a_duplicate_route_names_the_one_it_repeats, .init = refusal_redirect)
{
    apiary_app *app = refusal_app();
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/items/{id}", refusal_handler, 0), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_PUT, "/items/{key}", refusal_handler, 0), 0, "another method");
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/items/{key}", refusal_handler, 0), -1);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/ok", refusal_handler, 0), -1);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/docs/{name}", refusal_handler, 0), -1, "a built-in's shape");
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_POST, "/healthz", refusal_handler, 0), -1, "a built-in path");
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/y", NULL, 0), -1);
    cr_assert_null(apiary_test_new(app, NULL));
    const char *out = refusal_stderr();
    refusal_expect(out, "route GET /items/{key}: GET /items/{id} is registered already (the same method and path shape)");
    refusal_expect(out, "route GET /ok: GET /ok is registered already");
    refusal_expect(out, "route GET /docs/{name}: GET /docs/{file} is registered already");
    refusal_expect(out, "route POST /healthz: the path is one of apiary's built-in endpoints");
    refusal_expect(out, "route GET /y: no handler (NULL)");
    refusal_expect(out, "refused: 5 registrations were refused");
}


Test(refusal, a_bad_section_stops_the_start, .init = refusal_redirect)
{
    static const schema not_an_object = {.type = SCHEMA_T_INTEGER};
    apiary_app *app = refusal_app();
    cr_assert_eq(apiary_app_section(app, "mine", refusal_parse, NULL), 0);
    cr_assert_eq(apiary_app_section(app, "limits", refusal_parse, NULL), -1);
    cr_assert_eq(apiary_app_section(app, "mine", refusal_parse, NULL), -1);
    cr_assert_eq(apiary_app_section(app, "a.b", refusal_parse, NULL), -1);
    cr_assert_eq(apiary_app_section(app, "nothing", NULL, NULL), -1);
    cr_assert_eq(apiary_app_section_checked(app, "threads", NULL, NULL), -1);
    cr_assert_eq(apiary_app_section_schema(app, "typed", &not_an_object, NULL, NULL), -1);
    cr_assert_null(apiary_test_new(app, NULL));
    const char *out = refusal_stderr();
    refusal_expect(out, "config section limits: the name is one of apiary's own config keys");
    refusal_expect(out, "config section mine: registered twice");
    refusal_expect(out, "config section a.b: the name holds a '.'");
    refusal_expect(out, "config section nothing: no parser (NULL)");
    refusal_expect(out, "config section threads: no parser (NULL)");
    refusal_expect(out, "config section typed: the schema must be an object binding a struct");
    refusal_expect(out, "refused: 6 registrations were refused");
}

Test(refusal, a_bad_option_stops_the_start, .init = refusal_redirect)
{
    apiary_app *app = refusal_app();
    cr_assert_eq(apiary_app_option(app, "seed", "N", "rows", refusal_option, NULL), 0);
    cr_assert_eq(apiary_app_option(app, "config", "PATH", "taken", refusal_option, NULL), -1);
    cr_assert_eq(apiary_app_option(app, "no_underscores", NULL, "", refusal_option, NULL), -1);
    cr_assert_eq(apiary_app_option(app, "nofn", NULL, "", NULL, NULL), -1);
    cr_assert_null(apiary_test_new(app, NULL));
    const char *out = refusal_stderr();
    refusal_expect(out, "option --config: the name is one of apiary's own flags");
    refusal_expect(out, "option --no_underscores: the name may hold only lower-case letters, digits and '-'");
    refusal_expect(out, "option --nofn: no function (NULL)");
    refusal_expect(out, "refused: 3 registrations were refused");
}

Test(refusal, one_refusal_is_said_in_the_singular, .init = refusal_redirect)
{
    apiary_app *app = refusal_app();
    cr_assert_eq(apiary_app_before(app, "v1", NULL, NULL), -1);
    cr_assert_null(apiary_test_new(app, NULL));
    const char *out = refusal_stderr();
    refusal_expect(out, "before hook v1: no function (NULL)");
    refusal_expect(out, "refused: 1 registration was refused (logged above); not starting");
}

Test(refusal, a_good_app_still_starts)
{
    apiary_app *app = refusal_app();
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/items/{id}", refusal_handler, 0), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/files/{rest...}", refusal_handler, 0), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_HEAD, "/ok", refusal_handler, 0), 0, "HEAD beside GET");
    cr_assert_eq(apiary_app_section(app, "mine", refusal_parse, NULL), 0);
    cr_assert_eq(apiary_app_option(app, "seed", "N", "rows", refusal_option, NULL), 0);
    apiary_test *t = apiary_test_new(app, NULL);
    cr_assert_not_null(t);
    apiary_test_response *r = apiary_test_get(t, "/items/7");
    cr_assert_eq(r->status, 200);
    apiary_test_response_free(r);
    apiary_test_free(t);
}

/* apiary_app_main: what each way in does with an app that has a refused route. */
static int refusal_main(const char *flag)
{
    apiary_app *app = refusal_app();
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/x/{a}/{a}", refusal_handler, 0), -1);
    char *argv[] = {"refused", (char *)flag, NULL};
    return apiary_app_main(app, flag ? 2 : 1, argv);
}

Test(refusal, main_refuses_to_start_check_or_describe, .init = refusal_redirect)
{
    cr_assert_eq(refusal_main(NULL), 2, "a start");
    cr_assert_eq(refusal_main("--check-config"), 2);
    cr_assert_eq(refusal_main("--openapi"), 2);
    const char *out = refusal_stderr();
    refusal_expect(out, "route GET /x/{a}/{a}: the pattern repeats the parameter {a}");
    refusal_expect(out, "\nrefused: 1 registration was refused (logged above); not starting\n");
    cr_assert_null(strstr(out, "config OK"));
}

Test(refusal, main_still_answers_help_and_version, .init = refusal_redirect)
{
    cr_assert_eq(refusal_main("--version"), 0);
    cr_assert_eq(refusal_main("--help"), 0);
    cr_assert_null(strstr(refusal_stderr(), "not starting"));
}
