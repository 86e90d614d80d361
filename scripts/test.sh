#!/usr/bin/env bash
# `make test`: formatting, lints, unit tests, HTTP integration tests and browser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --for-tests
source scripts/env.sh
say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
start=$SECONDS

say "cargo fmt --check"
cargo fmt --all --check

# The browser crate builds for wasm32 only, and building it together with the server would
# turn on both the `ssr` and `hydrate` features of `app`, so it is linted on its own target.
say "cargo clippy --all-targets -- -D warnings (server, app, trainer)"
cargo clippy --release --workspace --exclude frontend --all-targets -- -D warnings
say "cargo clippy --all-targets -- -D warnings (frontend, wasm32)"
cargo clippy --release -p frontend --target wasm32-unknown-unknown --all-targets -- -D warnings
say "cargo clippy --features lessons-islands,...,instructor-islands -- -D warnings (frontend, every island)"
cargo clippy --release -p frontend --features lessons-islands,class-islands,runs-islands,instructor-islands \
  --target wasm32-unknown-unknown -- -D warnings

# Where it finds no GPU, `make run` builds the server without the GPU backends
# (scripts/run.sh): lint that build too, so it keeps compiling.
say "cargo clippy -p server --no-default-features -- -D warnings (the CPU-only build)"
cargo clippy --release -p server --no-default-features -- -D warnings

# The CUDA build can only run on an NVIDIA GPU, but it must keep compiling: type-check and
# lint the engine with burn's CUDA backend (LLVM from scripts/setup.sh; no GPU needed).
say "cargo clippy -p trainer --features cuda -- -D warnings (the CUDA build)"
(cuda_build_env && cargo clippy --release -p trainer --features cuda --all-targets -- -D warnings)

# The browser half (scripts/build-site.sh); the server binary comes from the test build
# below, so server and tests share one set of compiled dependencies.
scripts/build-site.sh

say "Unit and HTTP integration tests"
# The _on_postgres tests create (and drop) databases of their own on this PostgreSQL server.
export JIGSAW_TEST_POSTGRES_URL="${JIGSAW_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}"
# Without a GPU, Mesa's lavapipe stands in for one in trainer/tests/gpu.rs (and only there:
# no other test asks for `gpu`), and that file must run.
JIGSAW_GPU_ALLOW_SOFTWARE=1 JIGSAW_TEST_GPU=required JIGSAW_TEST_SITE_ROOT="$PWD/target/site" \
  cargo test --release --workspace --exclude frontend

say "Browser tests (Playwright + Chromium)"
(cd end2end && JIGSAW_BIN="$CARGO_TARGET_DIR/release/jigsaw-lab" JIGSAW_TEST_SITE_ROOT="$PWD/../target/site" npm test)

say "All tests passed in $((SECONDS - start)) s"
