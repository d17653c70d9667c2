#!/usr/bin/python3
"""bench/engine_callgrind.py: user-space instructions per request of the HTTP engine's two cheapest
workloads, counted by valgrind's callgrind so the figure repeats on a loaded machine where CPU time
does not:

  hello     GET /v1/hello on the apiary binary (bench/hello.sh's request)
  baseline  the arena entry's baseline mix (bench/arena.sh, bench/arena_mix.lua): GET /baseline11?a=13&b=42,
            the same POST with a Content-Length body "20", and with a chunked body "20", rotated
  get, post-cl, post-chunked
            each of the three requests of the baseline mix alone
  pipelined the arena's pipelined shape: GET /pipeline, 16 requests per write (bench/arena.sh's
            pipeline.lua depth), then the 16 answers read
  close     the baseline mix, every request asking Connection: close on a connection of its own
            (limited-conn's reconnection at its worst: connect, one request, the server's close and
            the client's EOF; the accept and close path is in the count)

The requests are the bytes wrk sends (a Host header and nothing else), written one after another on
one keep-alive connection to a server started with --threads 1 under callgrind with instrumentation
off; after --warm requests instrumentation is turned on for --requests more, then off, and the dump's
total / requests is the cost per request (engine and handler, every thread of the process; the
loop's once-a-second Date timer and 100 ms lag probe are in it too, well under 0.5 %). --top N also
prints the N functions of highest exclusive cost per request (callgrind_annotate), --keep DIR keeps
the dumps.

  engine_callgrind.py hello APIARY_BIN [APIARY_BIN...] [--requests 3000] [--warm 300] [--top 25]
  engine_callgrind.py baseline ARENA_BIN [ARENA_BIN...]   (or get, post-cl, post-chunked, pipelined, close)
"""
import argparse
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile

from loopback import free_port, wait_listening

PIPELINE_DEPTH = 16
HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = '{"log_level":"warn","timeouts":{"keepalive_ms":600000,"header_ms":600000}}'


def templates(mix, host):
    """The requests of `mix`, as bench/arena_mix.lua and wrk write them."""
    h = f"Host: {host}\r\n"
    if mix == "hello":
        return [f"GET /v1/hello HTTP/1.1\r\n{h}\r\n".encode()]
    if mix == "pipelined":
        return [f"GET /pipeline HTTP/1.1\r\n{h}\r\n".encode() * PIPELINE_DEPTH]
    if mix == "close":
        return [r.replace(h.encode(), h.encode() + b"Connection: close\r\n") for r in templates("baseline", host)]
    if mix in ("get", "post-cl", "post-chunked"):
        return [templates("baseline", host)[["get", "post-cl", "post-chunked"].index(mix)]]
    return [f"GET /baseline11?a=13&b=42 HTTP/1.1\r\n{h}\r\n".encode(),
            f"POST /baseline11?a=13&b=42 HTTP/1.1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n{h}\r\n20"
            .encode(),
            (f"POST /baseline11?a=13&b=42 HTTP/1.1\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n"
             f"{h}\r\n2\r\n20\r\n0\r\n\r\n").encode()]


