"""Does a channel-pruned model run as much faster as its MAC count says? A benchmark, not a test.

Fewer MACs do not always mean proportionally less time: small layers leave a CPU's vector units
half idle and per-layer overheads stay. This script times a dense zoo model and its pruned version
**alternately** (``prunekit.measure.compare_latency``: a machine that slows down slows both), on one
thread, counting the process's CPU time (other programs on the machine inflate it much less than
wall-clock time), and reports the measured speed-up as a fraction of the MAC ratio.

    python -m prunekit.bench_pruned                       # vgg vs vgg_pruned, batch 1 and 64
    python -m prunekit.bench_pruned --widths '{"conv1": 16, "conv2": 24}'   # a plan, before training

The shipped VGG plan aims at a speed-up of at least 0.8 of its MAC ratio at batch 1 and batch 64.

Example:
    >>> result = latency_vs_macs(build_model("vgg"), pruned_architecture("vgg", {"conv8": 128}),
    ...                          (3, 32, 32), batch_sizes=(1,), rounds=1)    # doctest: +SKIP
    >>> sorted(result)                                                       # doctest: +SKIP
    ['mac_ratio', 'speedup', 'speedup_over_mac_ratio']
"""
from __future__ import annotations

import argparse
import json
import platform
from typing import Sequence

import torch
from torch import nn

from .measure import compare_latency, count_macs
from .models import INPUT_SHAPES, build_model
from .zoo_pruned import pruned_architecture


def latency_vs_macs(dense: nn.Module, pruned: nn.Module, input_shape: Sequence[int],
                    batch_sizes: Sequence[int] = (1, 64), rounds: int = 7, min_run_time: float = 0.2) -> dict:
    """Measured speed-up of ``pruned`` over ``dense`` (1 thread, CPU time, timed alternately) per batch size.

    Returns:
        ``{"mac_ratio": float, "speedup": {batch: float}, "speedup_over_mac_ratio": {batch: float},
        "seconds": {batch: {"dense": s, "pruned": s}}}``
    """
    mac_ratio = count_macs(dense, input_shape)["dense"] / count_macs(pruned, input_shape)["dense"]
    times = compare_latency({"dense": dense, "pruned": pruned}, input_shape, batch_sizes, threads=1,
                            rounds=rounds, min_run_time=min_run_time, clock="cpu")
    speedup = {b: t["dense"] / t["pruned"] for b, t in times.items()}
    return {"mac_ratio": mac_ratio, "speedup": speedup,
            "speedup_over_mac_ratio": {b: s / mac_ratio for b, s in speedup.items()}, "seconds": times}


def main(argv: Sequence[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m prunekit.bench_pruned", description=__doc__.split("\n")[0])
    parser.add_argument("--name", default="vgg_pruned", help="a shipped channel-pruned zoo model")
    parser.add_argument("--widths", help="instead: a JSON {group: channels} plan for the dense model --dense")
    parser.add_argument("--dense", default="vgg", help="the dense model for --widths")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64])
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    if args.widths:  # timing does not depend on the weights: random ones will do
        dense_name, pruned = args.dense, pruned_architecture(args.dense, json.loads(args.widths))
    else:
        from .zoo import checkpoint_info, load_pretrained
        dense_name, pruned = checkpoint_info(args.name)["dense"], load_pretrained(args.name)
    result = latency_vs_macs(build_model(dense_name).eval(), pruned.eval(), INPUT_SHAPES[dense_name],
                             args.batch_sizes, rounds=args.rounds)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread, CPU time")
    print(f"MAC ratio {result['mac_ratio']:.2f}x")
    for b in args.batch_sizes:
        t = result["seconds"][b]
        print(f"batch {b:3d}: dense {1e3 * t['dense']:.2f} ms, pruned {1e3 * t['pruned']:.2f} ms, speed-up "
              f"{result['speedup'][b]:.2f}x = {result['speedup_over_mac_ratio'][b]:.2f} of the MAC ratio")
    return result


if __name__ == "__main__":
    main()
