"""The key-value API (/v1/kv/{key}) on both backends, and the Redis client under failure.

- KvApiMixin holds every API case (201/200/204/404, every JSON type, keys and values with spaces,
  quotes, newlines and unicode, TTL expiry, 422 bad key / bad ttl, 400 invalid JSON, 413, 415, HEAD, 405,
  pipelining, readiness); MemoryKvTest and RedisKvTest run the same methods on one backend each.
- Backend-specific classes: the memory store's max_entries (507) and sharing across loops; how the
  Redis backend stores values and what it does with keys it did not write.
- RedisFailureTest (own Redis and apiary per test): Redis killed under load (fast 503s, nothing
  crashes, back when Redis is back on the same port), Redis stalled (504 within the deadline), Redis
  down at start (apiary starts, /readyz 503, recovers), clients leaving while commands are pending.

Every redis-server here is started by this file on a free loopback port with a private config
(`--port N --bind 127.0.0.1 --save "" --appendonly no --dir <tmp>`), and only its PID is ever
signalled. Time bounds are tight only where the point is that an answer comes at once."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest
import urllib.parse

import apiary_harness
from apiary_harness import (ApiaryServer, ServerTestMixin, abort, build_request, read_response, request)
from test_80_async import AsyncAssertions, timed_request

JSON = {"Content-Type": "application/json"}
MAX_KEY = 64
MAX_VALUE = 1024
KV_CONFIG = {"kv": {"max_key_bytes": MAX_KEY, "max_value_bytes": MAX_VALUE}}
REDIS_PREFIX = "apiary:kv:"
REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def kv_path(key, query=""):
    return "/v1/kv/" + urllib.parse.quote(key, safe="") + (("?" + query) if query else "")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------------------
# a private redis-server and a tiny RESP client


class RespClient:
    """Just enough RESP2 to set up and inspect Redis from the tests."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def close(self):
        self.sock.close()

    def send(self, *args):
        out = [b"*%d\r\n" % len(args)]
        for a in args:
            a = a if isinstance(a, bytes) else str(a).encode()
            out.append(b"$%d\r\n%s\r\n" % (len(a), a))
        self.sock.sendall(b"".join(out))

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            return RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            while len(self.buf) < n + 2:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("redis closed the connection")
                self.buf += chunk
            data, self.buf = self.buf[:n], self.buf[n + 2:]
            return data
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self.read() for _ in range(n)]
        raise ValueError(f"bad RESP line {line!r}")

    def call(self, *args):
        self.send(*args)
        return self.read()


