"""The TomoGAN baseline: both adversarial losses train stably, and the generator beats FBP."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from aiax_bench.baselines.tomogan import Discriminator, PerceptualFeatures, TomoGAN
from aiax_bench.errors import InputError
from aiax_bench.evaluation import metrics
from aiax_bench.methods import get_method

# Small enough to train in seconds on the tiny profile (64³), large enough to learn.
FAST = {"depth": 2, "base_channels": 8, "patch_size": 32, "max_steps": 150, "val_every": 50,
        "disc_channels": (8, 16), "progress": False}
QUICK = {**FAST, "max_steps": 4, "val_every": 2, "val_slice_step": 32}
BASELINES = Path(__file__).resolve().parents[1] / "aiax_bench" / "baselines"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def split(tiny_dataset):
    return tiny_dataset.split("dose-1/16")


@pytest.fixture(scope="module")
def trained(split):
    out = {}
    for adversarial in ("js", "wgan-gp"):
        method = TomoGAN({**FAST, "adversarial": adversarial})
        method.fit(split.train, split.val, seed=0)
        out[adversarial] = method
    return out


def masked_psnr(sample, volume) -> float:
    return metrics.psnr(volume, sample.read("high"), data_range=4.2, mask=sample.read("mask").astype(bool))


def test_networks_follow_the_paper():
    method = TomoGAN()
    assert method.config.slices == 3 and method.config.disc_steps == 2
    assert (method.config.mse_weight, method.config.adversarial_weight, method.config.perceptual_weight) == (
        0.5, 20.0, 2.0)
    assert method.config.perceptual_weights is None  # no perceptual term unless weights are supplied
    assert TomoGAN.preset("paper").learning_rate == 1e-4 and method.config.disc_learning_rate == 1e-4
    net = method.build_network()
    assert net(torch.randn(2, 3, 40, 36)).shape == (2, 1, 40, 36)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    disc = Discriminator((8, 16))
    assert disc(torch.randn(3, 1, 32, 48)).shape == (3,)


@pytest.mark.parametrize("adversarial", ["js", "wgan-gp"])
def test_adversarial_training_is_stable(trained, adversarial):
    history = trained[adversarial].training_result.history
    for name in ("loss", "mse_255", "adversarial", "d_loss"):
        assert history[name] and all(math.isfinite(v) for v in history[name]), name
    d_loss = np.array(history["d_loss"])
    if adversarial == "js":
        # Two cross-entropies: 2 ln 2 at the equilibrium, far from blowing up.
        assert np.all((d_loss > 0) & (d_loss < 5.0))
    else:
        assert np.all(np.abs(d_loss) < 50.0)
    assert history["mse_255"][-1] < 0.5 * history["mse_255"][0]


@pytest.mark.parametrize("adversarial", ["js", "wgan-gp"])
def test_beats_fbp_on_held_out_slices(trained, split, adversarial):
    test = split.test[0]
    prediction = trained[adversarial].predict(test)
    assert prediction.shape == test.shape and prediction.dtype == np.float32 and np.isfinite(prediction).all()
    fbp = masked_psnr(test, test.read("low"))
    assert masked_psnr(test, prediction) > fbp + 1.0, f"tomogan/{adversarial} does not beat FBP ({fbp:.2f} dB)"


def test_checkpoint_round_trip(trained, split, tmp_path):
    method = trained["js"]
    method.save(tmp_path / "tomogan")
    loaded = TomoGAN.load(tmp_path / "tomogan")
    volume = split.test[0].read("low")[:6]
    np.testing.assert_array_equal(loaded.predict(volume), method.predict(volume))


def test_optional_perceptual_term_loads_user_weights(split, tmp_path):
    torch.manual_seed(0)
    path = tmp_path / "features.pt"
    torch.save(PerceptualFeatures().state_dict(), path)
    method = TomoGAN({**QUICK, "perceptual_weights": str(path)})
    method.fit(split.train, split.val, seed=0)
    assert all(math.isfinite(v) for v in method.training_result.history["loss"])
    with pytest.raises(InputError):
        TomoGAN({"perceptual_weights": str(tmp_path / "missing.pt")})
    torch.save({"weight": torch.zeros(3)}, tmp_path / "wrong.pt")
    with pytest.raises(InputError):
        TomoGAN({**QUICK, "perceptual_weights": str(tmp_path / "wrong.pt")}).fit(split.train, split.val, seed=0)


def test_configs_are_checked_and_the_file_spec_resolves():
    with pytest.raises(InputError):
        TomoGAN({"adversarial": "hinge"})
    with pytest.raises(InputError):
        TomoGAN({"disc_steps": 0})
    assert TomoGAN.preset("wgan").adversarial == "wgan-gp"
    assert get_method(f"{BASELINES / 'tomogan'}.py:TomoGAN").name == "tomogan"
