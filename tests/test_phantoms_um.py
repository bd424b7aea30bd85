"""Generators with lengths in µm (foam-um, composite-um, am-metal-um): one material at every volume size."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from aiax_bench.errors import InputError
from aiax_bench.sim.phantoms import (
    PHANTOMS,
    Spheres,
    am_metal_phantom,
    am_metal_um_phantom,
    composite_phantom,
    composite_um_phantom,
    foam_phantom,
    foam_um_phantom,
    make_phantom,
)
from aiax_bench.sim.phantoms.packing import _pack_voids_pelt
from aiax_bench.sim.phantoms.shapes import _render
from aiax_bench.sim.project import project_phantom, project_voxels

DATASETS = Path(__file__).resolve().parents[1] / "datasets"
VOXEL_UM = 20.0
# A 64³ sample holds about 150 voids: statistics pool several samples, as a user would.
SEEDS = {64: range(8), 128: range(3)}


def _radii_um(ph) -> np.ndarray:
    """Radii (µm) of the voids centred in the scanned sample."""
    n = ph.shape[0]
    voids = ph.inclusions[0]
    c = voids.centres
    inside = (c[:, 0] >= -0.5) & (c[:, 0] < n - 0.5)
    inside &= np.hypot(c[:, 1] - (n - 1) / 2, c[:, 2] - (n - 1) / 2) < ph.params["cylinder_radius"] * n
    return voids.radii[inside] * ph.voxel_size_um


def _stats(porosity: float, radii_um: np.ndarray) -> dict[str, float]:
    q10, q50 = np.quantile(radii_um, [0.1, 0.5])
    return {"porosity": porosity, "mean": radii_um.mean(), "q10": q10, "q50": q50}


@pytest.fixture(scope="module")
def foams():
    return {n: [foam_um_phantom(n, seed=s) for s in seeds] for n, seeds in SEEDS.items()}


@pytest.fixture(scope="module")
def large_packing():
    """The 256³ recipe's packing alone, and its sample porosity from a rendered slab."""
    n = 256
    centres, radii, info = _pack_voids_pelt(
        np.random.default_rng(0), height=n, sample_radius=0.45 * n, max_radius=160 / VOXEL_UM,
        min_radius=20 / VOXEL_UM, min_wall=0.0, density=125.0 * (VOXEL_UM * 1e-3) ** 3, porosity=0.45,
        n_voids=None, surface="cut")
    fractions = _render(n, 0.45 * n, (Spheres(centres, radii, label=2),), 3, rows=(96, 160))
    porosity = float(fractions[2].sum() / (1.0 - fractions[0]).sum())
    return porosity, radii[info["inside"]] * VOXEL_UM, info


def test_foam_is_the_same_material_at_every_size(foams, large_packing):
    stats = {n: _stats(np.mean([ph.params["porosity"] for ph in phs]), np.concatenate([_radii_um(ph) for ph in phs]))
             for n, phs in foams.items()}
    stats[256] = _stats(large_packing[0], large_packing[1])
    for n in (64, 128):
        for key, value in stats[n].items():
            assert value == pytest.approx(stats[256][key], rel=0.05), (n, key, stats)
    assert stats[256]["porosity"] == pytest.approx(0.45, rel=0.02)
    # The packing stops on the block's exact porosity; each sample scatters around it.
    assert all(ph.params["porosity_packing"] == pytest.approx(0.45, rel=1e-3) for ph in foams[128])


def test_voids_reach_down_to_a_few_voxels_with_a_tail_to_the_cap(foams, large_packing):
    for phs in foams.values():
        radii_vox = np.concatenate([_radii_um(ph) for ph in phs]) / VOXEL_UM
        assert radii_vox.min() <= 3.0
        assert (radii_vox <= 3.0).mean() > 0.25  # pore statistics feel the resolution
        assert radii_vox.max() == pytest.approx(160 / VOXEL_UM)
    # Many more small voids than large ones: a long tail up to the cap.
    radii = large_packing[1]
    assert np.median(radii) < 0.5 * radii.max() and radii.mean() > np.median(radii)


def test_replenishment_keeps_the_pool_full(large_packing):
    info = large_packing[2]
    assert info["stop"] == "porosity"
    # Every void swallows at least its host, which is redrawn.
    assert info["redrawn"] >= info["n_voids_packing"] - 1
    kwargs = dict(height=64, sample_radius=0.45 * 64, max_radius=8.0, min_radius=1.0, min_wall=0.0,
                  density=0.001, porosity=0.45, n_voids=None, surface="cut")
    _, _, full = _pack_voids_pelt(np.random.default_rng(0), **kwargs)
    _, _, dry = _pack_voids_pelt(np.random.default_rng(0), replenish=False, **kwargs)
    # Without redrawing, the pool runs dry: fewer voids, and the target porosity is out of reach.
    assert full["stop"] == "porosity" and dry["stop"] == "min_radius"
    assert full["n_voids_packing"] > 1.2 * dry["n_voids_packing"] and dry["redrawn"] == 0 < full["redrawn"]
    assert dry["porosity_packing"] < 0.9 * full["porosity_packing"]


