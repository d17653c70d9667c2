/* http_static: file answers (static.h, docs/static.md). A request opens a precompressed sibling
 * (NAME.br, NAME.gz) beneath the root's directory descriptor (http_static_open) when Accept-Encoding
 * allows one (of two at the same q, the smaller file: the other is only stat'ed unless it is the one)
 * and only stats the original for its time, or else opens the original; it answers
 * conditionals (304) and one Range (206/416), and hands the descriptor to the connection, which reads a
 * small file into its output or sends a large one with sendfile (http_conn_send_file). By default
 * nothing is cached: a file replaced on disk is served new at the next request. A root may be given an
 * open-file cache (http_static_root_cache): each loop keeps up to N descriptors, and every use of one
 * first checks with one fstatat that its path still names the same file, unchanged, so the promise
 * holds with a cache too. */
#include "http_static_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "http_compress_internal.h"
#include "http_internal.h"
#include "log.h"
#include "xalloc_internal.h"

typedef struct http_static_caches http_static_caches;

struct http_static_root {
    int fd;
    char *dir;
    uint64_t id;                 /* unique among the roots of the process: a loop finds its cache by it */
    unsigned cache_sets;         /* the open-file cache: sets of HTTP_STATIC_CACHE_WAYS per loop; 0: none */
    http_static_caches *caches;  /* every loop's cache of this root, freed with it */
};

/* ---- content types ------------------------------------------------------------------------------ */

typedef struct http_static_type {
    const char *ext, *type;
} http_static_type;

/* Lower-case extensions; text types carry their charset (files are expected in UTF-8). */
static const http_static_type http_static_types[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"}, /* RFC 9239: text/javascript, not application/javascript */
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"webmanifest", "application/manifest+json"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"csv", "text/csv; charset=utf-8"},
    {"xml", "application/xml"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"avif", "image/avif"},
    {"ico", "image/x-icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"ttf", "font/ttf"},
    {"otf", "font/otf"},
    {"wasm", "application/wasm"},
    {"pdf", "application/pdf"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"br", "application/octet-stream"},
    {"mp4", "video/mp4"},
    {"webm", "video/webm"},
    {"mp3", "audio/mpeg"},
    {"ogg", "audio/ogg"},
    {"wav", "audio/wav"},
};

const char *http_static_content_type(const char *name)
{
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    if (dot && dot != base) {
        for (size_t i = 0; i < sizeof(http_static_types) / sizeof(http_static_types[0]); i++)
            if (strcasecmp(dot + 1, http_static_types[i].ext) == 0)
                return http_static_types[i].type;
    }
    return "application/octet-stream";
}

/* ---- Range, dates, entity tags ------------------------------------------------------------------ */

static bool http_static_ows(char c) { return c == ' ' || c == '\t'; }

/* Decimal digits at p[*i..], saturating at UINT64_MAX; false when there are none. */
static bool http_static_digits(const char *p, size_t len, size_t *i, uint64_t *out)
{
    size_t start = *i;
    uint64_t v = 0;
    while (*i < len && p[*i] >= '0' && p[*i] <= '9') {
        unsigned d = (unsigned)(p[*i] - '0');
        v = v > (UINT64_MAX - d) / 10 ? UINT64_MAX : v * 10 + d;
        (*i)++;
    }
    *out = v;
    return *i > start;
}

http_range_result http_range_parse(const char *p, size_t len, uint64_t size, uint64_t *first, uint64_t *last)
{
    size_t i = 0;
    while (i < len && http_static_ows(p[i]))
        i++;
    if (len - i < 6 || strncasecmp(p + i, "bytes=", 6) != 0)
        return HTTP_RANGE_WHOLE; /* another unit, or none: ignored (RFC 9110 14.2) */
    i += 6;
    while (i < len && http_static_ows(p[i]))
        i++;
    uint64_t a = 0, b = UINT64_MAX;
    bool has_a = http_static_digits(p, len, &i, &a);
    if (i == len || p[i] != '-')
        return HTTP_RANGE_WHOLE;
    i++;
    bool has_b = http_static_digits(p, len, &i, &b);
    while (i < len && http_static_ows(p[i]))
        i++;
    if (i < len)
        return HTTP_RANGE_WHOLE; /* "bytes=0-1,5-9" (several: the whole, allowed) or junk */
    if (!has_a && !has_b)
        return HTTP_RANGE_WHOLE;
    if (!has_a) { /* suffix: the last b bytes */
        if (b == 0 || size == 0)
            return HTTP_RANGE_UNSATISFIABLE;
        *first = b >= size ? 0 : size - b;
        *last = size - 1;
        return HTTP_RANGE_PART;
    }
    if (has_b && b < a)
        return HTTP_RANGE_WHOLE; /* an invalid range-spec: the header is ignored */
    if (a >= size)
        return HTTP_RANGE_UNSATISFIABLE;
    *first = a;
    *last = !has_b || b >= size ? size - 1 : b;
    return HTTP_RANGE_PART;
}

