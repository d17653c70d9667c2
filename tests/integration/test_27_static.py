"""Static files (docs/static.md), end to end: a `static` mount of a temporary tree, served by the real
binary: Content-Type by extension, ETag and Last-Modified with 304 (If-None-Match, If-Modified-Since),
Range (206, 416, several ranges answered whole, If-Range), precompressed siblings chosen by q-value and
only when at least as new (on a q tie the smaller file, then compression.prefer's order), Vary, HEAD, index.html for directories, large files (sendfile) whole and in
order behind pipelined requests, and no way out of the directory: "..", "%2e%2e", "%2f", symlinks
leading out, NUL and backslashes are refused, a missing file is a 404 problem."""

import gzip
import os
import shutil
import socket
import struct
import tempfile
import time
import unittest

import brotli

from apiary_harness import ApiaryServer, ServerTestMixin, build_request, read_response, request

FILES = {
    "index.html": b"<!doctype html><title>hi</title>\n",
    "css/site.css": b"body { color: #333; }\n" * 50,
    "js/app.js": b"console.log('hi');\n" * 100,
    "img/logo.png": b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4,
    "img/logo.svg": b"<svg xmlns='http://www.w3.org/2000/svg'/>",
    "data.json": b'{"a": [1, 2, 3]}',
    "fonts/f.woff2": b"wOF2" + b"\0" * 100,
    "pic.webp": b"RIFF" + b"\0" * 50,
    "pic.jpg": b"\xff\xd8\xff" + b"\0" * 50,
    "anim.gif": b"GIF89a" + b"\0" * 50,
    "favicon.ico": b"\0\0\1\0" + b"\0" * 50,
    "notes.txt": b"plain text\n",
    "mod.wasm": b"\0asm\1\0\0\0",
    "app.js.map": b'{"version":3}',
    "sub/index.html": b"<p>sub</p>",
    "emptydir/.keep": b"",
    "empty.txt": b"",
}
TYPES = {
    "css/site.css": "text/css; charset=utf-8",
    "js/app.js": "text/javascript; charset=utf-8",
    "index.html": "text/html; charset=utf-8",
    "img/logo.png": "image/png",
    "img/logo.svg": "image/svg+xml",
    "data.json": "application/json",
    "fonts/f.woff2": "font/woff2",
    "pic.webp": "image/webp",
    "pic.jpg": "image/jpeg",
    "anim.gif": "image/gif",
    "favicon.ico": "image/x-icon",
    "notes.txt": "text/plain; charset=utf-8",
    "mod.wasm": "application/wasm",
    "app.js.map": "application/json",
}
BIG = os.urandom(3 << 20)  # sendfile, several writes
MID = os.urandom(40 << 10)  # sendfile (over 32 KiB), yet one segment on loopback (MSS 65,483)


def data_segments_in(sock):
    """Segments with data this socket has received (struct tcp_info's tcpi_data_segs_in, Linux >= 4.6)."""
    info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 232)
    return struct.unpack_from("I", info, 152)[0]


