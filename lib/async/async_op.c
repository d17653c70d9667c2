/* async_op: the life of every operation: completion, continuations (async_op_then), cancellation and
 * revocation, and how gather, wait_for and wait_first listen to their children. The operations
 * themselves live in their own files (async_timer.c, async_future.c, ...). */
#include "async_op_internal.h"

#include <string.h>

#include "log.h"

#if defined(__SANITIZE_ADDRESS__)
#define ASYNC_OP_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ASYNC_OP_ASAN 1
#endif
#endif
#ifdef ASYNC_OP_ASAN
#include <sanitizer/asan_interface.h>
#define ASYNC_OP_POISON(p, n) __asan_poison_memory_region(p, n)
#define ASYNC_OP_UNPOISON(p, n) __asan_unpoison_memory_region(p, n)
#else
#define ASYNC_OP_POISON(p, n) ((void)(p), (void)(n))
#define ASYNC_OP_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* ---- recycling released operations (async_op_release) --------------------------------------- */

/* A released operation's block while it waits for reuse: this header, then poisoned bytes under
 * ASan, so a use after release is reported like a use after free. */
struct async_recycled {
    struct async_recycled *next;
    uint32_t size;
};

/* How many released blocks a new operation looks at: a scope's loop reuses one or two kinds of
 * operation, so the one that fits is near the front; a miss only costs fresh memory. */
#define ASYNC_RECYCLE_SCAN 8

static async_op *async_op_reuse(async_scope *s, size_t size)
{
    struct async_recycled **link = &s->recycled;
    for (unsigned n = 0; *link && n < ASYNC_RECYCLE_SCAN; n++, link = &(*link)->next) {
        struct async_recycled *r = *link;
        if (r->size < size || r->size > 2 * size)
            continue;
        *link = r->next;
        uint32_t have = r->size;
        ASYNC_OP_UNPOISON(r, have);
        memset(r, 0, have);
        async_op *op = (async_op *)(void *)r;
        op->_size = have;
        return op;
    }
    return NULL;
}

void async__scope_unpoison_recycled(async_scope *s)
{
    for (struct async_recycled *r = s->recycled; r; r = r->next)
        ASYNC_OP_UNPOISON(r, r->size);
    s->recycled = NULL;
}

async_op *async__op_new(async_scope *s, const async_op_vtable *vt, size_t size)
{
    async_op *op = s->recycled ? async_op_reuse(s, size) : NULL;
    if (!op) {
        op = async_scope_alloc(s, size);
        op->_size = (uint32_t)size;
    }
    op->status = ASYNC_PENDING;
    op->_vt = vt;
    op->_scope = s;
    op->started_ms = async_now_ms();
    async__list_push(&s->pending, op);
    return op;
}

/* Last step of every constructor: nothing may stay alive in a scope that is going away. */
async_op *async__op_started(async_op *op)
{
    if (op->_scope->closing)
        async_op_cancel(op);
    return op;
}

void async__op_complete(async_op *op, async_status status, void *value, const char *error)
{
    if (op->status != ASYNC_PENDING)
        return;
    async_scope *s = op->_scope;
    op->status = status;
    op->value = value;
    op->error = error;
    op->finished_ms = async_now_ms();
    async__list_remove(&s->pending, op);
    if (op->_cb_set)
        async__scope_enqueue(s, op);
    else
        async__list_push(&s->unclaimed, op);
}

bool async__op_undelivered(const async_op *op)
{
    return op->status != ASYNC_PENDING && (op->_queued || !op->_cb_set);
}

/* Takes op off the unclaimed list or the ready queue. */
void async__op_unlist_completed(async_op *op)
{
    if (op->_queued) {
        async__list_remove(&op->_scope->ready, op);
        op->_queued = false;
    } else {
        async__list_remove(&op->_scope->unclaimed, op);
    }
}

/* No continuation will ever run for op again. */
static void async_op_detach(async_op *op)
{
    op->_cb = NULL;
    op->_cb_arg = NULL;
    op->_cb_set = true;
}

async_op *async__op_observer(const async_op *op)
{
    return op->_cb == async__child_done ? op->_cb_arg : NULL;
}

bool async__op_revoke(async_op *op)
{
    if (!op->_vt->revoke || !op->_vt->revoke(op))
        return false;
    op->status = ASYNC_CANCELLED;
    op->value = NULL;
    op->error = NULL;
    return true;
}

static void async_op_cancel_pending(async_op *op)
{
    async_op *observer = async__op_observer(op);
    async__list_remove(&op->_scope->pending, op);
    op->status = ASYNC_CANCELLED;
    op->finished_ms = async_now_ms();
    async_op_detach(op);
    op->_vt->cancel(op);
    if (observer)
        observer->_vt->child_done(observer, op, true);
}

static void async_op_cancel_undelivered(async_op *op)
{
    async_op *observer = async__op_observer(op);
    async__op_unlist_completed(op);
    async_op_detach(op);
    async__op_revoke(op);
    if (observer)
        observer->_vt->child_done(observer, op, true);
}

