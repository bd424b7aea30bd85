"""foam@3.0: the cut foam projected exactly, its pixel averages and noise in IEEE arithmetic, and the dataset."""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest

from aiax_bench.errors import InputError
from aiax_bench.sim import foam_phantom, make_phantom, poisson_noise_blocks, project_phantom, reference_angles
from aiax_bench.sim._ieee_math import exp_ieee, log_ieee
from aiax_bench.sim.phantoms.physical import foam_um_phantom

DATASET = "foam@3.0"


def _ulps(values: np.ndarray, reference: np.ndarray) -> np.ndarray:
    return np.abs(values - reference) / np.spacing(np.abs(reference))


@numba.njit
def _ieee_elementwise(use_exp, x):
    """The library's IEEE ``exp`` (or ``log``) of each element: the kernels inline into compiled loops, so they
    are called from one (compiled on first use)."""
    out = np.empty_like(x)
    flat, target = x.ravel(), out.ravel()
    for i in range(flat.size):
        target[i] = exp_ieee(flat[i]) if use_exp else log_ieee(flat[i])
    return out


def test_ieee_exp_and_log_are_within_a_few_ulp_of_numpys():
    x = np.concatenate([-np.random.default_rng(0).uniform(0, 700, 200_000), np.linspace(-1, 1, 100_001),
                        [0.0, -1e-300, math.log(2.0), 700.0]])
    assert _ulps(_ieee_elementwise(True, x), np.exp(x)).max() <= 1.0
    assert _ieee_elementwise(True, np.array([0.0, -701.0])).tolist() == [1.0, 0.0]
    y = np.concatenate([np.exp(-np.random.default_rng(1).uniform(0, 700, 200_000)), np.linspace(0.5, 2, 100_001),
                        [1.0, 0.5, 1e-300, 3.0e300]])
    y = y[y != 1.0]
    assert _ulps(_ieee_elementwise(False, y), np.log(y)).max() <= 3.0
    assert _ieee_elementwise(False, np.array([1.0]))[0] == 0.0


def _numeric_path(u: float, angle: float, *, radius: float, void: tuple[float, float, float], z: float,
                  void_z: float, samples: int = 400_001) -> float:
    """Length of the ray at offset ``u`` through the cylinder less one void, by dense midpoint sampling."""
    t = (np.arange(samples) + 0.5) / samples * 2 * radius - radius
    x = u * math.cos(angle) - t * math.sin(angle)
    y = u * math.sin(angle) + t * math.cos(angle)
    vy, vx, r = void
    inside = (x * x + y * y < radius * radius) & ((x - vx) ** 2 + (y - vy) ** 2 + (z - void_z) ** 2 >= r * r)
    return float(inside.sum() * (2 * radius / samples))


def test_a_void_the_surface_cuts_is_clipped_to_the_cylinder():
    """One pixel, one sub-ray: the recorded value is mu times the path through the cylinder less the part of
    a void that lies inside it, measured here by sampling the ray densely."""
    from aiax_bench.sim._sphere_kernel import project_void_chords

    n, radius, centre, mu = 32, 12.0, 15.5, 0.05
    void = (centre + 2.0, centre + 11.0, 4.0)  # y, x, r: centred 11.2 from the axis, crossing the surface at 12
    spheres = np.array([[10.0, void[0], void[1], void[2]]])
    u = np.arange(n) - centre
    angles = np.array([0.0, 0.4, 1.3, 2.9])
    out = np.empty((1, angles.size, n), dtype=np.float32)
    project_void_chords(out, u, np.array([11.0]), spheres, np.cos(angles), np.sin(angles), centre, 1, radius,
                        radius, mu)
    relative = (void[0] - centre, void[1] - centre, void[2])
    for a, angle in enumerate(angles):
        for column in range(n):
            if abs(u[column]) >= radius:
                continue
            expected = mu * _numeric_path(u[column], angle, radius=radius, void=relative, z=11.0, void_z=10.0)
            assert out[0, a, column] == pytest.approx(expected, abs=mu * 2e-3), (angle, column)
    # Closed, the same void is subtracted whole, the cylinder ignored: more than the clipped chord is taken.
    closed = np.empty_like(out)
    project_void_chords(closed, u, np.array([11.0]), spheres, np.cos(angles), np.sin(angles), centre, 1, radius,
                        math.inf, mu)
    assert (closed <= out + 1e-7).all() and (closed < out - 1e-3).any()


