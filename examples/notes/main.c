/* notes: a CRUD API on SQLite with declared schemas, and one route that awaits an upstream with a
 * timeout of its own. What FastAPI would spell with pydantic models, aiosqlite and httpx:
 *
 *   POST   /notes              {"title","body","tags"}  -> 201 the note, Location; 422 every violation
 *   GET    /notes?tag=&limit=                           -> 200 {"notes":[...]} newest first (limit 1..100, 20)
 *   GET    /notes/{id}                                  -> 200 the note / 404
 *   DELETE /notes/{id}                                  -> 204 / 404
 *   GET    /notes/{id}/preview                          -> 200 {"id","html"} from the renderer upstream;
 *                                                          504 past notes.preview_timeout_ms, 502 when it fails
 *
 * The tables are created by a migration in the startup hook; a note's tags are stored twice, as JSON
 * text beside it (answered as they are) and as rows of note_tags (for ?tag=). The schema is SQLite's
 * (AUTOINCREMENT, strftime). */
#include <apiary/apiary.h>

#include <string.h>

/* ---- settings: the "notes" section of the config file ------------------------------------------ */

typedef struct notes_settings {
    const char *renderer;       /* an upstream of "upstreams" */
    int64_t preview_timeout_ms; /* the renderer's call, at most this long (the upstream's own timeout_ms
                                 * bounds it too: the shorter wins) */
} notes_settings;

static const schema_member settings_members[] = {
    SCHEMA_OPTIONAL(notes_settings, renderer, SCHEMA_STRING(.min_length = 1)),
    SCHEMA_OPTIONAL(notes_settings, preview_timeout_ms, SCHEMA_INTEGER(.min = SCHEMA_GE(1), .max = SCHEMA_LE(60000))),
    SCHEMA_END,
};
static const schema settings_schema = SCHEMA_OBJECT_OF(notes_settings, settings_members);
static const notes_settings settings_defaults = {"renderer", 800};

static void settings_check(const void *section, const apiary_config_view *config, schema_errors *errs)
{
    const notes_settings *s = section;
    if (!apiary_config_upstream(config, s->renderer))
        schema_errors_add(errs, "renderer", "must name an upstream of \"upstreams\" ('%s' is none)", s->renderer);
}

static const notes_settings *settings(void) { return apiary_section("notes"); }

/* ---- the tables: created before the server listens --------------------------------------------- */

static const char *const STEP_1[] = {
    "CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY AUTOINCREMENT, title TEXT NOT NULL, "
    "body TEXT NOT NULL, tags TEXT NOT NULL, "
    "created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))",
    "CREATE TABLE IF NOT EXISTS note_tags (tag TEXT NOT NULL, note_id INTEGER NOT NULL, PRIMARY KEY (tag, note_id))",
};
static const sql_migration MIGRATIONS[] = {{STEP_1, 2}};

static int notes_startup(const apiary_context *ctx, async_scope *scope, http_loop *loop, void *arg)
{
    (void)ctx, (void)arg;
    async_op *op = async_await(sql_migrate(scope, loop, MIGRATIONS, sizeof(MIGRATIONS) / sizeof(MIGRATIONS[0])));
    if (op->status != ASYNC_OK) {
        log_error("notes: the tables could not be created: %s", op->error);
        return -1; /* exit status 1, nothing listened */
    }
    return 0;
}

/* ---- what the routes take and answer (docs/schemas.md) ----------------------------------------- */

typedef struct note_in {
    int64_t id;               /* path {id} */
    const char *title, *body; /* POST body */
    SCHEMA_LIST(const char *) tags;
    const char *tag;          /* query ?tag= (NULL: absent) */
    int64_t limit;            /* query ?limit= */
} note_in;

