"""Shared helpers for apiary's black-box integration tests.

- ApiaryServer: starts the built binary ($APIARY_BIN) on 127.0.0.1 with an ephemeral port and a
  temporary JSON config, drains its log continuously, and always stops exactly the process it started.
- A raw HTTP/1.1 response reader over plain sockets (per-socket buffering, so pipelined responses
  that arrive in one recv() are split correctly), plus request/close helpers.
- ApiaryAssertions / ServerTestMixin: the assertions every test file repeats (common headers, problem
  documents, "the server still serves everyone else") and a one-server-per-class fixture.

Standard library only: the suite must run on Debian's /usr/bin/python3 with nothing installed.
"""

import copy
import ctypes
import email.utils
import errno
import json
import os
import re
import resource
import select
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import weakref

HOST = "127.0.0.1"

# The documented defaults; tests deep-merge their overrides into this. linger_ms is shorter than the
# shipped default so that error-then-close tests do not wait 2 s when the server lingers.
DEFAULT_CONFIG = {
    "listen": "127.0.0.1:8080",
    "threads": 0,
    "backlog": 511,
    "max_connections": 10000,
    "drain_timeout_ms": 10000,
    "drain_delay_ms": 0,
    "log_level": "info",
    "limits": {
        "max_url_bytes": 8192,
        "max_header_bytes": 16384,
        "max_headers": 64,
        "max_body_bytes": 1048576,
        "output_buffer_bytes": 65536,
    },
    "timeouts": {
        "header_ms": 10000,
        "body_ms": 30000,
        "keepalive_ms": 60000,
        "write_ms": 30000,
        "linger_ms": 500,
    },
    # Workers at the loops' priority, not the shipped nice 19: beside other builds and tests at nice 0
    # (a loaded 2-core machine, or scripts/flake-check.sh --load), a nice-19 worker gets about 1.5 % of
    # a core, and a job of a second's CPU takes a minute, past every timeout of the tests. test_90's
    # WorkerPriorityTest checks the default itself.
    "pool": {"nice": 0},
}

LISTEN_RE = re.compile(r"listening on http://127\.0\.0\.1:(\d+)")
HELLO = {"message": "Hello, World!"}

# Reason phrases the spec allows as problem "title" (and status-line reason). 413 was renamed by
# RFC 9110; either name is a correct HTTP reason phrase.
REASONS = {
    100: ("Continue",),
    200: ("OK",),
    400: ("Bad Request",),
    404: ("Not Found",),
    403: ("Forbidden",),
    405: ("Method Not Allowed",),
    406: ("Not Acceptable",),
    408: ("Request Timeout",),
    413: ("Content Too Large", "Payload Too Large"),
    414: ("URI Too Long",),
    415: ("Unsupported Media Type",),
    416: ("Range Not Satisfiable",),
    431: ("Request Header Fields Too Large",),
    501: ("Not Implemented",),
    503: ("Service Unavailable",),
}

# IMF-fixdate (RFC 9110 section 5.6.7), e.g. "Mon, 23 Nov 2026 17:24:19 GMT".
IMF_FIXDATE_RE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
    r"\d{4} \d{2}:\d{2}:\d{2} GMT$"
)


# --------------------------------------------------------------------------------------------------
# environment


def apiary_bin():
    path = os.environ.get("APIARY_BIN")
    if not path:
        raise RuntimeError("APIARY_BIN is not set (ctest sets it to the built apiary binary)")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"APIARY_BIN={path!r} is not an executable file (build the apiary target first)")
    return path



def binary_is_sanitized():
    """True for an AddressSanitizer build: its allocator keeps freed memory in quarantine, so RSS there
    says nothing about the server's own memory bounds."""
    with open(apiary_bin(), "rb") as f:
        return b"__asan_init" in f.read()

