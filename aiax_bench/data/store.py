"""The on-disk dataset store: one zarr v3 group per dataset version and profile.

Layout::

    <name>/<version>/<profile>.zarr/
        attrs: name, version, profile, recipe_sha256, store_format, fingerprint, content_sha256
        samples/<part>-<k>/                 attrs: part, seed, voxel_size_um, phantom params
            truth      float32 (Z, Y, X)    exact attenuation (1/cm), partial volume
            labels     uint8   (Z, Y, X)    exact phase labels
            mask       bool    (Z, Y, X)    sample region used for metrics
            high       float32 (Z, Y, X)    reference reconstruction (all angles, reference dose)
            sinogram   float32 (Z, A, D)    reference projections (line integrals)
            angles     float64 (A,)         reference angles (radians)
            splits/<split>/low       float32 (Z, Y, X)
            splits/<split>/sinogram  float32 (Z, a, D)
            splits/<split>/angles    float64 (a,)

A store is written under a temporary name and renamed into place only when
complete, so a failed or interrupted build never leaves a half-written store.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.errors import StoreError

__all__ = ["STORE_FORMAT", "array_fingerprint", "atomic_store", "open_group", "store_path", "write_array"]

STORE_FORMAT = 1
CHUNK = 64


def store_path(root: Path, name: str, version: str, profile: str) -> Path:
    """Where the store of ``name@version`` at ``profile`` lives under the cache ``root``."""
    return root / name / version / f"{profile}.zarr"


def write_array(group, path: str, data: np.ndarray) -> None:
    """Write ``data`` as a chunked, compressed zarr array at ``path`` in ``group``."""
    from zarr.codecs import BloscCodec

    data = np.ascontiguousarray(data)
    chunks = tuple(min(CHUNK, s) for s in data.shape) if data.ndim else ()
    group.create_array(path, data=data, chunks=chunks,
                       compressors=BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"))


def array_fingerprint(data: np.ndarray) -> dict[str, float]:
    """Summary statistics that identify an array up to floating-point noise."""
    values = np.asarray(data, dtype=np.float64)
    return {"mean": float(values.mean()), "std": float(values.std()),
            "min": float(values.min()), "max": float(values.max())}


def content_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the arrays' names, shapes, dtypes and bytes, in name order."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{arr.shape}:{arr.dtype.str}\n".encode())
        digest.update(arr.tobytes())
    return digest.hexdigest()


class atomic_store:
    """Context manager yielding a temporary directory that becomes ``target`` on success.

    On any exception the temporary directory is removed and ``target`` is left
    untouched. If another process completed ``target`` meanwhile, its store wins.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self.tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        if self.target.exists():
            # A replaced store is moved aside first so that readers never see a mix.
            old = self.target.parent / f".{self.target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.target, old)
            os.replace(self.tmp, self.target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.target)
        return False


def open_group(path: Path, *, expect: dict[str, Any], rebuild_hint: str):
    """Open a finished store read-only and check it is what ``expect`` says.

    Raises
    ------
    StoreError
        When the store is missing, unreadable, incomplete, or built from other inputs.
    """
    import zarr

    if not path.exists():
        raise StoreError(path, "store does not exist", rebuild_hint)
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
    except Exception as exc:  # zarr raises many types for damaged metadata
        raise StoreError(path, f"store is corrupted ({type(exc).__name__}: {exc})", rebuild_hint) from None
    if attrs.get("store_format") != STORE_FORMAT:
        raise StoreError(path, f"store format is {attrs.get('store_format')!r}, expected {STORE_FORMAT}",
                         rebuild_hint)
    for key, value in expect.items():
        if attrs.get(key) != value:
            raise StoreError(path, f"store attribute {key} is {attrs.get(key)!r}, expected {value!r}",
                             rebuild_hint)
    return group
