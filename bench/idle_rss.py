#!/usr/bin/python3
"""bench/idle_rss.py: how much server memory N idle keep-alive connections cost.

Opens N connections to a loopback server, sends one `GET /v1/hello HTTP/1.1` on each and reads the
whole response, so every connection has been through a full request and sits idle in keep-alive
(the state a real idle client leaves it in, not just an accepted socket). Reads the server's VmRSS
from /proc/PID/status before and after, prints the difference per connection, then closes all.

  idle_rss.py 127.0.0.1:PORT PID [-n 10000] [--batch 500] [--batch-timeout 10]
  idle_rss.py 127.0.0.1:PORT PID --path '/v1/events?count=2&interval_ms=3600000' --until 'id: 1'

With --until MARKER the answer is a stream that stays open (Server-Sent Events): a connection counts
as idle once its 200 head and MARKER (say, the first event) have arrived; it then sits in the
server as an idle stream, and "closed by the server" means the stream ended.

Non-blocking sockets + selectors, in batches (so the listen backlog never overflows and each batch
has a bounded time), so one process drives 10k connections in a few seconds. Stdlib only.
The last line is machine-readable: "RESULT key=value ...". Exit status 1 if any connection failed.
"""
import argparse
import errno
import ipaddress
import resource
import selectors
import socket
import sys
import time


