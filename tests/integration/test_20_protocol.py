"""HTTP/1.1 protocol handling over raw sockets: keep-alive and Connection: close, HTTP/1.0, pipelining,
chunked request bodies, HEAD, Expect: 100-continue, malformed requests (400, then close) and
unsupported methods (501)."""

import json
import time
import unittest

from apiary_harness import (ServerTestMixin, build_request, echo_request, pending_bytes, read_response,
                            readable, request)


def pipelined_batch(count):
    """count requests alternating GET /v1/hello and POST /v1/echo {"i": i}, with what each answer must
    be, so responses can be checked strictly in order."""
    data = bytearray()
    expected = []
    for i in range(count):
        if i % 2 == 0:
            data += build_request("GET", "/v1/hello")
            expected.append({"message": "Hello, World!"})
        else:
            data += echo_request({"i": i})
            expected.append({"i": i})
    return bytes(data), expected


class KeepAliveTest(ServerTestMixin, unittest.TestCase):
    def test_http11_is_keepalive_by_default(self):
        with self.server.connect() as sock:
            for _ in range(5):
                resp = request(sock, "GET", "/v1/hello")
                self.assertHello(resp)
                self.assertNotIn("close", resp.connection_tokens())
            # Nothing unsolicited follows, and the connection is not closed under us.
            self.assertFalse(readable(sock, 0.2))
            self.assertStillOpen(sock)

    def test_connection_close_answers_then_closes(self):
        with self.server.connect() as sock:
            resp = request(sock, "GET", "/v1/hello", {"Connection": "close"})
            self.assertHello(resp)
            self.assertIn("close", resp.connection_tokens())
            self.assertClosedByServer(sock)
        self.assertServing(self.server)

    def test_connection_close_in_a_pipeline_is_the_last_answer(self):
        # Requests after the one that says "close" are never answered.
        data = (build_request("GET", "/v1/hello") + build_request("GET", "/healthz", {"Connection": "close"})
                + build_request("GET", "/v1/hello"))
        with self.server.connect() as sock:
            sock.sendall(data)
            self.assertHello(read_response(sock))
            resp = read_response(sock)
            self.assertJson(resp, 200, {"status": "ok"})
            self.assertIn("close", resp.connection_tokens())
            self.assertClosedByServer(sock)
        self.assertServing(self.server)

    def test_http10_without_keepalive_closes(self):
        with self.server.connect() as sock:
            sock.sendall(b"GET /v1/hello HTTP/1.0\r\n\r\n")
            self.assertHello(read_response(sock))
            self.assertClosedByServer(sock)
        self.assertServing(self.server)

    def test_http10_keepalive_stays_open(self):
        with self.server.connect() as sock:
            for _ in range(2):
                sock.sendall(b"GET /v1/hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                resp = read_response(sock)
                self.assertHello(resp)
                self.assertIn("keep-alive", resp.connection_tokens())
            # Still usable; a plain HTTP/1.0 request then ends it.
            sock.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            self.assertJson(read_response(sock), 200, {"status": "ok"})
            self.assertClosedByServer(sock)
        self.assertServing(self.server)


class PipeliningTest(ServerTestMixin, unittest.TestCase):
    def test_50_pipelined_requests_in_one_send_answered_in_order(self):
        data, expected = pipelined_batch(50)
        with self.server.connect() as sock:
            sock.sendall(data)
            for i, want in enumerate(expected):
                with self.subTest(i=i):
                    self.assertJson(read_response(sock), 200, want)
            self.assertEqual(pending_bytes(sock), b"", "stray bytes after the 50th response")
            self.assertStillOpen(sock)

    def test_pipelined_requests_split_at_arbitrary_boundaries(self):
        # The same batch dribbled 7 bytes per send: requests and bodies straddle reads.
        data, expected = pipelined_batch(20)
        with self.server.connect() as sock:
            for off in range(0, len(data), 7):
                sock.sendall(data[off:off + 7])
            for i, want in enumerate(expected):
                with self.subTest(i=i):
                    self.assertJson(read_response(sock), 200, want)
            self.assertStillOpen(sock)

    def test_several_pipelined_batches_on_one_connection(self):
        data, expected = pipelined_batch(30)
        with self.server.connect() as sock:
            for _ in range(3):
                sock.sendall(data)
                for want in expected:
                    self.assertJson(read_response(sock), 200, want)


class ChunkedTest(ServerTestMixin, unittest.TestCase):
    @staticmethod
    def chunked_head():
        return build_request("POST", "/v1/echo", [("Content-Type", "application/json"),
                                                   ("Transfer-Encoding", "chunked")])

    def test_chunked_echo(self):
        value = {"chunked": True, "items": list(range(50)), "text": "abc" * 100}
        body = json.dumps(value).encode()
        pieces = [body[:1], body[1:100], body[100:101], body[101:]]
        wire = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
        with self.server.connect() as sock:
            sock.sendall(self.chunked_head() + wire)
            self.assertJson(read_response(sock), 200, value)
            # The terminating chunk was consumed exactly: the connection goes on.
            self.assertStillOpen(sock)

    def test_chunked_echo_split_across_sends_with_pauses(self):
        value = {"slow": "chunks", "n": [1, 2, 3]}
        body = json.dumps(value).encode()
        half = len(body) // 2
        sends = [
            self.chunked_head(),
            b"%x" % half,                 # size line split from its CRLF
            b"\r\n" + body[:5],           # chunk data split mid-chunk
            body[5:half] + b"\r",         # CRLF after the data split too
            b"\n%x\r\n" % (len(body) - half) + body[half:] + b"\r\n",
            b"0\r",
            b"\n\r\n",
        ]
        with self.server.connect() as sock:
            for piece in sends:
                sock.sendall(piece)
                time.sleep(0.05)
            self.assertJson(read_response(sock), 200, value)
            self.assertStillOpen(sock)

    def test_chunked_then_pipelined_request(self):
        body = b'{"x":1}'
        wire = self.chunked_head() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) + build_request("GET", "/v1/hello")
        with self.server.connect() as sock:
            sock.sendall(wire)
            self.assertJson(read_response(sock), 200, {"x": 1})
            self.assertHello(read_response(sock))


