"""apiary behind a real nginx running the shipped sample config/nginx.conf: requests pass through, nginx
reuses its upstream connections (counted with `ss` on apiary's port, against a control server block
without keepalive), the headers the sample promises reach the upstream, and nginx answers 502 while
apiary is down and 200 again once apiary is back on the same port.

Every nginx here is this file's own foreground process (daemon off, master_process off) with a private
prefix, temp dirs, pid file and error log in a temp dir, on free loopback ports; only its PID is ever
signalled. The class is skipped only when no nginx binary exists (scripts/deps.sh installs nginx-light)."""

import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

from apiary_harness import HELLO, HOST, ApiaryServer, _die_with_parent, request, source_dir

NGINX_CANDIDATES = ("/usr/sbin/nginx", shutil.which("nginx"))
SAMPLE_KEEPALIVE = 64  # `keepalive` in config/nginx.conf
START_TIMEOUT_S = 10


def find_nginx():
    for path in NGINX_CANDIDATES:
        if path and os.access(path, os.X_OK):
            return path
    return None


NGINX = find_nginx()


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def sample_config(upstream_port, listen_port):
    """The shipped config/nginx.conf with its two TEST addresses replaced; each must occur exactly once,
    so a change to the sample cannot silently leave the test proxying somewhere else."""
    with open(os.path.join(source_dir(), "config", "nginx.conf"), encoding="utf-8") as f:
        text = f.read()
    for old, new in (("server 127.0.0.1:8080;", f"server {HOST}:{upstream_port};"),
                     ("listen 80;", f"listen {HOST}:{listen_port};")):
        if text.count(old) != 1:
            raise AssertionError(f"config/nginx.conf must contain {old!r} exactly once")
        text = text.replace(old, new)
    return text


