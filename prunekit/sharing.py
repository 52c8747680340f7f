"""Weight sharing (Han et al. 2016, "Deep Compression"): many weights, few distinct values.

The nonzero weights of a layer are clustered with 1-d k-means; each weight then stores only the
index of its cluster (``log2(k)`` bits for k clusters) and the layer one small codebook of float
values. Pruned weights (zeros) stay zero and take no part in the clustering.

* :func:`kmeans_share` clusters one tensor (linear initialisation over ``[min, max]``, as Han et
  al. recommend: it keeps centroids among the rare large weights);
* :func:`shared_weight` rebuilds the weight from ``(codebook, indices)``;
* :func:`share_model` shares every Linear/Conv2d weight of a model in place;
* :class:`TieToClusters` keeps the weights of a cluster equal while fine-tuning, which trains the
  codebook values (centroid fine-tuning).

:mod:`prunekit.encoding` then writes the cluster indices and the positions of the nonzeros to a file.

Example:
    >>> codebook, indices = kmeans_share(torch.tensor([[0.5, 0.0, -1.0], [0.25, 0.0, 1.0]]), n_clusters=2, iters=5)
    >>> indices.tolist()
    [[1, -1, 0], [1, -1, 1]]
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch
from torch import nn

from .pruning import prunable_weights

__all__ = ["kmeans_share", "shared_weight", "share_model", "TieToClusters"]


def _nearest(values: torch.Tensor, codebook: torch.Tensor, chunk: int = 1 << 16) -> torch.Tensor:
    """Index of the nearest codebook entry for each value (the lowest index on ties), in chunks of values
    so that the (values x clusters) distance matrix stays small."""
    return torch.cat([(part[:, None] - codebook[None, :]).abs().argmin(dim=1) for part in values.split(chunk)]) \
        if values.numel() else torch.zeros(0, dtype=torch.long, device=values.device)


def kmeans_share(weight: torch.Tensor, n_clusters: int, iters: int = 20) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster the NONZERO weights with 1-d k-means (Han et al. 2016); zeros (pruned) stay zero.

    Rule: ``v`` = the nonzero entries (row-major). Codebook starts at
    ``torch.linspace(v.min(), v.max(), n_clusters)`` (linear initialisation keeps centroids among the rare
    large weights). Then ``iters`` times: assign each value to its nearest centroid (lowest index on ties),
    set each centroid to the mean of its values (a cluster with no value keeps its centroid).
    Finally assign once more.

    Returns:
        ``(codebook, indices)``: codebook ``(n_clusters,)`` in the weight's float dtype; indices int64 of
        ``weight.shape``, ``-1`` where the weight is zero. :func:`shared_weight` rebuilds the weight.

    Example:
        >>> kmeans_share(torch.tensor([0.1, 0.0, 0.12, 0.9, 1.0]), 2, iters=3)
        (tensor([0.1100, 0.9500]), tensor([ 0, -1,  0,  1,  1]))
    """
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, int) or n_clusters < 1:
        raise ValueError(f"n_clusters must be a positive int, got {n_clusters!r}")
    if isinstance(iters, bool) or not isinstance(iters, int) or iters < 0:
        raise ValueError(f"iters must be a non-negative int, got {iters!r}")
    w = weight.detach()
    dtype = w.dtype if w.is_floating_point() else torch.float32
    keep = w != 0
    values = w[keep].to(dtype)
    indices = torch.full(w.shape, -1, dtype=torch.long, device=w.device)
    if values.numel() == 0:
        return torch.zeros(n_clusters, dtype=dtype, device=w.device), indices
    codebook = torch.linspace(values.min().item(), values.max().item(), n_clusters, dtype=dtype, device=w.device)
    for _ in range(iters):
        assign = _nearest(values, codebook)
        sums = torch.zeros_like(codebook).index_add_(0, assign, values)
        counts = torch.bincount(assign, minlength=n_clusters)
        codebook = torch.where(counts > 0, sums / counts.clamp(min=1).to(dtype), codebook)
    indices[keep] = _nearest(values, codebook)
    return codebook, indices


