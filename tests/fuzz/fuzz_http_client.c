/* fuzz_http_client: libFuzzer target for the HTTP client's response parser (lib/clients/http_client_parse.c),
 * which reads what an upstream sends back — an upstream may be broken or hostile. The first byte picks
 * the read size, the second whether the request was HEAD and the body bound; the rest is the stream,
 * ended by EOF. Invariants beyond the sanitizers: a finished response never has a body over its bound,
 * the bytes said to belong to it are never more than were fed, and its header fields lie inside the
 * stored head (every name and value NUL-terminated there). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_client_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    size_t piece = 1 + data[0] % 128;
    bool head_only = data[1] & 1;
    size_t max_body = (data[1] & 2) ? 64 : 65536;
    data += 2;
    size -= 2;
    http_client_reader r;
    memset(&r, 0, sizeof(r));
    http_client_reader_start(&r, max_body, head_only);
    http_client_read_status st = HTTP_CLIENT_READ_MORE;
    size_t fed = 0;
    while (fed < size && st == HTTP_CLIENT_READ_MORE) {
        size_t n = size - fed < piece ? size - fed : piece, used = 0;
        st = http_client_reader_feed(&r, (const char *)data + fed, n, &used);
        if (st == HTTP_CLIENT_READ_DONE && used > n) {
            fprintf(stderr, "fuzz_http_client: used %zu of %zu bytes\n", used, n);
            abort();
        }
        fed += n;
    }
    if (st == HTTP_CLIENT_READ_MORE)
        st = http_client_reader_eof(&r);
    if (st == HTTP_CLIENT_READ_DONE) {
        if (r.body_len > max_body) {
            fprintf(stderr, "fuzz_http_client: body of %zu bytes over its bound %zu\n", r.body_len, max_body);
            abort();
        }
        (void)http_client_reader_keep_alive(&r);
        for (size_t i = 0; i < r.field_count; i++) {
            size_t name = r.fields[2 * i], value = r.fields[2 * i + 1];
            if (name >= r.head_len || value >= r.head_len || strnlen(r.head + value, r.head_len - value) ==
                                                                 r.head_len - value) {
                fprintf(stderr, "fuzz_http_client: field %zu outside the head\n", i);
                abort();
            }
        }
        (void)http_client_reader_header(&r, "content-type");
    }
    http_client_reader_release(&r);
    return 0;
}
