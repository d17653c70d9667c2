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
    if (req->body_len == 0) {
        http_respond_problem(req, 400, NULL, "the body must be a JSON value; it is empty");
        return NULL;
    }
    json_error_t err;
    json_t *body = http_request_json(req, &err);
    if (!body) {
        if (err.line == HTTP_JSON_TOO_LARGE)
            http_respond_problem(req, 413, NULL, "%s", err.text);
        else if (quiet)
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

/* Member names come from the client: what is echoed back of one is cut to REQUEST_BODY_FIELD_MAX bytes,
 * at a UTF-8 character boundary so the cut string is still valid JSON text. */
#define REQUEST_BODY_FIELD_MAX 100

void request_body_reject(http_request *req, int status, const char *field, const char *fmt, ...)
{
    char why[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, sizeof(why), fmt, ap);
    va_end(ap);
    size_t len = strlen(field);
    if (len > REQUEST_BODY_FIELD_MAX) {
        len = REQUEST_BODY_FIELD_MAX;
        while (len > 0 && ((unsigned char)field[len] & 0xC0) == 0x80)
            len--; /* do not split a multi-byte character */
    }
    http_respond_problem(req, status, json_pack("{s:s%}", "field", field, len), "%.*s %s", (int)len, field, why);
}
