/* http_client_parse: reads one HTTP/1.x response with llhttp (HTTP_RESPONSE) for the HTTP client:
 * Content-Length, chunked and close-delimited bodies, interim 1xx answers skipped, and the size limits
 * enforced the moment they are crossed (an announced Content-Length or chunk size over the limit
 * fails before a byte of it is read). The status, the header fields of the final response (at most
 * HTTP_CLIENT_MAX_HEAD_BYTES of them, with the status text) and the body are kept. */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "http_client_internal.h"
#include "xalloc_internal.h"

static http_client_reader *http_client_reader_of(llhttp_t *p) { return p->data; }

static int http_client_reader_fail(http_client_reader *r, http_client_error kind)
{
    r->failed = true;
    r->error = kind;
    return HPE_USER;
}

static int http_client_on_message_begin(llhttp_t *p)
{
    http_client_reader *r = http_client_reader_of(p);
    r->status = 0;
    r->head_bytes = 0;
    r->body_len = 0;
    r->head_len = 0; /* an interim answer's fields are not the final response's */
    r->field_count = 0;
    r->in_field = r->in_value = false;
    return 0;
}

/* Status text: not kept, but counted, so an endless head still ends. */
static int http_client_on_head_bytes(llhttp_t *p, const char *at, size_t len)
{
    (void)at;
    http_client_reader *r = http_client_reader_of(p);
    r->head_bytes += len;
    if (r->head_bytes > HTTP_CLIENT_MAX_HEAD_BYTES)
        return http_client_reader_fail(r, HTTP_CLIENT_ERR_RESPONSE_TOO_LARGE);
    return 0;
}

/* Appends to the stored head; the head's bound was checked, so this grows to at most three times it. */
static void http_client_head_append(http_client_reader *r, const char *at, size_t len)
{
    if (len == 0)
        return;
    if (r->head_len + len > r->head_cap) {
        size_t cap = r->head_cap ? r->head_cap : 512;
        while (cap < r->head_len + len)
            cap *= 2;
        r->head = xrealloc(r->head, cap);
        r->head_cap = cap;
    }
    memcpy(r->head + r->head_len, at, len);
    r->head_len += len;
}

/* llhttp may hand a name or a value over in pieces (split across reads): pieces are appended, and
 * the *_complete callbacks end each with a NUL. */
/* A field begins: its name starts at the end of the stored head. Also called for a name llhttp
 * completes without handing over a byte of it (an empty name, which it lets through). Returns false
 * past HTTP_CLIENT_MAX_FIELDS: "a:" repeated costs one counted head byte per field, and a field's
 * bookkeeping is more than that. */
static bool http_client_field_begin(http_client_reader *r)
{
    if (r->in_field)
        return true;
    if (r->field_count >= HTTP_CLIENT_MAX_FIELDS)
        return false;
    if (r->field_count * 2 + 2 > r->fields_cap) {
        r->fields_cap = r->fields_cap ? r->fields_cap * 2 : 32;
        r->fields = xrealloc(r->fields, r->fields_cap * sizeof(*r->fields));
    }
    r->fields[r->field_count * 2] = (uint32_t)r->head_len;
    r->in_field = true;
    return true;
}

static int http_client_on_header_field(llhttp_t *p, const char *at, size_t len)
{
    http_client_reader *r = http_client_reader_of(p);
    if (http_client_on_head_bytes(p, at, len) != 0)
        return HPE_USER;
    if (!http_client_field_begin(r))
        return http_client_reader_fail(r, HTTP_CLIENT_ERR_RESPONSE_TOO_LARGE);
    http_client_head_append(r, at, len);
    return 0;
}

static int http_client_on_header_field_complete(llhttp_t *p)
{
    http_client_reader *r = http_client_reader_of(p);
    if (!http_client_field_begin(r))
        return http_client_reader_fail(r, HTTP_CLIENT_ERR_RESPONSE_TOO_LARGE);
    http_client_head_append(r, "", 1);
    r->fields[r->field_count * 2 + 1] = (uint32_t)r->head_len; /* the value starts here */
    r->in_field = false;
    r->in_value = true;
    return 0;
}

static int http_client_on_header_value(llhttp_t *p, const char *at, size_t len)
{
    http_client_reader *r = http_client_reader_of(p);
    if (http_client_on_head_bytes(p, at, len) != 0)
        return HPE_USER;
    http_client_head_append(r, at, len);
    return 0;
}

static int http_client_on_header_value_complete(llhttp_t *p)
{
    http_client_reader *r = http_client_reader_of(p);
    if (!r->in_value)
        return 0; /* never without a name first; but the stored fields must stay pairs whatever happens */
    r->in_value = false;
    size_t start = r->fields[r->field_count * 2 + 1];
    while (r->head_len > start && (r->head[r->head_len - 1] == ' ' || r->head[r->head_len - 1] == '\t'))
        r->head_len--; /* whitespace after the value is not part of it (RFC 9110 5.5) */
    http_client_head_append(r, "", 1);
    r->field_count++;
    return 0;
}

/* Grows the body buffer to hold `more` bytes; the caller has checked the limit. */
static void http_client_reader_reserve(http_client_reader *r, size_t more)
{
    size_t need = r->body_len + more;
    if (need <= r->body_cap)
        return;
    size_t cap = r->body_cap ? r->body_cap : 4096;
    while (cap < need)
        cap *= 2;
    if (cap > r->max_body)
        cap = r->max_body;
    r->body = xrealloc(r->body, cap);
    r->body_cap = cap;
}