class RedisServer:
    """One redis-server this test file started: on a free loopback port (or the one given), saving
    nothing, with its files in a private temp dir. Only its own PID is ever signalled."""

    def __init__(self, port=None):
        self.port = port or free_port()
        self.proc = None
        self.tmp = None

    def start(self, timeout=10.0):
        self.tmp = tempfile.TemporaryDirectory(prefix="apiary-redis-")
        argv = [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", self.tmp.name, "--enable-debug-command", "local", "--daemonize", "no",
                "--logfile", os.path.join(self.tmp.name, "redis.log")]
        # Killed by the kernel if the test runner dies first, like the apiary servers of the harness.
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=apiary_harness._die_with_parent)
        deadline = time.monotonic() + timeout
        while True:
            try:
                client = RespClient(self.port, timeout=1.0)
                try:
                    if client.call("PING") == "PONG":
                        return self
                finally:
                    client.close()
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"redis-server on port {self.port} did not start (exit {self.proc.poll()})")
            time.sleep(0.05)

    def kill(self):
        """SIGKILL: the abrupt end of Redis, connections reset."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None
        if self.tmp is not None:
            self.tmp.cleanup()
            self.tmp = None

    def client(self):
        return RespClient(self.port)

    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"


def redis_config(redis, **redis_overrides):
    cfg = {"kv": dict(KV_CONFIG["kv"], backend="redis"), "redis": {"url": redis.url()}}
    cfg["redis"].update(redis_overrides)
    return cfg


# --------------------------------------------------------------------------------------------------
# assertions


class KvAssertions(AsyncAssertions):
    def put(self, sock, key, value, query="", raw=None, headers=JSON):
        body = raw if raw is not None else json.dumps(value).encode()
        return request(sock, "PUT", kv_path(key, query), headers, body)

    def get(self, sock, key):
        return request(sock, "GET", kv_path(key))

    def delete(self, sock, key):
        return request(sock, "DELETE", kv_path(key))

    def assertEntry(self, resp, status, key, value, ttl=None):
        self.assertJson(resp, status, {"key": key, "value": value, "ttl": ttl})

    def assertRoundTrip(self, sock, key, value):
        self.assertEntry(self.put(sock, key, value), 201, key, value)
        self.assertEntry(self.get(sock, key), 200, key, value)

    def assertNotFound(self, resp):
        self.assertProblemDoc(resp, 404)

    def assertNoContent(self, resp):
        self.assertEqual(resp.status, 204, repr(resp))
        self.assertEqual(resp.body, b"")
        self.assertNotIn("Content-Length", resp.headers)

    def assertUnavailable(self, resp):
        doc = self.assertProblemDoc(resp, 503)
        self.assertEqual(resp.headers.get("Retry-After"), "1", repr(resp))
        return doc


# --------------------------------------------------------------------------------------------------
# the API, the same on both backends


class KvApiMixin(KvAssertions):
    """Every test uses keys of its own (prefixed with its name), so the tests of a class share one
    server and one store without seeing each other's data."""

    def key(self, suffix=""):
        return f"{self._testMethodName[5:25]}:{suffix}"

    def test_create_replace_delete(self):
        k = self.key("a")
        with self.server.connect() as sock:
            self.assertNotFound(self.get(sock, k))
            self.assertEntry(self.put(sock, k, {"n": 1}), 201, k, {"n": 1})
            self.assertEntry(self.get(sock, k), 200, k, {"n": 1})
            self.assertEntry(self.put(sock, k, [1, 2]), 200, k, [1, 2])
            self.assertEntry(self.get(sock, k), 200, k, [1, 2])
            self.assertNoContent(self.delete(sock, k))
            self.assertNotFound(self.get(sock, k))
            self.assertNotFound(self.delete(sock, k))
            self.assertEntry(self.put(sock, k, "again"), 201, k, "again")
            self.assertStillOpen(sock)

    def test_every_json_type_round_trips(self):
        values = [{"a": {"b": [1, 2.5, None, True, False, "s"]}}, [], {}, "", "text", 0, -17, 2 ** 53, 3.25,
                  -1.5e-10, True, False, None, [[[]]], {"": ""}, {"z": 1, "a": 2, "m": 3}]
        with self.server.connect() as sock:
            for i, value in enumerate(values):
                with self.subTest(value=value):
                    self.assertRoundTrip(sock, self.key(str(i)), value)
            # Object member order is kept (stored as compact text, in the client's order).
            resp = self.get(sock, self.key(str(len(values) - 1)))
            self.assertIn(b'"value":{"z":1,"a":2,"m":3}', resp.body)

    def test_keys_with_spaces_quotes_and_unicode(self):
        keys = ["a b c", 'say "hi"', "it's", "\u00fcn\u00efc\u00f8d\u00e9 \U0001F41D", "slash/inside", "percent%25",
                "plus+sign", "SET x y", "*3 $3", "back\\slash", "?&=#", "\u2028sep", "~!@$^()[]{}|;:,.<>"]
        with self.server.connect() as sock:
            for i, key in enumerate(keys):
                with self.subTest(key=key):
                    k = self.key(str(i)) + key
                    self.assertRoundTrip(sock, k, {"key was": k})
                    self.assertNoContent(self.delete(sock, k))
                    self.assertNotFound(self.get(sock, k))

    def test_values_with_newlines_crlf_and_quotes(self):
        values = ["line 1\nline 2", "\r\n*3\r\n$3\r\nSET\r\n$1\r\nx\r\n$1\r\ny\r\n", '"quoted" \'single\'',
                  "tab\there", "\u0001\u001f\u007f", "\U0001F41D bee", "nul-free but \\0 text", "a" * 500]
        with self.server.connect() as sock:
            for i, value in enumerate(values):
                with self.subTest(i=i):
                    self.assertRoundTrip(sock, self.key(str(i)), value)
                    self.assertRoundTrip(sock, self.key(f"{i}-list"), [value, {"v": value}])
            # The CRLF value above did not turn into a command: no key "x" appeared.
            self.assertNotFound(self.get(sock, "x"))

    def test_ttl_is_reported_and_expires(self):
        k, forever = self.key("short"), self.key("forever")
        with self.server.connect() as sock:
            self.assertEntry(self.put(sock, k, "soon gone", "ttl=1"), 201, k, "soon gone", 1)
            resp = self.get(sock, k)
            self.assertEqual(resp.status, 200, repr(resp))
            self.assertIn(resp.json()["ttl"], (0, 1))
            self.assertEntry(self.put(sock, forever, 1, "ttl=100"), 201, forever, 1, 100)
            self.assertIn(self.get(sock, forever).json()["ttl"], (99, 100))
            time.sleep(2.1)
            self.assertNotFound(self.get(sock, k))
            self.assertNotFound(self.delete(sock, k))
            # Replacing without a ttl clears the old one.
            self.assertEntry(self.put(sock, forever, 2), 200, forever, 2, None)
            self.assertEntry(self.get(sock, forever), 200, forever, 2, None)
            # And an expired key is created anew.
            self.assertEntry(self.put(sock, k, "back", "ttl=5"), 201, k, "back", 5)

    def test_bad_ttl_is_422_and_stores_nothing(self):
        k = self.key()
        queries = ["ttl=", "ttl=0", "ttl=-1", "ttl=%2D1", "ttl=+5", "ttl=1.5", "ttl=1e3", "ttl=abc", "ttl=%201",
                   "ttl=2147483648", "ttl=99999999999999999999", "ttl"]
        with self.server.connect() as sock:
            for query in queries:
                with self.subTest(query=query):
                    resp, took = timed_request(sock, "PUT", kv_path(k, query), JSON, b"1")
                    self.assertFieldProblem(resp, 422, "ttl")
                    self.assertLess(took, 1.0)
            self.assertNotFound(self.get(sock, k))
            self.assertEntry(self.put(sock, k, 1, "ttl=2147483647"), 201, k, 1, 2147483647)

    def test_invalid_json_is_400_and_stores_nothing(self):
        k = self.key()
        raws = [b"{", b'{"a":}', b"nope", b"[1, 2", b"'single'", b'{"a": 1, "a": 2}', b"1 2", b'{"\\u0000": 1}',
                b"\xff\xfe"]
        with self.server.connect() as sock:
            for raw in raws:
                with self.subTest(raw=raw):
                    doc = self.assertProblemDoc(self.put(sock, k, None, raw=raw), 400)
                    self.assertTrue(doc["detail"])
            # A missing body is a violation of the request's declaration, naming the body.
            doc = self.assertProblemDoc(self.put(sock, k, None, raw=b""), 422)
            self.assertEqual(doc["errors"][0]["in"], "body")
            self.assertNotFound(self.get(sock, k))
            self.assertStillOpen(sock)

    def test_stored_text_is_the_canonical_compact_form(self):
        # What is stored is the compact text json_write gives for the parsed value, whichever way the
        # engine got it: json_compact's one pass (small objects) or the parser (an object wider than
        # json_compact tracks, 70 members), byte for byte the same.
        wide = "{" + ",".join(f'"m{i}" : {i}' for i in range(70)) + "}"
        cases = [
            (b'{ "s" : "\\u00e9\\/x\\u0001\\ud83d\\udc1d" , "r" : [ 1e3 , 1.50 , -0 , 0.1 , -0.0 , 2E-7 ] }',
             '{"s":"\u00e9/x\\u0001\U0001F41D","r":[1000.0,1.5,0,0.1,-0.0,2e-7]}'.encode()),
            (wide.encode(), wide.replace(" ", "").encode()),
        ]
        with self.server.connect() as sock:
            for i, (raw, stored) in enumerate(cases):
                with self.subTest(i=i):
                    k = self.key(str(i))
                    resp = self.put(sock, k, None, raw=raw)
                    self.assertEqual(resp.status, 201, repr(resp))
                    self.assertIn(b'"value":' + stored + b',"ttl":null}', resp.body)
                    self.assertIn(b'"value":' + stored + b',"ttl":null}', self.get(sock, k).body)

    def test_wrong_content_type_is_415(self):
        with self.server.connect() as sock:
            for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/jsonx"}, None):
                with self.subTest(headers=headers):
                    self.assertProblemDoc(self.put(sock, self.key(), 1, headers=headers), 415)
            self.assertNotFound(self.get(sock, self.key()))

    def test_value_size_is_bounded_as_compact_json(self):
        k = self.key()
        # '"' + n * 'a' + '"' is n + 2 bytes of compact JSON.
        at_limit, over = "a" * (MAX_VALUE - 2), "a" * (MAX_VALUE - 1)
        with self.server.connect() as sock:
            self.assertRoundTrip(sock, k + "at", at_limit)
            doc = self.assertProblemDoc(self.put(sock, k + "over", over), 413)
            self.assertIn(str(MAX_VALUE), doc["detail"])
            self.assertNotFound(self.get(sock, k + "over"))
            # Whitespace is not stored, so it does not count.
            spaced = b"[" + b" " * 4000 + b"1" + b" " * 4000 + b"]"
            self.assertEntry(self.put(sock, k + "sp", None, raw=spaced), 201, k + "sp", [1])
            self.assertStillOpen(sock)

    def test_bad_keys_are_422(self):
        long_ok = "k" * MAX_KEY
        cases = [
            "k" * (MAX_KEY + 1),                       # one byte too long
            "\u00e9" * (MAX_KEY // 2) + "k",           # too long in bytes, not in characters
            "tab\there", "new\nline", "cr\rx", "del\x7f", "esc\x1b", "c1\u0080", "c1\u009f",
        ]
        raw_paths = ["/v1/kv/%FF", "/v1/kv/%C0%80", "/v1/kv/%ED%A0%80", "/v1/kv/%F4%90%80%80", "/v1/kv/a%E2%82",
                     "/v1/kv/%80abc"]
        with self.server.connect() as sock:
            self.assertRoundTrip(sock, long_ok, 1)
            self.assertRoundTrip(sock, "\u00e9" * (MAX_KEY // 2), 1)
            for key in cases:
                for method in ("GET", "PUT", "DELETE"):
                    with self.subTest(key=key[:20], method=method):
                        resp, took = timed_request(sock, method, kv_path(key), JSON, b"1" if method == "PUT" else None)
                        self.assertFieldProblem(resp, 422, "key")
                        self.assertLess(took, 1.0)
            for path in raw_paths:
                with self.subTest(path=path):
                    self.assertFieldProblem(request(sock, "GET", path), 422, "key")
            # The engine itself refuses a NUL, and an empty segment matches no route.
            self.assertEqual(request(sock, "GET", "/v1/kv/a%00b").status, 400)
            self.assertEqual(request(sock, "GET", "/v1/kv/").status, 404)
            self.assertStillOpen(sock)

    def test_head_and_other_methods(self):
        k = self.key()
        with self.server.connect() as sock:
            self.assertRoundTrip(sock, k, {"x": 1})
            resp = request(sock, "HEAD", kv_path(k))
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.body, b"")
            resp = request(sock, "POST", kv_path(k), JSON, b"1")
            self.assertEqual(resp.status, 405)
            self.assertEqual(resp.headers.get("Allow"), "GET, HEAD, PUT, DELETE")
            self.assertStillOpen(sock)

    def test_pipelined_requests_are_answered_in_order(self):
        k = self.key()
        reqs = [build_request("PUT", kv_path(k + str(i)), JSON, json.dumps({"i": i})) for i in range(40)]
        reqs += [build_request("GET", kv_path(k + str(i))) for i in range(40)]
        reqs += [build_request("DELETE", kv_path(k + str(i))) for i in range(0, 40, 2)]
        reqs += [build_request("GET", kv_path(k + str(i))) for i in range(4)]
        with self.server.connect() as sock:
            sock.sendall(b"".join(reqs))
            for i in range(40):
                self.assertEntry(read_response(sock), 201, k + str(i), {"i": i})
            for i in range(40):
                self.assertEntry(read_response(sock), 200, k + str(i), {"i": i})
            for i in range(0, 40, 2):
                self.assertNoContent(read_response(sock))
            self.assertNotFound(read_response(sock))
            self.assertEntry(read_response(sock), 200, k + "1", {"i": 1})
            self.assertNotFound(read_response(sock))
            self.assertEntry(read_response(sock), 200, k + "3", {"i": 3})

    def test_many_clients_at_once(self):
        k = self.key()
        errors = []

        def client(n):
            try:
                with self.server.connect(timeout=10.0) as sock:
                    for i in range(20):
                        key = f"{k}{n}-{i}"
                        self.assertEntry(self.put(sock, key, [n, i]), 201, key, [n, i])
                        self.assertEntry(self.get(sock, key), 200, key, [n, i])
            except Exception as e:  # noqa: BLE001 -- reported below, on the test's thread
                errors.append(e)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])

    def test_ready(self):
        with self.server.connect() as sock:
            self.assertJson(request(sock, "GET", "/readyz"), 200, {"status": "ready"})


