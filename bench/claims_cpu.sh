#!/usr/bin/env bash
# Tests the lessons' four claims as a class would, on this machine: starts the server on a
# fresh SQLite database with the real default model and SST-2, signs in an instructor,
# creates a class, presses each claim's "Test this claim" (the server sizes the runs to the
# training node's device: subsets on a CPU), waits until every run has ended and prints
# each claim's verdict with its numbers, as the lessons show them. Writes the claims' views
# (JSON) to OUT (default bench/claims-<date>.json).
#
#   bench/claims_cpu.sh          # about 20 minutes on a 2-core CPU
#
# Needs the release binary (`make run` or `cargo build --release -p server --bin jigsaw-lab`)
# and JIGSAW_SST2_DIR (default ../shared/data/sst2).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
out=${OUT:-bench/claims-$(date -u +%Y%m%d-%H%M).json}
export JIGSAW_SST2_DIR="${JIGSAW_SST2_DIR:-$PWD/../shared/data/sst2}"
data=$(mktemp -d)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
export JIGSAW_DATA_DIR="$data" JIGSAW_BIND=127.0.0.1:0 JIGSAW_DEVICE=${JIGSAW_DEVICE:-cpu} RUST_LOG=warn
unset DATABASE_URL
JIGSAW_INSTRUCTOR_PASSWORD=claims-password "$CARGO_TARGET_DIR/release/jigsaw-lab" instructor add claims
"$CARGO_TARGET_DIR/release/jigsaw-lab" serve > "$data/server.log" 2>&1 &
server=$!
base=""
for _ in $(seq 1 120); do
  base=$(sed -n 's/^Jigsaw Lab listening on //p' "$data/server.log")
  [ -n "$base" ] && break
  sleep 0.5
done
[ -n "$base" ] || { cat "$data/server.log"; echo "the server did not start" >&2; exit 1; }
jar="$data/cookies"
call() { curl -sS --fail-with-body -b "$jar" -c "$jar" -X POST "$base/api/$1" --data "$2"; }
call sign-in "username=claims&password=claims-password" > /dev/null
class=$(call create-class "name=Claims" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
sleep 3 # the training node declares itself
# The default model (an empty model name), as the class page's panel opens on.
for slug in lora-keeps-accuracy high-learning-rate-fails small-subset-overfits two-epochs-enough; do
  runs=$(call queue-claim "class_id=$class&slug=$slug&model=")
  echo "queued $slug: runs $runs"
done
start=$(date +%s)
while call class-claims "class_id=$class&model=" > "$data/tests.json" \
  && python3 -c 'import json,sys; json.dump(json.load(open(sys.argv[1]))["claims"], open(sys.argv[2], "w"))' \
    "$data/tests.json" "$data/claims.json" \
  && python3 -c 'import json,sys; c=json.load(open(sys.argv[1])); sys.exit(0 if any(a["run"] and a["run"]["status"] in ("queued","running") for x in c for a in x["arms"]) else 1)' "$data/claims.json"; do
  sleep 20
done
echo "all runs ended after $(( $(date +%s) - start )) s"
cp "$data/claims.json" "$out"
python3 - "$out" <<'EOF'
import json, sys
for claim in json.load(open(sys.argv[1])):
    print(f"\n{claim['title']}: {claim['finding']['verdict']}")
    print(f"  {claim['finding']['text']}")
    for arm in claim["arms"]:
        run = arm["run"]
        acc = run["validation_accuracy"]
        print(f"  run #{run['id']} {arm['label']}: {run['status']}, best validation "
              f"{'-' if acc is None else f'{100 * acc:.1f}%'} ({arm['settings']})")
EOF
grep -c " ERROR " "$data/server.log" | sed 's/^/server log errors: /' || true
