#!/usr/bin/env bash
# `make run`: set up what is missing, build the site in release mode, and serve it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh

# Whether to build the GPU backends: JIGSAW_GPU_BUILD=1 always, 0 never, and by default
# where this machine shows a GPU: macOS (Metal), or on Linux a render node (/dev/dri, the
# Vulkan drivers of AMD, Intel and NVIDIA), NVIDIA's device files or WSL's GPU (/dev/dxg).
gpu_search="no /dev/dri/renderD*, /dev/nvidia0 or /dev/dxg"
gpu_build_wanted() {
  case "${JIGSAW_GPU_BUILD:-auto}" in
    1 | yes | true) return 0 ;;
    0 | no | false) return 1 ;;
    auto) ;;
    *)
      echo "JIGSAW_GPU_BUILD must be auto, 1 or 0, not \"$JIGSAW_GPU_BUILD\"" >&2
      exit 2
      ;;
  esac
  [ "$(uname -s)" = Darwin ] && return 0
  compgen -G '/dev/dri/renderD*' >/dev/null || [ -e /dev/nvidia0 ] || [ -e /dev/dxg ]
}
# JIGSAW_CUDA=1 builds with burn's CUDA backend as well (NVIDIA GPUs; see the README).
features=()
if [ "${JIGSAW_CUDA:-}" = 1 ]; then
  scripts/setup.sh --for-cuda
  cuda_build_env
  features=(--features cuda)
elif ! gpu_build_wanted; then
  # With no GPU to train on, the GPU backends (wgpu, cubecl's kernels and its on-disk
  # kernel cache: about 250 crates) would only be compiled, never used: `auto` would train
  # on the CPU either way. Leaving them out halves the server's first build
  # (docs/benchmarks.md).
  printf '\033[1m==> %s\033[0m\n' "No GPU found (${gpu_search}): building the CPU-only server, which trains on the CPU as the full build would here; JIGSAW_GPU_BUILD=1 make run builds the GPU backends too"
  features=(--no-default-features)
fi
printf '\033[1m==> %s\033[0m\n' "Building Jigsaw Lab (release; the first build takes about 30 minutes on 2 cores, 40 with the GPU backends)"
scripts/build-site.sh
# Only the binary, not every test target: a first `make run` waits for what it serves. The
# `cli` test target comes along because it brings in the dev-dependencies, so shared crates
# (hyper, tower, axum and everything above them) are built with the features `make test`
# uses and `make test` does not build them again.
cargo build --release -p server --bin jigsaw-lab --test cli "${features[@]}"
exec "$CARGO_TARGET_DIR/release/jigsaw-lab" serve
