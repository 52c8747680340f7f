"""Lab 1's checks accept the reference implementations and reject known-wrong ones (>= 3 each).
(What every check promises -- reference passes, stubs, strict mode, no crashes, RNG left
alone -- is tested once for all labs in test_checks_contract.py.)"""
from __future__ import annotations

import pytest
import torch
from torch import nn

from checks_helpers import cases, rejected
from prunekit import checks
from prunekit.masks import topk_mask


# ============================================================================ wrong implementations
def _flat_topk_keep(scores: torch.Tensor, k: int) -> torch.Tensor:
    keep = torch.ones(scores.numel(), dtype=torch.bool)
    keep[torch.sort(scores.flatten().double(), stable=True).indices[:k]] = False
    return keep.view(scores.shape)


# --- magnitude_mask
def mm_keeps_largest(w, s):
    return topk_mask(-w.detach().abs(), s)


def mm_int_count(w, s):
    return _flat_topk_keep(w.detach().abs(), int(s * w.numel()))


def mm_threshold_ties(w, s):  # the popular `|w| > kthvalue` rule: all tied weights pruned together
    k = round(s * w.numel())
    if k == 0:
        return torch.ones_like(w, dtype=torch.bool)
    kth = w.detach().abs().flatten().kthvalue(k).values
    return w.detach().abs() > kth


def mm_per_row(w, s):
    if w.dim() < 2:
        return topk_mask(w.detach().abs(), s)
    rows = w.detach().abs().flatten(1)
    return torch.stack([topk_mask(r, s) for r in rows]).view(w.shape)


def mm_signed(w, s):
    return topk_mask(w.detach(), s)


def mm_inverted(w, s):
    return ~topk_mask(w.detach().abs(), s)


def mm_in_place(w, s):
    with torch.no_grad():
        w.abs_()
    return topk_mask(w.detach(), s)


# --- global_magnitude_masks
def gm_layerwise(ws, s):
    return {n: topk_mask(w.abs(), s) for n, w in ws.items()}


def gm_ignores_last(ws, s):
    names = list(ws)
    masks = checks.reference_global_magnitude_masks({n: ws[n] for n in names[:-1]}, s) if len(names) > 1 else {}
    masks[names[-1]] = torch.ones_like(ws[names[-1]], dtype=torch.bool)
    return masks


def gm_int_count(ws, s):
    flat = torch.cat([w.abs().flatten() for w in ws.values()])
    keep = _flat_topk_keep(flat, int(s * flat.numel()))
    out, start = {}, 0
    for n, w in ws.items():
        out[n] = keep[start:start + w.numel()].view(w.shape)
        start += w.numel()
    return out


def gm_normalised(ws, s):  # divides each layer by its largest |w|: a different ranking
    return checks.reference_global_magnitude_masks({n: w / w.abs().max().clamp_min(1e-12) for n, w in ws.items()}, s)


def gm_threshold_ties(ws, s):
    flat = torch.cat([w.abs().flatten() for w in ws.values()])
    k = round(s * flat.numel())
    kth = flat.kthvalue(k).values if k > 0 else torch.tensor(-1.0)
    return {n: w.abs() > kth for n, w in ws.items()}


# --- random_mask
def rm_keeps_drawn(w, s, seed=0):  # the article's "random pruning": keeps what it meant to prune
    g = torch.Generator().manual_seed(seed)
    return torch.rand(w.shape, generator=g) < s


