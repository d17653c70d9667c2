"""Asynchronous endpoints on the async toolkit: /v1/sleep (1,000 concurrent waits on one loop, input
checks, clients that leave mid-wait), /v1/aggregate (semaphore, per-source timeouts, gather, field
validation), /v1/example/pair (the docs' worked example, and the docs' copy of it), the in-flight cap
(503 + Retry-After) and the request deadline (504).

Time bounds are tight only from below (nothing answers early); from above they are generous, except
where the point is that something answers at once."""

import json
import os
import re
import selectors
import socket
import time
import unittest

from apiary_harness import (ApiaryAssertions, ApiaryServer, ServerTestMixin, abort, build_request,
                            json_request_body, raise_nofile_limit, read_response, readable, request,
                            source_dir)

JSON = {"Content-Type": "application/json"}
PROBLEM_MEMBERS = {"type", "title", "status", "detail"}
# Reason phrases the harness's table does not know yet; 422 was renamed by RFC 9110.
EXTRA_REASONS = {422: ("Unprocessable Content", "Unprocessable Entity"), 504: ("Gateway Timeout",)}
# A log line at warn or error level ("2026-01-01T00:00:00.000Z error ...").
BAD_LOG_LINE = re.compile(r"^\S+Z (warn|error)\b", re.MULTILINE)


def sleep_path(ms):
    return f"/v1/sleep?ms={ms}"


def timed_request(sock, method, path, headers=None, body=None, timeout=10.0):
    """(response, seconds from the first byte sent to the whole response read)."""
    started = time.monotonic()
    resp = request(sock, method, path, headers, body, timeout=timeout)
    return resp, time.monotonic() - started


class AsyncAssertions(ApiaryAssertions):
    def assertSlotsCameBack(self, n=5):
        """After a request ended early, every waiting slot came back: n waits at once work again."""
        socks = [self.server.connect() for _ in range(n)]
        try:
            for sock in socks:
                sock.sendall(build_request("GET", sleep_path(50)))
            for sock in socks:
                self.assertJson(read_response(sock, timeout=5.0), 200, {"slept_ms": 50})
        finally:
            for sock in socks:
                sock.close()

    def assertProblemDoc(self, resp, status, extra=None):
        """A problem+json document with exactly the standard members plus `extra` (name -> value)."""
        extra = extra or {}
        self.assertEqual(resp.status, status, f"unexpected response {resp!r}")
        reasons = EXTRA_REASONS.get(status)
        if reasons:
            self.assertIn(resp.reason, reasons)
        self.assertEqual(resp.headers.get("Content-Type"), "application/problem+json", repr(resp))
        self.assertCommonHeaders(resp)
        doc = resp.json()
        self.assertIsInstance(doc, dict)
        # A 422 from a declared schema lists every violation in "errors" (docs/schemas.md).
        members = set(doc) - ({"errors"} if status == 422 else set())
        self.assertEqual(members, PROBLEM_MEMBERS | set(extra), f"problem members: {doc!r}")
        for error in doc.get("errors", []) if status == 422 else []:
            self.assertEqual(set(error), {"in", "field", "detail"}, doc)
            self.assertIn(error["in"], ("body", "query", "path", "header"), doc)
        self.assertEqual(doc["type"], "about:blank")
        self.assertEqual(doc["title"], resp.reason)
        self.assertIs(type(doc["status"]), int)
        self.assertEqual(doc["status"], status)
        self.assertIsInstance(doc["detail"], str)
        self.assertTrue(doc["detail"].strip())
        for name, value in extra.items():
            self.assertEqual(doc[name], value, f"problem member {name!r}: {doc!r}")
        return doc

    def assertFieldProblem(self, resp, status, field):
        """400/422 naming the offending field in "field" and (when short) in the detail."""
        doc = self.assertProblemDoc(resp, status, {"field": field})
        if len(field) <= 100:
            self.assertIn(field, doc["detail"])
        return doc

    def assertNoBadLogLines(self, server):
        log = server.log_text()
        self.assertIsNone(BAD_LOG_LINE.search(log), f"warnings or errors in the server's log:\n{log}")


# --------------------------------------------------------------------------------------------------
# /v1/sleep: many waits at once


