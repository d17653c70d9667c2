/* fasthead_check: the oracle for lib/http/http_fasthead.c, shared by its unit test and its fuzz target.
 * It reads the same bytes with llhttp, built as the engine builds it, through callbacks that record
 * what lib/http/http_parser.c's record, and says whether a head the fast reader took is one llhttp
 * reads exactly the same way. Header-only, static functions: each includer gets its own copy. */
#ifndef APIARY_TEST_FASTHEAD_CHECK_H
#define APIARY_TEST_FASTHEAD_CHECK_H

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "http_fasthead_internal.h"

#define FASTHEAD_CHECK_MAX_FIELDS 64

typedef struct fasthead_ref {
    const char *base;
    http_span url;
    size_t count;
    http_header_span fields[FASTHEAD_CHECK_MAX_FIELDS];
    bool in_value, odd, complete;
} fasthead_ref;

static fasthead_ref *fasthead_ref_of(llhttp_t *p) { return p->data; }

static int fasthead_ref_url(llhttp_t *p, const char *at, size_t len)
{
    fasthead_ref *r = fasthead_ref_of(p);
    if (r->url.len == 0)
        r->url.off = (uint32_t)(at - r->base);
    r->url.len += (uint32_t)len;
    return 0;
}

static int fasthead_ref_field(llhttp_t *p, const char *at, size_t len)
{
    fasthead_ref *r = fasthead_ref_of(p);
    if (r->count == 0 || r->in_value) {
        if (r->count == FASTHEAD_CHECK_MAX_FIELDS) {
            r->odd = true;
            return HPE_USER;
        }
        r->fields[r->count++] = (http_header_span){{(uint32_t)(at - r->base), 0}, {0, 0}};
        r->in_value = false;
    }
    r->fields[r->count - 1].name.len += (uint32_t)len;
    return 0;
}

static int fasthead_ref_field_complete(llhttp_t *p)
{
    fasthead_ref *r = fasthead_ref_of(p);
    if (r->fields[r->count - 1].name.len == 0)
        r->odd = true; /* http_parser.c refuses an empty name */
    return 0;
}

static int fasthead_ref_value(llhttp_t *p, const char *at, size_t len)
{
    fasthead_ref *r = fasthead_ref_of(p);
    http_header_span *h = &r->fields[r->count - 1];
    uint32_t rel = (uint32_t)(at - r->base);
    if (!r->in_value) {
        h->value.off = rel;
        r->in_value = true;
    } else if (h->value.off + h->value.len != rel) {
        r->odd = true; /* obs-fold: http_parser.c refuses it */
    }
    h->value.len += (uint32_t)len;
    return 0;
}

static int fasthead_ref_value_complete(llhttp_t *p)
{
    fasthead_ref *r = fasthead_ref_of(p);
    r->in_value = true;
    http_header_span *h = &r->fields[r->count - 1];
    while (h->value.len && (r->base[h->value.off + h->value.len - 1] == ' ' ||
                            r->base[h->value.off + h->value.len - 1] == '\t'))
        h->value.len--;
    return 0;
}

static int fasthead_ref_message_complete(llhttp_t *p)
{
    fasthead_ref_of(p)->complete = true;
    return HPE_PAUSED; /* as the engine: one message, then look */
}

static const llhttp_settings_t fasthead_ref_settings = {
    .on_url = fasthead_ref_url,
    .on_header_field = fasthead_ref_field,
    .on_header_field_complete = fasthead_ref_field_complete,
    .on_header_value = fasthead_ref_value,
    .on_header_value_complete = fasthead_ref_value_complete,
    .on_message_complete = fasthead_ref_message_complete,
};

static bool fasthead_span_eq(http_span a, http_span b) { return a.off == b.off && a.len == b.len; }

/* An empty value is empty wherever its span points: llhttp reports some empty values (all whitespace,
 * or none) at the next byte with a length of 0, others not at all ({0, 0}); nothing reads the offset of
 * a value of length 0. */
static bool fasthead_value_eq(http_span a, http_span b) { return a.len == 0 ? b.len == 0 : fasthead_span_eq(a, b); }

/* Reads p[0..n) with both readers. Returns 0 when the fast reader declines, 1 when it takes the head
 * and llhttp reads the same message the same way, -1 (and why) when they differ. */
static int fasthead_check(const char *p, size_t n, const http_fasthead_limits *limits, char *why, size_t why_len)
{
    http_fasthead fast;
    size_t used = http_fasthead_read(p, n, limits, &fast);
    if (used == 0)
        return 0;
    if (used > n || fast.url.len > limits->max_url_bytes || used > limits->max_header_bytes ||
        fast.header_count > limits->max_headers) {
        snprintf(why, why_len, "took %zu bytes of %zu, url %u, %zu fields: past its limits", used, n,
                 (unsigned)fast.url.len, fast.header_count);
        return -1;
    }
    fasthead_ref ref = {.base = p};
    llhttp_t parser;
    llhttp_init(&parser, HTTP_REQUEST, &fasthead_ref_settings);
    parser.data = &ref;
    llhttp_errno_t err = llhttp_execute(&parser, p, n);
    if (err != HPE_PAUSED || !ref.complete) {
        snprintf(why, why_len, "llhttp: %s (%s)", llhttp_errno_name(err),
                 parser.reason ? parser.reason : "no reason");
        return -1;
    }
    size_t end = (size_t)(llhttp_get_error_pos(&parser) - p);
    if (end != used || ref.odd || parser.method != HTTP_GET || parser.http_major != 1 || parser.http_minor != 1 ||
        parser.flags != 0 || parser.upgrade != 0 || parser.content_length != 0) {
        snprintf(why, why_len, "llhttp: message of %zu bytes (fast %zu), odd %d, method %d, HTTP/%d.%d, flags %#x, "
                 "upgrade %d", end, used, ref.odd, parser.method, parser.http_major, parser.http_minor,
                 (unsigned)parser.flags, parser.upgrade);
        return -1;
    }
    if (!fasthead_span_eq(ref.url, fast.url) || ref.count != fast.header_count) {
        snprintf(why, why_len, "url %u+%u / %u+%u, %zu / %zu fields", ref.url.off, ref.url.len, fast.url.off,
                 fast.url.len, ref.count, fast.header_count);
        return -1;
    }
    for (size_t i = 0; i < ref.count; i++) {
        if (!fasthead_span_eq(ref.fields[i].name, fast.headers[i].name) ||
            !fasthead_value_eq(ref.fields[i].value, fast.headers[i].value)) {
            snprintf(why, why_len, "field %zu: name %u+%u / %u+%u, value %u+%u / %u+%u", i, ref.fields[i].name.off,
                     ref.fields[i].name.len, fast.headers[i].name.off, fast.headers[i].name.len,
                     ref.fields[i].value.off, ref.fields[i].value.len, fast.headers[i].value.off,
                     fast.headers[i].value.len);
            return -1;
        }
    }
    return 1;
}

#endif
