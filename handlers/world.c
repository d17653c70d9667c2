/* world: TechEmpower's database tests on the `world` table (ids 1..10000), on the configured SQL
 * backend (include/apiary/sql.h, docs/sql.md):
 *
 *   GET /v1/db                  {"id":N,"randomNumber":M}, one random row
 *   GET /v1/queries?queries=N   N such rows, each its own query, run concurrently
 *   GET /v1/updates?queries=N   N random rows (a SELECT each), each given a new randomNumber, all written
 *                               by one UPDATE before the answer
 *
 * N follows TechEmpower's rule: missing, not an integer or below 1 is 1, above 500 is 500. Also here:
 * how every SQL endpoint answers a result of another shape than asked (sql_answer_bad_shape); a failed
 * query is the library's to answer (sql_respond_failed, sql_await_ok). */
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "handlers.h"
#include "log.h"

#define WORLD_ROWS 10000
#define WORLD_MAX_QUERIES 500

static const char WORLD_SELECT[] = "SELECT id, randomNumber FROM world WHERE id = ?";
/* Result bounds: a row of two integers, and no rows at all. Small and explicit, because SQLite's job
 * reserves room for every statement's bound and /v1/queries sends up to 500 of them. */
#define WORLD_ROW_BYTES 256u
#define WORLD_WRITE_BYTES 64u

/* ---- shared by the SQL endpoints ----------------------------------------------------------------- */

void sql_answer_bad_shape(http_request *req, const char *what, const sql_result *r)
{
    /* 502, not 500: apiary asked a valid question and the database (or something between) answered
     * with another shape, which is what "bad gateway" means; the operator's log says which. */
    log_warn("sql: %s: the database answered %zu column(s) x %zu row(s) of other types than the statement asks "
             "for; answering 502",
             what, r ? r->cols : 0, r ? r->rows : 0);
    http_respond_problem(req, 502, NULL, "the database answered in an unexpected shape");
}

/* A per-thread xorshift: loops and tests need spread, not cryptography, and no lock. */
static uint64_t world_random(void)
{
    static _Thread_local uint64_t state;
    if (state == 0) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        state = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^ (uint64_t)(uintptr_t)&state;
        if (state == 0)
            state = 88172645463325252ull;
    }
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

static long long world_random_id(void) { return (long long)(world_random() % WORLD_ROWS) + 1; }

/* TechEmpower's N: never an error. */
static size_t world_count(http_request *req)
{
    const char *q = http_request_query(req, "queries");
    if (!q || !*q)
        return 1;
    char *end;
    long n = strtol(q, &end, 10);
    if (*end != '\0' || n < 1)
        return 1;
    return n > WORLD_MAX_QUERIES ? WORLD_MAX_QUERIES : (size_t)n;
}

/* Whether r is the row of world the statement asked for (id `asked`); if not, the answer is given:
 * 502 when the result is not (id, randomNumber) integers or is another row, 500 when the row is
 * missing. Another id is checked because /v1/updates writes the ids it read: a database (or a proxy)
 * answering another row must not make apiary write a row no client asked for. */
static bool world_row_ok(http_request *req, const sql_result *r, long long asked)
{
    if (!sql_result_shape(r, "ii") || r->rows > 1) {
        sql_answer_bad_shape(req, WORLD_SELECT, r);
        return false;
    }
    if (r->rows == 0) {
        http_respond_problem(req, 500, NULL, "the world table is missing rows (expected ids 1..%d)", WORLD_ROWS);
        return false;
    }
    if (sql_cell(r, 0, 0)->i != asked) {
        log_warn("sql: %s: asked for id %lld, the database answered the row of id %lld; answering 502", WORLD_SELECT,
                 asked, sql_cell(r, 0, 0)->i);
        http_respond_problem(req, 502, NULL, "the database answered in an unexpected shape");
        return false;
    }
    return true;
}

/* {"id":N,"randomNumber":M}, written straight into the answer's text: the answers are small fixed
 * records, and a jansson tree per row (an object, its hash table, two integers, then the walk that
 * writes it and the frees) cost more than the rest of the handler. */
static void world_write_row(json_writer *w, long long id, long long number)
{
    json_writer_object_begin(w);
    json_writer_key(w, "id");
    json_writer_int(w, id);
    json_writer_key(w, "randomNumber");
    json_writer_int(w, number);
    json_writer_object_end(w);
}

/* ---- GET /v1/db -------------------------------------------------------------------------------- */

