"""The DCT frame stacks' moving median: exactly the definition's numbers, streamed from zarr in tiles."""

from __future__ import annotations

import numpy as np
import pytest

from aiax_bench.dct import moving_median, moving_median_reference, refresh_windows, subtract_moving_median
from aiax_bench.errors import InputError


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.uint16])
@pytest.mark.parametrize(("window", "refresh"), [(50, 11), (51, 11), (400, 5), (7, 51), (1, 1)])
def test_moving_median_is_the_definition_exactly(dtype, window, refresh):
    """Odd and even windows, windows longer than the stack, strides longer than the window, ties (integer
    frames): the compiled selection gives numpy.median's numbers bit for bit."""
    rng = np.random.default_rng(window * refresh)
    stack = (rng.normal(100, 20, size=(301, 6, 7)) if dtype != np.uint16 else rng.poisson(5, (301, 6, 7))).astype(dtype)
    ours = moving_median(stack, window=window, refresh=refresh, threads=3)
    assert ours.tobytes() == moving_median_reference(stack, window=window, refresh=refresh).tobytes()


def test_windows_follow_the_blocks_and_stay_inside_the_stack():
    windows = refresh_windows(100, window=30, refresh=11)
    assert windows[0].tolist() == [0, 11, 0, 30]  # the first window shifted to the stack's start
    assert windows[4].tolist() == [44, 55, 34, 64]  # centred on frame 49
    assert windows[-1].tolist() == [99, 100, 70, 100]  # the last, one-frame block: shifted to the end
    assert refresh_windows(10, window=30, refresh=4)[:, 2:].tolist() == [[0, 10]] * 3


def test_streamed_subtraction_from_zarr_is_the_in_memory_one(tmp_path):
    """A small memory budget forces tiles of one block and a few rows: the frames written are the
    in-memory ``frame - median``, and every frame's halo was read."""
    import zarr

    rng = np.random.default_rng(1)
    stack = rng.normal(10, 3, size=(240, 12, 10)).astype(np.float32)
    source = zarr.create_array(str(tmp_path / "frames.zarr"), shape=stack.shape, chunks=(16, 12, 10), dtype="f4")
    source[:] = stack
    target = zarr.create_array(str(tmp_path / "clean.zarr"), shape=stack.shape, chunks=(16, 12, 10), dtype="f4")
    report = subtract_moving_median(source, target, window=60, refresh=21, memory_bytes=60_000)
    expected = stack - moving_median(stack, window=60, refresh=21)
    assert np.array_equal(target[:], expected)
    assert report["tiles"] > 12  # one block at a time, in slabs of rows
    whole = subtract_moving_median(source, target, window=60, refresh=21)
    assert whole["tiles"] == 1 and np.array_equal(target[:], expected)


def test_bad_input_is_refused_in_one_line():
    with pytest.raises(InputError, match="stack"):
        moving_median(np.zeros((5, 4)), window=3, refresh=1)
    with pytest.raises(InputError, match="window"):
        moving_median(np.zeros((5, 4, 4)), window=0, refresh=1)
    with pytest.raises(InputError, match="target"):
        subtract_moving_median(np.zeros((5, 4, 4)), np.zeros((5, 4, 3)), window=3, refresh=1)
