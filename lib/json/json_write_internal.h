/* json_write: serialises a jansson tree as compact JSON text in one pass, straight into a buf (the
 * connection's output buffer), with no intermediate string. It is what http_respond_json uses.
 *
 * What it writes, and how it differs from json_dumpb:
 * - reals in the shortest form that reads back to the same double (0.1, 98.6, 1e+300, 5e-324), as
 *   JavaScript, Python and Go print them; a real keeps a '.' or an exponent so it reads back as a
 *   real (1.0, -0.0); exponent form below 1e-6 and from 1e21 on, like JavaScript and Go;
 * - integers without printf; strings escaped in bulk (runs of bytes that need no escape are copied
 *   at once) with the length-aware API, so U+0000 inside a string is written as \u0000;
 * - it validates the UTF-8 of every string and key it writes and fails rather than emit invalid text;
 * - a "splice": one node of the tree can be replaced by JSON text the caller already holds (a stored
 *   value), copied as is, so a stored document is answered without parsing it again.
 * It does not indent or sort keys: members come in the object's insertion order. */
#ifndef APIARY_JSON_WRITE_H
#define APIARY_JSON_WRITE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "buf_internal.h"

/* Containers nest at most this deep (the parser's own limit is 2048; a cycle in a hand-built tree
 * stops here too instead of running forever). */
#define JSON_WRITE_MAX_DEPTH 2048

/* The longest text of one number: "-2.2250738585072014e-308" is 24 bytes; with room to spare. */
#define JSON_WRITE_NUMBER_MAX 32

/* Where the writer meets the node `at` (by identity), it writes `text` instead: `len` bytes that the
 * caller guarantees are one valid JSON value (the writer does not check them; whitespace inside is
 * copied too). Several splices form a list through `next` (NULL ends it); each node met costs one
 * comparison per splice, so the list is meant for a handful (a fan-out's 16 bodies). */
typedef struct json_write_splice {
    const json_t *at;
    const char *text;
    size_t len;
    const struct json_write_splice *next;
} json_write_splice;

/* Appends the compact text of `json` to out, growing it (out-of-memory aborts). `splice` may be
 * NULL. Returns false, with out->len as it was, for a tree that cannot be written as JSON: a string
 * or key that is not valid UTF-8, a real that is NaN or infinite, nesting deeper than
 * JSON_WRITE_MAX_DEPTH. */
bool json_write(buf *out, buf_cache *cache, const json_t *json, const json_write_splice *splice);

/* The shortest text of a finite double that strtod reads back to the same value, at out (at least
 * JSON_WRITE_NUMBER_MAX bytes, not NUL-terminated); returns its length, 0 for NaN or infinity. */
size_t json_write_real(double v, char *out);

/* Appends `len` bytes of str as a JSON string (quotes, escapes: docs/json.md); false, with out->len
 * possibly moved on, when they are not valid UTF-8 (the caller restores its length). */
bool json_write_string_any(buf *out, buf_cache *cache, const char *str, size_t len);

/* True when none of the 8 bytes of x needs an escape or starts a UTF-8 sequence: no byte below 0x20,
 * no '"', no '\\', none from 0x80 (SWAR: a byte's borrow sets its high bit; a borrow can only mark
 * bytes above a real hit, so "none" is exact). */
static inline bool json_write_plain8(uint64_t x)
{
    const uint64_t ones = UINT64_C(0x0101010101010101), high = UINT64_C(0x8080808080808080);
    uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
    uint64_t hits = ((x - ones * 0x20) | (quote - ones) | (backslash - ones)) & ~x;
    /* ~x drops bytes from 0x80 (their high bit is set in x itself): those are caught by x & high. */
    return ((hits & high) | (x & high)) == 0;
}

/* A string of 1 to 16 bytes that needs no escape, copied into p with two loads and two stores that
 * overlap (its first and last 8, 4 or 2 bytes: every byte is in one of them, none is read past the
 * end); false, with nothing written, when a byte needs an escape or starts a UTF-8 sequence. Most
 * keys and values of an API's documents are this short; json_write_string_any's byte loop cost them
 * about five times the instructions. */
static inline bool json_write_short(char *p, const unsigned char *s, size_t len)
{
    uint64_t head, tail;
    if (len >= 8) {
        memcpy(&head, s, 8);
        memcpy(&tail, s + len - 8, 8);
        if (!json_write_plain8(head) || !json_write_plain8(tail))
            return false;
        memcpy(p, &head, 8);
        memcpy(p + len - 8, &tail, 8);
        return true;
    }
    if (len >= 4) {
        uint32_t h, t;
        memcpy(&h, s, 4);
        memcpy(&t, s + len - 4, 4);
        if (!json_write_plain8((uint64_t)h | (uint64_t)t << 32))
            return false;
        memcpy(p, &h, 4);
        memcpy(p + len - 4, &t, 4);
        return true;
    }
    /* 1 to 3 bytes: the first, the middle (the first again for 1) and the last, padded with spaces,
     * which are plain, so only the string's own bytes can fail the check. */
    unsigned char a = s[0], b = s[len / 2], c = s[len - 1];
    if (!json_write_plain8(UINT64_C(0x2020202020000000) | a | (uint64_t)b << 8 | (uint64_t)c << 16))
        return false;
    p[0] = (char)a;
    p[len / 2] = (char)b;
    p[len - 1] = (char)c;
    return true;
}

/* json_write_string_any with the short plain string (the common case) inline: quotes and bytes
 * written with one check of room. */
static inline bool json_write_string(buf *out, buf_cache *cache, const char *str, size_t len)
{
    if (len - 1 < 16 && out->cap - out->len >= len + 2 && /* 1 to 16 bytes: 0 wraps around */
        json_write_short(out->data + out->len + 1, (const unsigned char *)str, len)) {
        out->data[out->len] = '"';
        out->data[out->len + len + 1] = '"';
        out->len += len + 2;
        return true;
    }
    return json_write_string_any(out, cache, str, len);
}

/* The text json_write_real gives for the shortest digits d[0..n) (no trailing zeros, d[0] not '0'),
 * the first of them at decimal exponent x (d[0] * 10^x), negative when neg: for a caller that already
 * knows the shortest digits (json_compact, reading a real of at most 15 significant digits). */
size_t json_write_real_digits(bool neg, const char *d, int n, int x, char *out);

/* The decimal text of v at out (at least 20 bytes); returns its length. */
size_t json_write_integer(json_int_t v, char *out);

#endif
