#!/usr/bin/python3
"""bench/aiohttp_fanout.py: the aiohttp reference for bench/fanout.sh, the obvious Python version of
apiary's POST /v1/fanout.

  aiohttp_fanout.py HOST:PORT --upstream NAME=http://127.0.0.1:PORT [--upstream ...]
                    [--max-connections 64] [--max-requests 16] [--timeout-ms 1000]
                    [--backlog 4096] [--keepalive-timeout 600] [--loop auto|asyncio|uvloop]

POST /v1/fanout {"requests":[{"upstream":NAME,"path":"/..."}...],"timeout_ms":T} calls every
upstream at once with one shared aiohttp.ClientSession (a keep-alive pool of at most
--max-connections per upstream host, like apiary's max_connections) and asyncio.gather, and answers
{"results":[...]} in request order with the same members apiary sends ("upstream", "ok", "status",
"body" parsed as JSON or else a string, "ms"; failures "error"), serialized compactly as apiary does.
Input is checked as far as the benchmark needs (shape, names, paths); it is not a second
implementation of apiary's every 422.

Single process, one event loop, no access log. Debian's /usr/bin/python3 with python3-aiohttp
(`apt-get install -y python3-aiohttp`). Prints one "listening ..." line on stdout when ready; stops
cleanly on SIGTERM/SIGINT.
"""
import asyncio
import json
import sys

import aiohttp
from aiohttp import web

from aiohttp_common import arg_parser, parse_args, run, serve_app, somaxconn


def dumps(value):
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def problem(status, detail, field=None):
    doc = {"type": "about:blank", "status": status, "detail": detail}
    if field:
        doc["field"] = field
    return web.Response(status=status, text=dumps(doc), content_type="application/problem+json")


class Fanout:
    def __init__(self, upstreams, args):
        self.upstreams = upstreams  # name -> "http://host:port"
        self.args = args
        self.session = None

    async def start(self):
        # limit_per_host: the pool's max_connections; limit=0 so the per-host cap is the only one.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=self.args.max_connections,
                                         keepalive_timeout=30, ttl_dns_cache=None)
        self.session = aiohttp.ClientSession(connector=connector, auto_decompress=False)

    async def stop(self):
        await self.session.close()

    async def call(self, loop, name, path, timeout_s):
        started = loop.time()

        def ms():
            return int((loop.time() - started) * 1000)

        try:
            async with self.session.get(self.upstreams[name] + path,
                                        timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
                raw = await resp.read()
                status = resp.status
        except asyncio.TimeoutError:
            return {"upstream": name, "ok": False, "error": "timeout", "ms": ms()}
        except aiohttp.ClientConnectorError:
            return {"upstream": name, "ok": False, "error": "connect_failed", "ms": ms()}
        except aiohttp.ClientPayloadError:
            return {"upstream": name, "ok": False, "error": "connection_reset", "ms": ms()}
        except aiohttp.ClientResponseError:
            return {"upstream": name, "ok": False, "error": "malformed_response", "ms": ms()}
        except aiohttp.ClientError:
            return {"upstream": name, "ok": False, "error": "connection_reset", "ms": ms()}
        try:
            body = json.loads(raw)
        except ValueError:
            body = raw.decode("utf-8", "replace")
        return {"upstream": name, "ok": True, "status": status, "body": body, "ms": ms()}

    async def handle(self, request):
        if request.content_type != "application/json":
            return problem(415, "the body must be sent with Content-Type: application/json")
        try:
            doc = json.loads(await request.read())
        except ValueError as e:
            return problem(400, f"invalid JSON: {e}")
        if not isinstance(doc, dict):
            return problem(422, "the body must be a JSON object")
        calls = doc.get("requests")
        if not isinstance(calls, list) or not 1 <= len(calls) <= self.args.max_requests:
            return problem(422, "requests is required", "requests")
        for i, c in enumerate(calls):
            if not isinstance(c, dict) or c.get("upstream") not in self.upstreams:
                return problem(422, "not a configured upstream", f"requests[{i}].upstream")
            path = c.get("path")
            if not isinstance(path, str) or not path.startswith("/") or any(ch <= " " or ch > "~" for ch in path):
                return problem(422, "not a valid path", f"requests[{i}].path")
        timeout_ms = doc.get("timeout_ms", self.args.timeout_ms)
        if type(timeout_ms) is not int or not 1 <= timeout_ms <= 60000:
            return problem(422, "timeout_ms must be an integer 1..60000", "timeout_ms")
        loop = asyncio.get_running_loop()
        results = await asyncio.gather(*(self.call(loop, c["upstream"], c["path"], timeout_ms / 1000) for c in calls))
        return web.Response(text=dumps({"results": results}), content_type="application/json")


async def serve(args):
    fanout = Fanout(args.upstreams, args)
    await fanout.start()
    app = web.Application()
    app.router.add_post("/v1/fanout", fanout.handle)
    await serve_app(app, args, f"aiohttp {aiohttp.__version__} python {sys.version.split()[0]} "
                    f"loop {args.loop_name} backlog {args.backlog} (somaxconn {somaxconn()}) "
                    f"limit_per_host {args.max_connections} upstreams {','.join(fanout.upstreams)}")
    await fanout.stop()


def main():
    ap = arg_parser(__doc__)
    ap.add_argument("--upstream", action="append", default=[], help="NAME=http://HOST:PORT (repeatable)")
    ap.add_argument("--max-connections", type=int, default=64)
    ap.add_argument("--max-requests", type=int, default=16)
    ap.add_argument("--timeout-ms", type=int, default=1000)
    args = parse_args(ap)
    args.upstreams = {}
    for spec in args.upstream:
        name, sep, url = spec.partition("=")
        if not sep or not url.startswith("http://"):
            ap.error(f"--upstream {spec!r}: must be NAME=http://HOST:PORT")
        args.upstreams[name] = url.rstrip("/")
    if not args.upstreams:
        ap.error("at least one --upstream NAME=http://HOST:PORT")
    run("aiohttp_fanout", args, serve)


if __name__ == "__main__":
    main()
