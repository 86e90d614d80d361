#!/usr/bin/env bash
# SSE fan-out across two web nodes: creates a fresh PostgreSQL database, starts two web-only
# nodes on it (JIGSAW_TRAINING_SLOTS=0, the default model, no training), creates the
# instructor "fanout", and runs server/examples/fanout.rs, which opens RUN_PAGES run pages
# and CLASS_PAGES class pages (default 500 each, half on each node) and stores run events
# as a worker node does. Prints events/s delivered, the insert-to-page delay (p50, p99),
# lost and repeated events and memory per open stream, and writes them to OUT (default
# bench/fanout-<date>.json).
#
#   bench/fanout.sh                               # 500 + 500 streams
#   RUN_PAGES=50 CLASS_PAGES=50 bench/fanout.sh   # a quick look
# Needs PostgreSQL (FANOUT_POSTGRES, default postgres://postgres@127.0.0.1:5432).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
run_pages=${RUN_PAGES:-500}
class_pages=${CLASS_PAGES:-500}
events=${EVENTS:-40}
rate=${RATE:-50}
postgres=${FANOUT_POSTGRES:-postgres://postgres@127.0.0.1:5432}
out=${OUT:-bench/fanout-$(date -u +%Y%m%d-%H%M).json}
cargo build --release -p server --bin jigsaw-lab --example fanout
database="jigsaw_fanout_$$"
psql "$postgres/postgres" -q -c "CREATE DATABASE $database"
data=$(mktemp -d)
nodes=()
cleanup() {
  for pid in "${nodes[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql "$postgres/postgres" -q -c "DROP DATABASE IF EXISTS $database WITH (FORCE)" || true
  rm -rf "$data"
}
trap cleanup EXIT
# Each node may hold its share of the streams and a few more files.
ulimit -n 4096 || true
export DATABASE_URL="$postgres/$database" JIGSAW_TRAINING_SLOTS=0 JIGSAW_BIND=127.0.0.1:0 RUST_LOG=warn
export JIGSAW_DATA_DIR="$data" JIGSAW_MODELS_DIR="${JIGSAW_MODELS_DIR}"
JIGSAW_INSTRUCTOR_PASSWORD=fanout-password "$CARGO_TARGET_DIR/release/jigsaw-lab" instructor add fanout
bases=()
for node in a b; do
  "$CARGO_TARGET_DIR/release/jigsaw-lab" serve > "$data/$node.log" 2>&1 &
  nodes+=($!)
  base=""
  for _ in $(seq 1 120); do
    base=$(sed -n 's/^Jigsaw Lab listening on //p' "$data/$node.log")
    [ -n "$base" ] && break
    sleep 0.5
  done
  [ -n "$base" ] || { cat "$data/$node.log"; echo "node $node did not start" >&2; exit 1; }
  bases+=("$base")
done
echo "web nodes ${nodes[*]} at ${bases[*]}; $run_pages run pages + $class_pages class pages"
"$CARGO_TARGET_DIR/release/examples/fanout" --node-a "${bases[0]}" --node-b "${bases[1]}" \
  --database "$DATABASE_URL" --password fanout-password --run-pages "$run_pages" \
  --class-pages "$class_pages" --events "$events" --rate "$rate" \
  --pid-a "${nodes[0]}" --pid-b "${nodes[1]}" --out "$out"
for node in a b; do
  grep -c " ERROR " "$data/$node.log" | sed "s/^/node $node log errors: /" || true
done
