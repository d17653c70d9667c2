#!/usr/bin/python3
"""bench/pubsub_broadcast.py: broadcast latency of pub/sub (issue 24, part 5). Starts apiary
(--threads 2, local backend, SSE heartbeat off), opens SUBS (10,000) SSE subscriptions to one topic
(GET /v1/topics/bench/events, spread over both loops by SO_REUSEPORT), waits until each has its
": subscribed" comment, then publishes ROUNDS messages one at a time (POST /v1/topics/bench) and
measures, for each, the time from just before the POST is sent until the last subscriber has
received it (and the median subscriber). Prints p50/p99 over the rounds.

  bench/pubsub_broadcast.py BINARY [--subs 10000] [--rounds 30] [--threads 2] [--transport sse|ws]

--transport ws subscribes with WebSocket instead (GET /v1/topics/bench/ws, pub/sub's WebSocket
adapter, callback form): set up once every 101 arrived and the subscriber gauge says SUBS; a message
is found by its bytes in the (unmasked) server frames. The server's RSS is also read after the
broadcasts (a WebSocket takes a wslay context while it has something to send).

One Python process reads all subscribers with epoll, so the figure includes the client's own time
to read 10,000 sockets (on the same 2 cores as the server): an upper bound of the server's part,
noisy on a shared machine. Bounded in time; starts everything on loopback, port 0."""

import argparse
import base64
import json
import os
import select
import socket
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
os.environ.setdefault("APIARY_SOURCE_DIR", os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from apiary_harness import ApiaryServer, build_request, read_response, rss_kib  # noqa: E402


def cpu_s(pid):
    """User + system CPU seconds of the process so far."""
    with open(f"/proc/{pid}/stat", encoding="ascii") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def pct(values, p):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary")
    ap.add_argument("--subs", type=int, default=10000)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--transport", choices=("sse", "ws"), default="sse")
    args = ap.parse_args()
    ws = args.transport == "ws"

    cfg = {"max_connections": args.subs + 1000, "sse": {"heartbeat_ms": 0},
           "limits": {"max_async_per_loop": args.subs + 1000},
           "timeouts": {"keepalive_ms": 600000, "header_ms": 600000}}
    server = ApiaryServer(cfg, threads=args.threads, binary=args.binary)
    server.start()
    try:
        rss0 = rss_kib(server.proc.pid)
        ep = select.epoll()
        socks = {}
        bufs = {}
        if ws:
            key = base64.b64encode(os.urandom(16)).decode()
            req = (f"GET /v1/topics/bench/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        else:
            req = build_request("GET", "/v1/topics/bench/events")
        confirm = b"\r\n\r\n" if ws else b"subscribed"
        t0 = time.monotonic()
        for i in range(args.subs):
            s = socket.create_connection(server.address, timeout=10)
            s.sendall(req)
            s.setblocking(False)
            socks[s.fileno()] = s
            bufs[s.fileno()] = b""
            ep.register(s.fileno(), select.EPOLLIN)
        # Wait until every subscription is in place.
        pending = set(socks)
        deadline = time.monotonic() + 120
        while pending and time.monotonic() < deadline:
            for fd, _ in ep.poll(1.0):
                try:
                    data = socks[fd].recv(65536)
                except BlockingIOError:
                    continue
                bufs[fd] += data
                if fd in pending and confirm in bufs[fd]:
                    if ws and not bufs[fd].startswith(b"HTTP/1.1 101"):
                        raise SystemExit(f"upgrade refused: {bufs[fd][:200]!r}")
                    pending.discard(fd)
                    bufs[fd] = b""
        if pending:
            raise SystemExit(f"{len(pending)} subscriptions not confirmed")
        while ws and time.monotonic() < deadline:  # on_open has run for every one of them
            with server.connect() as m:
                m.sendall(build_request("GET", "/metrics"))
                body = read_response(m).body.decode()
            if f"apiary_pubsub_subscribers {args.subs}\n" in body:
                break
            time.sleep(0.1)
        setup_s = time.monotonic() - t0
        rss1 = rss_kib(server.proc.pid)

        pub = server.connect(timeout=30)
        last, median = [], []
        cpu0 = cpu_s(server.proc.pid)
        for r in range(args.rounds):
            marker = f'"seq":{r}}}'.encode()
            body = json.dumps({"seq": r}, separators=(",", ":")).encode()
            waiting = set(socks)
            arrivals = []
            start = time.monotonic()
            pub.sendall(build_request("POST", "/v1/topics/bench", {"Content-Type": "application/json"}, body))
            resp = read_response(pub)
            assert resp.status == 202, resp
            deadline = start + 60
            while waiting and time.monotonic() < deadline:
                for fd, _ in ep.poll(1.0):
                    try:
                        data = socks[fd].recv(65536)
                    except BlockingIOError:
                        continue
                    if fd in waiting:
                        bufs[fd] += data
                        if marker in bufs[fd]:
                            waiting.discard(fd)
                            bufs[fd] = b""
                            arrivals.append(time.monotonic() - start)
            if waiting:
                raise SystemExit(f"round {r}: {len(waiting)} subscribers never got the message")
            last.append(max(arrivals) * 1000)
            median.append(statistics.median(arrivals) * 1000)
            time.sleep(0.05)
        cpu = (cpu_s(server.proc.pid) - cpu0) / args.rounds
        rss2 = rss_kib(server.proc.pid)
        print(f"transport: {args.transport}; server RSS after the broadcasts {rss2 / 1024:.1f} MiB")
        print(f"subscribers: {args.subs} on {args.threads} loops (set up in {setup_s:.1f} s; "
              f"server RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB, "
              f"{(rss1 - rss0) * 1024 / args.subs / 1024:.2f} KiB per subscriber)")
        print(f"rounds: {args.rounds}, one message each")
        print(f"time until the LAST subscriber has it: p50 {pct(last, 50):.1f} ms, p99 {pct(last, 99):.1f} ms, "
              f"max {max(last):.1f} ms")
        print(f"server CPU per broadcast (both loops, user+system): {cpu * 1000:.1f} ms "
              f"({cpu * 1e6 / args.subs:.2f} us per subscriber)")
        print(f"time until the median subscriber has it: p50 {pct(median, 50):.1f} ms, "
              f"p99 {pct(median, 99):.1f} ms")
        for s in socks.values():
            s.close()
        pub.close()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
