"""Surgery: physically remove neurons and channels, so the pruned model is smaller and faster.

Masks (``prunekit.pruning``) keep a layer's shape and store zeros; surgery builds *smaller layers*
holding only the kept rows and columns. For a hidden neuron / channel ``c`` that means:

* delete output ``c`` of its producer (a row of the weight, an entry of the bias),
* delete entry ``c`` of every BatchNorm on it (γ, β, running mean and variance),
* delete input ``c`` of every consumer (a column of a Linear, an input plane of a Conv2d; after
  a ``Flatten`` the ``spatial`` consecutive columns ``c*spatial .. c*spatial+spatial-1``).

Why this costs nothing: the masked model
----------------------------------------
Call the **masked model** the same network with, for each removed channel, the producer's
filter **and bias** zeroed and the BatchNorm's γ **and** β zeroed (:func:`channel_masks_as_zeros`).
That channel is then exactly 0 everywhere: ``bn(0) = γ·(0 - μ)/σ + β = 0`` only because
γ = β = 0, ReLU/pooling keep 0, and a residual sum of zeros is 0. A consumer multiplies the
channel by its weights and gets 0, so deleting the channel and those weights changes nothing:

    surgery(model)(x) == masked_model(x)         (up to float rounding, ~1e-6)

Zeroing only the filter is **not** enough: the BatchNorm would still output ``β - γμ/σ``, a
constant that ReLU often lets through, and a conv bias would survive the same way. This is the
pitfall of ``torch.nn.utils.prune.ln_structured``: it zeroes weight rows and leaves biases and
BatchNorm alive, so its "pruned" channels still feed the next layer.

The result is always a **fresh model** (a deep copy with new, smaller layers); the input model is
never changed. Optimizers hold the old parameters, so build a new optimizer after surgery.
prunekit masks (``*_keep`` buffers) on the layers are carried over, sliced like the weights;
other hooks on replaced layers are not.

Example:
    >>> from prunekit.models import build_model
    >>> small = prune_channels(build_model("vgg"), 0.5)
    >>> small.conv1.out_channels, small.fc.in_features
    (16, 128)
"""
from __future__ import annotations

import copy
from typing import Iterable, Mapping, Sequence

import torch
from torch import nn

from .channel_criteria import channel_norm
from .dependency import ChannelGroup, Consumer, dependency_groups
from .masks import check_sparsity
from .pruning import MASK_SUFFIX, apply_masks

__all__ = ["ChannelGroup", "Consumer", "dependency_groups", "remove_neurons", "prune_conv_bn_conv",
           "shrink", "channels_to_keep", "prune_channels", "channel_masks_as_zeros"]

IMPORTANCES = ("l2", "l1", "bn")


# ----------------------------------------------------------------------------- indices
def _keep_indices(keep, size: int, what: str) -> torch.Tensor:
    """``keep`` as a sorted LongTensor of distinct indices in [0, size); a bool mask is accepted too."""
    keep = torch.as_tensor(keep)
    if keep.dtype == torch.bool:
        if keep.shape != (size,):
            raise ValueError(f"{what}: a bool keep mask must have shape ({size},), got {tuple(keep.shape)}")
        keep = keep.nonzero().flatten()
    if keep.numel() == 0:
        raise ValueError(f"{what}: keep is empty; keep at least one of the {size} channels")
    if keep.ndim != 1 or keep.is_floating_point():
        raise ValueError(f"{what}: keep must be a 1-d list/tensor of integer indices, got {keep!r}")
    keep = keep.long().cpu()
    if keep.min() < 0 or keep.max() >= size:
        raise ValueError(f"{what}: keep indices must be in [0, {size}), got min {keep.min().item()}, "
                         f"max {keep.max().item()}")
    if keep.unique().numel() != keep.numel():
        raise ValueError(f"{what}: keep has repeated indices; surgery removes channels, it cannot copy them")
    return keep.sort().values


