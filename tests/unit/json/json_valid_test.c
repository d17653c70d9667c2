/* Unit tests for lib/json/json_valid.c: hand-picked valid and invalid texts, the nesting bound, and
 * agreement with jansson on thousands of random mutations of a real document: whatever jansson
 * accepts is valid, and whatever json_valid accepts jansson accepts too, except for what jansson
 * refuses beyond the grammar (duplicate member names, numbers out of range, NUL in a member name). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "json_valid.h"

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
