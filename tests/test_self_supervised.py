"""The self-supervised baselines noise2inverse and noise2noise: no clean data, and they still denoise."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aiax_bench.baselines.noise2inverse import (
    CleanDataError,
    Noise2Inverse,
    SelfSupervisedSample,
    sub_reconstructions,
    x1_pairs,
)
from aiax_bench.baselines.noise2noise import Noise2Noise
from aiax_bench.data.loader import Sample
from aiax_bench.errors import InputError
from aiax_bench.evaluation import metrics
from aiax_bench.methods import get_method

# Small enough to train in seconds on the tiny profile (64³), large enough to learn.
FAST = {"depth": 2, "base_channels": 8, "patch_size": 32, "max_steps": 200, "val_every": 50, "progress": False}
CLEAN = ("high", "truth", "labels")
BASELINES = Path(__file__).resolve().parents[1] / "aiax_bench" / "baselines"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def split(tiny_dataset):
    return tiny_dataset.split("dose-1/16")


@pytest.fixture(scope="module")
def no_clean_data():
    """While active, any read of a clean array of any Sample fails the test."""
    mp = pytest.MonkeyPatch()
    touched = []

    def guard(name):
        def fail(self):
            touched.append(name)
            raise AssertionError(f"clean array {name!r} read during self-supervised training")
        return property(fail)

    real_read = Sample.read

    def read(self, name):
        if name in CLEAN:
            touched.append(name)
            raise AssertionError(f"clean array {name!r} read during self-supervised training")
        return real_read(self, name)

    class Guard:
        def __enter__(self):
            for name in CLEAN:
                mp.setattr(Sample, name, guard(name))
            mp.setattr(Sample, "read", read)
            return touched

        def __exit__(self, *exc):
            mp.undo()

    return Guard()


@pytest.fixture(scope="module")
def trained(split, no_clean_data):
    out = {}
    with no_clean_data as touched:
        for name, cls in (("noise2inverse", Noise2Inverse), ("noise2noise", Noise2Noise)):
            method = cls(FAST)
            method.fit(split.train, split.val, seed=0)
            out[name] = method
    assert touched == []
    return out


def masked_psnr(sample, volume) -> float:
    return metrics.psnr(volume, sample.read("high"), data_range=4.2, mask=sample.read("mask").astype(bool))


def test_the_wrapper_hides_clean_arrays(split):
    view = SelfSupervisedSample(split.train[0])
    for name in CLEAN:
        with pytest.raises(CleanDataError):
            view.read(name)
        with pytest.raises(CleanDataError):
            getattr(view, name)
    assert isinstance(CleanDataError("high", "x"), InputError)
    # What the method needs passes through.
    assert view.id == split.train[0].id and view.shape == split.train[0].low.shape
    assert view.read("low").shape == view.sinogram.shape[:1] + view.low.shape[1:]


def test_sub_reconstructions_average_to_the_split_reconstruction(split):
    sample = split.test[0]
    subs = sub_reconstructions(sample, 4)
    assert subs.shape == (4, *sample.low.shape) and subs.dtype == np.float32
    # Interleaved subsets of an even angle set: their FBPs average to the full FBP (``low``).
    np.testing.assert_allclose(subs.mean(axis=0), sample.read("low"), atol=1e-4)
    pairs = x1_pairs(subs)
    assert len(pairs) == 4  # every split combination is a sample
    np.testing.assert_allclose(pairs[0]["input"], subs[1:].mean(axis=0), atol=1e-5)
    np.testing.assert_array_equal(pairs[0]["target"], subs[0])
    with pytest.raises(InputError):
        sub_reconstructions(sample, 400)


def test_fit_reads_no_clean_array_and_validates_self_supervised(trained):
    # The ``trained`` fixture fits both methods with every clean read of Sample failing.
    for method in trained.values():
        result = method.training_result
        assert result.history["val_loss"] and all(np.isfinite(result.history["val_loss"]))
        assert result.history["loss"][-1] < result.history["loss"][0]


@pytest.mark.parametrize("name", ["noise2inverse", "noise2noise"])
def test_beats_fbp_on_held_out_slices(trained, split, name):
    test = split.test[0]
    prediction = trained[name].predict(test)
    assert prediction.shape == test.low.shape and prediction.dtype == np.float32 and np.isfinite(prediction).all()
    fbp = masked_psnr(test, test.read("low"))
    assert masked_psnr(test, prediction) > fbp + 1.0, f"{name} does not beat FBP ({fbp:.2f} dB)"


def test_msd_backbone_and_checkpoint_round_trip(split, tmp_path):
    method = Noise2Inverse({"backbone": "msd", "msd_depth": 6, "patch_size": 32, "max_steps": 6, "val_every": 3,
                            "val_slice_step": 32, "progress": False})
    assert method.residual is False
    method.fit(split.train, split.val, seed=0)
    method.save(tmp_path / "n2i")
    loaded = Noise2Inverse.load(tmp_path / "n2i")
    assert loaded.config == method.config and loaded.residual is False
    np.testing.assert_array_equal(loaded.predict(split.test[0]), method.predict(split.test[0]))
    with pytest.raises(InputError):
        method.predict(split.test[0].read("low"))  # a bare volume: no projections to split


def test_configs_are_checked_and_file_specs_resolve():
    with pytest.raises(InputError):
        Noise2Inverse({"splits": 1})
    with pytest.raises(InputError):
        Noise2Inverse({"backbone": "vgg"})
    with pytest.raises(InputError):
        Noise2Noise({"splits": 4})
    assert Noise2Inverse.preset("msd").backbone == "msd"
    assert Noise2Noise({"predict_on": "full"}).config.predict_on == "full"
    for stem, cls_name in (("noise2inverse", "Noise2Inverse"), ("noise2noise", "Noise2Noise")):
        assert get_method(f"{BASELINES / stem}.py:{cls_name}").name == stem
