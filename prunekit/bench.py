"""The benchmark of the course: ``python -m prunekit.bench [--threads N] [--json results.json]``.

It measures, in one run (about a minute on a laptop CPU):

(a) **pruning speed**: global magnitude pruning of a ~10M-parameter MLP to 90 % with
    ``prunekit.pruning.prune_global`` and with ``torch.nn.utils.prune.global_unstructured``
    (``L1Unstructured``) on the same weights: the ratio prunekit / torch, and whether both chose
    the same weights.
(b) **what structured pruning buys**: CPU latency of the VGG against channel-pruned copies
    (``prunekit.surgery.prune_channels``, 30/50/70 % of the channels removed), next to the MAC ratio,
    the speed-up a perfect implementation would get.

How it keeps a busy machine from writing fiction:

- the models (and the two libraries) are timed **alternately**, round after round, so a slowdown
  in the middle of the run hits all of them, not only the one being timed;
- on one thread (the default) it counts the **CPU time** of this process (``time.process_time``),
  which other programs inflate much less than wall-clock time; with ``--threads N`` > 1 it must use
  wall-clock time (CPU time would add the threads up) and says so;
- every row reports the **median** over the rounds and the **spread**: the interquartile range
  (IQR, the middle half of the rounds) relative to the median. A row whose spread exceeds
  ``--max-spread`` (10 %) is marked ``NOISY``: its number is not a result. Run again on a quieter
  machine, or with more ``--rounds``.

Milliseconds depend on the machine; the ratios are what to compare.

Example:
    >>> result = bench_global_pruning(make_mlp((64, 128, 10)), repeats=3)   # doctest: +SKIP
    >>> result["same_mask"], result["noisy"]                                 # doctest: +SKIP
    (True, False)
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import time
from statistics import median, quantiles
from typing import Callable, Mapping, Sequence

import torch
from torch import nn

from .masks import num_to_prune
from .measure import count_macs, count_parameters, format_table
from .models import INPUT_SHAPES, build_model
from .pruning import get_masks, prunable_weights, prune_global

MAX_SPREAD = 0.10   # IQR / median above which a row is marked NOISY
MLP_SIZES = (784, 2048, 2048, 2048, 10)     # 10,020,874 parameters


def make_mlp(sizes: Sequence[int] = MLP_SIZES, seed: int = 0) -> nn.Sequential:
    """A ReLU MLP with Linear layers ``sizes[0] -> sizes[1] -> ...``, PyTorch's default init.

    Example:
        >>> count_parameters(make_mlp((784, 300, 100, 10)))
        266610
    """
    if len(sizes) < 2 or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise ValueError(f"sizes must be at least two positive ints, got {sizes!r}")
    with torch.random.fork_rng(devices=[]):          # seeded without touching the caller's RNG
        torch.manual_seed(seed)
        layers = []
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    return nn.Sequential(*layers[:-1])


def _torch_global_magnitude(model: nn.Module, sparsity: float) -> None:
    from torch.nn.utils import prune

    targets = [(module, "weight") for module in model.modules() if isinstance(module, (nn.Linear, nn.Conv2d))]
    prune.global_unstructured(targets, pruning_method=prune.L1Unstructured, amount=sparsity)


def _torch_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    return {f"{name}.weight": module.weight_mask.bool() for name, module in model.named_modules()
            if hasattr(module, "weight_mask")}


def compare_masks(model: nn.Module, ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor]) -> dict:
    """How two global magnitude masks of ``model`` (its dense weights) differ.

    Both must prune exactly k weights; they may differ only among weights whose magnitude equals
    the k-th smallest (a tie: either choice is a correct top-k, and libraries break ties differently).

    Returns:
        ``{"same_mask": bool, "different_entries": int, "tied_at_threshold": int,
        "differences_are_ties": bool}``
    """
    names = list(ours)
    a = torch.cat([ours[n].flatten() for n in names])
    b = torch.cat([theirs[n].flatten() for n in names])
    scores = torch.cat([prunable_weights(model)[n].detach().abs().flatten() for n in names])
    threshold = scores[~a].max() if (~a).any() else scores.min()
    different = a != b
    return {"same_mask": bool(torch.equal(a, b)), "different_entries": int(different.sum()),
            "tied_at_threshold": int((scores == threshold).sum()),
            "differences_are_ties": bool((scores[different] == threshold).all())}


# ----------------------------------------------------------------------------- timing and its spread
def clock_for(threads: int) -> tuple[Callable[[], float], str]:
    """The clock to time with: this process's CPU time on one thread, wall-clock time on more.

    CPU time is what a forward pass costs, whatever else runs on the machine; with several threads it
    would add up the threads' seconds, so only wall-clock time measures latency there.

    Example:
        >>> clock_for(1)[1], clock_for(2)[1]
        ('cpu', 'wall')
    """
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    return (time.process_time, "cpu") if threads == 1 else (time.perf_counter, "wall")


def spread(samples: Sequence[float]) -> dict:
    """Median, interquartile range and IQR / median of some measurements (NaN spread for one sample).

    Example:
        >>> s = spread([1.0, 1.1, 1.0, 0.9, 1.0])
        >>> s["median"], round(s["iqr"], 2), round(s["relative"], 2)
        (1.0, 0.0, 0.0)
    """
    if not samples:
        raise ValueError("no samples")
    middle = median(samples)
    if len(samples) < 2:
        return {"median": middle, "iqr": math.nan, "relative": math.nan}
    q1, _, q3 = quantiles(samples, n=4, method="inclusive")
    return {"median": middle, "iqr": q3 - q1, "relative": (q3 - q1) / middle if middle else math.inf}


def is_noisy(relative_spread: float, max_spread: float = MAX_SPREAD) -> bool:
    """True when a row cannot be read as a result: its IQR / median is above ``max_spread`` or unknown."""
    return not relative_spread <= max_spread    # NaN (one round) counts as noisy


def time_alternately(functions: Mapping[str, Callable[[], object]], rounds: int = 9, min_time: float = 0.1,
                     clock: Callable[[], float] = time.process_time, warmup: int = 2) -> dict[str, list[float]]:
    """Seconds per call of each function, one measurement per round, the functions taking turns.

    In each round every function runs repeatedly for at least ``min_time`` seconds of ``clock``; the
    round's measurement is that time divided by the number of calls. The order rotates from round to
    round, so no function always runs first (after an idle pause) or last.

    Returns:
        ``{label: [seconds per call in round 0, round 1, ...]}``

    Example:
        >>> times = time_alternately({"a": lambda: sum(range(1000)), "b": lambda: sum(range(2000))}, rounds=3,
        ...                          min_time=0.01)
        >>> [len(t) for t in times.values()]
        [3, 3]
    """
    if not isinstance(rounds, int) or rounds < 1:
        raise ValueError(f"rounds must be a positive int, got {rounds!r}")
    if not functions:
        raise ValueError("functions is empty: give {label: function}")
    labels = list(functions)
    for label in labels:
        for _ in range(warmup):
            functions[label]()
    times: dict[str, list[float]] = {label: [] for label in labels}
    for round_index in range(rounds):
        shift = round_index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            calls, start = 0, clock()
            while True:
                functions[label]()
                calls += 1
                elapsed = clock() - start
                if elapsed >= min_time:
                    break
            times[label].append(elapsed / calls)
    return times


class _threads:
    """``with _threads(n):`` runs torch on n intra-op threads, then restores the previous number."""

    def __init__(self, n: int):
        self.n, self.previous = n, torch.get_num_threads()

    def __enter__(self):
        torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        torch.set_num_threads(self.previous)


# ----------------------------------------------------------------------------- (a) pruning speed
def bench_global_pruning(model: nn.Module, sparsity: float = 0.9, repeats: int = 5, threads: int = 1,
                         max_spread: float = MAX_SPREAD) -> dict:
    """Time global magnitude pruning with prunekit and with ``torch.nn.utils.prune`` (same weights).

    Each repeat prunes a fresh deep copy of ``model`` (copying is not timed) with both libraries,
    alternating which goes first. The ratio prunekit / torch is taken per repeat; the result is its
    median and spread (IQR / median), and ``noisy`` says whether that spread is above ``max_spread``.

    Returns:
        ``{"params", "pruned", "threads", "clock", "prunekit_s", "torch_s" (medians), "ratio" (median of
        the per-repeat ratios), "ratio_spread", "noisy", "same_mask", "different_entries",
        "tied_at_threshold", "differences_are_ties"}``
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    clock, clock_name = clock_for(threads)
    prune = {"prunekit": prune_global, "torch": _torch_global_magnitude}
    read_masks = {"prunekit": get_masks, "torch": _torch_masks}
    times, masks = {"prunekit": [], "torch": []}, {}
    with _threads(threads):
        for repeat in range(repeats):
            for library in (("prunekit", "torch") if repeat % 2 == 0 else ("torch", "prunekit")):
                pruned = copy.deepcopy(model)
                start = clock()
                prune[library](pruned, sparsity)
                times[library].append(clock() - start)
                masks[library] = read_masks[library](pruned)
    n = sum(w.numel() for w in prunable_weights(model).values())
    ratios = spread([a / b for a, b in zip(times["prunekit"], times["torch"])])
    result = {"params": n, "pruned": num_to_prune(n, sparsity), "threads": threads, "clock": clock_name,
              "prunekit_s": median(times["prunekit"]), "torch_s": median(times["torch"]),
              "ratio": ratios["median"], "ratio_spread": ratios["relative"],
              "noisy": is_noisy(ratios["relative"], max_spread)}
    result.update(compare_masks(model, masks["prunekit"], masks["torch"]))
    if sum(int((~m).sum()) for m in masks["prunekit"].values()) != result["pruned"]:
        raise AssertionError("prunekit did not prune exactly round(sparsity * n) weights")
    return result


