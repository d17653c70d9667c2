/* http_fasthead: a direct reader for the commonest request head, beside llhttp. See http_fasthead.c
 * for what it takes and why it is safe to take. Not installed. */
#ifndef APIARY_HTTP_FASTHEAD_H
#define APIARY_HTTP_FASTHEAD_H

#include <stddef.h>

#include "http_internal.h"

/* A head read by http_fasthead_read: the spans llhttp's callbacks would have recorded (http_parser.c),
 * relative to the head's first byte, with trailing whitespace already trimmed from the values. The
 * method is GET and the version HTTP/1.1; no field changes framing or the connection. */
typedef struct http_fasthead {
    http_span url;
    size_t header_count;
    http_header_span headers[HTTP_SLOT_INLINE_HEADERS];
} http_fasthead;

/* The limits a head must stay within to be taken here; past any of them llhttp reads it and the
 * callbacks give the refusal its usual words (414, 431). */
typedef struct http_fasthead_limits {
    size_t max_url_bytes;
    size_t max_header_bytes;
    size_t max_headers;
} http_fasthead_limits;

/* When p[0..n) starts with a whole head this reader takes, fills *out and returns the head's length
 * (through its empty line); otherwise returns 0 and the message is llhttp's, from its first byte.
 * Never reads past p[n - 1]. */
size_t http_fasthead_read(const char *p, size_t n, const http_fasthead_limits *limits, http_fasthead *out);

#endif
