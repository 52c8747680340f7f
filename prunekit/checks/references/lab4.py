"""The course's answers to Lab 4's exercises: what each check compares with, and what
``use_or_reference`` falls back to while an exercise is unfinished.

The checks themselves (cases and judges) are in :mod:`prunekit.checks.lab4`.
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Mapping, Sequence

import torch
from torch import nn


__all__ = [
    "reference_agp_sparsity", "reference_iterative_targets", "reference_prune_remaining_mask", "reference_rewind",
    "reference_early_stop", "reference_should_stop", "reference_train_round", "reference_imp_rewind",
    "reference_agp_step",
]


def reference_agp_sparsity(step: int, initial_sparsity: float, final_sparsity: float, start_step: int,
                           n_steps: int, frequency: int) -> float:
    """Automated gradual pruning (Zhu & Gupta 2017, eq. 1): ``s_t = s_f + (s_i - s_f)(1 - (t - t0)/(nΔt))³``.

    The sparsity changes only at the pruning steps t0, t0 + Δt, ..., t0 + nΔt (``step`` is rounded down
    to the last of them); it is s_i before t0 and s_f from t0 + nΔt on.
    """
    if step < start_step:
        return float(initial_sparsity)
    events = min((step - start_step) // frequency, n_steps)   # pruning events so far
    return float(final_sparsity + (initial_sparsity - final_sparsity) * (1.0 - events / n_steps) ** 3)


def reference_iterative_targets(final_sparsity: float, rounds: int) -> list[float]:
    """Sparsity after each of ``rounds`` rounds that each prune the same fraction p of the remaining weights:
    ``s_k = 1 - (1 - final)^(k / rounds)`` for k = 1..rounds (so ``1 - p = (1 - final)^(1 / rounds)``)."""
    keep = 1.0 - final_sparsity
    targets = [1.0 - keep ** (k / rounds) for k in range(1, rounds + 1)]
    targets[-1] = float(final_sparsity)   # exact, whatever the float error of the power
    return targets


def reference_prune_remaining_mask(weight: torch.Tensor, mask: torch.Tensor, fraction: float) -> torch.Tensor:
    """One IMP step for one tensor: a new bool mask that also prunes ``round(fraction * kept)`` of the weights
    ``mask`` still keeps, those of smallest ``|w|``. Pruned entries stay pruned (their values are ignored)."""
    keep = mask.detach().bool()
    n_prune = round(fraction * int(keep.sum()))
    # pruned entries score +inf so they are never chosen again; a stable sort makes ties deterministic
    scores = torch.where(keep, weight.detach().abs().to(torch.float64), torch.tensor(math.inf, dtype=torch.float64))
    order = torch.sort(scores.flatten(), stable=True).indices
    new = keep.flatten().clone()
    new[order[:n_prune]] = False
    return new.view(keep.shape)


@torch.no_grad()
def reference_rewind(model: nn.Module, init_state: Mapping[str, torch.Tensor],
                     masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Rewinding (Frankle & Carbin 2019): copy every tensor of ``init_state`` (weights, biases, buffers) back
    into ``model`` in place, then zero the pruned weights: surviving weights become ``m ⊙ θ0``."""
    model.load_state_dict(init_state)   # copies values into the existing tensors
    params = dict(model.named_parameters())
    for name, mask in masks.items():
        params[name].mul_(mask.to(params[name].device, params[name].dtype))
    return model


def reference_early_stop(curve: Sequence[tuple[int, float]]) -> tuple[int, float]:
    """The ``(step, val_acc)`` point of ``curve`` with the highest validation accuracy (the earliest on ties):
    where early stopping would have stopped."""
    best = max(range(len(curve)), key=lambda i: (curve[i][1], -i))
    return curve[best][0], curve[best][1]


def reference_should_stop(history: Sequence[float], tolerance: float) -> bool:
    """True when the latest accuracy ``history[-1]`` is more than ``tolerance`` (a fraction, 0.01 = one point)
    below the dense accuracy ``history[0]``."""
    return bool(history[-1] < history[0] - tolerance)


