/* bench/schema_micro.c: what a declared schema costs against the same checks written by hand, on an
 * already parsed document (the parse is the same for both, bench/json_micro.c measures it): the
 * 787-byte bench/data/body.json (every kind of value: nested objects, arrays of objects, a pattern,
 * an email format, unique items) and the items body {"name":...,"price":...}. Both validate the same
 * rules and bind into the same struct; the hand-written one stops at the first violation, as hand
 * checks do. Not part of the build (timings do not belong in tests):
 *
 *   gcc -O2 -D_GNU_SOURCE -Iinclude/apiary -Ilib/base -Ilib/json -Ilib/schema bench/schema_micro.c \
 *       lib/schema/schema.c lib/schema/schema_format.c lib/schema/schema_json.c lib/base/arena.c \
 *       lib/base/xalloc.c lib/base/log.c -ljansson -lm -lpthread -o /tmp/schema_micro
 *   taskset -c 1 /tmp/schema_micro bench/data/body.json
 *
 * Instructions per document, which a loaded machine does not disturb (the four loops are functions
 * of their own for this; divide by twice ROUNDS, the warm-up pass included):
 *
 *   valgrind --tool=callgrind --callgrind-out-file=/tmp/micro.cg /tmp/schema_micro bench/data/body.json 5000
 *   callgrind_annotate --inclusive=yes /tmp/micro.cg | grep -E ':(bind|hand)_(doc|item) '
 */
#include <jansson.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "schema.h"
#include "schema_internal.h"

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

/* ---- the 787-byte document ---------------------------------------------------------------------- */

typedef struct order {
    const char *sku;
    int64_t qty;
    double price;
    const char *note;
} order;

typedef struct address {
    const char *street, *city, *zip;
    SCHEMA_LIST(double) geo;
} address;

typedef struct doc {
    int64_t id;
    const char *name, *email;
    bool active;
    SCHEMA_LIST(const char *) tags;
    double score;
    address address;
    SCHEMA_LIST(order) orders;
} doc;

static const schema_member order_members[] = {
    SCHEMA_REQUIRED(order, sku, SCHEMA_STRING(.pattern = SCHEMA_PATTERN("^[A-Z]-[0-9]{3}$"))),
    SCHEMA_REQUIRED(order, qty, SCHEMA_INTEGER(.min = SCHEMA_GE(0), .max = SCHEMA_LE(1000))),
    SCHEMA_REQUIRED(order, price, SCHEMA_NUMBER(.min = SCHEMA_GE(0))),
    SCHEMA_OPTIONAL(order, note, SCHEMA_STRING(.max_length = 200)),
    SCHEMA_END,
};
static const schema_member address_members[] = {
    SCHEMA_REQUIRED(address, street, SCHEMA_STRING(.min_length = 1, .max_length = 100)),
    SCHEMA_REQUIRED(address, city, SCHEMA_STRING(.min_length = 1, .max_length = 100)),
    SCHEMA_REQUIRED(address, zip, SCHEMA_STRING(.min_length = 1, .max_length = 16)),
    SCHEMA_REQUIRED(address, geo, SCHEMA_ARRAY(SCHEMA_NUMBER(), .min_items = 2, .max_items = 2)),
    SCHEMA_END,
};
static const schema_member doc_members[] = {
    SCHEMA_REQUIRED(doc, id, SCHEMA_INTEGER(.min = SCHEMA_GE(1))),
    SCHEMA_REQUIRED(doc, name, SCHEMA_STRING(.min_length = 1, .max_length = 100)),
    SCHEMA_REQUIRED(doc, email, SCHEMA_STRING(.format = SCHEMA_FORMAT_EMAIL)),
    SCHEMA_REQUIRED(doc, active, SCHEMA_BOOLEAN()),
    SCHEMA_REQUIRED(doc, tags, SCHEMA_ARRAY(SCHEMA_STRING(.pattern = SCHEMA_PATTERN("^[a-z]+$")), .max_items = 16,
                                            .unique_items = true)),
    SCHEMA_REQUIRED(doc, score, SCHEMA_NUMBER(.min = SCHEMA_GE(0), .max = SCHEMA_LE(100))),
    SCHEMA_REQUIRED(doc, address, SCHEMA_OBJECT(address, address_members)),
    SCHEMA_REQUIRED(doc, orders, SCHEMA_ARRAY(SCHEMA_OBJECT(order, order_members), .max_items = 100)),
    SCHEMA_END,
};
static const schema doc_schema = SCHEMA_OBJECT_OF(doc, doc_members);

static regex_t hand_sku_re, hand_tag_re;

/* The hand-written checks: the same rules, the first violation answered (here: counted). */
static size_t hand_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

