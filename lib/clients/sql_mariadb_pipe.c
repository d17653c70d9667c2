/* sql_mariadb_pipe: pipelined executes for the MariaDB backend (sql_mariadb.c). Connector/C sends a
 * command and then reads its whole answer before it will send the next, and has no call that only
 * reads an answer; one statement per connection at a time cost MariaDB a wake-up, a poll and three
 * recvs per statement (bench/maria_pipeline_probe.c). So on a plaintext connection apiary writes the
 * COM_STMT_EXECUTE packets of statements Connector/C has prepared there itself, up to
 * sql.pipeline_depth in flight, several in one send, and reads their answers in order from its own
 * buffer (sql_mariadb_wire.c). Each is still its own command, autocommitted on its own. Connector/C is
 * idle meanwhile: the connection returns to it (a prepare, a transaction) only once every answer is
 * read, so its buffers and sequence numbers never see the pipelined bytes. */
#include <errno.h>
#include <mysqld_error.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "log.h"
#include "sql_mariadb_internal.h"
#include "xalloc_internal.h"

/* The largest packet read for a task (as sql_my_bound_packets caps Connector/C's). */
static size_t sql_my_packet_cap(const sql_task *t)
{
    size_t cap = t->max_bytes + SQL_MY_PACKET_SLACK;
    return cap < SQL_MY_PACKET_MIN ? SQL_MY_PACKET_MIN : cap;
}

/* Can t be pipelined at all: a plain statement (a transaction's steps keep their connection's
 * Connector/C path), every packet within one protocol packet. */
static bool sql_my_pipelinable(const sql_my_pool *p, const sql_task *t)
{
    return t->kind == SQL_TASK_PLAIN && p->line.s->pipeline_depth > 1 && sql_my_packet_cap(t) < 0xffffffu &&
           sql_my_wire_execute_size(t->params, t->nparams) != 0;
}

/* The answer of the connection's first statement in flight is read next. */
static void sql_my_pipe_begin(sql_my_conn *c)
{
    sql_task *t = c->fhead;
    if (!t)
        return;
    t->rows.cols = 0;
    sql_my_answer_begin(&c->ans, c->cache[t->stage].cols, c->cache[t->stage].ncols, sql_my_packet_cap(t),
                        t->max_bytes, false /* Connector/C 3.3 never asks for CLIENT_DEPRECATE_EOF */, &t->rows);
}

/* Queues t's execute on c (cache entry e) and puts it in flight; sent by sql_my_pipe_flush. */
void sql_my_pipe_send(sql_my_conn *c, sql_task *t, int e)
{
    sql_my_pool *p = c->pool;
    if (c->cache[e].nparams != t->nparams) {
        log_warn("sql: loop %u: the statement \"%s\" takes %zu parameter(s) and was given %zu; not run", p->line.id,
                 t->sql, c->cache[e].nparams, t->nparams);
        sql_task_finish(t, SQL_ERROR_QUERY);
        return;
    }
    size_t size = sql_my_wire_execute_size(t->params, t->nparams);
    if (c->out_len + size > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 1024;
        while (cap < c->out_len + size)
            cap *= 2;
        c->out = xrealloc(c->out, cap);
        c->out_cap = cap;
    }
    sql_my_wire_execute(c->out + c->out_len, c->cache[e].stmt_id, t->params, t->nparams);
    c->out_len += size;
    if (!c->dirty) {
        c->dirty = true;
        p->flush[p->nflush++] = c;
    }
    t->conn = c;
    t->stage = e;
    t->fnext = NULL;
    if (c->ftail)
        c->ftail->fnext = t;
    else
        c->fhead = t;
    c->ftail = t;
    c->inflight++;
    c->writes_inflight += t->writes;
    if (c->state == SQL_MY_IDLE) {
        sql__gauge_add(SQL_GAUGE_IN_USE, 1);
        sql_my_set_state(c, SQL_MY_PIPE);
    }
    if (c->fhead == t)
        sql_my_pipe_begin(c);
}

static void sql_my_on_pipe_write(evutil_socket_t fd, short what, void *arg);

/* Writes what the socket takes of c's queued executes; the rest when it is writable again. False when
 * the connection was closed (its statements failed). */
