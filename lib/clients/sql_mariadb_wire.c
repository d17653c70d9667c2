/* sql_mariadb_wire: COM_STMT_EXECUTE packets and their answers, read from bytes as they arrive, for the
 * MariaDB backend's pipelined statements (see sql_mariadb_wire_internal.h and sql_mariadb.c). Everything the
 * server sends is checked before it is used: lengths against the buffer, sequence numbers, the shape
 * of each packet for where it comes in the answer. A server that breaks the protocol gets BAD, never a
 * read out of bounds, so the connection can be closed with a clear error. */
#include "sql_mariadb_wire_internal.h"

#include <mysql.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "xalloc_internal.h"

enum { SQL_MY_A_HEADER, SQL_MY_A_COLDEF, SQL_MY_A_COLEOF, SQL_MY_A_ROWS };

#define SQL_MY_MORE_RESULTS 0x0008u /* SERVER_MORE_RESULTS_EXIST in an OK or EOF packet's status */

bool sql_my_wire_type_ok(uint8_t type)
{
    switch (type) {
    case MYSQL_TYPE_TINY:
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_LONGLONG:
    case MYSQL_TYPE_YEAR:
    case MYSQL_TYPE_DOUBLE:
    case MYSQL_TYPE_DECIMAL:
    case MYSQL_TYPE_NEWDECIMAL:
    case MYSQL_TYPE_NULL:
    case MYSQL_TYPE_VARCHAR:
    case MYSQL_TYPE_VAR_STRING:
    case MYSQL_TYPE_STRING:
    case MYSQL_TYPE_TINY_BLOB:
    case MYSQL_TYPE_MEDIUM_BLOB:
    case MYSQL_TYPE_LONG_BLOB:
    case MYSQL_TYPE_BLOB:
    case MYSQL_TYPE_ENUM:
    case MYSQL_TYPE_SET:
    case MYSQL_TYPE_JSON:
        return true;
    default:
        /* FLOAT: Connector/C's float-to-double conversion is its own; temporal types: it formats them;
         * BIT, GEOMETRY: its conversions. Those statements keep the Connector/C path. */
        return false;
    }
}

/* ---- writing ------------------------------------------------------------------------------------- */

static size_t sql_my_lenenc_size(uint64_t v)
{
    return v < 251 ? 1 : v < 65536 ? 3 : v < 16777216 ? 4 : 9;
}

static unsigned char *sql_my_put_lenenc(unsigned char *p, uint64_t v)
{
    size_t bytes;
    if (v < 251) {
        *p++ = (unsigned char)v;
        return p;
    } else if (v < 65536) {
        *p++ = 0xfc, bytes = 2;
    } else if (v < 16777216) {
        *p++ = 0xfd, bytes = 3;
    } else {
        *p++ = 0xfe, bytes = 8;
    }
    for (size_t i = 0; i < bytes; i++)
        *p++ = (unsigned char)(v >> (8 * i));
    return p;
}

static unsigned char *sql_my_put_le(unsigned char *p, uint64_t v, size_t bytes)
{
    for (size_t i = 0; i < bytes; i++)
        *p++ = (unsigned char)(v >> (8 * i));
    return p;
}

size_t sql_my_wire_execute_size(const sql_value *params, size_t n)
{
    size_t payload = 10; /* command, statement id, flags, iteration count */
    if (n) {
        payload += (n + 7) / 8 + 1 + 2 * n;
        for (size_t i = 0; i < n; i++) {
            if (params[i].type == SQL_INT || params[i].type == SQL_DOUBLE)
                payload += 8;
            else if (params[i].type == SQL_TEXT)
                payload += sql_my_lenenc_size(params[i].len) + params[i].len;
            if (payload >= 0xffffffu)
                return 0;
        }
    }
    return payload >= 0xffffffu ? 0 : payload + 4;
}

