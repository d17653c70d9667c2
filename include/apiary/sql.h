/* sql: asynchronous SQL for handlers, on MariaDB/MySQL, PostgreSQL or SQLite (see docs/sql.md).
 *
 * The model. A handler runs a statement with sql_query (several independent ones with
 * sql_query_many, dependent ones in order with sql_batch or a transaction: sql_begin, sql_txn_query,
 * sql_commit) and gets an async_op, awaited like any other (async_await, async_op_then). The op
 * completes OK with value = a sql_result (sql_batch, sql_query_many: a sql_batch_result) copied into
 * the caller's scope, or FAILED with one of the SQL_ERROR_* strings below. Parameters are always
 * bound, never pasted into the SQL text: `?` placeholders in the text, values in sql_value arrays.
 *
 * Schema. The driver creates no table: an app creates its own in its startup hook
 * (apiary_app_on_startup in apiary.h), typically with sql_migrate (below).
 *
 * Backends (sql_settings.backend, chosen once at start by sql.url):
 *   - MariaDB/MySQL (lib/clients/sql_mariadb.c): Connector/C's non-blocking API on the request's own loop.
 *     Each loop has a pool of sql.connections_per_loop connections; on plaintext ones, executes of
 *     prepared statements are pipelined (up to sql.pipeline_depth in flight each, answers read in
 *     order); statements beyond that wait in FIFO order, bounded by the query timeout. Nothing blocks
 *     a loop: the host must be an IP address, so no name is ever resolved.
 *   - PostgreSQL (lib/clients/sql_postgres.c): libpq's non-blocking API in pipeline mode on the request's
 *     own loop: sql.connections_per_loop connections per loop, each carrying up to sql.pipeline_depth
 *     statements of any requests in flight, their results matched in order.
 *   - SQLite (lib/clients/sql_sqlite.c): SQLite's calls block, so they run on threads of their own
 *     (sql.threads, not the CPU worker pool: database reads never queue behind CPU jobs), on
 *     connections in WAL mode with a busy timeout.
 *
 * Timeouts and cancellation. Every operation is bounded by sql.query_timeout_ms from its start
 * (waiting for a connection included) and then fails SQL_ERROR_TIMEOUT. A MariaDB connection whose
 * statement timed out is closed (it is somewhere in the middle of the protocol); one whose request
 * went away (scope ended) finishes the statement and discards the result, then serves the next one,
 * still bounded by the same timeout. See docs/sql.md for the failure table.
 *
 * Threads. sql_start/sql_shutdown/sql_stop on the main thread; sql_query, sql_batch, the transaction
 * calls, sql_migrate and sql_ready on a loop thread; sql_stats_read and the metrics source on any. */
#ifndef APIARY_SQL_H
#define APIARY_SQL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "async.h"

typedef struct http_loop http_loop;

/* SQL_BACKEND_NONE: sql.url "none", an app that uses no SQL: nothing is opened or connected, every call
 * fails SQL_ERROR_UNAVAILABLE at once (sql_migrate too, without waiting), and sql_ready is true. */
typedef enum sql_backend_kind {
    SQL_BACKEND_SQLITE,
    SQL_BACKEND_MARIADB,
    SQL_BACKEND_POSTGRES,
    SQL_BACKEND_NONE,
} sql_backend_kind;

/* MariaDB and PostgreSQL: TLS to the database, from sql.url's ?ssl= (MariaDB) or ?sslmode= (PostgreSQL);
 * docs/sql.md says exactly what each checks. */
typedef enum sql_tls_mode {
    SQL_TLS_OFF,         /* plain TCP (the default) */
    SQL_TLS_REQUIRED,    /* encrypted, the certificate not checked */
    SQL_TLS_VERIFY_CA,   /* encrypted, the certificate signed by ssl_ca; any name */
    SQL_TLS_VERIFY_FULL, /* encrypted, signed by ssl_ca, and issued for the host in sql.url */
} sql_tls_mode;

