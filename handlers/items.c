/* items: a small resource on the SQL backend (include/apiary/sql.h, docs/sql.md), the shape most JSON APIs have:
 *
 *   POST   /v1/items                      {"name":"…","price":9.5} -> 201, Location: /v1/items/{id}
 *   GET    /v1/items/{id}                 -> 200 the item / 404
 *   GET    /v1/items?limit=N&after=ID     -> {"items":[…ascending id…],"next":ID or null}
 *   DELETE /v1/items/{id}                 -> 204 / 404
 *
 * An item is {"id","name","price","created_at"}: name 1..200 characters, price a number >= 0,
 * created_at the UTC time of the insert in ISO 8601 (written by apiary, so both backends agree).
 * Pagination is by key: `after` is the last id of the previous page, so a page costs one index range
 * scan however deep it is, and rows inserted meanwhile never shift a page. Every value reaches the
 * database as a bound parameter.
 *
 * The handlers are coroutines (ROUTE_CORO in routes.c): each checks its input, awaits its query and
 * answers, in that order, with its state in locals. When the request ends while a query runs, the
 * await returns ASYNC_CANCELLED, the failure answer below is dropped, and the handler returns. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "handlers.h"
#include "request_body.h"

#define ITEMS_NAME_MAX_CHARS 200
#define ITEMS_LIMIT_DEFAULT 20
#define ITEMS_LIMIT_MAX 100
/* A row as the drivers count it: four cells and a name of at most 200 characters of 4 bytes. */
#define ITEMS_ROW_BYTES (4 * sizeof(sql_value) + ITEMS_NAME_MAX_CHARS * 4 + 64)

static const char ITEMS_INSERT[] = "INSERT INTO items (name, price, created_at) VALUES (?, ?, ?)";
/* PostgreSQL has no last-insert id: the new row's id comes back as a row, which its backend reports as
 * insert_id like the others. */
static const char ITEMS_INSERT_PG[] = "INSERT INTO items (name, price, created_at) VALUES (?, ?, ?) RETURNING id";
static const char ITEMS_SELECT[] = "SELECT id, name, price, created_at FROM items WHERE id = ?";
static const char ITEMS_PAGE[] = "SELECT id, name, price, created_at FROM items WHERE id > ? ORDER BY id LIMIT ?";
static const char ITEMS_DELETE[] = "DELETE FROM items WHERE id = ?";

/* The query's outcome for a handler: the result, or NULL after answering the failure. */
static const sql_result *items_query(http_request *req, async_scope *scope, const sql_stmt *stmt)
{
    async_op *op = async_await(sql_query(scope, http_request_loop(req), stmt));
    if (op->status != ASYNC_OK) {
        sql_answer_failure(req, op);
        return NULL;
    }
    return op->value;
}

/* What every item query returns: id integer, name text, price a number, created_at text (none NULL). */
#define ITEMS_SHAPE "itdt"

/* One row as JSON; the result's shape has been checked (ITEMS_SHAPE). */
static json_t *items_json(const sql_result *r, size_t row)
{
    const sql_value *name = sql_cell(r, row, 1), *price = sql_cell(r, row, 2), *created = sql_cell(r, row, 3);
    return json_pack("{s:I,s:s%,s:f,s:s%}", "id", (json_int_t)sql_cell(r, row, 0)->i, "name", name->s ? name->s : "",
                     name->len, "price", price->type == SQL_INT ? (double)price->i : price->d, "created_at",
                     created->s ? created->s : "", created->len);
}

/* Reads a decimal integer query or path value in min..max; else 400 naming `field`. */
static bool items_integer(http_request *req, const char *text, const char *field, long long min, long long max,
                          long long *out)
{
    bool ok = text && *text >= '0' && *text <= '9';
    long long v = 0;
    if (ok) {
        char *end;
        errno = 0;
        v = strtoll(text, &end, 10);
        ok = *end == '\0' && errno == 0 && v >= min && v <= max;
    }
    if (!ok) {
        http_respond_problem(req, 400, json_pack("{s:s}", "field", field), "%s must be an integer from %lld to %lld",
                             field, min, max);
        return false;
    }
    *out = v;
    return true;
}

static bool items_id(http_request *req, long long *id)
{
    return items_integer(req, http_request_param(req, "id"), "id", 1, INT64_MAX, id);
}

static void items_not_found(http_request *req) { http_respond_problem(req, 404, NULL, "no item has this id"); }

/* ---- POST /v1/items ---------------------------------------------------------------------------- */

static size_t items_utf8_chars(const char *s, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += ((unsigned char)s[i] & 0xC0) != 0x80;
    return n;
}

