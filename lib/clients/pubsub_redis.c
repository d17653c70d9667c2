/* pubsub_redis: the Redis backend of pub/sub (pubsub.backend "redis"). Two hiredis links on one loop of
 * the process (loop 0, the relay loop): a subscriber link in PSUBSCRIBE mode on "PREFIX*", which hands
 * every message that arrives to the subscribers on all loops (pubsub_fanout), and a publisher link
 * (a subscribed link cannot PUBLISH) that sends what pubsub_publish posts to the relay loop. One
 * pattern subscription per process instead of one SUBSCRIBE per topic: nothing to keep in step with
 * the topics the loops hold, and a single command to re-issue after a reconnect; the price is that
 * each instance receives every message of the prefix, also for topics nobody here follows (the
 * loops drop those at once).
 *
 * Both links reconnect with capped exponential backoff (100 ms doubling to 2 s, like the Redis
 * client); the subscriber link re-issues its PSUBSCRIBE on every connect. Messages published while
 * Redis is away are refused (PUBSUB_UNAVAILABLE) when the publisher link is known to be down, and
 * dropped and counted when it goes down with them in flight: pub/sub is at-most-once, as Redis
 * PUBLISH itself is. Bytes waiting to be PUBLISHed are bounded (PUBSUB_REDIS_MAX_PENDING): past it
 * pubsub_publish answers PUBSUB_BUSY instead of growing the relay loop's queue.
 *
 * Threads: pubsub_redis_publish from any thread; everything else on the relay loop's thread. */
#include <stdlib.h>
#include <string.h>

#include <event2/event.h>
#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "async.h"
#include "http_loop_internal.h"
#include "log.h"
#include "pubsub_internal.h"
#include "redis_internal.h"
#include "xalloc_internal.h"

#define PUBSUB_REDIS_BACKOFF_BASE_MS 100u
#define PUBSUB_REDIS_BACKOFF_MAX_MS 2000u
#define PUBSUB_REDIS_MAX_PENDING ((uint64_t)16 << 20) /* bytes accepted, not yet PUBLISHed */

typedef struct pubsub_link {
    pubsub_redis *r;
    bool sub;                /* the subscriber link (else the publisher) */
    const char *name;
    redisAsyncContext *ac;   /* while connecting or up */
    bool up;
    bool ever_up;
    bool logged;             /* the outage was logged: say when it is over */
    bool proven;             /* this connection did its job once (subscribed, or a PUBLISH answered) */
    unsigned failures;
    struct event *timer;     /* backoff, and the connect deadline */
    redis_reader_guard guard;
} pubsub_link;

struct pubsub_redis {
    struct event_base *base;
    const pubsub_settings *s;
    char pattern[sizeof(((pubsub_settings *)0)->channel_prefix) + 1];
    pubsub_link sub, pub;
    bool closing;
};

/* The relay loop's backend, read only on its thread; publishers on other threads see only these. */
static pubsub_redis *pubsub_redis_current;
static bool pubsub_redis_pub_up;           /* atomic */
static uint64_t pubsub_redis_pending_bytes; /* atomic */

static void pubsub_link_connect(pubsub_link *l);

static void pubsub_link_timer_arm(pubsub_link *l, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(l->timer, &tv);
}

static void pubsub_link_backoff(pubsub_link *l)
{
    if (l->r->closing)
        return;
    uint64_t delay = 0;
    if (l->failures > 0) {
        unsigned shift = l->failures - 1 < 5 ? l->failures - 1 : 5;
        delay = (uint64_t)PUBSUB_REDIS_BACKOFF_BASE_MS << shift;
        if (delay > PUBSUB_REDIS_BACKOFF_MAX_MS)
            delay = PUBSUB_REDIS_BACKOFF_MAX_MS;
    }
    pubsub_link_timer_arm(l, delay);
}

static void pubsub_link_set_up(pubsub_link *l, bool up)
{
    if (l->up == up)
        return;
    l->up = up;
    pubsub_stat_add(PUBSUB_STAT_BACKEND_UP, up ? 1 : -1);
    if (!l->sub)
        __atomic_store_n(&pubsub_redis_pub_up, up, __ATOMIC_RELEASE);
}

static void pubsub_link_failed(pubsub_link *l, const char *why)
{
    const redis_settings *rs = l->r->s->redis;
    if (!l->logged)
        log_warn("pubsub: redis %s link to %s:%u: %s (retrying with backoff)", l->name, rs->host, rs->port, why);
    l->logged = true;
    l->failures++;
    pubsub_link_backoff(l);
}

/* A message on the subscriber link: ["pmessage", pattern, channel, payload], or the PSUBSCRIBE
 * confirmation ["psubscribe", pattern, count]. NULL when the link goes away. */
