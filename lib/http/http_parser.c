/* http_parser: the llhttp callbacks. They record where the request line and headers are (as spans
 * relative to the message start, because the input buffer may move while the head arrives), enforce
 * the size limits the moment a limit is crossed, refuse what RFC 9112 says a server must refuse and
 * llhttp 8 lets through (empty field names, obs-fold), collect the body, discard chunked trailers,
 * and pause llhttp at the end of every message so the connection dispatches one request at a time
 * and answers strictly in order. */
#include <string.h>

#include "http_fasthead_internal.h"
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
    conn->blank_bytes = 0;
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
    conn->trailer_bytes = conn->trailer_name_len = 0;
    conn->chunk_ext_bytes = conn->chunk_framing_bytes = 0;
    conn->last_chunk = conn->chunk_data_next = false;
    conn->discard_body = false;
    conn->close_after = false;
    conn->body.len = conn->body.pos = 0;
    conn->body_total = 0;
    conn->body_limit = conn->loop->settings->max_body_bytes; /* the route's, once routed */
    conn->body_early = false;
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

/* Trailer fields of a chunked body arrive through the header callbacks after the head is complete
 * (head_len is set). They are parsed and discarded: nothing in apiary reads them, and they lie outside
 * the head the request is built from, so they must never become header spans. Their size still counts
 * against max_header_bytes so they cannot run on for ever. */
static bool http_parser_in_trailers(const http_conn *conn) { return conn->head_len != 0; }

static int http_parser_count_trailer(http_conn *conn, size_t len)
{
    conn->trailer_bytes += len;
    if (conn->trailer_bytes > conn->loop->settings->max_header_bytes) {
        http_conn_reject(conn, 431, "request trailer section exceeds %zu bytes",
                         conn->loop->settings->max_header_bytes);
        return HPE_USER;
    }
    return 0;
}

static int http_parser_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    http_conn *conn = http_parser_conn(p);
    if (http_parser_in_trailers(conn)) {
        conn->trailer_name_len += len;
        return http_parser_count_trailer(conn, len);
    }
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

/* llhttp 8 reports ": value" as a field with an empty name; RFC 9110 5.1 field names are tokens. */
static int http_parser_on_header_field_complete(llhttp_t *p)
{
    http_conn *conn = http_parser_conn(p);
    size_t name_len = conn->trailer_name_len;
    conn->trailer_name_len = 0;
    if (!http_parser_in_trailers(conn))
        name_len = conn->slot->header_spans[conn->slot->header_count - 1].name.len;
    if (name_len == 0) {
        http_conn_reject(conn, 400, "malformed request: a header field has an empty name");
        return HPE_USER;
    }
    return 0;
}

static int http_parser_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    http_conn *conn = http_parser_conn(p);
    if (http_parser_in_trailers(conn))
        return http_parser_count_trailer(conn, len);
    http_req_slot *slot = conn->slot;
    http_header_span *h = &slot->header_spans[slot->header_count - 1];
    uint32_t rel = http_parser_rel(conn, at);
    if (!slot->in_header_value) {
        h->value.off = rel;
        slot->in_header_value = true;
    } else if (h->value.off + h->value.len != rel) {
        /* llhttp splits a value only at a read boundary, where the pieces touch. A gap means an obs-fold
         * (CRLF followed by whitespace), which RFC 9112 5.2 lets a server refuse: a folded value would
         * otherwise be read with the fold's CR LF inside it and its end cut off. */
        http_conn_reject(conn, 400, "malformed request: header %.*s is folded over several lines (obs-fold)",
                         (int)(h->name.len > 64 ? 64 : h->name.len), conn->in.data + conn->msg_start + h->name.off);
        return HPE_USER;
    }
    h->value.len += (uint32_t)len;
    return http_parser_check_head(conn, at, len);
}

/* A header with an empty value gets no on_header_value call; this marks the field as finished. llhttp
 * keeps the value's trailing whitespace, which RFC 9110 5.5 says is not part of it: drop it here so
 * every lookup sees the value itself ("Host: a " is host "a"). */
static int http_parser_on_header_value_complete(llhttp_t *p)
{
    http_conn *conn = http_parser_conn(p);
    if (http_parser_in_trailers(conn))
        return 0;
    http_req_slot *slot = conn->slot;
    slot->in_header_value = true;
    http_header_span *h = &slot->header_spans[slot->header_count - 1];
    const char *value = conn->in.data + conn->msg_start + h->value.off;
    while (h->value.len && (value[h->value.len - 1] == ' ' || value[h->value.len - 1] == '\t'))
        h->value.len--;
    return 0;
}

static int http_parser_on_headers_complete(llhttp_t *p)
{
    /* We never switch protocols: an Upgrade request is answered as plain HTTP/1.1 (RFC 9110 7.8
     * lets a server ignore Upgrade), so stop llhttp from handing the rest to an upgrade path. */
    p->upgrade = 0;
    int verdict = http_conn_on_headers_complete(http_parser_conn(p));
    if (verdict == 2)
        return HPE_PAUSED; /* a streamed body: dispatch now, parse the body as the handler reads it */
    return verdict >= 0 ? verdict : HPE_USER; /* 1: llhttp treats the message as having no body */
}

/* The commonest heads skip llhttp (http_fasthead.c): the same records as the callbacks above would
 * make, and the fields of llhttp's own that the engine reads (http_conn.c: method, version, flags for
 * keep-alive and framing) set as llhttp sets them for such a head. llhttp itself is left between
 * messages: its next message starts from its first byte, exactly as after one it parsed. */
