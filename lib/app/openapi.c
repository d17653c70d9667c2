/* openapi: the app's OpenAPI 3.1 document, generated from the route table and the routes' schemas
 * (docs/schemas.md), so what is documented is what is validated. Every operation lists its declared
 * parameters (a route without a schema gets its path parameters as strings; an optional one shows its
 * ROUTE_INPUT default as "default", as a body member does), its JSON body, the answers
 * it declares, and the problem+json answers the engine itself may give it: 400 (a malformed request or
 * body), 404 (a path parameter that names nothing), 413/415 (a JSON body too large or of another media
 * type), 422 (a request breaking the schema, with its errors), 429 (rate limits), 503 (busy, draining)
 * and 504 (past the request's deadline). */
#include "openapi_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

static const char *const openapi_problem_refs[][2] = {
    {"400", "BadRequest"},       {"404", "NotFound"},    {"413", "ContentTooLarge"}, {"415", "UnsupportedMediaType"},
    {"422", "Invalid"},          {"429", "TooManyRequests"}, {"503", "Unavailable"}, {"504", "Timeout"},
};

static json_t *openapi_ref(const char *kind, const char *name)
{
    char ref[96];
    snprintf(ref, sizeof(ref), "#/components/%s/%s", kind, name);
    return json_pack("{s:s}", "$ref", ref);
}

static void openapi_add_problem(json_t *responses, const char *status)
{
    for (size_t i = 0; i < sizeof(openapi_problem_refs) / sizeof(openapi_problem_refs[0]); i++)
        if (strcmp(openapi_problem_refs[i][0], status) == 0 && !json_object_get(responses, status))
            json_object_set_new(responses, status, openapi_ref("responses", openapi_problem_refs[i][1]));
}

static json_t *openapi_json_content(json_t *schema)
{
    return json_pack("{s:{s:o}}", "application/json", "schema", schema);
}

/* A declared parameter; `defaults` is the route's ROUTE_INPUT struct (or NULL), whose value for an
 * optional one is its schema's "default", where OpenAPI 3.1 puts it. */
static json_t *openapi_parameter(const schema_member *m, const char *in, const void *defaults)
{
    json_t *schema = schema_to_json(m->schema);
    json_t *dflt = schema_member_default(m, defaults);
    if (dflt)
        json_object_set_new(schema, "default", dflt);
    json_t *p = json_pack("{s:s,s:s,s:b,s:o}", "name", m->name, "in", in, "required",
                          strcmp(in, "path") == 0 || (m->flags & SCHEMA_MEMBER_REQUIRED), "schema", schema);
    if (m->description)
        json_object_set_new(p, "description", json_string(m->description));
    return p;
}

/* Is {name} a path member the schema declares? */
static bool openapi_declared(const schema_member *path, const char *name, size_t len)
{
    for (const schema_member *m = path; m && m->name; m++)
        if (strlen(m->name) == len && strncmp(m->name, name, len) == 0)
            return true;
    return false;
}

static json_t *openapi_parameters(const openapi_route *r)
{
    json_t *params = json_array();
    const route_schema *rs = r->schema;
    if (rs)
        for (const schema_member *m = rs->path; m && m->name; m++)
            json_array_append_new(params, openapi_parameter(m, "path", rs->defaults));
    /* Path parameters the schema does not declare (or every one, without a schema): strings. */
    for (const char *p = strchr(r->pattern, '{'); p; p = strchr(p + 1, '{')) {
        const char *end = strchr(p, '}');
        if (!end)
            break;
        if (!rs || !openapi_declared(rs->path, p + 1, (size_t)(end - p - 1)))
            json_array_append_new(params, json_pack("{s:s%,s:s,s:b,s:{s:s}}", "name", p + 1, (size_t)(end - p - 1),
                                                    "in", "path", "required", 1, "schema", "type", "string"));
    }
    if (rs) {
        for (const schema_member *m = rs->query; m && m->name; m++)
            json_array_append_new(params, openapi_parameter(m, "query", rs->defaults));
        for (const schema_member *m = rs->header; m && m->name; m++)
            json_array_append_new(params, openapi_parameter(m, "header", rs->defaults));
    }
    return params;
}

/* The body's schema; an object body binds into the input struct, so its members' defaults are there. */
static json_t *openapi_body(const route_schema *rs)
{
    return schema_to_json_defaults(rs->body, rs->body->type == SCHEMA_T_OBJECT ? rs->defaults : NULL);
}

