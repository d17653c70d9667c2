/* json_arena: jansson's allocator for apiary, so the nodes of a request body's JSON come from the
 * request's arena: a parse costs no free() calls and few malloc() calls (about 18% of the parse of
 * a 787-byte document, measured in docs/benchmarks.md), and the whole tree goes when the arena is reset.
 *
 * Every block jansson asks for carries a 16-byte tag saying where it came from, so json_decref frees
 * heap blocks and skips arena ones, whatever the mix: a handler may add heap nodes to a parsed tree,
 * and the tree is still decref'd before its arena is reset. Only the thread's current arena
 * (json_arena_use) is used, and only while it is set: everything else jansson allocates, on any
 * thread, comes from malloc as before.
 *
 * Rules: json_arena_install must run before jansson allocates anything (first thing in main), or a
 * block allocated before would be freed with the wrong tag. Nodes from an arena die with it: what
 * must outlive the request is copied out (json_deep_copy with no arena current, or as text). Memory
 * that jansson hands back to its caller (json_dumps) must be freed with the free function of
 * json_get_alloc_funcs, never free(). */
#ifndef APIARY_JSON_ARENA_H
#define APIARY_JSON_ARENA_H

#include "arena.h"

/* Installs the allocator (json_set_alloc_funcs). Once per process, before any other jansson call. */
void json_arena_install(void);

/* Makes `a` (or NULL: the heap) this thread's current arena for jansson and returns the previous
 * one, to be put back when the parse is done. Without json_arena_install it has no effect. */
arena *json_arena_use(arena *a);

#endif
