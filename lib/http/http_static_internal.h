/* http_static: the parts of file answers (static.h) that read client text, apart so they are unit-tested
 * and fuzzed on plain strings: the Range parser, the HTTP-date parser, entity-tag matching, and the
 * confined open beneath a root directory. */
#ifndef APIARY_HTTP_STATIC_H
#define APIARY_HTTP_STATIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "static.h"

typedef enum http_range_result {
    HTTP_RANGE_WHOLE,         /* no usable Range (absent, another unit, malformed, several ranges): 200 */
    HTTP_RANGE_PART,          /* one satisfiable range: 206 with [*first, *last] */
    HTTP_RANGE_UNSATISFIABLE, /* one range that starts past the end (or a zero suffix): 416 */
} http_range_result;

/* Parses a Range value (RFC 9110 14.2) against a representation of `size` bytes: "bytes=A-B", "A-",
 * "-N". A last position past the end is clamped. More than one range is answered whole (200), which
 * the RFC allows. */
http_range_result http_range_parse(const char *value, size_t len, uint64_t size, uint64_t *first, uint64_t *last);

/* Parses an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", the form every sender must use); false for
 * anything else (the obsolete forms included: the conditional is then ignored, which is always safe). */
bool http_date_parse(const char *value, size_t len, time_t *out);

/* If-None-Match: true when `value` is "*" or lists `etag` (a quoted strong tag of ours), compared
 * weakly (W/ ignored), as RFC 9110 13.1.2 says. */
bool http_etag_list_matches(const char *value, size_t len, const char *etag);

/* Opens `rel` beneath the directory `root_fd` with `flags`, never leaving it: openat2 with
 * RESOLVE_BENEATH (symlinks that stay beneath are followed), or, where the kernel lacks openat2
 * (ENOSYS, Linux < 5.6) or `walk` is true, one openat per component with O_NOFOLLOW, which refuses
 * every symlink and every ".." segment. -1 with errno (EXDEV, ELOOP for an escape). */
int http_static_open(int root_fd, const char *rel, int flags, bool walk);

#endif
