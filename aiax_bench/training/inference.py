"""Slice-wise, sliding-window inference over a whole volume: zarr in, zarr out, chunk by chunk.

The volume is processed in slabs of slices. Each slab is read with the halo
of ``slices // 2`` slices its 2.5D stacks need (reflected at the volume's first
and last slice, as in training), predicted slice by slice in batches, and
written before the next slab is read, so memory holds one slab, never the
volume. Within a slice, ``tile`` splits the plane into overlapping tiles whose
predictions are blended with weights that fall off linearly over the
``overlap``, so that no seam appears where tiles meet.

The same code runs on CPU and CUDA; without ``amp`` the arithmetic is float32
on both.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aiax_bench.data.torch_adapter import reflect_indices
from aiax_bench.errors import InputError
from aiax_bench.mapped_files import release_mapped_pages
from aiax_bench.recon.device import default_device

__all__ = ["CPU_BATCH_BYTES", "TILE_BYTES", "activation_bytes_per_pixel", "inference_plan", "predict_volume",
           "tile_starts"]

#: Activations one forward pass may hold on the CPU. Batches gain little there
#: once a slice's activations leave the caches (``benchmarks/msd.json``: MS-D
#: at 512², batches of 2 to 8 no faster per slice than 1) and multiply the
#: memory, so on the CPU the batch is the largest whose activations fit here,
#: often 1.
CPU_BATCH_BYTES = 16 * 2**20
#: A slice whose activations exceed this is predicted in tiles of at most this.
#: A fixed number, not the device's memory: tiles change the prediction at
#: their seams, and the same model must give the same volume on every machine.
TILE_BYTES = 256 * 2**20
_MAX_BATCH = 64
#: Tile edges are multiples of this (a U-Net halves the plane up to 5 times).
_TILE_MULTIPLE = 32


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start indices of tiles of ``tile`` px covering ``n`` px with at least ``overlap`` px overlap."""
    if tile >= n:
        return [0]
    step = max(tile - overlap, 1)
    starts = list(range(0, n - tile, step))
    return [*starts, n - tile]