class MemoryKvTest(KvApiMixin, ServerTestMixin, unittest.TestCase):
    CONFIG = KV_CONFIG
    THREADS = 2

    def test_store_is_shared_by_every_loop(self):
        k = self.key()
        with self.server.connect() as sock:
            self.assertRoundTrip(sock, k, "seen everywhere")
        # Sixteen fresh connections land on both loops (SO_REUSEPORT hashing): each sees the value.
        for _ in range(16):
            with self.server.connect() as sock:
                self.assertEntry(self.get(sock, k), 200, k, "seen everywhere")


class RedisKvTest(KvApiMixin, ServerTestMixin, unittest.TestCase):
    THREADS = 2
    LINKS = 2

    @classmethod
    def setUpClass(cls):
        cls.redis = RedisServer().start()
        cls.CONFIG = redis_config(cls.redis, connections_per_loop=cls.LINKS)
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

    def test_values_are_compact_json_under_a_prefix(self):
        k = self.key("stored")
        with self.server.connect() as sock:
            self.put(sock, k, {"a": [1, 2], "b": "x y"}, "ttl=50", raw=b'{ "a" : [ 1 , 2 ] , "b" : "x y" }')
        r = self.redis.client()
        try:
            self.assertEqual(r.call("GET", REDIS_PREFIX + k), b'{"a":[1,2],"b":"x y"}')
            self.assertIn(r.call("TTL", REDIS_PREFIX + k), (49, 50))
            self.assertIsNone(r.call("GET", k), "no key without the prefix")
        finally:
            r.close()

    def test_keys_not_written_by_the_api(self):
        r = self.redis.client()
        try:
            r.call("SET", REDIS_PREFIX + self.key("text"), "not json")
            r.call("RPUSH", REDIS_PREFIX + self.key("list"), "x")
        finally:
            r.close()
        with self.server.connect() as sock:
            self.assertProblemDoc(self.get(sock, self.key("text")), 500)
            self.assertProblemDoc(self.get(sock, self.key("list")), 500)
            self.assertProblemDoc(self.put(sock, self.key("list"), 1), 500)
            # Replacing a foreign string works, and any key can be deleted.
            self.assertEntry(self.put(sock, self.key("text"), 1), 200, self.key("text"), 1)
            self.assertNoContent(self.delete(sock, self.key("list")))
            self.assertStillOpen(sock)

    def test_links_per_loop(self):
        # Traffic on many connections reaches both loops; each opens connections_per_loop links, and
        # commands of all requests share them.
        for _ in range(16):
            with self.server.connect() as sock:
                self.assertNotFound(self.get(sock, self.key()))
        r = self.redis.client()
        try:
            clients = r.call("CLIENT", "LIST").decode().strip().splitlines()
        finally:
            r.close()
        apiary_links = len(clients) - 1  # minus this connection
        self.assertGreaterEqual(apiary_links, self.LINKS)
        self.assertLessEqual(apiary_links, self.LINKS * self.THREADS)


