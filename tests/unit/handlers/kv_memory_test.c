/* kv_memory_test: unit tests for the embedded key-value store (handlers/kv_memory.c): create, replace
 * and delete; keys and values as bytes; TTL expiry and the remaining-seconds rounding (time is passed
 * in, so nothing sleeps); the max_entries bound and that expired entries do not count against it;
 * the expiry heap against a brute-force model; growth; and two threads at once on shared keys. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kv_store.h"

/* ---- helpers ------------------------------------------------------------------------------------ */

/* Values handed out by get come from here and are freed by the caller of kv_test_get. */
static void *kv_test_alloc(void *ctx, size_t size)
{
    (void)ctx;
    void *p = malloc(size);
    if (!p)
        abort();
    return p;
}

static kv_memory_put_status kv_test_put(kv_memory *m, const char *key, const char *value, uint64_t ttl_ms,
                                        uint64_t now)
{
    return kv_memory_put(m, key, strlen(key), value, strlen(value), ttl_ms, now);
}

/* Whether the key is there; when it is, its value and ttl are compared with the expected ones. */
static bool kv_test_get(kv_memory *m, const char *key, uint64_t now, const char *want, int64_t want_ttl)
{
    kv_result res = {0};
    bool found = kv_memory_get(m, key, strlen(key), now, kv_test_alloc, NULL, &res);
    if (!found)
        return false;
    cr_expect(res.existed);
    if (want) {
        cr_expect_eq(res.value_len, strlen(want), "length of %s", key);
        cr_expect_str_eq(res.value, want);
        cr_expect_eq(res.value[res.value_len], '\0');
        cr_expect_eq(res.ttl_s, want_ttl, "ttl of %s: %lld, expected %lld", key, (long long)res.ttl_s,
                     (long long)want_ttl);
    }
    free((void *)res.value);
    return true;
}

/* ---- semantics ----------------------------------------------------------------------------------- */

Test(kv_memory, create_replace_delete)
{
    kv_memory *m = kv_memory_new(100);
    cr_assert_eq(kv_test_put(m, "a", "1", 0, 0), KV_MEMORY_CREATED);
    cr_assert(kv_test_get(m, "a", 0, "1", KV_TTL_NONE));
    cr_assert_eq(kv_test_put(m, "a", "[2,3]", 0, 0), KV_MEMORY_REPLACED);
    cr_assert(kv_test_get(m, "a", 0, "[2,3]", KV_TTL_NONE));
    cr_assert_eq(kv_memory_count(m, 0), 1);
    cr_assert_not(kv_test_get(m, "b", 0, NULL, 0));
    cr_assert(kv_memory_delete(m, "a", 1, 0));
    cr_assert_not(kv_memory_delete(m, "a", 1, 0));
    cr_assert_not(kv_test_get(m, "a", 0, NULL, 0));
    cr_assert_eq(kv_memory_count(m, 0), 0);
    cr_assert_eq(kv_test_put(m, "a", "again", 0, 0), KV_MEMORY_CREATED);
    kv_memory_free(m);
}