/* The answer of /v1/db and /v1/db_await, once their query for row `asked` is over. */
static void world_db_answer(http_request *req, const async_op *op, long long asked)
{
    if (sql_respond_failed(req, op))
        return;
    const sql_result *r = op->value;
    if (!world_row_ok(req, r, asked))
        return;
    json_writer *w = http_json_writer(req);
    world_write_row(w, sql_cell(r, 0, 0)->i, sql_cell(r, 0, 1)->i);
    http_respond_json_writer(req, 200, w);
}

/* What /v1/db's callback needs: the request and the id it asked for (scope memory). */
typedef struct world_db_call {
    http_request *req;
    sql_value id;
} world_db_call;

static void world_db_done(async_op *op, void *arg)
{
    world_db_call *call = arg;
    world_db_answer(call->req, op, call->id.i);
}

void world_db_get(http_request *req)
{
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    world_db_call *call = async_scope_alloc(scope, sizeof(*call));
    call->req = req;
    call->id = sql_int(world_random_id());
    sql_stmt stmt = {WORLD_SELECT, &call->id, 1, WORLD_ROW_BYTES};
    async_op_then(sql_query(scope, http_request_loop(req), &stmt), world_db_done, call);
}

/* GET /v1/db_await: the same as a coroutine handler (ROUTE_CORO), for the benchmark of both styles.
 * The parameter can be a local: sql_query copies it, and the local outlives the await anyway. */
void world_db_await_get(http_request *req)
{
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    sql_value id = sql_int(world_random_id());
    sql_stmt stmt = {WORLD_SELECT, &id, 1, WORLD_ROW_BYTES};
    world_db_answer(req, async_await(sql_query(scope, http_request_loop(req), &stmt)), id.i);
}

/* ---- GET /v1/queries --------------------------------------------------------------------------- */

/* N selects of random ids, independent of each other (sql_query_many: concurrently on MariaDB); the
 * ids asked for, in statement order, at *asked (scope memory). */
static async_op *world_select_batch(async_scope *scope, http_request *req, size_t n, const sql_value **asked)
{
    sql_value *ids = async_scope_alloc(scope, n * sizeof(*ids));
    sql_stmt *stmts = async_scope_alloc(scope, n * sizeof(*stmts));
    for (size_t i = 0; i < n; i++) {
        ids[i] = sql_int(world_random_id());
        stmts[i] = (sql_stmt){WORLD_SELECT, &ids[i], 1, WORLD_ROW_BYTES};
    }
    *asked = ids;
    return sql_query_many(scope, http_request_loop(req), stmts, n);
}

/* Whether every result of b is the row of world its statement asked for (else the answer is given,
 * world_row_ok). */
static bool world_rows_ok(http_request *req, const sql_batch_result *b, const sql_value *asked)
{
    for (size_t i = 0; i < b->count; i++)
        if (!world_row_ok(req, &b->results[i], asked[i].i))
            return false;
    return true;
}

/* What /v1/queries' callback needs: the request and the ids asked for (scope memory). */
typedef struct world_queries_call {
    http_request *req;
    const sql_value *asked;
} world_queries_call;

static void world_queries_done(async_op *op, void *arg)
{
    world_queries_call *call = arg;
    http_request *req = call->req;
    if (sql_respond_failed(req, op))
        return;
    const sql_batch_result *b = op->value;
    if (!world_rows_ok(req, b, call->asked))
        return;
    json_writer *w = http_json_writer(req);
    json_writer_array_begin(w);
    for (size_t i = 0; i < b->count; i++)
        world_write_row(w, sql_cell(&b->results[i], 0, 0)->i, sql_cell(&b->results[i], 0, 1)->i);
    json_writer_array_end(w);
    http_respond_json_writer(req, 200, w);
}

void world_queries_get(http_request *req)
{
    size_t n = world_count(req);
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    world_queries_call *call = async_scope_alloc(scope, sizeof(*call));
    call->req = req;
    async_op_then(world_select_batch(scope, req, n, &call->asked), world_queries_done, call);
}

/* ---- GET /v1/updates --------------------------------------------------------------------------- */

