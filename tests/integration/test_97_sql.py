"""The SQL endpoints (/v1/db, /v1/queries, /v1/updates, /v1/items) on every backend (SQLite, MariaDB,
PostgreSQL), and the MariaDB and PostgreSQL drivers under failure.

- SqlApiMixin holds every API case (shapes, TechEmpower's N rule, updates written before the answer,
  the items resource with keyset pagination, 422s listing every invalid field, a stored SQL injection read back
  intact, readiness, metrics); SqliteSqlTest, MariadbSqlTest and PostgresSqlTest run the same methods
  on one backend each, checking the tables directly (sqlite3 module / the mariadb client / psql).
- MariadbFailureTest (own apiary per test, one mariadbd for the class): the database stalled
  (SIGSTOP: 504 at the query deadline, then recovery after SIGCONT), killed (503 + Retry-After at
  once, /readyz 503 naming no address, other endpoints fine), restarted (recovers by itself), down at
  start, the pool exhausted (503 "busy" beyond sql.max_waiting), clients leaving mid-query (the
  statement finishes, its result is discarded and the connection is reused), and the password never
  appearing in logs, /metrics or answers.
- SqliteConflictTest: a writer outside apiary holding SQLite's lock makes writes fail "conflict" (503,
  Retry-After: 0, counted as kind="conflict", never "busy"), and /v1/updates sends its UPDATE again.
- Config: unknown sql keys and bad URLs exit 2 naming the key, without echoing the password.

Every mariadbd here is started by this file: `mariadb-install-db` into a temporary directory, then
`mariadbd --no-defaults` on a free loopback port with grant tables off (any user and password are
accepted, so the password checks are about apiary, not the server). Only its PID is ever signalled.
Without mariadbd installed the MariaDB classes are skipped with a message; scripts/deps.sh installs
it, so CI runs them.

Every PostgreSQL server likewise: initdb once into a temporary template (trust authentication, so any
password is accepted), copied per server, `postgres -D DIR -k DIR -p PORT` on loopback, run as nobody
when the tests run as root (PostgreSQL refuses root). SqlFailureMixin's cases run on it too
(PostgresFailureTest), with SIGSTOP/SIGKILL sent to the postmaster and its children. Skipped with a
message when the PostgreSQL 15 binaries are missing."""

import atexit
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

import apiary_harness
from apiary_harness import ApiaryServer, ServerStartError, abort, build_request, read_response, request
from test_80_async import AsyncAssertions, timed_request
from test_90_pool import send_all

JSON = {"Content-Type": "application/json"}
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
MARIADB_CLIENT = shutil.which("mariadb") or "/usr/bin/mariadb"
HAVE_MARIADB = os.access(MARIADBD, os.X_OK) and os.access(INSTALL_DB, os.X_OK) and os.access(MARIADB_CLIENT, os.X_OK)
NO_MARIADB = "mariadbd, mariadb-install-db or the mariadb client is not installed (scripts/deps.sh installs them)"
PASSWORD = "pw-Xy7-never-shown"
INJECTION = "Robert'); DROP TABLE items;--"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PrivateDatabase:
    """What the private database servers of these tests share: waiting until one answers, its log."""
    NAME = "the database"
    LOG = "error.log"  # in self.tmp

    def wait_answering(self, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sql("SELECT 1")
                return self
            except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{self.NAME} on port {self.port} did not start (exit {self.proc.poll()}): "
                                   + self.error_log()[-2000:])
            time.sleep(0.1)

    def error_log(self):
        try:
            with open(os.path.join(self.tmp.name, self.LOG), encoding="utf-8", errors="replace") as f:
                return f.read()
        except OSError:
            return ""


class MariadbServer(PrivateDatabase):
    """One private mariadbd: its own data directory (installed once), a free loopback port, no grant
    tables. start() may be called again after kill()/stop() and reuses both."""
    NAME = "mariadbd"

    _template = None  # an installed data directory, copied for each server (install-db takes ~1 s)

    def __init__(self, extra_args=()):
        self.extra_args = list(extra_args)  # more mariadbd options (TLS, packet size), changeable before start()
        self.tmp = tempfile.TemporaryDirectory(prefix="apiary-mariadb-")
        self.datadir = os.path.join(self.tmp.name, "data")
        self.port = free_port()
        self.proc = None
        self._install()

    def _install(self):
        if MariadbServer._template is None:
            template = tempfile.mkdtemp(prefix="apiary-mariadb-template-")
            atexit.register(shutil.rmtree, template, ignore_errors=True)  # ~110 MiB per run otherwise
            argv = [INSTALL_DB, "--no-defaults", f"--datadir={template}/data", "--auth-root-authentication-method=normal",
                    "--skip-test-db"]
            if os.geteuid() == 0:
                argv.append("--user=root")
            # Retried: on a loaded machine the bootstrap server has been seen to fail once.
            for attempt in range(3):
                shutil.rmtree(f"{template}/data", ignore_errors=True)
                r = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120)
                if r.returncode == 0:
                    break
                if attempt == 2:
                    raise RuntimeError(f"mariadb-install-db failed (exit {r.returncode}):\n{r.stdout[-3000:]}")
                time.sleep(1)
            MariadbServer._template = template
        shutil.copytree(os.path.join(MariadbServer._template, "data"), self.datadir)

    def start(self, timeout=30.0):
        argv = [MARIADBD, "--no-defaults", f"--datadir={self.datadir}", f"--socket={self.tmp.name}/sock",
                f"--port={self.port}", "--bind-address=127.0.0.1", "--skip-grant-tables", "--skip-name-resolve",
                "--skip-log-bin", "--innodb-buffer-pool-size=32M", "--innodb-log-file-size=16M",
                "--innodb-flush-log-at-trx-commit=2", f"--pid-file={self.tmp.name}/pid",
                f"--log-error={self.tmp.name}/error.log"]
        if os.geteuid() == 0:
            argv.append("--user=root")
        argv += self.extra_args
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, preexec_fn=apiary_harness._die_with_parent)
        return self.wait_answering(timeout)

    def sql(self, text, database=None):
        """Runs SQL with the mariadb client; returns the rows as lists of strings."""
        argv = [MARIADB_CLIENT, "--no-defaults", "-h127.0.0.1", f"-P{self.port}", "-uroot", "-N", "-B",
                "--connect-timeout=2", "-e", text]
        if database:
            argv.append(database)
        out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=10).stdout
        return [line.split("\t") for line in out.splitlines()]

    def signal(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)

    def pause(self, timeout=5.0):
        """SIGSTOP, then waits until every thread of mariadbd is stopped: the signal is only queued
        when kill() returns, and a thread busy on another CPU may still answer a query meanwhile."""
        self.signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        task_dir = f"/proc/{self.proc.pid}/task"
        while time.monotonic() < deadline:
            states = []
            for tid in os.listdir(task_dir):
                try:
                    with open(f"{task_dir}/{tid}/stat") as f:
                        states.append(f.read().rsplit(")", 1)[1].split()[0])
                except OSError:
                    pass
            if states and all(st in ("T", "t") for st in states):
                return
            time.sleep(0.01)
        raise RuntimeError("mariadbd did not stop on SIGSTOP")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.proc = None

    def cleanup(self):
        self.stop()
        self.tmp.cleanup()

    def url(self, database="apiary", password=PASSWORD):
        return f"mysql://apiary:{password}@127.0.0.1:{self.port}/{database}"


PGBIN = os.environ.get("APIARY_PGBIN", "/usr/lib/postgresql/15/bin")
PG_POSTGRES = os.path.join(PGBIN, "postgres")
PG_INITDB = os.path.join(PGBIN, "initdb")
PSQL = shutil.which("psql") or "/usr/bin/psql"
HAVE_POSTGRES = all(os.access(p, os.X_OK) for p in (PG_POSTGRES, PG_INITDB, PSQL))
# pg_stat_statements ships with postgresql-15 (lib and extension files): the statement-count test needs it.
HAVE_PG_STAT_STATEMENTS = os.path.exists(os.path.join(os.path.dirname(PGBIN), "lib", "pg_stat_statements.so"))
NO_PG_STAT_STATEMENTS = "PostgreSQL 15 or its pg_stat_statements module is not installed (scripts/deps.sh installs postgresql-15)"
NO_POSTGRES = f"postgres, initdb ({PGBIN}) or psql is not installed (scripts/deps.sh installs postgresql-15)"


def _pg_user():
    """PostgreSQL refuses to run as root: as root, the server runs as nobody (data it owns)."""
    if os.geteuid() != 0:
        return None
    import pwd
    pw = pwd.getpwnam("nobody")
    return pw.pw_uid, pw.pw_gid


def _pg_preexec():
    apiary_harness._die_with_parent()
    ids = _pg_user()
    if ids:
        os.setgroups([])
        os.setgid(ids[1])
        os.setuid(ids[0])


