"""Timeouts: header (slowloris, stalled request line), body, idle keep-alive, and write (a client that
pipelines and never reads). Timeouts are configured at 500 ms so every case takes about a second; the
asserted windows are generous on the late side (scheduling jitter) but tight enough on the early side
to catch a timer that never waits."""

import select
import time
import unittest

from apiary_harness import (ServerTestMixin, build_request, drain_until_closed, read_response, readable,
                            request)

TIMEOUT_MS = 500
TIMEOUT_S = TIMEOUT_MS / 1000
EARLY = TIMEOUT_S * 0.8   # an answer before this did not wait for the timeout
LATE = TIMEOUT_S + 2.5    # an answer after this means the timer is missing or far off


class RequestTimeoutsTest(ServerTestMixin, unittest.TestCase):
    CONFIG = {"timeouts": {"header_ms": TIMEOUT_MS, "body_ms": TIMEOUT_MS, "keepalive_ms": TIMEOUT_MS,
                           "write_ms": TIMEOUT_MS, "linger_ms": TIMEOUT_MS}}

    def assert408ThenClose(self, sock, started):
        resp = read_response(sock, timeout=LATE)
        elapsed = time.monotonic() - started
        self.assertProblem(resp, 408)
        self.assertGreaterEqual(elapsed, EARLY, "408 came before the timeout could have expired")
        self.assertLessEqual(elapsed, LATE)
        self.assertClosedByServer(sock)

    def test_slowloris_headers_get_408(self):
        # One byte every 100 ms of a header block that never ends. The header timeout runs from the
        # first byte of the request, so trickling does not extend it.
        data = build_request("GET", "/v1/hello", {"X-Slow": "s" * 200})[:-2]  # never the final CRLF
        with self.server.connect() as sock:
            started = time.monotonic()
            for i in range(min(len(data), int(LATE / 0.1) + 5)):  # bounded: stops well after LATE
                try:
                    sock.send(data[i:i + 1])
                except (BrokenPipeError, ConnectionResetError):
                    break
                # Waiting via select both paces the trickle and notices the answer at once.
                if readable(sock, 0.1):
                    break
            self.assert408ThenClose(sock, started)
        self.assertServing(self.server)

    def test_stalled_request_line_gets_408(self):
        with self.server.connect() as sock:
            sock.sendall(b"GET /v1/hel")
            started = time.monotonic()
            self.assert408ThenClose(sock, started)
        self.assertServing(self.server)

    def test_slow_but_timely_headers_are_served(self):
        # Split over ~0.2 s, inside header_ms: no 408.
        data = build_request("GET", "/v1/hello")
        with self.server.connect() as sock:
            for off in range(0, len(data), len(data) // 3 + 1):
                sock.sendall(data[off:off + len(data) // 3 + 1])
                time.sleep(0.07)
            self.assertHello(read_response(sock))

    def test_body_too_slow_gets_408(self):
        head = build_request("POST", "/v1/echo", [("Content-Type", "application/json"),
                                                   ("Content-Length", "100")])
        with self.server.connect() as sock:
            sock.sendall(head + b'{"a":"1234')  # 10 of the 100 body bytes, then nothing
            started = time.monotonic()
            self.assert408ThenClose(sock, started)
        self.assertServing(self.server)

    def test_slow_but_timely_body_is_served(self):
        body = b'{"slow":"but fine"}'
        head = build_request("POST", "/v1/echo", [("Content-Type", "application/json"),
                                                   ("Content-Length", str(len(body)))])
        with self.server.connect() as sock:
            sock.sendall(head + body[:5])
            time.sleep(0.15)
            sock.sendall(body[5:])
            self.assertJson(read_response(sock), 200, {"slow": "but fine"})

    def test_idle_keepalive_is_closed_silently(self):
        with self.server.connect() as sock:
            self.assertHello(request(sock, "GET", "/v1/hello"))
            idle_from = time.monotonic()
            # recv must return b'' (or a reset) without any bytes first: no 408 on an idle connection.
            self.assertClosedByServer(sock, timeout=LATE, silently=True)
            self.assertGreaterEqual(time.monotonic() - idle_from, EARLY)
        self.assertServing(self.server)

    def test_each_request_restarts_the_keepalive_timer(self):
        # Three gaps of half the timeout add up to more than one timeout: the timer must restart.
        with self.server.connect() as sock:
            for _ in range(3):
                self.assertHello(request(sock, "GET", "/v1/hello"))
                time.sleep(TIMEOUT_S / 2)
            self.assertHello(request(sock, "GET", "/v1/hello"))

    # The connection's timer is lazy (http_conn_timer_at): a request only moves the due time, and the
    # timer, set for an earlier one, fires and takes the rest. After requests that each moved it, the
    # idle close and a header deadline must still come on time, neither early nor never.
    def test_keepalive_after_many_requests_still_expires_on_time(self):
        with self.server.connect() as sock:
            for _ in range(4):
                self.assertHello(request(sock, "GET", "/v1/hello"))
                time.sleep(TIMEOUT_S * 0.3)
            self.assertHello(request(sock, "GET", "/v1/hello"))
            idle_from = time.monotonic()
            self.assertClosedByServer(sock, timeout=LATE, silently=True)
            self.assertGreaterEqual(time.monotonic() - idle_from, EARLY)

    def test_header_deadline_after_keepalive_requests_is_on_time(self):
        with self.server.connect() as sock:
            for _ in range(3):
                self.assertHello(request(sock, "GET", "/v1/hello"))
                time.sleep(TIMEOUT_S * 0.3)
            sock.sendall(b"GET /v1/hel")
            started = time.monotonic()
            self.assert408ThenClose(sock, started)

    def test_connection_that_never_sends_is_closed(self):
        # Nothing at all after connect: the connection must not be held forever. Whether it gets a
        # 408 first is not specified, so only the close is asserted.
        with self.server.connect() as sock:
            self.assertClosedByServer(sock, timeout=LATE, silently=False)
        self.assertServing(self.server)


class WriteTimeoutTest(ServerTestMixin, unittest.TestCase):
    """A client that pipelines a flood and never reads. With write_ms 500 the server must give up on
    it. Every other timeout is long, so the only thing that can end the connection within the test's
    bounds is the write timeout (an engine without one would, once the test drains, answer every
    queued request and then sit on an idle keep-alive connection until the drain deadline)."""

    CONFIG = {
        "limits": {"output_buffer_bytes": 65536},
        "timeouts": {"header_ms": 30000, "body_ms": 30000, "keepalive_ms": 30000, "write_ms": TIMEOUT_MS},
    }
    THREADS = 1  # one loop: a stuck connection blocking it would show as other clients not served

    def flood(self, sock, request_bytes, max_bytes=64 << 20, max_seconds=15.0):
        """Sends request_bytes repeatedly with non-blocking sends until the socket stays unwritable
        for 0.5 s (the server stopped reading), the server closes it, or a cap is hit.
        Returns (requests fully sent, closed_by_server)."""
        sock.setblocking(False)
        batch = request_bytes * max(1, 65536 // len(request_bytes))
        pending = b""
        total = 0
        stalled_since = None
        deadline = time.monotonic() + max_seconds
        closed = False
        while time.monotonic() < deadline and total < max_bytes:
            if not pending:
                pending = batch
            try:
                n = sock.send(pending)
            except BlockingIOError:
                n = 0
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            if n:
                total += n
                pending = pending[n:]
                stalled_since = None
                continue
            now = time.monotonic()
            if stalled_since is None:
                stalled_since = now
            elif now - stalled_since >= 0.5:
                break
            select.select([], [sock], [], 0.05)
        return total // len(request_bytes), closed

    def check_flood_is_cut_off(self, request_bytes, response_marker=b"HTTP/1.1 200 "):
        # A small receive window so the client side fills quickly.
        sock = self.server.connect(rcvbuf=4096)
        try:
            sent, closed_early = self.flood(sock, request_bytes)
            self.assertGreater(sent, 0)
            # Meanwhile (one event loop!) other clients are served promptly.
            started = time.monotonic()
            self.assertServing(self.server)
            self.assertLess(time.monotonic() - started, 2.0, "other clients stalled behind the flooder")
            # Well past write_ms without the client reading anything.
            time.sleep(TIMEOUT_S * 3)
            closed, data = drain_until_closed(sock, timeout=10.0)
            self.assertTrue(closed, f"connection not closed after {len(data)} bytes drained "
                                    f"({sent} requests sent, closed during flood: {closed_early})")
            answered = data.count(response_marker)
            self.assertLess(answered, sent, "every request was answered: the server never gave up writing")
        finally:
            sock.close()
        self.assertServing(self.server)

    def test_pipelined_gets_never_read_are_cut_off(self):
        self.check_flood_is_cut_off(build_request("GET", "/v1/hello"))

    def test_pipelined_big_echoes_never_read_are_cut_off(self):
        body = b'{"pad":"' + b"e" * 32000 + b'"}'
        req = build_request("POST", "/v1/echo", {"Content-Type": "application/json"}, body)
        self.check_flood_is_cut_off(req)


if __name__ == "__main__":
    unittest.main()
