/* http_internal: the engine's private structs, shared by http_loop.c, http_conn.c, http_parser.c
 * and http_request.c only. Handlers and the server never include this; they see http_request.h and
 * http_loop_internal.h. */
#ifndef APIARY_HTTP_INTERNAL_H
#define APIARY_HTTP_INTERNAL_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <llhttp.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <sys/socket.h>
#include <sys/types.h>

#include "access_log_internal.h"
#include "async_internal.h"
#include "json_write_internal.h"
#include "buf_internal.h"
#include "http_loop_internal.h"
#include "http_metrics_internal.h"
#include "http_middleware_internal.h"
#include "http_request.h"
#include "http_response_internal.h"
#include "http_stream_internal.h"
#include "router.h"

/* Where a connection is in its life. The timer armed in each state is chosen by http_conn_arm_timer. */
typedef enum http_conn_state {
    HTTP_CONN_IDLE,    /* between requests: keep-alive timer (header timer for a new connection) */
    HTTP_CONN_HEAD,    /* request line and headers arriving: header timer from the first byte */
    HTTP_CONN_BODY,    /* body arriving: body timer from the end of the headers */
    HTTP_CONN_HANDLER, /* dispatched, waiting for the handler's answer: no engine timer */
    HTTP_CONN_CLOSING, /* last response queued: flush it, then linger */
    HTTP_CONN_LINGER,  /* write side shut; discard input until EOF or the linger timer */
    HTTP_CONN_UPGRADED, /* taken over after a 101 (WebSocket, ws.c): its events and timer are the taker's */
} http_conn_state;

/* What the engine calls on a connection a handler took over (http_conn_upgrade). Both run on the
 * loop's stack. `drain`: the loop drains (SIGTERM): start a graceful close. `closed`: the connection is
 * closing now (the taker's own http_conn_force_close, the drain timeout, a stop): release everything
 * the taker holds; the fd, the events and the connection go right after it returns. */
typedef struct http_upgrade_ops {
    void (*drain)(void *arg);
    void (*closed)(void *arg);
} http_upgrade_ops;

/* A byte range of the current message, relative to its first byte (conn->msg_start), so the input
 * buffer can be compacted or grown while the head is still arriving. */
typedef struct http_span {
    uint32_t off;
    uint32_t len;
} http_span;

typedef struct http_header_span {
    http_span name;
    http_span value;
} http_header_span;

#define HTTP_SLOT_INLINE_HEADERS 16 /* most requests carry fewer; more grow into the arena */
#define HTTP_REQUEST_ID_MAX 64       /* longer client ids are replaced by our own */
#define HTTP_MAX_CHUNK_EXTENSION_BYTES 4096 /* per chunk-size line; more is 400 */

/* The per-request work area. Taken from the loop's free list when a request begins and given back
 * when it ends, so idle connections hold none and busy ones never malloc per request. It is small
 * (about 1.7 KiB): 10,000 requests waiting on timers must fit in a few tens of MiB. */
/* Where a ROUTE_CORO handler's coroutine stands with its slot (http_conn.c). After an await the request
 * may have ended (client gone, 504, a WebSocket upgrade) by the time the handler returns, so the slot
 * is not given back while the coroutine runs: http_conn_end_request leaves it ORPHANED, and the
 * coroutine's return gives it back. Kept in the slot, since the coroutine's own memory is no place for
 * the engine to write: an idle await copies its stack and struct out and back (coro.c). */
typedef enum http_coro_state {
    HTTP_CORO_NONE,     /* no coroutine handler runs on this slot */
    HTTP_CORO_RUNNING,  /* it runs (or is suspended) and its request is still open */
    HTTP_CORO_ENDING,   /* http_conn_end_request is under way (it may resume the coroutine to unwind) */
    HTTP_CORO_ORPHANED, /* the request ended with the coroutine still running: it gives the slot back */
} http_coro_state;

