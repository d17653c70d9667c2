#!/usr/bin/python3
"""bench/pool_report.py: per-thread CPU snapshots and the markdown tables of pool_isolation.sh and
pool_hash.sh.

  pool_report.py snap PID                  -> JSON: time, the process's utime+stime, and per thread
                                              its name, utime+stime and schedstat run delay
  pool_report.py isolation RUN.json...     -> the /healthz, primes and CPU tables
  pool_report.py hash --overload RUN.json RUN.json...
                                           -> the hashes/s table and the overload table

A RUN.json is written by the shell script: {"name", "label", "snap0", "snap1", "wrk" (wrk output file,
optional), "client" (pool_client.py JSON, optional), ...}. Thread roles come from apiary's thread
names: "apiary-loop-N" (event loops), "apiary-worker" (pool workers); anything else is "other" (the
main thread, which only waits for signals, or a stand-in's threads).

Stdlib only; reuses wrk_report.py's wrk parser.
"""
import argparse
import json
import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from wrk_report import fmt_time, median, parse_wrk  # noqa: E402

CLK_TCK = os.sysconf("SC_CLK_TCK")


def read_stat(path):
    """(comm, utime+stime ticks) from a /proc stat file; comm may hold spaces and parens."""
    with open(path) as f:
        s = f.read()
    comm = s[s.index("(") + 1:s.rindex(")")]
    f = s[s.rindex(")") + 2:].split()
    return comm, int(f[11]) + int(f[12])   # fields 14 and 15; f[0] is field 3


def cpu_times():
    """Per-CPU (busy, total, steal) ticks from /proc/stat; busy = everything but idle and iowait
    (steal included: time the hypervisor gave this virtual CPU's turn to someone else)."""
    out = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *v = line.split()
                v = [int(x) for x in v[:8]]   # user nice system idle iowait irq softirq steal
                out[name[3:]] = (sum(v) - v[3] - v[4], sum(v), v[7])
    return out


def snap(pid):
    out = {"t": time.monotonic(), "pid": pid, "threads": {}, "cpus": cpu_times(),
           "affinity": sorted(os.sched_getaffinity(pid))}
    out["comm"], out["ticks"] = read_stat(f"/proc/{pid}/stat")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            comm, ticks = read_stat(f"/proc/{pid}/task/{tid}/stat")
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                run_ns, wait_ns, _ = (int(x) for x in f.read().split())
        except (FileNotFoundError, ProcessLookupError, ValueError):
            continue   # a thread that ended between listdir and open
        out["threads"][tid] = {"comm": comm, "ticks": ticks, "run_ns": run_ns, "wait_ns": wait_ns}
    return out


def role(comm):
    if comm.startswith("apiary-loop"):
        return "loop"
    if comm.startswith("apiary-worker"):
        return "worker"
    return "other"


def cpu_delta(s0, s1):
    """Seconds of CPU and of waiting-for-CPU per role over the interval, plus wall seconds. A thread
    born after s0 counts from zero."""
    wall = s1["t"] - s0["t"]
    roles = {}
    for tid, t1 in s1["threads"].items():
        t0 = s0["threads"].get(tid, {"ticks": 0, "run_ns": 0, "wait_ns": 0})
        r = roles.setdefault(role(t1["comm"]), {"cpu_s": 0.0, "wait_s": 0.0, "threads": 0})
        r["cpu_s"] += (t1["ticks"] - t0["ticks"]) / CLK_TCK
        r["wait_s"] += (t1["wait_ns"] - t0["wait_ns"]) / 1e9
        r["threads"] += 1
    total = (s1["ticks"] - s0["ticks"]) / CLK_TCK
    return wall, total, roles


def cpu_busy(s0, s1, cpu):
    """Share of CPU `cpu` that was busy (any task, softirq included) between the snapshots."""
    a, b = s0.get("cpus", {}).get(str(cpu)), s1.get("cpus", {}).get(str(cpu))
    if not a or not b or b[1] == a[1]:
        return None
    return (b[0] - a[0]) / (b[1] - a[1])


