#!/usr/bin/python3
"""bench/aiohttp_sleep.py: the aiohttp reference server for bench/sleep.sh.

  aiohttp_sleep.py HOST:PORT [--backlog 16384] [--keepalive-timeout 600] [--loop auto|asyncio|uvloop]

GET /v1/sleep?ms=N waits N ms with `await asyncio.sleep(N / 1000)` and answers 200
{"slept_ms":N}, the same bytes apiary sends, so both servers do the same work per request.
Single process, one event loop, no access log. Meant for Debian's /usr/bin/python3 with
python3-aiohttp (`apt-get install -y python3-aiohttp`).

Prints one "listening ..." line on stdout when ready; stops cleanly on SIGTERM/SIGINT.
"""
import asyncio
import sys

import aiohttp
from aiohttp import web

from aiohttp_common import arg_parser, parse_args, run, serve_app, somaxconn

# Same range as apiary's default limits.max_sleep_ms, so a bad request is a 400 on both.
MAX_SLEEP_MS = 60000


async def sleep_handler(request):
    raw = request.query.get("ms", "")
    # digits only: int() would also take "+5", " 5" or "5_0"
    if not raw.isdigit() or len(raw) > 6 or int(raw) > MAX_SLEEP_MS:
        return web.Response(status=400, content_type="application/json",
                            text='{"error":"ms must be an integer 0..%d"}' % MAX_SLEEP_MS)
    ms = int(raw)
    await asyncio.sleep(ms / 1000)
    # formatted by hand: json_response would add spaces and send different bytes from apiary
    return web.Response(text='{"slept_ms":%d}' % ms, content_type="application/json")


async def serve(args):
    app = web.Application()
    app.router.add_get("/v1/sleep", sleep_handler)
    cap = somaxconn()
    eff = min(args.backlog, cap) if cap else args.backlog
    await serve_app(app, args, f"aiohttp {aiohttp.__version__} python {sys.version.split()[0]} "
                    f"loop {args.loop_name} backlog {args.backlog} (kernel caps at somaxconn {cap}: {eff}) "
                    f"keepalive_timeout {args.keepalive_timeout:g}s RLIMIT_NOFILE {args.nofile}")


def main():
    # backlog above 10,000 so the queue never drops a SYN while wrk opens all its connections at once
    run("aiohttp_sleep", parse_args(arg_parser(__doc__, backlog=16384)), serve)


if __name__ == "__main__":
    main()
