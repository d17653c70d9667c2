"""apiary as a library, the way an outside user meets it: `cmake --install` the build into a temporary
prefix, copy every example (examples/NAME) to a directory outside the source tree, configure and build
it there against the prefix only (find_package(apiary CONFIG) and, for minimal, pkg-config too), then
start the binary with apiary's flags and call its routes beside the built-ins (/healthz, /readyz,
/metrics). The resource example runs against a small catalog upstream in this process, which also
counts how many quote calls it serves at once (the example bounds them with a semaphore). An app with a
refused registration, built with pkg-config alone, must not start (exit status 2)."""

import atexit
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from apiary_harness import (HOST, ApiaryServer, abort, apiary_bin, build_request, json_request_body, request,
                            source_dir)

JSON = {"Content-Type": "application/json"}


def build_dir():
    return os.environ.get("APIARY_BUILD_DIR") or os.path.dirname(os.path.abspath(apiary_bin()))


def run(argv, cwd=None, env=None):
    proc = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stdout.decode(errors='replace')}")
    return proc.stdout.decode(errors="replace")


class Installed:
    """One install of the build for the whole file: the prefix and a scratch root outside the tree."""

    root = None
    prefix = None

    @classmethod
    def get(cls):
        if cls.root is None:
            cls.root = tempfile.mkdtemp(prefix="apiary-lib-")
            atexit.register(shutil.rmtree, cls.root, ignore_errors=True)  # an install and example builds
            cls.prefix = os.path.join(cls.root, "prefix")
            run(["cmake", "--install", build_dir(), "--prefix", cls.prefix])
        return cls

    @classmethod
    def build_example(cls, name):
        src = os.path.join(cls.get().root, "src-" + name)
        shutil.copytree(os.path.join(source_dir(), "examples", name), src)
        out = os.path.join(cls.root, "build-" + name)
        # Only the prefix: nothing of the source tree or its build is on any search path.
        run(["cmake", "-S", src, "-B", out, f"-DCMAKE_PREFIX_PATH={cls.prefix}", "-DCMAKE_BUILD_TYPE=RelWithDebInfo"])
        run(["cmake", "--build", out, "-j2"])
        binary = os.path.join(out, name)
        assert os.access(binary, os.X_OK), binary
        return binary


def get_json(srv, path, method="GET", body=None, headers=None):
    with srv.connect() as sock:
        r = request(sock, method, path, headers=headers, body=body)
    return r, (json.loads(r.body) if r.body and r.headers.get("Content-Type", "").endswith("json") else None)


class InstallLayout(unittest.TestCase):
    def test_install_holds_headers_library_pc_and_package(self):
        inst = Installed.get()
        p = inst.prefix
        for rel in ("include/apiary/apiary.h", "include/apiary/async.h", "include/apiary/http_request.h",
                    "lib/libapiary.a", "lib/pkgconfig/apiary.pc", "lib/cmake/apiary/apiary-config.cmake"):
            self.assertTrue(os.path.exists(os.path.join(p, rel)), rel)
        for private in ("http_internal.h", "async_internal.h", "async_op_internal.h", "config_internal.h",
                        "xalloc_internal.h"):
            self.assertFalse(os.path.exists(os.path.join(p, "include", "apiary", private)), private)
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(p, "lib", "pkgconfig"))
        flags = run(["pkg-config", "--cflags", "--libs", "apiary"], env=env)
        self.assertIn("-lapiary", flags)
        self.assertIn("-ljansson", flags)
        self.assertIn("-levent_core", flags)


class MinimalExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.binary = Installed.get().build_example("minimal")

    def test_serves_its_route_and_the_builtins_with_apiary_flags(self):
        with ApiaryServer(threads=2, binary=self.binary) as srv:
            r, body = get_json(srv, "/hello?name=bee")
            self.assertEqual(r.status, 200)
            self.assertEqual(body, {"hello": "bee"})
            self.assertEqual(get_json(srv, "/healthz")[0].status, 200)
            self.assertEqual(get_json(srv, "/readyz")[1], {"status": "ready"})
            r, _ = get_json(srv, "/metrics")
            self.assertEqual(r.status, 200)
            self.assertIn('route="GET /hello"', r.body.decode())
            self.assertEqual(get_json(srv, "/v1/hello")[0].status, 404, "the demo handlers are the binary's, not the library's")

    def test_flags_version_and_check_config(self):
        out = run([self.binary, "--version"])
        self.assertRegex(out, r"^minimal \(apiary \d+\.\d+\.\d+\)")
        self.assertIn("usage: minimal", run([self.binary, "--help"]))
        self.assertIn("config OK", run([self.binary, "--check-config"]))
        bad = subprocess.run([self.binary, "--threads", "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertEqual(bad.returncode, 2)

    def test_builds_with_pkg_config_alone(self):
        inst = Installed.get()
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(inst.prefix, "lib", "pkgconfig"))
        flags = run(["pkg-config", "--cflags", "--libs", "apiary"], env=env).split()
        out = os.path.join(inst.root, "minimal-pc")
        cflags = [f for f in flags if not f.startswith(("-l", "-L", "-pthread"))]
        libs = [f for f in flags if f.startswith(("-l", "-L", "-pthread", "-fsanitize"))]
        run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *cflags,
             os.path.join(source_dir(), "examples", "minimal", "main.c"), "-o", out, *libs])
        self.assertIn("minimal (apiary", run([out, "--version"]))


# The app of a bug report: a route whose schema is inconsistent and one whose pattern repeats a
# parameter, registered without checking what the calls return, as every example does.
REFUSED_APP = r"""
#include <apiary/apiary.h>

typedef struct in { int64_t n; } in;
static const route_schema bad = {.input_size = sizeof(in), .query = (const schema_member[]){
    SCHEMA_REQUIRED(in, n, SCHEMA_INTEGER(.min = SCHEMA_GE(10), .max = SCHEMA_LE(1))), SCHEMA_END}};

static void h(http_request *req) { http_respond_json(req, 200, json_pack("{s:b}", "ok", 1)); }

int main(int argc, char **argv)
{
    apiary_app *app = apiary_app_new("refused");
    apiary_app_route(app, HTTP_METHOD_GET, "/ok", h, 0);
    apiary_app_route_schema(app, HTTP_METHOD_GET, "/x", h, 0, &bad);
    apiary_app_route(app, HTTP_METHOD_GET, "/x/{a}/{a}", h, 0);
    return apiary_app_main(app, argc, argv);
}
"""


class RefusedRegistration(unittest.TestCase):
    """An app whose registrations were refused does not start (exit status 2, as for a bad config)
    instead of serving without those routes (404); --help and --version still answer."""

    @classmethod
    def setUpClass(cls):
        inst = Installed.get()
        env = dict(os.environ, PKG_CONFIG_PATH=os.path.join(inst.prefix, "lib", "pkgconfig"))
        flags = run(["pkg-config", "--cflags", "--libs", "apiary"], env=env).split()
        src = os.path.join(inst.root, "refused.c")
        with open(src, "w") as f:
            f.write(REFUSED_APP)
        cls.binary = os.path.join(inst.root, "refused")
        cflags = [f for f in flags if not f.startswith(("-l", "-L", "-pthread"))]
        libs = [f for f in flags if f.startswith(("-l", "-L", "-pthread", "-fsanitize"))]
        run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", *cflags, src, "-o", cls.binary, *libs])

    def run_app(self, *flags):
        return subprocess.run([self.binary, "--listen", f"{HOST}:0", *flags], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=60)

    def test_does_not_start_and_says_why(self):
        proc = self.run_app()
        err = proc.stderr.decode(errors="replace")
        self.assertEqual(proc.returncode, 2, err)
        self.assertIn("route GET /x: query.n: ", err)
        self.assertIn("route GET /x/{a}/{a}: the pattern repeats the parameter {a}", err)
        self.assertIn("refused: 2 registrations were refused (logged above); not starting", err)
        self.assertNotIn("listening", err.lower())

    def test_check_config_and_openapi_fail_too(self):
        for flag in ("--check-config", "--openapi"):
            proc = self.run_app(flag)
            self.assertEqual(proc.returncode, 2, flag)
            self.assertIn(b"not starting", proc.stderr, flag)
            self.assertNotIn(b"config OK", proc.stdout, flag)
            self.assertNotIn(b"openapi", proc.stdout, flag)

    def test_help_and_version_still_answer(self):
        proc = self.run_app("--version")
        self.assertEqual(proc.returncode, 0)
        self.assertIn(b"refused (apiary", proc.stdout)
        self.assertEqual(self.run_app("--help").returncode, 0)