void sql_my_wire_execute(unsigned char *out, uint32_t stmt_id, const sql_value *params, size_t n)
{
    size_t payload = sql_my_wire_execute_size(params, n) - 4;
    unsigned char *p = sql_my_put_le(out, payload, 3);
    *p++ = 0; /* sequence: a new command */
    *p++ = 0x17; /* COM_STMT_EXECUTE */
    p = sql_my_put_le(p, stmt_id, 4);
    *p++ = 0;                  /* CURSOR_TYPE_NO_CURSOR */
    p = sql_my_put_le(p, 1, 4); /* iteration count */
    if (!n)
        return;
    unsigned char *nulls = p;
    memset(nulls, 0, (n + 7) / 8);
    p += (n + 7) / 8;
    *p++ = 1; /* the types follow */
    for (size_t i = 0; i < n; i++) {
        uint8_t type = params[i].type == SQL_INT      ? MYSQL_TYPE_LONGLONG
                       : params[i].type == SQL_DOUBLE ? MYSQL_TYPE_DOUBLE
                       : params[i].type == SQL_TEXT   ? MYSQL_TYPE_STRING
                                                      : MYSQL_TYPE_NULL;
        *p++ = type;
        *p++ = 0; /* signed */
        if (params[i].type == SQL_NULL)
            nulls[i / 8] |= (unsigned char)(1u << (i % 8));
    }
    for (size_t i = 0; i < n; i++) {
        const sql_value *v = &params[i];
        if (v->type == SQL_INT) {
            p = sql_my_put_le(p, (uint64_t)v->i, 8);
        } else if (v->type == SQL_DOUBLE) {
            uint64_t bits;
            memcpy(&bits, &v->d, 8);
            p = sql_my_put_le(p, bits, 8);
        } else if (v->type == SQL_TEXT) {
            p = sql_my_put_lenenc(p, v->len);
            if (v->len)
                memcpy(p, v->s, v->len);
            p += v->len;
        }
    }
}

/* ---- reading ------------------------------------------------------------------------------------- */

static uint64_t sql_my_le(const unsigned char *p, size_t bytes)
{
    uint64_t v = 0;
    for (size_t i = 0; i < bytes; i++)
        v |= (uint64_t)p[i] << (8 * i);
    return v;
}

/* A length-encoded integer at p[*off], within n bytes; false when absent or malformed. */
static bool sql_my_lenenc(const unsigned char *p, size_t n, size_t *off, uint64_t *v)
{
    if (*off >= n)
        return false;
    unsigned char b = p[*off];
    size_t bytes = b < 0xfb ? 0 : b == 0xfc ? 2 : b == 0xfd ? 3 : b == 0xfe ? 8 : (size_t)-1;
    if (bytes == (size_t)-1) /* 0xfb (NULL) and 0xff are no integers */
        return false;
    if (bytes == 0) {
        *v = b;
        *off += 1;
        return true;
    }
    if (n - *off - 1 < bytes)
        return false;
    *v = sql_my_le(p + *off + 1, bytes);
    *off += 1 + bytes;
    return true;
}

void sql_my_answer_begin(sql_my_answer *a, const sql_my_col *cached, size_t ncached, size_t max_packet,
                         size_t max_bytes, bool deprecate_eof, sql_rows *rows)
{
    a->cached = cached;
    a->ncached = ncached;
    a->max_packet = max_packet;
    a->max_bytes = max_bytes;
    a->deprecate_eof = deprecate_eof;
    a->rows = rows;
    a->state = SQL_MY_A_HEADER;
    a->seq = 1;
    a->ncols = a->col_i = 0;
    a->use = NULL;
    a->discard = a->extra = false;
    a->error = NULL;
    a->err_code = 0;
    a->err_msg[0] = '\0';
    a->meta_sent = false;
    a->need = 0;
}

void sql_my_answer_free(sql_my_answer *a)
{
    free(a->cols);
    a->cols = NULL;
    a->cols_cap = 0;
}

static void sql_my_answer_fail(sql_my_answer *a, const char *error)
{
    if (!a->error)
        a->error = error;
    a->discard = true;
}

