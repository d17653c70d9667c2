/* http_client_tls_test: the HTTP client against a real HTTPS server (tests/unit/clients/tls_upstream.py,
 * Python's http.server behind its ssl module) with a test CA made here with the openssl CLI: the right
 * CA and host name are accepted and the connection is pooled; a wrong host name, an unknown CA and
 * the system store (which does not know the test CA) are refused before a byte of request is sent;
 * request header fields arrive, response header fields are read back case-insensitively; a call's own
 * body bound; absolute URLs only for origins on the allow-list; a peer that does not speak TLS; a call
 * that gives up mid-exchange closes its TLS connection, one that leaves mid-handshake leaves it to the
 * pool. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <event2/event.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "async.h"
#include "http_client_internal.h"

#define TEST_WAIT_MS 10000u

static struct event_base *base;
static async_scope *scope;
static http_client *client;
static http_client_upstream cfg;
static char dir[64];
static unsigned port;
static pid_t server_pid;
static int server_stdin = -1;

/* A CA, a server certificate it signed for the name "localhost" only (server.pem), one it signed for
 * "wrong.test" (wrong.pem), and an unrelated CA. */
static void make_certs(void)
{
    strcpy(dir, "/tmp/apiary_tls_XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "(cd %s && "
             "K='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes' && "
             "openssl req -x509 $K -keyout ca.key -out ca.pem -days 2 -subj /CN=apiary-test-ca && "
             "openssl req -x509 $K -keyout other.key -out other.pem -days 2 -subj /CN=other-ca && "
             "openssl req $K -keyout server.key -out server.csr -subj /CN=localhost && "
             "printf 'subjectAltName=DNS:localhost\\n' > ext && "
             "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
             "-extfile ext -out server.pem && "
             "openssl req $K -keyout wrong.key -out wrong.csr -subj /CN=wrong.test && "
             "printf 'subjectAltName=DNS:wrong.test\\n' > wext && "
             "openssl x509 -req -in wrong.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
             "-extfile wext -out wrong.pem) >/dev/null 2>&1",
             dir);
    cr_assert_eq(system(cmd), 0, "openssl could not make the test certificates");
}

/* Starts tls_upstream.py with DIR/NAME.pem and DIR/NAME.key. */
static void start_server(const char *name)
{
    int in[2], out[2];
    cr_assert_eq(pipe(in), 0);
    cr_assert_eq(pipe(out), 0);
    server_pid = fork();
    cr_assert_geq(server_pid, 0);
    if (server_pid == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        close(in[1]);
        close(out[0]);
        char cert[128], key[128];
        snprintf(cert, sizeof(cert), "%s/%s.pem", dir, name);
        snprintf(key, sizeof(key), "%s/%s.key", dir, name);
        const char *py = access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
        execlp(py, py, APIARY_SOURCE_DIR "/tests/integration/tls_upstream.py", cert, key, (char *)NULL);
        _exit(127);
    }
    close(in[0]);
    close(out[1]);
    server_stdin = in[1];
    char line[32] = "";
    FILE *f = fdopen(out[0], "r");
    cr_assert_not_null(fgets(line, sizeof(line), f), "the TLS upstream did not start");
    fclose(f);
    port = (unsigned)atoi(line);
    cr_assert_gt(port, 0);
}

static void setup(void)
{
    make_certs();
    start_server("server");
    base = event_base_new();
    scope = async_scope_new(base);
    client = http_client_new(base);
    memset(&cfg, 0, sizeof(cfg));
    http_client_upstream_defaults(&cfg);
    cfg.max_idle = 4;
    strcpy(cfg.name, "tls");
    strcpy(cfg.host, "localhost");
    cfg.port = port;
    cfg.tls = true;
    snprintf(cfg.ca_file, sizeof(cfg.ca_file), "%s/ca.pem", dir);
    cfg.connect_timeout_ms = 5000;
    cfg.timeout_ms = 8000;
}

static void stop_server(void)
{
    close(server_stdin); /* the server's stdin closes: it stops */
    kill(server_pid, SIGTERM);
    waitpid(server_pid, NULL, 0);
}

static void teardown(void)
{
    async_scope_free(scope);
    http_client_free(client);
    event_base_free(base);
    stop_server();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    cr_expect_eq(system(cmd), 0);
}

TestSuite(http_client_tls, .init = setup, .fini = teardown, .timeout = 60);

static int done_count;

static void on_done(async_op *op, void *arg)
{
    (void)op;
    (void)arg;
    done_count++;
}

static bool guard_fired;

static void guard_cb(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    (void)arg;
    guard_fired = true;
    event_base_loopbreak(base);
}

static async_op *await_op(async_op *op)
{
    int want = done_count + 1;
    async_op_then(op, on_done, NULL);
    guard_fired = false;
    struct event *guard = evtimer_new(base, guard_cb, NULL);
    struct timeval tv = {TEST_WAIT_MS / 1000, 0};
    evtimer_add(guard, &tv);
    while (done_count < want && !guard_fired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(guard);
    cr_assert_eq(done_count, want, "the call did not complete");
    return op;
}

static async_op *get(const http_client_upstream *up, const char *path, const http_client_options *opts)
{
    return await_op(http_client_send(scope, client, up, "GET", path, opts));
}

static unsigned pool_of_total(void) { return client->pools ? client->pools->total : 0; }

static http_client_stats stats(void)
{
    http_client_stats s;
    http_client_stats_get(client, &s);
    return s;
}

/* The value of request header `name` as the upstream saw it (its echo), or NULL. */
static const char *echoed_header(json_t *echo, const char *name)
{
    size_t i;
    json_t *pair;
    json_array_foreach(json_object_get(echo, "headers"), i, pair)
        if (strcasecmp(json_string_value(json_array_get(pair, 0)), name) == 0)
            return json_string_value(json_array_get(pair, 1));
    return NULL;
}

static json_t *ok_json(const async_op *op)
{
    cr_assert_eq(op->status, ASYNC_OK, "call failed: %s", op->error ? op->error : "?");
    const http_client_response *resp = op->value;
    cr_assert_eq(resp->status, 200);
    json_t *v = http_client_response_json(resp, 16, 1000);
    cr_assert_not_null(v, "not JSON: %s", resp->body);
    return v;
}

Test(http_client_tls, the_right_ca_and_name_are_accepted_and_headers_go_both_ways)
{
    http_client_header fields[] = {{"Authorization", "Bearer s3cret"},
                                   {"Accept", "application/json"},
                                   {"User-Agent", "my-app/2.0"}};
    http_client_options o = {.headers = fields, .header_count = 3};
    async_op *op = get(&cfg, "/users/1?x=y", &o);
    json_t *echo = ok_json(op);
    cr_expect_str_eq(json_string_value(json_object_get(echo, "target")), "/users/1?x=y");
    cr_expect_str_eq(echoed_header(echo, "authorization"), "Bearer s3cret");
    cr_expect_str_eq(echoed_header(echo, "Accept"), "application/json");
    cr_expect_str_eq(echoed_header(echo, "User-Agent"), "my-app/2.0", "the caller's replaces apiary's");
    char host[64];
    snprintf(host, sizeof(host), "localhost:%u", port);
    cr_expect_str_eq(echoed_header(echo, "Host"), host);
    json_decref(echo);

    const http_client_response *resp = op->value;
    cr_expect_str_eq(http_client_response_header(resp, "content-type"), "application/json");
    cr_expect_str_eq(http_client_response_header(resp, "X-UPSTREAM"), "tls");
    cr_expect_null(http_client_response_header(resp, "X-Missing"));

    /* Keep-alive over TLS: the second call reuses the pooled connection. */
    json_t *again = ok_json(get(&cfg, "/users/2", NULL));
    cr_expect_eq(json_integer_value(json_object_get(again, "conn")), 1, "the same connection");
    cr_expect_not_null(strstr(echoed_header(again, "User-Agent"), "apiary/"), "apiary's by default");
    json_decref(again);
    cr_expect_eq(stats().connections_opened, 1);
    cr_expect_eq(stats().connections_reused, 1);
}

Test(http_client_tls, a_post_body_of_another_type)
{
    http_client_options o = {.body = "a=1&b=2", .body_len = 7, .content_type = "application/x-www-form-urlencoded"};
    json_t *echo = ok_json(await_op(http_client_send(scope, client, &cfg, "POST", "/form", &o)));
    cr_expect_str_eq(json_string_value(json_object_get(echo, "body")), "a=1&b=2");
    cr_expect_str_eq(echoed_header(echo, "Content-Type"), "application/x-www-form-urlencoded");
    json_decref(echo);
}

Test(http_client_tls, a_wrong_host_name_is_refused)
{
    strcpy(cfg.host, "127.0.0.1"); /* the certificate names localhost only */
    async_op *op = get(&cfg, "/x", NULL);
    cr_assert_eq(op->status, ASYNC_FAILED);
    cr_expect_str_eq(op->error, "certificate_rejected");
    cr_expect_eq(stats().errors[HTTP_CLIENT_ERR_CERT_REJECTED], 1);
    cr_expect_eq(pool_of_total(), 0);
}

Test(http_client_tls, a_certificate_for_another_name_is_refused)
{
    stop_server();
    start_server("wrong"); /* signed by the trusted CA, for wrong.test */
    cfg.port = port;
    async_op *op = get(&cfg, "/x", NULL);
    cr_assert_eq(op->status, ASYNC_FAILED);
    cr_expect_str_eq(op->error, "certificate_rejected");
}

Test(http_client_tls, an_unknown_ca_is_refused)
{
    snprintf(cfg.ca_file, sizeof(cfg.ca_file), "%s/other.pem", dir);
    async_op *op = get(&cfg, "/x", NULL);
    cr_assert_eq(op->status, ASYNC_FAILED);
    cr_expect_str_eq(op->error, "certificate_rejected");
}

Test(http_client_tls, the_system_store_does_not_know_the_test_ca)
{
    cfg.ca_file[0] = '\0';
    async_op *op = get(&cfg, "/x", NULL);
    cr_assert_eq(op->status, ASYNC_FAILED);
    cr_expect_str_eq(op->error, "certificate_rejected");
}

Test(http_client_tls, a_ca_file_that_cannot_be_read_fails_the_calls)
{
    strcpy(cfg.ca_file, "/nonexistent/ca.pem");
    async_op *op = get(&cfg, "/x", NULL);
    cr_assert_eq(op->status, ASYNC_FAILED);
    cr_expect_str_eq(op->error, "tls_failed");
}

Test(http_client_tls, a_call_has_its_own_body_bound)
{
    http_client_options small = {.max_response_bytes = 100};
    async_op *op = get(&cfg, "/big?bytes=500", &small);
    cr_assert_eq(op->status, ASYNC_FAILED);
    cr_expect_str_eq(op->error, "response_too_large");
    http_client_options big = {.max_response_bytes = 1000};
    op = get(&cfg, "/big?bytes=500", &big);
    cr_assert_eq(op->status, ASYNC_OK, "%s", op->error ? op->error : "");
    cr_expect_eq(((const http_client_response *)op->value)->body_len, 502);
}

Test(http_client_tls, bad_header_fields_send_nothing)
{
    const http_client_header bad[][1] = {{{"X-A", "line\r\nInjected: 1"}}, {{"Host", "evil.example"}},
                                         {{"Content-Length", "5"}}, {{"Bad Name", "x"}},
                                         {{"X-B:", "x"}}, {{"", "x"}}, {{"Transfer-Encoding", "chunked"}},
                                         {{"X-C", "nul\x01"}}, {{"X-D", "caf\xc3\xa9"}}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        http_client_options o = {.headers = bad[i], .header_count = 1};
        async_op *op = get(&cfg, "/x", &o);
        cr_expect_str_eq(op->error, "invalid_request", "header %zu", i);
    }
    cr_expect_eq(stats().connections_opened, 0, "nothing was sent");
}

Test(http_client_tls, absolute_urls_only_for_allowed_origins)
{
    http_client_allowlist list = {&cfg, 1};
    char url[128];
    snprintf(url, sizeof(url), "https://LOCALHOST:%u/a/b?c=d", port);
    json_t *echo = ok_json(await_op(http_client_fetch_on(scope, client, &list, "GET", url, NULL)));
    cr_expect_str_eq(json_string_value(json_object_get(echo, "target")), "/a/b?c=d");
    json_decref(echo);

    const char *refused[] = {"http://localhost:%u/x",           /* another scheme */
                             "https://localhost:%u0/x",         /* another port */
                             "https://127.0.0.1:%u/x",          /* another host */
                             "https://user@localhost:%u/x",     /* user information */
                             "https://localhost:%u#frag",       /* not a path */
                             "https://localhost:%u/x y",        /* not a valid path */
                             "https://evil.example/?%u",        /* anything else */
                             "ftp://localhost:%u/x"};
    for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
        snprintf(url, sizeof(url), refused[i], port);
        async_op *op = await_op(http_client_fetch_on(scope, client, &list, "GET", url, NULL));
        cr_expect_str_eq(op->error, "url_not_allowed", "%s", url);
    }
    cr_expect_eq(stats().errors[HTTP_CLIENT_ERR_URL_NOT_ALLOWED], 8);
    cr_expect_eq(stats().connections_opened, 1, "only the allowed call connected");

    /* Without a published list nothing is allowed. */
    cr_expect_null(http_client_allowed(NULL, url, &(const char *){NULL}));
    const char *path = NULL;
    snprintf(url, sizeof(url), "https://localhost:%u", port);
    cr_expect_eq(http_client_allowed(&list, url, &path), &cfg);
    cr_expect_str_eq(path, "/");
}

/* A peer that answers a ClientHello with plain HTTP: not a certificate matter, tls_failed. */
static void plain_on_accept(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    int c = accept(fd, NULL, NULL);
    if (c < 0)
        return;
    static const char answer[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    cr_assert_eq(write(c, answer, sizeof(answer) - 1), (ssize_t)sizeof(answer) - 1);
    close(c);
}

Test(http_client_tls, a_peer_that_does_not_speak_tls)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(listen(fd, 8), 0);
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    struct event *ev = event_new(base, fd, EV_READ | EV_PERSIST, plain_on_accept, NULL);
    event_add(ev, NULL);
    cfg.port = ntohs(sin.sin_port);
    async_op *op = get(&cfg, "/x", NULL);
    cr_assert_eq(op->status, ASYNC_FAILED);
    cr_expect_str_eq(op->error, "tls_failed");
    cr_expect_eq(pool_of_total(), 0);
    event_free(ev);
    close(fd);
}

Test(http_client_tls, giving_up_mid_exchange_closes_the_tls_connection)
{
    cfg.timeout_ms = 300;
    async_op *op = get(&cfg, "/slow?ms=2000", NULL);
    cr_assert_eq(op->status, ASYNC_TIMEOUT);
    cr_expect_eq(pool_of_total(), 0, "half an exchange cannot be resumed: closed, its session freed");
    cfg.timeout_ms = 8000;
    json_t *echo = ok_json(get(&cfg, "/after", NULL));
    cr_expect_eq(json_integer_value(json_object_get(echo, "conn")), 2, "a fresh connection");
    json_decref(echo);
}

/* A peer that accepts and never says a word: a handshake that stays in progress. */
static int silent_peer = -1;

static void silent_on_accept(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    (void)arg;
    int c = accept(fd, NULL, NULL);
    if (c >= 0)
        silent_peer = c;
}

static void run_until_state(http_client_conn *conn, http_client_conn_state want)
{
    guard_fired = false;
    struct event *guard = evtimer_new(base, guard_cb, NULL);
    struct timeval tv = {TEST_WAIT_MS / 1000, 0};
    evtimer_add(guard, &tv);
    while (conn->state != want && !guard_fired)
        event_base_loop(base, EVLOOP_ONCE);
    event_free(guard);
}

Test(http_client_tls, leaving_mid_handshake_leaves_the_connection_to_its_timeout)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    cr_assert_eq(bind(fd, (struct sockaddr *)&sin, sizeof(sin)), 0);
    cr_assert_eq(listen(fd, 8), 0);
    socklen_t len = sizeof(sin);
    getsockname(fd, (struct sockaddr *)&sin, &len);
    struct event *ev = event_new(base, fd, EV_READ | EV_PERSIST, silent_on_accept, NULL);
    event_add(ev, NULL);
    strcpy(cfg.host, "127.0.0.1");
    cfg.port = ntohs(sin.sin_port);
    cfg.connect_timeout_ms = 300;
    async_op *op = http_client_send(scope, client, &cfg, "GET", "/x", NULL);
    async_op_then(op, on_done, NULL);
    http_client_conn *conn = client->pools->conns;
    run_until_state(conn, HTTP_CLIENT_CONN_HANDSHAKE);
    cr_assert_eq(conn->state, HTTP_CLIENT_CONN_HANDSHAKE, "the ClientHello is out, no answer comes");
    cr_assert_not_null(conn->ssl);
    async_op_cancel(op); /* the caller leaves mid-handshake */
    cr_assert_eq(pool_of_total(), 1, "the connection goes on, for whoever comes next");
    cr_assert_null(conn->dialer);
    /* connect_timeout_ms bounds the handshake too: then it goes, its session freed (ASan checks). */
    const int before = done_count;
    for (int i = 0; i < 100 && pool_of_total() > 0; i++) {
        struct timeval tv = {0, 20000};
        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
    }
    cr_expect_eq(pool_of_total(), 0);
    cr_expect_eq(done_count, before, "nothing completes into the caller that left");
    cr_expect_eq(stats().cancelled, 1);
    event_free(ev);
    if (silent_peer >= 0)
        close(silent_peer);
    close(fd);
}
