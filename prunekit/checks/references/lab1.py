"""The course's answers to Lab 1's exercises: what each check compares with, and what
``use_or_reference`` falls back to while an exercise is unfinished.

The checks themselves (cases and judges) are in :mod:`prunekit.checks.lab1`.
"""
from __future__ import annotations

import copy
from typing import Mapping

import torch
from torch import nn

from ...masks import check_sparsity, num_to_prune, topk_mask

__all__ = [
    "reference_magnitude_mask", "reference_global_magnitude_masks", "reference_random_mask",
    "reference_saliency_scores", "reference_remask_", "reference_torch_prune_amount", "reference_prune_below",
    "reference_train_masked", "reference_iterative_prune",
]


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


def _prunable(model: nn.Module) -> dict[str, torch.Tensor]:
    """The weights the labs prune: parameters named ``*.weight`` with 2 or more dimensions (Linear, Conv)."""
    return {n: p for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 2}


def reference_train_masked(model: nn.Module, masks: Mapping[str, torch.Tensor], data: torch.utils.data.TensorDataset,
                           optimizer: str = "sgd", lr: float = 0.01, steps: int = 100, batch_size: int = 128,
                           weight_decay: float = 0.0, seed: int = 0) -> list[float]:
    """Train ``model`` in place with cross-entropy for ``steps`` optimizer steps, keeping pruned weights at 0.

    The masks are applied before the first forward pass and again after EVERY optimizer step (momentum and
    Adam's moment estimates would otherwise move pruned weights off zero). Batches: a new random order of the
    examples each epoch, drawn from a private ``torch.Generator`` seeded with ``seed``. Returns the loss of
    each step (before its update) as Python floats.
    """
    params = dict(model.named_parameters())
    if optimizer == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay)
    elif optimizer == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    else:
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")

    def remask() -> None:
        with torch.no_grad():
            for name, mask in masks.items():
                params[name].mul_(mask.to(params[name].dtype))

    x_all, y_all = data.tensors
    generator = torch.Generator().manual_seed(seed)
    remask()
    model.train()
    losses: list[float] = []
    while len(losses) < steps:
        order = torch.randperm(len(y_all), generator=generator)
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x_all[batch]), y_all[batch])
            loss.backward()
            opt.step()
            remask()
            losses.append(loss.item())
            if len(losses) == steps:
                break
    return losses


def _accuracy(model: nn.Module, data: torch.utils.data.TensorDataset) -> float:
    was = model.training
    model.eval()
    with torch.no_grad():
        x, y = data.tensors
        acc = (model(x).argmax(1) == y).sum().item() / len(y)
    model.train(was)
    return acc


def reference_iterative_prune(model: nn.Module, train_data: torch.utils.data.TensorDataset,
                              val_data: torch.utils.data.TensorDataset, schedule: list[float], tolerance: float,
                              steps: int = 100, lr: float = 0.01, batch_size: int = 128, seed: int = 0) -> dict:
    """Han et al.'s prune → fine-tune loop on a copy of ``model``, with a stopping rule on VALIDATION data.

    Round r: global magnitude masks at ``schedule[r]`` from the current (fine-tuned) weights, then
    ``train_masked(..., "sgd", lr, steps, batch_size, seed=seed + r)``, then validation accuracy. Stop after the
    first round more than ``tolerance`` below the dense validation accuracy. Returns ``{"model": a copy at the
    sparsest accepted round (the dense copy if none), "sparsity", "val_acc", "dense_val_acc", "history":
    [(target, val_acc) of every round run]}``; ``model`` itself is not modified.
    """
    dense_acc = _accuracy(model, val_data)
    work = copy.deepcopy(model)
    best = {"model": copy.deepcopy(model), "sparsity": 0.0, "val_acc": dense_acc}
    history = []
    for r, target in enumerate(schedule):
        weights = {n: w.detach() for n, w in _prunable(work).items()}
        masks = reference_global_magnitude_masks(weights, target)
        reference_train_masked(work, masks, train_data, "sgd", lr, steps, batch_size, 0.0, seed + r)
        acc = _accuracy(work, val_data)
        history.append((float(target), acc))
        if acc < dense_acc - tolerance:
            break
        best = {"model": copy.deepcopy(work), "sparsity": float(target), "val_acc": acc}
    return {**best, "dense_val_acc": dense_acc, "history": history}
