/* sql_mariadb: the MariaDB/MySQL backend of include/apiary/sql.h, on MariaDB Connector/C's non-blocking API
 * driven by libevent on the request's own loop (aiomysql's job, in C).
 *
 * The model. Each loop has a pool (loop-local slot HTTP_LOOP_SLOT_SQL) of sql.connections_per_loop
 * connections, opened lazily as statements need them. A statement is a task: it waits in the pool's
 * FIFO for an idle connection (at most sql.max_waiting of them, then 503 "busy"), then runs there as a
 * sequence of non-blocking calls (prepare once per connection and cache, execute, fetch row by row
 * unbuffered, within the statement's bound, free), each a *_start that may ask to wait for the socket
 * and a *_cont when libevent says it is ready. Nothing blocks the loop: the host is an IP address
 * (sql.url refuses names), so mysql_real_connect_start never calls a resolver that would wait for DNS.
 * A statement costs one send and one recv: Connector/C's read right after a command, which would find
 * nothing, is answered "would block" without a system call (sql_my_hook_reads), and the persistent
 * read watch resumes the call when the answer is there. The columns of a result the server did not
 * resend (MARIADB_CLIENT_CACHE_METADATA) are not copied per execution (sql_my_hook_metadata).
 * Once a statement is prepared on a plaintext connection, its executes there skip Connector/C: apiary
 * writes them, several in flight, and reads their answers itself (sql_my_pipe_*, sql_mariadb_wire.c).
 *
 * Who owns what. The pool owns its connections; its tasks, their FIFO, their deadlines, "finish and
 * discard" and the bookkeeping of transactions are the task layer's (sql_task.c, shared with
 * sql_postgres.c), whose line is the first member of the pool. A task builds its rows in heap memory
 * (sql_rows), copied into the caller's scope only when it completes; a task whose caller went away while
 * it runs finishes on its connection and its result is discarded, so a connection is never left in the
 * middle of the protocol.
 *
 * Deadlines. Every task must end sql.query_timeout_ms after its submission; one timer per loop watches
 * them all (sql_task.c). Waiting, the task fails "timeout". Running, the connection is in an unknown
 * place in the protocol, so it is aborted and closed (sql_my_expire: the socket is shut down first,
 * which makes every pending and later call on it fail at once, so neither the abort nor mysql_close can
 * block), and a fresh connection takes its place for the next task.
 *
 * Failures. A connection that breaks (server gone, killed) fails its task "connection_lost" and is
 * closed. An idle connection is watched for readability: a server that closes it (restart, idle
 * timeout, KILL) makes it readable, and it is dropped then, so no stale connection is ever handed out
 * and no health query ("SELECT 1") is ever sent. A failed connect puts the pool in backoff (100 ms
 * doubling to 2 s, +-20 % jitter) during which new tasks fail "unavailable" at once when no
 * connection is up, and the next attempt happens when the backoff ends.
 *
 * Schema. A thread of its own (not a loop) creates the database and the tables with the blocking API
 * at start, retrying every second while the database is unreachable; until it has succeeded tasks fail
 * "unavailable" and /readyz is 503. */
#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <mysql.h>
#include <ma_pvio.h>
#include <stddef.h>
#include <mysqld_error.h>
#include <errmsg.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http_loop_internal.h"
#include "log.h"
#include "sql_mariadb_internal.h"
#include "xalloc_internal.h"

#define SQL_MY_BACKOFF_BASE_MS 100u
#define SQL_MY_BACKOFF_MAX_MS 2000u

static const sql_settings *sql_my_settings;
static atomic_bool sql_my_schema_ready;
static pthread_t sql_my_schema_thread;
static bool sql_my_schema_started;
static pthread_mutex_t sql_my_stop_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t sql_my_stop_cond = PTHREAD_COND_INITIALIZER;
static bool sql_my_stopping;

static void sql_my_resume(sql_my_conn *c, int ready);
static void sql_my_unhook_fields(sql_my_conn *c);

/* ---- TLS ------------------------------------------------------------------------------------------ */

static const char *sql_my_tls_name(sql_tls_mode m)
{
    return m == SQL_TLS_REQUIRED      ? "required"
           : m == SQL_TLS_VERIFY_CA   ? "verify-ca"
           : m == SQL_TLS_VERIFY_FULL ? "verify-full"
                                      : "off";
}

/* Connector/C's own TLS, which its non-blocking API drives like the rest of the connect. What each
 * option does in Connector/C 3.3 (Debian 12), read from its source (libmariadb/secure/openssl.c,
 * plugins/auth/my_auth.c):
 *   - SSL_ENFORCE asks for TLS but does NOT refuse a server that does not offer it: the connect goes on
 *     in plain text. sql_my_tls_check refuses such a connection after the handshake.
 *   - SSL_CA makes Connector/C check the certificate chain against that CA (SSL_VERIFY_PEER), whatever
 *     VERIFY_SERVER_CERT says; no name is compared.
 *   - VERIFY_SERVER_CERT adds X509_check_host / X509_check_ip_asc against the host given to connect
 *     (sql.url's IP address, so the certificate needs it as a subjectAltName IP) and makes Connector/C
 *     refuse a server without TLS before it authenticates. */
static void sql_my_tls_options(MYSQL *my, const sql_settings *s)
{
    if (s->tls == SQL_TLS_OFF)
        return;
    my_bool on = 1, full = s->tls == SQL_TLS_VERIFY_FULL;
    mysql_optionsv(my, MYSQL_OPT_SSL_ENFORCE, &on);
    mysql_optionsv(my, MYSQL_OPT_SSL_VERIFY_SERVER_CERT, &full);
    if (s->tls_ca[0])
        mysql_optionsv(my, MYSQL_OPT_SSL_CA, s->tls_ca);
}

/* After a connect that succeeded: false (why in `why`) when sql.url asks for TLS and the link is not
 * encrypted (a server without TLS, or something between that removed it from the greeting). Nothing
 * has been sent but the authentication, and the connection is closed before any statement. */
static bool sql_my_tls_check(MYSQL *my, const sql_settings *s, char *why, size_t why_cap)
{
    if (s->tls == SQL_TLS_OFF || mysql_get_ssl_cipher(my))
        return true;
    snprintf(why, why_cap, "the server did not agree to TLS, which sql.url requires (ssl=%s); not using the connection",
             sql_my_tls_name(s->tls));
    return false;
}

/* Connector/C's message for a failed connect, with the TLS mode named when TLS is what failed. */
static void sql_my_connect_error(MYSQL *my, const sql_settings *s, char *why, size_t why_cap)
{
    unsigned err = mysql_errno(my);
    if (err == CR_SSL_CONNECTION_ERROR)
        snprintf(why, why_cap, "the TLS connection was refused (ssl=%s%s): %s (%u)", sql_my_tls_name(s->tls),
                 s->tls == SQL_TLS_VERIFY_FULL ? ": the certificate must be signed by ssl_ca and name the host's IP"
                 : s->tls == SQL_TLS_VERIFY_CA ? ": the certificate must be signed by ssl_ca"
                                                : "",
                 mysql_error(my), err);
    else
        snprintf(why, why_cap, "%s (%u)", mysql_error(my), err);
}