static int http_static_two(const char *p)
{
    if (p[0] < '0' || p[0] > '9' || p[1] < '0' || p[1] > '9')
        return -1;
    return (p[0] - '0') * 10 + (p[1] - '0');
}

bool http_date_parse(const char *p, size_t len, time_t *out)
{
    /* "Sun, 06 Nov 1994 08:49:37 GMT": every field at a fixed place. */
    static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
    while (len && http_static_ows(p[len - 1]))
        len--;
    while (len && http_static_ows(*p)) {
        p++;
        len--;
    }
    if (len != 29 || p[3] != ',' || p[4] != ' ' || p[7] != ' ' || p[11] != ' ' || p[16] != ' ' || p[19] != ':' ||
        p[22] != ':' || p[25] != ' ' || memcmp(p + 26, "GMT", 3) != 0)
        return false;
    struct tm tm = {0};
    int mon = -1;
    for (int m = 0; m < 12; m++)
        if (memcmp(p + 8, months + m * 3, 3) == 0)
            mon = m;
    int day = http_static_two(p + 5), y1 = http_static_two(p + 12), y2 = http_static_two(p + 14);
    int h = http_static_two(p + 17), mi = http_static_two(p + 20), s = http_static_two(p + 23);
    if (mon < 0 || day < 1 || day > 31 || y1 < 0 || y2 < 0 || h < 0 || h > 23 || mi < 0 || mi > 59 || s < 0 || s > 60)
        return false;
    tm.tm_year = y1 * 100 + y2 - 1900;
    tm.tm_mon = mon;
    tm.tm_mday = day;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = s;
    *out = timegm(&tm);
    return true;
}

bool http_etag_list_matches(const char *p, size_t len, const char *etag)
{
    size_t etag_len = strlen(etag);
    size_t i = 0;
    while (i < len) {
        while (i < len && (http_static_ows(p[i]) || p[i] == ','))
            i++;
        if (i == len)
            break;
        if (p[i] == '*')
            return true;
        if (len - i >= 2 && p[i] == 'W' && p[i + 1] == '/')
            i += 2;
        if (i == len || p[i] != '"')
            return false; /* not an entity-tag: stop, match nothing */
        size_t start = i++;
        while (i < len && p[i] != '"')
            i++;
        if (i == len)
            return false;
        i++;
        if (i - start == etag_len && memcmp(p + start, etag, etag_len) == 0)
            return true;
    }
    return false;
}

/* ---- opening beneath the root ------------------------------------------------------------------- */

static atomic_int http_static_no_openat2;

/* One openat per component, none of them following a symlink: the fallback for kernels without
 * openat2. Stricter than RESOLVE_BENEATH (a symlink inside the tree is refused too). */