def rm_approximate(w, s, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(w.shape, generator=g) >= s


def rm_first_k(w, s, seed=0):
    keep = torch.ones(w.numel(), dtype=torch.bool)
    keep[: round(s * w.numel())] = False
    return keep.view(w.shape)


def rm_magnitude(w, s, seed=0):
    return topk_mask(w.abs(), s)


def rm_global_seed(w, s, seed=0):
    torch.manual_seed(seed)
    keep = torch.ones(w.numel(), dtype=torch.bool)
    keep[torch.randperm(w.numel())[: round(s * w.numel())]] = False
    return keep.view(w.shape)


def rm_ignores_seed(w, s, seed=0):
    keep = torch.ones(w.numel(), dtype=torch.bool)
    g = torch.Generator()
    g.seed()  # fresh entropy each call
    keep[torch.randperm(w.numel(), generator=g)[: round(s * w.numel())]] = False
    return keep.view(w.shape)


# --- saliency_scores
def sal_signed(w, g):
    return w * g


def sal_sum(w, g):
    return w.abs() + g.abs()


def sal_squared(w, g):
    return (w * g) ** 2


def sal_grad_only(w, g):
    return g.abs()


def sal_reduced(w, g):
    return (w * g).abs().sum(0)


def sal_in_place(w, g):
    with torch.no_grad():
        return w.mul_(g).abs_()


# --- remask_
def rk_rebind(model, masks):
    params = dict(model.named_parameters())
    for n, m in masks.items():
        p = params[n]
        p = p * m  # noqa: F841 - rebinding a local name changes nothing
    return model


def rk_new_parameter(model, masks):
    for n, m in masks.items():
        module_name, _, attr = n.rpartition(".")
        module = model.get_submodule(module_name)
        setattr(module, attr, nn.Parameter(getattr(module, attr).detach() * m))
    return model


def rk_inverted(model, masks):
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, m in masks.items():
            params[n].mul_(~m.bool())
    return model


def rk_grad_only(model, masks):
    params = dict(model.named_parameters())
    for n, m in masks.items():
        if params[n].grad is not None:
            params[n].grad.mul_(m)
    return model


def rk_positional(model, masks):
    with torch.no_grad():
        for p, m in zip(model.parameters(), masks.values()):
            if p.shape == m.shape:
                p.mul_(m)
    return model


def rk_first_only(model, masks):
    params = dict(model.named_parameters())
    with torch.no_grad():
        for n, m in masks.items():
            params[n].mul_(m)
            return model
    return model


def rk_no_grad_missing(model, masks):
    params = dict(model.named_parameters())
    for n, m in masks.items():
        params[n].mul_(m)
    return model


# --- torch_prune_amount
def amt_target(current, target):
    return target


def amt_difference(current, target):
    return target - current


def amt_over_current(current, target):
    return (target - current) / current


def amt_remaining_ratio(current, target):
    return (1 - target) / (1 - current) if current < 1 else 0.0


# --- prune_below
def pb_sign(w, t):
    return t * torch.sign(w)


def pb_all(w, t):
    w = w.clone()
    if (w.abs() < t).all():
        w = torch.zeros_like(w)
    return w


def pb_no_abs(w, t):
    return w * (w >= t)


def pb_less_equal(w, t):
    return w * (w.abs() > t)


def pb_in_place(w, t):
    with torch.no_grad():
        w[w.abs() < t] = 0
    return w


def pb_mask(w, t):
    return w.abs() >= t


WRONG = {
    "magnitude_mask": [mm_keeps_largest, mm_int_count, mm_threshold_ties, mm_per_row, mm_signed, mm_inverted,
                       mm_in_place],
    "global_magnitude_masks": [gm_layerwise, gm_ignores_last, gm_int_count, gm_normalised, gm_threshold_ties],
    "random_mask": [rm_keeps_drawn, rm_approximate, rm_first_k, rm_magnitude, rm_global_seed, rm_ignores_seed],
    "saliency_scores": [sal_signed, sal_sum, sal_squared, sal_grad_only, sal_reduced, sal_in_place],
    "remask_": [rk_rebind, rk_new_parameter, rk_inverted, rk_grad_only, rk_positional, rk_first_only,
                rk_no_grad_missing],
    "torch_prune_amount": [amt_target, amt_difference, amt_over_current, amt_remaining_ratio],
    "prune_below": [pb_sign, pb_all, pb_no_abs, pb_less_equal, pb_in_place, pb_mask],
}


def _check(name):
    return getattr(checks, f"check_{name}")


@pytest.mark.parametrize(**cases(WRONG))
def test_wrong_implementation_is_rejected(name, fn):
    rejected(_check(name), fn)


def test_specific_hints(capsys):
    checks.check_magnitude_mask(mm_int_count, strict=False)
    checks.check_magnitude_mask(mm_threshold_ties, strict=False)
    checks.check_global_magnitude_masks(gm_layerwise, strict=False)
    checks.check_random_mask(rm_global_seed, strict=False)
    checks.check_remask_(rk_no_grad_missing, strict=False)
    checks.check_prune_below(pb_all, strict=False)
    out = capsys.readouterr().out
    assert "not int(s * n)" in out
    assert "ties" in out
    assert "layer-wise" in out
    assert "torch.Generator" in out
    assert "torch.no_grad()" in out
    assert ".all()" in out


def test_checks_are_deterministic(capsys):
    for _ in range(2):
        checks.check_magnitude_mask(mm_per_row, strict=False)
        checks.check_random_mask(checks.reference_random_mask, strict=False)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == lines[2] and lines[1] == lines[3]
