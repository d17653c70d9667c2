/* Unit tests for lib/json/json_write.c: escaping of every control character and of invalid UTF-8, deep
 * nesting and large arrays, the shortest round-trip form of reals (checked against strtod and an
 * exhaustive printf search on many random doubles), integers at the int64 limits, U+0000 inside
 * strings, the splice of stored text, and agreement with jansson on what it reads back. */
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_write_internal.h"

static buf_cache cache;

static void setup(void) { buf_cache_init(&cache, 4); }
static void teardown(void) { buf_cache_free(&cache); }

TestSuite(json_write, .init = setup, .fini = teardown);

/* The text of `json` as a NUL-terminated string (malloc), or NULL when the writer refused it. */
static char *write_text(const json_t *json, const json_write_splice *splice, size_t *len_out)
{
    buf out = {0};
    bool ok = json_write(&out, &cache, json, splice);
    char *s = NULL;
    if (ok) {
        s = malloc(out.len + 1);
        memcpy(s, out.data, out.len);
        s[out.len] = '\0';
        if (len_out)
            *len_out = out.len;
    } else {
        cr_assert_eq(out.len, 0, "a refused tree leaves the buffer as it was");
    }
    buf_release(&out, &cache);
    return s;
}

static void assert_writes(json_t *json, const char *expected)
{
    char *s = write_text(json, NULL, NULL);
    cr_assert_not_null(s, "refused: expected %s", expected);
    cr_assert_str_eq(s, expected);
    free(s);
    json_decref(json);
}

static char *real_text(double v)
{
    static char text[JSON_WRITE_NUMBER_MAX + 1];
    size_t n = json_write_real(v, text);
    text[n] = '\0';
    return text;
}

/* ---- numbers ----------------------------------------------------------------------------------- */

