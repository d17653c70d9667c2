/* http_conn: one client connection on its loop. Reads into a pooled buffer, feeds llhttp, dispatches
 * one request at a time (pipelined requests wait in the input buffer, so answers leave in order),
 * writes every queued response with a single send, and runs the per-state timers: header, body,
 * keep-alive, write and linger.
 *
 * Lifetime: the loop owns every connection through its list. A connection is freed only by
 * http_conn_release, and only when no engine frame of it is on the stack (`busy`), so a handler
 * that answers synchronously, a cancel callback or a timer can close it without the caller touching
 * freed memory afterwards. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "async_internal.h"
#include "coro_internal.h"
#include "http_compress_internal.h"
#include "http_internal.h"
#include "http_validate_internal.h"
#include "json_writer_internal.h"
#include "log.h"
#include "pool.h"
#include "xalloc_internal.h"

#define HTTP_CONN_MIN_READ 2048 /* below this much free space, compact or grow before reading */
#define HTTP_CONN_LINGER_READS 16 /* 64 KiB drained a wake-up while lingering */
#define HTTP_MAX_QUERY_PAIRS 64
#define HTTP_MAX_QUERY_PAIRS_STR "64"
/* Empty lines before a request line (RFC 9112 2.2: a server SHOULD ignore at least one). The first
 * CRLF is free (old clients send one after a POST body) and stays on the keep-alive timer; more start
 * the header deadline, and more than four lines' worth of CR/LF bytes are 400: otherwise one CRLF
 * every few seconds held a connection open for ever. */
#define HTTP_FREE_BLANK_BYTES 2
#define HTTP_MAX_BLANK_BYTES 8

/* End of input is a half-close unless the peer closed both directions, which the kernel tells for a
 * Unix-socket peer (POLLHUP). A TCP peer's close() looks like shutdown(SHUT_WR) until a write to it
 * fails or it resets; RST reaches recv as ECONNRESET. */
static bool http_conn_peer_hung_up(int fd)
{
    struct pollfd p = {.fd = fd, .events = POLLOUT};
    return poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR));
}

static void http_conn_on_read(evutil_socket_t fd, short what, void *arg);
static void http_conn_on_write(evutil_socket_t fd, short what, void *arg);
static void http_conn_on_timer(evutil_socket_t fd, short what, void *arg);
static void http_conn_on_closed(evutil_socket_t fd, short what, void *arg);
static void http_conn_process(http_conn *conn);
static void http_conn_flush(http_conn *conn);
static void http_conn_close(http_conn *conn);
static const char *http_conn_peer_text(const http_conn *conn, char *buf, size_t len);
static void http_conn_log(http_conn *conn, const http_request *req, int status, size_t bytes, uint64_t us);
static uint64_t http_conn_now_us(void);
static void http_conn_timer_in(http_conn *conn, uint64_t ms, const struct timeval *common);

/* ---- lifetime ---------------------------------------------------------------------------------- */

static void http_conn_enter(http_conn *conn) { conn->busy++; }

static void http_conn_free(http_conn *conn)
{
    http_loop *loop = conn->loop;
    buf_release(&conn->in, &loop->cache);
    buf_release(&conn->out, &loop->cache);
    buf_release(&conn->body, &loop->cache);
    free(conn);
}

/* Leaves an engine frame; the last frame out frees a dead connection. */
static void http_conn_leave(http_conn *conn)
{
    if (--conn->busy == 0 && conn->dead)
        http_conn_free(conn);
}

void http_conn_accept(http_loop *loop, int fd, const struct sockaddr *peer, bool over_limit)
{
    int one = 1;
    /* Responses are written whole in one send; Nagle would only delay the last segment. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    http_conn *conn = xcalloc(1, sizeof(*conn));
    conn->loop = loop;
    conn->fd = fd;
    conn->file_fd = -1;
    conn->state = HTTP_CONN_IDLE;
    conn->fresh = true;
    conn->over_limit = over_limit;
    conn->accepted_ms = http_conn_now_ms();
    if (peer && peer->sa_family == AF_INET) {
        conn->peer_family = AF_INET;
        memcpy(conn->peer_addr, &((const struct sockaddr_in *)(const void *)peer)->sin_addr, 4);
    } else if (peer && peer->sa_family == AF_INET6) {
        conn->peer_family = AF_INET6;
        memcpy(conn->peer_addr, &((const struct sockaddr_in6 *)(const void *)peer)->sin6_addr, 16);
    }
    llhttp_init(&conn->parser, HTTP_REQUEST, http_parser_settings());
    conn->parser.data = conn;
    event_assign(&conn->read_ev, loop->base, fd, EV_READ | EV_PERSIST, http_conn_on_read, conn);
    event_assign(&conn->write_ev, loop->base, fd, EV_WRITE | EV_PERSIST, http_conn_on_write, conn);
    evtimer_assign(&conn->timer_ev, loop->base, http_conn_on_timer, conn);
    event_assign(&conn->close_ev, loop->base, fd, EV_CLOSED, http_conn_on_closed, conn); /* one-shot */
    http_loop_conn_added(loop, conn);
    event_add(&conn->read_ev, NULL);
    conn->reading = true;
    http_conn_timer_in(conn, loop->settings->header_timeout_ms, loop->tv_header);
}

/* The loop's list of half-closed connections holding an async place (half_close "answer"). */
static void http_conn_eof_list_add(http_conn *conn)
{
    http_loop *loop = conn->loop;
    if (conn->on_eof_list)
        return;
    conn->on_eof_list = true;
    conn->eof_next = NULL;
    conn->eof_prev = loop->eof_tail;
    if (loop->eof_tail)
        loop->eof_tail->eof_next = conn;
    else
        loop->eof_head = conn;
    loop->eof_tail = conn;
}

static void http_conn_eof_list_remove(http_conn *conn)
{
    http_loop *loop = conn->loop;
    if (!conn->on_eof_list)
        return;
    if (conn->eof_prev)
        conn->eof_prev->eof_next = conn->eof_next;
    else
        loop->eof_head = conn->eof_next;
    if (conn->eof_next)
        conn->eof_next->eof_prev = conn->eof_prev;
    else
        loop->eof_tail = conn->eof_prev;
    conn->eof_prev = conn->eof_next = NULL;
    conn->on_eof_list = false;
}

/* A request in flight on a connection whose client sent its FIN: with half_close "answer" and an
 * async place held, it goes on the list the cap may take places back from. */
static void http_conn_note_half_closed(http_conn *conn)
{
    if ((conn->peer_eof || conn->fin_pending) && conn->loop->settings->half_close_answer &&
        conn->state == HTTP_CONN_HANDLER && conn->slot && conn->slot->req._scope)
        http_conn_eof_list_add(conn);
}

void http_conn_async_started(http_conn *conn) { http_conn_note_half_closed(conn); }

/* Ends the current request's use of its slot: arena, parsed JSON, the slot itself. */
static void http_conn_end_request(http_conn *conn)
{
    http_req_slot *slot = conn->slot;
    http_conn_eof_list_remove(conn);
    conn->stream = NULL; /* both live in the request's arena */
    conn->body_stream = NULL;
    if (!slot)
        return;
    /* The handler's coroutine, still running, loses its request. Freeing the scope below may resume it
     * to unwind, and it may return right there: ENDING tells it the slot is still in use here. */
    if (slot->coro_state == HTTP_CORO_RUNNING)
        slot->coro_state = HTTP_CORO_ENDING;
    if (slot->req._scope) {
        /* Cancels every pending operation of the request, so none runs into the arena freed below. */
        async_scope_free(slot->req._scope);
        slot->req._scope = NULL;
        HTTP_STAT_ADD(conn->loop, async_inflight, (uint64_t)-1);
    }
    json_decref(slot->req._json);
    if (slot->req._writer) {
        json_writer_release(slot->req._writer); /* its block back to the loop's cache */
        slot->req._writer = NULL;
    }
    arena_reset(&slot->req.arena);
    conn->slot = NULL;
    if (slot->coro_state == HTTP_CORO_ENDING)
        slot->coro_state = HTTP_CORO_ORPHANED; /* still running: its return gives the slot back */
    else
        http_loop_slot_put(conn->loop, slot);
}

static void http_conn_close(http_conn *conn)
{
    if (conn->dead)
        return;
    http_loop *loop = conn->loop;
    if (conn->state == HTTP_CONN_HANDLER && conn->slot) {
        /* The client left (or the server is stopping) before the handler answered: let the handler's
         * operations stop and free themselves, then forget the request. Marking the connection dead
         * first makes any answer attempted from inside the callback a no-op. */
        conn->dead = true;
        HTTP_STAT_ADD(loop, cancelled, 1);
        http_request *req = &conn->slot->req;
        if (req->_cancel_fn)
            req->_cancel_fn(req, req->_cancel_arg);
    }
    conn->dead = true;
    if (conn->upgrade_ops)
        conn->upgrade_ops->closed(conn->upgrade_arg); /* the taker lets go before the fd does */
    /* The timer and the FIN watch are deleted only when pending (each event_del takes the base's lock,
     * two of four per connection were no-ops): timer_armed and watching_close say so, and neither can
     * be active without being pending first. An upgraded connection's taker arms them itself (ws.c),
     * so there every event is deleted. read_ev and write_ev may be active (event_active) while not
     * pending: always deleted. */
    bool taken = conn->state == HTTP_CONN_UPGRADED;
    event_del(&conn->read_ev);
    event_del(&conn->write_ev);
    if (taken || conn->timer_armed)
        event_del(&conn->timer_ev);
    conn->timer_armed = false;
    if (taken || conn->watching_close)
        event_del(&conn->close_ev);
    close(conn->fd);
    conn->fd = -1;
    if (conn->file_fd >= 0) {
        close(conn->file_fd);
        conn->file_fd = -1;
    }
    http_conn_end_request(conn);
    http_loop_conn_removed(loop, conn);
    if (conn->busy == 0)
        http_conn_free(conn);
}

/* The client is gone, or, with `half_closed`, sent its FIN under half_close "cancel" or lost its
 * async place to another request under "answer". A request in flight is cancelled and, as nginx
 * does, logged with status 499 (client closed request); nothing is sent. */
static void http_conn_client_gone(http_conn *conn, bool half_closed)
{
    if (!conn->dead && conn->state == HTTP_CONN_HANDLER && conn->slot) {
        if (half_closed)
            HTTP_STAT_ADD(conn->loop, half_closed_cancelled, 1);
        if (access_log_enabled())
            http_conn_log(conn, &conn->slot->req, 499, 0, http_conn_now_us() - conn->started_us);
    }
    http_conn_close(conn);
}

bool http_conn_evict_half_closed(http_loop *loop)
{
    http_conn *conn = loop->eof_head;
    if (!conn)
        return false;
    log_debug("loop %u: at max_async_per_loop: cancelling the oldest request of a half-closed client", loop->id);
    http_conn_enter(conn);
    http_conn_client_gone(conn, true);
    http_conn_leave(conn);
    return true;
}

/* ---- timers ------------------------------------------------------------------------------------ */

static uint64_t http_conn_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000 + (uint64_t)ts.tv_nsec / 1000;
}

uint64_t http_conn_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts); /* a few ms of resolution is plenty for timeouts */
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Starts the header or body phase: its deadline is absolute, so a client trickling one byte at a
 * time cannot extend it (slowloris). */
