#!/usr/bin/python3
"""bench/static_syscalls.py: helpers of bench/static.sh (stdlib + python3-brotli).

  static_syscalls.py check BASE_URL STATIC_DIR
      GETs reset.css and app.js with Accept-Encoding: br;q=1, gzip;q=0.8 and prints what came back
      (Content-Encoding, Content-Type, bytes sent); fails (exit 1) when a body does not decode to the
      file on disk.
  static_syscalls.py count BASE_URL PID --label L [--coding br|gzip|none] [--requests N] [--tmp DIR]
      System calls per request: `strace -c -f -p PID` counts every call of the server while N requests
      go one after another on one keep-alive connection, round-robin over the 20 files (after a warm-up
      of 200 uncounted); prints a markdown line: calls per request, and the commonest calls per request.
      strace slows the server, not what it calls, so the counts hold on a loaded machine.
"""
import argparse
import gzip
import http.client
import os
import re
import signal
import subprocess
import sys
import time
import urllib.parse

FILES = ["reset.css", "layout.css", "theme.css", "components.css", "utilities.css", "analytics.js", "helpers.js",
         "app.js", "vendor.js", "router.js", "header.html", "footer.html", "regular.woff2", "bold.woff2", "logo.svg",
         "icon-sprite.svg", "hero.webp", "thumb1.webp", "thumb2.webp", "manifest.json"]
CODINGS = {"br": "br;q=1, gzip;q=0.8", "gzip": "gzip", "none": None}


def connect(base):
    u = urllib.parse.urlsplit(base)
    return http.client.HTTPConnection(u.hostname, u.port, timeout=60)


def get(conn, name, coding):
    headers = {"Accept-Encoding": CODINGS[coding]} if CODINGS[coding] else {}
    if not headers:
        conn.putrequest("GET", "/static/" + name, skip_accept_encoding=True)
        conn.endheaders()
    else:
        conn.request("GET", "/static/" + name, headers=headers)
    r = conn.getresponse()
    body = r.read()
    if r.status != 200:
        raise SystemExit(f"/static/{name}: status {r.status}")
    return r, body


def check(base, static_dir):
    import brotli
    conn = connect(base)
    out = []
    for name in ("reset.css", "app.js"):
        r, body = get(conn, name, "br")
        enc = r.getheader("Content-Encoding") or "identity"
        plain = brotli.decompress(body) if enc == "br" else gzip.decompress(body) if enc == "gzip" else body
        with open(os.path.join(static_dir, name), "rb") as f:
            if plain != f.read():
                print(f"/static/{name} ({enc}) does not decode to the file on disk")
                sys.exit(1)
        out.append(f"{name} → {enc}, {len(body)} B, {r.getheader('Content-Type')}")
    print("; ".join(out))


def count(args):
    conn = connect(args.base)
    for i in range(200):
        get(conn, FILES[i % len(FILES)], args.coding)
    out = os.path.join(args.tmp, f"strace.{args.pid}.{args.coding}.txt")
    st = subprocess.Popen(["strace", "-c", "-f", "-p", str(args.pid), "-o", out],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 10
    while time.time() < deadline:  # attached once the server says it is traced
        with open(f"/proc/{args.pid}/status") as f:
            if re.search(r"^TracerPid:\s*[1-9]", f.read(), re.M):
                break
        time.sleep(0.05)
    time.sleep(0.2)
    for i in range(args.requests):
        get(conn, FILES[i % len(FILES)], args.coding)
    time.sleep(0.2)
    st.send_signal(signal.SIGINT)
    st.wait(timeout=30)
    conn.close()
    calls = {}
    with open(out) as f:
        for line in f:
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(\w+)\s*$", line)
            if m and m.group(2) != "total":
                calls[m.group(2)] = int(m.group(1))
    n = args.requests
    total = sum(calls.values())
    top = sorted(calls.items(), key=lambda kv: -kv[1])
    detail = ", ".join(f"{name} {c / n:.2f}" for name, c in top if c / n >= 0.01)
    print(f"- **{args.label}**, {args.coding}: **{total / n:.2f}** calls per request ({detail})")


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("base")
    c.add_argument("static_dir")
    n = sub.add_parser("count")
    n.add_argument("base")
    n.add_argument("pid", type=int)
    n.add_argument("--label", required=True)
    n.add_argument("--coding", default="br", choices=CODINGS)
    n.add_argument("--requests", type=int, default=2000)
    n.add_argument("--tmp", default="/tmp")
    a = p.parse_args()
    if a.cmd == "check":
        check(a.base, a.static_dir)
    else:
        count(a)


if __name__ == "__main__":
    main()
