"""Behind a reverse proxy: the client address comes from X-Forwarded-For / Forwarded only when the peer
is a trusted proxy, and then it is the rightmost untrusted hop (seen in the access log). Per-client rate
limiting: over the bucket the answer is 429 problem+json with Retry-After; probes are never limited; two
clients behind the same trusted proxy have separate buckets."""

import json
import os
import tempfile
import time
import unittest

from apiary_harness import ApiaryServer, request


def logged_clients(server, path, count):
    server.sigterm()
    assert server.wait(10) == 0
    with open(path, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == count, lines
    return [line["client"] for line in lines]


class ClientAddressTest(unittest.TestCase):
    def run_requests(self, trusted, headers_list):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "access.log")
            config = {"trusted_proxies": trusted, "access_log": {"enabled": True, "path": path}}
            with ApiaryServer(config, threads=1) as srv:
                with srv.connect() as sock:
                    for headers in headers_list:
                        self.assertEqual(request(sock, "GET", "/v1/hello", headers).status, 200)
                return logged_clients(srv, path, len(headers_list))

    def test_untrusted_peer_cannot_claim_an_address(self):
        clients = self.run_requests([], [{"X-Forwarded-For": "6.6.6.6"}, {"Forwarded": "for=6.6.6.6"}])
        self.assertEqual(clients, ["127.0.0.1", "127.0.0.1"])

    def test_trusted_proxy_forwarding_headers(self):
        clients = self.run_requests(["127.0.0.0/8", "10.0.0.0/8"], [
            {"X-Forwarded-For": "6.6.6.6, 198.51.100.1"},          # spoofed left part ignored
            {"X-Forwarded-For": "198.51.100.2, 10.1.2.3"},         # a second trusted proxy hop skipped
            {"Forwarded": 'for=6.6.6.6, for="[2001:db8::7]:4711"'},
            {},                                                     # no header: the proxy itself
            {"X-Forwarded-For": "garbage"},                         # junk: keep what we can vouch for
        ])
        self.assertEqual(clients, ["198.51.100.1", "198.51.100.2", "2001:db8::7", "127.0.0.1", "127.0.0.1"])


class RateLimitTest(unittest.TestCase):
    CONFIG = {"trusted_proxies": ["127.0.0.1"],
              "rate_limit": {"enabled": True, "requests_per_second": 1, "burst": 3}}

    def test_over_the_bucket_is_429_with_retry_after_and_probes_are_free(self):
        with ApiaryServer(self.CONFIG, threads=2) as srv, srv.connect() as sock:
            me = {"X-Forwarded-For": "198.51.100.10"}
            for _ in range(3):
                self.assertEqual(request(sock, "GET", "/v1/hello", me).status, 200)
            resp = request(sock, "GET", "/v1/hello", me)
            self.assertEqual(resp.status, 429)
            self.assertEqual(resp.headers["content-type"], "application/problem+json")
            body = resp.json()
            self.assertEqual((body["status"], body["title"]), (429, "Too Many Requests"))
            self.assertGreaterEqual(int(resp.headers["retry-after"]), 1)
            # The limit keeps the connection and never touches probes or another client.
            for _ in range(10):
                self.assertEqual(request(sock, "GET", "/healthz", me).status, 200)
            self.assertEqual(request(sock, "GET", "/v1/hello", {"X-Forwarded-For": "198.51.100.11"}).status, 200)
            # A token comes back after about a second at 1/s.
            time.sleep(1.2)
            self.assertEqual(request(sock, "GET", "/v1/hello", me).status, 200)

    def test_off_by_default(self):
        with ApiaryServer({}, threads=1) as srv, srv.connect() as sock:
            for _ in range(300):
                self.assertEqual(request(sock, "GET", "/v1/hello").status, 200)


if __name__ == "__main__":
    unittest.main()
