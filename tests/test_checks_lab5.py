"""Lab 5's checks accept the reference implementations and reject known-wrong ones (>= 3 each).
(What every check promises -- reference passes, stubs, strict mode, no crashes, RNG left
alone -- is tested once for all labs in test_checks_contract.py.)"""
from __future__ import annotations

import math

import pytest
import torch

from checks_helpers import cases, rejected
from prunekit import checks
from prunekit.checks import lab5
from prunekit.masks import nm_mask as library_nm_mask
from prunekit.masks import topk_mask


# ============================================================================ wrong implementations
# --- exact_counts
def ec_round_each(wanted, total):
    return {n: round(w) for n, w in wanted.items()}


def ec_truncate(wanted, total):
    return {n: int(w) for n, w in wanted.items()}


def ec_rest_to_largest(wanted, total):  # floor, then the whole shortfall to the biggest entry
    counts = {n: math.floor(w) for n, w in wanted.items()}
    biggest = max(wanted, key=wanted.get)
    counts[biggest] += total - sum(counts.values())
    return counts


def ec_round_fix_last(wanted, total):  # round, then patch the last entry so the sum is right
    counts = {n: round(w) for n, w in wanted.items()}
    last = list(wanted)[-1]
    counts[last] += total - sum(counts.values())
    return counts


def ec_smallest_remainders(wanted, total):
    counts = {n: math.floor(w) for n, w in wanted.items()}
    order = sorted(wanted, key=lambda n: wanted[n] - counts[n])
    for n in order[: total - sum(counts.values())]:
        counts[n] += 1
    return counts


def ec_first_entries(wanted, total):  # the extra units go to the first entries, whatever their remainder
    counts = {n: math.floor(w) for n, w in wanted.items()}
    for n in list(wanted)[: total - sum(counts.values())]:
        counts[n] += 1
    return counts


# --- scale_allocation
def _keep_total(sizes, s):
    n = sum(sizes.values())
    return n, round(s * n), n - round(s * n)


def sa_no_cap(raw, sizes, s):
    n, prune, keep = _keep_total(sizes, s)
    eps = keep / sum(raw[k] * sizes[k] for k in raw)
    wanted = {k: (1 - eps * raw[k]) * sizes[k] for k in raw}
    try:
        counts = checks.reference_exact_counts(wanted, prune)
    except ValueError:
        counts = {k: round(w) for k, w in wanted.items()}
    return {k: counts[k] / sizes[k] for k in raw}


def sa_cap_without_recompute(raw, sizes, s):
    n, prune, keep = _keep_total(sizes, s)
    eps = keep / sum(raw[k] * sizes[k] for k in raw)
    return {k: round((1 - min(1.0, eps * raw[k])) * sizes[k]) / sizes[k] for k in raw}


def sa_cap_once(raw, sizes, s):  # caps, recomputes ε once, but never checks again
    n, prune, keep = _keep_total(sizes, s)
    eps = keep / sum(raw[k] * sizes[k] for k in raw)
    dense = {k for k in raw if eps * raw[k] > 1}
    free = [k for k in raw if k not in dense]
    eps = (keep - sum(sizes[k] for k in dense)) / sum(raw[k] * sizes[k] for k in free) if free else 0.0
    wanted = {k: 0.0 if k in dense else max(0.0, 1 - eps * raw[k]) * sizes[k] for k in raw}
    try:
        counts = checks.reference_exact_counts(wanted, prune)
    except ValueError:
        counts = {k: round(w) for k, w in wanted.items()}
    return {k: counts[k] / sizes[k] for k in raw}


def sa_round_each(raw, sizes, s):  # the right densities, rounded per layer: the total drifts
    real = checks.reference_scale_allocation(raw, sizes, s)
    n, prune, keep = _keep_total(sizes, s)
    dense = {k for k in raw if real[k] == 0.0}
    free = [k for k in raw if k not in dense]
    eps = (keep - sum(sizes[k] for k in dense)) / sum(raw[k] * sizes[k] for k in free) if free else 0.0
    return {k: 0.0 if k in dense else math.floor((1 - eps * raw[k]) * sizes[k]) / sizes[k] for k in raw}


