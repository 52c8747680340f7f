"""Weight-level criteria (prunekit.criteria): hand-computed values, shapes, errors, model helpers."""
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from prunekit import criteria as C
from prunekit import gradient_statistics as GS
from prunekit.activations import input_feature_norms
from prunekit.models import build_model
from prunekit.pruning import model_sparsity, prune_global, prunable_weights

W = torch.tensor([[1.0, -2.0], [3.0, 0.0]])
G = torch.tensor([[0.5, 0.5], [-1.0, 4.0]])


def tiny_loader(n=8, batch_size=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=batch_size)


def linear_1x2(w=(1.0, 2.0)):
    """y = w·x, no bias: gradients of a squared error are easy to write by hand."""
    model = nn.Sequential(nn.Linear(2, 1, bias=False))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([w]))
    return model


def sum_squared_error(out, y):
    return ((out.squeeze(1) - y) ** 2).sum()


# Two batches of one sample each, for linear_1x2 with w = (1, 2):
#   x=(1, 1), y=0: out = 3, L = 9, dL/dw = 2·(3 - 0)·x = (6, 6)
#   x=(1, 0), y=1: out = 1, L = 0, dL/dw = (0, 0)
HAND_BATCHES = [(torch.tensor([[1.0, 1.0]]), torch.tensor([0.0])),
                (torch.tensor([[1.0, 0.0]]), torch.tensor([1.0]))]


# ----------------------------------------------------------------------------- pure criteria
def test_magnitude_and_l2_hand_computed():
    assert torch.equal(C.magnitude(W), torch.tensor([[1.0, 2.0], [3.0, 0.0]]))
    assert torch.equal(C.magnitude_l2(W), torch.tensor([[1.0, 4.0], [9.0, 0.0]]))


def test_gradient_magnitude_and_taylor_hand_computed():
    assert torch.equal(C.gradient_magnitude(W, G), torch.tensor([[0.5, 0.5], [1.0, 4.0]]))
    # (w·g)² = (1·0.5)², (-2·0.5)², (3·-1)², (0·4)²
    assert torch.equal(C.taylor(W, G), torch.tensor([[0.25, 1.0], [9.0, 0.0]]))


def test_obd_hand_computed():
    h = torch.tensor([[2.0, 1.0], [0.5, 3.0]])
    # ½·h·w² = ½·2·1, ½·1·4, ½·0.5·9, ½·3·0
    assert torch.equal(C.obd(W, h), torch.tensor([[1.0, 2.0], [2.25, 0.0]]))


def test_wanda_linear_and_conv_broadcast():
    assert torch.equal(C.wanda(W, torch.tensor([10.0, 1.0])), torch.tensor([[10.0, 2.0], [30.0, 0.0]]))
    conv_w = -torch.ones(2, 3, 2, 2)
    scores = C.wanda(conv_w, torch.tensor([1.0, 2.0, 3.0]))
    assert scores.shape == (2, 3, 2, 2)
    assert torch.equal(scores[1, :, 0, 1], torch.tensor([1.0, 2.0, 3.0]))


def test_random_scores_seeded_and_independent_of_global_rng():
    w = torch.zeros(3, 4)
    torch.manual_seed(0)
    a = C.random_scores(w, seed=7)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    b = C.random_scores(w, seed=7)
    assert torch.equal(torch.get_rng_state(), state)  # the global generator was not used
    assert torch.equal(a, b)
    assert not torch.equal(a, C.random_scores(w, seed=8))
    assert a.shape == w.shape and (a >= 0).all() and (a < 1).all()


def test_movement_and_accumulation_hand_computed():
    assert torch.equal(C.movement(torch.tensor([1.0, -2.0]), torch.tensor([0.5, 0.5])),
                       torch.tensor([0.5, -1.0]))
    # step 1: w=(1, -1) -> (2, -0.5): w·Δw = (1·1, -1·0.5) = (1, -0.5)
    # step 2: w=(2, -0.5) -> (3, -0.5): w·Δw = (2·1, 0) = (2, 0)
    s = C.accumulate_movement(None, torch.tensor([1.0, -1.0]), torch.tensor([2.0, -0.5]))
    s2 = C.accumulate_movement(s, torch.tensor([2.0, -0.5]), torch.tensor([3.0, -0.5]))
    assert torch.equal(s2, torch.tensor([3.0, -0.5]))
    assert torch.equal(s, torch.tensor([1.0, -0.5]))  # pure: the input scores are not modified


