"""A tiny HTTP/1.1 upstream for apiary's /v1/fanout tests that misbehaves on request, and counts.

Run inside a test (MisbehavingUpstream().start(), then .stop()), or on its own for poking at by hand:

    python3 misbehaving_upstream.py [PORT]      # 127.0.0.1 only; Ctrl-C stops it

One thread per connection (the tests keep a handful open at a time), keep-alive, requests read one
after another. What it answers depends on the path:

    /json                 200 {"ok":true}, Content-Length
    /text                 200 text/plain, not JSON
    /binary               200 with bytes that are not UTF-8
    /chunked              200 {"chunked":true,"parts":3} sent as three chunks
    /close                200 close-delimited body (no Content-Length), then closes
    /big?bytes=N          200 with N bytes of 'x'
    /hostile?kind=K&bytes=N   200 application/json, N bytes (default 1 MiB) of: objects "[{},{},...]",
                          deep "[[[...]]]", string one JSON string, text plain text that is not JSON,
                          binary \x01\xff repeated, mixed "abcde\x01" repeated, escapes every ASCII
                          byte then UTF-8, \xff, x...
    /status?code=N        N with a small JSON body
    /slow?ms=N            waits N ms, then answers like /json
    /hang                 never answers; counts the connection in hang_closed when the client closes it
    /reset                head + 10 of 100 announced body bytes, then a TCP reset
    /malformed            a broken status line, then closes
    /json?then=idle_close&ms=N   answers, then closes the connection if no request follows within N ms
    /json?then=drop_next         answers, then closes the connection when the next request arrives on it,
                                 without answering (a keep-alive timer firing just as the request came)
    anything else         404 {"target": <request target as sent>, "host": <Host header>}

Counters (read them from the test's thread): accepted (connections accepted), open (connections
open now), requests, hang_closed, plus `targets` and `hosts`, what each request asked for, in order.
Standard library only; loopback only; stop() ends every thread it started.
"""

import functools
import json
import select
import socket
import struct
import sys
import threading
import time
import urllib.parse

HOST = "127.0.0.1"
MAX_HEAD = 65536


