"""Streaming (docs/streaming.md, issue 24 parts 1-3) against the real binary:

- streamed answers (GET /v1/stream): chunked on HTTP/1.1 with keep-alive after the last chunk,
  close-delimited on HTTP/1.0, HEAD, pipelined requests answered after the stream, a reader that
  stops reading holding the server's memory to the output bound, a client that leaves cancelling
  the producer, SIGTERM ending a stream with its last chunk;
- Server-Sent Events (GET /v1/events): headers, event/id/data with multi-line data, retry, the
  heartbeat comment, Last-Event-ID, and events arriving one by one through a private nginx that
  buffers by default (X-Accel-Buffering: no turns that off);
- streamed uploads (POST /v1/upload): 0 B, 1 B, 500 KiB, 20 MiB with Content-Length and chunked, the
  route's 413, 100-continue, a client dying mid-body, the body deadline, RSS flat during 20 MiB.

Time is asserted only with generous margins (a loaded 2-core machine); memory by RSS deltas far below
what an unbounded buffer would take."""

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

from apiary_harness import (HOST, ApiaryServer, ServerTestMixin, _die_with_parent, build_request,
                            read_response, request, rss_kib)

UPLOAD_LIMIT = 64 * 1024 * 1024  # upload_schema.max_body_bytes in handlers/stream.c


def metric(sock, name):
    resp = request(sock, "GET", "/metrics")
    for line in resp.body.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"no metric {name}")


def wait_metric(server, name, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    value = None
    while time.monotonic() < deadline:
        with server.connect() as s:
            value = metric(s, name)
        if pred(value):
            return value
        time.sleep(0.05)
    raise AssertionError(f"{name} stayed at {value}")


def read_head(sock, timeout=10.0):
    """Reads a response head only; returns (head text, bytes read past it)."""
    sock.settimeout(timeout)
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        if not more:
            raise AssertionError(f"closed before the head: {data!r}")
        data += more
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), rest


class ChunkReader:
    """De-chunks a body incrementally from a socket, returning pieces as they arrive."""

    def __init__(self, sock, buf=b""):
        self.sock = sock
        self.buf = buf
        self.done = False

    def _more(self):
        data = self.sock.recv(65536)
        if not data:
            raise AssertionError("connection closed inside a chunked body")
        self.buf += data

    def next_chunk(self):
        while b"\r\n" not in self.buf:
            self._more()
        line, _, rest = self.buf.partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        while len(rest) < size + 2:
            self._more()
            line, _, rest = self.buf.partition(b"\r\n")
        if rest[size:size + 2] != b"\r\n":
            raise AssertionError("chunk not followed by CRLF")
        self.buf = rest[size + 2:]
        if size == 0:
            self.done = True  # "0\r\n\r\n": apiary sends no trailers
        return rest[:size]


def parse_sse(text):
    """Splits an event stream into blocks: a list of (fields, comments) where fields is a list of
    (name, value) in order."""
    blocks = []
    for block in text.split("\n\n"):
        if not block:
            continue
        fields, comments = [], []
        for line in block.split("\n"):
            if line.startswith(":"):
                comments.append(line[1:].strip())
                continue
            name, _, value = line.partition(":")
            fields.append((name, value[1:] if value.startswith(" ") else value))
        blocks.append((fields, comments))
    return blocks


def events_of(blocks):
    """The dispatched events: dicts with event, id and data (data lines joined with LF)."""
    out = []
    for fields, _ in blocks:
        data = [v for n, v in fields if n == "data"]
        if not data:
            continue
        ev = {"data": "\n".join(data)}
        for n, v in fields:
            if n in ("event", "id"):
                ev[n] = v
        out.append(ev)
    return out


