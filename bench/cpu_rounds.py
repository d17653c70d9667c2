"""bench/cpu_rounds.py: what the server-CPU benchmarks share (coro_cpu.py, schema_cpu.py, coro_callgrind.py).

Start an apiary with one loop thread pinned to CPU 0, drive targets with wrk pinned to CPU 1 in
alternating rounds (round 0 warms up and is not counted), and read the server's CPU time (utime + stime
of every thread, /proc/PID/stat) around each round: CPU microseconds per request for each target."""
import json
import os
import re
import subprocess

from loopback import free_port, wait_listening

HZ = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / HZ  # utime, stime


def start(binary, workdir, config, prefix=("taskset", "-c", "0")):
    """One apiary (--threads 1) on a free port with `config` written to workdir/apiary.json: (proc, port).
    `prefix` is what runs it (CPU 0 by default; a valgrind command line for coro_callgrind.py)."""
    port = free_port()
    path = os.path.join(workdir, "apiary.json")
    with open(path, "w") as f:
        json.dump(config, f)
    proc = subprocess.Popen([*prefix, os.path.abspath(binary), "--config", path, "--listen", f"127.0.0.1:{port}",
                             "--threads", "1"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=workdir)
    wait_listening(port, 100 if prefix and "valgrind" in prefix[0] else 10, proc)
    return proc, port


def stop(proc):
    proc.terminate()
    proc.wait(60)


def wrk_round(pid, port, target, seconds, connections, extra=()):
    """One wrk run against the server: (requests, server CPU seconds used). Any non-2xx answer stops the run."""
    before = cpu_seconds(pid)
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", f"-c{connections}", f"-d{seconds}s", *extra,
                          f"http://127.0.0.1:{port}{target}"], capture_output=True, text=True, check=True).stdout
    used = cpu_seconds(pid) - before
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    if bad:
        raise SystemExit(f"{target}: {bad.group(1)} bad answers")
    return int(re.search(r"(\d+) requests in", out).group(1)), used


def alternate(runs, rounds, seconds, connections):
    """runs: {name: (pid, port, target, extra wrk args)}. Alternating rounds, the order reversed every other
    round so neither always goes first; returns {name: server CPU microseconds per request}."""
    totals = {name: [0.0, 0] for name in runs}
    for rnd in range(rounds + 1):  # round 0 warms up and is not counted
        order = list(runs.items())
        if rnd % 2:
            order.reverse()
        for name, (pid, port, target, extra) in order:
            requests, used = wrk_round(pid, port, target, seconds, connections, extra)
            if rnd:
                totals[name][0] += used
                totals[name][1] += requests
                print(f"round {rnd} {name:9s}: {requests / seconds:8.0f} req/s, "
                      f"{used / requests * 1e6:6.2f} us server CPU per request")
    return {name: t[0] / t[1] * 1e6 for name, t in totals.items()}
