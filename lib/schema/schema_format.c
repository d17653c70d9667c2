/* schema_format: the string checks of schema.c that are not regular expressions: UTF-8 (for text that
 * did not come through the JSON parser, which checks it itself), character counts, and the formats
 * uri, email, date-time and uuid. Each is a small hand-written scanner: no allocation, no regex. */
#include "schema_internal.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

size_t schema_utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

bool schema_utf8_valid(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s, *end = p + len;
    while (p < end) {
        if (end - p >= 8) {
            /* Eight ASCII bytes at a time: most text is ASCII (a WebSocket text message is checked
             * whole for every message, 8 instructions a byte one at a time). */
            uint64_t w;
            memcpy(&w, p, 8);
            if (!(w & 0x8080808080808080ull)) {
                p += 8;
                continue;
            }
        }
        unsigned c = *p;
        size_t n;
        unsigned cp;
        if (c < 0x80) {
            p++;
            continue;
        } else if (c >= 0xC2 && c <= 0xDF) {
            n = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            n = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            n = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if ((size_t)(end - p) <= n)
            return false;
        for (size_t i = 1; i <= n; i++) {
            if ((p[i] & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (p[i] & 0x3F);
        }
        /* overlong forms, surrogates and code points past U+10FFFF */
        if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        p += n + 1;
    }
    return true;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool is_hex(char c) { return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }

/* n digits at s, as a number. */
static int digits(const char *s, size_t n)
{
    int v = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(s[i]))
            return -1;
        v = v * 10 + (s[i] - '0');
    }
    return v;
}

/* RFC 3339 date-time: full-date "T" full-time, time-offset "Z" or +hh:mm; "t"/"z" accepted as the RFC
 * allows. Days are checked against the month (and leap years); a leap second (:60) is accepted. */
static bool date_time_valid(const char *s, size_t len)
{
    if (len < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't') || s[13] != ':' || s[16] != ':')
        return false;
    int year = digits(s, 4), month = digits(s + 5, 2), day = digits(s + 8, 2);
    int hour = digits(s + 11, 2), minute = digits(s + 14, 2), second = digits(s + 17, 2);
    if (year < 0 || month < 1 || month > 12 || day < 1 || hour < 0 || hour > 23 || minute < 0 || minute > 59 ||
        second < 0 || second > 60)
        return false;
    static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (day > days[month - 1] + (month == 2 && leap))
        return false;
    size_t i = 19;
    if (i < len && s[i] == '.') {
        size_t start = ++i;
        while (i < len && is_digit(s[i]))
            i++;
        if (i == start)
            return false;
    }
    if (i < len && (s[i] == 'Z' || s[i] == 'z'))
        return i + 1 == len;
    if (i + 6 != len || (s[i] != '+' && s[i] != '-') || s[i + 3] != ':')
        return false;
    int oh = digits(s + i + 1, 2), om = digits(s + i + 4, 2);
    return oh >= 0 && oh <= 23 && om >= 0 && om <= 59;
}

static bool uuid_valid(const char *s, size_t len)
{
    if (len != 36)
        return false;
    for (size_t i = 0; i < len; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;
        if (dash ? s[i] != '-' : !is_hex(s[i]))
            return false;
    }
    return true;
}

/* A DNS name of letters, digits and hyphens in dot-separated labels of 1..63 (no leading or trailing
 * hyphen), at most 253 characters. */
static bool hostname_valid(const char *s, size_t len)
{
    if (len == 0 || len > 253)
        return false;
    size_t label = 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0 || s[i - 1] == '-')
                return false;
            label = 0;
        } else if (is_alpha(c) || is_digit(c) || (c == '-' && label > 0)) {
            if (++label > 63)
                return false;
        } else {
            return false;
        }
    }
    return label > 0 && s[len - 1] != '-';
}

/* local@domain: the local part of RFC 5322 atext characters and single dots, the domain a DNS name
 * with at least one dot. Quoted local parts and address literals are refused: few forms take them. */
