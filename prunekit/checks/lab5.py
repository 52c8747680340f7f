"""Checks for Lab 5 (finding a good pruning strategy).

=============================  ==============================================  ==============================
exercise                       contract                                        check
=============================  ==============================================  ==============================
``exact_counts``               ``({name: real count}, total) -> {name: int}``:  :func:`check_exact_counts`
                               floor or ceil each, sum exactly ``total``,
                               largest remainders rounded up
``scale_allocation``           ``(raw, sizes, sparsity) -> {name: sparsity}``:  :func:`check_scale_allocation`
                               density ∝ raw (one factor ε, capped at 1),
                               exactly ``round(s*N)`` weights pruned in all
``best_config``                ``(results, tolerance) -> row``: sparsest row    :func:`check_best_config`
                               within ``tolerance`` of the best *validation*
                               accuracy
``pareto_front``               ``([(cost, acc), ...]) -> [(cost, acc), ...]``:  :func:`check_pareto_front`
                               non-dominated points, once each, by cost
``nm_mask``                    ``(weight (out, in), n, m) -> mask``: keep the   :func:`check_nm_mask`
                               ``n`` largest ``|w|`` of every ``m``
                               consecutive inputs
``grid_search``                ``(model, val, grid, tolerance) -> {"rows",       :func:`check_grid_search`
                               "chosen", "front"}``: one-shot pruning per
                               ParameterGrid config on fresh copies, judged on
                               validation; the rule's choice; Pareto front
``information_criteria``       ``(model, x, y) -> (aic, bic)``: summed NLL in    :func:`check_information_criteria`
                               nats, k = nonzero parameters, n = len(x)
=============================  ==============================================  ==============================

Each check prints one line and returns a :class:`~prunekit.checks.core.CheckResult`. The answers it
compares with, the ``reference_*`` functions, live in :mod:`prunekit.checks.references.lab5` (re-exported
here); :func:`~prunekit.checks.core.use_or_reference` falls back to them.
"""
from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from .core import Case, CheckResult, as_mask, call, describe_tensor, expect, run_check
from .references.lab5 import (reference_best_config, reference_exact_counts, reference_grid_search,
                              reference_information_criteria, reference_nm_mask, reference_pareto_front,
                              reference_scale_allocation, _SLACK)

__all__ = [
    "check_exact_counts", "check_scale_allocation", "check_best_config", "check_pareto_front", "check_nm_mask",
    "reference_exact_counts", "reference_scale_allocation", "reference_best_config", "reference_pareto_front",
    "reference_nm_mask", "erk_raw_density", "check_information_criteria", "reference_information_criteria",
    "check_grid_search", "reference_grid_search",
]

# Library functions an exercise must not call (it asks the learner to write them); read by
# prunekit.checks.provenance without importing this module.
MUST_NOT_CALL = {
    "scale_allocation": ["prunekit.sensitivity.erk_allocation"],
    "nm_mask": ["prunekit.masks.nm_mask"],
}


# Every statement of each exercise's contract (as the notebook states it) and the cases that test it
# (a case counts when its label contains the text); tests/test_checks_contract.py runs the checks and
# fails for a statement without a case (issue 18, point 7).
CONTRACT = {
    "exact_counts": {
        "floor or ceil of each, summing to exactly total": ["{'a': 0.6, 'b': 0.6, 'c': 0.8}, total 2"],
        "the extra units to the largest remainders (a small entry can get one)": ["a small layer gets the unit"],
        "whole numbers, zeros, one entry": ["whole numbers stay", "zeros, total 0", "one entry"],
        "float noise around whole numbers": ["float noise", "just below whole numbers"],
        "equal remainders: any order": ["halves"],
    },
    "scale_allocation": {
        "density proportional to raw, exactly round(s * N) pruned": ["equal raw, sparsity 0.5",
                                                                    "fractional counts"],
        "a layer above density 1 stays dense, epsilon recomputed, repeatedly": ["capped at density 1",
                                                                               "capping twice"],
        "sparsity 0 and 1": ["sparsity 0 keeps everything", "sparsity 1 prunes everything"],
        "equals prunekit's ERK on LeNet-300-100 and LeNet-5": ["ERK on lenet300", "ERK on lenet5"],
    },
    "best_config": {
        "sparsest row with val_acc >= best - tolerance": ["3 rows, tolerance 0.01", "everything qualifies"],
        "tolerance absolute; a row exactly at the limit qualifies": ["absolute, not relative",
                                                                    "exactly `tolerance` below"],
        "reads val_acc only, never test_acc": ["carry test_acc"],
        "ties: higher val_acc, then the first": ["equal sparsity: the more accurate", "all equal: the first"],
        "empty list raises ValueError; one row": ["empty results raise", "one row"],
    },
    "pareto_front": {
        "non-dominated points, sorted by cost": ["4 points, one dominated", "unsorted"],
        "each distinct point once": ["a duplicated front point appears once", "a dominated point given twice"],
        "same cost lower accuracy / same accuracy higher cost are dominated": ["same cost, lower accuracy",
                                                                              "same accuracy, higher cost"],
        "one point, no points, ints and floats": ["one point", "no points", "ints and floats"],
    },
    "nm_mask": {
        "n largest |w| in every group of m consecutive INPUTS": ["groups along the inputs", "negative weights"],
        "1:4, 3:4, 2:8, 4:4": ["1:4", "3:4", "2:8", "4:4 keeps everything"],
        "ties: still exactly n": ["ties:", "all equal"],
        "ValueError when in is not a multiple of m": ["not a multiple of m"],
    },
    "grid_search": {
        "one row per ParameterGrid config, in its order": ["global x layerwise", "targets given high to low"],
        "a fresh copy of the model per candidate": ["targets given high to low"],
        "measured sparsity and nonzeros, not the target": ["measured sparsity != target"],
        "chosen by best_config on val_acc": ["tolerance 0:", "a large tolerance picks the sparsest"],
        "front = Pareto front of (nonzeros, val_acc)": ["one allocation, three targets"],
    },
    "information_criteria": {
        "NLL summed over the examples, in nats": ["n = 20", "n = 1000"],
        "k = nonzero parameters, zeros not counted": ["50% of the weights zero", "95% of the weights zero"],
        "biases are parameters; a zero bias is not counted": ["some biases exactly zero"],
        "BIC uses ln(n); models with hidden layers; float64": ["(6, 8, 3)", "float64"],
    },
}


