/* static_app_test: the app API of issue 25 through the in-process test client: apiary_app_static (a
 * mount answers files, its prefix is checked, the directory must exist), ROUTE_NO_COMPRESS (a route
 * that opted out is never coded and gets no Vary, while the same body on another route is; an answer
 * whose handler set Content-Encoding itself is never coded again),
 * http_respond_file from a handler of the app's own, and the opt-in open-file cache
 * (http_static_root_cache): a file replaced, rewritten or deleted is answered as it now is by the next
 * request, the cache keeps no more descriptors than its bound and closes them with the root. */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "apiary.h"

static char dir[64];
static http_static_root *own_root;

static void make_tree(void)
{
    snprintf(dir, sizeof(dir), "/tmp/static_app_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char p[128];
    snprintf(p, sizeof(p), "%s/a.css", dir);
    FILE *f = fopen(p, "w");
    fputs("body{}", f);
    fclose(f);
}

static void remove_tree(void)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_assert_eq(system(cmd), 0);
    http_static_root_free(own_root);
    own_root = NULL;
}

static void big_json(http_request *req)
{
    json_t *items = json_array();
    for (int i = 0; i < 200; i++)
        json_array_append_new(items, json_pack("{s:i,s:s}", "id", i, "name", "a honeycomb frame"));
    http_respond_json(req, 200, items);
}

static void coded_by_handler(http_request *req)
{
    http_response_header(req, "content-encoding", "x-mine");
    big_json(req);
}

static void own_file(http_request *req) { http_respond_file(req, own_root, http_request_param(req, "name")); }

/* A mount refused (its prefix or directory) stops the start: the files would otherwise answer 404. */
Test(static_app, a_refused_mount_stops_the_start, .init = make_tree, .fini = remove_tree)
{
    apiary_app *app = apiary_app_new("static-app");
    cr_assert_eq(apiary_app_static(app, "/files", dir, 0), 0);
    cr_assert_eq(apiary_app_static(app, "/files", dir, 0), -1, "a prefix taken");
    cr_assert_eq(apiary_app_static(app, "/bad/", dir, 0), -1, "a prefix ending with '/'");
    cr_assert_eq(apiary_app_static(app, "nope", dir, 0), -1, "a prefix not starting with '/'");
    cr_assert_eq(apiary_app_static(app, "/gone", "/nonexistent/dir", 0), -1, "a directory that is not there");
    cr_assert_eq(apiary_app_static(app, "/none", NULL, 0), -1, "no directory");
    cr_assert_null(apiary_test_new(app, "{}"));
}

Test(static_app, mounts_opt_out_and_own_files, .init = make_tree, .fini = remove_tree)
{
    apiary_app *app = apiary_app_new("static-app");
    cr_assert_eq(apiary_app_static(app, "/files", dir, 0), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/coded", big_json, 0), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/plain", big_json, ROUTE_NO_COMPRESS), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/own/{name}", own_file, 0), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/mine", coded_by_handler, 0), 0);
    own_root = http_static_root_open(dir);
    cr_assert_not_null(own_root);
    cr_assert_str_eq(http_static_root_dir(own_root), dir);
    apiary_test *t = apiary_test_new(app, "{}");
    cr_assert_not_null(t);

    apiary_test_response *r = apiary_test_get(t, "/files/a.css");
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(apiary_test_header(r, "Content-Type"), "text/css; charset=utf-8");
    cr_assert_str_eq(r->body, "body{}");
    apiary_test_response_free(r);

    r = apiary_test_get(t, "/own/a.css");
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(r->body, "body{}");
    cr_assert_not_null(apiary_test_header(r, "ETag"));
    apiary_test_response_free(r);

    r = apiary_test_request(t, "GET", "/coded", "Accept-Encoding: gzip\r\n", NULL, 0, 0);
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(apiary_test_header(r, "Content-Encoding"), "gzip");
    cr_assert_str_eq(apiary_test_header(r, "Vary"), "Accept-Encoding");
    apiary_test_response_free(r);

    r = apiary_test_request(t, "GET", "/plain", "Accept-Encoding: gzip\r\n", NULL, 0, 0);
    cr_assert_eq(r->status, 200);
    cr_assert_null(apiary_test_header(r, "Content-Encoding"), "ROUTE_NO_COMPRESS");
    cr_assert_null(apiary_test_header(r, "Vary"));
    json_t *body = apiary_test_json(r);
    cr_assert_eq(json_array_size(body), 200);
    json_decref(body);
    apiary_test_response_free(r);

    r = apiary_test_request(t, "GET", "/mine", "Accept-Encoding: gzip\r\n", NULL, 0, 0);
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(apiary_test_header(r, "Content-Encoding"), "x-mine", "the handler's coding, not coded again");
    cr_assert_null(strstr(r->head, "gzip"));
    apiary_test_response_free(r);
    apiary_test_free(t);
}

