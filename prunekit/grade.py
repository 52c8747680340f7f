"""Grade submitted lab notebooks without a grading server.

    python -m prunekit.grade submissions/alice/01_weight_pruning.ipynb      # one table
    python -m prunekit.grade submissions/ --csv grades.csv                   # a whole class
    prunekit-grade 01_weight_pruning.ipynb --json result.json                # the console script

How a submission is graded
--------------------------
1. The matching solution in ``solutions/`` is found (by the lab's ``generated_from`` metadata, else by
   file name, else by the graded cells the two share).
2. Every graded cell (nbgrader metadata ``grade: true``) of the submission is compared with what the
   released lab holds. A cell that was **deleted** or **edited** scores 0, whatever it would print.
3. The untouched graded cells are replaced by the solution's version, *including the hidden tests*,
   and a guard cell before each one re-imports ``prunekit.checks`` so that a redefined or
   monkey-patched check cannot pass.
4. The notebook runs in a fresh kernel, in a temporary directory, in fast mode, exactly as a learner
   runs it (checks print ✔/✘ and never raise; failed exercises fall back to references so later
   exercises are still graded), with a per-cell timeout: a cell that hangs is interrupted and the
   run goes on.
5. A graded cell earns its points when it runs without an error (hidden tests are plain asserts)
   and none of its checks printed ✘ (wrong) or … (not implemented).

The grader writes only inside a temporary directory (kernel files, caches, the notebook's own
files) and to the output paths you give it.

Limits (say so to students): the code runs with your user's rights, so grade untrusted work in a
container; hidden tests are hidden only from the released notebook, not from someone who reads
``solutions/`` or the installed ``prunekit.checks``.
"""
from __future__ import annotations

import argparse
import copy
import csv
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .release import ROOT, release_cell

GUARD_SOURCE = ("# prunekit.grade: restore the official checks before a graded cell\n"
                "import importlib as _gi, sys as _gs\n"
                "for _gm in sorted(n for n in _gs.modules if n.startswith('prunekit.checks.')):\n"
                "    _gi.reload(_gs.modules[_gm])\n"
                "import prunekit.checks as _gc\n"
                "_gi.reload(_gc)\n"
                "from prunekit.checks import *\n")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass
class ExerciseResult:
    """The grade of one graded cell."""

    grade_id: str
    points: float
    max_points: float
    message: str


@dataclass
class NotebookResult:
    """The grade of one submitted notebook."""

    path: str
    solution: str
    exercises: list[ExerciseResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""
    cell_errors: list[str] = field(default_factory=list)  # errors in cells that carry no points

    @property
    def total(self) -> float:
        return sum(e.points for e in self.exercises)

    @property
    def max_total(self) -> float:
        return sum(e.max_points for e in self.exercises)

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total, "max_total": self.max_total}


# ----------------------------------------------------------------------------- reading notebooks
def _load(path: Path) -> dict:
    try:
        notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a readable notebook: {exc}") from None
    if not isinstance(notebook, dict) or notebook.get("nbformat") != 4 or "cells" not in notebook:
        raise ValueError(f"{path} is not an nbformat-4 notebook")
    return notebook


def _source(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _grade_meta(cell: dict) -> dict:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return meta if isinstance(meta, dict) else {}


def graded_cells(notebook: dict) -> dict[str, dict]:
    """``{grade_id: cell}`` of the cells that carry points (``nbgrader.grade`` is true)."""
    return {m["grade_id"]: c for c in notebook["cells"]
            if (m := _grade_meta(c)).get("grade") and m.get("grade_id")}


def find_solution(submission: dict, path: Path, solutions: Path) -> Path:
    """The solution notebook a submission belongs to."""
    candidates = sorted(Path(solutions).glob("[0-9]*.ipynb"))
    if not candidates:
        raise FileNotFoundError(f"no solution notebooks in {solutions}")
    origin = submission.get("metadata", {}).get("prunekit", {}).get("generated_from", "")
    by_name = {p.name: p for p in candidates}
    if Path(origin).name in by_name:
        return by_name[Path(origin).name]
    for name, candidate in by_name.items():
        if path.name.endswith(name):
            return candidate
    ids = set(graded_cells(submission))
    best = max(candidates, key=lambda p: len(ids & set(graded_cells(_load(p)))))
    if not ids & set(graded_cells(_load(best))):
        raise ValueError(f"{path}: cannot tell which lab this is (no known graded cells, no lab metadata)")
    return best


# ----------------------------------------------------------------------------- preparing the run
def _normalise(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.strip().splitlines())


def prepare(submission: dict, solution: dict) -> tuple[dict, dict[str, str]]:
    """The notebook to execute, and ``{grade_id: reason}`` for graded cells that score 0 up front."""
    official = graded_cells(solution)
    verdicts: dict[str, str] = {}
    cells, seen = [], set()
    for cell in submission["cells"]:
        grade_id = _grade_meta(cell).get("grade_id")
        if cell.get("cell_type") == "code" and grade_id in official and grade_id not in seen:
            seen.add(grade_id)
            allowed = {_normalise(_source(release_cell(official[grade_id]))),  # as released
                       _normalise(_source(official[grade_id]))}  # as in solutions/ (hidden tests included)
            if _normalise(_source(cell)) not in allowed:
                verdicts[grade_id] = "the check cell was modified"
                cells.append(_code_cell(_source(cell), grade_id=None))  # run as the student wrote it
                continue
            cells.append(_code_cell(GUARD_SOURCE, grade_id=None))
            cells.append(_code_cell(_source(official[grade_id]), grade_id=grade_id))
            continue
        clean = copy.deepcopy(cell)
        clean["source"] = _source(cell)  # nbformat files store lines; nbclient wants one string
        if clean.get("cell_type") == "code":
            clean["outputs"], clean["execution_count"] = [], None
            clean.get("metadata", {}).pop("nbgrader", None)  # only official cells count
        cells.append(clean)
    for grade_id in official:
        if grade_id not in seen:
            verdicts[grade_id] = "the check cell was deleted"
    notebook = {"cells": cells, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                            "language": "python"}},
                "nbformat": 4, "nbformat_minor": 5}
    return notebook, verdicts


