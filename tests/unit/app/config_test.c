/* config_test: unit tests for lib/app/config.c — defaults, the shipped config/apiary.json, every class of
 * error the loader reports (each message must name the key), listen parsing and all-or-nothing loads. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config_internal.h"
#include "http_compress_internal.h"

/* Mirrors the loader's rule so the test does not depend on the machine it runs on. */
static unsigned config_test_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    return n > 256 ? 256 : (unsigned)n;
}

#define config_test_assert_err(err, needle) \
    cr_assert(strstr((err), (needle)) != NULL, "expected \"%s\" in the message, got \"%s\"", (needle), (err))

#define CONFIG_TEST_SAME(a, b, field) cr_assert((a)->field == (b)->field, "field " #field " differs")

static void config_test_assert_same(const apiary_config *a, const apiary_config *b)
{
    cr_assert_str_eq(a->listen_host, b->listen_host);
    CONFIG_TEST_SAME(a, b, listen_port);
    CONFIG_TEST_SAME(a, b, threads);
    CONFIG_TEST_SAME(a, b, backlog);
    CONFIG_TEST_SAME(a, b, max_connections);
    CONFIG_TEST_SAME(a, b, drain_timeout_ms);
    CONFIG_TEST_SAME(a, b, drain_delay_ms);
    CONFIG_TEST_SAME(a, b, log_level);
    CONFIG_TEST_SAME(a, b, http.max_url_bytes);
    CONFIG_TEST_SAME(a, b, http.max_header_bytes);
    CONFIG_TEST_SAME(a, b, http.max_headers);
    CONFIG_TEST_SAME(a, b, http.max_body_bytes);
    CONFIG_TEST_SAME(a, b, http.max_connections);
    CONFIG_TEST_SAME(a, b, http.output_buffer_bytes);
    CONFIG_TEST_SAME(a, b, http.header_timeout_ms);
    CONFIG_TEST_SAME(a, b, http.body_timeout_ms);
    CONFIG_TEST_SAME(a, b, http.keepalive_timeout_ms);
    CONFIG_TEST_SAME(a, b, http.write_timeout_ms);
    CONFIG_TEST_SAME(a, b, http.linger_timeout_ms);
    CONFIG_TEST_SAME(a, b, http.compress_prefer[0]);
    CONFIG_TEST_SAME(a, b, http.compress_prefer[1]);
}

/* A config that differs from the defaults in every field, to prove a failed load leaves it alone. */
static void config_test_sentinel(apiary_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    strcpy(cfg->listen_host, "sentinel.invalid");
    cfg->listen_port = 4242;
    cfg->threads = 42;
    cfg->backlog = 42;
    cfg->max_connections = 42;
    cfg->drain_timeout_ms = 42;
    cfg->drain_delay_ms = 42;
    cfg->log_level = LOG_ERROR;
    cfg->http.max_url_bytes = 42;
    cfg->http.max_header_bytes = 4242;
    cfg->http.max_headers = 42;
    cfg->http.max_body_bytes = 42;
    cfg->http.max_connections = 42;
    cfg->http.output_buffer_bytes = 42;
    cfg->http.header_timeout_ms = 42;
    cfg->http.body_timeout_ms = 42;
    cfg->http.keepalive_timeout_ms = 42;
    cfg->http.write_timeout_ms = 42;
    cfg->http.linger_timeout_ms = 42;
}

/* Loads `json` into a sentinel config, expects failure, checks the config is untouched and returns
 * the message through `err`. */
static void config_test_reject(const char *json, char err[CONFIG_ERROR_MAX])
{
    apiary_config cfg, before;
    config_test_sentinel(&cfg);
    before = cfg;
    err[0] = '\0';
    int rc = config_load_string(&cfg, json, "test.json", err);
    cr_assert_eq(rc, -1, "expected %s to be rejected", json);
    cr_assert(err[0] != '\0', "no message for %s", json);
    cr_assert(strchr(err, '\n') == NULL, "message is not one line: %s", err);
    cr_assert(strncmp(err, "test.json", 9) == 0, "message does not start with the origin: %s", err);
    config_test_assert_same(&cfg, &before);
}

static void config_test_accept(const char *json, apiary_config *cfg)
{
    char err[CONFIG_ERROR_MAX] = "";
    int rc = config_load_string(cfg, json, "test.json", err);
    cr_assert_eq(rc, 0, "expected %s to load, got: %s", json, err);
}

/* Builds {"key": V} or {"section": {"key": V, extra}} from a dotted path. */
static void config_test_json(char *buf, size_t size, const char *path, const char *value, const char *extra)
{
    const char *dot = strchr(path, '.');
    if (!dot) {
        snprintf(buf, size, "{\"%s\": %s}", path, value);
        return;
    }
    snprintf(buf, size, "{\"%.*s\": {\"%s\": %s%s%s}}", (int)(dot - path), path, dot + 1, value,
             extra ? ", " : "", extra ? extra : "");
}

static const char *config_test_source_dir(void)
{
    const char *env = getenv("APIARY_SOURCE_DIR");
    if (env && *env)
        return env;
#ifdef APIARY_SOURCE_DIR
    return APIARY_SOURCE_DIR;
#else
    return NULL;
#endif
}

static void config_test_write_file(char *path, const char *text)
{
    strcpy(path, "/tmp/apiary_config_test_XXXXXX");
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp failed");
    size_t len = strlen(text);
    cr_assert_eq(write(fd, text, len), (ssize_t)len);
    close(fd);
}

/* --- defaults and valid files --- */

Test(config, defaults)
{
    apiary_config cfg;
    config_defaults(&cfg);
    cr_assert_str_eq(cfg.listen_host, "127.0.0.1");
    cr_assert_eq(cfg.listen_port, 8080);
    cr_assert_eq(cfg.threads, config_test_cpus());
    cr_assert_eq(cfg.backlog, 511);
    cr_assert_eq(cfg.max_connections, 10000);
    cr_assert_eq(cfg.drain_timeout_ms, 10000);
    cr_assert_eq(cfg.drain_delay_ms, 0);
    cr_assert_eq(cfg.log_level, LOG_INFO);
    cr_assert_eq(cfg.http.max_url_bytes, 8192);
    cr_assert_eq(cfg.http.max_header_bytes, 16384);
    cr_assert_eq(cfg.http.max_headers, 64);
    cr_assert_eq(cfg.http.max_body_bytes, 1048576);
    cr_assert_eq(cfg.http.max_connections, 10000);
    cr_assert_eq(cfg.http.output_buffer_bytes, 65536);
    cr_assert_eq(cfg.http.header_timeout_ms, 10000);
    cr_assert_eq(cfg.http.body_timeout_ms, 30000);
    cr_assert_eq(cfg.http.keepalive_timeout_ms, 60000);
    cr_assert_eq(cfg.http.write_timeout_ms, 30000);
    cr_assert_eq(cfg.http.linger_timeout_ms, 2000);
}

