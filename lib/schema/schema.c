/* schema: checking declarations, validating JSON values and parameter texts against them, and binding
 * what was accepted into the caller's struct, in one walk. Violations are collected, not returned at the
 * first: a client fixes its request once. A value's place ("items[2].name") is a chain of frames on the
 * C stack and is only written out when a violation needs it, so a valid document costs no string work.
 * Recursion follows the document, whose depth the caller has bounded (limits.json_max_depth for request
 * bodies), and the schema, which is the program's own. */
#include "schema.h"

#include <limits.h>
#include <math.h>
#include <stdatomic.h>
#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_internal.h"
#include "xalloc_internal.h"

/* ---- where a value is ---------------------------------------------------------------------------- */

typedef struct schema_path {
    const struct schema_path *up;
    const char *name; /* member name, or NULL for an index */
    size_t index;
} schema_path;

/* Member names can come from the client: a field naming a value is cut to this many bytes. */
#define SCHEMA_NAME_MAX 100

static size_t schema_cut_utf8(const char *s, size_t max)
{
    size_t len = strlen(s);
    if (len <= max)
        return len;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--; /* do not split a multi-byte character */
    return max;
}

static void schema_path_write(const schema_path *p, char *buf, size_t cap, size_t *len, bool *cut)
{
    if (!p)
        return;
    schema_path_write(p->up, buf, cap, len, cut);
    if (*len >= cap)
        return;
    int n;
    if (p->name && strlen(p->name) > SCHEMA_NAME_MAX)
        *cut = true;
    if (p->name)
        n = snprintf(buf + *len, cap - *len, "%s%.*s", *len ? "." : "", (int)schema_cut_utf8(p->name, SCHEMA_NAME_MAX),
                     p->name);
    else
        n = snprintf(buf + *len, cap - *len, "[%zu]", p->index);
    *len += n > 0 ? (size_t)n : 0;
    if (*len >= cap)
        *len = cap - 1;
}

/* ---- the error list ------------------------------------------------------------------------------ */

void schema_errors_init(schema_errors *errs, arena *a, const char *in)
{
    errs->arena = a;
    errs->in = in;
    errs->count = 0;
    errs->more = false;
}

static bool schema_errors_full(const schema_errors *errs) { return errs->count == SCHEMA_MAX_ERRORS; }

static void schema_errors_vadd(schema_errors *errs, const char *field, schema_error_kind kind, bool cut,
                               const char *fmt, va_list ap)
{
    if (schema_errors_full(errs)) {
        errs->more = true;
        return;
    }
    char detail[512];
    vsnprintf(detail, sizeof(detail), fmt, ap);
    schema_error *e = &errs->list[errs->count++];
    e->in = errs->in;
    e->field = arena_strndup(errs->arena, field, strlen(field));
    e->detail = arena_strndup(errs->arena, detail, strlen(detail));
    e->kind = kind;
    e->cut = cut;
}

void schema_errors_add(schema_errors *errs, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    schema_errors_vadd(errs, field, SCHEMA_ERROR_VALUE, false, fmt, ap);
    va_end(ap);
}

bool schema_refuse(schema_errors *errs, const char *field, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    schema_errors_vadd(errs, field, SCHEMA_ERROR_VALUE, false, fmt, ap);
    va_end(ap);
    return false;
}

/* p as text ("items[2].name"), cut to SCHEMA_NAME_MAX bytes; returns whether it was cut. */
static bool schema_path_text(const schema_path *p, char field[256])
{
    size_t len = 0;
    bool cut = false;
    field[0] = '\0';
    schema_path_write(p, field, 256, &len, &cut);
    size_t keep = schema_cut_utf8(field, SCHEMA_NAME_MAX);
    cut = cut || field[keep] != '\0';
    field[keep] = '\0';
    return cut;
}

__attribute__((format(printf, 4, 5))) static void schema_fail_kind(schema_errors *errs, const schema_path *p,
                                                                   schema_error_kind kind, const char *fmt, ...)
{
    char field[256];
    bool cut = schema_path_text(p, field);
    va_list ap;
    va_start(ap, fmt);
    schema_errors_vadd(errs, field, kind, cut, fmt, ap);
    va_end(ap);
}

#define schema_fail(errs, p, ...) schema_fail_kind((errs), (p), SCHEMA_ERROR_VALUE, __VA_ARGS__)

