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
- RedisPubSubTest: two apiary instances on one private redis-server: a subscriber on A receives what
  is published on B (and on A); Redis killed: publishing answers 503 at once, and after Redis is back
  on the same port the subscriber link re-subscribes by itself and messages flow again, to the same
  SSE subscriber; /readyz stays 200 throughout (pub/sub is not a readiness condition).

Every redis-server is started here (test_96_kv's RedisServer) and only its PID is signalled."""

import json
import socket
import struct
import threading
import time
import unittest

from apiary_harness import ApiaryServer, ServerTestMixin, build_request, request
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