def source_dir():
    path = os.environ.get("APIARY_SOURCE_DIR")
    if path:
        return path
    # Fallback for running a file by hand from tests/integration/.
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def raise_nofile_limit():
    """Raises the soft RLIMIT_NOFILE to the hard limit. Call before starting the server so the child
    inherits it too (it needs one descriptor per client connection as well)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = max(soft, 65536)
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def deep_merge(base, overrides):
    """Returns a new dict: base with overrides applied recursively (nested dicts merged, everything
    else replaced)."""
    out = copy.deepcopy(base)
    for key, value in (overrides or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_prctl():
    # Resolved here, in the parent: the child between fork and exec should only call it.
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _load_prctl()
_PR_SET_PDEATHSIG = 1


def _die_with_parent():
    """preexec_fn: have the kernel SIGKILL the server when the thread that started it exits (e.g. the
    test runner killed by a ctest timeout), so no stray server outlives the suite. Servers are started
    from the main thread, so that is the runner's lifetime. Best effort, Linux only."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


# --------------------------------------------------------------------------------------------------
# the server under test


class ServerStartError(RuntimeError):
    pass


class ApiaryServer:
    """Context manager running one apiary process.

        with ApiaryServer({"timeouts": {"header_ms": 500}}, threads=1) as srv:
            sock = srv.connect()

    stdout and stderr both go into one pipe that a background thread drains line by line, so the
    server can never block on a full pipe however much it logs. log_text() first has that thread read
    whatever is in the pipe, so it holds every line the process had written when it was called."""

    def __init__(self, config_overrides=None, threads=1, extra_args=(), startup_timeout=10.0, nofile=None,
                 binary=None, cwd=None, env=None, run_as=None):
        self.binary = binary  # another app built on the library (examples/), else the apiary binary
        self.cwd = cwd  # the server's working directory (default: the test's)
        self.env = env  # variables added to the server's environment
        self.run_as = run_as  # (uid, gid) the server runs as, for a root test runner that needs limits
        self.config = deep_merge(DEFAULT_CONFIG, config_overrides or {})
        self.threads = threads
        self.nofile = nofile  # RLIMIT_NOFILE for the server process, to test descriptor exhaustion
        self.extra_args = list(extra_args)
        self.startup_timeout = startup_timeout
        self.proc = None
        self.port = None
        self.config_path = None
        self._tmpdir = None
        self._lines = []
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._eof = False
        self._reader = None
        self._pipe = None
        self._wake = None  # (read fd, write fd): log_text() wakes the reader to catch up
        self._sync_asked = 0  # catch-ups asked for, and done (under _lock)
        self._sync_done = 0
        self._closing = False

    # -- lifecycle --

    def start(self):
        self._tmpdir = tempfile.TemporaryDirectory(prefix="apiary-it-")
        self.config_path = os.path.join(self._tmpdir.name, "apiary.json")
        # The embedded SQL default is a SQLite file; each server gets its own, in its temporary
        # directory, rather than an apiary.db in the working directory.
        sql = self.config.setdefault("sql", {})
        if not sql.get("url"):
            sql["url"] = "sqlite:" + os.path.join(self._tmpdir.name, "apiary.db")
        with open(self.config_path, "w", encoding="utf-8") as f:
            json.dump(self.config, f, indent=2)
        if self.run_as:
            os.chmod(self._tmpdir.name, 0o755)  # its config must be readable by that user
            os.chmod(self.config_path, 0o644)
        argv = [self.binary or apiary_bin(), "--config", self.config_path, "--listen", f"{HOST}:0",
                "--threads", str(self.threads)] + self.extra_args
        read_fd, write_fd = os.pipe()
        try:
            nofile, run_as = self.nofile, self.run_as

            def preexec():
                if nofile is not None:
                    resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))
                if run_as:
                    os.setgroups([])
                    os.setgid(run_as[1])
                    os.setuid(run_as[0])
                _die_with_parent()  # last: a change of credentials clears the parent-death signal

            env = dict(os.environ, **self.env) if self.env else None
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=write_fd, stderr=write_fd,
                                         close_fds=True, preexec_fn=preexec, cwd=self.cwd, env=env)
        except BaseException:
            os.close(read_fd)
            os.close(write_fd)
            self._tmpdir.cleanup()
            raise
        os.close(write_fd)  # the child holds the only write end now: EOF when it exits
        self._pipe = os.fdopen(read_fd, "rb", buffering=0)
        os.set_blocking(read_fd, False)
        self._wake = os.pipe()
        for wake_fd in self._wake:
            os.set_blocking(wake_fd, False)
        self._reader = threading.Thread(target=self._drain_log, name="apiary-log", daemon=True)
        self._reader.start()
        try:
            self.port = self._wait_for_port()
        except BaseException:
            self.stop()
            raise
        return self

    def _drain_log(self):
        buf = b""
        fd, wake = self._pipe.fileno(), self._wake[0]
        eof = False
        while not eof:
            try:
                ready, _, _ = select.select([fd, wake], [], [])
            except (OSError, ValueError):
                break
            with self._lock:
                # Asked before the reads below: they take everything the process wrote before that.
                asked = self._sync_asked
                if self._closing:
                    break
            if wake in ready:
                try:
                    os.read(wake, 4096)
                except BlockingIOError:
                    pass
            while True:  # everything the pipe holds now
                try:
                    chunk = os.read(fd, 65536)
                except BlockingIOError:
                    break
                except OSError:
                    chunk = b""
                if not chunk:
                    eof = True
                    break
                buf += chunk
            *complete, buf = buf.split(b"\n")
            with self._changed:
                self._lines.extend(line.decode("utf-8", "replace") for line in complete)
                self._sync_done = asked
                self._changed.notify_all()
        with self._changed:
            if buf:
                self._lines.append(buf.decode("utf-8", "replace"))
            self._eof = True
            self._changed.notify_all()

    def _wait_for_port(self):
        deadline = time.monotonic() + self.startup_timeout
        with self._changed:
            while True:
                for line in self._lines:
                    m = LISTEN_RE.search(line)
                    if m:
                        return int(m.group(1))
                if self._eof:
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(min(remaining, 0.1))
        try:
            rc = self.proc.wait(0.5)  # after EOF the exit status follows right away
        except subprocess.TimeoutExpired:
            rc = None
        raise ServerStartError(
            f"apiary did not print 'listening on http://127.0.0.1:PORT' within {self.startup_timeout} s "
            f"(exit code {rc}); config:\n{json.dumps(self.config)}\nlog:\n{self.log_text()}")

    def stop(self):
        """Stops the server if it still runs (SIGTERM, 10 s grace, then SIGKILL) and cleans up.
        Returns the exit code (negative for a signal, as subprocess reports it)."""
        rc = None
        if self.proc is not None:
            if self.proc.poll() is None:
                self._signal(signal.SIGTERM)
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self._signal(signal.SIGKILL)
                    self.proc.wait(10)
            rc = self.proc.returncode
        if self._reader is not None:
            self._reader.join(5)
            if self._reader.is_alive():  # a child the server left behind holds the pipe open
                with self._lock:
                    self._closing = True
                self._wake_reader()
                self._reader.join(5)
            self._reader = None
        if self._pipe is not None:
            try:
                self._pipe.close()
            except OSError:
                pass
            self._pipe = None
        if self._wake is not None:
            for wake_fd in self._wake:
                os.close(wake_fd)
            self._wake = None
        if self._tmpdir is not None:
            self._tmpdir.cleanup()
            self._tmpdir = None
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
        if exc[0] is None:
            self.assert_no_sanitizer_report()
        return False

    def assert_no_sanitizer_report(self):
        """In the sanitizer build a memory error, leak or undefined behaviour prints a report; it must
        fail the test even when the process happened to exit 0."""
        log = self.log_text()
        if re.search(r"ERROR: [A-Za-z]+Sanitizer|runtime error:", log):
            raise AssertionError(f"sanitizer report in the server's output:\n{log}")

    # -- process control (only ever the PID this object started) --

    def _signal(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, sig)
            except ProcessLookupError:
                pass

    def sigterm(self):
        self._signal(signal.SIGTERM)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait(self, timeout):
        """Exit code once the process has exited, or None if it is still running after timeout s.
        Once it has exited, also waits for the log reader to reach EOF (up to 5 s more), so that
        log_text() then holds every line the process wrote: the exit status can arrive before the
        reader thread has read the pipe's last lines."""
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._wait_for_eof(5.0)
        return rc

    def _wait_for_eof(self, timeout):
        # The pipe reaches EOF when the last writer closes it: the process, or a child it left behind
        # (which is why this is bounded).
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._eof and self._reader is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.1))
            return True

    # -- log --

    def log_text(self):
        """Every line the process had written when this was called (not later ones: a line the server
        writes after the event a test waits for needs wait_for_log)."""
        self._sync_log(5.0)
        with self._lock:
            return "\n".join(self._lines)

    def _wake_reader(self):
        try:
            os.write(self._wake[1], b"x")
        except BlockingIOError:
            pass  # the reader has wake-ups pending already

    def _sync_log(self, timeout):
        """Has the reader read everything in the pipe now; False if it did not within timeout s."""
        deadline = time.monotonic() + timeout
        with self._changed:
            if self._eof or self._reader is None or self._closing:
                return True
            self._sync_asked += 1
            asked = self._sync_asked
            self._wake_reader()
            while self._sync_done < asked and not self._eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, 0.1))
            return True

    def wait_for_log(self, pattern, timeout):
        """Waits until a log line matches the regex; returns the match or None."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self._lines:
                    m = rx.search(line)
                    if m:
                        return m
                remaining = deadline - time.monotonic()
                if self._eof or remaining <= 0:
                    return None
                self._changed.wait(min(remaining, 0.1))

    # -- clients --

    @property
    def address(self):
        return (HOST, self.port)

    def connect(self, timeout=5.0, rcvbuf=None):
        """A connected TCP socket to the server. rcvbuf (bytes) shrinks SO_RCVBUF before connecting,
        which fixes the advertised window small (for tests that must fill the server's output)."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            if rcvbuf is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.settimeout(timeout)
            sock.connect(self.address)
        except BaseException:
            sock.close()
            raise
        return sock


# --------------------------------------------------------------------------------------------------
# raw HTTP/1.1 client side


class ConnectionClosed(Exception):
    """The peer closed (EOF) before a complete response arrived; .partial holds what did arrive."""

    def __init__(self, message, partial=b""):
        super().__init__(message)
        self.partial = partial


class ProtocolError(Exception):
    """The bytes the server sent are not a well-formed HTTP/1.1 response."""


class Headers:
    """Response header fields: case-insensitive lookup plus the original ordered list."""

    def __init__(self, items):
        self.items = list(items)  # [(name, value)] in arrival order, names as sent
        self._by_name = {}
        for name, value in self.items:
            self._by_name.setdefault(name.lower(), []).append(value)

    def get(self, name, default=None):
        values = self._by_name.get(name.lower())
        return ", ".join(values) if values else default

    def get_all(self, name):
        return list(self._by_name.get(name.lower(), []))

    def __getitem__(self, name):
        value = self.get(name)
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name):
        return name.lower() in self._by_name

    def __repr__(self):
        return f"Headers({self.items!r})"


