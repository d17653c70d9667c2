/* schema_json: schemas and their violations as JSON. schema_to_json writes a declaration as JSON Schema
 * draft 2020-12 (the dialect OpenAPI 3.1 embeds), so the documentation is generated from the very
 * tables that validate; schema_errors_json writes the violations of a 422 answer. */
#include <stdio.h>
#include <string.h>

#include "schema.h"
#include "schema_internal.h"

json_t *schema_errors_json(const schema_errors *errs, char *detail, size_t cap)
{
    json_t *list = json_array();
    for (size_t i = 0; i < errs->count; i++) {
        const schema_error *e = &errs->list[i];
        json_array_append_new(list, json_pack("{s:s,s:s,s:s}", "in", e->in ? e->in : "", "field", e->field, "detail",
                                              e->detail));
    }
    json_t *extra = json_pack("{s:o}", "errors", list);
    if (errs->count == 0) {
        snprintf(detail, cap, "the request is invalid");
        return extra;
    }
    const schema_error *first = &errs->list[0];
    if (first->field[0])
        json_object_set_new(extra, "field", json_string(first->field));
    const char *subject = first->field[0] ? first->field : "the body";
    if (first->field[0] && first->in && strcmp(first->in, "body") != 0)
        snprintf(detail, cap, "%s %s %s", strcmp(first->in, "query") == 0 ? "query parameter" : first->in, subject,
                 first->detail);
    else
        snprintf(detail, cap, "%s %s", subject, first->detail);
    if (errs->count > 1 || errs->more) {
        size_t n = strlen(detail);
        snprintf(detail + n, cap - n, " (and %zu%s more)", errs->count - 1, errs->more ? " or" : "");
    }
    return extra;
}

static json_t *schema_bound_json(const schema *s, const schema_bound *bound)
{
    schema_bound b = schema_bound_now(bound);
    if (s->type == SCHEMA_T_INTEGER && (double)b.i == b.d)
        return json_integer(b.i);
    return json_real(b.d);
}

/* The JSON Schema type name, or ["name","null"] when nullable. */
static void schema_type_json(json_t *out, const char *type, bool nullable)
{
    json_object_set_new(out, "type", nullable ? json_pack("[s,s]", type, "null") : json_string(type));
}

json_t *schema_to_json(const schema *s)
{
    json_t *out = json_object();
    switch (s->type) {
    case SCHEMA_T_ANY: break;
    case SCHEMA_T_BOOLEAN: schema_type_json(out, "boolean", s->nullable); break;
    case SCHEMA_T_INTEGER:
    case SCHEMA_T_NUMBER:
        schema_type_json(out, s->type == SCHEMA_T_INTEGER ? "integer" : "number", s->nullable);
        if (s->min.kind)
            json_object_set_new(out, s->min.kind == 1 ? "minimum" : "exclusiveMinimum", schema_bound_json(s, &s->min));
        if (s->max.kind)
            json_object_set_new(out, s->max.kind == 1 ? "maximum" : "exclusiveMaximum", schema_bound_json(s, &s->max));
        if (s->multiple_of > 0)
            json_object_set_new(out, "multipleOf", json_real(s->multiple_of));
        break;
    case SCHEMA_T_STRING:
        schema_type_json(out, "string", s->nullable);
        if (s->min_length)
            json_object_set_new(out, "minLength", json_integer((json_int_t)s->min_length));
        if (s->max_length)
            json_object_set_new(out, "maxLength", json_integer((json_int_t)s->max_length));
        if (s->pattern)
            json_object_set_new(out, "pattern", json_string(s->pattern->source));
        if (s->max_bytes && !s->description) {
            char what[96];
            snprintf(what, sizeof(what), "at most %zu bytes in UTF-8", s->max_bytes);
            json_object_set_new(out, "description", json_string(what));
        }
        if (s->format)
            json_object_set_new(out, "format", json_string(schema_format_name(s->format)));
        break;
    case SCHEMA_T_ENUM: {
        schema_type_json(out, "string", s->nullable);
        json_t *values = json_array();
        for (size_t i = 0; s->values[i]; i++)
            json_array_append_new(values, json_string(s->values[i]));
        if (s->nullable)
            json_array_append_new(values, json_null());
        json_object_set_new(out, "enum", values);
        break;
    }
    case SCHEMA_T_ARRAY:
        schema_type_json(out, "array", s->nullable);
        if (s->items)
            json_object_set_new(out, "items", schema_to_json(s->items));
        if (s->min_items)
            json_object_set_new(out, "minItems", json_integer((json_int_t)s->min_items));
        if (s->max_items)
            json_object_set_new(out, "maxItems", json_integer((json_int_t)s->max_items));
        if (s->unique_items)
            json_object_set_new(out, "uniqueItems", json_true());
        break;
    case SCHEMA_T_OBJECT: {
        schema_type_json(out, "object", s->nullable);
        json_t *props = json_object(), *required = json_array();
        for (const schema_member *m = s->members; m && m->name; m++) {
            json_t *p = schema_to_json(m->schema);
            if (m->description)
                json_object_set_new(p, "description", json_string(m->description));
            json_object_set_new(props, m->name, p);
            if (m->flags & SCHEMA_MEMBER_REQUIRED)
                json_array_append_new(required, json_string(m->name));
        }
        json_object_set_new(out, "properties", props);
        if (json_array_size(required))
            json_object_set_new(out, "required", required);
        else
            json_decref(required);
        if (!s->open)
            json_object_set_new(out, "additionalProperties", json_false());
        break;
    }
    }
    if (s->description && !json_object_get(out, "description"))
        json_object_set_new(out, "description", json_string(s->description));
    else if (s->convert && s->convert->words && !json_object_get(out, "description"))
        json_object_set_new(out, "description", json_string(s->convert->words)); /* its grammar, in words */
    return out;
}
