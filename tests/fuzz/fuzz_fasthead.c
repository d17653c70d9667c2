/* fuzz_fasthead: libFuzzer target for lib/http/http_fasthead.c, the direct reader of common GET heads.
 * The input is the bytes of a connection at a message's start. Whenever the fast reader takes a head,
 * llhttp (built as the engine builds it) must read the same message the same way: the same length,
 * target and field spans, GET, HTTP/1.1, no framing flags (tests/unit/http/fasthead_check.h). Read
 * twice: with the engine's default limits and with tight ones, so the limits' edges are reached. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "../unit/http/fasthead_check.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const http_fasthead_limits limits[] = {
        {.max_url_bytes = 8192, .max_header_bytes = 16384, .max_headers = 100},
        {.max_url_bytes = 24, .max_header_bytes = 96, .max_headers = 3},
    };
    for (size_t i = 0; i < sizeof(limits) / sizeof(limits[0]); i++) {
        char why[512];
        if (fasthead_check((const char *)data, size, &limits[i], why, sizeof(why)) < 0) {
            fprintf(stderr, "fuzz_fasthead: the fast reader and llhttp differ (limits %zu): %s\n", i, why);
            abort();
        }
    }
    return 0;
}