static int http_static_walk(int root_fd, const char *rel, int flags)
{
    int dir = root_fd;
    const char *p = rel;
    for (;;) {
        while (*p == '/')
            p++;
        const char *end = strchr(p, '/');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (end && end[1] == '/')
            end++; /* "a//b" is "a/b" */
        char comp[256];
        if (n >= sizeof(comp) || (n == 2 && p[0] == '.' && p[1] == '.')) {
            if (dir != root_fd)
                close(dir);
            errno = n >= sizeof(comp) ? ENAMETOOLONG : EXDEV;
            return -1;
        }
        memcpy(comp, p, n);
        comp[n] = '\0';
        bool final = !end || end[1] == '\0';
        if (n == 0)
            strcpy(comp, ".");
        int fd = openat(dir, comp, final ? flags | O_NOFOLLOW : O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int saved = errno;
        if (dir != root_fd)
            close(dir);
        if (fd < 0) {
            errno = saved;
            return -1;
        }
        if (final)
            return fd;
        dir = fd;
        p = end + 1;
    }
}

int http_static_open(int root_fd, const char *rel, int flags, bool walk)
{
    if (!walk && !atomic_load_explicit(&http_static_no_openat2, memory_order_relaxed)) {
        struct open_how how = {.flags = (uint64_t)flags, .resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS};
        int fd = (int)syscall(SYS_openat2, root_fd, rel[0] ? rel : ".", &how, sizeof(how));
        if (fd >= 0 || errno != ENOSYS)
            return fd;
        log_warn("static files: the kernel has no openat2 (Linux < 5.6); opening component by component "
                 "with O_NOFOLLOW, so symlinks under a static root are not followed");
        atomic_store_explicit(&http_static_no_openat2, 1, memory_order_relaxed);
    }
    return http_static_walk(root_fd, rel, flags);
}

/* ---- the open-file cache ------------------------------------------------------------------------
 *
 * Opt-in per root (http_static_root_cache). Each loop thread has its own cache of a root, so the hot
 * path takes no lock: a set-associative table (HTTP_STATIC_CACHE_WAYS slots a set, the least recently
 * used of the set replaced) of descriptors opened beneath the root, keyed by the relative path opened.
 * A descriptor is used only after one fstatat of its path (symlinks followed, as the confined open
 * does) shows the same device and inode, still a regular file; otherwise the slot is dropped and the
 * file opened anew. So a file replaced (a new inode) or deleted is answered as it now is by the very
 * next request, and one rewritten in place is the same inode, read as it now is, with the size and
 * time of that fstatat: every answer is the one an open at that moment gives. What the cache saves is
 * the open, its fstat and the close. The bytes sent are always those of a file that was opened beneath
 * the root: a path that later resolves elsewhere names another inode.
 * Only regular files are kept. A loop's descriptors stay open until the root is freed (at most the
 * root's entries per loop), which is also when a loop's cache is freed. */

#define HTTP_STATIC_CACHE_WAYS 4
#define HTTP_STATIC_CACHE_MAX_ENTRIES 65536
#define HTTP_STATIC_CACHE_ROOTS 16 /* roots with a cache a thread can use at once; more are served uncached */

typedef struct http_static_cached {
    char *path;    /* relative to the root, owned; NULL: an empty slot */
    uint64_t hash; /* of path */
    uint64_t used; /* the cache's clock when last used */
    int fd;        /* opened beneath the root, owned by the cache */
    struct stat st;
} http_static_cached;

typedef struct http_static_cache {
    struct http_static_cache *next; /* in the root's list */
    unsigned sets;
    uint64_t clock;
    http_static_cached slots[]; /* sets * HTTP_STATIC_CACHE_WAYS */
} http_static_cache;

/* What every loop's cache of one root hangs on; the lock guards only the list (taken once per loop). */
struct http_static_caches {
    pthread_mutex_t lock;
    http_static_cache *list;
};

static atomic_uint_least64_t http_static_next_id = 1;

/* This thread's caches, by root id. An id is never reused, so a slot left by a freed root is never
 * matched again (and is cleared when the root is freed on this thread). */
static _Thread_local struct {
    uint64_t id;
    http_static_cache *cache;
} http_static_tls[HTTP_STATIC_CACHE_ROOTS];

static uint64_t http_static_hash(const char *path)
{
    uint64_t h = 14695981039346656037ULL; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)path; *p; p++)
        h = (h ^ *p) * 1099511628211ULL;
    return h;
}

static void http_static_cached_drop(http_static_cached *slot)
{
    if (!slot->path)
        return;
    close(slot->fd);
    free(slot->path);
    slot->path = NULL;
}

/* This loop's cache of root, made on first use; NULL when the root has none (or the thread already
 * serves HTTP_STATIC_CACHE_ROOTS roots with one). */
