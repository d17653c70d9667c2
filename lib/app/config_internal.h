/* config: the server's configuration, loaded from a JSON file (config/apiary.json) and then
 * overridden by command-line flags. Loading is all-or-nothing: an unknown key, a wrong type or an
 * out-of-range value yields an error naming the key, and no partially filled config is ever used. */
#ifndef APIARY_CONFIG_H
#define APIARY_CONFIG_H

#include <stdbool.h>

#include "http_client.h"
#include "http_settings_internal.h"
#include "pubsub_internal.h"
#include "redis.h"
#include "sql.h"
#include "log.h"
#include "schema.h"

#define CONFIG_ERROR_MAX 512

#define CONFIG_MAX_UPSTREAMS 16
#define CONFIG_MAX_TRUSTED_PROXIES 64
#define CONFIG_MAX_ALLOWED_ORIGINS 16
#define CONFIG_UPSTREAM_NAME_MAX HTTP_CLIENT_UPSTREAM_NAME_MAX

#define CONFIG_MAX_STATIC_MOUNTS 8
typedef struct config_static_mount {
    char prefix[128];         /* "/static" */
    char dir[1024];           /* the directory served */
    unsigned open_file_cache; /* descriptors kept per loop (http_static_root_cache); 0: none */
} config_static_mount;

typedef enum config_kv_backend { CONFIG_KV_MEMORY, CONFIG_KV_REDIS } config_kv_backend;
typedef struct apiary_config {
    char listen_host[256];     /* "127.0.0.1", "::1", "0.0.0.0" (brackets stripped) */
    unsigned listen_port;      /* 0 = pick an ephemeral port (tests) */
    unsigned threads;          /* event loops; 0 in the file = one per CPU, resolved by config_load */
    unsigned backlog;          /* listen(2) backlog of each listener */
    unsigned max_connections;  /* whole server; split evenly across loops */
    unsigned drain_timeout_ms; /* SIGTERM: how long in-flight requests may take to finish */
    unsigned drain_delay_ms;   /* SIGTERM: how long /readyz says 503 before the listener closes */
    log_level log_level;
    unsigned max_sleep_ms;          /* simulated I/O endpoints: longest accepted delay */
    unsigned max_aggregate_sources; /* /v1/aggregate: most sources in one request */
    unsigned pool_threads;          /* worker threads for CPU-heavy handlers; 0 in the file = CPU count */
    unsigned pool_queue_size;       /* jobs waiting for a worker; a full queue answers 503 */
    bool pool_run_inline;           /* benchmarks only: run pool jobs on the loop thread instead */
    unsigned pool_nice;             /* workers' nice value: below the loops, so a woken loop runs at once */
    unsigned password_opslimit;     /* Argon2id passes (crypto_pwhash opslimit) */
    unsigned password_memlimit_kib; /* Argon2id memory per hash, KiB */
    unsigned password_max_bytes;    /* longest password accepted */
    unsigned primes_max_n;          /* /v1/primes: largest n */
    unsigned coro_stack_kib;        /* coroutine handlers: usable stack each (docs/async.md "Stacks") */
    unsigned coro_idle_stacks;      /* idle coroutine stacks a loop keeps resident */
    http_client_upstream upstreams[CONFIG_MAX_UPSTREAMS];
    unsigned upstream_count;
    unsigned fanout_max_requests;   /* /v1/fanout: most calls in one request */
    http_client_upstream allowed_origins[CONFIG_MAX_ALLOWED_ORIGINS]; /* http_client.allowed_origins */
    unsigned allowed_origin_count;
    config_kv_backend kv_backend;
    unsigned kv_max_key_bytes;
    unsigned kv_max_value_bytes;
    unsigned kv_max_entries;        /* memory backend: entries across the whole server */
    size_t kv_max_memory_bytes;     /* memory backend: key and value bytes across the whole server */
    redis_settings redis;
    bool redis_section;             /* the file has a "redis" section: Redis is configured */
    pubsub_settings pubsub;         /* the "pubsub" section (pubsub.redis is set at start) */
    sql_settings sql;               /* the "sql" section; sql.url may come from APIARY_SQL_URL */
    bool sql_url_overridden;        /* set by APIARY_SQL_URL: a reload keeps the running sql section */
    http_cidr trusted_proxies[CONFIG_MAX_TRUSTED_PROXIES];
    unsigned trusted_proxy_count;
    bool rate_limit_enabled;
    unsigned rate_limit_per_second;
    unsigned rate_limit_burst;
    unsigned rate_limit_max_clients;
    char rate_limit_prefix[64];
    char unix_socket_path[108];     /* "" = no Unix-socket listener */
    unsigned unix_socket_mode;      /* permissions of the socket file */
    char pid_file[4096];            /* "" = none; locked while we run (daemon.pid_file) */
    char log_file[4096];            /* "" = stderr; required with --daemon (daemon.log_file) */
    char user[64];                  /* "" = keep the user we started as; else switch after binding */
    bool daemonize;                 /* --daemon */
    char source_path[4096];         /* the file it was loaded from (config_load_file), for reloads */
    bool listen_overridden;         /* set by APIARY_LISTEN or --listen: a reload keeps it quietly */
    bool threads_overridden;        /* set by --threads: likewise */
    bool access_log_enabled;
    char access_log_path[4096];     /* "" = stderr */
    char docs_dir[4096];            /* swagger-ui-dist's directory for GET /docs; "" = the page is off */
    config_static_mount static_mounts[CONFIG_MAX_STATIC_MOUNTS]; /* `static`: directories served as files */
    unsigned static_mount_count;
    http_settings http;        /* limits and timeouts, see http_settings_internal.h */
    void *app_json;            /* json_t object holding the app's own sections as the file had them
                                * (config_register_section), or NULL. Owned by whoever owns the
                                * config: config_release drops it; plain copies share it. */
} apiary_config;