static bool hand_string(const json_t *v, size_t min, size_t max, const char **out)
{
    if (!json_is_string(v))
        return false;
    size_t len = json_string_length(v), chars = hand_chars(json_string_value(v), len);
    if (memchr(json_string_value(v), '\0', len) || chars < min || (max && chars > max))
        return false;
    *out = json_string_value(v);
    return true;
}

static bool hand_only(const json_t *obj, const char *const *names)
{
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)obj, key, v) {
        size_t i = 0;
        while (names[i] && strcmp(names[i], key) != 0)
            i++;
        if (!names[i])
            return false;
    }
    return true;
}

__attribute__((noinline)) static bool hand_doc(const json_t *d, doc *out, arena *a)
{
    static const char *const top[] = {"id", "name", "email", "active", "tags", "score", "address", "orders", NULL};
    static const char *const addr[] = {"street", "city", "zip", "geo", NULL};
    static const char *const ord[] = {"sku", "qty", "price", "note", NULL};
    if (!json_is_object(d) || !hand_only(d, top))
        return false;
    const json_t *id = json_object_get(d, "id");
    if (!json_is_integer(id) || json_integer_value(id) < 1)
        return false;
    out->id = json_integer_value(id);
    if (!hand_string(json_object_get(d, "name"), 1, 100, &out->name))
        return false;
    const json_t *email = json_object_get(d, "email");
    if (!hand_string(email, 0, 0, &out->email) ||
        !schema_format_valid(SCHEMA_FORMAT_EMAIL, out->email, json_string_length(email)))
        return false;
    const json_t *active = json_object_get(d, "active");
    if (!json_is_boolean(active))
        return false;
    out->active = json_is_true(active);
    const json_t *tags = json_object_get(d, "tags");
    size_t nt = json_array_size(tags);
    if (!json_is_array(tags) || nt > 16)
        return false;
    out->tags.items = arena_alloc(a, nt * sizeof(char *) + 1);
    out->tags.count = nt;
    for (size_t i = 0; i < nt; i++) {
        if (!hand_string(json_array_get(tags, i), 0, 0, &out->tags.items[i]) ||
            regexec(&hand_tag_re, out->tags.items[i], 0, NULL, 0) != 0)
            return false;
        for (size_t j = 0; j < i; j++)
            if (strcmp(out->tags.items[i], out->tags.items[j]) == 0)
                return false;
    }
    const json_t *score = json_object_get(d, "score");
    if (!json_is_number(score) || json_number_value(score) < 0 || json_number_value(score) > 100)
        return false;
    out->score = json_number_value(score);
    const json_t *ad = json_object_get(d, "address");
    if (!json_is_object(ad) || !hand_only(ad, addr) || !hand_string(json_object_get(ad, "street"), 1, 100,
                                                                    &out->address.street) ||
        !hand_string(json_object_get(ad, "city"), 1, 100, &out->address.city) ||
        !hand_string(json_object_get(ad, "zip"), 1, 16, &out->address.zip))
        return false;
    const json_t *geo = json_object_get(ad, "geo");
    if (!json_is_array(geo) || json_array_size(geo) != 2)
        return false;
    out->address.geo.items = arena_alloc(a, 2 * sizeof(double));
    out->address.geo.count = 2;
    for (size_t i = 0; i < 2; i++) {
        if (!json_is_number(json_array_get(geo, i)))
            return false;
        out->address.geo.items[i] = json_number_value(json_array_get(geo, i));
    }
    const json_t *orders = json_object_get(d, "orders");
    size_t no = json_array_size(orders);
    if (!json_is_array(orders) || no > 100)
        return false;
    out->orders.items = arena_alloc(a, no * sizeof(order) + 1);
    out->orders.count = no;
    for (size_t i = 0; i < no; i++) {
        const json_t *o = json_array_get(orders, i);
        order *r = &out->orders.items[i];
        if (!json_is_object(o) || !hand_only(o, ord) || !hand_string(json_object_get(o, "sku"), 0, 0, &r->sku) ||
            regexec(&hand_sku_re, r->sku, 0, NULL, 0) != 0)
            return false;
        const json_t *qty = json_object_get(o, "qty"), *price = json_object_get(o, "price");
        if (!json_is_integer(qty) || json_integer_value(qty) < 0 || json_integer_value(qty) > 1000 ||
            !json_is_number(price) || json_number_value(price) < 0)
            return false;
        r->qty = json_integer_value(qty);
        r->price = json_number_value(price);
        const json_t *note = json_object_get(o, "note");
        r->note = NULL;
        if (note && !hand_string(note, 0, 200, &r->note))
            return false;
    }
    return true;
}

