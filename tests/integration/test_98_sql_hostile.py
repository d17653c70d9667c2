"""A hostile database costs an answer, never the process (issue 18): what apiary does when the
database, or something on the wire to it, answers other than the statement asks.

- RewritingProxy is a man in the middle on the plaintext MariaDB link: it forwards bytes both ways
  and rewrites the SQL text of the COM_STMT_PREPARE packets apiary sends, so the real server answers
  another shape (fewer columns, other types) or announces more `?` than apiary binds.
  MariadbHostileTest uses it for: a result of the wrong column count or types (502, finding 2), a
  server announcing another parameter count (500 naming the statement, no ASan report, finding 3);
  and, without the proxy, a 64 MiB cell in a bounded statement (500 too_large with peak RSS growth
  far below the cell, finding 4).
- SqliteHostileTest: the same shape and size checks on SQLite, whose file anyone with access may
  have filled with other types or huge values.
- MariadbTlsTest: sql.url's ?ssl=required|verify-ca|verify-full against a private mariadbd with a
  test CA and certificates made here with the openssl CLI.

Every mariadbd is test_97_sql's MariadbServer (private, loopback, own PID only)."""

import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

import apiary_harness
from apiary_harness import ApiaryServer, ServerStartError, request
from test_80_async import AsyncAssertions
from test_97_sql import (HAVE_MARIADB, HAVE_POSTGRES, NO_MARIADB, NO_POSTGRES, PASSWORD, MariadbServer, PostgresServer,
                         wait_ready)

JSON = {"Content-Type": "application/json"}
OPENSSL = shutil.which("openssl")

# apiary's statements (handlers/items.c, handlers/world.c), as the proxy sees them.
ITEMS_SELECT = "SELECT id, name, price, created_at FROM items WHERE id = ?"
ITEMS_PAGE = "SELECT id, name, price, created_at FROM items WHERE id > ? ORDER BY id LIMIT ?"
ITEMS_DELETE = "DELETE FROM items WHERE id = ?"
WORLD_SELECT = "SELECT id, randomNumber FROM world WHERE id = ?"

BIG_CELL = 64 * 1024 * 1024


class RewritingProxy:
    """Forwards 127.0.0.1:self.port to the upstream port. Client-to-server packets are parsed (3-byte
    length, sequence number, payload) so that a COM_STMT_PREPARE (0x16) whose SQL is a key of
    self.rewrites is sent with the value instead; everything else passes unchanged. The SQL of every
    statement apiary prepares is kept in self.prepared, as apiary sent it."""

    def __init__(self, upstream_port, rewrites):
        self.upstream_port = upstream_port
        self.rewrites = dict(rewrites)
        self.rewritten = 0
        self.prepared = []
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.socks = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self.lock:
                self.socks += [client, upstream]
            threading.Thread(target=self._server_to_client, args=(upstream, client), daemon=True).start()
            threading.Thread(target=self._client_to_server, args=(client, upstream), daemon=True).start()

    @staticmethod
    def _close(*socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _server_to_client(self, upstream, client):
        try:
            while True:
                data = upstream.recv(1 << 16)
                if not data:
                    break
                client.sendall(data)
        except OSError:
            pass
        self._close(client, upstream)

    def _client_to_server(self, client, upstream):
        buf = b""
        try:
            while True:
                data = client.recv(1 << 16)
                if not data:
                    break
                buf += data
                while len(buf) >= 4:
                    n = int.from_bytes(buf[:3], "little")
                    if len(buf) < 4 + n:
                        break
                    seq, payload, buf = buf[3], buf[4:4 + n], buf[4 + n:]
                    if payload[:1] == b"\x16":
                        self.prepared.append(payload[1:].decode(errors="replace"))
                        new = self.rewrites.get(payload[1:].decode(errors="replace"))
                        if new is not None:
                            payload = b"\x16" + new.encode()
                            self.rewritten += 1
                    upstream.sendall(len(payload).to_bytes(3, "little") + bytes([seq]) + payload)
        except OSError:
            pass
        self._close(client, upstream)

    def close(self):
        self.listener.close()
        with self.lock:
            self._close(*self.socks)
            for s in self.socks:
                s.close()


def reset_peak_rss(pid):
    """Resets VmHWM to the current RSS (Linux: writing 5 to clear_refs)."""
    with open(f"/proc/{pid}/clear_refs", "w") as f:
        f.write("5")


def memory_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1])
    return out


