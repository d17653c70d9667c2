"""Framing and request-head rules, end to end on the real binary: a chunked trailer can never bring
back bytes of an earlier request; Host must be present once and valid in HTTP/1.1; empty field names,
obs-fold and HTTP/1.0 with Transfer-Encoding are refused; a request refused from its head answers an
Expect: 100-continue at once; a pipelining client that reads slowly cannot grow the server's memory."""

import re
import unittest

from apiary_harness import (ApiaryServer, ServerTestMixin, build_request, read_response, request,
                            binary_is_sanitized, slow_pipelining_reader)

GENERATED_ID = re.compile(r"^[0-9a-f]{8}-[0-9]+-[0-9a-f]+$")




class HeadRulesTest(ServerTestMixin, unittest.TestCase):
    THREADS = 1

    def refused(self, raw, detail):
        with self.server.connect() as sock:
            sock.sendall(raw)
            resp = read_response(sock)
            doc = self.assertProblem(resp, 400)
            self.assertIn(detail, doc["detail"])
            self.assertIn("close", resp.connection_tokens())
            self.assertClosedByServer(sock)

    def test_host_is_required_once_and_valid_in_http11(self):
        self.refused(b"GET /v1/hello HTTP/1.1\r\n\r\n", "must carry a Host header")
        self.refused(b"GET /v1/hello HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", "more than one Host header")
        for bad in (b"exa mple", b"a/b", b"[::1", b"host:99999", b"user@host"):
            with self.subTest(host=bad):
                self.refused(b"GET /v1/hello HTTP/1.1\r\nHost: " + bad + b"\r\n\r\n", "not a valid host")

    def test_a_remembered_valid_host_lets_no_other_through(self):
        """Each loop remembers the last Host it found valid and skips the check for an equal one; a
        Host of the same length that differs in one byte, or one that extends it, is still checked."""
        for bad in (b"good.example:8x", b"good.example:800000", b"good.exampl@:80"):
            with self.subTest(host=bad), self.server.connect() as sock:
                for _ in range(2):  # the second is answered from the loop's memory
                    self.assertHello(request(sock, "GET", "/v1/hello", {"Host": "good.example:80"}))
                sock.sendall(b"GET /v1/hello HTTP/1.1\r\nHost: " + bad + b"\r\n\r\n")
                self.assertEqual(read_response(sock).status, 400)

    def test_valid_hosts_and_http10_without_one(self):
        with self.server.connect() as sock:
            for host in ("localhost:8080", "[::1]:80", "192.0.2.1", "api.example.com"):
                self.assertHello(request(sock, "GET", "/v1/hello", {"Host": host}))
            sock.sendall(b"GET /v1/hello HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            self.assertHello(read_response(sock))

    def test_empty_field_name_obs_fold_and_http10_chunked_are_refused(self):
        self.refused(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\n: value\r\n\r\n", "empty name")
        self.refused(b"GET /v1/hello HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.2.3.4\r\n 5.6.7.8\r\n\r\n", "obs-fold")
        self.refused(b"POST /v1/echo HTTP/1.0\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
                     b"2\r\n{}\r\n0\r\n\r\n", "Transfer-Encoding is not allowed in HTTP/1.0")

    def test_expect_continue_is_answered_at_once_when_the_head_decides(self):
        cases = [("POST", "/v1/nope", "application/json", 404), ("POST", "/v1/hello", "application/json", 405),
                 ("POST", "/v1/echo", "text/plain", 415)]
        for method, path, ctype, status in cases:
            with self.subTest(path=path), self.server.connect() as sock:
                sock.sendall(build_request(method, path, {"Content-Type": ctype, "Expect": "100-continue",
                                                          "Content-Length": "1000000"}))
                resp = read_response(sock, timeout=2)  # no body sent: an answer now, or a timeout
                self.assertProblem(resp, status)
                self.assertIn("close", resp.connection_tokens())

    def test_trailers_are_accepted_and_ignored(self):
        with self.server.connect() as sock:
            sock.sendall(b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n7\r\n{\"a\":1}\r\n0\r\nX-Request-Id: from-trailer\r\n"
                         b"Content-Type: text/plain\r\n\r\n")
            resp = read_response(sock)
            self.assertJson(resp, 200, {"a": 1})
            self.assertRegex(resp.headers["x-request-id"], GENERATED_ID)
            self.assertStillOpen(sock)


class TrailerLeakTest(unittest.TestCase):
    """The attack: a victim's request, as a proxy forwards it, carries its own X-Request-Id and then an
    Authorization token. On a fresh connection the attacker sends a chunked POST whose trailer field lies,
    by offset, where the victim's "X-Request-Id" name lay in the reused request slot, with enough
    whitespace before its value that the value lies on the victim's token. Before the fix the trailer
    spans were read past the attacker's head copy, out of the victim's stale bytes, and the answer's
    X-Request-Id was the victim's token."""

    SECRET = "s3cr3tTOKENfromTheVictim0123456789"

    def test_a_trailer_cannot_bring_back_an_earlier_request(self):
        with ApiaryServer({}, threads=1) as srv:
            victim_head = build_request("GET", "/v1/hello", [("X-Pad", "v" * 600), ("X-Request-Id", "edge-1"),
                                                             ("Authorization", "Bearer " + self.SECRET)])
            name_at = victim_head.index(b"X-Request-Id")
            gap = victim_head.index(self.SECRET.encode()) - name_at - len("X-Request-Id:")
            head = (b"POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n")
            for shift in range(-8, 9, 4):  # several alignments (0 is the one that leaked): none may leak
                with self.subTest(shift=shift):
                    with srv.connect() as victim:
                        victim.sendall(victim_head)
                        self.assertEqual(read_response(victim).status, 200)
                    # head + "NNN\r\n" + data + "\r\n" + "0\r\n" puts the trailer's name at name_at + shift
                    data_len = name_at + shift - (len(head) + 5 + 2 + 3)
                    data = b'["' + b"d" * (data_len - 4) + b'"]'  # a JSON array: echo answers 200
                    attack = (head + f"{data_len:03x}\r\n".encode() + data + b"\r\n0\r\nX-Request-Id:" + b" " * gap
                              + b"z" * len(self.SECRET) + b"\r\n\r\n")
                    with srv.connect() as attacker:
                        attacker.sendall(attack)
                        resp = read_response(attacker)
                    rid = resp.headers.get("x-request-id", "")
                    self.assertEqual(resp.status, 200)
                    self.assertNotIn("TOKEN", rid)
                    self.assertNotIn("z" * 8, rid, "a trailer must never act as a header")
                    self.assertRegex(rid, GENERATED_ID)


class SlowReaderTest(unittest.TestCase):
    """A client pipelines requests without pause and reads its answers at about 4 MB/s: the server's
    memory must stay flat (before: it grew by every byte the client read)."""

    def test_rss_stays_flat_under_a_slow_pipelining_reader(self):
        # The old default limit, at which the growth was found (it showed above 64 KiB).
        with ApiaryServer({"limits": {"output_buffer_bytes": 262144}}, threads=1) as srv:
            got, samples = slow_pipelining_reader(srv, 6.0, 4e6)
        baseline, end = samples[0][1], samples[-1][1]
        if binary_is_sanitized():
            # ASan's quarantine holds freed memory, so the bound is checked on the plain build; an
            # instrumented server on a loaded machine also writes slower than the reader's 4 MB/s
            # (10.5 MB seen at load 15): here the test only has to have pushed a real stream through.
            self.assertGreater(got, 2e6, f"the client read only {got} bytes")
            return
        self.assertGreater(got, 15e6, f"the client read only {got} bytes")
        self.assertLess(end - baseline, 4096, f"RSS grew from {baseline} KiB to {end} KiB while the client read "
                                              f"{got / 1e6:.1f} MB")


if __name__ == "__main__":
    unittest.main()
