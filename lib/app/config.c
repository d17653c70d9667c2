/* config: loads the JSON config file into apiary_config. Every key is declared once, as a member of the
 * file's schema (include/apiary/schema.h, docs/schemas.md): the declaration checks the key's type and
 * range and binds it into the struct, so a new key is a new line. Keys with a grammar of their own
 * (listen, the URLs, the maps of upstreams) are converters (config_sections.c for the structured ones).
 * Every violation is reported, in one line; nothing reaches the caller's struct until the whole file
 * has been checked, the checks that compare keys (config_check) included. */
#include "config_internal.h"

#include <jansson.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http_compress_internal.h"
#include "schema.h"

#define CONFIG_THREADS_MAX 256
#define CONFIG_PORT_MAX 65535
#define CONFIG_HEADER_BYTES_MAX 1048576 /* limits.max_header_bytes' own maximum */

static int config_fail(char err[CONFIG_ERROR_MAX], const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int config_fail(char err[CONFIG_ERROR_MAX], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, CONFIG_ERROR_MAX, fmt, ap);
    va_end(ap);
    for (char *p = err; *p; p++) /* a "\n" echoed from the file must not break the one-line promise */
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    return -1;
}

/* ---- converters: keys whose text has a grammar of its own ----------------------------------------- */

/* Runs a text parser of the old shape (0, or -1 with why) as a converter: why becomes the violation. */
static bool config_convert_text(const json_t *v, const char *field, schema_errors *errs,
                                int (*parse)(const char *text, void *out, char err[CONFIG_ERROR_MAX]), void *out)
{
    char why[CONFIG_ERROR_MAX];
    if (parse(json_string_value(v), out, why) == 0)
        return true;
    schema_errors_add(errs, field, "%s", why);
    return false;
}

static int config_parse_listen_at(const char *value, void *out, char err[CONFIG_ERROR_MAX])
{
    return config_parse_listen(out, value, err);
}

static bool config_bind_listen(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    apiary_config scratch; /* the parser writes two fields of the whole config; out is NULL only to validate */
    return config_convert_text(v, field, errs, config_parse_listen_at, out ? out : &scratch);
}

static int config_parse_log_level(const char *value, void *out, char err[CONFIG_ERROR_MAX])
{
    if (log_level_parse(value, out) == 0)
        return 0;
    snprintf(err, CONFIG_ERROR_MAX, "'%s' is not one of \"debug\", \"info\", \"warn\", \"error\"", value);
    return -1;
}

static bool config_bind_log_level(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    log_level level;
    return config_convert_text(v, field, errs, config_parse_log_level, out ? out : &level);
}

/* A choice of two words bound to a bool (the second word is true). */
static bool config_bind_choice(const json_t *v, void *out, const char *field, schema_errors *errs,
                               const char *no, const char *yes, bool any_case)
{
    const char *t = json_string_value(v);
    bool is_yes = any_case ? strcasecmp(t, yes) == 0 : strcmp(t, yes) == 0;
    if (!is_yes && (any_case ? strcasecmp(t, no) : strcmp(t, no)) != 0)
        return schema_refuse(errs, field, "must be \"%s\" or \"%s\", not '%s'", no, yes, t);
    if (out)
        *(bool *)out = is_yes;
    return true;
}

static bool config_bind_half_close(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    return config_bind_choice(v, out, field, errs, "cancel", "answer", false);
}

static bool config_bind_proxy_header(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    return config_bind_choice(v, out, field, errs, "X-Forwarded-For", "Forwarded", true);
}

static bool config_bind_unix_mode(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    const char *value = json_string_value(v);
    char *end;
    long mode = strtol(value, &end, 8);
    if (!value[0] || *end || mode < 0 || mode > 0777)
        return schema_refuse(errs, field, "'%s' is not octal permissions 0..0777", value);
    if (out)
        *(unsigned *)out = (unsigned)mode;
    return true;
}

/* A path copied into char[size] after a check of its own (ok false: `what` says what it must be). */
static bool config_bind_path(const json_t *v, void *out, size_t size, bool ok, const char *field, schema_errors *errs,
                             const char *what)
{
    size_t len = json_string_length(v);
    if (!ok || len >= size)
        return schema_refuse(errs, field, what, size);
    if (out)
        memcpy(out, json_string_value(v), len + 1);
    return true;
}

static bool config_bind_unix_path(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    const char *t = json_string_value(v);
    return config_bind_path(v, out, sizeof(((apiary_config *)0)->unix_socket_path), !t[0] || t[0] == '/', field, errs,
                            "must be an absolute path shorter than %zu bytes, or \"\"");
}

