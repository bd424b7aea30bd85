"""Loader API: ``load("foam@1.0").split("100proj").test[0].low`` and friends.

Arrays are zarr arrays, read lazily: slicing reads only the chunks needed and
``np.asarray(sample.low)`` loads the whole volume.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.data.registry import PARTS, REFERENCE_SPLIT, DatasetVersion, resolve
from aiax_bench.data.store import open_group, read_verified, store_path, verify_array
from aiax_bench.errors import StoreError, UnknownNameError
from aiax_bench.paths import data_dir, ensure_writable

__all__ = ["Dataset", "Sample", "Split", "load"]


#: Arrays of a split (stored per split, or the reference scan's in split ``reference``); frame stacks
#: (recipe ``source: frames``) have a dark frame per split, since a split may change the detector.
_SPLIT_ARRAYS = ("low", "sinogram", "angles", "dark")
#: Every array a sample can hold (``clean`` from dataset version 2.0 on; ``direct_beam`` in frame stacks).
_ARRAYS = (*_SPLIT_ARRAYS, "high", "clean", "truth", "labels", "lesions", "mask", "direct_beam")


@dataclass
class Sample:
    """One simulated sample, seen through one split."""

    id: str
    part: str
    split: str
    _group: Any = field(repr=False)
    _store: Path = field(repr=False)
    _root_fingerprint: dict[str, Any] = field(default_factory=dict, repr=False)

    def _path(self, name: str) -> str:
        """Where array ``name`` (``low``, ``sinogram``, ``angles`` of this split, or a sample array) is stored."""
        if name not in _SPLIT_ARRAYS:
            return name
        # The reference split's input is the reference scan, stored at the sample's top level.
        if self.split == REFERENCE_SPLIT:
            return "high" if name == "low" else name
        return f"splits/{self.split}/{name}"

    def _open(self, path: str):
        try:
            return self._group[path]
        except Exception as exc:
            raise StoreError(self._store / "samples" / self.id / path,
                             f"array is missing or unreadable ({type(exc).__name__})",
                             "rebuild the store with `aiax-bench datasets build --force`") from None

    def _check(self, path: str) -> dict[str, Any]:
        return {"store": self._store, "path": f"samples/{self.id}/{path}",
                "sha256": self._group.attrs.get("sha256", {}).get(path), "fingerprint": self._fingerprint(path)}

    def _array(self, name: str):
        # Handed out lazily: the first use of an array in a process checks it whole against its build-time hash.
        path = self._path(name)
        array = self._open(path)
        verify_array(array, **self._check(path))
        return array

    def has(self, name: str) -> bool:
        """Whether the store holds array ``name`` for this sample (metadata only, nothing is read)."""
        return self._path(name) in self._group

    def _fingerprint(self, name: str) -> dict[str, float] | None:
        # Stores of format 1 carry no per-array sha256: their root fingerprint still catches a lost chunk.
        if "sha256" in self._group.attrs:
            return None
        return self._root_fingerprint.get(f"{self.id}/{name}")

    def read(self, name: str) -> np.ndarray:
        """Load one array fully into memory (``low``, ``high``, ``truth``, ``labels``, ``dark``, ...), checked on
        first read."""
        name = name.replace("-", "_")
        if name not in _ARRAYS:
            raise UnknownNameError("array", name, list(_ARRAYS), "read one of the listed arrays")
        path = self._path(name)
        return read_verified(self._open(path), **self._check(path))

    @property
    def low(self):
        """Low-quality reconstruction of this split (1/cm), lazy; the reference one in split ``reference``."""
        return self._array("low")

    @property
    def sinogram(self):
        """This split's projections as line integrals ``(Z, A, D)``, lazy."""
        return self._array("sinogram")

    @property
    def angles(self) -> np.ndarray:
        """This split's projection angles (radians)."""
        return self.read("angles")

    @property
    def dark(self):
        """This split's dark frame ``(y, x)`` (counts) of a frame stack, lazy."""
        return self._array("dark")

    @property
    def direct_beam(self):
        """The direct beam's pixels ``(y, x)`` (bool) of a frame stack, lazy."""
        return self._array("direct_beam")

    @property
    def high(self):
        """Reference reconstruction: all angles at the reference dose (1/cm), lazy."""
        return self._array("high")

    @property
    def clean(self):
        """FBP of the noise-free reference projections (1/cm), lazy: the ceiling for methods
        trained on independent noise (datasets from version 2.0 on)."""
        return self._array("clean")

    @property
    def truth(self):
        """Exact phantom attenuation (1/cm, partial volume), lazy."""
        return self._array("truth")

    @property
    def labels(self):
        """Exact phase labels (uint8), lazy."""
        return self._array("labels")

    @property
    def lesions(self):
        """Lesion instance ids (0 elsewhere, ``k`` for the lesion of ``meta['lesions']`` with that ``id``), lazy;
        in datasets whose registry entry scores lesions (``evaluation.lesions``, e.g. the mouse's tumours)."""
        return self._array("lesions")

    @property
    def mask(self):
        """Sample region (bool), lazy."""
        return self._array("mask")

    @property
    def meta(self) -> dict[str, Any]:
        """Sample attributes: part, seed, voxel size (µm), phases, phantom parameters."""
        return dict(self._group.attrs)

    @property
    def shape(self) -> tuple[int, ...]:
        """``(Z, Y, X)`` of the volumes, ``(psi, y, x)`` of a frame stack (read from the array metadata only)."""
        # A frame stack has no reference reconstruction: its labels have the frames' shape.
        return tuple(self._group["high" if "high" in self._group else "labels"].shape)


