/* redis: the per-loop Redis client (see redis.h for the model): links and their life (connect with a
 * deadline, reconnect with capped exponential backoff, drop on a stall), commands in flight and their
 * timeouts, and the counters.
 *
 * Who owns what. The client owns its links; a link owns its hiredis context while connecting or up.
 * Every command batch written to a link has a redis_pending record, owned by the client and freed in
 * the hiredis callback of its last reply. hiredis calls that callback exactly once per command, with
 * the reply or, when the context is freed (link lost, connect failed, client freed), with NULL, so
 * the record is always freed and never twice. The operation the record completes lives in a scope
 * that may end first; its cancel hook then only clears record->op, so a late reply finds no one to
 * deliver to and is dropped.
 *
 * hiredis rules followed here (0.14): never free a context from its connect or disconnect callback
 * (hiredis is still using it); redisAsyncFree from a reply callback is deferred until the callback
 * returns; when an established context goes away, pending callbacks get NULL first and the
 * disconnect callback runs last. */
#include "redis.h"
#include "redis_internal.h"

#include <event2/event.h>
#include <event2/event_struct.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <hiredis/adapters/libevent.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>

#include "http_loop_internal.h"
#include "log.h"
#include "xalloc_internal.h"

const char REDIS_ERROR_UNAVAILABLE[] = "unavailable";
const char REDIS_ERROR_TIMEOUT[] = "timeout";
const char REDIS_ERROR_CONNECTION_LOST[] = "connection_lost";
const char REDIS_ERROR_NOT_CONFIGURED[] = "not_configured";

/* Reconnect delays: the first retry after losing an established link is immediate (a restarted Redis
 * is back at once), then 100 ms doubling up to 2 s, each +-20 % so loops do not retry in lockstep. */
#define REDIS_BACKOFF_BASE_MS 100u
#define REDIS_BACKOFF_MAX_MS 2000u
/* Commands in flight on one link before it counts as full; only reached when Redis stops answering
 * while requests keep coming, and then failing fast beats queueing without bound. */
#define REDIS_LINK_MAX_INFLIGHT 65536u
/* A link with commands in flight and no reply for this long is dead or hung (a half-open TCP
 * connection would otherwise wait for the kernel's retransmission timeout, many minutes): it is
 * dropped and reconnected. Long enough that a slow Redis command is not mistaken for it. */
#define REDIS_STALL_MIN_MS 5000u
#define REDIS_STALL_TIMEOUT_FACTOR 10u

typedef enum redis_link_state {
    REDIS_LINK_IDLE,       /* not started: the client connects on first use */
    REDIS_LINK_CONNECTING, /* commands queue in hiredis's output buffer until connected */
    REDIS_LINK_UP,
    REDIS_LINK_BACKOFF,    /* down, waiting to retry: commands fail at once */
} redis_link_state;

typedef struct redis_link {
    redis_client *client;
    unsigned index;
    redis_link_state state;
    redisAsyncContext *ac;  /* set while CONNECTING or UP */
    struct event *timer;    /* CONNECTING: the connect deadline; BACKOFF: the retry */
    unsigned failures;      /* consecutive failed attempts: the backoff exponent */
    bool was_up;            /* established at least once (for "reconnects") */
    bool proven;            /* a reply arrived since it connected (see redis_link_proven) */
    bool outage_logged;     /* one warning per outage, not one per retry */
    bool dropping;          /* we are closing it ourselves: the disconnect callback stays quiet */
    size_t inflight;        /* commands written whose callback has not run yet */
    uint64_t progress_ms;   /* last reply, or when it went from idle to busy */
    redis_reader_guard guard; /* refuses a reply no command waits for (redis_internal.h) */
} redis_link;

struct redis_client {
    struct event_base *base;
    const redis_settings *settings;
    unsigned id;
    bool started;
    bool closing;
    redis_link *links;
    unsigned link_count;
    struct timeval command_tv;
    const struct timeval *command_timeout; /* a libevent common timeout when one was available */
    uint64_t stall_ms;
    unsigned rand_state;
    redis_stats stats;                     /* written on the client's thread only, read by any */
    redis_client *reg_prev, *reg_next;     /* the registry, under redis_registry_lock */
};

