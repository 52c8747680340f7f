"""Sparsity-inducing penalties: add one to the loss during training so that pruning later hurts less.

Each penalty is a function ``penalty(model, strength, ...) -> scalar tensor`` (differentiable), and
:func:`make_regularizer` turns one into the ``regularizer=f(model)`` that :func:`prunekit.train.train`
adds to the cross-entropy:

============================= ========================== ====================================
penalty                       formula                    pushes to zero
============================= ========================== ====================================
:func:`l1_penalty`            λ Σ_l Σ_i |w_i|            single weights (unstructured)
:func:`group_lasso_penalty`   λ Σ_l Σ_g ||W_g||_2        whole rows/filters (``dim=0``) or
                                                         input columns (``dim=1``): structured
:func:`bn_gamma_l1`           λ Σ_BN Σ_c |γ_c|           BatchNorm scales → whole channels
============================= ========================== ====================================

Note that :func:`prunekit.train.train` already applies L2 weight decay (``weight_decay=5e-4``): L2
shrinks all weights a little, while L1 pushes many towards zero.

**Small is not zero.** Added to the loss and trained with (sub)gradient steps (SGD, Adam), these
penalties make weights or groups *small*: a step of size ``lr·λ`` towards 0 overshoots and the
value keeps oscillating around 0, so exact zeros (almost) never appear and a magnitude threshold
still has to prune. Exact zeros come from a **proximal step** after each optimizer step, which
sets to 0 whatever the penalty's step would carry past it: :func:`proximal_l1_` (soft
thresholding) and :func:`proximal_group_lasso_` (group soft thresholding), with
``threshold = lr·λ``. Chapter 02 derives and compares both.

Example:
    >>> from prunekit.models import build_model
    >>> reg = make_regularizer("l1", 1e-5)
    >>> reg(build_model("lenet300")).ndim
    0
"""
from __future__ import annotations

import inspect
from functools import partial
from typing import Callable, Iterable

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from .pruning import prunable_weights

Regularizer = Callable[[nn.Module], torch.Tensor]


def _check_strength(strength: float) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or strength < 0:
        raise ValueError(f"strength must be a number >= 0 (λ, the penalty's weight in the loss), got {strength!r}")
    return float(strength)


def _weights(model: nn.Module, exclude: Iterable[str]) -> dict[str, nn.Parameter]:
    weights = prunable_weights(model, exclude)
    if not weights:
        raise ValueError("no Linear/Conv2d weights to regularise (all excluded?)")
    return weights


def l1_penalty(model: nn.Module, strength: float, exclude: Iterable[str] = ()) -> torch.Tensor:
    """λ Σ|w| over the prunable (Linear/Conv2d) weights; biases and BatchNorm are left out.

    Its gradient λ·sign(w) pulls every weight towards 0 by the same amount, so small, useless
    weights reach (almost) zero and magnitude pruning can remove them cheaply (Han et al. 2015
    compare L1 and L2 regularisation before pruning).

    Returns:
        a scalar tensor (shape ``()``), differentiable w.r.t. the weights.

    Example:
        >>> lin = nn.Linear(2, 1); _ = nn.init.constant_(lin.weight, -3.0)
        >>> l1_penalty(nn.Sequential(lin), 0.1)
        tensor(0.6000, grad_fn=<MulBackward0>)
    """
    strength = _check_strength(strength)
    return strength * sum(w.abs().sum() for w in _weights(model, exclude).values())


def group_lasso_penalty(model: nn.Module, strength: float, dim: int = 0, exclude: Iterable[str] = ()) -> torch.Tensor:
    """λ Σ over groups of the L2 norm of each group (group lasso: Yuan & Lin 2006; Wen et al. 2016).

    A group is one slice of a weight along ``dim``:

    * ``dim=0``: one output neuron's row of a Linear (out, in), or one filter (in, kh, kw) of a
      Conv2d (out, in, kh, kw): whole neurons/filters go to zero → prune output units;
    * ``dim=1``: one input column (out,) of a Linear, or one input channel (out, kh, kw) of a
      Conv2d: whole inputs go to zero → prune input features/channels.

    The norm is not squared, so (like L1 across groups) it pulls entire groups towards zero by
    the same amount; groups are not weighted by size. Under SGD the groups become small but not
    exactly zero (they oscillate around it); use :func:`proximal_group_lasso_` after each step
    for exact zeros. At a group that is already zero, PyTorch's gradient is 0.

    Returns:
        a scalar tensor (shape ``()``).

    Example:
        >>> lin = nn.Linear(2, 2, bias=False)
        >>> lin.weight = nn.Parameter(torch.tensor([[3., 4.], [0., 0.]]))
        >>> group_lasso_penalty(nn.Sequential(lin), 1.0, dim=0)     # ||(3, 4)|| + ||(0, 0)||
        tensor(5., grad_fn=<MulBackward0>)
    """
    strength = _check_strength(strength)
    if dim not in (0, 1):
        raise ValueError(f"dim must be 0 (output rows/filters) or 1 (input columns/channels), got {dim!r}")
    total = 0
    for w in _weights(model, exclude).values():
        groups = w.movedim(dim, 0).flatten(1)           # (groups, entries per group)
        total = total + groups.norm(dim=1).sum()
    return strength * total


