"""Checks for Lab 1 (weight pruning).

=============================  ==============================================  =============================
exercise                       contract                                        check
=============================  ==============================================  =============================
``magnitude_mask``             ``(weight, sparsity) -> mask``: exactly          :func:`check_magnitude_mask`
                               ``round(s*n)`` zeros at the smallest ``|w|``
``global_magnitude_masks``     ``({name: weight}, sparsity) -> {name: mask}``   :func:`check_global_magnitude_masks`
                               with one ranking across all tensors
``random_mask``                ``(weight, sparsity, seed) -> mask``: exact      :func:`check_random_mask`
                               count, uniform positions, repeatable by seed
``saliency_scores``            ``(weight, grad) -> |w * g|``                   :func:`check_saliency_scores`
``remask_``                    ``(model, {name: mask})``: zero pruned entries   :func:`check_remask_`
                               in place, same Parameter objects
``torch_prune_amount``         ``(current, target) -> amount`` for              :func:`check_torch_prune_amount`
                               ``torch.nn.utils.prune`` (fraction of remaining)
``prune_below``                ``(weight, threshold) -> weight`` with           :func:`check_prune_below`
                               ``|w| < threshold`` set to 0
=============================  ==============================================  =============================

Each check prints one line and returns a :class:`~prunekit.checks.core.CheckResult`. The answers it
compares with, the ``reference_*`` functions, live in :mod:`prunekit.checks.references.lab1` (re-exported
here); :func:`~prunekit.checks.core.use_or_reference` falls back to them.
"""
from __future__ import annotations

import copy
import math
from collections import OrderedDict
from typing import Callable, Mapping

import torch
from torch import nn

from ..masks import num_to_prune
from .core import Case, CheckFailed, CheckResult, as_mask, call, describe_tensor, expect, run_check
from .references.lab1 import (reference_global_magnitude_masks, reference_iterative_prune, reference_magnitude_mask,
                              reference_prune_below, reference_random_mask, reference_remask_,
                              reference_saliency_scores, reference_torch_prune_amount, reference_train_masked,
                              _accuracy, _prunable)

__all__ = [
    "check_magnitude_mask", "check_global_magnitude_masks", "check_random_mask", "check_saliency_scores",
    "check_remask_", "check_torch_prune_amount", "check_prune_below", "check_train_masked", "check_iterative_prune",
    "reference_magnitude_mask", "reference_global_magnitude_masks", "reference_random_mask",
    "reference_saliency_scores", "reference_remask_", "reference_torch_prune_amount", "reference_prune_below",
    "reference_train_masked", "reference_iterative_prune",
]


# Library functions an exercise must not call (it asks the learner to write them); read by
# prunekit.checks.provenance without importing this module.
MUST_NOT_CALL = {
    "train_masked": ["prunekit.train.train", "prunekit.train.fine_tune"],
    "iterative_prune": ["prunekit.schedules.prune_iteratively"],
}


# Every statement of each exercise's contract (as the notebook states it) and the cases that test it
# (a case counts when its label contains the text); tests/test_checks_contract.py runs the checks and
# fails for a statement without a case (issue 18, point 7).
CONTRACT = {
    "magnitude_mask": {
        "exactly k = round(sparsity * numel) zeros": ["round(3.7) = 4 pruned", "random (100,)"],
        "the zeros at the smallest |w| (magnitude, not signed value)": ["large negative weights"],
        "over the whole tensor, not row by row": ["whole tensor, not per row"],
        "ties at the boundary: still exactly k": ["ties: [0.1]*4", "all weights equal"],
        "sparsity 0 and 1": ["sparsity 0 keeps everything", "sparsity 1 prunes everything"],
        "any shape and float dtype, Parameters too; weight not modified": ["random tied (6, 2, 3, 3)", "float64",
                                                                            "an nn.Parameter"],
    },
    "global_magnitude_masks": {
        "a mask for every name": ["the small tensor last in the dict", "three tensors"],
        "exactly round(sparsity * total) pruned over all tensors": ["random, 4 tensors"],
        "every pruned |w| <= every kept |w| across tensors (one ranking)": ["all of 'a' goes", "ties across tensors"],
        "one tensor is plain magnitude pruning": ["one tensor only"],
        "sparsity 0 and 1": ["sparsity 0", "sparsity 1"],
    },
    "random_mask": {
        "exactly round(sparsity * numel) zeros": ["100 weights, sparsity 0.3", "(300, 784)"],
        "uniformly random positions": ["every position equally likely"],
        "depends only on shape, sparsity and seed; same seed same mask": ["same seed -> same mask"],
        "torch's global random state untouched": ["global random state alone"],
        "sparsity 0 and 1": ["sparsity 0", "sparsity 1"],
    },
    "saliency_scores": {
        "|weight * grad| element by element": ["w = [0.5, -2, 0.1, 3]"],
        "large gradient on a small weight can beat a large weight": ["a small weight with a large gradient"],
        "shape of weight, floating point, any dtype": ["random (4, 3, 3, 3) torch.float64"],
        "inputs unchanged, Parameters accepted": ["an nn.Parameter weight"],
        "zero gradient gives zero": ["zero gradient"],
    },
    "remask_": {
        "multiply each named parameter by its mask, by name": ["masks for 3 weights, dict order"],
        "nested module names": ["nested layer"],
        "bool or float 0/1 masks": ["float 0/1 masks"],
        "parameters without a mask untouched": ["masks for fc1.weight", "empty dict"],
        "in place (same Parameter objects), repeatable": ["called twice"],
    },
    "train_masked": {
        "optimizer 'sgd' = SGD with momentum 0.9, step by step": ["step by step as torch.optim.SGD"],
        "optimizer 'adam' = torch.optim.Adam": ["step by step as torch.optim.Adam", "Adam, mini-batches"],
        "weight_decay passed to the optimizer": ["weight decay 5e-4"],
        "masks applied before the first step and after every step: pruned weights exactly 0":
            ["full batch, 15 steps", "mini-batches of 8"],
        "exactly `steps` steps, cycling through epochs, last batch smaller": ["several epochs",
                                                                              "a smaller last batch"],
        "one float loss per step, the loss decreases": ["mini-batches of 8", "no masks: plain training"],
        "bool or 0/1 masks, only the named parameters": ["a mask for fc2.weight only, float 0/1"],
        "private generator from seed: repeatable, seed-dependent, global state untouched":
            ["the same seed gives the same run"],
    },
    "iterative_prune": {
        "rounds in schedule order, one (target, val_acc) per round run": ["schedule 0.5 -> 0.99"],
        "stop right after the first round more than `tolerance` below DENSE validation accuracy":
            ["stops when the accuracy drops", "a gradual decline (each round close to the previous one)"],
        "the last accepted round is returned, as a copy with its val_acc": ["schedule 0.5 -> 0.99",
                                                                             "tolerance 0.03"],
        "every round accepted: the last one is returned": ["every round accepted"],
        "first round fails: the dense copy, sparsity 0.0": ["the first round already fails"],
        "masks from the current, fine-tuned weights (iterative); the input model untouched":
            ["gradual decline", "every round accepted"],
    },
    "torch_prune_amount": {
        "(target - current) / (1 - current)": ["current 0.5, target 0.75", "current 0.3, target 0.65"],
        "0 when nothing is left (current == 1)": ["current 1.0, target 1.0"],
        "edge cases target == current and target 1": ["current 0.8, target 0.8", "current 0.2, target 1.0"],
        "the amounts reproduce a schedule with torch.nn.utils.prune": ["schedule 0.5 -> 0.99 hits every target"],
    },
    "prune_below": {
        "|w| strictly below threshold becomes 0, |w| == threshold kept": ["threshold 0.25"],
        "element-wise (some but not all below)": ["a mixed tensor"],
        "threshold 0 and above every |w|": ["threshold 0 keeps everything", "threshold above every |w|"],
        "a new tensor of the same shape and dtype; weight unchanged": ["random (4, 2, 3, 3) torch.float64",
                                                                       "an nn.Parameter"],
    },
}


