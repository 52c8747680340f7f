"""Pruning a model: attach masks to weights by name, layer-wise or globally, and keep them.

How masks live on a model (the mechanism)
-----------------------------------------
For a parameter ``fc1.weight`` the mask is a bool **non-persistent buffer** ``fc1.weight_keep``
on the same module. Pruned entries of the weight are set to exactly zero, and they are kept
zero in two ways:

1. :func:`enforce_masks` multiplies every weight by its mask; :func:`prunekit.train.train`
   calls it after **every optimizer step**, so momentum (SGD) and moment estimates (Adam)
   cannot revive a pruned weight. :func:`keep_masks_on` does the same for your own optimizer.
2. a forward pre-hook re-applies the mask before each forward pass, so even a hand-written
   loop that forgets (1) computes with the pruned weights.

Why not ``torch.nn.utils.prune``? Its reparametrisation renames the weight (``weight_orig`` +
``weight_mask``), so the state dict no longer loads into a freshly built model and
``copy.deepcopy`` fails. Here the weight stays an ordinary parameter holding zeros, so:

* ``model.state_dict()`` is a plain state dict: it loads into a fresh model, zeros included;
* ``copy.deepcopy(model)`` copies masks and hooks;
* :func:`make_permanent` drops masks and hooks and leaves a plain model.

Masks only ever grow: pruning an already-pruned model keeps what was pruned (a lower target
never revives weights). Converters to and from ``torch.nn.utils.prune`` allow cross-checks.

Example:
    >>> from prunekit.models import build_model
    >>> model = build_model("lenet300")
    >>> masks = prune_layerwise(model, 0.9)
    >>> round(model_sparsity(model), 3)
    0.9
"""
from __future__ import annotations

from typing import Iterable, Mapping

import torch
from torch import nn

from .masks import check_sparsity, num_to_prune, topk_mask

MASK_SUFFIX = "_keep"
PRUNABLE_TYPES = (nn.Linear, nn.Conv2d)


# ----------------------------------------------------------------------------- naming
def prunable_weights(model: nn.Module, exclude: Iterable[str] = (),
                     types: tuple[type, ...] = PRUNABLE_TYPES) -> dict[str, nn.Parameter]:
    """The weights pruning acts on: ``{"fc1.weight": Parameter, ...}`` of every Linear/Conv2d.

    Args:
        exclude: parameter or module names to leave alone (e.g. ``["fc3"]`` for the output layer).

    Example:
        >>> from prunekit.models import build_model
        >>> list(prunable_weights(build_model("lenet300"), exclude=["fc3"]))
        ['fc1.weight', 'fc2.weight']
    """
    exclude = set(exclude)
    module_names = {n for n, _ in model.named_modules()}
    unknown = [e for e in exclude if not e or (e not in module_names
                                               and not (e.endswith(".weight") and e[:-7] in module_names))]
    if unknown:
        raise ValueError(f"exclude names not found in the model: {sorted(unknown)}")
    weights = {}
    for module_name, module in model.named_modules():
        if isinstance(module, types):
            name = f"{module_name}.weight" if module_name else "weight"
            if module_name not in exclude and name not in exclude:
                weights[name] = module.weight
    return weights


