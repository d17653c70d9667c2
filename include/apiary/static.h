/* static: files from a directory as answers (docs/static.md). A root is a directory opened once; every
 * request opens its file beneath it (openat2 with RESOLVE_BENEATH: no "..", no absolute path, no
 * symlink leads out), so the tree is read from disk per request and never escaped. The answer has
 * Content-Type from the extension, ETag and Last-Modified (304 on If-None-Match / If-Modified-Since),
 * one Range (206, 416), a precompressed sibling (NAME.br, NAME.gz) when Accept-Encoding allows it and
 * it is at least as new (of two at the same q, the smaller file), and HEAD; the body goes by sendfile. Apps mount a directory with
 * apiary_app_static (apiary.h); a handler of its own may answer with a file through http_respond_file.
 *
 * Ownership. A root from http_static_root_open is its opener's: open it once (at start), serve from
 * it on every loop, http_static_root_free it only when no loop serves from it any more (at exit). The
 * roots of apiary_app_static are the app's and freed with it. The file opened for one answer belongs
 * to the connection: it is closed when the body has been sent or the client leaves, so a handler has
 * nothing to free or cancel after http_respond_file.
 *
 * Open-file cache (opt-in, http_static_root_cache): each loop keeps up to N descriptors of the root's
 * files, and checks before every use, with one fstatat, that the path still names the same file (device
 * and inode); a replaced, rewritten or deleted file is answered as it now is by the next request, as
 * without the cache. Its descriptors are closed by http_static_root_free. */
#ifndef APIARY_STATIC_H
#define APIARY_STATIC_H

#include <stdbool.h>
#include <stddef.h>

typedef struct http_request http_request;
typedef struct http_static_root http_static_root;

/* Opens `dir` (which must be a directory) as a root. NULL, with errno, when it cannot. Any thread;
 * the root is read-only afterwards, so every loop may serve from it. */
http_static_root *http_static_root_open(const char *dir);
void http_static_root_free(http_static_root *root);
/* Gives the root an open-file cache of `entries` descriptors per loop (rounded up to a multiple of 4;
 * at most 65536; 0: none, the default). Call it after opening, before any loop serves from the root.
 * Each loop that serves files from the root then holds up to that many descriptors open (plan
 * RLIMIT_NOFILE for it), until http_static_root_free. At most 16 roots with a cache per loop thread;
 * more are served uncached. */
void http_static_root_cache(http_static_root *root, unsigned entries);
/* The directory it was opened from. */
const char *http_static_root_dir(const http_static_root *root);

/* Answers req with the file `path` (decoded, relative to the root, '/'-separated; "" or a trailing '/'
 * names a directory, answered with its index.html). A path with a ".." segment or a backslash is 400;
 * a missing file, a directory without index.html, anything but a regular file, and a path that leaves
 * the root through a symlink are 404. Loop thread, like every answer. */
void http_respond_file(http_request *req, const http_static_root *root, const char *path);

/* The Content-Type of a file name by its extension ("text/css; charset=utf-8"; "text/javascript" for
 * .js and .mjs); "application/octet-stream" when the extension is unknown. */
const char *http_static_content_type(const char *name);

#endif
