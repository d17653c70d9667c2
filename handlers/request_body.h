/* request_body: the checks every JSON endpoint makes on its body, in one place so every endpoint
 * answers the same way: 415 unless the media type is application/json, 400 for an empty body or with
 * the position of a syntax error, 413 past the JSON limits (limits.json_max_depth/_values), 422 for a body of the wrong shape or an unknown member, and 422 (or another status)
 * naming the offending member in a "field" extension member. */
#ifndef APIARY_REQUEST_BODY_H
#define APIARY_REQUEST_BODY_H

#include <stdbool.h>

#include "http_request.h"

/* The parsed body, any JSON value (the request keeps the reference), or NULL after answering 415, 400
 * or 413. With `quiet`
 * the 400 gives only line and column: jansson's text quotes the input near the error, and some inputs
 * (passwords) must never be echoed. */
json_t *request_body_json(http_request *req, bool quiet);

/* Like request_body_json, and the body must be an object whose members are all in `members` (a NULL-
 * terminated list): else 422, naming the first unknown member. A string holding U+0000 anywhere in a
 * member is refused too (422 naming the member): these endpoints read C strings. */
json_t *request_body_object(http_request *req, const char *const *members, bool quiet);

/* Answers `status` naming `field` in the "field" member and in the detail ("<field> <why>"). Field names
 * can come from the client, so both show at most 100 bytes of one. */
void request_body_reject(http_request *req, int status, const char *field, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

#endif
