/* schema_internal: what the files of lib/schema/ share. Not installed. */
#ifndef APIARY_SCHEMA_INTERNAL_H
#define APIARY_SCHEMA_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>

#include "schema.h"

/* Code points in valid UTF-8 text. */
size_t schema_utf8_chars(const char *s, size_t len);
/* Strict UTF-8: no overlong forms, no surrogates, nothing past U+10FFFF. */
bool schema_utf8_valid(const char *s, size_t len);
/* The formats (schema_format_valid: true for SCHEMA_FORMAT_NONE). */
bool schema_format_valid(schema_format f, const char *s, size_t len);
/* "uri", "email", "date-time", "uuid" as OpenAPI names them; NULL for none. */
const char *schema_format_name(schema_format f);
/* The format in words, for messages: "an http or https URI". */
const char *schema_format_words(schema_format f);
/* A bound as it stands now (a SCHEMA_*_VAR bound read). */
schema_bound schema_bound_now(const schema_bound *b);
/* Writes what s accepts in words ("an integer between 1 and 100", "a string of 1 to 200 characters") into
 * buf; the messages say "must be " followed by it. */
void schema_describe(const schema *s, char *buf, size_t cap);

#endif
