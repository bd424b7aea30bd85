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
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from aiax_bench.errors import InputError

__all__ = ["MSDNetwork", "UNetwork", "msd_dilations"]


class _Workspace:
    """Buffers reused by every layer of one pass: the taps, their reflected padding, the tap gradients.

    Fresh temporaries of ten different sizes per layer (one per dilation) fragment the C heap, and
    the process keeps memory the pass no longer needs.
    """

    def __init__(self, like: torch.Tensor, bsz: int, h: int, w: int, max_dilation: int) -> None:
        n = 9 * bsz * h * w
        self.shape = (9, bsz, h, w)
        self.taps = like.new_empty(n)
        self.padded = like.new_empty(9 * bsz * (h + 2 * max_dilation) * (w + 2 * max_dilation))
        self.grad_taps = like.new_empty(n)

    def padded_view(self, d: int) -> torch.Tensor:
        _, bsz, h, w = self.shape
        return self.padded[:9 * bsz * (h + 2 * d) * (w + 2 * d)].view(9, bsz, h + 2 * d, w + 2 * d)


def _reflect_pad_into(taps: torch.Tensor, d: int, out: torch.Tensor) -> torch.Tensor:
    """``F.pad(taps, (d, d, d, d), mode='reflect')`` written into ``out`` (the same values)."""
    h, w = taps.shape[-2:]
    out[..., d:d + h, d:d + w] = taps
    out[..., d:d + h, :d] = taps[..., :, 1:d + 1].flip(-1)
    out[..., d:d + h, d + w:] = taps[..., :, w - d - 1:w - 1].flip(-1)
    out[..., :d, :] = out[..., d + 1:2 * d + 1, :].flip(-2)
    out[..., d + h:, :] = out[..., h - 1:h - 1 + d, :].flip(-2)
    return out


def _shift_sum(taps: torch.Tensor, bias: torch.Tensor, d: int, padded: torch.Tensor) -> torch.Tensor:
    """Sum of the 9 taps shifted by their 3×3 offsets × dilation, borders reflected, plus a bias.

    ``taps (9, B, H, W) -> (B, H, W)``: tap ``t = 3*ky + kx`` of a 3×3 kernel
    with dilation ``d``; ``padded`` is the buffer of the reflected taps.
    """
    h, w = taps.shape[-2:]
    padded = _reflect_pad_into(taps, d, padded)
    out = padded[0, :, 0:h, 0:w] + bias
    for t in range(1, 9):
        ky, kx = divmod(t, 3)
        out += padded[t, :, ky * d:ky * d + h, kx * d:kx * d + w]
    return out


def _shift_sum_adjoint(grad: torch.Tensor, d: int, work: _Workspace) -> torch.Tensor:
    """Adjoint of :func:`_shift_sum` in its taps: ``grad (B, H, W) -> (9, B, H, W)`` (a view of ``work``).

    Fills one padded buffer and folds the reflected border back in one call,
    instead of the nine zero-filled buffers of the generic slicing backward.
    """
    _, _, h, w = work.shape
    grad_padded = work.padded_view(d).zero_()
    for t in range(9):
        ky, kx = divmod(t, 3)
        # Only the window each tap reads matters; the rest stays zero.
        grad_padded[t, :, ky * d:ky * d + h, kx * d:kx * d + w] = grad
    out = work.grad_taps.view(work.shape)
    # The input argument only lends its shape: a stride-0 view of one element allocates nothing.
    return torch.ops.aten.reflection_pad2d_backward.grad_input(
        grad_padded, grad.new_empty(1).expand(work.shape), [d, d, d, d], grad_input=out)


def _taps_matrix(weight: torch.Tensor) -> torch.Tensor:
    """``(1, C, 3, 3) -> (9, C)``: row ``t = 3*ky + kx`` holds tap ``t`` of every input map."""
    return weight[0].permute(1, 2, 0).reshape(9, weight.shape[1])


