#!/usr/bin/env python3
"""make_data.py: the data an HttpArena entry is run against, made locally with the same shapes as the
arena's own files (which are not copied here):

  dataset.json     50 items {id, name, category, price, quantity, active, tags, rating{score, count}},
                   10 categories of 5, integer prices and quantities (the json profiles)
  static/          the 20 files the static profile asks for, at about the arena's sizes, with .br
                   (quality 11) and .gz (level 9) siblings for the 15 text files
  pgdb-seed.sql    the items table (id, name, category, price, quantity, active, tags JSONB,
                   rating_score, rating_count), 100,000 rows, no index on price (async-db, crud)

Usage: make_data.py OUTDIR [--rows N] [--seed S]. Deterministic for a given seed. Needs python3-brotli
for the .br files (without it they are left out and the run says so)."""

import argparse
import gzip
import json
import os
import random
import sys

CATEGORIES = ["electronics", "tools", "books", "clothing", "sports", "toys", "home", "garden", "office", "auto"]
ADJECTIVES = ["Swift", "Quiet", "Bright", "Solid", "Nimble", "Grand", "Tiny", "Bold", "Clever", "Rapid",
              "Steady", "Sharp", "Lucky", "Prime", "Urban"]
NOUNS = ["Lamp", "Gear", "Kettle", "Board", "Clamp", "Drone", "Pulley", "Lens", "Crate", "Spindle",
         "Beacon", "Ladder", "Socket", "Panel", "Valve"]
TAGS = ["new", "sale", "eco", "fast", "wireless", "durable", "compact", "premium", "classic", "limited"]

# name -> (size in bytes, kind): sizes about the arena's (~842 KB in all)
STATIC_FILES = {
    "reset.css": (8192, "css"), "layout.css": (25600, "css"), "theme.css": (18432, "css"),
    "components.css": (204800, "css"), "utilities.css": (61440, "css"),
    "analytics.js": (12288, "js"), "helpers.js": (22528, "js"), "app.js": (204800, "js"),
    "vendor.js": (307200, "js"), "router.js": (35840, "js"),
    "header.html": (122880, "html"), "footer.html": (56320, "html"),
    "regular.woff2": (18432, "woff2"), "bold.woff2": (22528, "woff2"),
    "logo.svg": (15344, "svg"), "icon-sprite.svg": (71680, "svg"),
    "hero.webp": (46080, "webp"), "thumb1.webp": (8192, "webp"), "thumb2.webp": (6144, "webp"),
    "manifest.json": (2883, "json"),
}
BINARY_KINDS = {"woff2", "webp"}


def make_dataset(rng):
    items = []
    for i in range(1, 51):
        items.append({
            "id": i,
            "name": f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}",
            "category": CATEGORIES[(i - 1) % len(CATEGORIES)],
            "price": rng.randint(1, 500),
            "quantity": rng.randint(1, 100),
            "active": rng.random() < 0.8,
            "tags": rng.sample(TAGS, rng.randint(1, 4)),
            "rating": {"score": rng.randint(1, 50), "count": rng.randint(1, 500)},
        })
    return items


def text_unit(kind, rng, n):
    """One line of plausible, compressible text of a kind (repetitive like real assets, not constant)."""
    w = rng.choice(NOUNS).lower()
    if kind == "css":
        return f".{w}-{n} {{ margin: {n % 17}px; color: #{rng.randrange(0x1000000):06x}; display: flex; }}\n"
    if kind == "js":
        return f"function {w}{n}(a, b) {{ return a * {n % 97} + b - {rng.randint(0, 999)}; }}\n"
    if kind == "html":
        return f'<div class="{w} row-{n % 13}"><a href="/{w}/{n}">{rng.choice(ADJECTIVES)} {w}</a></div>\n'
    if kind == "svg":
        return (f'<path id="{w}{n}" d="M{rng.randint(0, 99)} {rng.randint(0, 99)}L{rng.randint(0, 99)} '
                f'{rng.randint(0, 99)}Z" fill="#{rng.randrange(0x1000000):06x}"/>\n')
    raise ValueError(kind)


