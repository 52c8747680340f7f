"""The benchmark of the course: ``python -m prunekit.bench [--json results.json]``.

It measures, in one run (about a minute on a laptop CPU):

(a) **pruning speed**: global magnitude pruning of a ~10M-parameter MLP to 90 % with
    ``prunekit.pruning.prune_global`` and with ``torch.nn.utils.prune.global_unstructured``
    (``L1Unstructured``) on the same weights; median wall time and the ratio prunekit / torch,
    and whether both chose the same weights.
(b) **what structured pruning buys**: CPU latency of the VGG against channel-pruned copies
    (``prunekit.surgery.prune_channels``, 30/50/70 % of the channels removed), with fixed thread
    counts and batch sizes, next to the MAC ratio, the speed-up a perfect implementation would get.

Milliseconds depend on the machine and its load; the ratios are what to compare.

Example:
    >>> result = bench_global_pruning(make_mlp((64, 128, 10)), repeats=1)   # doctest: +SKIP
    >>> result["same_mask"]                                                  # doctest: +SKIP
    True
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import time
from statistics import median
from typing import Sequence

import torch
from torch import nn

from .masks import num_to_prune
from .measure import compare_latency, count_macs, count_parameters, format_table
from .models import INPUT_SHAPES, build_model
from .pruning import get_masks, prunable_weights, prune_global

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


def bench_global_pruning(model: nn.Module, sparsity: float = 0.9, repeats: int = 3, threads: int = 1) -> dict:
    """Time global magnitude pruning with prunekit and with ``torch.nn.utils.prune`` (same weights).

    Each repeat prunes a fresh deep copy of ``model`` (copying is not timed) with both libraries,
    alternating which goes first; times are medians over the repeats.

    Returns:
        ``{"params": .., "pruned": .., "prunekit_s": .., "torch_s": .., "ratio": prunekit/torch,
        "same_mask": .., "different_entries": .., "tied_at_threshold": .., "differences_are_ties": ..}``
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        prune = {"prunekit": prune_global, "torch": _torch_global_magnitude}
        read_masks = {"prunekit": get_masks, "torch": _torch_masks}
        times, masks = {"prunekit": [], "torch": []}, {}
        for repeat in range(repeats):
            for library in (("prunekit", "torch") if repeat % 2 == 0 else ("torch", "prunekit")):
                pruned = copy.deepcopy(model)
                start = time.perf_counter()
                prune[library](pruned, sparsity)
                times[library].append(time.perf_counter() - start)
                masks[library] = read_masks[library](pruned)
    finally:
        torch.set_num_threads(previous_threads)
    n = sum(w.numel() for w in prunable_weights(model).values())
    result = {"params": n, "pruned": num_to_prune(n, sparsity), "threads": threads,
              "prunekit_s": median(times["prunekit"]), "torch_s": median(times["torch"])}
    result["ratio"] = result["prunekit_s"] / result["torch_s"]
    result.update(compare_masks(model, masks["prunekit"], masks["torch"]))
    if sum(int((~m).sum()) for m in masks["prunekit"].values()) != result["pruned"]:
        raise AssertionError("prunekit did not prune exactly round(sparsity * n) weights")
    return result


