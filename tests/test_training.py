"""Training machinery: determinism, resume, budgets, early stopping, logging, checkpoints, inference."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from _mapped import needs_smaps, resident_kb_of_mapping
from torch import nn

from aiax_bench.data.torch_adapter import RandomPatches, SliceStacks
from aiax_bench.errors import InputError, StoreError
from aiax_bench.training import (
    Standardized,
    TrainSettings,
    load_checkpoint,
    make_loss,
    predict_volume,
    save_checkpoint,
    ssim_2d,
    train,
)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


class TinyNet(nn.Module):
    """3 slices in, 1 out: two small convolutions (fast, but with something to learn)."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 1, 3, padding=1))

    def forward(self, x):
        return self.body(x)


def make_model(seed: int = 0) -> Standardized:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Standardized(TinyNet(), input_mean=2.3, input_std=1.8, output_mean=0.0, output_std=0.5,
                            residual=True)


@pytest.fixture(scope="module")
def data(tiny_dataset):
    split = tiny_dataset.split("100proj")
    train_data = RandomPatches(split.train, slices=3, patch_size=24, length=64, seed=0)
    val_data = SliceStacks(split.val, slices=3, slice_step=16)
    return train_data, val_data


def settings(**kw) -> TrainSettings:
    base = {"max_steps": 20, "batch_size": 4, "val_every": 5, "log_every": 5, "progress": False,
            "learning_rate": 3e-3}
    return TrainSettings(**{**base, **kw})


def states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_the_same_weights_and_the_loss_decreases(data):
    loss = make_loss("l2", scale=0.5, data_range=4.2)
    m1, m2, m3 = make_model(0), make_model(0), make_model(1)
    r1 = train(m1, loss, *data, settings=settings(max_steps=30), device="cpu")
    r2 = train(m2, loss, *data, settings=settings(max_steps=30), device="cpu")
    assert states_equal(m1.state_dict(), m2.state_dict())
    assert r1.history == r2.history
    train(m3, loss, *data, settings=settings(max_steps=30), device="cpu")
    assert not states_equal(m1.state_dict(), m3.state_dict())
    assert r1.steps == 30 and r1.stopped_by == "steps"
    assert r1.history["loss"][-1] < r1.history["loss"][0]
    assert r1.history["val_step"] == [5, 10, 15, 20, 25, 30]
    assert r1.best_val_loss == min(r1.history["val_loss"])


def test_dataloader_workers_do_not_change_the_result(data):
    loss = make_loss("l2", scale=0.5, data_range=4.2)
    serial, parallel = make_model(0), make_model(0)
    train(serial, loss, *data, settings=settings(max_steps=6), device="cpu")
    train(parallel, loss, *data, settings=settings(max_steps=6, num_workers=2), device="cpu")
    assert states_equal(serial.state_dict(), parallel.state_dict())


class Interrupting(torch.utils.data.Dataset):
    """Raises KeyboardInterrupt once, when item ``at`` is first read (a user's Ctrl-C)."""

    def __init__(self, inner, at: int) -> None:
        self.inner, self.at, self.fired = inner, at, False

    def __len__(self):
        return len(self.inner)

    def set_epoch(self, epoch):
        self.inner.set_epoch(epoch)

    def __getitem__(self, i):
        if i == self.at and not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return self.inner[i]


def test_interrupted_training_resumes_to_the_same_weights(data, tmp_path):
    train_data, val_data = data
    loss = make_loss("l2", scale=0.5, data_range=4.2)
    straight = make_model()
    train(straight, loss, train_data, val_data, settings=settings(max_steps=24), device="cpu")

    resumed = make_model()
    flaky = Interrupting(train_data, at=4 * 13 + 1)  # during step 14 of epoch 0 (16 steps per epoch)
    with pytest.raises(KeyboardInterrupt):
        train(resumed, loss, flaky, val_data, settings=settings(max_steps=24), device="cpu", work_dir=tmp_path,
              resume_key="k")
    assert (tmp_path / "training_state.pt").is_file()
    fresh = make_model(seed=5)  # whatever it starts from, the saved state replaces it
    result = train(fresh, loss, flaky, val_data, settings=settings(max_steps=24), device="cpu", work_dir=tmp_path,
                   resume_key="k")
    assert result.resumed_from == 13 and result.steps == 24
    assert states_equal(straight.state_dict(), fresh.state_dict())
    with pytest.raises(StoreError, match="another configuration"):
        train(make_model(), loss, train_data, val_data, settings=settings(), device="cpu", work_dir=tmp_path,
              resume_key="other")


def test_time_budget_and_early_stopping(data):
    loss = make_loss("l2", scale=0.5, data_range=4.2)
    r = train(make_model(), loss, *data, settings=settings(max_steps=10_000, max_seconds=1.0), device="cpu")
    assert r.stopped_by == "seconds" and r.steps < 10_000 and r.seconds >= 1.0
    # A learning rate too small to change anything: no improvement after the first validation.
    r = train(make_model(), loss, *data, settings=settings(max_steps=100, learning_rate=1e-12, patience=2),
              device="cpu")
    assert r.stopped_by == "early-stopping" and r.steps == 15 and r.best_step == 5


