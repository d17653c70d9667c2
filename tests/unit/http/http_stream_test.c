/* Unit tests for the streaming encoders (lib/http/http_stream.c, http_sse.c): chunk-size lines and the
 * Server-Sent Events wire format, on plain buffers. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "stream.h"

static void check_chunk(size_t len, const char *want)
{
    char out[20];
    size_t n = http_chunk_header(out, len);
    out[n] = '\0';
    cr_assert_str_eq(out, want, "chunk header of %zu", len);
}

Test(http_stream, chunk_size_lines_are_lowercase_hex_with_crlf)
{
    check_chunk(1, "1\r\n");
    check_chunk(10, "a\r\n");
    check_chunk(16, "10\r\n");
    check_chunk(65536, "10000\r\n");
    check_chunk(0xdeadbeef, "deadbeef\r\n");
    check_chunk(SIZE_MAX, sizeof(size_t) == 8 ? "ffffffffffffffff\r\n" : "ffffffff\r\n");
}

/* Formats one event and compares the whole text. */
static void check_sse(const char *event, const char *id, const char *data, const char *want)
{
    char *out = NULL;
    size_t len = 0, cap = 0;
    cr_assert(http_sse_format(&out, &len, &cap, event, id, data, data ? strlen(data) : 0));
    cr_assert_eq(len, strlen(want));
    cr_assert_str_eq(out, want);
    free(out);
}

Test(http_stream, sse_event_with_all_fields)
{
    check_sse("tick", "7", "{\"seq\":7}", "event: tick\nid: 7\ndata: {\"seq\":7}\n\n");
}

Test(http_stream, sse_data_only_and_empty_data)
{
    check_sse(NULL, NULL, "hello", "data: hello\n\n");
    check_sse(NULL, NULL, "", "data: \n\n");
    check_sse(NULL, NULL, NULL, "data: \n\n");
}

Test(http_stream, sse_multiline_data_becomes_one_data_line_each)
{
    check_sse(NULL, "1", "a\nb\nc", "id: 1\ndata: a\ndata: b\ndata: c\n\n");
    /* CRLF and lone CR are line breaks too (the client splits on all three) */
    check_sse(NULL, NULL, "a\r\nb\rc", "data: a\ndata: b\ndata: c\n\n");
    /* empty lines inside are kept, and a trailing break ends one more (empty) line, so the client
     * rebuilds exactly "a\n\nb\n" */
    check_sse(NULL, NULL, "a\n\nb\n", "data: a\ndata: \ndata: b\ndata: \n\n");
    check_sse(NULL, NULL, "\n", "data: \ndata: \n\n");
}

Test(http_stream, sse_refuses_line_breaks_in_event_and_id)
{
    char *out = NULL;
    size_t len = 0, cap = 0;
    cr_assert_not(http_sse_format(&out, &len, &cap, "a\nid: 666", NULL, "x", 1));
    cr_assert_not(http_sse_format(&out, &len, &cap, NULL, "1\r", "x", 1));
    cr_assert_eq(len, 0, "nothing is written for a refused event");
    free(out);
}

Test(http_stream, sse_data_with_nul_is_kept_by_length)
{
    char *out = NULL;
    size_t len = 0, cap = 0;
    cr_assert(http_sse_format(&out, &len, &cap, NULL, NULL, "a\0b", 3));
    cr_assert_eq(len, 11);
    cr_assert(memcmp(out, "data: a\0b\n\n", 11) == 0);
    free(out);
}

Test(http_stream, sse_events_append_to_one_buffer)
{
    char *out = NULL;
    size_t len = 0, cap = 0;
    for (int i = 0; i < 1000; i++)
        cr_assert(http_sse_format(&out, &len, &cap, "e", NULL, "0123456789", 10));
    cr_assert_eq(len, 1000 * strlen("event: e\ndata: 0123456789\n\n"));
    cr_assert(cap > len);
    free(out);
}
