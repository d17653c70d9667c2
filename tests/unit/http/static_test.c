/* static_test: unit tests for lib/http/http_static.c: the Range parser, the HTTP-date parser, entity-tag
 * lists, the content-type table, and the confined open (openat2 and the O_NOFOLLOW walk) against a
 * tree with symlinks in and out of the root; and the router's tail parameters the mounts use. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "http_response_internal.h"
#include "http_static_internal.h"
#include "router.h"

static http_range_result range(const char *v, uint64_t size, uint64_t *a, uint64_t *b)
{
    *a = *b = 77;
    return http_range_parse(v, strlen(v), size, a, b);
}

Test(range, single_ranges)
{
    uint64_t a, b;
    cr_assert_eq(range("bytes=0-9", 100, &a, &b), HTTP_RANGE_PART);
    cr_assert(a == 0 && b == 9);
    cr_assert_eq(range("bytes=90-", 100, &a, &b), HTTP_RANGE_PART);
    cr_assert(a == 90 && b == 99);
    cr_assert_eq(range("bytes=-10", 100, &a, &b), HTTP_RANGE_PART);
    cr_assert(a == 90 && b == 99);
    cr_assert_eq(range("bytes=-1000", 100, &a, &b), HTTP_RANGE_PART, "a suffix longer than the file: all of it");
    cr_assert(a == 0 && b == 99);
    cr_assert_eq(range("bytes=50-1000", 100, &a, &b), HTTP_RANGE_PART, "the last position is clamped");
    cr_assert(a == 50 && b == 99);
    cr_assert_eq(range("bytes=99-99", 100, &a, &b), HTTP_RANGE_PART);
    cr_assert(a == 99 && b == 99);
    cr_assert_eq(range(" Bytes=1-2 ", 100, &a, &b), HTTP_RANGE_PART, "unit case-insensitive, OWS");
    cr_assert_eq(range("bytes=5-99999999999999999999999", 100, &a, &b), HTTP_RANGE_PART, "saturating digits");
    cr_assert(a == 5 && b == 99);
}

Test(range, unsatisfiable_and_ignored)
{
    uint64_t a, b;
    cr_assert_eq(range("bytes=100-", 100, &a, &b), HTTP_RANGE_UNSATISFIABLE);
    cr_assert_eq(range("bytes=100-200", 100, &a, &b), HTTP_RANGE_UNSATISFIABLE);
    cr_assert_eq(range("bytes=-0", 100, &a, &b), HTTP_RANGE_UNSATISFIABLE);
    cr_assert_eq(range("bytes=0-0", 0, &a, &b), HTTP_RANGE_UNSATISFIABLE, "an empty file has no byte 0");
    cr_assert_eq(range("bytes=-5", 0, &a, &b), HTTP_RANGE_UNSATISFIABLE);
    cr_assert_eq(range("bytes=99999999999999999999999-", 100, &a, &b), HTTP_RANGE_UNSATISFIABLE);
    const char *whole[] = {"", "bytes", "bytes=", "bytes=-", "bytes=a-b", "bytes=5-2", "items=0-1", "bytes=0-1,5-9",
                           "bytes=0-1, 5-9", "bytes=1-2x", "bytes =1-2", "bytes=--1", "bytes=1--2"};
    for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++)
        cr_assert_eq(range(whole[i], 100, &a, &b), HTTP_RANGE_WHOLE, "'%s'", whole[i]);
}

Test(dates, imf_fixdate_only)
{
    time_t t;
    cr_assert(http_date_parse("Sun, 06 Nov 1994 08:49:37 GMT", 29, &t));
    cr_assert_eq(t, 784111777);
    cr_assert(http_date_parse(" Sun, 06 Nov 1994 08:49:37 GMT ", 31, &t), "OWS around the value");
    char out[HTTP_DATE_LEN + 1];
    http_date_format(1700000000, out);
    cr_assert(http_date_parse(out, strlen(out), &t));
    cr_assert_eq(t, 1700000000, "our own Last-Modified parses back");
    const char *bad[] = {"Sunday, 06-Nov-94 08:49:37 GMT", "Sun Nov  6 08:49:37 1994", "Sun, 06 Nov 1994 08:49:37 UTC",
                         "Sun, 06 Foo 1994 08:49:37 GMT", "Sun, 32 Nov 1994 08:49:37 GMT", "Sun, 06 Nov 1994 24:49:37 GMT",
                         "", "garbage"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        cr_assert_not(http_date_parse(bad[i], strlen(bad[i]), &t), "'%s'", bad[i]);
}

Test(etags, if_none_match_lists)
{
    const char *tag = "\"abc-1\"";
    cr_assert(http_etag_list_matches("\"abc-1\"", 7, tag));
    cr_assert(http_etag_list_matches("W/\"abc-1\"", 9, tag), "weak comparison");
    cr_assert(http_etag_list_matches("\"x\", \"abc-1\"", 12, tag));
    cr_assert(http_etag_list_matches("*", 1, tag));
    cr_assert_not(http_etag_list_matches("\"abc-2\"", 7, tag));
    cr_assert_not(http_etag_list_matches("abc-1", 5, tag), "unquoted: not an entity-tag");
    cr_assert_not(http_etag_list_matches("\"abc-1", 6, tag));
    cr_assert_not(http_etag_list_matches("", 0, tag));
}

Test(content_types, by_extension)
{
    struct {
        const char *name, *type;
    } cases[] = {
        {"a.css", "text/css; charset=utf-8"},       {"app.js", "text/javascript; charset=utf-8"},
        {"x/index.html", "text/html; charset=utf-8"}, {"logo.svg", "image/svg+xml"},
        {"data.json", "application/json"},          {"f.woff2", "font/woff2"},
        {"p.webp", "image/webp"},                   {"p.PNG", "image/png"},
        {"p.jpg", "image/jpeg"},                    {"p.gif", "image/gif"},
        {"favicon.ico", "image/x-icon"},            {"r.txt", "text/plain; charset=utf-8"},
        {"m.wasm", "application/wasm"},             {"app.js.map", "application/json"},
        {"noext", "application/octet-stream"},      {".hidden", "application/octet-stream"},
        {"dir.css/file", "application/octet-stream"}, {"a.unknown", "application/octet-stream"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        cr_assert_str_eq(http_static_content_type(cases[i].name), cases[i].type, "%s", cases[i].name);
}

/* A tree: root/{a.txt, d/b.txt, in -> d/b.txt, out -> outside file, up -> ..}, outside/secret. */
static char tree[64];
static int root_fd = -1;

