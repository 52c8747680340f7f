"""Tiny Shakespeare, CharGPT, perplexity, SparseGPT, and head / MLP-neuron removal (Lab 7's library)."""
import math

import pytest
import torch
from torch import nn

from prunekit.chargpt import CausalSelfAttention, CharGPT
from prunekit.data import CharDataset, load_dataset
from prunekit.heads import (head_importance, heads_to_keep, neuron_importance, prune_heads, prune_mlp_neurons,
                            remove_heads, transformer_macs)
from prunekit.language import LMRecipe, learning_rate, mean_loss, perplexity, train_language_model
from prunekit.masks import topk_mask
from prunekit.models import build_model
from prunekit.pruning import model_sparsity, prunable_weights
from prunekit.sparsegpt import layer_hessian, sparsegpt_layer, sparsegpt_prune


def tiny_gpt(seed=0, **kwargs):
    torch.manual_seed(seed)
    config = dict(vocab_size=11, block_size=16, n_layer=2, n_head=4, d_model=32, dropout=0.0)
    return CharGPT(**{**config, **kwargs}).eval()


def toy_text(n=4000, vocab=11, seed=0):
    """A learnable sequence: mostly "next id = previous id + 1 (mod vocab)", with some noise."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(n, dtype=torch.long)
    for i in range(1, n):
        ids[i] = ((ids[i - 1] + 1) % vocab if torch.rand((), generator=g) < 0.9
                  else torch.randint(vocab, (), generator=g))
    return CharDataset(ids, "".join(chr(97 + i) for i in range(vocab)), block_size=16)


def calibration(dataset, n=8):
    return [(torch.stack([dataset[i][0] for i in range(n)]), torch.stack([dataset[i][1] for i in range(n)]))]


# ----------------------------------------------------------------------------- data
def test_tiny_shakespeare_splits_like_nanogpt(data_root):
    train, val = load_dataset("tinyshakespeare", "train"), load_dataset("tinyshakespeare", "val")
    assert (len(train.ids), len(val.ids)) == (1_003_854, 111_540)   # 90 % / 10 % of 1,115,394 characters
    assert len(train.vocab) == 65 and train.vocab == val.vocab
    x, y = val[3]
    assert x.dtype == y.dtype == torch.long and x.shape == y.shape == (128,)
    assert torch.equal(x[1:], y[:-1])                              # y is x shifted by one character
    assert train.decode(train[0][0][:14]) == "First Citizen:"
    assert torch.equal(train.encode("First"), train[0][0][:5])
    assert len(load_dataset("tinyshakespeare", "val", block_size=64)) == (111_540 - 1) // 64
    with pytest.raises(ValueError, match="'train' or 'val'"):
        load_dataset("tinyshakespeare", "test")


def test_random_batch_is_repeatable_and_shifted():
    data = toy_text()
    x1, y1 = data.random_batch(4, torch.Generator().manual_seed(1))
    x2, _ = data.random_batch(4, torch.Generator().manual_seed(1))
    assert torch.equal(x1, x2) and x1.shape == (4, 16) and torch.equal(x1[:, 1:], y1[:, :-1])
    with pytest.raises(ValueError, match="vocabulary"):
        data.encode("Z")


# ----------------------------------------------------------------------------- model
def test_chargpt_shape_size_and_causality():
    model = build_model("chargpt").eval()
    assert 1_000_000 <= sum(p.numel() for p in model.parameters()) <= 4_000_000
    assert isinstance(model.lm_head, nn.Linear) and model.lm_head.weight is not model.tok_emb.weight
    idx = torch.randint(65, (2, 20))
    logits = model(idx)
    assert logits.shape == (2, 20, 65)
    changed = idx.clone()
    changed[:, 10] = (changed[:, 10] + 1) % 65                   # the future must not leak into the past
    assert torch.allclose(model(changed)[:, :10], logits[:, :10], atol=1e-6)
    assert not torch.allclose(model(changed)[:, 10:], logits[:, 10:])
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 129, dtype=torch.long))


def test_generate_is_repeatable_with_a_seeded_generator():
    model = tiny_gpt()
    start = torch.zeros(1, 1, dtype=torch.long)
    a = model.generate(start, 10, generator=torch.Generator().manual_seed(0))
    b = model.generate(start, 10, generator=torch.Generator().manual_seed(0))
    assert a.shape == (1, 11) and torch.equal(a, b)


# ----------------------------------------------------------------------------- perplexity and training
def test_perplexity_of_a_uniform_model_is_the_vocabulary_size():
    model = tiny_gpt()
    with torch.no_grad():
        model.lm_head.weight.zero_()
        model.lm_head.bias.zero_()
    assert perplexity(model, toy_text()) == pytest.approx(11, rel=1e-5)


def test_perplexity_weighs_every_character_once():
    """The mean is over characters, not over batches: a short last batch must not count extra."""
    model, data = tiny_gpt(), toy_text(n=16 * 5 + 1)               # 5 blocks: batches of 2, 2, 1
    per_block = [mean_loss(model, [(x[None], y[None])]) for x, y in (data[i] for i in range(5))]
    assert mean_loss(model, data, batch_size=2) == pytest.approx(sum(per_block) / 5, rel=1e-5)
    assert perplexity(model, data, n_batches=1, batch_size=2) == pytest.approx(
        math.exp(sum(per_block[:2]) / 2), rel=1e-5)


def test_training_lowers_the_loss_and_records_timing():
    data = toy_text()
    model = tiny_gpt()
    before = mean_loss(model, data)
    recipe = LMRecipe(steps=60, batch_size=16, block_size=16, lr=3e-3, warmup_steps=5, eval_every=30,
                      eval_batches=2, precision="fp32")
    record = train_language_model(model, data, data, recipe, device="cpu", quiet=True)
    assert record["val_loss"] < before - 0.5
    assert record["device"] == "cpu" and record["ms_per_step"] > 0 and len(record["history"]) == 2
    assert learning_rate(0, recipe) == pytest.approx(recipe.lr / 5)
    assert learning_rate(recipe.steps, recipe) == pytest.approx(recipe.min_lr)


# ----------------------------------------------------------------------------- SparseGPT
def test_sparsegpt_layer_beats_magnitude_on_its_reconstruction_error():
    torch.manual_seed(0)
    x = (torch.randn(3000, 128) + 0.3 * torch.randn(3000, 1)) * torch.randn(128).exp()  # uneven features
    w = torch.randn(32, 128)
    new, keep = sparsegpt_layer(w, x.T @ x / len(x), 0.5)
    assert keep.float().mean().item() == 0.5 and torch.equal(new == 0, ~keep)
    error = ((x @ (w - new).T) ** 2).mean()
    magnitude = ((x @ (w - w * topk_mask(w.abs(), 0.5)).T) ** 2).mean()
    assert error < 0.5 * magnitude


def test_sparsegpt_n_m_keeps_n_of_every_m():
    torch.manual_seed(0)
    x = torch.randn(500, 64)
    new, keep = sparsegpt_layer(torch.randn(8, 64), x.T @ x, n_m=(2, 4))
    assert (keep.view(8, 16, 4).sum(-1) == 2).all() and torch.equal(new == 0, ~keep)


def test_sparsegpt_prune_prunes_each_linear_and_leaves_excluded_ones():
    data = toy_text()
    model = tiny_gpt()
    head = model.lm_head.weight.clone()
    masks = sparsegpt_prune(model, 0.5, calibration(data), exclude=["lm_head"])
    assert set(masks) == set(prunable_weights(model, exclude=["lm_head"]))
    assert model_sparsity(model, exclude=["lm_head"]) == pytest.approx(0.5)
    assert torch.equal(model.lm_head.weight, head)


def test_layer_hessian_is_the_mean_outer_product_of_the_inputs():
    model = tiny_gpt()
    x = torch.randint(11, (2, 16))
    seen = []
    handle = model.blocks[1].mlp.fc2.register_forward_pre_hook(lambda m, i: seen.append(i[0].reshape(-1, 128)))
    model(x)
    handle.remove()
    expected = (seen[0].double().T @ seen[0].double()) / 32
    assert torch.allclose(layer_hessian(model, model.blocks[1].mlp.fc2, [x]), expected, atol=1e-8)


# ----------------------------------------------------------------------------- heads and neurons
def _gated(model, name, keep):
    """Outputs with the other heads of one layer silenced by zero gates (what removal must reproduce)."""
    attn = model.get_submodule(name)
    gate = torch.zeros(attn.n_head)
    gate[list(keep)] = 1
    handle = attn.out.register_forward_pre_hook(lambda m, i: (i[0] * gate.repeat_interleave(attn.head_dim),))
    return handle


def test_head_removal_preserves_the_kept_heads_exactly():
    model = tiny_gpt()
    idx = torch.randint(11, (3, 16))
    handle = _gated(model, "blocks.0.attn", [1, 3])
    expected = model(idx)
    handle.remove()
    prune_heads(model, {"blocks.0.attn": [3, 1]})
    assert model.blocks[0].attn.n_head == 2 and model.blocks[0].attn.query.weight.shape == (16, 32)
    assert model.blocks[0].attn.out.weight.shape == (32, 16)
    assert torch.allclose(model(idx), expected, atol=1e-5)
    with pytest.raises(ValueError, match="keep must name"):
        remove_heads(model.blocks[1].attn, [])


def test_head_importance_is_the_gate_gradient():
    data = toy_text()
    model = tiny_gpt()
    batches = calibration(data)
    scores = head_importance(model, batches)
    assert list(scores) == ["blocks.0.attn", "blocks.1.attn"] and scores["blocks.0.attn"].shape == (4,)
    # Finite differences on one gate reproduce |dL/dgate|.
    x, y = batches[0]
    eps = 1e-3

    def loss_with_gate(value):
        attn = model.blocks[1].attn
        gate = torch.ones(4)
        gate[2] = value
        handle = attn.out.register_forward_pre_hook(lambda m, i: (i[0] * gate.repeat_interleave(attn.head_dim),))
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
        handle.remove()
        return loss
    numeric = abs(loss_with_gate(1 + eps) - loss_with_gate(1 - eps)) / (2 * eps)
    assert scores["blocks.1.attn"][2].item() == pytest.approx(numeric, rel=1e-2, abs=1e-5)
    assert all(p.grad is None for p in model.parameters())


def test_heads_to_keep_removes_the_lowest_and_keeps_one_per_layer():
    importance = {"a": torch.tensor([3.0, 0.1, 2.0]), "b": torch.tensor([0.01, 5.0])}
    assert heads_to_keep(importance, 2) == {"a": [0, 2], "b": [1]}
    assert heads_to_keep(importance, 3) == {"a": [0], "b": [1]}
    with pytest.raises(ValueError, match="keep one per layer"):
        heads_to_keep(importance, 4)


def test_mlp_neuron_removal_and_macs():
    model = tiny_gpt()
    data = toy_text()
    scores = neuron_importance(model, calibration(data))
    assert scores["blocks.0.mlp"].shape == (128,) and (scores["blocks.0.mlp"] >= 0).all()
    idx = torch.randint(11, (2, 16))
    with torch.no_grad():
        model.blocks[0].mlp.fc2.weight[:, 64:] = 0         # units 64.. contribute nothing
    expected = model(idx)
    dense_macs = transformer_macs(model, 16)
    prune_mlp_neurons(model, {"blocks.0.mlp": list(range(64))})
    assert model.blocks[0].mlp.fc1.out_features == 64
    assert torch.allclose(model(idx), expected, atol=1e-5)
    assert dense_macs - transformer_macs(model, 16) == 2 * 64 * 32


# ----------------------------------------------------------------------------- the shipped checkpoint
def test_shipped_chargpt_meets_its_target_and_its_record(data_root):
    from prunekit.zoo import checkpoint_info, load_pretrained
    from prunekit.zoo_language import RECIPE, TARGET_VAL_LOSS

    info = checkpoint_info("chargpt")
    assert info["val_loss"] <= TARGET_VAL_LOSS == 1.60
    assert info["recipe"]["steps"] == RECIPE.steps and info["parameters"] == 3_225_665
    for key in ("device", "ms_per_step", "train_seconds", "precision", "history"):
        assert key in info
    model = load_pretrained("chargpt")
    assert not model.training
    measured = mean_loss(model, load_dataset("tinyshakespeare", "val"), batch_size=64)
    assert abs(measured - info["val_loss"]) < 2e-4          # what is shipped is what was recorded


def test_a_modified_text_file_warns_once_per_process(tmp_path):
    import warnings

    folder = tmp_path / "tinyshakespeare"
    folder.mkdir()
    (folder / "input.txt").write_text("First Citizen:\nBefore we proceed any further, hear me speak.\n" * 50)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for split in ("train", "val", "train"):
            load_dataset("tinyshakespeare", split, block_size=16, root=tmp_path)
    messages = [str(w.message) for w in caught if "SHA-256" in str(w.message)]
    assert len(messages) == 1, messages