Test(config, http_settings_defaults_match_config_defaults)
{
    apiary_config cfg;
    http_settings s;
    config_defaults(&cfg);
    http_settings_defaults(&s);
    cr_assert_eq(s.max_url_bytes, cfg.http.max_url_bytes);
    cr_assert_eq(s.max_header_bytes, cfg.http.max_header_bytes);
    cr_assert_eq(s.max_body_bytes, cfg.http.max_body_bytes);
    cr_assert_eq(s.keepalive_timeout_ms, cfg.http.keepalive_timeout_ms);
    cr_assert_eq(s.linger_timeout_ms, cfg.http.linger_timeout_ms);
}

Test(config, empty_object_gives_defaults)
{
    apiary_config cfg, defaults;
    config_defaults(&defaults);
    config_test_sentinel(&cfg);
    config_test_accept("{}", &cfg);
    config_test_assert_same(&cfg, &defaults);
}

Test(config, shipped_file_loads_and_matches_defaults)
{
    const char *dir = config_test_source_dir();
    if (!dir)
        cr_skip_test("APIARY_SOURCE_DIR is neither in the environment nor defined at compile time");
    char path[4096];
    snprintf(path, sizeof(path), "%s/config/apiary.json", dir);
    apiary_config cfg, defaults;
    char err[CONFIG_ERROR_MAX] = "";
    config_defaults(&defaults);
    config_test_sentinel(&cfg);
    cr_assert_eq(config_load_file(&cfg, path, err), 0, "%s", err);
    config_test_assert_same(&cfg, &defaults);
}

Test(config, every_key_lands_in_its_field)
{
    apiary_config cfg;
    config_test_accept("{\"listen\": \"0.0.0.0:9090\", \"threads\": 3, \"backlog\": 128,"
                       " \"max_connections\": 500, \"drain_timeout_ms\": 1234, \"drain_delay_ms\": 321,"
                       " \"log_level\": \"debug\","
                       " \"limits\": {\"max_url_bytes\": 100, \"max_header_bytes\": 300, \"max_headers\": 7,"
                       "   \"max_body_bytes\": 0, \"output_buffer_bytes\": 8192},"
                       " \"timeouts\": {\"header_ms\": 11, \"body_ms\": 12, \"keepalive_ms\": 13,"
                       "   \"write_ms\": 14, \"linger_ms\": 0}}",
                       &cfg);
    cr_assert_str_eq(cfg.listen_host, "0.0.0.0");
    cr_assert_eq(cfg.listen_port, 9090);
    cr_assert_eq(cfg.threads, 3);
    cr_assert_eq(cfg.backlog, 128);
    cr_assert_eq(cfg.max_connections, 500);
    cr_assert_eq(cfg.http.max_connections, 500);
    cr_assert_eq(cfg.drain_timeout_ms, 1234);
    cr_assert_eq(cfg.drain_delay_ms, 321);
    cr_assert_eq(cfg.log_level, LOG_DEBUG);
    cr_assert_eq(cfg.http.max_url_bytes, 100);
    cr_assert_eq(cfg.http.max_header_bytes, 300);
    cr_assert_eq(cfg.http.max_headers, 7);
    cr_assert_eq(cfg.http.max_body_bytes, 0);
    cr_assert_eq(cfg.http.output_buffer_bytes, 8192);
    cr_assert_eq(cfg.http.header_timeout_ms, 11);
    cr_assert_eq(cfg.http.body_timeout_ms, 12);
    cr_assert_eq(cfg.http.keepalive_timeout_ms, 13);
    cr_assert_eq(cfg.http.write_timeout_ms, 14);
    cr_assert_eq(cfg.http.linger_timeout_ms, 0);
}

Test(config, loads_over_defaults_not_over_previous_values)
{
    apiary_config cfg, defaults;
    config_defaults(&defaults);
    config_test_sentinel(&cfg);
    config_test_accept("{\"backlog\": 7}", &cfg);
    cr_assert_eq(cfg.backlog, 7);
    cr_assert_str_eq(cfg.listen_host, defaults.listen_host);
    cr_assert_eq(cfg.http.max_body_bytes, defaults.http.max_body_bytes);
}

Test(config, threads_zero_means_cpu_count)
{
    apiary_config cfg;
    config_test_accept("{\"threads\": 0}", &cfg);
    cr_assert_eq(cfg.threads, config_test_cpus());
    config_test_accept("{\"threads\": 256}", &cfg);
    cr_assert_eq(cfg.threads, 256);
}

Test(config, log_levels)
{
    static const char *const names[] = {"debug", "info", "warn", "error"};
    static const log_level levels[] = {LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR};
    for (size_t i = 0; i < 4; i++) {
        char json[64];
        apiary_config cfg;
        snprintf(json, sizeof(json), "{\"log_level\": \"%s\"}", names[i]);
        config_test_accept(json, &cfg);
        cr_assert_eq(cfg.log_level, levels[i]);
    }
}

/* --- unknown keys --- */

Test(config, unknown_top_level_key)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\"threads\": 2, \"thraeds\": 2}", err);
    cr_assert_str_eq(err, "test.json: unknown key 'thraeds'");
}

Test(config, unknown_nested_key)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\"limits\": {\"max_bodyy\": 5}}", err);
    cr_assert_str_eq(err, "test.json: unknown key 'limits.max_bodyy'");
    config_test_reject("{\"timeouts\": {\"idle_ms\": 5}}", err);
    cr_assert_str_eq(err, "test.json: unknown key 'timeouts.idle_ms'");
}

Test(config, unknown_section)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\"tls\": {\"cert\": \"x\"}}", err);
    cr_assert_str_eq(err, "test.json: unknown key 'tls'");
}

Test(config, key_under_a_non_section)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\"limits\": {\"max_headers\": {\"x\": 1}}}", err);
    config_test_assert_err(err, "limits.max_headers: must be an integer");
}

Test(config, dotted_key_is_not_a_path)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\"limits.max_body_bytes\": 5}", err);
    cr_assert_str_eq(err, "test.json: unknown key 'limits.max_body_bytes'");
}

Test(config, section_must_be_an_object)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\"limits\": 5}", err);
    cr_assert_str_eq(err, "test.json: limits: must be an object");
    config_test_reject("{\"timeouts\": null}", err);
    cr_assert_str_eq(err, "test.json: timeouts: must be an object");
}