class SleepBatchMixin:
    """1,000 sleeps on 1,000 connections at once. Served one after another they would take 200 s; if
    waiting never blocks a loop they take about 200 ms plus the time to push 1,000 requests through."""

    RAISE_NOFILE = True  # 1,000 client sockets here, 1,000 accepted ones in the server
    CLIENTS = 1000
    SLEEP_MS = 200

    def test_1000_concurrent_sleeps(self):
        socks = []
        sel = selectors.DefaultSelector()  # epoll: select() cannot watch descriptors above 1023
        try:
            for _ in range(self.CLIENTS):
                socks.append(self.server.connect(timeout=10.0))
            wire = build_request("GET", sleep_path(self.SLEEP_MS))
            sent_at = {}
            started = time.monotonic()
            for sock in socks:
                sent_at[sock] = time.monotonic()
                sock.sendall(wire)
                sel.register(sock, selectors.EVENT_READ)
            answers = {}
            deadline = started + 60
            while len(answers) < len(socks) and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=1.0):
                    sock = key.fileobj
                    resp = read_response(sock, timeout=5.0)
                    answers[sock] = (resp, time.monotonic() - sent_at[sock])
                    sel.unregister(sock)
            total = time.monotonic() - started
            self.assertEqual(len(answers), len(socks), f"only {len(answers)} answers within 60 s")
            for resp, took in answers.values():
                self.assertJson(resp, 200, {"slept_ms": self.SLEEP_MS})
                self.assertGreaterEqual(took, self.SLEEP_MS / 1000, "a sleep answered early")
            self.assertLess(total, 20.0, f"1,000 sleeps of {self.SLEEP_MS} ms took {total:.1f} s: "
                                         "the loop blocked while waiting")
        finally:
            sel.close()
            for sock in socks:
                sock.close()
        self.assertServing(self.server)


class SleepBatchOneLoopTest(SleepBatchMixin, AsyncAssertions, ServerTestMixin, unittest.TestCase):
    THREADS = 1


class SleepBatchTwoLoopsTest(SleepBatchMixin, AsyncAssertions, ServerTestMixin, unittest.TestCase):
    THREADS = 2


class SleepTest(AsyncAssertions, ServerTestMixin, unittest.TestCase):
    CONFIG = {"limits": {"max_sleep_ms": 1000}}
    THREADS = 1

    def test_sleep_answers_after_the_delay(self):
        with self.server.connect() as sock:
            for ms, query in ((0, "0"), (30, "30"), (7, "007"), (1000, "1000")):
                with self.subTest(ms=query):
                    resp, took = timed_request(sock, "GET", sleep_path(query))
                    self.assertJson(resp, 200, {"slept_ms": ms})
                    self.assertGreaterEqual(took, ms / 1000)
                    self.assertLess(took, ms / 1000 + 2.0)

    def test_head_sleep_has_no_body(self):
        with self.server.connect() as sock:
            resp = request(sock, "HEAD", sleep_path(10))
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.body, b"")
            self.assertCommonHeaders(resp, head_request=True)
            self.assertStillOpen(sock)

    def test_bad_ms_is_422_naming_ms(self):
        queries = [
            "/v1/sleep", "/v1/sleep?", "/v1/sleep?ms", "/v1/sleep?ms=", "/v1/sleep?other=5",
            "/v1/sleep?ms=abc", "/v1/sleep?ms=-1", "/v1/sleep?ms=%2D1", "/v1/sleep?ms=%2B5",
            "/v1/sleep?ms=+5", "/v1/sleep?ms=5%20", "/v1/sleep?ms=1.5", "/v1/sleep?ms=1e3",
            "/v1/sleep?ms=0x10", "/v1/sleep?ms=10ms", "/v1/sleep?ms=%EF%BC%95",  # fullwidth digit 5
            "/v1/sleep?ms=99999999999999999999999999", "/v1/sleep?ms=4294967296", "/v1/sleep?ms=4294967295",
            "/v1/sleep?ms=18446744073709551617", "/v1/sleep?ms=1001",
        ]
        with self.server.connect() as sock:
            for path in queries:
                with self.subTest(path=path):
                    resp, took = timed_request(sock, "GET", path)
                    doc = self.assertFieldProblem(resp, 422, "ms")
                    self.assertIn("between 0 and 1000", doc["detail"], "the detail must give the range")
                    self.assertLess(took, 1.0, "a refused sleep must be answered at once")
            # 422 for a bad query does not close the connection.
            self.assertStillOpen(sock)
        self.assertServing(self.server)

    def test_sleep_does_not_block_the_loop(self):
        # One loop, 50 connections waiting 1 s each: a request on another connection is answered now.
        socks = [self.server.connect() for _ in range(50)]
        try:
            for sock in socks:
                sock.sendall(build_request("GET", sleep_path(1000)))
            time.sleep(0.1)
            with self.server.connect() as other:
                resp, took = timed_request(other, "GET", "/v1/hello")
                self.assertHello(resp)
                self.assertLess(took, 0.5)
            for sock in socks:
                self.assertJson(read_response(sock, timeout=5.0), 200, {"slept_ms": 1000})
        finally:
            for sock in socks:
                sock.close()


