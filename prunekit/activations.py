"""Looking inside a model: record what named layers output, with forward hooks.

A *forward hook* is a function PyTorch calls after a module's ``forward`` with
``(module, inputs, output)``. Activation-based criteria (mean activation, APoZ, Wanda,
channel Taylor) all start by hooking a few layers and running some batches through the model.

Every function here

* takes layers by **module name** as in ``model.named_modules()`` (``"fc1"``, ``"relu1"``,
  ``"stage1.0.relu2"``; the weight ``"fc1.weight"`` belongs to the module ``"fc1"``);
* runs under ``torch.no_grad()`` in eval mode, then puts the model back in the mode it was in;
* removes its hooks even when something fails (``try``/``finally``).

``data`` is a DataLoader (or any iterable) of ``(x, y)`` batches or of bare ``x`` tensors;
a ``Dataset`` is wrapped in a DataLoader of 128 samples per batch.

Example:
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from prunekit.models import build_model
    >>> model = build_model("lenet300")
    >>> loader = DataLoader(TensorDataset(torch.randn(6, 1, 28, 28), torch.zeros(6).long()), batch_size=4)
    >>> acts = collect_activations(model, ["fc1", "relu2"], loader)
    >>> acts["fc1"].shape, acts["relu2"].shape
    (torch.Size([6, 300]), torch.Size([6, 100]))
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

DEFAULT_BATCH_SIZE = 128


# ----------------------------------------------------------------------------- plumbing
def take_batches(data: DataLoader | Dataset | Iterable, n_batches: int | None = None) -> Iterator:
    """Yield ``(x, y)`` from the first ``n_batches`` batches of ``data`` (all of them if None).

    ``y`` is None when the batches are bare input tensors (unlabelled calibration data).

    Example:
        >>> batches = [(torch.zeros(2, 3), torch.ones(2)), (torch.zeros(1, 3), torch.ones(1))]
        >>> [tuple(x.shape) for x, y in take_batches(batches, n_batches=1)]
        [(2, 3)]
    """
    if n_batches is not None and (isinstance(n_batches, bool) or not isinstance(n_batches, int)
                                  or n_batches <= 0):
        raise ValueError(f"n_batches must be a positive int or None (= all batches), got {n_batches!r}")
    if isinstance(data, Dataset) and not isinstance(data, DataLoader):
        # Iterating a Dataset directly would give single samples without a batch dimension.
        data = DataLoader(data, batch_size=DEFAULT_BATCH_SIZE, shuffle=False)
    seen = 0
    for batch in data:
        if n_batches is not None and seen >= n_batches:
            break
        if isinstance(batch, torch.Tensor):
            x, y = batch, None
        elif isinstance(batch, (tuple, list)) and batch and isinstance(batch[0], torch.Tensor):
            x, y = batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            raise TypeError(f"each batch must be a tensor x or a tuple (x, y, ...), got {type(batch).__name__}")
        seen += 1
        yield x, y
    if seen == 0:
        raise ValueError("data gave no batches; pass a non-empty DataLoader")


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without any)."""
    for tensor in model.parameters():
        return tensor.device
    for tensor in model.buffers():
        return tensor.device
    return torch.device("cpu")


def get_layers(model: nn.Module, layer_names: Iterable[str]) -> dict[str, nn.Module]:
    """``{name: module}`` for module names, with an error listing the valid names.

    Example:
        >>> from prunekit.models import build_model
        >>> list(get_layers(build_model("lenet300"), ["fc1"]))
        ['fc1']
    """
    if isinstance(layer_names, str):
        raise TypeError(f"layer_names must be a list of module names, got the string {layer_names!r}; "
                        f"write [{layer_names!r}]")
    modules = dict(model.named_modules())
    layers = {}
    for name in layer_names:
        if name not in modules:
            hint = " (that is a parameter; use its module name)" if name.endswith((".weight", ".bias")) else ""
            valid = [n for n in modules if n]
            raise ValueError(f"no module named {name!r} in the model{hint}; module names: {valid}")
        layers[name] = modules[name]
    if not layers:
        raise ValueError("layer_names is empty; name at least one module, e.g. ['fc1']")
    return layers


