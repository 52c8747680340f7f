"""Lottery tickets: iterative magnitude pruning with rewinding, and the two controls that test it.

The lottery ticket hypothesis (Frankle & Carbin 2019, "The Lottery Ticket Hypothesis: Finding
Sparse, Trainable Neural Networks"): a dense, randomly initialised network contains a sparse
subnetwork that, trained *from the same initial values*, matches the dense network's accuracy.
Iterative magnitude pruning (IMP) finds it:

1. initialise θ0 (keep a copy) and train to θ_T;
2. prune p % of the surviving weights of each layer, those of smallest |θ_T| (mask m);
3. **rewind** the surviving weights to θ0 (m ⊙ θ0) and train again; repeat 2-3.

For deeper networks, rewinding to θ0 fails; rewinding to the weights of an early iteration k
(θ_k, a few hundred steps in) works (Frankle et al. 2019, "Stabilizing the Lottery Ticket
Hypothesis" / "Linear Mode Connectivity and the Lottery Ticket Hypothesis"): ``rewind_step=k``.

A ticket is only interesting compared with controls of the same sparsity:

* :func:`random_reinit_control`: the ticket's masks, but *fresh* random initial values;
* :func:`random_mask_control`: the original initial values, but *random* masks with the same
  per-layer sparsity.

In the paper, both controls fall behind the ticket as sparsity grows.

Example:
    >>> rows = find_lottery_ticket(lambda: build_model("lenet300"), train_data, val_data,
    ...                            rounds=3, epochs=1)                              # doctest: +SKIP
    >>> [round(r["remaining"], 3) for r in rows]                                    # doctest: +SKIP
    [1.0, 0.8, 0.64, 0.512]
"""
from __future__ import annotations

import copy
import math
from typing import Callable, Iterable, Mapping, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .masks import num_to_prune
from .pruning import apply_masks, enforce_masks, get_masks, prunable_weights, prune_global, prune_layerwise
from .train import train

ModelSource = nn.Module | Callable[[], nn.Module]
Masks = Mapping[str, torch.Tensor]


# ----------------------------------------------------------------------------- building blocks
def _build(model: ModelSource, seed: int) -> nn.Module:
    """A fresh model: ``model()`` under ``torch.manual_seed(seed)``, or a deep copy of a given module."""
    if isinstance(model, nn.Module):
        return copy.deepcopy(model)
    if not callable(model):
        raise TypeError(f"expected an nn.Module or a function returning one, got {type(model).__name__}")
    torch.manual_seed(seed)
    return model()


def _check_fraction(prune_fraction: float) -> float:
    if isinstance(prune_fraction, bool) or not isinstance(prune_fraction, (int, float)) or not 0 < prune_fraction < 1:
        raise ValueError(f"prune_fraction must be in (0, 1): the share of surviving weights removed per round "
                         f"(the paper uses 0.2), got {prune_fraction!r}")
    return float(prune_fraction)


def capture_state(at_step: int, store: dict) -> Callable[[nn.Module, int], None]:
    """An ``after_step`` callback that copies the model's state dict into ``store["state"]`` at step ``at_step``.

    Used to remember θ_k for late rewinding; ``store`` is yours, so nothing is hidden in the callback.

    Example:
        >>> store = {}
        >>> train(model, data, after_step=[capture_state(100, store)])   # doctest: +SKIP
        >>> model.load_state_dict(store["state"])                         # doctest: +SKIP
    """
    def capture(model: nn.Module, step: int) -> None:
        if step == at_step:
            store["state"] = copy.deepcopy(model.state_dict())
    return capture


@torch.no_grad()
def rewind_weights(model: nn.Module, state: Mapping[str, torch.Tensor]) -> nn.Module:
    """Load ``state`` (e.g. θ0) into ``model`` but keep its masks: surviving weights become m ⊙ θ0 (in place).

    Masks are non-persistent buffers, so ``load_state_dict`` leaves them alone; re-applying them
    zeroes the pruned weights again.
    """
    model.load_state_dict(state)
    enforce_masks(model)
    return model


def remaining_fraction(model: nn.Module) -> float:
    """Fraction of all prunable weights that the masks keep (1.0 for an unpruned model)."""
    masks, weights = get_masks(model), prunable_weights(model)
    kept = sum(masks[n].sum().item() if n in masks else w.numel() for n, w in weights.items())
    return kept / sum(w.numel() for w in weights.values())