static bool config_bind_rate_limit_prefix(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    return config_bind_path(v, out, sizeof(((apiary_config *)0)->rate_limit_prefix), json_string_value(v)[0] == '/',
                            field, errs, "must start with '/' and be shorter than %zu bytes");
}

/* docs.dir: checked here, so --check-config and a start agree: the two files the page loads must be
 * there (scripts/deps.sh installs swagger-ui-dist). */
static bool config_bind_docs_dir(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    const char *value = json_string_value(v);
    size_t cap = sizeof(((apiary_config *)0)->docs_dir) - 32; /* room for the file names */
    if (strlen(value) >= cap)
        return schema_refuse(errs, field, "the path is longer than %zu bytes", cap - 1);
    static const char *const files[] = {"swagger-ui-bundle.js", "swagger-ui.css"};
    for (size_t i = 0; value[0] && i < sizeof(files) / sizeof(files[0]); i++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", value, files[i]);
        if (access(path, R_OK) != 0)
            return schema_refuse(errs, field, "%s has no readable %s (swagger-ui-dist's directory, or \"\" for none)",
                                 value, files[i]);
    }
    if (out)
        strcpy(out, value);
    return true;
}

/* compression.prefer: the codings in the order they are preferred in on equal q. Each name once; a
 * coding left out keeps its place after those named (in the default order), so ["br"] is br, gzip. */
static bool config_bind_compress_prefer(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    unsigned char order[HTTP_SETTINGS_CODINGS];
    unsigned named = 0; /* HTTP_CODING_BIT of each coding in order[] */
    size_t n = 0, i;
    bool ok = true;
    json_t *item;
    json_array_foreach(v, i, item) {
        const char *name = json_string_value(item); /* the schema's items are strings */
        http_coding c = http_coding_from_name(name);
        char at[128];
        snprintf(at, sizeof(at), "%s[%zu]", field, i);
        if (c == HTTP_CODING_NONE) {
            ok = schema_refuse(errs, at, "'%s' is not a coding apiary has: \"gzip\" or \"br\"", name);
        } else if (named & HTTP_CODING_BIT(c)) {
            ok = schema_refuse(errs, at, "'%s' is named twice", name);
        } else {
            named |= HTTP_CODING_BIT(c);
            order[n++] = (unsigned char)c;
        }
    }
    for (i = 0; i < HTTP_SETTINGS_CODINGS; i++) { /* those left out, in the default order */
        http_coding c = (http_coding)http_coding_prefer_default[i];
        if (!(named & HTTP_CODING_BIT(c))) {
            named |= HTTP_CODING_BIT(c);
            order[n++] = (unsigned char)c;
        }
    }
    if (ok && out)
        memcpy(out, order, sizeof(order));
    return ok;
}

/* ---- the file's schema ----------------------------------------------------------------------------- */

/* The C type of a field picks what its integer binds to; _Generic has no default branch, so a field of
 * any other type fails to compile (and schema_check compares the sizes at start). */
#define CFG_AS(T, field) _Generic(((T *)0)->field, unsigned: SCHEMA_AS_UNSIGNED, size_t: SCHEMA_AS_SIZE)
#define CFG_INT_OF(T, name, field, lo, hi)                                                                         \
    SCHEMA_MEMBER(name, T, field, 0,                                                                               \
                  SCHEMA_INTEGER(.min = SCHEMA_GE(lo), .max = SCHEMA_LE(hi), .bind_as = CFG_AS(T, field)))
#define CFG_INT(name, field, lo, hi) CFG_INT_OF(apiary_config, name, field, lo, hi)
#define CFG_BOOL(name, field) SCHEMA_MEMBER(name, apiary_config, field, 0, SCHEMA_BOOLEAN())
/* A string with a grammar: `words` is what a value of another type is told it must be. */
#define CFG_TEXT_OF(T, name, field, words, fn)                                                                     \
    SCHEMA_MEMBER(name, T, field, 0, SCHEMA_STRING(.convert = SCHEMA_CONVERT(((T *)0)->field, words, fn)))
#define CFG_TEXT(name, field, words, fn) CFG_TEXT_OF(apiary_config, name, field, words, fn)
/* A string copied into a char array of the struct. */
#define CFG_CHARS(name, field)                                                                                     \
    SCHEMA_MEMBER(name, apiary_config, field, 0,                                                                   \
                  SCHEMA_STRING(.bind_as = SCHEMA_AS_CHARS, .max_bytes = sizeof(((apiary_config *)0)->field) - 1))
/* A section whose keys are fields of apiary_config itself. */
#define CFG_SECTION(name, ...) SCHEMA_MEMBER_WHOLE(name, apiary_config, 0, SCHEMA_OBJECT(apiary_config, __VA_ARGS__))

