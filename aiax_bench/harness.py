"""The evaluation harness: one path from a method name to scored, logged results."""

from __future__ import annotations

import hashlib
import json
import random
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from aiax_bench.data.annotation import AnnotatedSample, check_annotated
from aiax_bench.data.sealed import seal
from aiax_bench.errors import InputError, UnknownNameError
from aiax_bench.jsonio import write_new_file
from aiax_bench.methods.base import Budget, FitContext
from aiax_bench.results import Result, RunResult, aggregate_runs, clean_record, protocol_label

__all__ = ["EvaluationRequest", "run_evaluation", "run_seeds"]

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
        Split name, e.g. ``100proj``: the split whose test volumes are scored.
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
    train_splits : sequence of str, optional
        Mixed-degradation protocol: the training and validation samples are
        these splits' (the same volumes through each split's low-quality
        input, concatenated in this order: equal shares), not ``split``'s.
        ``split`` need not be one of them. One split equal to ``split`` is
        the ordinary protocol.
    reuse_checkpoints : bool
        Whether a learned method may reuse a cached checkpoint of the same config, data and seed
        (``submit --verify`` trains again).
    budget : Budget, optional
        Caps every seed's training (steps and/or seconds) below the method's own
        settings; recorded in the result's provenance.
    mlflow_tags : dict
        Extra tags of every seed's MLflow run (a study makes its runs children
        of its own with ``mlflow.parentRunId``).
    predictions_dir : Path, optional
        Where each seed's test predictions are written as zarr
        (``<dir>/seed<N>/<sample id>.zarr``).
    predictions_kept : int, optional
        How many test volumes' predictions are written (the first ones); all by default.
    figures : bool
        Log the first test volume's figures to each seed's MLflow run (a study
        draws its own, across runs).
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
    train_splits: Sequence[str] | None = None
    reuse_checkpoints: bool = True
    budget: Budget | None = None
    mlflow_tags: dict[str, str] = field(default_factory=dict)
    predictions_dir: Path | None = None
    predictions_kept: int | None = None
    figures: bool = True


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - user methods may still draw from the legacy global RNG
    torch.manual_seed(seed)


class _Prepared(NamedTuple):
    """What :func:`_prepare` checked: the method, the dataset, the task the method serves on it, and the protocol."""

    method_cls: type
    spec: Any
    task: str
    profile: str
    annotated: int | None
    config: Any
    train_splits: tuple[str, ...] | None = None


#: How ``--train-splits`` is written.
_TRAIN_SPLITS_FORM = "comma-separated split names, e.g. --train-splits 50proj,100proj,250proj"


def _check_train_splits(request: EvaluationRequest, spec, annotated: int | None) -> tuple[str, ...] | None:
    """The mixture of training splits, checked; None for the ordinary protocol (train on ``request.split``)."""
    from aiax_bench.data.registry import REFERENCE_SPLIT

    value = request.train_splits
    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else value
    if not isinstance(names, Sequence) or not names:
        raise InputError("--train-splits", f"is {value!r}", f"expected {_TRAIN_SPLITS_FORM}")
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise InputError("--train-splits", f"has an empty or non-text name ({value!r})",
                             f"expected {_TRAIN_SPLITS_FORM}")
        if name == REFERENCE_SPLIT:
            raise InputError("--train-splits", "names 'reference' (the reference scan as the input)",
                             "degraded splits only: a mixture trains on several splits' low-quality inputs")
        try:
            spec.check_split(name)
        except UnknownNameError:
            raise InputError("--train-splits", f"names {name!r}, not a split of {spec.ref}",
                             f"expected splits of {', '.join(spec.splits)} "
                             f"(see `aiax-bench datasets splits {spec.ref}`)") from None
    repeated = sorted({name for name in names if list(names).count(name) > 1})
    if repeated:
        raise InputError("--train-splits", f"names {', '.join(repeated)} more than once",
                         "each split once: the splits share the training volumes in equal shares")
    if annotated is not None:
        raise InputError("--train-splits", "was given with --annotated",
                         "one protocol at a time: a mixture of splits, or labels on K slices of one split")
    # Frame stacks and measured scans hold every split's input for every sample too: a mixture needs nothing more.
    names = tuple(names)
    return None if names == (request.split,) else names


