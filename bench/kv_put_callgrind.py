#!/usr/bin/python3
"""bench/kv_put_callgrind.py: instructions per PUT /v1/kv/{key} of a document (default the 16 KiB
bench/data/doc16k.json) for apiary binaries under callgrind, on a machine too loaded for CPU time:
instruction counts do not move with the load.

Each binary serves --warm PUTs (not counted; the first stores the key, the rest replace it), then
callgrind's counters are zeroed, --requests more are sent one after another on one keep-alive
connection, and the counters are dumped: every thread of the server is in the total. Also given, from
the profile, the inclusive cost of the request's validation (http_request_validate: the body's parse
included), of the handler (kv_put) and of a few functions worth watching.

  kv_put_callgrind.py BIN [BIN...] [--doc FILE] [--requests 500] [--warm 50] [--keep DIR]
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

HERE = os.path.dirname(os.path.abspath(__file__))
WATCH = ["http_request_validate", "kv_put", "json_write", "json_loadb", "json_valid", "json_limits_check",
         "memcpy", "malloc", "free", "explicit_bzero", "kv_put_done"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def inclusive(profile, name):
    total = 0
    for m in re.finditer(r"^\s*([\d,]+) \([^)]*\)\s+\S*:(\S+) \[", profile, re.M):
        fn = m.group(2)
        if fn == name or fn.startswith(name + "'") or re.fullmatch(r"__%s_\w+" % re.escape(name), fn):
            total += int(m.group(1).replace(",", ""))
    return total


def measure(binary, body, requests, warm, keep):
    with tempfile.TemporaryDirectory() as tmp:
        config = os.path.join(tmp, "apiary.json")
        with open(config, "w") as f:
            json.dump({"log_level": "warn", "timeouts": {"keepalive_ms": 600000, "header_ms": 600000}}, f)
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

            def put(n):
                for _ in range(n):
                    conn.request("PUT", "/v1/kv/doc-l", body, {"Content-Type": "application/json"})
                    r = conn.getresponse()
                    r.read()
                    if r.status not in (200, 201):
                        raise SystemExit(f"{binary}: status {r.status}")

            put(warm)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
            put(requests)
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
    return total / requests, {name: inclusive(profile, name) / requests for name in WATCH}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--doc", default=os.path.join(HERE, "data", "doc16k.json"))
    ap.add_argument("--requests", type=int, default=500)
    ap.add_argument("--warm", type=int, default=50)
    ap.add_argument("--keep", help="a directory for the profiles")
    args = ap.parse_args()
    body = open(args.doc, "rb").read()
    for binary in args.binaries:
        total, parts = measure(binary, body, args.requests, args.warm, args.keep)
        print(f"RESULT {binary}: {len(body)} B body, Ir/req={total:.0f} "
              + " ".join(f"{k}={v:.0f}" for k, v in parts.items() if v))


if __name__ == "__main__":
    main()
