#!/usr/bin/python3
"""bench/pool_client.py: a small HTTP/1.1 load client for the worker-pool benchmarks (pool_isolation.sh,
pool_hash.sh). wrk cannot do two things these need: back off after a 503 (a closed-loop wrk would
spin on 503s as fast as the loop answers them, and the run would measure a 503 storm), and send at a
fixed rate whatever the server does (open loop), timing each answer from when it was due.

  pool_client.py closed URL --conns C --duration S [--warmup S] [--backoff-ms MS] [...]
      C keep-alive connections, each sending its next request as soon as the previous one is
      answered, or BACKOFF_MS after a 503. Only answers that arrive in the measured window
      (after the warm-up) are counted; latency is from send to the end of the body.
  pool_client.py open URL --rate R --duration S [...]
      Sends R requests per second on the schedule t0 + i/R for S seconds, each on an idle
      keep-alive connection or a new one (never waiting for one to free up), then waits for the
      stragglers. Latency is from writing the request; how late each write was against its
      schedule is reported apart (send_late_p99_s, send_late_max_s).

Both print one JSON object: counts by status, errors by kind, and latency percentiles per status.
Stdlib only (runs on Debian's /usr/bin/python3); a few hundred requests/s is all it is meant for.
"""
import argparse
import asyncio
import json
import resource
import time
import urllib.parse


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def percentile(sorted_values, q):
    """Nearest-rank percentile of an ascending list (q in 0..100); None when empty."""
    if not sorted_values:
        return None
    k = max(0, min(len(sorted_values) - 1, int(-(-q * len(sorted_values) // 100)) - 1))
    return sorted_values[k]


class Stats:
    def __init__(self):
        self.latencies = {}      # status code (str) -> [seconds]
        self.errors = {"connect": 0, "timeout": 0, "closed": 0, "other": 0}
        self.retry_after = 0     # 503 answers that carried Retry-After
        self.first_bodies = {}   # status -> first body seen, to show what the server said

    def ok(self, status, latency, headers, body):
        self.latencies.setdefault(str(status), []).append(latency)
        if status == 503 and "retry-after" in headers:
            self.retry_after += 1
        self.first_bodies.setdefault(str(status), body[:200].decode("utf-8", "replace"))

    def error(self, kind):
        self.errors[kind] += 1

    def summary(self, window_s, extra):
        out = dict(extra)
        out["window_s"] = window_s
        out["counts"] = {k: len(v) for k, v in sorted(self.latencies.items())}
        out["responses"] = sum(out["counts"].values())
        out["errors"] = self.errors
        out["errors_total"] = sum(self.errors.values())
        out["retry_after_on_503"] = self.retry_after
        out["rates"] = {k: v / window_s for k, v in out["counts"].items()}
        out["latency_s"] = {}
        for k, v in sorted(self.latencies.items()):
            v.sort()
            out["latency_s"][k] = {
                "n": len(v), "min": v[0], "p50": percentile(v, 50), "p90": percentile(v, 90),
                "p99": percentile(v, 99), "p99.9": percentile(v, 99.9), "max": v[-1],
                "mean": sum(v) / len(v),
            }
        out["first_bodies"] = self.first_bodies
        return out


class Conn:
    """One keep-alive connection; request() sends one request and reads the whole answer."""

    def __init__(self, host, port, raw_request):
        self.host, self.port, self.raw = host, port, raw_request
        self.reader = self.writer = None

    async def open(self):
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)

    def close(self):
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    async def request(self):
        """Returns (status, headers dict with lower-case names, body, keep_alive)."""
        self.writer.write(self.raw)
        await self.writer.drain()
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunk = await self.reader.readexactly(size + 2)
                if size == 0:
                    # trailers, if any, end with an empty line
                    while chunk != b"\r\n":
                        chunk = await self.reader.readuntil(b"\r\n")
                    break
                body += chunk[:-2]
        else:
            body = await self.reader.readexactly(int(headers.get("content-length", "0")))
        keep_alive = headers.get("connection", "").lower() != "close" and lines[0].startswith("HTTP/1.1")
        return status, headers, body, keep_alive


def build_request(url, method, body, content_type):
    u = urllib.parse.urlsplit(url)
    if u.scheme != "http" or not u.hostname:
        raise SystemExit(f"only http://HOST:PORT/PATH URLs: {url!r}")
    target = (u.path or "/") + (f"?{u.query}" if u.query else "")
    payload = body.encode() if body is not None else b""
    head = [f"{method} {target} HTTP/1.1", f"Host: {u.hostname}:{u.port or 80}"]
    if payload or method in ("POST", "PUT"):
        head += [f"Content-Type: {content_type}", f"Content-Length: {len(payload)}"]
    raw = ("\r\n".join(head) + "\r\n\r\n").encode() + payload
    return u.hostname, u.port or 80, raw


async def one(conn, stats, timeout, t_from, count):
    """Runs one request on conn; records it when count(t_done) is true. Latency is from t_from, or
    from the moment the request is written when t_from is None. Returns (status, keep)."""
    if t_from is None:
        t_from = time.monotonic()
    try:
        status, headers, body, keep = await asyncio.wait_for(conn.request(), timeout)
    except asyncio.TimeoutError:
        if count(time.monotonic()):
            stats.error("timeout")
        return None, False
    except (asyncio.IncompleteReadError, ConnectionError):
        if count(time.monotonic()):
            stats.error("closed")
        return None, False
    t_done = time.monotonic()
    if count(t_done):
        stats.ok(status, t_done - t_from, headers, body)
    return status, keep


async def run_closed(args, host, port, raw):
    stats = Stats()
    t0 = time.monotonic()
    w0, w1 = t0 + args.warmup, t0 + args.warmup + args.duration
    in_window = lambda t: w0 <= t < w1  # noqa: E731

    async def worker():
        conn = None
        while time.monotonic() < w1:
            if conn is None:
                conn = Conn(host, port, raw)
                try:
                    await asyncio.wait_for(conn.open(), args.timeout)
                except (OSError, asyncio.TimeoutError):
                    conn = None
                    if in_window(time.monotonic()):
                        stats.error("connect")
                    await asyncio.sleep(0.01)   # do not spin on a refused connect
                    continue
            status, keep = await one(conn, stats, args.timeout, time.monotonic(), in_window)
            if not keep:
                conn.close()
                conn = None
            if status == 503 and args.backoff_ms > 0:
                await asyncio.sleep(args.backoff_ms / 1000)
        if conn is not None:
            conn.close()

    tasks = [asyncio.create_task(worker()) for _ in range(args.conns)]
    # Requests still waiting at the end of the window are not counted; do not wait for them.
    await asyncio.sleep(max(0.0, w1 - time.monotonic()))
    await asyncio.wait(tasks, timeout=0.2)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return stats.summary(args.duration, {"mode": "closed", "conns": args.conns,
                                         "backoff_ms": args.backoff_ms, "warmup_s": args.warmup})


async def run_open(args, host, port, raw):
    stats = Stats()
    idle = []            # idle keep-alive connections, reused LIFO
    opened = [0]
    sent = [0]
    late = []            # how late each send was against its schedule (client health check)
    always = lambda t: True  # noqa: E731: every request scheduled in the window counts

    async def fire(due):
        late.append(time.monotonic() - due)
        conn = idle.pop() if idle else None
        if conn is None:
            conn = Conn(host, port, raw)
            try:
                await asyncio.wait_for(conn.open(), args.timeout)
                opened[0] += 1
            except (OSError, asyncio.TimeoutError):
                stats.error("connect")
                return
        sent[0] += 1
        # Timed from the write, not from `due`: asyncio wakes timers up to ~1 ms late (epoll's
        # millisecond timeout), which would add a floor of about 1 ms to every sample. How late the
        # sends were is reported separately (send_late_*), so a client that fell behind shows.
        status, keep = await one(conn, stats, args.timeout, None, always)
        if keep and status is not None:
            idle.append(conn)
        else:
            conn.close()

    t0 = time.monotonic() + 0.05
    n = int(round(args.rate * args.duration))
    tasks = []
    for i in range(n):
        due = t0 + i / args.rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(fire(due)))
    t_end = time.monotonic()
    # Stragglers: every scheduled request gets its answer or its timeout.
    await asyncio.gather(*tasks, return_exceptions=True)
    for c in idle:
        c.close()
    late.sort()
    return stats.summary(args.duration, {
        "mode": "open", "rate": args.rate, "scheduled": n, "sent": sent[0],
        "connections_opened": opened[0], "send_phase_s": t_end - t0,
        "drain_s": time.monotonic() - t_end,
        "send_late_p99_s": percentile(late, 99), "send_late_max_s": late[-1] if late else None,
    })


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="mode", required=True)
    for name in ("closed", "open"):
        p = sub.add_parser(name)
        p.add_argument("url")
        p.add_argument("--duration", type=float, required=True, help="measured seconds")
        p.add_argument("--method", default="GET")
        p.add_argument("--body", help="request body (sent with Content-Length)")
        p.add_argument("--content-type", default="application/json")
        p.add_argument("--timeout", type=float, default=30.0, help="per request, seconds")
        p.add_argument("--json", help="also write the result here")
        if name == "closed":
            p.add_argument("--conns", type=int, required=True)
            p.add_argument("--warmup", type=float, default=0.0, help="seconds not counted, before the window")
            p.add_argument("--backoff-ms", type=float, default=0.0, help="a connection's pause after a 503")
        else:
            p.add_argument("--rate", type=float, required=True, help="requests per second")
    args = ap.parse_args()
    raise_nofile()
    host, port, raw = build_request(args.url, args.method, args.body, args.content_type)
    runner = run_closed if args.mode == "closed" else run_open
    result = asyncio.run(runner(args, host, port, raw))
    result["url"] = args.url
    result["method"] = args.method
    text = json.dumps(result, indent=1)
    if args.json:
        with open(args.json, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
