"""Choice of the compute device: CUDA when present, CPU otherwise."""

from __future__ import annotations

import os

import torch

__all__ = ["default_device"]


def default_device() -> torch.device:
    """The device computations run on unless told otherwise.

    ``AIAX_BENCH_DEVICE`` (e.g. ``cpu`` or ``cuda:1``) overrides the automatic choice.
    """
    requested = os.environ.get("AIAX_BENCH_DEVICE")
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")