class MemoryFullTest(KvAssertions, ServerTestMixin, unittest.TestCase):
    """The memory store at kv.max_entries: new keys get 507, replacing still works, and deleting or
    expiring makes room."""

    CONFIG = {"kv": {"max_entries": 3}}
    THREADS = 2

    def test_full_store_is_507(self):
        with self.server.connect() as sock:
            for k in ("a", "b"):
                self.assertEntry(self.put(sock, k, 1), 201, k, 1)
            self.assertEntry(self.put(sock, "c", 1, "ttl=1"), 201, "c", 1, 1)
            resp = self.put(sock, "d", 1)
            doc = self.assertProblemDoc(resp, 507)
            self.assertIn("full", doc["detail"])
            self.assertNotFound(self.get(sock, "d"))
            self.assertEntry(self.put(sock, "a", 2), 200, "a", 2)
            self.assertNoContent(self.delete(sock, "b"))
            self.assertEntry(self.put(sock, "d", 1), 201, "d", 1)
            self.assertProblemDoc(self.put(sock, "e", 1), 507)
            time.sleep(2.1)  # "c" expires: its place is free
            self.assertEntry(self.put(sock, "e", 1), 201, "e", 1)
            self.assertStillOpen(sock)


# --------------------------------------------------------------------------------------------------
# Redis failing


