"""JSON files written safely: created exclusively or replaced atomically, never half-written.

Every JSON document the package writes (result files, leaderboard entries,
verification records, the rendered board) goes through these functions.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from aiax_bench.errors import InputError, StoreError

__all__ = ["dump_json", "json_ready", "read_json", "write_new_file", "write_replacing"]

def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number JSON allows")

def read_json(path: Path, *, allow_nan: bool = False) -> Any:
    """Parse a JSON file; NaN and Infinity (not JSON, but what Python writes) only with ``allow_nan``."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise StoreError(path, f"cannot read file ({exc.strerror or exc})", "check the path") from None
    try:
        return json.loads(text) if allow_nan else json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        raise InputError(str(path), f"is not valid JSON ({exc})", "expected a JSON document") from None

def json_ready(value: Any) -> Any:
    """``value`` as plain JSON types (tuples become lists, paths and other objects their ``str``)."""
    return json.loads(json.dumps(value, default=str))


def dump_json(document: Any) -> bytes:
    return (json.dumps(document, indent=2, ensure_ascii=False, allow_nan=False) + "\n").encode()

def _temp_copy(path: Path, data: bytes) -> str:
    """A complete, synced temporary file next to ``path`` (hidden, so board readers skip it)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), 0o644)  # mkstemp's 0600 would make the checked-in file private
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise StoreError(path.parent, f"cannot write ({exc.strerror or exc})", "check the permissions") from None
    return tmp

def write_new_file(path: Path, document: Any, *,
                   exists_hint: str = "entries are never overwritten: choose another --name") -> Path:
    """Create ``path`` holding ``document`` as JSON, atomically, and only if it does not exist.

    The content goes to a temporary file first, which is then hard-linked to
    ``path``: the link fails if ``path`` exists (even as a dangling link), and
    readers see either no file or the complete one.
    """
    data = dump_json(document)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreError(path.parent, f"cannot create ({exc.strerror or exc})", "check the permissions") from None
    tmp = _temp_copy(path, data)
    exists = StoreError(path, "exists already", exists_hint)
    try:
        os.link(tmp, path)
    except FileExistsError:
        raise exists from None
    except OSError:
        # File systems without hard links: an exclusive create is still never an overwrite.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            raise exists from None
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path

def write_replacing(path: Path, data: bytes | str, *, expect: bytes | None = None) -> Path:
    """Replace ``path`` atomically; with ``expect``, only if it still holds exactly those bytes."""
    data = data.encode() if isinstance(data, str) else data
    tmp = _temp_copy(path, data)
    try:
        if expect is not None and path.read_bytes() != expect:
            raise StoreError(path, "changed while it was being processed", "run the command again")
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
