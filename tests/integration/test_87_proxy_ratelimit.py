"""Behind a reverse proxy: the client address comes from the configured forwarding header
(X-Forwarded-For, or Forwarded) only when the peer is a trusted proxy (an address range, or "unix" for
the Unix socket), and then it is the rightmost untrusted hop (seen in the access log). Per-client rate
limiting: over the bucket the answer is 429 problem+json with Retry-After; probes are never limited; two
clients behind the same trusted proxy have separate buckets, one client never gets several."""

import json
import os
import socket
import tempfile
import time
import unittest

from apiary_harness import ApiaryServer, request


def unix_connect(path, timeout=5.0):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    sock.connect(path)
    return sock


def logged_clients(server, path, count):
    server.sigterm()
    assert server.wait(10) == 0
    with open(path, encoding="utf-8") as f:
        lines = [json.loads(line) for line in f]
    assert len(lines) == count, lines
    return [line["client"] for line in lines]


class ClientAddressTest(unittest.TestCase):
    def run_requests(self, trusted, headers_list, extra=None, via_unix=False):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "access.log")
            sock_path = os.path.join(tmp, "apiary.sock")
            config = {"trusted_proxies": trusted, "access_log": {"enabled": True, "path": path},
                      "unix_socket": {"path": sock_path}}
            config.update(extra or {})
            with ApiaryServer(config, threads=1) as srv:
                with (unix_connect(sock_path) if via_unix else srv.connect()) as sock:
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
            {"Forwarded": 'for=6.6.6.6, for="[2001:db8::7]:4711"'}, # not the configured header
            {},                                                     # no header: the proxy itself
            {"X-Forwarded-For": "garbage"},                         # junk: keep what we can vouch for
        ])
        self.assertEqual(clients, ["198.51.100.1", "198.51.100.2", "127.0.0.1", "127.0.0.1", "127.0.0.1"])

    def test_forwarded_when_configured_and_then_only_it(self):
        # The proxy sets Forwarded: an X-Forwarded-For it passes along came from the client.
        clients = self.run_requests(["127.0.0.0/8"], [
            {"Forwarded": 'for=6.6.6.6, for="[2001:db8::7]:4711"'},
            {"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=198.51.100.5;proto=http"},
            {"X-Forwarded-For": "6.6.6.6"},
        ], extra={"proxy_header": "Forwarded"})
        self.assertEqual(clients, ["2001:db8::7", "198.51.100.5", "127.0.0.1"])

    def test_unix_socket_proxy_is_trusted_only_when_listed(self):
        xff = [{"X-Forwarded-For": "198.51.100.8"}]
        self.assertEqual(self.run_requests(["unix"], xff, via_unix=True), ["198.51.100.8"])
        self.assertEqual(self.run_requests([], xff, via_unix=True), ["local"])
        # "unix" trusts the socket, not TCP peers.
        self.assertEqual(self.run_requests(["unix"], xff), ["127.0.0.1"])


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

    def test_one_client_gets_one_bucket_whatever_the_hops_before_it(self):
        # A trusted IPv6 hop before the client's IPv4 one once left its bytes in the client's key, so
        # each request found a fresh bucket: 9 requests in the window must see 6 refusals.
        config = {"trusted_proxies": ["127.0.0.1", "fd00::/8"],
                  "rate_limit": {"enabled": True, "requests_per_second": 1, "burst": 3}}
        with ApiaryServer(config, threads=1) as srv, srv.connect() as sock:
            statuses = [request(sock, "GET", "/v1/hello",
                                {"X-Forwarded-For": f"198.51.100.20, fd00::{i + 1:x}"}).status for i in range(9)]
        self.assertEqual(statuses.count(429), 6, statuses)

    def test_unix_clients_without_a_trusted_proxy_share_one_bucket(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "apiary.sock")
            config = {"unix_socket": {"path": path},
                      "rate_limit": {"enabled": True, "requests_per_second": 1, "burst": 2}}
            with ApiaryServer(config, threads=1):
                statuses = []
                for i in range(4):
                    with unix_connect(path) as sock:
                        statuses.append(request(sock, "GET", "/v1/hello", {"X-Forwarded-For": f"198.51.100.{i}"}).status)
        self.assertEqual(statuses, [200, 200, 429, 429])

    def test_off_by_default(self):
        with ApiaryServer({}, threads=1) as srv, srv.connect() as sock:
            for _ in range(300):
                self.assertEqual(request(sock, "GET", "/v1/hello").status, 200)


if __name__ == "__main__":
    unittest.main()