static const schema_member config_limits[] = {
    /* One below max_header_bytes' maximum: the request line must fit inside the header block. */
    CFG_INT("max_url_bytes", http.max_url_bytes, 64, CONFIG_HEADER_BYTES_MAX - 1),
    CFG_INT("max_header_bytes", http.max_header_bytes, 256, CONFIG_HEADER_BYTES_MAX),
    CFG_INT("max_headers", http.max_headers, 1, 256),
    CFG_INT("max_body_bytes", http.max_body_bytes, 0, 1073741824),
    CFG_INT("json_max_depth", http.json_max_depth, 1, 2048),
    CFG_INT("json_max_values", http.json_max_values, 1, 100000000),
    CFG_INT("output_buffer_bytes", http.output_buffer_bytes, 4096, 67108864),
    CFG_INT("max_async_per_loop", http.max_async_per_loop, 1, 1000000),
    CFG_INT("max_background_per_loop", http.max_background_per_loop, 1, 1000000),
    CFG_INT("max_sleep_ms", max_sleep_ms, 0, 3600000),
    CFG_INT("max_aggregate_sources", max_aggregate_sources, 1, 1024),
    SCHEMA_END,
};

static const schema_member config_timeouts[] = {
    CFG_INT("header_ms", http.header_timeout_ms, 1, 3600000),
    CFG_INT("body_ms", http.body_timeout_ms, 1, 3600000),
    CFG_INT("keepalive_ms", http.keepalive_timeout_ms, 1, 3600000),
    CFG_INT("write_ms", http.write_timeout_ms, 1, 3600000),
    CFG_INT("linger_ms", http.linger_timeout_ms, 0, 60000),
    CFG_INT("request_ms", http.request_timeout_ms, 1, 3600000),
    CFG_INT("stream_idle_ms", http.stream_idle_timeout_ms, 0, 86400000),
    SCHEMA_END,
};

static const schema_member config_redis[] = {
    SCHEMA_MEMBER_WHOLE("url", redis_settings, 0,
                        SCHEMA_STRING(.convert = SCHEMA_CONVERT(redis_settings, "a string \"redis://HOST:PORT/DB\"",
                                                                config_bind_redis_url))),
    CFG_INT_OF(redis_settings, "connections_per_loop", connections_per_loop, 1, 64),
    CFG_INT_OF(redis_settings, "connect_timeout_ms", connect_timeout_ms, 1, 60000),
    CFG_INT_OF(redis_settings, "command_timeout_ms", command_timeout_ms, 1, 600000),
    SCHEMA_END,
};

static const schema_member config_sql[] = {
    SCHEMA_MEMBER_WHOLE("url", sql_settings, 0,
                        SCHEMA_STRING(.convert = SCHEMA_CONVERT(sql_settings,
                                                                "a string \"sqlite:PATH\", "
                                                                "\"mysql://USER:PASSWORD@HOST:PORT/DATABASE\" or "
                                                                "\"postgres://USER:PASSWORD@HOST:PORT/DATABASE\"",
                                                                config_bind_sql_url))),
    CFG_INT_OF(sql_settings, "connections_per_loop", connections_per_loop, 1, 256),
    CFG_INT_OF(sql_settings, "query_timeout_ms", query_timeout_ms, 1, 600000),
    CFG_INT_OF(sql_settings, "connect_timeout_ms", connect_timeout_ms, 1, 60000),
    CFG_INT_OF(sql_settings, "max_waiting", max_waiting, 1, 1000000),
    CFG_INT_OF(sql_settings, "threads", threads, 1, 64),
    CFG_INT_OF(sql_settings, "startup_timeout_ms", startup_timeout_ms, 0, 3600000),
    CFG_INT_OF(sql_settings, "pipeline_depth", pipeline_depth, 1, 1024),
    SCHEMA_END,
};