# --------------------------------------------------------------------------------------------------
# clients that leave mid-sleep


class HalfCloseTest(AsyncAssertions, ServerTestMixin, unittest.TestCase):
    """With "half_close": "answer", a client that shuts its write side (FIN) after sending complete
    requests still reads: it gets every answer, asynchronous or not, in order, and then the server
    closes. (The default, "cancel", cancels them: test_45_careless_clients.)"""
    THREADS = 1
    CONFIG = {"half_close": "answer"}

    def test_half_closed_client_gets_async_and_sync_answers(self):
        with self.server.connect() as sock:
            sock.sendall(build_request("GET", sleep_path(200)) + build_request("GET", "/v1/hello")
                         + build_request("GET", sleep_path(20)))
            sock.shutdown(socket.SHUT_WR)
            self.assertJson(read_response(sock, timeout=5.0), 200, {"slept_ms": 200})
            self.assertHello(read_response(sock, timeout=5.0))
            self.assertJson(read_response(sock, timeout=5.0), 200, {"slept_ms": 20})
            self.assertClosedByServer(sock)

    def test_half_closed_client_of_a_pool_job_gets_its_answer(self):
        with self.server.connect() as sock:
            sock.sendall(build_request("GET", "/v1/primes?n=100000"))
            sock.shutdown(socket.SHUT_WR)
            resp = read_response(sock, timeout=5.0)
            self.assertEqual(resp.status, 200, repr(resp))
            self.assertClosedByServer(sock)


class SleepDisconnectTest(AsyncAssertions, unittest.TestCase):
    CLIENTS = 200

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        raise_nofile_limit()

    def leave_mid_sleep(self, server):
        """200 connections each waiting 2 s; after 100 ms every client resets (RST)."""
        socks = [server.connect() for _ in range(self.CLIENTS)]
        try:
            for sock in socks:
                sock.sendall(build_request("GET", sleep_path(2000)))
            time.sleep(0.1)
        finally:
            for sock in socks:  # a reset: cancelled whatever half_close says
                abort(sock)
        sent = time.monotonic()
        # Still quick for everyone else.
        with server.connect() as sock:
            resp, took = timed_request(sock, "GET", "/v1/hello")
            self.assertHello(resp)
            self.assertLess(took, 0.5)
            resp, took = timed_request(sock, "GET", sleep_path(10))
            self.assertJson(resp, 200, {"slept_ms": 10})
            self.assertLess(took, 0.5)
        return sent

    def test_abandoned_sleeps_do_not_hold_shutdown(self):
        # Sleeps still pending would keep their connections (and so the drain) for another ~1.8 s.
        with ApiaryServer({}, threads=2) as server:
            self.leave_mid_sleep(server)
            time.sleep(0.2)
            started = time.monotonic()
            server.sigterm()
            rc = server.wait(5)
            took = time.monotonic() - started
            self.assertEqual(rc, 0, f"exit code {rc}; log:\n{server.log_text()}")
            self.assertLess(took, 1.0, "shutdown waited for sleeps whose clients had left")
            self.assertNoBadLogLines(server)

    def test_abandoned_sleeps_leave_nothing_behind(self):
        # Past the time the sleeps would have ended: a timer left behind would now fire into a freed
        # request (a crash, or a sanitizer report checked when the server stops).
        with ApiaryServer({}, threads=1) as server:
            sent = self.leave_mid_sleep(server)
            time.sleep(max(0.0, sent + 2.5 - time.monotonic()))
            self.assertServing(server)
            with server.connect() as sock:
                self.assertJson(request(sock, "GET", sleep_path(20)), 200, {"slept_ms": 20})
            self.assertNoBadLogLines(server)
            server.sigterm()
            self.assertEqual(server.wait(5), 0, server.log_text())


# --------------------------------------------------------------------------------------------------
# /v1/aggregate


EXAMPLE_BODY = {
    "sources": [
        {"name": "a", "delay_ms": 50},
        {"name": "b", "delay_ms": 5000},
        {"name": "c", "delay_ms": 10, "fail": True},
    ],
    "timeout_ms": 200,
    "concurrency": 2,
}


DROP = object()  # marks a member to remove in test_bad_fields_are_422_naming_them


def sources(*delays, prefix="s"):
    return [{"name": f"{prefix}{i}", "delay_ms": d} for i, d in enumerate(delays)]


