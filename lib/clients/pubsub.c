/* pubsub: topics and their subscribers on every loop, and publishing to them from any thread
 * (include/apiary/pubsub.h, docs/streaming.md "Pub/sub").
 *
 * Each served loop has a pubsub_loop in its loop-local slot: a hash table of topics, each with a list
 * of subscribers, touched by that loop's thread only. A publish makes one refcounted copy of the
 * message and posts it to every loop whose subscriber count is not zero; the loop delivers it to the
 * topic's subscribers and drops its reference. The loop list is fixed between pubsub_start and
 * pubsub_stop and read under a mutex, so a publisher on another thread never posts to a loop that is
 * being freed.
 *
 * Delivery callbacks may unsubscribe anyone (an SSE subscriber that is too slow ends its stream,
 * whose scope cleanup unsubscribes every topic of it). The walk over a topic's subscribers therefore
 * keeps its next subscriber in the topic (`cursor`), which unsubscribing advances, and a topic left
 * empty during a walk is freed by the walk, not under it. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "async.h"
#include "http_loop_internal.h"
#include "http_request.h"
#include "log.h"
#include "metrics.h"
#include "pubsub_internal.h"
#include "schema_internal.h"
#include "stream.h"
#include "websocket.h"
#include "xalloc_internal.h"

typedef struct pubsub_topic pubsub_topic;
typedef struct pubsub_loop pubsub_loop;

struct pubsub_sub {
    pubsub_sub *prev, *next; /* in the topic's list */
    pubsub_topic *topic;
    pubsub_deliver_fn fn;
    void *arg;
    async_defer *defer; /* pubsub_subscribe_in: the scope's cleanup, cancelled by pubsub_unsubscribe */
};

struct pubsub_topic {
    pubsub_topic *chain; /* next in the hash bucket */
    pubsub_loop *owner;
    pubsub_sub *head, *tail;
    pubsub_sub *cursor;  /* the next subscriber of the walk in progress */
    bool walking;
    size_t count;
    size_t name_len;
    char name[];
};

struct pubsub_loop {
    http_loop *loop;
    pubsub_topic **buckets;
    size_t nbuckets; /* a power of two */
    size_t ntopics;
    uint64_t subscribers; /* atomic: read by publishers on other threads to skip idle loops */
    pubsub_redis *redis;  /* the relay loop's backend links (redis backend), else NULL */
};

static pthread_mutex_t pubsub_lock = PTHREAD_MUTEX_INITIALIZER;
static pubsub_loop **pubsub_loops; /* under pubsub_lock; NULL when not running */
static size_t pubsub_nloops;
static pubsub_settings pubsub_cfg;
static uint64_t pubsub_stats_v[PUBSUB_STAT_COUNT];

void pubsub_stat_add(unsigned field, long long n)
{
    __atomic_add_fetch(&pubsub_stats_v[field], (uint64_t)n, __ATOMIC_RELAXED);
}

void pubsub_count_dropped_slow(void) { pubsub_stat_add(PUBSUB_STAT_DROPPED_SLOW, 1); }

void pubsub_stats_read(pubsub_stats *out)
{
    uint64_t v[PUBSUB_STAT_COUNT];
    for (unsigned i = 0; i < PUBSUB_STAT_COUNT; i++)
        v[i] = __atomic_load_n(&pubsub_stats_v[i], __ATOMIC_RELAXED);
    *out = (pubsub_stats){.published = v[PUBSUB_STAT_PUBLISHED],
                          .received = v[PUBSUB_STAT_RECEIVED],
                          .delivered = v[PUBSUB_STAT_DELIVERED],
                          .dropped_slow = v[PUBSUB_STAT_DROPPED_SLOW],
                          .dropped_backend = v[PUBSUB_STAT_DROPPED_BACKEND],
                          .subscribers = v[PUBSUB_STAT_SUBSCRIBERS],
                          .backend_up = v[PUBSUB_STAT_BACKEND_UP],
                          .backend_reconnects = v[PUBSUB_STAT_RECONNECTS]};
}

const pubsub_settings *pubsub_current_settings(void) { return &pubsub_cfg; }

bool pubsub_topic_valid(const char *topic)
{
    if (!topic || !topic[0])
        return false;
    size_t n = 0;
    for (const char *p = topic; *p; p++, n++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                  c == '_' || c == ':' || c == '-';
        if (!ok || n >= PUBSUB_TOPIC_MAX)
            return false;
    }
    return true;
}

