#!/usr/bin/python3
"""bench/aiohttp_db.py: the aiohttp + aiomysql reference server for bench/sql.sh.

  aiohttp_db.py HOST:PORT --mysql mysql://USER:PASSWORD@HOST:PORT/DB [--pool 64] [--loop auto|asyncio|uvloop]

GET /v1/db answers one random row of TechEmpower's `world` table, {"id":N,"randomNumber":M}, and
GET /v1/queries?queries=N an array of N such rows, each its own query run concurrently
(asyncio.gather), N clamped to 1..500 as TechEmpower says: what apiary's /v1/db and /v1/queries do,
in the same compact bytes. The obvious asyncio program: one process, one event loop, no access log,
an aiomysql pool (--pool connections, 64 by default), a prepared statement per query as aiomysql does
it (client-side parameter escaping: aiomysql has no server-side prepared statements).

Needs Debian's python3-aiohttp and python3-aiomysql. Prints one "listening ..." line on stdout when
ready; stops cleanly on SIGTERM/SIGINT.
"""
import asyncio
import json
import random
import sys
import urllib.parse

import aiohttp
import aiomysql
from aiohttp import web

from aiohttp_common import arg_parser, parse_args, run, serve_app

SELECT = "SELECT id, randomNumber FROM world WHERE id = %s"


def count(request):
    try:
        n = int(request.query.get("queries", "1"))
    except ValueError:
        return 1
    return 1 if n < 1 else 500 if n > 500 else n


def make_handlers(pool):
    async def one():
        # Shielded, like aiohttp_kv.py's Redis exchange: aiohttp cancels a handler whose client
        # disconnects (wrk does at the end of every run), and a query cancelled mid-flight leaves its
        # connection mid-protocol in the pool (aiomysql's "packet sequence number wrong").
        async def run():
            async with pool.acquire() as conn:
                async with conn.cursor() as cur:
                    await cur.execute(SELECT, (random.randint(1, 10000),))
                    row = await cur.fetchone()
            return {"id": row[0], "randomNumber": row[1]}
        return await asyncio.shield(run())

    async def db(request):
        return web.Response(text=json.dumps(await one(), separators=(",", ":")), content_type="application/json")

    async def queries(request):
        rows = await asyncio.gather(*(one() for _ in range(count(request))))
        return web.Response(text=json.dumps(rows, separators=(",", ":")), content_type="application/json")

    return db, queries


async def serve(args):
    url = urllib.parse.urlparse(args.mysql)
    pool = await aiomysql.create_pool(host=url.hostname, port=url.port or 3306, user=url.username,
                                      password=url.password or "", db=url.path.lstrip("/"), minsize=1,
                                      maxsize=args.pool, autocommit=True)
    db, queries = make_handlers(pool)
    app = web.Application()
    app.router.add_get("/v1/db", db)
    app.router.add_get("/v1/queries", queries)
    app.router.add_get("/v1/hello", lambda r: web.json_response({"message": "Hello, World!"}))
    await serve_app(app, args, f"aiohttp {aiohttp.__version__} aiomysql {aiomysql.__version__} "
                    f"python {sys.version.split()[0]} loop {args.loop_name} pool {args.pool} "
                    f"RLIMIT_NOFILE {args.nofile}")
    pool.close()
    await pool.wait_closed()


def main():
    ap = arg_parser(__doc__)
    ap.add_argument("--mysql", required=True, help="mysql://USER:PASSWORD@HOST:PORT/DB")
    ap.add_argument("--pool", type=int, default=64)
    run("aiohttp_db", parse_args(ap), serve)


if __name__ == "__main__":
    main()