def bn_gamma_l1(model: nn.Module, strength: float) -> torch.Tensor:
    """λ Σ|γ| over all BatchNorm scale factors (network slimming, Liu et al. 2017).

    Each BatchNorm channel multiplies its normalised output by γ_c; pushing γ_c to 0 silences
    the channel, which can then be removed with the conv filter that feeds it.

    Returns:
        a scalar tensor (shape ``()``).

    Example:
        >>> bn = nn.BatchNorm2d(3); _ = nn.init.constant_(bn.weight, -0.5)
        >>> bn_gamma_l1(nn.Sequential(bn), 2.0)
        tensor(3., grad_fn=<MulBackward0>)
    """
    strength = _check_strength(strength)
    gammas = [m.weight for m in model.modules() if isinstance(m, _BatchNorm) and m.weight is not None]
    if not gammas:
        raise ValueError("the model has no BatchNorm layers with a scale γ (affine=True); network "
                         "slimming needs a BN model such as build_model('vgg') or 'resnet20'")
    return strength * sum(g.abs().sum() for g in gammas)


PENALTIES = {"l1": l1_penalty, "group_lasso": group_lasso_penalty, "bn_gamma": bn_gamma_l1}


# ----------------------------------------------------------------------------- proximal steps
@torch.no_grad()
def proximal_l1_(model: nn.Module, threshold: float, exclude: Iterable[str] = ()) -> int:
    """Soft thresholding, in place: ``w ← sign(w)·max(|w| − threshold, 0)``; returns the zeros made.

    The proximal step of ``λ Σ|w|``: call it after each optimizer step (on the loss *without* the
    L1 term) with ``threshold = lr·λ``. Every weight within ``threshold`` of 0 becomes exactly 0,
    which a gradient step on the penalty never does.

    Example:
        >>> lin = nn.Linear(3, 1, bias=False)
        >>> lin.weight = nn.Parameter(torch.tensor([[0.5, -0.05, -2.0]]))
        >>> proximal_l1_(nn.Sequential(lin), 0.1), lin.weight.tolist()
        (1, [[0.4000000059604645, 0.0, -1.899999976158142]])
    """
    threshold = _check_strength(threshold)
    zeros = 0
    for w in _weights(model, exclude).values():
        w.sub_(w.clamp(-threshold, threshold))      # = sign(w)·max(|w| − t, 0), and +0 not -0
        zeros += int((w == 0).sum())
    return zeros


@torch.no_grad()
def proximal_group_lasso_(model: nn.Module, threshold: float, dim: int = 0, exclude: Iterable[str] = ()) -> int:
    """Group soft thresholding, in place: ``W_g ← W_g·max(1 − threshold/‖W_g‖₂, 0)``; returns zero groups.

    The proximal step of :func:`group_lasso_penalty` (same groups, same ``dim``): after each
    optimizer step, with ``threshold = lr·λ``, every group whose norm is at most ``threshold``
    becomes exactly zero and the others shrink towards zero by ``threshold``.

    Example:
        >>> lin = nn.Linear(2, 2, bias=False)
        >>> lin.weight = nn.Parameter(torch.tensor([[3., 4.], [0.03, 0.04]]))     # norms 5 and 0.05
        >>> proximal_group_lasso_(nn.Sequential(lin), 0.1, dim=0), lin.weight.detach()
        (1, tensor([[2.9400, 3.9200],
                [0.0000, 0.0000]]))
    """
    threshold = _check_strength(threshold)
    if dim not in (0, 1):
        raise ValueError(f"dim must be 0 (output rows/filters) or 1 (input columns/channels), got {dim!r}")
    zero_groups = 0
    for w in _weights(model, exclude).values():
        groups = w.movedim(dim, 0).flatten(1)
        norms = groups.norm(dim=1)
        factor = (1 - threshold / norms.clamp(min=1e-30)).clamp(min=0)
        shape = [1] * w.dim()
        shape[dim] = -1
        w.mul_(factor.view(shape))
        zero_groups += int((factor == 0).sum())
    return zero_groups


def make_regularizer(kind: str, strength: float, **options) -> Regularizer:
    """A ``regularizer(model) -> scalar`` for ``train(..., regularizer=...)``.

    Args:
        kind: ``"l1"``, ``"group_lasso"`` or ``"bn_gamma"``.
        strength: λ.
        **options: passed to the penalty (``exclude=``, and ``dim=`` for group lasso); checked now.

    Example:
        >>> reg = make_regularizer("group_lasso", 1e-4, dim=0, exclude=["fc3"])
        >>> train(model, data, regularizer=reg)         # doctest: +SKIP
    """
    if kind not in PENALTIES:
        raise ValueError(f"unknown regularizer {kind!r}: expected one of {', '.join(PENALTIES)}")
    penalty = PENALTIES[kind]
    try:
        inspect.signature(penalty).bind(None, strength, **options)
    except TypeError as exc:
        raise TypeError(f"{penalty.__name__} does not accept {sorted(options)}: {exc}") from None
    _check_strength(strength)
    return partial(penalty, strength=strength, **options)