/* ---- messages --------------------------------------------------------------------------------- */

pubsub_msg *pubsub_msg_new(const char *topic, size_t topic_len, const void *data, size_t len)
{
    pubsub_msg *m = xmalloc(sizeof(*m) + len + 1 + topic_len + 1);
    m->refs = 1;
    m->len = len;
    m->topic_len = topic_len;
    if (len)
        memcpy(m->data, data, len);
    m->data[len] = '\0';
    m->topic = m->data + len + 1;
    memcpy(m->topic, topic, topic_len);
    m->topic[topic_len] = '\0';
    return m;
}

void pubsub_msg_unref(pubsub_msg *m)
{
    if (__atomic_sub_fetch(&m->refs, 1, __ATOMIC_ACQ_REL) == 0)
        free(m);
}

/* ---- a loop's topic table (its thread only) ---------------------------------------------------- */

static size_t pubsub_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ULL;
    return (size_t)h;
}

static pubsub_topic **pubsub_bucket(pubsub_loop *pl, const char *name, size_t n)
{
    return &pl->buckets[pubsub_hash(name, n) & (pl->nbuckets - 1)];
}

static pubsub_topic *pubsub_topic_find(pubsub_loop *pl, const char *name, size_t n)
{
    for (pubsub_topic *t = *pubsub_bucket(pl, name, n); t; t = t->chain)
        if (t->name_len == n && memcmp(t->name, name, n) == 0)
            return t;
    return NULL;
}

static void pubsub_grow(pubsub_loop *pl)
{
    size_t old_n = pl->nbuckets;
    pubsub_topic **old = pl->buckets;
    pl->nbuckets = old_n * 2;
    pl->buckets = xcalloc(pl->nbuckets, sizeof(*pl->buckets));
    for (size_t i = 0; i < old_n; i++) {
        pubsub_topic *t = old[i];
        while (t) {
            pubsub_topic *next = t->chain;
            pubsub_topic **b = pubsub_bucket(pl, t->name, t->name_len);
            t->chain = *b;
            *b = t;
            t = next;
        }
    }
    free(old);
}

static pubsub_topic *pubsub_topic_get(pubsub_loop *pl, const char *name)
{
    size_t n = strlen(name);
    pubsub_topic *t = pubsub_topic_find(pl, name, n);
    if (t)
        return t;
    if (pl->ntopics + 1 > pl->nbuckets)
        pubsub_grow(pl);
    t = xcalloc(1, sizeof(*t) + n + 1);
    t->owner = pl;
    t->name_len = n;
    memcpy(t->name, name, n + 1);
    pubsub_topic **b = pubsub_bucket(pl, name, n);
    t->chain = *b;
    *b = t;
    pl->ntopics++;
    return t;
}

static void pubsub_topic_free(pubsub_topic *t)
{
    pubsub_loop *pl = t->owner;
    for (pubsub_topic **p = pubsub_bucket(pl, t->name, t->name_len); *p; p = &(*p)->chain)
        if (*p == t) {
            *p = t->chain;
            break;
        }
    pl->ntopics--;
    free(t);
}

static pubsub_loop *pubsub_loop_of(http_loop *loop)
{
    return loop ? http_loop_local(loop, HTTP_LOOP_SLOT_PUBSUB) : NULL;
}

/* ---- subscribing ------------------------------------------------------------------------------- */

pubsub_sub *pubsub_subscribe(http_loop *loop, const char *topic, pubsub_deliver_fn fn, void *arg)
{
    pubsub_loop *pl = pubsub_loop_of(loop);
    if (!pl || !fn || !pubsub_topic_valid(topic))
        return NULL;
    pubsub_topic *t = pubsub_topic_get(pl, topic);
    pubsub_sub *s = xcalloc(1, sizeof(*s));
    s->topic = t;
    s->fn = fn;
    s->arg = arg;
    s->prev = t->tail;
    if (t->tail)
        t->tail->next = s;
    else
        t->head = s;
    t->tail = s;
    t->count++;
    __atomic_add_fetch(&pl->subscribers, 1, __ATOMIC_RELAXED);
    pubsub_stat_add(PUBSUB_STAT_SUBSCRIBERS, 1);
    return s;
}

