/* router_test: unit tests for lib/http/router.c (pattern compilation and the reasons it gives for a refused
 * pattern, matching, precedence, HEAD, Allow). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "router.h"
#include "router_internal.h"

/* LeakSanitizer's exit-time report comes after criterion has counted the test as passed (and an
 * assertion in a .fini hook is not counted either), so the leak test asks for a check in its body. */
#if defined(__SANITIZE_ADDRESS__)
#define ROUTER_TEST_HAVE_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ROUTER_TEST_HAVE_LSAN 1
#endif
#endif
#ifdef ROUTER_TEST_HAVE_LSAN
#include <sanitizer/lsan_interface.h>
#endif

/* Distinct handlers so a test can tell which route answered. */
static void router_test_h1(http_request *req) { (void)req; }
static void router_test_h2(http_request *req) { (void)req; }
static void router_test_h3(http_request *req) { (void)req; }

#define BIT(m) (1u << HTTP_METHOD_##m)

static router *rt;

static void router_test_setup(void)
{
    rt = router_new();
}

static void router_test_teardown(void)
{
    router_free(rt);
    rt = NULL;
}

static router_status router_test_match(http_method method, const char *path, route_match *m)
{
    return router_match(rt, method, path, strlen(path), m);
}

static void router_test_assert_param(const route_match *m, size_t i, const char *name, const char *value)
{
    cr_assert_str_eq(m->params[i].name, name);
    cr_assert_eq(m->params[i].value_len, strlen(value));
    cr_assert(memcmp(m->params[i].value, value, strlen(value)) == 0, "param %zu is \"%.*s\", want \"%s\"",
              i, (int)m->params[i].value_len, m->params[i].value, value);
}

static void router_test_assert_not_found(const char *path)
{
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, path, &m), ROUTER_NOT_FOUND, "\"%s\" matched", path);
    cr_assert_null(m.handler);
    cr_assert_eq(m.allowed_methods, 0);
}

TestSuite(router, .init = router_test_setup, .fini = router_test_teardown);
TestSuite(router_add, .init = router_test_setup, .fini = router_test_teardown);

/* --- literal and root paths --- */

Test(router, literal_path)
{
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/healthz", router_test_h1), 0);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/healthz", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h1);
    cr_assert_str_eq(m.name, "GET /healthz");
    cr_assert_eq(m.param_count, 0);
    cr_assert_eq(m.allowed_methods, BIT(GET) | BIT(HEAD));
}

Test(router, literal_must_match_exactly)
{
    router_add(rt, HTTP_METHOD_GET, "/healthz", router_test_h1);
    router_test_assert_not_found("/healthz/");
    router_test_assert_not_found("/healthzz");
    router_test_assert_not_found("/health");
    router_test_assert_not_found("/HEALTHZ");
    router_test_assert_not_found("//healthz");
    router_test_assert_not_found("/healthz/x");
    router_test_assert_not_found("healthz");
    router_test_assert_not_found("");
    router_test_assert_not_found("/");
}

Test(router, root_path)
{
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/", router_test_h1), 0);
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/{id}", router_test_h2), 0);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h1);
    cr_assert_str_eq(m.name, "GET /");
    cr_assert_eq(m.param_count, 0);
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/x", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h2);
    router_test_assert_not_found("//");
    router_test_assert_not_found("");
    router_test_assert_not_found("/x/");
}

Test(router, empty_router_matches_nothing)
{
    router_test_assert_not_found("/");
    router_test_assert_not_found("/anything");
}

