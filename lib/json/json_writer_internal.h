/* json_writer_internal: the json_writer's insides (include/apiary/json_writer.h), for the HTTP layer,
 * which keeps one writer per request with its text in a block of the loop's buffer cache. */
#ifndef APIARY_JSON_WRITER_INTERNAL_H
#define APIARY_JSON_WRITER_INTERNAL_H

#include <stdint.h>

#include "buf_internal.h"
#include "json_writer.h"

struct json_writer {
    buf out;
    buf_cache *cache;      /* where out's blocks come from: the loop's, or own_cache */
    buf_cache own_cache;   /* empty, keeps nothing: plain malloc for a writer of json_writer_new */
    const char *error;     /* the first failure, or NULL */
    uint32_t depth;        /* open containers */
    bool comma;            /* the next value or key of the innermost container needs a ',' first */
    bool keyed;            /* in an object: a key is written and waits for its value */
    bool done;             /* the top-level value is complete */
    uint8_t objects[JSON_WRITER_MAX_DEPTH / 8]; /* bit d: the container at depth d is an object */
};

/* Makes w an empty writer taking its blocks from cache (NULL: malloc). */
void json_writer_init(json_writer *w, buf_cache *cache);
/* Gives w's memory back (to its cache); w is empty afterwards and may be used again. */
void json_writer_release(json_writer *w);

#endif