def reference_train_round(model: nn.Module, data, val_data, steps: int, eval_every: int, lr: float = 1.2e-3,
                          batch_size: int = 60, seed: int = 0, after_step: Sequence = ()) -> dict:
    """The lab's training recipe for one IMP round (given to the learner, not an exercise): Adam at a constant
    learning rate, no weight decay, ``steps`` steps in the order fixed by ``seed``; the masks the model carries
    stay enforced. Validation accuracy every ``eval_every`` steps. Returns ``{"curve": [(step, val_acc), ...],
    "best_step", "val_acc", "stopped": a copy of the model at the early-stopping point}``."""
    from ...train import evaluate, train

    curve, states = [], {}

    def measure(m: nn.Module, step: int) -> None:
        if step % eval_every == 0:
            curve.append((step, evaluate(m, val_data)))
            states[step] = copy.deepcopy(m.state_dict())
            m.train()

    per_epoch = math.ceil(len(data) / batch_size)
    train(model, data, epochs=math.ceil(steps / per_epoch), max_steps=steps, optimizer="adam", lr=lr,
          lr_schedule="constant", weight_decay=0.0, batch_size=batch_size, seed=seed, quiet=True,
          after_step=[*after_step, measure])
    best_step, best_acc = reference_early_stop(curve)
    stopped = copy.deepcopy(model)
    stopped.load_state_dict(states[best_step])
    return {"curve": curve, "best_step": best_step, "val_acc": best_acc, "stopped": stopped}


def _weight_names(model: nn.Module) -> list[str]:
    return [n for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 2]


def reference_imp_rewind(model: nn.Module, train_data, val_data, rounds: int, fraction: float, steps: int,
                         eval_every: int, rewind_step: int = 0, output_layer: str | None = None, seed: int = 0,
                         train_round: Callable | None = None) -> dict:
    """Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; late rewinding: Frankle et al. 2019).

    Round 0 trains a copy of ``model`` (θ0 = its weights now). Every later round prunes ``fraction`` of the
    weights each layer STILL HAS (``output_layer`` at half the rate), ranked by the magnitude of the weights
    the previous round ended with, rewinds the survivors to θ_k (θ0 if ``rewind_step == 0``, else the weights
    after ``rewind_step`` steps of round 0; biases too), keeps the pruned ones at zero and trains again with
    the same recipe. Returns ``{"rewind_state": θ_k, "rounds": [{"masks", "start", "trained", **train_round's
    result}, ...]}`` (``rounds + 1`` records); ``model`` is not modified.
    """
    from ...pruning import apply_masks

    train_round = reference_train_round if train_round is None else train_round
    work = copy.deepcopy(model)
    theta = {"state": copy.deepcopy(work.state_dict())}
    capture = [] if rewind_step == 0 else [
        lambda m, step: theta.update(state=copy.deepcopy(m.state_dict())) if step == rewind_step else None]
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in work.named_parameters() if n in _weight_names(work)}
    records: list[dict] = []
    for r in range(rounds + 1):
        if r > 0:
            trained = records[-1]["trained"]
            masks = {n: reference_prune_remaining_mask(trained[n], m, fraction / 2 if n == output_layer else fraction)
                     for n, m in masks.items()}
            reference_rewind(work, theta["state"], masks)
            apply_masks(work, masks)
        start = copy.deepcopy(work.state_dict())
        run = train_round(work, train_data, val_data, steps, eval_every, seed=seed,
                          after_step=capture if r == 0 else ())
        records.append({"masks": masks, "start": start, "trained": copy.deepcopy(work.state_dict()), **run})
    return {"rewind_state": theta["state"], "rounds": records}


def reference_agp_step(model: nn.Module, masks: Mapping[str, torch.Tensor], step: int, initial_sparsity: float,
                       final_sparsity: float, start_step: int, n_steps: int, frequency: int) -> dict[str, torch.Tensor]:
    """AGP as a training callback, run after every optimizer step (Zhu & Gupta 2017).

    The target is ``agp_sparsity(step, ...)`` over all masked tensors together. If the masks prune fewer than
    ``round(target * total)`` weights, the smallest-|w| SURVIVORS across all tensors (one global ranking) are
    pruned until exactly that many are; a pruned weight is never revived. The model's pruned weights are then
    set to zero in place (every step: the optimizer moved them). Returns the new masks (``masks`` untouched).
    """
    target = reference_agp_sparsity(step, initial_sparsity, final_sparsity, start_step, n_steps, frequency)
    params = dict(model.named_parameters())
    names = list(masks)
    flat = torch.cat([masks[n].detach().bool().flatten() for n in names])
    missing = round(target * flat.numel()) - int((~flat).sum())
    if missing > 0:
        scores = torch.cat([params[n].detach().abs().flatten().double() for n in names])
        scores = torch.where(flat, scores, torch.tensor(math.inf, dtype=torch.float64))
        flat = flat.clone()
        flat[torch.sort(scores, stable=True).indices[:missing]] = False
    new, start = {}, 0
    for n in names:
        new[n] = flat[start:start + masks[n].numel()].view(masks[n].shape)
        start += masks[n].numel()
    with torch.no_grad():
        for n in names:
            params[n].mul_(new[n].to(params[n].dtype))
    return new
