/* inventory: an app with its own SQL schema, built against an installed apiary. It owns its tables
 * (an `items` table of its own shape: sku and quantity), creates them in its startup hook with
 * sql_migrate before the server listens, and moves quantity between items in a transaction, so a
 * transfer that cannot complete leaves nothing half-done. It runs on SQLite (the default) or MariaDB
 * (sql.url), unchanged: the statements are portable between both.
 *
 *   POST /items              {"sku":"A1","qty":5}            -> 201 {"sku","qty"}, 409 when it exists
 *   GET  /items/{sku}                                        -> 200 {"sku","qty"} / 404
 *   POST /transfers          {"from":"A1","to":"B2","qty":2} -> 200 {"from":{..},"to":{..}}
 *                                                               409 too little at "from", 404 no such sku */
#include <apiary/apiary.h>

#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- the schema: steps applied once each, in order (never edit one that has shipped) ------------- */

static const char *const STEP_1[] = {
    "CREATE TABLE IF NOT EXISTS items (sku VARCHAR(32) NOT NULL PRIMARY KEY, qty INTEGER NOT NULL)",
};
static const char *const STEP_2[] = {
    "CREATE TABLE IF NOT EXISTS transfers (from_sku VARCHAR(32) NOT NULL, to_sku VARCHAR(32) NOT NULL, "
    "qty INTEGER NOT NULL, at VARCHAR(32) NOT NULL)",
};
static const sql_migration SCHEMA[] = {{STEP_1, 1}, {STEP_2, 1}};

static int inventory_startup(const apiary_context *ctx, async_scope *scope, http_loop *loop, void *arg)
{
    (void)ctx;
    (void)arg;
    async_op *op = async_await(sql_migrate(scope, loop, SCHEMA, sizeof(SCHEMA) / sizeof(SCHEMA[0])));
    if (op->status != ASYNC_OK) {
        log_error("inventory: the schema could not be created: %s", op->error);
        return -1; /* the server does not start: exit status 1 */
    }
    return 0;
}

/* ---- helpers ---------------------------------------------------------------------------------- */

