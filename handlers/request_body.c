/* request_body: see request_body.h. */
#include "request_body.h"

#include "http_validate_internal.h"

json_t *request_body_json(http_request *req, bool quiet)
{
    if (!http_request_content_type_is(req, "application/json")) {
        http_respond_problem(req, 415, NULL, "the body must be sent with Content-Type: application/json");
        return NULL;
    }
    return http_request_json_or_answer(req, quiet);
}
