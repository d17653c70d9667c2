/* kv_memory: the embedded key-value store behind /v1/kv when kv.backend is "memory" (the default):
 * a bounded hash table with TTL expiry, one per process, shared by every loop under a mutex (see
 * kv_store.h for its contract). It needs nothing outside the process, which is why it is the default;
 * its price is that values live and die with the process.
 *
 * Locking: one mutex for the table and the expiry heap. What can be done outside it is: hashing the
 * key, allocating and filling a new entry, freeing a replaced one. Inside it, a call costs one chain
 * walk plus a heap update, and a get one copy of the value. Growing the table rehashes every entry
 * under the lock (a pause of about a millisecond per 100,000 entries, once per doubling). */
#include <pthread.h>
#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "handlers.h"
#include "kv_store.h"
#include "xalloc_internal.h"

const char KV_ERROR_FULL[] = "full";

#define KV_MEMORY_NOT_IN_HEAP SIZE_MAX
#define KV_MEMORY_MIN_BUCKETS 64u

typedef struct kv_memory_entry kv_memory_entry;
struct kv_memory_entry {
    kv_memory_entry *next; /* bucket chain */
    uint64_t hash;
    uint64_t expires_ms;   /* 0: never */
    size_t heap_index;     /* in the expiry heap, or KV_MEMORY_NOT_IN_HEAP */
    size_t key_len;
    size_t value_len;
    char data[];           /* key, value, NUL */
};

struct kv_memory {
    pthread_mutex_t lock;
    unsigned char hash_key[crypto_shorthash_KEYBYTES];
    kv_memory_entry **buckets;
    size_t mask;           /* bucket count - 1; the count is a power of two */
    size_t count;          /* entries in the table, expired ones not yet purged included */
    size_t max_entries;
    size_t bytes;          /* key and value bytes of the entries in the table */
    size_t max_bytes;
    kv_memory_entry **heap; /* min-heap on expires_ms of the entries that expire */
    size_t heap_len;
    size_t heap_cap;
};

/* ---- expiry heap (caller holds the lock) ------------------------------------------------------- */

static void kv_heap_place(kv_memory *m, size_t i, kv_memory_entry *e)
{
    m->heap[i] = e;
    e->heap_index = i;
}

static void kv_heap_up(kv_memory *m, size_t i)
{
    kv_memory_entry *e = m->heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (m->heap[parent]->expires_ms <= e->expires_ms)
            break;
        kv_heap_place(m, i, m->heap[parent]);
        i = parent;
    }
    kv_heap_place(m, i, e);
}

static void kv_heap_down(kv_memory *m, size_t i)
{
    kv_memory_entry *e = m->heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= m->heap_len)
            break;
        if (child + 1 < m->heap_len && m->heap[child + 1]->expires_ms < m->heap[child]->expires_ms)
            child++;
        if (m->heap[child]->expires_ms >= e->expires_ms)
            break;
        kv_heap_place(m, i, m->heap[child]);
        i = child;
    }
    kv_heap_place(m, i, e);
}

static void kv_heap_push(kv_memory *m, kv_memory_entry *e)
{
    if (m->heap_len == m->heap_cap) {
        m->heap_cap = m->heap_cap ? m->heap_cap * 2 : 64;
        m->heap = xrealloc(m->heap, m->heap_cap * sizeof(*m->heap));
    }
    kv_heap_place(m, m->heap_len++, e);
    kv_heap_up(m, e->heap_index);
}

static void kv_heap_remove(kv_memory *m, kv_memory_entry *e)
{
    size_t i = e->heap_index;
    e->heap_index = KV_MEMORY_NOT_IN_HEAP;
    kv_memory_entry *last = m->heap[--m->heap_len];
    if (last == e)
        return;
    kv_heap_place(m, i, last);
    if (i > 0 && m->heap[(i - 1) / 2]->expires_ms > last->expires_ms)
        kv_heap_up(m, i);
    else
        kv_heap_down(m, i);
}

/* ---- table (caller holds the lock) ------------------------------------------------------------- */

static uint64_t kv_memory_hash(const kv_memory *m, const char *key, size_t key_len)
{
    unsigned char out[crypto_shorthash_BYTES];
    crypto_shorthash(out, (const unsigned char *)key, key_len, m->hash_key);
    uint64_t h;
    memcpy(&h, out, sizeof(h));
    return h;
}

/* Where the key's entry is linked, or the end of its chain (*result == NULL) when it is absent. */
static kv_memory_entry **kv_memory_find(kv_memory *m, uint64_t hash, const char *key, size_t key_len)
{
    kv_memory_entry **pp = &m->buckets[hash & m->mask];
    for (; *pp; pp = &(*pp)->next) {
        const kv_memory_entry *e = *pp;
        if (e->hash == hash && e->key_len == key_len && memcmp(e->data, key, key_len) == 0)
            break;
    }
    return pp;
}

/* Unlinks the entry at *pp from the table and the heap; the caller frees it (outside the lock). */
static kv_memory_entry *kv_memory_unlink(kv_memory *m, kv_memory_entry **pp)
{
    kv_memory_entry *e = *pp;
    *pp = e->next;
    if (e->heap_index != KV_MEMORY_NOT_IN_HEAP)
        kv_heap_remove(m, e);
    m->count--;
    m->bytes -= e->key_len + e->value_len;
    return e;
}

