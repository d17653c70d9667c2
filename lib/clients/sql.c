/* sql: the backend-independent part of the SQL driver (see sql.h): settings and sql.url, the choice
 * of backend at start, results copied into scopes, the rules of transactions (one call at a time, the
 * first failure ends one, the scope's end rolls it back), batches chained through a transaction,
 * migrations, and the counters behind /metrics. */
#include "sql.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "metrics.h"
#include "sql_internal.h"
#include "uri.h"
#include "xalloc_internal.h"

const char SQL_ERROR_UNAVAILABLE[] = "unavailable";
const char SQL_ERROR_TIMEOUT[] = "timeout";
const char SQL_ERROR_CONNECTION_LOST[] = "connection_lost";
const char SQL_ERROR_BUSY[] = "busy";
const char SQL_ERROR_CONFLICT[] = "conflict";
const char SQL_ERROR_QUERY[] = "query";
const char SQL_ERROR_TOO_LARGE[] = "too_large";

const double SQL_LATENCY_BOUNDS_MS[SQL_LATENCY_BUCKETS - 1] = {0.25, 0.5, 1, 2, 5, 10, 25, 50, 100, 250, 1000};

/* ---- settings and sql.url ------------------------------------------------------------------------ */

void sql_settings_defaults(sql_settings *s)
{
    memset(s, 0, sizeof(*s));
    s->backend = SQL_BACKEND_SQLITE;
    strcpy(s->path, "apiary.db");
    s->port = 3306;
    s->connections_per_loop = 4;
    s->query_timeout_ms = 2000;
    s->connect_timeout_ms = 1000;
    s->max_waiting = 10000;
    s->threads = 2;
    s->startup_timeout_ms = 30000;
    s->pipeline_depth = 32;
}

static int sql_url_fail(char *err, size_t cap, const char *why)
{
    snprintf(err, cap, "%s", why);
    return -1;
}

/* %-decodes src[0..len) into dst (cap bytes with the NUL). -1 on a bad escape, a NUL or overflow. */
static int sql_url_decode(char *dst, size_t cap, const char *src, size_t len)
{
    char *decoded = xmalloc(len + 1); /* uri_decode needs room for the text undecoded */
    ssize_t n = uri_decode(decoded, src, len, false);
    int rc = n >= 0 && (size_t)n < cap ? 0 : -1;
    if (rc == 0)
        memcpy(dst, decoded, (size_t)n + 1);
    free(decoded);
    return rc;
}

static bool sql_identifier_ok(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || *s == '_' ||
              *s == '$'))
            return false;
    return true;
}

/* One KEY=VALUE of a URL's query ('&'-separated): advances *query past it; false at the end. */
typedef struct sql_url_option {
    const char *key, *value;
    size_t key_len, value_len;
} sql_url_option;

static bool sql_url_next_option(const char **query, sql_url_option *o)
{
    const char *q = *query;
    if (!*q)
        return false;
    const char *amp = strchr(q, '&');
    size_t len = amp ? (size_t)(amp - q) : strlen(q);
    const char *eq = memchr(q, '=', len);
    o->key = q;
    o->key_len = eq ? (size_t)(eq - q) : len;
    o->value = eq ? eq + 1 : q + len;
    o->value_len = (size_t)(q + len - o->value);
    *query = q + len + (amp ? 1 : 0);
    return true;
}

static bool sql_url_option_is(const sql_url_option *o, const char *key)
{
    return strlen(key) == o->key_len && memcmp(o->key, key, o->key_len) == 0;
}

/* The TLS mode the option's value names in `names` (off, required, verify-ca, verify-full: each
 * driver's own spelling), or false. */
static bool sql_url_tls_mode(const sql_url_option *o, const char *const names[4], sql_tls_mode *out)
{
    static const sql_tls_mode modes[4] = {SQL_TLS_OFF, SQL_TLS_REQUIRED, SQL_TLS_VERIFY_CA, SQL_TLS_VERIFY_FULL};
    for (size_t i = 0; i < 4; i++)
        if (strlen(names[i]) == o->value_len && memcmp(names[i], o->value, o->value_len) == 0) {
            *out = modes[i];
            return true;
        }
    return false;
}

/* The CA file option, %-decoded into out->tls_ca. */
static bool sql_url_tls_ca(sql_settings *out, const sql_url_option *o)
{
    return o->value_len > 0 && sql_url_decode(out->tls_ca, sizeof(out->tls_ca), o->value, o->value_len) == 0;
}

/* The query of a mysql:// URL: ssl=required|verify-ca|verify-full and ssl_ca=PATH, '&'-separated. */
static int sql_url_parse_tls(sql_settings *out, const char *query, char *err, size_t cap)
{
    static const char *const names[4] = {"disabled", "required", "verify-ca", "verify-full"};
    out->tls = SQL_TLS_OFF;
    out->tls_ca[0] = '\0';
    sql_url_option o;
    while (sql_url_next_option(&query, &o)) {
        if (sql_url_option_is(&o, "ssl")) {
            if (!sql_url_tls_mode(&o, names, &out->tls))
                return sql_url_fail(err, cap, "ssl= must be required, verify-ca, verify-full or disabled");
        } else if (sql_url_option_is(&o, "ssl_ca")) {
            if (!sql_url_tls_ca(out, &o))
                return sql_url_fail(err, cap, "ssl_ca= must be a file path (%-encoded where needed)");
        } else {
            return sql_url_fail(err, cap, "the only options after ? are ssl= (required, verify-ca, verify-full) and "
                                          "ssl_ca=PATH");
        }
    }
    bool verify = out->tls == SQL_TLS_VERIFY_CA || out->tls == SQL_TLS_VERIFY_FULL;
    if (verify && !out->tls_ca[0])
        return sql_url_fail(err, cap, "ssl=verify-ca and ssl=verify-full need ssl_ca=PATH (the CA's PEM file)");
    if (!verify && out->tls_ca[0])
        return sql_url_fail(err, cap, "ssl_ca= is only used with ssl=verify-ca or ssl=verify-full");
    return 0;
}