static const schema_member config_members[] = {
    SCHEMA_MEMBER_WHOLE("listen", apiary_config, 0, /* sets listen_host and listen_port */
                        SCHEMA_STRING(.convert = SCHEMA_CONVERT(apiary_config, "a string \"HOST:PORT\" or "
                                                                "\"[IPv6]:PORT\"", config_bind_listen))),
    CFG_INT("threads", threads, 0, CONFIG_THREADS_MAX),
    CFG_INT("backlog", backlog, 1, 65535),
    CFG_INT("max_connections", max_connections, 1, 1000000),
    CFG_INT("drain_timeout_ms", drain_timeout_ms, 0, 600000),
    CFG_INT("drain_delay_ms", drain_delay_ms, 0, 600000),
    CFG_TEXT("log_level", log_level, "one of \"debug\", \"info\", \"warn\", \"error\"", config_bind_log_level),
    CFG_INT("slow_callback_ms", http.slow_callback_ms, 0, 60000),
    CFG_TEXT("half_close", http.half_close_answer, "\"cancel\" or \"answer\"", config_bind_half_close),
    CFG_SECTION("limits", config_limits),
    CFG_SECTION("timeouts", config_timeouts),
    CFG_SECTION("sse", (const schema_member[]){CFG_INT("heartbeat_ms", http.sse_heartbeat_ms, 0, 3600000), SCHEMA_END}),
    CFG_SECTION("websocket", (const schema_member[]){
        CFG_INT("max_message_bytes", http.ws_max_message_bytes, 125, 1073741824),
        CFG_INT("send_queue_bytes", http.ws_send_queue_bytes, 4096, 1073741824),
        CFG_INT("ping_interval_ms", http.ws_ping_interval_ms, 0, 3600000),
        CFG_INT("ping_timeout_ms", http.ws_ping_timeout_ms, 1, 3600000),
        CFG_INT("close_timeout_ms", http.ws_close_timeout_ms, 1, 600000),
        SCHEMA_END}),
    CFG_SECTION("pool", (const schema_member[]){
        CFG_INT("threads", pool_threads, 0, CONFIG_THREADS_MAX),
        CFG_INT("queue_size", pool_queue_size, 1, 1000000),
        CFG_BOOL("run_inline", pool_run_inline),
        CFG_INT("nice", pool_nice, 0, 19),
        SCHEMA_END}),
    CFG_SECTION("password", (const schema_member[]){
        CFG_INT("opslimit", password_opslimit, 1, 16),
        CFG_INT("memlimit_kib", password_memlimit_kib, 8, 1048576),
        CFG_INT("max_bytes", password_max_bytes, 1, 4096),
        SCHEMA_END}),
    CFG_SECTION("primes", (const schema_member[]){CFG_INT("max_n", primes_max_n, 2, 1000000000), SCHEMA_END}),
    CFG_SECTION("coroutines", (const schema_member[]){
        CFG_INT("stack_kib", coro_stack_kib, 16, 65536),
        CFG_INT("idle_stacks", coro_idle_stacks, 0, 100000),
        SCHEMA_END}),
    SCHEMA_MEMBER_WHOLE("upstreams", apiary_config, 0,
                        (&(const schema){.type = SCHEMA_T_OBJECT, .open = true, /* names are the app's */
                                         .convert = SCHEMA_CONVERT(apiary_config, NULL, config_bind_upstreams)})),
    SCHEMA_MEMBER_WHOLE("trusted_proxies", apiary_config, 0,
                        SCHEMA_ARRAY(SCHEMA_STRING(), .max_items = CONFIG_MAX_TRUSTED_PROXIES,
                                     .convert = SCHEMA_CONVERT(apiary_config, NULL, config_bind_trusted_proxies))),
    CFG_SECTION("http_client", (const schema_member[]){
        SCHEMA_MEMBER_WHOLE("allowed_origins", apiary_config, 0,
                            SCHEMA_ARRAY(NULL, .max_items = CONFIG_MAX_ALLOWED_ORIGINS,
                                         .convert = SCHEMA_CONVERT(apiary_config, NULL, config_bind_allowed_origins))),
        SCHEMA_END}),
    CFG_TEXT("proxy_header", http.proxy_header_forwarded, "\"X-Forwarded-For\" or \"Forwarded\"",
             config_bind_proxy_header),
    CFG_SECTION("daemon", (const schema_member[]){
        CFG_CHARS("pid_file", pid_file),
        CFG_CHARS("log_file", log_file),
        SCHEMA_END}),
    CFG_CHARS("user", user),
    CFG_SECTION("unix_socket", (const schema_member[]){
        CFG_TEXT("path", unix_socket_path, "a string: an absolute path, or \"\" for none", config_bind_unix_path),
        CFG_TEXT("mode", unix_socket_mode, "a string of octal permissions such as \"0660\"", config_bind_unix_mode),
        SCHEMA_END}),
    CFG_SECTION("rate_limit", (const schema_member[]){
        CFG_BOOL("enabled", rate_limit_enabled),
        CFG_INT("requests_per_second", rate_limit_per_second, 1, 1000000),
        CFG_INT("burst", rate_limit_burst, 1, 1000000),
        CFG_INT("max_clients", rate_limit_max_clients, 64, 10000000),
        CFG_TEXT("path_prefix", rate_limit_prefix, "a string such as \"/v1/\"", config_bind_rate_limit_prefix),
        SCHEMA_END}),
    CFG_SECTION("access_log", (const schema_member[]){
        CFG_BOOL("enabled", access_log_enabled),
        CFG_CHARS("path", access_log_path),
        SCHEMA_END}),
    CFG_SECTION("docs", (const schema_member[]){
        CFG_TEXT("dir", docs_dir, "a string: swagger-ui-dist's directory, or \"\" for none", config_bind_docs_dir),
        SCHEMA_END}),
    SCHEMA_MEMBER_WHOLE("static", apiary_config, 0,
                        SCHEMA_ARRAY(NULL, .max_items = CONFIG_MAX_STATIC_MOUNTS,
                                     .convert = SCHEMA_CONVERT(apiary_config, NULL, config_bind_static))),
    CFG_SECTION("compression", (const schema_member[]){
        CFG_BOOL("enabled", http.compress_enabled),
        CFG_BOOL("brotli", http.compress_brotli),
        CFG_INT("gzip_level", http.compress_gzip_level, 1, 9),
        CFG_INT("brotli_level", http.compress_brotli_level, 0, 11),
        CFG_INT("min_bytes", http.compress_min_bytes, 0, 1073741824),
        CFG_INT("pool_bytes", http.compress_pool_bytes, 0, 1073741824),
        SCHEMA_MEMBER("prefer", apiary_config, http.compress_prefer, 0,
                      SCHEMA_ARRAY(SCHEMA_STRING(), .min_items = 1, .max_items = 8,
                                   .convert = SCHEMA_CONVERT(((apiary_config *)0)->http.compress_prefer, NULL,
                                                             config_bind_compress_prefer))),
        SCHEMA_END}),
    CFG_SECTION("fanout", (const schema_member[]){CFG_INT("max_requests", fanout_max_requests, 1, 256), SCHEMA_END}),
    CFG_SECTION("kv", (const schema_member[]){
        SCHEMA_MEMBER("backend", apiary_config, kv_backend, 0, SCHEMA_ENUM("memory", "redis")),
        CFG_INT("max_key_bytes", kv_max_key_bytes, 1, 512),
        CFG_INT("max_value_bytes", kv_max_value_bytes, 2, 16777216),
        CFG_INT("max_entries", kv_max_entries, 1, 100000000),
        CFG_INT("max_memory_bytes", kv_max_memory_bytes, 65536, 1099511627776LL),
        SCHEMA_END}),
    CFG_SECTION("pubsub", (const schema_member[]){
        SCHEMA_MEMBER("backend", apiary_config, pubsub.backend, 0, SCHEMA_ENUM("local", "redis")),
        CFG_INT("max_message_bytes", pubsub.max_message_bytes, 1, 16777216),
        /* the prefix goes into a PSUBSCRIBE pattern ("PREFIX*"): topic characters only, no glob */
        SCHEMA_MEMBER("channel_prefix", apiary_config, pubsub.channel_prefix, 0,
                      SCHEMA_STRING(.bind_as = SCHEMA_AS_CHARS, .max_bytes = 63,
                                    .pattern = SCHEMA_PATTERN("^[A-Za-z0-9._:-]*$"))),
        SCHEMA_END}),
    SCHEMA_MEMBER("redis", apiary_config, redis, 0, SCHEMA_OBJECT(redis_settings, config_redis)),
    SCHEMA_MEMBER("sql", apiary_config, sql, 0, SCHEMA_OBJECT(sql_settings, config_sql)),
    SCHEMA_END,
};

