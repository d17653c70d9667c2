#!/usr/bin/python3
"""bench/soak.py: a long, mixed load on one apiary process, to show it holds its memory and its
descriptors over time. Run through bench/soak.sh SECONDS (which builds the Release binary).

For SECONDS, on loopback, at once:
  - 6 keep-alive clients cycling through every endpoint with valid requests (hello, echo, kv
    PUT/GET/DELETE, sleep, aggregate, primes, password hash now and then, fanout to the server's own
    /v1/hello as upstream, example pair, healthz, readyz, metrics) and invalid ones (bad JSON, 404, 405,
    415, 413, a bad Host, a JSON body past json_max_values), each answer checked;
  - a pipelining client (20 requests a write), a client that disconnects abruptly (RST mid-request,
    mid-body, with answers unread), a slow reader (pipelines 200 requests, reads slowly);
  - a SIGHUP reload every 10 s.
Every second it samples the server's RSS (VmRSS) and open descriptors (/proc/PID/fd). At the end it waits
for the clients' connections to close and prints one line: requests, rate, 5xx that were not
deliberate (503 from a cap and 504 from a deadline are), the median RSS of the first quarter after
warm-up (a tenth of the run, at least 30 s) against that of the last quarter, RSS once idle after
the load, and the descriptors before the load and after it.
Exits 1 when RSS grew more than 5 % after warm-up, descriptors are not back, or an unexpected 5xx
or a wrong answer was seen.
  bench/soak.py BINARY SECONDS"""

import json
import os
import random
import signal
import socket
import struct
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
os.environ.setdefault("APIARY_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from apiary_harness import (ApiaryServer, build_request, open_fds, raise_nofile_limit, read_response,  # noqa: E402
                            rss_kib)

JSON = [("Content-Type", "application/json")]






class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.by_status = {}
        self.unexpected = []  # (what, status or error)

    def add(self, status):
        with self.lock:
            self.requests += 1
            self.by_status[status] = self.by_status.get(status, 0) + 1

    def wrong(self, what, got):
        with self.lock:
            if len(self.unexpected) < 20:
                self.unexpected.append((what, got))


def body(value):
    return json.dumps(value).encode()


def valid_requests(rng, worker):
    key = f"k{worker}-{rng.randrange(50)}"
    return [
        ("GET", "/v1/hello", None, None, {200}),
        ("POST", "/v1/echo", JSON, body({"a": [1, 2.5, "x"], "n": rng.random()}), {200}),
        ("PUT", f"/v1/kv/{key}", JSON, body({"v": rng.randrange(1000)}), {200, 201}),
        ("GET", f"/v1/kv/{key}", None, None, {200, 404}),
        ("DELETE", f"/v1/kv/{key}", None, None, {204, 404}),
        ("GET", f"/v1/sleep?ms={rng.randrange(20)}", None, None, {200, 503}),
        ("POST", "/v1/aggregate", JSON, body({"sources": [{"name": "a", "delay_ms": 5}, {"name": "b", "delay_ms": 10}],
                                               "timeout_ms": 100}), {200, 503}),
        ("GET", f"/v1/primes?n={rng.randrange(2, 100000)}", None, None, {200, 503}),
        ("POST", "/v1/fanout", JSON, body({"requests": [{"upstream": "self", "path": "/v1/hello"}] * 3,
                                           "timeout_ms": 1000}), {200, 503}),
        ("GET", "/v1/example/pair?a_ms=3&b_ms=5&timeout_ms=50", None, None, {200, 503}),
        ("GET", "/healthz", None, None, {200}),
        ("GET", "/readyz", None, None, {200}),
        ("GET", "/metrics", None, None, {200}),
    ]


