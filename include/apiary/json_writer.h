/* json_writer: JSON text written value by value, without building a jansson tree first.
 *
 * An answer built as a jansson tree costs an allocation per node, a hash-table insert per member and
 * a walk of the tree to serialise it; for a list of records most of a request's instructions go
 * there. A json_writer appends the compact text directly: open an object or an array, write keys and
 * values, close it. The text is what http_respond_json would write for the same values (docs/json.md
 * "What is written"): strings escaped the same way (and their UTF-8 checked), integers as they are,
 * reals in the shortest form that reads back to the same double, no whitespace, members in the
 * order written.
 *
 *     json_writer *w = http_json_writer(req);           // http_request.h: the request's own writer
 *     json_writer_object_begin(w);
 *     json_writer_key(w, "items");
 *     json_writer_array_begin(w);
 *     for (...) {
 *         json_writer_object_begin(w);
 *         json_writer_key(w, "id");   json_writer_int(w, it->id);
 *         json_writer_key(w, "name"); json_writer_string(w, it->name);
 *         json_writer_object_end(w);
 *     }
 *     json_writer_array_end(w);
 *     json_writer_object_end(w);
 *     http_respond_json_writer(req, 200, w);            // 500 problem if anything above went wrong
 *
 * Mistakes do not need a check after every call: the first one (a value in an object without its
 * key, a key outside an object, an end that does not match its begin, nesting past
 * JSON_WRITER_MAX_DEPTH, a string that is not UTF-8, a NaN or infinite real, a second top-level
 * value) puts the writer in a failed state, every later call does nothing, and json_writer_error says
 * what it was. The writer itself never fails for memory: out-of-memory aborts, as everywhere in apiary.
 *
 * Ownership. The request's writer (http_json_writer) belongs to the request: never free it; its text
 * is released when the request ends, answered or not. Outside a request, json_writer_new makes one of
 * your own, freed with json_writer_free. A writer belongs to one thread at a time. */
#ifndef APIARY_JSON_WRITER_H
#define APIARY_JSON_WRITER_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct json_writer json_writer;

/* Objects and arrays nest at most this deep. */
#define JSON_WRITER_MAX_DEPTH 256

/* A writer of your own (empty), and its end. The request's writer (http_json_writer) is not freed by
 * you: it ends with the request. */
json_writer *json_writer_new(void);
void json_writer_free(json_writer *w);
/* Empties the writer (and clears a failure), keeping its memory for the next document. */
void json_writer_reset(json_writer *w);

/* Containers. Each begin is a value (in an object: after its key); its end must match it. */
void json_writer_object_begin(json_writer *w);
void json_writer_object_end(json_writer *w);
void json_writer_array_begin(json_writer *w);
void json_writer_array_end(json_writer *w);

/* The name of the next member of the innermost object: a NUL-terminated string, or `len` bytes (which
 * may hold U+0000). Escaped as strings are. Names are not checked for duplicates: write each once. */
void json_writer_key_n(json_writer *w, const char *key, size_t len);
/* Inline, so the length of a literal name is known when compiling, not counted per call. */
static inline void json_writer_key(json_writer *w, const char *key) { json_writer_key_n(w, key, strlen(key)); }

/* Values: one at the top, or one per key in an object, or any number in an array. */
void json_writer_int(json_writer *w, int64_t v);
void json_writer_double(json_writer *w, double v); /* NaN and infinities fail the writer */
void json_writer_bool(json_writer *w, bool v);
void json_writer_null(json_writer *w);
/* A string: NUL-terminated (NULL writes null), or `len` bytes (U+0000 written as \u0000). */
void json_writer_string(json_writer *w, const char *s);
void json_writer_string_n(json_writer *w, const char *s, size_t len);
/* A jansson value of any kind, written as http_respond_json writes it (a shared, immutable part of
 * an answer: a tags array, a nested object read at start). NULL fails the writer. */
void json_writer_json(json_writer *w, const json_t *v);
/* JSON text the caller already holds and vouches for (one complete, valid value: a stored document),
 * copied as it is, unchecked. */
void json_writer_raw(json_writer *w, const char *text, size_t len);

/* Key and value in one call: json_writer_key(w, key) followed by the value. */
static inline void json_writer_member_int(json_writer *w, const char *key, int64_t v)
{
    json_writer_key(w, key);
    json_writer_int(w, v);
}
static inline void json_writer_member_string(json_writer *w, const char *key, const char *s)
{
    json_writer_key(w, key);
    json_writer_string(w, s);
}

/* False once a call failed; json_writer_error then says why (a static string), else NULL. */
bool json_writer_ok(const json_writer *w);
const char *json_writer_error(const json_writer *w);
/* The text written so far (not NUL-terminated; *len bytes) when the writer holds exactly one complete
 * value and has not failed; else NULL with *len 0. Valid until the next call on the writer. */
const char *json_writer_text(const json_writer *w, size_t *len);

#endif
