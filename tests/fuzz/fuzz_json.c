/* fuzz_json: libFuzzer target for the JSON body path and the writer. The input is a request body:
 * the pre-parse scan (lib/json/json_limits.c) measures it, jansson parses it with the flags
 * http_request_json uses, the validator (lib/json/json_valid.c, for stored text) judges it, and json_write
 * (what every JSON answer goes through) writes it. Invariants beyond the sanitizers: the scan admits
 * exactly the documents within its depth and value limits; whatever jansson accepts the validator
 * accepts too; what the writer writes is valid, parses again and writes back byte for byte the same;
 * the one-pass compactor (lib/json/json_compact.c, kv PUT's body) handles only text jansson accepts
 * within the limits, and writes exactly what json_write writes for jansson's tree. */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf_internal.h"
#include "json_compact_internal.h"
#include "json_limits_internal.h"
#include "json_valid_internal.h"
#include "json_write_internal.h"

#define FUZZ_JSON_DEPTH 64
#define FUZZ_JSON_VALUES 5000

static size_t fuzz_json_count(const json_t *v, size_t depth, size_t *max_depth)
{
    size_t n = 1;
    if (json_is_array(v) || json_is_object(v)) {
        depth++;
        if (depth > *max_depth)
            *max_depth = depth;
    }
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            n += fuzz_json_count(json_array_get(v, i), depth, max_depth);
    } else if (json_is_object(v)) {
        const char *k;
        json_t *m;
        json_object_foreach((json_t *)v, k, m) n += fuzz_json_count(m, depth, max_depth);
    }
    return n;
}

static size_t fuzz_json_dump(buf *out, buf_cache *cache, const json_t *v)
{
    out->len = 0;
    if (!json_write(out, cache, v, NULL) || !json_valid(out->data, out->len, JSON_VALID_MAX_DEPTH)) {
        fprintf(stderr, "fuzz_json: the writer failed on a parsed document, or wrote invalid JSON\n");
        abort();
    }
    return out->len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    json_limits_result lim = json_limits_scan(text, size, FUZZ_JSON_DEPTH, FUZZ_JSON_VALUES);
    /* The bounded validator (upstream bodies in /v1/fanout) agrees with the plain one, and on valid
     * text with the scan: same depth, same count of values. */
    json_valid_result bounded = json_valid_bounded(text, size, FUZZ_JSON_DEPTH, FUZZ_JSON_VALUES);
    bool valid = json_valid(text, size, JSON_VALID_MAX_DEPTH);
    if ((bounded == JSON_VALID_OK && (!valid || lim != JSON_LIMITS_OK)) ||
        (valid && bounded == JSON_VALID_INVALID) ||
        (valid && (bounded == JSON_VALID_OK) != (lim == JSON_LIMITS_OK))) {
        fprintf(stderr, "fuzz_json: json_valid_bounded %d, json_valid %d, json_limits_scan %d disagree\n",
                (int)bounded, (int)valid, (int)lim);
        abort();
    }
    size_t cap = json_compact_cap(size);
    char *compact = malloc(cap);
    size_t compact_len = json_compact(text, size, compact, cap, FUZZ_JSON_DEPTH, FUZZ_JSON_VALUES);
    json_error_t err;
    /* http_request_json refuses a raw NUL byte before jansson (which stops reading at one) */
    if (memchr(text, '\0', size)) {
        if (compact_len != JSON_COMPACT_FALLBACK) {
            fprintf(stderr, "fuzz_json: json_compact handled text with a NUL byte\n");
            abort();
        }
        free(compact);
        return 0;
    }
    json_t *doc = json_loadb(text, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
    if (doc && !json_valid(text, size, JSON_VALID_MAX_DEPTH)) {
        fprintf(stderr, "fuzz_json: jansson accepted what the validator refuses\n");
        abort();
    }
    if (compact_len != JSON_COMPACT_FALLBACK && (!doc || lim != JSON_LIMITS_OK)) {
        fprintf(stderr, "fuzz_json: json_compact handled what jansson or the limits refuse\n");
        abort();
    }
    if (doc) {
        size_t depth = 0, values = fuzz_json_count(doc, 0, &depth);
        if (lim != JSON_LIMITS_OK && values <= FUZZ_JSON_VALUES && depth <= FUZZ_JSON_DEPTH) {
            fprintf(stderr, "fuzz_json: scan refused a document of %zu values, depth %zu\n", values, depth);
            abort();
        }
        if (lim == JSON_LIMITS_OK && (values > FUZZ_JSON_VALUES || depth > FUZZ_JSON_DEPTH)) {
            fprintf(stderr, "fuzz_json: scan admitted a document of %zu values, depth %zu\n", values, depth);
            abort();
        }
        buf_cache cache;
        buf_cache_init(&cache, 4);
        buf first = {0}, second = {0};
        fuzz_json_dump(&first, &cache, doc);
        if (compact_len != JSON_COMPACT_FALLBACK &&
            (compact_len != first.len || memcmp(compact, first.data, first.len) != 0)) {
            fprintf(stderr, "fuzz_json: json_compact and json_write disagree\n");
            abort();
        }
        json_t *again =
            json_loadb(first.data, first.len, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
        if (!again) {
            fprintf(stderr, "fuzz_json: the writer's output does not parse: %s\n", err.text);
            abort();
        }
        fuzz_json_dump(&second, &cache, again);
        if (first.len != second.len || memcmp(first.data, second.data, first.len) != 0) {
            fprintf(stderr, "fuzz_json: writing is not stable\n");
            abort();
        }
        json_decref(again);
        buf_release(&first, &cache);
        buf_release(&second, &cache);
        buf_cache_free(&cache);
        json_decref(doc);
    }
    free(compact);
    return 0;
}
