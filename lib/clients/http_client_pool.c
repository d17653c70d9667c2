/* http_client_pool: the keep-alive connections of one loop to one upstream. Opens them (DNS through
 * evdns for host names, a non-blocking connect to each resolved address in turn, all within
 * connect_timeout_ms), hands them to calls (an idle one first, else a new one while fewer than
 * max_connections exist, else a place in a FIFO waiting line), writes a call's request, feeds the
 * response to the reader, and afterwards keeps the connection (at most max_idle, each for at most
 * idle_timeout_ms) or closes it.
 *
 * Ownership (see http_client_internal.h): the pool owns its connections and frees them only in
 * http_client_conn_destroy. A call is scope memory and is reachable from here only through
 * call->waiting, conn->call and conn->dialer, which http_client_pool_abandon clears when the call's
 * future is cancelled. Every function that may destroy a connection is the last thing its caller does
 * with it: after a call that can fail the connection, nothing touches it again.
 *
 * TLS (up->tls): after the TCP connect the connection does its handshake (still bounded by
 * connect_timeout_ms) with a context of the pool that verifies the certificate chain against the
 * system CA store or up->ca_file and the host name (or IP address) against the certificate; only then
 * does it carry a call. From there the same events drive SSL_read / SSL_write instead of recv / send,
 * and keep-alive pooling is the same.
 *
 * Opening a connection never fails inside the function that asked for it: a connect or DNS failure
 * found at once is reported from the loop through defer_ev, and connections for the waiting line are
 * opened from the loop (kick_ev), so a long line never recurses. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/dns.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "http_client_internal.h"
#include "log.h"
#include "xalloc_internal.h"

/* A DNS request in flight. Owned by the request: its callback always runs, even after a cancel, and
 * frees it; the connection only forgets it (conn = NULL) when it goes first. */
struct http_client_lookup {
    http_client *client;
    http_client_conn *conn;
    struct evdns_getaddrinfo_request *req;
};

typedef enum http_client_fail_where {
    HTTP_CLIENT_FAIL_PROTOCOL, /* the bytes were wrong: never a dead pooled connection */
    HTTP_CLIENT_FAIL_RECV,     /* EOF or reset while waiting for the response */
    HTTP_CLIENT_FAIL_SEND,     /* the request could not be written */
} http_client_fail_where;

static void http_client_conn_on_read(evutil_socket_t fd, short what, void *arg);
static void http_client_conn_on_write(evutil_socket_t fd, short what, void *arg);
static void http_client_conn_on_timer(evutil_socket_t fd, short what, void *arg);
static void http_client_conn_handshake(http_client_conn *conn);
static void http_client_conn_on_defer(evutil_socket_t fd, short what, void *arg);
static void http_client_pool_offer(http_client_pool *pool, http_client_conn *conn);
static void http_client_pool_kick(http_client_pool *pool);

