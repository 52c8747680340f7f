"""The chapters' exercise checks (prunekit.checks.chapters) accept the instructor solutions and reject
known-wrong answers (>= 3 each); a stub never raises, even in strict mode, but a wrong answer does.

The solutions are read from the ```python blocks of instructor/chapter_exercises/*.md, so the answers the
instructors hand out are the ones tested here.
"""
from __future__ import annotations

import pathlib
import re

import pytest
import torch

from checks_helpers import cases, rejected
from prunekit.checks import chapters

SOLUTIONS = pathlib.Path(__file__).resolve().parents[1] / "instructor" / "chapter_exercises"
EXERCISES = sorted(name[len("check_"):] for name in chapters.__all__)


def _solutions() -> dict:
    namespace: dict = {}
    for path in sorted(SOLUTIONS.glob("*.md")):
        for block in re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S):
            exec(compile(block, str(path), "exec"), namespace)  # noqa: S102 - our own instructor files
    return namespace


def _check(name):
    return getattr(chapters, f"check_{name}")


@pytest.mark.parametrize("name", EXERCISES)
def test_instructor_solution_passes(name, capsys):
    solution = _solutions().get(name)
    assert callable(solution), f"no ```python block defining {name} in {SOLUTIONS}"
    assert _check(name)(solution, strict=True)
    assert capsys.readouterr().out.startswith("✔")


@pytest.mark.parametrize("name", EXERCISES)
def test_stub_is_reported_not_raised_even_in_strict_mode(name, monkeypatch, capsys):
    def stub(*args):
        raise NotImplementedError("your code here")
    monkeypatch.setenv("PRUNEKIT_STRICT", "1")
    result = _check(name)(stub)
    assert result.status == "not_implemented" and not result
    assert capsys.readouterr().out.strip() == f"… {name}: not implemented yet"


@pytest.mark.parametrize("name", EXERCISES)
def test_wrong_answer_raises_in_strict_mode(name, monkeypatch, capsys):
    monkeypatch.setenv("PRUNEKIT_STRICT", "1")
    with pytest.raises(AssertionError):
        _check(name)(lambda *args: None)


@pytest.mark.parametrize("name", EXERCISES)
def test_global_rng_is_left_alone(name, capsys):
    torch.manual_seed(123)
    before = torch.random.get_rng_state()
    _check(name)(_solutions()[name], strict=False)
    assert torch.equal(before, torch.random.get_rng_state())


# ============================================================================ wrong implementations
# --- chapter 00: storage_bytes
def sb_nnz_dense(weight, fmt, value_bytes=4, index_bytes=4):     # "dense" counted like a sparse format
    nnz = int((weight != 0).sum())
    if fmt == "dense":
        return nnz * value_bytes
    if fmt == "coo":
        return nnz * (value_bytes + 2 * index_bytes)
    return nnz * (value_bytes + index_bytes) + (weight.shape[0] + 1) * index_bytes


def sb_coo_one_index(weight, fmt, value_bytes=4, index_bytes=4):  # a flat index instead of (row, col)
    nnz = int((weight != 0).sum())
    if fmt == "dense":
        return weight.numel() * value_bytes
    if fmt == "coo":
        return nnz * (value_bytes + index_bytes)
    return nnz * (value_bytes + index_bytes) + (weight.shape[0] + 1) * index_bytes


def sb_csr_rows(weight, fmt, value_bytes=4, index_bytes=4):       # row pointer of `rows` entries
    nnz = int((weight != 0).sum())
    if fmt == "dense":
        return weight.numel() * value_bytes
    if fmt == "coo":
        return nnz * (value_bytes + 2 * index_bytes)
    return nnz * (value_bytes + index_bytes) + weight.shape[0] * index_bytes


def sb_fixed_four(weight, fmt, value_bytes=4, index_bytes=4):     # ignores the byte arguments
    nnz = int((weight != 0).sum())
    return {"dense": weight.numel() * 4, "coo": nnz * 12, "csr": nnz * 8 + (weight.shape[0] + 1) * 4}[fmt]


def sb_tensor(weight, fmt, value_bytes=4, index_bytes=4):         # returns a 0-d tensor
    nnz = (weight != 0).sum()
    return {"dense": torch.tensor(weight.numel() * value_bytes), "coo": nnz * (value_bytes + 2 * index_bytes),
            "csr": nnz * (value_bytes + index_bytes) + (weight.shape[0] + 1) * index_bytes}[fmt]