class StreamedResponseTest(ServerTestMixin, unittest.TestCase):
    CONFIG = {"limits": {"output_buffer_bytes": 65536}}

    def test_chunked_on_http11_then_keep_alive(self):
        with self.server.connect() as s:
            resp = request(s, "GET", "/v1/stream?chunks=5&bytes=10")
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.headers.get("Transfer-Encoding"), "chunked")
            self.assertNotIn("Content-Length", resp.headers)
            self.assertEqual(resp.body, b"abcdefghi\n" * 5)
            self.assertEqual(request(s, "GET", "/v1/hello").status, 200, "keep-alive after the last chunk")

    def test_each_write_is_one_chunk(self):
        with self.server.connect() as s:
            s.sendall(build_request("GET", "/v1/stream?chunks=3&bytes=4"))
            head, rest = read_head(s)
            reader = ChunkReader(s, rest)
            self.assertEqual([reader.next_chunk() for _ in range(4)], [b"abc\n"] * 3 + [b""])

    def test_close_delimited_on_http10(self):
        with self.server.connect() as s:
            resp = request(s, "GET", "/v1/stream?chunks=4&bytes=8", version="HTTP/1.0")
            self.assertEqual(resp.status, 200)
            self.assertNotIn("Transfer-Encoding", resp.headers)
            self.assertNotIn("Content-Length", resp.headers)
            self.assertIn("close", resp.connection_tokens())
            self.assertEqual(resp.body, b"abcdefg\n" * 4)

    def test_head_gets_the_head_only(self):
        with self.server.connect() as s:
            s.sendall(build_request("HEAD", "/v1/stream?chunks=4&bytes=8"))
            resp = read_response(s, head_request=True)
            self.assertEqual(resp.status, 200)
            self.assertEqual(request(s, "GET", "/v1/hello").status, 200)

    def test_pipelined_requests_wait_for_the_stream(self):
        with self.server.connect() as s:
            s.sendall(build_request("GET", "/v1/stream?chunks=50&bytes=1000") + build_request("GET", "/v1/hello")
                      + build_request("GET", "/v1/stream?chunks=2&bytes=3"))
            first = read_response(s)
            self.assertEqual(len(first.body), 50 * 1000)
            self.assertEqual(read_response(s).json(), {"message": "Hello, World!"})
            self.assertEqual(read_response(s).body, b"ab\nab\n")

    def test_query_is_validated(self):
        with self.server.connect() as s:
            self.assertEqual(request(s, "GET", "/v1/stream?bytes=0").status, 422)

    def test_slow_reader_holds_memory_to_the_bound(self):
        """256 MiB offered to a client that reads nothing for a while: the producer must be suspended
        at the output bound (64 KiB) instead of queueing; RSS grows by far less than the offer."""
        pid = self.server.proc.pid
        before = rss_kib(pid)
        s = self.server.connect(rcvbuf=4096)
        try:
            s.sendall(build_request("GET", "/v1/stream?chunks=4096&bytes=65536"))
            time.sleep(1.5)  # the server fills the socket buffers and its bound, then waits
            grown_mib = (rss_kib(pid) - before) / 1024
            self.assertLess(grown_mib, 32, f"RSS grew {grown_mib:.1f} MiB behind a client that reads nothing")
            # now read some of it slowly: the stream goes on, a piece at a time
            got = 0
            s.settimeout(10)
            while got < 4 * 1024 * 1024:
                data = s.recv(65536)
                self.assertTrue(data)
                got += len(data)
            grown_mib = (rss_kib(pid) - before) / 1024
            self.assertLess(grown_mib, 32)
        finally:
            s.close()

    def test_client_leaving_cancels_the_producer(self):
        with self.server.connect() as m:
            cancelled = metric(m, "apiary_http_cancelled_total")
        s = self.server.connect(rcvbuf=4096)
        s.sendall(build_request("GET", "/v1/stream?chunks=100000&bytes=65536"))
        read_head(s)
        s.close()
        wait_metric(self.server, "apiary_http_cancelled_total", lambda v: v >= cancelled + 1)
        # the producer's coroutine is gone with its request: nothing waits on async work any more
        wait_metric(self.server, "apiary_http_requests_in_flight", lambda v: v == 0)


