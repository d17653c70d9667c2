/* fuzz_redis_reply: libFuzzer target for Redis reply handling: hiredis's reader (the same one the
 * async client uses) parses the stream as a Redis server would send it, split at the first byte's
 * read size, and every reply is copied into an async scope as the client hands it to a handler
 * (lib/clients/redis_reply.c), then walked. A reply the reader refuses ends the stream, as it closes the
 * link. The reader is bounded as the client's are (an announced array of 8 GB was the first finding).
 * Invariants beyond the sanitizers: copied strings keep their length and NUL terminator, arrays
 * their element count; with the guard, no reply but an error gets through once nothing waits. */
#include <event2/event.h>
#include <hiredis/hiredis.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "async.h"
#include "redis.h"
#include "redis_internal.h"

static struct event_base *fuzz_base;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_base = event_base_new();
    return 0;
}

static void fuzz_redis_check(const struct redisReply *in, const redis_reply *out)
{
    switch (out->kind) {
    case REDIS_KIND_STRING:
    case REDIS_KIND_STATUS:
    case REDIS_KIND_ERROR:
        if (out->len != (in->str ? in->len : 0) || out->str[out->len] != '\0' ||
            (out->len && memcmp(out->str, in->str, out->len) != 0)) {
            fprintf(stderr, "fuzz_redis_reply: a copied string differs\n");
            abort();
        }
        break;
    case REDIS_KIND_ARRAY:
        if (out->count != in->elements)
            abort();
        for (size_t i = 0; i < out->count; i++)
            fuzz_redis_check(in->element[i], &out->elements[i]);
        break;
    default:
        break;
    }
}

/* The guard of lib/clients/redis.c, told how many replies the "commands" wait for (the first byte's top
 * bits): past them every reply but an error must be refused, and the stream end there. */
static size_t fuzz_redis_waiting_for;

static bool fuzz_redis_waiting(void *arg)
{
    (void)arg;
    return fuzz_redis_waiting_for > 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    size_t piece = 1 + data[0] % 64;
    fuzz_redis_waiting_for = data[0] >> 6 == 3 ? SIZE_MAX : data[0] >> 6; /* 0, 1, 2 or all */
    data++;
    size--;
    redisReader *reader = redisReaderCreate();
    redis_reader_bound(reader); /* as lib/clients/redis.c does for every link */
    redis_reader_guard guard = {.waiting = fuzz_redis_waiting};
    redis_reader_guard_set(reader, &guard);
    async_scope *scope = async_scope_new(fuzz_base);
    bool failed = false;
    for (size_t fed = 0; fed < size && !failed;) {
        size_t n = size - fed < piece ? size - fed : piece;
        if (redisReaderFeed(reader, (const char *)data + fed, n) != REDIS_OK)
            break;
        fed += n;
        for (;;) {
            void *reply = NULL;
            if (redisReaderGetReply(reader, &reply) != REDIS_OK) {
                failed = true; /* a protocol error: the client drops the link */
                break;
            }
            if (!reply)
                break;
            if (guard.tripped || (fuzz_redis_waiting_for == 0 && ((redisReply *)reply)->type != REDIS_REPLY_ERROR)) {
                fprintf(stderr, "fuzz_redis_reply: a reply nobody waited for got through the guard\n");
                abort();
            }
            if (fuzz_redis_waiting_for != SIZE_MAX && fuzz_redis_waiting_for > 0)
                fuzz_redis_waiting_for--;
            redis_reply *copy = redis_reply_copy(scope, reply);
            fuzz_redis_check(reply, copy);
            if (copy->kind == REDIS_KIND_ERROR)
                (void)redis_reply_error_text(scope, copy->str, copy->len);
            freeReplyObject(reply);
        }
    }
    async_scope_free(scope);
    redisReaderFree(reader);
    return 0;
}
