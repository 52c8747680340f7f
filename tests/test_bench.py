import json
import math
import time

import pytest
import torch

from prunekit.bench import (MAX_SPREAD, bench_channel_pruning, bench_global_pruning, clock_for, compare_masks,
                            is_noisy, main, make_mlp, spread, time_alternately)
from prunekit.masks import topk_mask
from prunekit.models import build_model


def _distinct_magnitudes(model):
    """Weights with all-different magnitudes: the 90 % top-k is unique, so both libraries must agree."""
    weights = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    n = sum(w.numel() for w in weights)
    values = (torch.randperm(n, generator=torch.Generator().manual_seed(0)) + 1).float() / n
    start = 0
    with torch.no_grad():
        for w in weights:
            w.copy_(values[start:start + w.numel()].view_as(w) * torch.sign(torch.randn_like(w)))
            start += w.numel()
    return model


def test_make_mlp_sizes():
    model = make_mlp((784, 300, 100, 10))
    assert sum(p.numel() for p in model.parameters()) == 266_610
    assert torch.equal(make_mlp((8, 4))[0].weight, make_mlp((8, 4))[0].weight)   # seeded


def test_global_pruning_bench_structure_and_same_mask():
    model = _distinct_magnitudes(make_mlp((64, 128, 32, 10)))
    result = bench_global_pruning(model, 0.9, repeats=3)
    n = 64 * 128 + 128 * 32 + 32 * 10
    assert result["params"] == n and result["pruned"] == round(0.9 * n)
    assert result["prunekit_s"] > 0 and result["torch_s"] > 0
    assert result["clock"] == "cpu" and result["threads"] == 1
    assert result["ratio"] > 0 and result["ratio_spread"] >= 0      # median and IQR of the per-repeat ratios
    assert result["noisy"] == (result["ratio_spread"] > MAX_SPREAD)
    assert result["same_mask"] and result["different_entries"] == 0
    assert result["tied_at_threshold"] == 1
    # the benchmark left its input dense
    assert all((m.weight != 0).all() for m in model.modules() if isinstance(m, torch.nn.Linear))


def test_compare_masks_tells_ties_from_errors():
    model = torch.nn.Sequential(torch.nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.1, 0.2, 0.2, 0.9]]))
    ours = {"0.weight": torch.tensor([[False, False, True, True]])}
    tie = {"0.weight": torch.tensor([[False, True, False, True]])}      # the other 0.2 pruned
    wrong = {"0.weight": torch.tensor([[True, False, False, True]])}    # kept 0.1, pruned both 0.2
    assert compare_masks(model, ours, tie) == {"same_mask": False, "different_entries": 2,
                                               "tied_at_threshold": 2, "differences_are_ties": True}
    assert not compare_masks(model, ours, wrong)["differences_are_ties"]


def _topk_by_stable_sort(scores, sparsity):
    """The definition topk_mask implements: stable sort by score, prune the first round(s * n)."""
    k = round(sparsity * scores.numel())
    order = torch.sort(scores.flatten().float(), stable=True).indices
    mask = torch.ones(scores.numel(), dtype=torch.bool)
    mask[order[:k]] = False
    return mask.view_as(scores)


def test_fast_topk_mask_equals_the_stable_sort_definition():
    generator = torch.Generator().manual_seed(0)
    for trial in range(300):
        n = int(torch.randint(1, 50, (1,), generator=generator))
        scores = torch.randint(-2, 3, (n,), generator=generator).float()      # many ties
        if trial % 3 == 0:
            scores[torch.rand(n, generator=generator) < 0.3] = float("-inf")   # already-pruned entries
        if trial % 3 == 1:
            scores = torch.randn(n, generator=generator).double()
        for sparsity in (0.0, 0.25, 0.5, 0.9, 1.0, float(torch.rand(1, generator=generator))):
            assert torch.equal(topk_mask(scores, sparsity), _topk_by_stable_sort(scores, sparsity))
    scores = torch.randn(6, 7, generator=generator)
    assert torch.equal(topk_mask(scores, 0.4), _topk_by_stable_sort(scores, 0.4))


def test_channel_pruning_bench_rows():
    rows = bench_channel_pruning(build_model("vgg"), (3, 32, 32), amounts=(0.5,), threads=1,
                                 batch_sizes=(1, 2), rounds=3, min_time=0.005)
    assert [(r["batch"], r["removed"]) for r in rows] == [(1, "dense"), (1, "50%"), (2, "dense"), (2, "50%")]
    dense, half = rows[0], rows[1]
    assert dense["speedup"] == 1.0 and dense["speedup_spread"] == 0.0
    assert dense["mac_ratio"] == 1.0 and dense["macs"] == 52_791_808
    assert half["params"] < dense["params"] and half["mac_ratio"] > 3     # ~ (1/2)^2 of the MACs
    assert all(r["ms"] > 0 and r["clock"] == "cpu" and r["threads"] == 1 for r in rows)
    assert dense["noisy"] == (dense["ms_spread"] > MAX_SPREAD)
    assert half["noisy"] == (half["speedup_spread"] > MAX_SPREAD)


def test_one_thread_uses_cpu_time_more_threads_wall_time():
    assert clock_for(1) == (time.process_time, "cpu")
    assert clock_for(2) == (time.perf_counter, "wall")
    with pytest.raises(ValueError, match="threads"):
        clock_for(0)


def test_spread_is_the_interquartile_range_over_the_median():
    s = spread([10.0, 12.0, 11.0, 30.0, 9.0])       # one outlier round does not move the median
    assert s["median"] == 11.0
    assert s["iqr"] == pytest.approx(12.0 - 10.0) and s["relative"] == pytest.approx(2 / 11)
    assert math.isnan(spread([1.0])["relative"])     # one round: no spread known
    assert is_noisy(0.2) and not is_noisy(0.05) and is_noisy(math.nan)


def test_time_alternately_rotates_the_order_and_measures_per_call():
    calls = []

    def make(label, seconds):
        def run():
            calls.append(label)
            end = time.process_time() + seconds
            while time.process_time() < end:   # burn CPU time: what the clock counts
                pass
        return run

    times = time_alternately({"slow": make("slow", 0.004), "fast": make("fast", 0.001)}, rounds=4,
                             min_time=0.008, warmup=0)
    assert [len(t) for t in times.values()] == [4, 4]
    assert all(s > 2 * f for s, f in zip(times["slow"], times["fast"]))
    # Rounds run slow-fast, fast-slow, slow-fast, fast-slow: the same label at the end of one round and the
    # start of the next merges into one block, 5 blocks (without rotation it would be 8).
    blocks = [label for i, label in enumerate(calls) if i == 0 or calls[i - 1] != label]
    assert blocks == ["slow", "fast", "slow", "fast", "slow"]


def test_main_quick_writes_json(tmp_path, capsys):
    path = tmp_path / "bench.json"
    results = main(["--quick", "--json", str(path)])
    out = capsys.readouterr().out
    assert "ratio prunekit/torch" in out and "mac_ratio" in out and "speedup_spread" in out
    saved = json.loads(path.read_text())
    assert saved["global_pruning"]["same_mask"] in (True, False)
    assert len(saved["channel_pruning"]) == len(results["channel_pruning"]) == 4
    assert {r["threads"] for r in saved["channel_pruning"]} == {1}          # one thread unless asked
    for row in saved["channel_pruning"]:                                     # every noisy row is marked
        line = next(l for l in out.splitlines() if l.split()[:2] == [str(row["batch"]), row["removed"]])
        assert ("NOISY" in line) == row["noisy"], line