Test(json_write, reals_in_the_shortest_form)
{
    struct { double v; const char *text; } cases[] = {
        {0.1, "0.1"}, {98.6, "98.6"}, {1e300, "1e+300"}, {5e-324, "5e-324"}, {-0.0, "-0.0"}, {0.0, "0.0"},
        {1.0, "1.0"}, {-1.5, "-1.5"}, {16.990000000000002, "16.990000000000002"}, {0.1 + 0.2, "0.30000000000000004"},
        {51.507, "51.507"}, {-0.135, "-0.135"}, {9.99, "9.99"}, {123456.789, "123456.789"},
        {1e-6, "0.000001"}, {1e-7, "1e-7"}, {1.5e-7, "1.5e-7"}, {1e20, "100000000000000000000.0"}, {1e21, "1e+21"},
        {DBL_MAX, "1.7976931348623157e+308"}, {DBL_MIN, "2.2250738585072014e-308"}, {2.5e-5, "0.000025"},
        {9007199254740991.0, "9007199254740991.0"}, {9007199254740992.0, "9007199254740992.0"},
        {2251799813685248.5, "2251799813685248.5"}, {0.3, "0.3"}, {2.0 / 3.0, "0.6666666666666666"},
        {1e15, "1000000000000000.0"}, {1e16, "10000000000000000.0"}, {123e-20, "1.23e-18"},
        {5e-5, "0.00005"}, {1e-5, "0.00001"}, {9.999999999999999e-6, "0.000009999999999999999"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_expect_str_eq(real_text(cases[i].v), cases[i].text, "case %zu", i);
    char text[JSON_WRITE_NUMBER_MAX];
    cr_assert_eq(json_write_real(NAN, text), 0);
    cr_assert_eq(json_write_real(INFINITY, text), 0);
    cr_assert_eq(json_write_real(-INFINITY, text), 0);
}

/* The fewest significant digits any decimal needs to read back as v: an exhaustive search. */
static int shortest_digit_count(double v)
{
    char text[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(text, sizeof(text), "%.*e", prec - 1, v);
        if (strtod(text, NULL) == v)
            return prec;
    }
    return 17;
}

static int significant_digits(const char *text)
{
    int n = 0, first = 0, zeros = 0;
    for (const char *p = text; *p && *p != 'e'; p++) {
        if (*p < '0' || *p > '9')
            continue;
        if (!first && *p == '0')
            continue;
        first = 1;
        n++;
        zeros = *p == '0' ? zeros + 1 : 0;
    }
    return n - zeros;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

static void check_round_trip(double v)
{
    const char *t = real_text(v);
    char *end;
    double back = strtod(t, &end);
    cr_assert_eq(*end, '\0', "%s is not one number", t);
    cr_assert(back == v && signbit(back) == signbit(v), "%s reads back as %.17g, not %.17g", t, back, v);
    cr_assert(strchr(t, '.') || strchr(t, 'e'), "%s would read back as an integer", t);
    /* jansson reads it back as a real, the same value */
    json_t *j = json_loads(t, JSON_DECODE_ANY, NULL);
    cr_assert(json_is_real(j) && json_real_value(j) == v, "jansson reads %s differently", t);
    json_decref(j);
    if (v != 0)
        cr_assert_eq(significant_digits(t), shortest_digit_count(v), "%s is not the shortest form of %.17g", t, v);
}

Test(json_write, random_reals_round_trip_in_the_fewest_digits)
{
    for (int i = 0; i < 20000; i++) {
        uint64_t bits = rng();
        double v;
        memcpy(&v, &bits, sizeof(v));
        if (!isfinite(v))
            continue;
        check_round_trip(v); /* every exponent, subnormals included */
    }
    for (int i = 0; i < 20000; i++) {
        /* the range of everyday values: prices, coordinates, measurements */
        double v = (double)(rng() % 100000000) / pow(10, (double)(rng() % 12)) * ((rng() & 1) ? 1 : -1);
        check_round_trip(v);
        check_round_trip(nextafter(v, INFINITY));
    }
    /* powers of two and ten, where the rounding interval is lopsided or log10 is exact */
    for (int e = -1074; e <= 1023; e++)
        check_round_trip(ldexp(1.0, e));
    for (int e = -323; e <= 308; e++) {
        char text[16];
        snprintf(text, sizeof(text), "1e%d", e);
        double v = strtod(text, NULL);
        check_round_trip(v);
        check_round_trip(nextafter(v, 0));
        check_round_trip(nextafter(v, INFINITY));
    }
}

Test(json_write, integers_at_the_int64_limits)
{
    assert_writes(json_integer(0), "0");
    assert_writes(json_integer(-7), "-7");
    assert_writes(json_integer(INT64_MAX), "9223372036854775807");
    assert_writes(json_integer(INT64_MIN), "-9223372036854775808");
    char text[32];
    for (int i = 0; i < 10000; i++) {
        json_int_t v = (json_int_t)rng() >> (rng() % 64);
        size_t n = json_write_integer(v, text);
        text[n] = '\0';
        char expected[32];
        snprintf(expected, sizeof(expected), "%" JSON_INTEGER_FORMAT, v);
        cr_assert_str_eq(text, expected);
    }
}

/* ---- strings ----------------------------------------------------------------------------------- */

Test(json_write, every_control_character_is_escaped)
{
    for (int c = 0; c < 0x20; c++) {
        char in[3] = {'a', (char)c, 'b'};
        char expected[16];
        const char *named = c == '\b' ? "\\b" : c == '\f' ? "\\f" : c == '\n' ? "\\n" : c == '\r' ? "\\r"
                          : c == '\t' ? "\\t" : NULL;
        if (named)
            snprintf(expected, sizeof(expected), "\"a%sb\"", named);
        else
            snprintf(expected, sizeof(expected), "\"a\\u%04xb\"", c);
        assert_writes(json_stringn(in, 3), expected);
    }
    assert_writes(json_string("q\"b\\s/\x7f"), "\"q\\\"b\\\\s/\x7f\"");
    assert_writes(json_string(""), "\"\"");
}

Test(json_write, nul_inside_a_string_round_trips)
{
    json_t *s = json_stringn("a\0b", 3);
    char *text = write_text(s, NULL, NULL);
    cr_assert_str_eq(text, "\"a\\u0000b\"");
    json_t *back = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    cr_assert_eq(json_string_length(back), 3);
    cr_assert_eq(memcmp(json_string_value(back), "a\0b", 3), 0);
    json_decref(back);
    free(text);
    json_decref(s);
    /* a key with a NUL too */
    json_t *o = json_object();
    json_object_setn_new(o, "k\0x", 3, json_true());
    assert_writes(o, "{\"k\\u0000x\":true}");
}

Test(json_write, utf8_is_copied_and_invalid_utf8_refused)
{
    assert_writes(json_string("\xc3\xa9\xe2\x82\xac\xf0\x9f\x90\x9d"), "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x90\x9d\"");
    assert_writes(json_string("\xe2\x80\xa8"), "\"\xe2\x80\xa8\""); /* U+2028 is valid JSON text */
    const char *bad[] = {"\x80", "\xc0\x80", "\xc3", "\xe0\x80\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
                         "\xf5\x80\x80\x80", "\xc3\x28", "\xff", "ab\xe2\x82"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        json_t *s = json_stringn_nocheck(bad[i], strlen(bad[i]));
        cr_assert_null(write_text(s, NULL, NULL), "case %zu was written", i);
        json_t *o = json_object();
        json_object_set_new_nocheck(o, bad[i], json_null());
        cr_assert_null(write_text(o, NULL, NULL), "key %zu was written", i);
        json_decref(o);
        json_decref(s);
    }
}

Test(json_write, long_strings_are_escaped_across_chunks)
{
    /* 10,000 characters mixing runs, escapes and multi-byte sequences that straddle chunk ends */
    size_t n = 0, cap = 40000;
    char *in = malloc(cap), *expected = malloc(cap * 6);
    size_t e = 0;
    expected[e++] = '"';
    while (n < 30000) {
        switch (rng() % 4) {
        case 0: in[n++] = 'x'; expected[e++] = 'x'; break;
        case 1: in[n++] = '\n'; expected[e++] = '\\'; expected[e++] = 'n'; break;
        case 2:
            memcpy(in + n, "\xf0\x9f\x90\x9d", 4);
            memcpy(expected + e, "\xf0\x9f\x90\x9d", 4);
            n += 4;
            e += 4;
            break;
        default: in[n++] = 1; memcpy(expected + e, "\\u0001", 6); e += 6; break;
        }
    }
    expected[e++] = '"';
    expected[e] = '\0';
    json_t *s = json_stringn(in, n);
    cr_assert_not_null(s);
    size_t len;
    char *text = write_text(s, NULL, &len);
    cr_assert_eq(len, e);
    cr_assert_str_eq(text, expected);
    free(text);
    free(in);
    free(expected);
    json_decref(s);
}

/* Strings of 1 to 16 bytes take json_write_string's inline path (two overlapping loads): one byte that
 * needs an escape, starts a UTF-8 sequence or is invalid, at every position of every such length (and
 * of 17, the first past it), must come out as the general path writes it. */
Test(json_write, short_strings_with_a_special_byte_anywhere)
{
    struct { const char *in; size_t n; const char *out; } special[] = {
        {"\"", 1, "\\\""}, {"\\", 1, "\\\\"}, {"\n", 1, "\\n"}, {"\x1f", 1, "\\u001f"}, {"\0", 1, "\\u0000"},
        {"\xc3\xa9", 2, "\xc3\xa9"}, {"\x7f", 1, "\x7f"}, {" ", 1, " "}, {"\x80", 1, NULL}, {"\xff", 1, NULL},
    };
    for (size_t len = 1; len <= 17; len++) {
        for (size_t k = 0; k < sizeof(special) / sizeof(special[0]); k++) {
            if (special[k].n > len)
                continue;
            for (size_t at = 0; at + special[k].n <= len; at++) {
                char in[24], expected[64];
                memset(in, 'a', len);
                memcpy(in + at, special[k].in, special[k].n);
                buf out = {0};
                buf_reserve(&out, &cache, 64); /* room first: the inline path needs it */
                bool ok = json_write_string(&out, &cache, in, len);
                if (!special[k].out) {
                    cr_assert_not(ok, "len %zu, byte %zu: invalid UTF-8 written", len, at);
                    buf_release(&out, &cache);
                    continue;
                }
                int e = snprintf(expected, sizeof(expected), "\"%.*s%s%.*s\"", (int)at, in, special[k].out,
                                 (int)(len - at - special[k].n), in + at + special[k].n);
                cr_assert(ok, "len %zu, special %zu at %zu refused", len, k, at);
                cr_assert_eq(out.len, (size_t)e, "len %zu, special %zu at %zu: %zu bytes", len, k, at, out.len);
                cr_assert_eq(memcmp(out.data, expected, out.len), 0, "len %zu, special %zu at %zu: %.*s", len, k,
                             at, (int)out.len, out.data);
                buf_release(&out, &cache);
            }
        }
    }
}

/* ---- trees ------------------------------------------------------------------------------------- */

Test(json_write, scalars_objects_and_arrays_compact_in_insertion_order)
{
    assert_writes(json_null(), "null");
    assert_writes(json_true(), "true");
    assert_writes(json_false(), "false");
    assert_writes(json_object(), "{}");
    assert_writes(json_array(), "[]");
    assert_writes(json_pack("{s:i,s:[i,{},[],s,n],s:{s:f}}", "z", 1, "a", 2, "x", "m", "r", 0.5),
                  "{\"z\":1,\"a\":[2,{},[],\"x\",null],\"m\":{\"r\":0.5}}");
}

Test(json_write, agrees_with_jansson_on_a_document)
{
    FILE *f = fopen(APIARY_SOURCE_DIR "/bench/data/body.json", "rb");
    cr_assert_not_null(f);
    char text[4096];
    size_t n = fread(text, 1, sizeof(text), f);
    fclose(f);
    json_t *doc = json_loadb(text, n, 0, NULL);
    cr_assert_not_null(doc);
    char *ours = write_text(doc, NULL, NULL);
    /* same bytes as the compact input (the document is written in shortest form already) */
    cr_assert_eq(strlen(ours), n - (text[n - 1] == '\n'));
    cr_assert_eq(memcmp(ours, text, strlen(ours)), 0);
    json_t *back = json_loads(ours, 0, NULL);
    cr_assert(json_equal(doc, back));
    json_decref(back);
    free(ours);
    json_decref(doc);
}

Test(json_write, deep_nesting_up_to_the_limit)
{
    json_t *root = json_array(), *cur = root;
    for (int i = 1; i < JSON_WRITE_MAX_DEPTH; i++) {
        json_t *next = i % 2 ? json_object() : json_array();
        if (json_is_array(cur))
            json_array_append_new(cur, next);
        else
            json_object_set_new(cur, "k", next);
        cur = next;
    }
    size_t len;
    char *text = write_text(root, NULL, &len);
    cr_assert_not_null(text, "%d levels must be written", JSON_WRITE_MAX_DEPTH);
    json_error_t err;
    json_t *back = json_loads(text, 0, &err);
    cr_assert_not_null(back, "%s", err.text);
    cr_assert(json_equal(back, root));
    json_decref(back);
    free(text);
    /* one more level is refused, as a cycle would be */
    json_t *deeper = json_array();
    if (json_is_array(cur))
        json_array_append_new(cur, deeper);
    else
        json_object_set_new(cur, "k", deeper);
    json_array_append_new(deeper, json_array());
    cr_assert_null(write_text(root, NULL, NULL));
    json_decref(root);
}

Test(json_write, large_arrays)
{
    json_t *a = json_array();
    for (int i = 0; i < 100000; i++)
        json_array_append_new(a, i % 3 == 0 ? json_integer(i) : i % 3 == 1 ? json_real(i + 0.25) : json_string("s"));
    size_t len;
    char *text = write_text(a, NULL, &len);
    char *theirs = json_dumps(a, JSON_COMPACT);
    cr_assert_eq(len, strlen(theirs));
    cr_assert_str_eq(text, theirs);
    free(theirs);
    free(text);
    json_decref(a);
}

Test(json_write, a_splice_replaces_one_node_with_stored_text)
{
    json_t *placeholder = json_object();
    json_t *body = json_pack("{s:s,s:O,s:n}", "key", "k", "value", placeholder, "ttl");
    const char stored[] = "[1,{\"a\":\"b\"},0.1]";
    json_write_splice sp = {.at = placeholder, .text = stored, .len = sizeof(stored) - 1};
    char *text = write_text(body, &sp, NULL);
    cr_assert_str_eq(text, "{\"key\":\"k\",\"value\":[1,{\"a\":\"b\"},0.1],\"ttl\":null}");
    free(text);
    json_decref(placeholder);
    json_decref(body);
}

Test(json_write, a_refusal_leaves_earlier_bytes_alone)
{
    buf out = {0};
    buf_append(&out, &cache, "HEAD", 4);
    json_t *bad = json_pack("[i,o]", 1, json_stringn_nocheck("\xff", 1));
    cr_assert_not(json_write(&out, &cache, bad, NULL));
    cr_assert_eq(out.len, 4);
    cr_assert(json_write(&out, &cache, json_true(), NULL));
    cr_assert_eq(out.len, 8);
    cr_assert_eq(memcmp(out.data, "HEADtrue", 8), 0);
    json_decref(bad);
    buf_release(&out, &cache);
}