class PostgresServer(PrivateDatabase):
    """One private PostgreSQL 15: initdb once per run into a template (trust authentication, superuser
    `apiary`, database `apiary`), copied for each server; `postgres -D … -k DIR -p PORT` on a free
    loopback port, run as nobody when the tests run as root. Only its own PIDs are ever signalled (the
    postmaster and its children). start() may be called again after kill()/stop()."""
    NAME = "postgres"
    LOG = "server.log"

    _template = None

    def __init__(self, extra_args=()):
        self.extra_args = list(extra_args)
        self.tmp = tempfile.TemporaryDirectory(prefix="apiary-pg-")
        self.datadir = os.path.join(self.tmp.name, "data")
        self.port = free_port()
        self.proc = None
        self._chown(self.tmp.name)
        self._install()

    @staticmethod
    def _chown(path):
        ids = _pg_user()
        os.chmod(path, 0o755)
        if ids:
            os.chown(path, ids[0], ids[1])

    def _run_as_pg(self, argv, **kw):
        return subprocess.run(argv, preexec_fn=_pg_preexec, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, **kw)

    def _install(self):
        if PostgresServer._template is None:
            template = tempfile.mkdtemp(prefix="apiary-pg-template-")
            atexit.register(shutil.rmtree, template, ignore_errors=True)  # ~45 MiB per run otherwise
            self._chown(template)
            data = os.path.join(template, "data")
            r = self._run_as_pg([PG_INITDB, "-D", data, "-U", "apiary", "--auth=trust", "-E", "UTF8", "--no-locale",
                                 "--no-sync"], timeout=120)
            if r.returncode != 0:
                raise RuntimeError(f"initdb failed (exit {r.returncode}):\n{r.stdout[-3000:]}")
            r = self._run_as_pg([PG_POSTGRES, "--single", "-D", data, "-F", "-c", "fsync=off", "postgres"],
                                input="CREATE DATABASE apiary;\n", timeout=60)
            if r.returncode != 0:
                raise RuntimeError(f"creating the database failed (exit {r.returncode}):\n{r.stdout[-3000:]}")
            PostgresServer._template = template
        shutil.copytree(os.path.join(PostgresServer._template, "data"), self.datadir, symlinks=True)
        ids = _pg_user()
        if ids:
            for root, dirs, files in os.walk(self.datadir):
                for name in dirs + files:
                    os.lchown(os.path.join(root, name), ids[0], ids[1])
            os.chown(self.datadir, ids[0], ids[1])
        os.chmod(self.datadir, 0o700)

    def start(self, timeout=30.0):
        argv = [PG_POSTGRES, "-D", self.datadir, "-k", self.tmp.name, "-p", str(self.port), "-c",
                "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off", "-c",
                "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "max_connections=100"]
        argv += self.extra_args
        log = open(os.path.join(self.tmp.name, "server.log"), "ab")
        self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log, preexec_fn=_pg_preexec)
        log.close()
        return self.wait_answering(timeout)

    def sql(self, text, database="apiary"):
        """Runs SQL with psql over TCP; returns the rows as lists of strings."""
        argv = [PSQL, "-h", "127.0.0.1", "-p", str(self.port), "-U", "apiary", "-d", database, "-X", "-A", "-t",
                "-F", "\t", "-v", "ON_ERROR_STOP=1", "-c", text]
        env = dict(os.environ, PGCONNECT_TIMEOUT="2")
        out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=10, env=env).stdout
        return [line.split("\t") for line in out.splitlines() if line != ""]

    def pids(self):
        """The postmaster and every process it forked (backends, checkpointer, ...)."""
        if self.proc is None:
            return []
        found = [self.proc.pid]
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if ppid == self.proc.pid:
                found.append(int(entry))
        return found

    def signal(self, sig):
        if self.proc is not None and self.proc.poll() is None:
            for pid in self.pids():
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def pause(self, timeout=5.0):
        """SIGSTOP to the postmaster first (so it forks nothing new), then to every child; waits until
        all are stopped."""
        os.kill(self.proc.pid, signal.SIGSTOP)
        self.signal(signal.SIGSTOP)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            states = []
            for pid in self.pids():
                try:
                    with open(f"/proc/{pid}/stat") as f:
                        st = f.read().rsplit(")", 1)[1].split()[0]
                    if st not in ("T", "t", "Z"):
                        os.kill(pid, signal.SIGSTOP)  # forked while the postmaster was being stopped
                    states.append(st)
                except OSError:
                    pass
            if states and all(st in ("T", "t", "Z") for st in states):
                return
            time.sleep(0.01)
        raise RuntimeError("postgres did not stop on SIGSTOP")

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            pids = self.pids()
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGCONT)
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            self.proc.wait(10)
            self._wait_gone(pids)
        self.proc = None

    @staticmethod
    def _wait_gone(pids, timeout=10.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not any(os.path.exists(f"/proc/{pid}") for pid in pids):
                return
            time.sleep(0.02)

    def stop(self):
        """The fast shutdown (SIGINT): sessions are ended, the server exits cleanly."""
        if self.proc is not None and self.proc.poll() is None:
            pids = self.pids()
            self.signal(signal.SIGCONT)
            os.kill(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()
                return
            self._wait_gone(pids)
        self.proc = None

    def cleanup(self):
        self.stop()
        self.tmp.cleanup()

    def url(self, database="apiary", password=PASSWORD):
        return f"postgres://apiary:{password}@127.0.0.1:{self.port}/{database}"


def wait_ready(test, srv, timeout=10.0):
    deadline = time.monotonic() + timeout
    while True:
        with srv.connect() as sock:
            resp = request(sock, "GET", "/readyz")
        if resp.status == 200:
            return
        if time.monotonic() > deadline:
            test.fail(f"/readyz still {resp.status} after {timeout} s: {resp.body!r}\n{srv.log_text()}")
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------------
# the API, on either backend


class SqlApiMixin(AsyncAssertions):
    """Subclasses set cls.srv (an apiary on their backend) and implement table(sql) -> rows."""

    def setUp(self):
        self.sock = self.srv.connect()

    def tearDown(self):
        self.sock.close()

    def get(self, path):
        return request(self.sock, "GET", path)

    def post_item(self, body, headers=JSON):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        return request(self.sock, "POST", "/v1/items", headers, raw)

    def assertWorldRow(self, row):
        self.assertEqual(set(row), {"id", "randomNumber"}, row)
        self.assertIsInstance(row["id"], int)
        self.assertIsInstance(row["randomNumber"], int)
        self.assertTrue(1 <= row["id"] <= 10000, row)
        self.assertTrue(1 <= row["randomNumber"] <= 10000, row)

    def assertField(self, resp, status, field):
        self.assertProblemDoc(resp, status, {"field": field})
        self.assertEqual(resp.json()["field"], field)

    # -- schema --

    def test_world_filled(self):
        self.assertEqual(self.table("SELECT COUNT(*), MIN(id), MAX(id) FROM world"), [[10000, 1, 10000]])
        bad = self.table("SELECT COUNT(*) FROM world WHERE randomNumber < 1 OR randomNumber > 10000")
        self.assertEqual(bad, [[0]])

    # -- /v1/db, /v1/queries --

    def assertDbAnswer(self, path):
        resp = self.get(path)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(resp.headers.get("Content-Type"), "application/json")
        row = resp.json()
        self.assertWorldRow(row)
        self.assertEqual(self.table(f"SELECT randomNumber FROM world WHERE id = {row['id']}"),
                         [[row["randomNumber"]]])

    def test_db(self):
        self.assertDbAnswer("/v1/db")

    def test_db_await_answers_as_db(self):
        # /v1/db written as a coroutine handler (ROUTE_CORO): the same answer on both backends.
        for _ in range(5):
            self.assertDbAnswer("/v1/db_await")

    def test_queries_count_rule(self):
        for query, expected in [("", 1), ("?queries=", 1), ("?queries=abc", 1), ("?queries=0", 1),
                                ("?queries=-3", 1), ("?queries=1.5", 1), ("?queries=7", 7), ("?queries=500", 500),
                                ("?queries=501", 500), ("?queries=99999999999999999999", 500)]:
            with self.subTest(query=query):
                resp = self.get("/v1/queries" + query)
                self.assertEqual(resp.status, 200, resp)
                rows = resp.json()
                self.assertIsInstance(rows, list)
                self.assertEqual(len(rows), expected)
                for row in rows:
                    self.assertWorldRow(row)

    def test_queries_are_random(self):
        rows = self.get("/v1/queries?queries=20").json()
        self.assertGreater(len({r["id"] for r in rows}), 10)

    # -- /v1/updates --

    def test_updates_written_before_answer(self):
        for n in (1, 5, 20):
            resp = self.get(f"/v1/updates?queries={n}")
            self.assertEqual(resp.status, 200, resp)
            rows = resp.json()
            self.assertEqual(len(rows), n)
            for row in rows:
                self.assertWorldRow(row)
                self.assertEqual(self.table(f"SELECT randomNumber FROM world WHERE id = {row['id']}"),
                                 [[row["randomNumber"]]], f"row {row} not as written")

    def test_updates_read_back_as_answered(self):
        """One batched UPDATE per request: afterwards every answered id holds the answer's number, an id
        drawn twice carries one number in the answer, and no other row changed. 3 rows are padded to
        the 5-row statement, 500 (with repeated ids, almost surely) is the largest."""
        for n in (3, 20, 500):
            with self.subTest(n=n):
                before = dict(map(tuple, self.table("SELECT id, randomNumber FROM world")))
                resp = self.get(f"/v1/updates?queries={n}")
                self.assertEqual(resp.status, 200, resp)
                rows = resp.json()
                self.assertEqual(len(rows), n)
                answer = {}
                for row in rows:
                    self.assertWorldRow(row)
                    self.assertEqual(answer.setdefault(row["id"], row["randomNumber"]), row["randomNumber"],
                                     f"id {row['id']} answered with two numbers")
                after = dict(map(tuple, self.table("SELECT id, randomNumber FROM world")))
                self.assertEqual(len(after), 10000)
                self.assertEqual({i: after[i] for i in answer}, answer)
                changed = {i for i in after if after[i] != before[i]}
                self.assertLessEqual(changed, set(answer), "rows not in the answer changed")
                self.assertGreaterEqual(len(changed), 0.9 * len(answer))

    def test_concurrent_updates_of_shared_rows(self):
        """Six clients updating 500 rows each at once share many ids. Ascending ids in one statement lock
        them in one order on MariaDB; PostgreSQL locks them in its plan's (heap) order, so a deadlock
        can still roll one back there, and /v1/updates sends that statement again: every answer is 200
        (before the retry, a one-in-a-few-runs 503 "busy" under load)."""
        errors = []

        def client():
            try:
                with self.srv.connect() as sock:
                    for _ in range(3):
                        resp = request(sock, "GET", "/v1/updates?queries=500")
                        if resp.status != 200 or len(resp.json()) != 500:
                            errors.append(resp)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=client) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])

    def test_updates_count_rule(self):
        self.assertEqual(len(self.get("/v1/updates?queries=nope").json()), 1)
        self.assertEqual(len(self.get("/v1/updates?queries=501").json()), 500)

    # -- items --

    def test_item_lifecycle(self):
        resp = self.post_item({"name": "widget", "price": 9.5})
        self.assertEqual(resp.status, 201, resp)
        item = resp.json()
        self.assertEqual(set(item), {"id", "name", "price", "created_at"})
        self.assertEqual((item["name"], item["price"]), ("widget", 9.5))
        self.assertRegex(item["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(resp.headers.get("Location"), f"/v1/items/{item['id']}")
        got = self.get(f"/v1/items/{item['id']}")
        self.assertEqual(got.status, 200, got)
        self.assertEqual(got.json(), item)
        deleted = request(self.sock, "DELETE", f"/v1/items/{item['id']}")
        self.assertEqual(deleted.status, 204, deleted)
        self.assertEqual(deleted.body, b"")
        self.assertProblemDoc(self.get(f"/v1/items/{item['id']}"), 404)
        self.assertProblemDoc(request(self.sock, "DELETE", f"/v1/items/{item['id']}"), 404)

    def test_injection_is_stored_as_text(self):
        resp = self.post_item({"name": INJECTION, "price": 0})
        self.assertEqual(resp.status, 201, resp)
        item = resp.json()
        self.assertEqual(item["name"], INJECTION)
        self.assertEqual(self.get(f"/v1/items/{item['id']}").json()["name"], INJECTION)
        # The table is still there and holds the text as it was sent.
        self.assertEqual(self.table(f"SELECT name FROM items WHERE id = {item['id']}"), [[INJECTION]])

    def test_unicode_and_limits_of_name(self):
        for name in ("é" * 200, "日本語のテキスト", "a", "🐝" * 200, "quote \" and \\ and \n newline"):
            with self.subTest(name=name[:10]):
                resp = self.post_item({"name": name, "price": 1})
                self.assertEqual(resp.status, 201, resp)
                self.assertEqual(self.get(f"/v1/items/{resp.json()['id']}").json()["name"], name)

    def test_item_validation(self):
        cases = [
            ({"price": 1}, "name"),
            ({"name": "", "price": 1}, "name"),
            ({"name": "x" * 201, "price": 1}, "name"),
            ({"name": 5, "price": 1}, "name"),
            ({"name": None, "price": 1}, "name"),
            ({"name": "ok"}, "price"),
            ({"name": "ok", "price": -0.01}, "price"),
            ({"name": "ok", "price": "5"}, "price"),
            ({"name": "ok", "price": True}, "price"),
            ({"name": "ok", "price": 1, "colour": "red"}, "colour"),
        ]
        for body, field in cases:
            with self.subTest(body=body):
                self.assertField(self.post_item(body), 422, field)
        self.assertProblemDoc(self.post_item([1, 2]), 422)
        self.assertProblemDoc(self.post_item(b"{bad json"), 400)
        self.assertProblemDoc(self.post_item({"name": "x", "price": 1}, headers={"Content-Type": "text/plain"}), 415)

    def test_item_errors_listed_at_once(self):
        # Every violation in one 422 (docs/schemas.md): the body's, each with where, which and why.
        doc = self.assertProblemDoc(self.post_item({"name": "", "price": -1, "colour": "red"}), 422, {"field": "name"})
        got = {(e["in"], e["field"]) for e in doc["errors"]}
        self.assertEqual(got, {("body", "colour"), ("body", "name"), ("body", "price")}, doc)
        for e in doc["errors"]:
            self.assertTrue(e["detail"], e)
        self.assertIn("and 2 more", doc["detail"])
        # The query's violations together too; a missing body is 422 naming the body.
        doc = self.assertProblemDoc(self.get("/v1/items?limit=0&after=x"), 422, {"field": "limit"})
        self.assertEqual({(e["in"], e["field"]) for e in doc["errors"]}, {("query", "limit"), ("query", "after")})
        self.assertIn("must be an integer between 1 and 100", doc["detail"])
        doc = self.assertProblemDoc(self.post_item(b""), 422)
        self.assertEqual(doc["errors"][0]["in"], "body")

    def test_bad_ids(self):
        for bad in ("abc", "0", "-1", "1.5", "1e3", "99999999999999999999", "%20"):
            with self.subTest(id=bad):
                self.assertField(self.get(f"/v1/items/{bad}"), 422, "id")
                self.assertField(request(self.sock, "DELETE", f"/v1/items/{bad}"), 422, "id")
        self.assertProblemDoc(self.get("/v1/items/9223372036854775807"), 404)

    def test_pagination(self):
        ids = []
        for i in range(5):
            ids.append(self.post_item({"name": f"page-{i}", "price": i}).json()["id"])
        start = ids[0] - 1
        seen, after, pages = [], start, 0
        while True:
            resp = self.get(f"/v1/items?limit=2&after={after}")
            self.assertEqual(resp.status, 200, resp)
            doc = resp.json()
            self.assertEqual(set(doc), {"items", "next"})
            got = [item["id"] for item in doc["items"]]
            self.assertEqual(got, sorted(got))
            self.assertLessEqual(len(got), 2)
            seen += got
            pages += 1
            if doc["next"] is None:
                break
            self.assertEqual(doc["next"], got[-1])
            after = doc["next"]
        self.assertEqual([i for i in seen if i in ids], ids)
        self.assertGreaterEqual(pages, 3)
        # Default limit 20, and a page past the end is empty.
        self.assertLessEqual(len(self.get("/v1/items").json()["items"]), 20)
        self.assertEqual(self.get(f"/v1/items?after={max(ids) + 1000}").json(), {"items": [], "next": None})

    def test_pagination_validation(self):
        for query, field in [("limit=0", "limit"), ("limit=101", "limit"), ("limit=x", "limit"), ("limit=", "limit"),
                             ("after=-1", "after"), ("after=abc", "after")]:
            with self.subTest(query=query):
                self.assertField(self.get("/v1/items?" + query), 422, field)
        self.assertEqual(self.get("/v1/items?limit=100").status, 200)

    def test_list_of_long_names(self):
        for _ in range(3):
            self.post_item({"name": "🐝" * 200, "price": 1})
        resp = self.get("/v1/items?limit=100")
        self.assertEqual(resp.status, 200, resp)

    def test_methods(self):
        self.assertEqual(request(self.sock, "POST", "/v1/db", JSON, b"{}").status, 405)
        self.assertEqual(request(self.sock, "PUT", "/v1/items/1", JSON, b"{}").status, 405)

    def test_concurrent_clients(self):
        errors = []

        def client():
            try:
                with self.srv.connect() as sock:
                    for _ in range(10):
                        resp = request(sock, "GET", "/v1/queries?queries=10")
                        if resp.status != 200 or len(resp.json()) != 10:
                            errors.append(resp)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])

    def test_ready_and_metrics(self):
        self.assertEqual(self.get("/readyz").status, 200)
        self.get("/v1/db")
        text = self.get("/metrics").body.decode()
        for name in ("apiary_sql_queries_total", "apiary_sql_errors_total", "apiary_sql_query_duration_seconds_bucket",
                     "apiary_sql_pool_in_use", "apiary_sql_pool_waiting"):
            self.assertIn(name, text)
        self.assertIn(f'backend="{self.backend}"', text)
        self.assertNotIn(PASSWORD, text)


