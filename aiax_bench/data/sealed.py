"""The sealed view of a sample: what an instrument gives, nothing a benchmark knows.

A method is scored against the exact phantom, so it must never see it. At test
time (and while training, for methods that claim to learn without clean data)
the harness hands methods a :class:`SealedSample`. It exposes

- ``low``: the split's reconstruction (1/cm), ``sinogram`` (line integrals)
  and ``angles`` (radians): the scan;
- ``mask``: the sample's region of interest (its cylinder), which a user draws
  on any scan;
- ``dark`` and ``direct_beam``: a frame stack's dark frame and the direct
  beam's pixels, which a user records with every DCT scan (its frames are
  ``low``);
- ``geometry`` (the beam, and a fan beam's distances where the sample records them)
  and the ``meta`` entries ``voxel_size_um``, ``photons``, ``geometry``,
  ``phases`` (the class names of the task), ``part``, a lab scan's tube
  ``spectrum`` and ``material``, and a phase-contrast scan's energy, distance and
  the material's ``delta / beta`` (``phase_contrast``: what its user set and knows), and a
  beam-hardening split's tube spectrum and material attenuation (``beam_hardening``).

Reading ``high``, ``clean``, ``truth``, ``labels``, ``lesions`` (a frame stack's blob
labels too; as attributes, through ``read`` or through ``getattr``) or any
other ``meta`` entry (phantom parameters, seeds, hashes, a frame stack's blob
table and simulator parameters) raises :class:`SealedFieldError`, one line naming
the field. The view holds only the allowed arrays, not the store group.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np

from aiax_bench.data.sample import SampleLike
from aiax_bench.errors import InputError

__all__ = ["INSTRUMENT_ARRAYS", "INSTRUMENT_META", "SEALED_ARRAYS", "SealedFieldError", "SealedMeta",
           "SealedSample", "seal"]

#: Arrays a sealed sample exposes.
INSTRUMENT_ARRAYS = ("low", "sinogram", "angles", "mask", "dark", "direct_beam")
#: Arrays that only the benchmark knows.
SEALED_ARRAYS = frozenset({"high", "clean", "truth", "labels", "lesions"})
#: ``meta`` entries a sealed sample exposes.
INSTRUMENT_META = ("part", "voxel_size_um", "photons", "phases", "geometry", "spectrum", "material",
                   "phase_contrast", "beam_hardening")


class SealedFieldError(InputError):
    """A method read a field that a scan does not give (the truth, the reference, phantom parameters)."""

    def __init__(self, field: str, sample_id: str) -> None:
        super().__init__(
            f"field {field!r} of sample {sample_id}",
            "is sealed: methods see only what an instrument gives",
            f"read only {', '.join(INSTRUMENT_ARRAYS)}, geometry and meta {', '.join(INSTRUMENT_META)}")


class SealedMeta(Mapping):
    """The instrument part of a sample's attributes; other keys raise :class:`SealedFieldError`."""

    def __init__(self, meta: Mapping[str, Any], sample_id: str) -> None:
        self._meta = {k: meta[k] for k in INSTRUMENT_META if k in meta}
        self._id = sample_id

    def __getitem__(self, key: str) -> Any:
        if key in self._meta:
            return self._meta[key]
        raise SealedFieldError(f"meta[{key!r}]", self._id)

    def get(self, key: str, default: Any = None) -> Any:
        if key in self._meta:
            return self._meta[key]
        if key in INSTRUMENT_META:
            return default
        raise SealedFieldError(f"meta[{key!r}]", self._id)

    def __iter__(self) -> Iterator[str]:
        return iter(self._meta)

    def __len__(self) -> int:
        return len(self._meta)

    def __repr__(self) -> str:
        return f"SealedMeta({self._meta!r})"


class SealedSample:
    """A sample as an instrument gives it (see the module docstring).

    Parameters
    ----------
    sample : Sample
        A loader sample (or another sealed view).
    """

    __slots__ = ("_arrays", "_meta", "_read", "_shape", "id", "part", "split")

    def __init__(self, sample: SampleLike) -> None:
        # Getters, not arrays: sealing reads nothing, and an array is opened (and checked) only when used.
        getters = {name: (lambda name=name: getattr(sample, name)) for name in INSTRUMENT_ARRAYS}
        object.__setattr__(self, "_arrays", getters)
        # The sample's own reader: one read, checked on first use, instead of a lazy open plus a read.
        object.__setattr__(self, "_read", sample.read)
        object.__setattr__(self, "id", str(sample.id))
        object.__setattr__(self, "part", getattr(sample, "part", "test"))
        object.__setattr__(self, "split", getattr(sample, "split", None))
        object.__setattr__(self, "_meta", SealedMeta(sample.meta, self.id))
        object.__setattr__(self, "_shape", tuple(int(s) for s in sample.shape))

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"SealedSample is read-only ({name})")

    def __getattr__(self, name: str) -> Any:
        # Only reached for names that are not slots or properties. Private names are simply absent
        # (the view holds no store); any public one is a field a scan does not give.
        if name.startswith("_"):
            raise AttributeError(name)
        raise SealedFieldError(name, object.__getattribute__(self, "id"))

    def _get(self, name: str) -> Any:
        if name in self._arrays:
            return self._arrays[name]()
        raise SealedFieldError(name, self.id)

    @property
    def low(self):
        """This split's reconstruction (1/cm), lazy."""
        return self._get("low")

    @property
    def sinogram(self):
        """This split's projections as line integrals ``(Z, A, D)``, lazy."""
        return self._get("sinogram")

    @property
    def angles(self) -> np.ndarray:
        """This split's projection angles (radians)."""
        return np.asarray(self._get("angles"))

    @property
    def mask(self):
        """The sample's region of interest (its cylinder), lazy."""
        return self._get("mask")

    @property
    def dark(self):
        """A frame stack's dark frame ``(y, x)`` (counts), lazy."""
        return self._get("dark")

    @property
    def direct_beam(self):
        """A frame stack's direct-beam pixels ``(y, x)`` (bool), lazy."""
        return self._get("direct_beam")

    @property
    def meta(self) -> SealedMeta:
        return self._meta

    @property
    def shape(self) -> tuple[int, ...]:
        return self._shape

    @property
    def geometry(self) -> dict[str, Any]:
        """Acquisition geometry: the beam (parallel unless the sample records another, with its distances),
        rotation axis ``z``, detector pixels and their size (µm)."""
        sino_shape = tuple(self._get("sinogram").shape)
        return {"beam": "parallel", "rotation_axis": "z", "n_angles": int(sino_shape[1]),
                "detector_pixels": int(sino_shape[2]), "detector_rows": int(sino_shape[0]),
                "pixel_size_um": self._meta.get("voxel_size_um"), **(self._meta.get("geometry") or {})}

    def read(self, name: str) -> np.ndarray:
        """Load one instrument array fully into memory."""
        name = name.replace("-", "_")
        if name not in self._arrays:
            raise SealedFieldError(name, self.id)
        return np.asarray(self._read(name))

    def __repr__(self) -> str:
        return f"SealedSample({self.id!r}, split={self.split!r})"


def seal(samples: list[SampleLike]) -> list[SealedSample]:
    """Sealed views of ``samples``."""
    return [s if isinstance(s, SealedSample) else SealedSample(s) for s in samples]
