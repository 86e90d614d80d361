#!/usr/bin/env bash
# `make run`: set up what is missing, build the site in release mode, and serve it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
source scripts/env.sh
printf '\033[1m==> %s\033[0m\n' "Building Jigsaw Lab (release; the first build takes about an hour on 2 cores)"
cargo leptos build --release --frontend-only
# --all-targets builds the binary with the same dependency features as `make test`, so the
# two commands share one set of compiled dependencies.
cargo build --release --workspace --exclude frontend --all-targets
exec "$CARGO_TARGET_DIR/release/jigsaw-lab" serve
