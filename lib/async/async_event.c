/* async_event: the event (asyncio.Event), a flag whose set releases every waiter at once. */
#include "async_op_internal.h"

void async_event_init(async_event *ev)
{
    ev->is_set = false;
    ev->_head = ev->_tail = NULL;
}

static void async_event_wait_cancel(async_op *op)
{
    async_event *ev = ((async_waiter *)op)->owner;
    async__waitlist_remove(&ev->_head, &ev->_tail, (async_waiter *)op);
}

/* No revoke: a released waiter holds nothing that would need to be given back. */
static const async_op_vtable async_event_wait_vt = {.name = "event wait", .cancel = async_event_wait_cancel};

void async_event_set(async_event *ev)
{
    if (ev->is_set)
        return;
    ev->is_set = true;
    /* Completing only queues continuations, so none can clear the event or wait again under us. */
    async_waiter *w;
    while ((w = async__waitlist_pop(&ev->_head, &ev->_tail)) != NULL)
        async__op_complete(&w->op, ASYNC_OK, NULL, NULL);
}

void async_event_clear(async_event *ev) { ev->is_set = false; }

async_op *async_event_wait(async_scope *scope, async_event *ev)
{
    async_waiter *w = async__waiter_new(scope, &async_event_wait_vt, ev, sizeof(async_waiter));
    if (ev->is_set)
        async__op_complete(&w->op, ASYNC_OK, NULL, NULL);
    else
        async__waitlist_push(&ev->_head, &ev->_tail, w);
    return async__op_started(&w->op);
}

size_t async_event_waiting(const async_event *ev) { return async__waitlist_len(ev->_head); }
