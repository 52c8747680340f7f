"""environment.yml (conda, Binder) and pyproject.toml (pip, make start) ask for the same course.

environment.yml lists what the course needs, exactly pyproject.toml's ``dependencies`` with the same
lower bounds (conda's name for torch is ``pytorch-cpu``); the test tools stay in the ``test`` extra,
which ``make test`` installs and ``make start`` does not.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import yaml  # PyYAML comes with JupyterLab (jupyter_events)

ROOT = Path(__file__).resolve().parents[1]
CONDA_NAMES = {"torch": "pytorch-cpu"}   # pip name -> conda-forge name where they differ
CONDA_ONLY = {"python", "pip"}


def _load_requirements_helper():
    spec = importlib.util.spec_from_file_location("missing_requirements", ROOT / "scripts" / "missing_requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _split(requirement: str) -> tuple[str, str]:
    """``"numpy>=1.24"`` -> ``("numpy", ">=1.24")``; a conda pin ``python=3.11`` -> ``("python", "=3.11")``."""
    match = re.fullmatch(r"\s*([A-Za-z0-9_.\-]+)\s*(.*?)\s*", requirement)
    return match.group(1).lower(), match.group(2).replace(" ", "")


def _pip_requirements(extras: list[str]) -> dict[str, str]:
    return dict(_split(r) for r in _load_requirements_helper().requirements(extras))


def _conda() -> tuple[dict[str, str], list[str]]:
    """environment.yml's conda packages ``{name: version spec}`` and its pip lines."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = {}, []
    for entry in env["dependencies"]:
        if isinstance(entry, dict):
            pip += entry.get("pip", [])
        else:
            name, spec = _split(entry)
            conda[name] = spec
    return conda, pip


def test_environment_yml_has_the_course_dependencies_with_the_same_lower_bounds():
    course = _pip_requirements([])
    conda, pip = _conda()
    expected = {CONDA_NAMES.get(name, name): spec for name, spec in course.items()}
    listed = {name: spec for name, spec in conda.items() if name not in CONDA_ONLY}
    assert listed == expected, (f"environment.yml and pyproject.toml's dependencies differ: only in environment.yml "
                                f"{sorted(set(listed) - set(expected))}, only in pyproject.toml "
                                f"{sorted(set(expected) - set(listed))}, bounds {listed} vs {expected}")
    assert "-e ." in pip, "environment.yml must install prunekit itself (pip: -e .)"


def test_test_tools_stay_out_of_the_course_environment():
    course, with_tests = _pip_requirements([]), _pip_requirements(["test"])
    test_only = set(with_tests) - set(course)
    assert {"pytest", "nbval", "playwright"} <= test_only, test_only
    conda, pip = _conda()
    in_environment = set(conda) | {_split(line)[0] for line in pip if not line.startswith("-")}
    assert not test_only & in_environment, f"test-only tools in environment.yml: {sorted(test_only & in_environment)}"


def test_environment_python_satisfies_requires_python():
    conda, _ = _conda()
    pinned = tuple(int(p) for p in conda["python"].lstrip("=").split("."))
    text = (ROOT / "pyproject.toml").read_text()
    minimum = re.search(r'^requires-python\s*=\s*">=\s*([\d.]+)"', text, re.MULTILINE).group(1)
    assert pinned >= tuple(int(p) for p in minimum.split(".")), (conda["python"], minimum)