Test(config, control_characters_in_a_key_stay_on_one_line)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\"bad\\nkey\": 1}", err);
    cr_assert_str_eq(err, "test.json: unknown key 'bad?key'");
}

Test(config, very_long_unknown_key_is_cut)
{
    char json[1024], key[601], err[CONFIG_ERROR_MAX];
    memset(key, 'k', 600);
    key[600] = '\0';
    snprintf(json, sizeof(json), "{\"limits\": {\"%s\": 1}}", key);
    config_test_reject(json, err);
    config_test_assert_err(err, "unknown key 'limits.kkkk");
    config_test_assert_err(err, "...'");
}

/* --- types and ranges --- */

Test(config, wrong_types_for_an_integer)
{
    static const char *const values[] = {"\"5\"", "1.5", "1.0", "1e3", "true", "false", "null", "[1]", "{}",
                                         "-1"};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        char json[128], err[CONFIG_ERROR_MAX];
        snprintf(json, sizeof(json), "{\"limits\": {\"max_body_bytes\": %s}}", values[i]);
        config_test_reject(json, err);
        cr_assert_str_eq(err, "test.json: limits.max_body_bytes: must be an integer between 0 and 1073741824",
                         "for %s", values[i]);
    }
}

Test(config, negative_number)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\"timeouts\": {\"linger_ms\": -5}}", err);
    cr_assert_str_eq(err, "test.json: timeouts.linger_ms: must be an integer between 0 and 60000");
    config_test_reject("{\"threads\": -1}", err);
    cr_assert_str_eq(err, "test.json: threads: must be an integer between 0 and 256");
}

Test(config, integer_too_big_for_json)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\"backlog\": 99999999999999999999999}", err);
    config_test_assert_err(err, "line 1, column");
}

Test(config, wrong_types_for_strings)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\"listen\": 8080}", err);
    cr_assert_str_eq(err, "test.json: listen: must be a string \"HOST:PORT\" or \"[IPv6]:PORT\"");
    config_test_reject("{\"log_level\": 1}", err);
    cr_assert_str_eq(err, "test.json: log_level: must be one of \"debug\", \"info\", \"warn\", \"error\"");
    config_test_reject("{\"log_level\": \"verbose\"}", err);
    config_test_assert_err(err, "test.json: log_level: 'verbose' is not one of");
    config_test_reject("{\"log_level\": \"INFO\"}", err);
    config_test_assert_err(err, "log_level:");
}

typedef struct config_test_range {
    const char *path;
    long long min, max;
    long long accept_max; /* max, except where a cross-field rule forbids it */
    const char *extra;    /* sibling keys that make min and accept_max legal together */
} config_test_range;

static const config_test_range config_test_ranges[] = {
    {"threads", 0, 256, 256, NULL},
    {"backlog", 1, 65535, 65535, NULL},
    {"max_connections", 1, 1000000, 1000000, NULL},
    {"drain_timeout_ms", 0, 600000, 600000, NULL},
    {"drain_delay_ms", 0, 600000, 600000, NULL},
    /* max_url_bytes must be below max_header_bytes, whose own maximum is 1048576. */
    {"limits.max_url_bytes", 64, 1048575, 1048575, "\"max_header_bytes\": 1048576"},
    {"limits.max_header_bytes", 256, 1048576, 1048576, "\"max_url_bytes\": 64"},
    {"limits.max_headers", 1, 256, 256, NULL},
    {"limits.max_body_bytes", 0, 1073741824, 1073741824, NULL},
    {"limits.output_buffer_bytes", 4096, 67108864, 67108864, NULL},
    {"timeouts.header_ms", 1, 3600000, 3600000, NULL},
    {"timeouts.body_ms", 1, 3600000, 3600000, NULL},
    {"timeouts.keepalive_ms", 1, 3600000, 3600000, NULL},
    {"timeouts.write_ms", 1, 3600000, 3600000, NULL},
    {"timeouts.linger_ms", 0, 60000, 60000, NULL},
};

Test(config, out_of_range_at_both_ends)
{
    for (size_t i = 0; i < sizeof(config_test_ranges) / sizeof(config_test_ranges[0]); i++) {
        const config_test_range *r = &config_test_ranges[i];
        long long bad[2] = {r->min - 1, r->max + 1};
        for (int j = 0; j < 2; j++) {
            char json[256], value[32], want[CONFIG_ERROR_MAX], err[CONFIG_ERROR_MAX];
            snprintf(value, sizeof(value), "%lld", bad[j]);
            config_test_json(json, sizeof(json), r->path, value, r->extra);
            snprintf(want, sizeof(want), "test.json: %s: must be an integer between %lld and %lld", r->path,
                     r->min, r->max);
            config_test_reject(json, err);
            cr_assert_str_eq(err, want, "for %s", json);
        }
    }
}

Test(config, accepts_both_ends)
{
    for (size_t i = 0; i < sizeof(config_test_ranges) / sizeof(config_test_ranges[0]); i++) {
        const config_test_range *r = &config_test_ranges[i];
        long long good[2] = {r->min, r->accept_max};
        for (int j = 0; j < 2; j++) {
            char json[256], value[32];
            apiary_config cfg;
            snprintf(value, sizeof(value), "%lld", good[j]);
            config_test_json(json, sizeof(json), r->path, value, r->extra);
            config_test_accept(json, &cfg);
        }
    }
}

/* --- cross-field rules --- */

Test(config, url_limit_must_be_below_header_limit)
{
    char err[CONFIG_ERROR_MAX];
    apiary_config cfg;
    config_test_reject("{\"limits\": {\"max_url_bytes\": 1024, \"max_header_bytes\": 1024}}", err);
    cr_assert_str_eq(err, "test.json: limits.max_url_bytes (1024) must be less than "
                          "limits.max_header_bytes (1024)");
    config_test_reject("{\"limits\": {\"max_url_bytes\": 20000, \"max_header_bytes\": 16384}}", err);
    config_test_assert_err(err, "limits.max_url_bytes (20000) must be less than "
                                "limits.max_header_bytes (16384)");
    config_test_accept("{\"limits\": {\"max_url_bytes\": 1023, \"max_header_bytes\": 1024}}", &cfg);
    cr_assert_eq(cfg.http.max_url_bytes, 1023);
}

/* --- defaults that follow the user's value (a default never conflicts with a key the file set) --- */

