#!/usr/bin/python3
"""bench/aiohttp_sse.py: the aiohttp reference server for bench/sse.sh (memory per idle event stream).

  aiohttp_sse.py HOST:PORT [--backlog 16384] [--keepalive-timeout 600] [--loop auto|asyncio|uvloop]

GET /v1/events?count=N&interval_ms=M sends what apiary's /v1/events sends: a text/event-stream with
"retry: 2000", then events `tick` with ids 1..N and data {"seq":i,"count":N}, one every M ms
(`await asyncio.sleep`), through aiohttp's StreamResponse. GET /v1/hello answers the TechEmpower body
(the bench scripts' readiness check). Single process, one event loop, no access log; Debian's
/usr/bin/python3 with python3-aiohttp. Prints one "listening ..." line when ready.
"""
import asyncio
import sys

import aiohttp
from aiohttp import web

from aiohttp_common import arg_parser, parse_args, run, serve_app, somaxconn


async def hello(request):
    return web.Response(text='{"message":"Hello, World!"}', content_type="application/json")


async def events(request):
    try:
        count = int(request.query.get("count", "10"))
        interval_ms = int(request.query.get("interval_ms", "1000"))
    except ValueError:
        return web.Response(status=422, text="bad query")
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                       "X-Accel-Buffering": "no"})
    await resp.prepare(request)
    await resp.write(b"retry: 2000\n\n")
    for seq in range(1, count + 1):
        if seq > 1 and interval_ms:
            await asyncio.sleep(interval_ms / 1000)
        await resp.write(b'event: tick\nid: %d\ndata: {"seq":%d,"count":%d}\n\n' % (seq, seq, count))
    await resp.write_eof()
    return resp


async def serve(args):
    app = web.Application()
    app.router.add_get("/v1/hello", hello)
    app.router.add_get("/v1/events", events)
    cap = somaxconn()
    await serve_app(app, args, f"aiohttp {aiohttp.__version__} python {sys.version.split()[0]} "
                    f"loop {args.loop_name} backlog {args.backlog} (somaxconn {cap}) RLIMIT_NOFILE {args.nofile}")


def main():
    run("aiohttp_sse", parse_args(arg_parser(__doc__, backlog=16384)), serve)


if __name__ == "__main__":
    main()
