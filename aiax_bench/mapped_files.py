"""Reading large files through memory maps without keeping them resident."""

from __future__ import annotations

import mmap
from typing import Any

__all__ = ["release_mapped_pages"]


def release_mapped_pages(array: Any) -> None:
    """Drop the pages a read-only memory-mapped array has read from this process's resident memory.

    A slab read from a memory-mapped file leaves its pages mapped: over a 25 GB scan the process's
    resident memory grows to whatever the page cache holds (16,968 MB measured at 2048² × 1,500,
    ``benchmarks/reconstruct-streamed-2048.json``), although nothing of it is needed again. The pages
    stay in the kernel's page cache (a later read finds them there); only this process's mapping of
    them is dropped, so calling this after each slab keeps a pass over the file within one slab.

    Parameters
    ----------
    array : array_like
        Any array. A read-only ``numpy.memmap``, or a view of one, is released; anything else (HDF5,
        zarr, an array in memory, a writable map) is left alone.
    """
    while array is not None:
        mapping = getattr(array, "_mmap", None)
        if mapping is not None:
            if getattr(array, "mode", None) == "r" and hasattr(mmap, "MADV_DONTNEED"):
                mapping.madvise(mmap.MADV_DONTNEED)
            return
        array = getattr(array, "base", None)