def _code_cell(source: str, grade_id: str | None) -> dict:
    metadata = {"prunekit_grade_id": grade_id} if grade_id else {}
    return {"cell_type": "code", "metadata": metadata, "source": source, "outputs": [],
            "execution_count": None}


# ----------------------------------------------------------------------------- running
def _execute(notebook: dict, workdir: Path, cell_timeout: int, total_timeout: int) -> str:
    """Run ``notebook`` in place in a fresh kernel; returns an error message if the run was cut short."""
    import nbformat
    from nbclient import NotebookClient

    env = {"PRUNEKIT_FAST": "1", "PRUNEKIT_STRICT": "0", "MPLBACKEND": "Agg",
           "PRUNEKIT_CACHE": str(workdir / "cache"), "MPLCONFIGDIR": str(workdir / "mpl"),
           "IPYTHONDIR": str(workdir / "ipython"), "JUPYTER_RUNTIME_DIR": str(workdir / "runtime"),
           "JUPYTER_DATA_DIR": str(workdir / "jupyter-data")}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    nb = nbformat.from_dict(notebook)
    client = NotebookClient(nb, timeout=cell_timeout, kernel_name="python3", allow_errors=True,
                            interrupt_on_timeout=True, record_timing=False,
                            resources={"metadata": {"path": str(workdir)}})
    start, problem = time.monotonic(), ""
    try:
        with client.setup_kernel():
            for index, cell in enumerate(nb.cells):
                if time.monotonic() - start > total_timeout:
                    problem = f"stopped after {total_timeout} s in total"
                    break
                if cell.cell_type == "code":
                    client.execute_cell(cell, index)
    except Exception as exc:  # noqa: BLE001 - a dead kernel must not stop the class's grading
        problem = f"the run stopped: {type(exc).__name__}: {exc}"
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    notebook["cells"] = [dict(c) for c in nb.cells]
    return problem


def _verdict(cell: dict) -> tuple[bool, str]:
    """Did a graded cell run cleanly? Returns (passed, message)."""
    outputs = cell.get("outputs", [])
    text = "".join(_source({"source": o.get("text", "")}) for o in outputs if o.get("output_type") == "stream")
    lines = [line for line in _ANSI.sub("", text).splitlines() if line.strip()]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    if cell.get("execution_count") is None and not outputs:
        return False, "not reached (the run stopped earlier)"
    failed = next((line for line in lines if line.startswith(("✘", "…"))), "")
    if errors:
        error = errors[0]
        if error.get("ename") in ("KeyboardInterrupt", "CellTimeoutError"):
            return False, "timed out (cell interrupted)"
        detail = _ANSI.sub("", f"{error.get('ename')}: {error.get('evalue')}").strip()
        return False, (failed or detail)[:300]  # the check's own words say more than the traceback
    if failed:
        return False, failed[:300]
    ok_line = next((line for line in lines if line.startswith("✔")), "passed")
    return True, ok_line[:300]


def _cell_errors(cells: list[dict]) -> list[str]:
    """``"cell 12: NameError: ..."`` for every cell without points that raised."""
    found = []
    for index, cell in enumerate(cells):
        if cell.get("metadata", {}).get("prunekit_grade_id"):
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                text = _ANSI.sub("", f"{output.get('ename')}: {output.get('evalue')}").strip()
                found.append(f"cell {index}: {text[:200]}")
    return found


