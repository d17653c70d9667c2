/* sql_task: the task layer shared by the backends on the loops (sql_mariadb.c, sql_postgres.c); see
 * sql_task_internal.h for what it holds and docs/sql.md for the rules it keeps.
 *
 * Who owns what. The line owns its tasks: a task holds copies of its SQL text and parameters and builds
 * its rows in heap memory (sql_rows), copied into the caller's scope only when it completes. The
 * caller's operation is a future whose cancel hook disowns the task: a waiting task leaves the line and
 * is freed at once; one that runs finishes on its connection and its result is discarded ("finish and
 * discard"), so a connection is never left in the middle of the protocol.
 *
 * Deadlines. Every task of a line has the same timeout (sql.query_timeout_ms from submission), so the
 * list of live tasks in submission order is also the list in deadline order, and one timer per line
 * does the work of one timer per task: it is armed at the oldest live task's deadline when nothing is
 * armed, and when it fires it fails every task whose deadline has passed (a waiting one "timeout"; a
 * running one through the backend's expire, which closes its connection) and arms itself again at the
 * deadline of the oldest left. A task that completes in time costs no timer operation at all: it just
 * leaves the list, and the timer, if the task was the oldest, fires early once and is re-armed. So
 * under a steady load the line touches libevent's timer heap about once per timeout period, not twice
 * per statement (evtimer_add, then event_del), and a deadline still fires at its time, never earlier
 * (libevent's common timeout queues, the alternative, still need an event_add and an event_del per
 * statement, and a struct event in every task). */
#include "sql_task_internal.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "xalloc_internal.h"

/* ---- deadlines ------------------------------------------------------------------------------------ */

static void sql_task_arm(sql_task_line *line)
{
    if (!line->oldest)
        return;
    uint64_t now = sql__now_us(), due = line->oldest->deadline_us;
    uint64_t us = due > now ? due - now : 0;
    struct timeval tv = {(time_t)(us / 1000000u), (suseconds_t)(us % 1000000u)};
    evtimer_add(line->sweep, &tv);
    line->sweep_armed = true;
}

static void sql_task_unlist(sql_task *t)
{
    sql_task_line *line = t->line;
    if (t->older)
        t->older->newer = t->newer;
    else if (line->oldest == t)
        line->oldest = t->newer;
    if (t->newer)
        t->newer->older = t->older;
    else if (line->newest == t)
        line->newest = t->older;
    t->older = t->newer = NULL;
}

static void sql_task_on_sweep(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sql_task_line *line = arg;
    line->sweep_armed = false; /* a one-shot timer: it fired */
    uint64_t now = sql__now_us();
    bool expired = false;
    sql_task *t;
    /* Oldest first; each pass ends the oldest task, and may end others (a PostgreSQL connection that
     * closes fails what it had in flight), so the list is read afresh every time. */
    while ((t = line->oldest) && t->deadline_us <= now) {
        expired = true;
        if (!t->conn) {
            sql_task_finish(t, SQL_ERROR_TIMEOUT); /* still waiting for a connection, or a pending step */
            continue;
        }
        line->ops->expire(t);
        if (line->oldest == t) {
            log_error("sql: loop %u: a statement past its deadline was not ended by its backend", line->id);
            sql_task_unlist(t);
        }
    }
    if (expired)
        line->ops->dispatch(line); /* connections closed, a transaction's rollback may be due */
    if (!line->sweep_armed)
        sql_task_arm(line);
}

/* ---- the line -------------------------------------------------------------------------------------- */

void sql_task_line_init(sql_task_line *line, struct event_base *base, const sql_settings *s, const sql_task_ops *ops,
                        unsigned id, event_callback_fn on_retry, void *retry_arg)
{
    memset(line, 0, sizeof(*line));
    line->base = base;
    line->s = s;
    line->ops = ops;
    line->id = id;
    line->sweep = evtimer_new(base, sql_task_on_sweep, line);
    line->retry = evtimer_new(base, on_retry, retry_arg);
    line->rand_state = (unsigned)time(NULL) ^ (id * 2654435761u);
}

