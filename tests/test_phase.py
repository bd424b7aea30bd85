"""Phase contrast: refractive indices, Fresnel propagation, the detector, Paganin's retrieval, and syris.

The sample throughout is a sphere of radius ``R``, whose projected thickness is
``2 sqrt(R² - r²)`` at distance ``r`` from its centre.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import os
import sys
import types

import numpy as np
import pytest

from aiax_bench.errors import InputError
from aiax_bench.recon import paganin_filter
from aiax_bench.sim import (
    attenuation_per_cm,
    delta_beta_ratio,
    detector_image,
    fresnel_number,
    fresnel_propagate,
    refractive_index,
    transmission,
    wavelength_m,
)

PMMA = ("C5H8O2", 1.18)  # formula, g/cm³
LAM_20KEV = wavelength_m(20.0)


def _sphere_thickness(n: int, pixel_m: float, radius_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Projected thickness (m) of a sphere centred on an ``n x n`` grid, and each pixel's distance to the centre."""
    c = (np.arange(n) - (n - 1) / 2) * pixel_m
    r = np.hypot(c[:, None], c[None, :])
    return 2.0 * np.sqrt(np.clip(radius_m**2 - r**2, 0.0, None)), r


def _weak_phase_sphere(n: int = 256, pixel_m: float = 0.5e-6, radius_m: float = 20e-6, peak_phase: float = 0.3):
    thickness, r = _sphere_thickness(n, pixel_m, radius_m)
    delta = peak_phase / (2 * math.pi / LAM_20KEV * 2 * radius_m)
    return transmission(delta * thickness, 0.0, wavelength_m=LAM_20KEV), r


# --- materials -----------------------------------------------------------------------------------------------


def test_pmma_at_20_kev_is_a_weak_absorber_with_a_large_delta_over_beta():
    ri = refractive_index(PMMA[0], density_g_cm3=PMMA[1], energy_kev=20.0)
    assert 1e-7 < ri.delta < 1e-6
    assert 0 < ri.beta < ri.delta / 100
    assert ri.n == complex(1 - ri.delta, ri.beta)
    mu = 4 * math.pi * ri.beta / (LAM_20KEV * 100)
    assert attenuation_per_cm(PMMA[0], density_g_cm3=PMMA[1], energy_kev=20.0) == pytest.approx(mu, rel=1e-12)
    assert delta_beta_ratio(PMMA[0], density_g_cm3=PMMA[1], energy_kev=20.0) == pytest.approx(ri.delta / ri.beta)
    assert delta_beta_ratio(PMMA[0], density_g_cm3=2.0, energy_kev=20.0) == pytest.approx(ri.delta / ri.beta)
    assert LAM_20KEV == pytest.approx(0.619921e-10, rel=1e-6)  # 12.39842 keV Å / 20 keV


@pytest.mark.parametrize(("formula", "density", "electrons", "molar_mass"), [
    ("C5H8O2", 1.18, 54, 5 * 12.011 + 8 * 1.008 + 2 * 15.999),
    ("H2O", 1.0, 10, 2 * 1.008 + 15.999),
    ("Al", 2.70, 13, 26.982),
])
@pytest.mark.parametrize("energy_kev", [15.0, 30.0, 40.0, 80.0])  # Henke's tables, then Chantler's above 30 keV
def test_delta_is_the_free_electron_value_far_above_the_absorption_edges(formula, density, electrons, molar_mass,
                                                                         energy_kev):
    """Far above the K edges (O 0.53 keV, Al 1.56 keV) ``f1`` is the number of electrons to within a
    percent, so ``delta = r_e lambda² n_e / (2 pi)`` with ``n_e`` counted from the formula alone, no tables;
    2 % allowed."""
    r_e = 2.8179403262e-15  # m, CODATA 2018
    n_e = density * 1e6 / molar_mass * 6.02214076e23 * electrons  # electrons per m³
    lam = wavelength_m(energy_kev)
    expected = r_e * lam**2 * n_e / (2 * math.pi)
    assert refractive_index(formula, density_g_cm3=density, energy_kev=energy_kev).delta == pytest.approx(
        expected, rel=0.02)


