"""Lab 4's checks reject known-wrong implementations with a useful hint.
(What every check promises -- reference passes, stubs, strict mode, no crashes, RNG left
alone -- is tested once for all labs in test_checks_contract.py.)"""
import copy
import math

import torch

from checks_helpers import rejected
from prunekit.checks import lab4
from prunekit.lottery import random_masks_like, rewind_weights
from prunekit.pruning import apply_masks
from prunekit.schedules import agp_sparsity as library_agp
from prunekit.schedules import iterative_sparsities


# ----------------------------------------------------------------------------- agp_sparsity
def _agp(exponent=3, rounding=True, swap=False, by_n=False, cap=True, before=True):
    def agp(step, s_i, s_f, t0, n, dt):
        if swap:
            s_i, s_f = s_f, s_i
        if step < t0 and before:
            return float(s_i)
        elapsed = max(step - t0, 0) if before else step - t0
        if by_n:
            progress = elapsed / n
        elif rounding:
            progress = (elapsed // dt) / n
        else:
            progress = elapsed / (n * dt)
        if cap:
            progress = min(progress, 1.0)
        return s_f + (s_i - s_f) * (1 - progress) ** exponent
    return agp


def test_agp_accepts_library():
    assert lab4.check_agp_sparsity(library_agp, strict=False)


def test_agp_wrong_implementations():
    rejected(lab4.check_agp_sparsity, _agp(exponent=2), "exponent")
    rejected(lab4.check_agp_sparsity, _agp(rounding=False), "every Δt")
    rejected(lab4.check_agp_sparsity, _agp(swap=True), "swapped")
    rejected(lab4.check_agp_sparsity, _agp(by_n=True), "n * Δt")
    rejected(lab4.check_agp_sparsity, _agp(cap=False), "stays at s_f")
    rejected(lab4.check_agp_sparsity, _agp(before=False), "before t0")
    rejected(lab4.check_agp_sparsity,
             lambda t, s_i, s_f, t0, n, dt: s_i + (s_f - s_i) * min(max(t - t0, 0) // dt / n, 1))
    rejected(lab4.check_agp_sparsity, lambda *args: str(_agp()(*args)), "number")


# ----------------------------------------------------------------------------- iterative_targets
def test_iterative_targets_accepts_library_and_other_types():
    assert lab4.check_iterative_targets(iterative_sparsities, strict=False)
    assert lab4.check_iterative_targets(lambda f, r: tuple(lab4.reference_iterative_targets(f, r)), strict=False)
    assert lab4.check_iterative_targets(lambda f, r: torch.tensor(lab4.reference_iterative_targets(f, r),
                                                                  dtype=torch.float64), strict=False)


def test_iterative_targets_wrong_implementations():
    rejected(lab4.check_iterative_targets, lambda f, r: [f * k / r for k in range(1, r + 1)], "geometric")
    rejected(lab4.check_iterative_targets,
             lambda f, r: [(1 - f) ** (k / r) for k in range(1, r + 1)], "remaining fractions")
    rejected(lab4.check_iterative_targets, lambda f, r: [1 - (1 - f) ** (k / r) for k in range(r)], "k starts at 1")
    rejected(lab4.check_iterative_targets, lambda f, r: [1 - (1 - f) ** (1 / r)] * r, "per-round")
    rejected(lab4.check_iterative_targets, lambda f, r: [1 - (1 - f) ** (k / r) for k in range(r + 1)], "round 0")
    rejected(lab4.check_iterative_targets,
             lambda f, r: [1 - (1 - f) ** (k / r) for k in range(1, r + 1)][:-1] + [f + 1e-8])


def test_iterative_targets_must_end_exactly_at_final():
    def off_by_float(f, r):
        return [1 - (1 - f) ** (k / r) + 1e-11 for k in range(1, r + 1)]
    rejected(lab4.check_iterative_targets, off_by_float, "exactly")


# ----------------------------------------------------------------------------- prune_remaining_mask
def _topk_of(scores, k):
    new = torch.ones(scores.numel(), dtype=torch.bool)
    new[torch.sort(scores.flatten(), stable=True).indices[:k]] = False
    return new.view(scores.shape)


def test_prune_remaining_accepts_float_masks():
    assert lab4.check_prune_remaining_mask(
        lambda w, m, f: lab4.reference_prune_remaining_mask(w, m, f).float(), strict=False)


def test_prune_remaining_of_all_weights():
    def of_all(w, m, f):   # prunes f of ALL the weights (what a per-round "sparsity" would do)
        scores = torch.where(m.bool(), w.abs().double(), torch.tensor(math.inf, dtype=torch.float64))
        return m.bool() & _topk_of(scores, round(f * m.numel()))
    rejected(lab4.check_prune_remaining_mask, of_all, "all the weights")


def test_prune_remaining_ignoring_the_old_mask():
    def fresh(w, m, f):    # re-ranks every weight: old pruned ones can come back
        return _topk_of(w.abs(), round(f * int(m.bool().sum())))
    rejected(lab4.check_prune_remaining_mask, fresh, "revive")


def test_prune_remaining_product_ties_with_pruned_zeros():
    def product(w, m, f):  # (w * m).abs() ranks kept zeros with pruned ones, so a pruned one can revive
        m = m.bool()
        n_old = int((~m).sum())
        return _topk_of((w * m).abs(), n_old + round(f * int(m.sum())))
    rejected(lab4.check_prune_remaining_mask, product, "revive")


def test_prune_remaining_other_mistakes():
    def signed(w, m, f):
        scores = torch.where(m.bool(), w.double(), torch.tensor(math.inf, dtype=torch.float64))
        return m.bool() & _topk_of(scores, round(f * int(m.bool().sum())))

    def largest(w, m, f):
        scores = torch.where(m.bool(), -w.abs().double(), torch.tensor(math.inf, dtype=torch.float64))
        return m.bool() & _topk_of(scores, round(f * int(m.bool().sum())))

    def truncating(w, m, f):
        scores = torch.where(m.bool(), w.abs().double(), torch.tensor(math.inf, dtype=torch.float64))
        return m.bool() & _topk_of(scores, int(f * int(m.bool().sum())))

    def keeps_fraction(w, m, f):
        scores = torch.where(m.bool(), w.abs().double(), torch.tensor(math.inf, dtype=torch.float64))
        return m.bool() & _topk_of(scores, round((1 - f) * int(m.bool().sum())))

    def in_place(w, m, f):
        new = lab4.reference_prune_remaining_mask(w, m, f)
        m.copy_(new.to(m.dtype))
        return m

    rejected(lab4.check_prune_remaining_mask, signed, "negative")
    rejected(lab4.check_prune_remaining_mask, largest, "largest")
    rejected(lab4.check_prune_remaining_mask, truncating, "int()")
    rejected(lab4.check_prune_remaining_mask, keeps_fraction, "remove")
    rejected(lab4.check_prune_remaining_mask, in_place, "in place")
    rejected(lab4.check_prune_remaining_mask,
             lambda w, m, f: lab4.reference_prune_remaining_mask(w, m, f).flatten(), "shape")


# ----------------------------------------------------------------------------- rewind
def test_rewind_accepts_library_and_other_correct_styles():
    assert lab4.check_rewind(lambda m, s, masks: rewind_weights(apply_masks(m, masks), s), strict=False)

    @torch.no_grad()
    def by_hand(model, init_state, masks):
        for name, tensor in model.state_dict(keep_vars=True).items():
            if name in init_state:
                tensor.copy_(init_state[name])
        params = dict(model.named_parameters())
        for name, mask in masks.items():
            params[name].mul_(mask)
    assert lab4.check_rewind(by_hand, strict=False)


def test_rewind_restoring_pruned_weights():
    def no_mask(model, init_state, masks):
        model.load_state_dict(init_state)
        return model
    rejected(lab4.check_rewind, no_mask, "initial values back")


def test_rewind_to_final_weights():
    @torch.no_grad()
    def only_mask(model, init_state, masks):   # "rewinds" to the trained weights: no rewinding at all
        params = dict(model.named_parameters())
        for name, mask in masks.items():
            params[name].mul_(mask)
        return model
    rejected(lab4.check_rewind, only_mask, "trained values")


def test_rewind_inverted_masks():
    @torch.no_grad()
    def inverted(model, init_state, masks):
        model.load_state_dict(init_state)
        params = dict(model.named_parameters())
        for name, mask in masks.items():
            params[name].mul_(~mask.bool())
        return model
    rejected(lab4.check_rewind, inverted, "kept weights")


def test_rewind_only_masked_weights():
    @torch.no_grad()
    def masked_only(model, init_state, masks):
        params = dict(model.named_parameters())
        for name, mask in masks.items():
            params[name].copy_(init_state[name] * mask)
        return model
    rejected(lab4.check_rewind, masked_only, "every tensor")


def test_rewind_parameters_but_not_buffers():
    @torch.no_grad()
    def params_only(model, init_state, masks):
        for name, p in model.named_parameters():
            p.copy_(init_state[name] * masks[name] if name in masks else init_state[name])
        return model
    rejected(lab4.check_rewind, params_only, "batchnorm")


def test_rewind_sharing_memory_with_init_state():
    @torch.no_grad()
    def aliasing(model, init_state, masks):
        for name, p in model.named_parameters():
            p.data = init_state[name]
            if name in masks:
                p.data.mul_(masks[name])
        return model
    rejected(lab4.check_rewind, aliasing, "init_state")

    @torch.no_grad()
    def aliasing_unmasked(model, init_state, masks):
        for name, t in model.state_dict(keep_vars=True).items():
            t.data = init_state[name] * masks[name] if name in masks else init_state[name]
        return model
    rejected(lab4.check_rewind, aliasing_unmasked, "shares memory")


def test_rewind_new_objects_or_copies():
    def new_model(model, init_state, masks):
        fresh = copy.deepcopy(model)
        return lab4.reference_rewind(fresh, init_state, masks)
    rejected(lab4.check_rewind, new_model, "the model itself")

    @torch.no_grad()
    def new_parameters(model, init_state, masks):
        for name, module in model.named_modules():
            for pname, p in list(module.named_parameters(recurse=False)):
                full = f"{name}.{pname}" if name else pname
                value = init_state[full].clone()
                if full in masks:
                    value = value * masks[full]
                setattr(module, pname, torch.nn.Parameter(value))
        for name, b in model.named_buffers():
            if name in init_state:
                b.copy_(init_state[name])
        return model
    rejected(lab4.check_rewind, new_parameters, "new object")


def test_rewind_without_no_grad_hint():
    def grad_enabled(model, init_state, masks):
        model.load_state_dict(init_state)
        params = dict(model.named_parameters())
        for name, mask in masks.items():
            params[name].mul_(mask)
        return model
    rejected(lab4.check_rewind, grad_enabled, "no_grad")


def test_rewind_with_random_masks_like_is_still_checked():
    # random_masks_like masks are plain bool dicts: the reference handles them like any mask
    model = lab4._rewind_model(0, False)
    init = copy.deepcopy(model.state_dict())
    masks = random_masks_like({"fc1.weight": torch.rand(6, 8) > 0.5}, seed=3)
    lab4.reference_rewind(model, init, masks)
    assert bool((model.fc1.weight[~masks["fc1.weight"]] == 0).all())


# ----------------------------------------------------------------------------- early_stop
def test_early_stop_wrong_implementations():
    def last_best(curve):
        best = max(a for _, a in curve)
        return [c for c in curve if c[1] == best][-1]

    def index(curve):
        accs = [a for _, a in curve]
        i = accs.index(max(accs))
        return i, accs[i]

    rejected(lab4.check_early_stop, last_best, "earliest")
    rejected(lab4.check_early_stop, index, "not the index")
    rejected(lab4.check_early_stop, lambda curve: tuple(curve[-1]), "last point")
    rejected(lab4.check_early_stop, lambda curve: min(curve, key=lambda c: c[1]), "worst")
    rejected(lab4.check_early_stop, lambda curve: max(curve), "maximum accuracy")   # max by step
    rejected(lab4.check_early_stop, lambda curve: max(c[1] for c in curve), "pair")


def test_early_stop_accepts_lists():
    assert lab4.check_early_stop(lambda curve: list(lab4.reference_early_stop(curve)), strict=False)


# ----------------------------------------------------------------------------- should_stop
def test_should_stop_wrong_implementations():
    rejected(lab4.check_should_stop, lambda h, tol: h[-1] < h[-2] - tol if len(h) > 1 else False, "previous round")
    rejected(lab4.check_should_stop, lambda h, tol: h[-1] < max(h) - tol, "best round")
    rejected(lab4.check_should_stop, lambda h, tol: h[-1] <= h[0] - tol, "strict <")
    rejected(lab4.check_should_stop, lambda h, tol: h[-1] < h[0] - tol / 100, "fraction")
    rejected(lab4.check_should_stop, lambda h, tol: any(a < h[0] - tol for a in h), "dense")
    rejected(lab4.check_should_stop, lambda h, tol: int(h[-1] < h[0] - tol), "bool")


def test_should_stop_accepts_numpy_bools_but_not_tensors():
    import numpy as np
    assert lab4.check_should_stop(lambda h, tol: np.float64(h[-1]) < np.float64(h[0]) - tol, strict=False)
    rejected(lab4.check_should_stop, lambda h, tol: torch.tensor(h[-1] < h[0] - tol), "tensor")


def test_iterative_targets_natural_formula_misses_exact_final():
    # the formula alone gives 0.30000000000000004 for 0.3 and 0.09999999999999998 for 0.1
    rejected(lab4.check_iterative_targets, lambda f, r: [1 - (1 - f) ** (k / r) for k in range(1, r + 1)], "exactly")


# ----------------------------------------------------------------------------- imp_rewind (capstone)
def _imp(model, train_data, val_data, rounds, fraction, steps, eval_every, rewind_step=0, output_layer=None, seed=0,
         *, of_all=False, by_init=False, no_rewind=False, theta0_always=False, unmasked=False, full_output=False,
         capture_end=False, reseed=False):
    from prunekit.checks.lab4 import _weight_names, reference_prune_remaining_mask, reference_train_round

    work = copy.deepcopy(model)
    theta = {"state": copy.deepcopy(work.state_dict())}
    at = steps if capture_end else rewind_step
    capture = [] if rewind_step == 0 or theta0_always else [
        lambda m, step: theta.update(state=copy.deepcopy(m.state_dict())) if step == at else None]
    masks = {n: torch.ones_like(p, dtype=torch.bool) for n, p in work.named_parameters() if n in _weight_names(work)}
    records = []
    for r in range(rounds + 1):
        if r > 0:
            source = theta["state"] if by_init else records[-1]["trained"]
            new = {}
            for n, m in masks.items():
                p = fraction if (full_output or n != output_layer) else fraction / 2
                if of_all:
                    k = round(p * m.numel())
                    scores = torch.where(m, source[n].abs(), torch.tensor(math.inf))
                    keep = torch.ones(m.numel(), dtype=torch.bool)
                    keep[torch.sort(scores.flatten(), stable=True).indices[:k]] = False
                    new[n] = keep.view(m.shape) & m
                else:
                    new[n] = reference_prune_remaining_mask(source[n], m, p)
            masks = new
            if not no_rewind:
                lab4.reference_rewind(work, theta["state"], masks)
            if not unmasked:
                apply_masks(work, masks)
            elif r > 0:
                with torch.no_grad():
                    for n, p_ in work.named_parameters():
                        if n in masks:
                            p_.mul_(masks[n])
        start = copy.deepcopy(work.state_dict())
        run = reference_train_round(work, train_data, val_data, steps, eval_every, seed=seed + r if reseed else seed,
                                    after_step=capture if r == 0 else ())
        records.append({"masks": masks, "start": start, "trained": copy.deepcopy(work.state_dict()), **run})
    return {"rewind_state": theta["state"], "rounds": records}


def _imp_variant(**flags):
    def imp(*args):
        return _imp(*args, **flags)
    imp.__name__ = "imp_" + "_".join(flags)
    return imp


def test_imp_rewind_variant_without_flags_is_accepted():
    assert lab4.check_imp_rewind(_imp_variant(), strict=False)


def test_imp_rewind_wrong_implementations():
    rejected(lab4.check_imp_rewind, _imp_variant(of_all=True), "REMAINING")
    rejected(lab4.check_imp_rewind, _imp_variant(by_init=True), "TRAINED")
    rejected(lab4.check_imp_rewind, _imp_variant(no_rewind=True), "fine-tuning")
    rejected(lab4.check_imp_rewind, _imp_variant(theta0_always=True), "late rewinding")
    rejected(lab4.check_imp_rewind, _imp_variant(unmasked=True), "apply_masks")
    rejected(lab4.check_imp_rewind, _imp_variant(full_output=True), "HALF")
    rejected(lab4.check_imp_rewind, _imp_variant(capture_end=True), "after_step")
    rejected(lab4.check_imp_rewind, _imp_variant(reseed=True), "same seed")


def test_imp_rewind_must_not_touch_the_model():
    def in_place(model, *args):
        out = _imp(model, *args)
        model.load_state_dict(out["rounds"][-1]["trained"])
        return out
    rejected(lab4.check_imp_rewind, in_place, "copy")


# ----------------------------------------------------------------------------- agp_step (capstone)
def _agp_step(model, masks, step, s_i, s_f, t0, n, dt, *, layerwise=False, continuous=False, from_scratch=False,
              no_remask=False, cumulative=False, truncate=False, in_place=False):
    if continuous:
        progress = min(max(step - t0, 0) / (n * dt), 1.0)
        target = s_i if step < t0 else s_f + (s_i - s_f) * (1 - progress) ** 3
    else:
        target = lab4.reference_agp_sparsity(step, s_i, s_f, t0, n, dt)
    params = dict(model.named_parameters())
    names = list(masks)
    old = {k: masks[k].bool() for k in names}
    count = int if truncate else round
    if layerwise:
        new = {}
        for k in names:
            want = count(target * old[k].numel()) - int((~old[k]).sum())
            scores = torch.where(old[k], params[k].detach().abs(), torch.tensor(math.inf)).flatten()
            keep = old[k].flatten().clone()
            if want > 0:
                keep[torch.sort(scores, stable=True).indices[:want]] = False
            new[k] = keep.view(old[k].shape)
    else:
        flat = torch.cat([old[k].flatten() for k in names])
        total = flat.numel()
        scores = torch.cat([params[k].detach().abs().flatten() for k in names])
        if from_scratch:
            flat = torch.ones_like(flat)
            want = count(target * total)
        else:
            scores = torch.where(flat, scores, torch.tensor(math.inf))
            want = count(target * total) - (0 if cumulative else int((~flat).sum()))
        flat = flat.clone()
        if want > 0:
            flat[torch.sort(scores, stable=True).indices[:want]] = False
        new, start = {}, 0
        for k in names:
            new[k] = flat[start:start + old[k].numel()].view(old[k].shape)
            start += old[k].numel()
    if in_place:
        for k in names:
            masks[k].copy_(new[k].to(masks[k].dtype))
    pruned_now = any(bool((old[k] & ~new[k]).any()) for k in names)
    if not (no_remask and not pruned_now):
        with torch.no_grad():
            for k in names:
                params[k].mul_(new[k].to(params[k].dtype))
    return new


def _agp_variant(flag):
    def agp_step(*args):
        return _agp_step(*args, **{flag: True})
    agp_step.__name__ = f"agp_step_{flag}"
    return agp_step


def test_agp_step_plain_variant_is_accepted():
    assert lab4.check_agp_step(_agp_step, strict=False)


def test_agp_step_wrong_implementations():
    rejected(lab4.check_agp_step, _agp_variant("layerwise"), "layer-wise")
    rejected(lab4.check_agp_step, _agp_variant("continuous"), "rounded DOWN")
    rejected(lab4.check_agp_step, _agp_variant("from_scratch"), "revive")
    rejected(lab4.check_agp_step, _agp_variant("no_remask"), "also when nothing new is pruned")
    rejected(lab4.check_agp_step, _agp_variant("cumulative"), "TOTAL")
    rejected(lab4.check_agp_step, _agp_variant("truncate"), "int()")
    rejected(lab4.check_agp_step, _agp_variant("in_place"), "changed the masks")