void sql_task_line_free(sql_task_line *line)
{
    line->freeing = true;
    while (line->oldest) /* nothing should be left (the backend finished its tasks); never leak one */
        sql_task_finish(line->oldest, SQL_ERROR_UNAVAILABLE);
    while (line->spares) {
        sql_task *t = line->spares;
        line->spares = t->fnext;
        free(t);
    }
    line->nspares = 0;
    event_free(line->sweep);
    event_free(line->retry);
    line->sweep = line->retry = NULL;
}

/* ---- tasks ------------------------------------------------------------------------------------------ */

void sql_task_unwait(sql_task *t)
{
    sql_task_line *line = t->line;
    if (!t->waiting)
        return;
    if (t->prev)
        t->prev->next = t->next;
    else
        line->head = t->next;
    if (t->next)
        t->next->prev = t->prev;
    else
        line->tail = t->prev;
    t->prev = t->next = NULL;
    t->waiting = false;
    line->waiting--;
    sql__gauge_add(SQL_GAUGE_WAITING, -1);
}

static void sql_task_free(sql_task *t)
{
    sql_task_unwait(t);
    sql_task_unlist(t);
    if (t->txn && t->txn->task == t)
        t->txn->task = NULL;
    if (t->txn && t->txn->pending == t)
        t->txn->pending = NULL;
    sql__rows_free(&t->rows);
    sql_task_line *line = t->line;
    if (t->spare_sized && line->nspares < SQL_TASK_SPARES) {
        t->fnext = line->spares;
        line->spares = t;
        line->nspares++;
        return;
    }
    free(t); /* its text and parameters are in the same allocation */
}

void sql_task_finish(sql_task *t, const char *error)
{
    sql_task_txn *txn = t->txn;
    sql_task_line *line = t->line;
    sql__count_query(error, sql__now_us() - t->started_us);
    if (t->op) {
        async_future_on_cancel(t->op, NULL, NULL);
        if (error) {
            async_fail(t->op, error);
        } else {
            sql_result *r = async_scope_alloc(t->scope, sizeof(*r));
            sql__rows_copy(t->scope, &t->rows, r);
            async_resolve(t->op, r);
        }
    } else if (t->kind == SQL_TASK_PLAIN || t->kind == SQL_TASK_IN_TXN) {
        sql__count_discarded();
    }
    sql_task_free(t);
    if (txn && sql_task_txn_settle(txn) && line->ops->dispatch_after_settle)
        line->ops->dispatch(line);
}

void sql_task_fail_waiting(sql_task_line *line, const char *error)
{
    while (line->head)
        sql_task_finish(line->head, error);
}

/* The owner's scope ended or it stopped waiting: see the top of the file. */
static void sql_task_on_cancel(async_op *op, void *arg)
{
    (void)op;
    sql_task *t = arg;
    t->op = NULL;
    t->scope = NULL;
    if (t->waiting) {
        sql__count_discarded();
        sql_task_free(t);
    }
}

/* A SELECT, by its first word (after blanks and opening parentheses): the one kind of statement that
 * never waits for a commit. Anything else is taken for one that writes, which costs it nothing but the
 * pipelining of other statements behind it. */
static bool sql_task_is_select(const char *sql)
{
    while (*sql == ' ' || *sql == '\t' || *sql == '\n' || *sql == '\r' || *sql == '(')
        sql++;
    if (strncasecmp(sql, "select", 6) != 0)
        return false;
    char next = sql[6];
    return !((next >= 'a' && next <= 'z') || (next >= 'A' && next <= 'Z') || (next >= '0' && next <= '9') ||
             next == '_');
}

