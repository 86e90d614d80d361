#!/usr/bin/env bash
# `make run`: set up what is missing, build the site in release mode, and serve it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
printf '\033[1m==> %s\033[0m\n' "Building Jigsaw Lab (release; the first build takes about 30 minutes on 2 cores)"
scripts/build-site.sh
# Only the binary, not every test target: a first `make run` waits for what it serves. The
# `cli` test target comes along because it brings in the dev-dependencies, so shared crates
# (hyper, tower, axum and everything above them) are built with the features `make test`
# uses and `make test` does not build them again.
# JIGSAW_CUDA=1 builds with burn's CUDA backend as well (NVIDIA GPUs; see the README).
features=()
if [ "${JIGSAW_CUDA:-}" = 1 ]; then
  scripts/setup.sh --for-cuda
  cuda_build_env
  features=(--features cuda)
fi
cargo build --release -p server --bin jigsaw-lab --test cli "${features[@]}"
exec "$CARGO_TARGET_DIR/release/jigsaw-lab" serve
