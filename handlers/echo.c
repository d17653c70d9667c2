/* echo: returns the JSON body it was sent. Shows the input checks every JSON endpoint makes: the
 * media type (415) and the syntax, with jansson's position of the error (400). */
#include "handlers.h"

void echo_post(http_request *req)
{
    if (!http_request_content_type_is(req, "application/json")) {
        http_respond_problem(req, 415, NULL, "the body must be sent with Content-Type: application/json");
        return;
    }
    json_error_t err;
    json_t *body = http_request_json(req, &err);
    if (!body) {
        http_respond_problem(req, 400, NULL, "invalid JSON at line %d, column %d: %s", err.line, err.column,
                             err.text);
        return;
    }
    http_respond_json(req, 200, json_incref(body)); /* the request keeps its own reference */
}
