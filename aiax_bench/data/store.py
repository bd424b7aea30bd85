"""The on-disk dataset store: one zarr v3 group per dataset version and profile.

Layout::

    <name>/<version>/<profile>.zarr/
        attrs: name, version, profile, recipe_sha256, store_format, fingerprint, content_sha256
        samples/<part>-<k>/                 attrs: part, seed, voxel_size_um, phantom params,
                                                   sha256 (one per array, checked on first read)
            truth      float32 (Z, Y, X)    exact attenuation (1/cm), partial volume
            labels     uint8   (Z, Y, X)    exact phase labels
            mask       bool    (Z, Y, X)    sample region used for metrics
            high       float32 (Z, Y, X)    reference reconstruction (all angles, reference dose)
            clean      float32 (Z, Y, X)    FBP of the noise-free reference projections (version 2 on)
            sinogram   float32 (Z, A, D)    reference projections (line integrals)
            angles     float64 (A,)         reference angles (radians)
            splits/<split>/low       float32 (Z, Y, X)
            splits/<split>/sinogram  float32 (Z, a, D)
            splits/<split>/angles    float64 (a,)

A frame-stack dataset (recipe ``source: frames``) holds other arrays per
sample (``labels``, ``direct_beam``, ``splits/<split>/low`` and ``dark``; see
:mod:`aiax_bench.data.frames`), written slab by slab (:class:`SlabArray`).

A store is written under a temporary name and renamed into place only when
complete, so a failed or interrupted build never leaves a half-written store.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.errors import StoreError

__all__ = [
    "STORE_FORMAT",
    "SampleWriter",
    "SlabArray",
    "SlabDigest",
    "array_fingerprint",
    "array_sha256",
    "atomic_store",
    "content_digest",
    "digest_of_hashes",
    "open_group",
    "read_verified",
    "store_path",
    "stream_sha256_and_fingerprint",
    "verify_array",
    "write_array",
    "write_sample",
]

#: 1: fingerprints only; 2: a sha256 per array in each sample's attributes.
STORE_FORMAT = 2
#: Formats this version still reads.
READABLE_FORMATS = (1, 2)
CHUNK = 64


def store_path(root: Path, name: str, version: str, profile: str) -> Path:
    """Where the store of ``name@version`` at ``profile`` lives under the cache ``root``."""
    return root / name / version / f"{profile}.zarr"


def compressor():
    """The codec of every array a store or a streamed output writes: Blosc's lz4 on bit-shuffled chunks.

    Noisy float volumes compress by 1.2-1.3x whatever the codec; zstd at level 5 saves a few percent more
    disk than lz4 and takes 1.75x as long to write (``benchmarks/codec.json``). The codec is not part
    of a store's content sha256, which hashes the arrays' bytes.
    """
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="lz4", clevel=5, shuffle="bitshuffle")


def _layout(shape: tuple[int, ...]) -> dict[str, Any]:
    """The chunks, compressor and write options of every stored array of ``shape``.

    Every chunk is written, empty or not: zarr's default compares each chunk with the fill value before
    writing it, a pass over all the data for the few chunks of zeros outside a sample
    (``benchmarks/codec-every-chunk.json`` times both), and a store with every chunk on disk has none missing by design.
    """
    return {"chunks": tuple(min(CHUNK, s) for s in shape), "compressors": compressor(),
            "config": {"write_empty_chunks": True}}


def write_array(group, path: str, data: np.ndarray) -> None:
    """Write ``data`` as a chunked, compressed zarr array at ``path`` in ``group``."""
    data = np.ascontiguousarray(data)
    group.create_array(path, data=data, **_layout(data.shape))


#: Bytes of an array a :class:`SampleWriter` hashes and fingerprints at a time: its one float64 temporary
#: is a slab's, where the whole array's would be 1 GiB at 512³ (``tests/test_integrity.py`` bounds it).
WRITE_SLAB_BYTES = 16 * 2**20


class SampleWriter:
    """Writes one sample's arrays under ``samples/<sample_id>`` as they are made, then its attributes.

    Each array is written, hashed and fingerprinted (slab by slab, :func:`stream_sha256_and_fingerprint`)
    when added, so the caller can drop it at once: a build holds the arrays one split needs, not the
    whole sample (at 512³ each volume is 512 MiB and a sample has 30). The
    store-wide ``hashes`` (for :func:`digest_of_hashes`) and ``fingerprint``
    gain ``<sample_id>/<array>`` entries; :meth:`finish` writes the sample's
    attributes with a sha256 per array, in the order the arrays were added.
    """

    def __init__(self, root, sample_id: str, *, hashes: dict[str, str],
                 fingerprint: dict[str, dict[str, float]]) -> None:
        self.group = root.create_group(f"samples/{sample_id}")
        self.sample_id, self.hashes, self.fingerprint = sample_id, hashes, fingerprint
        self.sha256: dict[str, str] = {}

    def add(self, name: str, data: np.ndarray) -> None:
        write_array(self.group, name, data)
        # Slab by slab: the whole array's float64 copy would be 1 GiB at 512³, a large build's peak.
        self._record(name, *stream_sha256_and_fingerprint(np.asarray(data), slab_bytes=WRITE_SLAB_BYTES))

    def slab_array(self, name: str, shape: tuple[int, ...], dtype: np.dtype | type) -> SlabArray:
        """An array larger than memory, written from its consecutive slabs along axis 0 (see :class:`SlabArray`).

        Use it as a context manager: on a clean exit it must be complete, and its sha256 and
        fingerprint join the sample's like :meth:`add`'s.
        """
        return SlabArray(self, name, shape, dtype)

    def _record(self, name: str, sha256: str, fingerprint: dict[str, float]) -> None:
        self.sha256[name] = sha256
        self.hashes[f"{self.sample_id}/{name}"] = sha256
        self.fingerprint[f"{self.sample_id}/{name}"] = fingerprint

    def finish(self, attrs: dict[str, Any]) -> None:
        self.group.attrs.update({"sha256": dict(self.sha256), **attrs})


class SlabArray:
    """One array of a :class:`SampleWriter`'s sample, written slab by slab along axis 0 and hashed as it goes.

    Its sha256 is :func:`array_sha256`'s of the whole (the same bytes in the same order); its
    fingerprint agrees with :func:`array_fingerprint`'s to about 1e-12 relative.

    Parameters
    ----------
    writer : SampleWriter
        The sample it belongs to.
    name : str
        Its path in the sample's group.
    shape : tuple of int
        Shape of the whole array.
    dtype : numpy.dtype
        Its dtype; every slab must have it.
    """

    def __init__(self, writer: SampleWriter, name: str, shape: tuple[int, ...], dtype: np.dtype | type) -> None:
        self.writer, self.name = writer, name
        self.shape, self.dtype = tuple(int(n) for n in shape), np.dtype(dtype)
        self.array = writer.group.create_array(name, shape=self.shape, dtype=self.dtype, **_layout(self.shape))
        self.digest = SlabDigest(self.shape, self.dtype)
        self.rows = 0

    def append(self, slab: np.ndarray) -> None:
        """Write the next rows, ``(n, *shape[1:])``."""
        if slab.dtype != self.dtype or slab.shape[1:] != self.shape[1:] or self.rows + slab.shape[0] > self.shape[0]:
            raise StoreError(f"samples/{self.writer.sample_id}/{self.name}",
                             f"got a slab {slab.dtype} {slab.shape} at row {self.rows}",
                             f"slabs of {self.dtype} {self.shape[1:]} covering {self.shape[0]} rows")
        self.array[self.rows:self.rows + slab.shape[0]] = slab
        self.digest.update(slab)
        self.rows += slab.shape[0]

    def __enter__(self) -> SlabArray:
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            return False
        if self.rows != self.shape[0]:
            raise StoreError(f"samples/{self.writer.sample_id}/{self.name}", f"got {self.rows} of {self.shape[0]} "
                             "rows", "slabs covering the whole array")
        self.writer._record(self.name, *self.digest.result())
        return False


def write_sample(root, sample_id: str, arrays: dict[str, np.ndarray], attrs: dict[str, Any], *,
                 hashes: dict[str, str], fingerprint: dict[str, dict[str, float]]) -> None:
    """Write one sample's arrays, already in memory, with :class:`SampleWriter`."""
    writer = SampleWriter(root, sample_id, hashes=hashes, fingerprint=fingerprint)
    for name, data in arrays.items():
        writer.add(name, data)
    writer.finish(attrs)