def _prepare(request: EvaluationRequest) -> _Prepared:
    """Every cheap check, before any data is built or any run created: method, config, dataset, splits."""
    from aiax_bench.data.registry import resolve
    from aiax_bench.methods import get_method

    method_cls = get_method(request.method)
    spec = resolve(request.dataset)
    task = "dct" if spec.frames else method_cls.task
    if task not in method_cls.tasks() or (task == "dct") != spec.frames:
        raise InputError("method", f"{method_cls.name} (task {'/'.join(method_cls.tasks())}) does not fit {spec.ref} "
                         f"({'frame stacks' if spec.frames else 'tomographic volumes'})",
                         "a method of task 'dct' on frame-stack datasets and only there (see `aiax-bench methods`)")
    segment = task == "segment"
    spec.check_split(request.split, allow_reference=segment)
    if "sinogram" in method_cls.inputs and spec.beam not in method_cls.beams:
        from aiax_bench.methods import available_methods

        able = sorted(name for name in available_methods() if "sinogram" in get_method(name).inputs
                      and spec.beam in get_method(name).beams)
        raise InputError("method", f"{method_cls.name} reconstructs {' and '.join(method_cls.beams)}-beam sinograms "
                         f"but {spec.ref} is {spec.beam}-beam", "a method that takes the split's reconstruction, or "
                         f"one that reconstructs {spec.beam}-beam sinograms ({', '.join(able) or 'none registered'})")
    profile = request.profile or spec.default_profile
    spec.check_profile(profile)
    annotated = check_annotated(request.annotated_slices)
    if annotated is not None and not segment:
        raise InputError("annotated slices", f"were given for method {method_cls.name} (task {task!r})",
                         "no --annotated: the annotated-k protocol is for segmentation methods (task 'segment')")
    train_splits = _check_train_splits(request, spec, annotated)
    # Coerces and type-checks --config values (``1e-3`` is a float), and lets the method check their
    # ranges, before anything is loaded.
    config = method_cls.make_config(request.config)
    method_cls(config)
    return _Prepared(method_cls, spec, task, profile, annotated, config, train_splits)


def run_evaluation(request: EvaluationRequest, *, write: bool = True) -> dict[str, Any]:
    """Evaluate ``request.seed``: the one-seed case of :func:`run_seeds`."""
    return run_seeds(request, [request.seed], write=write)


def run_seeds(request: EvaluationRequest, seeds: Sequence[int], *, write: bool = True) -> dict[str, Any]:
    """Fit (if needed), predict every test volume, score it, log it to MLflow, once per seed; write one result.

    Everything that can be checked cheaply (method, config, dataset, split,
    seeds) is checked before any data is built, any model trained or any
    MLflow run created. Each seed is one MLflow run; the result
    (:class:`~aiax_bench.results.Result`) holds them all, and its file is
    named after the first run's id and created exclusively.

    Returns
    -------
    dict
        The result document, with ``result_path`` when written.
    """
    from aiax_bench.data.loader import load
    from aiax_bench.provenance import code_provenance, hardware

    seeds = list(seeds)
    if not seeds:
        raise InputError("--seeds", "is empty", "pass at least one seed")
    if len(set(seeds)) != len(seeds):
        raise InputError("--seeds", f"repeats a seed ({seeds})", "pass distinct seeds")
    if any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
        raise InputError("--seeds", f"is {seeds}", "expected non-negative integers")
    prepared = _prepare(request)
    method_cls, spec, task, profile, annotated, config, train_splits = prepared
    # The checked mixture from here on: its labels, tags and file name are the protocol's.
    request = replace(request, train_splits=None if train_splits is None else list(train_splits))
    dataset = load(spec.ref, profile=profile)
    started = datetime.now(UTC)
    runs = [_run_seed(request, seed, prepared, dataset) for seed in seeds]
    method = method_cls(config)
    provenance = {**dataset.provenance(), "split": request.split, "annotated_slices": annotated,
                  "train_splits": request.train_splits, "supervision": method.supervision,
                  "evaluator_version": runs[0].records[0]["evaluator_version"], **code_provenance(), "seeds": seeds,
                  "hardware": hardware()}
    if request.budget is not None:
        provenance["budget"] = asdict(request.budget)
    result = Result(method=method_cls.name, task=task, config=method.config_dict(), dataset=spec.ref,
                    profile=profile, split=request.split, annotated_slices=annotated,
                    supervision=method.supervision, created=started.isoformat(timespec="seconds"), runs=runs,
                    provenance=provenance, train_splits=request.train_splits)
    document = result.to_dict()
    if write:
        run_id = runs[0].mlflow_run_id or started.strftime("%Y%m%dT%H%M%S")
        out = result_path(request, method_cls.name, seeds, run_id)
        write_new_file(out, document, exists_hint="result files are never overwritten")
        document["result_path"] = str(out)
        _attach(out, [run.mlflow_run_id for run in runs])
    return document


