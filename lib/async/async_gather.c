/* async_gather: wait for all of a set of operations (or the first failure, FAIL_FAST); async_gather_map
 * starts them itself, at most `limit` at a time (a bounded gather: asyncio.gather under a Semaphore). */
#include "async_op_internal.h"

#include <string.h>


typedef struct async_gather_op {
    async_op op;
    async_gather_mode mode;
    bool adopted;     /* false when the children were refused: then never touch them */
    size_t n;
    size_t remaining; /* children whose completion has not reached us (map: not finished yet) */
    async_op **children; /* map: NULL until started */
    /* async_gather_map only */
    async_start_fn start;   /* async_gather_map only */
    void *start_arg;
    size_t limit;     /* children pending at once, at most */
    size_t started;   /* children 0..started-1 have been started */
    size_t running;   /* started and not finished */
} async_gather_op;

static void async_gather_fill(async_gather_op *g);

static void async_gather_cancel_children(async_gather_op *g)
{
    if (!g->adopted)
        return;
    for (size_t i = 0; i < g->n; i++)
        if (g->children[i])
            async__op_cancel_child(&g->op, g->children[i]);
}

static void async_gather_fail(async_gather_op *g, async_op *child)
{
    /* Complete first: the children cancelled below are detached and could not move us anyway. */
    async__op_complete(&g->op, child->status, child, child->error);
    async_gather_cancel_children(g);
}

static void async_gather_kick(async_op *kick, void *arg)
{
    (void)kick;
    async_gather_fill(arg);
}

static void async_gather_child_done(async_op *op, async_op *child, bool cancelled)
{
    async_gather_op *g = (async_gather_op *)op;
    if (op->status != ASYNC_PENDING)
        return;
    if (!cancelled && g->mode == ASYNC_GATHER_FAIL_FAST && async__status_failed(child->status)) {
        async_gather_fail(g, child);
        return;
    }
    if (--g->remaining == 0)
        async__op_complete(op, ASYNC_OK, NULL, NULL);
}

/* A map's child finished: as gather's, then the next one takes its place. */
static void async_gather_map_child_done(async_op *op, async_op *child, bool cancelled)
{
    async_gather_op *g = (async_gather_op *)op;
    async_gather_child_done(op, child, cancelled);
    if (op->status != ASYNC_PENDING)
        return;
    g->running--;
    if (!cancelled) {
        async_gather_fill(g); /* from the loop: this is the child's continuation */
    } else if (!op->_scope->closing) {
        /* Inside whoever cancelled the child: start the next one from the loop instead, as a
         * continuation would, never inside their call. */
        async_op *kick = async_future(op->_scope);
        async_op_then(kick, async_gather_kick, g);
        async_resolve(kick, NULL);
    }
}

static void async_gather_cancel(async_op *op) { async_gather_cancel_children((async_gather_op *)op); }

static bool async_gather_revoke(async_op *op)
{
    async_gather_op *g = (async_gather_op *)op;
    if (g->adopted) {
        for (size_t i = 0; i < g->n; i++)
            if (g->children[i])
                async__op_revoke_child(op, g->children[i]);
    }
    return false; /* the gather's own result (which children finished how) still stands */
}

static const async_op_vtable async_gather_vt = {
    .name = "gather",
    .cancel = async_gather_cancel,
    .revoke = async_gather_revoke,
    .child_done = async_gather_child_done,
};

static const async_op_vtable async_gather_map_vt = {
    .name = "gather_map",
    .cancel = async_gather_cancel,
    .revoke = async_gather_revoke,
    .child_done = async_gather_map_child_done,
};

static const char *async_gather_check(const async_gather_op *g)
{
    for (size_t i = 0; i < g->n; i++) {
        const char *problem = async__child_problem(g->op._scope, g->children[i], &g->op);
        if (problem)
            return problem;
    }
    return NULL;
}