/* All the rows of one request are written by ONE statement, as TechEmpower's fast entries do:
 *
 *   UPDATE world SET randomNumber = CASE id WHEN ? THEN ? ... END WHERE id IN (?, ...)
 *
 * with the distinct ids in ascending order (in the CASE and in the IN list), so one commit per request
 * instead of one per row, and two requests touching the same rows lock them in the same order (no
 * deadlock). The text depends on the number of rows, and each backend prepares and caches statements
 * by text per connection (a few dozen each, docs/sql.md), so the row count is rounded up to one of
 * the sizes below and the last (id, number) pair repeated to fill it: a repeated WHEN for the same id
 * with the same number, and a repeated id in IN (...), change nothing. So at most
 * WORLD_UPDATE_SIZES texts exist whatever N clients ask for, and the sizes TechEmpower runs (1, 5,
 * 10, 15, 20) are exact. PostgreSQL infers a parameter's type from its context and finds none for
 * THEN's value (the CASE's result type would be text), so there each value is CAST to INTEGER; the
 * others take the plain text (MySQL's CAST has no INTEGER type). */
static const unsigned WORLD_UPDATE_SIZE[] = {1, 2, 5, 10, 15, 20, 30, 50, 100, 200, 300, WORLD_MAX_QUERIES};
#define WORLD_UPDATE_SIZES (sizeof(WORLD_UPDATE_SIZE) / sizeof(WORLD_UPDATE_SIZE[0]))

/* Built on first use by whichever loop needs it and kept for the process's life (at most
 * 2 x WORLD_UPDATE_SIZES strings, the largest about 17 KiB); [1] is PostgreSQL's variant. */
static _Atomic(char *) world_update_text[2][WORLD_UPDATE_SIZES];

static size_t world_update_size(size_t distinct)
{
    size_t k = 0;
    while (WORLD_UPDATE_SIZE[k] < distinct)
        k++;
    return k;
}

/* Copies s (without its NUL) to w; returns where the next text goes. */
static char *world_put(char *w, const char *s)
{
    size_t len = strlen(s);
    memcpy(w, s, len);
    return w + len;
}

/* The statement for WORLD_UPDATE_SIZE[k] rows, or NULL when out of memory. */
static const char *world_update_sql(size_t k, bool cast)
{
    char *text = atomic_load(&world_update_text[cast][k]);
    if (text)
        return text;
    static const char head[] = "UPDATE world SET randomNumber = CASE id";
    static const char mid[] = " END WHERE id IN (";
    const char *when = cast ? " WHEN ? THEN CAST(? AS INTEGER)" : " WHEN ? THEN ?";
    size_t rows = WORLD_UPDATE_SIZE[k], when_len = strlen(when);
    text = malloc(sizeof(head) + rows * when_len + sizeof(mid) + rows * 3 + 1);
    if (!text)
        return NULL;
    char *w = world_put(text, head);
    for (size_t i = 0; i < rows; i++)
        w = world_put(w, when);
    w = world_put(w, mid);
    for (size_t i = 0; i < rows; i++)
        w = world_put(w, i ? ", ?" : "?");
    w = world_put(w, ")");
    *w = '\0';
    /* Two loops may build it at once: the first to publish wins, the other frees its copy. */
    char *expected = NULL;
    if (!atomic_compare_exchange_strong(&world_update_text[cast][k], &expected, text)) {
        free(text);
        return expected;
    }
    return text;
}

static int world_cmp_id(const void *a, const void *b)
{
    long long x = *(const long long *)a, y = *(const long long *)b;
    return (x > y) - (x < y);
}

/* The distinct ids of ids[0..count) (sorted in place, then moved to the front), each given a new
 * number in numbers[]; returns how many. */
static size_t world_distinct(long long *ids, long long *numbers, size_t count)
{
    qsort(ids, count, sizeof(*ids), world_cmp_id);
    size_t distinct = 0;
    for (size_t i = 0; i < count; i++) {
        if (distinct == 0 || ids[distinct - 1] != ids[i]) {
            ids[distinct] = ids[i];
            numbers[distinct] = world_random_id();
            distinct++;
        }
    }
    return distinct;
}

/* The one UPDATE for ids[0..distinct) (ascending) and their numbers, its parameters in scope memory;
 * false when out of memory. */
