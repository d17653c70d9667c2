/* schema_test: the schema language (include/apiary/schema.h): declarations checked, values validated and
 * bound, every violation listed with its place, parameters read from text, JSON Schema written out. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "schema.h"
#include "schema_internal.h"

typedef struct tag_in {
    const char *name;
    int64_t weight;
} tag_in;

typedef struct doc_in {
    const char *name;
    int64_t count;
    double ratio;
    bool active;
    int order; /* enum index */
    const char *homepage;
    SCHEMA_LIST(const char *) tags;
    SCHEMA_LIST(tag_in) weighted;
    tag_in main;
    const json_t *extra;
    const char *note;
} doc_in;

static const schema_member tag_members[] = {
    SCHEMA_REQUIRED(tag_in, name, SCHEMA_STRING(.min_length = 1)),
    SCHEMA_OPTIONAL(tag_in, weight, SCHEMA_INTEGER(.min = SCHEMA_GE(0), .max = SCHEMA_LE(10))),
    SCHEMA_END,
};

static const schema_member doc_members[] = {
    SCHEMA_REQUIRED(doc_in, name, SCHEMA_STRING(.min_length = 1, .max_length = 5)),
    SCHEMA_OPTIONAL(doc_in, count, SCHEMA_INTEGER(.min = SCHEMA_GT(0), .max = SCHEMA_LE(100), .multiple_of = 5)),
    SCHEMA_OPTIONAL(doc_in, ratio, SCHEMA_NUMBER(.min = SCHEMA_GE(0), .max = SCHEMA_LT(1))),
    SCHEMA_OPTIONAL(doc_in, active, SCHEMA_BOOLEAN()),
    SCHEMA_OPTIONAL(doc_in, order, SCHEMA_ENUM("asc", "desc")),
    SCHEMA_OPTIONAL(doc_in, homepage, SCHEMA_STRING(.format = SCHEMA_FORMAT_URI)),
    SCHEMA_OPTIONAL(doc_in, tags, SCHEMA_ARRAY(SCHEMA_STRING(.pattern = SCHEMA_PATTERN("^[a-z0-9-]{1,32}$")),
                                               .max_items = 4, .unique_items = true)),
    SCHEMA_OPTIONAL(doc_in, weighted, SCHEMA_ARRAY(SCHEMA_OBJECT(tag_in, tag_members), .min_items = 1)),
    SCHEMA_OPTIONAL(doc_in, main, SCHEMA_OBJECT(tag_in, tag_members)),
    SCHEMA_OPTIONAL(doc_in, extra, SCHEMA_ANY()),
    SCHEMA_OPTIONAL(doc_in, note, SCHEMA_STRING(.nullable = true)),
    SCHEMA_END,
};
static const schema doc_schema = SCHEMA_OBJECT_OF(doc_in, doc_members);

static arena test_arena;
static json_t *held[16]; /* documents whose strings a test's bound struct still points into */
static size_t held_count;

static void setup(void)
{
    arena_init(&test_arena);
    char err[256] = "";
    cr_assert_eq(schema_check(&doc_schema, err, sizeof(err)), 0, "%s", err);
}

static void teardown(void)
{
    for (size_t i = 0; i < held_count; i++)
        json_decref(held[i]);
    held_count = 0;
    arena_reset(&test_arena);
}

TestSuite(schema, .init = setup, .fini = teardown);

/* Validates text against doc_schema into *out (starting as zeroes but for count = 7). */
static bool bind_text(const char *text, doc_in *out, schema_errors *errs)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_ALLOW_NUL, &jerr);
    cr_assert_not_null(v, "%s: %s", text, jerr.text);
    memset(out, 0, sizeof(*out));
    out->count = 7;
    schema_errors_init(errs, &test_arena, "body");
    bool ok = schema_bind(&doc_schema, v, out, "", errs);
    /* Strings and lists point into v or the arena: v lives until the test ends. */
    cr_assert_lt(held_count, sizeof(held) / sizeof(held[0]));
    held[held_count++] = v;
    return ok;
}

static const schema_error *find_error(const schema_errors *errs, const char *field)
{
    for (size_t i = 0; i < errs->count; i++)
        if (strcmp(errs->list[i].field, field) == 0)
            return &errs->list[i];
    return NULL;
}