# --- chapter 01: taylor_per_batch
def tp_mean_gradient_first(weight, batch_grads):                  # the bug issue 24 found in the library
    return (weight * torch.stack(batch_grads).mean(0)).abs()


def tp_abs(weight, batch_grads):
    return torch.stack([(weight * g).abs() for g in batch_grads]).mean(0)


def tp_sum(weight, batch_grads):
    return sum((weight * g) ** 2 for g in batch_grads)


def tp_no_weight(weight, batch_grads):
    return torch.stack([g ** 2 for g in batch_grads]).mean(0)


def tp_last_batch(weight, batch_grads):
    return (weight * batch_grads[-1]) ** 2


# --- chapter 01: per_row_mask
def pr_global(scores, sparsity):                                   # one ranking over the whole tensor
    flat = scores.flatten()
    k = round(sparsity * flat.numel())
    keep = torch.ones_like(flat, dtype=torch.bool)
    keep[torch.argsort(flat, stable=True)[:k]] = False
    return keep.view_as(scores)


def pr_int(scores, sparsity):                                      # int() truncates
    rows = scores.reshape(scores.shape[0], -1)
    k = int(sparsity * rows.shape[1])
    keep = torch.ones_like(rows, dtype=torch.bool)
    keep.scatter_(1, torch.argsort(rows, dim=1, stable=True)[:, :k], False)
    return keep.view_as(scores)


def pr_prune_highest(scores, sparsity):
    rows = scores.reshape(scores.shape[0], -1)
    k = round(sparsity * rows.shape[1])
    keep = torch.ones_like(rows, dtype=torch.bool)
    keep.scatter_(1, torch.argsort(rows, dim=1, descending=True, stable=True)[:, :k], False)
    return keep.view_as(scores)


def pr_columns(scores, sparsity):                                  # compares within columns (dim 1)
    cols = scores.reshape(scores.shape[0], -1).T
    k = round(sparsity * cols.shape[1])
    keep = torch.ones_like(cols, dtype=torch.bool)
    keep.scatter_(1, torch.argsort(cols, dim=1, stable=True)[:, :k], False)
    return keep.T.reshape(scores.shape)


def pr_threshold(scores, sparsity):                                # per-row quantile: ties keep or drop too many
    rows = scores.reshape(scores.shape[0], -1)
    k = round(sparsity * rows.shape[1])
    if k == 0:
        return torch.ones_like(scores, dtype=torch.bool)
    cut = rows.sort(dim=1).values[:, k - 1:k]
    return (rows > cut).view_as(scores)


# --- chapter 02: proximal_l1_step
def px_subgradient(weight, grad, lr, lam):
    return weight - lr * (grad + lam * torch.sign(weight))


def px_threshold_lam(weight, grad, lr, lam):
    z = weight - lr * grad
    return torch.sign(z) * torch.clamp(z.abs() - lam, min=0)


def px_threshold_first(weight, grad, lr, lam):
    return torch.sign(weight) * torch.clamp(weight.abs() - lr * lam, min=0) - lr * grad


def px_hard_threshold(weight, grad, lr, lam):        # zeros the small entries but does not shrink the rest
    z = weight - lr * grad
    return torch.where(z.abs() > lr * lam, z, torch.zeros_like(z))


def px_in_place(weight, grad, lr, lam):
    weight -= lr * grad
    weight.copy_(torch.sign(weight) * torch.clamp(weight.abs() - lr * lam, min=0))
    return weight


# --- chapter 02: obs_prune_one
def obs_by_magnitude(weight, hessian_inv):
    d = torch.diagonal(hessian_inv)
    q = int(torch.argmin(torch.where(weight != 0, weight.abs(), torch.full_like(weight, float("inf")))))
    new = weight - (weight[q] / d[q]) * hessian_inv[:, q]
    new[q] = 0.0
    return q, new


def obs_times_diag(weight, hessian_inv):               # w²·[H⁻¹]_qq / 2
    d = torch.diagonal(hessian_inv)
    q = int(torch.argmin(torch.where(weight != 0, weight ** 2 * d / 2, torch.full_like(weight, float("inf")))))
    new = weight - (weight[q] / d[q]) * hessian_inv[:, q]
    new[q] = 0.0
    return q, new


