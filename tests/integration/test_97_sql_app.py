"""An app that owns its SQL schema (issue 22): examples/inventory, built against an installed apiary
like every example (test_97_library.Installed), on SQLite, a private MariaDB and a private PostgreSQL. Its startup hook
creates its own `items` table of another shape than the apiary binary's, and nothing of the
demonstration schema (world, the binary's items) appears in its database; transfers run in a
transaction, so one that cannot complete leaves nothing half-done; a real deadlock with another session
(MariaDB, PostgreSQL) is answered as a conflict (503, Retry-After: 0), not as busy; a restart applies no
migration twice; and its start fails (exit 1) when its schema cannot be created."""

import json
import os
import queue
import re
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

from apiary_harness import ApiaryServer, ServerStartError, abort, build_request, json_request_body, request
from test_97_library import Installed, get_json, tearDownModule  # noqa: F401 (the install's cleanup)
try:
    import pymysql  # python3-pymysql: the deadlock test's other MariaDB client
except ImportError:
    pymysql = None
from test_97_sql import (HAVE_MARIADB, HAVE_POSTGRES, NO_MARIADB, NO_POSTGRES, PSQL, MariadbServer,
                         PostgresServer, wait_ready)

JSON = {"Content-Type": "application/json"}
_binary = []


def inventory_binary():
    """examples/inventory, built once for the file against the installed prefix."""
    if not _binary:
        _binary.append(Installed.get().build_example("inventory"))
    return _binary[0]


