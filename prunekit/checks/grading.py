"""Grade a class's notebooks: the submission runs in a sandboxed worker, the checks judge in the grader.

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
"""
from __future__ import annotations

import ast
import builtins
import contextlib
import copy
import io
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import provenance
from .remote import RemoteFunction, WorkerFailure, WorkerSession
from .sandbox import missing_protections

ROOT = Path(__file__).resolve().parent.parent.parent
MAX_NOTEBOOK_BYTES = 50 * 2**20


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


# ============================================================================ the lab, from solutions/
def _source(cell: Any) -> str:
    source = cell.get("source", "") if isinstance(cell, dict) else ""
    if isinstance(source, list):
        return "".join(s for s in source if isinstance(s, str))
    return source if isinstance(source, str) else ""


def _nbgrader(cell: Any) -> dict:
    meta = cell.get("metadata") if isinstance(cell, dict) else None
    meta = meta.get("nbgrader") if isinstance(meta, dict) else None
    return meta if isinstance(meta, dict) else {}


def _grade_id(cell: Any) -> str | None:
    """A cell's nbgrader grade id when it is a string (a submission's metadata can hold anything)."""
    value = _nbgrader(cell).get("grade_id")
    return value if isinstance(value, str) else None


@dataclass
class GradedCell:
    grade_id: str
    points: float
    source: str
    exercises: list[str]            # the learner's functions this cell calls
    needs: list[str]                # other free names (built from the solution's own statements)
    position: int                   # statements of the solution before this cell


@dataclass
class Statement:
    """A top-level statement of the solution that defines ``names`` (a fixture a hidden test may use)."""

    position: int
    names: tuple[str, ...]
    source: str
    free: tuple[str, ...]


@dataclass
class Lab:
    """What grading needs from one solution notebook (trusted)."""

    path: Path
    graded: list[GradedCell]
    answer_ids: set[str]            # grade ids of the exercise (solution) cells
    imports: str                    # the solution's import statements, run in the grader
    statements: list[Statement]     # assignments and helper defs, in order
    exercise_names: set[str]

    @property
    def max_total(self) -> float:
        return sum(c.points for c in self.graded)


def _checks_namespace() -> dict:
    import prunekit.checks as checks

    return {name: getattr(checks, name) for name in dir(checks) if not name.startswith("_")}


def _free_names(tree: ast.AST) -> list[str]:
    """Names a piece of code reads without defining it (approximate: any store anywhere counts)."""
    stored = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Load)}
    stored |= {a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments)
               for a in n.args + n.posonlyargs + n.kwonlyargs + [n.vararg, n.kwarg] if a is not None}
    stored |= {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))}
    loaded = [n.id for n in ast.walk(tree) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)]
    return list(dict.fromkeys(n for n in loaded if n not in stored))


def load_lab(path: Path) -> Lab:
    """Read a solution notebook into a :class:`Lab`."""
    notebook = json.loads(Path(path).read_text(encoding="utf-8"))
    imports, statements, answer_ids, graded, exercises = [], [], set(), [], set()
    position = 0
    for cell in notebook["cells"]:
        if cell.get("cell_type") != "code":
            continue
        meta, source = _nbgrader(cell), _source(cell)
        tree = provenance.parse_cell(source)
        answer = bool(meta.get("solution")) and isinstance(meta.get("grade_id"), str)
        if answer:
            answer_ids.add(meta["grade_id"])
        if meta.get("grade") and isinstance(meta.get("grade_id"), str):
            graded.append(GradedCell(meta["grade_id"], float(meta.get("points", 0)), source, [], [], position))
            continue
        for node in tree.body if tree else []:
            position += 1
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                if not (isinstance(node, ast.ImportFrom) and (node.module or "").startswith("prunekit.checks")):
                    imports.append(ast.unparse(node))
            elif isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                if answer:
                    exercises.add(node.name)
                else:
                    statements.append(Statement(position, (node.name,), ast.unparse(node), tuple(_free_names(node))))
            elif isinstance(node, ast.Assign) and len(node.targets) == 1:
                target = node.targets[0]
                elts = target.elts if isinstance(target, ast.Tuple) else [target]
                if all(isinstance(e, ast.Name) for e in elts):
                    statements.append(Statement(position, tuple(e.id for e in elts), ast.unparse(node),
                                                tuple(_free_names(node.value))))
    base = set(dir(builtins)) | set(_checks_namespace()) | _imported_names(imports)
    for cell in graded:
        free = [n for n in _free_names(ast.parse(cell.source)) if n not in base]
        cell.exercises = [n for n in free if n in exercises]
        cell.needs = [n for n in free if n not in exercises]
    return Lab(Path(path), graded, answer_ids, "\n".join(dict.fromkeys(imports)), statements, exercises)


def _imported_names(imports: list[str]) -> set[str]:
    names = set()
    for node in ast.parse("\n".join(imports)).body:
        for alias in node.names:
            names.add(alias.asname or alias.name.split(".")[0])
    return names


_LABS: dict[str, Lab] = {}
_BASES: dict[str, dict] = {}
_FIXTURES: dict[tuple[str, int], dict] = {}


def lab_for(path: Path) -> Lab:
    key = str(Path(path).resolve())
    if key not in _LABS:
        _LABS[key] = load_lab(Path(path))
    return _LABS[key]


def _base_namespace(lab: Lab) -> dict:
    """The grader-side globals of a lab's graded cells: its imports and the checks."""
    key = str(lab.path)
    if key not in _BASES:
        namespace: dict = {"__name__": "prunekit_grader"}
        exec(compile(lab.imports, f"<imports of {lab.path.name}>", "exec"), namespace)  # noqa: S102 - solutions/
        namespace.update(_checks_namespace())
        _BASES[key] = namespace
    return _BASES[key]