# ============================================================================ shared helpers
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _safe_sparsity(n: int, g: torch.Generator) -> float:
    """A random sparsity in (0, 1) whose s*n is not within 0.02 of a .5 (round-half conventions differ)."""
    while True:
        s = round(torch.rand((), generator=g).item(), 3)
        if abs((s * n) % 1 - 0.5) > 0.02:
            return s


def _random_weight(shape, g: torch.Generator, ties: bool = False, dtype=torch.float32) -> torch.Tensor:
    w = torch.randn(shape, generator=g, dtype=torch.float64)
    if ties:  # few distinct magnitudes -> many ties at any threshold
        w = torch.round(w * 2) / 2
    return w.to(dtype)


def _count_hint(pruned: int, k: int, n: int, s: float, tied: bool) -> str:
    if pruned == n - k and k != n - k:
        return "you pruned the complement: a mask is 1 (True) where the weight is KEPT, 0 where it is pruned"
    if pruned == int(s * n) and pruned != k:
        return f"the number to prune is round(s * n) = {k}, not int(s * n) = {int(s * n)} (int truncates)"
    if tied:
        return ("these weights contain ties: a threshold test like `|w| <= kth` or `|w| < kth` prunes all "
                "or none of the tied weights; pick exactly k indices (torch.topk or torch.sort) instead")
    return "prune exactly k = round(sparsity * weight.numel()) entries"


def _check_exact_prune(keep: torch.Tensor, scores: torch.Tensor, sparsity: float, what: str,
                       rank_hint: str) -> None:
    """``keep`` prunes exactly round(s*n) entries, all scoring <= every kept entry."""
    n = scores.numel()
    k = num_to_prune(n, sparsity)
    pruned = int((~keep).sum())
    tied = scores.flatten().unique().numel() < n
    expect(pruned == k, f"{what} pruned {pruned} of {n} entries, expected round({sparsity}·{n}) = {k}",
           _count_hint(pruned, k, n, sparsity, tied))
    if 0 < k < n:
        worst_pruned = scores[~keep].max().item()
        best_kept = scores[keep].min().item()
        if scores[~keep].min().item() >= scores[keep].max().item():  # exactly upside down
            rank_hint = ("you pruned the LARGEST entries: keep the high scores, prune the low ones "
                         "(a mask is True/1 where the weight is kept)")
        expect(worst_pruned <= best_kept,
               f"{what} pruned an entry with score {worst_pruned:.4g} but kept one with {best_kept:.4g}",
               rank_hint)


# ============================================================================ magnitude_mask
_MAGNITUDE_RANK_HINT = ("prune the entries with the smallest |w| (use weight.abs(): a large negative weight is "
                        "important), over the whole tensor (flatten it, do not rank row by row)")


def _magnitude_case(label: str, weight: torch.Tensor, sparsity: float, expected=None) -> Case:
    def run(fn):
        keep = as_mask(call(fn, weight, sparsity), weight.shape)
        _check_exact_prune(keep, weight.detach().abs(), sparsity, "your mask", _MAGNITUDE_RANK_HINT)
        if expected is not None:
            expect(torch.equal(keep, torch.as_tensor(expected, dtype=torch.bool)),
                   f"mask {describe_tensor(keep.int())}, expected {describe_tensor(torch.as_tensor(expected).int())}",
                   _MAGNITUDE_RANK_HINT)
    return Case(label, run)


def _magnitude_cases() -> list[Case]:
    w1 = torch.tensor([0.5, -0.1, 0.3, -0.9, 0.05, 0.2])
    cases = [
        _magnitude_case("6 weights, sparsity 0.5", w1, 0.5, [1, 0, 1, 1, 0, 0]),
        _magnitude_case("large negative weights, sparsity 0.25", torch.tensor([-3.0, 1.0, -0.5, 2.0]), 0.25,
                        [1, 1, 0, 1]),
        _magnitude_case("3x4 matrix, sparsity 0.5 (whole tensor, not per row)",
                        torch.tensor([[9.0, 8.0, 7.0, 6.0], [0.5, -5.0, 4.0, 0.4], [0.1, 0.2, -0.3, 0.01]]), 0.5,
                        [[1, 1, 1, 1], [0, 1, 1, 0], [0, 0, 0, 0]]),
        _magnitude_case("sparsity 0 keeps everything", w1, 0.0, [1] * 6),
        _magnitude_case("sparsity 1 prunes everything", w1, 1.0, [0] * 6),
        _magnitude_case("10 weights, sparsity 0.37 -> round(3.7) = 4 pruned", torch.arange(1.0, 11.0), 0.37,
                        [0, 0, 0, 0, 1, 1, 1, 1, 1, 1]),
        _magnitude_case("ties: [0.1]*4 + [0.5]*2, sparsity 0.5",
                        torch.tensor([0.1, 0.1, 0.1, 0.1, 0.5, 0.5]), 0.5),
        _magnitude_case("all weights equal (4x5), sparsity 0.4", torch.ones(4, 5), 0.4),
        _magnitude_case("float64 weights with zeros", torch.tensor([0.0, 2.0, 0.0, -1.0, 3.0], dtype=torch.float64),
                        0.6, [0, 1, 0, 0, 1]),
        _magnitude_case("an nn.Parameter (requires grad), sparsity 0.5",
                        nn.Parameter(torch.tensor([[1.0, -2.0], [0.5, 4.0]])), 0.5, [[0, 1], [0, 1]]),
    ]
    g = _gen(1)
    shapes = [(7,), (12, 5), (3, 4, 5), (6, 2, 3, 3), (100,), (50, 30)]
    for i in range(12):
        shape = shapes[i % len(shapes)]
        ties = i % 2 == 1
        w = _random_weight(shape, g, ties=ties, dtype=torch.float64 if i % 3 == 2 else torch.float32)
        n = w.numel()
        s = _safe_sparsity(n, g)
        cases.append(_magnitude_case(f"random {'tied ' if ties else ''}{tuple(shape)} {w.dtype}, sparsity {s}",
                                     w, s))
    return cases


