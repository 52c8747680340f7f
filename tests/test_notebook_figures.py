"""A stored notebook that draws figures keeps them as images (issue 24, point 9).

A reader browsing the repository (GitHub, nbviewer, JupyterLab before running anything) sees only the
stored outputs. Notebooks re-executed with ``MPLBACKEND=Agg`` lose every inline figure, so this test
fails, naming the notebook, when a chapter or solution has plotting calls but stores no image.
Fix: ``make outputs NB=<notebook>`` (scripts/execute_notebooks.sh draws with the inline backend).
The generated labs are left out: their outputs are cleared on purpose.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "course").glob("*.ipynb")) + sorted((ROOT / "solutions").glob("*.ipynb"))

# Calls that draw a figure: pyplot, axes methods, and the course's own prunekit.plots helpers.
PLOTTING_CALL = re.compile(
    r"\bplt\.(?:subplots|figure|plot|imshow|bar|barh|hist|scatter|show)\("
    r"|\b\w*ax\w*\.(?:plot|imshow|bar|barh|hist|scatter|step|errorbar|fill_between)\("
    r"|(?<!def )\bplot_\w+\(")
IMAGE_TYPES = ("image/png", "image/svg+xml", "image/jpeg")


def _code_lines(source: str) -> str:
    """The cell's code without comments and IPython magics (a commented-out plot draws nothing)."""
    lines = [line.split("#", 1)[0] for line in source.splitlines() if not line.lstrip().startswith(("%", "!"))]
    return "\n".join(lines)


def drawing_cells_and_images(path: Path) -> tuple[list[int], int]:
    """Indices of the code cells with plotting calls, and the number of images stored in the notebook.

    Example:
        >>> cells, images = drawing_cells_and_images(ROOT / "course" / "01_concepts.ipynb")  # doctest: +SKIP
    """
    notebook = json.loads(path.read_text())
    drawing, images = [], 0
    for index, cell in enumerate(notebook["cells"]):
        if cell["cell_type"] != "code":
            continue
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if PLOTTING_CALL.search(_code_lines(source)):
            drawing.append(index)
        images += sum(1 for output in cell.get("outputs", [])
                      if any(kind in output.get("data", {}) for kind in IMAGE_TYPES))
    return drawing, images


def test_the_detector_sees_figures_and_ignores_comments(tmp_path):
    def notebook(*cells):
        path = tmp_path / "nb.ipynb"
        path.write_text(json.dumps({"cells": [{"cell_type": "code", "source": s, "outputs": o}
                                              for s, o in cells]}))
        return path

    png = [{"output_type": "display_data", "data": {"image/png": "iVBOR", "text/plain": "<Figure>"}}]
    text = [{"output_type": "stream", "name": "stdout", "text": "done"}]
    assert drawing_cells_and_images(notebook(("fig, ax = plt.subplots()\nax.plot(x)", png))) == ([0], 1)
    assert drawing_cells_and_images(notebook(("x = 1", text), ("plot_layer_sparsity(model)", text))) == ([1], 0)
    assert drawing_cells_and_images(notebook(("# ax.plot(x)\nprint(1)", text))) == ([], 0)
    assert drawing_cells_and_images(notebook(("def plot_it(ax):\n    return 1", text))) == ([], 0)


DRAWING = [p for p in NOTEBOOKS if drawing_cells_and_images(p)[0]]


def test_most_notebooks_draw():
    """Guards the detector: if it stopped seeing plotting calls, the test below would check nothing."""
    assert len(DRAWING) >= len(NOTEBOOKS) - 2, sorted(set(NOTEBOOKS) - set(DRAWING))


@pytest.mark.parametrize("path", DRAWING, ids=[f"{p.parent.name}/{p.name}" for p in DRAWING])
def test_a_notebook_that_draws_stores_its_figures(path):
    drawing, images = drawing_cells_and_images(path)
    name = path.relative_to(ROOT)
    assert images > 0, (f"{name} draws figures in {len(drawing)} code cell(s) (cells {drawing}) but stores no "
                        f"image: it was executed with a non-inline backend (MPLBACKEND=Agg). Re-execute it "
                        f"with `make outputs NB={name}`.")