void items_post(http_request *req)
{
    json_t *body = request_body_json(req, false);
    if (!body)
        return;
    if (!json_is_object(body)) {
        http_respond_problem(req, 400, NULL, "the body must be a JSON object {\"name\":…,\"price\":…}");
        return;
    }
    const char *key;
    json_t *v;
    json_object_foreach(body, key, v) {
        if (strcmp(key, "name") != 0 && strcmp(key, "price") != 0) {
            request_body_reject(req, 400, key, "is not a member of an item (name, price)");
            return;
        }
    }
    json_t *name = json_object_get(body, "name"), *price = json_object_get(body, "price");
    size_t chars = json_is_string(name) ? items_utf8_chars(json_string_value(name), json_string_length(name)) : 0;
    if (!json_is_string(name) || chars < 1 || chars > ITEMS_NAME_MAX_CHARS ||
        memchr(json_string_value(name), '\0', json_string_length(name))) {
        http_respond_problem(req, 400, json_pack("{s:s}", "field", "name"),
                             "name must be a string of 1 to %d characters (without NUL)", ITEMS_NAME_MAX_CHARS);
        return;
    }
    if (!json_is_number(price) || json_number_value(price) < 0) {
        http_respond_problem(req, 400, json_pack("{s:s}", "field", "price"), "price must be a number >= 0");
        return;
    }
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    char created_at[32];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(created_at, sizeof(created_at), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(created_at + n, sizeof(created_at) - n, ".%03ldZ", now.tv_nsec / 1000000);
    /* name points into the parsed body, which the request keeps until it ends. */
    sql_value params[3] = {sql_text(json_string_value(name), json_string_length(name)),
                           sql_double(json_number_value(price)), sql_text(created_at, strlen(created_at))};
    const sql_settings *settings = sql_current_settings();
    bool pg = settings && settings->backend == SQL_BACKEND_POSTGRES;
    sql_stmt stmt = {pg ? ITEMS_INSERT_PG : ITEMS_INSERT, params, 3, 0};
    const sql_result *r = items_query(req, scope, &stmt);
    if (!r)
        return;
    char location[64];
    snprintf(location, sizeof(location), "/v1/items/%lld", (long long)r->insert_id);
    http_response_header(req, "Location", location);
    http_respond_json(req, 201,
                      json_pack("{s:I,s:s%,s:f,s:s}", "id", (json_int_t)r->insert_id, "name", json_string_value(name),
                                json_string_length(name), "price", json_number_value(price), "created_at", created_at));
}

/* ---- GET /v1/items/{id} ------------------------------------------------------------------------ */

void items_get(http_request *req)
{
    long long id;
    if (!items_id(req, &id))
        return;
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    sql_value param = sql_int(id);
    sql_stmt stmt = {ITEMS_SELECT, &param, 1, 2 * ITEMS_ROW_BYTES};
    const sql_result *r = items_query(req, scope, &stmt);
    if (!r)
        return;
    if (!sql_result_shape(r, ITEMS_SHAPE) || r->rows > 1) {
        sql_answer_bad_shape(req, ITEMS_SELECT, r);
        return;
    }
    if (r->rows == 0) {
        items_not_found(req);
        return;
    }
    http_respond_json(req, 200, items_json(r, 0));
}

/* ---- GET /v1/items ----------------------------------------------------------------------------- */

void items_list(http_request *req)
{
    long long limit = ITEMS_LIMIT_DEFAULT, after = 0;
    const char *limit_text = http_request_query(req, "limit"), *after_text = http_request_query(req, "after");
    if (limit_text && !items_integer(req, limit_text, "limit", 1, ITEMS_LIMIT_MAX, &limit))
        return;
    if (after_text && !items_integer(req, after_text, "after", 0, INT64_MAX, &after))
        return;
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    sql_value params[2] = {sql_int(after), sql_int(limit + 1)};
    sql_stmt stmt = {ITEMS_PAGE, params, 2, (size_t)(limit + 1) * ITEMS_ROW_BYTES + 256};
    const sql_result *r = items_query(req, scope, &stmt);
    if (!r)
        return;
    if (!sql_result_shape(r, ITEMS_SHAPE) || r->rows > (size_t)limit + 1) {
        sql_answer_bad_shape(req, ITEMS_PAGE, r);
        return;
    }
    /* One row more than the page was asked for: it says whether there is a next page. */
    size_t shown = r->rows > (size_t)limit ? (size_t)limit : r->rows;
    json_t *items = json_array();
    for (size_t i = 0; i < shown; i++)
        json_array_append_new(items, items_json(r, i));
    json_t *next = r->rows > shown && shown > 0 ? json_integer((json_int_t)sql_cell(r, shown - 1, 0)->i) : json_null();
    http_respond_json(req, 200, json_pack("{s:o,s:o}", "items", items, "next", next));
}

/* ---- DELETE /v1/items/{id} --------------------------------------------------------------------- */

void items_delete(http_request *req)
{
    long long id;
    if (!items_id(req, &id))
        return;
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    sql_value param = sql_int(id);
    sql_stmt stmt = {ITEMS_DELETE, &param, 1, 0};
    const sql_result *r = items_query(req, scope, &stmt);
    if (!r)
        return;
    if (r->affected == 0)
        items_not_found(req);
    else
        http_respond_raw(req, 204, NULL, NULL, 0);
}