def sa_raw_is_sparsity(raw, sizes, s):  # reads raw as "how much to prune" instead of "how much to keep"
    inverted = {k: 1.0 / raw[k] for k in raw}
    return checks.reference_scale_allocation(inverted, sizes, s)


def sa_uniform(raw, sizes, s):
    return {k: s for k in raw}


def sa_unrounded(raw, sizes, s):  # real-valued sparsities: not whole numbers of weights
    n, prune, keep = _keep_total(sizes, s)
    ref = checks.reference_scale_allocation(raw, sizes, s)
    dense = {k for k in raw if ref[k] == 0.0}
    free = [k for k in raw if k not in dense]
    eps = (keep - sum(sizes[k] for k in dense)) / sum(raw[k] * sizes[k] for k in free) if free else 0.0
    return {k: 0.0 if k in dense else 1 - eps * raw[k] for k in raw}


# --- best_config
def bc_reads_test(results, tol):
    rows = [{**r, "val_acc": r.get("test_acc", r["val_acc"])} for r in results]
    chosen = checks.reference_best_config(rows, tol)
    return results[rows.index(chosen)]


def bc_most_accurate(results, tol):
    return max(results, key=lambda r: r["val_acc"])


def bc_sparsest(results, tol):
    return max(results, key=lambda r: r["sparsity"])


def bc_relative(results, tol):
    best = max(r["val_acc"] for r in results)
    ok = [r for r in results if r["val_acc"] >= best * (1 - tol)]
    return max(ok, key=lambda r: (r["sparsity"], r["val_acc"]))


def bc_strict(results, tol):
    best = max(r["val_acc"] for r in results)
    ok = [r for r in results if r["val_acc"] > best - tol or r["val_acc"] == best]
    return max(ok, key=lambda r: (r["sparsity"], r["val_acc"]))


def bc_sorts_in_place(results, tol):
    if not results:
        raise ValueError("empty")
    results.sort(key=lambda r: -r["val_acc"])
    return checks.reference_best_config(results, tol)


def bc_ignores_accuracy_tie(results, tol):  # equal sparsity: takes the first, not the more accurate
    if not results:
        raise ValueError("empty")
    best = max(r["val_acc"] for r in results)
    ok = [r for r in results if r["val_acc"] >= best - tol - 1e-9]
    return max(ok, key=lambda r: r["sparsity"])


def bc_no_error(results, tol):
    if not results:
        return {}
    return checks.reference_best_config(results, tol)


# --- pareto_front
def pf_minimise_accuracy(points):
    return checks.reference_pareto_front([(c, -a) for c, a in points]) and \
        [(c, -a) for c, a in checks.reference_pareto_front([(c, -a) for c, a in points])]


def pf_keeps_duplicates(points):
    front = [p for p in points if not any(q[0] <= p[0] and q[1] >= p[1] and tuple(q) != tuple(p) for q in points)]
    return sorted(front, key=lambda p: p[0])


def pf_non_strict(points):  # "dominated" = another point at least as good on both: equal points kill each other
    front = [p for i, p in enumerate(points)
             if not any(j != i and q[0] <= p[0] and q[1] >= p[1] for j, q in enumerate(points))]
    return sorted(set(map(tuple, front)))


def pf_cost_sort_sweep(points):  # sorts by cost only: a cheaper-or-equal, less accurate point survives
    front, best = [], -math.inf
    for c, a in sorted(points, key=lambda p: p[0]):
        if a > best and (c, a) not in front:
            front.append((c, a))
            best = a
    return front


def pf_unsorted(points):
    front = checks.reference_pareto_front(points)
    return sorted(front, key=lambda p: -p[0])


def pf_neighbours_only(points):  # compares each point with the next one in cost order only
    pts = sorted(set(map(tuple, points)))
    return [p for i, p in enumerate(pts) if i + 1 == len(pts) or pts[i + 1][1] > p[1] or pts[i + 1][0] == p[0]]


