/* router: maps (method, path) to a handler. Patterns are literal segments and "{name}" parameters
 * ("/v1/kv/{key}"); a parameter matches exactly one non-empty segment. A last segment "{name...}" is
 * a tail: it matches the rest of the path, one or more segments, slashes included ("/static/{path...}"
 * takes "/static/css/a.css" with path "css/a.css", and "/static/" with path ""); any route without a
 * tail that matches wins over one with, and of two tails the longer pattern wins. Matching runs on the raw
 * (still percent-encoded) path so that "%2F" inside a parameter can never split it into two segments;
 * the caller decodes the parameter values it gets back. Built once at start-up, then read-only, so
 * every loop thread may match concurrently without locks. Ownership: router_new's router is its
 * creator's (router_free at exit; apps never hold one: apiary_app_route fills the app's); a match's
 * parameter values point into the path that was matched and live as long as it. */
#ifndef APIARY_ROUTER_H
#define APIARY_ROUTER_H

#include <stddef.h>

#include "http_method.h"
#include "schema.h"

typedef struct http_request http_request;

#define ROUTER_MAX_PARAMS 8
#define ROUTER_MAX_SEGMENTS 32

/* A handler answers with one of the http_respond_* helpers, now or later on the same loop. */
typedef void (*http_handler_fn)(http_request *req);

typedef struct router router;

typedef struct route_param {
    const char *name;  /* the name in the pattern, without braces; owned by the router */
    const char *value; /* points into the matched path, not NUL-terminated, still percent-encoded */
    size_t value_len;
} route_param;

typedef enum router_status {
    ROUTER_FOUND,
    ROUTER_METHOD_NOT_ALLOWED, /* the path matches a route, but not for this method */
    ROUTER_NOT_FOUND,
} router_status;

/* What a route declares about the requests it takes, so the engine can refuse the rest from the head
 * alone, before reading a body (and answer an Expect: 100-continue at once instead of after it). */
enum {
    ROUTE_BODY_JSON = 1u << 0, /* a body must be application/json: any other media type is 415 */
    ROUTE_CORO = 1u << 1,      /* the handler runs as a coroutine and may async_await (async.h) */
    /* the handler runs once the head is complete and reads the body as it arrives (http_body_read,
     * stream.h) instead of finding it buffered in req->body */
    ROUTE_BODY_STREAM = 1u << 2,
    ROUTE_NO_COMPRESS = 1u << 3, /* its answers are never content-coded (docs/compression.md) */
};

/* What a route declares about its input (docs/schemas.md): its parameters, its JSON body, and the
 * struct they bind into. The engine validates a request against it before the handler runs; an invalid
 * request gets 422 problem+json listing every violation ("errors"), a malformed body 400, and the
 * handler reads the bound values with http_request_input. Static data, as the schemas it points to.
 *
 *     static const route_schema items_list_schema = {
 *         ROUTE_INPUT(items_list_in, .limit = 20),
 *         .query = (const schema_member[]){
 *             SCHEMA_OPTIONAL(items_list_in, limit, SCHEMA_INTEGER(.min = SCHEMA_GE(1), .max = SCHEMA_LE(100))),
 *             SCHEMA_END},
 *     }; */
typedef struct route_response {
    int status;                /* 200, 201, 204, ... (errors are documented by the engine) */
    const char *description;
    const schema *body;        /* its JSON body, or NULL for none / not documented */
} route_response;

