/* compress_test: unit tests for lib/http/http_compress.c: the Accept-Encoding q-values and choice (with
 * the default order on equal q, gzip first, and compression.prefer's other one), the table of
 * compressible media types, the decision for one answer, and that both coders round-trip. */
#include <brotli/decode.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>
#include <zlib.h>

#include "http_compress_internal.h"

#define ALL HTTP_CODINGS_ALL
#define ID_GZIP (HTTP_CODING_BIT(HTTP_CODING_IDENTITY) | HTTP_CODING_BIT(HTTP_CODING_GZIP))

static const unsigned char BR_FIRST[HTTP_SETTINGS_CODINGS] = {HTTP_CODING_BR, HTTP_CODING_GZIP};

/* The choice in the default order (gzip, then br, on equal q). */
static http_coding choose(const char *ae, unsigned offered)
{
    return http_accept_encoding_choose(ae, strlen(ae), offered, NULL);
}

static http_coding choose_br_first(const char *ae, unsigned offered)
{
    return http_accept_encoding_choose(ae, strlen(ae), offered, BR_FIRST);
}

static void q_of(const char *ae, unsigned q[3]) { http_accept_encoding_q(ae, strlen(ae), q); }

Test(accept_encoding, q_values_decide)
{
    cr_assert_eq(choose("br;q=1, gzip;q=0.8", ALL), HTTP_CODING_BR);
    cr_assert_eq(choose("br;q=0.5, gzip;q=0.8", ALL), HTTP_CODING_GZIP);
    cr_assert_eq(choose("gzip;q=0.001", ALL), HTTP_CODING_GZIP, "any named coding beats identity not named");
    cr_assert_eq(choose("gzip, deflate, br", ALL), HTTP_CODING_GZIP, "a tie goes to gzip by default");
    cr_assert_eq(choose("gzip, deflate, br", ID_GZIP), HTTP_CODING_GZIP, "br not offered");
    cr_assert_eq(choose("deflate", ALL), HTTP_CODING_IDENTITY, "nothing we have: identity");
    cr_assert_eq(choose("gzip;q=0", ALL), HTTP_CODING_IDENTITY, "q=0 is never");
    cr_assert_eq(choose("gzip;q=0, br;q=0", ALL), HTTP_CODING_IDENTITY);
    cr_assert_eq(choose("x-gzip", ALL), HTTP_CODING_GZIP);
    cr_assert_eq(choose("GZIP;Q=0.5", ALL), HTTP_CODING_GZIP, "case-insensitive");
    cr_assert_eq(choose("identity;q=0.9, gzip;q=0.1", ALL), HTTP_CODING_IDENTITY);
    cr_assert_eq(choose("gzip ; q=0.7 , identity;q=0.5", ALL), HTTP_CODING_GZIP, "OWS around ';'");
}

Test(accept_encoding, identity_and_star)
{
    cr_assert_eq(choose("identity;q=0", ALL), HTTP_CODING_NONE, "nothing acceptable: 406");
    cr_assert_eq(choose("identity;q=0, gzip", ALL), HTTP_CODING_GZIP);
    cr_assert_eq(choose("*;q=0", ALL), HTTP_CODING_NONE, "* excludes identity when it is not named");
    cr_assert_eq(choose("*;q=0, identity", ALL), HTTP_CODING_IDENTITY);
    cr_assert_eq(choose("*", ALL), HTTP_CODING_GZIP, "* is any coding: a tie, gzip first");
    cr_assert_eq(choose("*", HTTP_CODING_BIT(HTTP_CODING_IDENTITY)), HTTP_CODING_IDENTITY);
    cr_assert_eq(choose("gzip;q=0, *", ALL), HTTP_CODING_BR, "named gzip;q=0 beats *");
    cr_assert_eq(choose_br_first("br;q=0, *", ALL), HTTP_CODING_GZIP, "named br;q=0 beats *, whatever the order");
    cr_assert_eq(choose("", ALL), HTTP_CODING_IDENTITY, "an empty value: identity only");
    cr_assert_eq(choose("br;q=0, gzip;q=0, identity;q=0", ALL), HTTP_CODING_NONE);
}

