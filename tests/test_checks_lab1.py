"""Lab 1's checks accept the reference implementations and reject known-wrong ones (>= 3 each).
(What every check promises -- reference passes, stubs, strict mode, no crashes, RNG left
alone -- is tested once for all labs in test_checks_contract.py.)"""
from __future__ import annotations

import copy

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


# ============================================================================ capstones: train_masked
def _optimizer(model, name, lr, weight_decay):
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)


def _batches(data, steps, batch_size, seed):
    x, y = data.tensors
    g = torch.Generator().manual_seed(seed)
    done = 0
    while True:
        order = torch.randperm(len(y), generator=g)
        for start in range(0, len(y), batch_size):
            if done == steps:
                return
            idx = order[start:start + batch_size]
            done += 1
            yield x[idx], y[idx]


def _masked_loop(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed, *, before=True,
                 after=True, grads=False, zero_grad=True, opt_name=None):
    params = dict(model.named_parameters())
    opt = _optimizer(model, opt_name or optimizer, lr, weight_decay)

    def remask():
        with torch.no_grad():
            for n, m in masks.items():
                params[n].mul_(m.to(params[n].dtype))

    if before:
        remask()
    losses = []
    for x, y in _batches(data, steps, batch_size, seed):
        if zero_grad:
            opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        if grads:
            for n, m in masks.items():
                params[n].grad.mul_(m.to(params[n].dtype))
        opt.step()
        if after:
            remask()
        losses.append(loss.item())
    return losses


def tm_mask_once(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed):
    return _masked_loop(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed, after=False)


def tm_zero_grads_only(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed):
    return _masked_loop(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed, before=False,
                        after=False, grads=True)


def tm_mask_after_only(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed):
    return _masked_loop(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed, before=False)


def tm_no_zero_grad(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed):
    return _masked_loop(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed, zero_grad=False)


def tm_always_sgd(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed):
    return _masked_loop(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed, opt_name="sgd")


def tm_global_seed(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed):
    torch.manual_seed(seed)
    return _masked_loop(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed)


def tm_loss_tensors(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed):
    losses = _masked_loop(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed)
    return [torch.tensor(v) for v in losses]


def tm_new_parameters(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed):
    for n, m in masks.items():
        module_name, _, attr = n.rpartition(".")
        module = model.get_submodule(module_name)
        setattr(module, attr, nn.Parameter(getattr(module, attr).detach() * m))
    return _masked_loop(model, masks, data, optimizer, lr, steps, batch_size, weight_decay, seed)


# ============================================================================ capstones: iterative_prune
def _iterate(model, train_data, val_data, schedule, tolerance, steps, lr, batch_size, seed, *, compare="dense",
             stop=True, keep="best", restart=False, measure_on="val"):
    from prunekit.checks.lab1 import _accuracy, _prunable

    def acc_of(m):
        return _accuracy(m, val_data if measure_on == "val" else train_data)

    dense_acc = acc_of(model)
    work = copy.deepcopy(model)
    best = {"model": copy.deepcopy(model), "sparsity": 0.0, "val_acc": dense_acc}
    history, previous = [], dense_acc
    for r, target in enumerate(schedule):
        if restart:
            work = copy.deepcopy(model)
        masks = checks.reference_global_magnitude_masks({n: w.detach() for n, w in _prunable(work).items()}, target)
        checks.reference_train_masked(work, masks, train_data, "sgd", lr, steps, batch_size, 0.0, seed + r)
        acc = acc_of(work)
        history.append((target, acc))
        reference = dense_acc if compare == "dense" else previous
        if acc < reference - tolerance:
            if keep == "last":
                best = {"model": work, "sparsity": target, "val_acc": acc}
            if stop:
                break
            continue
        previous = acc
        best = {"model": work if keep == "alias" else copy.deepcopy(work), "sparsity": target, "val_acc": acc}
    return {**best, "dense_val_acc": dense_acc, "history": history}


def ip_previous_round(*args):
    return _iterate(*args, compare="previous")


def ip_never_stops(*args):
    return _iterate(*args, stop=False)


def ip_returns_last(*args):
    return _iterate(*args, keep="last")


def ip_one_shot_each_round(*args):
    return _iterate(*args, restart=True)


def ip_train_accuracy(*args):
    return _iterate(*args, measure_on="train")


def ip_no_copy(*args):
    return _iterate(*args, keep="alias")


def ip_modifies_input(model, *args):
    out = _iterate(model, *args)
    with torch.no_grad():
        model.fc1.weight.mul_(out["model"].fc1.weight != 0)
    return out


CAPSTONE_WRONG = {
    "train_masked": [tm_mask_once, tm_zero_grads_only, tm_mask_after_only, tm_no_zero_grad, tm_always_sgd,
                     tm_global_seed, tm_loss_tensors, tm_new_parameters],
    "iterative_prune": [ip_previous_round, ip_never_stops, ip_returns_last, ip_one_shot_each_round,
                        ip_train_accuracy, ip_no_copy, ip_modifies_input],
}


@pytest.mark.parametrize(**cases(CAPSTONE_WRONG))
def test_capstone_wrong_implementation_is_rejected(name, fn):
    rejected(_check(name), fn)


def test_capstone_hints_name_the_mistake():
    rejected(checks.check_train_masked, tm_mask_once, "after every optimizer.step()")
    rejected(checks.check_train_masked, tm_zero_grads_only, "zeroing only the gradients")
    rejected(checks.check_train_masked, tm_mask_after_only, "before the first forward")
    rejected(checks.check_train_masked, tm_global_seed, "private generator")
    rejected(checks.check_iterative_prune, ip_previous_round, "not with the previous round")
    rejected(checks.check_iterative_prune, ip_returns_last, "last accepted")
    rejected(checks.check_iterative_prune, ip_one_shot_each_round, "current, fine-tuned")
