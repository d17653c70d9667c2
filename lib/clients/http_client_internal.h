/* http_client_internal: the structures the HTTP client's files share (http_client.c: calls and the
 * per-loop client; http_client_pool.c: pools and connections; http_client_parse.c: the response
 * reader), and what the unit tests look at. Not for other modules.
 *
 * Who owns what:
 * - http_client (one per loop) owns its pools; a pool owns its connections; a connection owns its
 *   socket, events, DNS look-up, address list and the response body being read. Each is freed in one
 *   place: http_client_free, http_client_pool_free, http_client_conn_destroy.
 * - http_client_call lives in the caller's scope memory. The pool only ever points at a call through
 *   the three links below (waiting line, conn->call, conn->dialer), and each is cleared before the call
 *   completes and in the future's cancel hook, which runs before the scope's memory goes. */
#ifndef APIARY_HTTP_CLIENT_INTERNAL_H
#define APIARY_HTTP_CLIENT_INTERNAL_H

#include <event2/event.h>
#include <event2/event_struct.h>
#include <event2/util.h>
#include <llhttp.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "http_client.h"

#define HTTP_CLIENT_READ_BYTES 16384     /* one recv per read event, into the client's scratch */
#define HTTP_CLIENT_MAX_HEAD_BYTES 16384 /* status line + header fields of one response */
#define HTTP_CLIENT_MAX_FIELDS 256       /* header fields of one response (interim answers apart) */

#define HTTP_CLIENT_STAT_ADD(client, field, n) \
    __atomic_fetch_add(&(client)->stats.field, (uint64_t)(n), __ATOMIC_RELAXED)

typedef struct http_client_pool http_client_pool;
typedef struct http_client_conn http_client_conn;
typedef struct http_client_call http_client_call;
typedef struct http_client_lookup http_client_lookup;

/* ---- the response reader (http_client_parse.c) ----------------------------------------------- */

typedef enum http_client_read_status {
    HTTP_CLIENT_READ_MORE,   /* the response is not complete yet */
    HTTP_CLIENT_READ_DONE,   /* a complete final response: status and body are set */
    HTTP_CLIENT_READ_FAILED, /* `error` says why; the connection cannot be used any more */
} http_client_read_status;

typedef struct http_client_reader {
    llhttp_t parser;
    int status;
    bool got_bytes;    /* a byte of the response arrived (then a failure is never a "stale" one) */
    bool done;
    bool failed;
    bool head_only;    /* the request was HEAD: no body whatever the head announces */
    http_client_error error;
    size_t head_bytes;
    /* The header fields of the final response, as NUL-terminated name, value pairs in `head`: at
     * most HTTP_CLIENT_MAX_HEAD_BYTES of field bytes (plus two NULs per field). */
    char *head;           /* malloc'd, owned by the reader */
    size_t head_len, head_cap;
    uint32_t *fields;     /* 2 offsets into head per field: name, value */
    size_t field_count, fields_cap;
    bool in_field;        /* a field name is being read (it may come in pieces) */
    bool in_value;        /* its name is complete, its value is being read */
    size_t max_body;
    char *body;        /* malloc'd, owned by the reader until http_client_reader_release */
    size_t body_len;
    size_t body_cap;
} http_client_reader;

/* Ready for one response; `max_body` is the upstream's max_response_bytes. `r` must be zeroed before
 * its first start; a body left over from an earlier response is freed. */
void http_client_reader_start(http_client_reader *r, size_t max_body, bool head_only);
/* Parses len bytes. On DONE, *used says how many belonged to the response (more is a protocol error
 * for a client that never pipelines, so the connection is not reused). */
http_client_read_status http_client_reader_feed(http_client_reader *r, const char *data, size_t len, size_t *used);
/* The upstream closed its side: completes a close-delimited body, or fails. */
http_client_read_status http_client_reader_eof(http_client_reader *r);
/* After DONE: whether the connection may carry another request (HTTP version, Connection header). */
bool http_client_reader_keep_alive(const http_client_reader *r);
/* The value of the first header field of the response called `name` (case-insensitive), or NULL. */
const char *http_client_reader_header(const http_client_reader *r, const char *name);
/* Frees the body and head buffers; the reader may be started again. */
void http_client_reader_release(http_client_reader *r);

/* ---- the client, its pools, connections and calls -------------------------------------------- */

struct http_client {
    struct event_base *base;
    struct evdns_base *dns;       /* created for the first upstream named by a host name */
    unsigned lookups_pending;     /* DNS callbacks still to come (cancelled ones too) */
    bool closing;                 /* http_client_free runs: keep nothing, open nothing */
    http_client_pool *pools;      /* one per upstream, in order of first use */
    http_client_stats stats;      /* updated with relaxed atomics, read from any thread */
    char scratch[HTTP_CLIENT_READ_BYTES];
};

