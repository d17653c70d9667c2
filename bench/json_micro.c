/* bench/json_micro.c: the JSON costs of one document, without the network: jansson's parse (heap, and
 * into an arena as http_request_json does), json_write against json_dumpb, and one real formatted by
 * json_write_real against printf's %.17g. Not part of the build (timings do not belong in tests):
 *
 *   gcc -O2 -D_GNU_SOURCE -Iinclude/apiary -Ilib/base -Ilib/json bench/json_micro.c lib/json/json_write.c \
 *       lib/json/json_valid.c lib/json/json_arena.c lib/base/arena.c lib/base/buf.c lib/base/xalloc.c \
 *       lib/base/log.c -ljansson -lm -o /tmp/json_micro
 *   taskset -c 1 /tmp/json_micro bench/data/body.json
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "json_arena_internal.h"
#include "json_valid_internal.h"
#include "json_write_internal.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DOCUMENT.json\n", argv[0]);
        return 2;
    }
    json_arena_install();
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    static char text[1 << 20];
    size_t n = fread(text, 1, sizeof(text), f);
    fclose(f);
    const size_t flags = JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL;
    const int rounds = 20000;

    double t0 = now_s();
    for (int i = 0; i < rounds; i++)
        json_decref(json_loadb(text, n, flags, NULL));
    double t1 = now_s();
    arena a;
    arena_init(&a);
    for (int i = 0; i < rounds; i++) {
        json_arena_use(&a);
        json_t *doc = json_loadb(text, n, flags, NULL);
        json_arena_use(NULL);
        json_decref(doc);
        arena_reset(&a);
    }
    double t2 = now_s();
    json_t *doc = json_loadb(text, n, flags, NULL);
    buf_cache cache;
    buf_cache_init(&cache, 4);
    buf out = {0};
    size_t written = 0;
    for (int i = 0; i < rounds; i++) {
        out.len = 0;
        json_write(&out, &cache, doc, NULL);
        written = out.len;
    }
    double t3 = now_s();
    static char dumped[1 << 21];
    for (int i = 0; i < rounds; i++)
        json_dumpb(doc, dumped, sizeof(dumped), JSON_COMPACT | JSON_ENCODE_ANY);
    double t4 = now_s();
    volatile bool ok = true;
    for (int i = 0; i < rounds; i++)
        ok = ok & json_valid(text, n, 2048);
    double t5 = now_s();
    static const double reals[] = {98.6, 9.99, 51.507, -0.135, 16.990000000000002, 0.1};
    char tmp[40];
    size_t sink = 0;
    for (int i = 0; i < rounds * 10; i++)
        sink += json_write_real(reals[i % 6], tmp);
    double t6 = now_s();
    for (int i = 0; i < rounds * 10; i++)
        sink += (size_t)snprintf(tmp, sizeof(tmp), "%.17g", reals[i % 6]);
    double t7 = now_s();
    printf("%s, %zu bytes (written back: %zu)\n", argv[1], n, written);
    printf("  parse + decref, heap:      %8.2f us\n", (t1 - t0) / rounds * 1e6);
    printf("  parse + decref, arena:     %8.2f us\n", (t2 - t1) / rounds * 1e6);
    printf("  json_write:                %8.2f us\n", (t3 - t2) / rounds * 1e6);
    printf("  json_dumpb (compact):      %8.2f us\n", (t4 - t3) / rounds * 1e6);
    printf("  json_valid:                %8.2f us\n", (t5 - t4) / rounds * 1e6);
    printf("  one real, json_write_real: %8.0f ns\n", (t6 - t5) / rounds / 10 * 1e9);
    printf("  one real, %%.17g:           %8.0f ns (%zu)\n", (t7 - t6) / rounds / 10 * 1e9, sink % 10);
    json_decref(doc);
    buf_release(&out, &cache);
    buf_cache_free(&cache);
    return ok ? 0 : 1;
}
