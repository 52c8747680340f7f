"""Training and evaluation: one small loop, used by the zoo, the labs and the pruning schedules.

* :func:`seed_everything` makes CPU runs bit-reproducible (same seed, same thread count).
* :func:`train` runs SGD/Adam for some epochs with a tqdm progress bar. After **every**
  optimizer step it re-applies the pruning masks a model carries (see :mod:`prunekit.pruning`),
  then calls your ``after_step`` callbacks. Learning-rate schedules step once per *epoch*.
* :func:`evaluate` returns accuracy as a fraction in [0, 1].
* :func:`fine_tune` is :func:`train` with a small constant-then-cosine learning rate.
* :func:`update_weight_average` and :func:`recompute_batchnorm` are the two steps of stochastic
  weight averaging: a running mean of weight snapshots, then BatchNorm statistics measured for it.

Example:
    >>> from prunekit.models import build_model
    >>> from prunekit.data import load_dataset, subset
    >>> model = build_model("lenet300")                                          # doctest: +SKIP
    >>> history = train(model, subset(load_dataset("mnist", "train"), 2000), epochs=1)  # doctest: +SKIP
    >>> evaluate(model, load_dataset("mnist", "test"))                           # doctest: +SKIP
    0.87...
"""
from __future__ import annotations

import contextlib
import os
import random
import time
import warnings
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from .data import make_loader

DEVICE_ENV = "PRUNEKIT_DEVICE"
StepCallback = Callable[[nn.Module, int], None]


def seed_everything(seed: int = 0, threads: int | None = None) -> None:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels.

    On CPU, two runs with the same seed and the same number of threads give identical weights.
    ``threads`` fixes ``torch.set_num_threads`` (results can differ across thread counts).
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.benchmark = False
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")


def get_device(device: str | torch.device | None = None) -> torch.device:
    """The device to use: the argument, else ``$PRUNEKIT_DEVICE``, else cuda > mps > cpu."""
    choice = device or os.environ.get(DEVICE_ENV)
    if choice:
        return torch.device(choice)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _as_loader(data: Dataset | DataLoader, batch_size: int, shuffle: bool, seed: int | None) -> DataLoader:
    if isinstance(data, DataLoader):
        return data
    if not isinstance(data, Dataset):
        raise TypeError(f"expected a torch Dataset or DataLoader, got {type(data).__name__}")
    return make_loader(data, batch_size=batch_size, shuffle=shuffle, seed=seed)


@contextlib.contextmanager
def _own_random_stream(seed: int | None, device: torch.device):
    """Run the block on torch's RNG seeded with ``seed``, then give the caller back its own state.

    ``seed=None`` runs the block on the caller's global stream, untouched.
    """
    if seed is None:
        yield
        return
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


def _progress(iterable, quiet: bool, **kwargs):
    if quiet:
        return iterable
    from tqdm.auto import tqdm
    return tqdm(iterable, leave=False, **kwargs)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset | DataLoader, device=None, batch_size: int = 1000,
             quiet: bool = True) -> float:
    """Top-1 accuracy of ``model`` on ``data`` (a Dataset or DataLoader), as a fraction in [0, 1].

    The model is put in eval mode for the measurement and returned to its previous mode.

    Example:
        >>> evaluate(load_pretrained("lenet300"), load_dataset("mnist", "test"))   # doctest: +SKIP
        0.98...
    """
    device = get_device(device)
    loader = _as_loader(data, batch_size, shuffle=False, seed=0)
    was_training = model.training
    model.eval().to(device)
    correct = total = 0
    for x, y in _progress(loader, quiet, desc="eval"):
        x, y = x.to(device), y.to(device)
        correct += (model(x).argmax(dim=1) == y).sum().item()
        total += y.numel()
    model.train(was_training)
    if total == 0:
        raise ValueError("evaluate() got an empty dataset")
    return correct / total


def make_optimizer(model: nn.Module, name: str = "sgd", lr: float = 0.05, momentum: float = 0.9,
                   weight_decay: float = 5e-4) -> torch.optim.Optimizer:
    """SGD with momentum (``"sgd"``) or Adam (``"adam"``) over the model's current parameters.

    Build a new one after physical pruning: an old optimizer still points at the removed tensors.
    """
    if name == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ValueError(f"optimizer must be 'sgd' or 'adam', got {name!r}")