static const schema config_schema = SCHEMA_OBJECT_OF(apiary_config, config_members);

/* config_kv_backend is bound as the index of its word in the enum above. */
_Static_assert(CONFIG_KV_MEMORY == 0 && CONFIG_KV_REDIS == 1, "kv.backend's words are in the enum's order");
_Static_assert(PUBSUB_BACKEND_LOCAL == 0 && PUBSUB_BACKEND_REDIS == 1, "pubsub.backend's words are in the enum's order");

/* The file's defaults: threads stays 0 ("one per CPU") until config_resolve. */
static void config_defaults_unresolved(apiary_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    strcpy(cfg->listen_host, "127.0.0.1");
    cfg->listen_port = 8080;
    cfg->threads = 0;
    cfg->backlog = 511;
    cfg->max_connections = 10000;
    cfg->drain_timeout_ms = 10000;
    cfg->log_level = LOG_INFO;
    cfg->max_sleep_ms = 60000;
    cfg->max_aggregate_sources = 64;
    cfg->pool_threads = 0;
    cfg->pool_queue_size = 64;
    cfg->pool_run_inline = false;
    cfg->pool_nice = 19;
    /* libsodium's "interactive" Argon2id parameters: about 60 ms and 64 MiB per hash on this machine. */
    cfg->password_opslimit = 2;
    cfg->password_memlimit_kib = 65536;
    cfg->password_max_bytes = 1024;
    cfg->primes_max_n = 50000000;
    cfg->coro_stack_kib = 64; /* under ASan the library quadruples it (coro_internal.h) */
    cfg->coro_idle_stacks = 64;
    cfg->fanout_max_requests = 16;
    cfg->unix_socket_mode = 0660;
    cfg->rate_limit_per_second = 100;
    cfg->rate_limit_burst = 200;
    cfg->rate_limit_max_clients = 100000;
    strcpy(cfg->rate_limit_prefix, "/v1/");
    cfg->kv_backend = CONFIG_KV_MEMORY;
    cfg->pubsub.backend = PUBSUB_BACKEND_LOCAL;
    cfg->pubsub.max_message_bytes = 65536;
    strcpy(cfg->pubsub.channel_prefix, "apiary:pubsub:");
    cfg->kv_max_key_bytes = 128;
    cfg->kv_max_value_bytes = 65536;
    cfg->kv_max_entries = 100000;
    cfg->kv_max_memory_bytes = 268435456; /* 256 MiB: entries x max_value_bytes could reach 6.5 GB */
    strcpy(cfg->redis.host, "127.0.0.1");
    cfg->redis.port = 6379;
    cfg->redis.db = 0;
    cfg->redis.connections_per_loop = 1;
    cfg->redis.connect_timeout_ms = 200;
    cfg->redis.command_timeout_ms = 500;
    sql_settings_defaults(&cfg->sql);
    http_settings_defaults(&cfg->http);
    /* 0 is outside both ranges, so it means "not in the file": config_fit_defaults picks a value that
     * fits whatever the file did set for the other one. */
    cfg->http.max_url_bytes = 0;
    cfg->http.max_header_bytes = 0;
}

