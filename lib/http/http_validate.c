/* http_validate: see http_validate_internal.h. Every part of the request is checked before anything is
 * answered, so one 422 lists what is wrong with the path, the query, the headers and the body
 * together; only a body that is not JSON at all stops early (there is nothing to check in it). */
#include "http_validate_internal.h"

#include <string.h>
#include <strings.h>

#include "http_internal.h"
#include "json_compact_internal.h"
#include "json_write_internal.h"

json_t *http_request_json_or_answer(http_request *req, bool quiet)
{
    if (req->body_len == 0) {
        http_respond_problem(req, 400, NULL, "the body must be a JSON value; it is empty");
        return NULL;
    }
    json_error_t err;
    json_t *body = http_request_json(req, &err);
    if (body)
        return body;
    /* Valid JSON past what this API holds, and refusals whose parser text would not say why, in the
     * API's own words. */
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
        http_respond_problem(req, 400, NULL, "invalid JSON at line %d, column %d: %s", err.line, err.column, err.text);
    return NULL;
}

/* The body as compact JSON text in the request's arena: json_compact's one pass when it can, else the
 * parser (and its answer to a bad body, exactly as for a parsed body) and json_write. */
static bool http_request_json_text(http_request *req, bool quiet, route_body_text *out)
{
    const http_settings *s = req->_conn->loop->settings;
    size_t cap = json_compact_cap(req->body_len);
    char *text = arena_alloc(&req->arena, cap);
    size_t n = json_compact(req->body, req->body_len, text, cap, s->json_max_depth, s->json_max_values);
    if (n != JSON_COMPACT_FALLBACK) {
        *out = (route_body_text){text, n};
        return true;
    }
    json_t *tree = http_request_json_or_answer(req, quiet);
    if (!tree)
        return false;
    buf b = {0};
    buf_cache no_cache = {0};
    if (!json_write(&b, &no_cache, tree, NULL)) { /* cannot happen: the parser made it from valid text */
        buf_release(&b, &no_cache);
        http_respond_problem(req, 500, NULL, "the body could not be written as JSON");
        return false;
    }
    char *copy = arena_alloc(&req->arena, b.len);
    memcpy(copy, b.data, b.len);
    *out = (route_body_text){copy, b.len};
    buf_release(&b, &no_cache);
    return true;
}

/* Every value of query parameter `name`, in order, into values (at most cap); returns how many. */
static size_t http_validate_query(const http_request *req, const char *name, const char **values, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; i < req->query_count && n < cap; i++) /* the first byte rules most pairs out */
        if (req->query[i].name[0] == name[0] && strcmp(req->query[i].name, name) == 0)
            values[n++] = req->query[i].value;
    return n;
}

bool http_request_validate(http_request *req, const route_schema *rs)
{
    if (!rs)
        return true;
    /* A body that is not JSON is refused before anything else: its problem is not a value's. */
    json_t *body = NULL;
    route_body_text body_text = {0};
    bool as_text = rs->body && rs->body_text_at && rs->body->type == SCHEMA_T_ANY;
    if (rs->body && req->body_len) {
        if (as_text ? !http_request_json_text(req, rs->quiet_body_errors, &body_text)
                    : !(body = http_request_json_or_answer(req, rs->quiet_body_errors)))
            return false;
    }
    void *input = NULL;
    if (rs->input_size) {
        input = arena_alloc(&req->arena, rs->input_size);
        if (rs->defaults)
            memcpy(input, rs->defaults, rs->input_size);
        else
            memset(input, 0, rs->input_size);
    }
    schema_errors errs;
    schema_errors_init(&errs, &req->arena, "path");
    for (const schema_member *m = rs->path; m && m->name; m++) {
        const char *v = http_request_param(req, m->name);
        schema_bind_text(m, &v, v ? 1 : 0, input, &errs);
    }
    errs.in = "query";
    for (const schema_member *m = rs->query; m && m->name; m++) {
        /* The query holds at most HTTP_MAX_QUERY_PAIRS pairs (the engine refuses more). */
        const char *values[256];
        size_t n = http_validate_query(req, m->name, values, sizeof(values) / sizeof(values[0]));
        schema_bind_text(m, values, n, input, &errs);
    }
    errs.in = "header";
    for (const schema_member *m = rs->header; m && m->name; m++) {
        const char *v = http_request_header(req, m->name);
        schema_bind_text(m, &v, v ? 1 : 0, input, &errs);
    }
    errs.in = "body";
    if (rs->body && !body && !body_text.text)
        schema_errors_add(&errs, "", "is required: send a JSON body");
    else if (as_text && input)
        memcpy((char *)input + rs->body_text_at - 1, &body_text, sizeof(body_text));
    else if (rs->body && rs->body->type == SCHEMA_T_OBJECT)
        schema_bind(rs->body, body, input, "", &errs);
    else if (rs->body)
        schema_bind(rs->body, body, input && rs->body_at ? (char *)input + rs->body_at - 1 : NULL, "", &errs);
    if (errs.count == 0 && rs->check)
        rs->check(req, input, &errs);
    if (errs.count) {
        char detail[512];
        json_t *extra = schema_errors_json(&errs, detail, sizeof(detail));
        http_respond_problem(req, 422, extra, "%s", detail);
        return false;
    }
    req->_input = input;
    return true;
}
