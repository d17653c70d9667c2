/* http_metrics: what the engine counts for /metrics — requests by route and status, a latency
 * histogram per route, connections, requests in flight, loop lag — kept per loop by the loop's own
 * thread (plain relaxed stores, no locks, no shared cache lines between loops) and summed across loops
 * only when /metrics is rendered. */
#ifndef APIARY_HTTP_METRICS_H
#define APIARY_HTTP_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "http_loop_internal.h"
#include "metrics.h"
#include "router.h"

/* Exact statuses get their own label; anything else is counted under its class ("4xx"). */
#define HTTP_METRICS_STATUS_SLOTS 26
#define HTTP_METRICS_LATENCY_BUCKETS 16 /* the last one is +Inf */

typedef struct http_route_stats {
    uint64_t by_status[HTTP_METRICS_STATUS_SLOTS];
    uint64_t latency[HTTP_METRICS_LATENCY_BUCKETS]; /* per bucket, not cumulative */
    uint64_t latency_sum_us;
} http_route_stats;

/* The slot of a status in by_status. */
unsigned http_metrics_status_slot(int status);
/* The bucket of a latency in microseconds. */
unsigned http_metrics_latency_bucket(uint64_t us);

/* The loops registered (for other modules' sources, which sum per-loop counters). */
http_loop *const *http_metrics_loops(size_t *n);

/* Registers the engine's metrics source for these loops (start-up, before the loops run). The array
 * and the router must outlive every render. */
void http_metrics_register(http_loop *const *loops, size_t n, const router *r);

#endif