/* One batch of commands written together; see the top of the file for its life. */
typedef struct redis_pending {
    redis_link *link;
    async_op *op;          /* NULL once disowned (cancelled, timed out, failed): replies are dropped */
    async_scope *scope;    /* op's scope, valid while op is set */
    size_t count;          /* commands in the batch */
    size_t received;       /* callbacks run so far */
    bool single;           /* redis_command: the value is the one reply, an error reply fails */
    redis_reply *replies;  /* scope memory, `count` entries, filled as replies arrive */
    struct event timer;    /* the command timeout */
} redis_pending;

/* ---- counters ---------------------------------------------------------------------------------- */

/* Every client is registered so redis_stats_read can sum them from any thread; a freed client's
 * counters move into redis_retired so the sums never go down. */
static pthread_mutex_t redis_registry_lock = PTHREAD_MUTEX_INITIALIZER;
static redis_client *redis_registry;
static redis_stats redis_retired;

#define REDIS_STATS_FIELDS (sizeof(redis_stats) / sizeof(uint64_t))

/* Only the client's own thread writes its counters, so a relaxed load and store suffice (no locked
 * instruction on the command path); readers on other threads see each field whole. */
static void redis_stat_add(uint64_t *field, int64_t n)
{
    __atomic_store_n(field, __atomic_load_n(field, __ATOMIC_RELAXED) + (uint64_t)n, __ATOMIC_RELAXED);
}

#define REDIS_STAT(c, field, n) redis_stat_add(&(c)->stats.field, (n))

void redis_stats_read(redis_stats *out)
{
    uint64_t *dst = (uint64_t *)out;
    pthread_mutex_lock(&redis_registry_lock);
    memcpy(out, &redis_retired, sizeof(*out));
    for (redis_client *c = redis_registry; c; c = c->reg_next) {
        const uint64_t *src = (const uint64_t *)&c->stats;
        for (size_t i = 0; i < REDIS_STATS_FIELDS; i++)
            dst[i] += __atomic_load_n(&src[i], __ATOMIC_RELAXED);
    }
    pthread_mutex_unlock(&redis_registry_lock);
}

static void redis_registry_add(redis_client *c)
{
    pthread_mutex_lock(&redis_registry_lock);
    c->reg_next = redis_registry;
    if (redis_registry)
        redis_registry->reg_prev = c;
    redis_registry = c;
    pthread_mutex_unlock(&redis_registry_lock);
}

static void redis_registry_remove(redis_client *c)
{
    pthread_mutex_lock(&redis_registry_lock);
    if (c->reg_prev)
        c->reg_prev->reg_next = c->reg_next;
    else
        redis_registry = c->reg_next;
    if (c->reg_next)
        c->reg_next->reg_prev = c->reg_prev;
    uint64_t *dst = (uint64_t *)&redis_retired;
    const uint64_t *src = (const uint64_t *)&c->stats;
    for (size_t i = 0; i < REDIS_STATS_FIELDS; i++)
        dst[i] += src[i];
    pthread_mutex_unlock(&redis_registry_lock);
}

/* ---- links ------------------------------------------------------------------------------------- */

static void redis_link_connect(redis_link *link);

static void redis_timer_arm(struct event *ev, uint64_t ms)
{
    struct timeval tv = {(time_t)(ms / 1000), (suseconds_t)(ms % 1000) * 1000};
    evtimer_add(ev, &tv);
}

/* Down: wait, then try again. failures == 0 (an established link was lost) retries at once. */
static void redis_link_backoff(redis_link *link)
{
    redis_client *c = link->client;
    link->state = REDIS_LINK_BACKOFF;
    uint64_t delay = 0;
    if (link->failures > 0) {
        unsigned shift = link->failures - 1 < 5 ? link->failures - 1 : 5;
        delay = (uint64_t)REDIS_BACKOFF_BASE_MS << shift;
        if (delay > REDIS_BACKOFF_MAX_MS)
            delay = REDIS_BACKOFF_MAX_MS;
        /* +-20 % jitter from a per-client generator: only spreads retries, no quality needed. */
        delay = delay * (80 + (uint64_t)(rand_r(&c->rand_state) % 41)) / 100;
    }
    redis_timer_arm(link->timer, delay);
}

