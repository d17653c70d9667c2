/* Unit tests for the public streaming JSON writer (include/apiary/json_writer.h, lib/json/json_writer.c):
 * the same bytes as jansson's compact output for the same values (nesting, member order, every escape,
 * UTF-8 as is, U+0000, integers at the int64 limits), reals as the tree writer writes them and read back
 * equal by jansson, the failures that stick (invalid UTF-8, NaN, misuse, nesting past the limit),
 * reset, raw text and jansson values inside, and the answer through the engine (http_json_writer,
 * http_respond_json_writer, a failed writer answered 500). */
#include <apiary/apiary.h>
#include <apiary/testing.h>
#include <criterion/criterion.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_write_internal.h"

/* jansson's compact text of v (order as inserted), malloc'd, with the hex digits of its \u escapes in
 * lower case as apiary writes them (jansson writes \u001B, apiary \u001b: the same JSON). */
static char *jansson_text(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    cr_assert_not_null(s);
    for (char *p = s; *p; p++) {
        if (*p != '\\')
            continue;
        if (p[1] == 'u')
            for (int i = 2; i < 6 && p[i]; i++)
                p[i] = (char)(p[i] >= 'A' && p[i] <= 'F' ? p[i] - 'A' + 'a' : p[i]);
        p++; /* the escaped character: a backslash followed by u is no escape of its own */
    }
    return s;
}

/* The writer's text as a NUL-terminated copy (malloc), asserting that it has one. */
static char *writer_text(const json_writer *w)
{
    size_t len;
    const char *t = json_writer_text(w, &len);
    cr_assert_not_null(t, "the writer failed: %s", json_writer_error(w) ? json_writer_error(w) : "(incomplete)");
    char *s = malloc(len + 1);
    memcpy(s, t, len);
    s[len] = '\0';
    return s;
}

Test(json_writer, a_nested_document_is_jansson_byte_for_byte)
{
    json_writer *w = json_writer_new();
    json_writer_object_begin(w);
    json_writer_member_int(w, "id", 42);
    json_writer_member_string(w, "name", "Widget \"Pro\"");
    json_writer_key(w, "tags");
    json_writer_array_begin(w);
    json_writer_string(w, "a");
    json_writer_array_begin(w);
    json_writer_array_end(w);
    json_writer_object_begin(w);
    json_writer_object_end(w);
    json_writer_null(w);
    json_writer_bool(w, true);
    json_writer_bool(w, false);
    json_writer_array_end(w);
    json_writer_key(w, "rating");
    json_writer_object_begin(w);
    json_writer_member_int(w, "score", -7);
    json_writer_key(w, "deep");
    json_writer_array_begin(w);
    json_writer_array_begin(w);
    json_writer_int(w, 1);
    json_writer_int(w, 2);
    json_writer_array_end(w);
    json_writer_array_end(w);
    json_writer_object_end(w);
    json_writer_key(w, "none");
    json_writer_string(w, NULL); /* NULL is null */
    json_writer_object_end(w);

    json_t *tree = json_pack("{s:i,s:s,s:[s,[],{},n,b,b],s:{s:i,s:[[i,i]]},s:n}", "id", 42, "name", "Widget \"Pro\"",
                             "tags", "a", 1, 0, "rating", "score", -7, "deep", 1, 2, "none");
    char *want = jansson_text(tree), *got = writer_text(w);
    cr_assert_str_eq(got, want);
    free(want);
    free(got);
    json_decref(tree);
    json_writer_free(w);
}