Test(kv_memory, keys_and_values_are_bytes)
{
    kv_memory *m = kv_memory_new(100);
    /* Keys that differ by a byte, a prefix, or only after a NUL are all different keys. */
    const char k1[] = "key\0one", k2[] = "key\0two";
    const char v[] = "va\0lue\r\n";
    cr_assert_eq(kv_memory_put(m, k1, sizeof(k1) - 1, v, sizeof(v) - 1, 0, 0), KV_MEMORY_CREATED);
    cr_assert_eq(kv_memory_put(m, k2, sizeof(k2) - 1, "2", 1, 0, 0), KV_MEMORY_CREATED);
    cr_assert_eq(kv_memory_put(m, "key", 3, "3", 1, 0, 0), KV_MEMORY_CREATED);
    cr_assert_eq(kv_test_put(m, "a b \"q\" \xc3\xa9", "4", 0, 0), KV_MEMORY_CREATED);
    cr_assert_eq(kv_memory_count(m, 0), 4);
    kv_result res = {0};
    cr_assert(kv_memory_get(m, k1, sizeof(k1) - 1, 0, kv_test_alloc, NULL, &res));
    cr_assert_eq(res.value_len, sizeof(v) - 1);
    cr_assert_eq(memcmp(res.value, v, sizeof(v) - 1), 0);
    free((void *)res.value);
    cr_assert(kv_test_get(m, "key", 0, "3", KV_TTL_NONE));
    cr_assert(kv_test_get(m, "a b \"q\" \xc3\xa9", 0, "4", KV_TTL_NONE));
    cr_assert_not(kv_test_get(m, "ke", 0, NULL, 0));
    /* The empty key and the empty value are legal at this level (the API refuses an empty key). */
    cr_assert_eq(kv_memory_put(m, "", 0, "", 0, 0, 0), KV_MEMORY_CREATED);
    cr_assert(kv_test_get(m, "", 0, "", KV_TTL_NONE));
    kv_memory_free(m);
}

/* ---- TTL ----------------------------------------------------------------------------------------- */

Test(kv_memory, ttl_expires_exactly_at_the_deadline)
{
    kv_memory *m = kv_memory_new(100);
    cr_assert_eq(kv_test_put(m, "t", "v", 1000, 5000), KV_MEMORY_CREATED);
    cr_assert(kv_test_get(m, "t", 5000, "v", 1));
    cr_assert(kv_test_get(m, "t", 5499, "v", 1));  /* 501 ms left: rounds to 1 */
    cr_assert(kv_test_get(m, "t", 5500, "v", 1));  /* 500 ms left: rounds half up, like Redis */
    cr_assert(kv_test_get(m, "t", 5501, "v", 0));  /* 499 ms left */
    cr_assert(kv_test_get(m, "t", 5999, "v", 0));
    cr_assert_eq(kv_memory_count(m, 5999), 1);
    cr_assert_not(kv_test_get(m, "t", 6000, NULL, 0));
    cr_assert_eq(kv_memory_count(m, 6000), 0);
    /* Gone for good: an earlier clock does not bring it back, and a put creates it anew. */
    cr_assert_not(kv_test_get(m, "t", 5000, NULL, 0));
    cr_assert_eq(kv_test_put(m, "t", "w", 0, 6000), KV_MEMORY_CREATED);
    kv_memory_free(m);
}

Test(kv_memory, ttl_reports_whole_seconds_left)
{
    kv_memory *m = kv_memory_new(100);
    cr_assert_eq(kv_test_put(m, "ten", "v", 10000, 0), KV_MEMORY_CREATED);
    cr_assert(kv_test_get(m, "ten", 0, "v", 10));
    cr_assert(kv_test_get(m, "ten", 2400, "v", 8));
    cr_assert(kv_test_get(m, "ten", 2600, "v", 7));
    kv_memory_free(m);
}

Test(kv_memory, replace_sets_or_clears_the_ttl)
{
    kv_memory *m = kv_memory_new(100);
    cr_assert_eq(kv_test_put(m, "k", "1", 1000, 0), KV_MEMORY_CREATED);
    /* Without a ttl the replacement never expires (Redis's SET without KEEPTTL does the same). */
    cr_assert_eq(kv_test_put(m, "k", "2", 0, 500), KV_MEMORY_REPLACED);
    cr_assert(kv_test_get(m, "k", 100000, "2", KV_TTL_NONE));
    /* With one, the new deadline counts from the replacement. */
    cr_assert_eq(kv_test_put(m, "k", "3", 3000, 100000), KV_MEMORY_REPLACED);
    cr_assert(kv_test_get(m, "k", 101000, "3", 2));
    cr_assert_not(kv_test_get(m, "k", 103000, NULL, 0));
    kv_memory_free(m);
}

