/* json_compact: JSON text in, the same value's compact text out, in one pass without building a tree:
 * exactly the bytes json_write would give for the tree jansson parses from the text (the request
 * path's JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL), so a handler that only stores or
 * forwards a JSON body (kv PUT) pays neither jansson's parse, nor the tree, nor the write.
 *
 * What that means byte for byte: no insignificant whitespace; members in the order sent; strings
 * re-escaped as json_write escapes them ("\/" and "\u00e9" become "/" and "é", control characters
 * are \b \f \n \r \t or \u00XX); integers in plain decimal ("-0" is "0"); reals in the shortest form
 * that reads back to the same double (json_write_real).
 *
 * It handles the common case and gives up on everything else, so the caller falls back to the parser
 * and its answer is the parser's, unchanged: invalid text, a limit passed (depth, values), duplicate
 * member names, U+0000 in a member name, integers beyond int64, reals beyond double, and a few shapes
 * it does not track (nesting deeper than JSON_COMPACT_MAX_DEPTH, an object with more than
 * JSON_COMPACT_MAX_MEMBERS members, more than JSON_COMPACT_MAX_KEYS member names open at once, a
 * number longer than 64 characters, output that would not fit in `cap`). */
#ifndef APIARY_JSON_COMPACT_H
#define APIARY_JSON_COMPACT_H

#include <stddef.h>
#include <stdint.h>

#define JSON_COMPACT_MAX_DEPTH 128
#define JSON_COMPACT_MAX_MEMBERS 64
#define JSON_COMPACT_MAX_KEYS 256

/* json_compact's "not handled": parse the text to find out why (or to handle it). */
#define JSON_COMPACT_FALLBACK SIZE_MAX

/* Output is never longer than the input except for reals written longer than sent ("1e3" is
 * "1000.0"); a cap of len + len / 4 + 64 holds every document but odd ones. */
static inline size_t json_compact_cap(size_t len) { return len + len / 4 + 64; }

/* Writes the compact text of text[0..len) at out (cap bytes) and returns its length, or
 * JSON_COMPACT_FALLBACK (out's contents are then undefined). max_depth and max_values are the
 * request path's JSON limits (json_limits_scan's count): a text past either falls back. */
size_t json_compact(const char *text, size_t len, char *out, size_t cap, size_t max_depth, size_t max_values);

#endif
