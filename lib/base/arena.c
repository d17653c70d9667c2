/* arena: see arena.h. */
#include "arena.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc_internal.h"

struct arena_block {
    arena_block *next;
    size_t size;
    _Alignas(16) char data[];
};

void arena_init(arena *a)
{
    a->cur = a->inline_block;
    a->end = a->inline_block + sizeof(a->inline_block);
    a->extra = NULL;
}

static size_t arena_align(size_t n) { return (n + 15) & ~(size_t)15; }

void *arena_alloc(arena *a, size_t size)
{
    size = arena_align(size ? size : 1);
    if ((size_t)(a->end - a->cur) < size) {
        /* Grow geometrically so a request with many params costs few mallocs. */
        size_t block = a->extra ? a->extra->size * 2 : 4096;
        while (block < size)
            block *= 2;
        arena_block *b = xmalloc(sizeof(*b) + block);
        b->size = block;
        b->next = a->extra;
        a->extra = b;
        a->cur = b->data;
        a->end = b->data + block;
    }
    void *p = a->cur;
    a->cur += size;
    return p;
}

char *arena_strndup(arena *a, const char *s, size_t len)
{
    char *p = arena_alloc(a, len + 1);
    memcpy(p, s, len);
    p[len] = '\0';
    return p;
}

void arena_reset(arena *a)
{
    arena_block *b = a->extra;
    while (b) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    arena_init(a);
}
