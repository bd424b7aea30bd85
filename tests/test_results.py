"""The result contract, result file names, and ``--config`` values typed before anything runs."""

from __future__ import annotations

import numpy as np
import pytest

from aiax_bench.errors import InputError, StoreError
from aiax_bench.harness import EvaluationRequest, result_path
from aiax_bench.jsonio import write_new_file
from aiax_bench.methods import get_method
from aiax_bench.results import Result, RunResult, aggregate_runs, sample_std


def _run(seed: int, values: list[float]) -> RunResult:
    records = [{"sample_id": f"test-{k:03d}", "psnr/truth": v, "evaluator_version": "3.0"}
               for k, v in enumerate(values)]
    return RunResult(seed=seed, created="2026-01-01T00:00:00+00:00", mlflow_run_id=f"r{seed}", records=records,
                     efficiency={"train_seconds": 1.0, "inference_seconds_per_volume": 0.1, "parameters": 0,
                                 "peak_memory_mb": None})


def test_aggregates_use_sample_standard_deviations_everywhere():
    table = np.array([[20.0, 22.0, 27.0], [21.0, 25.0, 26.0]])
    agg = aggregate_runs([{"records": _run(s, list(row)).records} for s, row in enumerate(table)])["psnr/truth"]
    assert agg["mean"] == pytest.approx(table.mean())
    assert agg["std_over_seeds"] == pytest.approx(table.mean(axis=1).std(ddof=1))
    assert agg["std_over_volumes"] == pytest.approx(table.mean(axis=0).std(ddof=1))
    assert (agg["n_seeds"], agg["n_volumes"]) == (2, 3)
    assert sample_std([1.0]) is None
    one = aggregate_runs([{"records": _run(0, [20.0]).records}])["psnr/truth"]
    assert one["std_over_seeds"] is None and one["std_over_volumes"] is None


def test_result_round_trip_derives_metrics_and_refuses_edits():
    result = Result(method="fbp", task="enhance", config={}, dataset="foam@2.0", profile="tiny", split="100proj",
                    annotated_slices=None, supervision="none", created="2026-01-01T00:00:00+00:00",
                    runs=[_run(0, [20.0, 21.0]), _run(1, [22.0, 23.0])], provenance={})
    doc = result.to_dict()
    assert doc["seeds"] == [0, 1] and doc["metrics"]["psnr/truth"]["mean"] == 21.5
    assert Result.from_dict(doc).to_dict() == doc
    doc["metrics"]["psnr/truth"]["mean"] = 30.0
    with pytest.raises(InputError) as exc:
        Result.from_dict(doc, where="r.json")
    assert exc.value.field == "r.json: field metrics.psnr/truth.mean"


def test_result_files_are_named_by_run_id_and_never_overwritten(tmp_path):
    request = EvaluationRequest(method="fbp", split="dose-1/16", dataset="foam@2.0", output_dir=tmp_path)
    a = result_path(request, "fbp", [0], "aaaa1111")
    b = result_path(request, "fbp", [0], "bbbb2222")
    assert a != b and a.name == "fbp-seed0-aaaa1111.json" and a.parent == tmp_path / "foam" / "dose-1_16"
    assert result_path(request, "fbp", [0, 1, 2], "cccc").name == "fbp-seeds0-1-2-cccc.json"
    write_new_file(a, {"x": 1}, exists_hint="result files are never overwritten")
    with pytest.raises(StoreError, match="never overwritten"):
        write_new_file(a, {"x": 2}, exists_hint="result files are never overwritten")
    assert a.read_text().strip().endswith("}") and '"x": 1' in a.read_text()


@pytest.mark.parametrize(("method", "config", "expected"), [
    ("msdnet", {"learning_rate": "1e-3"}, {"learning_rate": 1e-3}),
    ("msdnet", {"max_steps": "20", "max_seconds": "none"}, {"max_steps": 20, "max_seconds": None}),
    ("msdnet", {"max_steps": 20.0}, {"max_steps": 20}),
    ("fbp", {"cutoff": 1, "filter": "hann"}, {"cutoff": 1.0, "filter": "hann"}),
    ("threshold", {"opening": "true"}, {"opening": True}),
])
def test_config_values_are_coerced_to_the_field_types(method, config, expected):
    made = get_method(method).make_config(config)
    for key, value in expected.items():
        got = getattr(made, key)
        assert got == value and type(got) is type(value), (key, got)


@pytest.mark.parametrize(("method", "config", "key", "expected"), [
    ("msdnet", {"max_steps": "abc"}, "max_steps", "an integer"),
    ("unet", {"patch_size": 16.5}, "patch_size", "an integer"),
    ("unet", {"slices": "five"}, "slices", "an integer"),
    ("msdnet", {"learning_rate": "fast"}, "learning_rate", "a number"),
    ("threshold", {"opening": "maybe"}, "opening", "true or false"),
])
def test_wrong_config_types_fail_in_one_line_naming_key_value_and_type(method, config, key, expected):
    with pytest.raises(InputError) as exc:
        get_method(method).make_config(config)
    message = str(exc.value)
    assert exc.value.field.endswith(f"key {key}") and repr(config[key]) in message and expected in message
    assert "\n" not in message


def test_bad_config_fails_before_any_data_or_run(tmp_path, monkeypatch, capsys):
    """Checked before the dataset is loaded or an MLflow store touched: nothing is created."""
    from aiax_bench.cli import main

    monkeypatch.setenv("AIAX_BENCH_DATA", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    code = main(["evaluate", "--method", "msdnet", "--split", "100proj", "--config", "max_steps=abc",
                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}"])
    assert code == 2 and "key max_steps" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "mlflow.db").exists()
