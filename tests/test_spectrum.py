"""Polychromatic lab-CT simulation of aiax_bench.sim.spectrum: tube spectra, attenuation, beam hardening."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from aiax_bench.errors import InputError
from aiax_bench.sim import spectrum as spectrum_module
from aiax_bench.sim.materials import attenuation_per_cm
from aiax_bench.sim.spectrum import (
    TubeSpectrum,
    attenuation_coefficients,
    effective_attenuation,
    linearise,
    polychromatic_line_integrals,
    polychromatic_line_integrals_of_materials,
    tube_spectrum,
)

TI64 = {"Ti": 0.90, "Al": 0.06, "V": 0.04}  # Ti-6Al-4V, mass fractions
TI64_DENSITY = 4.43  # g/cm³


@pytest.fixture(scope="module")
def beam():
    """60 kVp behind 1 mm Al, 1 keV bins, and the attenuation (1/cm) of Ti-6Al-4V at its energies."""
    spectrum = tube_spectrum(60.0, filters={"Al": 1.0})
    return spectrum, attenuation_coefficients(TI64, TI64_DENSITY, spectrum.energies_kev)


def test_one_bin_spectrum_is_beer_lambert():
    mono = TubeSpectrum(energies_kev=np.array([40.0]), fluence=np.array([3.0]))
    mu = np.array([2.5])
    lengths = np.array([[0.0, 1e-6, 0.01], [0.3, 1.0, 7.5]])
    for detector in ("energy-integrating", "photon-counting"):
        p = polychromatic_line_integrals(lengths, mono, mu, detector=detector)
        assert p.dtype == np.float32 and p.shape == lengths.shape
        np.testing.assert_array_equal(p, (mu[0] * lengths).astype(np.float32))
        assert effective_attenuation(mono, mu, detector=detector) == 2.5


def test_weights_of_the_two_detectors():
    spectrum = TubeSpectrum(energies_kev=np.array([20.0, 40.0]), fluence=np.array([1.0, 1.0]))
    np.testing.assert_allclose(spectrum.weights("photon-counting"), [0.5, 0.5])
    # An energy-integrating detector counts a 40 keV photon twice as much as a 20 keV one.
    np.testing.assert_allclose(spectrum.weights("energy-integrating"), [1 / 3, 2 / 3])
    assert spectrum.mean_energy_kev == 30.0
    assert not spectrum.fluence.flags.writeable
    with pytest.raises(dataclasses.FrozenInstanceError):
        spectrum.fluence = np.ones(2)


def test_beam_hardening_of_ti64_at_60_kvp(beam):
    spectrum, mu = beam
    mu_eff = effective_attenuation(spectrum, mu)
    lengths = np.geomspace(1e-3, 2.0, 60)
    per_cm = polychromatic_line_integrals(lengths, spectrum, mu).astype(np.float64) / lengths
    assert np.all(np.diff(per_cm) < 0), "p / L must fall with L: the beam hardens"
    assert np.all(per_cm < mu_eff)
    # The thin limit: p / L - mu_eff ~ -var(mu) L / (2 mu_eff), a relative 1.6e-4 at 0.1 um, ten times less
    # at 0.01 um (the float32 rounding of p is 6e-8).
    thin = np.array([1e-5, 1e-6])
    gap = np.abs(polychromatic_line_integrals(thin, spectrum, mu) / thin - mu_eff) / mu_eff
    assert gap[0] < 1e-3
    assert gap[1] < gap[0] / 5
    # Thick parts: the soft bins are absorbed without underflow, p stays finite and increasing.
    thick = polychromatic_line_integrals(np.array([10.0, 50.0, 200.0]), spectrum, mu)
    assert np.all(np.isfinite(thick)) and np.all(np.diff(thick) > 0)


def test_linearise_inverts_the_polychromatic_line_integrals(beam):
    spectrum, mu = beam
    mu_eff = effective_attenuation(spectrum, mu)
    lengths = np.linspace(0.0, 2.0, 2001)
    corrected = linearise(polychromatic_line_integrals(lengths, spectrum, mu), spectrum, mu)
    assert corrected.dtype == np.float32 and corrected[0] == 0.0
    # The table interpolation is below the float32 rounding: measured at most 1.3e-7 relative.
    np.testing.assert_allclose(corrected[1:], mu_eff * lengths[1:], rtol=1e-6)
    # Noise below 0 passes through; beyond the table (and +inf, a pixel without photons) is clipped.
    edge = linearise(np.array([-0.05, 1e3, np.inf]), spectrum, mu)
    assert edge[0] == np.float32(-0.05) and edge[1] == edge[2] > mu_eff * 2.0
    with pytest.raises(InputError, match=r"^p holds NaN"):
        linearise(np.array([0.1, np.nan]), spectrum, mu)


def test_chunking_does_not_change_the_bytes(beam, monkeypatch):
    spectrum, mu = beam
    lengths = np.random.default_rng(0).uniform(0.0, 2.0, size=(5, 11)).astype(np.float32)
    whole = polychromatic_line_integrals(lengths, spectrum, mu)
    back = linearise(whole, spectrum, mu)
    monkeypatch.setattr(spectrum_module, "_CHUNK", 7)
    assert polychromatic_line_integrals(lengths, spectrum, mu).tobytes() == whole.tobytes()
    assert linearise(whole, spectrum, mu).tobytes() == back.tobytes()


def test_several_materials_attenuate_each_energy_together(beam, monkeypatch):
    """One material is :func:`polychromatic_line_integrals` bit for bit; a material split into two parts is the
    whole to float32 rounding; a soft and a hard material are not one material of their mean attenuation, and
    the chunking leaves the bytes alone."""
    spectrum, mu = beam
    lengths = np.random.default_rng(1).uniform(0.0, 0.3, size=(4, 9))
    one = polychromatic_line_integrals(lengths, spectrum, mu)
    assert polychromatic_line_integrals_of_materials([lengths], spectrum, [mu]).tobytes() == one.tobytes()
    halves = polychromatic_line_integrals_of_materials([lengths / 2, lengths / 2], spectrum, [mu, mu])
    np.testing.assert_allclose(halves, one, rtol=1e-6)  # the sum mu L/2 + mu L/2 rounds apart from mu L
    soft = attenuation_coefficients({"C": 0.857, "H": 0.143}, 0.95, spectrum.energies_kev)  # polyethylene
    two = polychromatic_line_integrals_of_materials([lengths, lengths], spectrum, [mu, soft])
    assert np.all(two > one)
    # Each material's own curve: not Beer-Lambert at the effective attenuations, and harder than each alone.
    assert np.all(two < (effective_attenuation(spectrum, mu) + effective_attenuation(spectrum, soft)) * lengths)
    monkeypatch.setattr(spectrum_module, "_CHUNK", 5)
    assert polychromatic_line_integrals_of_materials([lengths, lengths], spectrum, [mu, soft]).tobytes() == \
        two.tobytes()
    with pytest.raises(InputError, match=r"^path_lengths_cm") as error:
        polychromatic_line_integrals_of_materials([lengths, lengths[:2]], spectrum, [mu, soft])
    assert "\n" not in str(error.value)
    with pytest.raises(InputError, match=r"^path_lengths_cm"):
        polychromatic_line_integrals_of_materials([lengths], spectrum, [mu, soft])


@pytest.mark.parametrize("energy_kev", [20.0, 30.0])
def test_xraydb_agrees_with_the_henke_tables(energy_kev):
    henke = attenuation_per_cm("90wt% Ti // 6wt% Al // 4wt% V", density_g_cm3=TI64_DENSITY, energy_kev=energy_kev)
    photo = attenuation_coefficients(TI64, TI64_DENSITY, [energy_kev], kind="photo")[0]
    total = attenuation_coefficients(TI64, TI64_DENSITY, [energy_kev])[0]
    # Photoabsorption, like with like: measured 0.13 % (20 keV) and 0.29 % (30 keV) apart.
    assert photo == pytest.approx(henke, rel=0.01)
    # The total adds coherent and incoherent scattering, which the Henke f2 leaves out: measured 3.6 % and
    # 8.1 % above.
    assert henke < total < 1.1 * henke


def test_tube_spectrum_mean_energy_and_filtration(beam):
    spectrum, _ = beam
    energies = spectrum.energies_kev
    assert np.all(np.diff(energies) > 0) and np.allclose(np.diff(energies), 1.0)
    assert energies[-1] == 59.5 and np.all(spectrum.fluence > 0)
    assert 0.0 < spectrum.mean_energy_kev < 60.0
    # Rebinning keeps SpekPy's own mean energy (32.339 keV): measured 0.001 keV apart.
    assert spectrum.mean_energy_kev == pytest.approx(32.339, abs=0.02)
    harder = tube_spectrum(60.0, filters={"Al": 3.0})
    assert spectrum.mean_energy_kev < harder.mean_energy_kev < 60.0
    # A harder beam is attenuated less by the same material.
    mu_harder = attenuation_coefficients(TI64, TI64_DENSITY, harder.energies_kev)
    assert effective_attenuation(harder, mu_harder) < effective_attenuation(*beam)


def test_a_spectrum_asked_for_again_is_not_computed_again():
    """A build asks for its tube's spectrum per sample and material: SpekPy runs once per process for the same
    arguments, and each caller still gets read-only arrays of its own. An unusable filter is refused every time."""
    from aiax_bench.sim.spectrum import _spekpy_bins

    first = tube_spectrum(70.0, filters={"Al": 2.0})
    before = _spekpy_bins.cache_info()
    again = tube_spectrum(70.0, filters={"Al": 2.0})
    after = _spekpy_bins.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
    np.testing.assert_array_equal(again.fluence, first.fluence)
    np.testing.assert_array_equal(again.energies_kev, first.energies_kev)
    assert again.fluence is not first.fluence and not again.fluence.flags.writeable
    assert tube_spectrum(70.0, filters={"Al": 3.0}).mean_energy_kev > first.mean_energy_kev
    for _ in range(2):
        with pytest.raises(InputError, match="SpekPy cannot use"):
            tube_spectrum(70.0, filters={"Unobtainium": 1.0})


@pytest.mark.parametrize(("call", "field"), [
    (lambda: tube_spectrum(-60.0), "kvp"),
    (lambda: tube_spectrum(600.0), "kvp"),
    (lambda: tube_spectrum(60.0, filters={"Al": -1.0}), "filters"),
    (lambda: tube_spectrum(60.0, bin_kev=0.0), "bin_kev"),
    (lambda: attenuation_coefficients({"Ti": 0.9, "Al": 0.06}, 4.43, [30.0]), "composition"),
    (lambda: attenuation_coefficients({"Ti": 0.9, "Xx": 0.1}, 4.43, [30.0]), "composition"),
    (lambda: attenuation_coefficients(TI64, -4.43, [30.0]), "density_g_cm3"),
    (lambda: attenuation_coefficients(TI64, 4.43, [0.01]), "energies_kev"),
    (lambda: TubeSpectrum(np.array([20.0, 10.0]), np.array([1.0, 1.0])), "energies_kev"),
    (lambda: TubeSpectrum(np.array([20.0]), np.array([0.0])), "fluence"),
])
def test_bad_input_is_refused_in_one_line(call, field):
    with pytest.raises(InputError) as caught:
        call()
    assert caught.value.field == field
    assert "\n" not in str(caught.value) and str(caught.value).startswith(field)


def test_bad_path_lengths_and_detector_are_refused():
    mono = TubeSpectrum(energies_kev=np.array([40.0]), fluence=np.array([1.0]))
    for lengths in (np.array([0.5, -0.1]), np.array([np.nan])):
        with pytest.raises(InputError, match=r"^path_length_cm span .*expected finite path lengths >= 0"):
            polychromatic_line_integrals(lengths, mono, [2.0])
    with pytest.raises(InputError, match=r"^mu_per_cm has shape \(2,\)"):
        polychromatic_line_integrals(np.ones(3), mono, [2.0, 3.0])
    with pytest.raises(InputError, match=r"^detector is 'cmos'"):
        effective_attenuation(mono, [2.0], detector="cmos")
