#!/usr/bin/env bash
# Calls on a lent GPU machine (the workplace's `device` tool), each right after the one
# before so that the machine is still warm: the default model, then the burn bench (both
# AdamW implementations), the PyTorch reference and the persisted GPU cache, then SST-2
# accuracy runs (full and LoRA, side by side).
#
#   bench/gpu_session.sh pack         here: build .devicecarry-model/ (the default model) and
#                                     .devicecarry/ (the binary, SST-2) for the calls to carry,
#                                     next to the Vulkan loaders in .gl/
#   bench/gpu_session.sh stage-model  there, call 1 (carry .devicecarry-model): unpack the model
#   bench/gpu_session.sh run          there, call 2 (carry .devicecarry and .gl), with $OUT set:
#                                     the benches, then (if RUNS is set and BUDGET_S leaves time) the sweep
#   bench/gpu_session.sh sweep        there, call 3 (same carry), with $OUT set: the accuracy
#                                     runs only
#
# A call carries at most 64 MiB, so the model goes first and alone, its fp32 weights as f16
# (bench/gpu_model_transfer.py; widened back to fp32 on arrival), and the binary travels
# xz-compressed. Without the model, `run` skips the accuracy runs. Everything `run` prints
# goes to $OUT/session.log; records go to $OUT/*.jsonl. Overrides for a smoke test on any
# Vulkan device: BENCH_ARGS, OPTIMIZERS (per-tensor,flat), PRECISIONS (the matrix products'
# formats the flat AdamW bench measures; default fp32,bf16,f16), TORCH_ARGS, TRAIN_ARGS, RUNS (see
# `settings` below; default full-5e-5,full-1e-4,lora-r16), BUDGET_S. Experiments, off unless
# set: MAX_TASKS (comma-separated CUBECL_WGPU_MAX_TASKS values to bench again with, using
# TASKS_BENCH_ARGS or BENCH_ARGS),
# PROFILE_SHAPES with PROFILE_MODEL (per-kernel GPU time of those bench shapes, see `profile`),
# WARM_TRAIN (train options of a short run that fills the GPU cache with training shapes,
# so the sweep's runs start on a machine that has trained before), FIRST_LOSS (a number of
# runs: `train --first-loss`, the time to each run's first loss point in one process, with
# the start-up phases logged, then again in a new process with `--warm-up`, the server's
# start-up warm-up first; run it after WARM_TRAIN to see a machine that has run before).
# `pack` takes the binary BIN (default: the release build's); for CUDA, build it with
# `scripts/setup.sh --for-cuda`, then `cuda_build_env` (scripts/env.sh) and `--features cuda`,
# and `pack` carries libdevice with it. `run` goes on to the accuracy
# runs only when RUNS names them; a run `NAME@SEED` trains setting NAME with that seed (42
# otherwise).
set -uo pipefail
cd "$(dirname "$0")/.."
carry=.devicecarry
carry_model=.devicecarry-model
work=/tmp/jigsaw
model_dir=$work/models/all-MiniLM-L6-v2

pack() {
  source scripts/env.sh
  local bin="${BIN:-$CARGO_TARGET_DIR/release/jigsaw-lab}" model="$JIGSAW_MODELS_DIR/all-MiniLM-L6-v2"
  local sst2="${JIGSAW_SST2_DIR:-../shared/data/sst2}"
  [ -x "$bin" ] || { echo "pack: build $bin first" >&2; exit 2; }
  [ -f "$model/model.safetensors" ] || { echo "pack: no model in $model (scripts/setup.sh)" >&2; exit 2; }
  [ -d .gl ] || { echo "pack: fetch the Vulkan loaders into .gl/ first (device README)" >&2; exit 2; }
  local dir
  for dir in "$carry" "$carry_model"; do
    grep -qx "/$dir/" .git/info/exclude 2>/dev/null || echo "/$dir/" >>.git/info/exclude
    rm -rf "$dir"
  done
  mkdir -p "$carry/sst2" "$carry_model"
  strip -o "$carry/jigsaw-lab" "$bin" && xz -T2 -6 "$carry/jigsaw-lab"
  python3 bench/gpu_model_transfer.py shrink "$model/model.safetensors" "$carry_model/model.f16.safetensors"
  cp "$model/config.json" "$model/tokenizer.json" "$carry_model/"
  for f in train dev test; do gzip -c "$sst2/$f.tsv" >"$carry/sst2/$f.tsv.gz"; done
  # A binary built with the `cuda` feature reads libdevice at run time (CUDA_PATH).
  if [ -d "$JIGSAW_TOOLCHAIN_DIR/cuda/nvvm" ]; then
    cp -R "$JIGSAW_TOOLCHAIN_DIR/cuda" "$carry/cuda"
  fi
  du -sh "$carry" "$carry_model" .gl
}

