"""The yardstick itself: the exact phantom, pushed through the whole scoring path, must come first.

On foam@2.0 (tiny): ranking on the truth, a porosity threshold fixed by the
recipe, scans with their own noise and a stored noise-free reconstruction.
"""

from __future__ import annotations

import numpy as np
import pytest

from aiax_bench.data.registry import list_datasets, resolve
from aiax_bench.data.sample_recipe import phantom_params as _phantom_params
from aiax_bench.evaluation import porosity as pz
from aiax_bench.evaluation.yardstick import YARDSTICK_METRICS, rank_checks, score_known_volumes
from aiax_bench.sim.phantoms import make_phantom

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def known(tiny_v2):
    return score_known_volumes(tiny_v2, ["50proj", "250proj", "dose-1/16"], workers=2)


def test_exact_phantom_ranks_first_on_every_default_metric(known, tiny_v2):
    rows = {r["metric"]: r for r in rank_checks(known)}
    assert set(rows) == set(YARDSTICK_METRICS)
    assert tiny_v2.spec.evaluation["rank_metric"] in rows
    for metric, row in rows.items():
        assert row["truth_first"], (metric, row)
    truth = known["truth"]["aggregate"]
    assert truth["psnr/truth"]["mean"] == np.inf and truth["mse/truth"]["mean"] == 0
    assert truth["ssim/truth"]["mean"] == pytest.approx(1.0, abs=1e-6)
    # The protocol on the phantom: no error at all, not a small one.
    for name in ("porosity", "pore_count", "pore_density_per_mm3", "mean_pore_diameter_mm",
                 "specific_surface_per_mm"):
        assert truth[f"{name}/rel_error_truth"]["mean"] == 0.0, name
    assert truth["jaccard/pore"]["mean"] == 1.0
    for record in known["truth"]["records"]:
        assert record["segmentation_protocol"] == pz.SEGMENTATION_PROTOCOL
        assert record["segmentation_threshold"] == tiny_v2.spec.evaluation["pore_threshold"]


def test_clean_is_the_ceiling_between_truth_and_reference(known):
    psnr = {name: known[name]["aggregate"]["psnr/truth"]["mean"] for name in ("clean", "reference", "fbp:50proj")}
    assert psnr["clean"] > psnr["reference"] > psnr["fbp:50proj"]
    # The reference's own errors are reported as the protocol's floor, the same for every candidate.
    floor = known["fbp:50proj"]["aggregate"]["porosity/floor_rel_error_truth"]["mean"]
    assert floor == known["reference"]["aggregate"]["porosity/rel_error_truth"]["mean"]


def test_sparse_splits_have_their_own_noise(tiny_v2):
    """The 250-projection scan shares no noise with the 500-projection reference (it did in 1.0)."""
    sample = tiny_v2.split("250proj").test[0]
    clean, high, low = (np.asarray(sample.read(n), dtype=np.float64) for n in ("clean", "high", "low"))
    mask = np.asarray(sample.read("mask"))
    noise_ref, noise_low = (high - clean)[mask], (low - clean)[mask]
    assert abs(np.corrcoef(noise_ref, noise_low)[0, 1]) < 0.2
    ref_sino = np.asarray(sample.read("sinogram"))
    full = tiny_v2.split("reference").test[0]
    idx = np.searchsorted(np.asarray(full.angles), np.asarray(sample.angles))
    assert not np.array_equal(ref_sino, np.asarray(full.read("sinogram"))[:, idx])


def test_version_1_sparse_splits_share_the_reference_noise(tiny_dataset):
    """What 2.0 fixes, kept in 1.0 so its stores and entries stay valid."""
    sample = tiny_dataset.split("250proj").test[0]
    full = tiny_dataset.split("reference").test[0]
    idx = np.searchsorted(np.asarray(full.angles), np.asarray(sample.angles))
    np.testing.assert_array_equal(np.asarray(sample.read("sinogram")), np.asarray(full.read("sinogram"))[:, idx])


@pytest.mark.parametrize("spec", [s for s in list_datasets() if "pore_threshold" in s.evaluation],
                         ids=lambda s: s.ref)
def test_pore_threshold_is_the_recipes_midpoint(spec):
    """The registry's threshold is the midpoint of the pore's and the matrix's attenuation."""
    generator, params = _phantom_params(spec.recipe, "test", 64, 1)
    if "material" in spec.recipe:  # a cone-beam recipe: the material's effective attenuation for its spectrum
        from aiax_bench.data.cone import cone_scan

        params[spec.recipe["material"]["attenuation_parameter"]] = cone_scan(spec.recipe, 64).effective_mu_per_cm
    phantom = make_phantom(generator, **params)
    pore = phantom.phases.index(spec.evaluation.get("pore_phases", ["pore"])[0])
    assert spec.evaluation["pore_threshold"] == pytest.approx(
        (phantom.attenuation[pore] + phantom.attenuation[1]) / 2, rel=1e-12)


@pytest.mark.parametrize("name", ["foam", "composite", "am-metal"])
def test_default_versions_score_on_the_truth_with_enough_volumes(name):
    spec = resolve(name)
    assert spec.version == "2.0" and spec.evaluation["rank_metric"] == "psnr/truth"
    small = spec.profiles["small"]["samples"]
    assert len(small["test"]) >= 8 and len(small["val"]) >= 2 and len(small["ood-test"]) >= 1
    assert spec.recipe["acquisition"]["independent_noise"] and spec.recipe["reconstruction"]["store_clean"]


def test_pore_count_responds_to_the_number_of_projections(known):
    """50 → 250 projections moves the FBP pore-count error against the truth at least 3×, above the floor."""
    error = {s: known[f"fbp:{s}"]["aggregate"]["pore_count/rel_error_truth"]["mean"] for s in ("50proj", "250proj")}
    floor = known["reference"]["aggregate"]["pore_count/rel_error_truth"]["mean"]
    assert abs(error["50proj"]) >= 3 * abs(error["250proj"]), error
    assert abs(error["50proj"]) > 3 * abs(floor), (error, floor)