/* From the config's "sql" section (lib/app/config.c). Read-only once sql_start ran. */
typedef struct sql_settings {
    sql_backend_kind backend;
    char path[4096];      /* SQLite: the database file */
    char host[64];        /* MariaDB, PostgreSQL: an IPv4 or IPv6 address (never a name) */
    char socket_dir[256]; /* PostgreSQL: the directory of the server's Unix socket (instead of host) */
    unsigned port;
    char user[128];
    char password[256];   /* never logged, never shown in /metrics or in an answer */
    char database[128];
    sql_tls_mode tls;
    char tls_ca[4096];    /* PEM file of the CA (verify-ca, verify-full) */
    unsigned connections_per_loop;
    unsigned query_timeout_ms;
    unsigned connect_timeout_ms;
    unsigned max_waiting; /* MariaDB: statements queued for a connection per loop before 503;
                           * SQLite: operations queued for its threads (the whole process) */
    unsigned threads;     /* SQLite: the threads that run its calls */
    unsigned startup_timeout_ms; /* sql_migrate: how long to wait for a database that is unavailable */
    unsigned pipeline_depth; /* PostgreSQL, MariaDB without TLS: statements in flight per connection; 1: none */
} sql_settings;

/* Fills the defaults: SQLite on "apiary.db" with 2 threads, 4 connections per loop, 2000 ms per
 * query, 30 s for the database to come up at start. */
void sql_settings_defaults(sql_settings *s);
/* Parses sql.url into s: "" or "sqlite:PATH" (SQLite; "" keeps the default path), "none" (no database:
 * SQL_BACKEND_NONE), or
 * "mysql://USER:PASSWORD@HOST:PORT/DATABASE[?ssl=MODE&ssl_ca=PATH]" (also "mariadb://"; USER, PASSWORD
 * and PATH may be %-encoded; PORT defaults to 3306; HOST is an IP address, IPv6 in brackets; MODE is
 * required, verify-ca or verify-full, the verify modes need ssl_ca), or
 * "postgres://USER:PASSWORD@HOST:PORT/DATABASE[?sslmode=MODE&sslrootcert=PATH]" (also "postgresql://";
 * PORT defaults to 5432; HOST an IP address or a %-encoded Unix socket directory such as %2Frun%2Fpg,
 * or host=/DIR after ?; MODE disable, require, verify-ca or verify-full, the verify modes need
 * sslrootcert). Returns 0, or -1 with a message in err that never contains the password or the URL. */
int sql_url_parse(sql_settings *s, const char *url, char *err, size_t err_cap);

/* What a failed operation's error is (op->error points at one of these: compare pointers). */
extern const char SQL_ERROR_UNAVAILABLE[];     /* "unavailable": the database cannot be reached now */
extern const char SQL_ERROR_TIMEOUT[];         /* "timeout": not done within sql.query_timeout_ms */
extern const char SQL_ERROR_CONNECTION_LOST[]; /* "connection_lost": the connection broke mid-query */
extern const char SQL_ERROR_BUSY[];            /* "busy": apiary's own line is full: too many statements
                                                * waiting for a connection, or SQLite's queue full (503
                                                * at once). Retrying at once only meets the same line */
extern const char SQL_ERROR_CONFLICT[];        /* "conflict": the database rolled the statement back
                                                * because it conflicted with a concurrent transaction (a
                                                * deadlock, a serialization failure, a lock it could not
                                                * get; SQLite: another writer held the lock until the
                                                * deadline). Nothing of it was applied: running it (its
                                                * transaction) again is right, and at once */
extern const char SQL_ERROR_QUERY[];           /* "query": the database refused the statement, or the
                                                * parameters given are not as many as its `?` (an
                                                * application bug, logged naming the statement) */
extern const char SQL_ERROR_TOO_LARGE[];       /* "too_large": the result exceeds max_result_bytes */

typedef enum sql_type { SQL_NULL, SQL_INT, SQL_DOUBLE, SQL_TEXT } sql_type;

