/* http_trust: which peers may tell us who the client is. Behind a reverse proxy every connection comes
 * from the proxy; only when the peer is in trusted_proxies (or is on the Unix socket and "unix" is
 * listed) does apiary read the forwarding header the proxy sets (X-Forwarded-For or Forwarded, as
 * configured), and even then it takes the rightmost address that is not itself a trusted proxy, because
 * everything left of that was written by the client and can say anything. */
#ifndef APIARY_HTTP_TRUST_H
#define APIARY_HTTP_TRUST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct http_cidr {
    uint8_t family; /* AF_INET or AF_INET6 */
    uint8_t prefix; /* bits that must match */
    uint8_t addr[16];
} http_cidr;

/* Parses "10.0.0.0/8", "192.0.2.7" (a host), "::1/128", "2001:db8::/32". Returns 0 or -1. */
int http_cidr_parse(const char *text, http_cidr *out);
bool http_cidr_contains(const http_cidr *list, size_t n, uint8_t family, const uint8_t *addr);

/* Parses one address as found in X-Forwarded-For / Forwarded: "192.0.2.7", "2001:db8::1",
 * "[2001:db8::1]:4711", "192.0.2.7:80", optionally quoted. Returns 0 or -1 (e.g. "unknown", junk). */
int http_trust_parse_hop(const char *s, size_t len, uint8_t *family, uint8_t addr[16]);

/* The client address behind a trusted peer: the rightmost hop of `list` that is not itself trusted (the
 * leftmost if all are), stopping at the last address it could vouch for when a hop cannot be parsed.
 * `list` is an X-Forwarded-For value (all occurrences joined with ','), or with `forwarded` a
 * Forwarded value (only for= counts); NULL leaves the address alone. The caller decides whether the
 * peer is trusted at all. Writes the result over (family, addr). */
void http_trust_resolve(const http_cidr *trusted, size_t n, const char *list, bool forwarded, uint8_t *family,
                        uint8_t addr[16]);

#endif