def _attach(path: Path, run_ids: Sequence[str | None]) -> None:
    """Log the result file as an artifact of every seed's MLflow run (the store the runs used is still current)."""
    import mlflow

    client = mlflow.MlflowClient()
    for run_id in run_ids:
        if run_id:
            client.log_artifact(run_id, str(path))


def _training_samples(method, splits, annotated: int | None) -> tuple[list, list]:
    """The training and validation samples a method may see under its protocol.

    ``splits`` is one split, or the splits of a mixture (``--train-splits``):
    their sample lists are concatenated in order. Every split holds the same
    volumes, so each split is an equal share of what a method that draws
    volumes uniformly sees.
    """
    splits = list(splits) if isinstance(splits, list | tuple) else [splits]
    train = [s for split in splits for s in split.train]
    val = [s for split in splits for s in split.val]
    if method.supervision in SEALED_SUPERVISION:
        # A method that claims to learn without clean data is held to it: its training data is sealed too.
        train, val = seal(train), seal(val)
    if annotated is not None:
        train, val = ([AnnotatedSample(s, annotated) for s in part] for part in (train, val))
    return train, val


def _training_splits(prepared: _Prepared, dataset, split: str) -> list:
    """The splits whose training and validation samples a method gets: the mixture's, or the evaluated one."""
    return [dataset.split(name) for name in prepared.train_splits or (split,)]


def _checkpoint_root(train_splits: tuple[str, ...] | None) -> Path:
    """The checkpoint cache; a mixture's trainings are kept under a folder of their own.

    A method whose checkpoint key names ``context.split`` and the sample ids
    but not ``context.train_splits`` (a user's, written before mixtures
    existed) would otherwise take one mixture's weights for
    another's, or for a training on the evaluated split alone: the sample ids
    are the same in every split. The folder is named by a hash of the
    mixture, since split names may hold '/'.
    """
    from aiax_bench.paths import data_dir

    root = data_dir() / "checkpoints"
    if not train_splits or len(train_splits) == 1:  # one split: that split's own training
        return root
    digest = hashlib.sha256(json.dumps(list(train_splits)).encode()).hexdigest()[:16]
    return root / f"mixed-{digest}"


def _fit_context(request: EvaluationRequest, prepared: _Prepared, dataset) -> FitContext:
    from aiax_bench.evaluation import EvaluationSpec

    spec, profile, annotated = prepared.spec, prepared.profile, prepared.annotated
    return FitContext(dataset=spec.ref, task=prepared.task, profile=profile, split=request.split,
                      annotated_slices=annotated, train_splits=prepared.train_splits,
                      dataset_sha256=dataset.content_sha256,
                      lesions=EvaluationSpec.from_registry(spec.evaluation).lesions if spec.evaluation else None,
                      checkpoint_root=_checkpoint_root(prepared.train_splits) if request.reuse_checkpoints else None)


