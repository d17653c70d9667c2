/* uri: percent-decoding and query-string parsing for request targets (RFC 3986). Pure functions on
 * byte ranges: no I/O, no global state, easy to unit-test. Decoded strings are NUL-terminated and
 * live in the caller's arena. */
#ifndef APIARY_URI_H
#define APIARY_URI_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "arena.h"

/* One decoded name=value pair of a query string. */
typedef struct uri_param {
    const char *name;
    size_t name_len;
    const char *value;
    size_t value_len;
} uri_param;

/* Percent-decodes src[0..len) into dst, which must hold at least len + 1 bytes; with plus_as_space
 * (query strings, application/x-www-form-urlencoded) '+' becomes ' '. Writes a NUL terminator.
 * Returns the decoded length, or -1 if an escape is malformed ("%4", "%zz") or decodes to a NUL byte,
 * which no route or handler should ever see. */
ssize_t uri_decode(char *dst, const char *src, size_t len, bool plus_as_space);

/* Splits a request target "/path?query#frag" into its path and query (fragment dropped; clients must
 * not send one but some do). Either output may be empty; the query excludes the '?'. */
void uri_split(const char *target, size_t len, const char **path, size_t *path_len, const char **query,
               size_t *query_len);

/* Parses "a=1&b=x%20y&flag" into at most max pairs, decoded into the arena ("flag" gets value "").
 * Empty pieces ("a=1&&b=2") are skipped. Returns the number of pairs, or -1 if an escape is malformed
 * or there are more than max pairs. */
int uri_parse_query(const char *query, size_t len, arena *a, uri_param *out, size_t max);

/* True when `s` is a valid Host header value (RFC 9110 7.2): uri-host [":" port], where uri-host is an
 * RFC 3986 reg-name (which covers IPv4 addresses) or "[IPv6]", and the port has at most 5 digits and is
 * at most 65535. The empty value is valid: RFC 9112 3.2 has clients send it when there is no authority. */
bool uri_host_valid(const char *s, size_t len);

/* Looks up the first pair named `name`; returns its value or NULL. */
const char *uri_query_get(const uri_param *params, size_t n, const char *name);

#endif
