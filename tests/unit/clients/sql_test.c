/* sql_test: unit tests for lib/clients/sql.c and the SQLite backend (lib/clients/sql_sqlite.c): sql.url parsing
 * (every accepted form, every refusal, and that no message echoes the password), results built in
 * heap memory and copied into a scope, and the SQLite backend end to end on its own threads: bound
 * parameters (an SQL injection stored and read back as text), every value type, a batch in one
 * transaction rolled back on failure and whose statements depend on each other, transactions (commit,
 * rollback, a failed statement, a scope that ends mid-transaction, one call at a time), another
 * writer's lock answered "conflict" (not "busy"), migrations, a refused statement, a result over its
 * limit, the default bound, and a cancelled operation whose continuation never runs. sql.url "none" is
 * parsed here; what it does at run time is sql_answer_test.c's. The MariaDB backend needs a server: it
 * is tested by tests/integration/test_97_sql.py against a private mariadbd.
 *
 * The loop helper is pool_test.c's: a libevent base on the test thread with a standalone scope whose
 * poster is a mutex-protected list plus event_active, like http_loop_post. */
#include <criterion/criterion.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "async.h"
#include "coro_internal.h"
#include "pool.h"
#include "sql.h"
#include "sql_internal.h"
#include "test_loop.h"

/* ---- sql.url ------------------------------------------------------------------------------------ */

static int parse(sql_settings *s, const char *url, char *err)
{
    sql_settings_defaults(s);
    return sql_url_parse(s, url, err, 256);
}

Test(sql_url, sqlite_forms)
{
    sql_settings s;
    char err[256];
    cr_assert_eq(parse(&s, "", err), 0);
    cr_expect_eq(s.backend, SQL_BACKEND_SQLITE);
    cr_expect_str_eq(s.path, "apiary.db");
    cr_assert_eq(parse(&s, "sqlite:/var/lib/apiary/a.db", err), 0);
    cr_expect_str_eq(s.path, "/var/lib/apiary/a.db");
    cr_assert_eq(parse(&s, "sqlite:///abs.db", err), 0);
    cr_expect_str_eq(s.path, "/abs.db");
    cr_assert_eq(parse(&s, "sqlite:rel.db", err), 0);
    cr_expect_str_eq(s.path, "rel.db");
    cr_expect_eq(parse(&s, "sqlite:", err), -1);
}

Test(sql_url, none)
{
    sql_settings s;
    char err[256];
    cr_assert_eq(parse(&s, "none", err), 0);
    cr_expect_eq(s.backend, SQL_BACKEND_NONE);
    /* Only the exact word: anything near it is a mistake, refused like any unknown form. */
    const char *near[] = {"None", "none:", "none ", "nothing"};
    for (size_t i = 0; i < sizeof(near) / sizeof(near[0]); i++) {
        cr_expect_eq(parse(&s, near[i], err), -1, "%s", near[i]);
        cr_expect(strstr(err, "\"none\""), "the message lists the form: %s", err);
    }
}

Test(sql_url, mysql_forms)
{
    sql_settings s;
    char err[256];
    cr_assert_eq(parse(&s, "mysql://bench:pw@127.0.0.1:3307/hello_world", err), 0, "%s", err);
    cr_expect_eq(s.backend, SQL_BACKEND_MARIADB);
    cr_expect_str_eq(s.user, "bench");
    cr_expect_str_eq(s.password, "pw");
    cr_expect_str_eq(s.host, "127.0.0.1");
    cr_expect_eq(s.port, 3307);
    cr_expect_str_eq(s.database, "hello_world");
    cr_assert_eq(parse(&s, "mariadb://u@10.0.0.5/db", err), 0, "%s", err);
    cr_expect_str_eq(s.password, "");
    cr_expect_eq(s.port, 3306);
    cr_assert_eq(parse(&s, "mysql://u%3Ax:p%40ss%2F:w@[::1]:3306/db", err), 0, "%s", err);
    cr_expect_str_eq(s.user, "u:x");
    cr_expect_str_eq(s.password, "p@ss/:w", "the last @ ends the password");
    cr_expect_str_eq(s.host, "::1");
    cr_assert_eq(parse(&s, "mysql://u:p@[::1]/db", err), 0, "%s", err);
}

Test(sql_url, refusals_never_echo_the_password)
{
    const char *bad[] = {
        "pgsql://u:SECRETPW@127.0.0.1/db", "mysql://SECRETPW@127.0.0.1",   "mysql://u:SECRETPW@localhost/db",
        "mysql://u:SECRETPW@db.example.com:3306/db", "mysql://u:SECRETPW@127.0.0.1:0/db",
        "mysql://u:SECRETPW@127.0.0.1:65536/db", "mysql://u:SECRETPW@127.0.0.1:33x/db",
        "mysql://u:SECRETPW@127.0.0.1/", "mysql://u:SECRETPW@127.0.0.1/a`b", "mysql://u:SECRETPW@127.0.0.1/a;drop",
        "mysql://:SECRETPW@127.0.0.1/db", "mysql://u:SECRET%zzPW@127.0.0.1/db", "mysql://u:SECRET%00PW@127.0.0.1/db",
        "mysql://u:SECRETPW@[::1/db", "mysql://u:SECRETPW@127.0.0.1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sql_settings s;
        char err[256] = "";
        cr_expect_eq(parse(&s, bad[i], err), -1, "accepted %s", bad[i]);
        cr_expect(err[0] != '\0', "no message for %s", bad[i]);
        cr_expect(strstr(err, "SECRET") == NULL, "%s echoed: %s", bad[i], err);
    }
}

