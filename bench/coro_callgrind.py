#!/usr/bin/python3
"""bench/coro_callgrind.py: instructions per request of the same route in both styles (issue 20), counted
by valgrind's callgrind, so the figure repeats on a loaded machine where CPU time does not (coro_cpu.py).

Starts one apiary (--threads 1) under callgrind with instrumentation off, warms each route up, then for each
style turns instrumentation on, sends --requests requests one after another on one keep-alive connection,
turns it off and dumps: the dump's instruction total / requests is that style's cost per request
(engine, toolkit and the style's own overhead; every thread of the process counts). --profile-dir keeps
the dumps for callgrind_annotate.

--same-length pads the shorter target (leading zeros on its last number, else an ignored query
parameter), so both requests have as many bytes and parameters to parse and route
("/v1/example/pair_await" is 6 bytes longer than "/v1/example/pair": about 300 instructions of llhttp,
uri_split, uri_decode and router_match that are not the style's).

  coro_callgrind.py APIARY_BIN [--route pair|db] [--requests 2000] [--same-length] [--profile-dir DIR]
"""
import argparse
import glob
import http.client
import os
import re
import subprocess
import tempfile

import cpu_rounds
from coro_cpu import ROUTES


def drive(port, path, n):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    for _ in range(n):
        conn.request("GET", path)
        r = conn.getresponse()
        r.read()
        if r.status != 200:
            raise SystemExit(f"{path}: {r.status}")
    conn.close()


def control(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--route", choices=list(ROUTES), default="pair")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--profile-dir")
    ap.add_argument("--same-length", action="store_true")
    ap.add_argument("--branch-sim", action="store_true",
                    help="also count mispredicted branches (callgrind --branch-sim=yes): a switch's return "
                         "to another stack is one, and instruction counts do not show it")
    args = ap.parse_args()
    targets = dict(ROUTES[args.route])
    if args.same_length:
        longest = max(len(t) for t in targets.values())
        for name, t in targets.items():
            pad = longest - len(t)
            last = re.search(r"=(\d+)$", t)
            if pad and last:  # leading zeros on the last number: as many parameters, the same value
                targets[name] = t[:last.start(1)] + "0" * pad + t[last.start(1):]
            elif pad:  # an ignored parameter: the handlers read only their own
                targets[name] = t + ("&" if "?" in t else "?") + "p=" + "0" * max(0, pad - 3)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(args.profile_dir or tmp, "callgrind.out")
        prefix = ("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                  *(["--branch-sim=yes"] if args.branch_sim else []))
        proc, port = cpu_rounds.start(args.binary, tmp, {"log_level": "warn"}, prefix=prefix)
        per = {}
        try:
            for path in targets.values():
                drive(port, path, 200)  # warm up: pools, stacks, caches
            for name, path in targets.items():
                before = set(glob.glob(out + "*"))
                control(proc.pid, "-i", "on")
                drive(port, path, args.requests)
                control(proc.pid, "-i", "off")
                control(proc.pid, "-d", name)
                dump = (set(glob.glob(out + "*")) - before).pop()
                with open(dump) as f:
                    totals = [int(x) for x in re.search(r"^totals: ([\d ]+)$", f.read(), re.M).group(1).split()]
                per[name] = totals[0] / args.requests
                missed = ""
                if args.branch_sim:  # events: Ir Bc Bcm Bi Bim
                    missed = f", {(totals[2] + totals[4]) / args.requests:.0f} mispredicted branches per request"
                print(f"{name:9s}: {per[name]:9.0f} instructions per request{missed} ({dump})")
        finally:
            cpu_rounds.stop(proc)
    print(f"RESULT route={args.route} callback_ir={per['callback']:.0f} coroutine_ir={per['coroutine']:.0f} "
          f"ratio={per['coroutine'] / per['callback']:.3f}")


if __name__ == "__main__":
    main()
