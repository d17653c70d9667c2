"""X-Request-Id and the access log: a well-formed client id is kept and sent back, anything else is
replaced by a generated one (unique across loops); every answered request, refused ones included,
writes one JSON line with the documented fields; the log is off unless configured."""

import json
import os
import re
import socket
import tempfile
import unittest

from apiary_harness import ApiaryServer, ServerTestMixin, read_response, request

FIELDS = {"time", "request_id", "client", "method", "path", "status", "bytes", "duration_us"}


class RequestIdTest(ServerTestMixin, unittest.TestCase):
    THREADS = 2

    def test_well_formed_client_id_is_kept(self):
        with self.server.connect() as sock:
            resp = request(sock, "GET", "/v1/hello", {"X-Request-Id": "edge-7f3a.9:b_c"})
        self.assertEqual(resp.headers["x-request-id"], "edge-7f3a.9:b_c")

    def test_malformed_client_id_is_replaced(self):
        for bad in ("a" * 65, "has space", "semi;colon", "quote\"", ""):
            with self.subTest(bad=bad), self.server.connect() as sock:
                resp = request(sock, "GET", "/v1/hello", {"X-Request-Id": bad})
                rid = resp.headers["x-request-id"]
                self.assertNotEqual(rid, bad)
                self.assertRegex(rid, r"^[0-9a-f]{8}-[0-9]+-[0-9a-f]+$")

    def test_generated_ids_are_unique_across_connections_and_loops(self):
        ids = set()
        for _ in range(100):
            with self.server.connect() as sock:
                for _ in range(2):
                    ids.add(request(sock, "GET", "/healthz").headers["x-request-id"])
        self.assertEqual(len(ids), 200)

    def test_error_answers_carry_an_id_too(self):
        with self.server.connect() as sock:
            self.assertIn("x-request-id", request(sock, "GET", "/nope").headers)
        with self.server.connect() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
            resp = read_response(sock)
            self.assertEqual(resp.status, 400)
            self.assertIn("x-request-id", resp.headers)


class AccessLogTest(unittest.TestCase):
    def test_lines_are_json_with_the_fields_including_refused_requests(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "access.log")
            with ApiaryServer({"access_log": {"enabled": True, "path": path}}, threads=2) as srv:
                with srv.connect() as sock:
                    request(sock, "GET", "/v1/hello", {"X-Request-Id": "trace-1"})
                    request(sock, "GET", '/v1/he"llo\\x?q=1')
                    request(sock, "HEAD", "/v1/hello")
                with srv.connect() as sock:
                    sock.sendall(b"GET / HTTP/1.1\r\nBad Header\r\n\r\n")
                    self.assertEqual(read_response(sock).status, 400)
                srv.sigterm()
                self.assertEqual(srv.wait(10), 0)
            with open(path, encoding="utf-8") as f:
                lines = [json.loads(line) for line in f]
        self.assertEqual(len(lines), 4)
        for line in lines:
            self.assertEqual(set(line), FIELDS)
            self.assertRegex(line["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            self.assertEqual(line["client"], "127.0.0.1")
            self.assertIsInstance(line["duration_us"], int)
        by_status = {(l["method"], l["status"]): l for l in lines}
        hello = by_status[("GET", 200)]
        self.assertEqual((hello["request_id"], hello["path"], hello["bytes"]), ("trace-1", "/v1/hello", 27))
        self.assertEqual(by_status[("GET", 404)]["path"], '/v1/he"llo\\x?q=1')
        self.assertEqual(by_status[("HEAD", 200)]["bytes"], 0)
        refused = [l for l in lines if l["status"] == 400]
        self.assertEqual(len(refused), 1)
        self.assertRegex(refused[0]["request_id"], r"^[0-9a-f]{8}-")

    def test_off_by_default(self):
        with ApiaryServer({}, threads=1) as srv:
            with srv.connect() as sock:
                for _ in range(5):
                    request(sock, "GET", "/v1/hello")
            # A loop flushes its access log when it stops, so after the exit (and the log reader's
            # EOF) every line it would have written is in the log: no waiting for the timed flush.
            srv.sigterm()
            self.assertEqual(srv.wait(10), 0)
            self.assertNotIn('"request_id"', srv.log_text())


if __name__ == "__main__":
    unittest.main()
