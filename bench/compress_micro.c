/* bench/compress_micro.c: CPU and ratio of apiary's coders (lib/http/http_compress.c) on one body,
 * gzip levels 1..6 and Brotli qualities 0..5, without the network: what docs/compression.md's default
 * levels and the pool threshold (compression.pool_bytes) are chosen from. Not part of the build
 * (timings do not belong in tests):
 *
 *   gcc -O2 -D_GNU_SOURCE -Ilib/http -Ilib/base -Iinclude/apiary bench/compress_micro.c lib/http/http_compress.c \
 *       lib/base/xalloc.c lib/base/log.c -ldeflate -lbrotlienc -lpthread -o /tmp/compress_micro
 *   taskset -c 1 /tmp/compress_micro bench/data/jsoncomp.json [REPEAT]
 *   taskset -c 1 /tmp/compress_micro --defaults FILE...
 *   valgrind --tool=callgrind --toggle-collect=counted /tmp/compress_micro --count gzip|br LEVEL FILE [N]
 *
 * REPEAT (default 1) concatenates the body that many times, for the per-KiB cost of large bodies.
 * --defaults codes each FILE with gzip 1 and Brotli 1 (the default levels) in turn, seven rounds of
 * 0.2 s each, and prints one table row per file with the best round's µs of each coder: what
 * compression.prefer's default (the order on equal q) is chosen from, with the instruction counts of
 * --count. The best round, not the median: load from elsewhere on a shared machine only ever adds
 * time. Alternating the two coders round by round means a burst of it hits both, not one.
 * --count codes FILE N times (default 10) after one call that sets the coder up, all inside `counted`:
 * under callgrind with --toggle-collect=counted, its instructions divided by N are one body's, a figure
 * no other load on the machine changes (bench/compress_counts.sh runs it for a list of files). */
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

/* µs per body of coding in[0..len) for at least `seconds`; *n gets the coded length. */
static double time_coder(http_coding c, int level, const char *in, size_t len, double seconds, size_t *n)
{
    const void *out;
    *n = http_compress(c, level, in, len, &out); /* warm: the thread's stream and buffer */
    int iters = 0;
    double start = now_s(), took;
    do {
        for (int i = 0; i < 20; i++)
            *n = http_compress(c, level, in, len, &out);
        iters += 20;
        took = now_s() - start;
    } while (took < seconds);
    return took / iters * 1e6;
}

static void run(const char *name, http_coding c, int level, const char *in, size_t len)
{
    size_t n;
    double us = time_coder(c, level, in, len, 0.5, &n);
    printf("%-6s %2d  %8zu -> %7zu  ratio %5.3f  %9.1f us/body  %7.2f us/KiB\n", name, level, len, n,
           (double)n / (double)len, us, us / ((double)len / 1024));
}

/* The file whole, with room for `repeat` copies of it (the caller fills them); NULL when unreadable. */
static char *read_body(const char *path, int repeat, size_t *one)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *one = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *body = malloc(*one * (size_t)repeat + 1);
    if (!body || fread(body, 1, *one, f) != *one) {
        free(body);
        body = NULL;
    }
    fclose(f);
    return body;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

#define TIE_ROUNDS 7

/* One row of the --defaults table: gzip 1 against Brotli 1 on one file, the best of TIE_ROUNDS. */
static int tie_row(const char *path)
{
    size_t len, gz_n = 0, br_n = 0;
    char *body = read_body(path, 1, &len);
    if (!body)
        return 2;
    double gz[TIE_ROUNDS], br[TIE_ROUNDS];
    for (int r = 0; r < TIE_ROUNDS; r++) {
        gz[r] = time_coder(HTTP_CODING_GZIP, 1, body, len, 0.2, &gz_n);
        br[r] = time_coder(HTTP_CODING_BR, 1, body, len, 0.2, &br_n);
    }
    qsort(gz, TIE_ROUNDS, sizeof(gz[0]), cmp_double);
    qsort(br, TIE_ROUNDS, sizeof(br[0]), cmp_double);
    const char *base = strrchr(path, '/');
    printf("| %s | %zu | %zu | %.1f | %zu | %.1f | %.2f | %.3f |\n", base ? base + 1 : path, len, gz_n, gz[0], br_n,
           br[0], br[0] / gz[0], (double)br_n / (double)gz_n);
    free(body);
    return 0;
}

static int tie_table(int n, char **paths)
{
    printf("| body | bytes | gzip 1 bytes | gzip 1 µs | br 1 bytes | br 1 µs | br ÷ gzip µs | br ÷ gzip bytes |\n");
    printf("|---|--:|--:|--:|--:|--:|--:|--:|\n");
    for (int i = 0; i < n; i++)
        if (tie_row(paths[i]) != 0)
            return 2;
    return 0;
}

/* Codes the body n times: the function callgrind counts in (--toggle-collect=counted). */
__attribute__((noinline)) static size_t counted(http_coding c, int level, const char *in, size_t len, int n)
{
    const void *out;
    size_t coded = 0;
    for (int i = 0; i < n; i++)
        coded = http_compress(c, level, in, len, &out);
    return coded;
}

static int count_mode(int argc, char **argv)
{
    if (argc < 5)
        return 2;
    http_coding c = strcmp(argv[2], "br") == 0 ? HTTP_CODING_BR : HTTP_CODING_GZIP;
    int level = atoi(argv[3]), n = argc > 5 ? atoi(argv[5]) : 10;
    size_t len;
    char *body = read_body(argv[4], 1, &len);
    if (!body)
        return 2;
    const void *out;
    http_compress(c, level, body, len, &out); /* the thread's coder and buffer, outside the count */
    printf("%s %d %zu -> %zu (x%d)\n", argv[2], level, len, counted(c, level, body, len, n), n);
    free(body);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s BODY [REPEAT] | --defaults FILE... | --count gzip|br LEVEL FILE [N]\n", argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "--defaults") == 0)
        return tie_table(argc - 2, argv + 2);
    if (strcmp(argv[1], "--count") == 0)
        return count_mode(argc, argv);
    int repeat = argc > 2 ? atoi(argv[2]) : 1;
    size_t one;
    char *body = read_body(argv[1], repeat, &one);
    if (!body)
        return 2;
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
