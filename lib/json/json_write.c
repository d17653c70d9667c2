/* json_write: see json_write_internal.h.
 *
 * Reals: an exact shortest-digits search for the doubles JSON documents are made of (normal values
 * from 1e-5 to 2^53), in 128-bit integer arithmetic, without printf or strtod; everything else
 * (subnormals, very small or very large magnitudes, integral values of 2^53 and more) goes through
 * printf with increasing precision and a strtod check, which is exact but about ten times slower. */
#include "json_write_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_valid_internal.h"
#include "xalloc_internal.h"

/* buf_reserve's own check, inline: most reserves here find room, and then cost a compare, not a call. */
static inline void json_write_reserve(buf *out, buf_cache *cache, size_t n)
{
    if (out->cap - out->len < n)
        buf_reserve(out, cache, n);
}

/* ---- integers ---------------------------------------------------------------------------------- */

static const char json_write_pairs[201] =
    "00010203040506070809101112131415161718192021222324252627282930313233343536373839"
    "40414243444546474849505152535455565758596061626364656667686970717273747576777879"
    "8081828384858687888990919293949596979899";

/* Decimal digits of u at out, most significant first; returns the count (1 to 20). */
static size_t json_write_u64(uint64_t u, char *out)
{
    char tmp[20];
    char *p = tmp + sizeof(tmp);
    while (u >= 100) {
        unsigned r = (unsigned)(u % 100);
        u /= 100;
        p -= 2;
        memcpy(p, json_write_pairs + 2 * r, 2);
    }
    if (u >= 10) {
        p -= 2;
        memcpy(p, json_write_pairs + 2 * u, 2);
    } else {
        *--p = (char)('0' + u);
    }
    size_t n = (size_t)(tmp + sizeof(tmp) - p);
    memcpy(out, p, n);
    return n;
}

size_t json_write_integer(json_int_t v, char *out)
{
    if (v >= 0)
        return json_write_u64((uint64_t)v, out);
    *out = '-';
    /* Negated in unsigned arithmetic, so INT64_MIN has a magnitude too. */
    return 1 + json_write_u64(0 - (uint64_t)v, out + 1);
}

/* ---- reals ------------------------------------------------------------------------------------- */

typedef unsigned __int128 json_u128;

/* 10^0 .. 10^21 */
static json_u128 json_write_pow10(int n)
{
    static const uint64_t small[20] = {1u, 10u, 100u, 1000u, 10000u, 100000u, 1000000u, 10000000u, 100000000u,
                                       1000000000u, 10000000000u, 100000000000u, 1000000000000u,
                                       10000000000000u, 100000000000000u, 1000000000000000u,
                                       10000000000000000u, 100000000000000000u, 1000000000000000000u,
                                       10000000000000000000u};
    if (n < 20)
        return small[n];
    return (json_u128)small[19] * small[n - 19];
}

/* Exact shortest digits of v (positive, normal, 1e-5 <= v < 2^53). v = M * 2^E exactly; every
 * decimal inside v's rounding interval reads back as v, and the one with the fewest significant
 * digits (the nearest to v among those) is the answer. Scaled by 10^s so the interval spans 17-digit
 * integers k, the interval [v - ulp/2, v + ulp/2] (ulp/4 below a power of two) is computed exactly
 * in units of 2^-(2-E); the bounds belong to it when M is even (strtod rounds ties to even). Writes
 * the digits at d (no trailing zeros) and the decimal exponent of the first one at *x. */