static void http_conn_start_deadline(http_conn *conn, unsigned timeout_ms)
{
    conn->deadline_ms = http_conn_now_ms() + timeout_ms;
}

/* The connection's timer is lazy. Every request re-arms it (keep-alive after the answer, the header
 * deadline, the write timeout), and moving a libevent timer costs an event_add (~600 instructions,
 * about 6 % of a GET /v1/hello). So the purpose's due time is kept in timer_due_ms, and libevent is
 * asked only when the timer must fire *sooner* than it is set to (or is not set); a timer that fires
 * before timer_due_ms takes the rest of the time and nothing else happens (http_conn_on_timer). A
 * keep-alive connection thus arms libevent's timer about once per keep-alive period, not once per
 * request. timer_armed mirrors whether timer_ev is pending: cleared where it fires or is deleted. */
static void http_conn_timer_at(http_conn *conn, uint64_t due_ms, const struct timeval *tv)
{
    conn->timer_due_ms = due_ms;
    if (conn->timer_armed && conn->timer_fires_ms <= due_ms)
        return;
    struct timeval rest;
    if (!tv) {
        uint64_t now = http_conn_now_ms(), left = due_ms > now ? due_ms - now : 0;
        rest = (struct timeval){(time_t)(left / 1000), (suseconds_t)(left % 1000) * 1000};
        tv = &rest;
    }
    evtimer_add(&conn->timer_ev, tv);
    conn->timer_armed = true;
    conn->timer_fires_ms = due_ms;
}

/* `ms` from now; `common` is the loop's common timeout of that length, or NULL. */
static void http_conn_timer_in(http_conn *conn, uint64_t ms, const struct timeval *common)
{
    http_conn_timer_at(conn, http_conn_now_ms() + ms, common);
}

static void http_conn_timer_stop(http_conn *conn)
{
    if (!conn->timer_armed)
        return;
    evtimer_del(&conn->timer_ev);
    conn->timer_armed = false;
}

/* The request deadline, armed once when the handler goes async. Right after dispatch the deadline is
 * exactly request_ms away, so it can use the loop's common timeout (an O(1) queue, not the heap: 10,000
 * waiting requests would otherwise make every timer operation walk a 10,000-entry heap). */
static void http_conn_arm_deadline(http_conn *conn, bool already_armed)
{
    conn->timer_is_deadline = true;
    if (already_armed)
        return; /* re-arming from a later flush would only move it */
    const http_settings *s = conn->loop->settings;
    uint64_t now = http_conn_now_ms();
    uint64_t left = conn->deadline_ms > now ? conn->deadline_ms - now : 0;
    if (conn->deadline_default && left >= s->request_timeout_ms) {
        http_conn_timer_at(conn, now + s->request_timeout_ms, conn->loop->tv_request);
        return;
    }
    http_conn_timer_at(conn, now + left, NULL);
}

/* Arms the one timer a connection has, for the state it is in; the only place that does. Output
 * blocked on the socket wins: whatever else is going on, a client that stops reading is bounded by
 * the write timeout. */
static void http_conn_arm_timer(http_conn *conn)
{
    http_loop *loop = conn->loop;
    bool armed_for_deadline = conn->timer_is_deadline;
    conn->timer_is_deadline = false;
    if (conn->state == HTTP_CONN_HANDLER && !conn->writing && conn->stream) {
        /* streaming: no request deadline, write_ms bounds a stalled client, and stream_idle_ms (when
         * set) a silent producer: re-armed by each of its writes (http_stream.c) */
        if (loop->settings->stream_idle_timeout_ms) {
            uint64_t due = conn->stream->producer_ms + loop->settings->stream_idle_timeout_ms;
            uint64_t now = http_conn_now_ms();
            http_conn_timer_at(conn, due > now ? due : now, NULL);
        } else {
            http_conn_timer_stop(conn);
        }
    } else if (conn->state == HTTP_CONN_HANDLER && !conn->writing) {
        http_conn_arm_deadline(conn, armed_for_deadline);
    } else if (conn->state == HTTP_CONN_LINGER) {
        http_conn_timer_in(conn, loop->settings->linger_timeout_ms, loop->tv_linger);
    } else if (conn->writing) {
        http_conn_timer_in(conn, loop->settings->write_timeout_ms, loop->tv_write);
    } else if (conn->state == HTTP_CONN_IDLE && conn->blank_bytes <= HTTP_FREE_BLANK_BYTES) {
        if (conn->fresh)
            http_conn_timer_in(conn, loop->settings->header_timeout_ms, loop->tv_header);
        else
            http_conn_timer_in(conn, loop->settings->keepalive_timeout_ms, loop->tv_keepalive);
    } else if (conn->state == HTTP_CONN_HEAD || conn->state == HTTP_CONN_BODY || conn->state == HTTP_CONN_IDLE) {
        /* IDLE here: empty lines past the free one, and the header deadline runs. */
        uint64_t now = http_conn_now_ms();
        http_conn_timer_at(conn, conn->deadline_ms > now ? conn->deadline_ms : now, NULL);
    } else {
        http_conn_timer_stop(conn); /* CLOSING with nothing blocked: about to linger */
    }
}

/* The request's deadline passed before its answer: stop its work and answer 504. The connection
 * stays usable: the request was complete, only its handler was late. */
static void http_conn_deadline_expired(http_conn *conn)
{
    http_request *req = &conn->slot->req;
    HTTP_STAT_ADD(conn->loop, deadline_expired, 1);
    log_info("loop %u: %s passed its deadline; answering 504", conn->loop->id,
             req->route_name ? req->route_name : "request");
    if (conn->slot->coding_on_pool) {
        /* Its answer was still being coded: the 504 replaces it, and ending the request cancels the job. */
        conn->slot->coding_on_pool = false;
        req->_answered = false;
    }
    if (req->_cancel_fn) {
        /* The 504 is the answer: marked answered first, so a cancel callback that tries to answer is
         * ignored instead of ending the request under us (and the slot going to the next request). */
        http_cancel_fn fn = req->_cancel_fn;
        req->_cancel_fn = NULL;
        req->_answered = true;
        fn(req, req->_cancel_arg);
        req->_answered = false;
    }
    http_respond_problem(req, 504, NULL, "the request did not complete within its deadline");
}

void http_conn_rearm_timer(http_conn *conn) { http_conn_arm_timer(conn); }

static void http_conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_conn *conn = arg;
    conn->timer_armed = false;
    if (http_conn_now_ms() < conn->timer_due_ms) {
        http_conn_timer_at(conn, conn->timer_due_ms, NULL); /* set sooner than needed: the rest */
        return;
    }
    http_conn_enter(conn);
    if (!conn->writing && conn->state == HTTP_CONN_HANDLER && conn->stream &&
        !(conn->body_stream && !conn->body_stream->complete) &&
        (!conn->loop->settings->stream_idle_timeout_ms ||
         http_conn_now_ms() - conn->stream->producer_ms < conn->loop->settings->stream_idle_timeout_ms)) {
        /* A streaming producer wrote since the timer was armed (or the key was reloaded to off): not a
         * timeout, the timer takes the rest of the time. */
        http_conn_arm_timer(conn);
        http_conn_leave(conn);
        return;
    }
    HTTP_STAT_ADD(conn->loop, timeouts, 1);
    if (conn->writing || (conn->state == HTTP_CONN_IDLE && conn->blank_bytes <= HTTP_FREE_BLANK_BYTES) ||
        conn->state == HTTP_CONN_LINGER) {
        /* Write timeout, idle keep-alive, linger done: nothing useful can be said to this client. */
        http_conn_close(conn);
    } else if (conn->state == HTTP_CONN_HEAD || conn->state == HTTP_CONN_IDLE) {
        http_conn_reject(conn, 408, "request headers not received within %u ms",
                         conn->loop->settings->header_timeout_ms);
        http_conn_flush(conn);
    } else if (conn->state == HTTP_CONN_BODY) {
        http_conn_reject(conn, 408, "request body not received within %u ms", conn->loop->settings->body_timeout_ms);
        http_conn_flush(conn);
    } else if (conn->state == HTTP_CONN_HANDLER && conn->body_stream && !conn->body_stream->complete) {
        /* A streamed body still arriving at its body deadline: 408 as for a buffered one; the
         * handler's request ends with it (its reads are cancelled). */
        http_conn_reject(conn, 408, "request body not received within %u ms", conn->loop->settings->body_timeout_ms);
        http_conn_flush(conn);
    } else if (conn->state == HTTP_CONN_HANDLER && conn->stream) {
        /* timeouts.stream_idle_ms: the producer wrote nothing for that long. The head is gone, so no
         * status can say it: the connection closes without the last chunk (the client sees the body
         * cut off, not ended) and the producer is cancelled as when a client leaves. */
        log_info("loop %u: %s: the stream's producer wrote nothing for %u ms; closing", conn->loop->id,
                 conn->slot && conn->slot->req.route_name ? conn->slot->req.route_name : "a stream",
                 conn->loop->settings->stream_idle_timeout_ms);
        HTTP_STAT_ADD(conn->loop, stream_idle_closed, 1);
        http_conn_close(conn);
    } else if (conn->state == HTTP_CONN_HANDLER) {
        http_conn_deadline_expired(conn);
    }
    http_conn_leave(conn);
}

/* ---- input ------------------------------------------------------------------------------------- */

static void http_conn_set_reading(http_conn *conn, bool on)
{
    if (on == conn->reading || conn->dead)
        return;
    if (on)
        event_add(&conn->read_ev, NULL);
    else
        event_del(&conn->read_ev);
    conn->reading = on;
    /* Paused with the input buffer full (pipelined requests behind one in flight): a FIN behind the
     * unread bytes would go unnoticed until they are read, and the request in flight would hold its
     * async place for a client that is gone. EV_CLOSED (epoll's EPOLLRDHUP) tells it without reading. */
    if (on && conn->watching_close) {
        event_del(&conn->close_ev);
        conn->watching_close = false;
    } else if (!on && !conn->peer_eof && !conn->fin_pending &&
               (event_base_get_features(conn->loop->base) & EV_FEATURE_EARLY_CLOSE)) {
        event_add(&conn->close_ev, NULL);
        conn->watching_close = true;
    }
}

/* The client sent its FIN (or reset) while we were not reading: requests it pipelined may still be
 * unread in the socket. A request in flight gets what half_close says; the rest is read as usual. */
static void http_conn_on_closed(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_conn *conn = arg;
    conn->watching_close = false; /* one-shot: EPOLLRDHUP stays raised */
    http_conn_enter(conn);
    conn->fin_pending = true;
    if (conn->state == HTTP_CONN_HANDLER) {
        if (conn->loop->settings->half_close_answer)
            http_conn_note_half_closed(conn);
        else
            http_conn_client_gone(conn, true);
    }
    http_conn_leave(conn);
}

/* Makes room to read. Bytes before the current message are dead, and so are body bytes llhttp has
 * consumed (they were copied out), so they are squeezed out; only a head that really needs more room
 * makes the buffer grow, up to the head limit. While a handler runs, its request's pointers point
 * into the buffer, so nothing moves and reading stops when the free space is gone. */