def _input_columns(keep: torch.Tensor, spatial: int) -> torch.Tensor:
    """Flattened inputs of the kept channels: channel c -> columns c*spatial .. c*spatial+spatial-1.

    Example: keep [0, 2], spatial 2 -> [0, 1, 4, 5].
    """
    return (keep[:, None] * spatial + torch.arange(spatial)).flatten()


# ----------------------------------------------------------------------------- smaller layers
def _carry_masks(old: nn.Module, new: nn.Module, slice_like) -> None:
    """Re-attach old's prunekit masks, sliced the way its parameters were."""
    masks = {b[: -len(MASK_SUFFIX)]: slice_like(b[: -len(MASK_SUFFIX)], m)
             for b, m in old.named_buffers(recurse=False) if b.endswith(MASK_SUFFIX)}
    if masks:
        apply_masks(new, masks)


@torch.no_grad()
def _smaller_layer(layer: nn.Module, out_keep: torch.Tensor | None = None,
                   in_keep: torch.Tensor | None = None, spatial: int = 1) -> nn.Module:
    """A new Linear/Conv2d holding rows ``out_keep`` and input channels ``in_keep`` of ``layer``."""
    if type(layer) not in (nn.Linear, nn.Conv2d):
        raise TypeError(f"expected a plain nn.Linear or nn.Conv2d, got {type(layer).__name__}")
    if isinstance(layer, nn.Conv2d) and layer.groups != 1:
        raise ValueError(f"cannot rebuild a grouped conv (groups={layer.groups}): {layer}")
    w = layer.weight
    rows = torch.arange(w.shape[0]) if out_keep is None else out_keep
    cols = torch.arange(w.shape[1]) if in_keep is None else _input_columns(in_keep, spatial)

    def slice_like(param_name: str, t: torch.Tensor) -> torch.Tensor:
        t = t.index_select(0, rows.to(t.device))
        return t if param_name == "bias" else t.index_select(1, cols.to(t.device))

    factory = dict(device=w.device, dtype=w.dtype)
    has_bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        new = nn.Linear(len(cols), len(rows), bias=has_bias, **factory)
    else:
        new = nn.Conv2d(len(cols), len(rows), layer.kernel_size, stride=layer.stride,
                        padding=layer.padding, dilation=layer.dilation, bias=has_bias,
                        padding_mode=layer.padding_mode, **factory)
    for name, param in layer.named_parameters(recurse=False):
        getattr(new, name).copy_(slice_like(name, param)).requires_grad_(param.requires_grad)
    new.train(layer.training)
    _carry_masks(layer, new, slice_like)
    return new


@torch.no_grad()
def _smaller_norm(bn: nn.Module, keep: torch.Tensor) -> nn.Module:
    """A new BatchNorm with entries ``keep`` of γ, β, running mean/var (same eps, momentum, affine)."""
    if type(bn) not in (nn.BatchNorm1d, nn.BatchNorm2d):
        raise TypeError(f"expected nn.BatchNorm1d / nn.BatchNorm2d, got {type(bn).__name__}")
    ref = next(bn.parameters(), bn.running_mean)
    factory = {} if ref is None else dict(device=ref.device, dtype=ref.dtype)
    new = type(bn)(len(keep), eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                   track_running_stats=bn.track_running_stats, **factory)
    for name, t in list(bn.named_parameters(recurse=False)) + list(bn.named_buffers(recurse=False)):
        if name.endswith(MASK_SUFFIX):
            continue
        target = getattr(new, name)
        target.copy_(t if t.ndim == 0 else t.index_select(0, keep.to(t.device)))   # 0-d: num_batches_tracked
        if isinstance(t, nn.Parameter):
            target.requires_grad_(t.requires_grad)
    new.train(bn.training)
    _carry_masks(bn, new, lambda _, m: m.index_select(0, keep.to(m.device)))
    return new