def test_movement_tracker_accumulates_over_steps():
    model = linear_1x2((1.0, -1.0))
    tracker = C.MovementTracker(model)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[2.0, -0.5]]))
    tracker(model, 1)
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, -0.5]]))
    tracker(model, 2)
    assert torch.equal(tracker.scores["0.weight"], torch.tensor([[3.0, -0.5]]))


@pytest.mark.parametrize("fn", [C.taylor, C.gradient_magnitude, C.obd, C.movement])
def test_two_argument_criteria_reject_mismatched_shapes(fn):
    with pytest.raises(ValueError, match=r"shape \(2, 2\)"):
        fn(W, torch.ones(2, 3))


def test_criteria_reject_bad_inputs():
    with pytest.raises(TypeError, match="torch.Tensor"):
        C.magnitude([[1.0, 2.0]])
    with pytest.raises(ValueError, match="input_norm"):
        C.wanda(W, torch.ones(3))
    with pytest.raises(ValueError, match="seed"):
        C.random_scores(W, seed=-1)


# ----------------------------------------------------------------------------- gradients and Fisher
def test_gradients_and_fisher_hand_computed():
    model = linear_1x2()
    grads = GS.gradients(model, HAND_BATCHES, loss_fn=sum_squared_error)
    fisher = GS.fisher_diagonal(model, HAND_BATCHES, loss_fn=sum_squared_error)
    assert list(grads) == ["0.weight"]
    assert torch.allclose(grads["0.weight"], torch.tensor([[3.0, 3.0]]))     # mean of (6,6), (0,0)
    assert torch.allclose(fisher["0.weight"], torch.tensor([[18.0, 18.0]]))  # mean of (36,36), (0,0)
    first = GS.fisher_diagonal(model, HAND_BATCHES, n_batches=1, loss_fn=sum_squared_error)
    assert torch.allclose(first["0.weight"], torch.tensor([[36.0, 36.0]]))
    # Taylor per batch, w = (1, 2): mean of (1·6, 2·6)² and (0, 0) = (18, 72); the OLD estimator
    # |w·mean g| would give (3, 6).
    taylor = C.taylor_per_batch(model, HAND_BATCHES, loss_fn=sum_squared_error)
    assert torch.allclose(taylor["0.weight"], torch.tensor([[18.0, 72.0]]))
    rms = GS.gradient_rms(model, HAND_BATCHES, loss_fn=sum_squared_error)
    assert torch.allclose(rms["0.weight"], torch.tensor([[18.0, 18.0]]).sqrt())


def test_per_batch_signs_do_not_cancel():
    # Two batches whose gradients are opposite: the mean gradient is 0, the per-batch scores are not.
    model = linear_1x2()
    batches = [(torch.tensor([[1.0, 1.0]]), torch.tensor([4.0])),    # out 3: dL/dw = 2·(3-4)·x = (-2, -2)
               (torch.tensor([[1.0, 1.0]]), torch.tensor([2.0]))]    # out 3: dL/dw = (2, 2)
    assert torch.allclose(GS.gradients(model, batches, loss_fn=sum_squared_error)["0.weight"], torch.zeros(1, 2))
    taylor = C.taylor_per_batch(model, batches, loss_fn=sum_squared_error)["0.weight"]
    assert torch.allclose(taylor, torch.tensor([[4.0, 16.0]]))       # (1·2)², (2·2)²