def cpu_steal(s0, s1, cpu):
    """Share of CPU `cpu` stolen by the hypervisor between the snapshots (None if unknown)."""
    a, b = s0.get("cpus", {}).get(str(cpu)), s1.get("cpus", {}).get(str(cpu))
    if not a or not b or len(a) < 3 or b[1] == a[1]:
        return None
    return (b[2] - a[2]) / (b[1] - a[1])


def load(path):
    with open(path) as f:
        return json.load(f)


def wrk_of(run):
    if not run.get("wrk"):
        return None
    with open(run["wrk"]) as f:
        text = f.read()
    w = parse_wrk(text)
    # wrk_report.py keeps the distribution only; the max is in the "Thread Stats" latency line
    m = re.search(r"^\s*Latency\s+(\S+)\s+(\S+)\s+(\S+)\s+", text, re.M)
    w["max_s"] = None
    if m:
        from wrk_report import parse_time_s
        try:
            w["max_s"] = parse_time_s(m.group(3))
        except ValueError:
            pass
    return w


def fmt_pct(x):
    return "n/a" if x is None else f"{x * 100:.1f} %"


def fmt_num(x, nd=1):
    return "n/a" if x is None else f"{x:,.{nd}f}"


def lat(client, status, key):
    v = (client or {}).get("latency_s", {}).get(status, {}).get(key)
    return fmt_time(v) if v is not None else "–"


def probe_of(r):
    """/healthz numbers of a run, from wrk or from the open-loop client: dict with rps, n, p50, p99,
    max (seconds or None), errors, and for the open loop the offered rate and the client's lateness."""
    if r.get("wrk"):
        w = wrk_of(r)
        out = {"rps": w["rps"], "n": w["requests"] or 0, "errors": w["socket_errors_total"] + w["non_2xx_3xx"],
               "p50": w["latency_s"].get("50"), "p99": w["latency_s"].get("99"), "max": w["max_s"]}
        if not out["n"]:
            # wrk prints 0.00us percentiles when nothing finished: no latency was measured at all
            out.update(p50=None, p99=None, max=None)
        return out
    c = load(r["probe_json"])
    l = c["latency_s"].get("200", {})
    ok = c["counts"].get("200", 0)
    return {"rps": ok / c["window_s"], "n": ok, "errors": c["errors_total"] + c["responses"] - ok,
            "p50": l.get("p50"), "p99": l.get("p99"), "max": l.get("max"),
            "late_p99": c.get("send_late_p99_s"), "rate": c.get("rate")}


def others_share(r, cpu):
    """Share of the server's CPU that other processes (neighbours) kept busy during the run: the
    CPU's busy share from /proc/stat minus the server's own CPU time (it is pinned there)."""
    s0, s1 = load(r["snap0"]), load(r["snap1"])
    wall, total, _ = cpu_delta(s0, s1)
    cb = cpu_busy(s0, s1, cpu)
    return None if cb is None else max(0.0, cb - total / wall)


def short_probe(r):
    return r.get("probe_desc", "wrk").split(",")[0]


