#!/usr/bin/python3
"""bench/arena_syscalls.py: system calls per request of the arena entry (or any server of bench/arena.sh)
under HttpArena's baseline mix at 512 connections, counted by `strace -c -f`, so the figure holds on a
loaded machine where CPU time does not (strace slows the server, not what it calls; how many requests
share a loop wake-up still moves with the load, so epoll_wait per request is the one soft figure).

Starts ARENA_BIN --threads 1 (or attaches to --pid), runs wrk -t1 -c CONNS for DURATION with
bench/arena_mix.lua's baseline mix (CLOSE_EVERY > 0: every Nth request asks Connection: close, the
limited-conn suite's 10), with strace -c -f attached to the server for exactly that run, and prints
the calls per request (wrk's request count) of every system call above 0.001 per request.

  arena_syscalls.py ARENA_BIN [--conns 512] [--duration 5] [--close-every 0] [--label L]
  arena_syscalls.py --pid PID --port PORT ...   (a server started elsewhere: fasthttp, nginx, h2o)
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import tempfile
import time

from loopback import free_port, wait_listening

HERE = os.path.dirname(os.path.abspath(__file__))


def wrk(port, conns, duration, close_every):
    out = subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{duration}s", "-s", os.path.join(HERE, "arena_mix.lua"),
                          f"http://127.0.0.1:{port}/", "--", "baseline", str(close_every)],
                         capture_output=True, text=True, check=True).stdout
    n = int(re.search(r"(\d+) requests in", out).group(1))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    return n, errors.group(0) if errors else ""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--port", type=int)
    ap.add_argument("--conns", type=int, default=512)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--close-every", type=int, default=0)
    ap.add_argument("--label", default="")
    args = ap.parse_args()
    proc = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.pid:
            pid, port = args.pid, args.port
        else:
            port = free_port()
            subprocess.run([sys.executable, os.path.join(HERE, "..", "examples", "arena", "make_data.py"),
                            os.path.join(tmp, "data"), "--rows", "10"], check=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
            env = dict(os.environ, ARENA_DATA_DIR=os.path.join(tmp, "data"))
            env.pop("DATABASE_URL", None)
            proc = subprocess.Popen([os.path.abspath(args.binary), "--listen", f"127.0.0.1:{port}", "--threads", "1"],
                                    env=env, cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            pid = proc.pid
        try:
            wait_listening(port, 30, proc)
            wrk(port, args.conns, 1, args.close_every)  # warm up: connections made, caches filled
            out = os.path.join(tmp, "strace")
            st = subprocess.Popen(["strace", "-c", "-f", "-o", out, "-p", str(pid)], stderr=subprocess.DEVNULL)
            time.sleep(1)
            n, errors = wrk(port, args.conns, args.duration, args.close_every)
            st.send_signal(signal.SIGINT)
            st.wait(timeout=60)
            calls = {}
            for line in open(out):
                m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
                if m and m.group(2) != "total":
                    calls[m.group(2)] = int(m.group(1))
            total = sum(calls.values())
            top = ", ".join(f"{k} {v / n:.3f}" for k, v in sorted(calls.items(), key=lambda kv: -kv[1])
                            if v / n >= 0.001)
            print(f"RESULT {args.label or args.binary} conns={args.conns} close_every={args.close_every} "
                  f"requests={n} syscalls_per_request={total / n:.3f} {errors}\n  {top}")
        finally:
            if proc:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    main()
