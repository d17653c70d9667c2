/* http_sse: Server-Sent Events (the WHATWG HTML "event stream" format) on top of a streamed answer.
 * An event is "event: NAME\n", "id: ID\n", one "data: LINE\n" per line of its data, and a blank line;
 * comments (": text\n") keep idle connections alive through proxies: the heartbeat sends one whenever
 * nothing was written for sse.heartbeat_ms. The heartbeat is one persistent loop timer in the stream,
 * deleted by a cleanup of the request's scope, so it stops with the request like everything else and,
 * unlike an async_sleep per beat, adds nothing to the request's memory however long the stream runs. */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>

#include "async_internal.h"
#include "http_internal.h"
#include "xalloc_internal.h"

static void http_sse_put(char **out, size_t *len, size_t *cap, const char *s, size_t n)
{
    if (*len + n + 1 > *cap) {
        size_t c = *cap ? *cap : 128;
        while (c < *len + n + 1)
            c *= 2;
        *out = xrealloc(*out, c);
        *cap = c;
    }
    memcpy(*out + *len, s, n);
    *len += n;
    (*out)[*len] = '\0';
}

/* A field value may hold anything but CR, LF and NUL: a line break would end the field early and let
 * the rest pass as fields of its own. */
static bool http_sse_field_ok(const char *s) { return !s || !strpbrk(s, "\r\n"); }

bool http_sse_format(char **out, size_t *len, size_t *cap, const char *event, const char *id, const char *data,
                     size_t data_len)
{
    if (!http_sse_field_ok(event) || !http_sse_field_ok(id))
        return false;
    if (event) {
        http_sse_put(out, len, cap, "event: ", 7);
        http_sse_put(out, len, cap, event, strlen(event));
        http_sse_put(out, len, cap, "\n", 1);
    }
    if (id) {
        http_sse_put(out, len, cap, "id: ", 4);
        http_sse_put(out, len, cap, id, strlen(id));
        http_sse_put(out, len, cap, "\n", 1);
    }
    /* Every line of data, however it ends (CRLF, LF or CR), is a data line of its own. Empty data is
     * still one "data:" line, so the client dispatches the event. */
    size_t i = 0;
    do {
        size_t start = i;
        while (i < data_len && data[i] != '\r' && data[i] != '\n')
            i++;
        http_sse_put(out, len, cap, "data: ", 6);
        http_sse_put(out, len, cap, data ? data + start : "", i - start);
        http_sse_put(out, len, cap, "\n", 1);
        if (i < data_len) {
            if (data[i] == '\r' && i + 1 < data_len && data[i + 1] == '\n')
                i++;
            i++;
            if (i == data_len) { /* a trailing line break ends one more, empty, line */
                http_sse_put(out, len, cap, "data: \n", 7);
                break;
            }
        }
    } while (i < data_len);
    http_sse_put(out, len, cap, "\n", 1);
    return true;
}

/* Writes one formatted piece through the stream's bound. */
static int http_sse_write(http_stream *s, char *text, size_t len)
{
    int rc = http_stream_write(s, text, len);
    free(text);
    return rc;
}

int http_sse_send(http_stream *s, const char *event, const char *id, const char *data, size_t len)
{
    char *text = NULL;
    size_t n = 0, cap = 0;
    if (!http_sse_format(&text, &n, &cap, event, id, data, len)) {
        free(text);
        return HTTP_SSE_INVALID;
    }
    return http_sse_write(s, text, n);
}

int http_sse_retry(http_stream *s, unsigned ms)
{
    char line[32];
    char digits[12];
    size_t n = 0, k = 0;
    do
        digits[n++] = (char)('0' + ms % 10);
    while ((ms /= 10) != 0);
    memcpy(line, "retry: ", 7);
    k = 7;
    while (n)
        line[k++] = digits[--n];
    line[k++] = '\n';
    line[k++] = '\n';
    return http_stream_write(s, line, k);
}

int http_sse_comment(http_stream *s, const char *text)
{
    if (!http_sse_field_ok(text))
        return HTTP_SSE_INVALID;
    size_t len = strlen(text);
    char *line = xmalloc(len + 4);
    line[0] = ':';
    line[1] = ' ';
    memcpy(line + 2, text, len);
    line[len + 2] = '\n';
    line[len + 3] = '\n';
    return http_sse_write(s, line, len + 4);
}

const char *http_sse_last_event_id(http_request *req) { return http_request_header(req, "Last-Event-ID"); }

/* The heartbeat: wakes every heartbeat_ms, and sends a comment when the stream wrote nothing since
 * the last wake-up. A full buffer skips one beat (the client is not reading; write_ms decides). */
static void http_sse_beat(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_stream *s = arg;
    if (s->closed)
        return;
    if (s->writes == s->heartbeat_seen && http_stream_writable(s))
        http_stream_queue(s, ": heartbeat\n\n", 13); /* not the producer's: stream_idle_ms runs on */
    s->heartbeat_seen = s->writes;
}

/* The request's scope ends (stream ended, client gone, server stopping): before its memory goes. */
static void http_sse_beat_stop(void *arg)
{
    http_stream *s = arg;
    event_del(&s->heartbeat);
}

http_stream *http_sse_start(http_request *req)
{
    http_response_header(req, "Cache-Control", "no-cache");
    http_response_header(req, "X-Accel-Buffering", "no"); /* nginx: pass each event on at once */
    http_stream *s = http_stream_start(req, 200, "text/event-stream");
    if (!s)
        return NULL;
    s->heartbeat_ms = req->_conn->loop->settings->sse_heartbeat_ms;
    if (s->heartbeat_ms) {
        s->heartbeat_seen = s->writes;
        event_assign(&s->heartbeat, req->_conn->loop->base, -1, EV_PERSIST, http_sse_beat, s);
        struct timeval tv = {(time_t)(s->heartbeat_ms / 1000), (suseconds_t)(s->heartbeat_ms % 1000) * 1000};
        event_add(&s->heartbeat, &tv);
        async_scope_defer(req->_scope, http_sse_beat_stop, s);
    }
    return s;
}
