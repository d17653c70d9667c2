"""Request size limits: request target (414), header block bytes and header count (431), and body size
(413) by Content-Length, by running chunked total, and with Expect: 100-continue. Each limit is probed
just under/at the boundary (served) and just over it (rejected, then the connection is closed).
Small limits keep the requests small; one server for the file."""

import json
import threading
import unittest

from apiary_harness import (ServerTestMixin, build_request, pending_bytes, read_response, request)

MAX_URL = 256
MAX_HEADER_BYTES = 1024
MAX_HEADERS = 8
MAX_BODY = 1024


def json_of_size(n):
    """A JSON object text of exactly n bytes (n >= 8): {"a":"xxx..."}."""
    text = '{"a":"' + "x" * (n - 8) + '"}'
    assert len(text) == n
    return text.encode()


class LimitsTest(ServerTestMixin, unittest.TestCase):
    CONFIG = {
        "limits": {"max_url_bytes": MAX_URL, "max_header_bytes": MAX_HEADER_BYTES,
                   "max_headers": MAX_HEADERS, "max_body_bytes": MAX_BODY},
        # Short linger so a rejected client that keeps sending is cut off quickly.
        "timeouts": {"linger_ms": 500},
    }

    def check_rejected(self, data, status):
        """Sends data on a fresh connection; expects the problem answer, then the server's close,
        then that everyone else is still served."""
        with self.server.connect() as sock:
            sock.sendall(data)
            self.assertProblem(read_response(sock), status)
            self.assertClosedByServer(sock)
        self.assertServing(self.server)

    # --- request target ---

    def test_target_at_limit_is_routed(self):
        target = "/" + "a" * (MAX_URL - 1)  # exactly MAX_URL bytes: not too long, just unknown
        with self.server.connect() as sock:
            self.assertProblem(request(sock, "GET", target), 404)
            self.assertStillOpen(sock)

    def test_target_one_over_limit_is_414(self):
        self.check_rejected(build_request("GET", "/" + "a" * MAX_URL), 414)

    def test_target_far_over_limit_is_414(self):
        # Still well inside max_header_bytes, so 414 is the only limit it breaks.
        self.check_rejected(build_request("GET", "/v1/hello?q=" + "b" * 700), 414)

    # --- header block ---

    def test_headers_under_byte_limit_are_served(self):
        with self.server.connect() as sock:
            self.assertHello(request(sock, "GET", "/v1/hello", {"X-Pad": "p" * 500}))

    def test_header_block_over_byte_limit_is_431(self):
        self.check_rejected(build_request("GET", "/v1/hello", {"X-Big": "b" * (MAX_HEADER_BYTES + 100)}), 431)

    def test_header_block_over_byte_limit_from_many_small_fields_is_431(self):
        # Few enough fields for max_headers, but together over max_header_bytes.
        headers = [(f"X-Pad-{i}", "p" * 200) for i in range(MAX_HEADERS - 1)]
        self.check_rejected(build_request("GET", "/v1/hello", headers), 431)

    def test_exactly_max_headers_fields_are_served(self):
        # Host plus MAX_HEADERS - 1 more: exactly MAX_HEADERS fields.
        headers = [(f"X-H{i}", "v") for i in range(MAX_HEADERS - 1)]
        with self.server.connect() as sock:
            self.assertHello(request(sock, "GET", "/v1/hello", headers))

    def test_one_field_over_max_headers_is_431(self):
        headers = [(f"X-H{i}", "v") for i in range(MAX_HEADERS)]  # plus Host: MAX_HEADERS + 1
        self.check_rejected(build_request("GET", "/v1/hello", headers), 431)

    # --- body ---

    def test_body_at_limit_is_served(self):
        body = json_of_size(MAX_BODY)
        with self.server.connect() as sock:
            resp = request(sock, "POST", "/v1/echo", {"Content-Type": "application/json"}, body)
            self.assertJson(resp, 200, json.loads(body))
            self.assertStillOpen(sock)

    def test_content_length_one_over_limit_is_413_before_the_body(self):
        # Only the headers are sent: the answer must come from Content-Length alone.
        head = build_request("POST", "/v1/echo", [("Content-Type", "application/json"),
                                                   ("Content-Length", str(MAX_BODY + 1))])
        self.check_rejected(head, 413)

    def test_huge_content_length_is_413_before_the_body(self):
        head = build_request("POST", "/v1/echo", [("Content-Type", "application/json"),
                                                   ("Content-Length", str(10 ** 9))])
        self.check_rejected(head, 413)

    def test_413_is_readable_while_the_client_keeps_sending(self):
        # The client sends headers and a large body without waiting. The server answers 413 and
        # drains (lingers) rather than resetting, so the answer is not lost; then it closes.
        body = b"x" * (512 * 1024)
        head = build_request("POST", "/v1/echo", [("Content-Type", "application/json"),
                                                   ("Content-Length", str(len(body)))])
        with self.server.connect() as sock:
            sock.sendall(head)

            def send_body():
                try:
                    sock.sendall(body)
                except OSError:
                    pass  # the server may close before all of it is accepted
            sender = threading.Thread(target=send_body, daemon=True)
            sender.start()
            self.assertProblem(read_response(sock), 413)
            self.assertClosedByServer(sock, timeout=5.0, silently=False)
            sender.join(10)
            self.assertFalse(sender.is_alive(), "the sender stayed blocked: the server never closed")
        self.assertServing(self.server)

    def chunked_head(self):
        return build_request("POST", "/v1/echo", [("Content-Type", "application/json"),
                                                   ("Transfer-Encoding", "chunked")])

    def test_chunked_body_at_limit_is_served(self):
        body = json_of_size(MAX_BODY)
        pieces = [body[i:i + 300] for i in range(0, len(body), 300)]
        wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        with self.server.connect() as sock:
            sock.sendall(self.chunked_head() + wire)
            self.assertJson(read_response(sock), 200, json.loads(body))
            self.assertStillOpen(sock)

    def test_chunked_body_over_limit_is_413_without_terminating_chunk(self):
        # Three 400-byte chunks pass 1024; the terminating chunk is never sent, so the 413 must be
        # triggered by the running total.
        chunks = b"".join(b"%x\r\n%s\r\n" % (400, b"a" * 400) for _ in range(3))
        self.check_rejected(self.chunked_head() + chunks, 413)

    def test_expect_continue_with_too_large_content_length_is_413_without_100(self):
        head = build_request("POST", "/v1/echo", [("Content-Type", "application/json"),
                                                   ("Content-Length", str(MAX_BODY * 4)),
                                                   ("Expect", "100-continue")])
        with self.server.connect() as sock:
            sock.sendall(head)
            resp = read_response(sock, timeout=3.0)
            self.assertNotEqual(resp.status, 100, "sent 100 Continue for a body it will reject")
            self.assertProblem(resp, 413)
            self.assertEqual(pending_bytes(sock), b"")
            self.assertClosedByServer(sock)
        self.assertServing(self.server)

    def test_expect_continue_within_limit_gets_100(self):
        body = json_of_size(MAX_BODY)
        head = build_request("POST", "/v1/echo", [("Content-Type", "application/json"),
                                                   ("Content-Length", str(len(body))),
                                                   ("Expect", "100-continue")])
        with self.server.connect() as sock:
            sock.sendall(head)
            self.assertEqual(read_response(sock, timeout=3.0).raw_head, b"HTTP/1.1 100 Continue\r\n\r\n")
            sock.sendall(body)
            self.assertJson(read_response(sock), 200, json.loads(body))