class StaticTest(ServerTestMixin, unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="apiary_static_")
        root = os.path.join(cls.tmp, "root")
        for name, data in FILES.items():
            path = os.path.join(root, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        with open(os.path.join(root, "big.bin"), "wb") as f:
            f.write(BIG)
        with open(os.path.join(root, "mid.bin"), "wb") as f:
            f.write(MID)
        with open(os.path.join(cls.tmp, "secret.txt"), "wb") as f:
            f.write(b"secret")
        js = os.path.join(root, "js/app.js")
        with open(js + ".br", "wb") as f:
            f.write(brotli.compress(FILES["js/app.js"]))
        with open(js + ".gz", "wb") as f:
            f.write(gzip.compress(FILES["js/app.js"]))
        css = os.path.join(root, "css/site.css")
        with open(css + ".gz", "wb") as f:
            f.write(gzip.compress(FILES["css/site.css"]))
        old = time.time() - 3600  # a stale sibling: older than its original
        os.utime(css + ".gz", (old, old))
        # siblings looked up before their original (docs/static.md "Cost per request"): one without an
        # original, one beside a symlink leading out, one beside a symlink that stays inside, and a .gz
        # of an image, which is never looked for
        with open(os.path.join(root, "orphan.css.br"), "wb") as f:
            f.write(brotli.compress(b"orphan"))
        with open(os.path.join(root, "out.txt.gz"), "wb") as f:
            f.write(gzip.compress(b"not the secret"))
        with open(os.path.join(root, "in.css.br"), "wb") as f:
            f.write(brotli.compress(FILES["css/site.css"]))
        with open(os.path.join(root, "pic.webp.gz"), "wb") as f:
            f.write(gzip.compress(FILES["pic.webp"]))
        with open(os.path.join(root, "sub/index.html.gz"), "wb") as f:
            f.write(gzip.compress(FILES["sub/index.html"]))
        os.symlink(os.path.join(cls.tmp, "secret.txt"), os.path.join(root, "out.txt"))
        os.symlink("..", os.path.join(root, "up"))
        os.symlink("css/site.css", os.path.join(root, "in.css"))
        cls.CONFIG = {"static": [{"prefix": "/static", "dir": root}, {"prefix": "/assets/v1", "dir": root}]}
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.tmp)

    def get(self, sock, path, headers=None, method="GET"):
        sock.sendall(build_request(method, path, headers or {}))
        return read_response(sock, head_request=method == "HEAD")

    def test_content_types_and_bodies(self):
        with self.server.connect() as sock:
            for name, ctype in TYPES.items():
                with self.subTest(name=name):
                    resp = self.get(sock, "/static/" + name)
                    self.assertEqual(resp.status, 200, repr(resp))
                    self.assertEqual(resp.headers.get("Content-Type"), ctype)
                    self.assertEqual(resp.body, FILES[name])
                    self.assertEqual(resp.headers.get("Accept-Ranges"), "bytes")
                    self.assertIsNone(resp.headers.get("Content-Encoding"), "no Accept-Encoding: identity")
            resp = self.get(sock, "/assets/v1/notes.txt")
            self.assertEqual(resp.body, FILES["notes.txt"], "a second mount of the same tree")
            resp = self.get(sock, "/static/empty.txt")
            self.assertEqual((resp.status, resp.body, resp.headers.get("Content-Length")), (200, b"", "0"))

    def test_directories_answer_their_index(self):
        with self.server.connect() as sock:
            for path in ("/static/", "/static/sub/", "/static/sub"):
                resp = self.get(sock, path)
                self.assertEqual(resp.status, 200, path)
                self.assertEqual(resp.headers.get("Content-Type"), "text/html; charset=utf-8")
            self.assertEqual(self.get(sock, "/static/sub/").body, FILES["sub/index.html"])
            self.assertProblem(self.get(sock, "/static/emptydir/"), 404)
            self.assertProblem(self.get(sock, "/static"), 404)

    def test_missing_is_a_404_problem(self):
        with self.server.connect() as sock:
            for path in ("/static/nope.txt", "/static/css/nope.css", "/static/index.html/x"):
                self.assertProblem(self.get(sock, path), 404)

    def test_etag_and_if_none_match(self):
        with self.server.connect() as sock:
            resp = self.get(sock, "/static/css/site.css")
            etag = resp.headers["ETag"]
            self.assertRegex(etag, r'^"[0-9a-f-]+"$')
            for inm in (etag, "W/" + etag, '"other", ' + etag, "*"):
                r = self.get(sock, "/static/css/site.css", {"If-None-Match": inm})
                self.assertEqual(r.status, 304, inm)
                self.assertEqual(r.body, b"")
                self.assertNotIn("Content-Length", r.headers)
                self.assertEqual(r.headers.get("ETag"), etag)
                self.assertEqual(r.headers.get("Vary"), "Accept-Encoding", "a 304 has the Vary of its 200")
            r = self.get(sock, "/static/css/site.css", {"If-None-Match": '"other"'})
            self.assertEqual(r.status, 200)
            # If-None-Match wins over If-Modified-Since
            r = self.get(sock, "/static/css/site.css", {"If-None-Match": '"other"',
                                                         "If-Modified-Since": resp.headers["Last-Modified"]})
            self.assertEqual(r.status, 200)

    def test_if_modified_since(self):
        with self.server.connect() as sock:
            resp = self.get(sock, "/static/notes.txt")
            lm = resp.headers["Last-Modified"]
            self.assertEqual(self.get(sock, "/static/notes.txt", {"If-Modified-Since": lm}).status, 304)
            self.assertEqual(self.get(sock, "/static/notes.txt",
                                      {"If-Modified-Since": "Sun, 06 Nov 1994 08:49:37 GMT"}).status, 200)
            self.assertEqual(self.get(sock, "/static/notes.txt",
                                      {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}).status, 304)
            self.assertEqual(self.get(sock, "/static/notes.txt", {"If-Modified-Since": "garbage"}).status, 200)

    def test_ranges(self):
        body = FILES["js/app.js"]
        size = len(body)
        with self.server.connect() as sock:
            for rng, first, last in (("bytes=0-9", 0, 9), ("bytes=10-", 10, size - 1), ("bytes=-5", size - 5, size - 1),
                                     ("bytes=100-999999", 100, size - 1), ("bytes=-999999", 0, size - 1)):
                with self.subTest(range=rng):
                    r = self.get(sock, "/static/js/app.js", {"Range": rng})
                    self.assertEqual(r.status, 206)
                    self.assertEqual(r.headers["Content-Range"], f"bytes {first}-{last}/{size}")
                    self.assertEqual(r.body, body[first:last + 1])
            for rng in (f"bytes={size}-", f"bytes={size + 10}-{size + 20}", "bytes=-0"):
                with self.subTest(range=rng):
                    r = self.get(sock, "/static/js/app.js", {"Range": rng})
                    self.assertProblem(r, 416)
                    self.assertEqual(r.headers["Content-Range"], f"bytes */{size}")
                    self.assertLessEqual(len(r.headers.get_all("Vary")), 1, "one Vary, not the file's and the problem's")
            # several ranges, another unit, nonsense: the whole file, 200
            for rng in ("bytes=0-1,5-9", "items=0-5", "bytes=9-2", "bytes=x"):
                with self.subTest(range=rng):
                    r = self.get(sock, "/static/js/app.js", {"Range": rng})
                    self.assertEqual((r.status, r.body), (200, body))
            etag = self.get(sock, "/static/js/app.js").headers["ETag"]
            r = self.get(sock, "/static/js/app.js", {"Range": "bytes=0-3", "If-Range": etag})
            self.assertEqual(r.status, 206)
            r = self.get(sock, "/static/js/app.js", {"Range": "bytes=0-3", "If-Range": '"stale"'})
            self.assertEqual((r.status, r.body), (200, body), "If-Range of another version: the whole file")

    def test_large_file_whole_and_ranged(self):
        with self.server.connect() as sock:
            r = self.get(sock, "/static/big.bin")
            self.assertEqual(r.status, 200)
            self.assertEqual(r.body, BIG)
            r = self.get(sock, "/static/big.bin", {"Range": "bytes=1000000-2999999"})
            self.assertEqual(r.body, BIG[1000000:3000000])
            # pipelined behind and in front of it, answers in order
            raw = (build_request("GET", "/static/notes.txt") + build_request("GET", "/static/big.bin")
                   + build_request("GET", "/v1/hello") + build_request("GET", "/static/big.bin", {"Range": "bytes=-10"})
                   + build_request("GET", "/static/data.json"))
            sock.sendall(raw)
            self.assertEqual(read_response(sock).body, FILES["notes.txt"])
            self.assertEqual(read_response(sock).body, BIG)
            self.assertEqual(read_response(sock).status, 200)
            self.assertEqual(read_response(sock).body, BIG[-10:])
            self.assertEqual(read_response(sock).body, FILES["data.json"])

    def test_head_and_sendfile_leave_together(self):
        # The head of a file sent by sendfile is held back (MSG_MORE) until its body joins it: one
        # segment per answer, not a head alone that wakes the client for nothing (two before the fix).
        with self.server.connect() as sock:
            self.assertEqual(self.get(sock, "/static/mid.bin").body, MID)  # the socket's buffers grown
            before = data_segments_in(sock)
            answers = 20
            for _ in range(answers):
                r = self.get(sock, "/static/mid.bin")
                self.assertEqual((r.status, r.body), (200, MID))
            segments = data_segments_in(sock) - before
            self.assertLess(segments, answers * 1.5, f"{segments} segments for {answers} answers of 40 KiB")
            # and the connection goes on: a small file after them
            self.assertEqual(self.get(sock, "/static/notes.txt").body, FILES["notes.txt"])

    def test_head(self):
        with self.server.connect() as sock:
            for path in ("/static/js/app.js", "/static/big.bin"):
                r = self.get(sock, path, method="HEAD")
                g = self.get(sock, path)
                self.assertEqual(r.status, 200)
                self.assertEqual(r.headers["Content-Length"], g.headers["Content-Length"])
                self.assertEqual(r.headers["ETag"], g.headers["ETag"])
            # the connection is still in step after HEAD of a large file
            self.assertEqual(self.get(sock, "/static/notes.txt").body, FILES["notes.txt"])

    def test_precompressed_siblings(self):
        body = FILES["js/app.js"]
        with self.server.connect() as sock:
            r = self.get(sock, "/static/js/app.js", {"Accept-Encoding": "br;q=1, gzip;q=0.8"})
            self.assertEqual(r.headers.get("Content-Encoding"), "br")
            self.assertEqual(r.headers.get("Vary"), "Accept-Encoding")
            self.assertEqual(r.headers.get("Content-Type"), "text/javascript; charset=utf-8")
            self.assertEqual(brotli.decompress(r.body), body)
            br_etag = r.headers["ETag"]
            r = self.get(sock, "/static/js/app.js", {"Accept-Encoding": "gzip"})
            self.assertEqual(r.headers.get("Content-Encoding"), "gzip")
            self.assertEqual(gzip.decompress(r.body), body)
            self.assertNotEqual(r.headers["ETag"], br_etag, "each variant has its own tag")
            r = self.get(sock, "/static/js/app.js", {"Accept-Encoding": "gzip;q=1, br;q=0.5"})
            self.assertEqual(r.headers.get("Content-Encoding"), "gzip")
            r = self.get(sock, "/static/js/app.js", {"Accept-Encoding": "br;q=0, gzip;q=0"})
            self.assertIsNone(r.headers.get("Content-Encoding"))
            self.assertEqual(r.body, body)
            r = self.get(sock, "/static/js/app.js")
            self.assertIsNone(r.headers.get("Content-Encoding"))
            self.assertEqual(r.headers.get("Vary"), "Accept-Encoding")
            self.assertEqual(self.get(sock, "/static/js/app.js", {"Accept-Encoding": "br", "If-None-Match": br_etag}).status,
                             304)
            # a sibling older than its original is stale: the original goes, as it is
            r = self.get(sock, "/static/css/site.css", {"Accept-Encoding": "gzip"})
            self.assertIsNone(r.headers.get("Content-Encoding"))
            self.assertEqual(r.body, FILES["css/site.css"])
            # images never have siblings looked up or a Vary
            r = self.get(sock, "/static/img/logo.png", {"Accept-Encoding": "gzip, br"})
            self.assertIsNone(r.headers.get("Vary"))

    def test_sibling_first(self):
        """A sibling is opened before its original, which is then only stat'ed: every answer is the one
        the original-first order gave (a regression test for the reordering)."""
        root = os.path.join(self.tmp, "root")
        with self.server.connect() as sock:
            self.assertProblem(self.get(sock, "/static/orphan.css", {"Accept-Encoding": "br"}), 404)
            r = self.get(sock, "/static/out.txt", {"Accept-Encoding": "gzip"})
            self.assertProblem(r, 404)  # a symlink leading out is refused, its sibling too
            r = self.get(sock, "/static/in.css", {"Accept-Encoding": "br"})
            self.assertEqual(r.headers.get("Content-Encoding"), "br", "a symlink inside: its fresh sibling")
            self.assertEqual(brotli.decompress(r.body), FILES["css/site.css"])
            r = self.get(sock, "/static/pic.webp", {"Accept-Encoding": "gzip"})
            self.assertIsNone(r.headers.get("Content-Encoding"), "no sibling looked for beside an image")
            self.assertEqual(r.body, FILES["pic.webp"])
            for path in ("/static/sub/", "/static/sub"):
                with self.subTest(path=path):
                    r = self.get(sock, path, {"Accept-Encoding": "gzip"})
                    self.assertEqual(r.headers.get("Content-Encoding"), "gzip", "a directory's index.html has siblings")
                    self.assertEqual(gzip.decompress(r.body), FILES["sub/index.html"])
            # the disk is followed at once: a sibling rewritten, the original touched after it, removed
            live = os.path.join(root, "live.css")
            with open(live, "wb") as f:
                f.write(b"v1 " * 100)
            with open(live + ".br", "wb") as f:
                f.write(brotli.compress(b"v1 " * 100))
            r = self.get(sock, "/static/live.css", {"Accept-Encoding": "br;q=1, gzip;q=0.8"})
            self.assertEqual(brotli.decompress(r.body), b"v1 " * 100)
            with open(live + ".br", "wb") as f:
                f.write(brotli.compress(b"v2 " * 100))
            r = self.get(sock, "/static/live.css", {"Accept-Encoding": "br;q=1, gzip;q=0.8"})
            self.assertEqual(brotli.decompress(r.body), b"v2 " * 100)
            future = time.time() + 60
            os.utime(live, (future, future))
            r = self.get(sock, "/static/live.css", {"Accept-Encoding": "br;q=1, gzip;q=0.8"})
            self.assertIsNone(r.headers.get("Content-Encoding"), "the original changed after its sibling")
            self.assertEqual(r.body, b"v1 " * 100)
            os.unlink(live)
            self.assertProblem(self.get(sock, "/static/live.css", {"Accept-Encoding": "br"}), 404)
            os.unlink(live + ".br")

    def test_traversal_is_refused(self):
        with self.server.connect() as sock:
            for path in ("/static/../secret.txt", "/static/%2e%2e/secret.txt", "/static/%2E%2E/secret.txt",
                         "/static/css/../../secret.txt", "/static/..%2fsecret.txt", "/static/css%2f..%2f..%2fsecret.txt",
                         "/static/..%5csecret.txt", "/static/css%5csite.css", "/static/a\\b"):
                with self.subTest(path=path):
                    r = self.get(sock, path)
                    self.assertIn(r.status, (400, 404), repr(r))
                    self.assertNotIn(b"secret", r.body)
            for path in ("/static/out.txt", "/static/up/secret.txt", "/static/%2fetc/passwd", "/static//etc/passwd"):
                with self.subTest(path=path):
                    r = self.get(sock, path)
                    self.assertProblem(r, 404)
            self.assertEqual(self.get(sock, "/static/in.css").body, FILES["css/site.css"],
                             "a symlink that stays inside is followed")
        with self.server.connect() as sock:
            r = self.get(sock, "/static/secret%00.txt")
            self.assertProblem(r, 400)

    def test_other_methods(self):
        with self.server.connect() as sock:
            r = request(sock, "POST", "/static/notes.txt", {"Content-Type": "text/plain"}, b"x")
            self.assertProblem(r, 405)
            self.assertIn("GET", r.headers["Allow"])


