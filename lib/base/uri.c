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

/* Bytes uri_decode does more with than copy: NUL (refused), '%' (an escape), '+' (a space in a query).
 * One table load per byte instead of three compares: every request's path and query pass through. */
static const unsigned char uri_decode_special[256] = {[0] = 1, ['%'] = 1, ['+'] = 1};

ssize_t uri_decode(char *dst, const char *src, size_t len, bool plus_as_space)
{
    /* Written through unsigned char so bytes >= 0x80 never go through an implementation-defined
     * int-to-char conversion. */
    unsigned char *out = (unsigned char *)dst;
    const unsigned char *in = (const unsigned char *)src, *end = in + len;

    while (in < end) {
        int c = *in++;
        if (!uri_decode_special[c]) {
            *out++ = (unsigned char)c;
            continue;
        }
        if (c == '%') {
            c = uri_decode_escape((const char *)in - 1, (size_t)(end - in) + 1);
            in += 2;
        } else if (c == '+' && plus_as_space) {
            c = ' ';
        }
        /* A raw NUL is refused like "%00": either would truncate the string a handler sees. */
        if (c <= 0) {
            *out = '\0';
            return -1;
        }
        *out++ = (unsigned char)c;
    }
    *out = '\0';
    return (ssize_t)(out - (unsigned char *)dst);
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

/* Parses one non-empty "name=value" or "name" piece, decoding both into dst (query rules: '+' is a
 * space), which holds len + 2 bytes: the two decoded strings and their NULs never need more. */
static int uri_parse_pair(const char *piece, size_t len, char *dst, uri_param *p)
{
    const char *eq = memchr(piece, '=', len);
    size_t name_len = eq ? (size_t)(eq - piece) : len;
    const char *value = eq ? eq + 1 : piece + len;
    size_t value_len = eq ? len - name_len - 1 : 0;

    ssize_t n = uri_decode(dst, piece, name_len, true);
    if (n < 0)
        return -1;
    p->name = dst;
    p->name_len = (size_t)n;
    dst += n + 1;
    n = uri_decode(dst, value, value_len, true);
    if (n < 0)
        return -1;
    p->value = dst;
    p->value_len = (size_t)n;
    return 0;
}

int uri_parse_query(const char *query, size_t len, arena *a, uri_param *out, size_t max)
{
    size_t n = 0;
    size_t start = 0;
    /* One allocation for every decoded string: a piece of k bytes decodes to at most k + 2 (two NULs),
     * and there are at most (len + 1) / 2 non-empty pieces, the '&' between them included in len. */
    size_t pieces = (len + 1) / 2 < max ? (len + 1) / 2 : max;
    char *dst = arena_alloc(a, len + 2 * pieces);

    while (start < len) {
        const char *amp = memchr(query + start, '&', len - start);
        size_t end = amp ? (size_t)(amp - query) : len;
        if (end > start) {
            if (n == max || n == INT_MAX)
                return -1;
            if (uri_parse_pair(query + start, end - start, dst, &out[n]) < 0)
                return -1;
            dst = (char *)out[n].value + out[n].value_len + 1;
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

/* reg-name = *( unreserved / pct-encoded / sub-delims ) (RFC 3986 3.2.2), as a table: every request's
 * Host value is checked byte by byte. */
static const bool uri_reg_name_chars[256] = {
    ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1, ['g'] = 1, ['h'] = 1, ['i'] = 1,
    ['j'] = 1, ['k'] = 1, ['l'] = 1, ['m'] = 1, ['n'] = 1, ['o'] = 1, ['p'] = 1, ['q'] = 1, ['r'] = 1,
    ['s'] = 1, ['t'] = 1, ['u'] = 1, ['v'] = 1, ['w'] = 1, ['x'] = 1, ['y'] = 1, ['z'] = 1, ['A'] = 1,
    ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1, ['G'] = 1, ['H'] = 1, ['I'] = 1, ['J'] = 1,
    ['K'] = 1, ['L'] = 1, ['M'] = 1, ['N'] = 1, ['O'] = 1, ['P'] = 1, ['Q'] = 1, ['R'] = 1, ['S'] = 1,
    ['T'] = 1, ['U'] = 1, ['V'] = 1, ['W'] = 1, ['X'] = 1, ['Y'] = 1, ['Z'] = 1, ['0'] = 1, ['1'] = 1,
    ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1, ['-'] = 1,
    ['.'] = 1, ['_'] = 1, ['~'] = 1, ['!'] = 1, ['$'] = 1, ['&'] = 1, ['\''] = 1, ['('] = 1, [')'] = 1,
    ['*'] = 1, ['+'] = 1, [','] = 1, [';'] = 1, ['='] = 1,
};

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
            } else if (uri_reg_name_chars[c]) {
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