/* ---- connections --------------------------------------------------------------------------------- */

void sql_my_set_state(sql_my_conn *c, sql_my_state state)
{
    c->pool->in_state[c->state]--;
    c->pool->in_state[state]++;
    c->state = state;
}

static bool sql_my_conn_up(const sql_my_conn *c)
{
    return c->state == SQL_MY_IDLE || c->state == SQL_MY_BUSY || c->state == SQL_MY_HELD || c->state == SQL_MY_PIPE;
}

static void sql_my_conn_free_result_buffers(sql_my_conn *c)
{
    free(c->rbind);
    free(c->r_int);
    free(c->r_double);
    free(c->scratch);
    free(c->r_len);
    free(c->r_null);
    free(c->r_type);
    c->rbind = NULL;
    c->r_int = NULL;
    c->r_double = NULL;
    c->scratch = NULL;
    c->scratch_cap = 0;
    c->r_len = NULL;
    c->r_null = NULL;
    c->r_type = NULL;
    c->rcols = c->rcap = 0;
}

/* Room for n result columns; kept for the connection's life, so a statement costs no allocation. */
static void sql_my_conn_reserve_columns(sql_my_conn *c, size_t n)
{
    if (n <= c->rcap)
        return;
    c->rbind = xrealloc(c->rbind, n * sizeof(*c->rbind));
    c->r_int = xrealloc(c->r_int, n * sizeof(*c->r_int));
    c->r_double = xrealloc(c->r_double, n * sizeof(*c->r_double));
    c->r_len = xrealloc(c->r_len, n * sizeof(*c->r_len));
    c->r_null = xrealloc(c->r_null, n * sizeof(*c->r_null));
    c->r_type = xrealloc(c->r_type, n * sizeof(*c->r_type));
    c->rcap = n;
}

/* The call in progress, continued with `ready` (MYSQL_WAIT_* bits). */
static int sql_my_call(sql_my_conn *c, int ready)
{
    const sql_settings *s = c->pool->line.s;
    sql_task *t = c->task;
    bool cont = c->in_call;
    switch (c->step) {
    case SQL_MY_STEP_CONNECT:
        return cont ? mysql_real_connect_cont(&c->ret_my, c->my, ready)
                    : mysql_real_connect_start(&c->ret_my, c->my, s->host, s->user, s->password, s->database,
                                               s->port, NULL, 0);
    case SQL_MY_STEP_PREPARE:
        return cont ? mysql_stmt_prepare_cont(&c->ret_int, c->stmt, ready)
                    : mysql_stmt_prepare_start(&c->ret_int, c->stmt, t->sql, (unsigned long)t->sql_len);
    case SQL_MY_STEP_EXECUTE:
        return cont ? mysql_stmt_execute_cont(&c->ret_int, c->stmt, ready)
                    : mysql_stmt_execute_start(&c->ret_int, c->stmt);
    case SQL_MY_STEP_FETCH:
        return cont ? mysql_stmt_fetch_cont(&c->ret_int, c->stmt, ready) : mysql_stmt_fetch_start(&c->ret_int, c->stmt);
    case SQL_MY_STEP_FREE:
        return cont ? mysql_stmt_free_result_cont(&c->ret_bool, c->stmt, ready)
                    : mysql_stmt_free_result_start(&c->ret_bool, c->stmt);
    case SQL_MY_STEP_NONE:
        break;
    }
    return 0;
}

/* Closes the connection, whatever it was doing: the socket is shut down first, so the call in
 * progress (driven to its end here) and mysql_close's goodbye fail at once instead of waiting. The
 * running task, if any, is finished with `error`. */
void sql_my_conn_close(sql_my_conn *c, const char *error)
{
    if (c->state == SQL_MY_CLOSED)
        return;
    sql_my_pool *p = c->pool;
    bool was_up = sql_my_conn_up(c);
    if (c->io_added) {
        event_del(&c->io);
        c->io_added = false;
    }
    if (c->rd_added) {
        event_del(&c->rd);
        c->rd_added = false;
        c->rd_paused = false;
    }
    event_del(&c->deadline);
    int fd = c->my ? (int)mysql_get_socket(c->my) : -1;
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
    for (int i = 0; c->in_call && i < 1000; i++)
        c->in_call = sql_my_call(c, MYSQL_WAIT_READ | MYSQL_WAIT_WRITE) != 0;
    if (c->in_call)
        log_error("sql: loop %u connection %u: an aborted call did not end", p->line.id, c->index);
    c->in_call = false;
    sql_my_unhook_fields(c);
    if (c->stmt && !c->stmt_cached)
        mysql_stmt_close(c->stmt);
    c->stmt = NULL;
    for (size_t i = 0; i < c->cached; i++) {
        mysql_stmt_close(c->cache[i].stmt);
        free(c->cache[i].sql);
        free(c->cache[i].cols);
    }
    c->cached = 0;
    sql_my_pipe_clear(c);
    sql_my_conn_free_result_buffers(c);
    free(c->pbind);
    c->pbind = NULL;
    c->pbind_cap = 0;
    if (c->my)
        mysql_close(c->my);
    c->my = NULL;
    if (c->state == SQL_MY_BUSY || c->state == SQL_MY_HELD || c->state == SQL_MY_PIPE)
        sql__gauge_add(SQL_GAUGE_IN_USE, -1);
    sql_task_txn *txn = c->txn;
    c->txn = NULL;
    if (txn) {
        /* The server rolls back what a closed connection left open. */
        txn->conn = NULL;
        txn->open = false;
    }
    if (was_up) {
        sql__gauge_add(SQL_GAUGE_OPEN, -1);
        if (!p->line.freeing)
            sql__count_closed();
    }
    sql_my_set_state(c, SQL_MY_CLOSED);
    c->step = SQL_MY_STEP_NONE;
    c->retire = false;
    sql_task *t = c->task;
    c->task = NULL;
    /* Pipelined statements: the one whose answer was being read gets `error`; those behind it fail
     * connection_lost, since their answers would have come after the missing one. */
    sql_my_pipe_fail(c, error);
    /* The transaction's next step first: finishing its running one may free the transaction. */
    sql_task *pending = txn ? txn->pending : NULL;
    bool settle = txn && !t && !pending;
    if (pending)
        sql_task_finish(pending, error ? error : SQL_ERROR_CONNECTION_LOST);
    if (t) {
        t->conn = NULL;
        sql_task_finish(t, error ? error : SQL_ERROR_CONNECTION_LOST);
    }
    if (settle)
        (void)sql_task_txn_settle(txn);
}

static void sql_my_on_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    sql_my_conn *c = arg;
    c->io_added = false;
    if (c->rd_paused) {
        event_add(&c->rd, NULL);
        c->rd_paused = false;
    }
    int ready = ((what & EV_READ) ? MYSQL_WAIT_READ : 0) | ((what & EV_WRITE) ? MYSQL_WAIT_WRITE : 0) |
                ((what & EV_TIMEOUT) ? MYSQL_WAIT_TIMEOUT : 0);
    sql_my_resume(c, ready);
}

