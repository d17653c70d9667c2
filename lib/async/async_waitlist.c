/* async_waitlist: the FIFO wait lines that semaphores, queues, events and conditions keep of their
 * waiting operations, linked through the waiters themselves (no allocation per wait). */
#include "async_op_internal.h"


void async__waitlist_push(async_op **head, async_op **tail, async_waiter *w)
{
    async_waiter *last = (async_waiter *)*tail;
    w->wnext = NULL;
    w->wprev = last;
    if (last)
        last->wnext = w;
    else
        *head = &w->op;
    *tail = &w->op;
    w->waiting = true;
}

void async__waitlist_remove(async_op **head, async_op **tail, async_waiter *w)
{
    if (!w->waiting)
        return;
    if (w->wprev)
        w->wprev->wnext = w->wnext;
    else
        *head = w->wnext ? &w->wnext->op : NULL;
    if (w->wnext)
        w->wnext->wprev = w->wprev;
    else
        *tail = w->wprev ? &w->wprev->op : NULL;
    w->wprev = w->wnext = NULL;
    w->waiting = false;
}

async_waiter *async__waitlist_pop(async_op **head, async_op **tail)
{
    async_waiter *w = (async_waiter *)*head;
    if (w)
        async__waitlist_remove(head, tail, w);
    return w;
}

size_t async__waitlist_len(const async_op *head)
{
    size_t n = 0;
    for (const async_waiter *w = (const async_waiter *)head; w; w = w->wnext)
        n++;
    return n;
}

async_waiter *async__waiter_new(async_scope *scope, const async_op_vtable *vt, void *owner, size_t size)
{
    async_waiter *w = (async_waiter *)async__op_new(scope, vt, size);
    w->owner = owner;
    return w;
}
