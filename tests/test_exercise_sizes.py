"""Issue 19: learners write the algorithms, not only formulas.

Counted from the solution blocks (``### BEGIN SOLUTION`` ... ``### END SOLUTION``) of every lab, without blank
and comment lines: each lab has at least two capstones of 12-40 lines, and at most a quarter of all exercises
are one-liners (three lines or fewer). Every chapter 00-06 ends with 3-5 exercises.
"""
from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parent.parent
LABS = sorted((ROOT / "solutions").glob("[0-9]*.ipynb"))
CHAPTERS = sorted((ROOT / "course").glob("0[0-6]_*.ipynb"))
BLOCK = re.compile(r"### BEGIN SOLUTION\n(.*?)### END SOLUTION", re.S)


def solution_sizes(path: Path) -> list[int]:
    """Non-blank, non-comment lines of each solution block of a notebook, in order."""
    nb = nbformat.read(path, as_version=4)
    sizes = []
    for cell in nb.cells:
        if cell.cell_type == "code":
            for block in BLOCK.findall(cell.source):
                sizes.append(sum(1 for line in block.splitlines() if line.strip() and not line.strip().startswith("#")))
    return sizes


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.stem)
def test_each_lab_has_two_capstones(path):
    sizes = solution_sizes(path)
    capstones = [n for n in sizes if 12 <= n <= 40]
    assert len(capstones) >= 2, f"{path.name}: solution sizes {sizes}; need >= 2 of 12-40 lines"


def test_at_most_a_quarter_of_exercises_are_one_liners():
    sizes = [n for path in LABS for n in solution_sizes(path)]
    one_liners = sum(1 for n in sizes if n <= 3)
    assert len(sizes) >= 7 * 5 and one_liners <= len(sizes) / 4, f"{one_liners} one-liners of {len(sizes)}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_each_chapter_ends_with_exercises(path):
    nb = nbformat.read(path, as_version=4)
    headings = [line for cell in nb.cells if cell.cell_type == "markdown"
                for line in cell.source.splitlines() if line.startswith("### Exercise")]
    assert 3 <= len(headings) <= 5, f"{path.name}: {len(headings)} exercise headings"