def test_above_the_henke_tables_the_index_continues_from_chantlers_within_their_agreement():
    """Below 30 keV the index is Henke's (periodictable); above it Chantler's (xraydb), so hard X-rays for
    metals work. Where both are tabulated they agree within 0.1 % in delta and 2 % in beta (Ti-6Al-4V and
    PMMA, 29.9 keV); the step at the switch is within that."""
    import xraydb

    from aiax_bench.sim.materials import HENKE_MAX_KEV, _chantler_refractive_index, _compound

    for formula, density in (("90%wt Ti // 6%wt Al // 4%wt V", 4.43), ("C5H8O2", 1.18)):
        henke = refractive_index(formula, density_g_cm3=density, energy_kev=29.9)
        chantler = _chantler_refractive_index(_compound(formula), formula, density, 29.9)
        assert chantler.delta == pytest.approx(henke.delta, rel=1e-3)
        assert chantler.beta == pytest.approx(henke.beta, rel=0.02)
        above = refractive_index(formula, density_g_cm3=density, energy_kev=HENKE_MAX_KEV + 10.0)
        assert above.delta < henke.delta and above.beta < henke.beta
    # Pure titanium at 40 keV, as xraydb gives it for the element's own formula.
    delta, beta, _ = xraydb.xray_delta_beta("Ti", 4.5, 40000.0)
    ti = refractive_index("Ti", density_g_cm3=4.5, energy_kev=40.0)
    assert (ti.delta, ti.beta) == pytest.approx((delta, beta), rel=1e-12)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"formula": "", "density_g_cm3": 1.0, "energy_kev": 20.0}, "formula"),
    ({"formula": "Xx2O", "density_g_cm3": 1.0, "energy_kev": 20.0}, "formula"),
    ({"formula": "C5H8O2(", "density_g_cm3": 1.0, "energy_kev": 20.0}, "formula"),
    ({"formula": "Es", "density_g_cm3": 1.0, "energy_kev": 20.0}, "formula"),  # Z = 99: not tabulated
    ({"formula": "H2O", "density_g_cm3": 0.0, "energy_kev": 20.0}, "density_g_cm3"),
    ({"formula": "H2O", "density_g_cm3": 1.0, "energy_kev": -1.0}, "energy_kev"),
    ({"formula": "H2O", "density_g_cm3": 1.0, "energy_kev": 2000.0}, "energy_kev"),  # beyond Chantler's tables
])
def test_bad_materials_raise_input_errors(kwargs, field):
    formula = kwargs.pop("formula")
    with pytest.raises(InputError) as err:
        refractive_index(formula, **kwargs)
    assert err.value.field == field


# --- transmission and propagation ----------------------------------------------------------------------------


def test_transmission_attenuates_by_mu_t_and_delays_the_phase_by_k_delta_t():
    ri = refractive_index(*PMMA[:1], density_g_cm3=PMMA[1], energy_kev=20.0)
    t = np.array([0.0, 50e-6, 1e-3])  # m
    wave = transmission(ri.delta * t, ri.beta * t, wavelength_m=LAM_20KEV)
    mu_per_m = ri.attenuation_per_cm * 100
    np.testing.assert_allclose(np.abs(wave) ** 2, np.exp(-mu_per_m * t), rtol=1e-12)
    np.testing.assert_allclose(np.angle(wave * np.exp(2j * math.pi / LAM_20KEV * ri.delta * t)), 0.0, atol=1e-9)


def test_zero_distance_is_the_identity_and_a_plane_wave_stays_flat():
    wave, _ = _weak_phase_sphere(64)
    wave64 = wave.astype(np.complex64)
    same = fresnel_propagate(wave64, distance_m=0.0, wavelength_m=LAM_20KEV, pixel_size_m=0.5e-6)
    assert same.dtype == np.complex64 and same is not wave64
    np.testing.assert_array_equal(same, wave64)
    for pad in (False, True):
        flat = fresnel_propagate(np.ones((2, 32, 48)), distance_m=0.3, wavelength_m=LAM_20KEV, pixel_size_m=1e-6,
                                 pad=pad)
        assert flat.shape == (2, 32, 48) and flat.dtype == np.complex128
        np.testing.assert_allclose(flat, 1.0, atol=1e-12)