def test_cut_foam_projected_exactly_agrees_with_its_fine_grid_projection():
    ph = foam_um_phantom(40, seed=2, surface="cut", porosity=0.3, max_void_radius_um=100.0)
    assert ph.spheres is None and ph.params["surface"] == "cut"
    angles = reference_angles(24)
    exact = project_phantom(ph, angles, method="analytic")
    fine = project_phantom(ph, angles, method="voxels")
    assert exact.shape == fine.shape == (40, 24, 40)
    assert np.linalg.norm(fine - exact) / np.linalg.norm(exact) < 0.02
    # "auto" keeps what cut foams were published with (foam@2.x): the fine grid.
    assert np.array_equal(project_phantom(ph, angles), fine)


def test_closed_foam_projected_in_one_pass_matches_the_torch_average_to_float32():
    """For a closed foam the compiled pass and the earlier chords-then-torch average are the same model:
    they differ by float32 rounding of a few-ulp different exp and log."""
    ph = foam_phantom(32, seed=1)
    angles = reference_angles(16)
    np.testing.assert_allclose(project_phantom(ph, angles, method="analytic"), project_phantom(ph, angles),
                               rtol=0, atol=2e-6)


def test_exact_projection_bytes_do_not_depend_on_threads():
    import torch

    ph = foam_um_phantom(40, seed=4, surface="cut", porosity=0.3, max_void_radius_um=100.0)
    angles = reference_angles(20)
    threads = torch.get_num_threads()
    try:
        results = []
        for count in (1, 3):
            torch.set_num_threads(count)
            results.append(project_phantom(ph, angles, method="analytic", row_batch=7).tobytes())
    finally:
        torch.set_num_threads(threads)
    assert results[0] == results[1]


def _plain_pixel_values(phantom, angles, *, su: int = 4, sz: int = 2) -> np.ndarray:
    """The analytic projection of a cut foam written plainly in NumPy: each sub-ray's path through the cylinder
    less each void's chord (clipped to the cylinder where the surface opens the void), in the voids' order;
    then each pixel's running sum of ``exp(-mu path)`` over its sub-rays, rows then columns, and ``-log`` of
    the mean, with the kernels' IEEE ``exp`` and ``log``."""
    from aiax_bench.sim.project import _analytic_voids, _chord_geometry

    spheres, clip_radius = _analytic_voids(phantom)
    n_z, n, mu, radius, centre, u = _chord_geometry(phantom, su)
    half = np.sqrt(np.maximum(radius * radius - u * u, 0.0))
    z_sub = (np.arange(n_z * sz) + 0.5) / sz - 0.5
    path = np.broadcast_to(2.0 * half, (z_sub.size, angles.size, u.size)).copy()
    for cz, cy, cx, r in spheres.tolist():
        crossing = math.sqrt((cx - centre) ** 2 + (cy - centre) ** 2) + r > clip_radius
        for a, angle in enumerate(angles):
            uc = (cx - centre) * math.cos(angle) + (cy - centre) * math.sin(angle)
            tc = (cy - centre) * math.cos(angle) - (cx - centre) * math.sin(angle)
            first = math.floor((uc - r + centre + 0.5) * su - 0.5)
            columns = np.arange(max(first, 0), min(first + math.ceil(2.0 * r * su) + 3, u.size))
            for row in np.nonzero(np.abs(z_sub - cz) < r)[0]:
                dz = z_sub[row] - cz
                square = (r * r - dz * dz) - (u[columns] - uc) ** 2
                hit = columns[square > 0]
                chord = np.sqrt(square[square > 0])
                if crossing:
                    path[row, a, hit] -= np.maximum(np.minimum(tc + chord, half[hit])
                                                    - np.maximum(tc - chord, -half[hit]), 0.0)
                else:
                    path[row, a, hit] -= 2.0 * chord
    intensity = _ieee_elementwise(True, -mu * np.maximum(path, 0.0)).reshape(n_z, sz, angles.size, n, su)
    total = np.zeros((n_z, angles.size, n))
    for k in range(sz):
        for j in range(su):
            total += intensity[:, k, :, :, j]
    return (-_ieee_elementwise(False, np.maximum(total * (1.0 / (sz * su)), 1e-304))).astype(np.float32)


def test_exact_projection_is_the_plain_sum_over_each_pixels_sub_rays():
    """The compiled pass (intensities in place, then each pixel's sum across a row at once, only the rows near
    each void visited) gives the bytes of the plain definition: path, then one running sum per pixel."""
    from aiax_bench.sim.project import _analytic_voids

    ph = foam_um_phantom(24, seed=5, surface="cut", porosity=0.3, max_void_radius_um=100.0)
    angles = reference_angles(12)
    expected = _plain_pixel_values(ph, angles)
    spheres, clip_radius = _analytic_voids(ph)
    from_axis = np.hypot(spheres[:, 1] - (ph.shape[1] - 1) / 2, spheres[:, 2] - (ph.shape[2] - 1) / 2)
    assert (from_axis + spheres[:, 3] > clip_radius).any()  # some voids are opened by the surface: clipped chords
    assert np.array_equal(project_phantom(ph, angles, method="analytic").view(np.uint32), expected.view(np.uint32))


