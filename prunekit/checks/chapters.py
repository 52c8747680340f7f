"""Checks for the exercises at the end of the chapters (``course/0N_*.ipynb``, section "Exercises").

Each auto-checked chapter exercise ``foo`` has ``check_foo(fn)``, written like the labs' checks
(:func:`~prunekit.checks.core.run_check`, :class:`~prunekit.checks.core.Case`, :func:`~prunekit.checks.core.expect`)
and calling ``fn`` only with data. One difference, because a chapter ships with the exercise *unsolved*:

* the labs' checks raise in strict mode (``$PRUNEKIT_STRICT=1``) for anything but a pass, since CI runs
  the labs' solutions; a chapter runs in CI with the learner's stub still in place, so a chapter check
  raises in strict mode only for a **wrong** answer. A stub prints ``… foo: not implemented yet`` and
  the chapter goes on (see :func:`_chapter_check`).

The answers live with the instructor material (``instructor/chapter_exercises/``), not here and not in
the chapters; what a check compares with is computed by the private ``_expected_*`` helpers below.

Example:
    >>> import torch
    >>> def taylor_per_batch(weight, batch_grads):
    ...     raise NotImplementedError
    >>> check_taylor_per_batch(taylor_per_batch, strict=True).status
    … taylor_per_batch: not implemented yet
    'not_implemented'
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

from .core import FAIL, Case, CheckResult, call, describe_tensor, expect, run_check, strict_mode, as_mask

__all__ = [
    "check_storage_bytes",            # chapter 00
    "check_taylor_per_batch",         # chapter 01
    "check_per_row_mask",             # chapter 01
    "check_proximal_l1_step",         # chapter 02
    "check_obs_prune_one",            # chapter 02
    "check_params_after_channel_removal",  # chapter 03
    "check_low_rank_factors",         # chapter 04
    "check_dense_to_csr",             # chapter 05
    "check_paired_comparison",        # chapter 06
]


def _chapter_check(name: str, fn: Callable, cases, hint: str, passed: str = "",
                   strict: bool | None = None) -> CheckResult:
    """:func:`run_check`, except that strict mode raises only for a *wrong* answer, never for a stub."""
    strict = strict_mode() if strict is None else strict
    result = run_check(name, fn, cases, hint, passed=passed, strict=False)
    if strict and result.status == FAIL:
        raise AssertionError(f"{result.line} [PRUNEKIT_STRICT=1]")
    return result


def _close(out, want: torch.Tensor, what: str, hint: str | None = None, atol: float = 1e-6) -> None:
    expect(isinstance(out, torch.Tensor), f"{what} should be a torch.Tensor, got {type(out).__name__}",
           "build the result with torch operations")
    expect(tuple(out.shape) == tuple(want.shape), f"{what} has shape {tuple(out.shape)}, expected "
           f"{tuple(want.shape)}", "the result has the shape of the weight")
    expect(out.is_floating_point(), f"{what} has dtype {out.dtype}, expected a float tensor")
    expect(torch.allclose(out.double(), want.double(), rtol=1e-5, atol=atol),
           f"{what} is {describe_tensor(out)}, expected {describe_tensor(want)}", hint)


def _python_int(out, what: str) -> int:
    expect(isinstance(out, int) and not isinstance(out, bool),
           f"{what} should be a Python int, got {type(out).__name__} {out!r:.40}",
           "convert a 0-d tensor with `int(t)` or `t.item()`")
    return out


# ============================================================================ chapter 00
def _expected_storage_bytes(weight: torch.Tensor, fmt: str, value_bytes: int, index_bytes: int) -> int:
    nnz, rows = int((weight != 0).sum()), weight.shape[0]
    return {"dense": weight.numel() * value_bytes,
            "coo": nnz * (value_bytes + 2 * index_bytes),
            "csr": nnz * (value_bytes + index_bytes) + (rows + 1) * index_bytes}[fmt]


def check_storage_bytes(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Chapter 00: ``storage_bytes(weight, fmt, value_bytes=4, index_bytes=4) -> int``.

    Bytes to store a 2-D weight (rows, cols) as ``"dense"`` (every entry), ``"coo"`` (each nonzero with
    its row and column index) or ``"csr"`` (each nonzero with its column index, plus a row-pointer array
    of rows + 1 indices).
    """
    def case(label: str, weight: torch.Tensor, fmt: str, vb: int = 4, ib: int = 4) -> Case:
        def run(f):
            out = _python_int(call(f, weight, fmt, vb, ib), f"storage_bytes(..., {fmt!r})")
            want = _expected_storage_bytes(weight, fmt, vb, ib)
            nnz, numel, rows = int((weight != 0).sum()), weight.numel(), weight.shape[0]
            hint = None
            if fmt == "dense" and out == nnz * vb:
                hint = "a dense tensor stores every entry, the zeros too: numel × value_bytes"
            elif fmt == "coo" and out == nnz * (vb + ib):
                hint = "COO keeps TWO indices per nonzero (row and column)"
            elif fmt != "dense" and out == _expected_storage_bytes(torch.ones_like(weight), fmt, vb, ib):
                hint = "count only the nonzeros (`(weight != 0).sum()`): the zeros are what a sparse format skips"
            elif fmt == "csr" and out == nnz * (vb + ib) + rows * ib:
                hint = "the row pointer has rows + 1 entries (row r's nonzeros are ptr[r] .. ptr[r+1] - 1)"
            elif fmt == "csr" and out == nnz * (vb + ib):
                hint = "CSR also stores the row-pointer array: rows + 1 indices"
            elif (vb, ib) != (4, 4) and out == _expected_storage_bytes(weight, fmt, 4, 4):
                hint = "use the value_bytes and index_bytes arguments, not a fixed 4"
            elif (vb, ib) != (4, 4) and out == _expected_storage_bytes(weight, fmt, ib, vb):
                hint = "value_bytes is for the stored values, index_bytes for the indices: swapped?"
            expect(out == want, f"returned {out}, expected {want} ({nnz} nonzeros of {numel}, {rows} rows)", hint)
        return Case(label, run)

    def cases():
        torch.manual_seed(0)
        w = torch.tensor([[0.0, 1.5, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0], [2.0, 0.0, -1.0, 0.0]])
        big = torch.randn(30, 50) * (torch.rand(30, 50) < 0.1)
        full = torch.randn(5, 7) + 10
        out = [case(f"3×4 with 3 nonzeros, {fmt}", w, fmt) for fmt in ("dense", "coo", "csr")]
        out += [case(f"30×50 at ~90 % zeros, {fmt}, 2-byte values, 1-byte indices", big, fmt, 2, 1)
                for fmt in ("dense", "coo", "csr")]
        out += [case(f"dense 5×7, {fmt}, 1-byte values, 2-byte indices", full, fmt, 1, 2)
                for fmt in ("csr", "coo", "dense")]
        out.append(case("all zeros, csr", torch.zeros(6, 3), "csr"))
        return out

    return _chapter_check("storage_bytes", fn, cases, "dense: numel·value_bytes; COO: nnz·(value + 2 indices); "
                          "CSR: nnz·(value + 1 index) + (rows + 1)·index", "dense, COO, CSR; byte sizes; empty rows",
                          strict)


