/* json_compact: see json_compact_internal.h. One pass with an explicit stack of open containers (as
 * json_valid), writing as it reads. Duplicate member names are found by comparing each name's output
 * text (canonical, so equal text means equal names) with the names already seen in the same object:
 * a 64-bit hash and the length first, the bytes only when both match. */
#include "json_compact_internal.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "json_valid_internal.h"
#include "json_write_internal.h"

typedef struct json_compact_key {
    uint32_t hash;
    uint32_t off, len; /* the name's text in the output, quotes excluded (cap is below 4 GiB) */
} json_compact_key;

typedef struct json_compact_state {
    const unsigned char *p, *end;
    char *out;
    size_t o, cap;
} json_compact_state;

static void json_compact_ws(json_compact_state *s) { s->p = json_skip_ws(s->p, s->end); }

/* A string at its opening quote, written as json_write writes it. A string's output is never longer
 * than its input (every escape shrinks or keeps its length), so one room check covers it. `key`: a
 * member name, where U+0000 falls back (jansson refuses it there). */
static bool json_compact_string(json_compact_state *s, bool key)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = s->p + 1, *end = s->end;
    char *o = s->out + s->o;
    const char *limit = s->out + s->cap;
    if (limit - o < 1)
        return false;
    *o++ = '"';
    for (;;) {
        size_t run = json_plain_run(p, (size_t)(end - p));
        if ((size_t)(limit - o) < run + 8)
            return false;
        memcpy(o, p, run);
        o += run;
        p += run;
        if (p == end)
            return false;
        unsigned ch = *p;
        if (ch == '"') {
            *o++ = '"';
            s->p = p + 1;
            s->o = (size_t)(o - s->out);
            return true;
        }
        if (ch < 0x20)
            return false;
        if (ch >= 0x80) {
            size_t n = json_utf8_len(p, (size_t)(end - p));
            if (n == 0)
                return false;
            memcpy(o, p, n);
            o += n;
            p += n;
            continue;
        }
        /* a backslash */
        if (end - p < 2)
            return false;
        switch (p[1]) {
        case '"': case '\\': case 'b': case 'f': case 'n': case 'r': case 't':
            *o++ = '\\';
            *o++ = (char)p[1];
            p += 2;
            continue;
        case '/':
            *o++ = '/';
            p += 2;
            continue;
        case 'u': break;
        default: return false;
        }
        long u = json_hex4(p + 2, end);
        if (u < 0 || (u >= 0xdc00 && u <= 0xdfff))
            return false;
        p += 6;
        if (u >= 0xd800 && u <= 0xdbff) {
            if (end - p < 6 || p[0] != '\\' || p[1] != 'u')
                return false;
            long low = json_hex4(p + 2, end);
            if (low < 0xdc00 || low > 0xdfff)
                return false;
            p += 6;
            u = 0x10000 + ((u - 0xd800) << 10) + (low - 0xdc00);
        }
        if (u < 0x20 || u == '"' || u == '\\') {
            if (u == 0 && key)
                return false;
            *o++ = '\\';
            switch (u) {
            case '"': *o++ = '"'; break;
            case '\\': *o++ = '\\'; break;
            case '\b': *o++ = 'b'; break;
            case '\f': *o++ = 'f'; break;
            case '\n': *o++ = 'n'; break;
            case '\r': *o++ = 'r'; break;
            case '\t': *o++ = 't'; break;
            default:
                memcpy(o, "u00", 3);
                o[3] = hex[u >> 4];
                o[4] = hex[u & 15];
                o += 5;
            }
        } else if (u < 0x80) {
            *o++ = (char)u;
        } else if (u < 0x800) {
            *o++ = (char)(0xc0 | u >> 6);
            *o++ = (char)(0x80 | (u & 0x3f));
        } else if (u < 0x10000) {
            *o++ = (char)(0xe0 | u >> 12);
            *o++ = (char)(0x80 | (u >> 6 & 0x3f));
            *o++ = (char)(0x80 | (u & 0x3f));
        } else {
            *o++ = (char)(0xf0 | u >> 18);
            *o++ = (char)(0x80 | (u >> 12 & 0x3f));
            *o++ = (char)(0x80 | (u >> 6 & 0x3f));
            *o++ = (char)(0x80 | (u & 0x3f));
        }
    }
}