/* Drops every entry whose deadline has passed, so none is ever found or counted afterwards. Each
 * expiry is paid for once, by whichever call comes first after it. */
static void kv_memory_expire(kv_memory *m, uint64_t now_ms)
{
    while (m->heap_len > 0 && m->heap[0]->expires_ms <= now_ms) {
        kv_memory_entry *e = m->heap[0];
        kv_memory_entry **pp = &m->buckets[e->hash & m->mask];
        while (*pp != e)
            pp = &(*pp)->next;
        free(kv_memory_unlink(m, pp));
    }
}

/* Keeps chains about one entry long: doubles the buckets when entries outnumber them. */
static void kv_memory_grow(kv_memory *m)
{
    size_t old_count = m->mask + 1;
    if (m->count <= old_count)
        return;
    size_t new_count = old_count * 2;
    kv_memory_entry **buckets = xcalloc(new_count, sizeof(*buckets));
    for (size_t i = 0; i < old_count; i++) {
        kv_memory_entry *e = m->buckets[i];
        while (e) {
            kv_memory_entry *next = e->next;
            kv_memory_entry **head = &buckets[e->hash & (new_count - 1)];
            e->next = *head;
            *head = e;
            e = next;
        }
    }
    free(m->buckets);
    m->buckets = buckets;
    m->mask = new_count - 1;
}

/* ---- the store's calls ------------------------------------------------------------------------- */

kv_memory *kv_memory_new(size_t max_entries) { return kv_memory_new_bounded(max_entries, SIZE_MAX); }

kv_memory *kv_memory_new_bounded(size_t max_entries, size_t max_bytes)
{
    /* For the hash key; idempotent and thread-safe, so callers need not have initialised libsodium. */
    if (sodium_init() < 0)
        abort();
    kv_memory *m = xcalloc(1, sizeof(*m));
    pthread_mutex_init(&m->lock, NULL);
    crypto_shorthash_keygen(m->hash_key);
    m->buckets = xcalloc(KV_MEMORY_MIN_BUCKETS, sizeof(*m->buckets));
    m->mask = KV_MEMORY_MIN_BUCKETS - 1;
    m->max_entries = max_entries;
    m->max_bytes = max_bytes;
    return m;
}