def array_fingerprint(data: np.ndarray) -> dict[str, float]:
    """Summary statistics that identify an array up to floating-point noise.

    The values are NumPy's ``mean``, ``std``, ``min`` and ``max`` of the array
    in float64, bit for bit, from one float64 copy (``std`` would make a second).
    A build's :class:`SampleWriter` takes them slab by slab instead (:class:`SlabDigest`).
    """
    data = np.asarray(data)
    low, high = float(data.min()), float(data.max())  # exact in float64 whatever the input's float type
    values = np.array(data, dtype=np.float64)  # a copy of our own, squared in place below
    mean = np.add.reduce(values, axis=None) / values.size  # ndarray.mean's own sum and division
    # ndarray.std's steps (deviations, squared, summed, divided, square root), in the same buffer.
    np.subtract(values, mean, out=values)
    np.multiply(values, values, out=values)
    std = np.sqrt(np.add.reduce(values, axis=None) / values.size)
    return {"mean": float(mean), "std": float(std), "min": low, "max": high}


def content_digest(arrays: dict[str, np.ndarray]) -> str:
    """sha256 over the arrays' names, shapes, dtypes and bytes, in name order (store format 1)."""
    digest = hashlib.sha256()
    for name in sorted(arrays):
        arr = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{arr.shape}:{arr.dtype.str}\n".encode())
        digest.update(_raw_bytes(arr))
    return digest.hexdigest()