class InventoryMixin:
    """The same cases on both backends; a subclass gives sql_url() and tables()."""

    @classmethod
    def start_app(cls):
        cls.srv = ApiaryServer({"sql": {"url": cls.sql_url()}}, threads=2, binary=cls.binary).start()
        wait_ready(unittest.TestCase(), cls.srv)

    def post(self, path, body):
        return get_json(self.srv, path, "POST", json_request_body(body), JSON)

    def qty(self, sku):
        r, item = get_json(self.srv, f"/items/{sku}")
        self.assertEqual(r.status, 200, r.body)
        return item["qty"]

    def test_its_own_schema_and_nothing_else(self):
        tables = self.tables()
        self.assertIn("items", tables)
        self.assertIn("transfers", tables)
        self.assertIn("apiary_schema_version", tables)
        self.assertNotIn("world", tables, "the demonstration schema belongs to the apiary binary")
        self.assertEqual(self.columns("items"), ["sku", "qty"])

    def test_create_and_read(self):
        r, item = self.post("/items", {"sku": "C-1", "qty": 7})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(item, {"sku": "C-1", "qty": 7})
        self.assertEqual(self.qty("C-1"), 7)
        r, _ = self.post("/items", {"sku": "C-1", "qty": 1})
        self.assertEqual(r.status, 409, r.body)
        self.assertEqual(get_json(self.srv, "/items/NOPE")[0].status, 404)
        r, problem = self.post("/items", {"sku": "bad sku", "qty": 1})
        self.assertEqual((r.status, problem["field"]), (422, "sku"))

    def test_transfer_is_all_or_nothing(self):
        self.assertEqual(self.post("/items", {"sku": "T-A", "qty": 5})[0].status, 201)
        self.assertEqual(self.post("/items", {"sku": "T-B", "qty": 0})[0].status, 201)
        r, moved = self.post("/transfers", {"from": "T-A", "to": "T-B", "qty": 2})
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(moved, {"from": {"sku": "T-A", "qty": 3}, "to": {"sku": "T-B", "qty": 2}})
        r, _ = self.post("/transfers", {"from": "T-A", "to": "T-B", "qty": 10})
        self.assertEqual(r.status, 409, r.body)
        # The decrement of T-A runs before the missing T-Z is noticed: the rollback undoes it.
        r, problem = self.post("/transfers", {"from": "T-A", "to": "T-Z", "qty": 1})
        self.assertEqual((r.status, problem.get("field")), (404, "to"), r.body)
        self.assertEqual((self.qty("T-A"), self.qty("T-B")), (3, 2))

    def test_concurrent_transfers_keep_the_total(self):
        self.assertEqual(self.post("/items", {"sku": "K-A", "qty": 100})[0].status, 201)
        self.assertEqual(self.post("/items", {"sku": "K-B", "qty": 100})[0].status, 201)
        statuses = []

        def worker(a, b):
            for _ in range(10):
                statuses.append(self.post("/transfers", {"from": a, "to": b, "qty": 1})[0].status)

        threads = [threading.Thread(target=worker, args=p) for p in (("K-A", "K-B"), ("K-B", "K-A")) * 2]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        # 503: a conflict (SQLite's lock held past the deadline, or a deadlock the database rolled
        # back), never half-done.
        self.assertTrue(all(s in (200, 503) for s in statuses), statuses)
        self.assertIn(200, statuses)
        self.assertEqual(self.qty("K-A") + self.qty("K-B"), 200)

    def test_clients_leaving_mid_transaction_leave_nothing_open(self):
        """Clients that send a transfer and vanish at once: their requests are cancelled somewhere between
        BEGIN and COMMIT. Each transaction is either committed or rolled back, none stays open on a
        connection that goes back to the pool, and the next transfers run normally."""
        self.assertEqual(self.post("/items", {"sku": "L-A", "qty": 1000})[0].status, 201)
        self.assertEqual(self.post("/items", {"sku": "L-B", "qty": 1000})[0].status, 201)
        raw = build_request("POST", "/transfers", JSON, json_request_body({"from": "L-A", "to": "L-B", "qty": 1}))
        for i in range(60):
            sock = self.srv.connect()
            sock.sendall(raw)
            if i % 3:
                time.sleep(0.001 * (i % 5))
            abort(sock)
        deadline = time.monotonic() + 10
        while self.open_transactions() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.open_transactions(), 0)
        for _ in range(5):
            r, moved = self.post("/transfers", {"from": "L-B", "to": "L-A", "qty": 1})
            self.assertEqual(r.status, 200, r.body)
        self.assertEqual(self.qty("L-A") + self.qty("L-B"), 2000)

    def test_a_deadlock_is_answered_as_a_conflict(self):
        """A real deadlock between a transfer and another client of the database: the other session
        locks D-Z, the transfer locks D-A and waits for D-Z, then the other session asks for D-A. The
        server rolls the transfer back (the other session is made the survivor: see deadlock_session),
        and apiary answers it as a conflict, not as its own line being busy: 503, Retry-After: 0, the
        conflict's words, counted as kind="conflict". Nothing of either is left, and the same transfer
        sent again succeeds."""
        self.assertEqual(self.post("/items", {"sku": "D-A", "qty": 10})[0].status, 201)
        self.assertEqual(self.post("/items", {"sku": "D-Z", "qty": 10})[0].status, 201)
        self.assertEqual(self.post("/items", {"sku": "D-M", "qty": 10})[0].status, 201)
        # A server of its own: a query timeout well beyond the database's deadlock detection, so what
        # comes back is the deadlock and not a 504.
        srv = ApiaryServer({"sql": {"url": self.sql_url(), "query_timeout_ms": 10000}}, threads=1,
                           binary=self.binary).start()
        self.addCleanup(srv.assert_no_sanitizer_report)
        self.addCleanup(srv.stop)
        wait_ready(self, srv)
        # The session's output, for a failure's message; appended to, so reading it back (seek(0))
        # while the session still writes cannot move where the session's next line goes.
        said = tempfile.TemporaryFile(mode="a+")
        self.addCleanup(said.close)
        other = self.start_session("D-Z", said)
        self.addCleanup(other.wait, 20)

        def session_output():
            said.seek(0)
            return said.read()

        self.wait_until(self.other_holds_its_lock, lambda: f"the other session did not lock D-Z: {session_output()}")
        answer = []
        transfer = threading.Thread(target=lambda: answer.append(
            get_json(srv, "/transfers", "POST", json_request_body({"from": "D-A", "to": "D-Z", "qty": 1}), JSON)))
        transfer.start()
        self.wait_until(self.apiary_waits_for_a_lock, "the transfer does not wait for D-Z")
        self.ask_for("D-A", other)
        transfer.join(15)
        self.assertEqual(len(answer), 1, "no answer to the transfer")
        r, problem = answer[0]
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.headers.get("Content-Type"), "application/problem+json", r)
        self.assertEqual(r.headers.get("Retry-After"), "0", r)
        self.assertEqual(problem, {"type": "about:blank", "title": "Service Unavailable", "status": 503,
                                   "detail": "the request conflicted with a concurrent one in the database; "
                                             "send it again"})
        self.end_session(other)
        self.assertEqual(other.wait(20), 0, session_output())
        with srv.connect() as sock:
            metrics = request(sock, "GET", "/metrics").body.decode()
        backend = self.BACKEND
        self.assertIn(f'apiary_sql_errors_total{{backend="{backend}",kind="conflict"}} 1\n', metrics)
        self.assertIn(f'apiary_sql_errors_total{{backend="{backend}",kind="busy"}} 0\n', metrics)
        # The harness reads the server's log on a thread of its own: the line may come after the answer.
        self.assertIsNotNone(srv.wait_for_log(re.escape(self.DEADLOCK_LOGGED), 5), srv.log_text())
        self.assertEqual((self.qty("D-A"), self.qty("D-Z")), (10, 10), "both were rolled back")
        r, moved = get_json(srv, "/transfers", "POST", json_request_body({"from": "D-A", "to": "D-Z", "qty": 1}), JSON)
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(moved, {"from": {"sku": "D-A", "qty": 9}, "to": {"sku": "D-Z", "qty": 11}})

    def wait_until(self, predicate, message, timeout=10.0):
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                self.fail(message() if callable(message) else message)
            time.sleep(0.02)

    def start_session(self, sku, output):
        """PostgreSQL: psql reading its statements from a pipe as they come, so the test says when the
        session asks for its second row (ask_for)."""
        other = subprocess.Popen(self.session_argv(), stdin=subprocess.PIPE, stdout=output, stderr=subprocess.STDOUT,
                                 text=True, env=self.session_env())
        self.addCleanup(other.stdin.close)
        other.stdin.write(self.deadlock_session(sku))
        other.stdin.flush()
        return other

    def ask_for(self, sku, other):
        other.stdin.write(f"UPDATE items SET qty = qty + 1 WHERE sku = '{sku}';\n")
        other.stdin.flush()

    def end_session(self, other):
        other.stdin.write("ROLLBACK;\n")
        other.stdin.close()

    def session_env(self):
        return None

    def test_restart_applies_nothing_twice(self):
        with ApiaryServer({"sql": {"url": self.sql_url()}}, binary=self.binary) as again:
            wait_ready(self, again)
            self.assertNotIn("applied now", again.log_text())
        self.assertIn("schema at version 2 (2 steps applied now)", self.srv.log_text())


