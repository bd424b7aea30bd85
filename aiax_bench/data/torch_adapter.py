"""PyTorch ``Dataset`` adapters over dataset samples: 2.5D slice stacks and 3D patches.

Two views of the same volumes:

* :class:`SliceStacks` enumerates every (sample, slice) once, in order, without
  augmentation: validation and evaluation.
* :class:`RandomPatches` draws random patches (2.5D stacks of ``slices``
  adjacent slices, or 3D blocks) with seeded augmentation by the 8 flips and
  90° rotations of the slice plane: training.

Both feed a :class:`torch.utils.data.DataLoader` with worker processes. They
hold zarr arrays (which pickle to a reference to the store and are reopened
in each worker, whatever the start method) or numpy arrays, and keep any
in-memory copy per process, never in the pickled state.

Every item is ``(input, target)``, float32 tensors in the units of the
stored arrays (1/cm for reconstructions): 2.5D ``(slices, H, W)`` and
``(1, H, W)`` (the target's centre slice); 3D ``(1, D, H, W)`` both.
Standardisation is the method's business, not the adapter's.

Randomness is a pure function of ``(seed, epoch, index)``, so the patch stream
does not depend on the number of workers or on which worker draws which item,
and training resumed at a given step sees exactly the patches it would have
seen without the interruption.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from aiax_bench.data.sample import SampleLike
from aiax_bench.errors import InputError
from aiax_bench.validation import check_positive_int

__all__ = ["RandomPatches", "SliceStacks", "augment_dihedral", "reflect_indices"]


def reflect_indices(start: int, stop: int, n: int) -> np.ndarray:
    """Indices ``start..stop-1`` folded into ``[0, n)`` by reflection about the edge voxels.

    Like ``numpy.pad(mode='reflect')``: ``-1 -> 1``, ``n -> n - 2``. A volume of one
    slice repeats that slice.
    """
    idx = np.arange(start, stop)
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.abs(idx) % period
    return np.where(idx >= n, period - idx, idx)


def augment_dihedral(arrays: Sequence[np.ndarray], k: int) -> list[np.ndarray]:
    """Apply element ``k`` (0..7) of the slice plane's symmetry group to each array.

    ``k % 4`` quarter turns in the plane of the last two axes, then a flip of
    the last axis when ``k >= 4``. The same transform is applied to every
    array, so input and target stay aligned.
    """
    out = []
    for a in arrays:
        a = np.rot90(a, k % 4, axes=(-2, -1))
        if k >= 4:
            a = a[..., ::-1]
        out.append(np.ascontiguousarray(a))
    return out


class _Volumes:
    """The input and target arrays of one sample, with a per-process in-memory copy."""

    def __init__(self, source: Any, names: tuple[str, str], in_memory: bool) -> None:
        self.arrays = []
        for name in names:
            arr = source[name] if isinstance(source, dict) else getattr(source, name.replace("-", "_"))
            if not hasattr(arr, "shape") or len(arr.shape) != 3:
                raise InputError(f"array {name!r} of sample {getattr(source, 'id', '?')}",
                                 f"has shape {getattr(arr, 'shape', None)}", "expected a 3D volume (Z, Y, X)")
            self.arrays.append(arr)
        if self.arrays[0].shape != self.arrays[1].shape:
            raise InputError(f"arrays {names} of sample {getattr(source, 'id', '?')}",
                             f"have shapes {self.arrays[0].shape} and {self.arrays[1].shape}",
                             "expected input and target of the same shape")
        self.shape = tuple(int(s) for s in self.arrays[0].shape)
        self.in_memory = in_memory
        self._cache: list[np.ndarray] | None = None

    def __getstate__(self) -> dict[str, Any]:
        # Never pickled with the data: a spawned worker reads its own copy on
        # first use (a forked one shares the parent's copy-on-write).
        state = dict(self.__dict__)
        state["_cache"] = None
        return state

    def _memory(self) -> list[np.ndarray]:
        if self._cache is None:
            self._cache = [np.asarray(a[...], dtype=np.float32) for a in self.arrays]
        return self._cache

    def read(self, z: np.ndarray, y: slice, x: slice) -> list[np.ndarray]:
        """Slices ``z`` (any index array) and the in-plane window ``[y, x]`` of both arrays."""
        if self.in_memory:
            return [a[z, y, x] for a in self._memory()]
        # zarr reads a contiguous block; the reflected order is applied afterwards.
        lo, hi = int(z.min()), int(z.max()) + 1
        return [np.asarray(a[lo:hi, y, x], dtype=np.float32)[z - lo] for a in self.arrays]


def _check_common(samples: Sequence[SampleLike], slices: int) -> None:
    if len(samples) == 0:
        raise InputError("samples", "is empty", "expected at least one sample")
    if slices < 1 or slices % 2 == 0:
        raise InputError("slices", f"is {slices}", "expected an odd number of adjacent slices (1, 3, 5, ...)")


class SliceStacks(Dataset):
    """Every slice of every sample as a 2.5D stack, in order, without augmentation.

    Parameters
    ----------
    samples : sequence of Sample or dict
        Samples (``aiax_bench.load(...).split(...).val``) or mappings of name to
        3D array (numpy or zarr).
    slices : int
        Adjacent slices per stack (odd); the stack is centred on the slice and
        reflected at the first and last slice of the volume.
    input, target : str
        Array names of the network input and target (``low``, ``high``, ``truth``).
    slice_step : int
        Use every ``slice_step``-th slice only (cheaper validation).
    in_memory : bool
        Load each volume into memory (per process) on first use; otherwise every
        item reads its slices from the store.

    Examples
    --------
    >>> val = SliceStacks(split.val, slices=5, slice_step=4)  # doctest: +SKIP
    >>> x, y = val[0]  # (5, Y, X), (1, Y, X) in 1/cm  # doctest: +SKIP
    """

    def __init__(self, samples: Sequence[SampleLike], *, slices: int = 5, input: str = "low", target: str = "high",
                 slice_step: int = 1, in_memory: bool = True) -> None:
        _check_common(samples, slices)
        check_positive_int("slice_step", slice_step)
        self.slices = slices
        self.volumes = [_Volumes(s, (input, target), in_memory) for s in samples]
        self.index = [(v, z) for v, vol in enumerate(self.volumes) for z in range(0, vol.shape[0], slice_step)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        v, z = self.index[i]
        vol = self.volumes[v]
        h = self.slices // 2
        zs = reflect_indices(z - h, z + h + 1, vol.shape[0])
        x, y = vol.read(zs, slice(None), slice(None))
        return torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(np.ascontiguousarray(y[h:h + 1]))


class RandomPatches(Dataset):
    """Random 2.5D or 3D training patches with seeded flip/rotation augmentation.

    Parameters
    ----------
    samples : sequence of Sample or dict
        Training samples, or mappings of name to 3D array.
    slices : int
        2.5D: adjacent slices per stack (odd), reflected at the volume's ends.
        Ignored when ``patch_dim=3``.
    patch_size : int or tuple of int
        In-plane patch edge (px); for 3D an int (cube) or ``(D, H, W)``. Capped
        at the volume size.
    patch_dim : {2, 3}
        2 for 2.5D slice stacks, 3 for 3D blocks.
    input, target : str
        Array names of the network input and target.
    length : int
        Items per epoch.
    augment : bool
        Apply one of the 8 in-plane flips / quarter turns, drawn per item.
    seed : int
        Seed of the patch positions and augmentations.
    in_memory : bool
        Load each volume into memory (per process) on first use.

    Notes
    -----
    Slices are drawn uniformly over all slices of all samples, positions
    uniformly over the slice. Call :meth:`set_epoch` before iterating an epoch
    (as with ``DistributedSampler``) to get new patches.
    """

    def __init__(self, samples: Sequence[SampleLike], *, slices: int = 5, patch_size: int | tuple[int, ...] = 64,
                 patch_dim: int = 2, input: str = "low", target: str = "high", length: int = 1024,
                 augment: bool = True, seed: int = 0, in_memory: bool = True) -> None:
        _check_common(samples, slices)
        if patch_dim not in (2, 3):
            raise InputError("patch_dim", f"is {patch_dim}", "expected 2 (2.5D stacks) or 3 (3D blocks)")
        if length < 1:
            raise InputError("length", f"is {length}", "expected a positive number of items per epoch")
        self.slices, self.patch_dim, self.length = slices, patch_dim, int(length)
        self.augment, self.seed, self.epoch = augment, int(seed), 0
        self.volumes = [_Volumes(s, (input, target), in_memory) for s in samples]
        size = (patch_size,) * patch_dim if isinstance(patch_size, int) else tuple(patch_size)
        if len(size) != patch_dim or min(size) < 1:
            raise InputError("patch_size", f"is {patch_size}", f"expected a positive int or {patch_dim} of them")
        self.patch_size = size
        self._weights = np.array([v.shape[0] for v in self.volumes], dtype=np.float64)
        self._weights /= self._weights.sum()

    def __len__(self) -> int:
        return self.length

    def set_epoch(self, epoch: int) -> None:
        """Select the patches of ``epoch`` (before creating the DataLoader iterator)."""
        self.epoch = int(epoch)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < self.length:
            raise IndexError(i)
        rng = np.random.default_rng([self.seed, self.epoch, int(i)])
        vol = self.volumes[int(rng.choice(len(self.volumes), p=self._weights))]
        nz, ny, nx = vol.shape
        if self.patch_dim == 2:
            py, px = (min(s, n) for s, n in zip(self.patch_size, (ny, nx), strict=True))
            z = int(rng.integers(nz))
            h = self.slices // 2
            zs = reflect_indices(z - h, z + h + 1, nz)
        else:
            pz, py, px = (min(s, n) for s, n in zip(self.patch_size, vol.shape, strict=True))
            z0 = int(rng.integers(nz - pz + 1))
            zs = np.arange(z0, z0 + pz)
        y0, x0 = int(rng.integers(ny - py + 1)), int(rng.integers(nx - px + 1))
        x, y = vol.read(zs, slice(y0, y0 + py), slice(x0, x0 + px))
        if self.patch_dim == 2:
            y = y[h:h + 1]
        else:
            x, y = x[None], y[None]
        k = int(rng.integers(8)) if self.augment else 0
        if py != px and k % 2:
            k -= 1  # a quarter turn of a non-square patch would change its shape
        x, y = augment_dihedral([x, y], k)
        return torch.from_numpy(x), torch.from_numpy(y)
