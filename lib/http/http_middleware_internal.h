/* http_middleware: the engine's side of middleware.h. The app runtime (lib/app/app.c) builds one
 * chain from the app's registrations; every loop reads it (read-only once loops run), dispatch runs the
 * before hooks and every answer's head runs the after hooks (lib/http/http_conn.c). */
#ifndef APIARY_HTTP_MIDDLEWARE_H
#define APIARY_HTTP_MIDDLEWARE_H

#include <stdbool.h>
#include <stddef.h>

#include "middleware.h"

typedef struct http_middleware_hook {
    const char *prefix; /* covers paths as middleware.h says; "" or "/" for all */
    size_t prefix_len;  /* without a trailing '/' */
    http_before_fn before; /* exactly one of before, after */
    http_after_fn after;
    void *arg;
} http_middleware_hook;

typedef struct http_middleware {
    const http_middleware_hook *hooks; /* in registration order */
    size_t count;
} http_middleware;

/* The routes flagged so run no middleware (the built-ins). An apiary bit, not one of ROUTE_APP's. */
#define ROUTE_NO_MIDDLEWARE (1u << 15)

/* True when `prefix` (prefix_len bytes, no trailing '/') covers `path`. */
bool http_middleware_covers(const char *prefix, size_t prefix_len, const char *path);

#endif
