"""MKL's compatible code path for the vector maths that make published stores.

torch's CPU ``exp`` and ``log`` call MKL's vector maths library, whose
kernels follow the instruction set: on a CPU with AVX-512 some float64
results differ by an ulp from those of its SSE4.2 path, and where the
transmitted intensity of a grazing ray is close to 1 that ulp reaches the
stored float32 line integral. The published stores were made on a CPU where
MKL runs its compatible path, so that is the path every build asks for.

MKL fixes its mode at its first computation: :func:`use_compatible_mkl` only
takes effect before then (a fresh process, as ``aiax-bench datasets build``
is). The mode then holds for the whole process, MKL's matrix products
included, which run their SSE4.2 kernels (slower on newer CPUs).
"""

from __future__ import annotations

import ctypes
import functools
import os
import warnings

__all__ = ["compatible_mkl_active", "use_compatible_mkl"]

#: ``MKL_CBWR_COMPATIBLE`` and ``MKL_CBWR_ALL`` of ``mkl_service.h``.
_COMPATIBLE = 3
_ALL = ~0


@functools.cache
def _service() -> ctypes.CDLL | None:
    import torch

    if not torch.backends.mkl.is_available():
        return None
    try:  # MKL is linked into torch's CPU library (Linux x86-64 wheels)
        library = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libtorch_cpu.so"))
    except OSError:
        return None
    return library if hasattr(library, "mkl_serv_cbwr_set") else None


def compatible_mkl_active() -> bool:
    """Whether MKL runs its compatible code path in this process (False where torch has no MKL)."""
    service = _service()
    return service is not None and service.mkl_serv_cbwr_get(_ALL) == _COMPATIBLE


@functools.cache
def use_compatible_mkl() -> bool:
    """Put MKL on its compatible code path, once per process.

    Returns
    -------
    bool
        True when MKL now runs its compatible path, or when torch does not use
        MKL at all; False (with a ``RuntimeWarning``) when MKL had already
        computed in another mode, so that bytes made by its vector maths may
        follow this CPU.
    """
    service = _service()
    if service is None:
        return True
    if compatible_mkl_active() or service.mkl_serv_cbwr_set(_COMPATIBLE) == 0:
        return True
    warnings.warn("MKL computed before aiax-bench could select its compatible code path: simulated "
                  "projections may differ in the last bit from the published stores on this CPU; build "
                  "datasets in a fresh process (aiax-bench datasets build)", RuntimeWarning, stacklevel=3)
    return False