static int json_write_digits_exact(double v, char *d, int *x)
{
    uint64_t bits;
    memcpy(&bits, &v, sizeof(bits));
    uint64_t frac = bits & ((UINT64_C(1) << 52) - 1);
    int bexp = (int)(bits >> 52 & 0x7ff);
    uint64_t m = frac | UINT64_C(1) << 52;
    int shift = 2 - (bexp - 1075); /* 2 - E: from 2 (v near 2^53) to about 72 (v near 1e-5) */
    /* floor(log10(v)) from the binary exponent (log10(2) = 0.30103), never too large and at most one
     * too small; the loop below settles it. s stays at most 21 (v >= 1e-5) so 4M * 10^s fits in 128
     * bits. */
    int e10 = (int)floor((bexp - 1023) * 0.30102999566398120);
    int s = 16 - e10 > 21 ? 21 : 16 - e10;
    json_u128 mask = ((json_u128)1 << shift) - 1;
    json_u128 c4;
    uint64_t c;
    for (;;) { /* log10 may be one off next to a power of ten: settle s so c has 17 digits */
        c4 = (json_u128)(4 * m) * json_write_pow10(s);
        c = (uint64_t)(c4 >> shift);
        if (c < UINT64_C(10000000000000000) && s < 21)
            s++;
        else if (c >= UINT64_C(100000000000000000))
            s--;
        else
            break;
    }
    json_u128 p = json_write_pow10(s);
    bool inclusive = (m & 1) == 0;
    json_u128 lo4 = (json_u128)(4 * m - (frac == 0 && bexp > 1 ? 1 : 2)) * p;
    json_u128 hi4 = (json_u128)(4 * m + 2) * p;
    uint64_t kmin = (uint64_t)(lo4 >> shift), kmax = (uint64_t)(hi4 >> shift);
    if ((lo4 & mask) || !inclusive)
        kmin++;
    if (!(hi4 & mask) && !inclusive)
        kmax--;

    /* The largest power of ten with a multiple inside [kmin, kmax]: 10^j has one while kmax / 10^j >
     * (kmin - 1) / 10^j, and dividing by the constant 10 compiles to a multiplication. */
    uint64_t below = kmin - 1, top = kmax, pw = 1;
    while (top / 10 > below / 10) {
        below /= 10;
        top /= 10;
        pw *= 10;
    }
    /* Of the two multiples of pw around v, the nearer one (ties to an even quotient), or the other
     * when the nearer one is outside the interval. */
    uint64_t q = c / pw, r = c - q * pw;
    json_u128 f = c4 & mask; /* v * 10^s = c + f / 2^shift */
    json_u128 half = (json_u128)1 << (shift - 1);
    int up; /* 1: q + 1 is nearer, 0: q is, -1: a tie */
    if (2 * r + 1 < pw)
        up = 0;
    else if (2 * r + 1 == pw)
        up = f > half ? 1 : f < half ? 0 : -1; /* compares r + f against pw / 2 with pw odd (pw = 1) */
    else if (2 * r == pw)
        up = f ? 1 : -1;
    else
        up = 1;
    if (up < 0)
        up = (int)(q & 1);
    uint64_t k = (up ? q + 1 : q) * pw;
    if (k < kmin || k > kmax)
        k = (up ? q : q + 1) * pw;

    char digits[24];
    int n = (int)json_write_u64(k, digits);
    *x = n - 1 - s;
    while (n > 1 && digits[n - 1] == '0')
        n--;
    memcpy(d, digits, (size_t)n);
    return n;
}

/* Shortest digits by printf and strtod, for the doubles outside the exact path. %.*e rounds
 * correctly (glibc), so the first precision whose text reads back is the shortest, except that a
 * normal double has at most one 15-digit decimal in its interval, so below 15 digits there is no
 * need to search: %.15e with its trailing zeros removed is already the shortest. */
static int json_write_digits_printf(double v, char *d, int *x)
{
    char text[40];
    int prec = fpclassify(v) == FP_SUBNORMAL ? 1 : 15;
    for (;; prec++) {
        snprintf(text, sizeof(text), "%.*e", prec - 1, v);
        if (prec == 17 || strtod(text, NULL) == v)
            break;
    }
    /* text: "d.ddde[+-]xx" or "de[+-]xx" */
    int n = 0;
    const char *t = text;
    for (; *t != 'e'; t++)
        if (*t != '.')
            d[n++] = *t;
    *x = atoi(t + 1);
    while (n > 1 && d[n - 1] == '0')
        n--;
    return n;
}

size_t json_write_real(double v, char *out)
{
    if (!isfinite(v))
        return 0;
    bool neg = signbit(v);
    if (neg)
        v = -v;
    if (v == 0) {
        char *p = out;
        if (neg)
            *p++ = '-';
        memcpy(p, "0.0", 3);
        return (size_t)(p + 3 - out);
    }
    char d[24];
    int x, n;
    if (fpclassify(v) == FP_NORMAL && v >= 1e-5 && v < 9007199254740992.0)
        n = json_write_digits_exact(v, d, &x);
    else
        n = json_write_digits_printf(v, d, &x);
    return json_write_real_digits(neg, d, n, x, out);
}

