"""The sealed test set: methods see what an instrument gives; reading the truth fails the run."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from aiax_bench.data.sealed import SEALED_ARRAYS, SealedFieldError, SealedSample
from aiax_bench.errors import InputError

CHEATS = {
    "truth": 'return sample.read("truth")',
    "labels": "return np.where(np.asarray(sample.labels) == 2, 0.0, 4.2).astype(np.float32)",
    "high": "return np.asarray(sample.high[...])",
    "clean": 'return np.asarray(getattr(sample, "clean")[...])',
    "meta['phantom']": 'sample.meta["phantom"]; return sample.read("low")',
}


def test_sealed_view_exposes_the_scan_only(tiny_v2):
    sample = tiny_v2.split("100proj").test[0]
    view = SealedSample(sample)
    np.testing.assert_array_equal(view.read("low"), sample.read("low"))
    np.testing.assert_array_equal(view.read("sinogram"), sample.read("sinogram"))
    np.testing.assert_array_equal(view.angles, sample.angles)
    assert view.shape == sample.shape and view.id == sample.id
    assert view.meta["voxel_size_um"] == 20.0 and set(view.meta) <= {"part", "voxel_size_um", "photons", "phases"}
    assert view.geometry["beam"] == "parallel" and view.geometry["n_angles"] == 100
    for name in SEALED_ARRAYS:
        with pytest.raises(SealedFieldError, match=f"field '{name}' of sample {sample.id}"):
            getattr(view, name)
        with pytest.raises(SealedFieldError, match=name):
            view.read(name)
    for key in ("phantom", "seed", "attenuation_per_cm", "sha256"):
        with pytest.raises(SealedFieldError, match=rf"meta\['{key}'\]"):
            view.meta[key]
    with pytest.raises(AttributeError):
        view._group  # noqa: B018  # the view holds no store to reach the truth through
    with pytest.raises(AttributeError):
        view.id = "other"
    assert isinstance(SealedFieldError("truth", "x"), InputError)


def _cheat_file(tmp_path: Path, field: str, body: str, *, supervision: str = "none", fit: str = "pass") -> Path:
    path = tmp_path / "cheat.py"
    path.write_text(textwrap.dedent(f'''
        import numpy as np
        from aiax_bench.methods import Method

        class Cheat(Method):
            """Reads {field}."""
            name = "cheat"
            supervision = "{supervision}"

            def fit(self, train, val, *, seed, budget=None, tracker=None, context=None):
                {fit}

            def predict(self, sample):
                {body}
    '''))
    return path


def _evaluate(path: Path, tmp_path: Path, monkeypatch, capsys) -> tuple[int, str]:
    """``aiax-bench evaluate`` in this process (the CLI's own entry point): exit status and stderr."""
    from aiax_bench.cli import main

    code = main(["evaluate", "--method", f"{path}:Cheat", "--split", "100proj", "--profile", "tiny",
                 "--tracking-uri", f"sqlite:///{tmp_path / 'mlflow.db'}", "--output", str(tmp_path / "results")])
    return code, capsys.readouterr().err


def _runs(tmp_path: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    return [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]


@pytest.mark.parametrize("field", list(CHEATS))
def test_a_method_reading_the_truth_is_refused(field, tiny_env, tmp_path, monkeypatch, capsys):
    code, err = _evaluate(_cheat_file(tmp_path, field, CHEATS[field]), tmp_path, monkeypatch, capsys)
    assert code == 2, err
    (line,) = err.strip().splitlines()
    assert "is sealed" in line and field.split("[")[0] in line
    assert not list((tmp_path / "results").rglob("*.json")), "a refused run left a result"
    runs = _runs(tmp_path)
    assert runs and all(r.info.status == "FAILED" for r in runs)


def test_self_supervised_training_is_sealed_too(tiny_env, tmp_path, monkeypatch, capsys):
    path = _cheat_file(tmp_path, "high in fit", 'return sample.read("low")', supervision="self",
                       fit="train[0].read('high')")
    code, err = _evaluate(path, tmp_path, monkeypatch, capsys)
    assert code == 2 and "field 'high' of sample train-000 is sealed" in err


def test_an_honest_method_is_scored(tiny_env, tmp_path, monkeypatch, capsys):
    code, err = _evaluate(_cheat_file(tmp_path, "low", 'return sample.read("low")'), tmp_path, monkeypatch, capsys)
    assert code == 0, err
    (result,) = (tmp_path / "results").rglob("*.json")
    doc = json.loads(result.read_text())
    assert doc["dataset"] == "foam@2.0" and doc["supervision"] == "none"
    assert {"psnr/truth", "psnr/clean", "psnr/reference"} <= set(doc["metrics"])
    # The out-of-distribution sample is scored too, in a group of its own.
    assert [r["sample_id"] for r in doc["runs"][0]["ood_records"]] == ["ood-test-000"]
    assert "psnr/truth" in doc["ood_metrics"]
    assert [r.info.status for r in _runs(tmp_path)] == ["FINISHED"]