Test(schema, binds_every_type)
{
    doc_in d;
    schema_errors errs;
    cr_assert(bind_text(
        "{\"name\":\"héllo\",\"count\":95,\"ratio\":0.5,\"active\":true,\"order\":\"desc\","
        "\"homepage\":\"https://example.org/a?b=c\",\"tags\":[\"a\",\"b-2\"],"
        "\"weighted\":[{\"name\":\"x\",\"weight\":3},{\"name\":\"y\"}],\"main\":{\"name\":\"m\",\"weight\":1},"
        "\"extra\":[1,{\"k\":null}],\"note\":null}",
        &d, &errs));
    cr_assert_eq(errs.count, 0);
    cr_assert_str_eq(d.name, "héllo"); /* 5 characters, 6 bytes: lengths count characters */
    cr_assert_eq(d.count, 95);
    cr_assert_float_eq(d.ratio, 0.5, 1e-12);
    cr_assert(d.active);
    cr_assert_eq(d.order, 1);
    cr_assert_str_eq(d.homepage, "https://example.org/a?b=c");
    cr_assert_eq(d.tags.count, 2);
    cr_assert_str_eq(d.tags.items[1], "b-2");
    cr_assert_eq(d.weighted.count, 2);
    cr_assert_str_eq(d.weighted.items[0].name, "x");
    cr_assert_eq(d.weighted.items[0].weight, 3);
    cr_assert_eq(d.weighted.items[1].weight, 0); /* absent in an item: zero */
    cr_assert_str_eq(d.main.name, "m");
    cr_assert(json_is_array(d.extra));
    cr_assert_null(d.note);
}

Test(schema, absent_optional_members_keep_their_defaults)
{
    doc_in d;
    schema_errors errs;
    cr_assert(bind_text("{\"name\":\"a\"}", &d, &errs));
    cr_assert_eq(d.count, 7);
    cr_assert_eq(d.tags.count, 0);
    cr_assert_null(d.extra);
}

Test(schema, lists_every_violation_with_its_place)
{
    doc_in d;
    schema_errors errs;
    cr_assert_not(
        bind_text("{\"count\":3,\"ratio\":1,\"active\":\"yes\",\"order\":\"up\",\"homepage\":\"ftp://x\","
                  "\"tags\":[\"ok\",\"Not Ok\"],\"weighted\":[{\"weight\":11}],\"main\":{\"name\":\"\",\"x\":1},"
                  "\"colour\":\"red\",\"note\":5}",
                  &d, &errs));
    struct {
        const char *field, *detail;
    } want[] = {
        {"name", "is required: a string of 1 to 5 characters"},
        {"count", "must be an integer > 0 and <= 100, a multiple of 5"},
        {"ratio", "must be a number >= 0 and < 1"},
        {"active", "must be true or false"},
        {"order", "must be one of asc, desc"},
        {"homepage", "must be an http or https URI"},
        {"tags[1]", "must match ^[a-z0-9-]{1,32}$"},
        {"weighted[0].name", "is required: a string of at least 1 character"},
        {"weighted[0].weight", "must be an integer between 0 and 10"},
        {"main.name", "must be a string of at least 1 character"},
        {"main.x", NULL},
        {"colour", NULL},
        {"note", "must be a string or null"},
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const schema_error *e = find_error(&errs, want[i].field);
        cr_assert_not_null(e, "no error for %s", want[i].field);
        cr_assert_str_eq(e->in, "body");
        if (want[i].detail)
            cr_assert_str_eq(e->detail, want[i].detail, "%s: %s", want[i].field, e->detail);
    }
    cr_assert_eq(errs.count, sizeof(want) / sizeof(want[0]));
    cr_assert(strstr(find_error(&errs, "colour")->detail, "is not a known member (name, count,"));
}

Test(schema, wrong_document_types)
{
    doc_in d;
    schema_errors errs;
    cr_assert_not(bind_text("[1]", &d, &errs));
    cr_assert_eq(errs.count, 1);
    cr_assert_str_eq(errs.list[0].field, "");
    cr_assert_str_eq(errs.list[0].detail, "must be an object");
    cr_assert_not(bind_text("{\"name\":\"a\",\"count\":5.0}", &d, &errs)); /* integers are written as integers */
    cr_assert_not(bind_text("{\"name\":\"a\",\"ratio\":true}", &d, &errs));
    cr_assert_not(bind_text("{\"name\":\"a\\u0000b\"}", &d, &errs));
    cr_assert_str_eq(errs.list[0].detail, "must not contain the character U+0000");
    cr_assert_not(bind_text("{\"name\":\"abcdef\"}", &d, &errs));
    cr_assert_str_eq(errs.list[0].detail, "must be a string of 1 to 5 characters");
}

Test(schema, unique_items)
{
    doc_in d;
    schema_errors errs;
    cr_assert_not(bind_text("{\"name\":\"a\",\"tags\":[\"x\",\"y\",\"x\"]}", &d, &errs));
    cr_assert_str_eq(errs.list[0].field, "tags[2]");
    cr_assert(strstr(errs.list[0].detail, "[0]"));
    cr_assert_not(bind_text("{\"name\":\"a\",\"tags\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}", &d, &errs));
    cr_assert_str_eq(errs.list[0].detail, "must be an array of at most 4 items");
    cr_assert_not(bind_text("{\"name\":\"a\",\"weighted\":[]}", &d, &errs));
    cr_assert_str_eq(errs.list[0].detail, "must be an array of at least 1 item");
}

/* Declarations are file-scope data: a compound literal inside a function would not be static. */
static const schema_member list_m[] = {SCHEMA_UNBOUND("v", 0, SCHEMA_ARRAY(SCHEMA_INTEGER())), SCHEMA_END};
static const schema list_s = {.type = SCHEMA_T_OBJECT, .members = list_m};

