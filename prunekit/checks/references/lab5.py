"""The course's answers to Lab 5's exercises: what each check compares with, and what
``use_or_reference`` falls back to while an exercise is unfinished.

The checks themselves (cases and judges) are in :mod:`prunekit.checks.lab5`.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

import torch
from torch import nn

from ...masks import check_sparsity
from ...masks import nm_mask as _library_nm_mask

__all__ = [
    "reference_exact_counts", "reference_scale_allocation", "reference_best_config", "reference_pareto_front",
    "reference_nm_mask", "reference_information_criteria", "reference_grid_search",
]


_SLACK = 1e-9   # float slack for "exactly tolerance below the best" and for remainders computed twice


def reference_exact_counts(wanted: Mapping[str, float], total: int) -> dict[str, int]:
    """Round real-valued counts to integers that add up to exactly ``total`` (largest-remainder rounding).

    Every entry gets ``floor(wanted)``; the ``total - Σ floor`` entries with the largest fractional parts
    get one more (equal remainders: the earlier entry first). Rounding each entry on its own cannot
    promise the sum: ``round(0.6) + round(0.6) + round(0.8) = 3``, not 2.
    """
    counts = {name: math.floor(w) for name, w in wanted.items()}
    extra = int(total) - sum(counts.values())
    if not 0 <= extra <= len(counts):
        raise ValueError(f"the wanted counts add up to {sum(wanted.values()):.6g}, too far from total={total} "
                         "to round to it")
    by_remainder = sorted(wanted, key=lambda name: wanted[name] - counts[name], reverse=True)  # stable
    for name in by_remainder[:extra]:
        counts[name] += 1
    return counts


def reference_scale_allocation(raw: Mapping[str, float], sizes: Mapping[str, int], sparsity: float
                               ) -> dict[str, float]:
    """Per-layer sparsities whose densities are proportional to ``raw``, pruning exactly ``round(s*N)`` weights.

    ``density_l = min(1, ε · raw_l)`` with one factor ε chosen so that the layers keep
    ``K = N - round(sparsity * N)`` weights together (``N = Σ sizes``). A layer whose ``ε · raw_l`` would
    exceed 1 stays dense and ε is recomputed over the others, until no layer exceeds 1 (the rule of
    Evci et al. 2020's ERK allocation, where ``raw_l = Σ dims / Π dims`` of the layer's weight). The
    real-valued pruned counts ``(1 - density_l) · n_l`` are then rounded with :func:`reference_exact_counts`.
    """
    sparsity = check_sparsity(sparsity)
    if set(raw) != set(sizes) or not raw:
        raise ValueError(f"raw and sizes need the same non-empty keys, got {sorted(raw)} and {sorted(sizes)}")
    if any(not r > 0 for r in raw.values()):
        raise ValueError(f"raw densities must be > 0, got {dict(raw)}")
    total = sum(sizes.values())
    to_prune = round(sparsity * total)
    keep = total - to_prune
    dense: set[str] = set()
    while True:
        free = [name for name in raw if name not in dense]
        eps = (keep - sum(sizes[n] for n in dense)) / sum(raw[n] * sizes[n] for n in free) if free else 0.0
        too_dense = [name for name in free if eps * raw[name] > 1.0]
        if not too_dense:
            break
        dense.update(too_dense)   # raising ε for the others never brings a capped layer back below 1
    wanted = {name: 0.0 if name in dense else (1.0 - eps * raw[name]) * sizes[name] for name in raw}
    counts = reference_exact_counts(wanted, to_prune)
    return {name: counts[name] / sizes[name] for name in raw}


def reference_best_config(results: Sequence[Mapping], tolerance: float) -> Mapping:
    """The sparsest row whose ``"val_acc"`` is at least ``max(val_acc) - tolerance``.

    Equal sparsity: the higher ``val_acc``; still equal: the earlier row. Only validation accuracy is read;
    any ``"test_acc"`` in the rows is ignored on purpose (choosing with the test set biases the estimate).
    """
    if not results:
        raise ValueError("best_config needs at least one result")
    best = max(row["val_acc"] for row in results)
    eligible = [row for row in results if row["val_acc"] >= best - tolerance - _SLACK]
    return max(eligible, key=lambda row: (row["sparsity"], row["val_acc"]))   # max() keeps the first of equals


def reference_pareto_front(points: Sequence[Sequence[float]]) -> list[tuple]:
    """The points ``(cost, accuracy)`` no other point dominates (cost ≤, accuracy ≥, one of them strictly),
    each distinct point once, sorted by cost (ascending)."""
    unique = sorted({(p[0], p[1]) for p in points}, key=lambda p: (p[0], -p[1]))
    front, best_acc = [], -math.inf
    for cost, acc in unique:          # by cost, the most accurate first among equal costs
        if acc > best_acc:
            front.append((cost, acc))
            best_acc = acc
    return front


def reference_nm_mask(weight: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """N:M mask of a 2-D weight (out, in): in every group of ``m`` consecutive inputs of a row, keep the ``n``
    largest ``|w|`` (equal values: the earlier input). Raises ValueError unless ``in`` is a multiple of ``m``."""
    if weight.dim() != 2:
        raise ValueError(f"nm_mask expects a 2-D Linear weight (out, in), got shape {tuple(weight.shape)}")
    return _library_nm_mask(weight.detach().abs(), n, m, dim=1)


@torch.no_grad()
def reference_information_criteria(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Akaike's and Schwarz's information criteria of a classifier on its training data ``(x, y)``.

    ``−log L`` is the summed cross-entropy in nats; ``k`` counts the nonzero parameters (a pruned weight
    is not a free parameter); ``n = len(x)``. Returns ``(AIC, BIC) = (2k + 2·NLL, k·ln n + 2·NLL)``, floats.
    Lower is better. The model must be in eval mode (no dropout).
    """
    nll = nn.functional.cross_entropy(model(x), y, reduction="sum").double().item()
    k = sum(int(torch.count_nonzero(p)) for p in model.parameters())
    n = len(x)
    return 2 * k + 2 * nll, k * math.log(n) + 2 * nll