static void pubsub_on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    (void)ac;
    pubsub_link *l = privdata;
    redisReply *r = reply;
    if (!r || r->type != REDIS_REPLY_ARRAY || r->elements < 3 || r->element[0]->type != REDIS_REPLY_STRING)
        return;
    if (strcmp(r->element[0]->str, "psubscribe") == 0) {
        l->proven = true; /* subscribed: the link works */
        l->failures = 0;
        pubsub_link_set_up(l, true);
        return;
    }
    if (strcmp(r->element[0]->str, "pmessage") != 0 || r->elements != 4)
        return;
    const redisReply *ch = r->element[2], *payload = r->element[3];
    size_t plen = strlen(l->r->s->channel_prefix);
    if (ch->type != REDIS_REPLY_STRING || payload->type != REDIS_REPLY_STRING || (size_t)ch->len <= plen)
        return;
    const char *topic = ch->str + plen;
    size_t topic_len = (size_t)ch->len - plen;
    /* Someone else may publish on our channels: take only what a local publish would accept. */
    char name[PUBSUB_TOPIC_MAX + 1];
    if (topic_len > PUBSUB_TOPIC_MAX || (size_t)payload->len > l->r->s->max_message_bytes) {
        pubsub_stat_add(PUBSUB_STAT_DROPPED_BACKEND, 1);
        return;
    }
    memcpy(name, topic, topic_len);
    name[topic_len] = '\0';
    if (!pubsub_topic_valid(name)) {
        pubsub_stat_add(PUBSUB_STAT_DROPPED_BACKEND, 1);
        return;
    }
    pubsub_fanout(pubsub_msg_new(name, topic_len, payload->str, (size_t)payload->len));
}

static void pubsub_on_connect(const redisAsyncContext *ac, int status)
{
    pubsub_link *l = ac->data;
    evtimer_del(l->timer);
    if (status != REDIS_OK) {
        l->ac = NULL; /* hiredis frees it when this returns */
        pubsub_link_failed(l, ac->errstr[0] ? ac->errstr : "connection failed");
        return;
    }
    const redis_settings *rs = l->r->s->redis;
    if (l->logged)
        log_info("pubsub: redis %s link to %s:%u connected again", l->name, rs->host, rs->port);
    l->logged = false;
    if (l->ever_up)
        pubsub_stat_add(PUBSUB_STAT_RECONNECTS, 1);
    l->ever_up = true;
    if (l->sub) {
        /* Up once Redis confirms the subscription (pubsub_on_sub_reply). */
        const char *argv[2] = {"PSUBSCRIBE", l->r->pattern};
        const size_t argvlen[2] = {10, strlen(l->r->pattern)};
        redisAsyncCommandArgv(l->ac, pubsub_on_sub_reply, l, 2, argv, argvlen);
    } else {
        pubsub_link_set_up(l, true);
    }
}

static void pubsub_on_disconnect(const redisAsyncContext *ac, int status)
{
    pubsub_link *l = ac->data;
    l->ac = NULL;
    pubsub_link_set_up(l, false);
    if (l->r->closing)
        return;
    const redis_settings *rs = l->r->s->redis;
    if (!l->logged)
        log_warn("pubsub: redis %s link to %s:%u lost: %s; reconnecting", l->name, rs->host, rs->port,
                 status == REDIS_OK || !ac->errstr[0] ? "connection closed" : ac->errstr);
    l->logged = true;
    /* A connection that did its job retries at once; one closed before that (Redis at maxclients,
     * or a peer that is no Redis) counts as a failed attempt, or it would reconnect in a tight loop. */
    if (l->proven)
        l->failures = 0;
    else
        l->failures++;
    l->proven = false;
    pubsub_link_backoff(l);
}

static void pubsub_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    pubsub_link *l = arg;
    if (!l->ac) {
        pubsub_link_connect(l);
        return;
    }
    if (!l->up && !(l->ac->c.flags & REDIS_CONNECTED)) { /* the connect deadline passed */
        redisAsyncContext *ac = l->ac;
        l->ac = NULL;
        redisAsyncFree(ac); /* never connected: no disconnect callback */
        pubsub_link_failed(l, "connect timed out");
    }
}

static bool pubsub_link_waiting(void *arg)
{
    pubsub_link *l = arg;
    return l->ac && l->ac->replies.head != NULL;
}

static void pubsub_link_connect(pubsub_link *l)
{
    const redis_settings *rs = l->r->s->redis;
    redisAsyncContext *ac = redisAsyncConnect(rs->host, (int)rs->port);
    if (!ac || ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        pubsub_link_failed(l, why);
        return;
    }
    ac->data = l;
    redis_reader_bound(ac->c.reader);
    if (!l->sub) { /* the subscriber link gets pushes by design; the publisher only answers */
        l->guard = (redis_reader_guard){.waiting = pubsub_link_waiting, .arg = l};
        redis_reader_guard_set(ac->c.reader, &l->guard);
    }
    if (redisLibeventAttach(ac, l->r->base) != REDIS_OK) {
        redisAsyncFree(ac);
        pubsub_link_failed(l, "cannot attach to the event loop");
        return;
    }
    redisAsyncSetConnectCallback(ac, pubsub_on_connect);
    redisAsyncSetDisconnectCallback(ac, pubsub_on_disconnect);
    redisEnableKeepAlive(&ac->c); /* an idle subscriber link notices a vanished peer */
    l->ac = ac;
    pubsub_link_timer_arm(l, rs->connect_timeout_ms);
}

