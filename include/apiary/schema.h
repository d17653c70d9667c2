/* schema: declared schemas. One static declaration says what a JSON value, a path or query parameter,
 * a header or a config section must be; the engine checks a value against it, lists every violation
 * (not just the first) in the API's own words, binds what it accepted into a C struct of the caller's,
 * and writes the declaration out as JSON Schema (OpenAPI 3.1). docs/schemas.md is the guide.
 *
 *     typedef struct item_in {
 *         const char *name;
 *         double price;
 *         SCHEMA_LIST(const char *) tags;
 *     } item_in;
 *
 *     static const schema_member item_members[] = {
 *         SCHEMA_REQUIRED(item_in, name, SCHEMA_STRING(.min_length = 1, .max_length = 200)),
 *         SCHEMA_REQUIRED(item_in, price, SCHEMA_NUMBER(.min = SCHEMA_GE(0))),
 *         SCHEMA_OPTIONAL(item_in, tags, SCHEMA_ARRAY(SCHEMA_STRING(.pattern = SCHEMA_PATTERN("^[a-z0-9-]{1,32}$")),
 *                                                     .max_items = 8, .unique_items = true)),
 *         SCHEMA_END,
 *     };
 *     static const schema item_body = SCHEMA_OBJECT_OF(item_in, item_members);
 *
 * What binds where (a member's C field must have exactly this type; schema_check compares sizes):
 *   integer -> int64_t            number -> double          boolean -> bool
 *   string  -> const char *       enum   -> int (the index of the value in .values)
 *   array   -> SCHEMA_LIST(T)     (T: what the item binds to; the items live in the caller's arena)
 *   object  -> the struct of SCHEMA_OBJECT_OF(T, ...) (members bind at their offsets inside it)
 *   any     -> const json_t *     (borrowed from the parsed document)
 * with .bind_as, for structs that keep other C types (config: docs/schemas.md "Config"):
 *   integer, .bind_as = SCHEMA_AS_UNSIGNED -> unsigned    SCHEMA_AS_SIZE -> size_t   (bounds must fit)
 *   string,  .bind_as = SCHEMA_AS_CHARS    -> char[max_bytes + 1], a copy (needs .max_bytes)
 *   .convert = SCHEMA_CONVERT(T, words, fn) -> T, whatever fn makes of the accepted value
 * A string never holds U+0000 (refused), so it is a plain C string. An absent optional member leaves
 * its field as it was (the caller's defaults); a JSON null of a nullable member binds NULL to a string
 * or any field and leaves a scalar field as it was.
 *
 * Lengths count characters (Unicode code points), as JSON Schema does; max_bytes bounds the UTF-8
 * bytes too where storage needs it (documented in the schema's description). A pattern is a POSIX extended
 * regular expression, unanchored as in JSON Schema (write ^...$ to match the whole string), compiled
 * once; it is copied into the OpenAPI document as it is, so use the common subset of POSIX ERE and
 * ECMA-262 (bracket expressions, {m,n}, |, (), no \d or \w).
 *
 * Declarations are static data that live as long as the program (file-scope compound literals, which
 * the SCHEMA_* macros make); schema_check them once before use (apiary does for routes and sections).
 * After that they are read-only and any thread may validate against them. */
#ifndef APIARY_SCHEMA_H
#define APIARY_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "arena.h"

typedef enum schema_type {
    SCHEMA_T_ANY,     /* any JSON value */
    SCHEMA_T_BOOLEAN,
    SCHEMA_T_INTEGER,
    SCHEMA_T_NUMBER,  /* integers and reals */
    SCHEMA_T_STRING,
    SCHEMA_T_ENUM,    /* one of a list of strings */
    SCHEMA_T_ARRAY,
    SCHEMA_T_OBJECT,
} schema_type;

typedef enum schema_format {
    SCHEMA_FORMAT_NONE,
    SCHEMA_FORMAT_URI,       /* an absolute http or https URI with a host */
    SCHEMA_FORMAT_EMAIL,     /* local@domain, the practical subset of RFC 5321 */
    SCHEMA_FORMAT_DATE_TIME, /* RFC 3339: 2026-12-07T00:20:00Z, 2026-12-07T01:20:00.5+01:00 */
    SCHEMA_FORMAT_UUID,      /* 8-4-4-4-12 hexadecimal digits */
} schema_format;

