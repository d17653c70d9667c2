/* kv_store: the small interface between the /v1/kv endpoints (kv.c) and where values live: the
 * embedded memory store (kv_memory.c, the default) or Redis (kv_redis.c). Both take the same calls and
 * give the same answers, so the API and its tests do not depend on the backend (docs/kv.md).
 *
 * Every call is an async operation in the request's scope, started and completed on the request's
 * loop. It completes OK with value = a kv_result in scope memory, or FAILED with a short error:
 * KV_ERROR_FULL (memory store at kv.max_entries), or one of redis.h's (REDIS_ERROR_TIMEOUT,
 * REDIS_ERROR_UNAVAILABLE, REDIS_ERROR_CONNECTION_LOST, "redis: ..."). Keys and values are bytes with
 * explicit lengths; values are compact JSON text, stored and returned as is. */
#ifndef APIARY_KV_STORE_H
#define APIARY_KV_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "async.h"
#include "http_loop_internal.h"

/* The memory store holds kv.max_entries live entries and refuses new keys beyond that. */
extern const char KV_ERROR_FULL[];
/* The Redis value under a key is not something apiary stored (not a string). */
extern const char KV_ERROR_CORRUPT[];

/* No expiry. */
#define KV_TTL_NONE (-1)

typedef struct kv_result {
    bool existed;      /* get, delete: the key was there; put: a value was replaced */
    const char *value; /* get: the stored JSON text (scope memory), NUL-terminated */
    size_t value_len;
    int64_t ttl_s;     /* get: seconds left, rounded to the nearest (as Redis's TTL), or KV_TTL_NONE */
} kv_result;

typedef struct kv_store {
    const char *name;
    /* The store returns only values that came through put (the memory store), so a GET may splice
     * them into its answer unchecked; false when others can write the store too (Redis): GET checks
     * the text with json_valid first. */
    bool validated;
    async_op *(*get)(async_scope *scope, http_loop *loop, const char *key, size_t key_len);
    /* ttl_s 0: no expiry (and any previous one is cleared, as Redis's SET does). */
    async_op *(*put)(async_scope *scope, http_loop *loop, const char *key, size_t key_len, const char *value,
                     size_t value_len, unsigned ttl_s);
    async_op *(*del)(async_scope *scope, http_loop *loop, const char *key, size_t key_len);
} kv_store;

extern const kv_store kv_memory_store;
extern const kv_store kv_redis_store;

/* ---- the memory store itself (kv_memory.c) -----------------------------------------------------
 * A hash table behind one mutex, shared by every loop, with TTL expiry (a min-heap of deadlines,
 * purged at the start of every call, so expired entries neither answer nor count against the
 * limit) and at most max_entries live entries. Keys are hashed with SipHash under a random key, so
 * clients cannot choose colliding keys. Thread-safe; `now_ms` is any monotonic clock in ms, passed
 * in so tests can move time. */

typedef struct kv_memory kv_memory;

typedef enum kv_memory_put_status {
    KV_MEMORY_CREATED,
    KV_MEMORY_REPLACED,
    KV_MEMORY_FULL, /* a new key while max_entries are live, or over max_bytes: nothing stored */
} kv_memory_put_status;

/* Allocator for the copy of a value that get hands out (async_scope_alloc in the backend). */
typedef void *(*kv_memory_alloc_fn)(void *ctx, size_t size);

kv_memory *kv_memory_new(size_t max_entries);
/* Also bounded in bytes: the keys and values held stay at or below max_bytes (kv.max_memory_bytes). */
kv_memory *kv_memory_new_bounded(size_t max_entries, size_t max_bytes);
void kv_memory_free(kv_memory *m);
/* ttl_ms 0: no expiry. Copies key and value. */
kv_memory_put_status kv_memory_put(kv_memory *m, const char *key, size_t key_len, const char *value, size_t value_len,
                                   uint64_t ttl_ms, uint64_t now_ms);
/* False when absent. Otherwise out->value is a NUL-terminated copy from alloc(ctx, len + 1), made
 * under the lock, and out->ttl_s the seconds left. */
bool kv_memory_get(kv_memory *m, const char *key, size_t key_len, uint64_t now_ms, kv_memory_alloc_fn alloc,
                   void *ctx, kv_result *out);
/* True when the key was there. */
bool kv_memory_delete(kv_memory *m, const char *key, size_t key_len, uint64_t now_ms);
/* Live entries at now_ms. */
size_t kv_memory_count(kv_memory *m, uint64_t now_ms);

#endif