@contextmanager
def hooked(layers: dict[str, nn.Module], make_hook: Callable[[str], Callable]):
    """Register ``make_hook(name)`` as a forward hook on each layer; always remove them on exit."""
    handles = []
    try:
        for name, module in layers.items():
            handles.append(module.register_forward_hook(make_hook(name)))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def eval_mode(model: nn.Module):
    """Put ``model`` in eval mode (BatchNorm uses and keeps its running statistics) and restore after."""
    # Remember every submodule's flag: a model may be partly in train mode on purpose.
    modes = {module: module.training for module in model.modules()}
    model.eval()
    try:
        yield model
    finally:
        for module, mode in modes.items():
            module.training = mode


def _unit_dims(t: torch.Tensor) -> list[int]:
    """The dimensions to reduce for one value per unit: all but dim 1 (N, units, H, W)."""
    if t.ndim < 2:
        raise ValueError(f"activations must be (N, units) or (N, C, H, W), got shape {tuple(t.shape)}")
    return [0] + list(range(2, t.ndim))


# ----------------------------------------------------------------------------- public API
@torch.no_grad()
def collect_activations(model: nn.Module, layer_names: list[str], data: DataLoader | Dataset | Iterable,
                        n_batches: int | None = None, device: str | torch.device | None = None
                        ) -> dict[str, torch.Tensor]:
    """Outputs of named modules over ``n_batches`` batches, concatenated along the batch dimension.

    Args:
        layer_names: module names, e.g. ``["fc1", "relu1"]`` or ``["stage1.0.relu2"]``.
        data: DataLoader of ``(x, y)`` or ``x`` batches.
        n_batches: how many batches to run (None = all). Keep it small: everything is stored.
        device: where to run (default: where the model's parameters are); the model is moved there.

    Returns:
        ``{name: tensor}`` on the CPU: (N, units) for Linear/ReLU-after-Linear outputs,
        (N, C, H, W) for Conv2d/BN/ReLU outputs. A module called twice per forward pass
        contributes both outputs. For large data use :func:`activation_statistics`.

    Example:
        >>> from prunekit.models import build_model
        >>> loader = [torch.randn(3, 1, 28, 28)]
        >>> collect_activations(build_model("lenet5"), ["relu1"], loader)["relu1"].shape
        torch.Size([3, 20, 24, 24])
    """
    layers = get_layers(model, layer_names)
    if device is not None:
        model.to(device)
    device = model_device(model)
    stored = {name: [] for name in layers}

    def make_hook(name):
        def hook(module, inputs, output):
            # A copy, so a later in-place op (ReLU(inplace=True)) cannot change what was stored.
            stored[name].append(output.detach().to("cpu", copy=True))
        return hook

    with eval_mode(model), hooked(layers, make_hook):
        for x, _ in take_batches(data, n_batches):
            model(x.to(device))
    return {name: torch.cat(outs) for name, outs in stored.items()}