@dataclass
class Split:
    """A split (one degradation) of a dataset: samples by part."""

    dataset: Dataset
    name: str

    def part(self, part: str) -> list[Sample]:
        """Samples of ``part`` (``train``, ``val``, ``test``, ``ood-test``)."""
        if part not in PARTS:
            raise UnknownNameError("part", part, list(PARTS), "use one of the listed parts")
        fingerprint = self.dataset.legacy_fingerprint
        return [Sample(sid, part, self.name, self.dataset.group[f"samples/{sid}"], self.dataset.path, fingerprint)
                for sid in self.dataset.sample_ids if sid.rsplit("-", 1)[0] == part]

    @property
    def train(self) -> list[Sample]:
        return self.part("train")

    @property
    def val(self) -> list[Sample]:
        return self.part("val")

    @property
    def test(self) -> list[Sample]:
        return self.part("test")

    @property
    def ood_test(self) -> list[Sample]:
        return self.part("ood-test")


@dataclass
class Dataset:
    """An opened dataset version at one profile."""

    spec: DatasetVersion
    profile: str
    path: Path
    group: Any = field(repr=False)
    source: str = "local"

    @property
    def attrs(self) -> dict[str, Any]:
        return dict(self.group.attrs)

    @property
    def legacy_fingerprint(self) -> dict[str, Any]:
        """Per-array fingerprint of a format-1 store (no per-array sha256), else empty."""
        attrs = self.group.attrs
        return {} if attrs.get("store_format", 1) >= 2 else dict(attrs.get("fingerprint", {}))

    @property
    def sample_ids(self) -> list[str]:
        return list(self.attrs["samples"])

    @property
    def content_sha256(self) -> str:
        return self.attrs["content_sha256"]

    def split(self, name: str) -> Split:
        """The samples of split ``name`` (see ``aiax-bench datasets splits``).

        ``reference`` is the reference scan itself as the input (``low`` is
        ``high``): the segmentation task's high-quality input.
        """
        self.spec.check_split(name, allow_reference=True)
        return Split(self, name)

    def provenance(self) -> dict[str, Any]:
        """What identifies this data in a result: name@version, profile, hash, origin."""
        return {"dataset": self.spec.ref, "profile": self.profile, "dataset_sha256": self.content_sha256,
                "recipe_sha256": self.spec.recipe_sha256, "dataset_source": self.source}


