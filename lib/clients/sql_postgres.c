/* sql_postgres: the PostgreSQL backend of include/apiary/sql.h, on libpq's non-blocking API in pipeline
 * mode, driven by libevent on the request's own loop (asyncpg's job, in C).
 *
 * The model. Each loop has a pool (loop-local slot HTTP_LOOP_SLOT_SQL) of sql.connections_per_loop
 * connections, opened as load needs them. A connection is in pipeline mode: a statement is sent at
 * once (PQsendPrepare the first time its text is seen on that connection, then PQsendQueryPrepared and
 * PQpipelineSync), without waiting for the statements before it, so one connection carries up to
 * sql.pipeline_depth statements of many requests at a time. Every statement has a Sync of its own: it
 * runs in its own implicit transaction and a failure aborts nothing else (TechEmpower's rule 7 asks
 * for exactly this of pipelined queries: Bind, Execute, Sync each; one Sync for many statements is a
 * batch). The statements of one sql_query_many go one after the other on one connection, so they
 * leave together (sql_pg_cork) and the server reads them with one read. Results come back in the
 * order sent; the connection keeps its statements in a FIFO and hands each result to the head.
 * Statements beyond what the connections take wait in the pool's FIFO (at most sql.max_waiting, then
 * 503 "busy"). Nothing blocks the loop: the host is an IP address given as hostaddr (no resolver) or a
 * Unix socket directory; PQconnectPoll is driven by socket readiness; the socket is non-blocking
 * (PQsetnonblocking), so a send that cannot be written at once is flushed when the socket is writable.
 *
 * Who owns what. The pool owns its connections; its tasks, their FIFO, their deadlines, "finish and
 * discard" and the bookkeeping of transactions are the task layer's (sql_task.c, shared with
 * sql_mariadb.c), whose line is the first member of the pool. A sent task the caller gave up on stays in
 * its connection's FIFO (its result must still be read to keep the order) and the result is discarded
 * when it arrives.
 *
 * Deadlines. Every task must end sql.query_timeout_ms after its submission; one timer per loop watches
 * them all (sql_task.c). Waiting: it fails "timeout". Sent: the connection is closed (sql_pg_expire:
 * socket shut down, then PQfinish, neither of which can wait) — libpq 15's PQcancel opens a new
 * connection with blocking calls, so it never runs on a loop; the server abandons the statement when it
 * notices the closed socket, which it checks every second while a statement runs
 * (client_connection_check_interval, set at connect). The statements sent after it on that connection
 * fail "connection_lost" (503), since their results would have come after.
 *
 * Transactions hold a connection: BEGIN waits, first in the line (nothing behind it is sent
 * meanwhile, so the pipelines drain), for a connection with nothing in flight, and no other statement
 * is sent there until COMMIT or ROLLBACK.
 *
 * Writes. libpq 15's PQpipelineSync flushes the socket itself, so with a Sync per statement each
 * statement costs one send() whenever it is queued (PQsendPipelineSync, which does not flush, is
 * PostgreSQL 17's). What a send costs is mostly the segment it transmits (on loopback the server's
 * receive path and its backend's wake-up too), so the statements a loop turn queues on a connection
 * after its first are corked (TCP_CORK) and leave in one segment when the turn ends (sql_pg_cork,
 * docs/sql.md, "Writes and reads").
 *
 * Results are read in libpq's single-row mode (asked for just before a statement's results are
 * parsed): each row is handed over as it arrives and copied while the result fits the statement's
 * bound; past it the task fails too_large and its remaining rows are read and dropped one by one, so
 * a result is never held whole. A row itself is one protocol message, which libpq reads whole. A
 * connection that read a result past its bound is closed once its pipeline is done: libpq never
 * shrinks its input buffer. */
#include <errno.h>
#include <event2/event.h>
#include <event2/event_struct.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "http_loop_internal.h"
#include "log.h"
#include "sql_task_internal.h"
#include "xalloc_internal.h"

/* Prepared statements kept per connection; more distinct texts run unnamed (parsed each time). */
#define SQL_PG_CACHE 64
#define SQL_PG_BACKOFF_BASE_MS 100u
#define SQL_PG_BACKOFF_MAX_MS 2000u

/* Result column types (pg_type.h's OIDs, stable across versions). */
#define SQL_PG_BOOL 16
#define SQL_PG_INT8 20
#define SQL_PG_INT2 21
#define SQL_PG_INT4 23
#define SQL_PG_OID 26
#define SQL_PG_FLOAT4 700
#define SQL_PG_FLOAT8 701
#define SQL_PG_NUMERIC 1700

static const sql_settings *sql_pg_settings;

typedef struct sql_pg_pool sql_pg_pool;
typedef struct sql_pg_conn sql_pg_conn;

/* Which of its results a sent task waits for next: the prepare's, the statement's (QUERY: single-row
 * mode not yet asked for; ROWS: reading them), or the Sync's. */
typedef enum sql_pg_stage {
    SQL_PG_STAGE_PREPARE,
    SQL_PG_STAGE_QUERY,
    SQL_PG_STAGE_ROWS,
    SQL_PG_STAGE_SYNC
} sql_pg_stage;

typedef enum sql_pg_state { SQL_PG_CLOSED, SQL_PG_CONNECTING, SQL_PG_UP } sql_pg_state;

typedef struct sql_pg_prepared {
    char *sql;     /* the text as given (with `?`) */
    char name[16]; /* "a<number>" on the server */
    size_t nparams;
} sql_pg_prepared;

struct sql_pg_conn {
    sql_pg_pool *pool;
    unsigned index;
    sql_pg_state state;
    PGconn *pg;
    int fd;
    struct event io; /* connecting: one-shot waits on whatever socket PQconnectPoll names */
    bool io_added;
    struct event rd; /* up: a persistent read watch (results, and a server closing an idle connection) */
    bool rd_added;
    struct event wr; /* up: a one-shot write wait while libpq has unsent output */
    bool wr_added;
    struct event deadline; /* the connect deadline */
    sql_task *head, *tail; /* sent, results pending, in order */
    unsigned inflight;
    unsigned writes; /* of those, statements that write (sql_task's `writes`): while any is in flight
                      * the connection takes nothing more, which would wait for its commit */
    bool in_use_counted;
    bool tcp;       /* a TCP socket (not a Unix one): TCP_CORK applies */
    bool sent_turn; /* a statement went out on it in this loop turn (the pool's flush is pending) */
    bool corked;    /* TCP_CORK is on: what is sent waits in the kernel for the pool's flush */
    bool retire;   /* read a result past its statement's bound: libpq keeps its input buffer as large
                    * as that result for the connection's life, so it takes nothing new and is closed
                    * once what is in flight is done */
    sql_pg_prepared cache[SQL_PG_CACHE];
    size_t cached;
    unsigned next_name;
    sql_task_txn *txn;
};