/* An ERR packet: its code and message (protocol 4.1: a '#' and five SQLSTATE bytes before it). */
static void sql_my_answer_err(sql_my_answer *a, const unsigned char *p, size_t n)
{
    if (a->err_code == 0) {
        a->err_code = n >= 3 ? (unsigned)sql_my_le(p + 1, 2) : 0;
        size_t off = n >= 9 && p[3] == '#' ? 9 : 3;
        size_t len = n > off ? n - off : 0;
        if (len >= sizeof(a->err_msg))
            len = sizeof(a->err_msg) - 1;
        if (len)
            memcpy(a->err_msg, p + off, len);
        a->err_msg[len] = '\0';
    }
    a->error = SQL_ERROR_QUERY; /* an error ends the statement, whatever came before */
}

/* The status flags of an OK packet (after the header byte: affected rows, insert id, status), or of an
 * EOF packet (warnings, then status). False when malformed. */
static bool sql_my_ok_status(const unsigned char *p, size_t n, uint64_t *affected, uint64_t *insert_id,
                             unsigned *status)
{
    size_t off = 1;
    if (!sql_my_lenenc(p, n, &off, affected) || !sql_my_lenenc(p, n, &off, insert_id) || n - off < 2)
        return false;
    *status = (unsigned)sql_my_le(p + off, 2);
    return true;
}

static bool sql_my_eof_status(const unsigned char *p, size_t n, unsigned *status)
{
    if (n < 5)
        return false;
    *status = (unsigned)sql_my_le(p + 3, 2);
    return true;
}

/* One value of a binary row at p[*off]; v's text points into p. False when it does not fit. */
static bool sql_my_value(const sql_my_col *c, const unsigned char *p, size_t n, size_t *off, sql_value *v)
{
    size_t left = n - *off, bytes;
    switch (c->type) {
    case MYSQL_TYPE_TINY:
        bytes = 1;
        break;
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_YEAR:
        bytes = 2;
        break;
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_FLOAT:
        bytes = 4;
        break;
    case MYSQL_TYPE_LONGLONG:
    case MYSQL_TYPE_DOUBLE:
        bytes = 8;
        break;
    case MYSQL_TYPE_NULL:
        *v = (sql_value){.type = SQL_NULL};
        return true;
    default: {
        /* strings, blobs, decimals: length-encoded. The temporal types' one-byte length (0..13) reads
         * the same way, so rows holding them are skipped correctly when discarded. */
        uint64_t len;
        if (!sql_my_lenenc(p, n, off, &len) || len > n - *off)
            return false;
        const char *s = (const char *)p + *off;
        *off += (size_t)len;
        if (c->type == MYSQL_TYPE_DECIMAL || c->type == MYSQL_TYPE_NEWDECIMAL) {
            /* A decimal comes as text; Connector/C's path converts it to a double, so does this. */
            char num[128];
            if (len >= sizeof(num))
                return false;
            memcpy(num, s, (size_t)len);
            num[len] = '\0';
            *v = sql_double(strtod(num, NULL));
        } else {
            *v = sql_text(s, (size_t)len);
        }
        return true;
    }
    }
    if (left < bytes)
        return false;
    uint64_t raw = sql_my_le(p + *off, bytes);
    *off += bytes;
    if (c->type == MYSQL_TYPE_DOUBLE) {
        double d;
        memcpy(&d, &raw, 8);
        *v = sql_double(d);
        return true;
    }
    if (c->type == MYSQL_TYPE_FLOAT) { /* only read to be skipped (sql_my_wire_type_ok) */
        float f;
        uint32_t r32 = (uint32_t)raw;
        memcpy(&f, &r32, 4);
        *v = sql_double((double)f);
        return true;
    }
    long long i;
    if (c->is_unsigned || bytes == 8) {
        i = (long long)raw; /* an UNSIGNED BIGINT past INT64_MAX wraps, as the Connector/C path's does */
    } else {
        uint64_t sign = 1ull << (8 * bytes - 1);
        i = (long long)(raw ^ sign) - (long long)sign;
    }
    *v = sql_int(i);
    return true;
}

/* A binary row: header 0x00, the NULL bitmap (offset 2), the values. Checked whole first, so a row is
 * added entirely or not at all; past the bound it is not added and the rest is discarded. */