def _two_layer_net_and_batches() -> tuple[nn.Module, list]:
    """A seeded 3-4-2 network and three batches of five samples, for the manual-loop comparisons."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    return model, [(torch.randn(5, 3), torch.randint(0, 2, (5,))) for _ in range(3)]


def test_fisher_matches_manual_loop_on_two_layer_net():
    model, batches = _two_layer_net_and_batches()
    expected = {"0.weight": torch.zeros(4, 3), "2.weight": torch.zeros(2, 4)}
    for x, y in batches:
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        for name in expected:
            # squared batch gradient times the batch size: an estimate of the per-sample Fisher
            expected[name] += len(y) * model.get_parameter(name).grad ** 2 / len(batches)
    model.zero_grad(set_to_none=True)
    fisher = GS.fisher_diagonal(model, batches)
    assert list(fisher) == ["0.weight", "2.weight"]
    for name in expected:
        assert torch.allclose(fisher[name], expected[name], atol=1e-7)


def test_gradients_leave_grad_mode_and_batchnorm_untouched():
    model = build_model("lenet5")
    model.train()
    model.fc2.weight.grad = torch.full_like(model.fc2.weight, 7.0)
    GS.gradients(model, tiny_loader(4, 2))
    assert model.training and all(m.training for m in model.modules())
    assert model.conv1.weight.grad is None
    assert (model.fc2.weight.grad == 7.0).all()
    vgg = build_model("vgg")
    before = vgg.bn1.running_mean.clone()
    x = torch.randn(2, 3, 32, 32)
    GS.gradients(vgg, [(x, torch.tensor([0, 1]))])
    assert torch.equal(vgg.bn1.running_mean, before)


def test_gradients_need_labels_and_positive_n_batches():
    model = linear_1x2()
    with pytest.raises(ValueError, match=r"\(x, y\)"):
        GS.gradients(model, [torch.ones(1, 2)])
    with pytest.raises(ValueError, match="n_batches"):
        GS.gradients(model, HAND_BATCHES, n_batches=0, loss_fn=sum_squared_error)
    with pytest.raises(ValueError, match="no batches"):
        GS.gradients(model, [], loss_fn=sum_squared_error)


# ----------------------------------------------------------------------------- input norms (Wanda)
def test_input_feature_norms_hand_computed():
    model = nn.Sequential()
    model.add_module("fc", nn.Linear(2, 3))
    # feature 0: sqrt(3² + 4²) = 5 over two batches; feature 1: sqrt(0² + 1²) = 1
    batches = [torch.tensor([[3.0, 0.0]]), torch.tensor([[4.0, 1.0]])]
    assert torch.allclose(input_feature_norms(model, "fc", batches), torch.tensor([5.0, 1.0]))
    assert torch.allclose(input_feature_norms(model, "fc", batches, n_batches=1), torch.tensor([3.0, 0.0]))
    with pytest.raises(TypeError, match="Linear or Conv2d"):
        input_feature_norms(build_model("lenet300"), "relu1", batches)


# ----------------------------------------------------------------------------- weight_scores
def test_weight_scores_dispatch_matches_pure_functions():
    model = build_model("lenet300")
    loader = tiny_loader()
    weights = prunable_weights(model)
    fisher = GS.fisher_diagonal(model, loader)
    taylor = C.taylor_per_batch(model, loader)
    rms = GS.gradient_rms(model, loader)
    expected = {"magnitude": lambda n, w: C.magnitude(w), "l2": lambda n, w: C.magnitude_l2(w),
                "gradient": lambda n, w: rms[n], "taylor": lambda n, w: taylor[n],
                "obd": lambda n, w: C.obd(w, fisher[n])}
    for criterion, fn in expected.items():
        scores = C.weight_scores(model, criterion, data=loader)
        assert list(scores) == list(weights)
        for n, w in weights.items():
            assert torch.allclose(scores[n], fn(n, w)), (criterion, n)
    wanda = C.weight_scores(model, "wanda", data=loader)
    norms = input_feature_norms(model, "fc2", loader)
    assert torch.allclose(wanda["fc2.weight"], C.wanda(model.fc2.weight, norms))


def test_weight_scores_random_differs_per_layer_and_respects_exclude():
    model = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3), nn.Linear(3, 3))
    scores = C.weight_scores(model, "random", seed=1, exclude=["2"])
    assert list(scores) == ["0.weight", "1.weight"]
    assert not torch.equal(scores["0.weight"], scores["1.weight"])
    assert torch.equal(scores["0.weight"], C.weight_scores(model, "random", seed=1)["0.weight"])


def test_weight_scores_errors_name_the_fix():
    model = build_model("lenet300")
    with pytest.raises(ValueError, match="magnitude, l2, random, gradient, taylor, obd, wanda"):
        C.weight_scores(model, "snip")
    with pytest.raises(ValueError, match="needs data="):
        C.weight_scores(model, "taylor")


def test_prune_global_with_taylor_scores():
    torch.manual_seed(0)
    model = build_model("lenet300")
    masks = prune_global(model, 0.5, scores=C.weight_scores(model, "taylor", data=tiny_loader()))
    assert model_sparsity(model) == pytest.approx(0.5, abs=1e-6)
    assert set(masks) == {"fc1.weight", "fc2.weight", "fc3.weight"}


def test_taylor_per_batch_matches_manual_loop_on_two_layer_net():
    model, batches = _two_layer_net_and_batches()
    expected = {"0.weight": torch.zeros(4, 3), "2.weight": torch.zeros(2, 4)}
    for x, y in batches:
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        for name in expected:
            w = model.get_parameter(name)
            expected[name] += (w * w.grad).detach() ** 2 / len(batches)
    model.zero_grad(set_to_none=True)
    scores = C.weight_scores(model, "taylor", batches)
    for name in expected:
        assert torch.allclose(scores[name], expected[name], atol=1e-8)


# ----------------------------------------------------------------------------- token models
class TinyGPT(nn.Module):
    """Embedding, one causal self-attention block and an MLP made of nn.Linear, as in nanoGPT."""

    def __init__(self, vocab=11, dim=8, unused_layer=False):
        super().__init__()
        self.embed = nn.Embedding(vocab, dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
        self.lm_head = nn.Linear(dim, vocab, bias=False)
        if unused_layer:
            self.spare = nn.Linear(dim, dim)

    def forward(self, idx):
        x = self.embed(idx)
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        x = x + self.proj(nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True))
        x = x + self.mlp(x)
        return self.lm_head(x)


def token_batches(n_batches=2, batch=3, length=5, vocab=11):
    g = torch.Generator().manual_seed(0)
    return [(torch.randint(0, vocab, (batch, length), generator=g),
             torch.randint(0, vocab, (batch, length), generator=g)) for _ in range(n_batches)]


def test_default_loss_flattens_token_logits():
    logits, y = torch.randn(2, 3, 5), torch.randint(0, 5, (2, 3))
    assert torch.allclose(GS.default_loss(logits, y), nn.functional.cross_entropy(logits.reshape(6, 5), y.reshape(6)))
    assert torch.allclose(GS.default_loss(logits[0], y[0]), nn.functional.cross_entropy(logits[0], y[0]))


def test_wanda_on_a_transformer_uses_every_token_of_every_linear():
    torch.manual_seed(0)
    model, batches = TinyGPT(), token_batches()
    scores = C.weight_scores(model, "wanda", batches, exclude=["lm_head"])
    assert list(scores) == ["qkv.weight", "proj.weight", "mlp.0.weight", "mlp.2.weight"]
    # By hand for the MLP's second layer: its inputs are GELU outputs, all (B, T) positions.
    inputs = []
    handle = model.mlp[1].register_forward_hook(lambda m, i, o: inputs.append(o.detach().reshape(-1, o.shape[-1])))
    with torch.no_grad():
        for x, _ in batches:
            model(x)
    handle.remove()
    norms = torch.cat(inputs).norm(dim=0)
    assert torch.allclose(scores["mlp.2.weight"], model.mlp[2].weight.detach().abs() * norms, atol=1e-6)
    # Gradient criteria work with (B, T) targets and the default loss.
    taylor = C.weight_scores(model, "taylor", batches)
    assert taylor["lm_head.weight"].shape == (11, 8) and bool((taylor["qkv.weight"] > 0).any())


def test_wanda_names_layers_that_never_run():
    with pytest.raises(ValueError, match=r"never called.*exclude"):
        C.weight_scores(TinyGPT(unused_layer=True), "wanda", token_batches())
    assert "spare.weight" not in C.weight_scores(TinyGPT(unused_layer=True), "wanda", token_batches(),
                                                 exclude=["spare"])
