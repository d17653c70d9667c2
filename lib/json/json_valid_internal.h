/* json_valid: checks that bytes are one JSON text (RFC 8259) without building anything: one pass,
 * no allocation. For text apiary did not write itself but is about to copy into an answer as is (a
 * kv value read back from Redis), so an answer is never invalid JSON and the text is not parsed into
 * a tree only to be thrown away.
 *
 * Strict where RFC 8259 and I-JSON (RFC 7493) are: well-formed UTF-8 only (no overlong forms, no
 * surrogates, nothing above U+10FFFF), \u escapes of surrogates only in high-low pairs, no control
 * characters in strings, nothing but whitespace around the value. It does not check what jansson
 * refuses beyond the grammar (duplicate member names, integers beyond int64, reals beyond double):
 * such text is still valid JSON for the client that receives it. */
#ifndef APIARY_JSON_VALID_H
#define APIARY_JSON_VALID_H

#include <stdbool.h>
#include <stddef.h>

/* True when text[0..len) is exactly one JSON value, optionally surrounded by whitespace, nesting at
 * most max_depth arrays and objects (at most JSON_VALID_MAX_DEPTH). */
#define JSON_VALID_MAX_DEPTH 2048
bool json_valid(const char *text, size_t len, size_t max_depth);

typedef enum json_valid_result {
    JSON_VALID_OK,
    JSON_VALID_INVALID,  /* not one JSON text */
    JSON_VALID_TOO_DEEP, /* valid up to an array or object opened deeper than max_depth */
    JSON_VALID_TOO_MANY, /* valid up to value number max_values + 1 */
} json_valid_result;

/* json_valid that also counts values as json_limits_scan does (the document, every array element,
 * every object member) and says why it stopped. It stops at the first of: a syntax error, a limit
 * passed. So text that is JSON up to the point where it passes a limit is TOO_DEEP / TOO_MANY, and a
 * hostile text ([{},{},...] of any length) costs only the bytes up to its limit. For text from a
 * backend (an upstream's answer) that is spliced into an answer as is: no tree is built. */
json_valid_result json_valid_bounded(const char *text, size_t len, size_t max_depth, size_t max_values);

/* Length of the run at s (`avail` bytes) of bytes that a JSON string holds as they are: ASCII from
 * 0x20 up, other than '"' and '\\'. Goes 8 bytes at a time. */
size_t json_plain_run(const unsigned char *s, size_t avail);

/* The lexing both one-pass readers share (json_valid, json_compact). */
/* The first byte at or after p (before end) that is not JSON whitespace. */
static inline const unsigned char *json_skip_ws(const unsigned char *p, const unsigned char *end)
{
    while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
        p++;
    return p;
}

/* Four hex digits at p (the 'XXXX' of \uXXXX, end bounding them): their value, or -1. */
long json_hex4(const unsigned char *p, const unsigned char *end);

/* Length of the well-formed UTF-8 sequence starting at s (`avail` bytes left, s[0] >= 0x80), or 0 when
 * it is not one. Shared with json_write. */
size_t json_utf8_len(const unsigned char *s, size_t avail);

#endif