def shared_weight(codebook: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
    """The weight a codebook and its indices stand for: ``codebook[i]`` where ``i >= 0``, 0 where ``i == -1``.

    Example:
        >>> shared_weight(torch.tensor([-0.5, 0.5]), torch.tensor([1, -1, 0]))
        tensor([ 0.5000,  0.0000, -0.5000])
    """
    if codebook.dim() != 1:
        raise ValueError(f"codebook must be 1-d, got shape {tuple(codebook.shape)}")
    if indices.numel() and (int(indices.min()) < -1 or int(indices.max()) >= codebook.numel()):
        raise ValueError(f"indices must be in [-1, {codebook.numel() - 1}], got [{int(indices.min())}, "
                         f"{int(indices.max())}]")
    return torch.where(indices >= 0, codebook[indices.clamp(min=0)], torch.zeros((), dtype=codebook.dtype))


def share_model(model: nn.Module, n_clusters: int | Mapping[str, int], iters: int = 20,
                kmeans: Callable = kmeans_share) -> dict[str, torch.Tensor]:
    """Replace weights by their shared (clustered) values IN PLACE; returns ``{name: indices}``.

    Args:
        n_clusters: one count for every Linear/Conv2d weight, or ``{"fc1.weight": 31, ...}`` (only those).
        kmeans: the clustering function ``(weight, n_clusters, iters) -> (codebook, indices)``.

    Example:
        >>> from prunekit.models import build_model
        >>> m = build_model("lenet300"); idx = share_model(m, 15, iters=2)
        >>> m.fc2.weight.unique().numel() <= 15
        True
    """
    weights = prunable_weights(model)
    targets = dict(n_clusters) if isinstance(n_clusters, Mapping) else {n: n_clusters for n in weights}
    unknown = [n for n in targets if n not in weights]
    if unknown:
        raise ValueError(f"no Linear/Conv2d weights {unknown}; available: {list(weights)}")
    all_indices = {}
    with torch.no_grad():
        for name, k in targets.items():
            codebook, indices = kmeans(weights[name], k, iters)
            weights[name].copy_(shared_weight(torch.as_tensor(codebook), torch.as_tensor(indices)))
            all_indices[name] = torch.as_tensor(indices).clone()
    return all_indices


class TieToClusters:
    """An ``after_step`` callback that keeps shared weights shared while training (centroid fine-tuning).

    After each optimizer step, every weight of a cluster is set to the cluster's mean, and weights with
    index -1 to zero. With SGD (momentum and weight decay included) this is exactly training one value
    per cluster with the *average* gradient of its weights (Han et al. sum them: same direction, larger
    step for large clusters).

    Example:
        >>> tie = TieToClusters(share_model(model, 31))                     # doctest: +SKIP
        >>> train.fine_tune(model, data, epochs=1, after_step=[tie])       # doctest: +SKIP
    """

    def __init__(self, indices: Mapping[str, torch.Tensor]):
        self.indices = {n: torch.as_tensor(i, dtype=torch.long) for n, i in indices.items()}

    @torch.no_grad()
    def __call__(self, model: nn.Module, step: int = 0) -> None:
        params = dict(model.named_parameters())
        for name, idx in self.indices.items():
            w = params[name]
            idx = idx.to(w.device)
            keep = idx >= 0
            k = int(idx.max()) + 1 if bool(keep.any()) else 1
            sums = torch.zeros(k, dtype=w.dtype, device=w.device).index_add_(0, idx[keep], w[keep])
            counts = torch.bincount(idx[keep], minlength=k).clamp(min=1).to(w.dtype)
            w.copy_(torch.where(keep, (sums / counts)[idx.clamp(min=0)], torch.zeros((), dtype=w.dtype)))