def test_exact_projection_refuses_a_phantom_that_is_not_voids_in_a_cylinder():
    ph = make_phantom("composite", size=40, seed=0, fibre_radius=1.5, fibre_length=30.0, pore_radius=(1.0, 2.0))
    with pytest.raises(InputError, match=r"method.*'voxels'"):
        project_phantom(ph, reference_angles(4), method="analytic")
    with pytest.raises(InputError, match="method"):
        project_phantom(ph, reference_angles(4), method="fast")


def test_noise_in_row_blocks_is_poisson_and_its_bytes_follow_the_key_alone():
    import torch

    from aiax_bench.sim.acquire import NOISE_BLOCK_ROWS

    p = np.random.default_rng(0).uniform(0, 2, (20, 30, 40)).astype(np.float32)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = poisson_noise_blocks(p, 1000.0, key=(7, 3))
    finally:
        torch.set_num_threads(threads)
    assert poisson_noise_blocks(p, 1000.0, key=(7, 3), threads=3).tobytes() == one.tobytes()
    assert one.dtype == np.float32 and one.shape == p.shape
    # A block's draws are its own: changing the rows of another block leaves its bytes alone.
    other = p.copy()
    other[NOISE_BLOCK_ROWS:] += 0.5
    changed = poisson_noise_blocks(other, 1000.0, key=(7, 3))
    assert changed[:NOISE_BLOCK_ROWS].tobytes() == one[:NOISE_BLOCK_ROWS].tobytes()
    assert not np.array_equal(poisson_noise_blocks(p, 1000.0, key=(7, 4)), one)
    # Counting statistics: log-domain noise of variance exp(p) / I0 about the line integral.
    many = np.broadcast_to(np.float32(1.0), (64, 100, 100))
    noise = poisson_noise_blocks(many, 1000.0, key=(1, 1)).astype(np.float64) - 1.0
    assert abs(noise.mean()) < 3e-4 + math.e / 2000  # the log's bias is about var / 2
    assert noise.var() == pytest.approx(math.e / 1000.0, rel=0.02)
    with pytest.raises(InputError, match="photons"):
        poisson_noise_blocks(p, 0.0, key=(1,))


def test_recipe_schema_names_exactly_the_projection_methods_and_noise_draws():
    from aiax_bench.data.build import NOISE_DRAWS
    from aiax_bench.data.registry import RECIPE_SCHEMA
    from aiax_bench.sim.project import PROJECTION_METHODS

    acquisition = RECIPE_SCHEMA["properties"]["acquisition"]["properties"]
    assert tuple(acquisition["projection"]["enum"]) == PROJECTION_METHODS
    assert tuple(acquisition["noise"]["enum"]) == NOISE_DRAWS


@pytest.fixture(scope="module")
def foam3_root(tmp_path_factory):
    """foam@3.0 tiny, built in a process of one thread per library (started ahead at the session's start)."""
    from _tiny import tiny_one_thread

    return tiny_one_thread(DATASET, tmp_path_factory.mktemp("foam-3.0"))[0]


@pytest.mark.slow
def test_foam_3_0_is_2_0_projected_exactly_and_builds_to_its_registered_sha256(foam3_root):
    from aiax_bench.data.loader import load
    from aiax_bench.data.registry import resolve

    spec = resolve(DATASET)
    dataset = load(DATASET, profile="tiny", root=foam3_root)
    assert dataset.content_sha256 == spec.content_sha256["tiny"]
    # The same foam, scans and splits as 2.0: only how it is projected and how its noise is drawn differ.
    older = resolve("foam@2.0").recipe
    assert {**spec.recipe, "description": older["description"], "acquisition": older["acquisition"]} == older
    assert spec.recipe["acquisition"] == {**older["acquisition"], "projection": "analytic", "noise": "row-blocks"}


@pytest.mark.slow
def test_exact_phantom_ranks_first_on_foam_3_0(foam3_root):
    from _truth_first import assert_exact_phantom_first

    from aiax_bench.data.loader import load

    assert_exact_phantom_first(load(DATASET, profile="tiny", root=foam3_root), ["50proj", "dose-1/16"])