def _prunable(model: nn.Module) -> list[torch.Tensor]:
    from ...pruning import prunable_weights
    return list(prunable_weights(model).values())


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    return (model(x).argmax(1) == y).double().mean().item()


def reference_grid_search(model: nn.Module, val: torch.utils.data.TensorDataset, grid: Mapping,
                          tolerance: float) -> dict:
    """One-shot magnitude pruning for every config of ``ParameterGrid(grid)``, judged on the validation split.

    ``grid`` has keys ``"allocation"`` (``"global"`` or ``"layerwise"``) and ``"target"`` (sparsities).
    Each candidate prunes a copy of ``model``. Returns ``{"rows": [...], "chosen": row, "front": [...]}``:
    one row per config (in ParameterGrid's order) ``{**config, "sparsity", "nonzeros", "val_acc"}``; the row
    :func:`reference_best_config` picks; the :func:`reference_pareto_front` of ``(nonzeros, val_acc)``.
    ``model`` is not modified.
    """
    import copy

    from sklearn.model_selection import ParameterGrid

    from ...pruning import prune_global, prune_layerwise

    x, y = val.tensors
    rows = []
    for config in ParameterGrid(dict(grid)):
        candidate = copy.deepcopy(model)
        prune = {"global": prune_global, "layerwise": prune_layerwise}[config["allocation"]]
        prune(candidate, config["target"])
        weights = _prunable(candidate)
        zeros = sum(int((w == 0).sum()) for w in weights)
        total = sum(w.numel() for w in weights)
        rows.append({**config, "sparsity": zeros / total, "nonzeros": total - zeros,
                     "val_acc": _accuracy(candidate, x, y)})
    chosen = reference_best_config(rows, tolerance)
    front = reference_pareto_front([(r["nonzeros"], r["val_acc"]) for r in rows])
    return {"rows": rows, "chosen": chosen, "front": front}