sql_task *sql_task_new(sql_task_line *line, async_op *op, async_scope *scope, const sql_stmt *stmt, sql_task_kind kind,
                       sql_task_txn *txn)
{
    uint64_t now = sql__now_us();
    /* One allocation: the task, its parameters (their texts behind them) and its SQL text. */
    size_t sql_len = strlen(stmt->sql), text = 0;
    for (size_t i = 0; i < stmt->nparams; i++)
        if (stmt->params[i].type == SQL_TEXT)
            text += stmt->params[i].len;
    size_t size = sizeof(sql_task) + stmt->nparams * sizeof(sql_value) + text + sql_len + 1;
    sql_task *t;
    if (size <= SQL_TASK_SPARE_BYTES && line->spares) {
        t = line->spares;
        line->spares = t->fnext;
        line->nspares--;
    } else {
        t = xmalloc(size <= SQL_TASK_SPARE_BYTES ? SQL_TASK_SPARE_BYTES : size);
    }
    memset(t, 0, sizeof(*t));
    t->spare_sized = size <= SQL_TASK_SPARE_BYTES;
    t->kind = kind;
    t->writes = !sql_task_is_select(stmt->sql);
    t->txn = txn;
    t->line = line;
    t->op = op;
    t->scope = scope;
    t->started_us = now;
    t->deadline_us = now + (uint64_t)line->s->query_timeout_ms * 1000u;
    t->max_bytes = stmt->max_result_bytes ? stmt->max_result_bytes : SQL_RESULT_DEFAULT_BYTES;
    t->nparams = stmt->nparams;
    t->params = (sql_value *)(t + 1);
    char *buf = (char *)(t->params + stmt->nparams);
    if (stmt->nparams) {
        for (size_t i = 0; i < stmt->nparams; i++) {
            t->params[i] = stmt->params[i];
            if (stmt->params[i].type == SQL_TEXT) {
                if (stmt->params[i].len)
                    memcpy(buf, stmt->params[i].s, stmt->params[i].len);
                t->params[i].s = buf;
                buf += stmt->params[i].len;
            }
        }
    }
    t->sql_len = sql_len;
    t->sql = buf;
    memcpy(t->sql, stmt->sql, sql_len + 1);
    /* Newest last: its deadline is the latest, so the list stays in deadline order. */
    t->older = line->newest;
    if (line->newest)
        line->newest->newer = t;
    else
        line->oldest = t;
    line->newest = t;
    if (!line->sweep_armed)
        sql_task_arm(line);
    if (op)
        async_future_on_cancel(op, sql_task_on_cancel, t);
    return t;
}

async_op *sql_task_submit(async_scope *scope, sql_task_line *line, const sql_stmt *stmt, sql_task_kind kind,
                          sql_task_txn *txn)
{
    async_op *op = async_future(scope);
    if (op->status != ASYNC_PENDING)
        return op; /* the scope is ending */
    const char *refuse = NULL;
    bool in_txn = kind == SQL_TASK_IN_TXN || kind == SQL_TASK_END;
    if (in_txn && (!txn->conn || !txn->open))
        refuse = SQL_ERROR_CONNECTION_LOST; /* closed under the transaction (the server rolled it back) */
    else if (in_txn)
        refuse = NULL;
    else if (!line->ops->available(line))
        refuse = SQL_ERROR_UNAVAILABLE;
    else if (line->waiting >= line->s->max_waiting)
        refuse = SQL_ERROR_BUSY;
    if (refuse) {
        sql__count_query(refuse, 0);
        async_fail(op, refuse);
        return op;
    }
    sql_task *t = sql_task_new(line, op, scope, stmt, kind, txn);
    if (kind == SQL_TASK_PLAIN && line->group) {
        t->group = line->group;
        t->group_left = line->group_left;
    }
    if (in_txn) {
        txn->pending = t;
        line->ops->dispatch(line);
        return op;
    }
    if (txn)
        txn->task = t;
    t->waiting = true;
    t->prev = line->tail;
    if (line->tail)
        line->tail->next = t;
    else
        line->head = t;
    line->tail = t;
    line->waiting++;
    sql__gauge_add(SQL_GAUGE_WAITING, 1);
    if (!t->group)
        line->ops->dispatch(line);
    return op;
}

/* ---- sql_query_many ----------------------------------------------------------------------------- */

typedef struct sql_task_gather {
    async_scope *scope;
    async_op *future;
    async_op *gather;
    size_t n;
} sql_task_gather;

static void sql_task_many_done(async_op *gather, void *arg)
{
    sql_task_gather *b = arg;
    if (gather->status != ASYNC_OK) {
        async_fail(b->future, gather->error ? gather->error : SQL_ERROR_UNAVAILABLE);
        return;
    }
    sql_result *results = async_scope_alloc(b->scope, b->n * sizeof(*results));
    for (size_t i = 0; i < b->n; i++)
        results[i] = *(const sql_result *)async_gather_child(gather, i)->value;
    sql_batch_result *out = async_scope_alloc(b->scope, sizeof(*out));
    out->count = b->n;
    out->results = results;
    async_resolve(b->future, out);
}

static void sql_task_many_cancel(async_op *future, void *arg)
{
    (void)future;
    sql_task_gather *b = arg;
    async_op_cancel(b->gather);
}

