"""JSON in and out (issue 10): echo and the kv store take any RFC 8259 value and give back the same
value in compact text, with reals in their shortest round-trip form, U+0000 inside strings kept,
integers beyond int64 refused naming the position and the limit, nesting up to the limit accepted,
and malformed documents still refused with line and column.

The kv cases run on the memory store and on a private redis-server (started by test_96_kv's helper;
only its PID is ever signalled): GET splices the stored text into its answer, so the bytes matter."""

import itertools
import json
import os
import unittest

from apiary_harness import ServerTestMixin, request
from test_80_async import AsyncAssertions
from test_96_kv import RedisServer, kv_path, redis_config

# (sent, the exact compact text expected back)
ROUND_TRIPS = [
    (b"42", b"42"),
    (b'"x"', b'"x"'),
    (b"null", b"null"),
    (b"true", b"true"),
    (b"false", b"false"),
    (b"-7", b"-7"),
    (b" [ ] ", b"[]"),
    (b"{}", b"{}"),
    (b'"a\\u0000b"', b'"a\\u0000b"'),
    (b'{"k":"\\u0000"}', b'{"k":"\\u0000"}'),
    (b'{"a":0.1,"b":98.6}', b'{"a":0.1,"b":98.6}'),
    (b"0.1", b"0.1"),
    (b"98.6", b"98.6"),
    (b"1e300", b"1e+300"),
    (b"5e-324", b"5e-324"),
    (b"-0.0", b"-0.0"),
    (b"1.0", b"1.0"),
    (b"1E2", b"100.0"),
    (b"0.30000000000000004", b"0.30000000000000004"),
    (b"16.990000000000002", b"16.990000000000002"),
    (b"9223372036854775807", b"9223372036854775807"),
    (b"-9223372036854775808", b"-9223372036854775808"),
    (b'"\\u00e9\\ud83d\\udc1d \\n\\t\\"\\\\ /"', '"\u00e9\U0001F41D \\n\\t\\"\\\\ /"'.encode()),
    (b'"\\u001f\\u007f"', b'"\\u001f\x7f"'),
]

BIG_INTEGERS = [b"9223372036854775808", b"-9223372036854775809", b"[1, 99999999999999999999]"]

MALFORMED = [b"{", b"[1,]", b"nul", b"1 2", b"'x'", b'{"a":1,}', b"01", b"1.", b".5", b"+1", b"NaN",
             b"Infinity", b'"\\x"', b'"\\ud800"', b"\xff", b'"\x01"', b'{"a" 1}', b"[1 2]"]


KEYS = itertools.count()  # a fresh key for every PUT, so each answers 201


def deep(levels):
    return b"[" * levels + b"]" * levels


class JsonCases(AsyncAssertions):
    """Shared by every class here: self.send(sock, raw) -> (response, echoed text or None)."""

    def test_values_come_back_in_compact_shortest_form(self):
        with self.server.connect() as sock:
            for raw, expected in ROUND_TRIPS:
                with self.subTest(raw=raw):
                    resp, text = self.send(sock, raw)
                    self.assertEqual(resp.status, self.OK, resp)
                    self.assertEqual(text, expected)

    def test_the_787_byte_document_comes_back_byte_for_byte(self):
        path = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "data", "body.json")
        with open(path, "rb") as f:
            doc = f.read()
        with self.server.connect() as sock:
            resp, text = self.send(sock, doc)
            self.assertEqual(resp.status, self.OK, resp)
            self.assertEqual(text, doc)

    def test_integers_beyond_int64_are_400_naming_position_and_limit(self):
        with self.server.connect() as sock:
            for raw in BIG_INTEGERS:
                with self.subTest(raw=raw):
                    resp, _ = self.send(sock, raw)
                    doc = self.assertProblemDoc(resp, 400)
                    self.assertRegex(doc["detail"], r"line 1, column \d+")
                    self.assertIn("9223372036854775807", doc["detail"])

    def test_reals_beyond_double_are_400(self):
        with self.server.connect() as sock:
            resp, _ = self.send(sock, b"[1e400]")
            doc = self.assertProblemDoc(resp, 400)
            self.assertIn("line 1, column", doc["detail"])
            self.assertIn("1.8e308", doc["detail"])

    def test_nesting_within_the_limit_is_accepted(self):
        with self.server.connect() as sock:
            for levels in (1, 64, 128):
                with self.subTest(levels=levels):
                    resp, text = self.send(sock, deep(levels))
                    self.assertEqual(resp.status, self.OK, resp)
                    self.assertEqual(text, deep(levels))
            resp, _ = self.send(sock, deep(129))
            self.assertProblemDoc(resp, 413)

    def test_malformed_documents_are_400_with_line_and_column(self):
        with self.server.connect() as sock:
            for raw in MALFORMED + [b'{"a":1,\n"a":2}', b'{"\\u0000":1}']:
                with self.subTest(raw=raw):
                    resp, _ = self.send(sock, raw)
                    doc = self.assertProblemDoc(resp, 400)
                    self.assertRegex(doc["detail"], r"line \d+, column \d+")
                    self.assertNotIn("JSON_", doc["detail"])  # never a jansson flag name
            self.assertStillOpen(sock)

    def test_a_raw_nul_byte_is_400_where_it_stands(self):
        # jansson stops reading at a NUL byte as if the input ended: "222\0junk" must not be 222
        # (found by fuzz_json).
        with self.server.connect() as sock:
            for raw, where in ((b"222\x00junk", "line 1, column 4"), (b'[1,\n 2]\x00', "line 2, column 4")):
                with self.subTest(raw=raw):
                    resp, _ = self.send(sock, raw)
                    doc = self.assertProblemDoc(resp, 400)
                    self.assertIn(where, doc["detail"])
                    self.assertIn("NUL byte", doc["detail"])
            self.assertStillOpen(sock)