/* ---- describing what a schema accepts ------------------------------------------------------------ */

schema_bound schema_bound_now(const schema_bound *b)
{
    if (!b->var)
        return *b;
    int64_t v = atomic_load(b->var);
    return (schema_bound){.kind = b->kind, .i = v, .d = (double)v};
}

static int schema_bound_text(const schema *s, const schema_bound *b, const char *op_incl, const char *op_excl,
                             char *buf, size_t cap)
{
    if (s->type == SCHEMA_T_INTEGER && (double)b->i == b->d)
        return snprintf(buf, cap, "%s %lld", b->kind == 1 ? op_incl : op_excl, (long long)b->i);
    return snprintf(buf, cap, "%s %.17g", b->kind == 1 ? op_incl : op_excl, b->d);
}

void schema_describe(const schema *s, char *buf, size_t cap)
{
    size_t n = 0;
#define PUT(...)                                                                                                   \
    do {                                                                                                           \
        int k_ = snprintf(buf + n, cap - n, __VA_ARGS__);                                                          \
        n += k_ > 0 ? (size_t)k_ : 0;                                                                              \
        if (n >= cap)                                                                                              \
            n = cap - 1;                                                                                           \
    } while (0)
    buf[0] = '\0';
    if (s->convert && s->convert->words) {
        PUT("%s", s->convert->words);
        return; /* the words say it all, null included */
    }
    switch (s->type) {
    case SCHEMA_T_ANY: PUT("a JSON value"); break;
    case SCHEMA_T_BOOLEAN: PUT("true or false"); break;
    case SCHEMA_T_INTEGER:
    case SCHEMA_T_NUMBER: {
        schema_bound lo = schema_bound_now(&s->min), hi = schema_bound_now(&s->max);
        PUT("%s", s->type == SCHEMA_T_INTEGER ? "an integer" : "a number");
        if (s->type == SCHEMA_T_INTEGER && lo.kind == 1 && hi.kind == 1 && (double)lo.i == lo.d &&
            (double)hi.i == hi.d) {
            PUT(" between %lld and %lld", (long long)lo.i, (long long)hi.i);
        } else {
            if (lo.kind) {
                PUT(" ");
                n += (size_t)schema_bound_text(s, &lo, ">=", ">", buf + n, cap - n);
            }
            if (hi.kind) {
                PUT("%s", lo.kind ? " and " : " ");
                n += (size_t)schema_bound_text(s, &hi, "<=", "<", buf + n, cap - n);
            }
            if (n >= cap)
                n = cap - 1;
        }
        if (s->multiple_of > 0)
            PUT("%s a multiple of %.17g", lo.kind || hi.kind ? "," : " and", s->multiple_of);
        break;
    }
    case SCHEMA_T_STRING:
        PUT("%s", s->format ? schema_format_words(s->format) : "a string");
        if (s->min_length && s->max_length)
            PUT(" of %zu to %zu characters", s->min_length, s->max_length);
        else if (s->max_length)
            PUT(" of at most %zu characters", s->max_length);
        else if (s->min_length)
            PUT(" of at least %zu character%s", s->min_length, s->min_length == 1 ? "" : "s");
        if (s->max_bytes)
            PUT("%s at most %zu bytes in UTF-8", s->min_length || s->max_length ? "," : " of", s->max_bytes);
        break;
    case SCHEMA_T_ENUM:
        PUT("one of ");
        for (size_t i = 0; s->values[i]; i++)
            PUT("%s%s", i ? ", " : "", s->values[i]);
        break;
    case SCHEMA_T_ARRAY:
        PUT("an array");
        if (s->min_items && s->max_items)
            PUT(" of %zu to %zu items", s->min_items, s->max_items);
        else if (s->max_items)
            PUT(" of at most %zu items", s->max_items);
        else if (s->min_items)
            PUT(" of at least %zu item%s", s->min_items, s->min_items == 1 ? "" : "s");
        break;
    case SCHEMA_T_OBJECT: PUT("an object"); break;
    }
    if (s->nullable)
        PUT(" or null");
#undef PUT
}

static void schema_fail_describe(schema_errors *errs, const schema_path *p, const schema *s)
{
    char what[256];
    schema_describe(s, what, sizeof(what));
    schema_fail(errs, p, "must be %s", what);
}

