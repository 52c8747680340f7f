import pytest
import torch
from torch import nn

from prunekit.data import load_dataset, subset
from prunekit.models import build_model
from prunekit.regularizers import (bn_gamma_l1, group_lasso_penalty, l1_penalty, make_regularizer,
                                  proximal_group_lasso_, proximal_l1_)
from prunekit.train import train


def linear_with(weight, bias=None):
    weight = torch.tensor(weight, dtype=torch.float32)
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    layer.weight = nn.Parameter(weight)
    if bias is not None:
        layer.bias = nn.Parameter(torch.tensor(bias, dtype=torch.float32))
    return layer


def test_l1_value_and_gradient():
    model = nn.Sequential(linear_with([[1.0, -2.0], [0.0, 3.0]], bias=[100.0, -100.0]), nn.ReLU(),
                          linear_with([[-0.5, 0.5]]))
    penalty = l1_penalty(model, 0.1)
    assert penalty.shape == ()
    assert penalty.item() == pytest.approx(0.1 * (1 + 2 + 0 + 3 + 0.5 + 0.5))   # biases not counted
    penalty.backward()
    assert torch.allclose(model[0].weight.grad, 0.1 * torch.tensor([[1.0, -1.0], [0.0, 1.0]]))
    assert model[0].bias.grad is None
    assert l1_penalty(model, 0.1, exclude=["2"]).item() == pytest.approx(0.6)


def test_group_lasso_rows_and_columns():
    model = nn.Sequential(linear_with([[3.0, 4.0], [0.0, 0.0]]))
    rows = group_lasso_penalty(model, 2.0, dim=0)
    assert rows.item() == pytest.approx(2.0 * (5.0 + 0.0))
    rows.backward()
    # d||w_g|| / dw = w_g / ||w_g||; PyTorch gives 0 (not NaN) for the all-zero group
    assert torch.allclose(model[0].weight.grad, 2.0 * torch.tensor([[0.6, 0.8], [0.0, 0.0]]))
    assert group_lasso_penalty(model, 1.0, dim=1).item() == pytest.approx(3.0 + 4.0)   # columns (3,0), (4,0)


def test_group_lasso_conv_filters_and_input_channels():
    conv = nn.Conv2d(2, 3, kernel_size=2, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.arange(24, dtype=torch.float32).view(3, 2, 2, 2))
    model = nn.Sequential(conv)
    w = conv.weight.detach()
    per_filter = sum(w[o].norm() for o in range(3))
    per_input = sum(w[:, i].norm() for i in range(2))
    assert group_lasso_penalty(model, 1.0, dim=0).item() == pytest.approx(per_filter.item())
    assert group_lasso_penalty(model, 1.0, dim=1).item() == pytest.approx(per_input.item())
    with pytest.raises(ValueError, match="dim"):
        group_lasso_penalty(model, 1.0, dim=2)


def test_bn_gamma_l1_value_gradient_and_error():
    bn = nn.BatchNorm2d(3)
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([0.5, -2.0, 0.0]))
    model = nn.Sequential(nn.Conv2d(1, 3, 1), bn)
    penalty = bn_gamma_l1(model, 0.1)
    assert penalty.item() == pytest.approx(0.25)
    penalty.backward()
    assert torch.allclose(bn.weight.grad, torch.tensor([0.1, -0.1, 0.0]))
    assert model[0].weight.grad is None                                  # only γ is penalised
    assert bn_gamma_l1(build_model("vgg"), 1.0).item() == pytest.approx(32 + 32 + 64 + 64 + 128 + 128 + 256 + 256)
    with pytest.raises(ValueError, match="BatchNorm"):
        bn_gamma_l1(build_model("lenet300"), 1.0)


def test_make_regularizer_matches_direct_call_and_checks_early():
    torch.manual_seed(0)
    model = build_model("lenet300")
    reg = make_regularizer("group_lasso", 1e-3, dim=1, exclude=["fc3"])
    assert reg(model).item() == pytest.approx(group_lasso_penalty(model, 1e-3, dim=1, exclude=["fc3"]).item())
    assert make_regularizer("l1", 0.5)(model).item() == pytest.approx(l1_penalty(model, 0.5).item())
    with pytest.raises(ValueError, match="unknown regularizer"):
        make_regularizer("l0", 1.0)
    with pytest.raises(TypeError, match="does not accept"):
        make_regularizer("bn_gamma", 1.0, dim=0)
    with pytest.raises(ValueError, match="strength"):
        make_regularizer("l1", -1.0)


def test_l1_in_training_shrinks_weights():
    data = subset(load_dataset("mnist", "train"), 512, seed=0)
    norms = []
    for regularizer in (None, make_regularizer("l1", 1e-3)):
        torch.manual_seed(0)
        model = build_model("lenet300")
        train(model, data, epochs=1, quiet=True, regularizer=regularizer, weight_decay=0.0)
        norms.append(l1_penalty(model, 1.0).item())
    assert norms[1] < norms[0]


def _sparse_regression(seed=0):
    """y depends on the first 2 of 6 inputs: the 4 other input columns should become zero."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(256, 6, generator=g)
    y = x[:, :2] @ torch.tensor([[1.5, -1.0], [0.5, 2.0]]) + 0.01 * torch.randn(256, 2, generator=g)
    return x, y


def _fit(proximal, strength=0.05, lr=0.05, steps=400):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 2, bias=False))
    x, y = _sparse_regression()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        loss = nn.functional.mse_loss(model(x), y)
        if not proximal:
            loss = loss + group_lasso_penalty(model, strength, dim=1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if proximal:
            proximal_group_lasso_(model, lr * strength, dim=1)
    return model[0].weight.detach().norm(dim=0)        # one norm per input column


def test_group_lasso_under_sgd_gives_small_groups_but_only_the_proximal_step_gives_zeros():
    sgd, prox = _fit(proximal=False), _fit(proximal=True)
    # Both find the two useful inputs and shrink the four others ...
    assert (sgd[:2] > 0.5).all() and (prox[:2] > 0.5).all()
    assert (sgd[2:] < 0.05).all()
    # ... but plain (sub)gradient steps leave them oscillating around zero, never exactly at it.
    assert (sgd[2:] > 0).all()
    assert (prox[2:] == 0).all()


def test_proximal_l1_soft_thresholds_and_counts_zeros():
    model = nn.Sequential(nn.Linear(4, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[0.3, -0.3, 0.05, -0.1]]))
    assert proximal_l1_(model, 0.1) == 2
    assert torch.allclose(model[0].weight.detach(), torch.tensor([[0.2, -0.2, 0.0, 0.0]]))
    with pytest.raises(ValueError, match="dim must be 0"):
        proximal_group_lasso_(model, 0.1, dim=2)
