#!/usr/bin/python3
"""bench/sleep_run.py: runs one wrk load against a server and watches the server meanwhile, for
bench/sleep.sh; then renders sleep.sh's report.

  sleep_run.py run --server-pid PID --json OUT.json --wrk-out WRK.txt [--interval 0.2]
                   [--name NAME --server-cpus N --rss-before-kib KIB] -- CMD...
      Starts CMD (the pinned wrk), and until it exits samples the server's VmRSS (and, every
      second, how many descriptors the server and wrk hold, which shows how many connections are
      really open). Brackets the run with the server's utime+stime and the netns-wide listen
      overflow counters, and takes wrk's own CPU time from wait4(), so nothing is estimated.
  sleep_run.py report --meta META.json RUN.json...
      Markdown tables on stdout (see bench/README.md, "sleep.sh").

Why a Python runner and not a shell loop: the sampler must not cost CPU on the server's core nor
fork a process per sample, and wait4() gives wrk's exact CPU time, which tells whether wrk rather
than the server was the bottleneck. Stdlib only (Debian's /usr/bin/python3).
"""
import argparse
import json
import os
import signal
import subprocess
import sys
import time

# no __pycache__ left in bench/ by the import below
sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wrk_report import parse_wrk, fmt_time  # noqa: E402  (same directory)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid):
    """utime+stime of the whole process (all threads), fields 14 and 15 of /proc/PID/stat."""
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    # rest starts at field 3
    return int(rest[11]) + int(rest[12])


def vm_rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return None


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def listen_counters():
    """TcpExt ListenOverflows/ListenDrops: SYNs or ACKs dropped because an accept queue was full.
    Network-namespace wide, so other loopback users could add to them."""
    try:
        with open("/proc/net/netstat") as f:
            lines = f.read().splitlines()
    except OSError:
        return {}
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith("TcpExt:"):
            d = dict(zip(names.split()[1:], (int(v) for v in values.split()[1:])))
            return {k: d.get(k, 0) for k in ("ListenOverflows", "ListenDrops")}
    return {}


def cpu_times():
    """Per-CPU jiffies from /proc/stat: {"0": [user, nice, system, idle, iowait, irq, softirq, steal]}."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *vals = line.split()
                out[name[3:]] = [int(v) for v in vals[:8]]
    return out


def cpu_busy(t0, t1):
    """Fractions of each CPU over the interval: busy (everything but idle and iowait), and within it
    softirq and steal. Needed because loopback TCP work done in softirq is not always charged to
    the process's utime+stime, and other jobs or the hypervisor may take the CPU."""
    res = {}
    for cpu, a in t0.items():
        b = t1.get(cpu)
        if not b:
            continue
        d = [y - x for x, y in zip(a, b)]
        total = sum(d) or 1
        res[cpu] = {"busy": (total - d[3] - d[4]) / total, "softirq": d[6] / total, "steal": d[7] / total}
    return res


def run_delay_s(pid):
    """Time the process's threads were runnable but waiting for a CPU (schedstat field 2, ns)."""
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                    total += int(f.read().split()[1])
            except OSError:
                pass
    except OSError:
        return None
    return total / 1e9


