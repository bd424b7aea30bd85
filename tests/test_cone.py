"""Cone-beam FDK against exact line integrals of spheres, computed from the documented geometry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _profiles import half_maximum_radius

from aiax_bench.errors import InputError
from aiax_bench.recon import FanBeamProjector, fbp
from aiax_bench.recon.cone import ConeBeamGeometry, fdk

N, Z = 48, 40
ROWS, COLS = 72, 80
GEOMETRY = ConeBeamGeometry(source_origin=150.0, origin_detector=75.0, det_spacing=1.5, row_spacing=1.5)
#: Spheres ``(x, y, z, radius, added attenuation per voxel)``: a sample, a hole, and an inclusion off the
#: orbit's plane (centres on voxel centres, so one slice cuts each through its middle).
SPHERES = [(0.0, 0.0, 0.5, 16.0, 1.0), (6.5, -3.5, 6.5, 5.0, -0.6), (-5.5, 3.5, -8.5, 4.0, 0.8)]
#: Along which x direction each radius is measured: one that meets no other sphere.
RADIUS_DIRECTIONS = [-1.0, -1.0, 1.0]


def _sphere_projections(angles, geometry=GEOMETRY, sub=3):
    """Exact line integrals of :data:`SPHERES`, averaged over ``sub x sub`` points of each detector pixel."""
    g = geometry
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    cols = ((np.arange(COLS)[:, None] - (COLS - 1) / 2 + offsets[None, :]) * g.det_spacing).ravel() + g.detector_offset
    rows = ((np.arange(ROWS)[:, None] - (ROWS - 1) / 2 + offsets[None, :]) * g.row_spacing).ravel() + g.row_offset
    out = np.zeros((len(angles), ROWS * sub, COLS * sub))
    for k, theta in enumerate(angles):
        t = np.array([-np.sin(theta), np.cos(theta), 0.0])
        n = np.array([np.cos(theta), np.sin(theta), 0.0])
        source = -g.source_origin * t - g.axis_offset * n
        pixel = (source + g.source_detector * t)[None, None, :] + cols[None, :, None] * n + \
            rows[:, None, None] * np.array([0.0, 0.0, 1.0])
        direction = pixel - source
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
        for x, y, z, radius, value in SPHERES:
            v = np.array([x, y, z]) - source
            distance_sq = np.sum(np.cross(v, direction) ** 2, axis=-1)
            out[k] += value * 2 * np.sqrt(np.clip(radius**2 - distance_sq, 0, None))
    return out.reshape(len(angles), ROWS, sub, COLS, sub).mean(axis=(2, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def full_turn():
    angles = np.linspace(0, 2 * np.pi, 180, endpoint=False)
    return angles, _sphere_projections(angles)


@pytest.fixture(scope="module")
def volume(full_turn):
    angles, projections = full_turn
    return fdk(projections, angles, GEOMETRY, n_pixels=N, n_slices=Z)


def _slice_of(z: float) -> int:
    return round(z + (Z - 1) / 2)


def test_fdk_recovers_every_sphere_radius_within_half_a_voxel(volume):
    for (x, y, z, radius, _), sign in zip(SPHERES, RADIUS_DIRECTIONS, strict=True):
        image = volume[_slice_of(z)]
        found = half_maximum_radius(image, x, y, radius, sign, margin=3)
        assert abs(found - radius) < 0.5, (x, y, z, radius, found)


def test_fdk_recovers_the_attenuation_inside_the_spheres(volume):
    y, x = np.mgrid[:N, :N] - (N - 1) / 2
    # The sample's middle slice away from its edge, and the inclusion 8.5 voxels off the orbit's plane.
    image = volume[_slice_of(0.5)]
    inner = np.hypot(x, y) < 12
    assert np.sqrt(np.mean((image[inner] - 1.0) ** 2)) < 0.05
    inclusion = volume[_slice_of(-8.5)][np.hypot(x + 5.5, y - 3.5) < 2]
    assert abs(float(inclusion.mean()) - 1.8) < 0.1


def test_fdk_mid_plane_is_fan_beam_fbp(full_turn):
    """In the orbit's plane FDK is fan-beam FBP: an odd number of rows puts one on the plane exactly."""
    angles, _ = full_turn
    rng = np.random.default_rng(0)
    projections = rng.random((angles.size, 3, COLS)).astype(np.float32)
    volume = fdk(projections, angles, GEOMETRY, n_pixels=N, n_slices=1)
    fan = FanBeamProjector(N, angles, n_detector=COLS, det_spacing=GEOMETRY.det_spacing,
                           source_origin=GEOMETRY.source_origin, origin_detector=GEOMETRY.origin_detector,
                           device="cpu", lazy=True)
    expected = fbp(projections[:, 1], projector=fan)
    assert np.allclose(volume[0], expected, rtol=0, atol=1e-5 * np.abs(expected).max())


def test_fdk_threads_do_not_change_a_bit(full_turn):
    angles, projections = full_turn
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fdk(projections[::4], angles[::4], GEOMETRY, n_pixels=N, n_slices=8)
        torch.set_num_threads(2)
        two = fdk(projections[::4], angles[::4], GEOMETRY, n_pixels=N, n_slices=8)
    finally:
        torch.set_num_threads(before)
    assert one.tobytes() == two.tobytes()


@pytest.mark.parametrize(("kwargs", "field"), [({"source_origin": -1.0}, "source_origin"),
                                               ({"row_spacing": 0}, "row_spacing"),
                                               ({"row_offset": float("inf")}, "row_offset")])
def test_geometry_rejects_bad_lengths(kwargs, field):
    with pytest.raises(InputError) as excinfo:
        ConeBeamGeometry(**{"source_origin": 100.0, "origin_detector": 50.0, **kwargs})
    assert str(excinfo.value).startswith(field)


def test_fdk_rejects_projections_that_do_not_match_the_angles():
    with pytest.raises(InputError, match="projections"):
        fdk(np.zeros((4, 3, 5), np.float32), np.zeros(5), GEOMETRY, n_pixels=8, n_slices=2)