Test(schema, the_list_is_bounded)
{
    const schema s = list_s;
    json_t *v = json_pack("{s:[]}", "v");
    for (int i = 0; i < 100; i++)
        json_array_append_new(json_object_get(v, "v"), json_string("x"));
    schema_errors errs;
    schema_errors_init(&errs, &test_arena, "body");
    cr_assert_not(schema_bind(&s, v, NULL, "", &errs));
    cr_assert_eq(errs.count, SCHEMA_MAX_ERRORS);
    cr_assert(errs.more);
    cr_assert_str_eq(errs.list[31].field, "v[31]");
    char detail[256];
    json_t *extra = schema_errors_json(&errs, detail, sizeof(detail));
    cr_assert_eq(json_array_size(json_object_get(extra, "errors")), SCHEMA_MAX_ERRORS);
    cr_assert_str_eq(json_string_value(json_object_get(extra, "field")), "v[0]");
    cr_assert_str_eq(detail, "v[0] must be an integer (and 31 or more)");
    json_decref(extra);
    json_decref(v);
}

static const schema_member open_m[] = {SCHEMA_UNBOUND("a", SCHEMA_MEMBER_REQUIRED, SCHEMA_INTEGER()), SCHEMA_END};
static const schema open_s = {.type = SCHEMA_T_OBJECT, .members = open_m, .open = true};

Test(schema, open_objects_allow_unknown_members)
{
    const schema s = open_s;
    json_t *v = json_pack("{s:i,s:s}", "a", 1, "b", "x");
    schema_errors errs;
    schema_errors_init(&errs, &test_arena, "body");
    cr_assert(schema_bind(&s, v, NULL, "", &errs));
    json_decref(v);
}

Test(schema, integer_bounds_are_exact_at_64_bits)
{
    static const schema s = {.type = SCHEMA_T_INTEGER, .min = SCHEMA_GE(INT64_MAX - 1)};
    schema_errors errs;
    schema_errors_init(&errs, &test_arena, "body");
    int64_t out = 0;
    json_t *ok = json_integer(INT64_MAX), *low = json_integer(INT64_MAX - 2);
    cr_assert(schema_bind(&s, ok, &out, "v", &errs));
    cr_assert_eq(out, INT64_MAX);
    cr_assert_not(schema_bind(&s, low, &out, "v", &errs));
    json_decref(ok);
    json_decref(low);
}