class Recorder:
    """Stands in for the mlflow module: records what is logged."""

    def __init__(self) -> None:
        self.metrics: dict[str, list[tuple[int, float]]] = {}

    def log_metrics(self, metrics, step=None):
        for k, v in metrics.items():
            self.metrics.setdefault(k, []).append((step, v))


def test_curves_are_logged_to_the_tracker(data):
    rec = Recorder()
    train(make_model(), make_loss("l1", scale=0.5, data_range=4.2), *data, settings=settings(max_steps=10),
          device="cpu", tracker=rec)
    assert [s for s, _ in rec.metrics["train/loss"]] == [5, 10]
    assert {"train/lr", "val/loss", "val/psnr"} <= set(rec.metrics)
    assert rec.metrics["train/lr"][0][1] == pytest.approx(3e-3)


def test_learning_rate_schedules():
    model = make_model()
    for schedule, expected_end in (("cosine", 1e-4), ("geometric", 1e-4), ("constant", 1e-3)):
        s = TrainSettings(max_steps=10, learning_rate=1e-3, lr_schedule=schedule)
        from aiax_bench.training.trainer import _lr_factor

        assert 1e-3 * _lr_factor(s)(10) == pytest.approx(expected_end)
        assert _lr_factor(s)(0) == pytest.approx(1.0)
    with pytest.raises(InputError, match="lr_schedule"):
        train(model, make_loss("l2"), [], [], settings=TrainSettings(lr_schedule="step"))


