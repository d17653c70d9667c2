/* async_future: an operation completed from outside the toolkit (async_resolve / async_fail), with a
 * cancel hook that stops the outside work when the future's scope gives up first. */
#include "async_op_internal.h"

#include "log.h"


typedef struct async_future_op {
    async_op op;
    async_cancel_fn on_cancel;
    void *on_cancel_arg;
} async_future_op;

static void async_future_cancel(async_op *op)
{
    async_future_op *f = (async_future_op *)op;
    async_cancel_fn fn = f->on_cancel;
    void *arg = f->on_cancel_arg;
    f->on_cancel = NULL;
    f->on_cancel_arg = NULL;
    if (fn)
        fn(op, arg);
}

static const async_op_vtable async_future_vt = {.name = "future", .cancel = async_future_cancel};

async_op *async_future(async_scope *scope)
{
    async_op *op = async__op_new(scope, &async_future_vt, sizeof(async_future_op));
    return async__op_started(op);
}

static bool async_is_future(const async_op *op) { return op && op->_vt == &async_future_vt; }

void async_future_on_cancel(async_op *future, async_cancel_fn fn, void *arg)
{
    if (!async_is_future(future)) {
        log_error("async: async_future_on_cancel on something that is not a future ignored");
        return;
    }
    if (future->status == ASYNC_CANCELLED) {
        /* Born cancelled (its scope is going away): the outside work just started must stop now. */
        if (fn)
            fn(future, arg);
        return;
    }
    if (future->status != ASYNC_PENDING)
        return;
    async_future_op *f = (async_future_op *)future;
    f->on_cancel = fn;
    f->on_cancel_arg = arg;
}

static bool async_future_settle(async_op *future, async_status status, void *value, const char *error)
{
    if (!async_is_future(future) || future->status != ASYNC_PENDING)
        return false;
    async_future_op *f = (async_future_op *)future;
    f->on_cancel = NULL;
    f->on_cancel_arg = NULL;
    async__op_complete(future, status, value, error);
    return true;
}

bool async_resolve(async_op *future, void *value)
{
    return async_future_settle(future, ASYNC_OK, value, NULL);
}

bool async_fail(async_op *future, const char *error)
{
    return async_future_settle(future, ASYNC_FAILED, NULL, error ? error : "failed");
}
