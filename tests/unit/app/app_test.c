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

#include <event2/event.h>

#include "apiary.h"
#include "config_internal.h"
#include "app_internal.h"
#include "generation_internal.h"

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
    cr_assert_eq(apiary_app_section(app, "once", app_test_parse, NULL), 0);
    cr_assert_eq(apiary_app_section(app, "once", app_test_parse, NULL), -1, "twice in one app");
    char *argv[] = {"t", "--version", NULL};
    cr_assert_eq(apiary_app_main(app, 2, argv), 0);
}

/* ---- apiary_redis(): "not configured" is an answer (issue 22, F9) ------------------------------- */

/* Loads `json`, builds the generation the server would, and reports what apiary_context_redis says. */
static bool app_test_redis(const char *json, redis_settings *out)
{
    apiary_config cfg;
    char err[CONFIG_ERROR_MAX];
    cr_assert_eq(config_load_string(&cfg, json, "t.json", err), 0, "%s", err);
    void *sections[CONFIG_MAX_APP_SECTIONS] = {0};
    server_generation *g = generation_first(&cfg, sections, 1, NULL);
    const redis_settings *r = apiary_context_redis(g);
    if (r)
        *out = *r;
    generation_free_all(g);
    return r != NULL;
}

Test(app_redis, not_configured_without_a_redis_section_or_backend)
{
    redis_settings r;
    cr_assert_not(app_test_redis("{}", &r), "no section, memory backend: no Redis, not 127.0.0.1:6379");
    cr_assert_not(app_test_redis("{\"kv\": {\"backend\": \"memory\"}}", &r));
    cr_assert(app_test_redis("{\"redis\": {}}", &r), "an empty section asks for the defaults");
    cr_assert_str_eq(r.host, "127.0.0.1");
    cr_assert_eq(r.port, 6379);
    cr_assert(app_test_redis("{\"redis\": {\"url\": \"redis://10.1.2.3:7000/2\"}}", &r));
    cr_assert_eq(r.port, 7000);
    cr_assert_eq(r.db, 2);
    cr_assert(app_test_redis("{\"kv\": {\"backend\": \"redis\"}}", &r), "the Redis backend needs Redis");
    cr_assert_eq(r.port, 6379);
}

Test(app_redis, a_command_without_settings_fails_and_connects_nowhere)
{
    struct event_base *base = event_base_new();
    async_scope *scope = async_scope_new(base);
    const char *argv[] = {"PING"};
    size_t argvlen[] = {4};
    async_op *op = redis_command(scope, NULL, NULL, 1, argv, argvlen);
    cr_assert_eq(op->status, ASYNC_FAILED);
    cr_assert_eq(op->error, REDIS_ERROR_NOT_CONFIGURED);
    redis_cmd cmd = {1, argv, argvlen};
    op = redis_pipeline(scope, NULL, NULL, &cmd, 1);
    cr_assert_eq(op->error, REDIS_ERROR_NOT_CONFIGURED);
    cr_assert_not(redis_ready(NULL, NULL));
    async_scope_free(scope);
    event_base_free(base);
}

/* The runtime publishes the newest config's http_client.allowed_origins for http_client_fetch. */
Test(app_http_client, the_current_context_publishes_its_allowed_origins)
{
    apiary_config cfg;
    char err[CONFIG_ERROR_MAX];
    cr_assert_eq(config_load_string(&cfg, "{\"http_client\": {\"allowed_origins\": [\"https://api.example.com\"]}}",
                                    "t.json", err), 0, "%s", err);
    void *sections[CONFIG_MAX_APP_SECTIONS] = {0};
    server_generation *g = generation_first(&cfg, sections, 1, NULL);
    const char *path;
    cr_assert_null(http_client_allowed(http_client_allowed_list(), "https://api.example.com/x", &path),
                   "nothing before a config is current");
    app_set_current(g);
    const http_client_upstream *o = http_client_allowed(http_client_allowed_list(), "https://api.example.com/x", &path);
    cr_assert_not_null(o);
    cr_assert_eq(o->port, 443);
    cr_assert_null(http_client_allowed(http_client_allowed_list(), "https://other.example.com/x", &path));
    app_set_current(NULL);
    cr_assert_null(http_client_allowed_list(), "none once the config is gone");
    generation_free_all(g);
}

