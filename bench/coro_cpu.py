#!/usr/bin/python3
"""bench/coro_cpu.py: server CPU per request of the same route in both styles, in one run (issue 20).

Starts one apiary (one loop thread, pinned to CPU 0 with taskset) and drives each route with wrk
(pinned to CPU 1) in alternating rounds, reading the server's CPU time (utime + stime from
/proc/PID/stat) around each round: CPU microseconds per request, and the coroutine / callback ratio.
Routes (--route): pair, /v1/example/pair (callback) against /v1/example/pair_await (coroutine) with
0 ms sleeps, so the request is all engine, toolkit and the style's own overhead; db, /v1/db against
/v1/db_await on the embedded SQLite (the server's CPU includes its worker threads).

  coro_cpu.py APIARY_BIN [--route pair|db] [--rounds 3] [--seconds 5] [--connections 64]
"""
import argparse
import json
import os
import re
import socket
import subprocess
import tempfile
import time

HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ  # utime, stime


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--route", choices=["pair", "db"], default="pair")
    args = ap.parse_args()
    routes = {"pair": {"callback": "/v1/example/pair?a_ms=0&b_ms=0&timeout_ms=10",
                       "coroutine": "/v1/example/pair_await?a_ms=0&b_ms=0&timeout_ms=10"},
              "db": {"callback": "/v1/db", "coroutine": "/v1/db_await"}}[args.route]
    port = free_port()
    tmp = tempfile.NamedTemporaryFile("w", suffix=".json", delete=False)
    json.dump({"log_level": "warn"}, tmp)
    tmp.close()
    proc = subprocess.Popen(["taskset", "-c", "0", os.path.abspath(args.binary), "--config", tmp.name, "--listen",
                             f"127.0.0.1:{port}", "--threads", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=tempfile.gettempdir())
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                break
            except OSError:
                time.sleep(0.05)
        totals = {name: [0.0, 0] for name in routes}
        for rnd in range(args.rounds + 1):  # round 0 warms up and is not counted
            for name, path in routes.items():
                before = cpu_seconds(proc.pid)
                out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{args.connections}",
                                      f"-d{args.seconds}s", f"http://127.0.0.1:{port}{path}"],
                                     capture_output=True, text=True, check=True).stdout
                used = cpu_seconds(proc.pid) - before
                requests = int(re.search(r"(\d+) requests in", out).group(1))
                bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
                if bad:
                    raise SystemExit(f"{name}: {bad.group(1)} bad answers")
                if rnd:
                    totals[name][0] += used
                    totals[name][1] += requests
                    print(f"round {rnd} {name:9s}: {requests / args.seconds:8.0f} req/s, "
                          f"{used / requests * 1e6:6.2f} us server CPU per request")
        per = {name: t[0] / t[1] * 1e6 for name, t in totals.items()}
        print(f"callback {per['callback']:.2f} us, coroutine {per['coroutine']:.2f} us server CPU per request: "
              f"coroutine / callback = {per['coroutine'] / per['callback']:.3f}")
        print(f"RESULT route={args.route} callback_us={per['callback']:.3f} coroutine_us={per['coroutine']:.3f} "
              f"ratio={per['coroutine'] / per['callback']:.3f}")
    finally:
        proc.terminate()
        proc.wait(10)
        os.unlink(tmp.name)


if __name__ == "__main__":
    main()