/* The query of a postgres:// URL: sslmode=disable|require|verify-ca|verify-full, sslrootcert=PATH and
 * host=/SOCKET/DIR, '&'-separated (libpq's names for the same things). */
static int sql_url_parse_pg_query(sql_settings *out, const char *query, char *err, size_t cap)
{
    static const char *const names[4] = {"disable", "require", "verify-ca", "verify-full"};
    out->tls = SQL_TLS_OFF;
    out->tls_ca[0] = '\0';
    sql_url_option o;
    while (sql_url_next_option(&query, &o)) {
        if (sql_url_option_is(&o, "sslmode")) {
            if (!sql_url_tls_mode(&o, names, &out->tls))
                return sql_url_fail(err, cap, "sslmode= must be disable, require, verify-ca or verify-full");
        } else if (sql_url_option_is(&o, "sslrootcert")) {
            if (!sql_url_tls_ca(out, &o))
                return sql_url_fail(err, cap, "sslrootcert= must be a file path (%-encoded where needed)");
        } else if (sql_url_option_is(&o, "host")) {
            if (o.value_len == 0 ||
                sql_url_decode(out->socket_dir, sizeof(out->socket_dir), o.value, o.value_len) != 0 ||
                out->socket_dir[0] != '/')
                return sql_url_fail(err, cap, "host= must be the absolute path of the server's socket directory");
        } else {
            return sql_url_fail(err, cap, "the only options after ? are sslmode= (disable, require, verify-ca, "
                                          "verify-full), sslrootcert=PATH and host=/SOCKET/DIR");
        }
    }
    bool verify = out->tls == SQL_TLS_VERIFY_CA || out->tls == SQL_TLS_VERIFY_FULL;
    if (verify && !out->tls_ca[0])
        return sql_url_fail(err, cap, "sslmode=verify-ca and sslmode=verify-full need sslrootcert=PATH (the CA's PEM "
                                      "file)");
    if (!verify && out->tls_ca[0])
        return sql_url_fail(err, cap, "sslrootcert= is only used with sslmode=verify-ca or sslmode=verify-full");
    if (out->tls != SQL_TLS_OFF && out->socket_dir[0])
        return sql_url_fail(err, cap, "sslmode= needs a TCP host: a Unix socket is never encrypted");
    return 0;
}

/* mysql:// and postgres:// share their shape; `pg` picks PostgreSQL's port, options and socket paths. */
static int sql_url_parse_mysql(sql_settings *out, const char *rest, bool pg, char *err, size_t cap)
{
    const char *at = strrchr(rest, '@');
    if (!at)
        return sql_url_fail(err, cap, "must be mysql://USER:PASSWORD@HOST:PORT/DATABASE (no USER@)");
    const char *colon = memchr(rest, ':', (size_t)(at - rest));
    size_t user_len = (size_t)((colon ? colon : at) - rest);
    if (user_len == 0 || sql_url_decode(out->user, sizeof(out->user), rest, user_len) != 0)
        return sql_url_fail(err, cap, "the user must be 1..127 characters (%-encoded where needed)");
    out->password[0] = '\0';
    if (colon && sql_url_decode(out->password, sizeof(out->password), colon + 1, (size_t)(at - colon - 1)) != 0)
        return sql_url_fail(err, cap, "the password is too long or badly %-encoded");
    const char *host = at + 1;
    const char *slash = strchr(host, '/');
    if (!slash)
        return sql_url_fail(err, cap, "needs a database: mysql://USER:PASSWORD@HOST:PORT/DATABASE");
    const char *host_end, *port_start = NULL;
    char addr[64];
    size_t hlen;
    if (host[0] == '[') {
        const char *close = memchr(host, ']', (size_t)(slash - host));
        if (!close)
            return sql_url_fail(err, cap, "an IPv6 host needs brackets: mysql://u:p@[::1]:3306/db");
        hlen = (size_t)(close - host - 1);
        host_end = close + 1;
        if (*host_end == ':')
            port_start = host_end + 1;
        else if (host_end != slash)
            return sql_url_fail(err, cap, "expected :PORT or /DATABASE after the host");
    } else {
        const char *pc = memchr(host, ':', (size_t)(slash - host));
        host_end = pc ? pc : slash;
        hlen = (size_t)(host_end - host);
        if (pc)
            port_start = pc + 1;
    }
    unsigned char buf[16];
    out->socket_dir[0] = '\0';
    addr[0] = '\0';
    if (pg && host[0] != '[' && (hlen == 0 || (hlen > 3 && strncasecmp(host, "%2F", 3) == 0))) {
        /* A Unix socket directory, %-encoded in the host (libpq's own URL form), or given as ?host= */
        if (hlen && sql_url_decode(out->socket_dir, sizeof(out->socket_dir), host, hlen) != 0)
            return sql_url_fail(err, cap, "the socket directory must be a %-encoded absolute path");
    } else {
        if (hlen >= sizeof(addr))
            return sql_url_fail(err, cap, "the host must be an IP address");
        memcpy(addr, host[0] == '[' ? host + 1 : host, hlen);
        addr[hlen] = '\0';
        if (inet_pton(AF_INET, addr, buf) != 1 && inet_pton(AF_INET6, addr, buf) != 1)
            return sql_url_fail(err, cap, "the host must be an IP address such as 127.0.0.1 (names are not resolved, "
                                          "so that no event loop ever waits for DNS)");
    }
    unsigned port = pg ? 5432 : 3306;
    if (port_start) {
        char *e;
        long p = strtol(port_start, &e, 10);
        if (port_start == slash || e != slash || p < 1 || p > 65535)
            return sql_url_fail(err, cap, "the port must be 1..65535");
        port = (unsigned)p;
    }
    const char *db = slash + 1, *query = strchr(db, '?');
    size_t db_len = query ? (size_t)(query - db) : strlen(db);
    char dbname[sizeof(out->database)];
    if (db_len >= sizeof(dbname))
        return sql_url_fail(err, cap, "the database name must be 1..127 of [A-Za-z0-9_$]");
    memcpy(dbname, db, db_len);
    dbname[db_len] = '\0';
    if (!sql_identifier_ok(dbname))
        return sql_url_fail(err, cap, "the database name must be 1..127 of [A-Za-z0-9_$]");
    if (query && (pg ? sql_url_parse_pg_query(out, query + 1, err, cap) : sql_url_parse_tls(out, query + 1, err, cap)) != 0)
        return -1;
    if (pg && !query)
        out->tls = SQL_TLS_OFF, out->tls_ca[0] = '\0';
    if (pg && !addr[0] && !out->socket_dir[0])
        return sql_url_fail(err, cap, "the host must be an IP address or a socket directory (%2Frun%2Fpostgresql, or "
                                      "?host=/run/postgresql)");
    strcpy(out->host, addr);
    out->port = port;
    strcpy(out->database, dbname);
    out->backend = pg ? SQL_BACKEND_POSTGRES : SQL_BACKEND_MARIADB;
    return 0;
}

