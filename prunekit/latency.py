"""Latency: how long a forward pass takes, measured so that models can be compared fairly.

* :func:`measure_latency`: median seconds per batch with ``torch.utils.benchmark`` on a fixed
  number of CPU threads;
* :func:`compare_latency` / :func:`latency_ratio`: several models timed **alternately** in one
  call, so a machine that slows down affects all of them. Absolute times depend on the machine
  and its load; ratios travel between machines much better.

Example:
    >>> from prunekit.models import build_model
    >>> t = measure_latency(build_model("lenet300"), (1, 28, 28), batch_sizes=(1,))
    >>> t[1] > 0
    True
"""
from __future__ import annotations

import time
import timeit
from statistics import median
from typing import Mapping, Sequence

import torch
from torch import nn

__all__ = ["CLOCKS", "measure_latency", "compare_latency", "latency_ratio"]


# "wall": seconds a user waits, inflated when other programs share the cores. "cpu": CPU seconds
# of this process, which other programs do not inflate; with threads=1 it is the cost of one
# forward pass on one core, but it misses time spent waiting (it is not what a user waits).
CLOCKS = {"wall": timeit.default_timer, "cpu": time.process_time}


def _timer(model: nn.Module, x: torch.Tensor, threads: int, clock: str):
    from torch.utils.benchmark import Timer

    def forward():
        with torch.no_grad():
            return model(x)

    return Timer(stmt="forward()", globals={"forward": forward}, num_threads=threads, timer=CLOCKS[clock])


def _check_latency_args(input_shape, batch_sizes, threads, clock: str = "wall") -> None:
    if not all(isinstance(d, int) and d > 0 for d in input_shape):
        raise ValueError(f"input_shape must be positive ints without the batch dimension, "
                         f"got {input_shape!r}")
    if not batch_sizes or not all(isinstance(b, int) and b > 0 for b in batch_sizes):
        raise ValueError(f"batch_sizes must be positive ints, got {batch_sizes!r}")
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    if clock not in CLOCKS:
        raise ValueError(f"clock must be one of {sorted(CLOCKS)}, got {clock!r}")


def _dummy_input(model: nn.Module, input_shape, batch: int) -> torch.Tensor:
    # Match the model's device and dtype; a model without parameters (nn.ReLU) gets CPU float32.
    first = next(iter(model.parameters()), next(iter(model.buffers()), torch.empty(0)))
    return torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0)).to(first)


def measure_latency(model: nn.Module, input_shape: Sequence[int], batch_sizes: Sequence[int] = (1, 64),
                    threads: int = 1, warmup: int = 3, min_run_time: float = 0.2,
                    clock: str = "wall") -> dict[int, float]:
    """Median seconds per forward pass of a batch, for each batch size (eval mode, no autograd).

    Uses ``torch.utils.benchmark.Timer(...).blocked_autorange``: repeated blocks of runs until
    ``min_run_time`` seconds have passed, with ``threads`` intra-op threads during the timing.
    Absolute numbers depend on the machine and its load: compare models with :func:`latency_ratio`.
    ``clock="wall"`` measures what a user waits; ``clock="cpu"`` counts CPU seconds of this
    process instead, which programs running beside it do not inflate (best with ``threads=1``).

    Returns:
        ``{batch_size: median seconds per batch}``

    Example:
        >>> from prunekit.models import build_model
        >>> t = measure_latency(build_model("lenet300"), (1, 28, 28), batch_sizes=(1,))
        >>> t[1] > 0
        True
    """
    _check_latency_args(input_shape, batch_sizes, threads, clock)
    was_training = model.training
    model.eval()
    try:
        result = {}
        for batch in batch_sizes:
            timer = _timer(model, _dummy_input(model, input_shape, batch), threads, clock)
            timer.timeit(warmup)
            result[batch] = timer.blocked_autorange(min_run_time=min_run_time).median
        return result
    finally:
        model.train(was_training)


def compare_latency(models: Mapping[str, nn.Module], input_shape: Sequence[int],
                    batch_sizes: Sequence[int] = (1, 64), threads: int = 1, rounds: int = 5,
                    warmup: int = 3, min_run_time: float = 0.05,
                    clock: str = "wall") -> dict[int, dict[str, float]]:
    """Median seconds per batch of several models timed **alternately**, for a fair comparison.

    Each of ``rounds`` rounds times every model once (``blocked_autorange`` for ``min_run_time``
    seconds); a model's result is the median over the rounds. If the machine slows down during
    the call (another job starts), every model is affected, not just the one being timed.
    ``clock`` is ``"wall"`` or ``"cpu"``, as in :func:`measure_latency`.

    Args:
        models: ``{"dense": model, "pruned": smaller_model, ...}``, same input shape.

    Returns:
        ``{batch_size: {label: median seconds per batch}}``

    Example:
        >>> from prunekit.models import build_model
        >>> t = compare_latency({"a": build_model("lenet300"), "b": build_model("lenet300")},
        ...                     (1, 28, 28), batch_sizes=(1,), rounds=2)
        >>> sorted(t[1])
        ['a', 'b']
    """
    _check_latency_args(input_shape, batch_sizes, threads, clock)
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive int, got {rounds!r}")
    if not models:
        raise ValueError("models is empty: give {label: model}")
    states = {label: m.training for label, m in models.items()}
    try:
        for m in models.values():
            m.eval()
        result = {}
        for batch in batch_sizes:
            timers = {label: _timer(m, _dummy_input(m, input_shape, batch), threads, clock)
                      for label, m in models.items()}
            for timer in timers.values():
                timer.timeit(warmup)
            times = {label: [] for label in models}
            for _ in range(rounds):
                for label, timer in timers.items():
                    times[label].append(timer.blocked_autorange(min_run_time=min_run_time).median)
            result[batch] = {label: median(t) for label, t in times.items()}
        return result
    finally:
        for label, m in models.items():
            m.train(states[label])


def latency_ratio(model_a: nn.Module, model_b: nn.Module, input_shape: Sequence[int],
                  batch_sizes: Sequence[int] = (1, 64), threads: int = 1, rounds: int = 5,
                  warmup: int = 3, min_run_time: float = 0.05, clock: str = "wall") -> dict[int, float]:
    """``time(model_a) / time(model_b)`` per batch size, the two timed alternately.

    A ratio of 2.0 means B is twice as fast as A (A dense, B pruned: a 2x speed-up). Ratios
    travel between machines much better than milliseconds do. See :func:`compare_latency`.

    Example:
        >>> from prunekit.models import build_model
        >>> r = latency_ratio(build_model("vgg"), build_model("vgg"), (3, 32, 32), batch_sizes=(1,), clock="cpu")
        >>> 0.5 < r[1] < 2.0      # the same network: about 1 (CPU time: a busy machine does not skew it)
        True
    """
    times = compare_latency({"a": model_a, "b": model_b}, input_shape, batch_sizes, threads, rounds,
                            warmup, min_run_time, clock)
    return {batch: t["a"] / t["b"] for batch, t in times.items()}