/* A connection attempt failed (refused, unreachable, timed out). The context, if any, is already gone
 * or being freed by hiredis. */
static void redis_link_failed(redis_link *link, const char *why)
{
    redis_client *c = link->client;
    const redis_settings *s = c->settings;
    link->ac = NULL;
    REDIS_STAT(c, connect_failures, 1);
    if (!link->outage_logged) {
        log_warn("redis: loop %u link %u cannot connect to %s:%u: %s (retrying with backoff)", c->id,
                 link->index, s->host, s->port, why);
        link->outage_logged = true;
    } else {
        log_debug("redis: loop %u link %u: connect to %s:%u failed again: %s", c->id, link->index, s->host,
                  s->port, why);
    }
    link->failures++;
    redis_link_backoff(link);
}

/* Closes a link on our own initiative. Connecting: its queued commands fail "unavailable" and the
 * retry follows the backoff. Established: pending commands fail "connection_lost" (hiredis runs their
 * callbacks with NULL while the link still reads as UP), then the disconnect callback schedules the
 * reconnect; from inside a reply callback hiredis defers the free until the callback returns. */
static void redis_link_drop(redis_link *link, const char *why)
{
    if (!link->ac || link->dropping)
        return;
    redis_client *c = link->client;
    if (link->state == REDIS_LINK_CONNECTING) {
        redisAsyncContext *ac = link->ac;
        /* Not UP while the callbacks run; a context that never connected gets no disconnect
         * callback, so the retry is scheduled here. */
        link->state = REDIS_LINK_BACKOFF;
        link->ac = NULL;
        evtimer_del(link->timer);
        redisAsyncFree(ac);
        redis_link_failed(link, why);
        return;
    }
    if (!link->outage_logged)
        log_warn("redis: loop %u link %u to %s:%u: %s; reconnecting", c->id, link->index, c->settings->host,
                 c->settings->port, why);
    else
        log_debug("redis: loop %u link %u to %s:%u: %s again", c->id, link->index, c->settings->host,
                  c->settings->port, why);
    link->outage_logged = true;
    link->dropping = true;
    redisAsyncFree(link->ac);
}

static void redis_link_check_stall(redis_link *link)
{
    if (link->state == REDIS_LINK_UP && link->inflight > 0 &&
        async_now_ms() - link->progress_ms >= link->client->stall_ms)
        redis_link_drop(link, "no reply for too long");
}

/* The link has delivered a reply since it connected: it works, so the backoff starts over. Until
 * then a link that connects and is closed at once (Redis at maxclients, SELECT refused) counts as a
 * failed attempt, or it would reconnect in a tight loop. */
static void redis_link_proven(redis_link *link)
{
    link->proven = true;
    link->failures = 0;
}

/* The guard's question: does a command on this link wait for a reply? */
static bool redis_link_waiting(void *arg)
{
    redis_link *link = arg;
    return link->ac && link->ac->replies.head != NULL;
}

static void redis_on_connect(const redisAsyncContext *ac, int status)
{
    redis_link *link = ac->data;
    redis_client *c = link->client;
    evtimer_del(link->timer);
    if (status != REDIS_OK) {
        /* hiredis frees the context when this returns; the commands queued on it then fail
         * "unavailable" because the link no longer reads as UP. */
        redis_link_failed(link, ac->errstr[0] ? ac->errstr : "connection failed");
        return;
    }
    link->state = REDIS_LINK_UP;
    link->progress_ms = async_now_ms();
    REDIS_STAT(c, connects, 1);
    REDIS_STAT(c, links_up, 1);
    if (link->was_up || link->failures > 0)
        REDIS_STAT(c, reconnects, 1);
    if (link->outage_logged)
        log_info("redis: loop %u link %u connected to %s:%u again", c->id, link->index, c->settings->host,
                 c->settings->port);
    else
        log_debug("redis: loop %u link %u connected to %s:%u", c->id, link->index, c->settings->host,
                  c->settings->port);
    link->outage_logged = false;
    link->was_up = true;
    link->proven = false;
}

