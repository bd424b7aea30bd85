"""The mixed-degradation protocol (``--train-splits``): one training on several splits, scored on any split."""

from __future__ import annotations

import json
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
from _board import DATASET, fake_result, write

from aiax_bench.cli import main
from aiax_bench.errors import InputError
from aiax_bench.harness import EvaluationRequest, _prepare, _training_samples, _training_splits, run_evaluation
from aiax_bench.methods import Method

MIXTURE = ["50proj", "100proj", "250proj"]
#: The smallest U-Net that trains (see test_method_contract.TINY).
TINY_UNET = {"max_steps": 5, "val_every": 5, "depth": 1, "base_channels": 4, "patch_size": 16, "batch_size": 2,
             "val_slice_step": 32, "max_seconds": None, "progress": False}


class Recorder(Method):
    """Learns nothing; records which samples (id, split) ``fit`` and ``predict`` get."""

    name = "recorder"
    supervision = "reference"
    seen: ClassVar[dict[str, list[tuple[str, str]]]] = {}

    def fit(self, train, val, *, seed, budget=None, tracker=None, context=None) -> None:
        Recorder.seen.update(train=[(s.id, s.split) for s in train], val=[(s.id, s.split) for s in val],
                             predict=[], context=[context])

    def predict(self, sample) -> np.ndarray:
        Recorder.seen["predict"].append((sample.id, sample.split))
        return np.asarray(sample.low, dtype=np.float32)


@pytest.fixture
def recorder(monkeypatch):
    import aiax_bench.methods as methods

    real = methods.get_method
    monkeypatch.setattr(methods, "get_method", lambda name: Recorder if name == "recorder" else real(name))
    Recorder.seen = {}
    return Recorder


def _request(tmp_path: Path, **changes) -> EvaluationRequest:
    fields = {"method": "recorder", "split": "150proj", "dataset": DATASET, "profile": "tiny",
              "tracking_uri": f"sqlite:///{tmp_path / 'mlflow.db'}", "output_dir": tmp_path / "results",
              "figures": False, "train_splits": MIXTURE}
    return EvaluationRequest(**{**fields, **changes})


# ------------------------------------------------------------------------------------------- samples
def test_the_mixture_trains_on_every_split_in_equal_shares_and_tests_on_the_evaluated_split(
        tiny_env, tiny_v2, recorder, tmp_path):
    from mlflow.tracking import MlflowClient

    result = run_evaluation(_request(tmp_path))
    seen = Recorder.seen
    train_ids = [s.id for s in tiny_v2.split("150proj").train]
    val_ids = [s.id for s in tiny_v2.split("150proj").val]
    # Each split's own low-quality input of the same volumes, concatenated in the order given.
    assert seen["train"] == [(sid, split) for split in MIXTURE for sid in train_ids]
    assert seen["val"] == [(sid, split) for split in MIXTURE for sid in val_ids]
    shares = {split: sum(1 for _, s in seen["train"] if s == split) for split in MIXTURE}
    assert set(shares.values()) == {len(train_ids)}
    # The test (and out-of-distribution) volumes are the evaluated split's, and only those are scored.
    assert {split for _, split in seen["predict"]} == {"150proj"}
    assert [r["sample_id"] for r in result["runs"][0]["records"]] == ["test-000", "test-001"]
    [context] = seen["context"]
    assert context.split == "150proj" and context.train_splits == tuple(MIXTURE)

    # The result, its provenance, its file and the MLflow run all record the protocol.
    assert result["split"] == "150proj" and result["train_splits"] == MIXTURE
    assert result["provenance"]["train_splits"] == MIXTURE
    path = Path(result["result_path"])
    assert path.parent.name == "150proj+mixed-50proj,100proj,250proj"
    assert json.loads(path.read_text())["train_splits"] == MIXTURE
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(result["runs"][0]["mlflow_run_id"])
    assert run.data.tags["train_splits"] == "50proj,100proj,250proj" and run.data.tags["split"] == "150proj"
    assert json.loads(run.data.params["train_splits"]) == MIXTURE


def test_without_a_mixture_nothing_changes(tiny_env, recorder, tmp_path):
    result = run_evaluation(_request(tmp_path, train_splits=None))
    assert {split for _, split in Recorder.seen["train"] + Recorder.seen["val"]} == {"150proj"}
    assert Recorder.seen["context"][0].train_splits is None
    assert result["train_splits"] is None and Path(result["result_path"]).parent.name == "150proj"
    # Training on the evaluated split alone is that same, ordinary protocol.
    assert _prepare(_request(tmp_path, train_splits=["150proj"])).train_splits is None


