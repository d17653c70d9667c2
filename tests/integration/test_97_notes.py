"""examples/notes, built against an installed apiary like every example (test_97_library.Installed):
a CRUD resource on SQLite with declared schemas (every violation in one 422), a list filtered by a tag
with a bounded limit, 404 and 204 answers, its tables made by a migration, and a preview route that
awaits a renderer upstream (here, in this process) under a timeout of its own: 504 past it, 502 when
the call fails, 200 otherwise. Its OpenAPI document carries the declared answers."""

import http.server
import json
import os
import sqlite3
import subprocess
import tempfile
import threading
import time
import unittest

from apiary_harness import HOST, ApiaryServer, json_request_body
from test_97_library import Installed, get_json, tearDownModule  # noqa: F401 (the install's cleanup)

JSON = {"Content-Type": "application/json"}


class Renderer(http.server.BaseHTTPRequestHandler):
    """POST /render: the note in, {"html"} out; a body "slow" answers after 3 s, "broken" gets 500."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        note = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if note["body"] == "slow":
            time.sleep(3)
        status, out = (500, {"error": "boom"}) if note["body"] == "broken" else (200, {"html": f"<h1>{note['title']}</h1>"})
        body = json.dumps(out).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class NotesExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.binary = Installed.get().build_example("notes")
        cls.renderer = http.server.ThreadingHTTPServer((HOST, 0), Renderer)
        cls.renderer.daemon_threads = True
        threading.Thread(target=cls.renderer.serve_forever, daemon=True).start()
        cls.dir = tempfile.TemporaryDirectory(prefix="apiary-notes-")
        cls.db = os.path.join(cls.dir.name, "notes.db")
        cls.config = {
            "sql": {"url": "sqlite:" + cls.db},
            "upstreams": {"renderer": {"url": f"http://{HOST}:{cls.renderer.server_address[1]}", "timeout_ms": 5000}},
            "notes": {"renderer": "renderer", "preview_timeout_ms": 500},
        }
        cls.srv = ApiaryServer(cls.config, threads=2, binary=cls.binary).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.assert_no_sanitizer_report()
        cls.renderer.shutdown()
        cls.renderer.server_close()
        cls.dir.cleanup()

    def create(self, body):
        return get_json(self.srv, "/notes", "POST", json_request_body(body), JSON)

    def test_create_read_list_delete(self):
        r, note = self.create({"title": "first", "body": "hello", "tags": ["crud-a", "crud-b"]})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(r.headers.get("Location"), f"/notes/{note['id']}")
        self.assertEqual((note["title"], note["body"], note["tags"]), ("first", "hello", ["crud-a", "crud-b"]))
        self.assertRegex(note["created_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(get_json(self.srv, f"/notes/{note['id']}")[1], note)
        r2, second = self.create({"title": "second", "body": "", "tags": ["crud-b"]})
        self.assertEqual(r2.status, 201, r2.body)
        r, page = get_json(self.srv, "/notes?tag=crud-b")
        self.assertEqual([n["id"] for n in page["notes"]], [second["id"], note["id"]], "newest first")
        self.assertEqual([n["id"] for n in get_json(self.srv, "/notes?tag=crud-a")[1]["notes"]], [note["id"]])
        self.assertEqual(len(get_json(self.srv, "/notes?tag=crud-b&limit=1")[1]["notes"]), 1)
        r, _ = get_json(self.srv, f"/notes/{note['id']}", "DELETE")
        self.assertEqual((r.status, r.body, r.headers.get("Content-Type")), (204, b"", None))
        self.assertEqual(get_json(self.srv, f"/notes/{note['id']}", "DELETE")[0].status, 404)
        r, problem = get_json(self.srv, f"/notes/{note['id']}")
        self.assertEqual((r.status, r.headers.get("Content-Type")), (404, "application/problem+json"))
        self.assertEqual([n["id"] for n in get_json(self.srv, "/notes?tag=crud-b")[1]["notes"]], [second["id"]])
        with sqlite3.connect(self.db) as db:
            self.assertEqual(db.execute("SELECT count(*) FROM note_tags WHERE note_id = ?", (note["id"],)).fetchone(),
                             (0,), "the tag rows went with the note")

    def test_every_violation_in_one_422(self):
        r, problem = self.create({"title": "", "tags": ["a", "a"] + ["t%d" % i for i in range(10)], "x": 1})
        self.assertEqual(r.status, 422, r.body)
        self.assertEqual(sorted(e["field"] for e in problem["errors"]), ["body", "tags", "title", "x"])
        self.assertEqual(self.create({"title": "t", "body": "b", "tags": ["a", "a"]})[1]["field"], "tags[1]")
        self.assertEqual(self.create({"title": "t" * 201, "body": "b"})[1]["field"], "title")
        self.assertEqual(get_json(self.srv, "/notes", "POST", b'{"title":', JSON)[0].status, 400)
        self.assertEqual(get_json(self.srv, "/notes", "POST", b"title=t", {"Content-Type": "text/plain"})[0].status, 415)
        for path, field in (("/notes?limit=0", "limit"), ("/notes?limit=101", "limit"), ("/notes?tag=", "tag"),
                            ("/notes/abc", "id"), ("/notes/0/preview", "id")):
            r, problem = get_json(self.srv, path)
            self.assertEqual((r.status, problem["errors"][0]["in"] != "body", problem["field"]), (422, True, field), path)

    def test_preview_awaits_the_renderer_within_its_timeout(self):
        ok = self.create({"title": "shown", "body": "fine"})[1]
        r, body = get_json(self.srv, f"/notes/{ok['id']}/preview")
        self.assertEqual((r.status, body), (200, {"id": ok["id"], "html": "<h1>shown</h1>"}), r.body)
        slow = self.create({"title": "late", "body": "slow"})[1]
        started = time.monotonic()
        r, problem = get_json(self.srv, f"/notes/{slow['id']}/preview")
        self.assertEqual(r.status, 504, r.body)
        self.assertIn("timeout", problem["detail"])
        self.assertLess(time.monotonic() - started, 2.5, "notes.preview_timeout_ms (500), not the renderer's 3 s")
        broken = self.create({"title": "bad", "body": "broken"})[1]
        self.assertEqual(get_json(self.srv, f"/notes/{broken['id']}/preview")[0].status, 502)
        self.assertEqual(get_json(self.srv, "/notes/999999/preview")[0].status, 404)

    def test_openapi_declares_the_answers(self):
        doc = get_json(self.srv, "/openapi.json")[1]
        self.assertEqual(doc["info"], {"title": "notes", "version": "1.0.0"})
        get = doc["paths"]["/notes/{id}"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
        self.assertEqual(get["required"], ["id", "title", "body", "tags", "created_at"])
        self.assertIn("204", doc["paths"]["/notes/{id}"]["delete"]["responses"])
        body = doc["paths"]["/notes"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        self.assertEqual(body["properties"]["tags"]["maxItems"], 10)
        limit = next(p for p in doc["paths"]["/notes"]["get"]["parameters"] if p["name"] == "limit")
        self.assertEqual(limit["schema"], {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                         "ROUTE_INPUT's .limit = 20 is documented as the default, not in a description")

    def test_its_config_section_is_checked(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bad.json")
            with open(path, "w") as f:
                json.dump(dict(self.config, notes={"renderer": "nope", "preview_timeout_ms": 0}), f)
            bad = subprocess.run([self.binary, "--config", path, "--check-config"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        self.assertEqual(bad.returncode, 2)
        err = bad.stderr.decode()
        self.assertIn("notes.preview_timeout_ms: must be an integer between 1 and 60000", err)


if __name__ == "__main__":
    unittest.main()