static const schema_member note_members[] = {
    SCHEMA_REQUIRED(note_in, title, SCHEMA_STRING(.min_length = 1, .max_length = 200)),
    SCHEMA_REQUIRED(note_in, body, SCHEMA_STRING(.max_length = 10000)),
    SCHEMA_OPTIONAL(note_in, tags, SCHEMA_ARRAY(SCHEMA_STRING(.min_length = 1, .max_length = 32), .max_items = 10,
                                                .unique_items = true)),
    SCHEMA_END,
};
static const schema_member id_param[] = {SCHEMA_REQUIRED(note_in, id, SCHEMA_INTEGER(.min = SCHEMA_GE(1))), SCHEMA_END};

/* Answers are documented, never checked: no struct, members SCHEMA_UNBOUND. */
static const schema note_out = {
    .type = SCHEMA_T_OBJECT,
    .members = (const schema_member[]){
        SCHEMA_UNBOUND("id", SCHEMA_MEMBER_REQUIRED, SCHEMA_INTEGER()),
        SCHEMA_UNBOUND("title", SCHEMA_MEMBER_REQUIRED, SCHEMA_STRING()),
        SCHEMA_UNBOUND("body", SCHEMA_MEMBER_REQUIRED, SCHEMA_STRING()),
        SCHEMA_UNBOUND("tags", SCHEMA_MEMBER_REQUIRED, SCHEMA_ARRAY(SCHEMA_STRING())),
        SCHEMA_UNBOUND("created_at", SCHEMA_MEMBER_REQUIRED, SCHEMA_STRING(.format = SCHEMA_FORMAT_DATE_TIME)),
        SCHEMA_END},
};

static const route_schema create_schema = {
    .input_size = sizeof(note_in),
    .body = SCHEMA_OBJECT(note_in, note_members),
    .summary = "Create a note",
    .responses = (const route_response[]){{201, "the note; its URL in Location", &note_out}, {0}},
};
static const route_schema list_schema = {
    ROUTE_INPUT(note_in, .limit = 20),
    .query = (const schema_member[]){
        SCHEMA_OPTIONAL(note_in, tag, SCHEMA_STRING(.min_length = 1, .max_length = 32)),
        SCHEMA_OPTIONAL(note_in, limit, SCHEMA_INTEGER(.min = SCHEMA_GE(1), .max = SCHEMA_LE(100))),
        SCHEMA_END},
    .summary = "Notes, newest first; with ?tag=, those that carry it",
};
static const route_schema get_schema = {
    .input_size = sizeof(note_in),
    .path = id_param,
    .summary = "Read a note",
    .responses = (const route_response[]){{200, "the note", &note_out}, {0}},
};
static const route_schema delete_schema = {
    .input_size = sizeof(note_in),
    .path = id_param,
    .summary = "Delete a note",
    .responses = (const route_response[]){{204, "deleted", NULL}, {0}},
};
static const route_schema preview_schema = {
    .input_size = sizeof(note_in),
    .path = id_param,
    .summary = "A note rendered as HTML by the renderer upstream",
};

/* ---- SQL helpers ------------------------------------------------------------------------------- */

#define NOTE_COLUMNS "id, title, body, tags, created_at"

/* The result of a NOTE_COLUMNS select, checked once (the database decides the shape); else 502. */
static bool notes_shape_ok(http_request *req, const sql_result *r)
{
    if (r->rows == 0 || sql_result_shape(r, "itttt"))
        return true;
    http_respond_problem(req, 502, NULL, "the database answered in an unexpected shape");
    return false;
}

/* Row `row` as a note object; tags are stored as JSON text and written as they are. */
static void write_note(json_writer *w, const sql_result *r, size_t row)
{
    json_writer_object_begin(w);
    json_writer_member_int(w, "id", sql_cell(r, row, 0)->i);
    json_writer_member_string(w, "title", sql_cell(r, row, 1)->s);
    json_writer_member_string(w, "body", sql_cell(r, row, 2)->s);
    json_writer_key(w, "tags");
    json_writer_raw(w, sql_cell(r, row, 3)->s, sql_cell(r, row, 3)->len);
    json_writer_member_string(w, "created_at", sql_cell(r, row, 4)->s);
    json_writer_object_end(w);
}

