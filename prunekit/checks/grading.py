"""Grade one submitted notebook: the submission runs in a sandboxed worker, the checks judge in the grader.

How one submission is graded
----------------------------
1. Read and validate it (``nbformat.validate``); a file that is not a valid notebook scores 0 with the
   reason. Its lab is found by file name (``01_weight_pruning.ipynb``), else by its ``generated_from``
   metadata, else by the graded cells' ids; the points come from ``solutions/``, never from the submission.
2. A sandboxed worker (:mod:`.sandbox`) runs what the exercises need, in fast mode: every code cell's
   imports, ``def``/``class`` statements and simple constants, and the whole of each exercise (solution)
   cell. Experiments, training and plots are not run.
3. For each graded cell of the solution, in order, the grader runs that cell itself (checks and hidden
   tests, from ``solutions/``), with every exercise function replaced by a :class:`~.remote.RemoteFunction`:
   inputs go to the worker, data comes back, the judge decides here. Nothing the submission prints, patches
   or stores reaches a verdict. An exercise whose check failed is replaced, in the worker, by the course's
   reference (run by the grader), so a later exercise that uses it is judged on its own, as in a notebook.
4. An exercise whose code uses the course's answers scores 0 (:mod:`.provenance`).
5. A hang or crash costs the exercise it happened in: the worker's process group is killed and a new
   worker continues with the next exercise.

Hidden tests may use the exercise functions, the lab's imports (``torch``, ``nn``, ...) and models the
solution loads with ``NAME = zoo.load_pretrained("...")``; a fresh copy of those is made per graded cell.

The pieces: :mod:`.submission` (step 1 and what the worker runs), :mod:`.solution_lab` (what is read from
``solutions/``: graded cells, points, fixtures), :mod:`.remote` and :mod:`.worker` (step 3's two sides),
:mod:`.classroom` (a whole class, several notebooks at a time).
"""
from __future__ import annotations

import contextlib
import copy
import io
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from . import provenance
from .remote import RemoteFunction, WorkerFailure, WorkerSession
from .sandbox import missing_protections
from .solution_lab import FixtureError, GradedCell, Lab, _base_namespace, fixture, lab_for
from .submission import find_lab, read_submission, worker_cells

ROOT = Path(__file__).resolve().parent.parent.parent


@dataclass
class ExerciseResult:
    """The grade of one graded cell."""

    grade_id: str
    points: float
    max_points: float
    message: str


@dataclass
class NotebookResult:
    """The grade of one submitted notebook (``max_total`` is always the lab's)."""

    path: str
    solution: str
    exercises: list[ExerciseResult] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""
    cell_errors: list[str] = field(default_factory=list)   # errors while the worker ran the submission's cells
    notes: list[str] = field(default_factory=list)
    missing_protections: list[str] = field(default_factory=list)
    lab_max: float = 0.0
    duplicate_of: str = ""

    @property
    def total(self) -> float:
        return sum(e.points for e in self.exercises)

    @property
    def max_total(self) -> float:
        return self.lab_max

    def to_dict(self) -> dict:
        return {**asdict(self), "total": self.total, "max_total": self.max_total}


# In a class run each grader process keeps one spare worker started ahead (a fresh sandbox of its own, only
# with torch imported), so the next submission does not wait for Python and torch to start.
_SPARES: dict = {}


def _launch_spare(hide: tuple, use_bwrap: bool | None) -> None:
    session = WorkerSession(hide=hide, use_bwrap=use_bwrap, reference_lookup=_reference)
    try:
        session.launch()
    except WorkerFailure:
        return
    _SPARES[(tuple(hide), use_bwrap)] = session


def _take_spare(hide: tuple, use_bwrap: bool | None) -> WorkerSession | None:
    session = _SPARES.pop((tuple(hide), use_bwrap), None)
    return session if session is not None and session.alive else None


def close_spares() -> None:
    """Stop the spare workers of this process (end of a class run)."""
    for key in [k for k in _SPARES if k != "enabled"]:
        _SPARES.pop(key).close()
    _SPARES.pop("enabled", None)


def _reference(name: str):
    import prunekit.checks as checks

    value = getattr(checks, name, None) if name.startswith("reference_") else None
    return value if callable(value) else None