/* 10^0 .. 10^22: exact doubles. */
static const double json_compact_pow10[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                                              1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

/* A number at its first character ('-' or a digit). Integers must fit int64 and are written in plain
 * decimal; reals are read exactly (the classic fast path when the digits fit 2^53 and the power of ten
 * is exact, strtod otherwise) and written by json_write_real. */
static bool json_compact_number(json_compact_state *s)
{
    const unsigned char *start = s->p, *p = s->p, *end = s->end;
    bool neg = false;
    if (*p == '-') {
        neg = true;
        p++;
    }
    if (p == end || *p < '0' || *p > '9')
        return false;
    uint64_t m = 0;
    int digits = 0;       /* significant digits in m (leading zeros not counted) */
    bool exact = true;    /* m holds every digit */
    if (*p == '0') {
        p++;
    } else {
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                m = m * 10 + (*p - '0');
                if (m)
                    digits++;
            } else {
                exact = false;
            }
            p++;
        }
    }
    int frac = 0; /* digits after the point kept in m */
    bool real = false;
    if (p < end && *p == '.') {
        real = true;
        p++;
        const unsigned char *f = p;
        while (p < end && *p >= '0' && *p <= '9') {
            if (digits < 19) {
                m = m * 10 + (*p - '0');
                if (m)
                    digits++;
                frac++;
            } else if (*p != '0') {
                exact = false;
            }
            p++;
        }
        if (p == f)
            return false;
    }
    long exp = 0;
    if (p < end && (*p == 'e' || *p == 'E')) {
        real = true;
        p++;
        bool eneg = false;
        if (p < end && (*p == '+' || *p == '-'))
            eneg = *p++ == '-';
        const unsigned char *e = p;
        while (p < end && *p >= '0' && *p <= '9') {
            if (exp < 100000)
                exp = exp * 10 + (*p - '0');
            p++;
        }
        if (p == e)
            return false;
        if (eneg)
            exp = -exp;
    }
    if (p < end && ((*p >= '0' && *p <= '9') || *p == '.' || *p == 'e' || *p == 'E' || *p == '-' || *p == '+'))
        return false; /* "01", "1.2.3": not one number */
    if (s->cap - s->o < JSON_WRITE_NUMBER_MAX)
        return false;
    char *o = s->out + s->o;
    if (!real) {
        if (!exact || m > (uint64_t)INT64_MAX + neg)
            return false; /* beyond int64: jansson's "too big integer" */
        json_int_t v = neg ? (json_int_t)(0 - m) : (json_int_t)m;
        if (neg && m == (uint64_t)INT64_MAX + 1)
            v = INT64_MIN;
        s->o += json_write_integer(v, o);
        s->p = p;
        return true;
    }
    double v;
    long e10 = exp - frac;
    if (exact && m != 0 && m < UINT64_C(1000000000000000) && e10 >= -22 && e10 <= 22) {
        /* At most 15 significant digits: no other decimal that short reads back to the same double
         * (DBL_DIG), so these digits, trailing zeros dropped, are the shortest json_write_real would
         * search for; only the layout is left to do. */
        char d[16];
        int n = 0;
        while (m % 10 == 0) {
            m /= 10;
            e10++;
        }
        for (uint64_t t = m; t; t /= 10)
            n++;
        for (int i = n - 1; i >= 0; i--, m /= 10)
            d[i] = (char)('0' + m % 10);
        s->o += json_write_real_digits(neg, d, n, (int)(n - 1 + e10), o);
        s->p = p;
        return true;
    }
    if (exact && m < (UINT64_C(1) << 53) && e10 >= -22 && e10 <= 22) {
        /* Both operands are exact doubles, so one correctly rounded operation is the exact reading. */
        v = e10 < 0 ? (double)m / json_compact_pow10[-e10] : (double)m * json_compact_pow10[e10];
        if (neg)
            v = -v;
    } else {
        char tmp[65];
        size_t n = (size_t)(p - start);
        if (n >= sizeof(tmp))
            return false;
        memcpy(tmp, start, n);
        tmp[n] = '\0';
        v = strtod(tmp, NULL); /* the sign included */
        if (!isfinite(v))
            return false; /* jansson's "real number overflow" */
    }
    size_t n = json_write_real(v, o);
    if (n == 0)
        return false;
    s->o += n;
    s->p = p;
    return true;
}

static bool json_compact_literal(json_compact_state *s, const char *word, size_t len)
{
    if ((size_t)(s->end - s->p) < len || memcmp(s->p, word, len) != 0 || s->cap - s->o < len)
        return false;
    memcpy(s->out + s->o, word, len);
    s->o += len;
    s->p += len;
    return true;
}

