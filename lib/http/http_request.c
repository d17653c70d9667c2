/* http_request: the handler-facing request API (see http_request.h): lookups over the parsed
 * request and the http_respond_* answers, which hand the bytes to the connection. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <time.h>

#include "async_internal.h"
#include "http_internal.h"
#include "json_arena_internal.h"
#include "json_limits_internal.h"
#include "json_writer_internal.h"
#include "log.h"

const char *http_request_header(http_request *req, const char *name)
{
    size_t name_len = strlen(name);
    for (size_t i = 0; i < req->header_count; i++) {
        const http_header *h = &req->headers[i];
        if (h->name_len == name_len && strncasecmp(h->name, name, name_len) == 0)
            return arena_strndup(&req->arena, h->value, h->value_len);
    }
    return NULL;
}

const char *http_request_query(const http_request *req, const char *name)
{
    return uri_query_get(req->query, req->query_count, name);
}

const char *http_request_param(const http_request *req, const char *name)
{
    for (size_t i = 0; i < req->param_count; i++)
        if (strcmp(req->params[i].name, name) == 0)
            return req->params[i].value;
    return NULL;
}

bool http_media_type_is(const char *value, size_t len, const char *media)
{
    size_t media_len = strlen(media);
    const char *end = value + len;
    while (value < end && (*value == ' ' || *value == '\t'))
        value++;
    if ((size_t)(end - value) < media_len || strncasecmp(value, media, media_len) != 0)
        return false;
    const char *rest = value + media_len;
    while (rest < end && (*rest == ' ' || *rest == '\t'))
        rest++;
    return rest == end || *rest == ';'; /* "application/json; charset=utf-8" */
}

bool http_request_content_type_is(http_request *req, const char *media)
{
    for (size_t i = 0; i < req->header_count; i++) {
        const http_header *h = &req->headers[i];
        if (h->name_len == 12 && strncasecmp(h->name, "Content-Type", 12) == 0)
            return http_media_type_is(h->value, h->value_len, media);
    }
    return false;
}

json_t *http_request_json(http_request *req, json_error_t *err)
{
    if (req->_json)
        return req->_json;
    json_error_t local;
    json_error_t *e = err ? err : &local;
    if (req->body_len == 0) {
        memset(e, 0, sizeof(*e));
        snprintf(e->text, sizeof(e->text), "empty body");
        return NULL;
    }
    /* Measured first: a parse costs the loop about 0.2-0.5 µs and up to ~230 bytes per value, so a
     * body of tiny values ("[{},{},...]") within max_body_bytes could hold the loop and multiply its
     * size in memory. The scan costs about a millisecond per MiB. */
    const http_settings *s = req->_conn->loop->settings;
    json_limits_result lim = json_limits_scan(req->body, req->body_len, s->json_max_depth, s->json_max_values);
    if (lim != JSON_LIMITS_OK) {
        memset(e, 0, sizeof(*e));
        e->line = e->column = HTTP_JSON_TOO_LARGE;
        if (lim == JSON_LIMITS_TOO_DEEP)
            snprintf(e->text, sizeof(e->text), "the JSON body nests arrays and objects deeper than %zu levels",
                     s->json_max_depth);
        else
            snprintf(e->text, sizeof(e->text), "the JSON body holds more than %zu values", s->json_max_values);
        return NULL;
    }
    /* A raw NUL byte is never part of JSON text (U+0000 is written \u0000), but jansson stops reading
     * at one as if the input ended there, so "222\0junk" would parse as 222 (found by fuzz_json). */
    const char *nul = memchr(req->body, '\0', req->body_len);
    if (nul) {
        memset(e, 0, sizeof(*e));
        e->line = 1;
        const char *line_start = req->body;
        for (const char *p = req->body; p < nul; p++)
            if (*p == '\n') {
                e->line++;
                line_start = p + 1;
            }
        e->column = (int)(nul - line_start) + 1;
        e->position = (int)(nul - req->body);
        snprintf(e->text, sizeof(e->text), "a NUL byte is not allowed in JSON text (write U+0000 as \\u0000)");
        return NULL;
    }
    /* Duplicate member names: {"a":1,"a":2} is ambiguous, refused rather than one picked (I-JSON, RFC
     * 7493, allows that). U+0000 inside strings is accepted (strings carry their length); inside a
     * member name jansson refuses it. */
    /* The tree's nodes come from the request's arena (json_arena_internal.h): no free() per node. */
    arena *prev = json_arena_use(&req->arena);
    req->_json = json_loadb(req->body, req->body_len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, e);
    json_arena_use(prev);
    return req->_json;
}

http_loop *http_request_loop(const http_request *req) { return req->_conn->loop; }