class AggregateTest(AsyncAssertions, ServerTestMixin, unittest.TestCase):
    THREADS = 2

    def aggregate(self, sock, body, headers=JSON):
        raw = body if isinstance(body, bytes) else json_request_body(body)
        return timed_request(sock, "POST", "/v1/aggregate", headers, raw)

    def assertAggregate(self, resp):
        """200 with exactly results and elapsed_ms; returns (results, elapsed_ms)."""
        self.assertEqual(resp.status, 200, repr(resp))
        self.assertEqual(resp.headers.get("Content-Type"), "application/json")
        self.assertCommonHeaders(resp)
        doc = resp.json()
        self.assertEqual(set(doc), {"results", "elapsed_ms"}, repr(doc))
        self.assertIs(type(doc["elapsed_ms"]), int)
        return doc["results"], doc["elapsed_ms"]

    def assertOk(self, result, name, low, high):
        self.assertEqual(set(result), {"name", "ok", "ms"}, repr(result))
        self.assertEqual(result["name"], name)
        self.assertIs(result["ok"], True)
        self.assertIs(type(result["ms"]), int)
        self.assertGreaterEqual(result["ms"], low, repr(result))
        self.assertLess(result["ms"], high, repr(result))

    def test_example_body(self):
        with self.server.connect() as sock:
            resp, took = self.aggregate(sock, EXAMPLE_BODY)
            results, elapsed = self.assertAggregate(resp)
            self.assertEqual(len(results), 3, repr(results))
            # Upper bounds on times are generous ("roughly when"), for a loaded 2-core machine.
            self.assertOk(results[0], "a", 50, 400)
            self.assertEqual(results[1], {"name": "b", "ok": False, "error": "timeout"})
            self.assertEqual(results[2], {"name": "c", "ok": False, "error": "failed"})
            self.assertGreaterEqual(elapsed, 200)
            self.assertLess(elapsed, 700)
            self.assertGreaterEqual(took, 0.2)
            self.assertStillOpen(sock)

    def test_concurrency_two_runs_in_waves(self):
        body = {"sources": sources(200, 200, 200, 200), "timeout_ms": 1000, "concurrency": 2}
        with self.server.connect() as sock:
            results, elapsed = self.assertAggregate(self.aggregate(sock, body)[0])
            for i, result in enumerate(results):
                self.assertOk(result, f"s{i}", 200, 600)
            self.assertGreaterEqual(elapsed, 400)
            self.assertLess(elapsed, 900)

    def test_concurrency_all_at_once(self):
        for extra in ({"concurrency": 4}, {}):  # the default is every source at once
            with self.subTest(**extra), self.server.connect() as sock:
                body = dict({"sources": sources(200, 200, 200, 200), "timeout_ms": 1000}, **extra)
                results, elapsed = self.assertAggregate(self.aggregate(sock, body)[0])
                self.assertEqual([r["name"] for r in results], ["s0", "s1", "s2", "s3"])
                for i, result in enumerate(results):
                    self.assertOk(result, f"s{i}", 200, 600)
                self.assertGreaterEqual(elapsed, 200)
                self.assertLess(elapsed, 600)

    def test_concurrency_one_is_sequential(self):
        body = {"sources": sources(100, 100, 100), "timeout_ms": 1000, "concurrency": 1}
        with self.server.connect() as sock:
            results, elapsed = self.assertAggregate(self.aggregate(sock, body)[0])
            for i, result in enumerate(results):
                self.assertOk(result, f"s{i}", 100, 400)
            self.assertGreaterEqual(elapsed, 300)
            self.assertLess(elapsed, 800)

    def test_timeout_starts_when_the_source_gets_its_permit(self):
        # One at a time, 400 ms each, 600 ms allowed each: the second waited 400 ms for its permit,
        # which must not count against its own timeout (counted, it would end at 600 ms, 200 ms short).
        # 200 ms of slack either way, for a loaded machine.
        body = {"sources": sources(400, 400), "timeout_ms": 600, "concurrency": 1}
        with self.server.connect() as sock:
            results, elapsed = self.assertAggregate(self.aggregate(sock, body)[0])
            self.assertOk(results[0], "s0", 400, 600)
            self.assertOk(results[1], "s1", 400, 600)
            self.assertGreaterEqual(elapsed, 800)

    def test_results_follow_source_order_not_completion_order(self):
        body = {"sources": [{"name": "z", "delay_ms": 300}, {"name": "y", "delay_ms": 200},
                            {"name": "x", "delay_ms": 100, "fail": False}, {"name": "w", "delay_ms": 0}],
                "timeout_ms": 1000}
        with self.server.connect() as sock:
            results, elapsed = self.assertAggregate(self.aggregate(sock, body)[0])
            self.assertEqual([r["name"] for r in results], ["z", "y", "x", "w"])
            self.assertOk(results[0], "z", 300, 700)
            self.assertOk(results[1], "y", 200, 600)
            self.assertOk(results[2], "x", 100, 500)
            self.assertOk(results[3], "w", 0, 400)
            self.assertGreaterEqual(elapsed, 300)
            self.assertLess(elapsed, 1000)

    def test_a_failing_source_that_is_too_slow_times_out(self):
        body = {"sources": [{"name": "slow", "delay_ms": 1000, "fail": True},
                            {"name": "quick", "delay_ms": 5, "fail": True}], "timeout_ms": 100}
        with self.server.connect() as sock:
            results, elapsed = self.assertAggregate(self.aggregate(sock, body)[0])
            self.assertEqual(results, [{"name": "slow", "ok": False, "error": "timeout"},
                                       {"name": "quick", "ok": False, "error": "failed"}])
            self.assertGreaterEqual(elapsed, 100)
            self.assertLess(elapsed, 600)

    def test_most_sources_allowed(self):
        # The default limit is 64; names are echoed exactly, multi-byte ones included.
        body = {"sources": [{"name": f"src-{i}-\u00e9", "delay_ms": i % 5} for i in range(64)],
                "timeout_ms": 1000, "concurrency": 3}
        with self.server.connect() as sock:
            results, _ = self.assertAggregate(self.aggregate(sock, body)[0])
            self.assertEqual([r["name"] for r in results], [s["name"] for s in body["sources"]])
            self.assertTrue(all(r["ok"] is True for r in results), repr(results))

    def test_name_of_64_bytes_is_allowed(self):
        for name in ("n" * 64, "\u00e9" * 32, "\U0001F41D" * 16):
            with self.subTest(name=name), self.server.connect() as sock:
                body = {"sources": [{"name": name, "delay_ms": 0}], "timeout_ms": 100}
                results, _ = self.assertAggregate(self.aggregate(sock, body)[0])
                self.assertOk(results[0], name, 0, 100)

    def test_clients_leaving_mid_run_leave_nothing_behind(self):
        # Each request has one source running (a timer and its timeout), two waiting for the permit and
        # a gather pending when its client leaves; all of that must go with the request.
        body = json_request_body({"sources": sources(1000, 1000, 1000), "timeout_ms": 2000, "concurrency": 1})
        socks = [self.server.connect() for _ in range(20)]
        try:
            for sock in socks:
                sock.sendall(build_request("POST", "/v1/aggregate", JSON, body))
            time.sleep(0.1)
        finally:
            for sock in socks:  # a reset: cancelled whatever half_close says
                abort(sock)
        # Past the moment the first sources would have ended and passed their permits on.
        time.sleep(1.2)
        self.assertServing(self.server)
        with self.server.connect() as sock:
            resp, _ = self.aggregate(sock, {"sources": sources(10), "timeout_ms": 100})
            results, _ = self.assertAggregate(resp)
            self.assertOk(results[0], "s0", 10, 100)
        self.assertNoBadLogLines(self.server)

    def test_wrong_content_type_is_415(self):
        with self.server.connect() as sock:
            for headers in ({"Content-Type": "text/plain"}, None):
                with self.subTest(headers=headers):
                    resp, _ = self.aggregate(sock, EXAMPLE_BODY, headers)
                    self.assertProblem(resp, 415)
            self.assertStillOpen(sock)

    def test_invalid_json_is_400_with_position(self):
        with self.server.connect() as sock:
            for raw in (b'{"sources": [\n {"name": }', b'{"sources": [1, 2'):
                with self.subTest(raw=raw):
                    doc = self.assertProblem(self.aggregate(sock, raw)[0], 400)
                    self.assertIn("line", doc["detail"])
                    self.assertIn("column", doc["detail"])
            # A missing body is 422 naming the body (docs/schemas.md).
            doc = self.assertProblemDoc(self.aggregate(sock, b"")[0], 422)
            self.assertEqual(doc["detail"], "the body is required: send a JSON body")
            self.assertStillOpen(sock)

    def test_body_that_is_not_an_object_is_422(self):
        # Valid JSON of the wrong shape: there is no member to name, so no "field".
        with self.server.connect() as sock:
            # top-level scalars are JSON texts too (RFC 8259), just not objects
            for value in ([], [EXAMPLE_BODY], [[]], "sources", 5, None, True):
                with self.subTest(value=value):
                    doc = self.assertProblemDoc(self.aggregate(sock, value)[0], 422)
                    self.assertIn("object", doc["detail"])
            self.assertStillOpen(sock)

    def test_bodies_the_json_parser_refuses_are_400(self):
        # The engine refuses a repeated member before the handler looks at the document.
        raws = [b'{"sources": [{"name": "a", "delay_ms": 1}], "timeout_ms": 1, "timeout_ms": 2}']
        with self.server.connect() as sock:
            for raw in raws:
                with self.subTest(raw=raw):
                    doc = self.assertProblem(self.aggregate(sock, raw)[0], 400)
                    self.assertIn("line", doc["detail"])
            self.assertStillOpen(sock)

    def test_a_long_unknown_member_is_echoed_cut_short(self):
        # Member names come from the client: a 5,000-byte one must not come back whole, and the cut
        # must not split a UTF-8 character (the key is 2-byte characters, so 100 bytes is 50 of them).
        key = "é" * 2500
        body = {"sources": [{"name": "a", "delay_ms": 1}], "timeout_ms": 100, key: 1}
        with self.server.connect() as sock:
            resp, _ = self.aggregate(sock, body)
        self.assertEqual(resp.status, 422)
        doc = resp.json()
        self.assertEqual(doc["field"], "é" * 50)
        self.assertLess(len(doc["detail"].encode()), 400)

    def test_bad_fields_are_422_naming_them(self):
        ok = {"name": "ok", "delay_ms": 1}
        top = {"sources": [ok], "timeout_ms": 100}

        def body(**changes):
            out = dict(top)
            for key, value in changes.items():
                if value is DROP:
                    out.pop(key)
                else:
                    out[key] = value
            return out

        def source(**changes):
            out = dict(ok)
            for key, value in changes.items():
                if value is DROP:
                    out.pop(key)
                else:
                    out[key] = value
            return out

        cases = [
            # top level
            (body(extra=1), "extra"),
            (body(**{"Sources": []}), "Sources"),
            (body(sources=DROP), "sources"),
            (body(sources=[]), "sources"),
            (body(sources={"name": "a"}), "sources"),
            (body(sources="a"), "sources"),
            (body(sources=None), "sources"),
            (body(sources=[ok] * 65), "sources"),
            (body(timeout_ms=DROP), "timeout_ms"),
            (body(timeout_ms=0), "timeout_ms"),
            (body(timeout_ms=-5), "timeout_ms"),
            (body(timeout_ms=60001), "timeout_ms"),
            (body(timeout_ms=100.0), "timeout_ms"),
            (body(timeout_ms=1.5), "timeout_ms"),
            (body(timeout_ms="100"), "timeout_ms"),
            (body(timeout_ms=None), "timeout_ms"),
            (body(timeout_ms=True), "timeout_ms"),
            (body(concurrency=0), "concurrency"),
            (body(concurrency=2), "concurrency"),  # more than the one source
            (body(concurrency=1.0), "concurrency"),
            (body(concurrency="1"), "concurrency"),
            (body(concurrency=None), "concurrency"),
            (body(concurrency=-1), "concurrency"),
            # sources
            (body(sources=[ok, 5]), "sources[1]"),
            (body(sources=[ok, [ok]]), "sources[1]"),
            (body(sources=[None]), "sources[0]"),
            (body(sources=[source(name=DROP)]), "sources[0].name"),
            (body(sources=[ok, source(name="")]), "sources[1].name"),
            (body(sources=[source(name="n" * 65)]), "sources[0].name"),
            (body(sources=[source(name="\u00e9" * 32 + "a")]), "sources[0].name"),  # 65 bytes
            (body(sources=[source(name=5)]), "sources[0].name"),
            (body(sources=[source(name=None)]), "sources[0].name"),
            (body(sources=[source(name=["a"])]), "sources[0].name"),
            (body(sources=[ok, ok, source(delay_ms=DROP)]), "sources[2].delay_ms"),
            (body(sources=[source(delay_ms=-1)]), "sources[0].delay_ms"),
            (body(sources=[source(delay_ms=60001)]), "sources[0].delay_ms"),
            (body(sources=[source(delay_ms=1.0)]), "sources[0].delay_ms"),
            (body(sources=[source(delay_ms=1e3)]), "sources[0].delay_ms"),
            (body(sources=[source(delay_ms="5")]), "sources[0].delay_ms"),
            (body(sources=[source(delay_ms=None)]), "sources[0].delay_ms"),
            (body(sources=[source(delay_ms=False)]), "sources[0].delay_ms"),
            (body(sources=[source(fail="yes")]), "sources[0].fail"),
            (body(sources=[source(fail=1)]), "sources[0].fail"),
            (body(sources=[source(fail=None)]), "sources[0].fail"),
            (body(sources=[ok, source(extra=True)]), "sources[1].extra"),
            (body(sources=[source(timeout_ms=5)]), "sources[0].timeout_ms"),
            (body(sources=[source(**{"na me": 1})]), "sources[0].na me"),
            # A long client-chosen member name is echoed cut to 100 bytes.
            (body(sources=[source(**{"x" * 300: 1})]), ("sources[0]." + "x" * 300)[:100]),
        ]
        with self.server.connect() as sock:
            for value, field in cases:
                with self.subTest(field=field, body=json.dumps(value)[:120]):
                    resp, took = self.aggregate(sock, value)
                    self.assertFieldProblem(resp, 422, field)
                    self.assertLess(took, 1.0, "a refused body must be answered before any work")
            self.assertStillOpen(sock)
        self.assertServing(self.server)


