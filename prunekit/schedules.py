"""When to prune, and how much: sparsity schedules, gradual pruning during training, iterative pruning.

A **schedule** here is a *pure function of the training step*: ``schedule(step) -> sparsity``.
It keeps no state, so calling it twice with the same step gives the same answer, it can be
plotted before training, and one schedule can drive several models. (Schedule *objects* that
count their own calls go wrong as soon as two models, a restart or a notebook re-run share them.)

Three ways to reach a target sparsity, from crude to gentle:

* **one-shot**: prune once, then fine-tune (:func:`one_shot_sparsity`);
* **iterative**: several rounds of prune → fine-tune (Han et al. 2015, "Learning both Weights and
  Connections for Efficient Neural Networks"): :func:`iterative_sparsities`, :func:`prune_iteratively`;
* **gradual (AGP)**: raise the sparsity a little every few steps *while* training (Zhu & Gupta
  2017, "To prune, or not to prune"): :func:`agp_sparsity`, :func:`gradual_pruning_callback`,
  :func:`prune_agp`.

Pruning never revives a weight: :mod:`prunekit.pruning` only ever grows masks, so a schedule whose
target goes *down* simply leaves the model as it is.

Example:
    >>> [round(agp_sparsity(t, 0.0, 0.8, start_step=0, n_steps=10, frequency=1), 3) for t in (0, 5, 10)]
    [0.0, 0.7, 0.8]
    >>> [round(s, 3) for s in iterative_sparsities(0.875, rounds=3)]
    [0.5, 0.75, 0.875]
"""
from __future__ import annotations

import copy
import math
from functools import partial
from numbers import Integral
from typing import Callable, Iterable

from torch import nn
from torch.utils.data import DataLoader, Dataset

from .masks import check_sparsity
from .pruning import (apply_masks, get_masks, make_permanent, prunable_weights, prune_global,
                      prune_layerwise)
from .train import evaluate, fine_tune, train

Schedule = Callable[[int], float]
SCOPES = ("layerwise", "global")


