/* json_valid: see json_valid_internal.h. An explicit stack of open containers (one bit each: object or
 * array) instead of recursion, so no text can exhaust the C stack. */
#include "json_valid_internal.h"

#include <stdint.h>
#include <string.h>

size_t json_utf8_len(const unsigned char *s, size_t avail)
{
    size_t n;
    unsigned c = s[0];
    if (c >= 0xc2 && c <= 0xdf)
        n = 2;
    else if (c >= 0xe0 && c <= 0xef)
        n = 3;
    else if (c >= 0xf0 && c <= 0xf4)
        n = 4;
    else
        return 0; /* ASCII, a continuation byte first, 0xc0/0xc1 (overlong) or above U+10FFFF */
    if (avail < n)
        return 0;
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if (n == 3 && ((c == 0xe0 && s[1] < 0xa0) || (c == 0xed && s[1] >= 0xa0)))
        return 0; /* overlong, or a UTF-16 surrogate */
    if (n == 4 && ((c == 0xf0 && s[1] < 0x90) || (c == 0xf4 && s[1] >= 0x90)))
        return 0; /* overlong, or above U+10FFFF */
    return n;
}

typedef struct json_valid_cursor {
    const unsigned char *p, *end;
} json_valid_cursor;

static void json_valid_ws(json_valid_cursor *c) { c->p = json_skip_ws(c->p, c->end); }

long json_hex4(const unsigned char *p, const unsigned char *end)
{
    if (end - p < 4)
        return -1;
    long v = 0;
    for (int i = 0; i < 4; i++) {
        unsigned d = p[i];
        if (d >= '0' && d <= '9')
            d -= '0';
        else if ((d | 0x20) >= 'a' && (d | 0x20) <= 'f')
            d = (d | 0x20) - 'a' + 10;
        else
            return -1;
        v = v << 4 | d;
    }
    return v;
}

/* True when none of the 8 bytes of x ends or complicates a string: no '"', no '\\', no control
 * character, no byte >= 0x80 (the usual bit tricks: a byte b has (b - 1) & ~b & 0x80 set only when
 * it is zero, and (b - 0x20) & ~b & 0x80 only when it is below 0x20). */
static bool json_valid_plain8(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
    uint64_t quote = x ^ (ones * '"'), slash = x ^ (ones * '\\');
    uint64_t special = ((quote - ones) & ~quote) | ((slash - ones) & ~slash) | ((x - ones * 0x20) & ~x) | x;
    return (special & highs) == 0;
}

size_t json_plain_run(const unsigned char *s, size_t avail)
{
    size_t n = 0;
    uint64_t eight;
    while (avail - n >= 8 && (memcpy(&eight, s + n, 8), json_valid_plain8(eight)))
        n += 8;
    while (n < avail && s[n] >= 0x20 && s[n] < 0x80 && s[n] != '"' && s[n] != '\\')
        n++;
    return n;
}

/* A string, at its opening quote. Runs of plain ASCII go 8 bytes at a time: a long string from a
 * backend is validated at memory speed rather than a branch per byte. */
static bool json_valid_string(json_valid_cursor *c)
{
    const unsigned char *p = c->p + 1, *end = c->end;
    while (p < end) {
        p += json_plain_run(p, (size_t)(end - p));
        if (p == end)
            break;
        unsigned ch = *p;
        if (ch == '"') {
            c->p = p + 1;
            return true;
        }
        if (ch < 0x20)
            return false;
        if (ch < 0x80 && ch != '\\') {
            p++;
            continue;
        }
        if (ch >= 0x80) {
            size_t n = json_utf8_len(p, (size_t)(end - p));
            if (n == 0)
                return false;
            p += n;
            continue;
        }
        if (end - p < 2) /* a backslash */
            return false;
        switch (p[1]) {
        case '"': case '\\': case '/': case 'b': case 'f': case 'n': case 'r': case 't':
            p += 2;
            continue;
        case 'u': break;
        default: return false;
        }
        long u = json_hex4(p + 2, end);
        if (u < 0 || (u >= 0xdc00 && u <= 0xdfff))
            return false; /* not hex, or a low surrogate on its own */
        p += 6;
        if (u >= 0xd800 && u <= 0xdbff) { /* a high surrogate: its low half must follow */
            if (end - p < 2 || p[0] != '\\' || p[1] != 'u')
                return false;
            long low = json_hex4(p + 2, end);
            if (low < 0xdc00 || low > 0xdfff)
                return false;
            p += 6;
        }
    }
    return false;
}

