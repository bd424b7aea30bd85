"""Complex refractive index of a material for hard X-rays.

A material of chemical formula ``formula`` and mass density ``density_g_cm3``
has, at photon energy ``E``, the refractive index ``n = 1 - delta + i beta``
(the sign of ``beta`` is that of a wave ``exp(i (k z - omega t))``, the
convention of :mod:`aiax_bench.sim.propagation` and of syris): ``delta``
shifts the phase, ``beta`` attenuates. Both come from the atomic scattering
factors ``f1 + i f2`` of Henke et al. (At. Data Nucl. Data Tables 54, 1993),
tabulated by the ``periodictable`` package from about 0.03 keV to 30 keV::

    delta + i beta = r_e lambda^2 / (2 pi) * sum_j n_j (f1_j + i f2_j)

with ``r_e`` the classical electron radius and ``n_j`` the number density of
atoms of element ``j``. Above 30 keV the tables end; this module raises rather
than extrapolate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from aiax_bench.errors import InputError
from aiax_bench.validation import check_positive

if TYPE_CHECKING:
    from periodictable.formulas import Formula

__all__ = [
    "RefractiveIndex",
    "attenuation_per_cm",
    "delta_beta_ratio",
    "refractive_index",
    "wavelength_m",
]

#: ``h c / e`` (metres times volts), exact in the SI since 2019: ``lambda = HC_EV_M / E[eV]``.
HC_EV_M = 6.62607015e-34 * 299792458.0 / 1.602176634e-19


def wavelength_m(energy_kev: float) -> float:
    """Vacuum wavelength (m) of a photon of ``energy_kev`` (keV)."""
    energy_kev = check_positive("energy_kev", energy_kev, "keV")
    return HC_EV_M / (energy_kev * 1e3)


@dataclass(frozen=True)
class RefractiveIndex:
    """The complex refractive index ``n = 1 - delta + i beta`` at one photon energy.

    Attributes
    ----------
    delta : float
        Refractive index decrement (dimensionless): the phase shift per unit
        length is ``-2 pi delta / lambda`` relative to vacuum.
    beta : float
        Absorption index (dimensionless, non-negative).
    energy_kev : float
        Photon energy (keV).
    """

    delta: float
    beta: float
    energy_kev: float

    @property
    def n(self) -> complex:
        """``1 - delta + i beta`` (dimensionless)."""
        return complex(1.0 - self.delta, self.beta)

    @property
    def wavelength_m(self) -> float:
        """Vacuum wavelength (m)."""
        return wavelength_m(self.energy_kev)

    @property
    def attenuation_per_cm(self) -> float:
        """Linear attenuation coefficient of the intensity, ``mu = 4 pi beta / lambda`` (1/cm)."""
        return 4.0 * math.pi * self.beta / (self.wavelength_m * 100.0)

    @property
    def delta_beta_ratio(self) -> float:
        """``delta / beta`` (dimensionless), the parameter of Paganin's phase retrieval."""
        if self.beta <= 0:
            raise InputError("beta", f"is {self.beta!r}", "expected an absorbing material (beta > 0)")
        return self.delta / self.beta


def _compound(formula: str) -> Formula:
    import periodictable  # imported here: only phase-contrast simulations need it

    if not isinstance(formula, str) or not formula.strip():
        raise InputError("formula", f"is {formula!r}", "expected a chemical formula such as 'C5H8O2' or 'H2O'")
    try:
        compound = periodictable.formula(formula)
    except Exception as err:  # periodictable raises ValueError or pyparsing's ParseException
        raise InputError("formula", f"{formula!r} cannot be parsed ({err})",
                         "expected a chemical formula such as 'C5H8O2' or 'H2O'") from None
    if not compound.atoms:
        raise InputError("formula", f"{formula!r} has no atoms", "expected a chemical formula such as 'C5H8O2'")
    return compound


def mass_fractions(formula: str) -> dict[str, float]:
    """Element symbol -> mass fraction (dimensionless, summing to 1) of a compound, e.g. ``"Lu2SiO5"``.

    The composition :func:`aiax_bench.sim.spectrum.attenuation_coefficients` takes.
    """
    return {str(element): float(fraction) for element, fraction in _compound(formula).mass_fraction.items()}