Test(config, header_limit_default_follows_a_raised_url_limit)
{
    apiary_config cfg;
    config_test_accept("{\"limits\": {\"max_url_bytes\": 20000}}", &cfg);
    cr_assert_eq(cfg.http.max_url_bytes, 20000);
    cr_assert_eq(cfg.http.max_header_bytes, 40000, "twice the URL limit, above the 16384 default");
    config_test_accept("{\"limits\": {\"max_url_bytes\": 1048575}}", &cfg);
    cr_assert_eq(cfg.http.max_header_bytes, 1048576, "capped at its own maximum, still above the URL limit");
    config_test_accept("{\"limits\": {\"max_url_bytes\": 100}}", &cfg);
    cr_assert_eq(cfg.http.max_header_bytes, 16384, "a small URL limit keeps the plain default");
}

Test(config, url_limit_default_follows_a_lowered_header_limit)
{
    apiary_config cfg;
    config_test_accept("{\"limits\": {\"max_header_bytes\": 4096}}", &cfg);
    cr_assert_eq(cfg.http.max_header_bytes, 4096);
    cr_assert_eq(cfg.http.max_url_bytes, 2048, "half the header block, below the 8192 default");
    config_test_accept("{\"limits\": {\"max_header_bytes\": 65536}}", &cfg);
    cr_assert_eq(cfg.http.max_url_bytes, 8192, "a large header block keeps the plain default");
    config_test_accept("{}", &cfg);
    cr_assert_eq(cfg.http.max_url_bytes, 8192);
    cr_assert_eq(cfg.http.max_header_bytes, 16384);
    config_defaults(&cfg);
    cr_assert_eq(cfg.http.max_url_bytes, 8192);
    cr_assert_eq(cfg.http.max_header_bytes, 16384);
}

static const http_client_upstream *config_test_upstream(const apiary_config *cfg, const char *name)
{
    for (unsigned i = 0; i < cfg->upstream_count; i++)
        if (strcmp(cfg->upstreams[i].name, name) == 0)
            return &cfg->upstreams[i];
    return NULL;
}

Test(config, upstream_max_idle_default_follows_max_connections)
{
    apiary_config cfg;
    config_test_accept("{\"upstreams\": {\"a\": {\"url\": \"http://127.0.0.1:9\", \"max_connections\": 8},"
                       " \"b\": {\"url\": \"http://127.0.0.1:9\"},"
                       " \"c\": {\"url\": \"http://127.0.0.1:9\", \"max_connections\": 1},"
                       " \"d\": {\"url\": \"http://127.0.0.1:9\", \"max_connections\": 100}}}", &cfg);
    cr_assert_eq(config_test_upstream(&cfg, "a")->max_idle, 8, "the smaller of 16 and max_connections");
    cr_assert_eq(config_test_upstream(&cfg, "b")->max_idle, 16);
    cr_assert_eq(config_test_upstream(&cfg, "b")->max_connections, 64);
    cr_assert_eq(config_test_upstream(&cfg, "c")->max_idle, 1);
    cr_assert_eq(config_test_upstream(&cfg, "d")->max_idle, 16);
}

Test(config, upstream_explicit_max_idle_over_max_connections_names_both)
{
    char err[CONFIG_ERROR_MAX];
    apiary_config cfg;
    config_test_reject("{\"upstreams\": {\"u\": {\"url\": \"http://127.0.0.1:9\", \"max_connections\": 8,"
                       " \"max_idle\": 9}}}", err);
    cr_assert_str_eq(err, "test.json: upstreams.u.max_idle (9) must not exceed max_connections (8)");
    /* max_idle above the default max_connections (64) is the user's conflict too. */
    config_test_reject("{\"upstreams\": {\"u\": {\"url\": \"http://127.0.0.1:9\", \"max_idle\": 65}}}", err);
    config_test_assert_err(err, "upstreams.u.max_idle (65) must not exceed max_connections (64)");
    config_test_accept("{\"upstreams\": {\"u\": {\"url\": \"http://127.0.0.1:9\", \"max_connections\": 8,"
                       " \"max_idle\": 8}}}", &cfg);
    cr_assert_eq(cfg.upstreams[0].max_idle, 8);
    config_test_accept("{\"upstreams\": {\"u\": {\"url\": \"http://127.0.0.1:9\", \"max_connections\": 8,"
                       " \"max_idle\": 0}}}", &cfg);
    cr_assert_eq(cfg.upstreams[0].max_idle, 0, "0 (no reuse) is a value, not a missing key");
}

Test(config, upstream_defaults_in_code_match_the_file)
{
    http_client_upstream u = {0};
    char err[128];
    http_client_upstream_defaults(&u);
    u.max_connections = 4;
    cr_assert_eq(http_client_upstream_finish(&u, err, sizeof(err)), 0);
    cr_assert_eq(u.max_idle, 4);
    u.max_idle = 5;
    cr_assert_eq(http_client_upstream_finish(&u, err, sizeof(err)), -1);
    cr_assert_str_eq(err, "max_idle (5) must not exceed max_connections (4)");
}

/* --- JSON-level errors --- */

Test(config, top_level_must_be_an_object)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("[]", err);
    cr_assert_str_eq(err, "test.json: the top-level value must be an object");
    config_test_reject("[{\"threads\": 1}]", err);
    cr_assert_str_eq(err, "test.json: the top-level value must be an object");
    /* jansson refuses scalars at the top without JSON_DECODE_ANY: a syntax error with a position. */
    config_test_reject("42", err);
    config_test_assert_err(err, "test.json: line 1, column");
}

Test(config, syntax_error_has_line_and_column)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\n  \"threads\": 1,\n  \"backlog\": }\n", err);
    config_test_assert_err(err, "test.json: line 3, column 14: ");
    config_test_reject("", err);
    config_test_assert_err(err, "test.json: line 1, column 0: ");
    config_test_reject("{\"threads\": 1,}", err);
    config_test_assert_err(err, "test.json: line 1, column");
}

Test(config, duplicate_key)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\n\"threads\": 1,\n\"threads\": 2\n}", err);
    config_test_assert_err(err, "test.json: line 3, column");
    config_test_assert_err(err, "duplicate object key");
    config_test_assert_err(err, "threads");
    config_test_reject("{\"limits\": {\"max_headers\": 1, \"max_headers\": 1}}", err);
    config_test_assert_err(err, "duplicate object key");
}

Test(config, null_text_and_origin)
{
    apiary_config cfg;
    char err[CONFIG_ERROR_MAX];
    cr_assert_eq(config_load_string(&cfg, NULL, "x.json", err), -1);
    config_test_assert_err(err, "x.json");
    cr_assert_eq(config_load_string(&cfg, "[]", NULL, err), -1);
    cr_assert_str_eq(err, "<string>: the top-level value must be an object");
}

/* --- all-or-nothing --- */