Test(router, reads_only_path_len_bytes)
{
    router_add(rt, HTTP_METHOD_GET, "/v1/kv/{key}", router_test_h1);
    router_add(rt, HTTP_METHOD_GET, "/a", router_test_h2);
    const char buf[] = "/v1/kv/abc/def";
    route_match m;
    cr_assert_eq(router_match(rt, HTTP_METHOD_GET, buf, 10, &m), ROUTER_FOUND);
    router_test_assert_param(&m, 0, "key", "abc");
    cr_assert_eq(router_match(rt, HTTP_METHOD_GET, "/abc", 2, &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h2);
}

Test(router, too_many_path_segments_not_found)
{
    char path[ROUTER_MAX_SEGMENTS * 2 + 3];
    size_t len = 0;
    for (int i = 0; i < ROUTER_MAX_SEGMENTS + 1; i++)
        len += (size_t)snprintf(path + len, sizeof(path) - len, "/a");
    router_add(rt, HTTP_METHOD_GET, "/a", router_test_h1);
    router_test_assert_not_found(path);
}

/* --- parameters --- */

Test(router, param_captures_one_segment)
{
    router_add(rt, HTTP_METHOD_GET, "/v1/kv/{key}", router_test_h1);
    const char *path = "/v1/kv/hello";
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, path, &m), ROUTER_FOUND);
    cr_assert_str_eq(m.name, "GET /v1/kv/{key}");
    cr_assert_eq(m.param_count, 1);
    router_test_assert_param(&m, 0, "key", "hello");
    cr_assert_eq(m.params[0].value, path + 7, "the value points into the path, not a copy");
}

Test(router, param_needs_a_non_empty_segment)
{
    router_add(rt, HTTP_METHOD_GET, "/v1/kv/{key}", router_test_h1);
    router_test_assert_not_found("/v1/kv/");
    router_test_assert_not_found("/v1/kv");
    router_test_assert_not_found("/v1/kv//");
    router_test_assert_not_found("/v1/kv/a/");
    router_test_assert_not_found("/v1/kv/a/b");
}

Test(router, encoded_slash_stays_in_one_param)
{
    router_add(rt, HTTP_METHOD_GET, "/v1/kv/{key}", router_test_h1);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/v1/kv/a%2Fb", &m), ROUTER_FOUND);
    cr_assert_eq(m.param_count, 1);
    router_test_assert_param(&m, 0, "key", "a%2Fb");
}

Test(router, several_params_in_order)
{
    cr_assert_eq(router_add(rt, HTTP_METHOD_PUT, "/v1/{bucket}/objects/{id}/{rev_2}", router_test_h1), 0);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_PUT, "/v1/photos/objects/42/7", &m), ROUTER_FOUND);
    cr_assert_eq(m.param_count, 3);
    router_test_assert_param(&m, 0, "bucket", "photos");
    router_test_assert_param(&m, 1, "id", "42");
    router_test_assert_param(&m, 2, "rev_2", "7");
    router_test_assert_not_found("/v1/photos/object/42/7");
}

Test(router, empty_leading_segment_never_fills_a_param)
{
    router_add(rt, HTTP_METHOD_GET, "/{a}/x", router_test_h1);
    router_add(rt, HTTP_METHOD_GET, "/{a}/{b}", router_test_h2);
    router_test_assert_not_found("//x");
    router_test_assert_not_found("//");
}

Test(router, params_named_per_method)
{
    router_add(rt, HTTP_METHOD_GET, "/kv/{key}", router_test_h1);
    router_add(rt, HTTP_METHOD_PUT, "/kv/{id}", router_test_h2);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_PUT, "/kv/7", &m), ROUTER_FOUND);
    cr_assert_str_eq(m.name, "PUT /kv/{id}");
    router_test_assert_param(&m, 0, "id", "7");
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/kv/7", &m), ROUTER_FOUND);
    router_test_assert_param(&m, 0, "key", "7");
    cr_assert_eq(m.allowed_methods, BIT(GET) | BIT(HEAD) | BIT(PUT));
}

Test(router, max_params_filled)
{
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}", router_test_h1), 0);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/1/2/3/4/5/6/7/8", &m), ROUTER_FOUND);
    cr_assert_eq(m.param_count, ROUTER_MAX_PARAMS);
    router_test_assert_param(&m, 0, "a", "1");
    router_test_assert_param(&m, 7, "h", "8");
}

/* --- precedence --- */