static bool sku_ok(const json_t *v)
{
    if (!json_is_string(v) || json_string_length(v) < 1 || json_string_length(v) > 32)
        return false;
    for (const char *s = json_string_value(v); *s; s++)
        if (!((*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '-'))
            return false;
    return true;
}

static json_t *body_object(http_request *req)
{
    json_error_t jerr;
    json_t *body = http_request_json(req, &jerr);
    if (!body || !json_is_object(body)) {
        http_respond_problem(req, 400, NULL, "the body must be a JSON object");
        return NULL;
    }
    return body;
}

static void field_problem(http_request *req, const char *field, const char *why)
{
    http_respond_problem(req, 422, json_pack("{s:s}", "field", field), "%s %s", field, why);
}

static const char SELECT_ITEM[] = "SELECT sku, qty FROM items WHERE sku = ?";

/* The row (sku, qty) of r as JSON, or NULL when r is not one such row. */
static json_t *item_json(const sql_result *r)
{
    if (!sql_result_shape(r, "ti") || r->rows != 1)
        return NULL;
    return json_pack("{s:s,s:I}", "sku", sql_cell(r, 0, 0)->s, "qty", (json_int_t)sql_cell(r, 0, 1)->i);
}

/* ---- routes (coroutines: ROUTE_CORO) ---------------------------------------------------------- */

static void item_create(http_request *req)
{
    json_t *body = body_object(req);
    if (!body)
        return;
    const json_t *sku = json_object_get(body, "sku"), *qty = json_object_get(body, "qty");
    if (!sku_ok(sku)) {
        field_problem(req, "sku", "must be 1 to 32 of A-Z, 0-9 and -");
        return;
    }
    if (!json_is_integer(qty) || json_integer_value(qty) < 0) {
        field_problem(req, "qty", "must be an integer >= 0");
        return;
    }
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    sql_value p[2] = {sql_text(json_string_value(sku), json_string_length(sku)), sql_int(json_integer_value(qty))};
    /* Check and insert in one transaction: two clients creating the same sku cannot both pass. */
    /* sql_await_ok answers a failure as docs/sql.md's table says (504, 503, 500) and returns NULL. */
    async_op *op = sql_await_ok(req, sql_begin(scope, http_request_loop(req)));
    if (!op)
        return;
    sql_txn *tx = op->value;
    sql_stmt exists = {SELECT_ITEM, p, 1, 0};
    if (!(op = sql_await_ok(req, sql_txn_query(tx, &exists))))
        return;
    if (((const sql_result *)op->value)->rows > 0) {
        async_await(sql_rollback(tx));
        http_respond_problem(req, 409, json_pack("{s:s}", "field", "sku"), "an item with this sku exists");
        return;
    }
    sql_stmt insert = {"INSERT INTO items (sku, qty) VALUES (?, ?)", p, 2, 0};
    if (!sql_await_ok(req, sql_txn_query(tx, &insert)) || !sql_await_ok(req, sql_commit(tx)))
        return;
    http_respond_json(req, 201, json_pack("{s:O,s:O}", "sku", sku, "qty", qty));
}

static void item_get(http_request *req)
{
    const char *sku = http_request_param(req, "sku");
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    sql_value p = sql_text(sku, strlen(sku));
    sql_stmt stmt = {SELECT_ITEM, &p, 1, 0};
    async_op *op = sql_await_ok(req, sql_query(scope, http_request_loop(req), &stmt));
    if (!op)
        return;
    const sql_result *r = op->value;
    if (r->rows == 0) {
        http_respond_problem(req, 404, NULL, "no item has this sku");
        return;
    }
    json_t *item = item_json(r);
    if (!item) {
        http_respond_problem(req, 502, NULL, "the database answered in an unexpected shape");
        return;
    }
    http_respond_json(req, 200, item);
}

/* Runs stmt in tx and answers the failure; NULL then. */
static const sql_result *txn_run(http_request *req, sql_txn *tx, const char *sql, const sql_value *params, size_t n)
{
    sql_stmt stmt = {sql, params, n, 0};
    async_op *op = sql_await_ok(req, sql_txn_query(tx, &stmt));
    return op ? op->value : NULL;
}

static void transfer(http_request *req)
{
    json_t *body = body_object(req);
    if (!body)
        return;
    const json_t *from = json_object_get(body, "from"), *to = json_object_get(body, "to"),
                 *qty = json_object_get(body, "qty");
    if (!sku_ok(from)) {
        field_problem(req, "from", "must be an item's sku");
        return;
    }
    if (!sku_ok(to)) {
        field_problem(req, "to", "must be an item's sku");
        return;
    }
    if (!json_is_integer(qty) || json_integer_value(qty) < 1) {
        field_problem(req, "qty", "must be an integer >= 1");
        return;
    }
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    async_op *op = sql_await_ok(req, sql_begin(scope, http_request_loop(req)));
    if (!op)
        return;
    sql_txn *tx = op->value;
    sql_value n = sql_int(json_integer_value(qty));
    sql_value a = sql_text(json_string_value(from), json_string_length(from));
    sql_value b = sql_text(json_string_value(to), json_string_length(to));
    sql_value take[3] = {n, a, n}, give[2] = {n, b};
    /* Both rows are locked in sku order, whatever the direction: two transfers A->B and B->A then
     * wait for each other instead of deadlocking (the database would roll one back: 503 "conflict"). */
    bool take_first = strcmp(json_string_value(from), json_string_value(to)) < 0;
    for (int step = 0; step < 2; step++) {
        bool taking = (step == 0) == take_first;
        const sql_result *r =
            taking ? txn_run(req, tx, "UPDATE items SET qty = qty - ? WHERE sku = ? AND qty >= ?", take, 3)
                   : txn_run(req, tx, "UPDATE items SET qty = qty + ? WHERE sku = ?", give, 2);
        if (!r)
            return;
        if (r->affected == 1)
            continue;
        /* Whatever the other update did is undone by the rollback. */
        async_await(sql_rollback(tx));
        if (taking)
            http_respond_problem(req, 409, json_pack("{s:s}", "field", "from"), "no item %s with at least %lld",
                                 json_string_value(from), (long long)n.i);
        else
            http_respond_problem(req, 404, json_pack("{s:s}", "field", "to"), "no item has the sku %s",
                                 json_string_value(to));
        return;
    }
    char at[32];
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(at, sizeof(at), "%Y-%m-%dT%H:%M:%SZ", &tm);
    sql_value log_row[4] = {a, b, n, sql_text(at, strlen(at))};
    if (!txn_run(req, tx, "INSERT INTO transfers (from_sku, to_sku, qty, at) VALUES (?, ?, ?, ?)", log_row, 4))
        return;
    const sql_result *ra = txn_run(req, tx, SELECT_ITEM, &a, 1);
    if (!ra)
        return;
    const sql_result *rb = txn_run(req, tx, SELECT_ITEM, &b, 1);
    if (!rb)
        return;
    if (!sql_await_ok(req, sql_commit(tx)))
        return;
    json_t *ja = item_json(ra), *jb = item_json(rb);
    if (!ja || !jb) {
        json_decref(ja);
        json_decref(jb);
        http_respond_problem(req, 502, NULL, "the database answered in an unexpected shape");
        return;
    }
    http_respond_json(req, 200, json_pack("{s:o,s:o}", "from", ja, "to", jb));
}

int main(int argc, char **argv)
{
    apiary_app *app = apiary_app_new("inventory");
    apiary_app_on_startup(app, inventory_startup, NULL);
    apiary_app_route(app, HTTP_METHOD_POST, "/items", item_create, ROUTE_BODY_JSON | ROUTE_CORO);
    apiary_app_route(app, HTTP_METHOD_GET, "/items/{sku}", item_get, ROUTE_CORO);
    apiary_app_route(app, HTTP_METHOD_POST, "/transfers", transfer, ROUTE_BODY_JSON | ROUTE_CORO);
    return apiary_app_main(app, argc, argv);
}
