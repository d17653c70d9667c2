/* health: liveness and readiness probes for load balancers and orchestrators. /healthz says the
 * process is serving; /readyz says it wants new traffic, and turns 503 while the server drains. */
#include "handlers.h"
#include "http_loop.h"

void health_live(http_request *req) { http_respond_json(req, 200, json_pack("{s:s}", "status", "ok")); }

void health_ready(http_request *req)
{
    if (http_loop_draining(http_request_loop(req))) {
        http_response_header(req, "Retry-After", "5");
        http_respond_problem(req, 503, NULL, "the server is shutting down");
        return;
    }
    http_respond_json(req, 200, json_pack("{s:s}", "status", "ready"));
}