# ----------------------------------------------------------------------------- building blocks
def remove_neurons(fc_in: nn.Linear, fc_out: nn.Linear, keep) -> tuple[nn.Linear, nn.Linear]:
    """Keep hidden neurons ``keep`` of ``fc_in -> activation -> fc_out``; return two new Linears.

    ``fc_in`` loses weight rows and bias entries, ``fc_out`` loses weight columns:
    ``W_in (h, i) -> (k, i)``, ``b_in (h,) -> (k,)``, ``W_out (o, h) -> (o, k)`` for k kept of h.
    Exact when the activation maps 0 to 0 (ReLU): see the module docstring.

    Args:
        keep: indices of neurons to keep (list or LongTensor, any order; they are used sorted
            ascending, so the new neuron j is the j-th smallest kept index), or a bool mask (h,).

    Returns:
        new ``(fc_in, fc_out)`` with the same dtype, device and bias setting; the inputs are
        untouched (rebuild the optimizer to train the new ones).

    Example:
        >>> a, b = remove_neurons(nn.Linear(4, 3), nn.Linear(3, 2), [0, 2])
        >>> a.weight.shape, b.weight.shape
        (torch.Size([2, 4]), torch.Size([2, 2]))
    """
    if not (isinstance(fc_in, nn.Linear) and isinstance(fc_out, nn.Linear)):
        raise TypeError(f"remove_neurons needs two nn.Linear, got {type(fc_in).__name__} and "
                        f"{type(fc_out).__name__}; for convolutions use prune_conv_bn_conv")
    if fc_in.out_features != fc_out.in_features:
        raise ValueError(f"fc_in has {fc_in.out_features} outputs but fc_out has {fc_out.in_features} "
                         "inputs: they are not consecutive layers")
    keep = _keep_indices(keep, fc_in.out_features, "remove_neurons")
    return _smaller_layer(fc_in, out_keep=keep), _smaller_layer(fc_out, in_keep=keep)


def prune_conv_bn_conv(conv: nn.Conv2d, bn: nn.BatchNorm2d | None, next_conv: nn.Conv2d | nn.Linear,
                       keep, spatial: int = 1
                       ) -> tuple[nn.Conv2d, nn.BatchNorm2d | None, nn.Conv2d | nn.Linear]:
    """Keep output channels ``keep`` of ``conv -> bn -> ReLU -> (pool) -> next_conv``.

    Shapes, for k kept of c channels: ``conv.weight (c, i, kh, kw) -> (k, i, kh, kw)``, bias
    ``(c,) -> (k,)``; BN γ, β, running mean/var ``(c,) -> (k,)`` (eps, momentum, affine copied);
    ``next_conv.weight (o, c, kh, kw) -> (o, k, kh, kw)``. If ``next_conv`` is an ``nn.Linear``
    after ``nn.Flatten``, channel ``ch`` is its ``spatial`` columns ``ch*spatial ..
    ch*spatial+spatial-1`` (LeNet-5: 50 channels x 4 x 4 = 800 inputs, ``spatial=16``; after
    global average pooling ``spatial=1``), so its weight goes ``(o, c*spatial) -> (o, k*spatial)``.

    Args:
        bn: the BatchNorm2d on ``conv``'s outputs, or None.
        keep: channel indices (used sorted ascending) or a bool mask (c,).

    Returns:
        new ``(conv, bn, next)`` modules (``bn`` None if None was given); the inputs are untouched.

    Example:
        >>> c, b, f = prune_conv_bn_conv(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Linear(16, 2),
        ...                              [1, 3], spatial=4)
        >>> c.out_channels, b.num_features, f.in_features
        (2, 2, 8)
    """
    if not isinstance(conv, nn.Conv2d) or not isinstance(next_conv, (nn.Conv2d, nn.Linear)):
        raise TypeError(f"expected Conv2d, BatchNorm2d/None, Conv2d/Linear; got {type(conv).__name__}, "
                        f"{type(bn).__name__}, {type(next_conv).__name__}")
    channels = conv.out_channels
    if bn is not None and (not isinstance(bn, nn.BatchNorm2d) or bn.num_features != channels):
        raise ValueError(f"bn must be a BatchNorm2d({channels}) for the conv's {channels} channels, got {bn}")
    if isinstance(spatial, bool) or not isinstance(spatial, int) or spatial < 1:
        raise ValueError(f"spatial must be a positive int (flattened positions per channel), got {spatial!r}")
    if isinstance(next_conv, nn.Conv2d):
        if spatial != 1:
            raise ValueError(f"spatial={spatial} only applies when next_conv is an nn.Linear after Flatten")
        expected = next_conv.in_channels
    else:
        expected = next_conv.in_features
    if expected != channels * spatial:
        raise ValueError(f"next layer reads {expected} inputs, but {channels} channels x spatial={spatial} "
                         f"= {channels * spatial}; pass spatial = inputs / channels")
    keep = _keep_indices(keep, channels, "prune_conv_bn_conv")
    new_bn = None if bn is None else _smaller_norm(bn, keep)
    return (_smaller_layer(conv, out_keep=keep), new_bn,
            _smaller_layer(next_conv, in_keep=keep, spatial=spatial))


