"""Acquisition models: which projections are taken and what the detector records.

Everything here works on line integrals ``p = -log(I / I0)`` (dimensionless),
the currency of :func:`aiax_bench.sim.project_phantom`; where a physical
effect acts on intensity (averaging over a pixel or an exposure, gain, counting
noise) the functions convert to ``exp(-p)`` and back. :class:`Acquisition`
bundles one scan's settings and applies them in the detector's order:

1. continuous rotation: intensity averaged over sub-angles within each exposure;
2. binning: intensity averaged over ``b x b`` detector pixels (rows x columns);
3. gain: each recorded pixel has a gain error, constant over the scan, that the
   flat field does not know (ring artefacts);
4. counting: Poisson photon counts at ``photons`` incident per recorded pixel;
5. flat-field correction and log.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np

from aiax_bench.errors import InputError
from aiax_bench.validation import check_positive_int

__all__ = [
    "Acquisition",
    "angle_subset",
    "bin_detector",
    "continuous_rotation",
    "detector_gains",
    "exposure_angles",
    "poisson_noise",
    "poisson_noise_blocks",
    "reference_angles",
    "ring_artefacts",
    "scan",
]


def reference_angles(n_angles: int) -> np.ndarray:
    """Equally spaced angles over 180 degrees (radians), the reference scan."""
    if int(n_angles) < 1:
        raise InputError("n_angles", f"is {n_angles}", "expected at least one projection")
    return np.linspace(0.0, np.pi, int(n_angles), endpoint=False)


def angle_subset(n_reference: int, n_angles: int) -> np.ndarray:
    """Indices of ``n_angles`` projections spread evenly over the ``n_reference`` ones.

    A sparse scan is a subset of the reference scan (same exposure per
    projection), so it shares the reference's noise realisation.
    """
    if not 1 <= int(n_angles) <= int(n_reference):
        raise InputError("n_angles", f"is {n_angles}",
                         f"expected between 1 and the {n_reference} reference projections")
    idx = np.round(np.arange(n_angles) * (n_reference / n_angles)).astype(np.int64)
    return np.unique(np.minimum(idx, n_reference - 1))


def poisson_noise(line_integrals: np.ndarray, photons: float, *, rng: np.random.Generator) -> np.ndarray:
    """Counting noise of a transmission measurement, after flat-field and log.

    Parameters
    ----------
    line_integrals : numpy.ndarray
        Noise-free ``-log(I / I0)`` (dimensionless).
    photons : float
        Incident photons per detector pixel per projection (``I0``).
    rng : numpy.random.Generator
        Source of randomness (seed it for reproducible datasets).

    Returns
    -------
    numpy.ndarray
        ``-log(max(N, 1) / I0)`` with ``N ~ Poisson(I0 exp(-p))``, ``float32``.
        Zero counts are clipped to one photon, as detector software does.
    """
    if not np.isfinite(photons) or photons <= 0:
        raise InputError("photons", f"is {photons}", "expected a positive photon count per detector pixel")
    p = np.asarray(line_integrals)
    if p.ndim == 0:
        return poisson_noise(p[None], photons, rng=rng)[0]
    out = np.empty(p.shape, dtype=np.float32)
    # Slab by slab along the first axis: the generator draws in the same (C) order as over the whole
    # array, so the bytes are the same, and the float64 temporaries stay within a few hundred MB.
    rows = _rows_per_chunk(p)
    for z0 in range(0, p.shape[0], rows):
        counts = rng.poisson(photons * np.exp(-np.asarray(p[z0:z0 + rows], dtype=np.float64)))
        out[z0:z0 + rows] = -np.log(np.maximum(counts, 1) / photons)
    return out


#: Detector rows that share one noise stream in :func:`poisson_noise_blocks` (recipe ``acquisition.noise:
#: row-blocks``). Part of those recipes' bytes: never change it.
NOISE_BLOCK_ROWS = 8


def poisson_noise_blocks(line_integrals: np.ndarray, photons: float, *, key: tuple[int, ...],
                         threads: int | None = None, steps: int = 1, binning: int = 1) -> np.ndarray:
    """Counting noise as :func:`poisson_noise`, each block of detector rows from a stream of its own.

    Rows ``[8 b, 8 b + 8)`` (:data:`NOISE_BLOCK_ROWS`) are drawn from
    ``numpy.random.default_rng([*key, b])``, so blocks are independent of one
    another and may be drawn in any order: here in threads. The expected counts
    ``photons * exp(-p)`` and the log of the counts are computed with
    :mod:`aiax_bench.sim._ieee_math`, the same bits on every CPU. Neither the
    number of threads nor the machine changes a byte.

    Parameters
    ----------
    line_integrals : numpy.ndarray
        Noise-free ``-log(I / I0)`` (dimensionless), detector rows first.
    photons : float
        Incident photons per detector pixel per projection (``I0``).
    key : tuple of int
        The scan's stream key (e.g. the sample's seed and the hash of the split's name).
    threads : int, optional
        Blocks drawn at once; by default ``torch.get_num_threads()``.
    steps : int
        Projections of ``line_integrals`` averaged into one recorded exposure (continuous rotation: its
        sub-angles), consecutive along the angle axis.
    binning : int
        Detector pixels binned along each axis (rows and columns). ``photons`` is then per binned pixel.

    Returns
    -------
    numpy.ndarray
        ``float32`` ``-log(max(N, 1) / I0)`` with ``N ~ Poisson(I0 mean(exp(-p)))``, the mean over each
        recorded pixel's ``binning x steps x binning`` window (:func:`aiax_bench.sim._ieee_math.expected_counts`):
        shape ``(Z / binning, A / steps, D / binning)``. With ``steps = binning = 1`` it is the counting noise
        of ``line_integrals`` themselves.
    """
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from aiax_bench.sim._ieee_math import expected_counts, negative_log_ieee

    if not np.isfinite(photons) or photons <= 0:
        raise InputError("photons", f"is {photons}", "expected a positive photon count per detector pixel")
    steps = check_positive_int("steps", steps, "projections averaged into one exposure")
    binning = check_positive_int("binning", binning, "detector pixels per binned pixel and axis")
    p = np.asarray(line_integrals)
    if p.ndim == 0:
        raise InputError("line_integrals", "are a scalar", "expected detector rows first, (rows, ...)")
    if steps > 1 or binning > 1:
        if p.ndim != 3:
            raise InputError("line_integrals", f"have shape {p.shape}", "expected (rows, angles, columns)")
        if p.shape[1] % steps:
            raise InputError("steps", f"of {steps} does not divide the {p.shape[1]} projections",
                             "expected a divisor of the number of projections")
        if p.shape[0] % binning or p.shape[2] % binning:
            raise InputError("binning", f"of {binning} does not divide the detector ({p.shape[0]} rows x "
                             f"{p.shape[2]} columns)", "expected a common divisor of both")
        shape = (p.shape[0] // binning, p.shape[1] // steps, p.shape[2] // binning)
    else:
        shape = p.shape
    out = np.empty(shape, dtype=np.float32)
    photons = float(photons)
    window = p if p.ndim == 3 else p.reshape(p.shape[0], 1, -1)  # (rows, angles, columns) for the kernel

    def draw(block: int) -> None:
        rows = slice(block * NOISE_BLOCK_ROWS, (block + 1) * NOISE_BLOCK_ROWS)
        fine = np.ascontiguousarray(window[block * NOISE_BLOCK_ROWS * binning:
                                           (block + 1) * NOISE_BLOCK_ROWS * binning])
        lam = np.empty((fine.shape[0] // binning, fine.shape[1] // steps, fine.shape[2] // binning))
        expected_counts(fine, photons, steps, binning, lam)
        counts = np.random.default_rng([*key, block]).poisson(lam.reshape(out[rows].shape))
        negative_log_ieee(counts, photons, out[rows])

    blocks = range(-(-shape[0] // NOISE_BLOCK_ROWS))
    threads = max(1, min(torch.get_num_threads() if threads is None else int(threads), len(blocks)))
    if threads == 1:
        for block in blocks:
            draw(block)
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(draw, blocks))
    return out


#: Elements whose float64 temporaries the noise and intensity averages hold at once (256 MB each).
_CHUNK_ELEMENTS = 1 << 25


def _rows_per_chunk(array: np.ndarray, row_multiple: int = 1) -> int:
    per_row = max(1, math.prod(array.shape[1:])) * row_multiple
    return max(1, _CHUNK_ELEMENTS // per_row)


def _mean_intensity(line_integrals: np.ndarray, shape: tuple[int, ...], axes: tuple[int, ...]) -> np.ndarray:
    intensity = np.exp(-np.asarray(line_integrals, dtype=np.float64)).reshape(shape)
    return (-np.log(intensity.mean(axis=axes))).astype(np.float32)


def bin_detector(line_integrals: np.ndarray, factor: int) -> np.ndarray:
    """Bin the detector ``factor x factor`` (rows x columns), averaging intensity.

    Parameters
    ----------
    line_integrals : numpy.ndarray
        ``-log(I / I0)`` of shape ``(Z, A, D)`` (rows, angles, columns).
    factor : int
        Pixels binned along each detector axis; must divide ``Z`` and ``D``.

    Returns
    -------
    numpy.ndarray
        ``float32`` line integrals of shape ``(Z / factor, A, D / factor)``:
        the detector of a scan at ``factor`` times the pixel size. Its pixels
        see ``factor²`` times the photons of the fine ones (see :class:`Acquisition`).
    """
    factor = check_positive_int("binning", factor, "detector pixels per binned pixel and axis")
    p = np.asarray(line_integrals)
    if p.ndim != 3:
        raise InputError("line_integrals", f"have shape {p.shape}", "expected (rows, angles, columns)")
    z, a, d = p.shape
    if z % factor or d % factor:
        raise InputError("binning", f"of {factor} does not divide the detector ({z} rows x {d} columns)",
                         "expected a common divisor of both")
    if factor == 1:
        return p.astype(np.float32, copy=True)
    out = np.empty((z // factor, a, d // factor), dtype=np.float32)
    rows = _rows_per_chunk(p, factor)  # binned rows per slab
    for b0 in range(0, z // factor, rows):
        b1 = min(b0 + rows, z // factor)
        out[b0:b1] = _mean_intensity(p[b0 * factor:b1 * factor], (b1 - b0, factor, a, d // factor, factor), (1, 4))
    return out


def exposure_angles(angles, steps: int, *, arc: float | None = None) -> np.ndarray:
    """Sub-angles sampling each exposure of a continuously rotating scan.

    Parameters
    ----------
    angles : array_like
        Angle at the middle of each exposure (radians).
    steps : int
        Sub-angles per exposure.
    arc : float, optional
        Rotation during one exposure (radians); by default the step of an
        evenly spaced 180-degree scan, ``pi / len(angles)``. For a sparse scan
        taken as a subset of a reference scan, pass the reference's step.

    Returns
    -------
    numpy.ndarray
        ``len(angles) * steps`` angles (radians), exposure by exposure, each
        sub-angle at the middle of its share of the arc.
    """
    angles = np.asarray(angles, dtype=np.float64).ravel()
    if angles.size == 0:
        raise InputError("angles", "are empty", "expected at least one projection angle (radians)")
    steps = check_positive_int("steps", steps, "sub-angles per exposure")
    arc = math.pi / angles.size if arc is None else float(arc)
    if not (np.isfinite(arc) and arc >= 0):
        raise InputError("arc", f"is {arc}", "expected a non-negative rotation per exposure (radians)")
    offsets = ((np.arange(steps) + 0.5) / steps - 0.5) * arc
    return (angles[:, None] + offsets[None, :]).ravel()


def continuous_rotation(line_integrals: np.ndarray, steps: int) -> np.ndarray:
    """Angular blur of a continuously rotating scan.

    Parameters
    ----------
    line_integrals : numpy.ndarray
        ``-log(I / I0)`` of shape ``(..., A * steps, D)``, projected at the
        sub-angles of :func:`exposure_angles` (exposure by exposure).
    steps : int
        Sub-angles per exposure; must divide the number of projections.

    Returns
    -------
    numpy.ndarray
        ``float32`` line integrals of shape ``(..., A, D)``: each exposure
        averages the intensity of its sub-angles.
    """
    steps = check_positive_int("steps", steps, "sub-angles per exposure")
    p = np.asarray(line_integrals)
    if p.ndim < 2:
        raise InputError("line_integrals", f"have shape {p.shape}", "expected (..., angles, columns)")
    *lead, a, d = p.shape
    if a % steps:
        raise InputError("steps", f"of {steps} does not divide the {a} projections",
                         "expected projections at steps sub-angles per exposure")
    if steps == 1:
        return p.astype(np.float32, copy=True)
    if not lead:
        return _mean_intensity(p, (a // steps, steps, d), (1,))
    out = np.empty((*lead, a // steps, d), dtype=np.float32)
    rows = _rows_per_chunk(p)
    for z0 in range(0, lead[0], rows):
        part = p[z0:z0 + rows]
        out[z0:z0 + rows] = _mean_intensity(part, (*part.shape[:-2], a // steps, steps, d), (len(lead) + 1,))
    return out


def detector_gains(shape: tuple[int, ...], gain_sigma: float, *, rng: np.random.Generator) -> np.ndarray:
    """Per-pixel gain errors: log-normal with mean 1 and relative spread ``gain_sigma``."""
    if not (np.isfinite(gain_sigma) and 0 <= gain_sigma < 1):
        raise InputError("gain_sigma", f"is {gain_sigma}", "expected a relative gain error in [0, 1)")
    return np.exp(gain_sigma * rng.standard_normal(shape) - gain_sigma**2 / 2)


def ring_artefacts(line_integrals: np.ndarray, *, gain_sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Per-pixel gain errors that the flat field does not correct.

    Each detector pixel (row, column) gets a gain ``g``, log-normal with mean 1
    and relative spread ``gain_sigma``, constant over all projections: the
    recorded intensity is ``g I`` while the flat field still says ``I0``, as
    when the detector's response drifted after the flat field was taken. In
    the sinogram this is a constant offset ``-log g`` per column, in the
    reconstruction a ring.

    Parameters
    ----------
    line_integrals : numpy.ndarray
        ``-log(I / I0)`` of shape ``(Z, A, D)`` or ``(A, D)``.
    gain_sigma : float
        Relative standard deviation of the gains, e.g. 0.01 for 1%.
    rng : numpy.random.Generator
        Source of randomness.

    Returns
    -------
    numpy.ndarray
        ``float32`` line integrals ``p - log g``, same shape.
    """
    p = np.asarray(line_integrals)
    if p.ndim not in (2, 3):
        raise InputError("line_integrals", f"have shape {p.shape}", "expected (A, D) or (Z, A, D)")
    shape = (*p.shape[:-2], 1, p.shape[-1])
    gains = detector_gains(shape, gain_sigma, rng=rng)
    return (p - np.log(gains)).astype(np.float32)


