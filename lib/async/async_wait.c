/* async_wait: async_wait_for, one operation bounded by a deadline. */
#include "async_op_internal.h"


typedef struct async_wait_op {
    async_op op;
    async_op *inner; /* NULL when it was refused */
    async_timer timer;
} async_wait_op;

static void async_wait_finish_like(async_wait_op *w, const async_op *inner)
{
    async__timer_stop(&w->timer);
    async__op_complete(&w->op, inner->status, inner->value, inner->error);
}

static void async_wait_fire(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    async_wait_op *w = arg;
    async_op *inner = w->inner;
    if (w->op.status != ASYNC_PENDING || !async__timer_due(&w->timer))
        return;
    if (inner->status != ASYNC_PENDING && inner->_queued && async__op_observer(inner) == &w->op) {
        /* Finished in time, only its report is still queued: take it now, exactly one completion. */
        async__op_adopt(&w->op, inner);
        async_wait_finish_like(w, inner);
        return;
    }
    async__op_complete(&w->op, ASYNC_TIMEOUT, NULL, "timeout");
    async__op_cancel_child(&w->op, inner);
}

static void async_wait_child_done(async_op *op, async_op *child, bool cancelled)
{
    async_wait_op *w = (async_wait_op *)op;
    if (op->status != ASYNC_PENDING)
        return;
    if (cancelled)
        async_op_cancel(op);
    else
        async_wait_finish_like(w, child);
}

static void async_wait_cancel(async_op *op)
{
    async_wait_op *w = (async_wait_op *)op;
    async__timer_stop(&w->timer);
    if (w->inner)
        async__op_cancel_child(op, w->inner);
}

static bool async_wait_revoke(async_op *op)
{
    async_wait_op *w = (async_wait_op *)op;
    if (!w->inner || op->status == ASYNC_TIMEOUT)
        return false;
    return async__op_revoke_child(op, w->inner);
}

/* async_op_release of the wait_for: the inner operation it took over goes too, once finished (it
 * completed into the wait_for, or the wait_for's timeout cancelled it); one that was the caller's
 * already (finished and taken before the wait_for began) stays the caller's. */
static void async_wait_release(async_op *op)
{
    async_wait_op *w = (async_wait_op *)op;
    async_op *inner = w->inner;
    if (!inner || inner->status == ASYNC_PENDING || inner->_queued)
        return;
    bool ours = async__op_observer(inner) == op ||
                (op->status == ASYNC_TIMEOUT && inner->status == ASYNC_CANCELLED && !inner->_cb);
    if (!ours)
        return;
    inner->_cb = NULL;
    inner->_cb_arg = NULL;
    async_op_release(inner);
}

static const async_op_vtable async_wait_vt = {
    .name = "wait_for",
    .cancel = async_wait_cancel,
    .revoke = async_wait_revoke,
    .child_done = async_wait_child_done,
    .release = async_wait_release,
};

static void async_wait_start(async_wait_op *w, async_op *inner, unsigned ms)
{
    if (inner->status == ASYNC_PENDING) {
        async__op_adopt(&w->op, inner);
        if (async__timer_start(&w->timer, w->op._scope, ms) != 0) {
            async__op_complete(&w->op, ASYNC_FAILED, NULL, "cannot start timer");
            async__op_cancel_child(&w->op, inner);
        }
        return;
    }
    if (inner->status == ASYNC_CANCELLED) {
        async_op_cancel(&w->op); /* as if it had been cancelled a moment later */
        return;
    }
    if (async__op_undelivered(inner))
        async__op_adopt(&w->op, inner);
    async__op_complete(&w->op, inner->status, inner->value, inner->error);
}

async_op *async_wait_for(async_scope *scope, async_op *inner, unsigned ms)
{
    async_wait_op *w = (async_wait_op *)async__op_new(scope, &async_wait_vt, sizeof(*w));
    async__timer_init(&w->timer, &w->op, async_wait_fire, w);
    const char *problem = async__child_problem(scope, inner, &w->op);
    if (problem) {
        async__op_complete(&w->op, ASYNC_FAILED, NULL, problem);
    } else {
        w->inner = inner;
        async_wait_start(w, inner, ms);
    }
    return async__op_started(&w->op);
}
