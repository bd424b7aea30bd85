"""dct-spots through the one harness: recipe, frame-slab build, task ``dct`` in the evaluator, sealing, the board."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

from aiax_bench.data.sample import SampleLike
from aiax_bench.errors import InputError
from aiax_bench.methods.base import Method

DATASET = "dct-spots@1.0"


class GlobalThreshold(Method):
    """A floor: connected components of the dark-subtracted frames above one global threshold."""

    name = "global-threshold"
    task = "dct"
    inputs = ("frames",)
    supervision = "none"

    def predict(self, sample: SampleLike) -> np.ndarray:
        frames = sample.read("low") - sample.read("dark")[None]
        centre = np.median(frames)
        threshold = centre + 5 * 1.4826 * np.median(np.abs(frames - centre))
        labels, _ = ndimage.label(frames > threshold, structure=np.ones((3, 3, 3), dtype=bool))
        return labels.astype(np.int32)


class ReadsLabels(GlobalThreshold):
    """Cheats: reads the test stack's blob labels."""

    name = "reads-labels"

    def predict(self, sample: SampleLike) -> np.ndarray:
        return np.asarray(sample.read("labels"), dtype=np.int32)


@pytest.fixture(scope="module")
def dct_root(tmp_path_factory):
    """A cache holding dct-spots@1.0 at the tiny profile, built once for this module."""
    from aiax_bench.data.loader import load

    root = tmp_path_factory.mktemp("dct-data")
    load(DATASET, profile="tiny", root=root)
    return root


@pytest.fixture
def dct_env(dct_root, monkeypatch):
    monkeypatch.setenv("AIAX_BENCH_DATA", str(dct_root))
    return dct_root


@pytest.fixture(scope="module")
def tracking(tmp_path_factory):
    """One sqlite MLflow store for the module's runs (creating one costs seconds)."""
    folder = tmp_path_factory.mktemp("dct-mlflow")
    return f"sqlite:///{folder / 'mlflow.db'}", folder


def _request(method: str, tracking, tmp_path, **kwargs):
    from aiax_bench.harness import EvaluationRequest

    return EvaluationRequest(method=method, split="frames", dataset=DATASET, profile="tiny", tracking_uri=tracking[0],
                             output_dir=tmp_path / "results", figures=kwargs.pop("figures", False), **kwargs)


# --- registry and recipe ---------------------------------------------------------------------------------------

def test_the_registry_entry_and_its_recipe_validate():
    import jsonschema

    from aiax_bench.data import registry
    from aiax_bench.dct import SpotStackSpec
    from aiax_bench.leaderboard.rank import acquisition_saving, default_metric

    spec = registry.resolve(DATASET)
    assert spec.frames and not spec.measured and registry.recipe_schema(spec.recipe) is registry.FRAMES_RECIPE_SCHEMA
    jsonschema.validate(spec.recipe, registry.FRAMES_RECIPE_SCHEMA)
    assert {"tiny", "small", "large"} <= set(spec.profiles) and {"tiny", "small"} <= set(spec.content_sha256)
    assert [spec.split_spec(s).kind for s in spec.splits] == ["frames"] * len(spec.splits)
    assert spec.split_spec("grid").detector == {"grid": True}
    # The recipe's spec and a profile's stack name every simulator parameter, and nothing else.
    fields = {f.name for f in dataclasses.fields(SpotStackSpec)}
    schema = registry.FRAMES_RECIPE_SCHEMA["properties"]
    stack = schema["profiles"]["additionalProperties"]["properties"]["stack"]["properties"]
    assert set(schema["spec"]["properties"]) | set(stack) == fields
    assert set(schema["spec"]["properties"]) & set(stack) == set()
    assert default_metric(DATASET, "dct") == spec.evaluation["rank_metric"] == "f1/blobs"
    assert "grid True" in acquisition_saving(DATASET, "grid")

    misspelt = {**spec.recipe, "spec": {**spec.recipe["spec"], "peak_count": [1.0, 2.0]}}
    with pytest.raises(InputError, match="spec") as error:
        registry._validate(misspelt, registry.recipe_schema(misspelt), "dct-spots/v1.0.yaml")
    assert "\n" not in str(error.value)
    moves_blobs = {**spec.recipe, "splits": {"bigger": {"kind": "frames", "detector": {"psi_sigma": [1.0, 9.0]},
                                                        "description": "longer blobs"}}}
    with pytest.raises(InputError, match="splits"):
        registry._validate(moves_blobs, registry.recipe_schema(moves_blobs), "dct-spots/v1.0.yaml")


