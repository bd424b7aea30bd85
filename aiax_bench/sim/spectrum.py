"""Polychromatic lab micro-CT: X-ray tube spectra, attenuation over energy, and beam hardening.

A lab scanner's tube emits a continuous bremsstrahlung spectrum with the
characteristic lines of its anode. Low-energy photons are absorbed first, so
the beam leaving a thick part is "harder" than the one entering it, and the
measured line integral ``p = -log(I / I0)`` grows less than linearly with the
path length ``L`` (cm) through one material::

    p(L) = -log( sum_E w(E) exp(-mu(E) L) )

where ``w(E)`` are the detector-weighted, normalised spectral weights and
``mu(E)`` the linear attenuation coefficient (1/cm). Reconstructing such
projections as if they were monochromatic gives cupping in solid parts and
streaks between dense features, the beam-hardening artefacts of lab CT.

* :func:`tube_spectrum` computes a tungsten-anode spectrum with SpekPy
  (Poludniowski et al., Phys. Med. Biol. 66, 2021), filtered and rebinned.
* :func:`attenuation_coefficients` gives ``mu(E)`` of a material given by the
  mass fractions of its elements, from the Elam, Ravel and Sieber tables of
  ``xraydb`` (0.1 to 800 keV), which unlike the Henke tables of
  :mod:`aiax_bench.sim.materials` (up to 30 keV) cover a tube's energies.
* :func:`polychromatic_line_integrals` applies the equation above,
  :func:`effective_attenuation` gives its thin-sample slope, and
  :func:`linearise` inverts it: the classical beam-hardening correction of a
  single-material part.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

import numpy as np

from aiax_bench.errors import InputError
from aiax_bench.validation import check_positive

__all__ = [
    "TubeSpectrum",
    "absorbed_fraction",
    "attenuation_coefficients",
    "bending_magnet_spectrum",
    "effective_attenuation",
    "linearise",
    "polychromatic_line_integrals",
    "polychromatic_line_integrals_of_materials",
    "tube_spectrum",
]

Detector = Literal["energy-integrating", "photon-counting"]
_DETECTORS = ("energy-integrating", "photon-counting")

#: Tube voltages (kV) SpekPy's default (``casim``) model supports for a tungsten anode.
KVP_RANGE = (10.0, 500.0)
#: Energies (keV) over which the Elam tables of xraydb are reliable (xraydb warns outside).
ELAM_RANGE_KEV = (0.1, 800.0)

_DEFAULT_FILTERS: Mapping[str, float] = MappingProxyType({"Al": 1.0})
# SpekPy evaluates its model per bin of width dk: coarse bins shift the spectrum's mean energy, so it
# runs at most this fine and its bins are summed into the requested ones.
_SPEKPY_DK_KEV = 0.25
# Path lengths (or line integrals) handled per pass: each pass holds about five float64 arrays of this many
# elements (8 MiB each), whatever the number of energies, since the energies are looped over.
_CHUNK = 1 << 20
# Points of the table that linearise() interpolates on.
_TABLE_POINTS = 1 << 14


@dataclass(frozen=True, eq=False)
class TubeSpectrum:
    """Photons of an X-ray beam per energy bin.

    The arrays are copied to read-only float64 arrays on construction.
    Instances compare by identity (``eq=False``), as arrays have no single truth value.

    Attributes
    ----------
    energies_kev : numpy.ndarray
        Bin centres (keV), float64, 1D, positive and strictly increasing.
    fluence : numpy.ndarray
        Photons per bin (relative units; only ratios matter), float64, same
        shape as ``energies_kev``, non-negative and not all zero.
    """

    energies_kev: np.ndarray
    fluence: np.ndarray

    def __post_init__(self) -> None:
        energies = np.array(self.energies_kev, dtype=np.float64)
        fluence = np.array(self.fluence, dtype=np.float64)
        if energies.ndim != 1 or energies.size == 0:
            raise InputError("energies_kev", f"has shape {energies.shape}", "expected a non-empty 1D array (keV)")
        if not np.all(np.isfinite(energies)) or energies[0] <= 0 or np.any(np.diff(energies) <= 0):
            raise InputError("energies_kev", "are not positive and strictly increasing",
                             "expected bin centres in keV, in increasing order")
        if fluence.shape != energies.shape:
            raise InputError("fluence", f"has shape {fluence.shape}", f"expected {energies.shape} like energies_kev")
        if not np.all(np.isfinite(fluence)) or np.any(fluence < 0):
            raise InputError("fluence", "holds negative or non-finite values", "expected photons per bin >= 0")
        if not np.any(fluence > 0):
            raise InputError("fluence", "is zero in every bin", "expected photons in at least one bin")
        energies.flags.writeable = False
        fluence.flags.writeable = False
        object.__setattr__(self, "energies_kev", energies)
        object.__setattr__(self, "fluence", fluence)

    def weights(self, detector: Detector = "energy-integrating") -> np.ndarray:
        """Normalised weight of each bin in the detector signal (dimensionless, sum 1).

        Parameters
        ----------
        detector : {"energy-integrating", "photon-counting"}
            An energy-integrating detector (scintillator and flat panel or
            CCD, the usual lab-CT detector) records deposited energy, so it
            weighs each photon by its energy: ``w ∝ E N(E)``. A
            photon-counting detector weighs photons equally: ``w ∝ N(E)``.

        Returns
        -------
        numpy.ndarray
            float64 weights, shape of ``energies_kev``, summing to 1.
        """
        _check_detector(detector)
        raw = self.fluence * self.energies_kev if detector == "energy-integrating" else self.fluence
        return raw / raw.sum()

    @property
    def mean_energy_kev(self) -> float:
        """Mean photon energy (keV), weighted by fluence (photons, not energy)."""
        return float(np.sum(self.weights("photon-counting") * self.energies_kev))


def _check_detector(detector: Any) -> None:
    if detector not in _DETECTORS:
        raise InputError("detector", f"is {detector!r}", "expected 'energy-integrating' or 'photon-counting'")


def tube_spectrum(kvp: float, *, anode_angle_deg: float = 12.0, filters: Mapping[str, float] = _DEFAULT_FILTERS,
                  bin_kev: float = 1.0) -> TubeSpectrum:
    """Spectrum of a tungsten-anode (reflection target) X-ray tube, from SpekPy.

    Parameters
    ----------
    kvp : float
        Tube voltage (kV), hence the maximum photon energy (keV); 10 to 500 kV,
        the range of SpekPy's model for tungsten.
    anode_angle_deg : float
        Anode take-off angle (degrees), in (0, 90]; lab micro-CT tubes are
        typically 10 to 30 degrees.
    filters : mapping of str to float
        Added filtration, material -> thickness (mm), applied in order. A
        material is an element symbol (``"Al"``, ``"Cu"``, ``"Sn"``) or a
        SpekPy material name (``"Water, Liquid"``, ``"Air"``). The default,
        1 mm Al, is a common light filter of lab micro-CT. Empty for none (the
        spectrum then keeps the soft low-energy photons a real tube's window
        and the air would absorb).
    bin_kev : float
        Width of the returned energy bins (keV), at most ``kvp / 2``. Bins end
        at ``kvp`` and step down from it; SpekPy's finer bins (at most
        0.25 keV) nest in them exactly and are summed.

    Returns
    -------
    TubeSpectrum
        Bin centres (keV) and photons per bin (SpekPy's fluence at 1 m per
        mAs, photons/cm² per bin; relative use only), without the bins that
        hold no photons.

    Raises
    ------
    aiax_bench.errors.InputError
        If ``kvp``, ``anode_angle_deg`` or ``bin_kev`` is out of range, a
        filter thickness is negative, SpekPy does not know a filter material,
        or the filters absorb every photon.
    """
    kvp = check_positive("kvp", kvp, "kV")
    if not KVP_RANGE[0] <= kvp <= KVP_RANGE[1]:
        raise InputError("kvp", f"is {kvp!r}", f"expected a tube voltage from {KVP_RANGE[0]:g} to {KVP_RANGE[1]:g} kV "
                                               "(SpekPy's tungsten-anode model)")
    angle = check_positive("anode_angle_deg", anode_angle_deg, "degrees")
    if angle > 90.0:
        raise InputError("anode_angle_deg", f"is {anode_angle_deg!r}", "expected a take-off angle in (0, 90] degrees")
    bin_kev = check_positive("bin_kev", bin_kev, "keV")
    if bin_kev > kvp / 2:
        raise InputError("bin_kev", f"is {bin_kev!r}", f"expected at most kvp / 2 = {kvp / 2:g} keV")
    if not isinstance(filters, Mapping):
        raise InputError("filters", f"is a {type(filters).__name__}", "expected a mapping material -> thickness (mm)")
    for material, mm in filters.items():
        if not isinstance(material, str) or not material:
            raise InputError("filters", f"has material {material!r}", "expected a material name such as 'Al'")
        is_number = isinstance(mm, int | float | np.integer | np.floating) and not isinstance(mm, bool)
        if not is_number or not math.isfinite(mm) or mm < 0:
            raise InputError("filters", f"has {mm!r} mm of {material}", "expected a thickness >= 0 mm")

    centres, photons = _spekpy_bins(kvp, angle, tuple((m, float(mm)) for m, mm in filters.items()), bin_kev)
    return TubeSpectrum(energies_kev=centres, fluence=photons)


# A build asks for its tube's spectrum once per sample and material, and SpekPy integrates its model anew at
# every call: the same arguments give the same bins, so they are kept for the process.
@functools.lru_cache(maxsize=32)
def _spekpy_bins(kvp: float, angle: float, filters: tuple[tuple[str, float], ...],
                 bin_kev: float) -> tuple[np.ndarray, np.ndarray]:
    """Bin centres (keV, increasing) and photons per bin of :func:`tube_spectrum` (the cache's own arrays:
    :class:`TubeSpectrum` copies them)."""
    import spekpy  # imported here: it takes a second and only lab-CT simulations need it

    subdivisions = math.ceil(bin_kev / _SPEKPY_DK_KEV - 1e-9)
    spek = spekpy.Spek(kvp=kvp, th=angle, dk=bin_kev / subdivisions)
    for material, mm in filters:
        try:
            spek.filter(material, mm)
        except Exception as err:  # SpekPy raises a bare Exception for an unknown material
            raise InputError("filters", f"has material {material!r} that SpekPy cannot use ({err})",
                             "expected an element symbol such as 'Al' or 'Cu', or a SpekPy material name") from None
    fine_kev, fine_photons = spek.get_spectrum(diff=False)  # photons per fine bin, not per keV
    fine_kev = np.asarray(fine_kev, dtype=np.float64)
    fine_photons = np.asarray(fine_photons, dtype=np.float64)

    # SpekPy's bins step down from kvp, as ours do: the index from the top places each fine bin exactly.
    coarse = np.floor((kvp - fine_kev) / bin_kev).astype(np.int64)
    photons = np.bincount(coarse, weights=fine_photons)
    centres = kvp - (np.arange(photons.size) + 0.5) * bin_kev
    keep = (photons > 0) & (centres > 0)
    if not keep.any():
        raise InputError("filters", f"{dict(filters)} absorb every photon of the {kvp:g} kV spectrum",
                         "expected thinner filtration")
    return centres[keep][::-1], photons[keep][::-1]


def bending_magnet_spectrum(*, ring_energy_gev: float, field_t: float, energies_kev: Any,
                            filters: Mapping[str, float] = MappingProxyType({})) -> TubeSpectrum:
    """Photons per energy bin of a synchrotron bending magnet's white (pink after filters) beam.

    The flux per relative bandwidth of a bending magnet follows the universal
    function ``G1(y) = y * integral_y^inf K_5/3(x) dx`` of ``y = E / E_c``, with the
    critical energy ``E_c = 0.665 E_e² B`` (keV, electron energy ``E_e`` in GeV,
    field ``B`` in tesla); photons per keV are then ``G1(E / E_c) / E`` (up to a
    constant: the ring current and the horizontal acceptance scale every bin
    alike). Filters multiply each bin by ``exp(-mu(E) t)``.

    Parameters
    ----------
    ring_energy_gev : float
        Electron energy of the storage ring (GeV), e.g. 2.5 for KARA (KIT).
    field_t : float
        Bending magnet field (T), e.g. 1.5.
    energies_kev : array_like
        Bin centres (keV), 1D, evenly spaced and increasing (e.g. 8 to 30 keV in
        1 keV steps); 1 to 800 keV.
    filters : mapping of str to float
        Element symbol -> thickness (mm) of each filter in the beam (e.g.
        ``{"Al": 0.7}``), at the element's standard density; empty for none.

    Returns
    -------
    TubeSpectrum
        Bin centres and photons per bin (relative units).

    Raises
    ------
    aiax_bench.errors.InputError
        If a parameter is out of range, the energies are not evenly spaced, an
        element is unknown or the filters absorb every photon.
    """
    import scipy.integrate
    import scipy.special

    electron_gev = check_positive("ring_energy_gev", ring_energy_gev, "GeV")
    field = check_positive("field_t", field_t, "tesla")
    energies = np.asarray(energies_kev, dtype=np.float64)
    if energies.ndim != 1 or energies.size == 0 or not np.all(np.isfinite(energies)):
        raise InputError("energies_kev", f"has shape {energies.shape}", "expected a non-empty 1D array of keV")
    if energies[0] < 1.0 or energies[-1] > ELAM_RANGE_KEV[1]:
        raise InputError("energies_kev", f"span {energies[0]!r} to {energies[-1]!r} keV",
                         f"expected energies from 1 to {ELAM_RANGE_KEV[1]:g} keV")
    steps = np.diff(energies)
    if steps.size and (np.any(steps <= 0) or np.ptp(steps) > 1e-9 * energies[-1]):
        raise InputError("energies_kev", "are not evenly spaced and increasing",
                         "expected bin centres of equal width, e.g. 8 to 30 keV in 1 keV steps")
    critical_kev = 0.665 * electron_gev**2 * field
    g1 = np.array([y * scipy.integrate.quad(lambda x: scipy.special.kv(5.0 / 3.0, x), y, np.inf)[0]
                   for y in energies / critical_kev])
    fluence = g1 / energies
    if not isinstance(filters, Mapping):
        raise InputError("filters", f"is a {type(filters).__name__}", "expected a mapping element -> thickness (mm)")
    import xraydb  # imported here: only polychromatic simulations need it

    for element, mm in filters.items():
        is_number = isinstance(mm, int | float | np.integer | np.floating) and not isinstance(mm, bool)
        if not is_number or not math.isfinite(mm) or mm < 0:
            raise InputError("filters", f"has {mm!r} mm of {element!r}", "expected a thickness >= 0 mm")
        mu = attenuation_coefficients({element: 1.0}, xraydb.atomic_density(element), energies)
        fluence = fluence * np.exp(-mu * (float(mm) / 10.0))
    if not np.any(fluence > 0):
        raise InputError("filters", f"{dict(filters)} absorb every photon", "expected thinner filtration")
    return TubeSpectrum(energies_kev=energies, fluence=fluence)


def absorbed_fraction(composition: Mapping[str, float], density_g_cm3: float, thickness_um: float,
                      energies_kev: Any) -> np.ndarray:
    """Fraction of the photons of each energy a detector layer absorbs: ``1 - exp(-mu_photo t)``.

    Parameters
    ----------
    composition : mapping of str to float
        Element -> mass fraction of the layer (e.g. a scintillator, LSO:
        ``Lu2SiO5``), as :func:`attenuation_coefficients` takes it.
    density_g_cm3 : float
        Density of the layer (g/cm³), e.g. 7.4 for LSO.
    thickness_um : float
        Thickness (µm), e.g. 12.
    energies_kev : array_like
        Photon energies (keV).

    Returns
    -------
    numpy.ndarray
        float64 fractions in [0, 1], shape of ``energies_kev``: photoabsorption
        only, the interaction that deposits a photon's energy in place.
    """
    thickness = check_positive("thickness_um", thickness_um, "µm")
    mu = attenuation_coefficients(composition, density_g_cm3, energies_kev, kind="photo")
    return -np.expm1(-mu * thickness * 1e-4)


def attenuation_coefficients(composition: Mapping[str, float], density_g_cm3: float, energies_kev: Any, *,
                             kind: Literal["total", "photo"] = "total") -> np.ndarray:
    """Linear attenuation coefficient (1/cm) of a material at each energy, from xraydb's Elam tables.

    The mixture rule: ``mu(E) = density * sum_i w_i (mu/rho)_i(E)`` with ``w_i``
    the mass fraction and ``(mu/rho)_i`` the mass attenuation coefficient
    (cm²/g) of element ``i``. Chemical binding is neglected, as is usual above
    a few keV.

    Parameters
    ----------
    composition : mapping of str to float
        Element symbol -> mass fraction (dimensionless, >= 0, summing to 1
        within 1e-6), e.g. Ti-6Al-4V: ``{"Ti": 0.90, "Al": 0.06, "V": 0.04}``.
    density_g_cm3 : float
        Mass density (g/cm³), e.g. 4.43 for Ti-6Al-4V.
    energies_kev : array_like
        Photon energies (keV), any shape, within 0.1 to 800 keV.
    kind : {"total", "photo"}
        ``"total"``: photoabsorption plus coherent and incoherent scattering,
        what a narrow-beam transmission measurement sees (scatter reaching
        the detector aside). ``"photo"``: photoabsorption only, comparable to
        :func:`aiax_bench.sim.materials.attenuation_per_cm` (Henke ``f2``).

    Returns
    -------
    numpy.ndarray
        ``mu`` (1/cm), float64, shape of ``energies_kev``.

    Raises
    ------
    aiax_bench.errors.InputError
        If the fractions are negative or do not sum to 1, an element is
        unknown, the density is not positive, or an energy is out of range.
    """
    if not isinstance(composition, Mapping) or not composition:
        raise InputError("composition", f"is {composition!r}", "expected a mapping element -> mass fraction")
    fractions = {}
    for element, fraction in composition.items():
        ok = isinstance(fraction, int | float | np.integer | np.floating) and not isinstance(fraction, bool)
        if not ok or not math.isfinite(fraction) or fraction < 0:
            raise InputError("composition", f"has mass fraction {fraction!r} for {element!r}",
                             "expected fractions >= 0")
        fractions[element] = float(fraction)
    total = math.fsum(fractions.values())
    if abs(total - 1.0) > 1e-6:
        raise InputError("composition", f"mass fractions sum to {total!r}", "expected them to sum to 1 (within 1e-6)")
    density = check_positive("density_g_cm3", density_g_cm3, "g/cm³")
    if kind not in ("total", "photo"):
        raise InputError("kind", f"is {kind!r}", "expected 'total' or 'photo'")
    energies = np.asarray(energies_kev, dtype=np.float64)
    if energies.size and not (np.all(np.isfinite(energies))
                              and ELAM_RANGE_KEV[0] <= energies.min() and energies.max() <= ELAM_RANGE_KEV[1]):
        lo, hi = ELAM_RANGE_KEV
        raise InputError("energies_kev", f"span {energies.min()!r} to {energies.max()!r} keV",
                         f"expected energies within the Elam tables, {lo:g} to {hi:g} keV")

    import xraydb  # imported here: only lab-CT simulations need it

    mass_mu = np.zeros(energies.size, dtype=np.float64)
    for element, fraction in fractions.items():
        try:
            known = isinstance(element, str) and xraydb.atomic_number(element) > 0
        except Exception:  # xraydb raises ValueError for an unknown symbol
            known = False
        if not known:
            raise InputError("composition", f"has unknown element {element!r}",
                             "expected element symbols such as 'Ti', 'Al', 'V'")
        if fraction and energies.size:
            mass_mu += fraction * np.asarray(xraydb.mu_elam(element, energies.ravel() * 1e3, kind=kind),
                                             dtype=np.float64)
    return (density * mass_mu).reshape(energies.shape)


def _check_mu(spectrum: TubeSpectrum, mu_per_cm: Any) -> np.ndarray:
    if not isinstance(spectrum, TubeSpectrum):
        raise InputError("spectrum", f"is a {type(spectrum).__name__}", "expected a TubeSpectrum")
    mu = np.asarray(mu_per_cm, dtype=np.float64)
    if mu.shape != spectrum.energies_kev.shape:
        raise InputError("mu_per_cm", f"has shape {mu.shape}",
                         f"expected {spectrum.energies_kev.shape}, one value per energy of the spectrum")
    if not np.all(np.isfinite(mu)) or np.any(mu < 0):
        raise InputError("mu_per_cm", "holds negative or non-finite values", "expected attenuation >= 0 (1/cm)")
    return mu


def effective_attenuation(spectrum: TubeSpectrum, mu_per_cm: Any, *,
                          detector: Detector = "energy-integrating") -> float:
    """Attenuation (1/cm) the detector sees through a thin sample: ``sum_E w(E) mu(E)``.

    This is the small-thickness limit of the measured ``-log(I / I0) / L``
    (the slope at ``L = 0`` of :func:`polychromatic_line_integrals`), hence
    the monochromatic value a beam-hardening-free reconstruction would show
    for thin parts, and the value :func:`linearise` maps projections to.
    Thicker parts look less attenuating (beam hardening).

    Parameters
    ----------
    spectrum : TubeSpectrum
        The incident beam.
    mu_per_cm : array_like
        Linear attenuation coefficient (1/cm) at each energy of ``spectrum``.
    detector : {"energy-integrating", "photon-counting"}
        How the detector weighs photons (see :meth:`TubeSpectrum.weights`).

    Returns
    -------
    float
        The effective linear attenuation coefficient (1/cm).
    """
    mu = _check_mu(spectrum, mu_per_cm)
    return float(np.sum(spectrum.weights(detector) * mu))


def _check_path_lengths(path_length_cm: Any) -> np.ndarray:
    lengths = np.asarray(path_length_cm)
    if not (np.issubdtype(lengths.dtype, np.floating) or np.issubdtype(lengths.dtype, np.integer)):
        raise InputError("path_length_cm", f"has dtype {lengths.dtype}", "expected real path lengths (cm)")
    if lengths.size:
        lo, hi = lengths.min(), lengths.max()  # NaN propagates to both; no full-size mask is needed
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0:
            raise InputError("path_length_cm", f"span {lo!r} to {hi!r}", "expected finite path lengths >= 0 (cm)")
    return lengths


def _line_integrals_f64(lengths: np.ndarray, log_w: np.ndarray, mu: np.ndarray) -> np.ndarray:
    """``-log sum_E exp(log w_E - mu_E L)`` of a float64 chunk, shifted so that no term underflows."""
    return _materials_line_integrals_f64((lengths,), log_w, (mu,))


def _materials_line_integrals_f64(lengths: tuple[np.ndarray, ...], log_w: np.ndarray,
                                  mu: tuple[np.ndarray, ...]) -> np.ndarray:
    """``-log sum_E exp(log w_E - sum_m mu_mE L_m)`` of float64 chunks (one per material, summed in order)."""

    def depth(e: int) -> np.ndarray:
        total = mu[0][e] * lengths[0]  # one material: exactly mu L, as before several were possible
        for m in range(1, len(lengths)):
            total = total + mu[m][e] * lengths[m]
        return total

    # Each term exp(-(mu L - log w - shift)) is at most 1 and the largest is 1, so the sum neither underflows
    # (a thick part, where exp(-mu L) of the soft bins would be 0) nor loses the hardest bins.
    shift = np.full(lengths[0].shape, np.inf)
    for e, lw in enumerate(log_w):
        np.minimum(shift, depth(e) - lw, out=shift)
    total = np.zeros(lengths[0].shape)
    for e, lw in enumerate(log_w):
        total += np.exp(shift - (depth(e) - lw))
    p = shift - np.log(total)
    # Empty space reads exactly 0, as in a monochromatic projection, rather than a rounding residue.
    empty = lengths[0] == 0
    for m in range(1, len(lengths)):
        empty &= lengths[m] == 0
    p[empty] = 0.0
    return p


def _log_weights(spectrum: TubeSpectrum, mu: np.ndarray, detector: Detector) -> tuple[np.ndarray, np.ndarray]:
    w = spectrum.weights(detector)
    used = w > 0  # bins without photons contribute nothing; log(0) would only add -inf terms
    return np.log(w[used]), mu[used]


def polychromatic_line_integrals(path_length_cm: Any, spectrum: TubeSpectrum, mu_per_cm: Any, *,
                                 detector: Detector = "energy-integrating") -> np.ndarray:
    """Measured line integrals ``p = -log(I / I0)`` of a polychromatic beam through one material.

    ``p(L) = -log( sum_E w(E) exp(-mu(E) L) )`` with ``w`` the normalised
    detector weights of ``spectrum``. It is concave in ``L``: its slope falls
    from :func:`effective_attenuation` at ``L = 0`` towards the attenuation of
    the hardest photons (beam hardening). With a one-bin spectrum it is
    Beer-Lambert, ``mu L``.

    Computed in float64, in chunks of path lengths whose temporaries stay a
    few tens of MiB whatever the input size and number of energies; each
    value depends only on its own path length, so the bytes do not depend on
    the chunking.

    Parameters
    ----------
    path_length_cm : array_like
        Path lengths ``L`` (cm) through the material, any shape, finite and
        >= 0 (e.g. forward projections of a binary mask, times the voxel size
        in cm).
    spectrum : TubeSpectrum
        The incident beam.
    mu_per_cm : array_like
        Linear attenuation coefficient (1/cm) at each energy of ``spectrum``
        (e.g. from :func:`attenuation_coefficients`).
    detector : {"energy-integrating", "photon-counting"}
        How the detector weighs photons (see :meth:`TubeSpectrum.weights`).

    Returns
    -------
    numpy.ndarray
        ``p`` (dimensionless), float32, shape of ``path_length_cm``.
    """
    lengths = _check_path_lengths(path_length_cm)
    mu = _check_mu(spectrum, mu_per_cm)
    _check_detector(detector)
    log_w, mu_used = _log_weights(spectrum, mu, detector)
    flat = lengths.reshape(-1)
    out = np.empty(flat.size, dtype=np.float32)
    for start in range(0, flat.size, _CHUNK):
        chunk = flat[start:start + _CHUNK].astype(np.float64)
        out[start:start + _CHUNK] = _line_integrals_f64(chunk, log_w, mu_used)
    return out.reshape(lengths.shape)


def polychromatic_line_integrals_of_materials(path_lengths_cm: Sequence[Any], spectrum: TubeSpectrum,
                                              mu_per_cm: Sequence[Any], *,
                                              detector: Detector = "energy-integrating") -> np.ndarray:
    """Measured line integrals ``p = -log(I / I0)`` of a polychromatic beam through several materials.

    ``p = -log( sum_E w(E) exp(-sum_m mu_m(E) L_m) )``: each ray crosses
    ``L_m`` of material ``m``, and each energy is attenuated by all of them.
    Hard and soft materials harden the beam differently, so no single
    linearisation undoes it (streaks between dense parts, cupping of each).
    With one material it is :func:`polychromatic_line_integrals`, bit for bit.

    Parameters
    ----------
    path_lengths_cm : sequence of array_like
        One array of path lengths (cm, finite, >= 0) per material, all of one shape.
    spectrum : TubeSpectrum
        The incident beam.
    mu_per_cm : sequence of array_like
        Each material's linear attenuation coefficient (1/cm) at each energy of ``spectrum``.
    detector : {"energy-integrating", "photon-counting"}
        How the detector weighs photons (see :meth:`TubeSpectrum.weights`).

    Returns
    -------
    numpy.ndarray
        ``p`` (dimensionless), float32, the shape of each path-length array.
    """
    if len(path_lengths_cm) == 0 or len(path_lengths_cm) != len(mu_per_cm):
        raise InputError("path_lengths_cm", f"holds {len(path_lengths_cm)} arrays for {len(mu_per_cm)} materials",
                         "one array of path lengths per material, at least one")
    lengths = [_check_path_lengths(length) for length in path_lengths_cm]
    if any(length.shape != lengths[0].shape for length in lengths):
        raise InputError("path_lengths_cm", f"have shapes {[length.shape for length in lengths]}",
                         "one shape for every material's path lengths")
    mus = [_check_mu(spectrum, mu) for mu in mu_per_cm]
    _check_detector(detector)
    used = spectrum.weights(detector) > 0
    log_w = _log_weights(spectrum, mus[0], detector)[0]
    mus_used = tuple(mu[used] for mu in mus)
    flats = [length.reshape(-1) for length in lengths]
    out = np.empty(flats[0].size, dtype=np.float32)
    for start in range(0, flats[0].size, _CHUNK):
        chunks = tuple(flat[start:start + _CHUNK].astype(np.float64) for flat in flats)
        out[start:start + _CHUNK] = _materials_line_integrals_f64(chunks, log_w, mus_used)
    return out.reshape(lengths[0].shape)


def linearise(p: Any, spectrum: TubeSpectrum, mu_per_cm: Any, *, detector: Detector = "energy-integrating",
              max_line_integral: float = 20.0) -> np.ndarray:
    """Beam-hardening correction of a single-material part: map ``p`` back to ``mu_eff L``.

    Inverts :func:`polychromatic_line_integrals`: each measured ``p`` is
    turned into the path length ``L`` (cm) that produces it, then into
    ``mu_eff L`` with ``mu_eff`` the :func:`effective_attenuation` (1/cm), so
    that a reconstruction of the corrected projections shows ``mu_eff``
    throughout the part, without cupping. It is the classical linearisation
    (water or material pre-correction) a lab user applies; it is exact for
    one material and the given spectrum, not for multi-material parts.

    The inverse is interpolated on a table of ``2**14`` path lengths from 0
    to a length whose ``p`` reaches at least ``max_line_integral``, spaced
    quadratically (denser at small ``L``, where ``p`` bends most); the
    interpolated quantity, ``mu_eff L / p``, is smooth and equal to 1 at
    ``p = 0``. The error is then at the float32 rounding of the output
    (``tests/test_spectrum.py`` states the tolerance it checks).

    Valid range: ``0 <= p <= max_line_integral``. Beyond the table's end
    (``p`` somewhat above ``max_line_integral``), or for ``+inf`` (pixels
    that received no photon), the output is clipped to ``mu_eff`` times the
    table's longest path. Below 0 (noise about the flat field), ``p`` is
    returned unchanged, the slope of the inverse at ``p = 0`` being exactly
    1, so that the noise of empty space keeps a zero mean.

    Parameters
    ----------
    p : array_like
        Measured line integrals ``-log(I / I0)`` (dimensionless), any shape; no NaN.
    spectrum : TubeSpectrum
        The beam the projections were taken with.
    mu_per_cm : array_like
        Linear attenuation coefficient (1/cm) of the part's material at each
        energy of ``spectrum``, all positive.
    detector : {"energy-integrating", "photon-counting"}
        How the detector weighs photons (see :meth:`TubeSpectrum.weights`).
    max_line_integral : float
        Largest ``p`` the table covers (dimensionless); 20 is a transmission
        of 2e-9, beyond any lab detector's dynamic range.

    Returns
    -------
    numpy.ndarray
        ``mu_eff L`` (dimensionless), float32, shape of ``p``.
    """
    values = np.asarray(p)
    if not (np.issubdtype(values.dtype, np.floating) or np.issubdtype(values.dtype, np.integer)):
        raise InputError("p", f"has dtype {values.dtype}", "expected real line integrals")
    mu = _check_mu(spectrum, mu_per_cm)
    _check_detector(detector)
    p_max = check_positive("max_line_integral", max_line_integral, "(dimensionless line integral)")
    log_w, mu_used = _log_weights(spectrum, mu, detector)
    if np.any(mu_used <= 0):
        raise InputError("mu_per_cm", "is zero at an energy of the spectrum",
                         "expected an attenuating material (mu > 0 at every energy) to invert p")
    mu_eff = effective_attenuation(spectrum, mu, detector=detector)

    # p(L) <= mu_eff L (Jensen), so the table must reach beyond p_max / mu_eff; p(L) >= min(mu) L bounds the
    # doublings by log2(mu_eff / min(mu)) + 1.
    length_max = p_max / mu_eff
    while _line_integrals_f64(np.array([length_max]), log_w, mu_used)[0] < p_max:
        length_max *= 2.0
    # Quadratic spacing: p(L) bends most near L = 0, where the soft bins are absorbed.
    table_l = length_max * np.linspace(0.0, 1.0, _TABLE_POINTS) ** 2
    table_p = _line_integrals_f64(table_l, log_w, mu_used)
    # The ratio mu_eff L / p is interpolated rather than mu_eff L itself: it is 1 at p = 0 and nearly linear
    # in p there, so thin paths keep their relative accuracy (a straight line through mu_eff L would cut
    # the curve's first interval).
    table_ratio = np.ones_like(table_p)
    table_ratio[1:] = mu_eff * table_l[1:] / table_p[1:]
    top = mu_eff * length_max

    flat = values.reshape(-1)
    out = np.empty(flat.size, dtype=np.float32)
    for start in range(0, flat.size, _CHUNK):
        chunk = flat[start:start + _CHUNK].astype(np.float64)
        if np.isnan(chunk).any():
            bad = start + int(np.flatnonzero(np.isnan(chunk))[0])
            raise InputError("p", f"holds NaN (first at flat index {bad})", "expected line integrals, +inf allowed")
        # Below 0 the ratio is held at 1 (identity); above the table the output is clipped to its end.
        with np.errstate(invalid="ignore"):  # inf * ratio is replaced just below
            mapped = chunk * np.interp(chunk, table_p, table_ratio)
        out[start:start + _CHUNK] = np.where(chunk > table_p[-1], top, mapped)
    return out.reshape(values.shape)