static http_static_cache *http_static_cache_of(const http_static_root *root)
{
    if (!root->cache_sets)
        return NULL;
    int free_slot = -1;
    for (int i = 0; i < HTTP_STATIC_CACHE_ROOTS; i++) {
        if (http_static_tls[i].id == root->id)
            return http_static_tls[i].cache;
        if (!http_static_tls[i].id && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0)
        return NULL;
    size_t n = (size_t)root->cache_sets * HTTP_STATIC_CACHE_WAYS;
    http_static_cache *c = xcalloc(1, sizeof(*c) + n * sizeof(c->slots[0]));
    c->sets = root->cache_sets;
    pthread_mutex_lock(&root->caches->lock);
    c->next = root->caches->list;
    root->caches->list = c;
    pthread_mutex_unlock(&root->caches->lock);
    http_static_tls[free_slot].id = root->id;
    http_static_tls[free_slot].cache = c;
    return c;
}

/* The path names the file the descriptor is open on: then reading the descriptor reads what a new
 * open would (the same inode: a file rewritten in place is read as it now is), and the answer's size,
 * time and ETag come from this fstatat, not from the time it was opened. */
static bool http_static_same_file(const struct stat *now, const struct stat *then)
{
    return now->st_dev == then->st_dev && now->st_ino == then->st_ino && S_ISREG(now->st_mode);
}

/* The cached descriptor of `path`, when its path still names that file (*st is filled with what it is
 * now); -1 otherwise (a stale slot is dropped). */
static int http_static_cache_get(http_static_cache *c, int root_fd, const char *path, uint64_t hash, struct stat *st)
{
    http_static_cached *set = &c->slots[(hash % c->sets) * HTTP_STATIC_CACHE_WAYS];
    for (int w = 0; w < HTTP_STATIC_CACHE_WAYS; w++) {
        http_static_cached *slot = &set[w];
        if (!slot->path || slot->hash != hash || strcmp(slot->path, path) != 0)
            continue;
        struct stat now;
        if (fstatat(root_fd, path, &now, 0) != 0 || !http_static_same_file(&now, &slot->st)) {
            http_static_cached_drop(slot);
            return -1;
        }
        slot->used = ++c->clock;
        *st = now;
        return slot->fd;
    }
    return -1;
}

/* Keeps fd (a regular file just opened beneath the root as `path`) in the cache, which owns it from
 * now on; the least recently used slot of its set makes room. */
static void http_static_cache_put(http_static_cache *c, const char *path, uint64_t hash, int fd, const struct stat *st)
{
    http_static_cached *set = &c->slots[(hash % c->sets) * HTTP_STATIC_CACHE_WAYS];
    http_static_cached *slot = &set[0];
    for (int w = 0; w < HTTP_STATIC_CACHE_WAYS; w++) {
        if (!set[w].path) {
            slot = &set[w];
            break;
        }
        if (set[w].used < slot->used)
            slot = &set[w];
    }
    http_static_cached_drop(slot);
    slot->path = xstrdup(path);
    slot->hash = hash;
    slot->used = ++c->clock;
    slot->fd = fd;
    slot->st = *st;
}

/* ---- roots -------------------------------------------------------------------------------------- */

http_static_root *http_static_root_open(const char *dir)
{
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return NULL;
    http_static_root *root = xcalloc(1, sizeof(*root));
    root->fd = fd;
    root->dir = xstrdup(dir);
    root->id = atomic_fetch_add(&http_static_next_id, 1);
    root->caches = xcalloc(1, sizeof(*root->caches));
    pthread_mutex_init(&root->caches->lock, NULL);
    return root;
}

void http_static_root_cache(http_static_root *root, unsigned entries)
{
    if (entries > HTTP_STATIC_CACHE_MAX_ENTRIES)
        entries = HTTP_STATIC_CACHE_MAX_ENTRIES;
    root->cache_sets = (entries + HTTP_STATIC_CACHE_WAYS - 1) / HTTP_STATIC_CACHE_WAYS;
}

void http_static_root_free(http_static_root *root)
{
    if (!root)
        return;
    for (http_static_cache *c = root->caches->list, *next; c; c = next) {
        next = c->next;
        for (size_t i = 0; i < (size_t)c->sets * HTTP_STATIC_CACHE_WAYS; i++)
            http_static_cached_drop(&c->slots[i]);
        free(c);
    }
    for (int i = 0; i < HTTP_STATIC_CACHE_ROOTS; i++)
        if (http_static_tls[i].id == root->id)
            http_static_tls[i].id = 0;
    pthread_mutex_destroy(&root->caches->lock);
    free(root->caches);
    close(root->fd);
    free(root->dir);
    free(root);
}

const char *http_static_root_dir(const http_static_root *root) { return root->dir; }

/* ---- the answer --------------------------------------------------------------------------------- */

#define HTTP_STATIC_OPEN_FLAGS (O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK) /* a FIFO must not block */

/* The first value of a request header, not copied; NULL when absent. */
static const char *http_static_header(const http_request *req, const char *name, size_t *len)
{
    size_t name_len = strlen(name);
    for (size_t i = 0; i < req->header_count; i++) {
        const http_header *h = &req->headers[i];
        if (h->name_len == name_len && strncasecmp(h->name, name, name_len) == 0) {
            *len = h->value_len;
            return h->value;
        }
    }
    return NULL;
}

/* The original's metadata, as far as a precompressed sibling needs it: unknown until a sibling was
 * found, then either taken (a regular file, not a symlink) or "ask the confined open" (anything else). */
typedef enum http_static_orig { HTTP_STATIC_ORIG_UNKNOWN, HTTP_STATIC_ORIG_KNOWN, HTTP_STATIC_ORIG_OPEN } http_static_orig;

static bool http_static_older(const struct stat *a, const struct stat *b)
{
    return a->st_mtim.tv_sec < b->st_mtim.tv_sec ||
           (a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec < b->st_mtim.tv_nsec);
}

/* Opens `path` beneath the root and fstats it into *st; -1 with errno. With a cache (this loop's, or
 * NULL), a cached descriptor is taken after its check, and a regular file opened here is kept in it: then
 * *kept is true and the descriptor is the cache's, valid until the next cache call (release it with
 * http_static_release, which does not close it). */
static int http_static_open_file(const http_static_root *root, http_static_cache *cache, const char *path,
                                 struct stat *st, bool *kept)
{
    *kept = false;
    uint64_t hash = 0;
    if (cache) {
        hash = http_static_hash(path);
        int fd = http_static_cache_get(cache, root->fd, path, hash, st);
        if (fd >= 0) {
            *kept = true;
            return fd;
        }
    }
    int fd = http_static_open(root->fd, path, HTTP_STATIC_OPEN_FLAGS, false);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) != 0) {
        int err = errno;
        close(fd);
        errno = err;
        return -1;
    }
    if (cache && S_ISREG(st->st_mode)) {
        http_static_cache_put(cache, path, hash, fd, st);
        *kept = true;
    }
    return fd;
}