def make_scheduler(optimizer: torch.optim.Optimizer, name: str | None, epochs: int):
    """An epoch-level learning-rate schedule: ``"cosine"``, ``"step"`` (x0.1 at 50 % and 75 %) or None."""
    if name is None or name == "constant":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1))
    if name == "step":
        return torch.optim.lr_scheduler.MultiStepLR(optimizer, [epochs // 2, (3 * epochs) // 4], 0.1)
    raise ValueError(f"lr schedule must be 'cosine', 'step', 'constant' or None, got {name!r}")


def fast_precision(device=None) -> str:
    """``"bf16"`` where bfloat16 has hardware support (recent NVIDIA GPUs; CPUs with AMX or AVX512-BF16,
    e.g. Intel Sapphire Rapids, AMD Zen 4), else ``"fp32"``.

    On such hardware, mixed-precision training is 2-3x faster (measured here, 2 cores: a CIFAR VGG 2.2x and
    ResNet-20 2.8x with AMX; ResNet-20 2.2x with AVX512-BF16 on a Zen 4); elsewhere bfloat16 is emulated
    and slower, so fp32 is the fast choice.

    Example:
        >>> fast_precision("cpu")    # doctest: +SKIP
        'bf16'
    """
    device = get_device(device)
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        # Private torch helpers (absent in old releases): bf16 matrix units (AMX) or bf16 vector instructions.
        probes = [getattr(torch.cpu, probe, lambda: False)
                  for probe in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
        return "bf16" if any(probe() for probe in probes) else "fp32"
    return "fp32"


def _autocast(device: torch.device, precision: str):
    if precision == "auto":
        precision = fast_precision(device)
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision == "bf16":
        if fast_precision(device) != "bf16":
            # Measured on a 2-core AVX2 CPU: one training step of the pruned ResNet-20 took 5.2 s in bf16
            # and 0.5 s in fp32. A recipe recorded on other hardware may ask for bf16; say so once.
            missing = "no AMX or AVX512-BF16" if device.type == "cpu" else "torch reports no bf16 support"
            warnings.warn(f"bf16 has no hardware support on this {device.type} ({missing}): it is emulated and "
                          "much slower than fp32 (about 10x on a CPU). Use precision='auto' (or 'fp32') unless "
                          "you need the bf16 numbers exactly.", UserWarning, stacklevel=3)
        return torch.autocast(device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision must be 'fp32', 'bf16' or 'auto', got {precision!r}")


def train(model: nn.Module, data: Dataset | DataLoader, epochs: int = 1, lr: float = 0.05,
          optimizer: torch.optim.Optimizer | str = "sgd", lr_schedule: str | None = "cosine",
          weight_decay: float = 5e-4, batch_size: int = 128, seed: int | None = 0,
          val_data: Dataset | DataLoader | None = None, after_step: Iterable[StepCallback] = (),
          regularizer: Callable[[nn.Module], torch.Tensor] | None = None, max_steps: int | None = None,
          device=None, quiet: bool = False, label_smoothing: float = 0.0,
          precision: str = "fp32", loss_fn: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]
          | None = None) -> list[dict]:
    """Train ``model`` in place with cross-entropy; returns one dict of statistics per epoch.

    Args:
        data: training Dataset (shuffled with ``seed``) or a ready DataLoader.
        seed: fixes the shuffling order and the random data augmentation, so the same call gives
            the same weights whatever random numbers were drawn before it (re-running a notebook
            cell repeats its numbers); torch's global random state is left as it was. ``None``
            draws both from the global state instead and advances it (the zoo does this to
            continue one random stream over its one-epoch calls).
        epochs: passes over the data. ``max_steps`` stops earlier, after that many batches in total.
        optimizer: ``"sgd"`` (momentum 0.9), ``"adam"`` or a ready optimizer (``lr`` then unused).
        lr_schedule: ``"cosine"``, ``"step"``, ``"constant"``/None; stepped once per epoch.
        after_step: callbacks ``f(model, step)`` run after each optimizer step, after the masks
            the model carries are re-applied (so pruned weights are exactly zero when they run).
        regularizer: ``f(model) -> scalar`` added to the loss
            (e.g. ``prunekit.regularizers.make_regularizer("l1", 1e-5)``).
        val_data: if given, validation accuracy is measured after each epoch.
        quiet: no progress bar.
        loss_fn: ``f(logits, x, y) -> scalar`` used instead of cross-entropy (``label_smoothing`` is
            then up to it), e.g. a distillation loss that also runs a teacher on ``x``.
        precision: ``"fp32"``, ``"bf16"`` (mixed precision: convolutions and matrix products in
            bfloat16, weights and updates in fp32) or ``"auto"`` (:func:`fast_precision`: bf16 where
            the hardware supports it, which is 2-3x faster, else fp32).

    Returns:
        ``[{"epoch", "loss", "train_acc", "lr", "seconds", "val_acc"?}, ...]``
    """
    from .pruning import enforce_masks  # local import: pruning builds on train, not the reverse

    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    device = get_device(device)
    model.to(device)
    loader = _as_loader(data, batch_size, shuffle=True, seed=seed)
    if isinstance(optimizer, str):
        optimizer = make_optimizer(model, optimizer, lr=lr, weight_decay=weight_decay)
    scheduler = make_scheduler(optimizer, lr_schedule, epochs)
    if loss_fn is None:
        cross_entropy = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        loss_fn = lambda logits, x, y: cross_entropy(logits, y)  # noqa: E731
    autocast = _autocast(device, precision)
    callbacks = list(after_step)
    history, step = [], 0
    with _own_random_stream(seed, device):  # augmentation draws from torch's RNG
        for epoch in range(epochs):
            model.train()
            start, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
            bar = _progress(loader, quiet, desc=f"epoch {epoch + 1}/{epochs}")
            for x, y in bar:
                x, y = x.to(device), y.to(device)
                with autocast:
                    logits = model(x)
                    loss = loss_fn(logits, x, y)
                if regularizer is not None:
                    loss = loss + regularizer(model)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                enforce_masks(model)
                step += 1
                for callback in callbacks:
                    callback(model, step)
                loss_sum += loss.item() * y.numel()
                correct += (logits.argmax(1) == y).sum().item()
                seen += y.numel()
                if not quiet and step % 20 == 0:
                    bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
                if max_steps is not None and step >= max_steps:
                    break
            record = {"epoch": epoch + 1, "loss": loss_sum / max(seen, 1), "train_acc": correct / max(seen, 1),
                      "lr": optimizer.param_groups[0]["lr"], "seconds": time.perf_counter() - start}
            if scheduler is not None:
                scheduler.step()
            if val_data is not None:
                record["val_acc"] = evaluate(model, val_data, device=device)
            history.append(record)
            if not quiet:
                print(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in record.items()))
            if max_steps is not None and step >= max_steps:
                break
    model.eval()
    return history


def fine_tune(model: nn.Module, data: Dataset | DataLoader, epochs: int = 1, lr: float = 0.01,
              **kwargs) -> list[dict]:
    """Recover accuracy after pruning: :func:`train` with a smaller learning rate (cosine by default).

    Masks the model carries are kept after every step, so pruned weights stay exactly zero.
    Keyword arguments are passed on to :func:`train`.

    Example:
        >>> prune_layerwise(model, 0.9); fine_tune(model, train_data, epochs=2)   # doctest: +SKIP
    """
    return train(model, data, epochs=epochs, lr=lr, **kwargs)


@torch.no_grad()
def update_weight_average(average: dict[str, torch.Tensor] | None, model: nn.Module,
                          count: int) -> dict[str, torch.Tensor]:
    """The running mean of ``count`` earlier weight snapshots (``average``) and ``model``'s current weights.

    Stochastic weight averaging (Izmailov et al. 2018) calls this once per epoch while training at a
    constant learning rate: SGD then wanders around a wide minimum, and the mean of the points it visits
    lies nearer the centre of that minimum than any one of them. Floating-point entries of the state
    dict are averaged (``avg + (w - avg) / (count + 1)``); integer ones (BatchNorm's batch counter) are
    copied. Returns a new dict; ``average=None`` (with ``count=0``) starts the mean.

    Example:
        >>> average = None
        >>> for count in range(epochs):                       # doctest: +SKIP
        ...     train(model, data, epochs=1, lr_schedule=None)
        ...     average = update_weight_average(average, model, count)
    """
    if (average is None) != (count == 0):
        raise ValueError(f"start the average with average=None and count=0, got count={count}")
    current = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if average is None:
        return current
    return {k: avg + (current[k] - avg) / (count + 1) if avg.is_floating_point() else current[k]
            for k, avg in average.items()}


@torch.no_grad()
def recompute_batchnorm(model: nn.Module, data: Dataset | DataLoader, device=None, batch_size: int = 256) -> None:
    """Re-estimate every BatchNorm layer's running mean and variance in one pass over ``data``.

    The weights are not changed. Needed after averaging weights (the averaged network's activations have
    statistics of their own, not the mean of the snapshots' statistics) and useful after pruning
    channels. ``momentum=None`` makes each layer keep the plain average over all batches.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    device = get_device(device)
    loader = _as_loader(data, batch_size, shuffle=True, seed=0)
    was_training = model.training
    momenta = [norm.momentum for norm in norms]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train().to(device)  # train mode: BatchNorm normalises with, and records, each batch's statistics
    for x, _ in loader:
        model(x.to(device))
    for norm, momentum in zip(norms, momenta):
        norm.momentum = momentum
    model.train(was_training)
