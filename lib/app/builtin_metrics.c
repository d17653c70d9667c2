/* metrics: GET /metrics, built into every app: the Prometheus text exposition of every registered
 * source (engine, worker pool, clients). Rendering sums the loops' own counters; it takes no lock any request path
 * takes. */
#include <stdlib.h>

#include "app_internal.h"
#include "metrics.h"

void metrics_get(http_request *req)
{
    size_t len;
    char *text = metrics_render(&len);
    http_respond_raw(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}
