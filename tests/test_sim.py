"""Phantoms, projections and acquisition models of aiax_bench.sim."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from scipy import ndimage

from aiax_bench.errors import InputError, UnknownNameError
from aiax_bench.recon import ParallelBeamProjector, fbp
from aiax_bench.sim import (
    PHANTOMS,
    Acquisition,
    Flakes,
    am_metal_phantom,
    angle_subset,
    bin_detector,
    composite_phantom,
    continuous_rotation,
    cylinder_phantom,
    exposure_angles,
    foam_phantom,
    make_phantom,
    poisson_noise,
    project_phantom,
    project_voxels,
    reference_angles,
    render_fractions,
    ring_artefacts,
    scan,
)

# Small phantoms whose inclusions fit a 32-48 voxel sample.
SMALL = {
    "composite": dict(size=40, fibre_radius=1.5, fibre_length=30.0, pore_radius=(1.0, 2.0)),
    "am-metal": dict(size=40, lof_radius=(4.0, 8.0), gas_pore_radius=(1.0, 2.0), lof_porosity=0.02),
    "foam": dict(size=32),
}


@pytest.fixture(scope="module")
def phantoms():
    return {name: make_phantom(name, seed=0, **kw) for name, kw in SMALL.items()}


# --- Phantoms --------------------------------------------------------------------------------------


def test_registry_lists_new_families():
    assert {"foam", "composite", "am-metal"} <= set(PHANTOMS)
    with pytest.raises(UnknownNameError, match="composite"):
        make_phantom("no-such-family")


@pytest.mark.parametrize("name", ["composite", "am-metal"])
def test_deterministic_per_seed_and_different_across_seeds(phantoms, name):
    again = make_phantom(name, seed=0, **SMALL[name])
    other = make_phantom(name, seed=1, **SMALL[name])
    np.testing.assert_array_equal(again.labels, phantoms[name].labels)
    np.testing.assert_array_equal(again.fractions, phantoms[name].fractions)
    assert not np.array_equal(other.labels, phantoms[name].labels)


@pytest.mark.parametrize("name", ["composite", "am-metal", "foam"])
def test_labels_fractions_phases_consistent(phantoms, name):
    ph = phantoms[name]
    n_phases = len(ph.phases)
    assert ph.labels.dtype == np.uint8 and ph.fractions.dtype == np.float32
    assert ph.fractions.shape == (n_phases, *ph.shape)
    assert len(ph.attenuation) == n_phases
    assert ph.attenuation[0] == 0.0 and all(mu >= 0 for mu in ph.attenuation)
    np.testing.assert_allclose(ph.fractions.sum(axis=0), 1.0, atol=1e-5)
    assert ph.fractions.min() >= 0 and ph.fractions.max() <= 1
    np.testing.assert_array_equal(ph.labels, np.argmax(ph.fractions, axis=0))
    np.testing.assert_array_equal(ph.mask, ph.fractions[0] <= 0.5)
    assert ph.labels.max() < n_phases
    pure = ph.fractions.max(axis=0) == 1.0
    assert pure.mean() > 0.5  # partial volume only at boundaries
    assert ph.voxel_size_um > 0


def test_composite_has_matrix_fibre_pore(phantoms):
    ph = phantoms["composite"]
    assert ph.phases == ("air", "matrix", "fibre", "pore")
    assert set(np.unique(ph.labels)) == {0, 1, 2, 3}
    _, mu_matrix, mu_fibre, mu_pore = ph.attenuation
    assert mu_fibre > 10 * mu_matrix > 0 and mu_pore == 0
    p = ph.params
    assert p["n_fibres"] > 0 and p["n_pores"] > 0
    assert p["fibre_fraction"] == pytest.approx(p["fibre_fraction_target"], rel=0.25)
    assert p["porosity"] == pytest.approx(p["porosity_target"], rel=0.4)


def test_composite_fibres_do_not_overlap():
    ph = composite_phantom(40, seed=2, fibre_radius=1.5, fibre_length=30.0, porosity=0.0, min_gap=0.5)
    fibres = ph.inclusions[0]
    from aiax_bench.sim.phantoms.composite import _segment_distance

    c, a, h, r = fibres.centres, fibres.directions, fibres.half_lengths[0], fibres.radii[0]
    dist = _segment_distance(c[:, None], a[:, None], h, c[None], a[None], h)
    np.fill_diagonal(dist, np.inf)
    assert dist.min() >= 2 * r + 0.5 - 1e-9


def test_am_metal_has_gas_pores_and_flat_lack_of_fusion(phantoms):
    ph = phantoms["am-metal"]
    assert ph.phases == ("air", "metal", "gas_pore", "lack_of_fusion")
    assert set(np.unique(ph.labels)) == {0, 1, 2, 3}
    p = ph.params
    assert p["n_gas_pores"] > 0 and p["n_lof"] > 0
    assert p["porosity"] == pytest.approx(p["gas_porosity"] + p["lof_porosity"])
    # Lack-of-fusion defects are sheets along the layers: thin in z, wide in y-x.
    comps, n = ndimage.label(ph.labels == 3, structure=np.ones((3, 3, 3)))
    sizes = ndimage.sum_labels(np.ones_like(comps), comps, index=np.arange(1, n + 1))
    box = ndimage.find_objects(comps)[int(np.argmax(sizes))]
    dz, dy, dx = (s.stop - s.start for s in box)
    assert dz < min(dy, dx)
    assert 0 < p["matrix_transmission_centre"] < 1


@pytest.mark.parametrize("name", ["composite", "am-metal", "foam"])
def test_params_porosity_matches_labels(phantoms, name):
    ph = phantoms[name]
    void = {"composite": [3], "am-metal": [2, 3], "foam": [2]}[name]
    from_fractions = ph.fractions[void].sum() / (1.0 - ph.fractions[0]).sum()
    assert ph.params["porosity"] == pytest.approx(from_fractions, rel=1e-4)
    from_labels = np.isin(ph.labels, void).sum() / ph.mask.sum()
    if "porosity_labels" in ph.params:
        assert ph.params["porosity_labels"] == pytest.approx(from_labels, rel=1e-9)
    # Small pores lose their partial voxels to thresholding, hence the tolerance.
    assert from_labels == pytest.approx(ph.params["porosity"], rel=0.3)


def test_rendering_is_resolution_consistent(phantoms):
    # A 2x finer grid sampled once per voxel puts its samples where the 1x grid
    # with 2 sub-samples per edge does: block means must agree exactly.
    for name in ("composite", "am-metal"):
        ph = phantoms[name]
        fine = render_fractions(ph, scale=2, supersample=1, rows=(10, 20))
        p, z, y, x = fine.shape
        binned = fine.reshape(p, z // 2, 2, y // 2, 2, x // 2, 2).mean(axis=(2, 4, 6))
        np.testing.assert_allclose(binned, ph.fractions[:, 10:20], atol=1e-6)


def test_flake_band_classification_matches_brute_force(phantoms):
    ph = phantoms["am-metal"]
    flakes = next(g for g in ph.inclusions if isinstance(g, Flakes))
    n = ph.shape[0]
    off = np.array([-0.25, 0.25])
    axis = (np.arange(n)[:, None] + off[None]).ravel()
    pts = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
    inside = np.zeros(pts.shape[:3], dtype=bool)
    for i in range(len(flakes)):
        inside |= flakes.level(i, pts) < 0
    brute = inside.reshape(n, 2, n, 2, n, 2).mean(axis=(1, 3, 5))
    np.testing.assert_allclose(ph.fractions[3], brute, atol=1e-6)


def _pack_voids_against_every_candidate(rng, *, height, radius, porosity, max_void_radius, min_void_radius, min_wall,
                                        n_candidates):
    """The packing written plainly: every placement lowers the room of every remaining candidate."""
    z = rng.uniform(-max_void_radius, height + max_void_radius, n_candidates)
    rho = radius * np.sqrt(rng.uniform(0, 1, n_candidates))
    phi = rng.uniform(0, 2 * np.pi, n_candidates)
    pts = np.stack([z, rho * np.sin(phi), rho * np.cos(phi)], axis=1)
    room = np.minimum(radius - rho - min_wall, max_void_radius)
    placed, volume = [], 0.0
    while room.size and volume < porosity * np.pi * radius**2 * height:
        best = int(np.argmax(room))
        r = float(room[best])
        if r < min_void_radius:
            break
        centre = pts[best]
        placed.append((*centre, r))
        z_lo, z_hi = max(centre[0] - r, 0.0), min(centre[0] + r, height)
        if z_hi > z_lo:
            a, b = z_lo - centre[0], z_hi - centre[0]
            volume += np.pi * (r**2 * (b - a) - (b**3 - a**3) / 3)
        room = np.minimum(room, np.linalg.norm(pts - centre, axis=1) - r - min_wall)
        keep = room >= min_void_radius
        pts, room = pts[keep], room[keep]
    return np.asarray(placed, dtype=np.float64).reshape(-1, 4)


@pytest.mark.parametrize(("size", "max_void_radius", "min_wall"), [(40, 6.0, 1.0), (64, 4.0, 0.5), (48, 12.0, 2.0)])
def test_void_packing_places_what_placing_against_every_candidate_does(size, max_void_radius, min_wall):
    from aiax_bench.sim.phantoms._common import _pack_voids

    options = {"height": size, "radius": 0.45 * size, "porosity": 0.4, "max_void_radius": max_void_radius,
               "min_void_radius": 1.5, "min_wall": min_wall, "n_candidates": int(0.1 * size**3)}
    fast = _pack_voids(np.random.default_rng(5), **options)
    assert fast.shape[0] > 10
    np.testing.assert_array_equal(fast, _pack_voids_against_every_candidate(np.random.default_rng(5), **options))


def test_generation_is_fast():
    t0 = time.process_time()
    am_metal_phantom(64)
    composite_phantom(64)
    assert time.process_time() - t0 < 20


@pytest.mark.parametrize("call", [
    lambda: composite_phantom(32, cylinder_radius=0.6),
    lambda: composite_phantom(32, fibre_radius=10.0),
    lambda: composite_phantom(32, porosity=-0.1),
    lambda: composite_phantom(32, fibre_fraction=0.7),
    lambda: composite_phantom(32, pore_radius=(3.0, 1.0)),
    lambda: composite_phantom(32, orientations=()),
    lambda: am_metal_phantom(32, lof_radius=(5.0, 20.0)),
    lambda: am_metal_phantom(32, gas_porosity=float("nan")),
    lambda: am_metal_phantom(4),
    lambda: am_metal_phantom(32, voxel_size_um=0.0),
    lambda: cylinder_phantom(32, mu_solid=-1.0),
])
def test_bad_phantom_parameters_fail_fast(call):
    t0 = time.perf_counter()
    with pytest.raises(InputError):
        call()
    assert time.perf_counter() - t0 < 0.5


# --- Projections -----------------------------------------------------------------------------------


def test_voxel_projection_agrees_with_analytic_foam():
    ph = foam_phantom(32, seed=1)
    angles = reference_angles(16)
    analytic = project_phantom(ph, angles)
    voxels = project_voxels(ph, angles)
    assert voxels.shape == analytic.shape == (32, 16, 32)
    err = np.linalg.norm(voxels - analytic) / np.linalg.norm(analytic)
    assert err < 0.02
    sample = analytic > 0.05
    assert np.median(np.abs(voxels - analytic)[sample] / analytic[sample]) < 0.02


def _plain_void_paths(phantom, angles, *, su=4, sz=2):
    """The analytic projection's path lengths written plainly: the cylinder's chord, then each void's
    chord ``2 sqrt(r² - dz² - (u - u_c)²)`` subtracted in the voids' order, in IEEE float64 (``math``'s
    and NumPy's square roots are correctly rounded; torch's vectorised one on the CPU is not)."""
    n_z, n, _ = phantom.shape
    radius = float(phantom.params["cylinder_radius"]) * n
    centre = (n - 1) / 2
    u = ((np.arange(n * su) + 0.5) / su - 0.5) - centre
    z_sub = (np.arange(n_z * sz) + 0.5) / sz - 0.5
    cylinder = np.array([2.0 * math.sqrt(max(radius * radius - x * x, 0.0)) for x in u])
    path = np.broadcast_to(cylinder, (z_sub.size, angles.size, u.size)).copy()
    cos, sin = np.cos(angles), np.sin(angles)
    for cz, cy, cx, r in phantom.spheres.tolist():
        rows = np.nonzero(np.abs(z_sub - cz) < r)[0]
        if rows.size == 0:
            continue
        uc = (cx - centre) * cos + (cy - centre) * sin
        first = np.floor((uc - r + centre + 0.5) * su - 0.5).astype(int)
        for a in range(angles.size):
            columns = np.arange(max(first[a], 0), min(first[a] + int(np.ceil(2 * r * su)) + 3, u.size))
            offset = u[columns] - uc[a]
            for row in rows:
                dz = z_sub[row] - cz
                square = (r * r - dz * dz) - offset * offset
                hit = square > 0
                path[row, a, columns[hit]] -= 2.0 * np.sqrt(square[hit])
    mu_solid = phantom.attenuation[1] * phantom.voxel_size_um * 1e-4  # 1/voxel
    return mu_solid * np.maximum(path, 0.0)


def test_analytic_void_projection_is_plain_sequential_float64_on_any_thread_count(monkeypatch):
    """The compiled kernel subtracts each void's float64 chord in the voids' order, element by element,
    with a correctly rounded square root: the bytes of a plain NumPy loop, on one thread or three."""
    import torch

    import aiax_bench.sim.project as project

    ph = foam_phantom(40, seed=3)
    angles = reference_angles(24)
    expected = _plain_void_paths(ph, angles)
    seen = []
    monkeypatch.setattr(project, "_detector_average", lambda path, sz, su: seen.append(path.numpy().copy()))
    threads = torch.get_num_threads()
    try:
        for count in (1, 3):
            torch.set_num_threads(count)
            seen.clear()
            project_phantom(ph, angles, row_batch=ph.shape[0])
            assert np.array_equal(np.concatenate(seen), expected), count
    finally:
        torch.set_num_threads(threads)


def test_voxel_projection_of_uniform_cylinder_is_exact_enough():
    ph = cylinder_phantom(32)
    angles = reference_angles(8)
    analytic, voxels = project_phantom(ph, angles), project_voxels(ph, angles)
    chord = ph.attenuation[1] * ph.voxel_size_um * 1e-4 * 2 * ph.params["cylinder_radius"] * 32
    assert analytic.max() == pytest.approx(chord, rel=0.01)
    np.testing.assert_allclose(voxels, analytic, atol=0.01 * chord)


def test_project_phantom_dispatches_voxel_phantoms(phantoms):
    ph = phantoms["am-metal"]
    angles = reference_angles(6)
    rows = []
    out = project_phantom(ph, angles, supersample_u=2, row_batch=8, progress=rows.append)
    assert out.shape == (40, 6, 40) and out.dtype == np.float32
    assert sum(rows) == 40
    # Exact by design: the same call (row_batch included, which sets how many slices one
    # sparse product takes) and no sum whose grouping follows threads or timing.
    direct = project_voxels(ph, angles, supersample=2, supersample_u=2, row_batch=8)
    np.testing.assert_array_equal(out, direct)
    # Other batches only regroup slices between sparse products, which may round the
    # last float32 bit differently: equal to a few float32 ulps, not bit for bit.
    np.testing.assert_allclose(project_voxels(ph, angles, supersample=2, supersample_u=2, row_batch=3),
                               direct, rtol=1e-6, atol=1e-7)
    # Ti-6Al-4V at 40 keV: through the sample, but not opaque.
    assert 0.3 < out.max() < 5
    with pytest.raises(InputError):
        project_voxels(ph, [])


def test_project_voxels_out_of_core_and_in_small_angle_blocks_is_the_same_bytes(phantoms, monkeypatch):
    """A fine grid in a temporary file and operators of a few angles each (what 512³ needs) give the
    in-memory, 64-angle result bit for bit: each ray is summed alone, whatever its block."""
    import aiax_bench.sim.project as project

    ph, angles = phantoms["am-metal"], reference_angles(9)
    direct = project_voxels(ph, angles, supersample=2, supersample_u=2, row_batch=8)
    monkeypatch.setattr(project, "FINE_GRID_MEMORY_BYTES", 0)
    monkeypatch.setattr(project, "OPERATOR_BLOCK_BYTES", 24 * 80 * 80 * 4)  # 4 angles per operator
    opened = []
    real = project._FineGrid.__init__

    def spy(self, shape):
        real(self, shape)
        opened.append(self)

    monkeypatch.setattr(project._FineGrid, "__init__", spy)
    np.testing.assert_array_equal(project_voxels(ph, angles, supersample=2, supersample_u=2, row_batch=8), direct)
    assert opened[0].array is None and opened[0].file.closed  # went through the file, removed after


def test_fine_operators_kept_between_calls_change_no_bit(phantoms):
    """A build keeps the fine grid's operators from sample to sample: the second call builds none and gives
    the bytes of a call that builds its own; a set larger than the budget is not kept at all."""
    from aiax_bench.recon.projector import operator_nbytes
    from aiax_bench.sim.project import FineOperators

    ph, angles = phantoms["am-metal"], reference_angles(9)
    fresh = project_voxels(ph, angles, supersample=2, supersample_u=2)
    n_fine = ph.shape[-1] * 2
    kept = FineOperators(operator_nbytes(n_fine, angles.size, n_fine, matrices="forward"))
    np.testing.assert_array_equal(project_voxels(ph, angles, supersample=2, supersample_u=2, operators=kept), fresh)
    assert len(kept.kept) == 1 and 0 < kept.nbytes
    operators = [proj for _, _, proj in next(iter(kept.kept.values()))]
    np.testing.assert_array_equal(project_voxels(ph, angles, supersample=2, supersample_u=2, operators=kept), fresh)
    assert [proj for _, _, proj in next(iter(kept.kept.values()))] == operators  # the same objects, none built
    # Another set of angles does not fit what is left: built for the call, not kept.
    other = project_voxels(ph, reference_angles(7), supersample=2, supersample_u=2, operators=kept)
    assert len(kept.kept) == 1
    np.testing.assert_array_equal(other, project_voxels(ph, reference_angles(7), supersample=2, supersample_u=2))


# --- Acquisition models ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sino():
    rng = np.random.default_rng(5)
    return rng.uniform(0.0, 2.0, size=(8, 12, 16)).astype(np.float32)


def _mean_intensity(p):
    return np.exp(-p.astype(np.float64)).mean()


def test_binning_averages_intensity(sino):
    out = bin_detector(sino, 2)
    assert out.shape == (4, 12, 8)
    assert _mean_intensity(out) == pytest.approx(_mean_intensity(sino), rel=1e-6)
    expected = -np.log(np.exp(-sino[:2, 3, :2].astype(np.float64)).mean())
    assert out[0, 3, 0] == pytest.approx(expected, rel=1e-6)
    np.testing.assert_array_equal(bin_detector(sino, 1), sino)
    with pytest.raises(InputError, match="does not divide"):
        bin_detector(sino, 3)
    with pytest.raises(InputError):
        bin_detector(sino, 0)


def test_continuous_rotation_blurs_within_exposures(sino):
    out = continuous_rotation(sino, 3)
    assert out.shape == (8, 4, 16)
    assert _mean_intensity(out) == pytest.approx(_mean_intensity(sino), rel=1e-6)
    with pytest.raises(InputError, match="does not divide"):
        continuous_rotation(sino, 5)
    sub = exposure_angles(reference_angles(4), 3)
    assert sub.shape == (12,)
    step = np.pi / 4
    np.testing.assert_allclose(sub[:3], [-step / 3, 0.0, step / 3])
    # A centred cylinder looks the same from every angle: no blur at all.
    ph = cylinder_phantom(16)
    still = project_phantom(ph, reference_angles(4))
    blurred = continuous_rotation(project_phantom(ph, sub), 3)
    np.testing.assert_allclose(blurred, still, atol=1e-6)


def test_rings_are_constant_over_angles(sino):
    rng = np.random.default_rng(0)
    out = ring_artefacts(sino, gain_sigma=0.02, rng=rng)
    offset = out.astype(np.float64) - sino
    np.testing.assert_allclose(offset, offset[:, :1, :].repeat(sino.shape[1], axis=1), atol=1e-6)
    assert 0.005 < offset[:, 0, :].std() < 0.05
    again = ring_artefacts(sino, gain_sigma=0.02, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(out, again)
    with pytest.raises(InputError):
        ring_artefacts(sino, gain_sigma=-0.1, rng=rng)


@pytest.mark.parametrize("kwargs", [
    dict(n_angles=0), dict(n_angles=10, photons=-5.0), dict(n_angles=10, photons=0.0),
    dict(n_angles=10, binning=0), dict(n_angles=10, continuous_steps=0), dict(n_angles=10, ring_sigma=-1.0),
    dict(n_angles=20, n_reference=10), dict(n_angles=2.5),
])
def test_bad_acquisition_fails_when_made(kwargs):
    with pytest.raises(InputError):
        Acquisition(**kwargs)


def test_acquisition_checks_detector_before_projecting():
    ph = cylinder_phantom(30)
    acq = Acquisition(n_angles=10, binning=4)
    t0 = time.perf_counter()
    with pytest.raises(InputError, match="does not divide"):
        scan(ph, acq, rng=np.random.default_rng(0))
    assert time.perf_counter() - t0 < 0.5


def test_acquisition_apply_composes(sino):
    acq = Acquisition(n_angles=4, photons=1e4, binning=2, continuous_steps=3, ring_sigma=0.01)
    assert acq.projection_angles().size == 12
    out = acq.apply(sino, rng=np.random.default_rng(1))
    assert out.shape == acq.output_shape((8, 16)) == (4, 4, 8)
    again = acq.apply(sino, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(out, again)
    clean = bin_detector(continuous_rotation(sino, 3), 2)
    assert np.abs(out - clean).mean() < 0.1
    with pytest.raises(InputError):
        acq.apply(sino[:, :10], rng=np.random.default_rng(1))
    with pytest.raises(InputError, match="rng"):
        acq.apply(sino)
    noise_free = Acquisition(n_angles=12).apply(sino)
    np.testing.assert_allclose(noise_free, sino)


def test_sparse_acquisition_is_a_subset_of_the_reference():
    acq = Acquisition(n_angles=5, n_reference=20)
    np.testing.assert_allclose(acq.angles(), reference_angles(20)[angle_subset(20, 5)])
    ph = cylinder_phantom(16)
    out, angles = scan(ph, Acquisition(n_angles=5, n_reference=20, continuous_steps=2))
    assert out.shape == (16, 5, 16)
    np.testing.assert_allclose(angles, acq.angles())


def test_fbp_noise_variance_scales_as_one_over_photons():
    ph = cylinder_phantom(64)
    angles = reference_angles(90)
    clean = project_phantom(ph, angles)[24:40]
    projector = ParallelBeamProjector(64, angles, device="cpu")
    truth = fbp(clean, projector=projector)
    y, x = np.mgrid[:64, :64] - 31.5
    flat = np.hypot(y, x) < 20
    variances = []
    for k, photons in enumerate((1e3, 1e4, 1e5)):
        noisy = poisson_noise(clean, photons, rng=np.random.default_rng(k))
        variances.append(float((fbp(noisy, projector=projector) - truth)[:, flat].var()))
    ratios = np.array(variances[:-1]) / np.array(variances[1:])
    np.testing.assert_allclose(ratios, 10.0, rtol=0.15)


def test_noise_and_intensity_averages_in_slabs_are_the_whole_array_bytes(monkeypatch):
    """Counting noise, detector binning and the continuous-rotation blur run slab by slab (bounded memory):
    the same bytes as the whole-array formulas, the generator drawing in the same order."""
    import aiax_bench.sim.acquire as acquire

    line = np.random.default_rng(0).uniform(0, 3, (12, 16, 10)).astype(np.float32)
    whole_noise = (-np.log(np.maximum(np.random.default_rng(5).poisson(
        1000.0 * np.exp(-line.astype(np.float64))), 1) / 1000.0)).astype(np.float32)
    intensity = np.exp(-line.astype(np.float64))
    whole_binned = (-np.log(intensity.reshape(6, 2, 16, 5, 2).mean(axis=(1, 4)))).astype(np.float32)
    whole_blurred = (-np.log(intensity.reshape(12, 4, 4, 10).mean(axis=2))).astype(np.float32)
    monkeypatch.setattr(acquire, "_CHUNK_ELEMENTS", 300)  # slabs of one or two rows
    assert poisson_noise(line, 1000.0, rng=np.random.default_rng(5)).tobytes() == whole_noise.tobytes()
    assert bin_detector(line, 2).tobytes() == whole_binned.tobytes()
    assert continuous_rotation(line, 4).tobytes() == whole_blurred.tobytes()