static void http_static_release(int fd, bool kept)
{
    if (fd >= 0 && !kept)
        close(fd);
}

/* A precompressed sibling NAME.ext, when it is a regular file at least as new as the original; -1
 * otherwise. The sibling is opened first, so a request that gets one opens one file, not two: the
 * original is then only stat'ed (fstatat without following a final symlink), which cannot leave the
 * root because the sibling's confined open has just resolved the same directory beneath it. An
 * original that is not a plain regular file there (a symlink, a directory, missing) sets *state to
 * HTTP_STATIC_ORIG_OPEN: the caller opens it the confined way and asks again with *orig known. With a
 * cache, *kept says the descriptor is the cache's (http_static_open_file). */
static int http_static_sibling(const http_static_root *root, http_static_cache *cache, http_request *req,
                               const char *name, const char *ext, struct stat *orig, http_static_orig *state,
                               struct stat *st, bool *kept)
{
    size_t n = strlen(name), e = strlen(ext);
    char *path = arena_alloc(&req->arena, n + e + 1);
    memcpy(path, name, n);
    memcpy(path + n, ext, e + 1);
    int fd = http_static_open_file(root, cache, path, st, kept);
    if (fd < 0)
        return -1;
    if (!S_ISREG(st->st_mode)) {
        http_static_release(fd, *kept);
        return -1;
    }
    if (*state == HTTP_STATIC_ORIG_UNKNOWN) {
        if (fstatat(root->fd, name, orig, AT_SYMLINK_NOFOLLOW) != 0 || !S_ISREG(orig->st_mode)) {
            *state = HTTP_STATIC_ORIG_OPEN;
            http_static_release(fd, *kept);
            return -1;
        }
        *state = HTTP_STATIC_ORIG_KNOWN;
    }
    if (http_static_older(st, orig)) {
        http_static_release(fd, *kept); /* stale: the original was changed after it was compressed */
        return -1;
    }
    return fd;
}

