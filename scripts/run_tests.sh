#!/usr/bin/env bash
# Run every test: unit tests, the solution notebooks under nbval (fast + strict mode), the
# generated student labs, the course chapters. Usage: scripts/run_tests.sh PYTHON [pytest args]
# Two workers take work units (a notebook, a test file, one lab) longest first (tests/conftest.py), so the
# run does not end on one long notebook; pytest then lists the slowest tests, and the last line says
# what was skipped, if anything.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$1"; shift
export PRUNEKIT_FAST=1 PRUNEKIT_STRICT=1 PRUNEKIT_WIDGETS=static MPLBACKEND=Agg PYTHONHASHSEED=0
if [ -z "${PRUNEKIT_DATA:-}" ] && [ -d ../shared/data ]; then
  export PRUNEKIT_DATA="$(cd ../shared/data && pwd)"
fi
echo "PRUNEKIT_DATA=${PRUNEKIT_DATA:-<unset: the per-user cache / downloads are used>}"
targets=(tests)
for d in solutions course; do
  compgen -G "$d/*.ipynb" >/dev/null && targets+=("$d")
done
# scripts/run_tests.sh PYTHON tests/test_masks.py: run just that part
if [ $# -gt 0 ] && [ -e "${1%%::*}" ]; then targets=(); fi
exec "$PY" -m pytest -n 2 --dist loadgroup --no-loadscope-reorder --durations=15 --durations-min=5 --nbval-lax \
     --nbval-cell-timeout=600 "${targets[@]}" "$@"
