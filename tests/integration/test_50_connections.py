"""Connection management: the max_connections cap (idle connections make room for new clients, and
when all are busy a new client gets 503 at once), descriptor exhaustion (no spinning), hundreds of concurrent keep-alive clients, and clients that vanish
mid-request or mid-response without disturbing anyone else."""

import os
import threading
import time
import unittest

from apiary_harness import (ServerTestMixin, abort, build_request, echo_request, read_response, readable,
                            request)


def send_what_fits(sock, data, seconds=0.3):
    """Non-blocking sends of data until it is all sent, the socket stays full, or seconds pass; the
    test never blocks on a server that (rightly) stopped reading."""
    sock.setblocking(False)
    deadline = time.monotonic() + seconds
    view = memoryview(data)
    while view and time.monotonic() < deadline:
        try:
            view = view[sock.send(view):]
        except BlockingIOError:
            time.sleep(0.01)
        except (BrokenPipeError, ConnectionResetError):
            break


def server_cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat (fields 14 and 15, clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


PARTIAL_HEAD = b"GET /v1/hello HTTP/1.1\r\nHost: t\r\n"  # mid-request: the connection is busy


def metric(server, name):
    with server.connect() as sock:
        body = request(sock, "GET", "/metrics").body.decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return int(float(line.split()[1]))
    raise AssertionError(f"{name} not in /metrics")


class DescriptorExhaustionTest(ServerTestMixin, unittest.TestCase):
    """The server runs out of file descriptors (EMFILE) long before max_connections, with every
    connection it holds mid-request (nothing idle to close): it must neither spin on accept nor crash,
    and once its clients finish, the waiting ones are accepted and served — the idle connections the
    finished clients leave are closed to give descriptors back."""
    SERVER_NOFILE = 40
    THREADS = 1
    CONFIG = {"max_connections": 1000}

    def test_emfile_pauses_accepting_without_spinning_then_resumes(self):
        # More connections than the server has descriptors: the kernel completes them all (backlog).
        socks = [self.server.connect() for _ in range(60)]
        try:
            for sock in socks:
                sock.sendall(PARTIAL_HEAD)
            time.sleep(0.3)
            cpu_before = server_cpu_seconds(self.server.proc.pid)
            time.sleep(1.0)
            cpu_used = server_cpu_seconds(self.server.proc.pid) - cpu_before
            self.assertLess(cpu_used, 0.3, "the server spins on accept while out of descriptors")
            self.assertTrue(self.server.wait_for_log(r"pausing accepts", timeout=2.0),
                            "no warning about descriptor exhaustion in the log")
            self.assertGreater(metric_or_none(self.server), 0)
            # Every client finishes its request: the accepted ones are answered at once, and the
            # rest as descriptors come back.
            for sock in socks:
                sock.sendall(b"\r\n")
            for sock in socks:
                sock.settimeout(10.0)
                self.assertHello(read_response(sock))
        finally:
            for sock in socks:
                sock.close()
        self.assertServing(self.server)


def metric_or_none(server):
    """accept errors so far, or 1 when /metrics cannot be reached right now (out of descriptors)."""
    try:
        return metric(server, "apiary_http_accept_errors_total")
    except (OSError, AssertionError):
        return 1


class ConnectionLimitTest(ServerTestMixin, unittest.TestCase):
    """At max_connections a new client is never left waiting in the backlog: the longest-idle
    keep-alive connection is closed to make room, and when every connection is busy the new client
    gets 503 with Retry-After and Connection: close at once."""
    CONFIG = {"max_connections": 4}
    THREADS = 1

    def test_idle_connections_make_room_oldest_first(self):
        held = [self.server.connect() for _ in range(4)]
        try:
            for sock in held:  # served, then idle on keep-alive; held[0] has been idle longest
                self.assertJson(request(sock, "GET", "/healthz"), 200, {"status": "ok"})
            self.assertHello(request(held[3], "GET", "/v1/hello"))  # ...and held[3] the shortest
            started = time.monotonic()
            with self.server.connect() as newcomer:
                self.assertHello(request(newcomer, "GET", "/v1/hello", timeout=5.0))
            took = time.monotonic() - started
            self.assertLess(took, 0.5, f"a new client at the limit waited {took:.2f} s")
            self.assertClosedByServer(held[0])  # the longest idle made room, silently
            for sock in held[1:]:
                self.assertHello(request(sock, "GET", "/v1/hello"))
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        self.assertGreaterEqual(metric(self.server, "apiary_http_connections_reclaimed_total"), 1)
        # logged at most once a second, so an earlier test's line may be the one
        self.assertTrue(self.server.wait_for_log(r"at max_connections \(4 on this loop\): closed", timeout=2.0))

    def test_silent_connections_make_room_too(self):
        # Connected and sent nothing for over a second: nothing is lost by closing them either.
        held = [self.server.connect() for _ in range(4)]
        try:
            time.sleep(1.2)
            with self.server.connect() as newcomer:
                self.assertHello(request(newcomer, "GET", "/v1/hello", timeout=5.0))
            self.assertClosedByServer(held[0])
        finally:
            for sock in held:
                sock.close()

    def test_busy_connections_mean_503_at_once(self):
        held = [self.server.connect() for _ in range(4)]
        try:
            for sock in held:
                sock.sendall(PARTIAL_HEAD)
            time.sleep(0.2)
            started = time.monotonic()
            with self.server.connect() as newcomer:
                resp = request(newcomer, "GET", "/v1/hello", timeout=5.0)
                took = time.monotonic() - started
                doc = self.assertProblem(resp, 503)
                self.assertIn("connection limit", doc["detail"])
                self.assertEqual(resp.headers.get("Retry-After"), "1")
                self.assertIn("close", resp.connection_tokens())
                self.assertClosedByServer(newcomer)
            self.assertLess(took, 0.5, f"the 503 took {took:.2f} s")
            for sock in held:  # the busy ones were never disturbed
                sock.sendall(b"\r\n")
                self.assertHello(read_response(sock))
        finally:
            for sock in held:
                sock.close()
        time.sleep(0.2)
        self.assertGreaterEqual(metric(self.server, "apiary_http_connections_refused_total"), 1)
        self.assertTrue(self.server.wait_for_log(r"at max_connections \(4 on this loop\): .* answered", timeout=2.0))

    def test_over_limit_clients_are_bounded_then_wait_in_the_backlog(self):
        held = [self.server.connect() for _ in range(4)]
        over, waiting = [], None
        try:
            for sock in held:
                sock.sendall(PARTIAL_HEAD)
            time.sleep(0.2)
            over = [self.server.connect() for _ in range(64)]  # accepted over the limit, silent
            time.sleep(0.3)
            waiting = self.server.connect()
            waiting.sendall(build_request("GET", "/v1/hello"))
            self.assertFalse(readable(waiting, 0.5), "more than 64 clients were accepted over the limit")
            over.pop().close()  # one over-limit place frees: the waiting client gets its 503
            self.assertProblem(read_response(waiting, timeout=5.0), 503)
        finally:
            for sock in held + over + ([waiting] if waiting else []):
                sock.close()

    def test_slot_freed_by_server_side_close_is_reused(self):
        # A connection the server itself ends (Connection: close) must give its slot back too.
        held = [self.server.connect() for _ in range(3)]
        try:
            for sock in held:
                sock.sendall(PARTIAL_HEAD)  # busy: nothing to reclaim, so only a freed slot serves
            for _ in range(10):
                with self.server.connect() as sock:
                    resp = request(sock, "GET", "/v1/hello", {"Connection": "close"})
                    self.assertHello(resp)
                    self.assertClosedByServer(sock)
        finally:
            for sock in held:
                sock.close()


class ManyConnectionsTest(ServerTestMixin, unittest.TestCase):
    THREADS = 2
    RAISE_NOFILE = True  # 500 client sockets here, 500 accepted ones in the child
    CLIENTS = 500
    WORKERS = 10
    ROUNDS = 3

    def test_500_concurrent_keepalive_connections(self):
        errors = []
        served = []
        lock = threading.Lock()
        per_worker = self.CLIENTS // self.WORKERS
        all_connected = threading.Barrier(self.WORKERS, timeout=30)

        def worker(w):
            socks = []
            try:
                for _ in range(per_worker):
                    socks.append(self.server.connect(timeout=10.0))
                # Every connection of every worker is open at once before anyone sends.
                all_connected.wait()
                for rnd in range(self.ROUNDS):
                    # Send on all of this worker's connections, then read all: 50 requests in flight.
                    for i, sock in enumerate(socks):
                        if (i + rnd) % 2:
                            sock.sendall(echo_request({"w": w, "c": i, "r": rnd}))
                        else:
                            sock.sendall(build_request("GET", "/v1/hello"))
                    for i, sock in enumerate(socks):
                        resp = read_response(sock, timeout=10.0)
                        want = {"w": w, "c": i, "r": rnd} if (i + rnd) % 2 else {"message": "Hello, World!"}
                        if resp.status != 200 or resp.json() != want:
                            raise AssertionError(f"worker {w} conn {i} round {rnd}: {resp!r}")
                        with lock:
                            served.append(1)
            except Exception as e:  # noqa: BLE001 - collected and reported by the test thread
                with lock:
                    errors.append(f"worker {w}: {type(e).__name__}: {e}")
                try:
                    all_connected.abort()
                except threading.BrokenBarrierError:
                    pass
            finally:
                for sock in socks:
                    sock.close()

        threads = [threading.Thread(target=worker, args=(w,), daemon=True) for w in range(self.WORKERS)]
        for t in threads:
            t.start()
        deadline = time.monotonic() + 60
        for t in threads:
            t.join(max(0.1, deadline - time.monotonic()))
        self.assertFalse(any(t.is_alive() for t in threads), "workers did not finish within 60 s")
        self.assertEqual(errors, [])
        self.assertEqual(len(served), self.CLIENTS * self.ROUNDS)
        self.assertServing(self.server)


class DisconnectTest(ServerTestMixin, unittest.TestCase):
    def check_others_unaffected(self, bystander):
        # A keep-alive connection opened before the incident still works, and so does a new one.
        self.assertHello(request(bystander, "GET", "/v1/hello"))
        self.assertServing(self.server)

    def half_body_request(self):
        head = build_request("POST", "/v1/echo", [("Content-Type", "application/json"),
                                                   ("Content-Length", "100")])
        return head + b'{"half":"' + b"h" * 41  # 50 of 100 body bytes

    def test_disconnect_mid_body(self):
        with self.server.connect() as bystander:
            self.assertHello(request(bystander, "GET", "/v1/hello"))
            sock = self.server.connect()
            sock.sendall(self.half_body_request())
            time.sleep(0.1)
            sock.close()
            time.sleep(0.1)
            self.check_others_unaffected(bystander)

    def test_reset_mid_body(self):
        with self.server.connect() as bystander:
            self.assertHello(request(bystander, "GET", "/v1/hello"))
            sock = self.server.connect()
            sock.sendall(self.half_body_request())
            time.sleep(0.1)
            abort(sock)  # RST instead of FIN
            time.sleep(0.1)
            self.check_others_unaffected(bystander)

    def test_disconnect_mid_headers(self):
        with self.server.connect() as bystander:
            self.assertHello(request(bystander, "GET", "/v1/hello"))
            for closer in (lambda s: s.close(), abort):
                sock = self.server.connect()
                sock.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Partial: ab")
                time.sleep(0.05)
                closer(sock)
            time.sleep(0.1)
            self.check_others_unaffected(bystander)

    def test_disconnect_with_responses_unread(self):
        # The server is still writing answers when the peer resets: its writes fail with EPIPE or
        # ECONNRESET, which must not kill the process (SIGPIPE) or the loop.
        payload = echo_request({"pad": "p" * 20000}) * 50 + build_request("GET", "/v1/hello") * 200
        with self.server.connect() as bystander:
            self.assertHello(request(bystander, "GET", "/v1/hello"))
            for _ in range(5):
                sock = self.server.connect()
                send_what_fits(sock, payload)
                time.sleep(0.05)
                abort(sock)
            time.sleep(0.2)
            self.check_others_unaffected(bystander)

    def test_many_abrupt_clients(self):
        with self.server.connect() as bystander:
            for i in range(100):
                sock = self.server.connect()
                if i % 3 == 0:
                    sock.sendall(build_request("GET", "/v1/hello"))
                elif i % 3 == 1:
                    sock.sendall(self.half_body_request())
                abort(sock)
            time.sleep(0.2)
            self.check_others_unaffected(bystander)


if __name__ == "__main__":
    unittest.main()