def refractive_index(formula: str, *, density_g_cm3: float, energy_kev: float) -> RefractiveIndex:
    """Complex refractive index of a compound at one photon energy.

    Parameters
    ----------
    formula : str
        Chemical formula in ``periodictable`` syntax, e.g. ``"C5H8O2"`` (PMMA),
        ``"H2O"``, ``"SiO2"``, ``"Ca10(PO4)6(OH)2"``.
    density_g_cm3 : float
        Mass density (g/cm³).
    energy_kev : float
        Photon energy (keV): the Henke tables (periodictable) up to 30 keV,
        Chantler's (xraydb) above.

    Returns
    -------
    RefractiveIndex
        ``delta`` and ``beta`` (dimensionless) at ``energy_kev``.

    Raises
    ------
    aiax_bench.errors.InputError
        If the formula cannot be parsed, the density or energy is not
        positive, or the tables hold no scattering factors for an element at
        that energy.
    """
    from periodictable import xsf

    density = check_positive("density_g_cm3", density_g_cm3, "g/cm³")
    energy = check_positive("energy_kev", energy_kev, "keV")
    compound = _compound(formula)
    try:
        rho, irho = xsf.xray_sld(compound, density=density, energy=energy)
    except ValueError as err:  # an element without tabulated factors (e.g. Z > 92)
        raise InputError("formula", f"{formula!r}: {err}", "expected elements of Z <= 92") from None
    if not (np.isfinite(rho) and np.isfinite(irho)):
        if energy > HENKE_MAX_KEV:
            return _chantler_refractive_index(compound, formula, density, energy)
        raise InputError("energy_kev", f"is {energy_kev!r}, outside the scattering factor tables of {formula!r}",
                         f"expected an energy within the Henke tables (about 0.03 to {HENKE_MAX_KEV:g} keV) "
                         "or above them (Chantler's)")
    # From the scattering length densities rather than periodictable's index_of_refraction, which returns
    # 1 - delta - i beta (the other time convention) and loses digits of delta in 1 - n.
    # xray_sld gives r_e * sum_j n_j f_j in units of 1e-6 / Angstrom^2; lambda is in Angstrom here.
    lam_angstrom = wavelength_m(energy) * 1e10
    scale = lam_angstrom**2 / (2.0 * math.pi) * 1e-6
    return RefractiveIndex(delta=float(scale * rho), beta=float(scale * irho), energy_kev=energy)


#: Highest energy (keV) of periodictable's Henke tables; above it the index comes from Chantler's.
HENKE_MAX_KEV = 30.0
#: Highest energy (keV) at which Chantler's tables are reliable (xraydb warns beyond).
CHANTLER_MAX_KEV = 1000.0


def _chantler_refractive_index(compound, formula: str, density: float, energy: float) -> RefractiveIndex:
    """The index above the Henke tables, from Chantler's form factors (NIST FFAST, through xraydb): the
    hard X-rays of metal imaging. At 30 keV the two tables agree within 0.1 % in ``delta`` and 2 % in
    ``beta`` (``tests/test_materials.py``); below 30 keV the Henke tables stay the source, so no stored
    byte of an existing dataset changes."""
    import xraydb  # imported here: only energies above 30 keV need it

    if energy > CHANTLER_MAX_KEV:
        raise InputError("energy_kev", f"is {energy!r}, beyond the scattering factor tables",
                         f"an energy up to {CHANTLER_MAX_KEV:g} keV (Chantler's tables)")
    atoms = "".join(f"{element}{count:.12g}" for element, count in compound.atoms.items())
    try:
        delta, beta, _ = xraydb.xray_delta_beta(atoms, density, energy * 1000.0)
    except (ValueError, KeyError) as err:
        raise InputError("formula", f"{formula!r}: {err}", "elements of Chantler's tables (Z <= 92)") from None
    if not (np.isfinite(delta) and np.isfinite(beta)) or beta <= 0:
        raise InputError("energy_kev", f"is {energy!r}, outside the scattering factor tables of {formula!r}",
                         f"an energy of Chantler's tables (up to {CHANTLER_MAX_KEV:g} keV)")
    return RefractiveIndex(delta=float(delta), beta=float(beta), energy_kev=energy)


def attenuation_per_cm(formula: str, *, density_g_cm3: float, energy_kev: float) -> float:
    """Linear attenuation coefficient ``mu = 4 pi beta / lambda`` (1/cm) of a compound.

    Photoabsorption only: the Henke ``f2`` leaves out Compton and Rayleigh
    scattering, which for light elements (H, C, N, O) at 20 keV and above are
    a third or more of the total attenuation (NIST XCOM). This ``mu`` is the
    one of the refractive index, as in Paganin's phase retrieval and in syris.

    Parameters
    ----------
    formula : str
        Chemical formula, e.g. ``"C5H8O2"``.
    density_g_cm3 : float
        Mass density (g/cm³).
    energy_kev : float
        Photon energy (keV).

    Returns
    -------
    float
        ``mu`` (1/cm) of the intensity: ``I = I0 exp(-mu t)``.
    """
    return refractive_index(formula, density_g_cm3=density_g_cm3, energy_kev=energy_kev).attenuation_per_cm


def delta_beta_ratio(formula: str, *, density_g_cm3: float, energy_kev: float) -> float:
    """``delta / beta`` (dimensionless) of a compound, independent of its density.

    Parameters
    ----------
    formula : str
        Chemical formula, e.g. ``"C5H8O2"``.
    density_g_cm3 : float
        Mass density (g/cm³); it scales ``delta`` and ``beta`` alike.
    energy_kev : float
        Photon energy (keV).

    Returns
    -------
    float
        ``delta / beta``, the ``delta_beta`` of :func:`aiax_bench.recon.phase.paganin_filter`.
    """
    return refractive_index(formula, density_g_cm3=density_g_cm3, energy_kev=energy_kev).delta_beta_ratio
