"""Training machinery shared by every learned method.

* :class:`Trainer` / :class:`TrainSettings`: the one seeded, resumable training
  loop of every learned method (automatic device, mixed precision on CUDA,
  validation, early stopping, budget, MLflow curves, progress bar); methods
  override its loss and step hooks, not the loop. :func:`train` runs it with
  the default supervised hooks.
* :func:`predict_volume`: slice-wise sliding-window inference, zarr in, zarr out.
* :func:`save_checkpoint` / :func:`load_checkpoint`: verified checkpoint directories.
* :class:`SliceMethod` / :class:`SliceConfig`: the base of the learned 2.5D baselines
  (``msdnet``, ``unet``), with checkpoint caching keyed on config and data.
* :func:`make_loss`: L2, L1 and SSIM-based losses.
"""

from aiax_bench.training.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from aiax_bench.training.inference import predict_volume
from aiax_bench.training.losses import LOSSES, TrainingLoss, make_loss, ssim_2d
from aiax_bench.training.method import TRAINING_CODE_VERSION, SliceConfig, SliceMethod
from aiax_bench.training.model import Standardized
from aiax_bench.training.trainer import Trainer, TrainResult, TrainSettings, train

__all__ = [
    "LOSSES",
    "TRAINING_CODE_VERSION",
    "Checkpoint",
    "SliceConfig",
    "SliceMethod",
    "Standardized",
    "TrainResult",
    "TrainSettings",
    "Trainer",
    "TrainingLoss",
    "load_checkpoint",
    "make_loss",
    "predict_volume",
    "save_checkpoint",
    "ssim_2d",
    "train",
]
