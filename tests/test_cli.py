"""End-to-end: the CLI on the tiny foam dataset, MLflow read back with MLflow's own client."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from aiax_bench.cli import build_parser, main

REPO = Path(__file__).resolve().parents[1]


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "aiax_bench.cli", *args], capture_output=True, text=True,
                          timeout=600)


def evaluate_args(tmp_path: Path, *extra: str) -> list[str]:
    return ["evaluate", "--method", "fbp", "--split", "100proj", "--profile", "tiny",
            "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--output", str(tmp_path / "results"),
            *extra]


def test_evaluate_prints_table_writes_result_and_logs_mlflow(tiny_env, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    assert main(evaluate_args(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "fbp on foam@2.0/100proj" in out
    for label in ("PSNR (dB)", "SSIM 3D", "MSE", "vs reference", "vs truth", "vs clean", "pore volume fraction",
                  "pores per mm³"):
        assert label in out

    [result_file] = list((tmp_path / "results").rglob("*.json"))
    result = json.loads(result_file.read_text())
    prov = result["provenance"]
    assert prov["dataset"] == "foam@2.0" and len(prov["dataset_sha256"]) == 64
    assert prov["evaluator_version"] and prov["package_version"] and "cpu" in prov["hardware"]
    assert prov["seeds"] == [0] and "git_commit" in prov and prov["supervision"] == "reference"
    assert result["schema_version"] == 2 and result_file.name == f"fbp-seed0-{result['runs'][0]['mlflow_run_id']}.json"
    assert result["runs"][0]["fit_summary"]["selected"]["filter"] in ("ramp", "shepp-logan", "cosine", "hann")

    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    run = client.get_run(result["runs"][0]["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["dataset"] == "foam@2.0"
    assert run.data.params["seed"] == "0"
    assert run.data.tags["split"] == "100proj"
    psnr = result["metrics"]["psnr/truth"]["mean"]
    assert run.data.metrics["psnr/truth"] == pytest.approx(psnr)
    # FBP from 100 of 500 projections is clearly worse than the reference, but not garbage.
    assert 10 < psnr < 40
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"provenance.json", "records.json", "distributions.json", "figures", result_file.name} <= artifacts
    figures = {a.path for a in client.list_artifacts(run.info.run_id, "figures/test-000")}
    assert {"figures/test-000/slice_comparison.png", "figures/test-000/pores_3d.png"} <= figures


def test_seed_and_config_are_recorded(tiny_env, tmp_path):
    assert main(evaluate_args(tmp_path, "--seed", "3", "--config", "filter=hann")) == 0
    [result_file] = list((tmp_path / "results").rglob("*.json"))
    result = json.loads(result_file.read_text())
    assert result["config"]["filter"] == "hann"
    assert result["provenance"]["seeds"] == [3]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--method", "nosuch", "--split", "100proj"], "unknown method 'nosuch'"),
        (["--method", "fbp", "--split", "7proj"], "unknown split '7proj'"),
        (["--method", "fbp", "--split", "100proj", "--dataset", "nosuch"], "unknown dataset 'nosuch'"),
        (["--method", "fbp", "--split", "100proj", "--config", "nosuch=1"], "unknown key(s) ['nosuch']"),
        (["--method", "fbp", "--split", "reference"], "unknown split 'reference'"),
        (["--method", "fbp", "--split", "100proj", "--annotated", "5"], "annotated slices were given for method fbp"),
        (["--method", "threshold", "--split", "reference", "--annotated", "0"], "annotated slices is 0"),
    ],
)
def test_bad_names_fail_in_one_line(tiny_env, tmp_path, args, expected):
    proc = run_cli("evaluate", *args, "--profile", "tiny", "--output", str(tmp_path / "r"),
                   "--tracking-uri", f"sqlite:///{tmp_path / 'm.db'}")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "r").exists()


def test_segmentation_on_the_reference_scan_with_annotated_slices(tiny_env, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    args = evaluate_args(tmp_path, "--annotated", "5")
    args[args.index("fbp")], args[args.index("100proj")] = "threshold", "reference"
    assert main(args) == 0
    assert "Jaccard" in capsys.readouterr().out
    [result_file] = list((tmp_path / "results").rglob("*.json"))
    assert result_file.parent.name == "reference+annotated-5"
    result = json.loads(result_file.read_text())
    assert (result["task"], result["split"], result["annotated_slices"]) == ("segment", "reference", 5)
    assert result["provenance"]["annotated_slices"] == 5
    assert 0 < result["metrics"]["jaccard/mean"]["mean"] <= 1
    run = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").get_run(result["runs"][0]["mlflow_run_id"])
    assert run.data.params["annotated_slices"] == "5" and run.data.tags["annotated_slices"] == "5"


def test_unwritable_cache_dir(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("AIAX_BENCH_DATA", str(blocker / "cache"))
    assert main(evaluate_args(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "cache directory is not writable" in err and "AIAX_BENCH_DATA" in err and str(blocker) in err


def _corrupt_copy(data_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "cache"
    shutil.copytree(data_root / "foam", root / "foam")
    return root / "foam" / "2.0" / "tiny.zarr"


def test_corrupted_store_metadata(data_root, tmp_path, monkeypatch, capsys):
    store = _corrupt_copy(data_root, tmp_path)
    (store / "zarr.json").write_text("{ this is not json")
    monkeypatch.setenv("AIAX_BENCH_DATA", str(store.parents[2]))
    assert main(evaluate_args(tmp_path)) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "store is corrupted" in err and str(store) in err and "--force" in err


def test_corrupted_chunk(data_root, tmp_path, monkeypatch, capsys):
    store = _corrupt_copy(data_root, tmp_path)
    chunks = sorted((store / "samples" / "test-000" / "splits" / "100proj" / "low" / "c").rglob("*"))
    chunk = next(c for c in chunks if c.is_file())
    chunk.write_bytes(b"\x00garbage" * 10)
    monkeypatch.setenv("AIAX_BENCH_DATA", str(store.parents[2]))
    args = evaluate_args(tmp_path)
    args[args.index("fbp")] = "fbp-ramp"  # the method that reads the stored reconstruction
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be read" in err and "samples/test-000/splits/100proj/low" in err
    assert not (tmp_path / "results").exists()


def test_help_and_listings_are_readable(tiny_env):
    help_text = run_cli("--help").stdout
    for word in ("evaluate", "methods", "datasets"):
        assert word in help_text
    methods = run_cli("methods")
    assert methods.returncode == 0 and "fbp" in methods.stdout and "enhance" in methods.stdout
    listing = run_cli("datasets", "list")
    assert listing.returncode == 0 and "foam@2.0" in listing.stdout and "foam@1.0" in listing.stdout
    assert "100proj" in listing.stdout
    assert "tiny" in listing.stdout  # the tiny profile is in this cache
    splits = run_cli("datasets", "splits", "foam")
    assert "100proj" in splits.stdout and "100" in splits.stdout
    info = run_cli("datasets", "info", "foam@1.0")
    assert "data_range" in info.stdout and "64³" in info.stdout and "protocol 1.0" in info.stdout
    info = run_cli("datasets", "info", "foam")
    assert "foam@2.0" in info.stdout and "pore below 2.1 1/cm" in info.stdout and "test: 8" in info.stdout
    assert "ranks on psnr/truth" in info.stdout and "independent of the reference" in info.stdout


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    blocks = text.split("```bash\n")[1:3]
    return [b.split("\n```")[0].strip() for b in blocks]


def test_readme_opens_with_the_two_commands_and_ci_runs_the_second():
    main_job, tests = _readme_commands()
    assert "pip install torch==2.13.0" in main_job and "pip install torch==2.13.0" in tests
    assert "aiax-bench evaluate --method fbp --split 100proj" in main_job
    assert "pytest" in tests
    assert tests in (REPO / ".ci" / "run").read_text()
    # The README's evaluate call parses with the real CLI.
    evaluate = main_job.split("aiax-bench ", 1)[1]
    args = build_parser().parse_args(shlex.split(evaluate))
    assert (args.method, args.split) == ("fbp", "100proj")


def test_several_seeds_give_one_result_with_mean_and_std(tiny_env, tmp_path, capsys):
    from mlflow.tracking import MlflowClient

    from aiax_bench.leaderboard.entry import load_result

    args = evaluate_args(tmp_path)
    args[args.index("100proj")] = "dose-1/4"
    assert main([*args, "--seeds", "0", "1"]) == 0
    assert "2 seeds [0, 1] × 2 test volumes, mean ± std over seeds" in capsys.readouterr().out
    [result_file] = list((tmp_path / "results").rglob("*.json"))
    assert result_file.parent.name == "dose-1_4"
    result = json.loads(result_file.read_text())
    assert result["seeds"] == [0, 1] and [r["seed"] for r in result["runs"]] == [0, 1]
    assert result["provenance"]["seeds"] == [0, 1]
    per_seed = [np.mean([v["psnr/reference"] for v in r["records"]]) for r in result["runs"]]
    assert result["metrics"]["psnr/reference"]["mean"] == pytest.approx(sum(per_seed) / 2)
    assert result["metrics"]["psnr/reference"]["std_over_seeds"] == pytest.approx(np.std(per_seed, ddof=1))
    client = MlflowClient(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}")
    for run in result["runs"]:
        assert client.get_run(run["mlflow_run_id"]).info.status == "FINISHED"
    assert load_result(result_file).seeds == [0, 1]  # the leaderboard accepts it as it is