struct sql_pg_pool {
    sql_task_line line; /* first: the line's ops get the pool back from it (sql_task.c) */
    sql_pg_conn *conns;
    unsigned nconns;
    struct event flush; /* activated by a turn's first send: uncorks what the turn sent, once */
    bool flush_active;
    bool dispatching;
    bool redo;
};

static void sql_pg_dispatch(sql_pg_pool *p);
static void sql_pg_conn_close(sql_pg_conn *c, const char *error);

static const char *sql_pg_tls_name(sql_tls_mode m)
{
    return m == SQL_TLS_REQUIRED      ? "require"
           : m == SQL_TLS_VERIFY_CA   ? "verify-ca"
           : m == SQL_TLS_VERIFY_FULL ? "verify-full"
                                      : "disable";
}

/* ---- connections --------------------------------------------------------------------------------- */

static void sql_pg_notice(void *arg, const char *message)
{
    (void)arg;
    /* "relation already exists, skipping" and the like: libpq would print them on stderr. */
    log_debug("sql: PostgreSQL notice: %.*s", (int)strcspn(message, "\n"), message);
}

/* The in-use gauge: a connection with statements in flight or held by a transaction. */
static void sql_pg_conn_use(sql_pg_conn *c)
{
    bool in_use = c->state == SQL_PG_UP && (c->inflight > 0 || c->txn);
    if (in_use != c->in_use_counted) {
        sql__gauge_add(SQL_GAUGE_IN_USE, in_use ? 1 : -1);
        c->in_use_counted = in_use;
    }
}

static bool sql_pg_any_up(const sql_pg_pool *p)
{
    for (unsigned i = 0; i < p->nconns; i++)
        if (p->conns[i].state == SQL_PG_UP)
            return true;
    return false;
}

static bool sql_pg_any_connecting(const sql_pg_pool *p)
{
    for (unsigned i = 0; i < p->nconns; i++)
        if (p->conns[i].state == SQL_PG_CONNECTING)
            return true;
    return false;
}

/* A transaction's connection went: roll back or free it (sql_task_txn_settle), and send the rollback. */
static void sql_pg_settle(sql_task_txn *x)
{
    sql_pg_pool *p = (sql_pg_pool *)x->line;
    if (sql_task_txn_settle(x))
        sql_pg_dispatch(p);
}

/* Closes the connection, whatever it was doing: the socket is shut down first, so PQfinish's goodbye
 * fails at once instead of waiting on a full send buffer. Every task in flight finishes with `error`
 * (connection_lost when NULL), in order. */
static void sql_pg_conn_close(sql_pg_conn *c, const char *error)
{
    if (c->state == SQL_PG_CLOSED)
        return;
    sql_pg_pool *p = c->pool;
    bool was_up = c->state == SQL_PG_UP;
    if (c->io_added)
        event_del(&c->io);
    if (c->rd_added)
        event_del(&c->rd);
    if (c->wr_added)
        event_del(&c->wr);
    c->io_added = c->rd_added = c->wr_added = false;
    event_del(&c->deadline);
    if (c->pg) {
        int fd = PQsocket(c->pg);
        if (fd >= 0)
            shutdown(fd, SHUT_RDWR);
        PQfinish(c->pg);
    }
    c->pg = NULL;
    c->fd = -1;
    for (size_t i = 0; i < c->cached; i++)
        free(c->cache[i].sql);
    c->cached = 0;
    c->state = SQL_PG_CLOSED;
    c->retire = false;
    c->sent_turn = c->corked = false;
    sql_task_txn *txn = c->txn;
    c->txn = NULL;
    if (txn) {
        /* The server rolls back what a closed connection left open. */
        txn->conn = NULL;
        txn->open = false;
    }
    c->inflight = 0;
    c->writes = 0;
    sql_pg_conn_use(c);
    if (was_up) {
        sql__gauge_add(SQL_GAUGE_OPEN, -1);
        if (!p->line.freeing)
            sql__count_closed();
    }
    sql_task *t = c->head;
    c->head = c->tail = NULL;
    /* The transaction's next step first: finishing its running one may free the transaction. */
    sql_task *pending = txn ? txn->pending : NULL;
    bool settle = txn && !t && !pending;
    if (pending)
        sql_task_finish(pending, error ? error : SQL_ERROR_CONNECTION_LOST);
    while (t) {
        sql_task *next = t->fnext;
        t->conn = NULL;
        t->fnext = NULL;
        sql_task_finish(t, error ? error : SQL_ERROR_CONNECTION_LOST);
        t = next;
    }
    if (settle)
        sql_pg_settle(txn);
}

static void sql_pg_where(const sql_settings *s, char *out, size_t cap)
{
    if (s->socket_dir[0])
        snprintf(out, cap, "the socket in %s, port %u", s->socket_dir, s->port);
    else
        snprintf(out, cap, "%s:%u", s->host, s->port);
}

static void sql_pg_connect_failed(sql_pg_conn *c, const char *why)
{
    sql_pg_pool *p = c->pool;
    sql__count_connect(false);
    char where[320];
    sql_pg_where(p->line.s, where, sizeof(where));
    /* libpq's message never contains the password; the address is for the log only. */
    char tls[64] = "";
    if (p->line.s->tls != SQL_TLS_OFF)
        snprintf(tls, sizeof(tls), " over TLS (sslmode=%s)", sql_pg_tls_name(p->line.s->tls));
    if (!p->line.outage_logged)
        log_warn("sql: loop %u cannot connect to PostgreSQL at %s%s: %.*s (retrying with backoff)", p->line.id, where,
                 tls, (int)strcspn(why, "\n"), why);
    else
        log_debug("sql: loop %u: connect to %s failed again: %.*s", p->line.id, where, (int)strcspn(why, "\n"), why);
    p->line.outage_logged = true;
    sql_pg_conn_close(c, NULL);
    p->line.failures++;
    if (!p->line.backoff)
        sql_task_backoff(&p->line);
    if (!sql_pg_any_up(p) && !sql_pg_any_connecting(p))
        sql_task_fail_waiting(&p->line, SQL_ERROR_UNAVAILABLE);
}

