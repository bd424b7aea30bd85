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
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from aiax_bench.errors import InputError, StoreError
from aiax_bench.recon.device import default_device

__all__ = ["TrainResult", "TrainSettings", "evaluate_loss", "log_metrics", "record_validation", "train"]

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
        End of the decay; a tenth of ``learning_rate`` if omitted.
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
    best_val_loss : float
        Validation loss of those weights.
    best_val_psnr : float
        Validation PSNR (dB) of those weights.
    stopped_by : str
        ``'steps'``, ``'seconds'`` or ``'early-stopping'``.
    history : dict of str to list
        ``step``/``loss``/``lr`` of the logged training averages and
        ``val_step``/``val_loss``/``val_psnr``.
    resumed_from : int
        Step a resumed training started from (0 for a fresh one).
    resumed_seconds : float
        Training time (s) of the earlier sessions a resumed training continues (0 for a fresh one).
    """

    steps: int
    seconds: float
    best_step: int
    best_val_loss: float
    best_val_psnr: float
    stopped_by: str
    history: dict[str, list[float]]
    resumed_from: int = 0
    resumed_seconds: float = 0.0

    def summary(self) -> dict[str, Any]:
        """The scalar fields, for metadata.json."""
        return {k: v for k, v in dataclasses.asdict(self).items() if k != "history"}


def _lr_factor(settings: TrainSettings):
    final = settings.final_learning_rate or settings.learning_rate / 10
    ratio = final / settings.learning_rate
    n = max(settings.max_steps, 1)

    def factor(step: int) -> float:
        t = min(step / n, 1.0)
        if settings.lr_schedule == "cosine":
            return ratio + (1 - ratio) * 0.5 * (1 + math.cos(math.pi * t))
        if settings.lr_schedule == "geometric":
            return ratio**t
        return 1.0

    return factor


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


def record_validation(model: nn.Module, loss_fn: nn.Module, val_data: Dataset, *, step: int,
                      history: dict[str, list], best: dict[str, Any], device: torch.device, batch_size: int,
                      tracker: Any = None, metric_prefix: str = "") -> tuple[float, float, bool]:
    """Validate ``model``, append to ``history``, log the curves and keep the best weights in ``best``.

    ``best`` holds ``loss``, ``psnr``, ``step`` and ``weights`` (a CPU copy of
    the state dict), replaced when the validation loss improves. Returns the
    validation loss, PSNR (dB) and whether it improved.
    """
    val_loss, val_psnr = evaluate_loss(model, loss_fn, val_data, device=device, batch_size=batch_size)
    history["val_step"].append(step)
    history["val_loss"].append(val_loss)
    history["val_psnr"].append(val_psnr)
    log_metrics(tracker, {f"{metric_prefix}val/loss": val_loss, f"{metric_prefix}val/psnr": val_psnr}, step)
    improved = val_loss < best["loss"]
    if improved:
        best.update(loss=val_loss, psnr=val_psnr, step=step,
                    weights={k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
    return val_loss, val_psnr, improved


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


def log_metrics(tracker: Any, metrics: Mapping[str, float], step: int) -> None:
    """Log the finite ``metrics`` at ``step`` to ``tracker`` (``mlflow`` with an active run), if any."""
    if tracker is not None:
        tracker.log_metrics({k: float(v) for k, v in metrics.items() if math.isfinite(v)}, step=step)


def train(model: nn.Module, loss_fn: nn.Module, train_data: Dataset, val_data: Dataset, *,
          settings: TrainSettings | None = None, device: torch.device | str | None = None, tracker: Any = None,
          work_dir: Path | None = None, resume_key: str = "", metric_prefix: str = "",
          description: str = "train") -> TrainResult:
    """Train ``model`` in place and leave the best validated weights in it.

    Parameters
    ----------
    model : torch.nn.Module
        Maps a batch of inputs to predictions in the units of the targets.
    loss_fn : torch.nn.Module
        ``loss_fn(prediction, target)`` -> scalar; its ``data_range`` attribute
        (if any) is used for the validation PSNR.
    train_data : Dataset
        Training items ``(input, target)``; if it has ``set_epoch`` (like
        :class:`~aiax_bench.data.torch_adapter.RandomPatches`) it is called at
        every epoch.
    val_data : Dataset
        Validation items (e.g. :class:`~aiax_bench.data.torch_adapter.SliceStacks`).
    settings : TrainSettings, optional
        Budget, optimiser and schedule; the defaults if omitted.
    device : torch.device or str, optional
        Where to train; CUDA when present otherwise (see
        :func:`aiax_bench.recon.device.default_device`).
    tracker : module or object, optional
        Anything with ``log_metrics(dict, step=...)``, usually the ``mlflow``
        module with an active run.
    work_dir : Path, optional
        Where the training state is saved for resuming; nothing is saved if omitted.
    resume_key : str
        Identifies the configuration; a saved state with another key is refused.
    metric_prefix : str
        Prefix of the logged metric names (``train/loss``, ``val/psnr``, ...).
    description : str
        Label of the progress bar.

    Returns
    -------
    TrainResult
    """
    from tqdm.auto import tqdm

    settings = settings or TrainSettings()
    settings.check()
    device = torch.device(device) if device is not None else default_device()
    steps_per_epoch = len(train_data) // settings.batch_size
    if steps_per_epoch < 1:
        raise InputError("training data", f"has {len(train_data)} item(s)",
                         f"expected at least one batch of {settings.batch_size}")
    if len(val_data) < 1:
        raise InputError("validation data", "is empty", "expected at least one validation item")
    model.to(device).train()
    optimizer = _optimizer(model, settings)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(settings))
    autocast, amp_dtype = _autocast(device, settings)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    history: dict[str, list[float]] = {"step": [], "loss": [], "lr": [], "val_step": [], "val_loss": [],
                                       "val_psnr": []}
    step, seconds_before = 0, 0.0
    best = {"loss": math.inf, "psnr": -math.inf, "step": 0, "weights": None}
    stale = 0
    state = _load_state(work_dir, resume_key) if work_dir is not None else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        step, seconds_before, stale = int(state["step"]), float(state["seconds"]), int(state["stale"])
        history = {k: list(v) for k, v in state["history"].items()}
        best = {"loss": float(state["best_loss"]), "psnr": float(state["best_psnr"]),
                "step": int(state["best_step"]), "weights": state["best_weights"]}
    resumed_from = step
    started = time.perf_counter()

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - started

    def snapshot() -> dict[str, Any]:
        return {"resume_key": resume_key, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "step": step,
                "seconds": elapsed(), "stale": stale, "history": history, "best_loss": best["loss"],
                "best_psnr": best["psnr"], "best_step": best["step"], "best_weights": best["weights"]}

    def validate() -> bool:
        """Validate, keep the best weights; True when patience is exhausted."""
        nonlocal stale
        val_loss, val_psnr, improved = record_validation(
            model, loss_fn, val_data, step=step, history=history, best=best, device=device,
            batch_size=max(1, settings.batch_size // 2), tracker=tracker, metric_prefix=metric_prefix)
        stale = 0 if improved else stale + 1
        bar.set_postfix_str(f"val loss {val_loss:.4g}, val PSNR {val_psnr:.2f} dB")
        if work_dir is not None:
            _save_state(work_dir, snapshot())
        return settings.patience is not None and stale >= settings.patience

    stopped_by = "steps"
    running, n_running = 0.0, 0
    bar = tqdm(total=settings.max_steps, initial=min(step, settings.max_steps), desc=description, unit="step",
               disable=not settings.progress, file=sys.stderr, dynamic_ncols=True)
    try:
        if settings.max_seconds is not None and elapsed() >= settings.max_seconds:
            stopped_by = "seconds"
        while step < settings.max_steps and stopped_by == "steps":
            epoch, offset = divmod(step, steps_per_epoch)
            if hasattr(train_data, "set_epoch"):
                train_data.set_epoch(epoch)
            loader: Iterable = DataLoader(
                train_data, batch_size=settings.batch_size,
                sampler=_IndexRange(offset * settings.batch_size, steps_per_epoch * settings.batch_size),
                drop_last=True, num_workers=settings.num_workers, pin_memory=device.type == "cuda")
            for x, y in loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with autocast:
                    pred = model(x)
                loss = loss_fn(pred.float(), y)
                if not torch.isfinite(loss):
                    raise InputError(f"training loss at step {step + 1}", f"is {float(loss)}",
                                     "lower learning_rate, or check the input data for NaN/inf")
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if settings.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_value_(model.parameters(), settings.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                scheduler.step()
                step += 1
                bar.update()
                running += float(loss.detach())
                n_running += 1
                if step % settings.log_every == 0 or step == settings.max_steps:
                    lr = optimizer.param_groups[0]["lr"]
                    history["step"].append(step)
                    history["loss"].append(running / n_running)
                    history["lr"].append(lr)
                    log_metrics(tracker, {f"{metric_prefix}train/loss": running / n_running,
                                   f"{metric_prefix}train/lr": lr}, step)
                    running, n_running = 0.0, 0
                if step % settings.val_every == 0 and validate():
                    stopped_by = "early-stopping"
                elif settings.max_seconds is not None and elapsed() >= settings.max_seconds:
                    stopped_by = "seconds"
                if stopped_by != "steps" or step >= settings.max_steps:
                    break
        if not history["val_step"] or history["val_step"][-1] != step:
            validate()
    except KeyboardInterrupt:
        if work_dir is not None:
            _save_state(work_dir, snapshot())
            print(f"\ninterrupted at step {step}: training state saved in {work_dir}; "
                  "run again to resume", file=sys.stderr)
        raise
    finally:
        bar.close()
    if best["weights"] is not None:
        model.load_state_dict(best["weights"])
    model.eval()
    return TrainResult(steps=step, seconds=round(elapsed(), 3), best_step=int(best["step"]),
                       best_val_loss=float(best["loss"]), best_val_psnr=float(best["psnr"]), stopped_by=stopped_by,
                       history=copy.deepcopy(history), resumed_from=resumed_from,
                       resumed_seconds=round(seconds_before, 3))