def obs_no_update(weight, hessian_inv):                # OBD: chooses like OBS but moves nothing else
    d = torch.diagonal(hessian_inv)
    q = int(torch.argmin(torch.where(weight != 0, weight ** 2 / (2 * d), torch.full_like(weight, float("inf")))))
    new = weight.clone()
    new[q] = 0.0
    return q, new


def obs_plus(weight, hessian_inv):                     # adds the update
    d = torch.diagonal(hessian_inv)
    q = int(torch.argmin(torch.where(weight != 0, weight ** 2 / (2 * d), torch.full_like(weight, float("inf")))))
    new = weight + (weight[q] / d[q]) * hessian_inv[:, q]
    new[q] = 0.0
    return q, new


def obs_zeros_allowed(weight, hessian_inv):            # may pick a weight that is already 0
    d = torch.diagonal(hessian_inv)
    q = int(torch.argmin(weight ** 2 / (2 * d)))
    new = weight - (weight[q] / d[q]) * hessian_inv[:, q]
    new[q] = 0.0
    return q, new


# --- chapter 03: params_after_channel_removal
def _kernel(shape):
    out = 1
    for k in shape[2:]:
        out *= k
    return out


def pc_own_rows_only(shapes, keep, bias=True):         # forgets that the next layer loses inputs
    total = 0
    for i, s in enumerate(shapes):
        out = keep[i] if i < len(keep) else s[0]
        total += out * s[1] * _kernel(s) + (out if bias else 0)
    return total


def pc_no_bias(shapes, keep, bias=True):
    total, ins = 0, shapes[0][1]
    for i, s in enumerate(shapes):
        out = keep[i] if i < len(keep) else s[0]
        total += out * ins * _kernel(s)
        ins = out
    return total


def pc_no_kernel(shapes, keep, bias=True):
    total, ins = 0, shapes[0][1]
    for i, s in enumerate(shapes):
        out = keep[i] if i < len(keep) else s[0]
        total += out * ins + (out if bias else 0)
        ins = out
    return total


def pc_keep_as_removed(shapes, keep, bias=True):
    total, ins = 0, shapes[0][1]
    for i, s in enumerate(shapes):
        out = s[0] - keep[i] if i < len(keep) else s[0]
        total += out * ins * _kernel(s) + (out if bias else 0)
        ins = out
    return total


WRONG = {
    "storage_bytes": [sb_nnz_dense, sb_coo_one_index, sb_csr_rows, sb_fixed_four, sb_tensor],
    "taylor_per_batch": [tp_mean_gradient_first, tp_abs, tp_sum, tp_no_weight, tp_last_batch],
    "per_row_mask": [pr_global, pr_int, pr_prune_highest, pr_columns, pr_threshold],
    "proximal_l1_step": [px_subgradient, px_threshold_lam, px_threshold_first, px_hard_threshold, px_in_place],
    "obs_prune_one": [obs_by_magnitude, obs_times_diag, obs_no_update, obs_plus, obs_zeros_allowed],
    "params_after_channel_removal": [pc_own_rows_only, pc_no_bias, pc_no_kernel, pc_keep_as_removed],
}

# the words the hint must contain for each wrong answer (the mistake named, not just "wrong")
HINT_WORDS = {
    "sb_nnz_dense": ["every entry"], "sb_coo_one_index": ["two indices"], "sb_csr_rows": ["rows + 1"],
    "sb_fixed_four": ["value_bytes"], "sb_tensor": ["python int"],
    "tp_mean_gradient_first": ["averaged the gradients first"], "tp_abs": ["square"], "tp_sum": ["average"],
    "tp_no_weight": ["multiplies the weight"], "tp_last_batch": [],
    "pr_global": ["within each row"], "pr_int": ["int()"], "pr_prune_highest": ["lowest"], "pr_columns": [],
    "pr_threshold": [],
    "px_subgradient": ["subgradient"], "px_threshold_lam": ["lr·λ, not λ"],
    "px_threshold_first": ["first the gradient"],
    "px_hard_threshold": ["soft thresholding"], "px_in_place": ["in place"],
    "obs_by_magnitude": ["smallest |w|"], "obs_times_diag": ["divides by"], "obs_no_update": ["also moves"],
    "obs_plus": ["subtracted"], "obs_zeros_allowed": ["nonzero"],
    "pc_own_rows_only": ["next layer"], "pc_no_bias": ["biases"], "pc_no_kernel": ["kernel"],
    "pc_keep_as_removed": ["kept"],
}


