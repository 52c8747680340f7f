"""How much to prune each layer: sensitivity scans and sparsity allocations.

Layers differ in how much pruning they tolerate: the first convolution and the output layer
are small and every weight counts; the big fully-connected layers are very redundant.
Two ways to choose a per-layer sparsity:

* **measure it**: :func:`sensitivity_scan` prunes one layer at a time to several sparsities and
  records the accuracy (Han et al. 2015, fig. 6; Li et al. 2017 do the same for filters);
  :func:`sparsities_from_tolerance` then picks, per layer, the largest sparsity whose accuracy
  drop stays within a tolerance;
* **use a rule**: :func:`uniform_allocation` (the same sparsity everywhere) or
  :func:`erk_allocation` (Erdős-Rényi-Kernel, Evci et al. 2020: larger layers get sparser).

Every allocation is a dict ``{"fc1.weight": 0.93, ...}`` that
:func:`prunekit.pruning.prune_layerwise` takes as it is.

Example:
    >>> from prunekit.models import build_model
    >>> from prunekit.pruning import prune_layerwise, model_sparsity
    >>> model = build_model("lenet300")
    >>> _ = prune_layerwise(model, erk_allocation(model, 0.9))
    >>> round(model_sparsity(model), 6)
    0.9
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .masks import check_sparsity
from .pruning import prunable_weights, prune_layerwise
from .train import evaluate

DEFAULT_SPARSITIES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


# ----------------------------------------------------------------------------- measuring
@dataclass(frozen=True)
class SensitivityScan:
    """The result of :func:`sensitivity_scan`.

    Attributes:
        baseline: accuracy of the model as it came in (nothing extra pruned), in [0, 1].
        curves: ``{"fc1.weight": [(sparsity, accuracy), ...], ...}``, sparsities in scan order.
    """

    baseline: float
    curves: dict[str, list[tuple[float, float]]]

    def drops(self) -> dict[str, list[tuple[float, float]]]:
        """The curves as accuracy *drops* from the baseline (positive = worse)."""
        return {n: [(s, self.baseline - acc) for s, acc in curve] for n, curve in self.curves.items()}


def sensitivity_scan(model: nn.Module, data: Dataset | DataLoader, sparsities: Sequence[float] = DEFAULT_SPARSITIES,
                     names: Iterable[str] | None = None, scores: Mapping[str, torch.Tensor] | None = None,
                     quiet: bool = True) -> SensitivityScan:
    """Prune each layer *alone* to each sparsity (on a copy, no fine-tuning) and measure accuracy.

    Args:
        data: validation data (a few thousand images suffice; never the test set).
        sparsities: the sparsities to try for every layer.
        names: the layers to scan (default: every prunable weight).
        scores: importance per weight (default ``|w|``, magnitude).

    Returns:
        a :class:`SensitivityScan`: ``baseline`` accuracy and one curve per layer with
        ``len(sparsities)`` points. ``model`` itself is not changed.

    Example:
        >>> scan = sensitivity_scan(model, val_data, sparsities=(0.5, 0.9))    # doctest: +SKIP
        >>> scan.curves["fc1.weight"]                                          # doctest: +SKIP
        [(0.5, 0.981), (0.9, 0.975)]
    """
    sparsities = [check_sparsity(s) for s in sparsities]
    weights = prunable_weights(model)
    names = list(weights) if names is None else list(names)
    unknown = [n for n in names if n not in weights]
    if unknown:
        raise ValueError(f"cannot scan {unknown}: not prunable weights. Prunable: {list(weights)}")
    baseline = evaluate(model, data)
    curves = {}
    for name in names:
        curves[name] = []
        for s in sparsities:
            pruned = copy.deepcopy(model)   # a fresh copy each time: masks only grow
            prune_layerwise(pruned, {name: s}, scores=scores)
            curves[name].append((s, evaluate(pruned, data)))
        if not quiet:
            print(f"{name}: " + ", ".join(f"{s:.2f}→{acc:.4f}" for s, acc in curves[name]))
    return SensitivityScan(baseline, curves)


def sparsities_from_tolerance(scan: SensitivityScan, tolerance: float) -> dict[str, float]:
    """Per layer, the largest scanned sparsity whose accuracy drop is at most ``tolerance``.

    ``tolerance`` is a fraction (0.01 = one point of accuracy). A layer where no scanned sparsity
    qualifies gets 0.0. Points are judged one by one, so a noisy curve can yield a sparsity
    beyond a point that failed; look at the curves before trusting the numbers.

    Example:
        >>> scan = SensitivityScan(0.98, {"fc1.weight": [(0.5, 0.979), (0.9, 0.95)]})
        >>> sparsities_from_tolerance(scan, 0.01)
        {'fc1.weight': 0.5}
    """
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or tolerance < 0:
        raise ValueError(f"tolerance must be a fraction >= 0 (0.01 = one point of accuracy), got {tolerance!r}")
    within = tolerance + 1e-12   # a drop of exactly ``tolerance`` passes despite float error (0.90 - 0.89 > 0.01)
    return {name: max((s for s, acc in curve if scan.baseline - acc <= within), default=0.0)
            for name, curve in scan.curves.items()}


# ----------------------------------------------------------------------------- rules
def uniform_allocation(model: nn.Module, sparsity: float, exclude: Iterable[str] = ()) -> dict[str, float]:
    """The same sparsity for every prunable layer (except ``exclude``).

    Example:
        >>> from prunekit.models import build_model
        >>> uniform_allocation(build_model("lenet300"), 0.5, exclude=["fc3"])
        {'fc1.weight': 0.5, 'fc2.weight': 0.5}
    """
    sparsity = check_sparsity(sparsity)
    return {name: sparsity for name in prunable_weights(model, exclude)}


def _exact_counts(wanted: Mapping[str, float], sizes: Mapping[str, int], total: int) -> dict[str, int]:
    """Round per-layer pruned counts so they sum to ``total`` exactly (largest remainders round up)."""
    counts = {n: math.floor(wanted[n]) for n in wanted}
    by_remainder = sorted(wanted, key=lambda n: wanted[n] - counts[n], reverse=True)
    for n in by_remainder[: total - sum(counts.values())]:
        counts[n] += 1
    return {n: min(c, sizes[n]) for n, c in counts.items()}


def erk_allocation(model: nn.Module, sparsity: float, exclude: Iterable[str] = ()) -> dict[str, float]:
    """Erdős-Rényi-Kernel sparsities (Evci et al. 2020, RigL, section 3): small layers stay denser.

    Each layer's density (1 - sparsity) is proportional to

        (c_in + c_out + kh + kw) / (c_in * c_out * kh * kw)    for a Conv2d weight,
        (in + out) / (in * out)                                for a Linear weight,

    i.e. sum of dimensions / number of weights, scaled by one factor ε so that the layers together
    keep exactly ``1 - sparsity`` of their weights. A layer whose density would exceed 1 is kept
    dense and ε is recomputed for the others, until none exceeds 1. Counts are then rounded so
    that pruning with :func:`prunekit.pruning.prune_layerwise` removes exactly
    ``round(sparsity * total)`` weights. ``sparsity`` is over the chosen layers (``exclude`` left out).

    Returns:
        ``{"fc1.weight": sparsity, ...}`` for every prunable layer not excluded.

    Example:
        >>> from prunekit.models import build_model
        >>> {n: round(s, 3) for n, s in erk_allocation(build_model("lenet300"), 0.9).items()}
        {'fc1.weight': 0.92, 'fc2.weight': 0.77, 'fc3.weight': 0.0}
    """
    sparsity = check_sparsity(sparsity)
    weights = prunable_weights(model, exclude)
    if not weights:
        raise ValueError("no layers to allocate: every prunable layer was excluded")
    sizes = {n: w.numel() for n, w in weights.items()}
    raw = {n: sum(w.shape) / w.numel() for n, w in weights.items()}   # ERK: Σ dims / Π dims
    keep_total = sum(sizes.values()) - round(sparsity * sum(sizes.values()))
    dense: set[str] = set()
    while True:
        free = [n for n in weights if n not in dense]
        budget = keep_total - sum(sizes[n] for n in dense)
        eps = budget / sum(raw[n] * sizes[n] for n in free) if free else 0.0
        too_dense = [n for n in free if eps * raw[n] > 1.0]
        if not too_dense:
            break
        dense.update(too_dense)   # capping raises ε for the rest, so they never come back below 1
    density = {n: 1.0 if n in dense else eps * raw[n] for n in weights}
    pruned = _exact_counts({n: (1.0 - density[n]) * sizes[n] for n in weights}, sizes,
                           sum(sizes.values()) - keep_total)
    return {n: pruned[n] / sizes[n] for n in weights}