Test(sql_url, tls_options)
{
    sql_settings s;
    char err[256];
    cr_assert_eq(parse(&s, "mysql://u:p@127.0.0.1/db", err), 0, "%s", err);
    cr_expect_eq(s.tls, SQL_TLS_OFF);
    cr_assert_eq(parse(&s, "mysql://u:p@127.0.0.1/db?ssl=required", err), 0, "%s", err);
    cr_expect_eq(s.tls, SQL_TLS_REQUIRED);
    cr_expect_str_eq(s.database, "db");
    cr_assert_eq(parse(&s, "mysql://u:p?x@127.0.0.1:3307/db?ssl=verify-ca&ssl_ca=/etc/ca%20dir/ca.pem", err), 0,
                 "%s", err);
    cr_expect_eq(s.tls, SQL_TLS_VERIFY_CA);
    cr_expect_str_eq(s.tls_ca, "/etc/ca dir/ca.pem");
    cr_expect_str_eq(s.password, "p?x", "a ? before the host is the password's");
    cr_expect_eq(s.port, 3307);
    cr_assert_eq(parse(&s, "mysql://u:p@[::1]/db?ssl_ca=ca.pem&ssl=verify-full", err), 0, "%s", err);
    cr_expect_eq(s.tls, SQL_TLS_VERIFY_FULL);
    cr_expect_str_eq(s.tls_ca, "ca.pem");
    const char *bad[] = {
        "mysql://u:SECRETPW@127.0.0.1/db?ssl=yes",          "mysql://u:SECRETPW@127.0.0.1/db?ssl=verify-ca",
        "mysql://u:SECRETPW@127.0.0.1/db?ssl=verify-full",  "mysql://u:SECRETPW@127.0.0.1/db?ssl_ca=ca.pem",
        "mysql://u:SECRETPW@127.0.0.1/db?ssl=required&ssl_ca=x", "mysql://u:SECRETPW@127.0.0.1/db?sslmode=require",
        "mysql://u:SECRETPW@127.0.0.1/db?ssl=verify-ca&ssl_ca=", "mysql://u:SECRETPW@127.0.0.1/?ssl=required",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char msg[256] = "";
        cr_expect_eq(parse(&s, bad[i], msg), -1, "accepted %s", bad[i]);
        cr_expect(msg[0] != '\0', "no message for %s", bad[i]);
        cr_expect(strstr(msg, "SECRET") == NULL && strstr(msg, "mysql://") == NULL, "%s echoed: %s", bad[i], msg);
    }
}

Test(sql_url, failure_leaves_settings_untouched)
{
    sql_settings s;
    char err[256];
    cr_assert_eq(parse(&s, "mysql://u:p@127.0.0.1:3307/db", err), 0);
    cr_assert_eq(sql_url_parse(&s, "mysql://u:q@localhost/other", err, sizeof(err)), -1);
    cr_expect_str_eq(s.password, "p");
    cr_expect_str_eq(s.database, "db");
}

Test(sql_url, postgres_forms)
{
    sql_settings s;
    char err[256];
    cr_assert_eq(parse(&s, "postgres://bench:pw@127.0.0.1:5433/hello_world", err), 0, "%s", err);
    cr_expect_eq(s.backend, SQL_BACKEND_POSTGRES);
    cr_expect_str_eq(s.user, "bench");
    cr_expect_str_eq(s.password, "pw");
    cr_expect_str_eq(s.host, "127.0.0.1");
    cr_expect_str_eq(s.socket_dir, "");
    cr_expect_eq(s.port, 5433);
    cr_expect_str_eq(s.database, "hello_world");
    cr_expect_eq(s.tls, SQL_TLS_OFF);
    cr_assert_eq(parse(&s, "postgresql://u@[::1]/db", err), 0, "%s", err);
    cr_expect_eq(s.backend, SQL_BACKEND_POSTGRES);
    cr_expect_eq(s.port, 5432, "PostgreSQL's port by default");
    cr_expect_str_eq(s.host, "::1");
    cr_expect_str_eq(s.password, "");
    /* A Unix socket directory: %-encoded in the host (libpq's URL form), or as host= */
    cr_assert_eq(parse(&s, "postgres://u:p@%2Frun%2Fpostgresql:5433/db", err), 0, "%s", err);
    cr_expect_str_eq(s.socket_dir, "/run/postgresql");
    cr_expect_str_eq(s.host, "");
    cr_expect_eq(s.port, 5433);
    cr_assert_eq(parse(&s, "postgres://u:p@/db?host=/tmp/pg%20sock", err), 0, "%s", err);
    cr_expect_str_eq(s.socket_dir, "/tmp/pg sock");
    cr_expect_eq(s.port, 5432);
    /* TLS, libpq's names */
    cr_assert_eq(parse(&s, "postgres://u:p@127.0.0.1/db?sslmode=require", err), 0, "%s", err);
    cr_expect_eq(s.tls, SQL_TLS_REQUIRED);
    cr_assert_eq(parse(&s, "postgres://u:p@127.0.0.1/db?sslrootcert=%2Fca.pem&sslmode=verify-full", err), 0, "%s", err);
    cr_expect_eq(s.tls, SQL_TLS_VERIFY_FULL);
    cr_expect_str_eq(s.tls_ca, "/ca.pem");
    cr_assert_eq(parse(&s, "postgres://u:p@127.0.0.1/db?sslmode=verify-ca&sslrootcert=ca.pem", err), 0, "%s", err);
    cr_expect_eq(s.tls, SQL_TLS_VERIFY_CA);
    cr_assert_eq(parse(&s, "postgres://u:p@127.0.0.1/db?sslmode=disable", err), 0, "%s", err);
    cr_expect_eq(s.tls, SQL_TLS_OFF);
    /* A MariaDB URL after a PostgreSQL one keeps nothing of it */
    cr_assert_eq(parse(&s, "mysql://u:p@127.0.0.1/db", err), 0, "%s", err);
    cr_expect_eq(s.backend, SQL_BACKEND_MARIADB);
    cr_expect_eq(s.port, 3306);
}

