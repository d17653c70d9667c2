"""Endpoints on the worker pool: /v1/password/hash and /v1/password/verify (Argon2 round trips, every
input check, the password kept out of every answer and log line) and /v1/primes (known counts, input
checks); then the pool itself: a full queue answers 503 + Retry-After at once, the loop keeps serving
while every worker is busy, clients that leave while their job is queued or running leave nothing
behind, and a draining server still finishes the jobs of requests in flight.

Timings of /v1/primes on the reference machine: n = 10^8 takes about 0.1 s, 2*10^8 about 0.3 s, 4*10^8
about 0.9 s and 10^9 about 2.5 s. Bounds from above are generous, except where the point is that
something answers at once."""

import os
import re
import selectors
import socket
import time
import unittest

from apiary_harness import (ApiaryServer, ServerTestMixin, abort, build_request, json_request_body,
                            read_response, request)
from test_80_async import AsyncAssertions, timed_request

JSON = {"Content-Type": "application/json"}
FAST_ARGON2 = {"opslimit": 1, "memlimit_kib": 8192}
HASH_RE = re.compile(r"^\$argon2id\$v=19\$m=8192,t=1,p=1\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$")
# An Argon2i string libsodium wrote for the password "pw" (crypto_pwhash_argon2i_str, 3 passes, 8 KiB).
ARGON2I_PW = "$argon2i$v=19$m=8,t=3,p=1$uxDS8OwMkom+blX84Hiaew$4mkdeRS7W14Umj4HdWt1WXKJwRVxxFIxxgiDocz9OOo"
# Well-formed Argon2id (salt "saltsalt", tag "hashhashhashhash") that no password produces.
FOREIGN_HASH = "$argon2id$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"

# pi(n) for the sizes used below.
PRIMES = {0: 0, 1: 0, 2: 1, 3: 2, 4: 2, 10: 4, 100: 25, 1000: 168, 1000000: 78498, 50000000: 3001134,
          100000000: 5761455, 200000000: 11078937, 400000000: 21336326, 1000000000: 50847534}


def primes_path(n):
    return f"/v1/primes?n={n}"


def send_all(server, paths):
    """One connection per path, every request sent before any answer is read."""
    socks = []
    try:
        for path in paths:
            socks.append(server.connect(timeout=10.0))
        for sock, path in zip(socks, paths):
            sock.sendall(build_request("GET", path))
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks


class PoolAssertions(AsyncAssertions):
    def assertPrimes(self, resp, n):
        self.assertJson(resp, 200, {"n": n, "count": PRIMES[n]})

    def assertBusy(self, resp):
        """The pool's refusal: 503 problem+json, nothing but the standard members, Retry-After: 1."""
        self.assertProblemDoc(resp, 503)
        self.assertEqual(resp.headers.get("Retry-After"), "1", repr(resp))

    def assertExitsZero(self, server, within):
        rc = server.wait(within)
        self.assertIsNotNone(rc, f"still running {within} s after SIGTERM; log:\n{server.log_text()}")
        self.assertEqual(rc, 0, f"exit code {rc}; log:\n{server.log_text()}")


# --------------------------------------------------------------------------------------------------
# /v1/password/hash and /v1/password/verify