static void schema_fail_required(schema_errors *errs, const schema_path *p, const schema *s)
{
    char what[256];
    schema_describe(s, what, sizeof(what));
    schema_fail_kind(errs, p, SCHEMA_ERROR_MISSING, "is required: %s", what);
}

/* ---- patterns ------------------------------------------------------------------------------------ */

static pthread_mutex_t schema_pattern_lock = PTHREAD_MUTEX_INITIALIZER;

/* The compiled pattern, compiling it on first use; NULL with the reason in err when it does not compile. */
static const regex_t *schema_pattern_get(schema_pattern *p, char *err, size_t cap)
{
    regex_t *re = p->_compiled;
    if (re)
        return re;
    pthread_mutex_lock(&schema_pattern_lock);
    re = p->_compiled;
    if (!re) {
        re = xmalloc(sizeof(*re));
        int rc = regcomp(re, p->source, REG_EXTENDED | REG_NOSUB);
        if (rc != 0) {
            if (err)
                regerror(rc, re, err, cap);
            free(re);
            re = NULL;
        } else {
            p->_compiled = re;
        }
    }
    pthread_mutex_unlock(&schema_pattern_lock);
    return re;
}

/* ---- checking declarations ----------------------------------------------------------------------- */

size_t schema_bind_size(const schema *s)
{
    if (s->convert)
        return s->convert->size;
    if (s->bind_as == SCHEMA_AS_UNSIGNED)
        return sizeof(unsigned);
    if (s->bind_as == SCHEMA_AS_SIZE)
        return sizeof(size_t);
    if (s->bind_as == SCHEMA_AS_CHARS)
        return s->max_bytes + 1;
    switch (s->type) {
    case SCHEMA_T_ANY: return sizeof(const json_t *);
    case SCHEMA_T_BOOLEAN: return sizeof(bool);
    case SCHEMA_T_INTEGER: return sizeof(int64_t);
    case SCHEMA_T_NUMBER: return sizeof(double);
    case SCHEMA_T_STRING: return sizeof(const char *);
    case SCHEMA_T_ENUM: return sizeof(int);
    case SCHEMA_T_ARRAY: return sizeof(SCHEMA_LIST(void));
    case SCHEMA_T_OBJECT: return s->size;
    }
    return 0;
}

static int schema_check_at(const schema *s, const char *where, char *err, size_t cap);
static int schema_check_binding(const schema *s, const char *at, char *err, size_t cap);

static int schema_check_member(const schema_member *m, const char *where, char *err, size_t cap)
{
    char at[200];
    snprintf(at, sizeof(at), "%s%s%s", where, where[0] ? "." : "", m->name);
    if (!m->schema) {
        snprintf(err, cap, "%s: no schema", at);
        return -1;
    }
    if (schema_check_binding(m->schema, at, err, cap) != 0) /* before its size: says why, not what */
        return -1;
    if (m->offset && m->size != schema_bind_size(m->schema)) {
        snprintf(err, cap, "%s: its field has %zu bytes, but the schema binds %zu (see schema.h for the C types)", at,
                 m->size, schema_bind_size(m->schema));
        return -1;
    }
    return schema_check_at(m->schema, at, err, cap);
}

/* What .bind_as and .convert need; 0 when s may bind as it says. */
static int schema_check_binding(const schema *s, const char *at, char *err, size_t cap)
{
    if (s->convert && (!s->convert->bind || !s->convert->size || s->bind_as)) {
        snprintf(err, cap, "%s: a converter needs its function and size, and no .bind_as", at);
        return -1;
    }
    bool integer = s->type == SCHEMA_T_INTEGER;
    switch (s->bind_as) {
    case SCHEMA_AS_DEFAULT: return 0;
    case SCHEMA_AS_UNSIGNED:
    case SCHEMA_AS_SIZE: {
        /* The bounds are checked before the value is stored, so they are what keeps it in the type. */
        bool fits = integer && s->min.kind && !s->min.var && s->min.i >= (s->min.kind == 1 ? 0 : -1);
        if (s->bind_as == SCHEMA_AS_UNSIGNED)
            fits = fits && s->max.kind && !s->max.var && s->max.i <= (int64_t)UINT_MAX + (s->max.kind == 2);
        if (!fits) {
            snprintf(err, cap, "%s: an integer bound to %s needs bounds inside its range", at,
                     s->bind_as == SCHEMA_AS_UNSIGNED ? "unsigned" : "size_t");
            return -1;
        }
        return 0;
    }
    case SCHEMA_AS_CHARS:
        if (s->type != SCHEMA_T_STRING || !s->max_bytes) {
            snprintf(err, cap, "%s: SCHEMA_AS_CHARS is for a string with .max_bytes (it binds char[max_bytes + 1])",
                     at);
            return -1;
        }
        return 0;
    }
    snprintf(err, cap, "%s: an unknown .bind_as %d", at, (int)s->bind_as);
    return -1;
}