size_t http_parser_fast_head(http_conn *conn, size_t avail, bool *refused)
{
    const http_settings *settings = conn->loop->settings;
    http_fasthead_limits limits = {settings->max_url_bytes, settings->max_header_bytes, settings->max_headers};
    http_fasthead head;
    *refused = false;
    size_t used = http_fasthead_read(conn->in.data + conn->msg_start, avail, &limits, &head);
    if (used == 0)
        return 0;
    llhttp_t *p = &conn->parser;
    http_parser_on_message_begin(p);
    http_req_slot *slot = conn->slot;
    slot->url = head.url;
    memcpy(slot->header_spans, head.headers, head.header_count * sizeof(head.headers[0]));
    slot->header_count = head.header_count;
    slot->in_header_value = true;
    p->method = HTTP_GET;
    p->http_major = 1;
    p->http_minor = 1;
    p->flags = 0;
    p->content_length = 0;
    p->upgrade = 0;
    /* No body, so 0 (dispatch it) or -1 (refused from the head, already answered). */
    *refused = http_conn_on_headers_complete(conn) != 0;
    return used;
}

/* Chunk extensions are ignored (RFC 9112 7.1.1), but read: bound them so one chunk-size line cannot
 * carry megabytes that are parsed and thrown away. */
static int http_parser_on_chunk_extension(llhttp_t *p, const char *at, size_t len)
{
    (void)at;
    http_conn *conn = http_parser_conn(p);
    conn->chunk_ext_bytes += len;
    if (conn->chunk_ext_bytes > HTTP_MAX_CHUNK_EXTENSION_BYTES) {
        http_conn_reject(conn, 400, "malformed request: chunk extensions exceed %d bytes",
                         HTTP_MAX_CHUNK_EXTENSION_BYTES);
        return HPE_USER;
    }
    return 0;
}

/* A chunk-size line is bounded like its extensions (HTTP_MAX_CHUNK_EXTENSION_BYTES), but llhttp
 * reports neither its start nor its digits — and accepts any number of leading zeros — so its length
 * is measured from outside: the bytes parsed from the end of the last chunk data up to `upto`, across
 * reads (chunk_framing_bytes carries the count from earlier reads). Only framing lies between two
 * chunks' data (CRLF, size, extensions), so this never refuses a valid body. Checked when the next
 * chunk's data begins and after every read; a last chunk ("0…") read whole in one read is bounded by
 * that read's size instead. Rejects the request (400, close) and returns false when it is too long. */
bool http_parser_chunk_line_ok(http_conn *conn, const char *upto)
{
    if (conn->chunk_data_end)
        conn->chunk_framing_bytes = (uint32_t)(upto - conn->chunk_data_end);
    else
        conn->chunk_framing_bytes += (uint32_t)(upto - conn->chunk_parse_start);
    conn->chunk_parse_start = upto; /* counted: a later check this read adds only what follows */
    /* CRLF after the data, 16 hex digits of size and the line's own CRLF are always allowed */
    if (conn->chunk_framing_bytes <= HTTP_MAX_CHUNK_EXTENSION_BYTES + 20)
        return true;
    http_conn_reject(conn, 400, "malformed request: a chunk-size line exceeds %d bytes",
                     HTTP_MAX_CHUNK_EXTENSION_BYTES);
    return false;
}

static int http_parser_on_chunk_header(llhttp_t *p)
{
    http_conn *conn = http_parser_conn(p);
    conn->chunk_data_next = true;
    conn->chunk_ext_bytes = 0; /* the bound is per chunk-size line */
    if (p->content_length == 0)
        conn->last_chunk = true;
    /* llhttp puts the announced chunk size in content_length: refuse before reading the chunk. */
    if (p->content_length > conn->body_limit - conn->body_total) {
        http_conn_reject(conn, 413, "request body exceeds %zu bytes", conn->body_limit);
        return HPE_USER;
    }
    return 0;
}

static int http_parser_on_body(llhttp_t *p, const char *at, size_t len)
{
    http_conn *conn = http_parser_conn(p);
    if (conn->chunk_data_next) {
        conn->chunk_data_next = false;
        if (!http_parser_chunk_line_ok(conn, at))
            return HPE_USER;
    }
    conn->chunk_data_end = at + len;
    if (conn->discard_body)
        return 0; /* the request is refused from its head (no route, 405, 415): its body is of no use */
    if (len > conn->body_limit - conn->body_total) {
        http_conn_reject(conn, 413, "request body exceeds %zu bytes", conn->body_limit);
        return HPE_USER;
    }
    conn->body_total += len;
    if (conn->body_stream)
        http_body_stream_take(conn, at, len); /* ROUTE_BODY_STREAM: handed out piece by piece */
    else
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
    .on_header_field_complete = http_parser_on_header_field_complete,
    .on_header_value = http_parser_on_header_value,
    .on_header_value_complete = http_parser_on_header_value_complete,
    .on_headers_complete = http_parser_on_headers_complete,
    .on_chunk_extension_name = http_parser_on_chunk_extension,
    .on_chunk_extension_value = http_parser_on_chunk_extension,
    .on_chunk_header = http_parser_on_chunk_header,
    .on_body = http_parser_on_body,
    .on_message_complete = http_parser_on_message_complete,
};

const llhttp_settings_t *http_parser_settings(void) { return &http_parser_callbacks; }
