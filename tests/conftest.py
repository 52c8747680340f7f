"""Shared fixtures. Tests that need the real datasets read them from $PRUNEKIT_DATA."""
import json
import os
import re
from pathlib import Path

import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def pytest_configure(config):
    # Tests read real data from $PRUNEKIT_DATA (CI: ../shared/data); default to the sibling folder.
    if not os.environ.get("PRUNEKIT_DATA") and SHARED.is_dir():
        os.environ["PRUNEKIT_DATA"] = str(SHARED)
    torch.set_num_threads(1)


@pytest.fixture
def data_root() -> Path:
    root = os.environ.get("PRUNEKIT_DATA")
    if not root or not Path(root).is_dir():
        pytest.fail("PRUNEKIT_DATA must point at the course data (e.g. ../shared/data); see README")
    return Path(root)


@pytest.fixture
def isolated_cache(tmp_path, monkeypatch) -> Path:
    """A private per-user cache and no $PRUNEKIT_DATA: only what the test passes is searched."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("PRUNEKIT_CACHE", str(cache))
    monkeypatch.delenv("PRUNEKIT_DATA", raising=False)
    return cache


# ----------------------------------------------------------------------------- scheduling (make test)
# `make test` runs `pytest -n 2 --dist loadgroup --no-loadscope-reorder`. A work unit is a notebook, a test
# file, or one notebook of a test parametrised over notebooks (its id names the notebook, e.g.
# `test_lab_runs_unsolved_in_fast_mode[01_weight_pruning]`); each unit goes whole to whichever worker is
# free, longest first, so the run does not end with one worker alone on a 5-minute notebook. Length: what
# the last run on this machine measured (pytest's cache), else the run time stored in the notebook's own
# metadata, else 0 (unit tests are short). The units are made here, from the test ids, because xdist's
# own `xdist_group` marks do not reach its scheduler under pytest 9.2 (xdist 3.8 sets `item._nodeid`, a
# name pytest no longer reads).
DURATIONS_KEY = "prunekit/unit_seconds"
_SECONDS: dict[str, float] = {}   # this run's seconds per work unit, saved to the cache at the end
_NOTEBOOK_PARAM = re.compile(r"\[(?:[\w.-]+/)?(\d\d_\w+?)(?:\.ipynb)?\]$")


def work_unit(nodeid: str) -> str:
    """The work unit of a test id: its file, or ``file::notebook`` for a notebook-parametrised test.

    Example:
        >>> work_unit("tests/test_labs.py::test_lab_runs_unsolved_in_fast_mode[01_weight_pruning]")
        'tests/test_labs.py::01_weight_pruning'
        >>> work_unit("solutions/06_compression.ipynb::Cell 3")
        'solutions/06_compression.ipynb'
    """
    path = nodeid.split("::")[0]
    notebook = _NOTEBOOK_PARAM.search(nodeid)
    return f"{path}::{notebook.group(1)}" if notebook and "::" in nodeid else path


def _stored_seconds(name: str) -> float:
    """Seconds the notebook named in ``name`` took when its outputs were stored (0 if unknown)."""
    from datetime import datetime

    named = re.search(r"\d\d_\w+?(?=\.ipynb|$|[^\w])", name)   # "course/01_concepts.ipynb", "x::01_concepts"
    root = Path(__file__).resolve().parents[1]
    for folder in ("solutions", "course") if named else ():   # labs store no outputs: their solution stands in
        path = root / folder / f"{named.group(0)}.ipynb"
        if path.is_file():
            total = 0.0
            for cell in json.loads(path.read_text()).get("cells", []):
                times = cell.get("metadata", {}).get("execution", {})
                start, end = times.get("iopub.execute_input"), times.get("shell.execute_reply")
                if start and end:
                    total += (datetime.fromisoformat(end.replace("Z", "+00:00"))
                              - datetime.fromisoformat(start.replace("Z", "+00:00"))).total_seconds()
            return total
    return 0.0


def _estimate(unit: str, item, measured: dict) -> float:
    if unit in measured:
        return measured[unit]
    group = item.get_closest_marker("xdist_group")   # e.g. the browser test: "browser-01_weight_pruning"
    return _stored_seconds(unit) or (_stored_seconds(str(group.args[0])) if group and group.args else 0.0)


def pytest_collection_modifyitems(config, items):
    """Order the tests by work unit, longest unit first (the order inside a unit is kept)."""
    cache = getattr(config, "cache", None)   # None with -p no:cacheprovider
    measured = cache.get(DURATIONS_KEY, {}) if cache is not None else {}
    first_index, estimate = {}, {}
    for index, item in enumerate(items):
        unit = work_unit(item.nodeid)
        if unit not in first_index:
            first_index[unit], estimate[unit] = index, _estimate(unit, item, measured)
    items.sort(key=lambda item: (-estimate[work_unit(item.nodeid)], first_index[work_unit(item.nodeid)]))


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config, log):
    """With ``--dist loadgroup``: xdist's scope scheduler, with :func:`work_unit` as the scope."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class WorkUnitScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return work_unit(nodeid)

    return WorkUnitScheduling(config, log)


def pytest_runtest_logreport(report):
    """Add up each work unit's seconds (setup, call, teardown) as its reports come in."""
    unit = work_unit(report.nodeid)
    _SECONDS[unit] = _SECONDS.get(unit, 0.0) + report.duration


# ----------------------------------------------------------------------------- the last line of make test
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Remember which parts were skipped and why; pytest_unconfigure prints it after pytest's own summary."""
    parts: dict[str, list[str]] = {}
    for report in terminalreporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        parts.setdefault(report.nodeid.split("::")[0], []).append(reason.removeprefix("Skipped: "))
    config._prunekit_skipped = parts


def skipped_line(parts: dict[str, list[str]]) -> str:
    """One plain line naming what was skipped, e.g. ``SKIPPED: tests/test_browser.py (1 test: no Chromium)``.

    Example:
        >>> skipped_line({})
        'Nothing was skipped.'
    """
    if not parts:
        return "Nothing was skipped."
    described = []
    for path, reasons in parts.items():
        unique = sorted(set(reasons))
        described.append(f"{path} ({len(reasons)} test{'s' if len(reasons) > 1 else ''}: {'; '.join(unique)})")
    return "SKIPPED: " + ", ".join(described)


def pytest_unconfigure(config):
    if hasattr(config, "workerinput"):   # an xdist worker: the controller reports
        return
    cache = getattr(config, "cache", None)
    if cache is not None and _SECONDS:
        cache.set(DURATIONS_KEY, {**cache.get(DURATIONS_KEY, {}), **_SECONDS})
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None and hasattr(config, "_prunekit_skipped"):
        reporter.write_line(skipped_line(config._prunekit_skipped))
