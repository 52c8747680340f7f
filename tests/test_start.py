"""``make start`` serves the whole repository and opens chapter 00 (issue 21).

The test runs the learner's own command, ``make start``, with this test's Python as the active
environment (so the bootstrap finds everything installed and only checks), on a free port, without a
browser and with a known token. It then reads the folders a learner must be able to open from
JupyterLab's file browser, checks which notebook the server was asked to open, and stops the server.
Without ``make`` it runs ``scripts/start.sh``, the command the Makefile runs after the bootstrap.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "prunekit-test-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"token {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, {}


@pytest.fixture
def started(tmp_path):
    """``make start`` running on a free port; yields (base URL, runtime dir, log path)."""
    port = _free_port()
    options = (f"--no-browser --port={port} --ip=127.0.0.1 --IdentityProvider.token={TOKEN} "
               "--LabApp.news_url= --LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate")
    if shutil.which("make"):
        command = ["make", "--no-print-directory", "start", f"JUPYTER_ARGS={options}"]
    else:
        command = ["scripts/start.sh", sys.executable, *options.split()]
    runtime = tmp_path / "runtime"
    env = dict(os.environ, VIRTUAL_ENV=sys.prefix,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               JUPYTER_RUNTIME_DIR=str(runtime), JUPYTER_CONFIG_DIR=str(tmp_path / "config"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp_path / "workspaces"), IPYTHONDIR=str(tmp_path / "ipython"))
    log_path = tmp_path / "start.log"
    log = open(log_path, "w")
    # Its own process group: make, the shell and JupyterLab are stopped together, as Ctrl-C would.
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if _get(f"{url}/api/status")[0] == 200:
                    break
            except OSError:
                pass
            if server.poll() is not None:
                pytest.fail(f"make start exited with {server.returncode}:\n{log_path.read_text()[-3000:]}")
            time.sleep(1)
        else:
            pytest.fail(f"JupyterLab did not answer within 180 s:\n{log_path.read_text()[-3000:]}")
        yield url, runtime, log_path
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_make_start_serves_course_and_labs_and_opens_chapter_00(started):
    url, runtime, log_path = started
    listings = {}
    for folder in ("course", "labs"):
        status, listing = _get(f"{url}/api/contents/{folder}")
        assert status == 200, f"/api/contents/{folder} answered {status}: JupyterLab does not serve the repository root"
        listings[folder] = {entry["name"] for entry in listing["content"]}
    assert "00_why_compress.ipynb" in listings["course"]
    assert {p.name for p in (ROOT / "labs").glob("*.ipynb")} <= listings["labs"]
    # The chapters link to ../labs/...: that resolves only when the root is the repository.
    status, lab = _get(f"{url}/api/contents/labs/01_weight_pruning.ipynb?content=0")
    assert status == 200 and lab["type"] == "notebook"

    # The notebook the server opens (the page a browser would get), relative to the repository root.
    opened = list(runtime.glob("jpserver-file-to-run-*-open.html"))
    assert len(opened) == 1, f"no file-to-open page in {sorted(p.name for p in runtime.iterdir())}"
    assert "/lab/tree/course/00_why_compress.ipynb" in opened[0].read_text()

    log = log_path.read_text()
    assert "Start with course/00_why_compress.ipynb" in log      # says where to start
    assert "Ctrl-C" in log                                       # and how to stop
