"""Content coding of answers (docs/compression.md), end to end: Accept-Encoding q-values pick br or gzip
(the bodies decode back to the same JSON), equal q goes to gzip by default and to br with
compression.prefer ["br", "gzip"] (q-values still deciding first), q=0 is never, identity;q=0 with nothing acceptable is 406,
Vary: Accept-Encoding on every answer that could have been coded, Content-Length of the coded body,
bodies under compression.min_bytes and types already compressed go as they are, no Accept-Encoding
means identity, HEAD gives the coded length, pipelined coded answers stay in order, large bodies are
coded on the worker pool (compression.pool_bytes), and compression.enabled false turns it all off."""

import gzip
import json
import re
import time
import unittest

import brotli

from apiary_harness import ServerTestMixin, build_request, read_response, request

JSON = {"application/json", "application/problem+json"}


def doc(n):
    """A JSON document of about 90 * n bytes, repetitive as real API answers are."""
    return {"items": [{"id": i, "name": f"item {i}", "price": i * 1.5, "tags": ["a", "b"]} for i in range(n)]}


def echo(sock, value, accept_encoding=None, method="POST"):
    headers = {"Content-Type": "application/json"}
    if accept_encoding is not None:
        headers["Accept-Encoding"] = accept_encoding
    return request(sock, method, "/v1/echo", headers, json.dumps(value).encode())


def decoded(resp):
    coding = resp.headers.get("Content-Encoding")
    if coding == "gzip":
        return gzip.decompress(resp.body)
    if coding == "br":
        return brotli.decompress(resp.body)
    assert coding is None, coding
    return resp.body


class NegotiationTest(ServerTestMixin, unittest.TestCase):
    CONFIG = {"compression": {"min_bytes": 1024}}

    def assertCoded(self, resp, coding, value):
        self.assertEqual(resp.status, 200, repr(resp))
        self.assertEqual(resp.headers.get("Content-Encoding"), coding, repr(resp))
        self.assertEqual(resp.headers.get("Vary"), "Accept-Encoding")
        self.assertEqual(int(resp.headers["Content-Length"]), len(resp.body))
        self.assertEqual(json.loads(decoded(resp)), value)

    def test_q_values_choose_the_coding(self):
        value = doc(100)
        cases = [
            ("br;q=1, gzip;q=0.8", "br"),
            ("gzip;q=1, br;q=0.8", "gzip"),
            ("gzip, deflate, br", "gzip"),
            ("gzip, deflate, br, zstd", "gzip"),
            ("br, gzip", "gzip"),
            ("gzip", "gzip"),
            ("x-gzip", "gzip"),
            ("br", "br"),
            ("*", "gzip"),
            ("gzip;q=0, br;q=0.5", "br"),
            ("br;q=0, gzip", "gzip"),
            ("gzip;q=0", None),
            ("deflate", None),
            ("identity", None),
            ("gzip;q=0.5, identity;q=0.9", None),
            ("", None),
        ]
        with self.server.connect() as sock:
            for ae, coding in cases:
                with self.subTest(accept_encoding=ae):
                    self.assertCoded(echo(sock, value, ae), coding, value)

    def test_no_accept_encoding_is_identity_with_vary(self):
        value = doc(100)
        with self.server.connect() as sock:
            resp = echo(sock, value)
            self.assertCoded(resp, None, value)
            self.assertEqual(resp.body, json.dumps(value, separators=(",", ":")).encode())

    def test_coding_shrinks_the_body(self):
        value = doc(300)
        with self.server.connect() as sock:
            plain = echo(sock, value)
            for ae in ("gzip", "br"):
                coded = echo(sock, value, ae)
                self.assertLess(len(coded.body), len(plain.body) / 3, ae)

    def test_identity_refused_with_nothing_acceptable_is_406(self):
        value = doc(100)
        with self.server.connect() as sock:
            for ae in ("identity;q=0", "*;q=0", "identity;q=0, deflate", "gzip;q=0, br;q=0, identity;q=0"):
                with self.subTest(accept_encoding=ae):
                    resp = echo(sock, value, ae)
                    problem = self.assertProblem(resp, 406)
                    self.assertIn("Accept-Encoding", problem["detail"])
            # the connection stays usable, and identity;q=0 with gzip allowed is gzip
            self.assertCoded(echo(sock, value, "identity;q=0, gzip"), "gzip", value)
            self.assertCoded(echo(sock, value, "*;q=0, identity"), None, value)

    def test_small_bodies_go_as_they_are(self):
        value = {"a": 1, "b": "x" * 100}
        with self.server.connect() as sock:
            resp = echo(sock, value, "gzip, br")
            self.assertCoded(resp, None, value)
            # unless identity is refused: then coded anyway rather than 406
            self.assertCoded(echo(sock, value, "gzip, identity;q=0"), "gzip", value)

    def test_other_media_types_are_not_coded(self):
        # /metrics is text (coded); an error's problem+json too when large; a 404 here is small
        with self.server.connect() as sock:
            resp = request(sock, "GET", "/metrics", {"Accept-Encoding": "gzip"})
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.headers.get("Vary"), "Accept-Encoding")
            self.assertIn(b"apiary_", decoded(resp))
            resp = request(sock, "GET", "/nope", {"Accept-Encoding": "gzip"})
            self.assertProblem(resp, 404)
            self.assertIsNone(resp.headers.get("Content-Encoding"))

    def test_head_has_the_coded_length_and_no_body(self):
        value = doc(100)
        with self.server.connect() as sock:
            get = echo(sock, value, "gzip")
            sock.sendall(build_request("GET", "/v1/hello", {"Accept-Encoding": "gzip"}))
            plain_get = read_response(sock)
            sock.sendall(build_request("HEAD", "/v1/hello", {"Accept-Encoding": "gzip"}))
            head = read_response(sock, head_request=True)
            self.assertEqual(head.headers.get("Content-Length"), plain_get.headers.get("Content-Length"))
            self.assertEqual(head.headers.get("Content-Encoding"), plain_get.headers.get("Content-Encoding"))
            self.assertEqual(get.headers.get("Content-Encoding"), "gzip")

    def test_pipelined_coded_answers_stay_in_order(self):
        values = [doc(20 + i * 10) for i in range(6)]
        codings = ["gzip", "br", None, "gzip;q=0", "br;q=1, gzip;q=0.8", "gzip"]
        raw = b""
        for value, ae in zip(values, codings):
            headers = {"Content-Type": "application/json"}
            if ae is not None:
                headers["Accept-Encoding"] = ae
            raw += build_request("POST", "/v1/echo", headers, json.dumps(value).encode())
        with self.server.connect() as sock:
            sock.sendall(raw)
            for value in values:
                resp = read_response(sock)
                self.assertEqual(resp.status, 200)
                self.assertEqual(json.loads(decoded(resp)), value)


