"""Helpers shared by the tests of the labs' auto-checks (``test_checks_lab<N>.py``).

A check earns its place only if it catches the mistakes learners really make, so each lab's
test file lists known-wrong implementations and asserts, through :func:`rejected`, that the
check fails on each one with a hint that names the mistake.
"""
from __future__ import annotations

from typing import Callable

from prunekit.checks.core import CheckResult


def rejected(check: Callable[..., CheckResult], fn: Callable, *hint_words: str) -> str:
    """Run ``check(fn)`` (not strict, so it reports instead of raising) and return its line.

    Asserts that the check failed, that its report is one line with a hint, and that the line
    names every one of ``hint_words`` (case-insensitive).
    """
    result = check(fn, strict=False)
    line = result.line
    assert result.status == "fail" and not result, line
    assert "\n" not in line and " — hint: " in line, f"a failure needs a one-line hint: {line!r}"
    for word in hint_words:
        assert word.lower() in line.lower(), f"{word!r} not in: {line}"
    return line


def cases(table: dict[str, list[Callable]]) -> dict:
    """``pytest.mark.parametrize`` arguments ("name", "fn") for a {exercise: [implementations]} table."""
    pairs = [(name, fn) for name in sorted(table) for fn in table[name]]
    return {"argnames": "name,fn", "argvalues": pairs, "ids": [f"{n}-{f.__name__}" for n, f in pairs]}