typedef struct route_schema {
    size_t input_size;           /* sizeof the struct everything binds into (0: nothing is bound) */
    const void *defaults;        /* input_size bytes the input starts as (optional values' defaults); NULL: zeroes */
    const schema_member *path;   /* path parameters by their name in the pattern; lists end with SCHEMA_END */
    const schema_member *query;  /* query parameters (others are ignored); an array takes every repetition */
    const schema_member *header; /* headers, names compared case-insensitively */
    const schema *body;          /* the JSON body (required when declared); an object binds into the input */
    size_t body_at;              /* a body of another type binds here: ROUTE_BODY_AT(T, field); 0: not bound */
    bool quiet_body_errors;      /* a malformed body's 400 gives line and column only, never the text near it */
    /* Checks that need more than the declaration, such as a bound from the running config: called
     * once every declared check passed, with the bound input; adds violations with schema_errors_add
     * (set errs->in to "query", "body", ... first). NULL: none. */
    void (*check)(http_request *req, const void *input, schema_errors *errs);
    const char *summary;         /* one line for the OpenAPI document */
    const route_response *responses; /* documented answers, ended by {0}; NULL: "200" */
    /* The largest body this route takes (Content-Length or the running chunked total; more is 413
     * naming it); 0: limits.max_body_bytes. A ROUTE_BODY_STREAM route reads its body a piece at a
     * time (stream.h), so its limit may be far above what a buffered body could hold. */
    size_t max_body_bytes;
    /* A SCHEMA_ANY body that the handler only stores or forwards: instead of a tree, its compact JSON
     * text (route_body_text, in the request's arena) binds here: ROUTE_BODY_TEXT_AT(T, field). The
     * answers to a bad body are the same; a valid one is checked and compacted in one pass (json_compact)
     * without jansson's parse. 0: the body is parsed as usual. */
    size_t body_text_at;
} route_schema;

/* What ROUTE_BODY_TEXT_AT binds: the body as compact JSON text (as json_write writes it), not
 * NUL-terminated; text is NULL when no body was sent. */
typedef struct route_body_text {
    const char *text;
    size_t len;
} route_body_text;
#define ROUTE_BODY_TEXT_AT(T, field) offsetof(T, field) + 1

/* Where a body that is not an object binds (an array's list, any value's const json_t *). */
#define ROUTE_BODY_AT(T, field) offsetof(T, field) + 1

/* The input struct T of a route_schema, with its defaults as designated initializers. */
#define ROUTE_INPUT(T, ...) .input_size = sizeof(T), .defaults = &(const T){__VA_ARGS__}

typedef struct route_match {
    http_handler_fn handler;
    unsigned flags;            /* ROUTE_* of the matched route */
    const route_schema *schema; /* NULL when the route declares none */
    const char *name;          /* the route's name, for logs and metrics ("GET /v1/kv/{key}") */
    unsigned route_id;         /* 0..router_route_count-1: index of the route's counters */
    size_t param_count;
    route_param params[ROUTER_MAX_PARAMS];
    unsigned allowed_methods;  /* bit (1u << method) for every method the path accepts */
} route_match;

router *router_new(void);
void router_free(router *r);

/* Registers a route. The pattern must start with '/', segments are separated by single '/', a
 * parameter is a whole segment "{name}" with a non-empty [A-Za-z0-9_] name, at most ROUTER_MAX_PARAMS
 * of them. Returns 0, or -1 for a malformed pattern or a duplicate (same method and same pattern
 * shape). A GET route also answers HEAD unless a HEAD route is registered for the same pattern. */
int router_add(router *r, http_method method, const char *pattern, http_handler_fn handler);
/* router_add with ROUTE_* flags. */
int router_add_flags(router *r, http_method method, const char *pattern, http_handler_fn handler, unsigned flags);
/* router_add_flags with the route's schema (or NULL), which must outlive the router. */
int router_add_schema(router *r, http_method method, const char *pattern, http_handler_fn handler, unsigned flags,
                      const route_schema *schema);

/* Matches a raw path (no query string). Literal segments win over parameters when both could match
 * ("/v1/kv/stats" before "/v1/kv/{key}"). On ROUTER_FOUND, handler, name and params are filled; on
 * ROUTER_METHOD_NOT_ALLOWED, allowed_methods says what the path accepts (for the Allow header). */
router_status router_match(const router *r, http_method method, const char *path, size_t path_len,
                           route_match *out);

/* Routes registered so far, and the name of route `id` (NULL when out of range). A HEAD request served
 * by a GET route counts as that GET route. */
size_t router_route_count(const router *r);
const char *router_route_name(const router *r, size_t id);

/* Writes the Allow header value for a method bitmask ("GET, HEAD, POST") into buf, NUL-terminated;
 * returns its length. */
size_t router_format_allow(unsigned allowed_methods, char *buf, size_t cap);

#endif