class HeadTest(ServerTestMixin, unittest.TestCase):
    def test_head_has_get_headers_and_no_body(self):
        with self.server.connect() as sock:
            get = request(sock, "GET", "/v1/hello")
            self.assertHello(get)
            head = request(sock, "HEAD", "/v1/hello")
            self.assertEqual(head.status, 200)
            self.assertCommonHeaders(head, head_request=True)
            self.assertEqual(head.headers.get("Content-Length"), get.headers.get("Content-Length"))
            self.assertEqual(head.headers.get("Content-Type"), "application/json")
            # No body bytes may follow; the next request on the connection proves the framing.
            self.assertFalse(readable(sock, 0.3), "bytes after a HEAD response")
            self.assertHello(request(sock, "GET", "/v1/hello"))

    def test_head_pipelined_with_get(self):
        with self.server.connect() as sock:
            sock.sendall(build_request("HEAD", "/v1/hello") + build_request("GET", "/v1/hello")
                         + build_request("HEAD", "/healthz") + build_request("GET", "/healthz"))
            head = read_response(sock, head_request=True)
            self.assertEqual(head.status, 200)
            self.assertHello(read_response(sock))
            head = read_response(sock, head_request=True)
            self.assertEqual(head.status, 200)
            self.assertJson(read_response(sock), 200, {"status": "ok"})
            self.assertEqual(pending_bytes(sock), b"")


class ExpectContinueTest(ServerTestMixin, unittest.TestCase):
    def test_100_continue_before_body(self):
        body = b'{"expect":"continue"}'
        head = build_request("POST", "/v1/echo", [("Content-Type", "application/json"),
                                                   ("Content-Length", str(len(body))),
                                                   ("Expect", "100-continue")])
        with self.server.connect() as sock:
            sock.sendall(head)
            interim = read_response(sock, timeout=3.0)
            self.assertEqual(interim.raw_head, b"HTTP/1.1 100 Continue\r\n\r\n")
            self.assertEqual(pending_bytes(sock), b"", "the final answer came before the body was sent")
            sock.sendall(body)
            self.assertJson(read_response(sock), 200, {"expect": "continue"})
            self.assertStillOpen(sock)