/* ---- the items body ----------------------------------------------------------------------------- */

typedef struct item_in {
    const char *name;
    double price;
} item_in;
static const schema_member item_members[] = {
    SCHEMA_REQUIRED(item_in, name, SCHEMA_STRING(.min_length = 1, .max_length = 200)),
    SCHEMA_REQUIRED(item_in, price, SCHEMA_NUMBER(.min = SCHEMA_GE(0))),
    SCHEMA_END,
};
static const schema item_schema = SCHEMA_OBJECT_OF(item_in, item_members);

/* handlers/items.c before the schemas, its checks verbatim but for the answers. */
__attribute__((noinline)) static bool hand_item(const json_t *body, item_in *out)
{
    if (!json_is_object(body))
        return false;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        if (strcmp(key, "name") != 0 && strcmp(key, "price") != 0)
            return false;
    }
    json_t *name = json_object_get(body, "name"), *price = json_object_get(body, "price");
    size_t chars = json_is_string(name) ? hand_chars(json_string_value(name), json_string_length(name)) : 0;
    if (!json_is_string(name) || chars < 1 || chars > 200 ||
        memchr(json_string_value(name), '\0', json_string_length(name)))
        return false;
    if (!json_is_number(price) || json_number_value(price) < 0)
        return false;
    out->name = json_string_value(name);
    out->price = json_number_value(price);
    return true;
}

/* The declared loops' bodies, as functions a profiler can name. */
__attribute__((noinline)) static bool bind_doc(const json_t *d, doc *out, schema_errors *errs)
{
    return schema_bind(&doc_schema, d, out, "", errs);
}

__attribute__((noinline)) static bool bind_item(const json_t *it, item_in *out, schema_errors *errs)
{
    return schema_bind(&item_schema, it, out, "", errs);
}

static void report(const char *what, double s, int rounds, size_t bytes)
{
    double ns = s / rounds * 1e9;
    printf("%-34s %9.0f ns/doc %7.2f ns/byte\n", what, ns, ns / (double)bytes);
}

int main(int argc, char **argv)
{
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: %s bench/data/body.json [ROUNDS]\n", argv[0]);
        return 2;
    }
    FILE *f = fopen(argv[1], "rb");
    if (!f) {
        perror(argv[1]);
        return 1;
    }
    static char text[1 << 16];
    size_t n = fread(text, 1, sizeof(text), f);
    fclose(f);
    json_t *d = json_loadb(text, n, JSON_REJECT_DUPLICATES, NULL);
    static const char item_text[] = "{\"name\":\"a honeycomb frame, deep\",\"price\":9.5}";
    json_t *it = json_loads(item_text, 0, NULL);
    char err[256];
    if (!d || !it || schema_check(&doc_schema, err, sizeof(err)) || schema_check(&item_schema, err, sizeof(err))) {
        fprintf(stderr, "setup failed: %s\n", err);
        return 1;
    }
    regcomp(&hand_sku_re, "^[A-Z]-[0-9]{3}$", REG_EXTENDED | REG_NOSUB);
    regcomp(&hand_tag_re, "^[a-z]+$", REG_EXTENDED | REG_NOSUB);
    arena a;
    arena_init(&a);
    schema_errors errs;
    const int rounds = argc == 3 ? atoi(argv[2]) : 200000;
    for (int pass = 0; pass < 2; pass++) { /* the first pass warms up; the second is reported */
        doc out;
        double t0 = now_s();
        for (int i = 0; i < rounds; i++) {
            schema_errors_init(&errs, &a, "body");
            if (!bind_doc(d, &out, &errs))
                return 1;
            arena_reset(&a);
        }
        double t1 = now_s();
        for (int i = 0; i < rounds; i++) {
            if (!hand_doc(d, &out, &a))
                return 1;
            arena_reset(&a);
        }
        double t2 = now_s();
        item_in item;
        for (int i = 0; i < rounds; i++) {
            schema_errors_init(&errs, &a, "body");
            if (!bind_item(it, &item, &errs))
                return 1;
        }
        double t3 = now_s();
        for (int i = 0; i < rounds; i++)
            if (!hand_item(it, &item))
                return 1;
        double t4 = now_s();
        if (pass == 1) {
            report("body.json (787 B): declared", t1 - t0, rounds, n);
            report("body.json (787 B): by hand", t2 - t1, rounds, n);
            report("items body: declared", t3 - t2, rounds, sizeof(item_text) - 1);
            report("items body: by hand (items.c)", t4 - t3, rounds, sizeof(item_text) - 1);
        }
    }
    json_decref(d);
    json_decref(it);
    return 0;
}
