/* fasthead_test: unit tests for lib/http/http_fasthead.c, the direct reader of common GET heads. Every
 * head it takes must be read by llhttp exactly the same way (fasthead_check.h); the heads it must leave
 * to llhttp are declined; and every one-byte change of a set of real heads (each byte replaced by each
 * of the 256 values, deleted, or a byte inserted) is either declined or read as llhttp reads it. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "http/fasthead_check.h"

static const http_fasthead_limits limits = {.max_url_bytes = 64, .max_header_bytes = 256, .max_headers = 8};

/* The arena's and wrk's requests, a browser-like one, and the awkward but valid forms the reader takes:
 * empty values, whitespace around values, every token and target byte it allows. */
static const char *const heads[] = {
    "GET /pipeline HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n",
    "GET /baseline11?a=13&b=42 HTTP/1.1\r\nHost: localhost\r\n\r\n",
    "GET /json/25?m=4 HTTP/1.1\r\nHost: h\r\nAccept-Encoding: gzip, br\r\n\r\n",
    "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: x/1 (y; z)\r\nAccept: */*\r\nX-Empty:\r\nX-Pad: \t v \t\r\n\r\n",
    "GET /a-._~!$&'()*+,;=:@/?%41 HTTP/1.1\r\n!#$%&'*+-.^_`|~09aZ: \"q\" [x] {y} <z> \\ \r\nHost:h\r\n\r\n",
};

static int check(const char *p, size_t n)
{
    char why[256];
    int r = fasthead_check(p, n, &limits, why, sizeof(why));
    cr_assert(r >= 0, "the fast reader and llhttp differ on \"%.*s\": %s", (int)n, p, why);
    return r;
}

Test(fasthead, takes_common_heads_as_llhttp_reads_them)
{
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++)
        cr_assert_eq(check(heads[i], strlen(heads[i])), 1, "declined: %s", heads[i]);
    /* What follows the head (a pipelined request) is not part of it. */
    const char two[] = "GET /pipeline HTTP/1.1\r\nHost: h\r\n\r\nGET /pipeline HTTP/1.1\r\nHost: h\r\n\r\n";
    http_fasthead head;
    cr_assert_eq(http_fasthead_read(two, sizeof(two) - 1, &limits, &head), (sizeof(two) - 1) / 2);
    cr_assert_eq(check(two, sizeof(two) - 1), 1);
}

Test(fasthead, declines_what_llhttp_must_read)
{
    static const char *const declined[] = {
        "GET /pipeline HTTP/1.0\r\nHost: h\r\n\r\n",          /* HTTP/1.0: keep-alive differs */
        "POST /pipeline HTTP/1.1\r\nHost: h\r\n\r\n",         /* another method */
        "HEAD / HTTP/1.1\r\nHost: h\r\n\r\n",
        "get / HTTP/1.1\r\nHost: h\r\n\r\n",
        "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",               /* blank line first */
        "GET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n",           /* absolute-form */
        "GET /a#frag HTTP/1.1\r\nHost: h\r\n\r\n",             /* fragment */
        "GET /a b HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET /  HTTP/1.1\r\nHost: h\r\n\r\n",
        "GET / HTTP/1.1\nHost: h\r\n\r\n",                     /* bare LF */
        "GET / HTTP/1.1\r\nHost: h\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n\n",
        "GET / HTTP/1.1\r\nConnection: keep-alive\r\n\r\n",  /* fields llhttp acts on */
        "GET / HTTP/1.1\r\nconnection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
        "GET / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nUpgrade: websocket\r\n\r\n",
        "GET / HTTP/1.1\r\nProxy-Connection: close\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n x\r\n\r\n",            /* obs-fold */
        "GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        "GET / HTTP/1.1\r\nHost : h\r\n\r\n",
        "GET / HTTP/1.1\r\nX: caf\xc3\xa9\r\n\r\n",             /* obs-text */
        "GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\rb\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\n",                       /* not whole yet */
        "GET / HTTP/1.1\r\nHost: h\r\n\r",
    };
    for (size_t i = 0; i < sizeof(declined) / sizeof(declined[0]); i++)
        cr_assert_eq(check(declined[i], strlen(declined[i])), 0, "taken: %s", declined[i]);
}

Test(fasthead, declines_every_unfinished_head)
{
    for (size_t i = 0; i < sizeof(heads) / sizeof(heads[0]); i++)
        for (size_t n = 0; n < strlen(heads[i]); n++)
            cr_assert_eq(check(heads[i], n), 0, "took %zu bytes of %s", n, heads[i]);
}

Test(fasthead, limits_at_their_edges)
{
    char buf[1024];
    /* A target of exactly max_url_bytes is taken, one byte more is llhttp's (its 414). */
    int n = snprintf(buf, sizeof(buf), "GET /%0*d HTTP/1.1\r\nHost: h\r\n\r\n", (int)limits.max_url_bytes - 1, 0);
    cr_assert_eq(check(buf, (size_t)n), 1);
    n = snprintf(buf, sizeof(buf), "GET /%0*d HTTP/1.1\r\nHost: h\r\n\r\n", (int)limits.max_url_bytes, 0);
    cr_assert_eq(check(buf, (size_t)n), 0);
    /* max_headers fields are taken, one more is llhttp's (its 431). */
    n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\n");
    for (size_t i = 0; i < limits.max_headers; i++)
        n += snprintf(buf + n, sizeof(buf) - (size_t)n, "X%zu: v\r\n", i);
    cr_assert_eq(check(buf, (size_t)n + (size_t)snprintf(buf + n, sizeof(buf) - (size_t)n, "\r\n")), 1);
    n += snprintf(buf + n, sizeof(buf) - (size_t)n, "Y: v\r\n\r\n");
    cr_assert_eq(check(buf, (size_t)n), 0);
    /* A head of exactly max_header_bytes is taken, one byte more is llhttp's. */
    n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: ");
    int pad = (int)limits.max_header_bytes - n - 4;
    n += snprintf(buf + n, sizeof(buf) - (size_t)n, "%0*d\r\n\r\n", pad, 0);
    cr_assert_eq((size_t)n, limits.max_header_bytes);
    cr_assert_eq(check(buf, (size_t)n), 1);
    n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: %0*d\r\n\r\n", pad + 1, 0);
    cr_assert_eq(check(buf, (size_t)n), 0);
}

/* Each base head with one byte replaced (by every value), deleted, or inserted (every value): each
 * result is declined or read exactly as llhttp reads it. Some must be taken, or the test tests nothing. */
Test(fasthead, every_one_byte_change_is_declined_or_read_as_llhttp_reads_it)
{
    char buf[512];
    size_t taken = 0, tried = 0;
    for (size_t h = 0; h < sizeof(heads) / sizeof(heads[0]); h++) {
        const char *base = heads[h];
        size_t len = strlen(base);
        for (size_t pos = 0; pos <= len; pos++) {
            for (int b = 0; b < 256; b++) {
                if (pos < len) {
                    memcpy(buf, base, len);
                    buf[pos] = (char)b;
                    taken += (size_t)check(buf, len);
                    tried++;
                }
                memcpy(buf, base, pos);
                buf[pos] = (char)b;
                memcpy(buf + pos + 1, base + pos, len - pos);
                taken += (size_t)check(buf, len + 1);
                tried++;
            }
            if (pos < len) {
                memcpy(buf, base, pos);
                memcpy(buf + pos, base + pos + 1, len - pos - 1);
                taken += (size_t)check(buf, len - 1);
                tried++;
            }
        }
    }
    cr_assert_gt(taken, tried / 10, "only %zu of %zu changed heads taken", taken, tried);
}
