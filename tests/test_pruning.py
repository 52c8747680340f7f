"""Masks on a model: layer-wise/global = torch.nn.utils.prune, masks survive training, save/load, copy."""
import copy
import io

import pytest
import torch
from torch.nn.utils import prune as torch_prune

from prunekit.data import load_dataset, subset
from prunekit.models import build_model
from prunekit.pruning import (apply_masks, enforce_masks, from_torch_prune, get_masks, keep_masks_on,
                              make_permanent, masks_from_zeros, model_sparsity, plain_state_dict,
                              prunable_weights, prune_global, prune_layerwise, row_topk_mask, to_torch_prune)
from prunekit.train import seed_everything, train


def _model(name="lenet300", seed=0):
    torch.manual_seed(seed)
    return build_model(name)


def _zeros(model):
    return {n: (w == 0) for n, w in prunable_weights(model).items()}


def test_layerwise_matches_torch_l1_unstructured():
    ours, theirs = _model(), _model()
    prune_layerwise(ours, 0.7)
    for name, module in theirs.named_children():
        if isinstance(module, torch.nn.Linear):
            torch_prune.l1_unstructured(module, "weight", amount=0.7)
    for name, mask in get_masks(ours).items():
        module = theirs.get_submodule(name.rsplit(".", 1)[0])
        assert torch.equal(mask, module.weight_mask.bool()), name


def test_global_matches_torch_global_unstructured():
    ours, theirs = _model("lenet5"), _model("lenet5")
    prune_global(ours, 0.8)
    params = [(m, "weight") for m in theirs.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]
    torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=0.8)
    for (module, _), (name, mask) in zip(params, get_masks(ours).items()):
        assert torch.equal(mask, module.weight_mask.bool()), name
    assert model_sparsity(ours) == pytest.approx(round(0.8 * 430500) / 430500)


def test_exact_sparsities_dict_and_exclude():
    model = _model()
    prune_layerwise(model, {"fc1.weight": 0.95, "fc2.weight": 0.5})
    zeros = _zeros(model)
    assert zeros["fc1.weight"].sum() == round(0.95 * 235200) and zeros["fc2.weight"].sum() == 15000
    assert zeros["fc3.weight"].sum() == 0
    model = _model()
    prune_global(model, 0.9, exclude=["fc3"])
    assert (model.fc3.weight != 0).all()
    assert sum(z.sum().item() for z in _zeros(model).values()) == round(0.9 * (235200 + 30000))


@pytest.mark.parametrize("name, sparsity", [("lenet300", 0.5), ("lenet300", 0.8), ("lenet5", 0.37),
                                            ("vgg", 0.9)])
def test_per_row_prunes_exactly_round_sparsity_times_row_size_in_every_row(name, sparsity):
    model = _model(name)
    masks = prune_layerwise(model, sparsity, per_row=True)
    for n, mask in masks.items():
        rows = mask.flatten(1)                                 # a Linear row or a whole conv filter
        pruned = (~rows).sum(dim=1)
        expected = int(round(sparsity * rows.shape[1]))
        assert (pruned == expected).all(), (n, pruned.unique(), expected)
        weight = prunable_weights(model)[n].detach().flatten(1)
        # The pruned entries of a row are its smallest |w| (magnitude by default).
        worst_kept = weight.abs().masked_fill(~rows, float("inf")).amin(dim=1)
        best_pruned = weight.abs().masked_fill(rows, float("-inf")).amax(dim=1)
        assert (best_pruned <= worst_kept).all()


def test_per_row_differs_from_per_layer_and_breaks_ties_by_index():
    scores = torch.tensor([[4.0, 1.0, 3.0, 2.0], [10.0, 20.0, 30.0, 40.0]])
    assert row_topk_mask(scores, 0.5).tolist() == [[True, False, True, False], [False, False, True, True]]
    assert row_topk_mask(torch.ones(2, 3), 1 / 3).tolist() == [[False, True, True], [False, True, True]]
    # Per layer, the whole first row would go (all its scores are below the second row's).
    model = torch.nn.Sequential(torch.nn.Linear(4, 2, bias=False))
    layer = prune_layerwise(copy.deepcopy(model), 0.5, scores={"0.weight": scores})["0.weight"]
    rows = prune_layerwise(model, 0.5, scores={"0.weight": scores}, per_row=True)["0.weight"]
    assert layer.tolist() == [[False, False, False, False], [True, True, True, True]]
    assert rows.tolist() == [[True, False, True, False], [False, False, True, True]]
    with pytest.raises(ValueError, match="one row per output unit"):
        row_topk_mask(torch.ones(4), 0.5)


def test_scores_for_some_layers_only_name_the_exclude_fix():
    model = _model()
    scores = {"fc1.weight": torch.rand(300, 784), "fc2.weight": torch.rand(100, 300)}
    with pytest.raises(ValueError, match=r"no entry for 'fc3.weight'.*exclude=\['fc3'\]"):
        prune_layerwise(model, 0.5, scores=scores, per_row=True)
    masks = prune_layerwise(model, 0.5, scores=scores, per_row=True, exclude=["fc3"])
    assert set(masks) == {"fc1.weight", "fc2.weight"}