class Response:
    def __init__(self, version, status, reason, headers, body, raw_head):
        self.version = version      # "HTTP/1.1"
        self.status = status        # int
        self.reason = reason        # "OK"
        self.headers = headers      # Headers
        self.body = body            # bytes (already de-chunked)
        self.raw_head = raw_head    # bytes of status line + headers, including the final CRLFCRLF

    def json(self):
        return json.loads(self.body.decode("utf-8"))

    def connection_tokens(self):
        """The Connection header's tokens, lower-cased ({"close"}, {"keep-alive"}, ...)."""
        value = self.headers.get("Connection", "")
        return {t.strip().lower() for t in value.split(",") if t.strip()}

    def __repr__(self):
        return f"<Response {self.status} {self.reason!r} headers={self.headers.items!r} body={self.body[:200]!r}>"


# Bytes received past the end of the response being read (pipelining), per socket.
_pending = weakref.WeakKeyDictionary()


def pending_bytes(sock):
    """Bytes already received on sock but not yet consumed by read_response."""
    return bytes(_pending.get(sock, b""))


def _recv_more(sock, buf, deadline):
    """Appends at least one recv() worth to buf. Raises ConnectionClosed on EOF, socket.timeout when
    the overall deadline passes (each recv also obeys the socket's own timeout)."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("timed out reading the response")
    old = sock.gettimeout()
    sock.settimeout(remaining if old is None else min(old, remaining))
    try:
        chunk = sock.recv(65536)
    finally:
        sock.settimeout(old)
    if not chunk:
        raise ConnectionClosed("connection closed before a complete response", bytes(buf))
    buf += chunk


def _read_until(sock, buf, marker, start, deadline, limit=1 << 20):
    """Index of marker in buf at or after start, receiving more as needed."""
    while True:
        idx = buf.find(marker, start)
        if idx >= 0:
            return idx
        if len(buf) - start > limit:
            raise ProtocolError(f"no {marker!r} within {limit} bytes")
        _recv_more(sock, buf, deadline)


def _read_exact(sock, buf, end, deadline):
    """Receives until buf holds at least end bytes."""
    while len(buf) < end:
        _recv_more(sock, buf, deadline)


def read_response(sock, head_request=False, timeout=10.0):
    """Reads one complete response from sock. head_request: the request was HEAD, so there is no
    body whatever Content-Length says. 1xx responses are returned as they are (read again for the
    final one). The body is framed by chunked encoding, Content-Length, or connection close.
    Bytes are consumed only once the whole response is there, so after a timeout the partial
    response stays buffered and a later call can still read it."""
    deadline = time.monotonic() + timeout
    buf = _pending.setdefault(sock, bytearray())
    end = _read_until(sock, buf, b"\r\n\r\n", 0, deadline)
    raw_head = bytes(buf[:end + 4])
    pos = end + 4
    lines = raw_head[:-4].split(b"\r\n")
    m = re.match(rb"^(HTTP/\d\.\d) (\d{3}) ?(.*)$", lines[0])
    if not m:
        raise ProtocolError(f"bad status line {lines[0]!r}")
    version, status, reason = m.group(1).decode(), int(m.group(2)), m.group(3).decode("latin-1")
    items = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not name or name != name.strip() or b"\n" in line:
            raise ProtocolError(f"bad header line {line!r} in {raw_head!r}")
        items.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    headers = Headers(items)

    if head_request or 100 <= status < 200 or status in (204, 304):
        body = b""
    elif "chunked" in headers.get("Transfer-Encoding", "").lower():
        body, pos = _read_chunked(sock, buf, pos, deadline)
    elif "Content-Length" in headers:
        values = headers.get_all("Content-Length")
        if len(set(values)) != 1 or not values[0].isdigit():
            raise ProtocolError(f"bad Content-Length {values!r}")
        n = int(values[0])
        _read_exact(sock, buf, pos + n, deadline)
        body = bytes(buf[pos:pos + n])
        pos += n
    else:
        # Close-delimited body (HTTP/1.0 style): everything until EOF.
        try:
            while True:
                _recv_more(sock, buf, deadline)
        except ConnectionClosed:
            pass
        body = bytes(buf[pos:])
        pos = len(buf)
    del buf[:pos]
    return Response(version, status, reason, headers, body, raw_head)


def _read_chunked(sock, buf, pos, deadline):
    """De-chunks the body starting at buf[pos]; returns (body, position after the trailers)."""
    body = bytearray()
    while True:
        idx = _read_until(sock, buf, b"\r\n", pos, deadline)
        size_text = bytes(buf[pos:idx]).split(b";", 1)[0].strip()
        pos = idx + 2
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ProtocolError(f"bad chunk size {size_text!r}") from None
        if size == 0:
            # Trailer section: header lines until an empty line.
            while True:
                idx = _read_until(sock, buf, b"\r\n", pos, deadline)
                empty = idx == pos
                pos = idx + 2
                if empty:
                    return bytes(body), pos
        _read_exact(sock, buf, pos + size + 2, deadline)
        if bytes(buf[pos + size:pos + size + 2]) != b"\r\n":
            raise ProtocolError("chunk data not followed by CRLF")
        body += buf[pos:pos + size]
        pos += size + 2


def build_request(method, path, headers=None, body=None, version="HTTP/1.1", host=True):
    """Bytes of one request. headers: dict or list of (name, value), sent as given and in order.
    A Host header is added unless one is given or host=False; Content-Length is added for a body
    unless Content-Length or Transfer-Encoding is given. body: bytes, str, or None."""
    items = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    names = {name.lower() for name, _ in items}
    if isinstance(body, str):
        body = body.encode("utf-8")
    if host and "host" not in names:
        items.insert(0, ("Host", HOST))
    if body is not None and "content-length" not in names and "transfer-encoding" not in names:
        items.append(("Content-Length", str(len(body))))
    head = f"{method} {path} {version}\r\n" + "".join(f"{n}: {v}\r\n" for n, v in items) + "\r\n"
    return head.encode("latin-1") + (body or b"")



def rss_kib(pid):
    """The process's resident set (VmRSS) in KiB."""
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def open_fds(pid):
    """How many descriptors the process has open."""
    return len(os.listdir(f"/proc/{pid}/fd"))