/* Fills every field with its default (threads resolved to the CPU count). */
void config_defaults(apiary_config *cfg);

/* Loads `path` over the defaults into *cfg. Returns 0, or -1 with a one-line message in err such as
 * "config/apiary.json: limits.max_body_bytes: must be an integer between 0 and 1073741824".
 * On failure *cfg is left untouched. */
int config_load_file(apiary_config *cfg, const char *path, char err[CONFIG_ERROR_MAX]);

/* Same as config_load_file, from a JSON text (for tests); `origin` names it in messages. */
int config_load_string(apiary_config *cfg, const char *json_text, const char *origin,
                       char err[CONFIG_ERROR_MAX]);

/* The converters of the file's schema for its structured keys (lib/app/config_sections.c; schema.h
 * schema_convert): each binds into the apiary_config (or the section's struct) at out, or adds its
 * violations under `field`. */
bool config_bind_upstreams(const json_t *v, void *out, const char *field, schema_errors *errs);
bool config_bind_trusted_proxies(const json_t *v, void *out, const char *field, schema_errors *errs);
bool config_bind_allowed_origins(const json_t *v, void *out, const char *field, schema_errors *errs);
bool config_bind_redis_url(const json_t *v, void *out, const char *field, schema_errors *errs);
bool config_bind_sql_url(const json_t *v, void *out, const char *field, schema_errors *errs);
bool config_bind_static(const json_t *v, void *out, const char *field, schema_errors *errs);
/* sql.url (and APIARY_SQL_URL): "sqlite:PATH", "" or "mysql://USER:PASSWORD@HOST:PORT/DATABASE". The
 * message never contains the URL, which holds the password. */
int config_parse_sql_url(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX]);

/* Makes the top-level key `name` an application's section: the loader keeps its object as it is in
 * cfg->app_json instead of rejecting it, and the app validates it (lib/app/app.c). Start-up only, main
 * thread. Returns 0, or -1 with why set to a phrase ("is one of apiary's own config keys") when the
 * name is empty, holds a '.', is one of apiary's own keys, or there are too many. */
#define CONFIG_MAX_APP_SECTIONS 8
int config_register_section(const char *name, const char **why);
/* Drops what a loaded config owns beyond its own struct (app_json). */
void config_release(apiary_config *cfg);

/* Parses "HOST:PORT", "[v6]:PORT" into the listen fields. Returns 0, or -1 with a message. */
int config_parse_listen(apiary_config *cfg, const char *value, char err[CONFIG_ERROR_MAX]);

#endif
