"""Where a study's evaluations run: a dask.distributed cluster, local or on a batch system.

``local`` is a :class:`distributed.LocalCluster` of worker processes on this
machine. ``slurm`` and ``oar`` are dask-jobqueue's ``SLURMCluster`` and
``OARCluster``: each worker is one batch job, submitted with ``sbatch`` or
``oarsub``. Their settings (queue, walltime, cores, memory, GPUs, extra
directives) come from one YAML file, by default ``clusters.yaml`` in the
user's configuration directory (``aiax-bench study --cluster-config`` names
another)::

    slurm:
      queue: normal              # partition
      walltime: "02:00:00"
      cores: 4                   # per job (one worker per job)
      memory: 16GB               # per job
      gpus: 1                    # adds --gres=gpu:1
      job_extra_directives: ["--account=myproject"]
    oar:
      queue: default
      walltime: "02:00:00"
      cores: 4
      memory: 16GB               # what the worker may use; OAR itself books cores
      project: myproject
      job_extra_directives: ["-t besteffort"]

A worker that dies (a job killed at its walltime, a node lost) has its task
run again elsewhere: every task is submitted with retries.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiax_bench.errors import AiaxError, InputError

__all__ = ["CLUSTERS", "ClusterError", "ClusterSettings", "default_cluster_config", "start_cluster"]

#: Keys a cluster section of the YAML file may hold.
SETTINGS_KEYS = ("queue", "walltime", "cores", "memory", "gpus", "project", "job_extra_directives",
                 "local_directory", "log_directory", "python")


class ClusterError(AiaxError, RuntimeError):
    """A cluster that cannot start or lost every worker, in one line."""

    def __init__(self, cluster: str, config: Path | None, problem: str, check: str) -> None:
        where = f" (settings from {config})" if config else ""
        super().__init__(f"cluster {cluster!r}{where} {problem}; check {check}")


def default_cluster_config() -> Path:
    """``clusters.yaml`` in the user's configuration directory."""
    import platformdirs

    return Path(platformdirs.user_config_dir("aiax-bench")) / "clusters.yaml"


@dataclass(frozen=True)
class ClusterSettings:
    """The settings of one batch cluster (a section of the YAML file)."""

    queue: str | None = None
    walltime: str = "01:00:00"
    cores: int = 1
    memory: str = "4GB"
    gpus: int = 0
    project: str | None = None
    job_extra_directives: tuple[str, ...] = ()
    local_directory: str | None = None
    log_directory: str | None = None
    python: str | None = None


def read_settings(kind: str, path: Path | None) -> tuple[ClusterSettings, Path | None]:
    """The section ``kind`` of the YAML file at ``path`` (defaults when there is no file)."""
    import yaml

    if path is not None and not path.is_file():
        raise InputError("--cluster-config", f"{path} is not a file", "the YAML file of cluster settings, or none "
                         f"to read {default_cluster_config()} (when it exists)")
    path = path or default_cluster_config()
    if not path.is_file():
        return ClusterSettings(), None
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(str(path), f"is not valid YAML ({exc.__class__.__name__})",
                         "a mapping of cluster kinds (slurm, oar) to their settings") from None
    if not isinstance(document, dict):
        raise InputError(str(path), f"holds a {type(document).__name__}", "a mapping with sections slurm: / oar:")
    section = document.get(kind) or {}
    if not isinstance(section, dict):
        raise InputError(f"{path}: {kind}", f"is a {type(section).__name__}", "a mapping of settings")
    unknown = sorted(set(section) - set(SETTINGS_KEYS))
    if unknown:
        raise InputError(f"{path}: {kind}.{unknown[0]}", "is not a setting", f"one of {', '.join(SETTINGS_KEYS)}")
    values = dict(section)
    for key in ("cores", "gpus"):
        if key in values and (isinstance(values[key], bool) or not isinstance(values[key], int) or values[key] < 0):
            raise InputError(f"{path}: {kind}.{key}", f"is {values[key]!r}", "a non-negative integer")
    if "job_extra_directives" in values:
        extra = values["job_extra_directives"]
        if not isinstance(extra, list) or not all(isinstance(e, str) for e in extra):
            raise InputError(f"{path}: {kind}.job_extra_directives", f"is {extra!r}", "a list of strings")
        values["job_extra_directives"] = tuple(extra)
    for key in ("walltime", "memory", "queue", "project"):
        if key in values and values[key] is not None:
            values[key] = str(values[key])
    return ClusterSettings(**values), path


#: Environment variables a batch worker gets from the study's process (where the data is, MLflow, threads).
FORWARDED_ENVIRONMENT = ("AIAX_BENCH_DATA", "MLFLOW_DISABLE_TELEMETRY", "OMP_WAIT_POLICY")

#: The worker resource each evaluation holds: one evaluation at a time per worker, whatever its threads.
EVALUATION_RESOURCE = "evaluation"