static void pubsub_unlink(pubsub_sub *s)
{
    pubsub_topic *t = s->topic;
    pubsub_loop *pl = t->owner;
    if (t->cursor == s)
        t->cursor = s->next;
    if (s->prev)
        s->prev->next = s->next;
    else
        t->head = s->next;
    if (s->next)
        s->next->prev = s->prev;
    else
        t->tail = s->prev;
    t->count--;
    __atomic_sub_fetch(&pl->subscribers, 1, __ATOMIC_RELAXED);
    pubsub_stat_add(PUBSUB_STAT_SUBSCRIBERS, -1);
    if (t->count == 0 && !t->walking)
        pubsub_topic_free(t);
    free(s);
}

/* The scope ended first: the defer handle is gone with it. */
static void pubsub_scope_ended(void *arg)
{
    pubsub_sub *s = arg;
    s->defer = NULL;
    pubsub_unlink(s);
}

pubsub_sub *pubsub_subscribe_in(async_scope *scope, http_loop *loop, const char *topic, pubsub_deliver_fn fn,
                                void *arg)
{
    if (!scope)
        return NULL;
    pubsub_sub *s = pubsub_subscribe(loop, topic, fn, arg);
    if (s)
        s->defer = async_scope_defer(scope, pubsub_scope_ended, s);
    return s;
}

void pubsub_unsubscribe(pubsub_sub *s)
{
    if (!s)
        return;
    if (s->defer)
        async_defer_cancel(s->defer);
    pubsub_unlink(s);
}

/* ---- delivering (on the subscriber's loop) ------------------------------------------------------ */

typedef struct pubsub_post {
    pubsub_loop *pl;
    pubsub_msg *m;
} pubsub_post;

static void pubsub_deliver(void *arg)
{
    pubsub_post *p = arg;
    pubsub_loop *pl = p->pl;
    pubsub_msg *m = p->m;
    free(p);
    pubsub_topic *t = pl->buckets ? pubsub_topic_find(pl, m->topic, m->topic_len) : NULL;
    if (t && !t->walking) { /* walking: cannot happen (deliveries never nest), but never walk twice */
        pubsub_message msg = {.topic = m->topic, .data = m->data, .len = m->len};
        uint64_t n = 0;
        t->walking = true;
        t->cursor = t->head;
        while (t->cursor) {
            pubsub_sub *s = t->cursor;
            t->cursor = s->next;
            s->fn(s, &msg, s->arg);
            n++;
        }
        t->walking = false;
        free(msg._sse);
        pubsub_stat_add(PUBSUB_STAT_DELIVERED, (long long)n);
        if (t->count == 0)
            pubsub_topic_free(t);
    }
    pubsub_msg_unref(m);
}

void pubsub_fanout(pubsub_msg *m)
{
    pubsub_stat_add(PUBSUB_STAT_RECEIVED, 1);
    pthread_mutex_lock(&pubsub_lock);
    for (size_t i = 0; pubsub_loops && i < pubsub_nloops; i++) {
        pubsub_loop *pl = pubsub_loops[i];
        if (__atomic_load_n(&pl->subscribers, __ATOMIC_RELAXED) == 0)
            continue;
        pubsub_post *p = xmalloc(sizeof(*p));
        p->pl = pl;
        p->m = m;
        __atomic_add_fetch(&m->refs, 1, __ATOMIC_RELAXED);
        http_loop_post(pl->loop, pubsub_deliver, p);
    }
    pthread_mutex_unlock(&pubsub_lock);
    pubsub_msg_unref(m);
}

int pubsub_publish(const char *topic, const void *data, size_t len)
{
    if (!pubsub_topic_valid(topic) || (len && !data))
        return PUBSUB_INVALID;
    pthread_mutex_lock(&pubsub_lock);
    bool running = pubsub_loops != NULL;
    size_t max = pubsub_cfg.max_message_bytes;
    pubsub_backend backend = pubsub_cfg.backend;
    pthread_mutex_unlock(&pubsub_lock);
    if (!running)
        return PUBSUB_UNAVAILABLE;
    if (len > max)
        return PUBSUB_INVALID;
    pubsub_msg *m = pubsub_msg_new(topic, strlen(topic), data, len);
    if (backend == PUBSUB_BACKEND_REDIS) {
        int rc = pubsub_redis_publish(m);
        if (rc == PUBSUB_OK)
            pubsub_stat_add(PUBSUB_STAT_PUBLISHED, 1);
        return rc;
    }
    pubsub_stat_add(PUBSUB_STAT_PUBLISHED, 1);
    pubsub_fanout(m);
    return PUBSUB_OK;
}