class PoolTest(ServerTestMixin, unittest.TestCase):
    """Bodies from compression.pool_bytes up are coded on the worker pool; the answer is the same."""
    CONFIG = {"compression": {"pool_bytes": 4096}, "limits": {"max_body_bytes": 4 << 20}}

    def pool_jobs(self, sock):
        """Jobs the pool completed, once it is idle: the jobs of an earlier test on this server (clients
        that left while their bodies were coded) can still be finishing when the next test starts."""
        def read():
            text = request(sock, "GET", "/metrics").body.decode()
            value = {name: int(float(re.search(rf"^apiary_pool_{name} (\S+)", text, re.M).group(1)))
                     for name in ("completed_total", "queue_depth", "running")}
            return value["completed_total"], value["queue_depth"] + value["running"]
        last = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            done, busy = read()
            if busy == 0 and done == last:
                return done
            last = done if busy == 0 else None
            time.sleep(0.1)
        self.fail("the pool did not settle")

    def test_large_bodies_coded_on_the_pool(self):
        with self.server.connect() as sock:
            before = self.pool_jobs(sock)
            small = echo(sock, doc(30), "gzip")  # under pool_bytes: on the loop
            self.assertEqual(small.headers.get("Content-Encoding"), "gzip")
            self.assertEqual(self.pool_jobs(sock), before)
        value = {"rows": [{"id": i, "text": f"row {i} " + "lorem ipsum dolor sit amet " * 20} for i in range(2000)]}
        with self.server.connect() as sock:
            for ae in ("gzip", "br", "gzip;q=0.5, br;q=0.9"):
                resp = echo(sock, value, ae)
                self.assertEqual(resp.status, 200)
                self.assertEqual(json.loads(decoded(resp)), value)
                self.assertIn(resp.headers.get("Content-Encoding"), ("gzip", "br"))
            self.assertGreaterEqual(self.pool_jobs(sock), before + 3, "each large body was coded by a worker")
            # several at once on one connection, and an identity one between them
            raw = b"".join(build_request("POST", "/v1/echo", {"Content-Type": "application/json",
                                                            **({"Accept-Encoding": ae} if ae else {})},
                                         json.dumps(doc(100 * (i + 1))).encode())
                           for i, ae in enumerate(["gzip", None, "br", "gzip"]))
            sock.sendall(raw)
            for i in range(4):
                resp = read_response(sock)
                self.assertEqual(json.loads(decoded(resp)), doc(100 * (i + 1)))


