/* Unit tests for lib/json/json_valid.c: hand-picked valid and invalid texts, the nesting bound, and
 * agreement with jansson on thousands of random mutations of a real document: whatever jansson
 * accepts is valid, and whatever json_valid accepts jansson accepts too, except for what jansson
 * refuses beyond the grammar (duplicate member names, numbers out of range, NUL in a member name). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "json_valid_internal.h"

static bool valid(const char *s) { return json_valid(s, strlen(s), 128); }

Test(json_valid, accepts_every_kind_of_value)
{
    const char *ok[] = {
        "0", "-0", "42", "-7.25e+3", "1E2", "0.5e-7", "\"\"", "\"x\"", "true", "false", "null", " [ ] ", "{}",
        "[1,[2,[3]],{\"a\":{}}]", "{\"a\":1,\"b\":[true,false,null],\"c\":\"d\"}", "\"\\u0000\"",
        "\"\\\"\\\\\\/\\b\\f\\n\\r\\t\"", "\"\\ud83d\\udc1d\"", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x90\x9d\"",
        "\"\x7f\"", "\t\r\n 1 \n", "{\"a\":1,\"a\":2}", "99999999999999999999", "1e400",
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        cr_expect(valid(ok[i]), "refused: %s", ok[i]);
}

Test(json_valid, refuses_what_the_grammar_refuses)
{
    const char *bad[] = {
        "", " ", "{", "[", "]", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\"1}", "{a:1}", "{\"a\":}", "[1 2]", "1 2",
        "01", "-", "1.", ".5", "+1", "1e", "1e+", "0x10", "NaN", "Infinity", "-Infinity", "tru", "nul",
        "True", "'x'", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\u12g4\"", "\"\\ud800\"", "\"\\udc00\"",
        "\"\\ud800\\u0041\"", "\"\x01\"", "\"\n\"", "\"\x80\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"", "\"\xe2\x82\"", "\xef\xbb\xbf{}", "{}}", "[]]", "{\"a\":1]", "[1}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_expect_not(valid(bad[i]), "accepted: %s", bad[i]);
    cr_assert_not(json_valid("1\0", 2, 128), "a NUL after the value is not whitespace");
}

Test(json_valid, nesting_is_bounded)
{
    char text[2 * 300 + 1];
    for (int levels = 1; levels <= 300; levels++) {
        memset(text, '[', (size_t)levels);
        memset(text + levels, ']', (size_t)levels);
        cr_assert_eq(json_valid(text, 2 * (size_t)levels, 200), levels <= 200, "%d levels", levels);
    }
    char obj[] = "{\"a\":{\"a\":{\"a\":1}}}";
    cr_assert(json_valid(obj, strlen(obj), 3));
    cr_assert_not(json_valid(obj, strlen(obj), 2));
}

static uint64_t rng_state = 0x2545F4914F6CDD1Du;
static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

Test(json_valid, agrees_with_jansson_on_mutations)
{
    FILE *f = fopen(APIARY_SOURCE_DIR "/bench/data/body.json", "rb");
    cr_assert_not_null(f);
    char doc[4096];
    size_t n = fread(doc, 1, sizeof(doc), f);
    fclose(f);
    static const char alphabet[] = "{}[]\",:.-+eE0123456789 \\u\x01\x80\xc3\xa9tfnrl";
    char text[4200];
    int accepted = 0;
    for (int i = 0; i < 20000; i++) {
        size_t len = n;
        memcpy(text, doc, n);
        int edits = 1 + (int)(rng() % 3);
        for (int e = 0; e < edits; e++) {
            size_t at = (size_t)(rng() % len);
            char ch = alphabet[rng() % (sizeof(alphabet) - 1)];
            switch (rng() % 3) {
            case 0: text[at] = ch; break; /* replace */
            case 1: memmove(text + at, text + at + 1, len - at - 1); len--; break; /* delete */
            default: memmove(text + at + 1, text + at, len - at); text[at] = ch; len++; break; /* insert */
            }
        }
        json_error_t err;
        json_t *j = json_loadb(text, len, JSON_DECODE_ANY | JSON_ALLOW_NUL, &err);
        bool ours = json_valid(text, len, 2048);
        if (j) {
            cr_assert(ours, "jansson accepts what json_valid refuses: %.*s", (int)len, text);
            accepted++;
        } else if (ours) {
            enum json_error_code code = json_error_code(&err);
            cr_assert(code == json_error_numeric_overflow || code == json_error_duplicate_key ||
                          code == json_error_null_byte_in_key,
                      "json_valid accepts what jansson refuses (%s): %.*s", err.text, (int)len, text);
        }
        json_decref(j);
    }
    cr_assert_gt(accepted, 100, "the mutations should leave some documents valid");
}

/* json_valid_bounded: why it stopped, the values counted as json_limits_scan counts them, and the
 * 8-byte path for strings (every special byte at every offset of a long string). */
Test(json_valid, bounded_says_why_it_stopped)
{
    const char *objects = "[{},{},{}]"; /* 4 values */
    cr_expect_eq(json_valid_bounded(objects, strlen(objects), 128, 4), JSON_VALID_OK);
    cr_expect_eq(json_valid_bounded(objects, strlen(objects), 128, 3), JSON_VALID_TOO_MANY);
    const char *member = "{\"a\":[1,2]}"; /* the document, the member, two elements */
    cr_expect_eq(json_valid_bounded(member, strlen(member), 128, 4), JSON_VALID_OK);
    cr_expect_eq(json_valid_bounded(member, strlen(member), 128, 3), JSON_VALID_TOO_MANY);
    cr_expect_eq(json_valid_bounded("[[[]]]", 6, 3, 100), JSON_VALID_OK);
    cr_expect_eq(json_valid_bounded("[[[]]]", 6, 2, 100), JSON_VALID_TOO_DEEP);
    cr_expect_eq(json_valid_bounded("[1,]", 4, 128, 100), JSON_VALID_INVALID);
    /* A limit passed before the text goes wrong: the limit is what is reported. */
    cr_expect_eq(json_valid_bounded("[1,2,3,x", 8, 128, 2), JSON_VALID_TOO_MANY);
    cr_expect_eq(json_valid_bounded("[1,2,3,x", 8, 128, 100), JSON_VALID_INVALID);
}

Test(json_valid, long_strings_with_one_special_byte_anywhere)
{
    char text[64];
    const char *specials[] = {"\"", "\\", "\x01", "\x1f", "\x80", "\xff"};
    for (size_t s = 0; s < sizeof(specials) / sizeof(specials[0]); s++) {
        for (size_t at = 1; at < 40; at++) {
            memset(text, 'a', sizeof(text));
            text[0] = '"';
            text[41] = '"';
            text[at] = specials[s][0];
            /* A quote ends the string early and junk follows; the other bytes are invalid inside a
             * string (a backslash before 'a' is an unknown escape). Each must be refused. */
            cr_expect_not(json_valid(text, 42, 128), "special %zu at %zu accepted", s, at);
        }
    }
    memset(text, ' ', sizeof(text));
    text[0] = '"';
    static const char inside[] = "abc\\n\xc3\xa9 0123456789 \\u00e9 xyz ~}{";
    memcpy(text + 1, inside, sizeof(inside) - 1);
    text[sizeof(inside)] = '"';
    cr_expect(json_valid(text, sizeof(inside) + 1, 128));
}