Test(sql_url, postgres_refusals_never_echo_the_password)
{
    const char *bad[] = {
        "postgres://u:SECRETPW@localhost/db",                 "postgres://u:SECRETPW@db.example.com:5432/db",
        "postgres://u:SECRETPW@127.0.0.1:0/db",               "postgres://u:SECRETPW@127.0.0.1/",
        "postgres://u:SECRETPW@/db",                          "postgres://u:SECRETPW@127.0.0.1/db?sslmode=prefer",
        "postgres://u:SECRETPW@127.0.0.1/db?sslmode=verify-full", "postgres://u:SECRETPW@127.0.0.1/db?sslrootcert=x",
        "postgres://u:SECRETPW@127.0.0.1/db?ssl=required",    "postgres://u:SECRETPW@/db?host=relative/dir",
        "postgres://u:SECRETPW@%2Ftmp/db?sslmode=require",    "postgres://u:SECRETPW@127.0.0.1/a;b",
        "postgresql://SECRETPW@127.0.0.1",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        sql_settings s;
        char err[256] = "";
        cr_expect_eq(parse(&s, bad[i], err), -1, "accepted %s", bad[i]);
        cr_expect(err[0] != '\0', "no message for %s", bad[i]);
        cr_expect(strstr(err, "SECRET") == NULL, "%s echoed: %s", bad[i], err);
    }
}

/* ---- PostgreSQL's numbered placeholders --------------------------------------------------------- */

static void expect_placeholders(const char *in, const char *want, size_t want_n)
{
    size_t n = 99;
    char *out = sql__pg_placeholders(in, &n);
    cr_expect_str_eq(out, want, "for %s", in);
    cr_expect_eq(n, want_n, "count for %s: %zu", in, n);
    free(out);
}

Test(sql_pg, placeholders_numbered_in_order)
{
    expect_placeholders("SELECT 1", "SELECT 1", 0);
    expect_placeholders("", "", 0);
    expect_placeholders("SELECT id, randomNumber FROM world WHERE id = ?",
                        "SELECT id, randomNumber FROM world WHERE id = $1", 1);
    expect_placeholders("INSERT INTO t (a, b, c) VALUES (?,?,?)", "INSERT INTO t (a, b, c) VALUES ($1,$2,$3)", 3);
    expect_placeholders("?", "$1", 1);
    char many[64 * 2 + 1] = "", want[64 * 5] = "";
    for (int i = 0; i < 64; i++) {
        strcat(many, "?,");
        sprintf(want + strlen(want), "$%d,", i + 1);
    }
    expect_placeholders(many, want, 64);
}

Test(sql_pg, placeholders_not_inside_quotes_or_comments)
{
    expect_placeholders("SELECT '?', ? FROM t", "SELECT '?', $1 FROM t", 1);
    expect_placeholders("SELECT 'it''s ?', ?", "SELECT 'it''s ?', $1", 1);
    expect_placeholders("SELECT E'\\'?', ?", "SELECT E'\\'?', $1", 1);
    expect_placeholders("SELECT '\\', ?", "SELECT '\\', $1", 1); /* a standard string: \ is no escape */
    expect_placeholders("SELECT \"we?ird\" FROM t WHERE a = ?", "SELECT \"we?ird\" FROM t WHERE a = $1", 1);
    expect_placeholders("SELECT ? -- what?\n, ?", "SELECT $1 -- what?\n, $2", 2);
    expect_placeholders("SELECT /* a? /* nested? */ still? */ ?", "SELECT /* a? /* nested? */ still? */ $1", 1);
    expect_placeholders("SELECT $$ a ? $$, ?", "SELECT $$ a ? $$, $1", 1);
    expect_placeholders("SELECT $tag$ a $$ ? $tag$, ?", "SELECT $tag$ a $$ ? $tag$, $1", 1);
    expect_placeholders("SELECT $1, ?", "SELECT $1, $1", 1); /* $1 is no quote: left as written */
    expect_placeholders("SELECT 'unterminated ?", "SELECT 'unterminated ?", 0);
    expect_placeholders("SELECT ? /* unterminated ?", "SELECT $1 /* unterminated ?", 1);
}

/* ---- results -------------------------------------------------------------------------------------- */

Test(sql_rows, copy_into_scope)
{
    struct event_base *base = event_base_new();
    async_scope *scope = async_scope_new(base);
    sql_rows r = {.cols = 2};
    char big[3000];
    memset(big, 'x', sizeof(big));
    for (int i = 0; i < 50; i++) {
        sql_value id = sql_int(i);
        sql_value text = sql_text(big, (size_t)(i * 50));
        sql__rows_add(&r, &id);
        sql__rows_add(&r, &text);
        r.rows++;
    }
    sql_result out;
    sql__rows_copy(scope, &r, &out);
    sql__rows_free(&r);
    cr_assert_eq(out.rows, 50);
    for (size_t i = 0; i < 50; i++) {
        cr_expect_eq(sql_cell(&out, i, 0)->i, (long long)i);
        const sql_value *t = sql_cell(&out, i, 1);
        cr_expect_eq(t->type, SQL_TEXT);
        cr_expect_eq(t->len, i * 50);
        cr_expect_eq(t->s[t->len], '\0', "NUL-terminated");
        cr_expect(memcmp(t->s, big, t->len) == 0);
    }
    async_scope_free(scope);
    event_base_free(base);
}

/* A result of up to SQL_ROWS_INLINE cells is kept inside its sql_rows (no allocation); one more moves
 * them to the heap with their values intact; freeing either kind leaves an empty sql_rows that can be
 * filled again (ASan checks the one free path). */
Test(sql_rows, inline_cells_then_heap)
{
    struct event_base *base = event_base_new();
    async_scope *scope = async_scope_new(base);
    for (int n = SQL_ROWS_INLINE - 1; n <= SQL_ROWS_INLINE + 1; n++) {
        sql_rows r = {.cols = 1};
        for (int round = 0; round < 2; round++) {
            r.cols = 1;
            for (int i = 0; i < n; i++) {
                sql_value v = sql_int(100 + i);
                sql__rows_add(&r, &v);
                r.rows++;
            }
            cr_expect_eq(r.cells == r.inline_cells, n <= SQL_ROWS_INLINE, "%d cells: inline only while they fit", n);
            sql_result out;
            sql__rows_copy(scope, &r, &out);
            cr_assert_eq(out.rows, (size_t)n);
            for (int i = 0; i < n; i++)
                cr_expect_eq(sql_cell(&out, (size_t)i, 0)->i, 100 + i);
            sql__rows_free(&r);
            cr_expect_null(r.cells);
        }
    }
    async_scope_free(scope);
    event_base_free(base);
}

