/* async_first: async_wait_first, the first of a set of operations to complete
 * (asyncio.wait(return_when=FIRST_COMPLETED)); the others are cancelled or handed back. */
#include "async_op_internal.h"

#include <string.h>

typedef struct async_first_op {
    async_op op;
    async_first_mode mode;
    bool adopted;     /* false when the children were refused: then never touch them */
    size_t n;
    size_t remaining; /* children still pending that have not been cancelled */
    long winner;      /* index of the first to complete, -1 until then */
    async_op **children;
} async_first_op;

static void async_first_cancel_children(async_first_op *f)
{
    if (!f->adopted)
        return;
    for (size_t i = 0; i < f->n; i++)
        async__op_cancel_child(&f->op, f->children[i]);
}

/* The first child completed: complete with it, then cancel or hand back the rest. */
static void async_first_win(async_first_op *f, size_t i)
{
    f->winner = (long)i;
    async__op_complete(&f->op, ASYNC_OK, f->children[i], NULL);
    for (size_t j = 0; j < f->n; j++) {
        async_op *c = f->children[j];
        if (c == f->children[i])
            continue;
        if (f->mode == ASYNC_FIRST_CANCEL_OTHERS) {
            /* One that completed too (and was taken in) is undone, e.g. a granted permit returned. */
            if (!async__op_revoke_child(&f->op, c))
                async__op_cancel_child(&f->op, c);
        } else
            async__op_release_child(&f->op, c);
    }
}

static void async_first_child_done(async_op *op, async_op *child, bool cancelled)
{
    async_first_op *f = (async_first_op *)op;
    if (op->status != ASYNC_PENDING)
        return;
    if (cancelled) {
        if (--f->remaining == 0)
            async__op_complete(op, ASYNC_FAILED, NULL, "all cancelled");
        return;
    }
    for (size_t i = 0; i < f->n; i++) {
        if (f->children[i] == child) {
            async_first_win(f, i);
            return;
        }
    }
}

static void async_first_cancel(async_op *op) { async_first_cancel_children((async_first_op *)op); }

static bool async_first_revoke(async_op *op)
{
    async_first_op *f = (async_first_op *)op;
    if (f->adopted && f->winner >= 0)
        async__op_revoke_child(op, f->children[f->winner]);
    return false; /* which child finished first still stands */
}

static const async_op_vtable async_first_vt = {
    .name = "wait_first",
    .cancel = async_first_cancel,
    .revoke = async_first_revoke,
    .child_done = async_first_child_done,
};

static void async_first_adopt_all(async_first_op *f)
{
    long done = -1;
    f->adopted = true;
    for (size_t i = 0; i < f->n; i++) {
        async_op *c = f->children[i];
        if (async__op_observer(c) == &f->op)
            continue; /* listed twice */
        if (c->status == ASYNC_PENDING) {
            async__op_adopt(&f->op, c);
            f->remaining++;
            continue;
        }
        if (c->status == ASYNC_CANCELLED)
            continue; /* dropped out before we started */
        if (async__op_undelivered(c))
            async__op_adopt(&f->op, c);
        if (done < 0)
            done = (long)i;
    }
    if (done >= 0)
        async_first_win(f, (size_t)done);
    else if (f->remaining == 0)
        async__op_complete(&f->op, ASYNC_FAILED, NULL, "all cancelled");
}

async_op *async_wait_first(async_scope *scope, async_op *const *ops, size_t n, async_first_mode mode)
{
    async_first_op *f = (async_first_op *)async__op_new(scope, &async_first_vt, sizeof(*f));
    f->mode = mode;
    f->winner = -1;
    const char *problem = NULL;
    if (n == 0) {
        problem = "no operations";
    } else if (n > SIZE_MAX / sizeof(*f->children)) {
        problem = "too many operations";
    } else {
        f->n = n;
        f->children = arena_alloc(scope->arena, n * sizeof(*f->children));
        memcpy(f->children, ops, n * sizeof(*f->children));
        for (size_t i = 0; i < n && !problem; i++)
            problem = async__child_problem(scope, f->children[i], &f->op);
    }
    if (problem)
        async__op_complete(&f->op, ASYNC_FAILED, NULL, problem);
    else
        async_first_adopt_all(f);
    return async__op_started(&f->op);
}

long async_wait_first_index(const async_op *wait_first)
{
    if (!wait_first || wait_first->_vt != &async_first_vt)
        return -1;
    return ((const async_first_op *)wait_first)->winner;
}