Test(kv_memory, delete_of_an_expiring_key)
{
    kv_memory *m = kv_memory_new(100);
    cr_assert_eq(kv_test_put(m, "a", "1", 1000, 0), KV_MEMORY_CREATED);
    cr_assert_eq(kv_test_put(m, "b", "2", 2000, 0), KV_MEMORY_CREATED);
    cr_assert(kv_memory_delete(m, "a", 1, 10));
    cr_assert(kv_test_get(m, "b", 1500, "2", 1));
    cr_assert_not(kv_memory_delete(m, "b", 1, 2000)); /* expired first: nothing to delete */
    cr_assert_eq(kv_memory_count(m, 2000), 0);
    kv_memory_free(m);
}

/* ---- bounds -------------------------------------------------------------------------------------- */

Test(kv_memory, full_refuses_new_keys_only)
{
    kv_memory *m = kv_memory_new(3);
    cr_assert_eq(kv_test_put(m, "a", "1", 0, 0), KV_MEMORY_CREATED);
    cr_assert_eq(kv_test_put(m, "b", "1", 0, 0), KV_MEMORY_CREATED);
    cr_assert_eq(kv_test_put(m, "c", "1", 0, 0), KV_MEMORY_CREATED);
    cr_assert_eq(kv_test_put(m, "d", "1", 0, 0), KV_MEMORY_FULL);
    cr_assert_not(kv_test_get(m, "d", 0, NULL, 0), "a refused put stores nothing");
    cr_assert_eq(kv_test_put(m, "a", "2", 0, 0), KV_MEMORY_REPLACED, "replacing needs no room");
    cr_assert(kv_test_get(m, "a", 0, "2", KV_TTL_NONE));
    cr_assert_eq(kv_memory_count(m, 0), 3);
    cr_assert(kv_memory_delete(m, "b", 1, 0));
    cr_assert_eq(kv_test_put(m, "d", "1", 0, 0), KV_MEMORY_CREATED);
    cr_assert_eq(kv_test_put(m, "e", "1", 0, 0), KV_MEMORY_FULL);
    kv_memory_free(m);
}

Test(kv_memory, expired_entries_do_not_count_against_the_limit)
{
    kv_memory *m = kv_memory_new(2);
    cr_assert_eq(kv_test_put(m, "a", "1", 100, 0), KV_MEMORY_CREATED);
    cr_assert_eq(kv_test_put(m, "b", "1", 200, 0), KV_MEMORY_CREATED);
    cr_assert_eq(kv_test_put(m, "c", "1", 0, 99), KV_MEMORY_FULL);
    cr_assert_eq(kv_test_put(m, "c", "1", 0, 100), KV_MEMORY_CREATED, "a expired at 100");
    cr_assert_eq(kv_test_put(m, "d", "1", 0, 150), KV_MEMORY_FULL);
    cr_assert_eq(kv_test_put(m, "d", "1", 0, 200), KV_MEMORY_CREATED, "b expired at 200");
    cr_assert(kv_test_get(m, "c", 1000000, "1", KV_TTL_NONE));
    cr_assert(kv_test_get(m, "d", 1000000, "1", KV_TTL_NONE));
    kv_memory_free(m);
}

/* ---- the expiry heap against a model --------------------------------------------------------------- */

#define KV_MODEL_KEYS 300

/* Random puts (with and without TTLs), replaces, deletes and clock steps on 300 keys; after every step
 * each key's presence and TTL must match a plain array that knows each key's deadline. Exercises
 * heap insertion, removal from the middle (delete, replace) and expiry from the top. */