# ============================================================================ chapter 01
def _expected_taylor(weight: torch.Tensor, grads: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.stack([(weight * g) ** 2 for g in grads]).mean(0)


def check_taylor_per_batch(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Chapter 01: ``taylor_per_batch(weight, batch_grads) -> scores``, the mean over the batches b of
    ``(weight · g_b)²`` (Molchanov et al. 2019), shaped like ``weight``."""
    def case(label: str, w: torch.Tensor, grads: list[torch.Tensor]) -> Case:
        def run(f):
            out = call(f, w, grads)
            want = _expected_taylor(w, grads)
            hint = None
            if isinstance(out, torch.Tensor) and out.shape == w.shape and out.is_floating_point():
                mean_g = torch.stack(grads).mean(0)
                wrong = {"you averaged the gradients first and squared (w·ḡ)²: on a converged model the signed "
                         "gradients cancel; square each batch's (w·g_b) first, then average": (w * mean_g) ** 2,
                         "you averaged the gradients first (|w·ḡ|): square each batch's (w·g_b), then average":
                             (w * mean_g).abs(),
                         "take the square (w·g_b)², not the absolute value":
                             torch.stack([(w * g).abs() for g in grads]).mean(0),
                         "average over the batches (divide by their number), do not sum": want * len(grads),
                         "the score multiplies the weight and its gradient: (w·g_b)², not g_b²":
                             torch.stack([g ** 2 for g in grads]).mean(0)}
                for text, value in wrong.items():
                    if torch.allclose(out.double(), value.double(), rtol=1e-5, atol=1e-9) and not \
                            torch.allclose(value.double(), want.double(), rtol=1e-5, atol=1e-9):
                        hint = text
                        break
            _close(out, want, "the scores", hint, atol=1e-9)
        return Case(label, run)

    def cases():
        torch.manual_seed(1)
        w = torch.tensor([1.0, -2.0, 0.5])
        opposite = [torch.tensor([1.0, 1.0, 1.0]), torch.tensor([-1.0, -1.0, -1.0])]
        w2 = torch.randn(4, 6)
        return [case("3 weights, two batches whose gradients cancel", w, opposite),
                case("one batch: (w·g)²", w, [torch.tensor([0.5, 0.25, -2.0])]),
                case("4×6 weight, 5 random batches", w2, [torch.randn(4, 6) for _ in range(5)]),
                case("conv weight 2×3×3×3, 3 batches", torch.randn(2, 3, 3, 3),
                     [torch.randn(2, 3, 3, 3) for _ in range(3)])]

    return _chapter_check("taylor_per_batch", fn, cases, "score = mean over batches of (weight * g_b) ** 2",
                          "cancelling gradients, one batch, 2-D and conv weights", strict)


def _expected_per_row(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    rows = scores.reshape(scores.shape[0], -1)
    k = round(sparsity * rows.shape[1])
    order = torch.argsort(rows, dim=1, stable=True)[:, :k]
    keep = torch.ones_like(rows, dtype=torch.bool)
    keep.scatter_(1, order, False)
    return keep.view_as(scores)


def check_per_row_mask(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Chapter 01: ``per_row_mask(scores, sparsity) -> bool mask``: in every output row (dim 0; a whole
    filter for a conv weight) prune exactly ``round(sparsity · row_size)`` entries with the lowest scores,
    ties pruned at the lower index first (Wanda's comparison group, Sun et al. 2023)."""
    def case(label: str, scores: torch.Tensor, s: float) -> Case:
        def run(f):
            mask = as_mask(call(f, scores, s), tuple(scores.shape))
            want = _expected_per_row(scores, s)
            rows, want_rows = mask.reshape(scores.shape[0], -1), want.reshape(scores.shape[0], -1)
            size = rows.shape[1]
            kept = rows.sum(1)
            hint = None
            if not torch.equal(kept, want_rows.sum(1)):
                if int(rows.sum()) == int(want_rows.sum()):
                    hint = "compare within each row, not across the whole tensor: every row keeps the same count"
                elif bool((kept == size - int(s * size)).all()):
                    hint = "round(sparsity · row_size), not int(...): int() truncates"
                elif bool((kept == round(s * size)).all()):
                    hint = "sparsity is the fraction PRUNED: keep row_size − round(sparsity · row_size)"
                expect(False, f"rows keep {kept.tolist()[:6]} entries, expected {want_rows.sum(1).tolist()[:6]}", hint)
            if not torch.equal(mask, want):
                if torch.equal(mask, _expected_per_row(-scores, s)):
                    hint = "prune the LOWEST scores and keep the highest"
                elif torch.equal(mask.reshape(scores.shape[0], -1),
                                 _expected_per_row(scores.reshape(scores.shape[0], -1).abs(), s)):
                    hint = "rank the scores themselves, not their absolute values"
                else:
                    hint = ("among equal scores prune the lower index first: `torch.argsort(row, stable=True)`"
                            if len(torch.unique(scores)) < scores.numel() else None)
                expect(False, "wrong entries pruned (right count per row)", hint)
        return Case(label, run)

    def cases():
        torch.manual_seed(2)
        a = torch.tensor([[4.0, 1.0, 3.0, 2.0], [0.1, 0.2, 0.3, 9.0], [5.0, 6.0, 7.0, 8.0]])
        b = torch.rand(8, 10)
        b[0] *= 100                                   # one row with far larger scores: a global rule empties others
        ties = torch.tensor([[1.0, 1.0, 1.0, 1.0], [2.0, 1.0, 1.0, 3.0]])
        return [case("3×4 at 50 %", a, 0.5),
                case("8×10 with one dominant row, 37 %", b, 0.37),
                case("conv 4×3×3×3 (a row = a filter), 70 %", torch.rand(4, 3, 3, 3), 0.7),
                case("signed scores 5×6, 50 %", torch.randn(5, 6), 0.5),
                case("ties, 50 %", ties, 0.5),
                case("sparsity 0 and 1", torch.rand(3, 5), 0.0),
                case("sparsity 1", torch.rand(3, 5), 1.0)]

    return _chapter_check("per_row_mask", fn, cases, "per row (dim 0, flatten the rest): prune the "
                          "round(sparsity·row_size) lowest scores; ties at the lower index first",
                          "exact count in every row, conv filters, ties, s = 0 and 1", strict)


# ============================================================================ chapter 02
def _expected_prox(w: torch.Tensor, g: torch.Tensor, lr: float, lam: float) -> torch.Tensor:
    z = w - lr * g
    return torch.sign(z) * torch.clamp(z.abs() - lr * lam, min=0.0)


def check_proximal_l1_step(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Chapter 02: ``proximal_l1_step(weight, grad, lr, lam) -> new weight``: a gradient step on the data
    loss, then soft thresholding by ``lr · lam`` (the proximal operator of ``lam·‖w‖₁``)."""
    def case(label: str, w, g, lr, lam) -> Case:
        def run(f):
            out = call(f, w, g, lr, lam)
            want = _expected_prox(w, g, lr, lam)
            hint = None
            if isinstance(out, torch.Tensor) and out.shape == w.shape and out.is_floating_point():
                z = w - lr * g
                wrong = {
                    "a subgradient step (w − lr·(g + λ·sign w)) never lands on 0: soft-threshold instead, "
                    "sign(z)·max(|z| − lr·λ, 0) with z = w − lr·g": z - lr * lam * torch.sign(w),
                    "the threshold is lr·λ, not λ": torch.sign(z) * torch.clamp(z.abs() - lam, min=0),
                    "first the gradient step z = w − lr·g, then the threshold on z":
                        _expected_prox(w, torch.zeros_like(w), lr, lam) - lr * g,
                    "hard thresholding only zeros the small entries; soft thresholding also shrinks the "
                    "survivors by lr·λ": torch.where(z.abs() > lr * lam, z, torch.zeros_like(z)),
                }
                for text, value in wrong.items():
                    if torch.allclose(out.double(), value.double(), atol=1e-7) and not \
                            torch.allclose(value.double(), want.double(), atol=1e-7):
                        hint = text
                        break
            _close(out, want, "the new weight", hint)
            expect(bool(((want == 0) <= (out == 0)).all()), "entries the proximal step sets to 0 are not exactly 0",
                   "use torch.clamp(|z| − lr·λ, min=0): exact zeros, not tiny numbers")
        return Case(label, run)

    def cases():
        torch.manual_seed(3)
        w = torch.tensor([0.05, -0.02, 0.5, -0.8, 0.0])
        g = torch.tensor([0.1, -0.1, 0.2, 0.0, 0.3])
        return [case("5 weights, lr 0.1, λ 0.3", w, g, 0.1, 0.3),
                case("lr 0.5, λ 0.2, zero gradient", w, torch.zeros(5), 0.5, 0.2),
                case("6×7 random, lr 0.05, λ 1.0", torch.randn(6, 7) * 0.1, torch.randn(6, 7), 0.05, 1.0),
                case("λ 0 is plain SGD", w, g, 0.1, 0.0)]

    return _chapter_check("proximal_l1_step", fn, cases,
                          "z = weight − lr·grad; return sign(z)·max(|z| − lr·lam, 0)",
                          "exact zeros, threshold lr·λ, λ = 0", strict)


def _expected_obs(w: torch.Tensor, h_inv: torch.Tensor) -> tuple[int, torch.Tensor]:
    d = torch.diagonal(h_inv)
    saliency = torch.where(w != 0, w ** 2 / (2 * d), torch.full_like(w, float("inf")))
    q = int(torch.argmin(saliency))
    new = w - (w[q] / d[q]) * h_inv[:, q]
    new[q] = 0.0
    return q, new


def _zero_at(t: torch.Tensor, q: int) -> torch.Tensor:
    t = t.clone()
    t[q] = 0.0
    return t


def check_obs_prune_one(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Chapter 02: ``obs_prune_one(weight, hessian_inv) -> (q, new_weight)``: Optimal Brain Surgeon
    (Hassibi & Stork 1993) on a 1-D weight (n,) with the inverse Hessian (n, n). Among the nonzero weights
    pick ``q`` minimising ``w_q² / (2 [H⁻¹]_qq)``, return ``w − (w_q / [H⁻¹]_qq) · H⁻¹[:, q]`` with entry
    ``q`` set exactly to 0."""
    def case(label: str, w: torch.Tensor, h: torch.Tensor) -> Case:
        h_inv = torch.linalg.inv(h)

        def run(f):
            out = call(f, w, h_inv)
            expect(isinstance(out, (tuple, list)) and len(out) == 2,
                   f"expected a pair (q, new_weight), got {type(out).__name__}", "return q, new_weight")
            q, new = out
            q = _python_int(q, "q")
            want_q, want = _expected_obs(w, h_inv)
            d = torch.diagonal(h_inv)
            nz = w != 0
            hint = None
            if q != want_q:
                big = torch.full_like(w, float("inf"))
                if q == int(torch.argmin(torch.where(nz, w.abs(), big))):
                    hint = "OBS does not take the smallest |w|: the saliency is w_q² / (2 [H⁻¹]_qq)"
                elif q == int(torch.argmin(torch.where(nz, w ** 2 * torch.diagonal(h) / 2, big))):
                    hint = "divide by the diagonal of the INVERSE Hessian; w²·H_qq/2 is OBD's saliency"
                elif q == int(torch.argmin(torch.where(nz, w ** 2 * d / 2, big))):
                    hint = "the saliency divides by [H⁻¹]_qq: w_q² / (2 [H⁻¹]_qq), not w_q²·[H⁻¹]_qq / 2"
                elif not bool(nz[q]):
                    hint = "choose among the nonzero weights: removing a zero changes nothing"
                expect(False, f"chose q = {q}, expected {want_q}", hint)
            if isinstance(new, torch.Tensor) and new.shape == w.shape:
                if torch.allclose(new, torch.where(torch.arange(len(w)) == q, torch.zeros_like(w), w), atol=1e-6):
                    hint = "OBS also moves the other weights: w − (w_q / [H⁻¹]_qq)·H⁻¹[:, q]"
                elif torch.allclose(new, _zero_at(w + (w[q] / d[q]) * h_inv[:, q], q), atol=1e-5):
                    hint = "the update is subtracted: w − (w_q / [H⁻¹]_qq)·H⁻¹[:, q]"
            _close(new, want, "new_weight", hint, atol=1e-5)
            expect(float(new[q]) == 0.0, f"new_weight[{q}] is {float(new[q]):.3g}, not exactly 0",
                   "set the pruned entry to 0.0 after the update (rounding leaves ~1e-8)")
        return Case(label, run)

    def cases():
        g = torch.Generator().manual_seed(4)
        w = torch.tensor([0.3, -1.0, 0.5])
        h = torch.tensor([[4.0, 1.5, 0.0], [1.5, 1.0, 0.2], [0.0, 0.2, 0.3]])
        a = torch.randn(6, 6, generator=g)
        h6 = a @ a.T + 0.5 * torch.eye(6)
        w6 = torch.randn(6, generator=g)
        w0 = w6.clone()
        w0[int(torch.argmin(w6.abs()))] = 0.0
        strong = torch.tensor([[2.75, -3.26, 0.48], [-3.26, 9.36, -0.82], [0.48, -0.82, 2.74]])
        return [case("3 weights, strongly correlated Hessian", torch.tensor([0.8, -0.9, -0.7]), strong),
                case("3 weights, correlated Hessian", w, h),
                case("diagonal Hessian (OBS = OBD, no other weight moves)", w,
                     torch.diag(torch.tensor([1.0, 0.1, 3.0]))),
                case("6 weights, random positive definite Hessian", w6, h6),
                case("one weight already 0", w0, h6)]

    return _chapter_check("obs_prune_one", fn, cases, "q = argmin over nonzero w of w_q²/(2[H⁻¹]_qq); "
                          "new = w − (w_q/[H⁻¹]_qq)·H⁻¹[:, q]; new[q] = 0",
                          "choice of q, compensating update, exact zero", strict)


# ============================================================================ chapter 03
def _expected_params(shapes: Sequence[Sequence[int]], keep: Sequence[int], bias: bool) -> int:
    total, inputs = 0, None
    for i, shape in enumerate(shapes):
        out = keep[i] if i < len(keep) else shape[0]
        ins = shape[1] if inputs is None else inputs
        kernel = 1
        for k in shape[2:]:
            kernel *= k
        total += out * ins * kernel + (out if bias else 0)
        inputs = out
    return total


def check_params_after_channel_removal(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Chapter 03: ``params_after_channel_removal(shapes, keep, bias=True) -> int``: parameters left in a
    chain of Linear ``(out, in)`` or Conv2d ``(out, in, kh, kw)`` weights after keeping ``keep[i]`` outputs
    of layer ``i`` (``len(keep) == len(shapes) − 1``: the last layer's outputs are the model's outputs).
    A removed output of layer ``i`` also removes an input slice of layer ``i + 1``."""
    def case(label: str, shapes: list[tuple[int, ...]], keep: list[int], bias: bool = True) -> Case:
        def run(f):
            out = _python_int(call(f, shapes, keep, bias), "the parameter count")
            want = _expected_params(shapes, keep, bias)
            hint = None
            own_only = sum((keep[i] if i < len(keep) else s[0]) * (torch.tensor(s[1:]).prod().item())
                           + ((keep[i] if i < len(keep) else s[0]) if bias else 0) for i, s in enumerate(shapes))
            if out == own_only:
                hint = ("removing layer i's outputs also removes layer i+1's inputs: "
                        "shrink the next layer's in-dimension")
            elif bias and out == _expected_params(shapes, keep, False):
                hint = "count the biases too (one per kept output)"
            elif not bias and out == _expected_params(shapes, keep, True):
                hint = "bias=False: the layers have no biases"
            elif out == _expected_params([s[:2] for s in shapes], keep, bias) and any(len(s) > 2 for s in shapes):
                hint = "a conv weight has out·in·kh·kw entries: multiply by the kernel size"
            elif all(k <= s[0] for k, s in zip(keep, shapes)) and \
                    out == _expected_params(shapes, [s[0] - k for k, s in zip(keep, shapes)], bias):
                hint = "keep[i] is the number of outputs KEPT, not removed"
            expect(out == want, f"returned {out}, expected {want}", hint)
        return Case(label, run)

    def cases():
        return [case("LeNet-300-100 keeping 150 and 50 neurons", [(300, 784), (100, 300), (10, 100)], [150, 50]),
                case("nothing removed", [(300, 784), (100, 300), (10, 100)], [300, 100]),
                case("3 convs 3×3 then 1×1, keep 8 and 20", [(16, 3, 3, 3), (32, 16, 3, 3), (10, 32, 1, 1)], [8, 20]),
                case("no biases", [(16, 3, 5, 5), (32, 16, 3, 3), (10, 32, 1, 1)], [4, 30], False),
                case("a single layer", [(10, 20)], [])]

    return _chapter_check("params_after_channel_removal", fn, cases, "for each layer: kept outputs × kept inputs × "
                          "kernel size (+ kept outputs for biases); kept inputs = previous layer's kept outputs",
                          "next layer's inputs, biases, kernels", strict)


# ============================================================================ chapter 04
def _expected_low_rank(w: torch.Tensor, rank: int) -> torch.Tensor:
    U, S, Vh = torch.linalg.svd(w.double(), full_matrices=False)
    return (U[:, :rank] * S[:rank]) @ Vh[:rank]


def check_low_rank_factors(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Chapter 04: ``low_rank_factors(weight, rank) -> (first, second)`` for a Linear weight (m, n): the
    weights of ``Linear(n, rank)`` then ``Linear(rank, m)``, i.e. ``first`` (rank, n) and ``second`` (m, rank),
    whose product ``second @ first`` is the best rank-``rank`` approximation of ``weight`` (truncated SVD,
    Eckart–Young). How the singular values are split between the two factors is free."""
    def case(label: str, w: torch.Tensor, rank: int) -> Case:
        def run(f):
            out = call(f, w, rank)
            expect(isinstance(out, (tuple, list)) and len(out) == 2,
                   f"expected a pair (first, second), got {type(out).__name__}", "return first, second")
            first, second = out
            m, n = w.shape
            for what, t, shape in (("first", first, (rank, n)), ("second", second, (m, rank))):
                expect(isinstance(t, torch.Tensor), f"{what} should be a torch.Tensor, got {type(t).__name__}")
            if tuple(first.shape) == (m, rank) and tuple(second.shape) == (rank, n) and m != n:
                expect(False, f"first has shape {tuple(first.shape)} and second {tuple(second.shape)}",
                       "swapped: first is the layer applied first, Linear(n, rank), weight (rank, n) = √S_r·Vh[:r]")
            if tuple(first.shape) == (rank, m) and m != n:
                expect(False, f"first has shape {tuple(first.shape)}, expected {(rank, n)}",
                       "torch.linalg.svd returns Vh (already transposed): take its first rows Vh[:r], not Vh.T[:r]")
            for what, t, shape in (("first", first, (rank, n)), ("second", second, (m, rank))):
                hint = None
                if tuple(t.shape) == (shape[1], shape[0]):
                    hint = ("first is the weight of Linear(n, rank): shape (rank, n); second of Linear(rank, m): "
                            "(m, rank) — transposed?")
                elif rank in (t.shape[0] - 1, t.shape[-1] - 1) or rank in (t.shape[0] + 1, t.shape[-1] + 1):
                    hint = "keep exactly `rank` singular values (slice [:rank])"
                expect(tuple(t.shape) == shape, f"{what} has shape {tuple(t.shape)}, expected {shape}", hint)
            product = (second.double() @ first.double())
            want = _expected_low_rank(w, rank)
            U, S, Vh = torch.linalg.svd(w.double(), full_matrices=False)
            hint = None
            if torch.allclose(product, U[:, :rank] @ Vh[:rank], atol=1e-4):
                hint = "the singular values are missing: W ≈ U_r·diag(S_r)·Vh_r (put S or √S into the factors)"
            elif torch.allclose(product, (U[:, -rank:] * S[-rank:]) @ Vh[-rank:], atol=1e-4):
                hint = "keep the LARGEST singular values (torch.linalg.svd sorts them in descending order: [:rank])"
            elif Vh.shape[0] == n and torch.allclose(product, (U[:, :rank] * S[:rank]) @ Vh.T[:rank], atol=1e-4):
                hint = "torch.linalg.svd returns Vh (already transposed): take its first rows Vh[:r], not Vh.T[:r]"
            scale = float(w.abs().max())
            expect(torch.allclose(product, want, atol=1e-4 * scale, rtol=1e-4),
                   f"second @ first differs from the best rank-{rank} approximation by "
                   f"{float((product - want).abs().max()):.3g} (largest entry)", hint)
        return Case(label, run)

    def cases():
        g = torch.Generator().manual_seed(8)
        low = torch.randn(12, 3, generator=g) @ torch.randn(3, 20, generator=g)        # exactly rank 3
        return [case("random 10×16, rank 4", torch.randn(10, 16, generator=g), 4),
                case("tall 30×8, rank 2", torch.randn(30, 8, generator=g), 2),
                case("a rank-3 matrix at rank 3 is reproduced exactly", low, 3),
                case("rank 1", torch.randn(6, 9, generator=g), 1),
                case("full rank 5×5", torch.randn(5, 5, generator=g), 5)]

    return _chapter_check("low_rank_factors", fn, cases, "U, S, Vh = torch.linalg.svd(weight, full_matrices=False); "
                          "first = √S_r·Vh[:r], second = U[:, :r]·√S_r", "shapes, largest singular values, "
                          "exact rank-r matrices, r = 1 and full rank", strict)


# ============================================================================ chapter 05
def _expected_csr(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # what torch.sparse_csr stores (``w.to_sparse_csr()``), without its "beta" warning
    rows, cols = (w != 0).nonzero(as_tuple=True)
    ptr = torch.zeros(w.shape[0] + 1, dtype=torch.int64)
    ptr[1:] = torch.cumsum((w != 0).sum(1), 0)
    return w[rows, cols], cols, ptr


def check_dense_to_csr(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Chapter 05: ``dense_to_csr(weight) -> (values, col_indices, row_ptr)`` for a 2-D weight (m, n):
    the nonzero values in row-major order, the column of each, and the m + 1 row pointers (row i's
    nonzeros are ``values[row_ptr[i]:row_ptr[i + 1]]``; ``row_ptr[0] = 0``), as ``torch.sparse_csr`` stores them."""
    def case(label: str, w: torch.Tensor) -> Case:
        def run(f):
            out = call(f, w)
            expect(isinstance(out, (tuple, list)) and len(out) == 3,
                   f"expected a triple (values, col_indices, row_ptr), got {type(out).__name__}",
                   "return values, col_indices, row_ptr")
            values, cols, ptr = out
            want_v, want_c, want_p = _expected_csr(w)
            for what, t in (("values", values), ("col_indices", cols), ("row_ptr", ptr)):
                expect(isinstance(t, torch.Tensor) and t.dim() == 1, f"{what} should be a 1-D tensor",
                       "build each array as a 1-D torch tensor")
            expect(not cols.is_floating_point() and not ptr.is_floating_point(),
                   "col_indices and row_ptr must be integer tensors", "indices are integers (torch.int64)")
            nnz = int((w != 0).sum())
            hint = None
            if values.numel() == w.numel() and nnz < w.numel():
                hint = "store only the nonzeros (`weight != 0`): the zeros are what CSR skips"
            elif ptr.numel() == w.shape[0] and w.shape[0] > 0:
                hint = "row_ptr has m + 1 entries, starting with 0 (row i is ptr[i] .. ptr[i+1] − 1)"
            elif ptr.numel() == w.shape[0] + 1 and torch.equal(ptr[1:], (w != 0).sum(1)):
                hint = "row_ptr is the running (cumulative) count of nonzeros, not each row's count"
            elif torch.equal(values, w.T[w.T != 0]) and not torch.equal(values, want_v):
                hint = "walk the matrix row by row (row-major), not column by column"
            expect(values.shape == want_v.shape and ptr.shape == want_p.shape and cols.shape == want_c.shape,
                   f"lengths values {values.numel()}, col_indices {cols.numel()}, row_ptr {ptr.numel()}; "
                   f"expected {want_v.numel()}, {want_c.numel()}, {want_p.numel()}", hint)
            expect(torch.equal(ptr.long(), want_p), f"row_ptr is {describe_tensor(ptr)}, expected "
                   f"{describe_tensor(want_p)}", hint or "row_ptr[i + 1] − row_ptr[i] = number of nonzeros in row i")
            if not torch.equal(cols.long(), want_c):
                rows_of = torch.repeat_interleave(torch.arange(w.shape[0]), (w != 0).sum(1))
                if torch.equal(cols.long(), rows_of):
                    hint = "store each nonzero's COLUMN index; the row is implied by row_ptr"
                expect(False, f"col_indices is {describe_tensor(cols)}, expected {describe_tensor(want_c)}", hint)
            expect(torch.equal(values, want_v), f"values is {describe_tensor(values)}, expected "
                   f"{describe_tensor(want_v)}", hint or "the nonzeros in row-major order, with their sign")
        return Case(label, run)

    def cases():
        g = torch.Generator().manual_seed(6)
        small = torch.tensor([[0.0, 2.0, 0.0, -1.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 4.0, 0.0]])
        rand = torch.randn(7, 9, generator=g) * (torch.rand(7, 9, generator=g) < 0.3)
        return [case("3×4 with an empty row", small),
                case("7×9 at ~70 % zeros", rand),
                case("dense 3×3 (no zeros)", torch.arange(1.0, 10.0).view(3, 3)),
                case("all zeros 2×5", torch.zeros(2, 5)),
                case("one column 5×1", torch.tensor([[1.0], [0.0], [2.0], [0.0], [3.0]]))]

    return _chapter_check("dense_to_csr", fn, cases, "values = nonzeros row by row; col_indices = their columns; "
                          "row_ptr = [0, cumulative nonzeros per row] (m + 1 entries)",
                          "row-major order, empty rows, all zeros, no zeros", strict)


# ============================================================================ chapter 06
def _number(out, what: str) -> float:
    if isinstance(out, torch.Tensor) and out.numel() == 1:
        out = out.item()
    expect(isinstance(out, (int, float)) and not isinstance(out, bool),
           f"{what} should be a number, got {type(out).__name__}", "return Python floats (`float(t)`)")
    return float(out)


def check_paired_comparison(fn: Callable, strict: bool | None = None) -> CheckResult:
    """Chapter 06: ``paired_comparison(correct_a, correct_b) -> (difference, standard_error)``: two models
    scored on the SAME n test images (bool tensors (n,), True = right). ``difference`` = accuracy of A minus
    accuracy of B; ``standard_error`` = the sample standard deviation (n − 1) of the per-image differences
    d_i = a_i − b_i, divided by sqrt(n)."""
    def case(label: str, a: torch.Tensor, b: torch.Tensor) -> Case:
        def run(f):
            out = call(f, a, b)
            expect(isinstance(out, (tuple, list)) and len(out) == 2,
                   f"expected a pair (difference, standard_error), got {type(out).__name__}",
                   "return difference, standard_error")
            diff, se = _number(out[0], "difference"), _number(out[1], "standard_error")
            n = a.numel()
            d = a.double() - b.double()
            want_diff, want_se = float(d.mean()), float(d.std() / n ** 0.5) if n > 1 else 0.0
            hint = None
            if abs(diff + want_diff) < 1e-9 and abs(want_diff) > 1e-9:
                hint = "difference = accuracy of A minus accuracy of B (the sign is reversed)"
            expect(abs(diff - want_diff) < 1e-9, f"difference {diff:.6g}, expected {want_diff:.6g}", hint)
            pa, pb = float(a.double().mean()), float(b.double().mean())
            wrong = {"the two models saw the SAME images: use the per-image differences d_i = a_i − b_i, not "
                     "the unpaired sqrt(pa(1−pa)/n + pb(1−pb)/n)": (pa * (1 - pa) / n + pb * (1 - pb) / n) ** 0.5,
                     "divide the standard deviation by sqrt(n): the error of a mean, not of one image":
                         float(d.std()) if n > 1 else -1.0,
                     "use the sample standard deviation (divide by n − 1, torch.std's default)":
                         float(d.std(unbiased=False) / n ** 0.5),
                     "take the square root: SE = std(d) / sqrt(n), not the variance":
                         float(d.var() / n) if n > 1 else -1.0}
            for text, value in wrong.items():
                if abs(se - value) < 1e-9 and abs(value - want_se) > 1e-9:
                    hint = text
                    break
            expect(abs(se - want_se) < 1e-9, f"standard_error {se:.6g}, expected {want_se:.6g}", hint)
        return Case(label, run)

    def cases():
        g = torch.Generator().manual_seed(7)
        a = torch.rand(1000, generator=g) < 0.98
        b = a.clone()
        flip = torch.randperm(1000, generator=g)[:15]
        b[flip] = ~b[flip]
        small_a = torch.tensor([True, True, False, True, False, True, True, True, False, True])
        small_b = torch.tensor([True, False, False, True, True, True, False, True, False, False])
        same = torch.rand(50, generator=g) < 0.9
        return [case("10 images", small_a, small_b),
                case("1,000 images, 15 disagreements", a, b),
                case("identical predictions: difference 0, error 0", same, same.clone()),
                case("B better than A", small_b, small_a)]

    return _chapter_check("paired_comparison", fn, cases, "d = a.float() − b.float(); return d.mean(), "
                          "d.std() / sqrt(n)", "sign, pairing, n − 1, sqrt(n)", strict)