Test(json_writer, every_byte_escaped_as_jansson_does)
{
    /* Every ASCII byte but NUL, then UTF-8 of two, three and four bytes, then U+0000 (by length). */
    char text[200];
    size_t n = 0;
    for (int c = 1; c < 128; c++)
        text[n++] = (char)c;
    const char *utf8 = "\xc3\xa9\xe2\x82\xac\xf0\x9f\x90\x9d";
    memcpy(text + n, utf8, strlen(utf8));
    n += strlen(utf8);
    text[n++] = '\0';
    text[n++] = 'z';

    json_writer *w = json_writer_new();
    json_writer_array_begin(w);
    json_writer_string_n(w, text, n);
    json_writer_string(w, "/ and \x7f are not escaped");
    json_writer_array_end(w);
    json_t *tree = json_pack("[s%,s]", text, n, "/ and \x7f are not escaped");
    char *want = jansson_text(tree), *got = writer_text(w);
    cr_assert_str_eq(got, want);
    cr_assert_not_null(strstr(got, "\\u0000z"), "U+0000 inside a string is \\u0000");
    cr_assert_not_null(strstr(got, "\\b\\t\\n\\u000b\\f\\r"));
    free(want);
    free(got);
    json_decref(tree);
    json_writer_free(w);
}

Test(json_writer, keys_are_escaped_too)
{
    json_writer *w = json_writer_new();
    json_writer_object_begin(w);
    json_writer_key(w, "a\"b\\c\n");
    json_writer_int(w, 1);
    json_writer_key_n(w, "\xc3\xa9t\xc3\xa9", 5);
    json_writer_int(w, 2);
    json_writer_object_end(w);
    char *got = writer_text(w);
    cr_assert_str_eq(got, "{\"a\\\"b\\\\c\\n\":1,\"\xc3\xa9t\xc3\xa9\":2}");
    free(got);
    json_writer_free(w);
}

Test(json_writer, integers_at_the_limits)
{
    const int64_t values[] = {0, 1, -1, 9, 10, 99, 100, INT32_MAX, INT32_MIN, INT64_MAX, INT64_MIN,
                              1000000000000000000LL};
    json_writer *w = json_writer_new();
    json_t *tree = json_array();
    json_writer_array_begin(w);
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        json_writer_int(w, values[i]);
        json_array_append_new(tree, json_integer(values[i]));
    }
    json_writer_array_end(w);
    char *want = jansson_text(tree), *got = writer_text(w);
    cr_assert_str_eq(got, want);
    free(want);
    free(got);
    json_decref(tree);
    json_writer_free(w);
}

Test(json_writer, reals_as_the_tree_writer_and_read_back_by_jansson)
{
    const double values[] = {0.0, -0.0, 0.1, 98.6, 1.0, 100.0, 16.990000000000002, 0.30000000000000004, 1e-7,
                             1e21, 1e300, 5e-324, DBL_MAX, DBL_MIN, -2.5, 123456.789};
    for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        json_writer *w = json_writer_new();
        json_writer_double(w, values[i]);
        char *got = writer_text(w);
        char want[JSON_WRITE_NUMBER_MAX + 1];
        want[json_write_real(values[i], want)] = '\0';
        cr_assert_str_eq(got, want, "%.17g", values[i]);
        json_error_t err;
        json_t *back = json_loads(got, JSON_DECODE_ANY, &err);
        cr_assert(json_is_real(back), "%s reads back as a real", got);
        cr_assert(json_real_value(back) == values[i] && signbit(json_real_value(back)) == signbit(values[i]),
                  "%s reads back as %.17g", got, values[i]);
        json_decref(back);
        free(got);
        json_writer_free(w);
    }
}

/* A writer that failed: the reason given, no text, and later calls do nothing. */
static void assert_failed(json_writer *w, const char *why_part)
{
    cr_assert_not(json_writer_ok(w));
    cr_assert_not_null(json_writer_error(w));
    cr_assert_not_null(strstr(json_writer_error(w), why_part), "error: %s", json_writer_error(w));
    size_t len = 99;
    cr_assert_null(json_writer_text(w, &len));
    cr_assert_eq(len, 0);
    json_writer_int(w, 1); /* a no-op now */
    cr_assert_not_null(strstr(json_writer_error(w), why_part), "the first failure stays");
}

