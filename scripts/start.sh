#!/usr/bin/env bash
# Open the course in JupyterLab: serve the repository root, so the chapters (course/), the labs (labs/)
# and the links between them all work, and open chapter 00. The server keeps this terminal until you
# press Ctrl-C (twice, or once and answer y). Usage: scripts/start.sh PYTHON [jupyter lab options]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="$1"; shift
FIRST=course/00_why_compress.ipynb
root_flag=()
[ "$(id -u)" = 0 ] && root_flag=(--allow-root)   # containers often run as root
cat >&2 <<MSG
----------------------------------------------------------------------------------------------
 prunekit course: JupyterLab serves $PWD
 Start with $FIRST (it opens in your browser), then do the lab that follows each
 chapter in labs/ (the README's syllabus gives the order). Stop the server with Ctrl-C.
----------------------------------------------------------------------------------------------
MSG
# The notebook path is relative to root_dir: JupyterLab then serves the whole repository, not course/ only.
exec "$PY" -m jupyter lab --ServerApp.root_dir="$PWD" "${root_flag[@]}" "$@" "$FIRST"