async_op *sql_task_many(async_scope *scope, sql_task_line *line, const sql_stmt *stmts, size_t n, bool single)
{
    if (single)
        return sql_task_submit(scope, line, &stmts[0], SQL_TASK_PLAIN, NULL);
    sql_task_gather *b = async_scope_alloc(scope, sizeof(*b));
    b->scope = scope;
    b->n = n;
    b->future = async_future(scope);
    async_op **ops = async_scope_alloc(scope, n * sizeof(*ops));
    if (line->ops->group_many) {
        /* Queued one after the other as one group, then dispatched once: nothing else can come
         * between them in the line, and the backend sees the whole group at once. */
        line->group = ++line->last_group ? line->last_group : ++line->last_group;
    }
    for (size_t i = 0; i < n; i++) {
        line->group_left = (unsigned)(n - i);
        ops[i] = sql_task_submit(scope, line, &stmts[i], SQL_TASK_PLAIN, NULL);
    }
    if (line->group) {
        line->group = 0;
        line->ops->dispatch(line);
    }
    b->gather = async_gather(scope, ops, n, ASYNC_GATHER_FAIL_FAST);
    async_future_on_cancel(b->future, sql_task_many_cancel, b);
    async_op_then(b->gather, sql_task_many_done, b);
    return b->future;
}

/* ---- transactions ----------------------------------------------------------------------------------- */

bool sql_task_txn_settle(sql_task_txn *x)
{
    if (!x->abandoned || x->task || x->pending)
        return false;
    if (x->open && x->conn) {
        static const sql_stmt rollback = {"ROLLBACK", NULL, 0, 0};
        x->pending = sql_task_new(x->line, NULL, NULL, &rollback, SQL_TASK_END, x);
        return true;
    }
    if (x->conn && x->line->ops->txn_release)
        x->line->ops->txn_release(x);
    free(x);
    return false;
}

async_op *sql_task_txn_begin(sql_txn *tx, sql_task_line *line)
{
    sql_task_txn *x = xcalloc(1, sizeof(*x));
    x->line = line;
    tx->impl = x;
    const sql_stmt begin = {line->ops->begin_sql, NULL, 0, 0};
    return sql_task_submit(tx->scope, line, &begin, SQL_TASK_BEGIN, x);
}

async_op *sql_task_txn_query(sql_txn *tx, const sql_stmt *stmt)
{
    sql_task_txn *x = tx->impl;
    return sql_task_submit(tx->scope, x->line, stmt, SQL_TASK_IN_TXN, x);
}

async_op *sql_task_txn_end(sql_txn *tx, bool commit)
{
    sql_task_txn *x = tx->impl;
    static const sql_stmt stmts[2] = {{"ROLLBACK", NULL, 0, 0}, {"COMMIT", NULL, 0, 0}};
    return sql_task_submit(tx->scope, x->line, &stmts[commit], SQL_TASK_END, x);
}

void sql_task_txn_abandon(void *impl)
{
    sql_task_txn *x = impl;
    sql_task_line *line = x->line; /* alive while x holds one of its connections */
    x->abandoned = true;
    if (sql_task_txn_settle(x))
        line->ops->dispatch(line);
}

/* ---- connect backoff ------------------------------------------------------------------------------ */

#define SQL_TASK_BACKOFF_BASE_MS 100u
#define SQL_TASK_BACKOFF_MAX_MS 2000u

void sql_task_backoff(sql_task_line *line)
{
    unsigned shift = line->failures > 0 ? (line->failures - 1 < 5 ? line->failures - 1 : 5) : 0;
    uint64_t delay = (uint64_t)SQL_TASK_BACKOFF_BASE_MS << shift;
    if (delay > SQL_TASK_BACKOFF_MAX_MS)
        delay = SQL_TASK_BACKOFF_MAX_MS;
    delay = delay * (80 + (uint64_t)(rand_r(&line->rand_state) % 41)) / 100;
    struct timeval tv = {(time_t)(delay / 1000), (suseconds_t)(delay % 1000) * 1000};
    line->backoff = true;
    evtimer_add(line->retry, &tv);
}

void sql_task_backoff_reset(sql_task_line *line)
{
    line->outage_logged = false;
    line->failures = 0;
    line->backoff = false;
    evtimer_del(line->retry);
}
