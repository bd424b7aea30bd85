"""Network blocks of the learned baselines, written from their papers.

* :class:`MSDNetwork`: mixed-scale dense network (Pelt & Sethian, PNAS 115:254, 2018).
* :class:`UNetwork`: U-Net (Ronneberger et al., MICCAI 2015) as used by FBPConvNet
  (Jin et al., IEEE TIP 26:4509, 2017).

Both take a batch of 2D images ``(B, C, H, W)`` (C = number of adjacent slices
of a 2.5D stack) and return ``(B, C_out, H, W)``; they know nothing about
units or standardisation, which :class:`aiax_bench.training.Standardized` adds.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["MSDNetwork", "UNetwork", "msd_dilations"]


class _ShiftSum(torch.autograd.Function):
    """Sum of the 9 taps shifted by their 3×3 offsets × dilation, borders reflected, plus a bias.

    ``taps (9, B, H, W) -> (1, B, H, W)`` (channels first: see :meth:`MSDNetwork.forward`).
    Written as one autograd function so that the backward pass fills one
    padded gradient buffer instead of nine zero-filled ones (the generic
    slicing backward), which dominated the cost.
    """

    @staticmethod
    def forward(ctx, taps: torch.Tensor, bias: torch.Tensor, d: int) -> torch.Tensor:
        h, w = taps.shape[-2:]
        padded = F.pad(taps, (d, d, d, d), mode="reflect")
        out = padded[0, :, 0:h, 0:w] + bias
        for t in range(1, 9):
            ky, kx = divmod(t, 3)
            out += padded[t, :, ky * d:ky * d + h, kx * d:kx * d + w]
        ctx.d = d
        ctx.save_for_backward(taps)
        return out.unsqueeze(0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, None]:
        (taps,) = ctx.saved_tensors
        d = ctx.d
        _, b, h, w = taps.shape
        grad_padded = grad.new_empty(9, b, h + 2 * d, w + 2 * d)
        for t in range(9):
            ky, kx = divmod(t, 3)
            # Only the window each tap reads matters; the rest must be zero.
            grad_padded[t].zero_()
            grad_padded[t, :, ky * d:ky * d + h, kx * d:kx * d + w] = grad[0]
        grad_taps = torch.ops.aten.reflection_pad2d_backward(grad_padded, taps, [d, d, d, d])
        return grad_taps, grad.sum().reshape(1), None


def msd_dilations(depth: int, max_dilation: int = 10) -> list[int]:
    """Dilation of every MS-D layer: 1, 2, ..., ``max_dilation``, 1, 2, ... (Pelt & Sethian 2018)."""
    return [(i % max_dilation) + 1 for i in range(depth)]


class MSDNetwork(nn.Module):
    """Mixed-scale dense convolutional network of width 1.

    Layer ``i`` sees every earlier feature map (the input channels included),
    applies one 3×3 convolution with dilation ``msd_dilations(depth)[i]`` and a
    ReLU, and adds one map. A final 1×1 convolution combines all
    ``in_channels + depth`` maps into the output.

    Parameters
    ----------
    in_channels : int
        Input channels (adjacent slices of a 2.5D stack).
    out_channels : int
        Output channels.
    depth : int
        Number of 3×3 layers (the paper uses 100).
    max_dilation : int
        Dilations cycle through 1..``max_dilation`` (the paper uses 10).
    formulation : {'taps', 'conv'}
        How each layer is computed; both give the same result (to rounding).
        ``'conv'`` is the textbook dilated convolution over the concatenated
        maps. ``'taps'`` first maps the concatenated maps to the 9 taps of the
        3×3 kernel with one 1×1 convolution (a plain matrix product) and then
        sums 9 shifted views of the taps: about twice as fast on CPU.

    Notes
    -----
    As in the paper and its reference code: no batch normalisation; weights
    drawn from N(0, 2/n) with n the number of incoming connections (9 × input
    maps), zero biases; the final 1×1 layer starts at zero, so an untrained
    network outputs the (standardised) mean. Borders are handled by reflection,
    so that every layer sees image-like values up to the edge of a patch (the
    paper does not prescribe a boundary rule).
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, *, depth: int = 100, max_dilation: int = 10,
                 formulation: str = "taps") -> None:
        super().__init__()
        if depth < 1 or max_dilation < 1 or in_channels < 1 or out_channels < 1:
            raise ValueError("depth, max_dilation, in_channels and out_channels must be >= 1")
        if formulation not in ("taps", "conv"):
            raise ValueError(f"formulation must be 'taps' or 'conv', got {formulation!r}")
        self.in_channels, self.out_channels, self.depth = in_channels, out_channels, depth
        self.dilations = msd_dilations(depth, max_dilation)
        self.formulation = formulation
        self.weights = nn.ParameterList()
        self.biases = nn.ParameterList()
        for i in range(depth):
            n_in = in_channels + i
            w = torch.empty(1, n_in, 3, 3)
            nn.init.normal_(w, 0.0, math.sqrt(2.0 / (9 * n_in)))
            self.weights.append(nn.Parameter(w))
            self.biases.append(nn.Parameter(torch.zeros(1)))
        self.final = nn.Conv2d(in_channels + depth, out_channels, kernel_size=1)
        nn.init.zeros_(self.final.weight)
        nn.init.zeros_(self.final.bias)

    def _layer(self, maps: torch.Tensor, i: int) -> torch.Tensor:
        """One 3×3 layer on channel-first maps ``(C, B, H, W)``, before its ReLU."""
        d = self.dilations[i]
        w, b = self.weights[i], self.biases[i]
        if self.formulation == "conv":
            padded = F.pad(maps.transpose(0, 1), (d, d, d, d), mode="reflect")
            return F.conv2d(padded, w, b, dilation=d).transpose(0, 1)
        # (1, C, 3, 3) -> (9, C): tap t = 3*ky + kx of the 3×3 kernel. One plain
        # matrix product over the channels, much cheaper on CPU than a convolution.
        c, bsz, h, wd = maps.shape
        taps = torch.mm(w[0].permute(1, 2, 0).reshape(9, c), maps.reshape(c, -1))
        return _ShiftSum.apply(taps.view(9, bsz, h, wd), b, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels first, (C, B, H, W): appending a map is then a contiguous
        # copy and every layer is a single matrix product without transposes.
        if torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters())):
            maps = x.transpose(0, 1).contiguous()
            for i in range(self.depth):
                maps = torch.cat([maps, F.relu(self._layer(maps, i))], dim=0)
        else:
            # Without autograd every map is written once into one buffer, instead
            # of copying all earlier maps at every layer (depth² traffic).
            bsz, c_in, h, w = x.shape
            maps = x.new_empty((c_in + self.depth, bsz, h, w))
            maps[:c_in] = x.transpose(0, 1)
            for i in range(self.depth):
                maps[c_in + i] = F.relu(self._layer(maps[:c_in + i], i))[0]
        c, bsz, h, w = maps.shape
        out = torch.addmm(self.final.bias[:, None], self.final.weight[:, :, 0, 0], maps.reshape(c, -1))
        return out.view(-1, bsz, h, w).transpose(0, 1)


