"""The mouse phantom: anatomy, attenuation, tumour strata and instances, growth, projections."""

from __future__ import annotations

import numpy as np
import pytest

from aiax_bench.errors import InputError
from aiax_bench.sim.phantoms import PHANTOMS, Cylinders, Ellipsoids, Phantom, make_phantom, mouse_phantom
from aiax_bench.sim.phantoms.mouse import (
    STRATA,
    growth_series,
    mouse_layout,
    tissue_attenuation,
    tumour_instances,
)
from aiax_bench.sim.project import project_phantom

# 64 voxels of 680 µm: the 43.5 mm field of view of 512 voxels of 85 µm, coarser (the same mouse).
SIZE, VOXEL_UM = 64, 680.0
TUMOUR_PHASES = ("liver_tumour", "lung_tumour")


@pytest.fixture(scope="module")
def mouse() -> Phantom:
    return mouse_phantom(size=SIZE, seed=0, voxel_size_um=VOXEL_UM)


def _group(ph: Phantom, phase: str, kind=Ellipsoids) -> list:
    label = ph.phases.index(phase)
    return [g for g in ph.inclusions if g.label == label and isinstance(g, kind)]


def _owner(ph: Phantom, points: np.ndarray) -> np.ndarray:
    """Phase of each point as painted: the first shape (in painting order) that holds it."""
    owner = np.full(len(points), 1)
    free = np.ones(len(points), dtype=bool)
    for group in ph.inclusions:
        for i in range(len(group)):
            inside = free & (group.level(i, points) < 0)
            owner[inside] = group.label
            free &= ~inside
    return owner


def _shell(centres, rotations, semi, offset: float) -> np.ndarray:
    """Points ``offset`` voxels outside each ellipsoid along its axes' directions (a sphere's worth each)."""
    k = np.arange(200) + 0.5
    z = 1 - 2 * k / 200
    u = np.stack([z, np.sqrt(1 - z * z) * np.sin(np.pi * (1 + 5**0.5) * k),
                  np.sqrt(1 - z * z) * np.cos(np.pi * (1 + 5**0.5) * k)], axis=1)
    return np.concatenate([c + (u * (s + offset)) @ r.T for c, r, s in zip(centres, rotations, semi, strict=True)])


def test_same_seed_same_bytes_through_the_registry(mouse):
    assert PHANTOMS["mouse"] is mouse_phantom
    again = make_phantom("mouse", size=SIZE, seed=0, voxel_size_um=VOXEL_UM)
    assert again.labels.tobytes() == mouse.labels.tobytes()
    assert again.fractions.tobytes() == mouse.fractions.tobytes()
    assert again.params == mouse.params


def test_another_seed_is_another_mouse(mouse):
    other = mouse_phantom(size=SIZE, seed=1, voxel_size_um=VOXEL_UM)
    assert other.params["scale"] != mouse.params["scale"]
    assert not np.array_equal(other.labels, mouse.labels)
    assert [t["area_mm2"] for t in other.params["tumours"]] != [t["area_mm2"] for t in mouse.params["tumours"]]


def test_every_phase_is_present_with_ordered_attenuation(mouse):
    mu = dict(zip(mouse.phases, mouse.attenuation, strict=True))
    assert mu["bone"] > mu["heart"] > mu["soft_tissue"] > mu["fat"] > mu["lung"] > mu["air"] == 0.0
    assert mu["airway"] == mu["air_fov"] == 0.0
    assert mu["liver_tumour"] == pytest.approx(0.95 * mu["liver"])
    assert mu["lung_tumour"] == pytest.approx(mu["soft_tissue"]) and mu["lung_tumour"] > 3 * mu["lung"]
    assert mouse.params["energy_kev"] == 42.0 and 1.0 < mu["bone"] < 1.3 and 0.25 < mu["soft_tissue"] < 0.3
    volume = mouse.fractions.reshape(len(mouse.phases), -1).sum(axis=1)
    assert np.all(volume > 1.0), dict(zip(mouse.phases, volume, strict=True))
    np.testing.assert_allclose(mouse.fractions.sum(axis=0), 1.0, atol=1e-5)
    # Skin (0.3 mm) and ribs (0.6 mm across) are thinner than a 0.68 mm voxel: fractions only.
    for phase in ("air", "air_fov", "fat", "soft_tissue", "lung", "airway", "bone", "heart", "liver",
                  *TUMOUR_PHASES):
        assert (mouse.labels == mouse.phases.index(phase)).any(), phase
    body = 1.0 - mouse.fractions[0] - mouse.fractions[1]
    assert mouse.mask.sum() == pytest.approx(body.sum(), rel=0.02)
    # Only surface voxels, whose body share is split between skin and fat, may be mostly air.
    assert np.isin(mouse.labels[mouse.mask], [0, 1]).mean() < 0.05


