"""Build a dataset's tiny profile in a fresh process of one thread per library, as a clean machine would."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

_BUILD = """
import sys
from pathlib import Path
from aiax_bench.data.loader import load
print(load(sys.argv[1], profile="tiny", root=Path(sys.argv[2])).content_sha256)
"""

#: Builds started ahead of the tests that read them (``start_tiny_one_thread``): dataset -> (process, root).
_STARTED: dict[str, tuple[subprocess.Popen, Path]] = {}


def _start(ref: str, root: Path) -> subprocess.Popen:
    env = {**os.environ, **{k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                              "NUMBA_NUM_THREADS")}}
    return subprocess.Popen([sys.executable, "-c", _BUILD, ref, str(root)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(process: subprocess.Popen, timeout: float) -> str:
    out, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-2000:]
    return out.split()[-1]


def start_tiny_one_thread(ref: str, root: Path) -> None:
    """Start building ``ref`` at the tiny profile into ``root`` in the background (one thread per library): a
    long build then uses a core the single-threaded tests leave idle, and its test waits for it."""
    _STARTED[ref] = (_start(ref, root), root)


def stop_started_builds() -> None:
    """Stop the started builds no test waited for (a run of a few tests)."""
    for process, _ in _STARTED.values():
        if process.poll() is None:
            process.kill()
        process.communicate()
    _STARTED.clear()


def build_tiny_one_thread(ref: str, root: Path, *, timeout: float = 600) -> str:
    """Build ``ref`` at the tiny profile into ``root`` (BLAS, OpenMP and numba on one thread); its content sha256."""
    return _finish(_start(ref, root), timeout)


def tiny_one_thread(ref: str, root: Path, *, timeout: float = 600) -> tuple[Path, str]:
    """``ref``'s tiny profile built in a process of one thread per library: the started build if there is
    one (its root), else built now into ``root``; the root and the content sha256."""
    if ref in _STARTED:
        process, started_root = _STARTED.pop(ref)
        return started_root, _finish(process, timeout)
    return root, build_tiny_one_thread(ref, root, timeout=timeout)