def _msd_fill(maps: torch.Tensor, c_in: int, weights: list[torch.Tensor], biases: list[torch.Tensor],
              dilations: list[int]) -> None:
    """Compute every MS-D layer in place: map ``c_in + i`` of ``maps (C, B, H, W)`` from the maps before it."""
    _, bsz, h, w = maps.shape
    work = _Workspace(maps, bsz, h, w, max(dilations))
    for i, (weight, bias, d) in enumerate(zip(weights, biases, dilations, strict=True)):
        c = c_in + i
        # One plain matrix product over the channels, much cheaper on CPU than a convolution.
        taps = torch.mm(_taps_matrix(weight), maps[:c].reshape(c, -1), out=work.taps.view(9, -1))
        torch.clamp_min(_shift_sum(taps.view(work.shape), bias, d, work.padded_view(d)), 0.0, out=maps[c])


class _MSDForward(torch.autograd.Function):
    """An MS-D network's forward pass with activation memory linear in the depth.

    ``(x (C_in, B, H, W), dilations, final weight, final bias, weights...,
    biases...) -> (C_out, B·H·W)``. The forward pass writes every map once
    into one buffer, and only that buffer is kept for the backward pass; the
    backward pass walks the layers from the last and accumulates the gradient
    of every map in a second buffer, in place (the scheme of the paper's
    reference CUDA code). Generic autograd instead keeps the concatenated
    input of every layer: memory in depth².

    The products and sums are those autograd performs on the per-layer
    formulation, in the same order, so outputs and gradients are the same
    bits (``benchmarks/training-fingerprints.json``).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, dilations: list[int], final_weight: torch.Tensor, final_bias: torch.Tensor,
                *params: torch.Tensor) -> torch.Tensor:
        depth = len(dilations)
        weights, biases = list(params[:depth]), list(params[depth:])
        c_in, bsz, h, w = x.shape
        maps = x.new_empty((c_in + depth, bsz, h, w))
        maps[:c_in] = x
        _msd_fill(maps, c_in, weights, biases, dilations)
        ctx.dilations, ctx.c_in = dilations, c_in
        ctx.save_for_backward(maps, final_weight, *weights)
        return torch.addmm(final_bias[:, None], final_weight[:, :, 0, 0], maps.view(c_in + depth, -1))

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        maps, final_weight, *weights = ctx.saved_tensors
        dilations, c_in = ctx.dilations, ctx.c_in
        depth = len(dilations)
        n_maps, bsz, h, w = maps.shape
        flat = maps.view(n_maps, -1)
        # The layouts autograd's matrix-product backward picks: row-major maps and final weight, and a
        # column-major (9, C) view of each 3×3 weight.
        grad_final_weight = grad_out.mm(flat.t()).view(final_weight.shape)
        grad_final_bias = grad_out.sum(1)
        grad = final_weight[:, :, 0, 0].t().mm(grad_out)  # (C, B·H·W): every map's gradient, accumulated in place
        grad_weights: list[torch.Tensor] = [torch.empty(0)] * depth
        grad_biases: list[torch.Tensor] = [torch.empty(0)] * depth
        work = _Workspace(maps, bsz, h, w, max(dilations))
        for i in reversed(range(depth)):
            c, d = c_in + i, dilations[i]
            grad_pre = torch.ops.aten.threshold_backward(grad[c].view(bsz, h, w), maps[c], 0)
            grad_taps = _shift_sum_adjoint(grad_pre, d, work).view(9, -1)
            grad_weights[i] = flat[:c].mm(grad_taps.t()).view(1, c, 3, 3)
            grad_biases[i] = grad_pre.sum().reshape(1)
            grad[:c].addmm_(_taps_matrix(weights[i]).t(), grad_taps)
        grad_x = grad[:c_in].view(c_in, bsz, h, w) if ctx.needs_input_grad[0] else None
        return (grad_x, None, grad_final_weight, grad_final_bias, *grad_weights, *grad_biases)


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

    def activation_bytes_per_pixel(self, in_channels: int | None = None) -> float:
        """Bytes per pixel of an inference pass: the maps' buffer, one layer's taps, their padded copy, the output."""
        c_in = self.in_channels if in_channels is None else in_channels
        return 4.0 * (c_in + self.depth + 2 * 9 + self.out_channels)

    def _conv_layer(self, maps: torch.Tensor, i: int) -> torch.Tensor:
        """One 3×3 layer as a dilated convolution on channel-first maps ``(C, B, H, W)``, before its ReLU."""
        d = self.dilations[i]
        padded = F.pad(maps.transpose(0, 1), (d, d, d, d), mode="reflect")
        return F.conv2d(padded, self.weights[i], self.biases[i], dilation=d).transpose(0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Channels first, (C, B, H, W): every layer is then a single matrix
        # product over contiguous maps, without transposes.
        channels_first = x.transpose(0, 1).contiguous()
        if self.formulation == "conv":
            # The textbook form, kept as the reference: autograd stores the
            # concatenated maps of every layer (memory in depth²).
            maps = channels_first
            for i in range(self.depth):
                maps = torch.cat([maps, F.relu(self._conv_layer(maps, i))], dim=0)
            out = torch.addmm(self.final.bias[:, None], self.final.weight[:, :, 0, 0], maps.reshape(len(maps), -1))
        else:
            out = _MSDForward.apply(channels_first, self.dilations, self.final.weight, self.final.bias,
                                    *self.weights, *self.biases)
        _, bsz, h, w = channels_first.shape
        return out.view(-1, bsz, h, w).transpose(0, 1)


#: The U-Net's activations by name: ReLU (FBPConvNet), or tanh as in the biomedical users' Keras U-Net.
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": lambda: nn.ReLU(inplace=True), "tanh": nn.Tanh}


class _DoubleConv(nn.Sequential):
    """Two 3×3 convolutions, each followed by (optional) batch-norm and the activation."""

    def __init__(self, c_in: int, c_out: int, batch_norm: bool, activation: str = "relu") -> None:
        layers: list[nn.Module] = []
        for c in (c_in, c_out):
            layers.append(nn.Conv2d(c, c_out, 3, padding=1, bias=not batch_norm))
            if batch_norm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(ACTIVATIONS[activation]())
        super().__init__(*layers)


class _Up(nn.Module):
    """3×3 transposed convolution, stride 2 (FBPConvNet's up-convolution), then BN and the activation."""

    def __init__(self, c_in: int, c_out: int, batch_norm: bool, activation: str = "relu") -> None:
        super().__init__()
        self.conv = nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1, bias=not batch_norm)
        self.norm = nn.BatchNorm2d(c_out) if batch_norm else nn.Identity()
        self.act = ACTIVATIONS[activation]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))


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
    activation : {'relu', 'tanh'}
        The hidden layers' activation (FBPConvNet: ReLU), see :data:`ACTIVATIONS`.

    Notes
    -----
    Any image size is accepted: the input is reflected up to a multiple of
    ``2**depth`` and the output cropped back. The residual (skip from input to
    output) of FBPConvNet is added by the caller, which knows which input
    channel is the centre slice.
    """

    def __init__(self, in_channels: int = 1, out_channels: int = 1, *, depth: int = 4, base_channels: int = 64,
                 batch_norm: bool = True, activation: str = "relu") -> None:
        super().__init__()
        if depth < 1 or base_channels < 1:
            raise ValueError("depth and base_channels must be >= 1")
        if activation not in ACTIVATIONS:
            raise InputError("activation", f"is {activation!r}", f"one of {list(ACTIVATIONS)}")
        self.depth = depth
        widths = [base_channels * 2**i for i in range(depth + 1)]
        act = activation
        self.down = nn.ModuleList([_DoubleConv(in_channels, widths[0], batch_norm, act)])
        self.down.extend(_DoubleConv(widths[i], widths[i + 1], batch_norm, act) for i in range(depth))
        self.up = nn.ModuleList(_Up(widths[i + 1], widths[i], batch_norm, act) for i in reversed(range(depth)))
        self.merge = nn.ModuleList(_DoubleConv(2 * widths[i], widths[i], batch_norm, act)
                                   for i in reversed(range(depth)))
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
