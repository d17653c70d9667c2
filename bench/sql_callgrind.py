#!/usr/bin/python3
"""bench/sql_callgrind.py: instructions per request of apiary's MariaDB routes (/v1/db,
/v1/queries?queries=20, /v1/updates?queries=20) under callgrind, and what the database did for them
(its own counters: commands, round trips, bytes each way), on a machine too loaded for CPU time:
instruction counts and the server's counters do not move with the load.

Each binary runs under callgrind (--threads 1) against one MariaDB (a private one started with
../shared/peers/db/db-peers.sh, or --mysql-port of a running one, database `apiary`). Per route it
serves --warm requests, then callgrind's counters are zeroed and MariaDB's SHOW GLOBAL STATUS is read,
--requests more are sent over --conns keep-alive connections at once, and both are read again. Also
given, from the profile, the inclusive cost of a few functions worth watching. With --peer PORT the
same requests also go to a server already running there (go_mysql, say), for the database's counters
only (its own CPU is not under callgrind).

  sql_callgrind.py BIN [BIN...] [--routes db,queries,updates] [--requests 300] [--warm 60] [--conns 4]
                   [--connections-per-loop 16] [--mysql-port PORT] [--peer PORT] [--keep DIR]
"""
import argparse
import os
import subprocess
import sys
import tempfile

import callgrind_run
import loopback

HERE = os.path.dirname(os.path.abspath(__file__))
PEERS = os.environ.get("PEERS", os.path.join(HERE, "..", "..", "shared", "peers", "db", "db-peers.sh"))
ROUTES = {"db": "/v1/db", "queries": "/v1/queries?queries=20", "updates": "/v1/updates?queries=20"}
WATCH = ["sql_my_resume", "sql_my_on_read", "sql_my_run", "sql_my_dispatch", "sql_my_pipe_read", "sql_my_answer_feed", "sql_my_add_row", "sql_task_new", "sql_task_finish",
         "mysql_stmt_execute_start", "mysql_stmt_execute_cont", "mysql_stmt_fetch_start", "mysql_stmt_fetch_cont",
         "mysql_stmt_free_result_start", "mysql_stmt_bind_param", "mthd_stmt_read_execute_response",
         "ma_stmt_execute_generate_request", "ma_net_safe_read", "epoll_wait", "malloc", "free", "memcpy"]
STATUS = ["Com_stmt_execute", "Com_stmt_prepare", "Com_stmt_reset", "Com_stmt_close", "Com_stmt_send_long_data",
          "Com_select", "Com_update", "Com_begin", "Com_commit", "Questions", "Bytes_received", "Bytes_sent",
          "Handler_commit", "Handler_read_key"]


def db_status(port):
    out = subprocess.run(["mariadb", "--no-defaults", "-h127.0.0.1", f"-P{port}", "-uroot", "-N", "-B", "-e",
                          "SHOW GLOBAL STATUS WHERE Variable_name IN (%s)" % ",".join(f"'{s}'" for s in STATUS)],
                         capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in (line.split("\t") for line in out.splitlines())}


def status_diff(before, after, probe, requests):
    """Per request, the reading's own statement (probe: one status read) taken out."""
    return {k: (after[k] - before[k] - probe.get(k, 0)) / requests for k in STATUS}


def send_many(port, path, n, conns):
    loopback.get_many("127.0.0.1", port, path, n, conns)


def measure(binary, route, args, port):
    path = ROUTES[route]
    config = {"log_level": "warn", "timeouts": {"keepalive_ms": 600000, "header_ms": 600000},
              "sql": {"url": f"mysql://apiary:secret@127.0.0.1:{port}/apiary",
                      "connections_per_loop": args.connections_per_loop, "query_timeout_ms": 60000}}
    status = {}
    probe = {}
    calls = []

    def send(conn, n):
        hport = conn.port
        calls.append(n)
        if len(calls) == 1:  # the warm-up
            send_many(hport, path, n, args.conns)
            a = db_status(port)
            b = db_status(port)
            probe.update({k: b[k] - a[k] for k in STATUS})
            return
        status["before"] = db_status(port)
        send_many(hport, path, n, args.conns)
        status["after"] = db_status(port)

    total, profile = callgrind_run.profile(binary, config, send, args.requests, args.warm, args.keep)
    parts = {name: callgrind_run.inclusive(profile, name) / args.requests for name in WATCH}
    return total / args.requests, parts, status_diff(status["before"], status["after"], probe, args.requests)


def measure_peer(peer_port, route, args, port):
    path = ROUTES[route]
    send_many(peer_port, path, args.warm, args.conns)
    a = db_status(port)
    b = db_status(port)
    probe = {k: b[k] - a[k] for k in STATUS}
    before = db_status(port)
    send_many(peer_port, path, args.requests, args.conns)
    after = db_status(port)
    return status_diff(before, after, probe, args.requests)


def show_status(s, per):
    keys = [k for k in STATUS if s[k]]
    return " ".join(f"{k}={s[k] / per:.2f}" for k in keys)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="*")
    ap.add_argument("--routes", default="db,queries,updates")
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--warm", type=int, default=60)
    ap.add_argument("--conns", type=int, default=4)
    ap.add_argument("--connections-per-loop", type=int, default=16)
    ap.add_argument("--mysql-port", type=int)
    ap.add_argument("--peer", type=int, help="port of a peer server on the same database (its DB counters)")
    ap.add_argument("--keep", help="a directory for the profiles")
    args = ap.parse_args()
    tmp = None
    pid = None
    port = args.mysql_port
    if not port:
        tmp = tempfile.TemporaryDirectory()
        port = loopback.free_port()
        pid = subprocess.run([PEERS, "mariadb-start", str(port), os.path.join(tmp.name, "mariadb")],
                             capture_output=True, text=True, check=True).stdout.strip()
    try:
        for route in args.routes.split(","):
            stmts = 1 if route == "db" else 20
            for binary in args.binaries:
                total, parts, st = measure(binary, route, args, port)
                print(f"RESULT {binary} {ROUTES[route]}: Ir/req={total:.0f} Ir/stmt={total / stmts:.0f} "
                      + " ".join(f"{k}={v:.0f}" for k, v in parts.items() if v), flush=True)
                print(f"DB {binary} {ROUTES[route]} per request: {show_status(st, 1)}", flush=True)
            if args.peer:
                st = measure_peer(args.peer, route, args, port)
                print(f"DB peer:{args.peer} {ROUTES[route]} per request: {show_status(st, 1)}", flush=True)
    finally:
        if pid:
            subprocess.run([PEERS, "stop", pid], capture_output=True)
            tmp.cleanup()


if __name__ == "__main__":
    sys.exit(main())
