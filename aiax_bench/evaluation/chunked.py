"""Chunked evaluation of volumes larger than memory (zarr in, the same numbers out).

Each statistic is streamed over blocks so that peak memory depends on the
block size, not on the volume:

- **MSE / PSNR**: sums of squared differences per block.
- **SSIM** (3D and slice-wise): z-slabs (y-bands for large planes) read
  once with a 5-voxel halo and scored by the in-memory kernel; the SSIM is
  computed in valid mode, so each slab's sums are exactly its share of the
  whole (:func:`aiax_bench.evaluation.metrics.ssim_sums`). Why not
  ``dask.array.map_overlap``: on a 512³ zarr pair with 128³ chunks it held
  1.35 GB (dask keeps layers of chunks alive, so the peak grows with the
  plane), where this path peaks at 1.3 GB for a whole 1024³ pair.
- **Threshold**: the protocol's fixed-bin histogram adds up over blocks.
- **Pores**: ``cc3d`` labels each block; labels that touch across block faces
  are merged by union-find, which reproduces the whole-volume components
  exactly (6-connectivity only links face neighbours). Volumes, cut flags
  and the voxels of small pieces (speck candidates) are kept per label, not
  per voxel.
- **Surface**: Crofton transition counts over z-slabs of the pore phase,
  which is kept in memory bit-packed (1 bit per voxel: 128 MB at 1024³)
  with the specks (known once the labels are merged) cleared by coordinates.
- **Mask**: eroded once, slab by slab, and kept bit-packed too, so no pass
  reads a halo from zarr (a halo read decompresses up to 27 chunks).

- **Local thickness** (on request): block by block on the measured phase, each block
  with a halo of twice the largest ball radius its largest pore allows and
  background beyond its inner faces, which makes it exact (see
  :func:`thickness_histogram_chunked`); left out when that halo is too large
  for blocks (a percolating pore space).

- **Dice by pore size** (on request): while the method's phase is labelled,
  each block's pairs of overlapping method and truth labels are counted;
  once both phases' labels are merged, each method pore takes the stratum of
  the truth pore it overlaps most (ties to the truth pore whose first voxel
  comes first in raster order, as the whole volume's labels are numbered).

Needs only NumPy, SciPy, zarr and ``cc3d``; blocks run in threads (NumPy,
SciPy and cc3d release the GIL).
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from aiax_bench.errors import InputError
from aiax_bench.evaluation import metrics
from aiax_bench.evaluation import porosity as pz
from aiax_bench.evaluation.segmentation import SIZE_STRATA, class_scores_record, scores_from_confusion, size_strata
from aiax_bench.mapped_files import release_mapped_pages
from aiax_bench.validation import check_positive

__all__ = ["DEFAULT_CHUNK", "BitVolume", "UnionFind", "dice_by_size_chunked", "evaluate_chunked", "label_chunked",
           "open_volume"]

DEFAULT_CHUNK = 128
Region = tuple[slice, slice, slice]


def open_volume(volume: Any, name: str = "volume") -> Any:
    """Return something sliceable with ``shape`` and ``dtype``: a zarr array opened read-only from a path, or as is."""
    if isinstance(volume, (str, Path)):
        import zarr

        try:
            return zarr.open_array(str(volume), mode="r")
        except Exception as exc:  # zarr raises several types for a missing or foreign store
            raise InputError(name, f"cannot be opened as a zarr array at {volume} ({type(exc).__name__})",
                             "expected the path of a zarr array") from None
    if not (hasattr(volume, "shape") and hasattr(volume, "dtype") and hasattr(volume, "__getitem__")):
        raise InputError(name, f"is a {type(volume).__name__}", "expected a zarr array, a numpy array or a path")
    return volume


def _read(volume: Any, region: Region) -> np.ndarray:
    block = volume[region]
    if isinstance(block, np.memmap):
        # A copy, then the map's pages go: a pass over a volume larger than memory holds one block of it,
        # not every page read so far. A thread still copying its own block meanwhile reads its dropped pages
        # again from the page cache (the same bytes).
        data = np.array(block)
        release_mapped_pages(block)
        return data
    return np.asarray(block)


def _axis_chunks(n: int, c: int) -> tuple[int, ...]:
    """Block sizes along one axis; a tail shorter than the SSIM window joins the block before it."""
    sizes = [c] * (n // c) + ([n % c] if n % c else [])
    if len(sizes) > 1 and sizes[-1] < 2 * metrics._pad() + 1:
        sizes[-2] += sizes.pop()
    return tuple(sizes)


def _grid(shape: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
    return tuple(_axis_chunks(n, c) for n, c in zip(shape, chunks, strict=True))


def _blocks(shape: tuple[int, ...], chunks: tuple[int, ...]) -> list[Region]:
    """The blocks of a volume in C order (the order of ``np.ndindex`` over the block grid)."""
    starts = [np.cumsum((0, *sizes[:-1])) for sizes in _grid(shape, chunks)]
    ends = [np.cumsum(sizes) for sizes in _grid(shape, chunks)]
    return [tuple(slice(int(a), int(b)) for a, b in zip(start, end, strict=True))
            for start, end in zip(itertools.product(*starts), itertools.product(*ends), strict=True)]


def _grow(region: Region, halo: int | tuple[int, ...], shape: tuple[int, ...]) -> Region:
    halo = (halo,) * len(shape) if isinstance(halo, int) else halo
    return tuple(slice(max(0, s.start - h), min(n, s.stop + h)) for s, h, n in zip(region, halo, shape, strict=True))


def _local(inner: Region, outer: Region) -> Region:
    """Position of ``inner`` inside the array read for ``outer``."""
    return tuple(slice(i.start - o.start, i.stop - o.start) for i, o in zip(inner, outer, strict=True))


class BitVolume:
    """A boolean volume packed 8 voxels per byte along x (``numpy.packbits``), read and written by region."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        self.shape = tuple(shape)
        self.data = np.zeros((*self.shape[:2], -(-self.shape[2] // 8)), dtype=np.uint8)
        self._lock = threading.Lock()

    def _bytes(self, region: Region) -> tuple[Region, int]:
        x = region[2]
        return (region[0], region[1], slice(x.start // 8, -(-x.stop // 8))), x.start % 8

    def get(self, region: Region) -> np.ndarray:
        where, skip = self._bytes(region)
        bits = np.unpackbits(self.data[where], axis=-1).view(bool)
        return bits[..., skip:skip + region[2].stop - region[2].start]

    def set(self, region: Region, values: np.ndarray) -> None:
        where, skip = self._bytes(region)
        x = region[2]
        if skip == 0 and (x.stop % 8 == 0 or x.stop == self.shape[2]):
            self.data[where] = np.packbits(values, axis=-1)  # whole bytes: no other block shares them
            return
        with self._lock:  # bytes shared with a neighbouring block: read, modify, write
            bits = np.unpackbits(self.data[where], axis=-1).view(bool)
            bits[..., skip:skip + x.stop - x.start] = values
            self.data[where] = np.packbits(bits, axis=-1)

    def clear(self, coords: np.ndarray) -> None:
        """Set the voxels at ``coords`` (``(n, 3)`` z, y, x) to False."""
        if len(coords):
            z, y, x = (np.asarray(c, dtype=np.intp) for c in coords.T)
            np.bitwise_and.at(self.data, (z, y, x // 8), ~(np.uint8(0x80) >> (x % 8).astype(np.uint8)))


class _MaskSource:
    """The evaluation mask, eroded in-plane once (slab by slab) and kept bit-packed in memory."""

    def __init__(self, mask: Any, shape: tuple[int, ...], erosion: int, *, slab: int = 64) -> None:
        self.mask = None
        if mask is None:
            return
        source = open_volume(mask, "mask")
        if tuple(source.shape) != tuple(shape):
            raise InputError("mask", f"has shape {tuple(source.shape)}", f"expected {tuple(shape)} like the volume")
        self.mask = BitVolume(shape)
        structure = np.zeros((3, 3, 3), dtype=bool)
        structure[1] = ndimage.generate_binary_structure(2, 1)
        full = (slice(0, shape[1]), slice(0, shape[2]))
        for z0 in range(0, shape[0], slab):  # whole planes: the in-plane erosion is exact
            region = (slice(z0, min(z0 + slab, shape[0])), *full)
            m = _read(source, region).astype(bool)
            if erosion:
                m = ndimage.binary_erosion(m, structure, iterations=int(erosion))
            self.mask.set(region, m)

    def read(self, region: Region) -> np.ndarray | None:
        return None if self.mask is None else self.mask.get(region)


def _ordered(fn: Callable[[Region], Any], items: Iterable[Region], workers: int) -> Iterator[Any]:
    """``map(fn, items)`` in threads, in order, with a bounded number of blocks in flight."""
    items = list(items)
    if workers <= 1:
        yield from map(fn, items)
        return
    window = 2 * workers
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(fn, it) for it in items[:window]]
        for i in range(len(items)):
            result = futures[i].result()
            futures[i] = None  # release the finished block
            if i + window < len(items):
                futures.append(pool.submit(fn, items[i + window]))
            yield result


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="block", leave=False)


class UnionFind:
    """Disjoint sets over integer ids 0..n-1 (path halving, union by smaller root)."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n, dtype=np.int64)

    def find(self, a: int) -> int:
        parent = self.parent
        while parent[a] != a:
            parent[a] = parent[parent[a]]
            a = parent[a]
        return int(a)

    def union_pairs(self, pairs: np.ndarray) -> None:
        """Merge the sets of each row ``(a, b)`` of ``pairs``."""
        for a, b in np.unique(pairs, axis=0).tolist() if len(pairs) else []:
            ra, rb = self.find(a), self.find(b)
            if ra != rb:
                self.parent[max(ra, rb)] = min(ra, rb)

    def roots(self) -> np.ndarray:
        """The root of every id (fully compressed)."""
        parent = self.parent
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                return parent
            parent = grand


def label_chunked(segment: Callable[[Region], np.ndarray], shape: tuple[int, ...], *, chunks: tuple[int, ...],
                  rim: Callable[[Region], np.ndarray], small: int = pz.MIN_PORE_VOXELS, workers: int = 1,
                  progress: bool = False, extra: Callable[[Region, np.ndarray, np.ndarray], Any] | None = None,
                  store: BitVolume | None = None, first_voxels: bool = False) -> dict[str, Any]:
    """Label a boolean phase block by block and merge the labels across block faces.

    Parameters
    ----------
    segment : callable
        ``segment(region) -> bool array`` of the phase in that region.
    shape : tuple of int
        Volume shape.
    chunks : tuple of int
        Block shape.
    rim : callable
        ``rim(region) -> bool array``: where a component counts as cut.
    small : int
        Pieces smaller than this keep their voxel coordinates (speck candidates).
    workers : int
        Threads labelling blocks.
    extra : callable, optional
        ``extra(region, phase, labels)`` called per block with the block's local labels;
        its results are returned in order.
    store : BitVolume, optional
        Where to keep the phase (for the surface pass).
    first_voxels : bool
        Also the raster index (in the whole volume) of each provisional label's first voxel.

    Returns
    -------
    dict
        ``root`` (merged id of every provisional label, index 0 unused), ``volume``
        and ``cut`` per provisional label, ``small_coords`` / ``small_ids``
        (coordinates of the voxels of small pieces and their provisional id), ``extra``,
        ``offsets`` (the provisional id before each block's first label), and with
        ``first_voxels`` ``first`` per provisional label.
    """
    blocks = _blocks(shape, chunks)

    def one(region: Region) -> dict[str, Any]:
        phase = segment(region)
        if store is not None:
            store.set(region, phase)
        labels, n = pz.label_pores(phase, connectivity=pz.PORE_CONNECTIVITY)
        volume = np.bincount(labels.ravel(), minlength=n + 1)
        cut = np.zeros(n + 1, dtype=bool)
        cut[labels[rim(region) & phase]] = True
        faces = {}
        for axis in range(3):
            index = [slice(None)] * 3
            index[axis] = 0
            faces[(axis, 0)] = labels[tuple(index)].astype(np.int64)
            index[axis] = -1
            faces[(axis, 1)] = labels[tuple(index)].astype(np.int64)
        tiny = (volume < small)
        tiny[0] = False
        picked = tiny[labels]
        coords = np.argwhere(picked) + np.array([s.start for s in region])
        return {"n": n, "volume": volume, "cut": cut, "faces": faces, "coords": coords,
                "coord_labels": labels[picked].astype(np.int64),
                "first": _first_voxels(labels, n, region, shape) if first_voxels else None,
                "extra": None if extra is None else extra(region, phase, labels)}

    grid = [len(sizes) for sizes in _grid(shape, chunks)]
    volumes, cuts = [np.zeros(1, np.int64)], [np.zeros(1, bool)]  # index 0: background
    firsts = [np.full(1, -1, np.int64)]
    pairs, coords, coord_ids, extras, offsets = [], [], [], [], []
    high_faces: dict[tuple[int, ...], dict[int, np.ndarray]] = {}
    total = 0
    results = _ordered(one, blocks, workers)
    for index, res in _progress(zip(np.ndindex(*grid), results, strict=True), len(blocks), "labelling", progress):
        offset = total
        offsets.append(offset)
        total += res["n"]
        volumes.append(res["volume"][1:])
        cuts.append(res["cut"][1:])
        if first_voxels:
            firsts.append(res["first"][1:])
        globalise = np.concatenate([[0], np.arange(offset + 1, offset + res["n"] + 1)])
        for axis in range(3):
            low = globalise[res["faces"][(axis, 0)]]
            below = tuple(i - (a == axis) for a, i in enumerate(index))
            if index[axis] > 0:
                other = high_faces[below].pop(axis)
                both = (low > 0) & (other > 0)
                pairs.append(np.stack([low[both], other[both]], axis=1))
                if not high_faces[below]:
                    del high_faces[below]
        kept = {axis: globalise[res["faces"][(axis, 1)]] for axis in range(3) if index[axis] + 1 < grid[axis]}
        if kept:
            high_faces[index] = kept
        coords.append(res["coords"])
        coord_ids.append(globalise[res["coord_labels"]])
        extras.append(res["extra"])
    uf = UnionFind(total + 1)
    if pairs:
        uf.union_pairs(np.concatenate(pairs))
    return {"root": uf.roots(), "volume": np.concatenate(volumes), "cut": np.concatenate(cuts),
            "small_coords": np.concatenate(coords) if coords else np.zeros((0, 3), np.int64),
            "small_ids": np.concatenate(coord_ids) if coord_ids else np.zeros(0, np.int64), "extra": extras,
            "offsets": np.asarray(offsets, dtype=np.int64),
            "first": np.concatenate(firsts) if first_voxels else None}


def _first_voxels(labels: np.ndarray, n: int, region: Region, shape: tuple[int, ...]) -> np.ndarray:
    """Raster index in the whole volume of each label's first voxel (index 0 unused).

    A block's raster order is the volume's restricted to the block, so the
    first voxel within the block is the smallest whole-volume index.
    """
    flat = labels.ravel()
    at = np.flatnonzero(flat)
    first_local = np.full(n + 1, flat.size, dtype=np.int64)
    np.minimum.at(first_local, flat[at], at)
    local = np.unravel_index(np.minimum(first_local, flat.size - 1), labels.shape)
    whole = np.ravel_multi_index(tuple(c + r.start for c, r in zip(local, region, strict=True)), shape)
    whole[0] = -1
    return whole.astype(np.int64)


def _merge(labelled: dict[str, Any], min_voxels: int) -> dict[str, Any]:
    """Merged components: volumes, cut flags, specks and the coordinates of speck voxels."""
    root = labelled["root"]
    ids, index = np.unique(root[1:], return_inverse=True)
    volume = np.bincount(index, weights=labelled["volume"][1:], minlength=ids.size).astype(np.int64)
    cut = np.bincount(index, weights=labelled["cut"][1:], minlength=ids.size) > 0
    speck = volume < min_voxels
    speck_of_label = np.zeros(root.size, dtype=bool)
    speck_of_label[1:] = speck[index]
    coords = labelled["small_coords"][speck_of_label[labelled["small_ids"]]]
    keep = ~speck
    # Provisional label -> index of its kept component (-1: background or speck).
    kept_index = np.where(keep, np.cumsum(keep) - 1, -1)
    kept_of_label = np.concatenate([[-1], kept_index[index]])
    first = None
    if labelled.get("first") is not None:
        first = np.full(ids.size, np.iinfo(np.int64).max, dtype=np.int64)
        np.minimum.at(first, index, labelled["first"][1:])
        first = first[keep]
    return {"volume": volume[keep], "cut": cut[keep], "n_specks": int(speck.sum()), "speck_coords": coords,
            "extra": labelled["extra"], "kept_of_label": kept_of_label, "offsets": labelled["offsets"],
            "first": first}


def dice_by_size_chunked(method: dict[str, Any], truth: dict[str, Any], overlaps: list[np.ndarray]) -> np.ndarray:
    """Dice of the pore phase per truth size stratum from merged labels and per-block overlaps.

    Equal to :func:`aiax_bench.evaluation.segmentation.dice_by_size` on the
    whole volume's labels.

    Parameters
    ----------
    method, truth : dict
        Merged labels of each phase (``volume``, ``kept_of_label``, ``offsets``; ``first`` for the truth).
    overlaps : list of numpy.ndarray
        Per block, rows ``(method label, truth label, voxels)`` of the block's local labels.
    """
    strata, _ = size_strata(truth["volume"])
    rows = []
    for block, pairs in enumerate(overlaps):
        if pairs.size:
            p = method["kept_of_label"][pairs[:, 0] + method["offsets"][block]]
            t = truth["kept_of_label"][pairs[:, 1] + truth["offsets"][block]]
            rows.append(np.stack([p, t, pairs[:, 2]], axis=1))
    pairs = np.concatenate(rows) if rows else np.zeros((0, 3), np.int64)
    pairs = pairs[(pairs[:, 0] >= 0) & (pairs[:, 1] >= 0)]  # specks are no pores on either side
    n_truth = truth["volume"].size
    keys, inverse = np.unique(pairs[:, 0] * n_truth + pairs[:, 1], return_inverse=True)
    p, t = keys // max(n_truth, 1), keys % max(n_truth, 1)
    count = np.bincount(inverse, weights=pairs[:, 2], minlength=keys.size).astype(np.int64)
    # Per method pore the truth pore of the largest overlap, ties to the first in raster order.
    rank = np.argsort(np.argsort(truth["first"], kind="stable"), kind="stable")
    order = np.lexsort((rank[t], -count, p))
    lead = order[np.r_[True, p[order][1:] != p[order][:-1]]] if order.size else order
    pred_stratum = np.full(method["volume"].size, -1, dtype=np.int64)
    pred_stratum[p[lead]] = strata[t[lead]]
    out = np.full(len(SIZE_STRATA), np.nan)
    for s in range(len(SIZE_STRATA)):
        t_size = truth["volume"][strata == s].sum()
        p_size = method["volume"][pred_stratum == s].sum()
        inter = count[(pred_stratum[p] == s) & (strata[t] == s)].sum()
        if t_size + p_size:
            out[s] = 2 * inter / (t_size + p_size)
    return out


def _crofton_block(clean_grown: np.ndarray, mask_grown: np.ndarray | None, core: Region, grown: Region
                   ) -> np.ndarray:
    """Transition counts of the pairs whose first voxel lies in ``core`` (second anywhere in ``grown``)."""
    local = _local(core, grown)
    counts = np.zeros(len(pz.CROFTON_DIRECTIONS), dtype=np.int64)
    size = clean_grown.shape
    for i, step in enumerate(pz.CROFTON_DIRECTIONS):
        a, b = [], []
        for s, n, d in zip(local, size, step, strict=True):
            start, stop = max(s.start, -d), min(s.stop, n - d)  # first voxel in core, second inside the read
            a.append(slice(start, stop))
            b.append(slice(start + d, stop + d))
        a, b = tuple(a), tuple(b)
        change = clean_grown[a] ^ clean_grown[b]
        if mask_grown is not None:
            change &= mask_grown[a]
            change &= mask_grown[b]
        counts[i] = np.count_nonzero(change)
    return counts


def _image_pass(prediction, targets: dict[str, Any], mask: _MaskSource, *, data_range: float, slab: int,
                budget: int, workers: int, progress: bool) -> dict[str, dict[str, float]]:
    """MSE, PSNR, 3D and slice-wise SSIM of the prediction against each target, slab by slab.

    Each z-slab (with its y-band, when planes are large) is read once with a
    5-voxel halo and scored by the in-memory kernel
    (:func:`aiax_bench.evaluation.metrics.ssim_sums` over cache-sized sub-slabs,
    in threads): valid-mode filtering makes the slab's sums exactly its share.
    """
    halo = metrics._pad()
    shape = tuple(prediction.shape)
    names = list(targets)
    # Rows per y-band so that one array's slab with halo stays within the budget (bytes).
    rows = max(2 * halo + 1, int(budget // ((slab + 2 * halo) * shape[2] * 4)) - 2 * halo)
    z_sizes, y_sizes = _axis_chunks(shape[0], slab), _axis_chunks(shape[1], rows)
    regions = [(slice(z0, z0 + nz), slice(y0, y0 + ny), slice(0, shape[2]))
               for z0, nz in zip(np.cumsum((0, *z_sizes[:-1])), z_sizes, strict=True)
               for y0, ny in zip(np.cumsum((0, *y_sizes[:-1])), y_sizes, strict=True)]
    fused = int(np.prod(shape)) >= metrics.FUSED_MIN_VOXELS  # by the volume, as in memory
    acc = {n: {"sse": 0.0, "n": 0, "s3": 0.0, "c3": 0, "zs": np.zeros(shape[0]),
               "zc": np.zeros(shape[0], dtype=np.int64)} for n in names}
    for core in _progress(regions, len(regions), "image metrics", progress):
        core = tuple(slice(int(s.start), int(s.stop)) for s in core)
        read = _grow(core, halo, shape)
        x = _read(prediction, read)
        bad = ~np.isfinite(x)
        if bad.any():
            first = tuple(int(v) for v in np.argwhere(bad)[0] + [r.start for r in read])
            raise InputError("prediction", f"has NaN or infinite voxel(s), first at (z, y, x) = {first}",
                             "expected finite values everywhere")
        del bad
        inner = _local(core, read)
        m_read = mask.read(read)
        m_core = None if m_read is None else m_read[inner]
        m_plane = None if m_read is None else m_read[inner[0]]
        for name in names:
            y = _read(targets[name], read)
            a = acc[name]
            sse, n = metrics._sq_error_sums(x[inner], y[inner], m_core)
            a["sse"] += sse
            a["n"] += n
            s3, c3 = metrics._slab_sums(x, y, data_range=data_range, mask=m_read, slices=False, workers=workers,
                                        fused=fused)
            a["s3"] += float(s3)
            a["c3"] += int(c3)
            s2, c2 = metrics._slab_sums(x[inner[0]], y[inner[0]], data_range=data_range, mask=m_plane, slices=True,
                                        workers=workers, fused=fused)
            a["zs"][core[0]] += s2
            a["zc"][core[0]] += c2
            del y
    out = {}
    for name, a in acc.items():
        keep = a["zc"] > 0
        mse = a["sse"] / a["n"]
        out[name] = {"mse": mse, "psnr": float("inf") if mse == 0 else float(10 * np.log10(data_range**2 / mse)),
                     "ssim": a["s3"] / a["c3"] if a["c3"] else float("nan"),
                     "ssim_slices": float(np.mean(a["zs"][keep] / a["zc"][keep])) if keep.any() else float("nan")}
    return out


@dataclass
class _Job:
    """The opened volumes and block layout one chunked evaluation works on."""

    prediction: Any
    reference: Any
    truth: Any
    truth_labels: Any
    clean: Any
    shape: tuple[int, ...]
    chunks: tuple[int, ...]
    blocks: list[Region]
    masks: _MaskSource
    data_range: float
    voxel_mm: float
    workers: int
    progress: bool


def _open_job(prediction: Any, reference: Any, *, truth: Any, truth_labels: Any, clean: Any, mask: Any,
              mask_erosion: int,
              data_range: float, voxel_size_um: float, chunks: int | tuple[int, ...] | None, workers: int | None,
              progress: bool) -> _Job:
    """Stage 1: open and check every input (one line per problem) and lay out the blocks."""
    prediction = open_volume(prediction, "prediction")
    reference = open_volume(reference, "reference")
    shape = tuple(prediction.shape)
    if len(shape) != 3:
        raise InputError("prediction", f"has shape {shape}", "expected a 3D volume (z, y, x)")
    if not np.issubdtype(np.dtype(prediction.dtype), np.floating):
        raise InputError("prediction", f"has dtype {prediction.dtype}", "expected a floating-point volume in 1/cm")
    opened = {"truth": None, "truth_labels": None, "clean": None}
    for name, vol in (("reference", reference), ("truth", truth), ("truth_labels", truth_labels), ("clean", clean)):
        if vol is None:
            continue
        vol = open_volume(vol, name)
        if tuple(vol.shape) != shape:
            raise InputError(name, f"has shape {tuple(vol.shape)}", f"expected {shape} like the prediction")
        opened[name] = vol
    data_range = check_positive("data_range", data_range, "intensity units")
    voxel_mm = check_positive("voxel_size_um", voxel_size_um, "µm") / 1000
    if chunks is None:
        chunks = tuple(getattr(prediction, "chunks", None) or (DEFAULT_CHUNK,) * 3)
    chunks = (int(chunks),) * 3 if np.isscalar(chunks) else tuple(int(c) for c in chunks)
    if min(chunks) < 2 * metrics._pad() + 1:
        raise InputError("chunks", f"is {chunks}", f"expected blocks of at least {2 * metrics._pad() + 1} voxels")
    return _Job(prediction=prediction, reference=reference, truth=opened["truth"],
                truth_labels=opened["truth_labels"], clean=opened["clean"], shape=shape, chunks=chunks,
                blocks=_blocks(shape, chunks),
                masks=_MaskSource(mask, shape, mask_erosion), data_range=data_range, voxel_mm=voxel_mm,
                workers=metrics.default_workers() if workers is None else max(1, int(workers)), progress=progress)


def _image_scores(job: _Job, slab_bytes: int) -> dict[str, float]:
    """Stage 2: MSE, PSNR and SSIM against the reference (and the truth, the clean reconstruction), slab by slab."""
    targets = {"reference": job.reference}
    for name in ("truth", "clean"):
        if getattr(job, name) is not None:
            targets[name] = getattr(job, name)
    images = _image_pass(job.prediction, targets, job.masks, data_range=job.data_range, slab=job.chunks[0],
                         budget=slab_bytes, workers=job.workers, progress=job.progress)
    return {f"{key}/{name}": float(value) for name, values in images.items() for key, value in values.items()}


def _protocol_threshold(job: _Job, threshold: float | None) -> tuple[str, float]:
    """Stage 3: the segmentation threshold, fixed (protocol 2.0) or Otsu of the reference inside the mask."""
    if threshold is not None:
        return pz.SEGMENTATION_PROTOCOL, float(threshold)

    def histogram(region: Region) -> np.ndarray:
        return pz.intensity_histogram(_read(job.reference, region), data_range=job.data_range,
                                      mask=job.masks.read(region))[0]
    # The fixed-bin histogram of the reference, summed over blocks.
    counts = sum(_ordered(histogram, job.blocks, job.workers))
    edges = pz.intensity_histogram(np.zeros(1), data_range=job.data_range)[1]
    return pz.LEGACY_PROTOCOL, float(pz.otsu_from_histogram(counts, edges))


def _rim_of(job: _Job) -> Callable[[Region], np.ndarray]:
    """Voxels of a block on the volume's faces or next to the outside of the mask (pores there are cut)."""
    shape = job.shape

    def rim(region: Region) -> np.ndarray:
        grown = _grow(region, 1, shape)
        m = job.masks.read(grown)
        edge = np.zeros(tuple(s.stop - s.start for s in region), dtype=bool)
        for axis, (s, n) in enumerate(zip(region, shape, strict=True)):
            index = [slice(None)] * 3
            if s.start == 0:
                index[axis] = 0
                edge[tuple(index)] = True
            if s.stop == n:
                index[axis] = -1
                edge[tuple(index)] = True
        if m is not None:
            near_outside = m & ndimage.binary_dilation(~m, ndimage.generate_binary_structure(3, 1))
            edge |= near_outside[_local(region, grown)]
        return edge
    return rim


def _phase_sources(job: _Job, threshold: float, *, pore_index: int,
                   truth_by_threshold: bool) -> dict[str, Callable[[Region], np.ndarray]]:
    """Stage 4: the pore phase of method, reference (and truth) of any block."""
    masks = job.masks
    phases: dict[str, Callable[[Region], np.ndarray]] = {
        "method": lambda r: pz.segment_pores(_read(job.prediction, r), threshold=threshold, mask=masks.read(r)),
        "reference": lambda r: pz.segment_pores(_read(job.reference, r), threshold=threshold, mask=masks.read(r)),
    }
    if job.truth_labels is None:
        return phases
    if truth_by_threshold and job.truth is None:
        raise InputError("truth", "is missing", "the truth's attenuation, to segment it with the threshold "
                         "(truth_by_threshold)")
    truth_src = job.truth if truth_by_threshold else None

    def truth_phase(r: Region) -> np.ndarray:
        m = masks.read(r)
        if truth_src is not None:
            return pz.segment_pores(_read(truth_src, r), threshold=threshold, mask=m)
        p = _read(job.truth_labels, r) == pore_index
        return p if m is None else p & m
    phases["truth"] = truth_phase
    return phases


#: Voxels of one block with its halo that blockwise local thickness may hold (bool, radius, distance:
#: about 7 bytes each); a larger halo (a pore too big for blocks) leaves local thickness out.
THICKNESS_BLOCK_VOXELS = 64 * 2**20


def _ball_radius_bound(largest_pore_voxels: int) -> int:
    """An upper bound of any inscribed ball's radius (voxels) in a pore of this many voxels.

    An open ball of radius ``R`` about a voxel holds every voxel whose unit cube
    meets the ball of radius ``R - √3/2``, hence at least that ball's volume in voxels.
    """
    return int(np.cbrt(3 * largest_pore_voxels / (4 * np.pi)) + np.sqrt(3) / 2) + 1


def thickness_histogram_chunked(phase: BitVolume, blocks: list[Region], *, largest_pore_voxels: int,
                                workers: int) -> np.ndarray | None:
    """Pore voxels per local-thickness radius, block by block: the in-memory histogram exactly.

    Each block is read with a halo of twice the largest possible ball radius
    (:func:`_ball_radius_bound`) and one layer of background beyond every face
    inside the volume. The block's distances are then never above the whole
    volume's, and exact for every ball centre within that radius of the
    block's core; so the block's local thickness equals the volume's on the
    core (:func:`aiax_bench.evaluation.porosity.local_thickness`). None when
    the halo would make a block larger than :data:`THICKNESS_BLOCK_VOXELS`.
    """
    shape = phase.shape
    halo = 2 * _ball_radius_bound(largest_pore_voxels) + 2
    sizes = [min(n, (s.stop - s.start) + 2 * halo) for s, n in zip(blocks[0], shape, strict=True)]
    if int(np.prod(sizes)) > THICKNESS_BLOCK_VOXELS:
        return None

    def one(core: Region) -> np.ndarray:
        grown = _grow(core, halo, shape)
        inner = tuple((0 if g.start == 0 else 1, 0 if g.stop == n else 1) for g, n in zip(grown, shape, strict=True))
        block = np.pad(phase.get(grown), inner, constant_values=False)  # background beyond inner faces
        radius = pz.local_thickness(block, workers=1)
        local = _local(core, grown)
        at = tuple(slice(sl.start + pad[0], sl.stop + pad[0]) for sl, pad in zip(local, inner, strict=True))
        pores = block[at]
        return np.bincount(radius[at][pores], minlength=1).astype(np.int64)

    hist = np.zeros(1, dtype=np.int64)
    for part in _ordered(one, blocks, workers):
        if part.size > hist.size:
            hist = np.pad(hist, (0, part.size - hist.size))
        hist[:part.size] += part
    hist[0] = 0
    return hist


def _phase_statistics(job: _Job, segment: Callable[[Region], np.ndarray], rim: Callable[[Region], np.ndarray], *,
                      roi_voxels: int, min_voxels: int, extra: Callable | None, thickness: bool,
                      first_voxels: bool = False) -> tuple[pz.PoreStatistics, list[Any], dict[str, Any]]:
    """Stage 5: label one phase across blocks, merge, measure.

    Returns the statistics, the per-block results of ``extra`` and the merged labels.
    """
    kept = BitVolume(job.shape)
    labelled = label_chunked(segment, job.shape, chunks=job.chunks, rim=rim, small=min_voxels, workers=job.workers,
                             progress=job.progress, extra=extra, store=kept, first_voxels=first_voxels)
    merged = _merge(labelled, min_voxels)
    del labelled
    extras = merged.pop("extra")
    kept.clear(merged["speck_coords"])  # the phase as measured: specks back to solid
    shape = job.shape

    def crofton(slab: Region) -> np.ndarray:
        # Every direction steps +1 or 0 in z: one extra slice completes the pairs of a slab.
        grown = (slice(slab[0].start, min(slab[0].stop + 1, shape[0])), *slab[1:])
        return _crofton_block(kept.get(grown), job.masks.read(grown), slab, grown)
    slabs = [(slice(z, min(z + 16, shape[0])), slice(0, shape[1]), slice(0, shape[2])) for z in range(0, shape[0], 16)]
    surface_counts = sum(_ordered(crofton, slabs, job.workers))
    cut = merged["cut"]
    hist = None
    if thickness:
        largest = int(merged["volume"].max()) if merged["volume"].size else 0
        hist = thickness_histogram_chunked(kept, job.blocks, largest_pore_voxels=largest, workers=job.workers)
    stats = pz.PoreStatistics(
        voxel_size_mm=job.voxel_mm, roi_voxels=roi_voxels, pore_voxels=int(merged["volume"].sum()),
        n_interior=int((~cut).sum()), n_border=int(cut.sum()), n_specks=merged["n_specks"],
        surface_voxel2=pz.surface_from_counts(surface_counts), volumes_voxels=merged["volume"][~cut],
        thickness_histogram=hist)
    labels = {k: merged[k] for k in ("volume", "kept_of_label", "offsets", "first")}
    return stats, extras, labels


def evaluate_chunked(prediction: Any, reference: Any, *, data_range: float, voxel_size_um: float,
                     mask: Any = None, mask_erosion: int = 0, truth: Any = None, truth_labels: Any = None,
                     clean: Any = None, pore_index: int = 2, threshold: float | None = None,
                     truth_by_threshold: bool = False, chunks: int | tuple[int, ...] | None = None,
                     min_voxels: int = pz.MIN_PORE_VOXELS, workers: int | None = None,
                     slab_bytes: int = 256 * 2**20, complete: bool = False,
                     progress: bool = False) -> dict[str, Any]:
    """Evaluate a prediction against a reference block by block (volumes that do not fit in memory).

    The numbers equal the in-memory :class:`~aiax_bench.evaluation.Evaluator`'s.
    By default the record leaves out local thickness, Dice by pore size and
    the reference's own errors against the truth (the chunked record of
    evaluator 3.0 is frozen without them); ``complete`` adds them, which gives
    the in-memory record's keys.

    Parameters
    ----------
    prediction, reference : zarr array, numpy array or path
        Volumes (z, y, x) in 1/cm. A memory-mapped ``.npy`` (``numpy.load(..., mmap_mode="r")``) is
        copied block by block and its pages dropped after each, so it never stays resident.
    data_range : float
        The dataset's fixed intensity range (1/cm).
    voxel_size_um : float
        Voxel edge (µm).
    mask : zarr array, numpy array or path, optional
        Sample mask; eroded in-plane by ``mask_erosion`` voxels on the fly.
    truth : optional
        Exact attenuation, for the image metrics against the truth.
    truth_labels : optional
        Exact labels, for the truth's porosity and the Jaccard / Dice of the pore phase.
    clean : optional
        Reconstruction of noise-free projections, one more target of the image metrics.
    pore_index : int
        Label of the pore phase in ``truth_labels``.
    threshold : float, optional
        The protocol's threshold (protocol 2.0: fixed by the recipe); Otsu of the reference's
        histogram inside the mask by default (protocol 1.0).
    truth_by_threshold : bool
        Segment the truth's attenuation with ``threshold`` like the method (protocol 2.0)
        instead of taking ``truth_labels == pore_index`` (1.0); needs ``truth``.
    chunks : int or tuple of int, optional
        Block shape; the prediction's zarr chunks, else 128³, by default.
    min_voxels : int
        Speck floor (voxels).
    workers : int, optional
        Threads; every core (at most 8) by default.
    slab_bytes : int
        Largest slab (with its halo) of one volume held for the image metrics, in bytes; planes
        larger than that are cut into y-bands.
    complete : bool
        Also local thickness of every phase (exact, block by block; left out
        when one pore is too large for blocks), Dice by pore size and the
        reference's errors against the truth (``floor_rel_error_truth``).
    progress : bool
        Show progress bars.

    Returns
    -------
    dict
        A flat record (``metric/target`` keys).
    """
    job = _open_job(prediction, reference, truth=truth, truth_labels=truth_labels, clean=clean, mask=mask,
                    mask_erosion=mask_erosion, data_range=data_range, voxel_size_um=voxel_size_um, chunks=chunks,
                    workers=workers, progress=progress)
    record: dict[str, Any] = _image_scores(job, slab_bytes)
    protocol, threshold = _protocol_threshold(job, threshold)
    record["segmentation_protocol"] = protocol
    record["segmentation_threshold"] = threshold
    phases = _phase_sources(job, threshold, pore_index=pore_index, truth_by_threshold=truth_by_threshold)
    rim = _rim_of(job)
    masks = job.masks
    roi_voxels = sum(_ordered(lambda r: (int(masks.read(r).sum()) if masks.mask is not None
                                         else int(np.prod([s.stop - s.start for s in r]))), job.blocks, job.workers))
    has_truth = "truth" in phases
    by_size = complete and has_truth

    def against_truth(region: Region, phase: np.ndarray, method_labels: np.ndarray
                      ) -> tuple[np.ndarray, np.ndarray | None]:
        # Counted while the method's phase is labelled: one pass over the blocks.
        truth_phase = phases["truth"](region)
        key = truth_phase.astype(np.int64) * 2 + phase
        m = masks.read(region)
        confusion = np.bincount(key[m] if m is not None else key.ravel(), minlength=4).reshape(2, 2)
        return confusion, (_label_overlaps(method_labels, truth_phase) if by_size else None)

    stats: dict[str, pz.PoreStatistics] = {}
    labels: dict[str, dict[str, Any]] = {}
    overlaps: list[tuple[np.ndarray, np.ndarray | None]] = []
    for who, segment in phases.items():
        extra = against_truth if who == "method" and has_truth else None
        stats[who], extras, labels[who] = _phase_statistics(
            job, segment, rim, roi_voxels=roi_voxels, min_voxels=min_voxels, extra=extra, thickness=complete,
            first_voxels=by_size and who == "truth")
        if extra is not None:
            overlaps = extras
    # The record assembly the in-memory Evaluator uses too.
    targets = [t for t in ("reference", "truth") if t in stats]
    record.update(pz.porosity_record(stats, targets=targets, floor=complete and has_truth))
    if has_truth:
        j, d = scores_from_confusion(sum(confusion for confusion, _ in overlaps))
        record.update(class_scores_record(j, d, ("solid", "pore"), (0, 1)))
    if by_size:
        dice = dice_by_size_chunked(labels["method"], labels["truth"], [pairs for _, pairs in overlaps])
        record.update({f"dice_{name}/pore": float(value) for name, value in zip(SIZE_STRATA, dice, strict=True)})
    return record


def _label_overlaps(method_labels: np.ndarray, truth_phase: np.ndarray) -> np.ndarray:
    """Rows ``(method label, truth label, voxels)`` of one block's overlapping local labels.

    The labels are the ones :func:`label_chunked` gives the same block, so
    each block's offsets turn them into provisional ids afterwards.
    """
    truth_labels, n_truth = pz.label_pores(truth_phase, connectivity=pz.PORE_CONNECTIVITY)
    both = (method_labels > 0) & (truth_labels > 0)
    key = method_labels[both].astype(np.int64) * (n_truth + 1) + truth_labels[both]
    pairs, count = np.unique(key, return_counts=True)
    return np.stack([pairs // (n_truth + 1), pairs % (n_truth + 1), count], axis=1)
