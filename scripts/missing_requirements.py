"""Print what ``pip install -e .[EXTRA]`` would still have to install (nothing: an empty line).

Used by scripts/bootstrap.sh to skip pip when everything is there. Reads pyproject.toml, so a package
added there is installed by the next ``make start`` / ``make test``. Versions are not compared: pip does
that when it runs. Usage: python scripts/missing_requirements.py [test]
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def requirements(extras: list[str]) -> list[str]:
    """The requirement strings of pyproject.toml's dependencies and the given extras."""
    text = (ROOT / "pyproject.toml").read_text()
    try:
        import tomllib  # Python >= 3.11
    except ImportError:  # Python 3.10: the two lists are plain arrays of strings
        def array(key: str) -> list[str]:
            match = re.search(rf"^{key}\s*=\s*\[(.*?)\]", text, re.MULTILINE | re.DOTALL)
            return re.findall(r'"([^"]+)"', re.sub(r"#.*", "", match.group(1))) if match else []
        return array("dependencies") + [r for extra in extras for r in array(extra)]
    project = tomllib.loads(text)["project"]
    return list(project["dependencies"]) + [r for e in extras for r in project["optional-dependencies"][e]]


def missing(extras: list[str]) -> list[str]:
    """Distribution names not installed, plus ``prunekit`` unless it is importable from this folder."""
    names = [re.match(r"[A-Za-z0-9_.\-]+", r).group(0) for r in requirements(extras)]
    absent = []
    for name in names:
        try:
            importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            absent.append(name)
    spec = importlib.util.find_spec("prunekit")
    if spec is None or not spec.origin or not Path(spec.origin).resolve().is_relative_to(ROOT):
        absent.append("prunekit")
    return absent


if __name__ == "__main__":
    print(" ".join(missing(sys.argv[1:])))
