/* async_sem: the semaphore (and the lock, a semaphore with one permit). */
#include "async_op_internal.h"


void async_sem_init(async_sem *sem, unsigned permits)
{
    sem->permits = permits;
    sem->_head = sem->_tail = NULL;
}

static void async_sem_acquire_cancel(async_op *op)
{
    async_sem *sem = ((async_waiter *)op)->owner;
    async__waitlist_remove(&sem->_head, &sem->_tail, (async_waiter *)op);
}

static bool async_sem_acquire_revoke(async_op *op)
{
    if (op->status != ASYNC_OK)
        return false;
    async_sem_release(((async_waiter *)op)->owner);
    return true;
}

static const async_op_vtable async_sem_acquire_vt = {
    .name = "semaphore acquire",
    .cancel = async_sem_acquire_cancel,
    .revoke = async_sem_acquire_revoke,
};

async_op *async_sem_acquire(async_scope *scope, async_sem *sem)
{
    async_waiter *w = async__waiter_new(scope, &async_sem_acquire_vt, sem, sizeof(async_waiter));
    if (async_sem_try_acquire(sem))
        async__op_complete(&w->op, ASYNC_OK, NULL, NULL);
    else
        async__waitlist_push(&sem->_head, &sem->_tail, w);
    return async__op_started(&w->op);
}

bool async_sem_try_acquire(async_sem *sem)
{
    if (sem->permits == 0 || sem->_head)
        return false;
    sem->permits--;
    return true;
}

void async_sem_release(async_sem *sem)
{
    async_waiter *w = async__waitlist_pop(&sem->_head, &sem->_tail);
    if (w)
        async__op_complete(&w->op, ASYNC_OK, NULL, NULL);
    else
        sem->permits++;
}

size_t async_sem_waiting(const async_sem *sem) { return async__waitlist_len(sem->_head); }