Test(kv_memory, expiry_matches_a_brute_force_model)
{
    kv_memory *m = kv_memory_new(KV_MODEL_KEYS);
    uint64_t deadline[KV_MODEL_KEYS] = {0}; /* 0: absent; UINT64_MAX: no expiry */
    unsigned seed = 12345;
    uint64_t now = 1000;
    char key[16];
    for (int step = 0; step < 20000; step++) {
        int k = rand_r(&seed) % KV_MODEL_KEYS;
        snprintf(key, sizeof(key), "k%d", k);
        int action = rand_r(&seed) % 10;
        bool present = deadline[k] > now;
        if (action < 5) {
            uint64_t ttl = rand_r(&seed) % 3 == 0 ? 0 : 1 + (uint64_t)(rand_r(&seed) % 5000);
            kv_memory_put_status st = kv_test_put(m, key, key, ttl, now);
            cr_assert_eq(st, present ? KV_MEMORY_REPLACED : KV_MEMORY_CREATED, "step %d", step);
            deadline[k] = ttl ? now + ttl : UINT64_MAX;
        } else if (action < 7) {
            cr_assert_eq(kv_memory_delete(m, key, strlen(key), now), present, "step %d", step);
            deadline[k] = 0;
        } else {
            now += (uint64_t)(rand_r(&seed) % 300);
        }
        if (step % 500 == 0 || step > 19900) {
            size_t live = 0;
            for (int i = 0; i < KV_MODEL_KEYS; i++) {
                snprintf(key, sizeof(key), "k%d", i);
                bool want = deadline[i] > now;
                int64_t want_ttl =
                    deadline[i] == UINT64_MAX ? KV_TTL_NONE : (int64_t)((deadline[i] - now + 500) / 1000);
                cr_assert_eq(kv_test_get(m, key, now, key, want_ttl), want, "step %d key %d", step, i);
                live += want;
            }
            cr_assert_eq(kv_memory_count(m, now), live, "step %d", step);
        }
    }
    kv_memory_free(m);
}

Test(kv_memory, grows_and_keeps_every_entry)
{
    kv_memory *m = kv_memory_new(20000);
    char key[32], value[32];
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        snprintf(value, sizeof(value), "{\"n\":%d}", i);
        cr_assert_eq(kv_test_put(m, key, value, i % 2 ? 60000 : 0, 0), KV_MEMORY_CREATED);
    }
    cr_assert_eq(kv_memory_count(m, 0), 20000);
    cr_assert_eq(kv_test_put(m, "one-more", "1", 0, 0), KV_MEMORY_FULL);
    for (int i = 0; i < 20000; i++) {
        snprintf(key, sizeof(key), "key-%d", i);
        snprintf(value, sizeof(value), "{\"n\":%d}", i);
        cr_assert(kv_test_get(m, key, 0, value, i % 2 ? 60 : KV_TTL_NONE), "%s", key);
    }
    /* Half of them expire together. */
    cr_assert_eq(kv_memory_count(m, 60000), 10000);
    kv_memory_free(m);
}

/* ---- two threads --------------------------------------------------------------------------------- */

#define KV_THREAD_KEYS 64
#define KV_THREAD_OPS 100000
#define KV_THREAD_MAX 32

typedef struct kv_thread_arg {
    kv_memory *m;
    unsigned seed;
    uint64_t *clock; /* shared, advanced atomically so both threads see time move forward */
    unsigned full, created, replaced, bad_values;
} kv_thread_arg;

/* Values are "<key>=<writer>": a reader can tell a torn or misplaced value from a good one. */
static void *kv_thread_main(void *p)
{
    kv_thread_arg *a = p;
    char key[16], value[32];
    for (int i = 0; i < KV_THREAD_OPS; i++) {
        uint64_t now = __atomic_add_fetch(a->clock, 1, __ATOMIC_RELAXED);
        int k = rand_r(&a->seed) % KV_THREAD_KEYS;
        snprintf(key, sizeof(key), "k%d", k);
        switch (rand_r(&a->seed) % 4) {
        case 0:
        case 1: {
            snprintf(value, sizeof(value), "%s=%u", key, a->seed % 2);
            kv_memory_put_status st = kv_test_put(a->m, key, value, rand_r(&a->seed) % 2 ? 50 : 0, now);
            a->full += st == KV_MEMORY_FULL;
            a->created += st == KV_MEMORY_CREATED;
            a->replaced += st == KV_MEMORY_REPLACED;
            break;
        }
        case 2: {
            kv_result res = {0};
            if (kv_memory_get(a->m, key, strlen(key), now, kv_test_alloc, NULL, &res)) {
                size_t kl = strlen(key);
                if (res.value_len != kl + 2 || strncmp(res.value, key, kl) != 0 || res.value[kl] != '=')
                    a->bad_values++;
                free((void *)res.value);
            }
            break;
        }
        default:
            kv_memory_delete(a->m, key, strlen(key), now);
            break;
        }
    }
    return NULL;
}

