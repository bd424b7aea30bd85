"""Where aiax-bench keeps datasets: ``AIAX_BENCH_DATA`` or the platform's cache directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from aiax_bench.errors import StoreError

__all__ = ["data_dir", "ensure_writable"]

ENV_DATA = "AIAX_BENCH_DATA"


def data_dir() -> Path:
    """The dataset cache directory (not created)."""
    override = os.environ.get(ENV_DATA)
    if override:
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("aiax-bench", appauthor=False))


def ensure_writable(directory: Path) -> Path:
    """Create ``directory`` if needed and prove it is writable, or fail in one line."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise StoreError(directory, f"cache directory is not writable ({exc.strerror or exc})",
                         f"set {ENV_DATA} to a writable directory") from None
    return directory