class HostileMixin(AsyncAssertions):
    def post_item(self, srv, name="widget", price=1.5):
        with srv.connect() as sock:
            resp = request(sock, "POST", "/v1/items", JSON, json.dumps({"name": name, "price": price}).encode())
        self.assertEqual(resp.status, 201, resp)
        return resp.json()["id"]

    def get(self, srv, path, method="GET"):
        with srv.connect() as sock:
            return request(sock, method, path, timeout=30)

    def assertStillServes(self, srv):
        self.assertEqual(self.get(srv, "/v1/hello").status, 200)
        self.assertEqual(self.get(srv, "/healthz").status, 200)

    def assertAnotherRowIs502(self, srv, proxy):
        """The world SELECT answers the row after the one asked for (proxy-rewritten): every world
        route answers 502 and /v1/updates writes nothing, because the ids it would write are the ones
        it read (before the check, /v1/db and /v1/queries answered 200 with rows nobody asked for, and
        /v1/updates wrote them)."""
        for path in ("/v1/db", "/v1/queries?queries=3", "/v1/updates?queries=2"):
            with self.subTest(path=path):
                resp = self.get(srv, path)
                self.assertProblemDoc(resp, 502)
                self.assertEqual(resp.json()["detail"], "the database answered in an unexpected shape")
        self.assertGreaterEqual(proxy.rewritten, 1)
        self.assertIsNotNone(srv.wait_for_log(r"asked for id \d+, the database answered the row of id \d+", timeout=5))
        self.assertFalse([q for q in proxy.prepared if q.startswith("UPDATE world")], proxy.prepared)
        self.assertStillServes(srv)

    def assertBoundedPeak(self, srv, path, label):
        """GET path answers the too-large 500, and the process's peak RSS grows far less than the
        64 MiB cell (it grew ~255 MB before the fix on MariaDB). Prints the figure for the report."""
        pid = srv.proc.pid
        self.assertEqual(self.get(srv, "/v1/hello").status, 200)
        reset_peak_rss(pid)
        before = memory_kib(pid)
        resp = self.get(srv, path)
        after = memory_kib(pid)
        self.assertEqual(resp.status, 500, srv.log_text())
        self.assertProblemDoc(resp, 500)
        growth_kib = after["VmHWM"] - before["VmRSS"]
        print(f"\n[peak] {label}: {path} with a {BIG_CELL >> 20} MiB cell: 500; peak RSS +{growth_kib / 1024:.1f} MiB "
              f"(RSS {before['VmRSS'] / 1024:.1f} -> {after['VmRSS'] / 1024:.1f} MiB)", flush=True)
        self.assertLess(growth_kib, 16 * 1024, f"peak RSS grew {growth_kib} KiB reading a bounded statement")
        return growth_kib


# --------------------------------------------------------------------------------------------------
class AnswerCorruptingProxy(RewritingProxy):
    """A RewritingProxy that can also break the server's side of the protocol: while self.corrupt > 0,
    the first packet of the next answer (sequence number 1) is passed on with sequence number 7, as a
    broken or hostile server (or a man in the middle) would send it."""

    corrupt = 0

    def _server_to_client(self, upstream, client):
        buf = b""
        try:
            while True:
                data = upstream.recv(1 << 16)
                if not data:
                    break
                buf += data
                out = b""
                while len(buf) >= 4:
                    n = int.from_bytes(buf[:3], "little")
                    if len(buf) < 4 + n:
                        break
                    packet, buf = bytearray(buf[:4 + n]), buf[4 + n:]
                    if self.corrupt > 0 and packet[3] == 1:
                        self.corrupt -= 1
                        packet[3] = 7
                    out += bytes(packet)
                if out:
                    client.sendall(out)
        except OSError:
            pass
        self._close(client, upstream)


# MariaDB: a man in the middle, and a huge cell