# ============================================================================ reference implementations


def erk_raw_density(shape: Sequence[int]) -> float:
    """ERK's relative density of a weight (Evci et al. 2020): ``Σ dims / Π dims``, e.g. ``(in + out) / (in·out)``."""
    return sum(shape) / math.prod(shape)


# ============================================================================ shared helpers
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _as_int(value, what: str) -> int:
    if isinstance(value, torch.Tensor) and value.numel() == 1 and not value.is_floating_point():
        value = value.item()
    integral = isinstance(value, Integral) and not isinstance(value, bool)
    whole_float = isinstance(value, float) and value.is_integer()
    expect(integral or whole_float, f"{what} is {value!r} ({type(value).__name__}), expected a whole number",
           "return int counts, e.g. math.floor(x) or int(...)")
    return int(value)


# ============================================================================ exact_counts
_COUNTS_HINT = ("start from math.floor(w) for every entry; the sum falls short by a few; give one more to "
                "that many entries, those with the LARGEST fractional parts w - floor(w)")


def _counts_case(label: str, wanted: dict, total: int, expected: dict | None = None) -> Case:
    def run(fn):
        out = call(fn, wanted, total)
        expect(isinstance(out, Mapping), f"returned {type(out).__name__}, expected a dict name -> int",
               "return {name: count for name in wanted}")
        expect(set(out) == set(wanted), f"returned keys {sorted(out)}, expected {sorted(wanted)}",
               "return one count for every entry of `wanted`, under the same name")
        counts = {name: _as_int(out[name], f"the count for {name!r}") for name in wanted}
        got = sum(counts.values())
        shown = {k: counts[k] for k in list(wanted)[:6]}
        if got != total:
            hint = _COUNTS_HINT
            if all(c == round(w) for c, w in zip(counts.values(), wanted.values())):
                hint = "rounding each entry on its own does not keep the sum; " + _COUNTS_HINT
            elif all(c == math.floor(w) for c, w in zip(counts.values(), wanted.values())):
                hint = "int()/floor alone always falls short; " + _COUNTS_HINT
            expect(False, f"counts {shown} add up to {got}, expected exactly {total}", hint)
        for name, w in wanted.items():
            expect(math.floor(w) <= counts[name] <= math.ceil(w),
                   f"{name!r}: wanted {w:.6g}, you gave {counts[name]} (must be floor or ceil)",
                   "never move more than one unit away from a wanted count: give the extra units to "
                   "different entries, one each")
        up = [wanted[n] - math.floor(wanted[n]) for n in wanted if counts[n] > math.floor(wanted[n])]
        down = [wanted[n] - math.floor(wanted[n]) for n in wanted
                if counts[n] == math.floor(wanted[n]) and wanted[n] != math.floor(wanted[n])]
        if up and down:
            expect(min(up) >= max(down) - _SLACK,
                   f"rounded up a remainder of {min(up):.3g} but rounded down one of {max(down):.3g}",
                   "the extra units go to the entries with the largest fractional parts "
                   "(sort by w - floor(w), descending)")
        if expected is not None:
            expect(counts == expected, f"counts {shown}, expected {expected}", _COUNTS_HINT)
    return Case(label, run)


def _counts_cases() -> list[Case]:
    cases = [
        _counts_case("{'a': 0.6, 'b': 0.6, 'c': 0.8}, total 2", {"a": 0.6, "b": 0.6, "c": 0.8}, 2),
        _counts_case("whole numbers stay as they are", {"a": 3.0, "b": 7.0}, 10, {"a": 3, "b": 7}),
        _counts_case("{'a': 10.2, 'b': 0.9, 'c': 0.9}, total 12", {"a": 10.2, "b": 0.9, "c": 0.9}, 12,
                     {"a": 10, "b": 1, "c": 1}),
        _counts_case("{'a': 10.2, 'b': 0.4, 'c': 0.4}, total 11 (a small layer gets the unit)",
                     {"a": 10.2, "b": 0.4, "c": 0.4}, 11),
        _counts_case("halves: {'a': 2.5, 'b': 2.5, 'c': 5.0}, total 10", {"a": 2.5, "b": 2.5, "c": 5.0}, 10),
        _counts_case("float noise: 0.9 x (235200, 30000, 1000), total 239580",
                     {"fc1": 0.9 * 235200, "fc2": 0.9 * 30000, "fc3": 0.9 * 1000}, 239580,
                     {"fc1": 211680, "fc2": 27000, "fc3": 900}),
        _counts_case("counts just below whole numbers (1 - 1e-9)", {"a": 4 - 1e-9, "b": 6 + 1e-9}, 10,
                     {"a": 4, "b": 6}),
        _counts_case("zeros, total 0", {"a": 0.0, "b": 0.0}, 0, {"a": 0, "b": 0}),
        _counts_case("one entry", {"w": 41.7}, 42, {"w": 42}),
    ]
    g = _gen(51)
    for i in range(10):
        k = 2 + i % 6
        total = int(torch.randint(0, 100_000 if i % 2 else 50, (), generator=g))
        share = torch.rand(k, generator=g, dtype=torch.float64) + 0.05
        share = share / share.sum()
        wanted = {f"layer{j}": float(total * share[j]) for j in range(k)}
        cases.append(_counts_case(f"random: {k} entries, total {total}", wanted, total))
    return cases


