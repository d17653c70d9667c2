/* sql_mariadb_internal: what the MariaDB backend's two files share (sql_mariadb.c: connections, the
 * Connector/C path, the pool and its dispatch; sql_mariadb_pipe.c: pipelined executes): the
 * connection and pool structures and the calls each file makes into the other. Not for handlers: they
 * use sql.h. */
#ifndef APIARY_SQL_MARIADB_INTERNAL_H
#define APIARY_SQL_MARIADB_INTERNAL_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <mysql.h>
#include <ma_pvio.h>

#include "sql_mariadb_wire_internal.h"
#include "sql_task_internal.h"

/* Prepared statements kept per connection; a connection that would need more retires after its
 * statement (the endpoints use fewer than ten). */
#define SQL_MY_CACHE 32
/* The largest packet read for a statement is its result bound plus this (sql_my_bound_packets)... */
#define SQL_MY_PACKET_SLACK 1024u
/* ...and never less than this: column definitions, error messages. */
#define SQL_MY_PACKET_MIN (16u * 1024u)

typedef struct sql_my_pool sql_my_pool;
typedef struct sql_my_conn sql_my_conn;

typedef enum sql_my_state {
    SQL_MY_CLOSED,
    SQL_MY_CONNECTING,
    SQL_MY_IDLE,
    SQL_MY_BUSY,
    SQL_MY_HELD, /* inside a transaction, between its statements: never handed to another task */
    SQL_MY_PIPE, /* pipelined executes in flight (sql_my_pipe_send), answers read by apiary itself */
} sql_my_state;

typedef enum sql_my_step {
    SQL_MY_STEP_NONE,
    SQL_MY_STEP_CONNECT,
    SQL_MY_STEP_PREPARE,
    SQL_MY_STEP_EXECUTE,
    SQL_MY_STEP_FETCH,
    SQL_MY_STEP_FREE,
} sql_my_step;

/* A statement prepared on a connection, by its text. */
typedef struct sql_my_cached_stmt {
    char *sql;
    size_t sql_len;
    MYSQL_STMT *stmt;
    /* what a pipelined execute needs (sql_my_cache_add): the statement's id and parameter count, its
     * result columns, and whether their rows are decoded by sql_mariadb_wire.c */
    uint32_t stmt_id;
    size_t nparams;
    sql_my_col *cols;
    size_t ncols;
    bool pipe;
} sql_my_cached_stmt;

struct sql_my_conn {
    sql_my_pool *pool;
    unsigned index;
    sql_my_state state;
    MYSQL *my;
    struct event io;      /* one-shot waits: connecting, writing, Connector/C's own timeouts */
    bool io_added;
    struct event rd;      /* once connected: a persistent read watch, for replies and for an idle
                           * connection the server closes; no epoll_ctl per statement */
    bool rd_added;
    bool rd_paused;       /* taken out while a one-shot wait covers the socket */
    struct event deadline; /* the connect deadline */
    sql_my_step step;
    bool in_call;         /* a *_start asked to wait: the next readiness goes to *_cont */
    bool retire;          /* close after the current task (statement cache full) */
    MYSQL *ret_my;
    int ret_int;
    my_bool ret_bool;
    sql_my_cached_stmt cache[SQL_MY_CACHE];
    size_t cached;
    MYSQL_STMT *stmt;     /* the task's statement */
    bool stmt_cached;
    MYSQL_BIND *pbind, *rbind;
    size_t pbind_cap;
    size_t rcols, rcap;
    /* result buffers, rcols each; text is not bound (length only) but fetched column by column into
     * `scratch`, which never grows past the largest statement bound this connection served */
    long long *r_int;
    double *r_double;
    char *scratch;
    size_t scratch_cap;
    unsigned long *r_len;
    my_bool *r_null;
    sql_type *r_type;
    sql_task *task;
    sql_task_txn *txn;      /* the transaction holding the connection (HELD, or BUSY with its step) */
    /* Connector/C's socket calls for this connection, with the first read after a write answered
     * "would block" without a recv (sql_my_hook_reads); NULL orig: not hooked (TLS, or a layout that
     * is not the one compiled against). */
    struct st_ma_pvio_methods pvio_methods;
    const struct st_ma_pvio_methods *pvio_orig;
    bool just_wrote;
    /* Connector/C's command methods for this connection, with the reading of a statement's result
     * header replaced (sql_my_hook_metadata); NULL orig: not hooked. */
    struct st_mariadb_methods methods;
    const struct st_mariadb_methods *methods_orig;
    /* Pipelining (sql_my_pipe_*): on a plaintext connection whose socket calls are hooked, executes of
     * prepared statements are written by apiary, several in flight, and their answers parsed here. */
    bool pipe_ok;
    sql_task *fhead, *ftail; /* sent, in order; linked through fnext; fhead's answer is read next */
    unsigned inflight;
    unsigned writes_inflight; /* of those, statements that write (sql_task's `writes`) */
    unsigned char *out;      /* executes not yet taken by the socket */
    size_t out_len, out_pos, out_cap;
    bool dirty;              /* out has bytes and the connection is on the pool's flush list */
    unsigned char *in;       /* answers as received; in_pos is where the next packet starts */
    size_t in_len, in_pos, in_cap;
    sql_my_answer ans;
};

