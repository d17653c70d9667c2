/* echo: returns the JSON body it was sent. Shows the input checks every JSON endpoint makes: the
 * media type (415) and the syntax, with jansson's position of the error (400). */
#include "handlers.h"
#include "request_body.h"

void echo_post(http_request *req)
{
    json_t *body = request_body_json(req, false);
    if (body)
        http_respond_json(req, 200, json_incref(body)); /* the request keeps its own reference */
}
