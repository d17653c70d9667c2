/* Unit tests for lib/http/ratelimit.c: the token bucket's burst, refill and Retry-After arithmetic, clients
 * kept apart, the bounded table forgetting the stalest client, and use from two threads. */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <pthread.h>
#include <string.h>
#include <sys/socket.h>

#include "ratelimit_internal.h"

static void addr_of(uint32_t n, uint8_t out[16])
{
    memset(out, 0, 16);
    memcpy(out, &n, sizeof(n));
}

Test(ratelimit, burst_then_refill_at_the_rate)
{
    ratelimit *rl = ratelimit_new(2.0, 5.0, 64);
    uint8_t a[16];
    addr_of(1, a);
    for (int i = 0; i < 5; i++)
        cr_assert_eq(ratelimit_take(rl, AF_INET, a, 1000), 0, "request %d is within the burst", i);
    cr_assert_eq(ratelimit_take(rl, AF_INET, a, 1000), 1, "empty bucket: one token is 0.5 s away");
    cr_assert_eq(ratelimit_take(rl, AF_INET, a, 1499), 1);
    cr_assert_eq(ratelimit_take(rl, AF_INET, a, 1500), 0, "500 ms at 2/s refilled one token");
    cr_assert_eq(ratelimit_take(rl, AF_INET, a, 100000), 0);
    for (int i = 0; i < 4; i++)
        cr_assert_eq(ratelimit_take(rl, AF_INET, a, 100000), 0, "refill stops at the burst");
    cr_assert_neq(ratelimit_take(rl, AF_INET, a, 100000), 0);
    ratelimit_free(rl);
}

Test(ratelimit, retry_after_rounds_up_to_whole_seconds)
{
    ratelimit *rl = ratelimit_new(0.1, 1.0, 64); /* one request per 10 s */
    uint8_t a[16];
    addr_of(7, a);
    cr_assert_eq(ratelimit_take(rl, AF_INET6, a, 0), 0);
    cr_assert_eq(ratelimit_take(rl, AF_INET6, a, 0), 10);
    cr_assert_eq(ratelimit_take(rl, AF_INET6, a, 5000), 5);
    ratelimit_free(rl);
}

Test(ratelimit, clients_and_families_are_separate)
{
    ratelimit *rl = ratelimit_new(1.0, 1.0, 64);
    uint8_t a[16], b[16];
    addr_of(1, a);
    addr_of(2, b);
    cr_assert_eq(ratelimit_take(rl, AF_INET, a, 0), 0);
    cr_assert_neq(ratelimit_take(rl, AF_INET, a, 0), 0);
    cr_assert_eq(ratelimit_take(rl, AF_INET, b, 0), 0, "another client has its own bucket");
    cr_assert_eq(ratelimit_take(rl, AF_INET6, a, 0), 0, "same bytes, other family: another client");
    ratelimit_free(rl);
}

Test(ratelimit, a_full_table_forgets_the_stalest_client)
{
    ratelimit *rl = ratelimit_new(1.0, 1.0, 64); /* 64 stripes x 16 slots */
    uint8_t a[16];
    addr_of(0, a);
    cr_assert_eq(ratelimit_take(rl, AF_INET, a, 0), 0);
    cr_assert_neq(ratelimit_take(rl, AF_INET, a, 0), 0);
    for (uint32_t i = 1; i <= 20000; i++) { /* far more clients than slots, all seen later */
        uint8_t b[16];
        addr_of(i, b);
        ratelimit_take(rl, AF_INET, b, 1 + i / 1000);
    }
    /* Bounded memory means client 0 was forgotten: it starts again with a full bucket. */
    cr_assert_eq(ratelimit_take(rl, AF_INET, a, 30), 0);
    ratelimit_free(rl);
}

static ratelimit *shared;
static unsigned allowed[2];

static void *hammer(void *arg)
{
    int id = (int)(intptr_t)arg;
    uint8_t a[16];
    addr_of(42, a);
    for (int i = 0; i < 100000; i++)
        if (ratelimit_take(shared, AF_INET, a, 1000) == 0)
            allowed[id]++;
    return NULL;
}

Test(ratelimit, two_threads_share_one_bucket_exactly)
{
    shared = ratelimit_new(1.0, 1000.0, 64);
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&t[i], NULL, hammer, (void *)(intptr_t)i);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    cr_assert_eq(allowed[0] + allowed[1], 1000, "exactly the burst, however the threads interleave");
    ratelimit_free(shared);
}

Test(ratelimit, ipv6_clients_are_keyed_by_their_64)
{
    ratelimit *rl = ratelimit_new(0.001, 2.0, 64);
    uint8_t a[16], b[16], other[16];
    inet_pton(AF_INET6, "2001:db8:1:2::1", a);
    inet_pton(AF_INET6, "2001:db8:1:2:ffff:1234:5678:9abc", b);
    inet_pton(AF_INET6, "2001:db8:1:3::1", other);
    cr_assert_eq(ratelimit_take(rl, AF_INET6, a, 0), 0);
    cr_assert_eq(ratelimit_take(rl, AF_INET6, b, 0), 0, "another address of the same /64 shares the bucket");
    cr_assert_neq(ratelimit_take(rl, AF_INET6, a, 0), 0, "the /64's bucket is empty");
    cr_assert_eq(ratelimit_take(rl, AF_INET6, other, 0), 0, "the next /64 is another client");
    ratelimit_free(rl);
}

Test(ratelimit, ipv4_mapped_is_ipv4_and_only_four_bytes_count)
{
    ratelimit *rl = ratelimit_new(0.001, 2.0, 64);
    uint8_t v4[16], mapped[16], stale[16];
    memset(v4, 0, 16);
    inet_pton(AF_INET, "192.0.2.7", v4);
    inet_pton(AF_INET6, "::ffff:192.0.2.7", mapped);
    memset(stale, 0xAA, 16);
    memcpy(stale, v4, 4);
    cr_assert_eq(ratelimit_take(rl, AF_INET, v4, 0), 0);
    cr_assert_eq(ratelimit_take(rl, AF_INET6, mapped, 0), 0, "the mapped form is the same client");
    cr_assert_neq(ratelimit_take(rl, AF_INET, stale, 0), 0, "bytes past the fourth are not part of the key");
    ratelimit_free(rl);
}
