"""WebSocket (RFC 6455) on GET /v1/ws/echo: the handshake and its refusals, text and binary echo (the
callback form and the coroutine form, ?mode=await), fragmentation, ping/pong and the dead-peer timeout,
close codes 1002/1007/1009, a slow reader closed 1008 and counted, 1,000 concurrent clients, SIGTERM
closing 1001, and HttpArena's echo-ws checks (its scripts/validate-ws.py: upgrade with the right accept
key, text echo, binary echo, bursts in order), written here as our own test. Clients are
python3-websockets' and, for frames a library would refuse to send, a raw socket."""

import asyncio
import base64
import hashlib
import os
import socket
import struct
import time
import unittest

import websockets
from websockets.exceptions import ConnectionClosed

from apiary_harness import ApiaryAssertions, ApiaryServer, raise_nofile_limit, read_response, request

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def run(coro, timeout=60):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def url(server, query=""):
    host, port = server.address
    return f"ws://{host}:{port}/v1/ws/echo{query}"


# ---- a raw client: frames a library would never send -------------------------------------------------


def frame(opcode, payload=b"", fin=True, mask=True, rsv=0):
    head = bytes([(0x80 if fin else 0) | (rsv << 4) | opcode])
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def upgrade_request(key=None, extra=None, version="13", path="/v1/ws/echo"):
    key = key or base64.b64encode(os.urandom(16)).decode()
    lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Upgrade: websocket", "Connection: Upgrade",
             f"Sec-WebSocket-Key: {key}", f"Sec-WebSocket-Version: {version}"]
    lines += extra or []
    return ("\r\n".join(lines) + "\r\n\r\n").encode(), key


class RawWs:
    def __init__(self, server, first_frames=b""):
        self.sock = server.connect(timeout=10)
        req, key = upgrade_request()
        self.sock.sendall(req + first_frames)
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        self.head = head.decode("latin-1")
        expected = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        assert self.head.startswith("HTTP/1.1 101 "), self.head
        assert f"Sec-WebSocket-Accept: {expected}" in self.head, self.head

    def _until(self, marker):
        while marker not in self.buf:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def _exact(self, n):
        while len(self.buf) < n:
            data = self.sock.recv(65536)
            if not data:
                raise EOFError(self.buf)
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, data):
        self.sock.sendall(data)

    def read_frame(self):
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._exact(8))[0]
        assert not b1 & 0x80, "a server frame must not be masked"
        return b0 & 0x0F, bool(b0 & 0x80), self._exact(n)

    def read_close(self):
        """The close frame's (code, reason), skipping data frames before it."""
        while True:
            op, _fin, payload = self.read_frame()
            if op == 8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return code, payload[2:].decode()

    def closed_after(self, timeout=5):
        self.sock.settimeout(timeout)
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.sock.close()


