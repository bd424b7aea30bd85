"""The Hugging Face adapter round-trips slices exactly."""

from __future__ import annotations

import numpy as np

from aiax_bench.data.hf import to_hf_dataset


def test_hf_dataset_round_trips_slices(tiny_dataset, tmp_path):
    samples = tiny_dataset.split("100proj").test
    ds = to_hf_dataset(samples, arrays=("low", "high", "labels"), cache_dir=tmp_path / "hf")
    assert len(ds) == 64
    low, high, labels = (samples[0].read(n) for n in ("low", "high", "labels"))
    for z in (0, 17, 63):
        row = ds.with_format("numpy", dtype=None)[z]  # keep stored dtypes (numpy format casts ints to int64)
        assert row["sample_id"] == "test-000" and row["z"] == z
        np.testing.assert_array_equal(row["low"], low[z])
        np.testing.assert_array_equal(row["high"], high[z])
        np.testing.assert_array_equal(row["labels"], labels[z])
        assert row["low"].dtype == np.float32 and row["labels"].dtype == np.uint8
    assert all(p.is_relative_to(tmp_path) for p in (tmp_path / "hf").rglob("*"))