@torch.no_grad()
def activation_statistics(model: nn.Module, layer_names: list[str], data: DataLoader | Dataset | Iterable,
                          n_batches: int | None = None, device: str | torch.device | None = None
                          ) -> dict[str, dict]:
    """Per-unit mean and APoZ of named modules' outputs, reduced batch by batch (little memory).

    For an output (N, C, H, W) the statistics of channel c use all N·H·W values of that channel;
    for (N, units) they use the N values of each unit.

    * ``mean[c]`` = average value (Mean Activation criterion);
    * ``apoz[c]`` = fraction of values exactly 0: Average Percentage of Zeros (Hu et al. 2016,
      "Network Trimming"), meant for outputs of a ReLU;
    * ``count`` = number of samples (N) seen.

    Returns:
        ``{name: {"mean": (units,), "apoz": (units,), "count": int}}``, tensors on the CPU.

    Example:
        >>> from prunekit.models import build_model
        >>> stats = activation_statistics(build_model("lenet300"), ["relu1"], [torch.randn(5, 1, 28, 28)])
        >>> stats["relu1"]["apoz"].shape, stats["relu1"]["count"]
        (torch.Size([300]), 5)
    """
    layers = get_layers(model, layer_names)
    if device is not None:
        model.to(device)
    device = model_device(model)
    totals = {name: {"sum": 0.0, "zeros": 0.0, "values": 0, "count": 0} for name in layers}

    def make_hook(name):
        def hook(module, inputs, output):
            dims = _unit_dims(output)
            t = totals[name]
            # float64 sums: millions of float32 additions would lose digits.
            t["sum"] = t["sum"] + output.double().sum(dims).cpu()
            t["zeros"] = t["zeros"] + (output == 0).double().sum(dims).cpu()
            t["values"] += output.numel() // output.shape[1]
            t["count"] += output.shape[0]
        return hook

    with eval_mode(model), hooked(layers, make_hook):
        for x, _ in take_batches(data, n_batches):
            model(x.to(device))
    return {name: {"mean": (t["sum"] / t["values"]).float(), "apoz": (t["zeros"] / t["values"]).float(),
                   "count": t["count"]} for name, t in totals.items()}


@torch.no_grad()
def input_feature_norms(model: nn.Module, layer_name: str, data: DataLoader | Dataset | Iterable,
                        n_batches: int | None = None) -> torch.Tensor:
    """L2 norm of each *input* feature of a Linear/Conv2d over calibration data: ``||X_j||_2``.

    For a Linear with inputs X of shape (N, in): ``norm[j] = sqrt(sum_n X[n, j]^2)`` (Wanda,
    Sun et al. 2023, uses this over all calibration tokens). For a Conv2d with inputs
    (N, in, H, W) the norm of input channel j runs over all N·H·W positions.

    Returns:
        (in,) tensor on the CPU.

    Example:
        >>> from prunekit.models import build_model
        >>> loader = [torch.ones(4, 1, 28, 28)]
        >>> input_feature_norms(build_model("lenet300"), "fc1", loader)[:3]
        tensor([2., 2., 2.])
    """
    return input_feature_norms_of(model, [layer_name], data, n_batches)[layer_name]


@torch.no_grad()
def input_feature_norms_of(model: nn.Module, layer_names: list[str], data: DataLoader | Dataset | Iterable,
                           n_batches: int | None = None) -> dict[str, torch.Tensor]:
    """:func:`input_feature_norms` for several layers in one pass: ``{module name: (in,)}``."""
    layers = get_layers(model, layer_names)
    for name, module in layers.items():
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            raise TypeError(f"input feature norms need a Linear or Conv2d module; {name!r} is "
                            f"{type(module).__name__}")
    device = model_device(model)
    squares = {name: 0.0 for name in layers}

    def make_hook(name):
        def hook(module, inputs, output):
            x = inputs[0].double()
            # Linear: features are the last dim (any leading dims are tokens); Conv2d: dim 1.
            dims = list(range(x.ndim - 1)) if isinstance(module, nn.Linear) else _unit_dims(x)
            squares[name] = squares[name] + (x ** 2).sum(dims).cpu()
        return hook

    with eval_mode(model), hooked(layers, make_hook):
        for x, _ in take_batches(data, n_batches):
            model(x.to(device))
    unused = [name for name, s in squares.items() if not isinstance(s, torch.Tensor)]
    if unused:
        raise ValueError(f"layers {unused} were never called in the forward pass, so they have no input "
                         "norms; leave them out (weight_scores(..., exclude=[...]))")
    return {name: s.sqrt().float() for name, s in squares.items()}