def _run_graded_cell(cell: GradedCell, lab: Lab, session: WorkerSession) -> tuple[bool, str]:
    """Run a solution's graded cell in the grader, exercises answered by the worker."""
    namespace = dict(_base_namespace(lab))
    try:
        for name in cell.needs:
            if name not in namespace:
                value = fixture(lab, name, cell.position)
                try:
                    namespace[name] = copy.deepcopy(value)  # a fresh copy per cell: a wrong answer may mutate it
                except Exception:  # noqa: BLE001 - not copyable (a loader): shared
                    namespace[name] = value
    except FixtureError as exc:
        return False, f"grader error (tell the course authors): {exc}"
    except Exception as exc:  # noqa: BLE001 - building the solution's data failed (missing dataset...)
        return False, f"grader error (tell the course authors): building {name!r} failed: " \
                      f"{type(exc).__name__}: {str(exc).splitlines()[0][:150] if str(exc) else ''}"
    results = []

    def wrap(check):
        def run(fn, strict=None):
            result = check(fn, strict=False)
            results.append(result)
            return result
        return run

    for name, value in list(namespace.items()):
        if name.startswith("check_") and callable(value):
            namespace[name] = wrap(value)
    for name in cell.exercises:
        namespace[name] = RemoteFunction(session, name)
    session.references_called.clear()
    output = io.StringIO()
    error: Exception | None = None
    try:
        # The same random numbers for every submission (a hidden test that draws a model or data without
        # a generator gets the same ones each time), and the grader's own stream left untouched.
        with contextlib.redirect_stdout(output), torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            exec(compile(cell.source, f"<graded cell {cell.grade_id}>", "exec"), namespace)  # noqa: S102
    except Exception as exc:  # noqa: BLE001 - a hidden test that fails, or a learner's error outside a check
        error = exc
    own = [f"reference_{name}" for name in cell.exercises]
    used = [r for r in session.references_called if r in own]
    if used:  # asked for its own answer at run time (a name assembled to escape the static check)
        return False, f"{used[0][len('reference_'):]} called {used[0]} (the course's answer); write your own code"
    if session.failure:
        return False, session.failure
    failed = next((r for r in results if not r), None)
    if failed is not None:
        return False, failed.line[:300]
    if error is not None:
        text = str(error).strip().splitlines()[0][:200] if str(error).strip() else ""
        return False, f"hidden test failed: {getattr(error, 'remote_type', type(error).__name__)}" + \
            (f": {text}" if text else "")
    return True, (results[-1].line if results else "passed")[:300]


def grade_notebook(path: str | os.PathLike, solutions: str | os.PathLike = ROOT / "solutions",
                   cell_timeout: float = 120, total_timeout: float = 900, use_bwrap: bool | None = None,
                   hide: tuple = ()) -> NotebookResult:
    """Grade one submitted notebook; never raises for a broken submission (it scores 0 instead)."""
    path, solutions = Path(path), Path(solutions)
    try:
        return _grade_notebook(path, solutions, cell_timeout, total_timeout, use_bwrap, hide)
    except Exception as exc:  # noqa: BLE001 - a grader bug on one file must not stop the class
        result = NotebookResult(str(path), "", error=f"grader error: {type(exc).__name__}: {exc}"[:300])
        try:
            lab = lab_for(find_lab(None, path, solutions))
            result.solution, result.lab_max = str(lab.path), lab.max_total
            result.exercises = [ExerciseResult(c.grade_id, 0.0, c.points, result.error) for c in lab.graded]
        except (ValueError, FileNotFoundError):
            pass
        return result


def _grade_notebook(path: Path, solutions: Path, cell_timeout: float, total_timeout: float,
                    use_bwrap: bool | None, hide: tuple) -> NotebookResult:
    start = time.monotonic()
    notebook, problem = None, ""
    try:
        notebook = read_submission(path)
    except ValueError as exc:
        problem = str(exc)
    try:
        lab = lab_for(find_lab(notebook, path, solutions))
    except (ValueError, FileNotFoundError) as exc:
        return NotebookResult(str(path), "", error=f"{problem + '; ' if problem else ''}{exc}")
    result = NotebookResult(str(path), str(lab.path), lab_max=lab.max_total)
    if notebook is None:
        result.error = problem
        result.exercises = [ExerciseResult(c.grade_id, 0.0, c.points, f"not graded: {problem}") for c in lab.graded]
        return result
    program, _ = worker_cells(notebook, lab)
    sources = [chunk for _, chunk, _ in program]  # provenance reads exactly what the worker runs
    session = _take_spare(hide, use_bwrap) or WorkerSession(hide=hide, use_bwrap=use_bwrap,
                                                            reference_lookup=_reference)
    if _SPARES.get("enabled"):
        _launch_spare(hide, use_bwrap)  # the next submission's worker imports torch while this one is graded
    deadline = start + total_timeout
    restarts = 0
    try:
        result.cell_errors = session.start(program, timeout=min(cell_timeout, total_timeout))
    except WorkerFailure as exc:
        result.error = f"the submission's code could not be set up: {exc}"
    result.missing_protections = missing_protections(session.use_bwrap)
    bound: dict[str, str] = {}
    try:
        for cell in lab.graded:
            reasons = [r for name in cell.exercises
                       for r in provenance.violations(sources, name, provenance.must_not_call(name))]
            if not session.alive and time.monotonic() < deadline and restarts < 3:
                restarts += 1
                try:
                    session.start(program, timeout=min(cell_timeout, deadline - time.monotonic()))
                    for name, ref in bound.items():
                        session.bind(name, ref)
                except WorkerFailure:
                    pass
            if reasons:
                passed, message = False, reasons[0]
            elif time.monotonic() >= deadline:
                passed, message = False, f"not graded: the notebook's {total_timeout:g} s were used up"
            elif not session.alive:
                passed, message = False, f"not graded: {session.failure or 'the worker could not start'}"
            else:
                session.deadline = min(time.monotonic() + cell_timeout, deadline)
                passed, message = _run_graded_cell(cell, lab, session)
            result.exercises.append(ExerciseResult(cell.grade_id, cell.points if passed else 0.0, cell.points,
                                                   message))
            if not passed and session.alive:
                for name in cell.exercises:
                    if _reference(f"reference_{name}") is not None:
                        bound[name] = f"reference_{name}"
                        session.deadline = time.monotonic() + 30
                        try:
                            session.bind(name, f"reference_{name}")
                        except WorkerFailure:
                            break
    finally:
        session.close()
    if restarts:
        result.notes.append(f"the worker was restarted {restarts} time(s) after a hang or crash")
    result.seconds = round(time.monotonic() - start, 1)
    return result
