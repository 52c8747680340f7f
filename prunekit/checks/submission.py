"""A submitted notebook: read and validated, matched to its lab, and cut down to what the worker runs.

Nothing in a submission is trusted: a file that is not a valid notebook is refused with the reason, its
lab is recognised by file name, lab metadata or graded-cell ids, and only its imports, definitions and
exercise cells are sent to the worker (no experiment, training or plot runs).
"""
from __future__ import annotations

import ast
import copy
import json
from pathlib import Path

from . import provenance
from .solution_lab import Lab, _grade_id, _source, lab_for

MAX_NOTEBOOK_BYTES = 50 * 2**20


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
