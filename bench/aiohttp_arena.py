#!/usr/bin/python3
"""bench/aiohttp_arena.py: the aiohttp reference server of bench/arena.sh for HttpArena's baseline,
pipelined, json, json-comp and upload profiles.

  aiohttp_arena.py HOST:PORT --dataset FILE [--loop auto|asyncio|uvloop]

GET|POST /baseline11?a=&b= answers a+b (+ the body's integer) as text/plain; GET /pipeline "ok";
GET /json/{count}?m= the first count dataset items, each copied with total = price * quantity * m,
serialised per request with json.dumps, and coded by aiohttp's own Response.enable_compression() when
the request has an Accept-Encoding (json-comp; aiohttp 3.8 codes deflate or gzip, zlib's default level,
never br); POST /upload the body's length, read in chunks as it streams in (request.content), up to 64
MiB. The obvious aiohttp program: one process, one event loop,
no access log. Debian's python3-aiohttp (and python3-uvloop when installed). Prints one
"listening ..." line on stdout when ready; stops cleanly on SIGTERM/SIGINT."""
import json

import aiohttp
from aiohttp import web

from aiohttp_common import arg_parser, parse_args, run, serve_app


def make_app(dataset):
    async def baseline(request):
        try:
            total = int(request.query["a"]) + int(request.query["b"])
            if request.method == "POST":
                body = (await request.read()).strip()
                if body:
                    total += int(body)
        except (KeyError, ValueError):
            return web.Response(status=400, text="a, b and the body must be integers")
        return web.Response(text=str(total), content_type="text/plain")

    async def pipeline(request):
        return web.Response(text="ok", content_type="text/plain")

    async def json_items(request):
        try:
            count = int(request.match_info["count"])
            m = int(request.query.get("m", "1"))
        except ValueError:
            return web.Response(status=400, text="count and m must be integers")
        items = [dict(it, total=it["price"] * it["quantity"] * m) for it in dataset[:max(count, 0)]]
        resp = web.Response(text=json.dumps({"items": items, "count": len(items)}, separators=(",", ":")),
                            content_type="application/json")
        if "Accept-Encoding" in request.headers:
            resp.enable_compression()
        return resp

    async def upload(request):
        total = 0
        async for chunk in request.content.iter_any():
            total += len(chunk)
        return web.Response(text=str(total), content_type="text/plain")

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_get("/baseline11", baseline)
    app.router.add_post("/baseline11", baseline)
    app.router.add_get("/pipeline", pipeline)
    app.router.add_get("/json/{count}", json_items)
    app.router.add_post("/upload", upload)
    return app


def main():
    ap = arg_parser(__doc__)
    ap.add_argument("--dataset", required=True)
    args = parse_args(ap)
    with open(args.dataset) as f:
        dataset = json.load(f)

    async def serve(args):
        await serve_app(make_app(dataset), args, f"aiohttp {aiohttp.__version__}, {args.loop_name}")

    run("aiohttp_arena.py", args, serve)


if __name__ == "__main__":
    main()