Test(accept_encoding, equal_q_follows_the_preference_order)
{
    /* What browsers send: every coding at q=1. */
    const char *browsers[] = {"gzip, deflate, br", "gzip, deflate, br, zstd", "br, gzip", "*",
                              "gzip;q=0.8, br;q=0.8", "br;q=0.5, gzip;q=0.5, identity;q=0.5"};
    for (size_t i = 0; i < sizeof(browsers) / sizeof(browsers[0]); i++) {
        cr_assert_eq(choose(browsers[i], ALL), HTTP_CODING_GZIP, "default order, %s", browsers[i]);
        cr_assert_eq(choose_br_first(browsers[i], ALL), HTTP_CODING_BR, "br first, %s", browsers[i]);
    }
    /* q-values decide before the order does. */
    cr_assert_eq(choose("br;q=1, gzip;q=0.8", ALL), HTTP_CODING_BR);
    cr_assert_eq(choose_br_first("gzip;q=1, br;q=0.8", ALL), HTTP_CODING_GZIP);
    cr_assert_eq(choose("gzip;q=0, br", ALL), HTTP_CODING_BR, "gzip;q=0 is never gzip");
    cr_assert_eq(choose("gzip;q=0", ALL), HTTP_CODING_IDENTITY);
    cr_assert_eq(choose_br_first("br;q=0", ALL), HTTP_CODING_IDENTITY);
    cr_assert_eq(choose("identity;q=0", ALL), HTTP_CODING_NONE, "nothing acceptable: 406, in either order");
    cr_assert_eq(choose_br_first("identity;q=0", ALL), HTTP_CODING_NONE);
    /* A coding not offered is skipped, and identity stays last on a tie. */
    cr_assert_eq(choose_br_first("gzip, br", ID_GZIP), HTTP_CODING_GZIP, "br off");
    cr_assert_eq(choose("identity, gzip", ALL), HTTP_CODING_GZIP, "identity named at the same q comes last");
    cr_assert_eq(choose("identity, gzip;q=0.5", ALL), HTTP_CODING_IDENTITY, "a higher q for identity wins");
    /* The same on parsed q-values. */
    unsigned q[3] = {[HTTP_CODING_IDENTITY] = 1, [HTTP_CODING_GZIP] = 1000, [HTTP_CODING_BR] = 1000};
    cr_assert_eq(http_coding_pick(q, ALL, NULL), HTTP_CODING_GZIP);
    cr_assert_eq(http_coding_pick(q, ALL, BR_FIRST), HTTP_CODING_BR);
    cr_assert_eq(http_coding_pick(q, ALL, http_coding_prefer_default), HTTP_CODING_GZIP);
    static const unsigned char junk[HTTP_SETTINGS_CODINGS] = {7, 200};
    cr_assert_eq(http_coding_pick(q, ALL, junk), HTTP_CODING_IDENTITY, "values that are no coding are skipped");
}

Test(accept_encoding, coding_names)
{
    cr_assert_eq(http_coding_from_name("gzip"), HTTP_CODING_GZIP);
    cr_assert_eq(http_coding_from_name("br"), HTTP_CODING_BR);
    cr_assert_eq(http_coding_from_name("GZIP"), HTTP_CODING_NONE, "the config's names are exact");
    cr_assert_eq(http_coding_from_name("x-gzip"), HTTP_CODING_NONE);
    cr_assert_eq(http_coding_from_name("identity"), HTTP_CODING_NONE);
    cr_assert_eq(http_coding_from_name("zstd"), HTTP_CODING_NONE);
    cr_assert_eq(http_coding_from_name(""), HTTP_CODING_NONE);
}

