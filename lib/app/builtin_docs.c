/* docs: GET /docs, the interactive page of the app's OpenAPI document (Swagger UI), built into every
 * app and off unless docs.dir names swagger-ui-dist's directory (scripts/deps.sh installs it from npm).
 * The page and its two assets come from this server only, never from a CDN: GET /docs/swagger-ui.css
 * and /docs/swagger-ui-bundle.js are read from docs.dir once and kept in memory (a page load must not
 * read 1.5 MB from disk on a loop thread each time); the page reads /openapi.json. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app_internal.h"
#include "xalloc_internal.h"

typedef struct docs_asset {
    const char *name, *type;
    char dir[4096]; /* where `data` was read from: a reload to another docs.dir reads again */
    char *data;
    size_t len;
} docs_asset;

static docs_asset docs_assets[] = {
    {"swagger-ui-bundle.js", "application/javascript; charset=utf-8", "", NULL, 0},
    {"swagger-ui.css", "text/css; charset=utf-8", "", NULL, 0},
};
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
    docs_asset *asset = NULL;
    for (size_t i = 0; i < sizeof(docs_assets) / sizeof(docs_assets[0]) && !asset; i++)
        if (file && strcmp(file, docs_assets[i].name) == 0)
            asset = &docs_assets[i];
    if (!asset) {
        http_respond_problem(req, 404, NULL, "the docs page has no %s", "such file");
        return;
    }
    /* Read once per directory; the answer copies the bytes, so the lock is held only while reading. */
    pthread_mutex_lock(&docs_lock);
    if (!asset->data || strcmp(asset->dir, dir) != 0) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", dir, asset->name);
        FILE *f = fopen(path, "rb");
        char *data = NULL;
        long len = -1;
        if (f && fseek(f, 0, SEEK_END) == 0 && (len = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0) {
            data = xmalloc((size_t)len + 1);
            if (fread(data, 1, (size_t)len, f) != (size_t)len) {
                free(data);
                data = NULL;
            }
        }
        if (f)
            fclose(f);
        if (data) {
            free(asset->data);
            asset->data = data;
            asset->len = (size_t)len;
            snprintf(asset->dir, sizeof(asset->dir), "%s", dir);
        }
    }
    bool ok = asset->data && strcmp(asset->dir, dir) == 0;
    if (ok) {
        http_response_header(req, "Cache-Control", "public, max-age=3600");
        http_respond_raw(req, 200, asset->type, asset->data, asset->len);
    }
    pthread_mutex_unlock(&docs_lock);
    if (!ok)
        http_respond_problem(req, 500, NULL, "the docs page's %s could not be read", asset->name);
}