class SqliteSqlTest(SqlApiMixin, unittest.TestCase):
    backend = "sqlite"

    @classmethod
    def setUpClass(cls):
        cls.srv = ApiaryServer(threads=2).start()
        cls.db_path = os.path.join(cls.srv._tmpdir.name, "apiary.db")

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.assert_no_sanitizer_report()

    def table(self, text):
        with sqlite3.connect(self.db_path, timeout=5) as db:
            return [list(r) for r in db.execute(text).fetchall()]

    def test_wal_mode(self):
        self.assertEqual(self.table("PRAGMA journal_mode"), [["wal"]])

    def test_restart_is_idempotent(self):
        """A second apiary on the same file keeps the rows (no refill, no error)."""
        before = self.table("SELECT SUM(randomNumber) FROM world")
        with ApiaryServer({"sql": {"url": "sqlite:" + self.db_path}}) as other:
            with other.connect() as sock:
                self.assertEqual(request(sock, "GET", "/v1/db").status, 200)
        self.assertEqual(self.table("SELECT COUNT(*) FROM world"), [[10000]])
        self.assertEqual(self.table("SELECT SUM(randomNumber) FROM world"), before)


class SqliteBesideCpuJobsTest(unittest.TestCase):
    """B7/F13 of issue 22: SQLite ran on the CPU worker pool, so with CPU jobs queued a one-row SELECT
    waited behind them or was refused (5 of 8 got 503 "the database is busy"). It has threads of its
    own now (sql.threads): with the CPU pool full, database reads are still answered."""

    LONG_N = 400000000  # /v1/primes: about 0.9 s of CPU each

    def test_reads_are_answered_while_the_cpu_pool_is_full(self):
        srv = ApiaryServer({"pool": {"threads": 1, "queue_size": 2}, "primes": {"max_n": 1000000000},
                            "sql": {"threads": 2}}, threads=1).start()
        self.addCleanup(srv.stop)
        self.addCleanup(srv.assert_no_sanitizer_report)
        wait_ready(self, srv)
        cpu = send_all(srv, [f"/v1/primes?n={self.LONG_N}"])
        try:
            time.sleep(0.1)
            cpu += send_all(srv, [f"/v1/primes?n={self.LONG_N}"] * 2)
            time.sleep(0.1)
            with srv.connect() as sock:
                full = request(sock, "GET", "/v1/primes?n=10")
                self.assertEqual(full.status, 503, "the CPU pool is not full: the test proves nothing")
                statuses = [request(sock, "GET", "/v1/db").status for _ in range(8)]
                self.assertEqual(statuses, [200] * 8)
                self.assertEqual(request(sock, "GET", "/v1/queries?queries=20").status, 200)
            for sock in cpu:
                self.assertEqual(read_response(sock, timeout=30.0).status, 200)
        finally:
            for sock in cpu:
                sock.close()


