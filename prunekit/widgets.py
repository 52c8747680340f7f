"""Interactive explorers for JupyterLab: move a slider, see accuracy, size and weights change.

* :class:`SparsityExplorer` — sparsity and criterion → accuracy on a cached evaluation subset,
  nonzeros, bytes on disk (dense vs bitmask), and the weight histogram.
* :class:`ScheduleExplorer` — the AGP (cubic) schedule's knobs → its sparsity curve.
* :class:`MaskViewer` — a first-layer mask as 28x28 images, one hidden neuron at a time.

Each explorer separates the computation (:meth:`update`, a plain method that tests call directly)
from the widgets (:meth:`widget`). :meth:`show` displays the live widget, or a static figure when
no widget front-end is there: set ``PRUNEKIT_WIDGETS=static`` (CI does) to get the figure.

Example:
    >>> explorer = SparsityExplorer(load_pretrained("lenet300"),
    ...                             subset(load_dataset("mnist", "test"), 1000))  # doctest: +SKIP
    >>> explorer.update(0.9, "magnitude")["accuracy"]      # doctest: +SKIP
    0.97...
    >>> explorer.show()                                     # doctest: +SKIP
"""
from __future__ import annotations

import copy
import os
import time
from typing import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.figure import Figure
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .criteria import magnitude, random_scores
from .masks import check_sparsity
from .measure import count_nonzeros, sparse_bytes, state_dict_bytes
from .plots import plot_mask_images
from .pruning import prunable_weights, prune_global, prune_layerwise
from .schedules import agp_sparsity

WIDGETS_ENV = "PRUNEKIT_WIDGETS"
CRITERIA = ("magnitude", "random")
SCOPES = ("global", "layerwise")


def static_mode() -> bool:
    """True when ``$PRUNEKIT_WIDGETS=static``: explorers draw a figure instead of live widgets."""
    value = os.environ.get(WIDGETS_ENV, "live").strip().lower()
    if value not in ("live", "static"):
        raise ValueError(f"${WIDGETS_ENV} must be 'live' or 'static', got {value!r}")
    return value == "static"


def _show_figure(fig: Figure) -> None:
    from IPython.display import display

    display(fig)
    plt.close(fig)


