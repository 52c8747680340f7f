"""Language models: next-character loss, perplexity, and the training loop of the zoo's CharGPT.

Perplexity is ``exp`` of the mean cross-entropy per predicted character (in nats): a model that
spreads its bets evenly over k characters has perplexity k, so 65 is a uniform guess over the
65 characters of Tiny Shakespeare and 1 is a model that is always certain and right.

Example:
    >>> from prunekit.data import load_dataset
    >>> from prunekit.zoo import load_pretrained
    >>> model = load_pretrained("chargpt")                                        # doctest: +SKIP
    >>> perplexity(model, load_dataset("tinyshakespeare", "val"), n_batches=4)    # doctest: +SKIP
    4.5...
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from .data import make_loader
from .train import _autocast, get_device


def next_token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy (nats) of logits (B, T, vocab) against target ids (B, T)."""
    return F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())


@torch.no_grad()
def mean_loss(model: nn.Module, data: Dataset | DataLoader, n_batches: int | None = None,
              batch_size: int = 32, device=None) -> float:
    """Mean next-character cross-entropy (nats per character) of ``model`` on ``data``'s (x, y) blocks.

    ``data``: a Dataset of (x, y) blocks (read in batches of ``batch_size``), or an iterable of
    (x, y) batches (a DataLoader, a list). Reads the blocks in order (no shuffling), the first ``n_batches`` batches
    only if given.
    The model is measured in eval mode and returned to its previous mode.
    """
    device = get_device(device)
    loader = make_loader(data, batch_size=batch_size) if isinstance(data, Dataset) else data  # else: batches
    was_training = model.training
    model.eval().to(device)
    total, count = 0.0, 0
    for i, (x, y) in enumerate(loader):
        if n_batches is not None and i >= n_batches:
            break
        x, y = x.to(device), y.to(device)
        # Summed, not averaged, per batch: a short last batch then weighs what its characters weigh.
        total += F.cross_entropy(model(x).float().flatten(0, 1), y.flatten(), reduction="sum").item()
        count += y.numel()
    model.train(was_training)
    if count == 0:
        raise ValueError("mean_loss() got no data (empty dataset, or n_batches=0)")
    return total / count


def perplexity(model: nn.Module, data: Dataset | DataLoader, n_batches: int | None = None,
               batch_size: int = 32, device=None) -> float:
    """exp(mean cross-entropy per character) of ``model`` on ``data`` (a Dataset of (x, y) blocks).

    Args:
        model: maps ids (B, T) to logits (B, T, vocab).
        data: e.g. ``load_dataset("tinyshakespeare", "val")``, or batches of (x, y) (a DataLoader, a list).
        n_batches: measure on the first ``n_batches`` batches only (fast mode); None = all.

    Example:
        >>> perplexity(load_pretrained("chargpt"), val, n_batches=4)   # doctest: +SKIP
        4.5...
    """
    return math.exp(mean_loss(model, data, n_batches=n_batches, batch_size=batch_size, device=device))


# ----------------------------------------------------------------------------- training
@dataclass(frozen=True)
class LMRecipe:
    """How the zoo's CharGPT is trained: AdamW on random 128-character blocks, linear warm-up then cosine decay.

    The recipe counts optimizer steps, not seconds, so it is the same training on a laptop CPU and
    on a GPU; only the time differs (recorded in the checkpoint). nanoGPT's ``shakespeare_char``
    uses the same optimizer settings for its 10.7 M-parameter model.
    """

    model: str = "chargpt"
    dataset: str = "tinyshakespeare"
    steps: int = 3000
    batch_size: int = 64
    block_size: int = 128
    lr: float = 2e-3         # peak learning rate, reached after warmup_steps
    min_lr: float = 1e-4     # where the cosine ends
    warmup_steps: int = 100
    weight_decay: float = 0.1  # on weight matrices only, not on biases, LayerNorms or embeddings
    betas: tuple[float, float] = (0.9, 0.99)
    grad_clip: float = 1.0
    eval_every: int = 250
    eval_batches: int = 20   # validation batches measured every eval_every steps (the final one uses all)
    precision: str = "bf16"  # mixed precision where the hardware has it (prunekit.train.fast_precision)
    seed: int = 0