static int schema_check_at(const schema *s, const char *where, char *err, size_t cap)
{
    const char *at = where[0] ? where : "(document)";
    if (schema_check_binding(s, at, err, cap) != 0)
        return -1;
    switch (s->type) {
    case SCHEMA_T_ANY:
    case SCHEMA_T_BOOLEAN: return 0;
    case SCHEMA_T_INTEGER:
    case SCHEMA_T_NUMBER: {
        bool int_ = s->type == SCHEMA_T_INTEGER;
        if (s->min.kind > 2 || s->max.kind > 2 || s->multiple_of < 0 || isnan(s->multiple_of)) {
            snprintf(err, cap, "%s: a malformed bound", at);
            return -1;
        }
        if (s->min.kind && s->max.kind && !s->min.var && !s->max.var &&
            (int_ ? s->min.i > s->max.i : s->min.d > s->max.d)) {
            snprintf(err, cap, "%s: the minimum is above the maximum", at);
            return -1;
        }
        return 0;
    }
    case SCHEMA_T_STRING: {
        if (s->max_length && s->min_length > s->max_length) {
            snprintf(err, cap, "%s: min_length is above max_length", at);
            return -1;
        }
        if (s->format > SCHEMA_FORMAT_UUID) {
            snprintf(err, cap, "%s: an unknown format", at);
            return -1;
        }
        char why[128];
        if (s->pattern && (!s->pattern->source || !schema_pattern_get(s->pattern, why, sizeof(why)))) {
            snprintf(err, cap, "%s: the pattern %s does not compile: %s", at,
                     s->pattern->source ? s->pattern->source : "(none)", s->pattern->source ? why : "no text");
            return -1;
        }
        return 0;
    }
    case SCHEMA_T_ENUM:
        if (!s->values || !s->values[0]) {
            snprintf(err, cap, "%s: an enum needs values", at);
            return -1;
        }
        return 0;
    case SCHEMA_T_ARRAY: {
        if (s->max_items && s->min_items > s->max_items) {
            snprintf(err, cap, "%s: min_items is above max_items", at);
            return -1;
        }
        if (s->unique_items && (!s->max_items || s->max_items > 1000)) {
            snprintf(err, cap, "%s: unique_items needs max_items of at most 1000 (every pair is compared)", at);
            return -1;
        }
        if (s->items && s->items->type == SCHEMA_T_OBJECT && !s->items->size) {
            snprintf(err, cap, "%s[]: an object item needs its struct (SCHEMA_OBJECT(T, ...))", at);
            return -1;
        }
        char item[200];
        snprintf(item, sizeof(item), "%s[]", where);
        return s->items ? schema_check_at(s->items, item, err, cap) : 0;
    }
    case SCHEMA_T_OBJECT:
        for (const schema_member *m = s->members; m && m->name; m++) {
            if (m - s->members == SCHEMA_MAX_MEMBERS) {
                snprintf(err, cap, "%s: more than %d members", at, SCHEMA_MAX_MEMBERS);
                return -1;
            }
            if (m->offset && m->offset - 1 + m->size > s->size) {
                snprintf(err, cap, "%s.%s: its field lies outside the object's struct", at, m->name);
                return -1;
            }
            for (const schema_member *o = s->members; o < m; o++)
                if (strcmp(o->name, m->name) == 0) {
                    snprintf(err, cap, "%s.%s: declared twice", at, m->name);
                    return -1;
                }
            if (schema_check_member(m, where, err, cap) != 0)
                return -1;
        }
        return 0;
    }
    snprintf(err, cap, "%s: an unknown type %d", at, (int)s->type);
    return -1;
}

int schema_check(const schema *s, char *err, size_t cap) { return schema_check_at(s, "", err, cap); }