def read_status(pid):
    """VmRSS and friends from /proc/PID/status, in KiB."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


def raise_nofile(need):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # a few descriptors for stdio, the selector and /proc reads
    return hard if hard == resource.RLIM_INFINITY else hard - 32


class Conn:
    __slots__ = ("sock", "state", "out", "buf")

    def __init__(self, sock, request):
        self.sock = sock
        self.state = "connect"
        self.out = request
        self.buf = b""


UNTIL = None  # --until: a marker that makes a streamed answer count as "arrived"


def response_complete(buf):
    """None while incomplete; else (status, keep_alive). Handles Content-Length and chunked."""
    end = buf.find(b"\r\n\r\n")
    if UNTIL is not None and end >= 0:
        status_line = buf[:buf.find(b"\r\n")].split()
        try:
            status = int(status_line[1])
        except (IndexError, ValueError):
            return (0, False)
        if status == 200 and buf.find(UNTIL, end) < 0:
            return None
        return (status, True)
    if end < 0:
        return None
    head = buf[:end].decode("latin-1").split("\r\n")
    try:
        status = int(head[0].split()[1])
    except (IndexError, ValueError):
        return (0, False)
    headers = {}
    for h in head[1:]:
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip().lower()
    body = buf[end + 4:]
    if "chunked" in headers.get("transfer-encoding", ""):
        if not body.endswith(b"0\r\n\r\n"):
            return None
    elif len(body) < int(headers.get("content-length", "0")):
        return None
    keep_alive = "close" not in headers.get("connection", "")
    return (status, keep_alive)


def open_batch(addr, count, request, timeout, errors):
    """Opens `count` connections and completes one request on each. Returns the open sockets."""
    sel = selectors.DefaultSelector()
    pending = 0
    for _ in range(count):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setblocking(False)
        rc = s.connect_ex(addr)
        if rc not in (0, errno.EINPROGRESS):
            why = f"connect: {errno.errorcode.get(rc, rc)}"
            errors[why] = errors.get(why, 0) + 1
            s.close()
            continue
        sel.register(s, selectors.EVENT_WRITE, Conn(s, request))
        pending += 1

    done = []

    def fail(c, why):
        nonlocal pending
        errors[why] = errors.get(why, 0) + 1
        sel.unregister(c.sock)
        c.sock.close()
        pending -= 1

    deadline = time.monotonic() + timeout
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            break
        for key, mask in sel.select(left):
            c = key.data
            if c.state == "connect":
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(c, f"connect: {errno.errorcode.get(err, err)}")
                    continue
                c.state = "send"
            if c.state == "send":
                try:
                    n = c.sock.send(c.out)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    fail(c, f"send: {errno.errorcode.get(e.errno, e.errno)}")
                    continue
                c.out = c.out[n:]
                if not c.out:
                    c.state = "recv"
                    sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            if c.state == "recv":
                try:
                    data = c.sock.recv(65536)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as e:
                    fail(c, f"recv: {errno.errorcode.get(e.errno, e.errno)}")
                    continue
                if not data:
                    fail(c, "closed by server before the response was complete")
                    continue
                c.buf += data
                r = response_complete(c.buf)
                if r is None:
                    continue
                status, keep_alive = r
                if status != 200:
                    fail(c, f"status {status}")
                elif not keep_alive:
                    fail(c, "server answered Connection: close")
                else:
                    sel.unregister(c.sock)
                    pending -= 1
                    done.append(c.sock)
    # whatever is still pending ran out of time
    for key in list(sel.get_map().values()):
        fail(key.data, f"timed out after {timeout:g}s")
    sel.close()
    return done


def count_closed(socks):
    """Connections the server has closed (readable with EOF) while they should be idle."""
    sel = selectors.DefaultSelector()
    for s in socks:
        sel.register(s, selectors.EVENT_READ)
    closed = 0
    for key, _ in sel.select(0):
        try:
            data = key.fileobj.recv(1, socket.MSG_PEEK)
        except OSError:
            data = b""
        if not data:
            closed += 1
    sel.close()
    return closed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", help="HOST:PORT of the server (loopback only)")
    ap.add_argument("pid", type=int, help="server PID whose VmRSS is measured")
    ap.add_argument("-n", "--connections", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=500,
                    help="connections opened at once (keep below the server's listen backlog)")
    ap.add_argument("--batch-timeout", type=float, default=10.0, help="seconds allowed per batch")
    ap.add_argument("--settle", type=float, default=1.0,
                    help="seconds to wait after the last response before reading VmRSS")
    ap.add_argument("--path", default="/v1/hello")
    ap.add_argument("--until", help="streamed answers: count a connection once this marker arrived")
    args = ap.parse_args()
    global UNTIL
    UNTIL = args.until.encode() if args.until else None

    host, _, port = args.target.rpartition(":")
    if not ipaddress.ip_address(host).is_loopback or ipaddress.ip_address(host).version != 4:
        sys.exit(f"idle_rss.py: {host} is not an IPv4 loopback address; this tool only targets loopback")
    addr = (host, int(port))

    limit = raise_nofile(args.connections)
    n = args.connections
    if n > limit:
        print(f"warning: RLIMIT_NOFILE allows only {limit} connections; using that", file=sys.stderr)
        n = limit

    request = f"GET {args.path} HTTP/1.1\r\nHost: {host}:{port}\r\n\r\n".encode()
    before = read_status(args.pid)
    print(f"server pid {args.pid}: VmRSS before {before['VmRSS']} KiB ({before['VmRSS'] / 1024:.1f} MiB)")

    t0 = time.monotonic()
    socks, errors = [], {}
    while len(socks) + sum(errors.values()) < n:
        want = min(args.batch, n - len(socks) - sum(errors.values()))
        socks += open_batch(addr, want, request, args.batch_timeout, errors)
    elapsed = time.monotonic() - t0
    print(f"opened {len(socks)} of {n} keep-alive connections, one request each, in {elapsed:.1f}s")
    for why, k in sorted(errors.items()):
        print(f"  failed: {k} x {why}")

    time.sleep(args.settle)
    after = read_status(args.pid)
    closed = count_closed(socks)
    if closed:
        print(f"warning: the server already closed {closed} of the idle connections")
    idle = len(socks) - closed
    delta = after["VmRSS"] - before["VmRSS"]
    per_conn = delta * 1024 / idle if idle else float("nan")
    print(f"VmRSS after  {after['VmRSS']} KiB ({after['VmRSS'] / 1024:.1f} MiB) "
          f"with {idle} idle connections; RssAnon {after.get('RssAnon', '?')} KiB, "
          f"RssFile {after.get('RssFile', '?')} KiB, VmHWM {after.get('VmHWM', '?')} KiB")
    print(f"delta {delta} KiB = {per_conn:.0f} bytes per idle connection")

    t1 = time.monotonic()
    for s in socks:
        s.close()
    print(f"closed all in {time.monotonic() - t1:.1f}s")
    print(f"RESULT pid={args.pid} requested={n} idle={idle} failed={sum(errors.values())} closed_by_server={closed} "
          f"rss_before_kib={before['VmRSS']} rss_after_kib={after['VmRSS']} delta_kib={delta} "
          f"per_conn_bytes={per_conn:.0f}")
    return 1 if errors or closed else 0


if __name__ == "__main__":
    sys.exit(main())