Test(router, literal_beats_param_registered_before)
{
    router_add(rt, HTTP_METHOD_GET, "/v1/kv/stats", router_test_h1);
    router_add(rt, HTTP_METHOD_GET, "/v1/kv/{key}", router_test_h2);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/v1/kv/stats", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h1);
    cr_assert_eq(m.param_count, 0);
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/v1/kv/other", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h2);
}

Test(router, literal_beats_param_registered_after)
{
    router_add(rt, HTTP_METHOD_GET, "/v1/kv/{key}", router_test_h2);
    router_add(rt, HTTP_METHOD_GET, "/v1/kv/stats", router_test_h1);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/v1/kv/stats", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h1);
    cr_assert_str_eq(m.name, "GET /v1/kv/stats");
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/v1/kv/statsx", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h2);
}

Test(router, leftmost_literal_decides)
{
    router_add(rt, HTTP_METHOD_GET, "/{x}/b/c", router_test_h1);
    router_add(rt, HTTP_METHOD_GET, "/a/{y}/{z}", router_test_h2);
    router_add(rt, HTTP_METHOD_GET, "/{p}/{q}/{r}", router_test_h3);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/a/b/c", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h2);
    router_test_assert_param(&m, 0, "y", "b");
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/z/b/c", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h1);
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/z/z/z", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h3);
}

/* The literal path is chosen first; its methods then decide, with no fallback to the param route. */
Test(router, literal_path_wins_even_without_the_method)
{
    router_add(rt, HTTP_METHOD_GET, "/v1/kv/{key}", router_test_h1);
    router_add(rt, HTTP_METHOD_PUT, "/v1/kv/{key}", router_test_h2);
    router_add(rt, HTTP_METHOD_GET, "/v1/kv/stats", router_test_h3);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_PUT, "/v1/kv/stats", &m), ROUTER_METHOD_NOT_ALLOWED);
    cr_assert_eq(m.allowed_methods, BIT(GET) | BIT(HEAD));
    cr_assert_eq(router_test_match(HTTP_METHOD_PUT, "/v1/kv/x", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h2);
}

Test(router, twenty_routes)
{
    char pattern[64], path[64];
    for (int i = 0; i < 10; i++) {
        snprintf(pattern, sizeof(pattern), "/v1/r%d/{id}", i);
        cr_assert_eq(router_add(rt, HTTP_METHOD_GET, pattern, router_test_h1), 0);
        snprintf(pattern, sizeof(pattern), "/v1/r%d", i);
        cr_assert_eq(router_add(rt, HTTP_METHOD_POST, pattern, router_test_h2), 0);
    }
    route_match m;
    for (int i = 0; i < 10; i++) {
        snprintf(path, sizeof(path), "/v1/r%d/x%d", i, i);
        cr_assert_eq(router_test_match(HTTP_METHOD_GET, path, &m), ROUTER_FOUND);
        snprintf(pattern, sizeof(pattern), "GET /v1/r%d/{id}", i);
        cr_assert_str_eq(m.name, pattern);
        snprintf(pattern, sizeof(pattern), "x%d", i);
        router_test_assert_param(&m, 0, "id", pattern);
        snprintf(path, sizeof(path), "/v1/r%d", i);
        cr_assert_eq(router_test_match(HTTP_METHOD_POST, path, &m), ROUTER_FOUND);
        cr_assert_eq(m.handler, router_test_h2);
    }
    router_test_assert_not_found("/v1/r10");
}

/* Paths without parameters are found by their whole text in a hash table that grows as routes are
 * added (16 slots, at most half full): every one of 200 must still be found, must beat the parameter
 * and tail routes that match the same path, and a near miss must fall through to those. */