def cmd_run(args):
    spid = args.server_pid
    child = None

    def on_term(signum, _frame):
        # the calling script is cleaning up: take wrk down with us
        if child is not None and child.poll() is None:
            child.terminate()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)

    samples = []  # (t, rss_kib)
    fds = []      # (t, server_fds, wrk_fds)
    ln0 = listen_counters()
    ct0 = cpu_times()
    rd0 = run_delay_s(spid)
    tick0 = cpu_ticks(spid)
    rss0 = vm_rss_kib(spid)
    t0 = time.monotonic()
    with open(args.wrk_out, "wb") as out:
        child = subprocess.Popen(args.cmd, stdout=out, stderr=subprocess.STDOUT)
    next_fd = t0 + 1.0
    rusage = None
    status = None
    while True:
        pid, st, ru = os.wait4(child.pid, os.WNOHANG)
        if pid:
            status, rusage = st, ru
            break
        now = time.monotonic()
        try:
            samples.append((now - t0, vm_rss_kib(spid)))
        except OSError:
            break  # server gone; the script notices and reports it
        if now >= next_fd:
            fds.append((now - t0, fd_count(spid), fd_count(child.pid)))
            next_fd = now + 1.0
        time.sleep(args.interval)
    t1 = time.monotonic()
    if rusage is None:  # server died: still wait for wrk, it ends by itself after -d
        _, status, rusage = os.wait4(child.pid, 0)
        t1 = time.monotonic()
    try:
        tick1 = cpu_ticks(spid)
        rss1 = vm_rss_kib(spid)
        alive = True
    except OSError:
        tick1, rss1, alive = None, None, False
    rd1 = run_delay_s(spid)
    ct1 = cpu_times()
    ln1 = listen_counters()
    res = {
        "name": args.name,
        "server_cpus": args.server_cpus,
        "rss_before_kib": args.rss_before_kib,
        "cmd": args.cmd,
        "wall_s": t1 - t0,
        "server_alive": alive,
        "server_cpu_s": None if tick1 is None else (tick1 - tick0) / CLK_TCK,
        "rss_start_kib": rss0,
        "rss_after_kib": rss1,  # after wrk closed its connections
        "rss_max_kib": max((r for _, r in samples if r), default=None),
        # last sample taken while wrk was still running, i.e. with its connections open
        "rss_last_kib": samples[-1][1] if samples else None,
        "samples": len(samples),
        "server_fds_max": max((s for _, s, _ in fds if s is not None), default=None),
        "wrk_fds_max": max((w for _, _, w in fds if w is not None), default=None),
        "server_run_delay_s": None if rd0 is None or rd1 is None else rd1 - rd0,
        "cpus": cpu_busy(ct0, ct1),
        "wrk_cpu_s": rusage.ru_utime + rusage.ru_stime,
        "wrk_exit": os.waitstatus_to_exitcode(status),
        "listen_overflows": ln1.get("ListenOverflows", 0) - ln0.get("ListenOverflows", 0),
        "listen_drops": ln1.get("ListenDrops", 0) - ln0.get("ListenDrops", 0),
    }
    with open(args.wrk_out) as f:
        res["wrk"] = parse_wrk(f.read())
    with open(args.json, "w") as f:
        json.dump(res, f, indent=1)
    return 0


def pct(x):
    return "n/a" if x is None else f"{x * 100:.0f} %"


def kib(x):
    return "n/a" if x is None else f"{x / 1024:.1f} MiB"