def slow_pipelining_reader(server, seconds, rate, sample_every=1.0):
    """One client that pipelines GET /v1/hello without pause (256 a write, from a thread) and reads
    the answers at `rate` bytes/s for `seconds`: the slow reader a server must not buffer for. Returns
    (bytes read, [(elapsed s, server RSS KiB)] sampled every `sample_every` s from the first second)."""
    sock = server.connect()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    stop = threading.Event()
    batch = build_request("GET", "/v1/hello") * 256

    def send_forever():
        try:
            while not stop.is_set():
                sock.sendall(batch)
        except OSError:
            pass

    sender = threading.Thread(target=send_forever, daemon=True)
    sender.start()
    got, start, samples, next_sample = 0, time.monotonic(), [], 1.0
    try:
        while time.monotonic() - start < seconds:
            chunk = sock.recv(65536)
            if not chunk:
                break
            got += len(chunk)
            elapsed = time.monotonic() - start
            if elapsed >= next_sample:
                samples.append((elapsed, rss_kib(server.proc.pid)))
                next_sample += sample_every
            ahead = got / rate - elapsed
            if ahead > 0:
                time.sleep(ahead)
        samples.append((time.monotonic() - start, rss_kib(server.proc.pid)))
    finally:
        stop.set()
        sock.close()
        sender.join(5)
    return got, samples

