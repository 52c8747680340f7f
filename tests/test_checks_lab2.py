"""Lab 2's checks reject known-wrong implementations with a useful hint.
(What every check promises -- reference passes, stubs, strict mode, no crashes, RNG left
alone -- is tested once for all labs in test_checks_contract.py.)"""
import copy

import torch
from torch import nn

from checks_helpers import rejected
from prunekit.checks import lab2
from prunekit.checks.references.lab2 import _group_prox
from prunekit.surgery import remove_neurons as library_remove_neurons


# ----------------------------------------------------------------------------- neuron_l2_scores
def test_neuron_l2_wrong_implementations():
    rejected(lab2.check_neuron_l2_scores, lambda w: w.abs().sum(1), "l1")
    rejected(lab2.check_neuron_l2_scores, lambda w: (w ** 2).sum(1), "square root")
    rejected(lab2.check_neuron_l2_scores, lambda w: w.norm(dim=0), "column")
    rejected(lab2.check_neuron_l2_scores, lambda w: w.sum(1), "signed")
    rejected(lab2.check_neuron_l2_scores, lambda w: w.norm(dim=1).long(), "int")


def test_neuron_l2_accepts_library():
    from prunekit.channel_criteria import neuron_norm
    assert lab2.check_neuron_l2_scores(neuron_norm, strict=False)


# ----------------------------------------------------------------------------- remove_neurons
def _fresh(fc_in, fc_out, keep):
    keep = torch.as_tensor(keep, dtype=torch.long)
    return fc_in, fc_out, keep


@torch.no_grad()
def _build(fc_in, fc_out, w_in, b_in, w_out, b_out):
    new_in = nn.Linear(w_in.shape[1], w_in.shape[0], bias=b_in is not None, dtype=fc_in.weight.dtype)
    new_out = nn.Linear(w_out.shape[1], w_out.shape[0], bias=b_out is not None, dtype=fc_out.weight.dtype)
    new_in.weight.copy_(w_in)
    new_out.weight.copy_(w_out)
    if b_in is not None:
        new_in.bias.copy_(b_in)
    if b_out is not None:
        new_out.bias.copy_(b_out)
    return new_in, new_out


def _bias(layer, index=None):
    if layer.bias is None:
        return None
    return layer.bias if index is None else layer.bias[index]


def test_remove_neurons_wrong_dimension_of_fc_out():
    def wrong(fc_in, fc_out, keep):   # copies of the layers with replaced parameters: rows of fc_out cut
        keep = torch.as_tensor(keep)
        new_in, new_out = copy.deepcopy(fc_in), copy.deepcopy(fc_out)
        new_in.weight = nn.Parameter(fc_in.weight[keep].detach().clone())
        if fc_in.bias is not None:
            new_in.bias = nn.Parameter(fc_in.bias[keep].detach().clone())
        new_out.weight = nn.Parameter(fc_out.weight[keep].detach().clone())
        return new_in, new_out
    rejected(lab2.check_remove_neurons, wrong, "columns")

    def stale_features(fc_in, fc_out, keep):   # right tensors, but in/out_features still the old ones
        keep = torch.as_tensor(keep)
        new_in, new_out = copy.deepcopy(fc_in), copy.deepcopy(fc_out)
        new_in.weight = nn.Parameter(fc_in.weight[keep].detach().clone())
        if fc_in.bias is not None:
            new_in.bias = nn.Parameter(fc_in.bias[keep].detach().clone())
        new_out.weight = nn.Parameter(fc_out.weight[:, keep].detach().clone())
        return new_in, new_out
    rejected(lab2.check_remove_neurons, stale_features, "features")


def test_remove_neurons_fc_out_not_cut():
    def wrong(fc_in, fc_out, keep):
        keep = torch.as_tensor(keep)
        return _build(fc_in, fc_out, fc_in.weight[keep], _bias(fc_in, keep), fc_out.weight, _bias(fc_out))
    rejected(lab2.check_remove_neurons, wrong, "not cut")


def test_remove_neurons_forgets_fc_in_bias():
    def wrong(fc_in, fc_out, keep):
        keep = torch.as_tensor(keep)
        new_in, new_out = _build(fc_in, fc_out, fc_in.weight[keep], None, fc_out.weight[:, keep], _bias(fc_out))
        return new_in, new_out
    rejected(lab2.check_remove_neurons, wrong, "bias")


