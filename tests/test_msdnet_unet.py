"""The learned baselines msdnet and unet: architecture, learning, checkpoints and their reuse."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from aiax_bench.baselines._nets import MSDNetwork, UNetwork, msd_dilations
from aiax_bench.baselines.msdnet import MSDNet
from aiax_bench.baselines.unet import UNet
from aiax_bench.errors import InputError, StoreError
from aiax_bench.evaluation import metrics
from aiax_bench.methods import Budget

# Small enough to train in seconds on the tiny profile, large enough to learn.
TEST_CONFIGS = {
    "msdnet": (MSDNet, {"depth": 10, "patch_size": 32, "max_steps": 400, "val_every": 100, "learning_rate": 3e-3,
                        "progress": False}),
    "unet": (UNet, {"depth": 2, "base_channels": 8, "patch_size": 32, "max_steps": 150, "val_every": 50,
                    "progress": False}),
    # The biomedical users' U-Net had tanh activations.
    "unet-tanh": (UNet, {"depth": 2, "base_channels": 8, "patch_size": 32, "max_steps": 150, "val_every": 50,
                         "activation": "tanh", "progress": False}),
}
QUICK = {"patch_size": 32, "max_steps": 4, "val_every": 2, "val_slice_step": 32, "progress": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def split(tiny_dataset):
    return tiny_dataset.split("100proj")


@pytest.fixture(scope="module")
def trained(split):
    out = {}
    for name, (cls, cfg) in TEST_CONFIGS.items():
        method = cls(cfg)
        method.fit(split.train, split.val, seed=0)
        out[name] = method
    return out


def masked_psnr(sample, volume) -> float:
    return metrics.psnr(volume, sample.read("high"), data_range=4.2, mask=sample.read("mask").astype(bool))


def test_msd_network_follows_the_paper():
    assert msd_dilations(12) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 2]
    # Pelt & Sethian's 100-layer network on one input slice has 45,652 weights.
    assert sum(p.numel() for p in MSDNetwork(1, 1, depth=100).parameters()) == 45_652
    net = MSDNetwork(5, 1, depth=6)
    x = torch.randn(2, 5, 24, 20)
    assert torch.count_nonzero(net(x)) == 0  # zero-initialised final layer
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())


def test_msd_fast_formulation_equals_the_dilated_convolution():
    torch.manual_seed(0)
    conv = MSDNetwork(3, 1, depth=12, formulation="conv").double()
    torch.nn.init.normal_(conv.final.weight)
    taps = MSDNetwork(3, 1, depth=12, formulation="taps").double()
    taps.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 30, 26, dtype=torch.float64, requires_grad=True)
    ya, yb = conv(x), taps(x)
    # float64: the two differ only in the order of the sums.
    torch.testing.assert_close(ya, yb, rtol=1e-12, atol=1e-12)
    wrt_a = [x, *conv.weights, *conv.biases, conv.final.weight]
    wrt_b = [x, *taps.weights, *taps.biases, taps.final.weight]
    ga = torch.autograd.grad(ya.square().sum(), wrt_a)
    gb = torch.autograd.grad(yb.square().sum(), wrt_b)
    for a, b in zip(ga, gb, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(taps(x), yb, rtol=0, atol=0)  # inference runs the same forward pass


def _saved_bytes(net: MSDNetwork, x: torch.Tensor) -> int:
    """Bytes of the distinct tensors autograd keeps for the backward pass of one training step."""
    storages: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x).square().sum().backward()
    return sum(storages.values())


def test_msd_training_memory_grows_linearly_with_depth():
    x = torch.randn(2, 1, 32, 32)
    map_bytes = x.numel() * 4
    for depth in (10, 40):
        net = MSDNetwork(1, 1, depth=depth)
        weight_bytes = sum(p.numel() * 4 for p in net.parameters())
        # One buffer of the input and all depth maps, the output (for the
        # loss) and the weights; the textbook form keeps every layer's
        # concatenated input, ~depth²/2 maps.
        assert _saved_bytes(net, x) <= (1 + depth + 1) * map_bytes + weight_bytes
    textbook = _saved_bytes(MSDNetwork(1, 1, depth=40, formulation="conv"), x)
    assert textbook > 40 * 41 / 2 * map_bytes


def test_unet_accepts_any_size_and_the_method_is_residual():
    net = UNetwork(5, 1, depth=3, base_channels=4)
    assert net(torch.randn(2, 5, 37, 50)).shape == (2, 1, 37, 50)
    method = UNet({"slices": 3, "depth": 2, "base_channels": 4})
    model = method._new_model(seed=0)
    torch.nn.init.zeros_(model.net.head.weight)
    torch.nn.init.zeros_(model.net.head.bias)
    model.eval()
    x = torch.rand(1, 3, 16, 16) * 4
    torch.testing.assert_close(model(x), x[:, 1:2])  # an untrained residual head passes the input through


@pytest.mark.parametrize("name", ["msdnet", "unet", "unet-tanh"])
def test_learns_and_beats_fbp_on_held_out_slices(trained, split, name):
    method = trained[name]
    history = method.training_result.history
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    test = split.test[0]
    prediction = method.predict(test)
    assert prediction.shape == test.shape and prediction.dtype == np.float32 and np.isfinite(prediction).all()
    fbp = masked_psnr(test, test.read("low"))
    assert masked_psnr(test, prediction) > fbp + 1.0, f"{name} does not beat FBP ({fbp:.2f} dB)"


@pytest.mark.parametrize("name", ["msdnet", "unet"])
def test_checkpoint_round_trip_is_bit_exact(trained, split, tmp_path, name):
    method = trained[name]
    method.save(tmp_path / name)
    meta = json.loads((tmp_path / name / "metadata.json").read_text())
    assert meta["method"] == name and meta["input"]["slices"] == 5 and meta["input"]["units"] == "1/cm"
    assert {"input_mean", "input_std", "output_mean", "output_std", "data_range"} <= set(meta["value_range"])
    assert meta["training"]["dataset_sha256"] == split.dataset.content_sha256
    assert meta["training"]["split"] == "100proj" and meta["parameters"] == method.parameter_count()
    loaded = type(method).load(tmp_path / name)
    a, b = method.model.state_dict(), loaded.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert loaded.config == method.config
    volume = split.test[0].read("low")[:8]
    np.testing.assert_array_equal(loaded.predict(volume), method.predict(volume))
    with pytest.raises(InputError, match="method"):
        (MSDNet if name == "unet" else UNet).load(tmp_path / name)


@pytest.mark.parametrize("cls", [MSDNet, UNet])
def test_same_seed_gives_the_same_weights(split, cls):
    def weights(seed):
        method = cls({**QUICK, "depth": 2})
        method.fit(split.train, split.val, seed=seed)
        return method.model.state_dict()

    a, b, c = weights(0), weights(0), weights(1)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_checkpoints_are_cached_reused_and_refused_when_they_do_not_match(split, tmp_path):
    context = {"checkpoint_root": tmp_path}
    first = MSDNet({**QUICK, "depth": 3})
    first.fit(split.train, split.val, seed=0, context=context)
    [cached] = [p for p in (tmp_path / "msdnet").iterdir() if p.is_dir()]
    assert first.checkpoint_path == cached and not cached.name.endswith(".partial")

    again = MSDNet({**QUICK, "depth": 3, "num_workers": 0, "inference_batch_size": 2})  # runtime-only changes
    again.fit(split.train, split.val, seed=0, context=context)
    assert again.training_result is None and again.checkpoint_path == cached
    # A cache hit reports what the training cost, not the milliseconds of loading it.
    assert again.prior_training_seconds() == first.training_result.seconds > 0
    assert first.prior_training_seconds() == 0.0
    assert first.fit_summary()["training"]["checkpoint"] == "trained"
    assert again.fit_summary()["training"] == {**first.fit_summary()["training"], "checkpoint": "reused"}
    volume = split.test[0].read("low")[:6]
    np.testing.assert_array_equal(again.predict(volume), first.predict(volume))

    # Another seed, config or budget is another training, in its own directory.
    MSDNet({**QUICK, "depth": 3}).fit(split.train, split.val, seed=0, budget=Budget(iterations=2), context=context)
    assert len([p for p in (tmp_path / "msdnet").iterdir() if p.is_dir()]) == 2

    # An explicit checkpoint with another config, or from other data, is refused by name.
    with pytest.raises(InputError, match="depth"):
        MSDNet({**QUICK, "depth": 4}).fit(split.train, split.val, seed=0, context={"checkpoint": cached})
    with pytest.raises(InputError, match="dataset_sha256"):
        MSDNet({**QUICK, "depth": 3}).fit(split.train, split.val, seed=0,
                                          context={"checkpoint": cached, "dataset_sha256": "0" * 64})
    with pytest.raises(InputError, match="split"):
        MSDNet({**QUICK, "depth": 3}).fit(split.train, split.val, seed=0,
                                          context={"checkpoint": cached, "split": "50proj"})
    (cached / "weights.pt").write_bytes(b"not the weights")
    with pytest.raises(StoreError, match="sha256"):
        MSDNet({**QUICK, "depth": 3}).fit(split.train, split.val, seed=0, context=context)


def test_an_interrupted_fit_resumes_from_the_cache(split, tmp_path, monkeypatch):
    from aiax_bench.data.torch_adapter import RandomPatches

    config = {**QUICK, "depth": 3, "max_steps": 8}
    straight = MSDNet(config)
    straight.fit(split.train, split.val, seed=0)

    real = RandomPatches.__getitem__
    calls = {"n": 0}

    def interrupting(self, i):
        calls["n"] += 1
        if calls["n"] == 8 * 5 + 1:  # first item of step 6 (batch 8)
            raise KeyboardInterrupt
        return real(self, i)

    monkeypatch.setattr(RandomPatches, "__getitem__", interrupting)
    with pytest.raises(KeyboardInterrupt):
        MSDNet(config).fit(split.train, split.val, seed=0, context={"checkpoint_root": tmp_path})
    assert [p.name.endswith(".partial") for p in (tmp_path / "msdnet").iterdir()] == [True]
    resumed = MSDNet(config)
    resumed.fit(split.train, split.val, seed=0, context={"checkpoint_root": tmp_path})
    assert resumed.training_result.resumed_from == 5 and resumed.training_result.steps == 8
    assert 0 < resumed.prior_training_seconds() == resumed.training_result.resumed_seconds
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert [p.name.endswith(".partial") for p in (tmp_path / "msdnet").iterdir()] == [False]


def test_presets_and_config_errors():
    paper = MSDNet({"preset": "paper"})
    assert paper.config.depth == 100 and paper.config.max_dilation == 10 and paper.config.loss == "l2"
    assert MSDNet.preset("paper", depth=50).depth == 50
    fbpconvnet = UNet.preset("paper")
    assert (fbpconvnet.slices, fbpconvnet.depth, fbpconvnet.base_channels) == (1, 4, 64)
    assert MSDNet().config.slices == 5 and UNet().config.slices == 5
    with pytest.raises(InputError, match="preset"):
        MSDNet({"preset": "huge"})
    with pytest.raises(InputError, match="unknown key"):
        UNet({"width": 3})
    with pytest.raises(InputError, match="odd"):
        MSDNet({"slices": 4})
    with pytest.raises(InputError, match="loss"):
        MSDNet({"loss": "l3"})
    with pytest.raises(InputError, match="activation"):
        UNet({"activation": "swish"})
    tanh = UNetwork(1, 1, depth=2, base_channels=4, activation="tanh")
    assert any(isinstance(m, torch.nn.Tanh) for m in tanh.modules())
    assert not any(isinstance(m, torch.nn.ReLU) for m in tanh.modules())
    with pytest.raises(InputError, match="not trained"):
        UNet().predict(np.zeros((4, 8, 8), np.float32))


def test_ssim_loss_is_selectable(split):
    method = MSDNet({**QUICK, "depth": 2, "loss": "ssim-l1"})
    method.fit(split.train, split.val, seed=0)
    assert np.isfinite(method.training_result.best_val_loss)


def test_evaluate_trains_logs_curves_and_checkpoint_to_mlflow(tiny_env, tmp_path, monkeypatch):
    import aiax_bench.methods as methods
    from aiax_bench.harness import EvaluationRequest, run_evaluation

    if "msdnet" not in methods.available_methods():  # until the entry point is installed
        real = methods.get_method
        monkeypatch.setattr(methods, "get_method", lambda name: MSDNet if name == "msdnet" else real(name))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = run_evaluation(EvaluationRequest(method="msdnet", split="100proj", profile="tiny",
                                              config={**QUICK, "depth": 3, "max_steps": 6}, tracking_uri=uri,
                                              output_dir=tmp_path / "results"))
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    run_id = result["runs"][0]["mlflow_run_id"]
    assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [6]
    assert len(client.get_metric_history(run_id, "val/psnr")) == 3
    artifacts = {a.path for a in client.list_artifacts(run_id, "checkpoint")}
    assert {"checkpoint/weights.pt", "checkpoint/metadata.json", "checkpoint/config.json"} <= artifacts
    assert result["runs"][0]["efficiency"]["parameters"] == MSDNet({"depth": 3}).parameter_count()