static void tree_setup(void)
{
    snprintf(tree, sizeof(tree), "/tmp/static_test_XXXXXX");
    cr_assert_not_null(mkdtemp(tree));
    char p[256];
    snprintf(p, sizeof(p), "%s/root", tree);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/root/d", tree);
    mkdir(p, 0755);
    snprintf(p, sizeof(p), "%s/secret", tree);
    FILE *f = fopen(p, "w");
    fputs("secret", f);
    fclose(f);
    snprintf(p, sizeof(p), "%s/root/a.txt", tree);
    f = fopen(p, "w");
    fputs("a", f);
    fclose(f);
    snprintf(p, sizeof(p), "%s/root/d/b.txt", tree);
    f = fopen(p, "w");
    fputs("b", f);
    fclose(f);
    char target[256];
    snprintf(p, sizeof(p), "%s/root/in", tree);
    cr_assert_eq(symlink("d/b.txt", p), 0);
    snprintf(p, sizeof(p), "%s/root/out", tree);
    snprintf(target, sizeof(target), "%s/secret", tree);
    cr_assert_eq(symlink(target, p), 0);
    snprintf(p, sizeof(p), "%s/root/up", tree);
    cr_assert_eq(symlink("..", p), 0);
    snprintf(p, sizeof(p), "%s/root", tree);
    root_fd = open(p, O_RDONLY | O_DIRECTORY);
    cr_assert(root_fd >= 0);
}