static void sql_pg_on_deadline(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sql_pg_conn *c = arg;
    sql_pg_pool *p = c->pool;
    if (c->state == SQL_PG_CONNECTING) {
        sql_pg_connect_failed(c, "connect timed out");
        sql_pg_dispatch(p);
    }
}

static void sql_pg_drain(sql_pg_conn *c);

static void sql_pg_want_write(sql_pg_conn *c)
{
    if (!c->wr_added) {
        event_add(&c->wr, NULL);
        c->wr_added = true;
    }
}

/* Pushes what libpq holds; false when the connection broke (closed here). */
static bool sql_pg_flush(sql_pg_conn *c)
{
    int r = PQflush(c->pg);
    if (r < 0) {
        log_warn("sql: loop %u connection %u: sending failed: %.*s; closing it", c->pool->line.id, c->index,
                 (int)strcspn(PQerrorMessage(c->pg), "\n"), PQerrorMessage(c->pg));
        sql_pg_conn_close(c, SQL_ERROR_CONNECTION_LOST);
        return false;
    }
    if (r > 0)
        sql_pg_want_write(c);
    return true;
}

static void sql_pg_on_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sql_pg_conn *c = arg;
    sql_pg_pool *p = c->pool;
    c->wr_added = false;
    if (sql_pg_flush(c))
        sql_pg_drain(c); /* flushing may have read, too */
    sql_pg_dispatch(p);
}

static void sql_pg_on_read(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sql_pg_conn *c = arg;
    sql_pg_pool *p = c->pool;
    if (!PQconsumeInput(c->pg) || PQstatus(c->pg) == CONNECTION_BAD) {
        if (c->head || c->txn)
            log_warn("sql: loop %u connection %u: the connection broke: %.*s", p->line.id, c->index,
                     (int)strcspn(PQerrorMessage(c->pg), "\n"), PQerrorMessage(c->pg));
        else
            log_info("sql: loop %u connection %u: closed by the server while idle; a new one will be opened",
                     p->line.id, c->index);
        sql_pg_conn_close(c, SQL_ERROR_CONNECTION_LOST);
    } else {
        sql_pg_drain(c);
    }
    sql_pg_dispatch(p);
}

static void sql_pg_connected(sql_pg_conn *c)
{
    sql_pg_pool *p = c->pool;
    if (PQsetnonblocking(c->pg, 1) != 0 || PQenterPipelineMode(c->pg) != 1) {
        sql_pg_connect_failed(c, PQerrorMessage(c->pg));
        return;
    }
    if (p->line.s->tls != SQL_TLS_OFF && !PQsslInUse(c->pg)) {
        /* libpq refuses this itself for every sslmode apiary passes; checked again before any statement. */
        sql_pg_connect_failed(c, "the server did not agree to TLS, which sql.url requires; not using the connection");
        return;
    }
    PQsetNoticeProcessor(c->pg, sql_pg_notice, NULL);
    event_del(&c->deadline);
    c->state = SQL_PG_UP;
    c->fd = PQsocket(c->pg);
    c->tcp = !p->line.s->socket_dir[0];
    sql__count_connect(true);
    sql__gauge_add(SQL_GAUGE_OPEN, 1);
    if (p->line.outage_logged)
        log_info("sql: loop %u connected to PostgreSQL again", p->line.id);
    sql_task_backoff_reset(&p->line);
    event_assign(&c->rd, p->line.base, c->fd, EV_READ | EV_PERSIST, sql_pg_on_read, c);
    event_add(&c->rd, NULL);
    c->rd_added = true;
    event_assign(&c->wr, p->line.base, c->fd, EV_WRITE, sql_pg_on_write, c);
}

static void sql_pg_connect_step(sql_pg_conn *c, PostgresPollingStatusType st);

static void sql_pg_on_connect_io(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sql_pg_conn *c = arg;
    sql_pg_pool *p = c->pool;
    c->io_added = false;
    sql_pg_connect_step(c, PQconnectPoll(c->pg));
    sql_pg_dispatch(p);
}

/* One step of PQconnectPoll's state machine: wait for what it asks on the socket it names (the
 * socket changes when libpq moves to the next address or retries without TLS). */
static void sql_pg_connect_step(sql_pg_conn *c, PostgresPollingStatusType st)
{
    if (st == PGRES_POLLING_OK) {
        sql_pg_connected(c);
        return;
    }
    if (st == PGRES_POLLING_FAILED || PQsocket(c->pg) < 0) {
        sql_pg_connect_failed(c, PQerrorMessage(c->pg));
        return;
    }
    short what = st == PGRES_POLLING_READING ? EV_READ : EV_WRITE;
    event_assign(&c->io, c->pool->line.base, PQsocket(c->pg), what, sql_pg_on_connect_io, c);
    event_add(&c->io, NULL);
    c->io_added = true;
}

static void sql_pg_conn_connect(sql_pg_conn *c)
{
    sql_pg_pool *p = c->pool;
    const sql_settings *s = p->line.s;
    char port[16];
    snprintf(port, sizeof(port), "%u", s->port);
    const char *keys[16], *values[16];
    size_t n = 0;
#define SQL_PG_KV(k, v) (keys[n] = (k), values[n] = (v), n++)
    if (s->socket_dir[0]) {
        SQL_PG_KV("host", s->socket_dir);
    } else {
        SQL_PG_KV("host", s->host);     /* what verify-full checks the certificate against */
        SQL_PG_KV("hostaddr", s->host); /* what is connected to: numeric, so libpq resolves nothing */
    }
    SQL_PG_KV("port", port);
    SQL_PG_KV("user", s->user);
    if (s->password[0])
        SQL_PG_KV("password", s->password);
    SQL_PG_KV("dbname", s->database);
    SQL_PG_KV("sslmode", sql_pg_tls_name(s->tls));
    if (s->tls_ca[0])
        SQL_PG_KV("sslrootcert", s->tls_ca);
    SQL_PG_KV("gssencmode", "disable"); /* no Kerberos probing on a loop */
    /* A statement whose connection apiary closed (its deadline passed) is abandoned by the server within a
     * second even while it waits on a lock or computes: there is no non-blocking cancel in libpq 15. */
    SQL_PG_KV("options", "-c client_connection_check_interval=1000");
    SQL_PG_KV("application_name", "apiary");
    SQL_PG_KV("client_encoding", "UTF8");
    keys[n] = values[n] = NULL;
#undef SQL_PG_KV
    c->pg = PQconnectStartParams(keys, values, 0);
    if (!c->pg) {
        log_error("sql: PQconnectStartParams failed (out of memory)");
        return;
    }
    c->state = SQL_PG_CONNECTING;
    struct timeval tv = {(time_t)(s->connect_timeout_ms / 1000), (suseconds_t)(s->connect_timeout_ms % 1000) * 1000};
    evtimer_add(&c->deadline, &tv);
    if (PQstatus(c->pg) == CONNECTION_BAD) {
        sql_pg_connect_failed(c, PQerrorMessage(c->pg));
        return;
    }
    sql_pg_connect_step(c, PGRES_POLLING_WRITING); /* libpq's rule: start as if asked to wait for writing */
}

