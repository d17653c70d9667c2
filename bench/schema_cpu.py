#!/usr/bin/python3
"""bench/schema_cpu.py: server CPU per POST /v1/items of two apiary binaries in one run (issue 21): the
declared schema against its hand-validated predecessor.

Starts both (one loop thread each, pinned to CPU 0 with taskset, each on its own SQLite file in a
temporary directory) and drives them with wrk (pinned to CPU 1) in alternating rounds, reading each
server's CPU time (utime + stime of every thread, /proc/PID/stat) around its round: CPU microseconds
per request, and the ratio (bench/cpu_rounds.py). The body is the items body, a valid item, so both do
the whole request (validation, the insert on the worker pool, the 201).

  schema_cpu.py NEW_BIN OLD_BIN [--route items|sleep] [--rounds 3] [--seconds 5] [--connections 64]
                [--db-dir /dev/shm]
"""
import argparse
import os
import tempfile

import cpu_rounds

LUA = """
wrk.method = "POST"
wrk.body = '{"name":"a honeycomb frame, deep","price":9.5}'
wrk.headers["Content-Type"] = "application/json"
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("new")
    ap.add_argument("old")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--route", choices=["items", "sleep"], default="items",
                    help="items: POST /v1/items (the issue's figure); sleep: GET /v1/sleep?ms=0, a declared query "
                         "parameter on a route that costs little else")
    ap.add_argument("--db-dir", default=None,
                    help="where the two SQLite files go (default: the temporary directory). /dev/shm takes the "
                         "disk's fdatasync out of the figure: its group commits batch differently from run to run "
                         "(393 vs 609 per 2,100 inserts seen), which moved the ratio more than validation does")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.db_dir) as tmp:
        lua = os.path.join(tmp, "post.lua")
        with open(lua, "w") as f:
            f.write(LUA)
        target, extra = ("/v1/items", ("-s", lua)) if args.route == "items" else ("/v1/sleep?ms=0", ())
        servers = {}
        try:
            for name, binary in (("declared", args.new), ("by hand", args.old)):
                workdir = os.path.join(tmp, name)
                os.mkdir(workdir)
                servers[name] = cpu_rounds.start(binary, workdir, {
                    "log_level": "warn", "sql": {"url": "sqlite:" + os.path.join(workdir, "items.db")}})
            runs = {name: (proc.pid, port, target, extra) for name, (proc, port) in servers.items()}
            per = cpu_rounds.alternate(runs, args.rounds, args.seconds, args.connections)
        finally:
            for proc, _ in servers.values():
                cpu_rounds.stop(proc)
    print(f"RESULT route={args.route} declared_us={per['declared']:.2f} by_hand_us={per['by hand']:.2f} "
          f"ratio={per['declared'] / per['by hand']:.3f}")


if __name__ == "__main__":
    main()
