"""Provenance: an exercise must be the learner's own code, not a call to the course's answer.

An exercise scores 0, with the reason in the report, when its function (or a helper function of the
submission that it uses, followed transitively) refers to:

* a ``reference_*`` function (the checks' answers), or anything from ``prunekit.checks``;
* a library function the exercise asks the learner to write (its *must-not-call* list).

The must-not-call list of an exercise ``foo`` is ``reference_foo`` and ``prunekit.checks``, plus every
function named ``foo`` in the learner-facing library (``prunekit/*.py``, found automatically), plus what
the lab's check module declares in a module-level dict literal::

    # prunekit/checks/lab1.py
    MUST_NOT_CALL = {"magnitude_mask": ["prunekit.masks.topk_mask"]}

(a literal, read without importing the module). ``python -m prunekit.release`` writes each graded cell's
lists into its metadata (``metadata.prunekit.must_not_call``) so teachers and learners see them; the grader
recomputes them from this module and never trusts a submission's metadata.

The analysis is static (names, attribute chains, imports and aliases, string constants that name a
reference) plus one dynamic check in the grader: a call to an exercise's own reference while that exercise
runs. Code that builds a name at run time and looks it up (``getattr(mod, "topk" + "_mask")``) is not caught.

Example:
    >>> src = ("from prunekit.checks import reference_saliency_scores as r\\n"
    ...        "def saliency_scores(w, g):\\n    return r(w, g)\\n")
    >>> violations([src], "saliency_scores", must_not_call("saliency_scores"))
    ["saliency_scores uses reference_saliency_scores (the course's answer); write your own code"]
"""
from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent
_MAGIC = re.compile(r"^\s*[%!]")


@functools.lru_cache(maxsize=None)
def declared_tables() -> dict[str, tuple[str, ...]]:
    """``{exercise: names}`` from every ``MUST_NOT_CALL`` literal in ``prunekit/checks/lab*.py``."""
    table: dict[str, tuple[str, ...]] = {}
    for path in sorted((PACKAGE / "checks").glob("lab*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError):
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "MUST_NOT_CALL"
                                                    for t in node.targets):
                try:
                    value = ast.literal_eval(node.value)
                except ValueError:
                    continue
                for exercise, names in dict(value).items():
                    table[exercise] = table.get(exercise, ()) + tuple(names)
    return table


@functools.lru_cache(maxsize=None)
def _library_functions() -> dict[str, tuple[str, ...]]:
    """``{function name: ("prunekit.module.name", ...)}`` for top-level functions of the learner's library."""
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        if path.stem.startswith("_") or path.stem in ("grade", "release"):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (OSError, SyntaxError):
            continue
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                found[node.name] = found.get(node.name, ()) + (f"prunekit.{path.stem}.{node.name}",)
    return found


def must_not_call(exercise: str) -> list[str]:
    """What the function ``exercise`` may not use: its reference, prunekit.checks, the library's own version."""
    names = [f"reference_{exercise}", "prunekit.checks"]
    names += _library_functions().get(exercise, ())
    names += declared_tables().get(exercise, ())
    return list(dict.fromkeys(names))


def parse_cell(source: str) -> ast.Module | None:
    """A code cell's syntax tree with IPython magics (``%time``, ``!pip``) blanked; None if not Python."""
    text = "\n".join("" if _MAGIC.match(line) else line for line in source.splitlines())
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None


def _qualified(node: ast.AST, aliases: dict[str, str]) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    parts.append(aliases.get(node.id, node.id))
    return ".".join(reversed(parts))


def _imports(nodes, aliases: dict[str, str]) -> None:
    for node in nodes:
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for a in node.names:
                aliases[a.asname or a.name] = f"{node.module}.{a.name}"


def violations(sources: list[str], exercise: str, forbidden: list[str]) -> list[str]:
    """Reasons the submission's ``exercise`` (its code cells' ``sources``) breaks provenance; [] if none."""
    defs: dict[str, ast.AST] = {}
    aliases: dict[str, str] = {}
    for source in sources:
        tree = parse_cell(source)
        if tree is None:
            continue
        _imports(tree.body, aliases)
        for node in tree.body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                defs[node.name] = node
            elif isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                # (grading passes only the statements its worker runs, so a later
                # `f = use_or_reference(f, ...)` cell, never run there, is not read here)
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Name):
                        defs[target.id] = node.value
                        name = _qualified(node.value, aliases)
                        if name:
                            aliases[target.id] = name
    if exercise not in defs:
        return []
    reasons: list[str] = []
    todo, seen = [exercise], set()
    while todo:
        name = todo.pop()
        if name in seen or name not in defs:
            continue
        seen.add(name)
        local = dict(aliases)
        body = list(ast.walk(defs[name]))
        _imports(body, local)
        for node in body:
            if isinstance(node, ast.Name) and node.id in defs and node.id != name:
                todo.append(node.id)
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                qualified = [f"{m}" for m in modules] + [local.get(a.asname or a.name, "") for a in node.names]
            elif isinstance(node, (ast.Name, ast.Attribute)):
                qualified = [_qualified(node, local) or ""]
                if isinstance(node, ast.Attribute):
                    qualified.append(node.attr)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                qualified = [node.value] if ("reference_" in node.value or "prunekit.checks" in node.value) else []
            else:
                continue
            for q in qualified:
                reason = _breaks(q, exercise, forbidden)
                if reason and reason not in reasons:
                    reasons.append(reason)
    return reasons


def _breaks(name: str, exercise: str, forbidden: list[str]) -> str:
    last = name.rsplit(".", 1)[-1]
    if last.startswith("reference_") or "reference_" in name and "." not in name:
        ref = re.search(r"reference_\w+", name)
        return f"{exercise} uses {ref.group(0) if ref else name} (the course's answer); write your own code"
    if name == "prunekit.checks" or name.startswith("prunekit.checks."):
        return f"{exercise} uses prunekit.checks (the course's checks and answers); write your own code"
    for item in forbidden:
        if "." in item and (name == item or name.startswith(item + ".")):
            return (f"{exercise} calls {item}, the library function this exercise asks you to write; "
                    "write your own code")
    return ""
