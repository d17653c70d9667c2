/* stream_app_test: streaming through the in-process test client (testing.h) with the callback forms of
 * stream.h, where the integration tests use coroutines: a producer driven by http_stream_on_drain under
 * a tiny output bound, a body read with async_op_then continuations, a route's own body limit, and the
 * test client de-chunking a streamed answer. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "apiary.h"

/* ---- a producer in callbacks: writes `left` pieces, waits for room whenever the bound is reached -- */

typedef struct producer {
    int left;
    int fulls; /* how often the bound stopped it */
} producer;

static void produce(http_stream *s, bool ok, void *arg)
{
    producer *p = arg;
    if (!ok)
        return; /* the stream closed: the request is gone */
    static const char piece[1000] = {[0 ... 998] = 'p', [999] = '\n'};
    while (p->left > 0) {
        int rc = http_stream_write(s, piece, sizeof(piece));
        if (rc == HTTP_STREAM_FULL) {
            p->fulls++;
            http_stream_on_drain(s, produce, p); /* called again from the loop once there is room */
            return;
        }
        cr_assert_eq(rc, HTTP_STREAM_OK);
        p->left--;
    }
    char tail[32];
    int n = snprintf(tail, sizeof(tail), "fulls=%d\n", p->fulls);
    http_stream_write(s, tail, (size_t)n);
    http_stream_end(s);
}

static void pieces_get(http_request *req)
{
    http_stream *s = http_stream_start(req, 200, "text/plain");
    if (!s)
        return;
    producer *p = async_scope_alloc(http_request_async(req), sizeof(*p));
    p->left = 200;
    produce(s, true, p);
}

/* ---- a body read in continuations ----------------------------------------------------------------- */

typedef struct counter {
    http_request *req;
    size_t bytes, pieces;
    unsigned sum;
} counter;

static void count_piece(async_op *op, void *arg)
{
    counter *c = arg;
    if (op->status != ASYNC_OK) {
        http_respond_problem(c->req, 500, NULL, "%s", op->error);
        return;
    }
    const http_body_chunk *chunk = op->value;
    if (chunk->len == 0) {
        http_respond_json(c->req, 200, json_pack("{s:I,s:I,s:I}", "bytes", (json_int_t)c->bytes, "sum",
                                                 (json_int_t)c->sum, "pieces", (json_int_t)c->pieces));
        return;
    }
    c->pieces++;
    c->bytes += chunk->len;
    for (size_t i = 0; i < chunk->len; i++)
        c->sum += (unsigned char)chunk->data[i];
    async_op_then(http_body_read(c->req), count_piece, c);
}

static void count_post(http_request *req)
{
    counter *c = async_scope_alloc(http_request_async(req), sizeof(*c));
    c->req = req;
    async_op_then(http_body_read(req), count_piece, c);
}

/* A handler that falls behind: after each piece it waits a millisecond before it reads again, so the
 * input buffer is found full while it holds the piece and reading must pause, then go on when it reads
 * (http_body_stream_behind); every byte must still arrive, once, in order. */
static void slow_piece(async_op *op, void *arg);

static void slow_next(async_op *op, void *arg)
{
    counter *c = arg;
    if (op->status != ASYNC_OK)
        return; /* the request is gone */
    async_op_then(http_body_read(c->req), slow_piece, c);
}

static void slow_piece(async_op *op, void *arg)
{
    counter *c = arg;
    const http_body_chunk *chunk = op->status == ASYNC_OK ? op->value : NULL;
    if (chunk && chunk->len) {
        c->pieces++;
        c->bytes += chunk->len;
        for (size_t i = 0; i < chunk->len; i++)
            c->sum = c->sum * 31 + (unsigned char)chunk->data[i]; /* order matters */
        async_op_then(async_sleep(http_request_async(c->req), 1), slow_next, c);
        return;
    }
    count_piece(op, c); /* the end (or a failure): answer */
}

static void slow_post(http_request *req)
{
    counter *c = async_scope_alloc(http_request_async(req), sizeof(*c));
    c->req = req;
    async_op_then(http_body_read(req), slow_piece, c);
}

static const route_schema count_schema = {.max_body_bytes = 3 * 1024 * 1024};

static void buffered_post(http_request *req)
{
    /* a route without ROUTE_BODY_STREAM: reading fails, the body is whole in req->body */
    async_op *op = http_body_read(req);
    http_respond_json(req, 200, json_pack("{s:I,s:b}", "len", (json_int_t)req->body_len, "read_failed",
                                          op && op->status == ASYNC_FAILED));
}

