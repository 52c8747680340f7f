"""The grader: full marks for solutions, zero for fresh labs, exact losses, timeouts, tampering."""
import csv
import json
import os

import pytest

from prunekit.grade import format_result, grade_notebook, main
from prunekit.release import ROOT, release_notebook


def _cell(source, grade_id=None, points=0, solution=False):
    meta = {}
    if grade_id:
        meta["nbgrader"] = {"grade": points > 0, "grade_id": grade_id, "points": points,
                            "solution": solution, "locked": not solution, "schema_version": 3}
    return {"cell_type": "code", "metadata": meta, "source": source, "outputs": [], "execution_count": None}


def _mini_solution():
    """A two-exercise lab in the course's format, using a real prunekit check."""
    return {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        _cell("import torch\nfrom prunekit.checks import check_magnitude_mask\n"),
        _cell("def magnitude_mask(weight, sparsity):\n    ### BEGIN SOLUTION\n"
              "    from prunekit.masks import topk_mask\n    return topk_mask(weight.abs(), sparsity)\n"
              "    ### END SOLUTION\n", "mask_solution", solution=True),
        _cell("# NBVAL_CHECK_OUTPUT\ncheck_magnitude_mask(magnitude_mask)\n### BEGIN HIDDEN TESTS\n"
              "assert magnitude_mask(torch.tensor([1., -3., 2.]), 1/3).tolist() == [False, True, True]\n"
              "### END HIDDEN TESTS\n", "mask_check", points=3),
        _cell("def double(x):\n    ### BEGIN SOLUTION\n    return 2 * x\n    ### END SOLUTION\n",
              "double_solution", solution=True),
        _cell("assert double(21) == 42\n### BEGIN HIDDEN TESTS\nassert double(-1) == -2\n"
              "### END HIDDEN TESTS\n", "double_check", points=2),
    ]}


@pytest.fixture
def mini(tmp_path):
    solutions = tmp_path / "solutions"
    solutions.mkdir()
    solution = _mini_solution()
    (solutions / "01_mini.ipynb").write_text(json.dumps(solution))
    lab = release_notebook(solution, name="01_mini.ipynb")
    return solutions, solution, lab, tmp_path


def _write(tmp_path, name, notebook):
    """Write as Jupyter does: sources split into lines (the grader must accept both forms)."""
    notebook = json.loads(json.dumps(notebook))
    for cell in notebook["cells"]:
        cell["source"] = cell["source"].splitlines(keepends=True)
    path = tmp_path / name
    path.write_text(json.dumps(notebook))
    return path


def _answer(lab, index, body):
    lab["cells"][index]["source"] = body


def _points(result):
    return {e.grade_id: e.points for e in result.exercises}


def test_solution_full_marks_and_fresh_lab_zero(mini):
    solutions, solution, lab, tmp = mini
    full = grade_notebook(_write(tmp, "full.ipynb", solution), solutions, cell_timeout=60)
    assert _points(full) == {"mask_check": 3, "double_check": 2} and full.total == 5 == full.max_total
    fresh = grade_notebook(_write(tmp, "fresh.ipynb", lab), solutions, cell_timeout=60)
    assert fresh.total == 0 and fresh.max_total == 5
    assert "not implemented" in fresh.exercises[0].message
    assert full.cell_errors == [] and full.error == ""


def test_one_wrong_exercise_loses_exactly_its_points(mini):
    solutions, _, lab, tmp = mini
    _answer(lab, 1, "def magnitude_mask(weight, sparsity):\n"  # keeps the smallest weights: wrong
                    "    k = round(sparsity * weight.numel())\n"
                    "    idx = weight.abs().flatten().argsort(descending=True)[:k]\n"
                    "    m = torch.ones(weight.numel(), dtype=torch.bool); m[idx] = False\n"
                    "    return m.view_as(weight)\n")
    _answer(lab, 3, "def double(x):\n    return x + x\n")
    result = grade_notebook(_write(tmp, "one_wrong.ipynb", lab), solutions, cell_timeout=60)
    assert _points(result) == {"mask_check": 0, "double_check": 2}
    assert result.exercises[0].message.startswith("✘ magnitude_mask")


