"""Reconstruct a scan larger than memory: slabs of detector rows in, slabs of slices out to zarr.

A 2048² × 1,500-projection scan is 25 GB of float32 projections and its
2048³ volume 34 GB: neither fits in a workstation's memory, and
:func:`aiax_bench.ingest.reconstruct` holds both. Here the projections stay
in their file (a memory-mapped ``.npy`` or raw file, an HDF5 dataset or a
zarr array, any array that can be sliced), and each slab of detector rows is
pre-processed exactly as :func:`aiax_bench.ingest.preprocess.preprocess` does,
reconstructed and written before the next is read. Peak memory is bounded by
the slab, which is sized from a budget in bytes, plus the projector's matrix
where the geometry is small enough for it to be kept (at most its 4 GiB
limit; 2048² × 1,500 angles back-projects without one).

Every step is row-local once the centre of rotation is fixed (found once, on
the middle rows), except the 3×3 dead-pixel median and the zinger filter,
which read a halo of neighbouring rows. Each slice is therefore the same bytes
as the in-memory reconstruction on the same device gives, whatever the slab
size (``tests/test_streamed.py``). Paganin phase retrieval filters whole
projections and is refused here.

The volume is written under a temporary name beside the target, with the
finished slabs recorded in its attributes: an interrupted run started again
with the same inputs and settings continues where it stopped, and the target
appears only when complete.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.errors import InputError
from aiax_bench.ingest.preprocess import ZINGER_SIZE, Preprocessing, preprocess
from aiax_bench.ingest.scan import Projections
from aiax_bench.mapped_files import release_mapped_pages

__all__ = ["DEFAULT_MEMORY_BYTES", "StreamedReconstruction", "reconstruct_out_of_core", "slab_rows_for"]

#: Memory the slabs may take by default (bytes): a laptop's share, well under the 4 GB a 2048³ run is held to.
DEFAULT_MEMORY_BYTES = 2 << 30
#: Rows of neighbours read on each side for the steps that look across rows: the zinger filter compares a
#: pixel with pixels ZINGER_SIZE rows away, after the 3×3 dead-pixel median has changed those (1 row).
HALO_ROWS = ZINGER_SIZE + 1


@dataclass(frozen=True)
class StreamedReconstruction:
    """What :func:`reconstruct_out_of_core` did.

    Attributes
    ----------
    path : Path
        The zarr volume ``(slices, D, D)``, float32 attenuation per voxel.
    shape : tuple of int
        Its shape.
    slab_rows : int
        Detector rows (after binning) reconstructed together.
    slabs, resumed_slabs : int
        Slabs in the volume, and how many of them a previous run had finished.
    seconds : float
        Wall time of this run.
    slices_per_second : float
        Slices reconstructed by this run per second (resumed ones not counted).
    provenance : dict
        Every pre-processing step, the centre of rotation and the reconstruction.
    """

    path: Path
    shape: tuple[int, int, int]
    slab_rows: int
    slabs: int
    resumed_slabs: int
    seconds: float
    slices_per_second: float
    provenance: dict[str, Any]


def _bytes_per_row(n_angles: int, n_columns: int, bin_factor: int) -> int:
    """Working memory of one detector row (binned) through pre-processing and the Fourier FBP (bytes).

    Read at full resolution (``bin²`` raw rows of float32, with the flat/dark
    and -log copies), then the Fourier back projection's complex128 spectrum,
    its weighted copy and the contiguous copy handed to the NUFFT (twice the
    detector, 16 bytes each), and the slice in complex128 and float32.
    """
    d = n_columns // bin_factor
    raw = 4 * n_angles * n_columns * bin_factor * 4
    fourier = 3 * 16 * n_angles * 2 * d
    return raw + fourier + 20 * d * d


def slab_rows_for(n_angles: int, n_columns: int, *, bin_factor: int = 1,
                  memory_bytes: int = DEFAULT_MEMORY_BYTES) -> int:
    """Detector rows (after binning) per slab so that a slab's working memory stays within ``memory_bytes``."""
    fixed = 16 * n_angles * 2 * (n_columns // bin_factor)  # the polar phase table, shared by all rows
    return max(1, int((memory_bytes - fixed) // _bytes_per_row(n_angles, n_columns, bin_factor)))


def _settings_key(projections: Projections, settings: Preprocessing, filter: str, rows: tuple[int, int]) -> str:
    """Fingerprint of everything that decides the volume's bytes (a resumed run must match it)."""
    data = projections.data
    record = {"source": projections.source, "shape": list(data.shape), "dtype": str(data.dtype),
              "signal": projections.signal, "settings": settings.record(), "filter": filter, "rows": list(rows),
              "angles": hashlib.sha256(np.ascontiguousarray(projections.angles, dtype=np.float64)).hexdigest()}
    if os.path.isfile(projections.source):
        stat = os.stat(projections.source)
        record["source_stat"] = [stat.st_size, stat.st_mtime_ns]
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _slab(projections: Projections, lo: int, hi: int, columns: slice) -> Projections:
    """Raw rows ``[lo, hi)`` as an in-memory :class:`Projections` (flats and darks cut the same way)."""
    def cut(images):
        return None if images is None else np.array(images[:, lo:hi, columns], dtype=np.float32)

    return Projections(data=np.array(projections.data[:, lo:hi, columns], dtype=np.float32),
                       flats=cut(projections.flats), darks=cut(projections.darks),
                       angles=np.array(projections.angles, dtype=np.float64), source=projections.source,
                       signal=projections.signal, flat_positions=projections.flat_positions,
                       geometry=projections.geometry, geometry_parameters=dict(projections.geometry_parameters),
                       pixel_size_um=projections.pixel_size_um, provenance=dict(projections.provenance))


def reconstruct_out_of_core(projections: Projections, target: Path | str, *, settings: Preprocessing | None = None,
                            filter: str = "hann", memory_bytes: int = DEFAULT_MEMORY_BYTES,
                            progress: Callable[[int, int], None] | None = None) -> StreamedReconstruction:
    """Pre-process and reconstruct ``projections`` slab by slab into the zarr volume ``target``.

    Parameters
    ----------
    projections : Projections
        The scan; ``data`` ``(angles, rows, columns)`` may be any array read by
        slicing (memory-mapped ``.npy``, ``h5py.Dataset``, ``zarr.Array``), and
        is never read whole. Flats and darks are read slab by slab too.
    target : path
        The ``.zarr`` volume to write ``(rows, D, D)``, float32, 1/voxel.
    settings : Preprocessing, optional
        The pre-processing, as for ``import`` and ``reconstruct``. The centre
        of rotation, unless given, is found once on the middle rows.
    filter : str
        FBP apodisation window (see :data:`aiax_bench.recon.fbp.FILTERS`).
    memory_bytes : int
        Working memory the slabs may take (bytes); sets the slab's rows
        (:func:`slab_rows_for`). The result does not depend on it.
    progress : callable, optional
        Called with ``(slices done, slices in all)`` after each slab.

    Raises
    ------
    InputError
        For a target that is not ``.zarr``, a geometry other than parallel
        beam, Paganin phase retrieval (it filters whole projections), or a crop
        outside the detector.
    """
    from aiax_bench.ingest.reconstruct import scan_projector
    from aiax_bench.recon import fbp
    from aiax_bench.recon.fbp import FILTERS

    target = Path(target)
    if target.suffix != ".zarr":
        raise InputError("--output", f"is {str(target)!r}", "a .zarr path for an out-of-core reconstruction")
    if filter not in FILTERS:
        raise InputError("--filter", f"is {filter!r}", f"one of {sorted(FILTERS)}")
    settings = settings or Preprocessing()
    if settings.paganin is not None:
        raise InputError("--paganin", "is set with --out-of-core",
                         "an in-memory reconstruction: the Paganin filter acts on whole projections")
    if projections.geometry != "parallel":
        raise InputError(projections.source, f"is a {projections.geometry}-beam scan",
                         "a parallel-beam scan: the project's projector is parallel-beam only")
    memory_bytes = int(memory_bytes)
    if memory_bytes <= 0:
        raise InputError("--memory", f"is {memory_bytes}", "a positive number of bytes")
    n_angles, n_rows, n_columns = projections.data.shape
    start, stop, _ = slice(*(settings.crop_rows or (None, None))).indices(n_rows)
    columns = slice(*(settings.crop_columns or (None, None)))
    width = len(range(*columns.indices(n_columns)))
    b = settings.bin
    binned_rows, binned_width = (stop - start) // b, width // b
    if binned_rows < 1 or binned_width < 2:
        raise InputError("--crop-rows/--crop-columns", f"leave {stop - start} × {width} detector pixels",
                         f"at least {b} row(s) and {2 * b} columns")
    # Rows and columns are cut here; pre-processing sees each slab as a whole (uncropped) detector.
    per_slab = replace(settings, crop_rows=None, crop_columns=None)

    def run(first: int, last: int, center: float | None) -> tuple[np.ndarray, float, dict[str, Any]]:
        """Centred sinograms of binned rows ``[first, last)``, read with a halo where a step needs one."""
        halo = HALO_ROWS if (settings.dead_pixels and projections.flats is not None) or settings.zingers else 0
        lo, hi = max(0, first - halo), min(binned_rows, last + halo)
        slab = _slab(projections, start + lo * b, start + hi * b, columns)
        for images in (projections.data, projections.flats, projections.darks):
            release_mapped_pages(images)
        return preprocess(slab, replace(per_slab, center=center), own_rows=slice(first - lo, last - lo))

    center, centring = settings.center, "given"
    if center is None:
        # The middle row alone, where the in-memory reconstruction looks for the centre (and the same
        # refusal of scans that do not span 180°).
        mid = binned_rows // 2
        _, center, found = run(mid, mid + 1, None)
        centring = found["center"]["method"]
    slab_rows = min(binned_rows, slab_rows_for(n_angles, width, bin_factor=b, memory_bytes=memory_bytes))
    bounds = [(r, min(r + slab_rows, binned_rows)) for r in range(0, binned_rows, slab_rows)]
    key = _settings_key(projections, settings, filter, (start, stop))
    partial = target.with_name(f".{target.name}.partial")
    volume, done = _open_partial(partial, key, (binned_rows, binned_width, binned_width), slab_rows)
    resumed = sum(1 for b0, _ in bounds if b0 in done)
    sorted_angles = np.sort(np.asarray(projections.angles, dtype=np.float64), kind="stable")
    # The projector and back projection the in-memory reconstruction of these rows uses, once.
    projector, backprojector = scan_projector(binned_width, sorted_angles, n_rows=binned_rows)
    started, made, record = time.perf_counter(), 0, {}
    clipped = int(volume.attrs.get("clipped_pixels", 0))
    for first, last in bounds:
        if first in done:
            continue
        sinograms, _, record = run(first, last, center)
        flat_dark = record.get("flat_dark")
        clipped += flat_dark.get("clipped_pixels", 0) if isinstance(flat_dark, dict) else 0
        volume[first:last] = fbp(sinograms, projector=projector, filter=filter,
                                 backprojector=backprojector).astype(np.float32)
        done.add(first)
        # After the slab's data: a slab recorded as done is on disk.
        volume.attrs.update({"done": sorted(done), "clipped_pixels": clipped})
        made += last - first
        if progress is not None:
            progress(sum(hi - lo for lo, hi in bounds if lo in done), binned_rows)
    seconds = time.perf_counter() - started
    provenance = {**record, "center": {"pixels": float(center), "method": centring},
                  "settings": settings.record(),
                  "reconstruction": {"algorithm": "FBP", "filter": filter, "units": "1/voxel",
                                     "out_of_core": {"slab_rows": slab_rows, "memory_bytes": memory_bytes}}}
    if isinstance(provenance.get("flat_dark"), dict):
        provenance["flat_dark"] = {**provenance["flat_dark"], "clipped_pixels": clipped}
    volume.attrs["provenance"] = json.loads(json.dumps(provenance, default=str))
    if target.exists():
        shutil.rmtree(target)
    os.replace(partial, target)
    return StreamedReconstruction(path=target, shape=(binned_rows, binned_width, binned_width),
                                  slab_rows=slab_rows, slabs=len(bounds), resumed_slabs=resumed,
                                  seconds=seconds, slices_per_second=made / seconds if seconds > 0 else math.inf,
                                  provenance=provenance)


def _open_partial(partial: Path, key: str, shape: tuple[int, int, int], slab_rows: int):
    """The unfinished volume of an earlier run with the same inputs, or a new one; and its finished slabs."""
    import zarr

    if partial.exists():
        try:
            volume = zarr.open_array(str(partial), mode="r+")
            attrs = dict(volume.attrs)
            if (attrs.get("settings_key") == key and attrs.get("slab_rows") == slab_rows
                    and tuple(volume.shape) == shape):
                return volume, set(attrs.get("done", []))
        except Exception:  # a damaged leftover is started again, never trusted
            pass
        shutil.rmtree(partial)
    # One chunk per slab along z: each slab is written once, whole, with no read-modify-write. Uncompressed:
    # lossless compression gains little on noisy floats and costs more time than it saves.
    volume = zarr.create_array(str(partial), shape=shape, dtype="float32",
                               chunks=(min(slab_rows, shape[0]), *shape[1:]), compressors=None)
    volume.attrs.update({"settings_key": key, "slab_rows": slab_rows, "done": []})
    return volume, set()