static bool sql_my_pipe_flush(sql_my_conn *c)
{
    int fd = (int)mysql_get_socket(c->my);
    while (c->out_pos < c->out_len) {
        ssize_t w = send(fd, c->out + c->out_pos, c->out_len - c->out_pos, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w > 0) {
            c->out_pos += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (!c->io_added) {
                event_assign(&c->io, c->pool->line.base, fd, EV_WRITE, sql_my_on_pipe_write, c);
                event_add(&c->io, NULL);
                c->io_added = true;
            }
            return true;
        }
        log_warn("sql: loop %u connection %u: sending statements failed: %s; closing it", c->pool->line.id, c->index,
                 w < 0 ? strerror(errno) : "nothing written");
        sql_my_conn_close(c, SQL_ERROR_CONNECTION_LOST);
        return false;
    }
    c->out_pos = c->out_len = 0;
    return true;
}

static void sql_my_on_pipe_write(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sql_my_conn *c = arg;
    c->io_added = false;
    if (sql_my_pipe_flush(c))
        return;
    sql_my_dispatch(c->pool);
}

static void sql_my_pipe_on_flush(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    sql_my_pool *p = arg;
    p->flush_armed = false;
    bool closed = false;
    while (p->nflush) {
        sql_my_conn *c = p->flush[--p->nflush];
        c->dirty = false;
        if (c->state == SQL_MY_PIPE && !c->io_added)
            closed |= !sql_my_pipe_flush(c);
    }
    if (closed) /* its statements failed; what waits may take the connection's place */
        sql_my_dispatch(p);
}

void sql_my_pipe_pool_init(sql_my_pool *p, struct event_base *base)
{
    event_assign(&p->flush_ev, base, -1, 0, sql_my_pipe_on_flush, p);
}

/* The statements of every request the loop reads in one turn share a send per connection: the flush
 * is an event made active now, which libevent runs after the callbacks already active in this turn
 * (the other clients' reads, the database's answers), so a turn that reads 40 requests of /v1/db
 * sends their 40 executes in one segment, where flushing per dispatch sent one each. */
void sql_my_pipe_flush_soon(sql_my_pool *p)
{
    if (p->nflush && !p->flush_armed) {
        p->flush_armed = true;
        event_active(&p->flush_ev, 0, 0);
    }
}

/* The statement at the head has its whole answer: deliver it. False when the connection was closed. */
static bool sql_my_pipe_answered(sql_my_conn *c)
{
    sql_my_pool *p = c->pool;
    sql_task *t = c->fhead;
    sql_my_answer *a = &c->ans;
    c->fhead = t->fnext;
    if (!c->fhead)
        c->ftail = NULL;
    c->inflight--;
    c->writes_inflight -= t->writes;
    t->fnext = NULL;
    t->conn = NULL;
    const char *error = a->error;
    if (a->extra) {
        /* More result sets than one (a CALL): read and dropped; what they did to the answer's column
         * buffer says nothing about the statement's own columns, so the connection retires rather than
         * keep a cache entry it cannot check. */
        c->retire = true;
    } else if (a->meta_sent) {
        /* The server sent the columns again: they changed since the prepare (a table altered). The
         * next answers are read with the new ones; Connector/C's copy in the statement is stale, so the
         * connection retires once idle and the statement is prepared afresh on a new one. */
        sql_my_cached_stmt *e = &c->cache[t->stage];
        bool same = e->ncols == a->ncols;
        for (size_t i = 0; same && i < a->ncols; i++)
            same = e->cols[i].type == a->cols[i].type && e->cols[i].is_unsigned == a->cols[i].is_unsigned;
        if (!same) {
            log_info("sql: loop %u connection %u: the columns of \"%s\" changed; the connection retires", p->line.id,
                     c->index, t->sql);
            free(e->cols);
            e->cols = xmalloc(a->ncols * sizeof(*e->cols));
            memcpy(e->cols, a->cols, a->ncols * sizeof(*e->cols));
            e->ncols = a->ncols;
            c->retire = true;
        }
    }
    if (error == SQL_ERROR_QUERY && a->err_code == 0) {
        log_warn("sql: loop %u: \"%s\": %s", p->line.id, t->sql, a->err_msg);
        c->retire = true;
    } else if (error == SQL_ERROR_QUERY && sql_my_connection_error(a->err_code)) {
        log_warn("sql: loop %u connection %u: execute: %s (%u); closing it", p->line.id, c->index, a->err_msg,
                 a->err_code);
        sql_task_finish(t, SQL_ERROR_CONNECTION_LOST);
        sql_my_conn_close(c, NULL);
        return false;
    } else if (error == SQL_ERROR_QUERY && (a->err_code == ER_LOCK_DEADLOCK || a->err_code == ER_LOCK_WAIT_TIMEOUT)) {
        log_info("sql: loop %u: execute: %s (%u)", p->line.id, a->err_msg, a->err_code);
        error = SQL_ERROR_CONFLICT; /* as sql_my_stmt_failed: another transaction's locks, not a full line */
    } else if (error == SQL_ERROR_QUERY) {
        log_warn("sql: loop %u: execute refused: %s (%u)", p->line.id, a->err_msg, a->err_code);
    }
    sql_my_pipe_begin(c);
    sql_task_finish(t, error);
    return true;
}