class Nginx:
    """One private nginx in the foreground: the sample config towards upstream_port, plus a control
    server block proxying to the same port without keepalive (nginx's defaults: HTTP/1.0, a new
    connection per request)."""

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.port = free_port()
        self.control_port = free_port()
        self.proc = None
        self._tmp = None
        self._out = None

    def __enter__(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="apiary-nginx-")
        d = self._tmp.name
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.mkdir(os.path.join(d, sub))
        with open(os.path.join(d, "apiary.conf"), "w", encoding="utf-8") as f:
            f.write(sample_config(self.upstream_port, self.port))
        self.error_log = os.path.join(d, "error.log")
        conf = os.path.join(d, "nginx.conf")
        with open(conf, "w", encoding="utf-8") as f:
            f.write(f"""# private nginx for test_85_nginx.py
daemon off;
master_process off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {self.error_log} info;
events {{ worker_connections 512; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    include {d}/apiary.conf;
    server {{
        listen {HOST}:{self.control_port};
        location / {{ proxy_pass http://{HOST}:{self.upstream_port}; }}
    }}
}}
""")
        self._out = open(os.path.join(d, "stdout.log"), "wb")
        self.proc = subprocess.Popen([NGINX, "-p", d, "-c", conf, "-e", self.error_log], stdin=subprocess.DEVNULL,
                                     stdout=self._out, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection((HOST, self.port), timeout=1), \
                        socket.create_connection((HOST, self.control_port), timeout=1):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"nginx did not start (exit {self.proc.poll()}):\n{self.log_text()}")

    def log_text(self):
        text = ""
        for path in (self.error_log, os.path.join(self._tmp.name, "stdout.log")):
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    text += f.read()
            except OSError:
                pass
        return text

    def __exit__(self, *exc):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # only the PID started above
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if self._out is not None:
            self._out.close()
            self._out = None
        self._tmp.cleanup()
        return False

    def connect(self, port=None):
        sock = socket.create_connection((HOST, port or self.port), timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock


def peer_ports(port):
    """Client-side ports of every TCP connection (any state but LISTEN, TIME-WAIT included) with `port`
    at one end, from `ss -tan`. Each connection nginx opened to apiary in the last minute is one port:
    a closed one lingers in TIME-WAIT, so short-lived connections are counted too."""
    def port_of(address):  # "127.0.0.1:8080", "[::1]:8080", "*:*"
        text = address.rsplit(":", 1)[-1]
        return int(text) if text.isdigit() else None

    out = subprocess.run(["ss", "-tanH"], check=True, capture_output=True, text=True, timeout=10).stdout
    ports = set()
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 5 or fields[0] == "LISTEN":
            continue
        local, peer = port_of(fields[3]), port_of(fields[4])
        if local == port and peer is not None:
            ports.add(peer)
        elif peer == port and local is not None:
            ports.add(local)
    return ports


def accepted_total(apiary):
    """apiary's own count of accepted connections (apiary_http_connections_accepted_total from
    /metrics, read over a direct connection that the count includes), or None when this build has no
    such metric."""
    with apiary.connect() as sock:
        resp = request(sock, "GET", "/metrics")
    if resp.status != 200:
        return None
    m = re.search(r"^apiary_http_connections_accepted_total (\d+)$", resp.body.decode("utf-8", "replace"), re.M)
    return int(m.group(1)) if m else None


class RecordingUpstream:
    """A loopback HTTP/1.1 server standing in for apiary that records each request line, its headers and
    the client port it came from, and answers 200 {} with keep-alive."""

    def __init__(self):
        self.requests = []
        records = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                records.append((self.requestline, self.headers, self.client_address[1]))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((HOST, 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="recording-upstream", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)
        return False


@unittest.skipIf(NGINX is None, "nginx not found (looked for /usr/sbin/nginx and nginx on PATH): "
                                "apt-get install -y nginx-light, or run scripts/deps.sh")
class NginxProxyTest(unittest.TestCase):
    def assertHelloViaNginx(self, resp):
        self.assertEqual(resp.status, 200, repr(resp))
        self.assertEqual(resp.headers.get("Content-Type"), "application/json")
        self.assertEqual(resp.json(), HELLO)

    def test_requests_pass_through(self):
        with ApiaryServer() as apiary, Nginx(apiary.port) as nginx, nginx.connect() as sock:
            self.assertHelloViaNginx(request(sock, "GET", "/v1/hello"))
            resp = request(sock, "POST", "/v1/echo", {"Content-Type": "application/json"}, b'{"a":[1,2]}')
            self.assertEqual(resp.status, 200, repr(resp))
            self.assertEqual(resp.json(), {"a": [1, 2]})
            # apiary's own problem documents come through unchanged.
            resp = request(sock, "GET", "/v1/nope")
            self.assertEqual(resp.status, 404, repr(resp))
            self.assertEqual(resp.headers.get("Content-Type"), "application/problem+json")
            self.assertEqual(resp.json()["status"], 404)
            # No id from the client: apiary answers with the one nginx made (32 hex digits), exactly once.
            self.assertEqual(len(resp.headers.get_all("X-Request-Id")), 1, repr(resp))
            self.assertRegex(resp.headers.get("X-Request-Id"), r"^[0-9a-f]{32}$")
            resp = request(sock, "GET", "/v1/hello", {"X-Request-Id": "req-123"})
            self.assertHelloViaNginx(resp)
            self.assertEqual(resp.headers.get_all("X-Request-Id"), ["req-123"], "the client's id comes back")

    def test_apiary_sees_the_client_behind_nginx(self):
        """With nginx (127.0.0.1) as apiary's only trusted proxy, apiary's access log names the real
        client: here one connecting from 127.0.0.2 (still loopback), which also tries to spoof its
        address with an X-Forwarded-For of its own. The request id nginx passes on is logged too."""
        with tempfile.TemporaryDirectory() as tmp:
            log = os.path.join(tmp, "access.log")
            config = {"trusted_proxies": ["127.0.0.1"], "access_log": {"enabled": True, "path": log}}
            with ApiaryServer(config) as apiary, Nginx(apiary.port) as nginx:
                with socket.create_connection((HOST, nginx.port), timeout=5, source_address=("127.0.0.2", 0)) as sock:
                    request(sock, "GET", "/v1/hello", {"X-Request-Id": "trace-77"})
                    request(sock, "GET", "/v1/hello", {"X-Forwarded-For": "6.6.6.6"})
                apiary.sigterm()
                self.assertEqual(apiary.wait(10), 0)
            with open(log, encoding="utf-8") as f:
                lines = [json.loads(line) for line in f]
        self.assertEqual([l["client"] for l in lines], ["127.0.0.2", "127.0.0.2"])
        self.assertEqual(lines[0]["request_id"], "trace-77")

    @unittest.skipIf(shutil.which("ss") is None, "ss (iproute2) not found: cannot count connections")
    def test_upstream_connections_are_reused(self):
        requests_sent = 100
        with ApiaryServer() as apiary, Nginx(apiary.port) as nginx:
            # Control: without keepalive every request is a new connection to apiary, and the count sees
            # each of them (in TIME-WAIT by now). This is what shows the method can see reuse missing.
            before = peer_ports(apiary.port)
            with nginx.connect(nginx.control_port) as sock:
                for _ in range(20):
                    self.assertHelloViaNginx(request(sock, "GET", "/v1/hello"))
            control = peer_ports(apiary.port) - before
            self.assertEqual(len(control), 20, "the control block opens one connection per request")

            # The sample config: sequential requests reuse one upstream connection.
            accepted_before = accepted_total(apiary)  # read outside the ss window: it connects too
            before = peer_ports(apiary.port)
            with nginx.connect() as sock:
                for _ in range(requests_sent):
                    self.assertHelloViaNginx(request(sock, "GET", "/v1/hello"))
            used = peer_ports(apiary.port) - before
            accepted_after = accepted_total(apiary)
            self.assertLessEqual(len(used), SAMPLE_KEEPALIVE, f"{requests_sent} requests used {len(used)} connections")
            self.assertEqual(len(used), 1, f"sequential requests need one upstream connection, used {sorted(used)}")
            if accepted_before is not None and accepted_after is not None:
                # apiary's own count agrees: nginx's one connection, plus the /metrics read itself.
                self.assertEqual(accepted_after - accepted_before, len(used) + 1)

            # Concurrent clients: never more upstream connections than requests in flight at once.
            before = peer_ports(apiary.port)
            errors = []

            def client():
                try:
                    with nginx.connect() as sock:
                        for _ in range(25):
                            resp = request(sock, "GET", "/v1/hello")
                            if resp.status != 200:
                                errors.append(repr(resp))
                except Exception as e:  # reported below, in the test's thread
                    errors.append(repr(e))

            threads = [threading.Thread(target=client) for _ in range(8)]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            self.assertEqual(errors, [])
            used = peer_ports(apiary.port) - before
            self.assertLessEqual(len(used), 8, f"8 clients x 25 requests used {len(used)} upstream connections")
            self.assertTrue(apiary.alive())

    def test_headers_reach_the_upstream(self):
        with RecordingUpstream() as upstream, Nginx(upstream.port) as nginx, nginx.connect() as sock:
            resp = request(sock, "GET", "/v1/hello", {"Host": "api.example.test", "X-Request-Id": "req-123"})
            self.assertEqual(resp.status, 200, repr(resp))
            resp = request(sock, "GET", "/v1/hello?x=1", {"Host": "api.example.test",
                                                          "X-Forwarded-For": "203.0.113.7"})
            self.assertEqual(resp.status, 200, repr(resp))

        self.assertEqual(len(upstream.requests), 2)
        (line1, h1, port1), (line2, h2, port2) = upstream.requests
        self.assertEqual(line1, "GET /v1/hello HTTP/1.1", "proxy_http_version 1.1")
        self.assertEqual(line2, "GET /v1/hello?x=1 HTTP/1.1")
        for h in (h1, h2):
            self.assertIsNone(h.get("Connection"), 'proxy_set_header Connection "" sends no Connection header')
            self.assertEqual(h.get("Host"), "api.example.test")
            self.assertEqual(h.get("X-Forwarded-Proto"), "http")
        self.assertEqual(h1.get("X-Forwarded-For"), "127.0.0.1")
        self.assertEqual(h2.get("X-Forwarded-For"), "203.0.113.7, 127.0.0.1", "the chain is extended, not replaced")
        self.assertEqual(h1.get("X-Request-Id"), "req-123")
        self.assertRegex(h2.get("X-Request-Id"), r"^[0-9a-f]{32}$", "nginx makes an id when the client sent none")
        self.assertEqual(port1, port2, "both requests came over one kept-alive upstream connection")

    def test_502_while_apiary_is_down_then_recovers_on_the_same_port(self):
        apiary = ApiaryServer().start()
        try:
            port = apiary.port
            with Nginx(port) as nginx:
                with nginx.connect() as sock:
                    self.assertHelloViaNginx(request(sock, "GET", "/v1/hello"))
                rc = apiary.stop()
                self.assertEqual(rc, 0, apiary.log_text())
                apiary.assert_no_sanitizer_report()

                with nginx.connect() as sock:
                    for _ in range(3):
                        resp = request(sock, "GET", "/v1/hello")
                        self.assertEqual(resp.status, 502, repr(resp))
                self.assertRegex(nginx.log_text(), r"connect\(\) failed \(111: Connection refused\)")

                # The same port again: nginx needs no reload, and a single-server upstream is never
                # marked down, so the very first request after the restart is served.
                apiary = ApiaryServer(extra_args=["--listen", f"{HOST}:{port}"]).start()
                self.assertEqual(apiary.port, port)
                with nginx.connect() as sock:
                    self.assertHelloViaNginx(request(sock, "GET", "/v1/hello"))
                    self.assertHelloViaNginx(request(sock, "GET", "/v1/hello"))
        finally:
            rc = apiary.stop()
        self.assertEqual(rc, 0, apiary.log_text())
        apiary.assert_no_sanitizer_report()
