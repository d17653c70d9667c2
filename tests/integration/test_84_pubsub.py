"""Pub/sub (docs/streaming.md "Pub/sub"): GET /v1/topics/{topic}/events and POST /v1/topics/{topic}.

- LocalPubSubTest (--threads 2, local backend): a message reaches every subscriber of its topic on
  both loops (16 subscribers, spread by SO_REUSEPORT), and only those of its topic; the published JSON
  arrives compact as the event's data, named after the topic; 413/422/400 refusals; the subscriber
  gauge falls when clients leave.
- SlowSubscriberTest: a subscriber that reads nothing is ended once its output is over
  limits.output_buffer_bytes and counted in apiary_pubsub_dropped_total{reason="slow"}, while a
  subscriber that reads gets every message.
- DisconnectMidDeliveryTest: subscribers reset their connections while messages are being delivered
  to them (the point of running this under ASan: no delivery into a freed stream).
- WsPubSubTest, WsSlowSubscriberTest, WsDisconnectMidDeliveryTest: the same through pub/sub's
  WebSocket adapter (GET /v1/topics/{topic}/ws, callback and coroutine forms): subscribers on both
  loops get every message once, as text when it is UTF-8 and binary otherwise; what a client sends is
  published; a subscriber that does not read is closed 1008 and counted once while a reading one gets
  everything; clients resetting while messages are delivered to them (ASan).
- WsFrameLengthTest, WsBroadcastMemoryTest: messages framed by apiary for idle connections in every
  length form; a broadcast to 2,000 idle WebSocket subscribers keeps RSS flat (no wslay context per
  connection; +17 MiB before).
- RedisPubSubTest: two apiary instances on one private redis-server: a subscriber on A receives what
  is published on B (and on A), over SSE and over WebSocket; Redis killed: publishing answers 503 at once, and after Redis is back
  on the same port the subscriber link re-subscribes by itself and messages flow again, to the same
  SSE subscriber; /readyz stays 200 throughout (pub/sub is not a readiness condition).

Every redis-server is started here (test_96_kv's RedisServer) and only its PID is signalled."""

import base64
import json
import os
import socket
import struct
import threading
import time
import unittest

from apiary_harness import ApiaryServer, ServerTestMixin, binary_is_sanitized, build_request, request, rss_kib
from test_83_streaming import ChunkReader, events_of, metric, parse_sse, read_head, wait_metric
from test_96_kv import RedisServer

JSON = {"Content-Type": "application/json"}


def publish(server, topic, value):
    with server.connect() as s:
        return request(s, "POST", f"/v1/topics/{topic}", JSON, json.dumps(value).encode())


