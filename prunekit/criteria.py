"""Weight-level pruning criteria: an importance score for every single weight.

Each criterion is a pure function that returns scores **shaped like the weight**, higher =
more important (pruning removes the lowest). Feed them to the strategies of
:mod:`prunekit.pruning` as a dict keyed by parameter name; :func:`weight_scores` builds that
dict for a whole model:

=============  ======================  ===============================================
name           score of weight w       source
=============  ======================  ===============================================
magnitude      |w|                     Han et al. 2015
l2             w²                      (same ranking as |w| within a tensor)
random         uniform noise, seeded   the baseline every criterion must beat
gradient       √(mean_b g_b²)          RMS of the per-batch gradients g_b = dL_b/dw
taylor         mean_b (w·g_b)²         Molchanov et al. 2019 (per mini-batch b)
obd            ½·h·w²                  LeCun et al. 1990, h ≈ empirical Fisher diagonal
wanda          |w|·‖x_j‖₂              Sun et al. 2023, x_j = j-th input feature
movement       Σ_t w·Δw                post-hoc approximation of Sanh et al. 2020's
                                       movement scores (needs fine-tuning; not in
                                       weight_scores; see :func:`movement`)
=============  ======================  ===============================================

Why per batch? On a converged model the gradient of the *whole* training loss is close to
zero: per-sample gradients point every way and cancel. A score built on the averaged signed
gradient (``|w·ḡ|``) therefore turns into noise as more data is averaged. Squaring each
mini-batch's term *before* averaging keeps the signal: ``(w·g_b)²`` is the squared first-order
change of batch b's loss when w is removed, whatever its sign, and more batches only make the
average less noisy. (On the shipped LeNet-300-100, 80 % layer-wise without fine-tuning, scores
from the whole training set: ``|w·ḡ|`` keeps 78.9 % test accuracy, ``mean_b (w·g_b)²`` 94.7 %,
magnitude 96.6 %.) For a single weight ``mean_b (w·g_b)² = w²·mean_b g_b²``, the same ranking
within a layer as OBD with :func:`prunekit.gradient_statistics.fisher_diagonal`'s per-batch Fisher.

Example:
    >>> from torch.utils.data import DataLoader, TensorDataset
    >>> from prunekit.models import build_model
    >>> from prunekit.pruning import prune_global, model_sparsity
    >>> model = build_model("lenet300")
    >>> loader = DataLoader(TensorDataset(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,))), batch_size=4)
    >>> _ = prune_global(model, 0.5, scores=weight_scores(model, "taylor", data=loader))
    >>> round(model_sparsity(model), 3)
    0.5
"""
from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from .activations import input_feature_norms_of
from .gradient_statistics import LossFn, fisher_diagonal, gradient_rms, per_batch_mean
from .pruning import prunable_weights

CRITERIA = ("magnitude", "l2", "random", "gradient", "taylor", "obd", "wanda")
NEEDS_DATA = ("gradient", "taylor", "obd", "wanda")

__all__ = ["magnitude", "magnitude_l2", "random_scores", "gradient_magnitude", "taylor", "obd",
           "wanda", "movement", "accumulate_movement", "MovementTracker", "taylor_per_batch", "weight_scores",
           "CRITERIA"]


def _check_tensor(t, name: str) -> torch.Tensor:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    return t.detach()


def _check_same_shape(weight, other, other_name: str) -> tuple[torch.Tensor, torch.Tensor]:
    weight, other = _check_tensor(weight, "weight"), _check_tensor(other, other_name)
    if weight.shape != other.shape:
        raise ValueError(f"{other_name} must have the weight's shape {tuple(weight.shape)}, "
                         f"got {tuple(other.shape)}")
    return weight, other


# ----------------------------------------------------------------------------- from the weight alone
def magnitude(weight: torch.Tensor) -> torch.Tensor:
    """Magnitude (L1): ``score = |w|``. Han et al. 2015, "Learning both Weights and Connections".

    Example:
        >>> magnitude(torch.tensor([[1., -2.], [3., 0.]]))
        tensor([[1., 2.],
                [3., 0.]])
    """
    return _check_tensor(weight, "weight").abs()


