#!/usr/bin/python3
"""bench/aiohttp_sleep.py: the aiohttp reference server for bench/sleep.sh.

  aiohttp_sleep.py HOST:PORT [--backlog 16384] [--keepalive-timeout 600] [--loop auto|asyncio|uvloop]

GET /v1/sleep?ms=N waits N ms with `await asyncio.sleep(N / 1000)` and answers 200
{"slept_ms":N}, the same bytes apiary sends, so both servers do the same work per request.
Single process, one event loop, no access log. Meant for Debian's /usr/bin/python3 with
python3-aiohttp (`apt-get install -y python3-aiohttp`).

Prints one "listening ..." line on stdout when ready; stops cleanly on SIGTERM/SIGINT.
"""
import argparse
import asyncio
import resource
import signal
import sys

from aiohttp import web

from aiohttp_common import pick_loop, raise_nofile
import aiohttp

# Same range as apiary's default limits.max_sleep_ms, so a bad request is a 400 on both.
MAX_SLEEP_MS = 60000
# Where Debian's python3-* packages live; --loop auto takes uvloop only from there, so a pip copy
# in /usr/local does not silently change what is measured.


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


def somaxconn():
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read())
    except OSError:
        return None


async def serve(host, port, args, loop_name, nofile):
    app = web.Application()
    app.router.add_get("/v1/sleep", sleep_handler)
    # access_log=None: no per-request logging work; keepalive_timeout: keep 10,000 idle-between-
    # requests connections open for the whole benchmark.
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=args.keepalive_timeout,
                           handle_signals=False)
    await runner.setup()
    # shutdown_timeout short: on SIGTERM the benchmark is over, nothing in flight is worth waiting for
    site = web.TCPSite(runner, host, port, backlog=args.backlog, shutdown_timeout=1.0)
    await site.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    cap = somaxconn()
    eff = min(args.backlog, cap) if cap else args.backlog
    print(f"listening on http://{host}:{port} aiohttp {aiohttp.__version__} python {sys.version.split()[0]} "
          f"loop {loop_name} backlog {args.backlog} (kernel caps at somaxconn {cap}: {eff}) "
          f"keepalive_timeout {args.keepalive_timeout:g}s RLIMIT_NOFILE {nofile}", flush=True)
    await stop.wait()
    await runner.cleanup()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("listen", help="HOST:PORT")
    # above 10,000 so the queue never drops a SYN while wrk opens all its connections at once
    ap.add_argument("--backlog", type=int, default=16384)
    ap.add_argument("--keepalive-timeout", type=float, default=600.0)
    ap.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        ap.error("listen must be HOST:PORT")
    host = host.strip("[]")
    nofile = raise_nofile()
    loop_name = pick_loop(args.loop, "aiohttp_sleep")
    try:
        asyncio.run(serve(host, int(port), args, loop_name, nofile))
    except OSError as e:
        sys.exit(f"aiohttp_sleep: {e}")


if __name__ == "__main__":
    main()