int sql_url_parse(sql_settings *s, const char *url, char *err, size_t err_cap)
{
    sql_settings next = *s;
    if (url[0] == '\0') {
        next.backend = SQL_BACKEND_SQLITE;
    } else if (strcmp(url, "none") == 0) {
        next.backend = SQL_BACKEND_NONE; /* an app that uses no SQL: no file, no connection */
    } else if (strncmp(url, "sqlite:", 7) == 0) {
        const char *path = url + 7;
        if (strncmp(path, "//", 2) == 0)
            path += 2; /* sqlite:///abs/path, as other tools write it */
        if (!path[0] || strlen(path) >= sizeof(next.path))
            return sql_url_fail(err, err_cap, "sqlite:PATH needs a file path (shorter than 4096 bytes)");
        strcpy(next.path, path);
        next.backend = SQL_BACKEND_SQLITE;
    } else if (strncmp(url, "mysql://", 8) == 0 || strncmp(url, "mariadb://", 10) == 0) {
        if (sql_url_parse_mysql(&next, strchr(url, '/') + 2, false, err, err_cap) != 0)
            return -1;
    } else if (strncmp(url, "postgres://", 11) == 0 || strncmp(url, "postgresql://", 13) == 0) {
        if (sql_url_parse_mysql(&next, strchr(url, '/') + 2, true, err, err_cap) != 0)
            return -1;
    } else {
        return sql_url_fail(err, err_cap, "must be \"sqlite:PATH\", \"\" (SQLite, the default), \"none\", "
                                          "\"mysql://USER:PASSWORD@HOST:PORT/DATABASE\" or "
                                          "\"postgres://USER:PASSWORD@HOST:PORT/DATABASE\"");
    }
    *s = next;
    return 0;
}

/* ---- results ----------------------------------------------------------------------------------- */

void sql__rows_add(sql_rows *r, const sql_value *v)
{
    if (r->cell_count == r->cell_cap) {
        if (!r->cells) {
            r->cells = r->inline_cells;
            r->cell_cap = SQL_ROWS_INLINE;
        } else if (r->cells == r->inline_cells) {
            r->cell_cap *= 4;
            r->cells = xmalloc(r->cell_cap * sizeof(*r->cells));
            memcpy(r->cells, r->inline_cells, sizeof(r->inline_cells));
        } else {
            r->cell_cap *= 2;
            r->cells = xrealloc(r->cells, r->cell_cap * sizeof(*r->cells));
        }
    }
    sql_value c = *v;
    r->bytes += sizeof(c);
    if (c.type == SQL_TEXT) {
        /* The offset stands in for the pointer until the copy: the buffer moves as it grows. */
        if (r->text_len + c.len + 1 > r->text_cap) {
            while (r->text_len + c.len + 1 > r->text_cap)
                r->text_cap = r->text_cap ? r->text_cap * 2 : 256;
            r->text = xrealloc(r->text, r->text_cap);
        }
        memcpy(r->text + r->text_len, v->s, c.len);
        r->text[r->text_len + c.len] = '\0';
        c.i = (long long)r->text_len;
        c.s = NULL;
        r->text_len += c.len + 1;
        r->bytes += c.len + 1;
    }
    r->cells[r->cell_count++] = c;
}