Test(router, many_literal_paths_beside_params_and_tails)
{
    char pattern[64], path[64];
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/lit/{id}", router_test_h2), 0);
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/{a}/{b}", router_test_h3), 0);
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/lit/{rest...}", router_test_h3), 0);
    for (int i = 0; i < 200; i++) {
        snprintf(pattern, sizeof(pattern), "/lit/p%d", i);
        cr_assert_eq(router_add(rt, HTTP_METHOD_GET, pattern, router_test_h1), 0);
    }
    route_match m;
    for (int i = 0; i < 200; i++) {
        snprintf(path, sizeof(path), "/lit/p%d", i);
        cr_assert_eq(router_test_match(HTTP_METHOD_GET, path, &m), ROUTER_FOUND, "%s", path);
        cr_assert_eq(m.handler, router_test_h1, "%s", path);
        cr_assert_eq(m.param_count, 0);
        snprintf(pattern, sizeof(pattern), "GET /lit/p%d", i);
        cr_assert_str_eq(m.name, pattern);
        cr_assert_eq(router_test_match(HTTP_METHOD_POST, path, &m), ROUTER_METHOD_NOT_ALLOWED);
    }
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/lit/p200", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h2);
    router_test_assert_param(&m, 0, "id", "p200");
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/lit/p1/", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h3, "a trailing slash is not the literal path");
    router_test_assert_param(&m, 0, "rest", "p1/");
    cr_assert_eq(router_match(rt, HTTP_METHOD_GET, "/lit/p1\0", 8, &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h2, "a NUL byte after the literal is part of the path");
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/LIT/p1", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h3, "literals compare case-sensitively");
    router_test_assert_not_found("lit/p1");
}

/* --- methods, HEAD and 405 --- */

Test(router, get_implies_head)
{
    router_add(rt, HTTP_METHOD_GET, "/x", router_test_h1);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_HEAD, "/x", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h1);
    cr_assert_str_eq(m.name, "GET /x");
    cr_assert_eq(m.allowed_methods, BIT(GET) | BIT(HEAD));
}

Test(router, explicit_head_route_wins_over_get)
{
    router_add(rt, HTTP_METHOD_GET, "/x/{id}", router_test_h1);
    router_add(rt, HTTP_METHOD_HEAD, "/x/{id}", router_test_h2);
    router_add(rt, HTTP_METHOD_HEAD, "/y", router_test_h2);
    router_add(rt, HTTP_METHOD_GET, "/y", router_test_h1);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_HEAD, "/x/1", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h2);
    cr_assert_str_eq(m.name, "HEAD /x/{id}");
    cr_assert_eq(router_test_match(HTTP_METHOD_HEAD, "/y", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h2);
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/y", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h1);
    cr_assert_eq(m.allowed_methods, BIT(GET) | BIT(HEAD));
}

Test(router, head_does_not_imply_get)
{
    router_add(rt, HTTP_METHOD_HEAD, "/x", router_test_h1);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/x", &m), ROUTER_METHOD_NOT_ALLOWED);
    cr_assert_eq(m.allowed_methods, BIT(HEAD));
}

Test(router, head_not_implied_without_get)
{
    router_add(rt, HTTP_METHOD_POST, "/x", router_test_h1);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_HEAD, "/x", &m), ROUTER_METHOD_NOT_ALLOWED);
    cr_assert_eq(m.allowed_methods, BIT(POST));
}

Test(router, method_not_allowed_lists_methods)
{
    router_add(rt, HTTP_METHOD_GET, "/v1/kv/{key}", router_test_h1);
    router_add(rt, HTTP_METHOD_PUT, "/v1/kv/{key}", router_test_h2);
    router_add(rt, HTTP_METHOD_DELETE, "/v1/kv/{key}", router_test_h3);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_POST, "/v1/kv/a", &m), ROUTER_METHOD_NOT_ALLOWED);
    cr_assert_eq(m.allowed_methods, BIT(GET) | BIT(HEAD) | BIT(PUT) | BIT(DELETE));
    cr_assert_null(m.handler);
    cr_assert_null(m.name);
    cr_assert_eq(m.param_count, 0);
}

Test(router, found_also_fills_allowed_methods)
{
    router_add(rt, HTTP_METHOD_POST, "/items", router_test_h1);
    router_add(rt, HTTP_METHOD_OPTIONS, "/items", router_test_h2);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_POST, "/items", &m), ROUTER_FOUND);
    cr_assert_eq(m.allowed_methods, BIT(POST) | BIT(OPTIONS));
}

