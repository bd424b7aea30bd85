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


def build_tiny_one_thread(ref: str, root: Path, *, timeout: float = 600) -> str:
    """Build ``ref`` at the tiny profile into ``root`` (BLAS, OpenMP and numba on one thread); its content sha256."""
    env = {**os.environ, **{k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                              "NUMBA_NUM_THREADS")}}
    out = subprocess.run([sys.executable, "-c", _BUILD, ref, str(root)], env=env, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout.split()[-1]
