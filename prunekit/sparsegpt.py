"""SparseGPT (Frantar & Alistarh 2023): prune a trained model in one shot, and repair each layer as you go.

Magnitude pruning zeroes small weights and leaves the rest as they were. SparseGPT asks, for one
Linear layer W (out, in) at a time: which weights can go, and how should the *remaining* weights of
the same row change, so that the layer's output on real inputs X changes as little as possible?

    minimise  || W X - W' X ||^2   over W' with the chosen zeros,   X = calibration inputs (in, tokens)

Its Hessian is ``H = X Xᵀ`` (in, in). Optimal Brain Surgeon (Hassibi & Stork 1993) says: removing
weight ``w_q`` of a row costs ``w_q² / [H⁻¹]_qq`` and is best compensated by adding
``-(w_q / [H⁻¹]_qq) · H⁻¹[q, :]`` to that row. SparseGPT goes through the columns left to right,
prunes the chosen entries of column q in every row at once, and spreads each row's error onto the
columns to its right only. Doing that with the rows of the upper Cholesky factor of H⁻¹ gives exactly
the updates for the shrinking set of columns still free to move, at the cost of one factorisation.

Layers are pruned in the order the model runs them, and each layer's Hessian is measured on inputs
that already flowed through the pruned layers before it, so later layers repair earlier errors too.

Example:
    >>> from prunekit.zoo import load_pretrained
    >>> from prunekit.data import load_dataset, subset
    >>> model = load_pretrained("chargpt")                                   # doctest: +SKIP
    >>> calib = [load_dataset("tinyshakespeare", "train")[i] for i in range(32)]   # doctest: +SKIP
    >>> masks = sparsegpt_prune(model, 0.5, calib, exclude=["lm_head"])     # doctest: +SKIP
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn
from torch.utils.data import Dataset

from .data import make_loader
from .masks import check_sparsity
from .pruning import apply_masks, prunable_weights


def _inputs(data, n_batches: int | None):
    """The model inputs x of ``data``: a Dataset (batches of 32), or an iterable of (x, y) or x batches."""
    batches = make_loader(data, batch_size=32) if isinstance(data, Dataset) else data
    for i, batch in enumerate(batches):
        if n_batches is not None and i >= n_batches:
            return
        yield batch[0] if isinstance(batch, (tuple, list)) else batch


class _Enough(Exception):
    """Raised by the recording hook: the rest of the forward pass is not needed."""


@torch.no_grad()
def layer_hessian(model: nn.Module, layer: nn.Linear, data, n_batches: int | None = None) -> torch.Tensor:
    """``X Xᵀ / tokens`` (in, in) of the inputs ``layer`` receives while ``model`` runs on ``data``."""
    total, count = torch.zeros(layer.in_features, layer.in_features, dtype=torch.float64), 0

    def record(module, inputs):
        nonlocal total, count
        x = inputs[0].detach().reshape(-1, layer.in_features).double().cpu()  # every token is a sample
        total += x.T @ x
        count += x.shape[0]
        raise _Enough  # the layers after this one do not matter for its Hessian: stop the forward pass

    handle = layer.register_forward_pre_hook(record)
    try:
        for x in _inputs(data, n_batches):
            try:
                model(x)
            except _Enough:
                pass
    finally:
        handle.remove()
    if count == 0:
        raise ValueError("no calibration inputs reached the layer: is data empty?")
    return total / count


@torch.no_grad()
def sparsegpt_layer(weight: torch.Tensor, hessian: torch.Tensor, sparsity: float = 0.5,
                    n_m: tuple[int, int] | None = None, damping: float = 0.01, block: int = 128
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Prune one weight matrix (out, in) with error compensation; returns (new weight, bool keep-mask).

    Args:
        hessian: ``X Xᵀ`` of the layer's inputs (in, in), e.g. from :func:`layer_hessian`.
        sparsity: fraction of each block of ``block`` columns pruned (the mask is chosen per block
            of columns, on the already-updated weights: SparseGPT's adaptive mask selection).
        n_m: ``(n, m)`` keeps n of every m consecutive inputs in each row instead (2:4, 4:8).
        damping: λ = damping · mean(diag H) is added to the diagonal, so H is invertible.
    """
    W = weight.detach().double().clone()
    H = hessian.double().clone()
    dead = torch.diag(H) == 0                    # inputs that never fire: nothing to preserve there
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    H += damping * torch.diag(H).mean() * torch.eye(H.shape[0], dtype=H.dtype)
    # Upper Cholesky factor U of H⁻¹ (H⁻¹ = Uᵀ U): row q of U, divided by U[q, q], is the OBS update
    # for column q given that the columns left of q are already fixed.
    U = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True)
    keep = torch.ones_like(W, dtype=torch.bool)
    for start in range(0, W.shape[1], block):
        end = min(start + block, W.shape[1])
        errors = torch.zeros(W.shape[0], end - start, dtype=W.dtype)
        if n_m is None:                          # prune the lowest OBS costs w² / U_qq² in this block
            cost = W[:, start:end] ** 2 / torch.diag(U)[start:end] ** 2
            block_keep = torch.ones(cost.numel(), dtype=torch.bool)
            block_keep[torch.sort(cost.flatten(), stable=True).indices[:int(cost.numel() * sparsity)]] = False
            keep[:, start:end] = block_keep.view_as(cost)
        for q in range(start, end):
            if n_m is not None and (q - start) % n_m[1] == 0:   # each group of m: drop the m - n cheapest
                n, m = n_m
                cost = W[:, q:q + m] ** 2 / torch.diag(U)[q:q + m] ** 2
                drop = torch.sort(cost, dim=1, stable=True).indices[:, :m - n]
                keep[:, q:q + m].scatter_(1, drop, False)
            err = (W[:, q] * ~keep[:, q]) / U[q, q]            # error of the pruned entries, scaled
            W[:, q:end] -= err[:, None] * U[q, q:end][None, :]  # compensate within the block
            errors[:, q - start] = err
        W[:, end:] -= errors @ U[start:end, end:]             # then, at once, on the columns to the right
    W[~keep] = 0.0
    return W.to(weight.dtype), keep