class InventorySqliteTest(InventoryMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.binary = inventory_binary()
        cls.tmp = tempfile.TemporaryDirectory(prefix="apiary-inventory-")
        cls.db_path = os.path.join(cls.tmp.name, "inventory.db")
        cls.start_app()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.assert_no_sanitizer_report()
        cls.tmp.cleanup()

    @classmethod
    def sql_url(cls):
        return "sqlite:" + cls.db_path

    def tables(self):
        with sqlite3.connect(self.db_path) as db:
            return [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]

    def columns(self, table):
        with sqlite3.connect(self.db_path) as db:
            return [r[1] for r in db.execute(f"PRAGMA table_info({table})")]

    def open_transactions(self):
        """1 while some connection holds the write lock (an open write transaction), else 0."""
        db = sqlite3.connect(self.db_path, timeout=0)
        try:
            db.execute("BEGIN IMMEDIATE")
            db.execute("ROLLBACK")
            return 0
        except sqlite3.OperationalError:
            return 1
        finally:
            db.close()

    def test_a_deadlock_is_answered_as_a_conflict(self):
        self.skipTest("SQLite has one writer, so no deadlock: its lock held by another writer is "
                      "test_97_sql.SqliteConflictTest's")

    def test_a_schema_that_cannot_be_created_stops_the_start(self):
        """A database whose version table is not what sql_migrate made (here its version is text): the
        startup hook fails, the start stops with a message and exit 1, and nothing ever listened."""
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "odd.db")
            with sqlite3.connect(path) as db:
                db.execute("CREATE TABLE apiary_schema_version (version TEXT PRIMARY KEY, applied_at TEXT)")
                db.execute("INSERT INTO apiary_schema_version VALUES ('one', 'then')")
            srv = ApiaryServer({"sql": {"url": "sqlite:" + path}}, binary=self.binary)
            with self.assertRaises(ServerStartError):
                srv.start()
            self.assertEqual(srv.proc.returncode, 1)
            log = srv.log_text()
            self.assertIn("apiary_schema_version answered in an unexpected shape", log)
            self.assertIn("inventory: the schema could not be created", log)
            self.assertIn("the startup hook failed; not starting", log)
            self.assertNotIn("listening on", log)


