"""Listening on a Unix domain socket as well as, or instead of, TCP: both serve, the socket file gets
the configured mode and is removed at exit, a stale socket file is replaced, a live one is refused, and
a config without TCP serves on the socket alone; and, as a live socket file is refused, a TCP address
another instance listens on is refused too (SO_REUSEPORT would otherwise let the two split its
connections)."""

import json
import os
import socket
import stat
import subprocess
import tempfile
import time
import unittest

from apiary_harness import ApiaryServer, apiary_bin, read_response, request


def unix_connect(path, timeout=5.0):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    return sock


class UnixSocketTest(unittest.TestCase):
    def test_tcp_and_unix_both_serve(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "apiary.sock")
            with ApiaryServer({"unix_socket": {"path": path, "mode": "0600"}}, threads=2) as srv:
                self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
                self.assertTrue(stat.S_ISSOCK(os.stat(path).st_mode))
                for _ in range(4):
                    with unix_connect(path) as sock:
                        resp = request(sock, "GET", "/v1/hello")
                        self.assertEqual(resp.status, 200)
                        self.assertEqual(resp.json(), {"message": "Hello, World!"})
                with srv.connect() as sock:
                    self.assertEqual(request(sock, "GET", "/healthz").status, 200)
                srv.sigterm()
                self.assertEqual(srv.wait(10), 0)
            self.assertFalse(os.path.exists(path), "the socket file is removed at exit")

    def test_stale_socket_is_replaced_and_live_one_refused(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "apiary.sock")
            stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            stale.bind(path)  # a socket file nobody listens on, as a crashed server leaves behind
            stale.close()
            with ApiaryServer({"unix_socket": {"path": path}}, threads=1):
                with unix_connect(path) as sock:
                    self.assertEqual(request(sock, "GET", "/healthz").status, 200)
                config = os.path.join(tmp, "second.json")
                with open(config, "w", encoding="utf-8") as f:
                    json.dump({"unix_socket": {"path": path}, "sql": {"url": "sqlite:" + os.path.join(tmp, "a.db")}}, f)
                second = subprocess.run([apiary_bin(), "--config", config, "--listen", "127.0.0.1:0"],
                                        capture_output=True, text=True, timeout=10)
                self.assertEqual(second.returncode, 1)
                self.assertIn("another server is listening there", second.stderr)
                with unix_connect(path) as sock:  # the first one is untouched
                    self.assertEqual(request(sock, "GET", "/healthz").status, 200)

    def test_unix_socket_only(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "only.sock")
            config = os.path.join(tmp, "apiary.json")
            with open(config, "w", encoding="utf-8") as f:
                json.dump({"listen": "", "unix_socket": {"path": path}, "log_level": "info",
                           "sql": {"url": "sqlite:" + os.path.join(tmp, "a.db")}}, f)
            proc = subprocess.Popen([apiary_bin(), "--config", config, "--threads", "2"], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            try:
                deadline = time.monotonic() + 10
                while not os.path.exists(path) and time.monotonic() < deadline:
                    time.sleep(0.05)
                with unix_connect(path) as sock:
                    sock.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n\r\n")
                    self.assertEqual(read_response(sock).status, 200)
            finally:
                proc.terminate()
                _, err = proc.communicate(timeout=10)
            self.assertEqual(proc.returncode, 0, err)
            self.assertIn("listening on unix:", err)
            self.assertNotIn("listening on http://", err)


class TcpAddressTest(unittest.TestCase):
    def test_a_second_instance_on_a_taken_address_is_refused(self):
        with ApiaryServer({}, threads=2) as srv, tempfile.TemporaryDirectory() as tmp:
            config = os.path.join(tmp, "second.json")
            with open(config, "w", encoding="utf-8") as f:
                json.dump({"sql": {"url": "sqlite:" + os.path.join(tmp, "a.db")}}, f)
            second = subprocess.run([apiary_bin(), "--config", config, "--listen", f"127.0.0.1:{srv.port}",
                                     "--threads", "2"], capture_output=True, text=True, timeout=10)
            self.assertEqual(second.returncode, 1, second.stderr)
            self.assertIn(f"cannot listen on 127.0.0.1:{srv.port}: another process is listening there "
                          "(address in use)", second.stderr)
            # Every new connection still reaches the first instance (none went to a half-started second).
            for _ in range(20):
                with srv.connect() as sock:
                    self.assertEqual(request(sock, "GET", "/healthz").status, 200)
            # One the server closes first, so its port holds a connection in TIME_WAIT after it exits.
            with srv.connect() as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
                self.assertEqual(read_response(sock).status, 200)
                self.assertEqual(sock.recv(1), b"")
            srv.sigterm()
            self.assertEqual(srv.wait(10), 0)
            # Then the address is free again at once: the check, like the listeners, passes TIME_WAIT.
            with ApiaryServer({}, threads=1, extra_args=["--listen", f"127.0.0.1:{srv.port}"]) as again:
                self.assertEqual(again.port, srv.port)
                with again.connect() as sock:
                    self.assertEqual(request(sock, "GET", "/healthz").status, 200)

if __name__ == "__main__":
    unittest.main()