Test(router, every_method_routes)
{
    void (*handlers[])(http_request *) = {router_test_h1, router_test_h2, router_test_h3};
    for (int meth = 0; meth < HTTP_METHOD_COUNT; meth++)
        cr_assert_eq(router_add(rt, (http_method)meth, "/all", handlers[meth % 3]), 0);
    route_match m;
    for (int meth = 0; meth < HTTP_METHOD_COUNT; meth++) {
        cr_assert_eq(router_test_match((http_method)meth, "/all", &m), ROUTER_FOUND);
        cr_assert_eq(m.handler, handlers[meth % 3]);
        cr_assert_eq(m.allowed_methods, (1u << HTTP_METHOD_COUNT) - 1);
    }
}

Test(router, unsupported_method_on_known_path)
{
    router_add(rt, HTTP_METHOD_GET, "/x", router_test_h1);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_UNSUPPORTED, "/x", &m), ROUTER_METHOD_NOT_ALLOWED);
    cr_assert_eq(m.allowed_methods, BIT(GET) | BIT(HEAD));
    cr_assert_eq(router_test_match(HTTP_METHOD_UNSUPPORTED, "/nope", &m), ROUTER_NOT_FOUND);
}

/* --- router_add validation --- */

Test(router_add, malformed_patterns_rejected)
{
    const char *bad[] = {
        "", "x", "healthz", "a/b", "//", "/a/", "/a//b", "//a", "/{}", "/{a", "/a}", "/{a}}", "/{{a}}",
        "/x{a}", "/{a}x", "/{a-b}", "/{a b}", "/{a.b}", "/{a}/{a}", "/a?b", "/a#b", "/a b", "/a\tb",
        "/a\x7f", "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_eq(router_add(rt, HTTP_METHOD_GET, bad[i], router_test_h1), -1, "accepted \"%s\"", bad[i]);
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, NULL, router_test_h1), -1);
    router_test_assert_not_found("/a");
    router_test_assert_not_found("/a/b");
}

Test(router_add, bad_method_or_handler_rejected)
{
    cr_assert_eq(router_add(rt, HTTP_METHOD_UNSUPPORTED, "/x", router_test_h1), -1);
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/x", NULL), -1);
    cr_assert_eq(router_add(NULL, HTTP_METHOD_GET, "/x", router_test_h1), -1);
    router_test_assert_not_found("/x");
}

Test(router_add, accepted_patterns)
{
    const char *good[] = {"/", "/a", "/a/b", "/{a}", "/{A_z9}", "/v1/items:batch", "/a-b.c~d", "/%7Euser",
                          "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}"};
    /* A fresh router each time: "/{a}" and "/{A_z9}" have the same shape. */
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        router *r = router_new();
        cr_assert_eq(router_add(r, HTTP_METHOD_GET, good[i], router_test_h1), 0, "rejected \"%s\"", good[i]);
        router_free(r);
    }
}

static void router_test_segments(char *buf, size_t cap, int n)
{
    size_t len = 0;
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(buf + len, cap - len, "/s%d", i);
}

Test(router_add, segment_limit)
{
    char pattern[ROUTER_MAX_SEGMENTS * 4 + 8];
    router_test_segments(pattern, sizeof(pattern), ROUTER_MAX_SEGMENTS);
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, pattern, router_test_h1), 0);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, pattern, &m), ROUTER_FOUND);
    router_test_segments(pattern, sizeof(pattern), ROUTER_MAX_SEGMENTS + 1);
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, pattern, router_test_h1), -1);
}

