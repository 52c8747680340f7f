"""Checks for Lab 3 (structured pruning: channels and filters).

=============================  ==============================================  ====================================
exercise                       contract                                        check
=============================  ==============================================  ====================================
``channel_l2_importance``      ``(weight (out, in, kh, kw)) -> (out,)``:       :func:`check_channel_l2_importance`
                               ``‖W[c]‖₂`` of each output filter
``bn_gamma_importance``        ``(bn) -> (C,)``: ``|γ_c|`` of a BatchNorm      :func:`check_bn_gamma_importance`
``keep_indices``               ``(scores, amount) -> sorted LongTensor``:       :func:`check_keep_indices`
                               drop ``round(amount*n)`` (at most n-1) lowest
``prune_conv_bn_conv``         ``(conv, bn, next_conv, keep) -> (conv, bn,     :func:`check_prune_conv_bn_conv`
                               next_conv)``, three new, smaller modules
``conv_macs``                  ``(conv, input_hw) -> int``: MACs of one         :func:`check_conv_macs`
                               image through the conv
``sensitivity_scan``           ``(model, amounts, images, labels) -> {group:   :func:`check_sensitivity_scan`
                               [accuracy, ...]}``, one group pruned at a time
``plan_for_mac_budget``        ``(model, amounts, scan, dense_accuracy,         :func:`check_plan_for_mac_budget`
                               mac_budget, input_shape) -> {group: amount}``
``prune_residual_group``       ``(model, group, amount) -> new model``: one     :func:`check_prune_residual_group`
                               dependency group scored (Σ‖W_m[c]‖₂), removed
=============================  ==============================================  ====================================

Each check prints one line and returns a :class:`~prunekit.checks.core.CheckResult`. The answers it
compares with, the ``reference_*`` functions, live in :mod:`prunekit.checks.references.lab3` (re-exported
here); :func:`~prunekit.checks.core.use_or_reference` falls back to them.
"""
from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from ..measure import count_macs
from ..surgery import channel_masks_as_zeros, dependency_groups, prune_channels, shrink
from .core import Case, CheckFailed, CheckResult, call, describe_tensor, expect, run_check
from .references.lab3 import (reference_bn_gamma_importance, reference_channel_l2_importance, reference_conv_macs,
                              reference_keep_indices, reference_plan_for_mac_budget, reference_prune_conv_bn_conv,
                              reference_prune_residual_group, reference_sensitivity_scan, _pair)

__all__ = [
    "check_channel_l2_importance", "check_bn_gamma_importance", "check_keep_indices",
    "check_prune_conv_bn_conv", "check_conv_macs", "check_sensitivity_scan", "check_plan_for_mac_budget",
    "check_prune_residual_group",
    "reference_channel_l2_importance", "reference_bn_gamma_importance", "reference_keep_indices",
    "reference_prune_conv_bn_conv", "reference_conv_macs", "reference_sensitivity_scan",
    "reference_plan_for_mac_budget", "reference_prune_residual_group",
]


# Library functions an exercise must not call (it asks the learner to write them); read by
# prunekit.checks.provenance without importing this module.
MUST_NOT_CALL = {
    "prune_residual_group": ["prunekit.surgery.shrink", "prunekit.surgery.prune_channels",
                             "prunekit.surgery.channels_to_keep"],
    "sensitivity_scan": ["prunekit.sensitivity.sensitivity_scan"],
}


# Every statement of each exercise's contract (as the notebook states it) and the cases that test it
# (a case counts when its label contains the text); tests/test_checks_contract.py runs the checks and
# fails for a statement without a case (issue 18, point 7).
CONTRACT = {
    "channel_l2_importance": {
        "one L2 norm per output filter, shape (out,)": ["3 filters of shape (1, 1, 2)", "2 filters x 3 input channels"],
        "L2 of the whole filter: signs do not cancel": ["a filter whose weights sum to zero"],
        "float32 and float64, any kernel size": ["(16, 8, 3, 3) torch.float64", "(4, 2, 5, 5) torch.float64",
                                                 "(5, 7, 1, 1)"],
        "weight not modified, Parameters accepted": ["an nn.Parameter (requires grad)"],
    },
    "bn_gamma_importance": {
        "|γ| (bn.weight), not γ, β or running statistics": ["γ = [0.5, -2, 0, 1.5]", "all γ negative",
                                                             "β, μ, σ² not trivial"],
        "one value per channel, the BatchNorm untouched": ["random BatchNorm2d(64)"],
    },
    "keep_indices": {
        "drop round(amount * n) lowest scores": ["amount 0.4", "round(3.7) = 4 removed"],
        "never all channels: at most n - 1 removed": ["amount 1 still keeps the best channel"],
        "amount 0 keeps everything": ["amount 0 keeps everything"],
        "indices sorted ascending, integer dtype": ["unsorted scores, amount 0.5", "float64 scores"],
        "any consistent tie-break": ["ties: [1, 1, 1, 1]"],
    },
    "prune_conv_bn_conv": {
        "conv keeps rows `keep` (weight and bias)": ["conv 2->4 with bias", "keep the last channels only"],
        "bias=None layers stay without bias; next_conv keeps its whole bias": ["conv without bias",
                                                                                "1x1 next conv without bias"],
        "BatchNorm: γ, β, running mean and var at `keep`": ["BN(4)", "random conv 8->32"],
        "next_conv loses input channels (dim 1)": ["next conv 4->3", "random conv 16->12, next 12->20"],
        "stride, padding, dilation, kernel copied": ["stride 2, 5x5 kernel", "dilation 2 in both convs"],
        "keep every / one channel": ["keep every channel", "keep one channel"],
        "three new modules, inputs untouched, output = masked model": ["random conv 3->16"],
    },
    "conv_macs": {
        "out = (in + 2p - d(k - 1) - 1) // s + 1 per direction": ["3x3 conv without padding", "stride 2 halves"],
        "dilation > 1": ["dilation 2: a 3x3 kernel spans 5x5", "dilation 3 without padding"],
        "non-square kernel, stride, padding, dilation and input": ["non-square 5x3 kernel on a 12x7 input",
                                                                   "stride (2, 1), padding (1, 0)",
                                                                   "kernel (1, 3), stride (1, 2)",
                                                                   "dilation (2, 3), padding (1, 0)"],
        "groups divide the input channels": ["groups=2"],
        "1x1 shortcut convs": ["ResNet shortcut: 1x1, stride 2"],
        "returns a Python int": ["VGG conv1", "random conv 3->26"],
    },
    "sensitivity_scan": {
        "one entry per group of dependency_groups(model), in order": ["tiny VGG (3 groups)", "a VGG with 4 groups"],
        "each amount prunes ONE group of the original model": ["amounts [0, 0.5, 0.75]", "LeNet-300-100 (groups"],
        "eval mode, the model (and its BatchNorm statistics) untouched": ["handed over in TRAIN mode"],
        "accuracy as a Python float in [0, 1]; amount 0 is the dense accuracy": ["amount 0 only"],
        "models without BatchNorm, Linear groups": ["LeNet-5: conv groups without BatchNorm"],
    },
    "plan_for_mac_budget": {
        "tolerances: the drops of the scan, smallest first": ["the smallest tolerance already fits",
                                                              "half the dense MACs"],
        "largest amount with drop <= t per group, 0.0 if none": ["4 groups, 35 % of the MACs"],
        "MACs counted on the pruned model, <= budget (equality allowed)": ["budget exactly equal to a plan's MACs",
                                                                           "budget one MAC below that plan"],
        "drops can be negative": ["accuracy that RISES when pruning"],
        "ValueError when no tolerance fits": ["a budget no plan reaches raises ValueError"],
    },
    "prune_residual_group": {
        "score = sum over the producers of the filter L2 norms": ["stage 1: stem conv + 2 residual convs",
                                                                 "a 1x1 shortcut conv among the producers"],
        "keep_indices' rule: round(amount * n), at most n - 1": ["amount 1.0 still keeps one channel",
                                                                  "amount 0.34"],
        "producers lose output rows and bias entries": ["LeNet-5 conv1 (conv biases"],
        "every BatchNorm of the group loses the channels": ["stage 2: a 1x1 shortcut conv"],
        "every consumer loses input channels: next stage, shortcut, classifier": [
            "read by the next stage and its shortcut", "stage 3: read by the Linear classifier"],
        "a Linear after Flatten loses `spatial` columns per channel": ["read by fc1 after Flatten"],
        "block-internal groups are plain chains": ["block-internal group"],
        "a new model, the input untouched, same function as the masked model": ["ResNet, stage 1"],
    },
}