@unittest.skipUnless(HAVE_MARIADB, NO_MARIADB)
class MariadbHostileTest(HostileMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        # A large max_allowed_packet lets the server build and send the 64 MiB cell.
        cls.db = MariadbServer(extra_args=["--max-allowed-packet=256M"]).start()

    @classmethod
    def tearDownClass(cls):
        cls.db.cleanup()

    def apiary_via(self, rewrites, database):
        proxy = RewritingProxy(self.db.port, rewrites)
        self.addCleanup(proxy.close)
        url = f"mysql://apiary:{PASSWORD}@127.0.0.1:{proxy.port}/{database}"
        srv = ApiaryServer({"sql": {"url": url, "connections_per_loop": 2, "query_timeout_ms": 5000}}).start()
        self.addCleanup(srv.assert_no_sanitizer_report)
        self.addCleanup(srv.stop)
        wait_ready(self, srv)
        return srv, proxy

    def test_wrong_column_count_is_502(self):
        """Before the fix: items_json read four cells of a one-column result, took stale request
        memory for a string length and aborted ("out of memory allocating ..." bytes)."""
        srv, proxy = self.apiary_via({ITEMS_SELECT: "SELECT id FROM items WHERE id = ?",
                                      WORLD_SELECT: "SELECT id FROM world WHERE id = ?"}, "shape_cols")
        item = self.post_item(srv)
        for path in (f"/v1/items/{item}", "/v1/db", "/v1/queries?queries=3", "/v1/updates?queries=2"):
            with self.subTest(path=path):
                resp = self.get(srv, path)
                self.assertProblemDoc(resp, 502)
                self.assertEqual(resp.json()["detail"], "the database answered in an unexpected shape")
        self.assertGreaterEqual(proxy.rewritten, 2)
        # Statements the proxy leaves alone still work, and so does everything else.
        self.assertEqual(self.get(srv, "/v1/items?limit=5").status, 200)
        self.assertStillServes(srv)
        self.assertIn("answering 502", srv.log_text())
        self.assertTrue(srv.alive())

    def test_wrong_types_are_502(self):
        srv, proxy = self.apiary_via({ITEMS_PAGE: "SELECT name, id, price, created_at FROM items WHERE id > ? "
                                                  "ORDER BY id LIMIT ?",
                                      ITEMS_SELECT: "SELECT id, name, created_at, price FROM items WHERE id = ?"},
                                     "shape_types")
        item = self.post_item(srv)
        self.assertProblemDoc(self.get(srv, "/v1/items?limit=3"), 502)
        self.assertProblemDoc(self.get(srv, f"/v1/items/{item}"), 502)
        self.assertEqual(self.get(srv, "/v1/db").status, 200)
        self.assertStillServes(srv)

    def test_another_row_is_502_and_nothing_is_written(self):
        srv, proxy = self.apiary_via({WORLD_SELECT: "SELECT 1 + id % 10000, randomNumber FROM world WHERE id = ?"},
                                     "another_row")
        self.assertAnotherRowIs502(srv, proxy)

    def test_answer_out_of_sequence_closes_the_connection(self):
        """A pipelined statement's answer that breaks the protocol (a packet out of sequence) is read
        by apiary's own reader (lib/clients/sql_mariadb_wire.c): the statement fails connection_lost
        (503), the log says why, the connection is closed, and the next statements succeed."""
        proxy = AnswerCorruptingProxy(self.db.port, {})
        self.addCleanup(proxy.close)
        url = f"mysql://apiary:{PASSWORD}@127.0.0.1:{proxy.port}/corrupt"
        srv = ApiaryServer({"sql": {"url": url, "connections_per_loop": 2, "query_timeout_ms": 5000}}).start()
        self.addCleanup(srv.assert_no_sanitizer_report)
        self.addCleanup(srv.stop)
        wait_ready(self, srv)
        for path in ("/v1/queries?queries=4", "/v1/queries?queries=4", "/v1/db", "/v1/db"):
            self.assertEqual(self.get(srv, path).status, 200)  # prepared on both connections: pipelined now
        proxy.corrupt = 1
        resp = self.get(srv, "/v1/db")
        self.assertProblemDoc(resp, 503)
        self.assertIsNotNone(srv.wait_for_log("the server's answer breaks the protocol; closing the connection", 5),
                             srv.log_text())
        self.assertGreaterEqual(self.metric(srv, "apiary_sql_connections_closed_total"), 1)
        self.assertEqual(self.get(srv, "/v1/db").status, 200)
        self.assertEqual(self.get(srv, "/v1/queries?queries=10").status, 200)
        self.assertStillServes(srv)

    def test_parameter_count_is_the_servers(self):
        """Before the fix, under ASan: heap-buffer-overflow in Connector/C reading the parameter
        array past the one value apiary binds, when the server announced three."""
        srv, proxy = self.apiary_via({WORLD_SELECT: "SELECT id, randomNumber FROM world WHERE id = ? OR id = ? OR id = ?",
                                      ITEMS_DELETE: "DELETE FROM items WHERE id = 0"}, "params")
        for path, method in (("/v1/db", "GET"), ("/v1/queries?queries=4", "GET"), ("/v1/items/1", "DELETE")):
            with self.subTest(path=path):
                resp = self.get(srv, path, method)
                self.assertProblemDoc(resp, 500)
                self.assertEqual(resp.json()["detail"], "the database could not run the query")
        for statement, takes in ((WORLD_SELECT, 3), (ITEMS_DELETE, 0)):
            line = f'the statement "{statement}" takes {takes} parameter(s) and was given 1; not run'
            self.assertIsNotNone(srv.wait_for_log(re.escape(line), timeout=5), srv.log_text())
        # The connections stay usable: the refused statements never reached the server.
        self.assertEqual(self.get(srv, "/v1/items?limit=2").status, 200)
        self.assertStillServes(srv)

    def metric(self, srv, name, labels='backend="mariadb"'):
        text = self.get(srv, "/metrics").body.decode()
        m = re.search(rf'^{re.escape(name)}{{{re.escape(labels)}}} (\S+)$', text, re.M)
        self.assertIsNotNone(m, name)
        return float(m.group(1))

    def test_too_many_rows_or_columns_is_too_large_and_keeps_the_connection(self):
        """Past the bound by many small rows, or by more columns than one row of the bound can hold:
        500, and the rest of the result is read and discarded, so the connection serves on."""
        wide = "SELECT " + ", ".join(["id"] * 80) + " FROM world WHERE id = ?"
        srv, proxy = self.apiary_via({WORLD_SELECT: "SELECT id, randomNumber FROM world WHERE id >= ?",
                                      ITEMS_SELECT: wide.replace("world", "items")}, "bounds")
        item = self.post_item(srv)
        connects = self.metric(srv, "apiary_sql_connects_total")
        for path in ("/v1/db", f"/v1/items/{item}", "/v1/db"):
            with self.subTest(path=path):
                resp = self.get(srv, path)
                self.assertProblemDoc(resp, 500)
        self.assertEqual(self.get(srv, "/v1/items?limit=3").status, 200)
        self.assertEqual(self.metric(srv, "apiary_sql_connections_closed_total"), 0)
        self.assertEqual(self.metric(srv, "apiary_sql_connects_total"), connects)
        self.assertEqual(self.metric(srv, "apiary_sql_errors_total", 'backend="mariadb",kind="too_large"'), 3)

    def test_huge_cell_is_refused_while_read(self):
        srv = ApiaryServer({"sql": {"url": self.db.url(database="bigcell"), "connections_per_loop": 1,
                                    "query_timeout_ms": 10000}}).start()
        self.addCleanup(srv.assert_no_sanitizer_report)
        self.addCleanup(srv.stop)
        wait_ready(self, srv)
        self.db.sql("ALTER TABLE items MODIFY name LONGTEXT NOT NULL", "bigcell")
        self.db.sql(f"INSERT INTO items (name, price, created_at) VALUES (REPEAT('x', {BIG_CELL}), 1, 'now')", "bigcell")
        big = int(self.db.sql("SELECT MAX(id) FROM items", "bigcell")[0][0])
        self.assertBoundedPeak(srv, f"/v1/items/{big}", "mariadb")
        self.assertBoundedPeak(srv, "/v1/items?limit=100", "mariadb")
        self.assertIn("larger than the statement's bound", srv.log_text())
        # The connection that had the rest of the packet on its socket was replaced.
        self.assertEqual(self.get(srv, "/v1/db").status, 200)
        small = self.post_item(srv)
        self.assertEqual(self.get(srv, f"/v1/items/{small}").status, 200)


# --------------------------------------------------------------------------------------------------
# SQLite: a file filled by someone else


class SqliteHostileTest(HostileMixin, unittest.TestCase):
    def apiary(self):
        srv = ApiaryServer().start()
        self.addCleanup(srv.assert_no_sanitizer_report)
        self.addCleanup(srv.stop)
        return srv, os.path.join(srv._tmpdir.name, "apiary.db")

    def test_wrong_types_are_502(self):
        srv, path = self.apiary()
        with sqlite3.connect(path, timeout=5) as db:
            bad = db.execute("INSERT INTO items (name, price, created_at) VALUES ('odd', 'not a number', 'now')").lastrowid
        self.assertProblemDoc(self.get(srv, f"/v1/items/{bad}"), 502)
        self.assertProblemDoc(self.get(srv, f"/v1/items?after={bad - 1}"), 502)
        good = self.post_item(srv)
        self.assertEqual(self.get(srv, f"/v1/items/{good}").status, 200)
        self.assertStillServes(srv)

    def test_huge_cell_is_refused_while_read(self):
        srv, path = self.apiary()
        with sqlite3.connect(path, timeout=5) as db:
            big = db.execute("INSERT INTO items (name, price, created_at) VALUES (?, 1, 'now')",
                             ("x" * BIG_CELL,)).lastrowid
        self.assertBoundedPeak(srv, f"/v1/items/{big}", "sqlite")
        self.assertBoundedPeak(srv, f"/v1/items?after={big - 1}", "sqlite")
        good = self.post_item(srv)
        self.assertEqual(self.get(srv, f"/v1/items/{good}").status, 200)


# --------------------------------------------------------------------------------------------------
# TLS to MariaDB


def openssl(*args, cwd):
    subprocess.run([OPENSSL, *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(d):
    """A CA, a second unrelated CA, and two server certificates signed by the first: one for
    127.0.0.1 (subjectAltName IP), one for 127.0.0.2 (the wrong address)."""
    for ca in ("ca", "otherca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=apiary test {ca}",
                "-keyout", f"{ca}.key", "-out", f"{ca}.pem", cwd=d)
    for name, ip in (("good", "127.0.0.1"), ("wrongip", "127.0.0.2")):
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", f"/CN={ip}", "-keyout", f"{name}.key",
                "-out", f"{name}.csr", cwd=d)
        with open(os.path.join(d, f"{name}.ext"), "w") as f:
            f.write(f"subjectAltName=IP:{ip}\nbasicConstraints=CA:FALSE\n")
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.pem", cwd=d)


@unittest.skipUnless(HAVE_MARIADB and OPENSSL, NO_MARIADB + " (or the openssl CLI is missing)")
class MariadbTlsTest(AsyncAssertions, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.TemporaryDirectory(prefix="apiary-tls-")
        make_pki(cls.pki.name)
        cls.db = MariadbServer()

    @classmethod
    def tearDownClass(cls):
        cls.db.cleanup()
        cls.pki.cleanup()

    def serve(self, cert=None, require_tls=False):
        """(Re)starts the class's mariadbd with the given certificate (None: no TLS at all)."""
        args = []
        if cert:
            p = self.pki.name
            args += [f"--ssl-ca={p}/ca.pem", f"--ssl-cert={p}/{cert}.pem", f"--ssl-key={p}/{cert}.key"]
        if require_tls:
            args.append("--require-secure-transport=ON")
        if self.db.proc is not None and self.db.extra_args == args:
            return
        self.db.stop()
        self.db.extra_args = args
        self.db.start()

    def url(self, query, database="tls"):
        return f"mysql://apiary:{PASSWORD}@127.0.0.1:{self.db.port}/{database}?{query}"

    def apiary(self, query):
        srv = ApiaryServer({"sql": {"url": self.url(query), "query_timeout_ms": 2000}}).start()
        self.addCleanup(srv.assert_no_sanitizer_report)
        self.addCleanup(srv.stop)
        return srv

    def assertWorks(self, query):
        srv = self.apiary(query)
        wait_ready(self, srv, timeout=15)
        with srv.connect() as sock:
            for path in ("/v1/db", "/v1/queries?queries=3"):
                resp = request(sock, "GET", path)
                self.assertEqual(resp.status, 200, f"{query}: {resp}\n{srv.log_text()}")
        self.assertIn("TLS " + re.search(r"ssl=([a-z-]+)", query).group(1), srv.log_text())
        self.assertSecret(srv)

    def assertRefused(self, query, words):
        """A refused connection never becomes usable, so the startup hook's migrations wait for it for
        sql.startup_timeout_ms and then stop the start (exit 1): apiary never listens without its
        tables. The log names the TLS mode and never the secret."""
        srv = ApiaryServer({"sql": {"url": self.url(query), "query_timeout_ms": 2000, "startup_timeout_ms": 2500}},
                           startup_timeout=20)
        with self.assertRaises(ServerStartError):
            srv.start()
        self.assertEqual(srv.proc.returncode, 1, srv.log_text())
        self.assertIsNotNone(re.search(words, srv.log_text()), f"no log line matching {words!r} for {query}:\n"
                             f"{srv.log_text()}")
        self.assertIn("the database stayed unavailable for sql.startup_timeout_ms", srv.log_text())
        self.assertSecret(srv)

    def assertSecret(self, srv):
        log = srv.log_text()
        self.assertNotIn(PASSWORD, log)
        self.assertNotIn("mysql://", log)
        self.assertNotIn(self.pki.name, log)

    def test_server_with_tls(self):
        self.serve("good", require_tls=True)
        self.assertWorks("ssl=required")
        self.assertWorks(f"ssl=verify-ca&ssl_ca={self.pki.name}/ca.pem")
        self.assertWorks(f"ssl=verify-full&ssl_ca={self.pki.name}/ca.pem")
        self.assertRefused(f"ssl=verify-ca&ssl_ca={self.pki.name}/otherca.pem",
                           r"TLS connection was refused \(ssl=verify-ca")
        self.assertRefused(f"ssl=verify-full&ssl_ca={self.pki.name}/otherca.pem",
                           r"TLS connection was refused \(ssl=verify-full")
        # With --require-secure-transport the server would refuse a plain client, but not with
        # --skip-grant-tables (which these private servers use): the refusal of a link without TLS is
        # apiary's own, tested in test_server_without_tls.

    def test_unreadable_ca_stops_the_start(self):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "apiary.json")
            with open(path, "w") as f:
                json.dump({"listen": "127.0.0.1:0",
                           "sql": {"url": self.url(f"ssl=verify-full&ssl_ca={tmp}/missing.pem")}}, f)
            r = subprocess.run([apiary_harness.apiary_bin(), "--config", path], capture_output=True, text=True,
                               timeout=20)
        self.assertEqual(r.returncode, 1, r.stderr)
        self.assertIn("the ssl_ca file named in sql.url cannot be read: No such file or directory", r.stderr)
        self.assertNotIn("missing.pem", r.stderr)
        self.assertNotIn(PASSWORD, r.stderr)

    def test_certificate_for_another_address(self):
        self.serve("wrongip")
        # verify-ca checks the chain only: the name does not matter.
        self.assertWorks(f"ssl=verify-ca&ssl_ca={self.pki.name}/ca.pem")
        self.assertRefused(f"ssl=verify-full&ssl_ca={self.pki.name}/ca.pem",
                           r"TLS connection was refused \(ssl=verify-full")

    def test_server_without_tls(self):
        self.serve(None)
        self.assertRefused("ssl=required", r"did not agree to TLS, which sql.url requires \(ssl=required\)")
        self.assertRefused(f"ssl=verify-ca&ssl_ca={self.pki.name}/ca.pem",
                           r"did not agree to TLS, which sql.url requires \(ssl=verify-ca\)")
        self.assertRefused(f"ssl=verify-full&ssl_ca={self.pki.name}/ca.pem",
                           r"TLS connection was refused \(ssl=verify-full")


# --------------------------------------------------------------------------------------------------
# PostgreSQL: a man in the middle, and a huge cell


def pg_text(sql):
    """A statement as apiary sends it to PostgreSQL: each ? numbered $1, $2, ..."""
    parts = sql.split("?")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "") for i, p in enumerate(parts))


