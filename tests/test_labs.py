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


# ----------------------------------------------------------------------------- the notebook plumbing the labs use
def test_fast_mode_and_budget(monkeypatch):
    from prunekit import notebook

    monkeypatch.delenv("PRUNEKIT_FAST", raising=False)
    assert notebook.fast_mode(False) is False and notebook.fast_mode(True) is True
    monkeypatch.setenv("PRUNEKIT_FAST", "1")
    assert notebook.fast_mode(False) is True
    monkeypatch.setenv("PRUNEKIT_FAST", "0")
    assert notebook.fast_mode(True) is False
    monkeypatch.setenv("PRUNEKIT_FAST", "ture")
    with pytest.raises(ValueError, match="PRUNEKIT_FAST"):
        notebook.fast_mode(False)
    with pytest.raises(TypeError):
        notebook.fast_mode("yes")
    assert notebook.budget(True, fast=1, full=5) == 1 and notebook.budget(False, fast=[1], full=[5]) == [5]


def test_setup_is_reproducible(monkeypatch):
    import torch

    from prunekit import notebook

    monkeypatch.delenv("PRUNEKIT_THREADS", raising=False)
    threads = torch.get_num_threads()
    try:
        env = notebook.setup(seed=3, fast=True, quiet=True)
        first = torch.rand(3)
        notebook.setup(seed=3, fast=True, quiet=True)
        assert torch.equal(first, torch.rand(3))
        assert env.threads == 1 and env.fast and env.seed == 3 and "FAST" in str(env)
    finally:
        torch.set_num_threads(threads)


def test_in_memory_loader_order_depends_only_on_seed():
    import torch

    from prunekit import notebook

    ds = notebook.InMemory(torch.arange(20.0).view(20, 1), torch.arange(20))
    order = lambda seed: torch.cat([y for _, y in notebook.loader(ds, 6, shuffle=True, seed=seed)]).tolist()
    assert order(1) == order(1) != order(2)
    assert sorted(order(1)) == list(range(20))
    assert [len(y) for _, y in notebook.loader(ds, 6)] == [6, 6, 6, 2]
    with pytest.raises(TypeError):
        notebook.loader(list(range(3)))
