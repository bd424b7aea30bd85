"""Chunked evaluation: the same numbers as the in-memory path, block by block from zarr."""

from __future__ import annotations

import numpy as np
import pytest
from _mapped import needs_smaps, resident_kb_of_mapping
from scipy import ndimage

from aiax_bench.errors import InputError
from aiax_bench.evaluation import metrics
from aiax_bench.evaluation import porosity as pz
from aiax_bench.evaluation.chunked import UnionFind, evaluate_chunked, label_chunked
from aiax_bench.evaluation.segmentation import SIZE_STRATA, dice_by_size, size_strata
from aiax_bench.evaluation.synthetic import SyntheticFoam

DATA_RANGE, VOXEL_UM, EROSION = 4.2, 20.0, 2


@pytest.fixture(scope="module")
def foam(tmp_path_factory):
    foam = SyntheticFoam(72, seed=4, cell=30)
    paths = foam.write_zarr(tmp_path_factory.mktemp("foam"), chunks=24,
                            names=("method", "reference", "truth", "labels", "mask"))
    return foam, paths


def in_memory(foam: SyntheticFoam) -> dict[str, float]:
    """The in-memory functions on whole arrays, as the Evaluator calls them."""
    pred, ref, truth, labels = foam.method(), foam.reference(), foam.truth(), foam.labels()
    structure = np.zeros((3, 3, 3), dtype=bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    mask = ndimage.binary_erosion(foam.mask(), structure, iterations=EROSION)
    rec = {}
    for name, target in (("reference", ref), ("truth", truth)):
        rec[f"mse/{name}"] = metrics.mse(pred, target, mask=mask)
        rec[f"psnr/{name}"] = metrics.psnr(pred, target, data_range=DATA_RANGE, mask=mask)
        rec[f"ssim/{name}"] = metrics.ssim(pred, target, data_range=DATA_RANGE, mask=mask)
        rec[f"ssim_slices/{name}"] = metrics.ssim_slices(pred, target, data_range=DATA_RANGE, mask=mask)
    t = pz.otsu_threshold(ref, data_range=DATA_RANGE, mask=mask)
    rec["segmentation_threshold"] = t
    rim = pz.mask_rim(mask, mask.shape)
    stats = {who: pz.pore_statistics(pores, voxel_size_um=VOXEL_UM, mask=mask, rim=rim, thickness=True,
                                     keep_labels=True)
             for who, pores in (("method", pz.segment_pores(pred, threshold=t, mask=mask)),
                                ("reference", pz.segment_pores(ref, threshold=t, mask=mask)),
                                ("truth", labels == 2))}
    rec.update(pz.porosity_record(stats, floor=True))
    strata, _ = size_strata(stats["truth"].all_volumes)
    by_size = dice_by_size(stats["method"].labels, stats["truth"].labels, strata)
    rec.update({f"dice_{name}/pore": value for name, value in zip(SIZE_STRATA, by_size, strict=True)})
    return rec


@pytest.mark.parametrize("chunks", [24, 40])
def test_chunked_equals_in_memory(foam, chunks):
    foam, paths = foam
    expected = in_memory(foam)
    got = evaluate_chunked(paths["method"], paths["reference"], data_range=DATA_RANGE, voxel_size_um=VOXEL_UM,
                           mask=paths["mask"], mask_erosion=EROSION, truth=paths["truth"],
                           truth_labels=paths["labels"], chunks=chunks, workers=2, complete=True)
    assert expected["pore_count/method"] > 20  # pores cross block faces: the merge is exercised
    assert expected["mean_local_thickness_mm/method"] > 0
    assert all(0 < expected[f"dice_{name}/pore"] < 1 for name in SIZE_STRATA)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=1e-9, nan_ok=True), key
    # No fixed threshold given: Otsu on the reference, the protocol of datasets of version 1.0.
    assert 0 < got["dice/pore"] < 1 and got["segmentation_protocol"] == pz.LEGACY_PROTOCOL


def test_chunked_fixed_threshold_segments_the_truth_like_the_method(foam):
    """Protocol 2.0 block by block: the phantom's attenuation passed as the prediction is its own truth."""
    foam, paths = foam
    got = evaluate_chunked(paths["truth"], paths["reference"], data_range=DATA_RANGE, voxel_size_um=VOXEL_UM,
                           mask=paths["mask"], mask_erosion=EROSION, truth=paths["truth"],
                           truth_labels=paths["labels"], threshold=DATA_RANGE / 2, truth_by_threshold=True,
                           chunks=24, workers=2)
    assert got["segmentation_protocol"] == pz.SEGMENTATION_PROTOCOL
    assert got["porosity/rel_error_truth"] == 0 and got["pore_count/rel_error_truth"] == 0
    assert got["jaccard/pore"] == 1.0 and got["porosity/truth"] > 0


