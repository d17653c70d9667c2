/* Unit tests for lib/http/http_response.c: status lines, header layout, Date format, problem bodies. */
#include <criterion/criterion.h>
#include <string.h>

#include "http_response_internal.h"

static buf_cache cache;

static void setup(void) { buf_cache_init(&cache, 4); }
static void teardown(void) { buf_cache_free(&cache); }

TestSuite(http_response, .init = setup, .fini = teardown);

static char *head_string(buf *b)
{
    char *s = malloc(b->len + 1);
    memcpy(s, b->data, b->len);
    s[b->len] = '\0';
    return s;
}

Test(http_response, writes_status_line_and_headers_in_order)
{
    buf out = {0};
    http_response_head h = {.status = 200, .content_type = "application/json", .content_length = 27,
                            .date = "Mon, 23 Nov 2026 17:24:19 GMT"};
    http_response_write_head(&out, &cache, &h);
    char *s = head_string(&out);
    cr_assert_str_eq(s, "HTTP/1.1 200 OK\r\nServer: apiary\r\nDate: Mon, 23 Nov 2026 17:24:19 GMT\r\n"
                        "Content-Type: application/json\r\nContent-Length: 27\r\n\r\n");
    free(s);
    buf_release(&out, &cache);
}

Test(http_response, connection_header_and_extra_headers)
{
    buf out = {0};
    http_response_head h = {.status = 405, .content_type = "application/problem+json", .content_length = 0,
                            .connection = HTTP_CONN_HEADER_CLOSE, .date = "Mon, 23 Nov 2026 17:24:19 GMT",
                            .extra_headers = "Allow: GET, HEAD\r\n", .extra_headers_len = 18};
    http_response_write_head(&out, &cache, &h);
    char *s = head_string(&out);
    cr_assert(strstr(s, "HTTP/1.1 405 Method Not Allowed\r\n") == s);
    cr_assert(strstr(s, "Content-Length: 0\r\nConnection: close\r\nAllow: GET, HEAD\r\n\r\n"));
    free(s);
    out.len = 0;
    h.connection = HTTP_CONN_HEADER_KEEP_ALIVE;
    h.extra_headers_len = 0;
    http_response_write_head(&out, &cache, &h);
    s = head_string(&out);
    cr_assert(strstr(s, "Connection: keep-alive\r\n\r\n"));
    free(s);
    buf_release(&out, &cache);
}

Test(http_response, no_content_length_for_1xx_and_204)
{
    buf out = {0};
    http_response_head h = {.status = 204, .date = "Mon, 23 Nov 2026 17:24:19 GMT"};
    http_response_write_head(&out, &cache, &h);
    char *s = head_string(&out);
    cr_assert_null(strstr(s, "Content-Length"));
    cr_assert_null(strstr(s, "Content-Type"));
    free(s);
    buf_release(&out, &cache);
}

Test(http_response, large_content_length_digits)
{
    buf out = {0};
    http_response_head h = {.status = 200, .content_type = "text/plain", .content_length = 1073741824,
                            .date = "Mon, 23 Nov 2026 17:24:19 GMT"};
    http_response_write_head(&out, &cache, &h);
    char *s = head_string(&out);
    cr_assert(strstr(s, "Content-Length: 1073741824\r\n"));
    free(s);
    buf_release(&out, &cache);
}

Test(http_response, reason_phrases)
{
    cr_assert_str_eq(http_status_reason(404), "Not Found");
    cr_assert_str_eq(http_status_reason(413), "Content Too Large");
    cr_assert_str_eq(http_status_reason(431), "Request Header Fields Too Large");
    /* ws_upgrade's answer to a plain GET (the arena's echo-ws check printed "426 Unknown") */
    cr_assert_str_eq(http_status_reason(426), "Upgrade Required");
    cr_assert_str_eq(http_status_reason(799), "Unknown");
}

Test(http_response, imf_fixdate)
{
    char d[HTTP_DATE_LEN + 1];
    http_date_format(784111777, d); /* RFC 9110's own example */
    cr_assert_str_eq(d, "Sun, 06 Nov 1994 08:49:37 GMT");
    http_date_format(0, d);
    cr_assert_str_eq(d, "Thu, 01 Jan 1970 00:00:00 GMT");
    cr_assert_eq(strlen(d), HTTP_DATE_LEN);
}

Test(http_response, problem_has_rfc9457_members_and_extensions)
{
    json_t *p = http_problem_new(422, "sources[2].delay_ms must be >= 0", json_pack("{s:s}", "field", "x"));
    cr_assert_str_eq(json_string_value(json_object_get(p, "type")), "about:blank");
    cr_assert_str_eq(json_string_value(json_object_get(p, "title")), "Unprocessable Content");
    cr_assert_eq(json_integer_value(json_object_get(p, "status")), 422);
    cr_assert_str_eq(json_string_value(json_object_get(p, "detail")), "sources[2].delay_ms must be >= 0");
    cr_assert_str_eq(json_string_value(json_object_get(p, "field")), "x");
    json_decref(p);
}

Test(http_response, problem_survives_invalid_utf8_detail)
{
    json_t *p = http_problem_new(400, "bad \xff byte", NULL);
    cr_assert_not_null(json_string_value(json_object_get(p, "detail")));
    json_decref(p);
}


Test(http_response, streamed_heads_carry_no_content_length)
{
    buf out = {0};
    http_response_head h = {.status = 200, .content_type = "text/event-stream", .streamed = true, .chunked = true,
                            .date = "Mon, 23 Nov 2026 17:24:19 GMT"};
    http_response_write_head(&out, &cache, &h);
    char *s = head_string(&out);
    cr_assert_str_eq(s, "HTTP/1.1 200 OK\r\nServer: apiary\r\nDate: Mon, 23 Nov 2026 17:24:19 GMT\r\n"
                        "Content-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n");
    free(s);
    out.len = 0;
    h.chunked = false; /* HTTP/1.0: close-delimited */
    h.connection = HTTP_CONN_HEADER_CLOSE;
    http_response_write_head(&out, &cache, &h);
    s = head_string(&out);
    cr_assert_str_eq(s, "HTTP/1.1 200 OK\r\nServer: apiary\r\nDate: Mon, 23 Nov 2026 17:24:19 GMT\r\n"
                        "Content-Type: text/event-stream\r\nConnection: close\r\n\r\n");
    free(s);
    buf_release(&out, &cache);
}