class Load:
    """`clients` keep-alive connections doing PUT then GET of their own key as fast as answered, each
    response's status and duration recorded, until stop()."""

    def __init__(self, server, clients=4):
        self.server = server
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.results = []  # (monotonic time, status or exception name, seconds)
        self.threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)]

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def _run(self, n):
        sock = None
        i = 0
        while not self.stopping.is_set():
            started = time.monotonic()
            try:
                if sock is None:
                    sock = self.server.connect(timeout=10.0)
                method = "PUT" if i % 2 == 0 else "GET"
                body = json.dumps({"n": n, "i": i}).encode() if method == "PUT" else None
                resp = request(sock, method, kv_path(f"load-{n}"), JSON if body else None, body, timeout=10.0)
                outcome = resp.status
                if resp.status == 503 and resp.headers.get("Retry-After") != "1":
                    outcome = "503 without Retry-After"
            except Exception as e:  # noqa: BLE001 -- recorded, the test looks at every outcome
                outcome = type(e).__name__
                if sock is not None:
                    sock.close()
                sock = None
            with self.lock:
                self.results.append((time.monotonic(), outcome, time.monotonic() - started))
            i += 1
        if sock is not None:
            sock.close()

    def stop(self):
        self.stopping.set()
        for t in self.threads:
            t.join(30)

    def between(self, start, end):
        with self.lock:
            return [(status, took) for at, status, took in self.results if start <= at < end]