@pytest.mark.parametrize(("pad", "energy_rtol", "back_atol"), [(False, 1e-12, 1e-12), (True, 1e-6, 1e-3)])
def test_propagation_conserves_intensity_and_is_undone_by_the_opposite_distance(pad, energy_rtol, back_atol):
    """Without padding the propagation is a unitary circular convolution: exact to rounding. With padding the
    cropped window loses or gains the little light that its edges exchange with the margin."""
    wave, _ = _weak_phase_sphere()
    kw = {"wavelength_m": LAM_20KEV, "pixel_size_m": 0.5e-6, "pad": pad}
    there = fresnel_propagate(wave, distance_m=0.5, **kw)
    assert np.sum(np.abs(there) ** 2) == pytest.approx(np.sum(np.abs(wave) ** 2), rel=energy_rtol)
    back = fresnel_propagate(there, distance_m=-0.5, **kw)
    assert np.abs(back - wave).max() < back_atol


def test_a_weak_phase_sphere_shows_a_bright_fringe_outside_its_edge_and_a_dark_one_inside():
    """Peak phase 0.3 rad, radius 20 µm, z = 0.5 m at 20 keV: Fresnel number R² / (lambda z) about 13. A sphere
    of n < 1 is a diverging lens: light leaves the inside of the edge for the outside."""
    wave, r = _weak_phase_sphere()
    radius, z = 20e-6, 0.5
    assert 5 < fresnel_number(radius, z, LAM_20KEV) < 30
    intensity = np.abs(fresnel_propagate(wave, distance_m=z, wavelength_m=LAM_20KEV, pixel_size_m=0.5e-6)) ** 2
    fringe = math.sqrt(LAM_20KEV * z)  # width of the first Fresnel zone, about 5.6 µm
    assert intensity[(r > radius) & (r < radius + fringe)].mean() > 1.01
    assert intensity[(r < radius) & (r > radius - fringe)].mean() < 0.99
    edge = np.abs(r - radius) < 3 * fringe
    assert intensity[edge].max() > 1.03 and intensity[edge].min() < 0.97
    np.testing.assert_allclose(intensity[r > radius + 5 * fringe], 1.0, atol=0.01)


def test_fresnel_number_is_a_squared_over_lambda_z():
    assert fresnel_number(1e-6, 0.2, 5e-11) == pytest.approx(1e-12 / 1e-11)


def test_detector_blurs_then_averages_fine_pixels():
    fine = np.ones((2, 8, 12))
    fine[0, :4, :4] = 3.0  # one 4 x 4 block brighter
    image = detector_image(fine, psf_sigma_px=0.0, binning=4)
    assert image.shape == (2, 2, 3) and image.dtype == np.float32
    np.testing.assert_array_equal(image[0], [[3, 1, 1], [1, 1, 1]])
    blurred = detector_image(fine, psf_sigma_px=1.5, binning=2)
    np.testing.assert_allclose(blurred[1], 1.0, rtol=1e-6)  # a flat field stays 1
    assert 1.0 < blurred[0, 2, 1] < 3.0  # light spread across the block's edge
    assert blurred[0].mean() == pytest.approx(fine[0].mean(), rel=1e-3)  # almost no light lost at the border


# --- Paganin -------------------------------------------------------------------------------------------------


def _pmma_sphere_scan(distance_m: float, *, n: int = 256, pixel_m: float = 1e-6, radius_m: float = 60e-6,
                      oversampling: int = 2, psf_sigma_px: float = 1.0):
    """Flat-field-corrected image of a PMMA sphere at 20 keV, simulated on pixels ``oversampling`` times
    finer than the detector's, and the true projected thickness averaged over each detector pixel."""
    ri = refractive_index(PMMA[0], density_g_cm3=PMMA[1], energy_kev=20.0)
    thickness, _ = _sphere_thickness(n * oversampling, pixel_m / oversampling, radius_m)
    wave = transmission(ri.delta * thickness, ri.beta * thickness, wavelength_m=LAM_20KEV)
    intensity = np.abs(fresnel_propagate(wave, distance_m=distance_m, wavelength_m=LAM_20KEV,
                                         pixel_size_m=pixel_m / oversampling)) ** 2
    image = detector_image(intensity, psf_sigma_px=psf_sigma_px, binning=oversampling)
    truth = thickness.reshape(n, oversampling, n, oversampling).mean(axis=(1, 3))
    return image, truth, ri