def run_training(request: EvaluationRequest) -> Path | None:
    """Train a learned method on a split's training volumes (validating on its validation ones), no scoring.

    With ``request.train_splits`` it trains on the mixture's training volumes
    instead, and ``evaluate`` with the same mixture reuses the checkpoint
    whichever split it scores.

    The checkpoint lands in the checkpoint cache (``<data dir>/checkpoints``,
    a mixture's in a folder of its own there), where ``evaluate`` reuses it
    and ``aiax-bench apply`` loads it.

    Returns
    -------
    Path or None
        The checkpoint directory (None for a method that does not learn).
    """
    from aiax_bench.data.loader import load

    prepared = _prepare(request)
    method_cls, spec, _, profile, annotated, config, _ = prepared
    if not method_cls.trainable:
        raise InputError(f"method {method_cls.name}", "does not learn", "a learned method (see `aiax-bench methods`)")
    dataset = load(spec.ref, profile=profile)
    method = method_cls(config)
    train, val = _training_samples(method, _training_splits(prepared, dataset, request.split), annotated)
    seed_everything(request.seed)
    method.fit(train, val, seed=request.seed, budget=request.budget,
               context=_fit_context(request, prepared, dataset))
    return getattr(method, "checkpoint_path", None)


def _run_seed(request: EvaluationRequest, seed: int, prepared: _Prepared, dataset) -> RunResult:
    from aiax_bench.evaluation import Evaluator
    from aiax_bench.provenance import code_provenance, hardware, peak_memory_mb
    from aiax_bench.tracking import mlflow_run

    method_cls, spec, task, profile, annotated, config, train_splits = prepared
    method = method_cls(config)
    split = dataset.split(request.split)
    evaluator = Evaluator(dataset, request.split, task=task)
    train, val = _training_samples(method, _training_splits(prepared, dataset, request.split), annotated)
    supervision = method.supervision
    started = datetime.now(UTC)
    git = code_provenance()
    tags = {"method": method_cls.name, "dataset": spec.ref, "split": request.split, "profile": profile,
            "supervision": supervision, "evaluator_version": evaluator.version, "git_commit": git["git_commit"]}
    if annotated is not None:
        tags["annotated_slices"] = str(annotated)
    if train_splits is not None:
        tags["train_splits"] = ",".join(train_splits)
    tags.update(request.mlflow_tags)
    params = {"method": method_cls.name, "config": method.config_dict(), "dataset": spec.ref,
              "profile": profile, "split": request.split, "annotated_slices": annotated,
              "train_splits": None if train_splits is None else list(train_splits), "seed": seed,
              "dataset_sha256": dataset.content_sha256, "dataset_source": dataset.source,
              "package_version": git["package_version"], "git_dirty": git["git_dirty"]}
    run_name = f"{method_cls.name}-{spec.ref}-{split_label(request)}-seed{seed}"
    with mlflow_run(request.tracking_uri, run_name=run_name, tags=tags, params=params) as mlflow:
        seed_everything(seed)
        t0 = time.perf_counter()
        context = _fit_context(request, prepared, dataset)
        method.fit(train, val, seed=seed, budget=request.budget, tracker=mlflow, context=context)
        train_seconds = time.perf_counter() - t0 + method.prior_training_seconds()
        fit_summary = method.fit_summary()
        if fit_summary:
            mlflow.log_dict(fit_summary, "fit_summary.json")
        predictions, infer_seconds = {}, []
        for sample in seal(split.test):
            # The sealed view: reading the truth raises, the run fails (exit status 2) and nothing is written.
            t0 = time.perf_counter()
            predictions[sample.id] = method.predict(sample)
            infer_seconds.append(time.perf_counter() - t0)
        scores = evaluator.evaluate(predictions)
        if request.predictions_dir is not None:
            kept = list(predictions)[:request.predictions_kept]
            save_predictions({k: predictions[k] for k in kept}, Path(request.predictions_dir) / f"seed{seed}")
        # Out-of-distribution samples (another porosity or pore size) are scored in a group of their own:
        # they say whether a method generalises, not how it ranks.
        ood = split.ood_test
        ood_scores = None
        if ood:
            ood_evaluator = Evaluator(dataset, request.split, part="ood-test", task=task)
            ood_scores = ood_evaluator.evaluate({s.id: method.predict(s) for s in seal(ood)})
        efficiency = {
            "train_seconds": round(train_seconds, 3),
            "inference_seconds_per_volume": round(float(np.mean(infer_seconds)), 3),
            "parameters": method.parameter_count(),
            "peak_memory_mb": peak_memory_mb(),
            # A frame stack's time per volume depends on its frames: the board shows it per 1,000 frames.
            **({"frames_per_volume": int(split.test[0].shape[0])} if spec.frames else {}),
        }
        run = RunResult(seed=seed, created=started.isoformat(timespec="seconds"),
                        mlflow_run_id=mlflow.active_run().info.run_id,
                        records=[clean_record(r) for r in scores["records"]], efficiency=efficiency,
                        ood_records=None if ood_scores is None else [clean_record(r) for r in ood_scores["records"]],
                        fit_summary=fit_summary, command=git["command"])
        for key, agg in aggregate_runs([{"records": run.records}]).items():
            mlflow.log_metric(key, agg["mean"])
        if run.ood_records:
            for key, agg in aggregate_runs([{"records": run.ood_records}]).items():
                mlflow.log_metric(f"ood/{key}", agg["mean"])
        for key, value in efficiency.items():
            if value is not None:
                mlflow.log_metric(f"efficiency/{key}", value)
        mlflow.log_dict({**dataset.provenance(), "split": request.split, "annotated_slices": annotated,
                         "train_splits": None if train_splits is None else list(train_splits),
                         "supervision": supervision, "evaluator_version": evaluator.version, **git, "seed": seed,
                         "hardware": hardware()}, "provenance.json")
        mlflow.log_dict({"records": run.records}, "records.json")
        if scores.get("distributions"):
            mlflow.log_dict(scores["distributions"], "distributions.json")
        if request.figures:
            _log_figures(mlflow, evaluator, split.test[0], predictions[split.test[0].id], scores)
    return run


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


