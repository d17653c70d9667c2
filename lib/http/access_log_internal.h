/* access_log: one JSON line per answered request (time, request id, client address, method, path,
 * status, bytes, duration in µs), to stderr or a file. Each loop formats into its own buffer and writes
 * it whole when it passes 32 KiB, once a second, and when the loop ends, so logging costs a memcpy-sized
 * format per request and one write(2) per many requests. Lines never interleave: each write holds whole
 * lines and the file is opened O_APPEND. */
#ifndef APIARY_ACCESS_LOG_H
#define APIARY_ACCESS_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct access_log_entry {
    const char *request_id;
    const char *client;     /* textual address */
    const char *method;
    const char *path;       /* as sent (raw target), escaped when written */
    size_t path_len;
    int status;
    size_t bytes;           /* body bytes sent */
    uint64_t duration_us;   /* first byte of the request to the answer being queued */
} access_log_entry;

typedef struct access_log_buf {
    char *data;
    size_t len, cap;
    int64_t second;         /* the second `stamp` was formatted for */
    char stamp[24];         /* "2026-11-23T18:22:31." */
} access_log_buf;

/* Opens the sink: "" or NULL for stderr, else a file created 0640 and appended to. Returns 0, or -1
 * with a message in err. Call once at start-up, before the loops run. */
int access_log_open(const char *path, char *err, size_t err_len);
void access_log_close(void);
/* Config reload: switch to `path` ("" stderr), or turn the log off (enabled false), while loops write.
 * An already open file is replaced in place (dup2), so no loop ever writes to a closed descriptor.
 * Also reopens the same path after log rotation. Returns 0 or -1 (err set, old sink kept). */
int access_log_reopen(bool enabled, const char *path, char *err, size_t err_len);
bool access_log_enabled(void);

/* Loop thread: appends one line; flushes when the buffer is full. */
void access_log_append(access_log_buf *b, const access_log_entry *e);
/* Loop thread: writes what is buffered. */
void access_log_flush(access_log_buf *b);
/* Flushes and frees the buffer. */
void access_log_buf_free(access_log_buf *b);

#endif
