/* http_validate: a request checked against its route's schema (router.h: route_schema) before the
 * handler runs, and the answers for a body that cannot be read, shared with handlers that read their
 * body themselves. Not installed. */
#ifndef APIARY_HTTP_VALIDATE_H
#define APIARY_HTTP_VALIDATE_H

#include <stdbool.h>

#include "http_request.h"
#include "router.h"

/* Validates the request's path parameters, query, headers and JSON body against rs, binds them into a
 * fresh input struct (http_request_input) and returns true; or answers and returns false: 400 for a
 * malformed body (with line and column), 413 past the JSON limits, 422 problem+json listing every
 * violation ("errors") otherwise. rs NULL: true, nothing bound. */
bool http_request_validate(http_request *req, const route_schema *rs);

/* The parsed body, or NULL after answering 400 (empty, or malformed: line and column, plus the
 * parser's text unless `quiet`, since it quotes the input) or 413 (past limits.json_max_*). */
json_t *http_request_json_or_answer(http_request *req, bool quiet);

#endif
