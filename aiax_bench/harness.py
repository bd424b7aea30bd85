"""The evaluation harness: one path from a method name to scored, logged results."""

from __future__ import annotations

import inspect
import json
import os
import random
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from aiax_bench.data.annotation import AnnotatedSample, check_annotated
from aiax_bench.data.sealed import seal
from aiax_bench.errors import InputError, StoreError

__all__ = ["RESULT_SCHEMA_VERSION", "EvaluationRequest", "run_evaluation", "write_json_atomic"]

RESULT_SCHEMA_VERSION = 1
#: Supervision protocols whose training and validation samples are sealed like the test ones.
SEALED_SUPERVISION = ("self", "none")


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
    annotated_slices : int, optional
        Segmentation protocol ``annotated-k``: training and validation volumes
        carry labels on this many slices only (see :mod:`aiax_bench.data.annotation`).
    """

    method: str
    split: str
    dataset: str = "foam"
    profile: str | None = None
    seed: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    tracking_uri: str | None = None
    output_dir: Path = Path("aiax-results")
    annotated_slices: int | None = None


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


def run_evaluation(request: EvaluationRequest, *, write: bool = True) -> dict[str, Any]:
    """Fit (if needed), predict every test volume, score it, log it to MLflow, write the result.

    Everything that can be checked cheaply (method, dataset, split, config,
    tracking store) is checked before any data is built or any model trained.
    """
    from aiax_bench.data.loader import load
    from aiax_bench.data.registry import resolve
    from aiax_bench.evaluation import Evaluator
    from aiax_bench.methods import get_method
    from aiax_bench.paths import data_dir
    from aiax_bench.provenance import code_provenance, hardware, peak_memory_mb
    from aiax_bench.tracking import mlflow_run

    method_cls = get_method(request.method)
    spec = resolve(request.dataset)
    segment = method_cls.task == "segment"
    spec.check_split(request.split, allow_reference=segment)
    profile = request.profile or spec.default_profile
    spec.check_profile(profile)
    annotated = check_annotated(request.annotated_slices)
    if annotated is not None and not segment:
        raise InputError("annotated slices", f"were given for method {method_cls.name} (task {method_cls.task!r})",
                         "no --annotated: the annotated-k protocol is for segmentation methods (task 'segment')")
    method = method_cls(request.config)

    dataset = load(spec.ref, profile=profile)
    split = dataset.split(request.split)
    evaluator = Evaluator(dataset, request.split, task=method_cls.task)
    train, val = split.train, split.val
    supervision = method.supervision
    if supervision in SEALED_SUPERVISION:
        # A method that claims to learn without clean data is held to it: its training data is sealed too.
        train, val = seal(train), seal(val)
    if annotated is not None:
        train, val = ([AnnotatedSample(s, annotated) for s in part] for part in (train, val))
    started = datetime.now(UTC)
    provenance = {**dataset.provenance(), "split": request.split, "annotated_slices": annotated,
                  "supervision": supervision,
                  "evaluator_version": evaluator.version, **code_provenance(), "seed": request.seed,
                  "hardware": hardware()}
    tags = {"method": method_cls.name, "dataset": spec.ref, "split": request.split, "profile": profile,
            "supervision": supervision,
            "evaluator_version": evaluator.version, "git_commit": provenance["git_commit"]}
    if annotated is not None:
        tags["annotated_slices"] = str(annotated)
    params = {"method": method_cls.name, "config": method.config_dict(), "dataset": spec.ref,
              "profile": profile, "split": request.split, "annotated_slices": annotated, "seed": request.seed,
              "dataset_sha256": dataset.content_sha256, "dataset_source": dataset.source,
              "package_version": provenance["package_version"], "git_dirty": provenance["git_dirty"]}
    run_name = f"{method_cls.name}-{spec.ref}-{split_label(request)}-seed{request.seed}"
    with mlflow_run(request.tracking_uri, run_name=run_name, tags=tags, params=params) as mlflow:
        seed_everything(request.seed)
        t0 = time.perf_counter()
        fit_kwargs: dict[str, Any] = {"seed": request.seed, "tracker": mlflow}
        if "context" in inspect.signature(method.fit).parameters:
            fit_kwargs["context"] = {"dataset": spec.ref, "profile": profile, "split": request.split,
                                     "annotated_slices": annotated,
                                     "dataset_sha256": dataset.content_sha256,
                                     "checkpoint_root": data_dir() / "checkpoints"}
        method.fit(train, val, **fit_kwargs)
        train_seconds = time.perf_counter() - t0
        predictions, infer_seconds = {}, []
        for sample in seal(split.test):
            # The sealed view: reading the truth raises, the run fails (exit status 2) and nothing is written.
            t0 = time.perf_counter()
            predictions[sample.id] = method.predict(sample)
            infer_seconds.append(time.perf_counter() - t0)
        scores = evaluator.evaluate(predictions)
        # Out-of-distribution samples (another porosity or pore size) are scored in a group of their own:
        # they say whether a method generalises, not how it ranks.
        ood = split.ood_test
        ood_scores = None
        if ood:
            ood_evaluator = Evaluator(dataset, request.split, part="ood-test", task=method_cls.task)
            ood_scores = ood_evaluator.evaluate({s.id: method.predict(s) for s in seal(ood)})
        result = {
            "schema_version": RESULT_SCHEMA_VERSION,
            "method": method_cls.name,
            "task": method_cls.task,
            "config": method.config_dict(),
            "dataset": spec.ref,
            "profile": profile,
            "split": request.split,
            "annotated_slices": annotated,
            "supervision": supervision,
            "created": started.isoformat(timespec="seconds"),
            "metrics": scores["aggregate"],
            "records": scores["records"],
            "ood": None if ood_scores is None else {"metrics": ood_scores["aggregate"],
                                                    "records": ood_scores["records"]},
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
        for key, agg in (ood_scores or {}).get("aggregate", {}).items():
            mlflow.log_metric(f"ood/{key}", agg["mean"])
        for key, value in result["efficiency"].items():
            mlflow.log_metric(f"efficiency/{key}", value)
        mlflow.log_dict(provenance, "provenance.json")
        mlflow.log_dict({"records": scores["records"]}, "records.json")
        if scores.get("distributions"):
            mlflow.log_dict(scores["distributions"], "distributions.json")
        _log_figures(mlflow, evaluator, split.test[0], predictions[split.test[0].id], scores)
        result["mlflow_run_id"] = mlflow.active_run().info.run_id
        if write:
            out = result_path(request, method_cls.name, started, f"seed{request.seed}")
            write_json_atomic(out, result)
            mlflow.log_artifact(str(out))
            result["result_path"] = str(out)
    return result


def _log_figures(mlflow, evaluator, sample, prediction, scores) -> None:
    """Slice comparison, pore-size overlay and 3D pore rendering of the first test volume, as run artifacts."""
    from aiax_bench.evaluation.figures import write_figures

    record = scores["records"][0]
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_figures(sample, prediction, tmp, data_range=evaluator.data_range,
                              mask=evaluator.mask(sample), threshold=record.get("segmentation_threshold"),
                              distributions=(scores.get("distributions") or {}).get(sample.id),
                              task=evaluator.task)
        for path in paths.values():
            mlflow.log_artifact(str(path), artifact_path=f"figures/{sample.id}")


def result_path(request: EvaluationRequest, method: str, started: datetime, tag: str) -> Path:
    """``<output>/<dataset>/<split>/<method>-<tag>-<time>.json`` (split names may hold '/')."""
    stamp = started.strftime("%Y%m%dT%H%M%S")
    name = resolve_name(request.dataset)
    split = split_label(request).replace("/", "_")
    return request.output_dir / name / split / f"{method}-{tag}-{stamp}.json"


def split_label(request: EvaluationRequest) -> str:
    """The split with its segmentation protocol, e.g. ``reference+annotated-5``."""
    k = request.annotated_slices
    return request.split if k is None else f"{request.split}+annotated-{k}"


def resolve_name(ref: str) -> str:
    return ref.partition("@")[0]


def run_seeds(request: EvaluationRequest, seeds: list[int]) -> dict[str, Any]:
    """Evaluate once per seed (one MLflow run each) and write one result with mean ± std over seeds.

    With a single seed the result is that seed's result. With several, per-seed
    runs are kept under ``runs`` and ``metrics`` holds, for every metric, the
    mean and standard deviation over seeds of the per-seed means.
    """
    from dataclasses import replace

    if not seeds:
        raise InputError("--seeds", "is empty", "pass at least one seed")
    if len(set(seeds)) != len(seeds):
        raise InputError("--seeds", f"repeats a seed ({seeds})", "pass distinct seeds")
    if len(seeds) == 1:
        return run_evaluation(replace(request, seed=seeds[0]))
    started = datetime.now(UTC)
    results = [run_evaluation(replace(request, seed=seed), write=False) for seed in seeds]
    first = results[0]
    metrics = {}
    for key in first["metrics"]:
        per_seed = np.array([r["metrics"][key]["mean"] for r in results], dtype=np.float64)
        metrics[key] = {"mean": float(per_seed.mean()), "std": float(per_seed.std()), "n": len(seeds)}
    efficiency = {key: float(np.mean([r["efficiency"][key] for r in results])) for key in first["efficiency"]}
    provenance = {k: v for k, v in first["provenance"].items() if k != "seed"}
    provenance["seeds"] = list(seeds)
    combined = {
        **{k: first[k] for k in ("schema_version", "method", "task", "config", "dataset", "profile", "split",
                                 "annotated_slices")},
        "created": started.isoformat(timespec="seconds"),
        "seeds": list(seeds),
        "runs": [{"seed": r["provenance"]["seed"], "created": r["created"], "records": r["records"],
                  "metrics": r["metrics"], "ood": r["ood"], "efficiency": r["efficiency"],
                  "mlflow_run_id": r["mlflow_run_id"]}
                 for r in results],
        "metrics": metrics,
        "efficiency": efficiency,
        "provenance": provenance,
    }
    out = result_path(request, first["method"], started, "seeds" + "-".join(map(str, seeds)))
    write_json_atomic(out, combined)
    combined["result_path"] = str(out)
    return combined
