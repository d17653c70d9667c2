"""SIGHUP reloads the config file: limits, timeouts and the log level change live; a bad file is
rejected with a log line and the running config stays in force; keys that need a restart keep their
running value and are named in the log; the access log is reopened (rotation)."""

import json
import os
import time
import unittest

from apiary_harness import ApiaryServer, request


def wait_for_lines(path, count, timeout):
    """The file's complete lines once it holds at least count of them, or what it holds at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")[:-1]
        except FileNotFoundError:
            lines = []
        if len(lines) >= count or time.monotonic() >= deadline:
            return lines
        time.sleep(0.05)


def echo(sock, size):
    body = json.dumps({"pad": "x" * size}).encode()
    return request(sock, "POST", "/v1/echo", {"Content-Type": "application/json"}, body).status


class ReloadTest(unittest.TestCase):
    def rewrite(self, srv, changes):
        config = dict(srv.config)
        for key, value in changes.items():
            if isinstance(value, dict):
                config[key] = {**config.get(key, {}), **value}
            else:
                config[key] = value
        with open(srv.config_path, "w", encoding="utf-8") as f:
            json.dump(config, f)

    def hup_and_wait(self, srv, pattern):
        os.kill(srv.proc.pid, 1)  # SIGHUP, to the PID this test started
        self.assertTrue(srv.wait_for_log(pattern, timeout=5.0), f"no log line matching {pattern!r}")

    def test_good_reload_changes_limits_live_and_bad_reload_keeps_them(self):
        with ApiaryServer({"limits": {"max_body_bytes": 1024}}, threads=2) as srv:
            with srv.connect() as sock:
                self.assertEqual(echo(sock, 2000), 413)
            self.rewrite(srv, {"limits": {"max_body_bytes": 8192}})
            self.hup_and_wait(srv, r"config reloaded from .* \(generation 2\)")
            time.sleep(0.1)  # the loops switch through their post queues
            for _ in range(4):  # both loops
                with srv.connect() as sock:
                    self.assertEqual(echo(sock, 2000), 200)
            # A broken file: rejected, logged, nothing changes.
            with open(srv.config_path, "w", encoding="utf-8") as f:
                f.write('{"limits": {"max_body_bytes": ')
            self.hup_and_wait(srv, r"config reload rejected, the running config stays: .*line")
            with srv.connect() as sock:
                self.assertEqual(echo(sock, 2000), 200)
                self.assertEqual(echo(sock, 9000), 413)
            # Valid JSON but an unknown key or a bad value: rejected as well.
            self.rewrite(srv, {"limits": {"max_body_bytes": -1}})
            self.hup_and_wait(srv, r"config reload rejected.*limits\.max_body_bytes")
            with srv.connect() as sock:
                self.assertEqual(echo(sock, 2000), 200)
            srv.sigterm()
            self.assertEqual(srv.wait(10), 0)

    def test_restart_only_keys_are_named_and_keep_running_values(self):
        with ApiaryServer({}, threads=1) as srv:
            self.rewrite(srv, {"backlog": 77, "pool": {"threads": 3}, "timeouts": {"request_ms": 250}})
            self.hup_and_wait(srv, r"config reloaded")
            log = srv.log_text()
            self.assertIn("backlog changed; it needs a restart", log)
            self.assertIn("pool.threads changed; it needs a restart", log)
            self.assertNotIn("request_ms", log)
            # --listen and --threads (which the harness passes) came from flags, not the file.
            self.assertNotIn("listen changed", log)
            self.assertNotIn("threads changed; it needs", log.replace("pool.threads changed", ""))
            time.sleep(0.1)
            with srv.connect() as sock:  # the new request deadline applies
                started = time.monotonic()
                self.assertEqual(request(sock, "GET", "/v1/sleep?ms=2000").status, 504)
                self.assertLess(time.monotonic() - started, 1.5)

    def test_reload_reopens_the_access_log(self):
        with ApiaryServer({}, threads=1) as srv:
            path = os.path.join(os.path.dirname(srv.config_path), "access.log")
            self.rewrite(srv, {"access_log": {"enabled": True, "path": path}})
            self.hup_and_wait(srv, r"config reloaded")
            with srv.connect() as sock:
                request(sock, "GET", "/v1/hello")
            # Lines are flushed once a second, on the loop's Date tick (later on a loaded machine), and
            # still-buffered ones go to the new file: the line must be in the file before the rotation.
            self.assertEqual(len(wait_for_lines(path, 1, 10)), 1, "the access log line was not flushed")
            os.rename(path, path + ".1")  # rotation
            self.hup_and_wait(srv, r"generation 3")
            with srv.connect() as sock:
                request(sock, "GET", "/healthz")
            srv.sigterm()
            self.assertEqual(srv.wait(10), 0)
            with open(path + ".1", encoding="utf-8") as f:
                self.assertEqual([json.loads(l)["path"] for l in f], ["/v1/hello"])
            with open(path, encoding="utf-8") as f:
                self.assertEqual([json.loads(l)["path"] for l in f], ["/healthz"])


if __name__ == "__main__":
    unittest.main()


class UpstreamReloadTest(unittest.TestCase):
    """Upstreams change live: a new timeout applies to the next calls, a new upstream becomes callable."""

    def fanout(self, srv, upstream, path):
        body = json.dumps({"requests": [{"upstream": upstream, "path": path}], "timeout_ms": 5000}).encode()
        with srv.connect() as sock:
            return request(sock, "POST", "/v1/fanout", {"Content-Type": "application/json"}, body)

    def test_upstream_changes_apply_without_a_restart(self):
        with ApiaryServer({}, threads=1) as upstream:
            url = f"http://127.0.0.1:{upstream.port}"
            with ApiaryServer({"upstreams": {"slow": {"url": url, "timeout_ms": 3000}}}, threads=1) as srv:
                resp = self.fanout(srv, "slow", "/v1/sleep?ms=400")
                self.assertEqual(resp.status, 200)
                self.assertEqual(resp.json()["results"][0]["status"], 200)
                self.assertEqual(self.fanout(srv, "other", "/healthz").status, 422, "not configured yet")
                config = dict(srv.config)
                config["upstreams"] = {"slow": {"url": url, "timeout_ms": 100}, "other": {"url": url}}
                with open(srv.config_path, "w", encoding="utf-8") as f:
                    json.dump(config, f)
                os.kill(srv.proc.pid, 1)  # SIGHUP
                self.assertTrue(srv.wait_for_log(r"upstreams changed", timeout=5.0))
                self.assertTrue(srv.wait_for_log(r"config reloaded", timeout=5.0))
                time.sleep(0.1)
                result = self.fanout(srv, "slow", "/v1/sleep?ms=400").json()["results"][0]
                self.assertEqual((result["ok"], result["error"]), (False, "timeout"))
                result = self.fanout(srv, "other", "/healthz").json()["results"][0]
                self.assertEqual(result["status"], 200)
                self.assertNotIn("needs a restart", srv.log_text())
                srv.sigterm()
                self.assertEqual(srv.wait(10), 0)
