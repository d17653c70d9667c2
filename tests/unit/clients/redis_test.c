/* redis_test: unit tests for lib/clients/redis.c (the per-loop Redis client) without a Redis server: reply
 * copying from hiredis's own parser, and the client against a fake server on a loopback socket in the
 * same event loop, which reads the exact bytes the client sends and answers when the test says so.
 * Covered: argv formatting (spaces, quotes, CRLF, NUL survive), SELECT first, pipelining and in-order
 * matching, error replies, cancellation (the late reply is dropped and the next command still gets
 * its own reply), timeouts, a connection lost mid-flight and the reconnect, a refused connection,
 * backoff until the server is back, a refused SELECT backing off, freeing the client with commands in
 * flight, and the counters.
 * (Several links per loop are exercised against a real Redis in tests/integration/test_96_kv.py.)
 *
 * Meant to run under ASan too: a reply written into a scope that already ended, or a pending record
 * freed twice, only shows up there. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <hiredis/hiredis.h>

#include "redis.h"
#include "redis_internal.h"

/* Every wait is bounded by this; on a healthy machine each one takes milliseconds. */
#define REDIS_TEST_WAIT_MS 5000u

static uint64_t redis_test_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static uint64_t redis_test_now_ms(void) { return redis_test_now_us() / 1000u; }

/* ---- the fake server ------------------------------------------------------------------------------ */

typedef struct fake_server {
    struct event_base *base;
    int listen_fd;
    unsigned port;
    struct event *accept_ev;
    int conn_fd;            /* the current client connection, -1 when none */
    struct event *conn_ev;
    unsigned accepted;
    bool peer_closed;
    const char *select_reply; /* when set, sent to every connection as soon as its SELECT arrives */
    bool select_answered;
    char in[65536];         /* everything received on the current connection */
    size_t in_len;
} fake_server;

static void fake_on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    fake_server *fs = arg;
    for (;;) {
        ssize_t n = recv(fd, fs->in + fs->in_len, sizeof(fs->in) - fs->in_len, 0);
        if (n > 0) {
            fs->in_len += (size_t)n;
            continue;
        }
        if (n == 0)
            fs->peer_closed = true;
        break;
    }
    if (fs->select_reply && !fs->select_answered && memmem(fs->in, fs->in_len, "SELECT", 6)) {
        fs->select_answered = true;
        send(fd, fs->select_reply, strlen(fs->select_reply), MSG_NOSIGNAL);
    }
    if (fs->peer_closed)
        event_del(fs->conn_ev);
}

static void fake_close_conn(fake_server *fs)
{
    if (fs->conn_fd < 0)
        return;
    event_free(fs->conn_ev);
    fs->conn_ev = NULL;
    close(fs->conn_fd);
    fs->conn_fd = -1;
}

static void fake_on_accept(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    fake_server *fs = arg;
    int c = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (c < 0)
        return;
    fake_close_conn(fs); /* one connection at a time: a new one replaces the old */
    fs->conn_fd = c;
    fs->in_len = 0;
    fs->peer_closed = false;
    fs->select_answered = false;
    fs->accepted++;
    fs->conn_ev = event_new(fs->base, c, EV_READ | EV_PERSIST, fake_on_read, fs);
    event_add(fs->conn_ev, NULL);
}