def check_exact_counts(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``exact_counts(wanted, total)``: integer counts, each the floor or ceil of its wanted value,
    adding up to exactly ``total``, the entries with the largest fractional parts rounded up."""
    return run_check("exact_counts", fn, _counts_cases, hint=_COUNTS_HINT,
                     passed="exact sums, floor/ceil only, largest remainders, float noise", strict=strict)


# ============================================================================ scale_allocation
_SCALE_HINT = ("kept K = N - round(sparsity * N); ε = (K - weights of dense layers) / Σ_free raw·n; a layer with "
               "ε·raw > 1 becomes dense and ε is recomputed; repeat; then round the pruned counts "
               "(1 - ε·raw)·n with exact_counts so they add up to round(sparsity * N)")


def _real_pruned(raw: dict, sizes: dict, sparsity: float) -> tuple[dict, set]:
    """The real-valued pruned counts of the reference rule (float64), and the layers kept dense."""
    total = sum(sizes.values())
    keep = total - round(sparsity * total)
    dense: set = set()
    while True:
        free = [n for n in raw if n not in dense]
        eps = (keep - sum(sizes[n] for n in dense)) / sum(raw[n] * sizes[n] for n in free) if free else 0.0
        over = [n for n in free if eps * raw[n] > 1.0]
        if not over:
            return {n: 0.0 if n in dense else (1.0 - eps * raw[n]) * sizes[n] for n in raw}, dense
        dense.update(over)


def _scale_case(label: str, raw: dict, sizes: dict, sparsity: float, expected: dict | None = None) -> Case:
    def run(fn):
        out = call(fn, raw, sizes, sparsity)
        expect(isinstance(out, Mapping), f"returned {type(out).__name__}, expected a dict name -> sparsity",
               "return {name: sparsity for name in sizes}")
        expect(set(out) == set(sizes), f"returned keys {sorted(out)}, expected {sorted(sizes)}",
               "return one sparsity per layer, under the layer's name")
        values = {}
        for name in sizes:
            v = out[name]
            if isinstance(v, torch.Tensor) and v.numel() == 1:
                v = v.item()
            expect(isinstance(v, Real) and not isinstance(v, bool),
                   f"the sparsity for {name!r} is {v!r}, expected a number", "return plain floats")
            values[name] = float(v)
        bad = {n: round(v, 4) for n, v in values.items() if not 0.0 <= v <= 1.0}
        expect(not bad, f"sparsities outside [0, 1]: {bad}",
               "a layer whose density ε·raw exceeds 1 must be kept dense (sparsity 0) and ε recomputed for "
               "the others")
        counts = {n: values[n] * sizes[n] for n in sizes}
        fractional = {n: round(c, 3) for n, c in counts.items() if abs(c - round(c)) > 1e-6}
        expect(not fractional, f"sparsity x size is not a whole number of weights: {fractional}",
               "return count / size where count is an int from exact_counts")
        counts = {n: round(c) for n, c in counts.items()}
        total, target = sum(counts.values()), round(sparsity * sum(sizes.values()))
        shown = {n: round(values[n], 4) for n in list(sizes)[:5]}
        wanted, dense = _real_pruned(raw, sizes, sparsity)
        if total != target:
            hint = _SCALE_HINT
            if all(counts[n] == math.floor(wanted[n] + 1e-9) for n in sizes) or \
                    all(counts[n] == round(wanted[n]) for n in sizes):
                hint = "rounding each layer on its own misses the total: use exact_counts. " + _SCALE_HINT
            else:
                hint = ("did you recompute ε after keeping a layer dense (the other layers must then be "
                        "pruned harder)? " + _SCALE_HINT)
            expect(False, f"sparsities {shown} prune {total:,} weights in all, expected round({sparsity} x "
                          f"{sum(sizes.values()):,}) = {target:,}", hint)
        for name in sizes:
            lo, hi = math.floor(wanted[name] - 1e-6), math.ceil(wanted[name] + 1e-6)
            hint = _SCALE_HINT
            if name in dense and counts[name] > 0:
                hint = f"{name!r} needs a density above 1 here, so it must stay dense (sparsity 0). " + _SCALE_HINT
            elif values[max(raw, key=raw.get)] > values[min(raw, key=raw.get)]:
                hint = ("raw is the relative DENSITY (fraction kept): a larger raw means a denser layer, "
                        "not a sparser one. " + _SCALE_HINT)
            expect(lo <= counts[name] <= hi,
                   f"{name!r}: sparsity {values[name]:.4f} prunes {counts[name]:,} of {sizes[name]:,}, "
                   f"expected about {wanted[name]:,.1f}", hint)
        if expected is not None:
            for name, e in expected.items():
                expect(abs(values[name] - e) < 1e-9, f"{name!r}: sparsity {values[name]:.6f}, expected {e:.6f}",
                       _SCALE_HINT)
    return Case(label, run)


def _shapes_to_sizes(shapes: dict) -> tuple[dict, dict]:
    return ({n: erk_raw_density(s) for n, s in shapes.items()}, {n: math.prod(s) for n, s in shapes.items()})


def _scale_cases() -> list[Case]:
    from ..models import build_model
    from ..pruning import prunable_weights
    from ..sensitivity import erk_allocation

    cases = [
        _scale_case("equal raw, sparsity 0.5", {"a": 1.0, "b": 1.0}, {"a": 100, "b": 100}, 0.5,
                    {"a": 0.5, "b": 0.5}),
        _scale_case("raw {'a': 1, 'b': 2}, sizes 100 each, sparsity 0.7", {"a": 1.0, "b": 2.0},
                    {"a": 100, "b": 100}, 0.7, {"a": 0.8, "b": 0.6}),
        _scale_case("a small layer capped at density 1", {"a": 1.0, "b": 10.0}, {"a": 1000, "b": 10}, 0.5,
                    {"a": 0.505, "b": 0.0}),
        _scale_case("capping twice: c first, then b once ε has grown", {"a": 1.0, "b": 2.0, "c": 10.0},
                    {"a": 1000, "b": 100, "c": 10}, 0.44, {"a": 0.488, "b": 0.0, "c": 0.0}),
        _scale_case("sparsity 0 keeps everything", {"a": 1.0, "b": 3.0}, {"a": 50, "b": 70}, 0.0,
                    {"a": 0.0, "b": 0.0}),
        _scale_case("sparsity 1 prunes everything", {"a": 1.0, "b": 3.0}, {"a": 50, "b": 70}, 1.0,
                    {"a": 1.0, "b": 1.0}),
        _scale_case("fractional counts: 3 layers of 3, sparsity 0.4", {"a": 1.0, "b": 1.0, "c": 1.0},
                    {"a": 3, "b": 3, "c": 3}, 0.4),
    ]
    for model_name in ("lenet300", "lenet5"):
        weights = prunable_weights(build_model(model_name))
        raw, sizes = _shapes_to_sizes({n: tuple(w.shape) for n, w in weights.items()})
        for s in (0.5, 0.9, 0.98):
            expected = erk_allocation(build_model(model_name), s)
            cases.append(_scale_case(f"ERK on {model_name} (= prunekit's erk_allocation), sparsity {s}",
                                     raw, sizes, s, expected))
    g = _gen(52)
    for i in range(8):
        k = 2 + i % 5
        sizes = {f"layer{j}": int(torch.randint(1, 5000, (), generator=g)) for j in range(k)}
        raw = {n: float(torch.rand((), generator=g, dtype=torch.float64)) * 10 ** (i % 3) + 1e-3 for n in sizes}
        s = round(float(torch.rand((), generator=g)), 3)
        cases.append(_scale_case(f"random: {k} layers, sparsity {s}", raw, sizes, s))
    return cases


def check_scale_allocation(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``scale_allocation(raw, sizes, sparsity)``: densities ∝ raw (one ε, layers capped at density 1 with
    ε recomputed), whole pruned counts adding up to exactly ``round(sparsity * Σ sizes)``."""
    return run_check("scale_allocation", fn, _scale_cases, hint=_SCALE_HINT,
                     passed="exact totals, capping at density 1, = prunekit's ERK, s = 0 and 1", strict=strict)


# ============================================================================ best_config
_BEST_HINT = ("best = max(val_acc); keep the rows with val_acc >= best - tolerance; of those return the one "
              "with the largest sparsity (equal sparsity: higher val_acc; still equal: the first)")


def _row(name, val, sparsity, test=None):
    row = {"name": name, "val_acc": val, "sparsity": sparsity}
    if test is not None:
        row["test_acc"] = test
    return row


def _best_case(label: str, results: list, tolerance: float, expected_name: str | None = None) -> Case:
    def run(fn):
        want = reference_best_config(results, tolerance)
        got = call(fn, results, tolerance)
        expect(isinstance(got, Mapping), f"returned {type(got).__name__}, expected one row (a dict) of results",
               "return the chosen row itself, e.g. results[i]")
        expect(any(got is row or got == row for row in results), f"returned {dict(got)!r:.80}, not a row of results",
               "return one of the rows you were given, unchanged")
        name = want["name"] if expected_name is None else expected_name
        if got.get("name") != name:
            hint = _BEST_HINT
            best_val = max(r["val_acc"] for r in results)
            by_test = None
            if all("test_acc" in r for r in results):
                by_test = reference_best_config([{**r, "val_acc": r["test_acc"]} for r in results], tolerance)
            if by_test is not None and by_test["name"] == got.get("name"):
                hint = ("you chose with test_acc: select on the VALIDATION accuracy only; the test set is "
                        "opened once, after the choice")
            elif got["val_acc"] < best_val - tolerance - _SLACK:
                hint = f"{got.get('name')!r} is more than `tolerance` below the best validation accuracy. " + _BEST_HINT
            elif abs(want["val_acc"] - (best_val - tolerance)) < 1e-12 < tolerance:
                hint = "a row exactly `tolerance` below the best qualifies (>=, not >). " + _BEST_HINT
            elif reference_best_config(results, best_val * tolerance)["name"] == got.get("name"):
                hint = ("the tolerance is absolute (0.01 = one point of accuracy), not a fraction of the best. "
                        + _BEST_HINT)
            elif got["val_acc"] == best_val and got["sparsity"] < want["sparsity"]:
                hint = "within the tolerance, prefer the SPARSEST row, not the most accurate. " + _BEST_HINT
            expect(False, f"returned the row {got.get('name')!r}, expected {name!r}", hint)
    return Case(label, run)


def _empty_case() -> Case:
    def run(fn):
        try:
            fn([], 0.01)
        except ValueError:
            return
        except Exception as exc:  # noqa: BLE001
            expect(False, f"raised {type(exc).__name__}, expected ValueError",
                   "start with `if not results: raise ValueError(...)`")
        expect(False, "returned instead of raising ValueError", "start with `if not results: raise ValueError(...)`")
    return Case("empty results raise ValueError", run)


def _best_cases() -> list[Case]:
    grid = [_row("A", 0.98, 0.8), _row("B", 0.975, 0.9), _row("C", 0.96, 0.95)]
    cases = [
        _best_case("3 rows, tolerance 0.01", grid, 0.01, "B"),
        _best_case("tolerance 0: the best validation accuracy", grid, 0.0, "A"),
        _best_case("tolerance 0.05: everything qualifies", grid, 0.05, "C"),
        _best_case("rows that also carry test_acc (must be ignored)",
                   [_row("A", 0.98, 0.8, test=0.985), _row("B", 0.95, 0.95, test=0.984)], 0.01, "A"),
        _best_case("absolute, not relative, tolerance", [_row("A", 0.5, 0.5), _row("B", 0.42, 0.9)], 0.1, "B"),
        _best_case("a row exactly `tolerance` below the best qualifies",
                   [_row("A", 0.875, 0.5), _row("B", 0.75, 0.75), _row("C", 0.625, 0.875)], 0.125, "B"),
        _best_case("equal sparsity: the more accurate", [_row("A", 0.98, 0.5), _row("B", 0.97, 0.9),
                                                        _row("C", 0.975, 0.9)], 0.02, "C"),
        _best_case("all equal: the first", [_row("A", 0.9, 0.5), _row("B", 0.9, 0.5)], 0.0, "A"),
        _best_case("one row", [_row("only", 0.5, 0.1)], 0.0, "only"),
        _empty_case(),
    ]
    g = _gen(53)
    for i in range(8):
        k = 3 + 2 * i
        rows = [_row(f"cfg{j}", round(0.9 + 0.09 * float(torch.rand((), generator=g)), 4),
                     round(float(torch.rand((), generator=g)), 3),
                     test=round(0.9 + 0.09 * float(torch.rand((), generator=g)), 4)) for j in range(k)]
        cases.append(_best_case(f"random: {k} rows with test_acc, tolerance 0.01", rows, 0.01))
    return cases


def check_best_config(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``best_config(results, tolerance)``: the sparsest row within an absolute ``tolerance`` of the best
    ``val_acc`` (ties: higher val_acc, then the first), never reading ``test_acc``, not reordering ``results``."""
    return run_check("best_config", fn, _best_cases, hint=_BEST_HINT,
                     passed="validation only, >= tolerance, sparsest, ties, input untouched", strict=strict)


# ============================================================================ pareto_front
_PARETO_HINT = ("a point is dominated when another has cost <= AND accuracy >= with at least one strict; keep the "
                "others, each distinct point once, sorted by cost (lower cost and HIGHER accuracy are better)")


def _as_points(out, what="your front") -> list[tuple]:
    expect(isinstance(out, (list, tuple)), f"{what} is a {type(out).__name__}, expected a list of (cost, accuracy)",
           "return a list such as [(cost, acc), ...]")
    points = []
    for p in out:
        expect(isinstance(p, (list, tuple)) and len(p) == 2, f"{what} holds {p!r:.40}, expected (cost, accuracy) pairs",
               "return the input pairs themselves")
        points.append((float(p[0]), float(p[1])))
    return points


def _pareto_case(label: str, points: list, expected: list | None = None) -> Case:
    def run(fn):
        got = _as_points(call(fn, points))
        want = reference_pareto_front(points) if expected is None else expected
        want = [(float(c), float(a)) for c, a in want]
        if got == want:
            return
        hint = _PARETO_HINT
        upside_down = [(c, -a) for c, a in reference_pareto_front([(c, -a) for c, a in points])]
        if got and sorted(got) == sorted((float(c), float(a)) for c, a in upside_down):
            hint = "that is the front of the WORST points: maximise accuracy, minimise cost. " + _PARETO_HINT
        elif len(got) != len(set(got)):
            hint = "a point appears twice in your front: keep each distinct point once. " + _PARETO_HINT
        elif sorted(got) == sorted(want):
            hint = "right points, wrong order: sort the front by cost, ascending. " + _PARETO_HINT
        elif set(got) < set(want):
            missing = sorted(set(want) - set(got))[:3]
            hint = (f"you dropped non-dominated points {missing}: equal points do not dominate each other "
                    "(one of the two comparisons must be strict). " + _PARETO_HINT)
        elif set(got) > set(want):
            extra = sorted(set(got) - set(want))[:3]
            hint = f"{extra} are dominated (same or higher cost, same or lower accuracy). " + _PARETO_HINT
        expect(False, f"front {got[:5]}{' ...' if len(got) > 5 else ''}, expected {want[:5]}"
                      f"{' ...' if len(want) > 5 else ''}", hint)
    return Case(label, run)


def _pareto_cases() -> list[Case]:
    cases = [
        _pareto_case("4 points, one dominated", [(1, 0.9), (2, 0.95), (3, 0.93), (0.5, 0.8)],
                     [(0.5, 0.8), (1, 0.9), (2, 0.95)]),
        _pareto_case("a duplicated front point appears once", [(1, 0.9), (1, 0.9), (2, 0.95)],
                     [(1, 0.9), (2, 0.95)]),
        _pareto_case("same cost, lower accuracy first in the list", [(1, 0.8), (1, 0.9), (2, 0.95)],
                     [(1, 0.9), (2, 0.95)]),
        _pareto_case("same accuracy, higher cost", [(2, 0.9), (1, 0.9)], [(1, 0.9)]),
        _pareto_case("a dominated point given twice", [(2, 0.8), (2, 0.8), (1, 0.9)], [(1, 0.9)]),
        _pareto_case("every point on the front, unsorted", [(3, 0.99), (1, 0.5), (2, 0.9)],
                     [(1, 0.5), (2, 0.9), (3, 0.99)]),
        _pareto_case("one point", [(5, 0.7)], [(5, 0.7)]),
        _pareto_case("no points", [], []),
        _pareto_case("ints and floats, ties everywhere", [(1, 1), (1, 1.0), (2, 1), (0, 0), (0, 0.5), (3, 2)],
                     [(0, 0.5), (1, 1), (3, 2)]),
    ]
    g = _gen(54)
    for i in range(8):
        k = 5 + 5 * i
        digits = 1 + i % 2                        # few distinct values: ties in cost and in accuracy
        pts = [(round(float(torch.rand((), generator=g)), digits), round(float(torch.rand((), generator=g)), digits))
               for _ in range(k)]
        pts += pts[: i % 3]                       # some exact duplicates
        cases.append(_pareto_case(f"random: {len(pts)} points with ties and duplicates", pts))
    return cases


def check_pareto_front(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``pareto_front(points)``: the non-dominated ``(cost, accuracy)`` pairs (minimise cost, maximise
    accuracy), each distinct pair once, sorted by cost."""
    return run_check("pareto_front", fn, _pareto_cases, hint=_PARETO_HINT,
                     passed="dominance both ways, ties, duplicates, sorted by cost", strict=strict)


# ============================================================================ nm_mask
_NM_HINT = ("view the weight as (out, in // m, m): each group is m CONSECUTIVE inputs of one row; keep the n "
            "largest |w| of each group (torch.topk(..., k=n, dim=-1) on |w|), scatter True there, reshape back")


def _nm_case(label: str, weight: torch.Tensor, n: int, m: int, expected=None) -> Case:
    def run(fn):
        keep = as_mask(call(fn, weight, n, m), weight.shape)
        groups = keep.reshape(weight.shape[0], -1, m)
        scores = weight.detach().abs().double().reshape(weight.shape[0], -1, m)
        per_group = groups.sum(-1)
        if not bool((per_group == n).all()):
            hint = _NM_HINT
            col_groups = keep.t().reshape(weight.shape[1], -1, m) if weight.shape[0] % m == 0 else None
            if col_groups is not None and bool((col_groups.sum(-1) == n).all()):
                hint = ("you grouped along the OUTPUT dimension (dim 0); groups run along the inputs (dim 1). "
                        + _NM_HINT)
            elif int(keep.sum()) == weight.numel() * (m - n) // m and m != 2 * n:
                hint = "you kept m - n per group: n is how many to KEEP. " + _NM_HINT
            elif int(keep.sum()) == weight.numel() * n // m:
                hint = ("the right number overall but not n in every group: N:M is per group of m, not a "
                        "magnitude threshold over the whole tensor. " + _NM_HINT)
            elif bool((per_group >= n).all()):
                hint = ("some groups keep more than n: ties at the n-th value? pick exactly n indices "
                        "(torch.topk) instead of comparing with a threshold. " + _NM_HINT)
            bad = (per_group != n).nonzero()[0].tolist()
            expect(False, f"row {bad[0]}, group {bad[1]} (inputs {bad[1] * m}..{bad[1] * m + m - 1}) keeps "
                          f"{int(per_group[bad[0], bad[1]])}, expected exactly {n} of {m}", hint)
        if 0 < n < m:
            kept_min = scores.masked_fill(~groups, float("inf")).min(-1).values
            pruned_max = scores.masked_fill(groups, float("-inf")).max(-1).values
            wrong = kept_min < pruned_max
            if bool(wrong.any()):
                r, gidx = wrong.nonzero()[0].tolist()
                hint = _NM_HINT
                kept_max = scores.masked_fill(~groups, float("-inf")).max(-1).values
                pruned_min = scores.masked_fill(groups, float("inf")).min(-1).values
                if bool((kept_max <= pruned_min).all()):
                    hint = "you kept the SMALLEST weights of each group; keep the largest |w|. " + _NM_HINT
                elif bool((weight.detach().reshape(weight.shape[0], -1, m) < 0).any()):
                    hint = "rank by |w|: a large negative weight is important. " + _NM_HINT
                expect(False, f"row {r}, group {gidx}: kept |w| = {kept_min[r, gidx].item():.4g} but pruned "
                              f"|w| = {pruned_max[r, gidx].item():.4g}", hint)
        if expected is not None:
            expect(torch.equal(keep, torch.as_tensor(expected, dtype=torch.bool)),
                   f"mask {describe_tensor(keep.int(), 16)}, expected "
                   f"{describe_tensor(torch.as_tensor(expected).int(), 16)}", _NM_HINT)
    return Case(label, run)


def _nm_error_case() -> Case:
    hint = "check `weight.shape[1] % m == 0` first and raise ValueError with a clear message otherwise"

    def run(fn):
        try:
            fn(torch.ones(2, 6), 2, 4)
        except ValueError:
            return
        except Exception as exc:  # noqa: BLE001
            expect(False, f"raised {type(exc).__name__}, expected ValueError", hint)
        expect(False, "returned a mask instead of raising ValueError", hint)
    return Case("6 inputs are not a multiple of m = 4: ValueError", run)


def _nm_cases() -> list[Case]:
    square = torch.tensor([[1.0, 9.0, 2.0, 8.0], [7.0, 0.1, 0.2, 0.3], [6.0, 0.4, 0.5, 0.6], [5.0, 0.7, 0.8, 0.9]])
    cases = [
        _nm_case("4x4 (groups along the inputs, not the outputs), 2:4", square, 2, 4,
                 [[0, 1, 0, 1], [1, 0, 0, 1], [1, 0, 0, 1], [1, 0, 0, 1]]),
        _nm_case("[[4, 1, 3, 2]], 2:4", torch.tensor([[4.0, 1.0, 3.0, 2.0]]), 2, 4, [[1, 0, 1, 0]]),
        _nm_case("negative weights, 2:4", torch.tensor([[-4.0, 1.0, 3.0, -2.0]]), 2, 4, [[1, 0, 1, 0]]),
        _nm_case("2x8, 2:4 (two groups per row)",
                 torch.tensor([[0.1, 0.2, 0.3, 0.4, 5.0, 6.0, 7.0, 8.0], [8.0, 7.0, 6.0, 5.0, 0.4, 0.3, 0.2, 0.1]]),
                 2, 4, [[0, 0, 1, 1, 0, 0, 1, 1], [1, 1, 0, 0, 1, 1, 0, 0]]),
        _nm_case("1:4", torch.tensor([[0.5, -3.0, 1.0, 2.0, 4.0, 0.0, 0.0, 0.1]]), 1, 4, [[0, 1, 0, 0, 1, 0, 0, 0]]),
        _nm_case("3:4", torch.tensor([[0.5, -3.0, 1.0, 2.0]]), 3, 4, [[0, 1, 1, 1]]),
        _nm_case("2:8", torch.tensor([[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]]), 2, 8, [[0, 0, 0, 0, 0, 0, 1, 1]]),
        _nm_case("4:4 keeps everything", torch.randn(3, 8, generator=_gen(1)), 4, 4, torch.ones(3, 8)),
        _nm_case("ties: [[1, 1, 1, 1, 2, 2, 0, 0]], 2:4",
                 torch.tensor([[1.0, 1.0, 1.0, 1.0, 2.0, 2.0, 0.0, 0.0]]), 2, 4),
        _nm_case("all equal (3x8), 2:4", torch.ones(3, 8), 2, 4),
        _nm_case("an nn.Parameter, float64", nn.Parameter(torch.randn(4, 8, generator=_gen(2), dtype=torch.float64)),
                 2, 4),
        _nm_error_case(),
    ]
    g = _gen(55)
    for shape, n, m in [((8, 16), 2, 4), ((5, 12), 2, 4), ((6, 16), 1, 4), ((7, 24), 2, 8), ((30, 100), 2, 4),
                        ((100, 300), 2, 4)]:
        w = torch.randn(shape, generator=g)
        if shape[0] == 7:
            w = torch.round(w * 2) / 2      # many ties
        cases.append(_nm_case(f"random {shape}, {n}:{m}", w, n, m))
    return cases


def check_nm_mask(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``nm_mask(weight, n, m)``: exactly ``n`` kept in every group of ``m`` consecutive inputs (dim 1) of a
    2-D weight, the largest ``|w|`` of the group, ties included; ValueError when ``in`` is not a multiple of ``m``."""
    return run_check("nm_mask", fn, _nm_cases, hint=_NM_HINT,
                     passed="n per group of m along the inputs, |w|, ties, 1:4 2:8 3:4, shape errors", strict=strict)


# ============================================================================ information_criteria
_IC_HINT = ("nll = F.cross_entropy(model(x), y, reduction='sum') (the SUM over the n examples, natural log), "
            "k = the number of NONZERO entries of all parameters (weights and biases), n = len(x); "
            "AIC = 2k + 2·nll, BIC = k·ln(n) + 2·nll")


def _ic_model(seed: int, sizes: tuple[int, ...], zero_fraction: float, dtype=torch.float32) -> nn.Sequential:
    g = _gen(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        fc = nn.Linear(a, b, dtype=dtype)
        with torch.no_grad():
            w = torch.randn(b, a, generator=g, dtype=dtype) / a ** 0.5
            w[torch.rand(b, a, generator=g) < zero_fraction] = 0.0
            fc.weight.copy_(w)
            fc.bias.copy_(torch.randn(b, generator=g, dtype=dtype) * 0.1)
        layers += [fc, nn.ReLU()] if i < len(sizes) - 2 else [fc]
    return nn.Sequential(*layers).eval()


def _ic_case(label: str, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Case:
    def run(fn):
        state = {k: v.clone() for k, v in model.state_dict().items()}
        out = fn(model, x, y)
        expect(all(torch.equal(state[k], v) for k, v in model.state_dict().items()), "the model's parameters changed",
               "only evaluate the model (under torch.no_grad())")
        expect(isinstance(out, (tuple, list)) and len(out) == 2, f"returned {type(out).__name__}, expected (aic, bic)",
               "`return aic, bic`")
        try:
            aic, bic = (float(v) for v in out)
        except (TypeError, ValueError, RuntimeError):
            expect(False, f"returned {out!r:.80}, expected two numbers", "return Python floats (`.item()`)")
        want_aic, want_bic = reference_information_criteria(model, x, y)
        if math.isclose(aic, want_aic, rel_tol=1e-5) and math.isclose(bic, want_bic, rel_tol=1e-5):
            return
        with torch.no_grad():
            nll = nn.functional.cross_entropy(model(x), y, reduction="sum").double().item()
        n = len(x)
        k = sum(int(torch.count_nonzero(p)) for p in model.parameters())
        k_all = sum(p.numel() for p in model.parameters())
        k_weights = sum(int(torch.count_nonzero(p)) for name, p in model.named_parameters() if name.endswith("weight"))
        hint = _IC_HINT
        if math.isclose(aic, 2 * k + 2 * nll / n, rel_tol=1e-5):
            hint = "use the SUMMED negative log-likelihood over all n examples, not the mean (reduction='sum')"
        elif math.isclose(aic, 2 * k_all + 2 * nll, rel_tol=1e-5):
            hint = "k counts the NONZERO parameters: a pruned (zero) weight is not a free parameter"
        elif math.isclose(aic, 2 * k_weights + 2 * nll, rel_tol=1e-5):
            hint = "the biases are parameters too: count the nonzeros of every parameter"
        elif math.isclose(aic, 2 * k + 2 * nll / math.log(2), rel_tol=1e-5) or \
                math.isclose(bic, k * math.log2(n) + 2 * nll, rel_tol=1e-5):
            hint = "use natural logarithms everywhere (nats): cross_entropy is in nats, and BIC uses ln(n)"
        elif math.isclose(aic, k + nll, rel_tol=1e-5) or math.isclose(aic, 2 * k - 2 * nll, rel_tol=1e-5):
            hint = "AIC = 2k − 2·log L = 2k + 2·NLL (NLL = −log L, a positive number)"
        elif math.isclose(bic, want_aic, rel_tol=1e-5) or math.isclose(aic, want_bic, rel_tol=1e-5):
            hint = "return (aic, bic) in that order; BIC's penalty is k·ln(n), AIC's is 2k"
        expect(False, f"returned (aic, bic) = ({aic:.6g}, {bic:.6g}), expected ({want_aic:.6g}, {want_bic:.6g})", hint)
    return Case(label, run)


def _ic_cases() -> list[Case]:
    g = _gen(50)
    cases = []
    for i, (sizes, n, zeros) in enumerate([((4, 3), 20, 0.0), ((4, 3), 20, 0.5), ((6, 8, 3), 50, 0.7),
                                           ((10, 16, 5), 200, 0.9), ((3, 5, 2), 7, 0.3), ((20, 30, 10), 1000, 0.95)]):
        model = _ic_model(500 + i, sizes, zeros)
        x = torch.randn(n, sizes[0], generator=g)
        y = torch.randint(0, sizes[-1], (n,), generator=g)
        cases.append(_ic_case(f"MLP {sizes}, {zeros:.0%} of the weights zero, n = {n}", model, x, y))
    model = _ic_model(510, (5, 6, 4), 0.4, dtype=torch.float64)
    with torch.no_grad():
        model[0].bias[:3] = 0.0                   # zero biases are not counted either
    cases.append(_ic_case("float64, some biases exactly zero", model, torch.randn(30, 5, generator=g,
                                                                                  dtype=torch.float64),
                          torch.randint(0, 4, (30,), generator=g)))
    return cases


def check_information_criteria(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``information_criteria(model, x, y) -> (aic, bic)``: summed NLL in nats, k = nonzero parameters."""
    return run_check("information_criteria", fn, _ic_cases, hint=_IC_HINT,
                     passed="summed NLL in nats, k = nonzero weights and biases, ln(n)", strict=strict)


# ============================================================================ grid_search (capstone)
_GRID_HINT = ("for each config of sklearn's ParameterGrid(grid), in its order: prune a `copy.deepcopy(model)` with "
              "pruning.prune_global or pruning.prune_layerwise to config['target']; measure the accuracy on the "
              "validation tensors, the fraction of prunable weights that are zero ('sparsity') and the nonzero "
              "prunable weights ('nonzeros'); then chosen = best_config(rows, tolerance) and "
              "front = pareto_front([(nonzeros, val_acc)])")


def _grid_model(seed: int, sizes=(12, 16, 10, 4)) -> nn.Sequential:
    g = _gen(seed)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        fc = nn.Linear(a, b)
        with torch.no_grad():
            fc.weight.copy_(torch.randn(b, a, generator=g) / a ** 0.5)
            fc.bias.copy_(torch.randn(b, generator=g) * 0.1)
        layers += [fc, nn.ReLU()] if i < len(sizes) - 2 else [fc]
    return nn.Sequential(*layers).eval()


def _grid_val(model: nn.Module, seed: int, n: int, noise: float = 1.0):
    """Validation data labelled by the dense model itself plus noise, so pruning costs accuracy gradually."""
    g = _gen(seed)
    x = torch.randn(n, model[0].in_features, generator=g)
    with torch.no_grad():
        y = (model(x) + noise * torch.randn(n, model[-1].out_features, generator=g)).argmax(1)
    return torch.utils.data.TensorDataset(x, y)


def _grid_case(label: str, model: nn.Module, val, grid: dict, tolerance: float) -> Case:
    def run(fn):
        state = {k: v.clone() for k, v in model.state_dict().items()}
        want = reference_grid_search(model, val, grid, tolerance)
        out = fn(model, val, grid, tolerance)
        changed = not all(torch.equal(state[k], v) for k, v in model.state_dict().items())
        expect(not changed, "the model you were given was pruned: later candidates started from pruned weights",
               "prune a fresh `copy.deepcopy(model)` for every candidate")
        expect(isinstance(out, Mapping) and {"rows", "chosen", "front"} <= set(out),
               f"returned {type(out).__name__}, expected a dict with 'rows', 'chosen' and 'front'", _GRID_HINT)
        rows = out["rows"]
        expect(isinstance(rows, (list, tuple)) and len(rows) == len(want["rows"]),
               f"'rows' has {len(rows) if isinstance(rows, (list, tuple)) else type(rows).__name__} entries, "
               f"expected one per config: {len(want['rows'])}", "iterate over sklearn's ParameterGrid(grid)")
        for i, (got, ref) in enumerate(zip(rows, want["rows"])):
            expect(isinstance(got, Mapping) and {"allocation", "target", "sparsity", "nonzeros", "val_acc"} <= set(got),
                   f"row {i} is {got!r:.80}, expected keys allocation, target, sparsity, nonzeros, val_acc", _GRID_HINT)
            expect(got["allocation"] == ref["allocation"] and got["target"] == ref["target"],
                   f"row {i} is config ({got['allocation']}, {got['target']}), expected ({ref['allocation']}, "
                   f"{ref['target']})", "keep ParameterGrid's order, one row per config")
            expect(abs(float(got["sparsity"]) - ref["sparsity"]) < 1e-9 and int(got["nonzeros"]) == ref["nonzeros"],
                   f"row {i}: sparsity {float(got['sparsity']):.6g}, nonzeros {got['nonzeros']}; expected "
                   f"{ref['sparsity']:.6g}, {ref['nonzeros']}",
                   "measure the pruned model: zeros / all prunable weights, and the nonzero count (not the target)")
            expect(abs(float(got["val_acc"]) - ref["val_acc"]) < 1e-9,
                   f"row {i} ({ref['allocation']}, {ref['target']}): val_acc {float(got['val_acc']):.6g}, expected "
                   f"{ref['val_acc']:.6g}",
                   "accuracy = fraction of ALL validation examples whose argmax matches the label, model in eval mode")
        chosen = out["chosen"]
        if chosen != want["chosen"]:
            best = max(r["val_acc"] for r in want["rows"])
            hint = "apply the written-down rule: the SPARSEST row with val_acc >= best − tolerance (best_config)"
            if isinstance(chosen, Mapping) and chosen.get("val_acc") == best:
                hint = "you took the most accurate row; the rule takes the sparsest row within the tolerance of it"
            expect(False, f"chosen {chosen!r:.120}, expected {want['chosen']!r:.120}", hint)
        front = [tuple(p) for p in out["front"]] if isinstance(out["front"], (list, tuple)) else out["front"]
        if front != [tuple(p) for p in want["front"]]:
            hint = "front = pareto_front([(row['nonzeros'], row['val_acc']) for row in rows]): cost = nonzeros"
            by_sparsity = reference_pareto_front([(r["sparsity"], r["val_acc"]) for r in want["rows"]])
            if front == [tuple(p) for p in by_sparsity]:
                hint = "sparsity is not a cost (more is better): use the number of nonzero weights as the cost"
            expect(False, f"front {front!r:.120}, expected {want['front']!r:.120}", hint)
    return Case(label, run)


def _grid_cases() -> list[Case]:
    m1, m2, m3 = _grid_model(520), _grid_model(521, (8, 6, 3)), _grid_model(522, (20, 24, 16, 5))
    return [
        _grid_case("one allocation, three targets", m2, _grid_val(m2, 523, 200), {"allocation": ["global"],
                                                                                  "target": [0.2, 0.5, 0.8]}, 0.02),
        _grid_case("global x layerwise x 4 targets, tolerance 0.01", m1, _grid_val(m1, 524, 300),
                   {"allocation": ["global", "layerwise"], "target": [0.3, 0.6, 0.8, 0.9]}, 0.01),
        _grid_case("targets given high to low (pruning must start from the dense model each time)", m1,
                   _grid_val(m1, 525, 300), {"target": [0.9, 0.5, 0.1], "allocation": ["layerwise", "global"]}, 0.05),
        _grid_case("tolerance 0: the most accurate, then the sparsest", m3, _grid_val(m3, 526, 400, noise=0.5),
                   {"allocation": ["global", "layerwise"], "target": [0.5, 0.7, 0.95]}, 0.0),
        _grid_case("a large tolerance picks the sparsest", m3, _grid_val(m3, 527, 150),
                   {"allocation": ["layerwise"], "target": [0.1, 0.4, 0.97]}, 1.0),
        _grid_case("odd weight counts: measured sparsity != target", m2, _grid_val(m2, 528, 100),
                   {"allocation": ["global", "layerwise"], "target": [0.33, 0.71]}, 0.03),
    ]


def check_grid_search(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``grid_search(model, val, grid, tolerance)``: one row per ParameterGrid config measured on the
    validation tensors, the row the written-down rule picks, and the Pareto front of (nonzeros, val_acc)."""
    return run_check("grid_search", fn, _grid_cases, hint=_GRID_HINT,
                     passed="ParameterGrid order, fresh copies, measured sparsity, rule, Pareto front", strict=strict)
