#!/usr/bin/python3
"""bench/schema_callgrind.py: instructions per POST /v1/items of apiary binaries under callgrind (issue 21),
for comparing the declared schema against a hand-validated build on a machine too loaded for CPU time:
instruction counts do not move with the load.

Each binary serves --warm requests (not counted), then callgrind's counters are zeroed, --requests more
are sent one after another on one keep-alive connection, and the counters are dumped: every thread of
the server (loop, SQLite's threads) is in the total. Also given, from the profile: what explicit_bzero
costs (the SQLite job's output room is wiped when the job is freed; callgrind counts `rep stosb` once per
byte, so it weighs far more here than on a CPU), and the inclusive cost of the request's validation
(http_request_validate, JSON parse included) and of the handler (items_post). Timer work follows the
wall clock, so totals move by about 0.1 % from run to run; run each binary a few times.

  schema_callgrind.py BIN [BIN...] [--requests 2000] [--warm 200] [--keep DIR]
"""
import argparse
import http.client
import json
import os
import re
import socket
import subprocess
import tempfile
import time

BODY = '{"name":"a honeycomb frame, deep","price":9.5}'


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def inclusive(profile, name):
    m = re.search(r"^\s*([\d,]+) \([^)]*\)\s+\S*:%s \[" % re.escape(name), profile, re.M)
    return int(m.group(1).replace(",", "")) if m else 0


def measure(binary, requests, warm, keep):
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "apiary.json")
        with open(config, "w") as f:
            # Under valgrind SQLite is slow: the start-up migration must not time out.
            json.dump({"log_level": "warn", "sql": {"url": "sqlite:" + os.path.join(tmp, "items.db"),
                                                    "query_timeout_ms": 600000}}, f)
        port = free_port()
        out = os.path.join(tmp, "callgrind.out")
        err = open(os.path.join(tmp, "server.err"), "w")
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                 os.path.abspath(binary), "--config", config, "--listen", f"127.0.0.1:{port}",
                                 "--threads", "1"], stdout=subprocess.DEVNULL, stderr=err, cwd=tmp)
        try:
            for _ in range(3000):
                if proc.poll() is not None:
                    raise SystemExit(f"{binary} exited with {proc.returncode}: see its log")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                    break
                except OSError:
                    time.sleep(0.1)
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)

            def post(n):
                for _ in range(n):
                    conn.request("POST", "/v1/items", BODY, {"Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    if r.status != 201:
                        raise SystemExit(f"{binary}: status {r.status}")

            post(warm)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
            post(requests)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
            conn.close()
        finally:
            proc.terminate()
            proc.wait(120)
        dump = out + ".1"
        if keep:
            subprocess.run(["cp", dump, os.path.join(keep, os.path.basename(os.path.dirname(
                os.path.dirname(os.path.abspath(binary)))) + ".callgrind")], check=True)
        profile = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump],
                                 capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", profile).group(1).replace(",", ""))
    bzero = inclusive(profile, "explicit_bzero")
    return {"total": total / requests, "no_bzero": (total - bzero) / requests,
            "validate": inclusive(profile, "http_request_validate") / requests,
            "handler": inclusive(profile, "items_post") / requests}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warm", type=int, default=200)
    ap.add_argument("--keep", help="a directory for the profiles")
    args = ap.parse_args()
    for binary in args.binaries:
        r = measure(binary, args.requests, args.warm, args.keep)
        print(f"RESULT {binary}: Ir/req={r['total']:.0f} without_explicit_bzero={r['no_bzero']:.0f} "
              f"validate={r['validate']:.0f} items_post={r['handler']:.0f}")


if __name__ == "__main__":
    main()