CONFLICT_DETAIL = "the request conflicted with a concurrent one in the database; send it again"


class SqliteConflictTest(AsyncAssertions, unittest.TestCase):
    """A writer outside apiary (another process on the same file) holds SQLite's write lock past the
    query timeout: apiary's writes fail "conflict", answered 503 with Retry-After: 0 and words of their
    own (docs/sql.md, Failures), counted as kind="conflict" and never as "busy", which is kept for
    apiary's own line being full. /v1/updates sends a conflicted UPDATE again, twice. Reads go on (WAL),
    and once the lock is gone the same requests succeed."""

    TIMEOUT_MS = 300

    def setUp(self):
        self.srv = ApiaryServer({"sql": {"query_timeout_ms": self.TIMEOUT_MS}}, threads=1).start()
        self.addCleanup(self.srv.assert_no_sanitizer_report)
        self.addCleanup(self.srv.stop)
        wait_ready(self, self.srv)
        self.db_path = os.path.join(self.srv._tmpdir.name, "apiary.db")

    def errors(self, kind):
        with self.srv.connect() as sock:
            text = request(sock, "GET", "/metrics").body.decode()
        name = f'apiary_sql_errors_total{{backend="sqlite",kind="{kind}"}} '
        lines = [line for line in text.splitlines() if line.startswith(name)]
        self.assertEqual(len(lines), 1, f"{name} in /metrics")
        return float(lines[0].split()[-1])

    def assertConflict(self, resp):
        self.assertProblemDoc(resp, 503)
        self.assertEqual(resp.json()["detail"], CONFLICT_DETAIL, resp)
        self.assertEqual(resp.headers.get("Retry-After"), "0", resp)

    def test_another_writers_lock_is_answered_as_a_conflict(self):
        conflicts, busy = self.errors("conflict"), self.errors("busy")
        writer = sqlite3.connect(self.db_path, timeout=5, isolation_level=None)
        self.addCleanup(writer.close)
        writer.execute("BEGIN IMMEDIATE")
        try:
            with self.srv.connect() as sock:
                resp = request(sock, "POST", "/v1/items", JSON, json.dumps({"name": "x", "price": 1}).encode())
                self.assertConflict(resp)
                self.assertEqual(self.errors("conflict") - conflicts, 1)
                resp = request(sock, "GET", "/v1/updates?queries=3")
                self.assertConflict(resp)
                # The UPDATE was sent three times (the first and two more), each a conflict.
                self.assertEqual(self.errors("conflict") - conflicts, 4)
                self.assertEqual(self.errors("busy"), busy, "a lock is not apiary's line being full")
                self.assertEqual(request(sock, "GET", "/v1/db").status, 200, "readers do not wait (WAL)")
        finally:
            writer.execute("ROLLBACK")
        with self.srv.connect() as sock:
            resp = request(sock, "POST", "/v1/items", JSON, json.dumps({"name": "x", "price": 1}).encode())
            self.assertEqual(resp.status, 201, resp)
            self.assertEqual(request(sock, "GET", "/v1/updates?queries=3").status, 200)
        self.assertIn("stayed locked by another writer", self.srv.log_text())


@unittest.skipUnless(HAVE_MARIADB, NO_MARIADB)
class MariadbSqlTest(SqlApiMixin, unittest.TestCase):
    backend = "mariadb"

    @classmethod
    def setUpClass(cls):
        cls.db = MariadbServer().start()
        try:
            cls.srv = ApiaryServer({"sql": {"url": cls.db.url(), "connections_per_loop": 4}}, threads=2).start()
            wait_ready(unittest.TestCase(), cls.srv)
        except BaseException:
            cls.db.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.db.cleanup()
        cls.srv.assert_no_sanitizer_report()

    def table(self, text):
        rows = self.db.sql(text, "apiary")
        return [[int(v) if v.lstrip("-").isdigit() else v for v in row] for row in rows]

    def test_no_extra_queries(self):
        """TechEmpower counts the server's Com_select: one /v1/db is one SELECT, no health checks."""
        def com_select():
            return int(self.db.sql("SHOW GLOBAL STATUS LIKE 'Com_stmt_execute'")[0][1])
        before = com_select()
        for _ in range(20):
            self.assertEqual(self.get("/v1/db").status, 200)
        self.assertEqual(com_select() - before, 20)

    def test_changed_columns_are_read_with_their_new_types(self):
        """MariaDB sends a prepared statement's columns again only when they change
        (MARIADB_CLIENT_CACHE_METADATA), and apiary then reads them from the statement instead of
        letting Connector/C copy them per execution (sql_my_hook_metadata). A column whose type changes
        under a statement prepared and executed on the connection must be read with its new type (text
        where a number was: 502 from the shape check), and with the old one again once changed back."""
        item = self.post_item({"name": "typed", "price": 2.5}).json()
        path = f"/v1/items/{item['id']}"
        for _ in range(3):
            got = self.get(path)
            self.assertEqual(got.status, 200, got)
        self.db.sql("ALTER TABLE items MODIFY price VARCHAR(32) NOT NULL", "apiary")
        try:
            for _ in range(3):
                self.assertProblemDoc(self.get(path), 502)
        finally:
            self.db.sql("ALTER TABLE items MODIFY price DOUBLE NOT NULL", "apiary")
        for _ in range(3):
            got = self.get(path)
            self.assertEqual(got.status, 200, got)
            self.assertEqual(got.json(), item)

    def test_restart_is_idempotent(self):
        before = self.table("SELECT SUM(randomNumber) FROM world")
        with ApiaryServer({"sql": {"url": self.db.url()}}) as other:
            wait_ready(self, other)
        self.assertEqual(self.table("SELECT COUNT(*) FROM world"), [[10000]])
        self.assertEqual(self.table("SELECT SUM(randomNumber) FROM world"), before)