static bool json_valid_digits(json_valid_cursor *c)
{
    const unsigned char *start = c->p;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
        c->p++;
    return c->p > start;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static bool json_valid_number(json_valid_cursor *c)
{
    if (*c->p == '-')
        c->p++;
    if (c->p == c->end)
        return false;
    if (*c->p == '0')
        c->p++;
    else if (!json_valid_digits(c))
        return false;
    if (c->p < c->end && *c->p == '.') {
        c->p++;
        if (!json_valid_digits(c))
            return false;
    }
    if (c->p < c->end && (*c->p == 'e' || *c->p == 'E')) {
        c->p++;
        if (c->p < c->end && (*c->p == '+' || *c->p == '-'))
            c->p++;
        if (!json_valid_digits(c))
            return false;
    }
    return true;
}

static bool json_valid_literal(json_valid_cursor *c, const char *word, size_t len)
{
    if ((size_t)(c->end - c->p) < len)
        return false;
    for (size_t i = 0; i < len; i++)
        if (c->p[i] != (unsigned char)word[i])
            return false;
    c->p += len;
    return true;
}

bool json_valid(const char *text, size_t len, size_t max_depth)
{
    return json_valid_bounded(text, len, max_depth, SIZE_MAX) == JSON_VALID_OK;
}

json_valid_result json_valid_bounded(const char *text, size_t len, size_t max_depth, size_t max_values)
{
    if (max_depth > JSON_VALID_MAX_DEPTH)
        max_depth = JSON_VALID_MAX_DEPTH;
    uint8_t objects[JSON_VALID_MAX_DEPTH / 8]; /* bit d: the container at depth d is an object */
    size_t depth = 0, values = 0;
    json_valid_cursor c = {(const unsigned char *)text, (const unsigned char *)text + len};
    for (;;) {
        /* ---- a value ---- */
        json_valid_ws(&c);
        if (c.p == c.end)
            return JSON_VALID_INVALID;
        if (++values > max_values)
            return JSON_VALID_TOO_MANY;
        switch (*c.p) {
        case '{':
        case '[': {
            bool object = *c.p == '{';
            if (depth == max_depth)
                return JSON_VALID_TOO_DEEP;
            objects[depth / 8] = (uint8_t)((objects[depth / 8] & ~(1u << depth % 8)) | (unsigned)object << depth % 8);
            depth++;
            c.p++;
            json_valid_ws(&c);
            if (c.p < c.end && *c.p == (object ? '}' : ']')) {
                c.p++;
                depth--;
                break; /* empty: the value is complete */
            }
            if (object) {
                if (c.p == c.end || *c.p != '"' || !json_valid_string(&c))
                    return JSON_VALID_INVALID;
                json_valid_ws(&c);
                if (c.p == c.end || *c.p++ != ':')
                    return JSON_VALID_INVALID;
            }
            continue; /* the first member's or element's value */
        }
        case '"':
            if (!json_valid_string(&c))
                return JSON_VALID_INVALID;
            break;
        case 't':
            if (!json_valid_literal(&c, "true", 4))
                return JSON_VALID_INVALID;
            break;
        case 'f':
            if (!json_valid_literal(&c, "false", 5))
                return JSON_VALID_INVALID;
            break;
        case 'n':
            if (!json_valid_literal(&c, "null", 4))
                return JSON_VALID_INVALID;
            break;
        default:
            if (*c.p != '-' && (*c.p < '0' || *c.p > '9'))
                return JSON_VALID_INVALID;
            if (!json_valid_number(&c))
                return JSON_VALID_INVALID;
        }
        /* ---- a value is complete: what may follow it ---- */
        for (;;) {
            json_valid_ws(&c);
            if (depth == 0)
                return c.p == c.end ? JSON_VALID_OK : JSON_VALID_INVALID;
            if (c.p == c.end)
                return JSON_VALID_INVALID;
            bool object = objects[(depth - 1) / 8] >> (depth - 1) % 8 & 1;
            unsigned ch = *c.p++;
            if (ch == (object ? '}' : ']')) {
                depth--;
                continue;
            }
            if (ch != ',')
                return JSON_VALID_INVALID;
            if (object) {
                json_valid_ws(&c);
                if (c.p == c.end || *c.p != '"' || !json_valid_string(&c))
                    return JSON_VALID_INVALID;
                json_valid_ws(&c);
                if (c.p == c.end || *c.p++ != ':')
                    return JSON_VALID_INVALID;
            }
            break; /* the next value */
        }
    }
}
