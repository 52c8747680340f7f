"""Generate the learners' labs (``labs/``) from the complete notebooks (``solutions/``).

One source: a solution notebook follows nbgrader's conventions, and this module derives the lab:

* code between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` becomes a stub at the same indentation,
  ``raise NotImplementedError("Exercise 1.2: write magnitude_mask")`` (the exercise number is read from
  an ``Exercise N.M`` comment in the cell, the name from the enclosing ``def``); in a Markdown answer
  cell the region becomes ``YOUR ANSWER HERE``;
* lines between ``### BEGIN HIDDEN TESTS`` and ``### END HIDDEN TESTS`` are removed, and so are nbval
  marker lines (``# NBVAL_CHECK_OUTPUT`` ...), which mean nothing to a learner;
* cells tagged ``solution_only`` are dropped;
* each graded cell gets ``metadata.prunekit.must_not_call``: for every exercise it checks, what that
  exercise's code may not use (its ``reference_*``, ``prunekit.checks``, the library's own version; see
  :mod:`prunekit.checks.provenance`), so learners and teachers see the rule the grader applies;
* outputs, execution counts and execution metadata are cleared;
* images that Markdown cells link from the solutions' folder (the full-mode reference figures in
  ``solutions/figures/``) are embedded as cell attachments, so a lab handed out alone shows them and does
  not point into ``solutions/``; a link to a missing file is an error;
* the file is written deterministically (nbformat 4, sorted keys, one-space indent, source split into
  lines, trailing newline): the same solution always gives a byte-identical lab.

Solution regions must sit inside a function body, so that a lab whose exercises are not done yet still
runs from top to bottom (the checks report "not implemented" and the lab falls back to references).

Usage::

    python -m prunekit.release            # write labs/NN_name.ipynb for every solutions/NN_name.ipynb
    python -m prunekit.release --check    # exit 1 and list the labs that are stale or missing
    python -m prunekit.release 01_weight_pruning   # only this one

Example:
    >>> cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": 3,
    ...         "source": "def f(x):\\n    ### BEGIN SOLUTION\\n    return 2 * x\\n    ### END SOLUTION\\n"}
    >>> release_cell(cell)["source"]
    'def f(x):\\n    raise NotImplementedError("write f")\\n'
"""
from __future__ import annotations

import argparse
import base64
import copy
import json
import mimetypes
import re
import sys
from pathlib import Path
from typing import Iterable

from . import provenance

BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
BEGIN_HIDDEN, END_HIDDEN = "### BEGIN HIDDEN TESTS", "### END HIDDEN TESTS"
SOLUTION_ONLY_TAG = "solution_only"
MARKDOWN_STUB = "YOUR ANSWER HERE"
# Cell metadata written by executions and front-ends, meaningless in a fresh lab.
VOLATILE_CELL_METADATA = ("execution", "collapsed", "scrolled", "ExecuteTime", "papermill")
VOLATILE_NOTEBOOK_METADATA = ("widgets", "papermill", "toc", "varInspector")
ROOT = Path(__file__).resolve().parent.parent.parent

_NBVAL_MARKER = re.compile(r"^\s*#\s*NBVAL_[A-Z_]+\s*$")
_EXERCISE = re.compile(r"Exercise\s+(\d+(?:\.\d+)*)")
_DEF = re.compile(r"^(\s*)(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(")
_CHECK_CALL = re.compile(r"\bcheck_\w+\(\s*([A-Za-z_]\w*)\s*[,)]")
_IMAGE_LINK = re.compile(r"!\[([^\]]*)\]\(([^)\s]+)\)")


class ReleaseError(ValueError):
    """A solution notebook breaks the conventions (unbalanced markers, top-level solution code...)."""


def _source(cell: dict) -> str:
    src = cell.get("source", "")
    return "".join(src) if isinstance(src, list) else src


def _stub_message(lines: list[str], begin: int, exercise: str | None) -> str:
    name = None
    for line in reversed(lines[:begin]):
        match = _DEF.match(line)
        if match:
            name = match.group(2)
            break
    text = f"write {name}" if name else "your code here"
    return f"Exercise {exercise}: {text}" if exercise else text


