/* sql_sqlite: the SQLite backend of include/apiary/sql.h, the embedded default. SQLite's calls block, so every
 * operation is one job on SQLite's own threads (a pool of sql.threads workers, include/apiary/pool.h, not
 * the CPU worker pool: a queue of CPU jobs never delays a database read, nor the other way round): the
 * loop encodes the statements and their parameters into the job's input, a worker runs them on a
 * connection from the backend's list (opened on first use, each with its statement cache) and encodes
 * the rows into the job's output, and the loop decodes them into the caller's scope.
 *
 * Several statements in one call run in one job inside one transaction (BEGIN IMMEDIATE when any of
 * them writes, so two writers never deadlock upgrading a read lock), in order, each prepared just
 * before it runs, so a statement may use a table an earlier one created. That is sql_batch, and also
 * sql_query_many: /v1/queries?queries=500 takes one slot of the queue, not 500.
 *
 * Transactions (sql_begin ...) hold one connection across jobs: BEGIN IMMEDIATE takes it off the list
 * and the commit or rollback puts it back. Their jobs run in a scope of the transaction's own, never
 * cancelled, so a job that holds the connection always reports where it left it; their deadline
 * (sql.query_timeout_ms from submission) is enforced by the worker itself. A statement that fails is
 * rolled back in the same job, and a transaction whose caller went away is rolled back by one more
 * job, before its connection goes back to the list.
 *
 * Locks. A thread never waits for SQLite's write lock (the busy timeout is 0): a job that finds the
 * database locked by another writer gives its thread back at once, and the loop tries it again after
 * 1, 2, 4 ... 16 ms until 50 ms before the query's deadline, then fails it "conflict" (another writer's
 * lock, not a full queue: SQLITE_BUSY is "busy" only in SQLite's words; "busy" is for the threads' queue
 * full, POOL_ERROR_FULL). Waiting in the threads (SQLite's own busy handler) let writers queued behind
 * a transaction's lock take every thread, so that transaction's next statement could not run until they
 * gave up: a convoy of 504s. Files are in WAL mode, so readers never wait for the writer.
 *
 * Timeouts. The operation is bounded by sql.query_timeout_ms (async_wait_for around each job, or the
 * worker's deadline in a transaction); a job whose operation was cancelled or timed out is interrupted
 * by SQLite's progress handler, which polls pool_job_cancelled and the deadline, and its transaction
 * rolled back. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pool.h"
#include "pool_internal.h"
#include "sql_internal.h"
#include "xalloc_internal.h"

/* Prepared statements kept per worker connection, by SQL text (the endpoints use a handful). */
#define SQL_SQLITE_CACHE 32
/* The progress handler runs every this many virtual-machine steps: cheap, and a long query notices a
 * cancellation within well under a millisecond. */
#define SQL_SQLITE_PROGRESS_STEPS 1000

static const sql_settings *sql_sqlite_settings;
static pool *sql_sqlite_pool;

/* A connection and its statement cache. On the free list, or held by one job at a time (or by a
 * transaction between its jobs). */
typedef struct sql_sqlite_conn {
    sqlite3 *db;
    struct {
        char *sql;
        sqlite3_stmt *stmt;
    } cache[SQL_SQLITE_CACHE];
    size_t cached, next_evict;
    const pool_job *job; /* the job running now, for the progress handler */
    uint64_t deadline_us; /* 0, or when the progress handler interrupts the job */
    struct sql_sqlite_conn *next_free;
} sql_sqlite_conn;

static pthread_mutex_t sql_sqlite_lock = PTHREAD_MUTEX_INITIALIZER;
static sql_sqlite_conn *sql_sqlite_free_list; /* under the lock */

static void sql_sqlite_conn_free(sql_sqlite_conn *c)
{
    for (size_t i = 0; i < c->cached; i++) {
        sqlite3_finalize(c->cache[i].stmt);
        free(c->cache[i].sql);
    }
    sqlite3_close(c->db);
    free(c);
}

static int sql_sqlite_progress(void *arg)
{
    const sql_sqlite_conn *c = arg;
    if (c->job && pool_job_cancelled(c->job))
        return 1;
    return c->deadline_us && sql__now_us() > c->deadline_us;
}
/* Opens `path` with the settings every connection shares: WAL, NORMAL sync (WAL makes that durable
 * across a process crash; an OS crash may lose the last transactions). The busy timeout covers only
 * the opening; the connection then never waits for a lock (see Locks above). */
