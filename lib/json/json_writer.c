/* json_writer: see include/apiary/json_writer.h. The text goes into a buf with the same string and
 * number writers as the tree writer (json_write.c), so both write the same bytes for the same values. */
#include "json_writer_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json_write_internal.h"
#include "xalloc_internal.h"

void json_writer_init(json_writer *w, buf_cache *cache)
{
    memset(w, 0, sizeof(*w));
    w->cache = cache ? cache : &w->own_cache; /* an empty cache of 0 blocks: buf_reserve mallocs */
}

void json_writer_release(json_writer *w)
{
    buf_release(&w->out, w->cache);
    buf_cache *cache = w->cache == &w->own_cache ? NULL : w->cache;
    json_writer_init(w, cache);
}

json_writer *json_writer_new(void)
{
    json_writer *w = xmalloc(sizeof(*w));
    json_writer_init(w, NULL);
    return w;
}

void json_writer_free(json_writer *w)
{
    if (!w)
        return;
    buf_release(&w->out, w->cache);
    free(w);
}

void json_writer_reset(json_writer *w)
{
    buf out = w->out;
    buf_cache *cache = w->cache;
    json_writer_init(w, cache == &w->own_cache ? NULL : cache);
    out.pos = out.len = 0;
    w->out = out; /* the memory stays for the next document */
}

static void json_writer_fail(json_writer *w, const char *why)
{
    if (!w->error)
        w->error = why;
}

static inline void json_writer_reserve(json_writer *w, size_t n)
{
    if (w->out.cap - w->out.len < n)
        buf_reserve(&w->out, w->cache, n);
}

static inline bool json_writer_in_object(const json_writer *w)
{
    return w->depth > 0 && (w->objects[(w->depth - 1) / 8] >> ((w->depth - 1) % 8) & 1);
}

/* Before a value: false (failed) when no value may come here; else writes the ',' it needs and
 * reserves `n` bytes after it. */
static inline bool json_writer_value_start(json_writer *w, size_t n)
{
    if (w->error)
        return false;
    json_writer_reserve(w, n + 1);
    if (w->depth == 0) {
        if (w->done) {
            json_writer_fail(w, "a second value at the top level");
            return false;
        }
        return true;
    }
    if (json_writer_in_object(w)) {
        if (!w->keyed) {
            json_writer_fail(w, "a value in an object without its key");
            return false;
        }
        w->keyed = false;
        return true;
    }
    if (w->comma)
        w->out.data[w->out.len++] = ',';
    return true;
}

/* After a value (scalar, or a container just closed). */
static inline void json_writer_value_end(json_writer *w)
{
    if (w->depth == 0)
        w->done = true;
    else
        w->comma = true;
}

static void json_writer_begin(json_writer *w, bool object)
{
    if (!json_writer_value_start(w, 1))
        return;
    if (w->depth == JSON_WRITER_MAX_DEPTH) {
        json_writer_fail(w, "nesting deeper than JSON_WRITER_MAX_DEPTH");
        return;
    }
    uint8_t bit = (uint8_t)(1u << (w->depth % 8));
    if (object)
        w->objects[w->depth / 8] |= bit;
    else
        w->objects[w->depth / 8] &= (uint8_t)~bit;
    w->depth++;
    w->comma = false;
    w->out.data[w->out.len++] = object ? '{' : '[';
}

static void json_writer_end(json_writer *w, bool object)
{
    if (w->error)
        return;
    if (w->depth == 0 || json_writer_in_object(w) != object) {
        json_writer_fail(w, object ? "an object end without its begin" : "an array end without its begin");
        return;
    }
    if (object && w->keyed) {
        json_writer_fail(w, "an object ends after a key without its value");
        return;
    }
    json_writer_reserve(w, 1);
    w->out.data[w->out.len++] = object ? '}' : ']';
    w->depth--;
    json_writer_value_end(w);
}

void json_writer_object_begin(json_writer *w) { json_writer_begin(w, true); }
void json_writer_object_end(json_writer *w) { json_writer_end(w, true); }
void json_writer_array_begin(json_writer *w) { json_writer_begin(w, false); }
void json_writer_array_end(json_writer *w) { json_writer_end(w, false); }

void json_writer_key_n(json_writer *w, const char *key, size_t len)
{
    if (w->error)
        return;
    if (!json_writer_in_object(w) || w->keyed) {
        json_writer_fail(w, w->keyed ? "a key after a key" : "a key outside an object");
        return;
    }
    if (w->comma) {
        json_writer_reserve(w, 1);
        w->out.data[w->out.len++] = ',';
    }
    size_t start = w->out.len;
    if (!json_write_string(&w->out, w->cache, key, len)) {
        w->out.len = start;
        json_writer_fail(w, "a key that is not valid UTF-8");
        return;
    }
    json_writer_reserve(w, 1);
    w->out.data[w->out.len++] = ':';
    w->keyed = true;
    w->comma = true; /* the member after this one */
}


void json_writer_int(json_writer *w, int64_t v)
{
    if (!json_writer_value_start(w, JSON_WRITE_NUMBER_MAX))
        return;
    w->out.len += json_write_integer((json_int_t)v, w->out.data + w->out.len);
    json_writer_value_end(w);
}

void json_writer_double(json_writer *w, double v)
{
    if (!isfinite(v)) {
        json_writer_fail(w, "a real that is NaN or infinite");
        return;
    }
    if (!json_writer_value_start(w, JSON_WRITE_NUMBER_MAX))
        return;
    w->out.len += json_write_real(v, w->out.data + w->out.len);
    json_writer_value_end(w);
}

static void json_writer_literal(json_writer *w, const char *text, size_t len)
{
    if (!json_writer_value_start(w, len))
        return;
    memcpy(w->out.data + w->out.len, text, len);
    w->out.len += len;
    json_writer_value_end(w);
}

void json_writer_bool(json_writer *w, bool v) { v ? json_writer_literal(w, "true", 4) : json_writer_literal(w, "false", 5); }
void json_writer_null(json_writer *w) { json_writer_literal(w, "null", 4); }

void json_writer_string_n(json_writer *w, const char *s, size_t len)
{
    if (!json_writer_value_start(w, 0))
        return;
    size_t start = w->out.len;
    if (!json_write_string(&w->out, w->cache, s, len)) {
        w->out.len = start;
        json_writer_fail(w, "a string that is not valid UTF-8");
        return;
    }
    json_writer_value_end(w);
}

void json_writer_string(json_writer *w, const char *s)
{
    if (!s)
        json_writer_null(w);
    else
        json_writer_string_n(w, s, strlen(s));
}

void json_writer_json(json_writer *w, const json_t *v)
{
    if (!v) {
        json_writer_fail(w, "a NULL jansson value");
        return;
    }
    if (!json_writer_value_start(w, 0))
        return;
    if (!json_write(&w->out, w->cache, v, NULL)) {
        json_writer_fail(w, "a jansson value that cannot be written (invalid UTF-8, NaN, too deep)");
        return;
    }
    json_writer_value_end(w);
}

void json_writer_raw(json_writer *w, const char *text, size_t len)
{
    if (!json_writer_value_start(w, len))
        return;
    memcpy(w->out.data + w->out.len, text, len);
    w->out.len += len;
    json_writer_value_end(w);
}

bool json_writer_ok(const json_writer *w) { return w->error == NULL; }

const char *json_writer_error(const json_writer *w) { return w->error; }

const char *json_writer_text(const json_writer *w, size_t *len)
{
    if (w->error || !w->done) {
        *len = 0;
        return NULL;
    }
    *len = w->out.len;
    return w->out.data;
}