def request(sock, method, path, headers=None, body=None, version="HTTP/1.1", timeout=10.0):
    """Sends one request and reads its response."""
    sock.sendall(build_request(method, path, headers, body, version))
    return read_response(sock, head_request=(method == "HEAD"), timeout=timeout)


def json_request_body(value):
    return json.dumps(value).encode("utf-8")


def echo_request(value, extra_headers=None, content_type="application/json"):
    """Bytes of a POST /v1/echo carrying value as JSON."""
    headers = [("Content-Type", content_type)] + list(extra_headers or [])
    return build_request("POST", "/v1/echo", headers, json_request_body(value))


def readable(sock, timeout):
    """True when sock has bytes (or EOF/error) to read within timeout, counting bytes already
    buffered by read_response."""
    if _pending.get(sock):
        return True
    r, _, _ = select.select([sock], [], [], timeout)
    return bool(r)


def expect_closed(sock, timeout, allow_data=False):
    """True when the server closes the connection (recv returns b'' or ECONNRESET) within timeout.
    With allow_data=False any byte received first (including bytes already buffered) makes it
    False: the close must be silent. With allow_data=True received bytes are discarded."""
    if _pending.get(sock):
        if not allow_data:
            return False
        del _pending[sock][:]
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        r, _, _ = select.select([sock], [], [], remaining)
        if not r:
            return False
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, ConnectionAbortedError):
            return True
        except BlockingIOError:
            continue
        except OSError as e:
            if e.errno in (errno.ECONNRESET, errno.EPIPE):
                return True
            raise
        if not chunk:
            return True
        if not allow_data:
            return False