def check_magnitude_mask(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``magnitude_mask(weight, sparsity)``: a 0/1 mask of ``weight.shape`` (bool or float) with exactly
    ``round(sparsity * numel)`` zeros, all at entries whose ``|w|`` is no larger than any kept one."""
    return run_check("magnitude_mask", fn, _magnitude_cases,
                     hint="k = round(sparsity * weight.numel()); prune the k entries with the smallest |w| "
                          "(torch.topk(..., largest=False) on weight.abs().flatten() gives their indices)",
                     passed="exact counts, ties, |w| not w, whole tensor, s = 0 and 1", strict=strict)


# ============================================================================ global_magnitude_masks
_GLOBAL_RANK_HINT = ("rank all weights of all tensors together by |w| (concatenate the flattened tensors), "
                     "prune the k smallest, then split the flat mask back into each tensor's shape")


def _global_case(label: str, weights: dict, sparsity: float, expected: dict | None = None) -> Case:
    def run(fn):
        out = call(fn, weights, sparsity)
        expect(isinstance(out, Mapping), f"returned {type(out).__name__}, expected a dict name -> mask",
               "return {name: mask for each name in weights}")
        expect(set(out) == set(weights),
               f"returned masks for {sorted(out)}, expected one for each of {sorted(weights)}",
               "return a mask for every tensor you were given, under the same name")
        keeps = {n: as_mask(out[n], weights[n].shape, f"the mask for {n!r}") for n in weights}
        flat_keep = torch.cat([keeps[n].flatten() for n in weights])
        flat_scores = torch.cat([weights[n].detach().abs().flatten().double() for n in weights])
        per_layer = {n: int((~keeps[n]).sum()) for n in weights}
        layerwise = all(torch.equal(keeps[n], reference_magnitude_mask(weights[n], sparsity)) for n in weights)
        hint = _GLOBAL_RANK_HINT
        if layerwise and len(weights) > 1:
            hint = "you pruned each tensor separately (layer-wise); " + _GLOBAL_RANK_HINT
        untouched = [n for n in weights if per_layer[n] == 0 and weights[n].abs().min() < flat_scores.max()]
        if untouched and sparsity > 0:
            hint = f"nothing was pruned in {untouched}: did you leave a tensor out of the ranking? " + _GLOBAL_RANK_HINT
        _check_exact_prune(flat_keep, flat_scores, sparsity, "your masks together", hint)
        if expected is not None:
            for n, e in expected.items():
                expect(torch.equal(keeps[n], torch.as_tensor(e, dtype=torch.bool)),
                       f"mask for {n!r} is {describe_tensor(keeps[n].int())}, expected "
                       f"{describe_tensor(torch.as_tensor(e).int())}", hint)
    return Case(label, run)


def _global_cases() -> list[Case]:
    a, b = torch.tensor([0.1, -0.2, 0.3, 0.4]), torch.tensor([[1.0, -2.0, 3.0], [4.0, 5.0, -6.0]])
    cases = [
        _global_case("{'a': 4 small, 'b': 6 large}, sparsity 0.4 (all of 'a' goes)", {"a": a, "b": b}, 0.4,
                     {"a": [0, 0, 0, 0], "b": [[1, 1, 1], [1, 1, 1]]}),
        _global_case("same, sparsity 0.5", {"a": a, "b": b}, 0.5, {"a": [0, 0, 0, 0], "b": [[0, 1, 1], [1, 1, 1]]}),
        _global_case("the small tensor last in the dict", {"b": b, "a": a}, 0.4,
                     {"a": [0, 0, 0, 0], "b": [[1, 1, 1], [1, 1, 1]]}),
        _global_case("one tensor only = magnitude_mask", {"w": torch.tensor([0.3, -0.1, 0.2, 0.4])}, 0.5,
                     {"w": [1, 0, 0, 1]}),
        _global_case("sparsity 0", {"a": a, "b": b}, 0.0, {"a": [1] * 4, "b": [[1] * 3] * 2}),
        _global_case("sparsity 1", {"a": a, "b": b}, 1.0, {"a": [0] * 4, "b": [[0] * 3] * 2}),
        _global_case("three tensors (conv 4-D, linear, bias-like), ties across tensors",
                     {"conv.weight": torch.full((2, 1, 2, 2), 0.5), "fc.weight": torch.tensor([[0.5, 2.0], [0.1, 3.0]]),
                      "fc2.weight": torch.tensor([0.5, 0.5, 0.05])}, 0.6),
        _global_case("all weights equal across 2 tensors", {"x": torch.ones(3, 3), "y": torch.ones(7)}, 0.5),
    ]
    g = _gen(2)
    for i in range(10):
        count = 2 + i % 3
        weights = {}
        for j in range(count):
            shape = [(20, 10), (5, 3, 3, 3), (40,), (8, 16)][(i + j) % 4]
            scale = 0.1 * (j + 1) ** 2  # layers on different scales: a global ranking prunes them unevenly
            weights[f"layer{j}.weight"] = _random_weight(shape, g, ties=i % 2 == 1) * scale
        n = sum(w.numel() for w in weights.values())
        s = _safe_sparsity(n, g)
        cases.append(_global_case(f"random, {count} tensors{' with ties' if i % 2 else ''}, sparsity {s}",
                                  weights, s))
    return cases


def check_global_magnitude_masks(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``global_magnitude_masks(weights, sparsity)``: ``{name: mask}`` for every input tensor, exactly
    ``round(sparsity * total)`` zeros over all of them, every pruned ``|w|`` <= every kept ``|w|`` (any tensor)."""
    return run_check("global_magnitude_masks", fn, _global_cases, hint=_GLOBAL_RANK_HINT,
                     passed="one ranking across tensors, exact total count, ties, s = 0 and 1", strict=strict)


# ============================================================================ random_mask
_RANDOM_HINT = ("draw a random permutation of the n positions with a private generator "
                "(g = torch.Generator().manual_seed(seed); torch.randperm(n, generator=g)) and prune the first "
                "k = round(sparsity * n) of them")


def _random_count_case(label: str, weight: torch.Tensor, sparsity: float, seed: int) -> Case:
    def run(fn):
        keep = as_mask(call(fn, weight, sparsity, seed), weight.shape)
        n, k = weight.numel(), num_to_prune(weight.numel(), sparsity)
        pruned = int((~keep).sum())
        hint = _RANDOM_HINT
        if pruned == n - k and k != n - k:
            hint = ("you kept the entries you meant to prune: `torch.rand(...) < s` is True on about a fraction s, "
                    "and a mask is True where the weight is KEPT")
        elif pruned != k:
            hint = ("`torch.rand(...) < sparsity` prunes only *about* that fraction; the count must be exact. "
                    + _RANDOM_HINT)
        expect(pruned == k, f"pruned {pruned} of {n}, expected exactly round({sparsity}·{n}) = {k}", hint)
    return Case(label, run)


def _random_seed_case() -> Case:
    def run(fn):
        w = torch.randn(30, 20, generator=_gen(3))
        first, again = as_mask(call(fn, w, 0.5, 7), w.shape), as_mask(call(fn, w, 0.5, 7), w.shape)
        expect(torch.equal(first, again), "two calls with the same seed gave different masks",
               "seed a private generator inside the function: torch.Generator().manual_seed(seed)")
        other = as_mask(call(fn, w, 0.5, 8), w.shape)
        expect(not torch.equal(first, other), "seeds 7 and 8 gave the same mask", "use the seed argument")
        shuffled = torch.randn(30, 20, generator=_gen(4)) * 100
        expect(torch.equal(first, as_mask(call(fn, shuffled, 0.5, 7), w.shape)),
               "the mask depends on the weight values (same shape and seed, different values gave another mask)",
               "a random baseline must ignore the weights: only their shape, the sparsity and the seed matter")
    return Case("same seed -> same mask, new seed -> new mask, values ignored", run)


def _random_global_rng_case() -> Case:
    def run(fn):
        state = torch.get_rng_state()
        call(fn, torch.zeros(10, 10), 0.5, 0)
        changed = not torch.equal(state, torch.get_rng_state())
        torch.set_rng_state(state)
        expect(not changed, "your function changed torch's global random state",
               "torch.manual_seed(seed) inside a function silently re-seeds everything else (data shuffling, "
               "dropout...); use a private torch.Generator().manual_seed(seed) and pass generator=...")
    return Case("leaves torch's global random state alone", run)


def _random_uniform_case() -> Case:
    def run(fn):
        n, s, seeds = 10, 0.3, 300
        w = torch.arange(1.0, n + 1)  # sorted magnitudes: a magnitude or "first k" rule shows up at once
        counts = torch.zeros(n)
        for seed in range(seeds):
            counts += (~as_mask(call(fn, w, s, seed), w.shape)).float()
        freq = counts / seeds
        worst = int((freq - s).abs().argmax())
        expect(bool(((freq - s).abs() < 0.12).all()),
               f"over {seeds} seeds, position {worst} was pruned {freq[worst]:.0%} of the time, expected about {s:.0%}",
               "every position must be equally likely to be pruned: " + _RANDOM_HINT)
    return Case("every position equally likely over 300 seeds", run)


def _random_cases() -> list[Case]:
    cases = [_random_count_case("100 weights, sparsity 0.3", torch.randn(100, generator=_gen(5)), 0.3, 0),
             _random_count_case("sparsity 0", torch.randn(4, 5, generator=_gen(6)), 0.0, 1),
             _random_count_case("sparsity 1", torch.randn(4, 5, generator=_gen(6)), 1.0, 2)]
    g = _gen(7)
    for i, shape in enumerate([(300, 784), (50, 20), (6, 1, 5, 5), (1000,), (64, 3, 3, 3)]):
        n = math.prod(shape)
        s = _safe_sparsity(n, g)
        cases.append(_random_count_case(f"{shape}, sparsity {s}, seed {i}", torch.randn(shape, generator=g), s, i))
    return cases + [_random_seed_case(), _random_global_rng_case(), _random_uniform_case()]


def check_random_mask(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``random_mask(weight, sparsity, seed)``: exactly ``round(sparsity * numel)`` zeros at uniformly random
    positions that depend only on the shape, the sparsity and the seed (repeatable, global RNG untouched)."""
    return run_check("random_mask", fn, _random_cases, hint=_RANDOM_HINT,
                     passed="exact counts, repeatable by seed, uniform, ignores values", strict=strict)


# ============================================================================ saliency_scores
_SALIENCY_HINT = ("the first-order Taylor estimate of the loss change when w is set to 0 is -g*w; its size "
                  "is |w * g|, element by element, same shape as the weight")


def _saliency_case(label: str, weight: torch.Tensor, grad: torch.Tensor) -> Case:
    def run(fn):
        out = call(fn, weight, grad)
        expect(isinstance(out, torch.Tensor), f"returned {type(out).__name__}, expected a tensor", _SALIENCY_HINT)
        expect(tuple(out.shape) == tuple(weight.shape),
               f"scores have shape {tuple(out.shape)}, expected the weight's {tuple(weight.shape)}",
               "score every weight: no sum or mean over a dimension")
        expect(out.is_floating_point(), f"scores have dtype {out.dtype}, expected a floating-point tensor")
        expected = (weight.detach().double() * grad.detach().double()).abs()
        got = out.detach().double()
        hint = _SALIENCY_HINT
        if torch.allclose(got, (weight.double() * grad.double()).detach(), rtol=1e-5, atol=1e-7):
            hint = "scores must not be negative: take the absolute value of w * g"
        elif torch.allclose(got, expected ** 2, rtol=1e-5, atol=1e-7):
            hint = "(w*g)**2 ranks the same way but is not |w*g|; return the absolute value"
        expect(torch.allclose(got, expected, rtol=1e-5, atol=1e-7),
               f"got {describe_tensor(out)}, expected {describe_tensor(expected.to(weight.dtype))}", hint)
    return Case(label, run)


def _saliency_cases() -> list[Case]:
    w, g = torch.tensor([0.5, -2.0, 0.1, 3.0]), torch.tensor([-4.0, 0.5, 10.0, 0.0])
    cases = [
        _saliency_case("w = [0.5, -2, 0.1, 3], g = [-4, 0.5, 10, 0]", w, g),
        _saliency_case("a small weight with a large gradient beats a large weight with none",
                       torch.tensor([[0.01, 5.0], [-0.2, 0.3]]), torch.tensor([[100.0, 0.0], [0.5, -0.5]])),
        _saliency_case("zero gradient -> zero scores", torch.randn(3, 4, generator=_gen(8)), torch.zeros(3, 4)),
        _saliency_case("an nn.Parameter weight (requires grad)", nn.Parameter(torch.tensor([1.0, -2.0, 3.0])),
                       torch.tensor([0.5, 0.5, -0.5])),
    ]
    gen = _gen(9)
    for i, shape in enumerate([(10, 5), (4, 3, 3, 3), (25,), (3, 7)]):
        dtype = torch.float64 if i % 2 else torch.float32
        cases.append(_saliency_case(f"random {shape} {dtype}", torch.randn(shape, generator=gen, dtype=dtype),
                                    torch.randn(shape, generator=gen, dtype=dtype) * 0.01))
    return cases


def check_saliency_scores(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``saliency_scores(weight, grad)``: ``|weight * grad|`` element-wise (shape and dtype of the weight)."""
    return run_check("saliency_scores", fn, _saliency_cases, hint=_SALIENCY_HINT,
                     passed="values, signs, shapes, float64, Parameters", strict=strict)


# ============================================================================ remask_
_REMASK_HINT = ("for each name, mask in masks: look the parameter up in dict(model.named_parameters()) and "
                "multiply it in place under torch.no_grad(): `param.mul_(mask)`")


def _tiny_model(seed: int) -> nn.Module:
    torch.manual_seed(seed)  # only used inside checks; the caller's RNG state is restored around it
    return nn.Sequential(OrderedDict([
        ("fc1", nn.Linear(6, 5)), ("relu", nn.ReLU()),
        ("block", nn.Sequential(OrderedDict([("fc2", nn.Linear(5, 4)), ("fc3", nn.Linear(4, 3))]))),
    ]))


def _remask_case(label: str, mask_names: tuple[str, ...], float_masks: bool = False, twice: bool = False) -> Case:
    def run(fn):
        state = torch.get_rng_state()
        model = _tiny_model(11)
        g = _gen(12)
        params = dict(model.named_parameters())
        masks = {n: torch.rand(params[n].shape, generator=g) > 0.5 for n in mask_names}
        if float_masks:
            masks = {n: m.float() for n, m in masks.items()}
        torch.set_rng_state(state)
        before = {n: p.detach().clone() for n, p in params.items()}
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        masks_before = {n: m.clone() for n, m in masks.items()}
        try:
            fn(model, masks)
            if twice:
                fn(model, masks)
        except RuntimeError as exc:
            if "leaf Variable" in str(exc) or "requires grad" in str(exc):
                raise CheckFailed("in-place multiplication of a parameter that requires grad raised "
                                  "RuntimeError", "wrap the update in `with torch.no_grad():`") from None
            raise
        expect(all(torch.equal(masks[n], masks_before[n]) for n in masks), "your function changed the masks",
               "read the masks, do not modify them")
        after = dict(model.named_parameters())
        expect(set(after) == set(params), f"the model's parameters changed names: {sorted(after)}")
        for n, p in params.items():
            expect(after[n] is p, f"{n} is a new object after remask_: the optimizer still updates the old one",
                   "modify the existing parameter in place (`param.mul_(mask)` under torch.no_grad()); "
                   "do not assign a new nn.Parameter")
            expect(p.requires_grad, f"{n} no longer requires grad")
        optimizer_params = {id(q) for group in optimizer.param_groups for q in group["params"]}
        expect(all(id(p) in optimizer_params for p in after.values()), "the optimizer lost track of a parameter")
        for n, p in params.items():
            if n in masks:
                keep = masks[n].bool()
                expect(bool((p.detach()[~keep] == 0).all()),
                       f"{n}: {int((p.detach()[~keep] != 0).sum())} pruned entries are not zero",
                       "a mask is True/1 where the weight is kept: multiply the weight by it" if
                       bool((p.detach()[keep] == 0).all()) else _REMASK_HINT)
                expect(torch.equal(p.detach()[keep], before[n][keep]),
                       f"{n}: kept entries changed value", "multiply by the mask; do not rescale or re-initialise")
            else:
                expect(torch.equal(p.detach(), before[n]), f"{n} has no mask but was changed",
                       "touch only the parameters named in `masks` (match them by name, not by position)")
    return Case(label, run)


def _remask_cases() -> list[Case]:
    return [
        _remask_case("masks for fc1.weight", ("fc1.weight",)),
        _remask_case("masks for a nested layer only (block.fc3.weight)", ("block.fc3.weight",)),
        _remask_case("masks for 3 weights, dict order unlike the model's",
                     ("block.fc3.weight", "fc1.weight", "block.fc2.weight")),
        _remask_case("float 0/1 masks", ("fc1.weight", "block.fc2.weight"), float_masks=True),
        _remask_case("called twice (idempotent)", ("block.fc2.weight", "fc1.weight"), twice=True),
        _remask_case("a bias mask too", ("fc1.bias", "fc1.weight")),
        _remask_case("empty dict changes nothing", ()),
    ]


def check_remask_(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``remask_(model, masks)``: multiplies each named parameter by its mask in place (same Parameter
    objects, so an optimizer keeps working), leaves everything else bit-identical."""
    return run_check("remask_", fn, _remask_cases, hint=_REMASK_HINT,
                     passed="in place, by name, nested layers, float/bool masks, others untouched", strict=strict)


# ============================================================================ torch_prune_amount
_AMOUNT_HINT = ("torch.nn.utils.prune's amount is a fraction of the weights still UNPRUNED: with a fraction c "
                "already pruned, reaching t means pruning (t - c) of the whole = (t - c) / (1 - c) of the rest")


def _amount_case(current: float, target: float, expected: float) -> Case:
    def run(fn):
        out = fn(current, target)
        expect(isinstance(out, (int, float)) or (isinstance(out, torch.Tensor) and out.numel() == 1),
               f"returned {type(out).__name__}, expected a number", "return a Python float")
        value = float(out)
        hint = _AMOUNT_HINT
        if abs(value - target) < 1e-9 and abs(expected - target) > 1e-9:
            hint = "returning the target counts the whole tensor; " + _AMOUNT_HINT
        elif abs(value - (target - current)) < 1e-9 and abs(expected - (target - current)) > 1e-9:
            hint = "target - current is a fraction of the whole tensor; " + _AMOUNT_HINT
        expect(abs(value - expected) < 1e-9,
               f"torch_prune_amount({current}, {target}) returned {value:.6g}, expected {expected:.6g}", hint)
    label = f"current {current}, target {target}"
    return Case(label, run)


def _amount_with_torch_case() -> Case:
    def run(fn):
        from torch.nn.utils import prune

        state = torch.get_rng_state()
        torch.manual_seed(13)
        layer = nn.Linear(40, 50)  # 2,000 weights: every target below is a whole number of weights
        torch.set_rng_state(state)
        current = 0.0
        for target in (0.5, 0.8, 0.9, 0.95, 0.99):
            amount = float(fn(current, target))
            expect(0.0 <= amount <= 1.0, f"amount {amount:.4g} for {current} -> {target} is outside [0, 1]",
                   _AMOUNT_HINT)
            prune.l1_unstructured(layer, "weight", amount=amount)
            zeros = int((layer.weight == 0).sum())
            expect(zeros == round(target * 2000),
                   f"after prune.l1_unstructured with your amounts the layer has {zeros} zeros of 2000, "
                   f"expected {round(target * 2000)} (schedule 0.5, 0.8, 0.9, 0.95, 0.99)", _AMOUNT_HINT)
            current = target
    return Case("torch.nn.utils.prune schedule 0.5 -> 0.99 hits every target", run)


def _amount_cases() -> list[Case]:
    fixed = [(0.0, 0.5, 0.5), (0.5, 0.75, 0.5), (0.9, 0.99, 0.9), (0.5, 0.9, 0.8), (0.8, 0.8, 0.0),
             (0.2, 1.0, 1.0), (0.0, 0.0, 0.0), (0.3, 0.65, 0.5), (1.0, 1.0, 0.0)]
    cases = [_amount_case(c, t, e) for c, t, e in fixed]
    g = _gen(14)
    for _ in range(6):
        c, t = sorted(torch.rand(2, generator=g).tolist())
        c, t = round(c, 3), round(t, 3)
        cases.append(_amount_case(c, t, reference_torch_prune_amount(c, t)))
    return cases + [_amount_with_torch_case()]


def check_torch_prune_amount(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``torch_prune_amount(current_sparsity, target_sparsity)`` = ``(target - current) / (1 - current)``
    (0 when ``current == 1``), and that the amounts reproduce a schedule with ``torch.nn.utils.prune``."""
    return run_check("torch_prune_amount", fn, _amount_cases, hint=_AMOUNT_HINT,
                     passed="formula, edge cases, verified with torch.nn.utils.prune", strict=strict)


# ============================================================================ prune_below
_BELOW_HINT = ("return a NEW tensor: weight where |weight| >= threshold, 0 where |weight| < threshold "
               "(e.g. `weight * (weight.abs() >= threshold)` or torch.where)")


def _below_case(label: str, weight: torch.Tensor, threshold: float, expected=None) -> Case:
    def run(fn):
        out = call(fn, weight, threshold)
        expect(isinstance(out, torch.Tensor), f"returned {type(out).__name__}, expected a tensor", _BELOW_HINT)
        expect(tuple(out.shape) == tuple(weight.shape),
               f"returned shape {tuple(out.shape)}, expected {tuple(weight.shape)}", _BELOW_HINT)
        expect(out.dtype == weight.dtype, f"returned dtype {out.dtype}, expected the weight's {weight.dtype}",
               "return the pruned weights, not a mask")
        want = reference_prune_below(weight.detach(), threshold) if expected is None else \
            torch.as_tensor(expected, dtype=weight.dtype)
        got = out.detach()
        hint = _BELOW_HINT
        if bool((got.abs() == threshold).all()) and threshold > 0:
            hint = "threshold * sign(W) sets every weight to ±threshold and zeroes nothing; " + _BELOW_HINT
        elif torch.equal(got, weight.detach()) and not torch.equal(want, weight.detach()):
            hint = ("nothing was pruned: `if (W.abs() < t).all()` asks one question about the whole tensor; "
                    "the test must be element-wise. " + _BELOW_HINT)
        elif bool((got[(weight < 0) & (weight.abs() > threshold)] == 0).any()):
            hint = "compare |w| with the threshold: a large negative weight is not small. " + _BELOW_HINT
        elif bool((got[(weight.abs() == threshold) & (weight != 0)] == 0).any()):
            hint = "|w| == threshold is kept: prune strictly below (<), not <=. " + _BELOW_HINT
        expect(torch.equal(got, want), f"got {describe_tensor(got)}, expected {describe_tensor(want)}", hint)
    return Case(label, run)


def _below_cases() -> list[Case]:
    w = torch.tensor([0.5, -0.125, 0.0625, -0.75, 0.25, -0.25])
    cases = [
        _below_case("[0.5, -0.125, 0.0625, -0.75, 0.25, -0.25], threshold 0.25", w, 0.25,
                    [0.5, 0.0, 0.0, -0.75, 0.25, -0.25]),
        _below_case("threshold 0 keeps everything", w, 0.0, w.tolist()),
        _below_case("threshold above every |w| prunes everything", w, 10.0, [0.0] * 6),
        _below_case("2-D weight, threshold 0.3", torch.tensor([[0.1, -0.4], [0.35, -0.05]]), 0.3,
                    [[0.0, -0.4], [0.35, 0.0]]),
        _below_case("a mixed tensor (some but not all below)", torch.tensor([0.01, 2.0, -0.01, -3.0]), 0.5,
                    [0.0, 2.0, 0.0, -3.0]),
        _below_case("an nn.Parameter", nn.Parameter(torch.tensor([1.0, -0.1, 0.2])), 0.15, [1.0, 0.0, 0.2]),
    ]
    g = _gen(15)
    for shape, dtype in [((30, 20), torch.float32), ((4, 2, 3, 3), torch.float64), ((200,), torch.float32)]:
        weight = torch.randn(shape, generator=g, dtype=dtype) * 0.1
        cases.append(_below_case(f"random {shape} {dtype}, threshold 0.05", weight, 0.05))
    return cases


def check_prune_below(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``prune_below(weight, threshold)``: a new tensor, ``0`` where ``|w| < threshold``, ``w`` elsewhere."""
    return run_check("prune_below", fn, _below_cases, hint=_BELOW_HINT,
                     passed="element-wise, |w| not w, strict <, new tensor, same dtype", strict=strict)


# ============================================================================ train_masked (capstone)


def _blobs(n: int, dim: int, classes: int, seed: int, spread: float = 1.0) -> torch.utils.data.TensorDataset:
    """A small classification problem: Gaussian blobs around random class centres."""
    g = _gen(seed)
    centres = torch.randn(classes, dim, generator=g) * 1.5
    y = torch.arange(n) % classes
    x = centres[y] + spread * torch.randn(n, dim, generator=g)
    return torch.utils.data.TensorDataset(x, y)


def _mlp(seed: int, dim: int = 12, hidden: int = 16, classes: int = 3) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(OrderedDict(fc1=nn.Linear(dim, hidden), relu=nn.ReLU(), fc2=nn.Linear(hidden, classes)))


_TRAIN_HINT = ("build the optimizer from the name (SGD with momentum=0.9, or Adam), multiply every masked "
               "parameter by its mask in place under torch.no_grad() BEFORE the first step and AFTER EVERY "
               "optimizer.step(); zero the gradients before each backward; return one loss.item() per step")


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in model.state_dict().items()}


def _train_case(label: str, optimizer: str, batch_size: int | None, steps: int, mask_names=("fc1.weight", "fc2.weight"),
                weight_decay: float = 0.0, lr: float | None = None, float_masks: bool = False, seed: int = 0,
                exact: bool = False) -> Case:
    lr = (0.05 if optimizer == "sgd" else 0.01) if lr is None else lr

    def run(fn):
        data = _blobs(48, 12, 3, seed + 7)
        batch = len(data) if batch_size is None else batch_size
        model = _mlp(seed)
        g = _gen(seed + 11)
        params = dict(model.named_parameters())
        masks = {n: torch.rand(params[n].shape, generator=g) < 0.5 for n in mask_names}
        if float_masks:
            masks = {n: m.float() for n, m in masks.items()}
        masks_before, data_before = {n: m.clone() for n, m in masks.items()}, [t.clone() for t in data.tensors]
        twin, start_state = copy.deepcopy(model), _state(model)
        objects = dict(model.named_parameters())
        rng_before = torch.get_rng_state()
        try:
            out = fn(model, masks, data, optimizer, lr, steps, batch, weight_decay, seed)
        except RuntimeError as exc:
            if "leaf Variable" in str(exc) or "requires grad" in str(exc):
                raise CheckFailed("an in-place change of a parameter that requires grad raised RuntimeError",
                                  "wrap the re-masking in `with torch.no_grad():`") from None
            raise
        expect(torch.equal(torch.get_rng_state(), rng_before), "your function changed torch's global random state",
               "shuffle with a private generator: g = torch.Generator().manual_seed(seed); "
               "torch.randperm(n, generator=g)")
        expect(all(torch.equal(masks[n], masks_before[n]) for n in masks), "your function changed the masks",
               "read the masks, never write into them")
        expect(all(torch.equal(a, b) for a, b in zip(data.tensors, data_before)), "your function changed the data")
        after = dict(model.named_parameters())
        for n, p in objects.items():
            expect(after.get(n) is p, f"{n} is a new object after training",
                   "train and re-mask the model's own parameters in place (param.mul_(mask)); never assign new "
                   "nn.Parameter objects: the optimizer would keep updating the old ones")
        expect(isinstance(out, (list, tuple)), f"returned {type(out).__name__}, expected a list of {steps} losses",
               "return a list with loss.item() of every step")
        expect(len(out) == steps, f"returned {len(out)} losses for steps={steps}",
               "take exactly `steps` optimizer steps (cycle through the data as often as needed) and record one "
               "loss per step")
        expect(all(isinstance(v, float) for v in out),
               f"the losses should be Python floats, got {type(out[0]).__name__ if out else '?'}",
               "store loss.item(), not the loss tensor (a tensor keeps its whole graph alive)")
        for n, mask in masks_before.items():
            w = params[n].detach()
            revived = int((w[~mask.bool()] != 0).sum())
            if revived:
                hint = _TRAIN_HINT
                if (torch.equal(w, start_state[n]) is False
                        and bool((w[mask.bool()] == start_state[n][mask.bool()]).all())):
                    hint = "the kept weights did not train at all; " + _TRAIN_HINT
                raise CheckFailed(f"after training, {revived} pruned weight(s) of {n} are not 0",
                                  "re-apply the masks after EVERY optimizer.step(), and once before the first step "
                                  "(the weights you get are not masked yet); zeroing only the gradients is not "
                                  "enough: momentum, weight decay and Adam still move them")
        expect(any(not torch.equal(params[n].detach(), start_state[n]) for n in params),
               "no parameter changed: nothing was trained", _TRAIN_HINT)
        first, last = sum(out[:3]) / 3, sum(out[-3:]) / 3
        expect(last < first, f"the loss did not decrease: first steps {first:.4f}, last steps {last:.4f}",
               "compute cross-entropy on each batch, zero the gradients, backward, optimizer.step()")
        if exact:   # full batch: the whole trajectory is fixed, compare step by step with the reference
            want = reference_train_masked(twin, {n: m.clone() for n, m in masks_before.items()}, data, optimizer,
                                          lr, steps, batch, weight_decay, seed)
            for i, (got, ref) in enumerate(zip(out, want)):
                if abs(got - ref) > 1e-4 * max(1.0, abs(ref)):
                    hint = _TRAIN_HINT
                    if i == 0:
                        hint = ("the first loss is already different: apply the masks BEFORE the first forward pass "
                                "(the model you get still holds values at the pruned positions), and record the "
                                "loss of the batch the step trains on")
                    raise CheckFailed(f"step {i + 1}: loss {got:.6f}, expected {ref:.6f} ({optimizer}, lr {lr}, "
                                      f"full batch)", hint)
            ref_state = twin.state_dict()
            for n, t in model.state_dict().items():
                expect(torch.allclose(t, ref_state[n], atol=1e-5, rtol=1e-4),
                       f"after {steps} full-batch steps {n} differs from "
                       f"torch.optim.{'SGD' if optimizer == 'sgd' else 'Adam'}"
                       f" with the same settings", _TRAIN_HINT)
    return Case(label, run)


def _train_repeat_case() -> Case:
    def run(fn):
        data = _blobs(40, 12, 3, 21)
        masks = {"fc1.weight": torch.rand(16, 12, generator=_gen(22)) < 0.4}
        runs = []
        for _ in range(2):
            model = _mlp(3)
            runs.append((fn(model, {k: v.clone() for k, v in masks.items()}, data, "sgd", 0.05, 12, 8, 0.0, 5),
                         _state(model)))
        expect(runs[0][0] == runs[1][0] and all(torch.equal(runs[0][1][n], runs[1][1][n]) for n in runs[0][1]),
               "two calls with the same seed gave different results",
               "draw the batch order from torch.Generator().manual_seed(seed), not from the global generator")
        other = _mlp(3)
        losses = fn(other, {k: v.clone() for k, v in masks.items()}, data, "sgd", 0.05, 12, 8, 0.0, 6)
        expect(losses != runs[0][0], "seed 5 and seed 6 gave the same losses: the batch order ignores the seed",
               "shuffle the examples with torch.randperm(n, generator=torch.Generator().manual_seed(seed))")
    return Case("the same seed gives the same run, another seed another batch order", run)


def _train_cases() -> list[Case]:
    return [
        _train_case("SGD (momentum 0.9), full batch, 15 steps: step by step as torch.optim.SGD", "sgd", None, 15,
                    exact=True),
        _train_case("Adam, full batch, 15 steps: step by step as torch.optim.Adam", "adam", None, 15, exact=True,
                    seed=1),
        _train_case("SGD with weight decay 5e-4, full batch", "sgd", None, 12, weight_decay=5e-4, exact=True, seed=2),
        _train_case("SGD, mini-batches of 8, 40 steps (several epochs)", "sgd", 8, 40, seed=3),
        _train_case("Adam, mini-batches of 10, 30 steps (a smaller last batch)", "adam", 10, 30, seed=4),
        _train_case("a mask for fc2.weight only, float 0/1", "adam", 16, 20, mask_names=("fc2.weight",),
                    float_masks=True, seed=5),
        _train_case("no masks: plain training", "sgd", 16, 20, mask_names=(), seed=6),
        _train_repeat_case(),
    ]


def check_train_masked(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``train_masked(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed)``: pruned
    weights exactly 0 after training (SGD with momentum, Adam, weight decay), one float loss per step that
    decreases, full-batch runs equal to torch.optim step by step, same Parameter objects, repeatable by seed."""
    return run_check("train_masked", fn, _train_cases, hint=_TRAIN_HINT,
                     passed="zeros stay 0 under SGD+momentum and Adam, loss decreases, same steps as torch.optim, "
                            "repeatable by seed", strict=strict)


# ============================================================================ iterative_prune (capstone)


_ITERATE_HINT = ("work on a copy; each round: global magnitude masks of the CURRENT weights at the round's target, "
                 "train_masked(...), validation accuracy; stop after the first round more than `tolerance` below "
                 "the dense validation accuracy, and return a copy of the model of the last round that was within it")

_dense_cache: dict = {}


def _trained_dense(seed: int) -> tuple[nn.Module, torch.utils.data.TensorDataset, torch.utils.data.TensorDataset]:
    """A small MLP trained on Gaussian blobs, with its training and validation sets (cached: built once)."""
    if seed not in _dense_cache:
        train_data = _blobs(192, 12, 4, seed + 50, spread=1.4)
        val_data = _blobs_like(train_data, 128, seed + 77)   # the same class centres, other examples
        model = _mlp(seed, hidden=24, classes=4)
        reference_train_masked(model, {}, train_data, "adam", 0.02, 150, 64, 0.0, seed)
        _dense_cache[seed] = (model, train_data, val_data)
    model, train_data, val_data = _dense_cache[seed]
    return copy.deepcopy(model), train_data, val_data


def _blobs_like(data: torch.utils.data.TensorDataset, n: int, seed: int) -> torch.utils.data.TensorDataset:
    """More examples of the same problem as ``data`` (same class centres, fresh noise)."""
    x, y = data.tensors
    classes = int(y.max()) + 1
    centres = torch.stack([x[y == c].mean(0) for c in range(classes)])
    g = _gen(seed)
    y_new = torch.arange(n) % classes
    return torch.utils.data.TensorDataset(centres[y_new] + 1.4 * torch.randn(n, x.shape[1], generator=g), y_new)


def _iterate_case(label: str, schedule: list[float], tolerance: float, seed: int = 0, steps: int = 30) -> Case:
    def run(fn):
        model, train_data, val_data = _trained_dense(seed)
        before = _state(model)
        out = fn(model, train_data, val_data, list(schedule), tolerance, steps, 0.05, 32, seed)
        expect(isinstance(out, Mapping), f"returned {type(out).__name__}, expected a dict",
               'return {"model": ..., "sparsity": ..., "val_acc": ..., "dense_val_acc": ..., "history": [...]}')
        missing = {"model", "sparsity", "val_acc", "dense_val_acc", "history"} - set(out)
        expect(not missing, f"the result has no {sorted(missing)}",
               'return {"model": ..., "sparsity": ..., "val_acc": ..., "dense_val_acc": ..., "history": [...]}')
        expect(all(torch.equal(t, before[n]) for n, t in model.state_dict().items()),
               "your function changed the model it was given", "prune and fine-tune a copy: copy.deepcopy(model)")
        dense_acc = _accuracy(model, val_data)
        expect(abs(float(out["dense_val_acc"]) - dense_acc) < 1e-9,
               f"dense_val_acc is {float(out['dense_val_acc']):.4f}, but the model scores {dense_acc:.4f} on val_data",
               "measure the dense model on val_data (the stopping rule is chosen on validation, "
               "never on train or test)")
        history = out["history"]
        expect(isinstance(history, (list, tuple)) and len(history) >= 1 and all(len(h) == 2 for h in history),
               f"history is {history!r:.80}, expected a list of (target, val_acc) pairs, one per round run",
               "append (target, val_acc) after every round")
        targets = [float(h[0]) for h in history]
        accs = [float(h[1]) for h in history]
        expect(targets == [float(s) for s in schedule[:len(targets)]],
               f"history targets {targets} are not the start of the schedule {schedule}",
               "run the rounds in the order of the schedule, one round per target")
        limit = dense_acc - tolerance
        for i, acc in enumerate(accs[:-1]):
            hint = _ITERATE_HINT
            if i > 0 and acc >= accs[i - 1] - tolerance:
                hint = ("compare each round with the DENSE validation accuracy, not with the previous round; "
                        + _ITERATE_HINT)
            expect(acc >= limit, f"round {i + 1} ({targets[i]}) is {dense_acc - acc:.4f} below dense (tolerance "
                   f"{tolerance}), but more rounds were run after it", hint)
        if len(accs) < len(schedule):
            hint = ("stop only when a round is MORE than `tolerance` below the dense validation accuracy; otherwise "
                    "go on with the next target")
            if len(accs) > 1 and accs[-1] < accs[-2] - tolerance:
                hint = "compare each round with the DENSE validation accuracy, not with the previous round; " + hint
            expect(accs[-1] < limit, f"stopped after round {len(accs)} although it is within the tolerance "
                   f"({accs[-1]:.4f} vs dense {dense_acc:.4f})", hint)
        chosen = len(accs) - 1 if accs[-1] >= limit else len(accs) - 2
        want_s, want_acc = (targets[chosen], accs[chosen]) if chosen >= 0 else (0.0, dense_acc)
        hint = _ITERATE_HINT
        if chosen < len(accs) - 1 and abs(float(out["sparsity"]) - targets[-1]) < 1e-12:
            hint = ("you returned the last round, which broke the tolerance; return the LAST ACCEPTED one "
                    "(keep a copy of the model after each accepted round)")
        expect(abs(float(out["sparsity"]) - want_s) < 1e-12,
               f"returned sparsity {float(out['sparsity'])}, expected {want_s} (the sparsest round within "
               f"{tolerance} of dense on validation; history {[(t, round(a, 4)) for t, a in history]})", hint)
        expect(abs(float(out["val_acc"]) - want_acc) < 1e-9,
               f"returned val_acc {float(out['val_acc']):.4f}, expected {want_acc:.4f} from the history", hint)
        chosen_model = out["model"]
        expect(isinstance(chosen_model, nn.Module) and chosen_model is not model,
               f'out["model"] is {type(chosen_model).__name__}, expected a pruned COPY of the model',
               "return copy.deepcopy(working_model) taken right after the accepted round")
        weights = _prunable(chosen_model)
        total = sum(w.numel() for w in weights.values())
        zeros = sum(int((w == 0).sum()) for w in weights.values())
        expect(zeros == round(want_s * total),
               f'out["model"] has {zeros} zero weights of {total}, expected round({want_s}·{total}) = '
               f"{round(want_s * total)}", "return a copy taken right after the accepted round "
               "(a later round prunes the working model further)")
        measured = _accuracy(chosen_model, val_data)
        expect(abs(measured - want_acc) < 1e-9,
               f'out["model"] scores {measured:.4f} on val_data, but the reported val_acc is {want_acc:.4f}',
               "measure every round on val_data, and return the model that was measured")
        if chosen >= 1:   # iterative: the masks of later rounds come from FINE-TUNED weights, not the dense ones
            one_shot = reference_global_magnitude_masks({n: w.detach() for n, w in _prunable(model).items()}, want_s)
            expect(not all(torch.equal((weights[n] != 0), one_shot[n]) for n in weights),
                   "the returned model's mask is exactly the dense model's magnitude mask at that sparsity",
                   "prune the CURRENT, fine-tuned weights each round (iterative); do not restart from the dense model")
    return Case(label, run)


def _iterate_cases() -> list[Case]:
    return [
        _iterate_case("schedule 0.5 -> 0.99, tolerance 0.02: stops when the accuracy drops",
                      [0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99], 0.02),
        _iterate_case("an easy schedule: every round accepted", [0.3, 0.5, 0.6], 0.5, seed=1),
        _iterate_case("the first round already fails: the dense copy comes back", [0.995, 0.999], 0.0, seed=2),
        _iterate_case("tolerance 0.02, a gradual decline (each round close to the previous one)",
                      [0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97, 0.98, 0.99], 0.02, seed=3),
        _iterate_case("tolerance 0.03, a gradual decline", [0.5, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95, 0.97], 0.03, seed=2),
    ]


def check_iterative_prune(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``iterative_prune(model, train_data, val_data, schedule, tolerance, steps, lr, batch_size, seed)``:
    rounds in schedule order, a stop right after the first round more than ``tolerance`` below the dense
    VALIDATION accuracy, the last accepted round returned as a copy whose zeros and validation accuracy match
    what is reported, masks from fine-tuned weights, the input model untouched."""
    return run_check("iterative_prune", fn, _iterate_cases, hint=_ITERATE_HINT,
                     passed="stopping rule on validation, last accepted round, copy, iterative masks", strict=strict)
