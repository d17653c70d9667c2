"""Long-lived event streams (docs/streaming.md, issue 24): what the first streaming tests did not cover.

- An event stream whose client reads slower than events are made loses none: an event refused by a
  full output buffer (HTTP_STREAM_FULL, nothing queued) is sent again once there is room, in both
  forms of GET /v1/events (coroutine, and ?callback=true: continuations, no coroutine stack). Before
  the fix the coroutine form dropped every refused event.
- The callback form sends what the coroutine form sends, resumes after Last-Event-ID, and a client
  leaving ends it (cancelled, counted) without a continuation running into freed memory.
- The coroutine form whose stack was given back during a long wait (async_await_idle) sends what
  it would have sent, waits for a drain the same way, and a client leaving then is cancelled.
- timeouts.stream_idle_ms ends a stream whose producer wrote nothing for that long (off by default).
- With half_close "answer", a streamed upload cut off by the client's FIN is a client gone mid-body
  (cancelled at once), not a request left waiting for body_ms (found by fuzz_body_stream).
"""

import json
import socket
import time
import unittest

from apiary_harness import ServerTestMixin, build_request, request
from test_83_streaming import events_of, parse_sse


def metric(sock, name):
    resp = request(sock, "GET", "/metrics")
    for line in resp.body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


def wait_cancelled(test, at_least):
    """Waits (up to 10 s) until apiary_http_cancelled_total reaches at_least, and asserts it did."""
    deadline = time.monotonic() + 10
    while True:
        with test.server.connect() as m:
            now = metric(m, "apiary_http_cancelled_total")
        if now >= at_least or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    test.assertGreaterEqual(now, at_least)


class LongEventStreamTest(ServerTestMixin, unittest.TestCase):
    # A small output bound, so a client that does not read fills it soon after the kernel's buffers.
    CONFIG = {"limits": {"output_buffer_bytes": 4096}, "sse": {"heartbeat_ms": 0}}

    def slow_reader_gets_every_event(self, extra):
        # ~9 MB of events (multi-line data): far more than the loopback socket buffers hold, so the
        # server meets a full output buffer many times while the client is not reading.
        count = 100000
        with self.server.connect(timeout=60, rcvbuf=4096) as s:
            s.sendall(build_request("GET", f"/v1/events?count={count}&interval_ms=0&multiline=true{extra}"))
            time.sleep(1.5)
            from apiary_harness import read_response
            resp = read_response(s, timeout=120)
        self.assertEqual(resp.status, 200)
        events = events_of(parse_sse(resp.body.decode()))
        ids = [int(e["id"]) for e in events]
        self.assertEqual(len(ids), count, f"events lost: first gap after {next((a for a, b in zip(ids, ids[1:]) if b != a + 1), None)}")
        self.assertEqual(ids, list(range(1, count + 1)))
        self.assertEqual(json.loads(events[-1]["data"]), {"seq": count, "count": count})

    def test_slow_reader_loses_no_event_coroutine(self):
        self.slow_reader_gets_every_event("")

    def test_slow_reader_loses_no_event_callback(self):
        self.slow_reader_gets_every_event("&callback=true")

    def test_callback_form_sends_what_the_coroutine_sends(self):
        with self.server.connect(timeout=20) as s:
            a = request(s, "GET", "/v1/events?count=4&interval_ms=20", timeout=20)
            b = request(s, "GET", "/v1/events?count=4&interval_ms=20&callback=true", timeout=20)
            c = request(s, "GET", "/v1/events?count=4&interval_ms=0&callback=true",
                        headers={"Last-Event-ID": "2"}, timeout=20)
        self.assertEqual(a.status, 200)
        self.assertEqual(b.status, 200)
        self.assertEqual(a.body, b.body)
        self.assertEqual([e["id"] for e in events_of(parse_sse(c.body.decode()))], ["3", "4"])

    def test_callback_form_client_leaving_is_cancelled(self):
        with self.server.connect() as m:
            before = metric(m, "apiary_http_cancelled_total")
        for _ in range(5):
            with self.server.connect(timeout=10) as s:
                s.sendall(build_request("GET", "/v1/events?count=3&interval_ms=60000&callback=true"))
                s.settimeout(10)
                data = b""
                while b"id: 1" not in data:
                    more = s.recv(65536)
                    self.assertTrue(more, "closed before the first event")
                    data += more
        wait_cancelled(self, before + 5)
        with self.server.connect() as s:
            self.assertEqual(request(s, "GET", "/v1/hello").status, 200)


