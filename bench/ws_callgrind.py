#!/usr/bin/python3
"""bench/ws_callgrind.py: user-space instructions per echoed WebSocket message (GET /v1/ws/echo, 64-byte
text, the callback form unless --await) for apiary binaries under callgrind, on a machine too loaded for
CPU time: instruction counts do not move with the load. The kernel's share (TCP on loopback, most of the
CPU per message, see docs/benchmarks.md) is not in this figure; bench/ws_syscalls.sh counts its calls.

CONNS connections are upgraded and each echoes --warm messages (not counted), callgrind's counters are
zeroed, then every connection keeps one message in flight (its next one leaves when its echo is back,
as bench/ws_load.c does) until --messages echoes came back, and the counters are dumped. Also given, from
the profile, the inclusive cost of a few functions worth watching.

  ws_callgrind.py BIN [BIN...] [--conns 64] [--messages 20000] [--warm 20] [--await] [--keep DIR]
"""
import argparse
import selectors
import socket

import callgrind_run

WATCH = ["ws_pump", "wslay_event_recv", "wslay_event_send", "wslay_event_queue_msg", "ws_on_msg_cb",
         "ws_fast_read", "ws_echo_on_message", "ws_send", "event_base_loop", "epoll_dispatch", "malloc",
         "free", "__libc_recv", "__send"]

SIZE = 64
FRAME = bytes([0x81, 0x80 | SIZE, 0, 0, 0, 0]) + b"x" * SIZE  # masked with the zero key
ECHO = bytes([0x81, SIZE]) + b"x" * SIZE


class Clients:
    """CONNS upgraded connections to one server, opened on first use."""

    def __init__(self, port, conns, path):
        self.socks = []
        for _ in range(conns):
            s = socket.create_connection(("127.0.0.1", port), timeout=120)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = s.recv(4096)
                if not chunk:
                    raise SystemExit("the server closed during the upgrade")
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                raise SystemExit(f"not upgraded: {head[:60]!r}")
            s.setblocking(False)
            self.socks.append([s, b""])

    def echo(self, total):
        """Echoes `total` messages, one in flight per connection."""
        sel = selectors.DefaultSelector()
        for i, entry in enumerate(self.socks):
            sel.register(entry[0], selectors.EVENT_READ, i)
        sent = got = 0
        for entry in self.socks:
            if sent < total:
                entry[0].sendall(FRAME)
                sent += 1
        while got < total:
            for key, _ in sel.select(120):
                entry = self.socks[key.data]
                data = entry[0].recv(65536)
                if not data:
                    raise SystemExit("the server closed a connection")
                entry[1] += data
                while len(entry[1]) >= len(ECHO):
                    if entry[1][:len(ECHO)] != ECHO:
                        raise SystemExit(f"unexpected frame: {entry[1][:12]!r}")
                    entry[1] = entry[1][len(ECHO):]
                    got += 1
                    if sent < total:
                        entry[0].setblocking(True)
                        entry[0].sendall(FRAME)
                        entry[0].setblocking(False)
                        sent += 1
        sel.close()


def measure(binary, conns, messages, warm, path, keep):
    # Under callgrind on a busy machine the demonstration tables' creation at start-up can take more
    # than the default 2 s a statement (the start then fails): give it a minute.
    config = {"log_level": "warn", "websocket": {"ping_interval_ms": 0}, "sql": {"query_timeout_ms": 60000}}
    clients = {}

    def send(conn, n):  # callgrind_run calls it with its HTTP connection: only its port is used
        if conn.port not in clients:
            clients[conn.port] = Clients(conn.port, conns, path)
        clients[conn.port].echo(n)

    total, profile = callgrind_run.profile(binary, config, send, messages, warm * conns, keep)
    return total / messages, {name: callgrind_run.inclusive(profile, name) / messages for name in WATCH}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--conns", type=int, default=64)
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--warm", type=int, default=20, help="messages per connection before counting")
    ap.add_argument("--await", dest="await_", action="store_true", help="the coroutine form (?mode=await)")
    ap.add_argument("--keep", help="a directory for the profiles")
    args = ap.parse_args()
    path = "/v1/ws/echo" + ("?mode=await" if args.await_ else "")
    for binary in args.binaries:
        total, parts = measure(binary, args.conns, args.messages, args.warm, path, args.keep)
        print(f"RESULT {binary}: {path} conns={args.conns} Ir/msg={total:.0f} "
              + " ".join(f"{k}={v:.0f}" for k, v in parts.items() if v))


if __name__ == "__main__":
    main()
