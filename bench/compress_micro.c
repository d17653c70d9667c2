/* bench/compress_micro.c: CPU and ratio of apiary's coders (lib/http/http_compress.c) on one body,
 * gzip levels 1..6 and Brotli qualities 0..5, without the network: what docs/compression.md's default
 * levels and the pool threshold (compression.pool_bytes) are chosen from. Not part of the build
 * (timings do not belong in tests):
 *
 *   gcc -O2 -D_GNU_SOURCE -Ilib/http -Ilib/base -Iinclude/apiary bench/compress_micro.c lib/http/http_compress.c \
 *       lib/base/xalloc.c lib/base/log.c -ldeflate -lbrotlienc -lpthread -o /tmp/compress_micro
 *   taskset -c 1 /tmp/compress_micro bench/data/jsoncomp.json [REPEAT]
 *
 * REPEAT (default 1) concatenates the body that many times, for the per-KiB cost of large bodies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http_compress_internal.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void run(const char *name, http_coding c, int level, const char *in, size_t len)
{
    const void *out;
    size_t n = http_compress(c, level, in, len, &out); /* warm: the thread's stream and buffer */
    int iters = 0;
    double start = now_s(), took;
    do {
        for (int i = 0; i < 20; i++)
            n = http_compress(c, level, in, len, &out);
        iters += 20;
        took = now_s() - start;
    } while (took < 0.5);
    double us = took / iters * 1e6;
    printf("%-6s %2d  %8zu -> %7zu  ratio %5.3f  %9.1f us/body  %7.2f us/KiB\n", name, level, len, n,
           (double)n / (double)len, us, us / ((double)len / 1024));
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s BODY [REPEAT]\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f)
        return 2;
    fseek(f, 0, SEEK_END);
    size_t one = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    int repeat = argc > 2 ? atoi(argv[2]) : 1;
    char *body = malloc(one * (size_t)repeat);
    if (fread(body, 1, one, f) != one)
        return 2;
    fclose(f);
    for (int i = 1; i < repeat; i++)
        memcpy(body + one * (size_t)i, body, one);
    size_t len = one * (size_t)repeat;
    for (int level = 1; level <= 6; level++)
        run("gzip", HTTP_CODING_GZIP, level, body, len);
    for (int level = 0; level <= 5; level++)
        run("br", HTTP_CODING_BR, level, body, len);
    free(body);
    return 0;
}