def grade_notebook(path: str | os.PathLike, solutions: str | os.PathLike = ROOT / "solutions",
                   cell_timeout: int = 300, total_timeout: int = 1800) -> NotebookResult:
    """Grade one submitted notebook; never raises for a broken submission (it scores 0 instead)."""
    path, solutions = Path(path), Path(solutions)
    start = time.monotonic()
    try:
        submission = _load(path)
        solution_path = find_solution(submission, path, solutions)
    except (ValueError, FileNotFoundError) as exc:
        return NotebookResult(str(path), "", error=str(exc))
    solution = _load(solution_path)
    notebook, verdicts = prepare(submission, solution)
    with tempfile.TemporaryDirectory(prefix="prunekit-grade-") as tmp:
        problem = _execute(notebook, Path(tmp), cell_timeout, total_timeout)
    ran = {c.get("metadata", {}).get("prunekit_grade_id"): c for c in notebook["cells"]}
    result = NotebookResult(str(path), str(solution_path), seconds=round(time.monotonic() - start, 1),
                            error=problem, cell_errors=_cell_errors(notebook["cells"]))
    for grade_id, cell in graded_cells(solution).items():
        max_points = float(_grade_meta(cell).get("points", 0))
        if grade_id in verdicts:
            passed, message = False, verdicts[grade_id]
        else:
            passed, message = _verdict(ran.get(grade_id, {}))
        result.exercises.append(ExerciseResult(grade_id, max_points if passed else 0.0, max_points, message))
    return result


# ----------------------------------------------------------------------------- reporting
def format_result(result: NotebookResult) -> str:
    """A plain-text table: grade_id, points, max points, message; then the total."""
    rows = [(e.grade_id, f"{e.points:g}", f"{e.max_points:g}", e.message) for e in result.exercises]
    header = ("grade_id", "points", "max", "message")
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(3)]
    lines = [f"{result.path}  (solution: {result.solution or '?'}, {result.seconds:.0f} s)"]
    if result.error:
        lines.append(f"  note: {result.error}")
    for problem in result.cell_errors[:5]:
        lines.append(f"  error outside graded cells: {problem}")
    lines.append("  " + "  ".join(h.ljust(w) for h, w in zip(header, widths + [0])).rstrip())
    for row in rows:
        lines.append("  " + "  ".join([row[0].ljust(widths[0]), row[1].rjust(widths[1]),
                                       row[2].rjust(widths[2]), row[3]]))
    lines.append(f"  total: {result.total:g} / {result.max_total:g}")
    return "\n".join(lines)


def _student_of(path: Path, folder: Path) -> str:
    relative = path.relative_to(folder)
    return relative.parts[0] if len(relative.parts) > 1 else path.stem


def write_csv(results: list[NotebookResult], folder: Path, out: Path) -> None:
    """One row per student: every exercise as ``lab/grade_id``, then total and max total."""
    students: dict[str, dict] = {}
    columns: list[str] = []
    for r in results:
        row = students.setdefault(_student_of(Path(r.path), folder), {"total": 0.0, "max_total": 0.0})
        lab = Path(r.solution).stem or Path(r.path).stem
        for e in r.exercises:
            key = f"{lab}/{e.grade_id}"
            if key not in columns:
                columns.append(key)
            row[key] = e.points
        row["total"] += r.total
        row["max_total"] += r.max_total
    with open(out, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["student", *columns, "total", "max_total"])
        for student in sorted(students):
            row = students[student]
            writer.writerow([student, *[f"{row.get(c, 0):g}" for c in columns],
                             f"{row['total']:g}", f"{row['max_total']:g}"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prunekit.grade", description=__doc__.split("\n")[0])
    parser.add_argument("paths", nargs="+", type=Path, help="submitted notebooks, or folders of them")
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions", help="default: %(default)s")
    parser.add_argument("--json", type=Path, help="write all results as JSON to this file")
    parser.add_argument("--csv", type=Path, help="write one row per student (for folders of submissions)")
    parser.add_argument("--cell-timeout", type=int, default=300, help="seconds per cell (default 300)")
    parser.add_argument("--total-timeout", type=int, default=1800, help="seconds per notebook (default 1800)")
    args = parser.parse_args(argv)
    results, folders = [], []
    for path in args.paths:
        if path.is_dir():
            folders.append(path)
            notebooks = sorted(p for p in path.rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts)
        elif path.is_file():
            notebooks = [path]
        else:
            parser.error(f"{path} does not exist")
        for notebook in notebooks:
            result = grade_notebook(notebook, args.solutions, args.cell_timeout, args.total_timeout)
            print(format_result(result), flush=True)
            results.append(result)
    if args.json:
        args.json.write_text(json.dumps([r.to_dict() for r in results], indent=2) + "\n")
    if args.csv:
        if len(folders) != 1:
            parser.error("--csv needs exactly one folder of submissions")
        write_csv(results, folders[0], args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
