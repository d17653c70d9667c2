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
 * The handlers are coroutines (ROUTE_CORO in routes.c). Their input is declared below (schema.h): the
 * engine validates and binds it before a handler runs, answering 422 with every violation, so each
 * handler reads its typed values, awaits its query and answers, in that order, with its state in locals. When the
 * request ends while a query runs, the await returns ASYNC_CANCELLED, the failure answer below is dropped, and the
 * handler returns. */
#include <stdint.h>
#include <stdio.h>
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
    async_op *op = sql_await_ok(req, sql_query(scope, http_request_loop(req), stmt));
    return op ? op->value : NULL;
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

/* The same row written into a page's answer (json_writer.h): no tree per row. */
static void items_write(json_writer *w, const sql_result *r, size_t row)
{
    const sql_value *name = sql_cell(r, row, 1), *price = sql_cell(r, row, 2), *created = sql_cell(r, row, 3);
    json_writer_object_begin(w);
    json_writer_member_int(w, "id", sql_cell(r, row, 0)->i);
    json_writer_key(w, "name");
    json_writer_string_n(w, name->s ? name->s : "", name->len);
    json_writer_key(w, "price");
    json_writer_double(w, price->type == SQL_INT ? (double)price->i : price->d);
    json_writer_key(w, "created_at");
    json_writer_string_n(w, created->s ? created->s : "", created->len);
    json_writer_object_end(w);
}

/* ---- what the routes take and give (docs/schemas.md): validated and bound before a handler runs ---- */

typedef struct items_in {
    int64_t id;           /* path {id} */
    int64_t limit, after; /* GET /v1/items query */
    const char *name;     /* POST body */
    double price;
} items_in;

static const schema_member items_id_param[] = {
    SCHEMA_REQUIRED(items_in, id, SCHEMA_INTEGER(.min = SCHEMA_GE(1))),
    SCHEMA_END,
};
static const schema_member items_page_query[] = {
    SCHEMA_OPTIONAL(items_in, limit, SCHEMA_INTEGER(.min = SCHEMA_GE(1), .max = SCHEMA_LE(ITEMS_LIMIT_MAX))),
    SCHEMA_OPTIONAL(items_in, after, SCHEMA_INTEGER(.min = SCHEMA_GE(0))),
    SCHEMA_END,
};
static const schema_member items_new_members[] = {
    SCHEMA_REQUIRED(items_in, name, SCHEMA_STRING(.min_length = 1, .max_length = ITEMS_NAME_MAX_CHARS)),
    SCHEMA_REQUIRED(items_in, price, SCHEMA_NUMBER(.min = SCHEMA_GE(0))),
    SCHEMA_END,
};
static const schema items_new = SCHEMA_OBJECT_OF(items_in, items_new_members);

static const schema_member item_members[] = {
    SCHEMA_UNBOUND("id", SCHEMA_MEMBER_REQUIRED, SCHEMA_INTEGER(.min = SCHEMA_GE(1))),
    SCHEMA_UNBOUND("name", SCHEMA_MEMBER_REQUIRED, SCHEMA_STRING(.min_length = 1, .max_length = ITEMS_NAME_MAX_CHARS)),
    SCHEMA_UNBOUND("price", SCHEMA_MEMBER_REQUIRED, SCHEMA_NUMBER(.min = SCHEMA_GE(0))),
    SCHEMA_UNBOUND("created_at", SCHEMA_MEMBER_REQUIRED, SCHEMA_STRING(.format = SCHEMA_FORMAT_DATE_TIME)),
    SCHEMA_END,
};
static const schema item = {.type = SCHEMA_T_OBJECT, .members = item_members};
static const schema_member items_page_members[] = {
    SCHEMA_UNBOUND("items", SCHEMA_MEMBER_REQUIRED, SCHEMA_ARRAY(&item, .max_items = ITEMS_LIMIT_MAX)),
    SCHEMA_UNBOUND("next", SCHEMA_MEMBER_REQUIRED, SCHEMA_INTEGER(.nullable = true, .min = SCHEMA_GE(1))),
    SCHEMA_END,
};