static struct timeval http_client_tv(unsigned ms)
{
    return (struct timeval){.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
}

/* ---- the waiting line ------------------------------------------------------------------------- */

static void http_client_wait_push(http_client_pool *pool, http_client_call *call)
{
    call->wnext = NULL;
    call->wprev = pool->wait_tail;
    if (pool->wait_tail)
        pool->wait_tail->wnext = call;
    else
        pool->wait_head = call;
    pool->wait_tail = call;
    call->waiting = true;
}

/* A call that was already served once and lost its connection goes back to the front. */
static void http_client_wait_push_front(http_client_pool *pool, http_client_call *call)
{
    call->wprev = NULL;
    call->wnext = pool->wait_head;
    if (pool->wait_head)
        pool->wait_head->wprev = call;
    else
        pool->wait_tail = call;
    pool->wait_head = call;
    call->waiting = true;
}

static void http_client_wait_remove(http_client_pool *pool, http_client_call *call)
{
    if (!call->waiting)
        return;
    if (call->wprev)
        call->wprev->wnext = call->wnext;
    else
        pool->wait_head = call->wnext;
    if (call->wnext)
        call->wnext->wprev = call->wprev;
    else
        pool->wait_tail = call->wprev;
    call->wprev = call->wnext = NULL;
    call->waiting = false;
}

static http_client_call *http_client_wait_pop(http_client_pool *pool)
{
    http_client_call *call = pool->wait_head;
    if (call)
        http_client_wait_remove(pool, call);
    return call;
}

/* ---- the idle list ---------------------------------------------------------------------------- */

/* Most recently used first: a busy pool keeps reusing the same few connections and lets the rest
 * reach idle_timeout_ms, so the pool shrinks back after a burst. */
static void http_client_idle_push(http_client_pool *pool, http_client_conn *conn)
{
    conn->idle_prev = NULL;
    conn->idle_next = pool->idle;
    if (pool->idle)
        pool->idle->idle_prev = conn;
    pool->idle = conn;
    pool->idle_count++;
}

static void http_client_idle_unlink(http_client_pool *pool, http_client_conn *conn)
{
    if (conn->idle_prev)
        conn->idle_prev->idle_next = conn->idle_next;
    else
        pool->idle = conn->idle_next;
    if (conn->idle_next)
        conn->idle_next->idle_prev = conn->idle_prev;
    conn->idle_prev = conn->idle_next = NULL;
    pool->idle_count--;
}

static http_client_conn *http_client_idle_oldest(const http_client_pool *pool)
{
    http_client_conn *conn = pool->idle;
    while (conn && conn->idle_next)
        conn = conn->idle_next;
    return conn;
}

/* ---- connection life ---------------------------------------------------------------------------- */

static http_client_conn *http_client_conn_new(http_client_pool *pool)
{
    http_client *client = pool->client;
    http_client_conn *conn = xcalloc(1, sizeof(*conn));
    conn->pool = pool;
    conn->fd = -1;
    evtimer_assign(&conn->timer_ev, client->base, http_client_conn_on_timer, conn);
    event_assign(&conn->defer_ev, client->base, -1, 0, http_client_conn_on_defer, conn);
    conn->next = pool->conns;
    if (pool->conns)
        pool->conns->prev = conn;
    pool->conns = conn;
    pool->total++;
    HTTP_CLIENT_STAT_ADD(client, connections_opened, 1);
    HTTP_CLIENT_STAT_ADD(client, connections_open, 1);
    return conn;
}

static void http_client_conn_close_socket(http_client_conn *conn)
{
    if (conn->ssl) {
        /* No close_notify: the socket goes now, and the peer learns it from the FIN. */
        SSL_free(conn->ssl);
        conn->ssl = NULL;
        conn->tls_dirty = false;
    }
    if (conn->fd < 0)
        return;
    event_del(&conn->read_ev);
    event_del(&conn->write_ev);
    close(conn->fd);
    conn->fd = -1;
}

/* The connection no longer wants the answer. The cancel makes the callback come soon, and the
 * callback frees the look-up. */
static void http_client_conn_drop_lookup(http_client_conn *conn)
{
    http_client_lookup *lookup = conn->lookup;
    if (!lookup)
        return;
    conn->lookup = NULL;
    lookup->conn = NULL;
    if (lookup->req)
        evdns_getaddrinfo_cancel(lookup->req);
}

/* The one place a connection is freed. Its call and dialer, if any, are let go of, not completed:
 * the caller decides what happens to them. */
static void http_client_conn_destroy(http_client_conn *conn)
{
    http_client_pool *pool = conn->pool;
    if (conn->state == HTTP_CLIENT_CONN_IDLE)
        http_client_idle_unlink(pool, conn);
    if (conn->prev)
        conn->prev->next = conn->next;
    else
        pool->conns = conn->next;
    if (conn->next)
        conn->next->prev = conn->prev;
    pool->total--;
    HTTP_CLIENT_STAT_ADD(pool->client, connections_open, (uint64_t)-1);
    http_client_conn_close_socket(conn);
    event_del(&conn->timer_ev);
    event_del(&conn->defer_ev);
    http_client_conn_drop_lookup(conn);
    if (conn->addrs)
        evutil_freeaddrinfo(conn->addrs);
    if (conn->call)
        conn->call->conn = NULL;
    if (conn->dialer)
        conn->dialer->dialing = NULL;
    http_client_reader_release(&conn->reader);
    free(conn);
}

/* ---- bytes in and out: the socket, or TLS on it ---------------------------------------------------- */

#define HTTP_CLIENT_IO_AGAIN (-2) /* nothing now; the events say when */

/* Reads up to cap bytes: > 0 bytes, 0 the peer closed cleanly, -1 broken, HTTP_CLIENT_IO_AGAIN. */
static ssize_t http_client_conn_read(http_client_conn *conn, char *buf, size_t cap)
{
    if (!conn->ssl) {
        ssize_t n = recv(conn->fd, buf, cap, 0);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return HTTP_CLIENT_IO_AGAIN;
        return n;
    }
    ERR_clear_error();
    int n = SSL_read(conn->ssl, buf, (int)cap);
    if (n > 0) {
        /* The event fires for the socket, not for what TLS already decrypted and holds: come back. */
        if (SSL_has_pending(conn->ssl))
            event_active(&conn->read_ev, EV_READ, 1);
        return n;
    }
    switch (SSL_get_error(conn->ssl, n)) {
    case SSL_ERROR_WANT_READ:
    case SSL_ERROR_WANT_WRITE: /* e.g. a TLS 1.3 session ticket arrived: no application data yet */
        return HTTP_CLIENT_IO_AGAIN;
    case SSL_ERROR_ZERO_RETURN:
        return 0; /* close_notify */
    default:
        /* Including a close without close_notify: for a close-delimited body that could be a cut, so it
         * is a broken connection, never a complete answer. */
        return -1;
    }
}

/* Writes up to len bytes: > 0 written, -1 broken, HTTP_CLIENT_IO_AGAIN. */
static ssize_t http_client_conn_write(http_client_conn *conn, const char *data, size_t len)
{
    if (!conn->ssl) {
        ssize_t n = send(conn->fd, data, len, MSG_NOSIGNAL);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return HTTP_CLIENT_IO_AGAIN;
        return n > 0 ? n : -1;
    }
    ERR_clear_error();
    int n = SSL_write(conn->ssl, data, len > INT32_MAX ? INT32_MAX : (int)len);
    if (n > 0)
        return n;
    int err = SSL_get_error(conn->ssl, n);
    if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        /* A record may be half on the wire: the same bytes must be offered again, and this call's
         * connection is not clean any more even though `sent` did not move. */
        conn->tls_dirty = true;
        return HTTP_CLIENT_IO_AGAIN;
    }
    return -1;
}

