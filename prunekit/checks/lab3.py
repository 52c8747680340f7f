"""Checks and reference implementations for Lab 3 (structured pruning: channels and filters).

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
``residual_group_importance``  ``([weight, ...]) -> (C,)``: Σ over the group's  :func:`check_residual_group_importance`
                               producers of ``‖W_m[c]‖₂``
=============================  ==============================================  ====================================

Each check prints one line and returns a :class:`~prunekit.checks.core.CheckResult`; the
``reference_*`` functions are what :func:`~prunekit.checks.core.use_or_reference` falls back to.
"""
from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
from torch import nn

from ..masks import check_sparsity
from .core import Case, CheckFailed, CheckResult, call, describe_tensor, expect, run_check

__all__ = [
    "check_channel_l2_importance", "check_bn_gamma_importance", "check_keep_indices",
    "check_prune_conv_bn_conv", "check_conv_macs", "check_residual_group_importance",
    "reference_channel_l2_importance", "reference_bn_gamma_importance", "reference_keep_indices",
    "reference_prune_conv_bn_conv", "reference_conv_macs", "reference_residual_group_importance",
]


# ============================================================================ reference implementations
def reference_channel_l2_importance(weight: torch.Tensor) -> torch.Tensor:
    """``score[c] = ‖W[c]‖₂ = sqrt(Σ_{i,y,x} W[c,i,y,x]²)``: one L2 norm per output filter, shape (out,)
    (Li et al. 2017 rank filters by this norm with p = 1; p = 2 is the common variant)."""
    return weight.detach().flatten(1).norm(p=2, dim=1)


def reference_bn_gamma_importance(bn: nn.BatchNorm2d) -> torch.Tensor:
    """``score[c] = |γ_c|``, the BatchNorm scale of each channel (Liu et al. 2017, Network Slimming)."""
    return bn.weight.detach().abs()


def reference_keep_indices(scores: torch.Tensor, amount: float) -> torch.Tensor:
    """Sorted int64 indices of the channels to keep: drop the ``min(round(amount*n), n-1)`` lowest scores
    (a layer never loses all its channels); among equal scores the lower index is dropped first."""
    amount = check_sparsity(amount, "amount")
    n = scores.numel()
    n_remove = min(int(round(amount * n)), n - 1)
    order = torch.sort(scores.detach().flatten(), stable=True).indices     # ascending, ties by index
    return order[n_remove:].sort().values


@torch.no_grad()
def reference_prune_conv_bn_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d, next_conv: nn.Conv2d,
                                 keep: torch.Tensor) -> tuple[nn.Conv2d, nn.BatchNorm2d, nn.Conv2d]:
    """Three NEW modules keeping output channels ``keep`` of ``conv -> bn -> ReLU -> next_conv``.

    ``conv``: weight rows and bias entries ``keep``; ``bn``: γ, β, running mean and variance at ``keep``;
    ``next_conv``: input channels (dim 1 of its weight) ``keep``, its bias whole. The inputs are untouched.
    """
    keep = torch.as_tensor(keep, dtype=torch.long)
    new_conv = nn.Conv2d(conv.in_channels, len(keep), conv.kernel_size, stride=conv.stride, padding=conv.padding,
                         dilation=conv.dilation, bias=conv.bias is not None)
    new_conv.weight.copy_(conv.weight[keep])
    if conv.bias is not None:
        new_conv.bias.copy_(conv.bias[keep])
    new_bn = nn.BatchNorm2d(len(keep), eps=bn.eps, momentum=bn.momentum)
    new_bn.weight.copy_(bn.weight[keep])
    new_bn.bias.copy_(bn.bias[keep])
    new_bn.running_mean.copy_(bn.running_mean[keep])
    new_bn.running_var.copy_(bn.running_var[keep])
    new_bn.num_batches_tracked.copy_(bn.num_batches_tracked)
    new_next = nn.Conv2d(len(keep), next_conv.out_channels, next_conv.kernel_size, stride=next_conv.stride,
                         padding=next_conv.padding, dilation=next_conv.dilation, bias=next_conv.bias is not None)
    new_next.weight.copy_(next_conv.weight[:, keep])
    if next_conv.bias is not None:
        new_next.bias.copy_(next_conv.bias)
    for old, new in ((conv, new_conv), (bn, new_bn), (next_conv, new_next)):
        new.train(old.training)
    return new_conv, new_bn, new_next


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


