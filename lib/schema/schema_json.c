/* schema_json: schemas and their violations as JSON. schema_to_json writes a declaration as JSON Schema
 * draft 2020-12 (the dialect OpenAPI 3.1 embeds), so the documentation is generated from the very
 * tables that validate (schema_to_json_defaults adds each optional member's "default" from a struct of
 * defaults, a route's ROUTE_INPUT); schema_errors_json writes the violations of a 422 answer. */
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

/* The bytes of the field member m binds to inside the struct at base, copied out (no alignment is
 * assumed of a defaults struct); false when m binds nowhere or as something else than `size` bytes. */
static bool schema_field(const schema_member *m, const unsigned char *base, void *out, size_t size)
{
    if (!base || m->offset == 0 || m->size != size)
        return false;
    memcpy(out, base + m->offset - 1, size);
    return true;
}

static json_t *schema_member_default_value(const schema_member *m, const void *defaults);

json_t *schema_member_default(const schema_member *m, const void *defaults)
{
    json_t *v = schema_member_default_value(m, defaults);
    if (!v)
        return NULL;
    /* A value the schema refuses is a sentinel ("-1: not given"), not a default a client could send. */
    arena a;
    arena_init(&a);
    schema_errors errs;
    schema_errors_init(&errs, &a, "default");
    bool valid = schema_bind(m->schema, v, NULL, m->name, &errs);
    arena_reset(&a);
    if (!valid) {
        json_decref(v);
        return NULL;
    }
    return v;
}

/* The field's value in defaults as JSON, or NULL (see schema_member_default). */
static json_t *schema_member_default_value(const schema_member *m, const void *defaults)
{
    const schema *s = m->schema;
    /* A required value always comes from the document; a converter's T is the app's own type. */
    if (!defaults || (m->flags & SCHEMA_MEMBER_REQUIRED) || s->convert)
        return NULL;
    /* Zero is what a field starts as without a default, so it cannot be told apart from none. */
    switch (s->type) {
    case SCHEMA_T_BOOLEAN: {
        bool b;
        return schema_field(m, defaults, &b, sizeof(b)) && b ? json_true() : NULL;
    }
    case SCHEMA_T_INTEGER: {
        int64_t i = 0;
        unsigned u = 0;
        size_t z = 0;
        if (s->bind_as == SCHEMA_AS_UNSIGNED)
            i = schema_field(m, defaults, &u, sizeof(u)) ? (int64_t)u : 0;
        else if (s->bind_as == SCHEMA_AS_SIZE)
            i = schema_field(m, defaults, &z, sizeof(z)) && z <= INT64_MAX ? (int64_t)z : 0;
        else if (!schema_field(m, defaults, &i, sizeof(i)))
            i = 0;
        return i ? json_integer(i) : NULL;
    }
    case SCHEMA_T_NUMBER: {
        double d;
        return schema_field(m, defaults, &d, sizeof(d)) && d != 0 ? json_real(d) : NULL;
    }
    case SCHEMA_T_STRING: {
        if (s->bind_as == SCHEMA_AS_CHARS) {
            if (!s->max_bytes || m->offset == 0 || m->size != s->max_bytes + 1)
                return NULL;
            const char *chars = (const char *)defaults + m->offset - 1;
            return chars[0] ? json_stringn(chars, strnlen(chars, m->size)) : NULL;
        }
        const char *str;
        return schema_field(m, defaults, &str, sizeof(str)) && str ? json_string(str) : NULL;
    }
    case SCHEMA_T_ENUM: {
        int index;
        if (!schema_field(m, defaults, &index, sizeof(index)) || index <= 0)
            return NULL;
        for (int i = 0; s->values[i]; i++)
            if (i == index)
                return json_string(s->values[i]);
        return NULL;
    }
    default: return NULL; /* arrays, objects, any: no single value to show */
    }
}

json_t *schema_to_json(const schema *s) { return schema_to_json_defaults(s, NULL); }

/* schema_to_json; `defaults`, when not NULL, is the struct an object's members bind into. */
json_t *schema_to_json_defaults(const schema *s, const void *defaults)
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
            /* A nested object binds inside its member's field: its own defaults are there. */
            const unsigned char *inner = defaults && m->offset && m->schema->type == SCHEMA_T_OBJECT && m->schema->size
                                             ? (const unsigned char *)defaults + m->offset - 1
                                             : NULL;
            json_t *p = schema_to_json_defaults(m->schema, inner);
            if (m->description)
                json_object_set_new(p, "description", json_string(m->description));
            json_t *dflt = schema_member_default(m, defaults);
            if (dflt)
                json_object_set_new(p, "default", dflt);
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
