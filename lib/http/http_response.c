/* http_response: see http_response_internal.h. */
#include "http_response_internal.h"

#include <string.h>

#define HTTP_SERVER_HEADER "Server: apiary\r\n"

const char *http_status_reason(int status)
{
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 426: return "Upgrade Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return "Unknown";
    }
}

/* Writes the decimal digits of v at p, returns the end; 20 bytes suffice for any size_t. */
static char *http_response_put_uint(char *p, size_t v)
{
    char tmp[20];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

static char *http_response_put(char *p, const char *s, size_t len)
{
    memcpy(p, s, len);
    return p + len;
}

#define PUT_LIT(p, lit) http_response_put((p), (lit), sizeof(lit) - 1)

static size_t http_response_head_max_of(const http_response_head *h, size_t reason_len, size_t ctype_len,
                                        size_t rid_len)
{
    /* 64 + 80 covers the fixed text: status line, header names, CRLFs, a 20-digit Content-Length. */
    return 64 + reason_len + sizeof(HTTP_SERVER_HEADER) + HTTP_DATE_LEN + ctype_len + h->extra_headers_len + rid_len
           + 80 + (h->content_encoding ? 20 + strlen(h->content_encoding) : 0)
           + 25; /* Vary: counted always, so a gap sized before the coding is decided holds it */
}

size_t http_response_head_max(const http_response_head *h)
{
    return http_response_head_max_of(h, strlen(http_status_reason(h->status)),
                                     h->content_type ? strlen(h->content_type) : 0,
                                     h->request_id ? strlen(h->request_id) : 0);
}

void http_response_write_head(buf *out, buf_cache *cache, const http_response_head *h)
{
    const char *reason = http_status_reason(h->status);
    size_t reason_len = strlen(reason);
    size_t ctype_len = h->content_type ? strlen(h->content_type) : 0;
    size_t rid_len = h->request_id ? strlen(h->request_id) : 0;
    /* One reserve covers the whole head (the lengths just measured, not measured again). */
    buf_reserve(out, cache, http_response_head_max_of(h, reason_len, ctype_len, rid_len));
    char *p = out->data + out->len;

    p = PUT_LIT(p, "HTTP/1.1 ");
    int s = h->status < 100 || h->status > 999 ? 500 : h->status;
    *p++ = (char)('0' + s / 100);
    *p++ = (char)('0' + s / 10 % 10);
    *p++ = (char)('0' + s % 10);
    *p++ = ' ';
    p = http_response_put(p, reason, reason_len);
    p = PUT_LIT(p, "\r\n" HTTP_SERVER_HEADER "Date: ");
    p = http_response_put(p, h->date, HTTP_DATE_LEN);
    p = PUT_LIT(p, "\r\n");
    if (h->content_type) {
        p = PUT_LIT(p, "Content-Type: ");
        p = http_response_put(p, h->content_type, ctype_len);
        p = PUT_LIT(p, "\r\n");
    }
    /* 1xx and 204 must not carry Content-Length (RFC 9110 8.6); a 304 has no body, and its length
     * would have to be the 200's, so it says none. */
    if (s >= 200 && s != 204 && s != 304 && h->chunked) {
        p = PUT_LIT(p, "Transfer-Encoding: chunked\r\n");
    } else if (s >= 200 && s != 204 && s != 304 && !h->streamed) {
        p = PUT_LIT(p, "Content-Length: ");
        p = http_response_put_uint(p, h->content_length);
        p = PUT_LIT(p, "\r\n");
    }
    if (h->content_encoding) {
        p = PUT_LIT(p, "Content-Encoding: ");
        p = http_response_put(p, h->content_encoding, strlen(h->content_encoding));
        p = PUT_LIT(p, "\r\n");
    }
    if (h->vary_accept_encoding)
        p = PUT_LIT(p, "Vary: Accept-Encoding\r\n");
    if (h->connection == HTTP_CONN_HEADER_CLOSE)
        p = PUT_LIT(p, "Connection: close\r\n");
    else if (h->connection == HTTP_CONN_HEADER_KEEP_ALIVE)
        p = PUT_LIT(p, "Connection: keep-alive\r\n");
    if (rid_len) {
        p = PUT_LIT(p, "X-Request-Id: ");
        p = http_response_put(p, h->request_id, rid_len);
        p = PUT_LIT(p, "\r\n");
    }
    if (h->extra_headers_len)
        p = http_response_put(p, h->extra_headers, h->extra_headers_len);
    p = PUT_LIT(p, "\r\n");
    out->len = (size_t)(p - out->data);
}

void http_date_format(time_t t, char *out)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    struct tm tm;
    gmtime_r(&t, &tm);
    /* strftime's %a/%b follow the locale; the protocol wants English names whatever the locale. */
    char *p = out;
    p = http_response_put(p, days[tm.tm_wday], 3);
    p = PUT_LIT(p, ", ");
    *p++ = (char)('0' + tm.tm_mday / 10);
    *p++ = (char)('0' + tm.tm_mday % 10);
    *p++ = ' ';
    p = http_response_put(p, months[tm.tm_mon], 3);
    *p++ = ' ';
    int year = tm.tm_year + 1900;
    *p++ = (char)('0' + year / 1000 % 10);
    *p++ = (char)('0' + year / 100 % 10);
    *p++ = (char)('0' + year / 10 % 10);
    *p++ = (char)('0' + year % 10);
    *p++ = ' ';
    int fields[3] = {tm.tm_hour, tm.tm_min, tm.tm_sec};
    for (int i = 0; i < 3; i++) {
        *p++ = (char)('0' + fields[i] / 10);
        *p++ = (char)('0' + fields[i] % 10);
        *p++ = i < 2 ? ':' : ' ';
    }
    p = PUT_LIT(p, "GMT");
    *p = '\0';
}

json_t *http_problem_new(int status, const char *detail, json_t *extra)
{
    json_t *problem = json_object();
    json_object_set_new(problem, "type", json_string("about:blank"));
    json_object_set_new(problem, "title", json_string(http_status_reason(status)));
    json_object_set_new(problem, "status", json_integer(status));
    /* json_string rejects invalid UTF-8; a detail may quote client bytes, so fall back safely. */
    json_t *d = json_string(detail ? detail : "");
    json_object_set_new(problem, "detail", d ? d : json_string("(detail not valid UTF-8)"));
    if (extra) {
        json_object_update_missing(problem, extra);
        json_decref(extra);
    }
    return problem;
}
