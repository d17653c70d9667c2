/* http_conn_fixture: a real loop and one connection driven in-process through a socketpair, shared by
 * the connection tests (http_conn_test.c) and the framing tests (http_framing_test.c). Each includes
 * it once; it becomes part of that test executable. */
#ifndef APIARY_HTTP_CONN_FIXTURE_H
#define APIARY_HTTP_CONN_FIXTURE_H

#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Not every test file uses every handler and helper. */
#pragma GCC diagnostic ignored "-Wunused-function"

#include "http_internal.h"

static http_settings settings;
static router *routes;
static http_loop *loop;
static int client_fd;
static int cancel_calls;
static size_t last_body_len;
static unsigned long last_body_sum;

static void handler_hello(http_request *req) { http_respond_json(req, 200, json_pack("{s:s}", "m", "hi")); }

static void handler_body(http_request *req)
{
    last_body_len = req->body_len;
    last_body_sum = 0;
    for (size_t i = 0; i < req->body_len; i++)
        last_body_sum += (unsigned char)req->body[i];
    http_respond_json(req, 200, json_pack("{s:I}", "len", (json_int_t)req->body_len));
}

static void handler_params(http_request *req)
{
    const char *q = http_request_query(req, "q");
    http_respond_json(req, 200, json_pack("{s:s,s:s?}", "key", http_request_param(req, "key"), "q", q));
}

/* Answers 20 ms later from a timer, as an async handler does. */
typedef struct later {
    struct event *ev;
    http_request *req;
} later;

static void later_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    later *l = arg;
    event_free(l->ev);
    http_request *req = l->req;
    free(l);
    http_respond_json(req, 200, json_pack("{s:s}", "m", "later"));
}

static void later_cancel(http_request *req, void *arg)
{
    (void)req;
    later *l = arg;
    cancel_calls++;
    event_free(l->ev);
    free(l);
}

static void handler_async(http_request *req)
{
    later *l = malloc(sizeof(*l));
    l->req = req;
    l->ev = evtimer_new(http_loop_base(http_request_loop(req)), later_fire, l);
    struct timeval tv = {0, 20000};
    evtimer_add(l->ev, &tv);
    http_request_on_cancel(req, later_cancel, l);
}

/* Keeps the loop busy for `ms`, as a CPU-heavy handler would. */
static void busy_wait_ms(unsigned ms)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    do
        clock_gettime(CLOCK_MONOTONIC, &now);
    while ((now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000 < ms);
}

static void handler_blocking(http_request *req)
{
    busy_wait_ms(150);
    http_respond_json(req, 200, json_pack("{s:s}", "m", "slow"));
}

static void blocking_continuation(async_op *op, void *arg)
{
    (void)op;
    busy_wait_ms(60);
    http_respond_json(arg, 200, json_pack("{s:s}", "m", "slow-async"));
}

static void handler_blocking_async(http_request *req)
{
    async_scope *scope = http_request_async(req);
    if (scope)
        async_op_then(async_sleep(scope, 1), blocking_continuation, req);
}

/* A misbehaving cancel callback: it answers, although the request is being ended for it. */
static void answering_cancel(http_request *req, void *arg)
{
    (void)arg;
    http_respond_json(req, 200, json_pack("{s:s}", "m", "from-cancel"));
}

static void handler_waits_forever(http_request *req) { http_request_on_cancel(req, answering_cancel, NULL); }

static void handler_async_sleep(http_request *req)
{
    async_scope *scope = http_request_async(req);
    if (scope)
        async_op_then(async_sleep(scope, 10000), blocking_continuation, req);
}

/* Coroutine handlers (ROUTE_CORO): one that answers after an await, and a careless one that answers
 * whatever its await returned, also after its request ended (504): that answer must be dropped quietly. */
static int coro_resumed;

static void handler_coro(http_request *req)
{
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    async_op *op = async_await(async_sleep(scope, 20));
    http_respond_json(req, 200, json_pack("{s:s,s:b}", "m", "coro", "ok", op->status == ASYNC_OK));
}

static void handler_coro_careless(http_request *req)
{
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    async_op *op = async_await(async_sleep(scope, 10000));
    coro_resumed++;
    http_respond_json(req, 200, json_pack("{s:s,s:i}", "m", "late", "status", (int)op->status));
}

/* A streamed body (ROUTE_BODY_STREAM) read in continuations, recording whether the connection was
 * reading: at each piece handed over (a handler that keeps up never sees reading paused), and, for
 * /upload-slow, after each 10 ms wait between pieces (a handler that falls behind does). */
typedef struct upload_reader {
    http_request *req;
    bool slow;
    size_t bytes, pieces;
    unsigned long sum;
} upload_reader;

static size_t upload_pieces_paused; /* pieces handed over while reading was paused */
static size_t upload_waits_paused;  /* /upload-slow: waits after which reading was paused */

static void upload_piece(async_op *op, void *arg);