# --------------------------------------------------------------------------------------------------
# the in-flight cap and the request deadline


class AsyncCapTest(AsyncAssertions, ServerTestMixin, unittest.TestCase):
    CONFIG = {"limits": {"max_async_per_loop": 5}}
    THREADS = 1

    def assertRejectedAtOnce(self, method, path, headers=None, body=None):
        with self.server.connect() as sock:
            resp, took = timed_request(sock, method, path, headers, body)
            self.assertProblem(resp, 503)
            self.assertRegex(resp.headers.get("Retry-After", ""), r"^\d+$", repr(resp))
            self.assertLess(took, 1.0, "the 503 must not wait for a slot")

    def test_cap_answers_503_then_recovers(self):
        holders = [self.server.connect() for _ in range(5)]
        try:
            for sock in holders:
                sock.sendall(build_request("GET", sleep_path(2000)))
            time.sleep(0.3)  # all five are waiting on the loop now
            self.assertRejectedAtOnce("GET", sleep_path(10))
            self.assertRejectedAtOnce("GET", "/v1/example/pair?a_ms=1&b_ms=1&timeout_ms=10")
            self.assertRejectedAtOnce("POST", "/v1/aggregate", JSON, json_request_body(EXAMPLE_BODY))
            # Requests that do not wait are not counted against the cap.
            with self.server.connect() as sock:
                resp, took = timed_request(sock, "GET", "/healthz")
                self.assertJson(resp, 200, {"status": "ok"})
                self.assertLess(took, 1.0)
                self.assertHello(request(sock, "GET", "/v1/hello"))
                # Input errors are still answered as such, before the cap is consulted.
                self.assertFieldProblem(request(sock, "GET", sleep_path("x")), 422, "ms")
            for sock in holders:
                self.assertJson(read_response(sock, timeout=5.0), 200, {"slept_ms": 2000})
        finally:
            for sock in holders:
                sock.close()
        self.assertSlotsCameBack()