class Catalog(http.server.BaseHTTPRequestHandler):
    """The resource example's upstream: prices SKUs and answers supplier quotes slowly enough that
    concurrent calls overlap, counting the most it served at once."""

    protocol_version = "HTTP/1.1"
    lock = threading.Lock()
    in_flight = 0
    most_at_once = 0
    quotes = 0

    def log_message(self, *args):
        pass

    def answer(self, status, obj):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/skus/"):
            sku = self.path[len("/skus/"):]
            if sku == "UNKNOWN":
                self.answer(404, {"error": "no such sku"})
            else:
                self.answer(200, {"price_cents": 100 * len(sku)})
            return
        if self.path.startswith("/quote?"):
            cls = type(self)
            with cls.lock:
                cls.in_flight += 1
                cls.quotes += 1
                cls.most_at_once = max(cls.most_at_once, cls.in_flight)
            time.sleep(0.1)
            supplier = int(self.path.rsplit("supplier=", 1)[1])
            with cls.lock:
                cls.in_flight -= 1
            self.answer(200, {"price_cents": 1000 - supplier})
            return
        self.answer(404, {})


class ResourceExample(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.binary = Installed.get().build_example("resource")
        cls.catalog = http.server.ThreadingHTTPServer((HOST, 0), Catalog)
        cls.catalog.daemon_threads = True
        threading.Thread(target=cls.catalog.serve_forever, daemon=True).start()
        cls.config = {
            "upstreams": {"catalog": {"url": f"http://{HOST}:{cls.catalog.server_address[1]}", "timeout_ms": 5000}},
            "resource": {"catalog": "catalog", "suppliers": 4, "max_parallel": 2, "digest_rounds": 2000},
        }
        cls.srv = ApiaryServer(cls.config, threads=2, binary=cls.binary)
        cls.srv.start()

    @classmethod
    def tearDownClass(cls):
        cls.srv.stop()
        cls.catalog.shutdown()
        cls.catalog.server_close()

    def create(self, body):
        return get_json(self.srv, "/v1/items", "POST", json_request_body(body), JSON)

    def test_create_awaits_the_catalog_and_get_reads_it_back(self):
        r, item = self.create({"name": "comb", "sku": "HC-1", "quantity": 3})
        self.assertEqual(r.status, 201, r.body)
        self.assertEqual(item["price_cents"], 400)
        self.assertEqual(r.headers.get("Location"), f"/v1/items/{item['id']}")
        r, again = get_json(self.srv, f"/v1/items/{item['id']}")
        self.assertEqual(again, item)
        self.assertEqual(get_json(self.srv, "/v1/items/999999")[0].status, 404)
        self.assertEqual(get_json(self.srv, "/v1/items/abc")[0].status, 422, "the schema's {id} is an integer >= 1")

    def test_validation_names_the_field(self):
        for body, field in (({"sku": "A", "quantity": 1}, "name"), ({"name": "x", "sku": "a b", "quantity": 1}, "sku"),
                            ({"name": "x", "sku": "A", "quantity": 0}, "quantity"), ([1], "")):
            r, problem = self.create(body)
            self.assertEqual(r.status, 422, body)
            self.assertEqual(problem.get("field", ""), field)
            self.assertEqual(problem["errors"][0]["field"], field)
        # Every violation at once (docs/schemas.md).
        r, problem = self.create({"name": "", "sku": "a b", "quantity": 0, "colour": "red"})
        self.assertEqual(r.status, 422)
        self.assertEqual(sorted(e["field"] for e in problem["errors"]), ["colour", "name", "quantity", "sku"])
        r, problem = self.create({"name": "x", "sku": "UNKNOWN", "quantity": 1})
        self.assertEqual(r.status, 422)
        self.assertIn("catalog", problem["detail"])
        with self.srv.connect() as sock:
            r = request(sock, "POST", "/v1/items", headers={"Content-Type": "text/plain"}, body=b"x")
        self.assertEqual(r.status, 415, "ROUTE_BODY_JSON: refused by the engine before the handler")

    def test_quotes_fan_out_bounded_by_the_semaphore(self):
        _, item = self.create({"name": "frame", "sku": "FR-22", "quantity": 1})
        with Catalog.lock:
            Catalog.most_at_once = 0
            before = Catalog.quotes
        r, body = get_json(self.srv, f"/v1/items/{item['id']}/quotes")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual([q["supplier"] for q in body["quotes"]], [1, 2, 3, 4])
        self.assertEqual(body["best_cents"], 996)
        with Catalog.lock:
            self.assertEqual(Catalog.quotes - before, 4)
            self.assertLessEqual(Catalog.most_at_once, 2, "max_parallel: 2")

    def test_clients_leaving_mid_fan_out_leave_it_serving(self):
        # The quotes are coroutines of their own, pointing into their parent's stack: a request that
        # ends mid-way (here: the client resets) unwinds them all before the parent.
        _, item = self.create({"name": "ladder", "sku": "LD-7", "quantity": 1})
        for _ in range(5):
            sock = self.srv.connect()
            sock.sendall(build_request("GET", f"/v1/items/{item['id']}/quotes"))
            time.sleep(0.15)
            abort(sock)
        r, body = get_json(self.srv, f"/v1/items/{item['id']}/quotes")
        self.assertEqual(r.status, 200, r.body)
        self.assertEqual(body["best_cents"], 996)
        self.assertTrue(self.srv.alive())

    def test_fingerprint_runs_on_the_pool(self):
        _, item = self.create({"name": "smoker", "sku": "SM-3", "quantity": 2})
        r, body = get_json(self.srv, f"/v1/items/{item['id']}/fingerprint")
        self.assertEqual(r.status, 200, r.body)
        self.assertRegex(body["fingerprint"], r"^[0-9a-f]{64}$")
        self.assertEqual(get_json(self.srv, f"/v1/items/{item['id']}/fingerprint")[1], body, "deterministic")
        metrics = get_json(self.srv, "/metrics")[0].body.decode()
        self.assertIn('route="GET /v1/items/{id}/fingerprint"', metrics)

    def test_its_config_section_is_checked(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bad.json")
            with open(path, "w") as f:
                json.dump({"resource": {"max_parallel": 99}}, f)
            bad = subprocess.run([self.binary, "--config", path, "--check-config"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            self.assertEqual(bad.returncode, 2)
            self.assertIn("resource.max_parallel: must be an integer between 1 and 16", bad.stderr.decode())
            with open(path, "w") as f:
                json.dump({"resourcee": {}}, f)
            bad = subprocess.run([self.binary, "--config", path, "--check-config"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            self.assertEqual(bad.returncode, 2)
            self.assertIn("unknown key 'resourcee'", bad.stderr.decode())
            # The section's check sees the rest of the config: --check-config refuses what a start would.
            with open(path, "w") as f:
                json.dump({"resource": {"catalog": "nowhere", "suppliers": 0}}, f)
            bad = subprocess.run([self.binary, "--config", path, "--check-config"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            self.assertEqual(bad.returncode, 2)
            self.assertIn("resource.suppliers: must be an integer between 1 and 16", bad.stderr.decode())
            with open(path, "w") as f:
                json.dump({"resource": {"catalog": "nowhere"}}, f)
            bad = subprocess.run([self.binary, "--config", path, "--check-config"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            self.assertEqual(bad.returncode, 2)
            self.assertIn("resource.catalog: must name an upstream", bad.stderr.decode())


class MiddlewareExample(unittest.TestCase):
    """examples/middleware: CORS and bearer-token middleware, a timing after hook, a background audit
    the drain waits for (or cancels at its timeout, with a log line), the app's own option, and its
    in-process criterion tests (apiary/testing.h) run by the example's own ctest."""

    TOKEN = {"Authorization": "Bearer t0ken"}

    @classmethod
    def setUpClass(cls):
        cls.binary = Installed.get().build_example("middleware")
        cls.build = os.path.dirname(cls.binary)

    def config(self, audit_ms=10, **extra):
        cfg = {"api": {"tokens": ["t0ken"], "cors_origins": ["https://app.example"], "audit_ms": audit_ms}}
        cfg.update(extra)
        return cfg

    def test_its_in_process_tests_pass(self):
        if not os.path.exists(os.path.join(self.build, "middleware_test")):
            self.skipTest("criterion not found by the example's build")
        out = run(["ctest", "--test-dir", self.build, "--output-on-failure"])
        self.assertIn("100% tests passed", out)

    def test_auth_cors_and_timing_over_the_wire(self):
        with ApiaryServer(self.config(), threads=2, binary=self.binary) as srv:
            self.assertTrue(srv.wait_for_log(r"middleware \(apiary \d+\.\d+\.\d+\) listening on", 5),
                            "B8: the start log names the app and the library version")
            r, problem = get_json(srv, "/v1/notes")
            self.assertEqual(r.status, 401)
            self.assertEqual(problem["status"], 401)
            self.assertEqual(r.headers.get("WWW-Authenticate"), 'Bearer realm="notes"')
            self.assertRegex(r.headers.get("Server-Timing", ""), r"^app;dur=\d")
            r, body = get_json(srv, "/v1/notes", headers=self.TOKEN)
            self.assertEqual((r.status, body), (200, {"notes": []}))
            r, _ = get_json(srv, "/v1/notes", "OPTIONS", headers={"Origin": "https://app.example",
                                                                  "Access-Control-Request-Method": "POST"})
            self.assertEqual(r.status, 204)
            self.assertEqual(r.headers.get("Access-Control-Allow-Origin"), "https://app.example")
            self.assertIn("Authorization", r.headers.get("Access-Control-Allow-Headers"))
            self.assertEqual(get_json(srv, "/v1/ping")[0].status, 200, "a ROUTE_PUBLIC route needs no token")
            self.assertEqual(get_json(srv, "/healthz")[0].headers.get("Server-Timing"), None,
                             "the built-ins run no middleware")

    def test_the_drain_waits_for_background_work(self):
        srv = ApiaryServer(self.config(audit_ms=400), threads=1, binary=self.binary)
        srv.start()
        try:
            r, note = get_json(srv, "/v1/notes", "POST", json_request_body({"text": "hello"}), dict(JSON, **self.TOKEN))
            self.assertEqual(r.status, 201, r.body)
            started = time.monotonic()
            srv.sigterm()
            self.assertEqual(srv.wait(15), 0)
            self.assertGreater(time.monotonic() - started, 0.2, "it waited for the audit")
            log = srv.log_text()
            self.assertIn(f"audit: note {note['id']} recorded", log)
            self.assertLess(log.index("audit: note"), log.index("shutdown complete"))
            self.assertNotIn("cancelled", log)
        finally:
            srv.stop()

    def test_background_work_past_the_drain_timeout_is_cancelled_with_a_log_line(self):
        srv = ApiaryServer(self.config(audit_ms=60000, drain_timeout_ms=300), threads=1, binary=self.binary)
        srv.start()
        try:
            r, _ = get_json(srv, "/v1/notes", "POST", json_request_body({"text": "slow"}), dict(JSON, **self.TOKEN))
            self.assertEqual(r.status, 201)
            srv.sigterm()
            self.assertEqual(srv.wait(15), 0)
            log = srv.log_text()
            self.assertIn("background task notes audit had not finished when the server stopped: cancelled", log)
            self.assertNotIn("audit: note", log)
        finally:
            srv.stop()

    def test_its_option_and_section_messages(self):
        self.assertIn("--extra-token TOKEN", run([self.binary, "--help"]))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "bad.json")
            with open(path, "w") as f:
                json.dump({"api": {"x": 1}}, f)
            bad = subprocess.run([self.binary, "--config", path, "--check-config"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            self.assertEqual(bad.returncode, 2)
            self.assertIn("bad.json: api: unknown key 'x'", bad.stderr.decode(), "B5")
        with ApiaryServer(self.config(), threads=1, binary=self.binary, extra_args=["--extra-token", "dev"]) as srv:
            self.assertEqual(get_json(srv, "/v1/notes", headers={"Authorization": "Bearer dev"})[0].status, 200)


def tearDownModule():
    if Installed.root:
        shutil.rmtree(Installed.root, ignore_errors=True)


if __name__ == "__main__":
    unittest.main()
