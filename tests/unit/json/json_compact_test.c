/* Unit tests for lib/json/json_compact.c: its output is byte for byte what json_write gives for the
 * tree jansson parses from the same text (the request path's flags), on hand-picked documents, on the
 * bench documents and on thousands of random mutations of them; and everything jansson refuses (or
 * the limits refuse) falls back, so the parser's answer stays the answer. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_compact_internal.h"
#include "json_limits_internal.h"
#include "json_write_internal.h"

#define FLAGS (JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL)

/* The reference: limits scan, jansson, json_write. NULL when the request path refuses the text. */
static char *reference(const char *text, size_t len, size_t *out_len)
{
    if (json_limits_scan(text, len, 64, 100000) != JSON_LIMITS_OK || memchr(text, '\0', len))
        return NULL;
    json_t *j = json_loadb(text, len, FLAGS, NULL);
    if (!j)
        return NULL;
    buf b = {0};
    buf_cache nc = {0};
    bool ok = json_write(&b, &nc, j, NULL);
    json_decref(j);
    cr_assert(ok);
    char *copy = malloc(b.len + 1);
    memcpy(copy, b.data, b.len);
    *out_len = b.len;
    buf_release(&b, &nc);
    return copy;
}

/* Checks one text: json_compact either falls back or gives the reference's bytes, and it may fall
 * back only where the reference refuses or for the shapes it does not track. Returns true when it
 * handled the text. */
static bool agrees(const char *text, size_t len)
{
    size_t cap = json_compact_cap(len);
    char *out = malloc(cap);
    size_t n = json_compact(text, len, out, cap, 64, 100000);
    size_t ref_len = 0;
    char *ref = reference(text, len, &ref_len);
    if (n != JSON_COMPACT_FALLBACK) {
        cr_assert_not_null(ref, "compacted what the parser refuses: %.*s", (int)len, text);
        cr_assert(n == ref_len && memcmp(out, ref, n) == 0, "differs on %.*s:\n ours %.*s\n json_write %.*s",
                  (int)len, text, (int)n, out, (int)ref_len, ref);
    }
    free(out);
    free(ref);
    return n != JSON_COMPACT_FALLBACK;
}

static bool agrees_s(const char *s) { return agrees(s, strlen(s)); }

Test(json_compact, writes_what_json_write_writes)
{
    const char *docs[] = {
        "0", "-0", "42", "-7", "9223372036854775807", "-9223372036854775808", "1.0", "-0.0", "0.0", "0e5",
        "1e3", "1E2", "-7.25e+3", "0.5e-7", "0.1", "98.6", "1.50", "100.0", "1e21", "1e-7", "123456789012345678",
        "0.30000000000000004", "1.7976931348623157e308", "5e-324", "1e-400", "2.2250738585072014e-308",
        "12345678901234567890123.5", "0.000000000000000000000000001", "4503599627370497.5",
        "\"\"", "\"x\"", "true", "false", "null", " [ ] ", "{}", " { } ", "\t\r\n 1 \n",
        "[1,[2,[3]],{\"a\":{}}]", "{\"a\":1,\"b\":[true,false,null],\"c\":\"d\"}", "\"\\u0000\"",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\ud83d\\udc1d\"", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x90\x9d\"",
        "\"\x7f\"", "\"\\u00e9\\u20ac\\u007f\\u001f\\u0001\\u0022\\u005c\\u002F\"", "{\"\\u00e9\":1,\"\xc3\xa9x\":2}",
        "{ \"a\" : [ 1 , 2 ] , \"b\" : { \"c\" : \"d\" } }", "[\"a\\/b\", \"\\uD83D\\uDE00\"]",
        "{\"a\":{\"a\":{\"a\":1}},\"b\":{\"a\":2}}", "[{\"k\":1},{\"k\":2},{\"k\":3}]",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++)
        cr_expect(agrees_s(docs[i]), "fell back on valid text: %s", docs[i]);
}

