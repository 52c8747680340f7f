"""Checks for Lab 4 (schedules and lottery tickets).

========================  ===================================================  ================================
exercise                  contract                                             check
========================  ===================================================  ================================
``agp_sparsity``          ``(step, s_i, s_f, t0, n, Δt) -> float``: Zhu &       :func:`check_agp_sparsity`
                          Gupta's cubic ramp, updated every Δt steps
``iterative_targets``     ``(final, rounds) -> [s_1, ..., s_rounds]``: the      :func:`check_iterative_targets`
                          same fraction of the remaining weights each round
``prune_remaining_mask``  ``(weight, mask, fraction) -> mask``: prune           :func:`check_prune_remaining_mask`
                          ``round(fraction * kept)`` of the SURVIVING weights
                          with the smallest ``|w|``; never revive one
``rewind``                ``(model, init_state, masks) -> model``: every        :func:`check_rewind`
                          tensor back to ``init_state`` (in place), pruned
                          weights 0
``early_stop``            ``([(step, val_acc), ...]) -> (step, val_acc)`` of    :func:`check_early_stop`
                          the best point, the earliest one on ties
``should_stop``           ``([dense, round 1, ...], tolerance) -> bool``:       :func:`check_should_stop`
                          the latest accuracy is more than ``tolerance``
                          below the dense one
========================  ===================================================  ================================

Each check prints one line and returns a :class:`~prunekit.checks.core.CheckResult`. The answers it
compares with, the ``reference_*`` functions, live in :mod:`prunekit.checks.references.lab4` (re-exported
here); :func:`~prunekit.checks.core.use_or_reference` falls back to them.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict
from numbers import Real
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from .core import Case, CheckFailed, CheckResult, call, describe_tensor, expect, snapshot
from .core import run_check
from .lab2 import _as_mask
from .references.lab4 import (reference_agp_sparsity, reference_agp_step, reference_early_stop, reference_imp_rewind,
                              reference_iterative_targets, reference_prune_remaining_mask, reference_rewind,
                              reference_should_stop, reference_train_round, _weight_names)

__all__ = [
    "check_agp_sparsity", "check_iterative_targets", "check_prune_remaining_mask", "check_rewind",
    "check_early_stop", "check_should_stop", "check_imp_rewind", "check_agp_step",
    "reference_agp_sparsity", "reference_iterative_targets", "reference_prune_remaining_mask",
    "reference_rewind", "reference_early_stop", "reference_should_stop", "reference_imp_rewind",
    "reference_agp_step",
]


# Library functions an exercise must not call (it asks the learner to write them); read by
# prunekit.checks.provenance without importing this module.
MUST_NOT_CALL = {
    "agp_step": ["prunekit.schedules.gradual_pruning_callback", "prunekit.schedules.prune_agp",
                 "prunekit.pruning.prune_global"],
    "imp_rewind": ["prunekit.lottery.find_lottery_ticket", "prunekit.lottery.prune_remaining",
                   "prunekit.lottery.rewind_weights"],
}


# Every statement of each exercise's contract (as the notebook states it) and the cases that test it
# (a case counts when its label contains the text); tests/test_checks_contract.py runs the checks and
# fails for a statement without a case (issue 18, point 7).
CONTRACT = {
    "agp_sparsity": {
        "the cubic ramp s_f + (s_i - s_f)(1 - k/n)^3": ["t = 3 of a 10-step ramp", "t = 5 of a 10-step ramp"],
        "t rounded down to the last pruning step (every Δt steps)": ["frequency 4: t = 7 rounds down"],
        "s_i before (and at) start_step": ["before start_step: s_i", "at start_step: still s_i"],
        "s_f from t0 + nΔt on": ["at t0 + n*Δt and after: s_f", "one step before the end"],
        "a Python float, whole schedules": ["integer sparsities 0 and 1", "the whole schedule"],
    },
    "iterative_targets": {
        "s_k = 1 - (1 - s_f)^(k/R), k = 1..R": ["final 0.875, 3 round(s)", "final 0.96, 2 round(s)"],
        "one target per round, a list": ["final 0.9, 1 round(s)", "final 0.6876, 12 round(s)"],
        "the last entry EXACTLY final_sparsity (visible at 0.3, 0.1, 0.2)": ["final 0.3, 4", "final 0.1, 3",
                                                                              "final 0.2, 1"],
        "final 0 gives zeros": ["final 0.0, 3 round(s)"],
    },
    "agp_step": {
        "target = agp_sparsity(step, ...) over all masked tensors together": ["a pruning event"],
        "between events and before start_step the target does not move": ["between events (step 17)",
                                                                           "before start_step"],
        "prune the smallest |w| among the SURVIVORS, one global ranking": ["a pruning event",
                                                                           "masks already 50 % pruned"],
        "never revive; more pruned than the target: nothing changes": ["pruned weights revived by the optimizer",
                                                                       "already prune more than the target"],
        "zero the model's pruned weights in place at every call": ["revived by the optimizer",
                                                                   "a whole SGD+momentum run"],
        "s_f after the ramp, s_i > 0 at start_step": ["after the ramp: s_f", "s_i = 0.2 at start_step"],
        "new bool (or 0/1) masks returned, input masks untouched": ["float 0/1 masks"],
        "as a training callback under SGD with momentum and Adam": ["a whole SGD+momentum run",
                                                                   "a whole Adam run"],
    },
    "prune_remaining_mask": {
        "round(fraction * kept) of the SURVIVING weights": ["6 of 10 kept, fraction 0.5", "round, not int"],
        "those of smallest |w|": ["large negative weights survive", "10 weights, all kept"],
        "pruned entries stay pruned, their values ignored": ["pruned entries hold large values",
                                                             "surviving weights that are exactly 0"],
        "nothing left: nothing changes": ["nothing left to prune"],
        "bool or 0/1 masks, any dtype; inputs unchanged": ["float 0/1 mask, float64 weight"],
    },
    "rewind": {
        "every tensor of init_state back (weights, biases, buffers)": ["with BatchNorm: running statistics",
                                                                       "masks for fc1 and fc2, fc3 dense"],
        "pruned weights 0: mask * θ0": ["masks for every weight", "float 0/1 masks"],
        "in place, the same Parameter objects, prunekit masks kept": ["the model carries prunekit masks"],
        "no shared memory with init_state": ["no masks: a plain reset"],
        "returns the model": ["BatchNorm and prunekit masks"],
    },
    "early_stop": {
        "the (step, val_acc) pair of highest accuracy": ["peak in the middle", "best at the last point"],
        "the earliest on ties": ["ties: the earliest best", "a plateau then a drop"],
        "steps from the curve, not indices": ["steps that are not 0, 1, 2"],
        "one point": ["one point"],
    },
    "imp_rewind": {
        "prune `fraction` of the REMAINING weights of each layer per round, by trained |w|":
            ["3 rounds, p = 0.2", "p = 0.8: few survivors"],
        "the output layer at half the rate": ["output layer fc3 at half the rate", "late rewinding, output layer"],
        "rewind survivors to θ0 (rewind_step 0), pruned weights 0, biases too": ["rewind to θ0", "one round"],
        "rewind to θ_k, the weights after k steps of round 0": ["late rewinding: θ_k after 5 steps",
                                                                "late rewinding to θ_1"],
        "every round trained with train_round, same seed, masks kept; records per round": ["3 rounds, p = 0.2"],
        "round 0 is the dense run; rounds + 1 records; the input model untouched": ["one round, p = 0.6"],
    },
    "should_stop": {
        "history[-1] < history[0] - tolerance": ["a big drop", "0.5 points below with tolerance 0.25 points"],
        "a drop of exactly tolerance is fine (strict <)": ["a drop of exactly the tolerance is fine"],
        "compared with the dense model, not the best or previous round": ["not the best round",
                                                                          "not the previous round"],
        "tolerance is a fraction": ["tolerance is a fraction"],
        "a bool; only the dense model: False": ["only the dense model", "better than dense"],
    },
}


# ============================================================================ helpers
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _number(out, what: str, hint: str) -> float:
    if isinstance(out, torch.Tensor) and out.numel() == 1 and not out.is_complex():
        out = out.item()
    expect(isinstance(out, Real) and not isinstance(out, bool),
           f"{what} is {type(out).__name__} {out!r:.60}, expected a number", hint)
    value = float(out)
    expect(math.isfinite(value), f"{what} is {value}, expected a finite number", hint)
    return value


# ============================================================================ agp_sparsity
_AGP_HINT = ("s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * Δt))**3, where t is rounded DOWN to the last pruning "
             "step t0 + k*Δt (k = (t - t0) // Δt, at most n); s_i before t0, s_f from t0 + n*Δt on")


def _agp_variants(step, s_i, s_f, t0, n, dt) -> dict[str, float]:
    """What some typical mistakes return, with the hint each deserves."""
    k = min(max(step - t0, 0) // dt, n)
    cont = min(max(step - t0, 0) / (n * dt), 1.0)
    by_n = min(max(step - t0, 0) / n, 1.0)
    before = step < t0
    return {
        "the exponent is 3 (a cubic ramp), not 2":
            s_i if before else s_f + (s_i - s_f) * (1 - k / n) ** 2,
        "the exponent is 3 (a cubic ramp): (1 - progress)**3, not progress**3":
            s_i if before else s_i + (s_f - s_i) * (k / n) ** 3,
        "the sparsity only changes every Δt steps: round t down with k = (t - t0) // Δt, progress = k / n":
            s_i if before else s_f + (s_i - s_f) * (1 - cont) ** 3,
        "you swapped s_i and s_f: the ramp starts at initial_sparsity and ends at final_sparsity":
            s_f if before else s_i + (s_f - s_i) * (1 - k / n) ** 3,
        "the ramp lasts n * Δt steps: divide (t - t0) by n * Δt (or count events k = (t - t0) // Δt and use k / n)":
            s_i if before else s_f + (s_i - s_f) * (1 - by_n) ** 3,
    }


def _agp_case(label: str, params: Sequence[tuple], expected: Sequence[float] | None = None) -> Case:
    def run(fn):
        for i, (step, s_i, s_f, t0, n, dt) in enumerate(params):
            call_text = f"agp_sparsity({step}, {s_i}, {s_f}, start_step={t0}, n_steps={n}, frequency={dt})"
            out = fn(step, s_i, s_f, t0, n, dt)
            value = _number(out, call_text, "return a Python float")
            want = reference_agp_sparsity(step, s_i, s_f, t0, n, dt) if expected is None else expected[i]
            if abs(value - want) <= 1e-9:
                continue
            hint = _AGP_HINT
            if step < t0:
                hint = "before t0 (start_step) the sparsity is initial_sparsity: return s_i there"
            elif step >= t0 + n * dt:
                hint = "from t0 + n*Δt on the sparsity stays at s_f: cap the number of pruning events at n"
            for text, wrong in _agp_variants(step, s_i, s_f, t0, n, dt).items():
                if abs(value - wrong) <= 1e-9:
                    hint = text
                    break
            raise CheckFailed(f"{call_text} returned {value:.6g}, expected {want:.6g}", hint)
    return Case(label, run)


def _agp_cases() -> list[Case]:
    cases = [
        _agp_case("t = 3 of a 10-step ramp to 0.8: 0.8 * (1 - 0.7³) = 0.5256", [(3, 0.0, 0.8, 0, 10, 1)], [0.5256]),
        _agp_case("t = 5 of a 10-step ramp to 0.8: 0.8 * (1 - 0.5³) = 0.7", [(5, 0.0, 0.8, 0, 10, 1)], [0.7]),
        _agp_case("frequency 4: t = 7 rounds down to t = 4", [(7, 0.0, 0.8, 0, 5, 4)], [0.3904]),
        _agp_case("before start_step: s_i", [(3, 0.1, 0.9, 10, 5, 2), (0, 0.25, 0.5, 1, 3, 1)], [0.1, 0.25]),
        _agp_case("at start_step: still s_i", [(10, 0.1, 0.9, 10, 5, 2)], [0.1]),
        _agp_case("one step before the end: still 4 of 5 events", [(19, 0.0, 1.0, 10, 5, 2)], [1.0 - 0.2 ** 3]),
        _agp_case("at t0 + n*Δt and after: s_f", [(20, 0.1, 0.9, 10, 5, 2), (10_000, 0.1, 0.9, 10, 5, 2)],
                  [0.9, 0.9]),
        _agp_case("s_i = s_f: constant", [(t, 0.5, 0.5, 2, 4, 3) for t in range(0, 20, 3)]),
        _agp_case("integer sparsities 0 and 1", [(t, 0, 1, 0, 4, 1) for t in range(6)]),
    ]
    g = _gen(41)
    for t0, n, dt in [(0, 10, 1), (100, 8, 50), (7, 3, 5), (0, 1, 10), (430, 20, 43)]:
        s = sorted(torch.rand(2, generator=g).tolist())
        s_i, s_f = round(s[0] * 0.5, 3), round(0.5 + s[1] * 0.49, 3)
        steps = sorted(set(list(range(0, t0 + n * dt + 2 * dt + 1, max(1, dt // 3))) + [t0 + n * dt - 1]))
        cases.append(_agp_case(f"the whole schedule s_i={s_i}, s_f={s_f}, t0={t0}, n={n}, Δt={dt}",
                               [(t, s_i, s_f, t0, n, dt) for t in steps if t >= 0]))
    return cases


def check_agp_sparsity(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``agp_sparsity(step, initial_sparsity, final_sparsity, start_step, n_steps, frequency)`` against
    Zhu & Gupta's cubic schedule to 1e-9, step by step over whole schedules (rounding down to the pruning
    steps, s_i before t0, s_f after t0 + nΔt)."""
    return run_check("agp_sparsity", fn, _agp_cases, hint=_AGP_HINT,
                     passed="cubic, every Δt steps, s_i before t0, s_f after the ramp", strict=strict)