def test_hidden_tests_count(mini):
    solutions, _, lab, tmp = mini
    _answer(lab, 1, "def magnitude_mask(weight, sparsity):\n    from prunekit.masks import topk_mask\n"
                    "    return topk_mask(weight.abs(), sparsity)\n")
    _answer(lab, 3, "def double(x):\n    return 42 if x == 21 else 0\n")  # passes the visible test only
    result = grade_notebook(_write(tmp, "hidden.ipynb", lab), solutions, cell_timeout=60)
    assert _points(result) == {"mask_check": 3, "double_check": 0}


def test_infinite_loop_is_cut_by_the_timeout_and_grading_goes_on(mini):
    solutions, _, lab, tmp = mini
    _answer(lab, 1, "def magnitude_mask(weight, sparsity):\n    while True:\n        pass\n")
    _answer(lab, 3, "def double(x):\n    return 2 * x\n")
    result = grade_notebook(_write(tmp, "loop.ipynb", lab), solutions, cell_timeout=5)
    assert _points(result) == {"mask_check": 0, "double_check": 2}
    assert "timed out" in result.exercises[0].message


def test_the_official_check_cell_is_what_counts(mini):
    """Editing, deleting or redefining a check changes nothing: the grader runs solutions/' own cell."""
    solutions, _, lab, tmp = mini
    _answer(lab, 1, "def magnitude_mask(weight, sparsity):\n    return weight != 0\n"
                    "check_magnitude_mask = lambda fn: True  # tamper with the check\n")
    _answer(lab, 3, "def double(x):\n    return 2 * x\n")
    lab["cells"][4]["source"] = "pass  # the check was edited away\n"
    result = grade_notebook(_write(tmp, "tamper.ipynb", lab), solutions, cell_timeout=60)
    assert _points(result) == {"mask_check": 0, "double_check": 2}
    del lab["cells"][2]
    result = grade_notebook(_write(tmp, "deleted.ipynb", lab), solutions, cell_timeout=60)
    assert _points(result) == {"mask_check": 0, "double_check": 2} and result.max_total == 5


def test_nbgrader_released_notebook_scores_full_marks(mini):
    """nbgrader's own release (stub `raise NotImplementedError()`, NBVAL line kept), answered correctly."""
    nbformat = pytest.importorskip("nbformat")
    preprocessors = pytest.importorskip("nbgrader.preprocessors")
    solutions, solution, _, tmp = mini
    nb = nbformat.from_dict(json.loads(json.dumps(solution)))
    for cls in (preprocessors.ClearSolutions, preprocessors.ClearHiddenTests):
        nb, _ = cls().preprocess(nb, {})
    assert "# NBVAL_CHECK_OUTPUT" in nb.cells[2].source and "YOUR CODE HERE" in nb.cells[1].source
    released = tmp / "released" / "01_mini.ipynb"
    released.parent.mkdir()
    released.write_text(nbformat.writes(nb))
    fresh = grade_notebook(released, solutions)
    assert fresh.total == 0 and fresh.max_total == 5
    nb.cells[1].source = solution["cells"][1]["source"]
    nb.cells[3].source = solution["cells"][3]["source"]
    answered = tmp / "answered" / "01_mini.ipynb"
    answered.parent.mkdir()
    answered.write_text(nbformat.writes(nb))
    assert grade_notebook(answered, solutions).total == 5