def test_sealed_methods_get_the_mixture_sealed(tiny_v2, tmp_path):
    from aiax_bench.data.sealed import SealedSample

    class SelfSupervised(Recorder):
        supervision = "self"

    prepared = _prepare(_request(tmp_path, method="fbp", train_splits=["50proj", "dose-1/16"]))
    train, val = _training_samples(SelfSupervised(), _training_splits(prepared, tiny_v2, "150proj"), None)
    assert all(isinstance(s, SealedSample) for s in train + val)
    assert [s.split for s in train] == ["50proj", "dose-1/16"]


# ---------------------------------------------------------------------------------------- checkpoints
@pytest.mark.usefixtures("one_torch_thread")
def test_one_mixed_training_serves_every_evaluated_split(tiny_env, tmp_path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")

    def checkpoints() -> set[Path]:
        return {p.parent for p in (tiny_env / "checkpoints").rglob("metadata.json")}

    def evaluate(split: str, train_splits: list[str] | None) -> tuple[set[Path], str | None, dict]:
        """The checkpoints the evaluation wrote, the one it reused, and its result."""
        before = checkpoints()
        result = run_evaluation(_request(tmp_path, method="unet", split=split, config=TINY_UNET,
                                         train_splits=train_splits))
        tags = client.get_run(result["runs"][0]["mlflow_run_id"]).data.tags
        return checkpoints() - before, tags.get("checkpoint") if tags.get("checkpoint_reused") else None, result

    [trained], reused, _ = evaluate("100proj", ["50proj", "250proj"])
    assert reused is None
    written, reused, second = evaluate("150proj", ["50proj", "250proj"])
    assert written == set() and reused == str(trained)
    metadata = json.loads((trained / "metadata.json").read_text())
    assert metadata["training"]["train_splits"] == ["50proj", "250proj"] and metadata["training"]["split"] is None
    # A reused checkpoint still reports the training time it cost.
    assert second["runs"][0]["efficiency"]["train_seconds"] > 0
    # Another mixture (the order is what the method saw), or the evaluated split alone, is another training.
    for split, mixture in (("150proj", ["250proj", "50proj"]), ("150proj", None)):
        written, reused, _ = evaluate(split, mixture)
        assert len(written) == 1 and reused is None and trained not in written


# ---------------------------------------------------------------------------------------------- input
@pytest.mark.parametrize(("train_splits", "words"), [
    (["50proj", "no-such-split"], "names 'no-such-split', not a split of foam@2.0"),
    (["50proj", "100proj", "50proj"], "names 50proj more than once"),
    (["reference", "50proj"], "names 'reference'"),
    (["50proj", ""], "has an empty or non-text name"),
    ([], "is []"),
])
def test_bad_mixtures_are_refused_in_one_line(tiny_env, tmp_path, train_splits, words):
    with pytest.raises(InputError) as excinfo:
        _prepare(_request(tmp_path, method="fbp", train_splits=train_splits))
    assert excinfo.value.field == "--train-splits" and words in str(excinfo.value)
    assert "\n" not in str(excinfo.value)


def test_a_mixture_with_annotated_slices_is_refused(tiny_env, tmp_path):
    with pytest.raises(InputError) as excinfo:
        _prepare(_request(tmp_path, method="unet-seg", split="reference", annotated_slices=5))
    assert excinfo.value.field == "--train-splits" and "--annotated" in str(excinfo.value)


def test_cli_takes_comma_separated_train_splits(tiny_env, tmp_path, capsys):
    common = ["--split", "100proj", "--profile", "tiny", "--dataset", DATASET]
    assert main(["evaluate", "--method", "fbp", *common, "--train-splits", "50proj,nope",
                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--output", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("aiax-bench: error: --train-splits names 'nope'") and "\n" not in err
    assert main(["train", "--method", "unet", *common, "--train-splits", "50proj,reference"]) == 2
    assert "--train-splits names 'reference'" in capsys.readouterr().err
    from aiax_bench.cli import build_parser

    args = build_parser().parse_args(["train", "--method", "unet", *common, "--train-splits", "50proj, dose-1/16"])
    from aiax_bench.cli import split_names

    assert split_names(args.train_splits) == ["50proj", "dose-1/16"]


def test_frame_stacks_and_measured_scans_take_a_mixture():
    """Their samples hold every split's input too: the protocol needs nothing of the recipe."""
    from aiax_bench.data.registry import resolve

    for ref, method in (("dct-spots@1.0", "dct-threshold"), ("htc2022@1.0", "tv")):
        spec = resolve(ref)
        splits = list(spec.splits)[:2]
        assert _prepare(EvaluationRequest(method=method, dataset=ref, split=splits[0],
                                          train_splits=splits)).train_splits == tuple(splits)


# ---------------------------------------------------------------------------------------- leaderboard


def _mixed_result(train_splits: list[str] | None, psnr: float) -> dict:
    doc = fake_result(psnr=[psnr, psnr + 1.0], method="unet", train_splits=train_splits)
    return {**doc, "train_splits": train_splits}


def test_mixed_entries_record_and_compete_in_their_own_protocol(board, tmp_path, monkeypatch):
    from aiax_bench.leaderboard import rank_entries
    from aiax_bench.leaderboard.board import load_entries, load_entry
    from aiax_bench.leaderboard.schema import validate_entry
    from aiax_bench.leaderboard.submit import submit
    from aiax_bench.leaderboard.verify import verify_entry

    paths = [submit([write(tmp_path / f"r{i}.json", _mixed_result(mix, 25.0 + i))], name=f"U-Net {i}",
                    authors=["a"], code_url="https://e.org", board=board)
             for i, mix in enumerate((None, MIXTURE, ["50proj", "250proj"]))]
    assert [p.stem for p in paths] == ["foam-2.0--tiny--100proj--u-net-0",
                                       "foam-2.0--tiny--100proj-mixed-50proj-100proj-250proj--u-net-1",
                                       "foam-2.0--tiny--100proj-mixed-50proj-250proj--u-net-2"]
    entries = [load_entry(p) for p in paths]
    assert [e.get("train_splits") for e in entries] == [None, MIXTURE, ["50proj", "250proj"]]
    assert entries[1]["provenance"]["train_splits"] == MIXTURE
    # One group per protocol: a network trained on a mixture never ranks against one trained on the split alone.
    groups = rank_entries(load_entries(board))
    assert [(g.split, [r.entry["name"] for r in g.rows]) for g in groups] == [
        ("100proj", ["U-Net 0"]), ("100proj+mixed-50proj,100proj,250proj", ["U-Net 1"]),
        ("100proj+mixed-50proj,250proj", ["U-Net 2"])]
    assert "100proj+mixed-50proj,100proj,250proj" in groups[1].title
    assert groups[1].saving == groups[0].saving + "; trained on 50proj, 100proj, 250proj in equal shares"
    only = rank_entries(load_entries(board), split="100proj+mixed-50proj,250proj")
    assert [g.rows[0].entry["name"] for g in only] == ["U-Net 2"]

    # Seeds of different protocols are never combined into one entry.
    with pytest.raises(InputError, match="field train_splits"):
        submit([write(tmp_path / "a.json", _mixed_result(MIXTURE, 25.0)),
                write(tmp_path / "b.json", _mixed_result(None, 25.0))], name="Both", authors=["a"],
               code_url="https://e.org", board=board)
    # A verification re-runs the same mixture.
    monkeypatch.setattr("aiax_bench.provenance.code_provenance", lambda: {
        "package_version": "0.1.0", "git_commit": "f" * 40, "git_dirty": False, "command": "aiax-bench"})
    calls = []

    def runner(request):
        calls.append(request)
        return _mixed_result(request.train_splits, 26.0)

    assert verify_entry(paths[1].stem, board=board, yes_run_code=True, runner=runner,
                        log=lambda _: None)["status"] == "verified"
    assert [(c.split, c.train_splits) for c in calls] == [("100proj", MIXTURE)]

    # The schema and the registry check the field.
    entry = entries[1]
    for change, field in (({"train_splits": ["50proj", "nope"]}, "field train_splits[1]"),
                          ({"train_splits": ["reference"]}, "field train_splits[0]"),
                          ({"train_splits": ["100proj"]}, "field train_splits"),
                          ({"train_splits": "50proj"}, "field train_splits"),
                          ({"train_splits": []}, "field train_splits"),
                          ({"train_splits": ["50proj", "50proj"]}, "field train_splits")):
        doc = {**entry, **change, "provenance": {**entry["provenance"], **change}}
        with pytest.raises(InputError) as excinfo:
            validate_entry(doc, where="x.json")
        assert excinfo.value.field.endswith(field), (change, excinfo.value)
    with pytest.raises(InputError) as excinfo:
        validate_entry({**entry, "provenance": {**entry["provenance"], "train_splits": None}}, where="x.json")
    assert excinfo.value.field == "x.json: field provenance.train_splits"