class PgRewritingProxy(RewritingProxy):
    """RewritingProxy for PostgreSQL's protocol: after the startup packet (length-prefixed, no type
    byte; apiary sends no SSLRequest with sslmode=disable), client messages are a type byte and a
    length; a Parse ('P': name, query, parameter types) whose query is a key of self.rewrites is sent
    with the value instead."""

    def _client_to_server(self, client, upstream):
        buf, started = b"", False
        try:
            while True:
                data = client.recv(1 << 16)
                if not data:
                    break
                buf += data
                while True:
                    if not started:
                        if len(buf) < 4 or len(buf) < int.from_bytes(buf[:4], "big"):
                            break
                        n = int.from_bytes(buf[:4], "big")
                        upstream.sendall(buf[:n])
                        buf, started = buf[n:], True
                        continue
                    if len(buf) < 5 or len(buf) < 1 + int.from_bytes(buf[1:5], "big"):
                        break
                    n = int.from_bytes(buf[1:5], "big")
                    kind, payload, buf = buf[:1], buf[5:1 + n], buf[1 + n:]
                    if kind == b"P":
                        name, rest = payload.split(b"\0", 1)
                        query, tail = rest.split(b"\0", 1)
                        self.prepared.append(query.decode(errors="replace"))
                        new = self.rewrites.get(query.decode(errors="replace"))
                        if new is not None:
                            payload = name + b"\0" + new.encode() + b"\0" + tail
                            self.rewritten += 1
                    upstream.sendall(kind + (len(payload) + 4).to_bytes(4, "big") + payload)
        except OSError:
            pass
        self._close(client, upstream)