void http_request_on_cancel(http_request *req, http_cancel_fn fn, void *arg)
{
    req->_cancel_fn = fn;
    req->_cancel_arg = arg;
}

void http_response_header(http_request *req, const char *name, const char *value)
{
    size_t name_len = strlen(name), value_len = strlen(value);
    /* Header injection guard: a value with CR or LF would let a handler split the response. */
    if (strpbrk(name, "\r\n:") || strpbrk(value, "\r\n")) {
        log_error("dropping response header %s: contains CR, LF or ':'", name);
        return;
    }
    size_t add = name_len + 2 + value_len + 2;
    char *grown = arena_alloc(&req->arena, req->_extra_headers_len + add);
    if (req->_extra_headers_len)
        memcpy(grown, req->_extra_headers, req->_extra_headers_len);
    char *p = grown + req->_extra_headers_len;
    memcpy(p, name, name_len);
    p += name_len;
    *p++ = ':';
    *p++ = ' ';
    memcpy(p, value, value_len);
    p += value_len;
    *p++ = '\r';
    *p++ = '\n';
    req->_extra_headers = grown;
    req->_extra_headers_len += add;
}

/* Guards the one-answer rule; a second answer is a handler bug, logged and ignored. */
bool http_request_begin_answer(http_request *req)
{
    if (req->_answered) {
        /* A coroutine unwinding after its request ended (504, server stopping): its answer is moot. */
        if (req->_scope && async_scope_closing(req->_scope))
            return false;
        if (((http_req_slot *)req)->in_after_hooks) {
            log_error("route %s: an after hook tried to answer; it may only add headers",
                      req->route_name ? req->route_name : "(none)");
            return false;
        }
        log_error("route %s answered twice; the second answer is dropped",
                  req->route_name ? req->route_name : "(none)");
        return false;
    }
    req->_answered = true;
    return true;
}

void http_respond_json(http_request *req, int status, json_t *body)
{
    if (!http_request_begin_answer(req)) {
        json_decref(body);
        return;
    }
    if (!body) {
        json_t *problem = http_problem_new(500, "the handler failed to build its response", NULL);
        http_conn_send_json(req->_conn, 500, "application/problem+json", problem, NULL);
        return;
    }
    http_conn_send_json(req->_conn, status, "application/json", body, NULL);
}

json_writer *http_json_writer(http_request *req)
{
    if (req->_writer) {
        json_writer_reset(req->_writer);
    } else {
        req->_writer = arena_alloc(&req->arena, sizeof(json_writer));
        json_writer_init(req->_writer, &req->_conn->loop->cache); /* released by http_conn_end_request */
    }
    return req->_writer;
}

void http_respond_json_writer(http_request *req, int status, const json_writer *w)
{
    if (!http_request_begin_answer(req))
        return;
    size_t len;
    const char *text = json_writer_text(w, &len);
    if (!text) {
        const char *why = json_writer_error(w) ? json_writer_error(w) : "no complete value was written";
        log_error("route %s: its JSON writer failed: %s", req->route_name ? req->route_name : "(none)", why);
        json_t *problem = http_problem_new(500, "the handler failed to build its response", NULL);
        http_conn_send_json(req->_conn, 500, "application/problem+json", problem, NULL);
        return;
    }
    http_conn_send_response(req->_conn, status, "application/json", text, len);
}

void http_respond_json_spliced(http_request *req, int status, json_t *body, const json_t *at, const char *text,
                               size_t len)
{
    if (!http_request_begin_answer(req)) {
        json_decref(body);
        return;
    }
    json_write_splice splice = {.at = at, .text = text, .len = len};
    http_conn_send_json(req->_conn, status, "application/json", body, &splice);
}

void http_respond_json_splices(http_request *req, int status, json_t *body, const json_write_splice *splices)
{
    if (!http_request_begin_answer(req)) {
        json_decref(body);
        return;
    }
    http_conn_send_json(req->_conn, status, "application/json", body, splices);
}

void http_respond_raw(http_request *req, int status, const char *content_type, const void *body, size_t len)
{
    if (http_request_begin_answer(req))
        http_conn_send_response(req->_conn, status, content_type, body, len);
}

void http_respond_problem(http_request *req, int status, json_t *extra, const char *detail_fmt, ...)
{
    if (!http_request_begin_answer(req)) {
        json_decref(extra);
        return;
    }
    char detail[512];
    va_list ap;
    va_start(ap, detail_fmt);
    vsnprintf(detail, sizeof(detail), detail_fmt, ap);
    va_end(ap);
    json_t *problem = http_problem_new(status, detail, extra);
    http_conn_send_json(req->_conn, status, "application/problem+json", problem, NULL);
}

