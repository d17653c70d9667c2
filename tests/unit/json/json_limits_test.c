/* json_limits_test: unit tests for lib/json_limits (the depth and value count measured before a JSON
 * body is parsed): exact counts at the limits, strings and escapes never counted, and texts jansson
 * accepts never refused within the limits. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "json_limits_internal.h"

static json_limits_result scan(const char *text, size_t depth, size_t values)
{
    return json_limits_scan(text, strlen(text), depth, values);
}

Test(json_limits, a_scalar_is_one_value_at_depth_zero)
{
    cr_assert_eq(scan("42", 1, 1), JSON_LIMITS_OK);
    cr_assert_eq(scan("\"x\"", 1, 1), JSON_LIMITS_OK);
    cr_assert_eq(scan("null", 1, 1), JSON_LIMITS_OK);
}

Test(json_limits, elements_and_members_are_counted_at_the_limit)
{
    /* the document, the array and three elements */
    cr_assert_eq(scan("[1,2,3]", 1, 4), JSON_LIMITS_OK);
    cr_assert_eq(scan("[1,2,3]", 1, 3), JSON_LIMITS_TOO_MANY);
    /* empty containers hold nothing, whitespace or not */
    cr_assert_eq(scan("[ \n]", 1, 1), JSON_LIMITS_OK);
    cr_assert_eq(scan("[{},{ }]", 2, 3), JSON_LIMITS_OK);
    cr_assert_eq(scan("[{},{ }]", 2, 2), JSON_LIMITS_TOO_MANY);
    /* a member and its value count once: document + two members */
    cr_assert_eq(scan("{\"a\":1,\"b\":2}", 1, 3), JSON_LIMITS_OK);
    cr_assert_eq(scan("{\"a\":1,\"b\":2}", 1, 2), JSON_LIMITS_TOO_MANY);
    /* nested: document, two inner arrays, two numbers */
    cr_assert_eq(scan("[[1],[2]]", 2, 5), JSON_LIMITS_OK);
    cr_assert_eq(scan("[[1],[2]]", 2, 4), JSON_LIMITS_TOO_MANY);
}

Test(json_limits, depth_counts_open_containers_only)
{
    cr_assert_eq(scan("[[[]]]", 3, 100), JSON_LIMITS_OK);
    cr_assert_eq(scan("[[[]]]", 2, 100), JSON_LIMITS_TOO_DEEP);
    /* siblings do not add up */
    cr_assert_eq(scan("[[],[],[{}],{\"a\":[]}]", 3, 100), JSON_LIMITS_OK);
    /* an unbalanced close cannot make the depth negative and let a later nest pass */
    cr_assert_eq(scan("]]]]][[[", 2, 100), JSON_LIMITS_TOO_DEEP);
}

Test(json_limits, structure_inside_strings_is_not_counted)
{
    cr_assert_eq(scan("[\"[[[[,,,,{{{{\"]", 1, 2), JSON_LIMITS_OK);
    /* an escaped quote does not end the string; an escaped backslash before a quote does */
    cr_assert_eq(scan("[\"a\\\",[,[\"]", 1, 2), JSON_LIMITS_OK);
    cr_assert_eq(scan("[\"a\\\\\",[1]]", 2, 3), JSON_LIMITS_TOO_MANY);
    cr_assert_eq(scan("[\"a\\\\\\\\\",1]", 1, 3), JSON_LIMITS_OK);
    /* keys are strings too */
    cr_assert_eq(scan("{\"[,{\":1}", 1, 2), JSON_LIMITS_OK);
}

Test(json_limits, an_unterminated_string_ends_the_scan_without_a_verdict)
{
    cr_assert_eq(scan("[1,\"abc,[[[[", 1, 3), JSON_LIMITS_OK); /* the parser reports it */
    cr_assert_eq(scan("\"\\", 1, 1), JSON_LIMITS_OK);
}

Test(json_limits, the_attack_body_is_refused_by_count)
{
    /* 1 MiB of "{}," is about 350,000 values */
    size_t n = 350000;
    char *text = malloc(n * 3 + 2);
    size_t len = 0;
    text[len++] = '[';
    for (size_t i = 0; i < n; i++) {
        memcpy(text + len, i ? ",{}" : "{}", i ? 3 : 2);
        len += i ? 3 : 2;
    }
    text[len++] = ']';
    cr_assert_eq(json_limits_scan(text, len, 128, 20000), JSON_LIMITS_TOO_MANY);
    /* the document and n empty objects */
    cr_assert_eq(json_limits_scan(text, len, 128, n + 1), JSON_LIMITS_OK);
    cr_assert_eq(json_limits_scan(text, len, 128, n), JSON_LIMITS_TOO_MANY);
    free(text);
}

/* For valid text the scan's count is exactly the number of values jansson builds (so a limit can be
 * neither dodged by the text's shape nor hit early): checked on a set of valid documents. */
static size_t json_limits_test_count(const json_t *v)
{
    size_t n = 1;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            n += json_limits_test_count(json_array_get(v, i));
    } else if (json_is_object(v)) {
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)v, k, m) n += json_limits_test_count(m);
    }
    return n;
}

Test(json_limits, the_count_bounds_what_the_parser_builds)
{
    const char *docs[] = {
        "[]",
        "{}",
        "[1]",
        "[ ]",
        "[{ },[ ],{\"a\":{}}]",
        "[[],[[]],{}]",
        "{\"a\":{\"b\":[1,2,{\"c\":null}]},\"d\":\"x,y[\"}",
        "[\"\\\"\",\"\\\\\",{\"\\\"k\":[true,false]}]",
        " [ 1 , 2 ] ",
        "[{\"a\":[]},{\"b\":{}}]",
    };
    for (size_t i = 0; i < sizeof(docs) / sizeof(docs[0]); i++) {
        json_error_t err;
        json_t *v = json_loads(docs[i], JSON_DECODE_ANY, &err);
        cr_assert_not_null(v, "%s: %s", docs[i], err.text);
        size_t truth = json_limits_test_count(v);
        cr_assert_eq(scan(docs[i], 100, truth), JSON_LIMITS_OK, "%s holds %zu values", docs[i], truth);
        if (truth > 1)
            cr_assert_eq(scan(docs[i], 100, truth - 1), JSON_LIMITS_TOO_MANY, "%s holds %zu values", docs[i], truth);
        json_decref(v);
    }
}
