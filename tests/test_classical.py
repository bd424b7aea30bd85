"""Classical baselines: settings chosen on the validation volumes only, better than ramp FBP on held-out data."""

from __future__ import annotations

import numpy as np
import pytest

from aiax_bench.data.sealed import SealedFieldError, seal
from aiax_bench.errors import InputError
from aiax_bench.evaluation import metrics
from aiax_bench.methods import get_method

# Small enough for a test: few slices to tune on, short iterative runs (the defaults tune on more).
FAST = {"sirt": {"max_iter": 60, "tune_slices": 4}, "tv": {"max_iter": 30, "check_every": 10, "tune_slices": 2},
        "fbp": {"tune_slices": 8}}


def _psnr_vs_truth(volume: np.ndarray, sample) -> float:
    return metrics.psnr(volume, sample.read("truth"), data_range=4.2, mask=sample.read("mask").astype(bool))


@pytest.fixture(scope="module")
def split(tiny_v2):
    return tiny_v2.split("dose-1/16")


@pytest.mark.parametrize("name", ["fbp", "sirt", "tv"])
def test_tuned_on_validation_beats_ramp_fbp_on_held_out_volumes(split, name):
    """Tuned against the validation reference scans, scored against the truth of test volumes it never saw."""
    method = get_method(name)({"tune": "reference", **FAST[name]})
    method.fit(split.train, split.val, seed=0)
    summary = method.fit_summary()
    assert summary["validation_volumes"] == [s.id for s in split.val]
    assert summary["selected"] == method.selected and len(summary["candidates"]) > 1
    assert summary["selected_mse"] == min(c["mse"] for c in summary["candidates"])
    ramp = get_method("fbp-ramp")()
    for sample in split.test:
        [sealed] = seal([sample])  # what predict sees: no truth, no reference
        tuned, baseline = _psnr_vs_truth(method.predict(sealed), sample), _psnr_vs_truth(ramp.predict(sealed), sample)
        assert tuned > baseline + 0.5, (name, tuned, baseline)


def test_self_tuning_reads_only_the_projections(split):
    """``tune=self`` is the self-supervised protocol: it works on sealed validation volumes (no clean data)."""
    fbp = get_method("fbp")({"tune": "self", **FAST["fbp"]})
    assert fbp.supervision == "self"
    fbp.fit(seal(split.train), seal(split.val), seed=0)
    assert fbp.fit_summary()["criterion"].startswith("MSE of the even-angle half")
    reference_tuned = get_method("fbp")({"tune": "reference", **FAST["fbp"]})
    with pytest.raises(SealedFieldError):
        reference_tuned.fit(seal(split.train), seal(split.val), seed=0)


def test_tune_none_keeps_the_configured_filter_and_ramp_equals_the_stored_reconstruction(split):
    sample = split.test[0]
    fbp = get_method("fbp")({"tune": "none", "filter": "ramp", "cutoff": 1.0})
    assert fbp.supervision == "none"
    fbp.fit(split.train, split.val, seed=0)
    assert fbp.selected == {"filter": "ramp", "cutoff": 1.0}
    np.testing.assert_allclose(fbp.predict(seal([sample])[0]), sample.read("low"), atol=1e-5)
    assert get_method("fbp-ramp")().supervision == "none"


def test_cutoff_lowers_the_high_frequencies():
    from aiax_bench.recon.fbp import _response

    full, half = _response(256, "hann", 1.0), _response(256, "hann", 0.5)
    assert np.all(half[65:] == 0) and np.all(full[1:128] > 0)
    np.testing.assert_array_equal(_response(256, "ramp", 1.0)[:129], _response(256, "ramp")[:129])
    from aiax_bench.recon import fbp

    with pytest.raises(InputError, match="cutoff"):
        fbp(np.zeros((4, 8), np.float32), np.linspace(0, np.pi, 4, endpoint=False), cutoff=0.0)


@pytest.mark.parametrize(("name", "config", "key"), [("fbp", {"tune": "everything"}, "tune"),
                                                      ("sirt", {"tune_slices": 0}, "tune_slices")])
def test_bad_tuning_options_name_the_key(name, config, key):
    with pytest.raises(InputError) as exc:
        get_method(name)(config)
    assert exc.value.field.endswith(f"key {key}")