static void pubsub_link_init(pubsub_redis *r, pubsub_link *l, bool sub)
{
    l->r = r;
    l->sub = sub;
    l->name = sub ? "subscriber" : "publisher";
    l->timer = evtimer_new(r->base, pubsub_on_timer, l);
}

pubsub_redis *pubsub_redis_new(http_loop *loop, const pubsub_settings *s)
{
    pubsub_redis *r = xcalloc(1, sizeof(*r));
    r->base = http_loop_base(loop);
    r->s = s;
    snprintf(r->pattern, sizeof(r->pattern), "%s*", s->channel_prefix);
    pubsub_link_init(r, &r->sub, true);
    pubsub_link_init(r, &r->pub, false);
    pubsub_redis_current = r;
    pubsub_link_connect(&r->sub);
    pubsub_link_connect(&r->pub);
    return r;
}

void pubsub_redis_free(pubsub_redis *r)
{
    r->closing = true;
    pubsub_redis_current = NULL;
    pubsub_link *links[2] = {&r->sub, &r->pub};
    for (int i = 0; i < 2; i++) {
        pubsub_link *l = links[i];
        event_free(l->timer);
        if (l->ac) {
            redisAsyncContext *ac = l->ac;
            l->ac = NULL;
            redisAsyncFree(ac); /* pending callbacks get NULL; the disconnect callback sees closing */
        }
        pubsub_link_set_up(l, false);
    }
    free(r);
}

/* ---- publishing ---------------------------------------------------------------------------------- */

static void pubsub_on_publish_reply(redisAsyncContext *ac, void *reply, void *privdata)
{
    pubsub_msg *m = privdata;
    redisReply *r = reply;
    __atomic_sub_fetch(&pubsub_redis_pending_bytes, m->len, __ATOMIC_RELAXED);
    if (!r || r->type == REDIS_REPLY_ERROR) {
        pubsub_stat_add(PUBSUB_STAT_DROPPED_BACKEND, 1);
    } else {
        pubsub_redis *pr = ac->data ? ((pubsub_link *)ac->data)->r : NULL;
        if (pr) {
            pr->pub.proven = true;
            pr->pub.failures = 0;
        }
    }
    pubsub_msg_unref(m);
}

/* On the relay loop. */
static void pubsub_redis_send(void *arg)
{
    pubsub_msg *m = arg;
    pubsub_redis *r = pubsub_redis_current;
    if (!r || !r->pub.up || !r->pub.ac) {
        __atomic_sub_fetch(&pubsub_redis_pending_bytes, m->len, __ATOMIC_RELAXED);
        pubsub_stat_add(PUBSUB_STAT_DROPPED_BACKEND, 1);
        pubsub_msg_unref(m);
        return;
    }
    char channel[sizeof(r->s->channel_prefix) + PUBSUB_TOPIC_MAX + 1];
    int clen = snprintf(channel, sizeof(channel), "%s%s", r->s->channel_prefix, m->topic);
    const char *argv[3] = {"PUBLISH", channel, m->data};
    const size_t argvlen[3] = {7, (size_t)clen, m->len};
    if (redisAsyncCommandArgv(r->pub.ac, pubsub_on_publish_reply, m, 3, argv, argvlen) != REDIS_OK) {
        __atomic_sub_fetch(&pubsub_redis_pending_bytes, m->len, __ATOMIC_RELAXED);
        pubsub_stat_add(PUBSUB_STAT_DROPPED_BACKEND, 1);
        pubsub_msg_unref(m);
    }
}

int pubsub_redis_publish(pubsub_msg *m)
{
    if (!__atomic_load_n(&pubsub_redis_pub_up, __ATOMIC_ACQUIRE)) {
        pubsub_msg_unref(m);
        return PUBSUB_UNAVAILABLE;
    }
    if (__atomic_add_fetch(&pubsub_redis_pending_bytes, m->len, __ATOMIC_RELAXED) > PUBSUB_REDIS_MAX_PENDING) {
        __atomic_sub_fetch(&pubsub_redis_pending_bytes, m->len, __ATOMIC_RELAXED);
        pubsub_msg_unref(m);
        return PUBSUB_BUSY;
    }
    if (!pubsub_post_relay(pubsub_redis_send, m)) { /* stopping */
        __atomic_sub_fetch(&pubsub_redis_pending_bytes, m->len, __ATOMIC_RELAXED);
        pubsub_msg_unref(m);
        return PUBSUB_UNAVAILABLE;
    }
    return PUBSUB_OK;
}