Test(kv_memory, two_threads_share_the_store)
{
    kv_memory *m = kv_memory_new(KV_THREAD_MAX);
    uint64_t clock = 0;
    kv_thread_arg args[2] = {{.m = m, .seed = 1, .clock = &clock}, {.m = m, .seed = 2, .clock = &clock}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++)
        cr_assert_eq(pthread_create(&threads[i], NULL, kv_thread_main, &args[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    for (int i = 0; i < 2; i++) {
        cr_expect_eq(args[i].bad_values, 0, "thread %d read torn or misplaced values", i);
        cr_expect_gt(args[i].created, 0);
        cr_expect_gt(args[i].replaced, 0);
    }
    /* 64 keys on a limit of 32: both threads must have been refused at times. */
    cr_expect_gt(args[0].full + args[1].full, 0);
    /* The table agrees with itself: the count is what a key-by-key scan finds, and within the bound. */
    uint64_t now = clock + 1;
    size_t found = 0;
    char key[16];
    for (int k = 0; k < KV_THREAD_KEYS; k++) {
        snprintf(key, sizeof(key), "k%d", k);
        found += kv_test_get(m, key, now, NULL, 0);
    }
    cr_expect_eq(kv_memory_count(m, now), found);
    cr_expect_leq(found, KV_THREAD_MAX);
    kv_memory_free(m);
}

Test(kv_memory, bounded_in_bytes_replacements_count_the_difference)
{
    kv_memory *m = kv_memory_new_bounded(100, 20); /* 20 bytes of keys and values */
    cr_assert_eq(kv_memory_put(m, "a", 1, "123456789", 9, 0, 0), KV_MEMORY_CREATED);   /* 10 bytes */
    cr_assert_eq(kv_memory_put(m, "b", 1, "123456789", 9, 0, 0), KV_MEMORY_CREATED);   /* 20 bytes */
    cr_assert_eq(kv_memory_put(m, "c", 1, "1", 1, 0, 0), KV_MEMORY_FULL, "a new key past the byte bound");
    cr_assert_eq(kv_memory_put(m, "a", 1, "12345678", 8, 0, 0), KV_MEMORY_REPLACED, "a smaller value fits");
    cr_assert_eq(kv_memory_put(m, "a", 1, "123456789", 9, 0, 0), KV_MEMORY_REPLACED, "back to 20: fits");
    cr_assert_eq(kv_memory_put(m, "a", 1, "1234567890", 10, 0, 0), KV_MEMORY_FULL, "21 bytes does not");
    cr_assert_eq(kv_memory_delete(m, "b", 1, 0), true);
    cr_assert_eq(kv_memory_put(m, "c", 1, "1", 1, 0, 0), KV_MEMORY_CREATED, "deleting gave the bytes back");
    cr_assert_eq(kv_memory_put(m, "d", 1, "1234567", 7, 1000, 0), KV_MEMORY_CREATED); /* 10 + 2 + 8 = 20 */
    cr_assert_eq(kv_memory_put(m, "e", 1, "1234567", 7, 0, 500), KV_MEMORY_FULL, "d still holds its bytes");
    cr_assert_eq(kv_memory_put(m, "e", 1, "1234567", 7, 0, 2000), KV_MEMORY_CREATED, "d expired: bytes back");
    kv_memory_free(m);
}