class IdleCoroutineStreamTest(ServerTestMixin, unittest.TestCase):
    """The coroutine form of /v1/events awaits with async_await_idle: a wait of more than a loop tick
    (1-2 s) has its stack copied out and given back, and copied back before the coroutine goes on.
    Waits of 2.5 s make sure that happens; what the client sees must not change."""
    CONFIG = {"limits": {"output_buffer_bytes": 4096}, "sse": {"heartbeat_ms": 0}}

    def test_stream_goes_on_after_its_stack_was_given_back(self):
        with self.server.connect() as m:
            before = metric(m, "apiary_coroutine_stacks_given_back_total")
        with self.server.connect(timeout=30) as s:
            a = request(s, "GET", "/v1/events?count=3&interval_ms=2500&multiline=true", timeout=30)
            b = request(s, "GET", "/v1/events?count=3&interval_ms=0&multiline=true&callback=true", timeout=30)
        self.assertEqual(a.status, 200)
        self.assertEqual(a.body, b.body)
        self.assertEqual([e["id"] for e in events_of(parse_sse(a.body.decode()))], ["1", "2", "3"])
        with self.server.connect() as m:
            given_back = metric(m, "apiary_coroutine_stacks_given_back_total") - before
        self.assertGreaterEqual(given_back, 1, "no wait of 2.5 s had its stack given back")

    def test_slow_reader_drain_after_its_stack_was_given_back(self):
        # Not reading for 2.5 s: the coroutine waits for a drain long enough to be given back.
        count = 3000
        with self.server.connect(timeout=60, rcvbuf=4096) as s:
            s.sendall(build_request("GET", f"/v1/events?count={count}&interval_ms=0&multiline=true"))
            time.sleep(2.5)
            from apiary_harness import read_response
            resp = read_response(s, timeout=60)
        self.assertEqual(resp.status, 200)
        ids = [int(e["id"]) for e in events_of(parse_sse(resp.body.decode()))]
        self.assertEqual(ids, list(range(1, count + 1)))

    def test_client_leaving_a_given_back_stream_is_cancelled(self):
        with self.server.connect() as m:
            before = metric(m, "apiary_http_cancelled_total")
        socks = []
        for _ in range(5):
            s = self.server.connect(timeout=10)
            s.sendall(build_request("GET", "/v1/events?count=3&interval_ms=60000"))
            data = b""
            while b"id: 1" not in data:
                more = s.recv(65536)
                self.assertTrue(more, "closed before the first event")
                data += more
            socks.append(s)
        time.sleep(2.5)  # every one of them given back by now
        for s in socks:
            s.close()
        wait_cancelled(self, before + 5)
        with self.server.connect() as s:
            self.assertEqual(request(s, "GET", "/v1/hello").status, 200)
            resp = request(s, "GET", "/v1/events?count=2&interval_ms=0")
            self.assertEqual([e["id"] for e in events_of(parse_sse(resp.body.decode()))], ["1", "2"])


class StreamIdleTimeoutTest(ServerTestMixin, unittest.TestCase):
    """timeouts.stream_idle_ms: a producer silent for that long is cut off; the SSE heartbeat (every
    100 ms here) does not count as the producer speaking."""

    CONFIG = {"timeouts": {"stream_idle_ms": 600}, "sse": {"heartbeat_ms": 100}}

    def test_silent_producer_is_cut_off(self):
        with self.server.connect() as m:
            before = metric(m, "apiary_http_stream_idle_closed_total")
        with self.server.connect(timeout=30) as s:
            t0 = time.monotonic()
            s.sendall(build_request("GET", "/v1/events?count=3&interval_ms=60000"))
            s.settimeout(30)
            data = b""
            while True:
                more = s.recv(65536)
                if not more:
                    break
                data += more
            elapsed = time.monotonic() - t0
        self.assertIn(b"id: 1\n", data)
        self.assertIn(b": heartbeat", data, "heartbeats went on while the producer was silent")
        self.assertNotIn(b"id: 2\n", data)
        self.assertFalse(data.endswith(b"0\r\n\r\n"), "a cut-off stream must not look ended")
        # 600 ms of silence; generous upper bound for a loaded machine, far below the 60 s interval
        self.assertGreaterEqual(elapsed, 0.5)
        self.assertLess(elapsed, 20)
        with self.server.connect() as m:
            self.assertGreaterEqual(metric(m, "apiary_http_stream_idle_closed_total"), before + 1)
            self.assertEqual(request(m, "GET", "/v1/hello").status, 200)

    def test_producer_writing_in_time_is_not_cut(self):
        # events 200 ms apart for ~2 s: far past 600 ms in total, never 600 ms silent
        with self.server.connect(timeout=30) as s:
            resp = request(s, "GET", "/v1/events?count=10&interval_ms=200", timeout=30)
            self.assertEqual(resp.status, 200)
            ids = [e["id"] for e in events_of(parse_sse(resp.body.decode()))]
            self.assertEqual(ids, [str(i) for i in range(1, 11)])
            self.assertEqual(request(s, "GET", "/v1/hello").status, 200, "keep-alive after the stream")


class HalfClosedUploadTest(ServerTestMixin, unittest.TestCase):
    CONFIG = {"half_close": "answer", "timeouts": {"body_ms": 60000}}

    def test_fin_mid_streamed_body_cancels_at_once(self):
        with self.server.connect() as m:
            before = metric(m, "apiary_http_cancelled_total")
        with self.server.connect(timeout=30) as s:
            s.sendall(b"POST /v1/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"42\r\nonly a few bytes of sixty-six")
            time.sleep(0.3)
            t0 = time.monotonic()
            s.shutdown(socket.SHUT_WR)
            s.settimeout(30)
            data = b""
            while True:
                more = s.recv(65536)
                if not more:
                    break
                data += more
            elapsed = time.monotonic() - t0
        # before the fix: nothing until body_ms (60 s here), then 408
        self.assertLess(elapsed, 20, "the connection waited for a body that can never come")
        self.assertEqual(data, b"", "a client gone mid-body gets no answer")
        wait_cancelled(self, before + 1)

    def test_fin_after_a_whole_streamed_body_is_answered(self):
        with self.server.connect(timeout=30) as s:
            s.sendall(b"POST /v1/upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                      b"5\r\nhello\r\n0\r\n\r\n")
            s.shutdown(socket.SHUT_WR)
            from apiary_harness import read_response
            resp = read_response(s, timeout=30)
        self.assertEqual(resp.status, 200)
        self.assertEqual(json.loads(resp.body)["bytes"], 5)


if __name__ == "__main__":
    unittest.main()