/* ---- sending ----------------------------------------------------------------------------------- */

static sql_pg_prepared *sql_pg_cached(sql_pg_conn *c, const char *sql)
{
    for (size_t i = 0; i < c->cached; i++)
        if (strcmp(c->cache[i].sql, sql) == 0)
            return &c->cache[i];
    return NULL;
}

static void sql_pg_uncache(sql_pg_conn *c, const char *sql)
{
    for (size_t i = 0; i < c->cached; i++) {
        if (strcmp(c->cache[i].sql, sql) == 0) {
            free(c->cache[i].sql);
            c->cache[i] = c->cache[--c->cached];
            return;
        }
    }
}

static void sql_pg_fifo_push(sql_pg_conn *c, sql_task *t)
{
    t->fnext = NULL;
    if (c->tail)
        c->tail->fnext = t;
    else
        c->head = t;
    c->tail = t;
    c->inflight++;
    c->writes += t->writes;
    t->conn = c;
    sql_pg_conn_use(c);
}

static void sql_pg_fifo_pop(sql_pg_conn *c)
{
    sql_task *t = c->head;
    c->head = t->fnext;
    if (!c->head)
        c->tail = NULL;
    c->inflight--;
    c->writes -= t->writes;
    t->fnext = NULL;
    t->conn = NULL;
    sql_pg_conn_use(c);
}

/* Writes: one transmission per connection per loop turn. libpq 15 flushes the socket at every
 * PQpipelineSync, so each statement is one send(), and on TCP each send() used to be one segment: the
 * kernel's whole transmit and receive path, and a wake-up of the server's backend, per statement. The
 * first statement of a turn on a connection still goes out at once (nothing waits for it, and a lone
 * statement costs no extra system call); before a second one is queued in the same turn the socket is
 * corked (TCP_CORK), so the sends of the rest of the turn only append to the kernel's send queue, and
 * the pool's flush event, which runs before the loop waits again, uncorks it: they leave together, in
 * one segment, and the backend reads them with one read. The statements and their Syncs are exactly
 * what they were (a Sync each: nothing changes for what a failure aborts). If the flush were ever
 * late, the kernel sends corked data after 200 ms by itself. */
static void sql_pg_cork(sql_pg_conn *c, bool on)
{
    int v = on ? 1 : 0;
    if (setsockopt(c->fd, IPPROTO_TCP, TCP_CORK, &v, sizeof(v)) == 0)
        c->corked = on;
}

static void sql_pg_on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sql_pg_pool *p = arg;
    p->flush_active = false;
    for (unsigned i = 0; i < p->nconns; i++) {
        sql_pg_conn *c = &p->conns[i];
        if (c->corked && c->state == SQL_PG_UP)
            sql_pg_cork(c, false);
        c->sent_turn = false;
    }
}

/* Before a statement is queued on c: cork the socket when one went out there already this turn. */
static void sql_pg_before_send(sql_pg_conn *c)
{
    if (c->tcp && c->sent_turn && !c->corked)
        sql_pg_cork(c, true);
}

/* After: the turn's flush is due. */
static void sql_pg_after_send(sql_pg_conn *c)
{
    sql_pg_pool *p = c->pool;
    c->sent_turn = true;
    if (!p->flush_active) {
        p->flush_active = true;
        event_active(&p->flush, EV_TIMEOUT, 0);
    }
}

/* v in decimal at w (at most 20 digits and a sign, NUL-terminated): snprintf's cost per value was a
 * tenth of a statement's. */
static void sql_pg_format_int(char *w, long long v)
{
    char digits[24];
    unsigned long long u = v < 0 ? 0ull - (unsigned long long)v : (unsigned long long)v;
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *w++ = '-';
    while (n)
        *w++ = digits[--n];
    *w = '\0';
}

/* Sends t on c (pipelined behind whatever is in flight), followed by its Sync. Parameters go as text:
 * the server converts them to the types it inferred for the statement, as it would a literal. False
 * when the task was finished here (refused) or the connection broke. */