@unittest.skipUnless(HAVE_MARIADB, NO_MARIADB)
class InventoryMariadbTest(InventoryMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.binary = inventory_binary()
        cls.db = MariadbServer().start()
        try:
            cls.start_app()
        except BaseException:
            cls.db.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.db.cleanup()
        cls.srv.assert_no_sanitizer_report()

    @classmethod
    def sql_url(cls):
        return cls.db.url(database="inventory")

    def tables(self):
        return [r[0] for r in self.db.sql("SHOW TABLES", "inventory")]

    def columns(self, table):
        return [r[0] for r in self.db.sql(f"SHOW COLUMNS FROM {table}", "inventory")]

    def open_transactions(self):
        return int(self.db.sql("SELECT COUNT(*) FROM information_schema.INNODB_TRX")[0][0])

    BACKEND = "mariadb"
    DEADLOCK_LOGGED = "Deadlock found when trying to get lock"

    def start_session(self, sku, output):
        """InnoDB rolls back the transaction of the cycle that changed least: the session writes 200 rows
        of its own first, so the transfer (one row changed when it waits) is the one rolled back."""
        if pymysql is None:
            self.fail("python3-pymysql is not installed (scripts/deps.sh installs it)")
        rows = ", ".join("('x', 'y', 1, 'z')" for _ in range(200))
        self.session = MariadbSession(self.db.port, output, [
            "BEGIN", f"INSERT INTO transfers (from_sku, to_sku, qty, at) VALUES {rows}",
            f"UPDATE items SET qty = qty + 1 WHERE sku = '{sku}'"])
        return self.session

    def ask_for(self, sku, other):
        other.send(f"UPDATE items SET qty = qty + 1 WHERE sku = '{sku}'")

    def end_session(self, other):
        other.send("ROLLBACK")
        other.close()

    def other_holds_its_lock(self):
        return self.session.done == 3  # BEGIN, the 200 rows and the UPDATE have returned

    def apiary_waits_for_a_lock(self):
        """From InnoDB's own status. MariaDB 10.11's INNODB_TRX table left the transfer's transaction out
        for the whole 10 s it waited, while SHOW ENGINE INNODB STATUS listed it as "LOCK WAIT" on D-Z:
        that is why this test was skipped until now. In the status, the line after "LOCK WAIT" names the
        session: "MariaDB thread id N, OS thread handle H, query id Q 127.0.0.1 apiary Updating"."""
        status = self.db.sql("SHOW ENGINE INNODB STATUS")[0][-1].replace("\\n", "\n")
        return re.search(r"^LOCK WAIT .*\n.* 127\.0\.0\.1 apiary ", status, re.M) is not None


class MariadbSession:
    """The deadlock test's other client of MariaDB: a pymysql connection on a thread of its own that runs
    the statements it is given in order, so one that waits for a lock holds up only this thread, and the
    test knows when each has returned (done) without asking the server."""

    def __init__(self, port, output, statements):
        self.output, self.errors, self.todo, self.done, self.closed = output, [], queue.Queue(), 0, False
        for statement in statements:
            self.todo.put(statement)
        self.thread = threading.Thread(target=self._run, args=(port,), daemon=True)
        self.thread.start()

    def _run(self, port):
        try:
            conn = pymysql.connect(host="127.0.0.1", port=port, user="root", database="inventory", autocommit=False,
                                   read_timeout=30, write_timeout=30)
        except pymysql.MySQLError as e:
            self.errors.append(e)
            self.output.write(f"connect: {e}\n")
            return
        with conn:
            while (statement := self.todo.get()) is not None:
                try:
                    with conn.cursor() as cursor:
                        cursor.execute(statement)
                    self.output.write(f"done: {statement[:60]}\n")
                    self.done += 1
                except pymysql.MySQLError as e:
                    self.errors.append(e)
                    self.output.write(f"{statement[:60]}: {e}\n")

    def send(self, statement):
        self.todo.put(statement)

    def close(self):
        if not self.closed:
            self.closed = True
            self.todo.put(None)

    def wait(self, timeout):
        """0 once every statement ran without an error, as a process's exit status."""
        self.close()
        self.thread.join(timeout)
        return 1 if self.thread.is_alive() or self.errors else 0


@unittest.skipUnless(HAVE_POSTGRES, NO_POSTGRES)
class InventoryPostgresTest(InventoryMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.binary = inventory_binary()
        cls.db = PostgresServer().start()
        try:
            cls.db.sql("CREATE DATABASE inventory", database="postgres")
            cls.start_app()
        except BaseException:
            cls.db.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.db.cleanup()
        cls.srv.assert_no_sanitizer_report()

    @classmethod
    def sql_url(cls):
        return cls.db.url(database="inventory")

    def tables(self):
        return [r[0] for r in self.db.sql("SELECT tablename FROM pg_tables WHERE schemaname = 'public'", "inventory")]

    def columns(self, table):
        return [r[0] for r in self.db.sql("SELECT column_name FROM information_schema.columns WHERE table_name = "
                                          f"'{table}' ORDER BY ordinal_position", "inventory")]

    def open_transactions(self):
        """apiary's sessions inside a transaction between statements (one left open would stay so)."""
        return int(self.db.sql("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'apiary' "
                               "AND state LIKE 'idle in transaction%'")[0][0])

    BACKEND = "postgres"
    DEADLOCK_LOGGED = "(40P01)"

    def session_argv(self):
        return [PSQL, "-h", "127.0.0.1", "-p", str(self.db.port), "-U", "apiary", "-d", "inventory", "-X", "-q"]

    def session_env(self):
        return dict(os.environ, PGAPPNAME="deadlock-test")

    def deadlock_session(self, sku):
        """PostgreSQL's deadlock check runs in the session that has waited deadlock_timeout (1 s), and
        that session is the one rolled back: the transfer, which waits first, since this session waits
        30 s before it checks."""
        return f"SET deadlock_timeout = '30s';\nBEGIN;\nUPDATE items SET qty = qty + 1 WHERE sku = '{sku}';\n"

    def other_holds_its_lock(self):
        return self.db.sql("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'deadlock-test' AND "
                           "state = 'idle in transaction' AND query LIKE 'UPDATE%'", "inventory") == [["1"]]

    def apiary_waits_for_a_lock(self):
        return self.db.sql("SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'apiary' AND "
                           "wait_event_type = 'Lock'", "inventory") == [["1"]]


if __name__ == "__main__":
    unittest.main()