class RequestDeadlineTest(AsyncAssertions, ServerTestMixin, unittest.TestCase):
    CONFIG = {"timeouts": {"request_ms": 300}}
    THREADS = 1

    def test_sleep_past_the_deadline_is_504_and_keeps_the_connection(self):
        with self.server.connect() as sock:
            resp, took = timed_request(sock, "GET", sleep_path(2000))
            self.assertProblemDoc(resp, 504)
            self.assertGreaterEqual(took, 0.25)
            self.assertLess(took, 1.5)
            self.assertNotIn("close", resp.connection_tokens())
            # The request was complete, only late: the connection serves the next one.
            self.assertStillOpen(sock)
            self.assertJson(request(sock, "GET", sleep_path(50)), 200, {"slept_ms": 50})
            # When the abandoned sleep would have ended, nothing stray arrives on the connection.
            time.sleep(max(0.0, 2.2 - took))
            self.assertFalse(readable(sock, 0.2), "bytes arrived after the 504")
            self.assertStillOpen(sock)

    def test_aggregate_past_the_deadline_is_504(self):
        body = {"sources": sources(1000, 10), "timeout_ms": 2000}
        with self.server.connect() as sock:
            resp, took = timed_request(sock, "POST", "/v1/aggregate", JSON, json_request_body(body))
            self.assertProblemDoc(resp, 504)
            self.assertGreaterEqual(took, 0.25)
            self.assertLess(took, 1.5)
            self.assertStillOpen(sock)

    def test_sleep_within_the_deadline_is_answered(self):
        with self.server.connect() as sock:
            self.assertJson(request(sock, "GET", sleep_path(100)), 200, {"slept_ms": 100})


