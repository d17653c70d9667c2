"""Start-up pieces shared by the aiohttp comparison servers (aiohttp_sleep.py, aiohttp_kv.py,
aiohttp_db.py, aiohttp_fanout.py): the command line every one of them takes (HOST:PORT, --backlog,
--keepalive-timeout, --loop), the descriptor limit, the choice of event loop (uvloop only from
Debian's package, so a comparison never silently depends on something installed by hand), and
serving an app until SIGTERM/SIGINT with one "listening ..." line on stdout once it accepts."""

import argparse
import asyncio
import resource
import signal
import sys

from aiohttp import web

DEBIAN_DIST = "/usr/lib/python3/dist-packages/"


def raise_nofile():
    """Raises the soft descriptor limit to the hard one (10,000 client sockets need far more than
    the usual 1024) and returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def pick_loop(choice, prog):
    """Returns the loop name in use. uvloop only if asked for, or (auto) if Debian's is installed."""
    if choice == "asyncio":
        return "asyncio"
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            sys.exit(f"{prog}: --loop uvloop but uvloop is not installed (apt-get install -y python3-uvloop)")
        return "asyncio"
    if choice == "auto" and not uvloop.__file__.startswith(DEBIAN_DIST):
        return "asyncio"
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return f"uvloop {uvloop.__version__}"


def somaxconn():
    """net.core.somaxconn, the kernel's cap on any listen backlog (None if unreadable)."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return int(f.read())
    except OSError:
        return None


def arg_parser(doc, backlog=4096):
    """The options every server takes; the caller adds its own before parse_args()."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("listen", help="HOST:PORT")
    ap.add_argument("--backlog", type=int, default=backlog)
    ap.add_argument("--keepalive-timeout", type=float, default=600.0)
    ap.add_argument("--loop", choices=("auto", "asyncio", "uvloop"), default="auto")
    return ap


def parse_args(ap):
    """parse_args() plus the checked listen address (args.host, args.port) and the raised descriptor
    limit (args.nofile)."""
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    if not host or not port.isdigit():
        ap.error("listen must be HOST:PORT")
    args.host, args.port = host.strip("[]"), int(port)
    args.nofile = raise_nofile()
    return args


def run(prog, args, serve):
    """Picks the loop (args.loop_name) and runs the coroutine serve(args); a bind error ends the
    process with one line instead of a traceback."""
    args.loop_name = pick_loop(args.loop, prog)
    try:
        asyncio.run(serve(args))
    except OSError as e:
        sys.exit(f"{prog}: {e}")


async def serve_app(app, args, banner):
    """Serves app on args.host:args.port until SIGTERM/SIGINT. Prints "listening on http://HOST:PORT
    BANNER" once it accepts (the bench scripts read that line into their reports)."""
    # access_log=None: no per-request logging work; keepalive_timeout: keep the benchmark's
    # connections open for the whole run.
    runner = web.AppRunner(app, access_log=None, keepalive_timeout=args.keepalive_timeout,
                           handle_signals=False)
    await runner.setup()
    # shutdown_timeout short: on SIGTERM the benchmark is over, nothing in flight is worth waiting for
    site = web.TCPSite(runner, args.host, args.port, backlog=args.backlog, shutdown_timeout=1.0)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"listening on http://{args.host}:{args.port} {banner}", flush=True)
    await stop.wait()
    await runner.cleanup()
