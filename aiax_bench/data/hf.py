"""Hugging Face ``datasets`` adapter: slice pairs of a split, built offline."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from aiax_bench.errors import InputError

__all__ = ["to_hf_dataset"]


def to_hf_dataset(samples: Sequence, *, arrays: Sequence[str] = ("low", "high"), cache_dir: Path | None = None):
    """A ``datasets.Dataset`` with one row per z-slice of every sample.

    Parameters
    ----------
    samples : sequence of Sample
        E.g. ``load("foam@1.0").split("100proj").train``.
    arrays : sequence of str
        Volumes to include per row (``low``, ``high``, ``truth``, ``labels``, ``mask``).
    cache_dir : Path, optional
        Where ``datasets`` writes its Arrow files; defaults to ``hf/`` in the
        aiax-bench cache, so nothing lands in the user's home elsewhere.

    Returns
    -------
    datasets.Dataset
        Columns ``sample_id``, ``z`` and one 2D array column per entry of ``arrays``,
        each with its stored dtype; values are bit-identical to the store (read them with
        ``ds.with_format("numpy", dtype=None)`` to keep integer dtypes).
    """
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    try:
        import datasets
    except ImportError:
        raise InputError("Hugging Face export", "needs the `datasets` package, which is not installed",
                         "pip install 'aiax-bench[hf]'") from None
    from aiax_bench.paths import data_dir

    if not samples:
        raise InputError("samples", "is empty", "pass at least one Sample")
    first = samples[0]
    shape = tuple(first.shape[1:])
    features = {"sample_id": datasets.Value("string"), "z": datasets.Value("int32")}
    for name in arrays:
        dtype = np.dtype(first.read(name).dtype if name in ("labels", "mask") else "float32")
        features[name] = datasets.Array2D(shape=shape, dtype="bool" if dtype.kind == "b" else dtype.name)

    def rows():
        for sample in samples:
            volumes = {name: sample.read(name) for name in arrays}
            for z in range(sample.shape[0]):
                yield {"sample_id": sample.id, "z": z, **{n: v[z] for n, v in volumes.items()}}

    cache = Path(cache_dir) if cache_dir is not None else data_dir() / "hf"
    fingerprint = "-".join([first.split, *[s.id for s in samples], *arrays,
                            str(abs(hash(str(getattr(first, "_store", "")))))])
    return datasets.Dataset.from_generator(rows, features=datasets.Features(features), cache_dir=str(cache),
                                           fingerprint=fingerprint)