class ServerSentEventsTest(ServerTestMixin, unittest.TestCase):
    CONFIG = {"sse": {"heartbeat_ms": 200}}

    def stream(self, path, headers=None, timeout=20):
        with self.server.connect(timeout=timeout) as s:
            resp = request(s, "GET", path, headers=headers, timeout=timeout)
        return resp

    def test_headers_and_event_format(self):
        resp = self.stream("/v1/events?count=3&interval_ms=10")
        self.assertEqual(resp.status, 200)
        self.assertEqual(resp.headers.get("Content-Type"), "text/event-stream")
        self.assertEqual(resp.headers.get("Cache-Control"), "no-cache")
        self.assertEqual(resp.headers.get("X-Accel-Buffering"), "no")
        self.assertEqual(resp.headers.get("Transfer-Encoding"), "chunked")
        blocks = parse_sse(resp.body.decode())
        self.assertEqual(blocks[0][0], [("retry", "2000")])
        events = events_of(blocks)
        self.assertEqual([e["id"] for e in events], ["1", "2", "3"])
        self.assertTrue(all(e["event"] == "tick" for e in events))
        self.assertEqual([json.loads(e["data"]) for e in events], [{"seq": i, "count": 3} for i in (1, 2, 3)])

    def test_multiline_data_is_split_into_data_lines(self):
        resp = self.stream("/v1/events?count=2&interval_ms=0&multiline=true")
        text = resp.body.decode()
        self.assertIn('data: {\ndata:   "seq": 1,\ndata:   "count": 2\ndata: }\n\n', text)
        events = events_of(parse_sse(text))
        self.assertEqual(len(events), 2)
        self.assertEqual(json.loads(events[1]["data"]), {"seq": 2, "count": 2})
        self.assertIn("\n", events[1]["data"], "the client rebuilds the line breaks")

    def test_heartbeat_comment_while_idle(self):
        # 1.5 s between the two events, heartbeat after 200 ms of silence: several comments between
        resp = self.stream("/v1/events?count=2&interval_ms=1500")
        blocks = parse_sse(resp.body.decode())
        kinds = ["event" if any(n == "data" for n, _ in f) else ("comment" if c else "other") for f, c in blocks]
        first, last = kinds.index("event"), len(kinds) - 1 - kinds[::-1].index("event")
        self.assertIn("comment", kinds[first:last], kinds)
        self.assertTrue(all(c == ["heartbeat"] for f, c in blocks if not f))

    def test_last_event_id_resumes_after_it(self):
        resp = self.stream("/v1/events?count=5&interval_ms=0", headers={"Last-Event-ID": "3"})
        self.assertEqual([e["id"] for e in events_of(parse_sse(resp.body.decode()))], ["4", "5"])
        resp = self.stream("/v1/events?count=2&interval_ms=0", headers={"Last-Event-ID": "junk"})
        self.assertEqual([e["id"] for e in events_of(parse_sse(resp.body.decode()))], ["1", "2"])

    def test_events_arrive_one_by_one(self):
        with self.server.connect(timeout=20) as s:
            s.sendall(build_request("GET", "/v1/events?count=3&interval_ms=700"))
            _, rest = read_head(s)
            reader = ChunkReader(s, rest)
            arrivals = []
            while not reader.done:
                piece = reader.next_chunk()
                if b"data:" in piece:
                    arrivals.append(time.monotonic())
            self.assertEqual(len(arrivals), 3)
            self.assertGreater(arrivals[2] - arrivals[0], 1.0, "events were not sent as they happened")

    def test_bad_query_is_422(self):
        with self.server.connect() as s:
            self.assertEqual(request(s, "GET", "/v1/events?count=-1").status, 422)
            self.assertEqual(request(s, "GET", "/v1/events?interval_ms=x").status, 422)


NGINX = next((p for p in ("/usr/sbin/nginx", shutil.which("nginx")) if p and os.access(p, os.X_OK)), None)


def free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