size_t json_write_real_digits(bool neg, const char *d, int n, int x, char *out)
{
    char *p = out;
    if (neg)
        *p++ = '-';
    if (x < -6 || x >= 21) { /* d.ddde+x, as JavaScript and Go write them */
        *p++ = d[0];
        if (n > 1) {
            *p++ = '.';
            memcpy(p, d + 1, (size_t)n - 1);
            p += n - 1;
        }
        *p++ = 'e';
        *p++ = x < 0 ? '-' : '+';
        p += json_write_u64((uint64_t)(x < 0 ? -x : x), p);
    } else if (x < 0) { /* 0.000ddd */
        *p++ = '0';
        *p++ = '.';
        memset(p, '0', (size_t)(-x - 1));
        p += -x - 1;
        memcpy(p, d, (size_t)n);
        p += n;
    } else if (n <= x + 1) { /* ddd000.0: still a real when read back */
        memcpy(p, d, (size_t)n);
        p += n;
        memset(p, '0', (size_t)(x + 1 - n));
        p += x + 1 - n;
        memcpy(p, ".0", 2);
        p += 2;
    } else { /* ddd.ddd */
        memcpy(p, d, (size_t)x + 1);
        p += x + 1;
        *p++ = '.';
        memcpy(p, d + x + 1, (size_t)(n - x - 1));
        p += n - x - 1;
    }
    return (size_t)(p - out);
}

/* ---- strings ----------------------------------------------------------------------------------- */

/* 0: copied as is (printable ASCII other than '"' and '\\'); 1: escaped; 2-4: the lead byte of a
 * UTF-8 sequence of that length; 5: never valid in UTF-8 (continuation first, 0xc0, 0xc1, 0xf5+).
 * Only 0 and 1 are told apart here; json_utf8_len checks the others. */
static const unsigned char json_write_class[256] = {
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
    5, 5, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
    3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5,
};

/* Strings are escaped a chunk at a time so one reserve covers the worst case (6 bytes a byte)
 * without reserving six times a long string at once. */
#define JSON_WRITE_CHUNK 1024

bool json_write_string_any(buf *out, buf_cache *cache, const char *str, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str, *end = s + len;
    /* The whole worst case of a short string (the usual key or value) at once: one check, and the
     * chunk loop below finds its room already there. */
    json_write_reserve(out, cache, 2 + (len < JSON_WRITE_CHUNK ? len : JSON_WRITE_CHUNK) * 6 + 1);
    char *p = out->data + out->len;
    *p++ = '"';
    while (s < end) {
        size_t room = (size_t)(end - s) < JSON_WRITE_CHUNK ? (size_t)(end - s) : JSON_WRITE_CHUNK;
        out->len = (size_t)(p - out->data);
        json_write_reserve(out, cache, room * 6 + 1);
        p = out->data + out->len;
        const unsigned char *stop = s + room;
        while (s < stop) {
            /* Bytes that need nothing: eight at a time while a word holds no such byte, then one at
             * a time (copied as they are checked: most keys and values are a few bytes, shorter than
             * a call to memcpy). */
            while (stop - s >= 8) {
                uint64_t x;
                memcpy(&x, s, 8);
                if (!json_write_plain8(x))
                    break;
                memcpy(p, &x, 8);
                p += 8;
                s += 8;
            }
            while (s < stop && json_write_class[*s] == 0)
                *p++ = (char)*s++;
            if (s == stop)
                break;
            unsigned cls = json_write_class[*s];
            if (cls == 1) {
                *p++ = '\\';
                switch (*s) {
                case '"': *p++ = '"'; break;
                case '\\': *p++ = '\\'; break;
                case '\b': *p++ = 'b'; break;
                case '\f': *p++ = 'f'; break;
                case '\n': *p++ = 'n'; break;
                case '\r': *p++ = 'r'; break;
                case '\t': *p++ = 't'; break;
                default:
                    memcpy(p, "u00", 3);
                    p[3] = hex[*s >> 4];
                    p[4] = hex[*s & 15];
                    p += 5;
                }
                s++;
                continue;
            }
            size_t n = json_utf8_len(s, (size_t)(end - s));
            if (n == 0)
                return false;
            /* A sequence may run past the chunk's end by up to 3 bytes: the reserve has room. */
            memcpy(p, s, n);
            p += n;
            s += n;
        }
    }
    *p++ = '"';
    out->len = (size_t)(p - out->data);
    return true;
}

/* ---- the tree ---------------------------------------------------------------------------------- */