# --- nm_mask
def nm_wrong_dim(w, n, m):
    return library_nm_mask(w.detach().abs(), n, m, dim=0)


def nm_smallest(w, n, m):
    return library_nm_mask(-w.detach().abs(), n, m, dim=1)


def nm_swapped(w, n, m):
    return library_nm_mask(w.detach().abs(), m - n, m, dim=1) if n != m else torch.ones_like(w, dtype=torch.bool)


def nm_signed(w, n, m):
    return library_nm_mask(w.detach(), n, m, dim=1)


def nm_threshold_ties(w, n, m):
    groups = w.detach().abs().reshape(w.shape[0], -1, m)
    if n == 0:
        return torch.zeros_like(w, dtype=torch.bool)
    nth = groups.topk(n, dim=-1).values[..., -1:]
    return (groups >= nth).reshape(w.shape)


def nm_unstructured(w, n, m):
    if w.shape[1] % m:
        raise ValueError("not a multiple")
    return topk_mask(w.detach().abs(), 1 - n / m)


def nm_no_error(w, n, m):
    if w.shape[1] % m:
        return torch.ones_like(w, dtype=torch.bool)
    return library_nm_mask(w.detach().abs(), n, m, dim=1)


WRONG = {
    "exact_counts": [ec_round_each, ec_truncate, ec_rest_to_largest, ec_round_fix_last, ec_smallest_remainders,
                     ec_first_entries],
    "scale_allocation": [sa_no_cap, sa_cap_without_recompute, sa_cap_once, sa_round_each, sa_raw_is_sparsity,
                         sa_uniform, sa_unrounded],
    "best_config": [bc_reads_test, bc_most_accurate, bc_sparsest, bc_relative, bc_strict, bc_sorts_in_place,
                    bc_ignores_accuracy_tie, bc_no_error],
    "pareto_front": [pf_minimise_accuracy, pf_keeps_duplicates, pf_non_strict, pf_cost_sort_sweep, pf_unsorted,
                     pf_neighbours_only],
    "nm_mask": [nm_wrong_dim, nm_smallest, nm_swapped, nm_signed, nm_threshold_ties, nm_unstructured, nm_no_error],
}


def _check(name):
    return getattr(checks, f"check_{name}")


@pytest.mark.parametrize(**cases(WRONG))
def test_wrong_implementation_is_rejected(name, fn):
    rejected(_check(name), fn)


def test_specific_hints(capsys):
    checks.check_exact_counts(ec_round_each, strict=False)
    checks.check_scale_allocation(sa_no_cap, strict=False)
    checks.check_scale_allocation(sa_raw_is_sparsity, strict=False)
    checks.check_best_config(bc_reads_test, strict=False)
    checks.check_best_config(bc_strict, strict=False)
    checks.check_pareto_front(pf_keeps_duplicates, strict=False)
    checks.check_pareto_front(pf_non_strict, strict=False)
    checks.check_nm_mask(nm_wrong_dim, strict=False)
    checks.check_nm_mask(nm_smallest, strict=False)
    checks.check_nm_mask(nm_threshold_ties, strict=False)
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert "rounding each entry on its own" in lines[0]
    assert "dense" in lines[1]
    assert "DENSITY" in lines[2]
    assert "VALIDATION" in lines[3]
    assert ">=, not >" in lines[4]
    assert "appears twice" in lines[5]
    assert "equal points do not dominate" in lines[6]
    assert "OUTPUT dimension" in lines[7]
    assert "SMALLEST" in lines[8]
    assert "ties" in lines[9]


def test_checks_are_deterministic(capsys):
    for _ in range(2):
        checks.check_scale_allocation(sa_cap_once, strict=False)
        checks.check_pareto_front(checks.reference_pareto_front, strict=False)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0] == lines[2] and lines[1] == lines[3]


