"""``aiax-bench analyze`` on real volumes with known answers, against independent counts."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from aiax_bench.errors import InputError
from aiax_bench.evaluation import porosity as pz
from aiax_bench.evaluation.analyze import analyze_volume, percolating_axes, read_volume
from aiax_bench.own_data_cli import parse_voxel_size

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("AIAX_BENCH_REALDATA", REPO.parent / "shared" / "realdata"))
needs_realdata = pytest.mark.skipif(not REALDATA.is_dir(), reason=f"real scans not found in {REALDATA}")


@needs_realdata
def test_leopard_sandstone_porosity_and_a_partitioned_percolating_pore_space():
    """Leopard sandstone (100³, 2.25 µm): porosity 0.262 (Digital Rocks Portal 317); its pore space percolates."""
    volume = read_volume(REALDATA / "porespy-sandstones" / "image_Leopard_slice100.npy")
    with pytest.warns(UserWarning, match="percolates"):
        snow = analyze_volume(volume, voxel_size_um=2.25, pore_value=1, thickness=False)
    assert snow.statistics["porosity"] == pytest.approx(0.262, abs=0.001)
    assert snow.percolates == ["z", "y", "x"] and snow.partition == "snow"
    with pytest.warns(UserWarning, match="not a pore count"):
        components = analyze_volume(volume, voxel_size_um=2.25, pore_value=1, partition="components",
                                    thickness=False)
    # One void crosses the volume: components count its fragments cut by the faces, the watershed its pores.
    assert components.statistics["pore_count"] < 0.6 * snow.statistics["pore_count"]
    assert components.statistics["porosity"] == snow.statistics["porosity"]


@needs_realdata
def test_berea_sandstone_raw_volume_porosity(tmp_path):
    """Berea (200³ uint8 raw, 0 = pore): porosity 0.199 as documented."""
    with zipfile.ZipFile(REALDATA / "porespy-sandstones" / "test_berea.zip") as archive:
        [name] = [n for n in archive.namelist() if n.endswith(".raw")]
        raw = Path(archive.extract(name, tmp_path))
    volume = read_volume(raw, raw_shape=(200, 200, 200), raw_dtype="uint8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = analyze_volume(volume, voxel_size_um=5.345, pore_value=0, partition="components",
                                  thickness=False)
    assert analysis.statistics["porosity"] == pytest.approx(0.199, abs=0.005)
    with pytest.raises(InputError, match=r"holds 8000000 bytes after offset 0; 16000000 bytes"):
        read_volume(raw, raw_shape=(200, 200, 200), raw_dtype="<u2")


@needs_realdata
def test_cement_grey_values_agree_with_an_independent_otsu_count():
    """qim3d cement (8-bit micro-CT): pores below Otsu's threshold, counted with scipy and skimage directly."""
    from skimage.filters import threshold_otsu

    volume = read_volume(REALDATA / "qim3d-microct" / "cement_128x128x128.tif")
    analysis = analyze_volume(volume, voxel_size_um=20.0, thickness=False)
    threshold = threshold_otsu(volume.astype(np.float64), nbins=256)
    pores = volume < threshold
    labels, _ = ndimage.label(pores)  # 6-connected, as the protocol
    sizes = np.bincount(labels.ravel())[1:]
    kept = np.flatnonzero(sizes >= pz.MIN_PORE_VOXELS) + 1
    faces = np.zeros(volume.shape, dtype=bool)
    faces[[0, -1]] = faces[:, [0, -1]] = faces[:, :, [0, -1]] = True
    cut = np.isin(kept, np.unique(labels[faces]))
    independent = (~cut).sum() + 0.5 * cut.sum()
    assert analysis.threshold == pytest.approx(threshold)
    assert analysis.statistics["pore_count"] == independent
    assert analysis.statistics["porosity"] == pytest.approx(sizes[kept - 1].sum() / volume.size)
    assert analysis.percolates == [] and analysis.partition == "components"


def test_percolation_is_found_on_the_axis_it_crosses():
    pores = np.zeros((8, 9, 10), dtype=bool)
    pores[:, 4, 4] = True  # a channel along z
    pores[2, 1:3, 1:3] = True  # a closed pore
    assert percolating_axes(pores) == ["z"]


def test_analyze_command_reads_a_volume_and_writes_json(tmp_path):
    rng = np.random.default_rng(0)
    z, y, x = np.mgrid[:40, :40, :40]
    volume = np.full((40, 40, 40), 100, dtype=np.uint8)
    for cz, cy, cx in rng.integers(8, 32, size=(6, 3)):
        volume[(z - cz) ** 2 + (y - cy) ** 2 + (x - cx) ** 2 < 9] = 20
    path = tmp_path / "volume.npy"
    np.save(path, volume)
    out = tmp_path / "analysis.json"
    done = subprocess.run([sys.executable, "-m", "aiax_bench.cli", "analyze", str(path), "--voxel-size", "0.02mm",
                           "--no-thickness", "--output", str(out)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "20 µm" in done.stdout and "pore volume fraction" in done.stdout and out.is_file()
    bad = subprocess.run([sys.executable, "-m", "aiax_bench.cli", "analyze", str(path), "--voxel-size", "20 parsec"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and bad.stderr.strip().count("\n") == 0 and "--voxel-size" in bad.stderr


def test_voxel_sizes_in_words():
    assert parse_voxel_size("20um") == parse_voxel_size("0.02 mm") == parse_voxel_size("20") == 20.0
    assert parse_voxel_size("2.25µm") == 2.25
    with pytest.raises(InputError, match="--voxel-size is '-3um'"):
        parse_voxel_size("-3um")


@needs_realdata
def test_own_data_is_scored_against_its_reference_with_a_stated_rule():
    """A real grey-value volume as the reference, no truth: the pores and range come from its own values."""
    from aiax_bench.evaluation.evaluator import REFERENCE_PROTOCOL, evaluate_arrays

    reference = read_volume(REALDATA / "qim3d-microct" / "cement_128x128x128.tif").astype(np.float32)
    noisy = reference + np.random.default_rng(0).normal(0, 4, reference.shape).astype(np.float32)
    record = evaluate_arrays(noisy, reference, voxel_size_um=20.0)
    assert record["segmentation_protocol"] == REFERENCE_PROTOCOL and "quantile spread" in record["data_range_rule"]
    assert not [k for k in record if "truth" in k] and record["psnr/reference"] > 20
    # The reference's porosity is what `analyze` (Otsu on the values present) finds, not the 0.99 of a fixed range.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        analysis = analyze_volume(reference, voxel_size_um=20.0, thickness=False)
    assert record["porosity/reference"] == pytest.approx(analysis.statistics["porosity"], rel=1e-6)
    assert abs(record["porosity/rel_error_reference"]) < 0.1