def test_attenuation_table_is_nist_at_its_energies():
    assert tissue_attenuation("cortical_bone", 40.0) == pytest.approx(1.92 * 0.6655)
    assert tissue_attenuation("muscle", 60.0) == pytest.approx(1.05 * 0.2048)
    assert tissue_attenuation("lung_inflated", 50.0) == pytest.approx(0.30 * 0.2270)
    with pytest.raises(InputError, match="energy_kev"):
        tissue_attenuation("muscle", 80.0)


def test_lungs_hold_air_filled_airways(mouse):
    lungs = [g for g in _group(mouse, "lung") if len(g) == 1]
    assert len(lungs) == 2
    tubes = _group(mouse, "airway", Cylinders)[0]
    for lung in lungs:
        ends = np.concatenate([tubes.centres + s * tubes.half_lengths[:, None] * tubes.directions for s in (-1, 1)])
        inside = (lung.level(0, ends) < 0).reshape(2, -1).all(axis=0)
        assert inside.sum() >= 4  # segments wholly inside this lung
    zz, yy, xx = np.meshgrid(*(np.arange(SIZE, dtype=float),) * 3, indexing="ij")
    centres = np.stack([zz, yy, xx], axis=-1)
    in_lungs = np.any([lung.level(0, centres) < 0 for lung in lungs], axis=0)
    airway = mouse.fractions[mouse.phases.index("airway")]
    assert airway[in_lungs].sum() > 1.0
    assert mouse.attenuation[mouse.phases.index("airway")] == 0.0


def test_tumours_are_enclosed_by_their_host(mouse):
    gap = mouse.params["tumour_gap_um"] / VOXEL_UM
    lung_ellipsoids = {round(float(g.centres[0, 2])): g for g in _group(mouse, "lung") if len(g) == 1}
    records = mouse.params["tumours"]
    assert {r["host"].split("_")[0] for r in records} == {"liver", "lung"}
    for rec in records:
        group = _group(mouse, rec["phase"])[0]
        rows = slice(*rec["rows"])
        c, r, s = group.centres[rows], group.rotations[rows], group.semi_axes[rows]
        shell = _shell(c, r, s, gap / 2)
        shell = shell[np.min([group.level(i, shell) for i in range(*rec["rows"])], axis=0) > 0]
        owner = np.asarray(mouse.phases)[_owner(mouse, shell)]
        if rec["host"] == "liver":
            assert set(owner) == {"liver"}, (rec, set(owner))
        else:
            assert set(owner) <= {"lung", "airway"}, (rec, set(owner))
            lung = lung_ellipsoids[min(lung_ellipsoids, key=lambda x: abs(x - c[0, 2]))]
            assert lung.level(0, _shell(c, r, s, 0.0)).max() < 0


def test_strata_populated_at_the_default_voxel_size(mouse):
    for seed in range(3):
        layout = mouse_layout(size=512, seed=seed)
        assert layout.voxel_size_um == 85.0
        strata = [t.stratum for t in layout.tumours]
        assert set(strata) == set(STRATA) and strata.count("small") >= len(strata) / 2
        for t in layout.tumours:
            lo, hi = layout.params["strata_mm2"]
            assert {"small": t.area_mm2 < lo, "medium": lo <= t.area_mm2 <= hi, "large": t.area_mm2 > hi}[t.stratum]
            if len(t.semi_axes) == 1:  # analytic: the central section of the ellipsoid
                q = t.rotations[0] @ np.diag(t.semi_axes[0] ** -2.0) @ t.rotations[0].T
                area = np.pi / np.sqrt(np.linalg.det(q[1:, 1:])) * 0.085**2
                assert area == pytest.approx(t.area_mm2, rel=1e-9)
            if t.host == "liver":
                assert t.phase == "liver_tumour"
            else:
                assert t.stratum == "small" and t.phase == "lung_tumour"
    # Lengths are in mm: the same seed and field of view is the same mouse at any voxel size.
    areas = [r["area_mm2"] for r in mouse.params["tumours"]]
    assert [t.area_mm2 for t in mouse_layout(size=512, seed=0).tumours] == pytest.approx(areas, rel=1e-9)


