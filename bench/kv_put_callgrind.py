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
import os

import callgrind_run

HERE = os.path.dirname(os.path.abspath(__file__))
WATCH = ["http_request_validate", "kv_put", "json_write", "json_loadb", "json_valid", "json_limits_check",
         "memcpy", "malloc", "free", "explicit_bzero", "kv_put_done"]


def measure(binary, body, requests, warm, keep):
    config = {"log_level": "warn", "timeouts": {"keepalive_ms": 600000, "header_ms": 600000}}
    send = callgrind_run.sender(binary, "PUT", "/v1/kv/doc-l", body, (200, 201))
    total, profile = callgrind_run.profile(binary, config, send, requests, warm, keep)
    return total / requests, {name: callgrind_run.inclusive(profile, name) / requests for name in WATCH}


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
