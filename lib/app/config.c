/* config: loads the JSON config file into apiary_config. Every key is one row of config_keys, so a new
 * key is a new row; the walker rejects anything the table does not name, and nothing reaches the
 * caller's struct until the whole file has been checked. */
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

#define CONFIG_THREADS_MAX 256
#define CONFIG_PORT_MAX 65535
#define CONFIG_HEADER_BYTES_MAX 1048576 /* limits.max_header_bytes' own maximum */
/* Longer than any real dotted key, so a truncated path can never match a row by accident. */
#define CONFIG_PATH_MAX 128

typedef enum config_type { CONFIG_UNSIGNED, CONFIG_SIZE, CONFIG_BOOL, CONFIG_STRING, CONFIG_JSON } config_type;

typedef int (*config_string_fn)(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX]);

typedef struct config_key {
    const char *path;       /* dotted, as messages name it: "limits.max_body_bytes" */
    config_type type;
    long long min, max;     /* integers only */
    size_t offset;          /* integers only: where the value lands in apiary_config */
    config_string_fn parse; /* strings only: validates and stores */
    const char *expected;   /* strings only: what a wrong-type message asks for */
    /* CONFIG_JSON only: parses a whole structured value (a map of named entries) */
    int (*parse_json)(apiary_config *cfg, const void *json, char err[CONFIG_ERROR_MAX]);
} config_key;

typedef struct config_loader {
    apiary_config cfg; /* scratch copy: the caller's struct is written only on success */
    const char *origin;
    char *err;
} config_loader;

static int config_parse_log_level(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX]);

static int config_copy_string(char *dst, size_t cap, const char *value, char err[CONFIG_ERROR_MAX])
{
    if (strlen(value) >= cap) {
        snprintf(err, CONFIG_ERROR_MAX, "longer than %zu bytes", cap - 1);
        return -1;
    }
    strcpy(dst, value);
    return 0;
}

static int config_parse_pid_file(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    return config_copy_string(cfg->pid_file, sizeof(cfg->pid_file), value, err);
}

static int config_parse_log_file(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    return config_copy_string(cfg->log_file, sizeof(cfg->log_file), value, err);
}

static int config_parse_user(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    return config_copy_string(cfg->user, sizeof(cfg->user), value, err);
}

static int config_parse_unix_path(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    if (value[0] && (value[0] != '/' || strlen(value) >= sizeof(cfg->unix_socket_path))) {
        snprintf(err, CONFIG_ERROR_MAX, "must be an absolute path shorter than %zu bytes, or \"\"",
                 sizeof(cfg->unix_socket_path));
        return -1;
    }
    strcpy(cfg->unix_socket_path, value);
    return 0;
}

static int config_parse_unix_mode(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    char *end;
    long mode = strtol(value, &end, 8);
    if (!value[0] || *end || mode < 0 || mode > 0777) {
        snprintf(err, CONFIG_ERROR_MAX, "'%s' is not octal permissions 0..0777", value);
        return -1;
    }
    cfg->unix_socket_mode = (unsigned)mode;
    return 0;
}

static int config_parse_half_close(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    if (strcmp(value, "cancel") == 0) {
        cfg->http.half_close_answer = false;
    } else if (strcmp(value, "answer") == 0) {
        cfg->http.half_close_answer = true;
    } else {
        snprintf(err, CONFIG_ERROR_MAX, "must be \"cancel\" or \"answer\", not '%s'", value);
        return -1;
    }
    return 0;
}

static int config_parse_proxy_header(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    if (strcasecmp(value, "X-Forwarded-For") == 0) {
        cfg->http.proxy_header_forwarded = false;
    } else if (strcasecmp(value, "Forwarded") == 0) {
        cfg->http.proxy_header_forwarded = true;
    } else {
        snprintf(err, CONFIG_ERROR_MAX, "must be \"X-Forwarded-For\" or \"Forwarded\", not '%s'", value);
        return -1;
    }
    return 0;
}

