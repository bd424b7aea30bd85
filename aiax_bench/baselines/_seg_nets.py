"""The segmentation U-Net's network (2D or 3D residual U-Net) and its losses (soft Jaccard, cross-entropy).

Written from the tomo2seg work and from Ronneberger, Fischer & Brox, "U-Net",
MICCAI 2015; no code copied.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SegmentationUNetwork", "masked_cross_entropy", "soft_jaccard_loss"]


# -- network -------------------------------------------------------------------------------------


class _ResBlock(nn.Module):
    """Two 3×3(×3) convolutions with batch-norm, plus a (1×1 projected) shortcut, then ReLU."""

    def __init__(self, c_in: int, c_out: int, dim: int, batch_norm: bool) -> None:
        super().__init__()
        conv = nn.Conv3d if dim == 3 else nn.Conv2d
        norm = (nn.BatchNorm3d if dim == 3 else nn.BatchNorm2d) if batch_norm else None
        self.conv1 = conv(c_in, c_out, 3, padding=1, bias=not batch_norm)
        self.norm1 = norm(c_out) if norm else nn.Identity()
        self.conv2 = conv(c_out, c_out, 3, padding=1, bias=not batch_norm)
        self.norm2 = norm(c_out) if norm else nn.Identity()
        self.shortcut = conv(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class SegmentationUNetwork(nn.Module):
    """Modular U-Net of residual blocks with batch-norm, 2D or 3D, returning class logits.

    Parameters
    ----------
    in_channels : int
        Input channels (1, or the adjacent slices of a 2.5D stack).
    n_classes : int
        Output channels (one logit per phase; softmax gives the probabilities).
    dim : {2, 3}
        2D convolutions on ``(B, C, H, W)`` or 3D ones on ``(B, C, D, H, W)``.
    depth : int
        Number of 2× down-samplings.
    base_channels : int
        Channels at the finest level, doubled per level.
    batch_norm : bool
        Batch normalisation in every residual block.

    Notes
    -----
    Max-pooling down, transposed 2×2(×2) convolutions up, skip connections by
    concatenation, a residual block per level on both paths and a final 1×1
    convolution. Any size is accepted: the input is padded (replicate) to a
    multiple of ``2**depth`` and the output cropped back.
    """

    def __init__(self, in_channels: int = 1, n_classes: int = 2, *, dim: int = 2, depth: int = 3,
                 base_channels: int = 8, batch_norm: bool = True) -> None:
        super().__init__()
        if dim not in (2, 3):
            raise ValueError(f"dim must be 2 or 3, got {dim}")
        if depth < 1 or base_channels < 1 or n_classes < 2:
            raise ValueError("depth and base_channels must be >= 1 and n_classes >= 2")
        self.dim, self.depth = dim, depth
        up = nn.ConvTranspose3d if dim == 3 else nn.ConvTranspose2d
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_ResBlock(in_channels, widths[0], dim, batch_norm)])
        self.down.extend(_ResBlock(widths[i], widths[i + 1], dim, batch_norm) for i in range(depth))
        self.up = nn.ModuleList(up(widths[i + 1], widths[i], 2, stride=2) for i in reversed(range(depth)))
        self.merge = nn.ModuleList(_ResBlock(2 * widths[i], widths[i], dim, batch_norm) for i in reversed(range(depth)))
        self.head = (nn.Conv3d if dim == 3 else nn.Conv2d)(widths[0], n_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[2:]
        m = 2**self.depth
        pad: list[int] = []
        for s in reversed(size):
            pad += [0, (-s) % m]
        if any(pad):
            x = F.pad(x, pad, mode="replicate")
        pool = F.max_pool3d if self.dim == 3 else F.max_pool2d
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = pool(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        out = self.head(x)
        return out[(..., *(slice(0, s) for s in size))]


# -- losses --------------------------------------------------------------------------------------


def soft_jaccard_loss(logits: torch.Tensor, target: torch.Tensor, *, weights: torch.Tensor | None = None,
                      valid: torch.Tensor | None = None, eps: float = 1.0) -> torch.Tensor:
    """Generalised multi-class soft Jaccard loss with squared predictions.

    ``J_c = (Σ p_c g_c + ε) / (Σ p_c² + Σ g_c − Σ p_c g_c + ε)`` per class ``c``
    over all voxels of the batch, ``p = softmax(logits)``, ``g`` the one-hot
    target (``g² = g``); the loss is ``1 − Σ w_c J_c / Σ w_c``.

    Parameters
    ----------
    logits : torch.Tensor
        ``(B, C, ...)`` class scores.
    target : torch.Tensor
        ``(B, ...)`` integer labels.
    weights : torch.Tensor, optional
        ``(C,)`` class weights (uniform if omitted).
    valid : torch.Tensor, optional
        ``(B, ...)`` bool: only these voxels count (annotated slices).
    eps : float
        Smoothing, keeps classes absent from a batch finite.
    """
    n = logits.shape[1]
    p = torch.softmax(logits.float(), dim=1)
    g = F.one_hot(target.long(), n).movedim(-1, 1).to(p.dtype)
    if valid is not None:
        v = valid.unsqueeze(1).to(p.dtype)
        p, g = p * v, g * v
    axes = [0, *range(2, p.ndim)]
    inter = (p * g).sum(axes)
    union = (p * p).sum(axes) + g.sum(axes) - inter
    j = (inter + eps) / (union + eps)
    w = torch.ones(n, device=p.device) if weights is None else weights.to(p.device)
    return 1 - (w * j).sum() / w.sum()


def masked_cross_entropy(logits: torch.Tensor, target: torch.Tensor, *, weights: torch.Tensor | None,
                   valid: torch.Tensor | None) -> torch.Tensor:
    t = target.long()
    if valid is not None:
        t = torch.where(valid, t, torch.full_like(t, -100))
    return F.cross_entropy(logits.float(), t, weight=None if weights is None else weights.to(logits.device),
                           ignore_index=-100)