static bool sql_pg_send(sql_pg_conn *c, sql_task *t)
{
    sql_pg_pool *p = c->pool;
    sql_pg_prepared *prep = sql_pg_cached(c, t->sql);
    char *text = NULL;
    size_t expected;
    if (prep) {
        expected = prep->nparams;
    } else {
        text = sql__pg_placeholders(t->sql, &expected);
    }
    const char *refuse = NULL;
    if (expected != t->nparams) {
        log_warn("sql: loop %u: the statement \"%s\" takes %zu parameter(s) and was given %zu; not run", p->line.id,
                 t->sql, expected, t->nparams);
        refuse = SQL_ERROR_QUERY;
    }
    for (size_t i = 0; i < t->nparams && !refuse; i++) {
        if (t->params[i].type == SQL_TEXT && memchr(t->params[i].s, '\0', t->params[i].len)) {
            log_warn("sql: loop %u: parameter %zu of \"%s\" contains a NUL byte, which PostgreSQL text cannot hold; "
                     "not run",
                     p->line.id, i + 1, t->sql);
            refuse = SQL_ERROR_QUERY;
        }
    }
    if (refuse) {
        free(text);
        sql_task_finish(t, refuse);
        return false;
    }
    /* The values as text, NUL-terminated: numbers in a small buffer each, text copied once; on the
     * stack for the usual few short values. */
    const char *few_values[8];
    char few_buf[256];
    const char **values = t->nparams <= 8 ? few_values : xcalloc(t->nparams, sizeof(*values));
    size_t textlen = 0;
    for (size_t i = 0; i < t->nparams; i++)
        textlen += t->params[i].type == SQL_TEXT ? t->params[i].len + 1 : 32;
    char *buf = textlen <= sizeof(few_buf) ? few_buf : xmalloc(textlen), *w = buf;
    for (size_t i = 0; i < t->nparams; i++) {
        const sql_value *v = &t->params[i];
        switch (v->type) {
        case SQL_NULL:
            values[i] = NULL;
            continue;
        case SQL_INT:
            sql_pg_format_int(w, v->i);
            break;
        case SQL_DOUBLE:
            snprintf(w, 32, "%.17g", v->d);
            break;
        case SQL_TEXT:
            memcpy(w, v->s, v->len);
            w[v->len] = '\0';
            break;
        }
        values[i] = w;
        w += v->type == SQL_TEXT ? v->len + 1 : 32;
    }
    int ok = 1;
    const char *name = "";
    t->stage = SQL_PG_STAGE_QUERY;
    sql_pg_before_send(c);
    if (!prep && c->cached < SQL_PG_CACHE) {
        prep = &c->cache[c->cached++];
        prep->sql = xstrdup(t->sql);
        snprintf(prep->name, sizeof(prep->name), "a%u", c->next_name++);
        prep->nparams = expected;
        name = prep->name;
        ok = PQsendPrepare(c->pg, name, text, (int)expected, NULL);
        t->stage = SQL_PG_STAGE_PREPARE;
    } else if (prep) {
        name = prep->name;
    }
    if (ok && prep)
        ok = PQsendQueryPrepared(c->pg, name, (int)t->nparams, values, NULL, NULL, 0);
    else if (ok)
        ok = PQsendQueryParams(c->pg, text, (int)t->nparams, NULL, values, NULL, NULL, 0);
    /* libpq 15 flushes at every sync (PQsendPipelineSync, which does not, is PostgreSQL 17's). */
    if (ok)
        ok = PQpipelineSync(c->pg);
    if (values != few_values)
        free(values);
    if (buf != few_buf)
        free(buf);
    free(text);
    if (!ok) {
        log_warn("sql: loop %u connection %u: sending failed: %.*s; closing it", p->line.id, c->index,
                 (int)strcspn(PQerrorMessage(c->pg), "\n"), PQerrorMessage(c->pg));
        sql_pg_fifo_push(c, t); /* so the close finishes it with the others */
        sql_pg_conn_close(c, SQL_ERROR_CONNECTION_LOST);
        return false;
    }
    sql_pg_fifo_push(c, t);
    sql_pg_after_send(c);
    /* PQpipelineSync tried to send; what the socket did not take goes when it is writable. */
    if (PQflush(c->pg) > 0)
        sql_pg_want_write(c);
    return true;
}

/* ---- results ------------------------------------------------------------------------------------- */

static sql_type sql_pg_type(Oid oid)
{
    switch (oid) {
    case SQL_PG_BOOL:
    case SQL_PG_INT2:
    case SQL_PG_INT4:
    case SQL_PG_INT8:
    case SQL_PG_OID:
        return SQL_INT;
    case SQL_PG_FLOAT4:
    case SQL_PG_FLOAT8:
    case SQL_PG_NUMERIC:
        return SQL_DOUBLE;
    default:
        return SQL_TEXT;
    }
}

/* The value of an integer column as PostgreSQL writes it in text (an optional '-' and up to 19
 * digits; "t"/"f" for a bool): a short loop instead of strtoll, whose locale and base handling were a
 * third of what copying a one-row result cost. Anything else (never sent for these types) goes to
 * strtoll as before. */
static long long sql_pg_int(const char *s)
{
    if (s[0] == 't')
        return 1;
    if (s[0] == 'f')
        return 0;
    const char *p = s + (s[0] == '-');
    unsigned long long u = 0;
    size_t n = 0;
    for (; p[n] >= '0' && p[n] <= '9'; n++)
        u = u * 10 + (unsigned)(p[n] - '0');
    if (n == 0 || n > 18 || p[n] != '\0')
        return strtoll(s, NULL, 10); /* 19 digits may overflow: strtoll's clamping, as before */
    return s[0] == '-' ? -(long long)u : (long long)u;
}

/* Appends the rows of r (one, in single-row mode; all of them otherwise) to the task's rows while they
 * fit its bound; past it the task fails too_large (500) and what else comes for it is read and dropped.
 * The connection retires: libpq's input buffer has grown to the largest row, and keeps that size. */
static void sql_pg_take_rows(sql_pg_conn *c, sql_task *t, const PGresult *r)
{
    if (t->error)
        return; /* past the bound already: the rest is read (to keep the FIFO in step) and dropped */
    size_t rows = (size_t)PQntuples(r), cols = (size_t)PQnfields(r);
    if (t->rows.rows == 0)
        t->rows.cols = cols;
    size_t need = t->rows.bytes, room = t->max_bytes > need ? t->max_bytes - need : 0;
    if (cols && rows > room / (cols * sizeof(sql_value))) {
        t->error = SQL_ERROR_TOO_LARGE;
        c->retire = true;
        return;
    }
    need += rows * cols * sizeof(sql_value);
    /* The server says how many columns (up to 32767 in the protocol): on the heap, not the loop's stack. */
    sql_type few[16], *types = cols <= 16 ? few : xmalloc(cols * sizeof(*types));
    for (size_t j = 0; j < cols; j++)
        types[j] = sql_pg_type(PQftype(r, (int)j));
    for (size_t i = 0; i < rows && need <= t->max_bytes; i++)
        for (size_t j = 0; j < cols; j++)
            if (types[j] == SQL_TEXT && !PQgetisnull(r, (int)i, (int)j))
                need += (size_t)PQgetlength(r, (int)i, (int)j) + 1;
    if (need > t->max_bytes) {
        t->error = SQL_ERROR_TOO_LARGE;
        c->retire = true;
        if (types != few)
            free(types);
        return;
    }
    for (size_t i = 0; i < rows; i++) {
        for (size_t j = 0; j < cols; j++) {
            sql_value v = {.type = SQL_NULL};
            if (!PQgetisnull(r, (int)i, (int)j)) {
                const char *s = PQgetvalue(r, (int)i, (int)j);
                if (types[j] == SQL_INT)
                    v = sql_int(sql_pg_int(s));
                else if (types[j] == SQL_DOUBLE)
                    v = sql_double(strtod(s, NULL));
                else
                    v = sql_text(s, (size_t)PQgetlength(r, (int)i, (int)j));
            }
            sql__rows_add(&t->rows, &v);
        }
        t->rows.rows++;
    }
    if (types != few)
        free(types);
}

/* The statement's last result (TUPLES_OK or COMMAND_OK; in single-row mode, TUPLES_OK with no rows
 * after the rows): its rows, if any, and what it says about them. */
