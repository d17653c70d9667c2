#!/usr/bin/python3
"""bench/wrk_report.py: parses `wrk --latency` output and renders the report table of bench/run.sh.

  wrk_report.py parse WRK_OUTPUT_FILE          -> one JSON object (for debugging and other scripts)
  wrk_report.py suite --clk-tck N [--aux-name mariadbd] [--bytes] MANIFEST
      MANIFEST: tab-separated lines "workload<TAB>server<TAB>subject|peer<TAB>round<TAB>wrk_output_file
      <TAB>server_cpu_ticks<TAB>aux_cpu_ticks", one per measured run
      -> markdown table on stdout, a row per workload and server; with several rounds each cell is
         the median over the rounds (ratios are of the medians) and errors are summed; --bytes adds
         B/resp, the bytes wrk read per response (head and body: what a coding saved)

Stdlib only, so it runs on Debian's /usr/bin/python3 with nothing installed.
"""
import argparse
import json
import re
import sys

# wrk prints times with these suffixes (units_time in wrk's stats.c)
TIME_UNITS_S = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
BYTE_UNITS = {"B": 1, "KB": 1 << 10, "MB": 1 << 20, "GB": 1 << 30, "TB": 1 << 40}
NUM_TIME = re.compile(r"^([0-9.]+)(us|ms|s|m|h)$")


def parse_time_s(text):
    m = NUM_TIME.match(text.strip())
    if not m:
        raise ValueError(f"not a wrk time: {text!r}")
    return float(m.group(1)) * TIME_UNITS_S[m.group(2)]


def parse_wrk(text):
    """Returns a dict; fields wrk did not print are None (or 0 for error counts)."""
    out = {
        "requests": None, "duration_s": None, "rps": None, "bytes_read": None,
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
                t = parse_time_s(m.group(2))
                # wrk prints "0.00us" for a percentile past its histogram's range (seen at p99 of
                # pipelined runs, whose samples are per batch): no figure, not zero.
                out["latency_s"][key] = t if t else None
                continue
            in_dist = False
        m = re.match(r"^(\d+) requests in ([0-9.]+(?:us|ms|s|m|h)),(?: ([0-9.]+)([KMGT]?B) read)?", s)
        if m:
            out["requests"] = int(m.group(1))
            out["duration_s"] = parse_time_s(m.group(2))
            if m.group(3):
                # wrk's units are binary (stats.c units_binary), two decimals
                out["bytes_read"] = float(m.group(3)) * BYTE_UNITS[m.group(4)]
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


def per_request_us(ticks, clk_tck, requests):
    """CPU ticks over a run -> µs per request served (wrk counts every response, pipelined ones too)."""
    return ticks / clk_tck / requests * 1e6 if requests else None


def ratio(x, y):
    return f"{x / y:.2f}" if x and y else "n/a"


def fmt_cpu(v):
    return "n/a" if v is None else f"{v:,.2f}"


def suite(args):
    """The report table of bench/run.sh: one row per workload and server, medians over the rounds,
    ratios to the strongest peer (the peer with the highest median req/s on that workload)."""
    runs = {}   # (workload, server) -> [(wrk, server ticks, aux ticks)], one per round
    roles = {}
    order = []
    with open(args.manifest) as f:
        for line in f:
            line = line.rstrip("\n")
            if not line:
                continue
            workload, server, role, _round, path, sticks, aticks = line.split("\t")
            with open(path) as wf:
                wrk = parse_wrk(wf.read())
            if (workload, server) not in runs:
                runs[(workload, server)] = []
                order.append((workload, server))
            runs[(workload, server)].append((wrk, int(sticks), int(aticks)))
            roles[server] = role

    stats = {}
    notes = []
    for key in order:
        rounds = runs[key]
        errs = 0
        for rnd, (wrk, _, _) in enumerate(rounds, 1):
            e = wrk["socket_errors_total"] + wrk["non_2xx_3xx"]
            errs += e
            tag = f"{key[0]}, {key[1]}" + (f", round {rnd}" if len(rounds) > 1 else "")
            if wrk["requests"] is None:
                notes.append(f"{tag}: wrk printed no result (see the raw wrk output)")
            if e:
                se = wrk["socket_errors"]
                notes.append(f"{tag}: socket errors connect {se['connect']}, read {se['read']}, "
                             f"write {se['write']}, timeout {se['timeout']}; non-2xx/3xx {wrk['non_2xx_3xx']}")
        stats[key] = {
            "rps": median([w["rps"] for w, _, _ in rounds]),
            "p50": median([w["latency_s"].get("50") for w, _, _ in rounds]),
            "p99": median([w["latency_s"].get("99") for w, _, _ in rounds]),
            "cpu": median([per_request_us(t, args.clk_tck, w["requests"]) for w, t, _ in rounds]),
            "aux": median([per_request_us(a, args.clk_tck, w["requests"]) for w, _, a in rounds]),
            "bytes": median([w["bytes_read"] / w["requests"] if w["bytes_read"] and w["requests"] else None
                             for w, _, _ in rounds]),
            "errors": errs,
        }

    # rows by workload, then servers in the suite's order (not the alternating order they ran in)
    workloads = list(dict.fromkeys(w for w, _ in order))
    servers = list(dict.fromkeys(s for _, s in order))
    order.sort(key=lambda k: (workloads.index(k[0]), servers.index(k[1])))

    best = {}   # workload -> the strongest peer's stats
    for (workload, server), st in stats.items():
        if roles[server] == "peer" and st["rps"] and (workload not in best or st["rps"] > best[workload]["rps"]):
            best[workload] = st

    aux_head, aux_rule = (f" {args.aux_name} µs CPU/req |", "--:|") if args.aux_name else ("", "")
    if args.bytes:
        aux_head, aux_rule = aux_head + " B/resp |", aux_rule + "--:|"
    print(f"| workload | server | req/s | × peer | p50 | p99 | µs CPU/req | CPU ÷ peer |{aux_head} errors |")
    print("|---|---|--:|--:|--:|--:|--:|--:|" + aux_rule + "--:|")
    for key in order:
        st, peer = stats[key], best.get(key[0], {})
        aux = f" {fmt_cpu(st['aux'])} |" if args.aux_name else ""
        if args.bytes:
            aux += " n/a |" if st["bytes"] is None else f" {st['bytes']:,.0f} |"
        print(f"| {key[0]} | {key[1]} | {fmt_rps(st['rps'])} | {ratio(st['rps'], peer.get('rps'))} "
              f"| {fmt_time(st['p50'])} | {fmt_time(st['p99'])} | {fmt_cpu(st['cpu'])} "
              f"| {ratio(st['cpu'], peer.get('cpu'))} |{aux} {st['errors']} |")
    if notes:
        print()
        for n in notes:
            print(f"- {n}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("parse")
    p.add_argument("file")
    t = sub.add_parser("suite")
    t.add_argument("--clk-tck", type=int, required=True)
    t.add_argument("--aux-name", help="the helper process (database) whose CPU per request is a column")
    t.add_argument("--bytes", action="store_true", help="a B/resp column: bytes wrk read per response")
    t.add_argument("manifest")
    args = ap.parse_args()
    if args.cmd == "parse":
        with open(args.file) as f:
            json.dump(parse_wrk(f.read()), sys.stdout, indent=1)
        print()
    else:
        suite(args)


if __name__ == "__main__":
    main()
