"""GET /metrics: the Prometheus text exposition parses against the format's grammar (a small parser
below, strict about names, labels, escaping, TYPE lines and histogram shape), and the counters move
with the traffic: requests by route and status, latency histograms, connections, in-flight requests,
loop lag and the worker pool."""

import re
import socket
import time
import unittest

from apiary_harness import ServerTestMixin, request

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
SAMPLE = re.compile(rf"^({NAME})(?:\{{({LABEL}(?:,{LABEL})*)?\}})? (\S+)$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def parse_labels(text):
    labels = {}
    for m in re.finditer(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', text or ""):
        labels[m.group(1)] = m.group(2).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\")
    return labels


def parse_exposition(text):
    """Returns ({family: type}, [(name, labels, value)]); raises AssertionError on any grammar error."""
    types, samples, seen_help = {}, [], set()
    assert text.endswith("\n"), "the exposition must end with a newline"
    for lineno, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            assert re.fullmatch(NAME, name), f"line {lineno}: bad HELP name {name!r}"
            assert name not in seen_help, f"line {lineno}: second HELP for {name}"
            seen_help.add(name)
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            assert len(parts) == 4 and re.fullmatch(NAME, parts[2]) and parts[3] in TYPES, f"line {lineno}: {line!r}"
            assert parts[2] not in types, f"line {lineno}: second TYPE for {parts[2]}"
            types[parts[2]] = parts[3]
            continue
        assert not line.startswith("#") or line.startswith("# "), f"line {lineno}: bad comment"
        if line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"line {lineno}: not a sample line: {line!r}"
        name, labels, value = m.group(1), parse_labels(m.group(2)), m.group(3)
        assert value in ("+Inf", "-Inf", "NaN") or re.fullmatch(r"-?[0-9.]+(?:e[-+]?[0-9]+)?", value), \
            f"line {lineno}: bad value {value!r}"
        family = re.sub(r"_(bucket|sum|count)$", "", name)
        assert name in types or family in types, f"line {lineno}: sample {name} before its TYPE line"
        samples.append((name, labels, float(value)))
    return types, samples


def check_histograms(types, samples):
    for family, kind in types.items():
        if kind != "histogram":
            continue
        series = {}
        for name, labels, value in samples:
            if name == family + "_bucket":
                key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
                series.setdefault(key, []).append((labels["le"], value))
        for key, buckets in series.items():
            values = [v for _, v in buckets]
            assert values == sorted(values), f"{family}{key}: buckets are not cumulative"
            assert buckets[-1][0] == "+Inf", f"{family}{key}: the last bucket must be +Inf"
            count = [v for n, l, v in samples if n == family + "_count"
                     and tuple(sorted(l.items())) == key]
            assert count == [buckets[-1][1]], f"{family}{key}: +Inf bucket {buckets[-1][1]} != _count {count}"


def value_of(samples, name, **labels):
    found = [v for n, l, v in samples if n == name and all(l.get(k) == want for k, want in labels.items())]
    return sum(found) if found else None


class MetricsTest(ServerTestMixin, unittest.TestCase):
    THREADS = 2
    CONFIG = {"pool": {"threads": 1, "queue_size": 8}}

    def scrape(self):
        with self.server.connect() as sock:
            resp = request(sock, "GET", "/metrics")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        types, samples = parse_exposition(resp.body.decode("utf-8"))
        check_histograms(types, samples)
        return types, samples

    def test_exposition_parses_and_has_the_families(self):
        types, samples = self.scrape()
        for family, kind in {
            "apiary_build_info": "gauge",
            "apiary_http_requests_total": "counter",
            "apiary_http_request_duration_seconds": "histogram",
            "apiary_http_connections_open": "gauge",
            "apiary_http_requests_in_flight": "gauge",
            "apiary_loop_lag_seconds": "histogram",
            "apiary_pool_queue_depth": "gauge",
            "apiary_pool_completed_total": "counter",
            "apiary_pool_rejected_total": "counter",
            "apiary_upstream_requests_total": "counter",
            "apiary_upstream_errors_total": "counter",
            "apiary_upstream_connections_open": "gauge",
            "apiary_redis_commands_total": "counter",
            "apiary_redis_errors_total": "counter",
        }.items():
            self.assertEqual(types.get(family), kind, family)
        self.assertEqual(value_of(samples, "apiary_build_info"), 1)
        self.assertEqual(value_of(samples, "apiary_loops"), 2)

    def test_counters_move_with_traffic(self):
        _, before = self.scrape()
        hello_before = value_of(before, "apiary_http_requests_total", route="GET /v1/hello", status="200") or 0
        missing_before = value_of(before, "apiary_http_requests_total", route="unmatched", status="404") or 0
        pool_before = value_of(before, "apiary_pool_completed_total")
        with self.server.connect() as sock:
            for _ in range(25):
                self.assertEqual(request(sock, "GET", "/v1/hello").status, 200)
            for _ in range(3):
                self.assertEqual(request(sock, "GET", "/no/such/route").status, 404)
            self.assertEqual(request(sock, "GET", "/v1/primes?n=1000").status, 200)
        _, after = self.scrape()
        self.assertEqual(value_of(after, "apiary_http_requests_total", route="GET /v1/hello", status="200"),
                         hello_before + 25)
        self.assertEqual(value_of(after, "apiary_http_requests_total", route="unmatched", status="404"),
                         missing_before + 3)
        self.assertEqual(value_of(after, "apiary_pool_completed_total"), pool_before + 1)
        self.assertGreaterEqual(
            value_of(after, "apiary_http_request_duration_seconds_count", route="GET /v1/hello"), 25)

    def test_gauges_see_open_connections_and_requests_in_flight(self):
        idle = [self.server.connect() for _ in range(5)]
        waiting = socket.create_connection(("127.0.0.1", self.server.port))
        try:
            waiting.sendall(b"GET /v1/sleep?ms=1500 HTTP/1.1\r\nHost: x\r\n\r\n")
            time.sleep(0.3)
            _, samples = self.scrape()
            self.assertGreaterEqual(value_of(samples, "apiary_http_connections_open"), 7)
            self.assertGreaterEqual(value_of(samples, "apiary_http_requests_in_flight"), 1)
        finally:
            waiting.close()
            for sock in idle:
                sock.close()


if __name__ == "__main__":
    unittest.main()