typedef struct http_req_slot {
    http_request req;
    struct http_req_slot *next_free;
    http_span url;
    uint32_t path_len;  /* the target's path and query, split once when the head is complete: */
    http_span query;    /* offsets into the target, so they hold for its copy too */
    http_header_span *header_spans; /* spans_inline, or a larger copy in the arena */
    size_t header_spans_cap;
    http_header_span spans_inline[HTTP_SLOT_INLINE_HEADERS];
    size_t header_count;
    bool in_header_value;            /* the last header callback was a value (llhttp splits tokens) */
    router_status route_status;
    route_match match;
    int refusal; /* a status the head alone decides (404, 405, 415, 501): answered at dispatch */
    char request_id[HTTP_REQUEST_ID_MAX + 1]; /* the id sent back; the client's when well-formed */
    const void *context;   /* settings->context at dispatch: in effect for all the request's code */
    bool middleware_ran;   /* the before hooks ran: every answer runs the after hooks */
    bool in_after_hooks;   /* an after hook runs: it may add headers, never answer */
    struct http_request_value *values; /* http_request_set_value, in the arena */
    bool coding_on_pool;   /* the answer is being content-coded on the worker pool (http_conn.c) */
    /* The ROUTE_CORO handler's coroutine (http_conn.c): whether its return finds its request open,
     * and who gives the slot back. */
    http_coro_state coro_state;
    bool client_resolved;  /* client_family/addr hold the address trusted_proxies lead to */
    uint8_t client_family;
    uint8_t client_addr[16];
} http_req_slot;

struct http_conn {
    http_loop *loop;
    http_conn *prev, *next; /* the loop's list of live connections */
    int fd;
    http_conn_state state;
    unsigned busy;    /* engine frames of this connection on the stack; free only at zero */
    bool dead;        /* closed: fd and events gone, memory freed when busy drops to zero */
    bool reading;     /* read_ev is added */
    bool writing;     /* write_ev is added: output is blocked on the socket */
    bool peer_eof;    /* the client shut its write side */
    bool fin_pending; /* the client's FIN arrived behind bytes not read yet (EV_CLOSED while not reading) */
    bool watching_close; /* close_ev is added: reading is paused, but a FIN must still be noticed */
    bool on_eof_list; /* in the loop's list of half-closed connections whose request holds an async place */
    uint8_t blank_bytes; /* CR/LF bytes before the request line of the message to come (bounded) */
    http_conn *eof_prev, *eof_next;
    bool keep_alive;  /* the current request allows another after it */
    bool fresh;       /* no request seen yet: idle expiry uses the header timeout */
    bool over_limit;  /* accepted past max_connections with every connection busy: its request gets 503 */
    uint64_t accepted_ms; /* coarse monotonic clock at accept (http_conn_limit's grace for new clients) */
    bool processing;  /* inside http_conn_process: an answer given now is flushed by that loop */
    bool deadline_default;  /* HANDLER: the deadline is dispatch + request_ms (a common timeout) */
    bool timer_is_deadline; /* the timer is armed for the current request deadline: leave it */
    bool timer_armed;       /* timer_ev is pending (the lazy timer, http_conn_timer_at) */
    uint64_t timer_due_ms;  /* coarse clock: when the timer's purpose is due */
    uint64_t timer_fires_ms; /* coarse clock: when timer_ev was last set to fire (it may fire sooner) */
    bool discard_body; /* the current request is refused from its head: its body is read, not kept */
    bool close_after;  /* the current request's answer closes the connection (framing left unread) */
    bool close_clean;  /* closing because the client asked to, its request read whole: nothing to drain */
    struct event read_ev, write_ev, timer_ev, close_ev;
    llhttp_t parser;
    buf in;           /* raw bytes; data[msg_start..] is the current message */
    buf out;          /* responses not yet written */
    buf body;         /* the current request's body, de-chunked */
    size_t parse_pos; /* bytes of `in` given to llhttp so far */
    size_t msg_start; /* where the current message begins in `in` */
    size_t head_len;  /* length of the current message's head once complete, relative to msg_start */
    uint32_t trailer_bytes;    /* chunked trailer fields seen so far (discarded, but bounded) */
    uint32_t trailer_name_len; /* length of the trailer field name being parsed */
    uint32_t chunk_ext_bytes;  /* chunk extension bytes of the current chunk-size line */
    uint32_t chunk_framing_bytes; /* bytes parsed since the last chunk data: the chunk-size line so far */
    const char *chunk_parse_start; /* during one llhttp_execute: where it began */
    const char *chunk_data_end;   /* during one llhttp_execute: where the last chunk data ended */
    bool chunk_data_next;         /* a chunk header was parsed: the next body bytes begin its data */
    bool last_chunk;              /* the size-0 chunk was seen: what follows is trailers (bounded apart) */
    uint64_t deadline_ms; /* HEAD/BODY: monotonic time by which the head/body must be complete */
    uint64_t started_us;  /* when the current request's first byte was parsed (precise clock) */
    uint64_t answered_us; /* when a request was answered in the running http_conn_process, else 0: the
                           * start of a pipelined request parsed right after it, without a clock read */
    http_req_slot *slot; /* the current request, NULL when idle */
    uint8_t peer_family;  /* AF_INET, AF_INET6, or 0 (Unix socket, socketpair) */
    uint8_t peer_addr[16];
    const http_upgrade_ops *upgrade_ops; /* HTTP_CONN_UPGRADED: the taker's hooks and their argument */
    void *upgrade_arg;
    int file_fd;      /* a file answer's body still to send after `out` (sendfile), or -1 */
    off_t file_off;   /* where in file_fd the rest begins */
    size_t file_left; /* bytes of file_fd still to send */
    int error_status; /* set by a parser callback that rejected the request */
    char error_detail[160];
    size_t body_limit;    /* the current request's body limit: its route's max_body_bytes or the setting */
    uint64_t body_total;  /* body bytes parsed so far (a streamed body is not kept whole) */
    bool body_early;      /* a ROUTE_BODY_STREAM request is dispatched at the end of its head */
    struct http_stream *stream;           /* the current request answers in pieces (http_stream.c) */
    struct http_body_stream *body_stream; /* the current request's body goes to its handler as it comes */
};