def _replace_regions(source: str, where: str, markdown: bool) -> str:
    """Replace solution regions with stubs and drop hidden-test regions in one cell's source."""
    lines = source.splitlines(keepends=True)
    match = _EXERCISE.search(source)
    exercise = match.group(1) if match else None
    out: list[str] = []
    i = 0
    while i < len(lines):
        stripped = lines[i].strip()
        if stripped in (BEGIN_SOLUTION, BEGIN_HIDDEN):
            end_marker = END_SOLUTION if stripped == BEGIN_SOLUTION else END_HIDDEN
            end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == end_marker), None)
            if end is None:
                raise ReleaseError(f"{where}: '{stripped}' on line {i + 1} has no matching '{end_marker}'")
            inner = [l.strip() for l in lines[i + 1:end]]
            if BEGIN_SOLUTION in inner or BEGIN_HIDDEN in inner:
                raise ReleaseError(f"{where}: nested marker inside the region starting on line {i + 1}")
            if stripped == BEGIN_SOLUTION:
                indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
                newline = "\n" if lines[end].endswith("\n") else ""
                if markdown:
                    out.append(f"{indent}{MARKDOWN_STUB}{newline}")
                elif not indent:
                    raise ReleaseError(f"{where}: the solution region on line {i + 1} is at top level; put it "
                                       "inside a function so the lab still runs before it is solved")
                else:
                    message = _stub_message(lines, i, exercise)
                    out.append(f"{indent}raise NotImplementedError({json.dumps(message, ensure_ascii=False)})"
                               f"{newline}")
            i = end + 1
            continue
        if stripped in (END_SOLUTION, END_HIDDEN):
            raise ReleaseError(f"{where}: '{stripped}' on line {i + 1} without a matching BEGIN")
        if not markdown and _NBVAL_MARKER.match(lines[i]):
            i += 1
            continue
        out.append(lines[i])
        i += 1
    text = "".join(out)
    return text.rstrip("\n") if not source.endswith("\n") else text


def release_cell(cell: dict, where: str = "cell") -> dict:
    """The learner's version of one cell (a new dict): stubs, no hidden tests, no outputs."""
    new = copy.deepcopy(cell)
    kind = new.get("cell_type")
    new["source"] = _replace_regions(_source(cell), where, markdown=kind == "markdown")
    metadata = new.get("metadata", {})
    for key in VOLATILE_CELL_METADATA:
        metadata.pop(key, None)
    new["metadata"] = metadata
    if kind == "code":
        new["outputs"] = []
        new["execution_count"] = None
        nbgrader = metadata.get("nbgrader")
        exercises = _CHECK_CALL.findall(_source(cell))
        if isinstance(nbgrader, dict) and nbgrader.get("grade") and exercises:
            rules = provenance.must_not_call
            metadata.setdefault("prunekit", {})["must_not_call"] = {name: rules(name) for name in exercises}
    else:
        new.pop("outputs", None)
        new.pop("execution_count", None)
        if kind == "markdown" and "attachments" in new and not new["attachments"]:
            new.pop("attachments")
    return new


def embed_images(cell: dict, folder: Path, where: str = "cell") -> dict:
    """``cell`` (a Markdown cell, changed in place) with its local image links turned into attachments.

    ``![alt](figures/x.png)`` becomes ``![alt](attachment:x.png)`` with the file's bytes (base64) in
    ``cell["attachments"]``; web links, data URLs and existing attachments are left alone.
    """
    attachments = cell.get("attachments") or {}

    def attach(match: re.Match) -> str:
        alt, target = match.groups()
        if re.match(r"^(?:[a-z]+:|/|#)", target):  # http:, data:, attachment:, absolute or anchor
            return match.group(0)
        path = folder / target
        if not path.is_file():
            raise ReleaseError(f"{where}: the image {target} is not in {folder}")
        mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        attachments[path.name] = {mime: base64.b64encode(path.read_bytes()).decode("ascii")}
        return f"![{alt}](attachment:{path.name})"

    cell["source"] = _IMAGE_LINK.sub(attach, _source(cell))
    if attachments:
        cell["attachments"] = attachments
    return cell


