#!/usr/bin/python3
"""bench/hostile_upstream.py: what one fan-out to a hostile upstream costs everyone else on its loop
(issue 18), for the binary given. One POST /v1/fanout of 16 calls (the default fanout.max_requests)
to an upstream that answers each with 1 MiB (the default max_response_bytes) of one kind of body:

  objects  "[{},{},...]", a JSON value every 3 bytes (the review's body)
  deep     "[[[...]]]", 512 Ki levels
  string   one valid JSON string (the costliest body the limits admit: validated and copied whole)
  text     plain text, not JSON (answered as a JSON string)
  binary   \x01\xff repeated: neither JSON nor text (the call fails)
  mixed    "abcde\x01" repeated: the costliest text still admitted (1.83x its size as a JSON string)

while a second connection on the same loop (--threads 1) sends GET /healthz back to back: the worst
probe latency is the loop stall. RSS is read before and after, and the peak (VmHWM) after.

  bench/hostile_upstream.py BINARY [--kinds objects,deep,string,text,binary,mixed] [--calls 16]

Starts its own server and upstream on loopback (port 0), a fresh server per kind; bounded in time."""

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
os.environ.setdefault("APIARY_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from apiary_harness import ApiaryServer, build_request, read_response, rss_kib  # noqa: E402

UPSTREAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration",
                        "misbehaving_upstream.py")

BODY_BYTES = 1048576


def peak_kib(pid):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def lag_max_ms(srv):
    """The loop's own view: apiary_loop_lag_max_seconds (how late its 100 ms probe timer fired)."""
    with srv.connect() as sock:
        sock.settimeout(600)
        sock.sendall(build_request("GET", "/metrics"))
        text = read_response(sock).body.decode()
    m = re.search(r"^apiary_loop_lag_max_seconds (\S+)$", text, re.M)
    return float(m.group(1)) * 1e3 if m else float("nan")


def cpu_ms(pid):
    """CPU time of every thread of the server, from /proc/PID/task/*/schedstat (ns, exact): unlike a
    latency it does not grow when other processes load the machine."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/schedstat", encoding="ascii") as f:
            total += int(f.read().split()[0])
    return total / 1e6


def fanout_body(kind, calls):
    return json.dumps({"requests": [{"upstream": "hostile", "path": f"/hostile?kind={kind}&bytes={BODY_BYTES}"}]
                       * calls}).encode()


def fanout_cpu(srv, kind, calls):
    """One fan-out with nothing else going on: the server's CPU time for it, all of it loop work."""
    with srv.connect() as sock:
        sock.settimeout(600)
        before = cpu_ms(srv.proc.pid)
        sock.sendall(build_request("POST", "/v1/fanout", [("Content-Type", "application/json")],
                                   fanout_body(kind, calls)))
        read_response(sock, timeout=120)
        return cpu_ms(srv.proc.pid) - before


def one_fanout(srv, kind, calls):
    probe = srv.connect()
    probe.settimeout(600)  # the unbounded parse held the loop for minutes on a loaded machine
    worst = 0.0
    probes = 0
    stop = threading.Event()

    def probing():
        nonlocal worst, probes
        while not stop.is_set():
            t = time.monotonic()
            probe.sendall(build_request("GET", "/healthz"))
            read_response(probe, timeout=600)
            worst = max(worst, time.monotonic() - t)
            probes += 1

    body = fanout_body(kind, calls)
    rss_before = rss_kib(srv.proc.pid)
    th = threading.Thread(target=probing)
    th.start()
    time.sleep(0.3)
    with srv.connect() as sock:
        sock.settimeout(600)
        t = time.monotonic()
        sock.sendall(build_request("POST", "/v1/fanout", [("Content-Type", "application/json")], body))
        resp = read_response(sock, timeout=600)
        took = time.monotonic() - t
    time.sleep(0.3)
    stop.set()
    th.join()
    probe.close()
    verdicts = {}
    if resp.status == 200:
        for r in json.loads(resp.body)["results"]:
            key = "ok" if r["ok"] else r["error"]
            verdicts[key] = verdicts.get(key, 0) + 1
    received = calls * BODY_BYTES
    hwm = peak_kib(srv.proc.pid)
    print(f"{kind:8s} {calls} x 1 MiB: {resp.status} {verdicts} answer {len(resp.body) / 1048576:.1f} MiB in "
          f"{took * 1e3:.0f} ms; worst /healthz probe {worst * 1e3:.1f} ms ({probes} probes); RSS "
          f"{rss_before / 1024:.1f} -> {rss_kib(srv.proc.pid) / 1024:.1f} MiB, peak {hwm / 1024:.1f} MiB "
          f"({(hwm - rss_before) * 1024 / received:.1f}x the {received / 1048576:.0f} MiB received); loop lag max "
          f"{lag_max_ms(srv):.0f} ms", flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--kinds", default="objects,deep,string,text,binary,mixed")
    ap.add_argument("--calls", type=int, default=16)
    args = ap.parse_args()
    os.environ["APIARY_BIN"] = os.path.abspath(args.binary)
    # The upstream runs in its own process: building and sending 16 MiB in this one would hold the
    # GIL and delay the probe thread, which would then measure Python rather than the loop.
    mis = subprocess.Popen([sys.executable, UPSTREAM, "0"], stdout=subprocess.PIPE, text=True)
    try:
        port = int(mis.stdout.readline().rsplit(":", 1)[1])
        cfg = {"upstreams": {"hostile": {"url": f"http://127.0.0.1:{port}", "max_connections": args.calls,
                                         "timeout_ms": 600000}},
               "timeouts": {"request_ms": 600000},
               # Every callback over 2 ms is logged with its wall time (coarse clock): the longest
               # one is the loop's own view of the stall.
               "slow_callback_ms": 2}
        for kind in args.kinds.split(","):
            with ApiaryServer(cfg, threads=1) as srv:
                one_fanout(srv, kind, args.calls)
                cpu = sorted(fanout_cpu(srv, kind, args.calls) for _ in range(3))
                blocked = [int(m) for m in re.findall(r"blocked the loop for (\d+) ms", srv.log_text())]
                print(f"{kind:8s} server CPU per fan-out (3 runs, no probe): {cpu[0]:.0f} / {cpu[1]:.0f} / "
                      f"{cpu[2]:.0f} ms; longest callback (wall, 4 fan-outs): {max(blocked, default=0)} ms",
                      flush=True)
    finally:
        mis.terminate()
        mis.wait()

if __name__ == "__main__":
    main()