# ============================================================================ shared helpers
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _as_scores(out, n: int, what: str = "the scores") -> torch.Tensor:
    expect(isinstance(out, torch.Tensor), f"{what} should be a torch.Tensor, got {type(out).__name__}",
           "return a tensor built with torch operations")
    expect(out.is_floating_point(), f"{what} have dtype {out.dtype}, expected a floating-point tensor")
    expect(tuple(out.shape) == (n,), f"{what} have shape {tuple(out.shape)}, expected ({n},): one score per channel",
           "one number per OUTPUT channel: reduce over every dimension except dim 0")
    return out.detach().double()


def _close(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=1e-5, atol=1e-6))


def _seeded(seed: int, build: Callable[[], nn.Module]) -> nn.Module:
    """Build a module with a fixed seed, leaving the caller's global RNG as it was."""
    state = torch.get_rng_state()
    torch.manual_seed(seed)
    try:
        return build()
    finally:
        torch.set_rng_state(state)


# ============================================================================ channel_l2_importance
_L2_HINT = ("flatten each filter and take its Euclidean length: `weight.flatten(1).norm(dim=1)` "
            "(or `weight.pow(2).sum(dim=(1, 2, 3)).sqrt()`)")


def _l2_diagnose(weight: torch.Tensor, got: torch.Tensor) -> str:
    w = weight.detach().double().flatten(1)
    if _close(got, w.abs().sum(1)):
        return "that is the L1 norm (sum of |w|); the L2 norm is sqrt(sum of w²). " + _L2_HINT
    if _close(got, w.pow(2).sum(1)):
        return "those are squared norms: take the square root. " + _L2_HINT
    if _close(got, w.sum(1)) or _close(got, w.sum(1).abs()):
        return "summing the raw weights lets positive and negative weights cancel. " + _L2_HINT
    if _close(got, w.pow(2).mean(1).sqrt()):
        return "that is the root-MEAN-square; the norm sums the squares (no division by the filter size). " + _L2_HINT
    return _L2_HINT


def _l2_case(label: str, weight: torch.Tensor, expected=None) -> Case:
    def run(fn):
        out = call(fn, weight)
        if isinstance(out, torch.Tensor) and tuple(out.shape) != (weight.shape[0],):
            wrong_dim = out.ndim >= 1 and (tuple(out.shape) == tuple(weight.shape[1:])
                                           or tuple(out.shape) == tuple(weight.shape[1:2]))
            hint = ("you reduced over dim 0 (the output channels): keep dim 0, reduce over dims 1, 2 and 3"
                    if wrong_dim else "one number per OUTPUT channel: reduce over every dimension except dim 0")
            raise CheckFailed(f"scores have shape {tuple(out.shape)}, expected ({weight.shape[0]},)", hint)
        got = _as_scores(out, weight.shape[0])
        want = reference_channel_l2_importance(weight.double()) if expected is None else \
            torch.tensor(expected, dtype=torch.float64)
        expect(_close(got, want), f"got {describe_tensor(got)}, expected {describe_tensor(want)}",
               _l2_diagnose(weight, got))
    return Case(label, run)


def _l2_cases() -> list[Case]:
    w = torch.tensor([[[[3.0, -4.0]]], [[[1.0, 0.0]]], [[[0.0, 0.0]]]])        # (3, 1, 1, 2)
    signs = torch.tensor([[[[1.0, -1.0], [1.0, -1.0]]], [[[2.0, 0.0], [0.0, 0.0]]]])   # (2, 1, 2, 2)
    cases = [
        _l2_case("3 filters of shape (1, 1, 2): [3, -4], [1, 0], [0, 0]", w, [5.0, 1.0, 0.0]),
        _l2_case("a filter whose weights sum to zero", signs, [2.0, 2.0]),
        _l2_case("2 filters x 3 input channels x 1x1",
                 torch.tensor([[1.0, 2.0, 2.0], [0.0, -3.0, 4.0]]).view(2, 3, 1, 1), [3.0, 5.0]),
        _l2_case("an nn.Parameter (requires grad)", nn.Parameter(torch.tensor([[[[6.0, 8.0]]], [[[-1.0, 0.0]]]])),
                 [10.0, 1.0]),
    ]
    g = _gen(31)
    for shape, dtype in [((8, 3, 3, 3), torch.float32), ((16, 8, 3, 3), torch.float64), ((5, 7, 1, 1), torch.float32),
                         ((32, 16, 3, 3), torch.float32), ((4, 2, 5, 5), torch.float64)]:
        cases.append(_l2_case(f"random conv weight {shape} {dtype}", torch.randn(shape, generator=g, dtype=dtype)))
    return cases


