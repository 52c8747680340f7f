"""Checks and reference implementations for Lab 1 (weight pruning).

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

Each check prints one line and returns a :class:`~prunekit.checks.core.CheckResult`; the
``reference_*`` functions are what :func:`~prunekit.checks.core.use_or_reference` falls back to.
"""
from __future__ import annotations

import math
from collections import OrderedDict
from typing import Callable, Mapping

import torch
from torch import nn

from ..masks import check_sparsity, num_to_prune, topk_mask
from .core import Case, CheckFailed, CheckResult, as_mask, call, describe_tensor, expect, run_check

__all__ = [
    "check_magnitude_mask", "check_global_magnitude_masks", "check_random_mask", "check_saliency_scores",
    "check_remask_", "check_torch_prune_amount", "check_prune_below",
    "reference_magnitude_mask", "reference_global_magnitude_masks", "reference_random_mask",
    "reference_saliency_scores", "reference_remask_", "reference_torch_prune_amount", "reference_prune_below",
]


# ============================================================================ reference implementations
def reference_magnitude_mask(weight: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Bool mask of ``weight.shape`` pruning exactly ``round(sparsity * numel)`` entries of smallest ``|w|``."""
    return topk_mask(weight.detach().abs(), sparsity)


def reference_global_magnitude_masks(weights: Mapping[str, torch.Tensor], sparsity: float
                                     ) -> dict[str, torch.Tensor]:
    """One magnitude ranking over all tensors together; returns ``{name: bool mask}`` (Han et al. 2015 rank per layer;
    a global ranking is the simpler variant popularised by e.g. Frankle & Carbin 2019 for conv nets)."""
    names = list(weights)
    flat = torch.cat([weights[n].detach().abs().flatten().float() for n in names])
    keep = topk_mask(flat, sparsity)
    masks, start = {}, 0
    for n in names:
        size = weights[n].numel()
        masks[n] = keep[start:start + size].view(weights[n].shape)
        start += size
    return masks


def reference_random_mask(weight: torch.Tensor, sparsity: float, seed: int = 0) -> torch.Tensor:
    """Prune exactly ``round(sparsity * numel)`` uniformly random entries; depends only on shape and seed."""
    k = num_to_prune(weight.numel(), sparsity)
    generator = torch.Generator().manual_seed(seed)  # a private generator: the global RNG is untouched
    order = torch.randperm(weight.numel(), generator=generator)
    keep = torch.ones(weight.numel(), dtype=torch.bool)
    keep[order[:k]] = False
    return keep.view(weight.shape)


def reference_saliency_scores(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """First-order Taylor saliency ``|w * dL/dw|``: the loss change estimated for setting ``w`` to zero
    (LeCun et al. 1990 use the second-order term; Molchanov et al. 2017/2019 the first-order one)."""
    return (weight.detach() * grad.detach()).abs()


@torch.no_grad()
def reference_remask_(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Multiply each named parameter by its mask in place (the same Parameter objects keep living)."""
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(device=params[name].device, dtype=params[name].dtype))
    return model


def reference_torch_prune_amount(current_sparsity: float, target_sparsity: float) -> float:
    """The ``amount`` for ``torch.nn.utils.prune``, which counts the *remaining* weights:
    ``(target - current) / (1 - current)``; 0 when nothing remains."""
    current = check_sparsity(current_sparsity, "current_sparsity")
    target = check_sparsity(target_sparsity, "target_sparsity")
    if target < current:
        raise ValueError(f"torch.nn.utils.prune cannot un-prune: target {target} < current {current}")
    if current >= 1.0:
        return 0.0
    return (target - current) / (1.0 - current)


def reference_prune_below(weight: torch.Tensor, threshold: float) -> torch.Tensor:
    """A new tensor equal to ``weight`` with every entry of ``|w| < threshold`` set to exactly zero."""
    return torch.where(weight.abs() < threshold, torch.zeros_like(weight), weight)


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