def test_slabs_of_a_stream_are_the_whole_stack():
    from aiax_bench.dct import SpotStackSpec, SpotStackStream, simulate_spot_stack

    spec = SpotStackSpec(n_frames=19, frame_shape=(40, 48), n_blobs=8, beam_size=(6, 6), grid=True)
    whole = simulate_spot_stack(spec, seed=4)
    stream = SpotStackStream(spec, seed=4)
    assert stream.blobs == whole.blobs
    for frames in (1, 5, 19, 64):
        slabs = list(stream.slabs(frames))
        assert [s.start for s in slabs] == list(range(0, 19, frames))
        assert np.concatenate([s.frames for s in slabs]).tobytes() == whole.frames.tobytes()
        assert np.concatenate([s.labels for s in slabs]).tobytes() == whole.labels.tobytes()


# --- the store -------------------------------------------------------------------------------------------------

def test_tiny_builds_to_its_registered_content_sha256(dct_root):
    from aiax_bench.data.frames import stack_spec
    from aiax_bench.data.loader import load
    from aiax_bench.dct import simulate_spot_stack

    dataset = load(DATASET, profile="tiny", root=dct_root, build=False)
    assert dataset.content_sha256 == dataset.spec.content_sha256["tiny"]
    frames, grid = dataset.split("frames").test[0], dataset.split("grid").test[0]
    stack = simulate_spot_stack(stack_spec(dataset.spec, "tiny", "frames"), seed=frames.meta["seed"])
    assert frames.shape == (32, 64, 64)
    # Written frame-slab by frame-slab, the bytes of the whole-stack simulation.
    for name, expected in (("low", stack.frames), ("labels", stack.labels), ("dark", stack.dark),
                           ("direct_beam", stack.direct_beam)):
        array = frames.read(name)
        assert array.dtype == expected.dtype and array.tobytes() == expected.tobytes(), name
    assert len(frames.meta["blobs"]) == int(stack.labels.max()) == len(stack.blobs)
    assert frames.meta["blobs"][0]["voxels"] == stack.blobs[0].voxels
    # The grid split: the same blobs, other detector read-out.
    assert grid.read("labels").tobytes() == stack.labels.tobytes()
    assert not np.array_equal(grid.read("low"), stack.frames)


_BUILD = """
import sys
from pathlib import Path
from aiax_bench.data.loader import load
print(load("dct-spots@1.0", profile="tiny", root=Path(sys.argv[1])).content_sha256)
"""


