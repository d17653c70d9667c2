/* middleware: code that runs around the handlers of a whole app or of a path prefix: authentication
 * that answers 401 before any handler runs, CORS headers and preflight answers, timing headers, request
 * tagging. Registered with apiary_app_before / apiary_app_after (apiary.h) before apiary_app_main.
 *
 * Order, for each request (docs/library.md "Middleware"):
 *   1. the engine's own checks of the message: malformed (400), limits (413, 414, 431), an unknown
 *      method (501). No middleware runs for these: there is no request to speak of.
 *   2. before hooks, in the order registered, those whose prefix covers the request's path. The first
 *      one that answers ends the chain; the handler does not run.
 *   3. the routing refusals (404, 405 with Allow, 415 for ROUTE_BODY_JSON), then the rate limit (429),
 *      then the handler (a coroutine for ROUTE_CORO).
 *   4. after hooks, in the reverse order (the first registered is outermost, as in an onion), on every
 *      answer of a request that reached step 2, whoever gave it (a before hook, the engine's 404, the
 *      handler, the 504 of a passed deadline, the 503 at the in-flight cap), just before its head is
 *      written. Not when nothing is sent (the client left).
 * The built-in /healthz, /readyz and /metrics run no middleware: probes need no token.
 *
 * A prefix covers a path when it is "" or "/" (everything), the path itself, or the path's leading
 * segments: "/v1" covers "/v1" and "/v1/items", not "/v1beta". Paths are compared percent-decoded.
 *
 * Threads: hooks run on the request's loop thread, on the loop's stack (never on a coroutine's), and
 * must not block. They see the request's settings (apiary_current() is the request's generation). */
#ifndef APIARY_MIDDLEWARE_H
#define APIARY_MIDDLEWARE_H

#include <stdbool.h>

#include "http_method.h"
#include "http_request.h"

/* Runs before the handler. Returns false to let the request go on, or true after answering it with
 * one http_respond_* call (401, 403, a preflight's 204...). It may add headers to whatever answer the
 * request gets (http_response_header), and leave values for the handler (http_request_set_value). */
typedef bool (*http_before_fn)(http_request *req, void *arg);

/* Runs when the request's answer with `status` is about to be written: it may add headers
 * (http_response_header) and read the request, and must not answer. */
typedef void (*http_after_fn)(http_request *req, int status, void *arg);

/* What the matched route declared. */
typedef struct http_route_info {
    http_method method;  /* as registered (a HEAD request served by a GET route says GET) */
    const char *pattern; /* "/v1/items/{id}" */
    unsigned flags;      /* ROUTE_* as registered, the app's own bits (ROUTE_APP) included */
} http_route_info;

/* Fills *out and returns true when the request matched a route; false (404, 405: no route was chosen). */
bool http_request_route(const http_request *req, http_route_info *out);

/* Route flags the app defines for its middleware (ROUTE_APP(0) = "public: no token needed"), beside
 * apiary's ROUTE_BODY_JSON, ROUTE_CORO: bits 16..31 are the app's, n from 0 to 15. */
#define ROUTE_APP(n) (1u << (16 + (n)))

/* A value for the rest of the request, by name (the authenticated principal, a timer's start): valid
 * until the request ends, like its arena. A later call with the same name replaces it. */
void http_request_set_value(http_request *req, const char *name, void *value);
/* The value set under `name`, or NULL. */
void *http_request_value(const http_request *req, const char *name);

#endif
