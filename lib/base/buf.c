/* buf: see buf_internal.h. */
#include "buf_internal.h"

#include <stdlib.h>
#include <string.h>

#include "xalloc_internal.h"

void buf_cache_init(buf_cache *c, size_t max_blocks)
{
    c->blocks = xcalloc(max_blocks, sizeof(void *));
    c->count = 0;
    c->max = max_blocks;
}

void buf_cache_free(buf_cache *c)
{
    for (size_t i = 0; i < c->count; i++)
        free(c->blocks[i]);
    free(c->blocks);
    c->blocks = NULL;
    c->count = c->max = 0;
}

void buf_reserve(buf *b, buf_cache *c, size_t extra)
{
    if (b->cap - b->len >= extra)
        return;
    if (!b->data && extra <= BUF_BLOCK_BYTES) {
        b->data = c->count ? c->blocks[--c->count] : xmalloc(BUF_BLOCK_BYTES);
        b->cap = BUF_BLOCK_BYTES;
        return;
    }
    size_t cap = b->cap ? b->cap : BUF_BLOCK_BYTES;
    while (cap - b->len < extra)
        cap *= 2;
    b->data = xrealloc(b->data, cap);
    b->cap = cap;
}

void buf_append(buf *b, buf_cache *c, const void *data, size_t len)
{
    buf_reserve(b, c, len);
    memcpy(b->data + b->len, data, len);
    b->len += len;
}

void buf_compact(buf *b)
{
    if (b->pos == 0)
        return;
    size_t rest = b->len - b->pos;
    if (rest)
        memmove(b->data, b->data + b->pos, rest);
    b->len = rest;
    b->pos = 0;
}

void buf_release(buf *b, buf_cache *c)
{
    if (b->data) {
        if (b->cap == BUF_BLOCK_BYTES && c->count < c->max)
            c->blocks[c->count++] = b->data;
        else
            free(b->data);
    }
    b->data = NULL;
    b->pos = b->len = b->cap = 0;
}