/* The note the path names (a one-row result), or NULL once 404 or a failure is answered. */
static const sql_result *note_from_path(http_request *req)
{
    const note_in *in = http_request_input(req);
    sql_value id = sql_int(in->id);
    sql_stmt stmt = {"SELECT " NOTE_COLUMNS " FROM notes WHERE id = ?", &id, 1, 0};
    /* sql_await_ok answers a failure as docs/sql.md says (504, 503 + Retry-After, 500) and returns NULL. */
    async_op *op = sql_await_ok(req, sql_query(http_request_async(req), http_request_loop(req), &stmt));
    if (!op)
        return NULL;
    const sql_result *r = op->value;
    if (!notes_shape_ok(req, r))
        return NULL;
    if (r->rows == 0) {
        http_respond_problem(req, 404, NULL, "there is no note %lld", (long long)in->id);
        return NULL;
    }
    return r;
}

/* ---- routes: coroutines (ROUTE_CORO), each read top to bottom ---------------------------------- */

static void note_create(http_request *req)
{
    const note_in *in = http_request_input(req); /* validated: nothing to check here */
    async_scope *scope = http_request_async(req);
    /* The tags as JSON text, with the request's writer (a second http_json_writer call empties it). */
    json_writer *w = http_json_writer(req);
    json_writer_array_begin(w);
    for (size_t i = 0; i < in->tags.count; i++)
        json_writer_string(w, in->tags.items[i]);
    json_writer_array_end(w);
    size_t tags_len;
    const char *tags = json_writer_text(w, &tags_len);
    sql_value note[3] = {sql_text(in->title, strlen(in->title)), sql_text(in->body, strlen(in->body)),
                         sql_text(tags, tags_len)};

    /* The note and its tag rows in one transaction: all of them or none. */
    async_op *op = sql_await_ok(req, sql_begin(scope, http_request_loop(req)));
    if (!op)
        return;
    sql_txn *tx = op->value;
    sql_stmt insert = {"INSERT INTO notes (title, body, tags) VALUES (?, ?, ?)", note, 3, 0};
    if (!(op = sql_await_ok(req, sql_txn_query(tx, &insert))))
        return; /* the transaction is rolled back when the scope ends */
    sql_value id = sql_int(((const sql_result *)op->value)->insert_id);
    for (size_t i = 0; i < in->tags.count; i++) {
        sql_value row[2] = {sql_text(in->tags.items[i], strlen(in->tags.items[i])), id};
        sql_stmt tag = {"INSERT INTO note_tags (tag, note_id) VALUES (?, ?)", row, 2, 0};
        if (!sql_await_ok(req, sql_txn_query(tx, &tag)))
            return;
    }
    sql_stmt select = {"SELECT " NOTE_COLUMNS " FROM notes WHERE id = ?", &id, 1, 0};
    if (!(op = sql_await_ok(req, sql_txn_query(tx, &select))))
        return;
    const sql_result *r = op->value;
    if (!sql_await_ok(req, sql_commit(tx)) || !notes_shape_ok(req, r)) /* commit: OK with value NULL */
        return;
    w = http_json_writer(req);
    write_note(w, r, 0);
    http_respond_created_writer(req, w, "/notes/%lld", id.i);
}

static void note_list(http_request *req)
{
    const note_in *in = http_request_input(req);
    sql_value p[3] = {{.type = SQL_NULL}, {.type = SQL_NULL}, sql_int(in->limit)};
    if (in->tag)
        p[0] = p[1] = sql_text(in->tag, strlen(in->tag));
    /* 100 notes of up to 10,000 characters: past the 64 KiB default bound of a result. */
    sql_stmt stmt = {"SELECT " NOTE_COLUMNS " FROM notes WHERE ? IS NULL OR id IN "
                     "(SELECT note_id FROM note_tags WHERE tag = ?) ORDER BY id DESC LIMIT ?",
                     p, 3, 8u << 20};
    async_op *op = sql_await_ok(req, sql_query(http_request_async(req), http_request_loop(req), &stmt));
    if (!op || !notes_shape_ok(req, op->value))
        return;
    const sql_result *r = op->value;
    json_writer *w = http_json_writer(req);
    json_writer_object_begin(w);
    json_writer_key(w, "notes");
    json_writer_array_begin(w);
    for (size_t i = 0; i < r->rows; i++)
        write_note(w, r, i);
    json_writer_array_end(w);
    json_writer_object_end(w);
    http_respond_json_writer(req, 200, w);
}

