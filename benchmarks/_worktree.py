"""The code of an earlier git commit, checked out in a temporary worktree, for before/after benchmarks."""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent


@contextmanager
def commit_tree(commit: str) -> Iterator[Path]:
    """A detached worktree of ``commit``, removed on exit (put it first on ``PYTHONPATH`` to run its code)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "add", "--detach", str(tree), commit],
                       check=True, capture_output=True)
        try:
            yield tree
        finally:
            subprocess.run(["git", "-C", str(REPOSITORY), "worktree", "remove", "--force", str(tree)],
                           check=True, capture_output=True)
