/* Unit tests for what the engine refuses or tolerates in a request's framing (lib/http/http_parser.c,
 * lib/http/http_conn.c): chunked trailers never reach the header list, Host and field-name rules, obs-fold,
 * HTTP/1.0 with Transfer-Encoding, chunk extensions, requests refused from their head alone (at once
 * under Expect: 100-continue, without buffering their body otherwise), the lingering-close drain and
 * the bound on a connection's output memory. Run under ASan in CI. */
#include <sys/ioctl.h>

#include "http_conn_fixture.h"

TestSuite(http_framing, .init = setup, .fini = teardown, .timeout = 20);

static const char *header_of(const char *response, const char *name, char *out, size_t cap)
{
    const char *p = strcasestr(response, name);
    if (!p)
        return NULL;
    p += strlen(name);
    size_t n = strcspn(p, "\r");
    if (n >= cap)
        n = cap - 1;
    memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

/* ---- trailers ---- */

Test(http_framing, trailer_fields_are_discarded_and_never_read_past_the_head)
{
    /* The reproducer of the leak: a head bigger than the arena's inline block, a chunk, and a trailer
     * X-Request-Id. Before, the trailer became a header span past the head's copy (an ASan heap
     * overflow here; on a Release build the bytes of an earlier request came back). */
    char pad[3001];
    memset(pad, 'p', 3000);
    pad[3000] = '\0';
    char chunk[1501];
    memset(chunk, 'c', 1500);
    chunk[1500] = '\0';
    char req[8000];
    snprintf(req, sizeof(req),
             "POST /body HTTP/1.1\r\nHost: t\r\nX-Pad: %s\r\nTransfer-Encoding: chunked\r\n\r\n5dc\r\n%s\r\n0\r\n"
             "X-Request-Id: from-the-trailer\r\nX-Other: 1\r\n\r\n",
             pad, chunk);
    send_str(req);
    const char *r = collect(20);
    cr_assert(strstr(r, "HTTP/1.1 200 OK"), "got: %s", r);
    cr_assert(strstr(r, "{\"len\":1500}"), "got: %s", r);
    char id[128];
    cr_assert_not_null(header_of(r, "X-Request-Id: ", id, sizeof(id)));
    cr_assert_str_neq(id, "from-the-trailer", "a trailer must never act as a header");
    cr_assert_not(eof, "trailers are allowed: the connection stays open");
}

Test(http_framing, trailer_section_is_bounded)
{
    send_str("POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\nX-T: ");
    static char big[20000];
    memset(big, 'v', sizeof(big));
    send_all(big, sizeof(big)); /* max_header_bytes is 16384 in the fixture */
    const char *r = collect(20);
    cr_assert(strstr(r, "HTTP/1.1 431 "), "got: %.200s", r);
    cr_assert(strstr(r, "trailer"), "got: %.300s", r);
}

/* ---- Host and field names ---- */

static void expect_400(const char *request, const char *detail)
{
    send_str(request);
    const char *r = collect(20);
    cr_assert(strstr(r, "HTTP/1.1 400 Bad Request\r\n"), "%s got: %s", request, r);
    cr_assert(strstr(r, "Connection: close\r\n"), "got: %s", r);
    cr_assert(strstr(r, "application/problem+json"), "got: %s", r);
    cr_assert(strstr(r, detail), "wanted \"%s\", got: %s", detail, r);
}

Test(http_framing, http11_without_host_is_400)
{
    expect_400("GET /hello HTTP/1.1\r\n\r\n", "must carry a Host header");
}

Test(http_framing, two_host_headers_are_400)
{
    expect_400("GET /hello HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", "more than one Host header");
}

Test(http_framing, invalid_host_is_400)
{
    expect_400("GET /hello HTTP/1.1\r\nHost: exa mple:80\r\n\r\n", "not a valid host");
}

Test(http_framing, invalid_host_in_http10_is_400_too)
{
    expect_400("GET /hello HTTP/1.0\r\nHost: a/b\r\n\r\n", "not a valid host");
}

Test(http_framing, host_forms_that_are_valid)
{
    send_str("GET /hello HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n"
             "GET /hello HTTP/1.1\r\nhost: 127.0.0.1  \r\n\r\n" /* trailing whitespace is not part of it */
             "GET /hello HTTP/1.1\r\nHost:\r\n\r\n"            /* empty: no authority (RFC 9112 3.2) */
             "GET /hello HTTP/1.0\r\n\r\n");                    /* HTTP/1.0 may omit it */
    const char *r = collect(20);
    cr_assert_eq(count(r, "HTTP/1.1 200 OK"), 4, "got: %s", r);
}

Test(http_framing, empty_header_name_is_400)
{
    expect_400("GET /hello HTTP/1.1\r\nHost: t\r\n: value\r\n\r\n", "empty name");
}

Test(http_framing, obs_fold_is_400)
{
    expect_400("GET /hello HTTP/1.1\r\nHost: t\r\nX-A: abc\r\n def\r\n\r\n", "obs-fold");
}

Test(http_framing, obs_fold_split_across_reads_is_400_and_a_plain_split_is_not)
{
    send_str("GET /hello HTTP/1.1\r\nHost: t\r\nX-A: ab");
    spin(5);
    send_str("c\r\n\r\n");
    cr_assert(strstr(collect(20), "HTTP/1.1 200 OK"), "a value split by a read is one value");
    send_str("GET /hello HTTP/1.1\r\nHost: t\r\nX-A: abc\r\n");
    spin(5);
    send_str("\tdef\r\n\r\n");
    cr_assert(strstr(collect(20), "HTTP/1.1 400 "), "got: %s", received);
}

Test(http_framing, http10_with_transfer_encoding_is_400)
{
    expect_400("POST /body HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
               "Transfer-Encoding is not allowed in HTTP/1.0");
}

/* ---- chunk extensions ---- */

Test(http_framing, chunk_extensions_are_ignored)
{
    send_str("POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
             "5;q=\"a b\";name\r\nhello\r\n0;last=1\r\n\r\n");
    const char *r = collect(20);
    cr_assert(strstr(r, "{\"len\":5}"), "got: %s", r);
}

Test(http_framing, long_chunk_extension_is_400_and_closes)
{
    send_str("POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5;x=");
    static char ext[8192];
    memset(ext, 'e', sizeof(ext));
    send_all(ext, sizeof(ext));
    send_str("\r\nhello\r\n0\r\n\r\n");
    const char *r = collect(20);
    cr_assert(strstr(r, "HTTP/1.1 400 "), "got: %.300s", r);
    cr_assert(strstr(r, "chunk extensions exceed"), "got: %.300s", r);
    cr_assert(strstr(r, "Connection: close\r\n"));
}

Test(http_framing, chunk_size_line_with_endless_leading_zeros_is_400)
{
    /* llhttp accepts any number of leading zeros and reports none of them: the line is measured from
     * outside, across reads */
    send_str("POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n");
    static char zeros[1024];
    memset(zeros, '0', sizeof(zeros));
    for (int i = 0; i < 8; i++)
        send_all(zeros, sizeof(zeros));
    send_str("5\r\nhello\r\n0\r\n\r\n");
    const char *r = collect(20);
    cr_assert(strstr(r, "HTTP/1.1 400 "), "got: %.300s", r);
    cr_assert(strstr(r, "chunk-size line exceeds"), "got: %.300s", r);
    cr_assert(strstr(r, "Connection: close\r\n"));
}

Test(http_framing, many_small_chunks_and_some_leading_zeros_are_served)
{
    /* 3,000 one-byte chunks (15 KB of framing in all, 5 bytes between data bytes) in one write, then
     * a size with a few leading zeros: only the framing between two chunks' data is bounded */
    static char body[3000 * 6 + 64];
    size_t len = 0;
    for (int i = 0; i < 3000; i++)
        len += (size_t)snprintf(body + len, sizeof(body) - len, "1\r\nx\r\n");
    len += (size_t)snprintf(body + len, sizeof(body) - len, "00000005\r\nhello\r\n0\r\n\r\n");
    send_str("POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n");
    send_all(body, len);
    const char *r = collect(20);
    cr_assert(strstr(r, "{\"len\":3005}"), "got: %.300s", r);
}

/* ---- refused from the head ---- */

Test(http_framing, expect_continue_gets_the_final_status_at_once_when_the_head_decides)
{
    const char *cases[][2] = {
        {"POST /nope HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n", "HTTP/1.1 404 "},
        {"POST /hello HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n", "HTTP/1.1 405 "},
        {"BREW /pot HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Length: 100\r\n\r\n", "HTTP/1.1 501 "},
        {"POST /json HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Type: text/plain\r\n"
         "Content-Length: 100\r\n\r\n",
         "HTTP/1.1 415 "},
        {"POST /json HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n",
         "HTTP/1.1 415 "},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (i) { /* a fresh connection for every case: each answer closes its own */
            close(client_fd);
            int fds[2];
            cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds), 0);
            client_fd = fds[1];
            http_conn_accept(loop, fds[0], NULL, false);
        }
        send_str(cases[i][0]); /* and no body: the client waits for 100 Continue */
        const char *r = collect(20);
        cr_assert(strncmp(r, cases[i][1], strlen(cases[i][1])) == 0, "case %zu: no 100, the final status: %s", i, r);
        cr_assert(strstr(r, "Connection: close\r\n"), "case %zu: the body is left unread: %s", i, r);
    }
}