def drain_until_closed(sock, timeout):
    """Reads and keeps everything until EOF/reset or timeout. Returns (closed, data)."""
    data = bytearray(_pending.pop(sock, b""))
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, bytes(data)
        r, _, _ = select.select([sock], [], [], remaining)
        if not r:
            return False, bytes(data)
        try:
            chunk = sock.recv(1 << 20)
        except (ConnectionResetError, ConnectionAbortedError):
            return True, bytes(data)
        except BlockingIOError:
            continue
        if not chunk:
            return True, bytes(data)
        data += chunk


def abort(sock):
    """Closes sock with an RST instead of a FIN (SO_LINGER 0): an abrupt client disconnect."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    sock.close()


def refuses_new_requests(address, deadline_s=3.0):
    """Polls until a new connection to address is refused, or is accepted but closed/reset without
    an answer to a request. Returns how it ended ('refused' or 'closed'), or None if until deadline_s
    every attempt was still answered or left hanging."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.settimeout(1.0)
        try:
            try:
                sock.connect(address)
            except (ConnectionRefusedError, ConnectionResetError):
                return "refused"
            try:
                sock.sendall(build_request("GET", "/healthz"))
                read_response(sock, timeout=1.0)
            except (ConnectionClosed, ConnectionResetError, BrokenPipeError):
                return "closed"
            except socket.timeout:
                # Sitting in the backlog of a listener that is still open: neither refused nor
                # closed yet, so keep polling.
                pass
            # Any answer at all means the server still accepts new connections.
        finally:
            sock.close()
        time.sleep(0.05)
    return None


