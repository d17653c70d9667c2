/* http_loop: one libevent loop on one thread (see http_loop_internal.h). Owns the listener, the connection
 * list, the buffer cache, the request slots and the cached Date header; runs posted functions from
 * other threads; drains on request. */
#include <errno.h>
#include <event2/thread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "coro_internal.h"
#include "http_internal.h"
#include "log.h"
#include "xalloc_internal.h"

#define HTTP_LOOP_ACCEPT_BATCH 64     /* accepts per wake-up: fairness to connections already open */
#define HTTP_LOOP_ACCEPT_RETRY_MS 100 /* pause after EMFILE/ENFILE before trying again */
#define HTTP_LOOP_CACHED_BLOCKS 512   /* 4 MiB of 8 KiB buffers kept per loop at most */
#define HTTP_LOOP_CACHED_SLOTS 256
#define HTTP_LOOP_LAG_PROBE_MS 100    /* how often the loop checks how late its timers fire */

const unsigned HTTP_LOOP_LAG_BOUNDS_MS[HTTP_LOOP_LAG_BUCKETS - 1] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000};

static uint64_t http_loop_now_ms(void);

int http_loop_global_init(void) { return evthread_use_pthreads(); }

/* ---- request slots ----------------------------------------------------------------------------- */

http_req_slot *http_loop_slot_get(http_loop *loop)
{
    http_req_slot *slot = loop->free_slots;
    if (slot) {
        loop->free_slots = slot->next_free;
        loop->free_slot_count--;
    } else {
        slot = xmalloc(sizeof(*slot));
    }
    slot->header_spans = slot->spans_inline;
    slot->header_spans_cap = HTTP_SLOT_INLINE_HEADERS;
    http_request *req = &slot->req;
    memset(req, 0, offsetof(http_request, arena));
    memset(&req->user, 0, sizeof(*req) - offsetof(http_request, user));
    arena_init(&req->arena);
    slot->context = NULL;
    slot->middleware_ran = false;
    slot->in_after_hooks = false;
    slot->coding_on_pool = false;
    slot->coro_state = HTTP_CORO_NONE;
    slot->values = NULL;
    return slot;
}

void http_loop_slot_put(http_loop *loop, http_req_slot *slot)
{
    if (loop->free_slot_count >= HTTP_LOOP_CACHED_SLOTS) {
        free(slot);
        return;
    }
    slot->next_free = loop->free_slots;
    loop->free_slots = slot;
    loop->free_slot_count++;
}

/* ---- accepting --------------------------------------------------------------------------------- */

static size_t http_loop_max_connections(const http_loop *loop) { return loop->settings->max_connections; }

static void http_loop_set_accepting(http_loop *loop, bool on)
{
    if (on == loop->accept_enabled || loop->listen_count == 0)
        return;
    for (size_t i = 0; i < loop->listen_count; i++) {
        if (on)
            event_add(loop->listen_evs[i], NULL);
        else
            event_del(loop->listen_evs[i]);
    }
    loop->accept_enabled = on;
}

