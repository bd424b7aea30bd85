"""Cone-beam FDK and the cone-beam projector against exact line integrals of spheres, computed from the
documented geometry; SIRT and CGLS through the projector."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _profiles import half_maximum_radius

from aiax_bench.errors import InputError
from aiax_bench.recon import ConeBeamProjector, FanBeamProjector, cgls, fbp, sirt
from aiax_bench.recon.cone import ConeBeamGeometry, fdk

N, Z = 48, 40
ROWS, COLS = 72, 80
GEOMETRY = ConeBeamGeometry(source_origin=150.0, origin_detector=75.0, det_spacing=1.5, row_spacing=1.5)
#: Spheres ``(x, y, z, radius, added attenuation per voxel)``: a sample, a hole, and an inclusion off the
#: orbit's plane (centres on voxel centres, so one slice cuts each through its middle).
SPHERES = [(0.0, 0.0, 0.5, 16.0, 1.0), (6.5, -3.5, 6.5, 5.0, -0.6), (-5.5, 3.5, -8.5, 4.0, 0.8)]
#: Along which x direction each radius is measured: one that meets no other sphere.
RADIUS_DIRECTIONS = [-1.0, -1.0, 1.0]


def _sphere_projections(angles, geometry=GEOMETRY, sub=3, *, spheres=SPHERES, rows=ROWS, cols=COLS):
    """Exact line integrals of ``spheres``, averaged over ``sub x sub`` points of each detector pixel."""
    g = geometry
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    across = ((np.arange(cols)[:, None] - (cols - 1) / 2 + offsets[None, :]) * g.det_spacing).ravel()
    across += g.detector_offset
    along = ((np.arange(rows)[:, None] - (rows - 1) / 2 + offsets[None, :]) * g.row_spacing).ravel() + g.row_offset
    out = np.zeros((len(angles), rows * sub, cols * sub))
    for k, theta in enumerate(angles):
        t = np.array([-np.sin(theta), np.cos(theta), 0.0])
        n = np.array([np.cos(theta), np.sin(theta), 0.0])
        source = -g.source_origin * t - g.axis_offset * n
        pixel = (source + g.source_detector * t)[None, None, :] + across[None, :, None] * n + \
            along[:, None, None] * np.array([0.0, 0.0, 1.0])
        direction = pixel - source
        direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
        for x, y, z, radius, value in spheres:
            v = np.array([x, y, z]) - source
            distance_sq = np.sum(np.cross(v, direction) ** 2, axis=-1)
            out[k] += value * 2 * np.sqrt(np.clip(radius**2 - distance_sq, 0, None))
    return out.reshape(len(angles), rows, sub, cols, sub).mean(axis=(2, 4)).astype(np.float32)


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


def _sphere_volume(supersample: int = 4, *, spheres=SPHERES, n=N, n_slices=Z) -> np.ndarray:
    """``spheres`` on the ``(Z, N, N)`` grid: each voxel's covered fraction times the attenuation."""
    sub = (np.arange(supersample) + 0.5) / supersample - 0.5
    z = (np.arange(n_slices)[:, None] - (n_slices - 1) / 2 + sub).ravel()
    xy = (np.arange(n)[:, None] - (n - 1) / 2 + sub).ravel()
    out = np.zeros((n_slices * supersample, n * supersample, n * supersample))
    for x, y, zc, radius, value in spheres:
        out += value * (((z[:, None, None] - zc) ** 2 + (xy[None, :, None] - y) ** 2
                         + (xy[None, None, :] - x) ** 2) <= radius**2)
    shape = (n_slices, supersample, n, supersample, n, supersample)
    return out.reshape(shape).mean(axis=(1, 3, 5)).astype(np.float32)


@pytest.fixture(scope="module")
def spheres_volume():
    return _sphere_volume()