static json_t *openapi_operation(const openapi_route *r)
{
    char id[160];
    size_t n = (size_t)snprintf(id, sizeof(id), "%s", http_method_name(r->method));
    for (size_t i = 0; i < n; i++)
        id[i] = (char)tolower((unsigned char)id[i]);
    for (const char *p = r->pattern; *p && n + 1 < sizeof(id); p++)
        if (isalnum((unsigned char)*p))
            id[n++] = *p;
        else if (id[n - 1] != '_')
            id[n++] = '_';
    while (n > 0 && id[n - 1] == '_')
        n--;
    id[n] = '\0';

    const route_schema *rs = r->schema;
    json_t *op = json_pack("{s:s}", "operationId", id);
    if (rs && rs->summary)
        json_object_set_new(op, "summary", json_string(rs->summary));
    if (r->tag)
        json_object_set_new(op, "tags", json_pack("[s]", r->tag));
    json_t *params = openapi_parameters(r);
    if (json_array_size(params))
        json_object_set_new(op, "parameters", params);
    else
        json_decref(params);
    bool body = (r->flags & ROUTE_BODY_JSON) || (rs && rs->body);
    if (body)
        json_object_set_new(op, "requestBody",
                            json_pack("{s:b,s:o}", "required", 1, "content",
                                      openapi_json_content(rs && rs->body ? openapi_body(rs) : json_object())));

    json_t *responses = json_object();
    if (rs && rs->responses) {
        for (const route_response *a = rs->responses; a->status; a++) {
            char status[8];
            snprintf(status, sizeof(status), "%d", a->status);
            json_t *resp = json_pack("{s:s}", "description", a->description ? a->description : "");
            if (a->body)
                json_object_set_new(resp, "content", openapi_json_content(schema_to_json(a->body)));
            json_object_set_new(responses, status, resp);
        }
    } else if (r->builtin_response) {
        json_object_set_new(responses, "200", json_pack("{s:s}", "description", r->builtin_response));
    } else {
        json_object_set_new(responses, "200", json_pack("{s:s}", "description", "the answer (not declared)"));
    }
    openapi_add_problem(responses, "400");
    if (strchr(r->pattern, '{'))
        openapi_add_problem(responses, "404");
    if (body) {
        openapi_add_problem(responses, "413");
        openapi_add_problem(responses, "415");
    }
    if (body || (rs && (rs->path || rs->query || rs->header)))
        openapi_add_problem(responses, "422");
    if (!r->builtin_response) {
        openapi_add_problem(responses, "429");
        openapi_add_problem(responses, "504");
    }
    openapi_add_problem(responses, "503");
    json_object_set_new(op, "responses", responses);
    return op;
}

/* The problem+json schemas (RFC 9457 and the 422's errors list, docs/schemas.md). */
static const char openapi_problem_schemas[] =
    "{\"Problem\":{\"type\":\"object\",\"required\":[\"type\",\"title\",\"status\",\"detail\"],"
    "\"properties\":{\"type\":{\"type\":\"string\"},\"title\":{\"type\":\"string\"},"
    "\"status\":{\"type\":\"integer\"},\"detail\":{\"type\":\"string\"},\"field\":{\"type\":\"string\"}}},"
    "\"ValidationProblem\":{\"allOf\":[{\"$ref\":\"#/components/schemas/Problem\"},{\"type\":\"object\","
    "\"required\":[\"errors\"],\"properties\":{\"errors\":{\"type\":\"array\",\"maxItems\":32,"
    "\"items\":{\"type\":\"object\",\"required\":[\"in\",\"field\",\"detail\"],\"properties\":{"
    "\"in\":{\"enum\":[\"body\",\"query\",\"path\",\"header\"]},\"field\":{\"type\":\"string\"},"
    "\"detail\":{\"type\":\"string\"}}}}}}]}}";

/* The shared error answers, by the names openapi_problem_refs gives them. */
static json_t *openapi_components(void)
{
    _Static_assert(SCHEMA_MAX_ERRORS == 32, "openapi_problem_schemas says maxItems 32");
    static const char *const words[] = {
        "a malformed request, or a body that is not JSON (with the line and column)",
        "nothing has this name",
        "the body is larger than limits.max_body_bytes or past the JSON limits",
        "the body must be sent as application/json",
        "the request breaks the schema: every violation is listed in errors",
        "too many requests from this client; see Retry-After",
        "the server is busy or draining; see Retry-After",
        "the request's deadline passed before the answer",
    };
    json_t *responses = json_object();
    for (size_t i = 0; i < sizeof(words) / sizeof(words[0]); i++)
        json_object_set_new(responses, openapi_problem_refs[i][1],
                            json_pack("{s:s,s:{s:{s:o}}}", "description", words[i], "content",
                                      "application/problem+json", "schema",
                                      openapi_ref("schemas", strcmp(openapi_problem_refs[i][0], "422") == 0
                                                                 ? "ValidationProblem"
                                                                 : "Problem")));
    return json_pack("{s:o,s:o}", "schemas", json_loads(openapi_problem_schemas, 0, NULL), "responses", responses);
}

json_t *openapi_document(const char *title, const char *version, const openapi_route *routes, size_t n)
{
    json_t *paths = json_object();
    for (size_t i = 0; i < n; i++) {
        const openapi_route *r = &routes[i];
        if (r->method == HTTP_METHOD_HEAD && !r->builtin_response)
            continue;
        json_t *item = json_object_get(paths, r->pattern);
        if (!item) {
            item = json_object();
            json_object_set_new(paths, r->pattern, item);
        }
        char method[16];
        snprintf(method, sizeof(method), "%s", http_method_name(r->method));
        for (char *c = method; *c; c++)
            *c = (char)tolower((unsigned char)*c);
        json_object_set_new(item, method, openapi_operation(r));
    }
    return json_pack("{s:s,s:{s:s,s:s},s:o,s:o}", "openapi", "3.1.0", "info", "title", title, "version", version,
                     "paths", paths, "components", openapi_components());
}
