"""Scores -> masks: exact counts (ties included), s = 0 and 1, thresholds, N:M, errors."""
import pytest
import torch

from prunekit.masks import (check_sparsity, expand_mask, nm_mask, num_to_prune, sparsity_of, threshold_mask,
                            topk_mask)


@pytest.mark.parametrize("n", [1, 2, 7, 10, 101, 1000])
@pytest.mark.parametrize("s", [0.0, 0.05, 0.25, 1 / 3, 0.5, 0.9, 0.99, 1.0])
def test_topk_prunes_exactly_round_s_n(n, s):
    scores = torch.randn(n, generator=torch.Generator().manual_seed(n))
    mask = topk_mask(scores, s)
    assert mask.dtype == torch.bool and mask.shape == scores.shape
    assert (~mask).sum().item() == round(s * n)
    if 0 < (~mask).sum() < n:  # everything pruned scores below everything kept
        assert scores[~mask].max() <= scores[mask].min()


def test_ties_hit_the_target_and_break_by_index():
    scores = torch.tensor([[0.5, 0.5, 0.5], [0.5, 0.5, 0.5]])
    mask = topk_mask(scores, 0.5)
    assert mask.tolist() == [[False, False, False], [True, True, True]]
    # the classic bug: a threshold test keeps every tie and misses the target
    kth = scores.flatten().kthvalue(3).values
    assert (scores < kth).sum().item() == 0 != 3
    weights = torch.tensor([0.1, 0.2, 0.2, 0.2, 0.9])
    assert topk_mask(weights, 0.4).tolist() == [False, False, True, True, True]


def test_s0_and_s1_and_rounding_rule():
    w = torch.randn(3, 4)
    assert topk_mask(w, 0.0).all() and not topk_mask(w, 1.0).any()
    assert num_to_prune(10, 0.25) == 2 and num_to_prune(10, 0.35) == 4  # round half to even / nearest
    assert num_to_prune(3, 0.5) == 2 and num_to_prune(5, 0.5) == 2


@pytest.mark.parametrize("bad", [1.3, -0.1, float("nan")])
def test_sparsity_out_of_range(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        topk_mask(torch.ones(4), bad)


def test_bad_types_and_empty_tensors():
    with pytest.raises(TypeError):
        check_sparsity("0.5")
    with pytest.raises(TypeError):
        check_sparsity(True)
    with pytest.raises(ValueError, match="empty"):
        topk_mask(torch.ones(0), 0.5)
    with pytest.raises(TypeError):
        topk_mask([1.0, 2.0], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        topk_mask(torch.tensor([1.0, float("nan")]), 0.5)


def test_threshold_mask_is_strict():
    scores = torch.tensor([0.1, 0.3, 0.3, 0.7])
    assert threshold_mask(scores, 0.3).tolist() == [False, False, False, True]


@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (4, 8), (0, 4), (4, 4)])
def test_nm_pattern(n, m):
    w = torch.randn(16, 32, generator=torch.Generator().manual_seed(0))
    mask = nm_mask(w.abs(), n, m)
    groups = mask.reshape(16, -1, m)
    assert (groups.sum(-1) == n).all()
    kept, pruned = w.abs().reshape(16, -1, m), ~groups
    # in every group, each kept entry is at least as large as each pruned one
    low_kept = torch.where(groups, kept, torch.full_like(kept, float("inf"))).min(-1).values
    high_pruned = torch.where(pruned, kept, torch.full_like(kept, -1.0)).max(-1).values
    assert (low_kept >= high_pruned).all()


def test_nm_conv_along_input_channels_and_errors():
    w = torch.randn(8, 16, 3, 3)
    mask = nm_mask(w.abs(), 2, 4, dim=1)
    assert mask.shape == w.shape
    assert (mask.movedim(1, -1).reshape(-1, 4).sum(-1) == 2).all()
    with pytest.raises(ValueError, match="N <= M"):
        nm_mask(w.abs(), 5, 4)
    with pytest.raises(ValueError, match="multiple of M"):
        nm_mask(torch.ones(3, 6), 2, 4)


def test_expand_mask_and_sparsity_of():
    unit = torch.tensor([True, False, True])
    full = expand_mask(unit, (3, 2, 5, 5))
    assert full.shape == (3, 2, 5, 5) and full[1].sum() == 0 and full[0].all()
    assert expand_mask(unit, (4, 3), dim=1)[:, 1].sum() == 0
    with pytest.raises(ValueError):
        expand_mask(unit, (4, 4))
    assert sparsity_of(full) == pytest.approx(1 / 3)
    assert sparsity_of(torch.tensor([0.0, 1.0, 0.0, 2.0])) == 0.5
