"""The HttpArena entry (issue 25): examples/arena built against an install of the build like every
example (test_97_library.Installed), then examples/arena/validate.sh run against it: the arena's own
checks for the profiles the entry subscribes to (meta.json), with a private PostgreSQL holding the
seed made by make_data.py. Every subscribed profile must pass (all ten H/1 profiles: nothing is skipped
now); one waiting for a library feature would say SKIPPED with its reason, never pass. About 15 s."""

import os
import re
import select
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from apiary_harness import ApiaryServer, request, source_dir
from test_97_library import Installed, tearDownModule  # noqa: F401 (the install's cleanup)
from test_97_sql import HAVE_POSTGRES, NO_POSTGRES

PENDING = ()  # every H/1 profile the entry subscribes to is served; a new pending one goes here
_binary = []


def arena_binary():
    """examples/arena, built once for the file against the installed prefix."""
    if not _binary:
        _binary.append(Installed.get().build_example("arena"))
    return _binary[0]


@unittest.skipUnless(HAVE_POSTGRES, NO_POSTGRES)
class ArenaValidation(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        binary = arena_binary()
        script = os.path.join(source_dir(), "examples", "arena", "validate.sh")
        proc = subprocess.run([script, "--bin", binary], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              timeout=240)
        cls.rc, cls.out = proc.returncode, proc.stdout.decode(errors="replace")
        print(cls.out)

    def test_every_subscribed_check_passes(self):
        m = re.search(r"=== Results: (\d+) passed, (\d+) failed \((\d+) skipped\) ===", self.out)
        self.assertIsNotNone(m, self.out)
        passed, failed = int(m.group(1)), int(m.group(2))
        self.assertEqual((failed, self.rc), (0, 0), self.out)
        self.assertGreaterEqual(passed, 45, "fewer checks ran than the subscribed profiles have")

    def test_the_randomised_and_fragmented_checks_ran(self):
        for label in ("(random)", "(cache check 1)", "(cache check 2)", "split request line", "split body bytes",
                      "crud cache-aside", "GET /async-db empty range"):
            self.assertRegex(self.out, r"PASS \[[^]]*" + re.escape(label), label)

    def test_nothing_is_skipped(self):
        m = re.search(r"\((\d+) skipped\) ===", self.out)
        self.assertIsNotNone(m, self.out)
        self.assertEqual(int(m.group(1)), 0, self.out)

    def test_pending_profiles_are_skipped_with_a_reason(self):
        for profile in PENDING:
            self.assertRegex(self.out, rf"SKIPPED \[{re.escape(profile)}\]: waits for ", profile)
            self.assertNotRegex(self.out, rf"PASS \[{re.escape(profile)}")


class ArenaEdges(unittest.TestCase):
    """What the arena's checks do not send: an empty POST body, a dataset that cannot be read."""

    @classmethod
    def setUpClass(cls):
        cls.binary = arena_binary()

    def test_an_empty_post_body_sums_a_and_b(self):
        # The arena never sends it; the entry answers a + b (and 400 for a body that is no integer).
        with ApiaryServer({"arena": {"dataset": "/nonexistent/dataset.json"}}, binary=self.binary) as srv:
            with srv.connect() as sock:
                r = request(sock, "POST", "/baseline11?a=13&b=42", headers={"Content-Length": "0"})
            self.assertEqual((r.status, r.body), (200, b"55"))
            with srv.connect() as sock:
                r = request(sock, "POST", "/baseline11?a=13&b=42", headers={"Content-Type": "text/plain"}, body=b"x")
            self.assertEqual(r.status, 400, r.body)

    def test_a_sum_past_64_bits_is_a_400_not_a_wrapped_number(self):
        big = 9223372036854775807
        with ApiaryServer({"arena": {"dataset": "/nonexistent/dataset.json"}}, binary=self.binary) as srv:
            for method, target, body, want in (
                    ("GET", f"/baseline11?a={big}&b=0", None, (200, str(big).encode())),
                    ("GET", f"/baseline11?a={big}&b=1", None, 400),
                    ("GET", f"/baseline11?a=-{big}&b=-2", None, 400),
                    ("POST", f"/baseline11?a={big}&b=-1", b"1", (200, str(big).encode())),
                    ("POST", f"/baseline11?a={big}&b=0", b"1", 400),
                    ("POST", "/baseline11?a=-1&b=0", b"-9223372036854775808", 400)):
                with srv.connect() as sock:
                    headers = {"Content-Type": "text/plain"} if body is not None else {}
                    r = request(sock, method, target, headers=headers, body=body)
                if want == 400:
                    self.assertEqual(r.status, 400, (target, body, r.body))
                    self.assertIn(b"64-bit", r.body)
                else:
                    self.assertEqual((r.status, r.body), want, (target, body))

    def test_a_missing_dataset_is_a_503_not_a_failed_start(self):
        with ApiaryServer({"arena": {"dataset": "/nonexistent/dataset.json"}}, binary=self.binary) as srv:
            with srv.connect() as sock:
                r = request(sock, "GET", "/json/5?m=2")
            self.assertEqual(r.status, 503, r.body)
            self.assertIn(b"dataset", r.body)
            with srv.connect() as sock:
                self.assertEqual(request(sock, "GET", "/pipeline").body, b"ok")

    def test_its_own_config_queues_a_thousand_connecting_clients(self):
        # The arena connects all its clients at once. Without --config the entry asks for a backlog of
        # 16384 (capped by somaxconn): with the default 511, a loop descheduled while they arrive
        # leaves every client past the 512th dropped at SYN, retrying a second later.
        with open("/proc/sys/net/core/somaxconn") as f:
            if int(f.read()) < 1024:
                self.skipTest("net.core.somaxconn < 1024")
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        with tempfile.TemporaryDirectory() as data:
            proc = subprocess.Popen([self.binary, "--listen", f"127.0.0.1:{port}", "--threads", "1"],
                                    env=dict(os.environ, ARENA_DATA_DIR=data), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            clients = []
            try:
                deadline = time.monotonic() + 10
                while True:
                    try:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                        break
                    except OSError:
                        self.assertLess(time.monotonic(), deadline, "the entry did not start listening")
                        time.sleep(0.05)
                time.sleep(0.2)  # the probe's close handled
                proc.send_signal(signal.SIGSTOP)  # a loop that gets no CPU while its clients connect
                for _ in range(1024):
                    c = socket.socket()
                    c.setblocking(False)
                    c.connect_ex(("127.0.0.1", port))
                    clients.append(c)
                poller, by_fd, connected = select.poll(), {c.fileno(): c for c in clients}, 0
                for fd in by_fd:
                    poller.register(fd, select.POLLOUT)
                deadline = time.monotonic() + 0.5  # the kernel completes queued handshakes at once
                while by_fd and time.monotonic() < deadline:
                    for fd, _ in poller.poll(50):
                        poller.unregister(fd)
                        c = by_fd.pop(fd)
                        connected += c.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR) == 0
                self.assertEqual(connected, 1024, "clients past the listen backlog were dropped at SYN")
            finally:
                proc.send_signal(signal.SIGCONT)
                for c in clients:
                    c.close()
                proc.terminate()
                proc.wait(timeout=10)


if __name__ == "__main__":
    unittest.main()