@functools.lru_cache(maxsize=8)
def hostile_body(kind, size):
    """Exactly `size` bytes (size >= 4) of a body built to be costly to parse: "objects" is the review's
    [{},{},...] (a value every 3 bytes), "deep" nests arrays size/2 levels, "string" is one valid
    JSON string, "text" is words that are not JSON."""
    if kind == "objects":
        n = (size - 2 + 1) // 3
        body = b"[" + b",".join([b"{}"] * n) + b"]"
        return body + b" " * (size - len(body))
    if kind == "deep":
        return b"[" * (size // 2) + b"]" * (size - size // 2)
    if kind == "string":
        return b'"' + b"a" * (size - 2) + b'"'
    if kind == "binary":  # control characters and bytes that are not UTF-8: 6 or 3 bytes each as a string
        return (b"\x01\xff" * size)[:size]
    if kind == "mixed":  # the costliest text still admitted: a \u0001 every 6 bytes, 1.83x as a string
        return (b"abcde\x01" * size)[:size]
    if kind == "escapes":  # every ASCII byte, UTF-8, one invalid byte, and enough plain text around them
        return (bytes(range(128)) + "\u00e9\u20ac".encode() + b"\xff" + b"x" * size)[:max(size, 136)]
    return (b"plain words, " * (size // 13 + 1))[:size]


class MisbehavingUpstream:
    def __init__(self):
        self.port = None
        self.accepted = 0
        self.open = 0
        self.requests = 0
        self.hang_closed = 0
        self.targets = []
        self.hosts = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listener = None
        self._conns = set()
        self._threads = []

    # -- lifecycle --

    def start(self, port=0):
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((HOST, port))
        self._listener.listen(256)
        self._listener.settimeout(0.1)
        self.port = self._listener.getsockname()[1]
        self._spawn(self._accept_loop)
        return self

    def stop(self):
        self._stopping.set()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for t in self._threads:
            t.join(5)
        self._listener.close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        return False

    def counters(self):
        with self._lock:
            return {"accepted": self.accepted, "open": self.open, "requests": self.requests,
                    "hang_closed": self.hang_closed}

    def wait_for(self, predicate, timeout):
        """Polls predicate(counters) until it is true or timeout s pass; returns the last result."""
        deadline = time.monotonic() + timeout
        while True:
            ok = predicate(self.counters())
            if ok or time.monotonic() >= deadline:
                return ok
            time.sleep(0.01)

    def _spawn(self, fn, *args):
        t = threading.Thread(target=fn, args=args, daemon=True)
        self._threads.append(t)
        t.start()

    def _accept_loop(self):
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self.accepted += 1
                self.open += 1
                self._conns.add(conn)
            self._spawn(self._serve, conn)

    # -- one connection --

    def _serve(self, conn):
        buf = bytearray()
        state = {"drop_next": False}
        try:
            while not self._stopping.is_set():
                req = self._read_request(conn, buf)
                if req is None:
                    return
                if state["drop_next"]:
                    return  # closed without an answer
                if not self._answer(conn, buf, req, state):
                    return
        except OSError:
            return
        finally:
            with self._lock:
                self.open -= 1
                self._conns.discard(conn)
            try:
                conn.close()
            except OSError:
                pass

    def _read_request(self, conn, buf):
        """(target, headers) of the next request, or None at EOF. Bodies are read and dropped."""
        while b"\r\n\r\n" not in buf:
            if len(buf) > MAX_HEAD:
                return None
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buf += chunk
        end = buf.index(b"\r\n\r\n")
        lines = bytes(buf[:end]).decode("latin-1").split("\r\n")
        del buf[:end + 4]
        parts = lines[0].split(" ")
        target = parts[1] if len(parts) == 3 else ""
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0") or 0)
        while len(buf) < length:
            chunk = conn.recv(65536)
            if not chunk:
                return None
            buf += chunk
        del buf[:length]
        with self._lock:
            self.requests += 1
            self.targets.append(target)
            self.hosts.append(headers.get("host"))
        return target, headers

    @staticmethod
    def _send(conn, status, body, content_type="application/json", extra=b""):
        if isinstance(body, str):
            body = body.encode("utf-8")
        head = (f"HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
                .encode("latin-1") + extra + b"\r\n")
        conn.sendall(head + body)

    def _answer(self, conn, buf, req, state):
        """Answers one request; False when the connection must end now."""
        target, headers = req
        url = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(url.query))
        path = url.path if not target.startswith("//") else target
        if path == "/json":
            self._send(conn, 200, '{"ok":true}')
            return self._after(conn, buf, query, state)
        if path == "/text":
            self._send(conn, 200, "plain text, not JSON", "text/plain")
        elif path == "/binary":
            self._send(conn, 200, b"ab\xff\xfecd", "application/octet-stream")
        elif path == "/chunked":
            parts = [b'{"chunked":', b'true,"parts"', b":3}"]
            out = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
            out += b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
            conn.sendall(out)
        elif path == "/close":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                         b'{"closed":true}')
            return False
        elif path == "/deep":
            depth = int(query.get("depth", "900"))
            self._send(conn, 200, "[" * depth + "]" * depth)
        elif path == "/big":
            self._send(conn, 200, b"x" * int(query.get("bytes", "0")), "text/plain")
        elif path == "/hostile":
            self._send(conn, 200, hostile_body(query.get("kind", "objects"), int(query.get("bytes", "1048576"))))
        elif path == "/status":
            self._send(conn, int(query.get("code", "500")), '{"status":"as asked"}')
        elif path == "/slow":
            time.sleep(int(query.get("ms", "1000")) / 1000)
            self._send(conn, 200, '{"ok":true}')
        elif path == "/hang":
            self._hang(conn)
            return False
        elif path == "/reset":
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n0123456789")
            time.sleep(0.05)  # let the partial body leave before the reset
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        elif path == "/malformed":
            conn.sendall(b"HTTP/1.1 abc Broken\r\n\r\n")
            return False
        else:
            self._send(conn, 404, json.dumps({"target": target, "host": headers.get("host")}))
        return True

    def _after(self, conn, buf, query, state):
        then = query.get("then")
        if then == "drop_next":
            state["drop_next"] = True
        elif then == "idle_close" and not buf:
            r, _, _ = select.select([conn], [], [], int(query.get("ms", "50")) / 1000)
            if not r:
                return False  # idle for too long: close it, as an upstream's keep-alive timeout does
        return True

    def _hang(self, conn):
        """Never answer; wait for the client to close (or the test to stop us)."""
        while not self._stopping.is_set():
            r, _, _ = select.select([conn], [], [], 0.1)
            if not r:
                continue
            try:
                chunk = conn.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                with self._lock:
                    self.hang_closed += 1
                return


def main():
    up = MisbehavingUpstream().start(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    print(f"listening on http://{HOST}:{up.port}", flush=True)
    try:
        while True:
            time.sleep(1)
    except KeyboardInterrupt:
        pass
    finally:
        up.stop()


if __name__ == "__main__":
    main()