void kv_memory_free(kv_memory *m)
{
    if (!m)
        return;
    for (size_t i = 0; i <= m->mask; i++) {
        kv_memory_entry *e = m->buckets[i];
        while (e) {
            kv_memory_entry *next = e->next;
            free(e);
            e = next;
        }
    }
    free(m->buckets);
    free(m->heap);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

kv_memory_put_status kv_memory_put(kv_memory *m, const char *key, size_t key_len, const char *value, size_t value_len,
                                   uint64_t ttl_ms, uint64_t now_ms)
{
    kv_memory_entry *e = xmalloc(sizeof(*e) + key_len + value_len + 1);
    e->next = NULL;
    e->hash = kv_memory_hash(m, key, key_len);
    e->expires_ms = ttl_ms ? now_ms + ttl_ms : 0;
    e->heap_index = KV_MEMORY_NOT_IN_HEAP;
    e->key_len = key_len;
    e->value_len = value_len;
    memcpy(e->data, key, key_len);
    memcpy(e->data + key_len, value, value_len);
    e->data[key_len + value_len] = '\0';

    kv_memory_entry *old = NULL;
    kv_memory_put_status status;
    pthread_mutex_lock(&m->lock);
    kv_memory_expire(m, now_ms);
    kv_memory_entry **pp = kv_memory_find(m, e->hash, key, key_len);
    /* A replacement only needs room for the difference; a new key needs an entry and its bytes. */
    size_t old_bytes = *pp ? (*pp)->key_len + (*pp)->value_len : 0;
    bool fits = m->bytes - old_bytes + key_len + value_len <= m->max_bytes;
    if (!fits || (!*pp && m->count >= m->max_entries)) {
        status = KV_MEMORY_FULL;
    } else if (*pp) {
        old = kv_memory_unlink(m, pp);
        status = KV_MEMORY_REPLACED;
    } else {
        status = KV_MEMORY_CREATED;
    }
    if (status != KV_MEMORY_FULL) {
        /* At the old entry's place in its chain, or at the chain's end for a new key. */
        e->next = *pp;
        *pp = e;
        m->count++;
        m->bytes += key_len + value_len;
        if (e->expires_ms)
            kv_heap_push(m, e);
        kv_memory_grow(m);
    }
    pthread_mutex_unlock(&m->lock);
    free(old);
    if (status == KV_MEMORY_FULL)
        free(e);
    return status;
}

bool kv_memory_get(kv_memory *m, const char *key, size_t key_len, uint64_t now_ms, kv_memory_alloc_fn alloc,
                   void *ctx, kv_result *out)
{
    uint64_t hash = kv_memory_hash(m, key, key_len);
    pthread_mutex_lock(&m->lock);
    kv_memory_expire(m, now_ms);
    const kv_memory_entry *e = *kv_memory_find(m, hash, key, key_len);
    if (e) {
        char *copy = alloc(ctx, e->value_len + 1);
        memcpy(copy, e->data + e->key_len, e->value_len);
        copy[e->value_len] = '\0';
        out->existed = true;
        out->value = copy;
        out->value_len = e->value_len;
        /* Rounded to the nearest second like Redis's TTL, so both backends report the same. */
        out->ttl_s = e->expires_ms ? (int64_t)((e->expires_ms - now_ms + 500) / 1000) : KV_TTL_NONE;
    }
    pthread_mutex_unlock(&m->lock);
    return e != NULL;
}

bool kv_memory_delete(kv_memory *m, const char *key, size_t key_len, uint64_t now_ms)
{
    uint64_t hash = kv_memory_hash(m, key, key_len);
    kv_memory_entry *gone = NULL;
    pthread_mutex_lock(&m->lock);
    kv_memory_expire(m, now_ms);
    kv_memory_entry **pp = kv_memory_find(m, hash, key, key_len);
    if (*pp)
        gone = kv_memory_unlink(m, pp);
    pthread_mutex_unlock(&m->lock);
    free(gone);
    return gone != NULL;
}

size_t kv_memory_count(kv_memory *m, uint64_t now_ms)
{
    pthread_mutex_lock(&m->lock);
    kv_memory_expire(m, now_ms);
    size_t n = m->count;
    pthread_mutex_unlock(&m->lock);
    return n;
}

/* ---- the backend: one store per process, referenced from each loop's KV slot ------------------- */

/* Created by the first loop that needs it and freed when the last loop holding it is freed, so the
 * store has one owner path even though every loop shares it. */
static pthread_mutex_t kv_memory_shared_lock = PTHREAD_MUTEX_INITIALIZER;
static kv_memory *kv_memory_shared;
static unsigned kv_memory_shared_refs;

static void kv_memory_release(void *value)
{
    (void)value;
    pthread_mutex_lock(&kv_memory_shared_lock);
    if (--kv_memory_shared_refs == 0) {
        kv_memory_free(kv_memory_shared);
        kv_memory_shared = NULL;
    }
    pthread_mutex_unlock(&kv_memory_shared_lock);
}

static kv_memory *kv_memory_for_loop(http_loop *loop)
{
    kv_memory *m = http_loop_local(loop, HTTP_LOOP_SLOT_KV);
    if (m)
        return m;
    pthread_mutex_lock(&kv_memory_shared_lock);
    if (!kv_memory_shared)
        kv_memory_shared = kv_memory_new_bounded(handlers_get_settings()->kv_max_entries,
                                                 handlers_get_settings()->kv_max_memory_bytes);
    kv_memory_shared_refs++;
    m = kv_memory_shared;
    pthread_mutex_unlock(&kv_memory_shared_lock);
    http_loop_set_local(loop, HTTP_LOOP_SLOT_KV, m, kv_memory_release);
    return m;
}

static void *kv_memory_scope_alloc(void *ctx, size_t size) { return async_scope_alloc(ctx, size); }

/* The store answers at once; the future still completes through the loop like any other operation,
 * so handlers are written the same way for both backends. */
static async_op *kv_memory_op_get(async_scope *scope, http_loop *loop, const char *key, size_t key_len)
{
    async_op *op = async_future(scope);
    if (op->status != ASYNC_PENDING)
        return op;
    kv_result *res = async_scope_alloc(scope, sizeof(*res));
    kv_memory_get(kv_memory_for_loop(loop), key, key_len, async_now_ms(), kv_memory_scope_alloc, scope, res);
    async_resolve(op, res);
    return op;
}

static async_op *kv_memory_op_put(async_scope *scope, http_loop *loop, const char *key, size_t key_len,
                                  const char *value, size_t value_len, unsigned ttl_s)
{
    async_op *op = async_future(scope);
    if (op->status != ASYNC_PENDING)
        return op;
    kv_memory_put_status st = kv_memory_put(kv_memory_for_loop(loop), key, key_len, value, value_len,
                                            (uint64_t)ttl_s * 1000u, async_now_ms());
    if (st == KV_MEMORY_FULL) {
        async_fail(op, KV_ERROR_FULL);
        return op;
    }
    kv_result *res = async_scope_alloc(scope, sizeof(*res));
    res->existed = st == KV_MEMORY_REPLACED;
    async_resolve(op, res);
    return op;
}

static async_op *kv_memory_op_del(async_scope *scope, http_loop *loop, const char *key, size_t key_len)
{
    async_op *op = async_future(scope);
    if (op->status != ASYNC_PENDING)
        return op;
    kv_result *res = async_scope_alloc(scope, sizeof(*res));
    res->existed = kv_memory_delete(kv_memory_for_loop(loop), key, key_len, async_now_ms());
    async_resolve(op, res);
    return op;
}

const kv_store kv_memory_store = {
    .name = "memory",
    .validated = true,
    .get = kv_memory_op_get,
    .put = kv_memory_op_put,
    .del = kv_memory_op_del,
};