/* The persistent read watch of an established connection. */
static void sql_my_on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sql_my_conn *c = arg;
    if (c->state == SQL_MY_PIPE) {
        sql_my_pipe_read(c);
        return;
    }
    if (c->state == SQL_MY_IDLE || c->state == SQL_MY_HELD) {
        /* Nothing was asked of the server, so anything it sends (EOF after a restart or a KILL, an
         * error packet before it closes an idle connection) means this connection is done. */
        log_info("sql: loop %u connection %u: closed by the server while idle; a new one will be opened",
                 c->pool->line.id, c->index);
        sql_my_conn_close(c, NULL);
        sql_my_dispatch(c->pool);
        return;
    }
    if (c->in_call)
        sql_my_resume(c, MYSQL_WAIT_READ);
}

/* Waits for what the library asked for (MYSQL_WAIT_* in status). A plain read on an established
 * connection is what the persistent watch already covers; anything else is a one-shot event, with the
 * watch paused meanwhile so readiness is delivered once. */
static void sql_my_wait(sql_my_conn *c, int status)
{
    if (c->rd_added && !c->rd_paused && !(status & (MYSQL_WAIT_WRITE | MYSQL_WAIT_TIMEOUT)))
        return;
    short what = 0;
    if (status & (MYSQL_WAIT_READ | MYSQL_WAIT_EXCEPT))
        what |= EV_READ;
    if (status & MYSQL_WAIT_WRITE)
        what |= EV_WRITE;
    struct timeval tv, *tvp = NULL;
    if (status & MYSQL_WAIT_TIMEOUT) {
        unsigned ms = mysql_get_timeout_value_ms(c->my);
        tv.tv_sec = ms / 1000;
        tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
        tvp = &tv;
    }
    if (c->rd_added && !c->rd_paused) {
        event_del(&c->rd);
        c->rd_paused = true;
    }
    event_assign(&c->io, c->pool->line.base, (evutil_socket_t)mysql_get_socket(c->my), what, sql_my_on_io, c);
    event_add(&c->io, tvp);
    c->io_added = true;
}

/* ---- one recv fewer per statement ---------------------------------------------------------------- */

/* Connector/C's non-blocking calls send a command and then at once try to read its answer: a recv that
 * finds nothing (EAGAIN: the server cannot have answered within the same microsecond) before the call
 * asks to wait for the socket. That empty recv was a third of the system calls of a statement
 * (send, EAGAIN, wait, recv). So the first read after a write is answered "would block" here without a
 * system call: Connector/C then asks to wait for reading (ma_pvio_read_async), the persistent read
 * watch (level-triggered) reports the answer when it is there, or at once when it already was, and
 * the next read is a real recv. Nothing is lost: a reply is never consumed by the skipped read, and
 * readiness comes from the socket itself. Only the plain-TCP path is hooked: with TLS, reads go
 * through OpenSSL, which may hold decrypted bytes the socket's readiness does not show. */
static sql_my_conn *sql_my_conn_of(MARIADB_PVIO *pvio)
{
    return (sql_my_conn *)(void *)((char *)pvio->methods - offsetof(sql_my_conn, pvio_methods));
}

static ssize_t sql_my_pvio_write(MARIADB_PVIO *pvio, const uchar *buffer, size_t length)
{
    sql_my_conn *c = sql_my_conn_of(pvio);
    ssize_t r = c->pvio_orig->async_write(pvio, buffer, length);
    if (r > 0)
        c->just_wrote = true;
    return r;
}

static ssize_t sql_my_pvio_read(MARIADB_PVIO *pvio, uchar *buffer, size_t length)
{
    sql_my_conn *c = sql_my_conn_of(pvio);
    if (c->just_wrote) {
        c->just_wrote = false;
        errno = EAGAIN;
        return -1;
    }
    return c->pvio_orig->async_read(pvio, buffer, length);
}

/* Installs the two calls above on an established plain-TCP connection (its own copy of Connector/C's
 * method table; the connection's pvio is Connector/C's, freed by mysql_close, which only calls the
 * table's close). Checked against the layout: the pvio must point back at this MYSQL. */
static void sql_my_hook_reads(sql_my_conn *c)
{
    c->pvio_orig = NULL;
    c->just_wrote = false;
    MARIADB_PVIO *pvio = c->my->net.pvio;
    if (!pvio || pvio->ctls || pvio->mysql != c->my || !pvio->methods || !pvio->methods->async_read ||
        !pvio->methods->async_write)
        return;
    c->pvio_orig = pvio->methods;
    c->pvio_methods = *pvio->methods;
    c->pvio_methods.async_read = sql_my_pvio_read;
    c->pvio_methods.async_write = sql_my_pvio_write;
    pvio->methods = &c->pvio_methods;
}

/* ---- no copy of the result's metadata per statement ------------------------------------------------ */

/* Connector/C 3.3 asks MariaDB (10.6+) to send a prepared statement's column definitions only when
 * they change (MARIADB_CLIENT_CACHE_METADATA): the server then answers an execution with the column
 * count and a flag, not the columns. Connector/C then copies the statement's columns it already
 * holds (stmt->fields) into the connection (mysql->fields: a fresh memory root and seven strdups per
 * column, mthd_stmt_read_execute_response), only to refresh each column's type from that copy of
 * itself. That copy was 15 % of the instructions of /v1/queries (about 1,750 per two-column
 * statement). So, after the result's header is read, the connection's fields are pointed at the
 * running statement's own columns, which makes Connector/C skip the copy; nothing writes through
 * them (the type refresh assigns each field to itself), and Connector/C frees mysql->fields only
 * through its own memory root (free_old_query, which reads the pointer but never what it points
 * to), which stays empty. sql_my_task_done clears the pointer again, so it never outlives the
 * statement. Only when the server did skip the columns and the statement's own match their count;
 * otherwise Connector/C does what it always did (test_97_sql: a column whose type changes). */
static sql_my_conn *sql_my_conn_of_methods(MYSQL *my)
{
    return (sql_my_conn *)(void *)((char *)my->methods - offsetof(sql_my_conn, methods));
}

static int sql_my_read_stmt_result(MYSQL *my)
{
    sql_my_conn *c = sql_my_conn_of_methods(my);
    int r = c->methods_orig->db_read_stmt_result(my);
    MYSQL_STMT *stmt = c->stmt;
    if (r == 0 && my->field_count && !my->fields && stmt && stmt->mysql == my && stmt->fields &&
        stmt->field_count == my->field_count)
        my->fields = stmt->fields;
    return r;
}

/* Installs the call above on an established connection (its own copy of Connector/C's method table,
 * as for the socket calls). */
static void sql_my_hook_metadata(sql_my_conn *c)
{
    c->methods_orig = NULL;
    if (!c->my->methods || !c->my->methods->db_read_stmt_result)
        return;
    c->methods_orig = c->my->methods;
    c->methods = *c->my->methods;
    c->methods.db_read_stmt_result = sql_my_read_stmt_result;
    c->my->methods = &c->methods;
}

/* The statement is over: the connection's fields no longer point at its columns. */
static void sql_my_unhook_fields(sql_my_conn *c)
{
    if (c->my && c->stmt && c->my->fields && c->my->fields == c->stmt->fields)
        c->my->fields = NULL;
}

