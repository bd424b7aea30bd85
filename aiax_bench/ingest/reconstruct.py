"""Pre-processed sinograms to slices with the project's FBP (``aiax-bench reconstruct``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from aiax_bench.ingest.preprocess import Preprocessing, preprocess
from aiax_bench.ingest.scan import Projections

__all__ = ["reconstruct"]


def reconstruct(projections: Projections, *, center: float | None = None, rows: slice | None = None,
                filter: str = "hann", rings: bool = False,
                settings: Preprocessing | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Slices ``(rows, D, D)`` (attenuation per voxel) and the provenance of every step.

    Parameters
    ----------
    projections : Projections
        A scan read by one of the readers (:mod:`aiax_bench.ingest.readers`).
    center : float, optional
        Centre of rotation in detector pixels; estimated on the middle row if omitted.
    rows : slice, optional
        Detector rows to reconstruct (all by default).
    filter : str
        FBP apodisation window (see :data:`aiax_bench.recon.fbp.FILTERS`).
    rings : bool
        Remove sinogram stripes (rings) before the centre is found.
    settings : Preprocessing, optional
        Every other pre-processing step; ``center``, ``rows`` and ``rings`` override it.
    """
    from aiax_bench.recon import fbp

    settings = settings or Preprocessing()
    crop = (rows.start, rows.stop) if rows is not None else settings.crop_rows
    settings = replace(settings, center=center if center is not None else settings.center, crop_rows=crop,
                       rings=rings or settings.rings)
    sinograms, _, provenance = preprocess(projections, settings)
    volume = fbp(sinograms, projections.angles, filter=filter)
    provenance = {**provenance, "reconstruction": {"algorithm": "FBP", "filter": filter, "units": "1/voxel"}}
    return np.asarray(volume, dtype=np.float32), provenance