static void sql_pg_take_result(sql_pg_conn *c, sql_task *t, const PGresult *r)
{
    /* The count of the common tags ("SELECT 1", "UPDATE 20", "INSERT 0 1", "DELETE 3") is their last
     * word, read here: PQcmdTuples and strtoull cost as much as copying the row. Other tags go through
     * PQcmdTuples as before (an empty string there, "BEGIN" and the like, leaves it 0). */
    const char *tag = PQcmdStatus((PGresult *)r), *last = strrchr(tag, ' ');
    if (last && (!strncmp(tag, "SELECT ", 7) || !strncmp(tag, "UPDATE ", 7) || !strncmp(tag, "INSERT ", 7) ||
                 !strncmp(tag, "DELETE ", 7))) {
        t->rows.affected = (uint64_t)sql_pg_int(last + 1);
    } else {
        const char *tuples = PQcmdTuples((PGresult *)r);
        if (tuples[0])
            t->rows.affected = strtoull(tuples, NULL, 10);
    }
    if (PQresultStatus(r) != PGRES_TUPLES_OK)
        return;
    sql_pg_take_rows(c, t, r);
    /* INSERT ... RETURNING id: the id of the (last) new row is insert_id, as MariaDB's and SQLite's. */
    size_t rows = t->rows.rows, cols = t->rows.cols;
    if (!t->error && rows && cols && t->rows.cells[(rows - 1) * cols].type == SQL_INT &&
        strncmp(PQcmdStatus((PGresult *)r), "INSERT", 6) == 0)
        t->rows.insert_id = (int64_t)t->rows.cells[(rows - 1) * cols].i;
}

/* A statement the server refused: what kind of failure it is, from its SQLSTATE. */
static const char *sql_pg_classify(sql_pg_conn *c, sql_task *t, const PGresult *r, const char *what)
{
    const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
    const char *severity = PQresultErrorField(r, PG_DIAG_SEVERITY_NONLOCALIZED);
    const char *msg = PQresultErrorMessage(r);
    int len = (int)strcspn(msg, "\n");
    /* The session is over (FATAL: shutdown, terminated, the link lost) or goes on (ERROR, even with a
     * class 08 code such as a Bind with another number of values than the statement takes). */
    bool over = PQstatus(c->pg) == CONNECTION_BAD ||
                (severity && (!strcmp(severity, "FATAL") || !strcmp(severity, "PANIC")));
    if (over) {
        log_warn("sql: loop %u connection %u: %s: %.*s", c->pool->line.id, c->index, what, len, msg);
        return SQL_ERROR_CONNECTION_LOST;
    }
    if (state && (!strcmp(state, "40P01") || !strcmp(state, "40001") || !strcmp(state, "55P03"))) {
        /* Deadlock, serialization failure, lock not available: the server rolled back because of another
         * transaction, not because apiary's line is full, so it is a conflict (worth running again at
         * once), not busy. */
        log_info("sql: loop %u: %s: %.*s (%s)", c->pool->line.id, what, len, msg, state);
        return SQL_ERROR_CONFLICT;
    }
    if (state && strcmp(state, "57014") == 0) {
        log_warn("sql: loop %u: %s was cancelled by the server: %.*s", c->pool->line.id, what, len, msg);
        return SQL_ERROR_TIMEOUT;
    }
    log_warn("sql: loop %u: \"%s\" refused: %.*s (%s)", c->pool->line.id, t->sql, len, msg,
             state ? state : "no SQLSTATE");
    return SQL_ERROR_QUERY;
}

/* t (in c's FIFO) fails with `error`, and c is closed: the others in flight there get connection_lost. */
static void sql_pg_fail_and_close(sql_pg_conn *c, sql_task *t, const char *error)
{
    sql_task **link = &c->head;
    while (*link != t)
        link = &(*link)->fnext;
    *link = t->fnext;
    if (c->tail == t) {
        c->tail = NULL;
        for (sql_task *q = c->head; q; q = q->fnext)
            c->tail = q;
    }
    c->inflight--;
    c->writes -= t->writes;
    t->conn = NULL;
    t->fnext = NULL;
    sql_task_txn *txn = t->txn;
    if (txn && c->txn == txn) {
        txn->conn = NULL;
        txn->open = false;
        c->txn = NULL;
    }
    sql_task_finish(t, error);
    sql_pg_conn_close(c, SQL_ERROR_CONNECTION_LOST);
}

/* A task's last result (its Sync) has come: the connection moves on. */
static void sql_pg_task_done(sql_pg_conn *c, sql_task *t)
{
    sql_pg_fifo_pop(c);
    sql_task_txn *txn = t->txn;
    if (txn && t->kind == SQL_TASK_BEGIN) {
        if (t->error) {
            c->txn = NULL;
            txn->conn = NULL;
        } else {
            txn->open = true;
        }
    } else if (txn && t->kind == SQL_TASK_END) {
        txn->open = false;
        txn->conn = NULL;
        c->txn = NULL;
        if (t->error) {
            /* Where the transaction is, is unknown: the connection goes (the server rolls back). */
            sql_task_finish(t, t->error);
            sql_pg_conn_close(c, NULL);
            return;
        }
    }
    sql_pg_conn_use(c);
    sql_task_finish(t, t->error);
    if (c->state == SQL_PG_UP && c->retire && c->inflight == 0 && !c->txn) {
        log_info("sql: loop %u connection %u: closed after a result past its bound, to free libpq's buffer",
                 c->pool->line.id, c->index);
        sql_pg_conn_close(c, NULL);
    }
}