/* ---- a section parser that sees the config (F10/B6) ------------------------------------------- */

static const char *app_test_stderr(void)
{
    static char buf[2048];
    fflush(stderr);
    size_t n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
    buf[n] = '\0';
    return buf;
}

static void app_test_redirect_both(void)
{
    cr_redirect_stdout();
    cr_redirect_stderr();
}

static int app_test_names_upstream(const json_t *section, const apiary_config_view *config, void **out, char *err,
                                   size_t cap)
{
    const char *name = json_string_value(json_object_get(section, "upstream"));
    if (section && (!name || !apiary_config_upstream(config, name))) {
        snprintf(err, cap, "upstream: must name an upstream of \"upstreams\"");
        return -1;
    }
    /* Sections parse in the order registered: "mine" is built already, "later" is only JSON yet. */
    cr_assert(!section || apiary_config_section_json(config, "mine"));
    cr_assert_null(apiary_config_section(config, "later"));
    cr_assert_not_null(apiary_config_origin(config));
    *out = NULL;
    return 0;
}

static int app_test_unknown_key(const json_t *section, void **out, char *err, size_t cap)
{
    (void)out;
    if (!section)
        return 0;
    snprintf(err, cap, "unknown key 'x'");
    return -1;
}

static int app_test_check_with(const char *json, char *stderr_out, size_t cap)
{
    char path[] = "/tmp/app_test_XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    cr_assert_eq(write(fd, json, strlen(json)), (ssize_t)strlen(json));
    close(fd);
    apiary_app *app = apiary_app_new("t");
    cr_assert_eq(apiary_app_section(app, "mine", app_test_parse, NULL), 0);
    cr_assert_eq(apiary_app_section_checked(app, "uses", app_test_names_upstream, NULL), 0);
    cr_assert_eq(apiary_app_section(app, "later", app_test_unknown_key, NULL), 0);
    char *argv[] = {"t", "--config", path, "--check-config", NULL};
    int rc = apiary_app_main(app, 4, argv);
    unlink(path);
    fflush(stderr);
    size_t n = fread(stderr_out, 1, cap - 1, cr_get_redirected_stderr());
    stderr_out[n] = '\0';
    return rc;
}

Test(app, a_section_can_check_against_the_rest_of_the_config, .init = app_test_redirect_both)
{
    char err[1024];
    cr_assert_eq(app_test_check_with("{\"mine\": {\"n\": 1}, \"uses\": {\"upstream\": \"nope\"}}", err, sizeof(err)), 2,
                 "--check-config refuses what the start would");
    cr_assert(strstr(err, ": uses.upstream: must name an upstream of \"upstreams\""), "got: %s", err);
    cr_assert_eq(app_test_check_with("{\"mine\": {\"n\": 1}, \"uses\": {\"upstream\": \"users\"},"
                                     " \"upstreams\": {\"users\": {\"url\": \"http://127.0.0.1:9\"}}}",
                                     err, sizeof(err)),
                 0, "got: %s", err);
}

Test(app, a_message_without_a_key_reads_as_the_sections_own, .init = app_test_redirect_both)
{
    char err[1024];
    cr_assert_eq(app_test_check_with("{\"later\": {\"x\": 1}}", err, sizeof(err)), 2);
    cr_assert(strstr(err, ": later: unknown key 'x'"), "B5: not 'later.unknown key': %s", err);
}

/* ---- the app's own options (F18) ----------------------------------------------------------------- */

static const char *seed_value;
static int migrate_given;

static int app_test_seed(const char *value, void *arg, char *why, size_t cap)
{
    (void)arg;
    if (strspn(value, "0123456789") != strlen(value)) {
        snprintf(why, cap, "'%s' is not a number", value);
        return -1;
    }
    seed_value = value;
    return 0;
}

static int app_test_migrate(const char *value, void *arg, char *why, size_t cap)
{
    (void)why;
    (void)cap;
    cr_assert_null(value);
    *(int *)arg += 1;
    return 0;
}

