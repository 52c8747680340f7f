"""Grading throughput: how many Lab 1 submissions per minute a class run grades.

    python -m prunekit.checks.benchmark                 # 10 copies of the Lab 1 solution, --jobs 2
    python -m prunekit.checks.benchmark --students 20 --jobs 2 --lab 01_weight_pruning

Copies of the solution (full marks, so every check runs all its cases) are graded exactly as
``python -m prunekit.grade FOLDER --jobs N`` grades them; the time includes starting the grader processes.
"""
from __future__ import annotations

import argparse
import resource
import shutil
import tempfile
import time
from pathlib import Path

from .classroom import grade_many
from .grading import ROOT
from .sandbox import bwrap_path


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (grader processes, workers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m prunekit.checks.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("--lab", default="01_weight_pruning")
    parser.add_argument("--students", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--no-bwrap", action="store_true",
                        help="plain sandbox (the CPU time of workers under bwrap is not visible to the grader)")
    args = parser.parse_args(argv)
    solution = ROOT / "solutions" / f"{args.lab}.ipynb"
    with tempfile.TemporaryDirectory(prefix="prunekit-bench-") as tmp:
        paths = []
        for i in range(args.students):
            target = Path(tmp) / f"student{i:03d}" / solution.name
            target.parent.mkdir()
            shutil.copyfile(solution, target)
            paths.append(target)
        before = _cpu_seconds()
        start = time.perf_counter()
        use_bwrap = bwrap_path() is not None and not args.no_bwrap
        results = grade_many(paths, ROOT / "solutions", jobs=args.jobs, use_bwrap=use_bwrap, hide=(Path(tmp),))
        seconds = time.perf_counter() - start
        cpu = _cpu_seconds() - before
    full = sum(r.total == r.max_total for r in results)
    for r in results:
        if r.total != r.max_total:
            print(f"{r.path}: {r.total:g}/{r.max_total:g} {r.error} "
                  f"{[e.message[:120] for e in r.exercises if not e.points]}")
    print(f"{args.students} submissions of {args.lab} graded in {seconds:.1f} s with --jobs {args.jobs} "
          f"({'bubblewrap' if use_bwrap else 'plain sandbox'}): {60 * args.students / seconds:.1f} per minute; "
          f"{full}/{len(results)} scored full marks")
    if not use_bwrap:
        print(f"CPU time (grader + workers): {cpu / args.students:.1f} s per submission, so on {args.jobs} otherwise "
              f"idle cores at most {60 * args.students * args.jobs / cpu:.1f} per minute")
    return 0 if full == len(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