/* Reads every result that has fully arrived and hands each to the task at the head of the FIFO. */
static void sql_pg_drain(sql_pg_conn *c)
{
    while (c->state == SQL_PG_UP && c->head) {
        sql_task *t = c->head;
        /* Single-row mode, asked for when the statement's results are next and none has been parsed
         * (before PQisBusy, which parses): libpq then hands over each row as it arrives, so a result
         * past its bound is refused row by row instead of being buffered whole. libpq refuses it
         * (returns 0) while the previous statement's results are still being handed over; then it is
         * asked again on the next pass. */
        if (t->stage == SQL_PG_STAGE_QUERY && PQsetSingleRowMode(c->pg))
            t->stage = SQL_PG_STAGE_ROWS;
        if (PQisBusy(c->pg))
            break;
        PGresult *r = PQgetResult(c->pg);
        if (!r) {
            /* The end of one query's results: the prepare's, then the statement's. */
            if (t->stage == SQL_PG_STAGE_PREPARE) {
                t->stage = SQL_PG_STAGE_QUERY;
            } else if (t->stage == SQL_PG_STAGE_QUERY || t->stage == SQL_PG_STAGE_ROWS) {
                t->stage = SQL_PG_STAGE_SYNC;
            }
            continue;
        }
        ExecStatusType st = PQresultStatus(r);
        if (t->stage == SQL_PG_STAGE_QUERY)
            t->stage = SQL_PG_STAGE_ROWS; /* a result came without single-row mode: stop asking for it */
        if (st == PGRES_PIPELINE_SYNC) {
            PQclear(r);
            if (t->stage != SQL_PG_STAGE_SYNC) {
                log_error("sql: loop %u connection %u: results out of step with the statements sent; closing it",
                          c->pool->line.id, c->index);
                sql_pg_conn_close(c, SQL_ERROR_CONNECTION_LOST);
                return;
            }
            sql_pg_task_done(c, t);
            continue;
        }
        if (t->stage == SQL_PG_STAGE_PREPARE) {
            if (st != PGRES_COMMAND_OK) {
                t->error = sql_pg_classify(c, t, r, "prepare");
                sql_pg_uncache(c, t->sql);
            }
        } else if (st == PGRES_SINGLE_TUPLE) {
            sql_pg_take_rows(c, t, r); /* dropped when the task failed already */
        } else if (t->error) {
            /* Already failed (its prepare, or past its bound): the rest of the statement is dropped. */
        } else if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK) {
            sql_pg_take_result(c, t, r);
        } else if (st == PGRES_PIPELINE_ABORTED) {
            t->error = SQL_ERROR_QUERY;
        } else if (st == PGRES_FATAL_ERROR || st == PGRES_NONFATAL_ERROR) {
            t->error = sql_pg_classify(c, t, r, "a statement");
        } else if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
            /* COPY ... STDIN/STDOUT puts the connection in a copy state the driver does not speak (libpq
             * would hand out the same result forever): the statement fails and the connection goes. */
            log_warn("sql: loop %u: \"%s\" started a COPY, which the driver does not run; closing the connection",
                     c->pool->line.id, t->sql);
            PQclear(r);
            sql_pg_fail_and_close(c, t, SQL_ERROR_QUERY);
            return;
        } else {
            log_warn("sql: loop %u: \"%s\" answered %s, which the driver does not read", c->pool->line.id, t->sql,
                     PQresStatus(st));
            t->error = SQL_ERROR_QUERY;
        }
        PQclear(r);
    }
    if (c->state == SQL_PG_UP && PQstatus(c->pg) == CONNECTION_BAD)
        sql_pg_conn_close(c, SQL_ERROR_CONNECTION_LOST);
}

/* ---- dispatch ------------------------------------------------------------------------------------ */

/* The up connection without a transaction with the fewest statements in flight and room for `need`
 * more below the depth, preferring one that sent in this loop turn already (its statements then leave
 * together, see sql_pg_cork); with `empty`, only one with none in flight. A retiring one takes
 * nothing, and neither does one with a write in flight: what went behind it would wait for its commit,
 * or for the locks it waits for, however fast it is itself. */
static sql_pg_conn *sql_pg_pick(sql_pg_pool *p, bool empty, unsigned need)
{
    sql_pg_conn *best = NULL;
    unsigned depth = p->line.s->pipeline_depth ? p->line.s->pipeline_depth : 1;
    for (unsigned i = 0; i < p->nconns; i++) {
        sql_pg_conn *c = &p->conns[i];
        if (c->state != SQL_PG_UP || c->txn || c->retire || c->writes > 0 || c->inflight + need > depth ||
            (empty && c->inflight != 0))
            continue;
        if (!best || (c->sent_turn && !best->sent_turn) ||
            (c->sent_turn == best->sent_turn && c->inflight < best->inflight))
            best = c;
    }
    return best;
}

static void sql_pg_dispatch_once(sql_pg_pool *p)
{
    /* A transaction's next step goes on the connection it holds, never waiting in the line. */
    for (unsigned i = 0; i < p->nconns; i++) {
        sql_pg_conn *c = &p->conns[i];
        if (c->state == SQL_PG_UP && c->txn && c->txn->pending && c->inflight == 0) {
            sql_task *t = c->txn->pending;
            c->txn->pending = NULL;
            c->txn->task = t;
            sql_pg_send(c, t);
        }
    }
    /* The line in order: the head each time, since sending may finish (and free) other tasks. A BEGIN
     * at the head waits for a connection with nothing in flight, and nothing behind it goes first:
     * the pipelines drain within their statements' time and the first empty one is the transaction's. */
    while (p->line.head) {
        sql_task *t = p->line.head;
        /* A group waits for a connection with room for the whole of it (up to the depth), rather than
         * going out in whatever pieces free up: each piece would leave in a segment of its own and
         * wake the server's backend once more. Nothing behind it goes first, as for a BEGIN; a
         * connection drains within its statements' time, and an empty one has room for `depth`. */
        unsigned depth = p->line.s->pipeline_depth ? p->line.s->pipeline_depth : 1;
        unsigned need = t->group ? (t->group_left < depth ? t->group_left : depth) : 1;
        sql_pg_conn *c = sql_pg_pick(p, t->kind == SQL_TASK_BEGIN, need);
        if (!c)
            break;
        sql_task_unwait(t);
        if (t->kind == SQL_TASK_BEGIN) {
            c->txn = t->txn;
            t->txn->conn = c;
        }
        /* The statements of one sql_query_many, one after the other on c as far as its depth allows,
         * each with its own Sync (its own implicit transaction: a failure aborts nothing else). The
         * first leaves at once and corks the socket; the rest leave with it when the turn ends. */
        unsigned group = t->group;
        for (;;) {
            sql_pg_send(c, t);
            if (c->state != SQL_PG_UP || !group)
                break; /* broken (its close finished what was in flight), or a lone statement */
            t = p->line.head;
            if (!t || t->group != group || c->inflight >= depth || c->writes > 0)
                break;
            sql_task_unwait(t);
        }
    }
    /* Open another connection when statements wait or every open one has some in flight: one
     * pipelined connection is one server process, so load spreads over the pool as it grows. */
    bool all_busy = true;
    for (unsigned i = 0; i < p->nconns; i++)
        if (p->conns[i].state == SQL_PG_UP && p->conns[i].inflight == 0 && !p->conns[i].txn)
            all_busy = false;
    if (!p->line.backoff && !sql_pg_any_connecting(p) && (p->line.waiting > 0 || (all_busy && sql_pg_any_up(p)))) {
        for (unsigned i = 0; i < p->nconns; i++) {
            if (p->conns[i].state == SQL_PG_CLOSED) {
                sql_pg_conn_connect(&p->conns[i]);
                break;
            }
        }
    }
}