void sql__rows_free(sql_rows *r)
{
    if (r->cells != r->inline_cells)
        free(r->cells);
    free(r->text);
    memset(r, 0, sizeof(*r));
}

void sql__rows_copy(async_scope *scope, const sql_rows *r, sql_result *out)
{
    memset(out, 0, sizeof(*out));
    out->rows = r->rows;
    out->cols = r->cols;
    out->affected = r->affected;
    out->insert_id = r->insert_id;
    if (r->cell_count == 0)
        return;
    sql_value *cells = async_scope_alloc(scope, r->cell_count * sizeof(*cells));
    char *text = r->text_len ? async_scope_alloc(scope, r->text_len) : NULL;
    if (text)
        memcpy(text, r->text, r->text_len);
    for (size_t i = 0; i < r->cell_count; i++) {
        cells[i] = r->cells[i];
        if (cells[i].type == SQL_TEXT) {
            cells[i].s = text + cells[i].i;
            cells[i].i = 0;
        }
    }
    out->cells = cells;
}

bool sql_result_shape(const sql_result *r, const char *types)
{
    size_t cols = strlen(types);
    if (!r || r->cols != cols || (r->rows > 0 && !r->cells))
        return false;
    for (size_t row = 0; row < r->rows; row++) {
        for (size_t col = 0; col < cols; col++) {
            sql_type t = r->cells[row * cols + col].type;
            char want = types[col];
            bool ok = (t == SQL_NULL && (want == 'I' || want == 'D' || want == 'T')) ||
                      ((want == 'i' || want == 'I') && t == SQL_INT) ||
                      ((want == 'd' || want == 'D') && (t == SQL_INT || t == SQL_DOUBLE)) ||
                      ((want == 't' || want == 'T') && t == SQL_TEXT);
            if (!ok)
                return false;
        }
    }
    return true;
}

/* ---- counters ---------------------------------------------------------------------------------- */

/* Loops and workers of every thread update these, so they are atomic adds (relaxed: each is a
 * separate counter, no ordering between them is promised). */
static sql_stats sql_global_stats;

static void sql_stat_add(uint64_t *field, int64_t n) { __atomic_fetch_add(field, (uint64_t)n, __ATOMIC_RELAXED); }

uint64_t sql__now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

void sql__count_query(const char *error, uint64_t elapsed_us)
{
    sql_stat_add(&sql_global_stats.queries, 1);
    if (error == SQL_ERROR_UNAVAILABLE)
        sql_stat_add(&sql_global_stats.errors_unavailable, 1);
    else if (error == SQL_ERROR_TIMEOUT)
        sql_stat_add(&sql_global_stats.errors_timeout, 1);
    else if (error == SQL_ERROR_CONNECTION_LOST)
        sql_stat_add(&sql_global_stats.errors_connection_lost, 1);
    else if (error == SQL_ERROR_BUSY)
        sql_stat_add(&sql_global_stats.errors_busy, 1);
    else if (error == SQL_ERROR_CONFLICT)
        sql_stat_add(&sql_global_stats.errors_conflict, 1);
    else if (error == SQL_ERROR_TOO_LARGE)
        sql_stat_add(&sql_global_stats.errors_too_large, 1);
    else if (error)
        sql_stat_add(&sql_global_stats.errors_query, 1);
    double ms = (double)elapsed_us / 1000.0;
    size_t b = 0;
    while (b < SQL_LATENCY_BUCKETS - 1 && ms > SQL_LATENCY_BOUNDS_MS[b])
        b++;
    sql_stat_add(&sql_global_stats.latency_buckets[b], 1);
    sql_stat_add(&sql_global_stats.latency_sum_us, (int64_t)elapsed_us);
}

void sql__count_discarded(void) { sql_stat_add(&sql_global_stats.results_discarded, 1); }

void sql__count_connect(bool ok)
{
    sql_stat_add(ok ? &sql_global_stats.connects : &sql_global_stats.connect_failures, 1);
}

void sql__count_closed(void) { sql_stat_add(&sql_global_stats.connections_closed, 1); }

void sql__gauge_add(sql_gauge g, int64_t n)
{
    uint64_t *f = g == SQL_GAUGE_IN_USE ? &sql_global_stats.in_use
                  : g == SQL_GAUGE_WAITING ? &sql_global_stats.waiting
                                           : &sql_global_stats.open;
    sql_stat_add(f, n);
}

void sql_stats_read(sql_stats *out)
{
    const uint64_t *src = (const uint64_t *)&sql_global_stats;
    uint64_t *dst = (uint64_t *)out;
    for (size_t i = 0; i < sizeof(*out) / sizeof(uint64_t); i++)
        dst[i] = __atomic_load_n(&src[i], __ATOMIC_RELAXED);
}

/* ---- the backend ------------------------------------------------------------------------------- */

static const sql_backend *sql_active;
static const sql_settings *sql_active_settings;

const char sql__txn_done[] = "done";

const char *sql__error_of(const async_op *op)
{
    if (op->status == ASYNC_TIMEOUT)
        return SQL_ERROR_TIMEOUT;
    return op->error ? op->error : SQL_ERROR_UNAVAILABLE;
}

