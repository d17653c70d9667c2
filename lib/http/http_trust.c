/* http_trust: see http_trust_internal.h. */
#include "http_trust_internal.h"

#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

int http_cidr_parse(const char *text, http_cidr *out)
{
    char buf[64];
    size_t len = strlen(text);
    if (len == 0 || len >= sizeof(buf))
        return -1;
    memcpy(buf, text, len + 1);
    char *slash = strchr(buf, '/');
    if (slash)
        *slash = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1) {
        out->family = AF_INET;
        out->prefix = 32;
    } else if (inet_pton(AF_INET6, buf, out->addr) == 1) {
        out->family = AF_INET6;
        out->prefix = 128;
    } else {
        return -1;
    }
    if (slash) {
        char *end;
        long bits = strtol(slash + 1, &end, 10);
        if (slash[1] == '\0' || *end != '\0' || bits < 0 || bits > out->prefix)
            return -1;
        out->prefix = (uint8_t)bits;
    }
    return 0;
}

static bool http_cidr_match(const http_cidr *c, uint8_t family, const uint8_t *addr)
{
    if (c->family != family)
        return false;
    unsigned full = c->prefix / 8, rest = c->prefix % 8;
    if (memcmp(c->addr, addr, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (c->addr[full] & mask) == (addr[full] & mask);
}

bool http_cidr_contains(const http_cidr *list, size_t n, uint8_t family, const uint8_t *addr)
{
    for (size_t i = 0; i < n; i++)
        if (http_cidr_match(&list[i], family, addr))
            return true;
    return false;
}

int http_trust_parse_hop(const char *s, size_t len, uint8_t *family, uint8_t addr[16])
{
    while (len && (*s == ' ' || *s == '\t' || *s == '"')) {
        s++;
        len--;
    }
    while (len && (s[len - 1] == ' ' || s[len - 1] == '\t' || s[len - 1] == '"'))
        len--;
    char buf[64];
    if (len == 0 || len >= sizeof(buf))
        return -1;
    if (s[0] == '[') { /* [v6] or [v6]:port */
        const char *close = memchr(s, ']', len);
        if (!close)
            return -1;
        len = (size_t)(close - s - 1);
        s++;
    } else if (memchr(s, '.', len)) { /* v4:port has exactly one ':' (::ffff:1.2.3.4 has more) */
        const char *colon = memchr(s, ':', len);
        if (colon && !memchr(colon + 1, ':', len - (size_t)(colon + 1 - s)))
            len = (size_t)(colon - s);
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    /* An IPv4 address fills 4 of the 16 bytes; the rest must be zero, not whatever was there before,
     * because the rate limiter hashes and compares all 16 (one client, one bucket). */
    memset(addr, 0, 16);
    if (inet_pton(AF_INET, buf, addr) == 1) {
        *family = AF_INET;
        return 0;
    }
    if (inet_pton(AF_INET6, buf, addr) == 1) {
        *family = AF_INET6;
        return 0;
    }
    return -1;
}

/* Walks the comma-separated hops right to left; for Forwarded, only each element's for= counts. */
void http_trust_resolve(const http_cidr *trusted, size_t n, const char *list, bool forwarded, uint8_t *family,
                        uint8_t addr[16])
{
    if (!list)
        return;
    const char *end = list + strlen(list);
    while (end > list) {
        const char *start = end;
        while (start > list && start[-1] != ',')
            start--;
        const char *hop = start;
        size_t hop_len = (size_t)(end - start);
        if (forwarded) { /* "for=192.0.2.60;proto=http;by=..." */
            const char *p = hop, *stop = hop + hop_len, *value = NULL;
            while (p < stop) {
                while (p < stop && (*p == ' ' || *p == ';'))
                    p++;
                if ((size_t)(stop - p) > 4 && strncasecmp(p, "for=", 4) == 0) {
                    value = p + 4;
                    break;
                }
                while (p < stop && *p != ';')
                    p++;
            }
            if (!value)
                return; /* an element without for=: nothing more to learn */
            const char *vend = value;
            while (vend < stop && *vend != ';')
                vend++;
            hop = value;
            hop_len = (size_t)(vend - value);
        }
        uint8_t f, a[16];
        if (http_trust_parse_hop(hop, hop_len, &f, a) != 0)
            return; /* junk or "unknown": keep the last address we could vouch for */
        *family = f;
        memcpy(addr, a, 16);
        if (!http_cidr_contains(trusted, n, f, a))
            return; /* the rightmost untrusted hop: the client as far as anyone we trust knows */
        end = start > list ? start - 1 : list;
    }
}
