"""POST /v1/fanout and the HTTP client behind it, against real upstreams on loopback: a second apiary
(its /v1/hello and /v1/sleep) and misbehaving_upstream.py (resets, malformed answers, chunked, slow,
hanging, closing idle connections; it counts the connections it accepts). Covers every result kind
(success, connect_failed, timeout, connection_reset, malformed_response, response_too_large),
bodies that are not JSON, keep-alive reuse (1,000 calls, at most max_connections upstream
connections), a dead pooled connection retried on a fresh one, a client that leaves mid-call (the
upstream sees its connections closed, the server stays healthy), every validation rule, and the SSRF
stance: only configured upstream names, and a path is only ever a path on that upstream.

Time bounds are tight only from below (nothing answers early); from above they are generous."""

import json
import socket
import time
import unittest

from apiary_harness import HOST, ApiaryServer, abort, build_request, json_request_body, read_response, request
from misbehaving_upstream import MisbehavingUpstream
from test_80_async import AsyncAssertions

JSON = {"Content-Type": "application/json"}
MAX_REQUESTS = 8


def free_port():
    """A loopback port with nothing listening on it (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def fanout_body(*calls, timeout_ms=None):
    body = {"requests": [{"upstream": u, "path": p} for u, p in calls]}
    if timeout_ms is not None:
        body["timeout_ms"] = timeout_ms
    return body


class FanoutFixture(AsyncAssertions):
    """One main apiary per class, with its upstreams: a second apiary ("users"), misbehaving upstreams
    under several names and limits, and a port nobody listens on ("down")."""

    THREADS = 1

    @classmethod
    def upstream_config(cls, mis, apiary_port):
        mis_url = f"http://{HOST}:{mis.port}"
        return {
            "users": {"url": f"http://{HOST}:{apiary_port}", "timeout_ms": 5000},
            "mis": {"url": mis_url, "max_connections": 8, "max_idle": 8, "timeout_ms": 5000},
            "slow": {"url": mis_url, "timeout_ms": 200},
            "small": {"url": mis_url, "max_response_bytes": 100},
            "big": {"url": mis_url, "timeout_ms": 10000},
            "down": {"url": f"http://{HOST}:{free_port()}", "connect_timeout_ms": 1000},
            "local": {"url": f"http://localhost:{mis.port}"},
        }

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.mis = MisbehavingUpstream().start()
        cls.upstream_apiary = ApiaryServer({}, threads=1)
        try:
            cls.upstream_apiary.start()
            # slow_callback_ms 1000, not the default 100: test_zzz_server_still_alive fails on any
            # warning in the log, and on a loaded 2-CPU CI machine a fanout callback was once
            # descheduled long enough to be logged as a 100 ms block (twice in ~30 runs). A loop really
            # held by a body (issue 18's hostile JSON held it 10 s) still shows.
            config = {"upstreams": cls.upstream_config(cls.mis, cls.upstream_apiary.port),
                      "fanout": {"max_requests": MAX_REQUESTS}, "slow_callback_ms": 1000}
            cls.server = ApiaryServer(config, threads=cls.THREADS)
            cls.server.start()
        except BaseException:
            cls.upstream_apiary.stop()
            cls.mis.stop()
            raise

    @classmethod
    def tearDownClass(cls):
        server = cls.server
        was_alive = server.alive()
        rc = server.stop()
        cls.upstream_apiary.stop()
        cls.mis.stop()
        super().tearDownClass()
        if not was_alive:
            raise AssertionError(f"server died during the class (exit {rc}); log:\n{server.log_text()}")
        if rc != 0:
            raise AssertionError(f"server exited {rc} on SIGTERM; log:\n{server.log_text()}")
        server.assert_no_sanitizer_report()
        cls.upstream_apiary.assert_no_sanitizer_report()

    def fanout(self, sock, body, headers=JSON, timeout=10.0):
        raw = body if isinstance(body, bytes) else json_request_body(body)
        started = time.monotonic()
        resp = request(sock, "POST", "/v1/fanout", headers, raw, timeout=timeout)
        return resp, time.monotonic() - started

    def results(self, resp):
        """200 with exactly {"results": [...]}; returns the list."""
        self.assertEqual(resp.status, 200, repr(resp))
        self.assertEqual(resp.headers.get("Content-Type"), "application/json")
        self.assertCommonHeaders(resp)
        doc = resp.json()
        self.assertEqual(set(doc), {"results"}, repr(doc))
        return doc["results"]

    def call(self, *calls, timeout_ms=None):
        with self.server.connect() as sock:
            resp, took = self.fanout(sock, fanout_body(*calls, timeout_ms=timeout_ms))
            return self.results(resp), took

    def assertSuccess(self, result, upstream, status, body):
        self.assertEqual(set(result), {"upstream", "ok", "status", "body", "ms"}, repr(result))
        self.assertEqual(result["upstream"], upstream)
        self.assertIs(result["ok"], True)
        self.assertEqual(result["status"], status)
        self.assertEqual(result["body"], body)
        self.assertIs(type(result["ms"]), int)
        self.assertGreaterEqual(result["ms"], 0)

    def assertFailure(self, result, upstream, error, min_ms=0, max_ms=10000):
        self.assertEqual(set(result), {"upstream", "ok", "error", "ms"}, repr(result))
        self.assertEqual(result["upstream"], upstream)
        self.assertIs(result["ok"], False)
        self.assertEqual(result["error"], error, repr(result))
        self.assertIs(type(result["ms"]), int)
        self.assertGreaterEqual(result["ms"], min_ms, repr(result))
        self.assertLess(result["ms"], max_ms, repr(result))

    def test_zzz_server_still_alive(self):
        self.assertServing(self.server)
        self.assertNoBadLogLines(self.server)


# --------------------------------------------------------------------------------------------------
# results


class FanoutResultsTest(FanoutFixture, unittest.TestCase):
    def test_two_upstreams_in_request_order(self):
        results, _ = self.call(("users", "/v1/hello"), ("mis", "/json"), ("users", "/v1/sleep?ms=30"))
        self.assertEqual(len(results), 3)
        self.assertSuccess(results[0], "users", 200, {"message": "Hello, World!"})
        self.assertSuccess(results[1], "mis", 200, {"ok": True})
        self.assertSuccess(results[2], "users", 200, {"slept_ms": 30})
        self.assertGreaterEqual(results[2]["ms"], 30)

    def test_calls_run_concurrently(self):
        calls = [("users", "/v1/sleep?ms=300")] * 4
        results, took = self.call(*calls)
        for r in results:
            self.assertSuccess(r, "users", 200, {"slept_ms": 300})
        self.assertGreaterEqual(took, 0.3)
        self.assertLess(took, 1.1, "four 300 ms calls one after another would take 1.2 s")

    def test_upstream_status_is_passed_through(self):
        results, _ = self.call(("users", "/nope"), ("mis", "/status?code=503"))
        self.assertEqual(results[0]["status"], 404)
        self.assertIs(results[0]["ok"], True, "a 404 is an answer, not a failed call")
        self.assertEqual(results[0]["body"]["status"], 404)
        self.assertSuccess(results[1], "mis", 503, {"status": "as asked"})

    def test_body_that_is_not_json_comes_back_as_a_string(self):
        results, _ = self.call(("mis", "/text"), ("mis", "/binary"), ("mis", "/big?bytes=0"))
        self.assertSuccess(results[0], "mis", 200, "plain text, not JSON")
        self.assertSuccess(results[1], "mis", 200, "ab\ufffd\ufffdcd")
        self.assertSuccess(results[2], "mis", 200, "")

    def test_chunked_and_close_delimited_responses(self):
        results, _ = self.call(("mis", "/chunked"), ("mis", "/close"))
        self.assertSuccess(results[0], "mis", 200, {"chunked": True, "parts": 3})
        self.assertSuccess(results[1], "mis", 200, {"closed": True})

    def test_upstream_down_is_connect_failed(self):
        results, took = self.call(("down", "/x"), ("users", "/v1/hello"))
        self.assertFailure(results[0], "down", "connect_failed")
        self.assertSuccess(results[1], "users", 200, {"message": "Hello, World!"})
        self.assertLess(took, 1.0, "a refused connection fails at once")

    def test_slow_upstream_times_out(self):
        # "slow" has timeout_ms 200 in the config; the fanout's own timeout_ms bounds every call too.
        # 1000 ms apart from 200, so a loaded machine cannot blur which timeout ended which call.
        results, took = self.call(("slow", "/slow?ms=1500"), ("users", "/v1/sleep?ms=2500"),
                                  ("users", "/v1/hello"), timeout_ms=1000)
        # "ms" is measured on the loop's coarse clock (a few ms a tick): a 200 ms timeout can read 199.
        self.assertFailure(results[0], "slow", "timeout", 190, 900)
        self.assertFailure(results[1], "users", "timeout", 990, 2000)
        self.assertSuccess(results[2], "users", 200, {"message": "Hello, World!"})
        self.assertGreaterEqual(took, 1.0)
        self.assertLess(took, 2.0)

    def test_reset_mid_body_is_connection_reset(self):
        results, _ = self.call(("mis", "/reset"), ("mis", "/json"))
        self.assertFailure(results[0], "mis", "connection_reset")
        self.assertSuccess(results[1], "mis", 200, {"ok": True})

    def test_malformed_response(self):
        results, _ = self.call(("mis", "/malformed"))
        self.assertFailure(results[0], "mis", "malformed_response")

    def test_response_too_large(self):
        results, _ = self.call(("small", "/big?bytes=101"), ("small", "/big?bytes=100"))
        self.assertFailure(results[0], "small", "response_too_large")
        self.assertSuccess(results[1], "small", 200, "x" * 100)

    def test_json_past_the_limits_fails_the_call_and_the_loop_serves_on(self):
        # Issue 18: a body was parsed into a tree with no bound; 16 x 1 MiB of [{},{},...] took the
        # server to 1.5 GB and held the loop 10 s. Now it is validated under limits.json_max_depth
        # (128) / json_max_values (20000) and past them the call fails; JSON within them is copied
        # into the answer as it is.
        with self.server.connect() as probe:
            results, took = self.call(("big", "/hostile?kind=objects&bytes=1048576"),
                                      ("big", "/hostile?kind=deep&bytes=1000"),
                                      ("big", "/hostile?kind=string&bytes=1048576"),
                                      ("big", "/hostile?kind=objects&bytes=59000"),
                                      ("mis", "/json"))
            self.assertEqual(request(probe, "GET", "/healthz").status, 200)
        self.assertEqual(set(results[0]), {"upstream", "ok", "status", "error", "detail", "ms"}, repr(results[0])[:300])
        self.assertEqual((results[0]["ok"], results[0]["status"], results[0]["error"]),
                         (False, 200, "response_too_many_values"))
        self.assertIn("more than 20000 values", results[0]["detail"])
        self.assertEqual((results[1]["ok"], results[1]["error"]), (False, "response_too_deep"))
        self.assertIn("deeper than 128 levels", results[1]["detail"])
        self.assertSuccess(results[2], "big", 200, "a" * (1048576 - 2))
        self.assertSuccess(results[3], "big", 200, [{}] * 19666)  # 19667 values: within the limit
        self.assertSuccess(results[4], "mis", 200, {"ok": True})
        self.assertLess(took, 5.0)
        with self.server.connect() as sock:
            resp = request(sock, "GET", "/healthz")
            self.assertEqual(resp.status, 200)

    def test_text_bodies_are_escaped_and_binary_ones_refused(self):
        results, _ = self.call(("big", "/hostile?kind=escapes&bytes=400"), ("big", "/hostile?kind=binary&bytes=1000"),
                               ("big", "/hostile?kind=text&bytes=1048576"))
        expected = "".join(map(chr, range(128))) + "\u00e9\u20ac\ufffd" + "x" * (400 - 128 - 6)
        self.assertSuccess(results[0], "big", 200, expected)
        self.assertEqual((results[1]["ok"], results[1]["status"], results[1]["error"]),
                         (False, 200, "response_not_text"), repr(results[1]))
        self.assertEqual(len(results[2]["body"]), 1048576)

    def test_host_name_upstream_resolves(self):
        results, _ = self.call(("local", "/json"))
        self.assertSuccess(results[0], "local", 200, {"ok": True})

    def test_deeply_nested_upstream_body(self):
        # The fanout handler is a coroutine on a small stack: an upstream's body is validated by an
        # iterative scan and spliced, never parsed by jansson (which recurses per level), so a body
        # at the depth limit comes back whole and a deeper one is refused without recursing.
        depth = 128  # limits.json_max_depth's default
        results, _ = self.call(("mis", f"/deep?depth={depth}"))
        self.assertSuccess(results[0], "mis", 200, json.loads("[" * depth + "]" * depth))
        results, _ = self.call(("mis", "/deep?depth=900"))
        self.assertEqual(results[0]["error"], "response_too_deep", repr(results[0]))

    def test_every_kind_at_once_keeps_request_order(self):
        calls = [("mis", "/malformed"), ("down", "/"), ("users", "/v1/hello"), ("mis", "/reset"),
                 ("small", "/big?bytes=500"), ("mis", "/text"), ("slow", "/slow?ms=1000"), ("mis", "/chunked")]
        results, _ = self.call(*calls)
        self.assertEqual([r["upstream"] for r in results], [u for u, _ in calls])
        self.assertEqual([r.get("error") for r in results],
                         ["malformed_response", "connect_failed", None, "connection_reset", "response_too_large",
                          None, "timeout", None])

    def test_most_requests_allowed(self):
        results, _ = self.call(*[("users", "/v1/hello")] * MAX_REQUESTS)
        self.assertEqual(len(results), MAX_REQUESTS)
        for r in results:
            self.assertSuccess(r, "users", 200, {"message": "Hello, World!"})


# --------------------------------------------------------------------------------------------------
# SSRF: names from the config only, and a path stays a path


class FanoutSsrfTest(FanoutFixture, unittest.TestCase):
    def test_unknown_upstream_names_are_422(self):
        for name in ("evil", "USERS", "users ", "", "127.0.0.1", f"{HOST}:{self.mis.port}",
                     f"http://{HOST}:{self.mis.port}"):
            with self.subTest(name=name), self.server.connect() as sock:
                resp, _ = self.fanout(sock, fanout_body((name, "/json")))
                self.assertFieldProblem(resp, 422, "requests[0].upstream")

    def test_a_path_cannot_change_the_host(self):
        before = len(self.mis.targets)
        results, _ = self.call(("mis", "//evil.example/x"), ("mis", "/@evil.example/x"))
        # Sent as a plain request target to the configured upstream, with its Host.
        host = f"{HOST}:{self.mis.port}"
        self.assertSuccess(results[0], "mis", 404, {"target": "//evil.example/x", "host": host})
        self.assertSuccess(results[1], "mis", 404, {"target": "/@evil.example/x", "host": host})
        self.assertEqual(sorted(self.mis.targets[before:]), ["//evil.example/x", "/@evil.example/x"])

    def test_absolute_urls_and_header_injection_are_refused(self):
        for path in ("http://evil.example/x", "https://evil.example/", "evil.example/x", "/x\r\nHost: evil.example",
                     "/x HTTP/1.1\r\nX: y", "/x\nHost: evil"):
            with self.subTest(path=path), self.server.connect() as sock:
                resp, _ = self.fanout(sock, fanout_body(("mis", path)))
                self.assertFieldProblem(resp, 422, "requests[0].path")


# --------------------------------------------------------------------------------------------------
# validation


class FanoutValidationTest(FanoutFixture, unittest.TestCase):
    def test_wrong_content_type_is_415(self):
        with self.server.connect() as sock:
            resp, _ = self.fanout(sock, fanout_body(("mis", "/json")), headers={"Content-Type": "text/plain"})
            self.assertProblemDoc(resp, 415)
            resp, _ = self.fanout(sock, fanout_body(("mis", "/json")), headers={})
            self.assertProblemDoc(resp, 415)

    def test_bodies_the_json_parser_refuses_are_400(self):
        # Includes what the engine's parser refuses before the handler looks: a repeated member. (A
        # missing body is 422 naming the body: test_missing_body_is_422.)
        raws = (b"{", b'{"requests": [}', b"\xff", b'{"requests": [], "requests": []}')
        with self.server.connect() as sock:
            for raw in raws:
                with self.subTest(raw=raw):
                    resp, _ = self.fanout(sock, raw)
                    doc = self.assertProblemDoc(resp, 400)
                    self.assertIn("JSON", doc["detail"])

    def test_missing_body_is_422(self):
        with self.server.connect() as sock:
            resp, _ = self.fanout(sock, b"")
            doc = self.assertProblemDoc(resp, 422)
            self.assertEqual(doc["errors"][0]["in"], "body")

    def test_nul_in_a_path_is_422(self):
        # Valid JSON, but no path can carry a NUL: refused naming the value, never cut short.
        raw = b'{"requests": [{"upstream": "mis", "path": "/a\\u0000b"}]}'
        with self.server.connect() as sock:
            resp, _ = self.fanout(sock, raw)
            doc = self.assertProblemDoc(resp, 422, extra={"field": "requests[0].path"})
            self.assertIn("U+0000", doc["detail"])

    def test_body_that_is_not_an_object_is_422(self):
        with self.server.connect() as sock:
            for body in ([], [{"upstream": "mis", "path": "/json"}], "x", 3, None):
                with self.subTest(body=body):
                    resp, _ = self.fanout(sock, json_request_body(body))
                    self.assertProblemDoc(resp, 422)

    def test_bad_fields_are_422_naming_them(self):
        ok = {"upstream": "mis", "path": "/json"}
        cases = [
            ({"requests": [ok], "extra": 1}, "extra"),
            ({}, "requests"),
            ({"requests": None}, "requests"),
            ({"requests": {}}, "requests"),
            ({"requests": []}, "requests"),
            ({"requests": [ok] * (MAX_REQUESTS + 1)}, "requests"),
            ({"requests": ["mis"]}, "requests[0]"),
            ({"requests": [ok, 5]}, "requests[1]"),
            ({"requests": [dict(ok, method="POST")]}, "requests[0].method"),
            ({"requests": [ok, {"path": "/json"}]}, "requests[1].upstream"),
            ({"requests": [{"upstream": 5, "path": "/json"}]}, "requests[0].upstream"),
            ({"requests": [{"upstream": "evil", "path": "/json"}]}, "requests[0].upstream"),
            ({"requests": [{"upstream": "mis"}]}, "requests[0].path"),
            ({"requests": [{"upstream": "mis", "path": 5}]}, "requests[0].path"),
            ({"requests": [ok, {"upstream": "mis", "path": ""}]}, "requests[1].path"),
            ({"requests": [{"upstream": "mis", "path": "json"}]}, "requests[0].path"),
            ({"requests": [{"upstream": "mis", "path": "/a b"}]}, "requests[0].path"),
            ({"requests": [{"upstream": "mis", "path": "/a\tb"}]}, "requests[0].path"),
            ({"requests": [{"upstream": "mis", "path": "/\u00e9"}]}, "requests[0].path"),
            ({"requests": [{"upstream": "mis", "path": "/a#frag"}]}, "requests[0].path"),
            ({"requests": [{"upstream": "mis", "path": "/" + "a" * 2048}]}, "requests[0].path"),
            ({"requests": [ok], "timeout_ms": 0}, "timeout_ms"),
            ({"requests": [ok], "timeout_ms": -1}, "timeout_ms"),
            ({"requests": [ok], "timeout_ms": "300"}, "timeout_ms"),
            ({"requests": [ok], "timeout_ms": 300.0}, "timeout_ms"),
            ({"requests": [ok], "timeout_ms": 60001}, "timeout_ms"),
            ({"requests": [ok], "timeout_ms": None}, "timeout_ms"),
        ]
        with self.server.connect() as sock:
            for body, field in cases:
                with self.subTest(field=field, body=json.dumps(body)[:120]):
                    resp, took = self.fanout(sock, body)
                    self.assertFieldProblem(resp, 422, field)
                    self.assertLess(took, 1.0, "a refused request is answered at once")
            self.assertStillOpen(sock)

    def test_longest_path_and_timeout_are_accepted(self):
        body = {"requests": [{"upstream": "mis", "path": "/" + "a" * 2047}], "timeout_ms": 60000}
        with self.server.connect() as sock:
            results = self.results(self.fanout(sock, body)[0])
        self.assertEqual(results[0]["status"], 404)
        self.assertEqual(results[0]["body"]["target"], "/" + "a" * 2047)


# --------------------------------------------------------------------------------------------------
# connections: keep-alive reuse, the pool's cap, dead pooled connections, clients that leave


class FanoutConnectionsTest(FanoutFixture, unittest.TestCase):
    POOL = 4

    @classmethod
    def upstream_config(cls, mis, apiary_port):
        # Every test here gets its own counting upstream, so connection counts are its alone.
        cls.counted = MisbehavingUpstream().start()
        cls.dropper = MisbehavingUpstream().start()
        config = super().upstream_config(mis, apiary_port)
        config["pooled"] = {"url": f"http://{HOST}:{cls.counted.port}", "max_connections": cls.POOL,
                            "max_idle": cls.POOL, "timeout_ms": 5000}
        config["single"] = {"url": f"http://{HOST}:{cls.dropper.port}", "max_connections": 1, "max_idle": 1}
        return config

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls.counted.stop()
            cls.dropper.stop()

    def test_1000_calls_reuse_at_most_the_pool(self):
        started = self.counted.counters()
        with self.server.connect() as sock:
            for _ in range(1000 // MAX_REQUESTS):
                resp, _ = self.fanout(sock, fanout_body(*[("pooled", "/json")] * MAX_REQUESTS))
                for r in self.results(resp):
                    self.assertSuccess(r, "pooled", 200, {"ok": True})
        after = self.counted.counters()
        self.assertEqual(after["requests"] - started["requests"], 1000)
        self.assertLessEqual(after["accepted"], self.POOL,
                             f"1,000 calls opened {after['accepted']} connections; the pool holds {self.POOL}")
        self.assertGreaterEqual(after["accepted"], 1)

    def test_upstream_closing_an_idle_connection(self):
        # The upstream closes the connection 50 ms after answering; apiary notices while it is idle,
        # and the next call opens a new one without any error.
        results, _ = self.call(("single", "/json?then=idle_close&ms=50"))
        self.assertSuccess(results[0], "single", 200, {"ok": True})
        self.assertTrue(self.dropper.wait_for(lambda c: c["open"] == 0, 3.0), "the upstream did not close it")
        time.sleep(0.05)
        before = self.dropper.counters()
        results, _ = self.call(("single", "/json"))
        self.assertSuccess(results[0], "single", 200, {"ok": True})
        after = self.dropper.counters()
        self.assertEqual(after["accepted"], before["accepted"] + 1)
        self.assertEqual(after["requests"], before["requests"] + 1, "nothing was sent on the closed connection")

    def test_dead_pooled_connection_is_retried_on_a_fresh_one(self):
        # The pooled connection is closed by the upstream just as the next request arrives on it, with
        # nothing answered: the call moves to a fresh connection once (retries is 0 for "single").
        results, _ = self.call(("single", "/json?then=drop_next"))
        self.assertSuccess(results[0], "single", 200, {"ok": True})
        before = self.dropper.counters()
        results, _ = self.call(("single", "/json"))
        self.assertSuccess(results[0], "single", 200, {"ok": True})
        after = self.dropper.counters()
        self.assertEqual(after["accepted"], before["accepted"] + 1, "one fresh connection")
        self.assertEqual(after["requests"], before["requests"] + 2, "sent on the dead one, then on the fresh one")

    def test_client_leaving_cancels_its_calls_and_closes_their_connections(self):
        before = self.counted.counters()
        with self.server.connect() as sock:
            sock.sendall(build_request("POST", "/v1/fanout", JSON,
                                       json_request_body(fanout_body(*[("pooled", "/hang")] * 3))))
            self.assertTrue(self.counted.wait_for(lambda c: c["requests"] >= before["requests"] + 3, 5.0),
                            "the calls did not reach the upstream")
            abort(sock)
        # The upstream sees each of the three connections closed: their exchanges cannot be resumed.
        self.assertTrue(self.counted.wait_for(lambda c: c["hang_closed"] >= before["hang_closed"] + 3, 5.0),
                        f"upstream counters: {self.counted.counters()}")
        self.assertServing(self.server)
        # And the pool still works: new connections replace the closed ones.
        results, _ = self.call(*[("pooled", "/json")] * 6)
        for r in results:
            self.assertSuccess(r, "pooled", 200, {"ok": True})
        self.assertLessEqual(self.counted.counters()["open"], self.POOL)

    def test_fanout_timeout_closes_the_calls_connections(self):
        before = self.counted.counters()
        results, took = self.call(("pooled", "/hang"), ("pooled", "/json"), timeout_ms=150)
        self.assertFailure(results[0], "pooled", "timeout", 150, 1000)
        self.assertSuccess(results[1], "pooled", 200, {"ok": True})
        self.assertTrue(self.counted.wait_for(lambda c: c["hang_closed"] >= before["hang_closed"] + 1, 5.0))

    def test_many_clients_at_once_share_the_pool(self):
        socks = [self.server.connect() for _ in range(20)]
        try:
            for sock in socks:
                sock.sendall(build_request("POST", "/v1/fanout", JSON,
                                           json_request_body(fanout_body(*[("pooled", "/slow?ms=20")] * 5))))
            for sock in socks:
                resp = read_response(sock, timeout=20.0)
                for r in self.results(resp):
                    self.assertSuccess(r, "pooled", 200, {"ok": True})
        finally:
            for sock in socks:
                sock.close()
        self.assertLessEqual(self.counted.counters()["open"], self.POOL)


class FanoutTwoLoopsTest(FanoutFixture, unittest.TestCase):
    """Each loop has its own pools; calls from both loops work side by side."""

    THREADS = 2

    def test_calls_from_many_connections(self):
        for _ in range(10):
            results, _ = self.call(("users", "/v1/hello"), ("mis", "/json"), ("local", "/chunked"))
            self.assertSuccess(results[0], "users", 200, {"message": "Hello, World!"})
            self.assertSuccess(results[1], "mis", 200, {"ok": True})
            self.assertSuccess(results[2], "local", 200, {"chunked": True, "parts": 3})


if __name__ == "__main__":
    unittest.main()
