"""Data-aware criteria on converged models: the shipped LeNet-300-100 and LeNet-5, the MNIST training set.

Issue 24: averaging the signed gradient first (``|w·mean_b g_b|``) turns the Taylor score into
noise as more data is used, because a converged model's mean gradient is close to zero. The
per-batch estimator ``mean_b (w·g_b)²`` (Molchanov et al. 2019) must not get worse with more data.
"Worse" is measured where it matters: test accuracy after one-shot 80 % layer-wise pruning,
no fine-tuning. Everything is deterministic (fixed batch order, no sampling).
"""
import copy

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from prunekit import channel_criteria as CC
from prunekit import criteria as C
from prunekit import gradient_statistics as GS
from prunekit.data import load_dataset
from prunekit.masks import expand_mask
from prunekit.pruning import apply_masks, prunable_weights, prune_layerwise
from prunekit.zoo import load_pretrained

SPARSITY = 0.8
BATCH = 128
NOISE = 0.01   # accuracy may dip by this much (100 test images) as an estimate settles


def _tensors(split):
    xs, ys = zip(*DataLoader(load_dataset("mnist", split), batch_size=5000))
    return torch.cat(xs), torch.cat(ys)


@pytest.fixture(scope="module")
def setting():
    x_train, y_train = _tensors("train")
    x_test, y_test = _tensors("test")
    train = DataLoader(TensorDataset(x_train, y_train), batch_size=BATCH, shuffle=False)
    return load_pretrained("lenet300"), train, (x_test, y_test)


def _accuracy_after_pruning(dense, scores, test):
    model = copy.deepcopy(dense)
    prune_layerwise(model, SPARSITY, scores=scores)
    x, y = test
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def test_more_data_never_makes_the_taylor_score_worse(setting):
    dense, train, test = setting
    accuracies = [_accuracy_after_pruning(dense, C.weight_scores(dense, "taylor", train, n_batches=n), test)
                  for n in (4, 16, 64, None)]                  # None: the whole training set
    for fewer, more in zip(accuracies, accuracies[1:]):
        assert more >= fewer - NOISE, accuracies
    assert accuracies[-1] >= 0.85, accuracies                  # issue 24's bar; measured 94.67 %
    # The old estimator fails this very test: from 16 to 64 batches it loses far more than NOISE.
    weights = prunable_weights(dense)
    old = []
    for n in (16, 64):
        mean_grad = GS.gradients(dense, train, n_batches=n)
        old.append(_accuracy_after_pruning(dense, {k: (w.detach() * mean_grad[k]).abs()
                                                   for k, w in weights.items()}, test))
    assert old[1] < old[0] - 10 * NOISE, old


def test_obd_with_the_whole_training_set_keeps_85_percent(setting):
    dense, train, test = setting
    accuracy = _accuracy_after_pruning(dense, C.weight_scores(dense, "obd", train), test)
    assert accuracy >= 0.85                                    # measured 94.72 %
    # Random scores are the floor every criterion must clear by far.
    assert _accuracy_after_pruning(dense, C.weight_scores(dense, "random"), test) < 0.5


@torch.no_grad()
def _accuracy_without_units(model, unit_scores, test, fraction=0.5):
    """Mask half of conv1's and conv2's channels and of fc1's neurons (weights and bias), no fine-tuning."""
    model = copy.deepcopy(model)
    masks = {}
    for act, layer in {"relu1": "conv1", "relu2": "conv2", "relu3": "fc1"}.items():
        keep = CC.channel_mask(unit_scores[act], fraction)
        weight = model.get_parameter(f"{layer}.weight")
        masks[f"{layer}.weight"] = expand_mask(keep, weight.shape)
        masks[f"{layer}.bias"] = keep.clone()
    apply_masks(model, masks)
    x, y = test
    return (model(x).argmax(1) == y).float().mean().item()


def test_more_data_never_makes_the_channel_taylor_score_worse(setting):
    _, train, test = setting
    lenet5 = load_pretrained("lenet5")
    layers = ["relu1", "relu2", "relu3"]
    accuracies = [_accuracy_without_units(lenet5, CC.taylor_channel_scores(lenet5, layers, train, n_batches=n), test)
                  for n in (4, 16, 64)]
    for fewer, more in zip(accuracies, accuracies[1:]):
        assert more >= fewer - NOISE, accuracies               # measured 95.32, 99.17, 98.84 %
    # The old |mean a·g| estimator went from 97.55 % (4 batches) to 86.65 % (16 batches) here.
    norms = {a: CC.channel_norm(lenet5.get_parameter(f"{l}.weight"))
             for a, l in zip(layers, ("conv1", "conv2", "fc1"))}
    assert accuracies[-1] > _accuracy_without_units(lenet5, norms, test)   # 98.84 vs 97.94 %
