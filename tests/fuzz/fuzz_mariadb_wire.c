/* fuzz_mariadb_wire: libFuzzer target for the MariaDB backend's own protocol code
 * (lib/clients/sql_mariadb_wire.c), what reads the answers of pipelined statements as a hostile server
 * may send them. The input's first bytes choose the reader's settings (CLIENT_DEPRECATE_EOF, the
 * statement's cached columns and their types, the result's bound, how the bytes arrive: in pieces of
 * a chosen size, as recv would hand them over); the rest is the server's byte stream, read as one
 * answer after another until it ends or is refused, exactly as sql_my_pipe_read feeds it. Also writes
 * a COM_STMT_EXECUTE for parameters taken from the input into a buffer of exactly the announced size.
 * Invariants beyond the sanitizers: the reader never reports more bytes used than it was given;
 * a complete answer without error has rows x cols cells, every text cell NUL-terminated; the
 * execute packet's header announces its own length. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sql_mariadb_wire_internal.h"

static void fuzz_check_rows(const sql_rows *r)
{
    if (r->cols && r->cell_count != r->rows * r->cols) {
        fprintf(stderr, "fuzz_mariadb_wire: %zu cells for %zu rows of %zu columns\n", r->cell_count, r->rows, r->cols);
        abort();
    }
    for (size_t i = 0; i < r->cell_count; i++) {
        const sql_value *v = &r->cells[i];
        /* a text cell holds its offset into r->text until the rows are copied into a scope */
        if (v->type == SQL_TEXT && ((size_t)v->i + v->len >= r->text_len || r->text[(size_t)v->i + v->len] != '\0'))
            abort();
    }
}

static void fuzz_execute(const uint8_t *data, size_t size)
{
    sql_value params[8];
    size_t n = size < 8 ? size : 8;
    for (size_t i = 0; i < n; i++) {
        switch (data[i] & 3) {
        case 0:
            params[i] = sql_int((long long)data[i] * 1000003LL - 77);
            break;
        case 1:
            params[i] = sql_double((double)data[i] / 7.0);
            break;
        case 2:
            params[i] = sql_text((const char *)data, size > 300 ? 300 : size);
            break;
        default:
            params[i] = (sql_value){.type = SQL_NULL};
        }
    }
    size_t bytes = sql_my_wire_execute_size(params, n);
    if (!bytes)
        abort(); /* a few small parameters always fit */
    unsigned char *out = malloc(bytes);
    sql_my_wire_execute(out, 0x01020304u, params, n);
    size_t announced = (size_t)out[0] | (size_t)out[1] << 8 | (size_t)out[2] << 16;
    if (announced + 4 != bytes || out[3] != 0 || out[4] != 0x17)
        abort();
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    bool deprecate_eof = data[0] & 1;
    size_t ncached = (data[0] >> 1) & 7;
    size_t piece = (size_t)data[1] + 1; /* bytes per "recv" */
    size_t max_bytes = 64 + (size_t)data[2] * 64;
    size_t max_packet = 256 + (size_t)data[3] * 64;
    data += 4, size -= 4;
    fuzz_execute(data, size);
    sql_my_col cached[8];
    for (size_t i = 0; i < ncached; i++) {
        cached[i].type = i < size ? data[i] : 3;
        cached[i].is_unsigned = i < size && (data[i] & 0x80);
    }
    if (ncached > size)
        ncached = 0;
    data += ncached, size -= ncached;

    sql_my_answer a;
    memset(&a, 0, sizeof(a));
    size_t pos = 0, avail = 0;
    for (int answers = 0; answers < 64; answers++) {
        sql_rows rows;
        memset(&rows, 0, sizeof(rows));
        sql_my_answer_begin(&a, ncached ? cached : NULL, ncached, max_packet, max_bytes, deprecate_eof, &rows);
        sql_my_wire_status st;
        for (;;) {
            if (avail < size)
                avail = avail + piece < size ? avail + piece : size;
            size_t used = 0;
            st = sql_my_answer_feed(&a, data + pos, avail - pos, &used);
            if (used > avail - pos)
                abort();
            pos += used;
            if (st != SQL_MY_WIRE_MORE || avail == size)
                break;
        }
        if (st == SQL_MY_WIRE_DONE && !a.error)
            fuzz_check_rows(&rows);
        sql__rows_free(&rows);
        if (st != SQL_MY_WIRE_DONE)
            break;
    }
    sql_my_answer_free(&a);
    return 0;
}
