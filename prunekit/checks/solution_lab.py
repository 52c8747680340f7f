"""What the grader reads from a lab's solution notebook: graded cells, points, imports and fixtures.

Everything here comes from ``solutions/`` (trusted), never from a submission: the points of each graded
cell, its hidden tests, the imports they run with, and the statements that build what a hidden test may
use (a dataset, a pretrained model: a *fixture*), rebuilt in the grader itself.

Example:
    >>> from prunekit.checks.grading import ROOT
    >>> lab = load_lab(ROOT / "solutions" / "01_weight_pruning.ipynb")
    >>> lab.max_total > 0
    True
"""
from __future__ import annotations

import ast
import builtins
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import provenance


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