class RedisFailureTest(KvAssertions, unittest.TestCase):
    """Each test starts its own Redis and apiary, and breaks one of them."""

    def setUp(self):
        self.redis = RedisServer()
        # Through self: a test may replace self.redis (a restart on the same port).
        self.addCleanup(lambda: self.redis.stop())

    def start_apiary(self, threads=2, **redis_overrides):
        server = ApiaryServer(redis_config(self.redis, **redis_overrides), threads=threads)
        server.start()
        self.addCleanup(server.stop)
        return server

    def wait_ready(self, server, within):
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            with server.connect() as sock:
                if request(sock, "GET", "/readyz").status == 200:
                    return
            time.sleep(0.1)
        self.fail(f"/readyz not 200 within {within} s; log:\n{server.log_text()}")

    def assertExitsZero(self, server, within):
        started = time.monotonic()
        server.sigterm()
        rc = server.wait(within)
        self.assertEqual(rc, 0, f"exit code {rc} after SIGTERM; log:\n{server.log_text()}")
        self.assertLess(time.monotonic() - started, within)
        server.assert_no_sanitizer_report()

    def test_redis_killed_mid_load_then_back(self):
        self.redis.start()
        server = self.start_apiary(command_timeout_ms=2000)
        self.wait_ready(server, 10)
        load = Load(server).start()
        try:
            time.sleep(0.5)
            killed = time.monotonic()
            self.redis.kill()
            time.sleep(1.5)
            down_until = time.monotonic()
            self.redis.stop()  # already dead: only its temp dir goes
            self.redis = RedisServer(self.redis.port).start()  # same port
            restarted = time.monotonic()
            time.sleep(4.0)
        finally:
            load.stop()
        before = load.between(0, killed)
        during = load.between(killed + 0.2, down_until)
        after = load.between(restarted + 3.0, float("inf"))
        self.assertTrue(before and during and after, f"no traffic in a phase: {len(before)} {len(during)} {len(after)}")
        self.assertEqual({s for s, _ in before} - {200, 201}, set(), "errors before the kill")
        # While Redis is gone every answer is a quick 503 with Retry-After: no hang, no reset.
        self.assertEqual({s for s, _ in during}, {503}, f"outcomes while down: {set(s for s, _ in during)}")
        self.assertLess(max(t for _, t in during), 0.5, "a request waited for a dead Redis")
        # Right around the kill only 200/201 (answered) or 503 (failed fast, connection_lost) appear.
        around = load.between(killed, killed + 0.2)
        self.assertEqual({s for s, _ in around} - {200, 201, 503}, set())
        # The links reconnect by themselves (backoff capped at 2 s) and serve again.
        self.assertEqual({s for s, _ in after} - {200, 201}, set(), "outcomes after the restart")
        self.wait_ready(server, 5)
        self.assertExitsZero(server, 5)

    def test_redis_stalled_gives_504_within_the_deadline(self):
        self.redis.start()
        server = self.start_apiary(threads=1, command_timeout_ms=300)
        with server.connect() as sock:
            self.assertEntry(self.put(sock, "before", "v"), 201, "before", "v")
            staller = self.redis.client()
            try:
                staller.send("DEBUG", "SLEEP", "2")  # Redis answers nobody for 2 s
                time.sleep(0.1)
                for method, key in (("GET", "before"), ("PUT", "during"), ("DELETE", "before")):
                    with self.subTest(method=method):
                        resp, took = timed_request(sock, method, kv_path(key), JSON if method == "PUT" else None,
                                                   b"1" if method == "PUT" else None)
                        doc = self.assertProblemDoc(resp, 504)
                        self.assertIn("300 ms", doc["detail"])
                        # The command timeout never ends early (redis.c re-checks the monotonic clock, and
                        # redis_test asserts it to the microsecond); this bound is only a sanity check.
                        self.assertGreaterEqual(took, 0.25)
                        self.assertLess(took, 1.0)
                self.assertEqual(staller.read(), "OK")
            finally:
                staller.close()
            # Redis is back: the late replies were dropped, and each new command gets its own reply.
            # (The PUT and DELETE sent during the stall did run once Redis woke up.)
            time.sleep(0.2)
            self.assertNotFound(self.get(sock, "before"))
            self.assertEntry(self.get(sock, "during"), 200, "during", 1)
            self.assertEntry(self.put(sock, "after", [1]), 201, "after", [1])
            self.assertEntry(self.get(sock, "after"), 200, "after", [1])
        self.assertExitsZero(server, 5)

    def test_redis_down_at_start(self):
        server = self.start_apiary()  # nothing listens on the Redis port yet
        with server.connect() as sock:
            resp = request(sock, "GET", "/readyz")
            doc = self.assertUnavailable(resp)
            self.assertEqual(doc["detail"], "the key-value store is unavailable")
            self.assertNotIn(str(self.redis.port), resp.body.decode(), "clients are not told where Redis lives")
            logged = server.wait_for_log(re.escape(f"cannot connect to 127.0.0.1:{self.redis.port}"), 5)
            self.assertIsNotNone(logged, "the operator's log names the address")
            resp, took = timed_request(sock, "PUT", kv_path("k"), JSON, b"1")
            self.assertUnavailable(resp)
            self.assertLess(took, 0.5)
            self.assertUnavailable(self.get(sock, "k"))
            self.assertEqual(request(sock, "GET", "/healthz").status, 200, "alive, just not ready")
        self.redis.start()
        self.wait_ready(server, 10)
        deadline = time.monotonic() + 10
        while True:
            with server.connect() as sock:
                resp = self.put(sock, "k", "v")
                if resp.status == 201:
                    self.assertEntry(self.get(sock, "k"), 200, "k", "v")
                    break
            self.assertLess(time.monotonic(), deadline, f"never recovered: {resp!r}")
            time.sleep(0.1)
        self.assertExitsZero(server, 5)

    def test_clients_leaving_while_commands_are_pending(self):
        self.redis.start()
        server = self.start_apiary(threads=2, command_timeout_ms=5000)
        self.wait_ready(server, 10)
        with server.connect() as sock:
            self.assertEntry(self.put(sock, "kept", "v"), 201, "kept", "v")
        staller = self.redis.client()
        try:
            staller.send("DEBUG", "SLEEP", "1")
            time.sleep(0.1)
            socks = [server.connect() for _ in range(20)]
            for i, s in enumerate(socks):
                s.sendall(build_request("GET", kv_path("kept")) if i % 2 else
                          build_request("PUT", kv_path(f"left-{i}"), JSON, b'"x"'))
            time.sleep(0.2)
            for i, s in enumerate(socks):
                abort(s) if i % 3 == 0 else s.close()
            self.assertEqual(staller.read(), "OK")
        finally:
            staller.close()
        time.sleep(0.3)
        # Every abandoned reply was dropped; replies still match their commands.
        with server.connect() as sock:
            for _ in range(3):
                self.assertEntry(self.get(sock, "kept"), 200, "kept", "v")
                self.assertEntry(self.put(sock, "fresh", 2), 201 if _ == 0 else 200, "fresh", 2)
            self.assertJson(request(sock, "GET", "/readyz"), 200, {"status": "ready"})
        self.assertExitsZero(server, 5)
        log = server.log_text()
        self.assertNotRegex(log, r"(?m)^\S+Z (warn|error)\b", "warnings or errors in the log")


