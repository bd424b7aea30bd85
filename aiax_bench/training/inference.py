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

import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from aiax_bench.data.torch_adapter import reflect_indices
from aiax_bench.errors import InputError
from aiax_bench.recon.device import default_device

__all__ = ["predict_volume", "tile_starts"]


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Start indices of tiles of ``tile`` px covering ``n`` px with at least ``overlap`` px overlap."""
    if tile >= n:
        return [0]
    step = max(tile - overlap, 1)
    starts = list(range(0, n - tile, step))
    return [*starts, n - tile]


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
        from zarr.codecs import BloscCodec

        chunks = (min(slab, shape[0]), *(min(64, s) for s in shape[1:]))
        return zarr.create_array(store=str(out), shape=shape, chunks=chunks, dtype="float32",
                                 compressors=BloscCodec(cname="zstd", clevel=5, shuffle="bitshuffle"),
                                 overwrite=True)
    if tuple(out.shape) != tuple(shape):
        raise InputError("out", f"has shape {tuple(out.shape)}", f"expected {tuple(shape)} like the input volume")
    return out


@torch.inference_mode()
def predict_volume(model: nn.Module, volume: Any, *, slices: int = 5, batch_size: int = 8,
                   tile: int | None = None, overlap: int = 32, slab: int | None = None,
                   device: torch.device | str | None = None, amp: bool = False, out: Any = None,
                   progress: bool = False) -> Any:
    """Apply a 2.5D slice model to every slice of a volume.

    Parameters
    ----------
    model : torch.nn.Module
        Maps ``(B, slices, H, W)`` to ``(B, 1, H, W)`` in the volume's units (1/cm).
    volume : array_like
        ``(Z, Y, X)`` numpy or zarr array (read slab by slab).
    slices : int
        Adjacent slices per input stack (odd), reflected at the volume's ends.
    batch_size : int
        Slices (or tiles) per forward pass.
    tile : int, optional
        In-plane tile edge (px); whole slices if omitted or larger than the slice.
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

    Returns
    -------
    numpy.ndarray or zarr.Array
        The prediction, float32 ``(Z, Y, X)``.
    """
    from tqdm.auto import tqdm

    shape = tuple(int(s) for s in volume.shape)
    if len(shape) != 3:
        raise InputError("volume", f"has shape {shape}", "expected a 3D volume (Z, Y, X)")
    if slices < 1 or slices % 2 == 0:
        raise InputError("slices", f"is {slices}", "expected an odd number of adjacent slices")
    if (tile is not None and tile < 1) or overlap < 0 or batch_size < 1:
        raise InputError("tile / overlap / batch_size", f"are {tile} / {overlap} / {batch_size}",
                         "expected a positive tile, overlap >= 0 and a positive batch size")
    device = torch.device(device) if device is not None else default_device()
    nz, ny, nx = shape
    if slab is None:
        chunks = getattr(out, "chunks", None) if out is not None and not isinstance(out, str | Path) else None
        slab = int(chunks[0]) if chunks else 64
    out = _open_output(out, shape, slab)
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
            acc = torch.zeros((z1 - z0, ny, nx), dtype=torch.float32, device=device)
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
                for (z, y0, x0), p in zip(batch, pred[:, 0], strict=True):
                    acc[z, y0:y0 + th, x0:x0 + tw] += p * weights[y0, x0]
            result = (acc / norm).cpu().numpy()
            out[z0:z1] = result
            bar.update(z1 - z0)
    finally:
        bar.close()
        model.train(was_training)
    return out