/* Defaults that depend on another key follow the user's value, so leaving one of a pair out can never
 * make the file invalid: max_url_bytes defaults to 8192 but at most half of max_header_bytes (the
 * request line is part of the header block), and max_header_bytes to 16384 but at least twice
 * max_url_bytes (capped at its own maximum). Only a pair the file gave explicitly can conflict, and
 * config_check names both keys then. */
static void config_fit_defaults(apiary_config *cfg)
{
    http_settings d;
    http_settings_defaults(&d);
    http_settings *h = &cfg->http;
    if (!h->max_header_bytes) {
        size_t want = h->max_url_bytes ? h->max_url_bytes * 2 : d.max_header_bytes;
        if (want < d.max_header_bytes)
            want = d.max_header_bytes;
        h->max_header_bytes = want > CONFIG_HEADER_BYTES_MAX ? CONFIG_HEADER_BYTES_MAX : want;
    }
    if (!h->max_url_bytes)
        h->max_url_bytes = d.max_url_bytes < h->max_header_bytes / 2 ? d.max_url_bytes : h->max_header_bytes / 2;
}

static unsigned config_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        return 1;
    /* Keep the resolved value inside the range the file and --threads accept. */
    return n > CONFIG_THREADS_MAX ? CONFIG_THREADS_MAX : (unsigned)n;
}

static void config_resolve(apiary_config *cfg)
{
    if (cfg->threads == 0)
        cfg->threads = config_cpu_count();
    if (cfg->pool_threads == 0)
        cfg->pool_threads = config_cpu_count();
    /* Whole-server figure for now; the server divides it once it has started its loops. */
    cfg->http.max_connections = cfg->max_connections;
}

void config_defaults(apiary_config *cfg)
{
    config_defaults_unresolved(cfg);
    config_fit_defaults(cfg);
    config_resolve(cfg);
}

/* apiary's own top-level keys, which an app's section may not take. */
static bool config_is_own_key(const char *name)
{
    for (const schema_member *m = config_members; m->name; m++)
        if (strcmp(m->name, name) == 0)
            return true;
    return false;
}

static const char *config_app_sections[CONFIG_MAX_APP_SECTIONS];
static size_t config_app_section_count;

static bool config_is_app_section(const char *key)
{
    for (size_t i = 0; i < config_app_section_count; i++)
        if (strcmp(config_app_sections[i], key) == 0)
            return true;
    return false;
}

int config_register_section(const char *name, const char **why)
{
    *why = !name || !name[0]             ? "the name is empty"
           : strchr(name, '.')           ? "the name holds a '.' (a key below a section is written SECTION.KEY)"
           : config_is_own_key(name)     ? "the name is one of apiary's own config keys"
                                         : NULL;
    if (*why)
        return -1;
    if (config_is_app_section(name))
        return 0; /* an app built again in the same process (tests); one app checks its own duplicates */
    if (config_app_section_count == CONFIG_MAX_APP_SECTIONS) {
        _Static_assert(CONFIG_MAX_APP_SECTIONS == 8, "the message below names the limit");
        *why = "there are more than 8 app sections";
        return -1;
    }
    config_app_sections[config_app_section_count++] = name;
    return 0;
}

