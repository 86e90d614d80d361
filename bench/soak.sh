#!/usr/bin/env bash
# Load and soak: starts the release server on a fresh data directory (the real default
# model and SST-2), creates the instructor "soak", and runs server/examples/soak.rs against
# it: STUDENTS students (default 300) for MINUTES minutes (default 10) while one run trains.
# Prints p50/p99 per request kind, errors and the server's memory every minute, and writes
# the same as JSON to OUT (default bench/soak-<date>.json).
#
#   bench/soak.sh                        # 300 students, 10 minutes
#   STUDENTS=50 MINUTES=1 bench/soak.sh  # a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
students=${STUDENTS:-300}
minutes=${MINUTES:-10}
out=${OUT:-bench/soak-$(date -u +%Y%m%d-%H%M).json}
cargo build --release -p server --bin jigsaw-lab --example soak
data=$(mktemp -d)
trap 'kill "$server" 2>/dev/null; rm -rf "$data"' EXIT
export JIGSAW_DATA_DIR="$data" JIGSAW_BIND=127.0.0.1:0 RUST_LOG=warn
JIGSAW_INSTRUCTOR_PASSWORD=soak-password "$CARGO_TARGET_DIR/release/jigsaw-lab" instructor add soak
"$CARGO_TARGET_DIR/release/jigsaw-lab" serve > "$data/server.log" 2>&1 &
server=$!
for _ in $(seq 1 120); do
  base=$(sed -n 's/^Jigsaw Lab listening on //p' "$data/server.log")
  [ -n "$base" ] && break
  sleep 0.5
done
[ -n "${base:-}" ] || { cat "$data/server.log"; echo "the server did not start" >&2; exit 1; }
echo "server $server at $base; $students students for $minutes min"
"$CARGO_TARGET_DIR/release/examples/soak" --base "$base" --password soak-password \
  --students "$students" --minutes "$minutes" --server-pid "$server" --out "$out"
grep -c " ERROR " "$data/server.log" | sed 's/^/server log errors: /' || true