def invalid_requests():
    return [
        ("POST", "/v1/echo", JSON, b'{"a": [1, 2', {400}),
        ("GET", "/v1/nope", None, None, {404}),
        ("POST", "/v1/hello", None, None, {405}),
        ("POST", "/v1/echo", [("Content-Type", "text/plain")], b"{}", {415}),
        ("POST", "/v1/echo", JSON, b"[" + b"1," * 30000 + b"1]", {413}),
        ("GET", "/v1/sleep?ms=x", None, None, {400}),
    ]


def keepalive_client(srv, stats, deadline, worker):
    rng = random.Random(worker)
    sock = None
    while time.monotonic() < deadline:
        try:
            if sock is None:
                sock = srv.connect(timeout=10)
            reqs = valid_requests(rng, worker) + invalid_requests()
            method, path, headers, data, ok = rng.choice(reqs)
            if rng.random() < 0.01:
                method, path, headers, data, ok = ("POST", "/v1/password/hash", JSON, body({"password": "pw"}),
                                                   {200, 503})
            sock.sendall(build_request(method, path, headers, data))
            resp = read_response(sock, head_request=(method == "HEAD"), timeout=10)
            stats.add(resp.status)
            if resp.status not in ok:
                stats.wrong(f"{method} {path}", resp.status)
            if "close" in resp.connection_tokens() or resp.status == 413:
                sock.close()
                sock = None
            if rng.random() < 0.02:  # a bad Host closes the connection by design
                if sock is None:
                    sock = srv.connect(timeout=10)
                sock.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: a b\r\n\r\n")
                resp = read_response(sock, timeout=10)
                stats.add(resp.status)
                if resp.status != 400:
                    stats.wrong("bad host", resp.status)
                sock.close()
                sock = None
        except Exception as e:  # noqa: BLE001 - any failure of a well-behaved client is a finding
            stats.wrong("keep-alive client", repr(e))
            if sock:
                sock.close()
            sock = None
            time.sleep(0.1)
    if sock:
        sock.close()


def pipelining_client(srv, stats, deadline):
    while time.monotonic() < deadline:
        try:
            with srv.connect(timeout=10) as sock:
                for _ in range(20):
                    sock.sendall(build_request("GET", "/v1/hello") * 10 + build_request("POST", "/v1/echo", JSON, b"[1]") * 10)
                    for _ in range(20):
                        resp = read_response(sock, timeout=10)
                        stats.add(resp.status)
                        if resp.status != 200:
                            stats.wrong("pipelined", resp.status)
        except Exception as e:  # noqa: BLE001
            stats.wrong("pipelining client", repr(e))
            time.sleep(0.1)


def rst(sock):
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def abrupt_client(srv, deadline):
    rng = random.Random(99)
    while time.monotonic() < deadline:
        try:
            sock = srv.connect(timeout=10)
            choice = rng.randrange(4)
            if choice == 0:
                sock.sendall(b"GET /v1/sleep?ms=200 HTTP/1.1\r\nHost: t\r\n\r\n")
            elif choice == 1:
                sock.sendall(b"POST /v1/echo HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
                             b"Content-Length: 1000\r\n\r\n[1,2,")
            elif choice == 2:
                sock.sendall(build_request("GET", "/v1/hello") * 50)
            else:
                sock.sendall(b"GET /v1/hel")
            time.sleep(rng.random() * 0.05)
            rst(sock)
        except OSError:
            pass
        time.sleep(0.01)


def slow_reader(srv, stats, deadline):
    while time.monotonic() < deadline:
        try:
            with srv.connect(timeout=10) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
                sock.sendall(build_request("GET", "/v1/hello") * 200)
                for _ in range(200):
                    resp = read_response(sock, timeout=30)
                    stats.add(resp.status)
                    time.sleep(0.005)
        except Exception as e:  # noqa: BLE001
            stats.wrong("slow reader", repr(e))
            time.sleep(0.1)