# --------------------------------------------------------------------------------------------------
# assertions shared by the test files (mix into unittest.TestCase)


class ApiaryAssertions:
    def assertCommonHeaders(self, resp, head_request=False):
        """Date (IMF-fixdate, close to now), Server (apiary...), Content-Length (matching the body).
        Interim 1xx responses are exempt: the spec fixes them to a bare status line."""
        if 100 <= resp.status < 200:
            return
        date = resp.headers.get("Date")
        self.assertIsNotNone(date, f"no Date header: {resp!r}")
        self.assertRegex(date, IMF_FIXDATE_RE, "Date is not an IMF-fixdate")
        sent = email.utils.parsedate_to_datetime(date).timestamp()
        self.assertLess(abs(sent - time.time()), 60, f"Date {date!r} is not the current time")
        self.assertEqual(len(resp.headers.get_all("Date")), 1, "more than one Date header")
        server = resp.headers.get("Server")
        self.assertIsNotNone(server, f"no Server header: {resp!r}")
        self.assertTrue(server.startswith("apiary"), f"Server header {server!r} does not start with 'apiary'")
        lengths = resp.headers.get_all("Content-Length")
        self.assertEqual(len(lengths), 1, f"expected exactly one Content-Length: {resp!r}")
        self.assertRegex(lengths[0], r"^\d+$")
        self.assertNotIn("Transfer-Encoding", resp.headers, "responses are Content-Length framed")
        if not head_request:
            self.assertEqual(int(lengths[0]), len(resp.body))

    def assertJson(self, resp, status, expected):
        """Status, Content-Type: application/json, the parsed body equals expected."""
        self.assertEqual(resp.status, status, f"unexpected response {resp!r}")
        self.assertIn(resp.reason, REASONS.get(status, (resp.reason,)))
        self.assertEqual(resp.headers.get("Content-Type"), "application/json", repr(resp))
        self.assertCommonHeaders(resp)
        self.assertEqual(resp.json(), expected)

    def assertHello(self, resp):
        self.assertJson(resp, 200, HELLO)

    def assertProblem(self, resp, status):
        """An RFC 9457 problem document exactly as the spec describes it; returns the parsed body."""
        self.assertEqual(resp.status, status, f"unexpected response {resp!r}")
        self.assertIn(resp.reason, REASONS[status], "unexpected reason phrase")
        self.assertEqual(resp.headers.get("Content-Type"), "application/problem+json", repr(resp))
        self.assertCommonHeaders(resp)
        doc = resp.json()
        self.assertIsInstance(doc, dict)
        self.assertEqual(set(doc), {"type", "title", "status", "detail"}, f"problem members: {doc!r}")
        self.assertEqual(doc["type"], "about:blank")
        self.assertEqual(doc["title"], resp.reason, "title must be the status line's reason phrase")
        self.assertIs(type(doc["status"]), int)
        self.assertEqual(doc["status"], status)
        self.assertIsInstance(doc["detail"], str)
        self.assertTrue(doc["detail"].strip(), "detail must be a non-empty string")
        return doc

    def assertClosedByServer(self, sock, timeout=3.0, silently=True):
        self.assertTrue(expect_closed(sock, timeout, allow_data=not silently),
                        f"the server did not close the connection within {timeout} s"
                        + (" (or sent unexpected bytes)" if silently else ""))

    def assertStillOpen(self, sock):
        """The connection still serves a request (the server did not close it)."""
        self.assertHello(request(sock, "GET", "/v1/hello"))

    def assertServing(self, server):
        """A fresh connection is served correctly: a bad client did not hurt anyone else."""
        self.assertTrue(server.alive(), f"server process exited:\n{server.log_text()}")
        with server.connect() as sock:
            self.assertHello(request(sock, "GET", "/v1/hello"))


