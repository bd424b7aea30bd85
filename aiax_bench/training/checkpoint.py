"""Checkpoint directories: weights, config and metadata, written atomically and verified on load.

Layout::

    <checkpoint>/
        weights.pt      state dict (tensors only: read with torch.load(weights_only=True))
        config.json     the method's hyper-parameters
        metadata.json   format, method, input format, value range, training summary,
                        dataset identity, weights_sha256

A checkpoint directory appears only once complete (written under a temporary
name, then renamed), and loading checks the weights' sha256 against the
metadata, so a truncated or edited file is refused rather than used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from aiax_bench.data.download import sha256_file
from aiax_bench.data.store import atomic_store
from aiax_bench.errors import InputError, StoreError

__all__ = ["CHECKPOINT_FORMAT", "Checkpoint", "load_checkpoint", "save_checkpoint", "sha256_file"]

CHECKPOINT_FORMAT = 1
WEIGHTS, CONFIG, METADATA = "weights.pt", "config.json", "metadata.json"




@dataclass
class Checkpoint:
    """A loaded checkpoint directory."""

    path: Path
    state_dict: dict[str, torch.Tensor]
    config: dict[str, Any]
    metadata: dict[str, Any]


def save_checkpoint(directory: Path, *, state_dict: dict[str, torch.Tensor], config: dict[str, Any],
                    metadata: dict[str, Any]) -> Path:
    """Write a checkpoint directory atomically (an existing one is replaced).

    Parameters
    ----------
    directory : Path
        The checkpoint directory to create.
    state_dict : dict
        Model weights and buffers; saved on the CPU.
    config : dict
        JSON-serialisable hyper-parameters.
    metadata : dict
        JSON-serialisable description; ``format`` and ``weights_sha256`` are added.

    Returns
    -------
    Path
        ``directory``.
    """
    directory = Path(directory)
    cpu_state = {k: v.detach().cpu().clone() for k, v in state_dict.items()}
    try:
        with atomic_store(directory) as tmp:
            tmp.mkdir(parents=True)
            torch.save(cpu_state, tmp / WEIGHTS)
            meta = {"format": CHECKPOINT_FORMAT, **metadata, "weights_file": WEIGHTS,
                    "weights_sha256": sha256_file(tmp / WEIGHTS)}
            (tmp / CONFIG).write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
            (tmp / METADATA).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    except OSError as exc:
        raise StoreError(directory, f"cannot write checkpoint ({exc.strerror or exc})",
                         "pass a writable checkpoint directory") from None
    return directory


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise StoreError(path, f"unreadable checkpoint file ({type(exc).__name__}: {exc})",
                         "delete the checkpoint directory and train again") from None


def load_checkpoint(directory: Path, *, expect: dict[str, Any] | None = None,
                    map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read and verify a checkpoint directory.

    Parameters
    ----------
    directory : Path
        A directory written by :func:`save_checkpoint`.
    expect : dict, optional
        Metadata entries that must hold the given values (e.g. ``method``,
        ``dataset_sha256``); dotted keys reach into nested entries
        (``"training.split"``).
    map_location : str or torch.device
        Where the tensors are loaded.

    Raises
    ------
    StoreError
        When files are missing or unreadable, or the weights do not match their sha256.
    InputError
        When an ``expect`` entry differs: the checkpoint is not for this use.
    """
    directory = Path(directory)
    for name in (WEIGHTS, CONFIG, METADATA):
        if not (directory / name).is_file():
            raise StoreError(directory, f"is not a checkpoint (no {name})",
                             "pass a directory written by Method.save() or by training")
    metadata = _read_json(directory / METADATA)
    config = _read_json(directory / CONFIG)
    if metadata.get("format") != CHECKPOINT_FORMAT:
        raise StoreError(directory, f"checkpoint format is {metadata.get('format')!r}, expected {CHECKPOINT_FORMAT}",
                         "train again with this version of aiax-bench")
    digest = sha256_file(directory / WEIGHTS)
    if digest != metadata.get("weights_sha256"):
        raise StoreError(directory / WEIGHTS,
                         f"sha256 is {digest}, metadata.json says {metadata.get('weights_sha256')}",
                         "the weights were changed or truncated: delete the checkpoint and train again")
    for key, value in (expect or {}).items():
        found: Any = metadata
        for part in key.split("."):
            found = found.get(part) if isinstance(found, dict) else None
        if found != value:
            raise InputError(f"checkpoint {directory}", f"has {key} = {found!r}",
                             f"expected {value!r}: it was made for another method, dataset or split; "
                             "train again or pass a matching checkpoint")
    try:
        state_dict = torch.load(directory / WEIGHTS, map_location=map_location, weights_only=True)
    except Exception as exc:  # pickle and zip errors of many types
        raise StoreError(directory / WEIGHTS, f"cannot load weights ({type(exc).__name__}: {exc})",
                         "delete the checkpoint and train again") from None
    return Checkpoint(path=directory, state_dict=state_dict, config=config, metadata=metadata)
