/* docs: GET /docs, the interactive page of the app's OpenAPI document (Swagger UI), built into every
 * app and off unless docs.dir names swagger-ui-dist's directory (scripts/deps.sh installs it from npm).
 * The page and its two assets come from this server only, never from a CDN: GET /docs/swagger-ui.css
 * and /docs/swagger-ui-bundle.js are answered from docs.dir by the static-file code (static.h): the
 * 1.5 MB bundle goes by sendfile from the page cache, never read by the loop, with ETag and 304 for
 * the browser's revalidations; the page reads /openapi.json. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_internal.h"
#include "static.h"

/* The only files served: the page's two assets (docs.dir holds more, which stays private). */
static const char *const docs_assets[] = {"swagger-ui-bundle.js", "swagger-ui.css"};

/* The root of the docs.dir in effect, reopened when a reload names another one. */
static http_static_root *docs_root;
static pthread_mutex_t docs_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *docs_dir(http_request *req)
{
    const apiary_config *cfg = apiary_context_config(apiary_current());
    if (!cfg || !cfg->docs_dir[0]) {
        http_respond_problem(req, 404, NULL, "the docs page is off (docs.dir in the config)");
        return NULL;
    }
    return cfg->docs_dir;
}

void docs_get(http_request *req)
{
    if (!docs_dir(req))
        return;
    static const char page[] =
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>API documentation</title>"
        "<link rel=\"stylesheet\" href=\"/docs/swagger-ui.css\"></head>\n<body><div id=\"ui\"></div>"
        "<script src=\"/docs/swagger-ui-bundle.js\"></script>\n<script>window.ui = SwaggerUIBundle("
        "{url: \"/openapi.json\", dom_id: \"#ui\", deepLinking: true});</script></body></html>\n";
    http_respond_raw(req, 200, "text/html; charset=utf-8", page, sizeof(page) - 1);
}

void docs_asset_get(http_request *req)
{
    const char *dir = docs_dir(req);
    if (!dir)
        return;
    const char *file = http_request_param(req, "file");
    bool known = false;
    for (size_t i = 0; i < sizeof(docs_assets) / sizeof(docs_assets[0]) && !known; i++)
        known = file && strcmp(file, docs_assets[i]) == 0;
    if (!known) {
        http_respond_problem(req, 404, NULL, "the docs page has no %s", "such file");
        return;
    }
    /* Answered by the static-file code: ETag/304, Range, sendfile, precompressed siblings if docs.dir
     * has them. The lock covers the root's swap and the open inside http_respond_file (the answer is
     * only queued there), so no thread opens beneath a root another one frees. */
    pthread_mutex_lock(&docs_lock);
    if (!docs_root || strcmp(http_static_root_dir(docs_root), dir) != 0) {
        http_static_root_free(docs_root);
        docs_root = http_static_root_open(dir);
    }
    if (docs_root) {
        http_response_header(req, "Cache-Control", "public, max-age=3600");
        http_respond_file(req, docs_root, file);
    }
    pthread_mutex_unlock(&docs_lock);
    if (!docs_root)
        http_respond_problem(req, 500, NULL, "the docs page's directory could not be opened");
}
