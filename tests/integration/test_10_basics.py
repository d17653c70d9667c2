"""Basics: the endpoints (/healthz, /readyz, /v1/hello, /v1/echo), the headers every response carries,
the problem+json error format, and routing answers 404/405/415 (which keep the connection open).
One server for the whole file, default config."""

import unittest

from apiary_harness import ServerTestMixin, json_request_body as json_body, request


class EndpointsTest(ServerTestMixin, unittest.TestCase):
    def test_healthz(self):
        with self.server.connect() as sock:
            self.assertJson(request(sock, "GET", "/healthz"), 200, {"status": "ok"})

    def test_readyz_while_running(self):
        with self.server.connect() as sock:
            self.assertJson(request(sock, "GET", "/readyz"), 200, {"status": "ready"})

    def test_hello(self):
        with self.server.connect() as sock:
            resp = request(sock, "GET", "/v1/hello")
            self.assertHello(resp)
            # The connection is keep-alive by default: nothing says otherwise.
            self.assertNotIn("close", resp.connection_tokens())

    def test_hello_with_query_string(self):
        # Routing is on the path; a query string does not make it a different resource.
        with self.server.connect() as sock:
            self.assertHello(request(sock, "GET", "/v1/hello?name=bee&x=1"))

    def test_date_header_is_imf_fixdate_on_every_kind_of_response(self):
        # assertJson/assertProblem check Date, Server and Content-Length; here one of each kind.
        with self.server.connect() as sock:
            self.assertHello(request(sock, "GET", "/v1/hello"))
            self.assertProblem(request(sock, "GET", "/nope"), 404)
            self.assertProblem(request(sock, "DELETE", "/v1/hello"), 405)
            self.assertProblem(request(sock, "POST", "/v1/echo", {"Content-Type": "text/plain"}, b"{}"), 415)
            self.assertJson(request(sock, "POST", "/v1/echo", {"Content-Type": "application/json"}, b"[]"),
                            200, [])


class EchoTest(ServerTestMixin, unittest.TestCase):
    VALUES = [
        {},
        [],
        {"a": 1, "b": [1, 2, 3], "c": {"d": None, "e": True, "f": False}},
        [1, "two", 3.5, None, {"nested": [[]]}],
        {"unicode": "h\u00e9llo \u4e16\u754c \U0001F41D", "escapes": "quote\" backslash\\ nl\n tab\t"},
        {"big": "x" * 100000, "n": -12345678901},
        {"i": 7},
    ]

    def test_echo_returns_the_same_json_value(self):
        # All on one keep-alive connection: echo must also leave the connection reusable.
        with self.server.connect() as sock:
            for value in self.VALUES:
                with self.subTest(value=repr(value)[:60]):
                    resp = request(sock, "POST", "/v1/echo", {"Content-Type": "application/json"},
                                   json_body(value))
                    self.assertJson(resp, 200, value)

    def test_echo_content_type_with_parameters(self):
        with self.server.connect() as sock:
            for ctype in ("application/json; charset=utf-8", "application/json;charset=UTF-8"):
                with self.subTest(content_type=ctype):
                    resp = request(sock, "POST", "/v1/echo", {"Content-Type": ctype}, b'{"ok":true}')
                    self.assertJson(resp, 200, {"ok": True})

    def test_echo_wrong_content_type_is_415_and_keeps_connection(self):
        with self.server.connect() as sock:
            for ctype in ("text/plain", "application/x-www-form-urlencoded", "application/jsonx",
                          "application/problem+json"):
                with self.subTest(content_type=ctype):
                    resp = request(sock, "POST", "/v1/echo", {"Content-Type": ctype}, b'{"a":1}')
                    self.assertProblem(resp, 415)
            # 415 does not close: the same connection still serves.
            self.assertStillOpen(sock)
        self.assertServing(self.server)

    def test_echo_missing_content_type_is_415(self):
        with self.server.connect() as sock:
            self.assertProblem(request(sock, "POST", "/v1/echo", None, b'{"a":1}'), 415)
            self.assertStillOpen(sock)
        self.assertServing(self.server)

    def test_echo_invalid_json_is_400_with_position_and_keeps_connection(self):
        # The syntax error sits on line 2, so a useful detail must say where.
        with self.server.connect() as sock:
            resp = request(sock, "POST", "/v1/echo", {"Content-Type": "application/json"},
                           b'{"a": 1,\n "b": }')
            doc = self.assertProblem(resp, 400)
            self.assertIn("line", doc["detail"])
            self.assertIn("column", doc["detail"])
            # The HTTP framing was fine, only the JSON was not: the connection stays usable.
            self.assertEqual(request(sock, "GET", "/v1/hello").status, 200)
        self.assertServing(self.server)

    def test_echo_truncated_json_is_400(self):
        with self.server.connect() as sock:
            resp = request(sock, "POST", "/v1/echo", {"Content-Type": "application/json"}, b'{"a": [1, 2')
            doc = self.assertProblem(resp, 400)
            self.assertIn("line", doc["detail"])
            self.assertIn("column", doc["detail"])
            self.assertStillOpen(sock)
        self.assertServing(self.server)

    def test_echo_empty_body_is_400(self):
        # An empty body is not a JSON text.
        with self.server.connect() as sock:
            resp = request(sock, "POST", "/v1/echo", {"Content-Type": "application/json"}, b"")
            self.assertProblem(resp, 400)
            self.assertStillOpen(sock)
        self.assertServing(self.server)


