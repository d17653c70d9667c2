/* Unit tests for lib/http/http_trust.c: CIDR parsing and matching, forwarding-header hops, and the
 * rightmost-untrusted-hop rule that decides the client address behind proxies. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <string.h>
#include <sys/socket.h>

#include "http_trust_internal.h"

static http_cidr trusted[3];

static void setup(void)
{
    cr_assert_eq(http_cidr_parse("127.0.0.1", &trusted[0]), 0);
    cr_assert_eq(http_cidr_parse("10.0.0.0/8", &trusted[1]), 0);
    cr_assert_eq(http_cidr_parse("fd00::/8", &trusted[2]), 0);
}

TestSuite(http_trust, .init = setup);

static void v4(const char *text, uint8_t *family, uint8_t addr[16])
{
    memset(addr, 0, 16);
    cr_assert_eq(inet_pton(AF_INET, text, addr), 1);
    *family = AF_INET;
}

static const char *text_of(uint8_t family, const uint8_t *addr)
{
    static char buf[64];
    inet_ntop(family, addr, buf, sizeof(buf));
    return buf;
}

static const char *resolve(const char *peer, const char *xff, const char *forwarded)
{
    uint8_t family, addr[16];
    if (strchr(peer, ':')) {
        memset(addr, 0, 16);
        inet_pton(AF_INET6, peer, addr);
        family = AF_INET6;
    } else {
        v4(peer, &family, addr);
    }
    /* The caller's part: only a trusted peer's header is read, and only the configured one. */
    if (http_cidr_contains(trusted, 3, family, addr))
        http_trust_resolve(trusted, 3, forwarded ? forwarded : xff, forwarded != NULL, &family, addr);
    return text_of(family, addr);
}

Test(http_trust, cidr_parse_and_match)
{
    http_cidr c;
    uint8_t f, a[16];
    cr_assert_eq(http_cidr_parse("192.168.0.0/16", &c), 0);
    v4("192.168.44.1", &f, a);
    cr_assert(http_cidr_contains(&c, 1, f, a));
    v4("192.169.0.1", &f, a);
    cr_assert_not(http_cidr_contains(&c, 1, f, a));
    cr_assert_eq(http_cidr_parse("10.1.2.3/31", &c), 0);
    v4("10.1.2.2", &f, a);
    cr_assert(http_cidr_contains(&c, 1, f, a), "a prefix that is not a whole byte");
    v4("10.1.2.4", &f, a);
    cr_assert_not(http_cidr_contains(&c, 1, f, a));
    cr_assert_eq(http_cidr_parse("0.0.0.0/0", &c), 0);
    cr_assert(http_cidr_contains(&c, 1, f, a));
    for (const char *bad = "x"; bad; bad = NULL) {
        cr_assert_eq(http_cidr_parse(bad, &c), -1);
    }
    cr_assert_eq(http_cidr_parse("10.0.0.0/33", &c), -1);
    cr_assert_eq(http_cidr_parse("10.0.0.0/", &c), -1);
    cr_assert_eq(http_cidr_parse("::1/129", &c), -1);
    cr_assert_eq(http_cidr_parse("", &c), -1);
}

Test(http_trust, hop_forms)
{
    uint8_t f, a[16];
    cr_assert_eq(http_trust_parse_hop(" 192.0.2.7 ", 11, &f, a), 0);
    cr_assert_str_eq(text_of(f, a), "192.0.2.7");
    cr_assert_eq(http_trust_parse_hop("192.0.2.7:8080", 14, &f, a), 0);
    cr_assert_str_eq(text_of(f, a), "192.0.2.7");
    cr_assert_eq(http_trust_parse_hop("\"[2001:db8::1]:4711\"", 20, &f, a), 0);
    cr_assert_str_eq(text_of(f, a), "2001:db8::1");
    cr_assert_eq(http_trust_parse_hop("::ffff:1.2.3.4", 14, &f, a), 0);
    cr_assert_eq(f, AF_INET6);
    cr_assert_eq(http_trust_parse_hop("unknown", 7, &f, a), -1);
    cr_assert_eq(http_trust_parse_hop("_hidden", 7, &f, a), -1);
    cr_assert_eq(http_trust_parse_hop("", 0, &f, a), -1);
}

Test(http_trust, untrusted_peer_is_the_client_whatever_it_claims)
{
    cr_assert_str_eq(resolve("203.0.113.9", "1.2.3.4", NULL), "203.0.113.9");
}

Test(http_trust, rightmost_untrusted_hop_wins)
{
    /* client says it is 6.6.6.6; the real client 198.51.100.1 reached our proxy 10.0.0.2, which
     * appended it; that proxy is our peer. */
    cr_assert_str_eq(resolve("10.0.0.2", "6.6.6.6, 198.51.100.1", NULL), "198.51.100.1");
    /* two of our proxies in a row */
    cr_assert_str_eq(resolve("127.0.0.1", "6.6.6.6, 198.51.100.1, 10.0.0.2", NULL), "198.51.100.1");
    /* all hops trusted: the leftmost */
    cr_assert_str_eq(resolve("127.0.0.1", "10.0.0.5, 10.0.0.2", NULL), "10.0.0.5");
    /* junk to the left of a trusted hop: keep what we can vouch for */
    cr_assert_str_eq(resolve("127.0.0.1", "junk, 10.0.0.2", NULL), "10.0.0.2");
    /* no header: the peer */
    cr_assert_str_eq(resolve("127.0.0.1", NULL, NULL), "127.0.0.1");
}

Test(http_trust, forwarded_header)
{
    cr_assert_str_eq(resolve("127.0.0.1", NULL, "for=6.6.6.6, for=\"[2001:db8::7]:443\";proto=https"),
                     "2001:db8::7");
    cr_assert_str_eq(resolve("127.0.0.1", NULL, "for=198.51.100.3;by=10.0.0.1"), "198.51.100.3");
    cr_assert_str_eq(resolve("127.0.0.1", NULL, "proto=http"), "127.0.0.1");
}

Test(http_trust, ipv4_hop_leaves_no_stale_bytes)
{
    /* An IPv4 hop after an IPv6 one (or over uninitialised stack) must not keep the old bytes: the rate
     * limiter compares all 16, so stale ones would give one client many buckets. */
    uint8_t f, a[16];
    memset(a, 0xAA, sizeof(a));
    cr_assert_eq(http_trust_parse_hop("2001:db8::1", 11, &f, a), 0);
    cr_assert_eq(http_trust_parse_hop("192.0.2.7", 9, &f, a), 0);
    cr_assert_eq(f, AF_INET);
    for (int i = 4; i < 16; i++)
        cr_assert_eq(a[i], 0, "byte %d of an IPv4 address is %#x, not 0", i, a[i]);
    uint8_t family = AF_INET, addr[16];
    v4("127.0.0.1", &family, addr);
    http_trust_resolve(trusted, 3, "2001:db8::9, 198.51.100.7", false, &family, addr);
    cr_assert_str_eq(text_of(family, addr), "198.51.100.7");
    for (int i = 4; i < 16; i++)
        cr_assert_eq(addr[i], 0);
}