/* Single writer (the loop thread), readers elsewhere: a relaxed store is enough and costs a plain mov. */
#define HTTP_STAT_ADD(loop, field, n) \
    __atomic_store_n(&(loop)->stats.field, (loop)->stats.field + (n), __ATOMIC_RELAXED)

typedef struct http_loop_post_item {
    struct http_loop_post_item *next;
    http_loop_fn fn;
    void *arg;
} http_loop_post_item;

#define HTTP_VALID_HOST_MAX 64 /* a longer Host is checked every time */

struct http_loop {
    unsigned id;
    struct event_base *base;
    const http_settings *settings;
    const router *router;
    const http_middleware *middleware; /* or NULL: none */
    int listen_fds[2];               /* TCP (own SO_REUSEPORT socket) and/or the shared Unix socket */
    struct event *listen_evs[2];
    size_t listen_count;
    struct event *accept_retry_ev; /* re-enables accepting after EMFILE/ENFILE */
    bool accept_enabled;
    struct event *date_ev;
    struct event *lag_ev;   /* loop-lag probe */
    uint64_t lag_due_ms;    /* when the probe should fire next (monotonic ms) */
    char date[HTTP_DATE_LEN + 1]; /* refreshed once a second, shared by every response */
    struct event *post_ev;
    pthread_mutex_t post_lock;
    http_loop_post_item *post_head, *post_tail;
    http_conn *conns, *conns_tail; /* most recently gone idle (or accepted) first */
    /* half_close "answer": connections whose client sent a FIN while their request holds an async
     * place, oldest first; at max_async_per_loop the head is cancelled to make room */
    http_conn *eof_head, *eof_tail;
    size_t conn_count;             /* all open connections, over-limit ones included */
    size_t over_limit_count;       /* open connections accepted past max_connections (http_conn_limit) */
    uint64_t limit_logged_ms, limit_reclaimed_unlogged, limit_refused_unlogged;
    uint64_t accept_error_logged_ms;
    bool draining;
    buf_cache cache;
    http_req_slot *free_slots;
    size_t free_slot_count;
    /* libevent "common timeouts": O(1) queues instead of the heap, one per fixed duration. */
    const struct timeval *tv_header, *tv_body, *tv_keepalive, *tv_write, *tv_linger, *tv_request;
    struct timeval tv_fallback[6]; /* used when libevent has no common timeout left (many reloads) */
    async_timeouts timeouts; /* the same for the async toolkit's timers (sleep, wait_for) */
    http_loop_stats stats;
    http_route_stats *route_stats;  /* [route count + 1]: per route, the last for unmatched requests */
    access_log_buf access_log;      /* this loop's lines, written whole */
    char request_id_prefix[9];      /* random per loop: ids stay unique across loops and restarts */
    /* The last Host value found valid on this loop: nearly every request repeats it, and comparing
     * costs a tenth of uri_host_valid's byte-by-byte check. */
    uint8_t valid_host_len;         /* 0: none yet (an empty Host is checked every time) */
    char valid_host[HTTP_VALID_HOST_MAX];
    uint64_t request_id_next;
    struct http_bg_task *bg_head;   /* background tasks running (http_background.c) */
    size_t bg_count;
    struct event *bg_reap_ev;       /* frees the tasks whose function returned, from the loop's stack */
    void *locals[HTTP_LOOP_SLOT_COUNT];                 /* http_loop_local */
    void (*local_destroy[HTTP_LOOP_SLOT_COUNT])(void *); /* run at http_loop_free */
};

