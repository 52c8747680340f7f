"""``python -m prunekit.release``: generate ``labs/`` from ``solutions/``.

The code lives in :mod:`prunekit.checks.release`, with the rest of the classroom machinery; this module
keeps the command and the names (``prunekit.release.release_notebook``, ...) where they always were.
"""
import sys

from .checks.release import *  # noqa: F401,F403
from .checks.release import ROOT, main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
