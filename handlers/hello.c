/* hello: the TechEmpower JSON test. The body is built and serialized per request on purpose: it is
 * the benchmark of the whole request path, not of a cached byte string. */
#include "handlers.h"

void hello_get(http_request *req)
{
    json_t *body = json_object();
    json_object_set_new(body, "message", json_string("Hello, World!"));
    http_respond_json(req, 200, body);
}
