/* pubsub: topics that connections subscribe to, and publishing to them from any handler or thread
 * (docs/streaming.md, "Pub/sub"). In short:
 *
 * The model. Each loop keeps its own table of subscribers per topic, touched only by that loop's
 * thread. pubsub_publish copies the message once (one refcounted, immutable copy shared by every
 * loop) and posts it to every loop that has subscribers (http_loop_post); each loop then hands it to
 * its subscribers' delivery callbacks. Delivery is always from the loop, never inside pubsub_publish,
 * so a publisher is never re-entered by its own subscribers.
 *
 * Backends (config pubsub.backend). "local" (default): messages reach the subscribers of this
 * process. "redis": pubsub_publish sends the message with Redis PUBLISH, and one subscriber link per
 * process (on loop 0) relays whatever arrives on its channels to the subscribers on every loop, so
 * every instance on the same Redis sees every message (its own included, once: it reaches local
 * subscribers only through Redis).
 *
 * Lifetime. A subscription ends with pubsub_unsubscribe, or with the scope it was made in
 * (pubsub_subscribe_in: a request's scope, a WebSocket coroutine's scope), whichever comes first; no
 * delivery callback ever runs after that. A callback may unsubscribe itself or others, or end the
 * stream it writes to. The pubsub_sub handle is pub/sub's: never freed by the caller, and not to be
 * used after the subscription ended. pubsub_subscribe_sse's subscriptions end with the stream's
 * request; pubsub_subscribe_ws's with the connection's scope, or, made without one (callback form),
 * must be unsubscribed in on_close at the latest. A message is lent to the callback: copy what you keep.
 *
 * Slow subscribers. A delivery goes into the subscriber's bounded send path and never queues in
 * pub/sub itself: the SSE adapter ends a stream whose output is over limits.output_buffer_bytes, the
 * WebSocket adapter lets ws_send close a connection 1008 whose unsent bytes would pass
 * websocket.send_queue_bytes (both counted in apiary_pubsub_dropped_total{reason="slow"}; the client
 * reconnects and learns it missed messages), never skipping messages silently.
 *
 * Threads. pubsub_publish: any thread. Everything else: the loop thread of the subscription. */
#ifndef APIARY_PUBSUB_H
#define APIARY_PUBSUB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "async.h"
#include "stream.h"
#include "websocket.h"

typedef struct http_loop http_loop;
typedef struct pubsub_sub pubsub_sub;

/* Topic names: 1..PUBSUB_TOPIC_MAX bytes of [A-Za-z0-9._:-]. */
#define PUBSUB_TOPIC_MAX 128

/* pubsub_publish's answers. */
#define PUBSUB_OK 0
#define PUBSUB_INVALID -1     /* bad topic name, or message over pubsub.max_message_bytes */
#define PUBSUB_UNAVAILABLE -2 /* not started (no server running), stopping, or the Redis link is down */
#define PUBSUB_BUSY -3        /* redis backend: too many bytes waiting to be PUBLISHed (Redis slow) */

/* A message as a subscriber sees it: valid during the delivery callback only (copy what you keep).
 * data is followed by a NUL byte (not counted in len). */
typedef struct pubsub_message {
    const char *topic;
    const char *data;
    size_t len;
    /* Private: the message as the SSE adapter sends it, formatted once per loop for all its streams;
     * the WebSocket adapter's frame type (0 until it checked the UTF-8, once per loop). */
    char *_sse;
    size_t _sse_len;
    int _ws_type;
} pubsub_message;

/* Runs on the subscription's loop for every message on its topic. */
typedef void (*pubsub_deliver_fn)(pubsub_sub *sub, const pubsub_message *msg, void *arg);

/* True for a valid topic name. */
bool pubsub_topic_valid(const char *topic);

/* Publishes `len` bytes (copied before this returns) to `topic`. Any thread. PUBSUB_OK means the
 * message was accepted for delivery, not that anyone received it. */
int pubsub_publish(const char *topic, const void *data, size_t len);

/* Subscribes on `loop` (the calling thread's loop) until pubsub_unsubscribe. NULL for an invalid
 * topic or a loop pub/sub does not serve (no server running on it). */
pubsub_sub *pubsub_subscribe(http_loop *loop, const char *topic, pubsub_deliver_fn fn, void *arg);
/* The same, also ended when `scope` ends (a request's: http_request_async(req)). */
pubsub_sub *pubsub_subscribe_in(async_scope *scope, http_loop *loop, const char *topic, pubsub_deliver_fn fn,
                                void *arg);
/* Ends the subscription: its callback will not run again. NULL is a no-op. */
void pubsub_unsubscribe(pubsub_sub *sub);

/* The SSE adapter: subscribes the event stream `s` (from http_sse_start) to `n` topics, for as long
 * as the stream lives. Each message is sent as an event named after its topic ("event: TOPIC", the
 * message as data). A stream that cannot take a message (its output is over the bound) is ended and
 * counted as dropped-slow. False (nothing subscribed) when a topic is invalid or the loop is not
 * served. */
bool pubsub_subscribe_sse(http_stream *s, const char *const *topics, size_t n);

/* The WebSocket adapter: subscribes the connection `ws` to `topic`. Each message is sent as one
 * WebSocket message: text when it is valid UTF-8 (JSON is), binary otherwise. A connection that cannot
 * take a message (ws_send: its unsent bytes would pass websocket.send_queue_bytes) is closed 1008 by
 * ws_send and counted as dropped-slow; a connection already closing is skipped.
 *   Callback form (scope NULL): call it from on_open (or on_message), keep what it returns, and
 *   pubsub_unsubscribe it in on_close at the latest: the ws_conn is gone after on_close.
 *   Coroutine form: pass the connection's scope (run's argument); the subscription ends with it, that
 *   is with the connection, or earlier by pubsub_unsubscribe.
 * NULL when the topic is invalid or pub/sub does not serve the connection's loop. On ws's loop. */
pubsub_sub *pubsub_subscribe_ws(ws_conn *ws, async_scope *scope, const char *topic);

/* Counters (any thread): process-wide sums. */
typedef struct pubsub_stats {
    uint64_t published;         /* messages accepted by pubsub_publish */
    uint64_t received;          /* messages fanned out to this process's loops (local, or from Redis) */
    uint64_t delivered;         /* delivery callbacks run */
    uint64_t dropped_slow;      /* subscribers ended because they could not keep up */
    uint64_t dropped_backend;   /* messages the Redis backend could not PUBLISH (link down, error) */
    uint64_t subscribers;       /* gauge */
    uint64_t backend_up;        /* gauge: redis backend links up (0..2); 0 for local */
    uint64_t backend_reconnects; /* redis backend links re-established */
} pubsub_stats;
void pubsub_stats_read(pubsub_stats *out);
/* Counts a subscriber ended for being slow (for adapters of other transports, e.g. WebSocket). */
void pubsub_count_dropped_slow(void);

#endif