def check_channel_l2_importance(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``channel_l2_importance(weight)``: ``(out,)`` L2 norms of the output filters of a conv weight
    ``(out, in, kh, kw)`` (inputs untouched)."""
    return run_check("channel_l2_importance", fn, _l2_cases, hint=_L2_HINT,
                     passed="per output filter, L2 not L1 or squared, float64, Parameters", strict=strict)


# ============================================================================ bn_gamma_importance
_GAMMA_HINT = "the score is |γ| = `bn.weight.abs()` (bn.weight is γ, bn.bias is β), one value per channel"


def _bn_with(gamma, beta=None, mean=None, var=None) -> nn.BatchNorm2d:
    gamma = torch.as_tensor(gamma, dtype=torch.float32)
    c = gamma.numel()
    bn = nn.BatchNorm2d(c)
    with torch.no_grad():
        bn.weight.copy_(gamma)
        bn.bias.copy_(torch.as_tensor(beta if beta is not None else torch.linspace(-1, 1, c)))
        bn.running_mean.copy_(torch.as_tensor(mean if mean is not None else torch.linspace(0.5, -0.5, c)))
        bn.running_var.copy_(torch.as_tensor(var if var is not None else torch.linspace(0.2, 3.0, c)))
    return bn.eval()


def _gamma_case(label: str, bn: nn.BatchNorm2d, expected=None) -> Case:
    def run(fn):
        before = copy.deepcopy(bn.state_dict())
        out = fn(bn)
        expect(all(torch.equal(before[k], v) for k, v in bn.state_dict().items()),
               "your function changed the BatchNorm", "read bn.weight; do not modify it (no abs_() in place)")
        got = _as_scores(out, bn.num_features)
        want = bn.weight.detach().double().abs() if expected is None else torch.tensor(expected, dtype=torch.float64)
        hint = _GAMMA_HINT
        if _close(got, bn.weight.detach().double()):
            hint = "a γ of -2 scales the channel as much as +2: take the absolute value. " + _GAMMA_HINT
        elif _close(got, bn.bias.detach().double()) or _close(got, bn.bias.detach().double().abs()):
            hint = "bn.bias is β, the shift; the scale γ is bn.weight. " + _GAMMA_HINT
        elif _close(got, bn.weight.detach().double() ** 2):
            hint = "γ² ranks the same way but is not |γ|. " + _GAMMA_HINT
        elif _close(got, bn.running_var.detach().double()) or _close(got, bn.running_mean.detach().double().abs()):
            hint = ("the running statistics describe the INPUT of the BatchNorm; the learned scale γ is "
                    "bn.weight. " + _GAMMA_HINT)
        expect(_close(got, want), f"got {describe_tensor(got)}, expected {describe_tensor(want)}", hint)
    return Case(label, run)


def _gamma_cases() -> list[Case]:
    cases = [
        _gamma_case("γ = [0.5, -2, 0, 1.5]", _bn_with([0.5, -2.0, 0.0, 1.5]), [0.5, 2.0, 0.0, 1.5]),
        _gamma_case("all γ negative", _bn_with([-0.1, -3.0, -0.25]), [0.1, 3.0, 0.25]),
        _gamma_case("γ = 1 (a fresh BatchNorm) but β, μ, σ² not trivial", _bn_with([1.0, 1.0, 1.0]),
                    [1.0, 1.0, 1.0]),
    ]
    g = _gen(32)
    for c in (8, 16, 64):
        gamma = torch.randn(c, generator=g)
        cases.append(_gamma_case(f"random BatchNorm2d({c})",
                                 _bn_with(gamma, torch.randn(c, generator=g), torch.randn(c, generator=g),
                                          torch.rand(c, generator=g) + 0.1)))
    return cases


def check_bn_gamma_importance(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``bn_gamma_importance(bn)``: ``|γ|`` (``bn.weight.abs()``), shape ``(C,)``, the BatchNorm untouched."""
    return run_check("bn_gamma_importance", fn, _gamma_cases, hint=_GAMMA_HINT,
                     passed="|γ| not γ, β, γ² or running stats", strict=strict)


# ============================================================================ keep_indices
_KEEP_HINT = ("n_remove = min(round(amount * n), n - 1); sort the scores ascending "
              "(`torch.sort(scores, stable=True).indices`), drop the first n_remove, return the rest sorted "
              "ascending (`.sort().values`)")


def _keep_case(label: str, scores: torch.Tensor, amount: float, expected=None) -> Case:
    def run(fn):
        out = call(fn, scores, amount)
        expect(isinstance(out, torch.Tensor), f"returned {type(out).__name__}, expected a tensor of indices",
               "return torch.Tensor indices, e.g. from torch.sort(...).indices")
        n = scores.numel()
        if out.dtype == torch.bool:
            raise CheckFailed("returned a bool mask, expected the INDICES of the kept channels",
                              "turn a mask into indices with `mask.nonzero().flatten()`")
        expect(not out.is_floating_point() and not out.is_complex(),
               f"returned dtype {out.dtype}, expected integer indices (torch.long)", "indices come from .indices")
        expect(out.ndim == 1, f"returned shape {tuple(out.shape)}, expected a 1-d tensor of indices")
        got = out.detach().long()
        expect(got.numel() == 0 or (int(got.min()) >= 0 and int(got.max()) < n),
               f"indices must lie in [0, {n}), got {describe_tensor(got)}")
        expect(got.unique().numel() == got.numel(), f"repeated indices in {describe_tensor(got)}")
        n_remove = min(int(round(amount * n)), n - 1)
        hint = _KEEP_HINT
        if got.numel() == n_remove and n_remove != n - n_remove:
            hint = "you returned the channels to REMOVE; return the ones to keep. " + _KEEP_HINT
        elif got.numel() == 0:
            hint = "a layer must keep at least one channel: remove at most n - 1. " + _KEEP_HINT
        elif got.numel() == n - int(amount * n) and int(amount * n) != n_remove:
            hint = f"remove round(amount * n) = {n_remove}, not int(amount * n) (int truncates). " + _KEEP_HINT
        expect(got.numel() == n - n_remove,
               f"kept {got.numel()} of {n} channels, expected {n - n_remove} (remove min(round({amount}·{n}), "
               f"{n - 1}) = {n_remove})", hint)
        expect(torch.equal(got, got.sort().values), f"indices {describe_tensor(got)} are not sorted ascending",
               "return them sorted ascending: `kept.sort().values` (surgery keeps channels in their original order)")
        if 0 < got.numel() < n:
            dropped = torch.ones(n, dtype=torch.bool)
            dropped[got] = False
            s = scores.detach().double()
            if float(s[dropped].max()) > float(s[got].min()):
                hint = ("you kept the LOWEST scores: high score = important = kept. " + _KEEP_HINT
                        if float(s[got].max()) <= float(s[dropped].min()) else _KEEP_HINT)
                raise CheckFailed(f"dropped a channel scoring {float(s[dropped].max()):.4g} but kept one scoring "
                                  f"{float(s[got].min()):.4g}", hint)
        if expected is not None:
            expect(torch.equal(got, torch.tensor(expected)),
                   f"kept {describe_tensor(got)}, expected {describe_tensor(torch.tensor(expected))}", _KEEP_HINT)
    return Case(label, run)


def _keep_cases() -> list[Case]:
    s = torch.tensor([0.9, 0.1, 0.5, 0.3, 0.7])
    cases = [
        _keep_case("scores [0.9, 0.1, 0.5, 0.3, 0.7], amount 0.4", s, 0.4, [0, 2, 4]),
        _keep_case("amount 0 keeps everything", s, 0.0, [0, 1, 2, 3, 4]),
        _keep_case("amount 1 still keeps the best channel", s, 1.0, [0]),
        _keep_case("10 channels, amount 0.37 -> round(3.7) = 4 removed", torch.arange(10.0).flip(0), 0.37,
                   [0, 1, 2, 3, 4, 5]),
        _keep_case("unsorted scores, amount 0.5", torch.tensor([0.2, 5.0, 0.1, 3.0, 4.0, 0.3]), 0.5, [1, 3, 4]),
        _keep_case("ties: [1, 1, 1, 1], amount 0.5", torch.ones(4), 0.5),
        _keep_case("float64 scores", torch.tensor([3.0, 1.0, 2.0], dtype=torch.float64), 0.34, [0, 2]),
    ]
    g = _gen(33)
    for n in (16, 32, 64, 7, 100):
        while True:
            amount = round(float(torch.rand((), generator=g)) * 0.9, 2)
            if abs((amount * n) % 1 - 0.5) > 0.02:
                break
        cases.append(_keep_case(f"random scores of {n} channels, amount {amount}", torch.rand(n, generator=g), amount))
    return cases


def check_keep_indices(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``keep_indices(scores, amount)``: sorted integer indices of the ``n - min(round(amount·n), n-1)``
    best-scoring channels (the scores untouched)."""
    return run_check("keep_indices", fn, _keep_cases, hint=_KEEP_HINT,
                     passed="exact counts, never empty, highest scores kept, sorted indices", strict=strict)


# ============================================================================ prune_conv_bn_conv
_SURGERY_HINT = ("build three NEW modules: nn.Conv2d(conv.in_channels, len(keep), ...) holding conv.weight[keep] "
                 "(and conv.bias[keep]), nn.BatchNorm2d(len(keep)) holding γ, β, running_mean and running_var "
                 "at keep, and nn.Conv2d(len(keep), next_conv.out_channels, ...) holding next_conv.weight[:, keep]; "
                 "copy values under torch.no_grad()")


def _random_bn(c: int, g: torch.Generator) -> nn.BatchNorm2d:
    """A BatchNorm in eval mode with non-trivial γ, β, running mean and variance."""
    bn = nn.BatchNorm2d(c, eps=1e-3, momentum=0.2)
    with torch.no_grad():
        bn.weight.copy_((torch.rand(c, generator=g) + 0.5) * torch.randn(c, generator=g).sign())
        bn.bias.copy_(torch.randn(c, generator=g) * 0.5)
        bn.running_mean.copy_(torch.randn(c, generator=g) * 0.5)
        bn.running_var.copy_(torch.rand(c, generator=g) * 1.5 + 0.5)
        bn.num_batches_tracked.fill_(7)
    return bn.eval()


def _surgery_modules(seed: int, c_in: int, c: int, c_out: int, bias: bool, next_bias: bool = True,
                     stride: int = 1, kernel: int = 3, next_kernel: int = 3, dilation: int = 1):
    def build():
        conv = nn.Conv2d(c_in, c, kernel, stride=stride, padding=dilation * (kernel // 2), dilation=dilation,
                         bias=bias)
        nxt = nn.Conv2d(c, c_out, next_kernel, padding=dilation * (next_kernel // 2), dilation=dilation,
                        bias=next_bias)
        return conv.eval(), nxt.eval()
    conv, nxt = _seeded(seed, build)
    return conv, _random_bn(c, _gen(seed + 100)), nxt


def _masked_forward(conv, bn, nxt, keep, x) -> torch.Tensor:
    """conv -> bn -> relu -> next with the removed channels zeroed (filter, bias, γ and β): what surgery must
    match."""
    alive = torch.zeros(conv.out_channels, dtype=torch.bool)
    alive[keep] = True
    with torch.no_grad():
        y = nn.functional.conv2d(x, conv.weight * alive.view(-1, 1, 1, 1),
                                 None if conv.bias is None else conv.bias * alive, conv.stride, conv.padding,
                                 conv.dilation)
        y = nn.functional.batch_norm(y, bn.running_mean, bn.running_var, bn.weight * alive, bn.bias * alive,
                                     False, 0.0, bn.eps)
        return nxt(torch.relu(y))


def _param_check(module: nn.Module, name: str, want: torch.Tensor | None, what: str, hint: str) -> None:
    got = getattr(module, name, None)
    if want is None:
        if got is not None:
            raise CheckFailed(f"{what} is {describe_tensor(got) if isinstance(got, torch.Tensor) else repr(got)}, "
                              "expected None (the original had none)",
                              "create the layer with bias=False when the original has no bias")
        return
    expect(isinstance(got, torch.Tensor), f"{what} is missing ({type(got).__name__})", hint)
    expect(tuple(got.shape) == tuple(want.shape), f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}",
           hint)
    expect(torch.equal(got.detach().to(want.dtype), want),
           f"{what} holds the wrong values: {describe_tensor(got)}, expected {describe_tensor(want)}", hint)


def _surgery_case(label: str, seed: int, c_in: int, c: int, c_out: int, keep, bias: bool = True,
                  next_bias: bool = True, stride: int = 1, kernel: int = 3, next_kernel: int = 3,
                  dilation: int = 1) -> Case:
    def run(fn):
        conv, bn, nxt = _surgery_modules(seed, c_in, c, c_out, bias, next_bias, stride, kernel, next_kernel, dilation)
        keep_t = torch.as_tensor(keep, dtype=torch.long)
        states = [copy.deepcopy(m.state_dict()) for m in (conv, bn, nxt)]
        keep_before = keep_t.clone()
        out = fn(conv, bn, nxt, keep_t)
        for module, state, what in zip((conv, bn, nxt), states, ("conv", "bn", "next_conv")):
            now = module.state_dict()
            unchanged = set(now) == set(state) and all(
                now[k].shape == state[k].shape and torch.equal(now[k], state[k]) for k in state)
            expect(unchanged, f"your function changed the input `{what}`",
                   "build new modules (copy the kept slices into them); never assign to or modify the inputs' "
                   "weights: the caller still uses the original model")
        expect(torch.equal(keep_t, keep_before), "your function changed `keep`")
        length = f" of length {len(out)}" if isinstance(out, (tuple, list)) else ""
        expect(isinstance(out, (tuple, list)) and len(out) == 3,
               f"returned {type(out).__name__}{length}, expected a tuple (new_conv, new_bn, new_next_conv)",
               "return new_conv, new_bn, new_next")
        new_conv, new_bn, new_next = out
        for got, cls, what in ((new_conv, nn.Conv2d, "new conv"), (new_bn, nn.BatchNorm2d, "new bn"),
                               (new_next, nn.Conv2d, "new next_conv")):
            expect(isinstance(got, cls), f"the {what} is a {type(got).__name__}, expected an nn.{cls.__name__}",
                   _SURGERY_HINT)
        expect(new_conv is not conv and new_bn is not bn and new_next is not nxt,
               "returned one of the input modules itself", "return NEW modules; the inputs must stay as they are")
        k = len(keep_t)
        # the weights, slice by slice: precise messages before the end-to-end test
        rows_hint = ("the conv keeps its output filters `conv.weight[keep]` (dim 0); keep lists the channels "
                     "to KEEP, not to drop")
        if isinstance(new_conv.weight, torch.Tensor) and new_conv.weight.shape[0] == c - k and c - k != k:
            rows_hint = "keep lists the channels to KEEP; you kept the others. " + rows_hint
        _param_check(new_conv, "weight", conv.weight.detach()[keep_t], "new conv weight", rows_hint)
        _param_check(new_conv, "bias", None if conv.bias is None else conv.bias.detach()[keep_t], "new conv bias",
                     "a removed filter takes its bias with it: new bias = conv.bias[keep]")
        for name, what in (("weight", "γ (bn.weight)"), ("bias", "β (bn.bias)")):
            _param_check(new_bn, name, getattr(bn, name).detach()[keep_t], f"new bn {what}",
                         "copy γ and β of the kept channels: bn.weight[keep], bn.bias[keep]")
        for name in ("running_mean", "running_var"):
            want = getattr(bn, name)[keep_t]
            got = getattr(new_bn, name, None)
            fresh = want.new_zeros(k) if name == "running_mean" else want.new_ones(k)
            hint = ("copy the running statistics too: in eval mode BatchNorm normalises with running_mean and "
                    "running_var, so a fresh BatchNorm (mean 0, var 1) computes something else")
            if isinstance(got, torch.Tensor) and got.shape == want.shape and torch.equal(got, fresh):
                hint = "the new BatchNorm still has its fresh " + name + ". " + hint
            _param_check(new_bn, name, want, f"new bn {name}", hint)
        expect(float(new_bn.eps) == float(bn.eps) and new_bn.momentum == bn.momentum,
               f"new bn has eps={new_bn.eps}, momentum={new_bn.momentum}; expected eps={bn.eps}, "
               f"momentum={bn.momentum}", "create it with nn.BatchNorm2d(len(keep), eps=bn.eps, momentum=bn.momentum)")
        cols_hint = "next_conv loses INPUT channels: next_conv.weight[:, keep] (dim 1); its outputs stay"
        w_next = getattr(new_next, "weight", None)
        if isinstance(w_next, torch.Tensor) and w_next.ndim == 4 and w_next.shape[0] == k and w_next.shape[1] == c:
            cols_hint = "you sliced next_conv's OUTPUT channels (dim 0). " + cols_hint
        _param_check(new_next, "weight", nxt.weight.detach()[:, keep_t], "new next_conv weight", cols_hint)
        _param_check(new_next, "bias", None if nxt.bias is None else nxt.bias.detach(), "new next_conv bias",
                     "next_conv keeps all its outputs, so its whole bias stays: copy next_conv.bias unchanged")
        # the modules' own description must match their weights (later tools read these attributes)
        for got, ref, what, attrs in (
                (new_conv, conv, "new conv", ("kernel_size", "stride", "padding", "dilation", "groups")),
                (new_next, nxt, "new next_conv", ("kernel_size", "stride", "padding", "dilation", "groups"))):
            for attr in attrs:
                expect(getattr(got, attr) == getattr(ref, attr),
                       f"{what} has {attr}={getattr(got, attr)}, the original {getattr(ref, attr)}",
                       f"pass {attr}=... of the original layer to nn.Conv2d(...)")
        expect((new_conv.in_channels, new_conv.out_channels) == (c_in, k),
               f"new conv says in_channels={new_conv.in_channels}, out_channels={new_conv.out_channels}; "
               f"expected {c_in}, {k}", "create it as nn.Conv2d(conv.in_channels, len(keep), ...), do not only "
                                        "replace .weight")
        expect(new_bn.num_features == k, f"new bn has num_features={new_bn.num_features}, expected {k}",
               "create it as nn.BatchNorm2d(len(keep), ...)")
        expect((new_next.in_channels, new_next.out_channels) == (k, c_out),
               f"new next_conv says in_channels={new_next.in_channels}, out_channels={new_next.out_channels}; "
               f"expected {k}, {c_out}", "create it as nn.Conv2d(len(keep), next_conv.out_channels, ...)")
        for module, what in ((new_conv, "new conv"), (new_bn, "new bn"), (new_next, "new next_conv")):
            for name, p in module.named_parameters():
                expect(p.requires_grad, f"{what}.{name} does not require grad: it could not be fine-tuned",
                       "copy values into the new layer's own parameters under torch.no_grad() "
                       "(`new.weight.copy_(...)`) instead of replacing them with detached tensors")
        # end to end: the smaller chain computes exactly what the masked chain computes
        x = torch.randn(3, c_in, 8, 8, generator=_gen(seed + 200))
        want = _masked_forward(conv, bn, nxt, keep_t, x)
        with torch.no_grad():
            seq = nn.Sequential(new_conv, new_bn, nn.ReLU(), new_next).eval()
            got = seq(x)
        expect(got.shape == want.shape and bool(torch.allclose(got, want, rtol=1e-5, atol=1e-5)),
               f"the pruned chain's output differs from the masked model's by up to "
               f"{(got - want).abs().max().item() if got.shape == want.shape else float('nan'):.3g}",
               _SURGERY_HINT)
    keep_text = str(list(keep)) if len(keep) <= 6 else f"{len(keep)} channels"
    return Case(f"{label} (keep {keep_text})", run)


def _surgery_cases() -> list[Case]:
    cases = [
        _surgery_case("conv 2->4 with bias, BN(4), next conv 4->3", 1, 2, 4, 3, [0, 2]),
        _surgery_case("conv without bias (as in the VGG)", 2, 3, 6, 5, [1, 2, 5], bias=False),
        _surgery_case("keep every channel", 3, 2, 4, 2, [0, 1, 2, 3]),
        _surgery_case("keep one channel", 4, 3, 5, 4, [3]),
        _surgery_case("stride 2, 5x5 kernel, 1x1 next conv without bias", 5, 4, 8, 6, [0, 3, 4, 7], stride=2, kernel=5,
                      next_kernel=1, next_bias=False),
        _surgery_case("keep the last channels only", 6, 3, 6, 3, [3, 4, 5]),
        _surgery_case("dilation 2 in both convs (padding 2)", 7, 3, 5, 4, [0, 2, 3], dilation=2),
    ]
    g = _gen(34)
    for i, (c_in, c, c_out) in enumerate([(3, 16, 8), (8, 32, 16), (16, 12, 20), (4, 9, 9)]):
        k = int(torch.randint(1, c, (), generator=g))
        keep = torch.randperm(c, generator=g)[:k].sort().values.tolist()
        cases.append(_surgery_case(f"random conv {c_in}->{c}, next {c}->{c_out}", 40 + i, c_in, c, c_out, keep,
                                   bias=i % 2 == 0))
    return cases


def check_prune_conv_bn_conv(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``prune_conv_bn_conv(conv, bn, next_conv, keep)``: three new modules with the kept filters, biases,
    BN γ/β/running statistics and next-conv input channels; the chain computes the masked model's output
    (within 1e-5) and the inputs are untouched."""
    return run_check("prune_conv_bn_conv", fn, _surgery_cases, hint=_SURGERY_HINT,
                     passed="weights, biases, BN running stats, next conv's inputs, output = masked model ±1e-5, "
                            "inputs untouched", strict=strict)


# ============================================================================ conv_macs
_MACS_HINT = ("MACs = out_h · out_w · out_channels · (in_channels / groups) · kh · kw, with the OUTPUT size "
              "out = (in + 2·padding - dilation·(k - 1) - 1) // stride + 1 (or run the conv on "
              "torch.zeros(1, in_channels, h, w) and read the output's shape)")


def _macs_diagnose(conv: nn.Conv2d, hw, got: int) -> str:
    (h, w), (kh, kw) = _pair(hw), _pair(conv.kernel_size)
    c_in, c_out, groups = conv.in_channels, conv.out_channels, conv.groups
    right = reference_conv_macs(conv, hw)
    out_hw = right // (c_out * (c_in // groups) * kh * kw)
    if got == h * w * c_out * (c_in // groups) * kh * kw and got != right:
        return "you used the INPUT size; each output position costs one filter application. " + _MACS_HINT
    if got == out_hw * c_out * c_in * kh * kw and got != right:
        return "with groups > 1 each output channel only reads in_channels / groups inputs. " + _MACS_HINT
    if got == out_hw * c_out * (c_in // groups) and got != right:
        return "each output value needs kh · kw multiplications per input channel. " + _MACS_HINT
    if got == conv.weight.numel() and got != right:
        return "that is the number of weights; each weight is used once per output position. " + _MACS_HINT
    (sh, sw), (ph, pw), (dh, _) = _pair(conv.stride), _pair(conv.padding), _pair(conv.dilation)
    per_position = c_out * (c_in // groups) * kh * kw
    no_dilation = ((h + 2 * ph - kh) // sh + 1) * ((w + 2 * pw - kw) // sw + 1) * per_position
    if conv.dilation != (1, 1) and got == no_dilation:
        return ("a dilated kernel spans dilation·(k - 1) + 1 pixels: the output shrinks by dilation·(k - 1), "
                "not k - 1. " + _MACS_HINT)
    square = ((h + 2 * ph - dh * (kh - 1) - 1) // sh + 1) * ((w + 2 * ph - dh * (kw - 1) - 1) // sh + 1) * per_position
    out_0 = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1                       # every pair read at [0]
    if got in (square, out_0 ** 2 * per_position, out_0 ** 2 * c_out * (c_in // groups) * kh * kh):
        return ("stride, padding, dilation and the input are pairs (height, width) that can differ: compute out_h "
                "with the [0] entries and out_w with the [1] entries. " + _MACS_HINT)
    return _MACS_HINT


def _macs_case(label: str, conv: nn.Conv2d, hw, expected: int | None = None) -> Case:
    def run(fn):
        before = copy.deepcopy(conv.state_dict())
        out = fn(conv, hw)
        expect(all(torch.equal(before[k], v) for k, v in conv.state_dict().items()), "your function changed the conv",
               "only read the layer's attributes (in_channels, kernel_size, stride...) or run it on a copy")
        expect(isinstance(out, int) and not isinstance(out, bool),
               f"returned {out!r:.40} ({type(out).__name__}), expected a whole number of type int",
               "return a Python int: products of the layer's int attributes are ints (wrap a tensor or float "
               "in int(...) only if it is a whole number)")
        got = int(out)
        want = reference_conv_macs(conv, hw) if expected is None else expected
        expect(got == want, f"conv_macs({_describe_conv(conv)}, input {tuple(_pair(hw))}) returned {got:,}, "
                            f"expected {want:,}", _macs_diagnose(conv, hw, got))
    return Case(label, run)


def _describe_conv(conv: nn.Conv2d) -> str:
    one = lambda pair: pair[0] if pair[0] == pair[1] else tuple(pair)        # noqa: E731
    extras = [f"stride={one(conv.stride)}" if conv.stride != (1, 1) else "",
              f"padding={one(conv.padding)}" if conv.padding != (0, 0) else "",
              f"groups={conv.groups}" if conv.groups != 1 else "",
              f"dilation={one(conv.dilation)}" if conv.dilation != (1, 1) else ""]
    extra = ", ".join(e for e in extras if e)
    return f"Conv2d({conv.in_channels}, {conv.out_channels}, {one(conv.kernel_size)}{', ' + extra if extra else ''})"


def _macs_cases() -> list[Case]:
    conv = lambda *a, **k: _seeded(0, lambda: nn.Conv2d(*a, **k))     # noqa: E731
    cases = [
        _macs_case("VGG conv1: 3->32, 3x3, padding 1, 32x32 input", conv(3, 32, 3, padding=1, bias=False), (32, 32),
                   32 * 32 * 32 * 3 * 9),
        _macs_case("1x1 conv 16->8 on 4x4", conv(16, 8, 1), (4, 4), 4 * 4 * 8 * 16),
        _macs_case("3x3 conv without padding: 10x10 -> 8x8", conv(2, 4, 3), (10, 10), 8 * 8 * 4 * 2 * 9),
        _macs_case("stride 2 halves the output: 3x3, padding 1, 16x16 -> 8x8", conv(16, 32, 3, stride=2, padding=1),
                   (16, 16), 8 * 8 * 32 * 16 * 9),
        _macs_case("ResNet shortcut: 1x1, stride 2, 32x32 -> 16x16", conv(16, 32, 1, stride=2, bias=False), (32, 32),
                   16 * 16 * 32 * 16),
        _macs_case("groups=2: each output reads half the inputs", conv(8, 4, 3, padding=1, groups=2), (6, 6),
                   6 * 6 * 4 * 4 * 9),
        _macs_case("non-square 5x3 kernel on a 12x7 input", conv(3, 5, (5, 3)), (12, 7), 8 * 5 * 5 * 3 * 15),
        _macs_case("a pruned layer: 128->77 channels on 8x8", conv(128, 77, 3, padding=1), (8, 8),
                   8 * 8 * 77 * 128 * 9),
        _macs_case("dilation 2: a 3x3 kernel spans 5x5, padding 2 keeps 10x10", conv(4, 6, 3, padding=2, dilation=2),
                   (10, 10), 10 * 10 * 6 * 4 * 9),
        _macs_case("dilation 3 without padding: 11x11 -> 5x5", conv(2, 3, 3, dilation=3), (11, 11), 5 * 5 * 3 * 2 * 9),
        _macs_case("dilation (2, 3), padding (1, 0) on 9x12 -> 7x6", conv(3, 4, 3, padding=(1, 0), dilation=(2, 3)),
                   (9, 12), 7 * 6 * 4 * 3 * 9),
        _macs_case("stride (2, 1), padding (1, 0): 8x8 -> 4x6", conv(5, 7, 3, stride=(2, 1), padding=(1, 0)), (8, 8),
                   4 * 6 * 7 * 5 * 9),
        _macs_case("kernel (1, 3), stride (1, 2), padding (0, 1) on 6x10 -> 6x5",
                   conv(2, 2, (1, 3), stride=(1, 2), padding=(0, 1)), (6, 10), 6 * 5 * 2 * 2 * 3),
    ]
    g = _gen(35)
    for i in range(6):
        c_in, c_out = (int(v) for v in torch.randint(1, 40, (2,), generator=g))
        k = int(torch.randint(1, 6, (), generator=g))
        stride, padding = int(torch.randint(1, 3, (), generator=g)), int(torch.randint(0, k // 2 + 1, (), generator=g))
        h = int(torch.randint(k + 2, 33, (), generator=g))
        cases.append(_macs_case(f"random conv {c_in}->{c_out}, k={k}, stride {stride}, padding {padding}, {h}x{h}",
                                conv(c_in, c_out, k, stride=stride, padding=padding), (h, h)))
    return cases


def check_conv_macs(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``conv_macs(conv, input_hw)``: the multiply-accumulates of one image through ``conv``,
    ``out_h · out_w · c_out · (c_in / groups) · kh · kw`` (output size from stride, padding, kernel)."""
    return run_check("conv_macs", fn, _macs_cases, hint=_MACS_HINT,
                     passed="output size from stride/padding/dilation (also non-square), kernel, groups, "
                            "1x1 shortcuts, an int", strict=strict)


# ============================================================================ sensitivity_scan
_SCAN_HINT = ("for each group of surgery.dependency_groups(model) and each amount: pruned = "
              "surgery.prune_channels(model, {group: amount}) (always from the ORIGINAL model), pruned.eval(), "
              "accuracy = (pruned(images).argmax(1) == labels).float().mean().item(); return {group: [accuracies]}")


def _tiny_vgg(seed: int, channels=(6, "M", 8, "M", 10), num_classes: int = 4) -> nn.Module:
    """A small VGG with random weights and non-trivial BatchNorm statistics, in eval mode."""
    from ..models import VGG

    model = _seeded(seed, lambda: VGG(channels=channels, num_classes=num_classes))
    g = _gen(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) * 1.5 + 0.1)
                m.bias.copy_(torch.randn(c, generator=g) * 0.3)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    return model.eval()


def _labelled_images(model: nn.Module, shape, n: int, seed: int, noise: float = 0.3):
    """Random images labelled mostly with the model's own predictions (dense accuracy about 1 - noise).

    The classifier's bias is first centred on these images' features: a random network would otherwise
    predict one class for every image, and pruning could not change its accuracy.
    """
    g = _gen(seed)
    x = torch.randn(n, *shape, generator=g) + 2 * torch.randn(n, shape[0], *[1] * (len(shape) - 1), generator=g)
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    features = []
    hook = last.register_forward_hook(lambda mod, inputs, output: features.append(inputs[0]))
    with torch.no_grad():
        model.eval()(x)
        hook.remove()
        last.bias.copy_(-(features[0] @ last.weight.T).mean(0))
        y = model(x).argmax(1)
    flip = torch.rand(n, generator=g) < noise
    y[flip] = torch.randint(0, int(y.max()) + 1, (int(flip.sum()),), generator=g)
    return x, y


def _scan_diagnose(model, amounts, x, y, got: dict, want: dict) -> str:
    """Name the mistake by re-running the scan the wrong ways learners write it."""
    flat = lambda d: [v for k in want for v in d[k]]           # noqa: E731
    g, w = flat(got), flat(want)
    if all(abs(a - (1 - b)) < 1e-6 for a, b in zip(g, w)):
        return "those are error rates; return the ACCURACY (fraction of correct predictions). " + _SCAN_HINT
    if all(abs(a - 100 * b) < 1e-4 for a, b in zip(g, w)):
        return "accuracy as a fraction in [0, 1], not a percentage. " + _SCAN_HINT
    dense = (model.eval()(x).argmax(1) == y).float().mean().item()
    if all(abs(a - (dense - b)) < 1e-6 for a, b in zip(g, w)):
        return "that is the accuracy DROP; return the accuracy itself. " + _SCAN_HINT
    has_bn = all(any(isinstance(model.get_submodule(m), nn.BatchNorm2d) for m in grp.norms)
                 for grp in dependency_groups(model))
    bn = {n: [(prune_channels(model, {n: a}, importance="bn").eval()(x).argmax(1) == y).float().mean().item()
              for a in amounts] for n in want} if has_bn else None
    if bn is not None and all(abs(a - b) < 1e-6 for a, b in zip(g, flat(bn))):
        return "rank the channels by filter L2 norm (prune_channels' default importance), not by |γ|. " + _SCAN_HINT
    return ("each entry must be the accuracy with ONE group pruned and every other group whole: prune a fresh "
            "copy of the original model each time, and evaluate in eval mode (BatchNorm must use its running "
            "statistics, not the batch's). " + _SCAN_HINT)


def _scan_case(label: str, build: Callable[[], nn.Module], shape, amounts, n: int, seed: int,
               train_mode: bool = False) -> Case:
    def run(fn):
        model = build()
        x, y = _labelled_images(model, shape, n, seed)
        model.train(train_mode)
        state = copy.deepcopy(model.state_dict())
        with torch.no_grad():
            want = reference_sensitivity_scan(model, amounts, x, y)
        model.train(train_mode)
        x_given, y_given = x.clone(), y.clone()
        out = fn(model, list(amounts), x_given, y_given)
        expect(torch.equal(x_given, x) and torch.equal(y_given, y), "your function changed the images or labels",
               "only read them")
        now = model.state_dict()
        expect(all(torch.equal(state[k], now[k]) for k in state),
               "your function changed the model (its weights or BatchNorm running statistics)",
               "prune_channels returns a new model; never prune or run the original in place (a forward pass in "
               "train mode updates the BatchNorm statistics)")
        expect(isinstance(out, dict), f"returned {type(out).__name__}, expected a dict {{group name: [accuracy, ...]}}",
               _SCAN_HINT)
        expect(list(out) == list(want), f"returned the groups {list(out)}, expected {list(want)}",
               "one entry per group of surgery.dependency_groups(model), named g.name, in that order")
        for name, accs in out.items():
            expect(isinstance(accs, (list, tuple)) and len(accs) == len(amounts),
                   f"group {name!r}: got {accs!r:.60}, expected a list of {len(amounts)} accuracies (one per amount)",
                   _SCAN_HINT)
            expect(all(isinstance(a, float) for a in accs),
                   f"group {name!r}: accuracies of type {sorted({type(a).__name__ for a in accs})}, expected Python "
                   "floats", "turn a 0-d tensor into a float with .item()")
        with torch.no_grad():
            bad = [(name, i) for name in want for i in range(len(amounts)) if abs(out[name][i] - want[name][i]) > 1e-6]
            if bad:
                name, i = bad[0]
                raise CheckFailed(f"group {name!r} at amount {amounts[i]}: accuracy {out[name][i]:.4g}, expected "
                                  f"{want[name][i]:.4g}", _scan_diagnose(model.eval(), amounts, x, y, out, want))
    return Case(label, run)


def _scan_cases() -> list[Case]:
    from ..models import LeNet5, LeNet300

    return [
        _scan_case("tiny VGG (3 groups), amounts [0, 0.5, 0.75], 64 images", lambda: _tiny_vgg(51), (3, 12, 12),
                   [0.0, 0.5, 0.75], 64, 52),
        _scan_case("the same VGG handed over in TRAIN mode", lambda: _tiny_vgg(53), (3, 12, 12), [0.25, 0.9], 48, 54,
                   train_mode=True),
        _scan_case("LeNet-300-100 (groups fc1, fc2), amounts [0.5, 0.9, 0.99]", lambda: _seeded(55, LeNet300).eval(),
                   (1, 28, 28), [0.5, 0.9, 0.99], 40, 56),
        _scan_case("a VGG with 4 groups, a single amount", lambda: _tiny_vgg(57, (4, 6, "M", 8, 5)), (3, 8, 8),
                   [0.6], 32, 58),
        _scan_case("amount 0 only: every entry is the dense accuracy", lambda: _tiny_vgg(59), (3, 12, 12), [0.0],
                   32, 60),
        _scan_case("LeNet-5: conv groups without BatchNorm, then a Linear group", lambda: _seeded(61, LeNet5).eval(),
                   (1, 28, 28), [0.3, 0.8], 24, 62),
    ]


def check_sensitivity_scan(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``sensitivity_scan(model, amounts, images, labels)``: ``{group: [accuracy, ...]}`` with one group at
    a time pruned from the original model (filter L2), evaluated in eval mode, Python floats; model untouched."""
    return run_check("sensitivity_scan", fn, _scan_cases, hint=_SCAN_HINT,
                     passed="one group at a time from the original model, eval mode, accuracies as floats, "
                            "model untouched", strict=strict)


# ============================================================================ plan_for_mac_budget
_PLAN_HINT = ("drop[g][i] = dense_accuracy - scan[g][i]; for each tolerance t in sorted(set of all drops): plan = "
              "{g: the LARGEST amount with drop <= t (0.0 if none)}; count macs = measure.count_macs("
              "surgery.prune_channels(model, plan), input_shape)['dense']; return the first plan with macs <= "
              "mac_budget; raise ValueError if none fits")


def _plan_variants(model, amounts, scan, dense, budget, shape) -> dict[str, dict | None]:
    """Plans that common mistakes return, to name the one a learner made."""
    def search(ts, pick=max, fits=lambda m: m <= budget, drop=lambda acc: dense - acc):
        for t in ts:
            plan = {g: pick([a for a, acc in zip(amounts, accs) if drop(acc) <= t], default=0.0)
                    for g, accs in scan.items()}
            if fits(count_macs(prune_channels(model, plan), tuple(shape))["dense"]):
                return plan
        return None
    drops = sorted({dense - acc for accs in scan.values() for acc in accs})
    dense_macs = count_macs(model, tuple(shape))["dense"]
    estimate = lambda plan: dense_macs * (1 - sum(plan.values()) / len(plan)) ** 2   # noqa: E731
    return {
        "the SMALLEST tolerance that fits is wanted: try the drops in ascending order": search(drops[::-1]),
        "each group gets the LARGEST amount within the tolerance, not the smallest": search(drops, pick=min),
        "the budget is met when macs <= mac_budget (equal is allowed)": search(drops, fits=lambda m: m < budget),
        "compare the accuracy DROP (dense_accuracy - accuracy) with the tolerance, not the accuracy itself":
            search(sorted({acc for accs in scan.values() for acc in accs}), drop=lambda acc: acc),
        "count the MACs of the pruned model (measure.count_macs of surgery.prune_channels(model, plan)); "
        "(1 - p)² is only an estimate": _estimated_search(drops, amounts, scan, dense, budget, estimate),
    }


def _estimated_search(drops, amounts, scan, dense, budget, estimate):
    for t in drops:
        plan = {g: max([a for a, acc in zip(amounts, accs) if dense - acc <= t], default=0.0)
                for g, accs in scan.items()}
        if estimate(plan) <= budget:
            return plan
    return None


def _plan_case(label: str, build: Callable[[], nn.Module], amounts, scan, dense: float, budget_of, shape,
               expect_error: bool = False) -> Case:
    def run(fn):
        model = build()
        budget = int(budget_of(model))
        state = copy.deepcopy(model.state_dict())
        scan_before = copy.deepcopy(scan)
        if expect_error:
            try:
                out = fn(model, list(amounts), copy.deepcopy(scan), dense, budget, tuple(shape))
            except ValueError:
                return
            raise CheckFailed(f"returned {out!r:.80} although no plan from this scan fits {budget:,} MACs",
                              "when no tolerance reaches the budget, `raise ValueError(...)` (a plan over budget "
                              "would be silently wrong)")
        given = copy.deepcopy(scan)
        out = fn(model, list(amounts), given, dense, budget, tuple(shape))
        expect(given == scan_before, "your function changed the scan it was given", "read the scan; do not modify it")
        now = model.state_dict()
        expect(all(torch.equal(state[k], now[k]) for k in state), "your function changed the model",
               "prune_channels returns a new model; leave the original alone")
        expect(isinstance(out, dict), f"returned {type(out).__name__}, expected a dict {{group: amount}}", _PLAN_HINT)
        expect(set(out) == set(scan), f"the plan names the groups {sorted(out)}, expected every group of the scan "
                                      f"{sorted(scan)}", "give every group of the scan an amount (0.0 = not pruned)")
        for g, a in out.items():
            expect(isinstance(a, (int, float)) and not isinstance(a, bool),
                   f"group {g!r}: amount {a!r:.40} ({type(a).__name__}), expected a number", _PLAN_HINT)
        macs = count_macs(prune_channels(model, {g: float(a) for g, a in out.items()}), tuple(shape))["dense"]
        expect(macs <= budget, f"your plan {out} leaves {macs:,} MACs, over the budget of {budget:,}",
               "count the MACs of the pruned model itself (measure.count_macs), do not estimate them")
        want = reference_plan_for_mac_budget(model, amounts, scan, dense, budget, shape)
        if any(abs(float(out[g]) - want[g]) > 1e-12 for g in want):
            hint = _PLAN_HINT
            for mistake, plan in _plan_variants(model, amounts, scan, dense, budget, shape).items():
                if plan is not None and all(abs(float(out[g]) - plan[g]) < 1e-12 for g in plan):
                    hint = mistake + ". " + _PLAN_HINT
                    break
            raise CheckFailed(f"plan {out}, expected {want} (budget {budget:,} MACs)", hint)
    return Case(label, run)


def _plan_cases() -> list[Case]:
    amounts = [0.25, 0.5, 0.75]
    vgg = lambda: _tiny_vgg(61)                                    # noqa: E731   groups conv1, conv2, conv3
    scan = {"conv1": [60 / 64, 40 / 64, 20 / 64], "conv2": [63 / 64, 62 / 64, 50 / 64],
            "conv3": [64 / 64, 61 / 64, 58 / 64]}
    shape = (3, 12, 12)
    macs_of = lambda plan: lambda m: count_macs(prune_channels(m, plan), shape)["dense"]   # noqa: E731
    vgg4 = lambda: _tiny_vgg(62, (4, 6, "M", 8, 5))               # noqa: E731   conv1..conv4
    scan4 = {"conv1": [0.5, 0.5, 0.25], "conv2": [0.875, 0.75, 0.5], "conv3": [1.0, 1.0, 0.625],
             "conv4": [0.9375, 0.8125, 0.5]}
    return [
        _plan_case("budget = the dense MACs: the smallest tolerance already fits", vgg, amounts, scan, 1.0,
                   lambda m: count_macs(m, shape)["dense"], shape),
        _plan_case("budget exactly equal to a plan's MACs (<= is allowed)", vgg, amounts, scan, 1.0,
                   macs_of({"conv1": 0.0, "conv2": 0.5, "conv3": 0.5}), shape),
        _plan_case("budget one MAC below that plan", vgg, amounts, scan, 1.0,
                   lambda m: macs_of({"conv1": 0.0, "conv2": 0.5, "conv3": 0.5})(m) - 1, shape),
        _plan_case("half the dense MACs", vgg, amounts, scan, 1.0, lambda m: count_macs(m, shape)["dense"] // 2, shape),
        _plan_case("4 groups, accuracy that RISES when pruning (negative drops), 60 % of the MACs", vgg4, amounts,
                   scan4, 0.9375, lambda m: 0.6 * count_macs(m, (3, 8, 8))["dense"], (3, 8, 8)),
        _plan_case("4 groups, 35 % of the MACs", vgg4, amounts, scan4, 0.9375,
                   lambda m: 0.35 * count_macs(m, (3, 8, 8))["dense"], (3, 8, 8)),
        _plan_case("a budget no plan reaches raises ValueError", vgg, amounts, scan, 1.0,
                   lambda m: count_macs(m, shape)["dense"] // 50, shape, expect_error=True),
    ]


def check_plan_for_mac_budget(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``plan_for_mac_budget(model, amounts, scan, dense_accuracy, mac_budget, input_shape)``: the plan of the
    smallest tolerance whose counted MACs fit the budget (largest amount within tolerance per group); ValueError
    when none fits; model and scan untouched."""
    return run_check("plan_for_mac_budget", fn, _plan_cases, hint=_PLAN_HINT,
                     passed="smallest tolerance, largest amount per group, counted MACs <= budget (equality too), "
                            "negative drops, ValueError", strict=strict)


# ============================================================================ prune_residual_group
_RES_HINT = ("score = Σ over g.producers of the filter L2 norms; keep = keep_indices(score, amount); on a deep copy "
             "replace every producer by a layer with the kept OUTPUT rows (and bias entries), every norm by a "
             "BatchNorm with the kept γ, β, running mean and var, every consumer by a layer with the kept INPUT "
             "channels (a Linear: columns c*spatial ... c*spatial+spatial-1 of each kept channel c)")


def _tiny_resnet(seed: int) -> nn.Module:
    from ..models import ResNet20

    model = _seeded(seed, lambda: ResNet20(widths=(4, 6, 8), blocks_per_stage=2, num_classes=5))
    g = _gen(seed + 1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=g) + 0.3)
                m.bias.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
    return model.eval()


def _kept_rows(old: torch.Tensor, new: torch.Tensor) -> list[int] | None:
    """Which rows of ``old`` the learner's ``new`` weight kept (by matching rows), or None."""
    flat_old, flat_new = old.detach().flatten(1), new.detach().flatten(1)
    if flat_new.shape[1] != flat_old.shape[1]:
        return None
    rows = []
    for r in flat_new:
        hits = (flat_old == r).all(1).nonzero().flatten()
        if hits.numel() != 1:
            return None
        rows.append(int(hits))
    return rows


def _res_diagnose(model, group, amount, out) -> str:
    g = {grp.name: grp for grp in dependency_groups(model)}[group]
    norms = [reference_channel_l2_importance(model.get_submodule(p).weight).double() for p in g.producers]
    first = g.producers[0]
    try:
        rows = _kept_rows(model.get_submodule(first).weight, out.get_submodule(first).weight)
    except (AttributeError, torch.nn.modules.module.ModuleAttributeError if hasattr(torch.nn.modules.module,
                                                                                 "ModuleAttributeError") else
            AttributeError):
        rows = None
    if rows is not None and len(g.producers) > 1:
        for scores, mistake in ((norms[0], "you scored only the first producer"),
                                (norms[-1], "you scored only the last producer"),
                                (torch.stack(norms).max(0).values, "that is the max over the producers")):
            if sorted(rows) == reference_keep_indices(scores, amount).tolist():
                return f"{mistake}; every producer adds into the channel: SUM their norms. " + _RES_HINT
    if rows is not None:
        total = sum(norms)
        n_remove = min(int(round(amount * g.size)), g.size - 1)
        if sorted(rows) == torch.sort(total, stable=True).indices[:g.size - n_remove].sort().values.tolist():
            return "you kept the LOWEST scores: high score = important = kept. " + _RES_HINT
        if sorted(rows) != rows:
            return "keep the kept channels in their original order (sorted indices). " + _RES_HINT
    return _RES_HINT


def _res_case(label: str, build: Callable[[], nn.Module], group: str, amount: float, shape) -> Case:
    def run(fn):
        model = build()
        state = copy.deepcopy(model.state_dict())
        x = torch.randn(3, *shape, generator=_gen(70))
        out = fn(model, group, amount)
        now = model.state_dict()
        expect(set(now) == set(state) and all(now[k].shape == state[k].shape and torch.equal(now[k], state[k])
                                              for k in state),
               "your function changed the input model", "work on `copy.deepcopy(model)`; the caller keeps the original")
        expect(isinstance(out, nn.Module), f"returned {type(out).__name__}, expected the new, smaller model",
               "return the pruned copy")
        expect(out is not model, "returned the input model itself", "work on and return `copy.deepcopy(model)`")
        found = {g.name: g for g in dependency_groups(model)}[group]
        scores = sum(reference_channel_l2_importance(model.get_submodule(p).weight) for p in found.producers)
        keep = reference_keep_indices(scores, amount)
        want_model = shrink(model, {group: keep})
        want, got = want_model.state_dict(), out.state_dict()
        missing = sorted(set(want) - set(got))
        expect(not missing, f"the new model lacks {missing[:3]}", "replace layers; do not delete them")
        for key, ref in want.items():
            mine = got[key]
            if mine.shape != ref.shape:
                layer = key.rpartition(".")[0]
                if layer in found.norms:
                    hint = "every BatchNorm of the group loses the removed channels (γ, β, running mean and var). "
                elif layer in {c.name for c in found.consumers}:
                    hint = (f"{layer} READS the group's channels: remove its INPUT channels (dim 1), at every "
                            "consumer of the group (the next blocks, a shortcut conv, the classifier). ")
                elif layer in found.producers:
                    hint = f"{layer} PRODUCES the group's channels: remove its OUTPUT rows (dim 0). "
                else:
                    hint = f"{layer} is not part of group {group!r}: leave it as it was. "
                raise CheckFailed(f"{key} has shape {tuple(mine.shape)}, expected {tuple(ref.shape)}", hint + _RES_HINT)
        wrong = [k for k in want if not torch.equal(got[k].to(want[k].dtype), want[k])]
        if wrong:
            key = wrong[0]
            if "running" in key:
                hint = ("copy the running statistics of the kept channels too (eval mode normalises with "
                        "running_mean and running_var). " + _RES_HINT)
            else:
                hint = _res_diagnose(model, group, amount, out)
            raise CheckFailed(f"{key} holds the wrong values ({describe_tensor(got[key])}, expected "
                              f"{describe_tensor(want[key])})", hint)
        for name, m in out.named_modules():
            sizes = {"in_channels": 1, "out_channels": 0, "in_features": 1, "out_features": 0}
            for attr, dim in sizes.items():
                if hasattr(m, attr) and isinstance(getattr(m, "weight", None), torch.Tensor):
                    expect(getattr(m, attr) == m.weight.shape[dim],
                           f"{name}.{attr} = {getattr(m, attr)} but its weight has shape {tuple(m.weight.shape)}",
                           "build new layers of the new size (nn.Conv2d(...)/nn.Linear(...)) rather than only "
                           "swapping the weight tensors: tools read these attributes")
            if isinstance(m, nn.BatchNorm2d):
                expect(m.num_features == m.weight.shape[0], f"{name}.num_features = {m.num_features} but γ has "
                       f"{m.weight.shape[0]} entries", "create it as nn.BatchNorm2d(len(keep), eps=..., momentum=...)")
        masked = channel_masks_as_zeros(model, {group: keep}).eval()
        with torch.no_grad():
            y_out, y_masked = out.eval()(x), masked(x)
        expect(torch.allclose(y_out, y_masked, rtol=1e-5, atol=1e-5),
               f"the pruned model's output differs from the masked model's by {(y_out - y_masked).abs().max():.3g}",
               _RES_HINT)
        for name, p in out.named_parameters():
            expect(p.requires_grad, f"{name} does not require grad: the pruned model could not be fine-tuned",
                   "copy values into new parameters under torch.no_grad() instead of detached tensors")
    return Case(f"{label} (group {group!r}, amount {amount})", run)


def _res_cases() -> list[Case]:
    from ..models import LeNet5

    resnet = lambda: _tiny_resnet(71)                              # noqa: E731
    lenet5 = lambda: _seeded(72, LeNet5).eval()                    # noqa: E731
    return [
        _res_case("ResNet, block-internal group (a plain chain)", resnet, "stage1.0.conv1", 0.5, (3, 8, 8)),
        _res_case("ResNet, stage 1: stem conv + 2 residual convs, read by the next stage and its shortcut", resnet,
                  "stage1", 0.5, (3, 8, 8)),
        _res_case("ResNet, stage 2: a 1x1 shortcut conv among the producers", resnet, "stage2", 0.34, (3, 8, 8)),
        _res_case("ResNet, stage 3: read by the Linear classifier", resnet, "stage3", 0.25, (3, 8, 8)),
        _res_case("amount 1.0 still keeps one channel", resnet, "stage2", 1.0, (3, 8, 8)),
        _res_case("LeNet-5 conv1 (conv biases, no BatchNorm)", lenet5, "conv1", 0.3, (1, 28, 28)),
        _res_case("LeNet-5 conv2, read by fc1 after Flatten (16 columns per channel)", lenet5, "conv2", 0.5,
                  (1, 28, 28)),
    ]


def check_prune_residual_group(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``prune_residual_group(model, group, amount)``: a new model equal to surgery.shrink with the channels of
    the lowest summed producer norms removed from every producer, norm and consumer; same function as the masked
    model; sizes consistent; the input model untouched."""
    return run_check("prune_residual_group", fn, _res_cases, hint=_RES_HINT,
                     passed="summed group scores, producers/norms/consumers incl. shortcut and classifier, "
                            "Flatten columns, output = masked model, input untouched", strict=strict)