int schema_check_members(const schema_member *members, const char *in, char *err, size_t cap)
{
    for (const schema_member *m = members; m && m->name; m++) {
        schema_type t = m->schema ? m->schema->type : SCHEMA_T_ANY;
        schema_type item = t == SCHEMA_T_ARRAY && m->schema->items ? m->schema->items->type : t;
        if (t == SCHEMA_T_OBJECT || t == SCHEMA_T_ANY || item == SCHEMA_T_OBJECT || item == SCHEMA_T_ANY ||
            item == SCHEMA_T_ARRAY || (t == SCHEMA_T_ARRAY && !m->schema->items) || m->schema->convert ||
            (t == SCHEMA_T_ARRAY && m->schema->items->convert)) {
            snprintf(err, cap, "%s %s: a parameter is a scalar or an array of scalars, without a converter", in,
                     m->name);
            return -1;
        }
        if (schema_check_member(m, in, err, cap) != 0)
            return -1;
    }
    return 0;
}

/* ---- validating and binding JSON ----------------------------------------------------------------- */

static bool schema_bind_at(const schema *s, const json_t *v, void *out, const schema_path *p, schema_errors *errs);

/* A bound as it stands: b itself, or (read from its variable) a copy in tmp. No copy for the common
 * constant bound: this runs for every number of every request. */
static inline const schema_bound *schema_bound_use(const schema_bound *b, schema_bound *tmp)
{
    if (__builtin_expect(!b->var, 1))
        return b;
    *tmp = schema_bound_now(b);
    return tmp;
}

static bool schema_number_ok(const schema *s, double d)
{
    schema_bound tlo, thi;
    const schema_bound *lo = schema_bound_use(&s->min, &tlo), *hi = schema_bound_use(&s->max, &thi);
    if (lo->kind && (lo->kind == 1 ? d < lo->d : d <= lo->d))
        return false;
    if (hi->kind && (hi->kind == 1 ? d > hi->d : d >= hi->d))
        return false;
    if (s->multiple_of > 0) {
        double q = d / s->multiple_of;
        if (!isfinite(q) || fabs(q - nearbyint(q)) > 1e-9 * fmax(1.0, fabs(q)))
            return false;
    }
    return true;
}

static bool schema_integer_ok(const schema *s, int64_t v)
{
    /* Exact comparisons when the bound is integral: doubles lose precision past 2^53. */
    schema_bound tlo, thi;
    const schema_bound *lo = schema_bound_use(&s->min, &tlo), *hi = schema_bound_use(&s->max, &thi);
    if (lo->kind) {
        bool exact = (double)lo->i == lo->d;
        if (exact ? (lo->kind == 1 ? v < lo->i : v <= lo->i)
                  : (lo->kind == 1 ? (double)v < lo->d : (double)v <= lo->d))
            return false;
    }
    if (hi->kind) {
        bool exact = (double)hi->i == hi->d;
        if (exact ? (hi->kind == 1 ? v > hi->i : v >= hi->i)
                  : (hi->kind == 1 ? (double)v > hi->d : (double)v >= hi->d))
            return false;
    }
    if (s->multiple_of > 0) {
        if (s->multiple_of == nearbyint(s->multiple_of) && s->multiple_of < 9.2e18)
            return v % (int64_t)s->multiple_of == 0;
        return schema_number_ok(&(schema){.type = SCHEMA_T_NUMBER, .multiple_of = s->multiple_of}, (double)v);
    }
    return true;
}

/* The checks of a string value shared by JSON and parameter texts; true when it passes. */
static bool schema_string_ok(const schema *s, const char *str, size_t len, const schema_path *p, schema_errors *errs)
{
    if (memchr(str, '\0', len)) {
        schema_fail(errs, p, "must not contain the character U+0000");
        return false;
    }
    if (s->min_length || s->max_length || s->max_bytes) {
        /* Valid UTF-8 (JSON strings are; parameters were checked) has between len/4 and len characters:
         * the bytes settle most strings without counting. */
        size_t lo = (len + 3) / 4, hi = len;
        if (lo < s->min_length || (s->max_length && hi > s->max_length))
            lo = hi = schema_utf8_chars(str, len);
        if (hi < s->min_length || (s->max_length && lo > s->max_length) || (s->max_bytes && len > s->max_bytes)) {
            schema_fail_describe(errs, p, s);
            return false;
        }
    }
    if (s->format && !schema_format_valid(s->format, str, len)) {
        schema_fail(errs, p, "must be %s", schema_format_words(s->format));
        return false;
    }
    if (s->pattern) {
        const regex_t *re = schema_pattern_get(s->pattern, NULL, 0);
        if (!re || regexec(re, str, 0, NULL, 0) != 0) {
            schema_fail(errs, p, "must match %s", s->pattern->source);
            return false;
        }
    }
    return true;
}

