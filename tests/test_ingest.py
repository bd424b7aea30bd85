"""Raw projections to slices: a synthetic data-exchange file with a known off-centre axis, and the real tooth scan."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aiax_bench.errors import InputError
from aiax_bench.ingest import correct, find_center, read_data_exchange, reconstruct

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("AIAX_BENCH_REALDATA", REPO.parent / "shared" / "realdata"))

N, ANGLES, OFFSET = 64, 90, 3.5  # detector pixels; the axis sits OFFSET px right of the detector centre


def _scan(tmp_path: Path, *, with_flats: bool = True) -> tuple[Path, np.ndarray]:
    import h5py
    from scipy import ndimage

    from aiax_bench.recon import ParallelBeamProjector

    y, x = np.mgrid[:N, :N] - (N - 1) / 2
    slice_ = (np.hypot(y, x) < 20) * 0.05 + (np.hypot(y - 6, x + 4) < 6) * 0.05  # attenuation per voxel
    angles = np.linspace(0, np.pi, ANGLES, endpoint=False)
    sino = np.asarray(ParallelBeamProjector(N, angles, device="cpu").forward(slice_.astype(np.float32)))
    sino = ndimage.shift(sino, (0, OFFSET), order=1, mode="nearest")  # the scanner's axis is off-centre
    flat, dark = 1000.0, 10.0
    counts = dark + (flat - dark) * np.exp(-sino)
    data = np.repeat(counts[:, None, :], 2, axis=1).astype(np.float32)
    path = tmp_path / "scan.h5"
    with h5py.File(path, "w") as f:
        f["exchange/data"] = data
        if with_flats:
            f["exchange/data_white"] = np.full((3, 2, N), flat, np.float32)
            f["exchange/data_dark"] = np.full((3, 2, N), dark, np.float32)
        f["exchange/theta"] = np.rad2deg(angles)
    return path, slice_


def test_an_off_centre_axis_is_found_and_the_slice_reconstructed(tmp_path):
    path, truth = _scan(tmp_path)
    volume, provenance = reconstruct(read_data_exchange(path), filter="ramp")
    assert provenance["center"]["pixels"] == pytest.approx((N - 1) / 2 + OFFSET, abs=0.5)
    assert provenance["flat_dark"] == {"flats": 3, "flats_combined": "mean of 3", "darks": 3, "clipped_pixels": 0}
    inside = np.hypot(*(np.mgrid[:N, :N] - (N - 1) / 2)) < 28
    assert np.corrcoef(volume[0][inside], truth[inside])[0, 1] > 0.95
    # Reconstructed about the detector centre instead, the slice is smeared.
    off, _ = reconstruct(read_data_exchange(path), center=(N - 1) / 2, filter="ramp")
    assert np.corrcoef(off[0][inside], truth[inside])[0, 1] < 0.9


def test_bad_scans_are_refused_in_one_line(tmp_path):
    import h5py

    path, _ = _scan(tmp_path, with_flats=False)
    with pytest.raises(InputError, match="has no flat"):
        correct(read_data_exchange(path))
    broken = tmp_path / "broken.h5"
    with h5py.File(broken, "w") as f:
        f["exchange/data"] = np.zeros((4, 2, 8), np.float32)
    with pytest.raises(InputError, match=r"broken\.h5: field exchange/theta is missing"):
        read_data_exchange(broken)
    with pytest.raises(InputError, match="cannot be opened as HDF5"):
        read_data_exchange(tmp_path / "missing.h5")


def test_reconstruct_command_writes_slices_and_provenance(tmp_path):
    path, _ = _scan(tmp_path)
    out = tmp_path / "slices.npy"
    done = subprocess.run([sys.executable, "-m", "aiax_bench.cli", "reconstruct", str(path), "--output", str(out),
                           "--rows", "0:1"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert np.load(out).shape == (1, N, N) and "centre of rotation" in done.stdout
    provenance = json.loads(out.with_name(out.name + ".json").read_text())
    assert provenance["center"]["pixels"] == pytest.approx((N - 1) / 2 + OFFSET, abs=0.5)


@pytest.mark.skipif(not (REALDATA / "tooth-aps").is_dir(), reason=f"real scans not found in {REALDATA}")
def test_tooth_centre_of_rotation_within_a_pixel_of_the_documented_one():
    """APS tooth (181 angles over 180°, 640 px): the documented centre is about 295.5 px."""
    scan = read_data_exchange(REALDATA / "tooth-aps" / "tooth.h5")
    lines = -np.log(correct(scan))
    assert scan.provenance["flat_dark"]["clipped_pixels"] == 0
    assert find_center(lines[:, 1, :]) == pytest.approx(295.5, abs=1.0)


def test_an_angles_file_that_also_lists_flats_and_darks_gives_the_increasing_run(tmp_path):
    from aiax_bench.ingest import read_angles

    path = tmp_path / "angles.txt"
    path.write_text("\n".join(map(str, [-10.0] * 3 + list(np.arange(-10, 170, 2.0)) + [168.0] * 3)))
    angles, how = read_angles(path, 90)
    assert angles[0] == -10 and angles[-1] == 168 and angles.size == 90 and "increasing run" in how
    with pytest.raises(InputError, match="no increasing run of 100"):
        read_angles(path, 100)


@pytest.mark.skipif(not (REALDATA / "i13-diamond").is_dir(), reason=f"real scans not found in {REALDATA}")
def test_i13_tiff_scan_centre_within_a_pixel_after_ring_removal():
    """Diamond I13 (91 TIFF projections of 160 px, one flat, one dark; rings): documented centre about 86.5 px."""
    from aiax_bench.ingest import read_scan

    root = REALDATA / "i13-diamond"
    scan = read_scan(root / "tiffs", flat=root / "flat_00001.tiff", dark=root / "dark_00001.tiff",
                     angles=root / "angles.txt")
    volume, provenance = reconstruct(scan, rows=slice(60, 76), rings=True)
    assert provenance["center"]["pixels"] == pytest.approx(86.5, abs=1.0)
    assert provenance["flat_dark"]["clipped_pixels"] == 0
    # The flat holds zeros (outside these rows): dead pixels, replaced by their neighbours' median, not clipped.
    from aiax_bench.ingest.preprocess import remove_dead_pixels

    assert remove_dead_pixels(read_scan(root / "tiffs", flat=root / "flat_00001.tiff", dark=root / "dark_00001.tiff",
                                        angles=root / "angles.txt")) > 0
    assert volume.shape == (16, 160, 160) and np.isfinite(volume).all()


def test_an_off_centre_axis_reconstructs_as_astra_does_about_the_axis():
    """Shifted to the detector centre, then FBP: equal to astra's FBP of the detector cropped about the axis
    (what users did by hand), to 1e-4 of the image maximum, with a detector wider than the slice."""
    astra = pytest.importorskip("astra")
    from aiax_bench.ingest import shift_to_center
    from aiax_bench.recon import ParallelBeamProjector, fbp

    n, n_angles, offset = 96, 180, 3  # the axis sits `offset` whole pixels right of the detector centre
    y, x = np.mgrid[:n, :n] - (n - 1) / 2
    image = (((np.hypot(y, x) < 30) * 1.0 + (np.hypot(y - 8, x + 5) < 7) * 0.5) * 0.05).astype(np.float32)
    angles = np.linspace(0, np.pi, n_angles, endpoint=False)
    sino = np.asarray(ParallelBeamProjector(n, angles, device="cpu").forward(image))
    wide = np.zeros((n_angles, n + 2 * offset), np.float32)
    wide[:, 2 * offset:] = sino
    width = wide.shape[1]
    ours = np.asarray(fbp(shift_to_center(wide[None], (width - 1) / 2 + offset), angles, filter="ramp"))[0]
    from astra_reference import astra_fbp

    reference = astra_fbp(astra, wide[:, 2 * offset:], angles, n)
    start = (width - n) // 2
    inside = np.hypot(y, x) < 40
    difference = np.abs(ours[start:start + n, start:start + n] - reference)[inside].max()
    assert difference < 1e-4 * np.abs(reference).max()
