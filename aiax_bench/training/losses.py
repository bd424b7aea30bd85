"""Training losses of the learned baselines: L2, L1, SSIM-based.

All losses take the prediction and the target in physical units (1/cm) and
divide by a fixed ``scale`` (the target's standard deviation in the training
data), so that the loss starts near 1 whatever the material, and learning
rates carry over between datasets.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from aiax_bench.errors import InputError

__all__ = ["LOSSES", "TrainingLoss", "make_loss", "ssim_2d"]

#: Loss names accepted by :func:`make_loss`.
LOSSES = ("l2", "l1", "ssim", "ssim-l1")

# Zhao, Gallo, Frosio & Kautz (IEEE TCI 3:47, 2017) weight (1 - MS-SSIM) by
# 0.84 and L1 by 0.16; "ssim-l1" keeps the weights with single-scale SSIM,
# since training patches are too small for five scales.
_SSIM_L1_ALPHA = 0.84


def _gaussian_window(sigma: float, truncate: float, device, dtype) -> torch.Tensor:
    radius = int(truncate * sigma + 0.5)
    x = torch.arange(-radius, radius + 1, device=device, dtype=dtype)
    g = torch.exp(-0.5 * (x / sigma) ** 2)
    return g / g.sum()


def ssim_2d(x: torch.Tensor, y: torch.Tensor, *, data_range: float, sigma: float = 1.5,
            truncate: float = 3.5) -> torch.Tensor:
    """Mean 2D SSIM (Wang et al. 2004) over images, differentiable.

    Parameters
    ----------
    x, y : torch.Tensor
        Images ``(..., H, W)``; leading axes are flattened into a batch of 2D images.
    data_range : float
        Intensity range ``L`` in the units of ``x`` and ``y``.
    sigma, truncate : float
        Gaussian window (px) and its truncation; the defaults (11 taps) follow
        the Evaluator's SSIM, evaluated in-plane only.

    Returns
    -------
    torch.Tensor
        Scalar mean SSIM over the positions the window fully covers.
    """
    h, w = x.shape[-2:]
    x = x.reshape(-1, 1, h, w)
    y = y.reshape(-1, 1, h, w)
    g = _gaussian_window(sigma, truncate, x.device, x.dtype)
    if g.numel() > min(h, w):
        raise InputError("SSIM window", f"has {g.numel()} taps for {h}×{w} images",
                         "use training patches larger than the window (e.g. patch_size >= 16)")

    def blur(t: torch.Tensor) -> torch.Tensor:
        t = F.conv2d(t, g.view(1, 1, -1, 1))
        return F.conv2d(t, g.view(1, 1, 1, -1))

    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    mx, my = blur(x), blur(y)
    vx = blur(x * x) - mx * mx
    vy = blur(y * y) - my * my
    cxy = blur(x * y) - mx * my
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    return s.mean()


class TrainingLoss(nn.Module):
    """A loss between prediction and target in physical units.

    Parameters
    ----------
    name : {'l2', 'l1', 'ssim', 'ssim-l1'}
        ``l2``: mean squared error (MS-D, FBPConvNet); ``l1``: mean absolute
        error; ``ssim``: 1 − SSIM; ``ssim-l1``: 0.84 (1 − SSIM) + 0.16 L1.
    scale : float
        Intensity scale (1/cm) that errors are divided by.
    data_range : float
        Intensity range (1/cm) of the SSIM constants.
    """

    def __init__(self, name: str = "l2", *, scale: float = 1.0, data_range: float = 1.0) -> None:
        super().__init__()
        if name not in LOSSES:
            raise InputError("loss", f"is {name!r}", f"expected one of {list(LOSSES)}")
        if not (scale > 0 and data_range > 0):
            raise InputError("loss scale / data_range", f"are {scale} / {data_range}", "expected positive values")
        self.name, self.scale, self.data_range = name, float(scale), float(data_range)

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        prediction, target = prediction.float(), target.float()
        if self.name == "l2":
            return F.mse_loss(prediction / self.scale, target / self.scale)
        l1 = F.l1_loss(prediction / self.scale, target / self.scale)
        if self.name == "l1":
            return l1
        dssim = 1 - ssim_2d(prediction, target, data_range=self.data_range)
        if self.name == "ssim":
            return dssim
        return _SSIM_L1_ALPHA * dssim + (1 - _SSIM_L1_ALPHA) * l1

    def extra_repr(self) -> str:
        return f"name={self.name!r}, scale={self.scale:.4g}, data_range={self.data_range:.4g}"


def make_loss(name: str, *, scale: float = 1.0, data_range: float = 1.0) -> TrainingLoss:
    """The :class:`TrainingLoss` called ``name`` (see :data:`LOSSES`)."""
    return TrainingLoss(name, scale=scale, data_range=data_range)