struct http_client_pool {
    http_client_pool *next;
    http_client *client;
    const http_client_upstream *up;
    bool literal;                  /* the host is an IP address: no DNS */
    struct sockaddr_storage addr;  /* literal hosts only */
    socklen_t addr_len;
    char host_header[300];         /* "host:port" as the Host field carries it */
    http_client_conn *conns;       /* every connection, in any state */
    http_client_conn *idle;        /* idle ones, most recently used first */
    SSL_CTX *tls;                  /* up->tls: the verifying context (CA store, TLS >= 1.2) */
    bool tls_broken;               /* up->tls but the context could not be made (logged): calls fail */
    unsigned total;                /* connections in `conns` (counts against max_connections) */
    unsigned idle_count;
    http_client_call *wait_head;   /* calls waiting for a connection, FIFO */
    http_client_call *wait_tail;
    struct event kick_ev;          /* opens connections for the line on the loop's next pass */
};

typedef enum http_client_conn_state {
    HTTP_CLIENT_CONN_RESOLVING,  /* DNS look-up in flight */
    HTTP_CLIENT_CONN_CONNECTING, /* non-blocking connect in flight */
    HTTP_CLIENT_CONN_HANDSHAKE,  /* TLS handshake in flight (still under connect_timeout_ms) */
    HTTP_CLIENT_CONN_IDLE,       /* in the pool, waiting for a call (reads only to notice a close) */
    HTTP_CLIENT_CONN_BUSY,       /* carrying conn->call's request and response */
} http_client_conn_state;

struct http_client_conn {
    http_client_pool *pool;
    http_client_conn *prev, *next;           /* pool->conns */
    http_client_conn *idle_prev, *idle_next; /* pool->idle, while IDLE */
    http_client_conn_state state;
    int fd;                                  /* -1 while there is no socket */
    SSL *ssl;                                /* TLS upstreams: the session on fd, freed with it */
    bool tls_dirty;                          /* an SSL_write was left half done: bytes may be out */
    struct event read_ev, write_ev;          /* assigned whenever a socket is made */
    struct event timer_ev;                   /* connect timeout, then idle timeout */
    struct event defer_ev;                   /* reports a failure found inside a call, from the loop */
    http_client_error deferred_error;
    http_client_lookup *lookup;              /* RESOLVING: the DNS request, owned by its callback */
    bool in_lookup_call;                     /* inside evdns_getaddrinfo: its callback must not go on */
    bool lookup_failed;
    struct evutil_addrinfo *addrs;           /* resolved addresses, tried in order */
    struct evutil_addrinfo *next_addr;
    http_client_call *call;                  /* BUSY: the call it carries */
    http_client_call *dialer;                /* RESOLVING/CONNECTING: the call it is opened for */
    unsigned served;                         /* responses read on it: > 0 means it was reused */
    http_client_reader reader;
};

struct http_client_call {
    async_scope *scope;
    http_client *client;
    http_client_pool *pool;
    async_op *future;              /* completed by the client */
    async_op *bounded;             /* future under the upstream's timeout_ms: what the caller gets */
    http_client_call *wprev, *wnext; /* pool's waiting line */
    bool waiting;
    http_client_conn *conn;        /* the connection carrying it */
    http_client_conn *dialing;     /* the connection opened for it, not connected yet */
    const char *wire;              /* the whole request, in scope memory */
    size_t wire_len;
    size_t sent;
    size_t max_body;               /* the call's response body bound */
    bool head_only;
    bool idempotent;
    bool stale_retried;
    unsigned retries_left;
};

/* http_client.c: the pool reports a call's end. Both detach nothing: the pool has already let go. */
void http_client_call_succeeded(http_client_call *call, http_client_reader *reader);
/* Retries when the kind and method allow and attempts are left; otherwise fails the call. */
void http_client_call_failed(http_client_call *call, http_client_error kind);

/* http_client_pool.c */
http_client_pool *http_client_pool_get(http_client *client, const http_client_upstream *up);
void http_client_pool_free(http_client_pool *pool);
/* Gives the call a connection: an idle one (unless `fresh`), a new one, or a place in line. */
void http_client_pool_acquire(http_client_pool *pool, http_client_call *call, bool fresh);
/* The call's future was cancelled: let go of it, keeping its connection only if it is clean. */
void http_client_pool_abandon(http_client_call *call);

#endif