Test(schema, formats)
{
    struct {
        schema_format f;
        const char *text;
        bool ok;
    } cases[] = {
        {SCHEMA_FORMAT_URI, "http://a.example/x%20y", true},
        {SCHEMA_FORMAT_URI, "https://[::1]:8080/", true},
        {SCHEMA_FORMAT_URI, "https://example.org:65536/", false},
        {SCHEMA_FORMAT_URI, "mailto:a@b.c", false},
        {SCHEMA_FORMAT_URI, "http://a b/", false},
        {SCHEMA_FORMAT_URI, "http:///x", false},
        {SCHEMA_FORMAT_URI, "http://x/%zz", false},
        {SCHEMA_FORMAT_EMAIL, "bee@hive.example", true},
        {SCHEMA_FORMAT_EMAIL, "b.e+e@hive.example", true},
        {SCHEMA_FORMAT_EMAIL, "bee@localhost", false},
        {SCHEMA_FORMAT_EMAIL, ".bee@hive.example", false},
        {SCHEMA_FORMAT_EMAIL, "bee", false},
        {SCHEMA_FORMAT_DATE_TIME, "2026-12-07T00:20:00Z", true},
        {SCHEMA_FORMAT_DATE_TIME, "2024-02-29T23:59:60.123+01:00", true},
        {SCHEMA_FORMAT_DATE_TIME, "2026-02-29T00:00:00Z", false},
        {SCHEMA_FORMAT_DATE_TIME, "2026-12-07 00:20:00Z", false},
        {SCHEMA_FORMAT_DATE_TIME, "2026-12-07T24:00:00Z", false},
        {SCHEMA_FORMAT_DATE_TIME, "2026-12-07T00:20:00", false},
        {SCHEMA_FORMAT_UUID, "123e4567-e89b-12d3-a456-426614174000", true},
        {SCHEMA_FORMAT_UUID, "123e4567e89b12d3a456426614174000", false},
        {SCHEMA_FORMAT_UUID, "123e4567-e89b-12d3-a456-42661417400g", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        schema s = {.type = SCHEMA_T_STRING, .format = cases[i].f};
        json_t *v = json_string(cases[i].text);
        schema_errors errs;
        schema_errors_init(&errs, &test_arena, "body");
        cr_expect_eq(schema_bind(&s, v, NULL, "v", &errs), cases[i].ok, "%s", cases[i].text);
        json_decref(v);
    }
}

/* ---- parameters from text ------------------------------------------------------------------------ */

typedef struct params_in {
    int64_t limit;
    double at;
    bool full;
    int sort;
    const char *q;
    SCHEMA_LIST(int64_t) ids;
} params_in;

static const schema_member params[] = {
    SCHEMA_OPTIONAL(params_in, limit, SCHEMA_INTEGER(.min = SCHEMA_GE(1), .max = SCHEMA_LE(100))),
    SCHEMA_OPTIONAL(params_in, at, SCHEMA_NUMBER()),
    SCHEMA_OPTIONAL(params_in, full, SCHEMA_BOOLEAN()),
    SCHEMA_OPTIONAL(params_in, sort, SCHEMA_ENUM("name", "id")),
    SCHEMA_REQUIRED(params_in, q, SCHEMA_STRING(.max_length = 3)),
    SCHEMA_OPTIONAL(params_in, ids, SCHEMA_ARRAY(SCHEMA_INTEGER(), .max_items = 3)),
    SCHEMA_END,
};

static bool param(size_t i, const char *text, params_in *out, schema_errors *errs)
{
    schema_errors_init(errs, &test_arena, "query");
    return schema_bind_text(&params[i], &text, 1, out, errs);
}

Test(schema, parameters_from_text)
{
    char err[256] = "";
    cr_assert_eq(schema_check_members(params, "query", err, sizeof(err)), 0, "%s", err);
    params_in p = {.limit = 20};
    schema_errors errs;
    cr_assert(param(0, "100", &p, &errs));
    cr_assert_eq(p.limit, 100);
    const char *bad_ints[] = {"0", "101", "+5", " 5", "5 ", "1e2", "1.0", "", "-", "99999999999999999999", "0x10"};
    for (size_t i = 0; i < sizeof(bad_ints) / sizeof(bad_ints[0]); i++) {
        cr_expect_not(param(0, bad_ints[i], &p, &errs), "%s", bad_ints[i]);
        cr_expect_str_eq(errs.list[0].detail, "must be an integer between 1 and 100");
        cr_expect_str_eq(errs.list[0].in, "query");
    }
    cr_assert(param(1, "-1.5e3", &p, &errs));
    cr_assert_float_eq(p.at, -1500, 1e-9);
    cr_assert_not(param(1, "nan", &p, &errs));
    cr_assert_not(param(1, "inf", &p, &errs));
    cr_assert_not(param(1, "1e999", &p, &errs));
    cr_assert(param(2, "true", &p, &errs));
    cr_assert(p.full);
    cr_assert_not(param(2, "1", &p, &errs));
    cr_assert(param(3, "id", &p, &errs));
    cr_assert_eq(p.sort, 1);
    cr_assert(param(4, "日本語", &p, &errs));
    cr_assert_not(param(4, "abcd", &p, &errs));
    cr_assert_not(param(4, "\xff", &p, &errs));
    cr_assert_str_eq(errs.list[0].detail, "must be valid UTF-8");

    schema_errors_init(&errs, &test_arena, "query");
    cr_assert_not(schema_bind_text(&params[4], NULL, 0, &p, &errs));
    cr_assert_str_eq(errs.list[0].detail, "is required: a string of at most 3 characters");
    const char *two[] = {"a", "b"};
    cr_assert_not(schema_bind_text(&params[0], two, 2, &p, &errs));
    const char *ids[] = {"3", "x", "5"};
    schema_errors_init(&errs, &test_arena, "query");
    cr_assert_not(schema_bind_text(&params[5], ids, 3, &p, &errs));
    cr_assert_str_eq(errs.list[0].field, "ids[1]");
    ids[1] = "4";
    cr_assert(schema_bind_text(&params[5], ids, 3, &p, &errs));
    cr_assert_eq(p.ids.count, 3);
    cr_assert_eq(p.ids.items[2], 5);
}

/* ---- declarations -------------------------------------------------------------------------------- */

typedef struct small {
    int narrow;
    int64_t wide;
} small;
static const schema_member wrong_size[] = {SCHEMA_REQUIRED(small, narrow, SCHEMA_INTEGER()), SCHEMA_END};
static const schema s1 = SCHEMA_OBJECT_OF(small, wrong_size);
static const schema s2 = {.type = SCHEMA_T_STRING, .pattern = SCHEMA_PATTERN("([a-z")};
static const schema s3 = {.type = SCHEMA_T_INTEGER, .min = SCHEMA_GE(5), .max = SCHEMA_LE(1)};
static const schema s4 = {.type = SCHEMA_T_ARRAY, .unique_items = true};
static const schema_member twice[] = {SCHEMA_REQUIRED(small, wide, SCHEMA_INTEGER()),
                                      SCHEMA_OPTIONAL(small, wide, SCHEMA_INTEGER()), SCHEMA_END};
static const schema s5 = SCHEMA_OBJECT_OF(small, twice);
static const schema_member object_param[] = {SCHEMA_UNBOUND("o", 0, SCHEMA_ANY()), SCHEMA_END};

Test(schema, inconsistent_declarations_are_refused)
{
    char err[256];
    cr_assert_eq(schema_check(&s1, err, sizeof(err)), -1);
    cr_assert(strstr(err, "narrow: its field has 4 bytes, but the schema binds 8"), "%s", err);

    cr_assert_eq(schema_check(&s2, err, sizeof(err)), -1);
    cr_assert(strstr(err, "does not compile"), "%s", err);

    cr_assert_eq(schema_check(&s3, err, sizeof(err)), -1);

    cr_assert_eq(schema_check(&s4, err, sizeof(err)), -1);
    cr_assert(strstr(err, "max_items"), "%s", err);

    cr_assert_eq(schema_check(&s5, err, sizeof(err)), -1);
    cr_assert(strstr(err, "declared twice"), "%s", err);

    cr_assert_eq(schema_check_members(object_param, "query", err, sizeof(err)), -1);
}

Test(schema, json_schema_out)
{
    json_t *j = schema_to_json(&doc_schema);
    char *text = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
    cr_assert(strstr(text, "\"required\":[\"name\"]"), "%s", text);
    cr_assert(strstr(text, "\"additionalProperties\":false"), "%s", text);
    cr_assert(
        strstr(text, "\"count\":{\"exclusiveMinimum\":0,\"maximum\":100,\"multipleOf\":5.0,\"type\":\"integer\"}"),
        "%s", text);
    cr_assert(strstr(text, "\"note\":{\"type\":[\"string\",\"null\"]}"), "%s", text);
    cr_assert(strstr(text, "\"order\":{\"enum\":[\"asc\",\"desc\"],\"type\":\"string\"}"), "%s", text);
    cr_assert(strstr(text, "\"pattern\":\"^[a-z0-9-]{1,32}$\""), "%s", text);
    cr_assert(strstr(text, "\"homepage\":{\"format\":\"uri\",\"type\":\"string\"}"), "%s", text);
    cr_assert(strstr(text, "\"uniqueItems\":true"), "%s", text);
    free(text);
    json_decref(j);
}

/* ---- C types beyond the defaults, converters, error kinds (what apiary's own config needs) ---- */

typedef struct endpoint {
    char host[16];
    unsigned port;
} endpoint;

typedef struct server_cfg {
    unsigned threads;
    size_t max_body;
    char name[8];
    endpoint listen;
    struct {
        unsigned header_ms;
    } timeouts;
} server_cfg;

/* "HOST:PORT" into an endpoint: the grammar a declaration cannot spell. */
static bool bind_endpoint(const json_t *v, void *out, const char *field, schema_errors *errs)
{
    const char *t = json_string_value(v), *colon = strrchr(t, ':');
    endpoint e = {0};
    if (!colon || colon == t || (size_t)(colon - t) >= sizeof(e.host) || !colon[1])
        return schema_refuse(errs, field, "'%s' is not HOST:PORT", t);
    memcpy(e.host, t, (size_t)(colon - t));
    e.port = (unsigned)atoi(colon + 1);
    if (out)
        memcpy(out, &e, sizeof(e));
    return true;
}

static const schema_member server_members[] = {
    SCHEMA_OPTIONAL(server_cfg, threads,
                    SCHEMA_INTEGER(.min = SCHEMA_GE(0), .max = SCHEMA_LE(256), .bind_as = SCHEMA_AS_UNSIGNED)),
    SCHEMA_MEMBER("max_body_bytes", server_cfg, max_body, 0,
                  SCHEMA_INTEGER(.min = SCHEMA_GE(0), .max = SCHEMA_LE(1099511627776LL), .bind_as = SCHEMA_AS_SIZE)),
    SCHEMA_OPTIONAL(server_cfg, name, SCHEMA_STRING(.bind_as = SCHEMA_AS_CHARS, .max_bytes = 7)),
    SCHEMA_REQUIRED(server_cfg, listen,
                    SCHEMA_STRING(.convert = SCHEMA_CONVERT(endpoint, "a string \"HOST:PORT\"", bind_endpoint))),
    /* A section whose keys are fields of the same struct. */
    SCHEMA_MEMBER_WHOLE("timeouts", server_cfg, 0,
                        SCHEMA_OBJECT(server_cfg, (const schema_member[]){
                            SCHEMA_MEMBER("header_ms", server_cfg, timeouts.header_ms, 0,
                                          SCHEMA_INTEGER(.min = SCHEMA_GE(1), .max = SCHEMA_LE(60000),
                                                         .bind_as = SCHEMA_AS_UNSIGNED)),
                            SCHEMA_END})),
    SCHEMA_END,
};
static const schema server_schema = SCHEMA_OBJECT_OF(server_cfg, server_members);

static bool bind_server(const char *text, server_cfg *out, schema_errors *errs)
{
    char err[256] = "";
    cr_assert_eq(schema_check(&server_schema, err, sizeof(err)), 0, "%s", err);
    json_t *v = json_loads(text, 0, NULL);
    cr_assert_not_null(v, "%s", text);
    memset(out, 0xAB, sizeof(*out)); /* what the document leaves out keeps this */
    schema_errors_init(errs, &test_arena, "config");
    bool ok = schema_bind(&server_schema, v, out, "", errs);
    held[held_count++] = v;
    return ok;
}

Test(schema, binds_unsigned_size_t_char_arrays_and_converters)
{
    server_cfg c;
    schema_errors errs;
    cr_assert(bind_server("{\"threads\":256,\"max_body_bytes\":1099511627776,\"name\":\"api-7\","
                          "\"listen\":\"10.0.0.1:8080\",\"timeouts\":{\"header_ms\":60000}}",
                          &c, &errs));
    cr_assert_eq(c.threads, 256);
    cr_assert_eq(c.max_body, (size_t)1099511627776LL);
    cr_assert_str_eq(c.name, "api-7", "a copy, not a pointer into the document");
    cr_assert_str_eq(c.listen.host, "10.0.0.1");
    cr_assert_eq(c.listen.port, 8080);
    cr_assert_eq(c.timeouts.header_ms, 60000);
    cr_assert(bind_server("{\"listen\":\"h:1\"}", &c, &errs));
    cr_assert_eq(c.threads, 0xABABABABu, "absent: left as it was");
}

Test(schema, converters_run_after_the_declared_checks_and_word_their_refusals)
{
    server_cfg c;
    schema_errors errs;
    cr_assert_not(bind_server("{\"threads\":-1,\"name\":\"too-long-name\",\"listen\":8080,\"timeouts\":{\"x\":1},"
                              "\"nope\":true}", &c, &errs));
    cr_assert_eq(errs.count, 5);
    cr_assert_str_eq(find_error(&errs, "threads")->detail, "must be an integer between 0 and 256");
    cr_assert_str_eq(find_error(&errs, "name")->detail, "must be a string of at most 7 bytes in UTF-8");
    /* The converter's words say what a value of the wrong type must be. */
    cr_assert_str_eq(find_error(&errs, "listen")->detail, "must be a string \"HOST:PORT\"");
    cr_assert_eq(find_error(&errs, "listen")->kind, SCHEMA_ERROR_VALUE);
    cr_assert_eq(find_error(&errs, "timeouts.x")->kind, SCHEMA_ERROR_UNKNOWN);
    cr_assert_eq(find_error(&errs, "nope")->kind, SCHEMA_ERROR_UNKNOWN);
    cr_assert_not(find_error(&errs, "nope")->cut);

    cr_assert_not(bind_server("{\"listen\":\"nohost\"}", &c, &errs));
    cr_assert_eq(errs.count, 1);
    cr_assert_str_eq(errs.list[0].field, "listen");
    cr_assert_str_eq(errs.list[0].detail, "'nohost' is not HOST:PORT");

    cr_assert_not(bind_server("{}", &c, &errs));
    cr_assert_eq(errs.list[0].kind, SCHEMA_ERROR_MISSING);
    cr_assert_str_eq(errs.list[0].field, "listen");

    char doc[400], key[201];
    memset(key, 'k', 200);
    key[200] = '\0';
    snprintf(doc, sizeof(doc), "{\"listen\":\"h:1\",\"timeouts\":{\"%s\":1}}", key);
    cr_assert_not(bind_server(doc, &c, &errs));
    cr_assert(errs.list[0].cut, "a member name past 100 bytes is cut, and says so");
    cr_assert_eq(strlen(errs.list[0].field), 100);
}

/* Declarations are file-scope data (the compound literals are static only there). */
typedef struct narrow {
    unsigned u;
    char text[4];
} narrow;
#define NARROW(member) SCHEMA_OBJECT_OF(narrow, (const schema_member[]){member, SCHEMA_END})
static const schema unbounded_unsigned = NARROW(SCHEMA_OPTIONAL(narrow, u, SCHEMA_INTEGER(.bind_as = SCHEMA_AS_UNSIGNED)));
static const schema negative_unsigned = NARROW(SCHEMA_OPTIONAL(
    narrow, u, SCHEMA_INTEGER(.min = SCHEMA_GE(-1), .max = SCHEMA_LE(5), .bind_as = SCHEMA_AS_UNSIGNED)));
static const schema too_big_unsigned = NARROW(SCHEMA_OPTIONAL(
    narrow, u, SCHEMA_INTEGER(.min = SCHEMA_GE(0), .max = SCHEMA_LE(5000000000LL), .bind_as = SCHEMA_AS_UNSIGNED)));
static const schema chars_wrong_size =
    NARROW(SCHEMA_OPTIONAL(narrow, text, SCHEMA_STRING(.bind_as = SCHEMA_AS_CHARS, .max_bytes = 4)));
static const schema chars_unbounded = NARROW(SCHEMA_OPTIONAL(narrow, text, SCHEMA_STRING(.bind_as = SCHEMA_AS_CHARS)));
static const schema_member converter_param[] = {
    SCHEMA_REQUIRED(server_cfg, listen, SCHEMA_STRING(.convert = SCHEMA_CONVERT(endpoint, "HOST:PORT", bind_endpoint))),
    SCHEMA_END,
};

Test(schema, bindings_that_cannot_hold_their_values_are_refused)
{
    char err[256];
    cr_assert_eq(schema_check(&unbounded_unsigned, err, sizeof(err)), -1);
    cr_assert(strstr(err, "u: an integer bound to unsigned needs bounds inside its range"), "%s", err);
    cr_assert_eq(schema_check(&negative_unsigned, err, sizeof(err)), -1);
    cr_assert_eq(schema_check(&too_big_unsigned, err, sizeof(err)), -1);
    cr_assert_eq(schema_check(&chars_wrong_size, err, sizeof(err)), -1);
    cr_assert(strstr(err, "text: its field has 4 bytes, but the schema binds 5"), "%s", err);
    cr_assert_eq(schema_check(&chars_unbounded, err, sizeof(err)), -1);
    cr_assert(strstr(err, "SCHEMA_AS_CHARS"), "%s", err);
    cr_assert_eq(schema_check_members(converter_param, "query", err, sizeof(err)), -1, "no converters on parameters");
}

Test(schema, a_converter_is_documented_in_its_words)
{
    json_t *j = schema_to_json(&server_schema);
    json_t *listen = json_object_get(json_object_get(j, "properties"), "listen");
    cr_assert_str_eq(json_string_value(json_object_get(listen, "type")), "string");
    cr_assert_str_eq(json_string_value(json_object_get(listen, "description")), "a string \"HOST:PORT\"");
    json_decref(j);
}

Test(schema, refuse_adds_and_returns_false)
{
    schema_errors errs;
    schema_errors_init(&errs, &test_arena, "config");
    cr_assert_not(schema_refuse(&errs, "catalog", "must name an upstream, not '%s'", "x"));
    cr_assert_eq(errs.count, 1);
    cr_assert_str_eq(errs.list[0].detail, "must name an upstream, not 'x'");
    cr_assert_eq(errs.list[0].kind, SCHEMA_ERROR_VALUE);
}

/* The byte count settles most strings without counting characters (valid UTF-8 has len/4..len of
 * them); where it does not, the characters are counted: both edges, in 1- to 4-byte characters. */
static const schema_member len_members[] = {
    SCHEMA_UNBOUND("s", SCHEMA_MEMBER_REQUIRED, SCHEMA_STRING(.min_length = 3, .max_length = 3)),
    SCHEMA_END,
};
static const schema len_schema = {.type = SCHEMA_T_OBJECT, .members = len_members};

Test(schema, lengths_count_characters_whatever_the_bytes)
{
    static const struct {
        const char *text;
        bool ok;
    } cases[] = {
        {"{\"s\":\"abc\"}", true},           {"{\"s\":\"ab\"}", false},
        {"{\"s\":\"abcd\"}", false},         {"{\"s\":\"\xc3\xa9\xc3\xa9\xc3\xa9\"}", true},
        {"{\"s\":\"\xc3\xa9\xc3\xa9\"}", false}, {"{\"s\":\"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\"}", true},
        {"{\"s\":\"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\"}", false},
        {"{\"s\":\"\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\xf0\x9f\x98\x80\"}", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *v = json_loads(cases[i].text, 0, NULL);
        cr_assert_not_null(v, "%s", cases[i].text);
        schema_errors errs;
        schema_errors_init(&errs, &test_arena, "body");
        cr_assert_eq(schema_bind(&len_schema, v, NULL, "", &errs), cases[i].ok, "%s", cases[i].text);
        json_decref(v);
    }
}

/* schema_utf8_valid takes eight ASCII bytes at a time: a bad or a good sequence is judged the same at
 * every offset after an ASCII run, whether it falls inside a word, across two or in the tail. */
Test(schema, utf8_check_is_the_same_at_every_offset_after_ascii)
{
    static const struct {
        const char *seq;
        bool ok;
    } seqs[] = {
        {"\xc3\xa9", true},          {"\xe2\x82\xac", true},  {"\xf0\x9f\x98\x80", true}, {"\xff", false},
        {"\xc0\xaf", false},         {"\xed\xa0\x80", false}, {"\xe2\x82", false},        {"\x80", false},
        {"\xf4\x90\x80\x80", false},
    };
    char text[64];
    for (size_t i = 0; i < sizeof(seqs) / sizeof(seqs[0]); i++) {
        size_t n = strlen(seqs[i].seq);
        for (size_t at = 0; at <= 24; at++) {
            for (size_t after = 0; after <= 9; after += 9) {
                memset(text, 'a', at);
                memcpy(text + at, seqs[i].seq, n);
                memset(text + at + n, 'z', after);
                cr_assert_eq(schema_utf8_valid(text, at + n + after), seqs[i].ok, "sequence %zu at %zu, %zu after", i,
                             at, after);
            }
        }
    }
    cr_assert(schema_utf8_valid("", 0));
    cr_assert(schema_utf8_valid("exactly8", 8));
    cr_assert(schema_utf8_valid("sixteen bytes ok", 16));
}

/* ---- "default" in the JSON Schema out (OpenAPI: a route's ROUTE_INPUT defaults) -------------------- */

typedef struct defaults_inner {
    int64_t depth;
} defaults_inner;

typedef struct defaults_in {
    int64_t limit, offset, sentinel, required_n;
    double ratio;
    bool verbose, quiet;
    const char *sort, *none;
    int order;
    char tag[8];
    defaults_inner inner;
} defaults_in;

static const schema defaults_schema = SCHEMA_OBJECT_OF(
    defaults_in,
    (const schema_member[]){
        SCHEMA_OPTIONAL(defaults_in, limit, SCHEMA_INTEGER(.min = SCHEMA_GE(1), .max = SCHEMA_LE(100))),
        SCHEMA_OPTIONAL(defaults_in, offset, SCHEMA_INTEGER()),
        SCHEMA_OPTIONAL(defaults_in, sentinel, SCHEMA_INTEGER(.min = SCHEMA_GE(0))),
        SCHEMA_REQUIRED(defaults_in, required_n, SCHEMA_INTEGER()),
        SCHEMA_OPTIONAL(defaults_in, ratio, SCHEMA_NUMBER()),
        SCHEMA_OPTIONAL(defaults_in, verbose, SCHEMA_BOOLEAN()),
        SCHEMA_OPTIONAL(defaults_in, quiet, SCHEMA_BOOLEAN()),
        SCHEMA_OPTIONAL(defaults_in, sort, SCHEMA_STRING(.min_length = 1)),
        SCHEMA_OPTIONAL(defaults_in, none, SCHEMA_STRING()),
        SCHEMA_OPTIONAL(defaults_in, order, SCHEMA_ENUM("asc", "desc")),
        SCHEMA_OPTIONAL(defaults_in, tag, SCHEMA_STRING(.bind_as = SCHEMA_AS_CHARS, .max_bytes = 7)),
        SCHEMA_OPTIONAL(defaults_in, inner,
                        SCHEMA_OBJECT(defaults_inner, (const schema_member[]){
                                                          SCHEMA_OPTIONAL(defaults_inner, depth, SCHEMA_INTEGER()),
                                                          SCHEMA_END})),
        SCHEMA_END});

Test(schema, json_schema_out_shows_the_defaults_a_struct_holds)
{
    char err[256] = "";
    cr_assert_eq(schema_check(&defaults_schema, err, sizeof(err)), 0, "%s", err);
    static const defaults_in d = {.limit = 20, .sentinel = -1, .required_n = 5, .ratio = 0.5, .verbose = true,
                                  .sort = "name", .order = 1, .tag = "red", .inner = {.depth = 3}};
    json_t *j = schema_to_json_defaults(&defaults_schema, &d);
    json_t *props = json_object_get(j, "properties");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(props, "limit"), "default")), 20);
    cr_assert_float_eq(json_real_value(json_object_get(json_object_get(props, "ratio"), "default")), 0.5, 1e-12);
    cr_assert(json_is_true(json_object_get(json_object_get(props, "verbose"), "default")));
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(props, "sort"), "default")), "name");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(props, "order"), "default")), "desc");
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(props, "tag"), "default")), "red");
    json_t *inner = json_object_get(json_object_get(props, "inner"), "properties");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(inner, "depth"), "default")), 3,
                 "a nested object's defaults are inside its field");
    /* Zero is no default (a field without one starts so); a required member has none; -1 below the
     * minimum is a sentinel, not a value a client could send. */
    const char *none[] = {"offset", "quiet", "none", "required_n", "sentinel"};
    for (size_t i = 0; i < sizeof(none) / sizeof(none[0]); i++)
        cr_assert_null(json_object_get(json_object_get(props, none[i]), "default"), "%s", none[i]);
    json_decref(j);

    /* Without a struct: no default anywhere, as schema_to_json. */
    j = schema_to_json_defaults(&defaults_schema, NULL);
    char *text = json_dumps(j, JSON_COMPACT);
    cr_assert_null(strstr(text, "\"default\""), "%s", text);
    free(text);
    json_decref(j);

    /* One member at a time (a parameter), and apiary's own config types. */
    const schema_member *limit = &defaults_schema.members[0];
    json_t *v = schema_member_default(limit, &d);
    cr_assert_eq(json_integer_value(v), 20);
    json_decref(v);
    cr_assert_null(schema_member_default(limit, NULL));
    cr_assert_eq(schema_check(&server_schema, err, sizeof(err)), 0, "%s", err);
    server_cfg cfg = {.threads = 4, .max_body = 1024, .name = "srv", .timeouts = {.header_ms = 500}};
    j = schema_to_json_defaults(&server_schema, &cfg);
    props = json_object_get(j, "properties");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(props, "threads"), "default")), 4);
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(props, "max_body_bytes"), "default")), 1024);
    cr_assert_str_eq(json_string_value(json_object_get(json_object_get(props, "name"), "default")), "srv");
    cr_assert_null(json_object_get(json_object_get(props, "listen"), "default"), "required, converted");
    inner = json_object_get(json_object_get(props, "timeouts"), "properties");
    cr_assert_eq(json_integer_value(json_object_get(json_object_get(inner, "header_ms"), "default")), 500,
                 "a member that binds the whole struct finds its members' defaults there");
    json_decref(j);
}
