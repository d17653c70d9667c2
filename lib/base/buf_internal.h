/* buf: a growable byte buffer for connection input and output, and buf_cache, a per-loop free list
 * of standard-size blocks. A connection takes a block only while it has bytes to hold and gives it
 * back when idle, so 10,000 idle keep-alive connections hold no buffers at all, and a busy
 * connection reuses cached blocks instead of calling malloc per request. One loop owns a cache. */
#ifndef APIARY_BUF_H
#define APIARY_BUF_H

#include <stddef.h>

#define BUF_BLOCK_BYTES 8192 /* enough for a typical request head or a burst of small responses */

typedef struct buf {
    char *data; /* NULL while the buffer holds no block */
    size_t pos; /* bytes before pos are consumed (output: already written) */
    size_t len; /* bytes in use, pos <= len <= cap */
    size_t cap;
} buf;

typedef struct buf_cache {
    void **blocks;   /* free BUF_BLOCK_BYTES blocks */
    size_t count;
    size_t max;      /* at most this many are kept; the rest go back to malloc */
} buf_cache;

void buf_cache_init(buf_cache *c, size_t max_blocks);
void buf_cache_free(buf_cache *c);

/* Makes room for at least `extra` more bytes after len: takes a cached block when the buffer has
 * none, otherwise grows by doubling (a grown buffer leaves the cache's size class and is freed
 * with free() later). Never fails: out-of-memory aborts. */
void buf_reserve(buf *b, buf_cache *c, size_t extra);
void buf_append(buf *b, buf_cache *c, const void *data, size_t len);
static inline size_t buf_pending(const buf *b) { return b->len - b->pos; }
/* Drops consumed bytes by moving the rest to the front. */
void buf_compact(buf *b);
/* Returns the block to the cache (or frees it) and leaves the buffer empty. */
void buf_release(buf *b, buf_cache *c);

#endif