# ----------------------------------------------------------------------------- (b) latency vs MACs
def _forward(model: nn.Module, x: torch.Tensor) -> Callable[[], object]:
    def run():
        with torch.no_grad():
            return model(x)
    return run


def bench_channel_pruning(model: nn.Module, input_shape: Sequence[int] = (3, 32, 32),
                          amounts: Sequence[float] = (0.3, 0.5, 0.7), threads: int = 1,
                          batch_sizes: Sequence[int] = (1, 32), rounds: int = 9, min_time: float = 0.1,
                          max_spread: float = MAX_SPREAD) -> list[dict]:
    """CPU latency of ``model`` and of channel-pruned copies, timed alternately, with MAC ratios.

    The speed-up of a pruned copy is taken round by round (dense time / its time in the same round),
    so a slowdown that hits both cancels out. A row is ``noisy`` when the spread (IQR / median) of its
    result is above ``max_spread``: of the speed-up for a pruned copy, of the time for the dense model.

    Returns:
        one row per (batch size, model): ``{"threads", "clock", "batch", "removed" ("dense", "30%", ...),
        "params", "macs", "ms" (median per batch), "ms_spread", "speedup" (median of dense / this),
        "speedup_spread", "mac_ratio" (dense MACs / these MACs: the ideal speed-up), "noisy"}``.
    """
    from .surgery import prune_channels

    if not all(isinstance(a, float) and 0 < a < 1 for a in amounts):
        raise ValueError(f"amounts must be fractions of channels to remove in (0, 1), got {amounts!r}")
    clock, clock_name = clock_for(threads)
    models = {"dense": model.eval()}
    for amount in amounts:
        models[f"{amount:.0%}"] = prune_channels(model, amount, importance="l2").eval()
    macs = {label: count_macs(m, input_shape)["dense"] for label, m in models.items()}
    rows = []
    with _threads(threads):
        for batch in batch_sizes:
            x = torch.randn(batch, *input_shape, generator=torch.Generator().manual_seed(0))
            times = time_alternately({label: _forward(m, x) for label, m in models.items()}, rounds, min_time, clock)
            for label, m in models.items():
                ms = spread([1e3 * t for t in times[label]])
                speedup = spread([d / t for d, t in zip(times["dense"], times[label])])
                # A pruned row's result is its speed-up, taken round by round, so a slowdown that hits
                # every model cancels; the dense row's is its time.
                worst = ms["relative"] if label == "dense" else speedup["relative"]
                rows.append({"threads": threads, "clock": clock_name, "batch": batch, "removed": label,
                             "params": count_parameters(m), "macs": macs[label], "ms": ms["median"],
                             "ms_spread": ms["relative"], "speedup": speedup["median"],
                             "speedup_spread": speedup["relative"], "mac_ratio": macs["dense"] / macs[label],
                             "noisy": is_noisy(worst, max_spread)})
    return rows


