"""The per-pixel moving median over the rotation angle psi, refreshed every few frames.

DCT frames carry a slowly varying background (the direct beam's halo, the
detector's glow) that a per-pixel median over many frames estimates, the
diffraction spots being brief in psi. The definition used here:

* frames are grouped in blocks of ``refresh`` consecutive frames (the users'
  ``2s + 1``); the last block may be shorter;
* each block's window is the ``window`` consecutive frames centred on the
  block's middle frame (``middle - window // 2`` onwards), shifted to lie
  inside the stack (all frames when the stack is shorter than the window);
* every frame of a block gets the median of its pixel over the block's
  window: for an even count, the mean of the two middle values, as
  ``numpy.median`` computes it (in the stack's dtype).

:func:`moving_median_reference` is that definition written with
``numpy.median``; :func:`moving_median` computes the same numbers with a
compiled selection per pixel (the pixel's window copied to contiguous memory,
then Hoare's selection in place, through numba), in threads over pixels;
:func:`subtract_moving_median` streams a zarr stack through it in tiles of
blocks (with the windows' halo in psi) and rows, within a memory budget.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from aiax_bench.errors import InputError
from aiax_bench.validation import check_positive_int

__all__ = ["moving_median", "moving_median_reference", "refresh_windows", "subtract_moving_median"]


def refresh_windows(n_frames: int, *, window: int, refresh: int) -> np.ndarray:
    """``(blocks, 4)`` int64: each block's first and end frame, and its window's first and end frame."""
    n_frames = check_positive_int("n_frames", n_frames, "frames in the stack")
    window = check_positive_int("window", window, "frames in the median's window")
    refresh = check_positive_int("refresh", refresh, "frames per refresh of the median")
    starts = np.arange(0, n_frames, refresh)
    ends = np.minimum(starts + refresh, n_frames)
    width = min(window, n_frames)
    middle = (starts + ends - 1) // 2
    first = np.clip(middle - width // 2, 0, n_frames - width)
    return np.stack([starts, ends, first, first + width], axis=1).astype(np.int64)


def _check_stack(stack) -> np.ndarray:
    stack = np.asarray(stack)
    if stack.ndim != 3:
        raise InputError("stack", f"has shape {stack.shape}", "expected frames (psi, y, x)")
    if stack.dtype.kind != "f":
        stack = stack.astype(np.float32)
    return stack


def moving_median_reference(stack, *, window: int, refresh: int) -> np.ndarray:
    """The definition, with ``numpy.median`` over each block's window: the median of every frame, ``(psi, y, x)``."""
    stack = _check_stack(stack)
    out = np.empty_like(stack)
    for start, end, first, last in refresh_windows(stack.shape[0], window=window, refresh=refresh):
        out[start:end] = np.median(stack[first:last], axis=0)
    return out


