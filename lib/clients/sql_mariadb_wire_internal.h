/* sql_mariadb_wire_internal: the part of the MySQL/MariaDB client protocol apiary speaks itself to pipeline
 * prepared statements on a plaintext connection (sql_mariadb.c): writing a COM_STMT_EXECUTE packet,
 * and reading its answer (OK, ERR, or a binary result set) from bytes as they arrive, into a task's
 * sql_rows. Connector/C still connects, authenticates and prepares; it has no call that sends a
 * command without waiting for its answer, nor one that only reads an answer. No I/O here: the parser
 * takes a buffer and says how much of it it used, so it can be fuzzed (tests/fuzz/fuzz_mariadb_wire.c).
 * Not for handlers: they use sql.h. */
#ifndef APIARY_SQL_MARIADB_WIRE_INTERNAL_H
#define APIARY_SQL_MARIADB_WIRE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sql_internal.h"

/* A result column as the binary protocol needs it to decode a row: the protocol type
 * (MYSQL_TYPE_*) and whether it is UNSIGNED. */
typedef struct sql_my_col {
    uint8_t type;
    bool is_unsigned;
} sql_my_col;

/* The largest column count accepted in an answer (MariaDB's own limit is 4096 columns a table). */
#define SQL_MY_WIRE_MAX_COLS 4096u

/* True when rows of this column type are decoded here the way the Connector/C path decodes them
 * (integers, floating and decimal numbers, strings and blobs). Temporal types (which Connector/C
 * formats as text), BIT and GEOMETRY are not: statements returning them are not pipelined. */
bool sql_my_wire_type_ok(uint8_t type);

/* Bytes of the COM_STMT_EXECUTE packet (header included) for these parameters; 0 when it would not fit
 * one packet (16 MiB): such a statement goes the Connector/C way. */
size_t sql_my_wire_execute_size(const sql_value *params, size_t n);
/* Writes that packet (sequence number 0) at out, which has room for sql_my_wire_execute_size bytes:
 * no cursor, one iteration, the parameters' types sent each time (LONGLONG, DOUBLE, STRING, NULL). */
void sql_my_wire_execute(unsigned char *out, uint32_t stmt_id, const sql_value *params, size_t n);

typedef enum sql_my_wire_status {
    SQL_MY_WIRE_MORE,    /* every complete packet consumed; the answer needs more bytes */
    SQL_MY_WIRE_DONE,    /* the answer is complete */
    SQL_MY_WIRE_BAD,     /* a packet the protocol does not allow here: the connection is unusable */
    SQL_MY_WIRE_TOO_BIG, /* a packet longer than max_packet (from its header): the connection goes */
} sql_my_wire_status;

/* One answer being read. sql_my_answer_begin sets it up per statement; the columns array (when the
 * answer carries its own column definitions) is kept across answers and freed with
 * sql_my_answer_free. */
typedef struct sql_my_answer {
    /* in, per statement */
    const sql_my_col *cached; /* the statement's columns from its prepare (the server may not resend them) */
    size_t ncached;
    size_t max_packet;  /* the largest packet accepted */
    size_t max_bytes;   /* the result's bound (sql_rows.bytes) */
    bool deprecate_eof; /* CLIENT_DEPRECATE_EOF was agreed (Connector/C 3.3 does not ask for it) */
    sql_rows *rows;     /* where rows go */
    /* state */
    int state;
    uint8_t seq;       /* the sequence number the next packet must carry */
    size_t ncols, col_i;
    sql_my_col *cols;  /* the columns sent with this answer, when sent */
    size_t cols_cap;
    const sql_my_col *use; /* cached or cols */
    bool discard;      /* rows are read and dropped (the bound was passed, or an extra result set) */
    bool extra;        /* reading a result set after the first (SERVER_MORE_RESULTS_EXIST) */
    /* out */
    const char *error;  /* NULL, SQL_ERROR_QUERY (ERR packet, or a type not decoded here), SQL_ERROR_TOO_LARGE */
    unsigned err_code;  /* the ERR packet's code */
    char err_msg[256];  /* and its message, NUL-terminated */
    bool meta_sent;     /* the answer carried column definitions (they may differ from `cached`) */
    size_t need;        /* after MORE: bytes the next packet needs buffered (header included), or 0 */
} sql_my_answer;

void sql_my_answer_begin(sql_my_answer *a, const sql_my_col *cached, size_t ncached, size_t max_packet,
                         size_t max_bytes, bool deprecate_eof, sql_rows *rows);
/* Reads complete packets from buf; *used is set to the bytes consumed. DONE stops at the answer's
 * last packet (what follows belongs to the next statement). */
sql_my_wire_status sql_my_answer_feed(sql_my_answer *a, const unsigned char *buf, size_t len, size_t *used);
void sql_my_answer_free(sql_my_answer *a);

#endif