class MalformedTest(ServerTestMixin, unittest.TestCase):
    CASES = {
        # The spec's own example: a header line without a colon.
        "header without colon": b"GET / HTTP/1.1\r\nBad Header\r\n\r\n",
        "bare LF line endings with nonsense": b"GET /v1/hello HTTP/1.1\nHost: 127.0.0.1\nBad Header\n\n",
        "invalid char in header name": b"GET /v1/hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX(bad): v\r\n\r\n",
        "at-sign in header name": b"GET /v1/hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX@bad: v\r\n\r\n",
        "control char in header value": b"GET /v1/hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\x01b\r\n\r\n",
        "not an HTTP version": b"GET /v1/hello HTTPX/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "NUL in request target": b"GET /v1/he\x00llo HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        # TLS on the plain port: binary garbage, not a method name, so 400 rather than 501.
        "TLS ClientHello": b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + bytes(range(32)) + b"\r\n\r\n",
        "Content-Length not a number": (b"POST /v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                        b"Content-Type: application/json\r\nContent-Length: abc\r\n\r\n{}"),
        "Content-Length and Transfer-Encoding": (b"POST /v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                 b"Content-Type: application/json\r\nContent-Length: 2\r\n"
                                                 b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n"),
        "two different Content-Length values": (b"POST /v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                                                b"Content-Type: application/json\r\nContent-Length: 2\r\n"
                                                b"Content-Length: 3\r\n\r\n{} "),
        "bad chunk size": (b"POST /v1/echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\nzz\r\n"),
    }

    def check_400_then_close(self, data):
        with self.server.connect() as sock:
            sock.sendall(data)
            self.assertProblem(read_response(sock), 400)
            self.assertClosedByServer(sock)
        self.assertServing(self.server)

    def test_malformed_requests_are_400_and_close(self):
        for name, data in self.CASES.items():
            with self.subTest(case=name):
                self.check_400_then_close(data)

    def test_whitespace_in_header_name_is_400(self):
        # RFC 9112 5.1: no whitespace inside or before the colon of a field name (a smuggling
        # vector). llhttp 8 lets these through, so the engine has to check names itself.
        cases = {
            "space inside name": b"GET /v1/hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bad Name: v\r\n\r\n",
            "space before colon": b"GET /v1/hello HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n",
        }
        for name, data in cases.items():
            with self.subTest(case=name):
                self.check_400_then_close(data)

    def test_malformed_request_after_good_ones_on_same_connection(self):
        # Earlier good answers are delivered intact; then the 400; then close.
        with self.server.connect() as sock:
            sock.sendall(build_request("GET", "/v1/hello") + build_request("GET", "/healthz")
                         + b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
            self.assertHello(read_response(sock))
            self.assertJson(read_response(sock), 200, {"status": "ok"})
            self.assertProblem(read_response(sock), 400)
            self.assertClosedByServer(sock)
        self.assertServing(self.server)


class MethodsTest(ServerTestMixin, unittest.TestCase):
    def test_unknown_method_is_501(self):
        with self.server.connect() as sock:
            sock.sendall(b"BREW / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            self.assertProblem(read_response(sock), 501)
            # Whether this connection survives is left to the engine (llhttp cannot resume after an
            # unknown method); everyone else must still be served.
        self.assertServing(self.server)

    def test_unrouted_llhttp_methods_are_501_and_keep_connection(self):
        with self.server.connect() as sock:
            for method, path in (("PROPFIND", "/v1/hello"), ("PROPFIND", "/nope"), ("TRACE", "/"),
                                 ("TRACE", "/v1/hello")):
                with self.subTest(method=method, path=path):
                    # 501 comes before routing: a known path does not turn it into 405.
                    self.assertProblem(request(sock, method, path), 501)
            self.assertStillOpen(sock)
        self.assertServing(self.server)


if __name__ == "__main__":
    unittest.main()