static int schema_enum_index(const schema *s, const char *str)
{
    for (int i = 0; s->values[i]; i++)
        if (strcmp(s->values[i], str) == 0)
            return i;
    return -1;
}

static bool schema_bind_array(const schema *s, const json_t *v, void *out, const schema_path *p,
                              schema_errors *errs)
{
    size_t n = json_array_size(v);
    if (n < s->min_items || (s->max_items && n > s->max_items)) {
        schema_fail_describe(errs, p, s);
        return false;
    }
    bool ok = true;
    if (s->unique_items) {
        for (size_t i = 1; i < n && ok; i++)
            for (size_t j = 0; j < i && ok; j++)
                if (json_equal(json_array_get(v, i), json_array_get(v, j))) {
                    schema_path item = {p, NULL, i};
                    schema_fail(errs, &item, "repeats item [%zu]; the items must be unique", j);
                    ok = false;
                }
    }
    size_t size = s->items ? schema_bind_size(s->items) : sizeof(const json_t *);
    char *items = out && n ? arena_alloc(errs->arena, n * size) : NULL;
    if (items && s->items && s->items->type == SCHEMA_T_OBJECT)
        memset(items, 0, n * size); /* optional members of an item start as zero */
    for (size_t i = 0; i < n; i++) {
        if (schema_errors_full(errs)) {
            errs->more = true; /* stopped looking: the rest is unchecked */
            break;
        }
        const json_t *item = json_array_get(v, i);
        if (s->items) {
            schema_path at = {p, NULL, i};
            ok = schema_bind_at(s->items, item, items ? items + i * size : NULL, &at, errs) && ok;
        } else if (items) {
            memcpy(items + i * size, &item, sizeof(item));
        }
    }
    if (out) {
        SCHEMA_LIST(void) list = {items, n};
        memcpy(out, &list, sizeof(list));
    }
    return ok;
}

/* Appends the names of s's members to buf, for "is not a member (name, price)". */
static void schema_member_list(const schema *s, char *buf, size_t cap)
{
    size_t n = 0;
    buf[0] = '\0';
    for (const schema_member *m = s->members; m && m->name && n + 1 < cap; m++) {
        int k = snprintf(buf + n, cap - n, "%s%s", n ? ", " : "", m->name);
        n += k > 0 ? (size_t)k : 0;
    }
    if (n >= cap && cap > 4)
        memcpy(buf + cap - 4, "...", 4);
}

/* One walk over the document's members, each matched to its declaration, so a member costs one name
 * comparison when the document lists them in the declared order (the search starts after the last
 * match) and no hash lookup; the required ones not seen are reported after. */
static bool schema_bind_object(const schema *s, const json_t *v, void *out, const schema_path *p,
                               schema_errors *errs)
{
    const schema_member *members = s->members;
    size_t count = 0;
    while (members && members[count].name)
        count++;
    uint64_t seen = 0; /* schema_check keeps an object at SCHEMA_MAX_MEMBERS */
    size_t hint = 0;
    bool ok = true;
    /* The iterator itself, not json_object_foreach, which looks each key up again to find the next. */
    for (void *it = json_object_iter((json_t *)v); it; it = json_object_iter_next((json_t *)v, it)) {
        const char *key = json_object_iter_key(it);
        json_t *mv = json_object_iter_value(it);
        if (schema_errors_full(errs)) {
            errs->more = true;
            return false;
        }
        size_t found = count;
        for (size_t k = 0; k < count; k++) {
            size_t j = hint + k < count ? hint + k : hint + k - count;
            if (strcmp(members[j].name, key) == 0) {
                found = j;
                break;
            }
        }
        schema_path at = {p, key, 0};
        if (found == count) {
            if (!s->open) {
                char list[256];
                schema_member_list(s, list, sizeof(list));
                schema_fail_kind(errs, &at, SCHEMA_ERROR_UNKNOWN, "is not a known member (%s)", list);
                ok = false;
            }
            continue;
        }
        const schema_member *m = &members[found];
        hint = found + 1 < count ? found + 1 : 0;
        seen |= (uint64_t)1 << found;
        ok = schema_bind_at(m->schema, mv, out && m->offset ? (char *)out + m->offset - 1 : NULL, &at, errs) && ok;
    }
    for (size_t j = 0; j < count; j++) {
        if (!(members[j].flags & SCHEMA_MEMBER_REQUIRED) || (seen >> j & 1))
            continue;
        if (schema_errors_full(errs)) {
            errs->more = true;
            return false;
        }
        schema_path at = {p, members[j].name, 0};
        schema_fail_required(errs, &at, members[j].schema);
        ok = false;
    }
    return ok;
}