@dataclass(frozen=True)
class Acquisition:
    """Settings of one simulated scan, checked when made.

    Parameters
    ----------
    n_angles : int
        Projections recorded, an even subset of the reference scan (:func:`angle_subset`).
    photons : float, optional
        Incident photons per recorded (binned) detector pixel per projection;
        ``None`` records noise-free data. To model binning a fixed exposure,
        multiply the unbinned count by ``binning²``.
    binning : int
        Detector pixels binned along each axis (rows and columns).
    continuous_steps : int
        Sub-angles per exposure for continuous rotation; 1 is step-and-shoot.
    ring_sigma : float
        Relative spread of the per-pixel gain errors (ring artefacts); 0 for none.
    n_reference : int, optional
        Projections of the reference scan that ``n_angles`` is a subset of;
        defaults to ``n_angles``. It also sets the exposure arc, ``pi / n_reference``:
        a sparse scan exposes each projection as long as the reference does.
    """

    n_angles: int
    photons: float | None = None
    binning: int = 1
    continuous_steps: int = 1
    ring_sigma: float = 0.0
    n_reference: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self, detector_shape: tuple[int, int] | None = None) -> Acquisition:
        """Check the settings, and the binning against a detector, raising :class:`InputError`.

        Parameters
        ----------
        detector_shape : tuple of int, optional
            Unbinned detector ``(rows, columns)``.

        Returns
        -------
        Acquisition
            Itself, for chaining.
        """
        n_angles = check_positive_int("n_angles", self.n_angles, "projections")
        n_ref = n_angles if self.n_reference is None else check_positive_int("n_reference", self.n_reference,
                                                                 "reference projections")
        if n_angles > n_ref:
            raise InputError("n_angles", f"is {n_angles}",
                             f"expected at most the {n_ref} projections of the reference scan")
        if self.photons is not None and not (isinstance(self.photons, numbers.Real)
                                             and np.isfinite(self.photons) and self.photons > 0):
            raise InputError("photons", f"is {self.photons!r}",
                             "expected a positive photon count per detector pixel, or None for no noise")
        b = check_positive_int("binning", self.binning, "detector pixels per binned pixel and axis")
        check_positive_int("continuous_steps", self.continuous_steps, "sub-angles per exposure")
        if not (isinstance(self.ring_sigma, numbers.Real) and 0 <= self.ring_sigma < 1):
            raise InputError("ring_sigma", f"is {self.ring_sigma!r}", "expected a relative gain error in [0, 1)")
        if detector_shape is not None:
            rows, cols = (int(v) for v in detector_shape)
            if rows % b or cols % b:
                raise InputError("binning", f"of {b} does not divide the detector ({rows} rows x {cols} columns)",
                                 "expected a common divisor of both")
        return self

    @property
    def reference(self) -> int:
        """Projections of the reference scan."""
        return int(self.n_angles if self.n_reference is None else self.n_reference)

    def angles(self) -> np.ndarray:
        """Angle at the middle of each recorded exposure (radians)."""
        return reference_angles(self.reference)[angle_subset(self.reference, self.n_angles)]

    def projection_angles(self) -> np.ndarray:
        """Angles to project at (radians): ``continuous_steps`` per exposure, exposure by exposure."""
        return exposure_angles(self.angles(), self.continuous_steps, arc=math.pi / self.reference)

    def output_shape(self, detector_shape: tuple[int, int]) -> tuple[int, int, int]:
        """Shape ``(rows, angles, columns)`` recorded from an unbinned ``(rows, columns)`` detector."""
        self.validate(detector_shape)
        b = int(self.binning)
        return (int(detector_shape[0]) // b, self.angles().size, int(detector_shape[1]) // b)

    def apply(self, line_integrals: np.ndarray, *, rng: np.random.Generator | None = None) -> np.ndarray:
        """Turn noise-free projections into what the detector records.

        Parameters
        ----------
        line_integrals : numpy.ndarray
            Noise-free ``-log(I / I0)`` at :meth:`projection_angles`, shape
            ``(Z, A * continuous_steps, D)`` with ``Z`` and ``D`` unbinned.
        rng : numpy.random.Generator, optional
            Source of randomness; needed when there is noise or rings. Gains are
            drawn before counts.

        Returns
        -------
        numpy.ndarray
            ``float32`` measured line integrals, shape :meth:`output_shape`.
        """
        p = np.asarray(line_integrals)
        if p.ndim != 3:
            raise InputError("line_integrals", f"have shape {p.shape}", "expected (rows, angles, columns)")
        expected = self.angles().size * int(self.continuous_steps)
        if p.shape[1] != expected:
            raise InputError("line_integrals", f"have {p.shape[1]} projections",
                             f"expected {expected} (n_angles x continuous_steps, see projection_angles())")
        self.validate((p.shape[0], p.shape[2]))
        noisy = self.photons is not None or self.ring_sigma > 0
        if noisy and rng is None:
            raise InputError("rng", "is missing", "pass a numpy.random.Generator for noise or rings")
        p = continuous_rotation(p, self.continuous_steps)
        p = bin_detector(p, self.binning)
        if self.ring_sigma > 0:
            p = ring_artefacts(p, gain_sigma=self.ring_sigma, rng=rng)
        if self.photons is not None:
            p = poisson_noise(p, self.photons, rng=rng)
        return p.astype(np.float32, copy=False)


def scan(phantom, acquisition: Acquisition, *, rng: np.random.Generator | None = None,
         progress=None, **project_options) -> tuple[np.ndarray, np.ndarray]:
    """Simulate a scan of a phantom: project it, then record it as ``acquisition`` says.

    Parameters
    ----------
    phantom : Phantom
        The sample.
    acquisition : Acquisition
        Scan settings; checked against the phantom's detector before projecting.
    rng : numpy.random.Generator, optional
        Source of randomness for noise and rings.
    progress : callable, optional
        Passed to :func:`aiax_bench.sim.project_phantom`.
    **project_options
        Other options of :func:`aiax_bench.sim.project_phantom`.

    Returns
    -------
    sinogram : numpy.ndarray
        ``float32`` measured line integrals ``(Z / b, A, D / b)``.
    angles : numpy.ndarray
        Angle of each projection (radians).
    """
    from aiax_bench.sim.project import project_phantom

    n_z, _, n_x = phantom.shape
    acquisition.validate((n_z, n_x))
    if (acquisition.photons is not None or acquisition.ring_sigma > 0) and rng is None:
        raise InputError("rng", "is missing", "pass a numpy.random.Generator for noise or rings")
    clean = project_phantom(phantom, acquisition.projection_angles(), progress=progress, **project_options)
    return acquisition.apply(clean, rng=rng), acquisition.angles()