/* The persistent read watch of a connection with statements in flight: reads once (level-triggered:
 * what is left is reported again), delivers every answer that is complete. A packet the protocol does
 * not allow, or bytes when nothing is in flight, close the connection. */
void sql_my_pipe_read(sql_my_conn *c)
{
    sql_my_pool *p = c->pool;
    if (c->in_pos == c->in_len) {
        c->in_pos = c->in_len = 0;
    } else if (c->in_pos > 0 && (c->in_cap - c->in_len < 4096 || c->in_pos > c->in_cap / 2)) {
        memmove(c->in, c->in + c->in_pos, c->in_len - c->in_pos);
        c->in_len -= c->in_pos;
        c->in_pos = 0;
    }
    size_t want = c->in_len + (c->ans.need > c->in_len - c->in_pos ? c->ans.need - (c->in_len - c->in_pos) : 0);
    if (want < c->in_len + 4096)
        want = c->in_len + 4096;
    if (want > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap : 16384;
        while (cap < want)
            cap *= 2;
        c->in = xrealloc(c->in, cap);
        c->in_cap = cap;
    }
    ssize_t r = recv((int)mysql_get_socket(c->my), c->in + c->in_len, c->in_cap - c->in_len, 0);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (r <= 0) {
        log_warn("sql: loop %u connection %u: the server closed the connection with %u statement(s) in flight%s%s",
                 p->line.id, c->index, c->inflight, r < 0 ? ": " : "", r < 0 ? strerror(errno) : "");
        sql_my_conn_close(c, SQL_ERROR_CONNECTION_LOST);
        sql_my_dispatch(p);
        return;
    }
    c->in_len += (size_t)r;
    while (c->fhead) {
        size_t used = 0;
        sql_my_wire_status st = sql_my_answer_feed(&c->ans, c->in + c->in_pos, c->in_len - c->in_pos, &used);
        c->in_pos += used;
        if (st == SQL_MY_WIRE_MORE)
            break;
        if (st == SQL_MY_WIRE_BAD || st == SQL_MY_WIRE_TOO_BIG) {
            if (st == SQL_MY_WIRE_TOO_BIG)
                log_warn("sql: loop %u connection %u: execute: the server sent a packet larger than the statement's "
                         "bound of %zu bytes; closing the connection",
                         p->line.id, c->index, c->fhead->max_bytes);
            else
                log_warn("sql: loop %u connection %u: execute: the server's answer breaks the protocol; closing the "
                         "connection",
                         p->line.id, c->index);
            sql_my_conn_close(c, st == SQL_MY_WIRE_TOO_BIG ? SQL_ERROR_TOO_LARGE : SQL_ERROR_CONNECTION_LOST);
            sql_my_dispatch(p);
            return;
        }
        if (!sql_my_pipe_answered(c)) {
            sql_my_dispatch(p);
            return;
        }
    }
    if (!c->fhead) {
        if (c->in_pos != c->in_len) {
            log_warn("sql: loop %u connection %u: the server sent more than was asked for; closing the connection",
                     p->line.id, c->index);
            sql_my_conn_close(c, NULL);
            sql_my_dispatch(p);
            return;
        }
        c->in_pos = c->in_len = 0;
        if (c->state == SQL_MY_PIPE && !c->io_added) {
            sql_my_set_state(c, SQL_MY_IDLE);
            sql__gauge_add(SQL_GAUGE_IN_USE, -1);
            if (c->retire)
                sql_my_conn_close(c, NULL);
        }
    }
    sql_my_dispatch(p);
}

/* The cache entry t is pipelined with on c, which is pipelining and can take `need` more statements
 * now (not retiring, room below the depth, not waiting for the socket to take what it has, no
 * statement in flight that waits for a commit), or -1. A statement behind a write would wait for the
 * write's durable commit (an fsync away) however fast it is itself: on /v1/updates that held each
 * request's 20 reads behind another request's UPDATE. */