def test_the_build_gives_the_same_bytes_whatever_the_thread_count(tmp_path):
    import os
    import subprocess
    import sys

    from aiax_bench.data.registry import resolve

    procs = {}
    for threads in (1, 4):  # side by side
        env = {**os.environ, **{k: str(threads) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                           "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS")}}
        procs[threads] = subprocess.Popen([sys.executable, "-c", _BUILD, str(tmp_path / f"t{threads}")], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for threads, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        assert out.split()[-1] == resolve(DATASET).content_sha256["tiny"], threads


# --- the harness -----------------------------------------------------------------------------------------------

def test_dct_threshold_runs_end_to_end_and_beats_a_global_threshold(dct_env, tracking, tmp_path):
    from mlflow.tracking import MlflowClient

    from aiax_bench.harness import run_seeds
    from aiax_bench.leaderboard import rank_entries
    from aiax_bench.leaderboard.board import load_entries
    from aiax_bench.leaderboard.submit import submit

    result = run_seeds(_request("dct-threshold", tracking, tmp_path, figures=True), [0])
    floor = run_seeds(_request(f"{__file__}:GlobalThreshold", tracking, tmp_path), [0])
    f1 = result["metrics"]["f1/blobs"]["mean"]
    assert result["task"] == "dct" and result["supervision"] == "truth"
    assert f1 > floor["metrics"]["f1/blobs"]["mean"] + 0.3, (f1, floor["metrics"]["f1/blobs"]["mean"])
    run = result["runs"][0]
    assert run["efficiency"]["frames_per_volume"] == 32
    assert run["fit_summary"]["threshold_params"]["seed_min"] > 0
    assert {"f1/blobs", "precision/blobs", "recall/blobs", "mean_iou/blobs", "pixel_jaccard/blobs",
            "count_error/blobs", "recall_small/blobs", "recall_psi_long/blobs"} <= set(run["records"][0])
    assert not any(k.startswith(("porosity", "psnr", "jaccard/")) for k in run["records"][0])

    client = MlflowClient(tracking_uri=tracking[0])
    logged = client.get_run(run["mlflow_run_id"])
    assert logged.info.status == "FINISHED" and logged.data.metrics["f1/blobs"] == pytest.approx(f1)
    figures = {a.path for a in client.list_artifacts(run["mlflow_run_id"], "figures/test-000")}
    assert figures == {"figures/test-000/blob_projection.png"}

    board = tmp_path / "board"
    board.mkdir()
    entry = json.loads(submit([result["result_path"]], name="DCT threshold", authors=["A. Author"],
                              code_url="https://example.org/code", board=board).read_text())
    assert entry["task"] == "dct" and entry["efficiency"]["frames_per_volume"] == 32
    [group] = rank_entries(load_entries(board))
    assert (group.task, group.metric, group.direction) == ("dct", "f1/blobs", "higher")
    assert "DCT" in group.title


def test_a_method_reading_the_labels_at_test_time_fails(dct_env, tracking, tmp_path):
    from aiax_bench.data.loader import load
    from aiax_bench.data.sealed import SealedFieldError, seal
    from aiax_bench.harness import run_seeds

    with pytest.raises(SealedFieldError, match="labels") as error:
        run_seeds(_request(f"{__file__}:ReadsLabels", tracking, tmp_path), [0])
    assert "\n" not in str(error.value)
    assert not (tmp_path / "results").exists()
    [sealed] = seal(load(DATASET, profile="tiny").split("frames").test[:1])
    assert sealed.read("low").shape == sealed.shape and sealed.read("dark").shape == sealed.shape[1:]
    for read in (lambda: sealed.labels, lambda: sealed.meta["blobs"], lambda: sealed.meta["spec"],
                 lambda: sealed.meta["seed"]):
        with pytest.raises(SealedFieldError):
            read()


def test_a_prediction_of_the_wrong_shape_is_refused_in_one_line(dct_env):
    from aiax_bench.data.loader import load
    from aiax_bench.evaluation import Evaluator

    evaluator = Evaluator(load(DATASET, profile="tiny"), "frames", task="dct")
    shape = evaluator.samples["test-000"].shape
    with pytest.raises(InputError, match=r"prediction for test-000 has shape \(32, 64, 63\)") as error:
        evaluator.check("test-000", np.zeros((32, 64, 63), dtype=np.int32))
    assert "\n" not in str(error.value) and error.value.field == "prediction for test-000"
    with pytest.raises(InputError, match="dtype float32"):
        evaluator.check("test-000", np.zeros(shape, dtype=np.float32))
    with pytest.raises(InputError, match="negative label"):
        evaluator.check("test-000", np.full(shape, -1, dtype=np.int32))


def test_methods_and_datasets_of_other_kinds_are_refused_before_anything_runs():
    from aiax_bench.harness import EvaluationRequest, _prepare

    with pytest.raises(InputError, match=r"does not fit foam@2\.0"):
        _prepare(EvaluationRequest(method="dct-threshold", split="100proj", dataset="foam@2.0"))
    with pytest.raises(InputError, match=r"does not fit dct-spots@1\.0"):
        _prepare(EvaluationRequest(method="threshold", split="frames", dataset=DATASET))
    # A method serving both tasks takes the dataset's.
    assert _prepare(EvaluationRequest(method="unet-seg", split="frames", dataset=DATASET)).task == "dct"
    assert _prepare(EvaluationRequest(method="unet-seg", split="100proj", dataset="foam@2.0")).task == "segment"


# --- the segmentation U-Net on frame stacks --------------------------------------------------------------------

_SMALL_UNET = {"depth": 2, "base_channels": 8, "patch_size": 32, "max_steps": 300, "val_every": 100}


def test_unet_seg_segments_spots_through_the_harness_and_beats_the_double_threshold(dct_env, tracking, tmp_path):
    """unet-seg serves task ``dct`` too: trained on tiny's 2 training stacks, it finds the held-out stacks' spots
    better than the classical pipeline fitted on the same stacks, and its checkpoint predicts the same blobs."""
    from aiax_bench.baselines.unet_seg import UNetSeg
    from aiax_bench.data.loader import load
    from aiax_bench.data.sealed import seal
    from aiax_bench.harness import run_seeds

    result = run_seeds(_request("unet-seg", tracking, tmp_path, config={**_SMALL_UNET, "variant": "2.5d"}), [0])
    classical = run_seeds(_request("dct-threshold", tracking, tmp_path), [0])
    f1, f1_classical = (r["metrics"]["f1/blobs"]["mean"] for r in (result, classical))
    print(f"tiny test blob F1: unet-seg 2.5d {f1:.3f}, dct-threshold {f1_classical:.3f}")
    assert result["task"] == "dct" and result["supervision"] == "truth"
    assert f1 > f1_classical, (f1, f1_classical)
    summary = result["runs"][0]["fit_summary"]
    chosen = summary["blob_settings"]["chosen"]
    candidates = summary["blob_settings"]["candidates"]
    assert len(candidates) == 18 and summary["blob_settings"]["val_f1"] == max(c["val_f1"] for c in candidates)
    assert {"peak_distance", "blob_min_voxels"} == set(chosen)

    [root] = (dct_env / "checkpoints" / "unet-seg").iterdir()
    method = UNetSeg.load(root)
    assert method.target_task == "dct" and method.phases == ["background", "blob"] and method.blob_settings == chosen
    [sample] = seal(load(DATASET, profile="tiny").split("frames").test[:1])
    labels = method.predict(sample)
    assert labels.dtype == np.int32 and labels.shape == sample.shape and labels.max() > 0
    np.testing.assert_array_equal(labels, method.predict(sample))


def test_the_watershed_keeps_two_overlapping_spots_apart_and_drops_specks():
    from aiax_bench.baselines.unet_seg import UNetSeg

    z, y, x = np.mgrid[:12, :24, :24]
    frames = (np.exp(-((z - 6) ** 2 + (y - 12) ** 2 + (x - 8) ** 2) / 8.0)
              + np.exp(-((z - 6) ** 2 + (y - 12) ** 2 + (x - 16) ** 2) / 8.0)).astype(np.float32)
    blob_voxels = frames > 0.2  # one connected region holding both spots
    speck = np.zeros_like(blob_voxels)
    speck[1, 1, 1] = True
    labels = UNetSeg.blob_labels(frames, blob_voxels | speck, peak_distance=2, blob_min_voxels=2)
    assert labels.max() == 2 and labels[6, 12, 8] != labels[6, 12, 16] and labels[1, 1, 1] == 0
    assert ((labels > 0) == blob_voxels).all()
    assert UNetSeg.blob_labels(frames, blob_voxels | speck, peak_distance=2, blob_min_voxels=1)[1, 1, 1] > 0
