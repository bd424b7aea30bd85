"""Noise2Noise on tomography: a denoiser trained on two independent noisy reconstructions of each sample.

Written from Lehtinen et al., "Noise2Noise: Learning image restoration without
clean data", ICML 2018, in its tomographic form (Buchholz et al., "Cryo-CARE",
ISBI 2019: reconstructions from the even and the odd projections as input and
target). No code copied. No clean data is used (the samples are seen through
:class:`~aiax_bench.baselines.noise2inverse.SelfSupervisedSample`).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from aiax_bench.baselines.noise2inverse import Noise2Inverse
from aiax_bench.errors import InputError

__all__ = ["Noise2Noise"]


class Noise2Noise(Noise2Inverse):
    """Noise2Noise on tomography: even-angle reconstruction ↔ odd-angle reconstruction.

    The split's own projections are divided into the even and the odd angles
    and each half is reconstructed by FBP; the two have independent noise.
    The network learns to map one half-reconstruction to the other, in both
    directions. This is the "Noise2Noise on tomography" variant (Cryo-CARE):
    Noise2Inverse with K = 2 is the same training, so the two methods differ
    only in K and in what ``predict_on`` allows.

    At prediction (``predict_on``):

    ``halves`` (default)
        The network is applied to both half-reconstructions of the test
        sample's own sinogram and the two outputs averaged: the inputs have
        the noise level the network was trained on.
    ``full``
        The network is applied once to the FBP of all projections (``low``),
        which has half the noise variance of its training inputs.

    Presets: ``cpu`` (default; U-Net depth 3, 8 base channels, 1,000 steps),
    ``msd`` (MS-D depth 20).
    """

    name = "noise2noise"
    supervision = "self"

    @dataclasses.dataclass
    class Config(Noise2Inverse.Config):
        """Noise2Noise hyper-parameters (those of Noise2Inverse with ``splits`` = 2).

        Attributes
        ----------
        predict_on : {'halves', 'full'}
            Apply the network to the two half-reconstructions and average, or
            once to the full reconstruction ``low``.
        """

        splits: int = 2
        predict_on: str = "halves"

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {},
        "msd": {"backbone": "msd", "max_steps": 1500},
    }

    def _check_config(self) -> None:
        super()._check_config()
        if self.config.splits != 2:
            raise InputError("splits", f"is {self.config.splits}",
                             "expected 2 (even/odd halves); use noise2inverse for K > 2")
        if self.config.predict_on not in ("halves", "full"):
            raise InputError("predict_on", f"is {self.config.predict_on!r}", "expected 'halves' or 'full'")

    def prediction_inputs(self, subs: np.ndarray) -> list[np.ndarray]:
        if self.config.predict_on == "full":
            return [subs.mean(axis=0, dtype=np.float32)]
        return super().prediction_inputs(subs)