def array_sha256(data: np.ndarray) -> str:
    """sha256 of an array's shape, dtype and C-order bytes: what a reader checks it against."""
    arr = np.ascontiguousarray(data)
    digest = hashlib.sha256(f"{arr.shape}:{arr.dtype.str}\n".encode())
    digest.update(_raw_bytes(arr))
    return digest.hexdigest()


def _raw_bytes(arr: np.ndarray) -> memoryview:
    """A C-contiguous array's bytes without a copy (``tobytes`` would copy the whole array)."""
    return memoryview(arr.reshape(-1).view(np.uint8))


class SlabDigest:
    """:func:`array_sha256` and :func:`array_fingerprint` of an array fed slab by slab along axis 0.

    The hash is the same bytes in the same order (C order is slab after slab),
    so it equals :func:`array_sha256` exactly. The statistics merge per-slab
    count, mean and sum of squared deviations (Chan et al.'s pairwise update)
    in float64: they agree with the whole-array ones to about 1e-12
    relative, within the 1e-9 every comparison of fingerprints allows.
    """

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.digest = hashlib.sha256(f"{tuple(int(n) for n in shape)}:{np.dtype(dtype).str}\n".encode())
        self.count, self.mean, self.m2, self.low, self.high = 0, 0.0, 0.0, np.inf, -np.inf

    def update(self, slab: np.ndarray) -> None:
        """Add the next rows of the array."""
        slab = np.ascontiguousarray(slab)
        self.digest.update(_raw_bytes(slab))
        if slab.size == 0:
            return
        values = slab.astype(np.float64)  # a copy of our own: the deviations are squared in it, in place
        n, slab_mean = values.size, float(values.mean())
        self.low, self.high = min(self.low, float(values.min())), max(self.high, float(values.max()))
        np.subtract(values, slab_mean, out=values)
        np.multiply(values, values, out=values)
        slab_m2 = float(values.sum())
        delta, total = slab_mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.m2 += slab_m2 + delta * delta * self.count * n / total
        self.count = total

    def result(self) -> tuple[str, dict[str, float]]:
        """The sha256 and the fingerprint of the rows added so far."""
        return self.digest.hexdigest(), {"mean": self.mean, "std": float(np.sqrt(self.m2 / self.count)),
                                         "min": self.low, "max": self.high}