@pytest.mark.parametrize("distance_m", [0.1, 0.5])
def test_paganin_recovers_the_thickness_of_a_pmma_sphere_where_minus_log_shows_fringes(distance_m):
    """PMMA sphere of radius 60 µm at 20 keV, 1 µm detector pixels: inside the sphere the RMS error of the
    retrieved thickness is under 5 % of the sphere's diameter, while ``-ln(I) / mu`` is off by far more than
    the diameter (the phase fringes dwarf an absorption of under 1 %)."""
    image, truth, ri = _pmma_sphere_scan(distance_m)
    mu_per_m = ri.attenuation_per_cm * 100
    mu_t = paganin_filter(image, delta_beta=ri.delta_beta_ratio, distance_m=distance_m, wavelength_m=LAM_20KEV,
                          pixel_size_m=1e-6)
    assert mu_t.dtype == np.float32 and mu_t.shape == image.shape
    inside = truth > 0
    rms = math.sqrt(np.mean((mu_t[inside] / mu_per_m - truth[inside]) ** 2))
    rms_log = math.sqrt(np.mean((-np.log(image[inside]) / mu_per_m - truth[inside]) ** 2))
    assert rms < 0.05 * truth.max()
    assert rms_log > 1.0 * truth.max() > 20 * rms


def test_paganin_batches_leading_axes_deterministically_and_is_minus_log_at_zero_distance():
    rng = np.random.default_rng(7)
    stack = rng.uniform(0.5, 1.5, size=(2, 3, 20, 24))
    kw = {"delta_beta": 500.0, "distance_m": 0.3, "wavelength_m": LAM_20KEV, "pixel_size_m": 1e-6}
    out = paganin_filter(stack, **kw)
    assert out.shape == stack.shape and out.dtype == np.float32
    np.testing.assert_array_equal(out[1, 2], paganin_filter(stack[1, 2], **kw))
    np.testing.assert_array_equal(out, paganin_filter(stack, **kw))
    # The filter is a low-pass of unit gain at zero frequency: a flat field stays at -ln(1) = 0.
    np.testing.assert_allclose(paganin_filter(np.ones((16, 16)), **kw), 0.0, atol=1e-6)
    np.testing.assert_allclose(paganin_filter(stack, **{**kw, "distance_m": 0.0}), -np.log(stack), rtol=1e-6)


@pytest.mark.parametrize("call", [
    lambda: paganin_filter(np.ones(8), delta_beta=100, distance_m=0.1, wavelength_m=6e-11, pixel_size_m=1e-6),
    lambda: paganin_filter(np.ones((4, 4)) + 0j, delta_beta=100, distance_m=0.1, wavelength_m=6e-11,
                           pixel_size_m=1e-6),
    lambda: paganin_filter(np.full((4, 4), np.nan), delta_beta=100, distance_m=0.1, wavelength_m=6e-11,
                           pixel_size_m=1e-6),
    lambda: paganin_filter(np.ones((4, 4)), delta_beta=0, distance_m=0.1, wavelength_m=6e-11, pixel_size_m=1e-6),
    lambda: paganin_filter(np.ones((4, 4)), delta_beta=100, distance_m=-0.1, wavelength_m=6e-11,
                           pixel_size_m=1e-6),
    lambda: paganin_filter(np.ones((4, 4)), delta_beta=100, distance_m=0.1, wavelength_m=6e-11, pixel_size_m=0),
    lambda: fresnel_propagate(np.ones((4, 0)), distance_m=0.1, wavelength_m=6e-11, pixel_size_m=1e-6),
    lambda: fresnel_propagate(np.ones((4, 4)), distance_m=np.inf, wavelength_m=6e-11, pixel_size_m=1e-6),
    lambda: fresnel_propagate(np.ones((4, 4)), distance_m=0.1, wavelength_m=-6e-11, pixel_size_m=1e-6),
    lambda: fresnel_propagate(np.array([["a", "b"]]), distance_m=0.1, wavelength_m=6e-11, pixel_size_m=1e-6),
    lambda: transmission(np.ones(3), -np.ones(3), wavelength_m=6e-11),
    lambda: transmission(np.ones(3), np.ones(4), wavelength_m=6e-11),
    lambda: transmission(np.ones(3), np.ones(3), wavelength_m=0),
    lambda: fresnel_number(1e-6, 0.0, 6e-11),
    lambda: detector_image(np.ones((6, 6)), psf_sigma_px=-1, binning=2),
    lambda: detector_image(np.ones((6, 6)), psf_sigma_px=1, binning=4),
    lambda: detector_image(np.ones((6, 6)), psf_sigma_px=1, binning=0),
], ids=["1d", "complex", "nan", "delta-beta", "negative-distance", "pixel", "empty", "inf-distance",
        "wavelength", "strings", "negative-beta", "shapes", "zero-wavelength", "zero-distance", "psf", "binning",
        "zero-binning"])
