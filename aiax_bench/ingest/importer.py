"""``aiax-bench import``: a user's scan becomes a dataset store that every command opens by name.

The store has the registry's layout (:mod:`aiax_bench.data.store`), at
``<data dir>/<name>/user/full.zarr``, with the dataset's description (its
*manifest*: source, splits, evaluation, provenance of every step) in the
store's attributes. :func:`aiax_bench.data.registry.resolve` finds it there,
so ``evaluate``, ``train``, ``datasets info`` and ``datasets list`` take
``--dataset NAME`` as they take a registered dataset.

What the store holds
    - ``high``: the reference, FBP of all projections (filter ``--reference-filter``,
      Hann by default), in 1/cm of the voxel size given (or read from the file).
    - ``sinogram`` and ``angles``: the centred line integrals it was made from,
      so a self-supervised method (Noise2Inverse) splits them into its own
      sub-sinograms, and a classical baseline re-filters them.
    - per split, ``low``, ``sinogram``, ``angles``:
      ``--subsample 50,100`` gives ``50proj``, ``100proj``: N of the scan's M
      projections, evenly spread, reconstructed with the ramp filter as the
      registry's splits are. The users' own protocol: the N projections are
      part of the reference scan, so they share its noise, which a method
      trained against the reference can learn to reproduce (the manifest says so).
      ``--low SCAN`` gives split ``pair``: a second scan of the same sample
      (e.g. a short exposure), read and pre-processed like the first, with the
      first scan's centre.
    - ``mask``: the reconstructable disc (every voxel for an imported volume).

Train, validation and test parts
    The rows that hold the sample are cut along z into contiguous slabs
    (60/20/20 % by default): methods train on the top slab, choose settings on
    the middle one and are scored on the bottom one. A scan of fewer than 3
    rows is test-only.

Evaluation without a truth
    Scores are against the reference; the data range is the 0.1–99.9 %
    quantile spread of the reference inside the mask, fixed at import; pores
    are below Otsu's threshold of the reference's values (protocol
    ``reference-otsu``). The manifest records both rules.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.data.registry import IMPORTED_PROFILE, IMPORTED_VERSION, manifest_sha256
from aiax_bench.errors import InputError
from aiax_bench.ingest.preprocess import Preprocessing, preprocess
from aiax_bench.ingest.readers import read_source
from aiax_bench.ingest.scan import NO_OPTIONS, Projections, ReadOptions, VolumeScan

__all__ = ["ImportOptions", "ImportReport", "check_name", "import_scan"]

_NAME = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")
#: Voxel size recorded when neither the file nor the user gives one (per-mm³ statistics are then not physical).
ASSUMED_VOXEL_UM = 1.0


@dataclass(frozen=True)
class ImportOptions:
    """How the store is made from the scan.

    Attributes
    ----------
    subsample : tuple of int
        Numbers of projections N of the sparse splits (``NNproj``).
    low : Path, optional
        A second scan of the same sample: split ``pair``.
    low_read : ReadOptions
        How to read ``low``: its own flats, darks and angles (``--low-flats``, ...), never the first scan's.
    parts : (float, float, float)
        Fractions of the rows in the train, val and test slabs.
    voxel_size_um : float, optional
        Voxel edge (µm); the file's pixel size (times the binning) if omitted.
    filter : str
        FBP filter of the low-quality splits (ramp, as the registry's).
    reference_filter : str
        FBP filter of the reference.
    title : str, optional
        One line describing the dataset.
    """

    subsample: tuple[int, ...] = ()
    low: Path | None = None
    low_read: ReadOptions = NO_OPTIONS
    parts: tuple[float, float, float] = (0.6, 0.2, 0.2)
    voxel_size_um: float | None = None
    filter: str = "ramp"
    reference_filter: str = "hann"
    title: str | None = None

    def __post_init__(self) -> None:
        if len(self.parts) != 3 or any(not 0 <= p for p in self.parts) or not self.parts[2] > 0:
            raise InputError("--parts", f"is {self.parts}", "three fractions TRAIN,VAL,TEST with TEST > 0")
        for n in self.subsample:
            if not (isinstance(n, int) and n >= 2):
                raise InputError("--subsample", f"holds {n!r}", "numbers of projections of at least 2")


@dataclass
class ImportReport:
    """What :func:`import_scan` wrote."""

    name: str
    path: Path
    shape: tuple[int, int, int]
    splits: list[str]
    parts: dict[str, tuple[int, int]]
    manifest: dict[str, Any] = field(repr=False)
    seconds: float = 0.0

    @property
    def center(self) -> float | None:
        return self.manifest["provenance"].get("center", {}).get("pixels")


def check_name(name: str) -> str:
    """A dataset name for an import: lower-case, not a registered dataset's."""
    from aiax_bench.data.registry import load_registry

    if not _NAME.fullmatch(name):
        raise InputError("--name", f"is {name!r}", "lower-case letters, digits, '.', '_' or '-' (up to 64)")
    if name in load_registry():
        raise InputError("--name", f"is {name!r}, a registered dataset", "another name for your scan")
    return name


#: Rows of the val and test slabs at least, where the scan has them: the 3D SSIM window is 11 voxels.
_MIN_SCORED_ROWS = 11


def _slabs(rows: int, parts: tuple[float, float, float]) -> dict[str, tuple[int, int]]:
    """Contiguous row ranges of the train, val and test slabs (test only for fewer than 3 rows)."""
    if rows < 3:
        return {"test": (0, rows)}
    total = sum(parts)
    least = _MIN_SCORED_ROWS if rows >= 3 * _MIN_SCORED_ROWS else 1
    # Each slab asked for keeps at least one row; the test slab comes first, then val, then train.
    test = min(max(round(rows * parts[2] / total), least), rows - (parts[0] > 0) - (parts[1] > 0))
    val = min(max(round(rows * parts[1] / total), least if parts[1] > 0 else 0), rows - test - (parts[0] > 0))
    train = rows - test - val if parts[0] > 0 else 0
    bounds = {"train": (0, train), "val": (train, train + val), "test": (train + val, rows)}
    return {k: v for k, v in bounds.items() if v[1] > v[0]}


def _disc(size: int) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    return np.hypot(yy, xx) <= (size - 1) / 2 - 1


#: A sample region smaller than this share of the disc is taken for a failed segmentation: the disc is used.
_MIN_SAMPLE_SHARE = 0.002


def sample_mask(reference: np.ndarray, disc: np.ndarray) -> tuple[np.ndarray, str]:
    """Where the sample is: so that air around it is not counted as pore space.

    The reference, smoothed (Gaussian, 2 voxels), above its Otsu threshold,
    closed and hole-filled slice by slice, within the reconstructable ``disc``.
    A sample that fills the field of view, or a segmentation that finds too
    little, gives the disc itself.
    """
    from scipy import ndimage
    from skimage.filters import threshold_otsu

    smooth = ndimage.gaussian_filter(reference.astype(np.float32), sigma=(0, 2, 2))
    values = smooth[:, disc]
    material = smooth > threshold_otsu(values[np.isfinite(values)])
    mask = np.empty(reference.shape, bool)
    for z, plane in enumerate(material):
        closed = ndimage.binary_closing(plane & disc, iterations=3)
        mask[z] = ndimage.binary_fill_holes(closed) & disc
    share = mask.sum() / (disc.sum() * reference.shape[0])
    if share < _MIN_SAMPLE_SHARE or share > 0.98:
        return np.broadcast_to(disc, reference.shape).copy(), "the reconstructable disc (the sample fills it)"
    return mask, ("the sample: smoothed reference above its Otsu threshold, closed and hole-filled per slice, "
                  "within the reconstructable disc")


@dataclass
class _Volumes:
    """Everything to store, whole-volume: the slabs are cut from it."""

    high: np.ndarray
    mask: np.ndarray
    voxel_um: float
    voxel_how: str
    sinogram: np.ndarray | None = None
    angles: np.ndarray | None = None
    splits: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    split_specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    units: str = "1/cm"


def _voxel(options: ImportOptions, from_file: float | None, binning: int) -> tuple[float, str]:
    if options.voxel_size_um is not None:
        return float(options.voxel_size_um), "given (--voxel-size)"
    if from_file is not None and np.isfinite(from_file) and from_file > 0:
        return float(from_file) * binning, "from the file" + (f", times the binning {binning}" if binning > 1 else "")
    return ASSUMED_VOXEL_UM, f"unknown: {ASSUMED_VOXEL_UM:g} µm assumed (give --voxel-size for physical units)"


def _from_projections(scan: Projections, options: ImportOptions, settings: Preprocessing) -> _Volumes:
    from aiax_bench.ingest.reconstruct import scan_projector
    from aiax_bench.recon import fbp
    from aiax_bench.sim.acquire import angle_subset

    if scan.geometry != "parallel":
        # A store's sinograms and every method's reconstruction are parallel-beam.
        raise InputError(scan.source, f"is a {scan.geometry}-beam scan ({scan.geometry_parameters})",
                         "a parallel-beam scan for `aiax-bench import`; `aiax-bench reconstruct` reconstructs "
                         "fan-beam scans")
    sinograms, center, provenance = preprocess(scan, settings)
    angles = scan.angles  # sorted by preprocess, as the sinograms are
    voxel_um, how = _voxel(options, scan.pixel_size_um, settings.bin)
    voxel_cm = voxel_um * 1e-4
    def reconstruct(sino: np.ndarray, views: np.ndarray, filter_name: str) -> np.ndarray:
        projector, how = scan_projector(sino.shape[-1], views, n_rows=sino.shape[0])
        image = fbp(sino, projector=projector, filter=filter_name, backprojector=how)
        return (np.asarray(image) / voxel_cm).astype(np.float32)

    high = reconstruct(sinograms, angles, options.reference_filter)
    mask, mask_rule = sample_mask(high, _disc(high.shape[-1]))
    out = _Volumes(high=high, mask=mask, voxel_um=voxel_um, voxel_how=how, sinogram=sinograms, angles=angles,
                   provenance={**provenance, "mask": mask_rule})
    m = angles.size
    for n in sorted(set(options.subsample), reverse=True):
        if n >= m:
            raise InputError("--subsample", f"asks for {n} projections", f"fewer than the scan's {m}")
        idx = angle_subset(m, n)
        sub = np.ascontiguousarray(sinograms[:, idx])
        low = reconstruct(sub, angles[idx], options.filter)
        out.splits[f"{n}proj"] = {"low": low, "sinogram": sub, "angles": angles[idx]}
        out.split_specs[f"{n}proj"] = {
            "kind": "subsample", "n_angles": int(n),
            "description": f"{n} of the scan's {m} projections, evenly spread (the reference is all {m}: the same "
                           f"scan, so the same noise)"}
    if options.low is not None:
        low_scan = read_source(options.low, options.low_read)
        if not isinstance(low_scan, Projections):
            raise InputError(str(options.low), "holds a reconstructed volume", "raw projections like the first scan")
        from dataclasses import replace

        if low_scan.geometry != scan.geometry or low_scan.angles.size < 2:
            raise InputError(str(options.low), "is not a scan like the first", "a second scan of the same geometry")
        low_sino, _, low_prov = preprocess(low_scan, replace(settings, center=center))
        if low_sino.shape[0] != sinograms.shape[0] or low_sino.shape[2] != sinograms.shape[2]:
            raise InputError(str(options.low), f"gives sinograms of {low_sino.shape[0]} rows × {low_sino.shape[2]} "
                             "columns", f"the first scan's {sinograms.shape[0]} × {sinograms.shape[2]}")
        low = reconstruct(low_sino, np.asarray(low_scan.angles), options.filter)
        out.splits["pair"] = {"low": low, "sinogram": low_sino, "angles": np.asarray(low_scan.angles)}
        out.split_specs["pair"] = {"kind": "pair", "n_angles": int(low_scan.angles.size),
                                   "description": f"a second scan of the sample ({low_scan.source}), pre-processed "
                                                  "like the reference, with its centre"}
        out.provenance["pair"] = low_prov
    out.provenance["reconstruction"] = {"algorithm": "FBP", "reference_filter": options.reference_filter,
                                        "split_filter": options.filter, "units": "1/cm"}
    return out


def _from_volume(scan: VolumeScan, options: ImportOptions, read: ReadOptions) -> _Volumes:
    if options.subsample:
        raise InputError("--subsample", "needs projections", "raw projections, or --low SCAN for a pair of volumes")
    voxel_um, how = _voxel(options, scan.voxel_size_um, 1)
    out = _Volumes(high=scan.volume.astype(np.float32), mask=np.ones(scan.volume.shape, bool), voxel_um=voxel_um,
                   voxel_how=how, provenance={**scan.provenance, "mask": "every voxel"}, units=scan.units)
    if options.low is not None:
        low = read_source(options.low, options.low_read)
        if not isinstance(low, VolumeScan) or low.volume.shape != scan.volume.shape:
            raise InputError(str(options.low), "is not a volume of the same shape",
                             f"a reconstructed volume of {scan.volume.shape}")
        out.splits["pair"] = {"low": low.volume.astype(np.float32)}
        out.split_specs["pair"] = {"kind": "pair", "description": f"a second volume of the sample ({low.source})"}
    return out


def import_scan(source: Path | str, name: str, *, read: ReadOptions = NO_OPTIONS,
                settings: Preprocessing | None = None, options: ImportOptions | None = None,
                format: str | None = None, root: Path | None = None, force: bool = False) -> ImportReport:
    """Read, pre-process and reconstruct ``source`` and write it as the dataset ``name``.

    Parameters
    ----------
    source : path
        A scan any reader of :data:`aiax_bench.ingest.readers.READERS` reads.
    name : str
        The dataset's name (``--dataset NAME`` afterwards).
    read, settings, options
        Reader options, pre-processing steps and store options.
    format : str, optional
        Reader name, when the suffix is not enough.
    root : Path, optional
        Data directory (default :func:`aiax_bench.paths.data_dir`).
    force : bool
        Replace an existing import of the same name.

    Returns
    -------
    ImportReport
    """
    from aiax_bench.data.store import store_path
    from aiax_bench.paths import data_dir, ensure_writable

    started = time.time()
    name = check_name(name)
    options = options or ImportOptions()
    settings = settings or Preprocessing()
    root = root or data_dir()
    target = store_path(root, name, IMPORTED_VERSION, IMPORTED_PROFILE)
    if target.exists() and not force:
        raise InputError("--name", f"is {name!r}, already imported at {target}", "another name, or --force")
    scan = read_source(source, read, format=format)
    volumes = _from_projections(scan, options, settings) if isinstance(scan, Projections) \
        else _from_volume(scan, options, read)
    # Slabs are cut within the rows that hold the sample: rows of air above or below it teach and score nothing.
    rows_with_sample = np.flatnonzero(volumes.mask.any(axis=(1, 2)))
    if rows_with_sample.size == 0:
        raise InputError(str(source), "reconstructs to no sample region", "a scan whose sample is in the field of view")
    first, last = int(rows_with_sample[0]), int(rows_with_sample[-1]) + 1
    parts = {part: (a + first, b + first) for part, (a, b) in _slabs(last - first, options.parts).items()}
    manifest = _manifest(name, source, scan, volumes, options, parts)
    ensure_writable(root)
    _write(target, name, manifest, volumes, parts)
    return ImportReport(name=name, path=target, shape=tuple(volumes.high.shape), splits=list(volumes.split_specs),
                        parts=parts, manifest=manifest, seconds=round(time.time() - started, 1))


def _manifest(name: str, source, scan, volumes: _Volumes, options: ImportOptions,
              parts: dict[str, tuple[int, int]]) -> dict[str, Any]:
    from aiax_bench.evaluation.evaluator import reference_data_range
    from aiax_bench.jsonio import json_ready
    from aiax_bench.version import __version__

    data_range = reference_data_range(volumes.high, volumes.mask)
    n_angles = None if volumes.angles is None else int(volumes.angles.size)
    return json_ready({
        "family": "imported",
        "title": options.title or f"{Path(source).name}: imported scan",
        "source": str(Path(source).name),
        "imported_with": __version__,
        "voxel_size_um": volumes.voxel_um,
        "voxel_size": volumes.voxel_how,
        "units": volumes.units,
        "acquisition": {"reference_angles": n_angles, "photons": None, "kind": type(scan).__name__},
        "splits": volumes.split_specs,
        "profiles": {IMPORTED_PROFILE: {"size": list(volumes.high.shape),
                                        "samples": {part: [0] for part in parts},
                                        "rows": {part: list(bounds) for part, bounds in parts.items()}}},
        "evaluation": {"data_range": data_range, "mask": "sample", "mask_erosion": 0 if volumes.sinogram is None
                       else 2, "truth": False, "rank_metric": "psnr/reference",
                       "data_range_rule": f"0.1-99.9 % quantile spread of the reference inside the mask: "
                                          f"{data_range:.6g} {volumes.units}",
                       "segmentation_protocol": "reference-otsu"},
        "provenance": volumes.provenance,
    })


def _write(target: Path, name: str, manifest: dict[str, Any], volumes: _Volumes,
           parts: dict[str, tuple[int, int]]) -> None:
    import zarr

    from aiax_bench.data.store import STORE_FORMAT, atomic_store, digest_of_hashes, write_sample

    hashes: dict[str, str] = {}
    fingerprint: dict[str, dict[str, float]] = {}
    sample_ids = []
    with atomic_store(target) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        for part, (start, stop) in parts.items():
            sample_id = f"{part}-000"
            sample_ids.append(sample_id)
            rows = slice(start, stop)
            arrays = {"high": volumes.high[rows], "mask": volumes.mask[rows]}
            if volumes.sinogram is not None:
                arrays.update(sinogram=volumes.sinogram[rows], angles=volumes.angles)
            for split, stored in volumes.splits.items():
                for key, data in stored.items():
                    arrays[f"splits/{split}/{key}"] = data if key == "angles" else data[rows]
            write_sample(root, sample_id, arrays, {"part": part, "seed": 0, "voxel_size_um": volumes.voxel_um,
                                                   "rows": [start, stop], "phases": ["pore", "material"]},
                         hashes=hashes, fingerprint=fingerprint)
        # Written last: a store without these attributes is incomplete by construction.
        root.attrs.update({"name": name, "version": IMPORTED_VERSION, "profile": IMPORTED_PROFILE,
                           "recipe_sha256": manifest_sha256(manifest), "store_format": STORE_FORMAT,
                           "samples": sample_ids, "splits": sorted(volumes.split_specs),
                           "content_sha256": digest_of_hashes(hashes), "fingerprint": fingerprint,
                           "manifest": manifest, "source": "imported"})