/* ---- the SSE adapter ---------------------------------------------------------------------------- */

static void pubsub_sse_deliver(pubsub_sub *sub, const pubsub_message *msg, void *arg)
{
    (void)sub;
    http_stream *s = arg;
    if (!msg->_sse) {
        /* Formatted once per loop and message, written to every stream of the walk (the walk frees
         * it); a topic name is valid as an event name (no line breaks). */
        pubsub_message *m = (pubsub_message *)msg;
        size_t cap = 0;
        http_sse_format(&m->_sse, &m->_sse_len, &cap, msg->topic, NULL, msg->data, msg->len);
    }
    int rc = http_stream_write(s, msg->_sse, msg->_sse_len);
    if (rc == HTTP_STREAM_FULL) {
        /* The client reads slower than messages come. Queueing more would grow memory without bound,
         * and skipping this one would leave a gap the client cannot see: end the stream, so its
         * EventSource reconnects and knows it missed messages. Ending the stream ends its request,
         * whose scope cleanups unsubscribe all of its topics (this subscription included). */
        pubsub_count_dropped_slow();
        log_info("pubsub: SSE subscriber on topic %s dropped: over limits.output_buffer_bytes (too slow)",
                 msg->topic);
        http_stream_end(s);
    }
}

bool pubsub_subscribe_sse(http_stream *s, const char *const *topics, size_t n)
{
    if (!s)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!pubsub_topic_valid(topics[i]))
            return false;
    http_request *req = http_stream_request(s);
    http_loop *loop = http_request_loop(req);
    if (!pubsub_loop_of(loop))
        return false;
    async_scope *scope = http_request_async(req); /* the stream's request already holds its scope */
    for (size_t i = 0; i < n; i++)
        if (!pubsub_subscribe_in(scope, loop, topics[i], pubsub_sse_deliver, s))
            return false; /* cannot happen after the checks above; earlier ones end with the scope */
    return true;
}

/* ---- the WebSocket adapter ---------------------------------------------------------------------- */

static void pubsub_ws_deliver(pubsub_sub *sub, const pubsub_message *msg, void *arg)
{
    (void)sub;
    ws_conn *ws = arg;
    if (ws_closing(ws))
        return; /* closing anyway (1008 already, the peer's close, the drain): on_close or the scope
                 * unsubscribes it; counting it again would count one slow client twice */
    if (!msg->_ws_type) {
        /* Checked once per loop and message for all its connections (like the SSE text): a text
         * message must be UTF-8 (a peer closes 1007 on one that is not), so anything else, which a
         * publisher may send, goes as binary rather than be refused. */
        pubsub_message *m = (pubsub_message *)msg;
        m->_ws_type = schema_utf8_valid(msg->data, msg->len) ? WS_TEXT : WS_BINARY;
    }
    if (ws_send(ws, (ws_type)msg->_ws_type, msg->data, msg->len) != 0 && ws_closing(ws)) {
        /* ws_send closed it 1008: the client reads slower than messages come, and its send queue is
         * at websocket.send_queue_bytes. As for SSE, the client reconnects and knows it missed some. */
        pubsub_count_dropped_slow();
        log_info("pubsub: WebSocket subscriber on topic %s dropped: over websocket.send_queue_bytes (too slow)",
                 msg->topic);
    }
}

pubsub_sub *pubsub_subscribe_ws(ws_conn *ws, async_scope *scope, const char *topic)
{
    if (!ws)
        return NULL;
    return scope ? pubsub_subscribe_in(scope, ws_loop(ws), topic, pubsub_ws_deliver, ws)
                 : pubsub_subscribe(ws_loop(ws), topic, pubsub_ws_deliver, ws);
}

/* ---- start and stop ----------------------------------------------------------------------------- */