/* A parameter or a result cell. TEXT: `s` of `len` bytes (NUL-terminated in results). */
typedef struct sql_value {
    sql_type type;
    long long i;
    double d;
    const char *s;
    size_t len;
} sql_value;

static inline sql_value sql_int(long long i) { return (sql_value){.type = SQL_INT, .i = i}; }
static inline sql_value sql_double(double d) { return (sql_value){.type = SQL_DOUBLE, .d = d}; }
static inline sql_value sql_text(const char *s, size_t len)
{
    return (sql_value){.type = SQL_TEXT, .s = s, .len = len};
}

/* One statement: SQL text with `?` placeholders and its parameters (copied before the call returns).
 * max_result_bytes bounds what the result may take while it is read (0: SQL_RESULT_DEFAULT_BYTES); a
 * bigger one fails SQL_ERROR_TOO_LARGE. A result takes one sql_value per cell plus its text bytes. */
typedef struct sql_stmt {
    const char *sql;
    const sql_value *params;
    size_t nparams;
    size_t max_result_bytes;
} sql_stmt;

#define SQL_RESULT_DEFAULT_BYTES (64u * 1024u)

/* A statement's result, in scope memory: rows x cols cells, row-major. Integer columns come back
 * as SQL_INT, floating ones as SQL_DOUBLE, text as SQL_TEXT, NULL as SQL_NULL. */
typedef struct sql_result {
    size_t rows, cols;
    const sql_value *cells;
    uint64_t affected;  /* INSERT/UPDATE/DELETE: rows changed */
    int64_t insert_id;  /* INSERT: the id given to the new row */
} sql_result;

/* The cell at (row, col), or NULL when there is none: a database (or whatever sits on the wire to it)
 * decides how many rows and columns come back, so a handler must never index past them. Handlers
 * check the whole shape once with sql_result_shape and then read cells freely. */
static inline const sql_value *sql_cell(const sql_result *r, size_t row, size_t col)
{
    if (!r || row >= r->rows || col >= r->cols || !r->cells)
        return NULL;
    return &r->cells[row * r->cols + col];
}

/* True when r has exactly strlen(types) columns and every cell of every row has the type its column's
 * letter allows: 'i' SQL_INT, 'd' a number (SQL_INT or SQL_DOUBLE), 't' SQL_TEXT; the upper-case letter
 * also allows SQL_NULL. Any other letter never matches. A result that fails is the database answering
 * something other than the statement asks for (a changed schema, a proxy, a hostile server): handlers
 * answer it 502 (docs/sql.md: "the database answered in an unexpected shape"), never by reading what is
 * not there. */
bool sql_result_shape(const sql_result *r, const char *types);

typedef struct sql_batch_result {
    size_t count;
    const sql_result *results; /* count entries, in statement order */
} sql_batch_result;

/* ---- a failed operation, answered (loop thread) ------------------------------------------------
 *
 * What a failed statement means to a client is the same in every app, so the library answers it (the
 * SQL counterpart of http_respond_failed / http_await_ok in http_request.h, whose mapping suits
 * upstream calls, not a database): */
typedef struct http_request http_request;

/* When `op` (any operation of this header) did not complete OK, answers the problem+json docs/sql.md's
 * failure table gives and returns true; returns false (and answers nothing) when it did:
 *   SQL_ERROR_TIMEOUT, ASYNC_TIMEOUT         504 "the database did not answer within N ms" (N: the
 *                                            query timeout; "in time" for an async_wait_for's own)
 *   SQL_ERROR_BUSY                           503 with Retry-After: 1 "the database is busy: ..."
 *   SQL_ERROR_CONFLICT                       503 with Retry-After: 0 "the request conflicted with a
 *                                            concurrent one in the database; send it again" (transient
 *                                            and nothing for the client to fix, so not 409: docs/sql.md,
 *                                            Failures, says why)
 *   SQL_ERROR_UNAVAILABLE, _CONNECTION_LOST,
 *   any other error                          503 with Retry-After: 1 "the database is unavailable"
 *   SQL_ERROR_QUERY, SQL_ERROR_TOO_LARGE     500 "the database could not run the query" (what the
 *                                            database said is in the log, never in the answer)
 *   ASYNC_CANCELLED                          nothing is sent: the request is gone (client closed,
 *                                            deadline, server stopping; the engine drops the answer).
 *                                            On a live request (a gather's child cancelled by
 *                                            ASYNC_GATHER_FAIL_FAST): 503 with Retry-After: 1
 * Test it before reading op->value (sql_commit completes OK with value NULL). Answer the errors yourself
 * first only where they mean something else to your clients. A result of another shape than asked is
 * not a failure of the op: check it with sql_result_shape (502). */
