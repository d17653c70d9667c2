#!/usr/bin/python3
"""bench/loopback.py: talking to a server under test on this machine, as the bench scripts share it:
a free loopback port to give it, waiting until it listens there (failing as soon as it died, rather
than waiting out the whole timeout), and n GETs over several keep-alive connections at once."""
import http.client
import socket
import threading
import time


def free_port():
    """A loopback TCP port nothing listens on now (the kernel's pick; another process may take it
    before the server binds, which on this one-user machine does not happen in practice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port, seconds=30.0, proc=None):
    """Returns once 127.0.0.1:port accepts a connection. Raises SystemExit after `seconds`, or as soon
    as `proc` (the server's Popen, if given) has exited."""
    deadline = time.monotonic() + seconds
    while True:
        if proc is not None and proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode} before it listened on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise SystemExit(f"nothing listens on {port} after {seconds:g} s")
            time.sleep(0.05)


def get_many(host, port, path, n, conns):
    """n GETs of path over conns keep-alive connections at once (threads), so several requests are in
    flight as under wrk; every answer must be 200."""
    bad = []

    def worker(count):
        # An exception in a thread only prints: it is kept, so a refused or dropped connection fails
        # the run instead of passing with fewer requests sent.
        try:
            c = http.client.HTTPConnection(host, port, timeout=300)
            for _ in range(count):
                c.request("GET", path)
                r = c.getresponse()
                r.read()
                if r.status != 200:
                    bad.append(r.status)
            c.close()
        except OSError as e:
            bad.append(f"{type(e).__name__}: {e}")

    threads = [threading.Thread(target=worker, args=(n // conns + (i < n % conns),)) for i in range(conns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if bad:
        raise SystemExit(f"{len(bad)} answers were not 200 or connections failed (first: {bad[0]})")
