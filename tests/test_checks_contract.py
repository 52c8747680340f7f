"""The promises every auto-check of every lab keeps, tested once for all of them.

A learner meets a check as one printed line, so each ``check_<name>`` of labs 1-6 must:
pass the reference (and say so in one line), report an unfinished exercise as "not implemented"
instead of crashing, raise in strict mode (how CI and the grader run the solutions), never crash
on garbage, and leave torch's global random state as it found it. What each check catches
(its list of known-wrong implementations) is tested in ``test_checks_lab<N>.py``.
"""
from __future__ import annotations

import importlib

import pytest
import torch

from prunekit import checks
from prunekit.checks import core

LABS = {f"lab{n}": importlib.import_module(f"prunekit.checks.lab{n}") for n in range(1, 7)}
# Fewest cases each lab's checks run: a reference that "passes" on a handful of cases proves little.
MIN_CASES = {"lab1": 4, "lab2": 7, "lab3": 6, "lab4": 7, "lab5": 6, "lab6": 8}


def _exercises(lab: str) -> list[str]:
    return sorted(name[len("check_"):] for name in LABS[lab].__all__ if name.startswith("check_"))


CHECKS = [(lab, name) for lab in LABS for name in _exercises(lab)]
IDS = [f"{lab}-{name}" for lab, name in CHECKS]


def _check(lab: str, name: str):
    return getattr(LABS[lab], f"check_{name}")


def _reference(lab: str, name: str):
    return getattr(LABS[lab], f"reference_{name}")


def _stub(*args, **kwargs):
    raise NotImplementedError("Exercise N.x: write it")


@pytest.fixture(autouse=True)
def _not_strict(monkeypatch):
    monkeypatch.delenv("PRUNEKIT_STRICT", raising=False)


@pytest.mark.parametrize("lab", LABS)
def test_each_lab_exports_check_and_reference_pairs(lab):
    module, names = LABS[lab], _exercises(lab)
    assert len(names) >= 5
    assert all(f"reference_{n}" in module.__all__ for n in names)
    for name in module.__all__:                       # the notebooks import them from prunekit.checks
        assert getattr(checks, name) is getattr(module, name)


@pytest.mark.parametrize("lab,name", CHECKS, ids=IDS)
def test_reference_passes_with_one_line(lab, name, capsys):
    result = _check(lab, name)(_reference(lab, name), strict=True)
    assert result and result.status == "pass" and result.cases >= MIN_CASES[lab], result.line
    out = capsys.readouterr().out
    assert out.startswith(f"✔ {name}: correct on ") and out.count("\n") == 1, out


@pytest.mark.parametrize("lab,name", CHECKS, ids=IDS)
def test_not_implemented_is_reported_not_raised(lab, name, capsys):
    result = _check(lab, name)(_stub)
    assert not result and result.status == "not_implemented"
    assert capsys.readouterr().out.strip() == f"… {name}: not implemented yet"


@pytest.mark.parametrize("lab,name", CHECKS, ids=IDS)
def test_strict_mode_raises(lab, name, monkeypatch, capsys):
    check = _check(lab, name)
    with pytest.raises(AssertionError, match="PRUNEKIT_STRICT"):
        check(_stub, strict=True)
    monkeypatch.setenv("PRUNEKIT_STRICT", "1")         # strict taken from the environment
    with pytest.raises(AssertionError, match=name):
        check(lambda *args, **kwargs: None)
    assert check(_reference(lab, name))                # passing stays quiet-and-true in strict mode
    monkeypatch.setenv("PRUNEKIT_STRICT", "0")
    assert check(lambda *args, **kwargs: None).status == "fail"


def _explodes(*args, **kwargs):
    raise ZeroDivisionError("boom")


GARBAGE = [None, 42, "not a function", _explodes, lambda *a, **k: None, lambda *a, **k: "text",
           lambda *a, **k: (None, None), lambda *a, **k: torch.zeros(3, 3, 3, 3, 3)]


@pytest.mark.filterwarnings("ignore")                  # some garbage makes PyTorch warn; that is fine
@pytest.mark.parametrize("lab,name", CHECKS, ids=IDS)
def test_never_crashes_on_garbage(lab, name, capsys):
    for garbage in GARBAGE:
        result = _check(lab, name)(garbage, strict=False)
        assert result.status == "fail", (garbage, result.line)
        line = capsys.readouterr().out.strip()
        assert line.startswith(f"✘ {name}: ") and " — hint: " in line and line.count("\n") == 0, line
        if garbage is _explodes:                       # the learner sees their own error and where
            assert "ZeroDivisionError: boom" in line and "(in _explodes, line" in line, line


def _reseeds_then_fails(*args, **kwargs):
    torch.manual_seed(12345)                           # a learner's "random" answer seeding the global RNG
    torch.rand(100)
    return None


@pytest.mark.parametrize("lab,name", CHECKS, ids=IDS)
def test_global_rng_is_left_alone(lab, name):
    torch.manual_seed(0)
    state = torch.get_rng_state()
    for fn in (_reference(lab, name), _reseeds_then_fails, _stub):
        _check(lab, name)(fn, strict=False)
        assert torch.equal(state, torch.get_rng_state()), f"check_{name} changed torch's RNG with {fn}"


# ----------------------------------------------------------------------------- checks.core itself
def test_use_or_reference(capsys):
    def mine(w, s):
        return w.abs() >= 0

    good = core.CheckResult("magnitude_mask", "pass", "ok")
    bad = core.CheckResult("magnitude_mask", "not_implemented", "not implemented yet")
    assert checks.use_or_reference(mine, good, checks.reference_magnitude_mask) is mine
    assert capsys.readouterr().out == ""
    assert checks.use_or_reference(mine, bad, checks.reference_magnitude_mask) is checks.reference_magnitude_mask
    assert "using prunekit's reference implementation" in capsys.readouterr().out
    with pytest.raises(TypeError):
        checks.use_or_reference(mine, bad, reference=None)


def test_check_result_contract():
    assert bool(core.CheckResult("f", "pass", "x")) and not core.CheckResult("f", "fail", "x")
    assert core.CheckResult("f", "fail", "bad", "do this").line == "✘ f: bad — hint: do this"
    assert repr(core.CheckResult("f", "pass", "x")) == "CheckResult('f', 'pass')"
    with pytest.raises(ValueError):
        core.CheckResult("f", "passed", "x")


def test_strict_mode_reads_environment(monkeypatch):
    monkeypatch.setenv("PRUNEKIT_STRICT", "1")
    assert core.strict_mode()
    monkeypatch.setenv("PRUNEKIT_STRICT", "0")
    assert not core.strict_mode()
    monkeypatch.setenv("PRUNEKIT_STRICT", "maybe")
    with pytest.raises(ValueError):
        core.strict_mode()