stage_model() {
  mkdir -p "$model_dir"
  python3 bench/gpu_model_transfer.py restore "$carry_model/model.f16.safetensors" "$model_dir/model.safetensors"
  cp "$carry_model/config.json" "$carry_model/tokenizer.json" "$model_dir/"
  ls -la "$model_dir"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv 2>/dev/null || true
  ldconfig -p | grep -i vulkan || echo "no libvulkan here: run carries .gl"
  ls /usr/local/nvidia/share/vulkan/icd.d/ 2>/dev/null
}

# Prints elapsed seconds since the stage began before each line read on standard input.
stamp() { python3 -uc 'import sys,time
t=time.time()
for line in sys.stdin: sys.stdout.write(f"{time.time()-t:.3f} {line}")'; }

# Unpacks the binary, the data and the Vulkan loader once per machine; sets the run's
# environment.
prepare() {
  local out="${OUT:?OUT must name the folder whose files come back}"
  exec > >(tee -a "$out/session.log") 2>&1
  if ! ldconfig -p | grep -q libvulkan.so.1; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
  fi
  local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
  [ -f "$icd" ] && export VK_DRIVER_FILES="$icd"
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv 2>/dev/null || true

  mkdir -p "$work/sst2" "$work/data"
  if [ ! -x "$work/jigsaw-lab" ]; then
    xz -dc "$carry/jigsaw-lab.xz" >"$work/jigsaw-lab" && chmod +x "$work/jigsaw-lab"
    for f in train dev test; do gunzip -c "$carry/sst2/$f.tsv.gz" >"$work/sst2/$f.tsv"; done
  fi
  export JIGSAW_DATA_DIR="$work/data" JIGSAW_MODELS_DIR="$work/models" JIGSAW_SST2_DIR="$work/sst2"
  export JIGSAW_DEVICE=gpu RUST_BACKTRACE=1
  [ -d "$carry/cuda/nvvm" ] && export CUDA_PATH="$PWD/$carry/cuda"
  bin="$work/jigsaw-lab"
}

run() {
  local start=$SECONDS budget="${BUDGET_S:-580}"
  prepare
  local out=$OUT optimizer tasks
  local precisions
  for optimizer in $(echo "${OPTIMIZERS:-per-tensor,flat}" | tr , ' '); do
    # Mixed precision is measured with the flat AdamW, a GPU run's default.
    precisions=fp32
    [ "$optimizer" = flat ] && precisions="${PRECISIONS:-fp32,bf16,f16}"
    echo "==> [$((SECONDS - start)) s] burn bench, $optimizer AdamW, $precisions"
    # shellcheck disable=SC2086  # the overrides are split on purpose
    timeout 300 "$bin" bench --optimizer "$optimizer" --precisions "$precisions" \
      ${BENCH_ARGS:---warmup 3 --windows 5 --steps-per-window 6} >>"$out/burn.jsonl"
    echo "bench exit $?; GPU cache: $(du -sh "$work/data/gpu-cache" 2>/dev/null) in $(find "$work/data/gpu-cache" -type f 2>/dev/null | wc -l) files"
  done
  # The same bench with more kernels batched into each GPU command (cubecl's default is 32).
  for tasks in $(echo "${MAX_TASKS:-}" | tr , ' '); do
    echo "==> [$((SECONDS - start)) s] burn bench, CUBECL_WGPU_MAX_TASKS=$tasks"
    # shellcheck disable=SC2086
    CUBECL_WGPU_MAX_TASKS=$tasks timeout 120 "$bin" bench \
      ${TASKS_BENCH_ARGS:-${BENCH_ARGS:---warmup 3 --windows 5 --steps-per-window 6}} \
      >>"$out/burn-tasks-$tasks.jsonl"
    echo "bench exit $?"
  done
  local shape
  for shape in $(echo "${PROFILE_SHAPES:-}" | tr , ' '); do
    echo "==> [$((SECONDS - start)) s] kernel profile, ${PROFILE_MODEL:-minilm} $shape"
    profile "${PROFILE_MODEL:-minilm}" "$shape"
  done

  echo "==> [$((SECONDS - start)) s] PyTorch reference"
  # shellcheck disable=SC2086
  timeout 150 python3 bench/torch_reference.py ${TORCH_ARGS:---device cuda --warmup 3 --windows 5 --steps-per-window 6} >"$out/torch.jsonl"
  echo "torch exit $?"
  summary
  if [ -n "${WARM_TRAIN:-}" ]; then
    echo "==> [$((SECONDS - start)) s] a short training run, to fill the GPU cache with the training shapes"
    # shellcheck disable=SC2086
    timeout 200 "$bin" train --train-subset 3200 --epochs 1 --validation-size 200 --events \
      ${WARM_TRAIN} 2>/dev/null | stamp >"$out/warm-train.jsonl"
    echo "warm-up run exit ${PIPESTATUS[0]}; GPU cache: $(du -sh "$work/data/gpu-cache" 2>/dev/null)"
  fi
  if [ -n "${FIRST_LOSS:-}" ]; then
    echo "==> [$((SECONDS - start)) s] time to the first loss point, $FIRST_LOSS runs in one process"
    # Each run's start-up phases come from the trainer's log; the JSON lines are the totals.
    # shellcheck disable=SC2086
    RUST_LOG=warn,trainer::train=debug,server::config=debug timeout 200 "$bin" train \
      --first-loss "$FIRST_LOSS" ${TRAIN_ARGS:-} | tee "$out/first-loss.jsonl"
    echo "first-loss exit ${PIPESTATUS[0]}; GPU cache: $(du -sh "$work/data/gpu-cache" 2>/dev/null) in $(find "$work/data/gpu-cache" -type f 2>/dev/null | wc -l) files"
    echo "==> [$((SECONDS - start)) s] the same in a new process that first warms its kernels up, as the server does"
    # shellcheck disable=SC2086
    RUST_LOG=warn,trainer::train=debug,server::config=debug timeout 200 "$bin" train \
      --first-loss "$FIRST_LOSS" --warm-up ${TRAIN_ARGS:-} | tee "$out/first-loss-warmed.jsonl"
    echo "first-loss --warm-up exit ${PIPESTATUS[0]}; GPU cache: $(du -sh "$work/data/gpu-cache" 2>/dev/null) in $(find "$work/data/gpu-cache" -type f 2>/dev/null | wc -l) files"
  fi
  local left=$((budget - (SECONDS - start)))
  # Accuracy runs only when asked for: an unasked sweep once spent device time on runs that
  # the budget then cut short.
  if [ -n "${RUNS:-}" ] && [ "$left" -gt 120 ]; then
    BUDGET_S=$left sweep
  fi
}

# One bench configuration with cubecl's kernel profiler on (every kernel timed, one by one,
# so the step is slower than in the bench): the kernels' GPU time per step, largest first.
# Run the plain bench on the same shape first, so no autotuning lands in the profile.
profile() {
  local model=$1 shape=$2 dir
  dir=$(mktemp -d)
  local log="$dir/kernels.log" steps=3
  cat >"$dir/cubecl.toml" <<TOML
[profiling.logger]
level = "basic"
file = "$log"
TOML
  (cd "$dir" && timeout 150 "$bin" bench --models "$model" --shapes "$shape" --warmup 1 \
    --windows 1 --steps-per-window 1 >>"$OUT/profiled-bench.jsonl")
  echo "profiled bench exit $?"
  # 1 warm-up step, 1 timed window of 1 step, 1 step of the phase window.
  python3 bench/kernel_profile.py "$log" --steps "$steps" --top 30 \
    --json "$OUT/kernels-$model-$shape.json" | tee "$OUT/kernels-$model-$shape.txt"
  rm -rf "$dir"
}

# SST-2 accuracy runs side by side, within BUDGET_S seconds.
sweep() {
  local start=$SECONDS budget="${BUDGET_S:-580}"
  [ -n "${bin:-}" ] || prepare
  local out=$OUT
  if [ ! -f "$model_dir/model.safetensors" ]; then
    echo "no model in $model_dir (stage-model did not run on this machine): no accuracy runs"
    return
  fi
  local train_time=$((budget - 15))
  echo "==> [$((SECONDS - start)) s] SST-2 accuracy runs, side by side, ${train_time} s at most"
  local common="--batch-size 32 --max-len 64 --test-each-epoch --events ${TRAIN_ARGS:-}"
  local -A settings=(
    [full-5e-5]="--lr 5e-5 --epochs 3 --warmup-ratio 0.1"
    [full-8e-5]="--lr 8e-5 --epochs 3 --warmup-ratio 0.1"
    [full-1e-4]="--lr 1e-4 --epochs 3 --warmup-ratio 0.1"
    [full-1e-4-w06]="--lr 1e-4 --epochs 3 --warmup-ratio 0.06"
    [full-5e-5-pt]="--lr 5e-5 --epochs 3 --warmup-ratio 0.1 --optimizer per-tensor"
    [lora-r16]="--lora-r 16 --lora-alpha 32 --lr 5e-4 --epochs 3 --warmup-ratio 0.1"
    [lora-r16-1e-3]="--lora-r 16 --lora-alpha 32 --lr 1e-3 --epochs 3 --warmup-ratio 0.1"
    # Two epochs, evaluated every 400 steps, finishing with the best model on validation.
    [full-5e-5-2ep-best]="--lr 5e-5 --epochs 2 --warmup-ratio 0.1 --eval-every 400 --keep-best"
    [full-3e-5-2ep-best]="--lr 3e-5 --epochs 2 --warmup-ratio 0.1 --eval-every 400 --keep-best"
    [lora-r16-1e-3-2ep-best]="--lora-r 16 --lora-alpha 32 --lr 1e-3 --epochs 2 --warmup-ratio 0.1 --eval-every 400 --keep-best"
    [lora-r16-2e-3-2ep-best]="--lora-r 16 --lora-alpha 32 --lr 2e-3 --epochs 2 --warmup-ratio 0.1 --eval-every 400 --keep-best")
  # Each process's GPU memory every 10 s, to show whether it stays flat across the epochs.
  (while sleep 10; do nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader \
    | sed "s/^/$((SECONDS - start)) s, /"; done >"$out/gpu_memory.csv" 2>/dev/null) &
  local sampler=$!
  local name key seed runs=()
  for name in $(echo "${RUNS:-full-5e-5,full-1e-4,lora-r16}" | tr , ' '); do
    key=${name%@*} seed=42
    [[ $name == *@* ]] && seed=${name#*@}
    if [ -z "${settings[$key]+set}" ]; then
      echo "[$name] skipped: no setting named $key (see settings in bench/gpu_session.sh)"
      continue
    fi
    # shellcheck disable=SC2086
    (timeout "$train_time" "$bin" train ${settings[$key]} --seed "$seed" $common \
      2> >(sed -u "s/^/[$name] /" >&2) | stamp >"$out/${name//@/-}.jsonl"
      echo "[$name] exit ${PIPESTATUS[0]}") &
    runs+=($!)
  done
  [ ${#runs[@]} -eq 0 ] || wait "${runs[@]}"
  kill "$sampler" 2>/dev/null
  echo "GPU cache after the runs: $(du -sh "$work/data/gpu-cache" 2>/dev/null)"
  echo "==> [$((SECONDS - start)) s] done"
  summary
}

# Prints the bench records and each run's first loss point and evaluations.
summary() {
  python3 - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
for name in ("burn", "torch"):
    for line in (out / f"{name}.jsonl").read_text().splitlines() if (out / f"{name}.jsonl").exists() else []:
        r = json.loads(line)
        print(f"{r['impl']:10} {r['dtype']:5} {r['model']:10} {r['seq']}x{r['batch']}: "
              f"{r['examples_per_s']:8.1f} ex/s {r['step_ms_median']:7.1f} ms/step peak {r['peak_mem_mb']} MB "
              f"warmup {r.get('warmup_s')} s {r.get('optimizer', '')} phases {r.get('phases')}")
for path in sorted(out.glob("*.jsonl")):
    if path.stem in ("burn", "torch"):
        continue
    first_step = None
    for line in path.read_text().splitlines():
        t, _, text = line.partition(" ")
        try:
            e = json.loads(text)
        except ValueError:
            continue
        if e["type"] == "step" and first_step is None:
            first_step = t
            print(f"{path.stem} first loss point at {t} s: {text[:200]}")
        elif e["type"] in ("started", "eval", "finished", "failed", "diverged"):
            print(f"{path.stem} {t} s: {text[:300]}")
PY
}

case "${1:-}" in
  pack) pack ;;
  stage-model) stage_model ;;
  run) run ;;
  sweep) sweep ;;
  *) echo "usage: bench/gpu_session.sh pack|stage-model|run|sweep" >&2; exit 2 ;;
esac