/* A bound of a number: SCHEMA_GE(0) (>= 0), SCHEMA_GT(0) (> 0), SCHEMA_LE(100), SCHEMA_LT(1); or one
 * read when a value is checked, from a variable the app keeps (a limit from its config, updated on
 * reload): SCHEMA_LE_VAR(&max_sleep_ms), SCHEMA_GE_VAR(...). Messages and the OpenAPI document give
 * the value of the moment. */
typedef struct schema_bound {
    unsigned char kind;          /* 0 none, 1 inclusive, 2 exclusive */
    int64_t i;                   /* the bound for integers (exact) */
    double d;                    /* the bound for numbers */
    const _Atomic int64_t *var;  /* when not NULL, the bound is its value */
} schema_bound;
#define SCHEMA_GE(x) {.kind = 1, .i = (int64_t)(x), .d = (double)(x)}
#define SCHEMA_LE(x) {.kind = 1, .i = (int64_t)(x), .d = (double)(x)}
#define SCHEMA_GT(x) {.kind = 2, .i = (int64_t)(x), .d = (double)(x)}
#define SCHEMA_LT(x) {.kind = 2, .i = (int64_t)(x), .d = (double)(x)}
#define SCHEMA_GE_VAR(p) {.kind = 1, .var = (p)}
#define SCHEMA_LE_VAR(p) {.kind = 1, .var = (p)}

/* A regular expression, compiled once by schema_check (or at first use). */
typedef struct schema_pattern {
    const char *source;
    void *_Atomic _compiled; /* private: the regex_t */
} schema_pattern;
#define SCHEMA_PATTERN(re) (&(schema_pattern){.source = (re)})

typedef struct schema schema;
typedef struct schema_errors schema_errors;

/* What an integer or a string binds to, when not the default of the table above. */
typedef enum schema_bind_as {
    SCHEMA_AS_DEFAULT,  /* int64_t, double, const char *, ... */
    SCHEMA_AS_UNSIGNED, /* integer -> unsigned: the bounds must be given and lie in 0..UINT_MAX */
    SCHEMA_AS_SIZE,     /* integer -> size_t: the minimum must be given and be >= 0 */
    SCHEMA_AS_CHARS,    /* string -> char[max_bytes + 1], a copy (for structs that outlive the document) */
} schema_bind_as;

/* A value with a grammar (or a structure) of its own that the declaration cannot spell: "HOST:PORT", a
 * URL that fills three fields, a map of named entries. The schema's own checks run first (its type,
 * lengths, pattern, an object's members); then `bind` turns the accepted value into the T at `out`
 * (NULL: validate only), or adds what is wrong to errs under `field` (schema_errors_add; it may bind
 * parts with schema_bind, naming them below `field`) and returns false. `words` is what a value of the
 * wrong type is told it must be ("a string \"HOST:PORT\" or \"[IPv6]:PORT\""). Not for parameters. */
typedef struct schema_convert {
    size_t size; /* sizeof(T) */
    const char *words;
    bool (*bind)(const json_t *v, void *out, const char *field, schema_errors *errs);
} schema_convert;
#define SCHEMA_CONVERT(T, words_, fn) (&(const schema_convert){.size = sizeof(T), .words = (words_), .bind = (fn)})

/* One member of an object (or one parameter of a request, or one key of a config section). */
typedef struct schema_member {
    const char *name;      /* as in the JSON document (a parameter's or header's name) */
    const schema *schema;
    size_t offset;         /* where it binds: offsetof + 1; 0 = validated, not bound */
    size_t size;           /* sizeof the field it binds to (checked against what the type binds) */
    unsigned flags;        /* SCHEMA_MEMBER_REQUIRED */
    const char *description;
} schema_member;

enum { SCHEMA_MEMBER_REQUIRED = 1u << 0 };
#define SCHEMA_MAX_MEMBERS 64

#define SCHEMA_MEMBER(name_, T, field, flags_, s)                                                                  \
    {.name = (name_), .schema = (s), .offset = offsetof(T, field) + 1, .size = sizeof(((T *)0)->field),           \
     .flags = (flags_)}
/* The member named like the C field. */
#define SCHEMA_REQUIRED(T, field, s) SCHEMA_MEMBER(#field, T, field, SCHEMA_MEMBER_REQUIRED, s)
#define SCHEMA_OPTIONAL(T, field, s) SCHEMA_MEMBER(#field, T, field, 0, s)
/* A member that binds the whole T it is a member of: a section of a config file whose keys are fields
 * of the same struct ("limits" in apiary's config), or a converter that fills several fields at once. */
