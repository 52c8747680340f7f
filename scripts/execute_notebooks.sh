#!/usr/bin/env bash
# Re-execute notebooks in place, storing the outputs that nbval compares (fast + strict mode, the
# same environment as scripts/run_tests.sh). After changing a solution, regenerate its lab with
# `python -m prunekit.release NAME`. Usage: scripts/execute_notebooks.sh PYTHON NOTEBOOK...
# Figures are drawn with the inline backend, so the stored notebook keeps them as images (the tests run
# with MPLBACKEND=Agg, which draws nothing into the outputs: fine for comparing text, not for storing).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$1"; shift
[ $# -gt 0 ] || { echo "usage: $0 PYTHON NOTEBOOK..." >&2; exit 2; }
export PRUNEKIT_FAST=1 PRUNEKIT_STRICT=1 PRUNEKIT_WIDGETS=static PYTHONHASHSEED=0
export MPLBACKEND=module://matplotlib_inline.backend_inline
if [ -z "${PRUNEKIT_DATA:-}" ] && [ -d ../shared/data ]; then
  export PRUNEKIT_DATA="$(cd ../shared/data && pwd)"
fi
for nb in "$@"; do
  [ -f "$nb" ] || { echo "no such notebook: $nb" >&2; exit 2; }
  start=$SECONDS
  # nbconvert runs the kernel in the notebook's folder, as JupyterLab does.
  "$PY" -m jupyter nbconvert --to notebook --execute --inplace --ExecutePreprocessor.timeout=1200 "$nb" \
        2> >(grep -v "^\[NbConvertApp\]\|Kernel is running over TCP" >&2)
  echo "$nb: executed in $((SECONDS - start)) s"
done
