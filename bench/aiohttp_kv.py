#!/usr/bin/python3
"""bench/aiohttp_kv.py: the aiohttp + redis.asyncio reference server for bench/kv.sh.

  aiohttp_kv.py HOST:PORT --redis redis://HOST:PORT/DB [--loop auto|asyncio|uvloop]

GET /v1/kv/{key} does what apiary's Redis backend does: MULTI, GET, TTL, EXEC on the Redis key
"apiary:kv:" + key (redis-py's transactional pipeline), parses the stored JSON text and answers
200 {"key":...,"value":...,"ttl":...} in the same compact bytes as apiary, or 404 problem+json. The
obvious asyncio program: one process, one event loop, no access log, redis-py's default connection
pool (a connection per command in flight; redis-py does not pipeline across requests), the Redis
exchange shielded from client disconnects (see kv_get).

Needs Debian's python3-aiohttp and python3-redis (`apt-get install -y python3-aiohttp python3-redis`).
Prints one "listening ..." line on stdout when ready; stops cleanly on SIGTERM/SIGINT.
"""
import argparse
import asyncio
import json
import resource
import signal
import sys

import aiohttp
from aiohttp import web

from aiohttp_common import pick_loop, raise_nofile
import redis
import redis.asyncio

PREFIX = "apiary:kv:"
# Where Debian's python3-* packages live; --loop auto takes uvloop only from there, so a pip copy
# in /usr/local does not silently change what is measured.
NOT_FOUND = json.dumps({"type": "about:blank", "title": "Not Found", "status": 404,
                        "detail": "no value is stored under this key"}, separators=(",", ":"))


def make_get_handler(store):
    async def fetch(key):
        async with store.pipeline(transaction=True) as pipe:
            pipe.get(PREFIX + key)
            pipe.ttl(PREFIX + key)
            return await pipe.execute()

    async def kv_get(request):
        key = request.match_info["key"]
        # Shielded: aiohttp cancels a handler whose client disconnects (wrk does, with requests in
        # flight, at the end of every run), and redis-py 4.3's asyncio client does not survive a
        # command cancelled mid-flight: the connection goes back to its pool with the reply still
        # unread, and later commands on it stall or read the wrong reply. Letting the exchange finish
        # is the usual workaround; without it the measured run inherits the warm-up's broken
        # connections (stalls of seconds, wrk timeouts).
        value, ttl = await asyncio.shield(fetch(key))
        if value is None:
            return web.Response(status=404, text=NOT_FOUND, content_type="application/problem+json")
        body = {"key": key, "value": json.loads(value), "ttl": ttl if ttl >= 0 else None}
        # compact and in this order: the same bytes apiary sends
        return web.Response(text=json.dumps(body, separators=(",", ":"), ensure_ascii=False),
                            content_type="application/json")
    return kv_get


async def serve(host, port, args, loop_name, nofile):
    store = redis.asyncio.Redis.from_url(args.redis)
    await store.ping()
    app = web.Application()
    app.router.add_get("/v1/kv/{key}", make_get_handler(store))
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=args.keepalive_timeout, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=args.backlog, shutdown_timeout=1.0)
    await site.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on http://{host}:{port} aiohttp {aiohttp.__version__} redis-py {redis.__version__} "
          f"python {sys.version.split()[0]} loop {loop_name} RLIMIT_NOFILE {nofile}", flush=True)
    await stop.wait()
    await runner.cleanup()
    await store.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("listen", help="HOST:PORT")
    ap.add_argument("--redis", required=True, help="redis://HOST:PORT/DB")
    ap.add_argument("--backlog", type=int, default=4096)
    ap.add_argument("--keepalive-timeout", type=float, default=600.0)
    ap.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        ap.error("listen must be HOST:PORT")
    nofile = raise_nofile()
    loop_name = pick_loop(args.loop, "aiohttp_kv")
    try:
        asyncio.run(serve(host.strip("[]"), int(port), args, loop_name, nofile))
    except OSError as e:
        sys.exit(f"aiohttp_kv: {e}")


if __name__ == "__main__":
    main()