#define SCHEMA_MEMBER_WHOLE(name_, T, flags_, s) {.name = (name_), .schema = (s), .offset = 1, .size = sizeof(T), \
                                                  .flags = (flags_)}
/* A member checked but bound nowhere. */
#define SCHEMA_UNBOUND(name_, flags_, s) {.name = (name_), .schema = (s), .flags = (flags_)}
#define SCHEMA_END {.name = NULL}

/* The list an array binds to: `items[0..count)`, in the arena the document was bound with. */
#define SCHEMA_LIST(T)                                                                                             \
    struct {                                                                                                       \
        T *items;                                                                                                  \
        size_t count;                                                                                              \
    }

struct schema {
    schema_type type;
    bool nullable;                 /* null is accepted too */
    const char *description;       /* for the OpenAPI document */
    /* string */
    size_t min_length, max_length; /* characters; max_length 0: no bound */
    size_t max_bytes;              /* and bytes of UTF-8, for what is stored in fixed room; 0: no bound */
    schema_pattern *pattern;
    schema_format format;
    /* integer, number */
    schema_bound min, max;
    double multiple_of;            /* 0: none */
    /* enum: the accepted strings, NULL-terminated */
    const char *const *values;
    /* array */
    const schema *items;           /* NULL: any values, bound as const json_t * */
    size_t min_items, max_items;   /* max_items 0: no bound */
    bool unique_items;             /* needs max_items <= 1000: the check compares every pair */
    /* object */
    const schema_member *members;  /* ended by SCHEMA_END; at most SCHEMA_MAX_MEMBERS */
    size_t size;                   /* sizeof the struct the members bind into */
    bool open;                     /* members not listed are allowed (and ignored); default: refused */
    /* integer, string: the C type it binds to (the table at the top) */
    schema_bind_as bind_as;
    /* any type: a grammar of its own, applied after the checks above */
    const schema_convert *convert;
};

/* Schemas as expressions (pointers to static compound literals when used at file scope). */
#define SCHEMA_ANY(...) (&(const schema){.type = SCHEMA_T_ANY, __VA_ARGS__})
#define SCHEMA_BOOLEAN(...) (&(const schema){.type = SCHEMA_T_BOOLEAN, __VA_ARGS__})
#define SCHEMA_INTEGER(...) (&(const schema){.type = SCHEMA_T_INTEGER, __VA_ARGS__})
#define SCHEMA_NUMBER(...) (&(const schema){.type = SCHEMA_T_NUMBER, __VA_ARGS__})
#define SCHEMA_STRING(...) (&(const schema){.type = SCHEMA_T_STRING, __VA_ARGS__})
#define SCHEMA_ENUM(...) (&(const schema){.type = SCHEMA_T_ENUM, .values = (const char *const[]){__VA_ARGS__, NULL}})
/* SCHEMA_ARRAY(item, options...): the item's schema first. */
#define SCHEMA_ARRAY(...) (&(const schema){.type = SCHEMA_T_ARRAY, .items = __VA_ARGS__})
/* An object whose members bind into a T: SCHEMA_OBJECT_OF(T, members, options...). As an initializer:
 * `static const schema s = SCHEMA_OBJECT_OF(...)`; as a nested member's schema: SCHEMA_OBJECT(T, ...).
 * (The options ride in the variadic part so that no macro here needs an empty one: -pedantic clean.) */
#define SCHEMA_OBJECT_OF(T, ...) {.type = SCHEMA_T_OBJECT, .size = sizeof(T), .members = __VA_ARGS__}
#define SCHEMA_OBJECT(T, ...) (&(const schema)SCHEMA_OBJECT_OF(T, __VA_ARGS__))

/* ---- checking a declaration ---------------------------------------------------------------------- */

/* Checks that a declaration is consistent (bounds in order, known formats, patterns that compile,
 * bound fields of the right size, unique_items bounded) and compiles its patterns. Returns 0, or -1
 * with a message naming the member ("tags[]: the pattern does not compile: ..."). Call it once, on
 * one thread, before validating against s from several. */
