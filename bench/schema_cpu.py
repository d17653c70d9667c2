#!/usr/bin/python3
"""bench/schema_cpu.py: server CPU per POST /v1/items of two apiary binaries in one run (issue 21): the
declared schema against its hand-validated predecessor.

Starts both (one loop thread each, pinned to CPU 0 with taskset, each on its own SQLite file in a
temporary directory) and drives them with wrk (pinned to CPU 1) in alternating rounds, reading each
server's CPU time (utime + stime of every thread, /proc/PID/stat) around its round: CPU microseconds
per request, and the ratio. The body is the items body, a valid item, so both do the whole request
(validation, the insert on the worker pool, the 201).

  schema_cpu.py NEW_BIN OLD_BIN [--route items|sleep] [--rounds 3] [--seconds 5] [--connections 64]
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
LUA = """
wrk.method = "POST"
wrk.body = '{"name":"a honeycomb frame, deep","price":9.5}'
wrk.headers["Content-Type"] = "application/json"
"""


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


def start(binary, workdir):
    port = free_port()
    config = os.path.join(workdir, "apiary.json")
    with open(config, "w") as f:
        json.dump({"log_level": "warn", "sql": {"url": "sqlite:" + os.path.join(workdir, "items.db")}}, f)
    proc = subprocess.Popen(["taskset", "-c", "0", os.path.abspath(binary), "--config", config, "--listen",
                             f"127.0.0.1:{port}", "--threads", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=workdir)
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return proc, port
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{binary} did not start")


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
    args = ap.parse_args()
    target, script = ("/v1/items", ["-s", None]) if args.route == "items" else ("/v1/sleep?ms=0", [])
    with tempfile.TemporaryDirectory() as tmp:
        lua = os.path.join(tmp, "post.lua")
        with open(lua, "w") as f:
            f.write(LUA)
        if script:
            script[1] = lua
        servers = {}
        for name, binary in (("declared", args.new), ("by hand", args.old)):
            os.mkdir(os.path.join(tmp, name))
            servers[name] = start(binary, os.path.join(tmp, name))
        try:
            totals = {name: [0.0, 0] for name in servers}
            for rnd in range(args.rounds + 1):  # round 0 warms up and is not counted
                order = list(servers.items())
                if rnd % 2:
                    order.reverse()  # neither always goes first (SQLite checkpoints, the machine's load)
                for name, (proc, port) in order:
                    before = cpu_seconds(proc.pid)
                    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{args.connections}",
                                          f"-d{args.seconds}s", *script, f"http://127.0.0.1:{port}{target}"],
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
            print(f"RESULT route={args.route} declared_us={per['declared']:.2f} by_hand_us={per['by hand']:.2f} "
                  f"ratio={per['declared'] / per['by hand']:.3f}")
        finally:
            for proc, _ in servers.values():
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
