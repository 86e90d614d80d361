#!/usr/bin/env bash
# Creates (or brings up to date) the Python venv used to compute HF transformers reference
# numbers: trainer/tests/fixtures/make_fixtures.py and bench/check_export.py.
# Safe to run again: does nothing when the venv already matches bench/requirements.txt.
#
#   bench/setup_python.sh                 venv at ${JIGSAW_VENV:-/var/cache/jigsaw-lab/venv}
#   JIGSAW_VENV=/tmp/venv bench/setup_python.sh
#
# Only PyPI is used. torch is CPU-only here, but PyPI's Linux torch wheel is a CUDA build:
# it is installed with --no-deps, leaving out triton, cuda-bindings and the cuda-toolkit meta
# package; the CUDA shared libraries libtorch links against are still needed for
# `import torch` and are pinned in requirements.txt (about 4.4 GB of venv in all, ~1 min to
# download at 100 MB/s).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
req="$here/requirements.txt"
venv="${JIGSAW_VENV:-/var/cache/jigsaw-lab/venv}"
python="${PYTHON:-python3}"
stamp="$venv/.jigsaw-requirements.sha256"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

check() {
  HF_HUB_OFFLINE=1 CUDA_VISIBLE_DEVICES= "$venv/bin/python" - <<'PY'
import torch, transformers, tokenizers, safetensors, numpy
x = torch.randn(4, 8)
assert torch.allclose(torch.softmax(x @ x.T, -1).sum(-1), torch.ones(4))
print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
      f"tokenizers {tokenizers.__version__}, safetensors {safetensors.__version__}, "
      f"numpy {numpy.__version__}")
PY
}

want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ] && check >/dev/null 2>&1; then
  exit 0
fi

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "setup_python: $python is older than Python 3.10" >&2
  exit 1
fi

if [ ! -x "$venv/bin/python" ]; then
  say "Creating the Python venv $venv"
  mkdir -p "$(dirname "$venv")"
  if ! "$python" -m venv "$venv" 2>/dev/null; then
    # Debian's python3 ships venv/ensurepip separately.
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
      rm -rf "$venv"
      apt-get install -y -q python3-venv >/dev/null || { apt-get update -q >/dev/null && apt-get install -y -q python3-venv >/dev/null; }
      "$python" -m venv "$venv"
    else
      echo "setup_python: '$python -m venv' failed; install python3-venv" >&2
      exit 1
    fi
  fi
fi

say "Installing bench/requirements.txt into $venv (torch + CUDA runtime libraries: several GB, once)"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip>=24"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps -r "$req"
check
echo "$want" >"$stamp"