Test(accept_encoding, malformed_members_are_ignored)
{
    unsigned q[3];
    q_of("gzip;q=2, br;q=0.1234, identity;q=abc", q);
    cr_assert_eq(q[HTTP_CODING_GZIP], 0);
    cr_assert_eq(q[HTTP_CODING_BR], 0);
    cr_assert_eq(q[HTTP_CODING_IDENTITY], 1, "a broken identity member leaves the default: lowest, acceptable");
    q_of("gzip;q=0.5;level=3, br;q", q);
    cr_assert_eq(q[HTTP_CODING_GZIP], 500, "unknown parameters are ignored");
    cr_assert_eq(q[HTTP_CODING_BR], 0, "a parameter without value drops the member");
    q_of("gzip;q=1.000, br;q=1.001, ,,", q);
    cr_assert_eq(q[HTTP_CODING_GZIP], 1000);
    cr_assert_eq(q[HTTP_CODING_BR], 0);
    q_of("gzip;q=0., br;q=0.05", q);
    cr_assert_eq(q[HTTP_CODING_GZIP], 0);
    cr_assert_eq(q[HTTP_CODING_BR], 50);
    q_of("gzip br", q);
    cr_assert_eq(q[HTTP_CODING_GZIP], 0, "two tokens without a comma are no member");
    q_of("gzip;q=0.3, gzip;q=0.9", q);
    cr_assert_eq(q[HTTP_CODING_GZIP], 300, "the first mention counts");
}