int sql_start(const sql_settings *s)
{
    if (s->backend == SQL_BACKEND_NONE) {
        /* No backend: every call fails SQL_ERROR_UNAVAILABLE at once (the !sql_active paths below) and
         * sql_ready says yes, since there is nothing to wait for. The settings stay visible so that
         * sql_current_settings tells an app "none" from "not started". */
        log_info("sql: sql.url is \"none\": no database; SQL statements fail at once as unavailable");
        sql_active = NULL;
        sql_active_settings = s;
        return 0;
    }
    const sql_backend *b = s->backend == SQL_BACKEND_MARIADB    ? &sql_mariadb_backend
                           : s->backend == SQL_BACKEND_POSTGRES ? &sql_postgres_backend
                                                                : &sql_sqlite_backend;
    if (b->start(s) != 0)
        return -1;
    sql_active = b;
    sql_active_settings = s;
    return 0;
}

void sql_shutdown(void)
{
    if (sql_active)
        sql_active->shutdown();
}

void sql_stop(void)
{
    if (sql_active)
        sql_active->stop();
    sql_active = NULL;
    sql_active_settings = NULL;
}

const sql_settings *sql_current_settings(void) { return sql_active_settings; }

static async_op *sql_failed(async_scope *scope, const char *error)
{
    async_op *op = async_future(scope);
    async_fail(op, error);
    return op;
}

async_op *sql_query(async_scope *scope, http_loop *loop, const sql_stmt *stmt)
{
    if (!sql_active)
        return sql_failed(scope, SQL_ERROR_UNAVAILABLE);
    return sql_active->many(scope, loop, stmt, 1, true);
}

static async_op *sql_no_statements(async_scope *scope)
{
    async_op *op = async_future(scope);
    sql_batch_result *none = async_scope_alloc(scope, sizeof(*none));
    async_resolve(op, none);
    return op;
}

async_op *sql_query_many(async_scope *scope, http_loop *loop, const sql_stmt *stmts, size_t n)
{
    if (!sql_active)
        return sql_failed(scope, SQL_ERROR_UNAVAILABLE);
    if (n == 0)
        return sql_no_statements(scope);
    return sql_active->many(scope, loop, stmts, n, false);
}

/* Without a backend (the in-process test client without an "sql" section) there is none to wait for. */
bool sql_ready(http_loop *loop) { return !sql_active || sql_active->ready(loop); }

/* ---- transactions -------------------------------------------------------------------------------- */

/* The handle is done (ended, failed, cancelled, or its scope gone): the backend finishes what is in
 * flight, rolls back what is open and frees its part. Exactly once. */
static void sql_txn_release(sql_txn *tx)
{
    if (tx->abandoned)
        return;
    tx->abandoned = true;
    if (tx->defer)
        async_defer_cancel(tx->defer);
    tx->defer = NULL;
    if (sql_active && tx->impl)
        sql_active->txn_abandon(tx->impl);
    tx->impl = NULL;
}

static void sql_txn_on_scope_end(void *arg)
{
    sql_txn *tx = arg;
    tx->defer = NULL;
    sql_txn_release(tx);
}

typedef enum sql_txn_what { SQL_TXN_BEGIN, SQL_TXN_QUERY, SQL_TXN_END } sql_txn_what;

/* One call on a transaction: the backend's operation (inner) and the caller's (outer), so the rules
 * above are kept whatever the caller attaches to outer. */
typedef struct sql_txn_call {
    sql_txn *tx;
    async_op *inner, *outer;
    sql_txn_what what;
} sql_txn_call;

static void sql_txn_call_done(async_op *inner, void *arg)
{
    sql_txn_call *call = arg;
    sql_txn *tx = call->tx;
    tx->running = false;
    async_future_on_cancel(call->outer, NULL, NULL);
    if (inner->status != ASYNC_OK) {
        const char *error = sql__error_of(inner);
        if (!tx->ended)
            tx->ended = error;
        sql_txn_release(tx);
        async_fail(call->outer, error);
        return;
    }
    if (call->what == SQL_TXN_END) {
        tx->ended = sql__txn_done;
        sql_txn_release(tx);
        async_resolve(call->outer, NULL);
    } else {
        async_resolve(call->outer, call->what == SQL_TXN_BEGIN ? (void *)tx : inner->value);
    }
}

/* The caller stopped waiting (its scope ended, or a wait_for of its own): it no longer knows where the
 * transaction is, so it is over and rolled back. */
static void sql_txn_call_cancel(async_op *outer, void *arg)
{
    (void)outer;
    sql_txn_call *call = arg;
    sql_txn *tx = call->tx;
    tx->running = false;
    async_op_cancel(call->inner);
    if (!tx->ended)
        tx->ended = SQL_ERROR_TIMEOUT;
    sql_txn_release(tx);
}

static async_op *sql_txn_wrap(sql_txn *tx, async_op *inner, sql_txn_what what)
{
    sql_txn_call *call = async_scope_alloc(tx->scope, sizeof(*call));
    call->tx = tx;
    call->inner = inner;
    call->what = what;
    call->outer = async_future(tx->scope);
    if (call->outer->status != ASYNC_PENDING) { /* the scope is ending */
        async_op_cancel(inner);
        sql_txn_release(tx);
        return call->outer;
    }
    tx->running = true;
    async_future_on_cancel(call->outer, sql_txn_call_cancel, call);
    async_op_then(inner, sql_txn_call_done, call);
    return call->outer;
}