def _vgg() -> tuple[nn.Module, str]:
    from .zoo import checkpoint_path, load_pretrained

    if checkpoint_path("vgg").is_file():
        return load_pretrained("vgg"), "trained zoo checkpoint (prunekit/checkpoints/vgg.pt)"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = build_model("vgg").eval()
    return model, "randomly initialised (no zoo checkpoint; latency does not depend on the weights)"


def _describe_machine() -> tuple[int, float | None]:
    """Print the torch version, cores and load; warn when other processes compete for the CPU."""
    cores, load = os.cpu_count() or 1, os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    print(f"torch {torch.__version__}, {platform.processor() or platform.machine()}, {cores} CPU cores, "
          f"load average {'n/a' if load is None else f'{load:.1f}'}")
    if load is not None and load > cores - 1:
        print("WARNING: other processes keep the CPU busy. Rows whose spread is too large are marked NOISY; "
              "compare only the others, or run again on a quieter machine.")
    print()
    return cores, load


def _percent(x: float) -> str:
    return "n/a" if math.isnan(x) else f"{100 * x:.1f}%"


def _note(noisy: bool, max_spread: float) -> str:
    return f"NOISY (spread > {max_spread:.0%}): not a result" if noisy else ""


def main(argv: Sequence[str] | None = None) -> dict:
    """Run both benchmarks, print the tables, optionally save everything as JSON."""
    parser = argparse.ArgumentParser(prog="python -m prunekit.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads for the latency part (default 1, timed in CPU time; more: wall time)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats of the pruning timing")
    parser.add_argument("--rounds", type=int, default=9, help="alternating rounds per latency measurement")
    parser.add_argument("--max-spread", type=float, default=MAX_SPREAD,
                        help="mark a row NOISY above this IQR / median (default 0.10)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, few rounds: a smoke test of the command (numbers meaningless)")
    args = parser.parse_args(argv)
    sizes, latency = MLP_SIZES, {"rounds": args.rounds}
    if args.quick:
        sizes, args.repeats = (784, 64, 10), 3
        latency = {"rounds": 3, "batch_sizes": (1,), "min_time": 0.005}
    started = time.perf_counter()
    cores, load = _describe_machine()

    mlp = make_mlp(sizes)
    print(f"(a) global magnitude pruning to 90 % of an MLP {'-'.join(map(str, sizes))} "
          f"({count_parameters(mlp):,} parameters), 1 thread, CPU time, {args.repeats} alternating repeats")
    pruning = bench_global_pruning(mlp, 0.9, repeats=args.repeats, threads=1, max_spread=args.max_spread)
    print(format_table([{"prunekit.prune_global s": pruning["prunekit_s"],
                         "torch global_unstructured s": pruning["torch_s"],
                         "ratio prunekit/torch": pruning["ratio"], "spread": _percent(pruning["ratio_spread"]),
                         "note": _note(pruning["noisy"], args.max_spread)}]))
    print(f"same mask: {pruning['same_mask']} ({pruning['different_entries']} entries differ; "
          f"{pruning['tied_at_threshold']} weight(s) at exactly the threshold magnitude, more than one "
          f"is a tie either library may break its own way; differences only among ties: "
          f"{pruning['differences_are_ties']})\n")

    vgg, origin = _vgg()
    clock_name = clock_for(args.threads)[1]
    print(f"(b) VGG latency, dense vs channels removed by prune_channels(importance='l2'); VGG {origin}; "
          f"{args.threads} thread(s), {'CPU' if clock_name == 'cpu' else 'wall-clock'} time, "
          f"{latency['rounds']} alternating rounds")
    rows = bench_channel_pruning(vgg, INPUT_SHAPES["vgg"], threads=args.threads, max_spread=args.max_spread,
                                 **latency)
    shown = [{**r, "ms_spread": _percent(r["ms_spread"]), "speedup_spread": _percent(r["speedup_spread"]),
              "note": _note(r["noisy"], args.max_spread)} for r in rows]
    print(format_table(shown, ["batch", "removed", "params", "macs", "ms", "ms_spread", "speedup",
                               "speedup_spread", "mac_ratio", "note"], floatfmt=".2f"))
    print("ms: median per batch over the rounds; speedup: median over the rounds of dense ms / ms (timed "
          "alternately); *_spread: interquartile range / median; mac_ratio = dense MACs / MACs, the ideal speed-up")
    noisy = sum(r["noisy"] for r in rows) + pruning["noisy"]
    if noisy:
        print(f"{noisy} row(s) NOISY: their spread is above {args.max_spread:.0%}, so their numbers are not results.")
    seconds = time.perf_counter() - started
    print(f"\ntotal time {seconds:.0f} s")
    results = {"torch": torch.__version__, "machine": platform.platform(), "cpu_cores": cores,
               "load_average": load, "max_spread": args.max_spread, "global_pruning": pruning,
               "vgg_weights": origin, "channel_pruning": rows, "seconds": seconds}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"saved {args.json}")
    return results


if __name__ == "__main__":
    main()
