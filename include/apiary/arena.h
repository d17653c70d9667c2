/* arena: a per-request bump allocator. Everything a request derives from its bytes (decoded path,
 * query pairs, path parameters, extra response headers) is carved from it and released at once when
 * the request ends, so request code never frees piecemeal. The first block lives inside the owner's
 * struct; larger needs chain heap blocks that arena_reset returns. Not thread-safe: one loop owns it. */
#ifndef APIARY_ARENA_H
#define APIARY_ARENA_H

#include <stddef.h>

#define ARENA_INLINE_BYTES 1024

typedef struct arena_block arena_block;

typedef struct arena {
    char *cur;           /* next free byte in the current block */
    char *end;           /* end of the current block */
    arena_block *extra;  /* heap blocks chained after the inline one, newest first */
    _Alignas(16) char inline_block[ARENA_INLINE_BYTES];
} arena;

void arena_init(arena *a);
/* Returns `size` bytes aligned to 16; aborts on out-of-memory like every allocation in apiary. */
void *arena_alloc(arena *a, size_t size);
/* Copies `len` bytes and adds a NUL terminator. */
char *arena_strndup(arena *a, const char *s, size_t len);
/* Frees the heap blocks and makes the whole inline block available again. */
void arena_reset(arena *a);

#endif
