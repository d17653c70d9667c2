/* http_client_test: unit tests for the HTTP client (lib/clients/http_client*.c). The response reader is fed
 * bytes directly (Content-Length, chunked, close-delimited, interim answers, malformed and oversized
 * responses); the client itself talks to a scripted upstream on a loopback socket served by the same
 * event_base the test drives, so every step — keep-alive reuse, the pool's limits and FIFO line, idle
 * timeouts, connect failures and timeouts, resets, the retry rules and every way a call can be
 * cancelled — runs in-process, bounded, and under ASan without a network. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <event2/dns.h>
#include <event2/dns_struct.h>
#include <event2/event.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "async.h"
#include "http_client_internal.h"

/* Every wait is bounded by this; on a healthy machine each takes milliseconds. */
#define TEST_WAIT_MS 5000u
/* The connect timeout is a plain libevent timer: libevent counts it on CLOCK_MONOTONIC_COARSE (4 ms
 * ticks, 10 ms on a 100 Hz kernel), from a time it may have cached when the loop pass began, so by
 * async_now_ms it can end the call a tick or so early (99 ms for 100 was seen). A lower bound proves
 * that the timeout, not something sooner, ended the call: it allows that much and no more. */
#define COARSE_EARLY_MS 25u

static struct event_base *base;
static async_scope *scope;
static http_client *client;
static http_client_upstream cfg;

/* ---- the scripted upstream --------------------------------------------------------------------- */

typedef enum up_action {
    UP_DEFAULT,      /* whatever up.action says */
    UP_ANSWER,       /* write up.response and keep the connection */
    UP_ANSWER_CLOSE, /* write up.response, then close */
    UP_RESET,        /* write up.reset_after bytes of up.response, then reset (RST) */
    UP_SILENT,       /* never answer */
    UP_DELAY,        /* answer after up.delay_ms */
    UP_DROP,         /* close without answering, as an upstream whose keep-alive timer just fired */
} up_action;

#define UP_MAX_PEERS 32
#define UP_MAX_REQUESTS 64

typedef struct up_peer {
    int fd;
    struct event *ev;
    struct event *delay_ev;
    char buf[8192];
    size_t len;
    bool eof;         /* the client closed or reset the connection */
} up_peer;

static struct {
    int listen_fd;
    unsigned port;
    struct event *accept_ev;
    int accepted;
    int requests;
    up_action action;
    up_action script[UP_MAX_REQUESTS]; /* per request, in arrival order; UP_DEFAULT: `action` */
    const char *response;
    size_t reset_after;
    unsigned delay_ms;
    char targets[UP_MAX_REQUESTS][64]; /* the request target of each request, in arrival order */
    char last_request[8192];
    up_peer peers[UP_MAX_PEERS];
    int npeers;
} up;

static void up_write(up_peer *peer, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(peer->fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return; /* the client is gone; the test will say what it expected */
        data += n;
        len -= (size_t)n;
    }
}

static void up_close(up_peer *peer, bool reset)
{
    if (peer->fd < 0)
        return;
    if (reset) {
        struct linger lg = {1, 0};
        setsockopt(peer->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    }
    event_del(peer->ev);
    if (peer->delay_ev)
        event_del(peer->delay_ev);
    close(peer->fd);
    peer->fd = -1;
}

static void up_answer(up_peer *peer) { up_write(peer, up.response, strlen(up.response)); }

static void up_on_delay(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    up_answer(arg);
}

/* A whole request is in peer->buf: head, then Content-Length bytes of body. Returns its length. */
static size_t up_request_len(const up_peer *peer)
{
    const char *end = memmem(peer->buf, peer->len, "\r\n\r\n", 4);
    if (!end)
        return 0;
    size_t head = (size_t)(end - peer->buf) + 4;
    size_t body = 0;
    const char *cl = strcasestr(peer->buf, "\r\nContent-Length: ");
    if (cl && cl < end)
        body = strtoul(cl + 18, NULL, 10);
    return peer->len >= head + body ? head + body : 0;
}

static void up_handle(up_peer *peer, size_t len)
{
    int n = up.requests++;
    memcpy(up.last_request, peer->buf, len);
    up.last_request[len] = '\0';
    if (n < UP_MAX_REQUESTS)
        sscanf(peer->buf, "%*s %63s", up.targets[n]);
    memmove(peer->buf, peer->buf + len, peer->len - len);
    peer->len -= len;
    up_action action = n < UP_MAX_REQUESTS && up.script[n] ? up.script[n] : up.action;
    switch (action) {
    case UP_DEFAULT:
    case UP_ANSWER:
        up_answer(peer);
        break;
    case UP_ANSWER_CLOSE:
        up_answer(peer);
        up_close(peer, false);
        break;
    case UP_RESET:
        up_write(peer, up.response, up.reset_after);
        up_close(peer, true);
        break;
    case UP_SILENT:
        break;
    case UP_DROP:
        up_close(peer, false);
        break;
    case UP_DELAY: {
        struct timeval tv = {0, (suseconds_t)up.delay_ms * 1000};
        evtimer_add(peer->delay_ev, &tv);
        break;
    }
    }
}

static void up_on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    up_peer *peer = arg;
    ssize_t n = recv(fd, peer->buf + peer->len, sizeof(peer->buf) - 1 - peer->len, 0);
    if (n <= 0) {
        if (n < 0 && errno == EAGAIN)
            return;
        peer->eof = true;
        up_close(peer, false);
        return;
    }
    peer->len += (size_t)n;
    size_t len;
    while (peer->fd >= 0 && (len = up_request_len(peer)) > 0)
        up_handle(peer, len);
}

static void up_on_accept(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0)
        return;
    cr_assert_lt(up.npeers, UP_MAX_PEERS);
    up_peer *peer = &up.peers[up.npeers++];
    peer->fd = c;
    peer->ev = event_new(base, c, EV_READ | EV_PERSIST, up_on_read, peer);
    peer->delay_ev = evtimer_new(base, up_on_delay, peer);
    event_add(peer->ev, NULL);
    up.accepted++;
}

static int test_listen(int backlog, unsigned *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(listen(fd, backlog), 0);
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    *port = ntohs(sin.sin_port);
    return fd;
}

