#!/usr/bin/env bash
# bench/pubsub.sh: pub/sub broadcast latency (issue 24, part 5): one message to SUBS (10,000) SSE
# subscribers across THREADS (2) loops, time until the last receives it, p50/p99 over ROUNDS (30)
# messages. The work is bench/pubsub_broadcast.py; the client reads every subscriber from one Python
# process on the same machine, so the figure is an upper bound and noisy on a shared machine.
#
# Environment: APIARY_BIN (default build-release/apiary, else build/apiary), SUBS, ROUNDS, THREADS,
# TRANSPORT (sse, default, or ws: WebSocket subscribers through GET /v1/topics/bench/ws), OUT (also
# write the summary there).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/.." && pwd)"
BIN="${APIARY_BIN:-}"
if [[ -z "$BIN" ]]; then
    if [[ -x "$ROOT/build-release/apiary" ]]; then BIN="$ROOT/build-release/apiary"; else BIN="$ROOT/build/apiary"; fi
fi
[[ -x "$BIN" ]] || { echo "no apiary binary at $BIN (set APIARY_BIN)" >&2; exit 1; }
SUBS="${SUBS:-10000}"
ROUNDS="${ROUNDS:-30}"
THREADS="${THREADS:-2}"
# 10,000 client sockets here and 10,000 in the server: raise the soft limit as far as allowed.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true

out="$(python3 "$HERE/pubsub_broadcast.py" "$BIN" --subs "$SUBS" --rounds "$ROUNDS" --threads "$THREADS" --transport "${TRANSPORT:-sse}")"
summary="$(printf '## pubsub broadcast (%s)\n\nbinary: %s\n%s\n' "$(date -u +%FT%TZ)" "$BIN" "$out")"
echo "$summary"
if [[ -n "${OUT:-}" ]]; then echo "$summary" >"$OUT"; fi