typedef struct json_write_frame {
    const json_t *node; /* an object or an array being written */
    void *iter;         /* object: the member being written */
    size_t index;       /* array: the element being written */
} json_write_frame;

static inline void json_write_put(buf *out, buf_cache *cache, const char *s, size_t n)
{
    json_write_reserve(out, cache, n);
    memcpy(out->data + out->len, s, n);
    out->len += n;
}

static inline void json_write_char(buf *out, buf_cache *cache, char c)
{
    json_write_reserve(out, cache, 1);
    out->data[out->len++] = c;
}

/* The key and ':' of the member at iter. */
static bool json_write_key(buf *out, buf_cache *cache, void *iter)
{
    if (!json_write_string(out, cache, json_object_iter_key(iter), json_object_iter_key_len(iter)))
        return false;
    json_write_char(out, cache, ':');
    return true;
}

/* Writes one scalar; false when it cannot be written. */
static bool json_write_scalar(buf *out, buf_cache *cache, const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return json_write_string(out, cache, json_string_value(v), json_string_length(v));
    case JSON_INTEGER:
        json_write_reserve(out, cache, JSON_WRITE_NUMBER_MAX);
        out->len += json_write_integer(json_integer_value(v), out->data + out->len);
        return true;
    case JSON_REAL: {
        json_write_reserve(out, cache, JSON_WRITE_NUMBER_MAX);
        size_t n = json_write_real(json_real_value(v), out->data + out->len);
        out->len += n;
        return n > 0;
    }
    case JSON_TRUE: json_write_put(out, cache, "true", 4); return true;
    case JSON_FALSE: json_write_put(out, cache, "false", 5); return true;
    case JSON_NULL: json_write_put(out, cache, "null", 4); return true;
    default: return false;
    }
}

bool json_write(buf *out, buf_cache *cache, const json_t *json, const json_write_splice *splice)
{
    if (!json)
        return false;
    size_t start = out->len;
    /* Iterative, so no tree can exhaust the stack; frames beyond the first 32 come from the heap. */
    json_write_frame local[32], *stack = local;
    size_t depth = 0, cap = sizeof(local) / sizeof(local[0]);
    bool ok = false;
    const json_t *v = json;
    for (;;) {
        /* ---- write v, or open it ---- */
        const json_write_splice *s = splice;
        while (s && v != s->at)
            s = s->next;
        if (s) {
            json_write_put(out, cache, s->text, s->len);
        } else if (json_is_object(v) || json_is_array(v)) {
            bool object = json_is_object(v);
            void *iter = object ? json_object_iter((json_t *)v) : NULL;
            if (object ? !iter : json_array_size(v) == 0) {
                json_write_put(out, cache, object ? "{}" : "[]", 2);
            } else {
                if (depth == JSON_WRITE_MAX_DEPTH)
                    goto done;
                if (depth == cap) {
                    json_write_frame *grown = xmalloc(2 * cap * sizeof(*grown));
                    memcpy(grown, stack, depth * sizeof(*grown));
                    if (stack != local)
                        free(stack);
                    stack = grown;
                    cap *= 2;
                }
                stack[depth++] = (json_write_frame){.node = v, .iter = iter, .index = 0};
                json_write_char(out, cache, object ? '{' : '[');
                if (object) {
                    if (!json_write_key(out, cache, iter))
                        goto done;
                    v = json_object_iter_value(iter);
                } else {
                    v = json_array_get(v, 0);
                }
                continue;
            }
        } else if (!json_write_scalar(out, cache, v)) {
            goto done;
        }
        /* ---- v is written: move to the next member or element, closing what is finished ---- */
        for (;;) {
            if (depth == 0) {
                ok = true;
                goto done;
            }
            json_write_frame *f = &stack[depth - 1];
            if (json_is_object(f->node)) {
                f->iter = json_object_iter_next((json_t *)f->node, f->iter);
                if (f->iter) {
                    json_write_char(out, cache, ',');
                    if (!json_write_key(out, cache, f->iter))
                        goto done;
                    v = json_object_iter_value(f->iter);
                    break;
                }
                json_write_char(out, cache, '}');
            } else {
                if (++f->index < json_array_size(f->node)) {
                    json_write_char(out, cache, ',');
                    v = json_array_get(f->node, f->index);
                    break;
                }
                json_write_char(out, cache, ']');
            }
            depth--;
        }
    }
done:
    if (stack != local)
        free(stack);
    if (!ok)
        out->len = start;
    return ok;
}