Test(config, failed_load_leaves_config_untouched)
{
    char err[CONFIG_ERROR_MAX];
    /* Valid keys first, so the loader has filled its scratch copy before the bad one. */
    config_test_reject("{\"listen\": \"0.0.0.0:1\", \"threads\": 2, \"log_level\": \"debug\","
                       " \"limits\": {\"max_body_bytes\": 5}, \"timeouts\": {\"linger_ms\": 99999}}",
                       err);
    config_test_assert_err(err, "timeouts.linger_ms");
    config_test_reject(
        "{\"listen\": \"0.0.0.0:1\", \"limits\": {\"max_url_bytes\": 99999, \"max_header_bytes\": 9999}}", err);
    config_test_reject("{\"listen\": \"0.0.0.0:1\", \"backlog\": 1,", err);
    config_test_reject("{\"listen\": \"0.0.0.0:1\", \"listen\": \"0.0.0.0:2\"}", err);
}

/* --- files --- */

Test(config, directory_is_not_a_config_file)
{
    char err[CONFIG_ERROR_MAX];
    apiary_config cfg;
    cr_assert_eq(config_load_file(&cfg, "/tmp", err), -1);
    cr_assert_str_eq(err, "/tmp: is a directory, not a config file");
}

Test(config, missing_file_names_the_path)
{
    apiary_config cfg, before;
    char err[CONFIG_ERROR_MAX];
    config_test_sentinel(&cfg);
    before = cfg;
    cr_assert_eq(config_load_file(&cfg, "/nonexistent/apiary.json", err), -1);
    config_test_assert_err(err, "/nonexistent/apiary.json");
    config_test_assert_same(&cfg, &before);
}

Test(config, file_errors_name_the_path)
{
    char path[64], err[CONFIG_ERROR_MAX], want[CONFIG_ERROR_MAX];
    apiary_config cfg;
    config_test_write_file(path, "{\n  \"limits\": {\n    \"max_bodyy\": 1\n  }\n}\n");
    cr_assert_eq(config_load_file(&cfg, path, err), -1);
    snprintf(want, sizeof(want), "%s: unknown key 'limits.max_bodyy'", path);
    cr_assert_str_eq(err, want);
    unlink(path);

    config_test_write_file(path, "{\n  \"threads\": 1\n  \"backlog\": 2\n}\n");
    cr_assert_eq(config_load_file(&cfg, path, err), -1);
    snprintf(want, sizeof(want), "%s: line 3, column", path);
    config_test_assert_err(err, want);
    unlink(path);
}

Test(config, file_loads)
{
    char path[64], err[CONFIG_ERROR_MAX] = "";
    apiary_config cfg;
    config_test_write_file(path, "{\"listen\": \"[::1]:0\", \"threads\": 2}\n");
    cr_assert_eq(config_load_file(&cfg, path, err), 0, "%s", err);
    unlink(path);
    cr_assert_str_eq(cfg.listen_host, "::1");
    cr_assert_eq(cfg.listen_port, 0);
    cr_assert_eq(cfg.threads, 2);
}

/* --- listen --- */

Test(config, listen_good_forms)
{
    static const struct {
        const char *text, *host;
        unsigned port;
    } cases[] = {
        {"127.0.0.1:8080", "127.0.0.1", 8080},
        {"0.0.0.0:0", "0.0.0.0", 0},
        {"localhost:65535", "localhost", 65535},
        {"api.example-host_1.com:1", "api.example-host_1.com", 1},
        {"[::1]:9000", "::1", 9000},
        {"[::]:80", "::", 80},
        {"[2001:db8::1]:443", "2001:db8::1", 443},
        {"[::ffff:127.0.0.1]:8080", "::ffff:127.0.0.1", 8080},
        {"[fe80::1%eth0]:8080", "fe80::1%eth0", 8080},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        apiary_config cfg;
        char err[CONFIG_ERROR_MAX] = "";
        config_defaults(&cfg);
        cr_assert_eq(config_parse_listen(&cfg, cases[i].text, err), 0, "%s: %s", cases[i].text, err);
        cr_assert_str_eq(cfg.listen_host, cases[i].host);
        cr_assert_eq(cfg.listen_port, cases[i].port, "%s", cases[i].text);
    }
}

Test(config, listen_bad_forms)
{
    static const char *const cases[] = {
        "8080", ":8080", "localhost", "localhost:", "localhost:65536", "localhost:99999999999",
        "localhost:-1", "localhost:+80", "localhost:80x", "localhost: 80", " localhost:80", "local host:80",
        "::1:8080", "::1", "[::1]", "[::1]8080", "[::1]:", "[::1:8080", "[]:80", "[localhost]:80",
        "[127.0.0.1]:80", "[::1]]:80", "host[1]:80", "*:80",
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        apiary_config cfg, before;
        char err[CONFIG_ERROR_MAX] = "";
        config_defaults(&cfg);
        before = cfg;
        cr_assert_eq(config_parse_listen(&cfg, cases[i], err), -1, "'%s' was accepted", cases[i]);
        cr_assert(err[0] != '\0', "no message for '%s'", cases[i]);
        config_test_assert_same(&cfg, &before);
    }
}

Test(config, listen_messages)
{
    apiary_config cfg;
    char err[CONFIG_ERROR_MAX];
    config_defaults(&cfg);
    config_parse_listen(&cfg, "::1:8080", err);
    config_test_assert_err(err, "[::1]:8080");
    config_parse_listen(&cfg, "localhost:70000", err);
    config_test_assert_err(err, "between 0 and 65535");
    config_parse_listen(&cfg, ":80", err);
    config_test_assert_err(err, "empty host");
    config_parse_listen(&cfg, NULL, err);
    config_test_assert_err(err, "HOST:PORT");
}

Test(config, listen_host_length)
{
    char value[300], err[CONFIG_ERROR_MAX];
    apiary_config cfg;
    config_defaults(&cfg);
    memset(value, 'a', 255);
    strcpy(value + 255, ":80");
    cr_assert_eq(config_parse_listen(&cfg, value, err), 0, "%s", err);
    cr_assert_eq(strlen(cfg.listen_host), 255);
    memset(value, 'a', 256);
    strcpy(value + 256, ":80");
    cr_assert_eq(config_parse_listen(&cfg, value, err), -1);
    config_test_assert_err(err, "longer than 255");
}

Test(config, listen_in_file_names_the_key)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\"listen\": \"localhost\"}", err);
    cr_assert_str_eq(err, "test.json: listen: 'localhost' is not HOST:PORT or [IPv6]:PORT");
    config_test_reject("{\"listen\": \"localhost:65536\"}", err);
    config_test_assert_err(err, "test.json: listen: ");
}

