#!/usr/bin/env bash
# Install the course into a virtual environment and print the python to use.
#
# - Uses the active virtualenv/conda env if there is one, else creates ./.venv.
# - Installs PyTorch first: the CPU build by default (a plain `pip install torch` on Linux pulls
#   several GB of CUDA packages). Set PRUNEKIT_TORCH=cuda to let pip pick the default (CUDA) build.
# - Then installs prunekit itself (editable) with the test extras.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION="${PRUNEKIT_TORCH_VERSION:-2.13.0}"

if [ -n "${VIRTUAL_ENV:-}" ] || [ -n "${CONDA_PREFIX:-}" ]; then
  PY="$(command -v python)"
else
  if [ ! -x .venv/bin/python ]; then
    echo "creating .venv" >&2
    python3 -m venv .venv
  fi
  PY="$PWD/.venv/bin/python"
fi

if ! "$PY" -c "import torch" 2>/dev/null; then
  if [ "${PRUNEKIT_TORCH:-cpu}" = "cpu" ]; then
    echo "installing the CPU build of torch==$TORCH_VERSION" >&2
    # The PyTorch CPU index first; fall back to the regular index / local wheels (offline mirrors).
    "$PY" -m pip install -q --retries 1 --timeout 20 "torch==$TORCH_VERSION" \
        --index-url https://download.pytorch.org/whl/cpu >&2 2>/dev/null \
      || "$PY" -m pip install -q "torch==$TORCH_VERSION" >&2
  else
    "$PY" -m pip install -q "torch==$TORCH_VERSION" >&2
  fi
fi

if ! "$PY" -c "import prunekit, nbval, xdist" 2>/dev/null || [ "${PRUNEKIT_REINSTALL:-0}" = "1" ]; then
  echo "installing prunekit and its dependencies" >&2
  "$PY" -m pip install -q -e ".[test]" >&2
fi
echo "$PY"