static void fake_start(fake_server *fs, struct event_base *base)
{
    memset(fs, 0, sizeof(*fs));
    fs->base = base;
    fs->conn_fd = -1;
    fs->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    cr_assert_geq(fs->listen_fd, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fs->listen_fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    cr_assert_eq(listen(fs->listen_fd, 16), 0);
    socklen_t len = sizeof(addr);
    getsockname(fs->listen_fd, (struct sockaddr *)&addr, &len);
    fs->port = ntohs(addr.sin_port);
    fs->accept_ev = event_new(base, fs->listen_fd, EV_READ | EV_PERSIST, fake_on_accept, fs);
    event_add(fs->accept_ev, NULL);
}

static void fake_stop(fake_server *fs)
{
    fake_close_conn(fs);
    event_free(fs->accept_ev);
    close(fs->listen_fd);
}

static void fake_send(fake_server *fs, const char *bytes)
{
    size_t len = strlen(bytes);
    cr_assert_geq(fs->conn_fd, 0, "no client connection to answer on");
    cr_assert_eq(send(fs->conn_fd, bytes, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* A port nothing listens on: bound by the kernel, then closed. */
static unsigned redis_test_dead_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(fd, (struct sockaddr *)&addr, &len);
    close(fd);
    return ntohs(addr.sin_port);
}

/* ---- running the loop ------------------------------------------------------------------------------ */

typedef struct redis_test {
    struct event_base *base;
    fake_server fs;
    redis_settings settings;
    redis_client *client;
    async_scope *scope;
} redis_test;

static redis_test T;

/* Runs the loop until cond(arg) holds; fails the test after REDIS_TEST_WAIT_MS. */
static void run_until(bool (*cond)(void *arg), void *arg, const char *what)
{
    uint64_t deadline = redis_test_now_ms() + REDIS_TEST_WAIT_MS;
    while (!cond(arg)) {
        cr_assert_lt(redis_test_now_ms(), deadline, "timed out waiting for %s", what);
        struct timeval tick = {0, 10000};
        event_base_loopexit(T.base, &tick);
        event_base_loop(T.base, EVLOOP_ONCE);
    }
}

static bool received_at_least(void *arg) { return T.fs.in_len >= *(size_t *)arg; }

/* Runs until the fake server got exactly `expected` (more bytes would be a different command). */
static void expect_received(const char *expected)
{
    size_t len = strlen(expected);
    run_until(received_at_least, &len, expected);
    cr_assert_eq(T.fs.in_len, len, "received %zu bytes, expected %zu", T.fs.in_len, len);
    cr_assert_eq(memcmp(T.fs.in, expected, len), 0, "received %.*s", (int)T.fs.in_len, T.fs.in);
    T.fs.in_len = 0;
}

static bool op_done(void *arg) { return ((async_op *)arg)->status != ASYNC_PENDING; }

static void wait_done(async_op *op) { run_until(op_done, op, "an operation to complete"); }

/* Lets the loop run for `ms` (to show that nothing happens in that time). */
static void run_for(unsigned ms)
{
    uint64_t until = redis_test_now_ms() + ms;
    while (redis_test_now_ms() < until) {
        struct timeval tick = {0, 5000};
        event_base_loopexit(T.base, &tick);
        event_base_loop(T.base, EVLOOP_ONCE);
    }
}

static void redis_test_init(void)
{
    signal(SIGPIPE, SIG_IGN); /* hiredis writes with write(2): a peer that closed must not kill us */
    memset(&T, 0, sizeof(T));
    /* libevent's default clock (the coarse monotonic clock, a 4 ms tick), as the server's loops use:
     * a timer can fire a few ms before the test's own clock says it is due, so the command timeout
     * re-checks the monotonic clock (no_reply_in_time_is_a_timeout... asserts it is never early). */
    T.base = event_base_new();
    fake_start(&T.fs, T.base);
    snprintf(T.settings.host, sizeof(T.settings.host), "127.0.0.1");
    T.settings.port = T.fs.port;
    T.settings.connections_per_loop = 1;
    T.settings.connect_timeout_ms = 1000;
    T.settings.command_timeout_ms = 2000;
    T.scope = async_scope_new(T.base);
}

static void redis_test_fini(void)
{
    if (T.scope)
        async_scope_free(T.scope);
    if (T.client)
        redis_client_free(T.client);
    fake_stop(&T.fs);
    event_base_free(T.base);
}

TestSuite(redis, .init = redis_test_init, .fini = redis_test_fini);

static async_op *cmd2(async_scope *scope, const char *a, const char *b)
{
    const char *argv[] = {a, b};
    const size_t argvlen[] = {strlen(a), strlen(b)};
    return redis_client_command(scope, T.client, 2, argv, argvlen);
}

static void client_up(void)
{
    T.client = redis_client_new(T.base, &T.settings, 7);
}

static const redis_reply *ok_reply(const async_op *op)
{
    cr_assert_eq(op->status, ASYNC_OK, "status %d, error %s", op->status, op->error ? op->error : "-");
    return op->value;
}

/* ---- reply copying ---------------------------------------------------------------------------------- */

Test(redis, reply_copy_is_deep_and_binary_safe)
{
    static const char wire[] = "*5\r\n$7\r\na\0b\r\nc\"\r\n:-42\r\n$-1\r\n+OK\r\n*2\r\n-ERR nope\r\n*0\r\n";
    redisReader *reader = redisReaderCreate();
    cr_assert_eq(redisReaderFeed(reader, wire, sizeof(wire) - 1), REDIS_OK);
    void *parsed = NULL;
    cr_assert_eq(redisReaderGetReply(reader, &parsed), REDIS_OK);
    cr_assert_not_null(parsed);
    redis_reply *r = redis_reply_copy(T.scope, parsed);
    /* hiredis's reply is gone from here on: everything below reads the copy. */
    freeReplyObject(parsed);
    redisReaderFree(reader);

    cr_assert_eq(r->kind, REDIS_KIND_ARRAY);
    cr_assert_eq(r->count, 5);
    cr_assert_eq(r->elements[0].kind, REDIS_KIND_STRING);
    cr_assert_eq(r->elements[0].len, 7);
    cr_assert_eq(memcmp(r->elements[0].str, "a\0b\r\nc\"", 7), 0);
    cr_assert_eq(r->elements[0].str[7], '\0');
    cr_assert_eq(r->elements[1].kind, REDIS_KIND_INTEGER);
    cr_assert_eq(r->elements[1].integer, -42);
    cr_assert_eq(r->elements[2].kind, REDIS_KIND_NIL);
    cr_assert_eq(r->elements[3].kind, REDIS_KIND_STATUS);
    cr_assert_str_eq(r->elements[3].str, "OK");
    const redis_reply *inner = &r->elements[4];
    cr_assert_eq(inner->kind, REDIS_KIND_ARRAY);
    cr_assert_eq(inner->count, 2);
    cr_assert_eq(inner->elements[0].kind, REDIS_KIND_ERROR);
    cr_assert_str_eq(inner->elements[0].str, "ERR nope");
    cr_assert_eq(inner->elements[1].kind, REDIS_KIND_ARRAY);
    cr_assert_eq(inner->elements[1].count, 0);
}

/* ---- commands on the wire ---------------------------------------------------------------------------- */

Test(redis, argv_is_sent_binary_safe_and_the_reply_comes_back)
{
    client_up();
    const char key[] = "a b\r\n\"q\"\0z";
    const char *argv[] = {"SET", key, "v"};
    const size_t argvlen[] = {3, sizeof(key) - 1, 1};
    async_op *op = redis_client_command(T.scope, T.client, 3, argv, argvlen);
    cr_assert_eq(op->status, ASYNC_PENDING, "connecting: the command waits for the link");
    static const char wire[] = "*3\r\n$3\r\nSET\r\n$10\r\na b\r\n\"q\"\0z\r\n$1\r\nv\r\n";
    size_t len = sizeof(wire) - 1;
    run_until(received_at_least, &len, "the SET");
    cr_assert_eq(T.fs.in_len, len);
    cr_assert_eq(memcmp(T.fs.in, wire, len), 0);
    T.fs.in_len = 0;
    cr_assert(redis_client_ready(T.client));
    fake_send(&T.fs, "+OK\r\n");
    wait_done(op);
    const redis_reply *r = ok_reply(op);
    cr_assert_eq(r->kind, REDIS_KIND_STATUS);
    cr_assert_str_eq(r->str, "OK");
}

Test(redis, select_goes_first_when_db_is_not_zero)
{
    T.settings.db = 3;
    client_up();
    async_op *op = cmd2(T.scope, "GET", "k");
    expect_received("*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    fake_send(&T.fs, "+OK\r\n$2\r\nhi\r\n");
    wait_done(op);
    cr_assert_str_eq(ok_reply(op)->str, "hi");
}

Test(redis, pipelined_commands_get_their_own_replies_in_order)
{
    client_up();
    cr_assert_not(redis_client_ready(T.client), "the first call only starts connecting");
    async_op *ops[3] = {cmd2(T.scope, "GET", "a"), cmd2(T.scope, "GET", "b"), cmd2(T.scope, "INCR", "c")};
    expect_received("*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n*2\r\n$4\r\nINCR\r\n$1\r\nc\r\n");
    /* All three answers in one write, as a pipelined server sends them. */
    fake_send(&T.fs, "$1\r\nA\r\n$-1\r\n:5\r\n");
    for (int i = 0; i < 3; i++)
        wait_done(ops[i]);
    cr_assert_str_eq(ok_reply(ops[0])->str, "A");
    cr_assert_eq(ok_reply(ops[1])->kind, REDIS_KIND_NIL);
    cr_assert_eq(ok_reply(ops[2])->integer, 5);
}

Test(redis, pipeline_keeps_a_batch_together_and_errors_are_elements)
{
    client_up();
    const char *multi[] = {"MULTI"}, *get[] = {"GET", "k"}, *exec[] = {"EXEC"};
    const size_t multi_len[] = {5}, get_len[] = {3, 1}, exec_len[] = {4};
    const redis_cmd cmds[] = {{1, multi, multi_len}, {2, get, get_len}, {1, exec, exec_len}};
    async_op *before = cmd2(T.scope, "GET", "x");
    async_op *batch = redis_client_pipeline(T.scope, T.client, cmds, 3);
    async_op *after = cmd2(T.scope, "GET", "y");
    expect_received("*2\r\n$3\r\nGET\r\n$1\r\nx\r\n*1\r\n$5\r\nMULTI\r\n*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
                    "*1\r\n$4\r\nEXEC\r\n*2\r\n$3\r\nGET\r\n$1\r\ny\r\n");
    fake_send(&T.fs, "$1\r\nX\r\n+OK\r\n-ERR queued badly\r\n*1\r\n$1\r\nK\r\n$1\r\nY\r\n");
    wait_done(after);
    wait_done(batch);
    cr_assert_str_eq(ok_reply(before)->str, "X");
    const redis_reply *all = ok_reply(batch);
    cr_assert_eq(all->kind, REDIS_KIND_ARRAY);
    cr_assert_eq(all->count, 3);
    cr_assert_eq(all->elements[0].kind, REDIS_KIND_STATUS);
    cr_assert_eq(all->elements[1].kind, REDIS_KIND_ERROR);
    cr_assert_str_eq(all->elements[1].str, "ERR queued badly");
    cr_assert_eq(all->elements[2].kind, REDIS_KIND_ARRAY);
    cr_assert_str_eq(all->elements[2].elements[0].str, "K");
    cr_assert_str_eq(ok_reply(after)->str, "Y");
}

Test(redis, an_error_reply_fails_a_single_command)
{
    client_up();
    redis_stats before;
    redis_stats_read(&before);
    async_op *op = cmd2(T.scope, "INCR", "text");
    expect_received("*2\r\n$4\r\nINCR\r\n$4\r\ntext\r\n");
    fake_send(&T.fs, "-ERR value is not an integer or out of range\r\n");
    wait_done(op);
    cr_assert_eq(op->status, ASYNC_FAILED);
    cr_assert_str_eq(op->error, "redis: ERR value is not an integer or out of range");
    redis_stats after;
    redis_stats_read(&after);
    cr_assert_eq(after.errors_reply - before.errors_reply, 1);
    cr_assert_eq(after.commands - before.commands, 1);
    cr_assert_eq(after.inflight, before.inflight);
}

/* ---- cancellation and timeouts ------------------------------------------------------------------------ */

Test(redis, a_cancelled_command_drops_its_late_reply)
{
    client_up();
    async_scope *gone = async_scope_new(T.base);
    async_op *abandoned = cmd2(gone, "GET", "slow");
    expect_received("*2\r\n$3\r\nGET\r\n$4\r\nslow\r\n");
    redis_stats before;
    redis_stats_read(&before);
    cr_assert_eq(before.inflight, 1);
    (void)abandoned;
    /* The request ends (client gone): its scope and every byte of it are freed before the reply. */
    async_scope_free(gone);
    async_op *next = cmd2(T.scope, "GET", "next");
    expect_received("*2\r\n$3\r\nGET\r\n$4\r\nnext\r\n");
    fake_send(&T.fs, "$4\r\nLATE\r\n$4\r\nMINE\r\n");
    wait_done(next);
    cr_assert_str_eq(ok_reply(next)->str, "MINE", "replies are matched by order, the dropped one included");
    redis_stats after;
    redis_stats_read(&after);
    cr_assert_eq(after.replies_dropped - before.replies_dropped, 1);
    cr_assert_eq(after.inflight, 0);
}

Test(redis, async_op_cancel_disowns_too)
{
    client_up();
    async_op *op = cmd2(T.scope, "GET", "k");
    expect_received("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    async_op_cancel(op);
    fake_send(&T.fs, "$1\r\nv\r\n");
    async_op *next = cmd2(T.scope, "PING", "x");
    expect_received("*2\r\n$4\r\nPING\r\n$1\r\nx\r\n");
    fake_send(&T.fs, "$1\r\nx\r\n");
    wait_done(next);
    cr_assert_str_eq(ok_reply(next)->str, "x");
    cr_assert_eq(op->status, ASYNC_CANCELLED);
}

Test(redis, no_reply_in_time_is_a_timeout_and_the_link_stays_usable)
{
    T.settings.command_timeout_ms = 150;
    client_up();
    uint64_t started = redis_test_now_us();
    async_op *op = cmd2(T.scope, "GET", "k");
    expect_received("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    wait_done(op);
    uint64_t took = redis_test_now_us() - started;
    cr_assert_eq(op->status, ASYNC_FAILED);
    cr_assert_eq(op->error, REDIS_ERROR_TIMEOUT);
    cr_assert_geq(took, 150000, "timed out early: %llu us", (unsigned long long)took);
    /* The reply comes after all: dropped, and the next command gets the next reply. */
    async_op *next = cmd2(T.scope, "GET", "j");
    expect_received("*2\r\n$3\r\nGET\r\n$1\r\nj\r\n");
    fake_send(&T.fs, "$3\r\nold\r\n$3\r\nnew\r\n");
    wait_done(next);
    cr_assert_str_eq(ok_reply(next)->str, "new");
    cr_assert_eq(T.fs.accepted, 1, "a timeout alone does not reconnect");
}

/* The loops' coarse clock (4 ms ticks) can fire a command's timer up to a tick early; commands started
 * at several phases of a tick catch that (before the timeout re-checked the monotonic clock, most of
 * them ended 1-4 ms early). */
Test(redis, command_timeouts_never_end_early)
{
    T.settings.command_timeout_ms = 30;
    client_up();
    int early = 0;
    for (unsigned round = 0; round < 8; round++) {
        uint64_t spin_until = redis_test_now_us() + round * 700u;
        while (redis_test_now_us() < spin_until)
            ;
        uint64_t started = redis_test_now_us();
        async_op *op = cmd2(T.scope, "GET", "k");
        wait_done(op);
        uint64_t took = redis_test_now_us() - started;
        cr_assert_eq(op->error, REDIS_ERROR_TIMEOUT);
        if (took < 30000)
            early++;
    }
    cr_assert_eq(early, 0, "%d of 8 command timeouts ended early", early);
}

/* ---- links going away ---------------------------------------------------------------------------------- */

static bool accepted_twice(void *arg)
{
    (void)arg;
    return T.fs.accepted >= 2;
}

Test(redis, connection_lost_mid_flight_fails_then_reconnects)
{
    client_up();
    async_op *a = cmd2(T.scope, "GET", "a");
    async_op *b = cmd2(T.scope, "GET", "b");
    expect_received("*2\r\n$3\r\nGET\r\n$1\r\na\r\n*2\r\n$3\r\nGET\r\n$1\r\nb\r\n");
    redis_stats before;
    redis_stats_read(&before);
    fake_send(&T.fs, "$1\r\nA\r\n"); /* a is answered, b is still in flight when the server goes */
    wait_done(a);
    fake_close_conn(&T.fs);
    wait_done(b);
    cr_assert_str_eq(ok_reply(a)->str, "A");
    cr_assert_eq(b->status, ASYNC_FAILED);
    cr_assert_eq(b->error, REDIS_ERROR_CONNECTION_LOST);
    /* The first retry after losing an established link is immediate. */
    run_until(accepted_twice, NULL, "the reconnect");
    async_op *c = cmd2(T.scope, "GET", "c");
    expect_received("*2\r\n$3\r\nGET\r\n$1\r\nc\r\n");
    fake_send(&T.fs, "$1\r\nC\r\n");
    wait_done(c);
    cr_assert_str_eq(ok_reply(c)->str, "C");
    redis_stats after;
    redis_stats_read(&after);
    cr_assert_eq(after.errors_connection_lost - before.errors_connection_lost, 1);
    cr_assert_eq(after.disconnects - before.disconnects, 1);
    cr_assert_eq(after.reconnects - before.reconnects, 1);
    cr_assert_eq(after.links_up, 1);
}

Test(redis, nothing_listening_fails_unavailable_and_then_fast)
{
    T.settings.port = redis_test_dead_port();
    client_up();
    async_op *first = cmd2(T.scope, "GET", "k");
    wait_done(first);
    cr_assert_eq(first->status, ASYNC_FAILED);
    cr_assert_eq(first->error, REDIS_ERROR_UNAVAILABLE);
    cr_assert_not(redis_client_ready(T.client));
    /* Waiting to retry: the next command fails inside the call, without waiting for anything. */
    async_op *second = cmd2(T.scope, "GET", "k");
    cr_assert_eq(second->status, ASYNC_FAILED);
    cr_assert_eq(second->error, REDIS_ERROR_UNAVAILABLE);
    redis_stats st;
    redis_stats_read(&st);
    cr_assert_geq(st.connect_failures, 1);
    cr_assert_eq(st.links_up, 0);
    cr_assert_eq(st.inflight, 0);
}

Test(redis, retries_with_backoff_until_the_server_is_back)
{
    /* Take the fake server's port away for a while, then give it back. */
    unsigned port = T.fs.port;
    fake_stop(&T.fs);
    T.settings.port = port;
    client_up();
    cr_assert_not(redis_client_ready(T.client));
    run_for(400); /* a few failed attempts: 0 + 100 + 200 ms of backoff */
    redis_stats st;
    redis_stats_read(&st);
    cr_assert_geq(st.connect_failures, 2, "%llu attempts", (unsigned long long)st.connect_failures);
    cr_assert_leq(st.connect_failures, 6, "%llu attempts: no backoff?", (unsigned long long)st.connect_failures);
    /* Back on the same port. */
    T.fs.listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(T.fs.listen_fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(T.fs.listen_fd, (struct sockaddr *)&addr, sizeof(addr)), 0, "%s", strerror(errno));
    cr_assert_eq(listen(T.fs.listen_fd, 16), 0);
    T.fs.accept_ev = event_new(T.base, T.fs.listen_fd, EV_READ | EV_PERSIST, fake_on_accept, &T.fs);
    event_add(T.fs.accept_ev, NULL);
    uint64_t deadline = redis_test_now_ms() + REDIS_TEST_WAIT_MS;
    while (!redis_client_ready(T.client)) {
        cr_assert_lt(redis_test_now_ms(), deadline, "never reconnected");
        run_for(20);
    }
    async_op *op = cmd2(T.scope, "GET", "k");
    expect_received("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    fake_send(&T.fs, "$1\r\nv\r\n");
    wait_done(op);
    cr_assert_str_eq(ok_reply(op)->str, "v");
    redis_stats_read(&st);
    cr_assert_eq(st.reconnects, 1);
}

Test(redis, freeing_the_client_fails_what_is_in_flight)
{
    client_up();
    async_op *op = cmd2(T.scope, "GET", "k");
    expect_received("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    redis_client_free(T.client);
    T.client = NULL;
    cr_assert_eq(op->status, ASYNC_FAILED);
    cr_assert_eq(op->error, REDIS_ERROR_UNAVAILABLE);
    redis_stats st;
    redis_stats_read(&st);
    cr_assert_eq(st.inflight, 0);
    cr_assert_eq(st.links_up, 0);
    cr_assert_eq(st.commands, 1, "a freed client's counters still count");
}

Test(redis, a_refused_select_backs_off_instead_of_spinning)
{
    T.settings.db = 99;
    T.fs.select_reply = "-ERR DB index is out of range\r\n";
    client_up();
    async_op *op = cmd2(T.scope, "GET", "k");
    wait_done(op);
    cr_assert_eq(op->status, ASYNC_FAILED);
    /* Each new connection is refused the same way; the retries must follow the backoff (about 100,
     * 200 and 400 ms apart here), not reconnect at once every time. */
    run_for(600);
    cr_assert_geq(T.fs.accepted, 2, "never retried");
    cr_assert_leq(T.fs.accepted, 5, "%u connections in 600 ms: no backoff", T.fs.accepted);
}

/* A server's announced array size is not trusted (the fuzzer's first finding: "*999999992" made the
 * reader calloc 8 GB): a bounded reader fails the reply instead, and ordinary arrays still read. */
Test(redis_reader, announced_arrays_past_the_bound_are_a_protocol_error)
{
    redisReader *r = redisReaderCreate();
    redis_reader_bound(r);
    const char ok[] = "*2\r\n:1\r\n$1\r\na\r\n";
    cr_assert_eq(redisReaderFeed(r, ok, sizeof(ok) - 1), REDIS_OK);
    void *reply = NULL;
    cr_assert_eq(redisReaderGetReply(r, &reply), REDIS_OK);
    cr_assert_not_null(reply);
    cr_assert_eq(((redisReply *)reply)->elements, 2);
    freeReplyObject(reply);
    const char huge[] = "*999999992\r\n$1\r\na\r\n";
    cr_assert_eq(redisReaderFeed(r, huge, sizeof(huge) - 1), REDIS_OK);
    reply = NULL;
    cr_assert_eq(redisReaderGetReply(r, &reply), REDIS_ERR);
    cr_assert_null(reply);
    redisReaderFree(r);
}
