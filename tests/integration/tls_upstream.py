#!/usr/bin/env python3
"""tls_upstream: an HTTPS upstream for tests/unit/clients/http_client_tls_test.c and test_95_fanout_https.

Usage: tls_upstream.py CERT KEY. Listens on 127.0.0.1 on a free port, prints the port on stdout, and
serves HTTP/1.1 over TLS with keep-alive until stdin closes (the test's end). Every answer is JSON:
the request's method, target, its header fields, and the number of the connection it came on (1 for
the first accepted), with the response fields Content-Type: application/json and X-Upstream: tls.
GET /big?bytes=N answers N bytes of "x" in a JSON string instead; GET /slow?ms=N waits N ms first.
"""
import http.server
import json
import ssl
import sys
import threading
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # the head and the body go in two writes: no 40 ms wait for an ACK

    def setup(self):
        super().setup()
        with self.server.lock:
            self.server.connections += 1
            self.conn_number = self.server.connections

    def log_message(self, *args):
        pass

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode("latin-1") if length else ""
        if self.path.startswith("/slow?ms="):
            time.sleep(int(self.path.split("=", 1)[1]) / 1000)
        if self.path.startswith("/big?bytes="):
            payload = json.dumps("x" * int(self.path.split("=", 1)[1]))
        else:
            payload = json.dumps({"method": self.command, "target": self.path, "conn": self.conn_number,
                                  "headers": [[k, v] for k, v in self.headers.items()], "body": body})
        data = payload.encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Upstream", "tls")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_DELETE = answer


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.lock = threading.Lock()
    server.connections = 0
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()  # the test ended (or died): stop


if __name__ == "__main__":
    main()