Test(config, empty_listen_means_unix_socket_only)
{
    apiary_config cfg;
    char err[CONFIG_ERROR_MAX] = "";
    config_defaults(&cfg);
    cr_assert_eq(config_load_string(&cfg, "{\"listen\": \"\"}", "t.json", err), -1);
    config_test_assert_err(err, "unix_socket.path must be set");
    cr_assert_eq(config_load_string(&cfg, "{\"listen\": \"\", \"unix_socket\": {\"path\": \"/run/a.sock\", "
                                          "\"mode\": \"0600\"}}", "t.json", err), 0, "%s", err);
    cr_assert_str_eq(cfg.listen_host, "");
    cr_assert_str_eq(cfg.unix_socket_path, "/run/a.sock");
    cr_assert_eq(cfg.unix_socket_mode, 0600);
    cr_assert_eq(config_load_string(&cfg, "{\"unix_socket\": {\"path\": \"relative.sock\"}}", "t.json", err), -1);
    config_test_assert_err(err, "unix_socket.path");
    cr_assert_eq(config_load_string(&cfg, "{\"unix_socket\": {\"mode\": \"0999\"}}", "t.json", err), -1);
    config_test_assert_err(err, "unix_socket.mode");
}

/* --- an application's own section (apiary_app_section) --- */

Test(config, app_section_is_unknown_until_registered_then_kept_whole)
{
    char err[CONFIG_ERROR_MAX];
    apiary_config cfg;
    config_test_reject("{\"shop\": {\"max_items\": 3}}", err);
    cr_assert_str_eq(err, "test.json: unknown key 'shop'");
    const char *why = NULL;
    cr_assert_eq(config_register_section("shop", &why), 0);
    cr_assert_null(why);
    config_test_accept("{\"shop\": {\"max_items\": 3, \"anything\": [1]}}", &cfg);
    cr_assert_not_null(cfg.app_json);
    json_t *shop = json_object_get(cfg.app_json, "shop");
    cr_assert_eq(json_integer_value(json_object_get(shop, "max_items")), 3);
    config_release(&cfg);
    cr_assert_null(cfg.app_json);
    config_test_accept("{}", &cfg);
    cr_assert_null(cfg.app_json, "no section in the file: nothing kept");
    config_test_reject("{\"shop\": 3}", err);
    cr_assert_str_eq(err, "test.json: shop: must be an object");
    /* A nested key of that name is still apiary's to judge. */
    config_test_reject("{\"limits\": {\"shop\": {}}}", err);
    cr_assert_str_eq(err, "test.json: unknown key 'limits.shop'");
}

Test(config, app_section_cannot_take_an_apiary_name)
{
    const char *why = NULL;
    cr_assert_eq(config_register_section("limits", &why), -1, "a section of apiary's");
    cr_assert_str_eq(why, "the name is one of apiary's own config keys");
    cr_assert_eq(config_register_section("threads", &why), -1, "a key of apiary's");
    cr_assert_eq(config_register_section("a.b", &why), -1);
    cr_assert(strstr(why, "holds a '.'"), "%s", why);
    cr_assert_eq(config_register_section("", &why), -1);
    cr_assert_str_eq(why, "the name is empty");
    cr_assert_eq(config_register_section("mine", &why), 0);
    cr_assert_eq(config_register_section("mine", &why), 0, "again: a second app in the process (tests) has it too");
}

/* https:// upstreams, their CA file, and the allow-list of origins for absolute URLs (issue 22, F14). */
Test(config, https_upstreams_and_their_ca_file)
{
    apiary_config cfg;
    char err[CONFIG_ERROR_MAX];
    config_test_accept("{\"upstreams\": {\"gh\": {\"url\": \"https://api.github.com\"},"
                       " \"own\": {\"url\": \"https://10.0.0.5:8443\", \"ca_file\": \"/dev/null\"},"
                       " \"plain\": {\"url\": \"http://example.com\"}}}", &cfg);
    const http_client_upstream *gh = config_test_upstream(&cfg, "gh");
    cr_assert(gh->tls);
    cr_assert_str_eq(gh->host, "api.github.com");
    cr_assert_eq(gh->port, 443, "the scheme's port");
    cr_assert_str_eq(gh->ca_file, "", "the system store");
    cr_assert_eq(config_test_upstream(&cfg, "own")->port, 8443);
    cr_assert_str_eq(config_test_upstream(&cfg, "own")->ca_file, "/dev/null");
    cr_assert_not(config_test_upstream(&cfg, "plain")->tls);
    cr_assert_eq(config_test_upstream(&cfg, "plain")->port, 80);

    config_test_reject("{\"upstreams\": {\"u\": {\"url\": \"https://h\", \"ca_file\": \"/nonexistent/ca.pem\"}}}", err);
    config_test_assert_err(err, "upstreams.u.ca_file: cannot read '/nonexistent/ca.pem': No such file or directory");
    config_test_reject("{\"upstreams\": {\"u\": {\"url\": \"http://h:1\", \"ca_file\": \"/dev/null\"}}}", err);
    config_test_assert_err(err, "upstreams.u.ca_file: only for an https:// url");
    config_test_reject("{\"upstreams\": {\"u\": {\"url\": \"ftp://h:1\"}}}", err);
    config_test_assert_err(err, "upstreams.u.url: must start with http:// or https://");
    config_test_reject("{\"upstreams\": {\"u\": {\"url\": \"https://h/path\"}}}", err);
    config_test_reject("{\"upstreams\": {\"u\": {\"url\": \"https://h:443/\"}}}", err);
    config_test_reject("{\"upstreams\": {\"u\": {\"url\": \"https://user@h\"}}}", err);
}

Test(config, allowed_origins_for_absolute_urls)
{
    apiary_config cfg;
    char err[CONFIG_ERROR_MAX];
    config_test_accept("{}", &cfg);
    cr_assert_eq(cfg.allowed_origin_count, 0, "nothing is allowed by default");
    config_test_accept("{\"http_client\": {\"allowed_origins\": [\"https://api.example.com\","
                       " {\"url\": \"https://127.0.0.1:8443\", \"ca_file\": \"/dev/null\", \"timeout_ms\": 50}]}}",
                       &cfg);
    cr_assert_eq(cfg.allowed_origin_count, 2);
    cr_assert(cfg.allowed_origins[0].tls);
    cr_assert_eq(cfg.allowed_origins[0].port, 443);
    cr_assert_eq(cfg.allowed_origins[0].timeout_ms, 1000, "an upstream's defaults");
    cr_assert_eq(cfg.allowed_origins[1].timeout_ms, 50);
    cr_assert_str_eq(cfg.allowed_origins[1].ca_file, "/dev/null");
    const char *path;
    http_client_allowlist list = {cfg.allowed_origins, cfg.allowed_origin_count};
    cr_assert_eq(http_client_allowed(&list, "https://API.example.com/v1/x?q=1", &path), &cfg.allowed_origins[0]);
    cr_assert_str_eq(path, "/v1/x?q=1");
    cr_assert_null(http_client_allowed(&list, "http://api.example.com/v1/x", &path));

    config_test_reject("{\"http_client\": {\"allowed_origins\": [\"https://a.example\", \"https://A.example:443\"]}}",
                       err);
    config_test_assert_err(err, "http_client.allowed_origins[1]: the same origin as [0]");
    config_test_reject("{\"http_client\": {\"allowed_origins\": [\"https://a.example/x\"]}}", err);
    config_test_assert_err(err, "http_client.allowed_origins[0].url: ");
    config_test_reject("{\"http_client\": {\"allowed_origins\": \"https://a.example\"}}", err);
    config_test_assert_err(err, "http_client.allowed_origins: must be an array");
}

