import copy
from functools import partial

import pytest
import torch

from prunekit.data import load_dataset, subset
from prunekit.models import build_model
from prunekit.pruning import get_masks, model_sparsity, prunable_weights
from prunekit.schedules import (agp_sparsity, gradual_pruning_callback, iterative_sparsities,
                                one_shot_sparsity, prune_agp, prune_iteratively)
from prunekit.train import evaluate, train


@pytest.fixture(scope="module")
def mnist_small():
    train_full = load_dataset("mnist", "train")
    return subset(train_full, 2000, seed=0), subset(load_dataset("mnist", "test"), 500, seed=0)


@pytest.fixture(scope="module")
def dense_lenet(mnist_small):
    torch.manual_seed(0)
    model = build_model("lenet300")
    train(model, mnist_small[0], epochs=1, lr=0.1, quiet=True)
    return model


def _pruned_count(mask):
    return int((~mask).sum())


# ----------------------------------------------------------------------------- pure schedules
def test_agp_hand_computed_points():
    agp = partial(agp_sparsity, initial_sparsity=0.0, final_sparsity=0.8, start_step=0, n_steps=10, frequency=1)
    assert agp(0) == 0.0
    assert agp(5) == pytest.approx(0.8 * (1 - 0.5 ** 3)) and agp(5) == pytest.approx(0.7)
    assert agp(1) == pytest.approx(0.8 - 0.8 * 0.9 ** 3)
    assert agp(10) == pytest.approx(0.8)
    assert agp(1000) == pytest.approx(0.8)


def test_agp_before_start_and_frequency_rounding():
    agp = partial(agp_sparsity, initial_sparsity=0.1, final_sparsity=0.9, start_step=10, n_steps=4, frequency=5)
    assert agp(0) == agp(9) == 0.1                       # before t0: s_i
    assert agp(10) == agp(14) == pytest.approx(0.1)      # first event at t0 gives s_i
    assert agp(15) == agp(19) == pytest.approx(0.9 - 0.8 * 0.75 ** 3)   # t rounded down to 15
    assert agp(29) == pytest.approx(0.9 - 0.8 * 0.25 ** 3)
    assert agp(30) == agp(31) == pytest.approx(0.9)


def test_agp_is_pure_and_non_decreasing():
    agp = partial(agp_sparsity, initial_sparsity=0.0, final_sparsity=0.95, start_step=3, n_steps=7, frequency=4)
    first = [agp(t) for t in range(60)]
    second = [agp(t) for t in reversed(range(60))][::-1]   # order of calls must not matter
    assert first == second
    assert all(a <= b for a, b in zip(first, first[1:]))
    assert first[-1] == pytest.approx(0.95)


@pytest.mark.parametrize("kwargs", [dict(initial_sparsity=0.9, final_sparsity=0.5), dict(n_steps=0),
                                    dict(frequency=0), dict(final_sparsity=1.5), dict(start_step=-1)])
def test_agp_rejects_bad_arguments(kwargs):
    args = dict(initial_sparsity=0.0, final_sparsity=0.8, start_step=0, n_steps=10, frequency=1) | kwargs
    with pytest.raises(ValueError):
        agp_sparsity(3, **args)


def test_one_shot():
    assert [one_shot_sparsity(t, 0.9, prune_step=2) for t in range(4)] == [0.0, 0.0, 0.9, 0.9]
    assert one_shot_sparsity(0, 0.5) == 0.5


def test_iterative_sparsities_geometric_and_linear():
    geo = iterative_sparsities(1 - 0.8 ** 3, rounds=3)              # p = 20 % of the remaining each round
    assert geo == pytest.approx([0.2, 0.36, 0.488])
    assert iterative_sparsities(0.9, 3, mode="linear") == pytest.approx([0.3, 0.6, 0.9])
    assert iterative_sparsities(0.9, 4)[-1] == 0.9                   # last target exact
    remaining = [1 - s for s in [0.0] + iterative_sparsities(0.99, 5)]
    ratios = [b / a for a, b in zip(remaining, remaining[1:])]
    assert ratios == pytest.approx([ratios[0]] * 5)                  # same fraction kept every round
    with pytest.raises(ValueError):
        iterative_sparsities(0.9, 3, mode="cubic")
    with pytest.raises(ValueError):
        iterative_sparsities(0.9, 0)


# ----------------------------------------------------------------------------- gradual pruning callback
def test_callback_never_lowers_sparsity_when_schedule_goes_down():
    torch.manual_seed(0)
    model = build_model("lenet300")
    callback = gradual_pruning_callback(lambda step: 0.5 if step < 3 else 0.2)
    callback(model, 1)
    before = get_masks(model)
    assert all(_pruned_count(m) == round(0.5 * m.numel()) for m in before.values())
    callback(model, 5)                                   # target fell to 0.2: nothing may come back
    after = get_masks(model)
    assert all(torch.equal(before[n], after[n]) for n in before)


