"""Segmentation U-Net (2D, 2.5D, 3D) trained with the multi-class soft Jaccard loss from a few annotated slices.

Written from the tomo2seg work on glass-fibre composites (modular U-Net with
residual blocks and batch normalisation, softmax output, generalised soft
Jaccard loss with squared predictions, crops of 160² in 2D, 160²×5 in 2.5D and
32³ in 3D) and from Ronneberger, Fischer & Brox, "U-Net", MICCAI 2015; no code copied.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import ndimage
from torch import nn

from aiax_bench.baselines._seg_nets import SegmentationUNetwork, masked_cross_entropy, soft_jaccard_loss
from aiax_bench.baselines.dct_threshold import DCTThreshold, preprocessed_frames
from aiax_bench.data.annotation import UNLABELLED
from aiax_bench.data.sample import SampleLike
from aiax_bench.data.torch_adapter import reflect_indices
from aiax_bench.errors import InputError
from aiax_bench.jsonio import json_ready
from aiax_bench.methods.base import Budget, FitContext, Method
from aiax_bench.training.inference import activation_bytes_per_pixel, inference_plan, predict_volume
from aiax_bench.training.method import TRAINING_CODE_VERSION, TrainingRecord
from aiax_bench.training.trainer import Trainer, TrainResult, TrainSettings

__all__ = ["SegmentationUNetwork", "UNetSeg", "soft_jaccard_loss"]

VARIANTS = ("2d", "2.5d", "3d")
#: Candidates of the least distance (voxels) between two blobs' maxima, chosen on the validation stacks.
PEAK_DISTANCES = (2, 3, 4)
#: Candidates of the least voxels of a blob, chosen on the validation stacks.
BLOB_MIN_VOXELS = (1, 4, 8, 16, 32, 64)
#: Gaussian sigma (voxels) smoothing the frames before their maxima seed the watershed: a spot has one
#: maximum, photon noise on its plateau would give it several.
SEED_SMOOTHING = 1.0
#: The phases of a frame stack's pixel labels (task ``dct``).
BLOB_PHASES = ("background", "blob")
LOSSES = ("jaccard", "cross-entropy", "jaccard+ce")


# -- method --------------------------------------------------------------------------------------


class UNetSeg(TrainingRecord, Method):
    """Segmentation U-Net (tomo2seg): residual blocks with batch-norm, softmax, multi-class soft Jaccard loss.

    Three variants: ``2d`` (one slice in, its labels out), ``2.5d`` (``slices``
    adjacent slices in, the centre slice's labels out) and ``3d`` (3D
    convolutions on cubes). The loss is the generalised soft Jaccard with
    squared predictions (default), weighted cross-entropy, or their sum; the
    class weights come from the label frequencies of the training annotations
    (inverse frequency, normalised to mean 1). Augmentation: random crops, the
    8 flips / quarter turns of the slice plane (plus z flips in 3D) and random
    intensity shift and scale of the standardised input.

    Labels may be partial (the harness's annotated-k protocol marks voxels
    without annotation :data:`~aiax_bench.data.annotation.UNLABELLED`): the
    input is used whole (2.5D stacks and 3D cubes see unlabelled neighbours),
    the loss and the validation count labelled voxels only. Rare phases are
    over-sampled: a fraction ``rare_crops`` of the crops is centred on a
    labelled voxel of a phase other than the most frequent one (and air), the nnU-Net
    answer to pores filling 1 % of a volume. The validation volumes select the
    best weights (macro Jaccard over their labelled voxels) every ``val_every`` steps.
    Prediction returns the dataset's phase indices (uint8); with ``mask_outside``
    (default) voxels outside the sample mask are air and those inside it take
    the most probable non-air phase (as the threshold baseline does): air and a
    low-attenuation matrix are hard to tell apart locally, the mask is not.

    On a frame-stack dataset (task ``dct``) the same network segments the
    diffraction spots: its input is the preprocessed frames
    (:func:`~aiax_bench.baselines.dct_threshold.preprocessed_frames`, the
    ``frames_*`` settings, the classical baseline's defaults), its two phases
    background and blob, ``2d`` reads one frame and ``2.5d`` ``slices``
    adjacent frames across psi. The predicted blob voxels are cut into blobs
    (:meth:`blob_labels`) by a seeded watershed of the smoothed frames, one
    blob per local maximum, so that overlapping spots stay apart; the least
    distance between two maxima and the least voxels of a blob are chosen
    on the validation stacks (best mean blob F1) unless the config fixes them.

    Presets (``config={"preset": name}``):

    ``cpu`` (default)
        2D, depth 3, 8 base channels, 64 px crops, batch 8, Adam 1e-3 with warm-up and
        cosine decay, 1,000 steps (about 1.5 min on two CPU cores at 128³).
    ``2.5d``, ``3d``
        The ``cpu`` preset as 2.5D (5 slices) / 3D (32³ cubes, batch 2, soft Jaccard + cross-entropy).
    ``paper-2d``, ``paper-2.5d``, ``paper-3d``
        The tomo2seg crops (160², 160²×5, 32³), depth 4, 16 base channels,
        10,000 steps: for a GPU.
    """

    name = "unet-seg"
    supervision = "truth"  # phase labels of the phantom
    task = "segment"
    also_tasks = ("dct",)
    inputs = ("reconstruction", "frames")
    trainable = True

    @dataclasses.dataclass
    class Config:
        """Segmentation U-Net hyper-parameters.

        Attributes
        ----------
        variant : {'2d', '2.5d', '3d'}
            Network variant.
        slices : int
            Adjacent input slices of the 2.5D variant (odd).
        depth, base_channels : int
            Down-samplings and channels at the finest level.
        batch_norm : bool
            Batch-norm in the residual blocks.
        loss : {'jaccard', 'cross-entropy', 'jaccard+ce'}
            Training loss.
        class_weights : {'inverse-frequency', 'none'}
            Class weights of the loss, from the training annotations.
        patch_size : int
            In-plane crop edge (px), clipped to the volume.
        patch_depth : int
            Crop depth of the 3D variant (slices).
        batch_size : int
            Crops per optimiser step.
        rare_crops : float
            Fraction of crops centred on a labelled voxel of a phase other than the most frequent one (and air).
        lesion_crops : float
            Size-stratified sampling, as the biomedical users trained: a fraction of crops centred on
            a lesion (the dataset's ``evaluation.lesions``), its size stratum drawn first, uniformly among
            those the volume holds, so a small tumour is seen as often as a large one. Taken before
            ``rare_crops``; 0 (default) for none.
        learning_rate : float
            Peak Adam learning rate (warm-up over the first 5 % of the steps, then cosine decay).
        max_steps : int
            Optimiser steps.
        max_seconds : float, optional
            Safety limit on training time (s).
        val_every : int
            Steps between validations; the best weights are kept.
        augment : bool
            Flips and quarter turns.
        intensity_shift : float
            Random shift (± this) and scale (1 ± this) of the standardised input; 0 disables.
        mask_outside : bool
            Use the sample mask at prediction (and validation): air outside it, the
            most probable of the other phases inside it (as the threshold baseline).
        inference_batch_size : int
            Slices per forward pass at prediction (2D / 2.5D). Slices whose
            activations exceed :data:`aiax_bench.training.inference.TILE_BYTES`
            (a 2048² slice with the ``cpu`` preset) go through in tiles, batched
            by bytes, as every slice model's do.
        frames_window, frames_refresh, frames_median_size, frames_margin : int
            Preprocessing of a frame stack (task ``dct``): moving-median window and refresh
            (frames), 2D median filter side and margin-ring width (pixels); see :func:`aiax_bench.dct.preprocess`.
        peak_distance : int, optional
            Least distance (voxels, chessboard) between two blobs' maxima (task ``dct``);
            None: chosen on the validation stacks from :data:`PEAK_DISTANCES`.
        blob_min_voxels : int, optional
            Least voxels of a predicted blob (task ``dct``): smaller ones are background;
            None: chosen on the validation stacks from :data:`BLOB_MIN_VOXELS`.
        progress : bool
            Report training progress on stderr.
        """

        variant: str = "2d"
        slices: int = 5
        depth: int = 3
        base_channels: int = 8
        batch_norm: bool = True
        loss: str = "jaccard"
        class_weights: str = "inverse-frequency"
        patch_size: int = 64
        patch_depth: int = 32
        batch_size: int = 8
        rare_crops: float = 0.5
        lesion_crops: float = 0.0
        learning_rate: float = 1e-3
        max_steps: int = 1000
        max_seconds: float | None = 900.0
        val_every: int = 100
        augment: bool = True
        intensity_shift: float = 0.1
        mask_outside: bool = True
        inference_batch_size: int = 8
        frames_window: int = DCTThreshold.Config.window
        frames_refresh: int = DCTThreshold.Config.refresh
        frames_median_size: int = DCTThreshold.Config.median_size
        frames_margin: int = DCTThreshold.Config.margin
        peak_distance: int | None = None
        blob_min_voxels: int | None = None
        progress: bool = False

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {
        "cpu": {},
        "2d": {},
        "2.5d": {"variant": "2.5d"},
        # 3D crops hold only a slice or two of annotations (16x fewer labelled voxels per step than 2D
        # under annotated-5): the cross-entropy term keeps training from collapsing onto the matrix.
        "3d": {"variant": "3d", "patch_size": 32, "patch_depth": 32, "batch_size": 2, "loss": "jaccard+ce"},
        "paper-2d": {"variant": "2d", "depth": 4, "base_channels": 16, "patch_size": 160, "max_steps": 10_000,
                     "max_seconds": None, "val_every": 500},
        "paper-2.5d": {"variant": "2.5d", "slices": 5, "depth": 4, "base_channels": 16, "patch_size": 160,
                       "max_steps": 10_000, "max_seconds": None, "val_every": 500},
        "paper-3d": {"variant": "3d", "depth": 3, "base_channels": 16, "patch_size": 32, "patch_depth": 32,
                     "batch_size": 4, "max_steps": 10_000, "max_seconds": None, "val_every": 500},
    }

    def __init__(self, config: Config | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self._check_config()
        self.model: nn.Module | None = None
        self.n_classes: int | None = None
        self.phases: list[str] | None = None
        self.stats: dict[str, float] = {}
        self.metadata: dict[str, Any] = {}
        self.history: dict[str, list[float]] = {}
        self.checkpoint_path: Path | None = None
        self.training_result: TrainResult | None = None
        self.target_task = self.task  # 'dct' once fitted on frame stacks
        self.blob_settings: dict[str, int] = {}  # task 'dct': peak_distance and blob_min_voxels in use

    def _check_config(self) -> None:
        c = self.config
        checks = [
            (c.variant in VARIANTS, "variant", c.variant, f"expected one of {list(VARIANTS)}"),
            (c.slices >= 1 and c.slices % 2 == 1, "slices", c.slices, "expected an odd number of slices"),
            (0.0 <= c.rare_crops <= 1.0, "rare_crops", c.rare_crops, "expected a fraction in [0, 1]"),
            (0.0 <= c.lesion_crops <= 1.0, "lesion_crops", c.lesion_crops, "expected a fraction in [0, 1]"),
            (c.loss in LOSSES, "loss", c.loss, f"expected one of {list(LOSSES)}"),
            (c.class_weights in ("inverse-frequency", "none"), "class_weights", c.class_weights,
             "expected 'inverse-frequency' or 'none'"),
            (c.depth >= 1 and c.base_channels >= 1, "depth / base_channels", (c.depth, c.base_channels),
             "expected positive integers"),
            (c.patch_size >= 8 and c.patch_depth >= 1, "patch_size / patch_depth", (c.patch_size, c.patch_depth),
             "expected patch_size >= 8 and patch_depth >= 1"),
            (c.batch_size >= 1 and c.max_steps >= 1 and c.val_every >= 1, "batch_size / max_steps / val_every",
             (c.batch_size, c.max_steps, c.val_every), "expected positive integers"),
            (min(c.frames_window, c.frames_refresh, c.frames_median_size, c.frames_margin, c.peak_distance or 1,
                 c.blob_min_voxels or 1) >= 1,
             "frames_window / frames_refresh / frames_median_size / frames_margin / peak_distance / blob_min_voxels",
             (c.frames_window, c.frames_refresh, c.frames_median_size, c.frames_margin, c.peak_distance,
              c.blob_min_voxels), "expected positive integers"),
        ]
        for ok, name, value, expected in checks:
            if not ok:
                raise InputError(name, f"is {value!r}", expected)

    @property
    def in_channels(self) -> int:
        return self.config.slices if self.config.variant == "2.5d" else 1

    def build_network(self, n_classes: int) -> SegmentationUNetwork:
        """The bare network for this config and ``n_classes`` phases."""
        c = self.config
        return SegmentationUNetwork(self.in_channels, n_classes, dim=3 if c.variant == "3d" else 2, depth=c.depth,
                                    base_channels=c.base_channels, batch_norm=c.batch_norm)

    def parameter_count(self, n_classes: int | None = None) -> int:
        net = self.model if self.model is not None else self.build_network(n_classes or self.n_classes or 3)
        return sum(p.numel() for p in net.parameters())

    # -- data ------------------------------------------------------------------------------------

    def _input(self, sample: SampleLike) -> np.ndarray:
        """The network's input volume of a sample: its reconstruction, or its preprocessed frames (task ``dct``)."""
        if self.target_task != "dct":
            return np.asarray(sample.read("low"), dtype=np.float32)
        c = self.config
        return preprocessed_frames(sample, window=c.frames_window, refresh=c.frames_refresh,
                                   median_size=c.frames_median_size, margin=c.frames_margin)

    def _volumes(self, samples: Sequence[SampleLike]) -> list[dict[str, Any]]:
        out = []
        for s in samples:
            x = self._input(s)
            labels = np.asarray(s.read("labels"))
            if self.target_task == "dct":
                labels = (labels > 0).astype(np.uint8)  # blob ids -> background / blob
            valid = labels != UNLABELLED
            y = np.where(valid, labels, 0).astype(np.int64)
            out.append({"x": x, "y": y, "valid": valid, "valid_z": valid.any(axis=(1, 2)), "mask": self._mask(s)})
        return out

    def _rare_centres(self, vols: list[dict[str, Any]], counts: np.ndarray) -> None:
        """Store, per volume, the labelled voxels of the rare phases (crop centres).

        Rare: every phase but the most frequent one and, when the sample mask
        decides it at prediction, air.
        """
        skip = {int(np.argmax(counts))}
        if self.config.mask_outside and self.phases and "air" in self.phases:
            skip.add(self.phases.index("air"))
        for v in vols:
            v["rare"] = [idx for c in np.flatnonzero(counts) if c not in skip
                         if (idx := np.flatnonzero((v["y"] == c) & v["valid"])).size]

    def _lesion_centres(self, vols: list[dict[str, Any]], train: Sequence[SampleLike], lesions: Any) -> None:
        """Store, per volume, the voxels of its lesions grouped by size stratum (``lesion_crops``' centres)."""
        if lesions is None:
            raise InputError(f"config lesion_crops of method {self.name}", f"is {self.config.lesion_crops}",
                             "0 on a dataset without lesions (its registry entry has no evaluation.lesions)")
        for v, sample in zip(vols, train, strict=True):
            instances = np.asarray(sample.read("lesions"))
            records = sorted(sample.meta["lesions"], key=lambda r: r["id"])
            strata = lesions.strata([r["area_mm2"] for r in records])
            groups = [np.flatnonzero(np.isin(instances, [r["id"] for r, s in zip(records, strata, strict=True)
                                                          if s == stratum]))
                      for stratum in range(3)]
            v["lesion_strata"] = [g for g in groups if g.size]

    def _mask(self, sample: SampleLike) -> np.ndarray | None:
        if not self.config.mask_outside or not hasattr(sample, "read") or self.target_task == "dct":
            return None
        try:
            return np.asarray(sample.read("mask"), dtype=bool)
        except Exception:  # no mask in this dataset
            return None

    def _standardise(self, x: np.ndarray) -> np.ndarray:
        return (x - self.stats["mean"]) / self.stats["std"]

    def _origin(self, vol: dict[str, Any], rng: np.random.Generator, p: int, d: int) -> tuple[int, int, int]:
        """Corner ``(z0, y0, x0)`` of a crop: around a rare-phase voxel (``rare_crops`` of the time) or random."""
        nz, ny, nx = vol["x"].shape
        rare = vol.get("rare") or []
        strata = vol.get("lesion_strata") or []
        if strata and rng.random() < self.config.lesion_crops:
            rare = strata  # one stratum drawn uniformly, then one of its voxels
        if rare and (rare is strata or rng.random() < self.config.rare_crops):
            idx = rare[int(rng.integers(len(rare)))]
            z, y, x = np.unravel_index(int(idx[int(rng.integers(idx.size))]), vol["x"].shape)
            # The voxel lands anywhere in the crop, so crops do not always put pores in the middle.
            return (int(np.clip(z - rng.integers(d), 0, nz - d)), int(np.clip(y - rng.integers(p), 0, ny - p)),
                    int(np.clip(x - rng.integers(p), 0, nx - p)))
        zc = int(rng.choice(np.flatnonzero(vol["valid_z"])))  # a crop holding at least one labelled slice
        z0 = int(rng.integers(max(0, zc - d + 1), min(zc, nz - d) + 1))
        return z0, int(rng.integers(0, ny - p + 1)), int(rng.integers(0, nx - p + 1))

    def _draw(self, vol: dict[str, Any], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
        """One augmented crop ``(input, labels, valid)`` of a volume."""
        c = self.config
        x, y, valid = vol["x"], vol["y"], vol["valid"]
        nz, ny, nx = x.shape
        p = min(c.patch_size, ny, nx)
        d = min(c.patch_depth, nz) if c.variant == "3d" else 1
        z0, y0, x0 = self._origin(vol, rng, p, d)
        window = (slice(z0, z0 + d), slice(y0, y0 + p), slice(x0, x0 + p))
        if c.variant == "3d":
            xi, yi, vi = x[window][None], y[window], valid[window]
        else:
            h = self.in_channels // 2
            xi = x[reflect_indices(z0 - h, z0 + h + 1, nz), window[1], window[2]]
            yi, vi = y[z0, window[1], window[2]], valid[z0, window[1], window[2]]
        if c.augment:
            k = int(rng.integers(8))
            xi, yi, vi = (np.rot90(a, k % 4, axes=(-2, -1)) for a in (xi, yi, vi))
            if k >= 4:
                xi, yi, vi = (a[..., ::-1] for a in (xi, yi, vi))
            if c.variant == "3d" and rng.random() < 0.5:
                xi, yi, vi = xi[:, ::-1], yi[::-1], vi[::-1]
        xi = self._standardise(np.ascontiguousarray(xi, dtype=np.float32))
        if c.augment and c.intensity_shift > 0:
            s = c.intensity_shift
            xi = xi * (1 + rng.uniform(-s, s)) + rng.uniform(-s, s)
        return xi.astype(np.float32), np.ascontiguousarray(yi), np.ascontiguousarray(vi)

    def _batch(self, vols: list[dict[str, np.ndarray]], rng: np.random.Generator) -> tuple[torch.Tensor, ...]:
        items = [self._draw(vols[int(rng.integers(len(vols)))], rng) for _ in range(self.config.batch_size)]
        return tuple(torch.from_numpy(np.stack(a)) for a in zip(*items, strict=True))

    @staticmethod
    def label_counts(vols: list[dict[str, Any]], n_classes: int) -> np.ndarray:
        """Labelled voxels per phase over the training volumes."""
        return sum(np.bincount(v["y"][v["valid"]], minlength=n_classes)[:n_classes] for v in vols)

    def class_weight_vector(self, counts: np.ndarray) -> np.ndarray:
        """Inverse label frequency over the labelled voxels, normalised to mean 1 (classes present)."""
        n_classes = len(counts)
        if self.config.class_weights == "none":
            return np.ones(n_classes)
        present = counts > 0
        w = np.zeros(n_classes)
        w[present] = counts[present].sum() / counts[present]
        w[present] /= w[present].mean()
        return w

    def _loss(self, logits: torch.Tensor, y: torch.Tensor, valid: torch.Tensor | None,
              weights: torch.Tensor) -> torch.Tensor:
        loss = self.config.loss
        value = logits.new_zeros(())
        if loss in ("jaccard", "jaccard+ce"):
            value = value + soft_jaccard_loss(logits, y, weights=weights, valid=valid)
        if loss in ("cross-entropy", "jaccard+ce"):
            value = value + masked_cross_entropy(logits, y, weights=weights, valid=valid)
        return value

    # -- fit / predict ---------------------------------------------------------------------------

    def train_settings(self, budget: Budget | None = None) -> TrainSettings:
        """The shared loop's settings: Adam with a 5 % warm-up and cosine decay to zero, capped by ``budget``."""
        c = self.config
        steps, seconds = c.max_steps, c.max_seconds
        if budget is not None:
            steps = min(steps, int(budget.iterations)) if budget.iterations is not None else steps
            if budget.seconds is not None:
                seconds = budget.seconds if seconds is None else min(seconds, budget.seconds)
        # Warm-up, then cosine decay to zero at the last step: the triangular-like schedule of
        # tomo2seg, and the late steps refine instead of jumping between minima.
        return TrainSettings(max_steps=steps, max_seconds=seconds, batch_size=c.batch_size,
                             learning_rate=c.learning_rate, lr_schedule="cosine", final_learning_rate=0.0,
                             warmup_steps=max(1, steps // 20), val_every=min(c.val_every, steps),
                             progress=c.progress)

    def fit(self, train: Sequence[SampleLike], val: Sequence[SampleLike], *, seed: int, budget: Budget | None = None,
            tracker: Any = None, context: FitContext | Mapping[str, Any] | None = None) -> None:
        """Train on the annotated slices of ``train``, keeping the weights with the best ``val`` macro Jaccard.

        Parameters
        ----------
        train, val : sequence of Sample
            Training and validation samples (``labels``, ``meta['phases']`` and the input array).
        seed : int
            Seed of the initial weights and of the crop stream.
        budget : Budget, optional
            Caps ``max_steps`` / ``max_seconds``.
        tracker : module, optional
            ``mlflow`` with an active run: training curves are logged to it.
        context : FitContext or mapping, optional
            With ``checkpoint_root`` the trained checkpoint is written to
            ``<root>/unet-seg/<key>`` (see :meth:`training_key`) and a later fit
            with the same key reuses it (``reuse``, default True); an
            interrupted training resumes from ``<key>.partial`` (``resume``,
            default True).
        """
        if not train or not val:
            raise InputError(f"training data of method {self.name}",
                             f"has {len(train)} training and {len(val)} validation sample(s)",
                             "expected at least one of each")
        ctx = FitContext.of(context)
        if (ctx.task or self.task) not in self.tasks():
            raise InputError(f"fit context of method {self.name}: key task", f"is {ctx.task!r}",
                             f"one of {list(self.tasks())}")
        self.target_task = ctx.task or self.task
        key = self.training_key(train, seed=seed, context=ctx, budget=budget)
        root = ctx.checkpoint_root / self.name if ctx.checkpoint_root is not None else None
        self.training_result = None
        if root is not None and (root / key).is_dir() and ctx.reuse:
            self._adopt(self.load(root / key))
            print(f"{self.name}: reusing checkpoint {root / key}", file=sys.stderr)
            if tracker is not None:
                tracker.set_tag("checkpoint", str(root / key))
                tracker.set_tag("checkpoint_reused", "true")
            return
        work_dir = root / f"{key}.partial" if root is not None else None
        if work_dir is not None and not ctx.resume:
            shutil.rmtree(work_dir, ignore_errors=True)
        self.phases = list(BLOB_PHASES if self.target_task == "dct" else train[0].meta["phases"])
        n = self.n_classes = len(self.phases)
        vols = self._volumes(train)
        val_vols = self._volumes(val)
        counts = self.label_counts(vols, n)
        if not counts.any():
            raise InputError(f"labels of the training samples of method {self.name}", "hold no labelled voxel",
                             "at least one annotated slice")
        self._rare_centres(vols, counts)
        if self.config.lesion_crops > 0:
            self._lesion_centres(vols, train, ctx.lesions)
        xs = np.concatenate([v["x"].ravel() for v in vols])
        self.stats = {"mean": float(xs.mean()), "std": float(max(xs.std(), 1e-6))}
        weights = torch.tensor(self.class_weight_vector(counts), dtype=torch.float32)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = self.build_network(n)
        self.model = model
        trainer = _SegmentationTrainer(self, model, vols, val_vols, weights, seed=seed,
                                       settings=self.train_settings(budget), tracker=tracker, work_dir=work_dir,
                                       resume_key=key)
        result = trainer.run()
        self.model = model.cpu().eval()
        self.training_result = result
        self.history = result.history
        # Task 'dct': how the blob voxels are cut into blobs is a setting, chosen on the validation stacks.
        blobs = (self.choose_blob_settings(val_vols, [np.asarray(s.read("labels")) for s in val])
                 if self.target_task == "dct" else None)
        self.metadata = json_ready({
            "method": self.name, "task": self.target_task, "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "torch_version": torch.__version__, "parameters": self.parameter_count(), "phases": self.phases,
            "standardisation": self.stats, "class_weights": weights.tolist(),
            "training": {"seed": seed, "key": key, **result.summary(),
                         "best_val_jaccard": result.best_val["jaccard"],
                         "train_ids": [getattr(s, "id", None) for s in train],
                         "val_ids": [getattr(s, "id", None) for s in val],
                         "labelled_slices": [int(v["valid_z"].sum()) for v in vols]},
            **({"blob_settings": blobs} if blobs is not None else {}),
        })
        if root is not None:
            self.save(root / key)
            shutil.rmtree(work_dir, ignore_errors=True)
            print(f"{self.name}: checkpoint written to {root / key}", file=sys.stderr)

    def fit_summary(self) -> dict[str, Any]:
        """The training record and, on frame stacks, the blob settings chosen on the validation stacks."""
        summary = super().fit_summary()
        if self.target_task == "dct" and self.metadata.get("blob_settings"):
            summary["blob_settings"] = self.metadata["blob_settings"]
        return summary

    def _adopt(self, other: UNetSeg) -> None:
        # Same key, same config, data and seed (see training_key): the weights are this training's.
        self.phases, self.n_classes, self.stats = other.phases, other.n_classes, other.stats
        self.model, self.metadata, self.checkpoint_path = other.model, other.metadata, other.checkpoint_path
        self.target_task, self.blob_settings = other.target_task, other.blob_settings

    def training_key(self, train: Sequence[SampleLike], *, seed: int,
                     context: FitContext | Mapping[str, Any] | None = None,
                     budget: Budget | None = None) -> str:
        """Directory name of a training's checkpoint: sha256 (16 hex) of config, budget, data identity and seed."""
        import hashlib
        import json

        ctx = FitContext.of(context)
        settings = dataclasses.asdict(self.train_settings(budget))
        settings.pop("progress")
        # A mixed training (``train_splits``) is the same whichever split it is then evaluated on.
        mixture = list(ctx.train_splits) if ctx.train_splits else None
        doc = json_ready({"method": self.name, "config": self.config_dict(), "seed": int(seed),
                           **({"task": ctx.task} if ctx.task not in (None, self.task) else {}),
                           **({"train_splits": mixture} if mixture else {}),
                           "settings": settings, "training_code": TRAINING_CODE_VERSION,
                           "dataset_sha256": ctx.dataset_sha256, "split": None if mixture else ctx.split,
                           "annotated_slices": ctx.annotated_slices,
                           "train_ids": [getattr(s, "id", None) for s in train]})
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]

    def _validate(self, vols: list[dict[str, Any]]) -> float:
        n = self.n_classes
        cm = np.zeros((n, n), dtype=np.int64)
        for v in vols:
            pred = self.labels_from_probabilities(self.predict_probabilities(v["x"]), v["mask"]).astype(np.int64)
            cm += np.bincount(v["y"][v["valid"]] * n + pred[v["valid"]], minlength=n * n).reshape(n, n)
        inter = np.diag(cm)
        union = cm.sum(0) + cm.sum(1) - inter
        return float(np.mean(inter[union > 0] / union[union > 0]))

    @torch.no_grad()
    def predict_probabilities(self, volume: np.ndarray) -> np.ndarray:
        """Softmax class probabilities ``(C, Z, Y, X)`` (float32) of an input volume in 1/cm."""
        if self.model is None:
            raise InputError(f"method {self.name}", "is not trained", "call fit() or load a checkpoint first")
        c = self.config
        model = self.model.eval()
        device = next(model.parameters()).device  # the training device while validating
        x = self._standardise(np.asarray(volume, dtype=np.float32))
        nz = x.shape[0]
        if c.variant == "3d":
            d = min(max(c.patch_depth, 2**c.depth), nz)
            step = max(d // 2, 1)
            starts = sorted({*range(0, max(nz - d, 0) + 1, step), max(nz - d, 0)})
            acc = np.zeros((self.n_classes, *x.shape), dtype=np.float32)
            hits = np.zeros(nz, dtype=np.float32)
            for z0 in starts:
                block = torch.from_numpy(np.ascontiguousarray(x[z0:z0 + d]))[None, None].to(device)
                acc[:, z0:z0 + d] += torch.softmax(model(block).float(), 1)[0].cpu().numpy()
                hits[z0:z0 + d] += 1
            return acc / hits[None, :, None, None]
        # Slices whose activations are too large go through in tiles, as every slice model's do; whole
        # slices (one tile the size of the slice) keep the configured batch over one slab, the volume.
        batch, tile = inference_plan(activation_bytes_per_pixel(model, self.in_channels), x.shape[1:],
                                     device=device)
        if tile is None:
            batch, tile = c.inference_batch_size, max(x.shape[1:])
        return predict_volume(model, x, slices=self.in_channels, classes=self.n_classes, device=device,
                              batch_size=batch, tile=tile, slab=nz)

    def labels_from_probabilities(self, probabilities: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
        """Most probable phase per voxel (uint8); with a mask: air outside it, the other phases inside."""
        phases = self.phases or []
        if mask is None or "air" not in phases or len(phases) < 2:
            return probabilities.argmax(0).astype(np.uint8)
        air = phases.index("air")
        inner = np.array([i for i in range(len(phases)) if i != air])
        labels = inner[probabilities[inner].argmax(0)].astype(np.uint8)
        labels[~mask] = air
        return labels

    def predict(self, sample: SampleLike | np.ndarray) -> np.ndarray:
        """Phase labels (uint8, the dataset's phase indices, ``(Z, Y, X)``) of a sample or an input volume.

        Fitted on frame stacks (task ``dct``): blob labels (int32, ``(psi, y, x)``, 0 for the background) of
        a sample's frames, or of already preprocessed frames.
        """
        volume = self._input(sample) if hasattr(sample, "read") else sample
        if self.target_task == "dct":
            return self.blob_labels(volume, self.predict_probabilities(volume)[1] > 0.5, **self.blob_settings)
        return self.labels_from_probabilities(self.predict_probabilities(volume), self._mask(sample))

    @staticmethod
    def blob_seeds(frames: np.ndarray, blob_voxels: np.ndarray, *, peak_distance: int) -> tuple[np.ndarray, ...]:
        """The watershed's inputs: the smoothed frames and the ``(k, 3)`` maxima seeding it, inside the blob voxels."""
        from skimage.feature import peak_local_max

        smooth = ndimage.gaussian_filter(np.asarray(frames, dtype=np.float32), SEED_SMOOTHING)
        components, _ = ndimage.label(blob_voxels, structure=np.ones((3, 3, 3), dtype=bool))
        peaks = peak_local_max(smooth, min_distance=peak_distance, labels=components, exclude_border=False)
        return smooth, peaks

    @staticmethod
    def blob_labels(frames: np.ndarray, blob_voxels: np.ndarray, *, peak_distance: int, blob_min_voxels: int,
                    seeds: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        """Blob ids ``1..K`` (int32, 0 for the background) of predicted blob voxels, split at the frames' maxima.

        A seeded watershed of the smoothed frames (:data:`SEED_SMOOTHING`) inside ``blob_voxels``
        (26-connectivity in ``(psi, y, x)``), seeded by their local maxima at least ``peak_distance``
        voxels apart; blobs of fewer than ``blob_min_voxels`` voxels are background. ``seeds`` reuses
        :meth:`blob_seeds`'s output for this ``peak_distance``.
        """
        from skimage.segmentation import watershed

        smooth, peaks = seeds if seeds is not None else UNetSeg.blob_seeds(frames, blob_voxels,
                                                                           peak_distance=peak_distance)
        markers = np.zeros(blob_voxels.shape, dtype=np.int32)
        markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
        labels = watershed(-smooth, markers, mask=blob_voxels, connectivity=np.ones((3, 3, 3), dtype=bool))
        sizes = np.bincount(labels.ravel(), minlength=len(peaks) + 1)
        keep = sizes >= blob_min_voxels
        keep[0] = False
        ids = np.zeros(sizes.size, dtype=np.int32)
        ids[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
        return ids[labels]

    def choose_blob_settings(self, val_vols: list[dict[str, Any]], labels: Sequence[np.ndarray]) -> dict[str, Any]:
        """Fix ``peak_distance`` and ``blob_min_voxels`` (those the config leaves None) by mean validation blob F1.

        Returns the mean F1 of every candidate pair, the chosen one first; ties go to the earlier candidate.
        """
        from aiax_bench.dct import blob_scores

        c = self.config
        distances = [c.peak_distance] if c.peak_distance is not None else list(PEAK_DISTANCES)
        sizes = [c.blob_min_voxels] if c.blob_min_voxels is not None else list(BLOB_MIN_VOXELS)
        f1 = {(d, v): 0.0 for d in distances for v in sizes}
        for vol, truth in zip(val_vols, labels, strict=True):
            blob_voxels = self.predict_probabilities(vol["x"])[1] > 0.5
            for d in distances:
                seeds = self.blob_seeds(vol["x"], blob_voxels, peak_distance=d)
                for v in sizes:
                    pred = self.blob_labels(vol["x"], blob_voxels, peak_distance=d, blob_min_voxels=v, seeds=seeds)
                    f1[d, v] += blob_scores(pred, truth)["f1"] / len(val_vols)
        best = max(f1, key=lambda k: f1[k])  # the first of equals, in candidate order
        self.blob_settings = {"peak_distance": best[0], "blob_min_voxels": best[1]}
        return {"chosen": dict(self.blob_settings), "val_f1": round(f1[best], 6),
                "candidates": [{"peak_distance": d, "blob_min_voxels": v, "val_f1": round(f, 6)}
                               for (d, v), f in f1.items()]}

    # -- checkpoints -----------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write weights, config and metadata (phases, standardisation) to a checkpoint directory."""
        from aiax_bench.training.checkpoint import save_checkpoint

        if self.model is None:
            raise InputError(f"method {self.name}", "is not trained", "call fit() before save()")
        meta = {**self.metadata, "method": self.name, "task": self.target_task, "phases": self.phases,
                "standardisation": self.stats}
        save_checkpoint(Path(directory), state_dict=self.model.state_dict(), config=json_ready(self.config_dict()),
                        metadata=json_ready(meta))
        self.checkpoint_path = Path(directory)

    @classmethod
    def load(cls, directory: Path) -> UNetSeg:
        """A method ready to predict, from a checkpoint directory written by :meth:`save`."""
        from aiax_bench.training.checkpoint import load_checkpoint

        ckpt = load_checkpoint(Path(directory), expect={"method": cls.name})
        method = cls(ckpt.config)
        method.phases = list(ckpt.metadata["phases"])
        method.n_classes = len(method.phases)
        method.stats = dict(ckpt.metadata["standardisation"])
        method.target_task = ckpt.metadata.get("task", cls.task)
        method.blob_settings = dict((ckpt.metadata.get("blob_settings") or {}).get("chosen") or {})
        model = method.build_network(method.n_classes)
        model.load_state_dict(ckpt.state_dict)
        method.model = model.eval()
        method.metadata = ckpt.metadata
        method.checkpoint_path = ckpt.path
        return method


class _SegmentationTrainer(Trainer):
    """The shared loop on augmented, rare-phase-weighted crops, validated by macro Jaccard on labelled voxels."""

    monitor = "jaccard"
    monitor_mode = "max"

    def __init__(self, method: UNetSeg, model: nn.Module, vols: list[dict[str, Any]], val_vols: list[dict[str, Any]],
                 weights: torch.Tensor, *, seed: int, settings: TrainSettings, tracker: Any, work_dir: Path | None,
                 resume_key: str) -> None:
        super().__init__(model, settings=settings, tracker=tracker, work_dir=work_dir, resume_key=resume_key,
                         description=f"train {method.name}")
        self.method, self.vols, self.val_vols = method, vols, val_vols
        self.weights = weights
        self.rng = np.random.default_rng(seed)  # the crop stream
        self.rng_at_step = self.rng.bit_generator.state

    def check_data(self) -> None:
        """Checked by :meth:`UNetSeg.fit`."""

    def next_batch(self) -> tuple[torch.Tensor, ...]:
        batch = tuple(t.to(self.device) for t in self.method._batch(self.vols, self.rng))
        self.batches_drawn += 1
        return batch

    def compute_loss(self, batch: tuple[torch.Tensor, ...]) -> dict[str, torch.Tensor]:
        x, y, valid = batch
        with self.autocast:
            logits = self.model(x)
        return {"loss": self.method._loss(logits.float(), y, None if bool(valid.all()) else valid, self.weights)}

    def validate(self) -> dict[str, float]:
        return {"jaccard": self.method._validate(self.val_vols)}

    def on_step_end(self) -> None:
        self.rng_at_step = self.rng.bit_generator.state

    def extra_state(self) -> dict[str, Any]:
        return {"rng": self.rng_at_step}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        self.rng.bit_generator.state = self.rng_at_step = state["rng"]