/* --- the file's schema (lib/schema): every mistake at once, in the words of one --- */

Test(config, every_mistake_in_one_line)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\"threads\": 999, \"limits\": {\"max_bodyy\": 1, \"max_headers\": 0}, \"listen\": 5,"
                       " \"upstreams\": {\"u\": {\"url\": \"ftp://x\"}, \"v\": {\"timeout_ms\": 1}}}", err);
    cr_assert_str_eq(err, "test.json: threads: must be an integer between 0 and 256; unknown key 'limits.max_bodyy'; "
                          "limits.max_headers: must be an integer between 1 and 256; listen: must be a string "
                          "\"HOST:PORT\" or \"[IPv6]:PORT\"; upstreams.u.url: must start with http:// or https://; "
                          "upstreams.v.url: missing");
    /* Checks between keys come once every key is valid: they compare values that exist. */
    config_test_reject("{\"listen\": \"\", \"limits\": {\"max_url_bytes\": 1024, \"max_header_bytes\": 1024}}", err);
    cr_assert_str_eq(err, "test.json: limits.max_url_bytes (1024) must be less than limits.max_header_bytes (1024); "
                          "listen: \"\" turns TCP off, so unix_socket.path must be set");
}

Test(config, structured_keys_name_the_entry)
{
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\"upstreams\": {\"u\": {\"url\": \"http://h\", \"timeout\": 5}}}", err);
    cr_assert_str_eq(err, "test.json: unknown key 'upstreams.u.timeout'");
    config_test_reject("{\"upstreams\": {\"u\": {\"url\": \"http://h\", \"retries\": 6}}}", err);
    cr_assert_str_eq(err, "test.json: upstreams.u.retries: must be an integer between 0 and 5");
    config_test_reject("{\"upstreams\": {\"bad name\": {\"url\": \"http://h\"}}}", err);
    cr_assert_str_eq(err, "test.json: upstreams: 'bad name': an upstream name is 1..32 of [A-Za-z0-9_-]");
    config_test_reject("{\"upstreams\": []}", err);
    cr_assert_str_eq(err, "test.json: upstreams: must be an object");
    config_test_reject("{\"trusted_proxies\": [\"10.0.0.0/8\", \"nonsense\", 7]}", err);
    cr_assert_str_eq(err, "test.json: trusted_proxies[2]: must be a string");
    config_test_reject("{\"trusted_proxies\": [\"10.0.0.0/8\", \"nonsense\"]}", err);
    config_test_assert_err(err, "test.json: trusted_proxies[1]: must be an address or CIDR");
    config_test_reject("{\"kv\": {\"backend\": \"disk\"}}", err);
    cr_assert_str_eq(err, "test.json: kv.backend: must be one of memory, redis");
    config_test_reject("{\"redis\": {\"url\": \"http://h\"}}", err);
    cr_assert_str_eq(err, "test.json: redis.url: 'http://h' must start with redis://");
    config_test_reject("{\"daemon\": {\"pid_file\": 5}}", err);
    cr_assert_str_eq(err, "test.json: daemon.pid_file: must be a string of at most 4095 bytes in UTF-8");
    config_test_reject("{\"half_close\": \"ignore\"}", err);
    cr_assert_str_eq(err, "test.json: half_close: must be \"cancel\" or \"answer\", not 'ignore'");
    config_test_reject("{\"unix_socket\": {\"path\": \"rel.sock\"}}", err);
    cr_assert_str_eq(err, "test.json: unix_socket.path: must be an absolute path shorter than 108 bytes, or \"\"");
}

Test(config, structured_keys_bind)
{
    apiary_config cfg;
    config_test_accept("{\"kv\": {\"backend\": \"redis\", \"max_memory_bytes\": 1099511627776},"
                       " \"redis\": {\"url\": \"redis://10.1.2.3:7000/2\", \"connections_per_loop\": 3},"
                       " \"trusted_proxies\": [\"unix\", \"10.0.0.0/8\", \"::1\"], \"proxy_header\": \"forwarded\","
                       " \"daemon\": {\"pid_file\": \"/run/a.pid\"}, \"user\": \"www\", \"log_level\": \"warn\","
                       " \"unix_socket\": {\"path\": \"/run/a.sock\", \"mode\": \"0600\"}, \"half_close\": \"answer\","
                       " \"rate_limit\": {\"path_prefix\": \"/api/\", \"enabled\": true}}",
                       &cfg);
    cr_assert_eq(cfg.kv_backend, CONFIG_KV_REDIS);
    cr_assert_eq(cfg.kv_max_memory_bytes, (size_t)1099511627776LL);
    cr_assert(cfg.redis_section);
    cr_assert_str_eq(cfg.redis.host, "10.1.2.3");
    cr_assert_eq(cfg.redis.port, 7000);
    cr_assert_eq(cfg.redis.db, 2);
    cr_assert_eq(cfg.redis.connections_per_loop, 3);
    cr_assert_eq(cfg.redis.command_timeout_ms, 500, "the section's other defaults stay");
    cr_assert(cfg.http.trust_unix_socket);
    cr_assert_eq(cfg.trusted_proxy_count, 2);
    cr_assert(cfg.http.proxy_header_forwarded);
    cr_assert_str_eq(cfg.pid_file, "/run/a.pid");
    cr_assert_str_eq(cfg.user, "www");
    cr_assert_eq(cfg.log_level, LOG_WARN);
    cr_assert_eq(cfg.unix_socket_mode, 0600);
    cr_assert(cfg.http.half_close_answer);
    cr_assert_str_eq(cfg.rate_limit_prefix, "/api/");
    cr_assert(cfg.rate_limit_enabled);
    config_test_accept("{\"redis\": {}}", &cfg);
    cr_assert(cfg.redis_section, "an empty section still says: use Redis");
}

