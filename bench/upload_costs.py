#!/usr/bin/python3
"""bench/upload_costs.py: what a streamed upload costs the arena entry's POST /upload (ROUTE_BODY_STREAM),
in counts that do not move with the machine's load:

- system calls per upload (`strace -c -f` over --uploads uploads of --size bytes, one connection each,
  one after another): recvfrom, epoll_ctl, epoll_wait and all;
- user-space instructions per MiB uploaded (callgrind, --cg-uploads uploads of --cg-size bytes on one
  keep-alive connection after one to warm up; bench/callgrind_run.py).

  upload_costs.py ARENA_BIN [--uploads 10] [--size 20971520] [--chunked] [--cg-uploads 4] [--cg-size 4194304]

ARENA_BIN: the arena entry (examples/arena) built against the installed library, as bench/arena.sh builds
it. Standard library, strace and valgrind.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import callgrind_run  # noqa: E402
from loopback import free_port, wait_listening  # noqa: E402

PIECE = b"x" * 262144


def upload(port, size, chunked):
    """One POST /upload on a connection of its own; checks the answer is the body's length."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as s:
        framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
        s.sendall(f"POST /upload HTTP/1.1\r\nHost: x\r\n{framing}\r\nConnection: close\r\n\r\n".encode())
        left = size
        while left:
            k = min(left, len(PIECE))
            s.sendall(b"%x\r\n" % k + PIECE[:k] + b"\r\n" if chunked else PIECE[:k])
            left -= k
        if chunked:
            s.sendall(b"0\r\n\r\n")
        data = b""
        while True:
            c = s.recv(65536)
            if not c:
                break
            data += c
    if not data.startswith(b"HTTP/1.1 200") or not data.endswith(str(size).encode()):
        raise SystemExit(f"POST /upload of {size} bytes answered {data[:200]!r}")


def syscalls(binary, uploads, size, chunked):
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        out = os.path.join(tmp, "strace.out")
        env = dict(os.environ, ARENA_DATA_DIR=tmp)
        proc = subprocess.Popen(["strace", "-c", "-f", "-o", out, os.path.abspath(binary), "--listen",
                                 f"127.0.0.1:{port}", "--threads", "1"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, env=env, cwd=tmp)
        try:
            wait_listening(port, 30, proc)
            for _ in range(uploads):
                upload(port, size, chunked)
        finally:
            # SIGTERM to the server itself (strace's child): it drains and exits, strace writes its table
            with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
                for child in f.read().split():
                    os.kill(int(child), 15)
            proc.wait(60)
        counts = {}
        for line in open(out):
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
            if m:
                counts[m.group(2)] = int(m.group(1))
    return counts


def instructions(binary, uploads, size):
    def send(conn, n):
        for _ in range(n):
            conn.request("POST", "/upload", PIECE * (size // len(PIECE)) + PIECE[:size % len(PIECE)],
                         {"Content-Type": "application/octet-stream"})
            r = conn.getresponse()
            body = r.read()
            if r.status != 200 or body != str(size).encode():
                raise SystemExit(f"{binary}: POST /upload answered {r.status} {body[:100]!r}")
    total, _ = callgrind_run.profile(binary, {}, send, uploads, 1)
    return total


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("binary")
    ap.add_argument("--uploads", type=int, default=10)
    ap.add_argument("--size", type=int, default=20 * 1024 * 1024)
    ap.add_argument("--chunked", action="store_true")
    ap.add_argument("--cg-uploads", type=int, default=4)
    ap.add_argument("--cg-size", type=int, default=4 * 1024 * 1024)
    a = ap.parse_args()
    c = syscalls(a.binary, a.uploads, a.size, a.chunked)
    per = {k: c.get(k, 0) / a.uploads for k in ("recvfrom", "epoll_ctl", "epoll_wait", "total")}
    mib = a.size / (1024 * 1024)
    print(f"syscalls per {'chunked ' if a.chunked else ''}upload of {a.size} bytes ({a.uploads} uploads): "
          + ", ".join(f"{k} {v:,.1f}" for k, v in per.items())
          + f"; per MiB: recvfrom {per['recvfrom'] / mib:.1f}, epoll_ctl {per['epoll_ctl'] / mib:.2f}")
    if a.cg_uploads > 0:
        ir = instructions(a.binary, a.cg_uploads, a.cg_size)
        print(f"user instructions per MiB uploaded (callgrind, {a.cg_uploads} uploads of {a.cg_size} bytes): "
              f"{ir / (a.cg_uploads * a.cg_size / (1024 * 1024)):,.0f}")
    print(f"RESULT recvfrom={per['recvfrom']:.1f} epoll_ctl={per['epoll_ctl']:.1f} "
          f"epoll_wait={per['epoll_wait']:.1f} total={per['total']:.1f}"
          + (f" instructions_per_mib={ir / (a.cg_uploads * a.cg_size / (1024 * 1024)):.0f}" if a.cg_uploads > 0 else ""))


if __name__ == "__main__":
    main()
