"""Start-up pieces shared by the aiohttp comparison servers (aiohttp_sleep.py, aiohttp_kv.py,
aiohttp_fanout.py): the descriptor limit, and the choice of event loop (uvloop only from Debian's
package, so a comparison never silently depends on something installed by hand)."""

import asyncio
import resource
import sys

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
