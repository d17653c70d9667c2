/* sql_task_internal: the "SQL task" layer the two backends on the loops share (sql_mariadb.c and
 * sql_postgres.c; lib/clients/sql_task.c): a statement as a task with its own copy of the text and
 * parameters, the bounded FIFO of tasks waiting for a connection (503 "busy" beyond sql.max_waiting),
 * the deadline of every task (sql.query_timeout_ms from submission, then 504), "finish and discard"
 * for a task whose request went away, the bookkeeping of a transaction that pins a connection, the
 * connect backoff, and sql_query_many as a gather. What differs per backend (running a task on a
 * connection, closing one) is behind sql_task_ops. Not for handlers: they use sql.h. */
#ifndef APIARY_SQL_TASK_INTERNAL_H
#define APIARY_SQL_TASK_INTERNAL_H

#include <event2/event.h>

#include "sql_internal.h"

typedef struct sql_task sql_task;
typedef struct sql_task_line sql_task_line;
typedef struct sql_task_txn sql_task_txn;

/* What a task is: a statement on its own, or a step of a transaction. */
typedef enum sql_task_kind { SQL_TASK_PLAIN, SQL_TASK_BEGIN, SQL_TASK_IN_TXN, SQL_TASK_END } sql_task_kind;

/* One statement. Owned by its line from sql_task_submit until sql_task_finish (or the owner's cancel
 * while it waits) frees it; the backend holds it (conn) while it runs, and must finish it. */
struct sql_task {
    sql_task_line *line;
    sql_task *prev, *next; /* the line's FIFO of waiting tasks */
    bool waiting;
    sql_task *older, *newer; /* every live task in submission order: the deadline order */
    uint64_t deadline_us;    /* sql__now_us() at submission + sql.query_timeout_ms */
    async_op *op;            /* NULL once disowned (the result is discarded), or for a rollback
                              * nobody waits for */
    async_scope *scope;      /* op's scope, valid while op is set */
    char *sql;
    size_t sql_len;
    sql_value *params; /* TEXT values point into the same allocation */
    size_t nparams;
    size_t max_bytes; /* the statement's result bound */
    sql_rows rows;
    const char *error; /* set when a step failed; reported when the statement is over */
    void *conn;        /* the backend's connection while the task runs (is sent), else NULL */
    uint64_t started_us;
    sql_task_kind kind;
    bool writes;       /* not a SELECT (sql_task_new, by its first word): autocommitted, so its answer
                        * waits for a durable commit or for locks another transaction holds, and so
                        * would every statement pipelined behind it; the backends put none there */
    sql_task_txn *txn; /* the transaction it is a step of (kind != PLAIN) */
    unsigned group;      /* nonzero: one of the statements of a sql_query_many (ops->group_many), which
                          * wait in the line one after the other */
    unsigned group_left; /* of its group, how many from this one on were queued (itself included) */
    /* the backend's own: PostgreSQL's FIFO of a connection's sent tasks and the result awaited next */
    sql_task *fnext;
    int stage;
    bool spare_sized; /* allocated SQL_TASK_SPARE_BYTES long: goes back to the line's spares when freed */
};

/* Tasks up to this size (the task, its parameters and its text: a lookup by key is ~500 bytes) are
 * kept, up to SQL_TASK_SPARES per line, for the next ones instead of going back to malloc: with
 * statements of many requests in flight, glibc's per-thread cache (7 chunks a size) ran dry and each
 * task's malloc and free took the slow path. */
#define SQL_TASK_SPARE_BYTES 768u
#define SQL_TASK_SPARES 64u

/* A transaction (sql.h's impl): the connection it holds between its statements, so no other task
 * ever runs there mid-transaction. Owned by the handle until txn_abandon, then by itself: it finishes
 * its task, rolls back when still open (a task nobody waits for), and frees itself. */
struct sql_task_txn {
    sql_task_line *line;
    void *conn;        /* the backend's connection it holds; NULL before, after, or when lost */
    sql_task *task;    /* running, or waiting for a connection (BEGIN) */
    sql_task *pending; /* its next step, to run on conn: picked up by the backend's dispatch */
    bool open;         /* BEGIN succeeded and neither COMMIT nor ROLLBACK ended it */
    bool abandoned;
};

