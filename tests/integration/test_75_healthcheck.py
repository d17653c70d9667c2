"""`apiary --healthcheck` and APIARY_LISTEN, running the binary directly: exit 0 when a running apiary
answers GET /healthz with 200; exit 1 when nothing listens, when the port answers anything else (another
status, another protocol, silence, a cut answer); the address taken from --listen, APIARY_LISTEN or the
config file in that order, with wildcard hosts probed on loopback. Other answers come from FakePeer, a
loopback listener this file runs and stops itself."""

import json
import os
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from apiary_harness import LISTEN_RE, ServerTestMixin, apiary_bin, source_dir

RUN_TIMEOUT = 10
PROBE_TIMEOUT_S = 2.0  # HEALTHCHECK_TIMEOUT_MS in lib/app/healthcheck_internal.h


def shipped_config():
    return os.path.join(source_dir(), "config", "apiary.json")


def run(*args, env_listen=None, timeout=RUN_TIMEOUT):
    """Runs apiary with args and returns (CompletedProcess, seconds it took). env_listen: the value of
    APIARY_LISTEN, or None to run without it (whatever the caller's environment holds). A process still
    running at the timeout is killed (only this PID) and reported with returncode None."""
    env = {k: v for k, v in os.environ.items() if k != "APIARY_LISTEN"}
    if env_listen is not None:
        env["APIARY_LISTEN"] = env_listen
    start = time.monotonic()
    proc = subprocess.Popen([apiary_bin(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        rc = None
    return subprocess.CompletedProcess(proc.args, rc, out, err), time.monotonic() - start


def free_port(family=socket.AF_INET, host="127.0.0.1"):
    """A loopback port nothing listens on (bound once by the kernel's choice, then released)."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def ipv6_loopback_available():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


class FakePeer:
    """A loopback listener that accepts connections, reads each request head, then sends `reply` (bytes,
    or None for nothing) and closes when `close` is true, else holds the connection until stop().
    Records the request heads it read. Stops by itself on exit from the with-block."""

    def __init__(self, reply, close=True, host="127.0.0.1", family=socket.AF_INET):
        self.reply = reply
        self.close = close
        self.requests = []
        self._held = []
        self._stop = threading.Event()
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(8)
        self._sock.settimeout(0.1)
        self.port = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, name="fake-peer", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(5)
        self._sock.close()
        for conn in self._held:
            conn.close()
        return False

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.settimeout(PROBE_TIMEOUT_S + 1)
            head = b""
            try:
                while b"\r\n\r\n" not in head and len(head) < 65536:
                    chunk = conn.recv(4096)
                    if not chunk:
                        break
                    head += chunk
                self.requests.append(head)
                if self.reply is not None:
                    conn.sendall(self.reply)
            except OSError:
                pass
            if self.close:
                conn.close()
            else:
                self._held.append(conn)


class HealthcheckAgainstApiaryTest(ServerTestMixin, unittest.TestCase):
    """A real apiary (one per class) probed through every way of naming its address."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="apiary-hc-")
        self.addCleanup(self.tmp.cleanup)

    def write_config(self, config):
        path = os.path.join(self.tmp.name, "apiary.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f)
        return path

    def assertHealthy(self, res, elapsed, shown_address):
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(res.stdout, f"apiary: healthcheck: GET /healthz on {shown_address} answered 200\n")
        self.assertEqual(res.stderr, "")
        self.assertNotRegex(res.stdout, LISTEN_RE, "--healthcheck must not start a server")
        self.assertLess(elapsed, PROBE_TIMEOUT_S, "a healthy probe must not wait for the timeout")

    def test_listen_flag(self):
        port = self.server.port
        res, elapsed = run("--healthcheck", "--config", shipped_config(), "--listen", f"127.0.0.1:{port}")
        self.assertHealthy(res, elapsed, f"127.0.0.1:{port}")

    def test_config_listen(self):
        port = self.server.port
        path = self.write_config({"listen": f"127.0.0.1:{port}"})
        res, elapsed = run("--healthcheck", f"--config={path}")
        self.assertHealthy(res, elapsed, f"127.0.0.1:{port}")

    def test_wildcard_host_is_probed_on_loopback(self):
        port = self.server.port
        res, elapsed = run("--healthcheck", "--config", shipped_config(), "--listen", f"0.0.0.0:{port}")
        self.assertHealthy(res, elapsed, f"127.0.0.1:{port}")

    def test_apiary_listen_overrides_the_config(self):
        port = self.server.port
        path = self.write_config({"listen": f"127.0.0.1:{free_port()}"})
        res, elapsed = run("--healthcheck", "--config", path, env_listen=f"127.0.0.1:{port}")
        self.assertHealthy(res, elapsed, f"127.0.0.1:{port}")

    def test_listen_flag_overrides_apiary_listen(self):
        port = self.server.port
        res, elapsed = run("--healthcheck", "--config", shipped_config(), "--listen", f"127.0.0.1:{port}",
                           env_listen=f"127.0.0.1:{free_port()}")
        self.assertHealthy(res, elapsed, f"127.0.0.1:{port}")

    def test_empty_apiary_listen_is_unset(self):
        port = self.server.port
        path = self.write_config({"listen": f"127.0.0.1:{port}"})
        res, elapsed = run("--healthcheck", "--config", path, env_listen="")
        self.assertHealthy(res, elapsed, f"127.0.0.1:{port}")

    def test_repeated_probes_leave_the_server_serving(self):
        port = self.server.port
        for _ in range(20):
            res, _ = run("--healthcheck", "--config", shipped_config(), "--listen", f"127.0.0.1:{port}")
            self.assertEqual(res.returncode, 0, res.stderr)
        self.assertServing(self.server)


class HealthcheckFailureTest(unittest.TestCase):
    """Exit 1, one line on stderr, nothing on stdout, for everything that is not a 200 from /healthz."""

    def probe(self, port, host="127.0.0.1"):
        listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        return run("--healthcheck", "--config", shipped_config(), "--listen", listen)

    def assertUnhealthy(self, res, expected_stderr):
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertEqual(res.stdout, "")
        self.assertEqual(res.stderr, expected_stderr)

    def test_nothing_listens(self):
        port = free_port()
        res, elapsed = self.probe(port)
        self.assertUnhealthy(
            res, f"apiary: healthcheck: GET /healthz on 127.0.0.1:{port}: cannot connect: Connection refused\n")
        self.assertLess(elapsed, PROBE_TIMEOUT_S, "a refused connection must fail at once")

    def test_port_zero(self):
        res, _ = self.probe(0)
        self.assertEqual(res.returncode, 1, res.stdout + res.stderr)
        self.assertEqual(res.stdout, "")
        self.assertIn("the listen port is 0", res.stderr)

    def test_other_status(self):
        with FakePeer(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 2\r\n\r\n{}") as peer:
            res, _ = self.probe(peer.port)
        self.assertUnhealthy(
            res, f"apiary: healthcheck: GET /healthz on 127.0.0.1:{peer.port} answered 503 Service Unavailable\n")
        # What the probe sent: one request for /healthz, naming the host, asking to close afterwards.
        self.assertEqual(len(peer.requests), 1)
        lines = peer.requests[0].decode("latin-1").split("\r\n")
        self.assertEqual(lines[0], "GET /healthz HTTP/1.1")
        self.assertIn(f"Host: 127.0.0.1:{peer.port}", lines)
        self.assertIn("Connection: close", lines)
        self.assertEqual(lines[-2:], ["", ""], "the head must end with an empty line")

    def test_another_http_server(self):
        body = b"<html>not here</html>"
        reply = b"HTTP/1.0 404 Not Found\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (
            len(body), body)
        with FakePeer(reply, close=False) as peer:
            res, elapsed = self.probe(peer.port)
        self.assertUnhealthy(
            res, f"apiary: healthcheck: GET /healthz on 127.0.0.1:{peer.port} answered 404 Not Found\n")
        self.assertLess(elapsed, PROBE_TIMEOUT_S, "a complete answer must not wait for the close")

    def test_another_protocol(self):
        with FakePeer(b"SSH-2.0-OpenSSH_9.2p1\r\n", close=False) as peer:
            res, elapsed = self.probe(peer.port)
        self.assertUnhealthy(
            res, f"apiary: healthcheck: GET /healthz on 127.0.0.1:{peer.port}: the answer is not HTTP\n")
        self.assertLess(elapsed, PROBE_TIMEOUT_S, "a non-HTTP answer must fail at once")

    def test_silent_peer_times_out(self):
        with FakePeer(None, close=False) as peer:
            res, elapsed = self.probe(peer.port)
        self.assertUnhealthy(
            res, f"apiary: healthcheck: GET /healthz on 127.0.0.1:{peer.port}: no answer within 2000 ms\n")
        self.assertGreaterEqual(elapsed, PROBE_TIMEOUT_S - 0.1)
        self.assertLess(elapsed, PROBE_TIMEOUT_S + 2.0, "the timeout must bound the probe")

    def test_slow_partial_answer_times_out(self):
        with FakePeer(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n", close=False) as peer:
            res, elapsed = self.probe(peer.port)
        self.assertUnhealthy(
            res, f"apiary: healthcheck: GET /healthz on 127.0.0.1:{peer.port}: incomplete answer within 2000 ms\n")
        self.assertLess(elapsed, PROBE_TIMEOUT_S + 2.0)

    def test_closed_without_answer(self):
        with FakePeer(None) as peer:
            res, _ = self.probe(peer.port)
        self.assertUnhealthy(
            res, f"apiary: healthcheck: GET /healthz on 127.0.0.1:{peer.port}: "
                 "the connection was closed without an answer\n")

    def test_cut_answer_is_not_healthy(self):
        # The status line says 200 but the body never fully arrives: not a working server.
        with FakePeer(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"status\"") as peer:
            res, _ = self.probe(peer.port)
        self.assertUnhealthy(
            res, f"apiary: healthcheck: GET /healthz on 127.0.0.1:{peer.port}: "
                 "the connection was closed in the middle of the answer\n")

    def test_malformed_content_length(self):
        with FakePeer(b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n{}") as peer:
            res, _ = self.probe(peer.port)
        self.assertUnhealthy(
            res, f"apiary: healthcheck: GET /healthz on 127.0.0.1:{peer.port}: "
                 "the answer has a malformed Content-Length\n")

    def test_malformed_status_line(self):
        with FakePeer(b"HTTP/1.1 2OO OK\r\nContent-Length: 0\r\n\r\n") as peer:
            res, _ = self.probe(peer.port)
        self.assertUnhealthy(
            res, f"apiary: healthcheck: GET /healthz on 127.0.0.1:{peer.port}: malformed status line\n")

    def test_close_delimited_200_is_healthy(self):
        # No Content-Length: the body ends at the close, which the probe asked for.
        with FakePeer(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{\"status\":\"ok\"}") as peer:
            res, _ = self.probe(peer.port)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(res.stdout, f"apiary: healthcheck: GET /healthz on 127.0.0.1:{peer.port} answered 200\n")

    @unittest.skipUnless(ipv6_loopback_available(), "no IPv6 loopback (::1) on this machine")
    def test_ipv6_wildcard_is_probed_on_ipv6_loopback(self):
        with FakePeer(b"HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{\"status\":\"ok\"}", host="::1",
                      family=socket.AF_INET6) as peer:
            res, _ = self.probe(peer.port, host="::")
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        self.assertEqual(res.stdout, f"apiary: healthcheck: GET /healthz on [::1]:{peer.port} answered 200\n")
        self.assertIn(f"Host: [::1]:{peer.port}", peer.requests[0].decode("latin-1").split("\r\n"))


class ListenEnvironmentTest(unittest.TestCase):
    """APIARY_LISTEN for the server itself: a bad value exits 2 naming the variable; a good one is where
    the server listens when no --listen is given."""

    def test_bad_value_exits_2_naming_the_variable(self):
        for value in ("nonsense", "127.0.0.1:99999", "::1:8080", "127.0.0.1:"):
            for mode, extra in (("check-config", ["--check-config"]), ("start", ["--threads", "1"])):
                with self.subTest(value=value, mode=mode):
                    res, _ = run("--config", shipped_config(), *extra, env_listen=value, timeout=5)
                    self.assertIsNotNone(res.returncode, "still running after 5 s: it started on a bad address")
                    self.assertEqual(res.returncode, 2, res.stdout + res.stderr)
                    self.assertTrue(res.stderr.startswith("apiary: APIARY_LISTEN: "), res.stderr)
                    self.assertIn(f"'{value}'", res.stderr)
                    self.assertEqual(res.stderr.count("\n"), 1, "one line")
                    self.assertNotIn("config OK", res.stdout)
                    self.assertNotRegex(res.stdout + res.stderr, LISTEN_RE)

    def test_bad_value_fails_even_when_the_flag_is_given(self):
        # Flags win, but the variable is still checked: a typo in it must not go unnoticed.
        res, _ = run("--check-config", "--config", shipped_config(), "--listen", "127.0.0.1:0",
                     env_listen="nonsense")
        self.assertEqual(res.returncode, 2, res.stdout + res.stderr)
        self.assertIn("APIARY_LISTEN", res.stderr)

    def test_server_listens_where_the_variable_says(self):
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k != "APIARY_LISTEN"}
        env["APIARY_LISTEN"] = f"127.0.0.1:{port}"
        # The shipped config's SQLite file is relative to the working directory: keep it out of the tree.
        sql_dir = tempfile.TemporaryDirectory(prefix="apiary-it-sql-")
        self.addCleanup(sql_dir.cleanup)
        env["APIARY_SQL_URL"] = "sqlite:" + os.path.join(sql_dir.name, "apiary.db")
        proc = subprocess.Popen([apiary_bin(), "--config", shipped_config(), "--threads", "1"],
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True, env=env)
        try:
            # The listener is open once the probe passes; the probe itself is what this file tests.
            deadline = time.monotonic() + 10
            while True:
                res, _ = run("--healthcheck", "--config", shipped_config(), env_listen=f"127.0.0.1:{port}")
                if res.returncode == 0 or time.monotonic() > deadline or proc.poll() is not None:
                    break
                time.sleep(0.05)
            self.assertEqual(res.returncode, 0, res.stderr)
            self.assertEqual(res.stdout, f"apiary: healthcheck: GET /healthz on 127.0.0.1:{port} answered 200\n")
        finally:
            if proc.poll() is None:
                proc.terminate()
            log, _ = proc.communicate(timeout=15)
        self.assertEqual(proc.returncode, 0, log)
        self.assertIn(f"listening on http://127.0.0.1:{port}", log)
