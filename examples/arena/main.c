/* arena: apiary's entry for HttpArena (github.com/MDA2AV/HttpArena), built against an installed apiary
 * with its public API only. It serves the arena's HTTP/1.1 profiles the library can serve today:
 *
 *   baseline, limited-conn  GET|POST /baseline11?a=&b=   the sum as text/plain (POST adds the body's integer)
 *   pipelined               GET /pipeline                "ok"
 *   json                    GET /json/{count}?m=         the first count items of the dataset, each with
 *                                                        total = price * quantity * m, built per request
 *   async-db                GET /async-db?min=&max=&limit=   a price range of PostgreSQL's items table
 *   crud                    GET|POST /crud/items, GET|PUT /crud/items/{id}: a cached REST resource
 *   json-comp               the json route, content-coded by the library per Accept-Encoding
 *   upload                  POST /upload                 the body's length, counted as it streams in
 *   static                  GET /static/{path...}        files of static_dir with their .br/.gz siblings
 *   echo-ws                 GET /ws                      a WebSocket echoing every message
 *
 * Settings: the "arena" section of the config file (dataset, static_dir; the arena's /data paths by
 * default) and the arena's environment: DATABASE_URL (postgres://...) and DATABASE_MAX_CONN (the
 * pool), which main() turns into apiary's own settings before apiary_app_main reads them. */
#define _GNU_SOURCE /* memfd_create */
#include <apiary/apiary.h>

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* ---- settings: the "arena" section ------------------------------------------------------------ */

typedef struct arena_settings {
    const char *dataset;    /* the json profile's items, read once at start */
    const char *static_dir; /* the static profile's files, opened once at start, read per request */
    int64_t static_cache;   /* descriptors of static_dir's files kept open per loop (0: none) */
} arena_settings;

static const schema_member settings_members[] = {
    SCHEMA_OPTIONAL(arena_settings, dataset, SCHEMA_STRING(.min_length = 1)),
    SCHEMA_OPTIONAL(arena_settings, static_dir, SCHEMA_STRING(.min_length = 1)),
    SCHEMA_OPTIONAL(arena_settings, static_cache, SCHEMA_INTEGER(.min = SCHEMA_GE(0), .max = SCHEMA_LE(65536))),
    SCHEMA_END,
};
static const schema settings_schema = SCHEMA_OBJECT_OF(arena_settings, settings_members);
/* static_cache: the library's open-file cache (static.h), which checks every file against the disk
 * before each use, so the profile's rule (a replaced file is served new by the next request) holds. */
static const arena_settings settings_defaults = {"/data/dataset.json", "/data/static", 64};

/* ---- the dataset: loaded once at start, read-only afterwards (every loop reads it) -------------- */

#define DATASET_MAX 1000

typedef struct dataset_item {
    json_int_t id, price, quantity, rating_score, rating_count;
    bool active;
    /* The item's strings and tags array, read by every loop and never changed after start. */
    json_t *name, *category, *tags;
} dataset_item;

static json_t *dataset_doc; /* owns every string and array the items point into */
static dataset_item dataset[DATASET_MAX];
static size_t dataset_len;

/* The static profile's directory, opened at start (NULL when it cannot be); read-only afterwards,
 * every loop serves from it. */
static http_static_root *static_root;

/* Reads the dataset file; -1 (logged) when it is missing or not the arena's shape. */
static int dataset_load(const char *path)
{
    json_error_t jerr;
    json_t *doc = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!doc) {
        log_error("arena: cannot read the dataset %s: %s (line %d)", path, jerr.text, jerr.line);
        return -1;
    }
    if (!json_is_array(doc) || json_array_size(doc) == 0 || json_array_size(doc) > DATASET_MAX) {
        log_error("arena: the dataset %s must be an array of 1 to %d items", path, DATASET_MAX);
        json_decref(doc);
        return -1;
    }
    for (size_t i = 0; i < json_array_size(doc); i++) {
        dataset_item *it = &dataset[i];
        json_int_t score, count;
        int active = 0;
        if (json_unpack_ex(json_array_get(doc, i), &jerr, 0, "{s:I,s:o,s:o,s:I,s:I,s:b,s:o,s:{s:I,s:I}}", "id",
                           &it->id, "name", &it->name, "category", &it->category, "price", &it->price, "quantity",
                           &it->quantity, "active", &active, "tags", &it->tags, "rating", "score", &score, "count",
                           &count) != 0 ||
            !json_is_string(it->name) || !json_is_string(it->category) || !json_is_array(it->tags)) {
            log_error("arena: the dataset %s: item %zu: %s", path, i,
                      jerr.text[0] ? jerr.text : "name and category must be strings, tags an array");
            json_decref(doc);
            return -1;
        }
        it->active = active;
        it->rating_score = score;
        it->rating_count = count;
    }
    dataset_doc = doc;
    dataset_len = json_array_size(doc);
    return 0;
}

