/* http_client: an async HTTP/1.1 client on the request's loop, with a keep-alive connection pool per
 * loop and upstream (see docs/fanout.md), over plain TCP or TLS (https://, OpenSSL, certificate and
 * host name verified against the system CA store or the upstream's ca_file). Calls name a configured
 * upstream and a path; an absolute URL is accepted only for an origin on the configured allow-list
 * (http_client_fetch), so nothing a client of apiary sends can point it at another host.
 *
 * A call is a toolkit operation: http_client_request() returns an async_op of the caller's scope that
 * completes OK with an http_client_response, or FAILED / TIMEOUT with one of the short error strings
 * below. The scope owns the operation, the response and the request bytes; the loop's client owns
 * every connection. Ending the scope (client gone, deadline, an outer async_wait_for) cancels the
 * call: a connection that has started a request it can no longer finish is closed, one that has not
 * goes back to the pool, and nothing ever touches the scope's memory afterwards.
 *
 * Threads: everything runs on the loop thread of the scope, except http_client_stats_read. */
#ifndef APIARY_HTTP_CLIENT_H
#define APIARY_HTTP_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "async.h"

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
    unsigned max_response_bytes; /* larger answers fail the call (a call may ask for another bound) */
    bool tls;                    /* https://: TLS, certificate and host name verified */
    char ca_file[256];           /* tls: PEM file of the CAs to trust; "" = the system CA store */
} http_client_upstream;

/* An upstream's defaults, for the fields the config (or an app building one in code) leaves out.
 * max_idle follows max_connections: it defaults to the smaller of HTTP_CLIENT_MAX_IDLE_DEFAULT and
 * max_connections, so a user who only lowers max_connections is never told the default is too big. */
#define HTTP_CLIENT_MAX_CONNECTIONS_DEFAULT 64
#define HTTP_CLIENT_MAX_IDLE_DEFAULT 16
#define HTTP_CLIENT_UNSET ((unsigned)-1) /* "not given": http_client_upstream_finish picks the default */

/* Fills every tunable field with its default; max_idle is HTTP_CLIENT_UNSET until
 * http_client_upstream_finish. name, host and port are left empty. */
void http_client_upstream_defaults(http_client_upstream *u);
/* Resolves the defaults that depend on other fields (max_idle) and checks the pairs. Returns 0, or
 * -1 with a message naming both keys in err ("max_idle (32) must not exceed max_connections (8)")
 * when the values given conflict. */
int http_client_upstream_finish(http_client_upstream *u, char *err, size_t err_cap);

/* The longest request target a call may send. */
#define HTTP_CLIENT_PATH_MAX 2048
/* The most a call may ask for as its own response body bound (the config's max_response_bytes max). */
#define HTTP_CLIENT_RESPONSE_MAX 67108864u
/* Request header fields a call may add, and the longest value. */
#define HTTP_CLIENT_HEADERS_MAX 32
#define HTTP_CLIENT_HEADER_VALUE_MAX 8192

typedef struct http_loop http_loop;
struct event_base;

/* The client of one loop: its connection pools (one per upstream) and its counters. */
typedef struct http_client http_client;

/* Why a call failed. The operation's error string is http_client_error_name(kind); the counters are
 * indexed by kind. Compare an op->error with strcmp (strcmp(op->error, "url_not_allowed") == 0), not
 * by pointer: the operation a call returns is an async_wait_for around it (the upstream's timeout_ms),
 * whose deadline passing is status ASYNC_TIMEOUT with async_wait_for's own "timeout" string. */
typedef enum http_client_error {
    HTTP_CLIENT_ERR_TIMEOUT,            /* "timeout": the upstream's timeout_ms passed (ASYNC_TIMEOUT) */
    HTTP_CLIENT_ERR_DNS_FAILED,         /* "dns_failed": the host name did not resolve */
    HTTP_CLIENT_ERR_CONNECT_FAILED,     /* "connect_failed": refused, unreachable, no descriptor */
    HTTP_CLIENT_ERR_CONNECT_TIMEOUT,    /* "connect_timeout": connect_timeout_ms passed (DNS included) */
    HTTP_CLIENT_ERR_CONNECTION_RESET,   /* "connection_reset": reset or closed before the response ended */
    HTTP_CLIENT_ERR_MALFORMED_RESPONSE, /* "malformed_response": not HTTP/1.x as llhttp reads it */
    HTTP_CLIENT_ERR_RESPONSE_TOO_LARGE, /* "response_too_large": body over max_response_bytes, or a huge head */
    HTTP_CLIENT_ERR_INVALID_REQUEST,    /* "invalid_request": bad method, path or header; nothing was sent */
    HTTP_CLIENT_ERR_TLS_FAILED,         /* "tls_failed": the TLS handshake failed (not a certificate matter) */
    HTTP_CLIENT_ERR_CERT_REJECTED,      /* "certificate_rejected": unknown CA, wrong host name, expired... */
    HTTP_CLIENT_ERR_URL_NOT_ALLOWED,    /* "url_not_allowed": a URL whose origin is not on the allow-list */
    HTTP_CLIENT_ERR_COUNT,
} http_client_error;

