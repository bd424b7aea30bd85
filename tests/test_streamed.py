"""Out-of-core reconstruction: slab by slab, the in-memory reconstruction's bytes, resumable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _mapped import needs_smaps, resident_kb_of_mapping

from aiax_bench.errors import InputError
from aiax_bench.ingest.preprocess import Paganin, Preprocessing
from aiax_bench.ingest.reconstruct import reconstruct
from aiax_bench.ingest.scan import Projections
from aiax_bench.ingest.streamed import reconstruct_out_of_core, slab_rows_for

ROWS, N, ANGLES, OFFSET = 13, 40, 48, 1.5


def _scan(*, dead: bool = True, zingers: bool = True, path: Path | None = None) -> Projections:
    """Counts of a holed cylinder whose holes move with the row; a dead flat pixel and zingers on request.

    With ``path`` the projections are a memory-mapped ``.npy`` file, as a large scan is read.
    """
    from scipy import ndimage

    from aiax_bench.recon import ParallelBeamProjector

    angles = np.linspace(0, np.pi, ANGLES, endpoint=False)
    y, x = np.mgrid[:N, :N] - (N - 1) / 2
    projector = ParallelBeamProjector(N, angles, device="cpu")
    rows = []
    for r in range(ROWS):
        slice_ = ((np.hypot(y, x) < 14) & (np.hypot(y - 4 + r / 4, x + 3) > 4)) * 0.07
        rows.append(np.asarray(projector.forward(slice_.astype(np.float32))))
    sino = ndimage.shift(np.stack(rows, axis=1), (0, 0, OFFSET), order=1, mode="nearest")
    rng = np.random.default_rng(3)
    counts = rng.poisson(3000 * np.exp(-sino)).astype(np.float32) + 20
    flats = np.full((3, ROWS, N), 3020, np.float32)
    if dead:
        flats[:, 0, 5] = 20  # dead on the first row: its 3×3 median reaches across the slab edge
        flats[:, 7, 30] = 20
    if zingers:
        counts[rng.integers(0, ANGLES, 40), rng.integers(0, ROWS, 40), rng.integers(0, N, 40)] *= 3
    data: np.ndarray = counts
    if path is not None:
        np.save(path, counts)
        data = np.load(path, mmap_mode="r")
    return Projections(data=data, flats=flats, darks=np.full((2, ROWS, N), 20, np.float32), angles=angles,
                       source=str(path or "synthetic"))


def _read(path: Path) -> np.ndarray:
    import zarr

    return np.asarray(zarr.open_array(str(path), mode="r")[...])


@pytest.mark.parametrize("settings", [
    Preprocessing(zingers=0.08, rings=True),
    Preprocessing(crop_rows=(1, 12), crop_columns=(2, 38), bin=2, background=3),
], ids=["zingers-rings", "crop-bin"])
def test_out_of_core_gives_the_in_memory_bytes_whatever_the_slab(tmp_path, settings):
    in_memory, provenance = reconstruct(_scan(), settings=settings)
    for memory in (1, 600_000, 1 << 30):  # one row per slab, a few rows, everything at once
        out = tmp_path / f"vol-{memory}.zarr"
        result = reconstruct_out_of_core(_scan(path=tmp_path / "p.npy"), out, settings=settings, memory_bytes=memory)
        np.testing.assert_array_equal(_read(out), in_memory)  # bit-equal: every step is row-local or halo-exact
        assert result.shape == in_memory.shape
        assert result.provenance["center"]["pixels"] == provenance["center"]["pixels"]
        assert result.provenance["flat_dark"]["clipped_pixels"] == provenance["flat_dark"]["clipped_pixels"]
        assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())
    assert result.slabs == 1 and reconstruct_out_of_core(
        _scan(), tmp_path / "one.zarr", settings=settings, memory_bytes=1).slab_rows == 1


def test_out_of_core_centre_matches_the_scan(tmp_path):
    result = reconstruct_out_of_core(_scan(dead=False, zingers=False), tmp_path / "v.zarr")
    assert result.provenance["center"]["pixels"] == pytest.approx((N - 1) / 2 + OFFSET, abs=0.5)
    assert result.provenance["center"]["method"].startswith("Vo et al.")


def test_an_interrupted_run_resumes_and_the_target_appears_only_when_complete(tmp_path, monkeypatch):
    import aiax_bench.recon as recon

    settings = Preprocessing(center=(N - 1) / 2 + OFFSET)
    target = tmp_path / "v.zarr"
    calls = {"n": 0}
    real_fbp = recon.fbp

    def failing_fbp(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # the user stops the run during the third slab
        return real_fbp(*args, **kwargs)

    monkeypatch.setattr(recon, "fbp", failing_fbp)
    with pytest.raises(KeyboardInterrupt):
        reconstruct_out_of_core(_scan(), target, settings=settings, memory_bytes=1)
    assert not target.exists() and (tmp_path / ".v.zarr.partial").exists()
    monkeypatch.setattr(recon, "fbp", real_fbp)
    result = reconstruct_out_of_core(_scan(), target, settings=settings, memory_bytes=1)
    assert result.resumed_slabs == 2 and result.slabs == ROWS
    in_memory, provenance = reconstruct(_scan(), settings=settings)
    np.testing.assert_array_equal(_read(target), in_memory)
    assert result.provenance["flat_dark"]["clipped_pixels"] == provenance["flat_dark"]["clipped_pixels"]
    # Other settings never continue a partial volume of different inputs.
    reconstruct_out_of_core(_scan(), target, settings=Preprocessing(center=settings.center, bin=2), memory_bytes=1)
    assert _read(target).shape == (ROWS // 2, N // 2, N // 2)


def test_out_of_core_refuses_what_it_cannot_stream(tmp_path):
    with pytest.raises(InputError, match=r"--output.*\.zarr"):
        reconstruct_out_of_core(_scan(), tmp_path / "v.npy")
    with pytest.raises(InputError, match=r"--paganin.*whole projections"):
        reconstruct_out_of_core(_scan(), tmp_path / "v.zarr", settings=Preprocessing(paganin=Paganin(100, 50, 20, 1)))
    with pytest.raises(InputError, match="--filter"):
        reconstruct_out_of_core(_scan(), tmp_path / "v.zarr", filter="nope")
    with pytest.raises(InputError, match="crop"):
        reconstruct_out_of_core(_scan(), tmp_path / "v.zarr", settings=Preprocessing(crop_rows=(5, 5)))
    assert not list(tmp_path.iterdir())


def test_slab_rows_follow_the_memory_budget():
    # A 2048² detector with 1,500 angles: a few rows per slab in 2 GiB, and the budget scales them.
    rows = slab_rows_for(1500, 2048, memory_bytes=2 << 30)
    assert 1 <= rows <= 8
    assert slab_rows_for(1500, 2048, memory_bytes=8 << 30) >= 4 * rows - 1
    assert slab_rows_for(1500, 2048, bin_factor=2, memory_bytes=2 << 30) > rows


def test_reconstruct_command_out_of_core_from_hdf5_and_npy(tmp_path, capsys):
    import h5py

    from aiax_bench.cli import main
    from aiax_bench.ingest import read_source
    from aiax_bench.ingest.readers import open_projections

    scan = _scan(path=tmp_path / "p.npy")
    np.save(tmp_path / "flats.npy", scan.flats)
    np.save(tmp_path / "darks.npy", scan.darks)
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f["exchange/data"] = np.asarray(scan.data)
        f["exchange/data_white"], f["exchange/data_dark"] = scan.flats, scan.darks
        f["exchange/theta"] = np.rad2deg(scan.angles)
    in_memory, _ = reconstruct(read_source(tmp_path / "scan.h5"), filter="hann")
    lazy = open_projections(tmp_path / "scan.h5")
    assert not isinstance(lazy.data, np.ndarray)  # an h5py dataset, read by slicing
    assert main(["reconstruct", str(tmp_path / "scan.h5"), "--output", str(tmp_path / "h5.zarr"),
                 "--out-of-core", "--memory", "0.0005"]) == 0
    np.testing.assert_array_equal(_read(tmp_path / "h5.zarr"), in_memory)
    assert "slices/s" in capsys.readouterr().out and (tmp_path / "h5.zarr.json").is_file()
    last = float(np.rad2deg(scan.angles[-1]))
    assert main(["reconstruct", str(tmp_path / "p.npy"), "--output", str(tmp_path / "npy.zarr"), "--out-of-core",
                 "--angle-range", f"0,{last!r}", "--flats", str(tmp_path / "flats.npy"),
                 "--darks", str(tmp_path / "darks.npy")]) == 0
    np.testing.assert_allclose(_read(tmp_path / "npy.zarr"), in_memory, rtol=0, atol=1e-6)  # angles via degrees
    with pytest.raises(InputError, match="loads it whole"):
        open_projections(tmp_path / "flats.npy", format="volume")
    capsys.readouterr()
    assert main(["reconstruct", str(tmp_path / "scan.h5"), "--output", str(tmp_path / "x.zarr"), "--out-of-core",
                 "--memory", "0"]) == 2
    assert "--memory is 0.0" in capsys.readouterr().err and not (tmp_path / "x.zarr").exists()


@needs_smaps
def test_a_memory_mapped_scan_does_not_stay_resident_after_its_slabs_are_read(tmp_path):
    """Each slab's pages are dropped from the process once read: reading a 25 GB scan through its mapping
    otherwise left 17 GB resident. The result is the in-memory reconstruction's, as before."""
    from aiax_bench.mapped_files import release_mapped_pages

    path = tmp_path / "big.npy"
    np.save(path, np.ones((64, 64, 512), np.float32))  # 8 MiB
    mapped = np.load(path, mmap_mode="r")
    assert float(mapped[:, 10:20].sum()) == 64 * 10 * 512
    assert resident_kb_of_mapping(path) >= 64 * 10 * 512 * 4 // 1024  # the rows read are resident
    release_mapped_pages(mapped[:, 10:20])  # through a view, as slabs are cut
    assert resident_kb_of_mapping(path) == 0
    assert float(mapped[:, 10:20].sum()) == 64 * 10 * 512  # read again from the page cache or the file

    scan = _scan(path=tmp_path / "scan.npy")
    reconstruct_out_of_core(scan, tmp_path / "ooc.zarr", memory_bytes=ANGLES * N * 4 * 3)  # slabs of 3 rows
    assert resident_kb_of_mapping(tmp_path / "scan.npy") == 0
    expected, _ = reconstruct(_scan(), settings=Preprocessing())
    np.testing.assert_array_equal(_read(tmp_path / "ooc.zarr"), expected)
