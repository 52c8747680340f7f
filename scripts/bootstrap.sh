#!/usr/bin/env bash
# Install the course into a virtual environment and print the python to use (the only line on stdout).
# Usage: scripts/bootstrap.sh          what the course needs (make start)
#        scripts/bootstrap.sh --test   and the test tools too: pytest, nbval, Playwright, ... (make test)
#
# - Uses the active virtualenv/conda env if there is one, else creates ./.venv.
# - Installs PyTorch first: the CPU build by default (a plain `pip install torch` on Linux pulls
#   several GB of CUDA packages). Set PRUNEKIT_TORCH=cuda to let pip pick the default (CUDA) build.
# - Then installs prunekit itself (editable) with what pyproject.toml lists, and only what is missing.
# Progress goes to stderr, one line per step, with pip's own progress bars while it downloads.
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH_VERSION="${PRUNEKIT_TORCH_VERSION:-2.13.0}"
EXTRA=""
[ "${1:-}" = "--test" ] && EXTRA="test"
started=$SECONDS
step() { echo "[bootstrap $1/3] $2" >&2; }

# 1. Which python
if [ -n "${VIRTUAL_ENV:-}" ] || [ -n "${CONDA_PREFIX:-}" ]; then
  PY="$(command -v python)"
  step 1 "python: the active environment, $PY"
elif [ -x .venv/bin/python ]; then
  PY="$PWD/.venv/bin/python"
  step 1 "python: .venv (exists)"
else
  step 1 "python: creating .venv with $(python3 --version 2>&1)"
  python3 -m venv .venv
  PY="$PWD/.venv/bin/python"
fi

# 2. PyTorch, before anything that depends on it, so pip does not choose the multi-GB CUDA build
if "$PY" -c "import torch" 2>/dev/null; then
  step 2 "torch: $("$PY" -c "import torch; print(torch.__version__)") already installed"
elif [ "${PRUNEKIT_TORCH:-cpu}" = "cpu" ]; then
  step 2 "torch: installing the CPU build of torch==$TORCH_VERSION from the PyTorch CPU index (~200 MB)"
  log="$(mktemp)"
  if ! "$PY" -m pip install --retries 1 --timeout 20 "torch==$TORCH_VERSION" \
        --index-url https://download.pytorch.org/whl/cpu >&2 2>"$log"; then
    # Say why before falling back (offline mirror, proxy, a version the CPU index lacks, ...).
    echo "[bootstrap 2/3] the PyTorch CPU index failed: $(grep -v '^[[:space:]]*$' "$log" | tail -n 2 | tr '\n' ' ')" >&2
    echo "[bootstrap 2/3] falling back to your default pip index (on Linux this may be the larger CUDA build)" >&2
    "$PY" -m pip install "torch==$TORCH_VERSION" >&2
  else
    cat "$log" >&2   # pip's warnings, if any
  fi
  rm -f "$log"
else
  step 2 "torch: installing torch==$TORCH_VERSION from your default pip index (PRUNEKIT_TORCH=$PRUNEKIT_TORCH)"
  "$PY" -m pip install "torch==$TORCH_VERSION" >&2
fi

# 3. prunekit (editable) and the packages pyproject.toml lists that are not installed yet
missing="$("$PY" scripts/missing_requirements.py $EXTRA 2>/dev/null || echo "(could not check)")"
if [ -z "$missing" ] && [ "${PRUNEKIT_REINSTALL:-0}" != "1" ]; then
  step 3 "prunekit${EXTRA:+ and the test tools}: already installed"
else
  step 3 "prunekit${EXTRA:+ and the test tools}: installing (missing: $missing)"
  "$PY" -m pip install -e ".${EXTRA:+[$EXTRA]}" >&2
fi
echo "[bootstrap] ready in $((SECONDS - started)) s: $PY" >&2
echo "$PY"
