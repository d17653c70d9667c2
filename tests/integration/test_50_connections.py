"""Connection management: the max_connections cap (excess connections wait in the kernel backlog and
are served once a slot frees), hundreds of concurrent keep-alive clients, and clients that vanish
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


class DescriptorExhaustionTest(ServerTestMixin, unittest.TestCase):
    """The server runs out of file descriptors (EMFILE) long before max_connections: it must neither
    spin on accept nor crash, keep serving the connections it has, and accept the waiting ones once
    descriptors come back."""
    SERVER_NOFILE = 40
    THREADS = 1
    CONFIG = {"max_connections": 1000}

    def test_emfile_pauses_accepting_without_spinning(self):
        # More connections than the server has descriptors: the kernel completes them all (backlog).
        socks = [self.server.connect() for _ in range(60)]
        try:
            for sock in socks:
                sock.sendall(build_request("GET", "/v1/hello"))
            cpu_before = server_cpu_seconds(self.server.proc.pid)
            time.sleep(1.0)
            cpu_used = server_cpu_seconds(self.server.proc.pid) - cpu_before
            self.assertLess(cpu_used, 0.3, "the server spins on accept while out of descriptors")
            self.assertTrue(self.server.wait_for_log(r"pausing accepts", timeout=2.0),
                            "no warning about descriptor exhaustion in the log")
            # The ones it did accept were answered; the rest wait. Free descriptors by closing the
            # answered ones, and every waiting client gets its answer.
            answered, waiting = [], []
            for sock in socks:
                (answered if readable(sock, 0.05) else waiting).append(sock)
            self.assertGreater(len(answered), 0)
            self.assertGreater(len(waiting), 0, "the descriptor limit was never reached")
            for sock in answered:
                self.assertHello(read_response(sock))
                sock.close()
            for sock in waiting:
                sock.settimeout(5.0)
                self.assertHello(read_response(sock))
        finally:
            for sock in socks:
                sock.close()
        self.assertServing(self.server)


class MaxConnectionsTest(ServerTestMixin, unittest.TestCase):
    CONFIG = {"max_connections": 4}
    THREADS = 1

    def test_fifth_connection_waits_for_a_free_slot(self):
        held = [self.server.connect() for _ in range(4)]
        waiting = None
        try:
            # Each of the four is accepted and served, then sits idle on keep-alive.
            for sock in held:
                self.assertJson(request(sock, "GET", "/healthz"), 200, {"status": "ok"})
            # The 5th completes the TCP handshake (kernel backlog) but must not be served.
            waiting = self.server.connect()
            waiting.sendall(build_request("GET", "/v1/hello"))
            self.assertFalse(readable(waiting, 0.5), "a 5th connection was served over max_connections=4")
            # The held ones are unaffected.
            self.assertHello(request(held[1], "GET", "/v1/hello"))
            # Freeing one slot lets the waiting connection in, and its request is answered.
            held.pop(0).close()
            self.assertHello(read_response(waiting, timeout=5.0))
            for sock in held:
                self.assertHello(request(sock, "GET", "/v1/hello"))
        finally:
            for sock in held:
                sock.close()
            if waiting is not None:
                waiting.close()
        # All slots released again: a new client is served (allow the server to notice the closes).
        time.sleep(0.2)
        self.assertServing(self.server)

    def test_slot_freed_by_server_side_close_is_reused(self):
        # A connection the server itself ends (Connection: close) must give its slot back too.
        held = [self.server.connect() for _ in range(3)]
        try:
            for sock in held:
                self.assertJson(request(sock, "GET", "/healthz"), 200, {"status": "ok"})
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
