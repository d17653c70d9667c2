/* http_metrics: see http_metrics_internal.h. */
#include "http_metrics_internal.h"

#include <stdio.h>
#include <string.h>

#include "http_internal.h"

static const int http_metrics_statuses[HTTP_METRICS_STATUS_SLOTS - 5] = {
    200, 201, 204, 304, 400, 404, 405, 408, 413, 414, 415, 417, 422, 429, 431, 500, 501, 502, 503, 504, 505,
};
/* 507 (a full key-value store) and others count under their class. */
static const char *const http_metrics_classes[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

/* Upper bounds in µs; Prometheus wants them in seconds (rendered below). */
static const uint64_t http_metrics_bounds_us[HTTP_METRICS_LATENCY_BUCKETS - 1] = {
    100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000, 100000, 250000, 500000, 1000000, 2500000, 10000000,
};

unsigned http_metrics_status_slot(int status)
{
    for (unsigned i = 0; i < HTTP_METRICS_STATUS_SLOTS - 5; i++)
        if (http_metrics_statuses[i] == status)
            return i;
    int cls = status / 100;
    return HTTP_METRICS_STATUS_SLOTS - 5 + (unsigned)(cls >= 1 && cls <= 5 ? cls - 1 : 4);
}

unsigned http_metrics_latency_bucket(uint64_t us)
{
    unsigned i = 0;
    while (i < HTTP_METRICS_LATENCY_BUCKETS - 1 && us > http_metrics_bounds_us[i])
        i++;
    return i;
}

typedef struct http_metrics_view {
    http_loop *const *loops;
    size_t n;
    const router *router;
} http_metrics_view;

static http_metrics_view http_metrics_current;

static uint64_t http_metrics_load(const uint64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }

/* Route totals summed over loops; the last index is "unmatched" (404, 405, 501 and framing errors). */
static void http_metrics_route_sum(const http_metrics_view *v, size_t route, http_route_stats *out)
{
    memset(out, 0, sizeof(*out));
    for (size_t l = 0; l < v->n; l++) {
        const http_route_stats *s = &v->loops[l]->route_stats[route];
        for (unsigned i = 0; i < HTTP_METRICS_STATUS_SLOTS; i++)
            out->by_status[i] += http_metrics_load(&s->by_status[i]);
        for (unsigned i = 0; i < HTTP_METRICS_LATENCY_BUCKETS; i++)
            out->latency[i] += http_metrics_load(&s->latency[i]);
        out->latency_sum_us += http_metrics_load(&s->latency_sum_us);
    }
}

static const char *http_metrics_route_label(const http_metrics_view *v, size_t route)
{
    const char *name = router_route_name(v->router, route);
    return name ? name : "unmatched";
}

static void http_metrics_render_requests(metrics_writer *w, const http_metrics_view *v)
{
    size_t routes = router_route_count(v->router) + 1;
    metrics_family(w, "apiary_http_requests_total", "counter", "Requests answered, by route and status.");
    for (size_t r = 0; r < routes; r++) {
        http_route_stats sum;
        http_metrics_route_sum(v, r, &sum);
        for (unsigned i = 0; i < HTTP_METRICS_STATUS_SLOTS; i++) {
            if (!sum.by_status[i])
                continue;
            char status[8], labels[256] = "";
            if (i < HTTP_METRICS_STATUS_SLOTS - 5)
                snprintf(status, sizeof(status), "%d", http_metrics_statuses[i]);
            else
                snprintf(status, sizeof(status), "%s", http_metrics_classes[i - (HTTP_METRICS_STATUS_SLOTS - 5)]);
            metrics_label(labels, sizeof(labels), "route", http_metrics_route_label(v, r));
            metrics_label(labels, sizeof(labels), "status", status);
            metrics_sample_u64(w, "apiary_http_requests_total", labels, sum.by_status[i]);
        }
    }
    metrics_family(w, "apiary_http_request_duration_seconds", "histogram",
                   "Time from a request's first byte to its answer being queued, by route.");
    for (size_t r = 0; r < routes; r++) {
        http_route_stats sum;
        http_metrics_route_sum(v, r, &sum);
        uint64_t count = 0;
        for (unsigned i = 0; i < HTTP_METRICS_LATENCY_BUCKETS; i++)
            count += sum.latency[i];
        if (!count)
            continue;
        char route[256] = "";
        metrics_label(route, sizeof(route), "route", http_metrics_route_label(v, r));
        uint64_t cumulative = 0;
        for (unsigned i = 0; i < HTTP_METRICS_LATENCY_BUCKETS; i++) {
            cumulative += sum.latency[i];
            char labels[320], le[32];
            if (i < HTTP_METRICS_LATENCY_BUCKETS - 1)
                snprintf(le, sizeof(le), "%g", (double)http_metrics_bounds_us[i] / 1e6);
            else
                snprintf(le, sizeof(le), "+Inf");
            snprintf(labels, sizeof(labels), "%s,le=\"%s\"", route, le);
            metrics_sample_u64(w, "apiary_http_request_duration_seconds_bucket", labels, cumulative);
        }
        metrics_sample(w, "apiary_http_request_duration_seconds_sum", route, (double)sum.latency_sum_us / 1e6);
        metrics_sample_u64(w, "apiary_http_request_duration_seconds_count", route, count);
    }
}

static void http_metrics_render_loops(metrics_writer *w, const http_metrics_view *v)
{
    http_loop_stats total = {0}, s;
    uint64_t lag[HTTP_LOOP_LAG_BUCKETS] = {0};
    for (size_t l = 0; l < v->n; l++) {
        http_loop_stats_read(v->loops[l], &s);
        total.connections_accepted += s.connections_accepted;
        total.connections_active += s.connections_active;
        total.async_inflight += s.async_inflight;
        total.async_rejected += s.async_rejected;
        total.deadline_expired += s.deadline_expired;
        total.stream_idle_closed += s.stream_idle_closed;
        total.timeouts += s.timeouts;
        total.cancelled += s.cancelled;
        total.half_closed_cancelled += s.half_closed_cancelled;
        total.accept_errors += s.accept_errors;
        total.connections_reclaimed += s.connections_reclaimed;
        total.connections_refused += s.connections_refused;
        total.slow_callbacks += s.slow_callbacks;
        total.background_running += s.background_running;
        total.background_started += s.background_started;
        total.background_refused += s.background_refused;
        total.background_cancelled += s.background_cancelled;
        total.ws_open += s.ws_open;
        total.ws_opened += s.ws_opened;
        total.ws_slow_closed += s.ws_slow_closed;
        total.ws_messages_received += s.ws_messages_received;
        total.ws_messages_sent += s.ws_messages_sent;
        total.coro_given_back += s.coro_given_back;
        for (unsigned i = 0; i < HTTP_LOOP_LAG_BUCKETS; i++)
            lag[i] += s.lag_buckets[i];
        if (s.lag_max_ms > total.lag_max_ms)
            total.lag_max_ms = s.lag_max_ms;
    }
    struct {
        const char *name, *type, *help;
        uint64_t value;
    } rows[] = {
        {"apiary_http_connections_open", "gauge", "Client connections open now.", total.connections_active},
        {"apiary_http_connections_accepted_total", "counter", "Client connections accepted.",
         total.connections_accepted},
        {"apiary_http_requests_in_flight", "gauge", "Requests waiting on asynchronous work now.",
         total.async_inflight},
        {"apiary_http_requests_rejected_total", "counter",
         "Requests refused with 503 because limits.max_async_per_loop was reached.", total.async_rejected},
        {"apiary_http_deadline_expired_total", "counter", "Requests answered 504 at their deadline.",
         total.deadline_expired},
        {"apiary_http_stream_idle_closed_total", "counter",
         "Streamed answers cut off because their producer wrote nothing for timeouts.stream_idle_ms.",
         total.stream_idle_closed},
        {"apiary_http_timeouts_total", "counter", "Connection timeouts (header, body, keep-alive, write, linger).",
         total.timeouts},
        {"apiary_http_cancelled_total", "counter", "Requests whose client left before the answer.",
         total.cancelled},
        {"apiary_http_half_closed_cancelled_total", "counter",
         "Of those, requests cancelled at their client's FIN (half_close \"cancel\") or to give their place "
         "at max_async_per_loop to another request (\"answer\").",
         total.half_closed_cancelled},
        {"apiary_http_accept_errors_total", "counter", "accept(2) failures (EMFILE and others).",
         total.accept_errors},
        {"apiary_http_connections_reclaimed_total", "counter",
         "Idle connections closed to make room for new clients at max_connections.", total.connections_reclaimed},
        {"apiary_http_connections_refused_total", "counter",
         "New clients answered 503 at max_connections because every connection was busy.",
         total.connections_refused},
        {"apiary_loop_slow_callbacks_total", "counter", "Callbacks that blocked a loop beyond slow_callback_ms.",
         total.slow_callbacks},
        {"apiary_background_tasks_running", "gauge", "Background tasks (http_background_start) running now.",
         total.background_running},
        {"apiary_background_tasks_started_total", "counter", "Background tasks started.", total.background_started},
        {"apiary_background_tasks_refused_total", "counter",
         "Background tasks refused at limits.max_background_per_loop or while draining.", total.background_refused},
        {"apiary_background_tasks_cancelled_total", "counter",
         "Background tasks cancelled because they had not finished when the drain timeout came.",
         total.background_cancelled},
        {"apiary_websocket_connections_open", "gauge", "WebSocket connections open now.", total.ws_open},
        {"apiary_websocket_connections_total", "counter", "WebSocket connections upgraded.", total.ws_opened},
        {"apiary_websocket_slow_consumers_closed_total", "counter",
         "WebSocket connections closed with 1008 because their send queue passed websocket.send_queue_bytes.",
         total.ws_slow_closed},
        {"apiary_websocket_messages_received_total", "counter", "WebSocket messages received.",
         total.ws_messages_received},
        {"apiary_websocket_messages_sent_total", "counter", "WebSocket messages queued to send.",
         total.ws_messages_sent},
        {"apiary_coroutine_stacks_given_back_total", "counter",
         "Coroutine stacks given back (copied to the heap) during a long async_await_idle.",
         total.coro_given_back},
        {"apiary_loops", "gauge", "Event loops (threads) serving requests.", (uint64_t)v->n},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        metrics_family(w, rows[i].name, rows[i].type, rows[i].help);
        metrics_sample_u64(w, rows[i].name, NULL, rows[i].value);
    }
    metrics_family(w, "apiary_loop_lag_seconds", "histogram",
                   "How late each loop's 100 ms probe timer fired: time the loop was busy elsewhere.");
    uint64_t cumulative = 0, count = 0;
    for (unsigned i = 0; i < HTTP_LOOP_LAG_BUCKETS; i++)
        count += lag[i];
    for (unsigned i = 0; i < HTTP_LOOP_LAG_BUCKETS; i++) {
        cumulative += lag[i];
        char labels[32];
        if (i < HTTP_LOOP_LAG_BUCKETS - 1)
            snprintf(labels, sizeof(labels), "le=\"%g\"", HTTP_LOOP_LAG_BOUNDS_MS[i] / 1000.0);
        else
            snprintf(labels, sizeof(labels), "le=\"+Inf\"");
        metrics_sample_u64(w, "apiary_loop_lag_seconds_bucket", labels, cumulative);
    }
    /* The probe only knows the bucket of each sample: the sum uses bucket lower bounds (a floor). */
    double sum = 0;
    for (unsigned i = 1; i < HTTP_LOOP_LAG_BUCKETS; i++)
        sum += (double)lag[i] * HTTP_LOOP_LAG_BOUNDS_MS[i - 1] / 1000.0;
    metrics_sample(w, "apiary_loop_lag_seconds_sum", NULL, sum);
    metrics_sample_u64(w, "apiary_loop_lag_seconds_count", NULL, count);
    metrics_family(w, "apiary_loop_lag_max_seconds", "gauge", "Largest loop lag seen since start.");
    metrics_sample(w, "apiary_loop_lag_max_seconds", NULL, (double)total.lag_max_ms / 1000.0);
}

static void http_metrics_source(metrics_writer *w, void *arg)
{
    const http_metrics_view *v = arg;
    metrics_family(w, "apiary_build_info", "gauge", "Build information; the value is always 1.");
    metrics_sample_u64(w, "apiary_build_info", "version=\"" APIARY_VERSION "\"", 1);
    http_metrics_render_requests(w, v);
    http_metrics_render_loops(w, v);
}

http_loop *const *http_metrics_loops(size_t *n)
{
    *n = http_metrics_current.n;
    return http_metrics_current.loops;
}

void http_metrics_register(http_loop *const *loops, size_t n, const router *r)
{
    http_metrics_current = (http_metrics_view){loops, n, r};
    metrics_add_source(http_metrics_source, &http_metrics_current);
}