static void tree_teardown(void)
{
    close(root_fd);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", tree);
    cr_assert_eq(system(cmd), 0);
}

static int try_open(const char *rel, bool walk)
{
    int fd = http_static_open(root_fd, rel, O_RDONLY, walk);
    if (fd >= 0)
        close(fd);
    return fd >= 0 ? 0 : errno;
}

Test(confined_open, stays_beneath_the_root, .init = tree_setup, .fini = tree_teardown)
{
    for (int walk = 0; walk <= 1; walk++) {
        cr_assert_eq(try_open("a.txt", walk), 0);
        cr_assert_eq(try_open("d/b.txt", walk), 0);
        cr_assert_eq(try_open("d//b.txt", walk), 0);
        cr_assert_eq(try_open("", walk), 0, "the root itself");
        cr_assert_neq(try_open("../secret", walk), 0);
        cr_assert_neq(try_open("d/../../secret", walk), 0);
        cr_assert_neq(try_open("out", walk), 0, "a symlink out");
        cr_assert_neq(try_open("up/secret", walk), 0, "a symlink to the parent");
        cr_assert_eq(try_open("nope", walk), ENOENT);
    }
    cr_assert_eq(try_open("in", false), 0, "openat2: a symlink that stays beneath is followed");
    cr_assert_eq(try_open("in", true), ELOOP, "the walk refuses every symlink");
    cr_assert_neq(try_open("/etc/passwd", false), 0, "absolute: refused by RESOLVE_BENEATH");
}

static void h(http_request *req) { (void)req; }
static void h2(http_request *req) { (void)req; }

Test(router_tail, matches_the_rest_of_the_path)
{
    router *r = router_new();
    cr_assert_eq(router_add(r, HTTP_METHOD_GET, "/static/{path...}", h), 0);
    cr_assert_eq(router_add(r, HTTP_METHOD_GET, "/static/img/{p...}", h2), 0);
    cr_assert_eq(router_add(r, HTTP_METHOD_GET, "/static/health", h2), 0);
    cr_assert_neq(router_add(r, HTTP_METHOD_GET, "/x/{p...}/y", h), 0, "a tail must be last");
    cr_assert_neq(router_add(r, HTTP_METHOD_GET, "/x/{...}", h), 0, "a tail needs a name");
    route_match m;
    const char *path = "/static/css/a/b.css";
    cr_assert_eq(router_match(r, HTTP_METHOD_GET, path, strlen(path), &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, h);
    cr_assert_eq(m.param_count, 1);
    cr_assert_str_eq(m.params[0].name, "path");
    cr_assert_eq(m.params[0].value_len, strlen("css/a/b.css"));
    cr_assert_eq(strncmp(m.params[0].value, "css/a/b.css", m.params[0].value_len), 0);
    path = "/static/";
    cr_assert_eq(router_match(r, HTTP_METHOD_GET, path, strlen(path), &m), ROUTER_FOUND);
    cr_assert_eq(m.params[0].value_len, 0);
    path = "/static";
    cr_assert_eq(router_match(r, HTTP_METHOD_GET, path, strlen(path), &m), ROUTER_NOT_FOUND);
    path = "/static/img/x.png";
    cr_assert_eq(router_match(r, HTTP_METHOD_GET, path, strlen(path), &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, h2, "the longer tail wins");
    cr_assert_eq(strncmp(m.params[0].value, "x.png", m.params[0].value_len), 0);
    path = "/static/health";
    cr_assert_eq(router_match(r, HTTP_METHOD_GET, path, strlen(path), &m), ROUTER_FOUND);
    cr_assert_eq(m.handler, h2, "a fixed route wins over a tail");
    cr_assert_eq(m.param_count, 0);
    path = "/static/a.css";
    cr_assert_eq(router_match(r, HTTP_METHOD_HEAD, path, strlen(path), &m), ROUTER_FOUND, "HEAD by the GET route");
    router_free(r);
}
