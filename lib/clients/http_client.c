/* http_client: the calls of the HTTP client and the per-loop client that holds their pools (see
 * http_client.h for the contract and docs/fanout.md for the behaviour).
 *
 * Ownership and cancellation, in one place:
 * - The client (one per loop, freed with the loop) owns the pools; the pools own the connections. No
 *   connection is ever owned by a call, so a call that goes away never takes a socket with it by
 *   accident, and a connection never outlives its loop.
 * - A call (http_client_call) is allocated in the caller's scope, with the request bytes. Its future is
 *   completed only by the pool, after the pool has let go of the call; its cancel hook
 *   (http_client_on_cancel) runs when the caller gives up first — the scope ended (client gone,
 *   request deadline, server stopping), the upstream's timeout_ms passed (the wait_for around the
 *   future), or an outer wait_for/gather cancelled it — and makes the pool let go: out of the waiting
 *   line, no longer the reason a connection is being opened, and off its connection, which goes back
 *   to the pool if none of the call's bytes were sent and is closed otherwise (half an exchange cannot
 *   be resumed by anyone else). The hook runs before the scope's memory goes, and afterwards nothing
 *   in the pool points at the call.
 * - A successful response's body is handed over, not copied: the reader's buffer becomes the
 *   response's, and a scope cleanup (async_scope_defer) frees it when the scope ends. */
#include <event2/dns.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_client_internal.h"
#include "http_loop_internal.h"
#include "json_limits_internal.h"
#include "log.h"
#include "xalloc_internal.h"

#define HTTP_CLIENT_METHOD_MAX 16

static const char *const http_client_error_names[HTTP_CLIENT_ERR_COUNT] = {
    [HTTP_CLIENT_ERR_TIMEOUT] = "timeout",
    [HTTP_CLIENT_ERR_DNS_FAILED] = "dns_failed",
    [HTTP_CLIENT_ERR_CONNECT_FAILED] = "connect_failed",
    [HTTP_CLIENT_ERR_CONNECT_TIMEOUT] = "connect_timeout",
    [HTTP_CLIENT_ERR_CONNECTION_RESET] = "connection_reset",
    [HTTP_CLIENT_ERR_MALFORMED_RESPONSE] = "malformed_response",
    [HTTP_CLIENT_ERR_RESPONSE_TOO_LARGE] = "response_too_large",
    [HTTP_CLIENT_ERR_INVALID_REQUEST] = "invalid_request",
    [HTTP_CLIENT_ERR_TLS_FAILED] = "tls_failed",
    [HTTP_CLIENT_ERR_CERT_REJECTED] = "certificate_rejected",
    [HTTP_CLIENT_ERR_URL_NOT_ALLOWED] = "url_not_allowed",
};

const char *http_client_error_name(http_client_error kind)
{
    return (unsigned)kind < HTTP_CLIENT_ERR_COUNT ? http_client_error_names[kind] : "failed";
}

void http_client_upstream_defaults(http_client_upstream *u)
{
    u->max_connections = HTTP_CLIENT_MAX_CONNECTIONS_DEFAULT;
    u->max_idle = HTTP_CLIENT_UNSET;
    u->idle_timeout_ms = 30000;
    u->connect_timeout_ms = 200;
    u->timeout_ms = 1000;
    u->retries = 0;
    u->max_response_bytes = 1048576;
}

int http_client_upstream_finish(http_client_upstream *u, char *err, size_t err_cap)
{
    if (u->max_idle == HTTP_CLIENT_UNSET) {
        u->max_idle = u->max_connections < HTTP_CLIENT_MAX_IDLE_DEFAULT ? u->max_connections
                                                                        : HTTP_CLIENT_MAX_IDLE_DEFAULT;
        return 0;
    }
    if (u->max_idle > u->max_connections) {
        snprintf(err, err_cap, "max_idle (%u) must not exceed max_connections (%u)", u->max_idle,
                 u->max_connections);
        return -1;
    }
    return 0;
}

/* ---- the client ------------------------------------------------------------------------------- */

http_client *http_client_new(struct event_base *base)
{
    http_client *client = xcalloc(1, sizeof(*client));
    client->base = base;
    return client;
}

void http_client_free(http_client *client)
{
    if (!client)
        return;
    client->closing = true;
    while (client->pools) {
        http_client_pool *pool = client->pools;
        client->pools = pool->next;
        http_client_pool_free(pool);
    }
    /* A cancelled DNS look-up still calls back, later and from the loop, into the resolver's memory:
     * let those callbacks run before the resolver goes. */
    for (int pass = 0; pass < 100 && client->lookups_pending > 0; pass++)
        event_base_loop(client->base, EVLOOP_NONBLOCK);
    if (client->lookups_pending > 0) {
        /* Never seen; freeing would let a late callback write into freed memory, so keep both. */
        log_error("http client: %u DNS look-ups did not end; leaving their resolver allocated",
                  client->lookups_pending);
        return;
    }
    if (client->dns)
        evdns_base_free(client->dns, 0);
    free(client);
}

