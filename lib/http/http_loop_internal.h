/* http_loop: one event loop on one thread, accepting on its own SO_REUSEPORT listener and owning
 * every connection it accepts. Nothing about a connection is ever touched by another thread; other
 * threads talk to a loop only through http_loop_post (and the drain/stop calls built on it). */
#ifndef APIARY_HTTP_LOOP_H
#define APIARY_HTTP_LOOP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http_settings_internal.h"
#include "router.h"

typedef struct http_loop http_loop;
struct event_base;

#define HTTP_LOOP_LAG_BUCKETS 11
/* Upper bounds (exclusive, ms) of the lag histogram's buckets; the last bucket is unbounded. */
extern const unsigned HTTP_LOOP_LAG_BOUNDS_MS[HTTP_LOOP_LAG_BUCKETS - 1];

typedef struct http_loop_options {
    unsigned id;                  /* 0..N-1, for logs and thread names */
    int listen_fd;                /* non-blocking TCP listening socket, or -1; the loop owns and closes it */
    bool has_unix;                /* unix_fd is set (zero-initialised options must not mean fd 0) */
    int unix_fd;                  /* this loop's dup of the Unix-socket listener; owned likewise */
    const http_settings *settings; /* read-only, must outlive the loop */
    const router *router;         /* read-only, must outlive the loop */
    const struct http_middleware *middleware; /* read-only, must outlive the loop; NULL: none */
} http_loop_options;

/* Counters a loop keeps for itself; read from other threads with relaxed loads (metrics). */
typedef struct http_loop_stats {
    uint64_t connections_accepted;
    uint64_t connections_active;
    uint64_t requests;
    uint64_t responses_by_class[6]; /* index status/100: 1xx..5xx */
    uint64_t accept_errors;
    uint64_t connections_reclaimed; /* idle connections closed to make room at max_connections */
    uint64_t connections_refused;   /* clients answered 503 at max_connections (all busy) */
    uint64_t timeouts;
    uint64_t cancelled;            /* requests whose client left before the answer */
    uint64_t half_closed_cancelled; /* of those: cancelled at the client's FIN, or evicted at the cap */
    uint64_t async_inflight;       /* requests holding an async scope now */
    uint64_t async_rejected;       /* 503s because max_async_per_loop was reached */
    uint64_t deadline_expired;     /* 504s: request deadline passed before the answer */
    uint64_t stream_idle_closed;   /* streams cut off at timeouts.stream_idle_ms (silent producer) */
    uint64_t slow_callbacks;       /* callbacks that blocked the loop longer than slow_callback_ms */
    uint64_t background_running;   /* background tasks running now (background.h) */
    uint64_t background_started;
    uint64_t background_refused;   /* at max_background_per_loop, or while draining */
    uint64_t background_cancelled; /* still running when the drain timeout (or a stop) came */
    uint64_t ws_open;              /* WebSocket connections open now (ws.c) */
    uint64_t ws_opened;
    uint64_t ws_slow_closed;       /* closed 1008: their send queue passed websocket.send_queue_bytes */
    uint64_t ws_messages_received;
    uint64_t ws_messages_sent;
    uint64_t coro_given_back;      /* coroutine stacks given back in async_await_idle (async_coro_tick) */
    /* Loop lag: how late the loop's 100 ms probe timer fires. Bucket i counts lags below
     * HTTP_LOOP_LAG_BOUNDS_MS[i]; the last bucket counts the rest. */
    uint64_t lag_buckets[HTTP_LOOP_LAG_BUCKETS];
    uint64_t lag_max_ms;
} http_loop_stats;

typedef void (*http_loop_fn)(void *arg);

/* Creates the loop (call evthread_use_pthreads() once before, see http_loop_global_init). */
http_loop *http_loop_new(const http_loop_options *opts);
/* Runs the loop on the calling thread until it has drained or been stopped. */
void http_loop_run(http_loop *loop);
/* Frees the loop after http_loop_run returned. */
void http_loop_free(http_loop *loop);

/* Thread-safe: runs fn(arg) on the loop's thread soon. Calls are run in the order posted. */
void http_loop_post(http_loop *loop, http_loop_fn fn, void *arg);
/* Thread-safe: graceful drain. Stop accepting, answer what is in flight with Connection: close,
 * close idle connections, and return from http_loop_run once no connection is left. */
void http_loop_drain(http_loop *loop);
/* Thread-safe: stop now (drain timeout): cancel pending requests, close every connection. */
void http_loop_stop(http_loop *loop);

/* Thread-safe: the loop uses `settings` from its next event on (config reload). The caller keeps the
 * old settings alive until the loop has switched (the server retires them until exit), and must keep
 * max_headers as it was: parsing state is sized by it. */
void http_loop_update_settings(http_loop *loop, const http_settings *settings);

/* Loop thread: serves the connected, non-blocking socket `fd` as if accepted (the in-process test
 * client's end of a socketpair); the loop owns and closes it. */
void http_loop_adopt(http_loop *loop, int fd);

/* Loop-thread calls. */
bool http_loop_draining(const http_loop *loop);
struct event_base *http_loop_base(http_loop *loop);
unsigned http_loop_id(const http_loop *loop);
/* Copies the loop's counters (any thread; values are each consistent, not a joint snapshot). */
void http_loop_stats_read(const http_loop *loop, http_loop_stats *out);

/* Loop-local storage: one pointer per module and loop (the HTTP client's connection pools, the Redis
 * connections), created lazily on the loop's own thread, so a module needs no hook in the server.
 * The destructor runs on the loop's thread when the loop is freed, after every connection (and so
 * every request and its scope) is gone. */
typedef enum http_loop_slot {
    HTTP_LOOP_SLOT_HTTP_CLIENT,
    HTTP_LOOP_SLOT_REDIS,
    HTTP_LOOP_SLOT_KV,
    HTTP_LOOP_SLOT_SQL,
    HTTP_LOOP_SLOT_WS, /* ws.c: idle wslay contexts for reuse */
    HTTP_LOOP_SLOT_PUBSUB,
    HTTP_LOOP_SLOT_COUNT,
} http_loop_slot;

void *http_loop_local(const http_loop *loop, http_loop_slot slot);
/* Sets the slot (loop thread); `destroy` (may be NULL) is called with the value at http_loop_free. */
void http_loop_set_local(http_loop *loop, http_loop_slot slot, void *value, void (*destroy)(void *value));

/* Once per process, before any loop: makes libevent thread-aware (for http_loop_post). */
int http_loop_global_init(void);

#endif