def prune_remaining(model: nn.Module, fraction: float, scope: str = "layerwise", exclude: Iterable[str] = (),
                    output_half_rate: bool = False) -> dict[str, torch.Tensor]:
    """Prune ``fraction`` of the weights that are still there, by magnitude (one IMP round); returns the masks.

    ``output_half_rate``: prune the last prunable layer (the output layer of the zoo models) at
    half the rate, as Frankle & Carbin do (it is small and every weight of it matters).
    """
    fraction = _check_fraction(fraction)
    if scope not in ("layerwise", "global"):
        raise ValueError(f"scope must be 'layerwise' or 'global', got {scope!r}")
    weights = prunable_weights(model, exclude)
    last = list(prunable_weights(model))[-1]
    output = last if output_half_rate and last in weights else None
    masks = get_masks(model)
    kept = {n: masks[n].sum().item() if n in masks else w.numel() for n, w in weights.items()}

    def new_sparsity(n: str, p: float) -> float:  # exact counts: p of the kept weights go
        return (weights[n].numel() - kept[n] + num_to_prune(kept[n], p)) / weights[n].numel()

    if scope == "layerwise":
        return prune_layerwise(model, {n: new_sparsity(n, fraction / 2 if n == output else fraction)
                                       for n in weights})
    if output is not None:
        prune_layerwise(model, {output: new_sparsity(output, fraction / 2)})
    names = [n for n in weights if n != output]
    total, still = sum(weights[n].numel() for n in names), sum(kept[n] for n in names)
    return prune_global(model, (total - still + num_to_prune(still, fraction)) / total, names=names)


def _train_with_mask(model: nn.Module, masks: Masks | None, train_data, val_data, epochs: int, seed: int,
                     quiet: bool, after_step: Sequence = (), **train_kwargs) -> dict:
    """Apply ``masks`` (if any), train, and summarise: remaining fraction, accuracies, early-stop point.

    Validation accuracy is measured after every epoch; ``best_epoch``/``best_step`` mark the
    best one (the paper's early-stopping iteration, at epoch granularity to keep it cheap).
    """
    if masks:
        apply_masks(model, masks)
    history = train(model, train_data, epochs=epochs, seed=seed, val_data=val_data, quiet=quiet,
                    after_step=after_step, **train_kwargs)
    if not history:
        raise ValueError("training ran for 0 epochs; lottery tickets need epochs >= 1")
    accs = [h["val_acc"] for h in history]
    best = max(range(len(accs)), key=accs.__getitem__)
    batch_size = train_kwargs.get("batch_size", 128)
    steps_per_epoch = len(train_data) if isinstance(train_data, DataLoader) else math.ceil(len(train_data) / batch_size)
    return {"remaining": remaining_fraction(model), "val_acc": accs[-1], "best_val_acc": accs[best],
            "best_epoch": best + 1, "best_step": (best + 1) * steps_per_epoch, "masks": get_masks(model)}


# ----------------------------------------------------------------------------- IMP
def find_lottery_ticket(model: ModelSource, train_data: Dataset | DataLoader, val_data: Dataset | DataLoader,
                        rounds: int, prune_fraction: float = 0.2, epochs: int = 1, rewind_step: int = 0,
                        scope: str = "layerwise", exclude: Iterable[str] = (), output_half_rate: bool = False,
                        seed: int = 0, quiet: bool = True, **train_kwargs) -> list[dict]:
    """Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2019).

    Round 0 trains the dense network. Each later round prunes ``prune_fraction`` of the surviving
    weights by magnitude (per layer, or globally with ``scope="global"``), rewinds the survivors to
    their values at step ``rewind_step`` (0 = the initial values θ0), and retrains with the mask for
    ``epochs`` epochs. After r rounds, (1 - p)**r of the weights remain (0.8**r for p = 0.2).

    Rewinding restores weights and BatchNorm statistics, not the optimizer: every round starts a
    fresh optimizer and learning-rate schedule (a common simplification).

    Args:
        model: a function building a fresh model (called under ``torch.manual_seed(seed)``), or a
            module whose current weights are θ0 (it is copied, not changed).
        rounds: pruning rounds after the dense run.
        rewind_step: k > 0 rewinds to θ_k, captured during the dense run (k must be within it).
        exclude: layers never pruned. ``output_half_rate``: the last layer loses p/2 per round.
        seed: model initialisation and data order (the same in every round, also for a DataLoader).
        **train_kwargs: passed to :func:`prunekit.train.train` (``lr``, ``batch_size``,
            ``after_step`` callbacks, which run in every round, ...).

    Returns:
        ``rounds + 1`` rows ``{"round", "remaining", "val_acc", "best_val_acc", "best_epoch",
        "best_step", "masks"}``; ``val_acc`` is after the last epoch, ``best_*`` at the best epoch.

    Example:
        >>> rows = find_lottery_ticket(lambda: build_model("lenet300"), train_data, val_data,
        ...                            rounds=5, epochs=2)                          # doctest: +SKIP
        >>> [(round(r["remaining"], 2), r["val_acc"]) for r in rows]               # doctest: +SKIP
    """
    prune_fraction = _check_fraction(prune_fraction)
    if isinstance(rewind_step, bool) or not isinstance(rewind_step, int) or rewind_step < 0:
        raise ValueError(f"rewind_step must be an int >= 0 (0 = rewind to initialisation), got {rewind_step!r}")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be an int >= 0, got {rounds!r}")
    net = _build(model, seed)
    user_steps = list(train_kwargs.pop("after_step", ()))
    rewind_to = {} if rewind_step else {"state": copy.deepcopy(net.state_dict())}
    capture = [capture_state(rewind_step, rewind_to)] if rewind_step else []
    # A ready DataLoader shuffles with its own generator, which advances every epoch: rewind it too,
    # so that every round sees the same data order (as a Dataset, shuffled with ``seed``, does).
    generator = getattr(train_data, "generator", None)
    data_order = generator.get_state() if generator is not None else None

    def train_round(after_step):
        if data_order is not None:
            generator.set_state(data_order)
        return _train_with_mask(net, None, train_data, val_data, epochs, seed, quiet,
                                after_step=after_step, **train_kwargs)

    rows = [{"round": 0, **train_round(capture + user_steps)}]
    if "state" not in rewind_to:
        raise ValueError(f"rewind_step={rewind_step} was never reached: the dense run of {epochs} epoch(s) "
                         "has fewer steps; choose a smaller rewind_step or train longer")
    for r in range(1, rounds + 1):
        prune_remaining(net, prune_fraction, scope, exclude, output_half_rate)
        rewind_weights(net, rewind_to["state"])
        rows.append({"round": r, **train_round(user_steps)})
        if not quiet:
            print(f"round {r}: {rows[-1]['remaining']:.3f} remaining, val acc {rows[-1]['val_acc']:.4f}")
    return rows


