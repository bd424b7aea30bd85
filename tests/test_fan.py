"""Fan-beam projector, FBP and SIRT, against analytic line integrals and astra-toolbox's CPU fan beam.

The geometry is rebuilt here from its documented description (source, central ray, detector pixel
centres), independently of the projector's code. astra-toolbox's ``fanflat`` geometry at angle
``theta``, applied to the slice flipped upside down, is ours at ``theta`` (its image ``y`` axis
points the other way); its ``strip_fanflat`` projector (area-weighted strips) is the reference.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _profiles import half_maximum_radius

from aiax_bench.errors import InputError
from aiax_bench.recon import FanBeamProjector, ParallelBeamProjector, cgls, fbp, sirt
from aiax_bench.recon.fan import parker_weights as fan_parker

N = 64
D = 100
SOD, ODD, SPACING = 160.0, 80.0, 1.5
#: Discs ``(x, y, radius, added attenuation per voxel)``: a sample with a hole and an inclusion.
DISCS = [(0.0, 0.0, 25.0, 1.0), (9.0, -6.0, 6.5, -0.6), (-11.0, 8.0, 4.5, 0.7)]
#: Along which x direction each disc's radius is measured: one that meets no other disc.
RADIUS_DIRECTIONS = [-1.0, 1.0, 1.0]


def _rays(angles, *, n_det=D, spacing=SPACING, sod=SOD, odd=ODD, detector_offset=0.0, axis_offset=0.0,
          sub=1):
    """Source (A, 2) and unit ray directions (A, D * sub, 2), from the documented geometry."""
    angles = np.asarray(angles, dtype=np.float64)
    t = np.stack([-np.sin(angles), np.cos(angles)], axis=-1)
    normal = np.stack([np.cos(angles), np.sin(angles)], axis=-1)
    source = -sod * t - axis_offset * normal
    offsets = (np.arange(sub) + 0.5) / sub - 0.5
    along = ((np.arange(n_det)[:, None] - (n_det - 1) / 2 + offsets[None, :]) * spacing).ravel()
    pixel = (source[:, None, :] + (sod + odd) * t[:, None, :]
             + (detector_offset + along)[None, :, None] * normal[:, None, :])
    direction = pixel - source[:, None, :]
    return source, direction / np.linalg.norm(direction, axis=-1, keepdims=True)


def _distance(source, direction, centre):
    v = np.asarray(centre)[None, None, :] - source[:, None, :]
    return np.abs(v[..., 0] * direction[..., 1] - v[..., 1] * direction[..., 0])


def _disc_sinogram(angles, sub=5, **geometry):
    """Exact line integrals of :data:`DISCS`, averaged over ``sub`` points across each detector pixel."""
    source, direction = _rays(angles, sub=sub, **geometry)
    total = np.zeros(direction.shape[:2])
    for x, y, radius, value in DISCS:
        total += value * 2 * np.sqrt(np.clip(radius**2 - _distance(source, direction, (x, y)) ** 2, 0, None))
    return total.reshape(len(angles), -1, sub).mean(axis=-1).astype(np.float32)


def _grid(n=N):
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    return x, y


def _disc_image(n=N):
    x, y = _grid(n)
    image = np.zeros((n, n))
    for cx, cy, radius, value in DISCS:
        image += value * ((x - cx) ** 2 + (y - cy) ** 2 < radius**2)
    return image


def _projector(angles, **kwargs):
    geometry = dict(n_detector=D, det_spacing=SPACING, source_origin=SOD, origin_detector=ODD, device="cpu")
    geometry.update(kwargs)
    return FanBeamProjector(N, angles, **geometry)


def _full_turn(n_angles=180):
    return np.linspace(0, 2 * np.pi, n_angles, endpoint=False)


@pytest.mark.parametrize(("detector_offset", "axis_offset"), [(0.0, 0.0), (7.5, 0.0), (0.0, -3.0), (-4.0, 2.5)])
def test_forward_matches_analytic_line_integrals_of_a_gaussian(detector_offset, axis_offset):
    # A smooth blob: Joseph's interpolation is then accurate, so what remains is the geometry.
    angles = _full_turn(48)
    centre, sigma = (7.0, -4.0), 3.5
    x, y = _grid()
    blob = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2)).astype(np.float32)
    source, direction = _rays(angles, detector_offset=detector_offset, axis_offset=axis_offset)
    exact = math.sqrt(2 * math.pi) * sigma * np.exp(-_distance(source, direction, centre) ** 2 / (2 * sigma**2))
    ours = _projector(angles, detector_offset=detector_offset, axis_offset=axis_offset).forward(blob)
    # Stated tolerance: 1 % of the largest line integral.
    assert np.abs(ours - exact).max() < 0.01 * exact.max()


def test_far_source_is_the_parallel_beam_projector():
    angles = np.linspace(0, np.pi, 30, endpoint=False)
    far = 1e7
    fan = FanBeamProjector(N, angles, n_detector=N, source_origin=far, origin_detector=far * 1e-9, device="cpu")
    parallel = ParallelBeamProjector(N, angles, device="cpu")
    image = np.random.default_rng(0).random((N, N)).astype(np.float32)
    assert np.allclose(fan.forward(image), parallel.forward(image), rtol=0, atol=1e-4 * N)


def test_adjoint():
    projector = _projector(_full_turn(40), detector_offset=3.0, axis_offset=-1.5)
    rng = np.random.default_rng(1)
    x = rng.random((2, N, N)).astype(np.float32)
    y = rng.random((2, 40, D)).astype(np.float32)
    left = float(np.vdot(projector.forward(x).astype(np.float64), y))
    right = float(np.vdot(x, projector.backward(y).astype(np.float64)))
    assert left == pytest.approx(right, rel=1e-5)


@pytest.fixture(scope="module")
def astra():
    return pytest.importorskip("astra")


def _astra_geometry(astra, angles):
    vol_geom = astra.create_vol_geom(N, N)
    proj_geom = astra.create_proj_geom("fanflat", SPACING, D, np.asarray(angles), SOD, ODD)
    return vol_geom, proj_geom


def test_forward_matches_astra_strip_fanflat(astra):
    angles = _full_turn(90)
    x, y = _grid()
    image = (np.exp(-((x - 5) ** 2 + (y + 9) ** 2) / 60.0) + 0.5 * (x**2 + y**2 < 20**2)).astype(np.float32)
    vol_geom, proj_geom = _astra_geometry(astra, angles)
    pid = astra.create_projector("strip_fanflat", proj_geom, vol_geom)
    try:
        sid, reference = astra.create_sino(np.ascontiguousarray(image[::-1]), pid)
        astra.data2d.delete(sid)
    finally:
        astra.projector.delete(pid)
    ours = _projector(angles).forward(image)
    # Stated tolerance: RMS 0.5 % and largest 3 % of the largest line integral (strips against Joseph's
    # lines differ most where a ray grazes the disc's edge).
    scale = reference.max()
    assert np.sqrt(np.mean((ours - reference) ** 2)) < 0.005 * scale
    assert np.abs(ours - reference).max() < 0.03 * scale


@pytest.mark.parametrize(("n_angles", "span"), [(180, 2 * np.pi), (60, np.pi / 2)])
def test_sirt_matches_astra(astra, n_angles, span):
    angles = np.linspace(0, span, n_angles, endpoint=False)
    sinogram = _disc_sinogram(angles)
    ours = sirt(sinogram, projector=_projector(angles), n_iter=40)
    vol_geom, proj_geom = _astra_geometry(astra, angles)
    pid = astra.create_projector("strip_fanflat", proj_geom, vol_geom)
    sid = astra.data2d.create("-sino", proj_geom, sinogram)
    rid = astra.data2d.create("-vol", vol_geom, 0)
    config = astra.astra_dict("SIRT")
    config.update(ProjectorId=pid, ProjectionDataId=sid, ReconstructionDataId=rid)
    aid = astra.algorithm.create(config)
    try:
        astra.algorithm.run(aid, 40)
        reference = astra.data2d.get(rid)[::-1]
    finally:
        astra.algorithm.delete(aid)
        astra.data2d.delete([sid, rid])
        astra.projector.delete(pid)
    x, y = _grid()
    inside = x**2 + y**2 < 28**2
    scale = np.abs(reference[inside]).max()
    # Stated tolerance: RMS difference within 1 % of the image's largest value inside the sample.
    assert np.sqrt(np.mean((ours - reference)[inside] ** 2)) < 0.01 * scale


def test_cgls_fits_the_data():
    angles = _full_turn(120)
    sinogram = _disc_sinogram(angles)
    projector = _projector(angles)
    _, residuals = cgls(sinogram, projector=projector, n_iter=15, return_residuals=True)
    assert residuals[-1, ...].max() < 0.05 * np.linalg.norm(sinogram)


@pytest.mark.parametrize(("detector_offset", "axis_offset"), [(0.0, 0.0), (6.0, -2.0)])
def test_fbp_of_analytic_discs_recovers_values_and_radii(detector_offset, axis_offset):
    angles = _full_turn(360)
    geometry = dict(detector_offset=detector_offset, axis_offset=axis_offset)
    image = fbp(_disc_sinogram(angles, **geometry), projector=_projector(angles, **geometry))
    truth = _disc_image()
    x, y = _grid()
    # Away from the edges the attenuation comes back: RMS within 0.02 of the discs' 1.0.
    interior = np.ones((N, N), dtype=bool)
    for cx, cy, radius, _ in DISCS:
        edge = np.abs(np.hypot(x - cx, y - cy) - radius)
        interior &= edge > 2.5
    interior &= np.hypot(x, y) < 25
    assert np.sqrt(np.mean((image - truth)[interior] ** 2)) < 0.02
    # Radii from the half-maximum crossing along a ray out of each disc's centre: within half a voxel.
    for (cx, cy, radius, _), sign in zip(DISCS, RADIUS_DIRECTIONS, strict=True):
        found = half_maximum_radius(image, cx, cy, radius, sign, margin=4)
        assert abs(found - radius) < 0.5, (cx, cy, radius, found)


def test_fbp_weights_a_full_turn_half_and_a_short_arc_whole():
    full = _projector(_full_turn(90))
    arc = _projector(np.linspace(0, np.pi / 3, 30, endpoint=False))
    assert full.angle_weights().sum() == pytest.approx(np.pi)
    assert arc.angle_weights().sum() == pytest.approx(np.pi / 3)


def test_fbp_threads_do_not_change_a_bit():
    import torch

    angles = _full_turn(90)
    sinogram = np.stack([_disc_sinogram(angles)] * 3)
    projector = _projector(angles)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = fbp(sinogram, projector=projector)
        torch.set_num_threads(2)
        two = fbp(sinogram, projector=projector)
    finally:
        torch.set_num_threads(before)
    assert one.tobytes() == two.tobytes()


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"source_origin": 0.0}, "source_origin"),
        ({"source_origin": 30.0}, "source_origin"),  # inside the slice
        ({"origin_detector": -1.0}, "origin_detector"),
        ({"detector_offset": float("nan")}, "detector_offset"),
        ({"axis_offset": "2"}, "axis_offset"),
    ],
)
def test_projector_rejects_bad_geometry(kwargs, field):
    with pytest.raises(InputError) as excinfo:
        _projector(_full_turn(4), **kwargs)
    assert str(excinfo.value).startswith(field)


def test_fbp_refuses_a_matrix_back_projection_for_fan_beam():
    angles = _full_turn(8)
    with pytest.raises(InputError, match="backprojector"):
        fbp(np.zeros((8, D), np.float32), projector=_projector(angles), backprojector="fourier")


def _disc_scan(span_degrees: float):
    """A disc with a hole, projected exactly in a 30-degree fan over ``span_degrees`` in 1 degree steps."""
    from aiax_bench.sim.holed_disc import ConvexPiece, Hole, HoledDisc, project_holed_disc, rasterize_holed_disc

    n = 128
    hole = Hole((ConvexPiece(np.zeros((0, 2)), np.zeros(0), (15.0, 10.0, 8.0, 8.0, 0.0)),))
    disc = HoledDisc((3.0, -2.0), 50.0, 0.02, (hole,))
    step = math.radians(1.0)
    angles = np.arange(0, math.radians(span_degrees) - step / 2, step)
    projector = FanBeamProjector(n, angles, n_detector=200, det_spacing=1.2, source_origin=300.0,
                                 origin_detector=150.0, lazy=True)
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    inner = np.hypot(x - 3, y + 2) < 45
    return project_holed_disc(disc, projector), projector, rasterize_holed_disc(disc, n) * 0.02, inner


def test_short_scan_fbp_is_parker_weighted(monkeypatch):
    """A short scan (180 degrees plus the 29.9-degree fan, and 4 more) reconstructs the disc as well as a full
    turn does (RMS error within 1.5 % of its attenuation, as for the full turn); without Parker's weights
    the twice-measured lines count twice (over 10 %)."""
    import aiax_bench.recon.fan as fan_module

    full, full_projector, truth, inner = _disc_scan(360)
    short, short_projector, _, _ = _disc_scan(214)
    assert fan_module.parker_weights(full_projector.angles, full_projector._fan_angles()) is None

    def error(sinogram, projector):
        return float(np.sqrt(np.mean((fbp(sinogram, projector=projector) - truth)[inner] ** 2)) / 0.02)

    assert error(full, full_projector) < 0.015
    assert error(short, short_projector) < 0.015
    monkeypatch.setattr(fan_module, "parker_weights", lambda angles, gamma: None)
    assert error(short, short_projector) > 0.1


def test_parker_weights_leave_limited_angle_and_full_scans_alone():
    gamma = np.linspace(-0.2, 0.2, 9)
    assert fan_parker(np.linspace(0, np.pi / 2, 90), gamma) is None  # shorter than 180 degrees plus the fan
    assert fan_parker(np.linspace(0, 2 * np.pi, 720, endpoint=False), gamma) is None
    weights = fan_parker(np.linspace(0, np.pi + 0.5, 300, endpoint=False), gamma)
    assert weights.shape == (300, 9) and weights.min() >= 0 and weights.max() <= 1
    assert np.all(weights[150] == 1.0)  # the middle of the scan measures every line once