def test_stop_by_porosity_by_count_or_by_size():
    by_porosity = foam_um_phantom(48, seed=2, porosity=0.2)
    p = by_porosity.params
    assert p["stop"] == "porosity"
    # The stop comes with the void that crosses the target: one void of 8 voxels in a
    # block of at least 128³ voxels adds 0.001.
    assert 0.2 <= p["porosity_packing"] < 0.202
    by_count = foam_um_phantom(48, seed=2, porosity=None, n_voids=40)
    assert by_count.params["stop"] == "n_voids" and by_count.params["n_voids"] == 40
    assert foam_um_phantom(48, seed=2, porosity=0.2, n_voids=5).params["stop"] == "n_voids"
    by_size = foam_um_phantom(48, seed=2, porosity=None, min_void_radius_um=60.0)
    assert by_size.params["stop"] == "min_radius"
    assert _radii_um(by_size).min() >= 60.0


def test_same_seed_same_bytes():
    a, b, c = (foam_um_phantom(48, seed=s, surface=surface) for s, surface in ((3, "cut"), (3, "cut"), (4, "cut")))
    assert a.fractions.tobytes() == b.fractions.tobytes() and a.labels.tobytes() == b.labels.tobytes()
    assert a.inclusions[0].centres.tobytes() == b.inclusions[0].centres.tobytes()
    assert a.params == b.params
    assert a.fractions.tobytes() != c.fractions.tobytes()
    d, e = (foam_um_phantom(48, seed=3, surface="closed") for _ in range(2))
    assert d.spheres.tobytes() == e.spheres.tobytes() and d.fractions.tobytes() == e.fractions.tobytes()


def test_lengths_are_physical():
    """Half the voxel size, twice the voxels: the same voids in µm, only sampled finer."""
    coarse = foam_um_phantom(32, seed=5, voxel_size_um=20.0)
    fine = foam_um_phantom(64, seed=5, voxel_size_um=10.0)

    def in_um(ph):
        n, voids = ph.shape[0], ph.inclusions[0]
        centred = voids.centres - np.array([-0.5, (n - 1) / 2, (n - 1) / 2])
        return centred * ph.voxel_size_um, voids.radii * ph.voxel_size_um

    (c1, r1), (c2, r2) = in_um(coarse), in_um(fine)
    np.testing.assert_allclose(r1, r2, rtol=1e-12)
    np.testing.assert_allclose(c1, c2, rtol=1e-12, atol=1e-9)
    assert fine.params["porosity"] == pytest.approx(coarse.params["porosity"], abs=0.01)


@pytest.mark.parametrize("wall_um", [0.0, 10.0])
def test_voids_never_overlap(wall_um):
    ph = foam_um_phantom(48, seed=1, surface="closed", min_wall_um=wall_um)
    c, r = ph.spheres[:, :3], ph.spheres[:, 3]
    gap = np.linalg.norm(c[:, None] - c[None], axis=-1) - r[:, None] - r[None]
    np.fill_diagonal(gap, np.inf)
    assert gap.min() >= wall_um / VOXEL_UM - 1e-9
    # A closed surface keeps every void inside the cylinder, with the wall as well.
    depth = 0.45 * 48 - np.hypot(c[:, 1] - 23.5, c[:, 2] - 23.5) - r
    assert depth.min() >= wall_um / VOXEL_UM - 1e-9


def test_closed_surface_projects_analytically_cut_surface_from_voxels():
    closed = foam_um_phantom(32, seed=1, surface="closed")
    assert closed.spheres is not None and closed.spheres.shape[1] == 4
    angles = np.linspace(0, np.pi, 16, endpoint=False)
    analytic, voxels = project_phantom(closed, angles), project_voxels(closed, angles)
    assert np.linalg.norm(voxels - analytic) / np.linalg.norm(analytic) < 0.02
    cut = foam_um_phantom(32, seed=1)
    assert cut.spheres is None  # voids cross the surface: the analytic projector does not apply
    voids = cut.inclusions[0]
    reach = np.hypot(voids.centres[:, 1] - 15.5, voids.centres[:, 2] - 15.5) + voids.radii
    assert (reach > 0.45 * 32).any()
    np.testing.assert_array_equal(project_phantom(cut, angles, supersample_u=2),
                                  project_voxels(cut, angles, supersample=2, supersample_u=2))


@pytest.mark.parametrize("size", [64, 128])
def test_fractions_labels_and_params_agree(foams, size):
    ph = foams[size][0]
    assert ph.phases == ("air", "solid", "pore") and ph.attenuation == (0.0, 4.2, 0.0)
    assert ph.fractions.dtype == np.float32 and ph.labels.dtype == np.uint8
    np.testing.assert_allclose(ph.fractions.sum(axis=0), 1.0, atol=1e-5)
    np.testing.assert_array_equal(ph.labels, np.argmax(ph.fractions, axis=0))
    np.testing.assert_array_equal(ph.mask, ph.fractions[0] <= 0.5)
    porosity = ph.fractions[2].sum() / (1.0 - ph.fractions[0]).sum()
    assert ph.params["porosity"] == pytest.approx(porosity, rel=1e-4)
    assert ph.params["generator"] == "foam-um" and ph.params["pool"] > 0
    assert ph.params["n_voids"] == _radii_um(ph).size
    assert ph.params["void_radius_mean_um"] == pytest.approx(_radii_um(ph).mean())