/* An integer accepted by s, stored as the C type it binds to. */
static void schema_store_integer(const schema *s, int64_t i, void *out)
{
    if (s->bind_as == SCHEMA_AS_UNSIGNED)
        *(unsigned *)out = (unsigned)i;
    else if (s->bind_as == SCHEMA_AS_SIZE)
        *(size_t *)out = (size_t)i;
    else
        memcpy(out, &i, sizeof(i));
}

/* A string accepted by s: a pointer into the document, or a copy (SCHEMA_AS_CHARS: its length is
 * within max_bytes, checked before). */
static void schema_store_string(const schema *s, const char *str, size_t len, void *out)
{
    if (s->bind_as == SCHEMA_AS_CHARS) {
        memcpy(out, str, len);
        ((char *)out)[len] = '\0';
    } else {
        memcpy(out, &str, sizeof(str));
    }
}

static bool schema_bind_value(const schema *s, const json_t *v, void *out, const schema_path *p,
                              schema_errors *errs);

static bool schema_bind_at(const schema *s, const json_t *v, void *out, const schema_path *p, schema_errors *errs)
{
    if (__builtin_expect(!s->convert, 1))
        return schema_bind_value(s, v, out, p, errs);
    /* The declared checks first, binding nothing; then the converter binds the accepted value. */
    if (!schema_bind_value(s, v, NULL, p, errs))
        return false;
    char field[256];
    schema_path_text(p, field);
    return s->convert->bind(v, out, field, errs);
}

static bool schema_bind_value(const schema *s, const json_t *v, void *out, const schema_path *p,
                              schema_errors *errs)
{
    if (json_is_null(v) && s->nullable && s->type != SCHEMA_T_ANY) {
        if (out && s->type == SCHEMA_T_STRING)
            memset(out, 0, s->bind_as == SCHEMA_AS_CHARS ? 1 : sizeof(const char *));
        return true;
    }
    switch (s->type) {
    case SCHEMA_T_ANY:
        if (out)
            memcpy(out, &v, sizeof(v));
        return true;
    case SCHEMA_T_BOOLEAN:
        if (!json_is_boolean(v))
            break;
        if (out)
            *(bool *)out = json_is_true(v);
        return true;
    case SCHEMA_T_INTEGER: {
        if (!json_is_integer(v))
            break;
        int64_t i = json_integer_value(v);
        if (!schema_integer_ok(s, i))
            break;
        if (out)
            schema_store_integer(s, i, out);
        return true;
    }
    case SCHEMA_T_NUMBER: {
        if (!json_is_number(v))
            break;
        double d = json_number_value(v);
        if (!schema_number_ok(s, d))
            break;
        if (out)
            memcpy(out, &d, sizeof(d));
        return true;
    }
    case SCHEMA_T_STRING: {
        if (!json_is_string(v))
            break;
        const char *str = json_string_value(v);
        size_t len = json_string_length(v);
        if (!schema_string_ok(s, str, len, p, errs))
            return false;
        if (out)
            schema_store_string(s, str, len, out);
        return true;
    }
    case SCHEMA_T_ENUM: {
        int i = json_is_string(v) ? schema_enum_index(s, json_string_value(v)) : -1;
        if (i < 0)
            break;
        if (out)
            memcpy(out, &i, sizeof(i));
        return true;
    }
    case SCHEMA_T_ARRAY:
        if (!json_is_array(v))
            break;
        return schema_bind_array(s, v, out, p, errs);
    case SCHEMA_T_OBJECT:
        if (!json_is_object(v))
            break;
        return schema_bind_object(s, v, out, p, errs);
    }
    schema_fail_describe(errs, p, s);
    return false;
}

bool schema_bind(const schema *s, const json_t *v, void *out, const char *field, schema_errors *errs)
{
    schema_path root = {NULL, field, 0};
    return schema_bind_at(s, v, out, field && field[0] ? &root : NULL, errs);
}