class Subscriber:
    """One SSE subscription read on a thread of its own; `events` collects what arrived."""

    def __init__(self, server, topic, rcvbuf=None, read=True):
        self.sock = server.connect(rcvbuf=rcvbuf)
        self.sock.sendall(build_request("GET", f"/v1/topics/{topic}/events"))
        head, rest = read_head(self.sock)
        assert head.startswith("HTTP/1.1 200"), head
        self.reader = ChunkReader(self.sock, rest)
        self.text = ""
        self.lock = threading.Condition()
        self.closed = False
        # The first piece is the ": subscribed" comment: from then on, publishes reach us.
        first = self.reader.next_chunk().decode()
        assert "subscribed" in first, first
        self.thread = None
        self.sock.settimeout(None)  # idle for as long as the test likes; close() wakes the reader
        if read:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def _run(self):
        try:
            while not self.reader.done:
                piece = self.reader.next_chunk().decode()
                with self.lock:
                    self.text += piece
                    self.lock.notify_all()
        except (AssertionError, OSError):
            pass
        with self.lock:
            self.closed = True
            self.lock.notify_all()

    def events(self):
        with self.lock:
            return events_of(parse_sse(self.text))

    def wait_events(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(events_of(parse_sse(self.text))) < n and time.monotonic() < deadline:
                self.lock.wait(0.1)
            return events_of(parse_sse(self.text))

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        """Closes with RST (SO_LINGER 0): the abrupt end of a client."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


class LocalPubSubTest(ServerTestMixin, unittest.TestCase):
    THREADS = 2
    CONFIG = {"pubsub": {"max_message_bytes": 1024}}

    def setUp(self):
        self.subs = []

    def tearDown(self):
        for s in self.subs:
            s.close()

    def sub(self, topic, **kw):
        s = Subscriber(self.server, topic, **kw)
        self.subs.append(s)
        return s

    def test_every_subscriber_on_both_loops_gets_the_message_once(self):
        room = [self.sub("room.a") for _ in range(16)]
        other = self.sub("room.b")
        resp = publish(self.server, "room.a", {"text": "hello\nthere", "n": 1})
        self.assertEqual(resp.status, 202, resp.body)
        self.assertEqual(resp.json(), {"topic": "room.a", "bytes": len('{"text":"hello\\nthere","n":1}')})
        for s in room:
            events = s.wait_events(1)
            self.assertEqual(events, [{"event": "room.a", "data": '{"text":"hello\\nthere","n":1}'}])
        self.assertEqual(publish(self.server, "room.b", [1, 2]).status, 202)
        self.assertEqual(other.wait_events(1), [{"event": "room.b", "data": "[1,2]"}])
        time.sleep(0.2)
        for s in room:
            self.assertEqual(len(s.events()), 1, "a subscriber of room.a got room.b's message or a copy")

    def test_messages_arrive_in_order(self):
        s = self.sub("order")
        for i in range(50):
            self.assertEqual(publish(self.server, "order", i).status, 202)
        self.assertEqual([e["data"] for e in s.wait_events(50)], [str(i) for i in range(50)])

    def test_refusals(self):
        self.assertEqual(publish(self.server, "big", "x" * 2000).status, 413)
        with self.server.connect() as c:
            self.assertEqual(request(c, "POST", "/v1/topics/no%20spaces", JSON, b"1").status, 422)
            self.assertEqual(request(c, "POST", "/v1/topics/" + "t" * 129, JSON, b"1").status, 422)
            self.assertEqual(request(c, "POST", "/v1/topics/ok", JSON, b"{bad").status, 400)
            self.assertEqual(request(c, "GET", "/v1/topics/no%20spaces/events").status, 422)

    def test_subscriber_gauge_falls_when_clients_leave(self):
        with self.server.connect() as c:
            before = metric(c, "apiary_pubsub_subscribers")
        subs = [self.sub("gauge") for _ in range(5)]
        wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == before + 5)
        for s in subs:
            s.close()
        wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == before)


class SlowSubscriberTest(ServerTestMixin, unittest.TestCase):
    THREADS = 2
    # The bound is a subscriber's tolerance for a burst: 8 messages of 8 KB here. Messages are
    # published one at a time, so the reading subscriber is never more than one behind.
    CONFIG = {"limits": {"output_buffer_bytes": 65536}, "pubsub": {"max_message_bytes": 65536}}

    def test_a_subscriber_that_does_not_read_is_dropped_and_counted(self):
        fast = Subscriber(self.server, "flood")
        slow = Subscriber(self.server, "flood", rcvbuf=4096, read=False)
        try:
            with self.server.connect() as c:
                dropped0 = metric(c, "apiary_pubsub_dropped_total")
            payload = "y" * 8000
            sent = 0
            deadline = time.monotonic() + 60
            # The kernel's socket buffers take a few MB before apiary's own bound is reached.
            while time.monotonic() < deadline:
                for _ in range(20):
                    self.assertEqual(publish(self.server, "flood", payload).status, 202)
                    sent += 1
                with self.server.connect() as c:
                    if metric(c, "apiary_pubsub_dropped_total") > dropped0:
                        break
            else:
                self.fail(f"the slow subscriber was never dropped after {sent} messages")
            # The reader got every message, in full, however slow the other one was.
            events = fast.wait_events(sent, timeout=30)
            self.assertEqual(len(events), sent)
            self.assertTrue(all(e["data"] == json.dumps(payload) for e in events))
            # One subscription left (the fast one): the slow one's ended with its stream.
            wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == 1)
        finally:
            fast.close()
            slow.close()


class DisconnectMidDeliveryTest(ServerTestMixin, unittest.TestCase):
    THREADS = 2
    CONFIG = {"pubsub": {"max_message_bytes": 65536}}

    def test_clients_resetting_during_delivery(self):
        stop = threading.Event()
        published = [0]

        def flood():
            with self.server.connect() as c:
                while not stop.is_set():
                    resp = request(c, "POST", "/v1/topics/churn", JSON, json.dumps("z" * 8000).encode())
                    assert resp.status == 202, resp.status
                    published[0] += 1

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        try:
            for _ in range(10):
                subs = [Subscriber(self.server, "churn", read=False) for _ in range(20)]
                time.sleep(0.05)
                for s in subs:
                    s.reset()
        finally:
            stop.set()
            t.join(10)
        self.assertGreater(published[0], 0)
        wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == 0)
        # Still serving, and a new subscriber gets the next message.
        s = Subscriber(self.server, "churn")
        try:
            self.assertEqual(publish(self.server, "churn", "after").status, 202)
            self.assertEqual(s.wait_events(1)[-1]["data"], '"after"')
        finally:
            s.close()
        self.server.assert_no_sanitizer_report()


class WsSubscriber:
    """One WebSocket subscription (GET /v1/topics/{topic}/ws) on a raw socket, read on a thread of its
    own unless read=False: `messages` collects (opcode, payload) of every data message, `close` the
    server's close frame (code, reason) once it came. Only what these tests need of RFC 6455: our
    frames are masked and never fragmented; the server's are read whole (it does not fragment)."""

    def __init__(self, server, topic, mode="", rcvbuf=None, read=True):
        self.sock = server.connect(rcvbuf=rcvbuf)
        key = base64.b64encode(os.urandom(16)).decode()
        query = "?mode=await" if mode == "await" else ""
        self.sock.sendall((f"GET /v1/topics/{topic}/ws{query} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head, self.buf = read_head(self.sock)
        assert head.startswith("HTTP/1.1 101"), head
        self.messages = []
        self.close_frame = None
        self.lock = threading.Condition()
        self.sock.settimeout(None)
        self.thread = None
        if read:
            self.thread = threading.Thread(target=self._run, daemon=True)
            self.thread.start()

    def _exact(self, n):
        while len(self.buf) < n:
            more = self.sock.recv(65536)
            if not more:
                raise EOFError
            self.buf += more
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self):
        b0, b1 = self._exact(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._exact(8))[0]
        return b0 & 0x0F, self._exact(n)

    def _run(self):
        try:
            while True:
                opcode, payload = self.read_frame()
                with self.lock:
                    if opcode == 0x8:
                        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
                        self.close_frame = (code, payload[2:].decode())
                        self.lock.notify_all()
                        return
                    if opcode in (0x1, 0x2):
                        self.messages.append((opcode, payload))
                        self.lock.notify_all()
        except (EOFError, OSError, ValueError):
            pass
        with self.lock:
            self.lock.notify_all()

    def send(self, payload, opcode=0x1):
        data = payload.encode() if isinstance(payload, str) else payload
        n = len(data)
        head = bytes([0x80 | opcode])
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def wait_messages(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.messages) < n and time.monotonic() < deadline:
                self.lock.wait(0.1)
            return list(self.messages)

    def wait_close(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        with self.lock:
            while self.close_frame is None and time.monotonic() < deadline:
                self.lock.wait(0.1)
            return self.close_frame

    def close(self):
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass

    def reset(self):
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()


def subscribers_now(server):
    with server.connect() as c:
        return metric(c, "apiary_pubsub_subscribers")


class WsPubSubTest(ServerTestMixin, unittest.TestCase):
    """pub/sub's WebSocket adapter through GET /v1/topics/{topic}/ws, both of its forms (callbacks
    and ?mode=await: the connection's scope), on --threads 2."""

    THREADS = 2
    CONFIG = {"pubsub": {"max_message_bytes": 1024}}

    def setUp(self):
        self.subs = []
        # The previous test's clients are gone from the server too (their sockets were closed in its
        # tearDown, which the server sees a moment later): counts here start from nothing.
        wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == 0)

    def tearDown(self):
        for s in self.subs:
            s.close()

    def ws(self, topic, **kw):
        before = subscribers_now(self.server)
        s = WsSubscriber(self.server, topic, **kw)
        self.subs.append(s)
        # Subscribed once the gauge says so (callback form: on_open; coroutine form: its first turn).
        wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v >= before + 1)
        return s

    def test_ws_subscribers_on_both_loops_get_what_is_published_once(self):
        room = [self.ws("ws.room", mode="await" if i % 2 else "") for i in range(8)]
        other = self.ws("ws.other")
        sse = Subscriber(self.server, "ws.room")
        self.addCleanup(sse.close)
        resp = publish(self.server, "ws.room", {"text": "hello", "n": 1})
        self.assertEqual(resp.status, 202, resp.body)
        for s in room:
            self.assertEqual(s.wait_messages(1), [(0x1, b'{"text":"hello","n":1}')])
        self.assertEqual(sse.wait_events(1), [{"event": "ws.room", "data": '{"text":"hello","n":1}'}])
        for i in range(20):
            self.assertEqual(publish(self.server, "ws.room", i).status, 202)
        for s in room:
            self.assertEqual([p for _, p in s.wait_messages(21)][1:], [str(i).encode() for i in range(20)])
        time.sleep(0.2)
        self.assertEqual(other.messages, [], "a subscriber of another topic got the room's messages")
        for s in room:
            self.assertEqual(len(s.messages), 21, "a message arrived twice")

    def test_what_a_ws_client_sends_reaches_every_subscriber(self):
        a = self.ws("ws.talk")
        b = self.ws("ws.talk", mode="await")
        sse = Subscriber(self.server, "ws.talk")
        self.addCleanup(sse.close)
        a.send('{"from":"a"}')
        b.send('{"from":"b"}')
        for s in (a, b):  # the sender too: it is a subscriber like any other
            got = sorted(p for _, p in s.wait_messages(2))
            self.assertEqual(got, [b'{"from":"a"}', b'{"from":"b"}'])
        self.assertEqual(sorted(e["data"] for e in sse.wait_events(2)), ['{"from":"a"}', '{"from":"b"}'])

    def test_text_when_utf8_binary_otherwise(self):
        sub = self.ws("ws.bytes")
        pub = WsSubscriber(self.server, "ws.bytes", read=False)
        self.subs.append(pub)
        pub.send(b"\xff\xfe not UTF-8", opcode=0x2)
        pub.send("h\u00e9llo \u2603".encode(), opcode=0x2)  # binary frame, but valid UTF-8: goes as text
        got = sub.wait_messages(2)
        self.assertEqual(got, [(0x2, b"\xff\xfe not UTF-8"), (0x1, "h\u00e9llo \u2603".encode())])

    def test_refusals_close_the_connection(self):
        s = self.ws("ws.big")
        s.send("x" * 2000)  # over pubsub.max_message_bytes (1024)
        self.assertEqual(s.wait_close(), (1009, "the message is over pubsub.max_message_bytes"))
        with self.server.connect() as c:
            self.assertEqual(request(c, "GET", "/v1/topics/no%20spaces/ws").status, 422)
            self.assertEqual(request(c, "GET", "/v1/topics/fine/ws").status, 426)

    def test_subscriber_gauge_falls_when_ws_clients_leave(self):
        before = subscribers_now(self.server)  # 0: setUp waited for it
        subs = [self.ws("ws.gauge", mode="await" if i % 2 else "") for i in range(6)]
        wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == before + 6)
        subs[0].send(b"", opcode=0x8)  # a closing handshake, and abrupt ends for the others
        for s in subs:
            s.close()
        wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == before)
        self.server.assert_no_sanitizer_report()


