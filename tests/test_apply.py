"""``aiax-bench apply``: a trained checkpoint on a new volume, from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aiax_bench.apply import apply_checkpoint, intensity_warning
from aiax_bench.baselines.msdnet import MSDNet
from aiax_bench.errors import InputError

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def trained(tiny_v2, tmp_path_factory):
    split = tiny_v2.split("100proj")
    root = tmp_path_factory.mktemp("checkpoints")
    method = MSDNet({"depth": 3, "patch_size": 32, "max_steps": 4, "val_every": 2, "val_slice_step": 32,
                     "progress": False, "max_seconds": None})
    method.fit(split.train, split.val, seed=0, context={"checkpoint_root": root})
    return method, np.asarray(split.test[0].read("low"))


def test_apply_command_writes_what_predict_gives(trained, tmp_path):
    method, volume = trained
    np.save(tmp_path / "scan.npy", volume)
    out = tmp_path / "enhanced.zarr"
    done = subprocess.run([sys.executable, "-m", "aiax_bench.cli", "apply", "--checkpoint",
                           str(method.checkpoint_path), "--input", str(tmp_path / "scan.npy"), "--output", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "slices/min" in done.stdout
    import zarr

    np.testing.assert_allclose(np.asarray(zarr.open_array(str(out), mode="r")), method.predict(volume),
                               rtol=1e-5, atol=1e-6)
    record = json.loads((tmp_path / "enhanced.zarr.json").read_text())
    assert record["method"] == "msdnet" and record["shape"] == list(volume.shape) and record["warning"] is None


def test_uint16_output_records_its_scaling(trained, tmp_path):
    method, volume = trained
    record = apply_checkpoint(method.checkpoint_path, volume, tmp_path / "out.npy", dtype="uint16")
    stored = np.load(tmp_path / "out.npy")
    assert stored.dtype == np.uint16
    s = record["scaling"]
    predicted = method.predict(volume)
    # The stored range covers what the network gives: nothing clipped.
    assert s["value_at_0"] < predicted.min() and predicted.max() < s["value_at_65535"]
    back = s["value_at_0"] + stored / 65535 * (s["value_at_65535"] - s["value_at_0"])
    np.testing.assert_allclose(back, np.clip(method.predict(volume), s["value_at_0"], s["value_at_65535"]),
                               atol=(s["value_at_65535"] - s["value_at_0"]) / 65535)


def test_input_far_from_the_training_range_is_flagged(trained, tmp_path):
    method, volume = trained
    assert intensity_warning(volume, method.metadata["value_range"]) is None
    with pytest.warns(UserWarning, match="extrapolates"):
        record = apply_checkpoint(method.checkpoint_path, volume * 1000, tmp_path / "out.npy")
    assert "training standard deviations" in record["warning"]


def test_matched_intensity_is_scale_equivariant_and_flags_nothing(trained, tmp_path):
    """A scan in other units (here × 1000) gives the same result in its own units."""
    method, volume = trained
    same = apply_checkpoint(method.checkpoint_path, volume, tmp_path / "a.zarr", match_intensity=True)
    scaled = apply_checkpoint(method.checkpoint_path, volume * 1000, tmp_path / "b.zarr", match_intensity=True)
    assert scaled["warning"] is None
    assert scaled["intensity_map"]["a"] == pytest.approx(same["intensity_map"]["a"] / 1000)
    import zarr

    a = np.asarray(zarr.open_array(str(tmp_path / "a.zarr"), mode="r"))
    b = np.asarray(zarr.open_array(str(tmp_path / "b.zarr"), mode="r"))
    np.testing.assert_allclose(b, 1000 * a, rtol=1e-4, atol=1e-3 * np.abs(1000 * a).max())


def test_a_tiff_stack_is_read_slab_by_slab(trained, tmp_path):
    import tifffile

    from aiax_bench.ingest.volumes import SliceStack, open_volume

    method, volume = trained
    tifffile.imwrite(tmp_path / "stack.tif", volume)
    stack = open_volume(tmp_path / "stack.tif")
    assert isinstance(stack, SliceStack) and stack.shape == volume.shape
    apply_checkpoint(method.checkpoint_path, stack, tmp_path / "out.npy")
    np.testing.assert_allclose(np.load(tmp_path / "out.npy"), method.predict(volume), rtol=1e-5, atol=1e-6)


def test_a_directory_that_is_no_checkpoint_is_refused_in_one_line(tmp_path):
    with pytest.raises(InputError, match=r"has no metadata\.json"):
        apply_checkpoint(tmp_path, np.zeros((4, 8, 8), np.float32), tmp_path / "out.npy")


def test_train_command_prints_a_checkpoint_that_apply_runs(tiny_env, tmp_path):
    env = {**os.environ, "AIAX_BENCH_DATA": str(tiny_env)}
    done = subprocess.run([sys.executable, "-m", "aiax_bench.cli", "train", "--method", "msdnet", "--split", "100proj",
                           "--profile", "tiny", "--config", "depth=2", "max_steps=3", "val_every=3", "patch_size=32",
                           "val_slice_step=32", "progress=false", "max_seconds=null"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    checkpoint = done.stdout.split("checkpoint: ", 1)[1].split()[0]
    assert (Path(checkpoint) / "metadata.json").is_file()
    volume = np.zeros((6, 64, 64), np.float32) + 0.5
    record = apply_checkpoint(checkpoint, volume, tmp_path / "out.npy")
    assert record["method"] == "msdnet" and np.load(tmp_path / "out.npy").shape == volume.shape
    refused = subprocess.run([sys.executable, "-m", "aiax_bench.cli", "train", "--method", "fbp", "--split", "100proj",
                              "--profile", "tiny"], capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "does not learn" in refused.stderr and refused.stderr.count("\n") == 1