void config_release(apiary_config *cfg)
{
    json_decref(cfg->app_json);
    cfg->app_json = NULL;
}

/* Moves the app sections of root into cfg->app_json (kept whole for the app to judge; each must at least
 * be an object) and returns what is left for apiary's schema: root itself, or a copy without them. */
static json_t *config_take_app_sections(apiary_config *cfg, json_t *root, schema_errors *errs)
{
    json_t *own = json_incref(root);
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!config_is_app_section(key))
            continue;
        if (!json_is_object(v)) {
            schema_errors_add(errs, key, "must be an object");
        } else {
            if (!cfg->app_json)
                cfg->app_json = json_object();
            json_object_set(cfg->app_json, key, v);
        }
        if (own == root) {
            json_decref(own);
            own = json_copy(root); /* shallow: the values are shared */
        }
        json_object_del(own, key);
    }
    return own;
}

/* What the declaration cannot say: keys checked against each other, once every key is valid. */
static void config_check(const apiary_config *cfg, schema_errors *errs)
{
    const http_settings *h = &cfg->http;
    /* The request line is part of the header block, so a URL this long could never fit anyway. */
    if (h->max_url_bytes >= h->max_header_bytes)
        schema_errors_add(errs, "", "limits.max_url_bytes (%zu) must be less than limits.max_header_bytes (%zu)",
                          h->max_url_bytes, h->max_header_bytes);
    if (!cfg->listen_host[0] && !cfg->unix_socket_path[0])
        schema_errors_add(errs, "listen", "\"\" turns TCP off, so unix_socket.path must be set");
}

/* Every violation in one line, in the words apiary's config errors always had:
 * "FILE: limits.max_headers: must be ...; unknown key 'limits.max_bodyy'". */
static int config_errors_message(const schema_errors *errs, const char *origin, char err[CONFIG_ERROR_MAX])
{
    size_t n = (size_t)snprintf(err, CONFIG_ERROR_MAX, "%s: ", origin);
    for (size_t i = 0; i < errs->count && n < CONFIG_ERROR_MAX; i++) {
        const schema_error *e = &errs->list[i];
        const char *sep = i ? "; " : "";
        int k;
        if (e->kind == SCHEMA_ERROR_UNKNOWN)
            k = snprintf(err + n, CONFIG_ERROR_MAX - n, "%sunknown key '%s%s'", sep, e->field, e->cut ? "..." : "");
        else if (e->kind == SCHEMA_ERROR_MISSING)
            k = snprintf(err + n, CONFIG_ERROR_MAX - n, "%s%s: missing", sep, e->field);
        else
            k = snprintf(err + n, CONFIG_ERROR_MAX - n, "%s%s%s%s", sep, e->field, e->field[0] ? ": " : "", e->detail);
        n += k > 0 ? (size_t)k : 0;
    }
    if (errs->more && n < CONFIG_ERROR_MAX)
        snprintf(err + n, CONFIG_ERROR_MAX - n, "; ...");
    /* Keys and values are echoed from the file; a "\n" in one must not break the one-line promise. */
    for (char *p = err; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    }
    return -1;
}

static int config_load_json(apiary_config *cfg, json_t *root, const char *origin, char err[CONFIG_ERROR_MAX])
{
    if (!json_is_object(root))
        return config_fail(err, "%s: the top-level value must be an object", origin);
    char why[512];
    if (schema_check(&config_schema, why, sizeof(why)) != 0) /* a wrong declaration above: a bug, said so */
        return config_fail(err, "%s: apiary's config declaration: %s", origin, why);
    apiary_config scratch; /* the caller's struct is written only on success */
    config_defaults_unresolved(&scratch);
    arena a;
    arena_init(&a);
    schema_errors errs;
    schema_errors_init(&errs, &a, "config");
    json_t *own = config_take_app_sections(&scratch, root, &errs);
    schema_bind(&config_schema, own, &scratch, "", &errs);
    if (errs.count == 0) {
        scratch.redis_section = json_is_object(json_object_get(own, "redis")); /* even empty: "use Redis" */
        config_fit_defaults(&scratch);
        config_check(&scratch, &errs);
    }
    json_decref(own);
    int rc = 0;
    if (errs.count) {
        rc = config_errors_message(&errs, origin, err);
        config_release(&scratch);
    } else {
        config_resolve(&scratch);
        *cfg = scratch;
    }
    arena_reset(&a);
    return rc;
}