@unittest.skipUnless(HAVE_POSTGRES, NO_POSTGRES)
class PostgresSqlTest(SqlApiMixin, unittest.TestCase):
    """The shared suite on a private PostgreSQL 15 (pipelined connections), whose statement log counts
    what apiary sends."""

    backend = "postgres"

    @classmethod
    def setUpClass(cls):
        cls.db = PostgresServer(extra_args=["-c", "log_statement=all"]).start()
        try:
            cls.srv = ApiaryServer({"sql": {"url": cls.db.url(), "connections_per_loop": 2}}, threads=2).start()
            wait_ready(unittest.TestCase(), cls.srv)
        except BaseException:
            cls.db.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.db.cleanup()
        cls.srv.assert_no_sanitizer_report()

    def table(self, text):
        rows = self.db.sql(text)
        return [[int(v) if v.lstrip("-").isdigit() else v for v in row] for row in rows]

    def executed(self):
        """Statements the server ran for apiary (extended protocol: one "execute" log line each)."""
        return sum(1 for line in self.db.error_log().splitlines() if "LOG:  execute " in line)

    def test_no_extra_queries(self):
        """One /v1/db is one statement executed: no health checks, no SET, nothing per request."""
        before = self.executed()
        for _ in range(20):
            self.assertEqual(self.get("/v1/db").status, 200)
        deadline = time.monotonic() + 5
        while self.executed() - before < 20 and time.monotonic() < deadline:
            time.sleep(0.05)  # the server writes its log asynchronously
        time.sleep(0.2)
        self.assertEqual(self.executed() - before, 20)

    def test_prepared_once_per_connection(self):
        """? becomes $1 and the statement is prepared once per connection, then only executed."""
        for _ in range(30):
            self.assertEqual(self.get("/v1/db").status, 200)
        log = self.db.error_log()
        self.assertIn("SELECT id, randomNumber FROM world WHERE id = $1", log)
        # 2 loops x 2 connections at most, each preparing the statement once.
        prepared = {line.split("execute ", 1)[1].split(":", 1)[0] for line in log.splitlines()
                    if "LOG:  execute " in line and "FROM world WHERE id = $1" in line}
        self.assertLessEqual(len(prepared), 4, prepared)

    def test_restart_is_idempotent(self):
        before = self.table("SELECT SUM(randomNumber) FROM world")
        with ApiaryServer({"sql": {"url": self.db.url()}}) as other:
            wait_ready(self, other)
        self.assertEqual(self.table("SELECT COUNT(*) FROM world"), [[10000]])
        self.assertEqual(self.table("SELECT SUM(randomNumber) FROM world"), before)
        self.assertEqual(self.table("SELECT MAX(version) FROM apiary_schema_version"), [[3]])

    def test_statements_sent_together_are_not_held_back(self):
        """The statements one loop turn queues on a connection after its first are corked (TCP_CORK)
        and leave together when the turn's flush uncorks the socket. A flush that did not run would
        leave them to the kernel, which sends corked data only after 200 ms: every request of 20
        statements would then take 200 ms or more. Ten take far less in all."""
        with self.srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/queries?queries=20").status, 200)  # connections open
            started = time.monotonic()
            for _ in range(10):
                resp = request(sock, "GET", "/v1/queries?queries=20")
                self.assertEqual(resp.status, 200, resp)
                self.assertEqual(len(resp.json()), 20)
            took = time.monotonic() - started
        self.assertLess(took, 1.5, "statements waited for the kernel's cork timer")

    def test_identity_ids_ascend(self):
        a = self.post_item({"name": "first", "price": 1}).json()["id"]
        b = self.post_item({"name": "second", "price": 2}).json()["id"]
        self.assertGreater(b, a)
        self.assertEqual(self.table(f"SELECT name FROM items WHERE id = {b}"), [["second"]])


@unittest.skipUnless(HAVE_POSTGRES and HAVE_PG_STAT_STATEMENTS, NO_PG_STAT_STATEMENTS)
class PostgresStatementCountTest(unittest.TestCase):
    """What TechEmpower's verifier counts, counted by the server itself with pg_stat_statements
    (preloaded on a private PostgreSQL, utility statements such as BEGIN and SET tracked too): one
    SELECT per row of /v1/queries, one SELECT per row plus ONE UPDATE per /v1/updates, and nothing else
    per request. Connection setup sends no statement (client_connection_check_interval goes in the
    startup packet's options); the startup hook's migrations run before the counters are reset."""

    @classmethod
    def setUpClass(cls):
        cls.db = PostgresServer(extra_args=["-c", "shared_preload_libraries=pg_stat_statements", "-c",
                                            "pg_stat_statements.track=all", "-c",
                                            "pg_stat_statements.track_utility=on"]).start()
        try:
            cls.db.sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            cls.srv = ApiaryServer({"sql": {"url": cls.db.url(), "connections_per_loop": 2}}, threads=2).start()
            wait_ready(unittest.TestCase(), cls.srv)
        except BaseException:
            cls.db.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.db.cleanup()
        cls.srv.assert_no_sanitizer_report()

    def get_all(self, path, count):
        answers = []
        with self.srv.connect() as sock:
            for _ in range(count):
                resp = request(sock, "GET", path)
                self.assertEqual(resp.status, 200, resp)
                answers.append(resp.json())
        return answers

    def counted(self, path, count):
        """Runs `count` requests of path after a warm-up (so every connection the load needs is open)
        and returns {statement text: (calls, rows)} of what the server ran meanwhile, psql's own
        reads of pg_stat_statements left out, and the answers."""
        self.get_all(path, 5)
        self.db.sql("SELECT pg_stat_statements_reset()")
        answers = self.get_all(path, count)
        rows = self.db.sql("SELECT query, calls, rows FROM pg_stat_statements WHERE query NOT LIKE '%pg_stat_statements%'")
        return {q: (int(c), int(r)) for q, c, r in rows}, answers

    def test_queries_are_one_select_per_row(self):
        for n in (1, 20):
            with self.subTest(n=n):
                stats, answers = self.counted(f"/v1/queries?queries={n}", 10)
                self.assertEqual(sum(len(a) for a in answers), 10 * n)
                self.assertEqual(stats, {"SELECT id, randomNumber FROM world WHERE id = $1": (10 * n, 10 * n)})

    def test_db_is_one_select(self):
        stats, _ = self.counted("/v1/db", 20)
        self.assertEqual(stats, {"SELECT id, randomNumber FROM world WHERE id = $1": (20, 20)})

    def test_updates_are_one_select_per_row_and_one_update(self):
        for n in (1, 20, 500):
            with self.subTest(n=n):
                stats, answers = self.counted(f"/v1/updates?queries={n}", 4)
                select = stats.pop("SELECT id, randomNumber FROM world WHERE id = $1", None)
                self.assertEqual(select, (4 * n, 4 * n), stats)
                self.assertEqual(len(stats), 1, f"more than one other statement: {stats}")
                text, (calls, rows) = stats.popitem()
                self.assertTrue(text.startswith("UPDATE world SET randomNumber = CASE id WHEN $1 THEN"), text)
                self.assertIn(" END WHERE id IN ($", text)
                self.assertEqual(calls, 4, "one UPDATE per request")
                self.assertEqual(rows, sum(len({r["id"] for r in a}) for a in answers), "rows written")


# --------------------------------------------------------------------------------------------------
# MariaDB and PostgreSQL under failure