/* A database decides how many rows and columns come back: reading past them is NULL, not memory. */
Test(sql_result, cell_out_of_range_is_null)
{
    sql_value one[1] = {sql_int(7)};
    sql_result r = {.rows = 1, .cols = 1, .cells = one};
    cr_assert_not_null(sql_cell(&r, 0, 0));
    cr_expect_eq(sql_cell(&r, 0, 0)->i, 7);
    cr_expect_null(sql_cell(&r, 0, 1), "a column the result does not have");
    cr_expect_null(sql_cell(&r, 0, 3));
    cr_expect_null(sql_cell(&r, 1, 0), "a row the result does not have");
    cr_expect_null(sql_cell(NULL, 0, 0));
    sql_result empty = {.rows = 0, .cols = 4};
    cr_expect_null(sql_cell(&empty, 0, 0));
}

Test(sql_result, shape)
{
    sql_value item[4] = {sql_int(1), sql_text("n", 1), sql_double(2.5), sql_text("t", 1)};
    sql_result r = {.rows = 1, .cols = 4, .cells = item};
    cr_expect(sql_result_shape(&r, "itdt"));
    cr_expect(sql_result_shape(&r, "ITDT"), "upper case also allows the type itself");
    cr_expect_not(sql_result_shape(&r, "itd"), "one column too many");
    cr_expect_not(sql_result_shape(&r, "itdtt"), "one column too few");
    cr_expect_not(sql_result_shape(&r, "ttdt"), "an integer is not text");
    cr_expect_not(sql_result_shape(&r, "itit"), "a double is not an integer");
    item[2] = sql_int(3);
    cr_expect(sql_result_shape(&r, "itdt"), "an integer is a number");
    item[1] = (sql_value){.type = SQL_NULL};
    cr_expect_not(sql_result_shape(&r, "itdt"), "NULL only where the letter is upper case");
    cr_expect(sql_result_shape(&r, "iTdt"));
    /* The finding: a server answering one column where the handler reads four. */
    sql_value id[1] = {sql_int(1)};
    sql_result narrow = {.rows = 1, .cols = 1, .cells = id};
    cr_expect_not(sql_result_shape(&narrow, "itdt"));
    sql_result none = {.rows = 0, .cols = 4};
    cr_expect(sql_result_shape(&none, "itdt"), "no rows: the columns still count");
    cr_expect_not(sql_result_shape(NULL, "i"));
    cr_expect_not(sql_result_shape(&narrow, "x"), "an unknown letter never matches");
}

/* ---- the SQLite backend on a worker pool ------------------------------------------------------- */

typedef struct sql_fixture {
    test_loop loop;
    sql_settings settings;
    char dir[64];
} sql_fixture;

static sql_fixture fx;

typedef struct sql_wait {
    atomic_int done;
    async_op *op;
} sql_wait;

static void sql_test_done(async_op *op, void *arg)
{
    sql_wait *w = arg;
    w->op = op;
    atomic_store(&w->done, 1);
}

/* The tests' own tables: what the apiary binary's startup hook creates (handlers/schema.c); the
 * library creates none. One dependent batch: the fill needs the table the first statement creates. */
static const char *const SQL_TEST_SCHEMA[] = {
    "CREATE TABLE world (id INTEGER NOT NULL PRIMARY KEY, randomNumber INTEGER NOT NULL DEFAULT 0)",
    "INSERT INTO world (id, randomNumber) WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq "
    "WHERE n < 10000) SELECT n, abs(random() % 10000) + 1 FROM seq",
    "CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, price REAL NOT NULL, "
    "created_at TEXT NOT NULL)",
};

static void sql_setup(void)
{
    test_loop_init(&fx.loop);
    async_coro_configure(0, ASYNC_CORO_IDLE_STACKS_DEFAULT);
    strcpy(fx.dir, "/tmp/apiary-sql-test-XXXXXX");
    cr_assert_not_null(mkdtemp(fx.dir));
    sql_settings_defaults(&fx.settings);
    snprintf(fx.settings.path, sizeof(fx.settings.path), "%s/t.db", fx.dir);
    fx.settings.query_timeout_ms = 5000;
    cr_assert_eq(sql_start(&fx.settings), 0);
    static sql_wait w;
    memset(&w, 0, sizeof(w));
    sql_stmt stmts[3];
    for (size_t i = 0; i < 3; i++)
        stmts[i] = (sql_stmt){SQL_TEST_SCHEMA[i], NULL, 0, 0};
    async_op_then(sql_batch(fx.loop.scope, NULL, stmts, 3), sql_test_done, &w);
    cr_assert(test_loop_run_until(&fx.loop, &w.done, 1), "no answer from SQLite's threads");
    cr_assert_eq(w.op->status, ASYNC_OK, "the schema batch: %s", w.op->error ? w.op->error : "?");
}

static void sql_teardown(void)
{
    test_loop_fini(&fx.loop);
    sql_stop();
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", fx.dir);
    cr_expect_eq(system(cmd), 0);
}

/* Runs one statement to completion and returns its operation (in the fixture's scope). */
static async_op *run(const char *sql, const sql_value *params, size_t n, size_t max)
{
    static sql_wait w;
    memset(&w, 0, sizeof(w));
    sql_stmt stmt = {sql, params, n, max};
    async_op_then(sql_query(fx.loop.scope, NULL, &stmt), sql_test_done, &w);
    cr_assert(test_loop_run_until(&fx.loop, &w.done, 1), "no answer from the pool");
    return w.op;
}

static const sql_result *run_ok(const char *sql, const sql_value *params, size_t n)
{
    async_op *op = run(sql, params, n, 0);
    cr_assert_eq(op->status, ASYNC_OK, "%s: %s", sql, op->error ? op->error : "?");
    return op->value;
}

