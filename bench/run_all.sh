#!/usr/bin/env bash
# Runs `jigsaw-lab bench` and bench/torch_reference.py one after the other on this machine
# with the same options and appends every record of both to bench/results.json (a JSON
# list, one record per line), so the two can be compared side by side.
#
#   bench/run_all.sh --models minilm --shapes 64x32 --warmup 2 --windows 3 --steps-per-window 2
#   JIGSAW_DEVICE=gpu bench/run_all.sh                      # the defaults, on a GPU
#
# Options are those of `jigsaw-lab bench` (--models, --shapes, --warmup, --windows,
# --steps-per-window, --seed, --precisions); torch_reference.py accepts the same ones, and
# gets --precisions as its --dtypes (fp32, tf32, bf16, f16). Environment:
#   JIGSAW_DEVICE   auto (default), gpu or cpu, for both: torch uses CUDA unless it is cpu
#   JIGSAW_BIN      the jigsaw-lab binary (default $CARGO_TARGET_DIR/release/jigsaw-lab)
#   JIGSAW_VENV     the Python venv with torch + transformers (bench/setup_python.sh)
#   TORCH_ARGS      extra options for torch_reference.py only, e.g. "--dtypes fp32"
#   RESULTS         where to append (default bench/results.json)
# Build first: make run, make test, or (as they do)
#   cargo build --release --workspace --exclude frontend
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here/.."
source scripts/env.sh
bin="${JIGSAW_BIN:-$CARGO_TARGET_DIR/release/jigsaw-lab}"
venv="${JIGSAW_VENV:-/var/cache/jigsaw-lab/venv}"
results="${RESULTS:-$here/results.json}"
device="${JIGSAW_DEVICE:-auto}"
torch_device=auto
[ "$device" = cpu ] && torch_device=cpu
[ -x "$bin" ] || { echo "run_all: no jigsaw-lab binary at $bin; build it first" >&2; exit 2; }
[ -x "$venv/bin/python" ] || { echo "run_all: no Python venv at $venv; run bench/setup_python.sh" >&2; exit 2; }

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
status=0

echo "==> burn: JIGSAW_DEVICE=$device $bin bench $*" >&2
JIGSAW_DEVICE="$device" "$bin" bench "$@" >"$tmp/burn.jsonl" || status=$?

# torch_reference.py names the precisions `--dtypes`; TORCH_ARGS, given last, still wins.
torch_args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --precisions) torch_args+=(--dtypes "${2:-}"); shift $(($# > 1 ? 2 : 1)) ;;
    --precisions=*) torch_args+=("--dtypes=${1#--precisions=}"); shift ;;
    *) torch_args+=("$1"); shift ;;
  esac
done
echo "==> torch: torch_reference.py --device $torch_device ${torch_args[*]} ${TORCH_ARGS:-}" >&2
# shellcheck disable=SC2086  # TORCH_ARGS is split on purpose
"$venv/bin/python" "$here/torch_reference.py" --device "$torch_device" "${torch_args[@]}" ${TORCH_ARGS:-} \
  >"$tmp/torch.jsonl" || status=$?

"$venv/bin/python" - "$results" "$tmp/burn.jsonl" "$tmp/torch.jsonl" <<'PY'
import json, os, sys
path, *inputs = sys.argv[1:]
records = []
if os.path.exists(path) and os.path.getsize(path) > 0:
    with open(path) as f:
        records = json.load(f)
    if not isinstance(records, list):
        sys.exit(f"run_all: {path} is not a JSON list")
new = []
for name in inputs:
    with open(name) as f:
        new += [json.loads(line) for line in f if line.strip()]
records += new
tmp = path + ".tmp"
with open(tmp, "w") as f:
    f.write("[\n" + ",\n".join(json.dumps(r) for r in records) + "\n]\n")
os.replace(tmp, path)

print(f"\n{len(new)} records appended to {path}", file=sys.stderr)
burn = {(r["model"], r["seq"], r["batch"]): r for r in new if r["impl"].startswith("burn")}
for r in new:
    b = burn.get((r["model"], r["seq"], r["batch"]))
    if r["impl"] == "torch" and b:
        print(f"  {r['model']} {r['seq']}x{r['batch']}: burn {b['dtype']} {b['step_ms_median']:.1f} ms/step, "
              f"torch {r['dtype']} {r['step_ms_median']:.1f} ms/step: burn/torch step time "
              f"{b['step_ms_median'] / r['step_ms_median']:.2f}x", file=sys.stderr)
PY
exit "$status"