static int sql_my_pipe_room(const sql_my_pool *p, const sql_my_conn *c, const sql_task *t, unsigned need)
{
    if (c->state != SQL_MY_PIPE || c->retire || c->inflight + need > p->line.s->pipeline_depth || c->io_added ||
        c->writes_inflight > 0)
        return -1;
    int e = sql_my_cache_find(c, t->sql, t->sql_len);
    return e >= 0 && c->cache[e].pipe ? e : -1;
}

/* Where t goes, with room for `need` statements (t and those of its group behind it): a connection
 * with executes of this turn still to send; else the connection with the fewest statements in flight
 * among the idle ones and those pipelining that have t's statement prepared (an idle one that has it
 * prepared first, so it is pipelined, not run the Connector/C way). *entry: its cache entry when t is
 * to be pipelined, else -1 (an idle connection runs it the Connector/C way: prepare, or a step that
 * is not pipelined). NULL: none now. */
static sql_my_conn *sql_my_pick(sql_my_pool *p, const sql_task *t, unsigned need, int *entry)
{
    bool pipe = sql_my_pipelinable(p, t);
    sql_my_conn *best = NULL;
    unsigned best_n = 0;
    *entry = -1;
    /* First a connection that already has executes of this turn to send: t joins their send, and
     * MariaDB's thread finds it read with them, instead of a send and a wake-up of its own. */
    for (unsigned i = 0; pipe && i < p->nflush; i++) {
        int e = sql_my_pipe_room(p, p->flush[i], t, need);
        if (e >= 0) {
            *entry = e;
            return p->flush[i];
        }
    }
    for (unsigned i = 0; i < p->nconns; i++) {
        sql_my_conn *c = &p->conns[i];
        if (c->state == SQL_MY_IDLE) {
            int e = pipe && c->pipe_ok ? sql_my_cache_find(c, t->sql, t->sql_len) : -1;
            if (e >= 0 && !c->cache[e].pipe)
                e = -1;
            if (e >= 0) {
                *entry = e;
                return c;
            }
            if (!best || best_n > 0) {
                best = c;
                best_n = 0;
                *entry = -1;
            }
        } else if (pipe && (!best || c->inflight < best_n)) {
            int e = sql_my_pipe_room(p, c, t, need);
            if (e >= 0) {
                best = c;
                best_n = c->inflight;
                *entry = e;
            }
        }
    }
    return best;
}

sql_my_conn *sql_my_pipe_place(sql_my_pool *p, const sql_task *t, sql_my_conn *group_conn, unsigned group, int *entry)
{
    /* The statements of one sql_query_many follow the first of them onto its connection while it has
     * room: they leave in one send and the server reads them in one wake-up, where spreading them cost
     * a send and a server thread's wake-up each. */
    if (t->group && t->group == group && group_conn && sql_my_pipelinable(p, t)) {
        int e = sql_my_pipe_room(p, group_conn, t, 1);
        if (e >= 0) {
            *entry = e;
            return group_conn;
        }
    }
    /* A group's first statement waits for a connection with room for all of it (up to the depth), as
     * on PostgreSQL: with every connection full (wrk's 64 requests of 20 statements are more than 16
     * connections of 32 hold), statements went out one by one as answers freed room, each in a segment
     * of its own and a wake-up of MariaDB's thread; nothing behind it goes first meanwhile, and a
     * connection drains within its statements' time. */
    unsigned depth = p->line.s->pipeline_depth;
    unsigned need = t->group ? (t->group_left < depth ? t->group_left : depth) : 1;
    return sql_my_pick(p, t, need ? need : 1, entry);
}

void sql_my_pipe_fail(sql_my_conn *c, const char *error)
{
    sql_task *f = c->fhead;
    c->fhead = c->ftail = NULL;
    c->inflight = 0;
    c->writes_inflight = 0;
    for (const char *why = error ? error : SQL_ERROR_CONNECTION_LOST; f; why = SQL_ERROR_CONNECTION_LOST) {
        sql_task *next = f->fnext;
        f->fnext = NULL;
        f->conn = NULL;
        sql_task_finish(f, why);
        f = next;
    }
}

void sql_my_pipe_clear(sql_my_conn *c)
{
    free(c->out);
    free(c->in);
    c->out = c->in = NULL;
    c->out_len = c->out_pos = c->out_cap = c->in_len = c->in_pos = c->in_cap = 0;
    sql_my_answer_free(&c->ans);
    c->pipe_ok = false;
}