/* router_pattern_check (what apiary_app_route logs) agrees with router_add, and names the fault. */
Test(router_add, pattern_check_says_why)
{
    const char *bad[] = {"x", "/a//b", "/a/", "/{a", "/{}", "/{a-b}", "/x{a}", "/a?b", "/{a}/{a}", "/{r...}/x",
                         "/{a}/{b}/{c}/{d}/{e}/{f}/{g}/{h}/{i}"};
    const char *why_of_bad[] = {
        "the pattern does not start with '/'",
        "the pattern has an empty segment ('//', or a '/' at the end)",
        "the pattern has an empty segment ('//', or a '/' at the end)",
        "the segment '{a' is not a parameter: a parameter is a whole segment {name}",
        "the segment '{}' is not a parameter: a parameter is a whole segment {name}",
        "the parameter '{a-b}' has a name that is not [A-Za-z0-9_]",
        "the segment 'x{a}' holds a character no request path can match there ('{', '}', '?', '#', a space or a "
        "control character)",
        "the segment 'a?b' holds a character no request path can match there ('{', '}', '?', '#', a space or a "
        "control character)",
        "the pattern repeats the parameter {a}",
        "the tail parameter {r...} is not the last segment",
        "the pattern has more than 8 parameters",
    };
    char why[256];
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(router_pattern_check(bad[i], why, sizeof(why)), -1, "accepted \"%s\"", bad[i]);
        cr_assert_str_eq(why, why_of_bad[i], "for \"%s\"", bad[i]);
        cr_assert_eq(router_add(rt, HTTP_METHOD_GET, bad[i], router_test_h1), -1, "%s", bad[i]);
    }
    cr_assert_eq(router_pattern_check(NULL, why, sizeof(why)), -1);
    cr_assert_str_eq(why, "the pattern does not start with '/'");
    char many[ROUTER_MAX_SEGMENTS * 4 + 8];
    router_test_segments(many, sizeof(many), ROUTER_MAX_SEGMENTS + 1);
    cr_assert_eq(router_pattern_check(many, why, sizeof(why)), -1);
    cr_assert_str_eq(why, "the pattern has more than 32 segments");
    const char *good[] = {"/", "/a", "/{a}/b/{c}", "/files/{rest...}", "/v1/items:batch"};
    for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        cr_assert_eq(router_pattern_check(good[i], why, sizeof(why)), 0, "refused \"%s\": %s", good[i], why);
        cr_assert_str_eq(why, "");
    }
    cr_assert_eq(router_pattern_check("/{a}/{a}", NULL, 0), -1, "the verdict alone");
    cr_assert_eq(router_pattern_check("/{a}/{a}", why, 8), -1);
    cr_assert_str_eq(why, "the pat", "cut to the buffer");
}