static bool sql_my_row(sql_my_answer *a, const unsigned char *p, size_t n)
{
    size_t bitmap = (a->ncols + 9) / 8;
    if (n < 1 + bitmap)
        return false;
    const unsigned char *nulls = p + 1;
    size_t off = 1 + bitmap, need = a->rows->bytes + a->ncols * sizeof(sql_value);
    for (size_t i = 0; i < a->ncols; i++) {
        if (nulls[(i + 2) / 8] & (1u << ((i + 2) % 8)))
            continue;
        sql_value v;
        if (!sql_my_value(&a->use[i], p, n, &off, &v))
            return false;
        if (v.type == SQL_TEXT)
            need += v.len + 1;
    }
    if (off != n)
        return false; /* bytes after the last value */
    if (a->discard)
        return true;
    if (need > a->max_bytes) {
        sql_my_answer_fail(a, SQL_ERROR_TOO_LARGE);
        return true;
    }
    off = 1 + bitmap;
    for (size_t i = 0; i < a->ncols; i++) {
        sql_value v = {.type = SQL_NULL};
        if (!(nulls[(i + 2) / 8] & (1u << ((i + 2) % 8))))
            (void)sql_my_value(&a->use[i], p, n, &off, &v);
        sql__rows_add(a->rows, &v);
    }
    a->rows->rows++;
    return true;
}

/* The columns are known (sent or cached): can their rows be decoded, do they fit the bound? */
static void sql_my_columns_known(sql_my_answer *a)
{
    a->state = a->deprecate_eof ? SQL_MY_A_ROWS : SQL_MY_A_COLEOF;
    if (a->extra)
        return;
    a->rows->cols = a->ncols;
    for (size_t i = 0; i < a->ncols; i++) {
        if (!sql_my_wire_type_ok(a->use[i].type)) {
            snprintf(a->err_msg, sizeof(a->err_msg), "column %zu has type %u, which a pipelined statement "
                     "cannot read", i + 1, (unsigned)a->use[i].type);
            sql_my_answer_fail(a, SQL_ERROR_QUERY);
            break;
        }
    }
    if (a->ncols * sizeof(sql_value) > a->max_bytes)
        sql_my_answer_fail(a, SQL_ERROR_TOO_LARGE);
}

/* The first packet of a result: OK, ERR or a column count. Returns -1 (BAD), 0 (go on), 1 (DONE). */
static int sql_my_header(sql_my_answer *a, const unsigned char *p, size_t n)
{
    if (n == 0)
        return -1;
    if (p[0] == 0x00) {
        uint64_t affected, insert_id;
        unsigned status;
        if (!sql_my_ok_status(p, n, &affected, &insert_id, &status))
            return -1;
        if (!a->extra) {
            a->rows->affected = affected;
            a->rows->insert_id = (int64_t)insert_id;
        }
        if (status & SQL_MY_MORE_RESULTS) {
            a->extra = a->discard = true;
            return 0;
        }
        return 1;
    }
    if (p[0] == 0xff) {
        if (n >= 3 && sql_my_le(p + 1, 2) == 0xffff)
            return 0; /* a progress report (MARIADB_CLIENT_PROGRESS), not the end */
        sql_my_answer_err(a, p, n);
        return 1;
    }
    if (p[0] == 0xfb || p[0] == 0xfe)
        return -1; /* LOCAL INFILE was never allowed; an EOF cannot start an answer */
    size_t off = 0;
    uint64_t ncols;
    if (!sql_my_lenenc(p, n, &off, &ncols) || ncols == 0 || ncols > SQL_MY_WIRE_MAX_COLS)
        return -1;
    bool follows = true;
    if (n - off == 1) { /* MARIADB_CLIENT_CACHE_METADATA: does the metadata follow? */
        if (p[off] > 1)
            return -1;
        follows = p[off] == 1;
    } else if (n != off) {
        return -1;
    }
    a->ncols = (size_t)ncols;
    a->col_i = 0;
    if (follows) {
        if (a->cols_cap < a->ncols) {
            a->cols = xrealloc(a->cols, a->ncols * sizeof(*a->cols));
            a->cols_cap = a->ncols;
        }
        if (!a->extra)
            a->meta_sent = true;
        a->state = SQL_MY_A_COLDEF;
        return 0;
    }
    if (a->extra || a->ncached != a->ncols || !a->cached)
        return -1; /* the server says the client holds these columns, and it does not */
    a->use = a->cached;
    sql_my_columns_known(a);
    return 0;
}