static void http_client_destroy_local(void *value) { http_client_free(value); }

http_client *http_client_for_loop(http_loop *loop)
{
    http_client *client = http_loop_local(loop, HTTP_LOOP_SLOT_HTTP_CLIENT);
    if (!client) {
        client = http_client_new(http_loop_base(loop));
        http_loop_set_local(loop, HTTP_LOOP_SLOT_HTTP_CLIENT, client, http_client_destroy_local);
    }
    return client;
}

void http_client_stats_get(const http_client *client, http_client_stats *out)
{
    const uint64_t *src = (const uint64_t *)&client->stats;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

void http_client_stats_read(const http_loop *loop, http_client_stats *out)
{
    const http_client *client = http_loop_local(loop, HTTP_LOOP_SLOT_HTTP_CLIENT);
    if (client)
        http_client_stats_get(client, out);
    else
        memset(out, 0, sizeof(*out));
}

/* ---- what may be sent ------------------------------------------------------------------------- */

bool http_client_path_valid(const char *path, size_t len)
{
    if (!path || len == 0 || len > HTTP_CLIENT_PATH_MAX || path[0] != '/')
        return false;
    for (size_t i = 0; i < len; i++) {
        unsigned char ch = (unsigned char)path[i];
        if (ch <= 0x20 || ch >= 0x7f || ch == '#')
            return false;
    }
    return true;
}

static bool http_client_method_valid(const char *method)
{
    if (!method)
        return false;
    size_t len = strlen(method);
    if (len == 0 || len > HTTP_CLIENT_METHOD_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (method[i] < 'A' || method[i] > 'Z')
            return false;
    return true;
}

/* RFC 9110 9.2.2: sending these twice has the effect of sending them once. */
static bool http_client_method_idempotent(const char *method)
{
    static const char *const idempotent[] = {"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"};
    for (size_t i = 0; i < sizeof(idempotent) / sizeof(idempotent[0]); i++)
        if (strcmp(method, idempotent[i]) == 0)
            return true;
    return false;
}

/* RFC 9110 5.6.2: a field name is a token. */
static bool http_client_token(const char *s)
{
    if (!s || !*s)
        return false;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if (!(*p > 0x20 && *p < 0x7f && !strchr("\"(),/:;<=>?@[\\]{}", *p)))
            return false;
    return true;
}

/* Fields the client writes itself: the framing and the connection's fate are the pool's business. */
static bool http_client_header_reserved(const char *name)
{
    static const char *const reserved[] = {"Host", "Content-Length", "Transfer-Encoding", "Connection",
                                           "Keep-Alive", "TE", "Upgrade", "Trailer", "Proxy-Connection"};
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++)
        if (strcasecmp(name, reserved[i]) == 0)
            return true;
    return false;
}

/* A value of visible ASCII, spaces and tabs, so it can neither end the field nor add one. */
static bool http_client_header_value_ok(const char *v)
{
    if (!v)
        return false;
    size_t len = 0;
    for (const unsigned char *p = (const unsigned char *)v; *p; p++, len++)
        if ((*p < 0x20 && *p != '\t') || *p >= 0x7f)
            return false;
    return len <= HTTP_CLIENT_HEADER_VALUE_MAX;
}

static bool http_client_options_valid(const http_client_options *o)
{
    if (o->header_count > HTTP_CLIENT_HEADERS_MAX || (o->header_count > 0 && !o->headers) ||
        (o->body_len > 0 && !o->body) || o->max_response_bytes > HTTP_CLIENT_RESPONSE_MAX ||
        (o->content_type && !http_client_header_value_ok(o->content_type)))
        return false;
    for (size_t i = 0; i < o->header_count; i++)
        if (!http_client_token(o->headers[i].name) || http_client_header_reserved(o->headers[i].name) ||
            !http_client_header_value_ok(o->headers[i].value))
            return false;
    return true;
}

static bool http_client_options_have(const http_client_options *o, const char *name)
{
    for (size_t i = 0; i < o->header_count; i++)
        if (strcasecmp(o->headers[i].name, name) == 0)
            return true;
    return false;
}

/* The request being built: measured by a first pass, then written into memory of that size. */
typedef struct http_client_wire_buf {
    char *data; /* NULL while measuring */
    size_t len;
} http_client_wire_buf;

static void http_client_wire_add(http_client_wire_buf *w, const char *text, size_t len)
{
    if (w->data && len > 0)
        memcpy(w->data + w->len, text, len);
    w->len += len;
}

static void http_client_wire_fields(http_client_wire_buf *w, const http_client_pool *pool, const char *method,
                                    const char *path, const http_client_options *o)
{
    /* A request that may carry a body says how long it is, even when empty (RFC 9110 8.6). */
    bool length = o->body_len > 0 || strcmp(method, "POST") == 0 || strcmp(method, "PUT") == 0 ||
                  strcmp(method, "PATCH") == 0;
    char length_field[48];
    const char *parts[] = {method, " ", path, " HTTP/1.1\r\nHost: ", pool->host_header, "\r\n"};
    for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
        http_client_wire_add(w, parts[i], strlen(parts[i]));
    if (!http_client_options_have(o, "User-Agent")) {
        static const char ua[] = "User-Agent: apiary/" APIARY_VERSION "\r\n";
        http_client_wire_add(w, ua, sizeof(ua) - 1);
    }
    if (length) {
        int n = snprintf(length_field, sizeof(length_field), "Content-Length: %zu\r\n", o->body_len);
        http_client_wire_add(w, length_field, (size_t)n);
    }
    if (o->body_len > 0 && !http_client_options_have(o, "Content-Type")) {
        const char *type = o->content_type ? o->content_type : "application/json";
        http_client_wire_add(w, "Content-Type: ", 14);
        http_client_wire_add(w, type, strlen(type));
        http_client_wire_add(w, "\r\n", 2);
    }
    for (size_t i = 0; i < o->header_count; i++) {
        http_client_wire_add(w, o->headers[i].name, strlen(o->headers[i].name));
        http_client_wire_add(w, ": ", 2);
        http_client_wire_add(w, o->headers[i].value, strlen(o->headers[i].value));
        http_client_wire_add(w, "\r\n", 2);
    }
    http_client_wire_add(w, "\r\n", 2);
    http_client_wire_add(w, o->body, o->body_len);
}

/* The whole request in scope memory, written as is by whichever connection carries it. Built in two
 * passes over the same code: one measures, one writes. */
static char *http_client_wire(async_scope *scope, const http_client_pool *pool, const char *method, const char *path,
                              const http_client_options *o, size_t *out_len)
{
    http_client_wire_buf w = {0};
    http_client_wire_fields(&w, pool, method, path, o);
    w.data = async_scope_alloc(scope, w.len + 1);
    w.len = 0;
    http_client_wire_fields(&w, pool, method, path, o);
    w.data[w.len] = '\0';
    *out_len = w.len;
    return w.data;
}

/* ---- a call ----------------------------------------------------------------------------------- */

/* The caller gave up (see the top of the file). The wait_for around the future has already completed
 * with ASYNC_TIMEOUT when it is the upstream's timeout that fired, which is how the two are told apart
 * in the counters. */
static void http_client_on_cancel(async_op *future, void *arg)
{
    (void)future;
    http_client_call *call = arg;
    if (call->bounded && call->bounded->status == ASYNC_TIMEOUT)
        HTTP_CLIENT_STAT_ADD(call->client, errors[HTTP_CLIENT_ERR_TIMEOUT], 1);
    else
        HTTP_CLIENT_STAT_ADD(call->client, cancelled, 1);
    http_client_pool_abandon(call);
}

void http_client_call_succeeded(http_client_call *call, http_client_reader *reader)
{
    http_client_response *resp = async_scope_alloc(call->scope, sizeof(*resp));
    /* Exact size plus the NUL: the spare capacity of a grown buffer goes back now, not at scope end. */
    char *body = xrealloc(reader->body, reader->body_len + 1);
    body[reader->body_len] = '\0';
    resp->status = reader->status;
    resp->body = body;
    resp->body_len = reader->body_len;
    /* The header fields, copied into the scope in one piece (at most HTTP_CLIENT_MAX_HEAD_BYTES plus
     * their NULs): the reader's buffer goes with the connection's next response. */
    if (reader->field_count > 0) {
        char *head = async_scope_alloc(call->scope, reader->head_len);
        memcpy(head, reader->head, reader->head_len);
        http_client_header *fields = async_scope_alloc(call->scope, reader->field_count * sizeof(*fields));
        for (size_t i = 0; i < reader->field_count; i++) {
            fields[i].name = head + reader->fields[2 * i];
            fields[i].value = head + reader->fields[2 * i + 1];
        }
        resp->headers = fields;
        resp->header_count = reader->field_count;
    }
    reader->body = NULL;
    reader->body_len = reader->body_cap = 0;
    async_scope_defer(call->scope, free, body);
    HTTP_CLIENT_STAT_ADD(call->client, responses, 1);
    async_resolve(call->future, resp);
}

/* Failures where the request cannot have been processed (no connection) or, for an idempotent one,
 * where processing it again is harmless. A malformed or oversized answer would only come again. */
static bool http_client_error_retryable(http_client_error kind)
{
    return kind == HTTP_CLIENT_ERR_DNS_FAILED || kind == HTTP_CLIENT_ERR_CONNECT_FAILED ||
           kind == HTTP_CLIENT_ERR_CONNECT_TIMEOUT || kind == HTTP_CLIENT_ERR_CONNECTION_RESET;
}

void http_client_call_failed(http_client_call *call, http_client_error kind)
{
    if (call->idempotent && call->retries_left > 0 && http_client_error_retryable(kind) && !call->client->closing) {
        call->retries_left--;
        HTTP_CLIENT_STAT_ADD(call->client, retries, 1);
        http_client_pool_acquire(call->pool, call, false);
        return;
    }
    HTTP_CLIENT_STAT_ADD(call->client, errors[kind], 1);
    async_fail(call->future, http_client_error_name(kind));
}

/* A call that cannot even start: failed now, reported from the loop like any other result. */
static async_op *http_client_call_invalid(async_scope *scope, http_client *client, async_op *future)
{
    HTTP_CLIENT_STAT_ADD(client, requests, 1);
    HTTP_CLIENT_STAT_ADD(client, errors[HTTP_CLIENT_ERR_INVALID_REQUEST], 1);
    async_fail(future, http_client_error_name(HTTP_CLIENT_ERR_INVALID_REQUEST));
    return async_wait_for(scope, future, 1);
}

async_op *http_client_send(async_scope *scope, http_client *client, const http_client_upstream *up,
                         const char *method, const char *path, const http_client_options *opts)
{
    static const http_client_options none = {0};
    const http_client_options *o = opts ? opts : &none;
    async_op *future = async_future(scope);
    if (future->status == ASYNC_CANCELLED)
        return async_wait_for(scope, future, 1); /* the scope is ending: born cancelled, nothing starts */
    if (!up || !http_client_method_valid(method) || !http_client_path_valid(path, path ? strlen(path) : 0) ||
        !http_client_options_valid(o))
        return http_client_call_invalid(scope, client, future);

    http_client_call *call = async_scope_alloc(scope, sizeof(*call));
    call->scope = scope;
    call->client = client;
    call->pool = http_client_pool_get(client, up);
    call->future = future;
    call->wire = http_client_wire(scope, call->pool, method, path, o, &call->wire_len);
    call->max_body = o->max_response_bytes ? o->max_response_bytes : up->max_response_bytes;
    call->head_only = strcmp(method, "HEAD") == 0;
    call->idempotent = http_client_method_idempotent(method);
    call->retries_left = up->retries;
    /* The whole call, connect and retries included, is bounded by a toolkit deadline: when it passes,
     * the wait_for completes "timeout" and cancels the future, whose hook frees the connection. */
    call->bounded = async_wait_for(scope, future, up->timeout_ms);
    async_future_on_cancel(future, http_client_on_cancel, call);
    HTTP_CLIENT_STAT_ADD(client, requests, 1);
    http_client_pool_acquire(call->pool, call, false);
    return call->bounded;
}

async_op *http_client_start(async_scope *scope, http_client *client, const http_client_upstream *up,
                            const char *method, const char *path, const char *body, size_t body_len)
{
    http_client_options o = {.body = body, .body_len = body_len};
    return http_client_send(scope, client, up, method, path, &o);
}

async_op *http_client_request(async_scope *scope, http_loop *loop, const http_client_upstream *up,
                              const char *method, const char *path, const char *body, size_t body_len)
{
    return http_client_start(scope, http_client_for_loop(loop), up, method, path, body, body_len);
}

async_op *http_client_get(async_scope *scope, http_loop *loop, const http_client_upstream *up, const char *path_fmt,
                          ...)
{
    /* One byte more than a path may have: a longer one stays too long, and the call refuses it. */
    char path[HTTP_CLIENT_PATH_MAX + 2];
    va_list ap;
    va_start(ap, path_fmt);
    vsnprintf(path, sizeof(path), path_fmt, ap);
    va_end(ap);
    return http_client_request(scope, loop, up, "GET", path, NULL, 0);
}

async_op *http_client_do(async_scope *scope, http_loop *loop, const http_client_upstream *up,
                         const char *method, const char *path, const http_client_options *opts)
{
    return http_client_send(scope, http_client_for_loop(loop), up, method, path, opts);
}

const char *http_client_response_header(const http_client_response *resp, const char *name)
{
    if (!resp || !name)
        return NULL;
    for (size_t i = 0; i < resp->header_count; i++)
        if (strcasecmp(resp->headers[i].name, name) == 0)
            return resp->headers[i].value;
    return NULL;
}

/* ---- absolute URLs ------------------------------------------------------------------------------ */

static _Atomic(const http_client_allowlist *) http_client_allowed_now;

void http_client_allow(const http_client_allowlist *list) { atomic_store(&http_client_allowed_now, list); }

const http_client_allowlist *http_client_allowed_list(void) { return atomic_load(&http_client_allowed_now); }

const http_client_upstream *http_client_allowed(const http_client_allowlist *list, const char *url,
                                                const char **path_out)
{
    if (!list || !url)
        return NULL;
    bool tls;
    const char *host;
    if (strncasecmp(url, "https://", 8) == 0) {
        tls = true;
        host = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        tls = false;
        host = url + 7;
    } else {
        return NULL;
    }
    /* The authority ends at the first '/', and must be HOST or HOST:PORT ([v6] in brackets): no user
     * information ('@'), no query or fragment before the path. */
    const char *end = host + strcspn(host, "/?#");
    if (*end == '?' || *end == '#' || memchr(host, '@', (size_t)(end - host)))
        return NULL;
    const char *hstart = host, *hend, *port_at = NULL;
    if (*host == '[') {
        const char *close = memchr(host, ']', (size_t)(end - host));
        if (!close)
            return NULL;
        hstart = host + 1;
        hend = close;
        if (close + 1 < end) {
            if (close[1] != ':')
                return NULL;
            port_at = close + 2;
        }
    } else {
        const char *colon = memchr(host, ':', (size_t)(end - host));
        hend = colon ? colon : end;
        port_at = colon ? colon + 1 : NULL;
    }
    unsigned port = tls ? 443 : 80;
    if (port_at) {
        if (port_at == end || end - port_at > 5)
            return NULL;
        port = 0;
        for (const char *p = port_at; p < end; p++) {
            if (*p < '0' || *p > '9')
                return NULL;
            port = port * 10 + (unsigned)(*p - '0');
        }
    }
    size_t hlen = (size_t)(hend - hstart);
    if (hlen == 0)
        return NULL;
    const char *path = *end ? end : "/";
    if (!http_client_path_valid(path, strlen(path)))
        return NULL;
    for (unsigned i = 0; i < list->count; i++) {
        const http_client_upstream *o = &list->origins[i];
        if (o->tls == tls && o->port == port && strlen(o->host) == hlen && strncasecmp(o->host, hstart, hlen) == 0) {
            *path_out = path;
            return o;
        }
    }
    return NULL;
}

async_op *http_client_fetch_on(async_scope *scope, http_client *client, const http_client_allowlist *list,
                               const char *method, const char *url, const http_client_options *opts)
{
    const char *path = NULL;
    const http_client_upstream *origin = http_client_allowed(list, url, &path);
    if (origin)
        return http_client_send(scope, client, origin, method, path, opts);
    async_op *future = async_future(scope);
    if (future->status == ASYNC_CANCELLED)
        return async_wait_for(scope, future, 1);
    HTTP_CLIENT_STAT_ADD(client, requests, 1);
    HTTP_CLIENT_STAT_ADD(client, errors[HTTP_CLIENT_ERR_URL_NOT_ALLOWED], 1);
    async_fail(future, http_client_error_name(HTTP_CLIENT_ERR_URL_NOT_ALLOWED));
    return async_wait_for(scope, future, 1);
}

async_op *http_client_fetch(async_scope *scope, http_loop *loop, const char *method, const char *url,
                            const http_client_options *opts)
{
    return http_client_fetch_on(scope, http_client_for_loop(loop), http_client_allowed_list(), method, url, opts);
}

json_t *http_client_response_json(const http_client_response *resp, size_t max_depth, size_t max_values)
{
    /* jansson would stop at a raw NUL as if the text ended there ("1\0junk" reads as 1). */
    if (resp->body_len == 0 || memchr(resp->body, '\0', resp->body_len) ||
        json_limits_scan(resp->body, resp->body_len, max_depth, max_values) != JSON_LIMITS_OK)
        return NULL;
    return json_loadb(resp->body, resp->body_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, NULL);
}