def rebuild_hint(spec: DatasetVersion, profile: str) -> str:
    return f"rebuild it with `aiax-bench datasets build {spec.ref} --profile {profile} --force`"


def _expect(spec: DatasetVersion, profile: str) -> dict[str, Any]:
    return {"name": spec.name, "version": spec.version, "profile": profile, "recipe_sha256": spec.recipe_sha256}


def _download(spec: DatasetVersion, profile: str, root: Path, path: Path) -> bool:
    """Fetch and install the published archive; False when no mirror delivered it."""
    from aiax_bench.data.download import DownloadError, fetch_archive, install_archive

    archive = spec.archives.get(profile)
    if not archive or not archive["urls"]:
        return False
    downloads = root / "downloads"
    try:
        zip_path = fetch_archive(archive["urls"], sha256=archive["sha256"],
                                 fname=f"{spec.name}-{spec.version}-{profile}.zip", directory=downloads)
    except DownloadError as exc:
        print(f"{spec.ref} ({profile}): {exc}; rebuilding it from its recipe instead", file=sys.stderr)
        return False

    def check(extracted: Path) -> None:
        group = open_group(extracted, expect=_expect(spec, profile), rebuild_hint=rebuild_hint(spec, profile))
        if group.attrs.get("content_sha256") != archive["content_sha256"]:
            raise StoreError(zip_path, "archive holds a store with another content sha256 than the registry's",
                             rebuild_hint(spec, profile))
        import zarr

        zarr.open_group(str(extracted), mode="r+").attrs["source"] = "downloaded"

    try:
        install_archive(zip_path, path, check=check)
    finally:
        zip_path.unlink(missing_ok=True)
    return True


def _rebuild(spec: DatasetVersion, profile: str, path: Path) -> None:
    """Build from the recipe and check the result against the published fingerprint."""
    import zarr

    from aiax_bench.data.build import build_store
    from aiax_bench.data.package import compare_fingerprints

    expected = spec.fingerprint(profile)
    build_store(spec, profile, path)
    group = zarr.open_group(str(path), mode="r+")
    if expected is not None:
        problems = compare_fingerprints(dict(group.attrs)["fingerprint"], expected)
        if problems:
            import shutil

            shutil.rmtree(path, ignore_errors=True)
            raise StoreError(path, f"rebuilt {spec.ref} ({profile}) does not match the published fingerprint "
                             f"({len(problems)} difference(s), first: {problems[0]})",
                             "report this with your platform details; the rebuilt store was removed")
    group.attrs["source"] = "rebuilt"


def load(ref: str, *, profile: str | None = None, build: bool = True, root: Path | None = None) -> Dataset:
    """Open ``ref`` at ``profile`` from the cache.

    A store not in the cache yet is downloaded from the registry's mirrors
    (sha256-verified), or, when none answers, rebuilt from its recipe and
    checked against the published fingerprint.
    """
    spec = resolve(ref)
    profile = profile or spec.default_profile
    spec.check_profile(profile)
    root = root or data_dir()
    path = store_path(root, spec.name, spec.version, profile)
    if not path.exists():
        if not build:
            raise StoreError(path, f"{spec.ref} ({profile}) is not in the cache",
                             f"get it with `aiax-bench datasets download {spec.ref} --profile {profile}`")
        ensure_writable(root)
        if not _download(spec, profile, root, path):
            _rebuild(spec, profile, path)
    group = open_group(path, expect=_expect(spec, profile), rebuild_hint=rebuild_hint(spec, profile))
    if "content_sha256" not in group.attrs or "samples" not in group.attrs:
        raise StoreError(path, "store is incomplete (no content hash)", rebuild_hint(spec, profile))
    return Dataset(spec=spec, profile=profile, path=path, group=group,
                   source=str(group.attrs.get("source", "rebuilt")))