@pytest.mark.parametrize("scope", ["layerwise", "global"])
def test_callback_masks_only_grow_during_training(mnist_small, scope):
    torch.manual_seed(0)
    model = build_model("lenet300")
    up_down_up = lambda step: {1: 0.3, 2: 0.6, 3: 0.1, 4: 0.0, 5: 0.7}.get(step, 0.2)  # noqa: E731
    seen = []
    record = lambda m, step: seen.append(get_masks(m))  # noqa: E731
    train(model, subset(mnist_small[0], 640), epochs=1, max_steps=6, quiet=True,
          after_step=[gradual_pruning_callback(up_down_up, scope=scope), record])
    for earlier, later in zip(seen, seen[1:]):
        for name in earlier:
            assert not (later[name] & ~earlier[name]).any(), "a pruned weight came back"
    assert model_sparsity(model) == pytest.approx(0.7, abs=1e-5)
    at_step_3 = seen[2]                                  # target 0.1 < 0.6 reached at step 2: kept at 0.6
    total = sum(_pruned_count(m) for m in at_step_3.values()) / sum(m.numel() for m in at_step_3.values())
    assert total == pytest.approx(0.6, abs=1e-5)


def test_callback_every_and_exclude():
    torch.manual_seed(0)
    model = build_model("lenet300")
    callback = gradual_pruning_callback(lambda step: 0.5, every=2, exclude=["fc3"])
    callback(model, 1)
    assert get_masks(model) == {}
    callback(model, 2)
    assert set(get_masks(model)) == {"fc1.weight", "fc2.weight"}


def test_callback_validates():
    with pytest.raises(TypeError):
        gradual_pruning_callback(0.5)
    with pytest.raises(ValueError):
        gradual_pruning_callback(lambda s: 0.5, scope="per-neuron")
    with pytest.raises(ValueError):
        gradual_pruning_callback(lambda s: 1.5)(build_model("lenet300"), 1)


def test_prune_agp_reaches_final_sparsity(mnist_small):
    torch.manual_seed(0)
    model = build_model("lenet300")
    data = subset(mnist_small[0], 1024)                  # 8 steps of 128
    prune_agp(model, data, final_sparsity=0.8, epochs=1, n_steps=4, quiet=True)
    for name, mask in get_masks(model).items():
        assert _pruned_count(mask) == round(0.8 * mask.numel()), name
    with pytest.raises(ValueError, match="ramp ends"):
        prune_agp(build_model("lenet300"), data, final_sparsity=0.8, epochs=1, n_steps=4, frequency=5)


# ----------------------------------------------------------------------------- iterative pruning
def test_prune_iteratively_reaches_target(dense_lenet, mnist_small):
    model = copy.deepcopy(dense_lenet)
    train_data, val_data = mnist_small
    rows = prune_iteratively(model, train_data, val_data, final_sparsity=0.9, rounds=3, epochs_per_round=1)
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    assert [r["sparsity"] for r in rows] == pytest.approx([0.0] + iterative_sparsities(0.9, 3), abs=1e-5)
    assert all(r["accepted"] for r in rows)
    masks = get_masks(model)
    assert set(masks) == set(prunable_weights(model))
    assert all(_pruned_count(m) == round(0.9 * m.numel()) for m in masks.values())
    assert rows[-1]["val_acc"] == evaluate(model, val_data)


def test_prune_iteratively_stops_and_restores_with_tolerance(dense_lenet, mnist_small):
    model = copy.deepcopy(dense_lenet)
    train_data, val_data = mnist_small
    rows = prune_iteratively(model, train_data, val_data, final_sparsity=0.999, rounds=3, epochs_per_round=1,
                             tolerance=0.05)
    assert len(rows) < 4, "0.999 sparsity should break a 5-point tolerance before the last round"
    assert rows[-1]["accepted"] is False and all(r["accepted"] for r in rows[:-1])
    assert rows[-1]["val_acc"] < rows[0]["val_acc"] - 0.05
    kept = rows[-2]                                      # the model is back at the last acceptable round
    assert model_sparsity(model) == pytest.approx(kept["sparsity"], abs=1e-6)
    assert evaluate(model, val_data) == kept["val_acc"]
    for mask in get_masks(model).values():               # restored masks, not the rejected round's
        assert _pruned_count(mask) == round(kept["sparsity"] * mask.numel())
    if kept["round"] == 0:
        assert get_masks(model) == {}
        assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), dense_lenet.state_dict().values()))


def test_prune_iteratively_validates(dense_lenet, mnist_small):
    with pytest.raises(ValueError, match="tolerance"):
        prune_iteratively(copy.deepcopy(dense_lenet), *mnist_small, 0.5, 2, 1, tolerance=-0.1)
    with pytest.raises(ValueError, match="scope"):
        prune_iteratively(copy.deepcopy(dense_lenet), *mnist_small, 0.5, 2, 1, scope="both")
