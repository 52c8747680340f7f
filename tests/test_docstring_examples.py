"""Every ``Example:`` in the library's docstrings runs and prints what it shows.

A learner copies these examples first; an example that raises (a missing import) or prints something else
(a changed repr) teaches the wrong thing. Examples marked ``# doctest: +SKIP`` (ones that train or need a
browser) are left out by doctest itself.
"""
import doctest
import importlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "prunekit"
# The sandbox worker runs as a script beside its own modules (`import wire`), not as part of the package.
NOT_IMPORTABLE = {"prunekit.checks.worker"}


def _module_names() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if name not in NOT_IMPORTABLE:
            names.append(name)
    return names


MODULES = _module_names()


def test_every_module_is_collected():
    assert {"prunekit.criteria", "prunekit.gradient_statistics", "prunekit.checks.core"} <= set(MODULES)
    assert len(MODULES) > 40


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(verbose=False)
    failures = []
    for test in finder.find(module, name):
        result = runner.run(test, out=failures.append)
        assert result.failed == 0, f"{test.name}:\n" + "".join(failures)


def test_a_wrong_example_is_caught():
    """The runner used above reports a mismatch (so a passing module is not a silent no-op)."""
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(verbose=False)
    test = parser.get_doctest(">>> 1 + 1\n3\n", {}, "wrong", "wrong.py", 0)
    assert runner.run(test, out=lambda s: None).failed == 1