# --------------------------------------------------------------------------------------------------
# /v1/example/pair and its copy in docs/async.md


class ExamplePairTest(AsyncAssertions, ServerTestMixin, unittest.TestCase):
    THREADS = 1

    def test_one_in_time_one_timed_out(self):
        with self.server.connect() as sock:
            # a has 450 ms of slack before the timeout would catch it too, for a loaded machine.
            resp, took = timed_request(sock, "GET", "/v1/example/pair?a_ms=50&b_ms=2000&timeout_ms=500")
            self.assertEqual(resp.status, 200, repr(resp))
            doc = resp.json()
            self.assertEqual(set(doc), {"a", "b"})
            self.assertEqual(set(doc["a"]), {"ok", "ms"})
            self.assertIs(doc["a"]["ok"], True)
            self.assertIs(type(doc["a"]["ms"]), int)
            self.assertGreaterEqual(doc["a"]["ms"], 50)
            self.assertLess(doc["a"]["ms"], 500)
            self.assertEqual(doc["b"], {"ok": False, "error": "timeout"})
            # The answer came when b timed out, not when b's sleep would have ended.
            self.assertGreaterEqual(took, 0.45)
            self.assertLess(took, 1.5)
            self.assertStillOpen(sock)

    def test_both_in_time(self):
        with self.server.connect() as sock:
            # 500 ms each: at once 0.5 s, one after the other 1.0 s; 0.4 s of slack between them.
            resp, took = timed_request(sock, "GET", "/v1/example/pair?a_ms=500&b_ms=500&timeout_ms=2000")
            self.assertEqual(resp.status, 200, repr(resp))
            doc = resp.json()
            self.assertEqual(set(doc), {"a", "b"})
            for name in ("a", "b"):
                self.assertEqual(set(doc[name]), {"ok", "ms"})
                self.assertIs(doc[name]["ok"], True)
                self.assertGreaterEqual(doc[name]["ms"], 500)
                self.assertLess(doc[name]["ms"], 900)
            self.assertGreaterEqual(took, 0.5)
            self.assertLess(took, 0.9, "the two sources ran one after the other")

    def test_bad_query_is_400_naming_the_field(self):
        cases = [
            ("b_ms=1&timeout_ms=10", "a_ms"),
            ("a_ms=x&b_ms=1&timeout_ms=10", "a_ms"),
            ("a_ms=1&timeout_ms=10", "b_ms"),
            ("a_ms=1&b_ms=-1&timeout_ms=10", "b_ms"),
            ("a_ms=1&b_ms=60001&timeout_ms=10", "b_ms"),
            ("a_ms=1&b_ms=1", "timeout_ms"),
            ("a_ms=1&b_ms=1&timeout_ms=0", "timeout_ms"),
            ("a_ms=1&b_ms=1&timeout_ms=60001", "timeout_ms"),
            ("a_ms=1&b_ms=1&timeout_ms=1.5", "timeout_ms"),
        ]
        with self.server.connect() as sock:
            for query, field in cases:
                with self.subTest(query=query):
                    self.assertFieldProblem(request(sock, "GET", "/v1/example/pair?" + query), 400, field)
            self.assertStillOpen(sock)


def assert_docs_quote(test, marker, source):
    """docs/async.md quotes the file `source` (relative to the tree) verbatim, exactly once, between
    `<!-- MARKER:begin SOURCE -->` + a C fence and the fence + `<!-- MARKER:end -->`."""
    begin = f"<!-- {marker}:begin {source} -->\n```c\n".encode()
    end_marker = f"```\n<!-- {marker}:end -->".encode()
    with open(os.path.join(source_dir(), "docs", "async.md"), "rb") as f:
        docs = f.read()
    with open(os.path.join(source_dir(), source), "rb") as f:
        code = f.read()
    test.assertEqual(docs.count(begin), 1, f"docs/async.md must quote {source} exactly once")
    start = docs.index(begin) + len(begin)
    end = docs.find(end_marker, start)
    test.assertGreaterEqual(end, 0, f"the quote of {source} in docs/async.md is not closed")
    test.assertEqual(docs[start:end].decode("utf-8"), code.decode("utf-8"), f"docs/async.md's quote differs from {source}")


class ExamplePairDocsTest(unittest.TestCase):
    def test_docs_show_example_pair_verbatim(self):
        assert_docs_quote(self, "example", "handlers/example_pair.c")


if __name__ == "__main__":
    unittest.main()