static uint64_t json_compact_hash(const char *k, size_t len)
{
    uint64_t h = 0x9e3779b97f4a7c15u ^ len;
    size_t i = 0;
    for (; i + 8 <= len; i += 8) {
        uint64_t w;
        memcpy(&w, k + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdu;
        h ^= h >> 32;
    }
    uint64_t w = 0;
    memcpy(&w, k + i, len - i);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53u;
    return h ^ (h >> 29);
}

/* A member name at its opening quote, its ':' and the whitespace after: written, and checked against
 * the names of the object opened at keys[first..*count). */
static bool json_compact_key_at(json_compact_state *s, json_compact_key *keys, size_t first, size_t *count)
{
    if (s->p == s->end || *s->p != '"')
        return false;
    size_t off = s->o + 1;
    if (!json_compact_string(s, true))
        return false;
    size_t len = s->o - 1 - off;
    uint32_t h = (uint32_t)json_compact_hash(s->out + off, len);
    if (*count - first >= JSON_COMPACT_MAX_MEMBERS || *count == JSON_COMPACT_MAX_KEYS)
        return false;
    for (size_t i = first; i < *count; i++)
        if (keys[i].hash == h && keys[i].len == len && memcmp(s->out + keys[i].off, s->out + off, len) == 0)
            return false; /* a duplicate: the parser's answer */
    keys[(*count)++] = (json_compact_key){h, (uint32_t)off, (uint32_t)len};
    json_compact_ws(s);
    if (s->p == s->end || *s->p != ':' || s->o == s->cap)
        return false;
    s->p++;
    s->out[s->o++] = ':';
    return true;
}

size_t json_compact(const char *text, size_t len, char *out, size_t cap, size_t max_depth, size_t max_values)
{
    if (max_depth > JSON_COMPACT_MAX_DEPTH)
        max_depth = JSON_COMPACT_MAX_DEPTH;
    if (cap < len || cap > UINT32_MAX)
        return JSON_COMPACT_FALLBACK;
    bool object[JSON_COMPACT_MAX_DEPTH];
    size_t first_key[JSON_COMPACT_MAX_DEPTH]; /* an object's first name in keys */
    json_compact_key keys[JSON_COMPACT_MAX_KEYS];
    size_t depth = 0, values = 0, nkeys = 0;
    json_compact_state s = {(const unsigned char *)text, (const unsigned char *)text + len, out, 0, cap};
    for (;;) {
        /* ---- a value ---- */
        json_compact_ws(&s);
        if (s.p == s.end || ++values > max_values)
            return JSON_COMPACT_FALLBACK;
        switch (*s.p) {
        case '{':
        case '[': {
            bool obj = *s.p == '{';
            if (depth == max_depth || s.cap - s.o < 2)
                return JSON_COMPACT_FALLBACK;
            s.out[s.o++] = (char)*s.p++;
            json_compact_ws(&s);
            if (s.p < s.end && *s.p == (obj ? '}' : ']')) {
                s.out[s.o++] = (char)*s.p++;
                break; /* empty: the value is complete */
            }
            object[depth] = obj;
            first_key[depth] = nkeys;
            depth++;
            if (obj && !json_compact_key_at(&s, keys, first_key[depth - 1], &nkeys))
                return JSON_COMPACT_FALLBACK;
            continue; /* the first member's or element's value */
        }
        case '"':
            if (!json_compact_string(&s, false))
                return JSON_COMPACT_FALLBACK;
            break;
        case 't':
            if (!json_compact_literal(&s, "true", 4))
                return JSON_COMPACT_FALLBACK;
            break;
        case 'f':
            if (!json_compact_literal(&s, "false", 5))
                return JSON_COMPACT_FALLBACK;
            break;
        case 'n':
            if (!json_compact_literal(&s, "null", 4))
                return JSON_COMPACT_FALLBACK;
            break;
        default:
            if (!json_compact_number(&s))
                return JSON_COMPACT_FALLBACK;
        }
        /* ---- a value is complete: what may follow it ---- */
        for (;;) {
            json_compact_ws(&s);
            if (depth == 0)
                return s.p == s.end ? s.o : JSON_COMPACT_FALLBACK;
            if (s.p == s.end || s.o == s.cap)
                return JSON_COMPACT_FALLBACK;
            bool obj = object[depth - 1];
            unsigned ch = *s.p++;
            if (ch == (obj ? '}' : ']')) {
                s.out[s.o++] = (char)ch;
                depth--;
                if (obj)
                    nkeys = first_key[depth];
                continue;
            }
            if (ch != ',')
                return JSON_COMPACT_FALLBACK;
            s.out[s.o++] = ',';
            if (obj) {
                json_compact_ws(&s);
                if (!json_compact_key_at(&s, keys, first_key[depth - 1], &nkeys))
                    return JSON_COMPACT_FALLBACK;
            }
            break; /* the next value */
        }
    }
}