static bool world_update_stmt(async_scope *scope, const long long *ids, const long long *numbers, size_t distinct,
                              sql_stmt *stmt)
{
    size_t k = world_update_size(distinct), size = WORLD_UPDATE_SIZE[k];
    const sql_settings *s = sql_current_settings();
    const char *text = world_update_sql(k, s && s->backend == SQL_BACKEND_POSTGRES);
    if (!text)
        return false;
    /* CASE pairs first, then the IN list; the padding repeats the largest id and its number. */
    sql_value *params = async_scope_alloc(scope, 3 * size * sizeof(*params));
    for (size_t i = 0; i < size; i++) {
        size_t j = i < distinct ? i : distinct - 1;
        params[2 * i] = sql_int(ids[j]);
        params[2 * i + 1] = sql_int(numbers[j]);
        params[2 * size + i] = sql_int(ids[j]);
    }
    *stmt = (sql_stmt){text, params, 3 * size, WORLD_WRITE_BYTES};
    return true;
}

/* The answer: the rows read (world_rows_ok), each with the number written for its id. */
static void world_answer_written(http_request *req, const sql_batch_result *b, const long long *ids,
                                 const long long *numbers, size_t distinct)
{
    json_writer *w = http_json_writer(req);
    json_writer_array_begin(w);
    for (size_t i = 0; i < b->count; i++) {
        long long id = sql_cell(&b->results[i], 0, 0)->i;
        const long long *at = bsearch(&id, ids, distinct, sizeof(*ids), world_cmp_id);
        world_write_row(w, id, numbers[at - ids]);
    }
    json_writer_array_end(w);
    http_respond_json_writer(req, 200, w);
}

/* Awaits the one UPDATE; true when it is done, false once its failure is answered. Ascending ids lock
 * the rows in one order on MariaDB, which walks the primary key; PostgreSQL locks them in the order its
 * plan meets them (for many ids a bitmap or sequential scan: the heap's order, which updates keep
 * reshuffling), so two requests sharing rows can still deadlock there, and the server rolls one back
 * after deadlock_timeout (conflict). That statement was autocommitted and is undone whole, so it is
 * sent again at once, up to WORLD_UPDATE_RETRIES times, as a client of the database should. Only a
 * conflict: busy means apiary's own line is full, which sending again at once would only meet again,
 * so it is answered (503) as it is. */
#define WORLD_UPDATE_RETRIES 2
static bool world_update_await(http_request *req, async_scope *scope, const sql_stmt *stmt)
{
    async_op *op;
    for (int retry = 0;; retry++) {
        op = async_await(sql_query(scope, http_request_loop(req), stmt));
        if (op->status == ASYNC_OK)
            return true;
        if (op->error != SQL_ERROR_CONFLICT || retry == WORLD_UPDATE_RETRIES)
            break;
        log_debug("sql: /v1/updates: the UPDATE conflicted with another transaction (a deadlock); sending it again");
    }
    sql_respond_failed(req, op);
    return false;
}

/* A coroutine handler (ROUTE_CORO): read the rows (one SELECT each, as /v1/queries), write new numbers
 * in one UPDATE, answer. The answer is written only once the write is done (the rows read stay in
 * the request's scope until then), so a failed or cancelled write leaves nothing to release.
 * TechEmpower's ids are random, so one may be drawn twice: it is written once, and every row of the
 * answer carrying it shows the number written.
 *
 * The write waits for the reads, on every backend: TechEmpower's updates test reads each row and then
 * writes it, and its rule 7 wants each statement in its own transaction (on PostgreSQL a Sync each),
 * so sending the UPDATE in one pipeline with the reads, before they are answered, is not the test. */
void world_updates_get(http_request *req)
{
    size_t n = world_count(req);
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    const sql_value *asked;
    async_op *read = sql_await_ok(req, world_select_batch(scope, req, n, &asked));
    if (!read)
        return;
    const sql_batch_result *b = read->value;
    if (!world_rows_ok(req, b, asked))
        return;
    /* The distinct ids read, ascending, each with its new number. Up to 500: scope memory, not the
     * coroutine's stack. */
    long long *ids = async_scope_alloc(scope, n * sizeof(*ids));
    long long *numbers = async_scope_alloc(scope, n * sizeof(*numbers));
    for (size_t i = 0; i < n; i++)
        ids[i] = sql_cell(&b->results[i], 0, 0)->i;
    size_t distinct = world_distinct(ids, numbers, n);
    sql_stmt stmt;
    if (!world_update_stmt(scope, ids, numbers, distinct, &stmt)) {
        http_respond_problem(req, 500, NULL, "out of memory");
        return;
    }
    if (!world_update_await(req, scope, &stmt))
        return;
    /* The results read are in the scope, which lives until the answer. */
    world_answer_written(req, b, ids, numbers, distinct);
}