Test(json_writer, invalid_utf8_fails)
{
    json_writer *w = json_writer_new();
    json_writer_array_begin(w);
    json_writer_string(w, "ok");
    json_writer_string(w, "bad \xc3\x28 byte");
    assert_failed(w, "UTF-8");
    json_writer_free(w);
    w = json_writer_new();
    json_writer_object_begin(w);
    json_writer_key(w, "\xff");
    assert_failed(w, "key");
    json_writer_free(w);
}

Test(json_writer, nan_and_infinity_fail)
{
    json_writer *w = json_writer_new();
    json_writer_double(w, NAN);
    assert_failed(w, "NaN");
    json_writer_reset(w);
    json_writer_double(w, -INFINITY);
    assert_failed(w, "infinite");
    json_writer_free(w);
}

Test(json_writer, misuse_fails_with_its_reason)
{
    json_writer *w = json_writer_new();
    json_writer_object_begin(w);
    json_writer_int(w, 1);
    assert_failed(w, "without its key");

    json_writer_reset(w);
    json_writer_array_begin(w);
    json_writer_key(w, "k");
    assert_failed(w, "outside an object");

    json_writer_reset(w);
    json_writer_object_begin(w);
    json_writer_key(w, "k");
    json_writer_key(w, "l");
    assert_failed(w, "a key after a key");

    json_writer_reset(w);
    json_writer_object_begin(w);
    json_writer_key(w, "k");
    json_writer_object_end(w);
    assert_failed(w, "without its value");

    json_writer_reset(w);
    json_writer_array_begin(w);
    json_writer_object_end(w);
    assert_failed(w, "object end");

    json_writer_reset(w);
    json_writer_array_end(w);
    assert_failed(w, "array end");

    json_writer_reset(w);
    json_writer_int(w, 1);
    json_writer_int(w, 2);
    assert_failed(w, "second value");

    json_writer_reset(w);
    json_writer_json(w, NULL);
    assert_failed(w, "NULL");
    json_writer_free(w);
}

Test(json_writer, an_unfinished_document_has_no_text)
{
    json_writer *w = json_writer_new();
    size_t len = 1;
    cr_assert_null(json_writer_text(w, &len), "nothing written");
    json_writer_object_begin(w);
    json_writer_key(w, "a");
    json_writer_array_begin(w);
    cr_assert_null(json_writer_text(w, &len));
    cr_assert(json_writer_ok(w), "incomplete is not failed");
    json_writer_array_end(w);
    json_writer_object_end(w);
    char *got = writer_text(w);
    cr_assert_str_eq(got, "{\"a\":[]}");
    free(got);
    json_writer_free(w);
}

Test(json_writer, nesting_up_to_the_limit)
{
    json_writer *w = json_writer_new();
    for (int i = 0; i < JSON_WRITER_MAX_DEPTH; i++) {
        if (i % 2)
            json_writer_array_begin(w);
        else {
            json_writer_object_begin(w);
            json_writer_key(w, "k");
        }
    }
    json_writer_null(w);
    for (int i = JSON_WRITER_MAX_DEPTH - 1; i >= 0; i--)
        (i % 2) ? json_writer_array_end(w) : json_writer_object_end(w);
    cr_assert(json_writer_ok(w), "%s", json_writer_error(w) ? json_writer_error(w) : "");
    char *got = writer_text(w);
    json_error_t err;
    json_t *back = json_loads(got, 0, &err);
    cr_assert_not_null(back, "%s", err.text);
    json_decref(back);
    free(got);

    json_writer_reset(w);
    for (int i = 0; i <= JSON_WRITER_MAX_DEPTH; i++)
        json_writer_array_begin(w);
    assert_failed(w, "deeper");
    json_writer_free(w);
}

