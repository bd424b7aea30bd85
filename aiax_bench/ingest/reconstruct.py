"""Pre-processed sinograms to slices with the project's FBP (``aiax-bench reconstruct``)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from aiax_bench.ingest.preprocess import Preprocessing, preprocess
from aiax_bench.ingest.scan import Projections

__all__ = ["MATRIX_MIN_ROWS", "fan_projector", "reconstruct", "scan_projector"]

#: Scans with fewer rows than this are back-projected without the projector's stored matrix: building it
#: costs as much as back-projecting dozens of slices through the non-uniform FFT.
MATRIX_MIN_ROWS = 64


def scan_projector(width: int, angles: np.ndarray, *, n_rows: int):
    """The parallel-beam projector of a scan and the back projection its FBP uses.

    A rule of the scan (rows reconstructed, width, angles), never of the slab
    being reconstructed, so in-memory and out-of-core reconstructions of a scan
    give the same bytes: the stored matrix where it fits and the scan has at
    least :data:`MATRIX_MIN_ROWS` rows, else the non-uniform FFT back projection.
    """
    from aiax_bench.recon import ParallelBeamProjector

    projector = ParallelBeamProjector(width, angles, n_detector=width, lazy=True)
    return projector, ("matrix" if projector.stored and n_rows >= MATRIX_MIN_ROWS else "fourier")


def fan_projector(projections: Projections, *, n_pixels: int | None = None):
    """The fan-beam projector of a scan whose file records its geometry, onto voxels of the effective pixel size.

    The voxel is the detector pixel divided by the magnification (source–detector over
    source–axis distance), so a slice of ``D`` voxels spans the detector's field of view.
    """
    from aiax_bench.errors import InputError
    from aiax_bench.recon import FanBeamProjector
    from aiax_bench.recon.fan import geometry_in_voxels

    parameters = projections.geometry_parameters
    pixel = parameters.get("pixelSizePost", parameters.get("pixelSize"))
    sod, sdd = parameters.get("distanceSourceOrigin"), parameters.get("distanceSourceDetector")
    if pixel is None or sod is None or sdd is None or not 0 < sod < sdd:
        raise InputError(f"{projections.source}: geometry", f"is {parameters}",
                         "source-axis and source-detector distances (source-axis the smaller) and the pixel size")
    geometry = geometry_in_voxels(pixel=pixel, source_origin=sod, source_detector=sdd)
    voxel = geometry.pop("voxel")
    width = projections.data.shape[-1]
    return FanBeamProjector(n_pixels or width, projections.angles, n_detector=width, lazy=True, **geometry), voxel


def reconstruct(projections: Projections, *, center: float | None = None, rows: slice | None = None,
                filter: str = "hann", rings: bool = False,
                settings: Preprocessing | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Slices ``(rows, D, D)`` (attenuation per voxel) and the provenance of every step.

    Parallel-beam scans are centred (found or given) and reconstructed with
    FBP; fan-beam scans whose file records the geometry (distances, pixel
    size) with fan-beam FBP on voxels of the effective pixel size
    (:func:`fan_projector`).

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
    how = {"algorithm": "FBP", "filter": filter, "units": "1/voxel"}
    if projections.geometry == "fan":
        projector, voxel = fan_projector(projections)
        volume = fbp(sinograms, projector=projector, filter=filter)
        how.update(geometry="fan beam, flat detector", voxel_mm=voxel)
    else:
        projector, how["backprojector"] = scan_projector(sinograms.shape[-1], projections.angles,
                                                         n_rows=sinograms.shape[0])
        volume = fbp(sinograms, projector=projector, filter=filter, backprojector=how["backprojector"])
    provenance = {**provenance, "reconstruction": how}
    return np.asarray(volume, dtype=np.float32), provenance
