/* sql_sqlite: the SQLite backend of include/apiary/sql.h, the embedded default. SQLite's calls block, so every
 * operation is one job on the worker pool (include/apiary/pool.h, asyncio's run_in_executor practice): the loop
 * encodes the statements and their parameters into the job's input, a worker runs them on its own
 * connection (one per worker thread, opened on first use, closed when the thread exits) and encodes
 * the rows into the job's output, and the loop decodes them into the request's scope.
 *
 * A batch of several statements runs in one job inside one transaction (BEGIN IMMEDIATE when any of
 * them writes, so two writers never deadlock upgrading a read lock), which is both how SQLite is fast
 * and why /v1/queries?queries=500 takes one slot of the pool's queue, not 500.
 *
 * Timeouts. The operation is bounded by sql.query_timeout_ms (async_wait_for around the job); a job
 * whose operation was cancelled or timed out is interrupted by SQLite's progress handler, which polls
 * pool_job_cancelled, and its transaction rolled back. Lock waits are bounded by the busy timeout
 * (the query timeout), after which the statement fails "busy" (503). Files are in WAL mode, so
 * readers never wait for the writer. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "pool.h"
#include "sql_internal.h"
#include "xalloc.h"

/* Prepared statements kept per worker connection, by SQL text (the endpoints use a handful). */
#define SQL_SQLITE_CACHE 32
/* The progress handler runs every this many virtual-machine steps: cheap, and a long query notices a
 * cancellation within well under a millisecond. */
#define SQL_SQLITE_PROGRESS_STEPS 1000

static const sql_settings *sql_sqlite_settings;
static pool *sql_sqlite_pool;
static pthread_key_t sql_sqlite_key;

/* A worker's connection and its statement cache (thread-specific data). */
typedef struct sql_sqlite_conn {
    sqlite3 *db;
    struct {
        char *sql;
        sqlite3_stmt *stmt;
    } cache[SQL_SQLITE_CACHE];
    size_t cached, next_evict;
    const pool_job *job; /* the job running now, for the progress handler */
} sql_sqlite_conn;

static void sql_sqlite_conn_free(void *arg)
{
    sql_sqlite_conn *c = arg;
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
    return c->job && pool_job_cancelled(c->job);
}

/* Opens `path` with the settings every connection shares: WAL, a busy timeout, NORMAL sync (WAL makes
 * that durable across a process crash; an OS crash may lose the last transactions). */
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
    return db;
}

