"""The base of learned slice-to-slice methods: fit, predict, checkpoints and their reuse.

A subclass supplies its network (:meth:`SliceMethod.build_network`), its
hyper-parameters (a ``Config`` dataclass deriving from :class:`SliceConfig`)
and named presets; everything else (standardisation from the training data,
patch sampling, training, checkpoints, cached-checkpoint reuse, inference)
is shared here, so every learned baseline is trained and applied the same way.

Fit context
-----------
``fit`` reads a :class:`~aiax_bench.methods.FitContext` (or a mapping of its
fields). With ``checkpoint_root``, training writes ``<root>/<method>/<key>``,
where ``key`` hashes the method, its training-relevant config, the budget, the
seed, the dataset content sha256, the split (or the mixture of splits,
``train_splits``, whatever split is evaluated) and sample ids, and the training
code version; a later ``fit`` with the same key reuses it instead of training
(``reuse``), and an interrupted training resumes from ``<key>.partial``
(``resume``). ``checkpoint`` adopts a given checkpoint, refused (InputError)
unless it was trained by this method with the same config on the same data.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from aiax_bench.data.sample import SampleLike
from aiax_bench.errors import InputError
from aiax_bench.jsonio import json_ready
from aiax_bench.methods.base import Budget, FitContext, Method
from aiax_bench.training.checkpoint import load_checkpoint, save_checkpoint
from aiax_bench.training.losses import LOSSES, make_loss
from aiax_bench.training.model import Standardized
from aiax_bench.training.trainer import Trainer, TrainResult, TrainSettings

__all__ = ["TRAINING_CODE_VERSION", "SliceConfig", "SliceMethod", "TrainingRecord"]

#: Changes whenever the shared training code could train different weights
#: from the same inputs; part of every checkpoint cache key.
TRAINING_CODE_VERSION = "1"

#: Config fields that change how fast, not what, a method learns: left out of the cache key.
RUNTIME_FIELDS = frozenset({"num_workers", "progress", "inference_batch_size", "inference_tile",
                            "inference_overlap"})


@dataclasses.dataclass
class SliceConfig:
    """Hyper-parameters shared by the learned slice-to-slice methods.

    Attributes
    ----------
    slices : int
        Adjacent slices of the input stack (odd; 1 = 2D). The users' scripts use 5.
    target : {'high', 'truth'}
        Training target: the reference reconstruction (what a lab has) or the
        exact phantom (only in simulations).
    loss : {'l2', 'l1', 'ssim', 'ssim-l1'}
        Training loss (see :mod:`aiax_bench.training.losses`).
    patch_size : int
        Edge of the square training patches (px).
    batch_size : int
        Patches per optimiser step.
    learning_rate : float
        Initial learning rate.
    optimizer : {'adam', 'sgd'}
        Optimiser (SGD with momentum 0.99).
    lr_schedule : {'constant', 'cosine', 'geometric'}
        Learning-rate schedule over ``max_steps``.
    final_learning_rate : float, optional
        End of the schedule's decay (a tenth of ``learning_rate`` if omitted).
    grad_clip : float, optional
        Gradient clipping by value.
    max_steps : int
        Training budget in optimiser steps (reproducible).
    max_seconds : float, optional
        Safety limit on training time (s); a training stopped by it depends on
        the machine's speed.
    val_every : int
        Steps between validations (best weights kept, state saved).
    val_slice_step : int
        Validate on every ``val_slice_step``-th slice of the validation volumes.
    patience : int, optional
        Validations without improvement before stopping early.
    augment : bool
        Random flips and quarter turns of the slice plane (8-fold).
    patches_per_epoch : int
        Patches drawn per epoch (the data stream's period, not a budget).
    num_workers : int
        DataLoader worker processes.
    progress : bool
        Progress bars on stderr.
    inference_batch_size : int, optional
        Slices per forward pass at prediction; chosen by bytes if omitted
        (:func:`aiax_bench.training.inference.inference_plan`).
    inference_tile : int, optional
        In-plane tile (px) at prediction; chosen by bytes if omitted (whole
        slices unless one slice's activations exceed 256 MiB).
    inference_overlap : int
        Overlap of prediction tiles (px).
    """

    slices: int = 5
    target: str = "high"
    loss: str = "l2"
    patch_size: int = 64
    batch_size: int = 8
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    lr_schedule: str = "constant"
    final_learning_rate: float | None = None
    grad_clip: float | None = None
    max_steps: int = 1000
    max_seconds: float | None = 900.0
    val_every: int = 100
    val_slice_step: int = 4
    patience: int | None = None
    augment: bool = True
    patches_per_epoch: int = 4096
    num_workers: int = 0
    progress: bool = True
    inference_batch_size: int | None = None
    inference_tile: int | None = None
    inference_overlap: int = 32


class TrainingRecord:
    """What a learned method reports about its weights, from ``metadata['training']`` and ``training_result``.

    Mixed into every learned method: ``training_result`` is None when the
    weights came from a checkpoint, whose metadata records its training.
    """

    metadata: dict[str, Any] | None
    training_result: TrainResult | None

    def fit_summary(self) -> dict[str, Any]:
        """Steps, the step kept, why training stopped, its seconds, and whether a checkpoint was reused."""
        training = (self.metadata or {}).get("training") or {}
        if not training:
            return {}
        summary = {k: training[k] for k in ("steps", "best_step", "stopped_by", "seconds") if k in training}
        return {"training": {**summary, "checkpoint": "trained" if self.training_result is not None else "reused"}}

    def prior_training_seconds(self) -> float:
        """Seconds of earlier sessions (resumed training) or of the reused checkpoint's training."""
        if self.training_result is not None:
            return float(self.training_result.resumed_seconds)
        return float(((self.metadata or {}).get("training") or {}).get("seconds", 0.0))


class SliceMethod(TrainingRecord, Method):
    """A learned 2.5D slice-to-slice enhancement method (base class).

    Subclasses set ``name``, a ``Config`` deriving from :class:`SliceConfig`,
    ``PRESETS`` and ``residual``, and implement :meth:`build_network`.

    Attributes
    ----------
    model : aiax_bench.training.Standardized or None
        The trained network with its standardisation; None before training.
    training_result : TrainResult or None
        What the last training did (None for a reused checkpoint).
    checkpoint_path : Path or None
        The checkpoint the weights came from or were written to.
    """

    task = "enhance"
    inputs = ("reconstruction",)
    trainable = True

    #: Array the network reads.
    input_array: ClassVar[str] = "low"
    #: Whether the network predicts the residual target − input (FBPConvNet) or the target itself (MS-D).
    residual: ClassVar[bool] = False
    #: Named configurations, e.g. ``{"cpu": {}, "paper": {...}}``: pass ``{"preset": "paper", ...}`` as config.
    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {"cpu": {}}

    Config = SliceConfig

    @property
    def supervision(self) -> str:  # type: ignore[override]
        """``'truth'`` or ``'reference'``, after the training target (self-supervised subclasses override)."""
        return "truth" if self.config.target == "truth" else "reference"

    def __init__(self, config: SliceConfig | dict[str, Any] | None = None) -> None:
        super().__init__(config)
        self._check_config()
        self.model: Standardized | None = None
        self.training_result: TrainResult | None = None
        self.checkpoint_path: Path | None = None
        self.metadata: dict[str, Any] = {}

    # -- configuration ---------------------------------------------------------------------------

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> SliceConfig:
        """The config of preset ``name`` with ``overrides`` applied."""
        return cls.make_config({"preset": name, **overrides})

    def _check_config(self) -> None:
        c = self.config
        if c.slices < 1 or c.slices % 2 == 0:
            raise InputError("slices", f"is {c.slices}", "expected an odd number of adjacent slices (1, 3, 5, ...)")
        if c.target not in ("high", "truth"):
            raise InputError("target", f"is {c.target!r}", "expected 'high' (reference scan) or 'truth' (phantom)")
        if c.loss not in LOSSES:
            raise InputError("loss", f"is {c.loss!r}", f"expected one of {list(LOSSES)}")
        if c.patch_size < 16:
            raise InputError("patch_size", f"is {c.patch_size}", "expected at least 16 px")
        self.train_settings().check()

    def train_settings(self, budget: Budget | None = None) -> TrainSettings:
        """The trainer's settings: the config, capped by ``budget`` where that is tighter."""
        c = self.config
        steps, seconds = c.max_steps, c.max_seconds
        if budget is not None:
            if budget.iterations is not None:
                steps = min(steps, int(budget.iterations))
            if budget.seconds is not None:
                seconds = budget.seconds if seconds is None else min(seconds, budget.seconds)
        return TrainSettings(max_steps=steps, max_seconds=seconds, batch_size=c.batch_size,
                             learning_rate=c.learning_rate, optimizer=c.optimizer, lr_schedule=c.lr_schedule,
                             final_learning_rate=c.final_learning_rate, grad_clip=c.grad_clip,
                             val_every=min(c.val_every, steps), patience=c.patience, num_workers=c.num_workers,
                             progress=c.progress)

    def training_config(self) -> dict[str, Any]:
        """The config without the fields that do not change the trained weights."""
        return {k: v for k, v in self.config_dict().items() if k not in RUNTIME_FIELDS}

    # -- network ---------------------------------------------------------------------------------

    def build_network(self) -> nn.Module:
        """The bare network ``(B, slices, H, W) -> (B, 1, H, W)`` for this config (subclasses)."""
        raise NotImplementedError

    def _new_model(self, seed: int) -> Standardized:
        # A private RNG stream: the same seed gives the same initial weights
        # whatever ran before, and the caller's global RNG is left untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return Standardized(self.build_network(), residual=self.residual)

    def parameter_count(self) -> int:
        net = self.model.net if self.model is not None else self.build_network()
        return sum(p.numel() for p in net.parameters())

    # -- data ------------------------------------------------------------------------------------

    def statistics(self, samples: Sequence[SampleLike]) -> dict[str, float]:
        """Standardisation constants and intensity range from the training volumes (1/cm).

        Returns the input mean / std, the mean / std of what the network
        predicts (the target, or the residual target − input), and a robust
        ``data_range`` of the target (0.1–99.9 % quantiles) for the SSIM loss
        and the validation PSNR.
        """
        acc = np.zeros((2, 3))  # rows: input, output; columns: n, sum, sum of squares
        quantile_values = []
        for sample in samples:
            x_arr = getattr(sample, self.input_array)
            y_arr = getattr(sample, self.config.target)
            nz = x_arr.shape[0]
            for z0 in range(0, nz, 32):  # a slab at a time: volumes may not fit in memory
                x = np.asarray(x_arr[z0:z0 + 32], dtype=np.float64)
                y = np.asarray(y_arr[z0:z0 + 32], dtype=np.float64)
                out = y - x if self.residual else y
                for row, v in enumerate((x, out)):
                    acc[row] += (v.size, v.sum(), np.square(v).sum())
                quantile_values.append(y[::4, ::2, ::2].ravel())
        n, s, ss = acc[:, 0], acc[:, 1], acc[:, 2]
        mean = s / n
        std = np.sqrt(np.maximum(ss / n - mean**2, 0.0))
        lo, hi = np.quantile(np.concatenate(quantile_values), [0.001, 0.999])
        return {"input_mean": float(mean[0]), "input_std": float(max(std[0], 1e-6)),
                "output_mean": float(mean[1]), "output_std": float(max(std[1], 1e-6)),
                "data_range": float(max(hi - lo, 1e-6))}

    def datasets(self, train: Sequence[SampleLike], val: Sequence[SampleLike], *, seed: int):
        """The training patches and validation slices for this config."""
        from aiax_bench.data.torch_adapter import RandomPatches, SliceStacks

        c = self.config
        train_data = RandomPatches(train, slices=c.slices, patch_size=c.patch_size, input=self.input_array,
                                   target=c.target, length=max(c.patches_per_epoch, c.batch_size),
                                   augment=c.augment, seed=seed)
        val_data = SliceStacks(val, slices=c.slices, input=self.input_array, target=c.target,
                               slice_step=c.val_slice_step)
        return train_data, val_data

    # -- identity of a training ------------------------------------------------------------------

    @staticmethod
    def _store_sha256(samples: Sequence[SampleLike]) -> str | None:
        store = getattr(samples[0], "_store", None) if samples else None
        if store is None:
            return None
        try:
            import zarr

            return zarr.open_group(str(store), mode="r").attrs.get("content_sha256")
        except Exception:  # not an aiax-bench store: no identity to check
            return None

    def training_identity(self, train: Sequence[SampleLike], val: Sequence[SampleLike], *, seed: int,
                          settings: TrainSettings, context: FitContext) -> dict[str, Any]:
        """Everything that determines the trained weights, as JSON-ready values."""
        from aiax_bench.version import __version__

        mixture = list(context.train_splits) if context.train_splits else None
        split = context.split or getattr(train[0], "split", None)
        if mixture and len(mixture) == 1:
            # Trained on one split, evaluated on another: the same training as that split's own.
            split, mixture = mixture[0], None
        elif mixture:
            # A mixed training is the same whichever split it is then evaluated on: its key names the mixture only.
            split = None
        return json_ready({
            "method": self.name,
            "config": self.training_config(),
            "max_steps": settings.max_steps,
            "max_seconds": settings.max_seconds,
            "seed": int(seed),
            "dataset": context.dataset,
            "dataset_sha256": context.dataset_sha256 or self._store_sha256(train),
            "split": split,
            # Only when set: the keys of the checkpoints trained on one split stay what they were.
            **({"train_splits": mixture} if mixture else {}),
            "train_ids": [getattr(s, "id", None) for s in train],
            "val_ids": [getattr(s, "id", None) for s in val],
            "training_code_version": TRAINING_CODE_VERSION,
            "package_version": __version__,
        })

    @staticmethod
    def training_key(identity: Mapping[str, Any]) -> str:
        """sha256 of a training identity (the cache key of its checkpoint)."""
        # The dataset name is a label; the content hash is what identifies the data.
        doc = {k: v for k, v in identity.items() if k != "dataset"}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    # -- fit / predict ---------------------------------------------------------------------------

    def fit(self, train: Sequence[SampleLike], val: Sequence[SampleLike], *, seed: int, budget: Budget | None = None,
            tracker: Any = None, context: FitContext | Mapping[str, Any] | None = None) -> None:
        """Train on ``train`` (validating on ``val``), or reuse a matching checkpoint.

        Parameters
        ----------
        train, val : sequence of Sample
            Training and validation samples of one split (or of several: ``context.train_splits``).
        seed : int
            Seed of the initial weights and of the patch stream.
        budget : Budget, optional
            Caps the config's ``max_steps`` / ``max_seconds``.
        tracker : module, optional
            ``mlflow`` with an active run: training curves and the checkpoint are logged to it.
        context : FitContext or mapping, optional
            Data identity and checkpoint cache (see the module documentation).
        """
        plan = self._plan_training(train, val, seed=seed, budget=budget, tracker=tracker, context=context)
        if plan is None:
            return
        ctx, settings, identity, key, root = plan
        work_dir = root / f"{key}.partial" if root is not None else None
        if work_dir is not None and not ctx.resume:
            shutil.rmtree(work_dir, ignore_errors=True)

        stats = self.statistics(train)
        model = self._new_model(seed)
        model.set_statistics(**{k: v for k, v in stats.items() if k != "data_range"})
        train_data, val_data = self.datasets(train, val, seed=seed)
        trainer = self.make_trainer(model, stats, train_data, val_data, seed=seed, settings=settings,
                                    tracker=tracker, work_dir=work_dir, resume_key=key)
        result = trainer.run()
        self.model = model.cpu().eval()
        self.training_result = result
        self.metadata = self._metadata(identity, key, stats, result)
        if root is not None:
            self.save(root / key)
            shutil.rmtree(work_dir, ignore_errors=True)
            print(f"{self.name}: checkpoint written to {root / key} (aiax-bench apply --checkpoint ...)",
                  file=sys.stderr)
        if tracker is not None:
            self._log_checkpoint(tracker)

    def make_trainer(self, model: Standardized, stats: Mapping[str, float], train_data: Any, val_data: Any, *,
                     seed: int, settings: TrainSettings, tracker: Any, work_dir: Path | None,
                     resume_key: str) -> Trainer:
        """The :class:`Trainer` of this method: the config's loss on ``(input, target)`` patches by default.

        A method with another objective (an adversarial one) returns a
        ``Trainer`` subclass that overrides the loss and step hooks; the loop,
        budget, validation, resume and logging stay the same for every method.
        """
        loss = make_loss(self.config.loss, scale=stats["output_std"], data_range=stats["data_range"])
        return Trainer(model, loss, train_data, val_data, settings=settings, tracker=tracker, work_dir=work_dir,
                       resume_key=resume_key, description=f"train {self.name}")

    def _plan_training(self, train: Sequence[SampleLike], val: Sequence[SampleLike], *, seed: int,
                       budget: Budget | None,
                       tracker: Any, context: FitContext | Mapping[str, Any] | None):
        """Check the data, identify the training, and adopt a matching checkpoint if there is one.

        Returns ``None`` when a checkpoint was adopted (nothing to train), else
        ``(context, settings, identity, key, checkpoint_root_or_None)``.
        """
        if not train or not val:
            raise InputError(f"training data of method {self.name}",
                             f"has {len(train)} training and {len(val)} validation sample(s)",
                             "expected at least one of each")
        ctx = FitContext.of(context)
        settings = self.train_settings(budget)
        identity = self.training_identity(train, val, seed=seed, settings=settings, context=ctx)
        key = self.training_key(identity)
        if ctx.checkpoint is not None:
            self._adopt(ctx.checkpoint, identity, tracker)
            return None
        root = ctx.checkpoint_root / self.name if ctx.checkpoint_root is not None else None
        if root is not None and (root / key).is_dir() and ctx.reuse:
            self._adopt(root / key, identity, tracker, key=key)
            return None
        return ctx, settings, identity, key, root

    def _adopt(self, path: Path, identity: Mapping[str, Any], tracker: Any, *, key: str | None = None) -> None:
        """Load a checkpoint for this training, refusing one made for anything else."""
        expect = {"method": self.name}
        for field in ("dataset_sha256", "split", "train_splits"):
            if identity.get(field) is not None:
                expect[f"training.{field}"] = identity[field]
        if key is not None:
            expect["training.key"] = key
        ckpt = load_checkpoint(path, expect=expect)
        theirs = {k: v for k, v in ckpt.config.items() if k not in RUNTIME_FIELDS}
        ours = json_ready(self.training_config())
        differing = sorted(k for k in set(theirs) | set(ours) if theirs.get(k) != ours.get(k))
        if differing:
            detail = ", ".join(f"{k}: checkpoint {theirs.get(k)!r} vs {ours.get(k)!r}" for k in differing)
            raise InputError(f"checkpoint {path}", f"was trained with another config ({detail})",
                             "train again, or pass the checkpoint's config")
        self._load_weights(ckpt)
        print(f"{self.name}: reusing checkpoint {path}", file=sys.stderr)
        if tracker is not None:
            tracker.set_tag("checkpoint", str(path))
            tracker.set_tag("checkpoint_reused", "true")

    def _load_weights(self, ckpt) -> None:
        model = Standardized(self.build_network(), residual=self.residual)
        model.load_state_dict(ckpt.state_dict)
        self.model = model.eval()
        self.metadata = ckpt.metadata
        self.checkpoint_path = ckpt.path
        self.training_result = None

    def _metadata(self, identity: Mapping[str, Any], key: str, stats: Mapping[str, float],
                  result: TrainResult) -> dict[str, Any]:
        from aiax_bench.version import __version__

        c = self.config
        return json_ready({
            "method": self.name,
            "method_class": f"{type(self).__module__}:{type(self).__qualname__}",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "package_version": __version__,
            "torch_version": torch.__version__,
            "parameters": self.parameter_count(),
            "input": {"array": self.input_array, "units": "1/cm", "dtype": "float32",
                      "layout": "(batch, slices, y, x)", "slices": c.slices, "slice_axis": "z",
                      "edges": "reflect"},
            "output": {"array": c.target, "units": "1/cm", "layout": "(batch, 1, y, x)",
                       "residual": self.residual},
            "value_range": dict(stats),
            "training": {**identity, "key": key, **result.summary()},
        })

    def _log_checkpoint(self, tracker: Any) -> None:
        # Every run carries its weights, so a result can be re-scored from MLflow alone.
        if self.checkpoint_path is not None:
            tracker.log_artifacts(str(self.checkpoint_path), artifact_path="checkpoint")
            return
        with tempfile.TemporaryDirectory() as tmp:
            directory = Path(tmp) / "checkpoint"
            save_checkpoint(directory, state_dict=self.model.state_dict(), config=json_ready(self.config_dict()),
                            metadata=self.metadata)
            tracker.log_artifacts(str(directory), artifact_path="checkpoint")

    def predict(self, sample: SampleLike | np.ndarray) -> np.ndarray:
        """Enhanced volume (1/cm, float32, the shape of ``sample.low``) of a sample or a ``(Z, Y, X)`` array."""
        from aiax_bench.training.inference import predict_volume

        if self.model is None:
            raise InputError(f"method {self.name}", "is not trained", "call fit() or load a checkpoint first")
        volume = getattr(sample, self.input_array) if hasattr(sample, self.input_array) else sample
        c = self.config
        return predict_volume(self.model, volume, slices=c.slices, batch_size=c.inference_batch_size,
                              tile=c.inference_tile, overlap=c.inference_overlap)

    # -- checkpoints -----------------------------------------------------------------------------

    def save(self, directory: Path) -> None:
        """Write the trained weights, config and metadata to a checkpoint directory."""
        if self.model is None:
            raise InputError(f"method {self.name}", "is not trained", "call fit() before save()")
        save_checkpoint(Path(directory), state_dict=self.model.state_dict(), config=json_ready(self.config_dict()),
                        metadata=self.metadata or {"method": self.name})
        self.checkpoint_path = Path(directory)

    @classmethod
    def load(cls, directory: Path) -> SliceMethod:
        """A method ready to predict, from a checkpoint directory written by :meth:`save` or training."""
        ckpt = load_checkpoint(Path(directory), expect={"method": cls.name})
        method = cls(ckpt.config)
        method._load_weights(ckpt)
        return method