/* Runs last when an established context goes away (after its pending callbacks got NULL). */
static void redis_on_disconnect(const redisAsyncContext *ac, int status)
{
    redis_link *link = ac->data;
    redis_client *c = link->client;
    link->ac = NULL;
    REDIS_STAT(c, disconnects, 1);
    REDIS_STAT(c, links_up, -1);
    bool quiet = link->dropping;
    link->dropping = false;
    if (c->closing) {
        link->state = REDIS_LINK_IDLE;
        return;
    }
    if (link->guard.tripped)
        log_warn("redis: loop %u link %u to %s:%u dropped: a reply arrived that no command was waiting for "
                 "(not a Redis server, or a broken one); reconnecting", c->id, link->index, c->settings->host,
                 c->settings->port);
    else if (!quiet && !link->outage_logged)
        log_warn("redis: loop %u link %u to %s:%u lost: %s; reconnecting", c->id, link->index, c->settings->host,
                 c->settings->port, status == REDIS_OK || !ac->errstr[0] ? "connection closed" : ac->errstr);
    link->outage_logged = true;
    /* A proven link that went away retries at once (failures is 0); one dropped by us (stall, SELECT
     * refused) or closed before its first reply counts as a failed attempt and backs off. */
    if (quiet || !link->proven)
        link->failures++;
    link->proven = false;
    redis_link_backoff(link);
}

/* The reply to the SELECT every link sends first when redis.db is not 0. */
static void redis_on_select(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    redis_link *link = privdata;
    const redisReply *reply = r;
    if (!reply)
        return; /* the link went away first */
    if (reply->type == REDIS_REPLY_ERROR) {
        char why[160];
        snprintf(why, sizeof(why), "SELECT %u refused: %.100s", link->client->settings->db, reply->str);
        redis_link_drop(link, why);
        return;
    }
    redis_link_proven(link);
}

static void redis_on_link_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redis_link *link = arg;
    if (link->state == REDIS_LINK_BACKOFF)
        redis_link_connect(link);
    else if (link->state == REDIS_LINK_CONNECTING)
        redis_link_drop(link, "connect timed out");
}

static void redis_link_connect(redis_link *link)
{
    redis_client *c = link->client;
    const redis_settings *s = c->settings;
    /* Non-blocking connect; the name is resolved here with getaddrinfo, which blocks for a DNS name,
     * hence the advice (docs/kv.md) to give an IP literal or a name from /etc/hosts. */
    redisAsyncContext *ac = redisAsyncConnect(s->host, (int)s->port);
    if (!ac || ac->err) {
        char why[128];
        snprintf(why, sizeof(why), "%s", ac ? ac->errstr : "out of memory");
        if (ac)
            redisAsyncFree(ac);
        redis_link_failed(link, why);
        return;
    }
    ac->data = link;
    redis_reader_bound(ac->c.reader);
    link->guard = (redis_reader_guard){.waiting = redis_link_waiting, .arg = link};
    redis_reader_guard_set(ac->c.reader, &link->guard);
    if (redisLibeventAttach(ac, c->base) != REDIS_OK) {
        redisAsyncFree(ac);
        redis_link_failed(link, "cannot attach to the event loop");
        return;
    }
    redisAsyncSetConnectCallback(ac, redis_on_connect);
    redisAsyncSetDisconnectCallback(ac, redis_on_disconnect);
    /* Notices a peer that vanished while the link is idle (nothing in flight to time out). */
    redisEnableKeepAlive(&ac->c);
    link->ac = ac;
    link->state = REDIS_LINK_CONNECTING;
    redis_timer_arm(link->timer, s->connect_timeout_ms);
    if (s->db != 0) {
        /* First on the link, so every command after it runs in the right database. */
        char db[16];
        int db_len = snprintf(db, sizeof(db), "%u", s->db);
        const char *argv[2] = {"SELECT", db};
        const size_t argvlen[2] = {6, (size_t)db_len};
        redisAsyncCommandArgv(ac, redis_on_select, link, 2, argv, argvlen);
    }
}