/* ---- a call on a connection ------------------------------------------------------------------- */

/* A pooled connection that fails before a single response byte most likely sat closed by the
 * upstream while idle; the request never reached anyone, so it is moved to a fresh connection once.
 * For a non-idempotent request that is only certain when the send itself failed. */
static bool http_client_conn_looks_stale(const http_client_conn *conn, const http_client_call *call,
                                         http_client_fail_where where)
{
    if (where == HTTP_CLIENT_FAIL_PROTOCOL || conn->served == 0 || conn->reader.got_bytes || call->stale_retried)
        return false;
    return where == HTTP_CLIENT_FAIL_SEND || call->idempotent;
}

static void http_client_conn_fail(http_client_conn *conn, http_client_error kind, http_client_fail_where where)
{
    http_client_pool *pool = conn->pool;
    http_client_call *call = conn->call;
    bool stale = http_client_conn_looks_stale(conn, call, where);
    conn->call = NULL;
    call->conn = NULL;
    http_client_conn_destroy(conn);
    if (stale) {
        call->stale_retried = true;
        HTTP_CLIENT_STAT_ADD(pool->client, stale_retries, 1);
        http_client_pool_acquire(pool, call, true);
    } else {
        http_client_call_failed(call, kind);
    }
    http_client_pool_kick(pool);
}

static void http_client_conn_send(http_client_conn *conn)
{
    http_client_call *call = conn->call;
    while (call->sent < call->wire_len) {
        ssize_t n = http_client_conn_write(conn, call->wire + call->sent, call->wire_len - call->sent);
        if (n > 0) {
            call->sent += (size_t)n;
            continue;
        }
        if (n == HTTP_CLIENT_IO_AGAIN) {
            event_add(&conn->write_ev, NULL);
            return;
        }
        http_client_conn_fail(conn, HTTP_CLIENT_ERR_CONNECTION_RESET, HTTP_CLIENT_FAIL_SEND);
        return;
    }
    event_del(&conn->write_ev);
}

/* Puts the call on a connected connection and starts writing its request. */
static void http_client_conn_assign(http_client_conn *conn, http_client_call *call)
{
    http_client_pool *pool = conn->pool;
    http_client_wait_remove(pool, call);
    if (call->dialing && call->dialing != conn)
        call->dialing->dialer = NULL; /* its own connection goes on opening, for whoever needs it next */
    call->dialing = NULL;
    conn->dialer = NULL;
    if (conn->state == HTTP_CLIENT_CONN_IDLE) {
        http_client_idle_unlink(pool, conn);
        event_del(&conn->timer_ev);
    }
    conn->state = HTTP_CLIENT_CONN_BUSY;
    conn->call = call;
    call->conn = conn;
    call->sent = 0;
    conn->tls_dirty = false; /* the previous exchange on it was complete */
    http_client_reader_start(&conn->reader, call->max_body, call->head_only);
    http_client_conn_send(conn);
}

