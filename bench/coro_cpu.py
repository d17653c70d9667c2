#!/usr/bin/python3
"""bench/coro_cpu.py: server CPU per request of the same route in both styles, in one run (issue 20).

Starts one apiary (one loop thread, pinned to CPU 0 with taskset) and drives each route with wrk
(pinned to CPU 1) in alternating rounds, reading the server's CPU time (utime + stime from
/proc/PID/stat) around each round: CPU microseconds per request, and the coroutine / callback ratio
(bench/cpu_rounds.py). Routes (--route): pair, /v1/example/pair (callback) against
/v1/example/pair_await (coroutine) with 0 ms sleeps, so the request is all engine, toolkit and the
style's own overhead; db, /v1/db against /v1/db_await on the embedded SQLite (the server's CPU includes
its worker threads). On a loaded machine use coro_callgrind.py instead: instruction counts repeat.

  coro_cpu.py APIARY_BIN [--route pair|db] [--rounds 3] [--seconds 5] [--connections 64]
"""
import argparse
import tempfile

import cpu_rounds

ROUTES = {"pair": {"callback": "/v1/example/pair?a_ms=0&b_ms=0&timeout_ms=10",
                   "coroutine": "/v1/example/pair_await?a_ms=0&b_ms=0&timeout_ms=10"},
          "db": {"callback": "/v1/db", "coroutine": "/v1/db_await"}}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--route", choices=list(ROUTES), default="pair")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = cpu_rounds.start(args.binary, tmp, {"log_level": "warn"})
        try:
            runs = {name: (proc.pid, port, path, ()) for name, path in ROUTES[args.route].items()}
            per = cpu_rounds.alternate(runs, args.rounds, args.seconds, args.connections)
        finally:
            cpu_rounds.stop(proc)
    print(f"callback {per['callback']:.2f} us, coroutine {per['coroutine']:.2f} us server CPU per request: "
          f"coroutine / callback = {per['coroutine'] / per['callback']:.3f}")
    print(f"RESULT route={args.route} callback_us={per['callback']:.3f} coroutine_us={per['coroutine']:.3f} "
          f"ratio={per['coroutine'] / per['callback']:.3f}")


if __name__ == "__main__":
    main()