def magnitude_l2(weight: torch.Tensor) -> torch.Tensor:
    """Squared magnitude: ``score = w²``. Ranks a tensor like |w|; differs once scores are summed.

    Example:
        >>> magnitude_l2(torch.tensor([1., -2., 3.]))
        tensor([1., 4., 9.])
    """
    return _check_tensor(weight, "weight") ** 2


def random_scores(weight: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Uniform random scores in [0, 1), shaped like ``weight``: the baseline for every criterion.

    A local ``torch.Generator`` is used, so the same seed gives the same scores whatever the
    global random state (and the global state is left untouched).

    Example:
        >>> w = torch.zeros(2, 3)
        >>> torch.equal(random_scores(w, seed=1), random_scores(w, seed=1))
        True
    """
    weight = _check_tensor(weight, "weight")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    generator = torch.Generator().manual_seed(seed)
    return torch.rand(weight.shape, generator=generator).to(weight.device)


# ----------------------------------------------------------------------------- with gradients / curvature
def gradient_magnitude(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude: ``score = |g|`` with ``g = dL/dw`` (shaped like the weight).

    Example:
        >>> gradient_magnitude(torch.ones(2), torch.tensor([-0.5, 2.]))
        tensor([0.5000, 2.0000])
    """
    _, grad = _check_same_shape(weight, grad, "grad")
    return grad.abs()


def taylor(weight: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """First-order Taylor term of one mini-batch: ``score = (w·g)²`` (Molchanov et al. 2019).

    Setting w to 0 changes the batch's loss by about ``-g·w`` (first order), so ``(w·g)²`` is
    the squared size of that change. Average it over mini-batches, each with its *own*
    gradient ``g_b`` (:func:`weight_scores` does): ``mean_b (w·g_b)²``. Do **not** average the
    gradients first: on a converged model ``mean_b g_b ≈ 0`` and ``|w·mean_b g_b|`` is noise
    (see the module docstring). With a single gradient this ranks weights like SNIP's
    connection sensitivity ``|w·g|`` (Lee et al. 2019).

    Example:
        >>> taylor(torch.tensor([[1., -2.], [3., 0.]]), torch.tensor([[0.5, 0.5], [-1., 4.]]))
        tensor([[0.2500, 1.0000],
                [9.0000, 0.0000]])
    """
    weight, grad = _check_same_shape(weight, grad, "grad")
    return (weight * grad) ** 2


def obd(weight: torch.Tensor, hessian_diag: torch.Tensor) -> torch.Tensor:
    """Optimal Brain Damage saliency: ``score = ½·h·w²`` (LeCun, Denker & Solla 1990).

    At a minimum the gradient vanishes, so deleting w changes the loss by about ``½·h·w²``
    where ``h = d²L/dw²`` (cross terms of the Hessian ignored). Estimate h with
    :func:`prunekit.gradient_statistics.fisher_diagonal` (per-sample Fisher, estimated from per-batch
    gradients).

    Example:
        >>> obd(torch.tensor([1., -2., 3.]), torch.tensor([2., 1., 0.]))
        tensor([1., 2., 0.])
    """
    weight, hessian_diag = _check_same_shape(weight, hessian_diag, "hessian_diag")
    return 0.5 * hessian_diag * weight ** 2


def wanda(weight: torch.Tensor, input_norm: torch.Tensor) -> torch.Tensor:
    """Wanda: ``score[i, j] = |W[i, j]| · ‖X_j‖₂`` (Sun et al. 2023, "Pruning by Weights and activations").

    Args:
        weight: Linear (out, in) or Conv2d (out, in, kh, kw).
        input_norm: (in,) L2 norm of each input feature over calibration data
            (:func:`prunekit.activations.input_feature_norms`); broadcast over the rows.

    Example:
        >>> wanda(torch.tensor([[1., -2.], [3., 0.]]), torch.tensor([10., 1.]))
        tensor([[10.,  2.],
                [30.,  0.]])
    """
    weight, input_norm = _check_tensor(weight, "weight"), _check_tensor(input_norm, "input_norm")
    if weight.ndim not in (2, 4) or input_norm.ndim != 1 or input_norm.numel() != weight.shape[1]:
        raise ValueError(f"wanda needs a weight (out, in) or (out, in, kh, kw) and input_norm (in,); "
                         f"got weight {tuple(weight.shape)} and input_norm {tuple(input_norm.shape)}")
    view = (1, -1) + (1,) * (weight.ndim - 2)
    return weight.abs() * input_norm.to(weight.device).view(view)


# ----------------------------------------------------------------------------- movement
def movement(weight: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Post-hoc movement score of one training step: ``score = w·Δw``.

    This is a **post-hoc approximation** of Sanh et al. 2020 ("Movement Pruning"), not their
    method. They *learn* an importance score S per weight together with the weights: the
    top-scored weights are kept by a mask applied during training, and S is trained through it
    with a straight-through estimator; they show that S then accumulates
    ``-Σ_t (dL/dW)_t·W_t``. Here ordinary fine-tuning runs without a mask and without scores,
    and the product ``w·Δw`` of each step is summed on the side (:func:`accumulate_movement`,
    :class:`MovementTracker`); with plain SGD ``Δw = -lr·g``, so the sum is ``lr`` times that
    expression along *this* (unmasked) trajectory. With momentum, Adam or weight decay the
    step is not ``-lr·g`` and the sum differs further. Prune with it once, after fine-tuning.

    Positive when the step moves w *away from zero*, negative when it pulls w towards zero.

    Args:
        weight: the weight *before* the step.
        delta: the change made by the step, ``w_after - w_before``.

    Example:
        >>> movement(torch.tensor([1., -2., 3.]), torch.tensor([0.5, 0.5, 0.]))
        tensor([ 0.5000, -1.0000,  0.0000])
    """
    weight, delta = _check_same_shape(weight, delta, "delta")
    return weight * delta


def accumulate_movement(scores: torch.Tensor | None, weight_before: torch.Tensor,
                        weight_after: torch.Tensor) -> torch.Tensor:
    """Return ``scores + w_before·(w_after - w_before)`` (a new tensor); ``scores=None`` starts at 0.

    Example:
        >>> s = accumulate_movement(None, torch.tensor([1., -1.]), torch.tensor([2., -0.5]))
        >>> accumulate_movement(s, torch.tensor([2., -0.5]), torch.tensor([3., -0.5]))
        tensor([ 3.0000, -0.5000])
    """
    weight_before, weight_after = _check_same_shape(weight_before, weight_after, "weight_after")
    step = movement(weight_before, weight_after - weight_before)
    if scores is None:
        return step
    _check_same_shape(weight_before, scores, "scores")
    return scores.detach() + step


class MovementTracker:
    """Accumulate post-hoc movement scores ``Σ_t w·Δw`` during training (see :func:`movement`).

    Pass it as ``train(..., after_step=[tracker])``; it approximates Sanh et al. 2020's
    movement scores after the fact, it does not learn scores as they do.

    It remembers the prunable weights after each step and adds ``w·Δw`` for the next one.
    ``tracker.scores`` is then ``{"fc1.weight": tensor, ...}``, ready for ``prune_global``.

    Example:
        >>> from prunekit.models import build_model
        >>> model = build_model("lenet300")
        >>> tracker = MovementTracker(model)
        >>> with torch.no_grad():
        ...     _ = model.fc1.weight.mul_(2.0)        # every weight moves away from 0
        >>> tracker(model, step=1)
        >>> bool((tracker.scores["fc1.weight"] >= 0).all())
        True
    """

    def __init__(self, model: nn.Module, exclude: Iterable[str] = ()):
        self.exclude = tuple(exclude)
        self.previous = {n: w.detach().clone() for n, w in prunable_weights(model, self.exclude).items()}
        self.scores = {n: torch.zeros_like(w) for n, w in self.previous.items()}

    def __call__(self, model: nn.Module, step: int | None = None) -> None:
        for name, weight in prunable_weights(model, self.exclude).items():
            self.scores[name] = accumulate_movement(self.scores[name], self.previous[name], weight)
            self.previous[name] = weight.detach().clone()


# ----------------------------------------------------------------------------- per-batch Taylor scores
def taylor_per_batch(model: nn.Module, data, n_batches: int | None = None, loss_fn: LossFn | None = None,
                     exclude: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Taylor importance of every prunable weight: ``mean_b (w·g_b)²`` (Molchanov et al. 2019).

    ``g_b = dL_b/dw`` is the gradient of batch b's mean loss; each batch's :func:`taylor` term is
    squared *before* averaging, so the score does not cancel out on a converged model, and
    more batches only make it less noisy. Mode and ``.grad`` are left unchanged.

    Returns:
        ``{"fc1.weight": tensor shaped like fc1.weight, ...}`` (all entries >= 0).

    Example:
        >>> from prunekit.models import build_model
        >>> batches = [(torch.randn(4, 1, 28, 28), torch.tensor([0, 1, 2, 3]))] * 2
        >>> scores = taylor_per_batch(build_model("lenet300"), batches)
        >>> scores["fc1.weight"].shape, bool((scores["fc1.weight"] >= 0).all())
        (torch.Size([300, 784]), True)
    """
    weights = prunable_weights(model, exclude)
    return per_batch_mean(model, weights, data, n_batches, loss_fn,
                          statistic=lambda name, g, n: taylor(weights[name].double(), g))


# ----------------------------------------------------------------------------- a whole model
def weight_scores(model: nn.Module, criterion: str, data=None, n_batches: int | None = None,
                  loss_fn: LossFn | None = None, exclude: Iterable[str] = (), seed: int = 0
                  ) -> dict[str, torch.Tensor]:
    """Scores of every prunable weight by a named criterion, keyed by parameter name.

    Args:
        criterion: one of ``"magnitude", "l2", "random", "gradient", "taylor", "obd", "wanda"``
            (formulas in the module docstring: gradient, taylor and obd average per-batch squares).
        data: iterable of ``(x, y)`` batches (a DataLoader, a list of tuples); needed by
            gradient, taylor, obd (labels) and wanda (inputs only; bare ``x`` batches work). For
            wanda the inputs of every prunable Linear/Conv2d are recorded with forward hooks, so
            any model built from them works, a transformer included: a Linear's input
            (B, T, features) counts every token.
        n_batches: how many batches of ``data`` to use (None = all).
        loss_fn: ``loss_fn(logits, y) -> mean loss of the batch`` for gradient-based criteria;
            default :func:`prunekit.gradient_statistics.default_loss` (cross-entropy; also (B, T, vocab) logits).
        exclude: layers to leave out, as in :func:`prunekit.pruning.prunable_weights`.
        seed: for ``"random"`` (layer k uses ``seed + k``, so equal-shaped layers differ).

    Returns:
        ``{"fc1.weight": scores shaped like fc1.weight, ...}``: pass as ``scores=`` to
        :func:`prunekit.pruning.prune_global` or :func:`prunekit.pruning.prune_layerwise`.

    Example:
        >>> from prunekit.models import build_model
        >>> scores = weight_scores(build_model("lenet300"), "magnitude", exclude=["fc3"])
        >>> list(scores)
        ['fc1.weight', 'fc2.weight']

    Wanda with its per-row comparison group (Sun et al. 2023)::

        prune_layerwise(model, 0.5, scores=weight_scores(model, "wanda", calib), per_row=True)
    """
    if criterion not in CRITERIA:
        raise ValueError(f"unknown criterion {criterion!r}; valid names: {', '.join(CRITERIA)} "
                         "(movement scores come from MovementTracker during fine-tuning)")
    if criterion in NEEDS_DATA and data is None:
        raise ValueError(f"criterion {criterion!r} needs data=: a DataLoader of (x, y) batches "
                         "(more batches give less noisy scores; n_batches limits them)")
    weights = prunable_weights(model, exclude)
    if criterion == "magnitude":
        return {n: magnitude(w) for n, w in weights.items()}
    if criterion == "l2":
        return {n: magnitude_l2(w) for n, w in weights.items()}
    if criterion == "random":
        return {n: random_scores(w, seed + k) for k, (n, w) in enumerate(weights.items())}
    if criterion == "gradient":
        return gradient_rms(model, data, n_batches, loss_fn, exclude)
    if criterion == "taylor":
        return taylor_per_batch(model, data, n_batches, loss_fn, exclude)
    if criterion == "obd":
        fisher = fisher_diagonal(model, data, n_batches, loss_fn, exclude)
        return {n: obd(w, fisher[n]) for n, w in weights.items()}
    # wanda: one pass with forward hooks collects the input norms of every layer.
    module_of = {n: n.rpartition(".")[0] for n in weights}
    norms = input_feature_norms_of(model, list(module_of.values()), data, n_batches)
    return {n: wanda(w, norms[module_of[n]]) for n, w in weights.items()}