static bool http_conn_make_room(http_conn *conn)
{
    buf *in = &conn->in;
    http_loop *loop = conn->loop;
    /* A streamed body reads HTTP_BODY_STREAM_BUFFER at a time, whatever buffer its head came in. */
    bool body_reads = conn->state == HTTP_CONN_HANDLER && conn->body_stream && !conn->body_stream->complete;
    if (conn->state == HTTP_CONN_HANDLER && http_body_stream_pins_input(conn))
        return in->cap > in->len; /* the handler's piece lies in the buffer: read behind it, move nothing */
    bool grow = body_reads && in->cap < HTTP_BODY_STREAM_BUFFER;
    if (body_reads && conn->parse_pos == in->len)
        in->len = conn->parse_pos = conn->msg_start = 0; /* all parsed: the next read fills it whole */
    if (in->cap - in->len >= HTTP_CONN_MIN_READ && !grow)
        return true;
    size_t keep_from = conn->parse_pos, keep_head = 0;
    switch (conn->state) {
    case HTTP_CONN_HANDLER:
        /* The request lives in its arena: only pipelined bytes are here. Hold at most one block of
         * them; the rest waits in the socket until the answer is out. */
        if (!in->data)
            break;
        if (conn->parse_pos == 0 && !grow)
            return in->cap > in->len;
        break;
    case HTTP_CONN_CLOSING:
    case HTTP_CONN_LINGER:
    case HTTP_CONN_UPGRADED: /* not read here any more: ws.c reads its socket itself */
        in->len = conn->parse_pos = conn->msg_start = 0; /* nothing more will be parsed */
        break;
    case HTTP_CONN_HEAD:
        keep_from = conn->msg_start; /* the head so far: spans point into it */
        break;
    case HTTP_CONN_BODY:
        keep_head = conn->head_len;
        break;
    case HTTP_CONN_IDLE:
        break;
    }
    if (in->data && (keep_from > keep_head || conn->msg_start > 0)) {
        if (keep_head && conn->msg_start)
            memmove(in->data, in->data + conn->msg_start, keep_head);
        size_t rest = in->len - keep_from;
        memmove(in->data + keep_head, in->data + keep_from, rest);
        in->len = keep_head + rest;
        conn->parse_pos = keep_head + (conn->parse_pos - keep_from);
        conn->msg_start = 0;
    }
    if (grow) {
        buf_reserve(in, &loop->cache, HTTP_BODY_STREAM_BUFFER - in->len); /* the cap doubles up to the bound */
        return true;
    }
    if (in->cap - in->len >= HTTP_CONN_MIN_READ)
        return true;
    if (in->cap >= loop->settings->max_header_bytes + 2 * BUF_BLOCK_BYTES ||
        (conn->state == HTTP_CONN_HANDLER && in->data))
        return in->cap > in->len;
    buf_reserve(in, &loop->cache, HTTP_CONN_MIN_READ);
    return true;
}

static void http_conn_on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    http_conn *conn = arg;
    http_conn_enter(conn);
    if (conn->state == HTTP_CONN_LINGER) {
        /* Discard what the client still sends so our close does not turn into a reset that could
         * destroy the error answer before the client has read it. */
        char sink[4096];
        ssize_t n = 0;
        /* At most HTTP_CONN_LINGER_READS reads a wake-up: a fast sender must not hold the loop. The
         * read event persists, so the rest is read on the next turn. */
        for (int i = 0; i < HTTP_CONN_LINGER_READS && (n = recv(fd, sink, sizeof(sink), 0)) > 0; i++)
            ;
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
            http_conn_close(conn);
        http_conn_leave(conn);
        return;
    }
    while (!conn->dead) {
        if (!http_conn_make_room(conn)) {
            /* Before a handler runs, what is buffered is parsed right below and http_conn_flush turns
             * reading on again: pausing here would be an epoll_ctl pair for nothing. While one runs,
             * reading resumes once it answers, reads its body, or output drains; a streamed body's
             * handler that keeps up makes room within this turn, so reading stays on (http_body_stream.c). */
            if (conn->state == HTTP_CONN_HANDLER && http_body_stream_behind(conn))
                http_conn_set_reading(conn, false);
            break;
        }
        buf *in = &conn->in;
        size_t room = in->cap - in->len;
        ssize_t n = recv(fd, in->data + in->len, room, 0);
        if (n > 0) {
            in->len += (size_t)n;
            if ((size_t)n < room)
                break; /* the socket is drained: skip the recv that would only say EAGAIN */
            continue;
        }
        if (n == 0) {
            if (http_conn_peer_hung_up(fd)) {
                http_conn_client_gone(conn, false); /* both directions gone: cancel what runs */
                break;
            }
            /* Maybe a half-close (the client still reads), maybe a close(): TCP cannot tell before
             * a write fails. half_close decides, in http_conn_process, what a request in flight gets. */
            conn->peer_eof = true;
            http_conn_set_reading(conn, false);
            http_conn_note_half_closed(conn);
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            http_conn_client_gone(conn, false); /* reset by peer and friends: nobody to answer */
        break;
    }
    if (!conn->dead)
        http_conn_process(conn);
    http_conn_leave(conn);
}

/* ---- requests ---------------------------------------------------------------------------------- */

static const char *http_conn_msg(http_conn *conn, http_span s) { return conn->in.data + conn->msg_start + s.off; }

static http_header_span *http_conn_find_header(http_conn *conn, const char *name)
{
    size_t name_len = strlen(name);
    http_req_slot *slot = conn->slot;
    for (size_t i = 0; i < slot->header_count; i++) {
        http_header_span *h = &slot->header_spans[i];
        if (h->name.len == name_len && strncasecmp(http_conn_msg(conn, h->name), name, name_len) == 0)
            return h;
    }
    return NULL;
}

/* Host (RFC 9112 3.2): an HTTP/1.1 request carries exactly one, HTTP/1.0 at most one, and its value
 * must be an authority. Returns NULL when the request passes, else why it does not. */
static const char *http_conn_check_host(http_conn *conn, unsigned http_minor)
{
    http_req_slot *slot = conn->slot;
    const http_header_span *host = NULL;
    for (size_t i = 0; i < slot->header_count; i++) {
        const http_header_span *h = &slot->header_spans[i];
        if (h->name.len != 4 || strncasecmp(http_conn_msg(conn, h->name), "Host", 4) != 0)
            continue;
        if (host)
            return "the request has more than one Host header";
        host = h;
    }
    if (!host)
        return http_minor >= 1 ? "an HTTP/1.1 request must carry a Host header" : NULL;
    const char *value = http_conn_msg(conn, host->value);
    size_t len = host->value.len;
    http_loop *loop = conn->loop;
    if (len > 0 && len == loop->valid_host_len && memcmp(value, loop->valid_host, len) == 0)
        return NULL;
    if (!uri_host_valid(value, len))
        return "the Host header is not a valid host[:port]";
    if (len > 0 && len <= HTTP_VALID_HOST_MAX) {
        memcpy(loop->valid_host, value, len);
        loop->valid_host_len = (uint8_t)len;
    }
    return NULL;
}

/* The status a request gets whatever its body says, known from the head alone: no route (404), a
 * method the path does not take (405), one we do not implement (501), or a body of a media type the
 * route refuses (415). 0 when the handler decides. Dispatch gives the answer; this lets the engine
 * skip reading such a body into memory, and answer an Expect: 100-continue at once. */
static int http_conn_head_refusal(http_conn *conn, bool has_body)
{
    http_req_slot *slot = conn->slot;
    if (slot->req.method == HTTP_METHOD_UNSUPPORTED)
        return 501;
    if (slot->route_status == ROUTER_NOT_FOUND)
        return 404;
    if (slot->route_status == ROUTER_METHOD_NOT_ALLOWED)
        return 405;
    if (has_body && (slot->match.flags & ROUTE_BODY_JSON)) {
        http_header_span *ct = http_conn_find_header(conn, "Content-Type");
        if (!ct || !http_media_type_is(http_conn_msg(conn, ct->value), ct->value.len, "application/json"))
            return 415;
    }
    return 0;
}

/* The head is complete: check the version, framing, Host, the body size and Expect, and route, so a
 * request that cannot succeed is refused before its body is read. */