/* http_parser.c: the llhttp callbacks. */
const llhttp_settings_t *http_parser_settings(void);
/* A head http_fasthead_read takes, read at conn->msg_start without llhttp and handed to
 * http_conn_on_headers_complete: returns its length (*refused: it was answered with a refusal, as
 * when llhttp's callbacks refuse one), or 0 when llhttp must read the message. Only between messages. */
size_t http_parser_fast_head(http_conn *conn, size_t avail, bool *refused);
/* Measures the open chunk-size line up to `upto` (see http_parser.c); false after rejecting it. */
bool http_parser_chunk_line_ok(http_conn *conn, const char *upto);

/* http_conn.c */
/* Coarse monotonic milliseconds (a few ms of resolution): timeouts, the limit's grace and log rate. */
uint64_t http_conn_now_ms(void);
/* `over_limit`: accepted past max_connections with every connection busy: its request gets 503. */
void http_conn_accept(http_loop *loop, int fd, const struct sockaddr *peer, bool over_limit);
void http_conn_drain(http_conn *conn);
void http_conn_force_close(http_conn *conn);
/* Queues a response for the connection's current request and ends the request. */
void http_conn_send_response(http_conn *conn, int status, const char *content_type, const void *body, size_t len);
/* Serialises json (with `splice`, which may be NULL: see json_write_internal.h) straight into the output
 * buffer; a tree that cannot be written answers 500 instead. Takes the reference and drops it once
 * the bytes are written, before the request ends: the tree may hold nodes of the request's arena
 * (echo answers with its parsed body), which die with the request. */
void http_conn_send_json(http_conn *conn, int status, const char *content_type, json_t *json,
                         const json_write_splice *splice);
/* Queues a file answer (http_static.c) and ends the request: the head, and unless the request is HEAD
 * `len` bytes of `fd` from `off`: read into the output buffer when small, else sent with sendfile once
 * what is queued before it is out (pipelined requests wait meanwhile). Takes fd (-1: no body, as for
 * 304), closing it in every case, unless keep_fd: then fd stays the caller's (a descriptor of the
 * static open-file cache), read before the call returns and never kept, which only holds for a `len`
 * http_conn_file_inline accepts (the caller passes a dup of it otherwise). Never content-coded: a
 * precompressed file says its coding in the headers the caller added. */
