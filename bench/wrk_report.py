#!/usr/bin/python3
"""bench/wrk_report.py: parses `wrk --latency` output and renders the hello.sh comparison table.

  wrk_report.py parse WRK_OUTPUT_FILE          -> one JSON object (for debugging and other scripts)
  wrk_report.py table --clk-tck N --a-name apiary --b-name nginx MANIFEST
      MANIFEST: tab-separated lines "shape<TAB>a|b<TAB>wrk_output_file<TAB>server_cpu_ticks",
      several lines per shape and side when there were several rounds
      -> markdown table on stdout; with several rounds each cell is the median over the rounds
         (the ratio is of the median req/s) and errors are summed

Stdlib only, so it runs on Debian's /usr/bin/python3 with nothing installed.
"""
import argparse
import json
import re
import sys

# wrk prints times with these suffixes (units_time in wrk's stats.c)
TIME_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
NUM_TIME = re.compile(r"^([0-9.]+)(us|ms|s|m|h)$")


def parse_time_s(text):
    m = NUM_TIME.match(text.strip())
    if not m:
        raise ValueError(f"not a wrk time: {text!r}")
    return float(m.group(1)) * TIME_UNITS_S[m.group(2)]


def parse_wrk(text):
    """Returns a dict; fields wrk did not print are None (or 0 for error counts)."""
    out = {
        "requests": None, "duration_s": None, "rps": None,
        "latency_s": {},  # "50" -> seconds, from the --latency distribution
        "socket_errors": {"connect": 0, "read": 0, "write": 0, "timeout": 0},
        "non_2xx_3xx": 0,
    }
    in_dist = False
    for line in text.splitlines():
        s = line.strip()
        if s == "Latency Distribution":
            in_dist = True
            continue
        if in_dist:
            m = re.match(r"^([0-9.]+)%\s+(\S+)$", s)
            if m:
                key = m.group(1)
                key = key[:-3] if key.endswith(".000") else key
                out["latency_s"][key] = parse_time_s(m.group(2))
                continue
            in_dist = False
        m = re.match(r"^(\d+) requests in ([0-9.]+(?:us|ms|s|m|h)),", s)
        if m:
            out["requests"] = int(m.group(1))
            out["duration_s"] = parse_time_s(m.group(2))
            continue
        m = re.match(r"^Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", s)
        if m:
            for k, v in zip(("connect", "read", "write", "timeout"), m.groups()):
                out["socket_errors"][k] = int(v)
            continue
        m = re.match(r"^Non-2xx or 3xx responses: (\d+)", s)
        if m:
            out["non_2xx_3xx"] = int(m.group(1))
            continue
        m = re.match(r"^Requests/sec:\s+([0-9.]+)", s)
        if m:
            out["rps"] = float(m.group(1))
    out["socket_errors_total"] = sum(out["socket_errors"].values())
    return out


def fmt_time(sec):
    if sec is None:
        return "n/a"
    if sec < 1e-3:
        return f"{sec * 1e6:.0f} µs"
    if sec < 1.0:
        return f"{sec * 1e3:.2f} ms"
    return f"{sec:.2f} s"


def fmt_rps(v):
    return "n/a" if v is None else f"{v:,.0f}"


def median(values):
    values = sorted(v for v in values if v is not None)
    if not values:
        return None
    mid = len(values) // 2
    return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2


def side_stats(runs, clk_tck):
    """runs: [(wrk, ticks)] for one server and shape, one per round. Medians, summed errors."""
    rps, p99, cpu = [], [], []
    for wrk, ticks in runs:
        rps.append(wrk["rps"])
        p99.append(wrk["latency_s"].get("99"))
        # delta ticks -> seconds -> µs per request served (wrk counts every response, pipelined too)
        cpu.append(ticks / clk_tck / wrk["requests"] * 1e6 if wrk["requests"] else None)
    return median(rps), median(p99), median(cpu)


def table(args):
    rows = {}   # shape -> {"a": [(wrk, ticks), ...], "b": [...]}, one entry per round
    order = []
    with open(args.manifest) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            shape, side, path, ticks = line.split("\t")
            with open(path) as wf:
                wrk = parse_wrk(wf.read())
            if shape not in rows:
                rows[shape] = {"a": [], "b": []}
                order.append(shape)
            rows[shape][side].append((wrk, int(ticks)))

    a, b = args.a_name, args.b_name
    cpu_head, cpu_rule = (f" CPU/req {a} ÷ {b} |", "--:|") if args.cpu_ratio else ("", "")
    print(f"| shape | {a} req/s | {b} req/s | ratio {a}/{b} | {a} p99 | {b} p99 "
          f"| {a} µs CPU/req | {b} µs CPU/req |{cpu_head} errors {a} / {b} |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|" + cpu_rule + "--:|")
    notes = []
    for shape in order:
        cells = {}
        for side in ("a", "b"):
            name = a if side == "a" else b
            runs = rows[shape][side]
            rps, p99, cpu = side_stats(runs, args.clk_tck)
            errs = 0
            for rnd, (wrk, _) in enumerate(runs, 1):
                e = wrk["socket_errors_total"] + wrk["non_2xx_3xx"]
                errs += e
                tag = f"{shape}, {name}" + (f", round {rnd}" if len(runs) > 1 else "")
                if wrk["requests"] is None:
                    notes.append(f"{tag}: wrk printed no result (see the raw wrk output)")
                if e:
                    se = wrk["socket_errors"]
                    notes.append(f"{tag}: socket errors connect {se['connect']}, read {se['read']}, "
                                 f"write {se['write']}, timeout {se['timeout']}; "
                                 f"non-2xx/3xx {wrk['non_2xx_3xx']}")
            cells[side] = (rps, p99, cpu, str(errs) if runs else "n/a")
        ra, rb = cells["a"][0], cells["b"][0]
        ratio = f"{ra / rb:.2f}" if ra and rb else "n/a"
        cpu_a = "n/a" if cells["a"][2] is None else f"{cells['a'][2]:.2f}"
        cpu_b = "n/a" if cells["b"][2] is None else f"{cells['b'][2]:.2f}"
        cpu_ratio = ""
        if args.cpu_ratio:
            ca, cb = cells["a"][2], cells["b"][2]
            cpu_ratio = f" **{ca / cb:.2f}** |" if ca and cb else " n/a |"
        print(f"| {shape} | {fmt_rps(ra)} | {fmt_rps(rb)} | {ratio} | {fmt_time(cells['a'][1])} "
              f"| {fmt_time(cells['b'][1])} | {cpu_a} | {cpu_b} |{cpu_ratio} {cells['a'][3]} / {cells['b'][3]} |")
    if notes:
        print()
        for n in notes:
            print(f"- {n}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("parse")
    p.add_argument("file")
    t = sub.add_parser("table")
    t.add_argument("--clk-tck", type=int, required=True)
    t.add_argument("--a-name", default="apiary")
    t.add_argument("--b-name", default="nginx")
    t.add_argument("--cpu-ratio", action="store_true", help="add a column: CPU per request of a ÷ b")
    t.add_argument("manifest")
    args = ap.parse_args()
    if args.cmd == "parse":
        with open(args.file) as f:
            json.dump(parse_wrk(f.read()), sys.stdout, indent=1)
        print()
    else:
        table(args)


if __name__ == "__main__":
    main()
