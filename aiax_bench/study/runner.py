"""Run a study: every (method, split, seed) evaluation as one dask task, finished ones reused.

Layout of a study directory::

    study.json                       the plan, each task's result file, timings
    runs/<dataset>/<split>/*.json    result files of the one harness (``aiax-bench evaluate``'s)
    figure-data/<method>/<split>/seed<N>.npz   what the report draws of the first test volume
    predictions/<method>/<split>/seed<N>/<sample id>.zarr   with --save-predictions
    report/                          table (CSV, Markdown), figures (PNG, SVG), index.html

A task's result file is its record of completion: a study started again scans
``runs/`` and reuses every result of the same method, config, dataset,
profile, split, seed and thread count, so an interrupted study resumes where
it stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from aiax_bench.errors import AiaxError
from aiax_bench.study.plan import StudyPlan, StudyTask

__all__ = ["StudyError", "finished_results", "run_study", "run_task"]

#: Times a task is tried again when its worker dies (a job killed at its walltime, a lost node).
TASK_RETRIES = 2


class StudyError(AiaxError, RuntimeError):
    """Some evaluations of a study failed; the others are kept and reported."""


def _method_identity(method: str, config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The registered name and the full config a result of ``method`` with these overrides records."""
    from aiax_bench.methods import get_method

    method_cls = get_method(method)
    return method_cls.name, method_cls(method_cls.make_config(config)).config_dict()