if __name__ == "__main__":
    unittest.main()


# --------------------------------------------------------------------------------------------------
# a Redis that sends replies nobody asked for


class FakeRedis:
    """Speaks just enough RESP for the kv GET (MULTI, GET, TTL, EXEC: a key that does not exist) and
    PING, one thread per connection, loopback only. `extra(n)` says what the n-th connection (from 0)
    sends beyond that: "first" a +OK before anything was asked, "after" a +OK 100 ms after each
    EXEC's reply, when nothing is pending; None nothing. stop() ends every thread."""

    def __init__(self, extra):
        self.extra = extra
        self.accepted = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self):
        self._stop.set()
        for t in list(self._threads):
            t.join(5)
        self._listener.close()

    def _accept(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            n, self.accepted = self.accepted, self.accepted + 1
            t = threading.Thread(target=self._serve, args=(conn, self.extra(n)), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn, extra):
        conn.settimeout(0.1)
        buf = b""
        with conn:
            if extra == "first":
                conn.sendall(b"+OK\r\n")
            while not self._stop.is_set():
                cmd, buf = self._command(buf)
                if cmd is None:
                    try:
                        data = conn.recv(65536)
                    except socket.timeout:
                        continue
                    except OSError:
                        return
                    if not data:
                        return
                    buf += data
                    continue
                name = cmd[0].upper()
                reply = {b"MULTI": b"+OK\r\n", b"GET": b"+QUEUED\r\n", b"TTL": b"+QUEUED\r\n",
                         b"EXEC": b"*2\r\n$-1\r\n:-2\r\n", b"PING": b"+PONG\r\n"}.get(name, b"+OK\r\n")
                try:
                    conn.sendall(reply)
                    if name == b"EXEC" and extra == "after":
                        time.sleep(0.1)
                        conn.sendall(b"+OK\r\n")
                except OSError:
                    return

    @staticmethod
    def _command(buf):
        """One RESP array of bulk strings from the front of buf: (args, rest), or (None, buf)."""
        if not buf.startswith(b"*") or b"\r\n" not in buf:
            return None, buf
        head, rest = buf.split(b"\r\n", 1)
        args = []
        for _ in range(int(head[1:])):
            if b"\r\n" not in rest:
                return None, buf
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line[1:])
            if len(rest) < size + 2:
                return None, buf
            args.append(rest[:size])
            rest = rest[size + 2:]
        return args, rest