static apiary_test *start(void)
{
    apiary_app *app = apiary_app_new("t");
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_GET, "/pieces", pieces_get, 0), 0);
    cr_assert_eq(apiary_app_route_schema(app, HTTP_METHOD_POST, "/count", count_post, ROUTE_BODY_STREAM,
                                         &count_schema), 0);
    cr_assert_eq(apiary_app_route(app, HTTP_METHOD_POST, "/buffered", buffered_post, 0), 0);
    cr_assert_eq(apiary_app_route_schema(app, HTTP_METHOD_POST, "/slow", slow_post, ROUTE_BODY_STREAM,
                                         &count_schema), 0);
    /* the smallest output bound: a 200 KB answer must stop at it many times */
    apiary_test *t = apiary_test_new(app, "{\"limits\": {\"output_buffer_bytes\": 4096}}");
    cr_assert_not_null(t);
    return t;
}

Test(stream_app, callback_producer_waits_for_room_and_the_client_gets_it_dechunked)
{
    apiary_test *t = start();
    apiary_test_response *r = apiary_test_get(t, "/pieces");
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(apiary_test_header(r, "Transfer-Encoding"), "chunked");
    cr_assert_null(apiary_test_header(r, "Content-Length"));
    const char *tail = strstr(r->body, "fulls=");
    cr_assert_not_null(tail);
    cr_assert_eq((size_t)(tail - r->body), 200 * 1000);
    cr_assert_gt(atoi(tail + 6), 10, "the bound stopped the producer: %s", tail);
    apiary_test_response_free(r);
    apiary_test_free(t);
}

Test(stream_app, body_read_in_continuations)
{
    apiary_test *t = start();
    size_t len = 2 * 1024 * 1024 + 17;
    unsigned char *body = malloc(len);
    unsigned sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += body[i] = (unsigned char)(i * 7);
    apiary_test_response *r = apiary_test_request(t, "POST", "/count", NULL, body, len, 0);
    cr_assert_eq(r->status, 200, "%s", r->body);
    json_t *j = apiary_test_json(r);
    cr_assert_eq(json_integer_value(json_object_get(j, "bytes")), (json_int_t)len);
    cr_assert_eq(json_integer_value(json_object_get(j, "sum")), (json_int_t)sum);
    cr_assert_gt(json_integer_value(json_object_get(j, "pieces")), 32, "read a piece at a time");
    json_decref(j);
    apiary_test_response_free(r);
    apiary_test_free(t);
    free(body);
}

Test(stream_app, body_read_by_a_handler_that_falls_behind)
{
    apiary_test *t = start();
    size_t len = 1024 * 1024 + 5;
    unsigned char *body = malloc(len);
    unsigned sum = 0;
    for (size_t i = 0; i < len; i++) {
        body[i] = (unsigned char)(i * 13 + (i >> 9));
        sum = sum * 31 + body[i];
    }
    apiary_test_response *r = apiary_test_request(t, "POST", "/slow", NULL, body, len, 30000);
    cr_assert_eq(r->status, 200, "%s", r->body);
    json_t *j = apiary_test_json(r);
    cr_assert_eq(json_integer_value(json_object_get(j, "bytes")), (json_int_t)len);
    cr_assert_eq(json_integer_value(json_object_get(j, "sum")), (json_int_t)sum);
    json_decref(j);
    apiary_test_response_free(r);
    apiary_test_free(t);
    free(body);
}

Test(stream_app, the_route_limit_is_the_routes_own)
{
    apiary_test *t = start();
    size_t len = 3 * 1024 * 1024 + 1;
    char *body = calloc(1, len);
    apiary_test_response *r = apiary_test_request(t, "POST", "/count", NULL, body, len, 0);
    cr_assert_eq(r->status, 413);
    cr_assert_not_null(strstr(r->body, "3145728"), "%s", r->body);
    apiary_test_response_free(r);
    /* 2 MiB is past limits.max_body_bytes (1 MiB) but within the route's */
    r = apiary_test_request(t, "POST", "/count", NULL, body, 2 * 1024 * 1024, 0);
    cr_assert_eq(r->status, 200);
    apiary_test_response_free(r);
    r = apiary_test_request(t, "POST", "/buffered", NULL, body, 2 * 1024 * 1024, 0);
    cr_assert_eq(r->status, 413, "other routes keep limits.max_body_bytes");
    apiary_test_response_free(r);
    r = apiary_test_request(t, "POST", "/buffered", NULL, "abc", 3, 0);
    cr_assert_eq(r->status, 200);
    cr_assert_str_eq(r->body, "{\"len\":3,\"read_failed\":true}");
    apiary_test_response_free(r);
    apiary_test_free(t);
    free(body);
}