def _resolve(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """``"stage1.0.conv1.weight"`` -> (the conv module, ``"weight"``), with a helpful error."""
    module_name, _, param_name = name.rpartition(".")
    try:
        module = model.get_submodule(module_name) if module_name else model
    except AttributeError:
        raise ValueError(f"no module {module_name!r} in the model (from mask name {name!r}); "
                         f"prunable names: {list(prunable_weights(model))}") from None
    param = getattr(module, param_name, None)
    if not isinstance(param, nn.Parameter):
        raise ValueError(f"{name!r} is not a parameter of the model; prunable names: "
                         f"{list(prunable_weights(model))}")
    return module, param_name


# ----------------------------------------------------------------------------- the mechanism
class _MaskBeforeForward:
    """Forward pre-hook: zero the masked entries if anything revived them. Stateless, so deep-copyable."""

    def __call__(self, module: nn.Module, inputs):
        _apply_module_masks(module, skip_unchanged=True)


def _module_masks(module: nn.Module) -> dict[str, torch.Tensor]:
    return {b[: -len(MASK_SUFFIX)]: mask for b, mask in module.named_buffers(recurse=False)
            if b.endswith(MASK_SUFFIX)}


@torch.no_grad()
def _apply_module_masks(module: nn.Module, skip_unchanged: bool = False) -> None:
    for param_name, mask in _module_masks(module).items():
        weight = getattr(module, param_name)
        # Before a forward pass (skip_unchanged): a tensor's version counter grows with every in-place
        # change (optimizer steps, loading); if it has not moved since the last check, the zeros are
        # still there and we skip the work, so masked models run at the speed of plain ones.
        checked = f"_{param_name}_checked_version"
        if skip_unchanged and getattr(module, checked, None) == weight._version:
            continue
        # Only write when needed: an in-place write would invalidate a pending autograd graph.
        # (masked_fill keeps just the pruned entries; ~5x faster than indexing weight[~mask].)
        if weight.masked_fill(mask, 0).any():
            weight.mul_(mask)
        object.__setattr__(module, checked, weight._version)


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Attach bool masks to parameters by name and zero the pruned entries (in place).

    A parameter that already has a mask keeps its pruned entries pruned (masks are AND-ed).

    Args:
        masks: ``{"fc1.weight": bool tensor shaped like fc1.weight, ...}`` (True = keep).

    Returns:
        the same model, for chaining.

    Example:
        >>> from prunekit.models import build_model
        >>> model = build_model("lenet300")
        >>> _ = apply_masks(model, {"fc3.weight": torch.zeros(10, 100, dtype=torch.bool)})
        >>> model.fc3.weight.abs().sum().item()
        0.0
    """
    for name, mask in masks.items():
        module, param_name = _resolve(model, name)
        weight = getattr(module, param_name)
        if tuple(mask.shape) != tuple(weight.shape):
            raise ValueError(f"mask for {name!r} has shape {tuple(mask.shape)}, the parameter has "
                             f"{tuple(weight.shape)}")
        mask = mask.to(device=weight.device, dtype=torch.bool)
        old = getattr(module, param_name + MASK_SUFFIX, None)
        if old is not None:
            mask = mask & old
        module.register_buffer(param_name + MASK_SUFFIX, mask.clone(), persistent=False)
        module.__dict__.pop(f"_{param_name}_checked_version", None)  # a new mask: check again
        if not any(isinstance(h, _MaskBeforeForward) for h in module._forward_pre_hooks.values()):
            module.register_forward_pre_hook(_MaskBeforeForward())
        _apply_module_masks(module)
    return model


def enforce_masks(model: nn.Module) -> None:
    """Multiply every masked weight of ``model`` by its mask. Call after each optimizer step."""
    for module in model.modules():
        _apply_module_masks(module)


def keep_masks_on(optimizer: torch.optim.Optimizer, model: nn.Module):
    """Make ``optimizer.step()`` re-apply ``model``'s masks after every step (for your own loops).

    Returns the hook handle; ``handle.remove()`` stops it.
    """
    return optimizer.register_step_post_hook(lambda *args, **kwargs: enforce_masks(model))


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """The masks a model carries: ``{"fc1.weight": bool tensor, ...}`` (copies)."""
    masks = {}
    for module_name, module in model.named_modules():
        for param_name, mask in _module_masks(module).items():
            masks[f"{module_name}.{param_name}" if module_name else param_name] = mask.clone()
    return masks


def masks_from_zeros(model: nn.Module, exclude: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Masks that keep every nonzero prunable weight, e.g. after loading a pruned state dict.

    ``apply_masks(model, masks_from_zeros(model))`` makes the zeros stick during further training.
    """
    return {name: w.detach() != 0 for name, w in prunable_weights(model, exclude).items()}


def make_permanent(model: nn.Module) -> nn.Module:
    """Remove masks and hooks, keeping the zeros: what is left is a plain model (in place)."""
    enforce_masks(model)
    for module in model.modules():
        for param_name in _module_masks(module):
            delattr(module, param_name + MASK_SUFFIX)
            module.__dict__.pop(f"_{param_name}_checked_version", None)
        for key, hook in list(module._forward_pre_hooks.items()):
            if isinstance(hook, _MaskBeforeForward):
                del module._forward_pre_hooks[key]
    return model


def model_sparsity(model: nn.Module, exclude: Iterable[str] = ()) -> float:
    """Fraction of zero entries over all prunable weights together (biases and BN not counted)."""
    weights = prunable_weights(model, exclude)
    zeros = sum((w == 0).sum().item() for w in weights.values())
    return zeros / sum(w.numel() for w in weights.values())


# ----------------------------------------------------------------------------- strategies
def _scores_for(model, names, scores):
    weights = prunable_weights(model)
    missing = [n for n in names if n not in weights]
    if missing:
        raise ValueError(f"cannot prune {missing}: not Linear/Conv2d weights. Prunable: {list(weights)}")
    if scores is None:
        return {n: weights[n].detach().abs() for n in names}
    for n in names:
        if n not in scores:
            raise ValueError(f"scores has no entry for {n!r}; give it a score, or leave it dense with "
                             f"exclude=[{n.rpartition('.')[0]!r}] (the same exclude as when scoring)")
        if scores[n].shape != weights[n].shape:
            raise ValueError(f"scores[{n!r}] has shape {tuple(scores[n].shape)}, weight has "
                             f"{tuple(weights[n].shape)}")
    return {n: scores[n].detach() for n in names}


def _rank_with_old_mask(model, name, score):
    """Already-pruned entries score -inf so they are the first to go (masks only grow)."""
    module, param_name = _resolve(model, name)
    old = getattr(module, param_name + MASK_SUFFIX, None)   # not get_masks: it copies every mask
    return score if old is None else score.float().masked_fill(~old.to(score.device), float("-inf"))


def row_topk_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Prune exactly ``round(sparsity · row_size)`` of the lowest scores in every output row.

    A row is everything that feeds one output unit: ``scores[i]`` of a Linear (out, in) or one
    filter ``scores[i]`` (in, kh, kw) of a Conv2d. Ties: the lower index in the row goes first,
    as in :func:`prunekit.masks.topk_mask`.

    Example:
        >>> row_topk_mask(torch.tensor([[4., 1., 3., 2.], [1., 2., 3., 4.]]), 0.5)
        tensor([[ True, False,  True, False],
                [False, False,  True,  True]])
    """
    if not isinstance(scores, torch.Tensor) or scores.ndim < 2:
        raise ValueError("per-row pruning needs scores with one row per output unit, (out, ...); "
                         f"got {getattr(scores, 'shape', type(scores).__name__)}")
    if torch.isnan(scores).any():
        raise ValueError("scores contain NaN; check the criterion's inputs")
    rows = scores.detach().flatten(1).float()
    k = num_to_prune(rows.shape[1], sparsity)
    # A stable sort puts equal scores in index order, so the lower index is pruned first.
    lowest = torch.sort(rows, dim=1, stable=True).indices[:, :k]
    keep = torch.ones_like(rows, dtype=torch.bool).scatter_(1, lowest, False)
    return keep.view_as(scores)


def prune_layerwise(model: nn.Module, sparsity: float | Mapping[str, float],
                    scores: Mapping[str, torch.Tensor] | None = None, exclude: Iterable[str] = (),
                    per_row: bool = False) -> dict[str, torch.Tensor]:
    """Prune each layer separately to its own sparsity (lowest scores first); returns the masks.

    Args:
        sparsity: one fraction for every prunable layer, or ``{"fc1.weight": 0.9, ...}`` (only
            those layers are pruned).
        scores: importance per weight (default ``|w|``, magnitude pruning).
        exclude: layers to leave dense (ignored when ``sparsity`` is a dict).
        per_row: compare weights only within each output row (a Linear row, a conv filter) and
            prune exactly ``round(sparsity · row_size)`` in *every* row, as Wanda does (Sun et
            al. 2023). Default: one ranking over the whole layer.

    With ``per_row=True`` on a model that already carries masks, earlier pruned entries stay
    pruned (masks only grow), so a row pruned more than the target keeps its extra zeros.

    Example:
        >>> from prunekit.models import build_model
        >>> masks = prune_layerwise(build_model("lenet300"), {"fc1.weight": 0.5})
        >>> masks["fc1.weight"].float().mean().item()
        0.5
        >>> masks = prune_layerwise(build_model("lenet300"), 0.5, per_row=True)
        >>> masks["fc2.weight"].sum(dim=1).unique()          # every row keeps 150 of its 300
        tensor([150])
    """
    if isinstance(sparsity, Mapping):
        targets = {n: check_sparsity(s, f"sparsity[{n!r}]") for n, s in sparsity.items()}
    else:
        targets = {n: check_sparsity(sparsity) for n in prunable_weights(model, exclude)}
    all_scores = _scores_for(model, list(targets), scores)
    to_mask = row_topk_mask if per_row else topk_mask
    masks = {n: to_mask(_rank_with_old_mask(model, n, all_scores[n]), s) for n, s in targets.items()}
    apply_masks(model, masks)
    return get_masks(model)


def prune_global(model: nn.Module, sparsity: float, scores: Mapping[str, torch.Tensor] | None = None,
                 names: Iterable[str] | None = None, exclude: Iterable[str] = (),
                 normalize: str | None = None) -> dict[str, torch.Tensor]:
    """One ranking across layers: prune the ``sparsity`` fraction of all chosen weights together.

    Layers with many small weights lose more than others; the total count is exact.

    Args:
        names: the weights ranked together (default: every prunable weight not excluded).
        scores: importance per weight (default ``|w|``).
        normalize: ``None``, ``"l2"`` (divide each layer's scores by their L2 norm) or ``"mean"``
            (by their mean), so layers with larger weights do not dominate the ranking.

    Example:
        >>> from prunekit.models import build_model
        >>> model = build_model("lenet300")
        >>> _ = prune_global(model, 0.8)
        >>> round(model_sparsity(model), 4)
        0.8
    """
    sparsity = check_sparsity(sparsity)
    names = list(names) if names is not None else list(prunable_weights(model, exclude))
    if not names:
        raise ValueError("no layers to prune: every prunable layer was excluded")
    all_scores = _scores_for(model, names, scores)
    if normalize is not None:
        if normalize not in ("l2", "mean"):
            raise ValueError(f"normalize must be None, 'l2' or 'mean', got {normalize!r}")
        scale = {n: (s.float().norm() if normalize == "l2" else s.float().mean()).clamp_min(1e-12)
                 for n, s in all_scores.items()}
        all_scores = {n: s.float() / scale[n] for n, s in all_scores.items()}
    ranked = [_rank_with_old_mask(model, n, all_scores[n]).float().flatten() for n in names]
    flat_mask = topk_mask(torch.cat(ranked), sparsity)
    masks, start = {}, 0
    for n, r in zip(names, ranked):
        masks[n] = flat_mask[start:start + r.numel()].view_as(all_scores[n])
        start += r.numel()
    apply_masks(model, masks)
    return get_masks(model)


# ----------------------------------------------------------------------------- torch.nn.utils.prune
def to_torch_prune(model: nn.Module) -> nn.Module:
    """Re-express prunekit masks as ``torch.nn.utils.prune`` reparametrisations (in place)."""
    from torch.nn.utils import prune

    masks = get_masks(model)
    make_permanent(model)
    for name, mask in masks.items():
        module, param_name = _resolve(model, name)
        prune.custom_from_mask(module, param_name, mask)
    return model


def from_torch_prune(model: nn.Module) -> nn.Module:
    """Turn ``torch.nn.utils.prune`` reparametrisations into prunekit masks (in place)."""
    from torch.nn.utils import prune

    masks = {}
    for module_name, module in model.named_modules():
        for hook in list(module._forward_pre_hooks.values()):
            if isinstance(hook, prune.BasePruningMethod):
                name = hook._tensor_name
                masks[f"{module_name}.{name}" if module_name else name] = getattr(module, name + "_mask").bool()
                prune.remove(module, name)
    return apply_masks(model, masks)


def plain_state_dict(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Fold ``torch.nn.utils.prune`` keys (``x_orig`` * ``x_mask``) into plain ``x`` keys.

    A state dict saved from a torch-pruned model has ``fc1.weight_orig`` and ``fc1.weight_mask``
    instead of ``fc1.weight`` and fails to load into a fresh model; this repairs it.
    """
    out = {}
    for key, value in state_dict.items():
        if key.endswith("_orig"):
            base = key[: -len("_orig")]
            out[base] = value * state_dict[base + "_mask"]
        elif key.endswith("_mask") and key[: -len("_mask")] + "_orig" in state_dict:
            continue
        else:
            out[key] = value
    return out