def test_cone_projector_matches_the_exact_sphere_projections(spheres_volume):
    """Joseph's model through the rasterised spheres against the exact line integrals at the pixel centres:
    RMS difference within 1.5 % of the largest line integral (its staircase and linear interpolation
    against exact chords, as for the fan-beam projector in the orbit's plane), each angle's total
    within 1 %, and off the plane the spheres sit where the exact ones do."""
    angles = np.linspace(0, 2 * np.pi, 12, endpoint=False)
    projector = ConeBeamProjector(GEOMETRY, angles, n_pixels=N, n_slices=Z, n_rows=ROWS, n_detector=COLS)
    projected = projector.forward(spheres_volume)
    exact = _sphere_projections(angles, sub=1)
    assert projected.shape == exact.shape == (angles.size, ROWS, COLS)
    assert np.sqrt(np.mean((projected - exact) ** 2)) < 0.015 * exact.max()
    np.testing.assert_allclose(projected.sum(axis=(1, 2)), exact.sum(axis=(1, 2)), rtol=0.01)
    # The inclusion 8.5 voxels below the plane: the rows below the middle match the exact ones clearly
    # better than with the inclusion a voxel higher or lower.
    rows = slice(0, ROWS // 2 - 2)
    error = np.sqrt(np.mean((projected[:, rows] - exact[:, rows]) ** 2))
    for shift in (-1.0, 1.0):
        moved = [(x, y, z + shift if z < -5 else z, r, v) for x, y, z, r, v in SPHERES]
        shifted = _sphere_projections(angles, sub=1, spheres=moved)
        assert error < 0.8 * np.sqrt(np.mean((projected[:, rows] - shifted[:, rows]) ** 2)), shift


def test_cone_projector_middle_row_is_the_fan_beam_projector():
    """An odd number of rows and slices puts a row and a slice on the orbit's plane: the middle row is the
    fan-beam projection of the middle slice."""
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    g = ConeBeamGeometry(source_origin=150.0, origin_detector=75.0, det_spacing=1.5, row_spacing=1.5,
                         axis_offset=0.7, detector_offset=1.1)
    projector = ConeBeamProjector(g, angles, n_pixels=N, n_slices=9, n_rows=11, n_detector=COLS)
    volume = np.random.default_rng(1).random((9, N, N)).astype(np.float32)
    fan = FanBeamProjector(N, angles, n_detector=COLS, det_spacing=1.5, source_origin=150.0, origin_detector=75.0,
                           axis_offset=0.7, detector_offset=1.1)
    expected = fan.forward(volume[4][None])[0]
    np.testing.assert_allclose(projector.forward(volume)[:, 5], expected, rtol=0, atol=1e-5 * expected.max())


def test_cone_back_projection_is_the_adjoint():
    angles = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    projector = ConeBeamProjector(GEOMETRY, angles, n_pixels=24, n_slices=20, n_rows=30, n_detector=36)
    rng = np.random.default_rng(2)
    x = rng.random(projector.volume_shape)
    y = rng.random(projector.data_shape)
    left = np.sum(projector.forward(x).astype(np.float64) * y)
    right = np.sum(x * projector.backward(y).astype(np.float64))
    assert abs(left - right) < 1e-5 * abs(left)


#: Half-size spheres for the iterative reconstructions: a 24² x 16 volume on a 30 x 40 detector.
SMALL_SPHERES = [(0.0, 0.0, 0.5, 8.0, 1.0), (3.5, -1.5, 2.5, 2.5, -0.6), (-2.5, 1.5, -3.5, 2.0, 0.8)]


def test_sirt_and_cgls_on_cone_beam_data_beat_fdk_from_few_views():
    """From 16 views of the exact projections, SIRT and CGLS (whole-volume problems) lower their residual at
    every iteration and end closer to the rasterised spheres than FDK of the same views."""
    n, z, rows, cols = 24, 16, 30, 40
    angles = np.linspace(0, 2 * np.pi, 16, endpoint=False)
    projections = _sphere_projections(angles, spheres=SMALL_SPHERES, rows=rows, cols=cols)
    projector = ConeBeamProjector(GEOMETRY, angles, n_pixels=n, n_slices=z, n_rows=rows, n_detector=cols)
    truth = _sphere_volume(spheres=SMALL_SPHERES, n=n, n_slices=z)
    inside = np.abs(np.arange(z) - (z - 1) / 2) < 6  # slices every ray of the scan crosses

    def error(volume):
        return float(np.sqrt(np.mean((volume[inside] - truth[inside]) ** 2)))

    fdk_error = error(fdk(projections, angles, GEOMETRY, n_pixels=n, n_slices=z))
    for method, options in ((sirt, {"nonneg": True}), (cgls, {})):
        volume, residuals = method(projections, projector=projector, n_iter=20, return_residuals=True, **options)
        assert residuals.shape == (20,)
        assert np.all(np.diff(residuals) <= 1e-6 * residuals[0]), method.__name__
        assert error(volume) < fdk_error, (method.__name__, error(volume), fdk_error)


def test_tv_refuses_a_cone_beam_projector():
    from aiax_bench.recon import tv_reconstruction

    projector = ConeBeamProjector(GEOMETRY, np.zeros(2), n_pixels=8, n_slices=4, n_rows=4, n_detector=10)
    with pytest.raises(InputError, match="slice by slice"):
        tv_reconstruction(np.zeros(projector.data_shape, np.float32), projector=projector, weight=0.1, n_iter=2)


def test_fdk_of_a_short_scan_is_parker_weighted(volume):
    """180 degrees plus the fan and 6 more: FDK recovers the sample's middle slice as the full turn does."""
    fan = 2 * np.degrees(np.arctan((COLS / 2) * GEOMETRY.det_spacing / GEOMETRY.source_detector))
    angles = np.radians(np.arange(0, 180 + fan + 6, 2.0))
    short = fdk(_sphere_projections(angles, sub=1), angles, GEOMETRY, n_pixels=N, n_slices=Z)
    y, x = np.mgrid[:N, :N] - (N - 1) / 2
    inner = np.hypot(x, y) < 12
    middle = _slice_of(0.5)
    full_error = np.sqrt(np.mean((volume[middle][inner] - 1.0) ** 2))
    short_error = np.sqrt(np.mean((short[middle][inner] - 1.0) ** 2))
    assert short_error < max(1.5 * full_error, 0.05), (short_error, full_error)


def test_compiled_cone_projection_is_the_tensor_path_bit_for_bit_on_any_thread_count():
    """The CPU forward projection runs a compiled loop; the tensor path (CUDA's) gives the same bytes."""
    import numba
    import torch

    geometry = ConeBeamGeometry(source_origin=60.0, origin_detector=30.0, det_spacing=1.5, row_spacing=1.5,
                                detector_offset=0.7, axis_offset=0.3, row_offset=-0.4)
    angles = np.linspace(0.0, 2 * np.pi, 13, endpoint=False)
    projector = ConeBeamProjector(geometry, angles, n_pixels=16, n_slices=12, n_rows=15, n_detector=21)
    volume = np.random.default_rng(3).random((12, 16, 16), dtype=np.float32)
    tensor_path = projector._forward_tensor(torch.from_numpy(volume).reshape(-1)).numpy()
    before = numba.get_num_threads()
    try:
        for threads in (1, before):
            numba.set_num_threads(threads)
            np.testing.assert_array_equal(projector.forward(volume), tensor_path)
    finally:
        numba.set_num_threads(before)