class WsSlowSubscriberTest(ServerTestMixin, unittest.TestCase):
    THREADS = 2
    CONFIG = {"websocket": {"send_queue_bytes": 65536}, "pubsub": {"max_message_bytes": 65536}}

    def run_slow(self, mode):
        fast = WsSubscriber(self.server, "wsflood", mode=mode)
        slow = WsSubscriber(self.server, "wsflood", mode=mode, rcvbuf=4096, read=False)
        try:
            wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == 2)
            with self.server.connect() as c:
                dropped0 = metric(c, "apiary_pubsub_dropped_total")
                ws_slow0 = metric(c, "apiary_websocket_slow_consumers_closed_total")
            payload = "y" * 8000
            sent = 0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                for _ in range(20):
                    self.assertEqual(publish(self.server, "wsflood", payload).status, 202)
                    sent += 1
                with self.server.connect() as c:
                    if metric(c, "apiary_pubsub_dropped_total") > dropped0:
                        break
            else:
                self.fail(f"the slow WebSocket subscriber was never dropped after {sent} messages")
            msgs = fast.wait_messages(sent, timeout=30)
            self.assertEqual(len(msgs), sent)
            self.assertTrue(all(m == (0x1, json.dumps(payload).encode()) for m in msgs))
            wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == 1)
            with self.server.connect() as c:
                self.assertEqual(metric(c, "apiary_pubsub_dropped_total"), dropped0 + 1, "counted once")
                self.assertEqual(metric(c, "apiary_websocket_slow_consumers_closed_total"), ws_slow0 + 1)
            # What the slow one finally reads ends with the reason it was let go (if the server's
            # close_timeout_ms did not cut it first: then the connection just ends).
            slow.sock.settimeout(10)
            code = None
            try:
                while True:
                    opcode, payload_in = slow.read_frame()
                    if opcode == 0x8:
                        code = struct.unpack("!H", payload_in[:2])[0]
                        break
            except (EOFError, OSError):
                pass
            self.assertIn(code, (1008, None))
        finally:
            fast.close()
            slow.close()
        wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == 0)
        self.server.assert_no_sanitizer_report()

    def test_a_ws_subscriber_that_does_not_read_is_closed_1008_and_counted(self):
        self.run_slow("")

    def test_the_same_in_the_coroutine_form(self):
        self.run_slow("await")