def reference_conv_macs(conv: nn.Conv2d, input_hw: tuple[int, int]) -> int:
    """Multiply-accumulates of one image through ``conv``: ``out_h · out_w · c_out · (c_in / groups) · kh · kw``,
    with ``out = floor((in + 2·padding - dilation·(k - 1) - 1) / stride) + 1`` in each direction."""
    (h, w), (kh, kw) = _pair(input_hw), _pair(conv.kernel_size)
    (sh, sw), (ph, pw), (dh, dw) = _pair(conv.stride), _pair(conv.padding), _pair(conv.dilation)
    out_h = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return int(out_h * out_w * conv.out_channels * (conv.in_channels // conv.groups) * kh * kw)


def reference_residual_group_importance(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """``score[c] = Σ_m ‖W_m[c]‖₂`` over every producer ``m`` of a dependency group (all add into channel c)."""
    return sum(reference_channel_l2_importance(w) for w in weights)


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
        _gamma_case("γ = 1 (a fresh BatchNorm) but β, μ, σ² not trivial", _bn_with([1.0, 1.0, 1.0]), [1.0, 1.0, 1.0]),
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
                     stride: int = 1, kernel: int = 3, next_kernel: int = 3):
    def build():
        conv = nn.Conv2d(c_in, c, kernel, stride=stride, padding=kernel // 2, bias=bias)
        nxt = nn.Conv2d(c, c_out, next_kernel, padding=next_kernel // 2, bias=next_bias)
        return conv.eval(), nxt.eval()
    conv, nxt = _seeded(seed, build)
    return conv, _random_bn(c, _gen(seed + 100)), nxt


def _masked_forward(conv, bn, nxt, keep, x) -> torch.Tensor:
    """conv -> bn -> relu -> next with the removed channels zeroed (filter, bias, γ and β): what surgery must match."""
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
                  next_bias: bool = True, stride: int = 1, kernel: int = 3, next_kernel: int = 3) -> Case:
    def run(fn):
        conv, bn, nxt = _surgery_modules(seed, c_in, c, c_out, bias, next_bias, stride, kernel, next_kernel)
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
    return _MACS_HINT


def _macs_case(label: str, conv: nn.Conv2d, hw, expected: int | None = None) -> Case:
    def run(fn):
        before = copy.deepcopy(conv.state_dict())
        out = fn(conv, hw)
        expect(all(torch.equal(before[k], v) for k, v in conv.state_dict().items()), "your function changed the conv",
               "only read the layer's attributes (in_channels, kernel_size, stride...) or run it on a copy")
        whole_tensor = isinstance(out, torch.Tensor) and out.numel() == 1 and not out.is_floating_point()
        expect((isinstance(out, int) and not isinstance(out, bool)) or whole_tensor
               or (isinstance(out, float) and out == int(out)),
               f"returned {out!r:.40} ({type(out).__name__}), expected a whole number", "return an int")
        got = int(out)
        want = reference_conv_macs(conv, hw) if expected is None else expected
        expect(got == want, f"conv_macs({_describe_conv(conv)}, input {tuple(_pair(hw))}) returned {got:,}, "
                            f"expected {want:,}", _macs_diagnose(conv, hw, got))
    return Case(label, run)


def _describe_conv(conv: nn.Conv2d) -> str:
    extras = [f"stride={conv.stride[0]}" if conv.stride != (1, 1) else "",
              f"padding={conv.padding[0]}" if conv.padding != (0, 0) else "",
              f"groups={conv.groups}" if conv.groups != 1 else "",
              f"dilation={conv.dilation[0]}" if conv.dilation != (1, 1) else ""]
    extra = ", ".join(e for e in extras if e)
    return f"Conv2d({conv.in_channels}, {conv.out_channels}, {conv.kernel_size[0]}{', ' + extra if extra else ''})"


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
                     passed="output size from stride/padding, kernel, groups, 1x1 shortcuts", strict=strict)


# ============================================================================ residual_group_importance
_GROUP_HINT = ("score each member with its own per-filter L2 norm (shapes differ: a 1x1 shortcut and 3x3 convs) "
               "and ADD the scores: `sum(w.flatten(1).norm(dim=1) for w in weights)`")


def _group_case(label: str, weights: list[torch.Tensor], expected=None) -> Case:
    def run(fn):
        out = call(fn, weights)
        c = weights[0].shape[0]
        got = _as_scores(out, c)
        want = reference_residual_group_importance([w.double() for w in weights]) if expected is None else \
            torch.tensor(expected, dtype=torch.float64)
        norms = [w.detach().double().flatten(1).norm(dim=1) for w in weights]
        hint = _GROUP_HINT
        if len(weights) > 1 and _close(got, norms[0]) and not _close(want, norms[0]):
            hint = "you scored only the first member; every producer adds into the channel. " + _GROUP_HINT
        elif len(weights) > 1 and _close(got, norms[-1]) and not _close(want, norms[-1]):
            hint = "you scored only the last member; every producer adds into the channel. " + _GROUP_HINT
        elif _close(got, torch.stack(norms).pow(2).sum(0).sqrt()):
            hint = ("that is one L2 norm over all members' weights together; the group score ADDS the members' "
                    "norms. " + _GROUP_HINT)
        elif _close(got, torch.stack(norms).mean(0)):
            hint = "that is the mean; the group score is the SUM of the members' norms. " + _GROUP_HINT
        elif _close(got, torch.stack(norms).max(0).values):
            hint = "that is the max; the group score is the SUM of the members' norms. " + _GROUP_HINT
        elif _close(got, torch.stack(norms).pow(2).sum(0)):
            hint = "those are squared norms: take each member's L2 norm (with the square root). " + _GROUP_HINT
        expect(_close(got, want), f"got {describe_tensor(got)}, expected {describe_tensor(want)}", hint)
    return Case(label, run)


def _group_cases() -> list[Case]:
    a = torch.tensor([[[[3.0, 4.0]]], [[[0.0, 1.0]]]])            # norms [5, 1]
    b = torch.tensor([[[[0.0, 0.0]]], [[[6.0, 8.0]]]])            # norms [0, 10]
    shortcut = torch.tensor([[[[2.0]], [[0.0]]], [[[0.0]], [[0.0]]]])   # (2, 2, 1, 1): norms [2, 0]
    cases = [
        _group_case("two members: norms [5, 1] and [0, 10]", [a, b], [5.0, 11.0]),
        _group_case("one member = channel L2 norm", [a], [5.0, 1.0]),
        _group_case("a 1x1 shortcut conv (2 inputs) and a 3x1x2 conv", [shortcut, a], [7.0, 1.0]),
        _group_case("three members", [a, b, a], [10.0, 12.0]),
    ]
    g = _gen(36)
    for c, members in ((16, 4), (32, 4), (64, 3), (8, 2)):
        weights = [torch.randn(c, c // 2, 1, 1, generator=g)] + \
                  [torch.randn(c, c, 3, 3, generator=g) * (0.5 + j) for j in range(members - 1)]
        cases.append(_group_case(f"random group of {members} producers, {c} channels (1x1 shortcut + 3x3 convs)",
                                 weights))
    return cases


def check_residual_group_importance(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Check ``residual_group_importance(weights)``: ``Σ_m ‖W_m[c]‖₂`` over a list of conv weights that share
    their output channels (the producers of one dependency group); inputs untouched."""
    return run_check("residual_group_importance", fn, _group_cases, hint=_GROUP_HINT,
                     passed="summed over all producers, per-member L2 norms, mixed kernel sizes", strict=strict)