int schema_check(const schema *s, char *err, size_t cap);
/* How many bytes a value of s binds to (see the table at the top); 0 for an object without a struct. */
size_t schema_bind_size(const schema *s);
/* The same for a list of members taken one by one (parameters, headers): `in` names them in messages. */
int schema_check_members(const schema_member *members, const char *in, char *err, size_t cap);

/* ---- validating and binding ---------------------------------------------------------------------- */

#define SCHEMA_MAX_ERRORS 32

/* One violation: where ("body", "query", "path", "header", or a config section's name), which value
 * ("tags[1]", "items[0].name"; "" for the document itself; member names come from the client, so a
 * field is cut to 100 bytes), and what is wrong ("must match ^[a-z]+$"). */
typedef enum schema_error_kind {
    SCHEMA_ERROR_VALUE,   /* the value is wrong: the detail says what it must be */
    SCHEMA_ERROR_UNKNOWN, /* a member the object does not declare (field names it) */
    SCHEMA_ERROR_MISSING, /* a required member is absent */
} schema_error_kind;

typedef struct schema_error {
    const char *in;
    const char *field;
    const char *detail;
    schema_error_kind kind; /* for callers that word some violations their own way (config files) */
    bool cut;               /* field was cut (a member name from the document was too long) */
} schema_error;

/* The violations found, the first SCHEMA_MAX_ERRORS of them; texts live in `arena`. Validation stops
 * looking once the list is full, so a hostile document costs a bounded amount of work past that. */
struct schema_errors {
    arena *arena;
    const char *in;  /* set by the caller before each validation */
    size_t count;
    bool more;       /* the list filled up and validation stopped: there may be more */
    schema_error list[SCHEMA_MAX_ERRORS];
};

void schema_errors_init(schema_errors *errs, arena *a, const char *in);
/* Adds a violation (for checks of one's own beside the schema's: "must name an upstream"). */
void schema_errors_add(schema_errors *errs, const char *field, const char *detail_fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* schema_errors_add that returns false, for a converter's `return schema_refuse(errs, field, "...")`. */
bool schema_refuse(schema_errors *errs, const char *field, const char *detail_fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Validates v against s and binds it at `out` (NULL: validate only), allocating lists in errs->arena.
 * `field` names v in messages ("" for a whole document). Returns true when v is valid; else the
 * violations are in errs and *out holds a partial binding, to be dropped. */
bool schema_bind(const schema *s, const json_t *v, void *out, const char *field, schema_errors *errs);

/* Validates the text values of one parameter (a path parameter, a query parameter given `count`
 * times, a header) against member m and binds it at out + m->offset: integers, numbers, booleans
 * ("true", "false"), strings and enums from their text; an array takes every value given, a scalar
 * exactly one. count 0 is "absent" (an error when m is required). Returns true when valid. */
bool schema_bind_text(const schema_member *m, const char *const *values, size_t count, void *out,
                      schema_errors *errs);

/* The problem+json extension members of a 422 for errs: {"errors":[{"in","field","detail"}...],
 * "field": the first field (kept for clients of the one-error answers)}, and in `detail` the first
 * violation in words ("limit must be an integer from 1 to 100"; "... (and 3 more)"). */
json_t *schema_errors_json(const schema_errors *errs, char *detail, size_t cap);

/* ---- documenting --------------------------------------------------------------------------------- */

/* The JSON Schema (draft 2020-12, as OpenAPI 3.1 embeds it) of s; new reference. */
json_t *schema_to_json(const schema *s);
/* The same with "default" on the optional members of an object whose field in `defaults` (the struct
 * the object's members bind into, such as a route's ROUTE_INPUT defaults) holds a value other than
 * zero, nested objects included. NULL defaults: schema_to_json. */
json_t *schema_to_json_defaults(const schema *s, const void *defaults);
/* The "default" of one optional member: the value its field holds in `defaults` as JSON (new
 * reference), or NULL when it holds zero (0, 0.0, false, NULL, "", an enum's first value: what the
 * field starts as without a default, so no default can be told from it), when the member is required,
 * converted (.convert) or binds nowhere, and for arrays, objects and any. Integers (int64_t, and
 * unsigned / size_t by .bind_as), numbers, booleans, strings (const char * and SCHEMA_AS_CHARS) and
 * enums (the value at the index) are shown, when the schema accepts the value: one it refuses is a
 * sentinel ("-1: not given"), not a value a client could send, and is left out too. */
json_t *schema_member_default(const schema_member *m, const void *defaults);

#endif