static void async_gather_adopt_all(async_gather_op *g)
{
    async_op *failed = NULL;
    g->adopted = true;
    for (size_t i = 0; i < g->n; i++) {
        async_op *c = g->children[i];
        if (async__op_observer(c) == &g->op)
            continue; /* listed twice */
        if (c->status == ASYNC_PENDING) {
            async__op_adopt(&g->op, c);
            g->remaining++;
            continue;
        }
        if (async__op_undelivered(c))
            async__op_adopt(&g->op, c);
        if (!failed && g->mode == ASYNC_GATHER_FAIL_FAST && async__status_failed(c->status))
            failed = c;
    }
    if (failed)
        async_gather_fail(g, failed);
    else if (g->remaining == 0)
        async__op_complete(&g->op, ASYNC_OK, NULL, NULL);
}

async_op *async_gather(async_scope *scope, async_op *const *ops, size_t n, async_gather_mode mode)
{
    async_gather_op *g = (async_gather_op *)async__op_new(scope, &async_gather_vt, sizeof(*g));
    g->mode = mode;
    const char *problem = NULL;
    if (n > SIZE_MAX / sizeof(*g->children)) {
        problem = "too many operations";
    } else if (n > 0) {
        g->n = n;
        g->children = arena_alloc(scope->arena, n * sizeof(*g->children));
        memcpy(g->children, ops, n * sizeof(*g->children));
        problem = async_gather_check(g);
    }
    if (problem)
        async__op_complete(&g->op, ASYNC_FAILED, NULL, problem);
    else
        async_gather_adopt_all(g);
    return async__op_started(&g->op);
}

async_op *async_gather_child(const async_op *gather, size_t i)
{
    if (!gather || (gather->_vt != &async_gather_vt && gather->_vt != &async_gather_map_vt))
        return NULL;
    const async_gather_op *g = (const async_gather_op *)gather;
    return i < g->n ? g->children[i] : NULL;
}

/* Starts children in order while fewer than `limit` are pending. A child that is already complete
 * (failed at once, say) counts as finished right here. */
static void async_gather_fill(async_gather_op *g)
{
    while (g->op.status == ASYNC_PENDING && g->started < g->n && g->running < g->limit) {
        size_t i = g->started++;
        async_op *c = g->start(g->op._scope, i, g->start_arg);
        const char *problem = async__child_problem(g->op._scope, c, &g->op);
        if (problem) {
            async__op_complete(&g->op, ASYNC_FAILED, NULL, problem);
            async_gather_cancel_children(g);
            return;
        }
        g->children[i] = c;
        if (c->status == ASYNC_PENDING) {
            async__op_adopt(&g->op, c);
            g->running++;
            continue;
        }
        if (async__op_undelivered(c))
            async__op_adopt(&g->op, c);
        if (g->mode == ASYNC_GATHER_FAIL_FAST && async__status_failed(c->status)) {
            async_gather_fail(g, c);
            return;
        }
        if (--g->remaining == 0)
            async__op_complete(&g->op, ASYNC_OK, NULL, NULL);
    }
}

async_op *async_gather_map(async_scope *scope, size_t n, size_t limit, async_start_fn start, void *arg,
                           async_gather_mode mode)
{
    async_gather_op *g = (async_gather_op *)async__op_new(scope, &async_gather_map_vt, sizeof(*g));
    g->mode = mode;
    g->adopted = true;
    if (!start || n > SIZE_MAX / sizeof(*g->children)) {
        async__op_complete(&g->op, ASYNC_FAILED, NULL, start ? "too many operations" : "no start function");
        return async__op_started(&g->op);
    }
    g->n = g->remaining = n;
    g->children = n ? arena_alloc(scope->arena, n * sizeof(*g->children)) : NULL;
    if (n)
        memset(g->children, 0, n * sizeof(*g->children));
    g->start = start;
    g->start_arg = arg;
    g->limit = limit ? limit : n;
    if (n == 0)
        async__op_complete(&g->op, ASYNC_OK, NULL, NULL);
    else if (!scope->closing)
        async_gather_fill(g);
    return async__op_started(&g->op);
}
