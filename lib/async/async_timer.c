/* async_timer: loop timers that never fire early by the monotonic clock, libevent's common timeouts
 * for the loop (async_timeouts), and async_sleep. */
#include "async_op_internal.h"

#include <string.h>
#include <time.h>

static uint64_t async_now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void async__timer_init(async_timer *t, async_op *op, event_callback_fn fn, void *arg)
{
    evtimer_assign(&t->ev, op->_scope->base, fn, arg);
    t->due_us = async_now_us();
}

static int async_timer_arm(async_timer *t, uint64_t ms)
{
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    return evtimer_add(&t->ev, &tv);
}

int async__timer_start(async_timer *t, async_scope *scope, unsigned ms)
{
    t->due_us += (uint64_t)ms * 1000u;
    event_base_update_cache_time(event_get_base(&t->ev));
    const struct timeval *common = scope->timeouts ? async_timeouts_get(scope->timeouts, ms) : NULL;
    return common ? evtimer_add(&t->ev, common) : async_timer_arm(t, ms);
}

void async_timeouts_init(async_timeouts *t, struct event_base *base)
{
    memset(t, 0, sizeof(*t));
    t->base = base;
}

const struct timeval *async_timeouts_get(async_timeouts *t, unsigned ms)
{
    for (size_t i = 0; i < t->count; i++)
        if (t->ms[i] == ms)
            return t->tv[i];
    if (t->count == ASYNC_COMMON_TIMEOUTS)
        return NULL;
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)(ms % 1000) * 1000};
    const struct timeval *common = event_base_init_common_timeout(t->base, &tv);
    if (!common)
        return NULL;
    t->ms[t->count] = ms;
    t->tv[t->count++] = common;
    return common;
}

void async_scope_use_timeouts(async_scope *scope, async_timeouts *t) { scope->timeouts = t; }

/* For the timer's callback: true when the deadline really passed, else it is re-armed. */
bool async__timer_due(async_timer *t)
{
    uint64_t now = async_now_us();
    if (now >= t->due_us)
        return true;
    uint64_t left = t->due_us - now;
    struct timeval tv = {.tv_sec = (time_t)(left / 1000000u), .tv_usec = (suseconds_t)(left % 1000000u)};
    return evtimer_add(&t->ev, &tv) != 0; /* cannot re-arm: better early than never */
}

void async__timer_stop(async_timer *t) { evtimer_del(&t->ev); }

/* ---- sleep ---------------------------------------------------------------------------------- */

typedef struct async_sleep_op {
    async_op op;
    async_timer timer;
} async_sleep_op;

static void async_sleep_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    async_sleep_op *s = arg;
    if (async__timer_due(&s->timer))
        async__op_complete(&s->op, ASYNC_OK, NULL, NULL);
}

static void async_sleep_cancel(async_op *op) { async__timer_stop(&((async_sleep_op *)op)->timer); }

static const async_op_vtable async_sleep_vt = {.name = "sleep", .cancel = async_sleep_cancel};

async_op *async_sleep(async_scope *scope, unsigned ms)
{
    async_sleep_op *s = (async_sleep_op *)async__op_new(scope, &async_sleep_vt, sizeof(*s));
    async__timer_init(&s->timer, &s->op, async_sleep_fire, s);
    if (async__timer_start(&s->timer, scope, ms) != 0)
        async__op_complete(&s->op, ASYNC_FAILED, NULL, "cannot start timer");
    return async__op_started(&s->op);
}