@unittest.skipUnless(HAVE_POSTGRES, NO_POSTGRES)
class PostgresHostileTest(HostileMixin, unittest.TestCase):
    """libpq hands over a result only once it has read all of it (a DataRow is buffered whole, and
    libpq has no limit on a message's size), so the bound is checked on the result's size before
    anything is copied: the answer is the same 500 too_large, but the peak memory is the result's, not
    the bound's (the figure is printed for docs/sql.md; the check is that it stays within a few copies of
    the cell). libpq keeps its input buffer as large as the largest message for the connection's life,
    so that connection is closed once its pipeline is done, and the memory goes back."""

    @classmethod
    def setUpClass(cls):
        cls.db = PostgresServer().start()

    @classmethod
    def tearDownClass(cls):
        cls.db.cleanup()

    def apiary_via(self, rewrites, **sql):
        proxy = PgRewritingProxy(self.db.port, {pg_text(k): v for k, v in rewrites.items()})
        self.addCleanup(proxy.close)
        cfg = {"url": f"postgres://apiary:{PASSWORD}@127.0.0.1:{proxy.port}/apiary", "connections_per_loop": 1,
               "query_timeout_ms": 5000}
        cfg.update(sql)
        srv = ApiaryServer({"sql": cfg})
        return srv, proxy

    def started(self, srv):
        srv.start()
        self.addCleanup(srv.assert_no_sanitizer_report)
        self.addCleanup(srv.stop)
        wait_ready(self, srv)
        return srv

    def metric(self, srv, name, labels='backend="postgres"'):
        text = self.get(srv, "/metrics").body.decode()
        m = re.search(rf'^{re.escape(name)}{{{re.escape(labels)}}} (\S+)$', text, re.M)
        self.assertIsNotNone(m, name)
        return float(m.group(1))

    def test_wrong_shapes_are_502(self):
        srv, proxy = self.apiary_via({WORLD_SELECT: "SELECT id FROM world WHERE id = $1",
                                      ITEMS_SELECT: "SELECT id, name, created_at, price FROM items WHERE id = $1"})
        self.started(srv)
        item = self.post_item(srv)
        for path in (f"/v1/items/{item}", "/v1/db", "/v1/queries?queries=3"):
            with self.subTest(path=path):
                resp = self.get(srv, path)
                self.assertProblemDoc(resp, 502)
                self.assertEqual(resp.json()["detail"], "the database answered in an unexpected shape")
        self.assertGreaterEqual(proxy.rewritten, 2)
        self.assertEqual(self.get(srv, "/v1/items?limit=5").status, 200)
        self.assertEqual(self.metric(srv, "apiary_sql_connections_closed_total"), 0)
        self.assertStillServes(srv)

    def test_another_row_is_502_and_nothing_is_written(self):
        srv, proxy = self.apiary_via({WORLD_SELECT: "SELECT 1 + id % 10000, randomNumber FROM world WHERE id = $1"})
        self.started(srv)
        self.assertAnotherRowIs502(srv, proxy)

    def test_integer_extremes_are_read_exactly(self):
        """Integer cells are read with the driver's own decimal loop (not strtoll): the int8 extremes
        (19 digits: strtoll's path), a negative and a zero come back exactly, in the JSON too. They are
        in randomNumber: the id must be the one asked for (test_another_row_is_502_...)."""
        cases = (("/v1/db", "'-9223372036854775808'::int8", -9223372036854775808),
                 ("/v1/queries?queries=2", "9223372036854775807::int8", 9223372036854775807),
                 ("/v1/queries?queries=2", "-123456789012345678 + 0 * $1::int8", -123456789012345678),
                 ("/v1/db", "0::int2", 0))
        for path, expr, value in cases:
            with self.subTest(expr=expr):
                srv, proxy = self.apiary_via({WORLD_SELECT: f"SELECT $1::int8, {expr}"})
                self.started(srv)
                resp = self.get(srv, path)
                self.assertEqual(resp.status, 200, resp)
                rows = resp.json() if isinstance(resp.json(), list) else [resp.json()]
                self.assertEqual([r["randomNumber"] for r in rows], [value] * len(rows))
                self.assertTrue(all(1 <= r["id"] <= 10000 for r in rows), rows)
                self.assertStillServes(srv)

    def test_parameter_count_refused_by_the_server_keeps_the_connection(self):
        """The server counts the parameters of what it parsed ($1 and $2 here) and refuses a Bind with
        one value: 500 "could not run the query" (an ERROR of class 08, which is not a lost link), and
        the connection serves on."""
        srv, proxy = self.apiary_via({WORLD_SELECT: "SELECT id, randomNumber FROM world WHERE id = $1 OR id = $2"})
        self.started(srv)
        for path in ("/v1/db", "/v1/queries?queries=4"):
            resp = self.get(srv, path)
            self.assertProblemDoc(resp, 500)
            self.assertEqual(resp.json()["detail"], "the database could not run the query")
        self.assertIsNotNone(srv.wait_for_log(r"refused: ERROR:  bind message supplies 1 parameters", timeout=5))
        self.assertEqual(self.get(srv, "/v1/items?limit=2").status, 200)
        self.assertEqual(self.metric(srv, "apiary_sql_connections_closed_total"), 0)
        self.assertStillServes(srv)

    def test_too_many_rows_is_too_large(self):
        srv, proxy = self.apiary_via({WORLD_SELECT: "SELECT id, randomNumber FROM world WHERE id >= $1"})
        self.started(srv)
        resp = self.get(srv, "/v1/db")
        self.assertProblemDoc(resp, 500)
        self.assertEqual(self.metric(srv, "apiary_sql_errors_total", 'backend="postgres",kind="too_large"'), 1)
        self.assertEqual(self.get(srv, "/v1/items?limit=2").status, 200)
        self.assertStillServes(srv)

    def test_many_rows_are_refused_while_read(self):
        """A result of many small rows (the world SELECT rewritten into 600,000 rows, for a statement
        bounded at 256 bytes) is read in libpq's single-row mode: each row is handed over as it arrives
        and dropped once the bound is passed, so the peak memory is a row's, not the result's. Before,
        libpq built the whole result first (peak RSS +32 MiB here) and only then was its size
        checked."""
        # Under a sanitizer (which keeps freed memory, so the peak is not checked) fewer rows keep it quick.
        rows = 100000 if apiary_harness.binary_is_sanitized() else 600000
        srv, proxy = self.apiary_via({WORLD_SELECT: f"SELECT g, g FROM generate_series($1::int, $1::int + {rows}) g"},
                                     query_timeout_ms=20000)
        self.started(srv)
        pid = srv.proc.pid
        self.assertEqual(self.get(srv, "/v1/hello").status, 200)
        reset_peak_rss(pid)
        before = memory_kib(pid)
        resp = self.get(srv, "/v1/db")
        after = memory_kib(pid)
        self.assertProblemDoc(resp, 500)
        growth_kib = after["VmHWM"] - before["VmRSS"]
        print(f"\n[peak] postgres: /v1/db answered with {rows:,} rows: 500; peak RSS +{growth_kib / 1024:.1f} MiB",
              flush=True)
        if not apiary_harness.binary_is_sanitized():  # ASan's quarantine keeps every freed row resident
            self.assertLess(growth_kib, 8 * 1024, "the result was buffered, not read row by row")
        self.assertEqual(self.metric(srv, "apiary_sql_errors_total", 'backend="postgres",kind="too_large"'), 1)
        self.assertEqual(self.get(srv, "/v1/items?limit=2").status, 200)
        self.assertStillServes(srv)

    def test_copy_fails_and_closes_the_connection(self):
        """A statement that starts a COPY (the schema version read, rewritten): libpq would return the
        same COPY result forever, so before the guard the loop spun and the start never completed.
        Now the statement fails "query", its connection is closed, and the start stops (exit 1)."""
        srv, proxy = self.apiary_via({"SELECT COALESCE(MAX(version), 0) FROM apiary_schema_version":
                                      "COPY (SELECT 1) TO STDOUT"})
        srv.startup_timeout = 15
        with self.assertRaises(ServerStartError):
            srv.start()
        self.assertEqual(srv.proc.returncode, 1, srv.log_text())
        self.assertIn("started a COPY, which the driver does not run; closing the connection", srv.log_text())
        self.assertIn("cannot read the schema version (query)", srv.log_text())

    def test_huge_cell_is_refused_after_read(self):
        srv = ApiaryServer({"sql": {"url": self.db.url(), "connections_per_loop": 1, "query_timeout_ms": 10000}}).start()
        self.addCleanup(srv.assert_no_sanitizer_report)
        self.addCleanup(srv.stop)
        wait_ready(self, srv)
        self.db.sql("ALTER TABLE items ALTER COLUMN name TYPE TEXT")
        big = int(self.db.sql(f"INSERT INTO items (name, price, created_at) VALUES (repeat('x', {BIG_CELL}), 1, 'now') "
                              "RETURNING id")[0][0])
        self.addCleanup(self.db.sql, f"DELETE FROM items WHERE id = {big}")  # the other tests list items
        pid = srv.proc.pid
        for path in (f"/v1/items/{big}", f"/v1/items?after={big - 1}"):
            self.assertEqual(self.get(srv, "/v1/hello").status, 200)
            reset_peak_rss(pid)
            before = memory_kib(pid)
            resp = self.get(srv, path)
            after = memory_kib(pid)
            self.assertProblemDoc(resp, 500)
            growth_kib = after["VmHWM"] - before["VmRSS"]
            print(f"\n[peak] postgres: {path} with a {BIG_CELL >> 20} MiB cell: 500; peak RSS "
                  f"+{growth_kib / 1024:.1f} MiB (RSS {before['VmRSS'] / 1024:.1f} -> {after['VmRSS'] / 1024:.1f} MiB)",
                  flush=True)
            self.assertLess(growth_kib, 4 * (BIG_CELL >> 10), "more than a few copies of the cell")
            if not apiary_harness.binary_is_sanitized():  # ASan's quarantine keeps freed memory resident
                self.assertLess(after["VmRSS"] - before["VmRSS"], 16 * 1024, "libpq's buffer was kept")
        with srv.connect() as sock:
            text = request(sock, "GET", "/metrics").body.decode()
        self.assertIn('apiary_sql_errors_total{backend="postgres",kind="too_large"} 2', text)
        self.assertIn('apiary_sql_connections_closed_total{backend="postgres"} 2', text)
        small = self.post_item(srv)
        self.assertEqual(self.get(srv, f"/v1/items/{small}").status, 200)
        self.assertStillServes(srv)


