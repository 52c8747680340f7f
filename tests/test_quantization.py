"""prunekit.quantization: affine (zero-point) quantisation, fake quantisation, BatchNorm folding,
activation quantisation. (Symmetric quantize_linear is tested in test_compression.py.)"""
from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from prunekit import compression, measure
from prunekit import quantization as Q
from prunekit.data import load_dataset
from prunekit.models import build_model
from prunekit.pruning import prune_layerwise
from prunekit.zoo import load_pretrained


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------- affine
def test_quantize_affine_hand_computed():
    # range [-1, 3]: scale 4/255, zero point round(1 / (4/255)) = round(63.75) = 64
    q, scale, zero_point = Q.quantize_affine(torch.tensor([-1.0, 0.0, 1.0, 3.0]))
    assert q.dtype == torch.uint8 and zero_point.dtype == torch.int64
    assert torch.isclose(scale, torch.tensor(4 / 255)) and zero_point.item() == 64
    assert q.tolist() == [0, 64, 128, 255]          # round(1 / (4/255)) + 64 = 64 + 64
    # Zero is exact; everything else within half a step.
    x = Q.dequantize_affine(q, scale, zero_point)
    assert x[1].item() == 0.0
    assert (x - torch.tensor([-1.0, 0.0, 1.0, 3.0])).abs().max() <= scale / 2 + 1e-7


def test_quantize_affine_range_always_contains_zero_and_clamps():
    # All positive: min is lowered to 0, so the zero point is 0 and all 256 levels cover [0, max].
    q, scale, zero_point = Q.quantize_affine(torch.tensor([0.5, 1.0, 2.55]))
    assert zero_point.item() == 0 and torch.isclose(scale, torch.tensor(0.01))
    # All negative: max is raised to 0, zero point at the top.
    _, _, zero_point = Q.quantize_affine(torch.tensor([-2.0, -1.0]))
    assert zero_point.item() == 255
    # A calibrated range clamps values outside it.
    q, scale, zero_point = Q.quantize_affine(torch.tensor([-5.0, 0.0, 5.0]), value_range=(0.0, 1.0))
    assert q.tolist() == [0, 0, 255]
    with pytest.raises(ValueError, match="min <= max"):
        Q.quantize_affine(torch.ones(2), value_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="bits"):
        Q.quantize_affine(torch.ones(2), bits=1)


def test_quantize_affine_per_channel_and_bits():
    x = torch.randn(6, 10, generator=_gen(0)) * torch.arange(1, 7).view(-1, 1)
    q, scale, zero_point = Q.quantize_affine(x, bits=4, per_channel=True)
    assert scale.shape == (6,) and zero_point.shape == (6,)
    assert int(q.max()) <= 15 and int(q.min()) >= 0
    error = (Q.dequantize_affine(q, scale, zero_point) - x).abs()
    assert (error <= scale.view(-1, 1) / 2 + 1e-6).all()
    q16, _, _ = Q.quantize_affine(x, bits=12)
    assert q16.dtype == torch.int32 and int(q16.max()) == 4095


def test_fake_quantize_schemes_granularity_and_levels():
    w = torch.randn(8, 5, generator=_gen(1))
    assert torch.equal(Q.fake_quantize(w, 8, "symmetric"), Q.dequantize_linear(*Q.quantize_linear(w, 8)))
    assert torch.equal(Q.fake_quantize(w, 4, "symmetric", per_channel=True),
                       Q.dequantize_linear(*Q.quantize_linear(w, 4, per_channel=True)))
    assert torch.equal(Q.fake_quantize(w, 8, "affine"), Q.dequantize_affine(*Q.quantize_affine(w, 8)))
    assert Q.fake_quantize(w, 3, "affine").unique().numel() <= 8
    assert Q.fake_quantize(w, 3, "symmetric").unique().numel() <= 7
    # per channel along dim 1 (activations (N, C, H, W)): the same as moving C first.
    acts = torch.rand(4, 3, 2, 2, generator=_gen(2)) * torch.tensor([1.0, 10.0, 100.0]).view(1, 3, 1, 1)
    by_dim1 = Q.fake_quantize(acts, 4, "affine", per_channel=True, dim=1)
    by_hand = Q.fake_quantize(acts.movedim(1, 0), 4, "affine", per_channel=True).movedim(0, 1)
    assert torch.equal(by_dim1, by_hand)
    with pytest.raises(ValueError, match="scheme"):
        Q.fake_quantize(w, 8, "asymmetric")


def test_per_channel_and_affine_reduce_weight_error_where_they_should():
    # Rows of very different size: per-channel scales fit each row.
    w = torch.randn(16, 32, generator=_gen(3)) * torch.logspace(-2, 0, 16).view(-1, 1)
    error = {(s, c): (Q.fake_quantize(w, 4, s, per_channel=c) - w).pow(2).mean().item()
             for s in Q.SCHEMES for c in (False, True)}
    assert error[("symmetric", True)] < error[("symmetric", False)] / 2
    assert error[("affine", True)] < error[("affine", False)] / 2
    # Weights centred on zero: affine gains little over symmetric (one extra level).
    assert error[("affine", False)] > error[("symmetric", False)] / 2


def test_quantize_weights_copies_and_keeps_pruned_zeros():
    model = build_model("lenet300")
    prune_layerwise(model, 0.5)
    for scheme in Q.SCHEMES:
        q = Q.quantize_weights(model, 4, scheme, per_channel=True)
        assert q is not model and not torch.equal(q.fc1.weight, model.fc1.weight)
        assert torch.equal(q.fc1.weight == 0, model.fc1.weight == 0)     # zero maps to zero exactly
        assert all(row.unique().numel() <= 16 for row in q.fc2.weight.detach())