def _check_step(value, name: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_scope(scope: str) -> str:
    if scope not in SCOPES:
        raise ValueError(f"scope must be 'layerwise' (each layer to the target) or 'global' "
                         f"(one ranking across layers), got {scope!r}")
    return scope


# ----------------------------------------------------------------------------- schedules
def one_shot_sparsity(step: int, final_sparsity: float, prune_step: int = 0) -> float:
    """Sparsity 0 before ``prune_step``, ``final_sparsity`` from then on (prune once).

    Example:
        >>> [one_shot_sparsity(t, 0.9, prune_step=2) for t in (0, 1, 2, 3)]
        [0.0, 0.0, 0.9, 0.9]
    """
    step, prune_step = _check_step(step, "step"), _check_step(prune_step, "prune_step")
    final_sparsity = check_sparsity(final_sparsity, "final_sparsity")
    return final_sparsity if step >= prune_step else 0.0


def agp_sparsity(step: int, initial_sparsity: float, final_sparsity: float, start_step: int,
                 n_steps: int, frequency: int) -> float:
    """Automated gradual pruning (Zhu & Gupta 2017, eq. 1): a cubic ramp from s_i to s_f.

        s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (n * Δt))**3     for t0 <= t <= t0 + n*Δt

    The sparsity rises fast at first (many redundant weights) and slowly near the end. It only
    changes at the pruning steps t0, t0 + Δt, ..., t0 + nΔt: between two of them ``step`` is
    rounded down to the last one. Before t0 the sparsity is s_i, after t0 + nΔt it is s_f.

    Args:
        step: the training step t (an int >= 0).
        initial_sparsity, final_sparsity: s_i <= s_f, both in [0, 1].
        start_step: t0, the first pruning step.
        n_steps: n, the number of pruning events after t0 (>= 1).
        frequency: Δt, steps between two pruning events (>= 1).

    Returns:
        the target sparsity at ``step``, a float in [0, 1].

    Example:
        >>> agp_sparsity(5, 0.0, 0.8, start_step=0, n_steps=10, frequency=1)   # 0.8 * (1 - 0.5**3)
        0.7
        >>> agp_sparsity(7, 0.0, 0.8, start_step=0, n_steps=5, frequency=4)    # rounded down to t = 4
        0.3904
    """
    step = _check_step(step, "step")
    start_step = _check_step(start_step, "start_step")
    n_steps = _check_step(n_steps, "n_steps (number of pruning events)", minimum=1)
    frequency = _check_step(frequency, "frequency (steps between pruning events)", minimum=1)
    s_i = check_sparsity(initial_sparsity, "initial_sparsity")
    s_f = check_sparsity(final_sparsity, "final_sparsity")
    if s_i > s_f:
        raise ValueError(f"AGP raises the sparsity: need initial_sparsity <= final_sparsity, got "
                         f"{s_i} > {s_f} (did you swap them?)")
    if step < start_step:
        return s_i
    events = min((step - start_step) // frequency, n_steps)  # pruning events so far: t rounded down
    progress = events / n_steps
    return round(s_f + (s_i - s_f) * (1.0 - progress) ** 3, 12)  # round off float noise: 0.7, not 0.7000000000000001


def iterative_sparsities(final_sparsity: float, rounds: int, mode: str = "geometric") -> list[float]:
    """Target sparsity after each of ``rounds`` prune → fine-tune rounds (the last one is exact).

    * ``"geometric"``: every round prunes the same fraction p of the weights still there
      (Han et al. 2015; Frankle & Carbin 2019 prune p = 20 % per round), so after round k
      the sparsity is 1 - (1 - p)**k with p = 1 - (1 - final)**(1 / rounds).
    * ``"linear"``: equal steps of sparsity, final * k / rounds. Late rounds then remove a
      large share of the few weights left, which hurts more.

    Returns:
        ``[s_1, ..., s_rounds]`` increasing, with ``s_rounds == final_sparsity``.

    Example:
        >>> [round(s, 4) for s in iterative_sparsities(0.96, 2)]          # p = 0.8 each round
        [0.8, 0.96]
        >>> iterative_sparsities(0.9, 3, mode="linear")
        [0.3, 0.6, 0.9]
    """
    final_sparsity = check_sparsity(final_sparsity, "final_sparsity")
    rounds = _check_step(rounds, "rounds", minimum=1)
    if mode == "geometric":
        keep_per_round = (1.0 - final_sparsity) ** (1.0 / rounds)
        targets = [round(1.0 - keep_per_round ** k, 12) for k in range(1, rounds + 1)]
    elif mode == "linear":
        targets = [round(final_sparsity * k / rounds, 12) for k in range(1, rounds + 1)]
    else:
        raise ValueError(f"mode must be 'geometric' or 'linear', got {mode!r}")
    targets[-1] = final_sparsity  # exact, whatever the float error of the powers
    return targets


# ----------------------------------------------------------------------------- gradual pruning
def _needs_pruning(model: nn.Module, target: float, scope: str, exclude: Iterable[str]) -> bool:
    """Would pruning to ``target`` remove anything? Compares exact counts, with the masks as truth."""
    masks = get_masks(model)
    weights = prunable_weights(model, exclude)
    pruned = {n: (~masks[n]).sum().item() if n in masks else 0 for n in weights}
    if scope == "layerwise":
        return any(pruned[n] < round(target * w.numel()) for n, w in weights.items())
    total = sum(w.numel() for w in weights.values())
    return sum(pruned.values()) < round(target * total)


def gradual_pruning_callback(schedule: Schedule, scope: str = "layerwise", exclude: Iterable[str] = (),
                             every: int = 1) -> Callable[[nn.Module, int], None]:
    """An ``after_step`` callback for :func:`prunekit.train.train` that prunes by magnitude to ``schedule(step)``.

    Every ``every`` steps it asks the schedule for a target; if the model's masks prune fewer
    weights than that, it prunes the smallest surviving weights up to the target (``scope``:
    each layer separately, or one global ranking). A target *below* the current sparsity does
    nothing: masks only grow. The callback reads the current sparsity from the model's masks,
    so it keeps no state of its own either.

    Args:
        schedule: ``step -> sparsity``, e.g. ``functools.partial(agp_sparsity, initial_sparsity=0, ...)``
            or a lambda.
        scope: ``"layerwise"`` or ``"global"``.
        exclude: layers left dense (e.g. ``["fc3"]``).
        every: only look at the schedule on steps divisible by ``every``.

    Example:
        >>> from functools import partial
        >>> agp = partial(agp_sparsity, initial_sparsity=0.0, final_sparsity=0.9, start_step=0,
        ...               n_steps=10, frequency=20)
        >>> train(model, data, epochs=3, after_step=[gradual_pruning_callback(agp)])   # doctest: +SKIP
    """
    if not callable(schedule):
        raise TypeError(f"schedule must be a function step -> sparsity, got {type(schedule).__name__}")
    scope = _check_scope(scope)
    every = _check_step(every, "every", minimum=1)
    exclude = tuple(exclude)

    def prune_to_schedule(model: nn.Module, step: int) -> None:
        if step % every:
            return
        target = check_sparsity(schedule(step), f"schedule({step})")
        if not _needs_pruning(model, target, scope, exclude):
            return
        if scope == "layerwise":
            prune_layerwise(model, target, exclude=exclude)
        else:
            prune_global(model, target, exclude=exclude)

    return prune_to_schedule


def prune_agp(model: nn.Module, train_data: Dataset | DataLoader, final_sparsity: float, epochs: int,
              initial_sparsity: float = 0.0, start_step: int = 0, n_steps: int = 10,
              frequency: int | None = None, scope: str = "layerwise", exclude: Iterable[str] = (),
              lr: float = 0.01, batch_size: int = 128, **train_kwargs) -> list[dict]:
    """Train ``model`` while pruning it gradually with AGP (Zhu & Gupta 2017); returns train's history.

    Same as ``train(model, data, after_step=[gradual_pruning_callback(partial(agp_sparsity, ...))])``.
    With ``frequency=None`` the n pruning events are spread over the first two thirds of training,
    leaving the last third to recover at the final sparsity (the paper's advice).

    Example:
        >>> history = prune_agp(model, train_data, final_sparsity=0.9, epochs=3)   # doctest: +SKIP
    """
    steps_per_epoch = len(train_data) if isinstance(train_data, DataLoader) else math.ceil(len(train_data) / batch_size)
    total = epochs * steps_per_epoch
    if frequency is None:
        frequency = max(1, (2 * total // 3 - start_step) // n_steps)
    if start_step + n_steps * frequency > total:
        raise ValueError(f"the AGP ramp ends at step {start_step + n_steps * frequency} but training has only "
                         f"{total} steps; lower n_steps/frequency/start_step or train longer")
    schedule = partial(agp_sparsity, initial_sparsity=initial_sparsity, final_sparsity=final_sparsity,
                       start_step=start_step, n_steps=n_steps, frequency=frequency)
    callbacks = [gradual_pruning_callback(schedule, scope, exclude)] + list(train_kwargs.pop("after_step", ()))
    return train(model, train_data, epochs=epochs, lr=lr, batch_size=batch_size, after_step=callbacks,
                 **train_kwargs)


# ----------------------------------------------------------------------------- iterative pruning
def _snapshot(model: nn.Module) -> tuple[dict, dict]:
    return copy.deepcopy(model.state_dict()), get_masks(model)


def _restore(model: nn.Module, snapshot: tuple[dict, dict]) -> None:
    """Put back weights *and* masks (masks only grow, so the newer ones must be removed first)."""
    state, masks = snapshot
    make_permanent(model)
    model.load_state_dict(state)
    apply_masks(model, masks)


def _mask_sparsity(model: nn.Module, exclude: Iterable[str]) -> float:
    """Fraction of the chosen weights that the masks prune (weights that merely are 0 do not count)."""
    masks, weights = get_masks(model), prunable_weights(model, exclude)
    pruned = sum((~masks[n]).sum().item() for n in weights if n in masks)
    return pruned / sum(w.numel() for w in weights.values())


def prune_iteratively(model: nn.Module, train_data: Dataset | DataLoader, val_data: Dataset | DataLoader,
                      final_sparsity: float, rounds: int, epochs_per_round: int, lr: float = 0.01,
                      scope: str = "layerwise", exclude: Iterable[str] = (), tolerance: float | None = None,
                      quiet: bool = True, **train_kwargs) -> list[dict]:
    """Prune → fine-tune for ``rounds`` rounds towards ``final_sparsity`` (Han et al. 2015), in place.

    Round k prunes (by magnitude, ``scope`` layer-wise or global) to ``iterative_sparsities(final,
    rounds)[k - 1]`` (the same fraction of the remaining weights each round), fine-tunes for
    ``epochs_per_round`` epochs, and measures validation accuracy.

    Stopping rules:

    * the target is reached (after the last round);
    * ``tolerance`` given: as soon as validation accuracy falls more than ``tolerance`` (a fraction,
      0.01 = one point) below the dense model's, stop and **restore the model of the previous round**
      (weights and masks), the sparsest one still within tolerance. That round's row is kept in the
      history with ``accepted=False`` so you can see why it stopped.

    Returns:
        ``[{"round", "sparsity", "val_acc", "accepted"}, ...]``; round 0 is the model as it came in.
        ``sparsity`` is over the pruned layers (``exclude`` left out).

    Example:
        >>> rows = prune_iteratively(model, train_data, val_data, 0.9, rounds=3, epochs_per_round=1)  # doctest: +SKIP
        >>> [round(r["sparsity"], 3) for r in rows]                                                # doctest: +SKIP
        [0.0, 0.536, 0.785, 0.9]
    """
    scope, exclude = _check_scope(scope), tuple(exclude)
    if tolerance is not None and (not isinstance(tolerance, (int, float)) or tolerance < 0):
        raise ValueError(f"tolerance must be None or a fraction >= 0 (0.01 = one point), got {tolerance!r}")
    prune = prune_layerwise if scope == "layerwise" else prune_global
    dense_acc = evaluate(model, val_data)
    history = [{"round": 0, "sparsity": _mask_sparsity(model, exclude), "val_acc": dense_acc, "accepted": True}]
    for k, target in enumerate(iterative_sparsities(final_sparsity, rounds), start=1):
        last_good = _snapshot(model)
        prune(model, target, exclude=exclude)
        fine_tune(model, train_data, epochs=epochs_per_round, lr=lr, quiet=quiet, **train_kwargs)
        acc = evaluate(model, val_data)
        ok = tolerance is None or acc >= dense_acc - tolerance
        history.append({"round": k, "sparsity": _mask_sparsity(model, exclude), "val_acc": acc, "accepted": ok})
        if not quiet:
            print(f"round {k}: sparsity {history[-1]['sparsity']:.3f}, val acc {acc:.4f}"
                  + ("" if ok else f" < {dense_acc - tolerance:.4f}: stop, restore round {k - 1}"))
        if not ok:
            _restore(model, last_good)
            break
    return history