/* B3 of issue 22: the batch used to prepare every statement before running the first, so the fill
 * failed "no such table: world". The fixture's batch creates and fills it in one go. */
Test(sql_sqlite, a_batch_runs_dependent_statements_in_order, .init = sql_setup, .fini = sql_teardown)
{
    const sql_result *r =
        run_ok("SELECT COUNT(*), MIN(id), MAX(id), MIN(randomNumber) >= 1, MAX(randomNumber) <= 10000 "
               "FROM world",
               NULL, 0);
    cr_assert_eq(r->rows, 1);
    cr_expect_eq(sql_cell(r, 0, 0)->i, 10000);
    cr_expect_eq(sql_cell(r, 0, 1)->i, 1);
    cr_expect_eq(sql_cell(r, 0, 2)->i, 10000);
    cr_expect_eq(sql_cell(r, 0, 3)->i, 1);
    cr_expect_eq(sql_cell(r, 0, 4)->i, 1);
    /* Starting again on the same file creates nothing (no demonstration tables from the library). */
    sql_stop();
    cr_assert_eq(sql_start(&fx.settings), 0);
    r = run_ok("SELECT COUNT(*) FROM world", NULL, 0);
    cr_expect_eq(sql_cell(r, 0, 0)->i, 10000);
    r = run_ok("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name NOT IN ('world', 'items', "
               "'sqlite_sequence')",
               NULL, 0);
    cr_expect_eq(sql_cell(r, 0, 0)->i, 0, "sql_start created a table");
}

/* An empty text comes back as an empty string, not NULL (SQLite gives no pointer for it: the encoder
 * must not pass that to memcpy, which UBSan reports; test_97_notes found it with a note's empty body). */
Test(sql_sqlite, an_empty_text_reads_back_empty, .init = sql_setup, .fini = sql_teardown)
{
    sql_value p[3] = {sql_text("", 0), sql_double(1), sql_text("now", 3)};
    const sql_result *ins = run_ok("INSERT INTO items (name, price, created_at) VALUES (?, ?, ?)", p, 3);
    sql_value id = sql_int(ins->insert_id);
    const sql_result *r = run_ok("SELECT name, '' FROM items WHERE id = ?", &id, 1);
    cr_assert(sql_result_shape(r, "tt") && r->rows == 1);
    for (size_t col = 0; col < 2; col++) {
        cr_expect_eq(sql_cell(r, 0, col)->len, 0);
        cr_assert_not_null(sql_cell(r, 0, col)->s);
        cr_expect_str_eq(sql_cell(r, 0, col)->s, "");
    }
}

Test(sql_sqlite, parameters_are_bound, .init = sql_setup, .fini = sql_teardown)
{
    const char *evil = "Robert'); DROP TABLE items;--";
    sql_value p[3] = {sql_text(evil, strlen(evil)), sql_double(2.5), sql_text("now", 3)};
    const sql_result *ins = run_ok("INSERT INTO items (name, price, created_at) VALUES (?, ?, ?)", p, 3);
    cr_expect_eq(ins->affected, 1);
    cr_expect_gt(ins->insert_id, 0);
    sql_value id = sql_int(ins->insert_id);
    const sql_result *r = run_ok("SELECT id, name, price, created_at, NULL FROM items WHERE id = ?", &id, 1);
    cr_assert_eq(r->rows, 1);
    cr_assert_eq(r->cols, 5);
    cr_expect_eq(sql_cell(r, 0, 0)->type, SQL_INT);
    cr_expect_str_eq(sql_cell(r, 0, 1)->s, evil);
    cr_expect_eq(sql_cell(r, 0, 2)->type, SQL_DOUBLE);
    cr_expect_eq(sql_cell(r, 0, 2)->d, 2.5);
    cr_expect_eq(sql_cell(r, 0, 4)->type, SQL_NULL);
    r = run_ok("SELECT COUNT(*) FROM items", NULL, 0);
    cr_expect_eq(sql_cell(r, 0, 0)->i, 1, "the table is still there");
}

Test(sql_sqlite, batch_is_one_transaction, .init = sql_setup, .fini = sql_teardown)
{
    static sql_wait w;
    sql_value a[2] = {sql_int(7), sql_int(1)}, b[2] = {sql_int(8), sql_int(2)};
    sql_stmt ok[2] = {{"UPDATE world SET randomNumber = ? WHERE id = ?", a, 2, 0},
                      {"UPDATE world SET randomNumber = ? WHERE id = ?", b, 2, 0}};
    async_op_then(sql_batch(fx.loop.scope, NULL, ok, 2), sql_test_done, &w);
    cr_assert(test_loop_run_until(&fx.loop, &w.done, 1));
    cr_assert_eq(w.op->status, ASYNC_OK);
    const sql_batch_result *br = w.op->value;
    cr_assert_eq(br->count, 2);
    cr_expect_eq(br->results[0].affected, 1);
    /* A failing member rolls the whole batch back. */
    memset(&w, 0, sizeof(w));
    sql_value c[2] = {sql_int(99), sql_int(1)};
    sql_stmt bad[2] = {{"UPDATE world SET randomNumber = ? WHERE id = ?", c, 2, 0},
                       {"SELECT nope FROM nowhere", NULL, 0, 0}};
    async_op_then(sql_batch(fx.loop.scope, NULL, bad, 2), sql_test_done, &w);
    cr_assert(test_loop_run_until(&fx.loop, &w.done, 1));
    cr_expect_eq(w.op->status, ASYNC_FAILED);
    cr_expect_eq(w.op->error, SQL_ERROR_QUERY);
    sql_value one = sql_int(1);
    const sql_result *r = run_ok("SELECT randomNumber FROM world WHERE id = ?", &one, 1);
    cr_expect_eq(sql_cell(r, 0, 0)->i, 7, "rolled back");
}