class _DoubleConv(nn.Sequential):
    """Two 3×3 convolutions, each followed by (optional) batch-norm and ReLU."""

    def __init__(self, c_in: int, c_out: int, batch_norm: bool) -> None:
        layers: list[nn.Module] = []
        for c in (c_in, c_out):
            layers.append(nn.Conv2d(c, c_out, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class _Up(nn.Module):
    """3×3 transposed convolution, stride 2 (FBPConvNet's up-convolution), then BN and ReLU."""

    def __init__(self, c_in: int, c_out: int, batch_norm: bool) -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1, bias=not batch_norm)
        self.norm = nn.BatchNorm2d(c_out) if batch_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.norm(self.conv(x)))


class UNetwork(nn.Module):
    """U-Net encoder–decoder with skip connections (the FBPConvNet architecture).

    Parameters
    ----------
    in_channels, out_channels : int
        Input channels (adjacent slices) and output channels.
    depth : int
        Number of 2× down-samplings (FBPConvNet: 4).
    base_channels : int
        Channels at the finest level, doubled at every level (FBPConvNet: 64).
    batch_norm : bool
        Batch normalisation after every convolution (FBPConvNet: yes).

    Notes
    -----
    Any image size is accepted: the input is reflected up to a multiple of
    ``2**depth`` and the output cropped back. The residual (skip from input to
    output) of FBPConvNet is added by the caller, which knows which input
    channel is the centre slice.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, *, depth: int = 4, base_channels: int = 64,
                 batch_norm: bool = True) -> None:
        super().__init__()
        if depth < 1 or base_channels < 1:
            raise ValueError("depth and base_channels must be >= 1")
        self.depth = depth
        widths = [base_channels * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList([_DoubleConv(in_channels, widths[0], batch_norm)])
        self.down.extend(_DoubleConv(widths[i], widths[i + 1], batch_norm) for i in range(depth))
        self.up = nn.ModuleList(_Up(widths[i + 1], widths[i], batch_norm) for i in reversed(range(depth)))
        self.merge = nn.ModuleList(_DoubleConv(2 * widths[i], widths[i], batch_norm) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        m = 2**self.depth
        ph, pw = (-h) % m, (-w) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "replicate")
        skips = []
        for i, block in enumerate(self.down):
            if i:
                x = F.max_pool2d(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up, merge in zip(self.up, self.merge, strict=True):
            x = merge(torch.cat([skips.pop(), up(x)], dim=1))
        return self.head(x)[..., :h, :w]
