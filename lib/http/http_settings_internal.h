/* http_settings: the limits and timeouts the HTTP engine enforces on every connection. The server
 * fills it from the config file; lib/ never reads files itself. Read-only while loops run. */
#ifndef APIARY_HTTP_SETTINGS_H
#define APIARY_HTTP_SETTINGS_H

#include <stdbool.h>
#include <stddef.h>

#include "http_trust_internal.h"
#include "ratelimit_internal.h"

#define HTTP_SETTINGS_CODINGS 2 /* the content codings apiary has: gzip and br */

typedef struct http_settings {
    /* limits */
    size_t max_url_bytes;        /* request target longer than this: 414 */
    size_t max_header_bytes;     /* request line + header block larger than this: 431 */
    size_t max_headers;          /* more header fields than this: 431 */
    size_t max_body_bytes;       /* body (Content-Length or running chunked total) larger: 413 */
    size_t json_max_depth;       /* a JSON body nesting arrays/objects deeper: 413 (http_request_json) */
    size_t json_max_values;      /* a JSON body with more values: 413 (http_request_json) */
    size_t max_connections;      /* per loop; at the cap the loop stops accepting until one closes */
    size_t output_buffer_bytes;  /* stop parsing pipelined requests while more than this is unsent */
    size_t max_async_per_loop;   /* requests awaiting async work per loop; above it: 503 + Retry-After */
    size_t max_background_per_loop; /* background tasks running per loop; above it they are refused */
    /* timeouts, milliseconds */
    unsigned header_timeout_ms;    /* first byte of a request to the end of its headers: else 408 */
    unsigned body_timeout_ms;      /* end of headers to the end of the body: else 408 */
    unsigned keepalive_timeout_ms; /* idle between requests: closed silently */
    unsigned write_timeout_ms;     /* no write progress while output is pending: closed */
    unsigned linger_timeout_ms;    /* after an error answer, how long unread input is drained */
    unsigned request_timeout_ms;   /* dispatch to answer (handlers may lower it): else 504 */
    unsigned sse_heartbeat_ms;     /* an event stream idle this long gets a comment line; 0 = none */
    unsigned stream_idle_timeout_ms; /* a streamed answer whose producer wrote nothing this long is
                                      * cut off (connection closed, producer cancelled); 0 = off */
    /* WebSocket (ws.c, docs/streaming.md) */
    size_t ws_max_message_bytes;   /* a received message (all its fragments) larger: close 1009 */
    size_t ws_send_queue_bytes;    /* unsent bytes a connection may hold; a send past it: close 1008 */
    unsigned ws_ping_interval_ms;  /* a ping after this long without input; 0: no heartbeat */
    unsigned ws_ping_timeout_ms;   /* no input this long after a ping: the peer is dead, closed */
    unsigned ws_close_timeout_ms;  /* closing handshake (and a slow reader's 1008) bounded by this */
    /* diagnostics */
    unsigned slow_callback_ms;     /* warn when one callback blocks its loop longer; 0 = off */
    /* a client's end of input (FIN) with a request in flight: false (the default, config "cancel")
     * cancels it like a reset, true ("answer") answers it, but its place at max_async_per_loop goes
     * to another request that needs it (the oldest half-closed request is cancelled then) */
    bool half_close_answer;
    /* behind a proxy */
    const http_cidr *trusted_proxies; /* peers whose forwarding header is believed */
    size_t trusted_proxy_count;
    bool trust_unix_socket;           /* peers on the Unix socket are trusted proxies too ("unix") */
    bool proxy_header_forwarded;      /* read Forwarded (RFC 7239) instead of X-Forwarded-For */
    ratelimit *rate_limiter;          /* per-client token buckets, or NULL when off */
    const char *rate_limit_prefix;    /* only paths starting with this are limited ("/v1/") */
    /* content coding of answers (docs/compression.md) */
    bool compress_enabled;          /* false: every answer goes as identity, with no Vary */
    bool compress_brotli;           /* offer br as well as gzip */
    unsigned compress_gzip_level;   /* gzip level 1..9 (libdeflate's, on zlib's scale) */
    unsigned compress_brotli_level; /* Brotli quality 0..11 */
    size_t compress_min_bytes;      /* bodies below this go as identity */
    size_t compress_pool_bytes;     /* bodies from this size up are compressed on the worker pool */
    /* compression.prefer: the codings (HTTP_CODING_* of http_compress_internal.h), most preferred
     * first, for when Accept-Encoding gives them the same q; identity always comes after them */
    unsigned char compress_prefer[HTTP_SETTINGS_CODINGS];
    struct pool *compress_pool;     /* that pool (the app's workers), or NULL: every body on the loop */
    /* what these settings belong to (the app runtime's config generation), or NULL: a request takes
     * it at dispatch and keeps it in effect for all its code (async_context_current) */
    const void *context;
} http_settings;

/* Fills the defaults documented in docs/config.md. */
void http_settings_defaults(http_settings *s);

#endif
