/* request_body: see request_body.h. */
#include "request_body.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

json_t *request_body_json(http_request *req, bool quiet)
{
    if (!http_request_content_type_is(req, "application/json")) {
        http_respond_problem(req, 415, NULL, "the body must be sent with Content-Type: application/json");
        return NULL;
    }
    json_error_t err;
    json_t *body = http_request_json(req, &err);
    if (!body) {
        if (quiet)
            http_respond_problem(req, 400, NULL, "invalid JSON at line %d, column %d", err.line, err.column);
        else
            http_respond_problem(req, 400, NULL, "invalid JSON at line %d, column %d: %s", err.line, err.column,
                                 err.text);
        return NULL;
    }
    return body;
}

json_t *request_body_object(http_request *req, const char *const *members, bool quiet)
{
    json_t *body = request_body_json(req, quiet);
    if (!body)
        return NULL;
    if (!json_is_object(body)) {
        /* No "field": there is no member to name, the document itself has the wrong shape. */
        http_respond_problem(req, 422, NULL, "the body must be a JSON object");
        return NULL;
    }
    const char *key;
    json_t *value;
    json_object_foreach(body, key, value) {
        bool known = false;
        for (size_t i = 0; members[i] && !known; i++)
            known = strcmp(key, members[i]) == 0;
        if (!known) {
            char list[256] = "";
            for (size_t i = 0; members[i]; i++)
                snprintf(list + strlen(list), sizeof(list) - strlen(list), "%s%s", i ? ", " : "", members[i]);
            request_body_reject(req, 422, key, "is not a member of the body (%s)", list);
            return NULL;
        }
    }
    return body;
}

void request_body_reject(http_request *req, int status, const char *field, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    http_respond_problem(req, status, json_pack("{s:s}", "field", field), "%.100s %s", field, why);
}