static const char *const http_static_ext[3] = {[HTTP_CODING_GZIP] = ".gz", [HTTP_CODING_BR] = ".br"};

/* The precompressed siblings the client accepts, best first by its q-values (identity wins only with a
 * higher q than a coding's); *tie says both are acceptable at the same q, so the smaller file is served
 * (http_static_smaller). On a tie the .br is tried first: compressed once at build time (brotli -q 11
 * against gzip -9) it is nearly always the smaller file, so the usual tie opens one file, not two. */
static int http_static_candidates(const unsigned q[3], int cand[2], bool *tie)
{
    int order[2] = {HTTP_CODING_BR, HTTP_CODING_GZIP};
    if (q[HTTP_CODING_GZIP] > q[HTTP_CODING_BR]) {
        order[0] = HTTP_CODING_GZIP;
        order[1] = HTTP_CODING_BR;
    }
    int n = 0;
    for (int i = 0; i < 2; i++)
        if (q[order[i]] > 0 && q[order[i]] >= q[HTTP_CODING_IDENTITY])
            cand[n++] = order[i];
    *tie = n == 2 && q[HTTP_CODING_GZIP] == q[HTTP_CODING_BR];
    return n;
}

/* On a tie, whether the sibling of coding `other` (its stat `o`) is the one to serve instead of the
 * `coding` sibling (stat `st`): the smaller file, and on the same size the coding compression.prefer
 * puts first. */
static bool http_static_other_wins(const struct stat *o, int other, const struct stat *st, int coding,
                                   const unsigned char *prefer)
{
    if (o->st_size != st->st_size)
        return o->st_size < st->st_size;
    for (int i = 0; i < HTTP_SETTINGS_CODINGS; i++)
        if (prefer[i] == other || prefer[i] == coding)
            return prefer[i] == other;
    return false;
}

/* A tie whose first sibling (fd, coding *coding, stat *st) was found: the other one (`other`) costs
 * one fstatat (symlinks followed, as the confined open follows them), and replaces it when it is a
 * regular file at least as new as the original that wins http_static_other_wins. Only then is it
 * opened, the confined way; the first is let go before, so the open-file cache may reuse its slot,
 * and opened again should the other's open fail after all (a race with the disk). */
static int http_static_smaller(const http_static_root *root, http_static_cache *cache, http_request *req,
                               const char *name, int other, int fd, struct stat *orig, http_static_orig *state,
                               struct stat *st, bool *kept, int *coding)
{
    size_t n = strlen(name);
    char *path = arena_alloc(&req->arena, n + 4);
    memcpy(path, name, n);
    memcpy(path + n, http_static_ext[other], 4);
    struct stat o;
    if (fstatat(root->fd, path, &o, 0) != 0 || !S_ISREG(o.st_mode) || http_static_older(&o, orig) ||
        !http_static_other_wins(&o, other, st, *coding, req->_conn->loop->settings->compress_prefer))
        return fd;
    http_static_release(fd, *kept);
    int first = *coding;
    fd = http_static_sibling(root, cache, req, name, http_static_ext[other], orig, state, st, kept);
    if (fd >= 0) {
        *coding = other;
        return fd;
    }
    fd = http_static_sibling(root, cache, req, name, http_static_ext[first], orig, state, st, kept);
    if (fd < 0)
        *coding = -1;
    return fd;
}

/* The sibling to serve among cand[0..n) (http_static_candidates), its descriptor and *coding; -1 when
 * none can be (or *state turned HTTP_STATIC_ORIG_OPEN: the caller opens the original first). */
static int http_static_pick(const http_static_root *root, http_static_cache *cache, http_request *req,
                            const char *name, const int *cand, int n, bool tie, struct stat *orig,
                            http_static_orig *state, struct stat *st, bool *kept, int *coding)
{
    for (int i = 0; i < n && *state != HTTP_STATIC_ORIG_OPEN; i++) {
        int fd = http_static_sibling(root, cache, req, name, http_static_ext[cand[i]], orig, state, st, kept);
        if (fd < 0)
            continue;
        *coding = cand[i];
        if (tie && i == 0)
            fd = http_static_smaller(root, cache, req, name, cand[1], fd, orig, state, st, kept, coding);
        return fd;
    }
    return -1;
}

