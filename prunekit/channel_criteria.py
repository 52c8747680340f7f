"""Structured criteria: one importance score per neuron (Linear) or output channel (Conv2d).

Scores have shape (units,) and, as everywhere in prunekit, higher = more important.
:func:`channel_mask` turns them into a bool (units,) mask; :func:`prunekit.masks.expand_mask`
broadcasts that to a weight.

====================  ===================================================  ===========================
criterion             score of unit c                                      source
====================  ===================================================  ===========================
channel_norm          ‖W[c]‖_p, the filter's weights                       Li et al. 2017 (p = 1)
mean_activation       mean of the unit's output                            Molchanov et al. 2017
apoz_importance       1 - APoZ, APoZ = fraction of zero outputs            Hu et al. 2016
taylor_channel        mean_b (Σ over N,H,W of a·dL_b/da)², per batch b    Molchanov et al. 2019
bn_gamma              |γ_c| of the BatchNorm after the conv                Liu et al. 2017
fpgm                  Σ_k ‖W[c] - W[k]‖₂ (far from the geometric median)   He et al. 2019
====================  ===================================================  ===========================

Activations ``acts`` are (N, units) for Linear outputs or (N, C, H, W) for conv outputs; dim 1
indexes the units (PyTorch's channel convention). Get them with
:func:`prunekit.activations.collect_activations` or, batch by batch,
:func:`prunekit.activations.activation_statistics`.

Example:
    >>> w = torch.tensor([[3., -4.], [1., 0.], [0., 2.]])       # Linear with 3 neurons
    >>> channel_mask(channel_norm(w), 1 / 3)                     # prune the weakest neuron
    tensor([ True, False,  True])
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .activations import eval_mode, get_layers, hooked, model_device, take_batches
from .gradient_statistics import default_loss
from .masks import check_sparsity, topk_mask

BATCHNORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def _check_weight(weight) -> torch.Tensor:
    if not isinstance(weight, torch.Tensor):
        raise TypeError(f"weight must be a torch.Tensor, got {type(weight).__name__}")
    if weight.ndim not in (2, 4):
        raise ValueError(f"weight must be a Linear (out, in) or Conv2d (out, in, kh, kw) weight, "
                         f"got shape {tuple(weight.shape)}")
    return weight.detach()


def _check_acts(acts, name: str = "acts") -> torch.Tensor:
    if not isinstance(acts, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(acts).__name__}")
    if acts.ndim < 2 or acts.shape[0] == 0:
        raise ValueError(f"{name} must be (N, units) or (N, C, H, W) with N >= 1, got shape "
                         f"{tuple(acts.shape)}")
    return acts.detach()


def _per_unit_dims(acts: torch.Tensor) -> list[int]:
    """All dimensions but the unit dimension 1: N for (N, units); N, H, W for (N, C, H, W)."""
    return [0] + list(range(2, acts.ndim))


# ----------------------------------------------------------------------------- from weights
def channel_norm(weight: torch.Tensor, p: int = 2) -> torch.Tensor:
    """Lp norm of each output unit's weights: ``score[c] = (Σ_i |W[c, i, ...]|^p)^(1/p)``.

    Args:
        weight: a Conv2d weight (out, in, kh, kw) or a Linear weight (out, in).
        p: 1 (L1, as in Li et al. 2017, "Pruning Filters for Efficient ConvNets") or 2 (L2).

    Returns:
        (out,) scores.

    Example:
        >>> channel_norm(torch.tensor([[3., -4.], [1., 0.]]))
        tensor([5., 1.])
        >>> channel_norm(torch.tensor([[3., -4.], [1., 0.]]), p=1)
        tensor([7., 1.])
    """
    weight = _check_weight(weight)
    if isinstance(p, bool) or not isinstance(p, (int, float)) or p <= 0:
        raise ValueError(f"p must be a positive number (1 or 2 usually), got {p!r}")
    return weight.flatten(1).norm(p=p, dim=1)


def neuron_norm(weight: torch.Tensor, p: int = 2) -> torch.Tensor:
    """:func:`channel_norm` for a Linear weight (out, in): the norm of each neuron's incoming weights.

    Example:
        >>> neuron_norm(torch.tensor([[1., 1.], [0., 2.]]), p=1)
        tensor([2., 2.])
    """
    if isinstance(weight, torch.Tensor) and weight.ndim != 2:
        raise ValueError(f"neuron_norm expects a Linear weight (out, in), got shape {tuple(weight.shape)}; "
                         "use channel_norm for Conv2d weights")
    return channel_norm(weight, p)


def fpgm(weight: torch.Tensor) -> torch.Tensor:
    """Filter Pruning via Geometric Median (He et al. 2019): ``score[c] = Σ_k ‖W[c] - W[k]‖₂``.

    Filters close to the geometric median of their layer are the ones the others can best
    stand in for, so they are redundant: their summed distance to all other filters is small,
    and a small score means "prune first". Unlike norm criteria this does not need small-norm
    filters to exist.

    Args:
        weight: Conv2d (out, in, kh, kw) or Linear (out, in).

    Returns:
        (out,) summed Euclidean distances to every other filter.

    Example:
        >>> fpgm(torch.tensor([[0., 0.], [3., 4.], [6., 8.]]))    # the middle filter is central
        tensor([15., 10., 15.])
    """
    filters = _check_weight(weight).flatten(1).double()
    # Exact pairwise distances (the matmul shortcut can give small nonzero values for equal rows).
    distances = torch.cdist(filters, filters, compute_mode="donot_use_mm_for_euclid_dist")
    return distances.sum(dim=1).to(weight.dtype)


def bn_gamma(bn: nn.Module) -> torch.Tensor:
    """Network slimming (Liu et al. 2017): ``score[c] = |γ_c|``, the BatchNorm scale of channel c.

    A channel whose BN scale is near zero outputs (almost) the constant β whatever its input.
    Training with an L1 penalty on γ pushes unneeded channels there.

    Example:
        >>> bn = nn.BatchNorm2d(3)
        >>> with torch.no_grad():
        ...     _ = bn.weight.copy_(torch.tensor([0.5, -2.0, 0.0]))
        >>> bn_gamma(bn)
        tensor([0.5000, 2.0000, 0.0000])
    """
    if not isinstance(bn, BATCHNORM_TYPES):
        raise TypeError(f"bn_gamma needs a BatchNorm module (e.g. model.bn1), got {type(bn).__name__}")
    if bn.weight is None:
        raise ValueError("this BatchNorm has affine=False, so it has no γ to score")
    return bn.weight.detach().abs()


# ----------------------------------------------------------------------------- from activations
def mean_activation(acts: torch.Tensor) -> torch.Tensor:
    """Mean output of each unit: ``score[c] = mean over N (and H, W) of acts[:, c]``.

    Used after a ReLU, a unit that is rarely active contributes little downstream.

    Example:
        >>> mean_activation(torch.tensor([[0., 2.], [4., 0.]]))
        tensor([2., 1.])
    """
    acts = _check_acts(acts)
    return acts.float().mean(dim=_per_unit_dims(acts))


def apoz(acts: torch.Tensor) -> torch.Tensor:
    """Average Percentage of Zeros (Hu et al. 2016, "Network Trimming"): fraction of outputs == 0.

    ``apoz[c] = #{acts[:, c] == 0} / (N·H·W)``. Meant for outputs of a ReLU.
    **High APoZ = unimportant** (the opposite of prunekit's score convention); rank with
    :func:`apoz_importance` instead.

    Example:
        >>> apoz(torch.tensor([[0., 1.], [0., 0.], [3., 2.], [0., 5.]]))
        tensor([0.7500, 0.2500])
    """
    acts = _check_acts(acts)
    return (acts == 0).float().mean(dim=_per_unit_dims(acts))


def apoz_importance(acts: torch.Tensor) -> torch.Tensor:
    """``1 - apoz(acts)``: the fraction of nonzero outputs, so higher = more important.

    Example:
        >>> apoz_importance(torch.tensor([[0., 1.], [0., 0.], [3., 2.], [0., 5.]]))
        tensor([0.2500, 0.7500])
    """
    return 1.0 - apoz(acts)


def taylor_channel(acts: torch.Tensor, grads: torch.Tensor) -> torch.Tensor:
    """First-order Taylor score of one mini-batch per channel: ``(Σ over N,H,W of a·dL/da)²``.

    Put a gate m_c = 1 on channel c's output; removing the channel sets m_c = 0, which changes
    the batch loss L by about ``-dL/dm_c = -Σ a·dL/da`` summed over the channel's positions in
    the batch. The score is the square of that change (Molchanov et al. 2019, "Importance
    Estimation for Neural Network Pruning"). Average it over mini-batches, each with its own
    gradients (:func:`taylor_channel_scores` does); averaging the signed sum first would let
    batches cancel on a converged model.

    Args:
        acts: (N, units) or (N, C, H, W) outputs of a layer for one batch.
        grads: dL/d(acts) of the batch's mean loss, same shape.

    Returns:
        (units,) scores, all >= 0.

    Example:
        >>> taylor_channel(torch.tensor([[1., 2.], [3., 4.]]), torch.tensor([[1., -1.], [-1., 0.]]))
        tensor([4., 4.])
    """
    acts, grads = _check_acts(acts), _check_acts(grads, "grads")
    if acts.shape != grads.shape:
        raise ValueError(f"acts and grads must have the same shape, got {tuple(acts.shape)} and "
                         f"{tuple(grads.shape)}")
    return (acts * grads).double().sum(dim=_per_unit_dims(acts)).pow(2).to(acts.dtype)


def taylor_channel_scores(model: nn.Module, layer_names: list[str], data, n_batches: int | None = None,
                          loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
                          ) -> dict[str, torch.Tensor]:
    """:func:`taylor_channel` of named layers' outputs, averaged over ``n_batches`` labelled batches.

    ``score[c] = mean_b (Σ_{n,h,w} a·dL_b/da)²`` with ``L_b`` the mean loss of batch b
    (Molchanov et al. 2019: squared per batch, then averaged, so more data only lowers the
    noise). Forward hooks keep each layer's output; ``torch.autograd.grad`` then gives
    dL/d(output) directly (no ``.grad`` is written). A layer called twice in one forward pass
    adds both calls' sums before squaring (one gate on both). Runs in eval mode; the model's mode
    is restored and the hooks removed. Default loss: cross-entropy
    (:func:`prunekit.gradient_statistics.default_loss`).

    Returns:
        ``{layer name: (units,)}`` on the CPU.

    Example:
        >>> from prunekit.models import build_model
        >>> batch = [(torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))]
        >>> taylor_channel_scores(build_model("lenet5"), ["relu1", "relu3"], batch)["relu1"].shape
        torch.Size([20])
    """
    layers = get_layers(model, layer_names)
    loss_fn = default_loss if loss_fn is None else loss_fn
    device = model_device(model)
    totals = {name: 0.0 for name in layers}
    count = 0
    outputs: dict[str, list[torch.Tensor]] = {}

    def make_hook(name):
        def hook(module, inputs, output):
            outputs.setdefault(name, []).append(output)
        return hook

    with eval_mode(model), hooked(layers, make_hook), torch.enable_grad():
        for x, y in take_batches(data, n_batches):
            if y is None:
                raise ValueError("taylor_channel_scores needs labelled batches (x, y); got bare inputs")
            outputs.clear()
            loss = loss_fn(model(x.to(device)), y.to(device))
            missing = [n for n in layers if n not in outputs]
            if missing:
                raise ValueError(f"layers {missing} were not called in the forward pass")
            flat = [(n, a) for n, outs in outputs.items() for a in outs]
            grads = torch.autograd.grad(loss, [a for _, a in flat], allow_unused=True)
            gate_grads: dict[str, torch.Tensor] = {}         # dL_b/dm_c for each layer's gates
            for (name, a), g in zip(flat, grads):
                g = torch.zeros_like(a) if g is None else g    # output not used by the loss
                gate_grads[name] = gate_grads.get(name, 0.0) + (a.detach() * g).double().sum(_per_unit_dims(a)).cpu()
            for name, gate_grad in gate_grads.items():
                totals[name] = totals[name] + gate_grad ** 2
            count += 1
    outputs.clear()  # drop the last graph
    return {name: (totals[name] / count).float() for name in layers}


# ----------------------------------------------------------------------------- to a mask
def channel_mask(scores: torch.Tensor, fraction: float) -> torch.Tensor:
    """Keep the best units: prune exactly ``round(fraction · units)`` of the lowest scores.

    Args:
        scores: (units,) importance of each neuron/channel.
        fraction: fraction of units to prune, in [0, 1].

    Returns:
        bool (units,), ``True`` = keep. Ties: lower index pruned first (see ``topk_mask``).

    Example:
        >>> channel_mask(torch.tensor([0.9, 0.1, 0.5, 0.3]), 0.5)
        tensor([ True, False,  True, False])
    """
    if not isinstance(scores, torch.Tensor):
        raise TypeError(f"scores must be a torch.Tensor, got {type(scores).__name__}")
    if scores.ndim != 1:
        raise ValueError(f"channel scores must be 1-D (units,), got shape {tuple(scores.shape)}; "
                         "for per-weight scores use prunekit.masks.topk_mask")
    return topk_mask(scores, check_sparsity(fraction, "fraction"))