/* ---- commands --------------------------------------------------------------------------------- */

/* The operation is no longer ours to complete: drop its timer; replies still due will be dropped. */
static void redis_pending_disown(redis_pending *p)
{
    p->op = NULL;
    p->scope = NULL;
    event_del(&p->timer);
}

static void redis_pending_fail(redis_pending *p, const char *error)
{
    redis_client *c = p->link->client;
    async_op *op = p->op;
    redis_pending_disown(p);
    if (error == REDIS_ERROR_TIMEOUT)
        REDIS_STAT(c, errors_timeout, 1);
    else if (error == REDIS_ERROR_CONNECTION_LOST)
        REDIS_STAT(c, errors_connection_lost, 1);
    else
        REDIS_STAT(c, errors_unavailable, 1);
    async_fail(op, error);
}

/* Every reply of the batch is in: hand the copies over. */
static void redis_pending_finish(redis_pending *p)
{
    async_op *op = p->op;
    async_scope *scope = p->scope;
    redis_reply *replies = p->replies;
    bool single = p->single;
    size_t count = p->count;
    redis_pending_disown(p);
    if (single) {
        if (replies[0].kind == REDIS_KIND_ERROR)
            async_fail(op, redis_reply_error_text(scope, replies[0].str, replies[0].len));
        else
            async_resolve(op, &replies[0]);
        return;
    }
    redis_reply *all = async_scope_alloc(scope, sizeof(*all));
    all->kind = REDIS_KIND_ARRAY;
    all->elements = replies;
    all->count = count;
    async_resolve(op, all);
}

/* hiredis's callback, once per command of the batch, in order: with the reply, or NULL when the
 * context goes away. The last one frees the record. */
static void redis_on_reply(redisAsyncContext *ac, void *r, void *privdata)
{
    (void)ac;
    redis_pending *p = privdata;
    redis_link *link = p->link;
    redis_client *c = link->client;
    const redisReply *reply = r;
    size_t index = p->received++;
    link->inflight--;
    REDIS_STAT(c, inflight, -1);
    if (reply) {
        if (!link->proven)
            redis_link_proven(link);
        link->progress_ms = async_now_ms();
        if (reply->type == REDIS_REPLY_ERROR)
            REDIS_STAT(c, errors_reply, 1);
    }
    if (p->op) {
        if (!reply) {
            /* Lost mid-batch: fail now; the batch's other callbacks only count down. */
            bool lost = link->state == REDIS_LINK_UP && !c->closing;
            redis_pending_fail(p, lost ? REDIS_ERROR_CONNECTION_LOST : REDIS_ERROR_UNAVAILABLE);
        } else {
            /* Copied now: hiredis frees its reply when this callback returns. */
            redis_reply_copy_into(p->scope, reply, &p->replies[index]);
            if (p->received == p->count)
                redis_pending_finish(p);
        }
    } else if (reply) {
        REDIS_STAT(c, replies_dropped, 1);
    }
    if (p->received == p->count) {
        event_del(&p->timer);
        free(p);
    }
}

/* The scope ended before the replies came (client gone, request deadline, answered already). */
static void redis_on_cancel(async_op *op, void *arg)
{
    (void)op;
    redis_pending_disown(arg);
}

static void redis_on_timeout(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    redis_pending *p = arg;
    redis_link *link = p->link;
    if (p->op) {
        /* The loops count timers on libevent's coarse clock (http_loop.c), which can fire this a tick
         * early: by the monotonic clock in whole ms, only more than the timeout is a timeout, else the
         * timer takes the rest (at most a millisecond late). */
        uint64_t timeout_ms = link->client->settings->command_timeout_ms;
        uint64_t elapsed_ms = async_now_ms() - p->op->started_ms;
        if (elapsed_ms <= timeout_ms) {
            uint64_t rest = timeout_ms + 1 - elapsed_ms;
            struct timeval tv = {(time_t)(rest / 1000), (suseconds_t)(rest % 1000) * 1000};
            if (event_add(&p->timer, &tv) == 0)
                return;
        }
        redis_pending_fail(p, REDIS_ERROR_TIMEOUT);
    }
    /* May free the link's context and with it p: nothing touches p after this. */
    redis_link_check_stall(link);
}