Test(media_types, compressible_table)
{
    const char *yes[] = {"application/json", "application/problem+json", "text/html; charset=utf-8",
                         "text/css", "text/javascript", "application/javascript", "image/svg+xml",
                         "application/xml", "application/wasm", "APPLICATION/JSON", "text/plain;charset=utf-8",
                         "application/ld+json", "application/atom+xml"};
    const char *no[] = {"image/png", "image/jpeg", "image/webp", "video/mp4", "application/zip",
                        "application/gzip", "font/woff2", "application/octet-stream", "text/event-stream",
                        "text/event-stream; charset=utf-8", "", "text/", "audio/mpeg", "application/pdf"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        cr_assert(http_media_type_compressible(yes[i]), "%s", yes[i]);
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        cr_assert_not(http_media_type_compressible(no[i]), "%s", no[i]);
    cr_assert_not(http_media_type_compressible(NULL));
}

static http_settings settings(void)
{
    http_settings s;
    http_settings_defaults(&s);
    return s;
}

static http_compress_plan plan(const http_settings *s, const char *ae, bool route_off, bool streaming, int status,
                               const char *type, size_t len)
{
    http_compress_plan p;
    http_compress_plan_for(s, ae, ae ? strlen(ae) : 0, route_off, streaming, status, type, len, &p);
    return p;
}

Test(plan, decides_coding_vary_and_406)
{
    http_settings s = settings();
    http_compress_plan p = plan(&s, "gzip", false, false, 200, "application/json", 5000);
    cr_assert_eq(p.coding, HTTP_CODING_GZIP);
    cr_assert(p.vary);
    p = plan(&s, NULL, false, false, 200, "application/json", 5000);
    cr_assert_eq(p.coding, HTTP_CODING_IDENTITY, "no Accept-Encoding: identity");
    cr_assert(p.vary, "it could have been coded");
    p = plan(&s, "gzip", false, false, 200, "application/json", 100);
    cr_assert_eq(p.coding, HTTP_CODING_IDENTITY, "under min_bytes");
    cr_assert(p.vary);
    p = plan(&s, "gzip, identity;q=0", false, false, 200, "application/json", 100);
    cr_assert_eq(p.coding, HTTP_CODING_GZIP, "under min_bytes, but identity refused");
    p = plan(&s, "gzip", false, false, 200, "image/png", 5000);
    cr_assert_eq(p.coding, HTTP_CODING_IDENTITY);
    cr_assert_not(p.vary, "never coded: no Vary");
    p = plan(&s, "gzip", true, false, 200, "application/json", 5000);
    cr_assert_eq(p.coding, HTTP_CODING_IDENTITY, "route opted out");
    cr_assert_not(p.vary);
    p = plan(&s, "gzip", false, true, 200, "application/json", 5000);
    cr_assert_eq(p.coding, HTTP_CODING_IDENTITY, "streamed");
    p = plan(&s, "gzip", false, false, 200, "text/event-stream", 5000);
    cr_assert_eq(p.coding, HTTP_CODING_IDENTITY, "SSE");
    p = plan(&s, "identity;q=0", false, false, 200, "application/json", 5000);
    cr_assert(p.not_acceptable);
    p = plan(&s, "identity;q=0", false, false, 500, "application/problem+json", 5000);
    cr_assert_not(p.not_acceptable, "an error is sent as it is");
    p = plan(&s, "gzip", false, false, 304, "application/json", 5000);
    cr_assert_eq(p.coding, HTTP_CODING_IDENTITY);
    p = plan(&s, "gzip, deflate, br", false, false, 200, "application/json", 5000);
    cr_assert_eq(p.coding, HTTP_CODING_GZIP, "a tie: the default order, gzip first");
    s.compress_prefer[0] = HTTP_CODING_BR;
    s.compress_prefer[1] = HTTP_CODING_GZIP;
    p = plan(&s, "gzip, deflate, br", false, false, 200, "application/json", 5000);
    cr_assert_eq(p.coding, HTTP_CODING_BR, "a tie: compression.prefer [\"br\", \"gzip\"]");
    cr_assert(p.vary);
    p = plan(&s, "gzip;q=1, br;q=0.8", false, false, 200, "application/json", 5000);
    cr_assert_eq(p.coding, HTTP_CODING_GZIP, "q decides first");
    s.compress_brotli = false;
    p = plan(&s, "gzip, br", false, false, 200, "application/json", 5000);
    cr_assert_eq(p.coding, HTTP_CODING_GZIP, "br preferred but off");
    p = plan(&s, "br;q=1, gzip;q=0.8", false, false, 200, "application/json", 5000);
    cr_assert_eq(p.coding, HTTP_CODING_GZIP, "brotli off");
    s.compress_enabled = false;
    p = plan(&s, "gzip", false, false, 200, "application/json", 5000);
    cr_assert_eq(p.coding, HTTP_CODING_IDENTITY);
    cr_assert_not(p.vary);
}

static char *sample(size_t *len)
{
    static char buf[20000];
    size_t n = 0;
    for (int i = 0; n + 64 < sizeof(buf); i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "{\"id\":%d,\"name\":\"item %d\"},", i, i % 7);
    *len = n;
    return buf;
}

Test(coders, gzip_round_trips)
{
    size_t len;
    char *in = sample(&len);
    for (int level = 1; level <= 9; level++) {
        const void *out;
        size_t n = http_compress(HTTP_CODING_GZIP, level, in, len, &out);
        cr_assert(n > 0 && n < len);
        char back[20000];
        z_stream z = {0};
        cr_assert_eq(inflateInit2(&z, 15 + 16), Z_OK);
        z.next_in = (Bytef *)out;
        z.avail_in = (uInt)n;
        z.next_out = (Bytef *)back;
        z.avail_out = sizeof(back);
        cr_assert_eq(inflate(&z, Z_FINISH), Z_STREAM_END, "level %d", level);
        cr_assert_eq(z.total_out, len);
        cr_assert_eq(memcmp(back, in, len), 0);
        inflateEnd(&z);
    }
}

Test(coders, brotli_round_trips_and_incompressible_is_refused)
{
    size_t len;
    char *in = sample(&len);
    for (int level = 0; level <= 11; level += 3) {
        const void *out;
        size_t n = http_compress(HTTP_CODING_BR, level, in, len, &out);
        cr_assert(n > 0 && n < len);
        char back[20000];
        size_t back_len = sizeof(back);
        cr_assert_eq(BrotliDecoderDecompress(n, out, &back_len, (uint8_t *)back), BROTLI_DECODER_RESULT_SUCCESS);
        cr_assert_eq(back_len, len);
        cr_assert_eq(memcmp(back, in, len), 0);
    }
    unsigned char noise[4096];
    unsigned x = 12345;
    for (size_t i = 0; i < sizeof(noise); i++)
        noise[i] = (unsigned char)((x = x * 1103515245u + 12345u) >> 16);
    const void *out;
    cr_assert_eq(http_compress(HTTP_CODING_GZIP, 1, noise, sizeof(noise), &out), 0, "would not shrink");
    cr_assert_eq(http_compress(HTTP_CODING_BR, 1, noise, sizeof(noise), &out), 0);
}