def test_references_agree_with_the_library():
    from prunekit.models import build_model
    from prunekit.pruning import prunable_weights, prune_layerwise
    from prunekit.sensitivity import erk_allocation

    model = build_model("lenet5")
    weights = prunable_weights(model)
    raw = {n: lab5.erk_raw_density(tuple(w.shape)) for n, w in weights.items()}
    sizes = {n: w.numel() for n, w in weights.items()}
    ours = checks.reference_scale_allocation(raw, sizes, 0.93)
    assert ours == pytest.approx(erk_allocation(model, 0.93), abs=1e-12)
    masks = prune_layerwise(model, ours)
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.93 * sum(sizes.values()))
    w = torch.randn(10, 16, generator=torch.Generator().manual_seed(0))
    assert torch.equal(checks.reference_nm_mask(w, 2, 4), library_nm_mask(w.abs(), 2, 4, dim=1))


def test_reference_edge_cases():
    with pytest.raises(ValueError):
        checks.reference_exact_counts({"a": 1.0}, 5)
    with pytest.raises(ValueError):
        checks.reference_scale_allocation({"a": 0.0}, {"a": 10}, 0.5)
    with pytest.raises(ValueError):
        checks.reference_best_config([], 0.01)
    with pytest.raises(ValueError):
        checks.reference_nm_mask(torch.ones(2, 6), 2, 4)
    assert checks.reference_pareto_front([]) == []
    rows = [{"name": "a", "val_acc": 0.9, "sparsity": 0.5}]
    assert checks.reference_best_config(rows, 0.0) is rows[0]


# ============================================================================ information_criteria
def _nll_k(model, x, y):
    nll = torch.nn.functional.cross_entropy(model(x), y, reduction="sum").double().item()
    return nll, sum(int(torch.count_nonzero(p)) for p in model.parameters()), len(x)


@torch.no_grad()
def ic_mean_nll(model, x, y):
    nll, k, n = _nll_k(model, x, y)
    return 2 * k + 2 * nll / n, k * math.log(n) + 2 * nll / n


@torch.no_grad()
def ic_base2(model, x, y):
    nll, k, n = _nll_k(model, x, y)
    return 2 * k + 2 * nll / math.log(2), k * math.log2(n) + 2 * nll / math.log(2)


@torch.no_grad()
def ic_counts_zeros(model, x, y):
    nll, _, n = _nll_k(model, x, y)
    k = sum(p.numel() for p in model.parameters())
    return 2 * k + 2 * nll, k * math.log(n) + 2 * nll


@torch.no_grad()
def ic_weights_only(model, x, y):
    nll, _, n = _nll_k(model, x, y)
    k = sum(int(torch.count_nonzero(p)) for name, p in model.named_parameters() if name.endswith("weight"))
    return 2 * k + 2 * nll, k * math.log(n) + 2 * nll


@torch.no_grad()
def ic_swapped(model, x, y):
    return tuple(reversed(lab5.reference_information_criteria(model, x, y)))


@torch.no_grad()
def ic_log_likelihood_sign(model, x, y):
    nll, k, n = _nll_k(model, x, y)
    return 2 * k - 2 * nll, k * math.log(n) - 2 * nll


def test_information_criteria_wrong_implementations():
    rejected(checks.check_information_criteria, ic_mean_nll, "summed")
    rejected(checks.check_information_criteria, ic_base2, "natural")
    rejected(checks.check_information_criteria, ic_counts_zeros, "nonzero")
    rejected(checks.check_information_criteria, ic_weights_only, "biases")
    rejected(checks.check_information_criteria, ic_swapped, "order")
    rejected(checks.check_information_criteria, ic_log_likelihood_sign, "positive")


def test_information_criteria_accepts_tensors_and_pruned_prunekit_models():
    def as_tensors(model, x, y):
        with torch.no_grad():
            nll = torch.nn.functional.cross_entropy(model(x).double(), y, reduction="sum")
        k = sum((p != 0).sum() for p in model.parameters())
        return 2 * k + 2 * nll, k * torch.log(torch.tensor(float(len(x)))) + 2 * nll
    assert checks.check_information_criteria(as_tensors, strict=False)
    from prunekit.models import build_model
    from prunekit.pruning import prune_global
    model = build_model("lenet300").eval()
    x, y = torch.rand(20, 1, 28, 28), torch.arange(20) % 10
    aic_dense, _ = lab5.reference_information_criteria(model, x, y)
    prune_global(model, 0.9)
    aic_pruned, _ = lab5.reference_information_criteria(model, x, y)
    assert aic_dense - aic_pruned > 2 * 0.89 * 266_200      # the zeros are not counted