def test_per_row_keeps_earlier_pruning():
    model = _model()
    prune_layerwise(model, 0.5, per_row=True)
    masks = prune_layerwise(model, 0.25, per_row=True)      # a lower target revives nothing
    assert ((~masks["fc2.weight"]).sum(dim=1) == 150).all()


def test_bad_arguments_name_what_was_expected():
    model = _model()
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        prune_global(model, 1.3)
    with pytest.raises(ValueError, match="not Linear/Conv2d"):
        prune_layerwise(model, {"fc1.bias": 0.5})
    with pytest.raises(ValueError, match="not found"):
        prune_global(model, 0.5, exclude=["fc9"])
    with pytest.raises(ValueError, match="shape"):
        apply_masks(model, {"fc1.weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match="excluded"):
        prune_global(model, 0.5, exclude=["fc1", "fc2", "fc3"])


def test_masks_only_grow_even_when_the_target_goes_down():
    model = _model()
    prune_global(model, 0.9)
    before = _zeros(model)
    prune_global(model, 0.5)  # a lower target must not revive anything
    after = _zeros(model)
    assert all(torch.equal(before[n], after[n]) for n in before)
    prune_global(model, 0.95)
    assert model_sparsity(model) == pytest.approx(0.95, abs=1e-5)
    assert all((after[n] <= _zeros(model)[n]).all() for n in after)


def test_global_normalisation_changes_the_allocation():
    plain, normalised = _model(), _model()
    with torch.no_grad():
        plain.fc3.weight.mul_(100)
        normalised.fc3.weight.mul_(100)
    prune_global(plain, 0.9)
    prune_global(normalised, 0.9, normalize="mean")
    assert (plain.fc3.weight == 0).sum() < 50  # huge weights rarely lose in a raw ranking
    assert (normalised.fc3.weight == 0).sum() > 500  # per-layer mean scaling: roughly uniform
    assert model_sparsity(plain) == pytest.approx(model_sparsity(normalised))


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_zeros_survive_50_steps_of_training(optimizer, data_root):
    seed_everything(0)
    model = build_model("lenet300")
    train(model, subset(load_dataset("mnist", "train"), 2000), epochs=1, quiet=True)  # momentum/moments live
    prune_global(model, 0.9)
    zeros = _zeros(model)
    train(model, subset(load_dataset("mnist", "train"), 6400), epochs=1, max_steps=50, quiet=True,
          optimizer=optimizer, lr=0.01 if optimizer == "adam" else 0.05, lr_schedule=None)
    assert all(torch.equal(zeros[n], _zeros(model)[n]) for n in zeros)


def test_own_loop_keeps_zeros_with_the_optimizer_hook():
    model = _model()
    prune_global(model, 0.8)
    zeros = _zeros(model)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    handle = keep_masks_on(opt, model)
    for _ in range(5):
        loss = model(torch.randn(8, 1, 28, 28)).square().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert all(torch.equal(zeros[n], _zeros(model)[n]) for n in zeros)  # right after the step
    handle.remove()


def test_forward_hook_rezeros_weights_a_loop_revived():
    model = _model()
    prune_global(model, 0.5)
    with torch.no_grad():
        model.fc1.weight.add_(1.0)  # e.g. a momentum step nobody masked
    model(torch.zeros(1, 1, 28, 28))
    assert (model.fc1.weight == 0).sum() == (~get_masks(model)["fc1.weight"]).sum()


def test_state_dict_roundtrip_into_a_fresh_model_and_deepcopy():
    model = _model()
    prune_global(model, 0.9)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    fresh = build_model("lenet300")
    fresh.load_state_dict(torch.load(buffer, weights_only=True))  # strict: no extra keys
    assert model_sparsity(fresh) == pytest.approx(0.9)
    apply_masks(fresh, masks_from_zeros(fresh))
    assert all(torch.equal(get_masks(fresh)[n], get_masks(model)[n]) for n in get_masks(model))
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.fc1.weight.add_(1.0)
    enforce_masks(twin)
    assert torch.equal(twin.fc1.weight == 0, model.fc1.weight == 0)
    assert torch.equal(model.fc1.weight_keep, get_masks(model)["fc1.weight"])  # original untouched


def test_make_permanent_leaves_a_plain_model():
    model = _model()
    prune_global(model, 0.6)
    make_permanent(model)
    assert get_masks(model) == {}
    assert all(len(m._forward_pre_hooks) == 0 for m in model.modules())
    assert set(model.state_dict()) == set(build_model("lenet300").state_dict())
    assert model_sparsity(model) == pytest.approx(0.6)


def test_torch_prune_converters_and_plain_state_dict():
    model = _model()
    masks = prune_global(model, 0.7)
    to_torch_prune(model)
    assert hasattr(model.fc1, "weight_orig") and get_masks(model) == {}
    state = model.state_dict()
    assert "fc1.weight_orig" in state
    with pytest.raises(RuntimeError):
        build_model("lenet300").load_state_dict(state)  # the known pitfall
    fresh = build_model("lenet300")
    fresh.load_state_dict(plain_state_dict(state))
    assert model_sparsity(fresh) == pytest.approx(0.7)
    from_torch_prune(model)
    assert not hasattr(model.fc1, "weight_orig")
    assert all(torch.equal(get_masks(model)[n], masks[n]) for n in masks)
    copy.deepcopy(model)  # works again