static sqlite3 *sql_sqlite_open(const sql_settings *s, char *why, size_t why_cap)
{
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(s->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(why, why_cap, "%s", db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, (int)s->query_timeout_ms);
    char *err = NULL;
    if (sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL", NULL, NULL, &err) != SQLITE_OK) {
        snprintf(why, why_cap, "%s", err ? err : "cannot set WAL mode");
        sqlite3_free(err);
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_busy_timeout(db, 0);
    return db;
}

/* A connection from the list, or a new one (NULL, logged, when the file cannot be opened). */
static sql_sqlite_conn *sql_sqlite_conn_take(void)
{
    pthread_mutex_lock(&sql_sqlite_lock);
    sql_sqlite_conn *c = sql_sqlite_free_list;
    if (c)
        sql_sqlite_free_list = c->next_free;
    pthread_mutex_unlock(&sql_sqlite_lock);
    if (c) {
        c->next_free = NULL;
        return c;
    }
    char why[256];
    sqlite3 *db = sql_sqlite_open(sql_sqlite_settings, why, sizeof(why));
    if (!db) {
        log_warn("sql: sqlite: cannot open %s: %s", sql_sqlite_settings->path, why);
        return NULL;
    }
    c = xcalloc(1, sizeof(*c));
    c->db = db;
    sqlite3_progress_handler(db, SQL_SQLITE_PROGRESS_STEPS, sql_sqlite_progress, c);
    return c;
}

/* Back on the list, outside any transaction. */
static void sql_sqlite_conn_give(sql_sqlite_conn *c)
{
    c->job = NULL;
    c->deadline_us = 0;
    pthread_mutex_lock(&sql_sqlite_lock);
    c->next_free = sql_sqlite_free_list;
    sql_sqlite_free_list = c;
    pthread_mutex_unlock(&sql_sqlite_lock);
}

static sqlite3_stmt *sql_sqlite_prepare(sql_sqlite_conn *c, const char *sql, size_t len)
{
    for (size_t i = 0; i < c->cached; i++)
        if (strlen(c->cache[i].sql) == len && memcmp(c->cache[i].sql, sql, len) == 0)
            return c->cache[i].stmt;
    sqlite3_stmt *stmt = NULL;
    if (sqlite3_prepare_v3(c->db, sql, (int)len, SQLITE_PREPARE_PERSISTENT, &stmt, NULL) != SQLITE_OK || !stmt)
        return NULL;
    size_t slot = c->cached < SQL_SQLITE_CACHE ? c->cached++ : c->next_evict++ % SQL_SQLITE_CACHE;
    if (c->cache[slot].stmt) {
        sqlite3_finalize(c->cache[slot].stmt);
        free(c->cache[slot].sql);
    }
    c->cache[slot].sql = xmalloc(len + 1);
    memcpy(c->cache[slot].sql, sql, len);
    c->cache[slot].sql[len] = '\0';
    c->cache[slot].stmt = stmt;
    return stmt;
}

/* ---- the job's input and output ----------------------------------------------------------------
 *
 * Input:  u32 n, then per statement: u32 sql_len, sql, u64 max_result_bytes, u32 nparams, params.
 * Output: per statement: u32 cols, u32 rows, u64 affected, i64 insert_id, then rows x cols cells.
 * A value (param or cell) is u8 type, then i64 (INT), f64 (DOUBLE), u32 len + bytes (TEXT), or
 * nothing (NULL). Native byte order: both ends are this process. */

typedef struct sql_wbuf {
    unsigned char *p;
    size_t len, cap;
    bool overflow;
} sql_wbuf;

static void sql_put(sql_wbuf *w, const void *data, size_t n)
{
    if (w->overflow || w->cap - w->len < n) {
        w->overflow = true;
        return;
    }
    if (n) /* an empty TEXT cell: sqlite3_column_blob gives NULL, which memcpy may not be passed */
        memcpy(w->p + w->len, data, n);
    w->len += n;
}

#define SQL_PUT(w, v) sql_put((w), &(v), sizeof(v))

static void sql_put_value(sql_wbuf *w, const sql_value *v)
{
    uint8_t t = (uint8_t)v->type;
    SQL_PUT(w, t);
    if (v->type == SQL_INT) {
        int64_t i = v->i;
        SQL_PUT(w, i);
    } else if (v->type == SQL_DOUBLE) {
        SQL_PUT(w, v->d);
    } else if (v->type == SQL_TEXT) {
        uint32_t len = (uint32_t)v->len;
        SQL_PUT(w, len);
        sql_put(w, v->s, v->len);
    }
}

typedef struct sql_rbuf {
    const unsigned char *p;
    size_t len, pos;
    bool bad;
} sql_rbuf;

static const void *sql_get(sql_rbuf *r, size_t n)
{
    if (r->bad || r->len - r->pos < n) {
        r->bad = true;
        return NULL;
    }
    const void *at = r->p + r->pos;
    r->pos += n;
    return at;
}

#define SQL_GET(r, v)                                \
    do {                                             \
        const void *at_ = sql_get((r), sizeof(v));   \
        if (at_)                                     \
            memcpy(&(v), at_, sizeof(v));            \
    } while (0)

/* Reads a value; TEXT points into the buffer (not NUL-terminated). */
static void sql_get_value(sql_rbuf *r, sql_value *v)
{
    uint8_t t = SQL_NULL;
    SQL_GET(r, t);
    memset(v, 0, sizeof(*v));
    v->type = (sql_type)t;
    if (t == SQL_INT) {
        int64_t i = 0;
        SQL_GET(r, i);
        v->i = i;
    } else if (t == SQL_DOUBLE) {
        SQL_GET(r, v->d);
    } else if (t == SQL_TEXT) {
        uint32_t len = 0;
        SQL_GET(r, len);
        v->len = len;
        v->s = sql_get(r, len);
    } else if (t != SQL_NULL) {
        r->bad = true;
    }
}

/* ---- the worker side ------------------------------------------------------------------------- */

/* A job's error when another writer holds the lock: never reported as such, the loop retries. */
static const char sql_sqlite_locked[] = "locked";
#define SQL_SQLITE_RETRY_MAX_MS 16u
/* A try is only made with this much of the deadline left beyond its pause: one started nearer the
 * deadline would come back as a timeout of its own (the job's wait_for, or the worker's deadline in a
 * transaction) while what held the operation up was the lock, and the answer must say conflict. */
#define SQL_SQLITE_LAST_TRY_MS 50u

static const char *sql_sqlite_error(sql_sqlite_conn *c, int rc, const char *what)
{
    int primary = rc & 0xff;
    if (primary == SQLITE_INTERRUPT)
        return SQL_ERROR_TIMEOUT;
    if (primary == SQLITE_TOOBIG)
        return SQL_ERROR_TOO_LARGE; /* a value past the statement's bound (sql_sqlite_run) */
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED)
        return sql_sqlite_locked; /* the loop tries again (see Locks above) */
    log_warn("sql: sqlite: %s: %s", what, sqlite3_errmsg(c->db));
    return SQL_ERROR_QUERY;
}

static const char *sql_sqlite_step_rows(sql_sqlite_conn *c, sqlite3_stmt *stmt, uint32_t cols, uint64_t max_bytes,
                                        sql_wbuf *w);

/* Runs one statement of the job, its rows appended to w. */
static const char *sql_sqlite_run(sql_sqlite_conn *c, sqlite3_stmt *stmt, sql_rbuf *in, uint32_t nparams,
                                  uint64_t max_bytes, sql_wbuf *w)
{
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    /* SQLite, like a MariaDB server, says how many `?` the statement has; binding fewer leaves NULLs
     * and more fails half-way, both an application bug to name, not a query to run. */
    int expected = sqlite3_bind_parameter_count(stmt);
    if (expected != (int)nparams) {
        log_warn("sql: sqlite: the statement \"%s\" takes %d parameter(s) and was given %u; not run", sqlite3_sql(stmt),
                 expected, nparams);
        return SQL_ERROR_QUERY;
    }
    size_t longest = 0;
    for (uint32_t i = 0; i < nparams; i++) {
        sql_value v;
        sql_get_value(in, &v);
        if (in->bad)
            return SQL_ERROR_QUERY;
        if (v.type == SQL_TEXT && v.len > longest)
            longest = v.len;
        int rc = v.type == SQL_INT      ? sqlite3_bind_int64(stmt, (int)i + 1, v.i)
                 : v.type == SQL_DOUBLE ? sqlite3_bind_double(stmt, (int)i + 1, v.d)
                 : v.type == SQL_TEXT   ? sqlite3_bind_text(stmt, (int)i + 1, v.s ? v.s : "", (int)v.len,
                                                            SQLITE_TRANSIENT)
                                        : sqlite3_bind_null(stmt, (int)i + 1);
        if (rc != SQLITE_OK)
            return sql_sqlite_error(c, rc, "bind");
    }
    uint32_t cols = (uint32_t)sqlite3_column_count(stmt);
    /* A statement that returns rows may not make SQLite load a value past its bound (a 64 MiB cell
     * for a 1 KiB result): SQLITE_LIMIT_LENGTH makes the step fail SQLITE_TOOBIG before the value is
     * read into memory. Never below the longest text bound in, so an INSERT ... RETURNING still works. */
    int old_limit = -1;
    if (cols > 0) {
        uint64_t bound = (max_bytes > longest ? max_bytes : longest) + 1;
        old_limit = sqlite3_limit(c->db, SQLITE_LIMIT_LENGTH, bound > INT32_MAX ? INT32_MAX : (int)bound);
    }
    const char *error = sql_sqlite_step_rows(c, stmt, cols, max_bytes, w);
    if (old_limit >= 0)
        sqlite3_limit(c->db, SQLITE_LIMIT_LENGTH, old_limit);
    return error;
}

/* Steps stmt (parameters bound) and appends its rows to w, bounded by max_bytes. */
static const char *sql_sqlite_step_rows(sql_sqlite_conn *c, sqlite3_stmt *stmt, uint32_t cols, uint64_t max_bytes,
                                        sql_wbuf *w)
{
    uint32_t rows = 0;
    size_t header = w->len;
    uint64_t zero = 0;
    SQL_PUT(w, cols);
    SQL_PUT(w, rows);
    SQL_PUT(w, zero); /* affected, patched below */
    SQL_PUT(w, zero); /* insert_id */
    size_t start = w->len;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        for (uint32_t col = 0; col < cols; col++) {
            sql_value v = {.type = SQL_NULL};
            switch (sqlite3_column_type(stmt, (int)col)) {
            case SQLITE_INTEGER:
                v = sql_int(sqlite3_column_int64(stmt, (int)col));
                break;
            case SQLITE_FLOAT:
                v = sql_double(sqlite3_column_double(stmt, (int)col));
                break;
            case SQLITE_TEXT:
            case SQLITE_BLOB:
                v.type = SQL_TEXT;
                v.s = (const char *)sqlite3_column_blob(stmt, (int)col);
                v.len = (size_t)sqlite3_column_bytes(stmt, (int)col);
                break;
            default:
                break;
            }
            sql_put_value(w, &v);
        }
        rows++;
        if (w->overflow || w->len - start > max_bytes) {
            sqlite3_reset(stmt);
            return SQL_ERROR_TOO_LARGE;
        }
    }
    if (rc != SQLITE_DONE) {
        const char *e = sql_sqlite_error(c, rc, "step");
        sqlite3_reset(stmt);
        return e;
    }
    uint64_t affected = cols == 0 ? (uint64_t)sqlite3_changes64(c->db) : 0;
    int64_t insert_id = cols == 0 ? sqlite3_last_insert_rowid(c->db) : 0;
    sqlite3_reset(stmt);
    if (w->overflow)
        return SQL_ERROR_TOO_LARGE;
    memcpy(w->p + header + 4, &rows, sizeof(rows));
    memcpy(w->p + header + 8, &affected, sizeof(affected));
    memcpy(w->p + header + 16, &insert_id, sizeof(insert_id));
    return NULL;
}