/* The response is complete: hand it over, then keep or close the connection. */
static void http_client_conn_response_done(http_client_conn *conn, bool must_close)
{
    http_client_pool *pool = conn->pool;
    http_client_call *call = conn->call;
    /* An answer that came before the whole request was written leaves unread request bytes in the
     * upstream's input: that connection cannot carry another request. */
    bool reuse = !must_close && call->sent == call->wire_len && http_client_reader_keep_alive(&conn->reader);
    conn->served++;
    conn->call = NULL;
    call->conn = NULL;
    http_client_call_succeeded(call, &conn->reader);
    http_client_reader_release(&conn->reader);
    if (reuse) {
        http_client_pool_offer(pool, conn);
        return;
    }
    http_client_conn_destroy(conn);
    http_client_pool_kick(pool);
}

static void http_client_conn_feed(http_client_conn *conn, const char *data, size_t len)
{
    size_t used;
    switch (http_client_reader_feed(&conn->reader, data, len, &used)) {
    case HTTP_CLIENT_READ_MORE:
        return;
    case HTTP_CLIENT_READ_DONE:
        /* Bytes after the response were never asked for: the upstream is confused, do not reuse. */
        http_client_conn_response_done(conn, used < len);
        return;
    case HTTP_CLIENT_READ_FAILED:
        http_client_conn_fail(conn, conn->reader.error, HTTP_CLIENT_FAIL_PROTOCOL);
        return;
    }
}

static void http_client_conn_eof(http_client_conn *conn)
{
    if (http_client_reader_eof(&conn->reader) == HTTP_CLIENT_READ_DONE) {
        http_client_conn_response_done(conn, true);
        return;
    }
    http_client_error kind = conn->reader.error;
    http_client_conn_fail(conn, kind,
                          kind == HTTP_CLIENT_ERR_CONNECTION_RESET ? HTTP_CLIENT_FAIL_RECV : HTTP_CLIENT_FAIL_PROTOCOL);
}

static void http_client_conn_on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    http_client_conn *conn = arg;
    http_client_pool *pool = conn->pool;
    char *scratch = pool->client->scratch;
    (void)fd;
    if (conn->state == HTTP_CLIENT_CONN_HANDSHAKE) {
        http_client_conn_handshake(conn);
        return;
    }
    ssize_t n = http_client_conn_read(conn, scratch, HTTP_CLIENT_READ_BYTES);
    if (n == HTTP_CLIENT_IO_AGAIN)
        return;
    if (conn->state != HTTP_CLIENT_CONN_BUSY) {
        /* Nothing is owed to an idle connection: EOF or a reset means the upstream closed it, and
         * bytes it was never asked for mean it is confused. Either way it is of no use any more. */
        HTTP_CLIENT_STAT_ADD(pool->client, idle_closed, 1);
        http_client_conn_destroy(conn);
        http_client_pool_kick(pool);
        return;
    }
    if (n > 0)
        http_client_conn_feed(conn, scratch, (size_t)n);
    else if (n == 0)
        http_client_conn_eof(conn);
    else
        http_client_conn_fail(conn, HTTP_CLIENT_ERR_CONNECTION_RESET, HTTP_CLIENT_FAIL_RECV);
}

/* ---- opening a connection --------------------------------------------------------------------- */

/* Opening failed (DNS, every address refused, connect timeout): the call it was opened for, if it
 * still waits for it, fails or retries; the slot goes to the waiting line. */
static void http_client_conn_open_failed(http_client_conn *conn, http_client_error kind)
{
    http_client_pool *pool = conn->pool;
    http_client_call *call = conn->dialer;
    if (call) {
        call->dialing = NULL;
        conn->dialer = NULL;
    }
    http_client_conn_destroy(conn);
    if (call)
        http_client_call_failed(call, kind);
    http_client_pool_kick(pool);
}

