/* redis_reply: copies hiredis replies into scope memory. hiredis frees its reply as soon as the
 * callback that received it returns, so an operation's value must be a copy that lives as long as the
 * operation's scope, not a pointer into hiredis. */
#include <hiredis/hiredis.h>
#include <pthread.h>
#include <string.h>

#include "redis.h"
#include "redis_internal.h"

#define REDIS_ERROR_PREFIX "redis: "

/* The bytes plus a NUL, so text replies can be used as C strings; len still counts every byte. */
static const char *redis_reply_copy_bytes(async_scope *scope, const char *s, size_t len)
{
    char *out = async_scope_alloc(scope, len + 1);
    if (len)
        memcpy(out, s, len);
    out[len] = '\0';
    return out;
}

void redis_reply_copy_into(async_scope *scope, const struct redisReply *r, redis_reply *out)
{
    memset(out, 0, sizeof(*out));
    switch (r->type) {
    case REDIS_REPLY_STRING:
    case REDIS_REPLY_STATUS:
    case REDIS_REPLY_ERROR:
        out->kind = r->type == REDIS_REPLY_STRING   ? REDIS_KIND_STRING
                    : r->type == REDIS_REPLY_STATUS ? REDIS_KIND_STATUS
                                                    : REDIS_KIND_ERROR;
        out->str = redis_reply_copy_bytes(scope, r->str ? r->str : "", r->str ? r->len : 0);
        out->len = r->str ? r->len : 0;
        break;
    case REDIS_REPLY_INTEGER:
        out->kind = REDIS_KIND_INTEGER;
        out->integer = r->integer;
        break;
    case REDIS_REPLY_ARRAY:
        out->kind = REDIS_KIND_ARRAY;
        out->count = r->elements;
        out->elements = async_scope_alloc(scope, r->elements * sizeof(*out->elements));
        /* Recursion is bounded: hiredis's reader refuses replies nested deeper than 7 levels. */
        for (size_t i = 0; i < r->elements; i++)
            redis_reply_copy_into(scope, r->element[i], &out->elements[i]);
        break;
    default:
        /* REDIS_REPLY_NIL, and anything a later protocol version may add, reads as nil. */
        out->kind = REDIS_KIND_NIL;
        break;
    }
}

redis_reply *redis_reply_copy(async_scope *scope, const struct redisReply *r)
{
    redis_reply *out = async_scope_alloc(scope, sizeof(*out));
    redis_reply_copy_into(scope, r, out);
    return out;
}

const char *redis_reply_error_text(async_scope *scope, const char *text, size_t len)
{
    size_t prefix = sizeof(REDIS_ERROR_PREFIX) - 1;
    char *out = async_scope_alloc(scope, prefix + len + 1);
    memcpy(out, REDIS_ERROR_PREFIX, prefix);
    if (len)
        memcpy(out + prefix, text, len);
    out[prefix + len] = '\0';
    return out;
}

/* ---- bounded readers ---------------------------------------------------------------------------- */

static redisReplyObjectFunctions redis_reader_default_fns, redis_reader_bounded_fns;
static pthread_once_t redis_reader_fns_once = PTHREAD_ONCE_INIT;

/* A reply begins (its top-level object is about to be made, before hiredis looks for the callback it
 * belongs to): false when a guard is set and no command waits for it. hiredis parses one reply and
 * dispatches it before it parses the next, so "a command waits" is exactly "the callback list is not
 * empty" at this moment. */
static bool redis_reader_expected(const redisReadTask *task, int type)
{
    redis_reader_guard *guard = task->privdata;
    if (task->parent || !guard || type == REDIS_REPLY_ERROR || guard->waiting(guard->arg))
        return true;
    guard->tripped = true;
    return false; /* hiredis reports it as a reader error ("Out of memory"): the link is dropped */
}

static void *redis_reader_create_string(const redisReadTask *task, char *str, size_t len)
{
    if (!redis_reader_expected(task, task->type))
        return NULL;
    return redis_reader_default_fns.createString(task, str, len);
}

static void *redis_reader_create_array(const redisReadTask *task, int elements)
{
    if (elements < 0 || elements > REDIS_MAX_REPLY_ELEMENTS || !redis_reader_expected(task, REDIS_REPLY_ARRAY))
        return NULL; /* hiredis reports it as a reader error ("Out of memory"): the link is dropped */
    return redis_reader_default_fns.createArray(task, elements);
}

static void *redis_reader_create_integer(const redisReadTask *task, long long value)
{
    if (!redis_reader_expected(task, REDIS_REPLY_INTEGER))
        return NULL;
    return redis_reader_default_fns.createInteger(task, value);
}

static void *redis_reader_create_nil(const redisReadTask *task)
{
    if (!redis_reader_expected(task, REDIS_REPLY_NIL))
        return NULL;
    return redis_reader_default_fns.createNil(task);
}

/* hiredis's default functions are not exported: copy them from a reader, once, and wrap them. */
static void redis_reader_fns_init(void)
{
    redisReader *probe = redisReaderCreate();
    redis_reader_default_fns = *probe->fn;
    redisReaderFree(probe);
    redis_reader_bounded_fns = redis_reader_default_fns;
    redis_reader_bounded_fns.createString = redis_reader_create_string;
    redis_reader_bounded_fns.createArray = redis_reader_create_array;
    redis_reader_bounded_fns.createInteger = redis_reader_create_integer;
    redis_reader_bounded_fns.createNil = redis_reader_create_nil;
}

void redis_reader_bound(struct redisReader *reader)
{
    pthread_once(&redis_reader_fns_once, redis_reader_fns_init);
    reader->fn = &redis_reader_bounded_fns;
}

void redis_reader_guard_set(struct redisReader *reader, redis_reader_guard *guard)
{
    guard->tripped = false;
    reader->privdata = guard;
}
