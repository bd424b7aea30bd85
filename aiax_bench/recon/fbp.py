"""Filtered back-projection for parallel-beam and fan-beam sinograms.

On CPUs the filter is applied by FFT with scipy's pocketfft, which does each
detector row's transform on one thread with code that is the same on every
x86-64 CPU: the filtered sinogram is the same bytes whatever the number of
threads or the CPU. A BLAS matrix product (MKL, OpenBLAS) would pick its
kernel, and with it the rounding, from the CPU it runs on.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft
import torch

from aiax_bench.errors import InputError
from aiax_bench.recon.fan import FanBeamProjector
from aiax_bench.recon.projector import ParallelBeamProjector, _positive_int

__all__ = ["BACKPROJECTORS", "FILTERS", "backproject_fourier", "backproject_pixel_driven", "fbp", "filter_sinogram"]

#: How FBP back-projects: ``auto`` is the stored operator where it fits in memory, else the Fourier one
#: (``pixel`` where the detector is finer than the voxels).
BACKPROJECTORS = ("auto", "matrix", "pixel", "fourier")


def _ram_lak_response(n_fft: int) -> np.ndarray:
    """Frequency response (float64, ``n_fft // 2 + 1`` values) of the spatially sampled ramp.

    Sampling the ramp in space rather than |f| in frequency avoids the DC
    offset that makes naive FBP reconstructions drift (Kak & Slaney, eq. 61).
    """
    n = np.arange(n_fft)
    n = np.where(n <= n_fft // 2, n, n - n_fft)
    h = np.zeros(n_fft)
    h[0] = 0.25
    odd = n % 2 == 1
    h[odd] = -1.0 / (math.pi * n[odd]) ** 2
    return scipy.fft.rfft(h).real


def _shepp_logan(freq: torch.Tensor) -> torch.Tensor:
    x = math.pi * freq
    safe = torch.where(x == 0, torch.ones_like(x), x)
    return torch.where(x == 0, torch.ones_like(x), torch.sin(safe) / safe)


def _hann(freq: torch.Tensor) -> torch.Tensor:
    return 0.5 + 0.5 * torch.cos(2 * math.pi * freq)


def _cosine(freq: torch.Tensor) -> torch.Tensor:
    return torch.cos(math.pi * freq)


#: Apodisation windows by name, as functions of frequency in cycles per pixel (0 .. 0.5).
FILTERS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "ramp": torch.ones_like,
    "shepp-logan": _shepp_logan,
    "cosine": _cosine,
    "hann": _hann,
}


#: Widest detector filtered by a direct matrix product rather than by FFT on a GPU.
_DIRECT_MAX_WIDTH = 512


def _response(n_fft: int, filter: str, cutoff: float = 1.0) -> np.ndarray:
    """The filter's frequency response, float64, computed on the CPU whatever the data's device.

    The window is stretched to end at ``cutoff`` times the Nyquist frequency and
    is zero above it (the usual FBP cutoff, as in astra-toolbox and TomoPy).
    """
    freq = torch.fft.rfftfreq(n_fft, dtype=torch.float64)
    window = FILTERS[filter](freq / cutoff).numpy()
    window[freq.numpy() > 0.5 * cutoff] = 0.0
    return _ram_lak_response(n_fft) * window


def _check_cutoff(cutoff: float) -> float:
    if isinstance(cutoff, bool) or not isinstance(cutoff, int | float) or not 0 < cutoff <= 1:
        raise InputError("cutoff", f"is {cutoff!r}", "expected a fraction of the Nyquist frequency in (0, 1]")
    return float(cutoff)


def _filter_cpu(sinogram: torch.Tensor, response: np.ndarray, n_fft: int) -> torch.Tensor:
    d = sinogram.shape[-1]
    data = sinogram.detach().to(torch.float32).contiguous().numpy()
    # Any number of workers gives the same bytes: each row's transform runs on one thread.
    workers = max(1, torch.get_num_threads())
    spectrum = scipy.fft.rfft(data, n=n_fft, axis=-1, workers=workers)
    # Real times complex as two real products on the interleaved parts: no complex multiply,
    # whose form (and the sign of a zero) may vary with the CPU's vector code.
    spectrum.view(np.float32)[...] *= np.repeat(response.astype(np.float32), 2)
    out = scipy.fft.irfft(spectrum, n=n_fft, axis=-1, workers=workers, overwrite_x=True)
    return torch.from_numpy(out[..., :d])  # a strided view: the back projection copies it anyway


def _filter_torch(sinogram: torch.Tensor, response: np.ndarray, n_fft: int) -> torch.Tensor:
    d = sinogram.shape[-1]
    if d <= _DIRECT_MAX_WIDTH:
        # The same (zero-padded or circular) convolution as a D x D matrix product: on a GPU
        # one GEMM beats two FFTs of twice the length.
        kernel = torch.from_numpy(scipy.fft.irfft(response, n=n_fft)).to(sinogram.device)
        idx = torch.arange(d, device=sinogram.device)
        matrix = kernel[(idx[None, :] - idx[:, None]) % n_fft].to(torch.float32)
        return sinogram.to(torch.float32) @ matrix
    spectrum = torch.fft.rfft(sinogram.to(torch.float32), n=n_fft, dim=-1)
    gain = torch.from_numpy(response).to(device=sinogram.device, dtype=torch.float32)
    return torch.fft.irfft(spectrum * gain, n=n_fft, dim=-1)[..., :d]


def filter_sinogram(sinogram: torch.Tensor, *, filter: str = "ramp", padding: bool = True,
                    cutoff: float = 1.0) -> torch.Tensor:
    """Apply the FBP filter along the detector axis (last axis).

    Parameters
    ----------
    sinogram : torch.Tensor
        Sinograms ``(..., A, D)`` of line integrals (dimensionless).
    filter : {'ramp', 'shepp-logan', 'cosine', 'hann'}
        Apodisation window multiplying the ramp.
    padding : bool
        Zero-pad the detector to the next power of two of at least ``2 D``, which
        removes the wrap-around of the circular convolution.
    cutoff : float
        Highest frequency passed, as a fraction of the Nyquist frequency (0, 1];
        the window is stretched to end there.

    Returns
    -------
    torch.Tensor
        Filtered sinograms, float32, same shape and device. The ramp is the
        spatially sampled one, scaled for unit detector pixels; the projector's
        back projection accounts for other spacings.

    Notes
    -----
    On CPUs (for a tensor that does not require gradients) the result is the
    same bytes whatever the number of threads and the x86-64 CPU, see the
    module's notes. On a GPU, or to keep gradients, torch filters it (a matrix
    product up to 512 detector pixels, else FFTs), equal to float32 rounding.
    """
    if filter not in FILTERS:
        raise InputError("filter", f"is {filter!r}", f"expected one of {sorted(FILTERS)}")
    cutoff = _check_cutoff(cutoff)
    d = sinogram.shape[-1]
    n_fft = 2 ** math.ceil(math.log2(2 * d)) if padding else d
    response = _response(n_fft, filter, cutoff)
    if sinogram.device.type == "cpu" and not sinogram.requires_grad:
        return _filter_cpu(sinogram, response, n_fft)
    return _filter_torch(sinogram, response, n_fft)


def backproject_pixel_driven(filtered: torch.Tensor, angles: np.ndarray, n_pixels: int, *,
                             det_spacing: float = 1.0) -> torch.Tensor:
    """The projector's back projection of ``(B, A, D)`` sinograms onto ``(B, N, N)``, without its matrix.

    Joseph's model, transposed: at angle ``theta`` pixel ``(x, y)`` takes
    detector value ``t`` with the weight ``max(0, 1 - |t - u| / c) / c``,
    ``u = x cos(theta) + y sin(theta)`` and ``c = max(|cos|, |sin|)`` (the
    interpolation along the ray's dominant axis, times its step length). It is
    the transpose of :class:`~aiax_bench.recon.ParallelBeamProjector`'s matrix
    up to float32 rounding, computed pixel by pixel. FBP uses it where that
    matrix is too large to keep (a 2048-pixel detector at 1,500 angles would
    take about 200 GB) instead of rebuilding the matrix at every call. Angles
    are summed in order with elementwise operations only: the same bytes
    whatever the number of threads.
    """
    b, a, d = filtered.shape
    device = filtered.device
    coords = torch.arange(n_pixels, dtype=torch.float64, device=device) - (n_pixels - 1) / 2
    # Slices innermost: every gathered detector value is a contiguous run of B numbers.
    columns = filtered.permute(1, 2, 0).reshape(a * d, b).contiguous()
    flat = columns[:, 0] if b == 1 else None
    out = torch.zeros((n_pixels * n_pixels, b), dtype=torch.float32, device=device)
    for k, theta in enumerate(np.asarray(angles, dtype=np.float64)):
        cos, sin = math.cos(theta), math.sin(theta)
        c = max(abs(cos), abs(sin))
        half = c / det_spacing  # the kernel's half-width in detector pixels
        u = ((coords[None, :] * cos + coords[:, None] * sin) / det_spacing + (d - 1) / 2).reshape(-1)
        first = torch.floor(u - half).to(torch.int64) + 1
        offset = (first - u).to(torch.float32)  # index - u of the first tap
        # The taps strictly inside (u - half, u + half): at most ceil(2 half) detector pixels.
        for m in range(math.ceil(2 * half)):
            index = first + m
            weight = torch.clamp_(1 - torch.abs(offset + m) / half, min=0).mul_(((index >= 0) & (index < d)) / c)
            index = index.clamp_(0, d - 1).add_(k * d)
            if flat is not None:
                out[:, 0].addcmul_(flat.take(index), weight)
            else:
                out.addcmul_(columns.index_select(0, index), weight[:, None])
    return out.T.reshape(b, n_pixels, n_pixels)


#: Polar points per non-uniform FFT of the Fourier back projection (bounds one call's memory). More
#: angles than this are split into groups whose images are added in a fixed order: a rule of the
#: geometry, not of the thread count, so the bytes do not depend on the machine. Each group pays a
#: full FFT of the oversampled grid, so groups are few: 2048 pixels × 2048 angles is one.
FOURIER_POINTS_PER_GROUP = 1 << 23


def backproject_fourier(filtered: torch.Tensor, angles: np.ndarray, n_pixels: int, *, det_spacing: float = 1.0,
                        eps: float = 1e-6, workers: int | None = None) -> torch.Tensor:
    """Back-project ``(B, A, D)`` filtered sinograms onto ``(B, N, N)`` through a non-uniform FFT.

    Each filtered row is a trigonometric polynomial in the detector
    coordinate (zero-padded to twice its width, so nothing wraps around); its
    back projection is then one type-1 non-uniform FFT from the polar points
    ``k (cos, sin) / (2 D s)`` to the pixel grid (FINUFFT, tolerance ``eps``).
    The cost is ``O(A D + N² log N)`` instead of ``O(A N²)``. It interpolates
    each row band-limited, where the projector's transpose interpolates
    linearly (Joseph's model): the two differ by that interpolation, about 1 %
    of the image's range, mostly at edges (``tests/test_recon.py``).

    Each FINUFFT call runs on one thread (its own threads add in a varying
    order); ``workers`` threads (every core by default) run the calls for
    groups of slices and of angles (:data:`FOURIER_POINTS_PER_GROUP`) side by
    side. The bytes are the same whatever the number of threads.
    """
    import finufft

    if not det_spacing >= 1:
        raise InputError("det_spacing", f"is {det_spacing}", "at least 1 voxel for the Fourier back projection")
    b, a, d = filtered.shape
    padded = 2 * d  # the rows' periodic extension must not wrap onto the image
    # Real rows have Hermitian spectra: the terms of -k are the conjugates of those of k, so the real
    # image needs k >= 0 only, the others counted twice (half the polar points of the full spectrum).
    spectrum = np.fft.rfft(filtered.detach().cpu().numpy().astype(np.float64), n=padded, axis=-1)
    k = np.arange(padded // 2 + 1, dtype=np.float64)
    twice = np.full(k.size, 2.0)
    twice[[0, -1]] = 1.0  # the mean and the Nyquist term have no partner
    omega = 2 * np.pi * k / (padded * det_spacing)  # radians per voxel
    angles = np.asarray(angles, dtype=np.float64)
    x = (omega[None, :] * np.cos(angles)[:, None]).ravel()
    y = (omega[None, :] * np.sin(angles)[:, None]).ravel()
    # Detector pixel d sits at t = (d - (D-1)/2) s, pixel column j at x = j - (N-1)/2 = m + (N//2 - (N-1)/2).
    shift = n_pixels // 2 - (n_pixels - 1) / 2
    phase = np.exp(2j * np.pi * k * (d - 1) / (2 * padded))[None, :] * np.exp(1j * shift * (x + y)).reshape(a, -1)
    strengths = (spectrum * (phase * (twice / padded))[None]).reshape(b, a, -1)
    groups = np.linspace(0, a, -(-a * k.size // FOURIER_POINTS_PER_GROUP) + 1).astype(int)
    points = [(x.reshape(a, -1)[g0:g1].ravel(), y.reshape(a, -1)[g0:g1].ravel())
              for g0, g1 in itertools.pairwise(groups)]
    workers = max(1, int(workers or os.cpu_count() or 1))
    # Slices in as many groups as threads could use (a slice's result does not depend on its group).
    slice_groups = np.array_split(np.arange(b), min(b, max(1, workers // len(points))))

    def one(job: tuple[int, np.ndarray]) -> np.ndarray:
        g, slices = job
        px, py = points[g]
        values = np.ascontiguousarray(strengths[slices, groups[g]:groups[g + 1]].reshape(slices.size, -1))
        return finufft.nufft2d1(px, py, values, n_modes=(n_pixels, n_pixels), isign=1, eps=eps, nthreads=1)

    jobs = [(g, slices) for slices in slice_groups for g in range(len(points))]
    if workers == 1 or len(jobs) == 1:
        parts = [one(job) for job in jobs]
    else:
        with ThreadPoolExecutor(max_workers=min(workers, len(jobs))) as pool:
            parts = list(pool.map(one, jobs))
    image = np.empty((b, n_pixels, n_pixels), dtype=np.complex128)
    for i, slices in enumerate(slice_groups):
        part = parts[i * len(points):(i + 1) * len(points)]
        total = part[0].reshape(slices.size, n_pixels, n_pixels)
        for extra in part[1:]:  # angle groups added in their order
            total = total + extra.reshape(slices.size, n_pixels, n_pixels)
        image[slices] = total
    image = np.real(image).transpose(0, 2, 1)  # FINUFFT's first mode axis is x
    return torch.as_tensor(np.ascontiguousarray(image, dtype=np.float32), device=filtered.device)


def fbp(
    sinogram,
    angles=None,
    *,
    projector: ParallelBeamProjector | FanBeamProjector | None = None,
    filter: str = "ramp",
    cutoff: float = 1.0,
    padding: bool = True,
    n_pixels: int | None = None,
    batch: int = 32,
    backprojector: str = "auto",
):
    """Filtered back-projection of a stack of parallel-beam or fan-beam sinograms.

    Parameters
    ----------
    sinogram : array_like
        Line integrals ``(A, D)`` for one slice or ``(Z, A, D)`` for a stack
        (detector row ``z`` becomes slice ``z``).
    angles : array_like, optional
        Projection angles in radians, evenly covering 180 (or 360) degrees; not
        needed when ``projector`` is given.
    projector : ParallelBeamProjector or FanBeamProjector, optional
        Reuse an operator (it is the expensive part to build); a fan-beam one
        gives fan-beam FBP (pre-weighted rows, distance-weighted back
        projection pixel by pixel, see :meth:`FanBeamProjector.fbp_backproject`).
    filter : str
        Apodisation window, see :data:`FILTERS`.
    cutoff : float
        Highest frequency passed, as a fraction of the Nyquist frequency (0, 1].
    padding : bool
        Zero-pad the detector before filtering.
    n_pixels : int, optional
        Reconstructed slice size in voxels; defaults to the detector width.
    batch : int
        Slices filtered and back-projected together (bounds memory).
    backprojector : {'auto', 'matrix', 'pixel', 'fourier'}
        The projector's stored matrix (rebuilt block by block at every call
        where it does not fit in memory), the same matrix's transpose computed
        pixel by pixel, or a non-uniform FFT (:func:`backproject_fourier`).
        ``auto``: the matrix where it fits, else the Fourier one (pixel by pixel
        for detectors finer than the voxels). Fan beam: ``auto`` or ``pixel``.
        Without ``projector``, the one built keeps the transposed matrix only
        (what fits is judged by that), built at its first use.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        Attenuation per voxel (1/voxel) with shape ``(N, N)`` or ``(Z, N, N)``;
        numpy for numpy input, else a tensor on the input's device.

    Raises
    ------
    InputError
        For an unknown filter, a sinogram whose shape does not match the angles
        or the projector, or a non-positive ``batch`` or ``n_pixels``; checked
        before the projector is built.
    """
    # Every check runs before the projector is built: that is the expensive part.
    if filter not in FILTERS:
        raise InputError("filter", f"is {filter!r}", f"expected one of {sorted(FILTERS)}")
    if backprojector not in BACKPROJECTORS:
        raise InputError("backprojector", f"is {backprojector!r}", f"one of {list(BACKPROJECTORS)}")
    cutoff = _check_cutoff(cutoff)
    batch = _positive_int(batch, "batch", "slices per batch")
    as_numpy = not isinstance(sinogram, torch.Tensor)
    data = torch.as_tensor(np.asarray(sinogram) if as_numpy else sinogram, dtype=torch.float32)
    if data.ndim not in (2, 3):
        raise InputError("sinogram", f"has shape {tuple(data.shape)}",
                         "expected (A, D) or (Z, A, D) for A angles and D detector pixels")
    if projector is None:
        if angles is None:
            raise InputError("angles", "are missing", "pass angles (radians) or a projector")
        n_angles = np.size(angles)
        if n_angles != data.shape[-2]:
            raise InputError("sinogram", f"has shape {tuple(data.shape)} but {n_angles} angles were given",
                             "expected one sinogram row per angle: (A, D) or (Z, A, D)")
        if n_pixels is not None:
            n_pixels = _positive_int(n_pixels, "n_pixels", "slice size in voxels")
        # FBP only back-projects: the transposed matrix alone (half the build and memory, the same bytes),
        # built at first use, so a Fourier or pixel-driven back projection never builds it.
        projector = ParallelBeamProjector(n_pixels or data.shape[-1], angles, n_detector=data.shape[-1],
                                          matrices="backward", lazy=True)
    a, d = projector.angles.size, projector.n_detector
    if tuple(data.shape[-2:]) != (a, d):
        raise InputError("sinogram", f"has shape {tuple(data.shape)}",
                         f"expected ({a}, {d}) or (Z, {a}, {d}) for {a} angles and {d} detector pixels")
    fan = isinstance(projector, FanBeamProjector)
    if fan and backprojector not in ("auto", "pixel"):
        raise InputError("backprojector", f"is {backprojector!r} with a fan-beam projector",
                         "use 'auto' or 'pixel': fan-beam FBP weights each pixel by its distance to the source")
    stack = data[None] if data.ndim == 2 else data
    n = projector.n_pixels
    out = torch.empty((stack.shape[0], n, n), dtype=torch.float32, device=data.device)
    # Half a turn of angles integrates every line once: the FBP integral's d(theta).
    scale = math.pi / a
    # An operator too large to keep would be rebuilt for every batch: back-project without it instead.
    how = backprojector
    if how == "auto":
        how = "matrix" if projector.stored else ("fourier" if projector.det_spacing >= 1 else "pixel")
    for start in range(0, stack.shape[0], batch):
        chunk = stack[start : start + batch].to(projector.device)
        if fan:
            weighted = chunk * projector.fbp_preweights().to(chunk.device)
            filtered = filter_sinogram(weighted, filter=filter, padding=padding, cutoff=cutoff)
            out[start : start + batch] = projector.fbp_backproject(filtered).to(out.device)
            continue
        filtered = filter_sinogram(chunk, filter=filter, padding=padding, cutoff=cutoff)
        if how == "matrix":
            back = projector.backward(filtered)
        elif how == "pixel":
            back = backproject_pixel_driven(filtered, projector.angles, n, det_spacing=projector.det_spacing)
        else:
            back = backproject_fourier(filtered, projector.angles, n, det_spacing=projector.det_spacing)
        out[start : start + batch] = back.mul_(scale).to(out.device)
    out = out[0] if data.ndim == 2 else out
    return out.numpy() if as_numpy else out