static int arena_on_start(const apiary_context *ctx, void *arg)
{
    (void)arg;
    const arena_settings *s = apiary_context_section(ctx, "arena");
    /* Without it the other profiles are still served; /json answers 503 saying why. */
    if (dataset_load(s->dataset) != 0)
        log_warn("arena: GET /json/{count} answers 503 until the dataset can be read (restart)");
    static_root = http_static_root_open(s->static_dir);
    if (static_root)
        http_static_root_cache(static_root, (unsigned)s->static_cache);
    else
        log_warn("arena: the static directory %s cannot be opened (%s): GET /static/... answers 404", s->static_dir,
                 strerror(errno));
    return 0;
}

/* ---- baseline, limited-conn, pipelined ----------------------------------------------------------- */

typedef struct baseline_in {
    int64_t a, b;
} baseline_in;

static const route_schema baseline_schema = {
    .input_size = sizeof(baseline_in),
    .query = (const schema_member[]){SCHEMA_REQUIRED(baseline_in, a, SCHEMA_INTEGER()),
                                     SCHEMA_REQUIRED(baseline_in, b, SCHEMA_INTEGER()), SCHEMA_END},
    .summary = "a + b (+ the body's integer, for POST) as text/plain",
};

/* The request body as an integer (surrounding whitespace allowed), into *out; false when it is not one
 * or does not fit a long long. Read by hand: strtoll (and the copy it needs for a terminator) was ~150
 * instructions of a POST's ~8,500. */