@pytest.mark.parametrize("chunks", [(6, 7, 9), (16, 16, 16)])
def test_blockwise_local_thickness_is_the_whole_volumes(chunks, monkeypatch):
    """Pores larger than the blocks, touching the volume's faces: the same histogram, exactly."""
    from aiax_bench.evaluation import chunked

    rng = np.random.default_rng(7)
    z, y, x = np.mgrid[:30, :34, :29]
    pores = np.zeros(z.shape, dtype=bool)
    for cz, cy, cx, r in [(4, 5, 3, 6.5), (15, 17, 14, 8.2), (27, 30, 26, 4.0), (15, 3, 25, 3.1)]:
        pores |= (z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 < r * r
    pores |= rng.random(pores.shape) < 0.02
    expected = np.bincount(pz.local_thickness(pores)[pores])
    expected[0] = 0
    phase = chunked.BitVolume(pores.shape)
    phase.set(tuple(slice(0, n) for n in pores.shape), pores)
    blocks = chunked._blocks(pores.shape, chunks)
    largest = int(np.bincount(ndimage.label(pores)[0].ravel())[1:].max())
    got = chunked.thickness_histogram_chunked(phase, blocks, largest_pore_voxels=largest, workers=2)
    np.testing.assert_array_equal(got, expected)
    monkeypatch.setattr(chunked, "THICKNESS_BLOCK_VOXELS", 1000)  # a halo too large for blocks: left out
    assert chunked.thickness_histogram_chunked(phase, blocks, largest_pore_voxels=largest, workers=1) is None


def test_label_merge_across_faces_reproduces_whole_volume_components():
    rng = np.random.default_rng(0)
    phase = ndimage.gaussian_filter(rng.random((40, 40, 40)), 1.5) > 0.52
    labels, n = pz.label_pores(phase)
    whole = np.sort(np.bincount(labels.ravel())[1:])
    out = label_chunked(lambda r: phase[r], phase.shape, chunks=(16, 16, 16),
                        rim=lambda r: np.zeros([s.stop - s.start for s in r], dtype=bool), small=1)
    root = out["root"]
    merged = np.bincount(np.unique(root[1:], return_inverse=True)[1], weights=out["volume"][1:])
    np.testing.assert_array_equal(np.sort(merged.astype(int)), whole)
    assert merged.size == n


def test_union_find():
    uf = UnionFind(6)
    uf.union_pairs(np.array([[1, 2], [3, 4], [2, 4]]))
    roots = uf.roots()
    assert len({roots[1], roots[2], roots[3], roots[4]}) == 1 and roots[5] == 5 and roots[0] == 0


def test_chunked_rejects_bad_input(tmp_path, foam):
    import zarr

    foam, paths = foam
    bad = zarr.create_array(str(tmp_path / "bad.zarr"), shape=foam.shape, chunks=(24,) * 3, dtype="float32")
    values = foam.method()
    values[30, 31, 32] = np.nan
    bad[...] = values
    with pytest.raises(InputError, match=r"NaN or infinite.*\(30, 31, 32\)"):
        evaluate_chunked(bad, paths["reference"], data_range=DATA_RANGE, voxel_size_um=VOXEL_UM, chunks=24)
    with pytest.raises(InputError, match="has dtype uint8"):
        evaluate_chunked(paths["labels"], paths["reference"], data_range=DATA_RANGE, voxel_size_um=VOXEL_UM)
    with pytest.raises(InputError, match="cannot be opened"):
        evaluate_chunked(tmp_path / "missing.zarr", paths["reference"], data_range=DATA_RANGE,
                         voxel_size_um=VOXEL_UM)


def test_dice_by_size_breaks_ties_in_raster_order_like_the_whole_volume():
    """A method pore overlapping two truth pores equally takes the stratum of the first in raster order,
    although the blocks meet them the other way round."""
    truth = np.zeros((12, 12, 32), dtype=np.uint8)
    truth[0:4, 0:4, 20:28] = 2  # large, first in raster order, in the second block
    truth[2:6, 0:4, 0:4] = 2  # medium, in the first block
    truth[8:11, 8:11, 10:13] = 2  # small
    method = np.zeros(truth.shape, dtype=bool)
    method[2:4, 0:2, 0:4] = True  # 16 voxels of the medium pore
    method[2, 0, 4:20] = True  # a bridge through solid
    method[2:4, 0:2, 20:24] = True  # 16 voxels of the large pore
    prediction = np.where(method, 0.0, 1.0).astype(np.float32)
    got = evaluate_chunked(prediction, prediction, data_range=1.0, voxel_size_um=VOXEL_UM, truth_labels=truth,
                           threshold=0.5, chunks=(12, 12, 16), workers=1, complete=True)
    stats = {who: pz.pore_statistics(p, voxel_size_um=VOXEL_UM, keep_labels=True, thickness=False)
             for who, p in (("method", method), ("truth", truth == 2))}
    strata, _ = size_strata(stats["truth"].all_volumes)
    expected = dice_by_size(stats["method"].labels, stats["truth"].labels, strata)
    assert expected[2] > 0 and expected[1] == 0  # the tie went to the large pore
    np.testing.assert_allclose([got[f"dice_{name}/pore"] for name in SIZE_STRATA], expected, rtol=1e-12)


@needs_smaps
def test_memory_mapped_volumes_are_not_kept_resident(foam, tmp_path):
    """``.npy`` volumes opened as maps: every block's pages are dropped once copied, and the record is the one
    from the same volumes in memory."""
    foam, _ = foam
    paths = {}
    for name, volume in (("method", foam.method()), ("reference", foam.reference())):
        paths[name] = tmp_path / f"{name}.npy"
        np.save(paths[name], volume)
    maps = {name: np.load(path, mmap_mode="r") for name, path in paths.items()}
    options = {"data_range": DATA_RANGE, "voxel_size_um": VOXEL_UM, "chunks": 24, "workers": 2}
    got = evaluate_chunked(maps["method"], maps["reference"], **options)
    for path in paths.values():
        assert resident_kb_of_mapping(path) == 0
    expected = evaluate_chunked(np.array(maps["method"]), np.array(maps["reference"]), **options)
    assert got.keys() == expected.keys()
    for key, value in expected.items():  # the same numbers: NaN where the in-memory record has NaN
        assert got[key] == value or (value != value and got[key] != got[key]), key