struct sql_my_pool {
    sql_task_line line; /* first: the line's ops get the pool back from it (sql_task.c) */
    sql_my_conn *conns;
    unsigned nconns;
    unsigned in_state[SQL_MY_PIPE + 1]; /* connections in each state (sql_my_set_state), so the dispatch
                                         * after every call does not scan every connection */
    sql_my_conn **flush;                /* connections with executes to send (dirty), nconns long */
    unsigned nflush;
    struct event flush_ev;              /* sends them once the loop has run every callback of this
                                         * turn (sql_my_pipe_flush_soon) */
    bool flush_armed;
};

/* ---- sql_mariadb.c -------------------------------------------------------------------------------- */

/* Every change of a connection's state goes through here, keeping the pool's counts. */
void sql_my_set_state(sql_my_conn *c, sql_my_state state);
/* Closes the connection, whatever it was doing; its running and pipelined tasks finish (the one
 * being read with `error`, NULL: connection_lost; those behind it connection_lost). */
void sql_my_conn_close(sql_my_conn *c, const char *error);
/* Hands waiting tasks to connections, sends what was pipelined, opens connections as needed. */
void sql_my_dispatch(sql_my_pool *p);
/* An error code that means the connection is gone (or unusable), not the statement refused. */
bool sql_my_connection_error(unsigned err);
/* The cache entry of a statement text on this connection, or -1. */
int sql_my_cache_find(const sql_my_conn *c, const char *sql, size_t len);

/* ---- sql_mariadb_pipe.c --------------------------------------------------------------------------- */

/* Where the waiting task t goes: the connection of the previous statement of its sql_query_many
 * (group_conn, when t is of that group and it has room), else the one sql_my_pick chooses. *entry:
 * the cache entry when t is to be pipelined there, else -1 (an idle connection runs it the
 * Connector/C way). NULL: none now. */
sql_my_conn *sql_my_pipe_place(sql_my_pool *p, const sql_task *t, sql_my_conn *group_conn, unsigned group, int *entry);
/* Queues t's execute on c (cache entry e) and puts it in flight; sent by sql_my_pipe_flush_all. */
void sql_my_pipe_send(sql_my_conn *c, sql_task *t, int e);
/* Sends what the dispatches of this loop turn queued, one send per connection, after every other
 * callback of the turn has had its chance to queue more. */
void sql_my_pipe_flush_soon(sql_my_pool *p);
/* The pool's flush event (sql_my_pipe_flush_soon) is set up on `base`. */
void sql_my_pipe_pool_init(sql_my_pool *p, struct event_base *base);
/* The read watch of a connection with statements in flight. */
void sql_my_pipe_read(sql_my_conn *c);
/* c is closing: its pipelined statements finish (the first with `error`, the rest connection_lost). */
void sql_my_pipe_fail(sql_my_conn *c, const char *error);
/* c is closing: its buffers go. */
void sql_my_pipe_clear(sql_my_conn *c);

#endif
