/* sql_internal: what lib/clients/sql.c shares with its backends (sql_mariadb.c, sql_postgres.c, sql_sqlite.c; the
 * two on the loops share their task layer too: sql_task_internal.h): the
 * backend interface, the counters, the schema statements and a result built in heap memory before it
 * is copied into a scope. Not for handlers: they use sql.h. */
#ifndef APIARY_SQL_INTERNAL_H
#define APIARY_SQL_INTERNAL_H

#include "sql.h"

/* A transaction's handle (sql.h), in the caller's scope memory. The generic part (sql.c) keeps the
 * rules (one call at a time, the first failure ends it, the scope's end abandons it); `impl` is the
 * backend's and lives on the heap: it outlives the scope when a rollback must still run. */
struct sql_txn {
    async_scope *scope;
    http_loop *loop;
    void *impl;
    const char *ended;   /* NULL while open; the error that ended it, or sql__txn_done */
    bool running;        /* a call is in flight */
    bool abandoned;      /* txn_abandon was called (exactly once) */
    async_defer *defer;  /* the scope's end abandons it */
};

extern const char sql__txn_done[]; /* tx->ended after a commit or a rollback */

/* One backend. many runs n statements (n >= 1) independently; `single` asks for a sql_result value
 * instead of a sql_batch_result. batch runs them in order in one transaction (NULL: sql.c chains
 * them through the transaction calls).
 *
 * Transactions: txn_begin sets tx->impl and completes OK once the transaction is open; txn_query and
 * txn_end complete with the statement's result or its error. A failure of any of them means the
 * backend has rolled back (or will, before the connection serves anyone else). txn_abandon is called
 * exactly once, when the handle is done (ended, failed, cancelled or its scope gone): it finishes
 * what is in flight, rolls back what is still open, and frees impl; it must not touch the scope. */
typedef struct sql_backend {
    const char *name; /* "mariadb", "postgres", "sqlite": the label on /metrics */
    int (*start)(const sql_settings *s);
    void (*shutdown)(void);
    void (*stop)(void);
    async_op *(*many)(async_scope *scope, http_loop *loop, const sql_stmt *stmts, size_t n, bool single);
    async_op *(*batch)(async_scope *scope, http_loop *loop, const sql_stmt *stmts, size_t n);
    bool (*ready)(http_loop *loop);
    async_op *(*txn_begin)(sql_txn *tx);
    async_op *(*txn_query)(sql_txn *tx, const sql_stmt *stmt);
    async_op *(*txn_end)(sql_txn *tx, bool commit);
    void (*txn_abandon)(void *impl);
} sql_backend;

extern const sql_backend sql_mariadb_backend;
extern const sql_backend sql_postgres_backend;

/* PostgreSQL numbers its placeholders: `sql` with every `?` outside quotes, quoted identifiers,
 * dollar-quoted strings and comments replaced by $1, $2, ... in order (heap, the caller frees it), and
 * their count in *nparams. A `?` inside any of those stays as it is. */
char *sql__pg_placeholders(const char *sql, size_t *nparams);
extern const sql_backend sql_sqlite_backend;

/* ---- counters ---------------------------------------------------------------------------------- */

typedef enum sql_gauge { SQL_GAUGE_IN_USE, SQL_GAUGE_WAITING, SQL_GAUGE_OPEN } sql_gauge;

/* A statement finished after `elapsed_us`, with error NULL (OK) or one of the SQL_ERROR_* strings. */
void sql__count_query(const char *error, uint64_t elapsed_us);
void sql__count_discarded(void);
void sql__count_connect(bool ok);
void sql__count_closed(void);
void sql__gauge_add(sql_gauge g, int64_t n);
/* Microseconds on the monotonic clock (latency). */
uint64_t sql__now_us(void);
/* True while SQLite's threads have jobs queued or running (a startup loop must outlive them). */
bool sql__jobs_left(void);
/* The error a failed operation reports as one of the SQL_ERROR_* strings (a timeout status too). */
const char *sql__error_of(const async_op *op);

/* ---- results under construction (heap) --------------------------------------------------------- */

/* Cells a result keeps inside its sql_rows before it takes heap memory: a one-row result of a few
 * columns (a lookup by key, the usual statement) then costs no allocation of its own. */
#define SQL_ROWS_INLINE 4

/* Rows appended one cell at a time; TEXT bytes go to one growing buffer. Owned by whoever built it
 * (a task of either backend), freed with sql__rows_free; copied into a scope with sql__rows_copy.
 * `bytes` is what the limit (max_result_bytes) is checked against. */
typedef struct sql_rows {
    size_t rows, cols;
    sql_value *cells; /* inline_cells, or the heap once more are needed; never copy a sql_rows */
    size_t cell_count, cell_cap;
    sql_value inline_cells[SQL_ROWS_INLINE];
    char *text;
    size_t text_len, text_cap;
    size_t bytes;
    uint64_t affected;
    int64_t insert_id;
} sql_rows;

void sql__rows_add(sql_rows *r, const sql_value *v);
void sql__rows_free(sql_rows *r);
/* Fills `out` with a copy of r in scope memory. */
void sql__rows_copy(async_scope *scope, const sql_rows *r, sql_result *out);

#endif
