# Shared environment for the make targets; sourced, not run.
# One persistent cargo target directory outside the clone keeps rebuilds incremental.
if [ -z "${CARGO_TARGET_DIR:-}" ]; then
  if mkdir -p /var/cache/jigsaw-lab/target 2>/dev/null && [ -w /var/cache/jigsaw-lab/target ]; then
    CARGO_TARGET_DIR=/var/cache/jigsaw-lab/target
  else
    CARGO_TARGET_DIR="$HOME/.cache/jigsaw-lab/target"
  fi
fi
export CARGO_TARGET_DIR
export PATH="$PWD/.tools/node_modules/.bin:$HOME/.cargo/bin:$PATH"
export JIGSAW_DATA_DIR="${JIGSAW_DATA_DIR:-$PWD/data}"
export JIGSAW_MODELS_DIR="${JIGSAW_MODELS_DIR:-$JIGSAW_DATA_DIR/models}"
export LEPTOS_OUTPUT_NAME=jigsaw-lab