Test(sql_sqlite, errors, .init = sql_setup, .fini = sql_teardown)
{
    async_op *op = run("SELEC broken", NULL, 0, 0);
    cr_expect_eq(op->status, ASYNC_FAILED);
    cr_expect_eq(op->error, SQL_ERROR_QUERY);
    op = run("SELECT id, randomNumber FROM world", NULL, 0, 4096);
    cr_expect_eq(op->status, ASYNC_FAILED);
    cr_expect_eq(op->error, SQL_ERROR_TOO_LARGE);
    op = run("SELECT id FROM world WHERE id <= 10", NULL, 0, 4096);
    cr_expect_eq(op->status, ASYNC_OK, "a result within its limit");
    sql_stats st;
    sql_stats_read(&st);
    cr_expect_geq(st.errors_query, 1);
    cr_expect_geq(st.errors_too_large, 1);
}

/* SQLite counts the statement's `?`: fewer values than that used to run with NULLs in their place. */
Test(sql_sqlite, parameter_count_is_the_statements, .init = sql_setup, .fini = sql_teardown)
{
    sql_value one = sql_int(1), two[2] = {sql_int(1), sql_int(2)};
    async_op *op = run("SELECT ? + ?", &one, 1, 0);
    cr_expect_eq(op->status, ASYNC_FAILED, "two ? and one value");
    cr_expect_eq(op->error, SQL_ERROR_QUERY);
    op = run("SELECT ?", two, 2, 0);
    cr_expect_eq(op->status, ASYNC_FAILED, "one ? and two values");
    cr_expect_eq(op->error, SQL_ERROR_QUERY);
    op = run("SELECT 1", &one, 1, 0);
    cr_expect_eq(op->status, ASYNC_FAILED, "no ? and a value");
    const sql_result *r = run_ok("SELECT ? + ?", two, 2);
    cr_expect_eq(sql_cell(r, 0, 0)->i, 3);
}

/* A value past the bound fails before SQLite loads it (SQLITE_LIMIT_LENGTH), and the limit is the
 * statement's: the next one is not affected. */
Test(sql_sqlite, value_past_the_bound, .init = sql_setup, .fini = sql_teardown)
{
    async_op *op = run("SELECT zeroblob(64 * 1024 * 1024)", NULL, 0, 1024);
    cr_expect_eq(op->status, ASYNC_FAILED);
    cr_expect_eq(op->error, SQL_ERROR_TOO_LARGE);
    op = run("SELECT zeroblob(3000)", NULL, 0, 8192);
    cr_expect_eq(op->status, ASYNC_OK, "within its own bound");
    const char *name = "a name longer than the default bound of the insert's result, which has no rows";
    char big[2000];
    memset(big, 'n', sizeof(big));
    sql_value p[3] = {sql_text(big, sizeof(big)), sql_double(1), sql_text(name, strlen(name))};
    op = run("INSERT INTO items (name, price, created_at) VALUES (?, ?, ?)", p, 3, 0);
    cr_expect_eq(op->status, ASYNC_OK, "a write with a 2000-byte value and a 1 KiB result bound");
}

/* B4 of issue 22: the default bound was 1 KiB, so an app stored a row it could not read back. */
Test(sql_sqlite, the_default_bound_reads_back_what_was_stored, .init = sql_setup, .fini = sql_teardown)
{
    static char big[16 * 1024];
    memset(big, 'x', sizeof(big));
    sql_value p[3] = {sql_text(big, sizeof(big)), sql_double(1), sql_text("now", 3)};
    const sql_result *ins = run_ok("INSERT INTO items (name, price, created_at) VALUES (?, ?, ?)", p, 3);
    sql_value id = sql_int(ins->insert_id);
    const sql_result *r = run_ok("SELECT name FROM items WHERE id = ?", &id, 1);
    cr_assert_eq(r->rows, 1);
    cr_expect_eq(sql_cell(r, 0, 0)->len, sizeof(big));
}

Test(sql_sqlite, cancelled_operation_never_continues, .init = sql_setup, .fini = sql_teardown)
{
    static sql_wait w;
    /* Long enough to be running when the scope ends: the progress handler interrupts it. */
    sql_stmt slow = {"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 100000000) "
                     "SELECT COUNT(*) FROM c", NULL, 0, 0};
    async_op_then(sql_query(fx.loop.scope, NULL, &slow), sql_test_done, &w);
    test_loop_free_scope(&fx.loop);
    uint64_t deadline = test_loop_now_ms() + 3000;
    while (test_loop_now_ms() < deadline) {
        if (!sql__jobs_left())
            break;
        event_base_loop(fx.loop.base, EVLOOP_NONBLOCK);
    }
    cr_expect_not(sql__jobs_left(), "the interrupted job ended");
    test_loop_drain(&fx.loop);
    cr_expect_eq(atomic_load(&w.done), 0, "no continuation of an ended scope");
    sql_stats st;
    sql_stats_read(&st);
    cr_expect_geq(st.results_discarded, 1);
}

/* ---- transactions and migrations (coroutines on the fixture's loop) ----------------------------- */

typedef struct sql_coro {
    atomic_int done;
    void (*body)(async_scope *scope);
    async_scope *scope;
} sql_coro;

static void sql_coro_main(void *arg)
{
    sql_coro *c = arg;
    c->body(c->scope);
    atomic_store(&c->done, 1);
}

/* Runs body(scope) as a coroutine in `scope` until it returns. Assertions inside it go through
 * criterion's cr_expect (never cr_assert, which would longjmp off the coroutine's stack). */
static void sql_run_coro(async_scope *scope, void (*body)(async_scope *scope))
{
    static sql_coro c;
    memset(&c, 0, sizeof(c));
    c.body = body;
    c.scope = scope;
    cr_assert(async_coro_spawn(scope, sql_coro_main, &c));
    cr_assert(test_loop_run_until(&fx.loop, &c.done, 1), "the coroutine did not finish");
}

