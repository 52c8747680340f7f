"""Grading a class: many notebooks, several at a time, and one counted notebook per student and lab.

Each notebook is graded by :func:`~prunekit.checks.grading.grade_notebook`; with ``jobs > 1`` each grader
process has its own worker and keeps a spare one started ahead. ``python -m prunekit.grade`` is the command.
"""
from __future__ import annotations

from pathlib import Path

from .grading import _SPARES, ExerciseResult, NotebookResult, close_spares, grade_notebook


def student_of(path: Path, folder: Path | None) -> str:
    """The student a notebook belongs to: its first folder under the class folder, else its file stem."""
    if folder is not None:
        try:
            relative = Path(path).resolve().relative_to(Path(folder).resolve())
            if len(relative.parts) > 1:
                return relative.parts[0]
        except ValueError:
            pass
    return Path(path).stem


def _grade_one(job: tuple) -> dict:
    path, solutions, cell_timeout, total_timeout, use_bwrap, hide = job
    if not _SPARES.get("enabled"):
        import atexit

        _SPARES["enabled"] = True
        atexit.register(close_spares)
    try:
        import torch

        torch.set_num_threads(1)
        return grade_notebook(path, solutions, cell_timeout, total_timeout, use_bwrap, hide).to_dict()
    except Exception as exc:  # noqa: BLE001 - one file must never stop the class
        return NotebookResult(str(path), "", error=f"grader error: {type(exc).__name__}: {exc}").to_dict()


def grade_many(paths: list[Path], solutions: Path, jobs: int = 1, cell_timeout: float = 120,
               total_timeout: float = 900, use_bwrap: bool | None = None, hide: tuple = (), on_result=None
               ) -> list[NotebookResult]:
    """Grade notebooks, ``jobs`` at a time (each in its own grader process and worker); order kept."""
    work = [(Path(p), Path(solutions), cell_timeout, total_timeout, use_bwrap, tuple(hide)) for p in paths]
    results: list[dict] = []
    if jobs <= 1:
        try:
            for job in work:
                results.append(_grade_one(job))
                if on_result:
                    on_result(_from_dict(results[-1]))
        finally:
            close_spares()
    else:
        import concurrent.futures
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            for done in pool.map(_grade_one, work):
                results.append(done)
                if on_result:
                    on_result(_from_dict(done))
    return [_from_dict(r) for r in results]


def _from_dict(data: dict) -> NotebookResult:
    data = dict(data)
    data.pop("total", None)
    data.pop("max_total", None)
    data["exercises"] = [ExerciseResult(**e) for e in data.get("exercises", [])]
    return NotebookResult(**data)


def mark_duplicates(results: list[NotebookResult], folder: Path | None) -> None:
    """Keep one notebook per student and lab (the first in path order); mark the others, which count 0."""
    seen: dict[tuple[str, str], str] = {}
    for result in sorted(results, key=lambda r: r.path):
        if not result.solution:
            continue
        key = (student_of(Path(result.path), folder), Path(result.solution).stem)
        if key in seen:
            result.duplicate_of = seen[key]
        else:
            seen[key] = result.path