Test(http_framing, expect_continue_on_a_good_json_route_still_gets_100)
{
    send_str("POST /json HTTP/1.1\r\nHost: t\r\nExpect: 100-continue\r\nContent-Type: application/json\r\n"
             "Content-Length: 2\r\n\r\n");
    cr_assert_str_eq(collect(10), "HTTP/1.1 100 Continue\r\n\r\n");
    send_str("{}");
    cr_assert(strstr(collect(10), "{\"len\":2}"));
}

Test(http_framing, refused_body_is_read_but_not_kept)
{
    static char body[150000];
    memset(body, 'b', sizeof(body));
    send_str("POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 150000\r\n\r\n");
    send_all(body, 100000);
    spin(5);
    http_conn *conn = loop->conns;
    cr_assert_not_null(conn);
    cr_assert_eq(conn->body.cap, 0, "a 404's body is not buffered (%zu bytes held)", conn->body.cap);
    send_all(body + 100000, 50000);
    send_str("POST /json HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nabc"
             "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    const char *r = collect(30);
    cr_assert(strstr(r, "HTTP/1.1 404 "), "got: %s", r);
    cr_assert(strstr(r, "HTTP/1.1 415 "), "got: %s", r);
    cr_assert(strstr(r, "HTTP/1.1 200 OK"), "without Expect the connection stays usable: %s", r);
    cr_assert_not(eof);
}

/* ---- lingering close ---- */

Test(http_framing, lingering_drain_reads_a_bounded_amount_per_wakeup)
{
    int big = 4 << 20;
    setsockopt(client_fd, SOL_SOCKET, SO_SNDBUF, &big, sizeof(big));
    send_str("GET / HTTP/1.1\r\nBad Header\r\n\r\n");
    cr_assert(strstr(collect(10), "HTTP/1.1 400 "));
    http_conn *conn = loop->conns;
    cr_assert_not_null(conn);
    cr_assert_eq(conn->state, HTTP_CONN_LINGER);
    static char junk[1 << 20];
    size_t sent = 0;
    ssize_t n;
    while (sent < sizeof(junk) && (n = send(client_fd, junk, sizeof(junk) - sent, MSG_NOSIGNAL)) > 0)
        sent += (size_t)n;
    cr_assert_gt(sent, 256 * 1024, "the socket pair took only %zu bytes", sent);
    event_base_loop(http_loop_base(loop), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    int unread = 0;
    cr_assert_eq(ioctl(conn->fd, FIONREAD, &unread), 0);
    cr_assert_gt((size_t)unread, sent - 70 * 1024, "one wake-up drained %zu of %zu bytes", sent - (size_t)unread,
                 sent);
}

/* A client that asked to close and sent nothing after its request has nothing to drain: the connection
 * closes as soon as the answer is out, without a shutdown, a wait for the client's FIN and a linger
 * timer (before, it lingered like after an error: state LINGER until the client closed). */
Test(http_framing, a_client_close_with_nothing_after_it_closes_at_once)
{
    send_str("POST /body HTTP/1.1\r\nHost: t\r\nConnection: close\r\nContent-Length: 2\r\n\r\n20");
    const char *r = collect(10);
    cr_assert(strstr(r, "HTTP/1.1 200 OK"), "got: %s", r);
    cr_assert(strstr(r, "Connection: close\r\n"), "got: %s", r);
    cr_assert(eof, "the server closed the connection");
    cr_assert_null(loop->conns, "the connection was freed at once, not left lingering");
    cr_assert_eq(active(), 0);
}

Test(http_framing, a_client_close_followed_by_more_bytes_still_lingers)
{
    /* Bytes after a Connection: close request break RFC 9112 9.6, but closing with them unread would
     * reset the connection under the answer: they are drained as after an error. */
    send_str("GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\nGET /hello HTTP/1.1\r\n");
    const char *r = collect(10);
    cr_assert_eq(count(r, "HTTP/1.1 200 OK"), 1, "got: %s", r);
    cr_assert_not_null(loop->conns);
    cr_assert_eq(loop->conns->state, HTTP_CONN_LINGER);
}

Test(http_framing, an_error_answer_still_lingers)
{
    send_str("GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\nBad Header\r\n\r\n");
    cr_assert(strstr(collect(10), "HTTP/1.1 400 "));
    cr_assert_not_null(loop->conns);
    cr_assert_eq(loop->conns->state, HTTP_CONN_LINGER);
}

/* ---- llhttp and the fast GET reader (http_fasthead.c) on one connection ---- */

/* Heads llhttp reads (bodies, HTTP/1.0, Connection) and heads the fast reader takes, one after another:
 * llhttp is left paused after a message of its own while the fast reader answers the next, so each must
 * start its next message where the other stopped, with keep-alive as the message it read said. The
 * HTTP/1.0 request without keep-alive ends the connection: the GET after it is never answered. */
static const char *const turns[] = {
    "POST /body HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\n20",
    "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
    "POST /body HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n20\r\n0\r\n\r\n",
    "GET /hello HTTP/1.0\r\nHost: t\r\nConnection: keep-alive\r\n\r\n",
    "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
    "GET /hello HTTP/1.0\r\nHost: t\r\n\r\n",
    "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n",
};
#define TURNS (sizeof(turns) / sizeof(turns[0]))

static void expect_turns(const char *r)
{
    cr_assert_eq(count(r, " 200 OK\r\n"), 6, "got: %s", r);
    cr_assert_eq(count(r, "\"len\":2"), 2, "both bodies read whole: %s", r);
    cr_assert_eq(count(r, "Connection: close\r\n"), 1, "only the last HTTP/1.0 answer closes: %s", r);
    cr_assert(eof || (loop->conns && loop->conns->state == HTTP_CONN_LINGER), "the connection ends after it");
}

Test(http_framing, llhttp_and_the_fast_reader_take_turns_in_one_read)
{
    char all[1024] = "";
    for (size_t i = 0; i < TURNS; i++)
        strcat(all, turns[i]);
    send_str(all);
    expect_turns(collect(20));
}

Test(http_framing, llhttp_and_the_fast_reader_take_turns_a_read_each)
{
    /* Each message read on its own: llhttp waits paused after its message while the fast reader
     * answers the next from a later read. (The last one is not sent: the connection is closed by then.) */
    for (size_t i = 0; i + 1 < TURNS; i++) {
        send_str(turns[i]);
        spin(2);
    }
    expect_turns(collect(20));
}

Test(http_framing, llhttp_and_the_fast_reader_take_turns_in_pieces)
{
    /* Five bytes a read: no head is whole when its first byte arrives, so llhttp reads every one. */
    char all[1024] = "";
    for (size_t i = 0; i < TURNS; i++)
        strcat(all, turns[i]);
    for (size_t off = 0, n = strlen(all); off < n; off += 5) {
        send_all(all + off, n - off < 5 ? n - off : 5);
        event_base_loop(http_loop_base(loop), EVLOOP_ONCE | EVLOOP_NONBLOCK);
    }
    expect_turns(collect(20));
}

/* ---- output memory ---- */

Test(http_framing, output_memory_is_bounded_whatever_the_reading_pattern)
{
    /* A client that pipelines many requests and reads slowly: the unsent part stays under the limit,
     * and so must the allocation (before, the consumed prefix was never reclaimed). */
    settings.output_buffer_bytes = 16384;
    int small = 4096; /* a socket pair buffers on the sending side: make the server's side small */
    setsockopt(loop->conns->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
    static const char one[] = "GET /hello HTTP/1.1\r\nHost: t\r\n\r\n";
    size_t max_cap = 0, answers_read = 0;
    char sink[1024]; /* read less than is produced: answers queue up on the server */
    for (int round = 0; round < 4000; round++) {
        for (int k = 0; k < 8; k++) /* keep requests arriving while answers wait to be read */
            send(client_fd, one, sizeof(one) - 1, MSG_NOSIGNAL | MSG_DONTWAIT);
        event_base_loop(http_loop_base(loop), EVLOOP_ONCE | EVLOOP_NONBLOCK);
        ssize_t n = recv(client_fd, sink, sizeof(sink), MSG_DONTWAIT);
        if (n > 0)
            answers_read += (size_t)n;
        http_conn *conn = loop->conns;
        if (conn && conn->out.cap > max_cap)
            max_cap = conn->out.cap;
    }
    cr_assert_gt(answers_read, 1000000, "the client read %zu bytes", answers_read);
    cr_assert_leq(max_cap, 2 * (16384 + 4096), "the output buffer grew to %zu bytes", max_cap);
}

/* ---- half-closed clients ---- */

Test(http_framing, a_half_closed_client_gets_every_answer_async_and_sync)
{
    /* The client sends an asynchronous request and a synchronous one behind it, then shuts its write
     * side: it still reads, so both answers come, in order, and then the server closes. */
    settings.half_close_answer = true; /* "answer": the default, "cancel", is tested below */
    send_str("GET /async HTTP/1.1\r\nHost: t\r\n\r\nGET /hello HTTP/1.1\r\nHost: t\r\n\r\n");
    shutdown(client_fd, SHUT_WR);
    const char *r = collect(200);
    const char *later_pos = strstr(r, "\"later\"");
    const char *hi_pos = strstr(r, "\"hi\"");
    cr_assert(later_pos && hi_pos && later_pos < hi_pos, "got: %s", r);
    cr_assert_eq(cancel_calls, 0, "a half-close is not a disconnect");
    cr_assert(eof, "the server closes once everything is answered");
}

Test(http_framing, by_default_a_half_close_cancels_the_request_in_flight)
{
    /* half_close "cancel" (issue 18): the end of input with a request in flight is a client that
     * left; the synchronous answer queued before it still goes out. */
    send_str("GET /hello HTTP/1.1\r\nHost: t\r\n\r\nGET /async HTTP/1.1\r\nHost: t\r\n\r\n");
    shutdown(client_fd, SHUT_WR);
    const char *r = collect(200);
    cr_assert_not_null(strstr(r, "\"hi\""), "got: %s", r);
    cr_assert_null(strstr(r, "\"later\""), "got: %s", r);
    cr_assert_eq(cancel_calls, 1, "the request in flight was cancelled");
    cr_assert(eof, "the server closes");
}
