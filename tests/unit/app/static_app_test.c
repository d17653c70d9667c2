/* static_app_test: the app API of issue 25 through the in-process test client: apiary_app_static (a
 * mount answers files, its prefix is checked, the directory must exist), ROUTE_NO_COMPRESS (a route
 * that opted out is never coded and gets no Vary, while the same body on another route is; an answer
 * whose handler set Content-Encoding itself is never coded again), and
 * http_respond_file from a handler of the app's own. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
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

Test(static_app, mounts_opt_out_and_own_files, .init = make_tree, .fini = remove_tree)
{
    apiary_app *app = apiary_app_new("static-app");
    cr_assert_eq(apiary_app_static(app, "/files", dir, 0), 0);
    cr_assert_eq(apiary_app_static(app, "/files", dir, 0), -1, "a prefix taken");
    cr_assert_eq(apiary_app_static(app, "/bad/", dir, 0), -1, "a prefix ending with '/'");
    cr_assert_eq(apiary_app_static(app, "nope", dir, 0), -1, "a prefix not starting with '/'");
    cr_assert_eq(apiary_app_static(app, "/gone", "/nonexistent/dir", 0), -1, "a directory that is not there");
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