def test_every_exercise_has_three_wrong_answers():
    assert set(WRONG) == set(EXERCISES)
    assert all(len(fns) >= 3 for fns in WRONG.values())


@pytest.mark.parametrize(**cases(WRONG))
def test_wrong_answers_are_rejected(name, fn, capsys):
    rejected(_check(name), fn, *HINT_WORDS[fn.__name__])


# ============================================================================ chapters 04-06 (H10)
# --- chapter 04: low_rank_factors
def _svd(weight):
    return torch.linalg.svd(weight, full_matrices=False)


def lr_no_singular_values(weight, rank):
    U, S, Vh = _svd(weight)
    return Vh[:rank], U[:, :rank]


def lr_smallest(weight, rank):                                   # keeps the last (smallest) singular values
    U, S, Vh = _svd(weight)
    return S[-rank:, None] * Vh[-rank:], U[:, -rank:]


def lr_vh_transposed(weight, rank):                              # treats Vh as V
    U, S, Vh = _svd(weight)
    return S[:rank, None] * Vh.T[:rank], U[:, :rank]


def lr_swapped(weight, rank):                                    # returns (second, first)
    U, S, Vh = _svd(weight)
    return U[:, :rank] * S[:rank], Vh[:rank]


def lr_off_by_one(weight, rank):                                 # rank + 1 directions
    U, S, Vh = _svd(weight)
    return S[:rank + 1, None] * Vh[:rank + 1], U[:, :rank + 1]


def lr_sigma_twice(weight, rank):                                # S in both factors instead of √S
    U, S, Vh = _svd(weight)
    return S[:rank, None] * Vh[:rank], U[:, :rank] * S[:rank]


# --- chapter 05: dense_to_csr
def csr_keeps_zeros(weight):
    m, n = weight.shape
    return weight.flatten(), torch.arange(n).repeat(m), torch.arange(0, m * n + 1, n)


def csr_no_leading_zero(weight):
    rows, cols = (weight != 0).nonzero(as_tuple=True)
    return weight[rows, cols], cols, torch.cumsum((weight != 0).sum(1), 0)


def csr_counts(weight):                                        # counts per row instead of running totals
    rows, cols = (weight != 0).nonzero(as_tuple=True)
    return weight[rows, cols], cols, torch.cat([torch.zeros(1, dtype=torch.int64), (weight != 0).sum(1)])