static int config_parse_pubsub_backend(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    if (strcmp(value, "local") == 0)
        cfg->pubsub.backend = PUBSUB_BACKEND_LOCAL;
    else if (strcmp(value, "redis") == 0)
        cfg->pubsub.backend = PUBSUB_BACKEND_REDIS;
    else {
        snprintf(err, CONFIG_ERROR_MAX, "'%s' is not \"local\" or \"redis\"", value);
        return -1;
    }
    return 0;
}

/* The prefix goes into a PSUBSCRIBE pattern ("PREFIX*"): no glob characters, so only topic characters. */
static int config_parse_pubsub_prefix(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    size_t n = strlen(value);
    bool ok = n < sizeof(cfg->pubsub.channel_prefix);
    for (size_t i = 0; ok && i < n; i++)
        ok = value[i] == '.' || value[i] == '_' || value[i] == ':' || value[i] == '-' ||
             (value[i] >= '0' && value[i] <= '9') || (value[i] >= 'a' && value[i] <= 'z') ||
             (value[i] >= 'A' && value[i] <= 'Z');
    if (!ok) {
        snprintf(err, CONFIG_ERROR_MAX, "must be shorter than %zu bytes of A-Z a-z 0-9 . _ : -",
                 sizeof(cfg->pubsub.channel_prefix));
        return -1;
    }
    strcpy(cfg->pubsub.channel_prefix, value);
    return 0;
}

static int config_parse_rate_limit_prefix(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    if (value[0] != '/' || strlen(value) >= sizeof(cfg->rate_limit_prefix)) {
        snprintf(err, CONFIG_ERROR_MAX, "must start with '/' and be shorter than %zu bytes",
                 sizeof(cfg->rate_limit_prefix));
        return -1;
    }
    strcpy(cfg->rate_limit_prefix, value);
    return 0;
}

/* docs.dir: checked here, so --check-config and a start agree: the two files the page loads must be
 * there (scripts/deps.sh installs swagger-ui-dist). */
static int config_parse_docs_dir(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    if (strlen(value) >= sizeof(cfg->docs_dir) - 32) {
        snprintf(err, CONFIG_ERROR_MAX, "the path is longer than %zu bytes", sizeof(cfg->docs_dir) - 33);
        return -1;
    }
    static const char *const files[] = {"swagger-ui-bundle.js", "swagger-ui.css"};
    for (size_t i = 0; value[0] && i < sizeof(files) / sizeof(files[0]); i++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", value, files[i]);
        if (access(path, R_OK) != 0) {
            snprintf(err, CONFIG_ERROR_MAX, "%s has no readable %s (swagger-ui-dist's directory, or \"\" for none)",
                     value, files[i]);
            return -1;
        }
    }
    strcpy(cfg->docs_dir, value);
    return 0;
}

static int config_parse_access_log_path(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    if (strlen(value) >= sizeof(cfg->access_log_path)) {
        snprintf(err, CONFIG_ERROR_MAX, "the path is longer than %zu bytes", sizeof(cfg->access_log_path) - 1);
        return -1;
    }
    strcpy(cfg->access_log_path, value);
    return 0;
}

/* _Generic has no default branch, so a row pointing at a field of any other type fails to compile
 * instead of writing the wrong width at run time. */
#define CONFIG_FIELD_TYPE(field) \
    _Generic(((apiary_config *)0)->field, size_t: CONFIG_SIZE, unsigned: CONFIG_UNSIGNED, bool: CONFIG_BOOL)
#define CONFIG_INT(path, field, min, max) \
    {path, CONFIG_FIELD_TYPE(field), min, max, offsetof(apiary_config, field), NULL, NULL, NULL}