class OpenFileCacheTest(ServerTestMixin, unittest.TestCase):
    """A mount with the open-file cache (static[].open_file_cache, docs/static.md): two loops, a bound of
    4 descriptors per loop. Whatever is done to a file on disk, the next request answers it as it now
    is, and the server never holds more descriptors than the bound allows."""

    THREADS = 2

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="apiary-ofc-")
        cls.root = os.path.join(cls.tmp, "root")
        os.makedirs(cls.root)
        with open(os.path.join(cls.tmp, "secret.txt"), "wb") as f:
            f.write(b"outside")
        cls.CONFIG = {"static": [{"prefix": "/c", "dir": cls.root, "open_file_cache": 4}]}
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.tmp)

    def write(self, name, data):
        with open(os.path.join(self.root, name), "wb") as f:
            f.write(data)

    def fds(self):
        return len(os.listdir(f"/proc/{self.server.proc.pid}/fd"))

    def get_all(self, path, headers=None):
        """The answer of every loop: a fresh connection per request, enough of them to reach both."""
        bodies = set()
        for _ in range(8):
            with self.server.connect() as sock:
                sock.sendall(build_request("GET", path, headers or {}))
                r = read_response(sock)
                bodies.add((r.status, r.body if r.status == 200 else b""))
        return bodies

    def test_follows_the_disk(self):
        self.write("a.css", b"body{}")
        self.assertEqual(self.get_all("/c/a.css"), {(200, b"body{}")})
        tmp = os.path.join(self.root, "a.css.new")
        with open(tmp, "wb") as f:
            f.write(b"BODY{}")
        os.rename(tmp, os.path.join(self.root, "a.css"))
        self.assertEqual(self.get_all("/c/a.css"), {(200, b"BODY{}")}, "replaced by a rename")
        self.write("a.css", b"html{margin:0}")
        self.assertEqual(self.get_all("/c/a.css"), {(200, b"html{margin:0}")}, "rewritten in place")
        os.unlink(os.path.join(self.root, "a.css"))
        self.assertEqual(self.get_all("/c/a.css"), {(404, b"")}, "deleted")
        # a file that was served, then swapped for a symlink leading out: refused like any such link
        self.write("b.txt", b"inside")
        self.assertEqual(self.get_all("/c/b.txt"), {(200, b"inside")})
        os.unlink(os.path.join(self.root, "b.txt"))
        os.symlink(os.path.join(self.tmp, "secret.txt"), os.path.join(self.root, "b.txt"))
        self.assertEqual(self.get_all("/c/b.txt"), {(404, b"")}, "a cached file swapped for a link out")

    def test_bounded(self):
        before = self.fds()
        for i in range(12):
            self.write(f"f{i}.txt", b"file %d" % i)
            self.assertEqual(self.get_all(f"/c/f{i}.txt"), {(200, b"file %d" % i)})
        time.sleep(0.2)
        # two loops, four descriptors each, whatever else this class left in them
        self.assertLessEqual(self.fds(), before + 8)