static int http_client_on_headers_complete(llhttp_t *p)
{
    http_client_reader *r = http_client_reader_of(p);
    r->status = p->status_code;
    /* We never ask to switch protocols; what would follow is not HTTP. */
    if (r->status == 101 || p->upgrade)
        return http_client_reader_fail(r, HTTP_CLIENT_ERR_MALFORMED_RESPONSE);
    if (r->status < 200)
        return 0; /* interim answer: llhttp ends its message here, the final one follows */
    if (r->head_only)
        return 1; /* tells llhttp the response to HEAD has no body */
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0) {
        if (p->content_length > r->max_body)
            return http_client_reader_fail(r, HTTP_CLIENT_ERR_RESPONSE_TOO_LARGE);
        http_client_reader_reserve(r, (size_t)p->content_length); /* one allocation for the whole body */
    }
    return 0;
}

static int http_client_on_chunk_header(llhttp_t *p)
{
    http_client_reader *r = http_client_reader_of(p);
    /* llhttp puts the announced chunk size in content_length: refuse before reading the chunk. */
    if (p->content_length > r->max_body - r->body_len)
        return http_client_reader_fail(r, HTTP_CLIENT_ERR_RESPONSE_TOO_LARGE);
    return 0;
}

static int http_client_on_body(llhttp_t *p, const char *at, size_t len)
{
    http_client_reader *r = http_client_reader_of(p);
    if (len > r->max_body - r->body_len)
        return http_client_reader_fail(r, HTTP_CLIENT_ERR_RESPONSE_TOO_LARGE);
    http_client_reader_reserve(r, len);
    memcpy(r->body + r->body_len, at, len);
    r->body_len += len;
    return 0;
}

static int http_client_on_message_complete(llhttp_t *p)
{
    http_client_reader *r = http_client_reader_of(p);
    if (r->status < 200)
        return 0; /* the interim answer is over; keep parsing for the final one */
    r->done = true;
    return HPE_PAUSED; /* stop right after the response: what follows shows in *used */
}

static const llhttp_settings_t http_client_parse_callbacks = {
    .on_message_begin = http_client_on_message_begin,
    .on_status = http_client_on_head_bytes,
    .on_header_field = http_client_on_header_field,
    .on_header_field_complete = http_client_on_header_field_complete,
    .on_header_value = http_client_on_header_value,
    .on_header_value_complete = http_client_on_header_value_complete,
    .on_headers_complete = http_client_on_headers_complete,
    .on_chunk_header = http_client_on_chunk_header,
    .on_body = http_client_on_body,
    .on_message_complete = http_client_on_message_complete,
};

void http_client_reader_start(http_client_reader *r, size_t max_body, bool head_only)
{
    http_client_reader_release(r);
    memset(r, 0, sizeof(*r));
    llhttp_init(&r->parser, HTTP_RESPONSE, &http_client_parse_callbacks);
    r->parser.data = r;
    r->max_body = max_body;
    r->head_only = head_only;
}

http_client_read_status http_client_reader_feed(http_client_reader *r, const char *data, size_t len, size_t *used)
{
    *used = 0;
    if (r->done || r->failed)
        return r->done ? HTTP_CLIENT_READ_DONE : HTTP_CLIENT_READ_FAILED;
    if (len > 0)
        r->got_bytes = true;
    llhttp_errno_t err = llhttp_execute(&r->parser, data, len);
    if (err == HPE_OK) {
        *used = len;
        return HTTP_CLIENT_READ_MORE;
    }
    if (err == HPE_PAUSED && r->done) {
        *used = (size_t)(llhttp_get_error_pos(&r->parser) - data);
        return HTTP_CLIENT_READ_DONE;
    }
    if (!r->failed) {
        r->failed = true;
        r->error = HTTP_CLIENT_ERR_MALFORMED_RESPONSE;
    }
    return HTTP_CLIENT_READ_FAILED;
}

http_client_read_status http_client_reader_eof(http_client_reader *r)
{
    if (r->done || r->failed)
        return r->done ? HTTP_CLIENT_READ_DONE : HTTP_CLIENT_READ_FAILED;
    llhttp_errno_t err = llhttp_finish(&r->parser);
    if (r->done)
        return HTTP_CLIENT_READ_DONE; /* a body delimited by the close */
    if (!r->failed) {
        r->failed = true;
        /* Closed before the response ended (or began): the connection broke, the bytes were fine. A
         * head that llhttp found broken only at the end is a malformed response. */
        r->error = err == HPE_OK || err == HPE_INVALID_EOF_STATE ? HTTP_CLIENT_ERR_CONNECTION_RESET
                                                                 : HTTP_CLIENT_ERR_MALFORMED_RESPONSE;
    }
    return HTTP_CLIENT_READ_FAILED;
}

bool http_client_reader_keep_alive(const http_client_reader *r)
{
    return r->done && llhttp_should_keep_alive(&r->parser);
}

const char *http_client_reader_header(const http_client_reader *r, const char *name)
{
    for (size_t i = 0; i < r->field_count; i++)
        if (strcasecmp(r->head + r->fields[2 * i], name) == 0)
            return r->head + r->fields[2 * i + 1];
    return NULL;
}

void http_client_reader_release(http_client_reader *r)
{
    free(r->body);
    r->body = NULL;
    r->body_len = r->body_cap = 0;
    free(r->head);
    r->head = NULL;
    r->head_len = r->head_cap = 0;
    free(r->fields);
    r->fields = NULL;
    r->field_count = r->fields_cap = 0;
}
