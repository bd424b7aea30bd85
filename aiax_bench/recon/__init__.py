"""Reconstruction: parallel- and fan-beam projectors (CPU or CUDA), the algorithms built on them, cone-beam FDK,
and Paganin's phase retrieval."""

from aiax_bench.recon.cone import ConeBeamGeometry, ConeBeamProjector, fdk
from aiax_bench.recon.device import default_device
from aiax_bench.recon.fan import FanBeamProjector
from aiax_bench.recon.fbp import FILTERS, fbp, filter_sinogram
from aiax_bench.recon.iterative import cgls, sirt, tv_reconstruction
from aiax_bench.recon.phase import paganin_filter
from aiax_bench.recon.projector import ParallelBeamProjector, SparseProjector, operator_nbytes

__all__ = [
    "FILTERS",
    "ConeBeamGeometry",
    "ConeBeamProjector",
    "FanBeamProjector",
    "ParallelBeamProjector",
    "SparseProjector",
    "cgls",
    "default_device",
    "fbp",
    "fdk",
    "filter_sinogram",
    "operator_nbytes",
    "paganin_filter",
    "sirt",
    "tv_reconstruction",
]