/* Lets jobs that nobody awaits (a rollback) finish and hand their results back. */
static void sql_settle(void)
{
    uint64_t deadline = test_loop_now_ms() + TEST_LOOP_TIMEOUT_MS;
    while (sql__jobs_left() && test_loop_now_ms() < deadline)
        event_base_loop(fx.loop.base, EVLOOP_NONBLOCK);
    for (int i = 0; i < 5; i++)
        event_base_loop(fx.loop.base, EVLOOP_NONBLOCK);
}

static const char TXN_INSERT[] = "INSERT INTO items (name, price, created_at) VALUES (?, 1, 'now')";

static async_op *txn_insert(sql_txn *tx, const char *name)
{
    sql_value p = sql_text(name, strlen(name));
    sql_stmt stmt = {TXN_INSERT, &p, 1, 0};
    return async_await(sql_txn_query(tx, &stmt));
}

static long long count_named(const char *name)
{
    sql_value p = sql_text(name, strlen(name));
    const sql_result *r = run_ok("SELECT COUNT(*) FROM items WHERE name = ?", &p, 1);
    return sql_cell(r, 0, 0)->i;
}

static void txn_commit_body(async_scope *scope)
{
    async_op *op = async_await(sql_begin(scope, NULL));
    cr_expect_eq(op->status, ASYNC_OK);
    sql_txn *tx = op->value;
    cr_expect_eq(txn_insert(tx, "committed")->status, ASYNC_OK);
    /* The second statement sees the first: the same connection, inside the same transaction. */
    sql_stmt count = {"SELECT COUNT(*) FROM items WHERE name = 'committed'", NULL, 0, 0};
    op = async_await(sql_txn_query(tx, &count));
    cr_expect_eq(op->status, ASYNC_OK);
    cr_expect_eq(sql_cell(op->value, 0, 0)->i, 1);
    cr_expect_eq(async_await(sql_commit(tx))->status, ASYNC_OK);
    op = async_await(sql_commit(tx));
    cr_expect_eq(op->status, ASYNC_FAILED, "a handle is done once committed");
}

Test(sql_txn, commit_makes_it_visible, .init = sql_setup, .fini = sql_teardown)
{
    sql_run_coro(fx.loop.scope, txn_commit_body);
    cr_expect_eq(count_named("committed"), 1);
}

static void txn_rollback_body(async_scope *scope)
{
    sql_txn *tx = async_await(sql_begin(scope, NULL))->value;
    cr_expect_eq(txn_insert(tx, "rolled")->status, ASYNC_OK);
    cr_expect_eq(async_await(sql_rollback(tx))->status, ASYNC_OK);
}

Test(sql_txn, rollback_undoes, .init = sql_setup, .fini = sql_teardown)
{
    sql_run_coro(fx.loop.scope, txn_rollback_body);
    cr_expect_eq(count_named("rolled"), 0);
}

static void txn_failed_body(async_scope *scope)
{
    sql_txn *tx = async_await(sql_begin(scope, NULL))->value;
    cr_expect_eq(txn_insert(tx, "lost")->status, ASYNC_OK);
    sql_stmt bad = {"SELECT nope FROM nowhere", NULL, 0, 0};
    async_op *op = async_await(sql_txn_query(tx, &bad));
    cr_expect_eq(op->status, ASYNC_FAILED);
    cr_expect_eq(op->error, SQL_ERROR_QUERY);
    op = txn_insert(tx, "after");
    cr_expect_eq(op->error, SQL_ERROR_QUERY, "a failed statement ends the transaction");
    cr_expect_eq(async_await(sql_commit(tx))->error, SQL_ERROR_QUERY);
    cr_expect_eq(async_await(sql_rollback(tx))->status, ASYNC_OK, "nothing left to undo");
    /* The write lock went with the rollback: another transaction begins at once. */
    op = async_await(sql_begin(scope, NULL));
    cr_expect_eq(op->status, ASYNC_OK);
    if (op->status == ASYNC_OK)
        cr_expect_eq(async_await(sql_commit(op->value))->status, ASYNC_OK);
}

Test(sql_txn, a_failed_statement_rolls_back, .init = sql_setup, .fini = sql_teardown)
{
    sql_run_coro(fx.loop.scope, txn_failed_body);
    cr_expect_eq(count_named("lost"), 0);
    cr_expect_eq(count_named("after"), 0);
}

static void txn_one_at_a_time_body(async_scope *scope)
{
    sql_txn *tx = async_await(sql_begin(scope, NULL))->value;
    sql_value a = sql_text("first", 5);
    sql_stmt first = {TXN_INSERT, &a, 1, 0};
    async_op *running = sql_txn_query(tx, &first);
    async_op *second = sql_txn_query(tx, &first);
    cr_expect_eq(second->status, ASYNC_FAILED, "refused while the first runs");
    cr_expect_eq(async_await(running)->status, ASYNC_OK);
    cr_expect_eq(async_await(sql_commit(tx))->status, ASYNC_OK);
}

Test(sql_txn, one_statement_at_a_time, .init = sql_setup, .fini = sql_teardown)
{
    sql_run_coro(fx.loop.scope, txn_one_at_a_time_body);
    cr_expect_eq(count_named("first"), 1);
}

static void txn_abandoned_body(async_scope *scope)
{
    sql_txn *tx = async_await(sql_begin(scope, NULL))->value;
    cr_expect_eq(txn_insert(tx, "abandoned")->status, ASYNC_OK);
    /* returns with the transaction open: its scope's end must roll it back */
}

/* A handler that returns (or a client that leaves) mid-transaction: the scope's end rolls it back and
 * frees the connection, whose write lock would otherwise block every later writer. */
Test(sql_txn, the_scopes_end_rolls_back, .init = sql_setup, .fini = sql_teardown)
{
    async_scope *scope = async_scope_new(fx.loop.base);
    async_scope_set_poster(scope, test_loop_post, &fx.loop);
    sql_run_coro(scope, txn_abandoned_body);
    async_scope_free(scope);
    sql_settle();
    cr_expect_eq(count_named("abandoned"), 0);
    sql_value p = sql_text("later", 5);
    async_op *op = run(TXN_INSERT, &p, 1, 0);
    cr_expect_eq(op->status, ASYNC_OK, "a writer after the abandoned transaction: %s", op->error ? op->error : "");
}

