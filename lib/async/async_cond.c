/* async_cond: the condition (asyncio.Condition). A waiter lives on the condition's line until it is
 * notified, then on its lock's line until the lock is its: the same waiter moves between the two, so a
 * wait is one operation whose continuation runs with the lock held. */
#include "async_op_internal.h"

typedef struct async_cond_waiter {
    async_waiter w;  /* owner: the condition */
    bool on_lock;    /* notified: waiting on (or granted) the lock, no longer on the condition */
} async_cond_waiter;

void async_cond_init(async_cond *cond, async_lock *lock)
{
    cond->lock = lock;
    cond->_head = cond->_tail = NULL;
}

static void async_cond_wait_cancel(async_op *op)
{
    async_cond_waiter *cw = (async_cond_waiter *)op;
    async_cond *cond = cw->w.owner;
    if (cw->on_lock)
        async__waitlist_remove(&cond->lock->_head, &cond->lock->_tail, &cw->w);
    else
        async__waitlist_remove(&cond->_head, &cond->_tail, &cw->w);
}

/* Granted the lock, but the continuation will not run: nobody else would ever release it. */
static bool async_cond_wait_revoke(async_op *op)
{
    if (op->status != ASYNC_OK)
        return false;
    async_lock_release(((async_cond *)((async_waiter *)op)->owner)->lock);
    return true;
}

static const async_op_vtable async_cond_wait_vt = {
    .name = "condition wait",
    .cancel = async_cond_wait_cancel,
    .revoke = async_cond_wait_revoke,
};

async_op *async_cond_wait(async_scope *scope, async_cond *cond)
{
    async_cond_waiter *cw =
        (async_cond_waiter *)async__waiter_new(scope, &async_cond_wait_vt, cond, sizeof(async_cond_waiter));
    /* In line before the lock goes, so whoever takes the lock next and notifies finds this waiter. */
    async__waitlist_push(&cond->_head, &cond->_tail, &cw->w);
    async_lock_release(cond->lock);
    return async__op_started(&cw->w.op);
}

void async_cond_notify(async_cond *cond, size_t n)
{
    async_lock *lock = cond->lock;
    while (n-- > 0) {
        async_cond_waiter *cw = (async_cond_waiter *)async__waitlist_pop(&cond->_head, &cond->_tail);
        if (!cw)
            return;
        cw->on_lock = true;
        /* The semaphore's release completes whatever waiter heads its line, so this one is granted the
         * lock exactly like an async_lock_acquire would be. */
        if (async_sem_try_acquire(lock))
            async__op_complete(&cw->w.op, ASYNC_OK, NULL, NULL);
        else
            async__waitlist_push(&lock->_head, &lock->_tail, &cw->w);
    }
}

void async_cond_notify_all(async_cond *cond) { async_cond_notify(cond, SIZE_MAX); }

size_t async_cond_waiting(const async_cond *cond) { return async__waitlist_len(cond->_head); }