static void run_for(unsigned ms);

/* A listener whose accept queue is full (backlog 0, one connection queued): the kernel drops further
 * SYNs, so a connect to it hangs until its timeout. */
static int test_listen_full(unsigned *port, int *filler)
{
    int fd = test_listen(0, port);
    *filler = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)*port)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connect(*filler, (struct sockaddr *)&sin, sizeof(sin));
    run_for(50);
    return fd;
}

static void up_start(void)
{
    memset(&up, 0, sizeof(up));
    up.listen_fd = test_listen(64, &up.port);
    up.accept_ev = event_new(base, up.listen_fd, EV_READ | EV_PERSIST, up_on_accept, NULL);
    event_add(up.accept_ev, NULL);
    up.action = UP_ANSWER;
    up.response = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
}

static void up_stop(void)
{
    for (int i = 0; i < up.npeers; i++) {
        up_close(&up.peers[i], false);
        event_free(up.peers[i].ev);
        event_free(up.peers[i].delay_ev);
    }
    event_free(up.accept_ev);
    close(up.listen_fd);
}

static int up_open_peers(void)
{
    int n = 0;
    for (int i = 0; i < up.npeers; i++)
        n += up.peers[i].fd >= 0;
    return n;
}

/* ---- driving the loop -------------------------------------------------------------------------- */

static bool guard_fired;

static void guard_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    guard_fired = true;
    event_base_loopbreak(base);
}