int http_conn_on_headers_complete(http_conn *conn)
{
    llhttp_t *p = &conn->parser;
    http_req_slot *slot = conn->slot;
    http_request *req = &slot->req;
    const http_settings *settings = conn->loop->settings;
    /* Everything the request will point at ends with the last span; what follows is body. */
    size_t head_end = slot->url.off + slot->url.len;
    for (size_t i = 0; i < slot->header_count; i++) {
        http_header_span *h = &slot->header_spans[i];
        size_t end = h->name.off + h->name.len;
        if (h->value.off + h->value.len > end)
            end = h->value.off + h->value.len; /* an empty value may sit past its name, before the CRLF */
        if (end > head_end)
            head_end = end;
    }
    conn->head_len = head_end;
    if (llhttp_get_http_major(p) != 1) {
        http_conn_reject(conn, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
        return -1;
    }
    req->http_minor = llhttp_get_http_minor(p);
    req->method = http_method_from_llhttp(llhttp_get_method(p));
    if (conn->over_limit) {
        /* Accepted past max_connections because every connection was busy (http_conn_limit.c): a
         * quick, clear answer instead of a wait in the backlog. */
        http_response_header(req, "Retry-After", "1");
        http_conn_reject(conn, 503, "the server is at its connection limit; try again shortly");
        http_conn_limit_refused(conn->loop);
        return -1;
    }
    if (req->http_minor == 0 && (p->flags & F_TRANSFER_ENCODING)) {
        /* RFC 9112 6.1: HTTP/1.0 has no Transfer-Encoding, so its framing cannot be trusted. */
        http_conn_reject(conn, 400, "malformed request: Transfer-Encoding is not allowed in HTTP/1.0");
        return -1;
    }
    const char *bad_host = http_conn_check_host(conn, req->http_minor);
    if (bad_host) {
        http_conn_reject(conn, 400, "%s", bad_host);
        return -1;
    }
    bool has_body = (p->flags & F_CHUNKED) || ((p->flags & F_CONTENT_LENGTH) && p->content_length > 0);
    const char *target = http_conn_msg(conn, slot->url);
    const char *path, *query;
    size_t path_len, query_len;
    uri_split(target, slot->url.len, &path, &path_len, &query, &query_len);
    slot->path_len = (uint32_t)path_len; /* for http_conn_build_request: the split is not done twice */
    slot->query = (http_span){(uint32_t)(query - target), (uint32_t)query_len};
    slot->route_status = req->method == HTTP_METHOD_UNSUPPORTED
                             ? ROUTER_NOT_FOUND
                             : router_match(conn->loop->router, req->method, path, path_len, &slot->match);
    if (slot->route_status == ROUTER_FOUND && slot->match.schema && slot->match.schema->max_body_bytes)
        conn->body_limit = slot->match.schema->max_body_bytes; /* the route's own (router.h) */
    if ((p->flags & F_CONTENT_LENGTH) && p->content_length > conn->body_limit) {
        http_conn_reject(conn, 413, "request body of %llu bytes exceeds %zu bytes",
                         (unsigned long long)p->content_length, conn->body_limit);
        return -1;
    }
    slot->refusal = http_conn_head_refusal(conn, has_body);
    http_header_span *expect = http_conn_find_header(conn, "Expect");
    if (expect && req->http_minor >= 1) {
        if (expect->value.len != 12 || strncasecmp(http_conn_msg(conn, expect->value), "100-continue", 12) != 0) {
            http_conn_reject(conn, 417, "only the expectation 100-continue is supported");
            return -1;
        }
        if (has_body && slot->refusal) {
            /* RFC 9110 10.1.1: the final status now, not after a body we would throw away. The body
             * stays unread, so the connection closes after the answer (its bytes are drained). */
            conn->close_after = true;
            return 1;
        }
        if (has_body) {
            /* Queued only: http_conn_process flushes once llhttp asks for more bytes. */
            static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
            buf_append(&conn->out, &conn->loop->cache, cont, sizeof(cont) - 1);
        }
    }
    if (has_body) {
        conn->discard_body = slot->refusal != 0;
        conn->state = HTTP_CONN_BODY;
        http_conn_start_deadline(conn, settings->body_timeout_ms);
        if (!slot->refusal && slot->route_status == ROUTER_FOUND && (slot->match.flags & ROUTE_BODY_STREAM)) {
            conn->body_early = true; /* http_body_stream.c: the handler reads the body as it comes */
            return 2;
        }
    }
    return 0;
}

/* Copies the head into the request's arena, so nothing the handler holds points into the input buffer:
 * a request that waits (on a timer, a worker, an upstream) then pins no 8 KiB read buffer, and the
 * buffer may move under it. Heads are small; the copy is one memcpy. */
static const char *http_conn_copy_head(http_conn *conn)
{
    char *head = arena_alloc(&conn->slot->req.arena, conn->head_len);
    memcpy(head, conn->in.data + conn->msg_start, conn->head_len);
    return head;
}

/* X-Request-Id: the client's (a proxy's) id when it is well-formed — 1..64 of [A-Za-z0-9._:-], nothing
 * a log reader or header could be fooled by — else one of ours: a random per-loop prefix and a counter. */
static void http_conn_take_request_id(http_conn *conn, http_request *req)
{
    http_req_slot *slot = conn->slot;
    for (size_t i = 0; i < req->header_count; i++) {
        const http_header *h = &req->headers[i];
        if (h->name_len != 12 || strncasecmp(h->name, "X-Request-Id", 12) != 0)
            continue;
        bool ok = h->value_len >= 1 && h->value_len <= HTTP_REQUEST_ID_MAX;
        for (size_t k = 0; ok && k < h->value_len; k++) {
            char c = h->value[k];
            ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                 c == '_' || c == ':' || c == '-';
        }
        if (ok) {
            memcpy(slot->request_id, h->value, h->value_len);
            slot->request_id[h->value_len] = '\0';
            req->request_id = slot->request_id;
            return;
        }
        break;
    }
    /* "<8 hex prefix>-<loop>-<hex counter>", formatted by hand: this runs for every request. */
    http_loop *loop = conn->loop;
    static const char hex[] = "0123456789abcdef";
    char *p = slot->request_id;
    memcpy(p, loop->request_id_prefix, 8);
    p += 8;
    *p++ = '-';
    char digits[24];
    int n = 0;
    unsigned id = loop->id;
    do
        digits[n++] = (char)('0' + id % 10);
    while ((id /= 10) != 0);
    while (n)
        *p++ = digits[--n];
    *p++ = '-';
    uint64_t counter = ++loop->request_id_next;
    do
        digits[n++] = hex[counter & 15];
    while ((counter >>= 4) != 0);
    while (n)
        *p++ = digits[--n];
    *p = '\0';
    req->request_id = slot->request_id;
}

/* Counts the pairs a query string can hold, so the array fits it instead of the worst case. */
static size_t http_conn_query_pairs(const char *query, size_t len)
{
    size_t n = 1;
    for (size_t i = 0; i < len; i++)
        n += query[i] == '&';
    return n;
}

/* Turns the spans into the request a handler sees: pointers, decoded path, params and query. Returns
 * NULL when it is ready, or a reason for a 400. */
static const char *http_conn_build_request(http_conn *conn)
{
    http_req_slot *slot = conn->slot;
    http_request *req = &slot->req;
    req->_conn = conn;
    const char *head = http_conn_copy_head(conn);
    req->headers = arena_alloc(&req->arena, slot->header_count * sizeof(http_header));
    /* Every span must lie inside the copy: one that did not would read bytes of whatever the arena held
     * before (an earlier request's head). The parser keeps them inside; this guards the invariant. */
    bool inside = (size_t)slot->url.off + slot->url.len <= conn->head_len;
    for (size_t i = 0; i < slot->header_count; i++) {
        http_header_span *s = &slot->header_spans[i];
        inside = inside && (size_t)s->name.off + s->name.len <= conn->head_len &&
                 (size_t)s->value.off + s->value.len <= conn->head_len;
        req->headers[i] = (http_header){head + s->name.off, s->name.len, head + s->value.off, s->value.len};
    }
    if (!inside) {
        log_error("loop %u: a header span lies outside the request head; refusing the request", conn->loop->id);
        req->header_count = 0;
        return "malformed request";
    }
    req->header_count = slot->header_count;
    http_conn_take_request_id(conn, req);
    req->raw_target = head + slot->url.off;
    req->raw_target_len = slot->url.len;
    req->body = conn->body.len ? conn->body.data : NULL;
    req->body_len = conn->body.len;
    /* Split when the head was complete (http_conn_on_headers_complete): offsets into the target. */
    const char *path = req->raw_target, *query = req->raw_target + slot->query.off;
    size_t path_len = slot->path_len, query_len = slot->query.len;
    char *decoded = arena_alloc(&req->arena, path_len + 1);
    if (uri_decode(decoded, path, path_len, false) < 0)
        return "the request path has an invalid percent-encoding";
    req->path = decoded;
    if (query_len) {
        size_t max_pairs = http_conn_query_pairs(query, query_len);
        if (max_pairs > HTTP_MAX_QUERY_PAIRS)
            return "the query string has more than " HTTP_MAX_QUERY_PAIRS_STR " parameters";
        req->query = arena_alloc(&req->arena, max_pairs * sizeof(uri_param));
        int n = uri_parse_query(query, query_len, &req->arena, req->query, max_pairs);
        if (n < 0)
            return "the query string has an invalid percent-encoding";
        req->query_count = (size_t)n;
    }
    if (slot->route_status == ROUTER_FOUND) {
        route_match *m = &slot->match;
        /* The match made at the end of the headers points into the input buffer, which the body may
         * have moved since: match again on the stable copy (only routes with parameters care). */
        if (m->param_count)
            router_match(conn->loop->router, req->method, path, path_len, m);
        req->route_name = m->name;
        req->param_count = m->param_count;
        req->params = m->params;
        for (size_t i = 0; i < m->param_count; i++) {
            char *v = arena_alloc(&req->arena, m->params[i].value_len + 1);
            ssize_t n = uri_decode(v, m->params[i].value, m->params[i].value_len, false);
            if (n < 0)
                return "a path parameter has an invalid percent-encoding";
            m->params[i].value = v;
            m->params[i].value_len = (size_t)n;
        }
    }
    return NULL;
}

void http_loop_report_slow(void *loop_arg, const char *route, uint64_t ms)
{
    http_loop *loop = loop_arg;
    HTTP_STAT_ADD(loop, slow_callbacks, 1);
    log_warn("loop %u: %s blocked the loop for %llu ms (slow_callback_ms %u)", loop->id,
             route ? route : "(unknown route)", (unsigned long long)ms, loop->settings->slow_callback_ms);
}

/* asyncio's slow_callback_duration: a handler that keeps the loop busy this long delays every other
 * connection of the loop, so say which route did it. Coarse clock: a few ms of resolution. */
static void http_conn_watch_slow(http_loop *loop, const char *route, uint64_t started_ms)
{
    unsigned limit = loop->settings->slow_callback_ms;
    if (!limit)
        return;
    uint64_t took = http_conn_now_ms() - started_ms;
    if (took >= limit)
        http_loop_report_slow(loop, route, took);
}

/* Per-client token bucket (rate_limit.*): answers 429 with Retry-After and returns true when the client
 * is over its rate. Only paths under rate_limit.path_prefix count, so probes and /metrics never do. */
static bool http_conn_rate_limited(http_conn *conn, http_request *req)
{
    const http_settings *s = conn->loop->settings;
    if (!s->rate_limiter || strncmp(req->path, s->rate_limit_prefix, strlen(s->rate_limit_prefix)) != 0)
        return false;
    uint8_t family, addr[16];
    http_request_client_addr(req, &family, addr);
    unsigned wait = ratelimit_take(s->rate_limiter, family, addr, http_conn_now_ms());
    if (!wait)
        return false;
    char retry[16];
    snprintf(retry, sizeof(retry), "%u", wait);
    http_response_header(req, "Retry-After", retry);
    http_respond_problem(req, 429, NULL, "too many requests from this client; retry in %u s", wait);
    return true;
}

/* A coroutine handler returned and its request is still open. If it did not answer and left nothing
 * that could (no operation pending or queued in its scope, no cancel callback that took the request
 * over), nothing ever will: the client would wait for the request's deadline and get a 504 that blames
 * nobody. A handler bug, so a 500 now and a log line naming the route. */
static void http_conn_coro_returned(http_request *req)
{
    if (req->_answered || req->_cancel_fn || !req->_scope || async_scope_closing(req->_scope) ||
        !async_scope_quiet(req->_scope))
        return;
    log_error("route %s: its coroutine handler returned without answering and left nothing pending; "
              "answering 500",
              req->route_name ? req->route_name : "(none)");
    http_respond_problem(req, 500, NULL, "the handler did not answer");
}

/* A ROUTE_CORO handler: runs on a coroutine of its own until its first await (or its answer). The slot
 * stays this request's (or, once the request ended, unused but ours) until the handler returns, so
 * reading its state then needs no allocation per request. */
static void http_conn_coro_main(void *arg)
{
    http_request *req = arg;
    http_req_slot *slot = (http_req_slot *)req;
    http_loop *loop = req->_conn->loop; /* the connection may be gone by the return; the loop is not */
    slot->coro_state = HTTP_CORO_RUNNING;
    slot->match.handler(req);
    http_coro_state state = slot->coro_state;
    slot->coro_state = HTTP_CORO_NONE;
    if (state == HTTP_CORO_RUNNING) {
        http_conn_coro_returned(req);
    } else if (state == HTTP_CORO_ORPHANED) {
        /* The request ended while the handler ran: the slot is given back now. What a handler put into
         * the arena after its request ended (it should not) goes with it rather than leaking. */
        arena_reset(&slot->req.arena);
        http_loop_slot_put(loop, slot);
    } /* ENDING: the request is ending around this return, and http_conn_end_request gives the slot back */
}

static void http_conn_run_coro(http_conn *conn, http_request *req)
{
    /* A coroutine handler waits by definition: it counts against the loop's cap before it runs (at the
     * cap this answers 503 and the handler never starts), so inside it http_request_async never fails. */
    if (!http_request_async(req))
        return;
    if (!async_coro_spawn_named(NULL, conn->slot->match.name, http_conn_coro_main, req)) {
        http_response_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, NULL, "no memory for a coroutine stack");
    }
}

/* The app's before hooks (middleware.h) covering the request's path, in registration order, with the
 * request's settings in effect; true when one answered. From here on every answer runs the after hooks.
 * The built-ins (ROUTE_NO_MIDDLEWARE) run none. */