def learning_rate(step: int, recipe: LMRecipe) -> float:
    """Linear warm-up to ``recipe.lr`` over ``warmup_steps``, then cosine decay to ``min_lr`` at ``steps``."""
    if step < recipe.warmup_steps:
        return recipe.lr * (step + 1) / recipe.warmup_steps
    progress = min(1.0, (step - recipe.warmup_steps) / max(1, recipe.steps - recipe.warmup_steps))
    return recipe.min_lr + 0.5 * (recipe.lr - recipe.min_lr) * (1 + math.cos(math.pi * progress))


def _adamw(model: nn.Module, recipe: LMRecipe) -> torch.optim.AdamW:
    # Weight decay shrinks matrices only: decaying LayerNorm gains or biases only hurts.
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2 and "emb" not in n]
    rest = [p for n, p in model.named_parameters() if not (p.ndim >= 2 and "emb" not in n)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": recipe.weight_decay},
                              {"params": rest, "weight_decay": 0.0}], lr=recipe.lr, betas=recipe.betas)


def train_language_model(model: nn.Module, train_set, val_set, recipe: LMRecipe, device=None,
                         max_steps: int | None = None, quiet: bool = False) -> dict:
    """Train ``model`` in place with ``recipe``; returns the record the zoo stores with the checkpoint.

    ``max_steps`` stops early (a quick check of the command); the learning-rate schedule still
    follows ``recipe.steps``. The record holds the final validation loss on all of ``val_set``,
    the history of (step, train loss, validation loss on ``eval_batches`` batches), the device,
    the precision used and the mean seconds per step.
    """
    device = get_device(device)
    precision = recipe.precision
    if precision == "bf16":
        from .train import fast_precision
        precision = fast_precision(device)  # bf16 only where the hardware has it; else fp32
    model.to(device).train()
    optimizer = _adamw(model, recipe)
    generator = torch.Generator().manual_seed(recipe.seed)  # which blocks are drawn
    steps = recipe.steps if max_steps is None else min(max_steps, recipe.steps)
    history, seconds, window = [], 0.0, []
    for step in range(steps):
        t0 = time.perf_counter()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, recipe)
        x, y = train_set.random_batch(recipe.batch_size, generator)
        x, y = x.to(device), y.to(device)
        with _autocast(device, precision):
            loss = next_token_loss(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), recipe.grad_clip)
        optimizer.step()
        window.append(loss.item())  # .item() waits for the GPU, so the step time below is real
        seconds += time.perf_counter() - t0
        if (step + 1) % recipe.eval_every == 0 or step + 1 == steps:
            val = mean_loss(model, val_set, n_batches=recipe.eval_batches, device=device)
            model.train()
            history.append({"step": step + 1, "train_loss": round(sum(window) / len(window), 4),
                            "val_loss": round(val, 4), "seconds": round(seconds, 1)})
            window = []
            if not quiet:
                print(f"step {step + 1}/{steps}: train loss {history[-1]['train_loss']:.4f}, val loss "
                      f"{val:.4f} ({seconds:.0f} s, {1000 * seconds / (step + 1):.0f} ms/step on {device})",
                      flush=True)
    model.eval()
    val_loss = mean_loss(model.float(), val_set, device=device)
    return {"val_loss": round(val_loss, 4), "val_perplexity": round(math.exp(val_loss), 3),
            "steps_done": steps, "train_seconds": round(seconds, 1),
            "ms_per_step": round(1000 * seconds / max(steps, 1), 1), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "precision": precision, "threads": torch.get_num_threads(), "history": history}