class SqlFailureMixin(AsyncAssertions):
    """The failure table of docs/sql.md on a database server of a subclass's (make_server, backend,
    product)."""

    TIMEOUT_MS = 400

    def assert_group_on_one_connection(self, srv):
        """With the database stopped, the 10 statements of a /v1/queries?queries=10 are all in flight
        on the only connection (none waits for another), and all complete once it resumes."""
        self.db.pause()
        with srv.connect() as sock:
            sock.sendall(build_request("GET", "/v1/queries?queries=10"))
            time.sleep(0.3)
            self.assertEqual(self.metric(srv, "apiary_sql_pool_waiting"), 0)
            self.assertEqual(self.metric(srv, "apiary_sql_pool_in_use"), 1)
            self.db.signal(signal.SIGCONT)
            resp = apiary_harness.read_response(sock, timeout=5)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(len(resp.json()), 10)
        self.assertEqual(self.metric(srv, "apiary_sql_pool_open"), 1)

    def assert_fifth_fails_alone(self, srv):
        """With the database stopped, a /v1/queries?queries=20 and then a /v1/db are pipelined on the
        only connection; once it resumes, the first request gets 500 (its 5th statement fails: the
        caller's view makes it) and the /v1/db 200."""
        self.db.pause()
        a, b = srv.connect(), srv.connect()
        try:
            a.sendall(build_request("GET", "/v1/queries?queries=20"))
            time.sleep(0.3)
            b.sendall(build_request("GET", "/v1/db"))
            time.sleep(0.3)
            self.assertEqual(self.metric(srv, "apiary_sql_pool_waiting"), 0)  # all 21 on the connection
            self.db.signal(signal.SIGCONT)
            first = apiary_harness.read_response(a, timeout=5)
            second = apiary_harness.read_response(b, timeout=5)
        finally:
            a.close()
            b.close()
        self.assertProblemDoc(first, 500)
        self.assertEqual(second.status, 200, (second, srv.log_text()))

    @classmethod
    def setUpClass(cls):
        cls.db = cls.make_server().start()

    @classmethod
    def tearDownClass(cls):
        cls.db.cleanup()

    def setUp(self):
        if self.db.proc is None or self.db.proc.poll() is not None:
            self.db.start()
        self.db.signal(signal.SIGCONT)

    def tearDown(self):
        self.db.signal(signal.SIGCONT)

    def apiary(self, **sql):
        cfg = {"url": self.db.url(), "query_timeout_ms": self.TIMEOUT_MS, "connections_per_loop": 2}
        cfg.update(sql)
        srv = ApiaryServer({"sql": cfg})
        srv.start()
        self.addCleanup(srv.assert_no_sanitizer_report)
        self.addCleanup(srv.stop)
        wait_ready(self, srv)
        return srv

    def metric(self, srv, name, labels=None):
        labels = labels or f'backend="{self.backend}"'
        with srv.connect() as sock:
            text = request(sock, "GET", "/metrics").body.decode()
        for line in text.splitlines():
            if line.startswith(f"{name}{{{labels}}} "):
                return float(line.split()[-1])
        self.fail(f"{name}{{{labels}}} not in /metrics")

    def wait_for_status(self, srv, path, status, timeout=8.0):
        deadline = time.monotonic() + timeout
        while True:
            with srv.connect() as sock:
                resp = request(sock, "GET", path)
            if resp.status == status:
                return resp
            if time.monotonic() > deadline:
                self.fail(f"{path} still {resp.status}, not {status}, after {timeout} s\n{srv.log_text()}")
            time.sleep(0.05)

    def test_group_waits_for_room_for_all_of_it(self):
        """On both pipelining backends, a sql_query_many's statements wait for a connection with room
        for all of them (up to the depth) instead of going out in pieces, each of which would leave in
        a segment of its own:
        with depth 8 and 3 statements in flight on the only connection, the 8 SELECTs of a
        /v1/queries?queries=8 all wait (before: 5 went, 3 waited); once the database resumes, all are
        answered."""
        srv = self.apiary(connections_per_loop=1, pipeline_depth=8, query_timeout_ms=5000)
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)
        self.db.pause()
        socks = [srv.connect() for _ in range(4)]
        try:
            for s in socks[:3]:
                s.sendall(build_request("GET", "/v1/db"))
            time.sleep(0.3)
            self.assertEqual(self.metric(srv, "apiary_sql_pool_waiting"), 0)
            socks[3].sendall(build_request("GET", "/v1/queries?queries=8"))
            time.sleep(0.3)
            self.assertEqual(self.metric(srv, "apiary_sql_pool_waiting"), 8)
            self.db.signal(signal.SIGCONT)
            answers = [apiary_harness.read_response(s, timeout=5) for s in socks]
        finally:
            for s in socks:
                s.close()
        self.assertEqual([a.status for a in answers], [200] * 4, answers)
        self.assertEqual(len(answers[3].json()), 8)

    def test_stalled_database_gets_504_then_recovers(self):
        srv = self.apiary()
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)
            self.db.pause()
            resp, took = timed_request(sock, "GET", "/v1/db")
            self.assertProblemDoc(resp, 504)
            self.assertGreaterEqual(took, self.TIMEOUT_MS / 1000 - 0.05)
            self.assertLess(took, self.TIMEOUT_MS / 1000 + 1.0)
            # Everything that does not need the database is unaffected.
            self.assertEqual(request(sock, "GET", "/v1/hello").status, 200)
        self.db.signal(signal.SIGCONT)
        self.wait_for_status(srv, "/v1/db", 200, timeout=5)
        self.assertGreaterEqual(self.metric(srv, "apiary_sql_errors_total", f'backend="{self.backend}",kind="timeout"'), 1)
        # The connection that timed out mid-statement was closed, not reused.
        self.assertGreaterEqual(self.metric(srv, "apiary_sql_connections_closed_total"), 1)
        with srv.connect() as sock:
            for _ in range(10):
                self.assertEqual(request(sock, "GET", "/v1/queries?queries=5").status, 200)

    def test_deadline_of_a_later_statement(self):
        """One timer per loop watches every statement's deadline (lib/clients/sql_task.c): it is armed at
        the oldest live statement's deadline and not moved when that statement completes. A statement
        sent halfway through an earlier one's timeout therefore finds the timer armed too early for it:
        the timer must fire, find nothing expired, and re-arm, so the later statement still times out
        at its own deadline (not at the earlier one's, not never). Several statements stalled at once
        (queries=5) all end in that one pass."""
        srv = self.apiary()
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)
            time.sleep(self.TIMEOUT_MS / 2000)
            self.db.pause()
            resp, took = timed_request(sock, "GET", "/v1/db")
            self.assertProblemDoc(resp, 504)
            self.assertGreaterEqual(took, self.TIMEOUT_MS / 1000 - 0.05)
            self.assertLess(took, self.TIMEOUT_MS / 1000 + 1.0)
            resp, took = timed_request(sock, "GET", "/v1/queries?queries=5")
            self.assertIn(resp.status, (503, 504), resp)
            self.assertGreaterEqual(took, self.TIMEOUT_MS / 1000 - 0.05)
            self.assertLess(took, self.TIMEOUT_MS / 1000 + 1.0)
        self.db.signal(signal.SIGCONT)
        self.wait_for_status(srv, "/v1/db", 200, timeout=5)

    def test_killed_database_fails_fast_and_restart_recovers(self):
        srv = self.apiary()
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)
        self.db.kill()
        with srv.connect() as sock:
            self.wait_for_status(srv, "/readyz", 503, timeout=5)
            for path in ("/v1/db", "/v1/queries?queries=3", "/v1/items/1"):
                resp, took = timed_request(sock, "GET", path)
                self.assertProblemDoc(resp, 503)
                self.assertEqual(resp.headers.get("Retry-After"), "1")
                # Far below the 400 ms query timeout and the 1 s connect timeout, yet not a tight bound.
                self.assertLess(took, 0.3, f"{path} took {took:.3f} s")
                self.assertNotIn(str(self.db.port), resp.body.decode())
            ready = request(sock, "GET", "/readyz")
            self.assertProblemDoc(ready, 503)
            self.assertEqual(ready.json()["detail"], "the database is unavailable")
            self.assertNotIn("127.0.0.1", ready.body.decode())
            self.assertEqual(request(sock, "GET", "/healthz").status, 200)
            self.assertEqual(request(sock, "GET", "/v1/hello").status, 200)
        self.db.start()
        self.wait_for_status(srv, "/v1/db", 200, timeout=6)
        self.wait_for_status(srv, "/readyz", 200, timeout=3)

    def test_graceful_restart_recovers(self):
        srv = self.apiary()
        with srv.connect() as sock:
            for _ in range(4):
                self.assertEqual(request(sock, "GET", "/v1/queries?queries=4").status, 200)
        self.db.stop()
        self.db.start()
        # Stale connections were noticed while idle and dropped: no request fails after the restart.
        time.sleep(0.3)
        with srv.connect() as sock:
            for _ in range(5):
                resp = request(sock, "GET", "/v1/db")
                self.assertEqual(resp.status, 200, resp)

    def test_down_at_start(self):
        """The startup hook waits for the database (sql.startup_timeout_ms) before the server listens:
        the tables must exist before the first request. So apiary does not accept (nor say ready)
        while the database is down, and serves as soon as it has come up and the schema is there."""
        self.db.kill()
        srv = ApiaryServer({"sql": {"url": self.db.url(), "query_timeout_ms": self.TIMEOUT_MS}}, startup_timeout=30)
        wait_for_port = srv._wait_for_port

        def start_db_meanwhile():
            # mariadbd dies with the thread that started it (PR_SET_PDEATHSIG), so it is started here,
            # on the test's thread, while apiary waits for it.
            deadline = time.monotonic() + 10
            while "waiting up to" not in srv.log_text() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(1.0)
            self.assertNotIn("listening on", srv.log_text(), "listening before its tables exist")
            self.db.start()
            return wait_for_port()

        srv._wait_for_port = start_db_meanwhile
        srv.start()
        self.addCleanup(srv.assert_no_sanitizer_report)
        self.addCleanup(srv.stop)
        log = srv.log_text()
        self.assertIn("waiting up to 30000 ms for the database", log)
        wait_ready(self, srv, timeout=8)
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)

    def test_down_beyond_the_startup_timeout_stops_the_start(self):
        self.db.kill()
        self.addCleanup(self.db.start)
        srv = ApiaryServer({"sql": {"url": self.db.url(), "startup_timeout_ms": 1000}})
        with self.assertRaises(ServerStartError):
            srv.start()
        self.assertEqual(srv.proc.returncode, 1)
        log = srv.log_text()
        self.assertIn("the database stayed unavailable for sql.startup_timeout_ms", log)
        self.assertIn("the startup hook failed; not starting", log)
        self.assertNotIn("listening on", log)

    def test_pool_exhausted_is_bounded(self):
        srv = self.apiary(connections_per_loop=1, max_waiting=2, pipeline_depth=1)
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)
        self.db.pause()
        socks = [srv.connect() for _ in range(6)]
        try:
            for s in socks:
                s.sendall(build_request("GET", "/v1/db"))
            results = []
            for s in socks:
                resp, took = apiary_harness.read_response(s, timeout=5), None
                results.append(resp.status)
        finally:
            for s in socks:
                s.close()
        # One runs on the connection, two wait: those three time out (504); the rest are refused at
        # once with 503 "busy" instead of queueing without bound.
        self.assertEqual(sorted(results), [503, 503, 503, 504, 504, 504], results)
        self.db.signal(signal.SIGCONT)
        self.wait_for_status(srv, "/v1/db", 200, timeout=5)
        self.assertGreaterEqual(self.metric(srv, "apiary_sql_errors_total", f'backend="{self.backend}",kind="busy"'), 3)

    def test_waiters_are_served_in_order(self):
        """FIFO: with one connection and the database stopped, inserts queue up; once it resumes they
        run in the order they arrived, which the ids the database hands out show."""
        srv = self.apiary(connections_per_loop=1, query_timeout_ms=5000)
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)
        self.db.pause()
        socks = []
        try:
            for i in range(6):
                s = srv.connect()
                s.sendall(build_request("POST", "/v1/items", JSON, json.dumps({"name": f"fifo-{i}", "price": i}).encode()))
                socks.append(s)
                time.sleep(0.05)  # arrival order is the point
            self.db.signal(signal.SIGCONT)
            items = []
            for s in socks:
                resp = apiary_harness.read_response(s, timeout=10)
                self.assertEqual(resp.status, 201, resp)
                items.append(resp.json())
        finally:
            for s in socks:
                s.close()
        ids = [item["id"] for item in items]
        self.assertEqual([item["name"] for item in items], [f"fifo-{i}" for i in range(6)])
        self.assertEqual(ids, sorted(ids), "served out of order")

    def test_client_leaving_mid_query_discards_and_reuses(self):
        """Finish and discard: the statement of a request that is gone completes on its connection,
        the result is dropped, and the same connection serves the next request."""
        srv = self.apiary(connections_per_loop=1, query_timeout_ms=3000)
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)
        connects = self.metric(srv, "apiary_sql_connects_total")
        self.db.pause()
        for _ in range(5):
            s = srv.connect()
            s.sendall(build_request("GET", "/v1/queries?queries=3"))
            time.sleep(0.02)
            abort(s)
        time.sleep(0.2)
        self.db.signal(signal.SIGCONT)
        with srv.connect() as sock:
            for _ in range(5):
                resp = request(sock, "GET", "/v1/queries?queries=3")
                self.assertEqual(resp.status, 200, resp)
        self.assertGreaterEqual(self.metric(srv, "apiary_sql_results_discarded_total"), 1)
        self.assertEqual(self.metric(srv, "apiary_sql_connections_closed_total"), 0)
        self.assertEqual(self.metric(srv, "apiary_sql_connects_total"), connects)

    def test_many_clients_leave_at_once(self):
        srv = self.apiary(connections_per_loop=4)
        socks = []
        for _ in range(40):
            s = srv.connect()
            s.sendall(build_request("GET", "/v1/queries?queries=20"))
            socks.append(s)
        for s in socks:
            abort(s)
        time.sleep(0.3)
        with srv.connect() as sock:
            for _ in range(5):
                self.assertEqual(request(sock, "GET", "/v1/updates?queries=5").status, 200)
        self.assertEqual(self.metric(srv, "apiary_sql_pool_in_use"), 0)
        self.assertEqual(self.metric(srv, "apiary_sql_pool_waiting"), 0)

    def test_password_never_shown(self):
        os.environ["APIARY_SQL_URL"] = self.db.url(password=PASSWORD)
        try:
            srv = ApiaryServer({"sql": {"url": "sqlite:/nonexistent/never-used.db",
                                        "query_timeout_ms": self.TIMEOUT_MS}}).start()
        finally:
            del os.environ["APIARY_SQL_URL"]
        self.addCleanup(srv.stop)
        wait_ready(self, srv)
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)
            self.db.kill()
            bodies = [request(sock, "GET", p).body for p in ("/v1/db", "/readyz", "/metrics")]
        self.db.start()
        for body in bodies:
            self.assertNotIn(PASSWORD.encode(), body)
        self.assertIn(self.product, srv.log_text())
        self.assertNotIn(PASSWORD, srv.log_text())


