/* async_queue: the bounded FIFO queue of pointers, with waiting puts and gets. */
#include "async_op_internal.h"

#include "log.h"


/* Invariants: getters wait only while the ring is empty, putters only while it is full. A capacity
 * of 0 (outside the contract) then behaves as a rendezvous instead of dividing by zero. */

void async_queue_init(async_queue *q, void **items, size_t capacity)
{
    q->items = items;
    q->capacity = capacity;
    q->head = q->count = 0;
    q->_getters_head = q->_getters_tail = NULL;
    q->_putters_head = q->_putters_tail = NULL;
}

static void async_queue_ring_push(async_queue *q, void *item)
{
    q->items[(q->head + q->count) % q->capacity] = item;
    q->count++;
}

/* Places item without waiting: straight to the first waiting getter, else into the ring. */
static bool async_queue_offer(async_queue *q, void *item)
{
    async_waiter *getter = async__waitlist_pop(&q->_getters_head, &q->_getters_tail);
    if (getter) {
        async__op_complete(&getter->op, ASYNC_OK, item, NULL);
        return true;
    }
    if (q->count >= q->capacity)
        return false;
    async_queue_ring_push(q, item);
    return true;
}

/* Takes the front item without waiting; a freed slot goes to the first waiting putter. */
static bool async_queue_take(async_queue *q, void **item)
{
    async_waiter *putter;
    if (q->count == 0) {
        putter = async__waitlist_pop(&q->_putters_head, &q->_putters_tail);
        if (!putter)
            return false;
        *item = putter->item; /* capacity 0: hand over directly */
    } else {
        *item = q->items[q->head];
        q->head = (q->head + 1) % q->capacity;
        q->count--;
        putter = async__waitlist_pop(&q->_putters_head, &q->_putters_tail);
        if (putter)
            async_queue_ring_push(q, putter->item);
    }
    if (putter)
        async__op_complete(&putter->op, ASYNC_OK, NULL, NULL);
    return true;
}

/* Gives an item back at the front: to the first waiting getter, else into the ring if there is room. */
static bool async_queue_unget(async_queue *q, void *item)
{
    async_waiter *getter = async__waitlist_pop(&q->_getters_head, &q->_getters_tail);
    if (getter) {
        async__op_complete(&getter->op, ASYNC_OK, item, NULL);
        return true;
    }
    if (q->count >= q->capacity)
        return false;
    q->head = (q->head + q->capacity - 1) % q->capacity;
    q->items[q->head] = item;
    q->count++;
    return true;
}

bool async_queue_try_put(async_queue *q, void *item) { return async_queue_offer(q, item); }

bool async_queue_try_get(async_queue *q, void **item) { return async_queue_take(q, item); }

size_t async_queue_size(const async_queue *q) { return q->count; }

static void async_queue_put_cancel(async_op *op)
{
    async_queue *q = ((async_waiter *)op)->owner;
    async__waitlist_remove(&q->_putters_head, &q->_putters_tail, (async_waiter *)op);
}

static void async_queue_get_cancel(async_op *op)
{
    async_queue *q = ((async_waiter *)op)->owner;
    async__waitlist_remove(&q->_getters_head, &q->_getters_tail, (async_waiter *)op);
}

static bool async_queue_get_revoke(async_op *op)
{
    if (op->status != ASYNC_OK)
        return false;
    if (async_queue_unget(((async_waiter *)op)->owner, op->value))
        return true;
    log_error("async: queue full: the item of a cancelled get cannot go back and stays in that get");
    return false;
}

static const async_op_vtable async_queue_put_vt = {.name = "queue put", .cancel = async_queue_put_cancel};

static const async_op_vtable async_queue_get_vt = {
    .name = "queue get",
    .cancel = async_queue_get_cancel,
    .revoke = async_queue_get_revoke,
};

async_op *async_queue_put(async_scope *scope, async_queue *q, void *item)
{
    async_waiter *w = async__waiter_new(scope, &async_queue_put_vt, q, sizeof(async_waiter));
    w->item = item;
    if (async_queue_offer(q, item))
        async__op_complete(&w->op, ASYNC_OK, NULL, NULL);
    else
        async__waitlist_push(&q->_putters_head, &q->_putters_tail, w);
    return async__op_started(&w->op);
}

async_op *async_queue_get(async_scope *scope, async_queue *q)
{
    async_waiter *w = async__waiter_new(scope, &async_queue_get_vt, q, sizeof(async_waiter));
    void *item;
    if (async_queue_take(q, &item))
        async__op_complete(&w->op, ASYNC_OK, item, NULL);
    else
        async__waitlist_push(&q->_getters_head, &q->_getters_tail, w);
    return async__op_started(&w->op);
}
