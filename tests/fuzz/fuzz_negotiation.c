/* fuzz_negotiation: libFuzzer target for the parsers of content negotiation and file answers: the
 * Accept-Encoding q-values and choice in both preference orders of compression.prefer
 * (lib/http/http_compress.c), Range, If-None-Match and HTTP dates (lib/http/http_static.c). The first byte picks the file size the Range is read against (0, 1, a
 * small one, a large one, or one near 2^64); the rest is the header value, given to every parser. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_compress_internal.h"
#include "http_static_internal.h"

/* Where c stands in the order of a tie: prefer's codings, then identity. */
static int rank(const unsigned char *prefer, int c)
{
    for (int i = 0; i < HTTP_SETTINGS_CODINGS; i++)
        if (prefer[i] == c)
            return i;
    return HTTP_SETTINGS_CODINGS;
}

/* The choice among `offered` is acceptable, offered, of the highest q, and first in `prefer` among
 * those of that q; NONE only when nothing offered is acceptable. */
static void check_choice(const char *v, size_t len, const unsigned q[3], unsigned offered,
                         const unsigned char *prefer)
{
    http_coding c = http_accept_encoding_choose(v, len, offered, prefer);
    for (int k = 0; k < 3; k++) {
        if (!(offered & HTTP_CODING_BIT(k)) || q[k] == 0)
            continue;
        if (c == HTTP_CODING_NONE || q[k] > q[c] || (q[k] == q[c] && rank(prefer, k) < rank(prefer, c)))
            abort();
    }
    if (c != HTTP_CODING_NONE && (!(offered & HTTP_CODING_BIT(c)) || q[c] == 0))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    static const uint64_t sizes[] = {0, 1, 100, 1u << 20, UINT64_MAX - 1};
    uint64_t file_size = sizes[data[0] % 5];
    /* A heap copy of exactly the value: ASan sees any read past its end. */
    size_t len = size - 1;
    char *v = malloc(len ? len : 1);
    memcpy(v, data + 1, len);

    unsigned q[3];
    http_accept_encoding_q(v, len, q);
    for (int c = 0; c < 3; c++)
        if (q[c] > 1000)
            abort(); /* a qvalue is 0..1000 */
    static const unsigned char orders[2][HTTP_SETTINGS_CODINGS] = {{HTTP_CODING_GZIP, HTTP_CODING_BR},
                                                                   {HTTP_CODING_BR, HTTP_CODING_GZIP}};
    for (int o = 0; o < 2; o++)
        for (unsigned offered = 1; offered <= HTTP_CODINGS_ALL; offered++)
            check_choice(v, len, q, offered, orders[o]);

    uint64_t first = 0, last = 0;
    http_range_result r = http_range_parse(v, len, file_size, &first, &last);
    if (r == HTTP_RANGE_PART && (first > last || last >= file_size))
        abort(); /* a part lies inside the file */

    time_t t;
    (void)http_date_parse(v, len, &t);
    (void)http_etag_list_matches(v, len, "\"6b161ec6-8dc8fe0-10\"");
    free(v);
    return 0;
}