@torch.no_grad()
def _same_input(model: nn.Module, first: nn.Module, second: nn.Module, data) -> bool:
    """Do two layers read the very same tensor (as query, key and value read ln1's output)? One batch tells."""
    seen = []
    handles = [layer.register_forward_pre_hook(lambda module, inputs: seen.append(inputs[0]))
               for layer in (first, second)]
    try:
        model(next(iter(_inputs(data, 1))))
    finally:
        for handle in handles:
            handle.remove()
    return len(seen) == 2 and seen[0] is seen[1]      # both tensors are held, so identity cannot be reused


def sparsegpt_prune(model: nn.Module, sparsity: float, data, n_batches: int | None = None,
                    exclude: Iterable[str] = (), n_m: tuple[int, int] | None = None) -> dict[str, torch.Tensor]:
    """Prune every Linear of ``model`` (but ``exclude``) with SparseGPT, in place; returns the masks.

    Args:
        sparsity: fraction of each layer's weights to remove (ignored when ``n_m`` is given).
        data: calibration inputs: a Dataset of (x, y), or batches of (x, y) or x (a DataLoader, a list).
        n_batches: use the first ``n_batches`` batches only.
        exclude: module names to leave dense, e.g. ``["lm_head"]``.
        n_m: ``(2, 4)`` for 2:4 sparsity (keep 2 of every 4 inputs in each row).

    The masks are attached with :func:`prunekit.pruning.apply_masks`, so fine-tuning keeps the zeros.

    Example:
        >>> masks = sparsegpt_prune(model, 0.5, calib, exclude=["lm_head"])     # doctest: +SKIP
    """
    if n_m is None:
        check_sparsity(sparsity)
    was_training = model.training
    model.eval()
    masks, hessian, previous = {}, None, None
    for name in prunable_weights(model, exclude, types=(nn.Linear,)):   # in the order they run
        layer = model.get_submodule(name.rpartition(".")[0])
        if previous is None or not _same_input(model, previous, layer, data):   # query, key, value share one
            hessian = layer_hessian(model, layer, data, n_batches)   # inputs through the layers pruned so far
        new_weight, masks[name] = sparsegpt_layer(layer.weight, hessian, sparsity, n_m)
        previous = layer
        with torch.no_grad():
            layer.weight.copy_(new_weight)
    model.train(was_training)
    apply_masks(model, masks)
    return masks