/* A failure found inside a call that must not complete anything (see the top of the file). */
static void http_client_conn_defer_failure(http_client_conn *conn, http_client_error kind)
{
    conn->deferred_error = kind;
    event_active(&conn->defer_ev, EV_TIMEOUT, 0);
}

static void http_client_conn_on_defer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_client_conn *conn = arg;
    http_client_conn_open_failed(conn, conn->deferred_error);
}

/* Starts a non-blocking connect; false (errno set) when it failed at once. */
static bool http_client_conn_connect_to(http_client_conn *conn, const struct sockaddr *sa, socklen_t len)
{
    int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return false;
    int one = 1;
    /* Requests are written whole in one send; Nagle would only delay the last segment. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, sa, len) != 0 && errno != EINPROGRESS) {
        int saved = errno;
        close(fd);
        errno = saved;
        return false;
    }
    struct event_base *base = conn->pool->client->base;
    conn->fd = fd;
    conn->state = HTTP_CLIENT_CONN_CONNECTING;
    event_assign(&conn->read_ev, base, fd, EV_READ | EV_PERSIST, http_client_conn_on_read, conn);
    event_assign(&conn->write_ev, base, fd, EV_WRITE | EV_PERSIST, http_client_conn_on_write, conn);
    event_add(&conn->write_ev, NULL); /* writable = the connect finished, one way or the other */
    return true;
}

/* Tries the resolved addresses in order until a connect starts. */
static void http_client_conn_connect_next(http_client_conn *conn)
{
    while (conn->next_addr) {
        struct evutil_addrinfo *ai = conn->next_addr;
        conn->next_addr = ai->ai_next;
        if (http_client_conn_connect_to(conn, ai->ai_addr, (socklen_t)ai->ai_addrlen))
            return;
    }
    http_client_conn_defer_failure(conn, HTTP_CLIENT_ERR_CONNECT_FAILED);
}

/* Connected (and through the handshake for TLS): give the connection work. */
static void http_client_conn_ready(http_client_conn *conn)
{
    event_del(&conn->write_ev);
    event_del(&conn->timer_ev);
    event_add(&conn->read_ev, NULL); /* from now on: responses, or the upstream closing it */
    if (conn->dialer)
        http_client_conn_assign(conn, conn->dialer);
    else
        http_client_pool_offer(conn->pool, conn); /* its caller left meanwhile: the next one gets it */
}

/* Why the handshake failed, for the log: the verification result when there is one, else OpenSSL's. */
static http_client_error http_client_conn_tls_error(http_client_conn *conn)
{
    const http_client_upstream *up = conn->pool->up;
    long verify = SSL_get_verify_result(conn->ssl);
    if (verify != X509_V_OK) {
        log_warn("http client: upstream %s (%s:%u): certificate rejected: %s", up->name, up->host, up->port,
                 X509_verify_cert_error_string(verify));
        return HTTP_CLIENT_ERR_CERT_REJECTED;
    }
    unsigned long e = ERR_peek_last_error();
    char text[256] = "the connection closed during the handshake";
    if (e)
        ERR_error_string_n(e, text, sizeof(text));
    log_warn("http client: upstream %s (%s:%u): TLS handshake failed: %s", up->name, up->host, up->port, text);
    return HTTP_CLIENT_ERR_TLS_FAILED;
}

static void http_client_conn_handshake(http_client_conn *conn)
{
    ERR_clear_error();
    int rc = SSL_connect(conn->ssl);
    if (rc == 1) {
        http_client_conn_ready(conn);
        return;
    }
    switch (SSL_get_error(conn->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        event_del(&conn->write_ev);
        event_add(&conn->read_ev, NULL);
        return;
    case SSL_ERROR_WANT_WRITE:
        event_add(&conn->write_ev, NULL);
        return;
    default:
        http_client_conn_open_failed(conn, http_client_conn_tls_error(conn));
        return;
    }
}

/* A TLS session on the connected socket: SNI and the name to verify for a host name, the address to
 * verify for an IP literal (certificates name those in an iPAddress entry). */
static void http_client_conn_tls_start(http_client_conn *conn)
{
    http_client_pool *pool = conn->pool;
    const char *host = pool->up->host;
    conn->ssl = SSL_new(pool->tls);
    bool ok = conn->ssl && SSL_set_fd(conn->ssl, conn->fd) == 1;
    if (ok && pool->literal)
        ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(conn->ssl), host) == 1;
    else if (ok)
        ok = SSL_set_tlsext_host_name(conn->ssl, host) == 1 && SSL_set1_host(conn->ssl, host) == 1;
    if (!ok) {
        log_warn("http client: upstream %s: cannot set up a TLS session", pool->up->name);
        http_client_conn_open_failed(conn, HTTP_CLIENT_ERR_TLS_FAILED);
        return;
    }
    SSL_set_mode(conn->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE);
    SSL_set_connect_state(conn->ssl);
    conn->state = HTTP_CLIENT_CONN_HANDSHAKE;
    http_client_conn_handshake(conn);
}

