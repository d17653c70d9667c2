"""Coroutine handlers (ROUTE_CORO, async_await) through the real server: /v1/example/pair_await answers
exactly as /v1/example/pair does, and its request ending at an await (client gone, deadline passed,
server stopping) unwinds the coroutine cleanly: the server keeps serving, logs no warning or error,
stops cleanly, and a sanitized build reports nothing. Pipelined requests behind a coroutine's answer
are served (they are parsed on the loop's stack, not the coroutine's)."""

import time
import unittest

from apiary_harness import (ApiaryServer, ServerTestMixin, abort, build_request, raise_nofile_limit, read_response,
                            request)
from test_80_async import AsyncAssertions, assert_docs_quote, timed_request

PAIR = "/v1/example/pair"
AWAIT = "/v1/example/pair_await"


class PairAwaitTest(AsyncAssertions, ServerTestMixin, unittest.TestCase):
    THREADS = 1

    def test_same_answers_as_the_callback_style(self):
        with self.server.connect() as sock:
            for query in ("a_ms=50&b_ms=500&timeout_ms=200", "a_ms=0&b_ms=0&timeout_ms=1",
                          "a_ms=30&b_ms=10&timeout_ms=100"):
                with self.subTest(query=query):
                    answers = []
                    for path in (PAIR, AWAIT):
                        resp = request(sock, "GET", f"{path}?{query}")
                        self.assertEqual(resp.status, 200, repr(resp))
                        self.assertEqual(resp.headers.get("Content-Type"), "application/json")
                        doc = resp.json()
                        for part in doc.values():  # timings differ from run to run; the rest must not
                            if "ms" in part:
                                part["ms"] = "?"
                        answers.append(doc)
                    self.assertEqual(answers[0], answers[1])
            self.assertStillOpen(sock)

    def test_one_in_time_one_timed_out(self):
        with self.server.connect() as sock:
            resp, took = timed_request(sock, "GET", f"{AWAIT}?a_ms=50&b_ms=500&timeout_ms=200")
            self.assertEqual(resp.status, 200, repr(resp))
            doc = resp.json()
            self.assertIs(doc["a"]["ok"], True)
            self.assertGreaterEqual(doc["a"]["ms"], 50)
            self.assertEqual(doc["b"], {"ok": False, "error": "timeout"})
            self.assertGreaterEqual(took, 0.2)
            self.assertLess(took, 1.0)

    def test_bad_query_is_400_naming_the_field(self):
        with self.server.connect() as sock:
            for query, field in (("b_ms=1&timeout_ms=10", "a_ms"), ("a_ms=1&b_ms=-1&timeout_ms=10", "b_ms"),
                                 ("a_ms=1&b_ms=1&timeout_ms=0", "timeout_ms")):
                with self.subTest(query=query):
                    self.assertFieldProblem(request(sock, "GET", f"{AWAIT}?{query}"), 400, field)
            self.assertStillOpen(sock)

    def test_pipelined_requests_behind_a_coroutine_answer(self):
        with self.server.connect() as sock:
            wire = (build_request("GET", f"{AWAIT}?a_ms=20&b_ms=1&timeout_ms=100")
                    + build_request("GET", f"{AWAIT}?a_ms=1&b_ms=1&timeout_ms=100")
                    + build_request("GET", "/v1/hello")
                    + build_request("GET", f"{PAIR}?a_ms=1&b_ms=1&timeout_ms=100"))
            sock.sendall(wire)
            first = read_response(sock)
            self.assertEqual(first.status, 200)
            self.assertGreaterEqual(first.json()["a"]["ms"], 20)
            self.assertEqual(read_response(sock).status, 200)
            self.assertHello(read_response(sock))
            self.assertEqual(read_response(sock).status, 200)
            self.assertStillOpen(sock)

    def test_many_at_once_on_one_loop(self):
        socks = [self.server.connect() for _ in range(200)]
        try:
            for sock in socks:
                sock.sendall(build_request("GET", f"{AWAIT}?a_ms=200&b_ms=100&timeout_ms=1000"))
            for sock in socks:
                resp = read_response(sock, timeout=20.0)
                self.assertEqual(resp.status, 200, repr(resp))
                self.assertIs(resp.json()["a"]["ok"], True)
        finally:
            for sock in socks:
                sock.close()


class PairAwaitDeadlineTest(AsyncAssertions, ServerTestMixin, unittest.TestCase):
    CONFIG = {"timeouts": {"request_ms": 300}}
    THREADS = 1

    def test_past_the_deadline_is_504_and_the_coroutine_unwinds_quietly(self):
        with self.server.connect() as sock:
            resp, took = timed_request(sock, "GET", f"{AWAIT}?a_ms=2000&b_ms=2000&timeout_ms=5000")
            self.assertProblemDoc(resp, 504)
            self.assertGreaterEqual(took, 0.25)
            self.assertLess(took, 1.5)
            self.assertStillOpen(sock)
            resp = request(sock, "GET", f"{AWAIT}?a_ms=10&b_ms=10&timeout_ms=100")
            self.assertEqual(resp.status, 200, repr(resp))
        # The coroutine's own answer after the 504 is dropped without a word.
        self.assertNoBadLogLines(self.server)


class PairAwaitEndingTest(AsyncAssertions, unittest.TestCase):
    CLIENTS = 200

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        raise_nofile_limit()

    def leave_mid_await(self, server):
        socks = [server.connect() for _ in range(self.CLIENTS)]
        try:
            for sock in socks:
                sock.sendall(build_request("GET", f"{AWAIT}?a_ms=2000&b_ms=1500&timeout_ms=5000"))
            time.sleep(0.2)
        finally:
            for sock in socks:
                abort(sock)
        sent = time.monotonic()
        with server.connect() as sock:
            resp, took = timed_request(sock, "GET", "/v1/hello")
            self.assertHello(resp)
            self.assertLess(took, 0.5)
        return sent

    def test_clients_leaving_mid_await_leave_nothing_behind(self):
        with ApiaryServer({}, threads=1) as server:
            sent = self.leave_mid_await(server)
            time.sleep(max(0.0, sent + 2.3 - time.monotonic()))
            self.assertServing(server)
            with server.connect() as sock:
                self.assertEqual(request(sock, "GET", f"{AWAIT}?a_ms=5&b_ms=5&timeout_ms=50").status, 200)
            self.assertNoBadLogLines(server)
            server.sigterm()
            self.assertEqual(server.wait(5), 0, server.log_text())
            server.assert_no_sanitizer_report()

    def test_server_stopping_cancels_awaiting_coroutines(self):
        with ApiaryServer({"drain_timeout_ms": 200}, threads=2) as server:
            socks = [server.connect() for _ in range(50)]
            try:
                for sock in socks:
                    sock.sendall(build_request("GET", f"{AWAIT}?a_ms=5000&b_ms=5000&timeout_ms=10000"))
                time.sleep(0.2)
                started = time.monotonic()
                server.sigterm()
                rc = server.wait(5)
                self.assertEqual(rc, 0, server.log_text())
                self.assertLess(time.monotonic() - started, 3.0)
            finally:
                for sock in socks:
                    sock.close()
            server.assert_no_sanitizer_report()


class PairAwaitDocsTest(unittest.TestCase):
    def test_docs_show_example_pair_await_verbatim(self):
        assert_docs_quote(self, "example-await", "handlers/example_pair_await.c")


if __name__ == "__main__":
    unittest.main()