#define CONFIG_STR(path, fn, expected) {path, CONFIG_STRING, 0, 0, 0, fn, expected, NULL}
#define CONFIG_BOOLEAN(path, field) \
    {path, CONFIG_FIELD_TYPE(field), 0, 1, offsetof(apiary_config, field), NULL, NULL, NULL}
#define CONFIG_OBJECT(path, fn) {path, CONFIG_JSON, 0, 0, 0, NULL, "an object", fn}
#define CONFIG_ARRAY(path, fn) {path, CONFIG_JSON, 0, 0, 0, NULL, "an array", fn}

static const config_key config_keys[] = {
    CONFIG_STR("listen", config_parse_listen, "a string \"HOST:PORT\" or \"[IPv6]:PORT\""),
    CONFIG_INT("threads", threads, 0, CONFIG_THREADS_MAX),
    CONFIG_INT("backlog", backlog, 1, 65535),
    CONFIG_INT("max_connections", max_connections, 1, 1000000),
    CONFIG_INT("drain_timeout_ms", drain_timeout_ms, 0, 600000),
    CONFIG_STR("log_level", config_parse_log_level, "one of \"debug\", \"info\", \"warn\", \"error\""),
    CONFIG_INT("slow_callback_ms", http.slow_callback_ms, 0, 60000),
    CONFIG_STR("half_close", config_parse_half_close, "\"cancel\" or \"answer\""),
    /* One below max_header_bytes' maximum: the request line must fit inside the header block. */
    CONFIG_INT("limits.max_url_bytes", http.max_url_bytes, 64, CONFIG_HEADER_BYTES_MAX - 1),
    CONFIG_INT("limits.max_header_bytes", http.max_header_bytes, 256, CONFIG_HEADER_BYTES_MAX),
    CONFIG_INT("limits.max_headers", http.max_headers, 1, 256),
    CONFIG_INT("limits.max_body_bytes", http.max_body_bytes, 0, 1073741824),
    CONFIG_INT("limits.json_max_depth", http.json_max_depth, 1, 2048),
    CONFIG_INT("limits.json_max_values", http.json_max_values, 1, 100000000),
    CONFIG_INT("limits.output_buffer_bytes", http.output_buffer_bytes, 4096, 67108864),
    CONFIG_INT("limits.max_async_per_loop", http.max_async_per_loop, 1, 1000000),
    CONFIG_INT("limits.max_background_per_loop", http.max_background_per_loop, 1, 1000000),
    CONFIG_INT("limits.max_sleep_ms", max_sleep_ms, 0, 3600000),
    CONFIG_INT("limits.max_aggregate_sources", max_aggregate_sources, 1, 1024),
    CONFIG_INT("timeouts.header_ms", http.header_timeout_ms, 1, 3600000),
    CONFIG_INT("timeouts.body_ms", http.body_timeout_ms, 1, 3600000),
    CONFIG_INT("timeouts.keepalive_ms", http.keepalive_timeout_ms, 1, 3600000),
    CONFIG_INT("timeouts.write_ms", http.write_timeout_ms, 1, 3600000),
    CONFIG_INT("timeouts.linger_ms", http.linger_timeout_ms, 0, 60000),
    CONFIG_INT("timeouts.request_ms", http.request_timeout_ms, 1, 3600000),
    CONFIG_INT("sse.heartbeat_ms", http.sse_heartbeat_ms, 0, 3600000),
    CONFIG_INT("pool.threads", pool_threads, 0, CONFIG_THREADS_MAX),
    CONFIG_INT("pool.queue_size", pool_queue_size, 1, 1000000),
    CONFIG_BOOLEAN("pool.run_inline", pool_run_inline),
    CONFIG_INT("pool.nice", pool_nice, 0, 19),
    CONFIG_INT("password.opslimit", password_opslimit, 1, 16),
    CONFIG_INT("password.memlimit_kib", password_memlimit_kib, 8, 1048576),
    CONFIG_INT("password.max_bytes", password_max_bytes, 1, 4096),
    CONFIG_INT("primes.max_n", primes_max_n, 2, 1000000000),
    CONFIG_INT("coroutines.stack_kib", coro_stack_kib, 16, 65536),
    CONFIG_INT("coroutines.idle_stacks", coro_idle_stacks, 0, 100000),
    CONFIG_OBJECT("upstreams", config_parse_upstreams),
    CONFIG_ARRAY("trusted_proxies", config_parse_trusted_proxies),
    CONFIG_ARRAY("http_client.allowed_origins", config_parse_allowed_origins),
    CONFIG_STR("proxy_header", config_parse_proxy_header, "\"X-Forwarded-For\" or \"Forwarded\""),
    CONFIG_STR("daemon.pid_file", config_parse_pid_file, "a string: a path, or \"\" for none"),
    CONFIG_STR("daemon.log_file", config_parse_log_file, "a string: a path, or \"\" for stderr"),
    CONFIG_STR("user", config_parse_user, "a string: a user name, or \"\" to stay who we are"),
    CONFIG_STR("unix_socket.path", config_parse_unix_path, "a string: an absolute path, or \"\" for none"),
    CONFIG_STR("unix_socket.mode", config_parse_unix_mode, "a string of octal permissions such as \"0660\""),
    CONFIG_BOOLEAN("rate_limit.enabled", rate_limit_enabled),
    CONFIG_INT("rate_limit.requests_per_second", rate_limit_per_second, 1, 1000000),
    CONFIG_INT("rate_limit.burst", rate_limit_burst, 1, 1000000),
    CONFIG_INT("rate_limit.max_clients", rate_limit_max_clients, 64, 10000000),
    CONFIG_STR("rate_limit.path_prefix", config_parse_rate_limit_prefix, "a string such as \"/v1/\""),
    CONFIG_BOOLEAN("access_log.enabled", access_log_enabled),
    CONFIG_STR("access_log.path", config_parse_access_log_path, "a string: a file path, or \"\" for stderr"),
    CONFIG_STR("docs.dir", config_parse_docs_dir, "a string: swagger-ui-dist's directory, or \"\" for none"),
    CONFIG_INT("fanout.max_requests", fanout_max_requests, 1, 256),
    CONFIG_STR("kv.backend", config_parse_kv_backend, "\"memory\" or \"redis\""),
    CONFIG_INT("kv.max_key_bytes", kv_max_key_bytes, 1, 512),
    CONFIG_INT("kv.max_value_bytes", kv_max_value_bytes, 2, 16777216),
    CONFIG_INT("kv.max_entries", kv_max_entries, 1, 100000000),
    CONFIG_INT("kv.max_memory_bytes", kv_max_memory_bytes, 65536, 1099511627776LL),
    CONFIG_STR("pubsub.backend", config_parse_pubsub_backend, "\"local\" or \"redis\""),
    CONFIG_INT("pubsub.max_message_bytes", pubsub.max_message_bytes, 1, 16777216),
    CONFIG_STR("pubsub.channel_prefix", config_parse_pubsub_prefix, "a string such as \"apiary:\""),
    CONFIG_STR("redis.url", config_parse_redis_url, "a string \"redis://HOST:PORT/DB\""),
    CONFIG_INT("redis.connections_per_loop", redis.connections_per_loop, 1, 64),
    CONFIG_INT("redis.connect_timeout_ms", redis.connect_timeout_ms, 1, 60000),
    CONFIG_INT("redis.command_timeout_ms", redis.command_timeout_ms, 1, 600000),
    CONFIG_STR("sql.url", config_parse_sql_url,
               "a string \"sqlite:PATH\", \"mysql://USER:PASSWORD@HOST:PORT/DATABASE\" or "
               "\"postgres://USER:PASSWORD@HOST:PORT/DATABASE\""),
    CONFIG_INT("sql.connections_per_loop", sql.connections_per_loop, 1, 256),
    CONFIG_INT("sql.query_timeout_ms", sql.query_timeout_ms, 1, 600000),
    CONFIG_INT("sql.connect_timeout_ms", sql.connect_timeout_ms, 1, 60000),
    CONFIG_INT("sql.max_waiting", sql.max_waiting, 1, 1000000),
    CONFIG_INT("sql.threads", sql.threads, 1, 64),
    CONFIG_INT("sql.startup_timeout_ms", sql.startup_timeout_ms, 0, 3600000),
    CONFIG_INT("sql.pipeline_depth", sql.pipeline_depth, 1, 1024),
};