# ============================================================================ iterative_targets
_ITER_HINT = ("each round keeps the same fraction (1 - p) of the weights still there, so after round k a "
              "fraction (1 - p)**k remains; with (1 - p)**rounds = 1 - final: s_k = 1 - (1 - final)**(k / rounds), "
              "k = 1..rounds")


def _iter_case(final: float, rounds: int, expected: Sequence[float] | None = None) -> Case:
    def run(fn):
        out = fn(final, rounds)
        if isinstance(out, torch.Tensor):
            out = out.flatten().tolist()
        try:
            values = [float(v) for v in out]
        except (TypeError, ValueError):
            raise CheckFailed(f"returned {type(out).__name__} {out!r:.60}, expected a list of {rounds} floats",
                              "return a list: one target sparsity per round") from None
        want = reference_iterative_targets(final, rounds) if expected is None else list(expected)
        hint = _ITER_HINT
        if len(values) == rounds + 1 and abs(values[0]) < 1e-12:
            hint = "leave out round 0 (the dense model): k runs from 1 to rounds"
        expect(len(values) == rounds, f"iterative_targets({final}, {rounds}) returned {len(values)} targets, "
               f"expected {rounds}", hint)
        ok = all(abs(v - w) <= 1e-9 for v, w in zip(values, want))
        if not ok:
            linear = [final * k / rounds for k in range(1, rounds + 1)]
            keeps = [(1 - final) ** (k / rounds) for k in range(1, rounds + 1)]
            shifted = [1 - (1 - final) ** (k / rounds) for k in range(rounds)]
            per_round = [1 - (1 - final) ** (1 / rounds)] * rounds
            for wrong, text in ((linear, "equal steps of sparsity prune a growing share of what is left; prune "
                                         "the same fraction of the REMAINING weights each round (geometric)"),
                                (keeps, "those are the remaining fractions; return sparsities "
                                        "1 - (1 - final)**(k / rounds)"),
                                (shifted, "k starts at 1: the first target is already above 0"),
                                (per_round, "that is the per-round fraction p; return the cumulative sparsity after "
                                            "each round")):
                if all(abs(v - w) <= 1e-9 for v, w in zip(values, wrong)):
                    hint = text
                    break
            shown = ", ".join(f"{v:.4g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")
            expected_text = ", ".join(f"{w:.4g}" for w in want[:6]) + (", ..." if len(want) > 6 else "")
            raise CheckFailed(f"iterative_targets({final}, {rounds}) returned [{shown}], expected [{expected_text}]",
                              hint)
        expect(values[-1] == float(final), f"the last target is {values[-1]!r}, not exactly {final}",
               "set the last target to final_sparsity itself: 1 - (1 - f)**(k / k) is off by ~1e-16 for "
               "values like 0.3 or 0.1")
    return Case(f"final {final}, {rounds} round(s)", run)