static apiary_app *app_with_options(void)
{
    apiary_app *app = apiary_app_new("t");
    cr_assert_eq(apiary_app_option(app, "seed", "N", "rows to seed at start", app_test_seed, NULL), 0);
    cr_assert_eq(apiary_app_option(app, "migrate", NULL, "run the migrations first", app_test_migrate, &migrate_given),
                 0);
    return app;
}

/* Refused options: logged with the reason, and the app does not start (refusal_test.c has the rest). */
Test(app, bad_options_are_refused, .init = app_test_redirect_both)
{
    apiary_app *app = app_with_options();
    cr_assert_eq(apiary_app_option(app, "threads", "N", "taken", app_test_seed, NULL), -1, "apiary's own");
    cr_assert_eq(apiary_app_option(app, "seed", "N", "twice", app_test_seed, NULL), -1);
    cr_assert_eq(apiary_app_option(app, "Bad_Name", NULL, "", app_test_migrate, NULL), -1);
    char *argv[] = {"t", "--seed=42", "--check-config", NULL};
    cr_assert_eq(apiary_app_main(app, 3, argv), 2);
    const char *out = app_test_stderr();
    cr_assert(strstr(out, "option --threads: the name is one of apiary's own flags"), "got: %s", out);
    cr_assert(strstr(out, "option --seed: registered twice"), "got: %s", out);
    cr_assert(strstr(out, "option --Bad_Name: the name may hold only lower-case letters, digits and '-'"), "got: %s",
              out);
    cr_assert(strstr(out, "t: 3 registrations were refused (logged above); not starting"), "got: %s", out);
}

Test(app, own_options_are_parsed_beside_apiarys, .init = app_test_redirect_both)
{
    char *argv[] = {"t", "--seed=42", "--migrate", "--threads", "2", "--check-config", NULL};
    cr_assert_eq(apiary_app_main(app_with_options(), 6, argv), 0);
    cr_assert_str_eq(seed_value, "42");
    cr_assert_eq(migrate_given, 1);
    char *argv2[] = {"t", "--seed", "7", "--check-config", NULL};
    cr_assert_eq(apiary_app_main(app_with_options(), 4, argv2), 0);
    cr_assert_str_eq(seed_value, "7");
}

Test(app, a_refused_option_value_is_a_usage_error, .init = app_test_redirect_both)
{
    char *argv[] = {"t", "--seed", "many", "--check-config", NULL};
    cr_assert_eq(apiary_app_main(app_with_options(), 4, argv), 2);
    char *argv2[] = {"t", "--migrate=yes", NULL};
    cr_assert_eq(apiary_app_main(app_with_options(), 2, argv2), 2);
    char *argv3[] = {"t", "--unknown", NULL};
    cr_assert_eq(apiary_app_main(app_with_options(), 2, argv3), 2);
    fflush(stderr);
    char buf[2048] = "";
    size_t n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stderr());
    buf[n] = '\0';
    cr_assert(strstr(buf, "t: --seed: 'many' is not a number"), "got: %s", buf);
    cr_assert(strstr(buf, "t: --migrate does not take a value"), "got: %s", buf);
    cr_assert(strstr(buf, "unknown option '--unknown'"), "got: %s", buf);
}

Test(app, own_options_are_listed_in_help, .init = app_test_redirect_both)
{
    char *argv[] = {"t", "--help", NULL};
    cr_assert_eq(apiary_app_main(app_with_options(), 2, argv), 0);
    fflush(stdout);
    char buf[4096] = "";
    size_t n = fread(buf, 1, sizeof(buf) - 1, cr_get_redirected_stdout());
    buf[n] = '\0';
    cr_assert(strstr(buf, "usage: t "), "got: %s", buf);
    cr_assert(strstr(buf, "Options of t:\n  --seed N             rows to seed at start\n"
                          "  --migrate            run the migrations first\n"),
              "got: %s", buf);
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

static void app_test_section_check(const void *section, const apiary_config_view *config, schema_errors *errs)
{
    const app_test_settings *s = section;
    checked_n = s->n;
    if (!apiary_config_upstream(config, s->upstream))
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
    cr_assert_eq(apiary_app_route_schema(app, HTTP_METHOD_GET, "/x/{id}", app_test_handler, 0, &app_test_good_route),
                 0);
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
