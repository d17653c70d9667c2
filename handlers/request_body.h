/* request_body: the body of an endpoint that takes any JSON and declares no schema (echo): 415 unless
 * the media type is application/json, 400 for an empty body or with the position of a syntax error,
 * 413 past the JSON limits (limits.json_max_depth/_values). Endpoints with a shape declare it instead
 * (docs/schemas.md): the engine then checks it and answers 422 listing every violation. */
#ifndef APIARY_REQUEST_BODY_H
#define APIARY_REQUEST_BODY_H

#include <stdbool.h>

#include "http_request.h"

/* The parsed body, any JSON value (the request keeps the reference), or NULL after answering 415, 400
 * or 413. With `quiet` the 400 gives only line and column: jansson's text quotes the input near the
 * error, and some inputs must never be echoed. */
json_t *request_body_json(http_request *req, bool quiet);

#endif