/* async_post_fn for request scopes: results from other threads come back through the loop's queue. */
static void http_request_post_to_loop(void *loop, void (*fn)(void *arg), void *arg) { http_loop_post(loop, fn, arg); }

async_scope *http_request_async(http_request *req)
{
    if (req->_scope)
        return req->_scope;
    http_loop *loop = req->_conn->loop;
    /* half_close "answer": a request whose client sent its FIN holds its place only while nobody
     * else needs it, so closed connections can never fill the cap (issue 18). */
    while (loop->stats.async_inflight >= loop->settings->max_async_per_loop && loop->settings->half_close_answer &&
           http_conn_evict_half_closed(loop))
        ;
    if (loop->stats.async_inflight >= loop->settings->max_async_per_loop) {
        /* Limit task creation, never queue: an unbounded backlog of waiting requests only turns
         * overload into timeouts for everyone. */
        HTTP_STAT_ADD(loop, async_rejected, 1);
        http_response_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, NULL, "too many requests in flight on this loop (limit %zu)",
                             loop->settings->max_async_per_loop);
        return NULL;
    }
    req->_scope = async_scope_new_in_arena(loop->base, &req->arena);
    async_scope_watch(req->_scope, loop->settings->slow_callback_ms, http_loop_report_slow, loop, req->route_name);
    async_scope_use_timeouts(req->_scope, &loop->timeouts);
    async_scope_set_poster(req->_scope, http_request_post_to_loop, loop);
    async_scope_set_context(req->_scope, ((http_req_slot *)req)->context);
    HTTP_STAT_ADD(loop, async_inflight, 1);
    http_conn_async_started(req->_conn);
    return req->_scope;
}

void http_request_set_deadline(http_request *req, unsigned ms)
{
    http_conn *conn = req->_conn;
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    uint64_t deadline = (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000 + ms;
    if (deadline >= conn->deadline_ms)
        return;
    conn->deadline_ms = deadline; /* armed when the handler returns, or re-armed here if it already did */
    conn->deadline_default = false;
    conn->timer_is_deadline = false;
    if (conn->state == HTTP_CONN_HANDLER && !req->_answered)
        http_conn_rearm_timer(conn);
}

/* Joins every occurrence of a header with ',' (RFC 9110 5.3: repeated fields are one list). */
static const char *http_request_header_list(http_request *req, const char *name)
{
    size_t name_len = strlen(name), total = 0;
    for (size_t i = 0; i < req->header_count; i++)
        if (req->headers[i].name_len == name_len && strncasecmp(req->headers[i].name, name, name_len) == 0)
            total += req->headers[i].value_len + 1;
    if (!total)
        return NULL;
    char *joined = arena_alloc(&req->arena, total), *p = joined;
    for (size_t i = 0; i < req->header_count; i++) {
        const http_header *h = &req->headers[i];
        if (h->name_len == name_len && strncasecmp(h->name, name, name_len) == 0) {
            if (p != joined)
                *p++ = ',';
            memcpy(p, h->value, h->value_len);
            p += h->value_len;
        }
    }
    *p = '\0';
    return joined;
}

_Static_assert(offsetof(http_req_slot, req) == 0, "http_request_client_addr casts a request to its slot");

void http_request_client_addr(http_request *req, uint8_t *family, uint8_t addr[16])
{
    http_req_slot *slot = (http_req_slot *)req; /* the request is the slot's first member */
    http_conn *conn = req->_conn;
    if (!slot->client_resolved) {
        slot->client_family = conn->peer_family;
        memcpy(slot->client_addr, conn->peer_addr, 16);
        const http_settings *s = conn->loop->settings;
        bool trusted = conn->peer_family ? http_cidr_contains(s->trusted_proxies, s->trusted_proxy_count,
                                                              conn->peer_family, conn->peer_addr)
                                         : s->trust_unix_socket;
        /* Only the header the proxy sets: the other one came from the client, whatever it says. */
        if (trusted)
            http_trust_resolve(s->trusted_proxies, s->trusted_proxy_count,
                               http_request_header_list(req, s->proxy_header_forwarded ? "Forwarded"
                                                                                       : "X-Forwarded-For"),
                               s->proxy_header_forwarded, &slot->client_family, slot->client_addr);
        slot->client_resolved = true;
    }
    *family = slot->client_family;
    memcpy(addr, slot->client_addr, 16);
}

const char *http_request_client(const http_request *req, char *buf, size_t len)
{
    uint8_t family, addr[16];
    http_request_client_addr((http_request *)req, &family, addr);
    if (!family || !inet_ntop(family, addr, buf, (socklen_t)len))
        snprintf(buf, len, "local");
    return buf;
}