#define CONFIG_KEY_COUNT (sizeof(config_keys) / sizeof(config_keys[0]))

static int config_fail(char err[CONFIG_ERROR_MAX], const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static int config_fail(char err[CONFIG_ERROR_MAX], const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, CONFIG_ERROR_MAX, fmt, ap);
    va_end(ap);
    /* Keys and values are echoed from the file; a "\n" in one must not break the one-line promise. */
    for (char *p = err; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = '?';
    }
    return -1;
}

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

static const config_key *config_find(const char *path)
{
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
        if (strcmp(config_keys[i].path, path) == 0)
            return &config_keys[i];
    }
    return NULL;
}

/* A section is any prefix of a row's path, so adding "tls.cert" makes "tls" a section by itself. */
static int config_is_section(const char *path)
{
    size_t len = strlen(path);
    for (size_t i = 0; i < CONFIG_KEY_COUNT; i++) {
        if (strncmp(config_keys[i].path, path, len) == 0 && config_keys[i].path[len] == '.')
            return 1;
    }
    return 0;
}

static int config_set_integer(config_loader *l, const config_key *k, json_t *v)
{
    /* json_is_integer is false for 1.5, 1.0, true and null; only the range is left to check. */
    if (!json_is_integer(v) || json_integer_value(v) < k->min || json_integer_value(v) > k->max)
        return config_fail(l->err, "%s: %s: must be an integer between %lld and %lld", l->origin, k->path,
                           k->min, k->max);
    char *field = (char *)&l->cfg + k->offset;
    if (k->type == CONFIG_SIZE)
        *(size_t *)(void *)field = (size_t)json_integer_value(v);
    else
        *(unsigned *)(void *)field = (unsigned)json_integer_value(v);
    return 0;
}

