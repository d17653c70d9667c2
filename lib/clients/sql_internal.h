/* sql_internal: what lib/clients/sql.c shares with its two backends (sql_mariadb.c, sql_sqlite.c): the
 * backend interface, the counters, the schema statements and a result built in heap memory before it
 * is copied into a scope. Not for handlers: they use sql.h. */
#ifndef APIARY_SQL_INTERNAL_H
#define APIARY_SQL_INTERNAL_H

#include "sql.h"

/* One backend. batch runs n statements (n >= 1); `single` asks for a sql_result value instead of a
 * sql_batch_result. */
typedef struct sql_backend {
    const char *name; /* "mariadb", "sqlite": the label on /metrics */
    int (*start)(const sql_settings *s, pool *workers);
    void (*stop)(void);
    async_op *(*batch)(async_scope *scope, http_loop *loop, const sql_stmt *stmts, size_t n, bool single);
    bool (*ready)(http_loop *loop);
} sql_backend;

extern const sql_backend sql_mariadb_backend;
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

/* ---- schema ------------------------------------------------------------------------------------ */

/* Statements without parameters, run in order at start by each backend. */
extern const char *const SQL_SCHEMA_MARIADB[];
extern const size_t SQL_SCHEMA_MARIADB_COUNT;
extern const char *const SQL_SCHEMA_SQLITE[];
extern const size_t SQL_SCHEMA_SQLITE_COUNT;

/* ---- results under construction (heap) --------------------------------------------------------- */

/* Rows appended one cell at a time; TEXT bytes go to one growing buffer. Owned by whoever built it
 * (a MariaDB connection's current task), freed with sql__rows_free; copied into a scope with
 * sql__rows_copy. `bytes` is what the limit (max_result_bytes) is checked against. */
typedef struct sql_rows {
    size_t rows, cols;
    sql_value *cells;
    size_t cell_count, cell_cap;
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
