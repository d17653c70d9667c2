/* http_client_metrics: the HTTP client's counters on /metrics, summed over the loops (each loop's client
 * counts for itself; see http_client_stats). */
#include "http_client.h"
#include "http_metrics_internal.h"
#include "metrics.h"

#include <stdio.h>
#include <string.h>

void http_client_metrics_source(metrics_writer *w, void *arg)
{
    (void)arg;
    size_t n;
    http_loop *const *loops = http_metrics_loops(&n);
    http_client_stats total, s;
    memset(&total, 0, sizeof(total));
    for (size_t l = 0; l < n; l++) {
        http_client_stats_read(loops[l], &s);
        const uint64_t *src = (const uint64_t *)&s;
        uint64_t *dst = (uint64_t *)&total;
        for (size_t i = 0; i < sizeof(s) / sizeof(uint64_t); i++)
            dst[i] += src[i];
    }
    struct {
        const char *name, *type, *help;
        uint64_t value;
    } rows[] = {
        {"apiary_upstream_requests_total", "counter", "Calls to upstream services started.", total.requests},
        {"apiary_upstream_responses_total", "counter", "Calls that got a response (any status).", total.responses},
        {"apiary_upstream_cancelled_total", "counter", "Calls abandoned by their caller.", total.cancelled},
        {"apiary_upstream_retries_total", "counter", "Extra attempts (the upstream's retries setting).",
         total.retries},
        {"apiary_upstream_stale_retries_total", "counter", "Calls moved to a fresh connection after a dead one.",
         total.stale_retries},
        {"apiary_upstream_connections_opened_total", "counter", "Upstream connections opened.",
         total.connections_opened},
        {"apiary_upstream_connections_reused_total", "counter", "Calls served by an idle pooled connection.",
         total.connections_reused},
        {"apiary_upstream_connections_open", "gauge", "Upstream connections that exist now.",
         total.connections_open},
        {"apiary_upstream_pool_waits_total", "counter", "Calls that waited for a pooled connection.",
         total.pool_waits},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        metrics_family(w, rows[i].name, rows[i].type, rows[i].help);
        metrics_sample_u64(w, rows[i].name, NULL, rows[i].value);
    }
    metrics_family(w, "apiary_upstream_errors_total", "counter", "Failed upstream calls, by kind.");
    for (int k = 0; k < HTTP_CLIENT_ERR_COUNT; k++) {
        char labels[64] = "";
        metrics_label(labels, sizeof(labels), "kind", http_client_error_name((http_client_error)k));
        metrics_sample_u64(w, "apiary_upstream_errors_total", labels, total.errors[k]);
    }
}