void http_conn_send_file(http_conn *conn, int status, const char *content_type, int fd, off_t off, size_t len,
                         bool keep_fd);
/* True when http_conn_send_file reads a body of `len` bytes into the output buffer during the call
 * (small files); false when it sends it later with sendfile from the descriptor. */
bool http_conn_file_inline(size_t len);
/* The one-answer rule (http_request.c): false, logged, for a second answer. */
bool http_request_begin_answer(http_request *req);
/* Called by the parser at the end of a message's head: 0 to read the body, 1 to treat the message as
 * having none (it is refused and the connection closes), -1 after a rejection. */
int http_conn_on_headers_complete(http_conn *conn);
void http_conn_reject(http_conn *conn, int status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Logs and counts a callback of `route` that blocked the loop for `ms` (an async_slow_fn). */
void http_loop_report_slow(void *loop, const char *route, uint64_t ms);
/* True when a Content-Type value's media type is `media`, parameters ignored (http_request.c). */
bool http_media_type_is(const char *value, size_t len, const char *media);
/* The request's client address (binary), resolved through trusted proxies once and cached. */
void http_request_client_addr(http_request *req, uint8_t *family, uint8_t addr[16]);
/* Re-arms the connection's timer after its deadline changed. */
void http_conn_rearm_timer(http_conn *conn);
/* The request just took an async place: a half-closed connection's one becomes evictable. */
void http_conn_async_started(http_conn *conn);
/* At max_async_per_loop with half_close "answer": cancels the oldest request of a half-closed
 * connection holding a place; false when there is none. */
bool http_conn_evict_half_closed(http_loop *loop);

/* Answers the current request with `head` (a complete "HTTP/1.1 101 ..." head without the final blank
 * line: the engine adds X-Request-Id, the after hooks' headers and the blank line) and hands the
 * connection over: the request ends (its memory and scope go), every engine event and the timer stop,
 * the state becomes HTTP_CONN_UPGRADED and `ops` take over. conn->out holds what is still unsent
 * (earlier answers, the 101); conn->in holds the bytes the client sent past the request, from its
 * start (pos 0). The connection still counts in the loop's list and its limits until it is closed with
 * http_conn_force_close. False (nothing done) when the connection is already closing. */
bool http_conn_upgrade(http_conn *conn, const char *head, size_t head_len, const http_upgrade_ops *ops, void *arg);

/* http_background.c */
typedef struct http_bg_task http_bg_task;
/* Cancels every task still running (logged, counted) and frees them all: stop and loop free. */
void http_background_cancel_all(http_loop *loop);

/* http_loop.c */
http_req_slot *http_loop_slot_get(http_loop *loop);
void http_loop_slot_put(http_loop *loop, http_req_slot *slot);
void http_loop_conn_added(http_loop *loop, http_conn *conn);
void http_loop_conn_removed(http_loop *loop, http_conn *conn);
/* The connection went idle (keep-alive, between requests): it moves to the head of the list, so the
 * tail holds the longest idle, and a loop that stopped accepting at its limit may start again. */
void http_loop_conn_idle(http_loop *loop, http_conn *conn);

/* http_conn_limit.c */
#define HTTP_CONN_LIMIT_OVERFLOW 64 /* per loop: clients accepted past the limit to be answered 503 */
/* The loop's share is full and so are the over-limit places: new clients wait in the backlog. */
bool http_conn_limit_saturated(const http_loop *loop);
/* Decides for a client just accepted: false to serve it (below the limit, or room was made by
 * closing idle connections), true when every connection is busy: it is over the limit, answer 503. */
bool http_conn_limit_admit(http_loop *loop);
/* Closes up to a batch of the longest-idle connections that lose nothing by it; returns how many. */
size_t http_conn_limit_reclaim(http_loop *loop);
/* Counts (and logs, rate-limited) a 503 given to an over-limit client. */
void http_conn_limit_refused(http_loop *loop);

#endif
