#!/usr/bin/env bash
# bench/compress_counts.sh: what gzip and Brotli cost at the default levels (1 and 1) on a set of
# bodies, in instructions per body counted by callgrind (bench/compress_micro.c --count), so the figure
# does not move with whatever else the machine runs; and the bytes each coder gives. What
# compression.prefer's default, the order on equal q, is chosen from (docs/compression.md).
#
#   bench/compress_counts.sh [FILE...]
#
# Without files it codes its own set, made in a temporary directory: JSON of about 1 KiB, 8 KiB (the
# arena's json-comp answer, /json/50?m=6, from examples/arena/make_data.py's dataset), 9 KiB
# (bench/data/jsoncomp.json), 16 KiB (bench/data/doc16k.json) and 100 KiB (make_jsoncomp.py 550); HTML
# (Debian's python-policy.html and zlib's zlib_how.html when installed, the arena's synthetic
# header.html) and Markdown (docs/async.md). Needs valgrind, gcc, libdeflate-dev, libbrotli-dev.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bin=$tmp/compress_micro
gcc -O2 -g -D_GNU_SOURCE -I"$root/lib/http" -I"$root/lib/base" -I"$root/include/apiary" \
    "$root/bench/compress_micro.c" "$root/lib/http/http_compress.c" "$root/lib/base/xalloc.c" \
    "$root/lib/base/log.c" -ldeflate -lbrotlienc -lpthread -o "$bin"

# The default set of bodies, into $tmp/bodies.
make_bodies() {
    local b=$tmp/bodies
    mkdir -p "$b"
    python3 "$root/bench/make_jsoncomp.py" 6 >"$b/items6.json"
    python3 "$root/examples/arena/make_data.py" "$tmp/arena" --rows 10 >/dev/null 2>&1
    python3 - "$tmp/arena/dataset.json" >"$b/arena_json50.json" <<'EOF'
import json, sys
items = [dict(it, total=it["price"] * it["quantity"] * 6) for it in json.load(open(sys.argv[1]))[:50]]
sys.stdout.write(json.dumps({"items": items, "count": len(items)}, separators=(",", ":")))
EOF
    cp "$root/bench/data/jsoncomp.json" "$root/bench/data/doc16k.json" "$b/"
    python3 "$root/bench/make_jsoncomp.py" 550 >"$b/items550.json"
    for f in /usr/share/doc/zlib1g-dev/examples/zlib_how.html /usr/share/doc/python3/python-policy.html; do
        [[ -f $f ]] && cp "$f" "$b/"
    done
    cp "$tmp/arena/static/header.html" "$b/arena_header.html"
    cp "$root/docs/async.md" "$b/"
    local f
    for f in items6.json arena_json50.json jsoncomp.json doc16k.json items550.json zlib_how.html \
        python-policy.html arena_header.html async.md; do
        [[ -f $b/$f ]] && echo "$b/$f"
    done
    return 0
}

# Instructions per body and the coded size: "IR BYTES".
count() {
    local coder=$1 file=$2 n=10 out
    out=$(valgrind --tool=callgrind --toggle-collect=counted --callgrind-out-file="$tmp/cg.out" \
        "$bin" --count "$coder" 1 "$file" "$n" 2>"$tmp/vg.err")
    local ir
    ir=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$tmp/vg.err")
    echo "$((ir / n)) $(echo "$out" | sed -n 's/.* -> \([0-9]*\) .*/\1/p')"
}

if (($#)); then files=("$@"); else mapfile -t files < <(make_bodies); fi
echo "| body | bytes | gzip 1 bytes | gzip 1 instructions | br 1 bytes | br 1 instructions | br ÷ gzip instructions | br ÷ gzip bytes |"
echo "|---|--:|--:|--:|--:|--:|--:|--:|"
for f in "${files[@]}"; do
    read -r gz_ir gz_n < <(count gzip "$f")
    read -r br_ir br_n < <(count br "$f")
    awk -v name="$(basename "$f")" -v len="$(stat -c %s "$f")" -v gi="$gz_ir" -v gn="$gz_n" -v bi="$br_ir" \
        -v bn="$br_n" 'BEGIN { printf "| %s | %d | %d | %d | %d | %d | %.2f | %.3f |\n", name, len, gn, gi, bn, bi,
                               bi / gi, bn / gn }'
done