/* Connected: from now on the persistent read watch sees replies and an idle close alike. */
static void sql_my_watch(sql_my_conn *c)
{
    event_assign(&c->rd, c->pool->line.base, (evutil_socket_t)mysql_get_socket(c->my), EV_READ | EV_PERSIST,
                 sql_my_on_read, c);
    event_add(&c->rd, NULL);
    c->rd_added = true;
    c->rd_paused = false;
}

bool sql_my_connection_error(unsigned err)
{
    return (err >= CR_MIN_ERROR && err <= CR_MAX_ERROR) || err == ER_CONNECTION_KILLED ||
           err == ER_SERVER_SHUTDOWN || err == ER_NET_READ_ERROR || err == ER_NET_ERROR_ON_WRITE ||
           err == 4031 /* ER_CLIENT_INTERACTION_TIMEOUT */;
}

static bool sql_my_any_up(const sql_my_pool *p)
{
    return p->in_state[SQL_MY_IDLE] + p->in_state[SQL_MY_BUSY] + p->in_state[SQL_MY_HELD] + p->in_state[SQL_MY_PIPE] > 0;
}

static bool sql_my_any_connecting(const sql_my_pool *p) { return p->in_state[SQL_MY_CONNECTING] > 0; }

static void sql_my_connect_failed(sql_my_conn *c, const char *why)
{
    sql_my_pool *p = c->pool;
    sql__count_connect(false);
    /* The message is Connector/C's (it never contains the password); the address is for the log. */
    if (!p->line.outage_logged)
        log_warn("sql: loop %u cannot connect to MariaDB at %s:%u: %s (retrying with backoff)", p->line.id,
                 p->line.s->host, p->line.s->port, why);
    else
        log_debug("sql: loop %u: connect to %s:%u failed again: %s", p->line.id, p->line.s->host, p->line.s->port, why);
    p->line.outage_logged = true;
    sql_my_set_state(c, SQL_MY_CONNECTING); /* so close does not count it as an open connection */
    sql_my_conn_close(c, NULL);
    p->line.failures++;
    if (!p->line.backoff)
        sql_task_backoff(&p->line);
    if (!sql_my_any_up(p) && !sql_my_any_connecting(p))
        sql_task_fail_waiting(&p->line, SQL_ERROR_UNAVAILABLE);
}

static void sql_my_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sql_my_conn *c = arg;
    if (c->state == SQL_MY_CONNECTING)
        sql_my_connect_failed(c, "connect timed out");
}