Test(json_compact, falls_back_on_everything_the_parser_refuses)
{
    const char *bad[] = {
        "", " ", "{", "[", "]", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\"1}", "{a:1}", "{\"a\":}", "[1 2]", "1 2",
        "01", "-", "1.", ".5", "+1", "1e", "1e+", "0x10", "NaN", "Infinity", "tru", "nul", "True", "'x'",
        "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\ud800\"", "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"\x01\"",
        "\"\x80\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\xef\xbb\xbf{}", "{}}", "{\"a\":1]", "[1}",
        /* past what this API holds: jansson's own refusals */
        "{\"a\":1,\"a\":2}", "{\"a\":1,\"b\":{\"a\":1},\"\\u0061\":3}", "{\"\\u0000\":1}",
        "9223372036854775808", "-9223372036854775809", "99999999999999999999", "1e400", "-1e400",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_not(agrees_s(bad[i]), "compacted: %s", bad[i]);
    char out[16];
    cr_expect_eq(json_compact("1\0", 2, out, sizeof(out), 64, 100), JSON_COMPACT_FALLBACK, "a NUL after the value");
    cr_expect_eq(json_compact("[\"a\0\"]", 6, out, sizeof(out), 64, 100), JSON_COMPACT_FALLBACK, "a NUL in a string");
}

Test(json_compact, limits_fall_back)
{
    char out[64];
    cr_expect_neq(json_compact("[[[]]]", 6, out, sizeof(out), 3, 100), JSON_COMPACT_FALLBACK);
    cr_expect_eq(json_compact("[[[]]]", 6, out, sizeof(out), 2, 100), JSON_COMPACT_FALLBACK);
    /* values counted as json_limits_scan counts them: the document, the member, two elements */
    cr_expect_neq(json_compact("{\"a\":[1,2]}", 11, out, sizeof(out), 64, 4), JSON_COMPACT_FALLBACK);
    cr_expect_eq(json_compact("{\"a\":[1,2]}", 11, out, sizeof(out), 64, 3), JSON_COMPACT_FALLBACK);
    /* output that would not fit: reals written longer than sent */
    cr_expect_eq(json_compact("[1e20,1e20]", 11, out, 12, 64, 100), JSON_COMPACT_FALLBACK);
    /* an object wider than the duplicate check tracks is the parser's */
    char wide[2048] = "{";
    for (int i = 0; i <= JSON_COMPACT_MAX_MEMBERS; i++)
        snprintf(wide + strlen(wide), sizeof(wide) - strlen(wide), "%s\"k%d\":%d", i ? "," : "", i, i);
    strcat(wide, "}");
    cr_expect_not(agrees_s(wide));
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void mutations_of(const char *path, int rounds)
{
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "%s", path);
    static char doc[20000], text[20100];
    size_t n = fread(doc, 1, sizeof(doc), f);
    fclose(f);
    cr_assert(agrees(doc, n), "the document itself falls back: %s", path);
    static const char alphabet[] = "{}[]\",:.-+eE0123456789 \\u\x01\x80\xc3\xa9tfnrl/\x00";
    int handled = 0;
    for (int i = 0; i < rounds; i++) {
        size_t len = n;
        memcpy(text, doc, n);
        int edits = 1 + (int)(rng() % 3);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)(rng() % len);
            char ch = alphabet[rng() % (sizeof(alphabet) - 1)];
            switch (rng() % 3) {
            case 0: text[at] = ch; break;
            case 1: memmove(text + at, text + at + 1, len - at - 1); len--; break;
            default: memmove(text + at + 1, text + at, len - at); text[at] = ch; len++; break;
            }
        }
        handled += agrees(text, len);
    }
    cr_assert_gt(handled, rounds / 50, "the mutations should leave some documents valid");
}

Test(json_compact, agrees_with_jansson_on_mutations_of_the_bench_documents, .timeout = 120)
{
    mutations_of(APIARY_SOURCE_DIR "/bench/data/body.json", 20000);
    mutations_of(APIARY_SOURCE_DIR "/bench/data/doc16k.json", 1500);
}

/* Every real the fast path reads (digits fitting 2^53, power of ten up to 22) against strtod, and
 * random doubles printed at every precision. */
Test(json_compact, reals_read_exactly)
{
    char text[64];
    for (int i = 0; i < 100000; i++) {
        double v;
        uint64_t bits = rng();
        memcpy(&v, &bits, sizeof(v));
        if (!(v == v) || v == 1.0 / 0.0 || v == -1.0 / 0.0)
            continue;
        int prec = 1 + (int)(rng() % 17);
        snprintf(text, sizeof(text), rng() % 2 ? "%.*e" : "%.*g", prec, v);
        if (!strchr(text, '.') && !strchr(text, 'e'))
            strcat(text, ".0");
        agrees_s(text);
        snprintf(text, sizeof(text), "%.*f", (int)(rng() % 8), (double)(rng() % 100000000) / 1000.0);
        cr_assert(agrees_s(text), "%s", text);
    }
}