/* The connect finished: on to the next address if it failed, else give the connection work. */
static void http_client_conn_connected(http_client_conn *conn)
{
    int err = 0;
    socklen_t len = sizeof(err);
    if (getsockopt(conn->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err != 0) {
        http_client_conn_close_socket(conn);
        if (conn->next_addr)
            http_client_conn_connect_next(conn);
        else
            http_client_conn_open_failed(conn, HTTP_CLIENT_ERR_CONNECT_FAILED);
        return;
    }
    if (conn->addrs) {
        evutil_freeaddrinfo(conn->addrs);
        conn->addrs = conn->next_addr = NULL;
    }
    if (conn->pool->up->tls) {
        http_client_conn_tls_start(conn);
        return;
    }
    http_client_conn_ready(conn);
}

static void http_client_conn_on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_client_conn *conn = arg;
    if (conn->state == HTTP_CLIENT_CONN_CONNECTING)
        http_client_conn_connected(conn);
    else if (conn->state == HTTP_CLIENT_CONN_HANDSHAKE)
        http_client_conn_handshake(conn);
    else if (conn->state == HTTP_CLIENT_CONN_BUSY)
        http_client_conn_send(conn);
    else
        event_del(&conn->write_ev);
}

/* Connect timeout while opening (DNS included), idle timeout while pooled. A busy connection has no
 * timer of its own: its call's timeout_ms (a wait_for) cancels the call, which closes it. */
static void http_client_conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_client_conn *conn = arg;
    http_client_pool *pool = conn->pool;
    if (conn->state == HTTP_CLIENT_CONN_IDLE) {
        HTTP_CLIENT_STAT_ADD(pool->client, idle_expired, 1);
        http_client_conn_destroy(conn);
        http_client_pool_kick(pool);
        return;
    }
    http_client_conn_open_failed(conn, HTTP_CLIENT_ERR_CONNECT_TIMEOUT);
}

static void http_client_on_resolved(int result, struct evutil_addrinfo *res, void *arg)
{
    http_client_lookup *lookup = arg;
    http_client_conn *conn = lookup->conn;
    lookup->client->lookups_pending--;
    free(lookup);
    if (!conn) {
        if (res)
            evutil_freeaddrinfo(res);
        return;
    }
    conn->lookup = NULL;
    if (result != 0 || !res) {
        if (res)
            evutil_freeaddrinfo(res);
        conn->lookup_failed = true;
        if (!conn->in_lookup_call)
            http_client_conn_open_failed(conn, HTTP_CLIENT_ERR_DNS_FAILED);
        return;
    }
    conn->addrs = conn->next_addr = res;
    if (!conn->in_lookup_call)
        http_client_conn_connect_next(conn);
}