static void http_static_not_found(http_request *req, int err)
{
    if (err == EACCES)
        http_respond_problem(req, 403, NULL, "the file is not readable by the server");
    else
        http_respond_problem(req, 404, NULL, "no such file");
}

/* NAME/index.html (NAME "" or ending in '/': no second slash), in the request's arena. */
static const char *http_static_index(http_request *req, const char *name)
{
    size_t n = strlen(name);
    char *index = arena_alloc(&req->arena, n + sizeof("/index.html"));
    snprintf(index, n + sizeof("/index.html"), "%s%sindex.html", name, n && name[n - 1] != '/' ? "/" : "");
    return index;
}

static void http_static_answer(http_request *req, const http_static_root *root, const char *name, bool dir_ok);

void http_respond_file(http_request *req, const http_static_root *root, const char *path)
{
    /* Refused before any open, with RESOLVE_BENEATH as the second line: ".." could only ever fail or
     * stay inside, and a backslash is a separator to no one here but a sign of a Windows-style attack. */
    for (const char *p = path; *p; p++) {
        bool seg_start = p == path || p[-1] == '/';
        if (*p == '\\' || (seg_start && p[0] == '.' && p[1] == '.' && (p[2] == '/' || p[2] == '\0'))) {
            http_respond_problem(req, 400, NULL, "a file path may not contain '..' segments or backslashes");
            return;
        }
    }
    /* A name that can only be a directory goes straight to its index.html (no listing, no redirect);
     * "/static/docs" is found to be one when it is opened. */
    size_t n = strlen(path);
    if (n == 0 || path[n - 1] == '/')
        http_static_answer(req, root, http_static_index(req, path), false);
    else
        http_static_answer(req, root, path, true);
}

