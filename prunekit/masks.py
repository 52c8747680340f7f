"""From importance scores to 0/1 masks.

Conventions used everywhere in prunekit:

* a mask is a **bool** tensor shaped like what it masks; ``True`` = keep, ``False`` = pruned;
* **sparsity** is the fraction of the *whole* tensor (or model) that is zero, in [0, 1];
* a sparsity ``s`` on ``n`` entries prunes exactly ``round(s * n)`` entries: the lowest scores,
  chosen with an exact top-k (never ``scores >= kth_value``, which keeps every tie and misses
  the target). Ties are broken deterministically: among equal scores the entry with the lower
  flat index is pruned first.

Example:
    >>> import torch
    >>> topk_mask(torch.tensor([0.3, 0.1, 0.2, 0.1]), 0.5)
    tensor([ True, False,  True, False])
"""
from __future__ import annotations

import math

import torch


def check_sparsity(sparsity: float, name: str = "sparsity") -> float:
    """Return ``sparsity`` as a float after checking it is a number in [0, 1]."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)):
        raise TypeError(f"{name} must be a number in [0, 1], got {type(sparsity).__name__} {sparsity!r}")
    if not 0.0 <= float(sparsity) <= 1.0 or math.isnan(sparsity):
        raise ValueError(f"{name} must be in [0, 1] (fraction of weights set to zero), got {sparsity!r}; "
                         "for a percentage divide by 100")
    return float(sparsity)


def num_to_prune(n: int, sparsity: float) -> int:
    """How many of ``n`` entries a ``sparsity`` prunes: ``round(sparsity * n)`` (round half to even)."""
    return int(round(check_sparsity(sparsity) * n))


def _check_scores(scores: torch.Tensor) -> None:
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if scores.numel() == 0:
        raise ValueError("cannot build a mask for an empty tensor (0 elements)")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; check the criterion's inputs")


def topk_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep the highest scores, prune exactly ``round(sparsity * numel)`` of the lowest.

    Args:
        scores: importance of each entry, any shape (higher = more important).
        sparsity: fraction of entries to prune, in [0, 1].

    Returns:
        bool mask of ``scores.shape``, ``False`` at pruned entries.

    Example:
        >>> topk_mask(torch.ones(2, 2), 0.5)       # ties: lower flat index pruned first
        tensor([[False, False],
                [ True,  True]])
    """
    _check_scores(scores)
    k = num_to_prune(scores.numel(), sparsity)
    flat = scores.detach().flatten().float()
    if k == 0:
        return torch.ones_like(flat, dtype=torch.bool).view_as(scores)
    # The result equals "stable-sort by (score, index), prune the first k", without the
    # O(n log n) sort: a selection finds the k-th lowest score in O(n) (~6x faster at 10M).
    kth = torch.kthvalue(flat, k).values
    below = flat < kth                              # all of these are pruned
    ties_to_prune = k - int(below.sum())            # >= 1: the k-th entry itself scores kth
    tied = torch.nonzero(flat == kth).flatten()     # in increasing flat index
    mask = ~below
    mask[tied[:ties_to_prune]] = False              # lower flat index pruned first
    return mask.view_as(scores)


def threshold_mask(scores: torch.Tensor, threshold: float) -> torch.Tensor:
    """Keep entries whose score is strictly above ``threshold`` (the pruned count is whatever results).

    Example:
        >>> threshold_mask(torch.tensor([0.1, 0.5, 0.9]), 0.5)
        tensor([False, False,  True])
    """
    _check_scores(scores)
    if not isinstance(threshold, (int, float)) or isinstance(threshold, bool):
        raise TypeError(f"threshold must be a number, got {threshold!r}")
    return scores.detach() > threshold


def nm_mask(scores: torch.Tensor, n: int = 2, m: int = 4, dim: int = -1) -> torch.Tensor:
    """N:M structured sparsity: in every group of ``m`` consecutive entries along ``dim`` keep ``n``.

    2:4 (keep 2 of every 4 along the input dimension) is what sparse tensor cores accelerate.
    For a Linear weight (out, in) use ``dim=1`` (the default ``-1``); for a Conv2d weight
    (out, in, kh, kw) the groups run along ``in`` after moving it last (``dim=1``).

    Returns:
        bool mask of ``scores.shape`` with exactly ``n`` True in each group.

    Example:
        >>> nm_mask(torch.tensor([[4., 1., 3., 2.]]), 2, 4)
        tensor([[ True, False,  True, False]])
    """
    _check_scores(scores)
    if not (isinstance(n, int) and isinstance(m, int)) or m <= 0 or n < 0:
        raise ValueError(f"N:M needs integers 0 <= N <= M, M > 0; got N={n!r}, M={m!r}")
    if n > m:
        raise ValueError(f"N:M needs N <= M (keep N of every M), got N={n}, M={m}")
    moved = scores.detach().movedim(dim, -1)
    if moved.shape[-1] % m:
        raise ValueError(f"dimension {dim} has size {moved.shape[-1]}, not a multiple of M={m}")
    groups = moved.reshape(-1, m)
    keep = torch.sort(groups.float(), dim=1, descending=True, stable=True).indices[:, :n]
    mask = torch.zeros_like(groups, dtype=torch.bool).scatter_(1, keep, True)
    return mask.reshape(moved.shape).movedim(-1, dim)


def expand_mask(unit_mask: torch.Tensor, weight_shape: torch.Size | tuple, dim: int = 0) -> torch.Tensor:
    """Broadcast a per-unit mask (one entry per neuron/channel) to a whole weight tensor.

    Args:
        unit_mask: bool (units,), e.g. which output channels of a conv to keep.
        weight_shape: e.g. (out, in, kh, kw) of a Conv2d or (out, in) of a Linear.
        dim: the weight dimension the units index (0 = outputs, 1 = inputs).

    Example:
        >>> expand_mask(torch.tensor([True, False]), (2, 3))
        tensor([[ True,  True,  True],
                [False, False, False]])
    """
    weight_shape = tuple(weight_shape)
    if unit_mask.ndim != 1 or unit_mask.numel() != weight_shape[dim]:
        raise ValueError(f"unit mask of shape {tuple(unit_mask.shape)} does not match dimension {dim} "
                         f"of a weight shaped {weight_shape}")
    view = [1] * len(weight_shape)
    view[dim] = -1
    return unit_mask.bool().view(view).expand(weight_shape).clone()


def sparsity_of(tensor: torch.Tensor) -> float:
    """Fraction of exactly-zero entries of a tensor (for a mask: fraction of ``False``)."""
    if tensor.numel() == 0:
        raise ValueError("sparsity of an empty tensor is undefined")
    if tensor.dtype == torch.bool:
        return 1.0 - tensor.float().mean().item()
    return (tensor == 0).float().mean().item()