typedef struct sql_task_ops {
    /* Hands waiting tasks (and transactions' pending steps) to connections, opens connections. */
    void (*dispatch)(sql_task_line *line);
    /* t's deadline passed while it runs on t->conn: the backend closes that connection (it is
     * somewhere in the middle of the protocol) and finishes t with SQL_ERROR_TIMEOUT. */
    void (*expire)(sql_task *t);
    /* May new plain tasks be queued (false: they fail "unavailable" at once)? */
    bool (*available)(sql_task_line *line);
    /* x is freed while x->conn is set: drop the connection's reference to it. NULL: nothing to do. */
    void (*txn_release)(sql_task_txn *x);
    /* A rollback was queued for an abandoned transaction when one of its tasks finished: dispatch at
     * once (true), or leave it to the dispatch the backend runs after every completion (false). */
    bool dispatch_after_settle;
    /* sql_query_many queues all its statements (numbered as a group) before it dispatches once, so the
     * backend can send them together (PostgreSQL: back to back on one connection, in one segment). */
    bool group_many;
    const char *begin_sql; /* "START TRANSACTION", "BEGIN" */
} sql_task_ops;

/* One loop's line of tasks and connect backoff; the first member of a backend's pool. */
struct sql_task_line {
    struct event_base *base;
    const sql_settings *s;
    const sql_task_ops *ops;
    unsigned id;           /* the loop's, for the log */
    sql_task *head, *tail; /* waiting for a connection, in order */
    size_t waiting;
    sql_task *oldest, *newest;
    struct event *sweep; /* armed at (or before) the oldest live task's deadline */
    bool sweep_armed;    /* sweep is pending (kept here: evtimer_pending cost a tenth of a task's start) */
    unsigned failures;   /* consecutive failed connects: the backoff exponent */
    bool backoff;        /* a connect failed and its retry is not due yet */
    bool outage_logged;
    struct event *retry; /* the backoff's end */
    unsigned rand_state;
    bool freeing; /* the loop is going: closing its connections is no failure to count */
    unsigned group;      /* sql_task_many is queueing this group (dispatch waits for the whole of it) */
    unsigned group_left; /* statements of it still to be queued */
    unsigned last_group; /* the last group number given */
    sql_task *spares;     /* freed tasks of SQL_TASK_SPARE_BYTES, linked through fnext */
    unsigned nspares;
};

/* Sets the line up on base; on_retry runs when a backoff ends. */
void sql_task_line_init(sql_task_line *line, struct event_base *base, const sql_settings *s, const sql_task_ops *ops,
                        unsigned id, event_callback_fn on_retry, void *retry_arg);
/* Frees the line's events; the backend has finished every task first (sql_task_fail_waiting, then
 * closing its connections). */
void sql_task_line_free(sql_task_line *line);

/* A new task for stmt (copies of its text and parameters), on the deadline list but not in the FIFO.
 * op may be NULL (a rollback nobody waits for). */
sql_task *sql_task_new(sql_task_line *line, async_op *op, async_scope *scope, const sql_stmt *stmt, sql_task_kind kind,
                       sql_task_txn *txn);
/* Takes t out of the FIFO (no-op when it is not waiting). */
void sql_task_unwait(sql_task *t);
/* The statement is over (OK when error is NULL): deliver to the owner, if any (a copy of the rows in
 * its scope), count it, free the task, and settle its transaction. */
void sql_task_finish(sql_task *t, const char *error);
/* Finishes every waiting task with error. */
void sql_task_fail_waiting(sql_task_line *line, const char *error);

/* Submits one statement or a transaction's step; the future completes with its result. Refused at
 * once: a step of a transaction whose connection is gone (connection_lost), a plain task when the
 * backend is unavailable, or when sql.max_waiting tasks wait already (busy). */
async_op *sql_task_submit(async_scope *scope, sql_task_line *line, const sql_stmt *stmt, sql_task_kind kind,
                          sql_task_txn *txn);
/* sql_backend.many: n statements submitted at once, gathered (fail fast) into a sql_batch_result. */
async_op *sql_task_many(async_scope *scope, sql_task_line *line, const sql_stmt *stmts, size_t n, bool single);

/* sql_backend's transaction calls, on the line's backend. */
async_op *sql_task_txn_begin(sql_txn *tx, sql_task_line *line);
async_op *sql_task_txn_query(sql_txn *tx, const sql_stmt *stmt);
async_op *sql_task_txn_end(sql_txn *tx, bool commit);
void sql_task_txn_abandon(void *impl);
/* After a transaction's task finished or its connection went: rolls back what is open (a pending
 * step nobody waits for) or frees it, once abandoned and nothing is in flight. True when a rollback
 * was queued. */
bool sql_task_txn_settle(sql_task_txn *x);

/* A connect failed: the next attempt waits 100 ms doubling to 2 s (+-20 % jitter). */
void sql_task_backoff(sql_task_line *line);
/* A connect succeeded: the backoff is over. */
void sql_task_backoff_reset(sql_task_line *line);

#endif
