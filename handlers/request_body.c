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
        /* Valid JSON past what this API holds, and refusals whose parser text would not say why, in
         * the API's own words. */
        const char *why = NULL;
        switch (json_error_code(&err)) {
        case json_error_numeric_overflow:
            why = strstr(err.text, "integer") ? "the JSON integer is outside the 64-bit range this API stores "
                                                "(-9223372036854775808 to 9223372036854775807)"
                                              : "the JSON number is outside the range of a 64-bit float (about 1.8e308)";
            break;
        case json_error_null_byte_in_key: why = "a JSON member name contains U+0000, which this API does not accept"; break;
        case json_error_duplicate_key: why = "a member name appears twice in one JSON object"; break;
        default: break;
        }
        if (err.line == HTTP_JSON_TOO_LARGE)
            http_respond_problem(req, 413, NULL, "%s", err.text);
        else if (why)
            http_respond_problem(req, 400, NULL, "at line %d, column %d: %s", err.line, err.column, why);
        else if (quiet)
            http_respond_problem(req, 400, NULL, "invalid JSON at line %d, column %d", err.line, err.column);
        else
            http_respond_problem(req, 400, NULL, "invalid JSON at line %d, column %d: %s", err.line, err.column,
                                 err.text);
        return NULL;
    }
    return body;
}

/* True when a string anywhere in v holds U+0000. The body is within limits.json_max_depth, so the
 * recursion is bounded. */
static bool request_body_has_nul(const json_t *v)
{
    if (json_is_string(v))
        return memchr(json_string_value(v), '\0', json_string_length(v)) != NULL;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v); i++)
            if (request_body_has_nul(json_array_get(v, i)))
                return true;
    } else if (json_is_object(v)) {
        const char *key;
        json_t *member;
        json_object_foreach((json_t *)v, key, member)
            if (request_body_has_nul(member))
                return true;
    }
    return false;
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
        /* Endpoints that read their members take C strings: a NUL would cut a password or a path
         * short without anyone noticing, so it is refused, not truncated. */
        if (request_body_has_nul(value)) {
            request_body_reject(req, 422, key, "must not contain the character U+0000");
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