static bool body_integer(const http_request *req, long long *out)
{
    const char *s = req->body, *end = s + req->body_len;
    while (s < end && (*s == ' ' || *s == '\t' || *s == '\r' || *s == '\n'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r' || end[-1] == '\n'))
        end--;
    bool neg = s < end && *s == '-';
    if (s < end && (*s == '-' || *s == '+'))
        s++;
    if (s == end)
        return false;
    unsigned long long v = 0, limit = neg ? (unsigned long long)LLONG_MAX + 1 : (unsigned long long)LLONG_MAX;
    for (; s < end; s++) {
        if (*s < '0' || *s > '9')
            return false;
        unsigned d = (unsigned)(*s - '0');
        if (v > (limit - d) / 10)
            return false;
        v = v * 10 + d;
    }
    *out = neg ? (long long)(0 - v) : (long long)v;
    return true;
}

/* Formatted by hand: snprintf's "%lld" was ~660 instructions, 7 % of a baseline request. */
static void answer_integer(http_request *req, long long value)
{
    char text[24];
    char *end = text + sizeof(text), *p = end;
    unsigned long long u = value < 0 ? 0ull - (unsigned long long)value : (unsigned long long)value;
    do
        *--p = (char)('0' + u % 10);
    while ((u /= 10) != 0);
    if (value < 0)
        *--p = '-';
    http_respond_raw(req, 200, "text/plain", p, (size_t)(end - p));
}

/* Answers the sum of the terms, or a 400 problem when it does not fit 64 bits: signed overflow is
 * undefined behaviour in C, and a wrapped sum would be a wrong answer given as a right one. */
static void answer_sum(http_request *req, long long a, long long b, long long c)
{
    long long ab, sum;
    if (__builtin_add_overflow(a, b, &ab) || __builtin_add_overflow(ab, c, &sum)) {
        http_respond_problem(req, 400, NULL, "the sum does not fit a 64-bit integer");
        return;
    }
    answer_integer(req, sum);
}

static void baseline_get(http_request *req)
{
    const baseline_in *in = http_request_input(req);
    answer_sum(req, in->a, in->b, 0);
}

static void baseline_post(http_request *req)
{
    const baseline_in *in = http_request_input(req);
    long long body = 0;
    if (req->body_len > 0 && !body_integer(req, &body)) { /* no body, or an empty one: a + b */
        http_respond_problem(req, 400, NULL, "the body must be an integer");
        return;
    }
    answer_sum(req, in->a, in->b, body);
}

static void pipeline(http_request *req) { http_respond_raw(req, 200, "text/plain", "ok", 2); }

/* ---- json ------------------------------------------------------------------------------------------- */

typedef struct json_in {
    int64_t count, m;
} json_in;

static const route_schema json_schema = {
    ROUTE_INPUT(json_in, .m = 1),
    .path = (const schema_member[]){SCHEMA_REQUIRED(json_in, count, SCHEMA_INTEGER(.min = SCHEMA_GE(1),
                                                                                   .max = SCHEMA_LE(DATASET_MAX))),
                                    SCHEMA_END},
    .query = (const schema_member[]){SCHEMA_OPTIONAL(json_in, m, SCHEMA_INTEGER()), SCHEMA_END},
    .summary = "the first count items of the dataset, each with total = price * quantity * m",
};

/* One dataset item with its total, written straight into the answer (json_writer.h): built per
 * request, as the profile measures, but with no jansson tree (an object, a hash-table insert per member
 * and a node per number, then a walk to serialise them, were most of the route's instructions). */
static void dataset_item_write(json_writer *w, const dataset_item *it, int64_t m)
{
    json_writer_object_begin(w);
    json_writer_member_int(w, "id", it->id);
    json_writer_key(w, "name");
    json_writer_string_n(w, json_string_value(it->name), json_string_length(it->name));
    json_writer_key(w, "category");
    json_writer_string_n(w, json_string_value(it->category), json_string_length(it->category));
    json_writer_member_int(w, "price", it->price);
    json_writer_member_int(w, "quantity", it->quantity);
    json_writer_key(w, "active");
    json_writer_bool(w, it->active);
    json_writer_key(w, "tags");
    json_writer_json(w, it->tags); /* the dataset's array of strings, shared and immutable */
    json_writer_key(w, "rating");
    json_writer_object_begin(w);
    json_writer_member_int(w, "score", it->rating_score);
    json_writer_member_int(w, "count", it->rating_count);
    json_writer_object_end(w);
    /* Wrapping arithmetic: an absurd m gives a wrong total, never undefined behaviour. */
    json_writer_member_int(w, "total", (int64_t)((uint64_t)it->price * (uint64_t)it->quantity * (uint64_t)m));
    json_writer_object_end(w);
}

static void json_items(http_request *req)
{
    const json_in *in = http_request_input(req);
    if (dataset_len == 0) {
        http_response_header(req, "Retry-After", "60");
        http_respond_problem(req, 503, NULL, "the dataset could not be read at start (see the log)");
        return;
    }
    size_t count = (size_t)in->count < dataset_len ? (size_t)in->count : dataset_len;
    json_writer *w = http_json_writer(req);
    json_writer_object_begin(w);
    json_writer_key(w, "items");
    json_writer_array_begin(w);
    for (size_t i = 0; i < count; i++)
        dataset_item_write(w, &dataset[i], in->m);
    json_writer_array_end(w);
    json_writer_member_int(w, "count", (int64_t)count);
    json_writer_object_end(w);
    http_respond_json_writer(req, 200, w);
}

/* ---- PostgreSQL rows of the items table ------------------------------------------------------------ */

#define ITEM_COLUMNS "id, name, category, price, quantity, active, tags, rating_score, rating_count"
#define ITEM_SHAPE "ittiiitii" /* active is a bool (0/1), tags JSONB as text */

/* Row `row` of r as the arena's item object, or NULL when its tags are not a JSON array. */
static json_t *row_item_json(const sql_result *r, size_t row)
{
    const sql_value *tags_text = sql_cell(r, row, 6);
    json_t *tags = json_loadb(tags_text->s, tags_text->len, 0, NULL);
    if (!json_is_array(tags)) {
        json_decref(tags);
        return NULL;
    }
    return json_pack("{s:I,s:s,s:s,s:I,s:I,s:b,s:o,s:{s:I,s:I}}", "id", (json_int_t)sql_cell(r, row, 0)->i, "name",
                     sql_cell(r, row, 1)->s, "category", sql_cell(r, row, 2)->s, "price",
                     (json_int_t)sql_cell(r, row, 3)->i, "quantity", (json_int_t)sql_cell(r, row, 4)->i, "active",
                     sql_cell(r, row, 5)->i != 0, "tags", tags, "rating", "score",
                     (json_int_t)sql_cell(r, row, 7)->i, "count", (json_int_t)sql_cell(r, row, 8)->i);
}

/* Every row of r as an array of items, or NULL (logged) when r is not the items shape. */
static json_t *rows_items_json(const sql_result *r, const char *statement)
{
    if (r->rows > 0 && !sql_result_shape(r, ITEM_SHAPE)) {
        log_warn("arena: %s: the database answered %zu columns of another shape than " ITEM_SHAPE, statement, r->cols);
        return NULL;
    }
    json_t *items = json_array();
    for (size_t i = 0; i < r->rows; i++) {
        json_t *item = row_item_json(r, i);
        if (!item) {
            log_warn("arena: %s: row %zu has tags that are not a JSON array", statement, i);
            json_decref(items);
            return NULL;
        }
        json_array_append_new(items, item);
    }
    return items;
}

static void answer_bad_shape(http_request *req)
{
    http_respond_problem(req, 502, NULL, "the database answered in an unexpected shape");
}

/* ---- async-db ---------------------------------------------------------------------------------------- */

typedef struct async_db_in {
    int64_t min, max, limit;
} async_db_in;

static const route_schema async_db_schema = {
    ROUTE_INPUT(async_db_in, .min = 10, .max = 50, .limit = 50),
    .query = (const schema_member[]){SCHEMA_OPTIONAL(async_db_in, min, SCHEMA_INTEGER()),
                                     SCHEMA_OPTIONAL(async_db_in, max, SCHEMA_INTEGER()),
                                     SCHEMA_OPTIONAL(async_db_in, limit, SCHEMA_INTEGER()), SCHEMA_END},
    .summary = "items priced between min and max, at most limit (clamped to 1..50)",
};

static const char ASYNC_DB_SQL[] = "SELECT " ITEM_COLUMNS " FROM items WHERE price BETWEEN ? AND ? LIMIT ?";

static void async_db(http_request *req)
{
    const async_db_in *in = http_request_input(req);
    int64_t limit = in->limit < 1 ? 1 : in->limit > 50 ? 50 : in->limit;
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    sql_value p[3] = {sql_int(in->min), sql_int(in->max), sql_int(limit)};
    sql_stmt stmt = {ASYNC_DB_SQL, p, 3, 0};
    async_op *op = async_await(sql_query(scope, http_request_loop(req), &stmt));
    if (op->status == ASYNC_CANCELLED)
        return;
    json_t *items = op->status == ASYNC_OK ? rows_items_json(op->value, "async-db") : NULL;
    if (op->status != ASYNC_OK)
        log_warn("arena: async-db: %s", op->error ? op->error : "failed");
    /* The profile's contract: a database that is down or answers nonsense is an empty list, not an
     * error (implementation.md, "When Postgres is unavailable or the query returns no rows"). */
    if (!items)
        items = json_array();
    http_respond_json(req, 200, json_pack("{s:o,s:I}", "items", items, "count", (json_int_t)json_array_size(items)));
}

/* ---- crud: the single-item cache ------------------------------------------------------------------------
 *
 * Cache-aside with an absolute TTL of 200 ms, in the process (one heap for every loop, so a client's
 * next request hits whichever loop serves it). Direct-mapped: slot = id mod CACHE_SLOTS, a newer id
 * simply takes the slot (a cache may forget), so its memory is bounded by the slots and the bodies
 * they hold. Each slot holds the serialised body (a HIT is copied out, never re-serialised) and a
 * version: a PUT bumps it, and a MISS stores what it read only if the version is still the one it saw
 * before querying, so a read that raced a PUT never puts the old row back. Locks are striped. */

#define CACHE_SLOTS 65536u
#define CACHE_LOCKS 256u
#define CACHE_TTL_NS (200LL * 1000 * 1000)

typedef struct cache_slot {
    int64_t id;
    int64_t expires_ns; /* CLOCK_MONOTONIC */
    uint64_t version;
    char *body; /* malloc'd, NULL when empty */
    size_t len;
} cache_slot;

static cache_slot cache_slots[CACHE_SLOTS];
static pthread_mutex_t cache_locks[CACHE_LOCKS];

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static cache_slot *cache_lock(int64_t id)
{
    uint64_t slot = (uint64_t)id % CACHE_SLOTS;
    pthread_mutex_lock(&cache_locks[slot % CACHE_LOCKS]);
    return &cache_slots[slot];
}

static void cache_unlock(const cache_slot *s)
{
    pthread_mutex_unlock(&cache_locks[(size_t)(s - cache_slots) % CACHE_LOCKS]);
}

/* The cached body of id copied into the request's arena (*len bytes), or NULL; *version is the
 * slot's version either way, for cache_put. */
static char *cache_get(http_request *req, int64_t id, size_t *len, uint64_t *version)
{
    cache_slot *s = cache_lock(id);
    char *copy = NULL;
    *version = s->version;
    if (s->body && s->id == id && s->expires_ns > now_ns()) {
        copy = arena_alloc(&req->arena, s->len);
        memcpy(copy, s->body, s->len);
        *len = s->len;
    }
    cache_unlock(s);
    return copy;
}

static void cache_put(int64_t id, uint64_t version, const char *body, size_t len)
{
    cache_slot *s = cache_lock(id);
    if (s->version == version) {
        free(s->body);
        s->body = malloc(len);
        if (s->body) {
            memcpy(s->body, body, len);
            s->len = len;
            s->id = id;
            s->expires_ns = now_ns() + CACHE_TTL_NS;
        }
    }
    cache_unlock(s);
}

static void cache_invalidate(int64_t id)
{
    cache_slot *s = cache_lock(id);
    s->version++;
    if (s->id == id) {
        free(s->body);
        s->body = NULL;
    }
    cache_unlock(s);
}

/* ---- crud: routes --------------------------------------------------------------------------------- */

typedef struct crud_in {
    int64_t id;            /* path {id}, or the POST body's */
    const char *name;      /* POST, PUT */
    const char *category;  /* POST; PUT optional (NULL: unchanged); the list's filter */
    int64_t price, quantity;
    int64_t page, limit;   /* the list */
} crud_in;

#define ID_SCHEMA SCHEMA_INTEGER(.min = SCHEMA_GE(1), .max = SCHEMA_LE(2147483647))
#define INT_SCHEMA SCHEMA_INTEGER(.min = SCHEMA_GE(-2147483648LL), .max = SCHEMA_LE(2147483647))
#define TEXT_SCHEMA SCHEMA_STRING(.min_length = 1, .max_length = 200)

static const route_schema crud_list_schema = {
    ROUTE_INPUT(crud_in, .category = "electronics", .page = 1, .limit = 10),
    .query = (const schema_member[]){SCHEMA_OPTIONAL(crud_in, category, TEXT_SCHEMA),
                                     SCHEMA_OPTIONAL(crud_in, page, SCHEMA_INTEGER(.min = SCHEMA_GE(1),
                                                                                   .max = SCHEMA_LE(1000000))),
                                     SCHEMA_OPTIONAL(crud_in, limit, SCHEMA_INTEGER()), SCHEMA_END},
    .summary = "a page of a category's items, by id (limit clamped to 1..50)",
};
static const route_schema crud_get_schema = {
    .input_size = sizeof(crud_in),
    .path = (const schema_member[]){SCHEMA_REQUIRED(crud_in, id, ID_SCHEMA), SCHEMA_END},
    .summary = "one item, from a 200 ms cache (X-Cache: HIT) or the database (X-Cache: MISS)",
};
static const schema_member crud_create_members[] = {
    SCHEMA_REQUIRED(crud_in, id, ID_SCHEMA),
    SCHEMA_REQUIRED(crud_in, name, TEXT_SCHEMA),
    SCHEMA_REQUIRED(crud_in, category, TEXT_SCHEMA),
    SCHEMA_REQUIRED(crud_in, price, INT_SCHEMA),
    SCHEMA_REQUIRED(crud_in, quantity, INT_SCHEMA),
    SCHEMA_END,
};
static const route_schema crud_create_schema = {
    .input_size = sizeof(crud_in),
    .body = SCHEMA_OBJECT(crud_in, crud_create_members, .open = true),
    .summary = "creates the item, or replaces those fields of an existing one (upsert)",
};
static const schema_member crud_update_members[] = {
    SCHEMA_REQUIRED(crud_in, name, TEXT_SCHEMA),
    SCHEMA_OPTIONAL(crud_in, category, TEXT_SCHEMA),
    SCHEMA_REQUIRED(crud_in, price, INT_SCHEMA),
    SCHEMA_REQUIRED(crud_in, quantity, INT_SCHEMA),
    SCHEMA_END,
};
static const route_schema crud_update_schema = {
    .input_size = sizeof(crud_in),
    .path = (const schema_member[]){SCHEMA_REQUIRED(crud_in, id, ID_SCHEMA), SCHEMA_END},
    .body = SCHEMA_OBJECT(crud_in, crud_update_members, .open = true),
    .summary = "updates the item's fields and drops it from the cache",
};

static const char CRUD_LIST_SQL[] = "SELECT " ITEM_COLUMNS " FROM items WHERE category = ? ORDER BY id LIMIT ? OFFSET ?";
static const char CRUD_GET_SQL[] = "SELECT " ITEM_COLUMNS " FROM items WHERE id = ?";
static const char CRUD_UPSERT_SQL[] =
    "INSERT INTO items (id, name, category, price, quantity, active, tags, rating_score, rating_count) "
    "VALUES (?, ?, ?, ?, ?, true, '[]', 0, 0) ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name, "
    "category = EXCLUDED.category, price = EXCLUDED.price, quantity = EXCLUDED.quantity RETURNING " ITEM_COLUMNS;
static const char CRUD_UPDATE_SQL[] = "UPDATE items SET name = ?, category = COALESCE(?, category), price = ?, "
                                      "quantity = ? WHERE id = ? RETURNING " ITEM_COLUMNS;

/* Awaits stmt; the result, or NULL after answering the failure. */
static const sql_result *crud_query(http_request *req, const sql_stmt *stmt)
{
    async_scope *scope = http_request_async(req);
    if (!scope)
        return NULL;
    async_op *op = sql_await_ok(req, sql_query(scope, http_request_loop(req), stmt)); /* failures: docs/sql.md */
    return op ? op->value : NULL;
}

static void crud_list(http_request *req)
{
    const crud_in *in = http_request_input(req);
    int64_t limit = in->limit < 1 ? 1 : in->limit > 50 ? 50 : in->limit;
    sql_value p[3] = {sql_text(in->category, strlen(in->category)), sql_int(limit), sql_int((in->page - 1) * limit)};
    sql_stmt stmt = {CRUD_LIST_SQL, p, 3, 0};
    const sql_result *r = crud_query(req, &stmt);
    if (!r)
        return;
    json_t *items = rows_items_json(r, "crud list");
    if (!items) {
        answer_bad_shape(req);
        return;
    }
    /* "Load-more" pagination: total is this page's count (the profile's rule). */
    size_t n = json_array_size(items);
    http_respond_json(req, 200, json_pack("{s:o,s:I,s:I,s:I}", "items", items, "total", (json_int_t)n, "page",
                                          (json_int_t)in->page, "limit", (json_int_t)limit));
}

/* Answers one returned row as the item (status), or 404 when there is none. */
static void answer_item_row(http_request *req, int status, const sql_result *r)
{
    if (r->rows == 0) {
        http_respond_problem(req, 404, NULL, "no item has this id");
        return;
    }
    json_t *item = r->rows == 1 && sql_result_shape(r, ITEM_SHAPE) ? row_item_json(r, 0) : NULL;
    if (!item) {
        answer_bad_shape(req);
        return;
    }
    http_respond_json(req, status, item);
}

static void crud_get(http_request *req)
{
    const crud_in *in = http_request_input(req);
    size_t len;
    uint64_t version;
    char *cached = cache_get(req, in->id, &len, &version);
    if (cached) {
        http_response_header(req, "X-Cache", "HIT");
        http_respond_raw(req, 200, "application/json", cached, len);
        return;
    }
    sql_value id = sql_int(in->id);
    sql_stmt stmt = {CRUD_GET_SQL, &id, 1, 0};
    const sql_result *r = crud_query(req, &stmt);
    if (!r)
        return;
    if (r->rows == 0) {
        http_respond_problem(req, 404, NULL, "no item has this id");
        return;
    }
    json_t *item = r->rows == 1 && sql_result_shape(r, ITEM_SHAPE) ? row_item_json(r, 0) : NULL;
    if (!item) {
        answer_bad_shape(req);
        return;
    }
    /* Serialised once: the same bytes go to this client and into the cache for the next ones. */
    char *body = json_dumps(item, JSON_COMPACT);
    json_decref(item);
    if (!body) {
        http_respond_problem(req, 500, NULL, "the item could not be written");
        return;
    }
    len = strlen(body);
    cache_put(in->id, version, body, len);
    http_response_header(req, "X-Cache", "MISS");
    http_respond_raw(req, 200, "application/json", body, len);
    json_free_t json_free_fn;
    json_get_alloc_funcs(NULL, &json_free_fn);
    json_free_fn(body);
}

static void crud_create(http_request *req)
{
    const crud_in *in = http_request_input(req);
    sql_value p[5] = {sql_int(in->id), sql_text(in->name, strlen(in->name)),
                      sql_text(in->category, strlen(in->category)), sql_int(in->price), sql_int(in->quantity)};
    sql_stmt stmt = {CRUD_UPSERT_SQL, p, 5, 0};
    const sql_result *r = crud_query(req, &stmt);
    if (!r)
        return;
    cache_invalidate(in->id); /* an upsert may have changed a cached item */
    answer_item_row(req, 201, r);
}

static void crud_update(http_request *req)
{
    const crud_in *in = http_request_input(req);
    sql_value category = {0}; /* NULL: the category stays */
    if (in->category)
        category = sql_text(in->category, strlen(in->category));
    sql_value p[5] = {sql_text(in->name, strlen(in->name)), category, sql_int(in->price), sql_int(in->quantity),
                      sql_int(in->id)};
    sql_stmt stmt = {CRUD_UPDATE_SQL, p, 5, 0};
    const sql_result *r = crud_query(req, &stmt);
    if (!r)
        return;
    cache_invalidate(in->id);
    answer_item_row(req, 200, r);
}

/* ---- upload ------------------------------------------------------------------------------------------
 *
 * POST /upload -> the body's length, counted while it streams in (ROUTE_BODY_STREAM): the body is never
 * held whole, a connection holds a few read buffers at a time whatever the body's size (the profile
 * sends up to 20 MiB; the limit here is the route's own). */

#define UPLOAD_MAX_BYTES (64LL * 1024 * 1024)

static const route_schema upload_schema = {
    .max_body_bytes = UPLOAD_MAX_BYTES,
    .summary = "the body's length in bytes as text/plain, counted as it streams in (up to 64 MiB)",
};

static void upload(http_request *req)
{
    uint64_t total = 0;
    for (;;) {
        async_op *op = http_body_read(req);
        if (!op || async_await(op)->status != ASYNC_OK)
            return; /* the client left mid-body, or the engine answered 408/413 (or 503 at the cap) */
        const http_body_chunk *c = op->value;
        if (c->len == 0)
            break;
        total += c->len;
    }
    answer_integer(req, (long long)total);
}

/* ---- echo-ws --------------------------------------------------------------------------------------------
 *
 * GET /ws upgraded to a WebSocket that sends every text and binary message back as it came, in order.
 * The callback form: no coroutine stack per connection; a peer that does not read its echoes fills its
 * send queue (websocket.send_queue_bytes) and is closed 1008 instead of making memory grow. A plain GET
 * is answered 426 by ws_upgrade. */

static void ws_echo(ws_conn *ws, const ws_message *msg, void *arg)
{
    (void)arg;
    ws_send(ws, msg->type, msg->data, msg->len);
}

static void ws_get(http_request *req)
{
    ws_options opts = {.on_message = ws_echo};
    ws_upgrade(req, &opts); /* answers either way: 101, or 426/400 problem+json */
}

/* ---- static ----------------------------------------------------------------------------------------------
 *
 * GET /static/{path...} -> the file beneath settings.static_dir, answered by the library's file answer
 * (static.h: http_respond_file, what apiary_app_static mounts): read from disk per request, confined
 * beneath the root (openat2 RESOLVE_BENEATH), Content-Type by extension, ETag/304, Range, HEAD, sendfile,
 * and the .br/.gz sibling when Accept-Encoding allows it and it is at least as new. The descriptors
 * are kept in the library's open-file cache (settings.static_cache per loop, http_static_root_cache),
 * which checks each file against the disk (one fstatat) before every use. A mount of its own
 * rather than apiary_app_static because the directory is a setting of the arena section, known only
 * once the config is read; when it cannot be opened the server still starts and /static answers 404. */

static void static_file(http_request *req)
{
    if (!static_root) {
        http_respond_problem(req, 404, NULL, "no such file: the static directory could not be opened (see the log)");
        return;
    }
    const char *path = http_request_param(req, "path");
    http_respond_file(req, static_root, path ? path : "");
}

/* ---- json-comp ---------------------------------------------------------------------------------------------
 *
 * The json route above, compressed by the library when the request's Accept-Encoding allows it
 * (compression.* settings, docs/compression.md: gzip or br by q-value, Vary: Accept-Encoding, identity
 * without Accept-Encoding, bodies under compression.min_bytes as they are). Nothing of the entry's own. */

/* ---- the arena's environment -> apiary's settings ------------------------------------------------------ */

/* DATABASE_URL (postgres://USER:PASS@HOST:PORT/DB) as APIARY_SQL_URL. apiary takes an IP address
 * only (its loops never wait for DNS), and the arena names the host "localhost", so the host is
 * resolved here, once, before anything runs. An APIARY_SQL_URL already set wins. 0, or -1 (printed). */
static int database_url_to_apiary(void)
{
    const char *url = getenv("DATABASE_URL");
    const char *set = getenv("APIARY_SQL_URL");
    if (!url || !*url || (set && *set))
        return 0;
    const char *rest = strstr(url, "://");
    const char *at = rest ? strrchr(rest, '@') : NULL;
    if (!at) {
        fprintf(stderr, "arena: DATABASE_URL: must be postgres://USER:PASSWORD@HOST:PORT/DATABASE\n");
        return -1;
    }
    const char *host = at + 1;
    size_t host_len = strcspn(host, ":/?");
    char name[256];
    if (host_len == 0 || host_len >= sizeof(name) || host[0] == '[' || host[0] == '%') {
        /* empty, an IPv6 literal or a socket directory: apiary reads it as it is */
        return setenv("APIARY_SQL_URL", url, 1);
    }
    memcpy(name, host, host_len);
    name[host_len] = '\0';
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *res = NULL;
    int rc = getaddrinfo(name, NULL, &hints, &res);
    if (rc != 0 || !res) {
        fprintf(stderr, "arena: DATABASE_URL: cannot resolve the host %s: %s\n", name, gai_strerror(rc));
        return -1;
    }
    char ip[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &((struct sockaddr_in *)res->ai_addr)->sin_addr, ip, sizeof(ip));
    freeaddrinfo(res);
    size_t cap = strlen(url) + sizeof(ip) + 1;
    char *rewritten = malloc(cap);
    if (!rewritten)
        return -1;
    snprintf(rewritten, cap, "%.*s%s%s", (int)(host - url), url, ip, host + host_len);
    rc = setenv("APIARY_SQL_URL", rewritten, 1);
    free(rewritten);
    return rc;
}

/* The config used when no --config is given, made from the arena's environment: more connections
 * than apiary's default 10000 (the arena opens up to 16384); from DATABASE_MAX_CONN the PostgreSQL
 * pool, which apiary sizes per loop (threads x sql.connections_per_loop); from ARENA_DATA_DIR (for
 * runs outside the arena's container) the data paths DIR/dataset.json and DIR/static. It is written to
 * an anonymous file whose /proc path becomes the default config (a reload re-reads the same text). */
static const char *generated_config(int argc, char **argv)
{
    long threads = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 || strncmp(argv[i], "--config=", 9) == 0)
            return NULL; /* the operator's file, as it is */
        if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
            threads = strtol(argv[i + 1], NULL, 10);
        else if (strncmp(argv[i], "--threads=", 10) == 0)
            threads = strtol(argv[i] + 10, NULL, 10);
    }
    if (threads <= 0)
        threads = sysconf(_SC_NPROCESSORS_ONLN) > 0 ? sysconf(_SC_NPROCESSORS_ONLN) : 1;
    /* backlog: the arena connects all its clients at once; with the default 511, a loop descheduled
     * for a moment while they arrive (a loaded machine) leaves the rest dropped at SYN, and each of
     * them retries a second later (at 1,024 connections with the loop stopped 300 ms: 513 of them). The
     * kernel caps it at net.core.somaxconn; nginx's arena entry asks for 4096 or more too. */
    json_t *config = json_pack("{s:i,s:i}", "max_connections", 65536, "backlog", 16384);
    const char *max_conn = getenv("DATABASE_MAX_CONN");
    long total = max_conn && *max_conn ? strtol(max_conn, NULL, 10) : 0;
    if (total > 0) {
        long per_loop = total / threads;
        per_loop = per_loop < 1 ? 1 : per_loop > 256 ? 256 : per_loop;
        json_object_set_new(config, "sql", json_pack("{s:I}", "connections_per_loop", (json_int_t)per_loop));
    }
    const char *data = getenv("ARENA_DATA_DIR");
    if (data && *data) {
        char dataset[4096], static_dir[4096];
        snprintf(dataset, sizeof(dataset), "%s/dataset.json", data);
        snprintf(static_dir, sizeof(static_dir), "%s/static", data);
        json_object_set_new(config, "arena", json_pack("{s:s,s:s}", "dataset", dataset, "static_dir", static_dir));
    }
    int fd = memfd_create("arena-config", 0);
    int rc = fd < 0 ? -1 : json_dumpfd(config, fd, 0);
    json_decref(config);
    if (rc != 0)
        return NULL;
    static char path[64];
    snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
    return path;
}