async_op *sql_begin(async_scope *scope, http_loop *loop)
{
    if (!sql_active)
        return sql_failed(scope, SQL_ERROR_UNAVAILABLE);
    sql_txn *tx = async_scope_alloc(scope, sizeof(*tx));
    tx->scope = scope;
    tx->loop = loop;
    tx->defer = async_scope_defer(scope, sql_txn_on_scope_end, tx);
    return sql_txn_wrap(tx, sql_active->txn_begin(tx), SQL_TXN_BEGIN);
}

/* A call the rules refuse: the transaction is over, or a call is in flight. */
static async_op *sql_txn_refuse(sql_txn *tx, const char *what)
{
    if (tx->running) {
        log_warn("sql: %s on a transaction while its previous call runs: one call at a time", what);
        return sql_failed(tx->scope, SQL_ERROR_QUERY);
    }
    if (tx->ended == sql__txn_done) {
        log_warn("sql: %s on a transaction that was already committed or rolled back", what);
        return sql_failed(tx->scope, SQL_ERROR_QUERY);
    }
    return sql_failed(tx->scope, tx->ended);
}

async_op *sql_txn_query(sql_txn *tx, const sql_stmt *stmt)
{
    if (tx->running || tx->ended || !sql_active)
        return sql_txn_refuse(tx, "a statement");
    return sql_txn_wrap(tx, sql_active->txn_query(tx, stmt), SQL_TXN_QUERY);
}

async_op *sql_commit(sql_txn *tx)
{
    if (tx->running || tx->ended || !sql_active)
        return sql_txn_refuse(tx, "a commit");
    return sql_txn_wrap(tx, sql_active->txn_end(tx, true), SQL_TXN_END);
}

async_op *sql_rollback(sql_txn *tx)
{
    if (!tx->running && tx->ended && tx->ended != sql__txn_done) {
        /* A failure already rolled it back: nothing is left to undo. */
        tx->ended = sql__txn_done;
        async_op *op = async_future(tx->scope);
        async_resolve(op, NULL);
        return op;
    }
    if (tx->running || tx->ended || !sql_active)
        return sql_txn_refuse(tx, "a rollback");
    return sql_txn_wrap(tx, sql_active->txn_end(tx, false), SQL_TXN_END);
}

/* ---- batches: dependent statements in one transaction -------------------------------------------- */

/* The statements, copied into scope memory: they are sent one after another, long after the call. */
static sql_stmt *sql_stmts_copy(async_scope *scope, const sql_stmt *stmts, size_t n)
{
    sql_stmt *out = async_scope_alloc(scope, n * sizeof(*out));
    for (size_t k = 0; k < n; k++) {
        size_t len = strlen(stmts[k].sql);
        char *sql = async_scope_alloc(scope, len + 1);
        memcpy(sql, stmts[k].sql, len + 1);
        sql_value *params = stmts[k].nparams ? async_scope_alloc(scope, stmts[k].nparams * sizeof(*params)) : NULL;
        for (size_t i = 0; i < stmts[k].nparams; i++) {
            params[i] = stmts[k].params[i];
            if (params[i].type == SQL_TEXT && params[i].len) {
                char *text = async_scope_alloc(scope, params[i].len);
                memcpy(text, stmts[k].params[i].s, params[i].len);
                params[i].s = text;
            }
        }
        out[k] = (sql_stmt){sql, params, stmts[k].nparams, stmts[k].max_result_bytes};
    }
    return out;
}

typedef struct sql_chain {
    async_scope *scope;
    async_op *outer, *cur;
    const sql_stmt *stmts;
    size_t n, next;
    sql_txn *tx;
    sql_result *results;
} sql_chain;

static void sql_chain_step(async_op *op, void *arg);

static void sql_chain_committed(async_op *op, void *arg)
{
    sql_chain *c = arg;
    c->cur = NULL;
    async_future_on_cancel(c->outer, NULL, NULL);
    if (op->status != ASYNC_OK) {
        async_fail(c->outer, sql__error_of(op));
        return;
    }
    sql_batch_result *out = async_scope_alloc(c->scope, sizeof(*out));
    out->count = c->n;
    out->results = c->results;
    async_resolve(c->outer, out);
}

static void sql_chain_step(async_op *op, void *arg)
{
    sql_chain *c = arg;
    if (op->status != ASYNC_OK) {
        c->cur = NULL;
        async_future_on_cancel(c->outer, NULL, NULL);
        async_fail(c->outer, sql__error_of(op)); /* the transaction is rolled back already */
        return;
    }
    if (!c->tx) {
        c->tx = op->value; /* begun */
    } else {
        c->results[c->next++] = *(const sql_result *)op->value;
    }
    if (c->next < c->n) {
        c->cur = sql_txn_query(c->tx, &c->stmts[c->next]);
        async_op_then(c->cur, sql_chain_step, c);
    } else {
        c->cur = sql_commit(c->tx);
        async_op_then(c->cur, sql_chain_committed, c);
    }
}

static void sql_chain_cancel(async_op *outer, void *arg)
{
    (void)outer;
    sql_chain *c = arg;
    if (c->cur)
        async_op_cancel(c->cur); /* the transaction's call: cancelling it rolls the transaction back */
}