/* The stable short name of an error kind ("timeout", "connect_failed", ...). */
const char *http_client_error_name(http_client_error kind);

/* What a successful call completes with (op->value). Lives in the caller's scope memory. Any status
 * the upstream sent is a success here: a 500 is a response, not a failure of the call. */
typedef struct http_client_header {
    const char *name;
    const char *value;
} http_client_header;

typedef struct http_client_response {
    int status;
    const char *body;   /* body_len bytes followed by a NUL (the body itself may contain NULs) */
    size_t body_len;
    const http_client_header *headers; /* the response's header fields as sent (trailing blanks cut) */
    size_t header_count;
} http_client_response;

/* The value of the response's first header field called `name` (compared case-insensitively, as
 * HTTP field names are), or NULL. Lives in the call's scope memory, like the response. */
const char *http_client_response_header(const http_client_response *resp, const char *name);

/* The body parsed as JSON (any value; a repeated member name or a raw NUL byte refuses it), or NULL
 * when it is not JSON or nests deeper than max_depth / holds more than max_values values. The limits
 * are measured before anything is parsed (lib/json/json_limits.h, private), so a hostile answer ("[{},{},...]" up to
 * max_response_bytes) costs about a millisecond per MiB rather than a tree of ~230 bytes per value
 * built on the loop; pass the loop's own (limits.json_max_depth / json_max_values) or tighter ones
 * for a known document. The caller owns the result (json_decref). */
struct json_t;
struct json_t *http_client_response_json(const http_client_response *resp, size_t max_depth, size_t max_values);

/* Counters of one loop's client. The metrics endpoint sums them over the loops. */
typedef struct http_client_stats {
    uint64_t requests;            /* calls started */
    uint64_t responses;           /* calls that completed with a response (any status) */
    uint64_t errors[HTTP_CLIENT_ERR_COUNT]; /* calls that failed, by kind */
    uint64_t cancelled;           /* calls their caller abandoned (client gone, deadline, outer timeout) */
    uint64_t retries;             /* extra attempts made because of the upstream's `retries` */
    uint64_t stale_retries;       /* calls moved to a fresh connection after a pooled one was found dead */
    uint64_t connections_opened;  /* connection attempts started */
    uint64_t connections_reused;  /* calls that got an idle pooled connection */
    uint64_t connections_open;    /* gauge: connections that exist now, in any state */
    uint64_t idle_closed;         /* idle pooled connections the upstream closed */
    uint64_t idle_expired;        /* idle pooled connections closed after idle_timeout_ms */
    uint64_t pool_waits;          /* calls that queued: max_connections in use, or others waiting */
} http_client_stats;

/* A client on `base` with no pools yet. Loop thread only; free it with http_client_free. */
http_client *http_client_new(struct event_base *base);
/* Closes every connection and frees the client. Every scope that called through it must have ended
 * first; a call still pending then fails with "shutdown" (never counted). May run the base briefly
 * (non-blocking) to let cancelled DNS look-ups unwind. */
void http_client_free(http_client *client);
/* The loop's client, created on first use and freed with the loop (HTTP_LOOP_SLOT_HTTP_CLIENT). */
http_client *http_client_for_loop(http_loop *loop);

/* True when `path` (len bytes) may be sent as a request target: it starts with '/', is at most
 * HTTP_CLIENT_PATH_MAX bytes, and has only visible ASCII other than '#' (no space, CR, LF, control
 * or non-ASCII byte), so it can neither split the request line nor name another host. "//x/y" is a
 * valid path here: it goes to the configured upstream as it is. */
bool http_client_path_valid(const char *path, size_t len);

/* What a call may add to its request; every member may be left zero. Copied at the call. */
typedef struct http_client_options {
    const http_client_header *headers; /* extra request header fields (Authorization, Accept, ...) */
    size_t header_count;               /* at most HTTP_CLIENT_HEADERS_MAX */
    const char *body;                  /* body_len bytes sent as the request body */
    size_t body_len;
    const char *content_type;          /* of the body; NULL = "application/json" */
    unsigned max_response_bytes;       /* this call's body bound; 0 = the upstream's (at most
                                        * HTTP_CLIENT_RESPONSE_MAX) */
} http_client_options;

