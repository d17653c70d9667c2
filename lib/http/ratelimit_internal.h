/* ratelimit: per-client token buckets (rate r per second, burst b), shared by every loop. The table
 * is split into 64 stripes, each with its own small lock and open-addressed slots, so two loops rarely
 * meet on one lock and a request costs one uncontended lock and a few compares. Memory is bounded:
 * when a stripe is full, the least recently seen of the probed clients is forgotten (it then starts with
 * a full bucket, the generous side of the error). */
#ifndef APIARY_RATELIMIT_H
#define APIARY_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ratelimit ratelimit;

/* rate > 0 tokens per second, burst >= 1, max_clients >= 64 remembered at once. */
ratelimit *ratelimit_new(double rate, double burst, size_t max_clients);
void ratelimit_free(ratelimit *rl);

/* Takes one token for the client (family AF_INET/AF_INET6 or 0, 16 address bytes). An IPv6 client is
 * keyed by its /64, the smallest block a site is given (a host picks any address in it at will), and an
 * IPv4-mapped IPv6 address (::ffff:a.b.c.d, a dual-stack listener) counts as that IPv4 address.
 * Family 0 (a Unix-socket peer without a trusted proxy in front) is one client. Returns 0 when
 * allowed, else the whole seconds (>= 1) until a token is available, for Retry-After. Thread-safe. */
unsigned ratelimit_take(ratelimit *rl, uint8_t family, const uint8_t addr[16], uint64_t now_ms);

#endif
