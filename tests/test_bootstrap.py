"""scripts/bootstrap.sh: one line per step, the reason a failed install gives, only what is missing."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _missing_requirements():
    spec = importlib.util.spec_from_file_location("missing_requirements", ROOT / "scripts" / "missing_requirements.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_failed_cpu_index_install_says_why_before_falling_back(tmp_path):
    # An environment without pip: both torch installs fail at once, offline, in about a second.
    env_dir = tmp_path / "env"
    venv.create(env_dir, with_pip=False)
    env = dict(os.environ, VIRTUAL_ENV=str(env_dir), PATH=f"{env_dir / 'bin'}{os.pathsep}{os.environ['PATH']}")
    env.pop("CONDA_PREFIX", None)
    run = subprocess.run(["scripts/bootstrap.sh"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    lines = run.stderr.splitlines()
    assert run.returncode != 0 and run.stdout == ""          # no python printed: nothing to use
    assert lines[0] == f"[bootstrap 1/3] python: the active environment, {env_dir / 'bin' / 'python'}"
    assert lines[1].startswith("[bootstrap 2/3] torch: installing the CPU build")
    why = next(i for i, line in enumerate(lines) if line.startswith("[bootstrap 2/3] the PyTorch CPU index failed:"))
    assert "No module named pip" in lines[why]                # pip's own reason, not hidden
    assert lines[why + 1].startswith("[bootstrap 2/3] falling back to your default pip index")


def test_missing_requirements_names_what_pip_would_install(monkeypatch):
    module = _missing_requirements()
    assert module.missing([]) == [] and module.missing(["test"]) == []   # this test's environment has all
    monkeypatch.setattr(module, "requirements", lambda extras: ["numpy>=1.24", "surely-not-installed-xyz>=1"])
    assert module.missing([]) == ["surely-not-installed-xyz"]


def test_requirements_are_read_from_pyproject_on_every_python(monkeypatch):
    module = _missing_requirements()
    course, with_tests = module.requirements([]), module.requirements(["test"])
    assert "torch>=2.1" in course and "jupyterlab>=4.0" in course
    assert set(course) < set(with_tests) and "playwright>=1.40" in with_tests
    if sys.version_info >= (3, 11):   # the Python 3.10 fallback parser reads the same lists as tomllib
        import builtins

        real_import = builtins.__import__

        def no_tomllib(name, *args, **kwargs):
            if name == "tomllib":
                raise ImportError(name)
            return real_import(name, *args, **kwargs)

        monkeypatch.setattr(builtins, "__import__", no_tomllib)
        assert module.requirements(["test"]) == with_tests
