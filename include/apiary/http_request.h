/* http_request: what a handler sees of one request, and how it answers.
 *
 * Lifetime: a request belongs to its connection and is valid from the moment its handler is called
 * until the handler answers (any http_respond_* call) or, if the client goes away first, until the
 * cancel callback registered with http_request_on_cancel returns. Every pointer below points into
 * the connection's buffers or the request's arena and dies with the request; copy what must outlive
 * it. All calls must be made on the loop thread that owns the request (http_request_loop).
 *
 * Answering later: a handler may return without answering and answer from a timer or from a
 * message posted to its loop (http_loop_post); the connection keeps reading (for disconnects) but
 * parses no further pipelined request until this one is answered, so responses stay in order. A
 * handler registered with ROUTE_CORO may instead wait inline with async_await (async.h). */
#ifndef APIARY_HTTP_REQUEST_H
#define APIARY_HTTP_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "arena.h"
#include "async.h"
#include "http_method.h"
#include "json_writer.h"
#include "router.h"
#include "uri.h"

typedef struct http_conn http_conn;
typedef struct http_loop http_loop;

typedef struct http_header {
    const char *name; /* as sent, not NUL-terminated; compare with http_request_header */
    size_t name_len;
    const char *value;
    size_t value_len;
} http_header;

typedef void (*http_cancel_fn)(http_request *req, void *arg);

struct http_request {
    /* --- read-only for handlers --- */
    http_method method;       /* HEAD requests run the GET handler; the engine drops the body */
    unsigned http_minor;      /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
    const char *path;         /* percent-decoded, NUL-terminated (arena) */
    const char *raw_target;   /* the request target as sent, not NUL-terminated */
    size_t raw_target_len;
    const char *route_name;   /* "GET /v1/kv/{key}", for logs and metrics */
    const char *request_id;   /* X-Request-Id: the client's when well-formed, else generated; sent back */
    route_param *params;      /* path parameters, values percent-decoded and NUL-terminated */
    size_t param_count;
    uri_param *query;         /* query pairs, percent-decoded and NUL-terminated */
    size_t query_count;
    http_header *headers;
    size_t header_count;
    const char *body;         /* NULL when the request had no body */
    size_t body_len;
    arena arena;              /* request-scoped memory, freed when the request ends */
    void *user;               /* free for the handler: its per-request state */

    /* --- private to the engine --- */
    http_conn *_conn;
    json_t *_json;            /* parsed body, cached by http_request_json */
    const void *_input;       /* what the route's schema bound (http_request_input) */
    http_cancel_fn _cancel_fn;
    void *_cancel_arg;
    char *_extra_headers;     /* "Name: value\r\n"..., arena */
    size_t _extra_headers_len;
    async_scope *_scope;      /* created by http_request_async, freed when the request ends */
    json_writer *_writer;     /* http_json_writer's, arena; its text's block is released when the request ends */
    bool _answered;
};

/* The client's address as text ("127.0.0.1", "::1"; "local" for a Unix socket) into buf. */
const char *http_request_client(const http_request *req, char *buf, size_t len);

/* Header lookup, case-insensitive; returns a NUL-terminated copy in the arena or NULL. */
const char *http_request_header(http_request *req, const char *name);
/* Query lookup by name (first match) or NULL. */
const char *http_request_query(const http_request *req, const char *name);
/* Path parameter by name or NULL. */
const char *http_request_param(const http_request *req, const char *name);
/* True when the Content-Type's media type is `media` ("application/json"), parameters ignored. */
bool http_request_content_type_is(http_request *req, const char *media);

/* Parses the body as JSON — any RFC 8259 value, scalars included, U+0000 inside strings accepted
 * (use json_string_length; json_string_value stops at the first NUL), duplicate member names refused,
 * integers beyond int64 and reals beyond double refused — once and caches it. Its nodes live in the
 * request's arena (lib/json/json_arena.h, private) and die with the request: hold no reference past the answer
 * (answering with the body itself, http_respond_json(req, 200, json_incref(body)), is fine: the answer
 * drops its reference before the request ends), and json_deep_copy or write out as text what must
 * outlive it; the request keeps the reference (do not decref). On a parse error returns NULL
 * and, if err is not NULL, fills it with jansson's line and column. An empty body is an error ("empty
 * body"). A body that nests deeper than limits.json_max_depth or holds more than
 * limits.json_max_values values is not parsed at all: NULL, err->line is HTTP_JSON_TOO_LARGE and
 * err->text names the limit, for a 413 answer. */
#define HTTP_JSON_TOO_LARGE (-1)
json_t *http_request_json(http_request *req, json_error_t *err);

/* The values the route's schema (router.h: route_schema, docs/schemas.md) validated and bound before
 * the handler ran: a pointer to the route's input struct, in the request's arena; NULL for a route
 * without a schema. */
static inline const void *http_request_input(const http_request *req) { return req->_input; }

http_loop *http_request_loop(const http_request *req);

/* Registers the callback run if the request ends before it is answered (client closed the
 * connection, the deadline passed: before the 504 is sent, server forced shutdown), for work outside
 * the async toolkit (an event of your own): toolkit operations of the request's scope need none, the
 * scope cancels them. It runs before the scope ends; an answer attempted inside it is dropped; after it
 * returns the request is gone: the callback must stop everything that would answer it. One callback
 * per request; a later call replaces it. */
void http_request_on_cancel(http_request *req, http_cancel_fn fn, void *arg);