static void sql_my_conn_connect(sql_my_conn *c)
{
    sql_my_pool *p = c->pool;
    c->my = mysql_init(NULL);
    if (!c->my) {
        log_error("sql: mysql_init failed");
        return;
    }
    unsigned timeout_s = (p->line.s->connect_timeout_ms + 999) / 1000;
    mysql_options(c->my, MYSQL_OPT_NONBLOCK, 0);
    mysql_options(c->my, MYSQL_OPT_CONNECT_TIMEOUT, &timeout_s);
    mysql_options(c->my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    sql_my_tls_options(c->my, p->line.s);
    sql_my_set_state(c, SQL_MY_CONNECTING);
    c->step = SQL_MY_STEP_CONNECT;
    c->in_call = false;
    struct timeval tv = {(time_t)(p->line.s->connect_timeout_ms / 1000),
                         (suseconds_t)(p->line.s->connect_timeout_ms % 1000) * 1000};
    evtimer_add(&c->deadline, &tv);
    sql_my_resume(c, 0);
}

/* ---- running a task -------------------------------------------------------------------------- */

int sql_my_cache_find(const sql_my_conn *c, const char *sql, size_t len)
{
    for (size_t i = 0; i < c->cached; i++)
        if (c->cache[i].sql_len == len && memcmp(c->cache[i].sql, sql, len) == 0)
            return (int)i;
    return -1;
}

static MYSQL_STMT *sql_my_cached(sql_my_conn *c, const sql_task *t)
{
    int i = sql_my_cache_find(c, t->sql, t->sql_len);
    return i < 0 ? NULL : c->cache[i].stmt;
}

/* The columns of a result as the pipelined path decodes them; *ok: all of them can be. */
static sql_my_col *sql_my_columns(const MYSQL_FIELD *fields, size_t n, bool *ok)
{
    *ok = true;
    if (n == 0)
        return NULL;
    sql_my_col *cols = xmalloc(n * sizeof(*cols));
    for (size_t i = 0; i < n; i++) {
        cols[i].type = (uint8_t)fields[i].type;
        cols[i].is_unsigned = (fields[i].flags & UNSIGNED_FLAG) != 0;
        if (!sql_my_wire_type_ok(cols[i].type))
            *ok = false;
    }
    return cols;
}

/* A statement just prepared on c joins its cache, with what a pipelined execute needs. */
static void sql_my_cache_add(sql_my_conn *c, const sql_task *t)
{
    MYSQL_STMT *stmt = c->stmt;
    size_t ncols = mysql_stmt_field_count(stmt);
    bool ok = true;
    sql_my_col *cols = ncols && stmt->fields ? sql_my_columns(stmt->fields, ncols, &ok) : NULL;
    c->cache[c->cached].sql = xstrdup(t->sql);
    c->cache[c->cached].sql_len = t->sql_len;
    c->cache[c->cached].stmt = stmt;
    c->cache[c->cached].stmt_id = (uint32_t)stmt->stmt_id;
    c->cache[c->cached].nparams = mysql_stmt_param_count(stmt);
    c->cache[c->cached].cols = cols;
    c->cache[c->cached].ncols = cols ? ncols : 0;
    c->cache[c->cached].pipe = ok && (ncols == 0 || cols);
    c->cached++;
}

static void sql_my_bind_params(sql_my_conn *c, sql_task *t)
{
    if (t->nparams > c->pbind_cap) {
        free(c->pbind);
        c->pbind_cap = t->nparams;
        c->pbind = xmalloc(c->pbind_cap * sizeof(*c->pbind));
    }
    if (t->nparams)
        memset(c->pbind, 0, t->nparams * sizeof(*c->pbind));
    for (size_t i = 0; i < t->nparams; i++) {
        sql_value *v = &t->params[i];
        MYSQL_BIND *b = &c->pbind[i];
        switch (v->type) {
        case SQL_INT:
            b->buffer_type = MYSQL_TYPE_LONGLONG;
            b->buffer = &v->i;
            break;
        case SQL_DOUBLE:
            b->buffer_type = MYSQL_TYPE_DOUBLE;
            b->buffer = &v->d;
            break;
        case SQL_TEXT:
            b->buffer_type = MYSQL_TYPE_STRING;
            b->buffer = (void *)v->s;
            b->buffer_length = (unsigned long)v->len;
            break;
        case SQL_NULL:
            b->buffer_type = MYSQL_TYPE_NULL;
            break;
        }
    }
    if (t->nparams)
        mysql_stmt_bind_param(c->stmt, c->pbind);
}

/* Binds one buffer per result column: integers as 64-bit, floating and decimal as double; text
 * columns get no buffer, only their length, and are read by sql_my_add_row with
 * mysql_stmt_fetch_column once the row's size is known to fit the bound. Rows are fetched unbuffered
 * (no mysql_stmt_store_result), one packet at a time, and the packet size is capped per statement
 * (sql_my_bound_packets), so what the server sends is bounded while it is read, not after. The
 * statement's fields are read in place: no metadata copy per execution. */
static bool sql_my_bind_results(sql_my_conn *c)
{
    size_t n = mysql_stmt_field_count(c->stmt);
    const MYSQL_FIELD *fields = c->stmt->fields;
    if (!fields || n == 0)
        return false;
    sql_my_conn_reserve_columns(c, n);
    c->rcols = n;
    memset(c->rbind, 0, n * sizeof(*c->rbind));
    for (size_t i = 0; i < n; i++) {
        MYSQL_BIND *b = &c->rbind[i];
        b->is_null = &c->r_null[i];
        b->length = &c->r_len[i];
        switch (fields[i].type) {
        case MYSQL_TYPE_TINY:
        case MYSQL_TYPE_SHORT:
        case MYSQL_TYPE_LONG:
        case MYSQL_TYPE_INT24:
        case MYSQL_TYPE_LONGLONG:
        case MYSQL_TYPE_YEAR:
            c->r_type[i] = SQL_INT;
            b->buffer_type = MYSQL_TYPE_LONGLONG;
            b->buffer = &c->r_int[i];
            break;
        case MYSQL_TYPE_FLOAT:
        case MYSQL_TYPE_DOUBLE:
        case MYSQL_TYPE_DECIMAL:
        case MYSQL_TYPE_NEWDECIMAL:
            c->r_type[i] = SQL_DOUBLE;
            b->buffer_type = MYSQL_TYPE_DOUBLE;
            b->buffer = &c->r_double[i];
            break;
        default:
            c->r_type[i] = SQL_TEXT;
            b->buffer_type = MYSQL_TYPE_STRING; /* buffer NULL, length 0: the fetch reports the length */
            break;
        }
    }
    return mysql_stmt_bind_result(c->stmt, c->rbind) == 0;
}

/* Appends the fetched row to the task's rows. False when it would take the result past its bound:
 * a text value is copied only after its length is known to fit, into a scratch buffer that is never
 * larger than the bound. */
static bool sql_my_add_row(sql_my_conn *c, sql_task *t)
{
    size_t need = t->rows.bytes + c->rcols * sizeof(sql_value);
    for (size_t i = 0; i < c->rcols; i++)
        if (c->r_type[i] == SQL_TEXT && !c->r_null[i])
            need += (size_t)c->r_len[i] + 1;
    if (need > t->max_bytes)
        return false;
    for (size_t i = 0; i < c->rcols; i++) {
        sql_value v = {.type = SQL_NULL};
        if (!c->r_null[i]) {
            if (c->r_type[i] == SQL_INT) {
                v = sql_int(c->r_int[i]);
            } else if (c->r_type[i] == SQL_DOUBLE) {
                v = sql_double(c->r_double[i]);
            } else {
                size_t len = c->r_len[i];
                if (len + 1 > c->scratch_cap) {
                    free(c->scratch);
                    c->scratch_cap = len + 1 < 256 ? 256 : len + 1;
                    c->scratch = xmalloc(c->scratch_cap);
                }
                unsigned long got = 0;
                my_bool is_null = 0, error = 0;
                MYSQL_BIND b = {.buffer_type = MYSQL_TYPE_STRING, .buffer = c->scratch,
                                .buffer_length = (unsigned long)c->scratch_cap, .length = &got,
                                .is_null = &is_null, .error = &error};
                if (len > 0 && mysql_stmt_fetch_column(c->stmt, &b, (unsigned)i, 0) != 0)
                    return false;
                v = sql_text(c->scratch, len > 0 && got < len ? got : len);
            }
        }
        sql__rows_add(&t->rows, &v);
    }
    t->rows.rows++;
    return true;
}

/* The task's statement failed at the server or on the wire. Returns false when the connection was
 * closed (the task with it). */
static bool sql_my_stmt_failed(sql_my_conn *c, const char *what)
{
    unsigned err = c->stmt ? mysql_stmt_errno(c->stmt) : 0;
    const char *msg = c->stmt ? mysql_stmt_error(c->stmt) : "";
    if (err == 0) {
        /* Errors of the wire (a packet past the bound, a lost server during an unbuffered fetch) are
         * left on the connection's handle, not the statement's. */
        err = mysql_errno(c->my);
        msg = mysql_error(c->my);
    }
    /* Connector/C reports a packet past net.max_packet_size as CR_SERVER_LOST (ma_net_safe_read
     * overwrites net_realloc's CR_NET_PACKET_TOO_LARGE and closes the socket itself); what tells it
     * apart from a lost server is net.error == 1, which only net_realloc sets (a read failure sets 2). */
    if (err == CR_NET_PACKET_TOO_LARGE || err == ER_NET_PACKET_TOO_LARGE || c->my->net.error == 1) {
        /* A packet beyond the statement's bound (sql_my_bound_packets): refused from its header, before
         * anything was allocated for it. The rest of it is still on the socket, so the connection goes. */
        log_warn("sql: loop %u connection %u: %s: the server sent a packet larger than the statement's bound of "
                 "%zu bytes; closing the connection",
                 c->pool->line.id, c->index, what, c->task ? c->task->max_bytes : 0);
        sql_my_conn_close(c, SQL_ERROR_TOO_LARGE);
        return false;
    }
    if (err == 0 || sql_my_connection_error(err)) {
        /* No error code at all: where the connection is in the protocol is unknown, so it goes too. */
        log_warn("sql: loop %u connection %u: %s: %s (%u); closing it", c->pool->line.id, c->index, what, msg, err);
        sql_my_conn_close(c, SQL_ERROR_CONNECTION_LOST);
        return false;
    }
    if (err == ER_LOCK_DEADLOCK || err == ER_LOCK_WAIT_TIMEOUT) {
        /* Transactions in each other's way: the server rolled this one back (or gave up waiting for a
         * lock); running it again is right, so it is a conflict, not an error of the statement, and not
         * busy either (apiary's own line is not full). */
        log_info("sql: loop %u: %s: %s (%u)", c->pool->line.id, what, msg, err);
        c->task->error = SQL_ERROR_CONFLICT;
        return true;
    }
    log_warn("sql: loop %u: %s refused: %s (%u)", c->pool->line.id, what, msg, err);
    c->task->error = SQL_ERROR_QUERY;
    return true;
}

/* The task is over on a healthy connection: deliver, then serve the next one. */
static void sql_my_task_done(sql_my_conn *c)
{
    sql_task *t = c->task;
    c->task = NULL;
    t->conn = NULL;
    c->step = SQL_MY_STEP_NONE;
    sql_my_unhook_fields(c);
    if (c->stmt && !c->stmt_cached)
        mysql_stmt_close(c->stmt); /* only after a failed prepare: nothing to send to the server */
    c->stmt = NULL;
    sql_task_txn *txn = t->txn;
    if (txn && t->kind == SQL_TASK_BEGIN && !t->error) {
        txn->conn = c;
        txn->open = true;
        c->txn = txn;
    } else if (txn && t->kind == SQL_TASK_END) {
        if (t->error) {
            /* A COMMIT or ROLLBACK the server refused: where the transaction is, is unknown, so the
             * connection goes (the server rolls back what it left open). */
            log_warn("sql: loop %u connection %u: ending a transaction failed; closing the connection",
                     c->pool->line.id, c->index);
            c->retire = true;
        }
        txn->open = false;
        txn->conn = NULL;
        c->txn = NULL;
    }
    /* Inside a transaction the connection stays the transaction's (HELD, still in use); a statement of
     * it that failed leaves it open until the handle is released, which rolls it back
     * (sql_my_txn_settle) before the connection serves anyone else. */
    if (c->txn) {
        sql_my_set_state(c, SQL_MY_HELD);
    } else {
        sql_my_set_state(c, SQL_MY_IDLE);
        sql__gauge_add(SQL_GAUGE_IN_USE, -1);
    }
    sql_task_finish(t, t->error);
    if (c->retire && c->state == SQL_MY_IDLE)
        sql_my_conn_close(c, NULL);
}

/* Binds the task's parameters and makes execute the next call. The server says how many `?` the
 * statement has; Connector/C reads that many bindings, so a count that differs from the values given
 * (an application bug, or a server or proxy announcing more) never reaches mysql_stmt_bind_param: the
 * task fails "query" naming the statement. Returns false when the task was finished here. */
static bool sql_my_start_execute(sql_my_conn *c)
{
    sql_task *t = c->task;
    unsigned long expected = mysql_stmt_param_count(c->stmt);
    if (expected != t->nparams) {
        log_warn("sql: loop %u: the statement \"%s\" takes %lu parameter(s) and was given %zu; not run",
                 c->pool->line.id, t->sql, expected, t->nparams);
        t->error = SQL_ERROR_QUERY;
        sql_my_task_done(c);
        return false;
    }
    sql_my_bind_params(c, t);
    c->step = SQL_MY_STEP_EXECUTE;
    return true;
}

/* A call has completed; decide what comes next. Returns true to go on with the next call, false when
 * the connection has nothing more to do now (or was closed). */
static bool sql_my_step_done(sql_my_conn *c)
{
    sql_my_pool *p = c->pool;
    sql_task *t = c->task;
    switch (c->step) {
    case SQL_MY_STEP_CONNECT: {
        char why[512];
        if (!c->ret_my) {
            sql_my_connect_error(c->my, p->line.s, why, sizeof(why));
            sql_my_connect_failed(c, why);
            return false;
        }
        if (!sql_my_tls_check(c->my, p->line.s, why, sizeof(why))) {
            sql_my_connect_failed(c, why);
            return false;
        }
        event_del(&c->deadline);
        sql_my_set_state(c, SQL_MY_IDLE);
        c->step = SQL_MY_STEP_NONE;
        sql__count_connect(true);
        sql__gauge_add(SQL_GAUGE_OPEN, 1);
        if (p->line.outage_logged)
            log_info("sql: loop %u connected to MariaDB again", p->line.id);
        sql_task_backoff_reset(&p->line);
        sql_my_watch(c);
        sql_my_hook_reads(c);
        sql_my_hook_metadata(c);
        /* Only where apiary sees the plain socket (no TLS: OpenSSL holds the bytes) and may do more
         * than one statement at a time. */
        c->pipe_ok = c->pvio_orig != NULL && p->line.s->pipeline_depth > 1;
        return false;
    }
    case SQL_MY_STEP_PREPARE:
        if (c->ret_int != 0) {
            if (!sql_my_stmt_failed(c, "prepare"))
                return false;
            sql_my_task_done(c);
            return false;
        }
        if (c->cached < SQL_MY_CACHE) {
            sql_my_cache_add(c, t);
            c->stmt_cached = true;
        } else {
            c->retire = true;
        }
        return sql_my_start_execute(c);
    case SQL_MY_STEP_EXECUTE:
        if (c->ret_int != 0) {
            if (sql_my_stmt_failed(c, "execute"))
                sql_my_task_done(c);
            return false;
        }
        if (mysql_stmt_field_count(c->stmt) == 0) {
            t->rows.affected = (uint64_t)mysql_stmt_affected_rows(c->stmt);
            t->rows.insert_id = (int64_t)mysql_stmt_insert_id(c->stmt);
            sql_my_task_done(c);
            return false;
        }
        /* Every row costs at least a cell per column: more columns than the bound can hold fail before
         * anything is fetched (the free step reads and discards the rows, packet by packet). */
        if (mysql_stmt_field_count(c->stmt) * sizeof(sql_value) > t->max_bytes) {
            t->error = SQL_ERROR_TOO_LARGE;
            c->step = SQL_MY_STEP_FREE;
            return true;
        }
        if (!sql_my_bind_results(c)) {
            t->error = SQL_ERROR_QUERY;
            c->step = SQL_MY_STEP_FREE;
            return true;
        }
        t->rows.cols = c->rcols;
        c->step = SQL_MY_STEP_FETCH;
        return true;
    case SQL_MY_STEP_FETCH:
        if (c->ret_int == 0 || c->ret_int == MYSQL_DATA_TRUNCATED) {
            /* TRUNCATED is expected: text columns have no buffer until sql_my_add_row reads them. */
            if (!sql_my_add_row(c, t)) {
                t->error = SQL_ERROR_TOO_LARGE;
                c->step = SQL_MY_STEP_FREE;
            }
            return true; /* the next row (or the free) */
        }
        if (c->ret_int == MYSQL_NO_DATA && !t->error) {
            /* The whole result is read: Connector/C's statement is FETCH_DONE and the connection
             * READY, so freeing the result reads nothing and cannot wait. The blocking call then,
             * without a non-blocking call's context switch and another pass through here. */
            (void)mysql_stmt_free_result(c->stmt);
            sql_my_task_done(c);
            return false;
        }
        if (c->ret_int != MYSQL_NO_DATA) {
            if (!sql_my_stmt_failed(c, "fetch"))
                return false;
        }
        c->step = SQL_MY_STEP_FREE;
        return true;
    case SQL_MY_STEP_FREE: {
        /* Freeing an unbuffered result reads and discards its remaining rows; Connector/C does not
         * report a failure there (a packet past the bound, the wire), it only leaves the error on the
         * handle. The connection is then somewhere in the protocol: it goes, never back to the pool. */
        unsigned err = mysql_errno(c->my);
        if (c->ret_bool != 0 || err != 0) {
            bool too_large = err == CR_NET_PACKET_TOO_LARGE || err == ER_NET_PACKET_TOO_LARGE ||
                             c->my->net.error == 1 || t->error == SQL_ERROR_TOO_LARGE;
            log_warn("sql: loop %u connection %u: discarding the rest of a result failed: %s (%u); closing it",
                     p->line.id, c->index, mysql_error(c->my), err);
            sql_my_conn_close(c, too_large ? SQL_ERROR_TOO_LARGE : SQL_ERROR_CONNECTION_LOST);
            return false;
        }
        sql_my_task_done(c);
        return false;
    }
    case SQL_MY_STEP_NONE:
        break;
    }
    return false;
}

static void sql_my_resume(sql_my_conn *c, int ready)
{
    for (;;) {
        int status = sql_my_call(c, ready);
        if (status != 0) {
            c->in_call = true;
            sql_my_wait(c, status);
            return;
        }
        c->in_call = false;
        ready = 0;
        if (!sql_my_step_done(c))
            break;
    }
    /* The connection may be idle (or closed) now: whoever waits gets it. */
    sql_my_dispatch(c->pool);
}

/* Caps the size of any packet Connector/C will read for this task. It checks a packet's length (from
 * its 4-byte header) against net.max_packet_size before it grows its buffer, so a row longer than the
 * statement's bound is refused (CR_NET_PACKET_TOO_LARGE) before it is read, instead of being buffered
 * and then measured. A row's packet is its values plus a few bytes per column, while the bound counts
 * a whole sql_value per cell, so a row that fits the bound always fits its packet; the floor covers
 * metadata and error packets. MYSQL_OPT_MAX_ALLOWED_PACKET only applies at connect, hence the field. */
static void sql_my_bound_packets(sql_my_conn *c, const sql_task *t)
{
    size_t cap = t->max_bytes + SQL_MY_PACKET_SLACK;
    if (cap < SQL_MY_PACKET_MIN)
        cap = SQL_MY_PACKET_MIN;
    c->my->net.max_packet_size = (unsigned long)cap;
}

static void sql_my_run(sql_my_conn *c, sql_task *t)
{
    if (c->state != SQL_MY_HELD) /* a held connection counts as in use already */
        sql__gauge_add(SQL_GAUGE_IN_USE, 1);
    sql_my_set_state(c, SQL_MY_BUSY);
    c->task = t;
    t->conn = c;
    t->rows.cols = 0;
    sql_my_bound_packets(c, t);
    c->stmt = sql_my_cached(c, t);
    c->stmt_cached = c->stmt != NULL;
    if (c->stmt) {
        if (!sql_my_start_execute(c))
            return; /* finished: the dispatch loop that called us hands the connection on */
    } else {
        c->stmt = mysql_stmt_init(c->my);
        if (!c->stmt) {
            sql_my_conn_close(c, SQL_ERROR_CONNECTION_LOST);
            return;
        }
        c->step = SQL_MY_STEP_PREPARE;
    }
    c->in_call = false;
    int status = sql_my_call(c, 0);
    if (status != 0) {
        c->in_call = true;
        sql_my_wait(c, status);
        return;
    }
    /* The call completed without waiting (it can, e.g. when the answer is already buffered). */
    if (sql_my_step_done(c))
        sql_my_resume(c, 0);
}

/* Hands waiting tasks to connections in order (sql_my_pick), has what was pipelined sent at the end
 * of the loop's turn (sql_my_pipe_flush_soon), and opens
 * connections for tasks still waiting, or one more when statements had to stack up behind others and
 * no open connection is idle, while the pool has room (and is not backing off). */
void sql_my_dispatch(sql_my_pool *p)
{
    if (p->line.freeing)
        return; /* the loop is going: nothing more starts */
    /* A transaction's next step runs on the connection it holds, never waiting in the line. */
    for (unsigned i = 0; p->in_state[SQL_MY_HELD] > 0 && i < p->nconns; i++) {
        sql_my_conn *c = &p->conns[i];
        if (c->state == SQL_MY_HELD && c->txn && c->txn->pending) {
            sql_task *t = c->txn->pending;
            c->txn->pending = NULL;
            c->txn->task = t;
            sql_my_run(c, t);
        }
    }
    bool stacked = false; /* a statement went behind another on its connection */
    sql_my_conn *group_conn = NULL;
    unsigned group = 0;
    while (p->line.head && (p->in_state[SQL_MY_IDLE] > 0 || p->in_state[SQL_MY_PIPE] > 0)) {
        sql_task *t = p->line.head;
        int e;
        sql_my_conn *c = sql_my_pipe_place(p, t, group_conn, group, &e);
        if (!c)
            break;
        group = t->group;
        group_conn = c;
        sql_task_unwait(t);
        stacked |= c->state == SQL_MY_PIPE;
        if (e >= 0)
            sql_my_pipe_send(c, t, e);
        else
            sql_my_run(c, t);
    }
    sql_my_pipe_flush_soon(p);
    if (p->line.backoff)
        return;
    size_t connecting = p->in_state[SQL_MY_CONNECTING];
    /* Tasks that wait get connections; so does pipelining that had to stack statements while a
     * connection of the pool was still closed: MariaDB runs each connection on a thread of its own, and
     * a database on several cores should see several. */
    size_t want = p->line.waiting + (stacked && p->in_state[SQL_MY_IDLE] == 0 ? 1 : 0);
    for (unsigned i = 0; p->in_state[SQL_MY_CLOSED] > 0 && i < p->nconns && connecting < want; i++) {
        if (p->conns[i].state == SQL_MY_CLOSED) {
            connecting++;
            sql_my_conn_connect(&p->conns[i]);
            if (p->line.backoff)
                return;
        }
    }
}

static void sql_my_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sql_my_pool *p = arg;
    p->line.backoff = false;
    /* One probe: when it connects, the rest follow as tasks need them. */
    for (unsigned i = 0; i < p->nconns; i++) {
        if (p->conns[i].state == SQL_MY_CLOSED) {
            sql_my_conn_connect(&p->conns[i]);
            return;
        }
    }
}

