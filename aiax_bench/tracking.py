"""MLflow logging of evaluation runs (local sqlite store by default)."""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from aiax_bench.errors import StoreError

__all__ = ["EXPERIMENT", "default_tracking_uri", "ensure_experiment", "mlflow_run"]

EXPERIMENT = "aiax-bench"


def default_tracking_uri() -> str:
    """``sqlite:///<cwd>/mlflow.db``: a store in the directory the user works in."""
    return f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def _artifact_location(uri: str) -> str | None:
    # MLflow would otherwise put artifacts in ./mlruns of wherever it runs next.
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").resolve().as_uri()
    if uri.startswith("file:") or "://" not in uri:
        return None
    return None


def _flatten(prefix: str, value: Any, out: dict[str, Any]) -> None:
    if isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}" if prefix else str(k), v, out)
    else:
        out[prefix] = value


def ensure_experiment(uri: str) -> str:
    """The id of the :data:`EXPERIMENT` of the store at ``uri``, created (with its artefact location) if missing."""
    import mlflow

    mlflow.set_tracking_uri(uri)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return mlflow.create_experiment(EXPERIMENT, artifact_location=_artifact_location(uri))
    except Exception:
        # Another process may have created it between the look-up and the insert (parallel first use).
        experiment = mlflow.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            raise
        return experiment.experiment_id


@contextmanager
def mlflow_run(tracking_uri: str | None, *, run_name: str, tags: dict[str, str], params: dict[str, Any]):
    """Open an MLflow run for an evaluation; on an exception the run ends as FAILED.

    Yields the ``mlflow`` module with the run active, so that methods can log
    training curves to it.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    import mlflow

    # Schema-migration chatter on a new store is noise in a results table.
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)

    uri = tracking_uri or default_tracking_uri()
    try:
        experiment_id = ensure_experiment(uri)
    except Exception as exc:  # MLflow raises many types for unusable stores
        raise StoreError(uri, f"MLflow tracking store is unusable ({type(exc).__name__}: {exc})",
                         "pass a working --tracking-uri (e.g. sqlite:///mlflow.db)") from None
    flat: dict[str, Any] = {}
    _flatten("", params, flat)
    with mlflow.start_run(experiment_id=experiment_id, run_name=run_name, tags=tags):
        mlflow.log_params({k: json.dumps(v) if not isinstance(v, str) else v for k, v in flat.items()})
        yield mlflow