static sql_sqlite_conn *sql_sqlite_conn_get(void)
{
    sql_sqlite_conn *c = pthread_getspecific(sql_sqlite_key);
    if (c)
        return c;
    char why[256];
    sqlite3 *db = sql_sqlite_open(sql_sqlite_settings, why, sizeof(why));
    if (!db) {
        log_warn("sql: sqlite: cannot open %s: %s", sql_sqlite_settings->path, why);
        return NULL;
    }
    c = xcalloc(1, sizeof(*c));
    c->db = db;
    sqlite3_progress_handler(db, SQL_SQLITE_PROGRESS_STEPS, sql_sqlite_progress, c);
    pthread_setspecific(sql_sqlite_key, c);
    return c;
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

static const char *sql_sqlite_error(sql_sqlite_conn *c, int rc, const char *what)
{
    int primary = rc & 0xff;
    if (primary == SQLITE_INTERRUPT)
        return SQL_ERROR_TIMEOUT;
    if (primary == SQLITE_TOOBIG)
        return SQL_ERROR_TOO_LARGE; /* a value past the statement's bound (sql_sqlite_run) */
    if (primary == SQLITE_BUSY || primary == SQLITE_LOCKED) {
        log_warn("sql: sqlite: %s: database is locked beyond the busy timeout", what);
        return SQL_ERROR_BUSY;
    }
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

static const char *sql_sqlite_work(pool_job *job, const void *input, size_t input_len, void *output,
                                   size_t output_cap, size_t *output_len)
{
    sql_sqlite_conn *c = sql_sqlite_conn_get();
    if (!c)
        return SQL_ERROR_UNAVAILABLE;
    c->job = job;
    sql_rbuf in = {input, input_len, 0, false};
    sql_wbuf w = {output, 0, output_cap, false};
    uint32_t n = 0;
    SQL_GET(&in, n);
    const char *error = NULL;
    bool txn = false;
    if (n > 1) {
        /* First pass: prepare everything, to know whether the transaction writes. */
        bool writes = false;
        size_t pos = in.pos;
        for (uint32_t k = 0; k < n && !error; k++) {
            uint32_t sql_len = 0, nparams = 0;
            uint64_t max_bytes = 0;
            SQL_GET(&in, sql_len);
            const char *sql = sql_get(&in, sql_len);
            SQL_GET(&in, max_bytes);
            SQL_GET(&in, nparams);
            for (uint32_t i = 0; i < nparams && !in.bad; i++) {
                sql_value v;
                sql_get_value(&in, &v);
            }
            sqlite3_stmt *stmt = sql && !in.bad ? sql_sqlite_prepare(c, sql, sql_len) : NULL;
            if (!stmt)
                error = in.bad ? SQL_ERROR_QUERY : sql_sqlite_error(c, sqlite3_errcode(c->db), "prepare");
            else if (!sqlite3_stmt_readonly(stmt))
                writes = true;
        }
        in.pos = pos;
        if (!error) {
            error = sql_sqlite_exec_plain(c, writes ? "BEGIN IMMEDIATE" : "BEGIN");
            txn = !error;
        }
    }
    for (uint32_t k = 0; k < n && !error; k++) {
        uint32_t sql_len = 0, nparams = 0;
        uint64_t max_bytes = 0;
        SQL_GET(&in, sql_len);
        const char *sql = sql_get(&in, sql_len);
        SQL_GET(&in, max_bytes);
        SQL_GET(&in, nparams);
        sqlite3_stmt *stmt = sql && !in.bad ? sql_sqlite_prepare(c, sql, sql_len) : NULL;
        if (!stmt)
            error = in.bad ? SQL_ERROR_QUERY : sql_sqlite_error(c, sqlite3_errcode(c->db), "prepare");
        else
            error = sql_sqlite_run(c, stmt, &in, nparams, max_bytes, &w);
    }
    if (txn) {
        if (!error)
            error = sql_sqlite_exec_plain(c, "COMMIT");
        if (error)
            sqlite3_exec(c->db, "ROLLBACK", NULL, NULL, NULL);
    }
    c->job = NULL;
    *output_len = w.len;
    return error;
}

/* ---- the loop side --------------------------------------------------------------------------- */

typedef struct sql_sqlite_call {
    async_scope *scope;
    async_op *future; /* what the caller awaits */
    async_op *job;    /* the pool job, inside a wait_for */
    size_t n;
    bool single;
    uint64_t started_us;
} sql_sqlite_call;

static void sql_sqlite_count(const sql_sqlite_call *call, const char *error)
{
    uint64_t elapsed = sql__now_us() - call->started_us;
    for (size_t i = 0; i < call->n; i++)
        sql__count_query(error, elapsed);
}

static void sql_sqlite_done(async_op *op, void *arg)
{
    sql_sqlite_call *call = arg;
    if (op->status != ASYNC_OK) {
        const char *error = op->status == ASYNC_TIMEOUT                                     ? SQL_ERROR_TIMEOUT
                            : op->error == POOL_ERROR_FULL                                  ? SQL_ERROR_BUSY
                            : op->error == SQL_ERROR_QUERY || op->error == SQL_ERROR_BUSY ||
                                      op->error == SQL_ERROR_TOO_LARGE || op->error == SQL_ERROR_TIMEOUT ||
                                      op->error == SQL_ERROR_UNAVAILABLE
                                ? op->error
                                : SQL_ERROR_UNAVAILABLE;
        sql_sqlite_count(call, error);
        async_fail(call->future, error);
        return;
    }
    const pool_result *out = op->value;
    sql_rbuf r = {out->data, out->len, 0, false};
    sql_result *results = async_scope_alloc(call->scope, call->n * sizeof(*results));
    for (size_t k = 0; k < call->n && !r.bad; k++) {
        uint32_t cols = 0, rows = 0;
        uint64_t affected = 0;
        int64_t insert_id = 0;
        SQL_GET(&r, cols);
        SQL_GET(&r, rows);
        SQL_GET(&r, affected);
        SQL_GET(&r, insert_id);
        size_t count = (size_t)cols * rows;
        sql_value *cells = count && !r.bad ? async_scope_alloc(call->scope, count * sizeof(*cells)) : NULL;
        for (size_t i = 0; i < count && !r.bad; i++) {
            sql_get_value(&r, &cells[i]);
            if (cells[i].type == SQL_TEXT && !r.bad) {
                /* NUL-terminated copy: the pool result goes with the scope too, but is not terminated. */
                char *s = async_scope_alloc(call->scope, cells[i].len + 1);
                memcpy(s, cells[i].s, cells[i].len);
                cells[i].s = s;
            }
        }
        results[k] = (sql_result){.rows = rows, .cols = cols, .cells = cells, .affected = affected,
                                  .insert_id = insert_id};
    }
    if (r.bad) {
        log_error("sql: sqlite: a job's output could not be decoded");
        sql_sqlite_count(call, SQL_ERROR_QUERY);
        async_fail(call->future, SQL_ERROR_QUERY);
        return;
    }
    sql_sqlite_count(call, NULL);
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

static size_t sql_value_encoded(const sql_value *v) { return 1 + (v->type == SQL_TEXT ? 4 + v->len : 8); }

static async_op *sql_sqlite_batch(async_scope *scope, http_loop *loop, const sql_stmt *stmts, size_t n, bool single)
{
    (void)loop;
    sql_sqlite_call *call = async_scope_alloc(scope, sizeof(*call));
    call->scope = scope;
    call->future = async_future(scope);
    call->n = n;
    call->single = single;
    call->started_us = sql__now_us();
    if (call->future->status != ASYNC_PENDING)
        return call->future;
    size_t in_len = 4, out_cap = 0;
    for (size_t k = 0; k < n; k++) {
        in_len += 4 + strlen(stmts[k].sql) + 8 + 4;
        for (size_t i = 0; i < stmts[k].nparams; i++)
            in_len += sql_value_encoded(&stmts[k].params[i]);
        size_t max = stmts[k].max_result_bytes ? stmts[k].max_result_bytes : SQL_RESULT_DEFAULT_BYTES;
        /* The header, one row past the limit (the check runs after a row), and the limit itself. */
        out_cap += 24 + 2 * max;
    }
    unsigned char *in = xmalloc(in_len);
    sql_wbuf w = {in, 0, in_len, false};
    uint32_t n32 = (uint32_t)n;
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
    async_op *job = pool_submit(scope, sql_sqlite_pool, sql_sqlite_work, in, w.len, out_cap);
    free(in);
    call->job = async_wait_for(scope, job, sql_sqlite_settings->query_timeout_ms);
    async_future_on_cancel(call->future, sql_sqlite_cancel, call);
    async_op_then(call->job, sql_sqlite_done, call);
    return call->future;
}

/* ---- start and stop ---------------------------------------------------------------------------- */

static int sql_sqlite_start(const sql_settings *s, pool *workers)
{
    char why[512];
    sqlite3 *db = sql_sqlite_open(s, why, sizeof(why));
    if (!db) {
        log_error("sql: cannot open the SQLite database %s: %s", s->path, why);
        return -1;
    }
    for (size_t i = 0; i < SQL_SCHEMA_SQLITE_COUNT; i++) {
        char *err = NULL;
        if (sqlite3_exec(db, SQL_SCHEMA_SQLITE[i], NULL, NULL, &err) != SQLITE_OK) {
            log_error("sql: cannot create the schema in %s: %s", s->path, err ? err : "error");
            sqlite3_free(err);
            sqlite3_close(db);
            return -1;
        }
    }
    sqlite3_close(db);
    if (pthread_key_create(&sql_sqlite_key, sql_sqlite_conn_free) != 0) {
        log_error("sql: no thread-specific key for SQLite connections");
        return -1;
    }
    sql_sqlite_settings = s;
    sql_sqlite_pool = workers;
    log_info("sql: SQLite database %s ready (WAL, one connection per worker)", s->path);
    return 0;
}

static void sql_sqlite_stop(void)
{
    /* The workers closed their connections when they exited (the key's destructor); the key itself
     * goes with the process. */
    sql_sqlite_settings = NULL;
}

static bool sql_sqlite_ready(http_loop *loop)
{
    (void)loop;
    return sql_sqlite_settings != NULL;
}

const sql_backend sql_sqlite_backend = {
    .name = "sqlite",
    .start = sql_sqlite_start,
    .stop = sql_sqlite_stop,
    .batch = sql_sqlite_batch,
    .ready = sql_sqlite_ready,
};
