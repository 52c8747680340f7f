"""The course's answers to Lab 3's exercises: what each check compares with, and what
``use_or_reference`` falls back to while an exercise is unfinished.

The checks themselves (cases and judges) are in :mod:`prunekit.checks.lab3`.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ...masks import check_sparsity
from ...measure import count_macs
from ...surgery import dependency_groups, prune_channels, shrink

__all__ = [
    "reference_channel_l2_importance", "reference_bn_gamma_importance", "reference_keep_indices",
    "reference_prune_conv_bn_conv", "reference_conv_macs", "reference_sensitivity_scan",
    "reference_plan_for_mac_budget", "reference_prune_residual_group",
]


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


@torch.no_grad()
def reference_sensitivity_scan(model: nn.Module, amounts: Sequence[float], images: torch.Tensor,
                               labels: torch.Tensor) -> dict[str, list[float]]:
    """``{group: [accuracy with that fraction of the group's channels removed, for each amount]}``.

    One group at a time is pruned (filter L2 norm, :func:`prunekit.surgery.prune_channels`) from the
    ORIGINAL model, evaluated in eval mode on ``images``; accuracies are Python floats in [0, 1].
    """
    scan = {}
    for group in dependency_groups(model):
        accuracies = []
        for amount in amounts:
            pruned = prune_channels(model, {group.name: amount}).eval()
            accuracies.append((pruned(images).argmax(dim=1) == labels).float().mean().item())
        scan[group.name] = accuracies
    return scan


def reference_plan_for_mac_budget(model: nn.Module, amounts: Sequence[float], scan: dict[str, Sequence[float]],
                                  dense_accuracy: float, mac_budget: int,
                                  input_shape: Sequence[int] = (3, 32, 32)) -> dict[str, float]:
    """The gentlest sensitivity plan whose counted MACs fit ``mac_budget``.

    For a tolerance t, group g gets the LARGEST amount whose drop ``dense_accuracy - scan[g][i]`` is
    ``<= t`` (0.0 when none is). Try every drop that occurs in the scan as t, smallest first, and return
    the first plan whose pruned model (``prune_channels``) has ``count_macs(...)["dense"] <= mac_budget``.
    Raises ValueError when no tolerance reaches the budget.
    """
    drops = {g: [dense_accuracy - acc for acc in accs] for g, accs in scan.items()}
    for t in sorted({d for ds in drops.values() for d in ds}):
        plan = {g: max([a for a, d in zip(amounts, ds) if d <= t], default=0.0) for g, ds in drops.items()}
        if count_macs(prune_channels(model, plan), tuple(input_shape))["dense"] <= mac_budget:
            return plan
    raise ValueError(f"no plan from this scan reaches {mac_budget:,} MACs: scan larger amounts")


def reference_prune_residual_group(model: nn.Module, group: str, amount: float) -> nn.Module:
    """A new model without the ``min(round(amount·n), n-1)`` channels of dependency group ``group`` that have
    the lowest group score ``Σ_m ‖W_m[c]‖₂`` over the group's producers (ties: lower index removed first).
    Producers lose output channels, norms their entries, consumers their input channels; ``model`` untouched."""
    found = {g.name: g for g in dependency_groups(model)}[group]
    scores = sum(reference_channel_l2_importance(model.get_submodule(p).weight) for p in found.producers)
    return shrink(model, {group: reference_keep_indices(scores, amount)})
