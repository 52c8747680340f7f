"""labs/ is generated from solutions/ by `python -m prunekit.release`, deterministically."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from prunekit import release

ROOT = Path(__file__).resolve().parent.parent


def _code(source, **metadata):
    return {"cell_type": "code", "execution_count": 7, "id": f"c{abs(hash(source)) % 10**8}",
            "metadata": metadata, "outputs": [{"output_type": "stream", "name": "stdout", "text": "hi\n"}],
            "source": source}


def _tiny_notebook():
    solution = _code("# Exercise 2.1: prune it\n"
                     "def magnitude_mask(weight, sparsity):\n"
                     "    \"\"\"Docstring stays.\"\"\"\n"
                     "    ### BEGIN SOLUTION\n"
                     "    k = round(sparsity * weight.numel())\n"
                     "    return weight\n"
                     "    ### END SOLUTION\n"
                     "\n"
                     "class Pruner:\n"
                     "    def step(self):\n"
                     "        ### BEGIN SOLUTION\n"
                     "        return 1\n"
                     "        ### END SOLUTION\n",
                     nbgrader={"grade": False, "grade_id": "ex2_1_magnitude_mask", "locked": False,
                               "schema_version": 3, "solution": True, "task": False},
                     execution={"iopub.execute_input": "2024-01-01T00:00:00Z"}, scrolled=True)
    graded = _code("# NBVAL_CHECK_OUTPUT\n"
                   "ok = check_magnitude_mask(magnitude_mask)\n"
                   "### BEGIN HIDDEN TESTS\n"
                   "assert ok\n"
                   "### END HIDDEN TESTS\n"
                   "magnitude_mask = use_or_reference(magnitude_mask, ok, reference_magnitude_mask)",
                   nbgrader={"grade": True, "grade_id": "ex2_1_check", "locked": True, "points": 2,
                             "schema_version": 3, "solution": False, "task": False},
                   tags=["graded"])
    answer = {"cell_type": "markdown", "id": "md1", "metadata": {"nbgrader": {"solution": True, "grade": True,
                                                                              "grade_id": "q1", "points": 1}},
              "source": "Why?\n### BEGIN SOLUTION\nBecause ties.\n### END SOLUTION\n"}
    only = _code("print('solution only')", tags=["solution_only"])
    return {"cells": [solution, graded, answer, only], "nbformat": 4, "nbformat_minor": 5,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                         "language_info": {"name": "python", "version": "3.12.3"}, "widgets": {"state": {}}}}


def test_release_transformation():
    lab = release.release_notebook(_tiny_notebook(), name="02_tiny.ipynb")
    assert len(lab["cells"]) == 3  # the solution_only cell is gone
    solution, graded, answer = lab["cells"]
    assert solution["source"] == ("# Exercise 2.1: prune it\n"
                                  "def magnitude_mask(weight, sparsity):\n"
                                  "    \"\"\"Docstring stays.\"\"\"\n"
                                  "    raise NotImplementedError(\"Exercise 2.1: write magnitude_mask\")\n"
                                  "\n"
                                  "class Pruner:\n"
                                  "    def step(self):\n"
                                  "        raise NotImplementedError(\"Exercise 2.1: write step\")\n")
    assert graded["source"] == ("ok = check_magnitude_mask(magnitude_mask)\n"
                                "magnitude_mask = use_or_reference(magnitude_mask, ok, reference_magnitude_mask)")
    assert "HIDDEN" not in graded["source"] and "assert ok" not in graded["source"]
    assert answer["source"] == "Why?\nYOUR ANSWER HERE\n"
    # metadata kept, volatile metadata dropped, outputs cleared
    assert solution["metadata"] == {"nbgrader": _tiny_notebook()["cells"][0]["metadata"]["nbgrader"]}
    assert graded["metadata"]["nbgrader"]["points"] == 2 and graded["metadata"]["tags"] == ["graded"]
    for cell in (solution, graded):
        assert cell["outputs"] == [] and cell["execution_count"] is None
    assert "outputs" not in answer
    assert lab["metadata"]["kernelspec"]["name"] == "python3"
    assert lab["metadata"]["language_info"] == {"name": "python"} and "widgets" not in lab["metadata"]
    assert lab["metadata"]["prunekit"]["generated_from"] == "solutions/02_tiny.ipynb"
    nbformat.validate(nbformat.reads(release.dumps(lab), as_version=4))


def test_release_is_deterministic_and_idempotent():
    nb = _tiny_notebook()
    first = release.dumps(release.release_notebook(nb, "x.ipynb"))
    assert first == release.dumps(release.release_notebook(json.loads(json.dumps(nb)), "x.ipynb"))
    again = release.dumps(release.release_notebook(json.loads(first), "x.ipynb"))
    assert again == first
    assert first.endswith("}\n") and '"cells": [' in first  # sorted keys, Jupyter's one-space indent
    assert list(json.loads(first)) == sorted(json.loads(first))


@pytest.mark.parametrize("source,message", [
    ("x = 1\n### BEGIN SOLUTION\nx = 2\n### END SOLUTION\n", "top level"),
    ("def f():\n    ### BEGIN SOLUTION\n    return 1\n", "no matching"),
    ("def f():\n    return 1\n    ### END SOLUTION\n", "without a matching"),
    ("def f():\n    ### BEGIN SOLUTION\n    ### BEGIN HIDDEN TESTS\n    ### END HIDDEN TESTS\n"
     "    ### END SOLUTION\n", "nested"),
])
def test_release_rejects_broken_markers(source, message):
    nb = {"cells": [_code(source)], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    with pytest.raises(release.ReleaseError, match=message):
        release.release_notebook(nb)


def test_cli_writes_and_checks(tmp_path):
    solutions, labs = tmp_path / "solutions", tmp_path / "labs"
    solutions.mkdir()
    (solutions / "02_tiny.ipynb").write_text(json.dumps(_tiny_notebook()))
    assert release.main(["--check", "--solutions", str(solutions), "--labs", str(labs)]) == 1
    assert release.main(["--solutions", str(solutions), "--labs", str(labs)]) == 0
    written = (labs / "02_tiny.ipynb").read_text()
    assert "NotImplementedError" in written and "assert ok" not in written
    assert release.main(["--check", "--solutions", str(solutions), "--labs", str(labs)]) == 0
    (labs / "02_tiny.ipynb").write_text(written.replace("Docstring", "Edited"))
    assert release.stale_labs(solutions, labs) == [f"{labs / '02_tiny.ipynb'} (stale)"]
    (labs / "09_orphan.ipynb").write_text(written)
    assert f"{labs / '09_orphan.ipynb'} (no solution)" in release.stale_labs(solutions, labs)
    # naming notebooks restricts both commands to them (other authors' labs are left alone)
    (solutions / "03_other.ipynb").write_text(json.dumps(_tiny_notebook()))
    assert release.main(["02_tiny", "--solutions", str(solutions), "--labs", str(labs)]) == 0
    assert not (labs / "03_other.ipynb").exists()
    assert release.main(["--check", "02_tiny.ipynb", "--solutions", str(solutions), "--labs", str(labs)]) == 0
    assert release.main(["--check", "07_unknown", "--solutions", str(solutions), "--labs", str(labs)]) == 2


def test_committed_labs_are_up_to_date():
    """Fails when someone edited solutions/ (or labs/) without running `python -m prunekit.release`."""
    if not release.solution_files(ROOT / "solutions"):
        pytest.skip("no solution notebooks yet")
    problems = release.stale_labs(ROOT / "solutions", ROOT / "labs")
    assert problems == [], "run `python -m prunekit.release`: " + ", ".join(problems)


def test_module_entry_point_check():
    result = subprocess.run([sys.executable, "-m", "prunekit.release", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_solution_notebooks_follow_conventions():
    """Every exercise region sits in a solution cell; every graded cell is locked and ends with its hidden
    tests; grade ids are unique."""
    for path in release.solution_files(ROOT / "solutions"):
        nb = json.loads(path.read_text())
        ids = []
        for cell in nb["cells"]:
            source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
            meta = cell.get("metadata", {}).get("nbgrader")
            if release.BEGIN_SOLUTION in source and cell["cell_type"] == "code":
                assert meta and meta["solution"] and not meta["grade"], (path.name, source[:80])
            if release.BEGIN_HIDDEN in source:
                assert meta and meta["grade"] and meta["locked"] and meta["points"] > 0, (path.name, source[:80])
                # A failing hidden test stops its cell: code after it (a fallback) would never run.
                after = source.partition(release.END_HIDDEN)[2]
                assert not after.strip(), f"{path.name}: move {after.strip()[:60]!r} out of the graded cell"
            if meta:
                ids.append(meta["grade_id"])
        assert len(ids) == len(set(ids)), f"{path.name}: duplicate nbgrader grade_id"
        tags = [t for c in nb["cells"] for t in c.get("metadata", {}).get("tags", [])]
        assert tags.count("parameters") == 1, f"{path.name}: needs exactly one cell tagged 'parameters'"


def test_linked_images_travel_inside_the_lab(tmp_path):
    """A lab handed out alone still shows the reference figures, and does not point into solutions/."""
    import base64

    solutions, labs = tmp_path / "solutions", tmp_path / "labs"
    (solutions / "figures").mkdir(parents=True)
    png = b"\x89PNG\r\n\x1a\n fake image bytes"
    (solutions / "figures" / "fig_full.png").write_bytes(png)
    notebook = _tiny_notebook()
    notebook["cells"].append({"cell_type": "markdown", "id": "fig", "metadata": {},
                              "source": "![Figure 1 in full mode](figures/fig_full.png)\n"
                                        "![web](https://example.org/a.png) ![kept](attachment:old.png)\n",
                              "attachments": {"old.png": {"image/png": "AAAA"}}})
    (solutions / "02_tiny.ipynb").write_text(json.dumps(notebook))
    assert release.main(["--solutions", str(solutions), "--labs", str(labs)]) == 0
    cell = json.loads((labs / "02_tiny.ipynb").read_text())["cells"][-1]
    source = "".join(cell["source"])
    assert "![Figure 1 in full mode](attachment:fig_full.png)" in source and "figures/" not in source
    assert "(https://example.org/a.png)" in source and "(attachment:old.png)" in source
    assert base64.b64decode(cell["attachments"]["fig_full.png"]["image/png"]) == png
    assert cell["attachments"]["old.png"] == {"image/png": "AAAA"}
    nbformat.validate(nbformat.reads((labs / "02_tiny.ipynb").read_text(), as_version=4))
    # a link to a file that is not there stops the release, naming the cell
    notebook["cells"][-1]["source"] = "![gone](figures/missing.png)\n"
    (solutions / "02_tiny.ipynb").write_text(json.dumps(notebook))
    with pytest.raises(release.ReleaseError, match="cell 4: the image figures/missing.png"):
        release.lab_text(solutions / "02_tiny.ipynb")


@pytest.mark.parametrize("folder", ["course", "solutions", "labs"])
def test_every_image_link_in_the_notebooks_resolves(folder):
    """Each Markdown image link points at a file beside the notebook or at an attachment of its cell."""
    import re

    broken = []
    for path in sorted((ROOT / folder).glob("*.ipynb")):
        for index, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] != "markdown":
                continue
            for target in re.findall(r"!\[[^\]]*\]\(([^)\s]+)\)", "".join(cell["source"])):
                if target.startswith("attachment:"):
                    ok = target.split(":", 1)[1] in cell.get("attachments", {})
                else:
                    ok = target.startswith(("http://", "https://")) or (path.parent / target).is_file()
                if not ok:
                    broken.append(f"{path.name}, cell {index}: {target}")
    assert not broken, broken