def cmd_report(args):
    with open(args.meta) as f:
        meta = json.load(f)
    conns = meta["conns"]
    offered = conns / (meta["sleep_ms"] / 1000.0)  # every connection one request per sleep
    target_frac = meta["target_frac"]
    target_kib = meta["target_kib_per_conn"]
    rows = []
    for path in args.runs:
        with open(path) as f:
            r = json.load(f)
        rows.append(r)

    def derived(r):
        w = r["wrk"]
        reqs, rps = w["requests"], w["rps"]
        ncpu = r["server_cpus"]
        d = {"rps": rps, "frac_offered": rps / offered if rps else None}
        d["util"] = r["server_cpu_s"] / r["wall_s"] if r["server_cpu_s"] is not None else None
        d["us_req"] = r["server_cpu_s"] / reqs * 1e6 if reqs and r["server_cpu_s"] is not None else None
        # what the server's CPUs could serve at 100 % busy, at the CPU cost it showed per request
        d["cpu_bound"] = ncpu * 1e6 / d["us_req"] if d["us_req"] else None
        d["ideal"] = min(offered, d["cpu_bound"]) if d["cpu_bound"] else offered
        d["frac_ideal"] = rps / d["ideal"] if rps else None
        d["saturated"] = d["util"] is not None and d["util"] >= 0.9 * ncpu
        d["wrk_util"] = r["wrk_cpu_s"] / r["wall_s"] / meta["wrk_cpus"]
        base = r["rss_before_kib"]
        d["kib_conn"] = (r["rss_max_kib"] - base) / conns if r["rss_max_kib"] and base else None
        se = w["socket_errors"]
        d["errors"] = (f"{sum(se.values()) + w['non_2xx_3xx']} (connect {se['connect']}, read {se['read']}, "
                       f"write {se['write']}, timeout {se['timeout']}, non-2xx {w['non_2xx_3xx']})")
        return d

    ds = [derived(r) for r in rows]
    print(f"| server | req/s | of {offered:,.0f} | server CPU busy | saturated? | CPU bound req/s | ideal req/s "
          f"| of ideal (target ≥ {target_frac * 100:.0f} %) | p50 | p99 | µs CPU/req | wrk CPU busy |")
    print("|---|--:|--:|--:|:-:|--:|--:|--:|--:|--:|--:|--:|")
    for r, d in zip(rows, ds):
        w = r["wrk"]
        ok = "" if d["frac_ideal"] is None else (" ✓" if d["frac_ideal"] >= target_frac else " ✗")
        util = "n/a" if d["util"] is None else f"{d['util'] * 100:.0f} % of {r['server_cpus']} CPU"
        print(f"| {r['name']} | {d['rps']:,.0f} | {pct(d['frac_offered'])} | {util} "
              f"| {'yes' if d['saturated'] else 'no'} | "
              f"{'n/a' if d['cpu_bound'] is None else format(d['cpu_bound'], ',.0f')} "
              f"| {d['ideal']:,.0f} ({'CPU' if d['ideal'] < offered else 'sleep'}) "
              f"| {pct(d['frac_ideal'])}{ok} | {fmt_time(w['latency_s'].get('50'))} "
              f"| {fmt_time(w['latency_s'].get('99'))} "
              f"| {'n/a' if d['us_req'] is None else format(d['us_req'], '.1f')} | {d['wrk_util'] * 100:.0f} % |")
    print()
    print(f"| server | RSS before load | RSS max during run | RSS at end of run (conns open) "
          f"| RSS/conn (target ≤ {target_kib:g} KiB) | RSS after wrk closed its conns | server fds max "
          f"| wrk fds max | wrk errors | listen overflows/drops |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|---|--:|")
    for r, d in zip(rows, ds):
        ok = "" if d["kib_conn"] is None else (" ✓" if d["kib_conn"] <= target_kib else " ✗")
        kc = "n/a" if d["kib_conn"] is None else f"{d['kib_conn']:.2f} KiB"
        print(f"| {r['name']} | {kib(r['rss_before_kib'])} | {kib(r['rss_max_kib'])} | {kib(r['rss_last_kib'])} "
              f"| {kc}{ok} | {kib(r['rss_after_kib'])} | {r['server_fds_max']} | {r['wrk_fds_max']} | {d['errors']} "
              f"| {r['listen_overflows']} / {r['listen_drops']} |")
    print()
    cpu_names = sorted({c for r in rows for c in r.get("cpus", {})}, key=int)
    print("| server | server CPU busy | server runnable, waiting for a CPU | wrk CPU busy | "
          + " | ".join(f"CPU {c} busy (softirq, steal)" for c in cpu_names) + " |")
    print("|---|--:|--:|--:|" + "--:|" * len(cpu_names))
    for r, d in zip(rows, ds):
        rd = r.get("server_run_delay_s")
        cells = []
        for c in cpu_names:
            u = r.get("cpus", {}).get(c)
            cells.append("n/a" if not u else f"{u['busy'] * 100:.0f} % ({u['softirq'] * 100:.0f} %, {u['steal'] * 100:.0f} %)")
        print(f"| {r['name']} | {pct(d['util'])} | {'n/a' if rd is None else pct(rd / r['wall_s'])} "
              f"| {d['wrk_util'] * 100:.0f} % | " + " | ".join(cells) + " |")
    notes = []
    for r, d in zip(rows, ds):
        if not r["server_alive"]:
            notes.append(f"{r['name']}: the server died during the run.")
        if r["wrk"]["requests"] is None:
            notes.append(f"{r['name']}: wrk printed no result (exit {r['wrk_exit']}); see the raw output.")
        if r["wrk_fds_max"] is not None and r["wrk_fds_max"] < conns:
            notes.append(f"{r['name']}: wrk held at most {r['wrk_fds_max']} descriptors, fewer than {conns} "
                         f"connections.")
        if r["server_fds_max"] is not None and r["server_fds_max"] < conns:
            notes.append(f"{r['name']}: the server held at most {r['server_fds_max']} descriptors, so fewer "
                         f"than {conns} connections were open on its side at the samples.")
        if d["wrk_util"] >= 0.9:
            notes.append(f"{r['name']}: wrk was {d['wrk_util'] * 100:.0f} % busy on its CPU, so wrk, not the "
                         f"server, may be what capped req/s; the server's own limit is its CPU bound column.")
    if notes:
        print()
        for n in notes:
            print(f"- {n}")
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="sub", required=True)
    r = sub.add_parser("run")
    r.add_argument("--server-pid", type=int, required=True)
    r.add_argument("--json", required=True)
    r.add_argument("--wrk-out", required=True)
    r.add_argument("--interval", type=float, default=0.2)
    # carried into the JSON for the report
    r.add_argument("--name", default="server")
    r.add_argument("--server-cpus", type=int, default=1, help="CPUs the server may run on")
    r.add_argument("--rss-before-kib", type=int, help="server VmRSS before any load (before the warm-up)")
    r.add_argument("cmd", nargs=argparse.REMAINDER)
    p = sub.add_parser("report")
    p.add_argument("--meta", required=True)
    p.add_argument("runs", nargs="+")
    args = ap.parse_args()
    if args.sub == "run":
        if args.cmd and args.cmd[0] == "--":
            args.cmd = args.cmd[1:]
        if not args.cmd:
            ap.error("run: no command after --")
        return cmd_run(args)
    return cmd_report(args)


if __name__ == "__main__":
    sys.exit(main())
