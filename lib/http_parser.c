/* http_parser: the llhttp callbacks. They record where the request line and headers are (as spans
 * relative to the message start, because the input buffer may move while the head arrives), enforce
 * the size limits the moment a limit is crossed, collect the body, and pause llhttp at the end of
 * every message so the connection dispatches one request at a time and answers strictly in order. */
#include <string.h>

#include "http_internal.h"

static http_conn *http_parser_conn(llhttp_t *p) { return p->data; }

/* Offset of `at` from the first byte of the current message. */
static uint32_t http_parser_rel(http_conn *conn, const char *at)
{
    return (uint32_t)(at - (conn->in.data + conn->msg_start));
}

/* The head may not exceed max_header_bytes counted from the message's first byte; checking the end
 * of every token keeps a 1 MB header from being buffered before it is refused. */
static int http_parser_check_head(http_conn *conn, const char *at, size_t len)
{
    if ((size_t)http_parser_rel(conn, at) + len > conn->loop->settings->max_header_bytes) {
        http_conn_reject(conn, 431, "request head exceeds %zu bytes", conn->loop->settings->max_header_bytes);
        return HPE_USER;
    }
    return 0;
}

static int http_parser_on_message_begin(llhttp_t *p)
{
    http_conn *conn = http_parser_conn(p);
    conn->state = HTTP_CONN_HEAD;
    conn->fresh = false;
    if (!conn->slot)
        conn->slot = http_loop_slot_get(conn->loop);
    http_req_slot *slot = conn->slot;
    slot->url = (http_span){0, 0};
    slot->header_count = 0;
    slot->header_spans = slot->spans_inline;
    slot->header_spans_cap = HTTP_SLOT_INLINE_HEADERS;
    slot->in_header_value = false;
    slot->route_status = ROUTER_NOT_FOUND; /* until the head is routed: a refusal counts as unmatched */
    slot->client_resolved = false;
    conn->head_len = 0;
    conn->body.len = conn->body.pos = 0;
    return 0;
}

static int http_parser_on_url(llhttp_t *p, const char *at, size_t len)
{
    http_conn *conn = http_parser_conn(p);
    http_req_slot *slot = conn->slot;
    if (slot->url.len == 0)
        slot->url.off = http_parser_rel(conn, at);
    slot->url.len += (uint32_t)len; /* llhttp splits a token only at a read boundary: still contiguous */
    if (slot->url.len > conn->loop->settings->max_url_bytes) {
        http_conn_reject(conn, 414, "request target exceeds %zu bytes", conn->loop->settings->max_url_bytes);
        return HPE_USER;
    }
    return http_parser_check_head(conn, at, len);
}

/* Past the inline spans: double into the request's arena (freed with the request). */
static void http_parser_grow_spans(http_req_slot *slot)
{
    size_t cap = slot->header_spans_cap * 2;
    http_header_span *grown = arena_alloc(&slot->req.arena, cap * sizeof(*grown));
    memcpy(grown, slot->header_spans, slot->header_count * sizeof(*grown));
    slot->header_spans = grown;
    slot->header_spans_cap = cap;
}

static int http_parser_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    http_conn *conn = http_parser_conn(p);
    http_req_slot *slot = conn->slot;
    if (slot->header_count == 0 || slot->in_header_value) {
        if (slot->header_count == conn->loop->settings->max_headers) {
            http_conn_reject(conn, 431, "more than %zu header fields", conn->loop->settings->max_headers);
            return HPE_USER;
        }
        if (slot->header_count == slot->header_spans_cap)
            http_parser_grow_spans(slot);
        http_header_span *h = &slot->header_spans[slot->header_count++];
        h->name = (http_span){http_parser_rel(conn, at), 0};
        h->value = (http_span){0, 0};
        slot->in_header_value = false;
    }
    slot->header_spans[slot->header_count - 1].name.len += (uint32_t)len;
    return http_parser_check_head(conn, at, len);
}

static int http_parser_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    http_conn *conn = http_parser_conn(p);
    http_req_slot *slot = conn->slot;
    http_header_span *h = &slot->header_spans[slot->header_count - 1];
    if (!slot->in_header_value) {
        h->value.off = http_parser_rel(conn, at);
        slot->in_header_value = true;
    }
    h->value.len += (uint32_t)len;
    return http_parser_check_head(conn, at, len);
}

/* A header with an empty value gets no on_header_value call; this marks the field as finished. */
static int http_parser_on_header_value_complete(llhttp_t *p)
{
    http_parser_conn(p)->slot->in_header_value = true;
    return 0;
}

static int http_parser_on_headers_complete(llhttp_t *p)
{
    /* We never switch protocols: an Upgrade request is answered as plain HTTP/1.1 (RFC 9110 7.8
     * lets a server ignore Upgrade), so stop llhttp from handing the rest to an upgrade path. */
    p->upgrade = 0;
    return http_conn_on_headers_complete(http_parser_conn(p)) == 0 ? 0 : HPE_USER;
}

static int http_parser_on_chunk_header(llhttp_t *p)
{
    http_conn *conn = http_parser_conn(p);
    /* llhttp puts the announced chunk size in content_length: refuse before reading the chunk. */
    if (p->content_length > conn->loop->settings->max_body_bytes - conn->body.len) {
        http_conn_reject(conn, 413, "request body exceeds %zu bytes", conn->loop->settings->max_body_bytes);
        return HPE_USER;
    }
    return 0;
}

static int http_parser_on_body(llhttp_t *p, const char *at, size_t len)
{
    http_conn *conn = http_parser_conn(p);
    if (len > conn->loop->settings->max_body_bytes - conn->body.len) {
        http_conn_reject(conn, 413, "request body exceeds %zu bytes", conn->loop->settings->max_body_bytes);
        return HPE_USER;
    }
    buf_append(&conn->body, &conn->loop->cache, at, len);
    return 0;
}

static int http_parser_on_message_complete(llhttp_t *p)
{
    (void)p;
    return HPE_PAUSED; /* one request at a time: the connection dispatches it, then resumes */
}

static const llhttp_settings_t http_parser_callbacks = {
    .on_message_begin = http_parser_on_message_begin,
    .on_url = http_parser_on_url,
    .on_header_field = http_parser_on_header_field,
    .on_header_value = http_parser_on_header_value,
    .on_header_value_complete = http_parser_on_header_value_complete,
    .on_headers_complete = http_parser_on_headers_complete,
    .on_chunk_header = http_parser_on_chunk_header,
    .on_body = http_parser_on_body,
    .on_message_complete = http_parser_on_message_complete,
};

const llhttp_settings_t *http_parser_settings(void) { return &http_parser_callbacks; }
