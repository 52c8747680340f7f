"""Shared fixtures. Tests that need the real datasets read them from $PRUNEKIT_DATA."""
import json
import os
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
# `make test` runs `pytest -n 2 --dist loadgroup --no-loadscope-reorder`: each work unit (a notebook, a
# test file, or one notebook of a test parametrised over notebooks) goes to whichever worker is free, in
# the order below. The longest units go first, so the run does not end with one worker alone on a
# 5-minute notebook. Length: what the last run on this machine measured (pytest's cache), else the
# run time stored in the notebook's own metadata, else 0 (unit tests are short).
NOTEBOOK_DIRS = ("solutions", "course", "labs")
DURATIONS_KEY = "prunekit/unit_seconds"
_SECONDS: dict[str, float] = {}   # this run's seconds per work unit, saved to the cache at the end


def _unit(item) -> str:
    """The work unit of a test: its xdist_group, one notebook of a notebook-parametrised test, or its file."""
    marker = item.get_closest_marker("xdist_group")
    if marker is not None:
        return str(marker.args[0] if marker.args else marker.kwargs.get("name", "default"))
    path = item.nodeid.split("::")[0]
    params = getattr(getattr(item, "callspec", None), "params", {})
    notebooks = [Path(v).stem for v in params.values() if isinstance(v, Path) and v.suffix == ".ipynb"]
    return f"{path}::{notebooks[0]}" if notebooks else path


def _stored_seconds(unit: str) -> float:
    """Seconds the notebook named in ``unit`` took when its outputs were stored (0 if unknown)."""
    import re
    from datetime import datetime

    named = re.search(r"\d\d_\w+?(?=\.ipynb|$|[^\w])", unit)   # "solutions/01_weight_pruning.ipynb", "01_weight_pruning"
    root = Path(__file__).resolve().parents[1]
    for folder in NOTEBOOK_DIRS[:2] if named else ():   # labs/ store no outputs: their solution's time stands in
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


@pytest.hookimpl(tryfirst=True)   # before xdist reads the xdist_group marks
def pytest_collection_modifyitems(config, items):
    cache = getattr(config, "cache", None)   # None with -p no:cacheprovider
    measured = cache.get(DURATIONS_KEY, {}) if cache is not None else {}
    units, first_index = {}, {}
    for index, item in enumerate(items):
        unit = _unit(item)
        units[item] = unit
        first_index.setdefault(unit, index)
        if item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group(unit))
    estimate = {unit: measured.get(unit) or _stored_seconds(unit) for unit in first_index}
    items.sort(key=lambda item: (-estimate[units[item]], first_index[units[item]]))


def _unit_of_report(nodeid: str) -> str:
    return nodeid.rsplit("@", 1)[1] if "@" in nodeid else nodeid.split("::")[0]


def pytest_runtest_logreport(report):
    """Add up each work unit's seconds (setup, call, teardown) as its reports come in."""
    unit = _unit_of_report(report.nodeid)
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
