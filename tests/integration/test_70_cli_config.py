"""Command line and config file, running the binary directly: --version, --help, unknown flags,
--check-config on the shipped and on hand-written configs, and bad configs (unknown key, wrong type,
out-of-range value, invalid JSON) that must exit 2 naming the offending key without ever starting
the server."""

import json
import os
import re
import subprocess
import tempfile
import unittest

from apiary_harness import DEFAULT_CONFIG, LISTEN_RE, apiary_bin, source_dir

RUN_TIMEOUT = 10


def run(*args, timeout=RUN_TIMEOUT):
    """Runs apiary with args; returns CompletedProcess (text). A process still running at the timeout
    is killed (only this PID) and reported as a failure by the caller via returncode None."""
    proc = subprocess.Popen([apiary_bin(), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
        rc = proc.returncode
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate(timeout=10)
        rc = None
    return subprocess.CompletedProcess(proc.args, rc, out, err)


class CliTest(unittest.TestCase):
    def test_version(self):
        res = run("--version")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertTrue(any(re.search(r"apiary", line) and re.search(r"\d+\.\d+\.\d+", line)
                            for line in res.stdout.splitlines()),
                        f"no line with 'apiary' and a version on stdout: {res.stdout!r}")

    def test_help(self):
        res = run("--help")
        self.assertEqual(res.returncode, 0, res.stderr)
        self.assertIn("--config", res.stdout)
        self.assertNotRegex(res.stdout + res.stderr, LISTEN_RE)

    def test_unknown_flag_exits_2(self):
        res = run("--frobnicate")
        self.assertEqual(res.returncode, 2)
        self.assertIn("--frobnicate", res.stderr, "the message must name the bad argument")
        self.assertNotRegex(res.stdout + res.stderr, LISTEN_RE)

    def test_bad_threads_value_exits_2(self):
        for value in ("abc", "0", "257", "-1"):
            with self.subTest(threads=value):
                res = run("--check-config", "--config", self.shipped_config(), "--threads", value)
                self.assertEqual(res.returncode, 2, res.stdout + res.stderr)
                self.assertIn("--threads", res.stderr)

    def test_missing_flag_value_exits_2(self):
        res = run("--config")
        self.assertEqual(res.returncode, 2)
        self.assertNotRegex(res.stdout + res.stderr, LISTEN_RE)

    @staticmethod
    def shipped_config():
        return os.path.join(source_dir(), "config", "apiary.json")


class ConfigTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory(prefix="apiary-cfg-")
        self.addCleanup(self.tmp.cleanup)

    def write(self, content, name="apiary.json"):
        path = os.path.join(self.tmp.name, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(content if isinstance(content, str) else json.dumps(content))
        return path

    def assertConfigOk(self, *args):
        res = run("--check-config", *args)
        self.assertEqual(res.returncode, 0, res.stdout + res.stderr)
        # The spec says "prints": accept either stream.
        self.assertIn("config OK", res.stdout + res.stderr)
        self.assertNotRegex(res.stdout + res.stderr, LISTEN_RE, "--check-config must not start the server")

    def assertRejected(self, path, must_mention):
        """Both --check-config and a real start exit 2, name the problem, and never listen."""
        for mode, args in (("check-config", ["--check-config", "--config", path]),
                           ("start", ["--config", path, "--listen", "127.0.0.1:0", "--threads", "1"])):
            with self.subTest(mode=mode):
                res = run(*args, timeout=5)
                self.assertIsNotNone(res.returncode, f"still running after 5 s: it started on a bad config\n"
                                                      f"{res.stderr}")
                self.assertEqual(res.returncode, 2, res.stdout + res.stderr)
                self.assertIn(must_mention, res.stderr)
                self.assertNotRegex(res.stdout + res.stderr, LISTEN_RE)
                self.assertNotIn("config OK", res.stdout + res.stderr)

    def test_shipped_config_is_valid(self):
        path = os.path.join(source_dir(), "config", "apiary.json")
        self.assertTrue(os.path.isfile(path), f"{path} is missing")
        self.assertConfigOk("--config", path)

    def test_empty_object_is_valid(self):
        # Every key is optional.
        self.assertConfigOk("--config", self.write({}))

    def test_documented_defaults_are_valid(self):
        documented = json.loads(json.dumps(DEFAULT_CONFIG))
        documented["timeouts"]["linger_ms"] = 2000  # the harness shortens it; the doc says 2000
        self.assertConfigOk("--config", self.write(documented))

    def test_equals_form_of_flags(self):
        self.assertConfigOk(f"--config={self.write({'threads': 2})}")

    def test_bad_values_exit_2_naming_the_key(self):
        cases = [
            ("unknown top-level key", {"bogus_key": 1}, "bogus_key"),
            ("unknown nested key", {"limits": {"max_bogus": 1}}, "limits.max_bogus"),
            ("unknown timeouts key", {"timeouts": {"idle_ms": 5}}, "timeouts.idle_ms"),
            ("string for integer", {"limits": {"max_body_bytes": "big"}}, "limits.max_body_bytes"),
            ("negative size", {"limits": {"max_body_bytes": -1}}, "limits.max_body_bytes"),
            ("size over range", {"limits": {"max_body_bytes": 2 ** 40}}, "limits.max_body_bytes"),
            ("fraction for integer", {"timeouts": {"header_ms": 1.5}}, "timeouts.header_ms"),
            ("string timeout", {"timeouts": {"keepalive_ms": "60s"}}, "timeouts.keepalive_ms"),
            ("boolean for integer", {"backlog": True}, "backlog"),
            ("negative threads", {"threads": -1}, "threads"),
            ("negative max_connections", {"max_connections": -5}, "max_connections"),
            ("unknown log level", {"log_level": "loud"}, "log_level"),
            ("listen not a string", {"listen": 8080}, "listen"),
            ("limits not an object", {"limits": 5}, "limits"),
            ("timeouts not an object", {"timeouts": [1, 2]}, "timeouts"),
            ("unknown coding to prefer", {"compression": {"prefer": ["zstd", "gzip"]}},
             "compression.prefer[0]: 'zstd' is not a coding apiary has: \"gzip\" or \"br\""),
            ("coding preferred twice", {"compression": {"prefer": ["br", "br"]}},
             "compression.prefer[1]: 'br' is named twice"),
        ]
        for name, config, key in cases:
            with self.subTest(case=name):
                self.assertRejected(self.write(config), key)

    def test_every_mistake_in_one_line(self):
        """The file's schema lists every violation at once: a check and a start say the same, in one line."""
        path = self.write({"threads": 999, "limits": {"max_bogus": 1, "max_headers": 0}, "listen": 8080,
                           "upstreams": {"u": {"url": "ftp://x"}}})
        self.assertRejected(path, "threads: must be an integer between 0 and 256; unknown key 'limits.max_bogus'; "
                                  "limits.max_headers: must be an integer between 1 and 256; listen: must be a string "
                                  "\"HOST:PORT\" or \"[IPv6]:PORT\"; upstreams.u.url: must start with http:// or https://")
        res = run("--check-config", "--config", path, timeout=5)
        self.assertEqual(len([line for line in res.stderr.splitlines() if "must be" in line]), 1, res.stderr)

    def test_invalid_json_exits_2(self):
        for name, text in (("trailing comma", '{"threads": 1,}'), ("truncated", '{"limits": {"max_url_bytes": 1'),
                           ("not json", "threads = 4\n"), ("empty file", "")):
            with self.subTest(case=name):
                path = self.write(text, name="bad.json")
                # No key to name: the message names the file instead.
                self.assertRejected(path, "bad.json")

    def test_top_level_not_an_object_exits_2(self):
        path = self.write("[1, 2, 3]", name="array.json")
        self.assertRejected(path, "array.json")

    def test_missing_config_file_exits_2(self):
        path = os.path.join(self.tmp.name, "does-not-exist.json")
        self.assertRejected(path, "does-not-exist.json")


if __name__ == "__main__":
    unittest.main()