def test_remove_neurons_keeps_default_bias_of_fc_in():
    def wrong(fc_in, fc_out, keep):   # a fresh layer's random bias instead of b_in[keep]
        keep = torch.as_tensor(keep)
        new_in = nn.Linear(fc_in.in_features, len(keep))
        new_out = nn.Linear(len(keep), fc_out.out_features)
        with torch.no_grad():
            new_in.weight.copy_(fc_in.weight[keep])
            new_out.weight.copy_(fc_out.weight[:, keep])
            new_out.bias.copy_(fc_out.bias)
        return new_in, new_out
    rejected(lab2.check_remove_neurons, wrong, "bias")


def test_remove_neurons_cuts_fc_out_bias():
    def wrong(fc_in, fc_out, keep):
        keep = torch.as_tensor(keep)
        new_in, new_out = _build(fc_in, fc_out, fc_in.weight[keep], _bias(fc_in, keep), fc_out.weight[:, keep],
                                 _bias(fc_out))
        if fc_out.bias is not None:
            new_out.bias = nn.Parameter(fc_out.bias[keep].detach().clone())
        return new_in, new_out
    rejected(lab2.check_remove_neurons, wrong, "outputs, which do not change")


def test_remove_neurons_drops_instead_of_keeps():
    def wrong(fc_in, fc_out, keep):
        drop = torch.as_tensor(keep)
        keep = torch.tensor([j for j in range(fc_in.out_features) if j not in drop.tolist()], dtype=torch.long)
        return _build(fc_in, fc_out, fc_in.weight[keep], _bias(fc_in, keep), fc_out.weight[:, keep], _bias(fc_out))
    rejected(lab2.check_remove_neurons, wrong, "not listed in keep")


def test_remove_neurons_modifies_the_inputs():
    def wrong(fc_in, fc_out, keep):   # "surgery" on the given layers
        keep = torch.as_tensor(keep)
        with torch.no_grad():
            fc_in.weight = nn.Parameter(fc_in.weight[keep].clone())
            if fc_in.bias is not None:
                fc_in.bias = nn.Parameter(fc_in.bias[keep].clone())
            fc_out.weight = nn.Parameter(fc_out.weight[:, keep].clone())
        fc_in.out_features = fc_out.in_features = len(keep)
        return fc_in, fc_out
    rejected(lab2.check_remove_neurons, wrong, "modified")


def test_remove_neurons_shares_memory():
    def wrong(fc_in, fc_out, keep):   # new modules, but the SAME parameter tensors when keep is everything
        keep = torch.as_tensor(keep)
        new_in, new_out = copy.copy(fc_in), copy.copy(fc_out)
        new_in._parameters = dict(fc_in._parameters)
        new_out._parameters = dict(fc_out._parameters)
        if len(keep) < fc_in.out_features:
            return reference_pair(fc_in, fc_out, keep)
        return new_in, new_out
    reference_pair = lab2.reference_remove_neurons
    rejected(lab2.check_remove_neurons, wrong, "share memory")


def test_remove_neurons_first_k_rows():
    def wrong(fc_in, fc_out, keep):
        k = len(keep)
        return _build(fc_in, fc_out, fc_in.weight[:k], _bias(fc_in, slice(0, k)), fc_out.weight[:, :k],
                      _bias(fc_out))
    rejected(lab2.check_remove_neurons, wrong, "first k")


def test_remove_neurons_inconsistent_order():
    def wrong(fc_in, fc_out, keep):   # rows in the given order, columns sorted
        keep = torch.as_tensor(keep)
        return _build(fc_in, fc_out, fc_in.weight[keep], _bias(fc_in, keep), fc_out.weight[:, keep.sort().values],
                      _bias(fc_out))
    rejected(lab2.check_remove_neurons, wrong, "order")


def test_remove_neurons_wrong_dtype_and_frozen_parameters():
    def float32_only(fc_in, fc_out, keep):
        keep = torch.as_tensor(keep)
        new_in = nn.Linear(fc_in.in_features, len(keep), bias=fc_in.bias is not None)
        new_out = nn.Linear(len(keep), fc_out.out_features, bias=fc_out.bias is not None)
        with torch.no_grad():
            new_in.weight.copy_(fc_in.weight[keep])
            new_out.weight.copy_(fc_out.weight[:, keep])
            if fc_in.bias is not None:
                new_in.bias.copy_(fc_in.bias[keep])
            if fc_out.bias is not None:
                new_out.bias.copy_(fc_out.bias)
        return new_in, new_out
    rejected(lab2.check_remove_neurons, float32_only, "dtype")

    def frozen(fc_in, fc_out, keep):
        new_in, new_out = lab2.reference_remove_neurons(fc_in, fc_out, keep)
        for p in list(new_in.parameters()) + list(new_out.parameters()):
            p.requires_grad_(False)
        return new_in, new_out
    rejected(lab2.check_remove_neurons, frozen, "grad")


