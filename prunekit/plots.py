"""The figures of the course. Every function returns a ``matplotlib.figure.Figure`` and never
calls ``plt.show()``: in a notebook the figure displays itself, in a script ``fig.savefig(...)``.

Close figures you do not keep (``plt.close(fig)``) when making many in a loop.

Example:
    >>> from prunekit.models import build_model
    >>> fig = plot_layer_sparsity(build_model("lenet300"))
    >>> len(fig.axes)
    1
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn

from .pruning import prunable_weights

if TYPE_CHECKING:
    from .sensitivity import SensitivityScan


def _grid(n: int, max_cols: int = 4, size: float = 3.0) -> tuple[Figure, list]:
    cols = min(n, max_cols)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * 0.8 * rows), squeeze=False)
    axes = list(axes.flat)
    for ax in axes[n:]:
        fig.delaxes(ax)
    return fig, axes[:n]


def _short(name: str) -> str:
    return name[: -len(".weight")] if name.endswith(".weight") else name


def plot_weight_histograms(dense_model: nn.Module, pruned_model: nn.Module,
                           names: Sequence[str] | None = None, bins: int = 80) -> Figure:
    """Per layer, the weight distribution before and after pruning (log-scaled counts).

    Zeros of the pruned model are **excluded** from its histogram (they would be one huge bar at
    0); how many there are is written in the title. Magnitude pruning leaves a visible gap
    around zero; other criteria leave a less regular one.

    Args:
        dense_model, pruned_model: the same architecture, before and after pruning.
        names: which weights (default: every Linear/Conv2d weight), e.g. ``["fc1.weight"]``.

    Returns:
        a Figure with one axes per layer, two histograms each.

    Example:
        >>> fig = plot_weight_histograms(dense, pruned, names=["fc1.weight"])   # doctest: +SKIP
    """
    dense_weights, pruned_weights = prunable_weights(dense_model), prunable_weights(pruned_model)
    names = list(names) if names is not None else list(pruned_weights)
    unknown = [n for n in names if n not in dense_weights or n not in pruned_weights]
    if unknown:
        raise ValueError(f"no weights {unknown} in both models; available: {list(pruned_weights)}")
    if not names:
        raise ValueError("names is empty: give at least one weight name")
    fig, axes = _grid(len(names))
    for ax, name in zip(axes, names):
        before = dense_weights[name].detach().flatten().cpu().float().numpy()
        after = pruned_weights[name].detach().flatten().cpu().float().numpy()
        kept = after[after != 0]
        edges = np.histogram_bin_edges(before, bins=bins)
        ax.hist(before, bins=edges, color="0.7", label="dense")
        ax.hist(kept, bins=edges, color="C0", alpha=0.8, label="pruned (nonzero)")
        ax.set_yscale("log")
        ax.set_title(f"{_short(name)}: {1 - kept.size / after.size:.0%} zero", fontsize=10)
        ax.set_xlabel("weight value")
    axes[0].set_ylabel("count (log)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_layer_sparsity(model: nn.Module) -> Figure:
    """One bar per Linear/Conv2d weight: the fraction of its entries that are zero.

    The bar labels give the layer size, because 90 % of a small layer is few weights.

    Example:
        >>> fig = plot_layer_sparsity(build_model("vgg"))    # doctest: +SKIP
    """
    weights = prunable_weights(model)
    if not weights:
        raise ValueError("the model has no Linear or Conv2d layer")
    names = [_short(n) for n in weights]
    sparsity = [(w == 0).float().mean().item() for w in weights.values()]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.6 * len(names) + 1), 3.2))
    bars = ax.bar(names, sparsity, color="C0")
    ax.bar_label(bars, labels=[f"{w.numel():,}" for w in weights.values()], fontsize=7, rotation=90,
                 padding=2)
    ax.set_ylim(0, 1.25)
    ax.set_ylabel("sparsity (fraction zero)")
    ax.set_title("sparsity per layer (bar label: number of weights)", fontsize=10)
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    return fig


def plot_accuracy_vs_sparsity(results: Mapping[str, Sequence[tuple[float, float]]],
                              reference: float | None = None, title: str = "accuracy vs sparsity"
                              ) -> Figure:
    """One line per method through its (sparsity, accuracy) points; optional dense reference.

    Args:
        results: ``{"global magnitude": [(0.5, 0.981), (0.9, 0.975), ...], "random": [...]}``.
        reference: accuracy of the dense model, drawn as a dashed horizontal line.

    Example:
        >>> fig = plot_accuracy_vs_sparsity({"magnitude": [(0.5, 0.98), (0.9, 0.97)]}, reference=0.981)
        >>> len(fig.axes[0].lines)
        2
    """
    if not results:
        raise ValueError("results is empty: give {label: [(sparsity, accuracy), ...]}")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, points in results.items():
        points = sorted(points)
        if not points:
            raise ValueError(f"results[{label!r}] has no (sparsity, accuracy) points")
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
    if reference is not None:
        ax.axhline(reference, color="k", linestyle="--", linewidth=1, label="dense")
    ax.set_xlabel("sparsity (fraction of weights removed)")
    ax.set_ylabel("accuracy")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_mask_images(mask_or_weight: torch.Tensor, image_shape: tuple[int, int] = (28, 28),
                     max_images: int = 16) -> Figure:
    """A first-layer mask seen as images: what each neuron still looks at, and per input pixel.

    For LeNet-300-100, ``fc1`` has a (300, 784) mask: row ``j`` reshaped to 28x28 shows which
    pixels neuron ``j`` keeps (white = kept). The last panel sums over all neurons: how many
    connections each pixel keeps. After magnitude pruning the border pixels (always black in
    MNIST) lose almost everything.

    Args:
        mask_or_weight: (neurons, H*W) bool mask, or a weight (nonzero = kept).
        image_shape: (H, W) of the input images.
        max_images: how many neurons to draw (the first ones).

    Returns:
        a Figure with ``min(neurons, max_images)`` neuron panels plus one summary panel.

    Example:
        >>> fig = plot_mask_images(torch.rand(300, 784) > 0.9, max_images=4)
        >>> len(fig.axes)      # 4 neurons + the summary (with its colour bar)
        6
    """
    if mask_or_weight.dim() != 2 or mask_or_weight.shape[1] != image_shape[0] * image_shape[1]:
        raise ValueError(f"expected a (neurons, {image_shape[0] * image_shape[1]}) mask or weight for "
                         f"images {image_shape}, got shape {tuple(mask_or_weight.shape)}")
    if not isinstance(max_images, int) or max_images < 1:
        raise ValueError(f"max_images must be a positive int, got {max_images!r}")
    keep = (mask_or_weight.detach().cpu() != 0).reshape(-1, *image_shape)
    n = min(keep.shape[0], max_images)
    fig, axes = _grid(n + 1, max_cols=6, size=1.8)
    for j, ax in enumerate(axes[:n]):
        ax.imshow(keep[j].numpy(), cmap="gray", vmin=0, vmax=1)
        ax.set_title(f"neuron {j}: {keep[j].float().mean().item():.1%} kept", fontsize=7)
        ax.axis("off")
    summary = axes[n].imshow(keep.sum(0).numpy(), cmap="viridis")
    axes[n].set_title("kept connections per pixel", fontsize=7)
    axes[n].axis("off")
    fig.colorbar(summary, ax=axes[n], fraction=0.046)
    fig.tight_layout()
    return fig


def plot_sensitivity(scan: Mapping[str, Sequence[tuple[float, float]]] | SensitivityScan,
                     baseline: float | None = None) -> Figure:
    """Sensitivity analysis: accuracy when pruning ONE layer at a time, one curve per layer.

    Args:
        scan: ``{"fc1.weight": [(0.5, 0.98), (0.9, 0.97), ...], "fc2.weight": [...]}``, or the
            result of :func:`prunekit.sensitivity.sensitivity_scan` (its curves and baseline).
        baseline: accuracy of the unpruned model (dashed line).

    Example:
        >>> fig = plot_sensitivity({"fc1": [(0.0, 0.98), (0.9, 0.9)], "fc2": [(0.0, 0.98), (0.9, 0.6)]})
        >>> len(fig.axes[0].lines)
        2
    """
    if hasattr(scan, "curves"):                      # a SensitivityScan
        baseline = scan.baseline if baseline is None else baseline
        scan = scan.curves
    if not scan:
        raise ValueError("scan is empty: give {layer name: [(sparsity, accuracy), ...]}")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, points in scan.items():
        points = sorted(points)
        ax.plot([p[0] for p in points], [p[1] for p in points], marker=".", label=_short(name))
    if baseline is not None:
        ax.axhline(baseline, color="k", linestyle="--", linewidth=1, label="unpruned")
    ax.set_xlabel("sparsity of this layer alone")
    ax.set_ylabel("accuracy")
    ax.set_title("sensitivity per layer (steep = sensitive)", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def plot_schedule(steps: Sequence[float] | Mapping[str, tuple[Sequence[float], Sequence[float]]],
                  sparsities: Sequence[float] | None = None, label: str | None = None) -> Figure:
    """Sparsity over training steps: one schedule, or several to compare.

    Call as ``plot_schedule(steps, sparsities, label="cubic")`` or with a dict
    ``plot_schedule({"cubic": (steps, sparsities), "one-shot": (steps2, sparsities2)})``.

    Example:
        >>> fig = plot_schedule([0, 1, 2], [0.0, 0.5, 0.9], label="linear")
        >>> len(fig.axes[0].lines)
        1
    """
    if isinstance(steps, Mapping):
        if sparsities is not None:
            raise ValueError("with a dict of schedules, leave sparsities=None")
        curves = dict(steps)
    else:
        if sparsities is None or len(sparsities) != len(steps):
            raise ValueError("give as many sparsities as steps (or one dict label -> (steps, sparsities))")
        curves = {label: (steps, sparsities)}
    if not curves:
        raise ValueError("no schedule to plot")
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    for name, (xs, ys) in curves.items():
        if len(xs) != len(ys):
            raise ValueError(f"schedule {name!r}: {len(xs)} steps but {len(ys)} sparsities")
        ax.plot(xs, ys, drawstyle="steps-post", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("sparsity")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    if any(name is not None for name in curves):
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