@unittest.skipUnless(HAVE_MARIADB, NO_MARIADB)
class MariadbFailureTest(SqlFailureMixin, unittest.TestCase):
    backend = "mariadb"
    product = "MariaDB"

    @staticmethod
    def make_server():
        return MariadbServer()

    def test_one_connection_carries_many_statements(self):
        """Pipelining on MariaDB (plaintext): with one connection per loop and the database stopped,
        the 10 statements of a request are all in flight on that connection (none waits in the line),
        written by apiary as COM_STMT_EXECUTEs back to back, and complete in order once it resumes."""
        srv = self.apiary(connections_per_loop=1, query_timeout_ms=5000)
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)  # prepared on the connection
        self.assert_group_on_one_connection(srv)
        self.assertEqual(self.metric(srv, "apiary_sql_connections_closed_total"), 0)

    def test_failing_statement_fails_only_itself(self):
        """Each pipelined execute is its own command: with the database stopped, a
        /v1/queries?queries=20 and then a /v1/db are pipelined on the only connection; world is
        swapped for a view whose 5th evaluation from then on raises an error (SIGNAL in a function).
        The 5th statement's ERR packet fails it alone and its request gets 500; the 15 after it still
        run (the sequence reaches 21), the /v1/db gets 200, and the connection stays."""
        srv = self.apiary(connections_per_loop=1, query_timeout_ms=5000)
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)
        self.db.sql("ALTER TABLE world RENAME TO world_t", database="apiary")
        self.addCleanup(self.db.sql, "DROP VIEW IF EXISTS world; DROP FUNCTION IF EXISTS world_fail_f; "
                                     "DROP SEQUENCE IF EXISTS world_fail; RENAME TABLE world_t TO world", "apiary")
        self.db.sql("CREATE SEQUENCE world_fail NOCACHE;\nDELIMITER //\n"
                    "CREATE FUNCTION world_fail_f(x INT) RETURNS INT NOT DETERMINISTIC BEGIN "
                    "IF NEXTVAL(world_fail) = 5 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'the fifth'; "
                    "END IF; RETURN x; END//\nDELIMITER ;\n"
                    "CREATE VIEW world AS SELECT id, world_fail_f(randomNumber) AS randomNumber FROM world_t",
                    database="apiary")
        self.assert_fifth_fails_alone(srv)
        self.assertIsNotNone(srv.wait_for_log("the fifth", 5), srv.log_text())
        self.assertEqual(self.db.sql("SELECT next_not_cached_value FROM world_fail", database="apiary"), [["22"]])
        self.assertEqual(self.metric(srv, "apiary_sql_connections_closed_total"), 0)
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/queries?queries=20").status, 200)

    def test_reads_do_not_wait_behind_a_write(self):
        """A statement that writes is autocommitted: its answer waits for its commit, here for row locks
        another session holds. Pipelined behind it, a read would wait as long, so apiary keeps every
        statement off a connection with a write in flight. With two connections per loop, one of them
        open with the world routes' SELECT and UPDATE prepared on it, the UPDATE of a
        /v1/updates?queries=1 waits there for the locks; a /v1/db sent meanwhile is answered at once
        (a second connection opens for it) while the locks are still held, and the update completes
        once they are released."""
        srv = self.apiary(connections_per_loop=2, query_timeout_ms=15000)
        with srv.connect() as sock:  # one request at a time: one connection opens, both statements prepared
            self.assertEqual(request(sock, "GET", "/v1/updates?queries=1").status, 200)
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)
        self.assertEqual(self.metric(srv, "apiary_sql_pool_open"), 1)
        locker = subprocess.Popen([MARIADB_CLIENT, "--no-defaults", "-h127.0.0.1", f"-P{self.db.port}", "-uroot",
                                   "-N", "-B", "--unbuffered", "apiary"],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.addCleanup(locker.kill)
        locker.stdin.write("START TRANSACTION; SELECT COUNT(*) FROM world FOR UPDATE; SELECT 'locked';\n")
        locker.stdin.flush()
        self.assertEqual(locker.stdout.readline().strip(), "10000")
        self.assertEqual(locker.stdout.readline().strip(), "locked")
        writer = srv.connect()
        try:
            writer.sendall(build_request("GET", "/v1/updates?queries=1"))
            deadline = time.monotonic() + 5
            while self.metric(srv, "apiary_sql_pool_in_use") < 1:  # its SELECT done, its UPDATE waiting
                self.assertLess(time.monotonic(), deadline, srv.log_text())
                time.sleep(0.02)
            time.sleep(0.2)
            started = time.monotonic()
            with srv.connect() as sock:
                sock.settimeout(5)
                read = request(sock, "GET", "/v1/db")
            self.assertEqual(read.status, 200, (read, srv.log_text()))
            self.assertLess(time.monotonic() - started, 3.0)
            self.assertIsNone(locker.poll())  # the locks were held throughout
            locker.stdin.write("ROLLBACK;\n")
            locker.stdin.close()
            self.assertEqual(locker.wait(timeout=10), 0)
            written = read_response(writer, timeout=10)
        finally:
            writer.close()
        self.assertEqual(written.status, 200, (written, srv.log_text()))
        self.assertEqual(self.metric(srv, "apiary_sql_pool_open"), 2)


@unittest.skipUnless(HAVE_POSTGRES, NO_POSTGRES)
class PostgresFailureTest(SqlFailureMixin, unittest.TestCase):
    """The same table on PostgreSQL, plus what pipelining adds: many statements of many requests in
    flight on one connection, and what a deadline does to the ones behind a stalled statement."""

    backend = "postgres"
    product = "PostgreSQL"

    @staticmethod
    def make_server():
        return PostgresServer()

    def test_one_connection_carries_many_statements(self):
        """Pipelining: with one connection per loop and the database stopped, the 10 statements of a
        request are all in flight on that connection (none waits in the line), and complete in order
        once it resumes."""
        srv = self.apiary(connections_per_loop=1, query_timeout_ms=5000)
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)
        self.assert_group_on_one_connection(srv)

    def test_failing_statement_fails_only_itself(self):
        """Every statement has its own Sync, those of one sql_query_many (a /v1/queries request's
        SELECTs) too: its own implicit transaction (TechEmpower's rule 7; one Sync for the group would
        be a batch). With the database stopped, a /v1/queries?queries=20 and then a /v1/db are
        pipelined on the only connection; the world table is swapped for a view whose 5th evaluation
        from then on divides by zero. The 5th statement fails and its request gets 500 (the call
        fails with its first failure), but nothing else is aborted: the 15 after it still run (the
        sequence reaches 21, where one Sync for the group stopped it at 6), the /v1/db after them
        gets 200, and the connection stays (an ERROR keeps the session)."""
        srv = self.apiary(connections_per_loop=1, query_timeout_ms=5000)  # its start creates world
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)  # prepared (re-planned below)
        self.db.sql("ALTER TABLE world RENAME TO world_t")
        self.addCleanup(self.db.sql, "DROP VIEW IF EXISTS world; DROP SEQUENCE IF EXISTS world_fail; "
                                     "ALTER TABLE IF EXISTS world_t RENAME TO world")
        self.db.sql("CREATE SEQUENCE world_fail; "
                    "CREATE VIEW world AS SELECT id, randomNumber / (nextval('world_fail') <> 5)::int "
                    "AS randomNumber FROM world_t")
        self.assert_fifth_fails_alone(srv)
        self.assertIsNotNone(srv.wait_for_log("division by zero", 5), srv.log_text())
        # Not aborted: the group's statements after the 5th ran (20 SELECTs and the /v1/db).
        self.assertEqual(self.db.sql("SELECT last_value FROM world_fail"), [["21"]])
        self.assertEqual(self.metric(srv, "apiary_sql_connections_closed_total"), 0)
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/queries?queries=20").status, 200)

    def test_pipeline_depth_bounds_what_is_in_flight(self):
        """Beyond sql.pipeline_depth on every connection, statements wait in the loop's FIFO."""
        srv = self.apiary(connections_per_loop=1, pipeline_depth=4, query_timeout_ms=5000)
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)
        self.db.pause()
        with srv.connect() as sock:
            sock.sendall(build_request("GET", "/v1/queries?queries=10"))
            time.sleep(0.3)
            self.assertEqual(self.metric(srv, "apiary_sql_pool_waiting"), 6)
            self.db.signal(signal.SIGCONT)
            resp = apiary_harness.read_response(sock, timeout=5)
        self.assertEqual(resp.status, 200, resp)
        self.assertEqual(len(resp.json()), 10)

    def test_stalled_pipeline_times_out_and_recovers(self):
        """Several requests in flight on one stalled connection: every one is answered by the deadline
        (504 for the first, 503 or 504 for those behind it on the closed connection), none later; the
        connection is replaced and serves again after SIGCONT."""
        srv = self.apiary(connections_per_loop=1)
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)
        self.db.pause()
        socks = [srv.connect() for _ in range(4)]
        try:
            started = time.monotonic()
            for s in socks:
                s.sendall(build_request("GET", "/v1/db"))
            statuses = [apiary_harness.read_response(s, timeout=5).status for s in socks]
            took = time.monotonic() - started
        finally:
            for s in socks:
                s.close()
        self.assertEqual(statuses[0], 504, statuses)
        self.assertTrue(all(st in (503, 504) for st in statuses), statuses)
        self.assertLess(took, self.TIMEOUT_MS / 1000 + 1.0)
        self.db.signal(signal.SIGCONT)
        self.wait_for_status(srv, "/v1/db", 200, timeout=5)
        self.assertGreaterEqual(self.metric(srv, "apiary_sql_connections_closed_total"), 1)

    def test_statement_past_its_deadline_is_abandoned_by_the_server(self):
        """No cancel on a loop (libpq 15's PQcancel blocks): a statement past its deadline closes its
        connection, and the server gives it up within about a second even while it waits on a lock
        (client_connection_check_interval), instead of waiting, and holding its own locks, until the
        lock is released."""
        srv = self.apiary(connections_per_loop=1)
        with srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/v1/db").status, 200)
        locker = subprocess.Popen([PSQL, "-h", "127.0.0.1", "-p", str(self.db.port), "-U", "apiary", "-d", "apiary",
                                   "-X", "-q", "-c", "BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE; "
                                   "SELECT pg_sleep(4); COMMIT;"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(locker.wait, 20)
        deadline = time.monotonic() + 5
        while self.db.sql("SELECT COUNT(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation "
                          "WHERE c.relname = 'items' AND l.mode = 'AccessExclusiveLock' AND l.granted") != [["1"]]:
            self.assertLess(time.monotonic(), deadline, "the lock was not taken")
            time.sleep(0.05)
        waiting = ("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'apiary' "
                   "AND wait_event_type = 'Lock'")
        with srv.connect() as sock:
            resp, took = timed_request(sock, "POST", "/v1/items", JSON, json.dumps({"name": "x", "price": 1}).encode())
        self.assertProblemDoc(resp, 504)
        self.assertLess(took, self.TIMEOUT_MS / 1000 + 1.0)
        gone = time.monotonic() + 3
        while self.db.sql(waiting) != [["0"]]:
            self.assertLess(time.monotonic(), gone, "the server still runs the abandoned statement")
            time.sleep(0.1)
        self.assertIsNone(locker.poll(), "the lock was released meanwhile: the test proves nothing")

    def test_transaction_pins_its_connection(self):
        """The migrations' transactions and sql_query_many (/v1/queries, /v1/updates) side by side: with one
        connection per loop, a batch (BEGIN ... COMMIT) waits for the pipeline to drain and nothing else
        runs inside it; everything completes."""
        srv = self.apiary(connections_per_loop=1, query_timeout_ms=5000)
        errors = []

        def client(path):
            try:
                with srv.connect() as sock:
                    for _ in range(5):
                        resp = request(sock, "GET", path)
                        if resp.status != 200:
                            errors.append((path, resp.status, resp.body))
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)

        threads = [threading.Thread(target=client, args=(p,)) for p in
                   ["/v1/queries?queries=10", "/v1/updates?queries=5", "/v1/queries?queries=3", "/v1/updates?queries=2"]]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(self.metric(srv, "apiary_sql_pool_in_use"), 0)


# --------------------------------------------------------------------------------------------------
# config


class SqlConfigTest(unittest.TestCase):
    def check(self, sql, env=None):
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "apiary.json")
            with open(path, "w") as f:
                json.dump({"sql": sql}, f)
            e = dict(os.environ)
            e.pop("APIARY_SQL_URL", None)
            e.update(env or {})
            return subprocess.run([apiary_harness.apiary_bin(), "--config", path, "--check-config"], env=e,
                                  capture_output=True, text=True, timeout=10)

    def test_good(self):
        for url in ("", "sqlite:/tmp/x.db", "mysql://u:p@127.0.0.1:3306/db", "mysql://u@127.0.0.1/db",
                    "mariadb://u:p%40ss@[::1]:3307/db_1", "postgres://u:p@127.0.0.1:5432/db", "postgresql://u@[::1]/db",
                    "postgres://u:p@%2Frun%2Fpostgresql/db", "postgres://u:p@127.0.0.1/db?sslmode=require"):
            with self.subTest(url=url):
                r = self.check({"url": url})
                self.assertEqual(r.returncode, 0, r.stderr)

    def test_bad(self):
        for sql, key in [({"url": f"pgsql://u:{PASSWORD}@127.0.0.1/db"}, "sql.url"),
                         ({"url": f"postgres://u:{PASSWORD}@localhost/db"}, "sql.url"),
                         ({"url": f"postgres://u:{PASSWORD}@127.0.0.1/db?sslmode=verify-full"}, "sql.url"),
                         ({"pipeline_depth": 0}, "sql.pipeline_depth"),
                         ({"url": f"mysql://u:{PASSWORD}@localhost:3306/db"}, "sql.url"),
                         ({"url": f"mysql://u:{PASSWORD}@127.0.0.1:0/db"}, "sql.url"),
                         ({"url": f"mysql://u:{PASSWORD}@127.0.0.1:3306/"}, "sql.url"),
                         ({"url": f"mysql://u:{PASSWORD}@127.0.0.1:3306/a;b"}, "sql.url"),
                         ({"url": 5}, "sql.url"),
                         ({"colour": 1}, "sql.colour"),
                         ({"connections_per_loop": 0}, "sql.connections_per_loop"),
                         ({"query_timeout_ms": 0}, "sql.query_timeout_ms")]:
            with self.subTest(sql=sql):
                r = self.check(sql)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertIn(key, r.stderr)
                self.assertNotIn(PASSWORD, r.stderr)

    def test_env_overrides_and_is_checked(self):
        r = self.check({"url": "sqlite:/tmp/x.db"}, env={"APIARY_SQL_URL": f"mysql://u:{PASSWORD}@db.example/x"})
        self.assertEqual(r.returncode, 2)
        self.assertIn("APIARY_SQL_URL", r.stderr)
        self.assertNotIn(PASSWORD, r.stderr)


if __name__ == "__main__":
    unittest.main()