/* Starts asynchronous work for this request and returns its scope (see async.h): the operations
 * started in it are cancelled and freed when the request ends, whichever way it ends (answered, client
 * gone, deadline passed, server stopping). The first call counts the request against the loop's cap
 * of in-flight asynchronous requests (limits.max_async_per_loop); at the cap it answers 503 with
 * Retry-After itself and returns NULL, and the handler must simply return. Later calls return the
 * same scope. A ROUTE_CORO handler's request has its scope before the handler runs (at the cap the
 * engine answers 503 instead of running it), so there it never returns NULL. */
async_scope *http_request_async(http_request *req);

/* Sets the request's deadline to `ms` from now if that is sooner than the current one (the default is
 * timeouts.request_ms from dispatch). When it passes before the answer, the request's scope is
 * cancelled and the client gets 504 problem+json. */
void http_request_set_deadline(http_request *req, unsigned ms);

/* Adds a response header ("Retry-After", "5"). Must be called before the http_respond_* call. The
 * engine itself writes Date, Server, Content-Type, Content-Length and Connection. */
void http_response_header(http_request *req, const char *name, const char *value);

/* The answers. Each ends the handler's ownership of the request (see Lifetime above). */

/* Serializes `body` compactly; takes the reference (decrefs it). A NULL body (a failed json_pack)
 * answers 500. */
void http_respond_json(http_request *req, int status, json_t *body);
/* The request's JSON writer (json_writer.h), empty: write the answer into it value by value, with no
 * jansson tree, then send it with http_respond_json_writer. Its text lives in a block of the loop's
 * buffer cache until the request ends (answered or not); do not free it. A second call empties it. */
json_writer *http_json_writer(http_request *req);
/* Answers `status` with the writer's text as application/json (any writer: the request's or one of
 * json_writer_new, which stays the caller's). A writer that failed or holds no complete value is a
 * 500 problem instead, its error logged with the route, as http_respond_json does for a tree it cannot
 * write. */
void http_respond_json_writer(http_request *req, int status, const json_writer *w);
/* Like http_respond_json, with the node `at` of body (by identity; body keeps its reference) written
 * as `text`, `len` bytes of valid compact JSON the caller already holds (a stored value), so it is
 * not parsed again. `body` must not be NULL. */
void http_respond_json_spliced(http_request *req, int status, json_t *body, const json_t *at, const char *text,
                               size_t len);
/* Like http_respond_json_spliced with several nodes replaced: `splices` is a list (linked by next) of
 * nodes of body and the valid JSON text each is written as. struct json_write_splice is declared in
 * lib/json/json_write.h, which is not installed: this call is for the engine's own handlers
 * (/v1/fanout), and an app splices one node with http_respond_json_spliced above. */
struct json_write_splice;
void http_respond_json_splices(http_request *req, int status, json_t *body, const struct json_write_splice *splices);
/* Sends bytes as they are with the given Content-Type; NULL sends none, as a body-less answer wants:
 * http_respond_raw(req, 204, NULL, NULL, 0) is 204 No Content. */
void http_respond_raw(http_request *req, int status, const char *content_type, const void *body, size_t len);
/* RFC 9457 problem+json: {"type":"about:blank","title":<reason phrase>,"status":...,"detail":...}.
 * `extra`, if not NULL, is merged into the object as extension members (taken: decref'd). */
void http_respond_problem(http_request *req, int status, json_t *extra, const char *detail_fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* 201 Created with `body` (taken, as http_respond_json) and a Location header formatted from
 * location_fmt ("/v1/items/%ld"); 500 when the URL would pass 1 KiB. */
void http_respond_created(http_request *req, json_t *body, const char *location_fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* The same with the answer written into a JSON writer (http_json_writer's, or any: it stays the
 * caller's), sent as http_respond_json_writer does (a writer without a complete value is a 500):
 *
 *     json_writer *w = http_json_writer(req);
 *     ...write the new resource...
 *     http_respond_created_writer(req, w, "/notes/%lld", id);
 */
void http_respond_created_writer(http_request *req, const json_writer *w, const char *location_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- an operation that did not succeed, answered ------------------------------------------------ */

/* When `op` did not complete OK, answers the problem+json that says so, "WHAT: ERROR" as its detail
 * (e.g. "the catalog did not answer: timeout"), and returns true; returns false (and answers nothing)
 * when it did. The status is the one a client can act on:
 *   ASYNC_TIMEOUT                  504 (a dependency did not answer in time)
 *   ASYNC_CANCELLED                503 with Retry-After: 1 (the request is gone, then nothing is sent,
 *                                  or the server is stopping)
 *   ASYNC_FAILED, POOL_ERROR_FULL  503 with Retry-After: 1 (the worker pool's queue is full)
 *   ASYNC_FAILED, anything else    failed_status: 502 for a call to an upstream (0 means 502), 500
 *                                  for the app's own work (a pool job that failed)
 * SQL's errors mean other things (busy, a refused query): sql_respond_failed / sql_await_ok (sql.h)
 * answer those. For other errors with meanings of their own, answer them yourself first. */
bool http_respond_failed(http_request *req, const async_op *op, int failed_status, const char *what);

/* In a coroutine handler (ROUTE_CORO): awaits `op` and returns it when it completed OK; otherwise
 * answers as http_respond_failed does and returns NULL, so the handler just returns:
 *
 *     async_op *op = http_await_ok(req, http_client_get(scope, loop, up, "/skus/%s", sku), 502,
 *                                  "the catalog did not answer");
 *     if (!op)
 *         return;
 *     const http_client_response *r = op->value;
 *
 * (FastAPI's HTTPException, raised where the await failed.) */
async_op *http_await_ok(http_request *req, async_op *op, int failed_status, const char *what);

#endif