class PoolClientGoneTest(ServerTestMixin, unittest.TestCase):
    """Clients that leave while their bodies are coded on the pool. A server of its own: their requests
    may still be read, coded or cancelled after the test ends, and PoolTest counts the pool's jobs."""
    CONFIG = PoolTest.CONFIG

    def test_client_gone_while_coding(self):
        # The job is cancelled with the request's scope; nothing runs into the closed connection.
        value = {"rows": [{"id": i, "text": "lorem ipsum dolor sit amet " * 20} for i in range(2000)]}
        raw = build_request("POST", "/v1/echo", {"Content-Type": "application/json", "Accept-Encoding": "br"},
                            json.dumps(value).encode())
        for _ in range(5):
            sock = self.server.connect()
            sock.sendall(raw)
            sock.close()
        with self.server.connect() as sock:
            self.assertEqual(request(sock, "GET", "/healthz").status, 200)


class PreferBrTest(ServerTestMixin, unittest.TestCase):
    """compression.prefer ["br", "gzip"]: br on equal q; the q-values still decide first, and Vary is
    sent as before."""
    CONFIG = {"compression": {"prefer": ["br", "gzip"]}}

    def test_equal_q_follows_prefer(self):
        value = doc(100)
        cases = [
            ("gzip, deflate, br", "br"),
            ("gzip, deflate, br, zstd", "br"),
            ("*", "br"),
            ("gzip;q=0.5, br;q=0.5", "br"),
            ("gzip;q=1, br;q=0.8", "gzip"),
            ("br;q=0, gzip", "gzip"),
            ("gzip", "gzip"),
            ("gzip;q=0", None),
            ("gzip;q=0.5, br;q=0.5, identity;q=0.9", None),
        ]
        with self.server.connect() as sock:
            for ae, coding in cases:
                with self.subTest(accept_encoding=ae):
                    resp = echo(sock, value, ae)
                    self.assertEqual(resp.status, 200, repr(resp))
                    self.assertEqual(resp.headers.get("Content-Encoding"), coding, repr(resp))
                    self.assertEqual(resp.headers.get("Vary"), "Accept-Encoding")
                    self.assertEqual(json.loads(decoded(resp)), value)
            self.assertProblem(echo(sock, value, "identity;q=0"), 406)


class DisabledTest(ServerTestMixin, unittest.TestCase):
    CONFIG = {"compression": {"enabled": False}}

    def test_off_means_identity_and_no_vary(self):
        value = doc(100)
        with self.server.connect() as sock:
            resp = echo(sock, value, "br, gzip")
            self.assertEqual(resp.status, 200)
            self.assertIsNone(resp.headers.get("Content-Encoding"))
            self.assertIsNone(resp.headers.get("Vary"))
            self.assertEqual(json.loads(resp.body), value)
            self.assertEqual(echo(sock, value, "identity;q=0").status, 200, "no coding at all: no 406 either")


class GzipOnlyTest(ServerTestMixin, unittest.TestCase):
    CONFIG = {"compression": {"brotli": False, "gzip_level": 6}}

    def test_brotli_off(self):
        value = doc(100)
        with self.server.connect() as sock:
            resp = echo(sock, value, "br;q=1, gzip;q=0.8")
            self.assertEqual(resp.headers.get("Content-Encoding"), "gzip")
            self.assertEqual(json.loads(decoded(resp)), value)
            self.assertProblem(echo(sock, value, "br, identity;q=0"), 406)


if __name__ == "__main__":
    unittest.main()
