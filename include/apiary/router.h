/* router: maps (method, path) to a handler. Patterns are literal segments and "{name}" parameters
 * ("/v1/kv/{key}"); a parameter matches exactly one non-empty segment. Matching runs on the raw
 * (still percent-encoded) path so that "%2F" inside a parameter can never split it into two segments;
 * the caller decodes the parameter values it gets back. Built once at start-up, then read-only, so
 * every loop thread may match concurrently without locks. */
#ifndef APIARY_ROUTER_H
#define APIARY_ROUTER_H

#include <stddef.h>

#include "http_method.h"

#define ROUTER_MAX_PARAMS 8
#define ROUTER_MAX_SEGMENTS 32

typedef struct http_request http_request;
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
};

typedef struct route_match {
    http_handler_fn handler;
    unsigned flags;            /* ROUTE_* of the matched route */
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