@numba.njit(nogil=True, cache=True)
def _select(values, k):  # pragma: no cover - compiled
    """Reorder ``values`` in place so that ``values[k]`` is its k-th smallest (Hoare's selection), and return it."""
    lo, hi = 0, values.size - 1
    while hi > lo:
        mid = (lo + hi) // 2
        # Median of three as the pivot: sorted runs (a slow background) stay linear.
        if values[mid] < values[lo]:
            values[mid], values[lo] = values[lo], values[mid]
        if values[hi] < values[lo]:
            values[hi], values[lo] = values[lo], values[hi]
        if values[hi] < values[mid]:
            values[hi], values[mid] = values[mid], values[hi]
        pivot = values[mid]
        i, j = lo, hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while pivot < values[j]:
                j -= 1
            if i <= j:
                values[i], values[j] = values[j], values[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            break
    return values[k]


@numba.njit(nogil=True, cache=True)
def _medians(series, windows, out):  # pragma: no cover - compiled
    """Per pixel (rows of ``series``, ``(P, psi)``, contiguous), each block window's median into ``out (P, B)``."""
    width = windows[0, 3] - windows[0, 2]
    half = width // 2
    buffer = np.empty(width, dtype=series.dtype)
    for p in range(series.shape[0]):
        for b in range(windows.shape[0]):
            first = windows[b, 2]
            for i in range(width):
                buffer[i] = series[p, first + i]
            upper = _select(buffer, half)
            if width % 2:
                out[p, b] = upper
            else:
                # The other middle value: the largest of those the selection left below it.
                lower = buffer[0]
                for i in range(1, half):
                    if buffer[i] > lower:
                        lower = buffer[i]
                out[p, b] = (lower + upper) * series.dtype.type(0.5)
    return out


def _block_medians(tile: np.ndarray, windows: np.ndarray, threads: int) -> np.ndarray:
    """``(B, y, x)`` medians of a tile ``(psi, y, x)`` whose windows index into it."""
    _, ny, nx = tile.shape
    series = np.ascontiguousarray(tile.reshape(tile.shape[0], -1).T)  # each pixel's psi series, contiguous
    out = np.empty((series.shape[0], windows.shape[0]), dtype=series.dtype)
    groups = np.array_split(np.arange(series.shape[0]), max(1, min(threads, series.shape[0])))

    def run(pixels: np.ndarray) -> None:
        if pixels.size:
            _medians(series[pixels[0]:pixels[-1] + 1], windows, out[pixels[0]:pixels[-1] + 1])

    with ThreadPoolExecutor(len(groups)) as pool:
        list(pool.map(run, groups))
    return out.T.reshape(windows.shape[0], ny, nx)


def moving_median(stack, *, window: int, refresh: int, threads: int | None = None) -> np.ndarray:
    """Each frame's moving median (see the module notes), ``(psi, y, x)`` in the stack's dtype.

    Parameters
    ----------
    stack : array_like
        Frames ``(psi, y, x)``; integer frames are taken as float32.
    window : int
        Frames in each median (the users' ``w``, about 500).
    refresh : int
        Frames sharing one median (the users' ``2s + 1``, s about 25 to 50).
    threads : int, optional
        Threads over pixels (default: the CPU count); the numbers do not depend on it.
    """
    stack = _check_stack(stack)
    windows = refresh_windows(stack.shape[0], window=window, refresh=refresh)
    medians = _block_medians(stack, windows, threads or os.cpu_count() or 1)
    return np.repeat(medians, windows[:, 1] - windows[:, 0], axis=0)


def subtract_moving_median(source, target, *, window: int, refresh: int, memory_bytes: int = 1 << 30,
                           threads: int | None = None) -> dict[str, int]:
    """Write ``frame - moving median`` of a zarr (or any sliceable) stack into ``target``, tile by tile.

    Tiles are runs of whole refresh blocks and slabs of rows: each reads its
    blocks' frames plus the windows' halo in psi, so memory stays near
    ``memory_bytes`` whatever the stack's size. The result is
    :func:`moving_median`'s, frame for frame.

    Returns
    -------
    dict
        ``tiles`` read and ``frames_read`` (frames times row-slabs read, halos included).
    """
    n_frames, ny, nx = source.shape
    if tuple(target.shape) != (n_frames, ny, nx):
        raise InputError("target", f"has shape {tuple(target.shape)}", f"expected the source's {(n_frames, ny, nx)}")
    windows = refresh_windows(n_frames, window=window, refresh=refresh)
    width = int(windows[0, 3] - windows[0, 2])
    itemsize = 8 if np.dtype(source.dtype) == np.float64 else 4
    # Frames held per tile: the blocks, their halo, and the medians; two copies (tile and transposed series).
    blocks_per_tile = max(1, (memory_bytes // (2 * itemsize * ny * nx) - width) // refresh)
    rows = ny
    if (blocks_per_tile * refresh + width) * 2 * itemsize * ny * nx > memory_bytes:
        blocks_per_tile = 1
        rows = max(1, int(memory_bytes // (2 * itemsize * nx * (refresh + width))))
    tiles = frames_read = 0
    for b0 in range(0, windows.shape[0], blocks_per_tile):
        part = windows[b0:b0 + blocks_per_tile]
        # One read per tile: the blocks' frames and their windows (a window narrower than the refresh
        # does not cover its block).
        lo, hi = int(part[:, [0, 2]].min()), int(part[:, [1, 3]].max())
        local = part - lo
        for y0 in range(0, ny, rows):
            y1 = min(y0 + rows, ny)
            tile = _check_stack(np.asarray(source[lo:hi, y0:y1]))
            medians = _block_medians(tile, local, threads or os.cpu_count() or 1)
            for (start, end, _, _), median in zip(local, medians, strict=True):
                target[lo + start:lo + end, y0:y1] = tile[start:end] - median[None]
            tiles += 1
            frames_read += hi - lo
    return {"tiles": tiles, "frames_read": frames_read}
