"""Frame-stack datasets (recipe ``source: frames``): seeded DCT frame stacks written into a store.

Each sample is a stack of detector frames ``(psi, y, x)`` drawn by
:class:`aiax_bench.dct.SpotStackStream` from the sample's seed, with the
recipe's ``spec``, the profile's ``stack`` (its size) and, per split, the
split's ``detector`` settings. A split changes only what draws nothing that
places or labels a blob (the recipe schema allows nothing else), so every
split of a sample has the same blobs; the build checks it.

Arrays of a sample (``samples/<part>-<k>/``)::

    labels                 int32   (psi, y, x)  blob ids, 0 for the background
    direct_beam            bool    (y, x)       the direct beam's pixels
    splits/<split>/low     float32 (psi, y, x)  the raw frames (counts, dark included)
    splits/<split>/dark    float32 (y, x)       the dark frame (counts)

and its attributes: ``part``, ``seed``, ``spec`` (the simulator's parameters of
its first split) and ``blobs`` (the blob table: id, centre, sigma, angle, peak,
centroid, bbox, psi_extent, voxels; see :class:`aiax_bench.dct.SpotBlob`).

Stacks are simulated and written frame-slab by frame-slab
(:data:`SLAB_FRAMES` frames, the store's chunk along psi), so a profile whose
stacks exceed memory builds in the memory of one slab; the bytes are those of
the whole-stack simulation (:func:`aiax_bench.dct.simulate_spot_stack`),
whatever the slab or thread count.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiax_bench.data.registry import DatasetVersion
from aiax_bench.data.sample_recipe import store_attrs
from aiax_bench.data.store import CHUNK, SampleWriter, SlabDigest, atomic_store
from aiax_bench.errors import InputError

if TYPE_CHECKING:
    from aiax_bench.dct import SpotStackSpec

__all__ = ["SLAB_FRAMES", "build_frames_store", "stack_spec"]

#: Frames simulated and written at once: one chunk of the store along psi.
SLAB_FRAMES = CHUNK


def stack_spec(spec: DatasetVersion, profile: str, split: str) -> SpotStackSpec:
    """The :class:`aiax_bench.dct.SpotStackSpec` of ``split``'s stacks at ``profile``.

    Parameters
    ----------
    spec : DatasetVersion
        A frame-stack dataset version (recipe ``source: frames``).
    profile, split : str
        One of its profiles and one of its splits.

    Returns
    -------
    SpotStackSpec
        The recipe's ``spec``, updated by the profile's ``stack`` (the stack's size, frames and
        pixels), then by the split's ``detector`` settings.
    """
    from aiax_bench.dct import SpotStackSpec

    spec.check_profile(profile)
    acquisition = spec.split_spec(split)
    params = {**spec.recipe["spec"], **spec.profiles[profile]["stack"], **(acquisition.detector or {})}
    # YAML gives lists; the dataclass keeps pairs as tuples.
    return SpotStackSpec(**{k: tuple(v) if isinstance(v, list) else v for k, v in params.items()})


def _jsonable_spec(stack) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(stack).items()}


def _blob_table(blobs) -> list[dict[str, Any]]:
    return [{"id": b.id, "centre": list(b.centre), "sigma": list(b.sigma), "angle": b.angle, "peak": b.peak,
             "centroid": list(b.centroid), "bbox": [list(r) for r in b.bbox], "psi_extent": b.psi_extent,
             "voxels": b.voxels} for b in blobs]


def build_frames_store(spec: DatasetVersion, profile: str, target: Path, *, ids: Sequence[tuple[str, str, int]],
                       quiet: bool = False) -> dict[str, Any]:
    """Simulate every sample of a frame-stack recipe at ``profile`` and write the store at ``target``.

    Parameters
    ----------
    spec : DatasetVersion
        A frame-stack dataset version (recipe ``source: frames``).
    profile : str
        Its size profile.
    target : Path
        Where the store appears once complete (see :class:`~aiax_bench.data.store.atomic_store`).
    ids : sequence of tuple
        ``(sample_id, part, seed)`` of every sample, in store order (:func:`aiax_bench.data.build.sample_ids`).
    quiet : bool
        No progress bar.

    Returns
    -------
    dict
        The store's root attributes (fingerprint and content sha256 included).
    """
    import numpy as np
    import zarr
    from tqdm.auto import tqdm

    from aiax_bench.dct import SpotStackStream

    spec.check_profile(profile)
    splits = list(spec.splits)
    specs = {split: stack_spec(spec, profile, split) for split in splits}
    first = specs[splits[0]]
    shape = (first.n_frames, *first.frame_shape)
    if not quiet:
        print(f"Building {spec.ref} ({profile} profile: {len(ids)} stacks of {'×'.join(map(str, shape))} frames, "
              f"{len(splits)} splits) into {target}", file=sys.stderr)
    started = time.time()
    fingerprint: dict[str, dict[str, float]] = {}
    hashes: dict[str, str] = {}
    with atomic_store(target) as tmp, tqdm(total=len(ids) * len(splits), desc=f"build {spec.ref}", unit="stack",
                                           disable=quiet, file=sys.stderr) as bar:
        root = zarr.open_group(str(tmp), mode="w")
        for sample_id, part, seed in ids:
            writer = SampleWriter(root, sample_id, hashes=hashes, fingerprint=fingerprint)
            for i, split in enumerate(splits):
                bar.set_postfix_str(f"{sample_id}: {split}")
                stream = SpotStackStream(specs[split], seed=seed)
                if i == 0:
                    blobs = stream.blobs
                    writer.add("direct_beam", stream.direct_beam)
                    labels = writer.slab_array("labels", shape, np.int32)
                else:
                    # The same blobs, or the split changed more than the detector: hashed, not written again.
                    labels = _LabelsCheck(shape, writer.sha256["labels"], f"split {split} of {spec.ref}",
                                          f"sample {sample_id}: labels differ from split {splits[0]}'s")
                with writer.slab_array(f"splits/{split}/low", shape, np.float32) as low, labels:
                    for slab in stream.slabs(SLAB_FRAMES):
                        low.append(slab.frames)
                        labels.append(slab.labels)
                writer.add(f"splits/{split}/dark", stream.dark)
                bar.update()
            writer.finish({"part": part, "seed": seed, "spec": _jsonable_spec(specs[splits[0]]),
                           "blobs": _blob_table(blobs)})
        attrs = store_attrs(spec, profile, ids, fingerprint=fingerprint, hashes=hashes, started=started)
        # Written last: a store without these attributes is incomplete by construction.
        root.attrs.update(attrs)
    return attrs


class _LabelsCheck:
    """Hashes a split's labels slab by slab and refuses them, on exit, unless they are the stored ones."""

    def __init__(self, shape: tuple[int, ...], expected: str, field: str, problem: str) -> None:
        import numpy as np

        self.digest = SlabDigest(shape, np.dtype(np.int32))
        self.expected, self.field, self.problem = expected, field, problem

    def append(self, slab) -> None:
        self.digest.update(slab)

    def __enter__(self) -> _LabelsCheck:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is None and self.digest.result()[0] != self.expected:
            raise InputError(self.field, self.problem, "splits that change the detector settings only")
        return False
