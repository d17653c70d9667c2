#!/usr/bin/python3
"""bench/arena_callgrind.py: instructions per request of the arena entry's GET /json/{count}?m= (issue 25),
counted by valgrind's callgrind, so the figure repeats on a loaded machine where CPU time does not.

Starts the arena binary (--threads 1, ARENA_DATA_DIR from make_data.py) under callgrind with
instrumentation off, warms it up, then turns instrumentation on, sends --rounds rounds of the arena's
seven (count, m) pairs (bench/arena_mix.lua: (1,3) (5,7) (10,2) (15,5) (25,4) (40,8) (50,6)) one after
another on one keep-alive connection, turns it off and dumps: the dump's instruction total / requests
is the cost per request (engine and handler, every thread of the process). --profile-dir keeps the dump
for callgrind_annotate.

  arena_callgrind.py ARENA_BIN [--rounds 300] [--profile-dir DIR] [--path /json/50?m=6]
"""
import argparse
import glob
import http.client
import os
import re
import subprocess
import sys
import tempfile

from loopback import free_port, wait_listening

PAIRS = [(1, 3), (5, 7), (10, 2), (15, 5), (25, 4), (40, 8), (50, 6)]
HERE = os.path.dirname(os.path.abspath(__file__))


def drive(port, paths, rounds):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    for _ in range(rounds):
        for path in paths:
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
    ap.add_argument("--rounds", type=int, default=300)
    ap.add_argument("--profile-dir")
    ap.add_argument("--path", help="one path instead of the seven pairs")
    args = ap.parse_args()
    paths = [args.path] if args.path else [f"/json/{c}?m={m}" for c, m in PAIRS]
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, os.path.join(HERE, "..", "examples", "arena", "make_data.py"),
                        os.path.join(tmp, "data"), "--rows", "10"], check=True, stdout=subprocess.DEVNULL)
        out = os.path.join(args.profile_dir or tmp, "callgrind.out")
        port = free_port()
        env = dict(os.environ, ARENA_DATA_DIR=os.path.join(tmp, "data"))
        env.pop("DATABASE_URL", None)
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no",
                                 f"--callgrind-out-file={out}", args.binary, "--listen", f"127.0.0.1:{port}",
                                 "--threads", "1"], env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(tmp, "log"), "w"))
        try:
            wait_listening(port, 60, proc)
            drive(port, paths, 20)  # warm up
            before = set(glob.glob(out + "*"))
            control(proc.pid, "-i", "on")
            drive(port, paths, args.rounds)
            control(proc.pid, "-i", "off")
            control(proc.pid, "-d", "json")
            dump = (set(glob.glob(out + "*")) - before).pop()
            with open(dump) as f:
                total = int(re.search(r"^totals: (\d+)", f.read(), re.M).group(1))
            n = args.rounds * len(paths)
            print(f"RESULT paths={'seven-pairs' if not args.path else args.path} requests={n} "
                  f"instructions_per_request={total / n:.0f} ({dump})")
        finally:
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
