/* json_arena: see json_arena_internal.h. */
#include "json_arena_internal.h"

#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>

#include "xalloc_internal.h"

/* The tag before every block: 16 bytes, so the block keeps malloc's 16-byte alignment. */
#define JSON_ARENA_TAG_BYTES 16
#define JSON_ARENA_FROM_HEAP UINT64_C(0x6a736f6e68656170)  /* "jsonheap" */
#define JSON_ARENA_FROM_ARENA UINT64_C(0x6a736f6e6172656e) /* "jsonaren" */

static _Thread_local arena *json_arena_current;

static void *json_arena_malloc(size_t size)
{
    uint64_t *block;
    if (json_arena_current) {
        block = arena_alloc(json_arena_current, JSON_ARENA_TAG_BYTES + size);
        *block = JSON_ARENA_FROM_ARENA;
    } else {
        block = xmalloc(JSON_ARENA_TAG_BYTES + size);
        *block = JSON_ARENA_FROM_HEAP;
    }
    return (char *)block + JSON_ARENA_TAG_BYTES;
}

static void json_arena_free(void *ptr)
{
    if (!ptr)
        return;
    uint64_t *block = (uint64_t *)((char *)ptr - JSON_ARENA_TAG_BYTES);
    if (*block == JSON_ARENA_FROM_HEAP)
        free(block);
    else if (*block != JSON_ARENA_FROM_ARENA)
        abort(); /* not a block of ours: an allocation made before json_arena_install, or a bad free */
    /* an arena block goes with its arena */
}

void json_arena_install(void) { json_set_alloc_funcs(json_arena_malloc, json_arena_free); }

arena *json_arena_use(arena *a)
{
    arena *prev = json_arena_current;
    json_arena_current = a;
    return prev;
}
