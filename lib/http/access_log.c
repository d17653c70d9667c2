/* access_log: see access_log_internal.h. */
#include "access_log_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "xalloc_internal.h"

#define ACCESS_LOG_FLUSH_BYTES 32768

#include <stdatomic.h>

/* Read by every loop per request, changed only by start-up and reloads. */
static atomic_int access_log_fd = -1;
static int access_log_file_fd = -1; /* the descriptor number writers use for a file sink */

static int access_log_open_file(const char *path, char *err, size_t err_len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    if (fd < 0)
        snprintf(err, err_len, "cannot open access log %s: %s", path, strerror(errno));
    return fd;
}

int access_log_open(const char *path, char *err, size_t err_len)
{
    return access_log_reopen(true, path, err, err_len); /* with no file open yet, a reopen is an open */
}

int access_log_reopen(bool enabled, const char *path, char *err, size_t err_len)
{
    if (!enabled) {
        access_log_fd = -1; /* the file stays open (writers may be mid-line); closed at exit */
        return 0;
    }
    if (!path || !*path) {
        access_log_fd = STDERR_FILENO;
        return 0;
    }
    int fd = access_log_open_file(path, err, err_len);
    if (fd < 0)
        return -1;
    if (access_log_file_fd >= 0) {
        dup3(fd, access_log_file_fd, O_CLOEXEC); /* atomic for writers: same number, new file */
        close(fd);
    } else {
        access_log_file_fd = fd;
    }
    access_log_fd = access_log_file_fd;
    return 0;
}

void access_log_close(void)
{
    access_log_fd = -1;
    if (access_log_file_fd >= 0)
        close(access_log_file_fd);
    access_log_file_fd = -1;
}

bool access_log_enabled(void) { return access_log_fd >= 0; }

void access_log_flush(access_log_buf *b)
{
    size_t off = 0;
    int fd = access_log_fd;
    while (off < b->len && fd >= 0) {
        ssize_t n = write(fd, b->data + off, b->len - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* a full disk must not take the server down: the lines are dropped */
        off += (size_t)n;
    }
    b->len = 0;
}

void access_log_buf_free(access_log_buf *b)
{
    access_log_flush(b);
    free(b->data);
    b->data = NULL;
    b->cap = 0;
}

static void access_log_reserve(access_log_buf *b, size_t n)
{
    if (b->cap - b->len >= n)
        return;
    size_t cap = b->cap ? b->cap : 2 * ACCESS_LOG_FLUSH_BYTES;
    while (cap - b->len < n)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

/* JSON string body: quotes, backslashes and control bytes escaped; other bytes as they are (a path is
 * percent-encoded by clients, so non-ASCII here is rare and harmless to a line-oriented reader). */
static void access_log_put_escaped(access_log_buf *b, const char *s, size_t len)
{
    access_log_reserve(b, len * 6 + 2);
    char *p = b->data + b->len;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\') {
            *p++ = '\\';
            *p++ = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            p += sprintf(p, "\\u%04x", c);
        } else {
            *p++ = (char)c;
        }
    }
    b->len = (size_t)(p - b->data);
}

static void access_log_put(access_log_buf *b, const char *s)
{
    size_t n = strlen(s);
    access_log_reserve(b, n);
    memcpy(b->data + b->len, s, n);
    b->len += n;
}

void access_log_append(access_log_buf *b, const access_log_entry *e)
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME_COARSE, &now);
    if (now.tv_sec != b->second) {
        struct tm tm;
        gmtime_r(&now.tv_sec, &tm);
        strftime(b->stamp, sizeof(b->stamp), "%Y-%m-%dT%H:%M:%S.", &tm);
        b->second = now.tv_sec;
    }
    char tail[128];
    access_log_put(b, "{\"time\":\"");
    access_log_put(b, b->stamp);
    snprintf(tail, sizeof(tail), "%03ldZ\",\"request_id\":\"", now.tv_nsec / 1000000);
    access_log_put(b, tail);
    access_log_put_escaped(b, e->request_id, strlen(e->request_id));
    access_log_put(b, "\",\"client\":\"");
    access_log_put(b, e->client);
    access_log_put(b, "\",\"method\":\"");
    access_log_put(b, e->method);
    access_log_put(b, "\",\"path\":\"");
    access_log_put_escaped(b, e->path, e->path_len);
    snprintf(tail, sizeof(tail), "\",\"status\":%d,\"bytes\":%zu,\"duration_us\":%llu}\n", e->status, e->bytes,
             (unsigned long long)e->duration_us);
    access_log_put(b, tail);
    if (b->len >= ACCESS_LOG_FLUSH_BYTES)
        access_log_flush(b);
}