class EchoJsonTest(JsonCases, ServerTestMixin, unittest.TestCase):
    OK = 200

    def send(self, sock, raw):
        resp = request(sock, "POST", "/v1/echo", {"Content-Type": "application/json"}, raw)
        return resp, resp.body if resp.status == 200 else None

    def test_nothing_is_lost_through_python(self):
        with self.server.connect() as sock:
            value = {"s": "a\u0000b", "r": [0.1, 1e-7, 123456.789, -2.5e-300], "i": [0, -1, 2**63 - 1]}
            resp = request(sock, "POST", "/v1/echo", {"Content-Type": "application/json"}, json.dumps(value))
            self.assertEqual(resp.status, 200)
            self.assertEqual(json.loads(resp.body), value)

    def test_head_of_a_json_answer_has_its_length_and_no_body(self):
        with self.server.connect() as sock:
            resp = request(sock, "HEAD", "/v1/hello")
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.headers["Content-Length"], str(len(b'{"message":"Hello, World!"}')))
            self.assertEqual(resp.body, b"")

    def test_pipelined_json_answers_stay_whole_and_in_order(self):
        # The second and later answers are written behind bytes not yet sent: the body-moving path.
        with self.server.connect() as sock:
            reqs = b"".join(
                b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: "
                + str(len(body)).encode() + b"\r\n\r\n" + body
                for body in (b"[%d,0.1]" % i for i in range(50)))
            sock.sendall(reqs)
            from apiary_harness import read_response
            for i in range(50):
                resp = read_response(sock)
                self.assertEqual(resp.body, b"[%d,0.1]" % i)


class KvJsonMixin(JsonCases):
    OK = 201

    def send(self, sock, raw):
        """PUT then GET: the text that comes back under "value" from the GET, and the PUT's answer."""
        path = kv_path(f"json-{next(KEYS)}")
        resp = request(sock, "PUT", path, {"Content-Type": "application/json"}, raw)
        if resp.status not in (200, 201):
            return resp, None
        put_text = self.value_text(resp.body)
        got = request(sock, "GET", path)
        self.assertEqual(got.status, 200, got)
        text = self.value_text(got.body)
        self.assertEqual(put_text, text, "PUT and GET answer the same value")
        return resp, text

    @staticmethod
    def value_text(body):
        """The bytes of "value" in {"key":...,"value":...,"ttl":...} (the key and ttl here are fixed)."""
        doc = json.loads(body)
        head = b'{"key":' + json.dumps(doc["key"], separators=(",", ":")).encode() + b',"value":'
        tail = b',"ttl":null}'
        assert body.startswith(head) and body.endswith(tail), body
        return body[len(head):-len(tail)]


class MemoryKvJsonTest(KvJsonMixin, ServerTestMixin, unittest.TestCase):
    pass


class RedisKvJsonTest(KvJsonMixin, ServerTestMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.redis = RedisServer().start()
        cls.CONFIG = redis_config(cls.redis)
        try:
            super().setUpClass()
        except BaseException:
            cls.redis.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.redis.stop()

    def test_a_foreign_value_is_500_not_spliced(self):
        # Redis values may be written by anyone: GET checks them before splicing them in.
        client = self.redis.client()
        try:
            with self.server.connect() as sock:
                for i, raw in enumerate([b"{not json", b"[1,]", b'"\xff"', b"1 2", b"", b'"\\ud800"', b"[" * 3000]):
                    with self.subTest(raw=raw[:20]):
                        client.call("SET", f"apiary:kv:foreign-{i}", raw)
                        self.assertProblemDoc(request(sock, "GET", kv_path(f"foreign-{i}")), 500)
                # valid JSON written by someone else is answered as it is, whitespace and all
                client.call("SET", "apiary:kv:foreign-ok", b'{ "a" : [1, 2.50] }')
                resp = request(sock, "GET", kv_path("foreign-ok"))
                self.assertEqual(resp.status, 200)
                self.assertEqual(self.value_text(resp.body), b'{ "a" : [1, 2.50] }')
        finally:
            client.close()


if __name__ == "__main__":
    unittest.main()
