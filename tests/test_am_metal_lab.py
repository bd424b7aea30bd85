"""am-metal-lab@1.0: a lab micro-CT's cone-beam, polychromatic scan of an AM part, through the one harness."""

from __future__ import annotations

import math
from types import MappingProxyType

import numpy as np
import pytest

from aiax_bench.errors import InputError

DATASET = "am-metal-lab@1.0"


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory):
    """A cache holding am-metal-lab@1.0 at the tiny profile, built in a process of one thread per library (the
    build started ahead at the session's start)."""
    from _tiny import tiny_one_thread

    return tiny_one_thread(DATASET, tmp_path_factory.mktemp("lab-data"))[0]


@pytest.fixture(scope="module")
def lab(lab_root):
    from aiax_bench.data.loader import load

    return load(DATASET, profile="tiny", root=lab_root, build=False)


def test_tiny_builds_to_its_registered_content_sha256_whatever_the_thread_count(lab, tmp_path):
    """The whole store from one thread per library; its first sample again from two threads."""
    import torch
    import zarr

    from aiax_bench.data.build import sample_ids
    from aiax_bench.data.cone import build_cone_store
    from aiax_bench.data.registry import resolve

    spec = resolve(DATASET)
    assert lab.content_sha256 == spec.content_sha256["tiny"]
    first = sample_ids(spec, "tiny")[:1]
    before = torch.get_num_threads()
    torch.set_num_threads(max(2, before))  # not the whole store's one thread (more than the cores is valid too)
    try:
        build_cone_store(spec, "tiny", tmp_path / "again", ids=first, quiet=True)
    finally:
        torch.set_num_threads(before)
    again = zarr.open_group(tmp_path / "again", mode="r")["samples"][first[0][0]].attrs["sha256"]
    whole = lab.group["samples"][first[0][0]].attrs["sha256"]
    assert len(whole) > 10 and any(name.startswith("splits/") for name in whole)
    assert again == whole  # every array of the sample, splits included, bit for bit


def test_the_scan_is_a_lab_cone_beam_with_a_polychromatic_tube(lab):
    from aiax_bench.data.registry import resolve

    sample = lab.split("90proj").test[0]
    geometry = sample.meta["geometry"]
    assert geometry["beam"] == "cone" and 4.0 < geometry["cone_half_angle_deg"] < 8.0  # a cone of several degrees
    assert sample.read("sinogram").shape == (90, geometry["n_rows"], geometry["n_detector"])
    spectrum = sample.meta["spectrum"]
    assert spectrum["kvp"] == 100.0 and len(spectrum["energies_kev"]) == len(spectrum["weights"]) > 50
    mu = sample.meta["effective_attenuation_per_cm"]
    # The truth is the alloy at its effective attenuation, the number the evaluation's data range states.
    assert np.asarray(sample.read("truth")).max() == pytest.approx(mu, rel=1e-6)
    assert resolve(DATASET).evaluation["data_range"] == mu
    # Thin-part attenuation between the spectrum's extremes: harder photons attenuate less.
    assert min(spectrum["attenuation_per_cm"]) < mu < max(spectrum["attenuation_per_cm"])


def test_the_short_scan_covers_half_a_turn_plus_the_fan_and_the_arc_its_degrees(lab):
    sample = lab.split("short-scan").test[0]
    fan = math.radians(sample.meta["geometry"]["fan_half_angle_deg"])
    angles = np.asarray(sample.angles)
    step = 2 * np.pi / np.asarray(lab.split("dose-1/8").test[0].angles).size
    assert math.pi + 2 * fan <= angles.max() <= math.pi + 2 * fan + step and angles.min() == 0.0
    arc = np.asarray(lab.split("arc-120").test[0].angles)
    assert math.radians(120) - step - 1e-12 <= arc.max() < math.radians(120)