class ServerTestMixin(ApiaryAssertions):
    """One server for the whole TestCase class (setUpClass). Subclasses set CONFIG and THREADS.
    Not a TestCase itself, so importing it never makes unittest run it on its own."""

    CONFIG = {}
    THREADS = 1
    RAISE_NOFILE = False
    SERVER_NOFILE = None  # descriptor limit of the server process (None: inherited)

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.RAISE_NOFILE:
            raise_nofile_limit()
        cls.server = ApiaryServer(cls.CONFIG, threads=cls.THREADS, nofile=cls.SERVER_NOFILE)
        cls.server.start()

    @classmethod
    def tearDownClass(cls):
        server = cls.server
        was_alive = server.alive()
        rc = server.stop()
        super().tearDownClass()
        if not was_alive:
            raise AssertionError(f"server died during the class (exit {rc}); log:\n{server.log_text()}")
        if rc != 0:
            raise AssertionError(f"server exited {rc} on SIGTERM at the end of the class; log:\n{server.log_text()}")
        server.assert_no_sanitizer_report()

    def test_zzz_server_still_alive(self):
        """Runs last in every class (unittest sorts by name): the process survived every test above."""
        self.assertTrue(self.server.alive(), f"server exited:\n{self.server.log_text()}")
        self.assertServing(self.server)
