/* metrics: Prometheus text exposition (format 0.0.4) for GET /metrics. Modules register a source once
 * at start-up (the engine, the worker pool, the HTTP client, Redis); rendering runs every source and
 * reads counters that each loop or worker keeps for itself with relaxed atomics, so the hot path never
 * takes a lock for metrics. Rendering itself is not hot: it allocates freely.
 *
 * Ownership: a source's `arg` stays the registrant's and must live until metrics_clear_sources (the
 * end of the process); the writer a source gets is valid only during its call. */
#ifndef APIARY_METRICS_H
#define APIARY_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct metrics_writer metrics_writer;

/* Writes the # HELP and # TYPE lines of a family ("counter", "gauge", "histogram"). */
void metrics_family(metrics_writer *w, const char *name, const char *type, const char *help);
/* Writes one sample. `labels` is NULL or pre-formatted label pairs without braces, values escaped with
 * metrics_label (e.g. "route=\"GET /v1/hello\",status=\"200\""). */
void metrics_sample(metrics_writer *w, const char *name, const char *labels, double value);
void metrics_sample_u64(metrics_writer *w, const char *name, const char *labels, uint64_t value);
/* Appends `key="value"` (with a leading comma when `out` is not empty) to a label buffer, escaping
 * backslash, double quote and newline as the format requires. Truncates safely at cap. */
void metrics_label(char *out, size_t cap, const char *key, const char *value);

typedef void (*metrics_source_fn)(metrics_writer *w, void *arg);
/* Registers a source; start-up only (before loops run). Sources render in registration order. */
void metrics_add_source(metrics_source_fn fn, void *arg);
/* Forgets every source (shutdown, tests). */
void metrics_clear_sources(void);
/* Renders every source; returns a malloc'd text the caller frees, its length in *len. */
char *metrics_render(size_t *len);

#endif
