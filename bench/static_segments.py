#!/usr/bin/env python3
"""bench/static_segments.py: TCP segments per static answer, counted by the kernel per connection (the
client sockets' struct tcp_info), so the figure does not depend on the machine's load or on other
traffic on lo. HttpArena's static mix (bench/static_mix.lua's 20 files, round-robin, the arena's
Accept-Encoding) over CONNS kept connections, one request at a time on each (as wrk sends them), all
connections in flight together.

Prints one line per server: answers, then per answer: the server's segments with data (data_segs_in:
1.00 is a head and its body in one segment), the server's segments in all (segs_in, pure ACKs
included), the client's segments (segs_out: its requests and its ACKs), and how many answers arrived in
more than one read (the client woke for part of an answer).

Usage: static_segments.py URL [URL ...] [--conns 64] [--rounds 20] [--coding br|gzip|none] [--file F]
  e.g. static_segments.py http://127.0.0.1:8080 http://127.0.0.1:8081  (the apiary arena, nginx br)
"""

import argparse
import selectors
import socket
import struct
import sys
from urllib.parse import urlsplit

FILES = [
    "reset.css", "layout.css", "theme.css", "components.css", "utilities.css",
    "analytics.js", "helpers.js", "app.js", "vendor.js", "router.js",
    "header.html", "footer.html", "regular.woff2", "bold.woff2", "logo.svg",
    "icon-sprite.svg", "hero.webp", "thumb1.webp", "thumb2.webp", "manifest.json",
]
CODINGS = {"br": "br;q=1, gzip;q=0.8", "gzip": "gzip", "none": None}


def tcp_counts(sock):
    """(segs_out, segs_in, data_segs_in) of struct tcp_info (Linux >= 4.6)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
    segs_out, segs_in = struct.unpack_from("II", info, 136)
    data_segs_in = struct.unpack_from("I", info, 152)[0]
    return segs_out, segs_in, data_segs_in


class Conn:
    def __init__(self, host, port, reqs, offset):
        self.sock = socket.create_connection((host, port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reqs, self.next, self.left = reqs, offset, 0
        self.buf, self.need, self.reads, self.split = b"", None, 0, 0

    def send(self):
        self.sock.sendall(self.reqs[self.next % len(self.reqs)])
        self.next += 1
        self.buf, self.need, self.reads = b"", None, 0

    def on_read(self):
        """True when a whole answer is in."""
        data = self.sock.recv(1 << 20)
        if not data:
            raise SystemExit("the server closed a connection")
        self.reads += 1
        self.buf += data
        if self.need is None:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            head = self.buf[:end].decode("latin-1").lower()
            if not head.startswith("http/1.1 200"):
                raise SystemExit("answer: " + head.splitlines()[0])
            length = 0
            for line in head.split("\r\n")[1:]:
                name, _, value = line.partition(":")
                if name.strip() == "content-length":
                    length = int(value)
            self.need = end + 4 + length
        if len(self.buf) < self.need:
            return False
        if self.reads > 1:
            self.split += 1
        return True


def measure(url, conns, rounds, coding, only):
    parts = urlsplit(url)
    host, port = parts.hostname, parts.port or 80
    ae = f"Accept-Encoding: {CODINGS[coding]}\r\n" if CODINGS[coding] else ""
    files = [only] if only else FILES
    reqs = [f"GET /static/{f} HTTP/1.1\r\nHost: {host}:{port}\r\n{ae}\r\n".encode() for f in files]
    cs = [Conn(host, port, reqs, i) for i in range(conns)]
    sel = selectors.DefaultSelector()
    # one warm-up round (buffers grown, files in the page cache), then the counted answers
    for phase, per_conn in (("warm", len(files)), ("count", rounds * len(files))):
        if phase == "count":
            base = [tcp_counts(c.sock) for c in cs]
            for c in cs:
                c.split = 0
        for c in cs:
            c.left = per_conn
            c.send()
            sel.register(c.sock, selectors.EVENT_READ, c)
        active = len(cs)
        while active:
            for key, _ in sel.select():
                c = key.data
                if not c.on_read():
                    continue
                c.left -= 1
                if c.left:
                    c.send()
                else:
                    sel.unregister(c.sock)
                    active -= 1
    answers = conns * rounds * len(files)
    out = [tcp_counts(c.sock) for c in cs]
    d = [sum(o[i] - b[i] for o, b in zip(out, base)) for i in range(3)]
    split = sum(c.split for c in cs)
    for c in cs:
        c.sock.close()
    return answers, d[2] / answers, d[1] / answers, d[0] / answers, split / answers


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("urls", nargs="+")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--coding", choices=sorted(CODINGS), default="br")
    ap.add_argument("--file")
    a = ap.parse_args()
    print("| server | answers | server data segments/answer | server segments/answer | client segments/answer | answers read in >1 recv |")
    print("|---|--:|--:|--:|--:|--:|")
    for url in a.urls:
        n, data_in, segs_in, segs_out, split = measure(url, a.conns, a.rounds, a.coding, a.file)
        print(f"| {url} | {n} | {data_in:.3f} | {segs_in:.3f} | {segs_out:.3f} | {split:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