static bool http_conn_run_before(http_conn *conn, http_request *req)
{
    const http_middleware *m = conn->loop->middleware;
    http_req_slot *slot = conn->slot;
    if (!m || !m->count || (slot->route_status == ROUTER_FOUND && (slot->match.flags & ROUTE_NO_MIDDLEWARE)))
        return false;
    slot->middleware_ran = true;
    /* A hook that answers later (from a continuation of its own) is held to the request's deadline. */
    conn->deadline_ms = http_conn_now_ms() + conn->loop->settings->request_timeout_ms;
    conn->deadline_default = true;
    bool answered = false;
    const void *outer_context = async_context_swap(slot->context);
    http_conn_enter(conn);
    for (size_t i = 0; i < m->count && !answered && !conn->dead; i++) {
        const http_middleware_hook *h = &m->hooks[i];
        if (h->before && http_middleware_covers(h->prefix, h->prefix_len, req->path))
            answered = h->before(req, h->arg);
    }
    /* A hook that answers said so; one that answered and returned false still ended the request. */
    answered = answered || conn->dead || conn->slot != slot || req->_answered;
    http_conn_leave(conn);
    async_context_swap(outer_context);
    return answered;
}

/* The after hooks of an answer about to be written, newest registration first; the request is marked
 * answered already, so a hook that tries to answer is refused (logged) and changes nothing. */
static void http_conn_run_after(http_conn *conn, http_request *req, int status)
{
    const http_middleware *m = conn->loop->middleware;
    if (!m || !conn->slot || !conn->slot->middleware_ran)
        return;
    http_req_slot *slot = conn->slot;
    slot->middleware_ran = false; /* once per request */
    slot->in_after_hooks = true;
    const void *outer_context = async_context_swap(slot->context);
    for (size_t i = m->count; i-- > 0;) {
        const http_middleware_hook *h = &m->hooks[i];
        if (h->after && http_middleware_covers(h->prefix, h->prefix_len, req->path))
            h->after(req, status, h->arg);
    }
    async_context_swap(outer_context);
    slot->in_after_hooks = false;
}

static void http_conn_dispatch(http_conn *conn)
{
    http_req_slot *slot = conn->slot;
    http_request *req = &slot->req;
    http_loop *loop = conn->loop;
    uint64_t body_deadline = conn->deadline_ms; /* a streamed body's, still running */
    conn->state = HTTP_CONN_HANDLER;
    conn->keep_alive = llhttp_should_keep_alive(&conn->parser) && !loop->draining && !conn->close_after;
    /* The request's settings, from here to its answer: its handler runs with them in effect, and its
     * continuations and awaits get them from its scope (http_request_async), whatever reloads
     * happen meanwhile. */
    slot->context = loop->settings->context;
    HTTP_STAT_ADD(loop, requests, 1);
    const char *bad = http_conn_build_request(conn);
    if (bad) {
        http_respond_problem(req, 400, NULL, "%s", bad);
    } else if (req->method == HTTP_METHOD_UNSUPPORTED) {
        http_respond_problem(req, 501, NULL, "method %s is not implemented",
                             llhttp_method_name((llhttp_method_t)llhttp_get_method(&conn->parser)));
    } else if (http_conn_run_before(conn, req)) {
        /* a before hook answered (or will: its answer is the request's) */
    } else if (slot->route_status == ROUTER_NOT_FOUND) {
        http_respond_problem(req, 404, NULL, "no route for %s", req->path);
    } else if (slot->route_status == ROUTER_METHOD_NOT_ALLOWED) {
        char allow[96];
        router_format_allow(slot->match.allowed_methods, allow, sizeof(allow));
        http_response_header(req, "Allow", allow);
        http_respond_problem(req, 405, NULL, "%s does not accept %s", req->path, http_method_name(req->method));
    } else if (slot->refusal == 415) {
        http_respond_problem(req, 415, NULL, "the body must be sent with Content-Type: application/json");
    } else if (!http_conn_rate_limited(conn, req) && http_request_validate(req, slot->match.schema)) {
        /* Validated on the loop's stack, before a coroutine handler gets its small one. */
        uint64_t started = http_conn_now_ms(); /* one clock read for the deadline and the slow watch */
        conn->deadline_ms = started + loop->settings->request_timeout_ms;
        conn->deadline_default = true;
        if (slot->match.flags & ROUTE_BODY_STREAM) {
            if (conn->body_early)
                llhttp_resume(&conn->parser); /* paused at the end of the head: the body follows */
            http_body_stream_begin(conn, req, body_deadline, !conn->body_early);
        }
        const void *outer_context = async_context_swap(slot->context);
        if (slot->match.flags & ROUTE_CORO)
            http_conn_run_coro(conn, req);
        else
            slot->match.handler(req);
        async_context_swap(outer_context);
        http_conn_watch_slow(loop, slot->match.name, started);
        if (!conn->dead && conn->state == HTTP_CONN_HANDLER && conn->parse_pos == conn->in.len) {
            /* Waiting for an async answer with nothing else buffered: hold no read buffer meanwhile. */
            buf_release(&conn->in, &loop->cache);
            conn->parse_pos = conn->msg_start = 0;
        }
    }
}

/* Finishes the request after its answer was queued: either get ready for the next one or close. */
static void http_conn_request_done(http_conn *conn)
{
    /* The client's own close, after a request read whole (not a streamed body left unread, not an
     * answer given before a body the client may still send, not a draining loop's). */
    conn->close_clean = !conn->keep_alive && !llhttp_should_keep_alive(&conn->parser) && !conn->close_after &&
                        !conn->loop->draining && !conn->body_early && conn->error_status == 0;
    http_conn_end_request(conn);
    llhttp_resume(&conn->parser);
    conn->msg_start = conn->parse_pos;
    conn->head_len = 0;
    if (!conn->keep_alive) {
        conn->state = HTTP_CONN_CLOSING;
        return;
    }
    conn->state = HTTP_CONN_IDLE;
    http_loop_conn_idle(conn->loop, conn);
}

/* An unknown method that is a well-formed token ("BREW /") is 501: the request may be fine, we just
 * do not implement it. Bytes that are no method at all (a TLS handshake, binary junk) are 400. */
static bool http_conn_starts_with_method_token(const http_conn *conn)
{
    const char *p = conn->in.data + conn->msg_start, *end = conn->in.data + conn->in.len;
    while (p < end && (*p == '\r' || *p == '\n'))
        p++;
    const char *start = p;
    while (p < end && *p >= 'A' && *p <= 'Z')
        p++;
    return p > start && p < end && *p == ' ';
}

static int http_conn_error_status(const http_conn *conn, llhttp_errno_t err)
{
    switch (err) {
    case HPE_INVALID_METHOD: return http_conn_starts_with_method_token(conn) ? 501 : 400;
    case HPE_INVALID_VERSION: return 505;
    default: return 400;
    }
}

/* Input while idle: the first byte of the next message (its clock and the header deadline start),
 * unless it is only empty lines. False after refusing too many of those. */
static bool http_conn_idle_input(http_conn *conn, size_t avail)
{
    const char *p = conn->in.data + conn->parse_pos;
    size_t blank = 0;
    while (blank < avail && blank <= HTTP_MAX_BLANK_BYTES && (p[blank] == '\r' || p[blank] == '\n'))
        blank++;
    size_t total = conn->blank_bytes + blank;
    bool deadline_running = conn->blank_bytes > HTTP_FREE_BLANK_BYTES;
    if (!deadline_running && (blank < avail || total > HTTP_FREE_BLANK_BYTES)) {
        /* The request's clock starts with the deadline: the time its predecessor was answered when that
         * was a moment ago in this same pass (a pipelined batch), else a clock read. */
        conn->started_us = conn->answered_us ? conn->answered_us : http_conn_now_us();
        conn->answered_us = 0;
        http_conn_start_deadline(conn, conn->loop->settings->header_timeout_ms);
    }
    if (total > HTTP_MAX_BLANK_BYTES) {
        http_conn_reject(conn, 400, "malformed request: more than %d empty lines before the request line",
                         HTTP_MAX_BLANK_BYTES / 2);
        return false;
    }
    conn->blank_bytes = (uint8_t)total; /* reset when the message begins (http_parser.c) */
    conn->msg_start = conn->parse_pos;
    return true;
}

/* A streamed body (ROUTE_BODY_STREAM) while its handler runs: gives llhttp what is buffered, its
 * de-chunked bytes land in conn->body for the handler's next read. False when there is nothing more
 * to do now (input used up, the body complete, or the request refused). */
static bool http_conn_feed_body(http_conn *conn)
{
    size_t avail = conn->in.len - conn->parse_pos;
    if (avail == 0)
        return false;
    size_t room = http_body_stream_room(conn);
    if (avail > room)
        avail = room; /* the rest is parsed once the handler has read what is buffered */
    const char *start = conn->in.data + conn->parse_pos;
    bool chunk_lines = (conn->parser.flags & F_CHUNKED) && !conn->last_chunk;
    conn->chunk_parse_start = start;
    conn->chunk_data_end = NULL;
    llhttp_errno_t err = llhttp_execute(&conn->parser, start, avail);
    if (chunk_lines && err == HPE_OK && !conn->last_chunk && !http_parser_chunk_line_ok(conn, start + avail))
        return false;
    if (err == HPE_OK) {
        conn->parse_pos += avail;
        http_body_stream_fed(conn);
        return true;
    }
    if (err == HPE_PAUSED) { /* the end of the message: what follows is the next request */
        conn->parse_pos = (size_t)(llhttp_get_error_pos(&conn->parser) - conn->in.data);
        conn->body_stream->complete = true;
        http_body_stream_fed(conn);
        return false;
    }
    if (conn->error_status == 0) {
        const char *reason = llhttp_get_error_reason(&conn->parser);
        http_conn_reject(conn, 400, "malformed request: %s", reason ? reason : llhttp_errno_name(err));
    }
    return false;
}

/* Parses and dispatches everything buffered, one request at a time, until a handler goes async,
 * input runs out, or the output backlog says the client is not reading. */
