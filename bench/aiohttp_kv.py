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
import asyncio
import json
import sys

import aiohttp
from aiohttp import web

from aiohttp_common import arg_parser, parse_args, run, serve_app
import redis
import redis.asyncio

PREFIX = "apiary:kv:"
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


async def serve(args):
    store = redis.asyncio.Redis.from_url(args.redis)
    await store.ping()
    app = web.Application()
    app.router.add_get("/v1/kv/{key}", make_get_handler(store))
    await serve_app(app, args, f"aiohttp {aiohttp.__version__} redis-py {redis.__version__} "
                    f"python {sys.version.split()[0]} loop {args.loop_name} RLIMIT_NOFILE {args.nofile}")
    await store.close()


def main():
    ap = arg_parser(__doc__)
    ap.add_argument("--redis", required=True, help="redis://HOST:PORT/DB")
    run("aiohttp_kv", parse_args(ap), serve)


if __name__ == "__main__":
    main()
