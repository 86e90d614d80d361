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

# The CUDA build's toolchain (scripts/setup.sh --for-cuda, and --for-tests, which type-checks
# the CUDA build): LLVM 23 from PyPI, which burn's CUDA backend compiles kernels with, and
# libdevice. Kept outside the clone, like the target directory, so every clone shares it.
JIGSAW_TOOLCHAIN_DIR="${JIGSAW_TOOLCHAIN_DIR:-$(dirname "$CARGO_TARGET_DIR")/toolchain}"
export JIGSAW_TOOLCHAIN_DIR
# Sets the environment cargo needs to build with the `cuda` feature: tracel-llvm-bundler
# finds LLVM under $XDG_DATA_HOME/tracel (and downloads nothing, the toolchain being marked
# installed), llvm-config (a Python script) is on PATH, and cudarc targets the CUDA 12.8 API,
# which NVIDIA drivers from 570 on provide.
cuda_build_env() {
  export XDG_DATA_HOME="$JIGSAW_TOOLCHAIN_DIR/share"
  export PATH="$JIGSAW_TOOLCHAIN_DIR/llvm/bin:$PATH"
  export CUDARC_CUDA_VERSION=12080
}
# Where the CUDA backend reads libdevice at run time, unless CUDA_PATH names a toolkit.
if [ -z "${CUDA_PATH:-}" ] && [ -d "$JIGSAW_TOOLCHAIN_DIR/cuda/nvvm/libdevice" ]; then
  export CUDA_PATH="$JIGSAW_TOOLCHAIN_DIR/cuda"
fi