# ----------------------------------------------------------------------------- whole models
def _groups_by_name(model: nn.Module, names: Iterable[str], what: str) -> dict[str, ChannelGroup]:
    groups = {g.name: g for g in dependency_groups(model)}
    unknown = [n for n in names if n not in groups]
    if unknown:
        raise ValueError(f"{what}: no channel group named {unknown}; the groups of this model are "
                         f"{list(groups)} (see dependency_groups)")
    return groups


def _replace(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def shrink(model: nn.Module, keep: Mapping[str, Sequence[int] | torch.Tensor]) -> nn.Module:
    """A new, smaller model keeping ``keep[group]`` channels of each named dependency group.

    Args:
        model: a model :func:`dependency_groups` can read (the zoo models).
        keep: ``{"conv3": indices or bool mask, "stage2": ...}``; groups not listed keep all channels.

    Returns:
        a fresh model (deep copy); ``model`` is untouched. Build a new optimizer for it.

    Example:
        >>> from prunekit.models import build_model
        >>> small = shrink(build_model("lenet300"), {"fc1": range(0, 300, 3)})
        >>> small.fc1.out_features, small.fc2.in_features
        (100, 100)
    """
    groups = _groups_by_name(model, keep, "shrink")
    new = copy.deepcopy(model)
    # Each group touches its own dimension of each layer (outputs of producers, inputs of
    # consumers), so the groups can be cut one after another in any order.
    for name, indices in keep.items():
        group = groups[name]
        indices = _keep_indices(indices, group.size, f"group {name!r}")
        for layer in group.producers:
            _replace(new, layer, _smaller_layer(new.get_submodule(layer), out_keep=indices))
        for norm in group.norms:
            _replace(new, norm, _smaller_norm(new.get_submodule(norm), indices))
        for consumer in group.consumers:
            _replace(new, consumer.name, _smaller_layer(new.get_submodule(consumer.name),
                                                        in_keep=indices, spatial=consumer.spatial))
    return new


def _group_importance(model: nn.Module, group: ChannelGroup, importance: str) -> torch.Tensor:
    """(size,) scores: Lp norm of each channel's filters summed over producers, or Σ|γ| over norms."""
    if importance == "bn":
        gammas = [model.get_submodule(n).weight for n in group.norms if model.get_submodule(n).affine]
        if not gammas:
            raise ValueError(f"importance='bn' needs a BatchNorm with γ on group {group.name!r}, which "
                             "has none; use 'l1' or 'l2'")
        # Network Slimming (Liu et al. 2017): |γ| scales the channel's whole output.
        return sum(g.detach().abs().float().cpu() for g in gammas)
    p = 1 if importance == "l1" else 2
    return sum(channel_norm(model.get_submodule(n).weight, p=p).float().cpu() for n in group.producers)


def channels_to_keep(model: nn.Module, amount: float | Mapping[str, float], importance: str = "l2",
                     exclude: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Which channels :func:`prune_channels` keeps: ``{group name: sorted LongTensor of indices}``.

    Each chosen group of ``size`` channels loses ``round(amount * size)`` channels, at most
    ``size - 1`` (a group never disappears), those with the lowest importance; among equal
    scores the lower index goes first (as ``prunekit.masks.topk_mask``).

    Args:
        amount: fraction of channels to remove in every group, or ``{"conv3": 0.5, ...}`` (only
            those groups; ``exclude`` is then ignored).
        importance: ``"l2"`` / ``"l1"``: norm of each producer filter (Li et al. 2017), summed over
            a residual group's producers; ``"bn"``: |γ| summed over the group's BatchNorms.
        exclude: group names to leave whole.

    Example:
        >>> from prunekit.models import build_model
        >>> keep = channels_to_keep(build_model("lenet5"), {"conv2": 0.2})
        >>> len(keep["conv2"])
        40
    """
    if importance not in IMPORTANCES:
        raise ValueError(f"importance must be one of {IMPORTANCES}, got {importance!r}")
    exclude = list(exclude)
    if isinstance(amount, Mapping):
        groups = _groups_by_name(model, amount, "amount")
        targets = {n: check_sparsity(a, f"amount[{n!r}]") for n, a in amount.items()}
    else:
        groups = _groups_by_name(model, exclude, "exclude")
        amount = check_sparsity(amount, "amount")
        targets = {n: amount for n in groups if n not in exclude}
    keep = {}
    for name, fraction in targets.items():
        group = groups[name]
        n_remove = min(int(round(fraction * group.size)), group.size - 1)
        scores = _group_importance(model, group, importance)
        order = torch.sort(scores, stable=True).indices
        keep[name] = order[n_remove:].sort().values
    return keep


def prune_channels(model: nn.Module, amount: float | Mapping[str, float], importance: str = "l2",
                   exclude: Iterable[str] = ()) -> nn.Module:
    """Structured pruning with surgery: remove the least important channels of every group.

    ``shrink(model, channels_to_keep(model, amount, importance, exclude))``; see
    :func:`channels_to_keep` for the rule. The output layer's outputs are never removed.

    Returns:
        a fresh, smaller model; ``model`` is untouched. Build a new optimizer for it.

    Example:
        >>> from prunekit.models import build_model
        >>> small = prune_channels(build_model("resnet20"), 0.5, exclude=["stage1"])
        >>> small.stage1[0].conv1.out_channels, small.stage1[0].conv2.out_channels
        (8, 16)
    """
    return shrink(model, channels_to_keep(model, amount, importance, exclude))


@torch.no_grad()
def channel_masks_as_zeros(model: nn.Module, keep: Mapping[str, Sequence[int] | torch.Tensor]) -> nn.Module:
    """The masked model: a copy with the removed channels' filters, biases, γ and β set to 0.

    Same shapes as ``model``; ``shrink(model, keep)`` computes the same outputs (module
    docstring). The zeros are attached as prunekit masks, so ``prunekit.train.train`` keeps them
    zero while fine-tuning; consumers' weights are left as they are (they multiply zeros).

    Example:
        >>> from prunekit.models import build_model
        >>> masked = channel_masks_as_zeros(build_model("lenet300"), {"fc2": [0, 1]})
        >>> int((masked.fc2.weight.abs().sum(1) > 0).sum()), masked.fc3.in_features
        (2, 100)
    """
    groups = _groups_by_name(model, keep, "channel_masks_as_zeros")
    new = copy.deepcopy(model)
    masks = {}
    for name, indices in keep.items():
        group = groups[name]
        indices = _keep_indices(indices, group.size, f"group {name!r}")
        alive = torch.zeros(group.size, dtype=torch.bool)
        alive[indices] = True
        for layer in group.producers + group.norms:
            for param_name, param in new.get_submodule(layer).named_parameters(recurse=False):
                shape = [-1] + [1] * (param.ndim - 1)
                masks[f"{layer}.{param_name}"] = alive.view(shape).expand_as(param)
    return apply_masks(new, masks)
