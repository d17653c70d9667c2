#!/usr/bin/python3
"""bench/arena_jsoncomp.py: what a server sends for HttpArena's json-comp requests (bench/arena.sh's
json-comp suite checks every server with it before measuring). Stdlib + python3-brotli.

  arena_jsoncomp.py BASE_URL REFERENCE_DIR [--accept 'gzip, br']

GETs /json/25?m=4, /json/40?m=8 and /json/50?m=6 with the given Accept-Encoding, decodes each answer by
its Content-Encoding and compares the JSON with REFERENCE_DIR/25, /40, /50 (the entry's identity
answers; compared as JSON, so key order and spacing may differ). Prints one line: the coding and the
body's size per request; exits 1 when an answer is not 200 or does not decode to the reference.
"""
import argparse
import gzip
import http.client
import json
import os
import sys
import urllib.parse
import zlib

PAIRS = ((25, 4), (40, 8), (50, 6))


def decode(enc, body):
    if enc == "br":
        import brotli
        return brotli.decompress(body)
    if enc == "gzip":
        return gzip.decompress(body)
    if enc == "deflate":
        return zlib.decompress(body)
    return body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("reference_dir")
    ap.add_argument("--accept", default="gzip, br")
    args = ap.parse_args()
    u = urllib.parse.urlsplit(args.base)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    out = []
    for count, m in PAIRS:
        conn.request("GET", f"/json/{count}?m={m}", headers={"Accept-Encoding": args.accept})
        r = conn.getresponse()
        body = r.read()
        enc = r.getheader("Content-Encoding") or "identity"
        if r.status != 200:
            sys.exit(f"/json/{count}?m={m}: status {r.status}")
        with open(os.path.join(args.reference_dir, str(count)), "rb") as f:
            want = json.load(f)
        if json.loads(decode(enc, body)) != want:
            sys.exit(f"/json/{count}?m={m} ({enc}) does not decode to the reference answer")
        out.append(f"{count} → {enc} {len(body):,} B of {len(json.dumps(want, separators=(',', ':'))):,}")
    print("; ".join(out))


if __name__ == "__main__":
    main()
