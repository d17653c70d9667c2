"""POST /v1/fanout to https:// upstreams (issue 22, F14), end to end through the real binary: a test CA
and a certificate for "localhost" made here with the openssl CLI, tls_upstream.py (Python's http.server
behind ssl) as the upstream. The upstream with the right ca_file answers, and two calls share one TLS
connection; one named by an address the certificate does not name, and one trusting another CA, fail
with certificate_rejected while the others answer; a ca_file that does not exist is a config error
naming the key; and the allow-list for absolute URLs changes nothing for /v1/fanout, which still takes
upstream names only."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from apiary_harness import ApiaryServer, ServerStartError, json_request_body, request
from test_80_async import AsyncAssertions

JSON = {"Content-Type": "application/json"}
HERE = os.path.dirname(os.path.abspath(__file__))


def make_certs(d):
    k = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
    script = (f"openssl req -x509 {k} -keyout ca.key -out ca.pem -days 2 -subj /CN=apiary-test-ca && "
              f"openssl req -x509 {k} -keyout other.key -out other.pem -days 2 -subj /CN=other-ca && "
              f"openssl req {k} -keyout server.key -out server.csr -subj /CN=localhost && "
              "printf 'subjectAltName=DNS:localhost\\n' > ext && "
              "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 "
              "-extfile ext -out server.pem")
    subprocess.run(script, shell=True, cwd=d, check=True, capture_output=True)


class FanoutHttpsTest(AsyncAssertions, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.dir = tempfile.mkdtemp(prefix="apiary_https_")
        make_certs(cls.dir)
        cls.upstream = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "tls_upstream.py"), os.path.join(cls.dir, "server.pem"),
             os.path.join(cls.dir, "server.key")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        cls.port = int(cls.upstream.stdout.readline())
        ca, other = os.path.join(cls.dir, "ca.pem"), os.path.join(cls.dir, "other.pem")
        config = {
            "upstreams": {
                "secure": {"url": f"https://localhost:{cls.port}", "ca_file": ca, "timeout_ms": 5000},
                "by_address": {"url": f"https://127.0.0.1:{cls.port}", "ca_file": ca},
                "other_ca": {"url": f"https://localhost:{cls.port}", "ca_file": other},
            },
            "http_client": {"allowed_origins": [{"url": f"https://localhost:{cls.port}", "ca_file": ca}]},
        }
        cls.server = ApiaryServer(config, threads=1)
        try:
            cls.server.start()
        except BaseException:
            cls.tearDownUpstream()
            raise

    @classmethod
    def tearDownUpstream(cls):
        cls.upstream.stdin.close()
        cls.upstream.terminate()
        cls.upstream.wait(10)
        shutil.rmtree(cls.dir, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        rc = cls.server.stop()
        cls.tearDownUpstream()
        super().tearDownClass()
        if rc != 0:
            raise AssertionError(f"server exited {rc}; log:\n{cls.server.log_text()}")
        cls.server.assert_no_sanitizer_report()

    def fanout(self, *calls):
        body = {"requests": [{"upstream": u, "path": p} for u, p in calls]}
        with self.server.connect() as sock:
            resp = request(sock, "POST", "/v1/fanout", JSON, json_request_body(body), timeout=20)
        self.assertEqual(resp.status, 200, repr(resp))
        return resp.json()["results"]

    def test_right_ca_answers_and_wrong_name_or_ca_is_refused(self):
        results = self.fanout(("secure", "/a?b=1"), ("by_address", "/x"), ("other_ca", "/y"), ("secure", "/c"))
        self.assertTrue(results[0]["ok"], repr(results[0]))
        self.assertEqual(results[0]["status"], 200)
        self.assertEqual(results[0]["body"]["target"], "/a?b=1")
        headers = {k.lower(): v for k, v in results[0]["body"]["headers"]}
        self.assertEqual(headers["host"], f"localhost:{self.port}")
        self.assertTrue(headers["user-agent"].startswith("apiary/"))
        for r in results[1:3]:
            self.assertEqual((r["ok"], r["error"]), (False, "certificate_rejected"), repr(r))
        self.assertTrue(results[3]["ok"], repr(results[3]))
        self.server.wait_for_log(r"certificate rejected: IP address mismatch", 5)
        self.server.wait_for_log(r"certificate rejected: unable to get local issuer certificate", 5)

    def test_keep_alive_over_tls(self):
        first = self.fanout(("secure", "/1"))[0]
        second = self.fanout(("secure", "/2"))[0]
        self.assertTrue(first["ok"] and second["ok"], repr((first, second)))
        self.assertEqual(first["body"]["conn"], second["body"]["conn"], "one pooled TLS connection")

    def test_fanout_still_takes_names_only(self):
        url = f"https://localhost:{self.port}/x"
        with self.server.connect() as sock:
            body = {"requests": [{"upstream": url, "path": "/x"}]}
            resp = request(sock, "POST", "/v1/fanout", JSON, json_request_body(body), timeout=10)
        self.assertEqual(resp.status, 422, repr(resp))
        self.assertEqual(resp.headers.get("Content-Type"), "application/problem+json")
        self.assertIn("requests[0].upstream", resp.body.decode())

    def test_zzz_server_still_alive(self):
        self.assertTrue(self.server.alive())


class HttpsConfigTest(unittest.TestCase):
    def test_missing_ca_file_is_a_config_error(self):
        server = ApiaryServer({"upstreams": {"u": {"url": "https://localhost:1", "ca_file": "/nonexistent/ca.pem"}}})
        with self.assertRaises(ServerStartError) as caught:
            server.start()
        self.assertIn("upstreams.u.ca_file: cannot read '/nonexistent/ca.pem'", str(caught.exception) +
                      server.log_text())


if __name__ == "__main__":
    unittest.main()