static void sql_pg_dispatch(sql_pg_pool *p)
{
    if (p->line.freeing)
        return;
    if (p->dispatching) {
        p->redo = true; /* the dispatch further up the stack goes round again */
        return;
    }
    p->dispatching = true;
    do {
        p->redo = false;
        sql_pg_dispatch_once(p);
    } while (p->redo);
    p->dispatching = false;
}

static void sql_pg_on_retry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sql_pg_pool *p = arg;
    p->line.backoff = false;
    for (unsigned i = 0; i < p->nconns; i++) {
        if (p->conns[i].state == SQL_PG_CLOSED) {
            sql_pg_conn_connect(&p->conns[i]);
            return;
        }
    }
}

/* A sent task's deadline passed: no cancel (libpq 15's blocks), so its connection is closed; this one
 * answers "timeout", the ones sent behind it there "connection_lost". */
static void sql_pg_expire(sql_task *t)
{
    sql_pg_conn *c = t->conn;
    sql_pg_pool *p = c->pool;
    log_warn("sql: loop %u connection %u: statement not done within %u ms; closing the connection (%u in flight "
             "there)",
             p->line.id, c->index, p->line.s->query_timeout_ms, c->inflight);
    sql_pg_fail_and_close(c, t, SQL_ERROR_TIMEOUT);
}

static void sql_pg_line_dispatch(sql_task_line *line) { sql_pg_dispatch((sql_pg_pool *)line); }

static bool sql_pg_available(sql_task_line *line)
{
    sql_pg_pool *p = (sql_pg_pool *)line;
    return !(p->line.backoff && !sql_pg_any_up(p));
}

/* The transaction is freed while it holds c: c takes statements again. */
static void sql_pg_txn_release(sql_task_txn *x)
{
    sql_pg_conn *c = x->conn;
    if (c->txn == x) {
        c->txn = NULL;
        sql_pg_conn_use(c);
    }
}

static const sql_task_ops sql_pg_task_ops = {
    .dispatch = sql_pg_line_dispatch,
    .expire = sql_pg_expire,
    .available = sql_pg_available,
    .txn_release = sql_pg_txn_release,
    .dispatch_after_settle = true,
    .group_many = true,
    .begin_sql = "BEGIN",
};

/* ---- the pool ---------------------------------------------------------------------------------- */

static sql_pg_pool *sql_pg_pool_new(struct event_base *base, const sql_settings *s, unsigned id)
{
    sql_pg_pool *p = xcalloc(1, sizeof(*p));
    sql_task_line_init(&p->line, base, s, &sql_pg_task_ops, id, sql_pg_on_retry, p);
    p->nconns = s->connections_per_loop ? s->connections_per_loop : 1;
    p->conns = xcalloc(p->nconns, sizeof(*p->conns));
    event_assign(&p->flush, base, -1, 0, sql_pg_on_flush, p);
    for (unsigned i = 0; i < p->nconns; i++) {
        p->conns[i].pool = p;
        p->conns[i].index = i;
        p->conns[i].fd = -1;
        evtimer_assign(&p->conns[i].deadline, base, sql_pg_on_deadline, &p->conns[i]);
    }
    return p;
}

static void sql_pg_pool_free(void *arg)
{
    sql_pg_pool *p = arg;
    p->line.freeing = true;
    sql_task_fail_waiting(&p->line, SQL_ERROR_UNAVAILABLE);
    for (unsigned i = 0; i < p->nconns; i++)
        sql_pg_conn_close(&p->conns[i], SQL_ERROR_UNAVAILABLE);
    sql_task_line_free(&p->line);
    event_del(&p->flush);
    free(p->conns);
    free(p);
}

static sql_pg_pool *sql_pg_loop_pool(http_loop *loop)
{
    sql_pg_pool *p = http_loop_local(loop, HTTP_LOOP_SLOT_SQL);
    if (!p) {
        p = sql_pg_pool_new(http_loop_base(loop), sql_pg_settings, http_loop_id(loop));
        http_loop_set_local(loop, HTTP_LOOP_SLOT_SQL, p, sql_pg_pool_free);
    }
    return p;
}

/* ---- sql_query, sql_query_many, transactions ------------------------------------------------------ */

/* n statements at once: all are sent into the pipelines before any result is read. */
static async_op *sql_pg_many(async_scope *scope, http_loop *loop, const sql_stmt *stmts, size_t n, bool single)
{
    return sql_task_many(scope, &sql_pg_loop_pool(loop)->line, stmts, n, single);
}

static async_op *sql_pg_txn_begin(sql_txn *tx) { return sql_task_txn_begin(tx, &sql_pg_loop_pool(tx->loop)->line); }

static bool sql_pg_ready(http_loop *loop)
{
    sql_pg_pool *p = sql_pg_loop_pool(loop);
    if (sql_pg_any_up(p))
        return true;
    if (!p->line.backoff && !sql_pg_any_connecting(p))
        sql_pg_conn_connect(&p->conns[0]);
    return sql_pg_any_up(p);
}

/* ---- start and stop ---------------------------------------------------------------------------- */

static int sql_pg_start(const sql_settings *s)
{
    if (s->tls_ca[0] && access(s->tls_ca, R_OK) != 0) {
        log_error("sql: the sslrootcert file named in sql.url cannot be read: %s", strerror(errno));
        return -1;
    }
    sql_pg_settings = s;
    char where[320];
    sql_pg_where(s, where, sizeof(where));
    log_info("sql: PostgreSQL backend (libpq %d), database %s at %s, %u connections per loop, pipeline depth %u, "
             "TLS %s",
             PQlibVersion(), s->database, where, s->connections_per_loop, s->pipeline_depth,
             sql_pg_tls_name(s->tls));
    return 0;
}

static void sql_pg_stop(void) {}
static void sql_pg_shutdown(void) {}

const sql_backend sql_postgres_backend = {
    .name = "postgres",
    .start = sql_pg_start,
    .shutdown = sql_pg_shutdown,
    .stop = sql_pg_stop,
    .many = sql_pg_many,
    .batch = NULL, /* chained through a transaction by sql.c */
    .ready = sql_pg_ready,
    .txn_begin = sql_pg_txn_begin,
    .txn_query = sql_task_txn_query,
    .txn_end = sql_task_txn_end,
    .txn_abandon = sql_task_txn_abandon,
};