static struct evdns_base *http_client_dns(http_client *client)
{
    /* Created on first need, so a config of IP literals never reads resolv.conf. DISABLE_WHEN_INACTIVE:
     * an idle resolver holds no event that would keep the loop running. */
    if (!client->dns)
        client->dns = evdns_base_new(client->base,
                                     EVDNS_BASE_INITIALIZE_NAMESERVERS | EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    return client->dns;
}

static void http_client_conn_resolve(http_client_conn *conn)
{
    http_client *client = conn->pool->client;
    const http_client_upstream *up = conn->pool->up;
    conn->state = HTTP_CLIENT_CONN_RESOLVING;
    struct evdns_base *dns = http_client_dns(client);
    if (!dns) {
        log_warn("http client: cannot start a DNS resolver for upstream %s", up->name);
        http_client_conn_defer_failure(conn, HTTP_CLIENT_ERR_DNS_FAILED);
        return;
    }
    http_client_lookup *lookup = xcalloc(1, sizeof(*lookup));
    lookup->client = client;
    lookup->conn = conn;
    client->lookups_pending++;
    conn->lookup = lookup;
    struct evutil_addrinfo hints;
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_protocol = IPPROTO_TCP;
    char port[8];
    snprintf(port, sizeof(port), "%u", up->port);
    /* The answer may come inside this call (hosts file, errors): the callback then only records it. */
    conn->in_lookup_call = true;
    struct evdns_getaddrinfo_request *req =
        evdns_getaddrinfo(dns, up->host, port, &hints, http_client_on_resolved, lookup);
    conn->in_lookup_call = false;
    if (conn->lookup) {
        conn->lookup->req = req;
        return;
    }
    if (conn->lookup_failed)
        http_client_conn_defer_failure(conn, HTTP_CLIENT_ERR_DNS_FAILED);
    else
        http_client_conn_connect_next(conn);
}

/* Opens a connection for `call`, which waits for it as its dialer. */
static void http_client_conn_open(http_client_pool *pool, http_client_call *call)
{
    http_client_conn *conn = http_client_conn_new(pool);
    conn->dialer = call;
    call->dialing = conn;
    struct timeval tv = http_client_tv(pool->up->connect_timeout_ms);
    evtimer_add(&conn->timer_ev, &tv);
    if (pool->tls_broken) {
        http_client_conn_defer_failure(conn, HTTP_CLIENT_ERR_TLS_FAILED);
        return;
    }
    if (!pool->literal) {
        http_client_conn_resolve(conn);
        return;
    }
    conn->state = HTTP_CLIENT_CONN_CONNECTING;
    if (!http_client_conn_connect_to(conn, (const struct sockaddr *)&pool->addr, pool->addr_len))
        http_client_conn_defer_failure(conn, HTTP_CLIENT_ERR_CONNECT_FAILED);
}

/* ---- the pool --------------------------------------------------------------------------------- */

/* A connected connection without work: the waiting line first, then the idle list, else closed. */
static void http_client_pool_offer(http_client_pool *pool, http_client_conn *conn)
{
    http_client_call *call = http_client_wait_pop(pool);
    if (call) {
        http_client_conn_assign(conn, call);
        return;
    }
    if (pool->client->closing || pool->idle_count >= pool->up->max_idle) {
        http_client_conn_destroy(conn);
        return;
    }
    conn->state = HTTP_CLIENT_CONN_IDLE;
    http_client_idle_push(pool, conn);
    event_del(&conn->write_ev);
    struct timeval tv = http_client_tv(pool->up->idle_timeout_ms);
    evtimer_add(&conn->timer_ev, &tv);
}

static void http_client_pool_on_kick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_client_pool *pool = arg;
    while (pool->wait_head && pool->total < pool->up->max_connections)
        http_client_conn_open(pool, http_client_wait_pop(pool));
}

/* A slot may have come free: open connections for the callers in line, but only after the loop has
 * polled once more (a zero timer runs after the I/O callbacks of the next pass). A slot usually comes
 * free because a request ended and took its calls with it; the other calls of that request, and of
 * the other requests whose clients left in the same burst (epoll hands them over in batches), leave
 * the line first, instead of each getting a connection opened for it that nobody then uses. */
static void http_client_pool_kick(http_client_pool *pool)
{
    static const struct timeval now = {0, 0};
    if (!pool->client->closing && pool->wait_head && pool->total < pool->up->max_connections &&
        !evtimer_pending(&pool->kick_ev, NULL))
        evtimer_add(&pool->kick_ev, &now);
}

void http_client_pool_acquire(http_client_pool *pool, http_client_call *call, bool fresh)
{
    http_client *client = pool->client;
    if (!fresh && pool->idle) {
        HTTP_CLIENT_STAT_ADD(client, connections_reused, 1);
        http_client_conn_assign(pool->idle, call);
        return;
    }
    if (pool->wait_head) {
        /* Others are in line (a kick may be on its way): no overtaking, whatever the count says. */
        HTTP_CLIENT_STAT_ADD(client, pool_waits, 1);
        if (fresh)
            http_client_wait_push_front(pool, call);
        else
            http_client_wait_push(pool, call);
        http_client_pool_kick(pool);
        return;
    }
    if (pool->total >= pool->up->max_connections && fresh && pool->idle)
        http_client_conn_destroy(http_client_idle_oldest(pool)); /* trade an idle slot for a new one */
    if (pool->total < pool->up->max_connections) {
        http_client_conn_open(pool, call);
        return;
    }
    HTTP_CLIENT_STAT_ADD(client, pool_waits, 1);
    http_client_wait_push(pool, call);
}

