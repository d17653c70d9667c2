/* ratelimit: see ratelimit_internal.h. */
#include "ratelimit_internal.h"

#include <math.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "xalloc_internal.h"

#define RATELIMIT_STRIPES 64
#define RATELIMIT_PROBE 8

typedef struct ratelimit_entry {
    uint8_t used;
    uint8_t family;
    uint8_t addr[16];
    double tokens;
    uint64_t last_ms;
} ratelimit_entry;

typedef struct ratelimit_stripe {
    pthread_mutex_t lock;
    ratelimit_entry *slots;
    char pad[64 - sizeof(pthread_mutex_t) % 64 - sizeof(void *)]; /* keep stripes off each other's lines */
} ratelimit_stripe;

struct ratelimit {
    double rate, burst;
    size_t slots_per_stripe; /* power of two */
    ratelimit_stripe stripes[RATELIMIT_STRIPES];
};

ratelimit *ratelimit_new(double rate, double burst, size_t max_clients)
{
    ratelimit *rl = xcalloc(1, sizeof(*rl));
    rl->rate = rate;
    rl->burst = burst;
    size_t per = 16;
    while (per * RATELIMIT_STRIPES < max_clients)
        per *= 2;
    rl->slots_per_stripe = per;
    for (int i = 0; i < RATELIMIT_STRIPES; i++) {
        pthread_mutex_init(&rl->stripes[i].lock, NULL);
        rl->stripes[i].slots = xcalloc(per, sizeof(ratelimit_entry));
    }
    return rl;
}

void ratelimit_free(ratelimit *rl)
{
    if (!rl)
        return;
    for (int i = 0; i < RATELIMIT_STRIPES; i++) {
        pthread_mutex_destroy(&rl->stripes[i].lock);
        free(rl->stripes[i].slots);
    }
    free(rl);
}

/* FNV-1a over family and address: cheap, and spreads neighbouring addresses across stripes. */
static uint64_t ratelimit_hash(uint8_t family, const uint8_t addr[16])
{
    uint64_t h = 1469598103934665603ull ^ family;
    for (int i = 0; i < 16; i++) {
        h ^= addr[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* The client's slot, or a free one, or the stalest of the probed ones (then reset to a full bucket). */
static ratelimit_entry *ratelimit_find(ratelimit *rl, ratelimit_entry *slots, uint64_t h, uint8_t family,
                                       const uint8_t addr[16], uint64_t now_ms)
{
    size_t mask = rl->slots_per_stripe - 1;
    ratelimit_entry *victim = NULL;
    for (size_t i = 0; i < RATELIMIT_PROBE; i++) {
        ratelimit_entry *e = &slots[(h + i) & mask];
        if (e->used && e->family == family && memcmp(e->addr, addr, 16) == 0)
            return e;
        if (!e->used) {
            if (!victim || victim->used)
                victim = e; /* the first free slot beats any eviction */
        } else if (!victim || (victim->used && e->last_ms < victim->last_ms)) {
            victim = e;
        }
    }
    victim->used = 1;
    victim->family = family;
    memcpy(victim->addr, addr, 16);
    victim->tokens = rl->burst;
    victim->last_ms = now_ms;
    return victim;
}

/* The bucket's key for a client address (see ratelimit_internal.h): the /64 of IPv6, IPv4 for mapped addresses. */
static void ratelimit_key(uint8_t *family, const uint8_t in[16], uint8_t out[16])
{
    static const uint8_t v4_mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    memset(out, 0, 16);
    if (*family == AF_INET6 && memcmp(in, v4_mapped, 12) == 0) {
        *family = AF_INET;
        memcpy(out, in + 12, 4);
    } else if (*family == AF_INET6) {
        memcpy(out, in, 8);
    } else if (*family == AF_INET) {
        memcpy(out, in, 4);
    }
}

unsigned ratelimit_take(ratelimit *rl, uint8_t family, const uint8_t client[16], uint64_t now_ms)
{
    uint8_t addr[16];
    ratelimit_key(&family, client, addr);
    uint64_t h = ratelimit_hash(family, addr);
    ratelimit_stripe *stripe = &rl->stripes[h % RATELIMIT_STRIPES];
    pthread_mutex_lock(&stripe->lock);
    ratelimit_entry *e = ratelimit_find(rl, stripe->slots, h / RATELIMIT_STRIPES, family, addr, now_ms);
    if (now_ms > e->last_ms) {
        e->tokens = fmin(rl->burst, e->tokens + (double)(now_ms - e->last_ms) * rl->rate / 1000.0);
        e->last_ms = now_ms;
    }
    unsigned wait = 0;
    if (e->tokens >= 1.0)
        e->tokens -= 1.0;
    else
        wait = (unsigned)ceil((1.0 - e->tokens) / rl->rate);
    pthread_mutex_unlock(&stripe->lock);
    return wait;
}