def _iter_cases() -> list[Case]:
    cases = [_iter_case(0.875, 3, [0.5, 0.75, 0.875]), _iter_case(0.96, 2, [0.8, 0.96]), _iter_case(0.9, 1, [0.9]),
             _iter_case(0.0, 3, [0.0, 0.0, 0.0]), _iter_case(0.99, 5), _iter_case(0.5, 4),
             # 1 - (1 - f)**(k/k) is not exactly f for these: only the explicit last entry is
             _iter_case(0.3, 4), _iter_case(0.1, 3), _iter_case(0.2, 1)]
    g = _gen(42)
    for rounds in (3, 7, 12):
        cases.append(_iter_case(round(0.5 + 0.49 * torch.rand(1, generator=g).item(), 4), rounds))
    return cases


def check_iterative_targets(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``iterative_targets(final_sparsity, rounds)``: ``[1 - (1 - final)**(k / rounds) for k = 1..rounds]``
    to 1e-9, the last one exactly ``final_sparsity``."""
    return run_check("iterative_targets", fn, _iter_cases, hint=_ITER_HINT,
                     passed="geometric, k = 1..rounds, last one exact", strict=strict)


# ============================================================================ prune_remaining_mask
_REMAIN_HINT = ("count the weights the mask still keeps (n_kept = mask.sum()), prune round(fraction * n_kept) of "
                "THEM, those with the smallest |w|: give pruned entries a score of +inf (torch.where) so they are "
                "never picked, and keep every already-pruned entry pruned")


def _remain_case(label: str, weight: torch.Tensor, mask: torch.Tensor, fraction: float,
                 expected: Sequence[int] | None = None) -> Case:
    def run(fn):
        out = call(fn, weight, mask, fraction)
        new = _as_mask(out, tuple(weight.shape), "the new mask")
        keep = mask.bool()
        n_kept = int(keep.sum())
        n_prune = round(fraction * n_kept)
        revived = int((new & ~keep).sum())
        expect(revived == 0, f"{revived} weight(s) pruned by the old mask are kept again",
               "pruning never revives a weight: the new mask must be False wherever the old one is False "
               "(rank only the surviving weights, e.g. with +inf scores for pruned ones)")
        pruned_now = int((keep & ~new).sum())
        hint = _REMAIN_HINT
        if n_kept != keep.numel() and pruned_now == round(fraction * keep.numel()) and pruned_now != n_prune:
            hint = ("you pruned fraction of ALL the weights; IMP prunes that fraction of the REMAINING ones: "
                    "round(fraction * mask.sum())")
        elif pruned_now == int(fraction * n_kept) and pruned_now != n_prune:
            hint = "int() truncates; the course counts with round(fraction * n_kept)"
        elif pruned_now == n_kept - n_prune and pruned_now != n_prune:
            hint = "fraction is what you REMOVE, not what you keep"
        expect(pruned_now == n_prune, f"pruned {pruned_now} of the {n_kept} surviving weights, expected "
               f"round({fraction} * {n_kept}) = {n_prune}", hint)
        if 0 < n_prune < n_kept:
            mags = weight.detach().abs().double()
            newly, still = keep & ~new, new
            worst_still, best_newly = mags[still].min().item(), mags[newly].max().item()
            hint = _REMAIN_HINT
            signed = weight.detach().double()
            if _is_bottom(newly, signed, keep) and not _is_bottom(newly, mags, keep):
                hint = "rank by magnitude |w|, not by signed value: a large negative weight matters"
            elif _is_bottom(newly, -mags, keep):
                hint = "you pruned the LARGEST weights; prune the smallest |w|"
            expect(best_newly <= worst_still, f"pruned a surviving weight with |w| = {best_newly:.4g} but kept one "
                   f"with |w| = {worst_still:.4g}", hint)
        if expected is not None:
            want = torch.tensor(expected, dtype=torch.bool).view(weight.shape)
            expect(torch.equal(new, want), f"got {describe_tensor(new.int())}, expected {describe_tensor(want.int())}",
                   _REMAIN_HINT)
    return Case(label, run)


def _is_bottom(chosen: torch.Tensor, scores: torch.Tensor, among: torch.Tensor) -> bool:
    """``chosen`` (a subset of ``among``) holds the lowest ``scores`` of ``among`` (any tie-break)."""
    rest = among & ~chosen
    if not chosen.any() or not rest.any():
        return True
    return scores[chosen].max().item() <= scores[rest].min().item()


def _remain_cases() -> list[Case]:
    w = torch.tensor([0.5, -0.1, 0.3, 0.9, 0.2, 0.05, -0.7, 0.6, 0.01, 0.4])
    all_kept = torch.ones(10, dtype=torch.bool)
    half = torch.tensor([1, 0, 1, 1, 0, 0, 1, 1, 0, 1], dtype=torch.bool)
    cases = [
        _remain_case("10 weights, all kept, fraction 0.2", w, all_kept, 0.2, [1, 1, 1, 1, 1, 0, 1, 1, 0, 1]),
        _remain_case("6 of 10 kept, fraction 0.5: 3 of the 6 survivors go", w, half, 0.5,
                     [0, 0, 0, 1, 0, 0, 1, 1, 0, 0]),
        _remain_case("pruned entries hold large values (ignore them)",
                     torch.tensor([9.0, 0.1, 8.0, 0.3, 0.2, 0.4]), torch.tensor([0, 1, 0, 1, 1, 1], dtype=torch.bool),
                     0.5, [0, 0, 0, 1, 0, 1]),
        _remain_case("large negative weights survive", torch.tensor([[-5.0, 0.1], [0.2, 3.0]]),
                     torch.ones(2, 2, dtype=torch.bool), 0.5, [[1, 0], [0, 1]]),
        _remain_case("round, not int: 0.2 * 9 = 1.8 -> 2", torch.arange(1.0, 11.0),
                     torch.tensor([1] * 9 + [0], dtype=torch.bool), 0.2, [0, 0] + [1] * 7 + [0]),
        _remain_case("surviving weights that are exactly 0 (pruned ones must not come back)",
                     torch.tensor([0.5, 0.0, 0.0, 0.75, 0.0, 0.0]), torch.tensor([1, 1, 1, 1, 0, 0], dtype=torch.bool),
                     0.25),
        _remain_case("nothing left to prune", w, torch.zeros(10, dtype=torch.bool), 0.2, [0] * 10),
        _remain_case("float 0/1 mask, float64 weight", w.double(), half.float(), 0.5, [0, 0, 0, 1, 0, 0, 1, 1, 0, 0]),
    ]
    g = _gen(43)
    for shape, old_keep, fraction in [((300, 784), 1.0, 0.2), ((100, 300), 0.512, 0.2), ((10, 100), 0.3, 0.1),
                                      ((64, 3, 3, 3), 0.7, 0.35), ((50,), 0.5, 0.9)]:
        weight = torch.randn(shape, generator=g)
        mask = torch.rand(shape, generator=g) < old_keep
        if old_keep < 1:
            weight = torch.where(mask, weight, torch.randn(shape, generator=g) * 5)   # stale values where pruned
        cases.append(_remain_case(f"random {shape}, {old_keep:.0%} kept, fraction {fraction}", weight, mask, fraction))
    return cases


def check_prune_remaining_mask(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``prune_remaining_mask(weight, mask, fraction)``: a new mask pruning exactly
    ``round(fraction * mask.sum())`` more entries, all among the surviving ones and of smallest ``|w|``
    (ties: any choice); nothing revived; inputs untouched."""
    return run_check("prune_remaining_mask", fn, _remain_cases, hint=_REMAIN_HINT,
                     passed="fraction of the remaining, smallest |w|, no revival, exact counts", strict=strict)


# ============================================================================ rewind
_REWIND_HINT = ("copy every tensor of init_state back into the model in place (model.load_state_dict(init_state) "
                "does exactly that), then, under torch.no_grad(), multiply each weight named in masks by its mask")


def _rewind_model(seed: int, batchnorm: bool) -> nn.Module:
    torch.manual_seed(seed)
    layers = [("fc1", nn.Linear(8, 6))]
    if batchnorm:
        layers.append(("bn1", nn.BatchNorm1d(6)))
    layers += [("relu1", nn.ReLU()), ("fc2", nn.Linear(6, 5)), ("relu2", nn.ReLU()), ("fc3", nn.Linear(5, 3))]
    return nn.Sequential(OrderedDict(layers))


def _rewind_case(label: str, mask_names: tuple[str, ...], batchnorm: bool = False, library_masks: bool = False,
                 float_masks: bool = False, seed: int = 0) -> Case:
    from ..pruning import apply_masks, get_masks

    def run(fn):
        model = _rewind_model(seed, batchnorm)
        init_state = copy.deepcopy(model.state_dict())
        g = _gen(seed + 100)
        params = dict(model.named_parameters())
        masks = {n: torch.rand(params[n].shape, generator=g) < 0.6 for n in mask_names}
        with torch.no_grad():   # "training": every parameter and buffer moves away from θ0
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.5)
            if batchnorm:
                model.train()(torch.randn(16, 8, generator=g))
        if library_masks:
            apply_masks(model, masks)   # as in the lab: the model carries its masks, pruned weights are 0
        if float_masks:
            masks = {n: m.float() for n, m in masks.items()}
        trained = {n: t.detach().clone() for n, t in model.state_dict().items()}
        carried = get_masks(model)
        init_copy, masks_copy = snapshot(init_state), snapshot(masks)
        objects = dict(model.named_parameters())
        try:
            out = fn(model, init_state, masks)
        except RuntimeError as exc:
            if "leaf Variable" in str(exc) or "requires grad" in str(exc):
                raise CheckFailed("an in-place change of a parameter that requires grad raised RuntimeError",
                                  "wrap the updates in `with torch.no_grad():`") from None
            raise
        expect(out is None or out is model, f"returned {type(out).__name__}, expected the model itself",
               "change the model in place and `return model`")
        expect(all(torch.equal(masks[n], masks_copy[n]) for n in masks), "your function changed the masks",
               "read the masks, do not modify them")
        expect(all(torch.equal(init_state[n], init_copy[n]) for n in init_state), "your function changed init_state",
               "init_state must stay θ0 for the next rounds: copy from it, never write into it")
        after = dict(model.named_parameters())
        expect(set(after) == set(objects), f"the model's parameters changed names: {sorted(after)}")
        for n, p in objects.items():
            expect(after[n] is p, f"{n} is a new object after rewind",
                   "copy the values into the existing parameters (load_state_dict or `param.copy_(...)` under "
                   "torch.no_grad()); do not assign new nn.Parameter objects")
            expect(p.requires_grad, f"{n} no longer requires grad", "do not detach the parameters")
        state = model.state_dict()
        for n, init in init_copy.items():
            now = state[n].detach()
            if n in masks:
                keep = masks_copy[n].bool()
                if not torch.equal(now[~keep], torch.zeros_like(now[~keep])):
                    hint = _REWIND_HINT
                    if torch.equal(now[~keep], init[~keep]):
                        hint = ("the pruned weights got their initial values back: a ticket is the SURVIVING "
                                "weights at θ0 and zeros elsewhere; multiply by the mask after loading")
                    if torch.equal(now[keep], torch.zeros_like(now[keep])):
                        hint = "you zeroed the kept weights: the mask is True where a weight SURVIVES"
                    raise CheckFailed(f"{n}: {int((now[~keep] != 0).sum())} pruned weight(s) are not 0", hint)
                want = init[keep]
                got = now[keep]
            else:
                want, got = init, now
            if not torch.equal(got, want):
                hint = _REWIND_HINT
                if torch.equal(got, trained[n][keep] if n in masks else trained[n]):
                    hint = ("these are still the trained values: rewinding puts the surviving weights back to "
                            "their values in init_state (θ0), not the final ones")
                    if n not in masks:
                        hint = (f"{n} is not in masks but must be rewound too: load EVERY tensor of init_state "
                                "(biases, BatchNorm statistics), e.g. model.load_state_dict(init_state)")
                raise CheckFailed(f"{n} does not hold its initial values after rewind", hint)
        now_masks = get_masks(model)   # attaching the masks is fine; removing or changing carried ones is not
        expect(all(n in now_masks and torch.equal(now_masks[n], m) for n, m in carried.items()),
               "the masks the model carries changed", "leave the model's own pruning masks alone")
        with torch.no_grad():   # the next round trains the model: that must not write into init_state
            for p in model.parameters():
                p.add_(1.0)
            for name, b in model.named_buffers():
                if b.is_floating_point() and not name.endswith("_keep"):
                    b.add_(1.0)
        expect(all(torch.equal(init_state[n], init_copy[n]) for n in init_state),
               "training the rewound model changes init_state: the model shares memory with it",
               "copy the values (load_state_dict, `param.copy_(init)`, or `init.clone()`); `param.data = init` "
               "makes the parameter and θ0 the same tensor, so the next round rewinds to trained weights")
    return Case(label, run)


