"""PyTorch Dataset adapters: 2.5D stacks, 3D patches, seeded augmentation, DataLoader workers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from aiax_bench.data.torch_adapter import RandomPatches, SliceStacks, augment_dihedral, reflect_indices
from aiax_bench.errors import InputError


def _ramp_volume(shape=(9, 20, 24)):
    """A volume whose value encodes its (z, y, x) position: misplaced voxels are visible."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    return (1000 * z + 30 * y + x).astype(np.float32)


@pytest.fixture
def arrays():
    low = _ramp_volume()
    return [{"low": low, "high": -low}]


@pytest.mark.parametrize("n", [1, 2, 5, 9])
def test_reflect_indices_match_numpy_pad(n):
    k = 4
    expected = np.pad(np.arange(n), k, mode="reflect") if n > 1 else np.zeros(n + 2 * k, dtype=int)
    np.testing.assert_array_equal(reflect_indices(-k, n + k, n), expected)


def test_slice_stacks_are_centred_and_reflected(arrays):
    ds = SliceStacks(arrays, slices=5)
    assert len(ds) == 9
    x, y = ds[0]
    assert x.shape == (5, 20, 24) and y.shape == (1, 20, 24) and x.dtype == torch.float32
    low = arrays[0]["low"]
    np.testing.assert_array_equal(x.numpy(), low[[2, 1, 0, 1, 2]])
    np.testing.assert_array_equal(y.numpy(), -low[[0]])
    x, y = ds[8]
    np.testing.assert_array_equal(x.numpy(), low[[6, 7, 8, 7, 6]])
    assert len(SliceStacks(arrays, slices=3, slice_step=4)) == 3


def test_dihedral_group_has_eight_distinct_aligned_elements():
    a = np.arange(12, dtype=np.float32).reshape(1, 3, 4)[:, :3, :3]
    images = {augment_dihedral([a], k)[0].tobytes() for k in range(8)}
    assert len(images) == 8
    x, y = augment_dihedral([a, 2 * a], 5)
    np.testing.assert_array_equal(y, 2 * x)


def test_random_patches_are_seeded_aligned_and_in_the_volume(arrays):
    ds = RandomPatches(arrays, slices=3, patch_size=8, length=32, seed=7)
    x, y = ds[3]
    assert x.shape == (3, 8, 8) and y.shape == (1, 8, 8)
    # The target is minus the input's centre slice, under the same augmentation.
    np.testing.assert_array_equal(y.numpy()[0], -x.numpy()[1])
    np.testing.assert_array_equal(ds[3][0].numpy(), x.numpy())  # same item, same patch
    other = RandomPatches(arrays, slices=3, patch_size=8, length=32, seed=8)
    assert not all(torch.equal(ds[i][0], other[i][0]) for i in range(4))
    ds.set_epoch(1)
    assert not all(torch.equal(ds[i][0], RandomPatches(arrays, slices=3, patch_size=8, length=32,
                                                       seed=7)[i][0]) for i in range(4))
    values = set(np.unique(x.numpy()))
    assert values <= set(np.unique(arrays[0]["low"]))
    with pytest.raises(IndexError):
        ds[32]


def test_augmentation_draws_all_eight_transforms():
    low = _ramp_volume((4, 12, 12))
    ds = RandomPatches([{"low": low, "high": low}], slices=1, patch_size=12, length=64, seed=0)
    seen = set()
    for i in range(len(ds)):
        x = ds[i][0].numpy()
        matches = [k for z in range(4) for k in range(8) if np.array_equal(x, augment_dihedral([low[z:z + 1]], k)[0])]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(range(8))
    plain = RandomPatches([{"low": low, "high": low}], slices=1, patch_size=12, length=8, augment=False)
    assert all(np.all(np.diff(plain[i][0].numpy()[0, 0]) == 1) for i in range(8))


def test_three_d_patches(arrays):
    ds = RandomPatches(arrays, patch_dim=3, patch_size=(4, 8, 6), length=8, seed=1)
    x, y = ds[0]
    assert x.shape[0] == 1 and x.shape[1] == 4 and sorted(x.shape[2:]) == [6, 8]
    np.testing.assert_array_equal(y.numpy(), -x.numpy())
    # Consecutive z within the block: the adapter never reorders slices in 3D.
    assert np.all(np.diff(x.numpy()[0, :, 0, 0]) == 1000)


def test_invalid_options_say_what_is_expected(arrays):
    with pytest.raises(InputError, match="odd number"):
        SliceStacks(arrays, slices=4)
    with pytest.raises(InputError, match="patch_dim"):
        RandomPatches(arrays, patch_dim=4)
    with pytest.raises(InputError, match="empty"):
        RandomPatches([], slices=3)
    with pytest.raises(InputError, match="same shape"):
        SliceStacks([{"low": np.zeros((2, 3, 3)), "high": np.zeros((2, 3, 4))}])


def test_samples_from_the_store_feed_a_dataloader_with_workers(tiny_dataset):
    """zarr arrays are re-opened in worker processes; results do not depend on the workers."""
    train = tiny_dataset.split("100proj").train
    ds = RandomPatches(train, slices=5, patch_size=32, length=16, seed=3)
    serial = [b for b in DataLoader(ds, batch_size=4)]
    parallel = [b for b in DataLoader(ds, batch_size=4, num_workers=2)]
    assert len(serial) == len(parallel) == 4
    for (xs, ys), (xp, yp) in zip(serial, parallel, strict=True):
        assert xs.shape == (4, 5, 32, 32) and ys.shape == (4, 1, 32, 32)
        assert torch.equal(xs, xp) and torch.equal(ys, yp)
    low = train[0].read("low")
    assert float(serial[0][0].abs().max()) <= float(np.abs(low).max())


def test_workers_started_by_spawn_reopen_the_store(tiny_dataset):
    """With 'spawn' (macOS, Windows) the dataset is pickled: no open handle or cache may be needed."""
    val = tiny_dataset.split("100proj").val
    ds = SliceStacks(val, slices=3, slice_step=16)
    ds[0]  # fills this process's in-memory copy, which must not travel
    batches = list(DataLoader(ds, batch_size=2, num_workers=2, multiprocessing_context="spawn"))
    got = torch.cat([x for x, _ in batches])
    expected = torch.stack([ds[i][0] for i in range(len(ds))])
    assert torch.equal(got, expected)


def test_lazy_reading_equals_in_memory(tiny_dataset):
    train = tiny_dataset.split("100proj").train
    a = RandomPatches(train, slices=5, patch_size=24, length=6, seed=2, in_memory=True)
    b = RandomPatches(train, slices=5, patch_size=24, length=6, seed=2, in_memory=False)
    for i in range(len(a)):
        assert torch.equal(a[i][0], b[i][0]) and torch.equal(a[i][1], b[i][1])
    s = SliceStacks(train, slices=5, in_memory=False)
    np.testing.assert_array_equal(s[0][0].numpy(), train[0].read("low")[[2, 1, 0, 1, 2]])