Test(config, compression_prefer)
{
    apiary_config cfg;
    config_defaults(&cfg);
    cr_assert_eq(cfg.http.compress_prefer[0], HTTP_CODING_GZIP, "gzip first on equal q by default");
    cr_assert_eq(cfg.http.compress_prefer[1], HTTP_CODING_BR);
    config_test_accept("{\"compression\": {\"prefer\": [\"br\", \"gzip\"]}}", &cfg);
    cr_assert_eq(cfg.http.compress_prefer[0], HTTP_CODING_BR);
    cr_assert_eq(cfg.http.compress_prefer[1], HTTP_CODING_GZIP);
    config_test_accept("{\"compression\": {\"prefer\": [\"br\"]}}", &cfg);
    cr_assert_eq(cfg.http.compress_prefer[0], HTTP_CODING_BR);
    cr_assert_eq(cfg.http.compress_prefer[1], HTTP_CODING_GZIP, "a coding left out follows those named");
    config_test_accept("{\"compression\": {\"prefer\": [\"gzip\"]}}", &cfg);
    cr_assert_eq(cfg.http.compress_prefer[0], HTTP_CODING_GZIP);
    cr_assert_eq(cfg.http.compress_prefer[1], HTTP_CODING_BR);

    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\"compression\": {\"prefer\": [\"zstd\", \"gzip\"]}}", err);
    cr_assert_str_eq(err, "test.json: compression.prefer[0]: 'zstd' is not a coding apiary has: \"gzip\" or \"br\"");
    config_test_reject("{\"compression\": {\"prefer\": [\"gzip\", \"br\", \"gzip\"]}}", err);
    cr_assert_str_eq(err, "test.json: compression.prefer[2]: 'gzip' is named twice");
    /* Every wrong item is reported, each under its index. */
    config_test_reject("{\"compression\": {\"prefer\": [\"br\", \"br\", \"x-gzip\"]}}", err);
    config_test_assert_err(err, "compression.prefer[1]: 'br' is named twice");
    config_test_assert_err(err, "compression.prefer[2]: 'x-gzip' is not a coding");
    config_test_reject("{\"compression\": {\"prefer\": [\"GZIP\"]}}", err);
    config_test_assert_err(err, "compression.prefer[0]: 'GZIP' is not a coding");
    config_test_reject("{\"compression\": {\"prefer\": [\"identity\"]}}", err);
    config_test_assert_err(err, "compression.prefer[0]: 'identity' is not a coding");
    config_test_reject("{\"compression\": {\"prefer\": []}}", err);
    config_test_assert_err(err, "compression.prefer");
    config_test_reject("{\"compression\": {\"prefer\": \"gzip\"}}", err);
    config_test_assert_err(err, "compression.prefer");
    config_test_reject("{\"compression\": {\"prefer\": [\"gzip\", 1]}}", err);
    config_test_assert_err(err, "compression.prefer[1]");
}

Test(config, compression_and_static_keys)
{
    apiary_config cfg;
    config_test_accept("{\"compression\": {\"enabled\": false, \"brotli\": false, \"gzip_level\": 6,"
                       " \"brotli_level\": 0, \"min_bytes\": 0, \"pool_bytes\": 4096},"
                       " \"static\": [{\"prefix\": \"/static\", \"dir\": \"/tmp\"},"
                       " {\"dir\": \"/\", \"prefix\": \"/a/b\", \"open_file_cache\": 256}]}",
                       &cfg);
    cr_assert_not(cfg.http.compress_enabled);
    cr_assert_not(cfg.http.compress_brotli);
    cr_assert_eq(cfg.http.compress_gzip_level, 6);
    cr_assert_eq(cfg.http.compress_brotli_level, 0);
    cr_assert_eq(cfg.http.compress_min_bytes, 0);
    cr_assert_eq(cfg.http.compress_pool_bytes, 4096);
    cr_assert_eq(cfg.static_mount_count, 2);
    cr_assert_str_eq(cfg.static_mounts[1].prefix, "/a/b");
    cr_assert_str_eq(cfg.static_mounts[1].dir, "/");
    cr_assert_eq(cfg.static_mounts[0].open_file_cache, 0, "off unless asked for");
    cr_assert_eq(cfg.static_mounts[1].open_file_cache, 256);
    char err[CONFIG_ERROR_MAX];
    config_test_reject("{\"compression\": {\"gzip_level\": 0}}", err);
    cr_assert(strstr(err, "compression.gzip_level"), "%s", err);
    config_test_reject("{\"compression\": {\"brotli_level\": 12}}", err);
    config_test_reject("{\"static\": {}}", err);
    config_test_reject("{\"static\": [{\"prefix\": \"/s/\", \"dir\": \"/tmp\"}]}", err);
    cr_assert(strstr(err, "static[0].prefix"), "%s", err);
    config_test_reject("{\"static\": [{\"prefix\": \"s\", \"dir\": \"/tmp\"}]}", err);
    config_test_reject("{\"static\": [{\"prefix\": \"/s\", \"dir\": \"/nonexistent\"}]}", err);
    cr_assert(strstr(err, "static[0].dir"), "%s", err);
    config_test_reject("{\"static\": [{\"prefix\": \"/s\", \"dir\": \"/tmp\", \"x\": 1}]}", err);
    cr_assert(strstr(err, "unknown key 'x'"), "%s", err);
    config_test_reject("{\"static\": [{\"prefix\": \"/s\", \"dir\": \"/tmp\"}, {\"prefix\": \"/s\", \"dir\": \"/\"}]}", err);
    config_test_reject("{\"static\": [{\"prefix\": \"/s\"}]}", err);
    /* The duplicate is found even when an earlier mount was wrong in another way. */
    config_test_reject("{\"static\": [{\"prefix\": \"/s\", \"dir\": \"/nonexistent\"},"
                       " {\"prefix\": \"/s\", \"dir\": \"/tmp\"}]}", err);
    cr_assert(strstr(err, "static[1].prefix") && strstr(err, "mounted twice"), "%s", err);
    config_test_reject("{\"static\": [{\"prefix\": \"/s\", \"dir\": \"/tmp\", \"open_file_cache\": 65537}]}", err);
    cr_assert(strstr(err, "open_file_cache"), "%s", err);
    config_test_reject("{\"static\": [{\"prefix\": \"/s\", \"dir\": \"/tmp\", \"open_file_cache\": \"64\"}]}", err);
    config_test_reject("{\"static\": [{\"prefix\": \"/s\", \"dir\": \"/tmp\", \"open_file_cache\": -1}]}", err);
}
