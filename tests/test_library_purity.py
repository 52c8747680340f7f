"""The library a learner reads never imports the classroom machinery (checks, grading, release, sandbox)."""
import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "prunekit"
CLASSROOM = ("prunekit.checks", "prunekit.grade", "prunekit.release")
MACHINERY = {"grade.py", "release.py"}  # command-line front ends of prunekit.checks


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            module = node.module or ""
            if node.level:  # `from .checks import x` / `from . import checks`
                module = "prunekit." + module if module else "prunekit"
            found.add(module)
            found.update(f"{module}.{a.name}" for a in node.names)
    return found


def test_library_modules_never_import_the_classroom_package():
    modules = sorted(p for p in PACKAGE.glob("*.py") if p.name not in MACHINERY)
    assert len(modules) > 10
    offenders = {p.name: sorted(i for i in _imports(p) if i.startswith(CLASSROOM)) for p in modules}
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_detector_sees_relative_imports(tmp_path):
    sample = tmp_path / "x.py"
    sample.write_text("from .checks import core\nfrom . import grade\nimport prunekit.release\n")
    assert {"prunekit.checks.core", "prunekit.grade", "prunekit.release"} <= _imports(sample)