def test_lobulated_area_is_the_largest_axial_section():
    layout = mouse_layout(size=SIZE, seed=0, voxel_size_um=VOXEL_UM, lobulated_share=1.0,
                          tumour_counts=(2, 1, 0))
    t = layout.tumours[0]
    assert len(t.semi_axes) > 1
    mm = VOXEL_UM / 1000
    lo = (t.centres - t.semi_axes.max(axis=1)[:, None]).min(axis=0)
    hi = (t.centres + t.semi_axes.max(axis=1)[:, None]).max(axis=0)
    h = (hi[1:] - lo[1:]).max() / 400
    yy, xx = np.meshgrid(np.arange(lo[1], hi[1], h), np.arange(lo[2], hi[2], h), indexing="ij")
    group = t.ellipsoids(label=0)
    best = 0.0
    for z in np.linspace(lo[0], hi[0], 120):
        pts = np.stack([np.full_like(yy, z), yy, xx], axis=-1)
        best = max(best, float((_min_level(group, pts) < 0).sum()) * h * h * mm * mm)
    assert best == pytest.approx(t.area_mm2, rel=0.01)


def _min_level(group: Ellipsoids, pts: np.ndarray) -> np.ndarray:
    return np.min([group.level(i, pts) for i in range(len(group))], axis=0)


def test_tumour_instances(mouse):
    inst = tumour_instances(mouse)
    records = mouse.params["tumours"]
    assert inst.labels.dtype == np.int32 and inst.labels.shape == mouse.shape
    tumour_labels = [mouse.phases.index(p) for p in TUMOUR_PHASES]
    np.testing.assert_array_equal(inst.labels > 0, np.isin(mouse.labels, tumour_labels))
    assert set(np.unique(inst.labels)) == set(range(len(records) + 1))
    assert inst.strata == tuple(r["stratum"] for r in records)
    assert inst.hosts == tuple(r["host"] for r in records)
    np.testing.assert_array_equal(inst.area_mm2, [r["area_mm2"] for r in records])
    big = np.isin(inst.strata, ["medium", "large"])
    np.testing.assert_allclose(inst.voxel_area_mm2[big], inst.area_mm2[big], rtol=0.1)
    with pytest.raises(InputError, match="mouse phantom"):
        tumour_instances(Phantom(labels=np.zeros((2, 2, 2), np.uint8), fractions=np.ones((1, 2, 2, 2), np.float32),
                                 phases=("air",), attenuation=(0.0,), voxel_size_um=1.0,
                                 mask=np.zeros((2, 2, 2), bool), params={"generator": "foam"}))


def test_growth_series_shrinks_tumours_backwards(mouse):
    first, last = growth_series(size=SIZE, seed=0, voxel_size_um=VOXEL_UM, weeks=2, growth_per_week=1.5)
    assert last.labels.tobytes() == mouse.labels.tobytes()
    early, late = tumour_instances(first), tumour_instances(last)
    np.testing.assert_allclose(early.area_mm2, late.area_mm2 / 1.5**2)
    assert (early.labels > 0).sum() < (late.labels > 0).sum()
    assert [STRATA.index(s) for s in early.strata] <= [STRATA.index(s) for s in late.strata]
    # Outside the tumours and the liver (whose rims shrink with them) nothing moves.
    keep = ~np.isin(last.labels, [last.phases.index(p) for p in ("liver", *TUMOUR_PHASES)])
    np.testing.assert_array_equal(first.labels[keep], last.labels[keep])


def test_projection_through_the_body():
    ph = mouse_phantom(size=32, seed=2, voxel_size_um=1000.0, tumour_counts=(2, 0, 0))
    angles = np.linspace(0, np.pi, 4, endpoint=False)
    sino = project_phantom(ph, angles)
    assert sino.shape == (32, 4, 32) and np.isfinite(sino).all() and (sino >= 0).all()
    voxel_cm = ph.voxel_size_um * 1e-4
    # A detector row sums the slice's attenuation whatever the angle (parallel rays cover the slice once);
    # averaging intensity, not line integrals, over a pixel's sub-rays takes a little off at edges.
    rows = sino.sum(axis=2)
    expected = ph.attenuation_map().sum(axis=(1, 2)) * voxel_cm
    np.testing.assert_allclose(rows, np.repeat(expected[:, None], 4, axis=1), rtol=0.05)
    np.testing.assert_allclose(rows, np.repeat(rows[:, :1], 4, axis=1), rtol=0.015)
    assert sino[:, :, 14:18].min() > 0.3  # through about 2 cm of tissue
    assert sino[:, :, :2].max() < 1e-3 and sino[:, :, -2:].max() < 1e-3  # beside the body: air


def test_bad_input_is_one_clear_error():
    with pytest.raises(InputError, match="field of view"):
        mouse_phantom(size=64, seed=0)
    with pytest.raises(InputError, match="tumour_counts"):
        mouse_layout(size=SIZE, seed=0, voxel_size_um=VOXEL_UM, tumour_counts=(1, 2))
    with pytest.raises(InputError, match="strata_mm2"):
        mouse_layout(size=SIZE, seed=0, voxel_size_um=VOXEL_UM, strata_mm2=(100.0, 50.0))
