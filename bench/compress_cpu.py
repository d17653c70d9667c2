#!/usr/bin/python3
"""bench/compress_cpu.py: server CPU per request of a gzip-coded JSON answer, apiary against nginx, in
one run (issue 25; bench/compress.sh runs it). The body is bench/data/jsoncomp.json (a json-comp-like
answer, bench/make_jsoncomp.py). apiary stores it in its key-value store (PUT /v1/kv/doc) and answers
GET /v1/kv/doc, coding it per request; nginx serves the same bytes as a file with `gzip on` at the same
level (no gzip_static: it compresses per request too). Both run one thread / one process pinned to
CPU 0, wrk runs pinned to CPU 1, the servers take turns in every round, and a server's CPU time comes
from /proc/PID/stat around its turn (utime + stime, every thread).

  compress_cpu.py APIARY_BIN [--rounds 3] [--seconds 5] [--connections 32] [--level 1] [--identity]
"""
import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import tempfile
import urllib.request

from loopback import free_port, wait_listening

HZ = os.sysconf("SC_CLK_TCK")
HERE = os.path.dirname(os.path.abspath(__file__))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ


def start_apiary(binary, workdir, level, body):
    port = free_port()
    config = os.path.join(workdir, "apiary.json")
    with open(config, "w") as f:
        json.dump({"log_level": "warn", "compression": {"gzip_level": level},
                   "kv": {"max_value_bytes": 1 << 20}}, f)
    proc = subprocess.Popen(["taskset", "-c", "0", os.path.abspath(binary), "--config", config, "--listen",
                             f"127.0.0.1:{port}", "--threads", "1"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, cwd=workdir)
    wait_listening(port, 30, proc)
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/kv/doc", data=body, method="PUT",
                                 headers={"Content-Type": "application/json"})
    urllib.request.urlopen(req).read()
    return proc, port, "/v1/kv/doc"


def start_nginx(workdir, level, body):
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    port = free_port()
    root = os.path.join(workdir, "www")
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "doc.json"), "wb") as f:
        f.write(body)
    conf = os.path.join(workdir, "nginx.conf")
    with open(conf, "w") as f:
        f.write(f"""
daemon off; master_process off; worker_processes 1; error_log stderr error; pid {workdir}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log off; default_type application/json; types {{ application/json json; }}
  gzip on; gzip_comp_level {level}; gzip_min_length 1024; gzip_types application/json; gzip_vary on;
  keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{port}; root {root}; }}
}}
""")
    proc = subprocess.Popen(["taskset", "-c", "0", nginx, "-p", workdir, "-c", conf], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    wait_listening(port, 30, proc)
    return proc, port, "/doc.json"


def check(port, path, coded):
    headers = {"Accept-Encoding": "gzip"} if coded else {}
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers=headers)) as r:
        enc = r.headers.get("Content-Encoding")
        if (enc == "gzip") != coded:
            raise SystemExit(f"port {port}: Content-Encoding {enc!r}")


def run_wrk(port, path, seconds, conns, coded):
    cmd = ["taskset", "-c", "1", "wrk", "-t1", f"-c{conns}", f"-d{seconds}s"]
    if coded:
        cmd += ["-H", "Accept-Encoding: gzip"]
    out = subprocess.run(cmd + [f"http://127.0.0.1:{port}{path}"], capture_output=True, text=True, check=True).stdout
    m = re.search(r"(\d+) requests in", out)
    return int(m.group(1)), out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("apiary")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--level", type=int, default=1)
    ap.add_argument("--identity", action="store_true", help="no Accept-Encoding (the cost without coding)")
    ap.add_argument("--body", default=os.path.join(HERE, "data", "jsoncomp.json"))
    args = ap.parse_args()
    with open(args.body, "rb") as f:
        body = f.read()
    coded = not args.identity
    work = tempfile.mkdtemp(prefix="compress_bench_")
    servers = {}
    try:
        servers["apiary"] = start_apiary(args.apiary, work, args.level, body)
        servers["nginx"] = start_nginx(work, args.level, body)
        for name, (proc, port, path) in servers.items():
            check(port, path, coded)
            run_wrk(port, path, 1, args.connections, coded)  # warm-up
        results = {name: [] for name in servers}
        order = list(servers)
        for r in range(args.rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                proc, port, path = servers[name]
                before = cpu_seconds(proc.pid)
                n, _ = run_wrk(port, path, args.seconds, args.connections, coded)
                used = cpu_seconds(proc.pid) - before
                results[name].append((used / n * 1e6, n / args.seconds))
        print(f"body {len(body)} bytes, {'gzip level %d' % args.level if coded else 'identity'}, "
              f"{args.rounds} rounds of {args.seconds} s, wrk -c{args.connections} (medians; noisy shared machine)")
        print(f"{'server':8} {'us CPU/req':>11} {'req/s':>9}")
        med = {}
        for name, rows in results.items():
            med[name] = statistics.median(x[0] for x in rows)
            print(f"{name:8} {med[name]:11.1f} {statistics.median(x[1] for x in rows):9.0f}")
        print(f"apiary / nginx CPU per request: {med['apiary'] / med['nginx']:.2f}")
    finally:
        for proc, _, _ in servers.values():
            proc.terminate()
            proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
