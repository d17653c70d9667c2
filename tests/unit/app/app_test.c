/* app_test: unit tests for the application API (lib/app/app.c, include/apiary/apiary.h) short of running a
 * server: route registration rules, the app's config section through apiary_app_main --check-config
 * (parsed, refused with the file and section named, absent), declared sections and route schemas
 * (docs/schemas.md), and --version / --help naming the app.
 * The integration test test_97_library runs real apps built against an installed library. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "apiary.h"

static void app_test_handler(http_request *req) { (void)req; }

Test(app, routes_are_checked_when_added)
{
    apiary_app *app = apiary_app_new("t");
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/items/{id}", app_test_handler, 0), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_POST, "/items", app_test_handler, ROUTE_BODY_JSON), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/items/{other}", app_test_handler, 0), -1, "duplicate");
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "no-slash", app_test_handler, 0), -1);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/a//b", app_test_handler, 0), -1);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/healthz", app_test_handler, 0), -1, "built-in");
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/metrics", app_test_handler, 0), -1, "built-in");
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/x", NULL, 0), -1);
    char *argv[] = {"t", "--version", NULL};
    cr_assert_eq(apiary_app_main(app, 2, argv), 0); /* frees the app */
}

static int parsed_calls;
static long parsed_value;

static int app_test_parse(const json_t *section, void **out, char *err, size_t cap)
{
    parsed_calls++;
    const json_t *v = json_object_get(section, "n");
    if (section && !json_is_integer(v)) {
        snprintf(err, cap, "n: must be an integer");
        return -1;
    }
    parsed_value = section ? (long)json_integer_value(v) : -1;
    *out = NULL;
    return 0;
}

static int app_test_check(const char *json)
{
    char path[] = "/tmp/app_test_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    apiary_app *app = apiary_app_new("t");
    cr_assert_eq(apiary_app_section(app, "mine", app_test_parse, NULL), 0);
    char *argv[] = {"t", "--config", path, "--check-config", NULL};
    int rc = apiary_app_main(app, 4, argv);
    unlink(path);
    return rc;
}

Test(app, section_is_parsed_at_check_config, .init = cr_redirect_stdout)
{
    cr_assert_eq(app_test_check("{\"mine\": {\"n\": 7}, \"threads\": 2}"), 0);
    cr_assert_eq(parsed_calls, 1);
    cr_assert_eq(parsed_value, 7);
}

Test(app, section_absent_is_parsed_as_null, .init = cr_redirect_stdout)
{
    cr_assert_eq(app_test_check("{}"), 0);
    cr_assert_eq(parsed_value, -1);
}

Test(app, bad_section_is_a_config_error_naming_file_and_key, .init = cr_redirect_stderr)
{
    cr_assert_eq(app_test_check("{\"mine\": {\"n\": \"seven\"}}"), 2);
    fflush(stderr);
    char buf[1024] = "";
    size_t n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
    buf[n] = '\0';
    cr_assert(strstr(buf, "t: /tmp/app_test_") && strstr(buf, ": mine.n: must be an integer"), "got: %s", buf);
}

Test(app, a_section_cannot_shadow_apiary_keys)
{
    apiary_app *app = apiary_app_new("t");
    cr_assert_eq(apiary_app_section(app, "limits", app_test_parse, NULL), -1);
    cr_assert_eq(apiary_app_section(app, "upstreams", app_test_parse, NULL), -1);
    char *argv[] = {"t", "--version", NULL};
    cr_assert_eq(apiary_app_main(app, 2, argv), 0);
}

/* ---- declared sections and routes (docs/schemas.md) ------------------------------------------------ */

typedef struct app_test_settings {
    int64_t n;
    const char *upstream;
} app_test_settings;

static const schema_member app_test_members[] = {
    SCHEMA_OPTIONAL(app_test_settings, n, SCHEMA_INTEGER(.min = SCHEMA_GE(1), .max = SCHEMA_LE(16))),
    SCHEMA_OPTIONAL(app_test_settings, upstream, SCHEMA_STRING(.min_length = 1)),
    SCHEMA_END,
};
static const schema app_test_schema = SCHEMA_OBJECT_OF(app_test_settings, app_test_members);
static const app_test_settings app_test_defaults = {4, "users"};
static int64_t checked_n;

