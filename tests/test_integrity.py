"""Integrity on read: a missing, swapped or damaged chunk is caught before anything is scored."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aiax_bench.data import store as store_module
from aiax_bench.data.loader import load
from aiax_bench.errors import StoreError
from aiax_bench.evaluation import Evaluator


@pytest.fixture
def copied_root(data_root, tmp_path, monkeypatch):
    """A private copy of the tiny foam@2.0 store, and a fresh per-process verification cache."""
    root = tmp_path / "data"
    shutil.copytree(data_root / "foam" / "2.0", root / "foam" / "2.0")
    monkeypatch.setattr(store_module, "_VERIFIED", set())
    return root


def _chunks(root: Path, array: str) -> list[Path]:
    base = root / "foam" / "2.0" / "tiny.zarr" / "samples" / "test-000" / array / "c"
    return sorted(p for p in base.rglob("*") if p.is_file())


def test_every_array_has_a_sha256_and_an_intact_store_reads(copied_root):
    ds = load("foam@2.0", profile="tiny", root=copied_root, build=False)
    sample = ds.split("100proj").test[0]
    hashes = sample.meta["sha256"]
    assert {"truth", "labels", "mask", "high", "clean", "sinogram", "splits/100proj/low"} <= set(hashes)
    assert store_module.array_sha256(sample.read("high")) == hashes["high"]


@pytest.mark.parametrize("damage", ["delete", "swap", "truncate"])
def test_damaged_chunk_is_caught_naming_array_and_store(copied_root, damage):
    chunks = _chunks(copied_root, "sinogram")  # (64, 500, 64) in 64³ chunks: several to swap
    assert len(chunks) >= 2
    if damage == "delete":
        chunks[0].unlink()
    elif damage == "swap":
        a, b = chunks[0].read_bytes(), chunks[1].read_bytes()
        chunks[0].write_bytes(b)
        chunks[1].write_bytes(a)
    else:
        chunks[0].write_bytes(chunks[0].read_bytes()[:10])
    ds = load("foam@2.0", profile="tiny", root=copied_root, build=False)
    sample = ds.split("reference").test[0]
    with pytest.raises(StoreError, match=r"tiny\.zarr: array samples/test-000/sinogram .*datasets verify"):
        sample.read("sinogram")


def test_evaluator_scores_nothing_from_a_store_with_a_lost_chunk(copied_root):
    _chunks(copied_root, "high")[0].unlink()  # zarr alone would read zeros here
    ds = load("foam@2.0", profile="tiny", root=copied_root, build=False)
    evaluator = Evaluator(ds, "100proj", workers=1)
    with pytest.raises(StoreError, match="samples/test-000/high"):
        evaluator.evaluate({s.id: np.asarray(s.read("low")) for s in ds.split("100proj").test})


def test_deleted_chunk_fails_the_cli_run_and_scores_nothing(copied_root, tmp_path):
    _chunks(copied_root, "truth")[0].unlink()
    env = {**os.environ, "AIAX_BENCH_DATA": str(copied_root)}
    proc = subprocess.run(
        [sys.executable, "-m", "aiax_bench.cli", "evaluate", "--method", "fbp-ramp", "--split", "100proj", "--profile",
         "tiny", "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--output", str(tmp_path / "results")],
        capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2
    assert "samples/test-000/truth" in proc.stderr.strip().splitlines()[-1]
    assert not list((tmp_path / "results").rglob("*.json"))
    verify = subprocess.run([sys.executable, "-m", "aiax_bench.cli", "datasets", "verify", "foam@2.0", "--profile",
                             "tiny"], capture_output=True, text=True, timeout=300, env=env)
    assert verify.returncode != 0 and "test-000/truth" in verify.stdout + verify.stderr


def test_a_format_1_store_is_checked_against_its_fingerprint(data_root, tmp_path, monkeypatch):
    """Stores written before per-array hashes (format 1) still catch a lost chunk, through their fingerprint."""
    import zarr

    root = tmp_path / "data"
    shutil.copytree(data_root / "foam" / "1.0", root / "foam" / "1.0")
    monkeypatch.setattr(store_module, "_VERIFIED", set())
    path = root / "foam" / "1.0" / "tiny.zarr"
    group = zarr.open_group(str(path), mode="r+")
    group.attrs["store_format"] = 1
    for sid in group.attrs["samples"]:
        attrs = dict(group[f"samples/{sid}"].attrs)
        attrs.pop("sha256")
        group[f"samples/{sid}"].attrs.clear()
        group[f"samples/{sid}"].attrs.update(attrs)
    ds = load("foam@1.0", profile="tiny", root=root, build=False)
    assert ds.split("100proj").test[0].read("high").shape == (64, 64, 64)  # intact: passes
    next(p for p in (path / "samples" / "test-000" / "truth" / "c").rglob("*") if p.is_file()).unlink()
    with pytest.raises(StoreError, match="samples/test-000/truth does not match its build-time fingerprint"):
        load("foam@1.0", profile="tiny", root=root, build=False).split("100proj").test[0].read("truth")


@pytest.mark.parametrize("dtype", ["float32", "uint8", "bool", "float64"])
def test_streamed_hash_and_fingerprint_equal_the_whole_array_ones(tmp_path, dtype):
    import zarr

    from aiax_bench.data.store import array_fingerprint, array_sha256, stream_sha256_and_fingerprint

    rng = np.random.default_rng(0)
    data = (rng.normal(3.0, 0.5, (37, 19, 23)) * (100 if dtype == "uint8" else 1)).astype(dtype)
    stored = zarr.create_array(str(tmp_path / "a.zarr"), shape=data.shape, dtype=data.dtype, chunks=(8, 19, 23))
    stored[...] = data
    for slab_bytes in (1, 5 * 19 * 23 * data.itemsize, 1 << 30):  # one row, several rows, all at once
        digest, fingerprint = stream_sha256_and_fingerprint(stored, slab_bytes=slab_bytes)
        assert digest == array_sha256(data)
        whole = array_fingerprint(data)
        for key, value in whole.items():
            assert fingerprint[key] == pytest.approx(value, rel=1e-12, abs=1e-12), key


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "uint8", "bool"])
def test_whole_array_hash_and_fingerprint_are_numpys_values_from_one_float64_copy(dtype):
    """The fingerprint is NumPy's float64 ``mean``, ``std``, ``min`` and ``max``, bit for bit, and the
    hash the sha256 of the shape, dtype and bytes; together they allocate at most one float64 copy
    (``std`` alone would take two, ``tobytes`` one more of the input)."""
    import hashlib
    import tracemalloc

    from aiax_bench.data.store import array_fingerprint, array_sha256

    rng = np.random.default_rng(1)
    data = (rng.normal(3.0, 0.5, (33, 128, 129)) * (100 if dtype in ("uint8", "int32") else 1)).astype(dtype)
    values = data.astype(np.float64)
    assert array_fingerprint(data) == {"mean": float(values.mean()), "std": float(values.std()),
                                       "min": float(values.min()), "max": float(values.max())}
    expected = hashlib.sha256(f"{data.shape}:{data.dtype.str}\n".encode() + data.tobytes()).hexdigest()
    del values
    tracemalloc.start()
    try:
        assert array_sha256(data) == expected
        array_fingerprint(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.1 * data.size * 8


def test_a_sample_writer_digests_slab_by_slab_within_one_float64_slab(tmp_path):
    """What a build records for an array: its exact sha256, and a fingerprint within 1e-12 of NumPy's whole-array
    one, from one float64 temporary of a slab's size (the whole array's would be twice its float32 bytes)."""
    import tracemalloc

    import zarr

    from aiax_bench.data.store import (
        WRITE_SLAB_BYTES,
        SampleWriter,
        array_fingerprint,
        array_sha256,
        stream_sha256_and_fingerprint,
    )

    data = np.random.default_rng(2).normal(3.0, 0.5, (128, 256, 512)).astype(np.float32)  # 64 MiB
    hashes, fingerprint = {}, {}
    writer = SampleWriter(zarr.open_group(str(tmp_path / "s.zarr"), mode="w"), "train-000", hashes=hashes,
                          fingerprint=fingerprint)
    writer.add("high", data)
    assert hashes["train-000/high"] == array_sha256(data)
    for key, value in array_fingerprint(data).items():
        assert fingerprint["train-000/high"][key] == pytest.approx(value, rel=1e-12, abs=1e-12), key
    tracemalloc.start()
    try:
        assert stream_sha256_and_fingerprint(data, slab_bytes=WRITE_SLAB_BYTES) == (
            hashes["train-000/high"], fingerprint["train-000/high"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2.2 * WRITE_SLAB_BYTES < data.nbytes * 2