static void http_conn_process(http_conn *conn)
{
    http_loop *loop = conn->loop;
    conn->processing = true;
    conn->answered_us = 0; /* an answer's time from another callback is not now */
    while (!conn->dead) {
        if (conn->state == HTTP_CONN_HANDLER && http_body_stream_wants(conn)) {
            if (!http_conn_feed_body(conn))
                break;
            continue;
        }
        if (conn->state == HTTP_CONN_HANDLER || conn->state == HTTP_CONN_CLOSING ||
            conn->state == HTTP_CONN_LINGER || conn->state == HTTP_CONN_UPGRADED)
            break;
        if (conn->out.len > loop->settings->output_buffer_bytes)
            break; /* backpressure: parse on once the client has read its answers (on_write) */
        if (conn->file_fd >= 0) {
            /* A file's body goes before the next answer: send it now, or parse on from on_write. */
            http_conn_flush(conn);
            if (conn->dead || conn->file_fd >= 0)
                break;
            continue;
        }
        size_t avail = conn->in.len - conn->parse_pos;
        if (avail == 0)
            break;
        if (conn->state == HTTP_CONN_IDLE) {
            if (!http_conn_idle_input(conn, avail))
                break;
            /* Only GET heads are read without llhttp: other methods do not pay for the call. */
            bool refused = false;
            size_t head = conn->in.data[conn->parse_pos] == 'G' ? http_parser_fast_head(conn, avail, &refused) : 0;
            if (refused)
                break; /* answered with its refusal, as when a callback refuses a head */
            if (head) {
                conn->parse_pos += head;
                http_conn_dispatch(conn);
                continue;
            }
        }
        const char *start = conn->in.data + conn->parse_pos;
        bool chunk_lines = conn->state == HTTP_CONN_BODY && (conn->parser.flags & F_CHUNKED) && !conn->last_chunk;
        conn->chunk_parse_start = start;
        conn->chunk_data_end = NULL;
        llhttp_errno_t err = llhttp_execute(&conn->parser, start, avail);
        /* Mid-way through a chunked body: the chunk-size line still open must not be too long already. */
        if (chunk_lines && err == HPE_OK && !conn->last_chunk && !http_parser_chunk_line_ok(conn, start + avail))
            break;
        if (conn->state == HTTP_CONN_IDLE && err == HPE_OK) {
            /* Only CR/LF between requests, which llhttp skips: stay idle. */
            conn->parse_pos = conn->in.len;
            continue;
        }
        if (err == HPE_OK) {
            conn->parse_pos = conn->in.len;
            break; /* need more bytes */
        }
        if (err == HPE_PAUSED) {
            conn->parse_pos = (size_t)(llhttp_get_error_pos(&conn->parser) - conn->in.data);
            http_conn_dispatch(conn);
            continue; /* answered now: next request; answered later: the loop head stops */
        }
        if (conn->error_status == 0) {
            const char *reason = llhttp_get_error_reason(&conn->parser);
            http_conn_reject(conn, http_conn_error_status(conn, err), "malformed request: %s",
                             reason ? reason : llhttp_errno_name(err));
        }
        break;
    }
    conn->processing = false;
    if (conn->dead || conn->state == HTTP_CONN_UPGRADED)
        return; /* taken over: its events and output are the taker's now */
    if (conn->peer_eof && conn->state != HTTP_CONN_HANDLER) {
        /* The client sends nothing more and nothing is in flight: answer what it asked, then close.
         * Pipelined requests held back by the output limit are still answered; a request cut off
         * mid-way is not. A request in flight is settled below (half_close). */
        bool more_buffered = conn->state == HTTP_CONN_IDLE && conn->parse_pos < conn->in.len;
        if (!more_buffered && conn->state != HTTP_CONN_LINGER)
            conn->state = HTTP_CONN_CLOSING;
    }
    http_conn_flush(conn);
    if (!conn->dead && (conn->peer_eof || conn->fin_pending) && conn->state == HTTP_CONN_HANDLER &&
        !loop->settings->half_close_answer) {
        /* half_close "cancel" (the default): the end of input with a request in flight is a client
         * that left, as nginx takes it (499). Answers already queued were flushed above. */
        http_conn_client_gone(conn, true);
    } else if (!conn->dead && conn->peer_eof && conn->state == HTTP_CONN_HANDLER && conn->body_stream &&
               !conn->body_stream->complete && conn->parse_pos == conn->in.len) {
        /* half_close "answer" too: a streamed body cut off by the client's FIN, every byte before it
         * parsed, can never be completed: the client left mid-body, as a buffered body's is not
         * answered either (found by fuzz_body_stream: it waited for body_ms, then 408). */
        http_conn_client_gone(conn, true);
    }
}

/* ---- output ------------------------------------------------------------------------------------ */

/* After the last answer is out: stop sending, and drain the client's leftovers for a while. */
static void http_conn_start_linger(http_conn *conn)
{
    /* A client that asked to close (Connection: close, HTTP/1.0) sends nothing more (RFC 9112 9.6): when
     * its request was read whole and no byte follows it, there is nothing to drain, and closing at once
     * resets nothing (nginx closes such a connection at once too). It saves the shutdown, the read of
     * the client's FIN, a wake-up and the linger timer per connection (limited-conn's reconnections). */
    bool nothing_to_drain = conn->close_clean && conn->parse_pos == conn->in.len;
    if (conn->peer_eof || nothing_to_drain || conn->loop->settings->linger_timeout_ms == 0) {
        http_conn_close(conn);
        return;
    }
    shutdown(conn->fd, SHUT_WR);
    conn->state = HTTP_CONN_LINGER;
    http_conn_set_reading(conn, true);
    http_conn_arm_timer(conn);
}