class RoutingTest(ServerTestMixin, unittest.TestCase):
    def test_unknown_route_is_404_and_keeps_connection(self):
        with self.server.connect() as sock:
            for path in ("/", "/nope", "/v1", "/v1/hello/extra", "/v1/helloo", "/v2/hello", "/healthz/x"):
                with self.subTest(path=path):
                    self.assertProblem(request(sock, "GET", path), 404)
            self.assertStillOpen(sock)
        self.assertServing(self.server)

    def test_wrong_method_is_405_with_allow(self):
        cases = [
            ("DELETE", "/v1/hello", None, "GET, HEAD"),
            ("POST", "/v1/hello", b"{}", "GET, HEAD"),
            ("PUT", "/v1/hello", b"{}", "GET, HEAD"),
            ("GET", "/v1/echo", None, "POST"),
            ("HEAD", "/v1/echo", None, "POST"),
            ("PATCH", "/v1/echo", b"{}", "POST"),
            ("POST", "/healthz", b"{}", "GET, HEAD"),
            ("DELETE", "/readyz", None, "GET, HEAD"),
        ]
        with self.server.connect() as sock:
            for method, path, body, allow in cases:
                with self.subTest(method=method, path=path):
                    headers = {"Content-Type": "application/json"} if body is not None else None
                    resp = request(sock, method, path, headers, body)
                    if method == "HEAD":
                        # A HEAD answer has the headers of the error but no body.
                        self.assertEqual(resp.status, 405)
                        self.assertEqual(resp.body, b"")
                        self.assertCommonHeaders(resp, head_request=True)
                    else:
                        self.assertProblem(resp, 405)
                    self.assertEqual(resp.headers.get("Allow"), allow)
            # 405 does not close.
            self.assertStillOpen(sock)
        self.assertServing(self.server)

    def test_errors_never_close_a_keepalive_connection_early(self):
        # A long mix of 404/405/415 and successes on one connection: none of them ends it.
        with self.server.connect() as sock:
            for i in range(20):
                self.assertProblem(request(sock, "GET", f"/missing/{i}"), 404)
                self.assertProblem(request(sock, "GET", "/v1/echo"), 405)
                self.assertProblem(request(sock, "POST", "/v1/echo", {"Content-Type": "text/plain"}, b"x"), 415)
                self.assertHello(request(sock, "GET", "/v1/hello"))
        self.assertServing(self.server)


if __name__ == "__main__":
    unittest.main()