def test_composite_and_am_metal_in_um_equal_the_voxel_versions():
    um = composite_um_phantom(40, seed=3, voxel_size_um=4.0, fibre_radius_um=6.0, fibre_length_um=120.0,
                              pore_radius_um=(4.0, 8.0), min_gap_um=2.0)
    vox = composite_phantom(40, seed=3, voxel_size_um=4.0, fibre_radius=1.5, fibre_length=30.0,
                            pore_radius=(1.0, 2.0), min_gap=0.5)
    assert um.fractions.tobytes() == vox.fractions.tobytes()
    assert um.params["generator"] == "composite-um" and um.params["fibre_radius_um"] == 6.0
    um = am_metal_um_phantom(40, seed=3, voxel_size_um=10.0, gas_pore_radius_um=(10.0, 20.0),
                             lof_radius_um=(40.0, 80.0), lof_porosity=0.02)
    vox = am_metal_phantom(40, seed=3, voxel_size_um=10.0, gas_pore_radius=(1.0, 2.0), lof_radius=(4.0, 8.0),
                           lof_porosity=0.02)
    assert um.fractions.tobytes() == vox.fractions.tobytes()
    assert um.params["generator"] == "am-metal-um" and um.params["layer_thickness_um"] == 30.0


# Lengths in voxels or in fractions of the volume: none may appear in a 2.0 recipe.
_VOXEL_LENGTHS = {"max_void_radius", "min_void_radius", "min_wall", "fibre_radius", "fibre_length", "pore_radius",
                  "min_gap", "gas_pore_radius", "lof_radius", "lof_thickness", "layer_thickness"}


@pytest.mark.parametrize("family", ["foam", "composite", "am-metal"])
def test_v2_recipes_build_with_the_um_generators(family):
    recipe = yaml.safe_load((DATASETS / family / "v2.0.yaml").read_text(encoding="utf-8"))
    assert not _VOXEL_LENGTHS & (set(recipe["phantom"]) | set(recipe.get("ood_phantom", {})))
    for ood in (False, True):
        # As aiax_bench.data.build passes them, at a size every profile exceeds.
        params = {**recipe["phantom"], **(recipe.get("ood_phantom", {}) if ood else {})}
        generator = params.pop("generator")
        assert generator == f"{family}-um" and generator in PHANTOMS
        ph = make_phantom(generator, size=48, seed=401 if ood else 101, voxel_size_um=recipe["voxel_size_um"],
                          **params)
        assert ph.params["generator"] == generator and ph.voxel_size_um == recipe["voxel_size_um"]


def test_version_1_generators_are_still_registered():
    assert PHANTOMS["foam"] is foam_phantom
    assert PHANTOMS["composite"] is composite_phantom and PHANTOMS["am-metal"] is am_metal_phantom


@pytest.mark.parametrize("call", [
    lambda: foam_um_phantom(32, surface="open"),
    lambda: foam_um_phantom(32, porosity=0.9),
    lambda: foam_um_phantom(32, porosity=0.0),
    lambda: foam_um_phantom(32, n_voids=0),
    lambda: foam_um_phantom(32, max_void_radius_um=400.0),
    lambda: foam_um_phantom(32, min_void_radius_um=200.0),
    lambda: foam_um_phantom(32, min_wall_um=-1.0),
    lambda: foam_um_phantom(32, candidates_per_mm3=0.0),
    lambda: foam_um_phantom(32, voxel_size_um=float("nan")),
    lambda: composite_um_phantom(32, fibre_radius=2.0),
    lambda: composite_um_phantom(32, pore_radius_um=(8.0, 4.0)),
    lambda: am_metal_um_phantom(32, layer_thickness_um=0.0),
])
def test_bad_parameters_fail_fast(call):
    t0 = time.perf_counter()
    with pytest.raises(InputError):
        call()
    assert time.perf_counter() - t0 < 0.5


def test_foam_2_0_recipe_is_one_material_at_every_profile():
    """The registry's foam, as built: tiny and small agree on porosity and void sizes within 5 %."""
    from aiax_bench.data.registry import resolve
    from aiax_bench.data.sample_recipe import phantom_params as _phantom_params

    spec = resolve("foam@2.0")
    keys = ("porosity", "void_radius_mean_um", "void_radius_q50_um")
    means = {}
    for profile, seeds in (("tiny", 6), ("small", 2)):
        size = spec.profiles[profile]["size"]
        values = []
        for seed in range(seeds):
            generator, params = _phantom_params(spec.recipe, "test", size, 500 + seed)
            phantom = make_phantom(generator, **params)
            values.append([phantom.params[k] for k in keys])
        means[profile] = np.mean(values, axis=0)
    np.testing.assert_allclose(means["tiny"], means["small"], rtol=0.05)
