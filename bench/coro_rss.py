#!/usr/bin/python3
"""bench/coro_rss.py: memory of N requests awaiting at once, coroutine against callback (issue 20).

For each route (default /v1/example/pair, the callback style, and /v1/example/pair_await, the same as
a coroutine), starts a fresh apiary (one loop thread), warms the route up, reads VmRSS, then sends N
requests on N connections that each wait SLEEP ms (both sources sleep, in parallel), samples VmRSS
while all of them wait, reads every answer and checks it. Prints the growth per awaiting request for
each route and the difference (for the coroutine: its stack pages actually touched plus its struct).

  coro_rss.py APIARY_BIN [-n 10000] [--sleep-ms 3000]

Stdlib only. The last lines are machine-readable: "RESULT route=... per_request_kib=...".
"""
import argparse
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time

from loopback import free_port, wait_listening


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def start_server(binary, n):
    port = free_port()
    cfg = {"log_level": "warn", "max_connections": n + 1000,
           "limits": {"max_async_per_loop": n + 1000},
           "timeouts": {"keepalive_ms": 600000, "header_ms": 600000, "request_ms": 600000}}
    tmp = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump(cfg, tmp)
    tmp.close()
    proc = subprocess.Popen([os.path.abspath(binary), "--config", tmp.name, "--listen", f"127.0.0.1:{port}",
                             "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=tempfile.gettempdir())
    try:
        wait_listening(port, 10, proc)
    except SystemExit:
        proc.kill()
        raise
    finally:
        os.unlink(tmp.name)
    return proc, port


def request_bytes(path):
    return f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode()


def read_answer(sock):
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, _, body = buf.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        body += sock.recv(65536)
    return int(head.split()[1]), json.loads(body)


def measure(binary, route, n, sleep_ms):
    proc, port = start_server(binary, n)
    try:
        path = f"{route}?a_ms={sleep_ms}&b_ms={sleep_ms}&timeout_ms={sleep_ms * 2}"
        warm = f"{route}?a_ms=1&b_ms=1&timeout_ms=10"
        with socket.create_connection(("127.0.0.1", port)) as s:
            for _ in range(200):
                s.sendall(request_bytes(warm))
                read_answer(s)
        time.sleep(0.2)
        before = rss_kib(proc.pid)
        socks = []
        started = time.monotonic()
        wire = request_bytes(path)
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", port))
            s.sendall(wire)
            socks.append(s)
        sent_s = time.monotonic() - started
        peak = before
        # Sample while they wait (they all answer SLEEP ms after their own start).
        while time.monotonic() - started < sleep_ms / 1000 * 0.9:
            peak = max(peak, rss_kib(proc.pid))
            time.sleep(0.02)
        ok = 0
        for s in socks:
            s.settimeout(sleep_ms / 1000 * 4 + 10)
            answer = read_answer(s)
            if answer and answer[0] == 200 and answer[1]["a"]["ok"] is True and answer[1]["b"]["ok"] is True:
                ok += 1
            s.close()
        return {"route": route, "before_kib": before, "peak_kib": peak, "sent_s": sent_s, "ok": ok,
                "per_request_kib": (peak - before) / n}
    finally:
        proc.terminate()
        proc.wait(10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("-n", type=int, default=10000)
    ap.add_argument("--sleep-ms", type=int, default=3000)
    ap.add_argument("--routes", default="/v1/example/pair,/v1/example/pair_await")
    args = ap.parse_args()
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    results = [measure(args.binary, r, args.n, args.sleep_ms) for r in args.routes.split(",")]
    for r in results:
        print(f"{r['route']}: {args.n} awaiting, sent in {r['sent_s']:.1f} s, RSS {r['before_kib']} -> "
              f"{r['peak_kib']} KiB: {r['per_request_kib']:.2f} KiB per awaiting request; "
              f"{r['ok']}/{args.n} answered correctly")
    if len(results) == 2:
        print(f"coroutine - callback: {results[1]['per_request_kib'] - results[0]['per_request_kib']:.2f} KiB "
              "per awaiting request")
    for r in results:
        print(f"RESULT route={r['route']} per_request_kib={r['per_request_kib']:.2f} ok={r['ok']} n={args.n}")
    sys.exit(0 if all(r["ok"] == args.n for r in results) else 1)


if __name__ == "__main__":
    main()
