"""Every generated lab runs top to bottom in fast mode with all exercises still unsolved.

That is what a learner sees on opening a lab: each check reports "not implemented yet", the lab goes on
with prunekit's reference implementations, and no cell raises. One kernel per lab, its own working
directory, so the labs can run in parallel (``pytest -n 2 --dist loadfile`` or ``--dist loadgroup``).
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
LABS = sorted((ROOT / "labs").glob("[0-9]*.ipynb"))
CHECK_CALL = re.compile(r"^[^#\n]*\bcheck_\w+\(", re.MULTILINE)
FALLBACK_CALL = re.compile(r"^[^#\n]*\buse_or_reference\(", re.MULTILINE)


def _stdout(nb) -> str:
    return "".join(output.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                   for output in cell.get("outputs", []) if output.get("output_type") == "stream")


@pytest.mark.parametrize("path", [pytest.param(p, id=p.stem, marks=pytest.mark.xdist_group(p.stem)) for p in LABS])
def test_lab_runs_unsolved_in_fast_mode(path, monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNEKIT_FAST", "1")
    monkeypatch.delenv("PRUNEKIT_STRICT", raising=False)  # an unsolved exercise must not stop the lab
    nb = nbformat.read(path, as_version=4)
    code = "\n".join(cell.source for cell in nb.cells if cell.cell_type == "code")
    n_checks = len(CHECK_CALL.findall(code))
    n_fallbacks = len(FALLBACK_CALL.findall(code))
    assert n_checks >= 5, f"{path.name}: a lab needs at least 5 checked exercises, found {n_checks}"
    assert "NotImplementedError" in code, f"{path.name} has no exercise stubs: was it generated from solutions/?"

    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the traceback, if any cell fails

    errors = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs
              if o.get("output_type") == "error"]
    assert not errors, f"{path.name}: {[e['ename'] + ': ' + e['evalue'] for e in errors]}"
    out = _stdout(nb)
    assert out.count("not implemented yet") == n_checks, out
    assert out.count("using prunekit's reference implementation") == n_fallbacks, out
    verdicts = re.findall(r"^[✔✘] \w+: .*$", out, re.MULTILINE)
    assert not verdicts, f"an unsolved exercise must neither pass nor fail its check: {verdicts}"
    assert list(tmp_path.iterdir()) == [], f"{path.name} left files in its working directory"