async_op *sql_batch(async_scope *scope, http_loop *loop, const sql_stmt *stmts, size_t n)
{
    if (!sql_active)
        return sql_failed(scope, SQL_ERROR_UNAVAILABLE);
    if (n == 0)
        return sql_no_statements(scope);
    if (sql_active->batch)
        return sql_active->batch(scope, loop, stmts, n);
    sql_chain *c = async_scope_alloc(scope, sizeof(*c));
    c->scope = scope;
    c->n = n;
    c->outer = async_future(scope);
    if (c->outer->status != ASYNC_PENDING)
        return c->outer;
    c->stmts = sql_stmts_copy(scope, stmts, n);
    c->results = async_scope_alloc(scope, n * sizeof(*c->results));
    async_future_on_cancel(c->outer, sql_chain_cancel, c);
    c->cur = sql_begin(scope, loop);
    async_op_then(c->cur, sql_chain_step, c);
    return c->outer;
}

/* ---- migrations ---------------------------------------------------------------------------------- */

static const char SQL_MIGRATE_TABLE[] = "CREATE TABLE IF NOT EXISTS apiary_schema_version (version INTEGER NOT NULL "
                                        "PRIMARY KEY, applied_at VARCHAR(32) NOT NULL)";
static const char SQL_MIGRATE_VERSION[] = "SELECT COALESCE(MAX(version), 0) FROM apiary_schema_version";
static const char SQL_MIGRATE_RECORD[] = "INSERT INTO apiary_schema_version (version, applied_at) VALUES (?, ?)";
#define SQL_MIGRATE_RETRY_MS 250u

typedef struct sql_migrate_state {
    async_scope *scope;
    http_loop *loop;
    const sql_migration *steps;
    size_t n, version, applied;
    async_op *outer, *cur;
    uint64_t started_ms;
    bool logged_wait;
    char applied_at[32];
    sql_value record[2];
} sql_migrate_state;

static void sql_migrate_created(async_op *op, void *arg);

static void sql_migrate_fail(sql_migrate_state *m, const char *error)
{
    m->cur = NULL;
    async_future_on_cancel(m->outer, NULL, NULL);
    async_fail(m->outer, error);
}

static void sql_migrate_create(sql_migrate_state *m)
{
    sql_stmt stmt = {SQL_MIGRATE_TABLE, NULL, 0, 0};
    m->cur = sql_query(m->scope, m->loop, &stmt);
    async_op_then(m->cur, sql_migrate_created, m);
}

static void sql_migrate_retry(async_op *op, void *arg)
{
    (void)op;
    sql_migrate_create(arg);
}

static void sql_migrate_next(sql_migrate_state *m);

static void sql_migrate_step_done(async_op *op, void *arg)
{
    sql_migrate_state *m = arg;
    if (op->status != ASYNC_OK) {
        log_error("sql: migration step %zu of %zu failed (%s); the steps before it stay applied", m->version + 1, m->n,
                  sql__error_of(op));
        sql_migrate_fail(m, sql__error_of(op));
        return;
    }
    m->version++;
    m->applied++;
    sql_migrate_next(m);
}

static void sql_migrate_next(sql_migrate_state *m)
{
    if (m->version >= m->n) {
        if (m->applied)
            log_info("sql: schema at version %zu (%zu step%s applied now)", m->version, m->applied,
                     m->applied == 1 ? "" : "s");
        size_t *applied = async_scope_alloc(m->scope, sizeof(*applied));
        *applied = m->applied;
        m->cur = NULL;
        async_future_on_cancel(m->outer, NULL, NULL);
        async_resolve(m->outer, applied);
        return;
    }
    const sql_migration *step = &m->steps[m->version];
    size_t count = step->count + 1;
    sql_stmt *stmts = async_scope_alloc(m->scope, count * sizeof(*stmts));
    for (size_t i = 0; i < step->count; i++)
        stmts[i] = (sql_stmt){step->statements[i], NULL, 0, 0};
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm tm;
    gmtime_r(&now.tv_sec, &tm);
    strftime(m->applied_at, sizeof(m->applied_at), "%Y-%m-%dT%H:%M:%SZ", &tm);
    m->record[0] = sql_int((long long)m->version + 1);
    m->record[1] = sql_text(m->applied_at, strlen(m->applied_at));
    stmts[step->count] = (sql_stmt){SQL_MIGRATE_RECORD, m->record, 2, 0};
    m->cur = sql_batch(m->scope, m->loop, stmts, count);
    async_op_then(m->cur, sql_migrate_step_done, m);
}

static void sql_migrate_versioned(async_op *op, void *arg)
{
    sql_migrate_state *m = arg;
    if (op->status != ASYNC_OK) {
        log_error("sql: cannot read the schema version (%s)", sql__error_of(op));
        sql_migrate_fail(m, sql__error_of(op));
        return;
    }
    const sql_result *r = op->value;
    if (!sql_result_shape(r, "i") || r->rows != 1 || sql_cell(r, 0, 0)->i < 0) {
        log_error("sql: apiary_schema_version answered in an unexpected shape");
        sql_migrate_fail(m, SQL_ERROR_QUERY);
        return;
    }
    m->version = (size_t)sql_cell(r, 0, 0)->i;
    if (m->version > m->n) {
        /* A newer build migrated this database; this one knows fewer steps. Its tables are there. */
        log_warn("sql: the database's schema is at version %zu, newer than the %zu step(s) this app knows", m->version,
                 m->n);
        m->version = m->n;
    }
    sql_migrate_next(m);
}

