/* Unit tests for lib/json/json_arena.c: a parse with an arena current takes its nodes from the arena, a
 * tree mixing arena and heap nodes is decref'd correctly (ASan checks the heap side: no leak, no bad
 * free), and nothing else is touched: other threads and parses without an arena use the heap.
 * Criterion runs every test in its own process, so each installs the allocator before any jansson
 * call, as main does. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "json_arena_internal.h"
#include <jansson.h>

static void setup(void) { json_arena_install(); }

TestSuite(json_arena, .init = setup);

static const char doc[] = "{\"a\":[1,2.5,\"three\",{\"x\":null}],\"b\":{\"c\":\"d\"},\"e\":true}";

/* Reads the tag json_arena.c puts before every block (white-box: the module's own test). */
static bool in_arena(const arena *a, const void *p)
{
    (void)a;
    uint64_t tag;
    memcpy(&tag, (const char *)p - 16, sizeof(tag));
    cr_assert(tag == UINT64_C(0x6a736f6e6172656e) || tag == UINT64_C(0x6a736f6e68656170), "not a tagged block");
    return tag == UINT64_C(0x6a736f6e6172656e);
}

Test(json_arena, a_parse_takes_its_nodes_from_the_current_arena)
{
    arena a;
    arena_init(&a);
    arena *prev = json_arena_use(&a);
    json_t *j = json_loads(doc, 0, NULL);
    json_arena_use(prev);
    cr_assert_null(prev);
    cr_assert_not_null(j);
    cr_assert(in_arena(&a, j));
    cr_assert(in_arena(&a, json_object_get(j, "a")));
    cr_assert(in_arena(&a, json_array_get(json_object_get(j, "a"), 2)));
    /* handler-style changes after the parse: heap nodes inside an arena tree */
    json_object_set_new(j, "new", json_pack("{s:[i,i,i]}", "k", 1, 2, 3));
    for (int i = 0; i < 100; i++) /* grows the arena array's storage: old storage is an arena block */
        json_array_append_new(json_object_get(j, "a"), json_integer(i));
    cr_assert_not(in_arena(&a, json_object_get(j, "new")));
    json_object_del(j, "b"); /* frees an arena subtree: no effect */
    json_t *kept = json_incref(json_object_get(j, "new"));
    json_decref(j); /* frees the heap nodes, skips the arena ones */
    cr_assert_eq(json_integer_value(json_array_get(json_object_get(kept, "k"), 2)), 3);
    json_decref(kept);
    arena_reset(&a);
}

Test(json_arena, without_an_arena_everything_is_heap)
{
    json_t *j = json_loads(doc, 0, NULL);
    cr_assert_not_null(j);
    char *text = json_dumps(j, JSON_COMPACT);
    cr_assert_str_eq(text, doc);
    /* memory jansson hands out must go back through its own free */
    json_object_set_new(j, "t", json_string(text));
    json_malloc_t m;
    json_free_t f;
    json_get_alloc_funcs(&m, &f);
    f(text);
    json_decref(j);
}

static void *other_thread(void *arg)
{
    const arena *a = arg;
    json_t *j = json_loads(doc, 0, NULL);
    bool heap = !in_arena(a, j);
    json_decref(j);
    return heap ? (void *)1 : NULL;
}

Test(json_arena, the_arena_is_per_thread)
{
    arena a;
    arena_init(&a);
    json_arena_use(&a);
    pthread_t t;
    void *heap;
    pthread_create(&t, NULL, other_thread, &a);
    pthread_join(t, &heap);
    json_arena_use(NULL);
    cr_assert_not_null(heap, "another thread's parse used this thread's arena");
    arena_reset(&a);
}