/* ---- parameters from text ------------------------------------------------------------------------ */

/* A decimal integer: an optional '-', digits, nothing else; false past int64. */
static bool schema_parse_int(const char *t, int64_t *out)
{
    bool neg = *t == '-';
    const char *d = t + neg;
    if (!*d)
        return false;
    uint64_t v = 0, limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; *d; d++) {
        if (*d < '0' || *d > '9' || v > (limit - (uint64_t)(*d - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(*d - '0');
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return true;
}

/* A JSON-style number: what strtod takes, minus leading spaces, hex, inf and nan. */
static bool schema_parse_number(const char *t, double *out)
{
    const char *d = t + (*t == '-');
    if (*d < '0' || *d > '9')
        return false;
    for (const char *c = d; *c; c++)
        if (!strchr("0123456789.eE+-", *c))
            return false;
    char *end;
    double v = strtod(t, &end);
    if (*end || !isfinite(v))
        return false;
    *out = v;
    return true;
}

static bool schema_bind_text_one(const schema *s, const char *t, void *out, const schema_path *p,
                                 schema_errors *errs)
{
    switch (s->type) {
    case SCHEMA_T_BOOLEAN: {
        bool b = strcmp(t, "true") == 0;
        if (!b && strcmp(t, "false") != 0)
            break;
        if (out)
            *(bool *)out = b;
        return true;
    }
    case SCHEMA_T_INTEGER: {
        int64_t i;
        if (!schema_parse_int(t, &i) || !schema_integer_ok(s, i))
            break;
        if (out)
            schema_store_integer(s, i, out);
        return true;
    }
    case SCHEMA_T_NUMBER: {
        double d;
        if (!schema_parse_number(t, &d) || !schema_number_ok(s, d))
            break;
        if (out)
            memcpy(out, &d, sizeof(d));
        return true;
    }
    case SCHEMA_T_STRING: {
        size_t len = strlen(t);
        if (!schema_utf8_valid(t, len)) {
            schema_fail(errs, p, "must be valid UTF-8");
            return false;
        }
        if (!schema_string_ok(s, t, len, p, errs))
            return false;
        if (out)
            schema_store_string(s, t, len, out);
        return true;
    }
    case SCHEMA_T_ENUM: {
        int i = schema_enum_index(s, t);
        if (i < 0)
            break;
        if (out)
            memcpy(out, &i, sizeof(i));
        return true;
    }
    default: break; /* refused by schema_check_members */
    }
    schema_fail_describe(errs, p, s);
    return false;
}

bool schema_bind_text(const schema_member *m, const char *const *values, size_t count, void *out,
                      schema_errors *errs)
{
    const schema *s = m->schema;
    schema_path at = {NULL, m->name, 0};
    void *dst = out && m->offset ? (char *)out + m->offset - 1 : NULL;
    if (count == 0) {
        if (m->flags & SCHEMA_MEMBER_REQUIRED) {
            schema_fail_required(errs, &at, s);
            return false;
        }
        return true;
    }
    if (s->type != SCHEMA_T_ARRAY) {
        if (count > 1) {
            schema_fail(errs, &at, "must be given once");
            return false;
        }
        return schema_bind_text_one(s, values[0], dst, &at, errs);
    }
    if (count < s->min_items || (s->max_items && count > s->max_items)) {
        schema_fail(errs, &at, "must be given %zu to %zu times", s->min_items, s->max_items ? s->max_items : count);
        return false;
    }
    size_t size = schema_bind_size(s->items);
    char *items = dst ? arena_alloc(errs->arena, count * size) : NULL;
    bool ok = true;
    for (size_t i = 0; i < count; i++) {
        if (schema_errors_full(errs)) {
            errs->more = true;
            break;
        }
        schema_path item = {&at, NULL, i};
        ok = schema_bind_text_one(s->items, values[i], items ? items + i * size : NULL, &item, errs) && ok;
        for (size_t j = 0; s->unique_items && ok && j < i; j++)
            if (strcmp(values[i], values[j]) == 0) {
                schema_fail(errs, &item, "repeats item [%zu]; the items must be unique", j);
                ok = false;
            }
    }
    if (dst) {
        SCHEMA_LIST(void) list = {items, count};
        memcpy(dst, &list, sizeof(list));
    }
    return ok;
}