TIE_BODY = os.urandom(4096) * 4  # repeats 4 KiB apart: in gzip's 32 KiB window, not in a 1 KiB one


def tie_tree(tmp):
    """Files with both siblings: js/small-br.js (brotli -q 11 beats gzip -9 on text), bin/small-gz.json
    (a Brotli window of 1 KiB misses the 4 KiB repeats gzip finds), same.css (siblings of one size,
    not real codings: only the headers are checked) and stale.css (its smaller .br is older)."""
    root = os.path.join(tmp, "root")
    text = b"function f(a, b) { return a * 3 + b; }\n" * 200
    files = {
        "js/small-br.js": (text, brotli.compress(text, quality=11), gzip.compress(text, 9)),
        "bin/small-gz.json": (TIE_BODY, brotli.compress(TIE_BODY, quality=0, lgwin=10), gzip.compress(TIE_BODY, 9)),
        "same.css": (b"p{}" * 10, b"B" * 20, b"G" * 20),
        "stale.css": (text, brotli.compress(text, quality=11), gzip.compress(text, 9)),
    }
    for name, (orig, br, gz) in files.items():
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        for suffix, data in (("", orig), (".br", br), (".gz", gz)):
            with open(path + suffix, "wb") as f:
                f.write(data)
    old = time.time() - 3600
    os.utime(os.path.join(root, "stale.css.br"), (old, old))
    return root, files