static void note_get(http_request *req)
{
    const sql_result *r = note_from_path(req);
    if (!r)
        return;
    json_writer *w = http_json_writer(req);
    write_note(w, r, 0);
    http_respond_json_writer(req, 200, w);
}

static void note_delete(http_request *req)
{
    const note_in *in = http_request_input(req);
    sql_value id = sql_int(in->id);
    sql_stmt stmts[2] = {{"DELETE FROM note_tags WHERE note_id = ?", &id, 1, 0},
                         {"DELETE FROM notes WHERE id = ?", &id, 1, 0}};
    /* One transaction: both rows go, or neither. */
    async_op *op = sql_await_ok(req, sql_batch(http_request_async(req), http_request_loop(req), stmts, 2));
    if (!op)
        return;
    const sql_batch_result *b = op->value;
    if (b->results[1].affected == 0)
        http_respond_problem(req, 404, NULL, "there is no note %lld", (long long)in->id);
    else
        http_respond_raw(req, 204, NULL, NULL, 0); /* no body, no Content-Type */
}

/* The note, POSTed to the renderer; its {"html"} answered. The call is bounded by the route's own
 * timeout (async_wait_for) and the upstream's timeout_ms, whichever is shorter. */
static void note_preview(http_request *req)
{
    const sql_result *r = note_from_path(req);
    if (!r)
        return;
    json_writer *w = http_json_writer(req);
    write_note(w, r, 0);
    http_client_options o = {.max_response_bytes = 1u << 20};
    o.body = json_writer_text(w, &o.body_len); /* copied by the call: the writer may change after it */
    async_scope *scope = http_request_async(req);
    async_op *call = http_client_do(scope, http_request_loop(req), apiary_upstream(settings()->renderer), "POST",
                                    "/render", &o);
    async_op *op = http_await_ok(req, async_wait_for(scope, call, (unsigned)settings()->preview_timeout_ms), 502,
                                 "the renderer did not answer");
    if (!op)
        return; /* answered: 504 past the timeout, 502 when the call failed */
    const http_client_response *resp = op->value;
    json_t *doc = resp->status == 200 ? http_client_response_json(resp, 4, 16) : NULL; /* bounded before parsing */
    const char *html = json_string_value(json_object_get(doc, "html"));
    if (html)
        http_respond_json(req, 200, json_pack("{s:I,s:s}", "id", (json_int_t)sql_cell(r, 0, 0)->i, "html", html));
    else
        http_respond_problem(req, 502, NULL, "the renderer answered %d without \"html\"", resp->status);
    json_decref(doc);
}

int main(int argc, char **argv)
{
    apiary_app *app = apiary_app_new("notes");
    apiary_app_version(app, "1.0.0");
    apiary_app_section_schema(app, "notes", &settings_schema, &settings_defaults, settings_check);
    apiary_app_on_startup(app, notes_startup, NULL);
    apiary_app_route_schema(app, HTTP_METHOD_POST, "/notes", note_create, ROUTE_CORO, &create_schema);
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/notes", note_list, ROUTE_CORO, &list_schema);
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/notes/{id}", note_get, ROUTE_CORO, &get_schema);
    apiary_app_route_schema(app, HTTP_METHOD_DELETE, "/notes/{id}", note_delete, ROUTE_CORO, &delete_schema);
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/notes/{id}/preview", note_preview, ROUTE_CORO, &preview_schema);
    return apiary_app_main(app, argc, argv);
}