static void sql_migrate_created(async_op *op, void *arg)
{
    sql_migrate_state *m = arg;
    if (op->status != ASYNC_OK) {
        const char *error = sql__error_of(op);
        const sql_settings *s = sql_active_settings;
        uint64_t waited = async_now_ms() - m->started_ms;
        if (s && s->backend == SQL_BACKEND_NONE) {
            /* Nothing will ever come up: an app that migrates needs a database, and says so at once. */
            log_error("sql: cannot apply the schema: sql.url is \"none\" (no database)");
            sql_migrate_fail(m, error);
            return;
        }
        if (error == SQL_ERROR_UNAVAILABLE && s && waited < s->startup_timeout_ms) {
            /* MariaDB still starting (or its database being created): wait for it, bounded. */
            if (!m->logged_wait)
                log_info("sql: waiting up to %u ms for the database to be available", s->startup_timeout_ms);
            m->logged_wait = true;
            m->cur = async_sleep(m->scope, SQL_MIGRATE_RETRY_MS);
            async_op_then(m->cur, sql_migrate_retry, m);
            return;
        }
        log_error("sql: cannot prepare the schema version table (%s%s)", error,
                  error == SQL_ERROR_UNAVAILABLE ? ": the database stayed unavailable for sql.startup_timeout_ms" : "");
        sql_migrate_fail(m, error);
        return;
    }
    sql_stmt stmt = {SQL_MIGRATE_VERSION, NULL, 0, 0};
    m->cur = sql_query(m->scope, m->loop, &stmt);
    async_op_then(m->cur, sql_migrate_versioned, m);
}

static void sql_migrate_cancel(async_op *outer, void *arg)
{
    (void)outer;
    sql_migrate_state *m = arg;
    if (m->cur)
        async_op_cancel(m->cur);
}

async_op *sql_migrate(async_scope *scope, http_loop *loop, const sql_migration *steps, size_t n)
{
    sql_migrate_state *m = async_scope_alloc(scope, sizeof(*m));
    m->scope = scope;
    m->loop = loop;
    m->steps = steps;
    m->n = n;
    m->started_ms = async_now_ms();
    m->outer = async_future(scope);
    if (m->outer->status != ASYNC_PENDING)
        return m->outer;
    async_future_on_cancel(m->outer, sql_migrate_cancel, m);
    sql_migrate_create(m);
    return m->outer;
}

/* ---- /metrics ---------------------------------------------------------------------------------- */

void sql_metrics_source(metrics_writer *w, void *arg)
{
    (void)arg;
    if (!sql_active)
        return;
    sql_stats s;
    sql_stats_read(&s);
    char backend[64] = "";
    metrics_label(backend, sizeof(backend), "backend", sql_active->name);
    struct {
        const char *name, *type, *help;
        uint64_t value;
    } rows[] = {
        {"apiary_sql_queries_total", "counter", "SQL statements completed, failed ones included.", s.queries},
        {"apiary_sql_results_discarded_total", "counter", "Statements that finished after their request had gone.",
         s.results_discarded},
        {"apiary_sql_connects_total", "counter", "Database connections established.", s.connects},
        {"apiary_sql_connect_failures_total", "counter", "Connection attempts that failed.", s.connect_failures},
        {"apiary_sql_connections_closed_total", "counter", "Connections dropped: broken, timed out or stale.",
         s.connections_closed},
        {"apiary_sql_pool_open", "gauge", "Database connections open now.", s.open},
        {"apiary_sql_pool_in_use", "gauge", "Connections running a statement now.", s.in_use},
        {"apiary_sql_pool_waiting", "gauge", "Statements waiting for a connection now.", s.waiting},
    };
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        metrics_family(w, rows[i].name, rows[i].type, rows[i].help);
        metrics_sample_u64(w, rows[i].name, backend, rows[i].value);
    }
    metrics_family(w, "apiary_sql_errors_total", "counter", "Failed SQL statements, by kind.");
    struct {
        const char *kind;
        uint64_t value;
    } errors[] = {{"unavailable", s.errors_unavailable}, {"timeout", s.errors_timeout},
                  {"connection_lost", s.errors_connection_lost}, {"busy", s.errors_busy},
                  {"conflict", s.errors_conflict}, {"query", s.errors_query}, {"too_large", s.errors_too_large}};
    for (size_t i = 0; i < sizeof(errors) / sizeof(errors[0]); i++) {
        char labels[128];
        snprintf(labels, sizeof(labels), "%s", backend);
        metrics_label(labels, sizeof(labels), "kind", errors[i].kind);
        metrics_sample_u64(w, "apiary_sql_errors_total", labels, errors[i].value);
    }
    metrics_family(w, "apiary_sql_query_duration_seconds", "histogram",
                   "SQL statement latency, waiting for a connection included.");
    uint64_t cumulative = 0;
    for (size_t b = 0; b < SQL_LATENCY_BUCKETS; b++) {
        cumulative += s.latency_buckets[b];
        char le[32], labels[128];
        if (b < SQL_LATENCY_BUCKETS - 1)
            snprintf(le, sizeof(le), "%g", SQL_LATENCY_BOUNDS_MS[b] / 1000.0);
        else
            snprintf(le, sizeof(le), "+Inf");
        snprintf(labels, sizeof(labels), "%s", backend);
        metrics_label(labels, sizeof(labels), "le", le);
        metrics_sample_u64(w, "apiary_sql_query_duration_seconds_bucket", labels, cumulative);
    }
    metrics_sample(w, "apiary_sql_query_duration_seconds_sum", backend, (double)s.latency_sum_us / 1e6);
    metrics_sample_u64(w, "apiary_sql_query_duration_seconds_count", backend, cumulative);
}