/* A column definition: six length-encoded strings (catalog, schema, table, original table, name,
 * original name), with MARIADB_CLIENT_EXTENDED_METADATA one more, then the fixed part: its length
 * (0x0c), character set (2), column length (4), type (1), flags (2), decimals (1), filler (2). The
 * fixed part is read from the end, which holds in both forms; the strings are checked to fit. */
static bool sql_my_coldef(sql_my_answer *a, const unsigned char *p, size_t n)
{
    if (n < 13 + 6 || p[n - 13] != 0x0c)
        return false;
    size_t off = 0;
    for (int i = 0; i < 6; i++) {
        uint64_t len;
        if (!sql_my_lenenc(p, n - 13, &off, &len) || len > n - 13 - off)
            return false;
        off += (size_t)len;
    }
    const unsigned char *fixed = p + n - 12;
    a->cols[a->col_i].type = fixed[6];
    a->cols[a->col_i].is_unsigned = (sql_my_le(fixed + 7, 2) & UNSIGNED_FLAG) != 0;
    if (++a->col_i == a->ncols) {
        a->use = a->cols;
        sql_my_columns_known(a);
    }
    return true;
}

/* The end of a result set's rows. Returns -1 (BAD), 0 (another result follows), 1 (DONE). */
static int sql_my_rows_end(sql_my_answer *a, const unsigned char *p, size_t n)
{
    unsigned status;
    if (a->deprecate_eof) {
        uint64_t affected, insert_id;
        if (!sql_my_ok_status(p, n, &affected, &insert_id, &status))
            return -1;
    } else if (n >= 9 || !sql_my_eof_status(p, n, &status)) {
        return -1;
    }
    if (status & SQL_MY_MORE_RESULTS) {
        a->extra = a->discard = true;
        a->state = SQL_MY_A_HEADER;
        return 0;
    }
    return 1;
}

sql_my_wire_status sql_my_answer_feed(sql_my_answer *a, const unsigned char *buf, size_t len, size_t *used)
{
    size_t pos = 0;
    a->need = 0;
    for (;;) {
        if (len - pos < 4) {
            a->need = 4;
            *used = pos;
            return SQL_MY_WIRE_MORE;
        }
        size_t n = (size_t)sql_my_le(buf + pos, 3);
        if (n > a->max_packet || n == 0xffffffu) {
            *used = pos;
            return SQL_MY_WIRE_TOO_BIG;
        }
        if (len - pos - 4 < n) {
            a->need = n + 4;
            *used = pos;
            return SQL_MY_WIRE_MORE;
        }
        if (buf[pos + 3] != a->seq) {
            *used = pos;
            return SQL_MY_WIRE_BAD;
        }
        a->seq++;
        const unsigned char *p = buf + pos + 4;
        pos += 4 + n;
        int r = 0;
        switch (a->state) {
        case SQL_MY_A_HEADER:
            r = sql_my_header(a, p, n);
            break;
        case SQL_MY_A_COLDEF:
            r = sql_my_coldef(a, p, n) ? 0 : -1;
            break;
        case SQL_MY_A_COLEOF:
            r = n > 0 && p[0] == 0xfe && n < 9 ? 0 : -1;
            if (r == 0)
                a->state = SQL_MY_A_ROWS;
            break;
        default:
            if (n > 0 && p[0] == 0xfe && (a->deprecate_eof || n < 9)) {
                r = sql_my_rows_end(a, p, n);
            } else if (n > 0 && p[0] == 0xff) {
                sql_my_answer_err(a, p, n);
                r = 1;
            } else if (n > 0 && p[0] == 0x00) {
                r = sql_my_row(a, p, n) ? 0 : -1;
            } else {
                r = -1;
            }
        }
        if (r < 0) {
            *used = pos;
            return SQL_MY_WIRE_BAD;
        }
        if (r > 0) {
            *used = pos;
            return SQL_MY_WIRE_DONE;
        }
    }
}