def test_bad_inputs_raise_input_errors(call):
    with pytest.raises(InputError):
        call()


# --- syris ---------------------------------------------------------------------------------------------------


def _pkg_resources_stand_in() -> types.ModuleType:
    """The two functions of ``pkg_resources`` that syris 0.3 uses: setuptools 82 and later no longer ship it."""
    def resource_filename(module: str, name: str) -> str:
        return os.path.join(os.path.dirname(sys.modules[module].__file__), name)

    def resource_string(module: str, name: str) -> bytes:
        with open(resource_filename(module, name), "rb") as f:
            return f.read()

    stand_in = types.ModuleType("pkg_resources")
    stand_in.resource_filename, stand_in.resource_string = resource_filename, resource_string
    return stand_in


@pytest.fixture(scope="module")
def syris_on_cpu():
    """syris initialised on an OpenCL CPU device (pocl), or a skip that says what is missing."""
    if importlib.util.find_spec("syris") is None:
        pytest.skip("syris is not installed (pip install 'aiax-bench[syris]')")
    cl = pytest.importorskip("pyopencl", reason="pyopencl is not installed (pip install 'aiax-bench[syris]')")
    try:
        platforms = cl.get_platforms()
    except cl.Error as err:
        pytest.skip(f"no OpenCL platform ({err}); pocl-binary-distribution provides a CPU one")
    found = [(p, i) for p in platforms for i, d in enumerate(p.get_devices()) if d.type & cl.device_type.CPU]
    if not found:
        pytest.skip("no OpenCL CPU device; pocl-binary-distribution provides one")
    platform, index = found[0]
    with pytest.MonkeyPatch.context() as mp:
        if importlib.util.find_spec("pkg_resources") is None:
            mp.setitem(sys.modules, "pkg_resources", _pkg_resources_stand_in())
        import syris
        import syris.config

        syris.init(platform_name=platform.name, device_index=index, loglevel=logging.WARNING)
    yield syris
    # Freed while the interpreter is whole: reikna's FFT plans otherwise free their buffers during shutdown.
    syris.config.OPENCL.fft_plans.clear()


def test_syris_gives_the_same_exit_wave_and_fresnel_intensity_as_numpy(syris_on_cpu):
    """The same PMMA sphere (radius 60 µm, 256² pixels of 1 µm, 20 keV, z = 0.2 m) through syris 0.3 and numpy.

    syris builds the exit wave ``exp(-k t (beta + i delta))`` from ``delta + i beta`` (its ``transfer``) and
    propagates by ``exp(-i pi lambda z f²)`` (its ``propagator`` kernel) on the grid it is given, without
    padding: the counterpart of ``pad=False``. Its default ``mollified=True`` also damps the high frequencies
    with a Gaussian; turned off here. syris computes in float32: the exit waves agree to 1e-5 and the
    intensities to 1e-4 of the image's range (max - min)."""
    import pyopencl.array as cl_array
    import quantities as q
    from syris import config as cfg
    from syris.imageprocessing import fft_2, ifft_2
    from syris.physics import compute_propagator, transfer

    n, pixel, z = 256, 1e-6, 0.2
    ri = refractive_index(PMMA[0], density_g_cm3=PMMA[1], energy_kev=20.0)
    thickness, _ = _sphere_thickness(n, pixel, 60e-6)
    wave = transmission(ri.delta * thickness, ri.beta * thickness, wavelength_m=LAM_20KEV)

    syris_wave = transfer(thickness * q.m, complex(ri.delta, ri.beta), LAM_20KEV * q.m, check=False).get()
    assert np.abs(syris_wave - wave).max() < 1e-5

    u = cl_array.to_device(cfg.OPENCL.queue, wave.astype(np.complex64))
    u = fft_2(u)
    u *= compute_propagator(n, z * q.m, LAM_20KEV * q.m, pixel * q.m, mollified=False)
    syris_intensity = np.abs(ifft_2(u).get()) ** 2
    intensity = np.abs(fresnel_propagate(wave, distance_m=z, wavelength_m=LAM_20KEV, pixel_size_m=pixel,
                                         pad=False)) ** 2
    span = intensity.max() - intensity.min()
    assert span > 0.5  # strong fringes: the comparison is not of two flat images
    assert np.abs(syris_intensity - intensity).max() < 1e-4 * span
