/* json_limits: a single pass over a JSON text, before it is parsed, that measures what a parse would
 * cost — the nesting depth and the number of values — so a body that would hold its loop (a parse
 * costs about 0.2-0.5 µs and up to ~230 bytes per value with jansson) is refused in about a
 * millisecond per MiB instead. It does not validate: text it passes still goes to the parser, which
 * refuses malformed input as before; it never refuses valid text within the limits. */
#ifndef APIARY_JSON_LIMITS_H
#define APIARY_JSON_LIMITS_H

#include <stddef.h>

typedef enum json_limits_result {
    JSON_LIMITS_OK,
    JSON_LIMITS_TOO_DEEP,   /* arrays and objects nest deeper than max_depth */
    JSON_LIMITS_TOO_MANY,   /* more than max_values values */
} json_limits_result;

/* Counts, outside strings, the values of `text`: the document, every array element and every object
 * member (a member and its value count once). Stops at the first limit passed. */
json_limits_result json_limits_scan(const char *text, size_t len, size_t max_depth, size_t max_values);

#endif