/* The file `name` (or, when dir_ok and it is a directory, its index.html) as the answer. */
static void http_static_answer(http_request *req, const http_static_root *root, const char *name, bool dir_ok)
{
    const char *type = http_static_content_type(name);
    bool vary = http_media_type_compressible(type);

    /* Types known to be compressed already (images, fonts, archives) have no siblings looked for: a .gz
     * of a .webp is no smaller. */
    static const char *const coding_name[3] = {[HTTP_CODING_GZIP] = "gzip", [HTTP_CODING_BR] = "br"};
    int cand[2], ncand = 0;
    bool tie = false;
    size_t ae_len = 0;
    const char *ae = http_static_header(req, "Accept-Encoding", &ae_len);
    if (ae && (vary || strcmp(type, "application/octet-stream") == 0)) {
        unsigned q[3];
        http_accept_encoding_q(ae, ae_len, q);
        ncand = http_static_candidates(q, cand, &tie);
    }

    /* kept: fd is this loop's open-file cache's, not to be closed (a root without a cache never keeps) */
    http_static_cache *cache = http_static_cache_of(root);
    struct stat st, orig;
    http_static_orig state = HTTP_STATIC_ORIG_UNKNOWN;
    int coding = -1;
    bool kept = false;
    int fd = http_static_pick(root, cache, req, name, cand, ncand, tie, &orig, &state, &st, &kept, &coding);
    if (fd < 0) {
        /* No sibling (or the original is more than a plain file): the original, opened the confined way. */
        fd = http_static_open_file(root, cache, name, &st, &kept);
        if (fd < 0) {
            http_static_not_found(req, errno);
            return;
        }
        if (S_ISDIR(st.st_mode) && dir_ok) {
            http_static_release(fd, kept);
            http_static_answer(req, root, http_static_index(req, name), false);
            return;
        }
        if (!S_ISREG(st.st_mode)) {
            http_static_release(fd, kept);
            http_static_not_found(req, ENOENT);
            return;
        }
        if (state == HTTP_STATIC_ORIG_OPEN) { /* a symlink beneath the root, say: its siblings, as above */
            orig = st;
            state = HTTP_STATIC_ORIG_KNOWN;
            /* not through the cache: a slot it replaced could be the one fd is */
            struct stat sib_st;
            bool sib_kept;
            int sib = http_static_pick(root, NULL, req, name, cand, ncand, tie, &orig, &state, &sib_st, &sib_kept,
                                       &coding);
            if (sib >= 0) {
                http_static_release(fd, kept);
                fd = sib;
                kept = sib_kept;
                st = sib_st;
            }
        }
    }
    if (coding >= 0) {
        vary = true;
        http_response_header(req, "Content-Encoding", coding_name[coding]);
    }
    /* Validators: the ETag changes with the file's time and size (and so differs per sibling). */
    char etag[64], modified[HTTP_DATE_LEN + 1];
    snprintf(etag, sizeof(etag), "\"%llx-%llx-%llx\"", (unsigned long long)st.st_mtim.tv_sec,
             (unsigned long long)st.st_mtim.tv_nsec, (unsigned long long)st.st_size);
    http_date_format(st.st_mtim.tv_sec, modified);
    http_response_header(req, "ETag", etag);
    http_response_header(req, "Last-Modified", modified);

    size_t inm_len = 0, ims_len = 0;
    const char *inm = http_static_header(req, "If-None-Match", &inm_len);
    const char *ims = inm ? NULL : http_static_header(req, "If-Modified-Since", &ims_len);
    time_t since;
    if ((inm && http_etag_list_matches(inm, inm_len, etag)) ||
        (ims && http_date_parse(ims, ims_len, &since) && st.st_mtim.tv_sec <= since)) {
        http_static_release(fd, kept);
        if (vary) /* a 304 carries the Vary its 200 would (RFC 9110 15.4.5) */
            http_response_header(req, "Vary", "Accept-Encoding");
        if (http_request_begin_answer(req))
            http_conn_send_file(req->_conn, 304, NULL, -1, 0, 0, false);
        return;
    }

    uint64_t size = (uint64_t)st.st_size, first = 0, last = 0;
    size_t range_len = 0, if_range_len = 0;
    const char *range = http_static_header(req, "Range", &range_len);
    const char *if_range = range ? http_static_header(req, "If-Range", &if_range_len) : NULL;
    if (if_range && !(if_range_len == strlen(etag) && memcmp(if_range, etag, if_range_len) == 0) &&
        !(if_range_len == HTTP_DATE_LEN && memcmp(if_range, modified, HTTP_DATE_LEN) == 0))
        range = NULL; /* the client's copy is of another version: it gets the whole new one */
    http_range_result r = range ? http_range_parse(range, range_len, size, &first, &last) : HTTP_RANGE_WHOLE;
    if (r == HTTP_RANGE_UNSATISFIABLE) {
        http_static_release(fd, kept);
        char cr[48];
        snprintf(cr, sizeof(cr), "bytes */%llu", (unsigned long long)size);
        http_response_header(req, "Content-Range", cr);
        http_respond_problem(req, 416, NULL, "the range starts past the end of the file (%llu bytes)",
                             (unsigned long long)size);
        return;
    }
    /* Not before the 416 above: its problem body gets its Vary from the engine's own coding decision. */
    if (vary)
        http_response_header(req, "Vary", "Accept-Encoding");
    http_response_header(req, "Accept-Ranges", "bytes");
    int status = 200;
    if (r == HTTP_RANGE_PART) {
        char cr[80];
        snprintf(cr, sizeof(cr), "bytes %llu-%llu/%llu", (unsigned long long)first, (unsigned long long)last,
                 (unsigned long long)size);
        http_response_header(req, "Content-Range", cr);
        status = 206;
    } else {
        last = size ? size - 1 : 0;
    }
    size_t len = size ? (size_t)(last - first + 1) : 0;
    if (kept && !http_conn_file_inline(len)) {
        /* sent later by sendfile, while the cache may replace its slot: the connection gets its own */
        int own = fcntl(fd, F_DUPFD_CLOEXEC, 0);
        if (own < 0) {
            http_respond_problem(req, 503, NULL, "the server is out of file descriptors");
            return;
        }
        fd = own;
        kept = false;
    }
    if (http_request_begin_answer(req))
        http_conn_send_file(req->_conn, status, type, fd, (off_t)first, len, kept);
    else
        http_static_release(fd, kept);
}