static void upload_read_next(async_op *op, void *arg)
{
    upload_reader *u = arg;
    if (op->status != ASYNC_OK)
        return;
    if (!u->req->_conn->reading)
        upload_waits_paused++;
    async_op_then(http_body_read(u->req), upload_piece, u);
}

static void upload_piece(async_op *op, void *arg)
{
    upload_reader *u = arg;
    if (op->status != ASYNC_OK)
        return; /* the request is gone */
    const http_body_chunk *c = op->value;
    if (c->len == 0) {
        last_body_len = u->bytes;
        last_body_sum = u->sum;
        http_respond_json(u->req, 200, json_pack("{s:I}", "len", (json_int_t)u->bytes));
        return;
    }
    if (!u->req->_conn->reading)
        upload_pieces_paused++;
    u->pieces++;
    u->bytes += c->len;
    for (size_t i = 0; i < c->len; i++)
        u->sum += (unsigned char)c->data[i];
    if (u->slow)
        async_op_then(async_sleep(http_request_async(u->req), 10), upload_read_next, u);
    else
        async_op_then(http_body_read(u->req), upload_piece, u);
}

static void handler_upload(http_request *req)
{
    upload_reader *u = async_scope_alloc(http_request_async(req), sizeof(*u));
    memset(u, 0, sizeof(*u));
    u->req = req;
    u->slow = strcmp(req->path, "/upload-slow") == 0;
    async_op_then(http_body_read(req), upload_piece, u);
}

static void setup(void)
{
    http_settings_defaults(&settings);
    settings.max_headers = 8;
    settings.max_url_bytes = 256;
    settings.max_header_bytes = 16384;
    settings.max_body_bytes = 200000;
    settings.max_connections = 16;
    settings.header_timeout_ms = 300;
    settings.linger_timeout_ms = 50;
    settings.slow_callback_ms = 40;
    settings.max_async_per_loop = 2;
    settings.request_timeout_ms = 400;
    routes = router_new();
    router_add(routes, HTTP_METHOD_GET, "/hello", handler_hello);
    router_add(routes, HTTP_METHOD_POST, "/body", handler_body);
    router_add_flags(routes, HTTP_METHOD_POST, "/json", handler_body, ROUTE_BODY_JSON);
    router_add(routes, HTTP_METHOD_GET, "/kv/{key}", handler_params);
    router_add(routes, HTTP_METHOD_GET, "/async", handler_async);
    router_add(routes, HTTP_METHOD_GET, "/blocking", handler_blocking);
    router_add(routes, HTTP_METHOD_GET, "/blocking-async", handler_blocking_async);
    router_add(routes, HTTP_METHOD_GET, "/long", handler_async_sleep);
    router_add(routes, HTTP_METHOD_GET, "/forever", handler_waits_forever);
    router_add_flags(routes, HTTP_METHOD_GET, "/coro", handler_coro, ROUTE_CORO);
    router_add_flags(routes, HTTP_METHOD_GET, "/coro-careless", handler_coro_careless, ROUTE_CORO);
    router_add_flags(routes, HTTP_METHOD_POST, "/upload", handler_upload, ROUTE_BODY_STREAM);
    router_add_flags(routes, HTTP_METHOD_POST, "/upload-slow", handler_upload, ROUTE_BODY_STREAM);
    http_loop_options opts = {.id = 0, .listen_fd = -1, .settings = &settings, .router = routes};
    loop = http_loop_new(&opts);
    int fds[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
    client_fd = fds[1];
    http_conn_accept(loop, fds[0], NULL, false);
    cancel_calls = 0;
    coro_resumed = 0;
    upload_pieces_paused = upload_waits_paused = 0;
}

static void teardown(void)
{
    if (client_fd >= 0)
        close(client_fd);
    http_loop_free(loop);
    router_free(routes);
}


/* Runs the loop for `ms` milliseconds. */
static void spin(int ms)
{
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    event_base_loopexit(http_loop_base(loop), &tv);
    event_base_dispatch(http_loop_base(loop));
}

static void send_all(const char *data, size_t len)
{
    size_t off = 0;
    while (off < len) {
        ssize_t n = send(client_fd, data + off, len - off, MSG_NOSIGNAL);
        if (n > 0)
            off += (size_t)n;
        else
            spin(1); /* let the server read */
    }
}

static void send_str(const char *s) { send_all(s, strlen(s)); }

/* Everything the server has written so far (spinning the loop first); eof set when it closed. */
static char received[1 << 20];
static size_t received_len;
static bool eof;

static const char *collect(int ms)
{
    spin(ms);
    received_len = 0;
    eof = false;
    for (;;) {
        ssize_t n = recv(client_fd, received + received_len, sizeof(received) - 1 - received_len, 0);
        if (n > 0) {
            received_len += (size_t)n;
            continue;
        }
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            eof = true;
        break;
    }
    received[received_len] = '\0';
    return received;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

static size_t active(void)
{
    http_loop_stats st;
    http_loop_stats_read(loop, &st);
    return st.connections_active;
}

#endif