void http_client_pool_abandon(http_client_call *call)
{
    http_client_pool *pool = call->pool;
    http_client_wait_remove(pool, call);
    if (call->dialing) {
        call->dialing->dialer = NULL; /* it goes on opening and joins the pool when connected */
        call->dialing = NULL;
    }
    http_client_conn *conn = call->conn;
    if (!conn)
        return;
    conn->call = NULL;
    call->conn = NULL;
    if (call->sent == 0 && !conn->tls_dirty && !conn->reader.got_bytes) {
        http_client_reader_release(&conn->reader);
        http_client_pool_offer(pool, conn); /* nothing of this call is on the wire: still clean */
        return;
    }
    /* Mid-request or mid-response: the rest of the exchange would arrive for nobody. */
    http_client_conn_destroy(conn);
    http_client_pool_kick(pool);
}

static void http_client_pool_init_host(http_client_pool *pool)
{
    const http_client_upstream *up = pool->up;
    struct sockaddr_in *sin = (struct sockaddr_in *)&pool->addr;
    struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&pool->addr;
    if (inet_pton(AF_INET, up->host, &sin->sin_addr) == 1) {
        sin->sin_family = AF_INET;
        sin->sin_port = htons((uint16_t)up->port);
        pool->addr_len = sizeof(*sin);
        pool->literal = true;
    } else if (inet_pton(AF_INET6, up->host, &sin6->sin6_addr) == 1) {
        sin6->sin6_family = AF_INET6;
        sin6->sin6_port = htons((uint16_t)up->port);
        pool->addr_len = sizeof(*sin6);
        pool->literal = true;
    }
    bool v6 = strchr(up->host, ':') != NULL;
    /* The scheme's own port is left out, as browsers and curl do: some APIs sign or route by the Host
     * value and expect "api.example.com", not "api.example.com:443". */
    bool default_port = up->port == (up->tls ? 443u : 80u);
    char port[8] = "";
    if (!default_port)
        snprintf(port, sizeof(port), ":%u", up->port);
    snprintf(pool->host_header, sizeof(pool->host_header), "%s%s%s%s", v6 ? "[" : "", up->host, v6 ? "]" : "",
             port);
}

/* One verifying context per pool (so per loop and upstream): the CAs are loaded once per loop, and a
 * CA file that cannot be read fails the upstream's calls with tls_failed rather than the process. */
static void http_client_pool_init_tls(http_client_pool *pool)
{
    const http_client_upstream *up = pool->up;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    bool ok = ctx && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) == 1;
    if (ok)
        ok = up->ca_file[0] ? SSL_CTX_load_verify_locations(ctx, up->ca_file, NULL) == 1
                            : SSL_CTX_set_default_verify_paths(ctx) == 1;
    if (!ok) {
        char text[256] = "out of memory";
        unsigned long e = ERR_get_error();
        if (e)
            ERR_error_string_n(e, text, sizeof(text));
        log_error("http client: upstream %s: cannot load %s: %s", up->name,
                  up->ca_file[0] ? up->ca_file : "the system CA store", text);
        SSL_CTX_free(ctx);
        ERR_clear_error();
        pool->tls_broken = true;
        return;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    pool->tls = ctx;
}

http_client_pool *http_client_pool_get(http_client *client, const http_client_upstream *up)
{
    for (http_client_pool *pool = client->pools; pool; pool = pool->next)
        if (pool->up == up)
            return pool;
    http_client_pool *pool = xcalloc(1, sizeof(*pool));
    pool->client = client;
    pool->up = up;
    http_client_pool_init_host(pool);
    evtimer_assign(&pool->kick_ev, client->base, http_client_pool_on_kick, pool);
    if (up->tls)
        http_client_pool_init_tls(pool);
    pool->next = client->pools;
    client->pools = pool;
    return pool;
}

void http_client_pool_free(http_client_pool *pool)
{
    event_del(&pool->kick_ev);
    http_client_call *call;
    while ((call = http_client_wait_pop(pool)) != NULL)
        async_fail(call->future, "shutdown");
    while (pool->conns) {
        http_client_conn *conn = pool->conns;
        call = conn->call ? conn->call : conn->dialer;
        http_client_conn_destroy(conn);
        if (call)
            async_fail(call->future, "shutdown");
    }
    SSL_CTX_free(pool->tls);
    free(pool);
}