int main(int argc, char **argv)
{
    apiary_app *app = apiary_app_new("arena");
    if (database_url_to_apiary() != 0)
        return 2;
    for (unsigned i = 0; i < CACHE_LOCKS; i++)
        pthread_mutex_init(&cache_locks[i], NULL);
    const char *config = generated_config(argc, argv);
    if (config)
        apiary_app_default_config(app, config);
    apiary_app_section_schema(app, "arena", &settings_schema, &settings_defaults, NULL);
    apiary_app_on_start(app, arena_on_start, NULL);

    apiary_app_route_schema(app, HTTP_METHOD_GET, "/baseline11", baseline_get, 0, &baseline_schema);
    apiary_app_route_schema(app, HTTP_METHOD_POST, "/baseline11", baseline_post, 0, &baseline_schema);
    apiary_app_route(app, HTTP_METHOD_GET, "/pipeline", pipeline, 0);
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/json/{count}", json_items, 0, &json_schema);
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/async-db", async_db, ROUTE_CORO, &async_db_schema);
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/crud/items", crud_list, ROUTE_CORO, &crud_list_schema);
    apiary_app_route_schema(app, HTTP_METHOD_POST, "/crud/items", crud_create, ROUTE_CORO, &crud_create_schema);
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/crud/items/{id}", crud_get, ROUTE_CORO, &crud_get_schema);
    apiary_app_route_schema(app, HTTP_METHOD_PUT, "/crud/items/{id}", crud_update, ROUTE_CORO, &crud_update_schema);
    apiary_app_route_schema(app, HTTP_METHOD_POST, "/upload", upload, ROUTE_CORO | ROUTE_BODY_STREAM, &upload_schema);
    apiary_app_route(app, HTTP_METHOD_GET, "/ws", ws_get, 0);
    apiary_app_route(app, HTTP_METHOD_GET, "/static/{path...}", static_file, 0);
    int rc = apiary_app_main(app, argc, argv);
    /* The loops have stopped: what they shared is freed here, its one owner. */
    for (unsigned i = 0; i < CACHE_SLOTS; i++)
        free(cache_slots[i].body);
    json_decref(dataset_doc);
    http_static_root_free(static_root);
    return rc;
}