static int config_set_bool(config_loader *l, const config_key *k, json_t *v)
{
    if (!json_is_boolean(v))
        return config_fail(l->err, "%s: %s: must be true or false", l->origin, k->path);
    *(bool *)(void *)((char *)&l->cfg + k->offset) = json_is_true(v);
    return 0;
}

static int config_set_json(config_loader *l, const config_key *k, json_t *v)
{
    if (strcmp(k->expected, "an object") == 0 ? !json_is_object(v) : !json_is_array(v))
        return config_fail(l->err, "%s: %s: must be %s", l->origin, k->path, k->expected);
    char why[CONFIG_ERROR_MAX];
    if (k->parse_json(&l->cfg, v, why) != 0)
        return config_fail(l->err, "%s: %s%s%s", l->origin, k->path, why[0] == '[' || why[0] == ':' ? "" : ".", why);
    return 0;
}

static int config_set_string(config_loader *l, const config_key *k, json_t *v)
{
    if (!json_is_string(v))
        return config_fail(l->err, "%s: %s: must be %s", l->origin, k->path, k->expected);
    char why[CONFIG_ERROR_MAX];
    if (k->parse(&l->cfg, json_string_value(v), why) != 0)
        return config_fail(l->err, "%s: %s: %s", l->origin, k->path, why);
    return 0;
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

int config_register_section(const char *name)
{
    if (!name || !name[0] || strchr(name, '.') || config_find(name) || config_is_section(name))
        return -1;
    if (config_is_app_section(name))
        return 0; /* an app built again in the same process (tests); one app checks its own duplicates */
    if (config_app_section_count == CONFIG_MAX_APP_SECTIONS)
        return -1;
    config_app_sections[config_app_section_count++] = name;
    return 0;
}

void config_release(apiary_config *cfg)
{
    json_decref(cfg->app_json);
    cfg->app_json = NULL;
}

/* An app's section is kept whole for the app to judge; it must at least be an object. */
static int config_keep_app_section(config_loader *l, const char *key, json_t *v)
{
    if (!json_is_object(v))
        return config_fail(l->err, "%s: %s: must be an object", l->origin, key);
    if (!l->cfg.app_json)
        l->cfg.app_json = json_object();
    json_object_set(l->cfg.app_json, key, v);
    return 0;
}

static int config_walk(config_loader *l, json_t *obj, const char *prefix)
{
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        char path[CONFIG_PATH_MAX];
        int n = snprintf(path, sizeof(path), "%s%s%s", prefix, *prefix ? "." : "", key);
        /* A dotted key such as "limits.max_body_bytes" at the top level would otherwise match a row. */
        int plain = n > 0 && (size_t)n < sizeof(path) && strchr(key, '.') == NULL;
        const config_key *k = plain ? config_find(path) : NULL;
        if (plain && !*prefix && config_is_app_section(key)) {
            if (config_keep_app_section(l, key, v) != 0)
                return -1;
        } else if (k) {
            int rc = k->type == CONFIG_STRING ? config_set_string(l, k, v)
                     : k->type == CONFIG_BOOL ? config_set_bool(l, k, v)
                     : k->type == CONFIG_JSON ? config_set_json(l, k, v)
                                              : config_set_integer(l, k, v);
            if (rc != 0)
                return -1;
        } else if (plain && config_is_section(path)) {
            if (!json_is_object(v))
                return config_fail(l->err, "%s: %s: must be an object", l->origin, path);
            if (strcmp(path, "redis") == 0)
                l->cfg.redis_section = true; /* even empty: "use Redis, with the defaults" */
            if (config_walk(l, v, path) != 0)
                return -1;
        } else {
            return config_fail(l->err, "%s: unknown key '%s%s'", l->origin, path,
                               (size_t)n >= sizeof(path) ? "..." : "");
        }
    }
    return 0;
}