def _local(workers: int, settings_path: Path | None) -> Any:
    from distributed import LocalCluster

    # The resource keeps each worker to one evaluation at a time; the evaluation sets its own threads.
    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                        silence_logs=40, resources={EVALUATION_RESOURCE: 1})


def _jobqueue_kwargs(settings: ClusterSettings) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"cores": max(1, settings.cores), "processes": 1, "memory": settings.memory,
                              "walltime": settings.walltime,
                              "job_extra_directives": list(settings.job_extra_directives)}
    for key in ("queue", "local_directory", "log_directory", "python"):
        value = getattr(settings, key)
        if value is not None:
            kwargs[key] = value
    # Batch jobs start with the system's environment (OAR always, SLURM by site policy): the settings an
    # evaluation reads from it travel in the job script.
    kwargs["job_script_prologue"] = [f"export {name}={shlex.quote(os.environ[name])}"
                                     for name in FORWARDED_ENVIRONMENT if name in os.environ]
    kwargs["scheduler_options"] = {"dashboard_address": ":0"}
    kwargs["worker_extra_args"] = ["--resources", f"{EVALUATION_RESOURCE}=1"]
    return kwargs


def _slurm(workers: int, settings_path: Path | None) -> Any:
    from dask_jobqueue import SLURMCluster

    settings, _ = read_settings("slurm", settings_path)
    kwargs = _jobqueue_kwargs(settings)
    if settings.gpus:
        kwargs["job_extra_directives"].append(f"--gres=gpu:{settings.gpus}")
    if settings.project:
        kwargs["account"] = settings.project
    cluster = SLURMCluster(**kwargs)
    cluster.scale(jobs=workers)
    return cluster


def oar_job_script(settings: ClusterSettings) -> str:
    """The OAR job script dask-jobqueue would submit for these settings (no OAR needed to write it)."""
    from dask_jobqueue import OARCluster

    cluster = OARCluster(**_oar_kwargs(settings))
    try:
        return cluster.job_script()
    finally:
        cluster.close()


def _oar_kwargs(settings: ClusterSettings) -> dict[str, Any]:
    kwargs = _jobqueue_kwargs(settings)
    if settings.project:
        kwargs["project"] = settings.project
    if settings.gpus:
        kwargs["resource_spec"] = f"/nodes=1/gpu={settings.gpus}/core={max(1, settings.cores)}"
    # OAR has no memory directive: the worker's memory limit is set, and the check is left to the cluster.
    kwargs["memory_per_core_property_name"] = "not_applicable"
    return kwargs


def _oar(workers: int, settings_path: Path | None) -> Any:
    from dask_jobqueue import OARCluster

    settings, _ = read_settings("oar", settings_path)
    cluster = OARCluster(**_oar_kwargs(settings))
    cluster.scale(jobs=workers)
    return cluster


#: Cluster kind -> how to start it; the only list of kinds.
CLUSTERS: dict[str, Callable[[int, Path | None], Any]] = {"local": _local, "slurm": _slurm, "oar": _oar}

#: The command each batch system submits jobs with.
SUBMIT_COMMANDS = {"slurm": "sbatch", "oar": "oarsub"}

#: What to check when a cluster of each kind does not start.
_CHECKS = {
    "local": "that this machine can start worker processes (memory, open files)",
    "slurm": "that sbatch and squeue are on PATH, slurmctld answers (sinfo) and the queue, walltime and memory "
             "are allowed",
    "oar": "that oarsub and oarstat are on PATH, the OAR server answers (oarnodes) and the queue and project exist",
}


def start_cluster(kind: str, *, workers: int, config: Path | None = None, timeout: float = 300.0):
    """Start a cluster of ``kind`` with ``workers`` workers and return ``(cluster, client)``.

    Raises
    ------
    ClusterError
        When the cluster cannot start or no worker joins within ``timeout`` seconds.
    """
    from distributed import Client

    if kind not in CLUSTERS:
        raise InputError("--cluster", f"is {kind!r}", f"one of {', '.join(CLUSTERS)}")
    if workers < 1:
        raise InputError("--workers", f"is {workers}", "at least 1")
    config_used = None
    if kind != "local":
        _, config_used = read_settings(kind, config)
        submit = SUBMIT_COMMANDS[kind]
        if shutil.which(submit) is None:
            raise ClusterError(kind, config_used, f"cannot submit jobs ({submit} is not on PATH)", _CHECKS[kind])
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        cluster = CLUSTERS[kind](workers, config)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ClusterError(kind, config_used, f"did not start ({type(exc).__name__}: {str(exc).splitlines()[0]})",
                           _CHECKS[kind]) from None
    client = Client(cluster)
    try:
        client.wait_for_workers(1, timeout=timeout)
    except Exception as exc:  # distributed raises its own timeout types
        for closing in (client, cluster):
            with contextlib.suppress(Exception):
                closing.close()
        raise ClusterError(kind, config_used, f"started no worker within {timeout:g} s ({type(exc).__name__})",
                           _CHECKS[kind]) from None
    return cluster, client