# ============================================================================ grid_search (capstone)
def _grid_rows(model, val, grid, measure_target=False, in_place=False, front_key="nonzeros", rule="best_config"):
    import copy

    from sklearn.model_selection import ParameterGrid

    from prunekit.pruning import prunable_weights, prune_global, prune_layerwise
    x, y = val.tensors
    rows = []
    for config in ParameterGrid(grid):
        candidate = model if in_place else copy.deepcopy(model)
        {"global": prune_global, "layerwise": prune_layerwise}[config["allocation"]](candidate, config["target"])
        weights = list(prunable_weights(candidate).values())
        total = sum(w.numel() for w in weights)
        zeros = sum(int((w == 0).sum()) for w in weights)
        with torch.no_grad():
            acc = (candidate(x).argmax(1) == y).double().mean().item()
        sparsity = config["target"] if measure_target else zeros / total
        rows.append({**config, "sparsity": sparsity, "nonzeros": total - zeros, "val_acc": acc})
    if rule == "best_config":
        chosen = checks.reference_best_config(rows, grid_search_tolerance[0])
    else:
        chosen = max(rows, key=lambda r: r["val_acc"])
    front = checks.reference_pareto_front([(r[front_key], r["val_acc"]) for r in rows])
    return {"rows": rows, "chosen": chosen, "front": front}


grid_search_tolerance = [0.0]


def _with_tolerance(impl):
    def fn(model, val, grid, tolerance):
        grid_search_tolerance[0] = tolerance
        return impl(model, val, grid)
    fn.__name__ = impl.__name__
    return fn


def gs_in_place(model, val, grid):
    return _grid_rows(model, val, grid, in_place=True)


def gs_most_accurate(model, val, grid):
    return _grid_rows(model, val, grid, rule="most accurate")


def gs_target_as_sparsity(model, val, grid):
    return _grid_rows(model, val, grid, measure_target=True)


def gs_front_on_sparsity(model, val, grid):
    return _grid_rows(model, val, grid, front_key="sparsity")


def gs_first_batch(model, val, grid):   # accuracy on the first 64 validation examples only
    x, y = val.tensors
    return _grid_rows(model, torch.utils.data.TensorDataset(x[:64], y[:64]), grid)


def gs_sorted_configs(model, val, grid):  # the rows sorted by target, not in ParameterGrid's order
    out = _grid_rows(model, val, grid)
    out["rows"] = sorted(out["rows"], key=lambda r: (r["target"], r["allocation"]))
    return out


def test_grid_search_wrong_implementations():
    rejected(checks.check_grid_search, _with_tolerance(gs_in_place), "copy")
    rejected(checks.check_grid_search, _with_tolerance(gs_most_accurate), "most accurate")
    rejected(checks.check_grid_search, _with_tolerance(gs_target_as_sparsity), "measure")
    rejected(checks.check_grid_search, _with_tolerance(gs_front_on_sparsity), "cost")
    rejected(checks.check_grid_search, _with_tolerance(gs_first_batch), "ALL validation")
    rejected(checks.check_grid_search, _with_tolerance(gs_sorted_configs), "order")


def test_grid_search_cases_are_not_trivial():
    for case_builder in (lab5._grid_cases,):
        assert len(case_builder()) >= 6
    model = lab5._grid_model(521, (8, 6, 3))
    out = lab5.reference_grid_search(model, lab5._grid_val(model, 528, 100),
                                     {"allocation": ["global", "layerwise"], "target": [0.33, 0.71]}, 0.03)
    assert any(abs(r["sparsity"] - r["target"]) > 1e-9 for r in out["rows"])
    accs = {r["val_acc"] for r in out["rows"]}
    assert len(accs) > 1