def make_static_file(kind, size, rng):
    if kind in BINARY_KINDS:
        magic = b"wOF2" if kind == "woff2" else b"RIFF" + size.to_bytes(4, "little") + b"WEBPVP8 "
        return (magic + rng.randbytes(size))[:size]
    if kind == "json":
        doc = {"name": "Arena Shop", "short_name": "Arena", "start_url": "/", "display": "standalone",
               "icons": []}
        while len(json.dumps(doc, indent=2)) < size:
            n = len(doc["icons"])
            doc["icons"].append({"src": f"/static/icon-{n}.png", "sizes": f"{16 * (n + 1)}x{16 * (n + 1)}",
                                 "type": "image/png"})
        return _fit_json(doc, size)
    head = {"svg": '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100">\n',
            "html": "<!doctype html>\n<section>\n"}.get(kind, "")
    tail = {"svg": "</svg>\n", "html": "</section>\n"}.get(kind, "")
    out, n = [head], 0
    length = len(head) + len(tail)
    while length < size:
        line = text_unit(kind, rng, n)
        out.append(line)
        length += len(line)
        n += 1
    body = "".join(out)
    body = body[:size - len(tail)] + tail
    return body.encode()


def _fit_json(doc, size):
    """The manifest as valid JSON of exactly `size` bytes (padded with a description)."""
    base = json.dumps(dict(doc, icons=doc["icons"][:-1], description=""), indent=2).encode()
    pad = size - len(base)
    if pad < 0:
        raise ValueError("manifest too small for its icons")
    return json.dumps(dict(doc, icons=doc["icons"][:-1], description="x" * pad), indent=2).encode()


def write_static(outdir, rng):
    try:
        import brotli
    except ImportError:
        brotli = None
        print("make_data: python3-brotli is not installed: no .br files", file=sys.stderr)
    d = os.path.join(outdir, "static")
    os.makedirs(d, exist_ok=True)
    for name, (size, kind) in STATIC_FILES.items():
        data = make_static_file(kind, size, rng)
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)
        if kind in BINARY_KINDS:
            continue
        with open(os.path.join(d, name + ".gz"), "wb") as f:
            f.write(gzip.compress(data, compresslevel=9, mtime=0))
        if brotli:
            with open(os.path.join(d, name + ".br"), "wb") as f:
                f.write(brotli.compress(data, quality=11))


def write_seed(path, rows, dataset, rng):
    names = sorted({it["name"] for it in dataset})
    with open(path, "w") as f:
        f.write("-- the items table of the async-db and crud profiles (examples/arena/make_data.py)\n"
                "CREATE TABLE items (\n"
                "    id INTEGER PRIMARY KEY,\n"
                "    name TEXT NOT NULL,\n"
                "    category TEXT NOT NULL,\n"
                "    price INTEGER NOT NULL,\n"
                "    quantity INTEGER NOT NULL,\n"
                "    active BOOLEAN NOT NULL,\n"
                "    tags JSONB NOT NULL,\n"
                "    rating_score INTEGER NOT NULL,\n"
                "    rating_count INTEGER NOT NULL\n"
                ");\n"
                "-- no index on price: the range query scans, as the profile intends\n"
                "COPY items (id, name, category, price, quantity, active, tags, rating_score, rating_count) FROM STDIN;\n")
        for i in range(1, rows + 1):
            tags = json.dumps(rng.sample(TAGS, rng.randint(1, 4)))
            f.write(f"{i}\t{rng.choice(names)} {i}\t{rng.choice(CATEGORIES)}\t{rng.randint(1, 500)}\t"
                    f"{rng.randint(1, 1000)}\t{'t' if rng.random() < 0.5 else 'f'}\t{tags}\t"
                    f"{rng.randint(1, 50)}\t{rng.randint(1, 500)}\n")
        f.write("\\.\nANALYZE items;\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    os.makedirs(args.outdir, exist_ok=True)
    dataset = make_dataset(rng)
    with open(os.path.join(args.outdir, "dataset.json"), "w") as f:
        json.dump(dataset, f, indent=2)
        f.write("\n")
    write_static(args.outdir, rng)
    write_seed(os.path.join(args.outdir, "pgdb-seed.sql"), args.rows, dataset, rng)


if __name__ == "__main__":
    main()