# --------------------------------------------------------------------------------------------------
# TLS to PostgreSQL


@unittest.skipUnless(HAVE_POSTGRES and OPENSSL, NO_POSTGRES + " (or the openssl CLI is missing)")
class PostgresTlsTest(AsyncAssertions, unittest.TestCase):
    """libpq's own TLS (sslmode, sslrootcert in sql.url) inside the non-blocking connect, against a
    private PostgreSQL whose certificates the test makes: libpq refuses every failure itself, before
    authenticating."""

    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.TemporaryDirectory(prefix="apiary-tls-")
        make_pki(cls.pki.name)
        os.chmod(cls.pki.name, 0o755)
        cls.db = PostgresServer()
        cls.cert = None

    @classmethod
    def tearDownClass(cls):
        cls.db.cleanup()
        cls.pki.cleanup()

    def serve(self, cert):
        """(Re)starts the class's server with the given certificate (None: no TLS at all). The key must
        belong to the server's user with mode 0600, so both go next to its data."""
        if self.db.proc is not None and type(self).cert == cert:
            return
        self.db.stop()
        args = []
        if cert:
            for ext in ("pem", "key"):
                dst = os.path.join(self.db.tmp.name, f"server.{ext}")
                shutil.copy(os.path.join(self.pki.name, f"{cert}.{ext}"), dst)
                os.chmod(dst, 0o600)
                uid_gid = os.stat(self.db.tmp.name)
                os.chown(dst, uid_gid.st_uid, uid_gid.st_gid)
            args = ["-c", "ssl=on", "-c", f"ssl_cert_file={self.db.tmp.name}/server.pem", "-c",
                    f"ssl_key_file={self.db.tmp.name}/server.key"]
        self.db.extra_args = args
        self.db.start()
        type(self).cert = cert

    def url(self, query):
        return f"postgres://apiary:{PASSWORD}@127.0.0.1:{self.db.port}/apiary?{query}"

    def assertWorks(self, query):
        srv = ApiaryServer({"sql": {"url": self.url(query), "query_timeout_ms": 2000}}).start()
        self.addCleanup(srv.assert_no_sanitizer_report)
        self.addCleanup(srv.stop)
        wait_ready(self, srv, timeout=15)
        with srv.connect() as sock:
            for path in ("/v1/db", "/v1/queries?queries=3"):
                resp = request(sock, "GET", path)
                self.assertEqual(resp.status, 200, f"{query}: {resp}\n{srv.log_text()}")
        self.assertIn("TLS " + re.search(r"sslmode=([a-z-]+)", query).group(1), srv.log_text())
        # The server says so too: every apiary session of this database is encrypted.
        rows = self.db.sql("SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid) "
                           "WHERE a.application_name = 'apiary'")
        self.assertEqual(rows, [["t"]])
        self.assertSecret(srv)

    def assertRefused(self, query, words):
        srv = ApiaryServer({"sql": {"url": self.url(query), "query_timeout_ms": 2000, "startup_timeout_ms": 2500}},
                           startup_timeout=20)
        with self.assertRaises(ServerStartError):
            srv.start()
        self.assertEqual(srv.proc.returncode, 1, srv.log_text())
        self.assertIsNotNone(re.search(words, srv.log_text()), f"no log line matching {words!r} for {query}:\n"
                             f"{srv.log_text()}")
        self.assertIn("the database stayed unavailable for sql.startup_timeout_ms", srv.log_text())
        self.assertSecret(srv)

    def assertSecret(self, srv):
        log = srv.log_text()
        self.assertNotIn(PASSWORD, log)
        self.assertNotIn("postgres://", log)
        self.assertNotIn(self.pki.name, log)

    def test_server_with_tls(self):
        self.serve("good")
        self.assertWorks("sslmode=require")
        self.assertWorks(f"sslmode=verify-ca&sslrootcert={self.pki.name}/ca.pem")
        self.assertWorks(f"sslmode=verify-full&sslrootcert={self.pki.name}/ca.pem")
        self.assertRefused(f"sslmode=verify-ca&sslrootcert={self.pki.name}/otherca.pem",
                           r"over TLS \(sslmode=verify-ca\): .*certificate verify failed")
        self.assertRefused(f"sslmode=verify-full&sslrootcert={self.pki.name}/otherca.pem",
                           r"over TLS \(sslmode=verify-full\): .*certificate verify failed")

    def test_certificate_for_another_address(self):
        self.serve("wrongip")
        self.assertWorks(f"sslmode=verify-ca&sslrootcert={self.pki.name}/ca.pem")  # the chain only
        self.assertRefused(f"sslmode=verify-full&sslrootcert={self.pki.name}/ca.pem",
                           r"over TLS \(sslmode=verify-full\): .*does not match host name \"127.0.0.1\"")

    def test_server_without_tls(self):
        self.serve(None)
        self.assertRefused("sslmode=require", r"over TLS \(sslmode=require\): .*server does not support SSL")
        self.assertRefused(f"sslmode=verify-full&sslrootcert={self.pki.name}/ca.pem",
                           r"over TLS \(sslmode=verify-full\): .*server does not support SSL")


if __name__ == "__main__":
    unittest.main()
