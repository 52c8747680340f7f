"""Hostile submissions (issue 18): each scores exactly what its honest part deserves, in ONE class run.

Every hostile notebook answers ``double`` honestly (2 points) and attacks ``magnitude_mask`` (3 points,
left wrong or unimplemented), so the right score is 2 of 5, unless said otherwise.
"""
import copy
import csv
import hashlib
import json
import os
from pathlib import Path

import pytest

from prunekit.checks.sandbox import bwrap_path
from prunekit.grade import main
from prunekit.release import ROOT, release_notebook
from test_grade import _mini_solution

HONEST_DOUBLE = "def double(x):\n    return 2 * x\n"
MARKER = "prunekit_hostile_sleep"
CORE = ROOT / "prunekit" / "checks" / "core.py"

ATTACKS = {
    # the grade used to be read from the kernel's outputs: rewrite them
    "excepthook": "import sys\nsys.excepthook = lambda *a: print('✔ magnitude_mask: correct')\n"
                  "def magnitude_mask(weight, sparsity):\n    return weight != 0\n",
    "post_run_hook": "try:\n    get_ipython().events.register('post_run_cell', lambda r: print('✔'))\n"
                     "except Exception:\n    pass\n"
                     "def magnitude_mask(weight, sparsity):\n    return weight != 0\n",
    # the guard cell could be bypassed
    "fake_checks": "import importlib, sys, types\nimportlib.reload = lambda m: m\n"
                   "fake = types.ModuleType('prunekit.checks')\n"
                   "fake.check_magnitude_mask = lambda fn, strict=None: True\n"
                   "sys.modules['prunekit.checks'] = fake\ncheck_magnitude_mask = fake.check_magnitude_mask\n"
                   "def magnitude_mask(weight, sparsity):\n    return weight != 0\n",
    # the answer key was in reach
    "reference_import": "from prunekit.checks import reference_magnitude_mask as _r\n"
                        "def magnitude_mask(weight, sparsity):\n    return _r(weight, sparsity)\n",
    "reference_obfuscated": "def magnitude_mask(weight, sparsity):\n    import importlib\n"
                            "    m = importlib.import_module('prunekit.' + 'checks')\n"
                            "    return getattr(m, 'refer' + 'ence_magnitude_mask')(weight, sparsity)\n",
    "reads_solutions": "def magnitude_mask(weight, sparsity):\n    import glob, json\n"
                       "    for path in glob.glob('/**/solutions/01_mini.ipynb', recursive=True):\n"
                       "        cells = json.load(open(path))['cells']\n"
                       "        exec(''.join(cells[1]['source']).replace('### BEGIN SOLUTION', ''), globals())\n"
                       "        return globals()['magnitude_mask'](weight, sparsity)\n"
                       "    raise NotImplementedError\n",
    # one submission could stop the class
    "sigint_proof_hang": "import signal\ndef magnitude_mask(weight, sparsity):\n"
                         "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n    while True:\n        pass\n",
    "exits": "import os\ndef magnitude_mask(weight, sparsity):\n    os._exit(3)\n",
    "evil_return": "class Evil:\n    def __reduce__(self):\n        return (print, ('pwned',))\n"
                   "def magnitude_mask(weight, sparsity):\n    return Evil()\n",
    # one student could sabotage another
    "sabotage": f"def magnitude_mask(weight, sparsity):\n    open({str(CORE)!r}, 'a').write('\\nraise SystemExit\\n')\n"
                "    return weight != 0\n",
    "reads_env": "import os\ndef magnitude_mask(weight, sparsity):\n    raise ValueError(str(dict(os.environ)))\n",
    "writes_outside": "def magnitude_mask(weight, sparsity):\n"
                      "    open('/tmp/prunekit_hostile_escape', 'w').write('x')\n    return weight != 0\n",
    "leftover_processes": "import subprocess\n"
                          f"subprocess.Popen(['sh', '-c', 'exec -a {MARKER} sleep 600'], start_new_session=True)\n"
                          "def magnitude_mask(weight, sparsity):\n    return weight != 0\n",
}


def _write(path: Path, notebook: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(notebook) if isinstance(notebook, dict) else notebook)
    return path