def bench_channel_pruning(model: nn.Module, input_shape: Sequence[int] = (3, 32, 32),
                          amounts: Sequence[float] = (0.3, 0.5, 0.7), threads: Sequence[int] = (1, 2),
                          batch_sizes: Sequence[int] = (1, 32), rounds: int = 5,
                          min_run_time: float = 0.05) -> list[dict]:
    """CPU latency of ``model`` and of channel-pruned copies, timed alternately, with MAC ratios.

    Returns:
        one row per (threads, batch size, model): ``{"threads", "batch", "removed" ("dense",
        "30%", ...), "params", "macs", "ms" (median per batch), "speedup" (dense ms / this ms),
        "mac_ratio" (dense MACs / these MACs: the ideal speed-up)}``.
    """
    from .surgery import prune_channels

    if not all(isinstance(a, float) and 0 < a < 1 for a in amounts):
        raise ValueError(f"amounts must be fractions of channels to remove in (0, 1), got {amounts!r}")
    models = {0.0: model}
    for amount in amounts:
        models[amount] = prune_channels(model, amount, importance="l2")
    macs = {amount: count_macs(m, input_shape)["dense"] for amount, m in models.items()}
    label = {amount: f"{amount:.0%}" if amount else "dense" for amount in models}
    labelled = {label[amount]: m for amount, m in models.items()}
    rows = []
    for n_threads in threads:
        times = compare_latency(labelled, input_shape, batch_sizes, threads=n_threads, rounds=rounds,
                                min_run_time=min_run_time)
        for batch in batch_sizes:
            dense_s = times[batch]["dense"]
            for amount, m in models.items():
                seconds = times[batch][label[amount]]
                rows.append({"threads": n_threads, "batch": batch, "removed": label[amount],
                             "params": count_parameters(m), "macs": macs[amount], "ms": 1e3 * seconds,
                             "speedup": dense_s / seconds, "mac_ratio": macs[0.0] / macs[amount]})
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
        print("WARNING: other processes keep the CPU busy; timings (multi-threaded ones most) will be "
              "noisy and slow. Close them, or compare only ratios measured in the same run.")
    print()
    return cores, load


def main(argv: Sequence[str] | None = None) -> dict:
    """Run both benchmarks, print the tables, optionally save everything as JSON."""
    parser = argparse.ArgumentParser(prog="python -m prunekit.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", metavar="PATH", help="also save the results as JSON")
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the pruning timing (median)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per latency measurement")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, one round: a smoke test of the command (numbers meaningless)")
    args = parser.parse_args(argv)
    sizes, latency = MLP_SIZES, {"rounds": args.rounds}
    if args.quick:
        sizes, args.repeats = (784, 64, 10), 1
        latency = {"rounds": 1, "batch_sizes": (1,), "threads": (1,), "min_run_time": 0.005}
    started = time.perf_counter()
    cores, load = _describe_machine()

    mlp = make_mlp(sizes)
    print(f"(a) global magnitude pruning to 90 % of an MLP {'-'.join(map(str, sizes))} "
          f"({count_parameters(mlp):,} parameters), 1 thread, median of {args.repeats}")
    pruning = bench_global_pruning(mlp, 0.9, repeats=args.repeats, threads=1)
    print(format_table([{"prunekit.prune_global s": pruning["prunekit_s"],
                         "torch global_unstructured s": pruning["torch_s"],
                         "ratio prunekit/torch": pruning["ratio"]}]))
    print(f"same mask: {pruning['same_mask']} ({pruning['different_entries']} entries differ; "
          f"{pruning['tied_at_threshold']} weight(s) at exactly the threshold magnitude, more than one "
          f"is a tie either library may break its own way; differences only among ties: "
          f"{pruning['differences_are_ties']})\n")

    vgg, origin = _vgg()
    print(f"(b) VGG latency, dense vs channels removed by prune_channels(importance='l2'); VGG {origin}")
    rows = bench_channel_pruning(vgg, INPUT_SHAPES["vgg"], **latency)
    print(format_table(rows, ["threads", "batch", "removed", "params", "macs", "ms", "speedup",
                              "mac_ratio"], floatfmt=".2f"))
    print("ms: median per batch; speedup = dense ms / ms (all models timed alternately); "
          "mac_ratio = dense MACs / MACs, the ideal speed-up")
    seconds = time.perf_counter() - started
    print(f"\ntotal time {seconds:.0f} s")
    results = {"torch": torch.__version__, "machine": platform.platform(), "cpu_cores": cores,
               "load_average": load, "global_pruning": pruning,
               "vgg_weights": origin, "channel_pruning": rows, "seconds": seconds}
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
        print(f"saved {args.json}")
    return results


if __name__ == "__main__":
    main()