def test_remove_neurons_accepts_sorted_order_and_the_library():
    assert lab2.check_remove_neurons(library_remove_neurons, strict=False)


def test_remove_neurons_reference_keeps_order():
    fc_in, fc_out = nn.Linear(3, 4), nn.Linear(4, 2)
    a, b = lab2.reference_remove_neurons(fc_in, fc_out, [3, 1])
    assert torch.equal(a.weight, fc_in.weight[[3, 1]]) and torch.equal(b.weight, fc_out.weight[:, [3, 1]])
    assert a.weight.requires_grad and fc_in.weight.shape == (4, 3)


# ----------------------------------------------------------------------------- group_lasso
def test_group_lasso_wrong_implementations():
    rejected(lab2.check_group_lasso, lambda w: (w ** 2).sum(), "sum of squares")
    rejected(lab2.check_group_lasso, lambda w: w.norm(), "whole matrix")
    rejected(lab2.check_group_lasso, lambda w: w.norm(dim=0).sum(), "column")
    rejected(lab2.check_group_lasso, lambda w: w.abs().sum(), "l1")
    rejected(lab2.check_group_lasso, lambda w: w.norm(dim=1).mean(), "average")
    rejected(lab2.check_group_lasso, lambda w: w.norm(dim=1), "one number")
    rejected(lab2.check_group_lasso, lambda w: w.norm(dim=1).sum().item(), "tensor")
    rejected(lab2.check_group_lasso, lambda w: w.detach().norm(dim=1).sum(), "require grad")
    rejected(lab2.check_group_lasso, lambda w: (w ** 2).sum(1).sqrt().sum(), "nan")


def test_group_lasso_accepts_alternatives():
    assert lab2.check_group_lasso(lambda w: w.norm(dim=1).sum(), strict=False)
    assert lab2.check_group_lasso(lambda w: torch.linalg.norm(w, dim=1).sum(), strict=False)


# ----------------------------------------------------------------------------- select_input_pixels
def _topk_mask(scores, k):
    keep = torch.zeros(scores.numel(), dtype=torch.bool)
    if k > 0:
        keep[scores.topk(k).indices] = True
    return keep


def test_select_input_pixels_wrong_implementations():
    rejected(lab2.check_select_input_pixels, lambda w, k: _topk_mask(w.norm(dim=1), k), "neuron")
    rejected(lab2.check_select_input_pixels, lambda w, k: _topk_mask(w.abs().sum(0), k), "l1")
    rejected(lab2.check_select_input_pixels, lambda w, k: _topk_mask(w.sum(0), k), "signed")
    rejected(lab2.check_select_input_pixels, lambda w, k: ~_topk_mask(w.norm(dim=0), k), "smallest")
    rejected(lab2.check_select_input_pixels, lambda w, k: _topk_mask(-w.norm(dim=0), k), "norm")
    rejected(lab2.check_select_input_pixels, lambda w, k: w.norm(dim=0).topk(k).indices, "mask")

    def threshold(w, k):
        norms = w.norm(dim=0)
        if k == 0:
            return torch.zeros_like(norms, dtype=torch.bool)
        return norms >= norms.topk(k).values[-1]
    rejected(lab2.check_select_input_pixels, threshold, "ties")


def test_select_input_pixels_accepts_topk_any_tie_break():
    assert lab2.check_select_input_pixels(lambda w, k: _topk_mask(w.norm(dim=0), k), strict=False)
    assert lab2.check_select_input_pixels(lambda w, k: _topk_mask(w.double().norm(dim=0), k).int(),
                                          strict=False)


def test_reference_select_input_pixels_ties_go_to_lower_index():
    keep = lab2.reference_select_input_pixels(torch.ones(2, 5), 2)
    assert keep.tolist() == [True, True, False, False, False]


# ----------------------------------------------------------------------------- neuron_statistics (capstone)
def _relus(model):
    return {name: m for name, m in model.named_children() if isinstance(m, nn.ReLU)}


