"""The machinery behind every ``check_*`` function of the labs.

A check runs a learner's function on a list of :class:`Case` objects (fixed small examples first,
then randomised property cases) and prints **one** line:

* ``✔ name: ...``                                   everything matched;
* ``✘ name: <what went wrong> — hint: <how to fix>``  the first case that failed;
* ``… name: not implemented yet``                     the function still raises NotImplementedError.

It returns a :class:`CheckResult` that is truthy only when the function is right, and it never
raises in a learner's notebook: exceptions from the learner's code are reported, not propagated.
With ``$PRUNEKIT_STRICT=1`` (the solutions in CI) a result other than "pass" raises AssertionError.

:func:`use_or_reference` lets a lab continue with a reference implementation when a check failed.

Example:
    >>> def double(x): return 2 * x
    >>> cases = [Case("double(2)", lambda fn: expect(fn(2) == 4, f"double(2) returned {fn(2)}"))]
    >>> bool(run_check("double", double, cases, hint="multiply by two", strict=False))
    ✔ double: correct on 1 case
    True
"""
from __future__ import annotations

import copy
import os
import re
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

import torch

STRICT_ENV = "PRUNEKIT_STRICT"
PASS, FAIL, NOT_IMPLEMENTED = "pass", "fail", "not_implemented"
STATUSES = (PASS, FAIL, NOT_IMPLEMENTED)
SYMBOLS = {PASS: "✔", FAIL: "✘", NOT_IMPLEMENTED: "…"}


def strict_mode() -> bool:
    """True when ``$PRUNEKIT_STRICT`` is ``1/true/yes/on``: failing checks then raise AssertionError."""
    from ..notebook import env_flag

    return env_flag(STRICT_ENV, False)


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check. ``bool(result)`` is True only for ``status == "pass"``.

    Attributes:
        name: the function checked (``"magnitude_mask"``).
        status: ``"pass"``, ``"fail"`` or ``"not_implemented"``.
        message: what was verified, or what went wrong.
        hint: how to fix it (empty on success).
        cases: how many cases passed before the verdict.
    """

    name: str
    status: str
    message: str
    hint: str = ""
    cases: int = 0

    def __post_init__(self):
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    def __bool__(self) -> bool:
        return self.status == PASS

    @property
    def line(self) -> str:
        """The one line printed for this result."""
        text = f"{SYMBOLS[self.status]} {self.name}: {self.message}"
        text = f"{text} — hint: {self.hint}" if self.hint and self.status == FAIL else text
        # One line even when a message quotes a multi-line repr (a learner's 5-D tensor).
        return re.sub(r"\s*\n\s*", " ", text)

    def __repr__(self) -> str:  # short, so a bare ``check_x(x)`` at the end of a cell stays readable
        return f"CheckResult({self.name!r}, {self.status!r})"


class CheckFailed(AssertionError):
    """Raised inside a case when the learner's output is wrong; carries an optional specific hint."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint


def expect(condition: Any, message: str, hint: str | None = None) -> None:
    """Fail the current case with ``message`` (and a case-specific ``hint``) unless ``condition``."""
    if not condition:
        raise CheckFailed(message, hint)


@dataclass(frozen=True)
class Case:
    """One example a check runs: ``run(fn)`` calls the learner's ``fn`` and raises CheckFailed if wrong.

    ``label`` names the case in failure messages, e.g. ``"4 weights, sparsity 0.5"``.
    """

    label: str
    run: Callable[[Callable], None] = field(repr=False)


def _is_not_implemented(exc: BaseException) -> bool:
    return isinstance(exc, NotImplementedError)


def _describe(exc: BaseException) -> str:
    """``TypeError: ... (line 3 of your function)``: the learner's frame, not the checker's."""
    if getattr(exc, "remote_type", None):  # raised in a grading worker (see remote.py): its own description
        where = f" ({exc.remote_where})" if getattr(exc, "remote_where", "") else ""
        text = str(exc).strip()
        return f"{exc.remote_type}{': ' + text if text else ''}{where}"
    frames = traceback.extract_tb(exc.__traceback__)
    here = os.path.dirname(os.path.abspath(__file__))
    theirs = [f for f in frames if not os.path.abspath(f.filename).startswith(here)]
    where = ""
    if theirs:
        last = theirs[-1]
        where = f" (in {last.name}, line {last.lineno}" + (f": `{last.line.strip()}`)" if last.line else ")")
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}{': ' + text if text else ''}{where}"


def run_check(name: str, fn: Callable, cases: Iterable[Case] | Callable[[], Iterable[Case]], hint: str, *,
              passed: str = "", strict: bool | None = None, quiet: bool = False) -> CheckResult:
    """Run ``cases`` on ``fn``, print one line, return a :class:`CheckResult`.

    torch's global random state is the same afterwards as before: building the cases (``nn.Linear``
    draws its initial weights) and the learner's code (``torch.manual_seed`` inside a function) must
    not change the numbers the rest of the lab draws, or a lab would give different results
    depending on whether, and with which answer, a check cell was run.

    Args:
        name: the function's name as the lab asks for it.
        fn: the learner's function.
        cases: :class:`Case` objects, run in order; the first failure decides the message. Pass the
            function that builds them (no arguments) to build them inside the protected RNG too.
        hint: the general hint shown on failure when the failing case has no specific one.
        passed: what the success line says was verified (e.g. ``"exact zero counts, ties, s = 0 and 1"``).
        strict: raise AssertionError unless the result passes; default ``$PRUNEKIT_STRICT``.
        quiet: do not print (the result still carries ``.line``).

    Never raises, except AssertionError in strict mode (and KeyboardInterrupt).
    """
    strict = strict_mode() if strict is None else strict
    with torch.random.fork_rng(devices=[]):
        result = _evaluate(name, fn, list(cases() if callable(cases) else cases), hint, passed)
    if not quiet:
        print(result.line, flush=True)
    if strict and not result:
        raise AssertionError(f"{result.line} [{STRICT_ENV}=1]")
    return result