class SiblingTieMixin(ServerTestMixin):
    """A q tie between acceptable siblings serves the smaller file, on a mount with and without the
    open-file cache; the same size goes by compression.prefer (EQUAL_SIZE: the coding expected)."""
    EQUAL_SIZE = None

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.mkdtemp(prefix="apiary_static_tie_")
        root, cls.files = tie_tree(cls.tmp)
        cls.CONFIG = dict(cls.CONFIG, static=[{"prefix": "/t", "dir": root},
                                              {"prefix": "/c", "dir": root, "open_file_cache": 16}])
        super().setUpClass()

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.tmp)

    def coding_of(self, sock, path, ae):
        r = request(sock, "GET", path, {"Accept-Encoding": ae})
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.headers.get("Vary"), "Accept-Encoding")
        coding = r.headers.get("Content-Encoding")
        name = path.split("/", 2)[2]
        orig, br, gz = self.files[name]
        self.assertEqual(r.body, {"br": br, "gzip": gz, None: orig}[coding], f"{path} {ae}: {coding}")
        return coding

    def test_a_tie_serves_the_smaller_sibling(self):
        for name, (orig, br, gz) in self.files.items():
            if name != "same.css":
                self.assertNotEqual(len(br), len(gz), name)
        self.assertLess(len(self.files["js/small-br.js"][1]), len(self.files["js/small-br.js"][2]))
        self.assertLess(len(self.files["bin/small-gz.json"][2]), len(self.files["bin/small-gz.json"][1]))
        cases = [
            ("js/small-br.js", "gzip, deflate, br", "br"),
            ("js/small-br.js", "gzip, deflate, br, zstd", "br"),
            ("bin/small-gz.json", "gzip, deflate, br", "gzip"),
            ("bin/small-gz.json", "br, gzip", "gzip"),
            ("bin/small-gz.json", "*", "gzip"),
            ("same.css", "gzip, deflate, br", self.EQUAL_SIZE),
            # q-values first, whatever the sizes
            ("bin/small-gz.json", "br;q=1, gzip;q=0.8", "br"),
            ("js/small-br.js", "gzip;q=1, br;q=0.8", "gzip"),
            ("bin/small-gz.json", "gzip;q=0, br", "br"),
            ("js/small-br.js", "gzip;q=0.5, br;q=0.5, identity;q=0.9", None),
            # the smaller one stale: the other
            ("stale.css", "gzip, br", "gzip"),
        ]
        with self.server.connect() as sock:
            for prefix in ("/t/", "/c/"):
                for _ in range(2):  # the second time from the open-file cache on /c
                    for name, ae, coding in cases:
                        with self.subTest(path=prefix + name, accept_encoding=ae):
                            self.assertEqual(self.coding_of(sock, prefix + name, ae), coding)


class SiblingTieTest(SiblingTieMixin, unittest.TestCase):
    CONFIG = {}
    EQUAL_SIZE = "gzip"


class SiblingTiePreferBrTest(SiblingTieMixin, unittest.TestCase):
    CONFIG = {"compression": {"prefer": ["br", "gzip"]}}
    EQUAL_SIZE = "br"


class BadMountTest(unittest.TestCase):
    def test_a_missing_directory_is_a_config_error(self):
        server = ApiaryServer({"static": [{"prefix": "/s", "dir": "/nonexistent/dir"}]})
        with self.assertRaises(Exception):
            server.start()
        self.assertIn("static[0].dir", server.log_text())
        server.stop()


if __name__ == "__main__":
    unittest.main()
