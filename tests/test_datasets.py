"""Dataset registry, build, store atomicity and the loader API."""

from __future__ import annotations

import hashlib

import jsonschema
import numpy as np
import pytest
import yaml

from aiax_bench.data import registry
from aiax_bench.data.loader import load
from aiax_bench.errors import InputError, StoreError, UnknownNameError


def test_registry_matches_schema_and_recipes():
    document = yaml.safe_load(registry._catalog().joinpath("registry.yaml").read_text())
    jsonschema.validate(document, registry.REGISTRY_SCHEMA)
    for name, entry in document.items():
        for version, spec in entry["versions"].items():
            raw = registry.recipe_bytes(spec["recipe"])
            assert hashlib.sha256(raw).hexdigest() == spec["recipe_sha256"], (
                f"{name}@{version}: recipe changed without a new version")
            recipe = yaml.safe_load(raw)
            jsonschema.validate(recipe, registry.recipe_schema(recipe))
            # A recipe belongs to its own dataset's family, or is a variant of another registered family
            # (foam-pc@1.0: the foam at 20 keV with phase contrast), never of an unknown one.
            assert recipe["family"] == name or recipe["family"] in document, (name, recipe["family"])
            if recipe["family"] != name and "phantom" in recipe:
                assert recipe["phantom"].get("generator"), f"{name}: a variant names its phantom generator"
            assert spec["default_profile"] in recipe["profiles"]


def test_changed_recipe_is_refused(monkeypatch):
    real = registry.recipe_bytes
    monkeypatch.setattr(registry, "recipe_bytes", lambda path: real(path) + b"\n# edited\n")
    with pytest.raises(InputError, match="a changed recipe needs a new version"):
        registry.resolve("foam@1.0")


def test_unknown_names():
    with pytest.raises(UnknownNameError, match="unknown dataset 'wood'"):
        registry.resolve("wood")
    with pytest.raises(UnknownNameError, match=r"unknown version of foam '9\.9'"):
        registry.resolve("foam@9.9")


def test_loader_gives_lazy_arrays_with_consistent_shapes(tiny_dataset):
    split = tiny_dataset.split("100proj")
    assert [s.id for s in split.test] == ["test-000"]
    assert len(split.train) == 1 and len(split.val) == 1 and len(split.ood_test) == 1
    sample = split.test[0]
    assert sample.low.shape == sample.high.shape == sample.truth.shape == (64, 64, 64)
    assert sample.sinogram.shape == (64, 100, 64)
    assert sample.angles.shape == (100,)
    assert sample.read("labels").dtype == np.uint8
    assert sample.meta["voxel_size_um"] == 20.0
    # The sparse scan is a subset of the reference scan: same noise realisation.
    full = np.asarray(sample._group["sinogram"][...])
    ref_angles = np.asarray(sample._group["angles"][...])
    idx = np.searchsorted(ref_angles, sample.angles)
    np.testing.assert_array_equal(full[:, idx], sample.read("sinogram"))


def test_reconstructions_are_physical(tiny_dataset):
    sample = tiny_dataset.split("100proj").test[0]
    labels, high = sample.read("labels"), sample.read("high")
    mu_solid = sample.meta["attenuation_per_cm"][1]
    solid = np.median(high[labels == 1])
    pore = np.median(high[labels == 2])
    assert solid == pytest.approx(mu_solid, rel=0.1)
    assert abs(pore) < 0.15 * mu_solid
    # Fewer projections: further from the reference than the reference is from itself.
    low = sample.read("low")
    assert np.mean((low - high) ** 2) > 0


_REBUILD_ONE_SAMPLE = """
import copy, dataclasses, json, sys, torch
torch.set_num_threads(int(sys.argv[1]))
import zarr
from aiax_bench.data.build import build_store
from aiax_bench.data.registry import resolve
spec = resolve("foam@2.0")
recipe = copy.deepcopy(spec.recipe)
first_test = recipe["profiles"]["tiny"]["samples"]["test"][0]
recipe["profiles"]["tiny"]["samples"] = {"train": [], "val": [], "test": [first_test], "ood-test": []}
recipe["splits"] = {k: recipe["splits"][k] for k in ("100proj", "dose-1/16", "res-x2")}
build_store(dataclasses.replace(spec, recipe=recipe), "tiny", __import__("pathlib").Path(sys.argv[2]), quiet=True)
print(json.dumps(dict(zarr.open_group(sys.argv[2], mode="r")["samples/test-000"].attrs)["sha256"]))
"""


