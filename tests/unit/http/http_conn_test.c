/* Unit tests for the llhttp glue and connection state machine (lib/http/http_conn.c, lib/http/http_parser.c):
 * a real loop and connection driven in-process through a socketpair, so framing, limits, buffer
 * compaction, ordering of pipelined answers, async answers and cancellation run under ASan without a
 * network or the server binary. */
#include "http_conn_fixture.h"

#include <criterion/redirect.h>

TestSuite(http_conn, .init = setup, .fini = teardown, .timeout = 20);

Test(http_conn, pipelined_requests_answered_in_order_in_one_read)
{
    send_str("GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /kv/a%2Fb?q=x+y HTTP/1.1\r\nHost: t\r\n\r\nGET /hello "
             "HTTP/1.1\r\nHost: t\r\n\r\n");
    const char *r = collect(20);
    cr_assert_eq(count(r, "HTTP/1.1 200 OK"), 3);
    const char *kv = strstr(r, "{\"key\":\"a/b\",\"q\":\"x y\"}");
    cr_assert_not_null(kv, "got: %s", r);
    cr_assert(strstr(r, "{\"m\":\"hi\"}") < kv && strstr(kv, "{\"m\":\"hi\"}"));
    cr_assert_not(eof);
}

Test(http_conn, request_split_byte_by_byte)
{
    const char *req = "GET /hello HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n\r\n";
    for (const char *p = req; *p; p++) {
        send_all(p, 1);
        spin(1);
    }
    cr_assert_eq(count(collect(10), "HTTP/1.1 200 OK"), 1);
}