bool sql_respond_failed(http_request *req, const async_op *op);

/* In a coroutine handler (ROUTE_CORO): awaits `op` and returns it when it completed OK; otherwise
 * answers as sql_respond_failed does and returns NULL, so the handler just returns:
 *
 *     async_op *op = sql_await_ok(req, sql_query(scope, loop, &stmt));
 *     if (!op)
 *         return;
 *     const sql_result *r = op->value;
 */
async_op *sql_await_ok(http_request *req, async_op *op);

/* ---- start and stop (main thread) ------------------------------------------------------------ */

/* Selects the backend; creates no table (that is the app's, see sql_migrate). None: nothing (0).
 * SQLite: opens the file
 * (-1, logged, when it cannot be opened or written) and starts sql.threads threads. MariaDB: a
 * background thread (never a loop) connects and creates the database when it is missing, retrying
 * until it succeeds; until then statements fail SQL_ERROR_UNAVAILABLE and /readyz is 503. `s` must
 * outlive every loop. */
int sql_start(const sql_settings *s);
/* SQLite: runs what is queued and joins its threads (pool_shutdown's rule: after the loops stopped
 * running requests, before they are freed). MariaDB: nothing. */
void sql_shutdown(void);
/* Stops the schema thread (if any) and closes what is left. After the loops are freed. */
void sql_stop(void);
/* The settings given to sql_start, or NULL before. */
const sql_settings *sql_current_settings(void);

/* ---- per-loop entry points (loop thread) ------------------------------------------------------ */

/* Runs one statement. value: a sql_result in scope memory. */
async_op *sql_query(async_scope *scope, http_loop *loop, const sql_stmt *stmt);
/* Runs `n` dependent statements in order, in one transaction: each sees what the ones before it did,
 * and they commit together or roll back together (the first failure ends the batch and is its error).
 * Value: a sql_batch_result. MariaDB: one connection, BEGIN ... COMMIT; SQLite: one job on its
 * threads (BEGIN IMMEDIATE when a statement writes). */
async_op *sql_batch(async_scope *scope, http_loop *loop, const sql_stmt *stmts, size_t n);
/* Runs `n` independent statements, concurrently where the backend can, and completes when all are
 * done: OK with a sql_batch_result (in statement order), or with the first failure. No order among
 * them and no atomicity is promised: MariaDB spreads them over the loop's connections at once (each
 * autocommits, so some may have been applied when another fails); SQLite runs them in one job;
 * PostgreSQL pipelines them back to back on one connection, each with its own Sync (each its own
 * implicit transaction, as on MariaDB). For many reads at once (/v1/queries). */
async_op *sql_query_many(async_scope *scope, http_loop *loop, const sql_stmt *stmts, size_t n);

/* ---- transactions (loop thread) --------------------------------------------------------------------
 *
 * A transaction holds one connection (MariaDB) or one SQLite connection for a sequence of awaited
 * statements:
 *
 *     async_op *op = async_await(sql_begin(scope, loop));
 *     if (op->status != ASYNC_OK) ...;                 // the errors of sql_query
 *     sql_txn *tx = op->value;
 *     op = async_await(sql_txn_query(tx, &insert));    // a sql_result, as sql_query's
 *     ...
 *     op = async_await(sql_commit(tx));                // OK: everything is written
 *
 * Rules. One statement at a time (a second one while the first runs fails SQL_ERROR_QUERY, logged).
 * Each call is bounded by sql.query_timeout_ms. A statement that fails (refused, timed out, too large,
 * connection lost) ends the transaction: it is rolled back at once, and every later call on it fails
 * with that same error (sql_rollback then succeeds: there is nothing left to undo). When the scope ends
 * with the transaction open (client gone, deadline, a handler that returned without committing), it is
 * rolled back. A connection is never handed to anyone else while it is inside a transaction: on
 * MariaDB a statement that times out closes its connection (the server rolls back), on SQLite the
 * statement is interrupted and rolled back before the connection goes back. The handle lives in the
 * scope's memory. */