def finished_results(plan: StudyPlan, spec, profile: str) -> dict[StudyTask, Path]:
    """The result file of every task of ``plan`` already done in its study directory (with the plan's threads)."""
    identities = {m: _method_identity(m, plan.configs.get(m, {})) for m in plan.methods}
    wanted = {(identities[t.method][0], t.split, t.seed): t for t in plan.tasks()}
    found: dict[StudyTask, Path] = {}
    for path in sorted((plan.out / "runs").rglob("*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if not isinstance(doc, dict) or doc.get("dataset") != spec.ref or doc.get("profile") != profile:
            continue
        seeds = doc.get("seeds") or []
        task = wanted.get((doc.get("method"), doc.get("split"), seeds[0] if len(seeds) == 1 else None))
        threads = ((doc.get("provenance") or {}).get("hardware") or {}).get("torch_threads")
        if task is not None and doc.get("config") == identities[task.method][1] and threads == plan.threads:
            found.setdefault(task, path)
    return found


def run_task(task: StudyTask, plan: StudyPlan, *, parent_run_id: str | None,
             tracking_uri: str | None) -> dict[str, Any]:
    """One evaluation through the harness (runs on a worker); returns its result path and timing."""
    import torch

    from aiax_bench.harness import EvaluationRequest, run_seeds

    torch.set_num_threads(plan.threads)
    tags = {"study": str(plan.out.resolve().name)}
    if parent_run_id:
        tags["mlflow.parentRunId"] = parent_run_id
    # The report draws the first seed's first test volume; --save-predictions keeps every volume.
    kept = None if plan.save_predictions else 1 if task.seed == plan.seeds[0] else 0
    request = EvaluationRequest(
        method=task.method, split=task.split, dataset=plan.dataset, profile=plan.profile, seed=task.seed,
        config=dict(plan.configs.get(task.method, {})), tracking_uri=tracking_uri, output_dir=plan.out / "runs",
        mlflow_tags=tags, figures=False, predictions_kept=kept,
        predictions_dir=None if kept == 0 else plan.out / "predictions" / task.method / task.split.replace("/", "_"))
    started = time.perf_counter()
    # One line per finished evaluation is the study's progress; every worker's training bars would bury it.
    with open(os.devnull, "w") as quiet, contextlib.redirect_stderr(quiet):
        document = run_seeds(request, [task.seed])
    seconds = round(time.perf_counter() - started, 1)
    if task.seed == plan.seeds[0]:
        from aiax_bench.data.loader import load
        from aiax_bench.study.report import write_figure_data

        write_figure_data(plan, task.method, task.split, task.seed, load(plan.dataset, profile=plan.profile))
    if request.predictions_dir is not None and not plan.save_predictions:
        import shutil

        shutil.rmtree(request.predictions_dir / f"seed{task.seed}", ignore_errors=True)
        for folder in (request.predictions_dir, request.predictions_dir.parent, plan.out / "predictions"):
            with contextlib.suppress(OSError):  # only empty folders go; another worker's may still fill
                folder.rmdir()
    return {"task": task.key, "result_path": document["result_path"], "seconds": seconds, "worker_pid": os.getpid()}


def run_study(plan: StudyPlan, *, cluster: str = "local", workers: int | None = None,
              cluster_config: Path | None = None, tracking_uri: str | None = None, report: bool = True,
              progress: bool = True) -> dict[str, Any]:
    """Run every evaluation of ``plan`` not already done, then write the study's table, figures and report.

    Parameters
    ----------
    plan : StudyPlan
        The grid and the study directory.
    cluster : {'local', 'slurm', 'oar'}
        Where the evaluations run (see :mod:`aiax_bench.study.clusters`).
    workers : int, optional
        Workers (batch jobs on a cluster); as many as the machine's cores allow locally, by default.
    cluster_config : Path, optional
        The YAML file of cluster settings.
    tracking_uri : str, optional
        MLflow store; ``sqlite:///<study dir>/mlflow.db`` by default.
    report : bool
        Write the report once the evaluations are done.

    Returns
    -------
    dict
        The study manifest (also written to ``study.json``).
    """
    from aiax_bench.tracking import mlflow_run

    spec, profile, acquisitions = plan.check()
    cores = os.cpu_count() or 1
    workers = workers or max(1, min(cores, len(plan.tasks())))
    plan.out.mkdir(parents=True, exist_ok=True)
    tracking_uri = tracking_uri or f"sqlite:///{(plan.out / 'mlflow.db').resolve()}"
    done = finished_results(plan, spec, profile)
    todo = [t for t in plan.tasks() if t not in done]
    manifest: dict[str, Any] = {
        "plan": {**asdict(plan), "out": str(plan.out)}, "dataset": spec.ref, "profile": profile,
        "cluster": cluster, "workers": workers, "threads_per_task": plan.threads,
        "reused": sorted(t.key for t in done), "tasks": {t.key: str(p) for t, p in done.items()}, "failed": {}}
    started = time.perf_counter()
    # The parent run is created here, before any worker opens the store: a new sqlite store is made once.
    with mlflow_run(tracking_uri, run_name=f"study {plan.out.resolve().name}", tags={"kind": "study"},
                    params={"methods": list(plan.methods), "splits": list(plan.splits), "seeds": list(plan.seeds),
                            "dataset": spec.ref, "profile": profile, "cluster": cluster,
                            "workers": workers}) as mlflow:
        parent = mlflow.active_run().info.run_id
        manifest["mlflow_parent_run_id"] = parent
        if todo:
            _run_tasks(todo, plan, manifest, cluster=cluster, workers=workers, cluster_config=cluster_config,
                       parent=parent, tracking_uri=tracking_uri, progress=progress)
        manifest["seconds"] = round(time.perf_counter() - started, 1)
        _write_manifest(plan.out, manifest)
        if report and manifest["tasks"]:
            from aiax_bench.study.report import write_report

            manifest["report"] = str(write_report(plan, manifest, spec=spec, profile=profile,
                                                  acquisitions=acquisitions))
            mlflow.log_artifacts(str(plan.out / "report"), artifact_path="report")
        _write_manifest(plan.out, manifest)
    if manifest["failed"]:
        first = next(iter(manifest["failed"].items()))
        raise StudyError(f"{len(manifest['failed'])} of {len(plan.tasks())} evaluations failed (first: {first[0]}: "
                         f"{first[1]}); the others are in {plan.out / 'study.json'}; run the study again to retry")
    return manifest


def _run_tasks(todo: list[StudyTask], plan: StudyPlan, manifest: dict[str, Any], *, cluster: str, workers: int,
               cluster_config: Path | None, parent: str, tracking_uri: str, progress: bool) -> None:
    from distributed import as_completed

    from aiax_bench.study.clusters import EVALUATION_RESOURCE, start_cluster

    dask_cluster, client = start_cluster(cluster, workers=workers, config=cluster_config)
    try:
        futures = {client.submit(run_task, task, plan, parent_run_id=parent, tracking_uri=tracking_uri,
                                 key=f"evaluate-{task.slug()}", pure=False,
                                 retries=TASK_RETRIES, resources={EVALUATION_RESOURCE: 1}): task for task in todo}
        for n, future in enumerate(as_completed(futures), start=1):
            task = futures[future]
            try:
                out = future.result()
            except Exception as exc:  # a failed evaluation is reported, the others go on
                manifest["failed"][task.key] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            else:
                manifest["tasks"][task.key] = out["result_path"]
                manifest.setdefault("seconds_per_task", {})[task.key] = out["seconds"]
            _write_manifest(plan.out, manifest)
            if progress:
                state = "failed" if task.key in manifest["failed"] else "done"
                print(f"[{n}/{len(todo)}] {task.key}: {state}", flush=True)
    finally:
        client.close()
        dask_cluster.close()


def _write_manifest(out: Path, manifest: dict[str, Any]) -> None:
    path = out / "study.json"
    partial = out / ".study.json.partial"
    partial.write_text(json.dumps(manifest, indent=1, sort_keys=True, default=str) + "\n")
    partial.replace(path)