def _tensors(data: Dataset | DataLoader, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``limit`` examples as two tensors, so each update is one forward pass."""
    xs, ys, seen = [], [], 0
    loader = data if isinstance(data, DataLoader) else DataLoader(data, batch_size=500)
    for x, y in loader:
        xs.append(x)
        ys.append(y)
        seen += len(y)
        if seen >= limit:
            break
    if not xs:
        raise ValueError("the evaluation data is empty")
    return torch.cat(xs)[:limit], torch.cat(ys)[:limit]


class SparsityExplorer:
    """Prune a copy of ``model`` to a sparsity with a criterion and measure what changes.

    Args:
        model: a trained model (left untouched; every update prunes a fresh copy).
        data: evaluation data; the first ``max_examples`` are cached as tensors once.
        layer: the weight whose histogram is drawn (default: the first prunable one).
        scope: ``"global"`` (one ranking over all layers) or ``"layerwise"``.
    """

    def __init__(self, model: nn.Module, data: Dataset | DataLoader, layer: str | None = None,
                 scope: str = "global", max_examples: int = 1000, seed: int = 0):
        if scope not in SCOPES:
            raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
        self.model = copy.deepcopy(model).cpu().eval()
        self.x, self.y = _tensors(data, max_examples)
        names = list(prunable_weights(self.model))
        self.layer = layer or names[0]
        if self.layer not in names:
            raise ValueError(f"layer {self.layer!r} is not prunable; choose one of {names}")
        self.scope, self.seed = scope, seed
        self.dense_bytes = state_dict_bytes(self.model)

    def _scores(self, model: nn.Module, criterion: str) -> dict[str, torch.Tensor]:
        weights = prunable_weights(model)
        if criterion == "magnitude":
            return {n: magnitude(w) for n, w in weights.items()}
        if criterion == "random":
            return {n: random_scores(w, seed=self.seed + i) for i, (n, w) in enumerate(weights.items())}
        raise ValueError(f"criterion must be one of {CRITERIA}, got {criterion!r}")

    @torch.no_grad()
    def _accuracy(self, model: nn.Module) -> float:
        return (model(self.x).argmax(1) == self.y).float().mean().item()

    def update(self, sparsity: float, criterion: str = "magnitude") -> dict:
        """Prune a copy and measure: ``{"accuracy", "nonzeros", "dense_bytes", "sparse_bytes",
        "weights" (the chosen layer's pruned weights, flattened numpy), "seconds"}``."""
        start = time.perf_counter()
        sparsity = check_sparsity(sparsity)
        model = copy.deepcopy(self.model)
        scores = self._scores(model, criterion)
        if self.scope == "global":
            prune_global(model, sparsity, scores=scores)
        else:
            prune_layerwise(model, sparsity, scores=scores)
        weights = dict(model.named_parameters())[self.layer].detach().flatten().numpy().copy()
        return {"sparsity": sparsity, "criterion": criterion, "accuracy": self._accuracy(model),
                "nonzeros": count_nonzeros(model), "dense_bytes": self.dense_bytes,
                "sparse_bytes": sparse_bytes(model, "bitmask"), "weights": weights,
                "seconds": time.perf_counter() - start}

    def figure(self, result: dict) -> Figure:
        """Histogram of the chosen layer's surviving weights, with the numbers in the title."""
        fig, ax = plt.subplots(figsize=(6, 3))
        kept = result["weights"][result["weights"] != 0]
        ax.hist(kept, bins=80, color="tab:blue")
        ax.set_yscale("log")
        ax.set_xlabel(f"{self.layer} weights (zeros not shown)")
        ax.set_title(f"{result['criterion']} {self.scope} pruning to {result['sparsity']:.0%}: "
                     f"accuracy {result['accuracy']:.1%}, {result['nonzeros']:,} nonzeros, "
                     f"{result['sparse_bytes'] / 1024:.0f} KiB sparse vs {result['dense_bytes'] / 1024:.0f} KiB dense",
                     fontsize=8)
        fig.tight_layout()
        return fig

    def static_figure(self, sparsities: Sequence[float] = (0.0, 0.5, 0.8, 0.9, 0.95, 0.98)) -> Figure:
        """What the sliders would show, as one figure: accuracy vs sparsity for each criterion."""
        fig, ax = plt.subplots(figsize=(5, 3.2))
        for criterion in CRITERIA:
            ax.plot(sparsities, [self.update(s, criterion)["accuracy"] for s in sparsities],
                    marker="o", label=criterion)
        ax.set_xlabel("sparsity")
        ax.set_ylabel(f"accuracy ({len(self.y)} images)")
        ax.set_title(f"{self.scope} pruning, no fine-tuning", fontsize=9)
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        return fig

    def widget(self):
        """The live widget: a sparsity slider, a criterion menu, numbers and a histogram."""
        import ipywidgets as w

        sparsity = w.FloatSlider(value=0.5, min=0.0, max=0.99, step=0.01, description="sparsity",
                                 continuous_update=False, readout_format=".0%")
        criterion = w.Dropdown(options=CRITERIA, value="magnitude", description="criterion")
        out = w.Output()

        def redraw(_change=None):
            result = self.update(sparsity.value, criterion.value)
            with out:
                out.clear_output(wait=True)
                _show_figure(self.figure(result))

        sparsity.observe(redraw, names="value")
        criterion.observe(redraw, names="value")
        redraw()
        return w.VBox([w.HBox([sparsity, criterion]), out])

    def show(self) -> None:
        """Display the live widget, or the static figure when ``$PRUNEKIT_WIDGETS=static``."""
        from IPython.display import display

        if static_mode():
            _show_figure(self.static_figure())
        else:
            display(self.widget())


class ScheduleExplorer:
    """The AGP schedule (Zhu & Gupta 2017) with its five knobs on sliders."""

    def __init__(self, total_steps: int = 1000):
        if not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a positive int, got {total_steps!r}")
        self.total_steps = total_steps

    def update(self, initial_sparsity: float = 0.0, final_sparsity: float = 0.9, start_step: int = 100,
               n_steps: int = 10, frequency: int = 50) -> dict:
        """``{"steps", "sparsities"}`` of the schedule over ``total_steps`` (pure: no state kept)."""
        steps = list(range(self.total_steps + 1))
        values = [agp_sparsity(t, initial_sparsity, final_sparsity, start_step, n_steps, frequency) for t in steps]
        return {"steps": steps, "sparsities": values}

    def figure(self, result: dict) -> Figure:
        fig, ax = plt.subplots(figsize=(5.5, 3))
        ax.step(result["steps"], result["sparsities"], where="post", label="AGP (cubic)")
        ax.set_xlabel("training step")
        ax.set_ylabel("sparsity")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        return fig

    def widget(self):
        import ipywidgets as w

        knobs = {"initial_sparsity": w.FloatSlider(value=0.0, min=0, max=0.99, step=0.01, description="s_i"),
                 "final_sparsity": w.FloatSlider(value=0.9, min=0, max=0.99, step=0.01, description="s_f"),
                 "start_step": w.IntSlider(value=100, min=0, max=self.total_steps, description="t0"),
                 "n_steps": w.IntSlider(value=10, min=1, max=100, description="n"),
                 "frequency": w.IntSlider(value=50, min=1, max=200, description="Δt")}
        out = w.Output()

        def redraw(_change=None):
            values = {k: s.value for k, s in knobs.items()}
            with out:
                out.clear_output(wait=True)
                try:
                    _show_figure(self.figure(self.update(**values)))
                except ValueError as exc:  # e.g. s_i > s_f: say why instead of drawing
                    print(f"invalid schedule: {exc}")

        for slider in knobs.values():
            slider.continuous_update = False
            slider.observe(redraw, names="value")
        redraw()
        return w.VBox([w.HBox(list(knobs.values())[:3]), w.HBox(list(knobs.values())[3:]), out])

    def show(self) -> None:
        from IPython.display import display

        if static_mode():
            _show_figure(self.figure(self.update()))
        else:
            display(self.widget())


class MaskViewer:
    """A first-layer mask (neurons, H*W) shown as one H x W image per hidden neuron."""

    def __init__(self, mask_or_weight: torch.Tensor, image_shape: tuple[int, int] = (28, 28)):
        if mask_or_weight.dim() != 2 or mask_or_weight.shape[1] != image_shape[0] * image_shape[1]:
            raise ValueError(f"expected a (neurons, {image_shape[0] * image_shape[1]}) mask or weight, "
                             f"got shape {tuple(mask_or_weight.shape)}")
        self.keep = (mask_or_weight.detach().cpu() != 0).reshape(-1, *image_shape)
        self.image_shape = image_shape

    def update(self, neuron: int) -> np.ndarray:
        """The H x W 0/1 image of what ``neuron`` still looks at."""
        if not 0 <= neuron < len(self.keep):
            raise ValueError(f"neuron must be in [0, {len(self.keep) - 1}], got {neuron}")
        return self.keep[neuron].numpy().astype(np.uint8)

    def figure(self, neuron: int) -> Figure:
        fig, (left, right) = plt.subplots(1, 2, figsize=(5, 2.6))
        left.imshow(self.update(neuron), cmap="gray", vmin=0, vmax=1)
        left.set_title(f"neuron {neuron}: {self.keep[neuron].float().mean().item():.1%} kept", fontsize=8)
        right.imshow(self.keep.sum(0).numpy(), cmap="viridis")
        right.set_title("kept connections per pixel", fontsize=8)
        for ax in (left, right):
            ax.axis("off")
        fig.tight_layout()
        return fig

    def widget(self):
        import ipywidgets as w

        neuron = w.IntSlider(value=0, min=0, max=len(self.keep) - 1, description="neuron")
        out = w.Output()

        def redraw(_change=None):
            with out:
                out.clear_output(wait=True)
                _show_figure(self.figure(neuron.value))

        neuron.observe(redraw, names="value")
        redraw()
        return w.VBox([neuron, out])

    def show(self) -> None:
        from IPython.display import display

        if static_mode():
            _show_figure(plot_mask_images(self.keep.flatten(1), self.image_shape, max_images=12))
        else:
            display(self.widget())