static void redis_client_start(redis_client *c)
{
    c->started = true;
    for (unsigned i = 0; i < c->link_count; i++)
        redis_link_connect(&c->links[i]);
}

/* The least busy established link; failing that, one still connecting (its commands wait in hiredis's
 * buffer for the connection); NULL when every link is down or full. */
static redis_link *redis_client_pick(redis_client *c)
{
    if (!c->started)
        redis_client_start(c);
    redis_link *best = NULL;
    for (int pass = 0; pass < 2 && !best; pass++) {
        redis_link_state want = pass == 0 ? REDIS_LINK_UP : REDIS_LINK_CONNECTING;
        for (unsigned i = 0; i < c->link_count; i++) {
            redis_link *link = &c->links[i];
            if (link->state == want && link->inflight < REDIS_LINK_MAX_INFLIGHT &&
                (!best || link->inflight < best->inflight))
                best = link;
        }
    }
    return best;
}

static async_op *redis_client_send(async_scope *scope, redis_client *c, const redis_cmd *cmds, size_t n, bool single)
{
    async_op *op = async_future(scope);
    if (op->status != ASYNC_PENDING)
        return op; /* born cancelled: the scope is ending */
    for (size_t i = 0; i < n; i++) {
        if (cmds[i].argc < 1 || !cmds[i].argv || !cmds[i].argvlen) {
            async_fail(op, "invalid command");
            return op;
        }
    }
    if (n == 0) {
        redis_reply *none = async_scope_alloc(scope, sizeof(*none));
        none->kind = REDIS_KIND_ARRAY;
        async_resolve(op, none);
        return op;
    }
    redis_link *link = redis_client_pick(c);
    if (!link) {
        REDIS_STAT(c, errors_unavailable, 1);
        async_fail(op, REDIS_ERROR_UNAVAILABLE);
        return op;
    }
    redis_pending *p = xcalloc(1, sizeof(*p));
    p->link = link;
    p->op = op;
    p->scope = scope;
    p->count = n;
    p->single = single;
    p->replies = async_scope_alloc(scope, n * sizeof(*p->replies));
    event_assign(&p->timer, c->base, -1, 0, redis_on_timeout, p);
    size_t sent = 0;
    while (sent < n && redisAsyncCommandArgv(link->ac, redis_on_reply, p, cmds[sent].argc, cmds[sent].argv,
                                             cmds[sent].argvlen) == REDIS_OK)
        sent++;
    if (link->inflight == 0)
        link->progress_ms = async_now_ms();
    link->inflight += sent;
    REDIS_STAT(c, commands, (int64_t)sent);
    REDIS_STAT(c, inflight, (int64_t)sent);
    if (sent < n) {
        /* hiredis only refuses when out of memory or closing: fail, and drop a link holding half a
         * batch (a MULTI without its EXEC must not precede other requests' commands). */
        p->count = sent;
        redis_pending_fail(p, REDIS_ERROR_UNAVAILABLE);
        if (sent == 0) {
            free(p);
            return op;
        }
        redis_link_drop(link, "a command could not be queued");
        return op;
    }
    async_future_on_cancel(op, redis_on_cancel, p);
    event_add(&p->timer, c->command_timeout);
    return op;
}

async_op *redis_client_pipeline(async_scope *scope, redis_client *c, const redis_cmd *cmds, size_t n)
{
    return redis_client_send(scope, c, cmds, n, false);
}

async_op *redis_client_command(async_scope *scope, redis_client *c, int argc, const char **argv,
                               const size_t *argvlen)
{
    redis_cmd cmd = {argc, argv, argvlen};
    return redis_client_send(scope, c, &cmd, 1, true);
}