static const char *sql_sqlite_exec_plain(sql_sqlite_conn *c, const char *sql)
{
    int rc = sqlite3_exec(c->db, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? NULL : sql_sqlite_error(c, rc, sql);
}

/* ---- jobs ---------------------------------------------------------------------------------------
 *
 * Every job's input starts with u8 mode, u64 conn (the transaction's connection, or 0), u64 deadline
 * (monotonic microseconds, or 0), then u32 n and the statements. A transaction's jobs (BEGIN, STMT,
 * COMMIT, ROLLBACK) always succeed as jobs and put u64 conn (the connection the transaction holds
 * after the job, 0 when it was given back) and u8 error (an index into sql_sqlite_errors) in front of
 * their output, so the loop always learns where the connection is. */

typedef enum sql_sqlite_mode {
    SQL_SQLITE_MANY,     /* independent statements (one transaction when several) */
    SQL_SQLITE_BATCH,    /* dependent statements in one transaction */
    SQL_SQLITE_BEGIN,
    SQL_SQLITE_STMT,
    SQL_SQLITE_COMMIT,
    SQL_SQLITE_ROLLBACK,
} sql_sqlite_mode;

static const char *const sql_sqlite_errors[] = {NULL, SQL_ERROR_UNAVAILABLE, SQL_ERROR_TIMEOUT, SQL_ERROR_BUSY,
                                                SQL_ERROR_QUERY, SQL_ERROR_TOO_LARGE, sql_sqlite_locked};

static uint8_t sql_sqlite_error_code(const char *error)
{
    for (uint8_t i = 1; i < sizeof(sql_sqlite_errors) / sizeof(sql_sqlite_errors[0]); i++)
        if (sql_sqlite_errors[i] == error)
            return i;
    return error ? 4 : 0;
}

/* Reads one statement's header from `in` and prepares it; the parameters stay in `in` for
 * sql_sqlite_run. NULL with *error set when it cannot be prepared (quietly when `quiet`). */
static sqlite3_stmt *sql_sqlite_next(sql_sqlite_conn *c, sql_rbuf *in, uint32_t *nparams, uint64_t *max_bytes,
                                     bool quiet, const char **error)
{
    uint32_t sql_len = 0;
    SQL_GET(in, sql_len);
    const char *sql = sql_get(in, sql_len);
    SQL_GET(in, *max_bytes);
    SQL_GET(in, *nparams);
    sqlite3_stmt *stmt = sql && !in->bad ? sql_sqlite_prepare(c, sql, sql_len) : NULL;
    if (!stmt)
        *error = in->bad || quiet ? SQL_ERROR_QUERY : sql_sqlite_error(c, sqlite3_errcode(c->db), "prepare");
    return stmt;
}

static void sql_sqlite_skip_params(sql_rbuf *in, uint32_t nparams)
{
    for (uint32_t i = 0; i < nparams && !in->bad; i++) {
        sql_value v;
        sql_get_value(in, &v);
    }
}

/* Runs the n statements of `in` in order on c, their results appended to w. */
static const char *sql_sqlite_run_all(sql_sqlite_conn *c, sql_rbuf *in, uint32_t n, sql_wbuf *w)
{
    const char *error = NULL;
    for (uint32_t k = 0; k < n && !error; k++) {
        uint32_t nparams = 0;
        uint64_t max_bytes = 0;
        sqlite3_stmt *stmt = sql_sqlite_next(c, in, &nparams, &max_bytes, false, &error);
        if (stmt)
            error = sql_sqlite_run(c, stmt, in, nparams, max_bytes, w);
    }
    return error;
}

/* MANY and BATCH: n statements on a connection of the list, several in one transaction. */
static const char *sql_sqlite_work_plain(sql_sqlite_conn *c, sql_rbuf *in, uint32_t n, sql_wbuf *w)
{
    const char *error = NULL;
    bool txn = false;
    if (n > 1) {
        /* First pass: prepare what can be, to know whether the transaction writes. A statement that
         * cannot be prepared yet (its table is created by an earlier one) counts as a write; its real
         * error, if any, comes from the second pass, when it is its turn. */
        bool writes = false;
        size_t pos = in->pos;
        for (uint32_t k = 0; k < n && !in->bad; k++) {
            uint32_t nparams = 0;
            uint64_t max_bytes = 0;
            const char *ignored = NULL;
            sqlite3_stmt *stmt = sql_sqlite_next(c, in, &nparams, &max_bytes, true, &ignored);
            if (!stmt || !sqlite3_stmt_readonly(stmt))
                writes = true;
            sql_sqlite_skip_params(in, nparams);
        }
        if (in->bad)
            return SQL_ERROR_QUERY;
        in->pos = pos;
        error = sql_sqlite_exec_plain(c, writes ? "BEGIN IMMEDIATE" : "BEGIN");
        txn = !error;
    }
    if (!error)
        error = sql_sqlite_run_all(c, in, n, w);
    if (txn) {
        if (!error)
            error = sql_sqlite_exec_plain(c, "COMMIT");
        if (error)
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    }
    return error;
}

/* BEGIN, STMT, COMMIT, ROLLBACK of a transaction; returns the connection it holds afterwards. */
static sql_sqlite_conn *sql_sqlite_work_txn(sql_sqlite_mode mode, sql_sqlite_conn *c, sql_rbuf *in, uint32_t n,
                                            sql_wbuf *w, const char **error)
{
    if (mode == SQL_SQLITE_BEGIN) {
        *error = sql_sqlite_exec_plain(c, "BEGIN IMMEDIATE");
    } else if (mode == SQL_SQLITE_STMT) {
        *error = sql_sqlite_run_all(c, in, n, w);
    } else if (mode == SQL_SQLITE_COMMIT) {
        *error = sql_sqlite_exec_plain(c, "COMMIT");
    } else {
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        return NULL;
    }
    if (!*error && mode != SQL_SQLITE_COMMIT)
        return c; /* the transaction goes on */
    /* Over: committed, or failed and rolled back here, before anyone else can have the connection. */
    if (*error && mode != SQL_SQLITE_BEGIN)
        sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    return NULL;
}

static const char *sql_sqlite_work(pool_job *job, const void *input, size_t input_len, void *output,
                                   size_t output_cap, size_t *output_len)
{
    sql_rbuf in = {input, input_len, 0, false};
    sql_wbuf w = {output, 0, output_cap, false};
    uint8_t mode = 0;
    uint64_t held = 0, deadline = 0;
    uint32_t n = 0;
    SQL_GET(&in, mode);
    SQL_GET(&in, held);
    SQL_GET(&in, deadline);
    SQL_GET(&in, n);
    bool txn = mode >= SQL_SQLITE_BEGIN;
    sql_sqlite_conn *c = held ? (sql_sqlite_conn *)(uintptr_t)held : sql_sqlite_conn_take();
    const char *error = NULL;
    if (!c) {
        error = SQL_ERROR_UNAVAILABLE;
    } else {
        c->job = job;
        c->deadline_us = deadline;
    }
    if (txn) {
        uint64_t after = 0;
        uint8_t code = 0;
        SQL_PUT(&w, after); /* patched below */
        SQL_PUT(&w, code);
        if (c && deadline && sql__now_us() > deadline && mode != SQL_SQLITE_ROLLBACK) {
            error = SQL_ERROR_TIMEOUT; /* waited in the queue past its deadline: not started */
            if (mode != SQL_SQLITE_BEGIN)
                sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
        } else if (c) {
            sql_sqlite_conn *still = sql_sqlite_work_txn((sql_sqlite_mode)mode, c, &in, n, &w, &error);
            after = (uint64_t)(uintptr_t)still;
        }
        if (c && !after) {
            sql_sqlite_conn_give(c);
        } else if (c) {
            c->job = NULL;
            c->deadline_us = 0;
        }
        code = sql_sqlite_error_code(error);
        memcpy(w.p, &after, sizeof(after));
        memcpy(w.p + sizeof(after), &code, sizeof(code));
        *output_len = w.len;
        return NULL; /* the job itself succeeded: its output says how the transaction is */
    }
    if (c) {
        error = sql_sqlite_work_plain(c, &in, n, &w);
        sql_sqlite_conn_give(c);
    }
    *output_len = w.len;
    return error;
}

/* ---- the loop side --------------------------------------------------------------------------- */

static size_t sql_value_encoded(const sql_value *v) { return 1 + (v->type == SQL_TEXT ? 4 + v->len : 8); }

/* A job's input for n statements, and the output room their bounds need; free() the input. */
static unsigned char *sql_sqlite_encode(sql_sqlite_mode mode, uint64_t conn, uint64_t deadline, const sql_stmt *stmts,
                                        size_t n, size_t *in_len, size_t *out_cap)
{
    size_t len = 1 + 8 + 8 + 4, cap = 8 + 1;
    for (size_t k = 0; k < n; k++) {
        len += 4 + strlen(stmts[k].sql) + 8 + 4;
        for (size_t i = 0; i < stmts[k].nparams; i++)
            len += sql_value_encoded(&stmts[k].params[i]);
        size_t max = stmts[k].max_result_bytes ? stmts[k].max_result_bytes : SQL_RESULT_DEFAULT_BYTES;
        /* The header, one row past the limit (the check runs after a row), and the limit itself. */
        cap += 24 + 2 * max;
    }
    unsigned char *in = xmalloc(len);
    sql_wbuf w = {in, 0, len, false};
    uint8_t m = (uint8_t)mode;
    uint32_t n32 = (uint32_t)n;
    SQL_PUT(&w, m);
    SQL_PUT(&w, conn);
    SQL_PUT(&w, deadline);
    SQL_PUT(&w, n32);
    for (size_t k = 0; k < n; k++) {
        uint32_t sql_len = (uint32_t)strlen(stmts[k].sql), nparams = (uint32_t)stmts[k].nparams;
        uint64_t max = stmts[k].max_result_bytes ? stmts[k].max_result_bytes : SQL_RESULT_DEFAULT_BYTES;
        SQL_PUT(&w, sql_len);
        sql_put(&w, stmts[k].sql, sql_len);
        SQL_PUT(&w, max);
        SQL_PUT(&w, nparams);
        for (size_t i = 0; i < nparams; i++)
            sql_put_value(&w, &stmts[k].params[i]);
    }
    *in_len = w.len;
    *out_cap = cap;
    return in;
}

/* Decodes n results from r into scope memory; false when the output is malformed. */
static bool sql_sqlite_decode(async_scope *scope, sql_rbuf *r, size_t n, sql_result *results)
{
    for (size_t k = 0; k < n && !r->bad; k++) {
        uint32_t cols = 0, rows = 0;
        uint64_t affected = 0;
        int64_t insert_id = 0;
        SQL_GET(r, cols);
        SQL_GET(r, rows);
        SQL_GET(r, affected);
        SQL_GET(r, insert_id);
        size_t count = (size_t)cols * rows;
        sql_value *cells = count && !r->bad ? async_scope_alloc(scope, count * sizeof(*cells)) : NULL;
        for (size_t i = 0; i < count && !r->bad; i++) {
            sql_get_value(r, &cells[i]);
            if (cells[i].type == SQL_TEXT && !r->bad) {
                /* NUL-terminated copy: the pool result goes with the scope too, but is not terminated. */
                char *s = async_scope_alloc(scope, cells[i].len + 1);
                memcpy(s, cells[i].s, cells[i].len);
                cells[i].s = s;
            }
        }
        results[k] = (sql_result){.rows = rows, .cols = cols, .cells = cells, .affected = affected,
                                  .insert_id = insert_id};
    }
    return !r->bad;
}

typedef struct sql_sqlite_call {
    async_scope *scope;
    async_op *future; /* what the caller awaits */
    async_op *job;    /* the pool job inside a wait_for, or the sleep before trying again */
    size_t n;
    bool single;
    uint64_t started_us;
    unsigned char *input; /* scope memory: kept to try again while the database is locked */
    size_t input_len, output_cap;
    unsigned retry_ms;
} sql_sqlite_call;

static void sql_sqlite_done(async_op *op, void *arg);

/* Milliseconds left of a deadline `timeout_ms` after started_us; 0 when it has passed. */
static unsigned sql_sqlite_left_ms(uint64_t started_us, unsigned timeout_ms)
{
    uint64_t elapsed = (sql__now_us() - started_us) / 1000u;
    return elapsed >= timeout_ms ? 0 : (unsigned)(timeout_ms - elapsed);
}

/* The next pause while the database stays locked: 1, 2, 4 ... 16 ms. */
static unsigned sql_sqlite_backoff(unsigned *retry_ms)
{
    unsigned ms = *retry_ms ? *retry_ms : 1;
    *retry_ms = ms * 2 > SQL_SQLITE_RETRY_MAX_MS ? SQL_SQLITE_RETRY_MAX_MS : ms * 2;
    return ms;
}

static void sql_sqlite_submit_job(sql_sqlite_call *call)
{
    unsigned left = sql_sqlite_left_ms(call->started_us, sql_sqlite_settings->query_timeout_ms);
    async_op *job = pool_submit(call->scope, sql_sqlite_pool, sql_sqlite_work, call->input, call->input_len,
                                call->output_cap);
    call->job = async_wait_for(call->scope, job, left ? left : 1);
    async_op_then(call->job, sql_sqlite_done, call);
}

static void sql_sqlite_retry(async_op *op, void *arg)
{
    (void)op;
    sql_sqlite_submit_job(arg);
}

static void sql_sqlite_count(size_t n, uint64_t started_us, const char *error)
{
    uint64_t elapsed = sql__now_us() - started_us;
    for (size_t i = 0; i < n; i++)
        sql__count_query(error, elapsed);
}

/* What a failed job means as a SQL_ERROR_*. */
static const char *sql_sqlite_job_error(const async_op *op)
{
    return op->status == ASYNC_TIMEOUT ? SQL_ERROR_TIMEOUT
           : op->error == POOL_ERROR_FULL ? SQL_ERROR_BUSY
           : op->error == SQL_ERROR_QUERY || op->error == SQL_ERROR_BUSY || op->error == SQL_ERROR_TOO_LARGE ||
                   op->error == SQL_ERROR_TIMEOUT || op->error == SQL_ERROR_UNAVAILABLE
               ? op->error
               : SQL_ERROR_UNAVAILABLE;
}

static void sql_sqlite_done(async_op *op, void *arg)
{
    sql_sqlite_call *call = arg;
    if (op->status == ASYNC_FAILED && op->error == sql_sqlite_locked) {
        unsigned pause = sql_sqlite_backoff(&call->retry_ms);
        if (sql_sqlite_left_ms(call->started_us, sql_sqlite_settings->query_timeout_ms) >
            pause + SQL_SQLITE_LAST_TRY_MS) {
            call->job = async_sleep(call->scope, pause);
            async_op_then(call->job, sql_sqlite_retry, call);
            return;
        }
        log_warn("sql: sqlite: the database stayed locked by another writer for %u ms; answering conflict",
                 sql_sqlite_settings->query_timeout_ms);
    }
    async_future_on_cancel(call->future, NULL, NULL);
    if (op->status != ASYNC_OK) {
        const char *error = op->error == sql_sqlite_locked ? SQL_ERROR_CONFLICT : sql_sqlite_job_error(op);
        sql_sqlite_count(call->n, call->started_us, error);
        async_fail(call->future, error);
        return;
    }
    const pool_result *out = op->value;
    sql_rbuf r = {out->data, out->len, 0, false};
    sql_result *results = async_scope_alloc(call->scope, call->n * sizeof(*results));
    if (!sql_sqlite_decode(call->scope, &r, call->n, results)) {
        log_error("sql: sqlite: a job's output could not be decoded");
        sql_sqlite_count(call->n, call->started_us, SQL_ERROR_QUERY);
        async_fail(call->future, SQL_ERROR_QUERY);
        return;
    }
    sql_sqlite_count(call->n, call->started_us, NULL);
    if (call->single) {
        async_resolve(call->future, &results[0]);
        return;
    }
    sql_batch_result *batch = async_scope_alloc(call->scope, sizeof(*batch));
    batch->count = call->n;
    batch->results = results;
    async_resolve(call->future, batch);
}

/* The caller gave up (scope ended, or a wait_for of its own): the job is cancelled with it, and a
 * running one is interrupted by the progress handler. */
static void sql_sqlite_cancel(async_op *future, void *arg)
{
    (void)future;
    sql_sqlite_call *call = arg;
    async_op_cancel(call->job);
    sql__count_discarded();
}

static async_op *sql_sqlite_submit(async_scope *scope, sql_sqlite_mode mode, const sql_stmt *stmts, size_t n,
                                   bool single)
{
    sql_sqlite_call *call = async_scope_alloc(scope, sizeof(*call));
    call->scope = scope;
    call->future = async_future(scope);
    call->n = n;
    call->single = single;
    call->started_us = sql__now_us();
    if (call->future->status != ASYNC_PENDING)
        return call->future;
    unsigned char *in = sql_sqlite_encode(mode, 0, 0, stmts, n, &call->input_len, &call->output_cap);
    call->input = async_scope_alloc(scope, call->input_len);
    memcpy(call->input, in, call->input_len);
    free(in);
    async_future_on_cancel(call->future, sql_sqlite_cancel, call);
    sql_sqlite_submit_job(call);
    return call->future;
}

static async_op *sql_sqlite_many(async_scope *scope, http_loop *loop, const sql_stmt *stmts, size_t n, bool single)
{
    (void)loop;
    return sql_sqlite_submit(scope, SQL_SQLITE_MANY, stmts, n, single);
}

static async_op *sql_sqlite_batch(async_scope *scope, http_loop *loop, const sql_stmt *stmts, size_t n)
{
    (void)loop;
    return sql_sqlite_submit(scope, SQL_SQLITE_BATCH, stmts, n, false);
}

/* ---- transactions ---------------------------------------------------------------------------------- */

typedef struct sql_sqlite_txn {
    async_scope *own;        /* the transaction's jobs: never cancelled (see the top of the file) */
    uint64_t conn;           /* the connection it holds, as the worker named it; 0 when none */
    bool inflight;
    bool abandoned;          /* the handle is done: roll back what is open, then free */
    async_op *user;          /* the caller's future for the call in flight; NULL once it stopped waiting */
    async_scope *user_scope; /* where the result goes, while user is set */
    bool has_result;         /* STMT: a sql_result follows */
    uint64_t started_us;
    sql_sqlite_mode mode;    /* of the job in flight */
    unsigned retry_ms;       /* BEGIN while another writer holds the lock */
} sql_sqlite_txn;

static void sql_sqlite_txn_job(sql_sqlite_txn *t, sql_sqlite_mode mode, const sql_stmt *stmt, async_op *user,
                               async_scope *user_scope);
static void sql_sqlite_txn_settle(sql_sqlite_txn *t);

static void sql_sqlite_txn_begin_again(async_op *op, void *arg)
{
    (void)op;
    sql_sqlite_txn *t = arg;
    if (!t->user || t->abandoned) { /* the caller stopped waiting meanwhile */
        t->inflight = false;
        sql_sqlite_txn_settle(t);
        return;
    }
    sql_sqlite_txn_job(t, SQL_SQLITE_BEGIN, NULL, t->user, t->user_scope); /* keeps the first deadline */
}

static void sql_sqlite_txn_settle(sql_sqlite_txn *t);

static void sql_sqlite_txn_user_gone(async_op *future, void *arg)
{
    (void)future;
    sql_sqlite_txn *t = arg;
    t->user = NULL;
    t->user_scope = NULL;
    sql__count_discarded();
}

static void sql_sqlite_txn_retry(async_op *op, void *arg)
{
    (void)op;
    sql_sqlite_txn_settle(arg);
}

static void sql_sqlite_txn_done(async_op *op, void *arg)
{
    sql_sqlite_txn *t = arg;
    t->inflight = false;
    const char *error = NULL;
    const pool_result *out = op->status == ASYNC_OK ? op->value : NULL;
    sql_rbuf r = {out ? out->data : NULL, out ? out->len : 0, 0, false};
    if (!out) {
        error = sql_sqlite_job_error(op); /* never ran (queue full): the connection is where it was */
    } else {
        uint64_t conn = 0;
        uint8_t code = 0;
        SQL_GET(&r, conn);
        SQL_GET(&r, code);
        if (r.bad || code >= sizeof(sql_sqlite_errors) / sizeof(sql_sqlite_errors[0])) {
            log_error("sql: sqlite: a transaction job's output could not be decoded");
            error = SQL_ERROR_QUERY;
        } else {
            t->conn = conn;
            error = sql_sqlite_errors[code];
        }
    }
    if (error == sql_sqlite_locked) {
        unsigned pause = sql_sqlite_backoff(&t->retry_ms);
        if (t->mode == SQL_SQLITE_BEGIN && t->user && !t->abandoned &&
            sql_sqlite_left_ms(t->started_us, sql_sqlite_settings->query_timeout_ms) > pause + SQL_SQLITE_LAST_TRY_MS) {
            t->inflight = true; /* still beginning: another writer holds the lock */
            async_op_then(async_sleep(t->own, pause), sql_sqlite_txn_begin_again, t);
            return;
        }
        error = SQL_ERROR_CONFLICT; /* another writer's lock; busy stays the queue's (below) */
    }
    if (t->user) {
        sql_sqlite_count(1, t->started_us, error);
        async_op *user = t->user;
        async_scope *scope = t->user_scope;
        t->user = NULL;
        t->user_scope = NULL;
        async_future_on_cancel(user, NULL, NULL);
        sql_result *result = NULL;
        if (!error && t->has_result) {
            result = async_scope_alloc(scope, sizeof(*result));
            if (!sql_sqlite_decode(scope, &r, 1, result))
                error = SQL_ERROR_QUERY;
        }
        if (error)
            async_fail(user, error);
        else
            async_resolve(user, result);
    }
    if (!out && error == SQL_ERROR_BUSY && t->abandoned && t->conn) {
        /* The rollback found the queue full: the connection must not stay in a transaction. */
        async_op_then(async_sleep(t->own, 10), sql_sqlite_txn_retry, t);
        return;
    }
    sql_sqlite_txn_settle(t);
}

/* Submits one job of the transaction (in its own scope); `user` is the caller's future or NULL. */
static void sql_sqlite_txn_job(sql_sqlite_txn *t, sql_sqlite_mode mode, const sql_stmt *stmt, async_op *user,
                               async_scope *user_scope)
{
    const sql_settings *s = sql_sqlite_settings;
    t->inflight = true;
    t->user = user;
    t->user_scope = user_scope;
    t->has_result = mode == SQL_SQLITE_STMT;
    t->mode = mode;
    uint64_t now = sql__now_us();
    if (mode != SQL_SQLITE_BEGIN || !t->retry_ms)
        t->started_us = now;
    if (user)
        async_future_on_cancel(user, sql_sqlite_txn_user_gone, t);
    uint64_t deadline = t->started_us + (uint64_t)s->query_timeout_ms * 1000u;
    size_t in_len, out_cap;
    unsigned char *in = sql_sqlite_encode(mode, t->conn, deadline, stmt, stmt ? 1 : 0, &in_len, &out_cap);
    async_op *job = pool_submit(t->own, sql_sqlite_pool, sql_sqlite_work, in, in_len, out_cap);
    free(in);
    async_op_then(job, sql_sqlite_txn_done, t);
}

/* Nothing in flight and the handle done: roll back what is open, or free everything. */
static void sql_sqlite_txn_settle(sql_sqlite_txn *t)
{
    if (t->inflight || !t->abandoned)
        return;
    if (t->conn) {
        sql_sqlite_txn_job(t, SQL_SQLITE_ROLLBACK, NULL, NULL, NULL);
        return;
    }
    async_scope_free(t->own); /* may be one of its own continuations: the scope allows that */
    free(t);
}

/* A future in the caller's scope that already failed (the scope is ending, or nothing to run on). */
static async_op *sql_sqlite_failed(async_scope *scope, const char *error)
{
    async_op *op = async_future(scope);
    async_fail(op, error);
    return op;
}

static async_op *sql_sqlite_txn_begin(sql_txn *tx)
{
    async_op *user = async_future(tx->scope);
    if (user->status != ASYNC_PENDING)
        return user;
    async_post_fn post;
    void *target;
    async_scope_poster(tx->scope, &post, &target);
    sql_sqlite_txn *t = xcalloc(1, sizeof(*t));
    t->own = async_scope_new(async_scope_base(tx->scope));
    async_scope_set_poster(t->own, post, target);
    tx->impl = t;
    sql_sqlite_txn_job(t, SQL_SQLITE_BEGIN, NULL, user, tx->scope);
    return user;
}

static async_op *sql_sqlite_txn_query(sql_txn *tx, const sql_stmt *stmt)
{
    sql_sqlite_txn *t = tx->impl;
    if (!t || !t->conn)
        return sql_sqlite_failed(tx->scope, SQL_ERROR_CONNECTION_LOST);
    async_op *user = async_future(tx->scope);
    if (user->status == ASYNC_PENDING)
        sql_sqlite_txn_job(t, SQL_SQLITE_STMT, stmt, user, tx->scope);
    return user;
}

static async_op *sql_sqlite_txn_end(sql_txn *tx, bool commit)
{
    sql_sqlite_txn *t = tx->impl;
    if (!t || !t->conn)
        return sql_sqlite_failed(tx->scope, SQL_ERROR_CONNECTION_LOST);
    async_op *user = async_future(tx->scope);
    if (user->status == ASYNC_PENDING)
        sql_sqlite_txn_job(t, commit ? SQL_SQLITE_COMMIT : SQL_SQLITE_ROLLBACK, NULL, user, tx->scope);
    return user;
}

static void sql_sqlite_txn_abandon(void *impl)
{
    sql_sqlite_txn *t = impl;
    t->abandoned = true;
    sql_sqlite_txn_settle(t);
}

/* ---- start and stop ---------------------------------------------------------------------------- */

static int sql_sqlite_start(const sql_settings *s)
{
    char why[512];
    sqlite3 *db = sql_sqlite_open(s, why, sizeof(why));
    if (!db) {
        log_error("sql: cannot open the SQLite database %s: %s", s->path, why);
        return -1;
    }
    /* A file that opens may still be read-only: a write that changes nothing tells now, not later. */
    char *err = NULL;
    if (sqlite3_exec(db, "BEGIN IMMEDIATE; COMMIT", NULL, NULL, &err) != SQLITE_OK) {
        log_error("sql: the SQLite database %s cannot be written: %s", s->path, err ? err : "error");
        sqlite3_free(err);
        sqlite3_close(db);
        return -1;
    }
    sqlite3_close(db);
    sql_sqlite_settings = s;
    /* Not niced, unlike the CPU workers: database calls are short and a request waits for each. */
    sql_sqlite_pool = pool_new_named(s->threads ? s->threads : 1, s->max_waiting ? s->max_waiting : 1, 0,
                                     "apiary-sqlite");
    if (!sql_sqlite_pool) {
        sql_sqlite_settings = NULL;
        return -1;
    }
    log_info("sql: SQLite database %s ready (WAL, %u thread%s of its own)", s->path, s->threads,
             s->threads == 1 ? "" : "s");
    return 0;
}

static void sql_sqlite_shutdown(void)
{
    if (sql_sqlite_pool)
        pool_shutdown(sql_sqlite_pool);
}

static void sql_sqlite_stop(void)
{
    if (sql_sqlite_pool) {
        pool_shutdown(sql_sqlite_pool);
        pool_free(sql_sqlite_pool);
        sql_sqlite_pool = NULL;
    }
    pthread_mutex_lock(&sql_sqlite_lock);
    sql_sqlite_conn *c = sql_sqlite_free_list;
    sql_sqlite_free_list = NULL;
    pthread_mutex_unlock(&sql_sqlite_lock);
    while (c) {
        sql_sqlite_conn *next = c->next_free;
        sql_sqlite_conn_free(c);
        c = next;
    }
    sql_sqlite_settings = NULL;
}

bool sql__jobs_left(void)
{
    if (!sql_sqlite_pool)
        return false;
    pool_stats st;
    pool_stats_read(sql_sqlite_pool, &st);
    return st.queued + st.running > 0;
}

static bool sql_sqlite_ready(http_loop *loop)
{
    (void)loop;
    return sql_sqlite_settings != NULL;
}

const sql_backend sql_sqlite_backend = {
    .name = "sqlite",
    .start = sql_sqlite_start,
    .shutdown = sql_sqlite_shutdown,
    .stop = sql_sqlite_stop,
    .many = sql_sqlite_many,
    .batch = sql_sqlite_batch,
    .ready = sql_sqlite_ready,
    .txn_begin = sql_sqlite_txn_begin,
    .txn_query = sql_sqlite_txn_query,
    .txn_end = sql_sqlite_txn_end,
    .txn_abandon = sql_sqlite_txn_abandon,
};