/* Runs the loop until *count reaches want or ms pass; returns whether it reached want. */
static bool run_until(const int *count, int want, unsigned ms)
{
    guard_fired = false;
    struct event *guard = evtimer_new(base, guard_cb, NULL);
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(guard, &tv);
    while (*count < want && !guard_fired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(guard);
    return *count >= want;
}

static void run_for(unsigned ms)
{
    static const int never = 0;
    run_until(&never, 1, ms);
}

static int done_count;

static void on_done(async_op *op, void *arg)
{
    (void)op;
    (void)arg;
    done_count++;
}

static async_op *start(const char *method, const char *path)
{
    return http_client_start(scope, client, &cfg, method, path, NULL, 0);
}

/* One call, awaited. */
static async_op *call(const char *method, const char *path)
{
    async_op *op = start(method, path);
    int before = done_count;
    async_op_then(op, on_done, NULL);
    cr_assert(run_until(&done_count, before + 1, TEST_WAIT_MS), "the call did not complete");
    return op;
}

static void assert_ok(const async_op *op, int status, const char *body)
{
    cr_assert_eq(op->status, ASYNC_OK, "call failed: %s", op->error ? op->error : "?");
    const http_client_response *resp = op->value;
    cr_assert_eq(resp->status, status);
    cr_assert_eq(resp->body_len, strlen(body));
    cr_assert_str_eq(resp->body, body);
}

static void assert_failed(const async_op *op, async_status status, const char *error)
{
    cr_assert_eq(op->status, status, "status %d, error %s", op->status, op->error ? op->error : "(none)");
    cr_assert_str_eq(op->error, error);
}

static http_client_stats stats(void)
{
    http_client_stats s;
    http_client_stats_get(client, &s);
    return s;
}

static http_client_pool *pool(void) { return client->pools; }

static void setup(void)
{
    base = event_base_new();
    scope = async_scope_new(base);
    client = http_client_new(base);
    up_start();
    memset(&cfg, 0, sizeof(cfg));
    strcpy(cfg.name, "test");
    strcpy(cfg.host, "127.0.0.1");
    cfg.port = up.port;
    cfg.max_connections = 4;
    cfg.max_idle = 4;
    cfg.idle_timeout_ms = 10000;
    cfg.connect_timeout_ms = 1000;
    cfg.timeout_ms = 2000;
    cfg.retries = 0;
    cfg.max_response_bytes = 1 << 20;
    done_count = 0;
}

static void teardown(void)
{
    async_scope_free(scope);
    http_client_free(client);
    up_stop();
    event_base_free(base);
}

/* ---- the reader ------------------------------------------------------------------------------ */

static http_client_reader reader;

static http_client_read_status feed_all(const char *bytes, size_t max_body, size_t *used)
{
    memset(&reader, 0, sizeof(reader));
    http_client_reader_start(&reader, max_body, false);
    size_t u = 0;
    http_client_read_status st = http_client_reader_feed(&reader, bytes, strlen(bytes), &u);
    if (used)
        *used = u;
    return st;
}

static void reader_done(void) { http_client_reader_release(&reader); }

TestSuite(http_client_reader, .fini = reader_done);

Test(http_client_reader, content_length_body)
{
    const char *r = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    size_t used;
    cr_assert_eq(feed_all(r, 100, &used), HTTP_CLIENT_READ_DONE);
    cr_assert_eq(used, strlen(r));
    cr_assert_eq(reader.status, 200);
    cr_assert_eq(reader.body_len, 5);
    cr_assert(memcmp(reader.body, "hello", 5) == 0);
    cr_assert(http_client_reader_keep_alive(&reader));
}

Test(http_client_reader, one_byte_at_a_time)
{
    const char *r = "HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nabc";
    memset(&reader, 0, sizeof(reader));
    http_client_reader_start(&reader, 100, false);
    size_t n = strlen(r), used;
    for (size_t i = 0; i + 1 < n; i++)
        cr_assert_eq(http_client_reader_feed(&reader, r + i, 1, &used), HTTP_CLIENT_READ_MORE, "at byte %zu", i);
    cr_assert_eq(http_client_reader_feed(&reader, r + n - 1, 1, &used), HTTP_CLIENT_READ_DONE);
    cr_assert_eq(used, 1);
    cr_assert_eq(reader.status, 201);
    cr_assert(memcmp(reader.body, "abc", 3) == 0);
}

Test(http_client_reader, chunked_body)
{
    const char *r = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\n"
                    "Trailer: x\r\n\r\n";
    cr_assert_eq(feed_all(r, 100, NULL), HTTP_CLIENT_READ_DONE);
    cr_assert_eq(reader.body_len, 11);
    cr_assert(memcmp(reader.body, "hello world", 11) == 0);
    cr_assert(http_client_reader_keep_alive(&reader));
}

Test(http_client_reader, close_delimited_body_ends_at_eof)
{
    cr_assert_eq(feed_all("HTTP/1.1 200 OK\r\n\r\nuntil the end", 100, NULL), HTTP_CLIENT_READ_MORE);
    cr_assert_eq(http_client_reader_eof(&reader), HTTP_CLIENT_READ_DONE);
    cr_assert_eq(reader.body_len, 13);
    cr_assert(memcmp(reader.body, "until the end", 13) == 0);
    cr_assert_not(http_client_reader_keep_alive(&reader), "a close-delimited body ends the connection");
}

Test(http_client_reader, no_body_statuses_and_empty_bodies)
{
    cr_assert_eq(feed_all("HTTP/1.1 204 No Content\r\n\r\n", 100, NULL), HTTP_CLIENT_READ_DONE);
    cr_assert_eq(reader.body_len, 0);
    http_client_reader_release(&reader);
    cr_assert_eq(feed_all("HTTP/1.1 304 Not Modified\r\n\r\n", 100, NULL), HTTP_CLIENT_READ_DONE);
    http_client_reader_release(&reader);
    cr_assert_eq(feed_all("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 100, NULL), HTTP_CLIENT_READ_DONE);
    cr_assert_eq(reader.body_len, 0);
}

Test(http_client_reader, head_response_has_no_body)
{
    memset(&reader, 0, sizeof(reader));
    http_client_reader_start(&reader, 100, true);
    const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n";
    size_t used;
    cr_assert_eq(http_client_reader_feed(&reader, r, strlen(r), &used), HTTP_CLIENT_READ_DONE);
    cr_assert_eq(reader.body_len, 0);
    cr_assert(http_client_reader_keep_alive(&reader));
}

Test(http_client_reader, interim_answers_are_skipped)
{
    const char *r = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
                    "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
    cr_assert_eq(feed_all(r, 100, NULL), HTTP_CLIENT_READ_DONE);
    cr_assert_eq(reader.status, 200);
    cr_assert_eq(reader.body_len, 2);
}

Test(http_client_reader, header_fields_are_kept_and_found_case_insensitively)
{
    const char *r = "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json \r\nX-Empty:\r\n"
                    "X-Two: a\r\nx-two: b\r\nContent-Length: 2\r\n\r\nok";
    /* A byte at a time: llhttp hands names and values over in pieces. */
    memset(&reader, 0, sizeof(reader));
    http_client_reader_start(&reader, 100, false);
    size_t n = strlen(r), used;
    for (size_t i = 0; i < n; i++)
        http_client_reader_feed(&reader, r + i, 1, &used);
    cr_assert(reader.done);
    cr_assert_eq(reader.field_count, 5, "the interim answer's fields are not the response's");
    cr_assert_str_eq(http_client_reader_header(&reader, "content-type"), "application/json", "blank cut");
    cr_assert_str_eq(http_client_reader_header(&reader, "X-EMPTY"), "");
    cr_assert_str_eq(http_client_reader_header(&reader, "X-Two"), "a", "the first of a repeated field");
    cr_assert_null(http_client_reader_header(&reader, "Link"));
    cr_assert_null(http_client_reader_header(&reader, "Content"));
}

Test(http_client_reader, too_many_fields_is_too_large)
{
    char r[8192] = "HTTP/1.1 200 OK\r\n";
    for (int i = 0; i < 256; i++)
        strcat(r, "a:\r\n");
    char ok[8192 + 64];
    snprintf(ok, sizeof(ok), "%sContent-Length: 0\r\n\r\n", r);
    cr_assert_eq(feed_all(ok, 100, NULL), HTTP_CLIENT_READ_FAILED, "257 fields");
    cr_assert_eq(reader.error, HTTP_CLIENT_ERR_RESPONSE_TOO_LARGE);
    http_client_reader_release(&reader);
    r[strlen(r) - 4] = '\0'; /* 255 "a:" fields and Content-Length */
    snprintf(ok, sizeof(ok), "%sContent-Length: 0\r\n\r\n", r);
    cr_assert_eq(feed_all(ok, 100, NULL), HTTP_CLIENT_READ_DONE, "256 fields");
    cr_assert_eq(reader.field_count, 256);
}

/* Found by fuzz_http_client: llhttp completes an empty field name without handing over a byte of it,
 * and the stored fields must stay name/value pairs then too. */
Test(http_client_reader, an_empty_field_name_is_stored_safely)
{
    const char *r = "HTTP/1.1 200 OK\r\n:Transfer-Encoding: x\r\n \r\n\r\n";
    http_client_read_status st = feed_all(r, 100, NULL);
    if (st != HTTP_CLIENT_READ_FAILED)
        st = http_client_reader_eof(&reader);
    for (size_t i = 0; i < reader.field_count; i++)
        cr_assert_leq(strlen(reader.head + reader.fields[2 * i + 1]), reader.head_len);
    (void)http_client_reader_header(&reader, "Transfer-Encoding");
}

Test(http_client_reader, keep_alive_follows_version_and_connection)
{
    cr_assert_eq(feed_all("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", 100, NULL),
                 HTTP_CLIENT_READ_DONE);
    cr_assert_not(http_client_reader_keep_alive(&reader));
    http_client_reader_release(&reader);
    cr_assert_eq(feed_all("HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n", 100, NULL), HTTP_CLIENT_READ_DONE);
    cr_assert_not(http_client_reader_keep_alive(&reader));
    http_client_reader_release(&reader);
    cr_assert_eq(feed_all("HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n", 100, NULL),
                 HTTP_CLIENT_READ_DONE);
    cr_assert(http_client_reader_keep_alive(&reader));
}

Test(http_client_reader, bytes_after_the_response_are_reported)
{
    const char *r = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n";
    size_t used;
    cr_assert_eq(feed_all(r, 100, &used), HTTP_CLIENT_READ_DONE);
    cr_assert_eq(used, strlen(r) - strlen("HTTP/1.1 200 OK\r\n"));
}

Test(http_client_reader, malformed_responses)
{
    const char *bad[] = {
        "HTTP/1.1 abc OK\r\n\r\n",
        "garbage\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
        "HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        "HTTP/1.1 200 OK\r\nBad Header\r\n\r\n",
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        cr_assert_eq(feed_all(bad[i], 100, NULL), HTTP_CLIENT_READ_FAILED, "accepted: %s", bad[i]);
        cr_assert_eq(reader.error, HTTP_CLIENT_ERR_MALFORMED_RESPONSE, "for %s", bad[i]);
        http_client_reader_release(&reader);
    }
}

Test(http_client_reader, too_large_is_refused_when_announced)
{
    /* Refused at the head: the 11 bytes are never read. */
    cr_assert_eq(feed_all("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n", 10, NULL), HTTP_CLIENT_READ_FAILED);
    cr_assert_eq(reader.error, HTTP_CLIENT_ERR_RESPONSE_TOO_LARGE);
    cr_assert_null(reader.body, "nothing may be allocated for a body that is refused");
    http_client_reader_release(&reader);
    cr_assert_eq(feed_all("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789", 10, NULL),
                 HTTP_CLIENT_READ_DONE, "exactly the limit is fine");
    http_client_reader_release(&reader);
    /* Chunked: the second chunk's size crosses the limit. */
    cr_assert_eq(feed_all("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\n012345\r\n5\r\n", 10, NULL),
                 HTTP_CLIENT_READ_FAILED);
    cr_assert_eq(reader.error, HTTP_CLIENT_ERR_RESPONSE_TOO_LARGE);
    http_client_reader_release(&reader);
    /* Close-delimited: the running total crosses it. */
    cr_assert_eq(feed_all("HTTP/1.1 200 OK\r\n\r\n01234567890", 10, NULL), HTTP_CLIENT_READ_FAILED);
    cr_assert_eq(reader.error, HTTP_CLIENT_ERR_RESPONSE_TOO_LARGE);
}

Test(http_client_reader, endless_head_is_refused)
{
    size_t n = HTTP_CLIENT_MAX_HEAD_BYTES + 100;
    char *r = malloc(n + 1);
    strcpy(r, "HTTP/1.1 200 OK\r\nX: ");
    memset(r + strlen(r), 'a', n - strlen(r));
    r[n] = '\0';
    cr_assert_eq(feed_all(r, 100, NULL), HTTP_CLIENT_READ_FAILED);
    cr_assert_eq(reader.error, HTTP_CLIENT_ERR_RESPONSE_TOO_LARGE);
    free(r);
}

Test(http_client_reader, eof_before_the_end_is_a_reset)
{
    cr_assert_eq(feed_all("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", 100, NULL), HTTP_CLIENT_READ_MORE);
    cr_assert_eq(http_client_reader_eof(&reader), HTTP_CLIENT_READ_FAILED);
    cr_assert_eq(reader.error, HTTP_CLIENT_ERR_CONNECTION_RESET);
    cr_assert(reader.got_bytes);
    http_client_reader_release(&reader);
    memset(&reader, 0, sizeof(reader));
    http_client_reader_start(&reader, 100, false);
    cr_assert_eq(http_client_reader_eof(&reader), HTTP_CLIENT_READ_FAILED);
    cr_assert_eq(reader.error, HTTP_CLIENT_ERR_CONNECTION_RESET);
    cr_assert_not(reader.got_bytes, "nothing arrived: a dead pooled connection looks like this");
}

/* ---- calls against the scripted upstream ------------------------------------------------------ */

TestSuite(http_client, .init = setup, .fini = teardown, .timeout = 30);

Test(http_client, get_with_content_length)
{
    up.response = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"a\":\"xyz\"}";
    async_op *op = call("GET", "/users/1?x=%20y");
    assert_ok(op, 200, "{\"a\":\"xyz\"}");
    char expect[128];
    snprintf(expect, sizeof(expect), "GET /users/1?x=%%20y HTTP/1.1\r\nHost: 127.0.0.1:%u\r\n", up.port);
    cr_assert(strncmp(up.last_request, expect, strlen(expect)) == 0, "request was: %s", up.last_request);
    cr_assert_null(strstr(up.last_request, "Content-Length"), "a GET without a body announces none");
    http_client_stats s = stats();
    cr_assert_eq(s.requests, 1);
    cr_assert_eq(s.responses, 1);
    cr_assert_eq(s.connections_opened, 1);
    cr_assert_eq(s.connections_reused, 0);
}

Test(http_client, post_sends_its_body)
{
    async_op *op = http_client_start(scope, client, &cfg, "POST", "/v1/echo", "{\"k\":1}", 7);
    async_op_then(op, on_done, NULL);
    cr_assert(run_until(&done_count, 1, TEST_WAIT_MS));
    assert_ok(op, 200, "ok");
    const char *tail = "\r\nContent-Length: 7\r\nContent-Type: application/json\r\n\r\n{\"k\":1}";
    cr_assert_not_null(strstr(up.last_request, tail),
                       "request was: %s", up.last_request);
}

Test(http_client, header_fields_go_out_and_come_back)
{
    up.response = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: \"v1\"\r\nContent-Length: 2\r\n\r\nok";
    http_client_header fields[] = {{"Authorization", "Bearer t"}, {"Accept", "text/plain"}};
    http_client_options o = {.headers = fields, .header_count = 2, .body = "x=1", .body_len = 3,
                             .content_type = "text/plain"};
    async_op *op = http_client_send(scope, client, &cfg, "PUT", "/r", &o);
    async_op_then(op, on_done, NULL);
    cr_assert(run_until(&done_count, 1, TEST_WAIT_MS));
    assert_ok(op, 200, "ok");
    cr_assert_not_null(strstr(up.last_request, "\r\nUser-Agent: apiary/"), "%s", up.last_request);
    const char *tail = "\r\nContent-Length: 3\r\nContent-Type: text/plain\r\nAuthorization: Bearer t\r\n"
                       "Accept: text/plain\r\n\r\nx=1";
    cr_assert_not_null(strstr(up.last_request, tail), "request was: %s", up.last_request);
    const http_client_response *resp = op->value;
    cr_assert_eq(resp->header_count, 3);
    cr_assert_str_eq(http_client_response_header(resp, "etag"), "\"v1\"");
    cr_assert_str_eq(http_client_response_header(resp, "CONTENT-TYPE"), "text/plain");
    cr_assert_null(http_client_response_header(resp, "Authorization"));
}

Test(http_client, chunked_and_status_pass_through)
{
    up.response = "HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbusy\r\n0\r\n\r\n";
    assert_ok(call("GET", "/a"), 503, "busy");
    assert_ok(call("GET", "/b"), 503, "busy");
    cr_assert_eq(up.accepted, 1, "a chunked response leaves the connection reusable");
}

Test(http_client, keep_alive_reuses_one_connection)
{
    for (int i = 0; i < 5; i++)
        assert_ok(call("GET", "/x"), 200, "ok");
    cr_assert_eq(up.accepted, 1);
    http_client_stats s = stats();
    cr_assert_eq(s.connections_opened, 1);
    cr_assert_eq(s.connections_reused, 4);
    cr_assert_eq(s.connections_open, 1);
    cr_assert_eq(pool()->idle_count, 1);
    cr_assert_eq(pool()->total, 1);
}

Test(http_client, close_delimited_and_connection_close_are_not_reused)
{
    up.response = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nbye";
    up.action = UP_ANSWER_CLOSE;
    assert_ok(call("GET", "/a"), 200, "bye");
    assert_ok(call("GET", "/b"), 200, "bye");
    cr_assert_eq(up.accepted, 2);
    http_client_stats s = stats();
    cr_assert_eq(s.connections_reused, 0);
    cr_assert_eq(s.connections_open, 0);
    cr_assert_eq(s.stale_retries, 0);
}

Test(http_client, pool_caps_connections_and_serves_the_line_in_order)
{
    cfg.max_connections = 1;
    cfg.max_idle = 1;
    up.action = UP_DELAY;
    up.delay_ms = 10;
    char paths[5][8];
    async_op *ops[5];
    for (int i = 0; i < 5; i++) {
        snprintf(paths[i], sizeof(paths[i]), "/%d", i);
        ops[i] = start("GET", paths[i]);
        async_op_then(ops[i], on_done, NULL);
    }
    cr_assert_eq(pool()->total, 1);
    cr_assert_not_null(pool()->wait_head, "four calls wait in line");
    cr_assert(run_until(&done_count, 5, TEST_WAIT_MS));
    for (int i = 0; i < 5; i++) {
        assert_ok(ops[i], 200, "ok");
        cr_assert_str_eq(up.targets[i], paths[i], "the line is FIFO");
    }
    cr_assert_eq(up.accepted, 1);
    http_client_stats s = stats();
    cr_assert_eq(s.pool_waits, 4);
    cr_assert_eq(s.connections_reused, 0, "a waiter is handed the connection, it does not reuse an idle one");
}

Test(http_client, concurrent_calls_open_up_to_max_connections)
{
    cfg.max_connections = 3;
    cfg.max_idle = 1;
    up.action = UP_DELAY;
    up.delay_ms = 20;
    for (int i = 0; i < 6; i++)
        async_op_then(start("GET", "/x"), on_done, NULL);
    cr_assert(run_until(&done_count, 6, TEST_WAIT_MS));
    cr_assert_eq(up.accepted, 3);
    http_client_stats s = stats();
    cr_assert_eq(s.connections_opened, 3);
    cr_assert_eq(s.pool_waits, 3);
    /* Only max_idle of them are kept once everything is answered. */
    cr_assert_eq(pool()->idle_count, 1);
    cr_assert_eq(pool()->total, 1);
    cr_assert_eq(s.connections_open, 1);
    run_for(50);
    cr_assert_eq(up_open_peers(), 1, "the two connections over max_idle are closed");
}

Test(http_client, idle_connection_expires)
{
    cfg.idle_timeout_ms = 30;
    assert_ok(call("GET", "/x"), 200, "ok");
    cr_assert_eq(pool()->idle_count, 1);
    run_for(200);
    http_client_stats s = stats();
    cr_assert_eq(s.idle_expired, 1);
    cr_assert_eq(s.connections_open, 0);
    cr_assert_eq(pool()->total, 0);
    cr_assert(up.peers[0].eof, "the upstream saw the connection closed");
}

Test(http_client, idle_connection_closed_by_the_upstream_is_dropped)
{
    assert_ok(call("GET", "/x"), 200, "ok");
    up_close(&up.peers[0], false);
    run_for(50);
    http_client_stats s = stats();
    cr_assert_eq(s.idle_closed, 1);
    cr_assert_eq(pool()->total, 0);
    assert_ok(call("GET", "/y"), 200, "ok");
    cr_assert_eq(up.accepted, 2);
    cr_assert_eq(stats().stale_retries, 0);
}

/* The upstream drops the pooled connection just as the next request arrives on it (its keep-alive
 * timer fired): the call finds it dead before any response byte and is moved to a fresh connection
 * once, although retries is 0. */
Test(http_client, dead_pooled_connection_is_retried_once_on_a_fresh_one)
{
    up.script[1] = UP_DROP;
    assert_ok(call("GET", "/first"), 200, "ok");
    assert_ok(call("GET", "/second"), 200, "ok");
    http_client_stats s = stats();
    cr_assert_eq(s.connections_reused, 1, "the second call did take the pooled connection");
    cr_assert_eq(s.stale_retries, 1);
    cr_assert_eq(s.retries, 0);
    cr_assert_eq(up.accepted, 2);
    cr_assert_str_eq(up.targets[1], "/second");
    cr_assert_str_eq(up.targets[2], "/second");
    for (int i = 0; i < HTTP_CLIENT_ERR_COUNT; i++)
        cr_assert_eq(s.errors[i], 0, "error kind %d counted", i);
}

Test(http_client, a_dead_fresh_connection_is_not_retried)
{
    up.script[0] = UP_DROP;
    assert_failed(call("GET", "/x"), ASYNC_FAILED, "connection_reset");
    cr_assert_eq(stats().stale_retries, 0, "a new connection that fails is the upstream's failure");
    cr_assert_eq(up.accepted, 1);
}

Test(http_client, the_stale_retry_happens_only_once)
{
    up.script[1] = UP_DROP;
    up.script[2] = UP_DROP;
    assert_ok(call("GET", "/a"), 200, "ok");
    assert_failed(call("GET", "/b"), ASYNC_FAILED, "connection_reset");
    http_client_stats s = stats();
    cr_assert_eq(s.stale_retries, 1);
    cr_assert_eq(s.errors[HTTP_CLIENT_ERR_CONNECTION_RESET], 1);
    cr_assert_eq(up.requests, 3);
}

Test(http_client, connection_refused_is_connect_failed)
{
    unsigned port;
    int fd = test_listen(1, &port);
    close(fd); /* nothing listens there any more */
    cfg.port = port;
    assert_failed(call("GET", "/x"), ASYNC_FAILED, "connect_failed");
    http_client_stats s = stats();
    cr_assert_eq(s.errors[HTTP_CLIENT_ERR_CONNECT_FAILED], 1);
    cr_assert_eq(s.connections_open, 0);
    cr_assert_eq(pool()->total, 0);
}

Test(http_client, connect_timeout)
{
    unsigned port;
    int filler;
    int fd = test_listen_full(&port, &filler);
    cfg.port = port;
    cfg.connect_timeout_ms = 100;
    async_op *op = call("GET", "/x");
    assert_failed(op, ASYNC_FAILED, "connect_timeout");
    cr_assert_geq(async_op_elapsed_ms(op), 100 - COARSE_EARLY_MS, "ended after %llu ms",
                  (unsigned long long)async_op_elapsed_ms(op));
    cr_assert_eq(stats().errors[HTTP_CLIENT_ERR_CONNECT_TIMEOUT], 1);
    cr_assert_eq(pool()->total, 0);
    close(filler);
    close(fd);
}

Test(http_client, cancelled_while_connecting_leaves_the_connection_to_the_pool)
{
    unsigned port;
    int filler;
    int fd = test_listen_full(&port, &filler);
    cfg.port = port;
    cfg.connect_timeout_ms = 100;
    async_op *op = start("GET", "/x");
    async_op_then(op, on_done, NULL);
    run_for(20);
    async_op_cancel(op);
    cr_assert_eq(pool()->total, 1, "the connect goes on for whoever needs it next");
    cr_assert_null(pool()->conns->dialer);
    run_for(200);
    cr_assert_eq(done_count, 0, "a cancelled call never completes");
    cr_assert_eq(pool()->total, 0, "the connect timed out with nobody waiting");
    http_client_stats s = stats();
    cr_assert_eq(s.cancelled, 1);
    cr_assert_eq(s.errors[HTTP_CLIENT_ERR_CONNECT_TIMEOUT], 0, "nobody was failed");
    close(filler);
    close(fd);
}

Test(http_client, reset_mid_body_is_connection_reset)
{
    up.response = "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npartial";
    up.action = UP_RESET;
    up.reset_after = strlen(up.response);
    assert_failed(call("GET", "/x"), ASYNC_FAILED, "connection_reset");
    http_client_stats s = stats();
    cr_assert_eq(s.errors[HTTP_CLIENT_ERR_CONNECTION_RESET], 1);
    cr_assert_eq(s.stale_retries, 0, "bytes had arrived: not a dead pooled connection");
    cr_assert_eq(pool()->total, 0);
}

Test(http_client, malformed_response_closes_the_connection)
{
    up.response = "HTTP/1.1 2x0 Nope\r\n\r\n";
    assert_failed(call("GET", "/x"), ASYNC_FAILED, "malformed_response");
    run_for(30);
    cr_assert_eq(pool()->total, 0);
    cr_assert(up.peers[0].eof);
    cr_assert_eq(stats().errors[HTTP_CLIENT_ERR_MALFORMED_RESPONSE], 1);
}

Test(http_client, response_too_large)
{
    cfg.max_response_bytes = 4;
    up.response = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
    assert_failed(call("GET", "/x"), ASYNC_FAILED, "response_too_large");
    cr_assert_eq(pool()->total, 0);
    up.response = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nhell";
    assert_ok(call("GET", "/x"), 200, "hell");
}

Test(http_client, timeout_closes_the_connection)
{
    cfg.timeout_ms = 100;
    up.action = UP_SILENT;
    async_op *op = call("GET", "/slow");
    assert_failed(op, ASYNC_TIMEOUT, "timeout");
    cr_assert_geq(async_op_elapsed_ms(op), 100);
    run_for(30);
    cr_assert(up.peers[0].eof, "the upstream saw the connection closed");
    http_client_stats s = stats();
    cr_assert_eq(s.errors[HTTP_CLIENT_ERR_TIMEOUT], 1);
    cr_assert_eq(s.cancelled, 0);
    cr_assert_eq(s.connections_open, 0);
}

Test(http_client, retries_only_idempotent_requests)
{
    cfg.retries = 1;
    up.script[0] = UP_RESET; /* the first connection is reset without an answer */
    up.reset_after = 0;
    assert_ok(call("GET", "/x"), 200, "ok");
    http_client_stats s = stats();
    cr_assert_eq(s.retries, 1);
    cr_assert_eq(up.accepted, 2);

    up.script[2] = UP_RESET;
    async_op *op = http_client_start(scope, client, &cfg, "POST", "/x", "{}", 2);
    async_op_then(op, on_done, NULL);
    cr_assert(run_until(&done_count, 2, TEST_WAIT_MS));
    /* The POST got the pooled connection, was sent, and the reset came before any response byte. A
     * POST is not retried then: the upstream may have acted on it. */
    assert_failed(op, ASYNC_FAILED, "connection_reset");
    cr_assert_eq(stats().retries, 1);
}

Test(http_client, retries_are_off_by_default)
{
    up.script[0] = UP_RESET;
    up.reset_after = 0;
    assert_failed(call("GET", "/x"), ASYNC_FAILED, "connection_reset");
    cr_assert_eq(stats().retries, 0);
    cr_assert_eq(up.accepted, 1);
}

Test(http_client, cancelling_a_waiting_call_leaves_the_line)
{
    cfg.max_connections = 1;
    up.action = UP_DELAY;
    up.delay_ms = 30;
    async_op *first = start("GET", "/1");
    async_op *second = start("GET", "/2");
    async_op *third = start("GET", "/3");
    async_op_then(first, on_done, NULL);
    async_op_then(third, on_done, NULL);
    async_op_cancel(second);
    cr_assert(run_until(&done_count, 2, TEST_WAIT_MS));
    assert_ok(first, 200, "ok");
    assert_ok(third, 200, "ok");
    cr_assert_eq(up.requests, 2, "the cancelled call was never sent");
    cr_assert_str_eq(up.targets[1], "/3");
    cr_assert_eq(stats().cancelled, 1);
    cr_assert_null(pool()->wait_head);
}

Test(http_client, ending_the_scope_mid_request_closes_the_connection)
{
    up.action = UP_SILENT;
    async_op *op = start("GET", "/x");
    async_op_then(op, on_done, NULL);
    cr_assert(run_until(&up.requests, 1, TEST_WAIT_MS));
    async_scope_free(scope); /* the request ended (client gone, deadline): everything is cancelled */
    scope = async_scope_new(base);
    cr_assert_eq(pool()->total, 0, "a connection mid-exchange cannot be reused");
    run_for(30);
    cr_assert(up.peers[0].eof, "the upstream saw the connection closed");
    cr_assert_eq(done_count, 0);
    cr_assert_eq(stats().cancelled, 1);
    /* The pool is fine afterwards. */
    up.action = UP_ANSWER;
    assert_ok(call("GET", "/y"), 200, "ok");
}

Test(http_client, ending_the_scope_with_many_calls_in_every_state)
{
    cfg.max_connections = 2;
    up.action = UP_SILENT;
    for (int i = 0; i < 6; i++)
        async_op_then(start("GET", "/x"), on_done, NULL);
    cr_assert(run_until(&up.requests, 2, TEST_WAIT_MS));
    async_scope_free(scope);
    scope = async_scope_new(base);
    cr_assert_eq(pool()->total, 0);
    cr_assert_null(pool()->wait_head);
    http_client_stats s = stats();
    cr_assert_eq(s.cancelled, 6);
    cr_assert_eq(s.connections_open, 0);
    run_for(30);
    cr_assert_eq(done_count, 0);
    cr_assert_eq(up_open_peers(), 0);
    /* The calls that waited left the line with their scope before a freed slot could open a
     * connection for any of them. */
    cr_assert_eq(stats().connections_opened, 2);
    cr_assert_eq(up.accepted, 2);
}

/* A slot freed by a closed connection is handed to the line from the loop; a call that arrives in
 * between must not overtake the ones already waiting. */
Test(http_client, a_newcomer_does_not_overtake_the_line)
{
    cfg.max_connections = 1;
    up.script[0] = UP_SILENT;
    async_op *a = start("GET", "/A");
    async_op_then(start("GET", "/B"), on_done, NULL);
    cr_assert(run_until(&up.requests, 1, TEST_WAIT_MS));
    async_op_cancel(a); /* its connection closes; the slot goes to the line from the loop */
    cr_assert_eq(pool()->total, 0);
    async_op_then(start("GET", "/C"), on_done, NULL);
    cr_assert_eq(pool()->total, 0, "C queued behind B instead of opening the free slot");
    cr_assert(run_until(&done_count, 2, TEST_WAIT_MS));
    cr_assert_str_eq(up.targets[1], "/B");
    cr_assert_str_eq(up.targets[2], "/C");
}

Test(http_client, an_outer_wait_for_cancels_the_call)
{
    up.action = UP_SILENT;
    async_op *op = async_wait_for(scope, start("GET", "/x"), 50);
    async_op_then(op, on_done, NULL);
    cr_assert(run_until(&done_count, 1, TEST_WAIT_MS));
    assert_failed(op, ASYNC_TIMEOUT, "timeout");
    http_client_stats s = stats();
    cr_assert_eq(s.cancelled, 1, "the caller's own timeout is a cancel, not the upstream's timeout");
    cr_assert_eq(s.errors[HTTP_CLIENT_ERR_TIMEOUT], 0);
    cr_assert_eq(pool()->total, 0);
}

Test(http_client, invalid_requests_send_nothing)
{
    const char *paths[] = {"", "x", "http://evil/", "/a b", "/a\r\nHost: evil", "/a#frag", "/\x7f", "/\xc3\xa9"};
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
        assert_failed(call("GET", paths[i]), ASYNC_FAILED, "invalid_request");
    assert_failed(call("get", "/x"), ASYNC_FAILED, "invalid_request");
    assert_failed(call("G T", "/x"), ASYNC_FAILED, "invalid_request");
    cr_assert_eq(up.accepted, 0);
    cr_assert_eq(stats().errors[HTTP_CLIENT_ERR_INVALID_REQUEST], 10);
    cr_assert(http_client_path_valid("//evil.example/x", 16), "a path, sent to the configured upstream");
    cr_assert(http_client_path_valid("/a?b=%20&c=d", 12));
}

Test(http_client, host_name_resolves_through_the_hosts_file)
{
    strcpy(cfg.host, "localhost");
    assert_ok(call("GET", "/x"), 200, "ok");
    cr_assert_not_null(strstr(up.last_request, "\r\nHost: localhost:"));
    assert_ok(call("GET", "/y"), 200, "ok");
    cr_assert_eq(up.accepted, 1);
}

Test(http_client, freeing_the_client_with_idle_and_connecting_connections)
{
    assert_ok(call("GET", "/x"), 200, "ok");
    unsigned port;
    int filler;
    int fd = test_listen_full(&port, &filler);
    static http_client_upstream other;
    other = cfg;
    strcpy(other.name, "other");
    other.port = port;
    async_op *op = http_client_start(scope, client, &other, "GET", "/x", NULL, 0);
    async_op_cancel(op);
    cr_assert_eq(client->pools->total, 1, "still connecting, for nobody");
    /* teardown frees the client now: ASan checks that nothing leaks or is touched afterwards */
    close(filler);
    close(fd);
}

/* ---- host names through evdns, against a nameserver on loopback -------------------------------- */

typedef enum dns_mode { DNS_ANSWER, DNS_NXDOMAIN, DNS_SILENT } dns_mode;

static struct evdns_server_port *dns_server;
static int dns_fd;
static dns_mode dns_now;
static int dns_queries;

static void dns_on_request(struct evdns_server_request *req, void *arg)
{
    (void)arg;
    dns_queries++;
    if (dns_now == DNS_SILENT) {
        evdns_server_request_drop(req);
        return;
    }
    if (dns_now == DNS_NXDOMAIN) {
        evdns_server_request_respond(req, DNS_ERR_NOTEXIST);
        return;
    }
    for (int i = 0; i < req->nquestions; i++) {
        if (req->questions[i]->type == EVDNS_TYPE_A) {
            uint32_t loopback = htonl(INADDR_LOOPBACK);
            evdns_server_request_add_a_reply(req, req->questions[i]->name, 1, &loopback, 60);
        }
    }
    evdns_server_request_respond(req, 0); /* AAAA: no address, no error */
}

/* Points the client's resolver at a nameserver of our own on loopback, and names the upstream by a
 * host name only that nameserver knows. */
static void dns_start(dns_mode mode)
{
    dns_now = mode;
    dns_queries = 0;
    dns_fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    cr_assert_eq(bind(dns_fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    socklen_t len = sizeof(sin);
    getsockname(dns_fd, (struct sockaddr *)&sin, &len);
    dns_server = evdns_add_server_port_with_base(base, dns_fd, 0, dns_on_request, NULL);
    client->dns = evdns_base_new(base, EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    char ns[32];
    snprintf(ns, sizeof(ns), "127.0.0.1:%u", ntohs(sin.sin_port));
    cr_assert_eq(evdns_base_nameserver_ip_add(client->dns, ns), 0);
    strcpy(cfg.host, "upstream.test");
}

static void dns_stop(void)
{
    evdns_close_server_port(dns_server); /* closes dns_fd too */
}

Test(http_client, host_name_resolved_by_a_nameserver)
{
    dns_start(DNS_ANSWER);
    assert_ok(call("GET", "/x"), 200, "ok");
    cr_assert_geq(dns_queries, 1);
    cr_assert_not_null(strstr(up.last_request, "\r\nHost: upstream.test:"));
    cr_assert_eq(client->lookups_pending, 0);
    dns_stop();
    cr_assert_eq(fcntl(dns_fd, F_GETFD), -1, "the server port closed its socket");
}

Test(http_client, unknown_host_name_is_dns_failed)
{
    dns_start(DNS_NXDOMAIN);
    assert_failed(call("GET", "/x"), ASYNC_FAILED, "dns_failed");
    cr_assert_eq(stats().errors[HTTP_CLIENT_ERR_DNS_FAILED], 1);
    cr_assert_eq(pool()->total, 0);
    cr_assert_eq(up.accepted, 0);
    dns_stop();
}

Test(http_client, connect_timeout_covers_a_silent_nameserver)
{
    dns_start(DNS_SILENT);
    cfg.connect_timeout_ms = 100;
    async_op *op = call("GET", "/x");
    assert_failed(op, ASYNC_FAILED, "connect_timeout");
    cr_assert_geq(async_op_elapsed_ms(op), 100 - COARSE_EARLY_MS, "ended after %llu ms",
                  (unsigned long long)async_op_elapsed_ms(op));
    run_for(20);
    cr_assert_eq(client->lookups_pending, 0, "the cancelled look-up called back and was freed");
    cr_assert_eq(pool()->total, 0);
    dns_stop();
}

Test(http_client, freeing_the_client_during_a_lookup)
{
    dns_start(DNS_SILENT);
    async_op_then(start("GET", "/x"), on_done, NULL);
    cr_assert(run_until(&dns_queries, 1, TEST_WAIT_MS));
    cr_assert_eq(client->lookups_pending, 1);
    async_scope_free(scope); /* the caller leaves: the connection goes on resolving, for nobody */
    scope = async_scope_new(base);
    cr_assert_eq(pool()->total, 1);
    /* Freeing the client cancels the look-up and waits for its callback before freeing the resolver;
     * ASan reports it if anything is touched after being freed. */
    http_client_free(client);
    client = http_client_new(base);
    cr_assert_eq(done_count, 0);
    dns_stop();
}

/* An upstream's body parsed under limits: what passes them is parsed, anything past them or not
 * JSON is NULL, and a raw NUL does not cut the text short. */
Test(http_client_response, json_within_limits_only)
{
    http_client_response ok = {.status = 200, .body = "{\"price_cents\":250,\"x\":[1,2]}", .body_len = 29};
    json_t *v = http_client_response_json(&ok, 8, 64);
    cr_assert(json_is_object(v));
    cr_expect_eq(json_integer_value(json_object_get(v, "price_cents")), 250);
    json_decref(v);
    cr_expect_null(http_client_response_json(&ok, 8, 4), "5 values, limit 4");
    cr_expect_null(http_client_response_json(&ok, 1, 64), "nests 2 deep, limit 1");
    http_client_response nul = {.status = 200, .body = "1\0junk", .body_len = 6};
    http_client_response text = {.status = 200, .body = "plain", .body_len = 5};
    http_client_response empty = {.status = 200, .body = "", .body_len = 0};
    cr_expect_null(http_client_response_json(&nul, 8, 64));
    cr_expect_null(http_client_response_json(&text, 8, 64));
    cr_expect_null(http_client_response_json(&empty, 8, 64));
}

/* The Host field leaves out the scheme's own port (some APIs sign or route by its exact value). */
Test(http_client, host_field_leaves_out_the_default_port)
{
    static http_client_upstream u[4];
    const struct { const char *host; unsigned port; bool tls; const char *want; } cases[] = {
        {"api.example.com", 443, true, "api.example.com"}, {"api.example.com", 80, false, "api.example.com"},
        {"api.example.com", 80, true, "api.example.com:80"}, {"::1", 8443, true, "[::1]:8443"}};
    for (size_t i = 0; i < 4; i++) {
        u[i] = cfg;
        strcpy(u[i].host, cases[i].host);
        u[i].port = cases[i].port;
        u[i].tls = cases[i].tls;
        cr_assert_str_eq(http_client_pool_get(client, &u[i])->host_header, cases[i].want);
    }
}