bool redis_client_ready(redis_client *c)
{
    if (!c->started)
        redis_client_start(c);
    for (unsigned i = 0; i < c->link_count; i++)
        if (c->links[i].state == REDIS_LINK_UP)
            return true;
    return false;
}

/* ---- life cycle -------------------------------------------------------------------------------- */

redis_client *redis_client_new(struct event_base *base, const redis_settings *s, unsigned id)
{
    redis_client *c = xcalloc(1, sizeof(*c));
    c->base = base;
    c->settings = s;
    c->id = id;
    c->link_count = s->connections_per_loop ? s->connections_per_loop : 1;
    c->links = xcalloc(c->link_count, sizeof(*c->links));
    for (unsigned i = 0; i < c->link_count; i++) {
        redis_link *link = &c->links[i];
        link->client = c;
        link->index = i;
        link->timer = evtimer_new(base, redis_on_link_timer, link);
    }
    c->command_tv.tv_sec = s->command_timeout_ms / 1000;
    c->command_tv.tv_usec = (suseconds_t)(s->command_timeout_ms % 1000) * 1000;
    /* Every command has the same timeout: libevent's common-timeout queue makes arming it O(1). */
    c->command_timeout = event_base_init_common_timeout(base, &c->command_tv);
    if (!c->command_timeout)
        c->command_timeout = &c->command_tv;
    uint64_t stall = (uint64_t)s->command_timeout_ms * REDIS_STALL_TIMEOUT_FACTOR;
    c->stall_ms = stall > REDIS_STALL_MIN_MS ? stall : REDIS_STALL_MIN_MS;
    c->rand_state = (unsigned)time(NULL) ^ (id * 2654435761u);
    redis_registry_add(c);
    return c;
}

void redis_client_free(redis_client *c)
{
    if (!c)
        return;
    c->closing = true;
    for (unsigned i = 0; i < c->link_count; i++) {
        redis_link *link = &c->links[i];
        event_free(link->timer);
        link->timer = NULL;
        if (link->ac) {
            /* Pending callbacks run with NULL (their operations, if any, fail "unavailable"), then
             * the disconnect callback of an established link, which sees `closing`. */
            redisAsyncContext *ac = link->ac;
            link->ac = NULL;
            redisAsyncFree(ac);
        }
    }
    redis_registry_remove(c);
    free(c->links);
    free(c);
}

/* ---- the loop's client ------------------------------------------------------------------------- */

static void redis_loop_client_free(void *value) { redis_client_free(value); }

static redis_client *redis_loop_client(http_loop *loop, const redis_settings *s)
{
    redis_client *c = http_loop_local(loop, HTTP_LOOP_SLOT_REDIS);
    if (!c) {
        c = redis_client_new(http_loop_base(loop), s, http_loop_id(loop));
        http_loop_set_local(loop, HTTP_LOOP_SLOT_REDIS, c, redis_loop_client_free);
    }
    return c;
}

/* No settings (apiary_redis() of a config without Redis): fail without connecting anywhere, so an app
 * cannot write into whatever happens to listen on 127.0.0.1:6379. */
static async_op *redis_not_configured(async_scope *scope)
{
    async_op *op = async_future(scope);
    if (op->status == ASYNC_PENDING)
        async_fail(op, REDIS_ERROR_NOT_CONFIGURED);
    return op;
}

async_op *redis_command(async_scope *scope, http_loop *loop, const redis_settings *s, int argc,
                        const char **argv, const size_t *argvlen)
{
    if (!s)
        return redis_not_configured(scope);
    return redis_client_command(scope, redis_loop_client(loop, s), argc, argv, argvlen);
}

async_op *redis_pipeline(async_scope *scope, http_loop *loop, const redis_settings *s, const redis_cmd *cmds,
                         size_t n)
{
    if (!s)
        return redis_not_configured(scope);
    return redis_client_pipeline(scope, redis_loop_client(loop, s), cmds, n);
}

bool redis_ready(http_loop *loop, const redis_settings *s)
{
    return s && redis_client_ready(redis_loop_client(loop, s));
}
