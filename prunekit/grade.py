"""Grade submitted lab notebooks without a grading server.

    python -m prunekit.grade submissions/alice/01_weight_pruning.ipynb      # one table
    python -m prunekit.grade submissions/ --csv grades.csv --jobs 2          # a whole class
    prunekit-grade 01_weight_pruning.ipynb --json result.json                # the console script

Each submission runs in its own sandboxed worker process (bubblewrap when installed); the checks and hidden
tests of ``solutions/`` run in the grader and judge the data the worker's functions return. The machinery
lives in :mod:`prunekit.checks.grading` (see its docstring for the trust model); this module is the command.

The JSON is a list of per-notebook objects with ``path``, ``total``, ``max_total`` and ``exercises``
(``grade_id``, ``points``, ``max_points``, ``message``), plus ``error``, ``notes``, ``duplicate_of`` and
``missing_protections``. The CSV has one row per student; a second copy of a lab counts 0 and is reported.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

from .checks.classroom import grade_many, mark_duplicates, student_of
from .checks.grading import ROOT, ExerciseResult, NotebookResult, grade_notebook  # noqa: F401
from .checks.sandbox import bwrap_path


def format_result(result: NotebookResult) -> str:
    """A plain-text table: grade_id, points, max points, message; then the total."""
    rows = [(e.grade_id, f"{e.points:g}", f"{e.max_points:g}", e.message) for e in result.exercises]
    header = ("grade_id", "points", "max", "message")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    lines = [f"{result.path}  (lab: {Path(result.solution).stem or '?'}, {result.seconds:.0f} s)"]
    if result.duplicate_of:
        lines.append(f"  DUPLICATE of {result.duplicate_of}: not counted")
    if result.error:
        lines.append(f"  note: {result.error}")
    for note in result.notes:
        lines.append(f"  note: {note}")
    for problem in result.cell_errors[:5]:
        lines.append(f"  error in the submission's code: {problem}")
    lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths + [0])).rstrip())
    for row in rows:
        lines.append("  " + "  ".join([row[0].ljust(widths[0]), row[1].rjust(widths[1]),
                                       row[2].rjust(widths[2]), row[3]]))
    lines.append(f"  total: {result.total:g} / {result.max_total:g}")
    return "\n".join(lines)


def write_csv(results: list[NotebookResult], folder: Path | None, out: Path) -> None:
    """One row per student: every exercise as ``lab/grade_id``, then total and max total (duplicates skipped)."""
    students: dict[str, dict] = {}
    columns: list[str] = []
    for r in results:
        row = students.setdefault(student_of(Path(r.path), folder), {"total": 0.0, "max_total": 0.0, "notes": []})
        if r.duplicate_of:
            row["notes"].append(f"duplicate {Path(r.path).name} ignored")
            continue
        if r.error:
            row["notes"].append(f"{Path(r.path).name}: {r.error}"[:200])
        lab = Path(r.solution).stem or Path(r.path).stem
        for e in r.exercises:
            key = f"{lab}/{e.grade_id}"
            if key not in columns:
                columns.append(key)
            row[key] = e.points
        row["total"] += r.total
        row["max_total"] += r.max_total
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *columns, "total", "max_total", "notes"])
        for student in sorted(students):
            row = students[student]
            writer.writerow([student, *[f"{row.get(c, 0):g}" for c in columns],
                             f"{row['total']:g}", f"{row['max_total']:g}", "; ".join(row["notes"])])


def _write_outputs(results, folder, args) -> None:
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=2) + "\n")
    if args.csv:
        write_csv(results, folder, args.csv)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prunekit.grade", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="submitted notebooks, or folders of them")
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions", help="default: %(default)s")
    parser.add_argument("--json", type=Path, help="write all results as JSON to this file")
    parser.add_argument("--csv", type=Path, help="write one row per student")
    parser.add_argument("--jobs", type=int, default=1, help="notebooks graded in parallel (default 1)")
    parser.add_argument("--cell-timeout", type=float, default=120, help="seconds per graded cell (default 120)")
    parser.add_argument("--total-timeout", type=float, default=900, help="seconds per notebook (default 900)")
    parser.add_argument("--no-bwrap", action="store_true", help="do not use bubblewrap even if installed")
    args = parser.parse_args(argv)
    notebooks, folders = [], []
    for path in args.paths:
        if path.is_dir():
            folders.append(path)
            notebooks += sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif path.is_file():
            notebooks.append(path)
        else:
            parser.error(f"{path} does not exist")
    folder = folders[0] if len(folders) == 1 else None
    use_bwrap = False if args.no_bwrap else bwrap_path() is not None
    if not use_bwrap:
        print("warning: no bubblewrap sandbox (install the `bubblewrap` package): submissions can read "
              "solutions/ and each other, write where this user may, and use the network", file=sys.stderr)
    results: list[NotebookResult] = []

    def report(result: NotebookResult) -> None:
        results.append(result)  # kept as they come: an interrupted run still writes what it graded
        print(format_result(result), flush=True)

    try:
        grade_many(notebooks, args.solutions, args.jobs, args.cell_timeout, args.total_timeout, use_bwrap,
                   hide=tuple(p.parent.resolve() for p in notebooks) + tuple(folders), on_result=report)
    finally:
        mark_duplicates(results, folder)
        for r in results:
            if r.duplicate_of:
                print(f"{r.path}: duplicate of {r.duplicate_of}, not counted", flush=True)
        _write_outputs(results, folder, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
