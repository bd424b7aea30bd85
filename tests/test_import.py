"""``aiax-bench import``: readers of every supported format, pre-processing steps, and the dataset store."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aiax_bench.errors import InputError
from aiax_bench.ingest import ReadOptions, read_source
from aiax_bench.ingest.importer import ImportOptions, import_scan
from aiax_bench.ingest.preprocess import Paganin, Preprocessing, correct, paganin_filter, remove_zingers
from aiax_bench.ingest.scan import Projections

REPO = Path(__file__).resolve().parents[1]
REALDATA = Path(os.environ.get("AIAX_BENCH_REALDATA", REPO.parent / "shared" / "realdata"))
needs_realdata = pytest.mark.skipif(not REALDATA.is_dir(), reason=f"real scans not found in {REALDATA}")

ROWS, N, ANGLES, OFFSET = 36, 48, 60, 2.5


def _cylinder_scan(tmp_path: Path, *, name: str = "scan.h5", photons: float = 2000.0, seed: int = 0) -> Path:
    """A data-exchange file: a cylinder with two holes, axis OFFSET px off the detector centre, Poisson counts."""
    import h5py
    from scipy import ndimage

    from aiax_bench.recon import ParallelBeamProjector

    y, x = np.mgrid[:N, :N] - (N - 1) / 2
    slice_ = ((np.hypot(y, x) < 16) & (np.hypot(y - 5, x + 3) > 4) & (np.hypot(y + 4, x - 6) > 3)) * 0.06
    angles = np.linspace(0, np.pi, ANGLES, endpoint=False)
    sino = np.asarray(ParallelBeamProjector(N, angles, device="cpu").forward(slice_.astype(np.float32)))
    sino = ndimage.shift(sino, (0, OFFSET), order=1, mode="nearest")
    rng = np.random.default_rng(seed)
    counts = rng.poisson(photons * np.exp(-np.repeat(sino[:, None, :], ROWS, axis=1))).astype(np.float32) + 10
    path = tmp_path / name
    with h5py.File(path, "w") as f:
        f["exchange/data"] = counts
        f["exchange/data_white"] = np.full((4, ROWS, N), photons + 10, np.float32)
        f["exchange/data_dark"] = np.full((2, ROWS, N), 10, np.float32)
        f["exchange/theta"] = np.rad2deg(angles)
    return path


def test_import_writes_a_store_every_command_opens_by_name(tmp_path, monkeypatch):
    from aiax_bench.data.loader import load
    from aiax_bench.data.registry import list_datasets, resolve

    monkeypatch.setenv("AIAX_BENCH_DATA", str(tmp_path / "data"))
    report = import_scan(_cylinder_scan(tmp_path), "cyl", options=ImportOptions(subsample=(20, 30)))
    assert report.center == pytest.approx((N - 1) / 2 + OFFSET, abs=0.5)
    assert set(report.splits) == {"20proj", "30proj"} and set(report.parts) == {"train", "val", "test"}
    spec = resolve("cyl")
    assert spec.imported and spec.ref == "cyl@user" and "cyl@user" in [s.ref for s in list_datasets()]
    assert spec.split_spec("20proj").kind == "subsample" and spec.split_spec("20proj").n_angles == 20
    from aiax_bench.data.verify import verify_store

    assert verify_store("cyl") == []
    dataset = load("cyl")
    test = dataset.split("20proj").test[0]
    assert np.asarray(test.low).shape == np.asarray(test.high).shape == (ROWS - report.parts["test"][0], N, N)
    assert np.asarray(test.sinogram).shape[1] == 20 and np.asarray(test.read("angles")).size == 20
    assert dataset.split("reference").test[0].read("sinogram").shape[1] == ANGLES  # for self-supervised methods
    evaluation = dataset.spec.evaluation
    assert evaluation["truth"] is False and "quantile" in evaluation["data_range_rule"]
    # Mask: the cylinder (radius 16 px of the 48 px disc), not the air around it.
    share = np.asarray(test.mask).mean()
    assert 0.25 < share < 0.45
    with pytest.raises(InputError, match="already imported"):
        import_scan(_cylinder_scan(tmp_path), "cyl")
    with pytest.raises(InputError, match="registered dataset"):
        import_scan(_cylinder_scan(tmp_path), "foam")


def test_evaluate_and_datasets_commands_take_an_imported_name(tmp_path, monkeypatch, capsys):
    from aiax_bench.cli import main

    monkeypatch.setenv("AIAX_BENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")

    def cli(*args: str) -> tuple[int, str, str]:
        code = main(list(args))
        out, err = capsys.readouterr()
        return code, out, err

    code, out, err = cli("import", str(_cylinder_scan(tmp_path)), "--name", "cyl", "--subsample", "20",
                         "--voxel-size", "10um")
    assert code == 0, err
    assert "centre of rotation" in out and "imported as dataset 'cyl'" in out
    assert "cyl@user" in cli("datasets", "list")[1]
    info = cli("datasets", "info", "cyl")[1]
    assert "10 µm" in info and "against the reference" in info
    code, out, err = cli("evaluate", "--dataset", "cyl", "--split", "20proj", "--method", "fbp-ramp",
                         "--output", str(tmp_path / "out"), "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}")
    assert code == 0, err
    assert "no truth: scored against your reference" in out
    result = json.loads(Path(out.split("result file ")[-1].strip()).read_text())
    keys = result["runs"][0]["records"][0]
    assert "psnr/reference" in keys and not any(k.endswith("/truth") for k in keys)
    code, out, err = cli("import", str(tmp_path / "nothing.h5"), "--name", "x")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "nothing.h5" in err


def test_a_second_scan_imports_as_a_pair(tmp_path, monkeypatch):
    from aiax_bench.data.loader import load

    monkeypatch.setenv("AIAX_BENCH_DATA", str(tmp_path / "data"))
    low = _cylinder_scan(tmp_path, name="short.h5", photons=200.0, seed=1)
    import_scan(_cylinder_scan(tmp_path), "cyl", options=ImportOptions(low=low))
    sample = load("cyl").split("pair").test[0]
    low_v, high_v = np.asarray(sample.low), np.asarray(sample.high)
    mask = np.asarray(sample.mask)
    assert low_v.shape == high_v.shape
    assert np.std((low_v - high_v)[mask]) > 0.1 * np.std(high_v[mask])  # ten times fewer photons: noisier


def test_flats_before_and_after_are_interpolated():
    rows, cols, n = 4, 6, 11
    drift = np.linspace(1000, 1200, n, dtype=np.float32)[:, None, None]
    data = np.broadcast_to(0.5 * drift, (n, rows, cols)).astype(np.float32)
    flats = np.concatenate([np.full((2, rows, cols), 1000, np.float32), np.full((2, rows, cols), 1200, np.float32)])
    scan = Projections(data=data, flats=flats, darks=None, angles=np.linspace(0, np.pi, n), source="drift",
                       flat_positions=np.array([0, 0, n - 1, n - 1], float))
    assert np.allclose(correct(scan), 0.5, atol=1e-6)
    assert "interpolated" in scan.provenance["flat_dark"]["flats_combined"]
    averaged = correct(scan, flat_mode="mean")
    assert not np.allclose(averaged, 0.5, atol=0.02)


def test_zingers_dead_pixels_and_paganin():
    rng = np.random.default_rng(0)
    image = (0.8 + 0.01 * rng.standard_normal((1, 32, 32))).astype(np.float32)
    hit = image.copy()
    hit[0, 10, 12] = 3.0
    assert abs(remove_zingers(hit, 0.08)[0, 10, 12] - 0.8) < 0.05
    # Phase retrieval is a low-pass filter of unit gain: a uniform transmission is kept, an edge is smoothed.
    settings = Paganin(delta_beta=500, distance_mm=100, energy_kev=20, pixel_um=1)
    flat = np.full((1, 16, 16), 0.7, np.float32)
    assert np.allclose(paganin_filter(flat, settings), 0.7, atol=1e-5)
    edge = np.where(np.arange(32) < 16, 0.5, 0.9).astype(np.float32)[None, None, :].repeat(32, 1)
    filtered = paganin_filter(edge, settings)
    assert np.abs(np.diff(filtered[0, 16])).max() < 0.5 * np.abs(np.diff(edge[0, 16])).max()
    with pytest.raises(InputError, match="--paganin delta_beta"):
        Paganin(delta_beta=-1, distance_mm=1, energy_kev=1, pixel_um=1)


@needs_realdata
def test_nxtomo_with_image_keys_and_dangling_links():
    scan = read_source(REALDATA / "k11-nxtomo" / "k11-18014.nxs")
    by_key = scan.provenance["frames_by_key"]
    assert by_key == {"projections": 3001, "flats": 100, "darks": 100}
    assert scan.data.shape == (3001, 22, 26) and len(scan.provenance["dangling_links"]) > 0
    assert np.rad2deg(np.ptp(scan.angles)) == pytest.approx(180, abs=1)


@needs_realdata
def test_separate_flat_and_dark_files_and_a_given_angle_range():
    root = REALDATA / "i12-lfov"
    options = ReadOptions(flats=(root / "dark_flat" / "pco2_flats_00000.hdf",),
                          darks=(root / "dark_flat" / "pco2_darks_00000.hdf",), angle_range_deg=(0.0, 180.0))
    scan = read_source(root / "tomo_data" / "pc2_projections.hdf", options)
    assert scan.data.shape == (19, 32, 64) and scan.flats.shape == (5, 32, 64) and scan.darks.shape == (5, 32, 64)
    assert np.rad2deg(scan.angles[[0, -1]]) == pytest.approx([0, 180])
    with pytest.raises(InputError, match="stores no projection angles"):
        read_source(root / "tomo_data" / "pc2_projections.hdf")


@needs_realdata
def test_zeiss_txrm_nikon_and_matlab_sources():
    txrm = read_source(REALDATA / "xradia-chip" / "txrm_test_chip_tomo.txrm")
    assert txrm.data.shape == (7, 256, 256) and txrm.pixel_size_um == pytest.approx(0.1558, abs=1e-4)
    assert np.rad2deg(txrm.angles[[0, -1]]) == pytest.approx([-45.0, 45.0], abs=0.05)
    nikon = read_source(REALDATA / "nikon-xtek" / "radiogram.xtekct")
    assert nikon.geometry == "cone" and nikon.signal == "transmission"
    assert nikon.pixel_size_um == pytest.approx(13.6148, abs=1e-3)  # the file's VoxelSizeX, 0.0136148 mm
    mat = read_source(REALDATA / "htc2022" / "training" / "htc2022_ta_full.mat")
    assert mat.signal == "line-integrals" and mat.geometry == "fan" and mat.data.shape == (721, 1, 560)
    with pytest.raises(InputError, match="cone-beam scan"):
        import_scan(REALDATA / "nikon-xtek" / "radiogram.xtekct", "nikon-test", root=Path("/nonexistent"))


@needs_realdata
def test_dicom_and_nifti_volumes():
    dicom = read_source(REALDATA / "clinical-ct" / "CT_small.dcm")
    assert dicom.units == "HU" and dicom.volume.shape == (1, 128, 128)
    nifti = read_source(REALDATA / "clinical-ct" / "example_ct_sm.nii.gz")
    assert nifti.volume.shape == (30, 101, 122) and nifti.voxel_size_um == pytest.approx(3000)


def test_bad_files_are_refused_in_one_line(tmp_path):
    fake = tmp_path / "scan.txrm"
    fake.write_bytes(b"not an OLE file")
    with pytest.raises(InputError, match="not an OLE2 compound file"):
        read_source(fake)
    xtek = tmp_path / "scan.xtekct"
    xtek.write_text("[XTekCT]\nName=scan\nProjections=10\nInitialAngle=0\nAngularStep=abc\n")
    with pytest.raises(InputError, match=r"scan\.xtekct: field AngularStep"):
        read_source(xtek)
    raw = tmp_path / "proj.raw"
    raw.write_bytes(np.zeros(100, np.uint16).tobytes())
    with pytest.raises(InputError, match="holds 200 bytes"):
        read_source(raw, ReadOptions(raw_shape=(4, 4, 4), raw_dtype="<u2", angle_range_deg=(0, 180)))
    with pytest.raises(InputError, match="--bin"):
        Preprocessing(bin=0)


@needs_realdata
def test_tooth_imports_from_raw_files_in_one_call(tmp_path):
    """The APS tooth: raw counts, 10 flats and darks, 181 angles: the documented centre is about 295.5 px."""
    report = import_scan(REALDATA / "tooth-aps" / "tooth.h5", "tooth", root=tmp_path)
    assert report.center == pytest.approx(295.5, abs=1.0)
    assert report.parts == {"test": (0, 2)} and report.shape == (2, 640, 640)


def test_apply_trains_a_self_supervised_method_on_the_imported_scan_itself(tmp_path):
    env = {**os.environ, "AIAX_BENCH_DATA": str(tmp_path / "data"), "MLFLOW_DISABLE_TELEMETRY": "true"}
    import_scan(_cylinder_scan(tmp_path), "cyl", root=tmp_path / "data")
    out = tmp_path / "denoised.npy"
    done = subprocess.run([sys.executable, "-m", "aiax_bench.cli", "apply", "--method", "noise2inverse", "--input",
                           "cyl", "--output", str(out), "--config", "max_steps=2", "val_every=2", "patch_size=16",
                           "batch_size=2", "depth=1", "base_channels=4", "progress=false", "val_slice_step=32"],
                          capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    record = json.loads(Path(str(out) + ".json").read_text())
    assert record["method"] == "noise2inverse" and "trained on cyl@user itself" in done.stdout
    assert np.load(out).shape == (record["rows"][1] - record["rows"][0], N, N) and np.isfinite(np.load(out)).all()
    refused = subprocess.run([sys.executable, "-m", "aiax_bench.cli", "apply", "--method", "unet", "--input", "cyl",
                              "--output", str(out)], capture_output=True, text=True, env=env)
    assert refused.returncode != 0 and "self-supervised" in refused.stderr


def test_an_angles_file_with_other_extra_values_is_refused(tmp_path):
    from aiax_bench.ingest import read_angles

    path = tmp_path / "angles.txt"
    path.write_text("\n".join(map(str, np.linspace(0, 180, 1800))))  # 1800 angles for 180 projections
    with pytest.raises(InputError, match="no increasing run of 180"):
        read_angles(path, 180)


def test_binning_sums_counts_and_averages_line_integrals():
    from aiax_bench.ingest.preprocess import bin_projections

    images = np.full((1, 4, 4), 1.5, np.float32)
    assert np.allclose(bin_projections(images, 2), 6.0) and np.allclose(bin_projections(images, 2, average=True), 1.5)
    lines = Projections(data=images.repeat(4, 0), flats=None, darks=None, angles=np.linspace(0, np.pi, 4),
                        source="sino.mat", signal="line-integrals")
    with pytest.raises(InputError, match="--paganin"):
        from aiax_bench.ingest.preprocess import preprocess

        preprocess(lines, Preprocessing(paganin=Paganin(delta_beta=100, distance_mm=50, energy_kev=20, pixel_um=1)))


@pytest.mark.parametrize("parts", [(0.6, 0.2, 0.2), (0.01, 0.0, 0.99), (0.0, 0.5, 0.5), (1, 1, 1)])
@pytest.mark.parametrize("rows", [3, 10, 33, 135])
def test_slabs_are_disjoint_and_cover_the_rows(rows, parts):
    from aiax_bench.ingest.importer import _slabs

    slabs = _slabs(rows, parts)
    covered = sorted(r for a, b in slabs.values() for r in range(a, b))
    assert covered == list(range(rows)) and "test" in slabs


def test_tiff_projections_are_taken_in_numeric_order_without_the_flats(tmp_path):
    import tifffile

    folder = tmp_path / "proj"
    folder.mkdir()
    for k in (1, 2, 10):
        tifffile.imwrite(folder / f"p_{k}.tif", np.full((4, 6), k, np.float32))
    tifffile.imwrite(folder / "flat.tif", np.full((4, 6), 100, np.float32))
    scan = read_source(folder, ReadOptions(flats=(folder / "flat.tif",), angle_range_deg=(0, 180)))
    assert scan.data[:, 0, 0].tolist() == [1, 2, 10] and scan.flats.shape == (1, 4, 6)


def test_background_columns_zero_the_air_whatever_the_drift():
    from aiax_bench.ingest.preprocess import subtract_background

    rng = np.random.default_rng(1)
    lines = np.zeros((5, 2, 40), np.float32)
    lines[:, :, 10:30] = 1.0  # the sample
    drifted = lines + rng.uniform(-0.2, 0.2, (5, 2, 1)).astype(np.float32)  # beam intensity varies per projection
    np.testing.assert_allclose(subtract_background(drifted, 5), lines, atol=1e-6)
    with pytest.raises(InputError, match="--background"):
        subtract_background(drifted, 20)