def stats_mean_of_batch_means(model, x, batch_size):
    per = {name: [] for name in _relus(model)}
    hooks = [m.register_forward_hook(lambda mod, i, o, name=name: per[name].append(o.detach()))
             for name, m in _relus(model).items()]
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            model(x[s:s + batch_size])
    for h in hooks:
        h.remove()
    return {n: {"apoz": torch.stack([(o == 0).double().mean(0) for o in v]).mean(0),
                "mean": torch.stack([o.double().mean(0) for o in v]).mean(0)} for n, v in per.items()}


def stats_hooks_left(model, x, batch_size):
    out = {name: [] for name in _relus(model)}
    for name, m in _relus(model).items():
        m.register_forward_hook(lambda mod, i, o, name=name: out[name].append(o.detach()))
    with torch.no_grad():
        model(x)
    return {n: {"apoz": (torch.cat(v) == 0).double().mean(0), "mean": torch.cat(v).double().mean(0)}
            for n, v in out.items()}


def stats_on_linears(model, x, batch_size):
    fcs = {name: m for name, m in model.named_children() if isinstance(m, nn.Linear)}
    out = {name: [] for name in fcs}
    hooks = [m.register_forward_hook(lambda mod, i, o, name=name: out[name].append(o.detach()))
             for name, m in fcs.items()]
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return {n: {"apoz": (torch.cat(v) <= 0).double().mean(0), "mean": torch.cat(v).double().mean(0)}
            for n, v in out.items()}


def stats_first_batch(model, x, batch_size):
    return lab2.reference_neuron_statistics(model, x[:batch_size], batch_size)


def stats_active_fraction(model, x, batch_size):
    ref = lab2.reference_neuron_statistics(model, x, batch_size)
    return {n: {"apoz": 1 - s["apoz"], "mean": s["mean"]} for n, s in ref.items()}


def test_neuron_statistics_wrong_implementations():
    rejected(lab2.check_neuron_statistics, stats_mean_of_batch_means, "batch averages")
    rejected(lab2.check_neuron_statistics, stats_hooks_left, "hooks")
    rejected(lab2.check_neuron_statistics, stats_on_linears, "relu")
    rejected(lab2.check_neuron_statistics, stats_first_batch)
    rejected(lab2.check_neuron_statistics, stats_active_fraction, "zero")


def test_neuron_statistics_agrees_with_the_library():
    from prunekit.activations import activation_statistics
    model = lab2._mlp(1, (10, 12, 6, 3))
    x = torch.randn(37, 10, generator=torch.Generator().manual_seed(0))
    ours = lab2.reference_neuron_statistics(model, x, 8)
    lib = activation_statistics(model, ["relu1", "relu2"], [(x[i:i + 8], None) for i in range(0, 37, 8)])
    for name in ours:
        assert torch.allclose(ours[name]["apoz"], lib[name]["apoz"].double())
        assert torch.allclose(ours[name]["mean"], lib[name]["mean"].double(), atol=1e-6)


# ----------------------------------------------------------------------------- shrink_mlp (capstone)
def _linear_names(model):
    return [n for n, m in model.named_children() if isinstance(m, nn.Linear)]


def shrink_rows_only(model, keep):
    small = copy.deepcopy(model)
    with torch.no_grad():
        for name, idx in keep.items():
            old = getattr(small, name)
            new = nn.Linear(old.in_features, len(idx), dtype=old.weight.dtype)
            new.weight.copy_(old.weight[torch.as_tensor(idx)])
            new.bias.copy_(old.bias[torch.as_tensor(idx)])
            setattr(small, name, new)
    return small


def shrink_in_place(model, keep):
    names = _linear_names(model)
    for name, nxt in zip(names, names[1:]):
        if name in keep:
            a, b = lab2.reference_remove_neurons(getattr(model, name), getattr(model, nxt), keep[name])
            setattr(model, name, a)
            setattr(model, nxt, b)
    return model


def shrink_from_original_each_time(model, keep):  # cuts the middle layer's rows from the ORIGINAL layer
    small = copy.deepcopy(model)
    names = _linear_names(model)
    for name, nxt in zip(names, names[1:]):
        if name in keep:
            a, b = lab2.reference_remove_neurons(getattr(model, name), getattr(model, nxt), keep[name])
            setattr(small, name, a)
            setattr(small, nxt, b)
    return small