static void http_loop_on_accept(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    http_loop *loop = arg;
    for (int i = 0; i < HTTP_LOOP_ACCEPT_BATCH; i++) {
        /* Every connection busy and the over-limit places taken too: leave new clients in the backlog
         * until a connection closes or goes idle (http_loop_maybe_resume_accepting). The first pass
         * knows a client is waiting, so it may close idle connections for it. */
        if (http_conn_limit_saturated(loop) && !(i == 0 && http_conn_limit_reclaim(loop) > 0)) {
            http_loop_set_accepting(loop, false);
            return;
        }
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof(peer);
        int fd = accept4(lfd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            /* Decided once the client is really there: room is never made for nobody. */
            http_conn_accept(loop, fd, (struct sockaddr *)&peer, http_conn_limit_admit(loop));
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        if (errno == EINTR || errno == ECONNABORTED || errno == EPROTO)
            continue;
        HTTP_STAT_ADD(loop, accept_errors, 1);
        if ((errno == EMFILE || errno == ENFILE) && http_conn_limit_reclaim(loop) > 0)
            continue; /* out of descriptors: idle connections gave some back */
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            /* Out of descriptors or memory, nothing idle to close: retrying at once would spin on the
             * same error. Back off and let closing connections give some back. */
            uint64_t now = http_loop_now_ms();
            if (now >= loop->accept_error_logged_ms + 1000) {
                loop->accept_error_logged_ms = now;
                log_warn("loop %u: accept: %s; pausing accepts for %d ms (logged once a second)", loop->id,
                         strerror(errno), HTTP_LOOP_ACCEPT_RETRY_MS);
            }
            http_loop_set_accepting(loop, false);
            struct timeval tv = {0, HTTP_LOOP_ACCEPT_RETRY_MS * 1000};
            evtimer_add(loop->accept_retry_ev, &tv);
            return;
        }
        log_error("loop %u: accept: %s", loop->id, strerror(errno));
        return;
    }
}

static void http_loop_on_accept_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_loop *loop = arg;
    if (!loop->draining && loop->conn_count < http_loop_max_connections(loop))
        http_loop_set_accepting(loop, true);
}

static void http_loop_conn_link_head(http_loop *loop, http_conn *conn)
{
    conn->prev = NULL;
    conn->next = loop->conns;
    if (loop->conns)
        loop->conns->prev = conn;
    else
        loop->conns_tail = conn;
    loop->conns = conn;
}

static void http_loop_conn_unlink(http_loop *loop, http_conn *conn)
{
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        loop->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    else
        loop->conns_tail = conn->prev;
}

/* At the limit with accepting off, a chance that room can be made: try again (the accept callback
 * decides, and turns accepting off again if not). */
static void http_loop_maybe_resume_accepting(http_loop *loop)
{
    if (!loop->draining && !loop->accept_enabled && !evtimer_pending(loop->accept_retry_ev, NULL))
        http_loop_set_accepting(loop, true);
}

void http_loop_conn_added(http_loop *loop, http_conn *conn)
{
    http_loop_conn_link_head(loop, conn);
    loop->conn_count++;
    if (conn->over_limit)
        loop->over_limit_count++;
    HTTP_STAT_ADD(loop, connections_accepted, 1);
    HTTP_STAT_ADD(loop, connections_active, 1);
}

void http_loop_conn_removed(http_loop *loop, http_conn *conn)
{
    http_loop_conn_unlink(loop, conn);
    loop->conn_count--;
    if (conn->over_limit)
        loop->over_limit_count--;
    HTTP_STAT_ADD(loop, connections_active, (uint64_t)-1);
    if (loop->draining) {
        if (loop->conn_count == 0 && loop->bg_count == 0) /* background tasks finish too (http_background.c) */
            event_base_loopexit(loop->base, NULL);
    } else {
        http_loop_maybe_resume_accepting(loop); /* a slot is free again */
    }
}

void http_loop_conn_idle(http_loop *loop, http_conn *conn)
{
    if (loop->conns != conn) {
        http_loop_conn_unlink(loop, conn);
        http_loop_conn_link_head(loop, conn);
    }
    http_loop_maybe_resume_accepting(loop); /* it could be closed to make room */
}

/* ---- loop lag ---------------------------------------------------------------------------------- */