def test_rebuild_gives_the_same_bytes_whatever_the_thread_count(tiny_v2, tmp_path):
    """One sample of foam@2.0 rebuilt with 1 and 4 threads equals the session's store (built with the default)."""
    import json
    import os
    import subprocess
    import sys

    stored = tiny_v2.split("100proj").test[0].meta["sha256"]
    procs = {}
    for threads in (1, 4):  # side by side: most of a build is single-threaded
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        procs[threads] = subprocess.Popen([sys.executable, "-c", _REBUILD_ONE_SAMPLE, str(threads),
                                           str(tmp_path / f"t{threads}")], env=env, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)
    for threads, proc in procs.items():
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        rebuilt = json.loads(out.strip().splitlines()[-1])
        assert rebuilt == {k: v for k, v in stored.items() if k in rebuilt}, threads
        assert {"truth", "high", "clean", "splits/100proj/low", "splits/res-x2/low"} <= set(rebuilt)


def test_samples_built_in_two_worker_processes_give_the_serial_store(tiny_dataset, tmp_path):
    """``workers=2`` builds samples side by side in spawned processes: the same content sha256, the same
    fingerprint in the same order, and every sample's attributes, as the session's serial build."""
    import zarr

    from aiax_bench.data.build import build_store
    from aiax_bench.data.registry import resolve

    attrs = build_store(resolve("foam@1.0"), "tiny", tmp_path / "two.zarr", quiet=True, workers=2)
    assert attrs["content_sha256"] == tiny_dataset.content_sha256
    assert list(attrs["fingerprint"].items()) == list(tiny_dataset.attrs["fingerprint"].items())
    group = zarr.open_group(str(tmp_path / "two.zarr"), mode="r")
    for sample in tiny_dataset.attrs["samples"]:
        assert dict(group[f"samples/{sample}"].attrs) == dict(tiny_dataset.group[f"samples/{sample}"].attrs)
    with pytest.raises(InputError, match="workers"):
        build_store(resolve("foam@1.0"), "tiny", tmp_path / "none.zarr", workers=0)
    assert not (tmp_path / "none.zarr").exists()


def test_a_worker_takes_the_idle_workers_threads_once_fewer_samples_are_left_than_workers(monkeypatch):
    """Between splits a worker sets its torch threads to its share of the cores among the samples still being
    built: its own share while every worker builds one, all the cores when it builds the last sample. The
    parent counts a sample as building from when it is handed out until it is written."""
    import multiprocessing

    import torch

    from aiax_bench.data import build
    from aiax_bench.data.registry import resolve

    # 5 samples on 3 workers: 3 building until the third is written, then the last two, then none.
    assert [build._samples_building(3, 5, written) for written in range(6)] == [3, 3, 3, 2, 1, 0]
    assert build._samples_building(4, 2, 0) == 2
    monkeypatch.setattr(build, "use_compatible_mkl", lambda: None)  # a worker's start-up, not this process's
    threads_before = torch.get_num_threads()
    building = multiprocessing.get_context("spawn").Value("i", 3, lock=False)
    try:
        build._start_worker(resolve("foam@1.0"), "tiny", 2, 6, building)  # 3 workers of 2 threads on 6 cores
        assert torch.get_num_threads() == 2
        shares = {}
        for still_building in (3, 2, 1):
            building.value = still_building
            build._WORKER.before_split()
            shares[still_building] = torch.get_num_threads()
        assert shares == {3: 2, 2: 3, 1: 6}
    finally:
        torch.set_num_threads(threads_before)
        build._WORKER = None