# ----------------------------------------------------------------------------- controls
def random_masks_like(masks: Masks, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random masks pruning exactly as many entries per tensor as ``masks`` do.

    Example:
        >>> m = random_masks_like({"fc.weight": torch.tensor([True, False, False, True])}, seed=1)
        >>> int(m["fc.weight"].sum())
        2
    """
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for name, mask in masks.items():
        n_pruned = int((~mask).sum())
        flat = torch.ones(mask.numel(), dtype=torch.bool)
        flat[torch.randperm(mask.numel(), generator=generator)[:n_pruned]] = False
        out[name] = flat.view(mask.shape).to(mask.device)
    return out


def _mask_list(masks: Masks | Sequence[Masks]) -> list[Masks]:
    return [masks] if isinstance(masks, Mapping) else list(masks)


def _reinitialised(model: ModelSource, seed: int, original_seed: int) -> nn.Module:
    """A model with fresh random weights drawn with ``seed`` (``reset_parameters`` on a copy of a module).

    Raises if the draw reproduces the original weights (same seed as the original initialisation).
    """
    original = _build(model, original_seed)
    if isinstance(model, nn.Module):
        fresh = copy.deepcopy(model)
        torch.manual_seed(seed)
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    else:
        fresh = _build(model, seed)
    if all(torch.equal(a, b) for a, b in zip(fresh.parameters(), original.parameters())):
        raise ValueError(f"reinit_seed={seed} reproduces the original initialisation; pick another reinit_seed")
    return fresh


def random_reinit_control(model: ModelSource, train_data: Dataset | DataLoader, val_data: Dataset | DataLoader,
                          masks: Masks | Sequence[Masks], epochs: int = 1, seed: int = 0, reinit_seed: int = 1,
                          quiet: bool = True, **train_kwargs) -> list[dict]:
    """Control 1: the ticket's masks with *new* random initial values (drawn with ``reinit_seed``).

    Args:
        masks: one mask dict, or a list of them (e.g. ``[r["masks"] for r in rows]``).
        seed: data order and (for a builder function) the original initialisation, as in
            :func:`find_lottery_ticket`. ``reinit_seed`` must give other weights (checked).

    Returns:
        one row per mask dict, with the same keys as :func:`find_lottery_ticket`'s.
    """
    return [{"round": i, **_train_with_mask(_reinitialised(model, reinit_seed, seed), m, train_data, val_data,
                                            epochs, seed, quiet, **train_kwargs)}
            for i, m in enumerate(_mask_list(masks))]


def random_mask_control(model: ModelSource, train_data: Dataset | DataLoader, val_data: Dataset | DataLoader,
                        masks: Masks | Sequence[Masks], epochs: int = 1, seed: int = 0, mask_seed: int = 1,
                        quiet: bool = True, **train_kwargs) -> list[dict]:
    """Control 2: the original initial values (θ0 from ``seed``) with *random* masks of the same per-layer sparsity.

    Args:
        masks: one mask dict, or a list of them; each is replaced by :func:`random_masks_like`.

    Returns:
        one row per mask dict, with the same keys as :func:`find_lottery_ticket`'s.
    """
    return [{"round": i, **_train_with_mask(_build(model, seed), random_masks_like(m, mask_seed), train_data,
                                            val_data, epochs, seed, quiet, **train_kwargs)}
            for i, m in enumerate(_mask_list(masks))]