Test(json_writer, reset_keeps_going_and_raw_and_jansson_values_go_in)
{
    json_writer *w = json_writer_new();
    json_writer_double(w, NAN);
    cr_assert_not(json_writer_ok(w));
    json_writer_reset(w);
    cr_assert(json_writer_ok(w), "reset clears a failure");
    json_t *tags = json_pack("[s,s,{s:f}]", "x", "y\n", "r", 0.5);
    json_writer_object_begin(w);
    json_writer_key(w, "tags");
    json_writer_json(w, tags);
    json_writer_key(w, "stored");
    json_writer_raw(w, "{\"a\":[1,2]}", 11);
    json_writer_key(w, "after");
    json_writer_int(w, 3);
    json_writer_object_end(w);
    char *got = writer_text(w);
    cr_assert_str_eq(got, "{\"tags\":[\"x\",\"y\\n\",{\"r\":0.5}],\"stored\":{\"a\":[1,2]},\"after\":3}");
    free(got);
    json_decref(tags);

    /* A long string crosses the 1 KiB chunks and the writer's first block. */
    json_writer_reset(w);
    size_t n = 20000;
    char *big = malloc(n + 1);
    for (size_t i = 0; i < n; i++)
        big[i] = (char)(i % 7 == 0 ? '"' : 'a' + i % 26);
    big[n] = '\0';
    json_writer_string(w, big);
    json_t *tree = json_string(big);
    char *want = jansson_text(tree);
    got = writer_text(w);
    cr_assert_str_eq(got, want);
    free(want);
    free(got);
    free(big);
    json_decref(tree);
    json_writer_free(w);
}

/* ---- through the engine ------------------------------------------------------------------------- */

static void items_get(http_request *req)
{
    const char *n_text = http_request_query(req, "n");
    int n = n_text ? atoi(n_text) : 3;
    json_writer *w = http_json_writer(req);
    json_writer_object_begin(w);
    json_writer_key(w, "items");
    json_writer_array_begin(w);
    for (int i = 0; i < n; i++) {
        json_writer_object_begin(w);
        json_writer_member_int(w, "id", i);
        json_writer_member_string(w, "name", "caf\xc3\xa9");
        json_writer_object_end(w);
    }
    json_writer_array_end(w);
    json_writer_member_int(w, "count", n);
    json_writer_object_end(w);
    http_respond_json_writer(req, 200, w);
}

static void broken_get(http_request *req)
{
    json_writer *w = http_json_writer(req);
    json_writer_object_begin(w);
    json_writer_member_string(w, "name", "\xff");
    json_writer_object_end(w);
    http_respond_json_writer(req, 200, w);
}

static void unanswered_get(http_request *req)
{
    /* Writes, then answers without the writer: its block still goes back when the request ends. */
    json_writer *w = http_json_writer(req);
    json_writer_string(w, "never sent");
    http_respond_raw(req, 204, "text/plain", NULL, 0);
}

Test(json_writer, answers_through_the_engine)
{
    apiary_app *app = apiary_app_new("t");
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/items", items_get, 0), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/broken", broken_get, 0), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/unanswered", unanswered_get, 0), 0);
    apiary_test *t = apiary_test_new(app, NULL);
    cr_assert_not_null(t);

    apiary_test_response *r = apiary_test_get(t, "/items?n=2");
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(apiary_test_header(r, "Content-Type"), "application/json");
    cr_assert_str_eq(r->body, "{\"items\":[{\"id\":0,\"name\":\"caf\xc3\xa9\"},{\"id\":1,\"name\":\"caf\xc3\xa9\"}],"
                              "\"count\":2}");
    apiary_test_response_free(r);

    /* Larger than a buffer block (8 KiB): the writer grows, the answer is whole. */
    r = apiary_test_get(t, "/items?n=2000");
    cr_assert_eq(r->status, 200);
    json_t *body = apiary_test_json(r);
    cr_assert_eq(json_integer_value(json_object_get(body, "count")), 2000);
    cr_assert_eq(json_array_size(json_object_get(body, "items")), 2000);
    json_decref(body);
    apiary_test_response_free(r);

    r = apiary_test_get(t, "/broken");
    cr_assert_eq(r->status, 500);
    cr_assert_str_eq(apiary_test_header(r, "Content-Type"), "application/problem+json");
    apiary_test_response_free(r);

    r = apiary_test_get(t, "/unanswered");
    cr_assert_eq(r->status, 204);
    apiary_test_response_free(r);
    apiary_test_free(t);
}
