/* Unit tests for ws_upgrade (lib/http/ws.c) through the in-process test client: the origin check hook
 * (403 problem), a refused upgrade that is an ordinary answer (426), and the 101 from a plain handler
 * and from a ROUTE_CORO handler that awaited something first, serving the coroutine form. */
#include <criterion/criterion.h>
#include <string.h>

#include "apiary.h"

static const char upgrade_headers[] = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

static bool only_good_origin(http_request *req, const char *origin, void *arg)
{
    (void)req;
    (void)arg;
    return origin && strcmp(origin, "https://good.example") == 0;
}

static void echo_message(ws_conn *ws, const ws_message *msg, void *arg)
{
    (void)arg;
    ws_send(ws, msg->type, msg->data, msg->len);
}

static void ws_plain(http_request *req)
{
    ws_options opts = {.check_origin = only_good_origin, .on_message = echo_message};
    ws_upgrade(req, &opts);
}

static void run_until_closed(ws_conn *ws, async_scope *scope, void *arg)
{
    (void)scope;
    (void)arg;
    while (async_await(ws_receive(ws))->status == ASYNC_OK)
        ;
}

static void ws_after_await(http_request *req)
{
    async_scope *scope = http_request_async(req);
    if (!scope)
        return;
    if (async_await(async_sleep(scope, 1))->status != ASYNC_OK)
        return;
    ws_options opts = {.run = run_until_closed};
    ws_upgrade(req, &opts);
}

static apiary_app *ws_app(void)
{
    apiary_app *app = apiary_app_new("ws_upgrade_test");
    apiary_app_route(app, HTTP_METHOD_GET, "/ws", ws_plain, 0);
    apiary_app_route(app, HTTP_METHOD_GET, "/ws_coro", ws_after_await, ROUTE_CORO);
    return app;
}

static apiary_test_response *get(apiary_test *t, const char *target, const char *extra, unsigned timeout_ms)
{
    char headers[512];
    snprintf(headers, sizeof(headers), "%s%s", upgrade_headers, extra ? extra : "");
    return apiary_test_request(t, "GET", target, headers, NULL, 0, timeout_ms);
}

Test(ws_upgrade, origin_check_refuses_with_403)
{
    apiary_test *t = apiary_test_new(ws_app(), NULL);
    cr_assert_not_null(t);
    apiary_test_response *r = get(t, "/ws", "Origin: https://evil.example\r\n", 0);
    cr_assert_eq(r->status, 403);
    cr_assert(strstr(r->head, "application/problem+json"), "%s", r->head);
    apiary_test_response_free(r);
    r = get(t, "/ws", NULL, 0); /* no Origin at all: the hook gets NULL */
    cr_assert_eq(r->status, 403);
    apiary_test_response_free(r);
    apiary_test_free(t);
}

Test(ws_upgrade, good_origin_gets_101_with_the_accept_key)
{
    apiary_test *t = apiary_test_new(ws_app(), NULL);
    cr_assert_not_null(t);
    apiary_test_response *r = get(t, "/ws", "Origin: https://good.example\r\n", 300);
    cr_assert(strncmp(r->head, "HTTP/1.1 101 Switching Protocols\r\n", 34) == 0, "%s", r->head);
    cr_assert(strstr(r->head, "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), "%s", r->head);
    cr_assert(strstr(r->head, "X-Request-Id: "), "%s", r->head);
    apiary_test_response_free(r);
    apiary_test_free(t); /* closes the WebSocket still open */
}

Test(ws_upgrade, plain_request_is_426_and_the_route_keeps_serving)
{
    apiary_test *t = apiary_test_new(ws_app(), NULL);
    cr_assert_not_null(t);
    apiary_test_response *r = apiary_test_request(t, "GET", "/ws", NULL, NULL, 0, 0);
    cr_assert_eq(r->status, 426);
    cr_assert(strstr(r->head, "Sec-WebSocket-Version: 13\r\n"), "%s", r->head);
    apiary_test_response_free(r);
    apiary_test_free(t);
}

Test(ws_upgrade, coroutine_handler_upgrades_after_an_await)
{
    apiary_test *t = apiary_test_new(ws_app(), NULL);
    cr_assert_not_null(t);
    apiary_test_response *r = get(t, "/ws_coro", NULL, 300);
    cr_assert(strncmp(r->head, "HTTP/1.1 101 ", 13) == 0, "%s", r->head);
    apiary_test_response_free(r);
    apiary_test_free(t); /* the connection's scope ends: run_until_closed's await returns CANCELLED */
}