static void pubsub_loop_free(void *value)
{
    pubsub_loop *pl = value;
    if (pl->redis)
        pubsub_redis_free(pl->redis);
    /* Every request (and so every scoped subscription) is gone; what remains was subscribed without a
     * scope and never unsubscribed: free it with its topic. */
    for (size_t i = 0; i < pl->nbuckets; i++) {
        pubsub_topic *t = pl->buckets[i];
        while (t) {
            pubsub_topic *next = t->chain;
            for (pubsub_sub *s = t->head; s;) {
                pubsub_sub *sn = s->next;
                pubsub_stat_add(PUBSUB_STAT_SUBSCRIBERS, -1);
                free(s);
                s = sn;
            }
            free(t);
            t = next;
        }
    }
    free(pl->buckets);
    free(pl);
}

static void pubsub_relay_start(void *arg)
{
    pubsub_loop *pl = arg;
    pl->redis = pubsub_redis_new(pl->loop, &pubsub_cfg);
}

void pubsub_start(const pubsub_settings *s, http_loop **loops, size_t n)
{
    pubsub_loop **pls = xcalloc(n ? n : 1, sizeof(*pls));
    for (size_t i = 0; i < n; i++) {
        pubsub_loop *pl = xcalloc(1, sizeof(*pl));
        pl->loop = loops[i];
        pl->nbuckets = 16;
        pl->buckets = xcalloc(pl->nbuckets, sizeof(*pl->buckets));
        http_loop_set_local(loops[i], HTTP_LOOP_SLOT_PUBSUB, pl, pubsub_loop_free);
        pls[i] = pl;
    }
    pthread_mutex_lock(&pubsub_lock);
    pubsub_cfg = *s;
    pubsub_loops = pls;
    pubsub_nloops = n;
    pthread_mutex_unlock(&pubsub_lock);
    if (s->backend == PUBSUB_BACKEND_REDIS && n > 0)
        http_loop_post(loops[0], pubsub_relay_start, pls[0]);
}

bool pubsub_post_relay(void (*fn)(void *arg), void *arg)
{
    /* Under the lock, so pubsub_stop (and then http_loop_free) cannot come between the check and the
     * post; whatever is posted before the loop is freed is run (and frees its message) by it. */
    pthread_mutex_lock(&pubsub_lock);
    bool ok = pubsub_loops && pubsub_nloops;
    if (ok)
        http_loop_post(pubsub_loops[0]->loop, fn, arg);
    pthread_mutex_unlock(&pubsub_lock);
    return ok;
}

bool pubsub_running(void)
{
    pthread_mutex_lock(&pubsub_lock);
    bool running = pubsub_loops != NULL;
    pthread_mutex_unlock(&pubsub_lock);
    return running;
}

void pubsub_stop(void)
{
    pthread_mutex_lock(&pubsub_lock);
    free(pubsub_loops);
    pubsub_loops = NULL;
    pubsub_nloops = 0;
    pthread_mutex_unlock(&pubsub_lock);
}

/* ---- /metrics ------------------------------------------------------------------------------------ */

void pubsub_metrics_source(metrics_writer *w, void *arg)
{
    (void)arg;
    pubsub_stats s;
    pubsub_stats_read(&s);
    struct {
        const char *name, *type, *help;
        uint64_t value;
    } rows[] = {
        {"apiary_pubsub_published_total", "counter", "Messages accepted by pubsub_publish.", s.published},
        {"apiary_pubsub_received_total", "counter", "Messages fanned out to this process's loops.", s.received},
        {"apiary_pubsub_delivered_total", "counter", "Messages handed to a subscriber.", s.delivered},
        {"apiary_pubsub_subscribers", "gauge", "Subscriptions now.", s.subscribers},
        {"apiary_pubsub_backend_links_up", "gauge", "Redis backend links up now (0..2).", s.backend_up},
        {"apiary_pubsub_backend_reconnects_total", "counter", "Redis backend links re-established.",
         s.backend_reconnects},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        metrics_family(w, rows[i].name, rows[i].type, rows[i].help);
        metrics_sample_u64(w, rows[i].name, NULL, rows[i].value);
    }
    metrics_family(w, "apiary_pubsub_dropped_total", "counter",
                   "Subscribers ended for being too slow (slow), messages the backend could not carry (backend).");
    metrics_sample_u64(w, "apiary_pubsub_dropped_total", "reason=\"slow\"", s.dropped_slow);
    metrics_sample_u64(w, "apiary_pubsub_dropped_total", "reason=\"backend\"", s.dropped_backend);
}