class PasswordTest(PoolAssertions, ServerTestMixin, unittest.TestCase):
    # Debug logging, so that "never in the log" covers every line the server can write.
    CONFIG = {"password": FAST_ARGON2, "log_level": "debug"}
    THREADS = 2
    SECRET = "Quokka-7zq!never-log-me"

    def post(self, sock, path, body, headers=JSON):
        raw = body if isinstance(body, bytes) else json_request_body(body)
        return request(sock, "POST", path, headers, raw)

    def hash(self, sock, password):
        resp = self.post(sock, "/v1/password/hash", {"password": password})
        self.assertEqual(resp.status, 200, repr(resp))
        self.assertEqual(resp.headers.get("Content-Type"), "application/json")
        self.assertCommonHeaders(resp)
        doc = resp.json()
        self.assertEqual(set(doc), {"hash"}, repr(doc))
        self.assertRegex(doc["hash"], HASH_RE)
        return doc["hash"]

    def verify(self, sock, password, hashed):
        return self.post(sock, "/v1/password/verify", {"password": password, "hash": hashed})

    def assertVerifies(self, sock, password, hashed, valid):
        self.assertJson(self.verify(sock, password, hashed), 200, {"valid": valid})

    def test_hash_verifies_with_the_right_password_only(self):
        with self.server.connect() as sock:
            hashed = self.hash(sock, "correct horse battery staple")
            self.assertTrue(hashed.startswith("$argon2id$"))
            self.assertVerifies(sock, "correct horse battery staple", hashed, True)
            for wrong in ("correct horse battery stapl", "correct horse battery staple ",
                          "Correct horse battery staple", "x"):
                with self.subTest(wrong=wrong):
                    self.assertVerifies(sock, wrong, hashed, False)
            self.assertStillOpen(sock)

    def test_two_hashes_of_one_password_differ(self):
        with self.server.connect() as sock:
            first, second = self.hash(sock, "same password"), self.hash(sock, "same password")
            self.assertNotEqual(first, second, "no random salt")
            # Different salts, so different strings, and each one verifies.
            self.assertNotEqual(first.split("$")[4], second.split("$")[4])
            self.assertVerifies(sock, "same password", first, True)
            self.assertVerifies(sock, "same password", second, True)

    def test_every_byte_counts(self):
        # The password is its UTF-8 bytes: every byte of a multi-byte character counts.
        with self.server.connect() as sock:
            password = "p\u00e4ss \U0001F41D"
            hashed = self.hash(sock, password)
            self.assertVerifies(sock, password, hashed, True)
            for other in ("pass \U0001F41D", "p\u00e4ss", "p\u00e4ss \U0001F41E", "P\u00c4SS \U0001F41D"):
                with self.subTest(other=other):
                    self.assertVerifies(sock, other, hashed, False)

    def test_nul_is_refused_naming_the_member(self):
        # "\u0000" is valid JSON and the engine accepts it, but these members are read as C strings,
        # where a NUL would silently cut a password short: the endpoint refuses it.
        with self.server.connect() as sock:
            for path, value, field in (("/v1/password/hash", {"password": "a\u0000b"}, "password"),
                                       ("/v1/password/verify", {"password": "pw", "hash": FOREIGN_HASH + "\u0000"},
                                        "hash"),
                                       ("/v1/password/verify", {"password": "pw", "hash": "\u0000" + FOREIGN_HASH},
                                        "hash")):
                with self.subTest(path=path, value=value):
                    doc = self.assertProblemDoc(self.post(sock, path, value), 422, extra={"field": field})
                    self.assertIn("U+0000", doc["detail"])

    def test_longest_password(self):
        with self.server.connect() as sock:
            for password in ("a" * 1024, "\u00e9" * 512):  # 1024 bytes each
                with self.subTest(chars=len(password)):
                    hashed = self.hash(sock, password)
                    self.assertVerifies(sock, password, hashed, True)
                    self.assertVerifies(sock, password[:-1], hashed, False)

    def test_argon2i_and_foreign_hashes(self):
        with self.server.connect() as sock:
            self.assertVerifies(sock, "pw", ARGON2I_PW, True)
            self.assertVerifies(sock, "px", ARGON2I_PW, False)
            # Well-formed but made by no password: a mismatch, not an error.
            self.assertVerifies(sock, "pw", FOREIGN_HASH, False)

    def test_tampered_hash_does_not_verify(self):
        with self.server.connect() as sock:
            hashed = self.hash(sock, "tamper")
            tag_start = hashed.rindex("$") + 1
            i = tag_start + 10  # inside the tag, away from base64's last (padding) character
            tampered = hashed[:i] + ("B" if hashed[i] != "B" else "C") + hashed[i + 1:]
            self.assertVerifies(sock, "tamper", tampered, False)

    def test_wrong_content_type_is_415(self):
        with self.server.connect() as sock:
            for path, body in (("/v1/password/hash", {"password": "x"}),
                               ("/v1/password/verify", {"password": "x", "hash": FOREIGN_HASH})):
                for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/jsonx"}, None):
                    with self.subTest(path=path, headers=headers):
                        self.assertProblem(self.post(sock, path, body, headers), 415)
            self.assertStillOpen(sock)

    def test_invalid_json_is_400_with_position(self):
        raws = [b'{"password": }', b'{"password": "x"', b'[1, 2', b'{"password": "a", "password": "b"}']
        with self.server.connect() as sock:
            for path in ("/v1/password/hash", "/v1/password/verify"):
                for raw in raws:
                    with self.subTest(path=path, raw=raw):
                        doc = self.assertProblemDoc(self.post(sock, path, raw), 400)
                        self.assertIn("line", doc["detail"])
                        self.assertIn("column", doc["detail"])
            self.assertStillOpen(sock)

    def test_body_that_is_not_an_object_is_422(self):
        with self.server.connect() as sock:
            for path in ("/v1/password/hash", "/v1/password/verify"):
                for value in ([], [{"password": "x"}], "password", 5):
                    with self.subTest(path=path, value=value):
                        doc = self.assertProblemDoc(self.post(sock, path, value), 422)
                        self.assertIn("object", doc["detail"])

    def test_bad_members_of_hash_are_422_naming_them(self):
        cases = [
            ({}, "password"),
            ({"password": None}, "password"),
            ({"password": 5}, "password"),
            ({"password": True}, "password"),
            ({"password": ["x"]}, "password"),
            ({"password": {"x": 1}}, "password"),
            ({"password": ""}, "password"),
            ({"password": "a" * 1025}, "password"),
            ({"password": "\u00e9" * 512 + "a"}, "password"),  # 1025 bytes in 513 characters
            ({"password": "x", "extra": 1}, "extra"),
            ({"Password": "x"}, "Password"),
            ({"password": "x", "hash": FOREIGN_HASH}, "hash"),
            ({"x" * 300: 1, "password": "x"}, "x" * 100),  # a long client key is echoed cut to 100 bytes
        ]
        with self.server.connect() as sock:
            for value, field in cases:
                with self.subTest(field=field[:20], body=str(value)[:80]):
                    resp, took = timed_request(sock, "POST", "/v1/password/hash", JSON,
                                               json_request_body(value))
                    self.assertFieldProblem(resp, 422, field)
                    self.assertLess(took, 1.0)
            self.assertStillOpen(sock)

    def test_bad_members_of_verify_are_422_naming_them(self):
        cases = [
            ({"hash": FOREIGN_HASH}, "password"),
            ({"password": "", "hash": FOREIGN_HASH}, "password"),
            ({"password": 1, "hash": FOREIGN_HASH}, "password"),
            ({"password": "a" * 1025, "hash": FOREIGN_HASH}, "password"),
            ({"password": "x"}, "hash"),
            ({"password": "x", "hash": None}, "hash"),
            ({"password": "x", "hash": 5}, "hash"),
            ({"password": "x", "hash": [FOREIGN_HASH]}, "hash"),
            ({"password": "x", "hash": FOREIGN_HASH, "salt": "s"}, "salt"),
        ]
        with self.server.connect() as sock:
            for value, field in cases:
                with self.subTest(body=str(value)[:80]):
                    resp = self.post(sock, "/v1/password/verify", value)
                    self.assertFieldProblem(resp, 422, field)
            self.assertStillOpen(sock)

    def test_malformed_hash_is_422_naming_hash(self):
        head = "$argon2id$v=19$m=8192,t=1,p=1$"
        good = head + "c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
        hashes = [
            "", "garbage", "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",
            "$argon2d$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id", "$argon2id$", "$ARGON2ID$v=19$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            head, head + "AAAA$BBBB",                                   # salt and tag too short
            good + "A" * (128 - len(good)),                              # 128 bytes: one too many
            good[:-2] + "!!",                                            # not base64
            "$argon2id$v=16$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",   # version libsodium refuses
            "$argon2id$m=8192,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",        # no version
            "$argon2id$v=19$m=4,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",      # memory below Argon2's
            # More than a hash made here costs (8 MiB, one pass): refused before any work.
            "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=8193,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=8192,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2id$v=19$m=99999999999,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ]
        with self.server.connect() as sock:
            for hashed in hashes:
                with self.subTest(hash=hashed):
                    resp, took = timed_request(sock, "POST", "/v1/password/verify", JSON,
                                               json_request_body({"password": "pw", "hash": hashed}))
                    self.assertFieldProblem(resp, 422, "hash")
                    self.assertLess(took, 1.0)
            self.assertStillOpen(sock)
        self.assertServing(self.server)

    def test_password_never_in_an_answer_or_the_log(self):
        secret = self.SECRET
        hash_path, verify_path = "/v1/password/hash", "/v1/password/verify"
        cases = [
            (hash_path, JSON, json_request_body({"password": secret})),
            (hash_path, JSON, json_request_body({"password": secret, "extra": 1})),
            (hash_path, JSON, json_request_body({"password": secret * 50})),           # too long
            (hash_path, JSON, json_request_body([secret])),
            (hash_path, {"Content-Type": "text/plain"}, json_request_body({"password": secret})),
            (hash_path, JSON, b'{"password": "' + secret.encode() + b'\n"}'),      # raw newline
            (hash_path, JSON, b'{"password": "' + secret.encode() + b'\\x"}'),     # bad escape
            (hash_path, JSON, b'{"password": ' + secret.encode() + b'}'),          # no quotes
            (hash_path, JSON, b'{"password": "' + secret.encode() + b'", "password": "x"}'),
            (verify_path, JSON, json_request_body({"password": secret, "hash": FOREIGN_HASH})),
            (verify_path, JSON, json_request_body({"password": secret, "hash": "garbage"})),
            (verify_path, JSON, json_request_body({"password": secret, "hash": FOREIGN_HASH[:-5]})),
            (verify_path, JSON, json_request_body({"password": secret})),
            (verify_path, JSON, json_request_body({"password": secret, "hash": FOREIGN_HASH, "x": 1})),
        ]
        # Fragments long enough to be recognisable, so a quoted piece of the password is caught too.
        fragments = {secret[i:i + 6] for i in range(len(secret) - 5)}
        statuses = []
        # Refused by the engine before any handler, which logs the refusal at debug level: proof that
        # debug lines are written, so the check of the log below covers them.
        with self.server.connect() as sock:
            sock.sendall(build_request("POST", "/v1/password/hash", [("Content-Type", "application/json"),
                                                                     ("Content-Length", "2000000")])
                         + json_request_body({"password": secret}))
            self.assertProblemDoc(read_response(sock), 413)
        with self.server.connect() as sock:
            hashed = self.hash(sock, secret)
            self.assertVerifies(sock, secret, hashed, True)
            self.assertVerifies(sock, secret + "!", hashed, False)
            for path, headers, raw in cases:
                resp = request(sock, "POST", path, headers, raw)
                statuses.append(resp.status)
                text = resp.raw_head.decode("latin-1") + resp.body.decode("utf-8")
                for fragment in fragments:
                    self.assertNotIn(fragment, text, f"{path} {raw[:60]!r} answered {resp!r}")
                # A refused body keeps the connection: the next case goes over the same one.
                self.assertNotIn("close", resp.connection_tokens())
        self.assertEqual(statuses, [200, 422, 422, 422, 415, 400, 400, 400, 400, 200, 422, 422, 422, 422])
        self.assertServing(self.server)
        # http_conn_reject logs the refusal after it has queued (and may have sent) the 413: wait for it.
        self.assertIsNotNone(self.server.wait_for_log(r"debug.*rejected request with 413", 5),
                             "no debug line: this test proves little")
        log = self.server.log_text()
        for fragment in fragments:
            self.assertNotIn(fragment, log)


class PasswordDefaultsTest(PoolAssertions, ServerTestMixin, unittest.TestCase):
    """The shipped parameters (two passes, 64 MiB): fast enough for one round trip."""

    THREADS = 1

    def test_round_trip_with_default_parameters(self):
        with self.server.connect() as sock:
            resp = request(sock, "POST", "/v1/password/hash", JSON,
                           json_request_body({"password": "defaults"}))
            self.assertEqual(resp.status, 200, repr(resp))
            hashed = resp.json()["hash"]
            self.assertRegex(hashed, r"^\$argon2id\$v=19\$m=65536,t=2,p=1\$[A-Za-z0-9+/]{22}\$"
                                     r"[A-Za-z0-9+/]{43}$")
            for password, valid in (("defaults", True), ("default", False)):
                resp = request(sock, "POST", "/v1/password/verify", JSON,
                               json_request_body({"password": password, "hash": hashed}))
                self.assertJson(resp, 200, {"valid": valid})
            # A hash made with the test suite's cheaper settings costs less: accepted.
            resp = request(sock, "POST", "/v1/password/verify", JSON,
                           json_request_body({"password": "pw", "hash": ARGON2I_PW}))
            self.assertJson(resp, 200, {"valid": True})


# --------------------------------------------------------------------------------------------------
# /v1/primes


class PrimesTest(PoolAssertions, ServerTestMixin, unittest.TestCase):
    THREADS = 1

    def test_known_counts(self):
        with self.server.connect() as sock:
            for n in (0, 1, 2, 3, 4, 10, 100, 1000, 1000000, 50000000):
                with self.subTest(n=n):
                    self.assertPrimes(request(sock, "GET", primes_path(n)), n)
            self.assertJson(request(sock, "GET", "/v1/primes?n=0010"), 200, {"n": 10, "count": 4})
            self.assertStillOpen(sock)

    def test_head_has_no_body(self):
        with self.server.connect() as sock:
            resp = request(sock, "HEAD", primes_path(100))
            self.assertEqual(resp.status, 200)
            self.assertEqual(resp.body, b"")
            self.assertCommonHeaders(resp, head_request=True)
            self.assertStillOpen(sock)

    def test_bad_n_is_400_naming_n(self):
        paths = ["/v1/primes", "/v1/primes?", "/v1/primes?n", "/v1/primes?n=", "/v1/primes?m=5",
                 "/v1/primes?n=-1", "/v1/primes?n=%2D1", "/v1/primes?n=+5", "/v1/primes?n=%2B5",
                 "/v1/primes?n=%205", "/v1/primes?n=1.5", "/v1/primes?n=1e3", "/v1/primes?n=0x10",
                 "/v1/primes?n=ten", "/v1/primes?n=50000001", "/v1/primes?n=4294967296",
                 "/v1/primes?n=99999999999999999999999999"]
        with self.server.connect() as sock:
            for path in paths:
                with self.subTest(path=path):
                    resp, took = timed_request(sock, "GET", path)
                    doc = self.assertFieldProblem(resp, 422, "n")
                    self.assertIn("between 0 and 50000000", doc["detail"])
                    self.assertLess(took, 1.0)
            self.assertStillOpen(sock)


# --------------------------------------------------------------------------------------------------
# the pool under load


class PoolFloodTest(PoolAssertions, ServerTestMixin, unittest.TestCase):
    """One worker, a queue of two, one loop: at most three jobs are ever accepted at once."""

    CONFIG = {"pool": {"threads": 1, "queue_size": 2}, "primes": {"max_n": 1000000000},
              "password": FAST_ARGON2}
    THREADS = 1
    CLIENTS = 30
    N = 100000000  # about 0.1 s each
    LONG_N = 400000000  # about 0.9 s each

    def test_flood_answers_503_or_the_count(self):
        socks = send_all(self.server, [primes_path(self.N)] * self.CLIENTS)
        sent = time.monotonic()
        sel = selectors.DefaultSelector()
        answers = []
        try:
            for sock in socks:
                sel.register(sock, selectors.EVENT_READ)
            deadline = sent + 60
            while len(answers) < len(socks) and time.monotonic() < deadline:
                for key, _ in sel.select(timeout=1.0):
                    answers.append((read_response(key.fileobj, timeout=10.0), time.monotonic() - sent))
                    sel.unregister(key.fileobj)
        finally:
            sel.close()
            for sock in socks:
                sock.close()
        self.assertEqual(len(answers), self.CLIENTS, "some requests were not answered within 60 s")
        ok = [resp for resp, _ in answers if resp.status == 200]
        busy = [(resp, took) for resp, took in answers if resp.status == 503]
        self.assertEqual(len(ok) + len(busy), self.CLIENTS,
                         f"statuses other than 200 and 503: {[r.status for r, _ in answers]}")
        for resp in ok:
            self.assertPrimes(resp, self.N)
        for resp, took in busy:
            self.assertBusy(resp)
            self.assertLess(took, 2.0, "a refusal must not wait for a worker")
        # The first job to arrive is always accepted, and so is the next one (the queue holds two).
        self.assertGreaterEqual(len(ok), 2)
        self.assertGreaterEqual(len(busy), 1, "thirty jobs of 0.1 s on one worker and a queue of two")
        # The pool takes work again once the flood is over.
        with self.server.connect() as sock:
            self.assertPrimes(request(sock, "GET", primes_path(1000)), 1000)

    def test_loop_keeps_serving_while_the_pool_is_saturated(self):
        # One running and two queued jobs of ~0.9 s: the pool is full for the next ~2.7 s. The first
        # goes alone, so that the worker has taken it before the other two fill the queue.
        socks = send_all(self.server, [primes_path(self.LONG_N)])
        try:
            time.sleep(0.1)
            socks += send_all(self.server, [primes_path(self.LONG_N)] * 2)
            time.sleep(0.1)
            with self.server.connect() as other:
                # Full: every pool-backed endpoint refuses at once.
                resp, took = timed_request(other, "GET", primes_path(10))
                self.assertBusy(resp)
                self.assertLess(took, 0.5)
                resp, took = timed_request(other, "POST", "/v1/password/hash", JSON,
                                           json_request_body({"password": "busy"}))
                self.assertBusy(resp)
                resp, took = timed_request(other, "POST", "/v1/password/verify", JSON,
                                           json_request_body({"password": "pw", "hash": ARGON2I_PW}))
                self.assertBusy(resp)
                # The loop itself is idle: everything that does not need a worker is answered now.
                for _ in range(10):
                    resp, took = timed_request(other, "GET", "/healthz")
                    self.assertJson(resp, 200, {"status": "ok"})
                    self.assertLess(took, 0.5, "the loop stalled while the pool was busy")
                    time.sleep(0.05)
                self.assertHello(request(other, "GET", "/v1/hello"))
            for sock in socks:
                self.assertPrimes(read_response(sock, timeout=30.0), self.LONG_N)
        finally:
            for sock in socks:
                sock.close()


class PoolInlineTest(PoolAssertions, ServerTestMixin, unittest.TestCase):
    """pool.run_inline (benchmarks only): the same answers, computed on the loop itself."""

    CONFIG = {"pool": {"run_inline": True}, "password": FAST_ARGON2}
    THREADS = 1

    def test_same_answers_inline(self):
        self.assertIsNotNone(self.server.wait_for_log(r"warn.*pool\.run_inline is on", 2.0),
                             self.server.log_text())
        with self.server.connect() as sock:
            for n in (0, 2, 1000, 1000000):
                self.assertPrimes(request(sock, "GET", primes_path(n)), n)
            resp = request(sock, "POST", "/v1/password/hash", JSON, json_request_body({"password": "inline"}))
            self.assertEqual(resp.status, 200, repr(resp))
            hashed = resp.json()["hash"]
            self.assertRegex(hashed, HASH_RE)
            for password, valid in (("inline", True), ("Inline", False)):
                resp = request(sock, "POST", "/v1/password/verify", JSON,
                               json_request_body({"password": password, "hash": hashed}))
                self.assertJson(resp, 200, {"valid": valid})
            resp = request(sock, "POST", "/v1/password/verify", JSON,
                           json_request_body({"password": "pw", "hash": FOREIGN_HASH[:-4]}))
            self.assertFieldProblem(resp, 422, "hash")


# --------------------------------------------------------------------------------------------------
# clients that leave, and shutdown


class PoolLifecycleTest(PoolAssertions, unittest.TestCase):
    """Each test starts its own server: most of them end it."""

    CONFIG = {"pool": {"threads": 1, "queue_size": 8}, "primes": {"max_n": 1000000000}}
    BIG_N = 1000000000  # about 2.5 s: far longer than any bound below

    def leave_mid_job(self, server):
        """Five jobs of ~2.5 s: one running, four queued; after 0.2 s every client resets (RST). A reset
        cancels whatever half_close says (a FIN too by default; test_45_careless_clients)."""
        socks = send_all(server, [primes_path(self.BIG_N)] * 5)
        try:
            time.sleep(0.2)
        finally:
            for sock in socks:
                abort(sock)

    def test_abandoned_jobs_leave_nothing_behind(self):
        with ApiaryServer(self.CONFIG, threads=1) as server:
            self.leave_mid_job(server)
            # The running job stops at its next look at the cancel flag and the queued ones are gone:
            # a new job runs at once instead of behind ~12 s of abandoned work.
            with server.connect() as sock:
                resp, took = timed_request(sock, "GET", primes_path(1000))
                self.assertPrimes(resp, 1000)
                self.assertLess(took, 1.0, "the worker was still busy with abandoned jobs")
                resp, took = timed_request(sock, "GET", "/healthz")
                self.assertJson(resp, 200, {"status": "ok"})
            time.sleep(0.5)
            self.assertServing(server)
            with server.connect() as sock:
                self.assertPrimes(request(sock, "GET", primes_path(1000000)), 1000000)
            self.assertNoBadLogLines(server)
            started = time.monotonic()
            server.sigterm()
            self.assertExitsZero(server, 5)
            self.assertLess(time.monotonic() - started, 1.5)

    def test_abandoned_jobs_do_not_hold_shutdown(self):
        # pool_shutdown runs what is still queued: jobs whose clients left must not be among them.
        with ApiaryServer(self.CONFIG, threads=2) as server:
            self.leave_mid_job(server)
            time.sleep(0.1)
            started = time.monotonic()
            server.sigterm()
            self.assertExitsZero(server, 10)
            self.assertLess(time.monotonic() - started, 1.5, "shutdown waited for abandoned jobs")
            self.assertNoBadLogLines(server)

    def test_jobs_in_flight_finish_after_sigterm(self):
        # One job running and one queued when the signal arrives: both are answered in full.
        n = 200000000  # about 0.3 s each
        with ApiaryServer(self.CONFIG, threads=1) as server:
            socks = send_all(server, [primes_path(n)] * 2)
            try:
                time.sleep(0.1)
                server.sigterm()
                for sock in socks:
                    resp = read_response(sock, timeout=10.0)
                    self.assertPrimes(resp, n)
                    self.assertIn("close", resp.connection_tokens(), "a draining server must say it closes")
                    self.assertClosedByServer(sock, timeout=5.0)
            finally:
                for sock in socks:
                    sock.close()
            self.assertExitsZero(server, 10)
            self.assertNoBadLogLines(server)


if __name__ == "__main__":
    unittest.main()


class WorkerPriorityTest(unittest.TestCase):
    """Workers run niced (pool.nice, default 19) so a loop sharing their CPU gets it back at once; the
    loops keep the default priority. Read from /proc, the kernel's own view of each thread."""

    def thread_nices(self, pid):
        nices = {}
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                name = f.read().strip()
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                nice = int(f.read().rsplit(")", 1)[1].split()[16])  # field 19 of stat
            nices.setdefault(name, set()).add(nice)
        return nices

    def settled_nices(self, pid, want):
        """Workers set their own nice value as they start: give them a moment (bounded) to do so."""
        deadline = time.monotonic() + 5
        nices = self.thread_nices(pid)
        while any(nices.get(name) != value for name, value in want.items()) and time.monotonic() < deadline:
            time.sleep(0.05)
            nices = self.thread_nices(pid)
        return nices

    def test_workers_are_niced_and_loops_are_not(self):
        # Loops keep the nice value they were started with (ctest may itself run under `nice -n 10`).
        inherited = os.getpriority(os.PRIO_PROCESS, 0)
        want = {"apiary-worker": {19}, "apiary-loop-0": {inherited}, "apiary-loop-1": {inherited}}
        default = ApiaryServer({"pool": {"threads": 2}}, threads=2)
        del default.config["pool"]["nice"]  # the harness runs workers at nice 0; here the default counts
        with default as srv:
            nices = self.settled_nices(srv.proc.pid, want)
            for name, value in want.items():
                self.assertEqual(nices.get(name), value, name)
        with ApiaryServer({"pool": {"threads": 1, "nice": 0}}, threads=1) as srv:
            self.assertEqual(self.settled_nices(srv.proc.pid, {"apiary-worker": {inherited}}).get("apiary-worker"),
                             {inherited})
