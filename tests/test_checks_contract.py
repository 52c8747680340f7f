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

LABS = {f"lab{n}": importlib.import_module(f"prunekit.checks.lab{n}") for n in range(1, 8)}
# Fewest cases each lab's checks run: a reference that "passes" on a handful of cases proves little.
MIN_CASES = {"lab1": 4, "lab2": 7, "lab3": 6, "lab4": 7, "lab5": 6, "lab6": 8, "lab7": 4}


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


# ----------------------------------------------------------------------------- every sentence has a case
# A lab's check module may declare, for each exercise, the statements of its contract and the labels of
# the cases that exercise each one (a label matches when it contains the given text):
#
#     CONTRACT = {"conv_macs": {"dilation d > 1 shrinks the output": ["dilation 2"],
#                               "non-square kernel, stride and padding": ["kernel (3, 5)"]}}
#
# The test below runs each check on its reference, records the labels of the cases it really ran, and
# fails for a statement no case covers. An exercise without a CONTRACT entry is listed by
# test_contract_declarations (so the gap is visible), not silently accepted.
def _recorded_labels(lab: str, name: str) -> list[str]:
    labels: list[str] = []
    module = LABS[lab]
    original = module.run_check

    def recording(check_name, fn, cases, hint, **kwargs):
        built = list(cases() if callable(cases) else cases)
        labels.extend(case.label for case in built)
        return original(check_name, fn, built, hint, **kwargs)

    module.run_check = recording
    try:
        _check(lab, name)(_reference(lab, name), strict=False)
    finally:
        module.run_check = original
    return labels


DECLARED = [(lab, name, statement, wanted) for lab in LABS for name, table in getattr(LABS[lab], "CONTRACT", {}).items()
            for statement, wanted in table.items()]


def _uncovered(labels: list[str], table: dict) -> list[str]:
    """The statements of one exercise's CONTRACT table that no case label covers."""
    return [statement for statement, wanted in table.items()
            if not wanted or not all(any(text in label for label in labels) for text in wanted)]


def test_every_contract_statement_has_a_case(capsys):
    # the rule itself, on a made-up table: a statement whose case does not exist is reported
    labels = ["conv 3x3, dilation 2", "kernel (3, 5), stride (1, 2)"]
    assert _uncovered(labels, {"dilation": ["dilation 2"], "non-square": ["kernel (3, 5)"]}) == []
    assert _uncovered(labels, {"dilation": ["dilation 3"], "padding": []}) == ["dilation", "padding"]
    # every table the labs declare
    problems = {}
    for lab in LABS:
        for name, table in getattr(LABS[lab], "CONTRACT", {}).items():
            missing = _uncovered(_recorded_labels(lab, name), table)
            if missing:
                problems[f"{lab}.{name}"] = missing
    assert problems == {}, f"contract statements without a case: {problems}"


def test_contract_declarations():
    """Exercises whose module declares no CONTRACT entry yet (issue 18, point 7): reported, and a
    declared entry must name a real exercise."""
    for lab, module in LABS.items():
        declared = getattr(module, "CONTRACT", {})
        assert set(declared) <= set(_exercises(lab)), f"{lab}.CONTRACT names unknown exercises"
    missing = {lab: sorted(set(_exercises(lab)) - set(getattr(LABS[lab], "CONTRACT", {}))) for lab in LABS}
    print("exercises without a CONTRACT table:", {k: v for k, v in missing.items() if v})


# ----------------------------------------------------------------------------- the holes named in issue 18
def _conv_macs_ignoring(what: str):
    def wrong(conv, input_hw):
        (h, w) = input_hw
        kh, kw = conv.kernel_size
        sh, sw = conv.stride
        ph, pw = conv.padding
        dh, dw = conv.dilation
        if what == "dilation":
            dh = dw = 1
        if what == "non-square":
            kw, sw, pw, dw = kh, sh, ph, dh
        out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
        out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
        return out_h * out_w * conv.out_channels * (conv.in_channels // conv.groups) * kh * kw
    return wrong


@pytest.mark.parametrize("what", ["dilation", "non-square"])
def test_conv_macs_check_covers_dilation_and_non_square_geometry(what, capsys):
    """Issue 18: a conv_macs that ignores dilation, or reads only the first of (kernel, stride, padding)."""
    assert not LABS["lab3"].check_conv_macs(_conv_macs_ignoring(what), strict=False)


def test_iterative_targets_check_wants_the_exact_final_sparsity(capsys):
    """Issue 18: the last target must be exactly the final sparsity (visible at 0.3 or 0.1)."""
    def power_only(final, rounds):
        return [1.0 - (1.0 - final) ** (k / rounds) for k in range(1, rounds + 1)]
    assert power_only(0.3, 3)[-1] != 0.3 or power_only(0.1, 3)[-1] != 0.1  # the float error is real
    assert not LABS["lab4"].check_iterative_targets(power_only, strict=False)


def test_should_stop_check_wants_a_python_bool(capsys):
    """Issue 18: return types the text states (here a Python bool, not a 0-dim tensor)."""
    def tensor_bool(history, tolerance):
        return torch.tensor(history[-1] < history[0] - tolerance)
    assert not LABS["lab4"].check_should_stop(tensor_bool, strict=False)