def _rewind_cases() -> list[Case]:
    return [
        _rewind_case("masks for fc1 and fc2, fc3 dense", ("fc1.weight", "fc2.weight"), seed=1),
        _rewind_case("masks for every weight", ("fc1.weight", "fc2.weight", "fc3.weight"), seed=2),
        _rewind_case("the model carries prunekit masks (apply_masks)", ("fc1.weight", "fc2.weight", "fc3.weight"),
                     library_masks=True, seed=3),
        _rewind_case("with BatchNorm: running statistics are rewound too", ("fc1.weight", "fc2.weight"),
                     batchnorm=True, seed=4),
        _rewind_case("float 0/1 masks", ("fc2.weight", "fc1.weight"), float_masks=True, seed=5),
        _rewind_case("no masks: a plain reset to init_state", (), seed=6),
        _rewind_case("BatchNorm and prunekit masks", ("fc1.weight", "fc3.weight"), batchnorm=True,
                     library_masks=True, seed=7),
    ]


def check_rewind(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``rewind(model, init_state, masks)``: afterwards every tensor of the model equals init_state
    (weights, biases, buffers), pruned weights are exactly 0, the same Parameter objects are kept, and
    neither init_state nor masks changed or share memory with the model."""
    return run_check("rewind", fn, _rewind_cases, hint=_REWIND_HINT,
                     passed="θ0 everywhere, pruned weights 0, biases and buffers, in place, no shared memory",
                     strict=strict)


# ============================================================================ early_stop
_EARLY_HINT = ("return the (step, val_acc) pair with the HIGHEST validation accuracy; on ties the earliest one "
               "(early stopping stops at the first time the best value is reached)")


def _early_case(label: str, curve: list[tuple[int, float]], expected: tuple[int, float] | None = None) -> Case:
    def run(fn):
        out = call(fn, curve)
        if isinstance(out, torch.Tensor):
            out = out.tolist()
        expect(isinstance(out, (tuple, list)) and len(out) == 2,
               f"returned {type(out).__name__} {out!r:.60}, expected a pair (step, val_acc)",
               "return a tuple `(step, acc)` taken from the curve")
        step, acc = (_number(v, "the result", "return numbers taken from the curve") for v in out)
        want = reference_early_stop(curve) if expected is None else expected
        if (step, acc) == (float(want[0]), float(want[1])):
            return
        hint = _EARLY_HINT
        steps, accs = [c[0] for c in curve], [c[1] for c in curve]
        best_acc = max(accs)
        last_best = max(i for i, a in enumerate(accs) if a == best_acc)
        if acc == best_acc and step == steps[last_best]:
            hint = "on ties return the EARLIEST best point (that is when early stopping would stop)"
        elif acc == best_acc and step == accs.index(best_acc):
            hint = "return the step from the curve, not the index of the point in the list"
        elif (step, acc) == tuple(map(float, curve[-1])):
            hint = "the last point is where training ended, not the best one; find the maximum accuracy"
        elif acc == min(accs):
            hint = "that is the WORST point: take the highest accuracy"
        raise CheckFailed(f"returned ({step:g}, {acc:g}), expected ({want[0]}, {want[1]})", hint)
    return Case(label, run)


def _early_cases() -> list[Case]:
    cases = [
        _early_case("peak in the middle", [(100, 0.9), (200, 0.95), (300, 0.94)], (200, 0.95)),
        _early_case("ties: the earliest best", [(250, 0.5), (500, 0.75), (750, 0.75), (1000, 0.625)], (500, 0.75)),
        _early_case("best at the first point", [(0, 0.9), (10, 0.8), (20, 0.7)], (0, 0.9)),
        _early_case("best at the last point", [(5, 0.1), (6, 0.2), (7, 0.3)], (7, 0.3)),
        _early_case("one point", [(42, 0.5)], (42, 0.5)),
        _early_case("steps that are not 0, 1, 2...", [(3, 0.25), (1, 0.5), (2, 0.125)], (1, 0.5)),
        _early_case("a plateau then a drop", [(1, 0.875), (2, 0.875), (3, 0.875), (4, 0.5)], (1, 0.875)),
    ]
    g = _gen(44)
    for n in (5, 20, 60):
        accs = (torch.randint(900, 990, (n,), generator=g).double() / 1000).tolist()
        cases.append(_early_case(f"random curve of {n} points", [(250 * (i + 1), a) for i, a in enumerate(accs)]))
    return cases


def check_early_stop(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``early_stop(curve)``: the ``(step, val_acc)`` point of highest accuracy, the earliest on ties."""
    return run_check("early_stop", fn, _early_cases, hint=_EARLY_HINT,
                     passed="highest accuracy, earliest on ties, steps not indices", strict=strict)


# ============================================================================ should_stop
_STOP_HINT = ("compare the LATEST accuracy with the DENSE one (the first of history): stop when "
              "history[-1] < history[0] - tolerance; tolerance is a fraction (0.01 = one point)")


def _stop_case(label: str, history: list[float], tolerance: float, expected: bool) -> Case:
    def run(fn):
        out = call(fn, history, tolerance)
        if isinstance(out, torch.Tensor):  # the text asks for a Python bool; `if tensor:` works, but `is True` does not
            expect(False, f"returned a tensor {out!r:.40}, expected True or False", "return a Python bool: bool(...)")
        expect(isinstance(out, bool) or type(out).__module__ == "numpy" and type(out).__name__ in ("bool", "bool_"),
               f"returned {type(out).__name__} {out!r:.40}, expected True or False", "return a bool")
        hint = _STOP_HINT
        if len(history) > 2 and bool(out) == (history[-1] < history[-2] - tolerance) and bool(out) != expected:
            hint = "compare with the DENSE model (history[0]), not with the previous round"
        elif bool(out) == (history[-1] < max(history) - tolerance) and bool(out) != expected:
            hint = "the reference is the dense model, history[0], not the best round"
        elif bool(out) == (history[-1] <= history[0] - tolerance) and bool(out) != expected:
            hint = "a drop of exactly `tolerance` is still within tolerance: use a strict <"
        elif bool(out) == (history[-1] < history[0] - tolerance / 100) and bool(out) != expected:
            hint = "tolerance is already a fraction (0.01 = one point); do not divide it by 100"
        expect(bool(out) == expected, f"should_stop({history}, {tolerance}) returned {out}, expected {expected}", hint)
    return Case(label, run)


def _stop_cases() -> list[Case]:
    return [
        _stop_case("a big drop", [0.75, 0.25], 0.25, True),
        _stop_case("tolerance is a fraction", [0.98, 0.975], 0.01, False),
        _stop_case("a drop of exactly the tolerance is fine", [0.75, 0.5], 0.25, False),
        _stop_case("only the dense model", [0.75], 0.0, False),
        _stop_case("better than dense", [0.5, 0.75, 0.875], 0.0, False),
        _stop_case("compared with dense, not the best round", [0.5, 0.875, 0.75, 0.75], 0.0, False),
        _stop_case("compared with dense, not the previous round", [0.75, 0.5, 0.5], 0.125, True),
        _stop_case("an earlier dip does not matter", [0.75, 0.5, 0.875], 0.0, False),
        _stop_case("0.5 points below with tolerance 0.25 points", [0.98, 0.975], 0.0025, True),
    ]


def check_should_stop(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``should_stop(history, tolerance)``: ``history[-1] < history[0] - tolerance`` as a bool."""
    return run_check("should_stop", fn, _stop_cases, hint=_STOP_HINT,
                     passed="latest vs dense, strict <, tolerance as a fraction", strict=strict)


# ============================================================================ imp_rewind (capstone)


_IMP_HINT = ("work on a copy; keep θ0 = a copy of its state_dict (or θ_k, captured with an after_step callback at "
             "step rewind_step of round 0); each round after the first: prune_remaining_mask on the weights the "
             "previous round TRAINED, rewind(work, θ, masks), pruning.apply_masks(work, masks), then "
             "train_round(...); record masks, start state, trained state and train_round's result")


def _small_mlp(seed: int, hidden: tuple[int, int], first_relu: str = "relu1") -> nn.Module:
    """A seeded 10-h1-h2-3 MLP (fc1, fc2, fc3) for the capstone cases."""
    torch.manual_seed(seed)
    h1, h2 = hidden
    return nn.Sequential(OrderedDict([("fc1", nn.Linear(10, h1)), (first_relu, nn.ReLU()), ("fc2", nn.Linear(h1, h2)),
                                      ("relu2", nn.ReLU()), ("fc3", nn.Linear(h2, 3))]))


def _imp_model(seed: int) -> nn.Module:
    return _small_mlp(seed, (24, 12))


def _imp_data(seed: int, n: int) -> torch.utils.data.TensorDataset:
    g = _gen(seed)
    centres = torch.randn(3, 10, generator=_gen(77)) * 1.5   # one problem for every case
    y = torch.arange(n) % 3
    return torch.utils.data.TensorDataset(centres[y] + torch.randn(n, 10, generator=g), y)


def _replay(model: nn.Module, start: Mapping, masks: Mapping | None, data, val_data, steps, eval_every, seed):
    from ..pruning import apply_masks

    twin = copy.deepcopy(model)
    twin.load_state_dict(start)
    if masks is not None:
        apply_masks(twin, masks)
    run = reference_train_round(twin, data, val_data, steps, eval_every, seed=seed)
    return twin.state_dict(), run


def _close(a: Mapping, b: Mapping, atol: float = 1e-5) -> bool:
    return set(a) == set(b) and all(torch.allclose(a[n].float(), b[n].float(), atol=atol, rtol=1e-4) for n in a)


def _imp_case(label: str, rounds: int, fraction: float, rewind_step: int = 0, output_layer: str | None = None,
              seed: int = 0, steps: int = 8) -> Case:
    def run(fn):
        model, train_data, val_data = _imp_model(seed), _imp_data(seed + 1, 120), _imp_data(seed + 2, 60)
        theta0 = {n: t.detach().clone() for n, t in model.state_dict().items()}
        eval_every = min(4, steps)
        out = fn(model, train_data, val_data, rounds, fraction, steps, eval_every, rewind_step, output_layer, seed)
        expect(isinstance(out, Mapping) and {"rewind_state", "rounds"} <= set(out),
               f"returned {type(out).__name__}, expected a dict with 'rewind_state' and 'rounds'",
               'return {"rewind_state": θ_k, "rounds": records}')
        expect(all(torch.equal(t, theta0[n]) for n, t in model.state_dict().items()),
               "your function changed the model it was given", "run IMP on copy.deepcopy(model)")
        records = out["rounds"]
        expect(isinstance(records, (list, tuple)) and len(records) == rounds + 1,
               f"{len(records) if isinstance(records, (list, tuple)) else records!r} records for rounds={rounds}, "
               f"expected {rounds + 1} (round 0 is the dense network)",
               "record round 0 and each of the `rounds` rounds")
        for r, rec in enumerate(records):
            missing = {"masks", "start", "trained", "curve", "best_step", "val_acc", "stopped"} - set(rec)
            expect(not missing, f"round {r}'s record has no {sorted(missing)}",
                   'record {"masks": ..., "start": ..., "trained": ..., **train_round(...)} for every round')
        names = _weight_names(model)
        theta = out["rewind_state"]
        expect(isinstance(theta, Mapping) and set(theta) == set(theta0),
               "rewind_state is not a state dict of the model", "keep a copy of work.state_dict()")
        if rewind_step == 0:
            expect(all(torch.equal(theta[n], theta0[n]) for n in theta0), "rewind_state is not θ0 (rewind_step=0)",
                   "with rewind_step = 0 rewind to the weights the model had when it was given to you")
        else:
            want, _ = _replay(model, theta0, None, train_data, val_data, rewind_step, rewind_step, seed)
            hint = (f"θ_k is the state after exactly {rewind_step} optimizer steps of round 0: capture it with an "
                    f"after_step callback `f(model, step)` when step == rewind_step (copy.deepcopy of state_dict)")
            if all(torch.equal(theta[n], theta0[n]) for n in theta0):
                hint = "you rewound to θ0 although rewind_step > 0 (late rewinding); " + hint
            expect(_close(theta, want), f"rewind_state is not the weights after {rewind_step} steps of round 0", hint)
        for r, rec in enumerate(records):
            masks = {n: _as_mask(rec["masks"][n], tuple(theta0[n].shape), f"round {r}'s mask for {n}") for n in names}
            if r == 0:
                expect(all(bool(m.all()) for m in masks.values()), "round 0 must keep every weight (the dense run)")
            else:
                previous = {n: records[r - 1]["masks"][n].bool() for n in names}
                trained = records[r - 1]["trained"]
                for n in names:
                    p = fraction / 2 if n == output_layer else fraction
                    want = reference_prune_remaining_mask(trained[n], previous[n], p)
                    if torch.equal(masks[n], want):
                        continue
                    kept, now = int(previous[n].sum()), int(masks[n].sum())
                    hint = _IMP_HINT
                    if int((masks[n] & ~previous[n]).sum()):
                        hint = "a pruned weight came back: a later mask must be False wherever an earlier one is"
                    elif kept - now == round(p * previous[n].numel()) and kept != previous[n].numel():
                        hint = "prune `fraction` of the REMAINING weights of the layer (round(p * kept)), not of all"
                    elif n == output_layer and kept - now == round(fraction * kept):
                        hint = f"the output layer {output_layer} is pruned at HALF the rate (fraction / 2)"
                    elif torch.equal(masks[n], reference_prune_remaining_mask(theta[n], previous[n], p)):
                        hint = ("rank by the magnitude of the weights the previous round TRAINED to, not of the "
                                "rewound initial values")
                    raise CheckFailed(f"round {r}, {n}: the mask is not the previous round's mask with "
                                      f"round({p} * {kept}) more of its survivors pruned by trained |w|", hint)
                start = rec["start"]
                for n in theta0:
                    want = theta[n] * masks[n] if n in masks else theta[n]
                    if torch.equal(start[n].float(), want.float()):
                        continue
                    hint = ("rewind: every tensor back to rewind_state, then the pruned weights to 0 "
                            "(rewind(work, θ, masks)) before training the round")
                    if n in masks and torch.equal(start[n], theta[n]):
                        hint = "the pruned weights were rewound too: multiply by the mask after loading θ"
                    elif torch.allclose(start[n].float(), (records[r - 1]["trained"][n] * masks.get(n, 1)).float()):
                        hint = ("the round starts from the previous round's trained weights: that is fine-tuning; "
                                "IMP REWINDS the survivors to θ0 (or θ_k) before training again")
                    raise CheckFailed(f"round {r}: {n} does not start from the rewound weights", hint)
            trained_now, rerun = _replay(model, rec["start"], masks if r > 0 else None, train_data, val_data, steps,
                                         eval_every, seed)
            for n in names:
                if r > 0 and bool((rec["trained"][n][~masks[n]] != 0).any()):
                    raise CheckFailed(f"round {r}: pruned weights of {n} are not 0 after training",
                                      "attach the masks before training (pruning.apply_masks(work, masks)): "
                                      "train_round keeps the masks a model carries")
            expect(_close(rec["trained"], trained_now, atol=1e-4),
                   f"round {r}: the trained weights are not what train_round gives from the round's start",
                   "train every round with train_round(work, train_data, val_data, steps, eval_every, seed=seed), "
                   "the same seed each round; record copy.deepcopy(work.state_dict()) right after it")
            expect([s for s, _ in rec["curve"]] == [s for s, _ in rerun["curve"]],
                   f"round {r}: the recorded curve is not train_round's", "store train_round's result in the record")
    return Case(label, run)


def _imp_cases() -> list[Case]:
    return [
        _imp_case("3 rounds, p = 0.2, rewind to θ0", 3, 0.2, seed=0),
        _imp_case("2 rounds, p = 0.5, output layer fc3 at half the rate", 2, 0.5, output_layer="fc3.weight", seed=1),
        _imp_case("late rewinding: θ_k after 5 steps of round 0", 2, 0.3, rewind_step=5, seed=2),
        _imp_case("late rewinding, output layer at half rate", 2, 0.4, rewind_step=3, output_layer="fc3.weight",
                  seed=3),
        _imp_case("one round, p = 0.6", 1, 0.6, seed=4, steps=4),
        _imp_case("p = 0.8: few survivors after 2 rounds", 2, 0.8, seed=5, steps=4),
        _imp_case("late rewinding to θ_1", 1, 0.5, rewind_step=1, seed=6, steps=4),
    ]


def check_imp_rewind(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``imp_rewind(model, train_data, val_data, rounds, fraction, steps, eval_every, rewind_step,
    output_layer, seed)``: per round, ``fraction`` of the surviving weights of each layer pruned by trained
    magnitude (the output layer at half rate), survivors rewound to θ0 or θ_k, pruned weights 0 through training,
    each round trained with ``train_round`` (replayed here), the input model untouched."""
    return run_check("imp_rewind", fn, _imp_cases, hint=_IMP_HINT,
                     passed="p % of the remaining per round, trained |w|, rewind to θ0 and θ_k, masks kept in "
                            "training", strict=strict)


# ============================================================================ agp_step (capstone)


_AGP_STEP_HINT = ("s = agp_sparsity(step, ...); k = round(s * total) - (number already pruned), total over ALL "
                  "masked tensors; if k > 0 prune the k smallest |w| among the SURVIVORS of all tensors together "
                  "(pruned entries score +inf); then multiply every masked weight by its new mask in place under "
                  "torch.no_grad() (every call, also when nothing new is pruned); return the new masks")


def _agp_model(seed: int) -> nn.Module:
    return _small_mlp(seed, (20, 8), first_relu="relu")


def _judge_agp_step(out, model, masks_before, weights_before, step, sched, objects, what: str) -> dict:
    """Everything one call must satisfy; returns the new masks as bool tensors."""
    names = list(masks_before)
    expect(isinstance(out, Mapping) and set(out) == set(names),
           f"{what}: returned {type(out).__name__} {sorted(out) if isinstance(out, Mapping) else ''}, expected a "
           f"dict with a mask for each of {names}", "return {name: new mask} for every name in masks")
    new = {n: _as_mask(out[n], tuple(masks_before[n].shape), f"the mask for {n}") for n in names}
    params = dict(model.named_parameters())
    expect(all(params[n] is objects[n] for n in objects), f"{what}: the model has new Parameter objects",
           "zero the pruned weights in place (param.mul_(mask) under torch.no_grad())")
    old = {n: masks_before[n].bool() for n in names}
    revived = sum(int((new[n] & ~old[n]).sum()) for n in names)
    target = reference_agp_sparsity(step, *sched)
    total = sum(m.numel() for m in old.values())
    already = sum(int((~m).sum()) for m in old.values())
    want = max(round(target * total), already)
    pruned = sum(int((~m).sum()) for m in new.values())
    expect(revived == 0, f"{what}: {revived} weight(s) pruned before are kept again",
           "never revive a weight: rank only the survivors (score +inf for pruned entries), AND with the old masks")
    if pruned != want:
        hint = _AGP_STEP_HINT
        s_i, s_f, t0, n_ev, dt = sched
        cont = min(max(step - t0, 0) / (n_ev * dt), 1.0)
        if step >= t0 and pruned == round((s_f + (s_i - s_f) * (1 - cont) ** 3) * total):
            hint = "between two pruning events the target does not move: use agp_sparsity (t rounded DOWN to events)"
        elif pruned == already + round(target * total) and already:
            hint = ("round(s * total) is the TOTAL to be pruned, including the weights pruned before; "
                    "prune the difference")
        elif pruned == int(target * total):
            hint = "count with round(s * total), not int()"
        raise CheckFailed(f"{what}: {pruned} of {total} weights pruned, expected round({target:.4f}·{total}) = {want}",
                          hint)
    newly = {n: old[n] & ~new[n] for n in names}
    if any(bool(v.any()) for v in newly.values()):
        scores = {n: weights_before[n].abs().double() for n in names}
        worst = max(scores[n][newly[n]].max().item() for n in names if newly[n].any())
        best = min(scores[n][new[n]].min().item() for n in names if new[n].any()) if any(
            bool(new[n].any()) for n in names) else math.inf
        hint = _AGP_STEP_HINT
        counts = {n: int(newly[n].sum()) for n in names}
        if worst > best:
            if all(_is_bottom(newly[n], scores[n], old[n]) for n in names):
                hint = "you ranked each tensor separately (layer-wise); AGP here ranks ALL masked weights together"
            raise CheckFailed(f"{what}: pruned a weight with |w| = {worst:.4g} but kept one with |w| = {best:.4g} "
                              f"(newly pruned per tensor {counts})", hint)
    for n in names:
        w = params[n].detach()
        expect(bool((w[~new[n]] == 0).all()), f"{what}: pruned weights of {n} are not 0 in the model",
               "multiply the model's weights by the new masks in place after every call, also when nothing new is "
               "pruned (the optimizer step moved the pruned weights)")
        expect(torch.equal(w[new[n]], weights_before[n][new[n]]), f"{what}: kept weights of {n} changed",
               "only zero the pruned entries; leave the kept weights as they are")
    return new


def _agp_call_case(label: str, step: int, sched: tuple, old_sparsity: float = 0.0, revived: bool = False,
                   seed: int = 0, float_masks: bool = False) -> Case:
    def run(fn):
        model = _agp_model(seed)
        g = _gen(seed + 300)
        params = dict(model.named_parameters())
        names = ["fc1.weight", "fc2.weight", "fc3.weight"]
        with torch.no_grad():   # layers on different scales: a global ranking then prunes them unevenly
            for scale, n in zip((0.3, 1.0, 3.0), names):
                params[n].mul_(scale)
        masks = {n: torch.rand(params[n].shape, generator=g) >= old_sparsity for n in names}
        with torch.no_grad():
            for n in names:
                if revived:   # what an optimizer step does to pruned weights: they are no longer 0, some are large
                    params[n].add_(~masks[n] * torch.randn(params[n].shape, generator=g) * 5)
                else:
                    params[n].mul_(masks[n])
        if float_masks:
            masks = {n: m.float() for n, m in masks.items()}
        before = {n: m.clone() for n, m in masks.items()}
        weights_before = {n: params[n].detach().clone() for n in names}
        objects = dict(params)
        out = fn(model, masks, step, *sched)
        expect(all(torch.equal(masks[n], before[n]) for n in names), "your function changed the masks it was given",
               "build new mask tensors (e.g. .clone() first) and return them")
        _judge_agp_step(out, model, before, weights_before, step, sched, objects, f"step {step}")
    return Case(label, run)


def _agp_training_case(label: str, sched: tuple, steps: int, optimizer: str, seed: int = 0) -> Case:
    def run(fn):
        model = _agp_model(seed)
        data = _imp_data(seed + 5, 64)
        x, y = data.tensors
        params = dict(model.named_parameters())
        names = ["fc1.weight", "fc2.weight", "fc3.weight"]
        masks = {n: torch.ones_like(params[n], dtype=torch.bool) for n in names}
        opt = (torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9) if optimizer == "sgd"
               else torch.optim.Adam(model.parameters(), lr=0.01))
        objects = dict(params)
        for step in range(1, steps + 1):
            idx = torch.arange(16) + 16 * (step % 4)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            weights_before = {n: params[n].detach().clone() for n in names}
            out = fn(model, {n: m.clone() for n, m in masks.items()}, step, *sched)
            masks = _judge_agp_step(out, model, masks, weights_before, step, sched, objects,
                                    f"training step {step} of {steps}")
        total = sum(m.numel() for m in masks.values())
        final = sum(int((~m).sum()) for m in masks.values()) / total
        expect(abs(final - round(sched[1] * total) / total) < 1e-12, f"final sparsity {final:.4f}, expected {sched[1]}")
    return Case(label, run)


def _agp_step_cases() -> list[Case]:
    sched = (0.0, 0.9, 10, 5, 4)   # s_i, s_f, t0, n, Δt: events at 10, 14, ..., 30
    return [
        _agp_call_case("a pruning event (step 14 = t0 + Δt), dense masks", 14, sched),
        _agp_call_case("between events (step 17): the target of step 14", 17, sched, seed=1),
        _agp_call_case("before start_step: nothing to prune, masks unchanged", 3, sched, seed=2),
        _agp_call_case("masks already 50 % pruned, pruned weights revived by the optimizer", 22, sched,
                       old_sparsity=0.5, revived=True, seed=3),
        _agp_call_case("the masks already prune more than the target: nothing revived", 10, sched, old_sparsity=0.3,
                       revived=True, seed=4),
        _agp_call_case("after the ramp: s_f", 100, sched, old_sparsity=0.6, seed=5),
        _agp_call_case("float 0/1 masks, s_i = 0.2 at start_step", 10, (0.2, 0.8, 10, 3, 2), seed=6,
                       float_masks=True),
        _agp_training_case("a whole SGD+momentum run: called after every step, steps 1..36", sched, 36, "sgd", seed=7),
        _agp_training_case("a whole Adam run, Δt = 1", (0.0, 0.75, 2, 8, 1), 14, "adam", seed=8),
    ]


def check_agp_step(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``agp_step(model, masks, step, initial_sparsity, final_sparsity, start_step, n_steps, frequency)``:
    exactly ``round(agp_sparsity(step) * total)`` weights pruned after the call (never fewer than before),
    the newly pruned ones the smallest |w| among the survivors of all tensors together, nothing revived, the
    model's pruned weights zeroed in place at every call, the masks given left untouched; single calls and
    whole SGD/Adam runs."""
    return run_check("agp_step", fn, _agp_step_cases, hint=_AGP_STEP_HINT,
                     passed="exact AGP counts at every step, global ranking of survivors, no revival, zeros kept "
                            "under SGD and Adam", strict=strict)