Test(router_add, duplicates_rejected)
{
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/a", router_test_h1), 0);
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/a", router_test_h2), -1);
    cr_assert_eq(router_add(rt, HTTP_METHOD_POST, "/a", router_test_h2), 0);
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/", router_test_h1), 0);
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/", router_test_h1), -1);
    route_match m;
    cr_assert_eq(router_test_match(HTTP_METHOD_GET, "/a", &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, router_test_h1, "a rejected duplicate must not replace the first route");
}

Test(router_add, same_shape_with_other_param_names_is_a_duplicate)
{
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/v1/{a}/x", router_test_h1), 0);
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/v1/{b}/x", router_test_h2), -1);
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/v1/{b}/y", router_test_h2), 0);
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/v1/b/x", router_test_h2), 0);
}

Test(router_add, head_and_get_are_not_duplicates)
{
    cr_assert_eq(router_add(rt, HTTP_METHOD_GET, "/a", router_test_h1), 0);
    cr_assert_eq(router_add(rt, HTTP_METHOD_HEAD, "/a", router_test_h2), 0);
    cr_assert_eq(router_add(rt, HTTP_METHOD_HEAD, "/a", router_test_h2), -1);
}

Test(router_add, free_null_is_a_no_op)
{
    router_free(NULL);
}

/* Exercises every allocation router_add makes, including on rejected adds, then frees. */
static void router_test_build_and_free(void)
{
    router *r = router_new();
    char pattern[32];
    for (int i = 0; i < 40; i++) {
        snprintf(pattern, sizeof(pattern), "/v1/r%d/{id}", i);
        router_add(r, HTTP_METHOD_GET, pattern, router_test_h1);
        router_add(r, HTTP_METHOD_PUT, pattern, router_test_h2);
        router_add(r, HTTP_METHOD_GET, pattern, router_test_h2);
    }
    router_add(r, HTTP_METHOD_GET, "/", router_test_h1);
    router_add(r, HTTP_METHOD_GET, "/a/{x}/{x}", router_test_h1);
    router_add(r, HTTP_METHOD_GET, "/a/b//c", router_test_h1);
    router_add(r, HTTP_METHOD_GET, "/a/{b", router_test_h1);
    router_free(r);
}

Test(router_add, free_releases_everything)
{
#ifdef ROUTER_TEST_HAVE_LSAN
    router_test_build_and_free();
    cr_assert_eq(__lsan_do_recoverable_leak_check(), 0, "router_free leaked (see the report above)");
#else
    router_test_build_and_free();
    cr_skip_test("built without AddressSanitizer: nothing to check leaks with");
#endif
}

/* --- router_format_allow --- */

Test(router_format_allow, enum_order)
{
    char buf[64];
    size_t n = router_format_allow(BIT(POST) | BIT(HEAD) | BIT(GET), buf, sizeof(buf));
    cr_assert_str_eq(buf, "GET, HEAD, POST");
    cr_assert_eq(n, 15);
}

Test(router_format_allow, single_and_empty)
{
    char buf[64];
    cr_assert_eq(router_format_allow(BIT(DELETE), buf, sizeof(buf)), 6);
    cr_assert_str_eq(buf, "DELETE");
    memset(buf, 'X', sizeof(buf));
    cr_assert_eq(router_format_allow(0, buf, sizeof(buf)), 0);
    cr_assert_str_eq(buf, "");
}

Test(router_format_allow, all_methods)
{
    char buf[64];
    const char *all = "GET, HEAD, POST, PUT, DELETE, PATCH, OPTIONS";
    cr_assert_eq(router_format_allow((1u << HTTP_METHOD_COUNT) - 1, buf, sizeof(buf)), strlen(all));
    cr_assert_str_eq(buf, all);
}

Test(router_format_allow, unknown_bits_ignored)
{
    char buf[64];
    cr_assert_eq(router_format_allow(BIT(PUT) | (1u << HTTP_METHOD_COUNT) | (1u << 31), buf, sizeof(buf)), 3);
    cr_assert_str_eq(buf, "PUT");
}

Test(router_format_allow, small_buffer_keeps_whole_names)
{
    char buf[16];
    unsigned mask = BIT(GET) | BIT(HEAD) | BIT(POST);
    cr_assert_eq(router_format_allow(mask, buf, 16), 15);
    cr_assert_str_eq(buf, "GET, HEAD, POST");
    cr_assert_eq(router_format_allow(mask, buf, 15), 9);
    cr_assert_str_eq(buf, "GET, HEAD");
    cr_assert_eq(router_format_allow(mask, buf, 4), 3);
    cr_assert_str_eq(buf, "GET");
    cr_assert_eq(router_format_allow(mask, buf, 3), 0);
    cr_assert_str_eq(buf, "");
    buf[0] = 'X';
    cr_assert_eq(router_format_allow(mask, buf, 0), 0);
    cr_assert_eq(buf[0], 'X');
}

Test(router_format_allow, from_a_match)
{
    router *r = router_new();
    router_add(r, HTTP_METHOD_PATCH, "/x", router_test_h1);
    router_add(r, HTTP_METHOD_GET, "/x", router_test_h2);
    route_match m;
    cr_assert_eq(router_match(r, HTTP_METHOD_PUT, "/x", 2, &m), ROUTER_METHOD_NOT_ALLOWED);
    char buf[64];
    router_format_allow(m.allowed_methods, buf, sizeof(buf));
    cr_assert_str_eq(buf, "GET, HEAD, PATCH");
    router_free(r);
}