class RedisUnsolicitedReplyTest(KvAssertions, unittest.TestCase):
    """Issue 18: hiredis 0.14 asserts (the process aborts) when a reply arrives with no command
    waiting for it. The link is dropped instead, the request gets its error, and the link reconnects."""

    def start(self, extra):
        fake = FakeRedis(extra)
        self.addCleanup(fake.stop)
        server = ApiaryServer(redis_config(fake), threads=1)
        server.start()
        self.addCleanup(server.stop)
        return fake, server

    def assertServesAgain(self, server, fake, connections):
        deadline = time.monotonic() + 10
        while True:
            with server.connect() as sock:
                resp = self.get(sock, "k")
            if resp.status == 404 and fake.accepted >= connections:
                return
            self.assertLess(time.monotonic(), deadline, f"no 404 after reconnecting: {resp!r}")
            time.sleep(0.1)

    def assertDroppedAndAlive(self, server):
        self.assertTrue(server.alive(), f"apiary died; log:\n{server.log_text()}")
        with server.connect() as sock:
            self.assertEqual(request(sock, "GET", "/healthz").status, 200)
        # Logged by redis_on_disconnect, which hiredis calls after the pending commands' callbacks
        # (the request's error answer among them): the line may come after the answer.
        self.assertIsNotNone(server.wait_for_log("a reply arrived that no command was waiting for", 5),
                             server.log_text())

    def test_a_reply_before_any_command(self):
        # The +OK is taken for MULTI's reply, so EXEC's arrives with nothing waiting.
        fake, server = self.start(lambda n: "first" if n == 0 else None)
        with server.connect() as sock:
            self.assertUnavailable(self.get(sock, "k"))
        time.sleep(0.3)
        self.assertDroppedAndAlive(server)
        self.assertServesAgain(server, fake, 2)
        server.assert_no_sanitizer_report()

    def test_an_extra_reply_on_an_idle_link(self):
        fake, server = self.start(lambda n: "after" if n == 0 else None)
        with server.connect() as sock:
            self.assertNotFound(self.get(sock, "k"))
        time.sleep(0.5)
        self.assertDroppedAndAlive(server)
        self.assertServesAgain(server, fake, 2)
        server.assert_no_sanitizer_report()