static uint64_t http_loop_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* A timer due every HTTP_LOOP_LAG_PROBE_MS: how late it actually runs is how long the loop was busy
 * with something else (asyncio's loop lag), recorded in a histogram for the metrics endpoint. */
static void http_loop_on_lag_probe(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_loop *loop = arg;
    uint64_t now = http_loop_now_ms();
    uint64_t lag = now > loop->lag_due_ms ? now - loop->lag_due_ms : 0;
    size_t bucket = 0;
    while (bucket < HTTP_LOOP_LAG_BUCKETS - 1 && lag >= HTTP_LOOP_LAG_BOUNDS_MS[bucket])
        bucket++;
    HTTP_STAT_ADD(loop, lag_buckets[bucket], 1);
    if (lag > loop->stats.lag_max_ms)
        __atomic_store_n(&loop->stats.lag_max_ms, lag, __ATOMIC_RELAXED);
    loop->lag_due_ms = now + HTTP_LOOP_LAG_PROBE_MS;
    struct timeval tv = {0, HTTP_LOOP_LAG_PROBE_MS * 1000};
    evtimer_add(loop->lag_ev, &tv);
}

/* ---- Date cache -------------------------------------------------------------------------------- */

static void http_loop_on_date(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_loop *loop = arg;
    http_date_format(time(NULL), loop->date);
    access_log_flush(&loop->access_log); /* lines are at most a second late */
    /* Coroutines in a long async_await_idle give their stacks back. */
    HTTP_STAT_ADD(loop, coro_given_back, async_coro_tick());
}

/* ---- posting from other threads ---------------------------------------------------------------- */

static void http_loop_on_post(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_loop *loop = arg;
    pthread_mutex_lock(&loop->post_lock);
    http_loop_post_item *item = loop->post_head;
    loop->post_head = loop->post_tail = NULL;
    pthread_mutex_unlock(&loop->post_lock);
    while (item) {
        http_loop_post_item *next = item->next;
        item->fn(item->arg);
        free(item);
        item = next;
    }
}

void http_loop_post(http_loop *loop, http_loop_fn fn, void *arg)
{
    http_loop_post_item *item = xmalloc(sizeof(*item));
    item->next = NULL;
    item->fn = fn;
    item->arg = arg;
    pthread_mutex_lock(&loop->post_lock);
    if (loop->post_tail)
        loop->post_tail->next = item;
    else
        loop->post_head = item;
    loop->post_tail = item;
    pthread_mutex_unlock(&loop->post_lock);
    /* Thread-safe with evthread_use_pthreads(): wakes the loop through libevent's notify fd. */
    event_active(loop->post_ev, EV_READ, 0);
}

/* ---- drain and stop ---------------------------------------------------------------------------- */

static void http_loop_close_listener(http_loop *loop)
{
    if (loop->listen_count == 0)
        return;
    http_loop_set_accepting(loop, false);
    evtimer_del(loop->accept_retry_ev);
    for (size_t i = 0; i < loop->listen_count; i++) {
        event_free(loop->listen_evs[i]);
        close(loop->listen_fds[i]);
    }
    loop->listen_count = 0;
}

static void http_loop_do_drain(void *arg)
{
    http_loop *loop = arg;
    if (loop->draining)
        return;
    loop->draining = true;
    /* Connections the kernel already completed are ours to answer: take them before closing the
     * listener, which would otherwise reset them. */
    for (size_t i = 0; i < loop->listen_count; i++) {
        for (;;) {
            struct sockaddr_storage peer;
            socklen_t peer_len = sizeof(peer);
            int fd = accept4(loop->listen_fds[i], (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0)
                break;
            http_conn_accept(loop, fd, (struct sockaddr *)&peer, false);
        }
    }
    http_loop_close_listener(loop);
    http_conn *conn = loop->conns;
    while (conn) {
        http_conn *next = conn->next; /* drain may free conn */
        http_conn_drain(conn);
        conn = next;
    }
    if (loop->conn_count == 0 && loop->bg_count == 0)
        event_base_loopexit(loop->base, NULL);
}

static void http_loop_do_stop(void *arg)
{
    http_loop *loop = arg;
    loop->draining = true;
    http_loop_close_listener(loop);
    while (loop->conns)
        http_conn_force_close(loop->conns);
    http_background_cancel_all(loop);
    event_base_loopexit(loop->base, NULL);
}

/* A libevent common timeout for `ms` (an O(1) queue). libevent has 256 per base; should reloads with
 * ever new durations use them up, the loop's own timeval in `fallback` makes it a plain heap timer. */
static const struct timeval *http_loop_common_timeout(http_loop *loop, unsigned ms, struct timeval *fallback)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    const struct timeval *common = event_base_init_common_timeout(loop->base, &tv);
    if (common)
        return common;
    *fallback = tv;
    return fallback;
}

typedef struct http_loop_settings_msg {
    http_loop *loop;
    const http_settings *settings;
} http_loop_settings_msg;

static void http_loop_init_timeouts(http_loop *loop)
{
    const http_settings *s = loop->settings;
    struct timeval *f = loop->tv_fallback;
    loop->tv_header = http_loop_common_timeout(loop, s->header_timeout_ms, &f[0]);
    loop->tv_body = http_loop_common_timeout(loop, s->body_timeout_ms, &f[1]);
    loop->tv_keepalive = http_loop_common_timeout(loop, s->keepalive_timeout_ms, &f[2]);
    loop->tv_write = http_loop_common_timeout(loop, s->write_timeout_ms, &f[3]);
    loop->tv_linger = http_loop_common_timeout(loop, s->linger_timeout_ms, &f[4]);
    loop->tv_request = http_loop_common_timeout(loop, s->request_timeout_ms, &f[5]);
}

static void http_loop_do_update_settings(void *arg)
{
    http_loop_settings_msg *msg = arg;
    http_loop *loop = msg->loop;
    loop->settings = msg->settings;
    /* Timers already armed keep their old duration; every timer armed from now on uses the new one. */
    http_loop_init_timeouts(loop);
    free(msg);
}

void http_loop_update_settings(http_loop *loop, const http_settings *settings)
{
    http_loop_settings_msg *msg = xmalloc(sizeof(*msg));
    msg->loop = loop;
    msg->settings = settings;
    http_loop_post(loop, http_loop_do_update_settings, msg);
}

void http_loop_drain(http_loop *loop) { http_loop_post(loop, http_loop_do_drain, loop); }

void http_loop_stop(http_loop *loop) { http_loop_post(loop, http_loop_do_stop, loop); }

/* ---- life cycle -------------------------------------------------------------------------------- */

http_loop *http_loop_new(const http_loop_options *opts)
{
    http_loop *loop = xcalloc(1, sizeof(*loop));
    loop->id = opts->id;
    loop->settings = opts->settings;
    loop->router = opts->router;
    loop->middleware = opts->middleware;
    if (opts->listen_fd >= 0)
        loop->listen_fds[loop->listen_count++] = opts->listen_fd;
    if (opts->has_unix)
        loop->listen_fds[loop->listen_count++] = opts->unix_fd;
    /* libevent's default clock, CLOCK_MONOTONIC_COARSE (a 4 ms tick), can fire a timer up to a tick
     * early. EVENT_BASE_FLAG_PRECISE_TIMER would fix that for every timer, but with epoll it arms a
     * timerfd with timerfd_settime before every epoll_wait: a system call per loop turn, which at low
     * concurrency is one per request. So the loops keep the coarse clock, and the timers that promise
     * never to end early check CLOCK_MONOTONIC when they fire and re-arm for the rest (async_timer.c
     * for sleeps and wait_for, sql_task.c for statement deadlines, redis.c for command timeouts); the
     * engine's own timeouts (header, body, keep-alive, write, request) count on the coarse clock
     * anyway. One thread per loop and no signals here: libevent's own locks stay uncontended. */
    loop->base = event_base_new();
    if (!loop->base) {
        free(loop);
        return NULL;
    }
    pthread_mutex_init(&loop->post_lock, NULL);
    loop->post_ev = event_new(loop->base, -1, 0, http_loop_on_post, loop);
    for (size_t i = 0; i < loop->listen_count; i++)
        loop->listen_evs[i] =
            event_new(loop->base, loop->listen_fds[i], EV_READ | EV_PERSIST, http_loop_on_accept, loop);
    loop->accept_retry_ev = evtimer_new(loop->base, http_loop_on_accept_retry, loop);
    loop->date_ev = event_new(loop->base, -1, EV_PERSIST, http_loop_on_date, loop);
    http_date_format(time(NULL), loop->date);
    struct timeval one_second = {1, 0};
    event_add(loop->date_ev, &one_second);
    loop->lag_ev = evtimer_new(loop->base, http_loop_on_lag_probe, loop);
    loop->lag_due_ms = http_loop_now_ms() + HTTP_LOOP_LAG_PROBE_MS;
    struct timeval probe = {0, HTTP_LOOP_LAG_PROBE_MS * 1000};
    evtimer_add(loop->lag_ev, &probe);
    buf_cache_init(&loop->cache, HTTP_LOOP_CACHED_BLOCKS);
    loop->route_stats = xcalloc(router_route_count(loop->router) + 1, sizeof(http_route_stats));
    unsigned char seed[4];
    if (getrandom(seed, sizeof(seed), 0) != sizeof(seed))
        memcpy(seed, &loop, sizeof(seed)); /* no entropy yet: the address still differs per loop */
    snprintf(loop->request_id_prefix, sizeof(loop->request_id_prefix), "%02x%02x%02x%02x", seed[0], seed[1],
             seed[2], seed[3]);
    http_loop_init_timeouts(loop);
    async_timeouts_init(&loop->timeouts, loop->base);
    http_loop_set_accepting(loop, true);
    return loop;
}

void http_loop_run(http_loop *loop) { event_base_dispatch(loop->base); }

/* Atomic because /metrics reads module state from another thread; set once, read many times. */
void *http_loop_local(const http_loop *loop, http_loop_slot slot)
{
    return __atomic_load_n(&loop->locals[slot], __ATOMIC_ACQUIRE);
}

void http_loop_set_local(http_loop *loop, http_loop_slot slot, void *value, void (*destroy)(void *value))
{
    loop->local_destroy[slot] = destroy;
    __atomic_store_n(&loop->locals[slot], value, __ATOMIC_RELEASE);
}

void http_loop_free(http_loop *loop)
{
    while (loop->conns)
        http_conn_force_close(loop->conns);
    http_background_cancel_all(loop);
    http_loop_close_listener(loop);
    http_loop_on_post(-1, 0, loop); /* run (and free) anything posted after the loop ended */
    /* Module state goes after the requests that used it, newest slot first. */
    for (int i = HTTP_LOOP_SLOT_COUNT - 1; i >= 0; i--)
        if (loop->local_destroy[i] && loop->locals[i])
            loop->local_destroy[i](loop->locals[i]);
    /* A destructor may close connections whose final callbacks were posted or made active: run them. */
    event_base_loop(loop->base, EVLOOP_NONBLOCK);
    http_loop_on_post(-1, 0, loop);
    event_free(loop->post_ev);
    event_free(loop->accept_retry_ev);
    event_free(loop->date_ev);
    event_free(loop->lag_ev);
    while (loop->free_slots) {
        http_req_slot *next = loop->free_slots->next_free;
        free(loop->free_slots);
        loop->free_slots = next;
    }
    buf_cache_free(&loop->cache);
    free(loop->route_stats);
    access_log_buf_free(&loop->access_log);
    event_base_free(loop->base);
    pthread_mutex_destroy(&loop->post_lock);
    free(loop);
}

bool http_loop_draining(const http_loop *loop) { return loop->draining; }

void http_loop_adopt(http_loop *loop, int fd) { http_conn_accept(loop, fd, NULL, false); }

struct event_base *http_loop_base(http_loop *loop) { return loop->base; }

unsigned http_loop_id(const http_loop *loop) { return loop->id; }

void http_loop_stats_read(const http_loop *loop, http_loop_stats *out)
{
    const uint64_t *src = (const uint64_t *)&loop->stats;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}
