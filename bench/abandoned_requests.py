#!/usr/bin/python3
"""bench/abandoned_requests.py: what requests whose clients closed cost everyone else (issue 18). N clients
each send GET /v1/sleep?ms=20000 and close their socket at once (a FIN, as a client that gave up does),
against one loop whose limits.max_async_per_loop is N; then another client sends GET /v1/sleep?ms=10
every 0.25 s until it is answered 200 (or 30 s passed). Prints how long the other client waited, how
many 503s it got, and the server's counters.

  bench/abandoned_requests.py BINARY [--count N] [--half-close cancel|answer]

Without --half-close the config does not name the key (a binary from before issue 18 knows none).
Starts its own server (--threads 1, port 0 on loopback) and stops it; bounded in time."""

import argparse
import os
import re
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
os.environ.setdefault("APIARY_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from apiary_harness import ApiaryServer, build_request, raise_nofile_limit, request  # noqa: E402


def metrics(srv):
    with srv.connect() as sock:
        text = request(sock, "GET", "/metrics").body.decode()
    out = {}
    for name in ("apiary_http_requests_in_flight", "apiary_http_requests_rejected_total",
                 "apiary_http_cancelled_total", "apiary_http_half_closed_cancelled_total"):
        m = re.search(rf"^{name} (\d+)$", text, re.M)
        out[name] = int(m.group(1)) if m else None
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--half-close", choices=("cancel", "answer"))
    args = ap.parse_args()
    os.environ["APIARY_BIN"] = os.path.abspath(args.binary)
    raise_nofile_limit()
    config = {"limits": {"max_async_per_loop": args.count}, "drain_timeout_ms": 200}
    if args.half_close:
        config["half_close"] = args.half_close
    with ApiaryServer(config, threads=1, nofile=args.count * 2 + 256) as srv:
        t0 = time.monotonic()
        for _ in range(args.count):
            sock = srv.connect()
            sock.sendall(build_request("GET", "/v1/sleep?ms=20000"))
            sock.close()
        sent = time.monotonic() - t0
        time.sleep(0.2)
        after_abandon = metrics(srv)
        refused = 0
        start = time.monotonic()
        while time.monotonic() - start < 30:
            with srv.connect() as sock:
                t = time.monotonic()
                resp = request(sock, "GET", "/v1/sleep?ms=10", timeout=10)
                took = time.monotonic() - t
            if resp.status == 200:
                break
            refused += 1
            time.sleep(0.25)
        waited = time.monotonic() - start
        print(f"half_close={args.half_close or '(default)'} count={args.count}: sent and closed in {sent:.2f} s; "
              f"other client: {refused} x 503, answered 200 after {waited:.2f} s "
              f"(the answering request itself took {took * 1000:.1f} ms, sleep 10 ms)")
        print(f"  after abandoning: {after_abandon}")
        print(f"  at the end:       {metrics(srv)}")


if __name__ == "__main__":
    main()
