"""sql.url "none" (and APIARY_SQL_URL=none): an app that uses no SQL starts where it cannot write.

The real binary runs in a read-only working directory (as nobody when the runner is root, since root
writes anywhere): with the default sql.url it cannot open apiary.db there and exits 1; with "none" it
starts, touches no file, serves /healthz and /readyz (200: there is no database to wait for), and its
SQL routes answer 503 with Retry-After: 1 "the database is unavailable" at once. A URL near "none" is
refused like any other bad sql.url (exit 2 naming it)."""

import json
import os
import pwd
import subprocess
import tempfile
import time
import unittest

from apiary_harness import ApiaryServer, ServerStartError, apiary_bin, request


def nobody():
    """(uid, gid) to run the server as when the runner is root, else None (the runner's own)."""
    if os.geteuid() != 0:
        return None
    entry = pwd.getpwnam("nobody")
    return entry.pw_uid, entry.pw_gid


class SqlNoneTest(unittest.TestCase):
    def setUp(self):
        self._dir = tempfile.TemporaryDirectory(prefix="apiary-ro-")
        self.dir = os.path.join(self._dir.name, "cwd")
        os.mkdir(self.dir)
        os.chmod(self._dir.name, 0o755)
        os.chmod(self.dir, 0o555)  # read-only for everyone but root; the server runs as nobody then

    def tearDown(self):
        os.chmod(self.dir, 0o755)
        self._dir.cleanup()

    def server(self, sql_url=None, env=None):
        # The harness puts its own SQLite file in its temporary directory unless told a URL.
        config = {"sql": {"url": sql_url}} if sql_url is not None else {"sql": {"url": "sqlite:apiary.db"}}
        return ApiaryServer(config, cwd=self.dir, env=env, run_as=nobody())

    def test_the_default_cannot_start_in_a_read_only_directory(self):
        """The premise: a relative SQLite file in this directory cannot be created."""
        srv = self.server()
        with self.assertRaises(ServerStartError) as caught:
            srv.start()
        srv.stop()
        self.assertIn("exit code 1", str(caught.exception))
        self.assertIn("cannot open the SQLite database", str(caught.exception))

    def check_serves_without_sql(self, srv):
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/healthz").status, 200)
            ready = request(sock, "GET", "/readyz")
            self.assertEqual(ready.status, 200, ready)
            self.assertEqual(ready.json(), {"status": "ready"})
            for path in ("/v1/db", "/v1/db_await", "/v1/queries?queries=3", "/v1/updates?queries=2", "/v1/items",
                         "/v1/items/1"):
                with self.subTest(path=path):
                    started = time.monotonic()
                    resp = request(sock, "GET", path)
                    self.assertEqual(resp.status, 503, resp)
                    self.assertEqual(resp.headers.get("Retry-After"), "1")
                    self.assertEqual(resp.json()["detail"], "the database is unavailable")
                    self.assertLess(time.monotonic() - started, 1.0, "failed at once, not at a timeout")
            self.assertEqual(request(sock, "GET", "/v1/hello").status, 200, "everything else is served")
        self.assertIn('sql.url is "none"', srv.log_text())
        srv.stop()
        srv.assert_no_sanitizer_report()
        self.assertEqual(os.listdir(self.dir), [], "no file is touched")

    def test_sql_url_none(self):
        self.check_serves_without_sql(self.server("none").start())

    def test_apiary_sql_url_none(self):
        self.check_serves_without_sql(self.server(env={"APIARY_SQL_URL": "none"}).start())

    def test_a_url_near_none_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "c.json")
            for url in ("None", "none:", "nothing"):
                with self.subTest(url=url):
                    with open(path, "w") as f:
                        json.dump({"sql": {"url": url}}, f)
                    res = subprocess.run([apiary_bin(), "--config", path, "--check-config"], capture_output=True,
                                         text=True, timeout=30)
                    self.assertEqual(res.returncode, 2, res.stderr)
                    self.assertIn("sql.url", res.stderr)
                    self.assertNotIn(url + '"', res.stderr.replace('"none"', ""), "the URL is never echoed")
            with open(path, "w") as f:
                json.dump({"sql": {"url": "none"}}, f)
            res = subprocess.run([apiary_bin(), "--config", path, "--check-config"], capture_output=True, text=True,
                                 timeout=30)
            self.assertEqual(res.returncode, 0, res.stderr)


if __name__ == "__main__":
    unittest.main()