class WsFrameLengthTest(ServerTestMixin, unittest.TestCase):
    THREADS = 2
    CONFIG = {"websocket": {"send_queue_bytes": 1048576}, "pubsub": {"max_message_bytes": 131072}}

    def test_every_frame_length_form(self):
        """Messages to idle connections are framed by apiary itself (no wslay context): the 7-bit,
        16-bit and 64-bit payload lengths, at their edges, arrive whole (both forms)."""
        subs = [WsSubscriber(self.server, "wssizes", mode=m) for m in ("", "await")]
        try:
            wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == 2)
            sizes = [2, 125, 126, 127, 65535, 65536, 100000]
            for n in sizes:
                self.assertEqual(publish(self.server, "wssizes", "q" * (n - 2)).status, 202)
            for s in subs:
                got = s.wait_messages(len(sizes))
                self.assertEqual([len(p) for _, p in got], sizes)
                self.assertTrue(all(p == b'"' + b"q" * (len(p) - 2) + b'"' for _, p in got))
        finally:
            for s in subs:
                s.close()
        wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == 0)


class WsBroadcastMemoryTest(ServerTestMixin, unittest.TestCase):
    """A broadcast to many idle WebSocket subscribers does not take a wslay context (~9.4 KiB) per
    connection: ws_send frames the message itself when the connection holds none. Before, all of
    them were alive at once during the loop turn that delivered to every subscriber, and the server
    kept the memory (2,000 subscribers: about +18 MiB of RSS; now a few MiB at most)."""

    THREADS = 2
    RAISE_NOFILE = True
    N = 2000
    CONFIG = {"max_connections": 4000}

    def test_broadcast_to_idle_ws_subscribers_keeps_rss_flat(self):
        key = base64.b64encode(os.urandom(16)).decode()
        req = (f"GET /v1/topics/wsmem/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        socks = []
        try:
            for _ in range(self.N):
                s = self.server.connect(timeout=10)
                s.sendall(req)
                socks.append(s)
            for s in socks:
                head, _ = read_head(s)
                self.assertTrue(head.startswith("HTTP/1.1 101"), head)
            wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == self.N, timeout=30)
            # Freed memory stays with the process, so measure from before the first broadcast.
            time.sleep(0.2)
            rss_before = rss_kib(self.server.proc.pid)
            for word in (b"one", b"two", b"three"):
                self.assertEqual(publish(self.server, "wsmem", word.decode()).status, 202)
                marker = b'"' + word + b'"'
                for s in socks:
                    got = b""
                    while marker not in got:
                        more = s.recv(65536)
                        self.assertTrue(more, "a subscriber was closed")
                        got += more
            grown = rss_kib(self.server.proc.pid) - rss_before
            if not binary_is_sanitized():  # ASan's quarantine keeps every freed buffer resident
                self.assertLess(grown, 6 * 1024, f"RSS grew by {grown} KiB over three broadcasts to {self.N}")
        finally:
            for s in socks:
                s.close()
        wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == 0, timeout=30)


