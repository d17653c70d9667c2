/* http_response: the wire format of responses. Writes a status line and headers straight into a
 * connection's output buffer with memcpy and a hand-rolled integer format (no printf, no heap), and
 * builds RFC 9457 problem bodies. Knows nothing about connections or requests, so it is unit-tested
 * on plain buffers. */
#ifndef APIARY_HTTP_RESPONSE_H
#define APIARY_HTTP_RESPONSE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "buf_internal.h"

#define HTTP_DATE_LEN 29 /* "Sun, 06 Nov 1994 08:49:37 GMT" */

typedef enum http_connection_header {
    HTTP_CONN_HEADER_NONE,       /* HTTP/1.1 keep-alive: nothing to say */
    HTTP_CONN_HEADER_KEEP_ALIVE, /* HTTP/1.0 client asked for keep-alive */
    HTTP_CONN_HEADER_CLOSE,
} http_connection_header;

typedef struct http_response_head {
    int status;
    const char *content_type;  /* NULL: no Content-Type (e.g. 100, 204) */
    size_t content_length;
    http_connection_header connection;
    const char *date;          /* HTTP_DATE_LEN characters, the loop's cached Date */
    const char *request_id;    /* sent as X-Request-Id when not NULL */
    const char *extra_headers; /* pre-formatted "Name: value\r\n" lines, or NULL */
    size_t extra_headers_len;
    /* A streamed answer (include/apiary/stream.h): its length is not known when the head is written,
     * so no Content-Length. With `chunked` (HTTP/1.1) the head says Transfer-Encoding: chunked; without
     * (HTTP/1.0) the body ends when the connection closes. Whatever transforms whole bodies (e.g.
     * compression) must leave a streamed answer alone: test this flag. */
    bool streamed;
    bool chunked;
    const char *content_encoding; /* "gzip", "br", or NULL for identity (http_compress.c) */
    bool vary_accept_encoding;    /* the answer depends on Accept-Encoding */
} http_response_head;

/* The reason phrase of a status ("Not Found"); "Unknown" for codes it does not know. */
const char *http_status_reason(int status);

/* The most bytes http_response_write_head can write for `head`, whatever its content_length. */
size_t http_response_head_max(const http_response_head *head);

/* Appends the status line, Server, Date, Content-Type, Content-Length, Connection, the extra
 * headers and the blank line. */
void http_response_write_head(buf *out, buf_cache *cache, const http_response_head *head);

/* Formats an IMF-fixdate (RFC 9110 5.6.7) into out, which holds HTTP_DATE_LEN + 1 bytes. */
void http_date_format(time_t t, char *out);

/* Builds {"type":"about:blank","title":<reason>,"status":status,"detail":detail} plus the members of
 * `extra` (taken). Never NULL. */
json_t *http_problem_new(int status, const char *detail, json_t *extra);


#endif