def release_notebook(notebook: dict, name: str = "notebook", folder: Path | None = None) -> dict:
    """The learner's version of a solution notebook (a new dict, nbformat 4).

    ``folder`` is where the solution lives: its linked images are embedded (``embed_images``).
    """
    if notebook.get("nbformat") != 4:
        raise ReleaseError(f"{name}: expected an nbformat 4 notebook, got nbformat {notebook.get('nbformat')}")
    cells = []
    for index, cell in enumerate(notebook.get("cells", [])):
        tags = cell.get("metadata", {}).get("tags", [])
        if SOLUTION_ONLY_TAG in tags:
            continue
        released = release_cell(cell, where=f"{name}, cell {index}")
        if folder is not None and released.get("cell_type") == "markdown":
            embed_images(released, folder, where=f"{name}, cell {index}")
        cells.append(released)
    metadata = copy.deepcopy(notebook.get("metadata", {}))
    for key in VOLATILE_NOTEBOOK_METADATA:
        metadata.pop(key, None)
    if "language_info" in metadata:  # the Python patch version of whoever executed the solution
        metadata["language_info"] = {"name": metadata["language_info"].get("name", "python")}
    metadata["prunekit"] = {"generated_from": f"solutions/{name}",
                            "note": "generated by `python -m prunekit.release`; edit the solution instead"}
    return {"cells": cells, "metadata": metadata, "nbformat": 4,
            "nbformat_minor": notebook.get("nbformat_minor", 5)}


def _split_lines(cell: dict) -> dict:
    cell = dict(cell)
    cell["source"] = _source(cell).splitlines(keepends=True)
    return cell


def dumps(notebook: dict) -> str:
    """Deterministic JSON text of a notebook: Jupyter's layout (indent 1, sorted keys, line lists)."""
    notebook = dict(notebook, cells=[_split_lines(c) for c in notebook["cells"]])
    return json.dumps(notebook, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def lab_text(solution_path: Path) -> str:
    """The exact text of the lab generated from one solution notebook file."""
    notebook = json.loads(Path(solution_path).read_text(encoding="utf-8"))
    return dumps(release_notebook(notebook, name=Path(solution_path).name, folder=Path(solution_path).parent))


def solution_files(solutions: Path, names: Iterable[str] | None = None) -> list[Path]:
    """The released notebooks: ``NN_name.ipynb`` in the solutions folder (checkpoint copies ignored).

    ``names`` keeps only some of them, given as ``"01_weight_pruning"``, ``"01_weight_pruning.ipynb"``
    or a path to the file; an unknown name raises ReleaseError.
    """
    found = sorted(p for p in Path(solutions).glob("[0-9]*.ipynb") if p.is_file())
    if names is None:
        return found
    wanted = {Path(n).stem for n in names}
    unknown = wanted - {p.stem for p in found}
    if unknown:
        raise ReleaseError(f"no solution notebook {sorted(unknown)} in {solutions}")
    return [p for p in found if p.stem in wanted]


def stale_labs(solutions: Path = ROOT / "solutions", labs: Path = ROOT / "labs",
               names: Iterable[str] | None = None) -> list[str]:
    """Problems with the committed labs: ``"labs/x.ipynb (stale)"``, ``(missing)`` or ``(no solution)``."""
    problems = []
    expected = {p.name: p for p in solution_files(solutions, names)}
    for name, source in expected.items():
        target = Path(labs) / name
        if not target.is_file():
            problems.append(f"{target} (missing)")
        elif target.read_text(encoding="utf-8") != lab_text(source):
            problems.append(f"{target} (stale)")
    for lab in sorted(Path(labs).glob("[0-9]*.ipynb")) if names is None else []:
        if lab.name not in expected:
            problems.append(f"{lab} (no solution)")
    return problems


def write_labs(solutions: Path = ROOT / "solutions", labs: Path = ROOT / "labs",
               names: Iterable[str] | None = None) -> list[Path]:
    """Write every lab (or only ``names``) whose text differs from what its solution generates."""
    written = []
    Path(labs).mkdir(parents=True, exist_ok=True)
    for source in solution_files(solutions, names):
        target = Path(labs) / source.name
        text = lab_text(source)
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prunekit.release", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", help="only these notebooks, e.g. 01_weight_pruning (default: all)")
    parser.add_argument("--check", action="store_true", help="only verify; exit 1 if labs/ is out of date")
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions", help="default: %(default)s")
    parser.add_argument("--labs", type=Path, default=ROOT / "labs", help="default: %(default)s")
    args = parser.parse_args(argv)
    names = args.names or None
    try:
        if args.check:
            problems = stale_labs(args.solutions, args.labs, names)
            for problem in problems:
                print(problem)
            if problems:
                print("run `python -m prunekit.release` to regenerate the labs", file=sys.stderr)
                return 1
            print(f"{len(solution_files(args.solutions, names))} lab(s) up to date")
            return 0
        written = write_labs(args.solutions, args.labs, names)
    except ReleaseError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for path in written:
        print(f"wrote {path}")
    if not written:
        print("labs already up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
