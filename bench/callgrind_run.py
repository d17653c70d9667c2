#!/usr/bin/python3
"""bench/callgrind_run.py: what the *_callgrind.py scripts that count a route's instructions per
request share (schema_callgrind.py, kv_put_callgrind.py): start an apiary binary under callgrind on a
free port with a config of their own, send --warm requests, zero the counters, send --requests more
on one keep-alive connection, dump, and read the annotated profile. Instruction counts do not move
with the machine's load, which is why a loaded machine measures with them; timers that follow the
wall clock still move totals by about 0.1 %."""
import json
import os
import re
import subprocess
import tempfile

from loopback import free_port, wait_listening


def inclusive(profile, name):
    """The inclusive instructions of function `name` (and its clones) in a callgrind_annotate text."""
    total = 0
    for m in re.finditer(r"^\s*([\d,]+) \([^)]*\)\s+\S*:(\S+) \[", profile, re.M):
        fn = m.group(2)
        if fn == name or fn.startswith(name + "'") or re.fullmatch(r"__%s_\w+" % re.escape(name), fn):
            total += int(m.group(1).replace(",", ""))
    return total


def profile(binary, config, send, requests, warm, keep=None):
    """Runs `binary` under callgrind with `config` (a dict; `tmp` in its strings is replaced by the run's
    temporary directory) and returns (total instructions, annotated profile) of the `requests` sent by
    send(conn, n) after `warm` more. `keep`: a directory to copy the raw profile into."""
    import http.client

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "apiary.json")
        with open(path, "w") as f:
            json.dump(json.loads(json.dumps(config).replace("{tmp}", tmp)), f)
        port = free_port()
        out = os.path.join(tmp, "callgrind.out")
        err = open(os.path.join(tmp, "server.err"), "w")
        proc = subprocess.Popen(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
                                 os.path.abspath(binary), "--config", path, "--listen", f"127.0.0.1:{port}",
                                 "--threads", "1"], stdout=subprocess.DEVNULL, stderr=err, cwd=tmp)
        try:
            try:
                wait_listening(port, 300, proc)  # callgrind starts slowly
            except SystemExit:
                err.close()  # the log goes with the temporary directory: quote its end
                tail = open(os.path.join(tmp, "server.err")).read()[-1500:]
                raise SystemExit(f"{binary} did not listen (exit status {proc.returncode}); the end of its log:\n{tail}")
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
            send(conn, warm)
            subprocess.run(["callgrind_control", "-z", str(proc.pid)], check=True, capture_output=True)
            send(conn, requests)
            subprocess.run(["callgrind_control", "-d", str(proc.pid)], check=True, capture_output=True)
            conn.close()
        finally:
            proc.terminate()
            proc.wait(120)
        dump = out + ".1"
        if keep:
            subprocess.run(["cp", dump, os.path.join(keep, os.path.basename(os.path.dirname(
                os.path.dirname(os.path.abspath(binary)))) + ".callgrind")], check=True)
        text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", dump],
                              capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"([\d,]+) \(100.0%\)\s+PROGRAM TOTALS", text).group(1).replace(",", ""))
    return total, text


def sender(binary, method, path, body, ok):
    """A send(conn, n) for profile(): n requests of one kind, each answered with a status in `ok`."""
    def send(conn, n):
        for _ in range(n):
            conn.request(method, path, body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status not in ok:
                raise SystemExit(f"{binary}: status {r.status}")
    return send