static bool email_valid(const char *s, size_t len)
{
    const char *at = memchr(s, '@', len);
    if (!at || at == s || at - s > 64)
        return false;
    size_t local = (size_t)(at - s);
    for (size_t i = 0; i < local; i++) {
        char c = s[i];
        if (c == '.') {
            if (i == 0 || i + 1 == local || s[i + 1] == '.')
                return false;
        } else if (!is_alpha(c) && !is_digit(c) && !strchr("!#$%&'*+/=?^_`{|}~-", c)) {
            return false;
        }
    }
    const char *domain = at + 1;
    size_t dlen = len - local - 1;
    return memchr(domain, '.', dlen) && hostname_valid(domain, dlen);
}

/* An absolute http or https URI with a host: scheme "://" host [":" port] [path-abempty] ["?" query]
 * ["#" fragment], every character printable ASCII outside spaces and the few RFC 3986 never allows
 * ('<', '>', '"', '{', '}', '|', '\\', '^', '`'), percent escapes well-formed. IPv6 literals in
 * brackets are accepted. */
static bool uri_valid(const char *s, size_t len)
{
    size_t i;
    if (len > 7 && strncasecmp(s, "http://", 7) == 0)
        i = 7;
    else if (len > 8 && strncasecmp(s, "https://", 8) == 0)
        i = 8;
    else
        return false;
    size_t host = i;
    if (i < len && s[i] == '[') {
        while (i < len && s[i] != ']') {
            if (!is_hex(s[i]) && s[i] != ':' && s[i] != '.' && s[i] != '[')
                return false;
            i++;
        }
        if (i == len)
            return false;
        i++;
    } else {
        while (i < len && s[i] != ':' && s[i] != '/' && s[i] != '?' && s[i] != '#')
            i++;
        if (!hostname_valid(s + host, i - host))
            return false;
    }
    if (i < len && s[i] == ':') {
        size_t port = ++i;
        while (i < len && is_digit(s[i]))
            i++;
        if (i == port || i - port > 5 || digits(s + port, i - port) > 65535)
            return false;
    }
    if (i < len && s[i] != '/' && s[i] != '?' && s[i] != '#')
        return false;
    for (; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7F || strchr("<>\"{}|\\^`", c))
            return false;
        if (c == '%' && (i + 2 >= len || !is_hex(s[i + 1]) || !is_hex(s[i + 2])))
            return false;
    }
    return true;
}

bool schema_format_valid(schema_format f, const char *s, size_t len)
{
    switch (f) {
    case SCHEMA_FORMAT_URI: return uri_valid(s, len);
    case SCHEMA_FORMAT_EMAIL: return email_valid(s, len);
    case SCHEMA_FORMAT_DATE_TIME: return date_time_valid(s, len);
    case SCHEMA_FORMAT_UUID: return uuid_valid(s, len);
    case SCHEMA_FORMAT_NONE: break;
    }
    return true;
}

const char *schema_format_name(schema_format f)
{
    switch (f) {
    case SCHEMA_FORMAT_URI: return "uri";
    case SCHEMA_FORMAT_EMAIL: return "email";
    case SCHEMA_FORMAT_DATE_TIME: return "date-time";
    case SCHEMA_FORMAT_UUID: return "uuid";
    case SCHEMA_FORMAT_NONE: break;
    }
    return NULL;
}

const char *schema_format_words(schema_format f)
{
    switch (f) {
    case SCHEMA_FORMAT_URI: return "an http or https URI";
    case SCHEMA_FORMAT_EMAIL: return "an email address";
    case SCHEMA_FORMAT_DATE_TIME: return "an RFC 3339 date-time (2026-12-07T00:20:00Z)";
    case SCHEMA_FORMAT_UUID: return "a UUID";
    case SCHEMA_FORMAT_NONE: break;
    }
    return "a string";
}
