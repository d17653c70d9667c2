/* redis_metrics: the Redis client's counters on /metrics (process-wide sums, see redis_stats). */
#include "metrics.h"
#include "redis.h"

void redis_metrics_source(metrics_writer *w, void *arg)
{
    (void)arg;
    redis_stats s;
    redis_stats_read(&s);
    struct {
        const char *name, *type, *help;
        uint64_t value;
    } rows[] = {
        {"apiary_redis_commands_total", "counter", "Commands written to Redis.", s.commands},
        {"apiary_redis_inflight", "gauge", "Commands written whose reply has not come yet.", s.inflight},
        {"apiary_redis_replies_dropped_total", "counter", "Replies that came after their request had gone.",
         s.replies_dropped},
        {"apiary_redis_connects_total", "counter", "Links established.", s.connects},
        {"apiary_redis_connect_failures_total", "counter", "Connection attempts refused or timed out.",
         s.connect_failures},
        {"apiary_redis_disconnects_total", "counter", "Established links lost.", s.disconnects},
        {"apiary_redis_reconnects_total", "counter", "Links re-established after a loss or a failure.",
         s.reconnects},
        {"apiary_redis_links_up", "gauge", "Links connected now.", s.links_up},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        metrics_family(w, rows[i].name, rows[i].type, rows[i].help);
        metrics_sample_u64(w, rows[i].name, NULL, rows[i].value);
    }
    metrics_family(w, "apiary_redis_errors_total", "counter", "Failed Redis operations, by kind.");
    metrics_sample_u64(w, "apiary_redis_errors_total", "kind=\"unavailable\"", s.errors_unavailable);
    metrics_sample_u64(w, "apiary_redis_errors_total", "kind=\"timeout\"", s.errors_timeout);
    metrics_sample_u64(w, "apiary_redis_errors_total", "kind=\"connection_lost\"", s.errors_connection_lost);
    metrics_sample_u64(w, "apiary_redis_errors_total", "kind=\"reply\"", s.errors_reply);
}