def test_checkpoint_round_trip_is_bit_exact_and_verified(tmp_path):
    model = make_model(3)
    path = save_checkpoint(tmp_path / "ckpt", state_dict=model.state_dict(), config={"depth": 3},
                           metadata={"method": "tiny", "training": {"split": "100proj"}})
    ckpt = load_checkpoint(path, expect={"method": "tiny", "training.split": "100proj"})
    assert states_equal(ckpt.state_dict, model.state_dict())
    assert ckpt.config == {"depth": 3} and len(ckpt.metadata["weights_sha256"]) == 64
    assert ckpt.metadata["format"] == 1
    with pytest.raises(InputError, match=r"training\.split"):
        load_checkpoint(path, expect={"training.split": "50proj"})
    # The weights are loaded with weights_only=True: tensors only, no pickled code.
    assert set(torch.load(path / "weights.pt", weights_only=True)) == set(model.state_dict())
    data = bytearray((path / "weights.pt").read_bytes())
    data[-30] ^= 0xFF
    (path / "weights.pt").write_bytes(bytes(data))
    with pytest.raises(StoreError, match="sha256"):
        load_checkpoint(path)
    with pytest.raises(StoreError, match="not a checkpoint"):
        load_checkpoint(tmp_path)
    meta = json.loads((path / "metadata.json").read_text())
    meta["format"] = 99
    (path / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(StoreError, match="format"):
        load_checkpoint(path)


class Pointwise(nn.Module):
    """No in-plane context: tiles must reproduce the whole-slice result."""

    def forward(self, x):
        return (x[:, :1] * 2 + x[:, 1:2] - x[:, 2:3] ** 2)


def test_sliding_window_inference_zarr_in_zarr_out(tmp_path):
    import zarr

    rng = np.random.default_rng(0)
    volume = rng.normal(size=(11, 40, 36)).astype(np.float32)
    src = zarr.create_array(store=str(tmp_path / "in.zarr"), shape=volume.shape, chunks=(4, 16, 16), dtype="float32")
    src[...] = volume
    net = Pointwise()
    whole = predict_volume(net, volume, slices=3, device="cpu")
    padded = np.pad(volume, ((1, 1), (0, 0), (0, 0)), mode="reflect")
    expected = padded[:-2] * 2 + padded[1:-1] - padded[2:] ** 2
    np.testing.assert_allclose(whole, expected, rtol=1e-6, atol=1e-6)
    out = predict_volume(net, src, slices=3, slab=3, tile=16, overlap=6, batch_size=5, device="cpu",
                         out=tmp_path / "out.zarr")
    assert isinstance(out, zarr.Array) and out.chunks[0] == 3
    np.testing.assert_allclose(zarr.open_array(str(tmp_path / "out.zarr"), mode="r")[...], whole,
                               rtol=1e-5, atol=1e-5)
    # A network with context: tiles blended over an overlap larger than its reach agree in the interior.
    conv = nn.Conv2d(3, 1, 3, padding=1)
    a = predict_volume(conv, volume, slices=3, device="cpu")
    b = predict_volume(conv, volume, slices=3, tile=20, overlap=8, device="cpu")
    assert np.abs(a - b)[:, 1:-1, 1:-1].max() < 0.2 * np.abs(a).max()
    with pytest.raises(InputError, match="3D volume"):
        predict_volume(net, volume[0], slices=3)


def test_inference_batch_and_tile_are_chosen_by_bytes():
    from aiax_bench.baselines._nets import MSDNetwork, UNetwork
    from aiax_bench.training.inference import CPU_BATCH_BYTES, TILE_BYTES, activation_bytes_per_pixel, inference_plan

    cpu = torch.device("cpu")
    msd = MSDNetwork(5, 1, depth=20)
    assert activation_bytes_per_pixel(Standardized(msd), 5) == 4 * (5 + 20 + 18 + 1)
    # As many slices as fit the CPU budget, at least one; given values win.
    assert inference_plan(176, (128, 128), device=cpu) == (CPU_BATCH_BYTES // (176 * 128 * 128), None)
    assert inference_plan(176, (512, 512), device=cpu) == (1, None)
    assert inference_plan(176, (128, 128), device=cpu, batch_size=3) == (3, None)
    # Tiles only when one slice's activations pass the fixed limit; then the fewest that fit it, cut evenly.
    from aiax_bench.training.inference import tile_starts

    for bpp, n in ((1000, 2048), (648, 2048), (648, 4096), (200, 1500)):
        batch, tile = inference_plan(bpp, (n, n), device=cpu)
        largest = int((TILE_BYTES / bpp) ** 0.5) // 32 * 32
        assert batch == 1 and tile % 32 == 0 and bpp * tile**2 <= TILE_BYTES
        count = len(tile_starts(n, tile, 32))
        assert count == len(tile_starts(n, largest, 32))  # no more tiles than the largest would take
        assert count * (tile - 32) + 32 >= n and tile - 32 < largest  # each covered, with 32 px of overlap
    assert inference_plan(648, (2048, 2048), device=cpu) == (1, 544)  # 4 × 4 tiles: 1.13× the slice's pixels
    # Without a method of its own, the leaf modules' outputs are counted, in eval mode: a batch norm's
    # running statistics stay untouched.
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 1, 1))
    running = net[1].running_mean.clone()
    assert activation_bytes_per_pixel(net, 3) == 4 * (8 + 8 + 8 + 1)
    assert net.training and torch.equal(net[1].running_mean, running)
    assert activation_bytes_per_pixel(UNetwork(5, 1, depth=2, base_channels=4), 5) > 0
    # The chosen batch predicts what one slice at a time does.
    volume = np.random.default_rng(2).normal(size=(7, 24, 24)).astype(np.float32)
    np.testing.assert_array_equal(predict_volume(msd, volume, slices=5, device="cpu"),
                                  predict_volume(msd, volume, slices=5, batch_size=1, device="cpu"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_inference_is_the_same_on_cpu_and_gpu():
    volume = np.random.default_rng(1).normal(size=(6, 48, 48)).astype(np.float32)
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(5, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))
    cpu = predict_volume(net, volume, slices=5, device="cpu")
    gpu = predict_volume(net, volume, slices=5, device="cuda")
    np.testing.assert_allclose(cpu, gpu, rtol=1e-4, atol=1e-4)


def test_losses():
    g = torch.Generator().manual_seed(0)
    x = 2 + torch.rand(2, 1, 32, 32, generator=g)
    assert float(ssim_2d(x, x, data_range=4.0)) == pytest.approx(1.0)
    y = x + 0.5 * torch.randn(x.shape, generator=g)
    assert float(ssim_2d(x, y, data_range=4.0)) < 0.5
    for name in ("l2", "l1", "ssim", "ssim-l1"):
        pred = y.clone().requires_grad_(True)
        value = make_loss(name, scale=0.5, data_range=4.0)(pred, x)
        value.backward()
        assert value > 0 and pred.grad.abs().sum() > 0
    assert float(make_loss("l2", scale=0.5)(y, x)) == pytest.approx(float(((y - x) / 0.5).square().mean()))
    with pytest.raises(InputError, match="expected one of"):
        make_loss("l3")


@needs_smaps
def test_predict_volume_keeps_one_slab_of_a_memory_mapped_volume_resident(tmp_path):
    """A ``.npy`` volume is read through its map: each slab's pages are dropped once read, and the
    prediction is the one from the volume in memory."""
    from aiax_bench.training.inference import predict_volume

    path = tmp_path / "volume.npy"
    np.save(path, np.random.default_rng(0).random((40, 64, 64), dtype=np.float32))
    mapped = np.load(path, mmap_mode="r")
    torch.manual_seed(0)
    model = nn.Conv2d(5, 1, 3, padding=1)
    from_map = predict_volume(model, mapped, slab=8, device="cpu")
    assert resident_kb_of_mapping(path) == 0
    np.testing.assert_array_equal(from_map, predict_volume(model, np.array(mapped), slab=8, device="cpu"))