typedef struct sql_txn sql_txn;
/* Starts a transaction (waits for a connection like a statement does). Value: the sql_txn. */
async_op *sql_begin(async_scope *scope, http_loop *loop);
/* Runs one statement inside tx. Value: a sql_result. */
async_op *sql_txn_query(sql_txn *tx, const sql_stmt *stmt);
/* Commits tx. OK: written (value NULL: test op->status, not op->value). FAILED: rolled back (the
 * error says why). The handle is done either way. */
async_op *sql_commit(sql_txn *tx);
/* Rolls tx back (value NULL). The handle is done. */
async_op *sql_rollback(sql_txn *tx);

/* ---- migrations (loop thread, typically in the startup hook) -------------------------------------
 *
 * An app's schema as an ordered list of steps, each one or more statements; step k (1-based) is
 * applied once, in a transaction together with recording k in the table apiary_schema_version, so a
 * restart skips what is applied and a failed step leaves nothing half-done (SQLite rolls DDL back;
 * MariaDB commits DDL implicitly, so keep one DDL statement per step there and make it idempotent,
 * e.g. CREATE TABLE IF NOT EXISTS). Steps are only ever appended: never edit or reorder one that has
 * shipped. While the database is unavailable (MariaDB still starting), it retries every 250 ms for up
 * to sql.startup_timeout_ms. Completes OK (value: the number of steps applied now) or FAILED with the
 * error of the step that failed (logged naming the step and statement). */
typedef struct sql_migration {
    const char *const *statements; /* no parameters */
    size_t count;
} sql_migration;
async_op *sql_migrate(async_scope *scope, http_loop *loop, const sql_migration *steps, size_t n);
/* True when SQL requests can be served now. SQLite and none: always. MariaDB: the schema is in place and this
 * loop has a connection up (starting one when none is, so the first call may answer false). */
bool sql_ready(http_loop *loop);

/* ---- counters (any thread) --------------------------------------------------------------------- */

#define SQL_LATENCY_BUCKETS 12
/* Upper bounds (ms, inclusive) of the latency histogram; the last bucket is +Inf. */
extern const double SQL_LATENCY_BOUNDS_MS[SQL_LATENCY_BUCKETS - 1];

typedef struct sql_stats {
    uint64_t queries;              /* statements completed (OK or not), batch members included */
    uint64_t errors_unavailable;
    uint64_t errors_timeout;
    uint64_t errors_connection_lost;
    uint64_t errors_busy;
    uint64_t errors_conflict;
    uint64_t errors_query;
    uint64_t errors_too_large;
    uint64_t results_discarded;    /* statements whose request was gone when they finished */
    uint64_t connects;             /* MariaDB connections established */
    uint64_t connect_failures;
    uint64_t connections_closed;   /* broken, timed out or stale connections dropped */
    uint64_t in_use;               /* gauge: connections running a statement */
    uint64_t waiting;              /* gauge: statements waiting for a connection */
    uint64_t open;                 /* gauge: connections open */
    uint64_t latency_buckets[SQL_LATENCY_BUCKETS]; /* per operation, start to completion */
    uint64_t latency_sum_us;
} sql_stats;

void sql_stats_read(sql_stats *out);

struct metrics_writer;
/* A metrics_source_fn (include/apiary/metrics.h) for these counters; labels the backend, never the address. */
void sql_metrics_source(struct metrics_writer *w, void *arg);

#endif