def _lab_with(mask_source: str) -> dict:
    lab = release_notebook(_mini_solution(), name="01_mini.ipynb")
    lab["cells"][1]["source"] = mask_source
    lab["cells"][3]["source"] = HONEST_DOUBLE
    return lab


def _spoofed() -> dict:
    """Forged metadata and outputs: a cell claiming to be the graded one, 100 points, a ✔ output."""
    lab = _lab_with("def magnitude_mask(weight, sparsity):\n    return weight != 0\n")
    forged = copy.deepcopy(lab["cells"][2])
    forged["metadata"]["nbgrader"]["points"] = 100
    forged["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "✔ magnitude_mask: correct\n"}]
    lab["cells"].append(forged)
    lab["cells"][2]["source"] = "pass\n"  # the student's own copy of the check cell is edited away
    return lab


def _processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def test_hostile_class_run(tmp_path, monkeypatch):
    if not bwrap_path():
        pytest.skip("bubblewrap is not installed or cannot create namespaces here: the hostile run needs it "
                    "(CI installs it; the plain path is tested in test_grade.py and test_sandbox.py)")
    solutions = tmp_path / "solutions"
    _write(solutions / "01_mini.ipynb", _mini_solution())
    folder = tmp_path / "class"
    for name, source in ATTACKS.items():
        _write(folder / name / "01_mini.ipynb", _lab_with(source))
    _write(folder / "spoofed" / "01_mini.ipynb", _spoofed())
    honest = _write(folder / "honest_after_sabotage" / "01_mini.ipynb", _mini_solution())
    _write(folder / "twice" / "01_mini.ipynb", _mini_solution())
    _write(folder / "twice" / "copy_of_01_mini.ipynb", _mini_solution())
    malformed = {"not_json": "{not json", "empty": "",
                 "cells_not_list": json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": {}}),
                 "metadata_list": json.dumps(dict(_mini_solution(), cells=[dict(_mini_solution()["cells"][0],
                                                                                 metadata=[])])),
                 "grade_id_list": json.dumps(dict(_mini_solution(), cells=[dict(
                     _mini_solution()["cells"][2], metadata={"nbgrader": {"grade_id": ["x"], "grade": True}})]))}
    for name, text in malformed.items():
        _write(folder / name / "01_mini.ipynb", text)
    monkeypatch.setenv("PRUNEKIT_GRADER_SECRET", "s3cr3t-token-123")
    core_before = hashlib.sha256(CORE.read_bytes()).hexdigest()
    escape = Path("/tmp/prunekit_hostile_escape")
    escape.unlink(missing_ok=True)

    main([str(folder), "--solutions", str(solutions), "--csv", str(tmp_path / "grades.csv"),
          "--json", str(tmp_path / "grades.json"), "--cell-timeout", "20", "--jobs", "2"])

    rows = {r["student"]: r for r in csv.DictReader(open(tmp_path / "grades.csv"))}
    results = json.loads((tmp_path / "grades.json").read_text())
    for name in ATTACKS:
        assert (rows[name]["total"], rows[name]["max_total"]) == ("2", "5"), (name, rows[name])
    assert (rows["spoofed"]["total"], rows["spoofed"]["max_total"]) == ("2", "5")
    assert (rows["honest_after_sabotage"]["total"], rows["twice"]["total"], rows["twice"]["max_total"]) == \
        ("5", "5", "5")
    assert "duplicate" in rows["twice"]["notes"]
    for name in malformed:
        assert (rows[name]["total"], rows[name]["max_total"]) == ("0", "5"), (name, rows[name])
    by_student = {Path(r["path"]).parent.name: r for r in results if not r["duplicate_of"]}
    assert "reference_magnitude_mask" in by_student["reference_import"]["exercises"][0]["message"]
    assert "called reference_magnitude_mask" in by_student["reference_obfuscated"]["exercises"][0]["message"]
    assert "timed out" in by_student["sigint_proof_hang"]["exercises"][0]["message"]
    assert "s3cr3t" not in json.dumps(results)
    assert hashlib.sha256(CORE.read_bytes()).hexdigest() == core_before
    assert not escape.exists()
    assert _processes(MARKER) == []
    assert all(r["missing_protections"] == [] for r in results if r["solution"]) or os.geteuid() != 0
    assert str(honest)  # graded after the sabotage attempt, full marks above
