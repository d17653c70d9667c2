/* uri: see uri.h. Percent-decoding, target splitting, query parsing and Host validation; pure,
 * allocation only in the caller's arena. */
#include "uri.h"

#include <arpa/inet.h>
#include <limits.h>
#include <netinet/in.h>
#include <string.h>

static int uri_hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Decodes the escape at src[0] ("%XX"), given `left` bytes from there on; returns the byte or -1. */
static int uri_decode_escape(const char *src, size_t left)
{
    if (left < 3)
        return -1;
    int hi = uri_hex_value(src[1]);
    int lo = uri_hex_value(src[2]);
    if (hi < 0 || lo < 0)
        return -1;
    return hi << 4 | lo;
}

ssize_t uri_decode(char *dst, const char *src, size_t len, bool plus_as_space)
{
    /* Written through unsigned char so bytes >= 0x80 never go through an implementation-defined
     * int-to-char conversion. */
    unsigned char *out = (unsigned char *)dst;
    size_t n = 0;

    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)src[i];
        if (c == '%') {
            c = uri_decode_escape(src + i, len - i);
            i += 2;
        } else if (c == '+' && plus_as_space) {
            c = ' ';
        }
        /* A raw NUL is refused like "%00": either would truncate the string a handler sees. */
        if (c <= 0) {
            out[n] = '\0';
            return -1;
        }
        out[n++] = (unsigned char)c;
    }
    out[n] = '\0';
    return (ssize_t)n;
}

void uri_split(const char *target, size_t len, const char **path, size_t *path_len, const char **query,
               size_t *query_len)
{
    /* A '?' inside the fragment ("/a#x?y") belongs to the fragment, so only a '?' before any '#' counts.
     * memchr, not a byte loop: this runs on every request's target. */
    const char *hash = memchr(target, '#', len);
    size_t limit = hash ? (size_t)(hash - target) : len;
    const char *mark = memchr(target, '?', limit);
    size_t end = mark ? (size_t)(mark - target) : limit;
    *path = target;
    *path_len = end;
    *query = target + end;
    *query_len = 0;
    if (mark) {
        *query = mark + 1;
        *query_len = limit - end - 1;
    }
}

/* Decodes src[0..len) (query rules: '+' is a space) into a fresh NUL-terminated arena string. */
static const char *uri_decode_into(arena *a, const char *src, size_t len, size_t *out_len)
{
    char *dst = arena_alloc(a, len + 1);
    ssize_t n = uri_decode(dst, src, len, true);
    if (n < 0)
        return NULL;
    *out_len = (size_t)n;
    return dst;
}

/* Parses one non-empty "name=value" or "name" piece. */
static int uri_parse_pair(const char *piece, size_t len, arena *a, uri_param *p)
{
    const char *eq = memchr(piece, '=', len);
    size_t name_len = eq ? (size_t)(eq - piece) : len;
    const char *value = eq ? eq + 1 : piece + len;
    size_t value_len = eq ? len - name_len - 1 : 0;

    p->name = uri_decode_into(a, piece, name_len, &p->name_len);
    p->value = uri_decode_into(a, value, value_len, &p->value_len);
    return p->name && p->value ? 0 : -1;
}

int uri_parse_query(const char *query, size_t len, arena *a, uri_param *out, size_t max)
{
    size_t n = 0;
    size_t start = 0;

    while (start < len) {
        const char *amp = memchr(query + start, '&', len - start);
        size_t end = amp ? (size_t)(amp - query) : len;
        if (end > start) {
            if (n == max || n == INT_MAX)
                return -1;
            if (uri_parse_pair(query + start, end - start, a, &out[n]) < 0)
                return -1;
            n++;
        }
        start = end + 1;
    }
    return (int)n;
}

const char *uri_query_get(const uri_param *params, size_t n, const char *name)
{
    size_t len = strlen(name);
    /* Compared by length and bytes rather than strcmp so pairs built by hand need no terminator. */
    for (size_t i = 0; i < n; i++)
        if (params[i].name_len == len && memcmp(params[i].name, name, len) == 0)
            return params[i].value;
    return NULL;
}

/* reg-name = *( unreserved / pct-encoded / sub-delims ) (RFC 3986 3.2.2) */
static bool uri_reg_name_char(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
           c == '_' || c == '~' || c == '!' || c == '$' || c == '&' || c == '\'' || c == '(' || c == ')' ||
           c == '*' || c == '+' || c == ',' || c == ';' || c == '=';
}

bool uri_host_valid(const char *s, size_t len)
{
    size_t i = 0;
    if (len > 0 && s[0] == '[') {
        const char *close = memchr(s, ']', len);
        size_t inner = close ? (size_t)(close - s - 1) : 0;
        char addr[INET6_ADDRSTRLEN];
        struct in6_addr parsed;
        if (!close || inner == 0 || inner >= sizeof(addr))
            return false;
        memcpy(addr, s + 1, inner);
        addr[inner] = '\0';
        if (inet_pton(AF_INET6, addr, &parsed) != 1)
            return false; /* IPvFuture ("[v1.x]") names nothing a server can be reached at */
        i = inner + 2;
    } else {
        while (i < len && s[i] != ':') {
            unsigned char c = (unsigned char)s[i];
            if (c == '%') {
                if (i + 2 >= len || uri_hex_value(s[i + 1]) < 0 || uri_hex_value(s[i + 2]) < 0)
                    return false;
                i += 3;
            } else if (uri_reg_name_char(c)) {
                i++;
            } else {
                return false;
            }
        }
    }
    if (i == len)
        return true;
    if (s[i] != ':' || len - i - 1 > 5)
        return false;
    unsigned port = 0;
    for (size_t k = i + 1; k < len; k++) {
        if (s[k] < '0' || s[k] > '9')
            return false;
        port = port * 10 + (unsigned)(s[k] - '0');
    }
    return port <= 65535; /* "host:" (an empty port) is allowed by RFC 3986's port = *DIGIT */
}