def test_a_sample_failing_in_a_worker_process_fails_the_build_in_one_line_and_leaves_nothing(tmp_path):
    """The worker's error comes back whole (its own type and one-line message) and no store appears."""
    import copy
    import dataclasses

    from aiax_bench.data.build import build_store
    from aiax_bench.data.registry import resolve

    spec = resolve("foam@1.0")
    recipe = copy.deepcopy(spec.recipe)
    recipe["phantom"]["cylinder_radius"] = 0.9  # checked when a sample's phantom is drawn, in the worker
    with pytest.raises(InputError, match=r"^cylinder_radius is 0.9; expected a fraction") as error:
        build_store(dataclasses.replace(spec, recipe=recipe), "tiny", tmp_path / "bad.zarr", quiet=True, workers=2)
    assert "\n" not in str(error.value)
    assert not list(tmp_path.iterdir())


def test_failed_build_leaves_nothing(tiny_dataset, tmp_path, monkeypatch):
    import aiax_bench.data.build as build

    def explode(*args, **kwargs):
        raise RuntimeError("simulated crash mid-build")

    monkeypatch.setattr(build, "poisson_noise", explode)
    target = tmp_path / "foam" / "1.0" / "tiny.zarr"
    with pytest.raises(RuntimeError):
        build.build_store(tiny_dataset.spec, "tiny", target, quiet=True)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []


def test_room_for_the_other_samples_is_checked_against_the_real_disk(tmp_path):
    import shutil

    from aiax_bench.data.store import check_room_for_samples

    sample = tmp_path / "samples" / "train-000" / "high"
    sample.mkdir(parents=True)
    (sample / "c.0").write_bytes(b"x" * 1000)
    (sample.parent / "zarr.json").write_bytes(b"y" * 24)
    assert check_room_for_samples(tmp_path, "train-000", 3, target=tmp_path / "s.zarr") == 1024
    more_than_fits = shutil.disk_usage(tmp_path).free // 1024 + 1
    with pytest.raises(StoreError, match=rf"^{tmp_path / 's.zarr'}: its {more_than_fits} other samples need about"):
        check_room_for_samples(tmp_path, "train-000", more_than_fits, target=tmp_path / "s.zarr")


def test_a_build_its_disk_cannot_hold_stops_after_one_sample_and_leaves_nothing(tmp_path, monkeypatch):
    """A full disk reported by the operating system (its free space set to 1 MB, less than a tiny sample)."""
    import shutil

    import aiax_bench.data.build as build
    from aiax_bench.data.registry import resolve

    usage = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(path)._replace(free=10**6))
    built = []
    sample_build = build._SampleBuilder.build
    monkeypatch.setattr(build._SampleBuilder, "build", lambda self, root, sample_id, *rest:
                        built.append(sample_id) or sample_build(self, root, sample_id, *rest))
    target = tmp_path / "foam" / "1.0" / "tiny.zarr"
    expected = r"its 3 other samples need about \S+ GB \(\S+ GB each, as train-000\) and its disk has 0\.0 GB free"
    with pytest.raises(StoreError, match=expected) as error:
        build.build_store(resolve("foam@1.0"), "tiny", target, quiet=True)
    assert "\n" not in str(error.value) and str(target) in str(error.value)
    assert built == ["train-000"]
    assert list(target.parent.iterdir()) == []


def test_missing_store_without_build(tmp_path):
    with pytest.raises(StoreError, match="not in the cache"):
        load("foam@1.0", profile="tiny", root=tmp_path, build=False)


