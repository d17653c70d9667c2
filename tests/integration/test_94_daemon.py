"""Daemon mode and its companions: --daemon returns once the server listens and leaves it running
detached; the pid file holds its pid and keeps a second instance out, a stale one is taken over; logs go
to daemon.log_file (reopened on SIGHUP after rotation); `user` drops root after binding. Every server
started here is stopped by the PID it wrote, and only that PID."""

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from apiary_harness import apiary_bin, request


def free_port():
    """A port the kernel just handed out on loopback; free again once the socket closes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pid_alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


class DaemonTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.pid_file = os.path.join(self.dir, "apiary.pid")
        self.log_file = os.path.join(self.dir, "apiary.log")
        self.started = []

    def tearDown(self):
        for pid in self.started:
            if pid_alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.tmp.cleanup()

    def write_config(self, **extra):
        # The SQLite default is relative to the working directory: keep the file in the test's own.
        config = {"daemon": {"pid_file": self.pid_file, "log_file": self.log_file},
                  "sql": {"url": "sqlite:" + os.path.join(self.dir, "apiary.db")}, **extra}
        path = os.path.join(self.dir, "apiary.json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(config, f)
        return path

    def start(self, config, port, expect=0):
        proc = subprocess.run([apiary_bin(), "--config", config, "--listen", f"127.0.0.1:{port}", "--threads", "1",
                               "--daemon"], capture_output=True, text=True, timeout=20)
        self.assertEqual(proc.returncode, expect, proc.stderr)
        if expect == 0:
            with open(self.pid_file) as f:
                pid = int(f.read())
            self.started.append(pid)
            return pid
        return None

    def stop(self, pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(pid_alive(pid))

    def get(self, port, path="/healthz"):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            return request(sock, "GET", path)

    def test_daemon_runs_detached_and_pid_file_guards_it(self):
        config, port = self.write_config(), free_port()
        pid = self.start(config, port)  # returns only once the server listens
        self.assertEqual(self.get(port).status, 200)
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        self.assertNotEqual(int(fields[1]), os.getpid(), "detached: not our child")
        self.assertNotEqual(int(fields[3]), os.getsid(0), "the daemon has its own session")
        self.start(config, free_port(), expect=1)  # a second instance is refused...
        with open(self.log_file) as f:
            self.assertIn(f"another apiary (pid {pid}) holds", f.read())
        self.assertEqual(self.get(port).status, 200)  # ...and the first is untouched
        self.stop(pid)
        self.assertFalse(os.path.exists(self.pid_file), "a clean exit removes the pid file")

    def test_stale_pid_file_is_taken_over(self):
        with open(self.pid_file, "w") as f:
            f.write("999999\n")  # left by a crash: nobody holds its lock
        config, port = self.write_config(), free_port()
        pid = self.start(config, port)
        self.assertNotEqual(pid, 999999)
        self.stop(pid)

    def test_log_file_is_reopened_on_sighup(self):
        config, port = self.write_config(), free_port()
        pid = self.start(config, port)
        os.rename(self.log_file, self.log_file + ".1")
        os.kill(pid, signal.SIGHUP)
        deadline = time.monotonic() + 5
        while not os.path.exists(self.log_file) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.stop(pid)
        with open(self.log_file + ".1") as f:
            self.assertIn("listening on", f.read())
        with open(self.log_file) as f:
            new = f.read()
        self.assertIn("config reloaded", new)
        self.assertIn("shutdown complete", new)

    def test_daemon_needs_a_log_file(self):
        path = os.path.join(self.dir, "bare.json")
        with open(path, "w") as f:
            json.dump({}, f)
        proc = subprocess.run([apiary_bin(), "--config", path, "--daemon"], capture_output=True, text=True, timeout=10)
        self.assertEqual(proc.returncode, 2)
        self.assertIn("--daemon needs daemon.log_file", proc.stderr)

    @unittest.skipUnless(os.geteuid() == 0, "dropping privileges needs root")
    def test_user_drops_root_after_binding(self):
        os.chmod(self.dir, 0o777)  # the unprivileged user must be able to remove its pid file
        config, port = self.write_config(user="nobody"), free_port()
        pid = self.start(config, port)
        with open(f"/proc/{pid}/status") as f:
            uids = next(line for line in f if line.startswith("Uid:")).split()[1:]
        self.assertEqual(set(uids), {"65534"}, "real, effective, saved and filesystem uid are all nobody's")
        self.assertEqual(self.get(port).status, 200)
        self.stop(pid)


if __name__ == "__main__":
    unittest.main()
