/* http_client: an async HTTP/1.1 client on the request's loop, with a keep-alive connection pool per
 * loop and upstream (see docs/fanout.md). Clients of apiary name an upstream, never a URL, so apiary
 * cannot be turned into an open proxy. */
#ifndef APIARY_HTTP_CLIENT_H
#define APIARY_HTTP_CLIENT_H

#define HTTP_CLIENT_UPSTREAM_NAME_MAX 32

/* One named upstream service, from the config's "upstreams" map. Read-only while loops run. */
typedef struct http_client_upstream {
    char name[HTTP_CLIENT_UPSTREAM_NAME_MAX + 1]; /* [A-Za-z0-9_-], 1..32 */
    char host[256];              /* IP literal or DNS name */
    unsigned port;
    unsigned max_connections;    /* per loop, busy + idle */
    unsigned max_idle;           /* per loop, kept for reuse */
    unsigned idle_timeout_ms;    /* an idle pooled connection is closed after this */
    unsigned connect_timeout_ms;
    unsigned timeout_ms;         /* whole request, connect included */
    unsigned retries;            /* extra attempts for idempotent requests (0 = off) */
    unsigned max_response_bytes; /* larger answers fail the call */
} http_client_upstream;

#endif
