"""Authoring helper: move code that follows `### END HIDDEN TESTS` in a graded cell into its own cell.

Why: in grading, hidden tests run; when they fail, anything after them in the same cell (the fallback
`use_or_reference(...)`) never runs and later cells break. A separate cell always runs.
Usage: python scripts/split_fallbacks.py solutions/01_weight_pruning.ipynb [...]
"""
import sys

import nbformat

END = "### END HIDDEN TESTS"

for path in sys.argv[1:]:
    nb = nbformat.read(path, as_version=4)
    cells, moved = [], 0
    for cell in nb.cells:
        cells.append(cell)
        if cell.cell_type != "code" or not cell.metadata.get("nbgrader", {}).get("grade") or END not in cell.source:
            continue
        head, _, tail = cell.source.partition(END)
        if tail.strip():
            cell.source = head + END + "\n"
            fallback = nbformat.v4.new_code_cell(tail.lstrip("\n"))
            fallback.id = f"{cell.get('id', 'cell')}-fallback"[:64]
            cells.append(fallback)
            moved += 1
    nb.cells = cells
    nbformat.write(nb, path)
    print(f"{path}: moved {moved} fallback(s) into their own cells")
