"""Synthetic foam-like volume pairs of any size, generated block by block (tests and benchmarks).

Spherical pores (log-uniform radii) are packed cell by cell in a cylinder;
pores never cross *cell* faces but freely cross the *blocks* the volumes
are evaluated in, which is what the chunked path must handle. The truth is
the solid's attenuation outside the pores; the reference and the "method"
output are blurred, noisy copies with different blur and noise. Every voxel
is a function of its position and the seed only, so a block computed alone
equals the same block of the whole volume, and a volume larger than memory
can be written to zarr block by block (:func:`write_zarr`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from aiax_bench.errors import InputError

__all__ = ["SyntheticFoam"]

Region = tuple[slice, slice, slice]


@dataclass
class SyntheticFoam:
    """A cubic foam of edge ``size`` (voxels); all lengths in voxels.

    Attributes
    ----------
    size : int
        Edge of the volume.
    seed : int
        Seed of the pores and of the noise.
    porosity : float
        Target pore fraction inside each cell.
    r_min, r_max : float
        Range of the pore radii (log-uniform).
    cell : int
        Edge of the packing cells.
    mu : float
        Attenuation of the solid (1/cm).
    blur_reference, noise_reference, blur_method, noise_method : float
        Gaussian blur σ (voxels) and noise σ (1/cm) of the two reconstructions.
    cylinder : float
        Radius of the sample cylinder as a fraction of ``size``.
    """

    size: int
    seed: int = 0
    porosity: float = 0.3
    r_min: float = 1.5
    r_max: float = 9.0
    cell: int = 100
    mu: float = 4.2
    blur_reference: float = 0.7
    noise_reference: float = 0.25
    blur_method: float = 1.0
    noise_method: float = 0.45
    cylinder: float = 0.45

    def __post_init__(self) -> None:
        if self.size < 16:
            raise InputError("size", f"is {self.size}", "expected at least 16 voxels")
        self._spheres = self._pack()

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.size,) * 3

    @property
    def spheres(self) -> np.ndarray:
        """``(n, 4)`` pore centres (z, y, x) and radii."""
        return self._spheres

    def _pack(self) -> np.ndarray:
        gap = 1.5  # solid between pores (voxels)
        out = []
        n_cells = -(-self.size // self.cell)
        for index in itertools.product(range(n_cells), repeat=3):
            rng = np.random.default_rng([self.seed, *index])
            lo = np.array(index) * self.cell
            hi = np.minimum(lo + self.cell, self.size)
            target = self.porosity * np.prod(hi - lo)
            n = int(4 * target / (4 / 3 * np.pi * self.r_min**3)) // 8 + 50
            radii = np.sort(np.exp(rng.uniform(np.log(self.r_min), np.log(self.r_max), n)))[::-1]
            room = (hi - lo)[None, :] - 2 * radii[:, None] - gap
            fits = np.all(room > 0, axis=1)
            radii, room = radii[fits], room[fits]
            centres = lo + radii[:, None] + gap / 2 + rng.random((radii.size, 3)) * room
            placed = np.empty((radii.size, 4))
            k, volume = 0, 0.0
            # Largest first, in batches: a candidate is kept if it clears every pore placed so far
            # and every earlier candidate of its batch (vectorised; slightly stricter than one by one).
            batch = 128
            for b0 in range(0, radii.size, batch):
                if volume >= target:
                    break
                c, r = centres[b0:b0 + batch], radii[b0:b0 + batch]
                if k:
                    d2 = np.sum((c[:, None, :] - placed[None, :k, :3]) ** 2, axis=-1)
                    clear = ~np.any(d2 < (r[:, None] + placed[None, :k, 3] + gap) ** 2, axis=1)
                    c, r = c[clear], r[clear]
                d2 = np.sum((c[:, None, :] - c[None, :, :]) ** 2, axis=-1)
                clash = np.tril(d2 < (r[:, None] + r[None, :] + gap) ** 2, -1)
                keep = ~np.any(clash, axis=1)
                c, r = c[keep], r[keep]
                room_left = np.cumsum(4 / 3 * np.pi * r**3) + volume
                upto = int(np.searchsorted(room_left, target)) + 1
                c, r = c[:upto], r[:upto]
                placed[k:k + r.size, :3], placed[k:k + r.size, 3] = c, r
                k += r.size
                volume += float(np.sum(4 / 3 * np.pi * r**3))
            out.append(placed[:k])
        return np.concatenate(out).reshape(-1, 4)

    def mask(self, region: Region | None = None) -> np.ndarray:
        """The sample cylinder (axis along z), boolean."""
        region = region or tuple(slice(0, self.size) for _ in range(3))
        c = (self.size - 1) / 2
        y = np.arange(region[1].start, region[1].stop)[:, None] - c
        x = np.arange(region[2].start, region[2].stop)[None, :] - c
        disk = y**2 + x**2 <= (self.cylinder * self.size) ** 2
        return np.broadcast_to(disk, tuple(s.stop - s.start for s in region)).copy()

    def pores(self, region: Region | None = None) -> np.ndarray:
        """Pore voxels (inside the cylinder), boolean."""
        region = region or tuple(slice(0, self.size) for _ in range(3))
        lo = np.array([s.start for s in region])
        hi = np.array([s.stop for s in region])
        out = np.zeros(tuple(hi - lo), dtype=bool)
        s = self._spheres
        near = np.all((s[:, :3] + s[:, 3:] >= lo) & (s[:, :3] - s[:, 3:] <= hi - 1), axis=1)
        for cz, cy, cx, r in s[near]:
            a = np.maximum(np.floor(np.array([cz, cy, cx]) - r).astype(int), lo)
            b = np.minimum(np.ceil(np.array([cz, cy, cx]) + r).astype(int) + 1, hi)
            zz, yy, xx = (np.arange(a[i], b[i]) - c for i, c in enumerate((cz, cy, cx)))
            ball = zz[:, None, None] ** 2 + yy[None, :, None] ** 2 + xx[None, None, :] ** 2 <= r * r
            view = out[a[0] - lo[0]:b[0] - lo[0], a[1] - lo[1]:b[1] - lo[1], a[2] - lo[2]:b[2] - lo[2]]
            view |= ball
        return out & self.mask(region)

    def labels(self, region: Region | None = None) -> np.ndarray:
        """Phase labels: 0 outside the cylinder, 1 solid, 2 pore (uint8)."""
        m = self.mask(region)
        return (m.astype(np.uint8) + self.pores(region)).astype(np.uint8)

    def truth(self, region: Region | None = None) -> np.ndarray:
        """Exact attenuation (1/cm), float32."""
        return np.where(self.labels(region) == 1, np.float32(self.mu), np.float32(0))

    def _noisy(self, region: Region, streams: tuple[tuple[float, float, int], ...]) -> list[np.ndarray]:
        """Blurred noisy copies of the truth, one per ``(blur, noise, stream)``, from one rendering."""
        halo = int(np.ceil(4 * max(b for b, _, _ in streams))) + 1
        grown = tuple(slice(max(0, s.start - halo), min(self.size, s.stop + halo)) for s in region)
        truth = self.truth(grown)
        inner = tuple(slice(s.start - g.start, s.stop - g.start) for s, g in zip(region, grown, strict=True))
        tile = 32  # noise drawn per 32³ tile from (seed, stream, tile): independent of how the volume is cut
        tiles = list(itertools.product(*[range(s.start // tile * tile, s.stop, tile) for s in region]))
        outs = []
        for blur, noise, stream in streams:
            vol = ndimage.gaussian_filter(truth, blur, mode="nearest")[inner]
            out = np.empty(vol.shape, dtype=np.float32)
            for start in tiles:
                rng = np.random.default_rng([self.seed, stream, *start])
                block = rng.normal(0, noise, (tile,) * 3).astype(np.float32)
                src = tuple(slice(max(s.start, t) - t, min(s.stop, t + tile) - t)
                            for s, t in zip(region, start, strict=True))
                dst = tuple(slice(max(s.start, t) - s.start, min(s.stop, t + tile) - s.start)
                            for s, t in zip(region, start, strict=True))
                out[dst] = vol[dst] + block[src]
            outs.append(out)
        return outs

    def reference(self, region: Region | None = None) -> np.ndarray:
        """The "reference reconstruction": mildly blurred and noisy truth (1/cm), float32."""
        region = region or tuple(slice(0, self.size) for _ in range(3))
        return self._noisy(region, ((self.blur_reference, self.noise_reference, 1),))[0]

    def method(self, region: Region | None = None) -> np.ndarray:
        """The "method output": more blurred and noisier (1/cm), float32."""
        region = region or tuple(slice(0, self.size) for _ in range(3))
        return self._noisy(region, ((self.blur_method, self.noise_method, 2),))[0]

    def pair(self, region: Region | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``(method, reference)`` from a single rendering of the pores (what :meth:`write_zarr` uses)."""
        region = region or tuple(slice(0, self.size) for _ in range(3))
        method, reference = self._noisy(region, ((self.blur_method, self.noise_method, 2),
                                                 (self.blur_reference, self.noise_reference, 1)))
        return method, reference

    def write_zarr(self, path: str | Path, *, chunks: int = 128, names: tuple[str, ...] = (
            "method", "reference", "mask"), progress: bool = False) -> dict[str, Path]:
        """Write volumes (``method``, ``reference``, ``truth``, ``labels``, ``mask``) as zarr arrays, block by block.

        Returns the path of each array (``path/<name>.zarr``).
        """
        import zarr

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        dtypes = {"method": "float32", "reference": "float32", "truth": "float32", "labels": "uint8", "mask": "bool"}
        arrays = {n: zarr.create_array(str(path / f"{n}.zarr"), shape=self.shape, chunks=(chunks,) * 3,
                                       dtype=dtypes[n], overwrite=True) for n in names}
        blocks = list(itertools.product(*[range(0, self.size, chunks)] * 3))
        iterator = blocks
        if progress:
            from tqdm.auto import tqdm

            iterator = tqdm(blocks, desc="writing synthetic volumes", unit="block")
        for start in iterator:
            region = tuple(slice(a, min(a + chunks, self.size)) for a in start)
            if "method" in arrays and "reference" in arrays:
                arrays["method"][region], arrays["reference"][region] = self.pair(region)
            for n, arr in arrays.items():
                if n not in ("method", "reference") or not ("method" in arrays and "reference" in arrays):
                    arr[region] = getattr(self, n)(region)
        return {n: path / f"{n}.zarr" for n in names}
