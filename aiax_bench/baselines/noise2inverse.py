"""Noise2Inverse: self-supervised denoising of tomograms from splits of their own projections.

Written from Hendriksen, Pelt & Batenburg, "Noise2Inverse: Self-supervised deep
convolutional denoising for tomography", IEEE TCI 6:1320-1335, 2020 (no code
copied).

No clean data is used anywhere: the method sees its training and validation
samples through :class:`~aiax_bench.data.sealed.SealedSample`, whose clean arrays (``high``,
``clean``, ``truth``, ``labels``) raise :class:`~aiax_bench.data.sealed.SealedFieldError`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
from torch import nn

from aiax_bench.baselines._nets import MSDNetwork, UNetwork
from aiax_bench.data.sample import SampleLike
from aiax_bench.data.sealed import SEALED_ARRAYS, SealedFieldError, SealedSample, seal
from aiax_bench.errors import InputError
from aiax_bench.methods.base import Budget
from aiax_bench.training.method import SliceConfig, SliceMethod

__all__ = ["CLEAN_ARRAYS", "CleanDataError", "Noise2Inverse", "SelfSupervisedSample", "sub_reconstructions"]

# The shared sealed view (aiax_bench.data.sealed) is the guard; these names stay for existing callers.
CLEAN_ARRAYS = SEALED_ARRAYS
CleanDataError = SealedFieldError
SelfSupervisedSample = SealedSample


def sub_reconstructions(sample: SampleLike, splits: int) -> np.ndarray:
    """FBP of each of ``splits`` interleaved subsets of a sample's own projections.

    Parameters
    ----------
    sample : Sample or SealedSample
        Supplies ``sinogram`` (line integrals ``(Z, A, D)``), ``angles``
        (radians), ``meta['voxel_size_um']`` and the shape of ``low``.
    splits : int
        Number of subsets K; subset ``k`` holds angles ``k, k+K, k+2K, ...``,
        so that each still covers 180° evenly.

    Returns
    -------
    numpy.ndarray
        ``(K, Z, Y, X)`` float32 reconstructions in 1/cm, scaled like ``low``
        (their mean is the FBP of all the split's projections).
    """
    from aiax_bench.recon import fbp

    sinogram = np.asarray(sample.sinogram[...], dtype=np.float32)
    angles = np.asarray(sample.angles)
    if angles.size < 2 * splits:
        raise InputError("splits", f"is {splits} for {angles.size} projections",
                         "expected at least 2 projections per subset")
    voxel_cm = float(sample.meta["voxel_size_um"]) * 1e-4
    n = int(sample.low.shape[-1])
    return np.stack([np.asarray(fbp(sinogram[:, k::splits], angles[k::splits], n_pixels=n), dtype=np.float32)
                     / voxel_cm for k in range(splits)])


def x1_pairs(subs: np.ndarray) -> list[dict[str, np.ndarray]]:
    """The X:1 training pairs: input the mean of K−1 sub-reconstructions, target the remaining one."""
    total = subs.sum(axis=0)
    k = len(subs)
    return [{"input": ((total - subs[j]) / (k - 1)).astype(np.float32), "target": subs[j]} for j in range(k)]


class Noise2Inverse(SliceMethod):
    """Noise2Inverse (Hendriksen et al. 2020): self-supervised, X:1 on K sub-reconstructions.

    The split's own projections are divided into ``splits`` interleaved
    subsets and each is reconstructed by FBP. Every one of the K ways to hold
    one subset out is a training pair: the network maps the mean of the other
    K−1 sub-reconstructions to the held-out one (X:1). Because the noise of
    different subsets is independent, the expected loss is minimised by the
    noise-free reconstruction (the method's ceiling is the noise-free FBP, not
    the phantom). At prediction the K inputs of the test sample's own
    sinogram are denoised and the K outputs averaged.

    No clean data is read: training and validation samples are wrapped in
    :class:`SelfSupervisedSample`, and validation (best weights, early
    stopping) uses the same X:1 loss on the validation samples. Inputs are the
    ``sinogram`` and ``angles`` of each sample. Training holds 2K volumes per
    training or validation sample in memory (inputs and targets of the pairs).

    Presets (``config={"preset": name}``):

    ``cpu`` (default)
        U-Net backbone, depth 3, 8 base channels, 5 slices, 64 px patches,
        batch 8, Adam 1e-3, 1,000 steps.
    ``msd``
        MS-D backbone of depth 20 (the paper's main network, shrunk for a CPU).
    ``paper``
        MS-D depth 100, 2D, K = 4, Adam, 256 px patches, long training: for a GPU.
    """

    name = "noise2inverse"
    supervision = "self"
    inputs = ("sinogram",)
    input_array = "input"
    #: Default for the U-Net backbone; set per instance from ``backbone``.
    residual = True

    @dataclasses.dataclass
    class Config(SliceConfig):
        """Noise2Inverse hyper-parameters (see :class:`aiax_bench.training.SliceConfig` for the shared ones).

        ``target`` of the shared config is not used: the target is always a
        held-out sub-reconstruction.

        Attributes
        ----------
        splits : int
            Number K of interleaved projection subsets (paper: 4). Give each
            subset enough angles (64 per subset was too few in prototypes).
        backbone : {'unet', 'msd'}
            Network: U-Net (residual, see ``baselines/unet.py``) or MS-D (see ``baselines/msdnet.py``).
        depth : int
            U-Net down-samplings.
        base_channels : int
            U-Net channels at the finest level.
        batch_norm : bool
            U-Net batch normalisation.
        msd_depth : int
            MS-D layers.
        max_dilation : int
            MS-D dilations cycle through 1..``max_dilation``.
        """

        splits: int = 4
        backbone: str = "unet"
        depth: int = 3
        base_channels: int = 8
        batch_norm: bool = True
        msd_depth: int = 20
        max_dilation: int = 10

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {},
        "msd": {"backbone": "msd", "max_steps": 1500},
        "paper": {"backbone": "msd", "slices": 1, "msd_depth": 100, "patch_size": 256, "batch_size": 4,
                  "max_steps": 200_000, "max_seconds": None, "val_every": 1000, "val_slice_step": 1,
                  "patience": 20, "num_workers": 4},
    }

    def __init__(self, config: SliceConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self.residual = self.config.backbone == "unet"

    def _check_config(self) -> None:
        super()._check_config()
        c = self.config
        if c.splits < 2:
            raise InputError("splits", f"is {c.splits}", "expected at least 2 projection subsets")
        if c.backbone not in ("unet", "msd"):
            raise InputError("backbone", f"is {c.backbone!r}", "expected 'unet' or 'msd'")
        if min(c.depth, c.base_channels, c.msd_depth, c.max_dilation) < 1:
            raise InputError("depth / base_channels / msd_depth / max_dilation",
                             f"are {c.depth} / {c.base_channels} / {c.msd_depth} / {c.max_dilation}",
                             "expected positive integers")

    def build_network(self) -> nn.Module:
        c = self.config
        if c.backbone == "msd":
            return MSDNetwork(c.slices, 1, depth=c.msd_depth, max_dilation=c.max_dilation)
        return UNetwork(c.slices, 1, depth=c.depth, base_channels=c.base_channels, batch_norm=c.batch_norm)

    # -- self-supervised data --------------------------------------------------------------------

    def training_pairs(self, sample: SampleLike) -> list[dict[str, np.ndarray]]:
        """The training pairs ``{'input', 'target'}`` of one sample (1/cm)."""
        return x1_pairs(sub_reconstructions(sample, self.config.splits))

    def prediction_inputs(self, subs: np.ndarray) -> list[np.ndarray]:
        """The volumes the network is applied to at prediction, whose outputs are averaged."""
        return [p["input"] for p in x1_pairs(subs)]

    def _pairs(self, samples: Sequence[SampleLike]) -> list[dict[str, np.ndarray]]:
        # Computed once per fit: statistics() and datasets() both need them.
        out = []
        for s in samples:
            key = id(s)
            if key not in self._pair_cache:
                self._pair_cache[key] = self.training_pairs(s)
            out.extend(self._pair_cache[key])
        return out

    def statistics(self, samples: Sequence[SampleLike]) -> dict[str, float]:
        """Standardisation constants from the training pairs (the base class's, on pairs)."""
        return super().statistics([_Pair(p) for p in self._pairs(samples)])

    def datasets(self, train: Sequence[SampleLike], val: Sequence[SampleLike], *, seed: int):
        """Training patches and validation slices of X:1 pairs: the validation loss is self-supervised too."""
        from aiax_bench.data.torch_adapter import RandomPatches, SliceStacks

        c = self.config
        train_data = RandomPatches(self._pairs(train), slices=c.slices, patch_size=c.patch_size, input="input",
                                   target="target", length=max(c.patches_per_epoch, c.batch_size),
                                   augment=c.augment, seed=seed)
        val_data = SliceStacks(self._pairs(val), slices=c.slices, input="input", target="target",
                               slice_step=c.val_slice_step)
        return train_data, val_data

    def fit(self, train: Sequence[SampleLike], val: Sequence[SampleLike], *, seed: int, budget: Budget | None = None,
            tracker: Any = None, context: Mapping[str, Any] | None = None) -> None:
        """Train on the samples' own projections only (see :meth:`SliceMethod.fit` for the arguments).

        Training and validation samples are wrapped in
        :class:`SelfSupervisedSample`: reading a clean array raises :class:`CleanDataError`.
        """
        guard, guard_val = seal(train), seal(val)
        self._pair_cache: dict[int, list[dict[str, np.ndarray]]] = {}
        try:
            super().fit(guard, guard_val, seed=seed, budget=budget, tracker=tracker, context=context)
        finally:
            self._pair_cache = {}  # the pairs are several volumes: do not keep them

    def predict(self, sample: SampleLike) -> np.ndarray:
        """Denoised volume (1/cm, float32): the mean of the network's outputs on the K X:1 inputs.

        Parameters
        ----------
        sample : Sample
            Needs ``sinogram``, ``angles`` and ``meta['voxel_size_um']``; a bare
            volume is refused (the method works from projections).
        """
        from aiax_bench.training.inference import predict_volume

        if self.model is None:
            raise InputError(f"method {self.name}", "is not trained", "call fit() or load a checkpoint first")
        if not hasattr(sample, "sinogram"):
            raise InputError(f"input of method {self.name}", f"is a {type(sample).__name__}",
                             "expected a sample with its sinogram and angles")
        c = self.config
        subs = sub_reconstructions(sample, c.splits)
        total = None
        inputs = self.prediction_inputs(subs)
        for volume in inputs:
            out = predict_volume(self.model, volume, slices=c.slices, batch_size=c.inference_batch_size,
                                 tile=c.inference_tile, overlap=c.inference_overlap)
            total = out if total is None else total + out
        return (total / len(inputs)).astype(np.float32)


class _Pair:
    """A training pair seen as a sample, for :meth:`SliceMethod.statistics`."""

    def __init__(self, pair: Mapping[str, np.ndarray]) -> None:
        # The base class reads the target under the config's ``target`` name ('high' or 'truth').
        self.input = pair["input"]
        self.target = self.high = self.truth = pair["target"]