/* A running task's deadline passed: the connection is in an unknown place in the protocol, so it goes
 * (the task with it, "timeout"), and a fresh one takes its place for the next task. */
/* On a pipelining connection t is the head of its FIFO: a connection's statements were taken from the
 * line in the order they were submitted, with the same timeout each, and the sweep ends the oldest
 * first (sql_task.c), so the head gets the timeout and those behind it connection_lost (as on
 * PostgreSQL, where a stalled head takes its connection down too). */
static void sql_my_expire(sql_task *t)
{
    sql_my_conn *c = t->conn;
    sql_my_pool *p = c->pool;
    log_warn("sql: loop %u connection %u: statement not done within %u ms; closing the connection", p->line.id,
             c->index, p->line.s->query_timeout_ms);
    sql_my_conn_close(c, SQL_ERROR_TIMEOUT);
}

static void sql_my_line_dispatch(sql_task_line *line) { sql_my_dispatch((sql_my_pool *)line); }

static bool sql_my_available(sql_task_line *line)
{
    sql_my_pool *p = (sql_my_pool *)line;
    return atomic_load(&sql_my_schema_ready) && !(p->line.backoff && !sql_my_any_up(p));
}

static const sql_task_ops sql_my_task_ops = {
    .dispatch = sql_my_line_dispatch,
    .expire = sql_my_expire,
    .available = sql_my_available,
    .txn_release = NULL,
    .dispatch_after_settle = false, /* every completion ends in sql_my_resume's dispatch */
    .group_many = true, /* a request's statements are placed (and pipelined) in one dispatch */
    .begin_sql = "START TRANSACTION",
};