def stream_sha256_and_fingerprint(array, *, slab_bytes: int = 64 * 2**20) -> tuple[str, dict[str, float]]:
    """:func:`array_sha256` and :func:`array_fingerprint` of a stored array, read slab by slab along axis 0.

    The hash equals :func:`array_sha256` exactly; the statistics agree with
    :func:`array_fingerprint` to about 1e-12 relative (see :class:`SlabDigest`).
    """
    shape, dtype = tuple(int(n) for n in array.shape), np.dtype(array.dtype)
    if not shape or shape[0] == 0:
        data = np.asarray(array[...])
        return array_sha256(data), array_fingerprint(data)
    per_row = max(1, int(np.prod(shape[1:])) * dtype.itemsize)
    step = max(1, slab_bytes // per_row)
    digest = SlabDigest(shape, dtype)
    for start in range(0, shape[0], step):
        digest.update(array[start:start + step])
    return digest.result()


#: Arrays already checked in this process: ``(store, array path, expected) -> True``.
_VERIFIED: set[tuple[str, str, str]] = set()


def read_verified(array, *, store: Path, path: str, sha256: str | None = None,
                  fingerprint: dict[str, float] | None = None) -> np.ndarray:
    """Read a stored array whole; the first read in a process checks it against its build-time hash.

    zarr reads a missing chunk as the fill value without a word, so a deleted,
    truncated or swapped chunk would otherwise be scored as data. The check
    uses the data just read (no second read); later reads trust it (stores are
    immutable once built, replaced only whole).

    Parameters
    ----------
    array : zarr.Array
        The stored array.
    store, path : Path, str
        Where it is (for the message and the cache key).
    sha256 : str, optional
        Expected :func:`array_sha256`; stores of format 1 only have ``fingerprint``.
    fingerprint : dict, optional
        Expected :func:`array_fingerprint` (compared to 1e-9, see below).

    Raises
    ------
    StoreError
        Naming the array and the store, when it cannot be read or differs.
    """
    try:
        data = np.asarray(array[...])
    except Exception as exc:  # damaged chunk: decompression or decoding error
        raise StoreError(store, f"array {path} cannot be read ({type(exc).__name__})", _VERIFY_FIX) from None
    key = _verify_key(store, path, sha256, fingerprint)
    if key is None or key in _VERIFIED:
        return data
    if sha256 is not None:
        ok = array_sha256(data) == sha256
    else:
        # A strided source and its contiguous copy may differ in the last bit of a sum.
        actual = array_fingerprint(data)
        ok = all(np.isclose(actual[k], v, rtol=1e-9, atol=0) for k, v in fingerprint.items())
    if not ok:
        raise StoreError(store, f"array {path} does not match its build-time "
                         f"{'sha256' if sha256 else 'fingerprint'} (missing, swapped or damaged chunk)", _VERIFY_FIX)
    _VERIFIED.add(key)
    return data


def verify_array(array, *, store: Path, path: str, sha256: str | None = None,
                 fingerprint: dict[str, float] | None = None) -> None:
    """:func:`read_verified` for an array handed out lazily: reads it only if not yet checked."""
    key = _verify_key(store, path, sha256, fingerprint)
    if key is not None and key not in _VERIFIED:
        read_verified(array, store=store, path=path, sha256=sha256, fingerprint=fingerprint)


_VERIFY_FIX = "run `aiax-bench datasets verify` on it, or rebuild it with `aiax-bench datasets build --force`"


def _verify_key(store: Path, path: str, sha256: str | None,
                fingerprint: dict[str, float] | None) -> tuple[str, str, str] | None:
    """Cache key of a check, or None when there is nothing to check against."""
    if sha256 is None and fingerprint is None:
        return None
    return (str(store), path, sha256 or repr(sorted(fingerprint.items())))


def digest_of_hashes(hashes: dict[str, str]) -> str:
    """Content sha256 of a store of format 2: over ``key:array_sha256`` lines in key order.

    Equal to hashing every array's bytes in a fixed order, but computable one
    sample at a time, so a build never holds more than one sample in memory.
    """
    digest = hashlib.sha256()
    for key in sorted(hashes):
        digest.update(f"{key}:{hashes[key]}\n".encode())
    return digest.hexdigest()


def stored_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder`` (a store, a sample, an array), as they lie on disk after compression."""
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def check_room_for_samples(building: Path, sample_id: str, others: int, *, target: Path) -> int:
    """After a build's first sample is written: raise if the disk cannot hold ``others`` more like it.

    A store's size is known once a sample of it is on disk (compression depends on the data), so a
    large profile (about 6 GB a sample at 512³) that cannot fit fails after one sample, not after
    hours, and :class:`atomic_store` removes what was written.

    Parameters
    ----------
    building : pathlib.Path
        The store being written (its temporary folder).
    sample_id : str
        The sample just written, under ``samples/``.
    others : int
        Samples still to be written.
    target : pathlib.Path
        Where the store goes, for the message.

    Returns
    -------
    int
        The sample's size on disk (bytes).
    """
    written = stored_bytes(building / "samples" / sample_id)
    free = shutil.disk_usage(building).free
    if written * others > free:
        raise StoreError(target, f"its {others} other samples need about {written * others / 1e9:.1f} GB "
                                 f"({written / 1e9:.2f} GB each, as {sample_id}) and its disk has "
                                 f"{free / 1e9:.1f} GB free",
                         "free that space, or point AIAX_BENCH_DATA to a larger disk")
    return written


class atomic_store:
    """Context manager yielding a temporary directory that becomes ``target`` on success.

    On any exception the temporary directory is removed and ``target`` is left
    untouched. If another process completed ``target`` meanwhile, its store wins.
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self.tmp = target.parent / f".{target.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> Path:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        return self.tmp

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return False
        if self.target.exists():
            # A replaced store is moved aside first so that readers never see a mix.
            old = self.target.parent / f".{self.target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(self.target, old)
            os.replace(self.tmp, self.target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.tmp, self.target)
        return False


def open_group(path: Path, *, expect: dict[str, Any], rebuild_hint: str):
    """Open a finished store read-only and check it is what ``expect`` says.

    Raises
    ------
    StoreError
        When the store is missing, unreadable, incomplete, or built from other inputs.
    """
    import zarr

    if not path.exists():
        raise StoreError(path, "store does not exist", rebuild_hint)
    try:
        group = zarr.open_group(str(path), mode="r")
        attrs = dict(group.attrs)
    except Exception as exc:  # zarr raises many types for damaged metadata
        raise StoreError(path, f"store is corrupted ({type(exc).__name__}: {exc})", rebuild_hint) from None
    if attrs.get("store_format") not in READABLE_FORMATS:
        raise StoreError(path, f"store format is {attrs.get('store_format')!r}, expected one of {READABLE_FORMATS}",
                         rebuild_hint)
    for key, value in expect.items():
        if attrs.get(key) != value:
            raise StoreError(path, f"store attribute {key} is {attrs.get(key)!r}, expected {value!r}",
                             rebuild_hint)
    return group
