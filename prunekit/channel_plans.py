"""Channel plans: how many channels each dependency group keeps, set to meet a MAC budget.

A *plan* turns one knob ``x`` into a width per dependency group (``prunekit.dependency``); bisection on
the knob finds the least pruning whose model has at most ``1 / reduction`` of the dense MACs. Counts are
rounded to multiples (CPU kernels run whole vector registers: 16 floats with AVX-512), and the channels
kept are the highest-scoring ones (filter L2 norm, Li et al. 2017). ``prunekit.zoo_pruned`` uses these to
make the shipped channel-pruned models.

Example:
    >>> from prunekit.models import build_model
    >>> x, widths = plan_for_macs(build_model("vgg"), (3, 32, 32), "uniform", reduction=2.0, multiple=16)
    >>> widths["conv1"] % 16
    0
"""
from __future__ import annotations

import torch
from torch import nn

from .channel_criteria import channel_norm
from .dependency import dependency_groups
from .measure import count_macs
from .surgery import shrink


def channel_scores(model: nn.Module) -> dict[str, torch.Tensor]:
    """Per dependency group, each channel's L2 filter norm summed over the group's producers (Li et al. 2017)."""
    return {g.name: sum(channel_norm(model.get_submodule(p).weight.detach()).float() for p in g.producers)
            for g in dependency_groups(model)}


def _round_count(n: float, size: int, multiple: int) -> int:
    """``n`` channels rounded to the nearest multiple of ``multiple``, within [multiple, size]."""
    if size <= multiple:
        return size
    return int(min(size, max(multiple, multiple * round(n / multiple))))


def plan_widths(scores: dict[str, torch.Tensor], plan: str, x: float, multiple: int) -> dict[str, int]:
    """Channels each group keeps under ``plan`` at knob ``x`` (higher x = more pruned).

    * ``"uniform"``: every group keeps ``(1 - x)`` of its channels;
    * ``"global"``: a channel stays if its score / its group's mean score exceeds ``x``;
    * ``"internal"``: only groups inside residual blocks (names with a dot) keep ``(1 - x)``.
    """
    widths = {}
    for name, s in scores.items():
        size = len(s)
        if plan == "uniform":
            n = size * (1 - x)
        elif plan == "global":
            n = float((s / s.mean().clamp_min(1e-12) > x).sum())
        elif plan == "internal":
            n = size * (1 - x) if "." in name else size
        else:
            raise ValueError(f"unknown channel plan {plan!r}: expected 'uniform', 'global' or 'internal'")
        widths[name] = _round_count(n, size, multiple)
    return widths


def keep_top(scores: dict[str, torch.Tensor], widths: dict[str, int]) -> dict[str, torch.Tensor]:
    """The ``widths[g]`` highest-scoring channels of each group, as sorted indices (ties: lower index)."""
    return {g: torch.sort(torch.sort(scores[g], stable=True, descending=True).indices[:n]).values
            for g, n in widths.items()}


def macs_of(model: nn.Module, input_shape) -> int:
    """Dense multiply-accumulates of one forward pass of one example (``prunekit.measure.count_macs``)."""
    return count_macs(model, input_shape)["dense"]


def plan_for_macs(dense_model: nn.Module, input_shape, plan: str, reduction: float,
                  multiple: int) -> tuple[float, dict[str, int]]:
    """The smallest knob ``x`` of ``plan`` (bisection) whose model has <= dense MACs / ``reduction``.

    Returns ``(x, widths)``; raises ValueError if even the most pruned setting is too big.
    """
    scores = channel_scores(dense_model)
    budget = macs_of(dense_model, input_shape) / reduction

    def macs_at(x: float) -> int:
        return macs_of(pruned_architecture_like(dense_model, plan_widths(scores, plan, x, multiple)), input_shape)

    lo, hi = 0.0, (float(max(s.max() / s.mean() for s in scores.values())) + 1 if plan == "global" else 1.0)
    if macs_at(hi) > budget:
        raise ValueError(f"plan {plan!r} cannot reach {reduction}x fewer MACs")
    for _ in range(30):
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if macs_at(mid) <= budget else (mid, hi)
    return hi, plan_widths(scores, plan, hi, multiple)


def pruned_architecture_like(model: nn.Module, widths: dict[str, int]) -> nn.Module:
    """``model``'s architecture with ``widths`` channels per group (the first ones; for counting MACs)."""
    return shrink(model, {name: range(n) for name, n in widths.items()})
