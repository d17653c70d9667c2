"""Graceful shutdown on SIGTERM: idle connections closed and a quick exit 0; in-flight requests allowed
to finish (answered with Connection: close); /readyz 503 while draining; listeners closed to new
connections; and drain_timeout_ms bounding a request that never completes. With drain_delay_ms, the
listener first stays open that long, /readyz answering 503 to new and kept-alive connections while
everything else is served, so a load balancer's probe sees the 503 before connections are refused; a
second signal then stops at once. Each test starts and drains its own server."""

import json
import time
import unittest

from apiary_harness import (ApiaryAssertions, ApiaryServer, build_request, expect_closed, read_response,
                            refuses_new_requests, request)


def half_sent_echo(value):
    """(first part, rest) of a POST /v1/echo: all headers plus half the body, then the other half."""
    body = json.dumps(value).encode()
    head = build_request("POST", "/v1/echo", [("Content-Type", "application/json"),
                                               ("Content-Length", str(len(body)))])
    half = len(body) // 2
    return head + body[:half], body[half:]


class ShutdownTest(ApiaryAssertions, unittest.TestCase):
    def assertExitsZero(self, server, within):
        rc = server.wait(within)
        self.assertIsNotNone(rc, f"still running {within} s after SIGTERM; log:\n{server.log_text()}")
        self.assertEqual(rc, 0, f"exit code {rc}; log:\n{server.log_text()}")

    def test_sigterm_without_connections_exits_zero(self):
        with ApiaryServer({}, threads=2) as server:
            self.assertServing(server)
            started = time.monotonic()
            server.sigterm()
            self.assertExitsZero(server, 5)
            self.assertLess(time.monotonic() - started, 5)

    def test_sigterm_closes_idle_keepalive_connections(self):
        # Several loops, several idle keep-alive connections: all closed, exit 0 within 5 s although
        # keepalive_ms (60 s) and drain_timeout_ms (10 s) are both longer.
        with ApiaryServer({}, threads=2) as server:
            socks = [server.connect() for _ in range(6)]
            try:
                for sock in socks:
                    self.assertHello(request(sock, "GET", "/v1/hello"))
                started = time.monotonic()
                server.sigterm()
                for i, sock in enumerate(socks):
                    # Closed silently: no request is pending, so there is nothing to answer.
                    self.assertTrue(expect_closed(sock, 5.0, allow_data=False), f"idle connection {i} not closed")
                self.assertExitsZero(server, 5)
                self.assertLess(time.monotonic() - started, 5)
            finally:
                for sock in socks:
                    sock.close()

    def test_in_flight_request_finishes_after_sigterm(self):
        value = {"in": "flight", "data": list(range(100))}
        first, rest = half_sent_echo(value)
        with ApiaryServer({}, threads=1) as server:
            with server.connect() as sock:
                sock.sendall(first)
                time.sleep(0.2)  # the server has read the headers and half the body
                server.sigterm()
                time.sleep(0.3)  # ... and has started draining
                self.assertTrue(server.alive(), "exited with a request in flight")
                sock.sendall(rest)
                resp = read_response(sock)
                self.assertJson(resp, 200, value)
                self.assertIn("close", resp.connection_tokens(), "a draining server must say it closes")
                self.assertClosedByServer(sock)
            self.assertExitsZero(server, 5)

    def test_readyz_is_503_while_draining(self):
        # The probe goes over a keep-alive connection opened before SIGTERM. To make "while draining"
        # deterministic, its request line is already sent before the signal (so the connection is
        # mid-request, not idle) and the rest of the request follows the signal.
        with ApiaryServer({}, threads=1) as server:
            with server.connect() as probe, server.connect() as stuck:
                self.assertJson(request(probe, "GET", "/readyz"), 200, {"status": "ready"})
                # Keeps the server draining for the whole test.
                stuck_first, stuck_rest = half_sent_echo({"keep": "draining"})
                stuck.sendall(stuck_first)
                probe.sendall(b"GET /readyz HTTP/1.1\r\n")
                time.sleep(0.2)
                server.sigterm()
                time.sleep(0.3)
                probe.sendall(b"Host: 127.0.0.1\r\n\r\n")
                self.assertProblem(read_response(probe), 503)
                # Let the stuck request finish so the server can exit cleanly.
                stuck.sendall(stuck_rest)
                self.assertJson(read_response(stuck), 200, {"keep": "draining"})
            self.assertExitsZero(server, 5)

    def test_drain_delay_answers_readyz_503_with_the_listener_open(self):
        delay_ms = 3000  # long enough for the checks below on a loaded 2-core machine
        with ApiaryServer({"drain_delay_ms": delay_ms}, threads=2) as server:
            with server.connect() as kept:
                self.assertJson(request(kept, "GET", "/readyz"), 200, {"status": "ready"})
                started = time.monotonic()
                server.sigterm()
                self.assertTrue(server.wait_for_log(r"SIGTERM received: /readyz 503 for 3000 ms", timeout=2.0))
                # A probe on a new connection (what a balancer's health check opens) sees the 503 ...
                for _ in range(4):  # both loops
                    with server.connect() as probe:
                        resp = request(probe, "GET", "/readyz")
                        self.assertProblem(resp, 503)
                        self.assertEqual(resp.headers.get("Retry-After"), "5")
                        # ... and traffic still routed here is served, on a connection kept alive.
                        hello = request(probe, "GET", "/v1/hello")
                        self.assertHello(hello)
                        self.assertNotIn("close", hello.connection_tokens())
                # So is a connection opened before the signal, which stays open meanwhile.
                self.assertProblem(request(kept, "GET", "/readyz"), 503)
                self.assertJson(request(kept, "GET", "/healthz"), 200, {"status": "ok"})
                self.assertLess(time.monotonic() - started, delay_ms / 1000, "the checks took longer than the delay")
                # Then the drain proper: new connections refused, the kept one closed, exit 0.
                how = refuses_new_requests(server.address, deadline_s=delay_ms / 1000 + 3)
                self.assertIn(how, ("refused", "closed"), "still serving new connections after the delay")
                self.assertGreaterEqual(time.monotonic() - started, delay_ms / 1000 * 0.8)
                self.assertTrue(expect_closed(kept, 5.0, allow_data=False), "idle connection not closed")
            self.assertExitsZero(server, 5)

    def test_second_signal_ends_the_drain_delay(self):
        with ApiaryServer({"drain_delay_ms": 60000}, threads=1) as server:
            self.assertServing(server)
            server.sigterm()
            self.assertTrue(server.wait_for_log(r"SIGTERM received: /readyz 503", timeout=2.0))
            started = time.monotonic()
            server.sigterm()
            self.assertExitsZero(server, 5)
            self.assertLess(time.monotonic() - started, 5)
            self.assertIn("second signal: stopping", server.log_text())

    def test_new_connections_not_served_while_draining(self):
        with ApiaryServer({}, threads=2) as server:
            with server.connect() as stuck:
                first, rest = half_sent_echo({"hold": 1})
                stuck.sendall(first)
                time.sleep(0.2)
                server.sigterm()
                time.sleep(0.2)
                self.assertTrue(server.alive())
                how = refuses_new_requests(server.address, deadline_s=3.0)
                self.assertIn(how, ("refused", "closed"),
                              "new connections were still accepted and answered while draining")
                stuck.sendall(rest)
                self.assertJson(read_response(stuck), 200, {"hold": 1})
            self.assertExitsZero(server, 5)

    def test_drain_timeout_bounds_a_stuck_request(self):
        drain_ms = 500
        # body_ms is long so only the drain deadline can end the stuck request.
        with ApiaryServer({"drain_timeout_ms": drain_ms, "timeouts": {"body_ms": 30000}}, threads=1) as server:
            with server.connect() as sock:
                first, _ = half_sent_echo({"never": "finished"})
                sock.sendall(first)
                time.sleep(0.2)
                started = time.monotonic()
                server.sigterm()
                self.assertExitsZero(server, drain_ms / 1000 + 3)
                self.assertGreaterEqual(time.monotonic() - started, drain_ms / 1000 * 0.8,
                                        "did not wait for the in-flight request at all")
                # Whatever it said on the way out, the connection is gone.
                self.assertClosedByServer(sock, timeout=2.0, silently=False)


if __name__ == "__main__":
    unittest.main()