/* Starts a call to `up` on `client` and returns its operation in `scope` (loop thread):
 * `method` is an upper-case token ("GET"), `path` must pass http_client_path_valid, `body` (may be
 * NULL when body_len is 0) is sent with Content-Type: application/json. The bytes are copied into the
 * scope at once, so the caller's buffers may go right after the call.
 *
 * Completes OK with value = http_client_response * (scope memory), ASYNC_TIMEOUT ("timeout") after
 * up->timeout_ms, or ASYNC_FAILED with http_client_error_name() of the cause (an invalid request
 * fails at once, before anything is sent; its continuation still runs from the loop). It never
 * completes after its scope ended or it was cancelled: cancel it (or wrap it in async_wait_for /
 * async_gather, which may cancel it) freely. Idempotent methods (GET, HEAD, PUT, DELETE, OPTIONS,
 * TRACE) are retried up to up->retries times after connect, DNS and reset failures; any
 * call that finds its pooled connection dead before a response byte arrived is moved once to a fresh
 * connection (for other methods only when the send itself failed). `up` must outlive the client: the
 * pool is keyed by its address. A NULL `up` (apiary_upstream of a name the config does not have) fails
 * the call with "invalid_request", nothing sent. */
async_op *http_client_start(async_scope *scope, http_client *client, const http_client_upstream *up,
                            const char *method, const char *path, const char *body, size_t body_len);

/* http_client_start on the loop's client: what handlers use. */
async_op *http_client_request(async_scope *scope, http_loop *loop, const http_client_upstream *up,
                              const char *method, const char *path, const char *body, size_t body_len);

/* A GET of the path formatted from path_fmt ("/skus/%s") on the loop's client: http_client_request
 * otherwise. The caller formats only what is safe in a path (values checked by a schema pattern, or
 * escaped); a path longer than HTTP_CLIENT_PATH_MAX fails the call with "invalid_request". */
async_op *http_client_get(async_scope *scope, http_loop *loop, const http_client_upstream *up, const char *path_fmt,
                          ...) __attribute__((format(printf, 4, 5)));

/* http_client_start with options (opts may be NULL): request header fields, a body of any type, a
 * response bound of its own. A header field name must be a token and its value visible ASCII, spaces
 * and tabs (no CR, LF or other control byte, at most HTTP_CLIENT_HEADER_VALUE_MAX bytes); Host,
 * Content-Length, Transfer-Encoding, Connection, Keep-Alive, TE, Upgrade and Trailer are the client's
 * own (framing and pooling) and refused. A User-Agent or Content-Type given replaces apiary's. Anything
 * refused fails the call with "invalid_request" before a byte is sent. */
async_op *http_client_send(async_scope *scope, http_client *client, const http_client_upstream *up,
                         const char *method, const char *path, const http_client_options *opts);
/* http_client_send on the loop's client. */
async_op *http_client_do(async_scope *scope, http_loop *loop, const http_client_upstream *up,
                         const char *method, const char *path, const http_client_options *opts);

/* ---- absolute URLs, for allowed origins only ---------------------------------------------------- */

/* The origins absolute URLs may name: each entry is an upstream (scheme, host, port, and its limits,
 * timeouts and ca_file), its name unused. Read-only once published. */
typedef struct http_client_allowlist {
    const http_client_upstream *origins;
    unsigned count;
} http_client_allowlist;

/* Publishes the process's allow-list (any thread; the app runtime does it at start and on reload from
 * the config's http_client.allowed_origins). `list` and its origins must stay valid until exit or the
 * next call; NULL allows nothing (the default). Pools are keyed by origin entry, as by upstream. */
void http_client_allow(const http_client_allowlist *list);
/* The list http_client_fetch uses now (NULL: none), e.g. to ask http_client_allowed before calling. */
const http_client_allowlist *http_client_allowed_list(void);

/* Calls an absolute URL "http[s]://HOST[:PORT]/PATH": the call goes to the allow-list entry with the
 * same scheme, host (case-insensitive) and port (80/443 when not given), with that entry's limits, and
 * otherwise fails with "url_not_allowed" before anything is resolved or sent. The URL may have no user
 * information, fragment or anything but a valid path (http_client_path_valid) after the authority. Never
 * pass a URL a client of apiary chose without checking it is meant to reach that origin. */
async_op *http_client_fetch(async_scope *scope, http_loop *loop, const char *method, const char *url,
                            const http_client_options *opts);
/* http_client_fetch on a given client, with the allow-list given (tests, or an app's own list). */
async_op *http_client_fetch_on(async_scope *scope, http_client *client, const http_client_allowlist *list,
                               const char *method, const char *url, const http_client_options *opts);
/* The entry of `list` that `url` names, or NULL; on success *path_out points at its path ("/" when the
 * URL has none) inside `url` or at a static "/". */
const http_client_upstream *http_client_allowed(const http_client_allowlist *list, const char *url,
                                                const char **path_out);

/* Copies a client's counters (loop thread, or any thread: relaxed loads, each value consistent). */
void http_client_stats_get(const http_client *client, http_client_stats *out);
/* The counters of a loop's client, zeros when it never made a call. Any thread. */
void http_client_stats_read(const http_loop *loop, http_client_stats *out);

/* A metrics_source_fn (include/apiary/metrics.h) summing every registered loop's client counters. */
struct metrics_writer;
void http_client_metrics_source(struct metrics_writer *w, void *arg);

#endif