class Client:
    """One keep-alive connection; each answer is read whole (Content-Length) and its status checked."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=120)
        self.buf = b""

    def answer(self):
        while b"\r\n\r\n" not in self.buf:
            self.recv()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        status = int(head.split(b" ", 2)[1])
        m = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.I)
        if not m:
            raise SystemExit(f"answer without Content-Length: {head!r}")
        n = int(m.group(1))
        while len(self.buf) < n:
            self.recv()
        self.buf = self.buf[n:]
        return status

    def recv(self):
        data = self.sock.recv(65536)
        if not data:
            raise SystemExit("the server closed the connection")
        self.buf += data

    def drive(self, reqs, n):
        for i in range(n):
            self.sock.sendall(reqs[i % len(reqs)])
            status = self.answer()
            if status != 200:
                raise SystemExit(f"status {status} for {reqs[i % len(reqs)]!r}")


class PipelinedClient(Client):
    """One keep-alive connection; each write holds PIPELINE_DEPTH requests, then their answers are read.
    n counts requests, so it is rounded down to whole batches."""

    def drive(self, reqs, n):
        for _ in range(n // PIPELINE_DEPTH):
            self.sock.sendall(reqs[0])
            for _ in range(PIPELINE_DEPTH):
                status = self.answer()
                if status != 200:
                    raise SystemExit(f"status {status} for GET /pipeline")


class ClosingClient:
    """A connection per request (Connection: close): connect, send, read the answer, wait for EOF."""

    def __init__(self, port):
        self.port = port

    def drive(self, reqs, n):
        for i in range(n):
            c = Client(self.port)
            c.sock.sendall(reqs[i % len(reqs)])
            status = c.answer()
            if status != 200:
                raise SystemExit(f"status {status} for {reqs[i % len(reqs)]!r}")
            if c.sock.recv(1) != b"":
                raise SystemExit("bytes after a Connection: close answer")
            c.sock.close()


def control(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def measure(mix, binary, requests, warm, top, keep):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        port = free_port()
        env = dict(os.environ)
        env.pop("DATABASE_URL", None)
        cmd = [os.path.abspath(binary), "--listen", f"127.0.0.1:{port}", "--threads", "1"]
        if mix == "hello":
            with open(os.path.join(tmp, "apiary.json"), "w") as f:
                f.write(CONFIG)
            cmd += ["--config", os.path.join(tmp, "apiary.json")]
        else:
            subprocess.run([sys.executable, os.path.join(HERE, "..", "examples", "arena", "make_data.py"),
                            os.path.join(tmp, "data"), "--rows", "10"], check=True, stdout=subprocess.DEVNULL)
            env["ARENA_DATA_DIR"] = os.path.join(tmp, "data")
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                                 *cmd], env=env, cwd=tmp, stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(tmp, "log"), "w"))
        try:
            try:
                wait_listening(port, 60, proc)
            except SystemExit:
                raise SystemExit(f"{binary} did not listen (exit status {proc.returncode}): " + open(os.path.join(tmp, "log")).read())
            client = {"close": ClosingClient, "pipelined": PipelinedClient}.get(mix, Client)(port)
            reqs = templates(mix, f"127.0.0.1:{port}")
            client.drive(reqs, warm)
            before = set(glob.glob(out + "*"))
            control(proc.pid, "-i", "on")
            client.drive(reqs, requests)
            control(proc.pid, "-i", "off")
            control(proc.pid, "-d", mix)
            dump = (set(glob.glob(out + "*")) - before).pop()
            with open(dump) as f:
                total = int(re.search(r"^totals: (\d+)", f.read(), re.M).group(1))
            lines = []
            if top:
                text = subprocess.run(["callgrind_annotate", "--threshold=100", dump], capture_output=True,
                                      text=True, check=True).stdout
                for m in re.finditer(r"^\s*([\d,]+) \([^)]*\)\s+(\S+)", text.split("file:function", 1)[-1], re.M):
                    lines.append((int(m.group(1).replace(",", "")) / requests, m.group(2)))
                    if len(lines) == top:
                        break
            if keep:
                os.makedirs(keep, exist_ok=True)
                shutil.copy(dump, os.path.join(keep, f"{mix}-{os.path.basename(os.path.dirname(os.path.abspath(binary)))}"
                                                     f".callgrind"))
            if mix != "close":
                client.sock.close()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
    return total / requests, lines


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mix", choices=["hello", "baseline", "get", "post-cl", "post-chunked", "pipelined", "close"])
    ap.add_argument("binaries", nargs="+")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--warm", type=int, default=300)
    ap.add_argument("--top", type=int, default=0)
    ap.add_argument("--keep")
    args = ap.parse_args()
    for binary in args.binaries:
        per, lines = measure(args.mix, binary, args.requests, args.warm, args.top, args.keep)
        print(f"RESULT {args.mix} {binary}: requests={args.requests} instructions_per_request={per:.0f}")
        for cost, fn in lines:
            print(f"  {cost:8.0f}  {fn}")


if __name__ == "__main__":
    main()
