"""Notebook plumbing shared by every lab: run mode, seeding, plot defaults, timing.

Every lab starts the same way::

    FAST = False                                   # cell tagged "parameters" (papermill)
    FAST = prunekit.notebook.fast_mode(FAST)       # $PRUNEKIT_FAST=1 (CI) overrides
    env = prunekit.notebook.setup(seed=0, fast=FAST)
    epochs = prunekit.notebook.budget(FAST, fast=1, full=5)

* **full mode** (the default for learners) runs the experiments at the size the text discusses;
* **fast mode** (CI, or a learner in a hurry) runs the same cells on subsets with fewer epochs,
  so that a whole lab executes in a minute or two on a laptop CPU.

Example:
    >>> budget(True, fast=200, full=60000)
    200
"""
from __future__ import annotations

import os
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, TypeVar

import torch
import torch.utils.data

FAST_ENV = "PRUNEKIT_FAST"
THREADS_ENV = "PRUNEKIT_THREADS"
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
T = TypeVar("T")


def env_flag(name: str, default: bool = False) -> bool:
    """Read a yes/no environment variable (``1/true/yes/on`` or ``0/false/no/off``); unset -> ``default``.

    Raises ValueError for any other value, so a typo such as ``PRUNEKIT_FAST=ture`` is not silently ignored.
    """
    value = os.environ.get(name)
    if value is None:
        return default
    value = value.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"${name} must be one of {_TRUE + _FALSE[:-1]}, got {os.environ[name]!r}")


def fast_mode(default: bool = False) -> bool:
    """The run mode: ``$PRUNEKIT_FAST`` when it is set, else ``default`` (the notebook's parameter).

    Example:
        >>> fast_mode(False)   # doctest: +SKIP
        False

        (``True`` when CI exports ``PRUNEKIT_FAST=1``.)
    """
    if not isinstance(default, bool):
        raise TypeError(f"FAST must be True or False, got {default!r}")
    return env_flag(FAST_ENV, default)


def budget(is_fast: bool, *, fast: T, full: T) -> T:
    """Pick a number (epochs, subset size, list of sparsities...) by run mode: ``budget(FAST, fast=1, full=5)``.

    Example:
        >>> budget(False, fast=1, full=5)
        5
    """
    if not isinstance(is_fast, bool):
        raise TypeError(f"budget() needs the run mode (True/False) first, got {is_fast!r}")
    return fast if is_fast else full


@dataclass(frozen=True)
class Environment:
    """What :func:`setup` fixed: seed, run mode, torch threads, device, data root, versions."""

    seed: int
    fast: bool
    threads: int
    device: str
    data_root: str
    torch_version: str

    def __str__(self) -> str:
        mode = "FAST (subsets, few epochs)" if self.fast else "FULL"
        return (f"prunekit lab setup: mode {mode}, seed {self.seed}, torch {self.torch_version}, "
                f"{self.threads} CPU thread(s), device {self.device}, data {self.data_root}")


def setup(seed: int = 0, fast: bool = False, threads: int | None = None, quiet: bool = False) -> Environment:
    """Seed everything, fix torch's thread count, set matplotlib defaults; print one summary line.

    Args:
        seed: seeds Python, NumPy and torch (:func:`prunekit.train.seed_everything`).
        fast: the run mode, as returned by :func:`fast_mode` (only recorded and printed).
        threads: torch CPU threads; default ``$PRUNEKIT_THREADS`` or 1. One thread is the default on
            purpose: results are bit-reproducible for a given thread count (so stored outputs match
            on every machine), the course's small models gain little from more, and on a busy
            machine (a CI runner, a shared server) several spinning threads per process can make
            training 10x slower. Labs on larger models may ask for more.
        quiet: do not print the summary line.

    Returns:
        an :class:`Environment` (frozen) describing the run.
    """
    from .data import DATA_ENV, cache_dir
    from .train import get_device, seed_everything

    if threads is None:
        threads = int(os.environ.get(THREADS_ENV) or 1)
    seed_everything(seed, threads=threads)
    _matplotlib_defaults()
    env = Environment(seed=seed, fast=bool(fast), threads=torch.get_num_threads(), device=str(get_device()),
                      data_root=os.environ.get(DATA_ENV) or str(cache_dir() / "data"),
                      torch_version=torch.__version__)
    if not quiet:
        print(env)
    return env


def _matplotlib_defaults() -> None:
    """Small, readable, light-weight figures (they are stored in the solution notebooks)."""
    try:
        import matplotlib as mpl
    except ImportError:  # plots are optional for the library; labs install matplotlib
        return
    mpl.rcParams.update({"figure.figsize": (7.0, 3.6), "figure.dpi": 80, "savefig.dpi": 80,
                         "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False,
                         "axes.spines.right": False, "font.size": 10, "legend.frameon": False})


@contextmanager
def timer(label: str, quiet: bool = False) -> Iterator[dict]:
    """Measure the wall time of a block; prints ``label: 1.2 s`` and fills ``{"seconds": ...}``.

    Example:
        >>> with timer("nothing", quiet=True) as t:
        ...     pass
        >>> t["seconds"] >= 0
        True
    """
    record = {"label": label, "seconds": float("nan")}
    start = time.perf_counter()
    try:
        yield record
    finally:
        record["seconds"] = time.perf_counter() - start
        if not quiet:
            print(f"{label}: {record['seconds']:.1f} s")


# ----------------------------------------------------------------------------- fast data for small models
class InMemory(torch.utils.data.Dataset):
    """A dataset decoded once into two tensors ``x`` (N, ...) and ``y`` (N,).

    ``ds[i]`` is one example; ``ds[[i, j, ...]]`` is a whole batch in one indexing operation, which
    is what :func:`loader` asks for. For MNIST-sized models this makes training and evaluation
    several times faster than decoding and normalising one image at a time.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} examples but y has {len(y)}")
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, index):
        return self.x[index], self.y[index]


def preload(dataset: torch.utils.data.Dataset, batch_size: int = 1000) -> InMemory:
    """Decode every example of ``dataset`` once (no augmentation!) and keep them in memory.

    Example:
        >>> from prunekit.data import load_dataset
        >>> test = preload(load_dataset("mnist", "test"))     # doctest: +SKIP
        >>> test.x.shape, test.y.dtype                        # doctest: +SKIP
        (torch.Size([10000, 1, 28, 28]), torch.int64)
    """
    if getattr(dataset, "augment", False):
        raise ValueError("preload() would freeze one random augmentation; use it for unaugmented data only")
    xs, ys = [], []
    for x, y in torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=False):
        xs.append(x)
        ys.append(torch.as_tensor(y))
    return InMemory(torch.cat(xs), torch.cat(ys))


def loader(dataset: InMemory, batch_size: int = 128, shuffle: bool = False, seed: int = 0
           ) -> torch.utils.data.DataLoader:
    """Batches of an :class:`InMemory` dataset, fetched whole; the order depends only on ``seed``.

    Pass it wherever prunekit expects data (``train``, ``evaluate``, ``gradients``...).

    Example:
        >>> ds = InMemory(torch.arange(10.0).view(10, 1), torch.arange(10))
        >>> [y.tolist() for _, y in loader(ds, batch_size=4)]
        [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    """
    from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

    if not isinstance(dataset, InMemory):
        raise TypeError(f"loader() needs an InMemory dataset (see preload()), got {type(dataset).__name__}")
    base = (RandomSampler(dataset, generator=torch.Generator().manual_seed(seed)) if shuffle
            else SequentialSampler(dataset))
    return DataLoader(dataset, batch_size=None, sampler=BatchSampler(base, batch_size, drop_last=False))
