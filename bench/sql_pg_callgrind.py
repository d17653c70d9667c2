#!/usr/bin/python3
"""bench/sql_pg_callgrind.py: instructions (and malloc calls) per request of apiary's SQL routes on a
database under callgrind (issue 23), for a machine too loaded for CPU time: instruction counts do not
move with the load. The database is not started here: give its URL (bench/sql_syscalls.sh's way,
`../shared/peers/db/db-peers.sh pg-start PORT DIR`, or any with the `world` table).

Each binary serves --warm requests (not counted), then callgrind's counters are zeroed, --requests more
are sent over --conns keep-alive connections at once (several requests in flight, as under wrk, so the
loop's batching is what a loaded server sees), and the counters are dumped: every thread of the server
is in the total. Also given, from the profile, the inclusive cost of a few parts (libpq's result
reading, the task layer, the HTTP side) and the number of malloc calls per request.

  sql_pg_callgrind.py BIN [BIN...] --url postgres://apiary:secret@127.0.0.1:PORT/apiary
                   [--path /v1/db] [--requests 2000] [--warm 200] [--conns 16] [--keep DIR]
"""
import argparse
import os
import re
import shutil
import tempfile

import callgrind_run
import loopback

WATCH = ["sql_pg_drain", "sql_pg_send", "sql_pg_on_read", "PQgetResult", "PQconsumeInput", "PQsetSingleRowMode",
         "PQpipelineSync", "PQsendQueryPrepared", "PQclear", "sql_task_new", "sql_task_finish", "sql__rows_copy",
         "world_db_get", "world_updates_get", "world_queries_get", "http_conn_on_read", "json_write", "epoll_wait",
         "event_base_loop", "malloc", "free", "sendto", "recvfrom", "recv", "send"]

# Counted by calls: allocations, and the system calls of the loop (through their libc wrappers).
COUNT = ["malloc", "calloc", "realloc", "free", "PQgetResult", "PQclear", "epoll_wait", "sendto", "send", "recv",
         "recvfrom", "setsockopt", "timerfd_settime", "epoll_ctl", "writev", "readv", "read", "write"]


def concurrent_sender(path, conns):
    """A send(conn, n) for callgrind_run.profile(): n GETs of `path` over `conns` connections at once."""
    return lambda conn, n: loopback.get_many(conn.host, conn.port, path, n, conns)


def call_counts(dump, names):
    """How many calls to each of `names` a raw callgrind dump records (its calls= lines after cfn=)."""
    ids, counts, target = {}, dict.fromkeys(names, 0), None
    with open(dump) as f:
        for line in f:
            if line.startswith("cfn="):
                m = re.match(r"cfn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
                if m.group(2) is not None:
                    ids[m.group(1)] = m.group(2)
                target = ids.get(m.group(1))
            elif line.startswith("fn="):
                m = re.match(r"fn=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
                if m and m.group(2) is not None:
                    ids[m.group(1)] = m.group(2)
            elif line.startswith("calls=") and target in counts:
                counts[target] += int(line.split()[0][6:])
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--url", required=True)
    ap.add_argument("--path", default="/v1/db")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--warm", type=int, default=200)
    ap.add_argument("--conns", type=int, default=16)
    ap.add_argument("--sql-conns", type=int, default=4, help="sql.connections_per_loop (bench/sql.sh's 4)")
    ap.add_argument("--keep", help="a directory for the profiles")
    args = ap.parse_args()
    for binary in args.binaries:
        config = {"log_level": "warn", "timeouts": {"keepalive_ms": 600000, "header_ms": 600000},
                  "sql": {"url": args.url, "connections_per_loop": args.sql_conns, "query_timeout_ms": 60000}}
        send = concurrent_sender(args.path, args.conns)
        with tempfile.TemporaryDirectory() as keep:
            total, profile = callgrind_run.profile(binary, config, send, args.requests, args.warm, keep)
            dump = os.path.join(keep, os.listdir(keep)[0])
            counted = call_counts(dump, COUNT)
            if args.keep:
                shutil.copy(dump, args.keep)
        parts = {name: callgrind_run.inclusive(profile, name) / args.requests for name in WATCH}
        print(f"RESULT {binary} {args.path}: Ir/req={total / args.requests:.0f} "
              + " ".join(f"{k}={v:.0f}" for k, v in parts.items() if v)
              + " calls/req: " + " ".join(f"{k}={v / args.requests:.2f}" for k, v in counted.items()))


if __name__ == "__main__":
    main()