static void app_test_section_check(const void *section, const apiary_context *config, schema_errors *errs)
{
    const app_test_settings *s = section;
    checked_n = s->n;
    if (!apiary_context_upstream(config, s->upstream))
        schema_errors_add(errs, "upstream", "must name an upstream ('%s' is none)", s->upstream);
}

static int app_test_schema_check(const char *json)
{
    char path[] = "/tmp/app_test_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    apiary_app *app = apiary_app_new("t");
    cr_assert_eq(apiary_app_section_schema(app, "mine", &app_test_schema, &app_test_defaults, app_test_section_check),
                 0);
    char *argv[] = {"t", "--config", path, "--check-config", NULL};
    int rc = apiary_app_main(app, 4, argv);
    unlink(path);
    return rc;
}

static const char *app_test_stderr(void)
{
    static char buf[2048];
    fflush(stderr);
    size_t n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
    buf[n] = '\0';
    return buf;
}

/* One registration per test: section names are registered process-wide (criterion runs each test in
 * its own process). */
Test(app, schema_section_starts_from_its_defaults, .init = cr_redirect_stdout)
{
    cr_assert_eq(app_test_schema_check("{\"upstreams\": {\"users\": {\"url\": \"http://127.0.0.1:9\"}}}"), 0);
    cr_assert_eq(checked_n, 4, "the default");
}

Test(app, schema_section_binds_and_checks_the_config, .init = cr_redirect_stdout)
{
    cr_assert_eq(app_test_schema_check("{\"upstreams\": {\"u2\": {\"url\": \"http://127.0.0.1:9\"}},"
                                       " \"mine\": {\"n\": 16, \"upstream\": \"u2\"}}"),
                 0);
    cr_assert_eq(checked_n, 16);
}

Test(app, schema_section_lists_every_violation_in_one_line, .init = cr_redirect_stderr)
{
    cr_assert_eq(app_test_schema_check("{\"mine\": {\"n\": 0, \"colour\": 1}}"), 2);
    const char *out = app_test_stderr();
    cr_assert(strstr(out, ": mine.n: must be an integer between 1 and 16; mine.colour: is not a known member (n, "
                          "upstream)"),
              "got: %s", out);
}

Test(app, schema_section_check_sees_the_rest_of_the_config, .init = cr_redirect_stderr)
{
    cr_assert_eq(app_test_schema_check("{\"mine\": {\"upstream\": \"nowhere\"}}"), 2);
    const char *out = app_test_stderr();
    cr_assert(strstr(out, ": mine.upstream: must name an upstream ('nowhere' is none)"), "got: %s", out);
}

typedef struct app_test_in {
    int64_t id;
    int narrow;
} app_test_in;

static const route_schema app_test_good_route = {
    .input_size = sizeof(app_test_in),
    .path = (const schema_member[]){SCHEMA_REQUIRED(app_test_in, id, SCHEMA_INTEGER()), SCHEMA_END},
};
static const route_schema app_test_wrong_size = {
    .input_size = sizeof(app_test_in),
    .query = (const schema_member[]){SCHEMA_REQUIRED(app_test_in, narrow, SCHEMA_INTEGER()), SCHEMA_END},
};
static const route_schema app_test_object_param = {
    .input_size = sizeof(app_test_in),
    .query = (const schema_member[]){SCHEMA_UNBOUND("o", 0, SCHEMA_ANY()), SCHEMA_END},
};

Test(app, route_schemas_are_checked_when_added)
{
    apiary_app *app = apiary_app_new("t");
    cr_assert_eq(apiary_app_route_schema(app, HTTP_METHOD_GET, "/x/{id}", app_test_handler, 0, &app_test_good_route), 0);
    cr_assert_eq(apiary_app_route_schema(app, HTTP_METHOD_GET, "/y", app_test_handler, 0, &app_test_good_route), -1,
                 "{id} is not in the pattern");
    cr_assert_eq(apiary_app_route_schema(app, HTTP_METHOD_GET, "/z", app_test_handler, 0, &app_test_wrong_size), -1,
                 "an int field for an integer (int64_t)");
    cr_assert_eq(apiary_app_route_schema(app, HTTP_METHOD_GET, "/w", app_test_handler, 0, &app_test_object_param), -1,
                 "a parameter is a scalar");
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/openapi.json", app_test_handler, 0), -1, "built-in");
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/docs", app_test_handler, 0), -1, "built-in");
    char *argv[] = {"t", "--version", NULL};
    cr_assert_eq(apiary_app_main(app, 2, argv), 0);
}