class WsDisconnectMidDeliveryTest(ServerTestMixin, unittest.TestCase):
    THREADS = 2
    CONFIG = {"pubsub": {"max_message_bytes": 65536}, "websocket": {"send_queue_bytes": 65536}}

    def test_ws_clients_resetting_during_delivery(self):
        stop = threading.Event()
        published = [0]

        def flood():
            with self.server.connect() as c:
                while not stop.is_set():
                    resp = request(c, "POST", "/v1/topics/wschurn", JSON, json.dumps("z" * 8000).encode())
                    assert resp.status == 202, resp.status
                    published[0] += 1

        t = threading.Thread(target=flood, daemon=True)
        t.start()
        try:
            for round_ in range(10):
                subs = [WsSubscriber(self.server, "wschurn", mode="await" if (i + round_) % 2 else "",
                                     rcvbuf=4096 if i % 3 == 0 else None, read=False) for i in range(20)]
                time.sleep(0.05)
                for s in subs:
                    s.reset()
        finally:
            stop.set()
            t.join(10)
        self.assertGreater(published[0], 0)
        wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == 0)
        s = WsSubscriber(self.server, "wschurn")
        try:
            wait_metric(self.server, "apiary_pubsub_subscribers", lambda v: v == 1)
            self.assertEqual(publish(self.server, "wschurn", "after").status, 202)
            self.assertEqual(s.wait_messages(1)[-1], (0x1, b'"after"'))
        finally:
            s.close()
        self.server.assert_no_sanitizer_report()