class FixtureError(Exception):
    """A hidden test uses a name the grader cannot build from the solution's own statements."""


def fixture(lab: Lab, name: str, before: int, chain: tuple = ()) -> Any:
    """The value ``name`` has in the solution just before statement ``before``, built in the grader.

    Only the solution's own statements run (assignments and helper definitions, with what they depend
    on); a statement that needs a learner's exercise function cannot be built and raises FixtureError.
    """
    os.environ.setdefault("PRUNEKIT_FAST", "1")  # the solution's data and budgets in fast mode
    base = _base_namespace(lab)
    if name in base:
        return base[name]
    statement = next((s for s in reversed(lab.statements) if s.position < before and name in s.names), None)
    if statement is None or name in lab.exercise_names or len(chain) > 30:
        raise FixtureError(f"the hidden test uses `{name}`, which the grader cannot build from the solution "
                           "(an exercise's result or a name defined nowhere)")
    key = (str(lab.path), statement.position)
    if key not in _FIXTURES:
        namespace = dict(base)
        for dependency in statement.free:
            if dependency not in namespace and dependency not in dir(builtins):
                try:
                    namespace[dependency] = fixture(lab, dependency, statement.position, chain + (name,))
                except FixtureError:
                    if not statement.source.startswith(("def ", "class ")):
                        raise
        exec(compile(statement.source, f"<solution statement {statement.position}>", "exec"),  # noqa: S102
             namespace)
        _FIXTURES[key] = namespace
    return _FIXTURES[key][name]


# ============================================================================ the submission
def read_submission(path: Path) -> dict:
    """The notebook as a dict; ValueError (with the reason) if it is not a valid nbformat-4 notebook."""
    import nbformat

    try:
        if Path(path).stat().st_size > MAX_NOTEBOOK_BYTES:
            raise ValueError(f"larger than {MAX_NOTEBOOK_BYTES // 2**20} MiB")
        text = Path(path).read_text(encoding="utf-8")
        notebook = json.loads(text)
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ValueError(f"not a readable notebook: {exc}") from None
    if not isinstance(notebook, dict) or notebook.get("nbformat") != 4:
        raise ValueError("not an nbformat-4 notebook")
    try:
        nbformat.validate(nbformat.from_dict(copy.deepcopy(notebook)))
    except Exception as exc:  # noqa: BLE001 - jsonschema's ValidationError and friends
        raise ValueError(f"not a valid notebook: {str(exc).splitlines()[0][:200]}") from None
    return notebook


def find_lab(notebook: dict | None, path: Path, solutions: Path) -> Path:
    """The solution a submission belongs to: by file name, lab metadata, or the graded cell ids."""
    candidates = sorted(Path(solutions).glob("[0-9]*.ipynb"))
    if not candidates:
        raise FileNotFoundError(f"no solution notebooks in {solutions}")
    by_name = {p.name: p for p in candidates}
    for name, candidate in by_name.items():
        if path.name.endswith(name):
            return candidate
    if notebook is None:
        raise ValueError("cannot tell which lab this is")
    meta = notebook.get("metadata")
    meta = meta.get("prunekit") if isinstance(meta, dict) else None
    origin = meta.get("generated_from") if isinstance(meta, dict) else None
    if isinstance(origin, str) and Path(origin).name in by_name:
        return by_name[Path(origin).name]
    ids = {_grade_id(c) for c in notebook["cells"]} - {None}
    best = max(candidates, key=lambda p: len(ids & {c.grade_id for c in lab_for(p).graded}))
    if not ids & {c.grade_id for c in lab_for(best).graded}:
        raise ValueError("cannot tell which lab this is (no known graded cells, no lab metadata)")
    return best


def worker_cells(notebook: dict, lab: Lab) -> tuple[list[tuple[str, str, bool]], list[str]]:
    """What the worker runs: (label, source, report errors) chunks, and the submission's code-cell sources.

    Exercise cells (by grade id) run whole; other cells keep only imports, ``def``, ``class`` and simple
    assignments, so no experiment, training or plot runs. Line numbers are kept (other lines are blank).
    """
    program, sources = [], []
    for index, cell in enumerate(notebook["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        source = _source(cell)
        sources.append(source)
        grade_id = _grade_id(cell)
        tree = provenance.parse_cell(source)
        if tree is None:
            program.append((str(index), source, True))  # the worker reports the SyntaxError
            continue
        lines = source.splitlines()
        if grade_id in lab.answer_ids:
            program.append((str(index), "\n".join("" if provenance._MAGIC.match(l) else l for l in lines) + "\n", True))
            continue
        for node in tree.body:  # one chunk per statement: a failing one does not skip the next def
            if _definition(node):
                first = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
                chunk = "\n" * (first - 1) + "\n".join(lines[first - 1:node.end_lineno]) + "\n"
                program.append((str(index), chunk, False))
    return program, sources


def _definition(node: ast.stmt) -> bool:
    """Imports, def, class, and assignments that call nothing (``EPS = 1e-8``, ``F = torch.nn.functional``)."""
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
        return not runs_code(node.value)
    return False


def runs_code(node: ast.AST) -> bool:
    if isinstance(node, ast.Lambda):
        return any(runs_code(d) for d in node.args.defaults + node.args.kw_defaults if d is not None)
    if isinstance(node, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr, ast.ListComp, ast.SetComp,
                         ast.DictComp, ast.GeneratorExp, ast.Subscript)):
        return True
    return any(runs_code(child) for child in ast.iter_child_nodes(node))


# ============================================================================ grading
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


# ============================================================================ a class
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