def isolation(args):
    runs = [load(p) for p in args.runs]
    target = args.target_ms / 1000
    print("**/healthz latency** while the primes load runs beside it")
    print()
    print(f"| mode | /healthz probe | answered /s | p50 | p99 | max | errors | p99 ≤ {args.target_ms:g} ms "
          f"| CPU {args.server_cpu} taken by others (of it stolen) | probe sends late, p99 |")
    print("|---|---|--:|--:|--:|--:|--:|:-:|--:|--:|")
    by_key = {}   # (key, probe) -> [probe results], one per round
    late = []
    for r in runs:
        h = probe_of(r)
        by_key.setdefault((r["key"], r.get("probe", "wrk")), []).append(h)
        if h.get("late_p99") is not None:
            late.append(h["late_p99"])
        s0, s1 = load(r["snap0"]), load(r["snap1"])
        st = cpu_steal(s0, s1, args.server_cpu)
        others = fmt_pct(others_share(r, args.server_cpu)) + (f" ({fmt_pct(st)})" if st is not None else "")
        late_cell = fmt_time(h["late_p99"]) if h.get("late_p99") is not None else "–"
        if not h["n"]:
            print(f"| {r['label']} | {r.get('probe_desc', 'wrk')} | {fmt_num(h['rps'], 0)} | none answered in the window "
                  f"| – | – | {h['errors']} | {'–' if r['key'] == 'idle' else 'FAIL'} | {others} | {late_cell} |")
            continue
        verdict = "–" if r["key"] == "idle" else ("n/a" if h["p99"] is None else ("PASS" if h["p99"] <= target else "FAIL"))
        print(f"| {r['label']} | {r.get('probe_desc', 'wrk')} | {fmt_num(h['rps'], 0)} | {fmt_time(h['p50'])} | "
              f"{fmt_time(h['p99'])} | {fmt_time(h['max'])} | {h['errors']} | {verdict} | {others} | {late_cell} |")
    print()
    for probe in ("wrk", "open"):
        if ("pool", probe) not in by_key or ("inline", probe) not in by_key:
            continue
        def med(key, field):  # noqa: E306
            return median([h[field] for h in by_key[(key, probe)]])
        parts = []
        for field in ("p50", "p99", "max"):
            a, b = med("inline", field), med("pool", field)
            if a and b:
                parts.append(f"{field} inline ÷ pool = **{a / b:,.0f}×**")
        a, b = med("inline", "rps"), med("pool", "rps")
        if a and b and probe == "wrk":
            parts.append(f"/healthz answered per second pool ÷ inline = **{b / a:,.0f}×**")
        rounds = len(by_key[("pool", probe)])
        print(f"- Ratios, {'wrk probe' if probe == 'wrk' else 'open-loop probe'}"
              + (f" (medians over {rounds} rounds)" if rounds > 1 else "") + ": "
              + ("; ".join(parts) or "n/a (no /healthz answered in a window)") + ".")
    if late:
        print("- Open-loop probe: latency is from writing each request to the end of its answer; how late the "
              "writes were against the fixed schedule (asyncio timers, the client's CPU) is in the last column and "
              "does not enter the latencies. A late client also reads answers late, though: a row whose sends were "
              "many ms late measured the client as much as the server.")
    print("- \"Taken by others\" = the CPU's busy share in /proc/stat minus the server's own CPU time (it is pinned "
          "there): other processes on this shared machine, and in brackets the part the hypervisor stole from the "
          "virtual CPU. Rows where it is more than a few % measured the neighbours too: with a scheduler tick of "
          "a few ms, any neighbour that runs on the CPU can hold a request for milliseconds.")
    print()
    print("**primes load** (pool_client.py closed loop; a connection waits "
          f"{runs[-1].get('backoff_ms', '?')} ms after a 503 before asking again)")
    print()
    print("| mode | beside probe | primes 200/s | 503/s | 503 share | 200 p50 | 200 p99 | 503 p99 | errors |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|")
    for r in runs:
        if not r.get("client"):
            continue
        c = load(r["client"])
        ok, rej = c["counts"].get("200", 0), c["counts"].get("503", 0)
        other = c["responses"] - ok - rej
        share = rej / (ok + rej) if ok + rej else None
        errs = c["errors_total"] + other
        print(f"| {r['label']} | {short_probe(r)} | {fmt_num(c['rates'].get('200', 0))} | {fmt_num(c['rates'].get('503', 0))} | "
              f"{fmt_pct(share)} | {lat(c, '200', 'p50')} | {lat(c, '200', 'p99')} | {lat(c, '503', 'p99')} | {errs} |")
    print()
    print("**where the server's CPU went** (CPU 0 is the server's only CPU; from /proc/PID/task/*/stat "
          "and schedstat)")
    print()
    print(f"| mode | probe | server CPU busy | loop CPU busy | loop waited for CPU | worker CPU busy | worker waited "
          f"| µs loop CPU / response | ms CPU / primes job | CPU {args.server_cpu} busy, all tasks | of it not the server |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in runs:
        s0, s1 = load(r["snap0"]), load(r["snap1"])
        wall, total, roles = cpu_delta(s0, s1)
        h = probe_of(r)
        c = load(r["client"]) if r.get("client") else None
        loop, worker = roles.get("loop"), roles.get("worker")
        # every answer the loop wrote in the interval: /healthz + primes 200s and 503s
        responses = h["n"] + h["errors"] + (c["responses"] if c else 0)
        primes_ok = c["counts"].get("200", 0) if c else 0
        def busy(x):  # noqa: E306
            return fmt_pct(x["cpu_s"] / wall) if x else "–"
        def waited(x):  # noqa: E306
            return fmt_pct(x["wait_s"] / wall) if x else "–"
        loop_us = fmt_num(loop["cpu_s"] / responses * 1e6) if loop and responses else "–"
        if r["key"] == "inline" and loop and primes_ok:
            job_ms = f"{loop['cpu_s'] / primes_ok * 1e3:.1f} (on the loop)"
            loop_us = "– (includes the primes work)"
        elif worker and primes_ok:
            job_ms = f"{worker['cpu_s'] / primes_ok * 1e3:.1f}"
        else:
            job_ms = "–"
        cb = cpu_busy(s0, s1, args.server_cpu)
        # the server is pinned to this CPU, so whatever else kept it busy was someone else's
        others = fmt_pct(max(0.0, cb - total / wall)) if cb is not None else "n/a"
        print(f"| {r['label']} | {short_probe(r)} | {fmt_pct(total / wall)} | {busy(loop)} | {waited(loop)} | {busy(worker)} | "
              f"{waited(worker)} | {loop_us} | {job_ms} | {fmt_pct(cb)} | {others} |")


def all_busy(s0, s1):
    """Busy share of every CPU together, as a percentage of one CPU (200 % = both)."""
    vals = [cpu_busy(s0, s1, c) for c in s1.get("cpus", {})]
    return "n/a" if not vals or None in vals else fmt_pct(sum(vals))


def hash_report(args):
    runs = [load(p) for p in args.runs]
    base = None
    print("**hashes/s against pool.threads** (wrk closed loop, %d connections)" % runs[0].get("conns", 0))
    print()
    print("| pool.threads | hashes/s | × first row | p50 | p99 | max | µs CPU / hash | server CPU busy (of 200 %) "
          "| CPU bound, hashes/s | workers waited for CPU | CPUs busy, all tasks (of 200 %) | non-2xx / socket errors |")
    print("|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in runs:
        w = wrk_of(r)
        s0, s1 = load(r["snap0"]), load(r["snap1"])
        wall, total, roles = cpu_delta(s0, s1)
        rps = w["rps"]
        if not w["requests"]:
            # nothing finished in the window (wrk then prints 0.00us percentiles): no data
            print(f"| {r['label']} | 0 | – | none finished in the window | – | – | – | {fmt_pct(total / wall)} | – | – | "
                  f"{all_busy(s0, s1)} | {w['non_2xx_3xx']} / {w['socket_errors_total']} |")
            continue
        if base is None:
            base = rps   # the first row with data: pool.threads 1 in the default THREADS_LIST
        cpu_us = total / w["requests"] * 1e6 if w["requests"] else None
        # what the workers could do with min(threads, CPUs) CPUs to themselves: on a shared box
        # hashes/s falls short of it by what the neighbours took
        ncpu = len(s1.get("affinity", [])) or 1
        bound = min(int(r.get("threads", 1)), ncpu) * 1e6 / cpu_us if cpu_us else None
        worker = roles.get("worker")
        waited = fmt_pct(worker["wait_s"] / wall) if worker else "–"
        print(f"| {r['label']} | {fmt_num(rps, 1)} | {fmt_num(rps / base if base else None, 2)} | "
              f"{fmt_time(w['latency_s'].get('50'))} | {fmt_time(w['latency_s'].get('99'))} | {fmt_time(w['max_s'])} | "
              f"{fmt_num(cpu_us, 0)} | {fmt_pct(total / wall)} | {fmt_num(bound, 1)} | {waited} | {all_busy(s0, s1)} | "
              f"{w['non_2xx_3xx']} / {w['socket_errors_total']} |")
    if not args.overload:
        return
    r = load(args.overload)
    c = load(r["client"])
    s0, s1 = load(r["snap0"]), load(r["snap1"])
    wall, total, roles = cpu_delta(s0, s1)
    ok, rej = c["counts"].get("200", 0), c["counts"].get("503", 0)
    other = c["responses"] - ok - rej
    answered = ok + rej
    print()
    print(f"**overload** ({r['label']}): open loop at {c['rate']:.1f} req/s for {c['window_s']:g} s "
          f"= {r.get('factor', '?')}× the {fmt_num(r.get('capacity'))} hashes/s measured above")
    print()
    print("| offered req/s | sent | accepted (200) /s | accepted ÷ capacity | 503 share | 503 with Retry-After "
          "| other status / errors |")
    print("|--:|--:|--:|--:|--:|--:|--:|")
    cap = r.get("capacity")
    print(f"| {c['rate']:.1f} | {c['sent']} | {fmt_num(c['rates'].get('200', 0))} | "
          f"{fmt_pct(c['rates'].get('200', 0) / cap) if cap else 'n/a'} | "
          f"{fmt_pct(rej / answered) if answered else 'n/a'} | "
          f"{fmt_pct(c['retry_after_on_503'] / rej) if rej else '–'} | {other} / {c['errors_total']} |")
    print()
    print("| answers | n | p50 | p90 | p99 | max |")
    print("|---|--:|--:|--:|--:|--:|")
    for status, label in (("200", "accepted (200)"), ("503", "rejected (503)")):
        if status in c["latency_s"]:
            print(f"| {label} | {c['counts'][status]} | {lat(c, status, 'p50')} | {lat(c, status, 'p90')} | "
                  f"{lat(c, status, 'p99')} | {lat(c, status, 'max')} |")
    print()
    print(f"Server CPU busy during the overload run: {fmt_pct(total / wall)} of one CPU (200 % = both; all tasks: "
          f"{all_busy(s0, s1)}); "
          f"{fmt_num(total / ok * 1e6, 0) if ok else 'n/a'} µs CPU per accepted hash (503s included in the CPU). "
          f"Client: {c['connections_opened']} connections opened; sends were at most "
          f"{fmt_time(c['send_late_max_s'])} late against their schedule (p99 {fmt_time(c['send_late_p99_s'])}); "
          f"last answer {c['drain_s']:.2f} s after the last send.")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("snap")
    p.add_argument("pid", type=int)
    p = sub.add_parser("isolation")
    p.add_argument("--target-ms", type=float, default=2.0)
    p.add_argument("--server-cpu", default="0", help="the CPU the server is pinned to")
    p.add_argument("runs", nargs="+")
    p = sub.add_parser("hash")
    p.add_argument("--overload")
    p.add_argument("runs", nargs="+")
    args = ap.parse_args()
    if args.cmd == "snap":
        json.dump(snap(args.pid), sys.stdout)
        print()
    elif args.cmd == "isolation":
        isolation(args)
    else:
        hash_report(args)


if __name__ == "__main__":
    main()
