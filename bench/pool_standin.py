#!/usr/bin/python3
"""bench/pool_standin.py: a stand-in for apiary's worker-pool endpoints, so pool_isolation.sh and
pool_hash.sh can be checked end to end (BENCH_SELFTEST=1) without an apiary that has them. Not a
benchmark subject: its numbers only show that the harness measures and reports what it should.

Takes apiary's command line (--config FILE --listen HOST:PORT [--threads N], the last ignored: one
asyncio loop) and the pool keys of its config: pool.threads (0 = CPU count), pool.queue_size,
pool.run_inline, password.memlimit_kib, primes.max_n. Serves

  GET /healthz                  {"status":"ok"}
  GET /v1/primes?n=N            {"n":N,"count":C}: CPU work proportional to N (PBKDF2 rounds, which
                                release the GIL so a worker thread really runs beside the loop);
                                C is a real prime count only for N <= 100000, else -1
  POST /v1/password/hash        {"hash":"$scrypt$..."}: scrypt with memlimit_kib of memory
  POST /v1/password/verify      {"ok":true}: the same work as a hash

with the pool's contract: jobs run on pool.threads threads behind a queue of pool.queue_size, and a
job that finds the queue full gets 503 with Retry-After: 1 at once. pool.run_inline runs the work
on the loop instead. Stdlib only.
"""
import argparse
import asyncio
import concurrent.futures
import ctypes
import hashlib
import json
import os
import time
import urllib.parse


def cfg_get(cfg, dotted, default):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def count_primes(n):
    if n < 2:
        return 0
    sieve = bytearray([1]) * (n + 1)
    sieve[0] = sieve[1] = 0
    for i in range(2, int(n ** 0.5) + 1):
        if sieve[i]:
            sieve[i * i::i] = bytes(len(range(i * i, n + 1, i)))
    return sum(sieve)


def primes_work(n):
    # ~N/20 PBKDF2-SHA256 rounds: linear in N like a sieve, and the GIL is released while it runs.
    hashlib.pbkdf2_hmac("sha256", b"standin", b"salt", max(1, n // 20))
    return {"n": n, "count": count_primes(n) if n <= 100000 else -1}


def hash_work(password, memlimit_kib):
    # scrypt uses 128 * r * N bytes: N chosen to use memlimit_kib, like Argon2's m_cost
    r = 8
    n_cost = 1
    while 128 * r * n_cost * 2 <= memlimit_kib * 1024:
        n_cost *= 2
    salt = os.urandom(16)
    dk = hashlib.scrypt(password.encode(), salt=salt, n=n_cost, r=r, p=1,
                        maxmem=128 * r * n_cost + (1 << 20), dklen=32)
    return {"hash": f"$scrypt$n={n_cost},r={r},p=1${salt.hex()}${dk.hex()}"}


def set_thread_name(name):
    """Names the calling OS thread like apiary's (apiary-loop-0, apiary-worker), so pool_report.py's
    per-thread CPU split works on the stand-in too. Best effort."""
    try:
        ctypes.CDLL(None).prctl(15, name.encode(), 0, 0, 0)   # PR_SET_NAME
    except (OSError, AttributeError):
        pass


class Pool:
    def __init__(self, threads, queue_size, inline):
        self.threads, self.capacity, self.inline = threads, queue_size, inline
        self.executor = None if inline else concurrent.futures.ThreadPoolExecutor(
            max_workers=threads, initializer=set_thread_name, initargs=("apiary-worker",))
        self.outstanding = 0   # queued + running
        if self.executor is not None:
            # start every worker now, as apiary does (the executor would start them lazily)
            for f in [self.executor.submit(time.sleep, 0.05) for _ in range(threads)]:
                f.result()

    async def run(self, fn, *args):
        """The work's result, or None when the queue is full (the caller answers 503)."""
        if self.inline:
            return fn(*args)   # blocks the loop: what run_inline is there to show
        if self.outstanding >= self.threads + self.capacity:
            return None
        self.outstanding += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)
        finally:
            self.outstanding -= 1


REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 503: "Service Unavailable"}


async def handle(reader, writer, pool, cfg):
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {}
            for line in lines[1:]:
                if ":" in line:
                    k, v = line.split(":", 1)
                    headers[k.strip().lower()] = v.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            u = urllib.parse.urlsplit(target)
            extra = ""
            status, obj = 404, {"title": "not found"}
            if method == "GET" and u.path == "/healthz":
                status, obj = 200, {"status": "ok"}
            elif method == "GET" and u.path == "/v1/primes":
                q = urllib.parse.parse_qs(u.query)
                try:
                    n = int(q["n"][0])
                    if not 0 <= n <= cfg_get(cfg, "primes.max_n", 50000000):
                        raise ValueError
                except (KeyError, ValueError):
                    status, obj = 400, {"title": "bad n"}
                else:
                    obj = await pool.run(primes_work, n)
                    status = 200 if obj is not None else 503
            elif method == "POST" and u.path in ("/v1/password/hash", "/v1/password/verify"):
                try:
                    password = json.loads(body)["password"]
                except (ValueError, KeyError, TypeError):
                    status, obj = 400, {"title": "bad body"}
                else:
                    obj = await pool.run(hash_work, password, cfg_get(cfg, "password.memlimit_kib", 65536))
                    status = 200 if obj is not None else 503
                    if obj is not None and u.path.endswith("verify"):
                        obj = {"ok": True}
            if status == 503:
                obj = {"title": "the worker pool is full"}
                extra = "Retry-After: 1\r\n"
            payload = json.dumps(obj, separators=(",", ":")).encode()
            writer.write(f"HTTP/1.1 {status} {REASONS[status]}\r\nContent-Type: application/json\r\n"
                         f"Content-Length: {len(payload)}\r\n{extra}\r\n".encode() + payload)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--threads", type=int, default=1, help="ignored: one loop")
    args = ap.parse_args()
    set_thread_name("apiary-loop-0")
    with open(args.config) as f:
        cfg = json.load(f)
    threads = cfg_get(cfg, "pool.threads", 0) or os.cpu_count()
    pool = Pool(threads, cfg_get(cfg, "pool.queue_size", 64), cfg_get(cfg, "pool.run_inline", False))
    host, port = args.listen.rsplit(":", 1)
    server = await asyncio.start_server(lambda r, w: handle(r, w, pool, cfg), host, int(port), backlog=1024)
    print(f"listening on {args.listen}, pool threads {threads}, queue {pool.capacity}, "
          f"inline {pool.inline}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