/* ---- the open-file cache (http_static_root_cache) ----------------------------------------------- */

static int open_fds(void)
{
    int n = 0;
    char p[64];
    for (int fd = 0; fd < 4096; fd++) {
        snprintf(p, sizeof(p), "/proc/self/fd/%d", fd);
        n += access(p, F_OK) == 0;
    }
    return n;
}

static void write_file(const char *name, const char *text)
{
    char p[128];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    FILE *f = fopen(p, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
}

static void expect_body(apiary_test *t, const char *target, int status, const char *body)
{
    apiary_test_response *r = apiary_test_get(t, target);
    cr_assert_eq(r->status, status, "%s: %d", target, r->status);
    if (body)
        cr_assert_str_eq(r->body, body, "%s", target);
    apiary_test_response_free(r);
}

Test(static_app, open_file_cache_follows_the_disk, .init = make_tree, .fini = remove_tree)
{
    apiary_app *app = apiary_app_new("static-cache");
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/own/{name}", own_file, 0), 0);
    own_root = http_static_root_open(dir);
    cr_assert_not_null(own_root);
    http_static_root_cache(own_root, 4); /* one set of 4: the fifth file replaces the least recently used */
    apiary_test *t = apiary_test_new(app, "{}");
    cr_assert_not_null(t);
    int base = open_fds();

    expect_body(t, "/own/a.css", 200, "body{}");
    cr_assert_eq(open_fds(), base + 1, "the file's descriptor is kept");
    expect_body(t, "/own/a.css", 200, "body{}");
    cr_assert_eq(open_fds(), base + 1, "and used again, not opened again");

    /* Replaced by a rename (a new inode, same size, maybe the same modification time): the next
     * request has the new bytes. */
    char from[128], to[128];
    write_file("a.css.new", "BODY{}");
    snprintf(from, sizeof(from), "%s/a.css.new", dir);
    snprintf(to, sizeof(to), "%s/a.css", dir);
    cr_assert_eq(rename(from, to), 0);
    expect_body(t, "/own/a.css", 200, "BODY{}");

    /* Rewritten in place with another size. */
    write_file("a.css", "html{margin:0}");
    expect_body(t, "/own/a.css", 200, "html{margin:0}");

    /* Rewritten in place with the same size and a later modification time (set explicitly: two writes
     * within one tick of the kernel's clock get the same time, which is the cache's one blind spot). */
    write_file("a.css", "html{margin:1}");
    struct timespec later[2] = {{.tv_sec = 0, .tv_nsec = UTIME_OMIT}, {.tv_sec = time(NULL) + 60, .tv_nsec = 0}};
    cr_assert_eq(utimensat(AT_FDCWD, to, later, 0), 0);
    expect_body(t, "/own/a.css", 200, "html{margin:1}");

    /* Deleted: 404 at once, and the descriptor is let go. */
    cr_assert_eq(unlink(to), 0);
    expect_body(t, "/own/a.css", 404, NULL);
    cr_assert_eq(open_fds(), base, "a deleted file's descriptor is closed");

    /* The bound: eight files through a cache of four keep four descriptors open, and each answer is
     * still its own file's. */
    for (int i = 0; i < 8; i++) {
        char name[16], text[16], target[32];
        snprintf(name, sizeof(name), "f%d.txt", i);
        snprintf(text, sizeof(text), "file %d", i);
        write_file(name, text);
        snprintf(target, sizeof(target), "/own/%s", name);
        expect_body(t, target, 200, text);
        expect_body(t, target, 200, text);
    }
    cr_assert_eq(open_fds(), base + 4, "no more descriptors than the bound");

    /* A precompressed sibling through the cache, and the original made newer than it: the original. */
    write_file("s.css", "p{color:red}");
    write_file("s.css.gz", "not really gzip");
    apiary_test_response *r = apiary_test_request(t, "GET", "/own/s.css", "Accept-Encoding: gzip\r\n", NULL, 0, 0);
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(apiary_test_header(r, "Content-Encoding"), "gzip");
    cr_assert_str_eq(r->body, "not really gzip");
    apiary_test_response_free(r);
    snprintf(to, sizeof(to), "%s/s.css", dir);
    cr_assert_eq(utimensat(AT_FDCWD, to, later, 0), 0);
    r = apiary_test_request(t, "GET", "/own/s.css", "Accept-Encoding: gzip\r\n", NULL, 0, 0);
    cr_assert_eq(r->status, 200);
    cr_assert_null(apiary_test_header(r, "Content-Encoding"), "a stale sibling is not served from the cache either");
    cr_assert_str_eq(r->body, "p{color:red}");
    apiary_test_response_free(r);

    /* A file larger than what is read inline goes by sendfile from a descriptor of its own. */
    char big[128];
    snprintf(big, sizeof(big), "%s/big.bin", dir);
    FILE *f = fopen(big, "w");
    for (int i = 0; i < 100000; i++)
        fputc('a' + i % 26, f);
    fclose(f);
    for (int k = 0; k < 2; k++) {
        r = apiary_test_get(t, "/own/big.bin");
        cr_assert_eq(r->status, 200);
        cr_assert_eq(r->body_len, 100000);
        cr_assert_eq(r->body[99999], 'a' + 99999 % 26);
        apiary_test_response_free(r);
    }
    cr_assert_eq(open_fds(), base + 4, "the sendfile copy was closed after the answer");

    apiary_test_free(t);
    int before_free = open_fds();
    http_static_root_free(own_root);
    own_root = NULL;
    int after_free = open_fds();
    cr_assert_eq(after_free, before_free - 5, "the 4 cached descriptors and the directory are closed with the root "
                 "(%d, %d)", before_free, after_free);
}

/* ---- precompressed siblings on an Accept-Encoding tie ------------------------------------------- */

/* The Content-Encoding and body of `target` for this Accept-Encoding ("" for none). */
static void expect_sibling(apiary_test *t, const char *target, const char *ae, const char *coding, const char *body)
{
    char head[128];
    snprintf(head, sizeof(head), "Accept-Encoding: %s\r\n", ae);
    apiary_test_response *r = apiary_test_request(t, "GET", target, head, NULL, 0, 0);
    cr_assert_eq(r->status, 200, "%s, %s: %d", target, ae, r->status);
    const char *got = apiary_test_header(r, "Content-Encoding");
    cr_assert_str_eq(got ? got : "", coding, "%s, %s: %s", target, ae, got ? got : "identity");
    cr_assert_str_eq(r->body, body, "%s, %s", target, ae);
    cr_assert_str_eq(apiary_test_header(r, "Vary"), "Accept-Encoding", "Vary as before");
    apiary_test_response_free(r);
}

/* Every tie rule on one mount (/files) and on a root with the open-file cache (/own), whose answers
 * must be the same. */
static void expect_ties(apiary_test *t, const char *equal_size_coding, const char *equal_size_body)
{
    static const char *const prefixes[] = {"/files", "/own"};
    for (int k = 0; k < 2; k++) {
        char small_br[64], small_gz[64], same[64], stale[64], only_gz[64];
        snprintf(small_br, sizeof(small_br), "%s/b.css", prefixes[k]);
        snprintf(small_gz, sizeof(small_gz), "%s/g.css", prefixes[k]);
        snprintf(same, sizeof(same), "%s/e.css", prefixes[k]);
        snprintf(stale, sizeof(stale), "%s/s.css", prefixes[k]);
        snprintf(only_gz, sizeof(only_gz), "%s/o.css", prefixes[k]);
        for (int twice = 0; twice < 2; twice++) { /* the second time from the cache, on /own */
            /* A tie: the smaller file, whichever coding it is. */
            expect_sibling(t, small_br, "gzip, deflate, br", "br", "BR");
            expect_sibling(t, small_gz, "gzip, deflate, br", "gzip", "GZ");
            expect_sibling(t, small_gz, "br, gzip, zstd", "gzip", "GZ");
            expect_sibling(t, small_gz, "*", "gzip", "GZ");
            expect_sibling(t, small_br, "br;q=0.5, gzip;q=0.5", "br", "BR");
            /* The same size: compression.prefer's order. */
            expect_sibling(t, same, "gzip, br", equal_size_coding, equal_size_body);
            /* q-values decide first, whatever the sizes. */
            expect_sibling(t, small_gz, "br;q=1, gzip;q=0.8", "br", "BR-LARGER");
            expect_sibling(t, small_br, "gzip;q=1, br;q=0.8", "gzip", "GZ-LARGER");
            expect_sibling(t, small_gz, "gzip;q=0, br", "br", "BR-LARGER");
            expect_sibling(t, small_br, "gzip, br;q=0", "gzip", "GZ-LARGER");
            expect_sibling(t, small_gz, "gzip;q=0.5, br;q=0.5, identity;q=0.9", "", "g{}");
            /* A smaller sibling that is stale is not served: the other one is. */
            expect_sibling(t, stale, "gzip, br", "gzip", "GZ-LARGER");
            /* Only one sibling: that one. */
            expect_sibling(t, only_gz, "gzip, br", "gzip", "GZ");
        }
    }
}

static void make_tie_tree(void)
{
    write_file("b.css", "b{}");
    write_file("b.css.br", "BR");
    write_file("b.css.gz", "GZ-LARGER");
    write_file("g.css", "g{}");
    write_file("g.css.br", "BR-LARGER");
    write_file("g.css.gz", "GZ");
    write_file("e.css", "e{}");
    write_file("e.css.br", "BR");
    write_file("e.css.gz", "GZ");
    write_file("s.css", "s{}");
    write_file("s.css.br", "BR");
    write_file("s.css.gz", "GZ-LARGER");
    write_file("o.css", "o{}");
    write_file("o.css.gz", "GZ");
    /* s.css.br is older than its original: stale. The others stay at least as new as theirs. */
    char p[128];
    snprintf(p, sizeof(p), "%s/s.css.br", dir);
    struct timespec old[2] = {{.tv_sec = 0, .tv_nsec = UTIME_OMIT}, {.tv_sec = time(NULL) - 3600, .tv_nsec = 0}};
    cr_assert_eq(utimensat(AT_FDCWD, p, old, 0), 0);
}

/* Runs expect_ties on an app whose config is `config`. */
static void run_ties(const char *config, const char *equal_size_coding, const char *equal_size_body)
{
    make_tie_tree();
    apiary_app *app = apiary_app_new("static-ties");
    cr_assert_eq(apiary_app_static(app, "/files", dir, 0), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/own/{name}", own_file, 0), 0);
    own_root = http_static_root_open(dir);
    cr_assert_not_null(own_root);
    http_static_root_cache(own_root, 64);
    apiary_test *t = apiary_test_new(app, config);
    cr_assert_not_null(t);
    expect_ties(t, equal_size_coding, equal_size_body);
    apiary_test_free(t);
}

Test(static_app, a_tie_serves_the_smaller_sibling, .init = make_tree, .fini = remove_tree)
{
    run_ties("{}", "gzip", "GZ");
}

Test(static_app, a_tie_of_equal_sizes_follows_prefer, .init = make_tree, .fini = remove_tree)
{
    run_ties("{\"compression\": {\"prefer\": [\"br\", \"gzip\"]}}", "br", "BR");
}