Test(http_conn, chunked_body_in_pieces)
{
    send_str("POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
    spin(5);
    send_str("lo\r\n6\r\n world\r\n0\r\n\r\n");
    const char *r = collect(10);
    cr_assert(strstr(r, "{\"len\":11}"), "got: %s", r);
    cr_assert_eq(last_body_len, 11);
}

Test(http_conn, large_body_survives_buffer_compaction)
{
    static char body[150000];
    unsigned long sum = 0;
    for (size_t i = 0; i < sizeof(body); i++) {
        body[i] = (char)('a' + i % 26);
        sum += (unsigned char)body[i];
    }
    send_str("POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 150000\r\nX-Pad: ");
    send_str("0123456789012345678901234567890123456789\r\n\r\n");
    send_all(body, sizeof(body));
    send_str("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    const char *r = collect(50);
    cr_assert(strstr(r, "{\"len\":150000}"), "got: %s", r);
    cr_assert_eq(last_body_sum, sum);
    cr_assert_eq(count(r, "HTTP/1.1 200 OK"), 2);
}

Test(http_conn, head_larger_than_one_buffer_block)
{
    char head[12000];
    int n = snprintf(head, sizeof(head), "GET /hello HTTP/1.1\r\nHost: t\r\nX-Big: ");
    memset(head + n, 'v', 10000);
    memcpy(head + n + 10000, "\r\nX-After: 1\r\n\r\n", 17);
    send_all(head, (size_t)n + 10000 + 16);
    cr_assert_eq(count(collect(20), "HTTP/1.1 200 OK"), 1);
}

Test(http_conn, async_answer_keeps_pipelined_order)
{
    send_str("GET /async HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    const char *r = collect(5);
    cr_assert_eq(received_len, 0, "nothing may overtake the async answer: %s", r);
    r = collect(60);
    const char *later_pos = strstr(r, "\"later\"");
    const char *hi_pos = strstr(r, "\"hi\"");
    cr_assert(later_pos && hi_pos && later_pos < hi_pos, "got: %s", r);
}

/* A Unix-socket peer that closed both directions is gone (a half-close is not: http_framing_test). */
Test(http_conn, client_gone_cancels_pending_request)
{
    send_str("GET /async HTTP/1.1\r\nHost: t\r\n\r\n");
    spin(2);
    close(client_fd);
    client_fd = -1;
    spin(40);
    cr_assert_eq(cancel_calls, 1);
    cr_assert_eq(active(), 0);
}

Test(http_conn, content_length_over_limit_is_413_before_the_body)
{
    send_str("POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 999999999\r\n\r\n");
    const char *r = collect(10);
    cr_assert(strstr(r, "HTTP/1.1 413 Content Too Large\r\n"), "got: %s", r);
    cr_assert(strstr(r, "Connection: close\r\n"));
    cr_assert(strstr(r, "application/problem+json"));
}

Test(http_conn, chunked_total_over_limit_is_413)
{
    send_str("POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n40000\r\n");
    cr_assert(strstr(collect(10), "HTTP/1.1 413 "));
}

Test(http_conn, too_many_headers_is_431)
{
    send_str("GET /hello HTTP/1.1\r\nHost: t\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\nF: 1\r\nG: 1\r\nH: 1\r\nI: "
             "1\r\n\r\n");
    cr_assert(strstr(collect(10), "HTTP/1.1 431 "));
}

Test(http_conn, long_url_is_414)
{
    char req[600] = "GET /";
    memset(req + 5, 'a', 400);
    strcpy(req + 405, " HTTP/1.1\r\nHost: t\r\n\r\n");
    send_str(req);
    cr_assert(strstr(collect(10), "HTTP/1.1 414 "));
}

Test(http_conn, malformed_and_unknown_methods)
{
    send_str("BREW /pot HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert(strstr(collect(10), "HTTP/1.1 501 "), "got: %s", received);
}

Test(http_conn, binary_junk_is_400)
{
    send_all("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", 11);
    cr_assert(strstr(collect(10), "HTTP/1.1 400 "));
}

Test(http_conn, conflicting_framing_is_400)
{
    send_str("POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc");
    cr_assert(strstr(collect(10), "HTTP/1.1 400 "));
}

Test(http_conn, routing_errors_keep_the_connection)
{
    send_str("GET /nope HTTP/1.1\r\nHost: t\r\n\r\nDELETE /hello HTTP/1.1\r\nHost: t\r\n\r\nPROPFIND /hello HTTP/1.1\r\nHost: t\r\n\r\n"
             "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    const char *r = collect(10);
    cr_assert(strstr(r, "HTTP/1.1 404 "));
    cr_assert(strstr(r, "HTTP/1.1 405 "));
    cr_assert(strstr(r, "Allow: GET, HEAD\r\n"));
    cr_assert(strstr(r, "HTTP/1.1 501 "));
    cr_assert(strstr(r, "HTTP/1.1 200 "));
    cr_assert_not(eof);
}

Test(http_conn, head_gets_headers_only)
{
    send_str("HEAD /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    const char *r = collect(10);
    cr_assert(strstr(r, "Content-Length: 10\r\n"), "got: %s", r);
    cr_assert(strstr(r, "\r\n\r\n")[4] == '\0');
}

Test(http_conn, http10_closes_unless_keep_alive)
{
    send_str("GET /hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    const char *r = collect(10);
    cr_assert(strstr(r, "Connection: keep-alive\r\n"));
    cr_assert_not(eof);
    send_str("GET /hello HTTP/1.0\r\n\r\n");
    r = collect(80);
    cr_assert(strstr(r, "Connection: close\r\n"));
    cr_assert(eof);
}

Test(http_conn, expect_continue_then_body)
{
    send_str("POST /body HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
    cr_assert_str_eq(collect(10), "HTTP/1.1 100 Continue\r\n\r\n");
    send_str("abcd");
    cr_assert(strstr(collect(10), "{\"len\":4}"));
}

Test(http_conn, header_timeout_is_408)
{
    send_str("GET /hello HTTP/1.1\r\nHost: t\r\nX-Slow: ");
    const char *r = collect(400);
    cr_assert(strstr(r, "HTTP/1.1 408 "), "got: %s", r);
}

Test(http_conn, idle_connection_holds_no_buffers)
{
    send_str("POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    collect(10);
    http_conn *conn = loop->conns;
    cr_assert_not_null(conn);
    cr_assert_null(conn->in.data);
    cr_assert_null(conn->out.data);
    cr_assert_null(conn->body.data);
    cr_assert_null(conn->slot);
}

static http_loop_stats stats(void)
{
    http_loop_stats st;
    http_loop_stats_read(loop, &st);
    return st;
}

Test(http_conn, blocking_handler_is_reported_and_shows_as_loop_lag)
{
    send_str("GET /blocking HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert(strstr(collect(300), "\"slow\""));
    http_loop_stats st = stats();
    cr_assert_eq(st.slow_callbacks, 1);
    /* The 100 ms probe came due while the handler held the loop for 150 ms: at least 20 ms late. */
    uint64_t late = 0;
    for (size_t i = 5; i < HTTP_LOOP_LAG_BUCKETS; i++)
        late += st.lag_buckets[i];
    cr_assert_geq(late, 1);
    cr_assert_geq(st.lag_max_ms, 20);
}

Test(http_conn, blocking_continuation_is_reported)
{
    send_str("GET /blocking-async HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert(strstr(collect(200), "\"slow-async\""));
    cr_assert_eq(stats().slow_callbacks, 1);
    cr_assert_eq(stats().async_inflight, 0);
}

Test(http_conn, request_deadline_answers_504_and_cancels_the_scope)
{
    send_str("GET /long HTTP/1.1\r\nHost: t\r\n\r\n");
    spin(5);
    cr_assert_eq(stats().async_inflight, 1);
    const char *r = collect(600);
    cr_assert(strstr(r, "HTTP/1.1 504 Gateway Timeout\r\n"), "got: %s", r);
    cr_assert_not(eof, "a deadline answer keeps the connection");
    cr_assert_eq(stats().async_inflight, 0);
    cr_assert_eq(stats().deadline_expired, 1);
    send_str("GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    cr_assert(strstr(collect(20), "HTTP/1.1 200 OK"));
}

Test(http_conn, async_cap_answers_503_with_retry_after)
{
    int extra[2][2];
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, extra[i]), 0);
        http_conn_accept(loop, extra[i][0], NULL, false);
        const char *req = "GET /long HTTP/1.1\r\nHost: t\r\n\r\n";
        cr_assert_eq(send(extra[i][1], req, strlen(req), 0), (ssize_t)strlen(req));
    }
    spin(10);
    cr_assert_eq(stats().async_inflight, 2);
    send_str("GET /long HTTP/1.1\r\nHost: t\r\n\r\n");
    const char *r = collect(10);
    cr_assert(strstr(r, "HTTP/1.1 503 Service Unavailable\r\n"), "got: %s", r);
    cr_assert(strstr(r, "Retry-After: 1\r\n"));
    cr_assert_eq(stats().async_rejected, 1);
    for (int i = 0; i < 2; i++)
        close(extra[i][1]);
    spin(10);
    cr_assert_eq(stats().async_inflight, 0, "closing the clients cancelled their scopes");
    cr_assert_eq(stats().cancelled, 2);
}

Test(http_conn, deadline_answers_once_even_if_the_cancel_callback_answers)
{
    /* A pipelined request waits behind: the 504 must not be taken as its answer, nor sent twice. */
    send_str("GET /forever HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    const char *r = collect(600);
    cr_assert_eq(count(r, "HTTP/1.1 504 "), 1, "got: %s", r);
    cr_assert_eq(count(r, "from-cancel"), 0, "got: %s", r);
    cr_assert_eq(count(r, "HTTP/1.1 200 OK"), 1, "the pipelined request got its own answer: %s", r);
    cr_assert(strstr(r, "HTTP/1.1 504 ") < strstr(r, "HTTP/1.1 200 OK"));
}

Test(http_conn, coroutine_answer_then_pipelined_requests_in_order)
{
    send_str("GET /coro HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
             "GET /coro HTTP/1.1\r\nHost: t\r\n\r\n");
    const char *r = collect(200);
    cr_assert_eq(count(r, "HTTP/1.1 200 OK"), 3, "got: %s", r);
    const char *first = strstr(r, "\"coro\""), *hello = strstr(r, "\"hi\"");
    cr_assert(first && hello && first < hello, "in order: %s", r);
    cr_assert(strstr(hello, "\"coro\""), "the third answered after the second: %s", r);
    cr_assert_eq(stats().async_inflight, 0);
}

/* Reads what the test wrote to its redirected stderr so far. */
static const char *stderr_text(void)
{
    static char text[1 << 16];
    fflush(stderr);
    FILE *f = cr_get_redirected_stderr();
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    text[n] = '\0';
    return text;
}

static void setup_capturing_stderr(void)
{
    cr_redirect_stderr();
    setup();
}

Test(http_conn, coroutine_past_its_deadline_unwinds_and_its_answer_is_dropped_quietly,
     .init = setup_capturing_stderr)
{
    send_str("GET /coro-careless HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    const char *r = collect(600);
    cr_assert_eq(count(r, "HTTP/1.1 504 "), 1, "got: %s", r);
    cr_assert_eq(count(r, "late"), 0, "got: %s", r);
    cr_assert_eq(count(r, "HTTP/1.1 200 OK"), 1, "the pipelined request got its own answer: %s", r);
    cr_assert_eq(coro_resumed, 1, "the coroutine was resumed once to unwind");
    cr_assert_eq(stats().async_inflight, 0);
    const char *log = stderr_text();
    cr_assert_null(strstr(log, "answered twice"), "log: %s", log);
}

Test(http_conn, coroutine_of_a_client_gone_is_resumed_once_and_unwinds)
{
    send_str("GET /coro-careless HTTP/1.1\r\nHost: t\r\n\r\n");
    spin(5);
    cr_assert_eq(stats().async_inflight, 1);
    close(client_fd);
    client_fd = -1;
    spin(10);
    cr_assert_eq(coro_resumed, 1);
    cr_assert_eq(stats().async_inflight, 0);
    cr_assert_eq(stats().cancelled, 1);
}

/* A streamed body whose handler takes each piece at once: the connection keeps reading (no read
 * interest turned off and on around every piece, two epoll_ctl each way); every byte arrives. */
static void send_upload(const char *path, size_t len)
{
    char head[128];
    snprintf(head, sizeof(head), "POST %s HTTP/1.1\r\nHost: t\r\nContent-Length: %zu\r\n\r\n", path, len);
    send_str(head);
    char *body = malloc(len);
    unsigned long sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += (unsigned char)(body[i] = (char)(i * 7 + (i >> 10)));
    send_all(body, len);
    free(body);
    const char *r = collect(50);
    for (int i = 0; i < 100 && received_len == 0; i++)
        r = collect(50); /* a loaded machine: wait for the answer, up to 5 s */
    cr_assert(strstr(r, "HTTP/1.1 200 OK"), "got: %s", r);
    cr_assert_eq(last_body_len, len);
    cr_assert_eq(last_body_sum, sum);
}

Test(http_conn, streamed_body_read_at_once_keeps_reading_on)
{
    send_upload("/upload", 190000);
    cr_assert_eq(upload_pieces_paused, 0, "reading was paused for a handler that keeps up");
}

Test(http_conn, streamed_body_of_a_handler_that_falls_behind_pauses_reading)
{
    send_upload("/upload-slow", 190000);
    cr_assert_gt(upload_waits_paused, 0, "a handler 10 ms behind per piece must stop the reads");
}