def shrink_drops(model, keep):
    dropped = {}
    for name, idx in keep.items():
        n = getattr(model, name).out_features
        kept = set(torch.as_tensor(idx).tolist())
        dropped[name] = [j for j in range(n) if j not in kept]
    return lab2.reference_shrink_mlp(model, dropped)


def shrink_rebuilt_sequential(model, keep):  # loses the names (and the Flatten)
    small = lab2.reference_shrink_mlp(model, keep)
    return nn.Sequential(*[m for m in small.children() if not isinstance(m, nn.Flatten)])


def test_shrink_mlp_wrong_implementations():
    rejected(lab2.check_shrink_mlp, shrink_rows_only, "columns")
    rejected(lab2.check_shrink_mlp, shrink_in_place, "modified")
    rejected(lab2.check_shrink_mlp, shrink_from_original_each_time)
    rejected(lab2.check_shrink_mlp, shrink_drops, "keep")
    rejected(lab2.check_shrink_mlp, shrink_rebuilt_sequential, "children")


def test_shrink_mlp_accepts_sorted_keep_and_rejects_the_output_layer():
    def sorted_keep(model, keep):
        return lab2.reference_shrink_mlp(model, {n: torch.as_tensor(k).sort().values for n, k in keep.items()})
    assert lab2.check_shrink_mlp(sorted_keep, strict=False)
    model = lab2._mlp(0, (4, 5, 3))
    try:
        lab2.reference_shrink_mlp(model, {"fc2": [0]})
    except ValueError as err:
        assert "hidden" in str(err)
    else:
        raise AssertionError("the output layer must not lose neurons")


# ----------------------------------------------------------------------------- train_group_lasso (capstone)
def _plain_steps(model, x, y, lr, steps, penalty=None, prox=None, order="grad-then-prox"):
    hidden = [m for m in model.modules() if isinstance(m, nn.Linear)][:-1]
    for _ in range(steps):
        if order == "prox-then-grad" and prox:
            for layer in hidden:
                prox(layer)
        model.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        if penalty:
            loss = loss + penalty(model)
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
        if order == "grad-then-prox" and prox:
            for layer in hidden:
                prox(layer)
    return model


def prox_subgradient(model, x, y, lam, lr, steps):   # the penalty in the loss: never exact zeros
    hidden = [m for m in model.modules() if isinstance(m, nn.Linear)][:-1]
    pen = lambda m: lam * sum(torch.cat([l.weight, l.bias[:, None]], 1).norm(dim=1).sum() for l in hidden)  # noqa: E731
    return _plain_steps(model, x, y, lr, steps, penalty=pen)


def prox_threshold_lam(model, x, y, lam, lr, steps):  # forgets the step size in the threshold
    return _plain_steps(model, x, y, lr, steps, prox=lambda l: _group_prox(l, lam))


def prox_all_layers(model, x, y, lam, lr, steps):
    lab2.reference_train_group_lasso(model, x, y, lam, lr, steps)
    return model if steps == 0 else _plain_steps(copy.deepcopy(model), x, y, lr, 0)


def prox_every_linear(model, x, y, lam, lr, steps):
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    for _ in range(steps):
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= lr * p.grad
        for layer in linears:                       # the output layer too
            _group_prox(layer, lr * lam)
    return model


@torch.no_grad()
def _prox_rows_without_bias(layer, threshold):
    norms = layer.weight.norm(dim=1)
    layer.weight.mul_(torch.clamp(1 - threshold / norms.clamp_min(1e-30), min=0)[:, None])


def prox_weights_only(model, x, y, lam, lr, steps):
    return _plain_steps(model, x, y, lr, steps, prox=lambda l: _prox_rows_without_bias(l, lr * lam))


def prox_columns(model, x, y, lam, lr, steps):
    @torch.no_grad()
    def cols(layer):
        norms = layer.weight.norm(dim=0)
        layer.weight.mul_(torch.clamp(1 - lr * lam / norms.clamp_min(1e-30), min=0)[None, :])
    return _plain_steps(model, x, y, lr, steps, prox=cols)


def prox_before_gradient(model, x, y, lam, lr, steps):
    return _plain_steps(model, x, y, lr, steps, prox=lambda l: _group_prox(l, lr * lam), order="prox-then-grad")


def prox_momentum(model, x, y, lam, lr, steps):
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    hidden = [m for m in model.modules() if isinstance(m, nn.Linear)][:-1]
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        for layer in hidden:
            _group_prox(layer, lr * lam)
    return model


