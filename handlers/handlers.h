/* handlers: the apiary binary's own endpoints (the demonstration set), an app built on the library
 * like any other: handlers_add_routes puts every route of the one table in routes.c into the app, so
 * the API surface is readable in one place. /healthz, /readyz and /metrics are the library's (health.c,
 * metrics.c are compiled into it). */
#ifndef APIARY_HANDLERS_H
#define APIARY_HANDLERS_H

#include "apiary.h"
#include "sql.h"

/* What the endpoints take from the config; read-only once the loops run. */
typedef struct handlers_settings {
    unsigned max_sleep_ms;          /* /v1/sleep and /v1/aggregate delays: 0..this */
    unsigned max_aggregate_sources; /* /v1/aggregate: at most this many sources */
    pool *pool;                     /* CPU-heavy work (password hashing, primes) runs here */
    unsigned password_opslimit;     /* Argon2id passes */
    size_t password_memlimit_bytes; /* Argon2id memory per hash */
    unsigned password_max_bytes;    /* longest password accepted */
    unsigned primes_max_n;          /* /v1/primes: largest n */
    const http_client_upstream *upstreams; /* the named upstreams /v1/fanout may call */
    unsigned upstream_count;
    unsigned fanout_max_requests;   /* /v1/fanout: most calls in one request */
    size_t json_max_depth;          /* limits.json_max_depth: also bounds what upstreams answer */
    size_t json_max_values;         /* limits.json_max_values: likewise */
    bool kv_use_redis;              /* /v1/kv backend: false = the embedded memory store */
    unsigned kv_max_key_bytes;
    unsigned kv_max_value_bytes;
    unsigned kv_max_entries;        /* memory backend, whole server */
    size_t kv_max_memory_bytes;     /* memory backend: key and value bytes held, whole server */
    const redis_settings *redis;
} handlers_settings;

/* The config's limits that bound declared parameters (SCHEMA_LE_VAR), kept current by the start and
 * reload hooks; a check reads the value of the moment. */
extern _Atomic int64_t handlers_max_sleep_ms, handlers_primes_max_n;

/* Adds every route of the table to `app`, and the hooks that derive the settings from the config at
 * start and on each reload, and the /readyz check of the Redis backend. Returns 0, or -1 if the table
 * is inconsistent (a bug, reported in the log). */
int handlers_add_routes(apiary_app *app);
/* Replaces the settings (start, config reload); the old ones must stay alive until exit. Any thread. */
void handlers_update_settings(const handlers_settings *settings);
/* The latest settings given to handlers_update_settings. */
const handlers_settings *handlers_get_settings(void);

/* hello.c */
void hello_get(http_request *req);
/* echo.c */
void echo_post(http_request *req);
/* stream.c: streamed answers, Server-Sent Events, streamed uploads (docs/streaming.md) */
void events_get(http_request *req);
extern const route_schema events_schema;
void stream_get(http_request *req);
extern const route_schema stream_schema;
void upload_post(http_request *req);
extern const route_schema upload_schema;
/* topics.c: pub/sub over Server-Sent Events (docs/streaming.md, "Pub/sub") */
void topics_events_get(http_request *req);
extern const route_schema topics_events_schema;
void topics_publish(http_request *req);
void topics_ws_get(http_request *req);
extern const route_schema topics_ws_schema;
extern const route_schema topics_publish_schema;
/* sleep.c */
void sleep_get(http_request *req);
extern const route_schema sleep_schema;
/* Reads query parameter `name` as a decimal integer in min..max into *out. Anything else (missing,
 * signed, non-numeric, out of range) is answered 400 with "field": name, and it returns false: the
 * handler then just returns. */
bool sleep_query_ms(http_request *req, const char *name, unsigned min, unsigned max, unsigned *out);
/* aggregate.c */
void aggregate_post(http_request *req);
extern const route_schema aggregate_schema;
/* example_pair.c */
void example_pair_get(http_request *req);
/* example_pair_await.c: the same as a coroutine (ROUTE_CORO) */
void example_pair_await_get(http_request *req);
/* password.c */
/* Initialises libsodium; handlers_register fails when it returns -1. */
int password_init(void);
void password_hash_post(http_request *req);
void password_verify_post(http_request *req);
extern const route_schema password_hash_schema, password_verify_schema;
/* primes.c */
void primes_get(http_request *req);
extern const route_schema primes_schema;
/* fanout.c */
void fanout_post(http_request *req);
extern const route_schema fanout_schema;
/* kv.c: the key-value API on the configured backend (docs/kv.md) */
void kv_get(http_request *req);
void kv_put(http_request *req);
void kv_delete(http_request *req);
extern const route_schema kv_get_schema, kv_put_schema, kv_delete_schema;
/* The /readyz check (apiary_app_ready_check): with the Redis backend, 503 while this loop has no link. */
bool kv_ready(http_request *req);
/* schema.c: the startup hook that creates world and items (sql_migrate) */
int schema_startup(const apiary_context *ctx, async_scope *scope, http_loop *loop, void *arg);
/* world.c: TechEmpower's database tests (docs/sql.md) */
void world_db_get(http_request *req);
void world_db_await_get(http_request *req); /* /v1/db as a coroutine (ROUTE_CORO) */
void world_queries_get(http_request *req);
void world_updates_get(http_request *req);
/* Answers a result that is not the shape its statement asks for (sql_result_shape failed): 502, the
 * database gave an invalid answer; logs `what` (the statement) and the shape that came back. */
void sql_answer_bad_shape(http_request *req, const char *what, const sql_result *r);
/* items.c: the items resource on SQL */
void items_post(http_request *req);
void items_get(http_request *req);
void items_list(http_request *req);
void items_delete(http_request *req);

/* ws_echo.c: GET /v1/ws/echo, the WebSocket echo (websocket.h) */
void ws_echo_get(http_request *req);
extern const route_schema items_post_schema, items_get_schema, items_list_schema, items_delete_schema;

#endif
