"""Checks and reference implementations for Lab 4 (schedules and lottery tickets).

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

Each check prints one line and returns a :class:`~prunekit.checks.core.CheckResult`; the
``reference_*`` functions are what :func:`~prunekit.checks.core.use_or_reference` falls back to.
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

__all__ = [
    "check_agp_sparsity", "check_iterative_targets", "check_prune_remaining_mask", "check_rewind",
    "check_early_stop", "check_should_stop",
    "reference_agp_sparsity", "reference_iterative_targets", "reference_prune_remaining_mask",
    "reference_rewind", "reference_early_stop", "reference_should_stop",
]


# ============================================================================ reference implementations
def reference_agp_sparsity(step: int, initial_sparsity: float, final_sparsity: float, start_step: int,
                           n_steps: int, frequency: int) -> float:
    """Automated gradual pruning (Zhu & Gupta 2017, eq. 1): ``s_t = s_f + (s_i - s_f)(1 - (t - t0)/(nΔt))³``.

    The sparsity changes only at the pruning steps t0, t0 + Δt, ..., t0 + nΔt (``step`` is rounded down
    to the last of them); it is s_i before t0 and s_f from t0 + nΔt on.
    """
    if step < start_step:
        return float(initial_sparsity)
    events = min((step - start_step) // frequency, n_steps)   # pruning events so far
    return float(final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - events / n_steps) ** 3)


def reference_iterative_targets(final_sparsity: float, rounds: int) -> list[float]:
    """Sparsity after each of ``rounds`` rounds that each prune the same fraction p of the remaining weights:
    ``s_k = 1 - (1 - final)^(k / rounds)`` for k = 1..rounds (so ``1 - p = (1 - final)^(1 / rounds)``)."""
    keep = 1.0 - final_sparsity
    targets = [1.0 - keep ** (k / rounds) for k in range(1, rounds + 1)]
    targets[-1] = float(final_sparsity)   # exact, whatever the float error of the power
    return targets


def reference_prune_remaining_mask(weight: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """One IMP step for one tensor: a new bool mask that also prunes ``round(fraction * kept)`` of the weights
    ``mask`` still keeps, those of smallest ``|w|``. Pruned entries stay pruned (their values are ignored)."""
    keep = mask.detach().bool()
    n_prune = round(fraction * int(keep.sum()))
    # pruned entries score +inf so they are never chosen again; a stable sort makes ties deterministic
    scores = torch.where(keep, weight.detach().abs().to(torch.float64), torch.tensor(math.inf, dtype=torch.float64))
    order = torch.sort(scores.flatten(), stable=True).indices
    new = keep.flatten().clone()
    new[order[:n_prune]] = False
    return new.view(keep.shape)


@torch.no_grad()
def reference_rewind(model: nn.Module, init_state: Mapping[str, torch.Tensor],
                     masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Rewinding (Frankle & Carbin 2019): copy every tensor of ``init_state`` (weights, biases, buffers) back
    into ``model`` in place, then zero the pruned weights: surviving weights become ``m ⊙ θ0``."""
    model.load_state_dict(init_state)   # copies values into the existing tensors
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].device, params[name].dtype))
    return model


def reference_early_stop(curve: Sequence[tuple[int, float]]) -> tuple[int, float]:
    """The ``(step, val_acc)`` point of ``curve`` with the highest validation accuracy (the earliest on ties):
    where early stopping would have stopped."""
    best = max(range(len(curve)), key=lambda i: (curve[i][1], -i))
    return curve[best][0], curve[best][1]


def reference_should_stop(history: Sequence[float], tolerance: float) -> bool:
    """True when the latest accuracy ``history[-1]`` is more than ``tolerance`` (a fraction, 0.01 = one point)
    below the dense accuracy ``history[0]``."""
    return bool(history[-1] < history[0] - tolerance)


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
        expect(abs(values[-1] - final) <= 1e-12, f"the last target is {values[-1]!r}, not exactly {final}",
               "set the last target to final_sparsity itself: float powers are off by 1e-16")
    return Case(f"final {final}, {rounds} round(s)", run)


def _iter_cases() -> list[Case]:
    cases = [_iter_case(0.875, 3, [0.5, 0.75, 0.875]), _iter_case(0.96, 2, [0.8, 0.96]), _iter_case(0.9, 1, [0.9]),
             _iter_case(0.0, 3, [0.0, 0.0, 0.0]), _iter_case(0.99, 5), _iter_case(0.5, 4)]
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
        if isinstance(out, torch.Tensor) and out.numel() == 1 and out.dtype == torch.bool:
            out = bool(out)
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
