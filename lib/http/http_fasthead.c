/* http_fasthead: reads the commonest request head directly, so that it costs a pass over its bytes
 * with a table instead of llhttp's state machine and a callback per token (llhttp was the largest
 * user-space cost of a pipelined GET: ~760 of ~3,800 instructions, docs/benchmarks.md).
 *
 * It takes only a strict subset of what llhttp takes, and for every head it takes it records exactly
 * what llhttp's callbacks would (http_parser.c): the same url and header spans, method GET, HTTP/1.1,
 * no framing flags. So the engine cannot tell which of the two read a head, and no request can be
 * understood one way here and another way there (the root of request smuggling). The subset:
 *
 *   "GET /" target " HTTP/1.1" CRLF, then fields of the form  token ":" OWS value OWS CRLF,  then CRLF
 *
 * - the target is an origin-form of letters, digits and - . _ ~ ! $ & ' ( ) * + , ; = : @ / ? % (no
 *   fragment, no spaces, nothing above 0x7e);
 * - a field name is a token (RFC 9110 5.6.2), never empty; a value is visible ASCII, spaces and tabs;
 *   no obs-fold, no bare LF, no byte above 0x7e;
 * - no Content-Length, Transfer-Encoding, Connection, Proxy-Connection or Upgrade field: these are the
 *   ones llhttp acts on (framing, keep-alive, upgrade), so a head with any of them is llhttp's;
 * - within the limits (target, head size, field count) and at most HTTP_SLOT_INLINE_HEADERS fields.
 *
 * Anything else — another method, HTTP/1.0, blank lines first, a head not yet whole — is declined, and
 * llhttp reads the message from its first byte as before. tests/unit/http/fasthead_test.c checks every
 * single-byte change of a set of heads against llhttp, and tests/fuzz/fuzz_fasthead.c does the same
 * for arbitrary input. */
#include "http_fasthead_internal.h"

#include <stdbool.h>
#include <string.h>
#include <strings.h>

enum {
    FH_TOKEN = 1,  /* tchar: a field name's bytes */
    FH_TARGET = 2, /* the bytes an origin-form target may hold here */
    FH_VALUE = 4,  /* VCHAR, SP, HTAB: a field value's bytes */
};

static const unsigned char fh_class[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 0, 0, /* 0x00: HTAB */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, /* 0x10 */
    4, 7, 4, 5, 7, 7, 7, 7, 6, 6, 7, 7, 6, 7, 7, 6, /* 0x20: SP ! " # $ % & ' ( ) * + , - . / */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 4, 6, 4, 6, /* 0x30: 0-9 : ; < = > ? */
    6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x40: @ A-O */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 4, 4, 4, 5, 7, /* 0x50: P-Z [ \ ] ^ _ */
    5, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, /* 0x60: ` a-o */
    7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 4, 5, 4, 7, 0, /* 0x70: p-z { | } ~ DEL */
    /* 0x80-0xff: nothing */
};

/* The fields llhttp acts on (llhttp 8: framing, keep-alive and upgrade); a head with one is llhttp's. */
static bool fh_llhttp_field(const char *name, size_t len)
{
    switch (len) {
    case 7: return strncasecmp(name, "upgrade", 7) == 0;
    case 10: return strncasecmp(name, "connection", 10) == 0;
    case 14: return strncasecmp(name, "content-length", 14) == 0;
    case 16: return strncasecmp(name, "proxy-connection", 16) == 0;
    case 17: return strncasecmp(name, "transfer-encoding", 17) == 0;
    default: return false;
    }
}

static size_t fh_skip(const unsigned char *p, size_t i, size_t n, unsigned cls)
{
    while (i < n && (fh_class[p[i]] & cls))
        i++;
    return i;
}

size_t http_fasthead_read(const char *text, size_t n, const http_fasthead_limits *limits, http_fasthead *out)
{
    static const char line_start[] = "GET /", version[] = " HTTP/1.1\r\n";
    const unsigned char *p = (const unsigned char *)text;
    /* The shortest head: "GET / HTTP/1.1\r\n\r\n". */
    if (n < 18 || memcmp(p, line_start, sizeof(line_start) - 1) != 0)
        return 0;
    size_t i = fh_skip(p, 5, n, FH_TARGET);
    size_t url_len = i - 4;
    if (url_len > limits->max_url_bytes || n - i < sizeof(version) - 1 ||
        memcmp(p + i, version, sizeof(version) - 1) != 0)
        return 0;
    out->url = (http_span){4, (uint32_t)url_len};
    i += sizeof(version) - 1;
    size_t max_fields = limits->max_headers < HTTP_SLOT_INLINE_HEADERS ? limits->max_headers : HTTP_SLOT_INLINE_HEADERS;
    size_t count = 0;
    for (;;) {
        if (n - i < 2 || i > limits->max_header_bytes)
            return 0;
        if (p[i] == '\r') {
            if (p[i + 1] != '\n')
                return 0;
            i += 2;
            break; /* the empty line: the head is whole */
        }
        size_t name = i;
        i = fh_skip(p, i, n, FH_TOKEN);
        if (i == name || i == n || p[i] != ':' || fh_llhttp_field(text + name, i - name) || count == max_fields)
            return 0;
        size_t name_len = i - name;
        i++;
        while (i < n && (p[i] == ' ' || p[i] == '\t'))
            i++;
        size_t value = i;
        i = fh_skip(p, i, n, FH_VALUE);
        if (n - i < 2 || p[i] != '\r' || p[i + 1] != '\n')
            return 0;
        size_t end = i;
        while (end > value && (p[end - 1] == ' ' || p[end - 1] == '\t'))
            end--;
        /* llhttp reports no value at all for an empty one, and the span stays {0, 0}. */
        out->headers[count++] = (http_header_span){
            {(uint32_t)name, (uint32_t)name_len},
            end > value ? (http_span){(uint32_t)value, (uint32_t)(end - value)} : (http_span){0, 0}};
        i += 2;
    }
    if (i > limits->max_header_bytes)
        return 0;
    out->header_count = count;
    return i;
}
