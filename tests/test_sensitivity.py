import copy

import pytest
import torch

from prunekit.data import load_dataset, subset
from prunekit.models import build_model
from prunekit.pruning import get_masks, model_sparsity, prunable_weights, prune_layerwise
from prunekit.sensitivity import (SensitivityScan, erk_allocation, sensitivity_scan, sparsities_from_tolerance,
                                  uniform_allocation)
from prunekit.train import evaluate, train


@pytest.fixture(scope="module")
def trained_lenet():
    torch.manual_seed(0)
    model = build_model("lenet300")
    train(model, subset(load_dataset("mnist", "train"), 2000, seed=0), epochs=1, lr=0.1, quiet=True)
    return model


@pytest.fixture(scope="module")
def val_data():
    return subset(load_dataset("mnist", "test"), 500, seed=0)


# ----------------------------------------------------------------------------- scan
def test_sensitivity_scan_shapes_and_baseline(trained_lenet, val_data):
    before = copy.deepcopy(trained_lenet.state_dict())
    sparsities = (0.0, 0.5, 0.95)
    scan = sensitivity_scan(trained_lenet, val_data, sparsities=sparsities)
    assert isinstance(scan, SensitivityScan)
    assert scan.baseline == evaluate(trained_lenet, val_data)
    assert list(scan.curves) == ["fc1.weight", "fc2.weight", "fc3.weight"]
    for curve in scan.curves.values():
        assert [s for s, _ in curve] == list(sparsities)
        assert curve[0][1] == scan.baseline                     # sparsity 0 prunes nothing
        assert all(0.0 <= acc <= 1.0 for _, acc in curve)
    assert scan.curves["fc3.weight"][-1][1] < scan.baseline     # 95 % of the output layer hurts
    assert get_masks(trained_lenet) == {}                       # the model itself is untouched
    assert all(torch.equal(before[k], v) for k, v in trained_lenet.state_dict().items())
    assert scan.drops()["fc1.weight"][0] == (0.0, 0.0)


def test_scan_names_and_scores(trained_lenet, val_data):
    weights = prunable_weights(trained_lenet)
    anti = {n: -w.detach().abs() for n, w in weights.items()}    # prune the *largest* weights first
    by_size = sensitivity_scan(trained_lenet, val_data, sparsities=(0.5,), names=["fc2.weight"])
    reversed_ = sensitivity_scan(trained_lenet, val_data, sparsities=(0.5,), names=["fc2.weight"], scores=anti)
    assert list(by_size.curves) == ["fc2.weight"]
    assert reversed_.curves["fc2.weight"][0][1] < by_size.curves["fc2.weight"][0][1]
    with pytest.raises(ValueError, match="not prunable"):
        sensitivity_scan(trained_lenet, val_data, names=["fc2.bias"])
    with pytest.raises(ValueError):
        sensitivity_scan(trained_lenet, val_data, sparsities=(50,))


def test_sparsities_from_tolerance():
    scan = SensitivityScan(0.90, {"a": [(0.1, 0.90), (0.5, 0.89), (0.9, 0.70)],
                                  "b": [(0.1, 0.80), (0.5, 0.85)],
                                  "c": [(0.3, 0.895), (0.6, 0.85), (0.9, 0.899)]})
    assert sparsities_from_tolerance(scan, 0.01) == {"a": 0.5, "b": 0.0, "c": 0.9}
    assert sparsities_from_tolerance(scan, 0.0) == {"a": 0.1, "b": 0.0, "c": 0.0}
    assert sparsities_from_tolerance(scan, 1.0) == {"a": 0.9, "b": 0.5, "c": 0.9}
    with pytest.raises(ValueError, match="tolerance"):
        sparsities_from_tolerance(scan, -0.01)


# ----------------------------------------------------------------------------- allocations
def test_uniform_allocation():
    model = build_model("lenet300")
    assert uniform_allocation(model, 0.7) == {"fc1.weight": 0.7, "fc2.weight": 0.7, "fc3.weight": 0.7}
    assert list(uniform_allocation(model, 0.7, exclude=["fc3"])) == ["fc1.weight", "fc2.weight"]
    with pytest.raises(ValueError):
        uniform_allocation(model, 70)


@pytest.mark.parametrize("name", ["lenet300", "lenet5", "vgg", "resnet20"])
@pytest.mark.parametrize("sparsity", [0.0, 0.5, 0.9, 0.98, 1.0])
def test_erk_total_is_exact(name, sparsity):
    model = build_model(name)
    allocation = erk_allocation(model, sparsity)
    sizes = {n: w.numel() for n, w in prunable_weights(model).items()}
    assert set(allocation) == set(sizes)
    assert all(0.0 <= s <= 1.0 for s in allocation.values())          # no density above 1
    pruned = sum(allocation[n] * sizes[n] for n in sizes)
    assert round(pruned) == round(sparsity * sum(sizes.values()))      # exact count of weights
    masks = prune_layerwise(model, allocation)
    assert sum(int((~m).sum()) for m in masks.values()) == round(sparsity * sum(sizes.values()))
    # counts are integers: the achieved sparsity is round(s * n) / n, within 0.5 / n of s (4e-7 for vgg)
    assert abs(model_sparsity(model) - sparsity) <= 0.5 / sum(sizes.values()) + 1e-12


def test_erk_caps_small_layers_and_follows_the_formula():
    model = build_model("lenet300")
    allocation = erk_allocation(model, 0.9)
    assert allocation["fc3.weight"] == 0.0                 # ε·(100+10)/1000 > 1: kept dense
    # uncapped layers: density ∝ (in + out) / (in * out)
    raw = {"fc1.weight": (784 + 300) / (784 * 300), "fc2.weight": (300 + 100) / (300 * 100)}
    eps = {n: (1 - allocation[n]) / raw[n] for n in raw}
    assert eps["fc1.weight"] == pytest.approx(eps["fc2.weight"], rel=1e-4)
    assert allocation["fc1.weight"] > allocation["fc2.weight"]   # the larger layer is sparser


def test_erk_conv_formula_and_exclude():
    model = build_model("vgg")
    allocation = erk_allocation(model, 0.95, exclude=["conv1"])
    assert "conv1.weight" not in allocation
    sizes = {n: w.numel() for n, w in prunable_weights(model, exclude=["conv1"]).items()}
    pruned = sum(allocation[n] * sizes[n] for n in sizes)
    assert pruned / sum(sizes.values()) == pytest.approx(0.95, abs=1e-6)
    shapes = {n: w.shape for n, w in prunable_weights(model).items()}
    free = [n for n, s in allocation.items() if s > 0]
    eps = [(1 - allocation[n]) / (sum(shapes[n]) / shapes[n].numel()) for n in free]
    assert max(eps) == pytest.approx(min(eps), rel=1e-3)
    with pytest.raises(ValueError, match="excluded"):
        erk_allocation(build_model("lenet300"), 0.5, exclude=["fc1", "fc2", "fc3"])
