"""The training loop shared by every learned method.

One function, :func:`train`, with everything a reference implementation needs
and nothing model-specific:

* deterministic on CPU for a given seed and iteration budget (patches are a
  pure function of ``(seed, epoch, index)``, see
  :class:`aiax_bench.data.torch_adapter.RandomPatches`; the model is built by
  the caller under its seed);
* automatic device (CUDA when present, ``AIAX_BENCH_DEVICE`` to override) with
  mixed precision on CUDA;
* validation every ``val_every`` steps, early stopping after ``patience``
  validations without improvement, and the best weights kept;
* a budget in steps and/or wall-clock seconds, whichever ends first;
* training curves (loss, learning rate, validation loss and PSNR) logged to
  the active MLflow run, and a progress bar;
* resumable: with a ``work_dir`` the full training state is saved at every
  validation (and on Ctrl-C), and a later call continues where it stopped,
  seeing the same patches it would have seen without the interruption.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from aiax_bench.errors import InputError, StoreError
from aiax_bench.recon.device import default_device

__all__ = ["TrainResult", "TrainSettings", "Trainer", "evaluate_loss", "log_metrics", "train"]

STATE_FILE = "training_state.pt"


@dataclasses.dataclass
class TrainSettings:
    """Options of :func:`train`.

    Attributes
    ----------
    max_steps : int
        Optimiser steps (one batch each).
    max_seconds : float, optional
        Wall-clock limit (s) of the training, validations included, summed over
        resumed sessions. A time limit makes the number of steps, hence the
        weights, depend on the machine: only ``max_steps`` is reproducible.
    batch_size : int
        Patches per step.
    learning_rate : float
        Initial learning rate.
    optimizer : {'adam', 'sgd'}
        Adam (default betas), or SGD with ``momentum``.
    momentum : float
        Momentum of SGD.
    lr_schedule : {'constant', 'cosine', 'geometric'}
        ``cosine`` decays to ``final_learning_rate`` over ``max_steps``;
        ``geometric`` decays log-linearly to it (FBPConvNet).
    final_learning_rate : float, optional
        End of the decay (0 allowed); a tenth of ``learning_rate`` if omitted.
    warmup_steps : int
        Linear warm-up of the learning rate over the first steps (0: none).
    grad_clip : float, optional
        Clip every gradient element to ``[-grad_clip, grad_clip]``.
    val_every : int
        Steps between validations (and saved training states).
    patience : int, optional
        Validations without improvement before stopping early; never if omitted.
    log_every : int
        Steps between logged training-loss averages.
    num_workers : int
        DataLoader worker processes.
    amp : bool
        Mixed precision on CUDA (bfloat16 where supported, else float16 with loss
        scaling). Ignored on CPU.
    progress : bool
        Show a progress bar on stderr.
    """

    max_steps: int = 1000
    max_seconds: float | None = None
    batch_size: int = 8
    learning_rate: float = 1e-3
    optimizer: str = "adam"
    momentum: float = 0.99
    lr_schedule: str = "constant"
    final_learning_rate: float | None = None
    warmup_steps: int = 0
    grad_clip: float | None = None
    val_every: int = 100
    patience: int | None = None
    log_every: int = 10
    num_workers: int = 0
    amp: bool = True
    progress: bool = True

    def check(self) -> None:
        """Raise :class:`InputError` on an impossible setting."""
        positive = {"max_steps": self.max_steps, "batch_size": self.batch_size, "val_every": self.val_every,
                    "log_every": self.log_every, "learning_rate": self.learning_rate}
        for name, value in positive.items():
            if not value > 0:
                raise InputError(name, f"is {value}", "expected a positive value")
        if self.optimizer not in ("adam", "sgd"):
            raise InputError("optimizer", f"is {self.optimizer!r}", "expected 'adam' or 'sgd'")
        if self.lr_schedule not in ("constant", "cosine", "geometric"):
            raise InputError("lr_schedule", f"is {self.lr_schedule!r}", "expected 'constant', 'cosine' or 'geometric'")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise InputError("max_seconds", f"is {self.max_seconds}", "expected a positive time in seconds or None")
        if self.patience is not None and self.patience < 1:
            raise InputError("patience", f"is {self.patience}", "expected a positive number of validations or None")
        if self.final_learning_rate is not None and not self.final_learning_rate >= 0:
            raise InputError("final_learning_rate", f"is {self.final_learning_rate}",
                             "expected a learning rate of 0 or more, or None")
        if self.warmup_steps < 0:
            raise InputError("warmup_steps", f"is {self.warmup_steps}", "expected 0 or more steps")
        if self.num_workers < 0:
            raise InputError("num_workers", f"is {self.num_workers}", "expected 0 or more worker processes")


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` did.

    Attributes
    ----------
    steps : int
        Optimiser steps done in total (resumed sessions included).
    seconds : float
        Training wall-clock time (s) in total.
    best_step : int
        Step of the weights kept (the best validation loss).
    monitor : str
        Validation score that selected them (``loss``, ``jaccard``, ...).
    best_val : dict of str to float
        Validation scores of those weights (``loss`` and ``psnr`` (dB) for enhancement).
    stopped_by : str
        ``'steps'``, ``'seconds'`` or ``'early-stopping'``.
    history : dict of str to list
        ``step``/``lr`` and the logged training averages (``loss``, ...), and
        ``val_step`` with ``val_<score>`` per validation score.
    resumed_from : int
        Step a resumed training started from (0 for a fresh one).
    resumed_seconds : float
        Training time (s) of the earlier sessions a resumed training continues (0 for a fresh one).
    """

    steps: int
    seconds: float
    best_step: int
    monitor: str
    best_val: dict[str, float]
    stopped_by: str
    history: dict[str, list[float]]
    resumed_from: int = 0
    resumed_seconds: float = 0.0

    @property
    def best_val_loss(self) -> float | None:
        """Validation loss of the kept weights (None when validation reports no loss)."""
        return self.best_val.get("loss")

    @property
    def best_val_psnr(self) -> float | None:
        """Validation PSNR (dB) of the kept weights (None when validation reports none)."""
        return self.best_val.get("psnr")

    def summary(self) -> dict[str, Any]:
        """The scalar fields, for metadata.json."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "history"}


def _lr_factor(settings: TrainSettings):
    final = settings.learning_rate / 10 if settings.final_learning_rate is None else settings.final_learning_rate
    ratio = final / settings.learning_rate
    n = max(settings.max_steps, 1)

    def decay(step: int) -> float:
        t = min(step / n, 1.0)
        if settings.lr_schedule == "cosine":
            return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * t))
        if settings.lr_schedule == "geometric":
            return ratio**t
        return 1.0

    if settings.warmup_steps == 0:
        return decay
    return lambda step: min(1.0, (step + 1) / settings.warmup_steps) * decay(step)


def _optimizer(model: nn.Module, settings: TrainSettings) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if settings.optimizer == "sgd":
        return torch.optim.SGD(params, lr=settings.learning_rate, momentum=settings.momentum)
    return torch.optim.Adam(params, lr=settings.learning_rate)


def _autocast(device: torch.device, settings: TrainSettings):
    if device.type == "cuda" and settings.amp:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype), dtype
    return torch.autocast(device.type, enabled=False), torch.float32


@torch.no_grad()
def evaluate_loss(model: nn.Module, loss_fn: nn.Module, data: Dataset, *, device: torch.device,
                  batch_size: int = 4) -> tuple[float, float]:
    """Mean loss and PSNR (dB, with ``loss_fn.data_range``) of ``model`` over ``data``.

    The PSNR is taken over all pixels of all items together.
    """
    was_training = model.training
    model.eval()
    total_loss, total_se, n_items, n_pixels = 0.0, 0.0, 0, 0
    for x, y in DataLoader(data, batch_size=batch_size, shuffle=False):
        x, y = x.to(device), y.to(device)
        pred = model(x).float()
        total_loss += float(loss_fn(pred, y)) * len(x)
        total_se += float(torch.sum((pred - y) ** 2, dtype=torch.float64))
        n_items += len(x)
        n_pixels += y.numel()
    model.train(was_training)
    mse = total_se / max(n_pixels, 1)
    data_range = float(getattr(loss_fn, "data_range", 1.0))
    psnr = float("inf") if mse == 0 else 10 * math.log10(data_range**2 / mse)
    return total_loss / max(n_items, 1), psnr


class _IndexRange(torch.utils.data.Sampler[int]):
    """Indices ``start..stop-1`` in order: the rest of an epoch after a resume."""

    def __init__(self, start: int, stop: int) -> None:
        self.start, self.stop = start, stop

    def __iter__(self):
        return iter(range(self.start, self.stop))

    def __len__(self) -> int:
        return self.stop - self.start


def _save_state(work_dir: Path, state: dict[str, Any]) -> None:
    try:
        work_dir.mkdir(parents=True, exist_ok=True)
        tmp = work_dir / f".{STATE_FILE}.tmp-{os.getpid()}"
        torch.save(state, tmp)
        os.replace(tmp, work_dir / STATE_FILE)
    except OSError as exc:
        raise StoreError(work_dir, f"cannot save the training state ({exc.strerror or exc})",
                         "pass a writable work directory") from None


def _load_state(work_dir: Path, resume_key: str) -> dict[str, Any] | None:
    path = work_dir / STATE_FILE
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a state cut off mid-write by a crash
        raise StoreError(path, f"cannot read the saved training state ({type(exc).__name__})",
                         "delete it to train from the start") from None
    if state.get("resume_key") != resume_key:
        raise StoreError(path, "saved training state belongs to another configuration or dataset",
                         "delete the work directory to train from the start")
    return state


def _best_of_version_1(state: Mapping[str, Any]) -> dict[str, Any]:
    """The kept weights of a training state saved before validation scores were named."""
    return {"score": float(state["best_loss"]), "scores": {"loss": float(state["best_loss"]),
                                                         "psnr": float(state["best_psnr"])},
            "step": int(state["best_step"]), "weights": state["best_weights"]}


def log_metrics(tracker: Any, metrics: Mapping[str, float], step: int) -> None:
    """Log the finite ``metrics`` at ``step`` to ``tracker`` (``mlflow`` with an active run), if any."""
    if tracker is not None:
        tracker.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(v)}, step=step)


class Trainer:
    """The training loop of every learned method; methods change the loss and the step, not the loop.

    The loop owns what every learned method needs the same way: the budget
    (steps and/or seconds), the optimiser and learning-rate schedule, device
    placement and mixed precision on CUDA, validation every ``val_every``
    steps with the best weights kept, early stopping, running averages and
    MLflow curves, the progress bar, and a resumable training state.

    A method customises it by overriding hooks (DeepInverse style):

    :meth:`next_batch`
        The next training batch (default: the seeded patch stream of
        ``train_data``, epoch by epoch).
    :meth:`compute_loss`
        The model's training loss on a batch, as a dict whose ``"loss"`` entry
        is optimised; other entries are logged (default: ``loss_fn(model(x), y)``).
    :meth:`before_step`
        Work done before each model step, returning logged scalars (a GAN
        trains its discriminator here).
    :meth:`validate`
        Validation scores (default: loss and PSNR on ``val_data``); the
        weights with the best ``monitor`` score are kept.
    :meth:`extra_state` / :meth:`load_extra_state` / :meth:`on_step_end`
        What else a resumed training needs (a discriminator, a random stream),
        as of the last completed step.

    Parameters
    ----------
    model : torch.nn.Module
        Trained in place; ends with the best validated weights, in eval mode.
    loss_fn : torch.nn.Module, optional
        ``loss_fn(prediction, target)`` -> scalar for the default hooks; its
        ``data_range`` attribute (if any) sets the validation PSNR.
    train_data, val_data : Dataset, optional
        Training items ``(input, target)`` (``set_epoch`` is called per epoch
        if present) and validation items, for the default hooks.
    settings : TrainSettings, optional
        Budget, optimiser and schedule; the defaults if omitted.
    device : torch.device or str, optional
        Where to train; CUDA when present otherwise.
    tracker : module or object, optional
        Anything with ``log_metrics(dict, step=...)``, usually ``mlflow`` with an active run.
    work_dir : Path, optional
        Where the training state is saved for resuming; nothing is saved if omitted.
    resume_key : str
        Identifies the configuration; a saved state with another key is refused.
    metric_prefix : str
        Prefix of the logged metric names (``train/loss``, ``val/psnr``, ...).
    description : str
        Label of the progress bar.
    """

    #: Validation score that selects the kept weights, and whether lower (``"min"``) or higher is better.
    monitor: str = "loss"
    monitor_mode: str = "min"

    def __init__(self, model: nn.Module, loss_fn: nn.Module | None = None, train_data: Dataset | None = None,
                 val_data: Dataset | None = None, *, settings: TrainSettings | None = None,
                 device: torch.device | str | None = None, tracker: Any = None, work_dir: Path | None = None,
                 resume_key: str = "", metric_prefix: str = "", description: str = "train") -> None:
        self.settings = settings or TrainSettings()
        self.settings.check()
        self.model, self.loss_fn = model, loss_fn
        self.train_data, self.val_data = train_data, val_data
        self.device = torch.device(device) if device is not None else default_device()
        self.tracker, self.work_dir, self.resume_key = tracker, work_dir, resume_key
        self.metric_prefix, self.description = metric_prefix, description
        self.autocast, amp_dtype = _autocast(self.device, self.settings)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        self.step = 0
        self.batches_drawn = 0
        self._batches: Iterator | None = None

    # -- hooks -----------------------------------------------------------------------------------

    def check_data(self) -> None:
        """Refuse data the default hooks cannot train on (one line)."""
        if len(self.train_data) // self.settings.batch_size < 1:
            raise InputError("training data", f"has {len(self.train_data)} item(s)",
                             f"expected at least one batch of {self.settings.batch_size}")
        if len(self.val_data) < 1:
            raise InputError("validation data", "is empty", "expected at least one validation item")

    def next_batch(self) -> Any:
        """The next training batch, on the device: ``(input, target)`` of the patch stream."""
        if self._batches is None:
            self._batches = self._stream(self.batches_drawn)
        batch = next(self._batches)
        self.batches_drawn += 1  # after the draw: an interrupted draw is drawn again on resume
        return batch

    def _stream(self, start: int) -> Iterator:
        """Batches from the ``start``-th on: a resumed training sees the batches it would have seen."""
        s = self.settings
        per_epoch = len(self.train_data) // s.batch_size
        epoch, offset = divmod(start, per_epoch)
        while True:
            if hasattr(self.train_data, "set_epoch"):
                self.train_data.set_epoch(epoch)
            loader = DataLoader(self.train_data, batch_size=s.batch_size,
                                sampler=_IndexRange(offset * s.batch_size, per_epoch * s.batch_size),
                                drop_last=True, num_workers=s.num_workers, pin_memory=self.device.type == "cuda")
            for x, y in loader:
                yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
            epoch, offset = epoch + 1, 0

    def compute_loss(self, batch: Any) -> dict[str, torch.Tensor]:
        """Training loss of the model on one batch (``"loss"`` is optimised, the rest logged)."""
        x, y = batch
        with self.autocast:
            pred = self.model(x)
        return {"loss": self.loss_fn(pred.float(), y)}

    def before_step(self) -> dict[str, torch.Tensor]:
        """Work before each model step; returns scalars to log (none by default)."""
        return {}

    def validate(self) -> dict[str, float]:
        """Validation scores of the model; must include :attr:`monitor`."""
        loss, psnr = evaluate_loss(self.model, self.loss_fn, self.val_data, device=self.device,
                                   batch_size=max(1, self.settings.batch_size // 2))
        return {"loss": loss, "psnr": psnr}

    def on_step_end(self) -> None:
        """Called after each completed step (a random stream notes where a resume must restart)."""

    def extra_state(self) -> dict[str, Any]:
        """What else a resumed training needs as of the last completed step, saved with the model."""
        return {}

    def load_extra_state(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`extra_state`."""

    # -- the loop --------------------------------------------------------------------------------

    def _restore(self, state: Mapping[str, Any]) -> None:
        """Continue from a saved training state."""
        self.model.load_state_dict(state["model"])
        self._optimizer.load_state_dict(state["optimizer"])
        self._scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.batches_drawn = self._drawn_at_step = int(state.get("batches_drawn", self.step))
        self.load_extra_state(state.get("extra", {}))
        self._history = {k: list(v) for k, v in state["history"].items()}
        self._best = dict(state["best"]) if "best" in state else _best_of_version_1(state)
        self._seconds_before, self._stale = float(state["seconds"]), int(state["stale"])

    def _elapsed(self) -> float:
        return self._seconds_before + time.perf_counter() - self._started

    def _snapshot(self) -> dict[str, Any]:
        return {"resume_key": self.resume_key, "model": self.model.state_dict(),
                "optimizer": self._optimizer.state_dict(), "scheduler": self._scheduler.state_dict(),
                "scaler": self.scaler.state_dict(), "step": self.step, "batches_drawn": self._drawn_at_step,
                "seconds": self._elapsed(), "stale": self._stale, "history": self._history, "best": self._best,
                "extra": self.extra_state()}

    def _optimise(self, loss: torch.Tensor) -> None:
        """One optimiser step on ``loss`` (loss scaling on CUDA float16, optional gradient clipping)."""
        if not torch.isfinite(loss):
            raise InputError(f"training loss at step {self.step + 1}", f"is {float(loss)}",
                             "lower learning_rate, or check the input data for NaN/inf")
        optimizer = self._optimizer
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.settings.grad_clip is not None:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_value_(self.model.parameters(), self.settings.grad_clip)
        self.scaler.step(optimizer)
        self.scaler.update()
        self._scheduler.step()

    def _log_averages(self, averages: Mapping[str, float]) -> None:
        lr = self._optimizer.param_groups[0]["lr"]
        history = self._history
        history["step"].append(self.step)
        history["lr"].append(lr)
        for name, value in averages.items():
            history.setdefault(name, []).append(value)
        log_metrics(self.tracker, {**{f"{self.metric_prefix}train/{k}": v for k, v in averages.items()},
                                   f"{self.metric_prefix}train/lr": lr}, self.step)

    def _validate_and_keep(self) -> bool:
        """Validate, keep the best weights, save the state; True when patience is exhausted."""
        scores = self.validate()
        self.model.train()
        self._history["val_step"].append(self.step)
        for name, value in scores.items():
            self._history.setdefault(f"val_{name}", []).append(value)
        log_metrics(self.tracker, {f"{self.metric_prefix}val/{k}": v for k, v in scores.items()}, self.step)
        score = scores[self.monitor]
        improved = score < self._best["score"] if self.monitor_mode == "min" else score > self._best["score"]
        if improved:
            self._best.update(score=score, scores=dict(scores), step=self.step,
                              weights={k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()})
        self._stale = 0 if improved else self._stale + 1
        self._bar.set_postfix_str(", ".join(f"val {k} {v:.4g}" for k, v in scores.items()))
        if self.work_dir is not None:
            _save_state(self.work_dir, self._snapshot())
        return self.settings.patience is not None and self._stale >= self.settings.patience

    def _train_steps(self) -> str:
        """Steps until the budget ends or patience runs out; returns why training stopped."""
        s = self.settings
        running: dict[str, float] = {}
        n_running = 0
        if s.max_seconds is not None and self._elapsed() >= s.max_seconds:
            return "seconds"
        while self.step < s.max_steps:
            logged = self.before_step()
            terms = self.compute_loss(self.next_batch())
            self._optimise(terms["loss"])
            self.step += 1
            self._drawn_at_step = self.batches_drawn  # a step interrupted after its draws resumes before them
            self.on_step_end()
            self._bar.update()
            for name, value in {**terms, **logged}.items():
                running[name] = running.get(name, 0.0) + float(value.detach())
            n_running += 1
            if self.step % s.log_every == 0 or self.step == s.max_steps:
                self._log_averages({k: v / n_running for k, v in running.items()})
                running, n_running = {}, 0
            if self.step % s.val_every == 0 and self._validate_and_keep():
                return "early-stopping"
            if s.max_seconds is not None and self._elapsed() >= s.max_seconds:
                return "seconds"
        return "steps"

    def run(self) -> TrainResult:
        """Train and leave the best validated weights in the model."""
        from tqdm.auto import tqdm

        s, model = self.settings, self.model
        self.check_data()
        model.to(self.device).train()
        self._optimizer = _optimizer(model, s)
        self._scheduler = torch.optim.lr_scheduler.LambdaLR(self._optimizer, _lr_factor(s))
        self._history: dict[str, list[float]] = {"step": [], "loss": [], "lr": [], "val_step": []}
        worst = math.inf if self.monitor_mode == "min" else -math.inf
        self._best: dict[str, Any] = {"score": worst, "scores": {}, "step": 0, "weights": None}
        self._seconds_before, self._stale, self._drawn_at_step = 0.0, 0, self.batches_drawn
        state = _load_state(self.work_dir, self.resume_key) if self.work_dir is not None else None
        if state is not None:
            self._restore(state)
        resumed_from = self.step
        self._started = time.perf_counter()
        self._bar = tqdm(total=s.max_steps, initial=min(self.step, s.max_steps), desc=self.description,
                         unit="step", disable=not s.progress, file=sys.stderr, dynamic_ncols=True)
        try:
            stopped_by = self._train_steps()
            if not self._history["val_step"] or self._history["val_step"][-1] != self.step:
                self._validate_and_keep()
        except KeyboardInterrupt:
            if self.work_dir is not None:
                _save_state(self.work_dir, self._snapshot())
                print(f"\ninterrupted at step {self.step}: training state saved in {self.work_dir}; "
                      "run again to resume", file=sys.stderr)
            raise
        finally:
            self._bar.close()
        best = self._best
        if best["weights"] is not None:
            model.load_state_dict(best["weights"])
        model.eval()
        return TrainResult(steps=self.step, seconds=round(self._elapsed(), 3), best_step=int(best["step"]),
                           monitor=self.monitor, best_val={k: float(v) for k, v in best["scores"].items()},
                           stopped_by=stopped_by, history=copy.deepcopy(self._history), resumed_from=resumed_from,
                           resumed_seconds=round(self._seconds_before, 3))


def train(model: nn.Module, loss_fn: nn.Module, train_data: Dataset, val_data: Dataset, *,
          settings: TrainSettings | None = None, device: torch.device | str | None = None, tracker: Any = None,
          work_dir: Path | None = None, resume_key: str = "", metric_prefix: str = "",
          description: str = "train") -> TrainResult:
    """Train ``model`` with the default hooks of :class:`Trainer` (supervised ``loss_fn(model(x), y)``).

    Same parameters as :class:`Trainer`; returns its :class:`TrainResult`.
    """
    return Trainer(model, loss_fn, train_data, val_data, settings=settings, device=device, tracker=tracker,
                   work_dir=work_dir, resume_key=resume_key, metric_prefix=metric_prefix,
                   description=description).run()
