"""Counting what a pruned model holds and computes: parameters, nonzeros, multiply-accumulates.

A pruned weight is still stored as a zero in a dense tensor, so each count says what it counts:

* **parameters / nonzeros** (:func:`count_parameters`, :func:`count_nonzeros`,
  :func:`sparsity_table`): entries of the parameters, and how many of them are not zero;
* **MACs** (:func:`count_macs`, multiply-accumulates) of one forward pass on one example:
  ``"dense"`` counts every weight, ``"effective"`` only the nonzero ones, what a perfect sparse
  kernel would execute;
* :func:`format_table` prints rows of such counts as a plain-text table.

Bytes on disk are in :mod:`prunekit.sizes`, time in :mod:`prunekit.latency`.

Example:
    >>> from prunekit.models import build_model
    >>> from prunekit.pruning import prune_layerwise
    >>> model = build_model("lenet300")
    >>> _ = prune_layerwise(model, 0.9)
    >>> macs = count_macs(model, (1, 28, 28))
    >>> macs["dense"], macs["effective"]
    (266200, 26620)
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from .pruning import PRUNABLE_TYPES, prunable_weights

__all__ = ["count_parameters", "count_nonzeros", "sparsity_table", "format_table", "count_macs"]


# ----------------------------------------------------------------------------- parameters
def count_parameters(model: nn.Module) -> int:
    """Number of parameter entries (weights, biases, BN affine), each shared parameter once.

    Example:
        >>> count_parameters(nn.Linear(784, 300))
        235500
    """
    return sum(p.numel() for p in model.parameters())


def count_nonzeros(model: nn.Module) -> int:
    """Number of parameter entries that are not exactly zero (all parameters, not only weights).

    Example:
        >>> layer = nn.Linear(2, 2)
        >>> _ = nn.init.zeros_(layer.weight)
        >>> count_nonzeros(layer)    # the two biases
        2
    """
    return sum(int(torch.count_nonzero(p.detach())) for p in model.parameters())


def sparsity_table(model: nn.Module) -> list[dict]:
    """One row per Linear/Conv2d weight plus a ``"total"`` row over those weights.

    Biases and BatchNorm are not rows and not in the total (they are not pruned), so the total
    sparsity equals :func:`prunekit.pruning.model_sparsity`.

    Returns:
        ``[{"name": "fc1.weight", "shape": (300, 784), "params": 235200, "nonzeros": ...,
        "sparsity": ...}, ..., {"name": "total", "shape": "", ...}]``

    Example:
        >>> from prunekit.models import build_model
        >>> rows = sparsity_table(build_model("lenet300"))
        >>> [r["name"] for r in rows]
        ['fc1.weight', 'fc2.weight', 'fc3.weight', 'total']
    """
    rows = []
    for name, weight in prunable_weights(model).items():
        nonzeros = int(torch.count_nonzero(weight.detach()))
        rows.append({"name": name, "shape": tuple(weight.shape), "params": weight.numel(),
                     "nonzeros": nonzeros, "sparsity": 1.0 - nonzeros / weight.numel()})
    if not rows:
        raise ValueError("the model has no Linear or Conv2d layer to report on")
    params = sum(r["params"] for r in rows)
    nonzeros = sum(r["nonzeros"] for r in rows)
    rows.append({"name": "total", "shape": "", "params": params, "nonzeros": nonzeros,
                 "sparsity": 1.0 - nonzeros / params})
    return rows


def _cell(value, floatfmt: str) -> str:
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:{floatfmt}}"
    if isinstance(value, (tuple, list, torch.Size)):
        return "x".join(str(v) for v in value)
    return str(value)


def format_table(rows: Sequence[dict], columns: Sequence[str] | None = None, floatfmt: str = ".3f") -> str:
    """Rows of dicts as a plain-text table: numbers right-aligned, text left-aligned.

    Args:
        rows: e.g. from :func:`sparsity_table`; a missing key prints as an empty cell.
        columns: which keys, in which order (default: the keys of the first row).
        floatfmt: format of floats; ints get thousands separators, shapes print as ``300x784``.

    Example:
        >>> print(format_table([{"name": "fc1", "params": 235200, "sparsity": 0.9}]))
        name   params  sparsity
        fc1   235,200     0.900
    """
    if not rows:
        raise ValueError("format_table needs at least one row")
    columns = list(columns) if columns is not None else list(rows[0])
    cells = [[_cell(row.get(c), floatfmt) for c in columns] for row in rows]
    numeric = [all(isinstance(row.get(c), (int, float)) or row.get(c) is None for row in rows)
               for c in columns]
    widths = [max(len(c), *(len(line[i]) for line in cells)) for i, c in enumerate(columns)]

    def line(values):
        parts = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(columns)] + [line(values) for values in cells])


# ----------------------------------------------------------------------------- MACs
def _layer_macs(module: nn.Module, output: torch.Tensor) -> tuple[int, int]:
    """(dense, effective) MACs of one call of a Linear/Conv2d for ONE example."""
    weight = module.weight.detach()
    nonzeros = int(torch.count_nonzero(weight))
    if isinstance(module, nn.Linear):
        # output (1, *, out): the weight is applied once per position of the * dimensions
        positions = output.numel() // module.out_features
    else:
        positions = output.shape[-2] * output.shape[-1]          # out_h * out_w
    return positions * weight.numel(), positions * nonzeros


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> dict:
    """Multiply-accumulates of one forward pass on ONE example, dense and effective.

    Convention (the usual one for pruning papers): only Linear and Conv2d are counted;
    BatchNorm, activations, pooling and bias additions are ignored.

    * Linear:  ``in * out`` per position (``dense``), ``nonzeros(W)`` per position (``effective``)
    * Conv2d:  ``out_h * out_w * (c_in / groups) * kh * kw * c_out`` (``dense``), and
      ``out_h * out_w * nonzeros(W)`` (``effective``: each nonzero weight is used once per
      output position, including positions where it meets zero padding).

    Args:
        input_shape: one example without the batch dimension, e.g. ``(3, 32, 32)``.

    Returns:
        ``{"dense": int, "effective": int, "per_layer": {"conv1": {"dense": .., "effective": ..}}}``
        (keys of ``per_layer`` are module names; a module called twice is summed).

    Example:
        >>> from prunekit.models import build_model
        >>> count_macs(build_model("lenet5"), (1, 28, 28))["dense"]
        2293000
    """
    if not all(isinstance(d, int) and d > 0 for d in input_shape):
        raise ValueError(f"input_shape must be positive ints without the batch dimension, e.g. "
                         f"(3, 32, 32); got {tuple(input_shape)!r}")
    per_layer: dict[str, dict[str, int]] = {}

    def hook(name):
        def record(module, inputs, output):
            dense, effective = _layer_macs(module, output)
            entry = per_layer.setdefault(name, {"dense": 0, "effective": 0})
            entry["dense"] += dense
            entry["effective"] += effective
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in model.named_modules()
               if isinstance(m, PRUNABLE_TYPES)]
    first = next(model.parameters(), None)
    device, dtype = (first.device, first.dtype) if first is not None else ("cpu", torch.float32)
    was_training = model.training
    try:
        model.eval()  # batch statistics of one example would corrupt BatchNorm's running averages
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return {"dense": sum(v["dense"] for v in per_layer.values()),
            "effective": sum(v["effective"] for v in per_layer.values()),
            "per_layer": per_layer}