def activation_bytes_per_pixel(model: nn.Module, in_channels: int) -> float:
    """Bytes of activations per in-plane pixel of one ``(1, in_channels, H, W)`` forward pass.

    A network that knows its own (``activation_bytes_per_pixel(in_channels)``
    on it or a submodule, e.g. MS-D, whose layers are no modules) answers;
    otherwise the outputs of every leaf module on a 64² input are summed, an
    upper bound (inference frees most of them on the way).
    """
    for module in model.modules():
        own = getattr(module, "activation_bytes_per_pixel", None)
        if callable(own):
            return float(own(in_channels))
    total = 0

    def count(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        if isinstance(output, torch.Tensor):
            total += output.numel() * output.element_size()

    leaves = [m for m in model.modules() if next(m.children(), None) is None]
    hooks = [m.register_forward_hook(count) for m in leaves]
    parameter = next(model.parameters(), None)
    was_training = model.training
    try:
        with torch.inference_mode():  # in eval mode: a training-mode batch norm would update its statistics
            model.eval()(torch.zeros((1, in_channels, 64, 64),
                                     device=parameter.device if parameter is not None else None))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return total / 64**2


def inference_plan(bytes_per_pixel: float, plane: tuple[int, int], *, device: torch.device,
                   batch_size: int | None = None, tile: int | None = None,
                   overlap: int = 32) -> tuple[int, int | None]:
    """Batch size and tile edge (px, None for whole slices) of the forward passes, chosen by bytes.

    Parameters
    ----------
    bytes_per_pixel : float
        Activation bytes per pixel (:func:`activation_bytes_per_pixel`).
    plane : (int, int)
        Slice shape (px).
    device : torch.device
        On the CPU a batch holds at most :data:`CPU_BATCH_BYTES` of
        activations; on CUDA a quarter of the free memory.
    batch_size, tile : int, optional
        Given values win.
    overlap : int
        Overlap of neighbouring tiles (px). The tiles are the fewest of at most
        :data:`TILE_BYTES` that cover the slice, cut evenly: a 2048² slice in
        4 × 4 tiles of 544² computes 1.13× its pixels, where tiles of the
        largest edge that fits (640²) would compute 1.56×.
    """
    ny, nx = plane
    if tile is None and bytes_per_pixel * ny * nx > TILE_BYTES:
        largest = max(int((TILE_BYTES / bytes_per_pixel) ** 0.5) // _TILE_MULTIPLE * _TILE_MULTIPLE, _TILE_MULTIPLE)
        tile, span = largest, max(ny, nx)
        if largest > overlap:
            count = math.ceil((span - overlap) / (largest - overlap))
            even = math.ceil((span + (count - 1) * overlap) / count / _TILE_MULTIPLE) * _TILE_MULTIPLE
            tile = min(largest, max(even, _TILE_MULTIPLE))
    if batch_size is None:
        th, tw = (ny, nx) if tile is None else (min(tile, ny), min(tile, nx))
        if device.type == "cuda":
            budget = torch.cuda.mem_get_info(device)[0] / 4
        else:
            budget = CPU_BATCH_BYTES
        batch_size = int(min(max(budget // (bytes_per_pixel * th * tw), 1), _MAX_BATCH))
    return batch_size, tile


def _ramp(n: int, overlap: int, at_start: bool, at_end: bool) -> np.ndarray:
    """1D blending weight: rises over ``overlap`` px from an inner tile edge, flat at the image border."""
    w = np.ones(n, dtype=np.float32)
    if overlap > 0:
        r = (np.arange(min(overlap, n), dtype=np.float32) + 0.5) / overlap
        if not at_start:
            w[:r.size] = np.minimum(w[:r.size], r)
        if not at_end:
            w[n - r.size:] = np.minimum(w[n - r.size:], r[::-1])
    return w


def _open_output(out: Any, shape: tuple[int, ...], slab: int) -> Any:
    if out is None:
        return np.empty(shape, dtype=np.float32)
    if isinstance(out, str | Path):
        import zarr

        from aiax_bench.data.store import compressor

        chunks = (*(1,) * (len(shape) - 3), min(slab, shape[-3]), *(min(64, s) for s in shape[-2:]))
        return zarr.create_array(store=str(out), shape=shape, chunks=chunks, dtype="float32",
                                 compressors=compressor(),
                                 overwrite=True)
    if tuple(out.shape) != tuple(shape):
        raise InputError("out", f"has shape {tuple(out.shape)}", f"expected {tuple(shape)} like the input volume")
    return out


@torch.inference_mode()
def predict_volume(model: nn.Module, volume: Any, *, slices: int = 5, batch_size: int | None = None,
                   tile: int | None = None, overlap: int = 32, slab: int | None = None,
                   device: torch.device | str | None = None, amp: bool = False, out: Any = None,
                   progress: bool = False, classes: int | None = None) -> Any:
    """Apply a 2.5D slice model to every slice of a volume.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(B, slices, H, W)`` to ``(B, 1, H, W)`` in the volume's units
        (1/cm), or to ``(B, classes, H, W)`` class scores with ``classes``.
    volume : array_like
        ``(Z, Y, X)`` numpy or zarr array (read slab by slab).
    slices : int
        Adjacent slices per input stack (odd), reflected at the volume's ends.
    batch_size : int, optional
        Slices (or tiles) per forward pass; chosen by bytes if omitted
        (:func:`inference_plan`).
    tile : int, optional
        In-plane tile edge (px); whole slices if larger than the slice, chosen
        by bytes if omitted (whole slices unless one slice's activations
        exceed :data:`TILE_BYTES`).
    overlap : int
        Overlap of neighbouring tiles (px), blended linearly.
    slab : int, optional
        Slices read and written at a time; the output's chunk depth for zarr
        outputs, 64 otherwise.
    device : torch.device or str, optional
        Where the model runs; CUDA when present otherwise.
    amp : bool
        Mixed precision (CUDA only).
    out : zarr array, str or Path, optional
        Where to write: an existing array of the volume's shape, or a path for a
        new chunked zarr array. A numpy array is returned if omitted.
    progress : bool
        Show a progress bar on stderr.
    classes : int, optional
        For a segmentation model: its softmax probabilities are blended across
        tiles (the scores of different tiles are not on one scale) and returned.

    Returns
    -------
    numpy.ndarray or zarr.Array
        The prediction, float32 ``(Z, Y, X)``, or ``(classes, Z, Y, X)`` probabilities.
    """
    from tqdm.auto import tqdm

    shape = tuple(int(s) for s in volume.shape)
    if len(shape) != 3:
        raise InputError("volume", f"has shape {shape}", "expected a 3D volume (Z, Y, X)")
    if slices < 1 or slices % 2 == 0:
        raise InputError("slices", f"is {slices}", "expected an odd number of adjacent slices")
    if (tile is not None and tile < 1) or overlap < 0 or (batch_size is not None and batch_size < 1):
        raise InputError("tile / overlap / batch_size", f"are {tile} / {overlap} / {batch_size}",
                         "expected a positive tile, overlap >= 0 and a positive batch size")
    device = torch.device(device) if device is not None else default_device()
    nz, ny, nx = shape
    if batch_size is None or tile is None:
        batch_size, tile = inference_plan(activation_bytes_per_pixel(model, slices), (ny, nx), device=device,
                                          batch_size=batch_size, tile=tile, overlap=overlap)
    if slab is None:
        chunks = getattr(out, "chunks", None) if out is not None and not isinstance(out, str | Path) else None
        slab = int(chunks[0]) if chunks else 64
    channels = 1 if classes is None else int(classes)
    out = _open_output(out, shape if classes is None else (channels, *shape), slab)
    h = slices // 2
    th, tw = (ny, nx) if tile is None else (min(tile, ny), min(tile, nx))
    windows = [(y0, x0) for y0 in tile_starts(ny, th, overlap) for x0 in tile_starts(nx, tw, overlap)]
    weights = {}
    for y0, x0 in windows:
        wy = _ramp(th, overlap, y0 == 0, y0 + th == ny)
        wx = _ramp(tw, overlap, x0 == 0, x0 + tw == nx)
        weights[y0, x0] = torch.from_numpy(np.outer(wy, wx)).to(device)
    was_training = model.training
    model.eval().to(device)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16 if device.type == "cuda" and
                              torch.cuda.is_bf16_supported() else torch.float16,
                              enabled=amp and device.type == "cuda")
    bar = tqdm(total=nz, desc="predict", unit="slice", disable=not progress, file=sys.stderr)
    try:
        for z0 in range(0, nz, slab):
            z1 = min(z0 + slab, nz)
            zs = reflect_indices(z0 - h, z1 + h, nz)
            lo, hi = int(zs.min()), int(zs.max()) + 1
            block = torch.from_numpy(np.asarray(volume[lo:hi], dtype=np.float32)[zs - lo]).to(device)
            release_mapped_pages(volume)  # a .npy volume read through its map: one slab resident at a time
            acc = torch.zeros((channels, z1 - z0, ny, nx), dtype=torch.float32, device=device)
            norm = torch.zeros((ny, nx), dtype=torch.float32, device=device)
            for y0, x0 in windows:
                norm[y0:y0 + th, x0:x0 + tw] += weights[y0, x0]
            # Every (slice, tile) pair as one job, batched.
            jobs = [(z, y0, x0) for z in range(z1 - z0) for y0, x0 in windows]
            for b in range(0, len(jobs), batch_size):
                batch = jobs[b:b + batch_size]
                x = torch.stack([block[z:z + slices, y0:y0 + th, x0:x0 + tw] for z, y0, x0 in batch])
                with autocast:
                    pred = model(x).float()
                if classes is not None:
                    pred = torch.softmax(pred, 1)
                for (z, y0, x0), p in zip(batch, pred[:, :channels], strict=True):
                    acc[:, z, y0:y0 + th, x0:x0 + tw] += p * weights[y0, x0]
            result = (acc / norm).cpu().numpy()
            if classes is None:
                out[z0:z1] = result[0]
            else:
                out[:, z0:z1] = result
            bar.update(z1 - z0)
    finally:
        bar.close()
        model.train(was_training)
    return out