def _evaluate(name: str, fn: Callable, cases: list[Case], hint: str, passed: str) -> CheckResult:
    if not callable(fn):
        return CheckResult(name, FAIL, f"expected a function, got {type(fn).__name__} {fn!r:.60}",
                           f"define `def {name}(...):` in the exercise cell and run it")
    done = 0
    for case in cases:
        try:
            case.run(fn)
        except CheckFailed as failure:
            return CheckResult(name, FAIL, f"{case.label}: {failure.message}", failure.hint or hint, done)
        except Exception as exc:  # noqa: BLE001 - a learner's bug must never crash the notebook
            if _is_not_implemented(exc):
                return CheckResult(name, NOT_IMPLEMENTED, "not implemented yet", "", done)
            return CheckResult(name, FAIL, f"{case.label}: raised {_describe(exc)}", hint, done)
        done += 1
    plural = "case" if done == 1 else "cases"
    return CheckResult(name, PASS, f"correct on {done} {plural}" + (f" ({passed})" if passed else ""), "", done)


def use_or_reference(fn: Callable, result: CheckResult | bool, reference: Callable, name: str | None = None,
                     quiet: bool = False) -> Callable:
    """Your ``fn`` if its check passed, else ``reference`` (so the rest of the lab still runs).

    Example:
        >>> ok = CheckResult("f", "fail", "wrong")
        >>> use_or_reference(lambda x: 0, ok, reference=abs, name="f")(-3)
        → f: using prunekit's reference implementation for the rest of the lab
        3
    """
    if not callable(reference):
        raise TypeError(f"reference must be a function, got {type(reference).__name__}")
    if result:
        return fn
    if name is None:
        name = result.name if isinstance(result, CheckResult) else getattr(fn, "__name__", "this function")
    if not quiet:
        print(f"→ {name}: using prunekit's reference implementation for the rest of the lab", flush=True)
    return reference


# ----------------------------------------------------------------------------- helpers for writing cases
def snapshot(value: Any) -> Any:
    """A deep copy of tensors / dicts / lists of tensors, to detect in-place changes to inputs."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, Mapping):
        return {k: snapshot(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(snapshot(v) for v in value)
    return copy.deepcopy(value)


def same(a: Any, b: Any) -> bool:
    """Exact equality of (nested) tensors, dicts, lists and plain values, NaN-free."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and a.shape == b.shape
                and a.dtype == b.dtype and bool(torch.equal(a, b)))
    if isinstance(a, Mapping) or isinstance(b, Mapping):
        return (isinstance(a, Mapping) and isinstance(b, Mapping) and set(a) == set(b)
                and all(same(a[k], b[k]) for k in a))
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


def call(fn: Callable, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` and fail the case if it modified any of its tensor arguments in place."""
    before = [snapshot(a) for a in args], {k: snapshot(v) for k, v in kwargs.items()}
    out = fn(*args, **kwargs)
    for i, (old, new) in enumerate(zip(before[0], args)):
        expect(same(old, new), f"your function changed its argument #{i + 1} in place",
               "work on a copy (e.g. `weight.abs()` or `weight * mask` create new tensors); "
               "never write into the inputs")
    for key, old in before[1].items():
        expect(same(old, kwargs[key]), f"your function changed its argument `{key}` in place",
               "work on a copy; never write into the inputs")
    return out


def as_mask(out: Any, shape: tuple[int, ...], what: str = "the mask") -> torch.Tensor:
    """Validate that ``out`` is a 0/1 (bool, int or float) tensor of ``shape``; return it as bool."""
    expect(isinstance(out, torch.Tensor), f"{what} should be a torch.Tensor, got {type(out).__name__}",
           "build it with torch operations, e.g. `torch.ones_like(weight, dtype=torch.bool)`")
    expect(tuple(out.shape) == tuple(shape), f"{what} has shape {tuple(out.shape)}, expected {tuple(shape)}",
           "a mask has exactly the shape of the weight it masks; reshape with `.view_as(weight)`")
    if out.dtype == torch.bool:
        return out.detach()
    expect(not out.is_complex(), f"{what} is complex ({out.dtype})")
    values = out.detach()
    stray = values[(values != 0) & (values != 1)]
    if stray.numel():  # build the message only when there is something to show
        expect(False, f"{what} contains values other than 0 and 1 (e.g. {stray[0].item():.4g})",
               "a mask holds only 0/1 (or False/True): 1 = keep the weight, 0 = prune it")
    return values != 0


def describe_tensor(t: torch.Tensor, limit: int = 8) -> str:
    """A short printable form of a small tensor, for failure messages."""
    flat = t.detach().flatten()
    items = ", ".join(f"{v:.4g}" if t.is_floating_point() else str(v) for v in flat[:limit].tolist())
    return f"[{items}{', ...' if flat.numel() > limit else ''}] (shape {tuple(t.shape)})"
