#!/usr/bin/env python3
"""arena_client.py: the raw-socket checks of examples/arena/validate.sh that curl cannot make.

  arena_client.py frag PORT FRAGMENT...   sends one request in several writes (TCP_NODELAY, 30 ms
                                          apart), reads to EOF and prints the response body (chunked
                                          or Content-Length framing undone, surrounding space stripped)
  arena_client.py xcache PORT PATH N      N GETs of PATH back to back on one keep-alive connection;
                                          prints each answer's X-Cache value on a line (crud's MISS
                                          then HIT must fall inside its 200 ms TTL even on a loaded
                                          machine, which two curl processes may not)
  arena_client.py ws PORT PATH            the echo-ws checks: upgrade and Sec-WebSocket-Accept, text,
                                          binary and five back-to-back echoes, close, a plain GET of the
                                          path refused with a 4xx, and a fresh upgrade afterwards; prints
                                          PASS/FAIL lines and "N passed, M failed"

Fragments are given with $'...' in bash so they may hold CR and LF. Standard library only."""

import base64
import hashlib
import os
import socket
import struct
import sys
import time

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def read_to_eof(sock):
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk


def body_of(response):
    head, sep, rest = response.partition(b"\r\n\r\n")
    if not sep:
        return b""
    fields = {}
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        fields[name.strip().lower()] = value.strip()
    if fields.get(b"transfer-encoding", b"").lower() == b"chunked":
        out = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            out += rest[:size]
            rest = rest[size + 2:]
        return out
    if b"content-length" in fields:
        return rest[:int(fields[b"content-length"])]
    return rest


def frag(port, fragments):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i, f in enumerate(fragments):
            s.sendall(f.encode("latin-1"))
            if i < len(fragments) - 1:
                time.sleep(0.03)
        response = read_to_eof(s)
    sys.stdout.write(body_of(response).decode("latin-1").strip())
    return 0


def read_response(sock):
    """One Content-Length-framed response from sock: (head bytes, body bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before a response")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed inside a body")
        rest += chunk
    return head, rest[:length]


def xcache(port, path, n):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for _ in range(n):
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())
            head, _ = read_response(s)
            value = ""
            for line in head.split(b"\r\n")[1:]:
                name, _, v = line.decode("latin-1").partition(":")
                if name.strip().lower() == "x-cache":
                    value = v.strip()
            print(value)
    return 0


# ---- WebSocket ---------------------------------------------------------------------------------------

class WsCheck:
    def __init__(self, port, path):
        self.port, self.path = port, path
        self.passed = self.failed = 0

    def result(self, label, ok, detail=""):
        if ok:
            self.passed += 1
            print(f"  PASS [ws {label}]" + (f" ({detail})" if detail else ""))
        else:
            self.failed += 1
            print(f"  FAIL [ws {label}]" + (f": {detail}" if detail else ""))

    def connect(self, upgrade=True):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {self.path} HTTP/1.1", f"Host: 127.0.0.1:{self.port}"]
        if upgrade:
            lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                      "Sec-WebSocket-Version: 13"]
        s.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(4096)
            if not chunk:
                break
            head += chunk
        status = head.split(b"\r\n", 1)[0].decode("latin-1")
        accept = ""
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.decode("latin-1").partition(":")
            if name.strip().lower() == "sec-websocket-accept":
                accept = value.strip()
        want = base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()
        return s, status, accept, want

    @staticmethod
    def send(s, opcode, payload):
        mask = os.urandom(4)
        n = len(payload)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        s.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    @staticmethod
    def exact(s, n):
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def recv(self, s, timeout=5):
        s.settimeout(timeout)
        try:
            b0, b1 = self.exact(s, 2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self.exact(s, 2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self.exact(s, 8))[0]
            mask = self.exact(s, 4) if b1 & 0x80 else None
            data = self.exact(s, n)
            if mask:
                data = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
            return b0 & 0x0F, data
        except (socket.timeout, ConnectionError):
            return None, None

    def run(self):
        try:
            s, status, accept, want = self.connect()
        except OSError as e:
            self.result("upgrade 101", False, str(e))
            return
        switched = status.split()[1:2] == ["101"]
        self.result("upgrade 101", switched, status)
        self.result("Sec-WebSocket-Accept", accept == want, f"got {accept!r}, want {want!r}")
        if not switched:
            s.close()
            return
        text = f"arena-{os.urandom(6).hex()}".encode()
        self.send(s, 0x1, text)
        self.result("text echo", self.recv(s) == (0x1, text))
        data = os.urandom(256)
        self.send(s, 0x2, data)
        self.result("binary echo", self.recv(s) == (0x2, data))
        msgs = [f"m{i}-{os.urandom(3).hex()}".encode() for i in range(5)]
        for m in msgs:
            self.send(s, 0x1, m)
        got = [self.recv(s, 3) for _ in msgs]
        self.result("five messages echoed in order", got == [(0x1, m) for m in msgs])
        self.send(s, 0x8, struct.pack("!H", 1000))
        op, _ = self.recv(s, 3)
        self.result("close answered", op == 0x8, f"opcode {op}")
        s.close()
        time.sleep(0.1)
        try:
            s, status, _, _ = self.connect(upgrade=False)
            s.close()
            parts = status.split()
            code = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            self.result("plain GET refused with 4xx", 400 <= code < 500, status)
        except OSError as e:
            self.result("plain GET refused with 4xx", True, f"connection closed: {e}")
        try:
            s, status, _, _ = self.connect()
            ok = status.split()[1:2] == ["101"]
            if ok:
                self.send(s, 0x1, b"still here")
                ok = self.recv(s) == (0x1, b"still here")
            s.close()
        except OSError:
            ok = False
        self.result("a new upgrade still echoes", ok)


def main():
    if len(sys.argv) >= 4 and sys.argv[1] == "frag":
        return frag(int(sys.argv[2]), sys.argv[3:])
    if len(sys.argv) == 5 and sys.argv[1] == "xcache":
        return xcache(int(sys.argv[2]), sys.argv[3], int(sys.argv[4]))
    if len(sys.argv) == 4 and sys.argv[1] == "ws":
        w = WsCheck(int(sys.argv[2]), sys.argv[3])
        w.run()
        print(f"{w.passed} passed, {w.failed} failed")
        return 1 if w.failed else 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