if __name__ == "__main__":
    unittest.main()


class JsonLimitsTest(ServerTestMixin, unittest.TestCase):
    """A JSON body is measured before it is parsed: deeper than limits.json_max_depth or with more
    values than limits.json_max_values it is refused with 413 naming the limit, on every endpoint that
    reads JSON, and the connection stays usable (the body was well framed). Small limits keep the
    bodies small; the default-limit attack body (1 MiB of "{}") is checked too."""

    DEPTH = 8
    VALUES = 100
    CONFIG = {"limits": {"json_max_depth": DEPTH, "json_max_values": VALUES}}

    def post(self, sock, path, body, method="POST"):
        return request(sock, method, path, {"Content-Type": "application/json"}, body)

    def test_nesting_at_the_limit_is_served_one_deeper_is_413(self):
        with self.server.connect() as sock:
            at = b"[" * self.DEPTH + b"]" * self.DEPTH
            self.assertJson(self.post(sock, "/v1/echo", at), 200, json.loads(at))
            over = b"[" * (self.DEPTH + 1) + b"]" * (self.DEPTH + 1)
            doc = self.assertProblem(self.post(sock, "/v1/echo", over), 413)
            self.assertEqual(doc["detail"], f"the JSON body nests arrays and objects deeper than {self.DEPTH} levels")
            self.assertStillOpen(sock)

    def test_values_at_the_limit_are_served_one_more_is_413(self):
        with self.server.connect() as sock:
            at = json.dumps(list(range(self.VALUES - 1))).encode()  # the document and its elements
            self.assertJson(self.post(sock, "/v1/echo", at), 200, json.loads(at))
            over = json.dumps(list(range(self.VALUES))).encode()
            doc = self.assertProblem(self.post(sock, "/v1/echo", over), 413)
            self.assertEqual(doc["detail"], f"the JSON body holds more than {self.VALUES} values")
            # commas and brackets inside strings are not structure
            text = json.dumps(["[,{" * 200]).encode()
            self.assertJson(self.post(sock, "/v1/echo", text), 200, json.loads(text))
            self.assertStillOpen(sock)

    def test_every_json_endpoint_applies_the_limits(self):
        over = json.dumps({"a": list(range(self.VALUES))}).encode()
        with self.server.connect() as sock:
            for method, path in (("POST", "/v1/echo"), ("PUT", "/v1/kv/k"), ("POST", "/v1/aggregate"),
                                 ("POST", "/v1/password/hash")):
                with self.subTest(path=path):
                    doc = self.assertProblem(self.post(sock, path, over, method), 413)
                    self.assertIn(f"more than {self.VALUES} values", doc["detail"])
            self.assertStillOpen(sock)


class JsonDefaultLimitsTest(ServerTestMixin, unittest.TestCase):
    """At the default limits, the body the review found holding a loop for 0.33 s (1 MiB of "{}" in an
    array) is refused without being parsed, and a top-level scalar is a JSON text like any other."""

    def test_a_megabyte_of_empty_objects_is_413(self):
        body = b"[" + b",".join([b"{}"] * 349000) + b"]"
        self.assertLess(len(body), 1 << 20)
        with self.server.connect() as sock:
            doc = self.assertProblem(self.post_echo(sock, body), 413)
            self.assertEqual(doc["detail"], "the JSON body holds more than 20000 values")
            self.assertStillOpen(sock)
        self.assertServing(self.server)

    def test_top_level_scalars_are_echoed(self):
        with self.server.connect() as sock:
            for text in (b"42", b'"x"', b"true", b"null", b"-0.5"):
                with self.subTest(text=text):
                    self.assertJson(self.post_echo(sock, text), 200, json.loads(text))

    def post_echo(self, sock, body):
        return request(sock, "POST", "/v1/echo", {"Content-Type": "application/json"}, body)