static int config_json_error(const json_error_t *jerr, const char *origin, char err[CONFIG_ERROR_MAX])
{
    /* jansson's own text already names the path ("unable to open PATH: ..."). */
    if (json_error_code(jerr) == json_error_cannot_open_file)
        return config_fail(err, "%s", jerr->text);
    if (jerr->line < 1)
        return config_fail(err, "%s: %s", origin, jerr->text);
    return config_fail(err, "%s: line %d, column %d: %s", origin, jerr->line, jerr->column, jerr->text);
}

int config_load_file(apiary_config *cfg, const char *path, char err[CONFIG_ERROR_MAX])
{
    if (!path)
        return config_fail(err, "no config file given");
    /* fopen succeeds on a directory, and jansson would then report an empty document at 1:0. */
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return config_fail(err, "%s: is a directory, not a config file", path);
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return config_json_error(&jerr, path, err);
    int rc = config_load_json(cfg, root, path, err);
    json_decref(root);
    if (rc == 0)
        snprintf(cfg->source_path, sizeof(cfg->source_path), "%s", path);
    return rc;
}

int config_load_string(apiary_config *cfg, const char *json_text, const char *origin,
                       char err[CONFIG_ERROR_MAX])
{
    if (!origin)
        origin = "<string>";
    if (!json_text)
        return config_fail(err, "%s: no JSON text given", origin);
    json_error_t jerr;
    json_t *root = json_loadb(json_text, strlen(json_text), JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return config_json_error(&jerr, origin, err);
    int rc = config_load_json(cfg, root, origin, err);
    json_decref(root);
    return rc;
}

static int config_is_alnum(char c)
{
    /* Not isalnum(): its answer depends on the locale. */
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

/* Catches typos such as "localhost :80" early; what remains is getaddrinfo's to judge. The bracketed
 * set adds ':' and '%' for IPv6 literals with a zone ("fe80::1%eth0"). */
static int config_host_chars_ok(const char *host, size_t len, int bracketed)
{
    for (size_t i = 0; i < len; i++) {
        char c = host[i];
        if (config_is_alnum(c) || c == '.' || c == '-' || c == '_')
            continue;
        if (bracketed && (c == ':' || c == '%'))
            continue;
        return 0;
    }
    return 1;
}

static int config_parse_port(const char *text, unsigned *port)
{
    unsigned long n = 0;
    if (*text == '\0')
        return -1;
    for (const char *p = text; *p; p++) {
        if (*p < '0' || *p > '9')
            return -1;
        n = n * 10 + (unsigned long)(*p - '0');
        if (n > CONFIG_PORT_MAX)
            return -1;
    }
    *port = (unsigned)n;
    return 0;
}

int config_parse_listen(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    if (!value)
        return config_fail(err, "no address given (expected HOST:PORT or [IPv6]:PORT)");
    if (!value[0]) { /* no TCP listener: the Unix socket only (checked against unix_socket.path) */
        cfg->listen_host[0] = '\0';
        cfg->listen_port = 0;
        return 0;
    }
    const char *host, *colon;
    size_t host_len;
    int bracketed = value[0] == '[';
    if (bracketed) {
        const char *close = strchr(value, ']');
        if (!close || close[1] != ':')
            return config_fail(err, "'%s' is not [IPv6]:PORT", value);
        host = value + 1;
        host_len = (size_t)(close - host);
        colon = close + 1;
    } else {
        colon = strrchr(value, ':');
        if (!colon)
            return config_fail(err, "'%s' is not HOST:PORT or [IPv6]:PORT", value);
        host = value;
        host_len = (size_t)(colon - host);
    }
    if (host_len == 0)
        return config_fail(err, "'%s' has an empty host", value);
    if (bracketed && !memchr(host, ':', host_len))
        return config_fail(err, "'%s': brackets are only for IPv6 addresses", value);
    if (!bracketed && memchr(host, ':', host_len))
        return config_fail(err, "'%s': an IPv6 address needs brackets, as in [::1]:8080", value);
    if (host_len >= sizeof(cfg->listen_host))
        return config_fail(err, "the host is longer than %zu characters", sizeof(cfg->listen_host) - 1);
    if (!config_host_chars_ok(host, host_len, bracketed))
        return config_fail(err, "'%s': the host has a character no address or name can contain", value);
    unsigned port;
    if (config_parse_port(colon + 1, &port) != 0)
        return config_fail(err, "'%s': the port must be a number between 0 and %d", value, CONFIG_PORT_MAX);
    /* Written only now so a bad value leaves the previous address in place. */
    memcpy(cfg->listen_host, host, host_len);
    cfg->listen_host[host_len] = '\0';
    cfg->listen_port = port;
    return 0;
}