def save_predictions(predictions: dict[str, np.ndarray], directory: Path) -> dict[str, Path]:
    """Write each prediction as a zarr array ``<directory>/<sample id>.zarr`` (complete, or not at all)."""
    import zarr

    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for sample_id, volume in predictions.items():
        final = directory / f"{sample_id}.zarr"
        partial = directory / f".{sample_id}.zarr.partial"
        volume = np.asarray(volume)
        array = zarr.create_array(str(partial), shape=volume.shape, dtype=volume.dtype, overwrite=True,
                                  chunks=tuple(min(n, 128) for n in volume.shape))
        array[...] = volume
        if final.exists():
            import shutil

            shutil.rmtree(final)
        partial.rename(final)
        paths[sample_id] = final
    return paths


def result_path(request: EvaluationRequest, method: str, seeds: Sequence[int], run_id: str) -> Path:
    """``<output>/<dataset>/<split label>/<method>-seed<N>-<run id>.json`` (split names may hold '/').

    The folder is the split with its protocol (:func:`split_label`), '/' made '_'.

    The MLflow run id makes the name unique: concurrent evaluations never share a file.
    """
    name = resolve_name(request.dataset)
    split = split_label(request).replace("/", "_")
    tag = ("seed" if len(seeds) == 1 else "seeds") + "-".join(map(str, seeds))
    return request.output_dir / name / split / f"{method}-{tag}-{run_id}.json"


def split_label(request: EvaluationRequest) -> str:
    """The split with its training protocol, e.g. ``reference+annotated-5`` or ``100proj+mixed-50proj,250proj``.

    See :func:`~aiax_bench.results.protocol_label`; :func:`run_seeds` labels a checked request.
    """
    return protocol_label(request.split, request.annotated_slices, request.train_splits)


def resolve_name(ref: str) -> str:
    return ref.partition("@")[0]