def test_train_group_lasso_wrong_implementations():
    rejected(lab2.check_train_group_lasso, prox_subgradient, "proximal")
    rejected(lab2.check_train_group_lasso, prox_threshold_lam)
    rejected(lab2.check_train_group_lasso, prox_every_linear, "output layer")
    rejected(lab2.check_train_group_lasso, prox_weights_only)
    rejected(lab2.check_train_group_lasso, prox_columns)
    rejected(lab2.check_train_group_lasso, prox_before_gradient)
    rejected(lab2.check_train_group_lasso, prox_momentum)


def test_train_group_lasso_reference_makes_exact_zero_neurons():
    model = lab2._mlp(3, (6, 10, 3), dtype=torch.float64)
    x, y = lab2._prox_data(3, 40, 6, 3, torch.float64)
    lab2.reference_train_group_lasso(model, x, y, lam=0.5, lr=0.2, steps=10)
    dead = (model.fc1.weight.norm(dim=1) == 0) & (model.fc1.bias == 0)
    assert 0 < int(dead.sum()) < 10


# ----------------------------------------------------------------------------- recursive_elimination
def rfe_no_refit(x, y, k, step):   # ranks once from the full model's coefficients
    from sklearn.linear_model import LinearRegression
    coef = torch.from_numpy(abs(LinearRegression().fit(x.double().numpy(), y.double().numpy()).coef_))
    order = torch.argsort(coef, stable=True)
    ranking = torch.ones(x.shape[1], dtype=torch.long)
    n_drop = x.shape[1] - k
    for r, start in enumerate(range(0, n_drop, step)):
        ranking[order[start:min(start + step, n_drop)]] = 1 + (n_drop + step - 1) // step - r
    return ranking


def rfe_no_intercept(x, y, k, step):
    from sklearn.feature_selection import RFE
    from sklearn.linear_model import LinearRegression
    rfe = RFE(LinearRegression(fit_intercept=False), n_features_to_select=k, step=step)
    return torch.from_numpy(rfe.fit(x.double().numpy(), y.double().numpy()).ranking_)


def rfe_one_at_a_time(x, y, k, step):
    return lab2.reference_recursive_elimination(x, y, k, 1)


def rfe_reversed(x, y, k, step):
    r = lab2.reference_recursive_elimination(x, y, k, step)
    return r.max() + 1 - r


def rfe_mask(x, y, k, step):
    return lab2.reference_recursive_elimination(x, y, k, step) == 1


def rfe_signed(x, y, k, step):   # smallest signed coefficient instead of |coefficient|
    x64, y64 = x.double(), y.double()
    alive = torch.ones(x.shape[1], dtype=torch.bool)
    ranking = torch.ones(x.shape[1], dtype=torch.long)
    while int(alive.sum()) > k:
        idx = alive.nonzero().flatten()
        design = x64[:, idx] - x64[:, idx].mean(0)
        coef = torch.linalg.lstsq(design, (y64 - y64.mean())[:, None]).solution.flatten()
        alive[idx[torch.argsort(coef)[:min(step, len(idx) - k)]]] = False
        ranking[~alive] += 1
    return ranking


def test_recursive_elimination_wrong_implementations():
    rejected(lab2.check_recursive_elimination, rfe_no_refit)
    rejected(lab2.check_recursive_elimination, rfe_no_intercept)
    rejected(lab2.check_recursive_elimination, rfe_one_at_a_time, "step")
    rejected(lab2.check_recursive_elimination, rfe_reversed, "other way")
    rejected(lab2.check_recursive_elimination, rfe_mask, "integers")
    rejected(lab2.check_recursive_elimination, rfe_signed)


def test_recursive_elimination_accepts_sklearn_and_matches_it():
    from sklearn.feature_selection import RFE
    from sklearn.linear_model import LinearRegression

    def with_sklearn(x, y, k, step):
        rfe = RFE(LinearRegression(), n_features_to_select=k, step=step).fit(x.double().numpy(), y.double().numpy())
        return torch.from_numpy(rfe.ranking_)
    assert lab2.check_recursive_elimination(with_sklearn, strict=False)
    x, y = lab2._rfe_data(7, 90, 15)
    assert torch.equal(with_sklearn(x, y, 4, 2), lab2.reference_recursive_elimination(x, y, 4, 2))
