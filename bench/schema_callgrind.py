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

import callgrind_run

BODY = '{"name":"a honeycomb frame, deep","price":9.5}'


def measure(binary, requests, warm, keep):
    # Under valgrind SQLite is slow: the start-up migration must not time out.
    config = {"log_level": "warn", "sql": {"url": "sqlite:{tmp}/items.db", "query_timeout_ms": 600000}}
    send = callgrind_run.sender(binary, "POST", "/v1/items", BODY, (201,))
    total, profile = callgrind_run.profile(binary, config, send, requests, warm, keep)
    bzero = callgrind_run.inclusive(profile, "explicit_bzero")
    return {"total": total / requests, "no_bzero": (total - bzero) / requests,
            "validate": callgrind_run.inclusive(profile, "http_request_validate") / requests,
            "handler": callgrind_run.inclusive(profile, "items_post") / requests}


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