def test_nbgrader_autograde_grades_a_prunekit_lab(mini):
    """`nbgrader autograde` keeps working on labs/: a lab released by prunekit.release, answered, scores
    full marks with nbgrader (source = the solution), and the unanswered lab scores 0."""
    pytest.importorskip("nbgrader")
    import subprocess
    import sys

    solutions, solution, lab, tmp = mini
    course = tmp / "course"
    (course / "source" / "ps1").mkdir(parents=True)
    (course / "source" / "ps1" / "01_mini.ipynb").write_text(json.dumps(solution))
    answered = json.loads(json.dumps(lab))
    answered["cells"][1]["source"] = ("def magnitude_mask(weight, sparsity):\n"
                                      "    from prunekit.masks import topk_mask\n"
                                      "    return topk_mask(weight.abs(), sparsity)\n")
    answered["cells"][3]["source"] = "def double(x):\n    return 2 * x\n"
    for student, notebook in (("alice", answered), ("bob", lab)):
        (course / "submitted" / student / "ps1").mkdir(parents=True)
        (course / "submitted" / student / "ps1" / "01_mini.ipynb").write_text(json.dumps(notebook))
    env = dict(os.environ, PATH=f"{os.path.dirname(sys.executable)}:{os.environ.get('PATH', '')}")
    common = [f"--CourseDirectory.root={course}", f"--db=sqlite:///{course / 'gradebook.db'}"]
    for command in (["generate_assignment", "ps1", "--force"], ["autograde", "ps1", "--force"]):
        run = subprocess.run([sys.executable, "-m", "nbgrader", *command, *common], cwd=course, env=env,
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gradebook:
        scores = {s: gradebook.find_submission("ps1", s).score for s in ("alice", "bob")}
        assert scores == {"alice": 5, "bob": 0}


def test_plain_sandbox_path_grades_too(mini):
    """Without bubblewrap grading still works, and the result says which protections were missing."""
    solutions, solution, _, tmp = mini
    result = grade_notebook(_write(tmp, "plain.ipynb", solution), solutions, use_bwrap=False)
    assert result.total == 5 and result.missing_protections
    assert any("network" in m for m in result.missing_protections)


def test_crashing_kernel_and_garbage_files_do_not_stop_grading(mini, capsys):
    solutions, _, lab, tmp = mini
    _answer(lab, 1, "import os\nos._exit(1)\n")
    crashed = _write(tmp, "crash.ipynb", lab)
    garbage = tmp / "garbage.ipynb"
    garbage.write_text("{not json")
    results = [grade_notebook(crashed, solutions, cell_timeout=30), grade_notebook(garbage, solutions)]
    assert [r.total for r in results] == [0, 0]
    assert "not a readable notebook" in results[1].error or "cannot tell which lab" in results[1].error
    assert "total: 0 / 5" in format_result(results[0])


def test_class_folder_csv_and_json_and_no_stray_files(mini, capsys):
    solutions, solution, lab, tmp = mini
    folder = tmp / "class"
    (folder / "alice").mkdir(parents=True)
    (folder / "bob").mkdir()
    (folder / "alice" / "01_mini.ipynb").write_text(json.dumps(solution))
    (folder / "bob" / "01_mini.ipynb").write_text(json.dumps(lab))
    before = {p for p in tmp.rglob("*")}
    cwd_before = set(os.listdir("."))
    main([str(folder), "--solutions", str(solutions), "--csv", str(tmp / "grades.csv"),
          "--json", str(tmp / "grades.json"), "--cell-timeout", "60"])
    rows = list(csv.DictReader(open(tmp / "grades.csv")))
    assert [(r["student"], r["total"], r["max_total"]) for r in rows] == [("alice", "5", "5"), ("bob", "0", "5")]
    assert rows[1]["01_mini/double_check"] == "0"
    assert rows[0]["01_mini/mask_check"] == "3"
    assert len(json.loads((tmp / "grades.json").read_text())) == 2
    after = {p for p in tmp.rglob("*")}
    assert after - before == {tmp / "grades.csv", tmp / "grades.json"}
    assert set(os.listdir(".")) == cwd_before
    assert "grade_id" in capsys.readouterr().out


REAL_SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9]*.ipynb"))


@pytest.mark.parametrize("solution", REAL_SOLUTIONS, ids=[p.stem for p in REAL_SOLUTIONS])
def test_real_solutions_full_marks_and_labs_zero(solution):
    """Slow (about 10-30 s per lab on 2 cores): every solution scores full marks, its released lab 0."""
    full = grade_notebook(solution)
    assert full.exercises and full.total == full.max_total, format_result(full)
    assert not full.cell_errors and not full.error, format_result(full)
    fresh = grade_notebook(ROOT / "labs" / solution.name)
    assert fresh.total == 0 and fresh.max_total == full.max_total, format_result(fresh)