static int config_check(config_loader *l)
{
    const http_settings *h = &l->cfg.http;
    /* The request line is part of the header block, so a URL this long could never fit anyway. */
    if (h->max_url_bytes >= h->max_header_bytes)
        return config_fail(l->err, "%s: limits.max_url_bytes (%zu) must be less than "
                           "limits.max_header_bytes (%zu)", l->origin, h->max_url_bytes, h->max_header_bytes);
    if (!l->cfg.listen_host[0] && !l->cfg.unix_socket_path[0])
        return config_fail(l->err, "%s: listen: \"\" turns TCP off, so unix_socket.path must be set", l->origin);
    return 0;
}

static int config_load_json(apiary_config *cfg, json_t *root, const char *origin, char err[CONFIG_ERROR_MAX])
{
    config_loader l = {.origin = origin, .err = err};
    config_defaults_unresolved(&l.cfg);
    if (!json_is_object(root))
        return config_fail(err, "%s: the top-level value must be an object", origin);
    if (config_walk(&l, root, "") != 0) {
        config_release(&l.cfg);
        return -1;
    }
    config_fit_defaults(&l.cfg);
    if (config_check(&l) != 0) {
        config_release(&l.cfg);
        return -1;
    }
    config_resolve(&l.cfg);
    *cfg = l.cfg;
    return 0;
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

static int config_parse_log_level(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX])
{
    log_level level;
    if (log_level_parse(value, &level) != 0)
        return config_fail(err, "'%s' is not one of \"debug\", \"info\", \"warn\", \"error\"", value);
    cfg->log_level = level;
    return 0;
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