/* ---- the pool ---------------------------------------------------------------------------------- */

static sql_my_pool *sql_my_pool_new(struct event_base *base, const sql_settings *s, unsigned id)
{
    sql_my_pool *p = xcalloc(1, sizeof(*p));
    sql_task_line_init(&p->line, base, s, &sql_my_task_ops, id, sql_my_on_retry, p);
    p->nconns = s->connections_per_loop ? s->connections_per_loop : 1;
    p->conns = xcalloc(p->nconns, sizeof(*p->conns));
    p->flush = xcalloc(p->nconns, sizeof(*p->flush));
    sql_my_pipe_pool_init(p, base);
    p->in_state[SQL_MY_CLOSED] = p->nconns;
    for (unsigned i = 0; i < p->nconns; i++) {
        p->conns[i].pool = p;
        p->conns[i].index = i;
        evtimer_assign(&p->conns[i].deadline, base, sql_my_on_deadline, &p->conns[i]);
    }
    return p;
}

static void sql_my_pool_free(void *arg)
{
    sql_my_pool *p = arg;
    p->line.freeing = true;
    sql_task_fail_waiting(&p->line, SQL_ERROR_UNAVAILABLE);
    for (unsigned i = 0; i < p->nconns; i++)
        sql_my_conn_close(&p->conns[i], SQL_ERROR_UNAVAILABLE);
    sql_task_line_free(&p->line);
    event_del(&p->flush_ev);
    free(p->flush);
    free(p->conns);
    free(p);
}

