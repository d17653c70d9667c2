#!/usr/bin/python3
"""bench/arena_upload_rss.py: memory per concurrent upload of the arena entry's POST /upload (issue 25's
target: RSS per concurrent 20 MiB upload <= 256 KiB), or of any server answering it.

Starts the arena binary (--threads 1), or takes a server already running (--port and --pid: what
bench/arena.sh's upload suite does for every server), warms /upload up with a few whole uploads, reads its VmRSS, then
opens --uploads connections that each send the head of a --size-byte POST /upload and --first bytes of
its body, so all of them are mid-body at once; reads VmRSS again (peak VmHWM too); then sends the rest
of every body, checks every answer is the body's length, and prints
(RSS mid-body - RSS before) / uploads. Standard library only.

  arena_upload_rss.py ARENA_BIN [--uploads 64] [--size 20971520] [--first 4194304]
  arena_upload_rss.py --port PORT --pid PID [--label L] [same options]
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

from loopback import free_port, wait_listening

HERE = os.path.dirname(os.path.abspath(__file__))


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise SystemExit(f"no {field} in /proc/{pid}/status")


def head(size):
    return (f"POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/octet-stream\r\n"
            f"Content-Length: {size}\r\n\r\n").encode()


def send_piece(sock, n, chunk):
    while n > 0:
        k = min(n, len(chunk))
        sock.sendall(chunk[:k])
        n -= k


def answer(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        c = sock.recv(65536)
        if not c:
            break
        data += c
    head_, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head_.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        c = sock.recv(65536)
        if not c:
            break
        body += c
    return head_.split(b"\r\n", 1)[0].decode(), body.decode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binary", nargs="?")
    ap.add_argument("--port", type=int, help="a server already listening on 127.0.0.1:PORT (with --pid)")
    ap.add_argument("--pid", type=int, help="its process, whose VmRSS is read")
    ap.add_argument("--label", default="", help="a name for the RESULT line")
    ap.add_argument("--uploads", type=int, default=64)
    ap.add_argument("--size", type=int, default=20 * 1024 * 1024)
    ap.add_argument("--first", type=int, default=4 * 1024 * 1024)
    args = ap.parse_args()
    if (args.binary is None) == (args.port is None) or (args.port is None) != (args.pid is None):
        ap.error("give either ARENA_BIN, or --port and --pid")
    chunk = os.urandom(256 * 1024)
    with tempfile.TemporaryDirectory() as tmp:
        if args.binary:
            port = free_port()
            env = dict(os.environ, ARENA_DATA_DIR=os.path.join(tmp, "none"))
            env.pop("DATABASE_URL", None)
            proc = subprocess.Popen([args.binary, "--listen", f"127.0.0.1:{port}", "--threads", "1"], env=env,
                                    cwd=tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            pid = proc.pid
        else:
            port, pid, proc = args.port, args.pid, None
        try:
            wait_listening(port, 30, proc)
            for _ in range(3):  # warm up: buffers, the coroutine stacks, malloc's arenas
                with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
                    s.sendall(head(args.size))
                    send_piece(s, args.size, chunk)
                    status, body = answer(s)
                    assert body == str(args.size), (status, body)
            time.sleep(0.2)
            before = status_kib(pid, "VmRSS")
            socks = []
            for _ in range(args.uploads):
                s = socket.create_connection(("127.0.0.1", port), timeout=120)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 * 1024)
                s.sendall(head(args.size))
                send_piece(s, args.first, chunk)
                socks.append(s)
            time.sleep(0.5)  # let the server read what is in flight
            during = status_kib(pid, "VmRSS")
            for s in socks:
                send_piece(s, args.size - args.first, chunk)
            bad = 0
            for s in socks:
                status, body = answer(s)
                bad += body != str(args.size)
                s.close()
            hwm = status_kib(pid, "VmHWM")
            per = (during - before) / args.uploads
            print(f"RESULT {args.label + ' ' if args.label else ''}uploads={args.uploads} size={args.size} rss_before_kib={before} rss_mid_body_kib={during} "
                  f"vmhwm_kib={hwm} per_upload_kib={per:.1f} wrong_answers={bad}")
            return 1 if bad else 0
        finally:
            if proc:
                proc.terminate()
                proc.wait(timeout=30)


if __name__ == "__main__":
    sys.exit(main())