void async_op_cancel(async_op *op)
{
    if (!op)
        return;
    if (op->status == ASYNC_PENDING)
        async_op_cancel_pending(op);
    else if (async__op_undelivered(op))
        async_op_cancel_undelivered(op);
}

void async_op_then(async_op *op, async_cb cb, void *arg)
{
    if (!op || !cb) {
        log_error("async: async_op_then without %s ignored", op ? "a continuation" : "an operation");
        return;
    }
    if (op->_cb_set) {
        /* A cancelled operation has _cb_set and no _cb: nothing to say, it will just never run. */
        if (op->_cb)
            log_error("async: second continuation on a %s operation ignored", op->_vt->name);
        return;
    }
    op->_cb = cb;
    op->_cb_arg = arg;
    op->_cb_set = true;
    if (op->status != ASYNC_PENDING) {
        async__list_remove(&op->_scope->unclaimed, op);
        async__scope_enqueue(op->_scope, op);
    }
}

static const async_op_vtable async_released_vt = {.name = "released"};

void async_op_release(async_op *op)
{
    if (!op)
        return;
    async_scope *s = op->_scope;
    if (op->_vt == &async_released_vt) {
        log_error("async_op_release: operation released twice; ignored");
        return;
    }
    if (s->closing)
        return; /* its memory goes with the scope; a coroutine unwinding may still read it */
    if (op->status == ASYNC_PENDING || op->_queued || async__op_observer(op)) {
        log_error("async_op_release: the %s operation is %s; not released", op->_vt->name,
                  op->status == ASYNC_PENDING ? "pending (cancel it first)"
                  : op->_queued             ? "about to run its continuation"
                                            : "a child of gather, wait_for or wait_first");
        return;
    }
    if (async__op_undelivered(op))
        async_op_cancel(op); /* nobody took it: undo what it holds (a permit, a queue item) */
    if (op->_vt->release)
        op->_vt->release(op);
    uint32_t size = op->_size;
    struct async_recycled *r = (struct async_recycled *)(void *)op;
    memset(r, 0, size);
    r->size = size;
    /* The vtable slot lies past the header: a second release of the same pointer finds this mark
     * (until the block is reused). */
    op->_vt = &async_released_vt;
    r->next = s->recycled;
    s->recycled = r;
    ASYNC_OP_POISON((char *)op + sizeof(async_op), size - sizeof(async_op));
}

uint64_t async_op_elapsed_ms(const async_op *op)
{
    uint64_t end = op->status == ASYNC_PENDING ? async_now_ms() : op->finished_ms;
    return end > op->started_ms ? end - op->started_ms : 0;
}

/* ---- children of gather, wait_for and wait_first ----------------------------------------- */

void async__child_done(async_op *child, void *parent)
{
    async_op *p = parent;
    p->_vt->child_done(p, child, false);
}

/* Why parent cannot listen to child, or NULL if it can. */
const char *async__child_problem(const async_scope *scope, const async_op *child,
                                      const async_op *parent)
{
    if (!child)
        return "no operation";
    if (child->_scope != scope)
        return "operation of another scope";
    const async_op *other = async__op_observer(child);
    if (other && other != parent && (child->status == ASYNC_PENDING || child->_queued))
        return "operation already awaited";
    return NULL;
}

/* Makes parent the listener of a pending child, or takes in the completion of one whose continuation
 * has not run yet (which then counts as consumed by parent). */
void async__op_adopt(async_op *parent, async_op *child)
{
    if (child->status != ASYNC_PENDING)
        async__op_unlist_completed(child);
    child->_cb = async__child_done;
    child->_cb_arg = parent;
    child->_cb_set = true;
}

/* Cancels a child parent still waits for, without parent hearing about it. */
void async__op_cancel_child(async_op *parent, async_op *child)
{
    if (async__op_observer(child) != parent)
        return;
    if (child->status == ASYNC_PENDING || child->_queued) {
        child->_cb = NULL;
        child->_cb_arg = NULL;
        async_op_cancel(child);
    }
}

/* Undoes a child whose completion parent consumed; at most once per child. */
bool async__op_revoke_child(async_op *parent, async_op *child)
{
    if (async__op_observer(child) != parent || child->status == ASYNC_PENDING || child->_queued)
        return false;
    child->_cb = NULL;
    child->_cb_arg = NULL;
    return async__op_revoke(child);
}

void async__op_release_child(async_op *parent, async_op *child)
{
    if (async__op_observer(child) != parent)
        return;
    if (child->status != ASYNC_PENDING) {
        /* Completed: its report is queued to parent, or parent took it in already (consumed). */
        if (child->_queued) {
            async__list_remove(&child->_scope->ready, child);
            child->_queued = false;
        }
        async__list_push(&child->_scope->unclaimed, child);
    }
    child->_cb = NULL;
    child->_cb_arg = NULL;
    child->_cb_set = false;
}

bool async__status_failed(async_status st) { return st == ASYNC_FAILED || st == ASYNC_TIMEOUT; }
