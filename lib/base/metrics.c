/* metrics: see metrics.h. */
#include "metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc_internal.h"

#define METRICS_MAX_SOURCES 16

struct metrics_writer {
    char *data;
    size_t len, cap;
};

typedef struct metrics_source {
    metrics_source_fn fn;
    void *arg;
} metrics_source;

static metrics_source metrics_sources[METRICS_MAX_SOURCES];
static size_t metrics_source_count;

static void metrics_append(metrics_writer *w, const char *s, size_t n)
{
    if (w->cap - w->len < n + 1) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap - w->len < n + 1)
            cap *= 2;
        w->data = xrealloc(w->data, cap);
        w->cap = cap;
    }
    memcpy(w->data + w->len, s, n);
    w->len += n;
    w->data[w->len] = '\0';
}

static void metrics_printf(metrics_writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void metrics_printf(metrics_writer *w, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, ap);
    va_end(ap);
    if (n > 0)
        metrics_append(w, line, (size_t)n < sizeof(line) ? (size_t)n : sizeof(line) - 1);
}

void metrics_family(metrics_writer *w, const char *name, const char *type, const char *help)
{
    metrics_printf(w, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

void metrics_sample(metrics_writer *w, const char *name, const char *labels, double value)
{
    if (labels && *labels)
        metrics_printf(w, "%s{%s} %.9g\n", name, labels, value);
    else
        metrics_printf(w, "%s %.9g\n", name, value);
}

void metrics_sample_u64(metrics_writer *w, const char *name, const char *labels, uint64_t value)
{
    if (labels && *labels)
        metrics_printf(w, "%s{%s} %" PRIu64 "\n", name, labels, value);
    else
        metrics_printf(w, "%s %" PRIu64 "\n", name, value);
}

void metrics_label(char *out, size_t cap, const char *key, const char *value)
{
    size_t len = strlen(out);
    int n = snprintf(out + len, cap - len, "%s%s=\"", len ? "," : "", key);
    if (n < 0 || (size_t)n >= cap - len)
        return;
    len += (size_t)n;
    for (const char *p = value; *p && len + 3 < cap; p++) {
        if (*p == '\\' || *p == '"') {
            out[len++] = '\\';
            out[len++] = *p;
        } else if (*p == '\n') {
            out[len++] = '\\';
            out[len++] = 'n';
        } else {
            out[len++] = *p;
        }
    }
    if (len + 2 <= cap) {
        out[len++] = '"';
        out[len] = '\0';
    } else {
        out[cap - 1] = '\0';
    }
}

void metrics_add_source(metrics_source_fn fn, void *arg)
{
    if (metrics_source_count < METRICS_MAX_SOURCES)
        metrics_sources[metrics_source_count++] = (metrics_source){fn, arg};
}

void metrics_clear_sources(void) { metrics_source_count = 0; }

char *metrics_render(size_t *len)
{
    metrics_writer w = {0};
    metrics_append(&w, "", 0);
    for (size_t i = 0; i < metrics_source_count; i++)
        metrics_sources[i].fn(&w, metrics_sources[i].arg);
    *len = w.len;
    return w.data;
}