class RedisPubSubTest(unittest.TestCase):
    def setUp(self):
        self.redis = RedisServer().start()
        self.addCleanup(lambda: self.redis.stop())

    def start_apiary(self, threads=2):
        cfg = {"pubsub": {"backend": "redis"},
               "redis": {"url": self.redis.url(), "connect_timeout_ms": 500}}
        server = ApiaryServer(cfg, threads=threads).start()
        self.addCleanup(server.stop)
        return server

    def publish_until_accepted(self, server, topic, value, within=15.0):
        deadline = time.monotonic() + within
        while True:
            resp = publish(server, topic, value)
            if resp.status == 202 or time.monotonic() > deadline:
                return resp
            self.assertEqual(resp.status, 503, resp.body)
            time.sleep(0.1)

    def wait_links_up(self, server, within=10.0):
        wait_metric(server, "apiary_pubsub_backend_links_up", lambda v: v == 2, timeout=within)

    def test_two_instances_see_each_others_messages(self):
        a, b = self.start_apiary(), self.start_apiary()
        self.wait_links_up(a)
        self.wait_links_up(b)
        sub_a = Subscriber(a, "chat.lobby")
        sub_b = Subscriber(b, "chat.lobby")
        try:
            self.assertEqual(publish(b, "chat.lobby", {"from": "b"}).status, 202)
            self.assertEqual(sub_a.wait_events(1), [{"event": "chat.lobby", "data": '{"from":"b"}'}])
            self.assertEqual(publish(a, "chat.lobby", {"from": "a"}).status, 202)
            # Each instance's own messages reach its subscribers through Redis, exactly once.
            self.assertEqual([e["data"] for e in sub_a.wait_events(2)], ['{"from":"b"}', '{"from":"a"}'])
            self.assertEqual([e["data"] for e in sub_b.wait_events(2)], ['{"from":"b"}', '{"from":"a"}'])
            time.sleep(0.3)
            self.assertEqual(len(sub_a.events()), 2)
        finally:
            sub_a.close()
            sub_b.close()
        a.assert_no_sanitizer_report()
        b.assert_no_sanitizer_report()

    def test_a_ws_subscriber_on_one_instance_gets_what_the_other_publishes(self):
        a, b = self.start_apiary(), self.start_apiary()
        self.wait_links_up(a)
        self.wait_links_up(b)
        ws_a = WsSubscriber(a, "chat.ws")
        ws_b = WsSubscriber(b, "chat.ws", mode="await")
        try:
            wait_metric(a, "apiary_pubsub_subscribers", lambda v: v == 1)
            wait_metric(b, "apiary_pubsub_subscribers", lambda v: v == 1)
            ws_b.send('{"from":"b"}')  # published by B's WebSocket route, through Redis
            self.assertEqual(ws_a.wait_messages(1), [(0x1, b'{"from":"b"}')])
            self.assertEqual(ws_b.wait_messages(1), [(0x1, b'{"from":"b"}')])
        finally:
            ws_a.close()
            ws_b.close()
        a.assert_no_sanitizer_report()
        b.assert_no_sanitizer_report()

    def test_redis_goes_away_and_comes_back(self):
        a, b = self.start_apiary(), self.start_apiary()
        self.wait_links_up(a)
        self.wait_links_up(b)
        sub = Subscriber(a, "news")
        try:
            self.assertEqual(publish(b, "news", 1).status, 202)
            self.assertEqual(len(sub.wait_events(1)), 1)
            self.redis.kill()
            wait_metric(b, "apiary_pubsub_backend_links_up", lambda v: v == 0)
            started = time.monotonic()
            resp = publish(b, "news", 2)
            self.assertEqual(resp.status, 503, resp.body)
            self.assertEqual(resp.headers.get("Retry-After"), "1")
            self.assertLess(time.monotonic() - started, 1.0, "a publish waited for a dead Redis")
            with a.connect() as c:
                self.assertEqual(request(c, "GET", "/readyz").status, 200)
            self.redis.stop()
            self.redis = RedisServer(self.redis.port).start()  # same port
            self.wait_links_up(a, within=15)
            self.wait_links_up(b, within=15)
            self.assertEqual(self.publish_until_accepted(b, "news", 3).status, 202)
            # The same SSE stream, re-subscribed underneath by the relay link.
            self.assertEqual([e["data"] for e in sub.wait_events(2)], ["1", "3"])
            with a.connect() as c:
                self.assertGreaterEqual(metric(c, "apiary_pubsub_backend_reconnects_total"), 2)
        finally:
            sub.close()
        a.assert_no_sanitizer_report()

    def test_redis_down_at_start(self):
        self.redis.kill()
        a = self.start_apiary()
        with a.connect() as c:
            self.assertEqual(request(c, "GET", "/readyz").status, 200)
            self.assertEqual(request(c, "POST", "/v1/topics/x", JSON, b"1").status, 503)
        self.redis.stop()
        self.redis = RedisServer(self.redis.port).start()
        self.wait_links_up(a, within=15)
        sub = Subscriber(a, "x")
        try:
            self.assertEqual(self.publish_until_accepted(a, "x", 7).status, 202)
            self.assertEqual([e["data"] for e in sub.wait_events(1)], ["7"])
        finally:
            sub.close()


if __name__ == "__main__":
    unittest.main()