static sql_my_pool *sql_my_loop_pool(http_loop *loop)
{
    sql_my_pool *p = http_loop_local(loop, HTTP_LOOP_SLOT_SQL);
    if (!p) {
        p = sql_my_pool_new(http_loop_base(loop), sql_my_settings, http_loop_id(loop));
        http_loop_set_local(loop, HTTP_LOOP_SLOT_SQL, p, sql_my_pool_free);
    }
    return p;
}

static async_op *sql_my_many(async_scope *scope, http_loop *loop, const sql_stmt *stmts, size_t n, bool single)
{
    return sql_task_many(scope, &sql_my_loop_pool(loop)->line, stmts, n, single);
}

static async_op *sql_my_txn_begin(sql_txn *tx) { return sql_task_txn_begin(tx, &sql_my_loop_pool(tx->loop)->line); }

static bool sql_my_ready(http_loop *loop)
{
    if (!atomic_load(&sql_my_schema_ready))
        return false;
    sql_my_pool *p = sql_my_loop_pool(loop);
    if (sql_my_any_up(p))
        return true;
    /* None up: start one unless an attempt or a backoff is under way, so the next probe can pass. */
    if (!p->line.backoff && !sql_my_any_connecting(p))
        sql_my_conn_connect(&p->conns[0]);
    return sql_my_any_up(p);
}

/* ---- the schema thread -------------------------------------------------------------------------- */

static bool sql_my_schema_try(const sql_settings *s, char *why, size_t why_cap)
{
    MYSQL *my = mysql_init(NULL);
    if (!my) {
        snprintf(why, why_cap, "mysql_init failed");
        return false;
    }
    unsigned timeout_s = (s->connect_timeout_ms + 999) / 1000, io_s = 30;
    mysql_options(my, MYSQL_OPT_CONNECT_TIMEOUT, &timeout_s);
    mysql_options(my, MYSQL_OPT_READ_TIMEOUT, &io_s);
    mysql_options(my, MYSQL_OPT_WRITE_TIMEOUT, &io_s);
    mysql_options(my, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    sql_my_tls_options(my, s);
    bool ok = mysql_real_connect(my, s->host, s->user, s->password, NULL, s->port, NULL, 0) != NULL;
    if (!ok) {
        sql_my_connect_error(my, s, why, why_cap);
        mysql_close(my);
        return false;
    }
    if (!sql_my_tls_check(my, s, why, why_cap)) {
        mysql_close(my);
        return false;
    }
    if (ok) {
        /* An identifier cannot be a bound parameter; sql.url allows only [A-Za-z0-9_$] in it. */
        char create[256];
        snprintf(create, sizeof(create), "CREATE DATABASE IF NOT EXISTS `%s` CHARACTER SET utf8mb4", s->database);
        ok = mysql_query(my, create) == 0 && mysql_select_db(my, s->database) == 0;
    }
    if (!ok)
        snprintf(why, why_cap, "%s (%u)", mysql_error(my), mysql_errno(my));
    mysql_close(my);
    return ok;
}

static void *sql_my_schema_main(void *arg)
{
    const sql_settings *s = arg;
    bool logged = false;
    for (;;) {
        char why[512];
        if (sql_my_schema_try(s, why, sizeof(why))) {
            atomic_store(&sql_my_schema_ready, true);
            log_info("sql: MariaDB schema ready in database %s", s->database);
            break;
        }
        if (!logged)
            log_warn("sql: cannot prepare the schema on MariaDB at %s:%u: %s (retrying every second)", s->host,
                     s->port, why);
        logged = true;
        pthread_mutex_lock(&sql_my_stop_lock);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += 1;
        if (!sql_my_stopping)
            pthread_cond_timedwait(&sql_my_stop_cond, &sql_my_stop_lock, &until);
        bool stop = sql_my_stopping;
        pthread_mutex_unlock(&sql_my_stop_lock);
        if (stop)
            break;
    }
    mysql_thread_end();
    return NULL;
}

static int sql_my_start(const sql_settings *s)
{
    if (s->tls_ca[0] && access(s->tls_ca, R_OK) != 0) {
        /* A typo here would otherwise be a TLS failure retried forever; the path is not logged (it is
         * part of sql.url, which is never logged). */
        log_error("sql: the ssl_ca file named in sql.url cannot be read: %s", strerror(errno));
        return -1;
    }
    if (mysql_library_init(0, NULL, NULL) != 0) {
        log_error("sql: cannot initialise the MariaDB client library");
        return -1;
    }
    sql_my_settings = s;
    sql_my_stopping = false;
    atomic_store(&sql_my_schema_ready, false);
    if (pthread_create(&sql_my_schema_thread, NULL, sql_my_schema_main, (void *)s) != 0) {
        log_error("sql: cannot start the schema thread");
        return -1;
    }
    pthread_setname_np(sql_my_schema_thread, "apiary-sql");
    sql_my_schema_started = true;
    log_info("sql: MariaDB backend, database %s at %s:%u, %u connections per loop, TLS %s", s->database, s->host,
             s->port, s->connections_per_loop, sql_my_tls_name(s->tls));
    return 0;
}

static void sql_my_stop(void)
{
    if (sql_my_schema_started) {
        pthread_mutex_lock(&sql_my_stop_lock);
        sql_my_stopping = true;
        pthread_cond_broadcast(&sql_my_stop_cond);
        pthread_mutex_unlock(&sql_my_stop_lock);
        pthread_join(sql_my_schema_thread, NULL);
        sql_my_schema_started = false;
    }
    mysql_library_end();
}

static void sql_my_shutdown(void) {}

const sql_backend sql_mariadb_backend = {
    .name = "mariadb",
    .start = sql_my_start,
    .shutdown = sql_my_shutdown,
    .stop = sql_my_stop,
    .many = sql_my_many,
    .batch = NULL, /* chained through a transaction by sql.c */
    .ready = sql_my_ready,
    .txn_begin = sql_my_txn_begin,
    .txn_query = sql_task_txn_query,
    .txn_end = sql_task_txn_end,
    .txn_abandon = sql_task_txn_abandon,
};