@unittest.skipUnless(NGINX, "nginx is not installed")
class SseThroughNginxTest(unittest.TestCase):
    """Events through nginx with its default proxy_buffering on (the config here is docs/deploy.md's
    without proxy_buffering off): they arrive one by one, and nginx takes apiary's X-Accel-Buffering: no
    (it does not pass X-Accel-* on). Note: Debian's nginx also passed these small events on promptly
    without the header (checked by removing it); the header matters where nginx would hold them
    (a full buffer's worth, proxy_cache), and costs nothing."""

    @classmethod
    def setUpClass(cls):
        cls.server = ApiaryServer({"sse": {"heartbeat_ms": 5000}})
        cls.server.start()
        cls.tmp = tempfile.TemporaryDirectory(prefix="apiary-nginx-sse-")
        d = cls.tmp.name
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.mkdir(os.path.join(d, sub))
        cls.port = free_port()
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(f"""daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{
        listen {HOST}:{cls.port};
        location / {{
            proxy_pass http://{HOST}:{cls.server.port};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_read_timeout 1h;
        }}
    }}
}}
""")
        cls.nginx = subprocess.Popen([NGINX, "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     preexec_fn=_die_with_parent)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, cls.port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or cls.nginx.poll() is not None:
                    cls.tearDownClass()
                    raise AssertionError("nginx did not start")
                time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        if cls.nginx.poll() is None:
            cls.nginx.send_signal(signal.SIGTERM)  # only the PID started above
            try:
                cls.nginx.wait(10)
            except subprocess.TimeoutExpired:
                cls.nginx.kill()
                cls.nginx.wait()
        cls.tmp.cleanup()
        cls.server.stop()
        cls.server.assert_no_sanitizer_report()

    def test_events_arrive_unbuffered_and_resume(self):
        with socket.create_connection((HOST, self.port), timeout=20) as s:
            s.sendall(build_request("GET", "/v1/events?count=3&interval_ms=1000"))
            head, rest = read_head(s)
            # nginx acts on X-Accel-* headers and does not pass them on: it saw ours
            self.assertNotIn("x-accel-buffering", head.lower())
            self.assertIn("text/event-stream", head)
            reader = ChunkReader(s, rest)
            sent_at = time.monotonic()
            arrivals = []
            while not reader.done:
                piece = reader.next_chunk()
                arrivals.extend([time.monotonic()] * piece.count(b"\ndata:"))
                if b"data:" in piece and not piece.count(b"\ndata:"):
                    arrivals.append(time.monotonic())
            self.assertEqual(len(arrivals), 3)
            # Buffered, all three would come at the end (about 2 s); unbuffered, the first comes at
            # once and the last two seconds later. Margins for a loaded machine.
            self.assertLess(arrivals[0] - sent_at, 0.9, "the first event waited in nginx's buffer")
            self.assertGreater(arrivals[2] - arrivals[0], 1.2, "events came together: buffered")
        with socket.create_connection((HOST, self.port), timeout=20) as s:
            resp = request(s, "GET", "/v1/events?count=4&interval_ms=0", headers={"Last-Event-ID": "2"})
            self.assertEqual([e["id"] for e in events_of(parse_sse(resp.body.decode()))], ["3", "4"])


class StreamDrainOnShutdownTest(unittest.TestCase):
    def test_sigterm_ends_a_stream_with_its_last_chunk(self):
        with ApiaryServer({"drain_timeout_ms": 10000, "sse": {"heartbeat_ms": 0}}) as srv:
            s = srv.connect(timeout=20)
            s.sendall(build_request("GET", "/v1/events?count=1000&interval_ms=1000"))
            _, rest = read_head(s)
            reader = ChunkReader(s, rest)
            reader.next_chunk()  # retry
            reader.next_chunk()  # event 1
            started = time.monotonic()
            srv.sigterm()
            while not reader.done:
                reader.next_chunk()
            self.assertLess(time.monotonic() - started, 8, "the stream was not ended by the drain")
            self.assertEqual(srv.wait(15), 0)
            s.close()


def sha256(data):
    return hashlib.sha256(data).hexdigest()


class UploadTest(ServerTestMixin, unittest.TestCase):
    CONFIG = {"timeouts": {"body_ms": 30000}}

    def upload(self, body, chunked=False, piece=65536):
        with self.server.connect(timeout=60) as s:
            if chunked:
                s.sendall(build_request("POST", "/v1/upload", headers={"Transfer-Encoding": "chunked"}))
                for i in range(0, len(body), piece):
                    part = body[i:i + piece]
                    s.sendall(b"%x\r\n" % len(part) + part + b"\r\n")
                s.sendall(b"0\r\n\r\n")
            else:
                s.sendall(build_request("POST", "/v1/upload", body=body))
            resp = read_response(s, timeout=60)
            self.assertEqual(resp.status, 200, resp.body)
            self.assertEqual(request(s, "GET", "/v1/hello").status, 200, "keep-alive after a streamed body")
            return resp.json()

    def check(self, size, chunked=False, piece=65536):
        body = os.urandom(size)
        self.assertEqual(self.upload(body, chunked, piece), {"bytes": size, "sha256": sha256(body)})

    def test_sizes_with_content_length(self):
        for size in (0, 1, 500 * 1024):
            with self.subTest(size=size):
                self.check(size)

    def test_sizes_chunked(self):
        for size, piece in ((0, 1), (1, 1), (500 * 1024, 7777), (500 * 1024, 65536)):
            with self.subTest(size=size, piece=piece):
                self.check(size, chunked=True, piece=piece)

    def test_20_mib_keeps_rss_flat(self):
        pid = self.server.proc.pid
        self.check(1024 * 1024)  # warm the buffers up
        before = rss_kib(pid)
        self.check(20 * 1024 * 1024)
        self.check(20 * 1024 * 1024, chunked=True)
        grown_mib = (rss_kib(pid) - before) / 1024
        self.assertLess(grown_mib, 8, f"RSS grew {grown_mib:.1f} MiB over two 20 MiB uploads")

    def test_413_past_the_route_limit_by_content_length(self):
        with self.server.connect() as s:
            s.sendall(build_request("POST", "/v1/upload", headers={"Content-Length": str(UPLOAD_LIMIT + 1)}))
            resp = read_response(s)
            self.assertEqual(resp.status, 413)
            self.assertIn(str(UPLOAD_LIMIT), resp.json()["detail"])

    def test_413_past_the_route_limit_chunked(self):
        with self.server.connect() as s:
            s.sendall(build_request("POST", "/v1/upload", headers={"Transfer-Encoding": "chunked"}))
            s.sendall(b"%x\r\n" % (32 * 1024 * 1024) + b"x" * 65536)
            s.sendall(b"x" * 1024)
            # the first chunk fits; the second announces more than the rest of the limit
            s.sendall(b"x" * (32 * 1024 * 1024 - 65536 - 1024) + b"\r\n" + b"%x\r\n" % (32 * 1024 * 1024 + 1))
            resp = read_response(s, timeout=60)
            self.assertEqual(resp.status, 413)
            self.assertIn(str(UPLOAD_LIMIT), resp.json()["detail"])

    def test_other_routes_keep_the_global_limit(self):
        with self.server.connect() as s:
            s.sendall(build_request("POST", "/v1/echo", headers={"Content-Type": "application/json",
                                                                "Content-Length": str(2 * 1024 * 1024)}))
            self.assertEqual(read_response(s).status, 413)

    def test_expect_100_continue(self):
        body = os.urandom(300 * 1024)
        with self.server.connect() as s:
            s.sendall(build_request("POST", "/v1/upload", headers={"Expect": "100-continue",
                                                                  "Content-Length": str(len(body))}))
            interim = read_response(s)
            self.assertEqual(interim.status, 100)
            s.sendall(body)
            resp = read_response(s)
            self.assertEqual(resp.json(), {"bytes": len(body), "sha256": sha256(body)})

    def test_expect_100_continue_refused_past_the_limit(self):
        with self.server.connect() as s:
            s.sendall(build_request("POST", "/v1/upload", headers={"Expect": "100-continue",
                                                                  "Content-Length": str(UPLOAD_LIMIT + 1)}))
            self.assertEqual(read_response(s).status, 413)

    def test_client_dying_mid_body(self):
        with self.server.connect() as m:
            cancelled = metric(m, "apiary_http_cancelled_total")
        for chunked in (False, True):
            s = self.server.connect()
            if chunked:
                s.sendall(build_request("POST", "/v1/upload", headers={"Transfer-Encoding": "chunked"})
                          + b"10000\r\n" + b"y" * 40000)
            else:
                s.sendall(build_request("POST", "/v1/upload", headers={"Content-Length": str(10 * 1024 * 1024)})
                          + b"y" * 200000)
            time.sleep(0.2)
            s.close()
        wait_metric(self.server, "apiary_http_cancelled_total", lambda v: v >= cancelled + 2)
        wait_metric(self.server, "apiary_http_requests_in_flight", lambda v: v == 0)
        self.check(1000)

    def test_answer_before_the_end_of_the_body_closes(self):
        with self.server.connect() as s:
            s.sendall(build_request("POST", "/v1/upload?expect_bytes=1000",
                                    headers={"Content-Length": str(5 * 1024 * 1024)}) + b"q" * 100000)
            resp = read_response(s)
            self.assertEqual(resp.status, 422)
            self.assertIn("close", resp.connection_tokens(), "the rest of the body is never read")
        with self.server.connect() as s:  # shorter: known only at the end, keep-alive goes on
            resp = request(s, "POST", "/v1/upload?expect_bytes=10", body=b"12345")
            self.assertEqual((resp.status, resp.json()["bytes"]), (422, 5))
            self.assertEqual(request(s, "GET", "/v1/hello").status, 200)

    def test_refused_before_the_handler_closes_instead_of_parsing_the_body(self):
        # The query fails validation before the handler runs: the body that follows the head must
        # not be taken for the next request (nor the request dispatched twice).
        with self.server.connect() as s:
            body = build_request("GET", "/v1/hello")  # a body that looks like a request
            s.sendall(build_request("POST", "/v1/upload?expect_bytes=x", body=body))
            resp = read_response(s)
            self.assertEqual(resp.status, 422)
            self.assertIn("close", resp.connection_tokens())
            s.settimeout(5)
            self.assertEqual(s.recv(65536), b"", "nothing more: the body was not parsed as a request")

    def test_pipelined_request_after_an_upload(self):
        body = os.urandom(100000)
        with self.server.connect() as s:
            s.sendall(build_request("POST", "/v1/upload", body=body) + build_request("GET", "/v1/hello"))
            self.assertEqual(read_response(s).json()["sha256"], sha256(body))
            self.assertEqual(read_response(s).status, 200)


class UploadBodyDeadlineTest(ServerTestMixin, unittest.TestCase):
    CONFIG = {"timeouts": {"body_ms": 600}}

    def test_a_body_too_slow_gets_408(self):
        with self.server.connect() as s:
            s.sendall(build_request("POST", "/v1/upload", headers={"Content-Length": "100000"}) + b"z" * 1000)
            resp = read_response(s, timeout=15)
            self.assertEqual(resp.status, 408)
            self.assertIn("close", resp.connection_tokens())

    def test_a_slow_but_complete_body_is_not_cut_by_the_request_deadline(self):
        body = os.urandom(5000)
        with self.server.connect() as s:
            s.sendall(build_request("POST", "/v1/upload", headers={"Content-Length": str(len(body))}) + body[:10])
            time.sleep(0.2)
            s.sendall(body[10:])
            self.assertEqual(read_response(s).json()["sha256"], sha256(body))


if __name__ == "__main__":
    unittest.main()