static void http_conn_flush(http_conn *conn)
{
    buf *out = &conn->out;
    bool progress = false;
    /* A file follows what is queued: MSG_MORE holds the head back until sendfile adds the body, so
     * both leave in one segment (nginx's tcp_nopush; TCP_NODELAY would push the head alone, and the
     * client would wake for it, ACK it, and wake again for the body). sendfile's last page pushes. */
    int more = conn->file_fd >= 0 ? MSG_MORE : 0;
    while (buf_pending(out) > 0) {
        ssize_t n = send(conn->fd, out->data + out->pos, buf_pending(out), MSG_NOSIGNAL | more);
        if (n > 0) {
            out->pos += (size_t)n;
            progress = true;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        http_conn_client_gone(conn, false); /* EPIPE, ECONNRESET: the client is gone */
        return;
    }
    if (buf_pending(out) == 0 && conn->file_fd >= 0) {
        /* What was queued before it is out: the file's bytes, straight from the page cache. */
        while (conn->file_left > 0) {
            ssize_t n = sendfile(conn->fd, conn->file_fd, &conn->file_off, conn->file_left);
            if (n > 0) {
                conn->file_left -= (size_t)n;
                progress = true;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                break;
            if (n == 0)
                log_warn("loop %u: a file shrank while it was being sent; closing the connection", conn->loop->id);
            http_conn_client_gone(conn, false); /* EPIPE, ECONNRESET, or a promised length we cannot keep */
            return;
        }
        if (conn->file_left == 0) {
            close(conn->file_fd);
            conn->file_fd = -1;
        }
    }
    if (progress && conn->stream)
        http_stream_flushed(conn); /* a producer waiting for room may go on */
    if (out->pos >= buf_pending(out) && buf_pending(out) > 0)
        buf_compact(out); /* moves at most as many bytes as were sent since the last move: O(1) a byte */
    if (buf_pending(out) == 0 && conn->file_fd >= 0) {
        buf_release(out, &conn->loop->cache); /* only the file is left: hold no buffer for it */
        if (!conn->writing) {
            event_add(&conn->write_ev, NULL);
            conn->writing = true;
            progress = true;
        }
    } else if (buf_pending(out) == 0) {
        buf_release(out, &conn->loop->cache);
        if (conn->writing) {
            event_del(&conn->write_ev);
            conn->writing = false;
        }
        if (conn->state == HTTP_CONN_CLOSING) {
            http_conn_start_linger(conn);
            return;
        }
    } else if (!conn->writing) {
        event_add(&conn->write_ev, NULL);
        conn->writing = true;
        progress = true; /* start the write timer now */
    }
    if (conn->state == HTTP_CONN_IDLE) {
        /* Idle connections hold no buffers: 10,000 of them must fit in a few MiB. */
        if (conn->in.data && conn->parse_pos == conn->in.len) {
            buf_release(&conn->in, &conn->loop->cache);
            conn->parse_pos = conn->msg_start = 0;
        }
        if (conn->body.data)
            buf_release(&conn->body, &conn->loop->cache);
    }
    /* While a handler runs, reading stays as it is: it is off only because the input buffer is full of
     * pipelined requests, and turning it on would make the loop spin on a readable socket it cannot
     * read (issue 18); the answer turns it back on (http_conn_answer_done). */
    if (!conn->peer_eof && conn->state != HTTP_CONN_CLOSING && conn->state != HTTP_CONN_HANDLER)
        http_conn_set_reading(conn, true);
    /* Blocked without progress: leave the write timer running, or it would never expire. */
    if (progress || !conn->writing)
        http_conn_arm_timer(conn);
}

static void http_conn_on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_conn *conn = arg;
    http_conn_enter(conn);
    http_conn_flush(conn);
    /* The client read some answers: requests held back by the output limit can go on. */
    if (!conn->dead && !conn->writing)
        http_conn_process(conn);
    http_conn_leave(conn);
}

/* Counts the answer for /metrics: by route and status, and its latency. Requests that matched no route
 * (or were refused before routing) count under the extra "unmatched" slot. */
static void http_conn_count(http_conn *conn, int status, uint64_t us)
{
    http_loop *loop = conn->loop;
    http_req_slot *slot = conn->slot;
    size_t route = slot && slot->route_status == ROUTER_FOUND ? slot->match.route_id
                                                               : router_route_count(loop->router);
    http_route_stats *s = &loop->route_stats[route];
    unsigned slot_i = http_metrics_status_slot(status);
    unsigned bucket = http_metrics_latency_bucket(us);
    __atomic_store_n(&s->by_status[slot_i], s->by_status[slot_i] + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&s->latency[bucket], s->latency[bucket] + 1, __ATOMIC_RELAXED);
    __atomic_store_n(&s->latency_sum_us, s->latency_sum_us + us, __ATOMIC_RELAXED);
}

/* The access-log line of an answer (only when the log is on). */
static void http_conn_log(http_conn *conn, const http_request *req, int status, size_t bytes, uint64_t us)
{
    char client[64];
    const char *method = "-", *path = "-";
    size_t path_len = 1;
    if (req && req->raw_target) {
        method = req->method == HTTP_METHOD_UNSUPPORTED ? "OTHER" : http_method_name(req->method);
        path = req->raw_target;
        path_len = req->raw_target_len;
    }
    access_log_entry e = {
        .request_id = req && req->request_id ? req->request_id : "-",
        .client = req && req->raw_target ? http_request_client(req, client, sizeof(client))
                                         : http_conn_peer_text(conn, client, sizeof(client)),
        .method = method,
        .path = path,
        .path_len = path_len,
        .status = status,
        .bytes = bytes,
        .duration_us = us,
    };
    access_log_append(&conn->loop->access_log, &e);
}

/* The head of an answer to the connection's current request (none when refused before dispatch). */
static void http_conn_head(http_conn *conn, http_request *req, int status, const char *content_type,
                           http_response_head *head)
{
    http_loop *loop = conn->loop;
    if (loop->draining)
        conn->keep_alive = false;
    if (conn->body_early && !(conn->body_stream && conn->body_stream->complete))
        conn->keep_alive = false; /* the rest of a streamed body is not read: close after the answer */
    http_connection_header connection = HTTP_CONN_HEADER_NONE;
    if (!conn->keep_alive)
        connection = HTTP_CONN_HEADER_CLOSE;
    else if (req && req->http_minor == 0)
        connection = HTTP_CONN_HEADER_KEEP_ALIVE;
    if (req && !req->request_id) /* refused before dispatch: still give the client an id to quote */
        http_conn_take_request_id(conn, req);
    if (req)
        http_conn_run_after(conn, req, status); /* its headers go into the head built below */
    *head = (http_response_head){
        .status = status,
        .content_type = content_type,
        .connection = connection,
        .date = loop->date,
        .request_id = req ? req->request_id : NULL,
        .extra_headers = req ? req->_extra_headers : NULL,
        .extra_headers_len = req ? req->_extra_headers_len : 0,
    };
}

/* Counts an answer that is queued, and logs it. */
static void http_conn_answered(http_conn *conn, http_request *req, int status, size_t bytes)
{
    http_loop *loop = conn->loop;
    HTTP_STAT_ADD(loop, responses_by_class[status / 100 % 6], 1);
    uint64_t now = http_conn_now_us(), us = now - conn->started_us;
    conn->answered_us = conn->processing ? now : 0; /* see http_conn_idle_input */
    http_conn_count(conn, status, us);
    if (access_log_enabled())
        http_conn_log(conn, req, status, bytes, us);
}

/* ---- content coding (http_compress.c, docs/compression.md) ---- */

/* True when the current answer is streamed (http_stream*.c): its bytes leave as they are produced,
 * so it is never content-coded. Streamed heads go through http_conn_stream_head, not here; this is the
 * one place the engine asks, should a streamed answer ever reach the whole-body path. */
static bool http_conn_answer_streams(const http_conn *conn)
{
    return conn->stream != NULL;
}

/* The coding the current request's answer gets (identity when refused before dispatch). */
static void http_conn_plan(http_conn *conn, http_request *req, int status, const char *content_type, size_t len,
                           http_compress_plan *plan)
{
    const char *ae = NULL;
    size_t ae_len = 0;
    bool route_off = false;
    if (req) {
        for (size_t i = 0; i < req->header_count; i++) {
            const http_header *h = &req->headers[i];
            if (h->name_len == 15 && strncasecmp(h->name, "Accept-Encoding", 15) == 0) {
                ae = h->value; /* the first field: clients send one */
                ae_len = h->value_len;
                break;
            }
        }
        route_off = conn->slot->route_status == ROUTER_FOUND && (conn->slot->match.flags & ROUTE_NO_COMPRESS);
        /* A handler that coded its body itself said so in Content-Encoding: never coded twice. */
        for (size_t i = 0; !route_off && i + 17 <= req->_extra_headers_len; i++)
            route_off = (i == 0 || req->_extra_headers[i - 1] == '\n') &&
                        strncasecmp(req->_extra_headers + i, "Content-Encoding:", 17) == 0;
    }
    http_compress_plan_for(conn->loop->settings, ae, ae_len, route_off, http_conn_answer_streams(conn), status,
                           content_type, len, plan);
}

static int http_conn_coding_level(const http_conn *conn, http_coding c)
{
    const http_settings *s = conn->loop->settings;
    return (int)(c == HTTP_CODING_BR ? s->compress_brotli_level : s->compress_gzip_level);
}

static bool http_conn_queue_json(http_conn *conn, int status, const char *content_type, const json_t *json,
                                 const json_write_splice *splice);

/* The client accepts neither identity nor a coding we have (Accept-Encoding: identity;q=0 and no
 * gzip, br or *): the answer the handler made is replaced by a 406. */
static void http_conn_queue_not_acceptable(http_conn *conn)
{
    json_t *problem = http_problem_new(406, "the response can only be sent as identity, gzip or br, and "
                                            "Accept-Encoding refuses all of them", NULL);
    http_conn_queue_json(conn, 406, "application/problem+json", problem, NULL);
    json_decref(problem);
}

/* Writes head and (unless HEAD) body, the body coded as `plan` says (as it is when coding would not
 * make it smaller). */
static void http_conn_queue_coded(http_conn *conn, http_request *req, http_response_head *head,
                                  const http_compress_plan *plan, const void *body, size_t len)
{
    bool head_only = req && req->method == HTTP_METHOD_HEAD;
    const void *coded = NULL;
    size_t coded_len = 0;
    if (plan->coding != HTTP_CODING_IDENTITY)
        coded_len = http_compress(plan->coding, http_conn_coding_level(conn, plan->coding), body, len, &coded);
    if (coded_len) {
        body = coded;
        len = coded_len;
        head->content_encoding = http_coding_name(plan->coding);
    }
    head->vary_accept_encoding = plan->vary;
    head->content_length = len;
    http_response_write_head(&conn->out, &conn->loop->cache, head);
    if (len && !head_only)
        buf_append(&conn->out, &conn->loop->cache, body, len);
    if (coded)
        http_compress_trim();
    http_conn_answered(conn, req, head->status, head_only ? 0 : len);
}

/* Large bodies are coded on the worker pool (compression.pool_bytes): at about 10 us per KiB (gzip
 * level 1, bench/compress_micro.c) a few MiB would hold the loop and every other connection of it for
 * tens of ms. The answer waits in the request's scope; the job's input is a header and the body, and
 * the scope's copy of it is also the identity answer when the pool is full. */
static void http_conn_answer_done(http_conn *conn, bool outside);

typedef struct http_conn_coding_input {
    http_coding coding;
    int level;
} http_conn_coding_input;

typedef struct http_conn_coding_job {
    http_conn *conn;
    int status;
    char *content_type;      /* scope memory */
    http_compress_plan plan;
    unsigned char *input;    /* scope memory: http_conn_coding_input, then the body */
    size_t len;              /* of the body */
} http_conn_coding_job;

static const char *http_conn_coding_work(pool_job *job, const void *input, size_t input_len, void *output,
                                         size_t output_cap, size_t *output_len)
{
    (void)job;
    const http_conn_coding_input *in = input;
    *output_len = http_compress_into(in->coding, in->level, (const unsigned char *)input + sizeof(*in),
                                     input_len - sizeof(*in), output, output_cap);
    return NULL; /* 0 bytes: it would not shrink, sent as it is */
}

static void http_conn_coding_done(async_op *op, void *arg)
{
    http_conn_coding_job *job = arg;
    http_conn *conn = job->conn;
    http_request *req = &conn->slot->req;
    http_conn_enter(conn);
    conn->slot->coding_on_pool = false;
    const pool_result *res = op->status == ASYNC_OK ? op->value : NULL;
    http_response_head head;
    http_conn_head(conn, req, job->status, job->content_type, &head);
    const void *body = job->input + sizeof(http_conn_coding_input);
    size_t len = job->len;
    if (res && res->len) {
        body = res->data;
        len = res->len;
        head.content_encoding = http_coding_name(job->plan.coding);
    }
    bool head_only = req->method == HTTP_METHOD_HEAD;
    head.vary_accept_encoding = job->plan.vary;
    head.content_length = len;
    http_response_write_head(&conn->out, &conn->loop->cache, &head);
    if (!head_only)
        buf_append(&conn->out, &conn->loop->cache, body, len);
    http_conn_answered(conn, req, job->status, head_only ? 0 : len);
    http_conn_answer_done(conn, true); /* ends the request and its scope: job is not touched after */
    http_conn_leave(conn);
}

/* Hands the coding of body to the pool and returns true, or false (nothing done) when it stays on the
 * loop: small body, no pool, not from a handler, or the loop at its async cap. */
static bool http_conn_code_on_pool(http_conn *conn, http_request *req, int status, const char *content_type,
                                   const http_compress_plan *plan, const void *body, size_t len)
{
    http_loop *loop = conn->loop;
    const http_settings *s = loop->settings;
    if (plan->coding == HTTP_CODING_IDENTITY || !s->compress_pool || len < s->compress_pool_bytes || !req ||
        conn->state != HTTP_CONN_HANDLER || (!req->_scope && loop->stats.async_inflight >= s->max_async_per_loop))
        return false;
    async_scope *scope = http_request_async(req);
    if (!scope)
        return false;
    http_conn_coding_job *job = async_scope_alloc(scope, sizeof(*job));
    size_t ct_len = content_type ? strlen(content_type) : 0;
    job->conn = conn;
    job->status = status;
    job->content_type = content_type ? async_scope_alloc(scope, ct_len + 1) : NULL;
    if (content_type)
        memcpy(job->content_type, content_type, ct_len + 1);
    job->plan = *plan;
    job->len = len;
    job->input = async_scope_alloc(scope, sizeof(http_conn_coding_input) + len);
    http_conn_coding_input in = {plan->coding, http_conn_coding_level(conn, plan->coding)};
    memcpy(job->input, &in, sizeof(in));
    memcpy(job->input + sizeof(in), body, len);
    async_op *op = pool_submit(scope, s->compress_pool, http_conn_coding_work, job->input, sizeof(in) + len,
                               http_compress_bound(len));
    conn->slot->coding_on_pool = true;
    async_op_then(op, http_conn_coding_done, job);
    return true;
}

/* Queues status line, headers and body. With http_conn_queue_json, the single entry for every answer. */
static void http_conn_queue_response(http_conn *conn, int status, const char *content_type, const void *body,
                                     size_t len)
{
    http_request *req = conn->slot ? &conn->slot->req : NULL;
    http_compress_plan plan;
    http_conn_plan(conn, req, status, content_type, len, &plan);
    if (plan.not_acceptable) {
        http_conn_queue_not_acceptable(conn);
        return;
    }
    if (http_conn_code_on_pool(conn, req, status, content_type, &plan, body, len))
        return;
    http_response_head head;
    http_conn_head(conn, req, status, content_type, &head);
    http_conn_queue_coded(conn, req, &head, &plan, body, len);
}

/* Queues a JSON answer, serialised in one pass straight into the output buffer: the body is written
 * after a gap as large as the longest head could be, then the head, whose Content-Length is now
 * known, goes right before the body. With nothing else pending (the usual case) the gap simply
 * counts as already sent (out->pos), so only the head is moved; behind pipelined answers the body
 * moves down instead. False, with nothing queued, when the tree cannot be written (json_write). */
static bool http_conn_queue_json(http_conn *conn, int status, const char *content_type, const json_t *json,
                                 const json_write_splice *splice)
{
    buf *out = &conn->out;
    buf_cache *cache = &conn->loop->cache;
    http_request *req = conn->slot ? &conn->slot->req : NULL;
    http_response_head head;
    http_conn_head(conn, req, status, content_type, &head);
    size_t start = out->len, gap = http_response_head_max(&head);
    buf_reserve(out, cache, gap);
    out->len += gap;
    size_t body_start = out->len;
    if (!json_write(out, cache, json, splice)) {
        out->len = start;
        return false;
    }
    size_t body_len = out->len - body_start;
    http_compress_plan plan;
    http_conn_plan(conn, req, status, content_type, body_len, &plan);
    if (plan.not_acceptable) {
        out->len = start;
        http_conn_queue_not_acceptable(conn);
        return true;
    }
    if (http_conn_code_on_pool(conn, req, status, content_type, &plan, out->data + body_start, body_len)) {
        out->len = start; /* the body was copied into the job; the head is written when it is coded */
        return true;
    }
    if (plan.coding != HTTP_CODING_IDENTITY) {
        const void *coded = NULL;
        size_t coded_len = http_compress(plan.coding, http_conn_coding_level(conn, plan.coding),
                                         out->data + body_start, body_len, &coded);
        if (coded_len) {
            /* The coded body lives in the thread's buffer: the head and it go where the gap began. */
            bool head_only = req && req->method == HTTP_METHOD_HEAD;
            out->len = start;
            head.content_encoding = http_coding_name(plan.coding);
            head.vary_accept_encoding = plan.vary;
            head.content_length = coded_len;
            http_response_write_head(out, cache, &head);
            if (!head_only)
                buf_append(out, cache, coded, coded_len);
            http_compress_trim();
            http_conn_answered(conn, req, status, head_only ? 0 : coded_len);
            return true;
        }
        /* It would not shrink: sent as it is, still with Vary. */
    }
    head.vary_accept_encoding = plan.vary;
    head.content_length = body_len;
    out->len = start;
    http_response_write_head(out, cache, &head); /* fits in the gap: no reallocation */
    size_t head_len = out->len - start;
    if (req && req->method == HTTP_METHOD_HEAD) {
        body_len = 0; /* the body was written only to learn its length */
    } else if (out->pos == start) {
        memmove(out->data + body_start - head_len, out->data + start, head_len);
        out->pos = body_start - head_len;
        out->len = body_start + body_len;
    } else {
        memmove(out->data + start + head_len, out->data + body_start, body_len);
        out->len = start + head_len + body_len;
    }
    http_conn_answered(conn, req, status, body_len);
    return true;
}

/* Ends the request whose answer was just queued. `outside`: answered from a timer, a continuation,
 * a posted result or the deadline, not from under http_conn_process. */
static void http_conn_parse_on(void *arg)
{
    http_conn *conn = arg;
    http_conn_set_reading(conn, !conn->peer_eof);
    http_conn_process(conn);
}

/* http_conn_parse_on once a coroutine that answered has switched out; the connection is held
 * (busy) until then, so it cannot be freed under it. */
static void http_conn_parse_on_after(void *arg)
{
    http_conn *conn = arg;
    if (!conn->dead)
        http_conn_parse_on(conn);
    http_conn_leave(conn);
}

static void http_conn_answer_done(http_conn *conn, bool outside)
{
    http_conn_request_done(conn);
    if (!outside)
        return;
    /* Nobody below us will parse on: carry on with pipelined input and write it all out. From a
     * coroutine's answer that runs on the loop's stack, not the handler's small one (the next
     * request's handler may be anything), when the coroutine switches out anyway (it returns, as a
     * handler does after answering): two switches fewer than going out and back in for it. */
    if (async_in_coro()) {
        http_conn_enter(conn);
        async__coro_after(http_conn_parse_on_after, conn);
    } else {
        http_conn_parse_on(conn);
    }
}

void http_conn_send_response(http_conn *conn, int status, const char *content_type, const void *body, size_t len)
{
    if (conn->dead)
        return; /* answered from a cancel callback: the client is gone */
    http_conn_enter(conn);
    bool outside = !conn->processing;
    http_conn_queue_response(conn, status, content_type, body, len);
    if (!(conn->slot && conn->slot->coding_on_pool))
        http_conn_answer_done(conn, outside); /* else when the pool has coded it (http_conn_coding_done) */
    http_conn_leave(conn);
}

/* Files up to this size are read into the output buffer: one send for head and body, and pipelined
 * answers go on in the same send; larger ones go by sendfile. */
#define HTTP_CONN_FILE_INLINE_BYTES 32768

bool http_conn_file_inline(size_t len) { return len <= HTTP_CONN_FILE_INLINE_BYTES; }

void http_conn_send_file(http_conn *conn, int status, const char *content_type, int fd, off_t off, size_t len,
                         bool keep_fd)
{
    if (conn->dead) {
        if (fd >= 0 && !keep_fd)
            close(fd);
        return;
    }
    http_conn_enter(conn);
    bool outside = !conn->processing;
    http_request *req = conn->slot ? &conn->slot->req : NULL;
    bool head_only = (req && req->method == HTTP_METHOD_HEAD) || fd < 0;
    bool inline_body = !head_only && len <= HTTP_CONN_FILE_INLINE_BYTES;
    http_response_head head;
    http_conn_head(conn, req, status, content_type, &head);
    head.content_length = len;
    size_t head_at = conn->out.len;
    http_response_write_head(&conn->out, &conn->loop->cache, &head);
    if (inline_body && len) {
        /* Read straight into the output buffer behind the head (no copy in between). A file that
         * shrank since its fstat gets a true length: the head is written again with what was read. */
        buf_reserve(&conn->out, &conn->loop->cache, len);
        char *body = conn->out.data + conn->out.len;
        size_t got = 0;
        while (got < len) {
            ssize_t n = pread(fd, body + got, len - got, off + (off_t)got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        if (got == len) {
            conn->out.len += len;
        } else {
            char *copy = arena_alloc(&req->arena, got ? got : 1);
            memcpy(copy, body, got);
            conn->out.len = head_at;
            head.content_length = len = got;
            http_response_write_head(&conn->out, &conn->loop->cache, &head);
            buf_append(&conn->out, &conn->loop->cache, copy, got);
        }
    }
    if (!head_only && !inline_body && len) {
        /* (never a kept descriptor: the caller gave a dup of it, see http_conn_file_inline) */
        conn->file_fd = fd; /* http_conn_flush sends it after the head */
        conn->file_off = off;
        conn->file_left = len;
        fd = -1;
    }
    if (fd >= 0 && !keep_fd)
        close(fd);
    http_conn_answered(conn, req, status, head_only ? 0 : len);
    http_conn_answer_done(conn, outside);
    http_conn_leave(conn);
}

void http_conn_send_json(http_conn *conn, int status, const char *content_type, json_t *json,
                         const json_write_splice *splice)
{
    if (conn->dead) {
        json_decref(json);
        return;
    }
    http_conn_enter(conn);
    bool outside = !conn->processing;
    if (!http_conn_queue_json(conn, status, content_type, json, splice)) {
        static const char fallback[] =
            "{\"type\":\"about:blank\",\"title\":\"Internal Server Error\",\"status\":500,"
            "\"detail\":\"the response could not be serialized\"}";
        log_error("route %s: its answer is not valid JSON (invalid UTF-8, NaN, or nesting deeper than %d)",
                  conn->slot && conn->slot->req.route_name ? conn->slot->req.route_name : "(none)",
                  JSON_WRITE_MAX_DEPTH);
        http_conn_queue_response(conn, 500, "application/problem+json", fallback, sizeof(fallback) - 1);
    }
    json_decref(json); /* before the request, and the arena its nodes may come from, ends */
    if (!(conn->slot && conn->slot->coding_on_pool))
        http_conn_answer_done(conn, outside); /* else when the pool has coded it (http_conn_coding_done) */
    http_conn_leave(conn);
}

bool http_conn_upgrade(http_conn *conn, const char *head, size_t head_len, const http_upgrade_ops *ops, void *arg)
{
    if (conn->dead || conn->state != HTTP_CONN_HANDLER || !conn->slot)
        return false;
    http_request *req = &conn->slot->req;
    http_loop *loop = conn->loop;
    http_conn_run_after(conn, req, 101);
    buf *out = &conn->out;
    buf_append(out, &loop->cache, head, head_len);
    if (req->request_id) {
        buf_append(out, &loop->cache, "X-Request-Id: ", 14);
        buf_append(out, &loop->cache, req->request_id, strlen(req->request_id));
        buf_append(out, &loop->cache, "\r\n", 2);
    }
    if (req->_extra_headers_len)
        buf_append(out, &loop->cache, req->_extra_headers, req->_extra_headers_len);
    buf_append(out, &loop->cache, "\r\n", 2);
    http_conn_answered(conn, req, 101, 0);
    http_conn_end_request(conn);
    /* What the client sent past the request (frames it did not wait to send) moves to the front. */
    buf *in = &conn->in;
    size_t left = in->len > conn->parse_pos ? in->len - conn->parse_pos : 0;
    if (left)
        memmove(in->data, in->data + conn->parse_pos, left);
    in->len = left;
    in->pos = 0;
    if (!left)
        buf_release(in, &loop->cache);
    conn->parse_pos = conn->msg_start = 0;
    event_del(&conn->read_ev);
    event_del(&conn->write_ev);
    event_del(&conn->timer_ev);
    conn->timer_armed = false;
    event_del(&conn->close_ev);
    conn->reading = conn->writing = conn->watching_close = false;
    conn->state = HTTP_CONN_UPGRADED;
    conn->upgrade_ops = ops;
    conn->upgrade_arg = arg;
    return true;
}

/* Refuses the message being parsed: a problem answer with Connection: close, and no further parsing.
 * Used for what breaks the framing or a limit (400, 408, 413, 414, 431, 505, 417). */
void http_conn_reject(http_conn *conn, int status, const char *fmt, ...)
{
    char detail[sizeof(conn->error_detail)];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof(detail), fmt, ap);
    va_end(ap);
    conn->error_status = status;
    conn->keep_alive = false;
    if (conn->state == HTTP_CONN_HANDLER && conn->slot)
        conn->slot->req._answered = true; /* mid streamed body: the handler unwinding answers nothing */
    http_loop *loop = conn->loop;
    json_t *problem = http_problem_new(status, detail, NULL);
    if (conn->slot)
        conn->slot->req.method = HTTP_METHOD_GET; /* a HEAD request's refusal still carries its body */
    http_conn_queue_json(conn, status, "application/problem+json", problem, NULL); /* a problem always writes */
    json_decref(problem);
    http_conn_end_request(conn);
    conn->state = HTTP_CONN_CLOSING;
    log_debug("loop %u: rejected request with %d: %s", loop->id, status, detail);
}

/* The peer's address as text ("local" when it has none, e.g. a socketpair in tests). */
static const char *http_conn_peer_text(const http_conn *conn, char *buf, size_t len)
{
    if (!conn->peer_family || !inet_ntop(conn->peer_family, conn->peer_addr, buf, (socklen_t)len))
        snprintf(buf, len, "local");
    return buf;
}

/* ---- shutdown ---------------------------------------------------------------------------------- */

/* Graceful drain: idle connections close now, unless bytes are already waiting on the socket, which
 * are read and answered (with Connection: close) rather than dropped. */
void http_conn_drain(http_conn *conn)
{
    if (conn->upgrade_ops) {
        conn->upgrade_ops->drain(conn->upgrade_arg);
        return;
    }
    if (conn->stream && conn->state == HTTP_CONN_HANDLER) {
        /* A stream has no natural end the drain could wait for: end it now (last chunk, close). */
        http_conn_enter(conn);
        http_stream_server_drain(conn);
        http_conn_leave(conn);
        return;
    }
    if (conn->state != HTTP_CONN_IDLE || buf_pending(&conn->out) > 0 || conn->file_fd >= 0)
        return; /* in flight: its answer will carry Connection: close */
    http_conn_enter(conn);
    http_conn_on_read(conn->fd, EV_READ, conn);
    if (!conn->dead && conn->state == HTTP_CONN_IDLE && buf_pending(&conn->out) == 0)
        http_conn_close(conn);
    http_conn_leave(conn);
}

void http_conn_force_close(http_conn *conn)
{
    http_conn_enter(conn);
    http_conn_close(conn);
    http_conn_leave(conn);
}

/* ---- streamed answers and bodies (http_stream.c, http_body_stream.c) ---------------------------- */

void http_conn_stream_head(http_conn *conn, int status, const char *content_type, bool chunked)
{
    http_request *req = &conn->slot->req;
    if (!chunked)
        conn->keep_alive = false; /* HTTP/1.0: the body ends when the connection closes */
    http_response_head head;
    http_conn_head(conn, req, status, content_type, &head);
    head.streamed = true;
    head.chunked = chunked;
    http_response_write_head(&conn->out, &conn->loop->cache, &head);
}

void http_conn_stream_kick(http_conn *conn)
{
    /* Flushed from the loop, never inside the producer's call (a failed send ends the request). */
    if (!conn->dead && !conn->writing)
        event_active(&conn->write_ev, EV_WRITE, 1);
}

void http_conn_stream_finish(http_conn *conn, int status, uint64_t bytes)
{
    http_conn_enter(conn);
    http_conn_answered(conn, &conn->slot->req, status, (size_t)bytes);
    http_conn_answer_done(conn, !conn->processing);
    http_conn_leave(conn);
}

void http_conn_body_kick(http_conn *conn)
{
    if (conn->dead)
        return;
    http_conn_set_reading(conn, !conn->peer_eof); /* it stopped when the input buffer filled */
    event_active(&conn->read_ev, EV_READ, 1);
}
