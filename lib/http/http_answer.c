/* http_answer: answers a handler would otherwise write the same way every time (http_request.h): the
 * problem+json for an operation that did not succeed (the await that answers its own failure, as a
 * FastAPI handler lets HTTPException do), and 201 Created with its Location. Built on the http_respond_*
 * calls; nothing here keeps state. */
#include <stdarg.h>
#include <stdio.h>

#include "http_request.h"
#include "pool.h"

bool http_respond_failed(http_request *req, const async_op *op, int failed_status, const char *what)
{
    if (op->status == ASYNC_OK)
        return false;
    const char *error = op->error              ? op->error
                        : op->status == ASYNC_CANCELLED ? "cancelled"
                        : op->status == ASYNC_TIMEOUT   ? "timeout"
                                                        : "failed";
    int status = failed_status ? failed_status : 502;
    if (op->status == ASYNC_TIMEOUT) {
        status = 504;
    } else if (op->status == ASYNC_CANCELLED || op->error == POOL_ERROR_FULL) {
        /* Cancelled: the request is gone (then nothing is sent) or the server is stopping. Pool full:
         * a moment later there may be room. Either way the client may try again. */
        status = 503;
        http_response_header(req, "Retry-After", "1");
    }
    http_respond_problem(req, status, NULL, "%s: %s", what, error);
    return true;
}

async_op *http_await_ok(http_request *req, async_op *op, int failed_status, const char *what)
{
    op = async_await(op);
    return http_respond_failed(req, op, failed_status, what) ? NULL : op;
}

/* The Location of a 201 from location_fmt into buf (1 KiB); false, with the 500 answered, when the URL
 * would not fit: a cut URL would name another resource. */
static bool http_created_location(http_request *req, char location[1024], const char *location_fmt, va_list ap)
{
    int n = vsnprintf(location, 1024, location_fmt, ap);
    if (n < 0 || n >= 1024) {
        http_respond_problem(req, 500, NULL, "the new resource's URL is too long");
        return false;
    }
    http_response_header(req, "Location", location);
    return true;
}

void http_respond_created(http_request *req, json_t *body, const char *location_fmt, ...)
{
    char location[1024];
    va_list ap;
    va_start(ap, location_fmt);
    bool ok = http_created_location(req, location, location_fmt, ap);
    va_end(ap);
    if (!ok) {
        json_decref(body);
        return;
    }
    http_respond_json(req, 201, body);
}

void http_respond_created_writer(http_request *req, const json_writer *w, const char *location_fmt, ...)
{
    char location[1024];
    va_list ap;
    va_start(ap, location_fmt);
    bool ok = http_created_location(req, location, location_fmt, ap);
    va_end(ap);
    if (ok)
        http_respond_json_writer(req, 201, w);
}