class WebSocketTest(ApiaryAssertions, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        raise_nofile_limit()
        cls.server = ApiaryServer({"websocket": {"max_message_bytes": 65536}}, threads=2)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        cls.server.assert_no_sanitizer_report()

    # ---- the handshake ----

    def test_accept_key_and_subprotocol(self):
        sock = self.server.connect()
        req, key = upgrade_request(extra=["Sec-WebSocket-Protocol: chat, echo"])
        sock.sendall(req)
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        text = head.decode("latin-1")
        self.assertTrue(text.startswith("HTTP/1.1 101 Switching Protocols\r\n"), text)
        expected = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
        self.assertIn(f"Sec-WebSocket-Accept: {expected}\r\n", text)
        self.assertIn("Sec-WebSocket-Protocol: echo\r\n", text)
        self.assertNotIn("Content-Length", text)
        sock.close()

    def test_plain_get_is_426(self):
        with self.server.connect() as sock:
            resp = request(sock, "GET", "/v1/ws/echo")
            self.assertEqual(resp.status, 426)
            self.assertEqual(resp.headers.get("Content-Type"), "application/problem+json")
            self.assertEqual(resp.headers.get("Sec-WebSocket-Version"), "13")
            # The connection serves on: a refusal is an ordinary answer.
            self.assertEqual(request(sock, "GET", "/v1/hello").status, 200)

    def test_wrong_version_is_426_naming_13(self):
        with self.server.connect() as sock:
            req, _ = upgrade_request(version="8")
            sock.sendall(req)
            resp = read_response(sock)
            self.assertEqual(resp.status, 426)
            self.assertEqual(resp.headers.get("Sec-WebSocket-Version"), "13")

    def test_bad_key_is_400(self):
        for key in ("short", base64.b64encode(os.urandom(15)).decode() + "=", ""):
            with self.subTest(key=key), self.server.connect() as sock:
                req, _ = upgrade_request(key=key or " ")
                sock.sendall(req)
                self.assertEqual(read_response(sock).status, 400)

    def test_post_upgrade_is_405(self):
        with self.server.connect() as sock:
            self.assertEqual(request(sock, "POST", "/v1/ws/echo", body=b"").status, 405)

    # ---- messages ----

    def test_echo_text_and_binary_both_forms(self):
        async def go(query):
            async with websockets.connect(url(self.server, query)) as ws:
                for msg in ("hello", "héllo ✓", "", "x" * 70000 if False else "y" * 5000):
                    await ws.send(msg)
                    self.assertEqual(await ws.recv(), msg)
                for msg in (b"\x00\x01\xff", b"", os.urandom(60000)):
                    await ws.send(msg)
                    self.assertEqual(await ws.recv(), msg)
        for query in ("", "?mode=await"):
            with self.subTest(query=query):
                run(go(query))

    def test_fragmented_message_is_reassembled(self):
        async def go(query):
            async with websockets.connect(url(self.server, query)) as ws:
                await ws.send(iter(["frag", "men", "ted"]))
                self.assertEqual(await ws.recv(), "fragmented")
                await ws.send(iter([b"\x01", b"\x02" * 1000, b"\x03"]))
                self.assertEqual(await ws.recv(), b"\x01" + b"\x02" * 1000 + b"\x03")
        for query in ("", "?mode=await"):
            with self.subTest(query=query):
                run(go(query))

    def test_ping_interleaved_in_a_fragmented_message(self):
        ws = RawWs(self.server)
        ws.send(frame(1, b"ab", fin=False) + frame(9, b"p1") + frame(0, b"cd", fin=True))
        self.assertEqual(ws.read_frame(), (0xA, True, b"p1"))
        self.assertEqual(ws.read_frame(), (1, True, b"abcd"))
        ws.close()

    def test_frames_sent_with_the_upgrade_request(self):
        ws = RawWs(self.server, first_frames=frame(1, b"early") + frame(2, b"bird"))
        self.assertEqual(ws.read_frame(), (1, True, b"early"))
        self.assertEqual(ws.read_frame(), (2, True, b"bird"))
        ws.close()

    def test_ping_pong(self):
        async def go():
            async with websockets.connect(url(self.server)) as ws:
                pong = await ws.ping(b"are you there")
                await asyncio.wait_for(pong, 5)
        run(go())

    def test_closing_handshake_echoes_code(self):
        async def go():
            ws = await websockets.connect(url(self.server))
            await ws.close(4001, "bye")
            self.assertEqual(ws.close_code, 4001)
            self.assertEqual(ws.close_reason, "bye")
        run(go())

    def test_coroutine_form_closes_when_peer_closes(self):
        async def go():
            ws = await websockets.connect(url(self.server, "?mode=await"))
            await ws.send("x")
            self.assertEqual(await ws.recv(), "x")
            await ws.close(1000)
            self.assertEqual(ws.close_code, 1000)
        run(go())

    # ---- the fast path (whole data frames read without wslay) and its hand-overs to wslay ----

    def test_frames_trickled_byte_by_byte_are_echoed_in_order(self):
        # Partial heads, masks and payloads wait in the input buffer for the next read.
        ws = RawWs(self.server)
        ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = frame(1, b"seven-bit") + frame(2, b"\x00" * 300) + frame(1, "ünïcode".encode())
        for i in range(len(data)):
            ws.send(data[i:i + 1])
            if i % 50 == 0:
                time.sleep(0.002)  # some reads see one byte
        self.assertEqual(ws.read_frame(), (1, True, b"seven-bit"))
        self.assertEqual(ws.read_frame(), (2, True, b"\x00" * 300))
        self.assertEqual(ws.read_frame(), (1, True, "ünïcode".encode()))
        ws.close()

    def test_control_frames_between_data_frames_keep_the_order(self):
        # Data, a ping (wslay's), data again, in one write: the echoes in order and the pong (a control
        # frame may come between data frames, RFC 6455 5.4), then back on the fast path.
        ws = RawWs(self.server)
        ws.send(frame(1, b"a") + frame(9, b"p") + frame(1, b"b") + frame(2, b"c"))
        got = [ws.read_frame() for _ in range(4)]
        self.assertIn((0xA, True, b"p"), got)
        self.assertEqual([f for f in got if f[0] != 0xA], [(1, True, b"a"), (1, True, b"b"), (2, True, b"c")])
        ws.send(frame(1, b"d"))
        self.assertEqual(ws.read_frame(), (1, True, b"d"))
        ws.close()

    def test_frames_around_the_input_block_size(self):
        # 8,184 bytes of payload fill an 8 KiB input block with their head; one more goes to wslay.
        for n in (8183, 8184, 8185, 9000):
            with self.subTest(n=n):
                ws = RawWs(self.server)
                payload = bytes(i % 251 for i in range(n))
                ws.send(frame(2, payload) + frame(1, b"next"))
                self.assertEqual(ws.read_frame(), (2, True, payload))
                self.assertEqual(ws.read_frame(), (1, True, b"next"))
                ws.close()

    def test_a_16_bit_length_that_fits_7_bits_is_1002(self):
        ws = RawWs(self.server)
        ws.send(bytes([0x81, 0x80 | 126]) + struct.pack("!H", 5) + b"\0\0\0\0" + b"short")
        self.assertEqual(ws.read_close()[0], 1002)
        ws.close()

    def test_the_message_bound_holds_for_small_frames(self):
        with ApiaryServer({"websocket": {"max_message_bytes": 1000}}, threads=1) as server:
            ws = RawWs(server)
            ws.send(frame(1, b"m" * 1000))
            self.assertEqual(ws.read_frame(), (1, True, b"m" * 1000))
            ws.send(frame(1, b"m" * 1001))
            self.assertEqual(ws.read_close()[0], 1009)
            ws.close()

    # ---- errors ----

    def test_unmasked_frame_is_1002(self):
        ws = RawWs(self.server)
        ws.send(frame(1, b"no mask", mask=False))
        self.assertEqual(ws.read_close()[0], 1002)
        self.assertTrue(ws.closed_after())
        ws.close()

    def test_reserved_opcode_and_bits_are_1002(self):
        for data in (frame(3, b"?"), frame(1, b"x", rsv=4), frame(9, b"p" * 126), frame(9, b"", fin=False),
                     frame(0, b"orphan continuation")):
            with self.subTest(data=data[:2]):
                ws = RawWs(self.server)
                ws.send(data)
                self.assertEqual(ws.read_close()[0], 1002)
                ws.close()

    def test_invalid_utf8_text_is_1007(self):
        for payload in (b"\xff\xfe", b"\xed\xa0\x80", b"\xc0\xaf", b"ok \xe2\x82"):
            with self.subTest(payload=payload):
                ws = RawWs(self.server)
                ws.send(frame(1, payload))
                self.assertEqual(ws.read_close()[0], 1007)
                self.assertTrue(ws.closed_after())
                ws.close()

    def test_message_too_big_is_1009(self):
        async def go():
            async with websockets.connect(url(self.server), max_size=None) as ws:
                await ws.send(b"z" * 70000)  # max_message_bytes is 65536 here
                with self.assertRaises(ConnectionClosed):
                    await ws.recv()
                self.assertEqual(ws.close_code, 1009)
        run(go())

    def test_fragments_adding_up_past_the_limit_are_1009(self):
        ws = RawWs(self.server)
        ws.send(frame(2, b"f" * 16000, fin=False))
        for _ in range(4):
            ws.send(frame(0, b"f" * 16000, fin=False))
        ws.send(frame(0, b"f" * 16000, fin=True))
        self.assertEqual(ws.read_close()[0], 1009)
        ws.close()

    def test_peer_vanishing_leaves_the_server_serving(self):
        ws = RawWs(self.server)
        ws.send(frame(1, b"half")[:4])
        ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        ws.close()  # a reset mid-frame
        async def go():
            async with websockets.connect(url(self.server)) as c:
                await c.send("still here")
                self.assertEqual(await c.recv(), "still here")
        run(go())

    # ---- HttpArena's echo-ws checks, as our own test ----

    def test_httparena_echo_ws(self):
        async def go():
            async with websockets.connect(url(self.server)) as ws:
                await ws.send("Hello, WebSocket!")
                self.assertEqual(await ws.recv(), "Hello, WebSocket!")
                payload = bytes(range(256))
                await ws.send(payload)
                self.assertEqual(await ws.recv(), payload)
                burst = [f"msg-{i}" for i in range(100)]
                for m in burst:
                    await ws.send(m)
                self.assertEqual([await ws.recv() for _ in burst], burst)
        run(go())

    # ---- many clients ----

    def test_thousand_concurrent_clients(self):
        async def one(i):
            async with websockets.connect(url(self.server, "" if i % 2 else "?mode=await"),
                                          open_timeout=30) as ws:
                for j in range(3):
                    await ws.send(f"{i}:{j}")
                    self.assertEqual(await ws.recv(), f"{i}:{j}")
                return True

        async def go():
            sem = asyncio.Semaphore(200)  # open them at a pace the backlog takes, then all are open at once

            opened = []
            release = asyncio.Event()

            async def held(i):
                async with sem:
                    ws = await websockets.connect(url(self.server, "" if i % 2 else "?mode=await"),
                                                  open_timeout=30)
                opened.append(ws)
                await release.wait()
                await ws.send(f"m{i}")
                self.assertEqual(await ws.recv(), f"m{i}")
                await ws.close()

            tasks = [asyncio.create_task(held(i)) for i in range(1000)]
            while len(opened) < 1000:
                await asyncio.sleep(0.05)
                for t in tasks:
                    if t.done() and t.exception():
                        raise t.exception()
            text = await asyncio.to_thread(self.metrics_text)
            self.assertGreaterEqual(self.metric(text, "apiary_websocket_connections_open"), 1000)
            release.set()
            await asyncio.gather(*tasks)
        run(go(), timeout=180)

    def metrics_text(self):
        with self.server.connect() as sock:
            return request(sock, "GET", "/metrics").body.decode()

    @staticmethod
    def metric(text, name):
        for line in text.splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        raise AssertionError(f"{name} not in /metrics")


class WebSocketLimitsTest(ApiaryAssertions, unittest.TestCase):
    """Each test starts its own server: heartbeats, slow readers and SIGTERM change its state."""

    def test_slow_reader_is_closed_1008_and_counted(self):
        config = {"websocket": {"send_queue_bytes": 65536, "close_timeout_ms": 3000}}
        with ApiaryServer(config, threads=1) as server:
            sock = server.connect(timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            req, _ = upgrade_request()
            sock.sendall(req)
            head = b""
            while b"\r\n\r\n" not in head:
                head += sock.recv(1)
            # Send echoes of 16 KiB and never read: the kernel buffers fill, then the server's queue.
            msg = frame(2, b"s" * 16384)
            sock.settimeout(0.2)
            sent = 0
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    sock.sendall(msg)
                    sent += 1
                except (socket.timeout, BrokenPipeError, ConnectionResetError):
                    break
                if sent > 2000:
                    break
            # Now read: echoes, then the close 1008 (the queue's bound kept it to a few of them).
            sock.settimeout(10)
            raw = RawWs.__new__(RawWs)
            raw.sock, raw.buf = sock, b""
            try:
                code, reason = raw.read_close()
            except (EOFError, ConnectionResetError) as e:
                self.fail(f"no close frame before the end ({e!r}); log:\n{server.log_text()}")
            self.assertEqual(code, 1008, reason)
            with server.connect() as s2:
                text = request(s2, "GET", "/metrics").body.decode()
            self.assertIn("apiary_websocket_slow_consumers_closed_total 1", text)
            sock.close()

    def test_coroutine_form_waits_for_a_slow_reader_instead(self):
        # ?mode=await awaits ws_drain after each send: the slow reader slows it down, nothing is closed.
        config = {"websocket": {"send_queue_bytes": 65536}}
        with ApiaryServer(config, threads=1) as server:
            async def go():
                async with websockets.connect(url(server, "?mode=await"), max_queue=1) as ws:
                    for i in range(200):
                        await ws.send(b"q" * 16384)
                    await asyncio.sleep(1)
                    for i in range(200):
                        self.assertEqual(len(await ws.recv()), 16384)
            run(go())

    def test_a_frame_wslay_refuses_closes_only_its_own_connection(self):
        # wslay answers a reserved opcode with a 1002 close of its own. That connection is closing: its
        # wslay context (kept in a per-loop pool between frames) must not go back to the pool, where
        # the next connection to take one (for a ping here) was shut right after; and, heartbeat off,
        # the close timeout still ends it when its peer stays silent.
        config = {"websocket": {"ping_interval_ms": 0, "close_timeout_ms": 300}}
        with ApiaryServer(config, threads=1) as server:
            bad = RawWs(server)
            bad.send(frame(3, b"?"))
            self.assertEqual(bad.read_close()[0], 1002)
            started = time.monotonic()
            good = RawWs(server)  # same loop: one thread
            good.send(frame(9, b"p") + frame(1, b"after"))
            self.assertEqual(good.read_frame(), (0xA, True, b"p"))
            self.assertEqual(good.read_frame(), (1, True, b"after"))
            good.close()
            self.assertTrue(bad.closed_after(timeout=10))
            self.assertLess(time.monotonic() - started, 8)
            bad.close()

    def test_dead_peer_is_closed_after_the_ping_timeout(self):
        config = {"websocket": {"ping_interval_ms": 300, "ping_timeout_ms": 300}}
        with ApiaryServer(config, threads=1) as server:
            ws = RawWs(server)
            # Read the pings but never answer: closed within interval + timeout (generous margin).
            started = time.monotonic()
            op, _fin, _p = ws.read_frame()
            self.assertEqual(op, 9)
            self.assertTrue(ws.closed_after(timeout=10))
            self.assertLess(time.monotonic() - started, 8)
            ws.close()

    def test_live_peer_answering_pings_stays(self):
        config = {"websocket": {"ping_interval_ms": 200, "ping_timeout_ms": 300}}
        with ApiaryServer(config, threads=1) as server:
            async def go():
                async with websockets.connect(url(server), ping_interval=None) as ws:
                    await asyncio.sleep(1.5)  # the library answers the server's pings
                    await ws.send("alive")
                    self.assertEqual(await ws.recv(), "alive")
            run(go())

    def test_websockets_count_against_max_connections(self):
        # An upgraded connection is never idle: at the cap a new client gets 503, not a WebSocket's place.
        with ApiaryServer({"max_connections": 4}, threads=1) as server:
            socks = [RawWs(server) for _ in range(4)]
            with server.connect() as extra:
                resp = request(extra, "GET", "/v1/hello")
                self.assertEqual(resp.status, 503)
                self.assertIn("Retry-After", resp.headers)
            socks[0].send(frame(8, struct.pack("!H", 1000)))
            self.assertEqual(socks[0].read_close()[0], 1000)
            self.assertTrue(socks[0].closed_after())
            deadline = time.monotonic() + 5
            while True:  # the closed one's place is free again
                with server.connect() as again:
                    status = request(again, "GET", "/v1/hello").status
                if status == 200 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
            self.assertEqual(status, 200)
            for ws in socks:
                ws.close()

    def test_sigterm_closes_websockets_1001(self):
        with ApiaryServer({"drain_timeout_ms": 10000}, threads=2) as server:
            async def go():
                clients = [await websockets.connect(url(server, "" if i % 2 else "?mode=await"))
                           for i in range(20)]
                for c in clients:
                    await c.send("before")
                    self.assertEqual(await c.recv(), "before")
                started = time.monotonic()
                server.sigterm()
                for c in clients:
                    with self.assertRaises(ConnectionClosed):
                        await asyncio.wait_for(c.recv(), 10)
                    await c.wait_closed()
                    self.assertEqual(c.close_code, 1001)
                return time.monotonic() - started
            took = run(go())
            self.assertLess(took, 8)
            rc = server.wait(10)
            self.assertEqual(rc, 0, server.log_text())


if __name__ == "__main__":
    unittest.main()
