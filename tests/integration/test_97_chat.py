"""examples/chat: two instances of the chat example on one private redis-server (pubsub.backend
"redis"), behind a private nginx, each with a headless Chromium page (Debian's chromium, driven over
its DevTools protocol by the small client below: no downloaded browser, no npm package). Each page
holds one WebSocket to its room (GET /rooms/{room}/ws, proxied by nginx with the upgrade headers); a
message typed into the page served by instance A appears in the page served by instance B, and the
reply typed in B appears in A; a page in another room sees neither.

nginx has the deployment's round-robin upstream of both instances (docs/deploy.md), and one port
pinned to each instance so that each page (and its WebSocket) stays on one known instance: the point
is that the message crosses instances through Redis. APIARY_CHAT_BACKEND=local runs the same with
pub/sub's local backend, under which the cross-instance test must fail (a check that the test proves
what it says).

The example is built out of tree against an installed apiary, as test_97_library does."""

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import unittest
import urllib.request

from apiary_harness import HOST, ApiaryServer, _die_with_parent, request
from test_83_streaming import NGINX, free_port, metric, wait_metric
from test_96_kv import RedisServer
from test_97_library import Installed

CHROMIUM = shutil.which("chromium")


class Cdp:
    """Just enough of a WebSocket client (RFC 6455, text frames) and of the DevTools protocol."""

    def __init__(self, ws_url, timeout=30.0):
        assert ws_url.startswith("ws://"), ws_url
        hostport, _, path = ws_url[5:].partition("/")
        host, _, port = hostport.partition(":")
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /{path} HTTP/1.1\r\nHost: {hostport}\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n")
                          .encode())
        head = b""
        while b"\r\n\r\n" not in head:
            more = self.sock.recv(4096)
            if not more:
                raise AssertionError(f"DevTools closed the handshake: {head!r}")
            head += more
        head, _, self.buf = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"DevTools refused the WebSocket: {head!r}")
        self.next_id = 0

    def _exact(self, n):
        while len(self.buf) < n:
            more = self.sock.recv(65536)
            if not more:
                raise AssertionError("DevTools closed the connection")
            self.buf += more
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _send(self, text):
        data = text.encode()
        head = bytes([0x81])
        n = len(data)
        if n < 126:
            head += bytes([0x80 | n])
        elif n < 65536:
            head += bytes([0x80 | 126]) + struct.pack("!H", n)
        else:
            head += bytes([0x80 | 127]) + struct.pack("!Q", n)
        mask = os.urandom(4)
        self.sock.sendall(head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def _recv(self):
        message = b""
        while True:
            b0, b1 = self._exact(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            payload = self._exact(n)
            opcode = b0 & 0x0F
            if opcode == 0x8:
                raise AssertionError("DevTools closed the WebSocket")
            if opcode in (0x9, 0xA):
                continue
            message += payload
            if b0 & 0x80:
                return json.loads(message)

    def call(self, method, **params):
        self.next_id += 1
        my_id = self.next_id
        self._send(json.dumps({"id": my_id, "method": method, "params": params}))
        while True:
            msg = self._recv()
            if msg.get("id") == my_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def close(self):
        self.sock.close()


class Browser:
    """One headless Chromium with one page at `url`."""

    def __init__(self, url):
        self.profile = tempfile.mkdtemp(prefix="apiary-chromium-")
        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--no-default-browser-check",
             f"--user-data-dir={self.profile}", "--remote-debugging-port=0",
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1", url],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
        port_file = os.path.join(self.profile, "DevToolsActivePort")
        deadline = time.monotonic() + 60
        port = None
        while port is None:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.close()
                raise AssertionError("chromium did not open its DevTools port")
            try:
                with open(port_file, encoding="ascii") as f:
                    first = f.readline().strip()
                port = int(first) if first else None
            except (OSError, ValueError):
                pass
            time.sleep(0.1)
        ws_url = None
        while ws_url is None:
            if time.monotonic() > deadline:
                self.close()
                raise AssertionError("chromium has no page target")
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=5) as r:
                for target in json.load(r):
                    if target.get("type") == "page" and target.get("url", "").startswith(url.split("?")[0]):
                        ws_url = target["webSocketDebuggerUrl"]
            if ws_url is None:
                time.sleep(0.1)
        self.cdp = Cdp(ws_url)

    def wait_for(self, expression, timeout=20.0):
        deadline = time.monotonic() + timeout
        value = None
        while time.monotonic() < deadline:
            value = self.cdp.evaluate(expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"{expression} stayed {value!r}")

    def log_text(self):
        return self.cdp.evaluate("document.getElementById('log') ? document.getElementById('log').innerText : ''")

    def type_and_send(self, name, text):
        """Types into the page's inputs as a user would (focus, insert text, Enter)."""
        self.cdp.evaluate(f"document.getElementById('name').value = {json.dumps(name)}")
        self.cdp.evaluate("document.getElementById('text').focus()")
        self.cdp.call("Input.insertText", text=text)
        for kind in ("keyDown", "keyUp"):
            self.cdp.call("Input.dispatchKeyEvent", type=kind, key="Enter", code="Enter", windowsVirtualKeyCode=13,
                          nativeVirtualKeyCode=13, text="\r" if kind == "keyDown" else "")

    def close(self):
        if getattr(self, "cdp", None):
            self.cdp.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        # Chromium's helper processes (zygote, renderer, crashpad) may still be writing into the
        # profile for a moment after the browser itself exits: a plain cleanup then finds a directory
        # not empty (seen once in CI). Retry briefly, then leave what is left to the system's /tmp.
        for _ in range(20):
            shutil.rmtree(self.profile, ignore_errors=True)
            if not os.path.exists(self.profile):
                break
            time.sleep(0.1)


def subscribers(server):
    with server.connect() as s:
        return metric(s, "apiary_pubsub_subscribers")


class RoomSocket(Cdp):
    """A room's WebSocket through nginx, read and written as the page does (text frames of JSON)."""

    def __init__(self, port, room):
        super().__init__(f"ws://{HOST}:{port}/rooms/{room}/ws")

    def send(self, text):
        self._send(text)

    def recv_json(self):
        return self._recv()


def nginx_conf(d, port_rr, port_a, port_b, a, b):
    def server(port, upstream):
        return f"""
    server {{
        listen {HOST}:{port};
        location ~ ^/rooms/[^/]+/ws$ {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $chat_connection_upgrade;
            proxy_buffering off;
            proxy_read_timeout 1h;
        }}
        location / {{
            proxy_pass http://{upstream};
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""
    return f"""daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log info;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    map $http_upgrade $chat_connection_upgrade {{ default upgrade; "" close; }}
    upstream chat {{ server {HOST}:{a}; server {HOST}:{b}; keepalive 16; }}
    upstream chat_a {{ server {HOST}:{a}; }}
    upstream chat_b {{ server {HOST}:{b}; }}
{server(port_rr, "chat")}
{server(port_a, "chat_a")}
{server(port_b, "chat_b")}
}}
"""


@unittest.skipUnless(NGINX and CHROMIUM, "nginx or chromium is not installed")
class ChatTwoInstancesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.cleanups = []
        try:
            cls.binary = Installed.get().build_example("chat")
            cls.redis = RedisServer().start()
            cls.cleanups.append(cls.redis.stop)
            cls.backend = os.environ.get("APIARY_CHAT_BACKEND", "redis")
            cfg = {"pubsub": {"backend": cls.backend}, "redis": {"url": cls.redis.url()}}
            cls.a = ApiaryServer(cfg, threads=2, binary=cls.binary).start()
            cls.cleanups.append(cls.a.stop)
            cls.b = ApiaryServer(cfg, threads=2, binary=cls.binary).start()
            cls.cleanups.append(cls.b.stop)
            cls.tmp = tempfile.TemporaryDirectory(prefix="apiary-nginx-chat-")
            cls.cleanups.append(cls.tmp.cleanup)
            d = cls.tmp.name
            for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
                os.mkdir(os.path.join(d, sub))
            cls.port_rr, cls.port_a, cls.port_b = free_port(), free_port(), free_port()
            conf = os.path.join(d, "nginx.conf")
            with open(conf, "w", encoding="utf-8") as f:
                f.write(nginx_conf(d, cls.port_rr, cls.port_a, cls.port_b, cls.a.port, cls.b.port))
            cls.nginx = subprocess.Popen([NGINX, "-p", d, "-c", conf, "-e", os.path.join(d, "error.log")],
                                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL, preexec_fn=_die_with_parent)
            cls.cleanups.append(cls.stop_nginx)
            for port in (cls.port_rr, cls.port_a, cls.port_b):
                deadline = time.monotonic() + 10
                while True:
                    try:
                        socket.create_connection((HOST, port), timeout=1).close()
                        break
                    except OSError:
                        if time.monotonic() > deadline or cls.nginx.poll() is not None:
                            raise AssertionError("nginx did not start")
                        time.sleep(0.05)
            for srv in (cls.a, cls.b):
                if cls.backend == "redis":
                    wait_metric(srv, "apiary_pubsub_backend_links_up", lambda v: v == 2, timeout=15)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def stop_nginx(cls):
        if cls.nginx.poll() is None:
            cls.nginx.terminate()
            cls.nginx.wait(10)

    @classmethod
    def tearDownClass(cls):
        for fn in reversed(cls.cleanups):
            try:
                fn()
            except Exception:  # noqa: BLE001 - best effort, everything else still goes
                pass

    def test_the_page_and_its_routes_through_the_round_robin_port(self):
        with socket.create_connection((HOST, self.port_rr), timeout=5) as s:
            page = request(s, "GET", "/")
            self.assertEqual(page.status, 200)
            self.assertIn("text/html", page.headers.get("Content-Type"))
            self.assertIn(b"new WebSocket", page.body)
            # The page loads nothing from elsewhere: no address with a host, no src/href attribute (its
            # one address is built from location.host).
            self.assertIsNone(re.search(rb"(https?|wss?)://[A-Za-z0-9\[]", page.body), page.body)
            self.assertIsNone(re.search(rb"\b(src|href)\s*=", page.body), page.body)
            bad = request(s, "POST", "/rooms/lobby/messages", {"Content-Type": "application/json"}, b'{"name":"x"}')
            self.assertEqual(bad.status, 422)

    def test_the_room_socket_through_nginx(self):
        """The WebSocket through the round-robin port: upgraded by nginx, the sender gets its own
        message back from the room, a refused message comes back as an error to its sender only."""
        a = RoomSocket(self.port_rr, "hive")
        self.addCleanup(a.close)
        b = RoomSocket(self.port_rr, "hive")
        self.addCleanup(b.close)
        deadline = time.monotonic() + 10  # both subscribed (on_open), wherever nginx sent them
        while subscribers(self.a) + subscribers(self.b) < 2:
            self.assertLess(time.monotonic(), deadline, "the room sockets never subscribed")
            time.sleep(0.05)
        a.send(json.dumps({"name": "ann", "text": "buzz"}))
        self.assertEqual(a.recv_json(), {"name": "ann", "text": "buzz"})
        self.assertEqual(b.recv_json(), {"name": "ann", "text": "buzz"})
        b.send(json.dumps({"name": "bob"}))
        self.assertIn("error", b.recv_json())
        b.send(json.dumps({"name": "bob", "text": "x" * 1001}))
        self.assertIn("error", b.recv_json())
        b.send(json.dumps({"name": "bob", "text": "ok"}))
        self.assertEqual(a.recv_json(), {"name": "bob", "text": "ok"}, "a saw no error meant for b")
        with socket.create_connection((HOST, self.port_rr), timeout=5) as s:
            self.assertEqual(request(s, "GET", "/rooms/hive/ws").status, 426)
            self.assertEqual(request(s, "GET", "/rooms/no%20way/ws").status, 422)

    def test_a_message_typed_in_one_instance_appears_in_the_other(self):
        page_a = Browser(f"http://{HOST}:{self.port_a}/?room=bees")
        self.addCleanup(page_a.close)
        page_b = Browser(f"http://{HOST}:{self.port_b}/?room=bees")
        self.addCleanup(page_b.close)
        other_room = Browser(f"http://{HOST}:{self.port_b}/?room=wasps")
        self.addCleanup(other_room.close)
        for page in (page_a, page_b, other_room):
            page.wait_for("document.body.dataset.connected === 'yes'")
        page_a.type_and_send("alice", "hello from A")
        self.assertIn("alice: hello from A", page_b.wait_for(
            "document.getElementById('log').innerText.includes('hello from A') && document.getElementById('log').innerText"))
        page_b.type_and_send("bob", "hi from B")
        self.assertIn("bob: hi from B", page_a.wait_for(
            "document.getElementById('log').innerText.includes('hi from B') && document.getElementById('log').innerText"))
        # Each page shows both lines once, in order; the other room saw neither.
        for page in (page_a, page_b):
            page.wait_for("document.getElementById('log').innerText.includes('hi from B')")
            self.assertEqual(page.log_text().strip().splitlines(), ["alice: hello from A", "bob: hi from B"])
        self.assertEqual(other_room.log_text().strip(), "")


if __name__ == "__main__":
    unittest.main()
