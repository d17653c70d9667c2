/* sql_answer: a failed SQL operation answered as docs/sql.md's failure table says (sql.h:
 * sql_respond_failed, sql_await_ok), so no handler copies the mapping. The SQL counterpart of
 * http_respond_failed (lib/http/http_answer.c): its errors mean other things (busy and conflict are the
 * client's to retry, a refused query is the app's bug), so they get statuses of their own. */
#include "http_request.h"
#include "sql.h"

bool sql_respond_failed(http_request *req, const async_op *op)
{
    if (op->status == ASYNC_OK)
        return false;
    const char *error = op->error;
    const sql_settings *s = sql_current_settings();
    if (error == SQL_ERROR_TIMEOUT && s) {
        http_respond_problem(req, 504, NULL, "the database did not answer within %u ms", s->query_timeout_ms);
    } else if (op->status == ASYNC_TIMEOUT || error == SQL_ERROR_TIMEOUT) {
        /* An async_wait_for of the handler's own, shorter than the query timeout: no number to give. */
        http_respond_problem(req, 504, NULL, "the database did not answer in time");
    } else if (error == SQL_ERROR_BUSY) {
        http_response_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, NULL, "the database is busy: too many queries are waiting");
    } else if (error == SQL_ERROR_CONFLICT) {
        /* A deadlock or serialization failure is transient and the same request sent again will most
         * likely succeed: 503 (as PostgREST keeps 409 for constraint violations, which resending never
         * fixes, and an app's own 409s mean "change something first"). Retry-After 0 is what tells it
         * from busy: nothing needs to drain first (docs/sql.md, Failures). */
        http_response_header(req, "Retry-After", "0");
        http_respond_problem(req, 503, NULL,
                             "the request conflicted with a concurrent one in the database; send it again");
    } else if (error == SQL_ERROR_QUERY || error == SQL_ERROR_TOO_LARGE) {
        /* What the database said is in the log (sql: ... refused); clients get no SQL internals. */
        http_respond_problem(req, 500, NULL, "the database could not run the query");
    } else if (op->status == ASYNC_CANCELLED) {
        /* Almost always the request is gone (client closed, deadline, server stopping): the engine
         * drops this answer and nothing is sent. Answered all the same for the rare live request that
         * reads an op someone else cancelled (a gather's child after ASYNC_GATHER_FAIL_FAST), which
         * would otherwise wait for its deadline. */
        http_response_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, NULL, "the database query was cancelled");
    } else {
        /* Unavailable, connection lost, or no backend (sql.url "none"). Never an address: where the
         * database lives is for the operator's log. */
        http_response_header(req, "Retry-After", "1");
        http_respond_problem(req, 503, NULL, "the database is unavailable");
    }
    return true;
}

async_op *sql_await_ok(http_request *req, async_op *op)
{
    op = async_await(op);
    return sql_respond_failed(req, op) ? NULL : op;
}