const route_schema items_post_schema = {
    .input_size = sizeof(items_in),
    .body = &items_new,
    .summary = "Create an item",
    .responses = (const route_response[]){{201, "the item, its URL in Location", &item}, {0}},
};
const route_schema items_get_schema = {
    .input_size = sizeof(items_in),
    .path = items_id_param,
    .summary = "Read an item",
    .responses = (const route_response[]){{200, "the item", &item}, {0}},
};
const route_schema items_list_schema = {
    ROUTE_INPUT(items_in, .limit = ITEMS_LIMIT_DEFAULT),
    .query = items_page_query,
    .summary = "List items by ascending id, a page after another",
    .responses = (const route_response[]){
        {200, "a page; next is the after of the next page, null on the last",
         SCHEMA_OBJECT(items_in, items_page_members)},
        {0}},
};
const route_schema items_delete_schema = {
    .input_size = sizeof(items_in),
    .path = items_id_param,
    .summary = "Delete an item",
    .responses = (const route_response[]){{204, "deleted", NULL}, {0}},
};

static void items_not_found(http_request *req) { http_respond_problem(req, 404, NULL, "no item has this id"); }

/* ---- POST /v1/items ---------------------------------------------------------------------------- */

void items_post(http_request *req)
{
    const items_in *in = http_request_input(req);
    async_scope *scope = http_request_async(req); /* a coroutine handler's request always has one */
    char created_at[32];
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    size_t n = strftime(created_at, sizeof(created_at), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(created_at + n, sizeof(created_at) - n, ".%03ldZ", now.tv_nsec / 1000000);
    /* name points into the parsed body, which the request keeps until it ends. */
    sql_value params[3] = {sql_text(in->name, strlen(in->name)), sql_double(in->price),
                           sql_text(created_at, strlen(created_at))};
    const sql_settings *settings = sql_current_settings();
    bool pg = settings && settings->backend == SQL_BACKEND_POSTGRES;
    sql_stmt stmt = {pg ? ITEMS_INSERT_PG : ITEMS_INSERT, params, 3, 0};
    const sql_result *r = items_query(req, scope, &stmt);
    if (!r)
        return;
    http_respond_created(req,
                         json_pack("{s:I,s:s,s:f,s:s}", "id", (json_int_t)r->insert_id, "name", in->name, "price",
                                   in->price, "created_at", created_at),
                         "/v1/items/%lld", (long long)r->insert_id);
}

/* ---- GET /v1/items/{id} ------------------------------------------------------------------------ */

void items_get(http_request *req)
{
    const items_in *in = http_request_input(req);
    async_scope *scope = http_request_async(req); /* a coroutine handler's request always has one */
    sql_value param = sql_int(in->id);
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
    const items_in *in = http_request_input(req);
    int64_t limit = in->limit;
    async_scope *scope = http_request_async(req); /* a coroutine handler's request always has one */
    sql_value params[2] = {sql_int(in->after), sql_int(limit + 1)};
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
    json_writer *w = http_json_writer(req);
    json_writer_object_begin(w);
    json_writer_key(w, "items");
    json_writer_array_begin(w);
    for (size_t i = 0; i < shown; i++)
        items_write(w, r, i);
    json_writer_array_end(w);
    json_writer_key(w, "next");
    if (r->rows > shown && shown > 0)
        json_writer_int(w, sql_cell(r, shown - 1, 0)->i);
    else
        json_writer_null(w);
    json_writer_object_end(w);
    http_respond_json_writer(req, 200, w);
}

/* ---- DELETE /v1/items/{id} --------------------------------------------------------------------- */

void items_delete(http_request *req)
{
    const items_in *in = http_request_input(req);
    async_scope *scope = http_request_async(req); /* a coroutine handler's request always has one */
    sql_value param = sql_int(in->id);
    sql_stmt stmt = {ITEMS_DELETE, &param, 1, 0};
    const sql_result *r = items_query(req, scope, &stmt);
    if (!r)
        return;
    if (r->affected == 0)
        items_not_found(req);
    else
        http_respond_raw(req, 204, NULL, NULL, 0);
}
