"""The evaluation harness: one path from a method name to scored, logged results."""

from __future__ import annotations

import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.errors import StoreError

__all__ = ["RESULT_SCHEMA_VERSION", "EvaluationRequest", "run_evaluation", "write_json_atomic"]

RESULT_SCHEMA_VERSION = 1


@dataclass
class EvaluationRequest:
    """What to evaluate.

    Attributes
    ----------
    method : str
        Registered method name, or ``path/to/file.py:ClassName``.
    split : str
        Split name, e.g. ``100proj``.
    dataset : str
        ``name`` or ``name@version``.
    profile : str, optional
        Dataset size profile; the version's default if omitted.
    seed : int
        Seed of every random number generator the method uses.
    config : dict
        Method hyper-parameters overriding its defaults.
    tracking_uri : str, optional
        MLflow tracking URI; a sqlite store in the working directory by default.
    output_dir : Path
        Where the result JSON is written.
    """

    method: str
    split: str
    dataset: str = "foam"
    profile: str | None = None
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    tracking_uri: str | None = None
    output_dir: Path = Path("aiax-results")


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - user methods may still draw from the legacy global RNG
    torch.manual_seed(seed)


def write_json_atomic(path: Path, document: Any) -> Path:
    """Write JSON to a temporary file next to ``path`` and rename it into place."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(document, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(path, f"cannot write result ({exc.strerror or exc})",
                         "pass a writable --output directory") from None
    return path


def run_evaluation(request: EvaluationRequest, *, log=print) -> dict[str, Any]:
    """Fit (if needed), predict every test volume, score it, log it to MLflow, write the result.

    Everything that can be checked cheaply (method, dataset, split, config,
    tracking store) is checked before any data is built or any model trained.
    """
    from aiax_bench.data.loader import load
    from aiax_bench.data.registry import resolve
    from aiax_bench.evaluation import Evaluator
    from aiax_bench.methods import get_method
    from aiax_bench.provenance import code_provenance, hardware, peak_memory_mb
    from aiax_bench.tracking import mlflow_run

    method_cls = get_method(request.method)
    spec = resolve(request.dataset)
    spec.check_split(request.split)
    profile = request.profile or spec.default_profile
    spec.check_profile(profile)
    method = method_cls(request.config)

    dataset = load(spec.ref, profile=profile)
    split = dataset.split(request.split)
    evaluator = Evaluator(dataset, request.split)
    started = datetime.now(UTC)
    provenance = {**dataset.provenance(), "split": request.split,
                  "evaluator_version": evaluator.version, **code_provenance(), "seed": request.seed,
                  "hardware": hardware()}
    tags = {"method": method_cls.name, "dataset": spec.ref, "split": request.split, "profile": profile,
            "evaluator_version": evaluator.version, "git_commit": provenance["git_commit"]}
    params = {"method": method_cls.name, "config": method.config_dict(), "dataset": spec.ref,
              "profile": profile, "split": request.split, "seed": request.seed,
              "dataset_sha256": dataset.content_sha256, "dataset_source": dataset.source,
              "package_version": provenance["package_version"], "git_dirty": provenance["git_dirty"]}
    run_name = f"{method_cls.name}-{spec.ref}-{request.split}-seed{request.seed}"
    with mlflow_run(request.tracking_uri, run_name=run_name, tags=tags, params=params) as mlflow:
        seed_everything(request.seed)
        t0 = time.perf_counter()
        method.fit(split.train, split.val, seed=request.seed, tracker=mlflow)
        train_seconds = time.perf_counter() - t0
        predictions, infer_seconds = {}, []
        for sample in split.test:
            t0 = time.perf_counter()
            predictions[sample.id] = method.predict(sample)
            infer_seconds.append(time.perf_counter() - t0)
        scores = evaluator.evaluate(predictions)
        result = {
            "schema_version": RESULT_SCHEMA_VERSION,
            "method": method_cls.name,
            "task": method_cls.task,
            "config": method.config_dict(),
            "dataset": spec.ref,
            "profile": profile,
            "split": request.split,
            "created": started.isoformat(timespec="seconds"),
            "metrics": scores["aggregate"],
            "records": scores["records"],
            "efficiency": {
                "train_seconds": round(train_seconds, 3),
                "inference_seconds_per_volume": round(float(np.mean(infer_seconds)), 3),
                "parameters": method.parameter_count(),
                "peak_memory_mb": peak_memory_mb(),
            },
            "provenance": provenance,
        }
        for key, agg in scores["aggregate"].items():
            mlflow.log_metric(key, agg["mean"])
        for key, value in result["efficiency"].items():
            mlflow.log_metric(f"efficiency/{key}", value)
        mlflow.log_dict(provenance, "provenance.json")
        mlflow.log_dict({"records": scores["records"]}, "records.json")
        stamp = started.strftime("%Y%m%dT%H%M%S")
        out = request.output_dir / spec.name / request.split / f"{method_cls.name}-seed{request.seed}-{stamp}.json"
        result["mlflow_run_id"] = mlflow.active_run().info.run_id
        write_json_atomic(out, result)
        mlflow.log_artifact(str(out))
        result["result_path"] = str(out)
    print(f"result written to {out}", file=sys.stderr)
    return result
