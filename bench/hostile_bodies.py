#!/usr/bin/python3
"""bench/hostile_bodies.py: what one hostile client costs everyone else on its loop (issue 14), for the
binary given: (1) a 1 MiB JSON body of empty objects ("[{},{},...]", the review's loop-stall body), and
the largest such body the default limits.json_max_values admits, sent to POST /v1/echo, while a second connection on the same loop sends GET /healthz back to back — the
worst probe latency is the loop stall; (2) a client that pipelines GET /v1/hello without pause and
reads its answers at about 4 MB/s for 20 s — the server's RSS before and after.

  bench/hostile_bodies.py BINARY [--json-only | --reader-only]

Starts its own server (--threads 1, port 0 on loopback) and stops it by PID; bounded in time."""

import argparse
import os
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
os.environ.setdefault("APIARY_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from apiary_harness import ApiaryServer, build_request, read_response, rss_kib, slow_pipelining_reader  # noqa: E402




def json_stall(srv, count):
    body = b"[" + b",".join([b"{}"] * count) + b"]"
    probe = srv.connect()
    worst = 0.0
    stop = threading.Event()

    def probing():
        nonlocal worst
        while not stop.is_set():
            t = time.monotonic()
            probe.sendall(build_request("GET", "/healthz"))
            read_response(probe)
            worst = max(worst, time.monotonic() - t)

    rss_before = rss_kib(srv.proc.pid)
    th = threading.Thread(target=probing)
    th.start()
    time.sleep(0.2)
    with srv.connect() as sock:
        t = time.monotonic()
        sock.sendall(build_request("POST", "/v1/echo", [("Content-Type", "application/json")], body))
        resp = read_response(sock, timeout=30)
        took = time.monotonic() - t
    time.sleep(0.2)
    stop.set()
    th.join()
    probe.close()
    print(f"{count} x {{}} ({len(body) / 1048576:.2f} MiB) to /v1/echo: {resp.status} in {took * 1e3:.0f} ms; worst /healthz probe on the "
          f"same loop {worst * 1e3:.1f} ms; RSS {rss_before / 1024:.1f} -> {rss_kib(srv.proc.pid) / 1024:.1f} MiB "
          "")


def slow_reader(srv, seconds=20.0, rate=4e6):
    got, samples = slow_pipelining_reader(srv, seconds, rate, sample_every=5.0)
    trace = ", ".join(f"{t:.0f} s {kib / 1024:.1f}" for t, kib in samples[:-1])
    print(f"pipelining reader at {rate / 1e6:.0f} MB/s for {seconds:.0f} s, read {got / 1e6:.0f} MB: RSS MiB {trace}, "
          f"end {samples[-1][1] / 1024:.1f}")

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--json-only", action="store_true")
    ap.add_argument("--reader-only", action="store_true")
    args = ap.parse_args()
    os.environ["APIARY_BIN"] = os.path.abspath(args.binary)
    # The old default limit, where the growth was found; the same for both binaries.
    cfg = {"limits": {"output_buffer_bytes": 262144}}
    if not args.reader_only:
        # 1 MiB of empty objects, then the largest such body the default json_max_values admits
        for count in (349000, 19999):
            with ApiaryServer({}, threads=1) as srv:
                json_stall(srv, count)
    if not args.json_only:
        with ApiaryServer(cfg, threads=1) as srv:
            slow_reader(srv)


if __name__ == "__main__":
    main()