static void txn_timeout_body(async_scope *scope)
{
    sql_txn *tx = async_await(sql_begin(scope, NULL))->value;
    cr_expect_eq(txn_insert(tx, "slow")->status, ASYNC_OK);
    sql_stmt slow = {"WITH RECURSIVE c(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM c WHERE n < 1000000000) "
                     "SELECT COUNT(*) FROM c", NULL, 0, 0};
    async_op *op = async_await(sql_txn_query(tx, &slow));
    cr_expect_eq(op->error, SQL_ERROR_TIMEOUT, "%s", op->error ? op->error : "ok");
}

Test(sql_txn, a_statement_past_the_timeout_is_interrupted_and_rolled_back, .init = sql_setup, .fini = sql_teardown)
{
    fx.settings.query_timeout_ms = 300; /* read at each submission */
    sql_run_coro(fx.loop.scope, txn_timeout_body);
    fx.settings.query_timeout_ms = 5000;
    sql_settle();
    cr_expect_eq(count_named("slow"), 0);
}

/* ---- another writer's lock: conflict, not busy -------------------------------------------------- */

static const char *locked_begin_error;

static void txn_locked_begin_body(async_scope *scope)
{
    async_op *op = async_await(sql_begin(scope, NULL));
    locked_begin_error = op->status == ASYNC_OK ? NULL : op->error;
    if (op->status == ASYNC_OK)
        async_await(sql_rollback(op->value));
}

/* Another process's writer (here a connection of the test's own, outside apiary) holds SQLite's write
 * lock past the query timeout: a write and a transaction's BEGIN fail "conflict", counted as such, and
 * never "busy", which is kept for apiary's own queue being full. A read is not held up (WAL). Once the
 * lock is gone, the same write succeeds: it was worth sending again. */
Test(sql_sqlite, another_writers_lock_is_a_conflict_not_busy, .init = sql_setup, .fini = sql_teardown)
{
    sqlite3 *other = NULL;
    cr_assert_eq(sqlite3_open(fx.settings.path, &other), SQLITE_OK);
    cr_assert_eq(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(other));
    sql_stats before;
    sql_stats_read(&before);
    fx.settings.query_timeout_ms = 300; /* read at each submission */
    sql_value p[2] = {sql_int(5), sql_int(1)};
    async_op *op = run("UPDATE world SET randomNumber = ? WHERE id = ?", p, 2, 0);
    cr_expect_eq(op->status, ASYNC_FAILED);
    cr_expect_eq(op->error, SQL_ERROR_CONFLICT, "%s", op->error ? op->error : "ok");
    sql_run_coro(fx.loop.scope, txn_locked_begin_body);
    cr_expect_eq(locked_begin_error, SQL_ERROR_CONFLICT, "BEGIN: %s", locked_begin_error ? locked_begin_error : "ok");
    op = run("SELECT randomNumber FROM world WHERE id = 1", NULL, 0, 0);
    cr_expect_eq(op->status, ASYNC_OK, "a reader does not wait for the writer");
    fx.settings.query_timeout_ms = 5000;
    sql_stats after;
    sql_stats_read(&after);
    cr_expect_eq(after.errors_conflict - before.errors_conflict, 2);
    cr_expect_eq(after.errors_busy - before.errors_busy, 0);
    cr_assert_eq(sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(other);
    run_ok("UPDATE world SET randomNumber = ? WHERE id = ?", p, 2);
}

/* ---- migrations -------------------------------------------------------------------------------- */

static const char *const MIG_1[] = {"CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"};
static const char *const MIG_2[] = {"ALTER TABLE notes ADD COLUMN stars INTEGER NOT NULL DEFAULT 0",
                                    "INSERT INTO notes (body, stars) VALUES ('hello', 3)"};
static const char *const MIG_BAD[] = {"CREATE TABLE other (x INTEGER)", "INSERT INTO nowhere VALUES (1)"};
static const sql_migration MIGRATIONS[] = {{MIG_1, 1}, {MIG_2, 2}, {MIG_BAD, 2}};
static size_t mig_applied;
static const char *mig_error;

static void mig_two_body(async_scope *scope)
{
    async_op *op = async_await(sql_migrate(scope, NULL, MIGRATIONS, 2));
    mig_error = op->status == ASYNC_OK ? NULL : op->error;
    mig_applied = op->status == ASYNC_OK ? *(size_t *)op->value : 0;
}

static void mig_three_body(async_scope *scope)
{
    async_op *op = async_await(sql_migrate(scope, NULL, MIGRATIONS, 3));
    mig_error = op->status == ASYNC_OK ? NULL : op->error;
}

Test(sql_migrate, steps_apply_once_in_order, .init = sql_setup, .fini = sql_teardown)
{
    sql_run_coro(fx.loop.scope, mig_two_body);
    cr_expect_null(mig_error);
    cr_expect_eq(mig_applied, 2);
    sql_run_coro(fx.loop.scope, mig_two_body);
    cr_expect_eq(mig_applied, 0, "a restart applies nothing");
    const sql_result *r = run_ok("SELECT body, stars FROM notes", NULL, 0);
    cr_expect_eq(r->rows, 1);
    r = run_ok("SELECT MAX(version) FROM apiary_schema_version", NULL, 0);
    cr_expect_eq(sql_cell(r, 0, 0)->i, 2);
    /* A failing step leaves nothing of itself behind (SQLite rolls DDL back) and no version. */
    sql_run_coro(fx.loop.scope, mig_three_body);
    cr_expect_eq(mig_error, SQL_ERROR_QUERY);
    r = run_ok("SELECT COUNT(*) FROM sqlite_master WHERE name = 'other'", NULL, 0);
    cr_expect_eq(sql_cell(r, 0, 0)->i, 0);
    r = run_ok("SELECT MAX(version) FROM apiary_schema_version", NULL, 0);
    cr_expect_eq(sql_cell(r, 0, 0)->i, 2);
}