def csr_column_major(weight):                                  # walks column by column
    cols_, rows_ = (weight.T != 0).nonzero(as_tuple=True)
    ptr = torch.zeros(weight.shape[0] + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum((weight != 0).sum(1), 0)
    return weight.T[cols_, rows_], cols_, ptr


def csr_row_indices(weight):                                   # stores the row of each nonzero (COO half)
    rows, cols = (weight != 0).nonzero(as_tuple=True)
    ptr = torch.zeros(weight.shape[0] + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum((weight != 0).sum(1), 0)
    return weight[rows, cols], rows, ptr


def csr_float_indices(weight):
    rows, cols = (weight != 0).nonzero(as_tuple=True)
    ptr = torch.zeros(weight.shape[0] + 1)
    ptr[1:] = torch.cumsum((weight != 0).sum(1), 0).float()
    return weight[rows, cols], cols.float(), ptr


# --- chapter 06: paired_comparison
def pc_unpaired(correct_a, correct_b):
    n = correct_a.numel()
    pa, pb = correct_a.double().mean().item(), correct_b.double().mean().item()
    return pa - pb, (pa * (1 - pa) / n + pb * (1 - pb) / n) ** 0.5


def pc_no_sqrt_n(correct_a, correct_b):
    d = correct_a.double() - correct_b.double()
    return d.mean().item(), d.std().item()


def pc_population_std(correct_a, correct_b):
    d = correct_a.double() - correct_b.double()
    return d.mean().item(), (d.std(unbiased=False) / d.numel() ** 0.5).item()


def pc_b_minus_a(correct_a, correct_b):
    d = correct_b.double() - correct_a.double()
    return d.mean().item(), (d.std() / d.numel() ** 0.5).item()


def pc_variance(correct_a, correct_b):
    d = correct_a.double() - correct_b.double()
    return d.mean().item(), (d.var() / d.numel()).item()


WRONG_LATE = {
    "low_rank_factors": [lr_no_singular_values, lr_smallest, lr_vh_transposed, lr_swapped, lr_off_by_one,
                         lr_sigma_twice],
    "dense_to_csr": [csr_keeps_zeros, csr_no_leading_zero, csr_counts, csr_column_major, csr_row_indices,
                     csr_float_indices],
    "paired_comparison": [pc_unpaired, pc_no_sqrt_n, pc_population_std, pc_b_minus_a, pc_variance],
}
HINT_WORDS_LATE = {
    "lr_no_singular_values": ["singular values are missing"], "lr_smallest": ["largest"],
    "lr_vh_transposed": ["vh"], "lr_swapped": ["swapped"], "lr_off_by_one": ["exactly `rank`"], "lr_sigma_twice": [],
    "csr_keeps_zeros": ["only the nonzeros"], "csr_no_leading_zero": ["m + 1"], "csr_counts": ["cumulative"],
    "csr_column_major": ["row by row"], "csr_row_indices": ["column index"], "csr_float_indices": ["integer"],
    "pc_unpaired": ["same images"], "pc_no_sqrt_n": ["sqrt(n)"], "pc_population_std": ["n − 1"],
    "pc_b_minus_a": ["sign"], "pc_variance": ["square root"],
}
WRONG.update(WRONG_LATE)
HINT_WORDS.update(HINT_WORDS_LATE)


@pytest.mark.parametrize(**cases(WRONG_LATE))
def test_wrong_answers_to_chapters_04_to_06_are_rejected(name, fn, capsys):
    rejected(_check(name), fn, *HINT_WORDS[fn.__name__])


# ============================================================================ the chapters themselves
COURSE = pathlib.Path(__file__).resolve().parents[1] / "course"
# chapters that end with exercises; chapters 04-06 are added here when theirs are written (issue 19)
CHAPTERS_WITH_EXERCISES = ["00_why_compress", "01_concepts", "02_mathematics", "03_families_compared",
                           "04_compression_family", "05_pruning_in_practice", "06_faq"]


def _cells(stem: str) -> list[dict]:
    import json
    return json.loads((COURSE / f"{stem}.ipynb").read_text(encoding="utf-8"))["cells"]


@pytest.mark.parametrize("stem", CHAPTERS_WITH_EXERCISES)
def test_chapter_ends_with_exercises_and_instructor_answers(stem):
    cells = ["".join(c["source"]) for c in _cells(stem)]
    start = next(i for i, s in enumerate(cells) if s.startswith("## Exercises"))
    after = cells[start:]
    headings = [re.match(r"### Exercise (\d+):", s).group(1) for s in after if re.match(r"### Exercise \d+:", s)]
    assert 3 <= len(headings) <= 5 and headings == [str(n) for n in range(1, len(headings) + 1)], headings
    assert not any(s.startswith("## ") and not s.startswith(("## Exercises", "## References")) for s in after), \
        "only References may follow the Exercises section"
    checked = [s for s in after if "NotImplementedError" in s and re.search(r"\bcheck_\w+\(", s)]
    assert checked, f"{stem}: no auto-checked exercise (a stub and a check_... call)"
    for code in checked:
        name = re.search(r"\b(check_\w+)\(", code).group(1)
        assert name in chapters.__all__, f"{stem} calls {name}, which prunekit.checks.chapters does not export"
    answers = SOLUTIONS / f"{stem}.md"
    assert answers.exists(), f"instructor answers missing: {answers}"
    answer_headings = re.findall(r"^### Exercise (\d+):", answers.read_text(encoding="utf-8"), flags=re.M)
    assert answer_headings == headings, f"{answers.name}: headings {answer_headings} vs chapter {headings}"


def test_every_chapter_check_is_used_by_a_chapter():
    used = {m for stem in CHAPTERS_WITH_EXERCISES for s in _cells(stem)
            for m in re.findall(r"\b(check_\w+)\(", "".join(s["source"]))}
    assert set(chapters.__all__) <= used, set(chapters.__all__) - used