def main():
    binary, seconds = sys.argv[1], float(sys.argv[2])
    os.environ["APIARY_BIN"] = os.path.abspath(binary)
    raise_nofile_limit()
    config = {"limits": {"max_sleep_ms": 1000}, "pool": {"queue_size": 16},
              "password": {"opslimit": 1, "memlimit_kib": 8192}}
    stats = Stats()
    with ApiaryServer(config, threads=2) as srv:
        pid = srv.proc.pid
        # Fanout's upstream is the server itself, known once it listens: add it and reload.
        config["upstreams"] = {"self": {"url": f"http://127.0.0.1:{srv.port}", "max_connections": 16,
                                        "idle_timeout_ms": 1000, "timeout_ms": 2000}}
        srv.config.update(config)
        with open(srv.config_path, "w", encoding="utf-8") as f:
            json.dump(srv.config, f)
        os.kill(pid, signal.SIGHUP)
        time.sleep(0.5)
        fds_start = open_fds(pid)
        start = time.monotonic()
        deadline = start + seconds
        threads = [threading.Thread(target=keepalive_client, args=(srv, stats, deadline, w)) for w in range(6)]
        threads += [threading.Thread(target=pipelining_client, args=(srv, stats, deadline)),
                    threading.Thread(target=abrupt_client, args=(srv, deadline)),
                    threading.Thread(target=slow_reader, args=(srv, stats, deadline))]
        for t in threads:
            t.start()
        warmup = max(30.0, seconds / 10) if seconds >= 60 else seconds / 3
        samples, next_hup = [], start + 10
        while time.monotonic() < deadline:
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))
            now = time.monotonic()
            rss = rss_kib(pid)
            samples.append((now - start, rss, open_fds(pid)))
            if now >= next_hup:
                os.kill(pid, signal.SIGHUP)
                next_hup = now + 10
        for t in threads:
            t.join(60)
        time.sleep(3)  # the server notices the last closes, lingering ends, idle upstream links time out
        rss_idle, fds_end = rss_kib(pid), open_fds(pid)
        # RSS swings with what is in flight (pipelines, the slow reader's answers), so a sample alone says
        # little: the median of the first quarter after warm-up is compared with that of the last quarter.
        loaded = [s for s in samples if s[0] >= warmup]
        quarter = max(1, len(loaded) // 4)
        first = sorted(s[1] for s in loaded[:quarter]) or [rss_idle]
        last = sorted(s[1] for s in loaded[-quarter:]) or [rss_idle]
        rss_warm, rss_end = first[len(first) // 2], last[len(last) // 2]
        rss_max = max(s[1] for s in loaded) if loaded else rss_idle
        alive = srv.alive()
    rss_warm = rss_warm or rss_end or 1
    growth = (rss_end - rss_warm) / rss_warm * 100
    deliberate = {s: n for s, n in stats.by_status.items() if s in (503, 504)}
    bad5xx = {s: n for s, n in stats.by_status.items() if s >= 500 and s not in (503, 504)}
    ok = alive and growth <= 5.0 and fds_end <= fds_start and not bad5xx and not stats.unexpected
    print(f"soak: {seconds:.0f} s, {stats.requests} requests ({stats.requests / seconds:.0f}/s), "
          f"statuses {dict(sorted(stats.by_status.items()))}, unexpected 5xx {bad5xx or 0}, deliberate {deliberate or 0}, "
          f"wrong answers {len(stats.unexpected)}; RSS median early {rss_warm / 1024:.1f} MiB -> late "
          f"{rss_end / 1024:.1f} MiB ({growth:+.1f} %, max {rss_max / 1024:.1f}, idle after {rss_idle / 1024:.1f}); "
          f"fds {fds_start} -> {fds_end}; "
          f"{'PASS' if ok else 'FAIL'}")
    by_minute = [f"{s[1] / 1024:.1f}" for s in samples[59::60]]
    if by_minute:
        print(f"  RSS MiB at each minute: {' '.join(by_minute)}")
    for what, got in stats.unexpected:
        print(f"  unexpected: {what}: {got}")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