def _core_and_rim(sample, volume):
    """Mean attenuation of the metal in the part's central third (radially) and in its outer third."""
    labels = np.asarray(sample.read("labels"))
    n = labels.shape[-1]
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    radius = np.hypot(y, x) / (0.45 * n)
    metal = labels == 1
    slab = slice(n // 2 - 2, n // 2 + 2)  # near the orbit's plane: beam hardening, not cone-beam artefacts
    core = metal[slab] & (radius < 1 / 3)[None]
    rim = metal[slab] & ((radius > 0.5) & (radius < 0.85))[None]
    v = np.asarray(volume)[slab]
    return float(v[core].mean()), float(v[rim].mean())


def test_beam_hardening_cups_the_uncorrected_polychromatic_reconstruction(lab):
    """Thick paths through the centre harden the beam: its attenuation sinks below the rim's, and below the
    monochromatic reference's everywhere."""
    poly = lab.split("polychromatic").test[0]
    core, rim = _core_and_rim(poly, poly.read("low"))
    ref_core, ref_rim = _core_and_rim(poly, poly.read("clean"))
    assert core < rim and core / rim < ref_core / ref_rim - 0.02, (core, rim, ref_core, ref_rim)
    assert rim < 0.95 * ref_rim


def test_tuned_fdk_beats_ramp_fdk_and_the_sinogram_methods_say_which_reconstruct_cone_beams(lab_root, monkeypatch,
                                                                                            tmp_path):
    from aiax_bench.harness import EvaluationRequest, _prepare, run_seeds

    monkeypatch.setenv("AIAX_BENCH_DATA", str(lab_root))
    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    results = {m: run_seeds(EvaluationRequest(method=m, dataset=DATASET, profile="tiny", split="dose-1/8",
                                              tracking_uri=tracking, output_dir=tmp_path / "results",
                                              figures=False), [0]) for m in ("fbp", "fbp-ramp")}
    psnr = {m: r["metrics"]["psnr/truth"]["mean"] for m, r in results.items()}
    print(f"tiny dose-1/8 PSNR vs truth: {psnr}")
    assert psnr["fbp"] > psnr["fbp-ramp"] + 0.5, psnr
    assert results["fbp"]["runs"][0]["fit_summary"]["selected"]["filter"] != "ramp"
    with pytest.raises(InputError, match=r"cone-beam sinograms \(fbp\)") as error:
        _prepare(EvaluationRequest(method="sirt", dataset=DATASET, split="90proj"))
    assert "\n" not in str(error.value)


def test_fdk_of_chosen_slices_is_those_slices_of_the_whole_volume(lab):
    from aiax_bench.recon import ConeBeamGeometry, fdk

    sample = lab.split("90proj").test[0]
    g = sample.meta["geometry"]
    geometry = ConeBeamGeometry(**{k: g[k] for k in ("source_origin", "origin_detector", "det_spacing",
                                                      "row_spacing")})
    n = sample.shape[-1]
    sino, angles = sample.read("sinogram"), sample.angles
    whole = fdk(sino, angles, geometry, n_pixels=n, n_slices=n)
    np.testing.assert_array_equal(fdk(sino, angles, geometry, n_pixels=n, n_slices=n, slices=[3, 17, 30]),
                                  whole[[3, 17, 30]])
    with pytest.raises(InputError, match="slices"):
        fdk(sino, angles, geometry, n_pixels=n, n_slices=n, slices=[n])


def test_linearised_fdk_removes_the_cupping_of_the_polychromatic_scan(lab):
    """The single-material linearisation with the scan's recorded spectrum brings the polychromatic FDK back to
    the monochromatic one: no cupping, the effective attenuation at the rim."""
    from aiax_bench.baselines.fbp import FBP
    from aiax_bench.data.sealed import seal

    [sample] = seal(lab.split("polychromatic").test[:1])
    assert "spectrum" in sample.meta and "truth" not in dir(sample)
    method = FBP({"tune": "none", "filter": "ramp", "linearise": True})
    corrected = method.predict(sample)
    raw = FBP({"tune": "none", "filter": "ramp"}).predict(sample)
    [full] = lab.split("polychromatic").test[:1]
    core, rim = _core_and_rim(full, corrected)
    ref_core, ref_rim = _core_and_rim(full, full.read("clean"))
    raw_core, raw_rim = _core_and_rim(full, raw)
    assert abs(core / rim - ref_core / ref_rim) < 0.25 * abs(raw_core / raw_rim - ref_core / ref_rim)
    assert rim == pytest.approx(ref_rim, rel=0.03)
    with pytest.raises(InputError, match="meta spectrum"):
        FBP({"linearise": True}).measured_sinogram(_NoSpectrum())


class _NoSpectrum:
    """A scan that records no tube spectrum (a synchrotron's)."""

    id = "x"
    meta = MappingProxyType({})

    def read(self, name):
        return np.zeros((2, 3, 4), dtype=np.float32)
