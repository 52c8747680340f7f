"""Per-unit criteria (prunekit.channel_criteria) and the forward-hook helpers (prunekit.activations)."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunekit import channel_criteria as CC
from prunekit.activations import activation_statistics, collect_activations, get_layers, take_batches
from prunekit.models import build_model

# (N=2, C=2, H=1, W=2): channel 0 holds 0, 1, 0, 0; channel 1 holds 2, 2, 0, 4.
ACTS = torch.tensor([[[[0.0, 1.0]], [[2.0, 2.0]]],
                     [[[0.0, 0.0]], [[0.0, 4.0]]]])


def no_hooks_left(model):
    return all(not m._forward_hooks and not m._forward_pre_hooks for m in model.modules())


def tiny_loader(n=6, batch_size=4, shape=(1, 28, 28), seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g)
    return DataLoader(TensorDataset(x, torch.randint(0, 10, (n,), generator=g)), batch_size=batch_size)


# ----------------------------------------------------------------------------- weight-based
def test_channel_norm_linear_and_conv_hand_computed():
    w = torch.tensor([[3.0, -4.0], [1.0, 0.0]])
    assert torch.equal(CC.channel_norm(w), torch.tensor([5.0, 1.0]))
    assert torch.equal(CC.channel_norm(w, p=1), torch.tensor([7.0, 1.0]))
    conv = torch.ones(4, 3, 2, 2)
    conv[1] *= -2.0
    scores = CC.channel_norm(conv)
    assert scores.shape == (4,)
    # filter 0: sqrt(12 · 1²); filter 1: sqrt(12 · 2²)
    assert torch.allclose(scores[:2], torch.tensor([12 ** 0.5, 48 ** 0.5]))
    assert torch.equal(CC.neuron_norm(w, p=1), torch.tensor([7.0, 1.0]))


def test_channel_norm_errors():
    with pytest.raises(ValueError, match=r"\(out, in\)"):
        CC.channel_norm(torch.ones(3))
    with pytest.raises(ValueError, match="p must be"):
        CC.channel_norm(torch.ones(2, 2), p=0)
    with pytest.raises(ValueError, match="channel_norm"):
        CC.neuron_norm(torch.ones(2, 2, 1, 1))


def test_fpgm_three_filters_hand_computed():
    # filters (0,0), (3,4), (6,8) as Conv2d (3, 1, 1, 2): distances 5, 10, 5 between neighbours
    w = torch.tensor([[0.0, 0.0], [3.0, 4.0], [6.0, 8.0]]).view(3, 1, 1, 2)
    scores = CC.fpgm(w)
    assert torch.allclose(scores, torch.tensor([15.0, 10.0, 15.0]))
    assert CC.channel_mask(scores, 1 / 3).tolist() == [True, False, True]  # the median filter goes
    assert torch.equal(CC.fpgm(torch.ones(3, 4)), torch.zeros(3))  # identical filters: exactly 0


def test_bn_gamma():
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -2.0, 0.0]))
    assert torch.equal(CC.bn_gamma(bn), torch.tensor([0.5, 2.0, 0.0]))
    with pytest.raises(TypeError, match="BatchNorm"):
        CC.bn_gamma(nn.Conv2d(1, 1, 1))
    with pytest.raises(ValueError, match="affine=False"):
        CC.bn_gamma(nn.BatchNorm2d(3, affine=False))


# ----------------------------------------------------------------------------- activation-based
def test_mean_activation_and_apoz_hand_computed():
    assert torch.allclose(CC.mean_activation(ACTS), torch.tensor([0.25, 2.0]))
    assert torch.allclose(CC.apoz(ACTS), torch.tensor([0.75, 0.25]))
    assert torch.allclose(CC.apoz_importance(ACTS), torch.tensor([0.25, 0.75]))
    linear = torch.tensor([[0.0, 2.0], [4.0, 0.0], [0.0, 0.0]])  # (N=3, units=2)
    assert torch.allclose(CC.mean_activation(linear), torch.tensor([4 / 3, 2 / 3]))
    assert torch.allclose(CC.apoz(linear), torch.tensor([2 / 3, 2 / 3]))


def test_taylor_channel_hand_computed():
    grads = torch.tensor([[[[1.0, -1.0]], [[1.0, -0.5]]],
                          [[[3.0, 3.0]], [[-1.0, 1.0]]]])
    # channel 0: a·g = 0, -1, 0, 0 -> (sum)² = 1
    # channel 1: a·g = 2, -1, 0, 4 -> (sum)² = 25 (the sum of (a·g)² would be 21: the square comes last)
    assert torch.allclose(CC.taylor_channel(ACTS, grads), torch.tensor([1.0, 25.0]))
    with pytest.raises(ValueError, match="same shape"):
        CC.taylor_channel(ACTS, grads[:1])
    with pytest.raises(ValueError, match=r"\(N, units\)"):
        CC.mean_activation(torch.ones(3))


def test_taylor_channel_scores_matches_manual_autograd():
    torch.manual_seed(0)
    model = build_model("lenet5")
    x, y = torch.randn(3, 1, 28, 28), torch.tensor([1, 2, 3])
    model.eval()
    a = model.relu1(model.conv1(x))
    a.retain_grad()
    rest = nn.Sequential(*list(model.children())[2:])  # pool1 onwards
    nn.functional.cross_entropy(rest(a), y).backward()
    expected = CC.taylor_channel(a, a.grad)
    model.zero_grad(set_to_none=True)
    model.train()
    scores = CC.taylor_channel_scores(model, ["relu1", "fc1"], [(x, y)])
    assert scores["relu1"].shape == (20,) and scores["fc1"].shape == (500,)
    assert torch.allclose(scores["relu1"], expected, rtol=1e-4, atol=1e-10)
    assert no_hooks_left(model) and model.training and model.conv1.weight.grad is None


def test_taylor_channel_scores_square_each_batch_before_averaging():
    # Molchanov et al. 2019: mean over batches of (Σ a·dL_b/da)², not the square of the mean.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    batches = [(torch.randn(5, 3), torch.randint(0, 2, (5,))) for _ in range(3)]
    per_batch = []
    for x, y in batches:
        a = model[1](model[0](x))
        g, = torch.autograd.grad(nn.functional.cross_entropy(model[2](a), y), a)
        per_batch.append(CC.taylor_channel(a, g))
    scores = CC.taylor_channel_scores(model, ["1"], batches)["1"]
    assert torch.allclose(scores, torch.stack(per_batch).mean(0), rtol=1e-5, atol=1e-12)
    assert torch.allclose(CC.taylor_channel_scores(model, ["1"], batches[:1])["1"], per_batch[0], rtol=1e-5)


def test_channel_mask_exact_count():
    scores = torch.tensor([5.0, 1.0, 4.0, 2.0, 3.0, 0.0, 9.0, 8.0, 7.0, 6.0])
    mask = CC.channel_mask(scores, 0.3)
    assert mask.dtype == torch.bool and (~mask).sum() == 3
    assert (~mask).nonzero().flatten().tolist() == [1, 3, 5]
    with pytest.raises(ValueError, match="1-D"):
        CC.channel_mask(torch.ones(2, 2), 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        CC.channel_mask(scores, 30)


# ----------------------------------------------------------------------------- hooks (activations.py)
def test_collect_activations_shapes_hooks_removed_mode_restored():
    model = build_model("lenet300")
    model.train()
    acts = collect_activations(model, ["fc1", "relu1", "fc3"], tiny_loader(n=6, batch_size=4))
    assert {k: tuple(v.shape) for k, v in acts.items()} == {"fc1": (6, 300), "relu1": (6, 300), "fc3": (6, 10)}
    assert torch.equal(acts["relu1"], acts["fc1"].clamp_min(0))
    assert no_hooks_left(model) and model.training
    first = collect_activations(model, ["fc1"], tiny_loader(n=6, batch_size=4), n_batches=1)
    assert first["fc1"].shape == (4, 300)
    conv = collect_activations(build_model("lenet5"), ["conv2", "relu3"], tiny_loader(n=2))
    assert conv["conv2"].shape == (2, 50, 8, 8) and conv["relu3"].shape == (2, 500)


def test_hooks_removed_when_forward_fails():
    model = build_model("lenet300")
    with pytest.raises(RuntimeError):
        collect_activations(model, ["fc1"], [torch.ones(2, 5)])  # wrong input size
    assert no_hooks_left(model)


def test_activation_statistics_match_full_activations():
    model = build_model("lenet5")
    loader = tiny_loader(n=5, batch_size=2)
    stats = activation_statistics(model, ["relu1", "relu3"], loader)
    acts = collect_activations(model, ["relu1", "relu3"], loader)
    for name in ("relu1", "relu3"):
        assert torch.allclose(stats[name]["mean"], CC.mean_activation(acts[name]), atol=1e-6)
        assert torch.allclose(stats[name]["apoz"], CC.apoz(acts[name]))
        assert stats[name]["count"] == 5
    assert no_hooks_left(model)


def test_activation_statistics_hand_made_layer():
    model = nn.Sequential()
    model.add_module("relu", nn.ReLU())
    stats = activation_statistics(model, ["relu"], [ACTS[:1], ACTS[1:]])["relu"]
    assert torch.allclose(stats["mean"], torch.tensor([0.25, 2.0]))
    assert torch.allclose(stats["apoz"], torch.tensor([0.75, 0.25]))
    assert stats["count"] == 2


def test_layer_name_errors():
    model = build_model("lenet300")
    with pytest.raises(ValueError, match="parameter; use its module name"):
        get_layers(model, ["fc1.weight"])
    with pytest.raises(ValueError, match="module names"):
        collect_activations(model, ["conv9"], tiny_loader())
    with pytest.raises(TypeError, match=r"\['fc1'\]"):
        collect_activations(model, "fc1", tiny_loader())


def test_take_batches_accepts_datasets_and_bare_tensors():
    dataset = TensorDataset(torch.zeros(130, 2), torch.zeros(130))
    sizes = [x.shape[0] for x, _ in take_batches(dataset)]
    assert sizes == [128, 2]
    x, y = next(take_batches([torch.ones(3, 2)]))
    assert y is None and x.shape == (3, 2)
