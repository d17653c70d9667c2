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

/* Length of the well-formed UTF-8 sequence starting at s (`avail` bytes left, s[0] >= 0x80), or 0 when
 * it is not one. Shared with json_write. */
size_t json_utf8_len(const unsigned char *s, size_t avail);

#endif
