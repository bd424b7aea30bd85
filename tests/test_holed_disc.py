"""Discs with holes projected analytically (the synthetic HTC2022 counterpart): checked against exact
chords, against their own rasterisation projected by the project's operators, and for noise."""

from __future__ import annotations

import numpy as np
import pytest

from aiax_bench.recon import FanBeamProjector, ParallelBeamProjector
from aiax_bench.sim.holed_disc import (
    STYLES,
    ConvexPiece,
    Hole,
    HoledDisc,
    holed_discs,
    project_holed_disc,
    random_holed_disc,
    rasterize_holed_disc,
)

N = 128


def _circle(x: float, y: float, r: float) -> ConvexPiece:
    return ConvexPiece(np.zeros((0, 2)), np.zeros(0), (x, y, r, r, 0.0))


def test_chords_of_a_disc_with_a_round_hole_are_exact():
    """Parallel rays at angle 0 (the lines ``x = u``) through a disc of radius 40 with a hole of radius 10
    at ``x = 12``: path = 2 sqrt(40² - u²) - 2 sqrt(10² - (u - 12)²), to float64 rounding."""
    disc = HoledDisc(centre=(0.0, 0.0), radius=40.0, mu=1.0, holes=(Hole((_circle(12.0, -5.0, 10.0),)),))
    u = np.linspace(-45, 45, 181)
    p0 = np.stack([u, np.zeros_like(u)], axis=1)
    direction = np.tile([0.0, 1.0], (u.size, 1))
    expected = 2 * np.sqrt(np.maximum(40**2 - u**2, 0)) - 2 * np.sqrt(np.maximum(10**2 - (u - 12) ** 2, 0))
    np.testing.assert_allclose(disc.path_length(p0, direction), expected, rtol=0, atol=1e-9)


def test_a_cross_counts_the_overlap_of_its_bars_once():
    """Two bars crossing at right angles: a ray along one bar's axis crosses the cross's full length once,
    however the bars overlap (inclusion-exclusion of their intervals)."""
    bar_x = ConvexPiece(np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]]), np.array([20.0, 20, 3, 3]))
    bar_y = ConvexPiece(np.array([[1.0, 0], [-1, 0], [0, 1], [0, -1]]), np.array([3.0, 3, 15, 15]))
    cross = Hole((bar_x, bar_y))
    p0 = np.array([[0.0, 0.0], [0.0, 0.0], [0.0, 10.0]])
    direction = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    np.testing.assert_allclose(cross.chord(p0, direction), [40.0, 30.0, 6.0], atol=1e-12)


@pytest.mark.parametrize("style", STYLES)
def test_each_style_projects_as_its_rasterisation_does(style):
    """Every hole style, in parallel and in fan beam: the analytic projection and the project's Joseph
    operator applied to the 8x-supersampled rasterisation agree to 0.8 % RMS of the projection, and the
    holes are there: the disc without them differs by far more. Cells have walls of 2.4 pixels: a ray
    along a wall sees a narrow peak that Joseph's model spreads over a pixel (2.5 % allowed)."""
    tolerance = 0.025 if style == "cells" else 0.008
    disc = random_holed_disc(np.random.default_rng(3), style=style, radius=0.45 * N, centre_jitter=2.0, mu=0.005)
    assert disc.holes
    fraction = rasterize_holed_disc(disc, N, supersample=8)
    angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
    solid = HoledDisc(disc.centre, disc.radius, disc.mu, ())
    for projector in (ParallelBeamProjector(N, angles[:12] / 2, n_detector=N + 8),
                      FanBeamProjector(N, angles, n_detector=N + 24, det_spacing=1.3, source_origin=4 * N,
                                       origin_detector=2 * N, axis_offset=0.7)):
        analytic = project_holed_disc(disc, projector, subrays=4)
        discrete = projector.forward(fraction[None] * disc.mu)[0]
        scale = np.sqrt(np.mean(analytic**2))
        assert np.sqrt(np.mean((analytic - discrete) ** 2)) < tolerance * scale, type(projector).__name__
        assert np.sqrt(np.mean((project_holed_disc(solid, projector) - analytic) ** 2)) > 0.05 * scale


def test_noise_is_counting_noise_of_the_stated_photons():
    """With I0 photons, the air columns' line integrals have variance 1/I0 (within 10 %), around the offset."""
    disc = holed_discs(1, 1, radius=30.0)[0]
    projector = ParallelBeamProjector(N, np.linspace(0, np.pi, 200, endpoint=False), n_detector=N)
    noisy = project_holed_disc(disc, projector, photons=20000.0, offset=0.01, rng=np.random.default_rng(0))
    air = noisy[:, :10]
    assert abs(air.mean() - 0.01) < 5e-4
    assert abs(air.var() * 20000.0 - 1.0) < 0.1
    again = project_holed_disc(disc, projector, photons=20000.0, offset=0.01, rng=np.random.default_rng(0))
    assert np.array_equal(noisy, again)


def test_random_discs_hold_disjoint_holes_inside_the_disc():
    """Holes never overlap each other and leave a wall at the disc's edge, for every style and seed."""
    for disc in holed_discs(5, 8, radius=0.45 * N, centre_jitter=2.0):
        sub = (np.arange(N * 2) + 0.5) / 2 - 0.5 - (N - 1) / 2
        x, y = sub[None, :], sub[:, None]
        covered = sum(h.contains(x, y).astype(int) for h in disc.holes)
        assert covered.max() == 1, disc.style
        outside = (x - disc.centre[0]) ** 2 + (y - disc.centre[1]) ** 2 > (disc.radius - 1.0) ** 2
        assert not (covered.astype(bool) & outside).any(), disc.style


def test_bad_input_is_refused_in_one_line():
    from aiax_bench.errors import InputError, UnknownNameError

    with pytest.raises(UnknownNameError, match="hole style"):
        random_holed_disc(np.random.default_rng(0), style="stars")
    with pytest.raises(InputError, match=r"^pieces"):
        Hole(())
    projector = ParallelBeamProjector(16, np.zeros(2), n_detector=16)
    with pytest.raises(InputError, match=r"^rng"):
        project_holed_disc(holed_discs(0, 1, radius=6.0)[0], projector, photons=100.0)