# ----------------------------------------------------------------------------- BatchNorm folding
def _randomise_batchnorms(model, seed=0):
    g = _gen(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) * 2 - 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g))
                m.running_mean.copy_(torch.randn(m.num_features, generator=g))
                m.running_var.copy_(torch.rand(m.num_features, generator=g) * 3 + 0.1)
    return model.eval()


@pytest.mark.parametrize("name", ["vgg", "resnet20"])
def test_folding_preserves_the_function_in_eval_mode(name):
    torch.manual_seed(0)
    model = _randomise_batchnorms(build_model(name))
    folded = Q.fold_batchnorms(model, (3, 32, 32))
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert n_bn > 0 and not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert sum(isinstance(m, nn.Identity) for m in folded.modules()) >= n_bn
    x = torch.randn(4, 3, 32, 32, generator=_gen(1))
    with torch.no_grad():
        expected, got = model(x), folded(x)
    assert (got - expected).abs().max() <= 1e-5 * expected.abs().max().clamp(min=1)
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())   # the original is untouched


def test_fold_batchnorm_formula_and_pruned_zeros():
    conv = nn.Conv2d(2, 3, 3, bias=True)
    bn = _randomise_batchnorms(nn.Sequential(nn.BatchNorm2d(3)))[0]
    with torch.no_grad():
        conv.weight[1, 0] = 0.0
    folded = Q.fold_batchnorm(conv, bn)
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    assert torch.allclose(folded.weight, conv.weight * s.view(-1, 1, 1, 1))
    assert torch.allclose(folded.bias, s * (conv.bias - bn.running_mean) + bn.bias)
    assert (folded.weight[1, 0] == 0).all()
    x = torch.randn(2, 2, 6, 6)
    assert torch.allclose(folded(x), bn(conv(x)), atol=1e-5)
    with pytest.raises(TypeError, match="Conv2d, BatchNorm2d"):
        Q.fold_batchnorm(bn, conv)
    with pytest.raises(ValueError, match="3 output channels"):
        Q.fold_batchnorm(conv, nn.BatchNorm2d(4))


def test_folding_leaves_a_batchnorm_that_does_not_follow_a_conv():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.BatchNorm2d(2))
    _randomise_batchnorms(model)
    folded = Q.fold_batchnorms(model, (1, 8, 8))
    assert isinstance(folded[2], nn.BatchNorm2d)                # conv -> ReLU -> BN cannot be folded
    x = torch.randn(2, 1, 8, 8)
    assert torch.allclose(folded(x), model(x))


# ----------------------------------------------------------------------------- activations
@pytest.fixture(scope="module")
def lenet_and_mnist():
    model = load_pretrained("lenet300")
    x, y = next(iter(DataLoader(load_dataset("mnist", "test"), batch_size=2000)))
    calib = [xb for xb, _ in DataLoader(load_dataset("mnist", "train"), batch_size=500)][:2]
    return model, x, y, calib


def _outputs_of(model, names, x):
    out = {}
    hooks = [model.get_submodule(n).register_forward_hook(lambda m, i, o, n=n: out.__setitem__(n, o.detach()))
             for n in names]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return out


def test_affine_uint8_halves_the_error_of_symmetric_int8_on_post_relu_activations(lenet_and_mnist):
    model, x, _, calib = lenet_and_mnist
    names = ["relu1", "relu2"]
    ranges = Q.activation_ranges(model, names, calib)
    acts = _outputs_of(model, names, x)
    for name in names:
        a = acts[name]
        assert ranges[name][0] == 0.0 and (a >= 0).all()           # post-ReLU: never negative
        rms = {s: (Q.fake_quantize(a, 8, s, value_range=ranges[name]) - a).pow(2).mean().sqrt().item()
               for s in Q.SCHEMES}
        # The affine grid spends all 256 levels on [0, max], the symmetric one 128: step and
        # rounding error halve (measured 2.01 on relu1 and relu2, 2000 test images).
        assert 1.8 < rms["symmetric"] / rms["affine"] < 2.2, (name, rms)


def test_quantize_activations_rounds_outputs_and_leaves_the_model_alone(lenet_and_mnist):
    model, x, y, calib = lenet_and_mnist
    q = Q.quantize_activations(model, ["relu1"], calib, bits=3, scheme="affine")
    assert _outputs_of(q, ["relu1"], x[:100])["relu1"].unique().numel() <= 8
    assert _outputs_of(model, ["relu1"], x[:100])["relu1"].unique().numel() > 100
    assert q.relu1._forward_hooks and not model.relu1._forward_hooks       # hooks only on the copy
    with torch.no_grad():
        accuracy = {s: (Q.quantize_activations(model, ["relu1", "relu2"], calib, bits=8, scheme=s)(x).argmax(1)
                        == y).float().mean().item() for s in Q.SCHEMES}
        dense = (model(x).argmax(1) == y).float().mean().item()
    assert all(abs(a - dense) <= 0.005 for a in accuracy.values()), (accuracy, dense)
    with pytest.raises(ValueError, match="scheme"):
        Q.quantize_activations(model, ["relu1"], calib, scheme="asym")


# ----------------------------------------------------------------------------- the facades
@pytest.mark.parametrize("facade", [compression, measure])
def test_facades_re_export_every_public_name_from_its_module(facade):
    import importlib

    homes = {compression: ["quantization", "sharing", "distillation", "encoding"],
             measure: ["counting", "sizes", "latency"]}[facade]
    exported = set()
    for home in homes:
        module = importlib.import_module(f"prunekit.{home}")
        for name in module.__all__:
            assert getattr(facade, name) is getattr(module, name), (facade.__name__, home, name)
            exported.add(name)
    assert set(facade.__all__) == exported