def test_every_split_is_stored_with_its_degradation(tiny_dataset):
    spec = tiny_dataset.spec
    assert set(spec.splits) == {"50proj", "75proj", "100proj", "150proj", "250proj", "dose-1/4", "dose-1/16",
                                "dose-1/64", "res-x2", "res-x4", "continuous"}
    errors = {}
    for name, params in spec.splits.items():
        sample = tiny_dataset.split(name).test[0]
        low, high = sample.read("low"), sample.read("high")
        assert low.shape == high.shape == (64, 64, 64)
        n = params.get("n_angles", 500)
        rows = 64 // params.get("factor", 1)
        assert sample.sinogram.shape == (rows, n, rows), name
        assert sample.angles.shape == (n,)
        mask = sample.read("mask")
        errors[name] = float(np.mean((low - high)[mask] ** 2))
    # Each degradation costs more the stronger it is.
    assert errors["50proj"] > errors["100proj"] > errors["250proj"]
    assert errors["dose-1/64"] > errors["dose-1/16"] > errors["dose-1/4"]
    assert errors["res-x4"] > errors["res-x2"]
    assert errors["continuous"] != errors["100proj"]


def test_dose_noise_scales_with_photons(tiny_dataset):
    sample = tiny_dataset.split("dose-1/4").test[0]
    reference = np.asarray(sample._group["sinogram"][...])
    clean_estimate = reference  # noise of the reference is 16x smaller than at 1/16: negligible here
    var = {}
    for name in ("dose-1/4", "dose-1/16"):
        sino = tiny_dataset.split(name).test[0].read("sinogram")
        air = clean_estimate < 0.01  # rays that miss the sample: pure counting noise
        var[name] = float(np.var((sino - clean_estimate)[air]))
    assert var["dose-1/16"] / var["dose-1/4"] == pytest.approx(4.0, rel=0.35)


def test_verify_finds_a_damaged_store(data_root, tmp_path, monkeypatch):
    import shutil

    from aiax_bench.data.verify import verify_store

    monkeypatch.setenv("AIAX_BENCH_DATA", str(data_root))
    assert verify_store("foam@1.0", profile="tiny") == []
    root = tmp_path / "cache"
    shutil.copytree(data_root / "foam", root / "foam")
    chunk = next(p for p in (root / "foam/1.0/tiny.zarr/samples/val-000/high/c").rglob("*") if p.is_file())
    chunk.write_bytes(b"\x00" * 16)
    monkeypatch.setenv("AIAX_BENCH_DATA", str(root))
    problems = verify_store("foam@1.0", profile="tiny")
    assert problems and "val-000/high" in problems[0]


def test_build_keeps_operators_within_its_byte_budget():
    from aiax_bench.data.build import _ProjectorCache

    angles = [np.linspace(0, np.pi, a, endpoint=False) for a in (10, 20, 30)]
    one = _ProjectorCache(1 << 40)(16, angles[0]).nbytes
    cache = _ProjectorCache(5 * one)  # room for the 10- and 20-angle operators, not for all three
    first = cache(16, angles[0])
    assert cache(16, angles[0]) is first  # built once while it fits
    cache(16, angles[1])
    cache(16, angles[0])  # used again: now the most recent
    cache(16, angles[2])  # 3 + 1 units: the 20-angle one, least recently used, goes first
    assert list(len(np.frombuffer(k[1])) for k in cache.kept) == [10, 30]
    assert sum(p.nbytes for p in cache.kept.values()) <= 5 * one
    rebuilt = cache(16, angles[1])
    x = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    np.testing.assert_array_equal(rebuilt.forward(x), _ProjectorCache(1 << 40)(16, angles[1]).forward(x))


def test_every_deliberate_error_pickles_whole():
    """Errors raised in worker processes (parallel builds, a study's workers) reach the caller as raised."""
    import pickle
    from pathlib import Path

    from aiax_bench.data.download import DownloadError
    from aiax_bench.data.sealed import SealedFieldError
    from aiax_bench.study.clusters import ClusterError
    from aiax_bench.study.runner import StudyError

    for error in (InputError("workers", "is 0", "expected a positive integer"),
                  StoreError("store.zarr", "is damaged", "rebuild it"),
                  UnknownNameError("method", "nosuch", ["fbp", "unet"], "see aiax-bench methods"),
                  SealedFieldError("truth", "test-000"), DownloadError("no mirror delivered a verified archive"),
                  ClusterError("slurm", Path("cluster.yaml"), "started no worker", "sinfo"),
                  StudyError("every evaluation failed")):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and str(copy) == str(error) and vars(copy) == vars(error)
