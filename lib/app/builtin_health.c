/* health: liveness and readiness probes for load balancers and orchestrators, built into every app.
 * /healthz says the process is serving; /readyz says it wants new traffic, and turns 503 from SIGTERM
 * on (through drain_delay_ms, while the listener is still open, and then while the server drains),
 * while the MariaDB SQL backend has no connection up on this loop, or while the app's readiness check
 * (apiary_app_ready_check) says no. Answers name no address: any client may ask, and
 * where the database or Redis lives is for the operator's log. */
#include <stdatomic.h>

#include "app_internal.h"
#include "http_loop_internal.h"
#include "sql.h"

void health_live(http_request *req) { http_respond_json(req, 200, json_pack("{s:s}", "status", "ok")); }

/* Set by the main thread on SIGTERM, read by every loop: one flag for the process, since a loop only
 * learns of the drain through its post queue, and during drain_delay_ms no loop drains at all. */
static atomic_bool health_stopping;

void health_set_stopping(bool stopping) { atomic_store(&health_stopping, stopping); }

void health_ready(http_request *req)
{
    http_loop *loop = http_request_loop(req);
    if (atomic_load(&health_stopping) || http_loop_draining(loop)) {
        http_response_header(req, "Retry-After", "5");
        http_respond_problem(req, 503, NULL, "the server is shutting down");
        return;
    }
    /* SQLite is always ready; MariaDB is not until the schema is in place and this loop has a
     * connection up (the reason is logged by the driver). */
    if (!sql_ready(loop)) {
        http_response_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, NULL, "the database is unavailable");
        return;
    }
    if (app_ready_check(req))
        return; /* the app answered, or will */
    http_respond_json(req, 200, json_pack("{s:s}", "status", "ready"));
}
