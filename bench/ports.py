#!/usr/bin/python3
"""bench/ports.py: the two socket chores every bench script that starts a server shares: a free
loopback port to give it, and waiting until it listens there (failing with the server's exit status
when it died instead, rather than waiting out the whole timeout)."""
import socket
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
